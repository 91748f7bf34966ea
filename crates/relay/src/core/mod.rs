//! The sans-IO core of one relayed flow: a browser's SIP-over-WebSocket
//! flow paired with its own upstream flow to the PBX. Bytes from one side
//! in, bytes for one side out; no sockets, no clock.
//!
//! The relay is a stateless proxy (RFC 3261 §16.11) with two twists that
//! come from the browsers' `.invalid` hosts:
//!
//! - **Contact rewrite with an implicit flow token.** Every Contact the
//!   browser sends upstream becomes `sip:USER@LOCAL;transport=T;crl=ID`,
//!   where LOCAL is the address of *this flow's* upstream socket. The PBX
//!   (any PBX: no Path support needed, which 3CX lacks) then sends requests
//!   for the browser (an INVITE to a registered user, a BYE) to that
//!   address, and whatever arrives on that socket can only be for this
//!   browser. The browser's own Contact URI is restored in the Request-URI
//!   (JsSIP checks the user part) and in the Contacts of REGISTER answers.
//! - **Double Record-Route.** A dialog-creating request gets two
//!   Record-Route entries of ours, one the PBX can reach (LOCAL, the
//!   upstream transport) and one for the browser side (`relay.invalid`,
//!   WS/WSS), so in-dialog requests from both sides name us in their Route
//!   set; we pop our own entries and pass the rest on.
//!
//! Our Via goes on every request we forward (toward the PBX with `rport`,
//! toward the browser as WS/WSS) and comes off every response; a response
//! whose top Via is not this flow's is dropped. Branches are derived from
//! the request (RFC 3261 §16.11), so a CANCEL gets its INVITE's branch and
//! a request that comes back through the same side of the same flow
//! unchanged is a loop (482). Max-Forwards is decremented (483 at 0).
//! Digest challenges and credentials pass untouched: the Request-URI of a
//! request toward the PBX is never changed, so `uri=` in the Authorization
//! still matches.
//!
//! Stateless as it is, each flow remembers what it saw of the INVITE
//! dialogs passing it (From, To, Contacts, the route set, CSeqs), so that
//! it can end one of its own ([`FlowCore::hang_up`]: a hang-up from the
//! console): once answered, a BYE to each party, each following its own
//! route set from here; while it rings, a CANCEL toward the callee, whose
//! 487 then reaches the caller the usual way. The answers to those
//! requests carry only our Via and stop here.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use md5::{Digest, Md5};
use sip::core::msg::{self, Limits, Msg, Start};

pub mod retx;

/// Every branch we write starts with this (then the flow id and `x`).
pub const BRANCH_PREFIX: &str = "z9hG4bKcrl";
/// URI parameter marking our Record-Route URIs and rewritten Contacts; its
/// value is the flow id.
pub const MARK: &str = "crl";
/// Host of our browser-side Via and Record-Route (the browser never
/// resolves it: everything goes back over its WebSocket).
pub const BROWSER_HOST: &str = "relay.invalid";

/// Transport of the upstream flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpTransport {
    Udp,
    Tcp,
    Tls,
    /// SIP over WebSocket (RFC 7118), plain or over TLS.
    Ws,
    Wss,
}

impl UpTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Ws => "ws",
            Self::Wss => "wss",
        }
    }

    fn via(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
            Self::Ws => "WS",
            Self::Wss => "WSS",
        }
    }

    /// Over TLS (the PBX's certificate is checked).
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Tls | Self::Wss)
    }
}

/// Where a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Browser,
    Upstream,
}

/// Bytes for one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    ToUpstream(Vec<u8>),
    ToBrowser(Vec<u8>),
}

/// A registration the PBX confirmed (2xx to REGISTER) for this flow's
/// contact; `expires` 0 means the binding is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegChange {
    pub user: String,
    pub expires: u32,
    /// The browser's own Contact URI (as it wrote it).
    pub contact: String,
    /// The User-Agent of the browser's last REGISTER.
    pub user_agent: Option<String>,
}

/// What one message led to.
#[derive(Debug, Default)]
pub struct Outcome {
    pub send: Option<Action>,
    /// The message as received, when it was relayed (the CDR tracker reads it).
    pub relayed: Option<Msg>,
    /// Why nothing was relayed (refused with an answer, or dropped).
    pub refused: Option<&'static str>,
    pub reg: Option<RegChange>,
    /// (our branch, method) of a request sent to the PBX: what a UDP
    /// upstream retransmits until answered ([`retx`]).
    pub retransmit: Option<(String, String)>,
    /// (branch, method, status) of an answer to a request of the relay's
    /// own (a BYE or CANCEL of [`FlowCore::hang_up`]), which goes no
    /// further: it stops retransmissions.
    pub own_answer: Option<(String, String, u16)>,
}

impl Outcome {
    fn refused(reason: &'static str, send: Option<Action>) -> Self {
        Self {
            send,
            refused: Some(reason),
            ..Self::default()
        }
    }
}

/// Dialogs remembered per flow at most (a browser has a few calls at a
/// time; past this, new ones cannot be hung up from the console).
pub const MAX_DIALOGS: usize = 64;

/// What a flow saw of one INVITE dialog: enough to end it on its own.
#[derive(Debug, Clone)]
struct Dialog {
    /// The side the INVITE came from.
    caller: Side,
    /// From (with the caller's tag) and To (no tag) of the INVITE.
    from: String,
    to: String,
    cseq: u32,
    /// The caller's Contact URI, as it reached us.
    caller_contact: Option<String>,
    /// The INVITE as we forwarded it to the callee's side: Request-URI,
    /// our branch, Route entries (what its CANCEL must repeat).
    fwd_ruri: String,
    fwd_branch: String,
    fwd_routes: Vec<String>,
    answered: Option<Answered>,
    /// The highest CSeq of an in-dialog request from each party.
    cseq_from_caller: u32,
    cseq_from_callee: u32,
}

/// From the 2xx to the INVITE.
#[derive(Debug, Clone)]
struct Answered {
    /// To with the callee's tag.
    to: String,
    /// The callee's Contact URI, as it reached us.
    contact: String,
    /// Record-Route entries, top first.
    record_route: Vec<String>,
}

fn other(side: Side) -> Side {
    match side {
        Side::Browser => Side::Upstream,
        Side::Upstream => Side::Browser,
    }
}

/// One request of the relay's own ([`FlowCore::hang_up`]): where it goes,
/// and (branch, method) for retransmission toward a UDP PBX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnRequest {
    pub send: Action,
    pub branch: String,
    pub method: String,
}

/// `host:port` as the relay writes its upstream address toward the PBX:
/// `local` (the upstream socket's address), its IP replaced by `advertised`
/// when set (bracketed when an IPv6 literal).
pub fn sent_by(local: SocketAddr, advertised: Option<&str>) -> String {
    match advertised.map(str::trim).filter(|h| !h.is_empty()) {
        Some(h) if h.contains(':') && !h.starts_with('[') => format!("[{h}]:{}", local.port()),
        Some(h) => format!("{h}:{}", local.port()),
        None => local.to_string(),
    }
}

/// One browser flow and its upstream flow.
#[derive(Debug)]
pub struct FlowCore {
    id: u64,
    transport: UpTransport,
    /// Our address on the upstream flow as written toward the PBX
    /// (sent-by, Contact host, Record-Route): see [`sent_by`].
    local: String,
    secure: bool,
    limits: Limits,
    /// The browser's own Contact URI, by its user part.
    contacts: HashMap<String, String>,
    /// The User-Agent of the browser's last REGISTER.
    user_agent: Option<String>,
    /// INVITE dialogs by Call-ID (see [`Dialog`]).
    dialogs: HashMap<String, Dialog>,
    /// The browser's last REGISTER as it sent it, while the PBX holds a
    /// binding of this flow (for [`Self::unregister`]).
    registered: Option<Msg>,
    last_register: Option<Msg>,
}

impl FlowCore {
    pub fn new(
        id: u64,
        transport: UpTransport,
        local: SocketAddr,
        secure: bool,
        limits: Limits,
    ) -> Self {
        Self {
            id,
            transport,
            local: local.to_string(),
            secure,
            limits,
            contacts: HashMap::new(),
            user_agent: None,
            dialogs: HashMap::new(),
            registered: None,
            last_register: None,
        }
    }

    /// Writes `host` (with the upstream socket's port) toward the PBX
    /// instead of the socket's local IP: `relay.advertised_host`.
    pub fn with_advertised_host(mut self, local: SocketAddr, host: Option<&str>) -> Self {
        self.local = sent_by(local, host);
        self
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// A message from the browser.
    pub fn from_browser(&mut self, data: &[u8]) -> Outcome {
        self.handle(data, Side::Browser)
    }

    /// A message from the PBX.
    pub fn from_upstream(&mut self, data: &[u8]) -> Outcome {
        self.handle(data, Side::Upstream)
    }

    /// An answer to a request from the browser that cannot be relayed
    /// (the upstream flow is down): `None` for responses and ACKs.
    pub fn refuse_browser_request(&self, data: &[u8], code: u16, reason: &str) -> Option<Vec<u8>> {
        let m = Msg::parse(data, &self.limits).ok()?;
        if m.method().is_none_or(|x| x == "ACK") {
            return None;
        }
        Some(msg::response(&m, code, reason, None).to_bytes())
    }

    fn handle(&mut self, data: &[u8], side: Side) -> Outcome {
        if data.iter().all(u8::is_ascii_whitespace) {
            // Keep-alive (RFC 5626 CRLF): nothing to relay.
            return Outcome::refused("keep-alive", None);
        }
        let m = match Msg::parse(data, &self.limits) {
            Ok(m) => m,
            // The PBX is not a stranger: what the strict edge parser refuses
            // in its messages (a header shape it does not accept) is relayed
            // when it frames.
            Err(e) => match (side, lenient_parse(data, &self.limits)) {
                (Side::Upstream, Some(m)) => m,
                _ => return malformed(data, e, side),
            },
        };
        match (&m.start, side) {
            (Start::Request { .. }, Side::Browser) => self.request(m, Side::Browser),
            (Start::Request { .. }, Side::Upstream) => self.request(m, Side::Upstream),
            (Start::Response { .. }, _) => self.response(m, side),
        }
    }

    fn back(side: Side, bytes: Vec<u8>) -> Action {
        match side {
            Side::Browser => Action::ToBrowser(bytes),
            Side::Upstream => Action::ToUpstream(bytes),
        }
    }

    fn request(&mut self, m: Msg, from: Side) -> Outcome {
        let is_ack = m.method() == Some("ACK");
        let branch = self.branch(&m, from);
        // The part that does not depend on the top Via: the same request
        // back on the same side of this flow, whoever forwarded it since.
        let same_request = &branch[..branch.len() - 8];
        if m.header_list("Via")
            .iter()
            .any(|v| msg::param(v, "branch").is_some_and(|b| b.starts_with(same_request)))
        {
            if is_ack {
                return Outcome::refused("looped ACK", None);
            }
            let r = msg::response(&m, 482, "Loop Detected", None).to_bytes();
            return Outcome::refused("loop", Some(Self::back(from, r)));
        }
        let mf = match m.header("Max-Forwards") {
            // Validated (0..=255) by the parser.
            Some(v) => v.trim().parse::<u32>().unwrap_or(70),
            None => 70,
        };
        if mf == 0 {
            if is_ack {
                return Outcome::refused("ACK out of hops", None);
            }
            let r = msg::response(&m, 483, "Too Many Hops", None).to_bytes();
            return Outcome::refused("too many hops", Some(Self::back(from, r)));
        }
        let mut out = m.clone();
        out.set_header("Max-Forwards", (mf - 1).to_string());
        self.pop_own_routes(&mut out);
        let dialog = creates_dialog(&out);
        let retransmit =
            (from == Side::Browser).then(|| (branch.clone(), m.method().unwrap_or("").to_string()));
        match from {
            Side::Browser => {
                if m.method() == Some("REGISTER") {
                    self.user_agent = m.header("User-Agent").map(str::to_string);
                    self.last_register = Some(m.clone());
                }
                self.rewrite_contacts(&mut out);
                if dialog {
                    // The PBX-side entry on top: the far end reaches us by it.
                    push_top(&mut out, "Record-Route", self.browser_rr());
                    push_top(&mut out, "Record-Route", self.upstream_rr());
                }
                push_top(&mut out, "Via", self.upstream_via(&branch));
            }
            Side::Upstream => {
                self.restore_ruri(&mut out);
                self.restore_contacts(&mut out);
                if dialog {
                    // The browser-side entry on top: the browser is the UAS.
                    push_top(&mut out, "Record-Route", self.upstream_rr());
                    push_top(&mut out, "Record-Route", self.browser_rr());
                }
                push_top(&mut out, "Via", self.browser_via(&branch));
            }
        }
        self.note_request(&m, &out, from, &branch);
        let action = match from {
            Side::Browser => Action::ToUpstream(out.to_bytes()),
            Side::Upstream => Action::ToBrowser(out.to_bytes()),
        };
        Outcome {
            send: Some(action),
            relayed: Some(m),
            retransmit,
            ..Outcome::default()
        }
    }

    fn response(&mut self, m: Msg, from: Side) -> Outcome {
        let ours = format!("{BRANCH_PREFIX}{}x", self.id);
        if !m.top_branch().starts_with(&ours) {
            return Outcome::refused("response whose top Via is not ours", None);
        }
        let mut out = m.clone();
        pop_top(&mut out, "Via");
        if out.header("Via").is_none() {
            // The answer to a BYE or CANCEL of our own.
            let mut o = Outcome::refused("answer to a request of the relay's own", None);
            o.own_answer = m
                .code()
                .map(|c| (m.top_branch().to_string(), m.cseq().1.to_string(), c));
            return o;
        }
        self.note_response(&m);
        let mut reg = None;
        let action = match from {
            Side::Browser => {
                self.rewrite_contacts(&mut out);
                Action::ToUpstream(out.to_bytes())
            }
            Side::Upstream => {
                if m.cseq().1 == "REGISTER" && (200..300).contains(&m.code().unwrap_or(0)) {
                    reg = self.registration(&m);
                    self.registered = reg
                        .as_ref()
                        .filter(|r| r.expires > 0)
                        .and(self.last_register.clone());
                }
                self.restore_contacts(&mut out);
                Action::ToBrowser(out.to_bytes())
            }
        };
        Outcome {
            send: Some(action),
            relayed: Some(m),
            reg,
            ..Outcome::default()
        }
    }

    /// Remembers what a request relayed from `from` says of its INVITE
    /// dialog (`m` as received, `out` as forwarded with `branch`).
    fn note_request(&mut self, m: &Msg, out: &Msg, from: Side, branch: &str) {
        let call_id = m.call_id();
        let to_tag = m.header("To").and_then(msg::tag);
        match (m.method(), to_tag) {
            (Some("INVITE"), None) => {
                if self.dialogs.len() >= MAX_DIALOGS && !self.dialogs.contains_key(call_id) {
                    return;
                }
                // A new INVITE of the same call (after a challenge) replaces
                // the last one.
                self.dialogs.insert(
                    call_id.to_string(),
                    Dialog {
                        caller: from,
                        from: m.header("From").unwrap_or("").to_string(),
                        to: m.header("To").unwrap_or("").to_string(),
                        cseq: m.cseq().0,
                        caller_contact: m
                            .first_in_header("Contact")
                            .map(|c| msg::addr_uri(c).to_string()),
                        fwd_ruri: out.ruri().to_string(),
                        fwd_branch: branch.to_string(),
                        fwd_routes: out
                            .header_list("Route")
                            .into_iter()
                            .map(str::to_string)
                            .collect(),
                        answered: None,
                        cseq_from_caller: m.cseq().0,
                        cseq_from_callee: 0,
                    },
                );
            }
            (Some("BYE"), Some(_)) => {
                self.dialogs.remove(call_id);
            }
            (Some(method), Some(_)) if method != "ACK" && method != "CANCEL" => {
                if let Some(d) = self.dialogs.get_mut(call_id) {
                    let n = m.cseq().0;
                    if from == d.caller {
                        d.cseq_from_caller = d.cseq_from_caller.max(n);
                    } else {
                        d.cseq_from_callee = d.cseq_from_callee.max(n);
                    }
                }
            }
            _ => {}
        }
    }

    /// Remembers the answer to an INVITE (the callee's tag, Contact and the
    /// route set), or forgets a call that failed.
    fn note_response(&mut self, m: &Msg) {
        if m.cseq().1 != "INVITE" {
            return;
        }
        let code = m.code().unwrap_or(0);
        let Some(d) = self.dialogs.get_mut(m.call_id()) else {
            return;
        };
        if d.answered.is_some() || m.cseq().0 != d.cseq {
            return;
        }
        match code {
            200..=299 => {
                d.answered = Some(Answered {
                    to: m.header("To").unwrap_or("").to_string(),
                    contact: m
                        .first_in_header("Contact")
                        .map(|c| msg::addr_uri(c).to_string())
                        .unwrap_or_default(),
                    record_route: m
                        .header_list("Record-Route")
                        .into_iter()
                        .map(str::to_string)
                        .collect(),
                });
            }
            300.. => {
                self.dialogs.remove(m.call_id());
            }
            _ => {}
        }
    }

    /// The browser is gone: a REGISTER that removes this flow's binding at
    /// the PBX (`Expires: 0` for our Contact, the browser's last REGISTER
    /// otherwise, CSeq one higher, no credentials: the relay has none).
    /// `None` when the PBX holds no binding of this flow. A PBX that
    /// challenges it keeps the binding until it expires.
    pub fn unregister(&mut self) -> Option<OwnRequest> {
        let last = self.registered.take()?;
        let contact = last.first_in_header("Contact").map(msg::addr_uri)?;
        let user = msg::uri_user(contact).unwrap_or("");
        let ours = format!("<{}>;expires=0", self.contact_uri(user));
        let (n, _) = last.cseq();
        let call_id = last.call_id().to_string();
        let branch = self.own_branch(&call_id, Side::Upstream, n.saturating_add(1));
        let mut t = format!(
            "REGISTER {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\n",
            last.ruri(),
            self.upstream_via(&branch)
        );
        for h in ["From", "To"] {
            let _ = write!(t, "{h}: {}\r\n", last.header(h).unwrap_or(""));
        }
        let _ = write!(
            t,
            "Call-ID: {call_id}\r\nCSeq: {} REGISTER\r\nContact: {ours}\r\nExpires: 0\r\n\
             User-Agent: centralita relay\r\nContent-Length: 0\r\n\r\n",
            n.saturating_add(1)
        );
        Some(OwnRequest {
            send: Action::ToUpstream(t.into_bytes()),
            branch,
            method: "REGISTER".into(),
        })
    }

    /// Whether this flow can end call `call_id` ([`Self::hang_up`]).
    pub fn knows_dialog(&self, call_id: &str) -> bool {
        self.dialogs.contains_key(call_id)
    }

    /// Ends call `call_id` from here (a hang-up from the console): once
    /// answered, a BYE to each party, each along its own route set from
    /// this point (Route entries beyond ours toward it); while it rings, a
    /// CANCEL of our INVITE toward the callee (its 487 reaches the caller
    /// as any answer does). Nothing when this flow does not know the call.
    pub fn hang_up(&mut self, call_id: &str) -> Vec<OwnRequest> {
        let Some(d) = self.dialogs.remove(call_id) else {
            return Vec::new();
        };
        let callee = other(d.caller);
        let Some(a) = &d.answered else {
            let head = format!("CANCEL {} SIP/2.0", d.fwd_ruri);
            let text = self.own_request(
                &head,
                callee,
                &d.fwd_branch,
                &d.fwd_routes,
                &d.from,
                &d.to,
                call_id,
                &format!("{} CANCEL", d.cseq),
            );
            return vec![OwnRequest {
                send: Self::back(callee, text),
                branch: d.fwd_branch.clone(),
                method: "CANCEL".into(),
            }];
        };
        let ours = |rr: &String| self.is_mine(msg::addr_uri(rr));
        // Top first: entries above ours were added on the callee's side.
        let first = a.record_route.iter().position(ours);
        let last = a.record_route.iter().rposition(ours);
        let toward_callee: Vec<String> = a.record_route[..first.unwrap_or(a.record_route.len())]
            .iter()
            .rev()
            .cloned()
            .collect();
        let toward_caller: Vec<String> = match last {
            Some(i) => a.record_route[i + 1..].to_vec(),
            None => Vec::new(),
        };
        let mut out = Vec::new();
        let mut bye =
            |to_side: Side, ruri: &str, routes: &[String], from: &str, to: &str, n: u32| {
                let branch = self.own_branch(call_id, to_side, n);
                let text = self.own_request(
                    &format!("BYE {ruri} SIP/2.0"),
                    to_side,
                    &branch,
                    routes,
                    from,
                    to,
                    call_id,
                    &format!("{n} BYE"),
                );
                out.push(OwnRequest {
                    send: Self::back(to_side, text),
                    branch,
                    method: "BYE".into(),
                });
            };
        if !a.contact.is_empty() {
            let n = d.cseq.max(d.cseq_from_caller).saturating_add(1);
            bye(callee, &a.contact, &toward_callee, &d.from, &a.to, n);
        }
        if let Some(c) = &d.caller_contact {
            let n = d.cseq_from_callee.saturating_add(1);
            bye(d.caller, c, &toward_caller, &a.to, &d.from, n);
        }
        out
    }

    /// The browser's flow closed: what the PBX's side of its calls must
    /// hear, so nobody is left talking to a closed tab. A BYE to the PBX's
    /// party of every answered call, a CANCEL of every INVITE of the
    /// browser's still ringing. An INVITE from the PBX still ringing at
    /// the browser gets nothing: the relay keeps no transaction to answer
    /// it with, and the PBX's own timer ends it.
    pub fn abandon(&mut self) -> Vec<OwnRequest> {
        let calls: Vec<String> = self.dialogs.keys().cloned().collect();
        calls
            .iter()
            .flat_map(|call_id| self.hang_up(call_id))
            .filter(|r| matches!(r.send, Action::ToUpstream(_)))
            .collect()
    }

    /// A branch of ours for a request of our own.
    fn own_branch(&self, call_id: &str, to: Side, cseq: u32) -> String {
        let mut h = Md5::new();
        h.update(b"own");
        h.update([u8::from(to == Side::Browser)]);
        h.update(call_id.as_bytes());
        h.update(cseq.to_be_bytes());
        let d = h.finalize();
        format!("{BRANCH_PREFIX}{}x{}", self.id, hex::encode(&d[..8]))
    }

    /// The bytes of a request of our own toward `to`.
    #[allow(clippy::too_many_arguments)]
    fn own_request(
        &self,
        start: &str,
        to: Side,
        branch: &str,
        routes: &[String],
        from_h: &str,
        to_h: &str,
        call_id: &str,
        cseq: &str,
    ) -> Vec<u8> {
        let via = match to {
            Side::Upstream => self.upstream_via(branch),
            Side::Browser => self.browser_via(branch),
        };
        let mut t = format!("{start}\r\nVia: {via}\r\n");
        for r in routes {
            let _ = write!(t, "Route: {r}\r\n");
        }
        let _ = write!(
            t,
            "Max-Forwards: 70\r\nFrom: {from_h}\r\nTo: {to_h}\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq}\r\nUser-Agent: centralita relay\r\nContent-Length: 0\r\n\r\n"
        );
        t.into_bytes()
    }

    /// What a 2xx to REGISTER says about this flow's binding.
    fn registration(&self, m: &Msg) -> Option<RegChange> {
        let to = m.header("To")?;
        let user = msg::uri_user(msg::addr_uri(to))?.to_string();
        let default = m
            .header("Expires")
            .and_then(|e| e.trim().parse::<u32>().ok())
            .unwrap_or(0);
        let id = self.id.to_string();
        let mut contact = None;
        let mut expires = 0;
        for c in m.header_list("Contact") {
            let uri = msg::addr_uri(c);
            if msg::param(uri, MARK) != Some(id.as_str()) {
                continue;
            }
            let e = msg::param(c, "expires")
                .and_then(|e| e.parse::<u32>().ok())
                .unwrap_or(default);
            if contact.is_none() || e > expires {
                expires = e;
                contact = self.contacts.get(msg::uri_user(uri).unwrap_or("")).cloned();
            }
        }
        // None of ours listed: the binding is gone; the last one we sent.
        let contact = contact
            .or_else(|| self.contacts.values().next().cloned())
            .unwrap_or_default();
        Some(RegChange {
            user,
            expires,
            contact,
            user_agent: self.user_agent.clone(),
        })
    }

    /// The branch for forwarding `m` from `from`: the same for a request's
    /// retransmissions, its CANCEL and the ACK of its non-2xx answer (same
    /// top Via branch, Request-URI, Call-ID, From tag and CSeq number; not
    /// the To tag, which that ACK has and the INVITE had not), RFC 3261
    /// §16.11; the first part alone, found in a Via of a request arriving
    /// on the same side, means it looped.
    fn branch(&self, m: &Msg, from: Side) -> String {
        let mut h = Md5::new();
        h.update([u8::from(from == Side::Browser)]);
        for part in [
            m.ruri(),
            m.call_id(),
            m.header("From").and_then(msg::tag).unwrap_or(""),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.update(m.cseq().0.to_be_bytes());
        let core = h.finalize();
        let mut t = Md5::new();
        t.update(m.top_branch().as_bytes());
        let top = t.finalize();
        format!(
            "{BRANCH_PREFIX}{}x{}{}",
            self.id,
            hex::encode(&core[..6]),
            hex::encode(&top[..4])
        )
    }

    fn upstream_via(&self, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {};rport;branch={branch}",
            self.transport.via(),
            self.local
        )
    }

    fn browser_via(&self, branch: &str) -> String {
        let t = if self.secure { "WSS" } else { "WS" };
        format!("SIP/2.0/{t} {BROWSER_HOST};branch={branch}")
    }

    fn upstream_rr(&self) -> String {
        format!(
            "<sip:{};transport={};lr;{MARK}={}>",
            self.local,
            self.transport.as_str(),
            self.id
        )
    }

    fn browser_rr(&self) -> String {
        let t = if self.secure { "wss" } else { "ws" };
        format!("<sip:{BROWSER_HOST};transport={t};lr;{MARK}={}>", self.id)
    }

    /// Our URI for the browser's contact `user`.
    fn contact_uri(&self, user: &str) -> String {
        let at = if user.is_empty() { "" } else { "@" };
        format!(
            "sip:{user}{at}{};transport={};{MARK}={}",
            self.local,
            self.transport.as_str(),
            self.id
        )
    }

    fn is_mine(&self, uri: &str) -> bool {
        msg::param(uri, MARK).is_some_and(|v| v == self.id.to_string())
    }

    /// Removes the Route entries of this flow at the top of the set.
    fn pop_own_routes(&self, m: &mut Msg) {
        while let Some(top) = m.first_in_header("Route") {
            if !self.is_mine(msg::addr_uri(top)) {
                break;
            }
            pop_top(m, "Route");
        }
    }

    /// Browser → PBX: every Contact (but `*`) points at this flow.
    fn rewrite_contacts(&mut self, m: &mut Msg) {
        self.map_contacts(m, |me, el, uri| {
            let user = msg::uri_user(uri).unwrap_or("").to_string();
            let new = me.contact_uri(&user);
            me.contacts.insert(user, uri.to_string());
            // reg-id names an RFC 5626 flow to the browser, which ends here.
            let el = msg::strip_param(el, "reg-id");
            Some(format!("<{new}>{}", header_params(&el)))
        });
    }

    /// PBX → browser: Contacts of this flow become the browser's own again.
    fn restore_contacts(&mut self, m: &mut Msg) {
        self.map_contacts(m, |me, el, uri| {
            if !me.is_mine(uri) {
                return None;
            }
            let user = msg::uri_user(uri).unwrap_or("");
            let orig = me.contacts.get(user)?;
            Some(format!("<{orig}>{}", header_params(el)))
        });
    }

    fn map_contacts(
        &mut self,
        m: &mut Msg,
        mut f: impl FnMut(&mut Self, &str, &str) -> Option<String>,
    ) {
        let mut headers = std::mem::take(&mut m.headers);
        for (name, value) in headers.iter_mut() {
            if name != "Contact" {
                continue;
            }
            let mut items = Vec::new();
            for el in msg::split_list(value) {
                if el == "*" {
                    items.push(el.to_string());
                    continue;
                }
                let uri = msg::addr_uri(el);
                items.push(f(self, el, uri).unwrap_or_else(|| el.to_string()));
            }
            *value = items.join(", ");
        }
        m.headers = headers;
    }

    /// A request the PBX sends to a contact of this flow goes to the
    /// browser's own contact URI.
    fn restore_ruri(&self, m: &mut Msg) {
        let Start::Request { uri, .. } = &mut m.start else {
            return;
        };
        if !self.is_mine(uri) {
            return;
        }
        let user = msg::uri_user(uri).unwrap_or("");
        if let Some(orig) = self.contacts.get(user) {
            *uri = orig.clone();
        }
    }
}

/// Header parameters of a Contact element (`;expires=…;+sip.instance=…`),
/// with their leading `;`.
fn header_params(el: &str) -> &str {
    let uri = msg::addr_uri(el);
    let Some(start) = el.find(uri) else {
        return "";
    };
    let rest = &el[start + uri.len()..];
    let rest = rest.strip_prefix('>').unwrap_or(rest);
    rest.trim()
}

fn creates_dialog(m: &Msg) -> bool {
    matches!(m.method(), Some("INVITE" | "SUBSCRIBE" | "REFER"))
        && m.header("To").and_then(msg::tag).is_none()
}

/// Puts `value` above every `name` header (a new top Via, Record-Route).
fn push_top(m: &mut Msg, name: &str, value: String) {
    let at = m
        .headers
        .iter()
        .position(|(n, _)| n.eq_ignore_ascii_case(name))
        .unwrap_or(0);
    m.headers.insert(at, (name.to_string(), value));
}

/// Removes the first element of the first `name` header.
fn pop_top(m: &mut Msg, name: &str) {
    let Some(i) = m
        .headers
        .iter()
        .position(|(n, _)| n.eq_ignore_ascii_case(name))
    else {
        return;
    };
    let items = msg::split_list(&m.headers[i].1);
    if items.len() <= 1 {
        m.headers.remove(i);
    } else {
        m.headers[i].1 = items[1..].join(", ");
    }
}

/// Long names of the compact header forms (RFC 3261 §7.3.3 and extensions).
const COMPACT: &[(&str, &str)] = &[
    ("v", "Via"),
    ("f", "From"),
    ("t", "To"),
    ("i", "Call-ID"),
    ("m", "Contact"),
    ("l", "Content-Length"),
    ("c", "Content-Type"),
    ("k", "Supported"),
];

/// Framing only: start line, headers (names in the parser's canonical
/// form for the ones the relay reads), body by Content-Length; the five
/// mandatory headers and a numeric CSeq must be there. `None` otherwise.
fn lenient_parse(data: &[u8], limits: &Limits) -> Option<Msg> {
    if data.len() > limits.max_bytes {
        return None;
    }
    let text = std::str::from_utf8(data).ok()?;
    let text = text.trim_start_matches(['\r', '\n']);
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let start_line = lines.next()?;
    let start = if let Some(r) = start_line.strip_prefix("SIP/2.0 ") {
        let (code, reason) = r.split_once(' ').unwrap_or((r, ""));
        let code: u16 = code.parse().ok().filter(|c| (100..700).contains(c))?;
        Start::Response {
            code,
            reason: reason.to_string(),
        }
    } else {
        let mut p = start_line.split(' ');
        let (method, uri, ver) = (p.next()?, p.next()?, p.next()?);
        if ver != "SIP/2.0" || p.next().is_some() || method.is_empty() {
            return None;
        }
        Start::Request {
            method: method.to_string(),
            uri: uri.to_string(),
        }
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            let last = headers.last_mut()?;
            last.1.push(' ');
            last.1.push_str(line.trim());
            continue;
        }
        let (name, value) = line.split_once(':')?;
        let name = name.trim();
        let known = [
            "Via",
            "From",
            "To",
            "Call-ID",
            "CSeq",
            "Contact",
            "Max-Forwards",
            "Route",
            "Record-Route",
            "Content-Length",
            "Expires",
        ];
        let canon = COMPACT
            .iter()
            .find(|(c, _)| name.eq_ignore_ascii_case(c))
            .map(|(_, l)| *l)
            .or_else(|| known.iter().copied().find(|k| name.eq_ignore_ascii_case(k)))
            .unwrap_or(name);
        headers.push((canon.to_string(), value.trim().to_string()));
        if headers.len() > limits.max_headers {
            return None;
        }
    }
    let mut m = Msg {
        start,
        headers,
        body: Vec::new(),
    };
    for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
        m.header(h)?;
    }
    let cseq = m.header("CSeq")?;
    let mut it = cseq.split_ascii_whitespace();
    it.next()?.parse::<u32>().ok()?;
    let cseq_method = it.next()?;
    if m.method().is_some_and(|x| x != cseq_method) {
        return None;
    }
    if let Some(mf) = m.header("Max-Forwards") {
        mf.trim().parse::<u8>().ok()?;
    }
    let body = rest.as_bytes();
    let len = match m.header("Content-Length") {
        Some(l) => l.trim().parse::<usize>().ok()?,
        None => body.len(),
    };
    m.body = body.get(..len)?.to_vec();
    Some(m)
}

/// A message that does not parse: a request is answered (400, or what the
/// parser says: 505, 513) when the headers needed to address an answer can
/// be read from it; anything else is dropped.
fn malformed(data: &[u8], e: msg::ParseError, side: Side) -> Outcome {
    let text = String::from_utf8_lossy(data);
    let text = text.trim_start_matches(['\r', '\n']);
    if text.starts_with("SIP/") {
        // Nobody to answer a response to.
        return Outcome::refused(e.reason, None);
    }
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let mut keep: Vec<(&str, &str)> = Vec::new();
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let canon = match name.trim().to_ascii_lowercase().as_str() {
            "via" | "v" => "Via",
            "from" | "f" => "From",
            "to" | "t" => "To",
            "call-id" | "i" => "Call-ID",
            "cseq" => "CSeq",
            _ => continue,
        };
        keep.push((canon, value.trim()));
    }
    let has = |n: &str| keep.iter().any(|(k, _)| *k == n);
    if !["Via", "From", "To", "Call-ID", "CSeq"]
        .iter()
        .all(|n| has(n))
        || head.starts_with("ACK ")
    {
        return Outcome::refused(e.reason, None);
    }
    let reason = match e.status {
        505 => "Version Not Supported",
        513 => "Message Too Large",
        _ => "Bad Request",
    };
    let mut out = String::new();
    let _ = write!(out, "SIP/2.0 {} {reason}\r\n", e.status);
    for (n, v) in keep {
        let _ = write!(out, "{n}: {v}\r\n");
    }
    let _ = write!(out, "Warning: 399 relay \"{}\"\r\n", e.reason);
    out.push_str("Content-Length: 0\r\n\r\n");
    let bytes = out.into_bytes();
    Outcome::refused(e.reason, Some(FlowCore::back(side, bytes)))
}

#[cfg(test)]
mod tests;
