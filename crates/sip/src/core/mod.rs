//! Sans-IO SIP core: digest auth, registrar, B2BUA and the transaction timers.
//!
//! This module does no I/O and reads no clock. Every input carries the
//! current time in milliseconds (`now_ms`, Unix epoch, so expiry times can be
//! stored as they are); randomness comes from a seeded generator.
//!
//! Run-loop contract (what `shell` does):
//! 1. feed an input: [`Core::handle_datagram`], [`Core::handle_lookup`],
//!    [`Core::handle_flow_closed`], [`Core::invalidate_account`] or
//!    [`Core::handle_timeout`];
//! 2. drain [`Core::poll_output`] until it returns `None`, carrying out each
//!    [`Output`] (send bytes, look an account up, persist, write a CDR);
//! 3. call `handle_timeout` again no later than [`Core::poll_timeout`].

pub mod b2bua;
pub mod digest;
pub mod msg;
pub mod registrar;
pub mod security;
pub mod txn;

use digest::{Ha1, NonceKeeper, Verdict};
use msg::{Limits, Msg, ParseError, Start};
use registrar::{Binding, Change, Registrar};
use security::{BanPolicy, Guard};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

/// Flow id 0 is the UDP socket; every TCP/TLS/WS connection gets its own.
pub const UDP_FLOW: u64 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }
    pub fn via(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }
    pub fn parse(s: &str) -> Option<Transport> {
        Some(match s.to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            "ws" => Transport::Ws,
            "wss" => Transport::Wss,
            _ => return None,
        })
    }
    pub fn reliable(self) -> bool {
        self != Transport::Udp
    }
}

/// Where a message came from / goes to: a flow and the peer address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source {
    pub flow: u64,
    pub transport: Transport,
    pub peer: SocketAddr,
}

/// A SIP account as the core needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub username: String,
    pub extension: String,
    pub user_id: Option<i64>,
    pub display_name: String,
    pub secrets: Vec<Ha1>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lookup {
    Username(String),
    Extension(String),
}

/// A binding as persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRecord {
    pub username: String,
    pub contact: String,
    pub transport: Transport,
    pub source: SocketAddr,
    pub user_agent: Option<String>,
    pub instance_id: Option<String>,
    pub reg_id: Option<u32>,
    pub call_id: String,
    pub cseq: u32,
    pub expires_at_ms: u64,
    pub registered_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    Save(BindingRecord),
    Remove {
        username: String,
        contact: String,
    },
    RemoveAll {
        username: String,
    },
    /// Registration state of an account changed (contact count moved).
    State {
        username: String,
        extension: String,
        registered: bool,
        contacts: usize,
        user_agent: Option<String>,
        ip: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Answered,
    NoAnswer,
    Busy,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CdrOp {
    Start {
        call_id: String,
        caller_number: String,
        callee_number: String,
        caller_user_id: Option<i64>,
        callee_user_id: Option<i64>,
        at_ms: u64,
    },
    Ringing {
        call_id: String,
        caller_number: String,
        callee_number: String,
        at_ms: u64,
    },
    Answer {
        call_id: String,
        caller_number: String,
        callee_number: String,
        at_ms: u64,
    },
    Finish {
        call_id: String,
        caller_number: String,
        callee_number: String,
        at_ms: u64,
        disposition: Disposition,
        cause: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Transmit { to: Source, data: Vec<u8> },
    Lookup(Lookup),
    Store(StoreOp),
    Cdr(CdrOp),
}

#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub realm: String,
    /// host:port we put in Via and Contact (never 0.0.0.0).
    pub local_host: String,
    /// host:port of the TLS listener, for Via/Contact on TLS legs.
    pub tls_host: Option<String>,
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    pub max_contacts: usize,
    pub ring_timeout_ms: u64,
    pub nonce_lifetime_ms: u64,
    pub ban: BanPolicy,
    pub limits: Limits,
    pub secret: [u8; 32],
    pub seed: u64,
    /// User-Agent prefixes (case-insensitive) that are also offered a
    /// SHA-256 challenge (before the MD5 one). Everyone else gets MD5 only:
    /// clients differ in which of several challenges they read (JsSIP the
    /// last, sipp the first) and some reject a 401 that offers an algorithm
    /// they lack (baresip 1.x), so offering one is the only safe default.
    pub sha256_user_agents: Vec<String>,
}

const NEGATIVE_TTL_MS: u64 = 10_000;
/// A failed check against cached secrets older than this reloads the account.
const REFRESH_AFTER_MS: u64 = 2_000;
const MAX_PARKED: usize = 20_000;
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REGISTER";

enum Cached {
    Hit(Arc<Account>),
    Unknown,
    Miss,
}

pub struct Core {
    cfg: CoreConfig,
    nonces: NonceKeeper,
    guard: Guard,
    pub(crate) registrar: Registrar,
    accounts: HashMap<String, (Arc<Account>, u64)>,
    by_ext: HashMap<String, String>,
    negative: HashMap<Lookup, u64>,
    parked: HashMap<Lookup, Vec<(Source, Msg)>>,
    parked_count: usize,
    out: VecDeque<Output>,
    rng: u64,
    pub(crate) txn: txn::Txns,
    pub(crate) calls: b2bua::Calls,
    last_sweep_ms: u64,
}

/// Result of authenticating a request.
enum Auth {
    Ok(Arc<Account>),
    /// A challenge (or a park for a lookup) was produced; stop here.
    Done,
}

impl Core {
    pub fn new(cfg: CoreConfig) -> Self {
        Core {
            nonces: NonceKeeper::new(cfg.secret, cfg.nonce_lifetime_ms),
            guard: Guard::new(cfg.ban),
            registrar: Registrar::default(),
            accounts: HashMap::new(),
            by_ext: HashMap::new(),
            negative: HashMap::new(),
            parked: HashMap::new(),
            parked_count: 0,
            out: VecDeque::new(),
            rng: cfg.seed | 1,
            txn: txn::Txns::default(),
            calls: b2bua::Calls::default(),
            last_sweep_ms: 0,
            cfg,
        }
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    // ---- getters ----

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The next instant `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> u64 {
        let sweep = self.last_sweep_ms + 1_000;
        [
            Some(sweep),
            self.txn.next_deadline(),
            self.calls.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(sweep)
    }

    pub fn banned(&self, now_ms: u64) -> Vec<security::Banned> {
        self.guard.banned(now_ms)
    }

    /// Lifts the ban on `ip`; true when it was known.
    pub fn unban(&mut self, ip: std::net::IpAddr) -> bool {
        self.guard.forgive(ip)
    }

    pub fn bindings(&self, username: &str) -> &[Binding] {
        self.registrar.bindings(username)
    }

    pub fn registered_contacts(&self) -> usize {
        self.registrar.total()
    }

    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    // ---- inputs ----

    /// Loads an account into the cache (warm-up or refresh).
    pub fn cache_account(&mut self, a: Account) {
        self.cache_account_at(a, 0);
    }

    fn cache_account_at(&mut self, a: Account, now_ms: u64) {
        self.negative.remove(&Lookup::Username(a.username.clone()));
        self.negative
            .remove(&Lookup::Extension(a.extension.clone()));
        if let Some((old, _)) = self.accounts.get(&a.username) {
            if old.extension != a.extension {
                self.by_ext.remove(&old.extension);
            }
        }
        self.by_ext.insert(a.extension.clone(), a.username.clone());
        self.accounts
            .insert(a.username.clone(), (Arc::new(a), now_ms));
    }

    /// The account changed (deactivated, deleted, password rotated): forget
    /// it and drop its bindings.
    pub fn invalidate_account(&mut self, username: &str, drop_bindings: bool) {
        if let Some((a, _)) = self.accounts.remove(username) {
            self.by_ext.remove(&a.extension);
        }
        // A new agent may answer to a name or extension remembered as unknown.
        self.negative.clear();
        if drop_bindings {
            let mut ch = Change::default();
            self.registrar.remove_all(username, &mut ch);
            if !ch.removed.is_empty() {
                self.out.push_back(Output::Store(StoreOp::RemoveAll {
                    username: username.to_string(),
                }));
                self.push_state(username, "", None);
            }
        }
    }

    /// Restores a persisted binding at startup.
    pub fn restore_binding(&mut self, r: BindingRecord) {
        let b = Binding {
            contact: format!("<{}>", r.contact),
            uri: r.contact,
            expires_at_ms: r.expires_at_ms,
            registered_at_ms: r.registered_at_ms,
            src: Source {
                flow: UDP_FLOW,
                transport: r.transport,
                peer: r.source,
            },
            instance: r.instance_id,
            reg_id: r.reg_id,
            call_id: r.call_id,
            cseq: r.cseq,
            user_agent: r.user_agent,
        };
        self.registrar.restore(&r.username, b);
    }

    /// Answer to an [`Output::Lookup`].
    pub fn handle_lookup(&mut self, now_ms: u64, key: Lookup, found: Option<Account>) {
        match found {
            Some(a) => self.cache_account_at(a, now_ms),
            None => {
                self.negative.insert(key.clone(), now_ms + NEGATIVE_TTL_MS);
            }
        }
        if let Some(list) = self.parked.remove(&key) {
            self.parked_count -= list.len();
            for (src, m) in list {
                self.dispatch(now_ms, src, m);
            }
        }
    }

    /// The lookup behind an [`Output::Lookup`] failed (database down): the
    /// parked requests are dropped unanswered, nothing is cached, and the
    /// clients' retransmissions will try again.
    pub fn handle_lookup_failed(&mut self, key: Lookup) {
        if let Some(list) = self.parked.remove(&key) {
            self.parked_count -= list.len();
        }
    }

    /// A TCP/TLS/WS connection closed: its bindings go with it.
    pub fn handle_flow_closed(&mut self, now_ms: u64, flow: u64) {
        self.flow_lost(now_ms, flow);
        for (user, gone) in self.registrar.flow_closed(flow) {
            for b in gone {
                self.out.push_back(Output::Store(StoreOp::Remove {
                    username: user.clone(),
                    contact: b.uri,
                }));
            }
            self.push_state(&user, "", None);
        }
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        if now_ms >= self.last_sweep_ms + 1_000 {
            self.last_sweep_ms = now_ms;
            for (user, gone) in self.registrar.expire(now_ms) {
                for b in gone {
                    self.out.push_back(Output::Store(StoreOp::Remove {
                        username: user.clone(),
                        contact: b.uri,
                    }));
                }
                self.push_state(&user, "", None);
            }
            self.nonces.purge(now_ms);
            self.guard.purge(now_ms);
            self.negative.retain(|_, exp| *exp > now_ms);
        }
        self.txn_timeouts(now_ms);
        self.call_timeouts(now_ms);
    }

    /// One datagram, WebSocket message or framed stream message.
    pub fn handle_datagram(&mut self, now_ms: u64, src: Source, data: &[u8]) {
        if self.guard.is_banned(src.peer.ip(), now_ms) {
            return;
        }
        if data.iter().all(|b| *b == b'\r' || *b == b'\n') {
            return; // keep-alive
        }
        match Msg::parse(data, &self.cfg.limits) {
            Ok(m) => self.dispatch(now_ms, src, m),
            Err(e) => self.reject_malformed(src, data, e),
        }
    }

    // ---- internals ----

    pub(crate) fn next_rand(&mut self) -> u64 {
        // xorshift64*: not cryptographic; tags and branches only need uniqueness.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn new_token(&mut self) -> String {
        format!("{:016x}", self.next_rand())
    }

    pub(crate) fn send(&mut self, to: Source, m: &Msg) {
        self.out.push_back(Output::Transmit {
            to,
            data: m.to_bytes(),
        });
    }

    pub(crate) fn send_bytes(&mut self, to: Source, data: Vec<u8>) {
        self.out.push_back(Output::Transmit { to, data });
    }

    pub(crate) fn emit(&mut self, o: Output) {
        self.out.push_back(o);
    }

    /// 400 (or 505/513) when the headers needed to address a response are
    /// there; otherwise the message is dropped.
    fn reject_malformed(&mut self, src: Source, data: &[u8], e: ParseError) {
        tracing::debug!(peer = %src.peer, reason = e.reason, "malformed SIP message");
        let text = String::from_utf8_lossy(&data[..data.len().min(self.cfg.limits.max_bytes)]);
        if !text.starts_with(|c: char| c.is_ascii_alphabetic()) || text.starts_with("SIP/") {
            return;
        }
        let mut h: Vec<(String, String)> = Vec::new();
        for line in text.split("\r\n").skip(1).take(self.cfg.limits.max_headers) {
            if line.is_empty() {
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                let n = n.trim();
                for want in ["Via", "From", "To", "Call-ID", "CSeq"] {
                    let compact = match want {
                        "Via" => "v",
                        "From" => "f",
                        "To" => "t",
                        "Call-ID" => "i",
                        _ => "",
                    };
                    if n.eq_ignore_ascii_case(want)
                        || (!compact.is_empty() && n.eq_ignore_ascii_case(compact))
                    {
                        h.push((want.to_string(), v.trim().to_string()));
                    }
                }
            }
        }
        for want in ["Via", "From", "To", "Call-ID", "CSeq"] {
            if !h.iter().any(|(n, _)| n == want) {
                return;
            }
        }
        if text.starts_with("ACK ") {
            return;
        }
        let reason = match e.status {
            505 => "Version Not Supported",
            513 => "Message Too Large",
            _ => "Bad Request",
        };
        let m = Msg {
            start: Start::Response {
                code: e.status,
                reason: reason.to_string(),
            },
            headers: h,
            body: Vec::new(),
        };
        self.send(src, &m);
    }

    fn dispatch(&mut self, now_ms: u64, src: Source, mut m: Msg) {
        if m.method().is_some() {
            msg::stamp_top_via(&mut m, src.peer);
        }
        match &m.start {
            Start::Response { .. } => self.handle_response(now_ms, src, m),
            Start::Request { method, uri } => {
                let scheme = uri.split(':').next().unwrap_or("");
                if !["sip", "sips", "tel"]
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(scheme))
                {
                    if method != "ACK" {
                        let mut r = response(&m, 416, "Unsupported URI Scheme", None);
                        r.headers.retain(|(n, _)| n != "Contact");
                        self.send(src, &r);
                    }
                    return;
                }
                if method != "ACK" && self.txn.absorb(&m, src, &mut self.out) {
                    return;
                }
                let method = method.clone();
                match method.as_str() {
                    "REGISTER" => self.handle_register(now_ms, src, m),
                    "OPTIONS" if msg::tag(m.header("To").unwrap_or("")).is_none() => {
                        let mut r = response(&m, 200, "OK", Some("opt"));
                        r.headers.push(("Allow".into(), ALLOW.into()));
                        self.reply(now_ms, src, &m, r);
                    }
                    _ => self.handle_call_request(now_ms, src, m),
                }
            }
        }
    }

    /// Sends a response to a non-INVITE request and remembers it so a
    /// retransmitted request is answered without being processed again.
    pub(crate) fn reply(&mut self, now_ms: u64, src: Source, req: &Msg, r: Msg) {
        let bytes = r.to_bytes();
        // REGISTER is idempotent and its digest check recognises its own
        // retransmissions, so its answers are not cached: at thousands of
        // REGISTER/s that cache would cost more memory than the bindings.
        if !src.transport.reliable()
            && r.code().unwrap_or(0) >= 200
            && req.method() != Some("REGISTER")
        {
            self.txn.remember(now_ms, req, src, bytes.clone());
        }
        self.send_bytes(src, bytes);
    }

    fn cached(&mut self, key: &Lookup, now_ms: u64) -> Cached {
        let user = match key {
            Lookup::Username(u) => Some(u.as_str()),
            Lookup::Extension(e) => self.by_ext.get(e).map(String::as_str),
        };
        if let Some((a, _)) = user.and_then(|u| self.accounts.get(u)) {
            return Cached::Hit(a.clone());
        }
        if self.negative.get(key).is_some_and(|exp| *exp > now_ms) {
            return Cached::Unknown;
        }
        Cached::Miss
    }

    /// Looks an account up; on a cache miss the message is parked and
    /// replayed when the shell answers.
    pub(crate) fn find_account(
        &mut self,
        key: Lookup,
        now_ms: u64,
        src: Source,
        m: &Msg,
    ) -> Option<Option<Arc<Account>>> {
        match self.cached(&key, now_ms) {
            Cached::Hit(a) => Some(Some(a)),
            Cached::Unknown => Some(None),
            Cached::Miss => {
                if self.parked_count >= MAX_PARKED {
                    return None; // overloaded: drop, the client retransmits
                }
                let list = self.parked.entry(key.clone()).or_default();
                if list.is_empty() {
                    self.out.push_back(Output::Lookup(key));
                }
                list.push((src, m.clone()));
                self.parked_count += 1;
                None
            }
        }
    }

    fn challenge(&mut self, now_ms: u64, src: Source, m: &Msg, code: u16, stale: bool) {
        let salt = self.next_rand();
        let nonce = self.nonces.issue(now_ms, salt);
        let (reason, hname) = if code == 401 {
            ("Unauthorized", "WWW-Authenticate")
        } else {
            ("Proxy Authentication Required", "Proxy-Authenticate")
        };
        let to_tag = self.new_token();
        let mut r = response(m, code, reason, Some(&to_tag));
        for c in digest::challenges(&self.cfg.realm, &nonce, stale, self.offers_sha256(m)) {
            r.headers.push((hname.to_string(), c));
        }
        if m.method() == Some("INVITE") {
            self.txn.remember_invite_final(now_ms, m, src, r.to_bytes());
            self.send(src, &r);
        } else {
            // Challenges are not cached: a retransmission simply gets a new one.
            self.send(src, &r);
        }
    }

    /// Whether this client is offered SHA-256 besides MD5: it is listed in
    /// `sha256_user_agents`, or it already answered one of our challenges
    /// with SHA-256 (so it can; a stale nonce must not downgrade it).
    fn offers_sha256(&self, m: &Msg) -> bool {
        let listed = m.header("User-Agent").is_some_and(|ua| {
            self.cfg
                .sha256_user_agents
                .iter()
                .any(|p| ua.len() >= p.len() && ua.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes()))
        });
        listed
            || m.headers
                .iter()
                .filter(|(n, _)| {
                    n.eq_ignore_ascii_case("Authorization")
                        || n.eq_ignore_ascii_case("Proxy-Authorization")
                })
                .filter_map(|(_, v)| digest::parse_authorization(v))
                .any(|c| c.realm == self.cfg.realm && c.algorithm.eq_ignore_ascii_case("SHA-256"))
    }

    /// Digest-authenticates `m` (401 for REGISTER, 407 otherwise).
    fn authenticate(&mut self, now_ms: u64, src: Source, m: &Msg) -> Auth {
        let (code, hname) = if m.method() == Some("REGISTER") {
            (401, "Authorization")
        } else {
            (407, "Proxy-Authorization")
        };
        let creds = m
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(hname))
            .filter_map(|(_, v)| digest::parse_authorization(v))
            .find(|c| c.realm == self.cfg.realm);
        let Some(c) = creds else {
            self.challenge(now_ms, src, m, code, false);
            return Auth::Done;
        };
        let account = match self.find_account(Lookup::Username(c.username.clone()), now_ms, src, m)
        {
            None => return Auth::Done,
            Some(a) => a,
        };
        let method = m.method().unwrap_or("");
        let verdict = match &account {
            Some(a) => {
                self.nonces
                    .verify(&c, method, &self.cfg.realm, &a.secrets, now_ms, txn_id(m))
            }
            None => {
                // Unknown user: same path and same answer as a wrong password.
                let fake = [Ha1 {
                    md5: String::new(),
                    sha256: String::new(),
                    expires_at_ms: None,
                }];
                match self
                    .nonces
                    .verify(&c, method, &self.cfg.realm, &fake, now_ms, 0)
                {
                    Verdict::Stale => Verdict::Stale,
                    _ => Verdict::Fail,
                }
            }
        };
        match (verdict, account) {
            (Verdict::Ok, Some(a)) => Auth::Ok(a),
            (Verdict::Fail, Some(a))
                if self
                    .accounts
                    .get(&a.username)
                    .is_some_and(|(_, at)| now_ms.saturating_sub(*at) > REFRESH_AFTER_MS) =>
            {
                // The cached secrets may be stale (a softphone just got new
                // short-lived credentials): reload once and check again. The
                // nc was not recorded, so the second check is not a replay.
                self.invalidate_account(&a.username, false);
                let _ = self.find_account(Lookup::Username(a.username.clone()), now_ms, src, m);
                Auth::Done
            }
            (Verdict::Stale, _) => {
                self.challenge(now_ms, src, m, code, true);
                Auth::Done
            }
            _ => {
                if self.guard.failure(src.peer.ip(), now_ms) {
                    tracing::warn!(ip = %src.peer.ip(), "SIP source blocked after repeated authentication failures");
                }
                self.challenge(now_ms, src, m, code, false);
                Auth::Done
            }
        }
    }

    fn handle_register(&mut self, now_ms: u64, src: Source, m: Msg) {
        let account = match self.authenticate(now_ms, src, &m) {
            Auth::Ok(a) => a,
            Auth::Done => return,
        };
        let to_user = msg::uri_user(msg::addr_uri(m.header("To").unwrap_or(""))).unwrap_or("");
        if to_user != account.username && to_user != account.extension {
            let r = response(&m, 403, "Forbidden", None);
            self.reply(now_ms, src, &m, r);
            return;
        }
        let contacts = m.header_list("Contact");
        let header_exp = m
            .header("Expires")
            .and_then(|e| e.trim().parse::<u32>().ok());
        let user = account.username.clone();
        let mut ch = Change::default();
        if contacts.contains(&"*") {
            if contacts.len() != 1 || header_exp != Some(0) {
                let r = response(&m, 400, "Bad Request", None);
                self.reply(now_ms, src, &m, r);
                return;
            }
            self.registrar.remove_all(&user, &mut ch);
            if !ch.removed.is_empty() {
                self.emit(Output::Store(StoreOp::RemoveAll {
                    username: user.clone(),
                }));
            }
        } else {
            // Check every Contact before changing anything.
            let mut plan = Vec::with_capacity(contacts.len());
            for c in &contacts {
                let exp = msg::param(c, "expires")
                    .and_then(|e| e.parse::<u32>().ok())
                    .or(header_exp)
                    .unwrap_or(self.cfg.default_expires);
                if exp != 0 && exp < self.cfg.min_expires {
                    let mut r = response(&m, 423, "Interval Too Brief", None);
                    r.headers
                        .push(("Min-Expires".into(), self.cfg.min_expires.to_string()));
                    self.reply(now_ms, src, &m, r);
                    return;
                }
                plan.push((*c, exp.min(self.cfg.max_expires)));
            }
            let (cseq, _) = m.cseq();
            let ua = m
                .header("User-Agent")
                .map(|s| s.chars().take(200).collect::<String>());
            for (c, exp) in plan {
                let uri = msg::addr_uri(c).to_string();
                let contact: String = strip_param(c, "expires");
                let b = Binding {
                    contact,
                    uri,
                    expires_at_ms: now_ms + exp as u64 * 1000,
                    registered_at_ms: now_ms,
                    src,
                    instance: msg::param(c, "+sip.instance").map(|s| s.to_string()),
                    reg_id: msg::param(c, "reg-id").and_then(|s| s.parse().ok()),
                    call_id: m.call_id().to_string(),
                    cseq,
                    user_agent: ua.clone(),
                };
                self.registrar
                    .update(&user, b, exp, self.cfg.max_contacts, &mut ch);
            }
        }
        for b in &ch.removed {
            self.emit(Output::Store(StoreOp::Remove {
                username: user.clone(),
                contact: b.uri.clone(),
            }));
        }
        for b in &ch.saved {
            self.emit(Output::Store(StoreOp::Save(record(&user, b))));
        }
        let mut r = response(&m, 200, "OK", None);
        for b in self.registrar.bindings(&user) {
            let left = b.expires_at_ms.saturating_sub(now_ms).div_ceil(1000);
            r.headers
                .push(("Contact".into(), format!("{};expires={left}", b.contact)));
        }
        self.reply(now_ms, src, &m, r);
        let count_changed =
            ch.saved.iter().any(|b| b.registered_at_ms == now_ms) || !ch.removed.is_empty();
        if count_changed {
            let ua = m.header("User-Agent").map(str::to_string);
            self.push_state(&user, &account.extension, ua);
        }
    }

    fn push_state(&mut self, user: &str, ext: &str, ua: Option<String>) {
        let list = self.registrar.bindings(user);
        let ext = if ext.is_empty() {
            self.accounts
                .get(user)
                .map(|(a, _)| a.extension.clone())
                .unwrap_or_default()
        } else {
            ext.to_string()
        };
        let ip = list.last().map(|b| b.src.peer.ip().to_string());
        let ua = ua.or_else(|| list.last().and_then(|b| b.user_agent.clone()));
        self.out.push_back(Output::Store(StoreOp::State {
            username: user.to_string(),
            extension: ext,
            registered: !list.is_empty(),
            contacts: list.len(),
            user_agent: ua,
            ip,
        }));
    }
}

/// Identifies a request's transaction (top branch and Call-ID) for the nc table.
fn txn_id(m: &Msg) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    m.top_branch().hash(&mut h);
    m.call_id().hash(&mut h);
    h.finish() | 1
}

fn record(user: &str, b: &Binding) -> BindingRecord {
    BindingRecord {
        username: user.to_string(),
        contact: b.uri.clone(),
        transport: b.src.transport,
        source: b.src.peer,
        user_agent: b.user_agent.clone(),
        instance_id: b.instance.clone(),
        reg_id: b.reg_id,
        call_id: b.call_id.clone(),
        cseq: b.cseq,
        expires_at_ms: b.expires_at_ms,
        registered_at_ms: b.registered_at_ms,
    }
}

fn strip_param(element: &str, name: &str) -> String {
    let close = element.find('>');
    let (head, tail) = match close {
        Some(i) => element.split_at(i + 1),
        None => match element.find(';') {
            Some(i) => element.split_at(i),
            None => (element, ""),
        },
    };
    let mut out = head.to_string();
    for p in tail.split(';').filter(|p| !p.trim().is_empty()) {
        let n = p.split('=').next().unwrap_or("").trim();
        if !n.eq_ignore_ascii_case(name) {
            out.push(';');
            out.push_str(p.trim());
        }
    }
    out
}

/// A response to `req` copying Via, From, To, Call-ID and CSeq.
pub(crate) fn response(req: &Msg, code: u16, reason: &str, to_tag: Option<&str>) -> Msg {
    let mut headers = Vec::with_capacity(8);
    for (n, v) in &req.headers {
        match n.as_str() {
            "Via" | "From" | "Call-ID" | "CSeq" => headers.push((n.clone(), v.clone())),
            "To" => {
                let mut v = v.clone();
                if let Some(t) = to_tag {
                    if msg::tag(&v).is_none() {
                        v.push_str(";tag=");
                        v.push_str(t);
                    }
                }
                headers.push((n.clone(), v));
            }
            _ => {}
        }
    }
    Msg {
        start: Start::Response {
            code,
            reason: reason.to_string(),
        },
        headers,
        body: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
