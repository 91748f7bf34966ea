//! The endpoint: every message enters here and is routed — a response to
//! the call that sent the request, a retransmission to the transaction
//! layer, a REGISTER to authentication and the registrar, a request
//! inside a call to that call, a new INVITE through authentication and the
//! routing decision to a new call. It owns the parts; the parts never call
//! back into it.

use super::auth::{Auth, Authenticator};
use super::call::{session_timer, Lost, Plan, Side, TrunkPlan};
use super::calls::Calls;
use super::ctx::Ctx;
use super::inbound::{self, Inbound, InboundTrunk};
use super::media::{MediaEvent, MediaPlane, NoMedia};
use super::msg::{self, response, Msg, ParseError, Start};
use super::outbound::{Outbound, OutboundPolicy, OutboundTrunk, OutboundTrunkError};
use super::outbound_reg::{OutboundRegs, TrunkConfigError, TrunkRegistration, TrunkStatus};
use super::registrar::location::Binding;
use super::registrar::Registrar;
use super::rng::Rng;
use super::security;
use super::txn::{TxnKey, Txns};
use super::types::{
    Account, BindingRecord, CoreConfig, Lookup, Outbox, Output, Source, ALLOW, UDP_FLOW,
};
use domain::call_events::{CallEventKind, Party};
use domain::calls::Direction;
use domain::routing::{self, AgentTarget, Decision, Directory};
use std::sync::Arc;

mod originate;
use originate::Originations;
pub use originate::{OriginateError, OriginateRequest};

/// How often registrations, nonces, bans and negative cache entries are swept.
const SWEEP_MS: u64 = 1_000;

pub struct Core {
    io: Io,
    auth: Authenticator,
    registrar: Registrar,
    calls: Calls,
    /// Our own registrations to carriers (trunks).
    trunks: OutboundRegs,
    /// The trunks we take calls from, and the DID routes.
    inbound: Inbound,
    last_sweep_ms: u64,
    /// Requests dropped because their User-Agent is a scanner's.
    scanners_dropped: u64,
    /// REGISTER and INVITE requests handled (retransmissions not counted);
    /// plain fields of the locked core, read at scrape time (metrics).
    registers: u64,
    invites: u64,
    /// Click-to-call in progress (`originate.rs`).
    originations: Originations,
}

/// Security counters of the core (exposed through the engine status).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecurityStats {
    /// Requests dropped unanswered because of a scanner User-Agent.
    pub scanners_dropped: u64,
    /// Authentication attempts refused (403, unchecked) because their
    /// account was guarded and the address had never authenticated as it.
    pub guarded_refused: u64,
    /// Account guards started (repeated failures on one username).
    pub accounts_guarded: u64,
    /// Failed authentications counted against source addresses.
    pub auth_failures: u64,
    /// Source addresses banned (each ban started).
    pub bans: u64,
    /// REGISTER requests handled (not retransmissions).
    pub registers: u64,
    /// INVITE requests handled (initial and re-INVITEs; not retransmissions).
    pub invites: u64,
}

/// What calls borrow while they handle an input (see [`Ctx`]), kept apart
/// from the parts that route to them so both can be borrowed at once.
struct Io {
    cfg: CoreConfig,
    txn: Txns,
    rng: Rng,
    out: Outbox,
    media: Box<dyn MediaPlane>,
    outbound: Outbound,
    /// The time of the input being handled (outputs are polled without
    /// one, and an originate's synthetic caller acts on them).
    now_ms: u64,
}

impl Io {
    fn ctx(&mut self, now_ms: u64) -> Ctx<'_> {
        self.now_ms = self.now_ms.max(now_ms);
        Ctx {
            now_ms,
            cfg: &self.cfg,
            out: &mut self.out,
            txn: &mut self.txn,
            rng: &mut self.rng,
            media: self.media.as_mut(),
            outbound: &mut self.outbound,
        }
    }
}

/// Routing's view of the account cache and the location table.
struct CachedDirectory<'a> {
    auth: &'a Authenticator,
    registrar: &'a Registrar,
    now_ms: u64,
    /// `None` when no trunk is configured.
    outbound: Option<OutboundView<'a>>,
}

/// The outbound figures of one decision, gathered before it.
struct OutboundView<'a> {
    policy: &'a OutboundPolicy,
    trunks: Vec<domain::dialplan::TrunkState>,
    rights: super::outbound::DialRights,
    usage: domain::dialplan::OutboundUsage,
    /// An originate's campaign trunks (they replace the route's).
    campaign_trunks: Option<Vec<i64>>,
}

impl Directory for CachedDirectory<'_> {
    fn agent(&self, number: &str) -> Option<AgentTarget> {
        let a = self
            .auth
            .accounts
            .cached(&Lookup::Extension(number.to_string()))
            .or_else(|| {
                self.auth
                    .accounts
                    .cached(&Lookup::Username(number.to_string()))
            })?;
        Some(AgentTarget {
            username: a.username.clone(),
            extension: a.extension.clone(),
            agent_id: a.user_id,
        })
    }

    fn live_contacts(&self, username: &str) -> usize {
        self.registrar
            .location()
            .bindings(username)
            .iter()
            .filter(|b| b.expires_at_ms > self.now_ms && b.reachable())
            .count()
    }

    fn outbound(&self, _caller: &routing::Caller<'_>) -> Option<routing::Outbound<'_>> {
        let o = self.outbound.as_ref()?;
        Some(routing::Outbound {
            routes: &o.policy.routes,
            plan: &o.policy.plan,
            trunks: &o.trunks,
            permission: o.rights.permission,
            limits: o.rights.limits,
            usage: o.usage,
            campaign_trunks: o.campaign_trunks.as_deref(),
        })
    }
}

impl Core {
    pub fn new(cfg: CoreConfig) -> Self {
        Core {
            auth: Authenticator::new(
                cfg.realm.clone(),
                cfg.sha256_user_agents.clone(),
                cfg.secret,
                cfg.nonce_lifetime_ms,
                cfg.ban,
                cfg.account_guard,
                cfg.seed.rotate_left(32),
            ),
            registrar: Registrar::new(
                cfg.min_expires,
                cfg.max_expires,
                cfg.default_expires,
                cfg.max_contacts,
            ),
            calls: Calls::default(),
            trunks: OutboundRegs::new(cfg.seed.rotate_left(17), cfg.local_host.clone())
                .with_tls_host(cfg.tls_host.clone()),
            inbound: Inbound::default(),
            last_sweep_ms: 0,
            scanners_dropped: 0,
            registers: 0,
            invites: 0,
            originations: Originations::default(),
            io: Io {
                txn: Txns::default(),
                rng: Rng::new(cfg.seed),
                out: Outbox::new(),
                media: Box::new(NoMedia),
                outbound: Outbound::default(),
                now_ms: 0,
                cfg,
            },
        }
    }

    pub fn config(&self) -> &CoreConfig {
        &self.io.cfg
    }

    /// Plugs in the media plane anchored calls use (`cfg.anchor` says
    /// which calls are anchored; without a plane they are refused).
    pub fn set_media_plane(&mut self, plane: Box<dyn MediaPlane>) {
        self.io.media = plane;
    }

    // ---- outputs and getters ----

    pub fn poll_output(&mut self) -> Option<Output> {
        loop {
            match self.io.out.pop_front()? {
                // Meant for an originate's synthetic caller, not the wire.
                Output::Transmit { to, data } if to.flow >= originate::FLOW_BASE => {
                    self.deliver_to_synthetic_caller(to, &data);
                }
                o => return Some(o),
            }
        }
    }

    /// The next instant `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> u64 {
        let sweep = self.last_sweep_ms + SWEEP_MS;
        [
            Some(sweep),
            self.io.txn.next_deadline(),
            self.calls.next_deadline(),
            self.trunks.poll_timeout(),
            self.originations.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(sweep)
    }

    pub fn banned(&self, now_ms: u64) -> Vec<security::Banned> {
        self.auth.guard().banned(now_ms)
    }

    /// Lifts the ban on `ip`; true when it was known.
    pub fn unban(&mut self, ip: std::net::IpAddr) -> bool {
        self.auth.guard_mut().forgive(ip)
    }

    pub fn security_stats(&self) -> SecurityStats {
        let g = self.auth.account_guard();
        SecurityStats {
            scanners_dropped: self.scanners_dropped,
            guarded_refused: g.refused,
            accounts_guarded: g.locks,
            auth_failures: self.auth.guard().failures_total,
            bans: self.auth.guard().bans_total,
            registers: self.registers,
            invites: self.invites,
        }
    }

    /// Digest responses computed so far (tests compare code paths with it).
    #[cfg(test)]
    pub(crate) fn digests_computed(&self) -> u64 {
        self.auth.digests_computed()
    }

    pub fn bindings(&self, username: &str) -> &[Binding] {
        self.registrar.location().bindings(username)
    }

    pub fn registered_contacts(&self) -> usize {
        self.registrar.location().total()
    }

    pub fn active_calls(&self) -> usize {
        self.calls.live()
    }

    /// Every trunk's outbound registration.
    pub fn trunk_statuses(&self) -> Vec<TrunkStatus> {
        self.trunks.statuses()
    }

    // ---- inputs ----

    /// Loads an account into the cache (warm-up or refresh).
    pub fn cache_account(&mut self, a: Account) {
        self.auth.accounts.insert(a, 0);
    }

    /// The account changed (deactivated, deleted, password rotated): forget
    /// it and, when asked, drop its bindings.
    pub fn invalidate_account(&mut self, username: &str, drop_bindings: bool) {
        let ext = self
            .auth
            .accounts
            .extension_of(username)
            .unwrap_or("")
            .to_string();
        self.auth.accounts.forget(username);
        if drop_bindings {
            self.registrar.remove_all(username, &ext, &mut self.io.out);
        }
    }

    /// Restores a persisted binding at startup.
    pub fn restore_binding(&mut self, r: BindingRecord) {
        // It registered from there: it keeps working if the account is
        // guarded before the phone re-registers.
        self.auth
            .account_guard_mut()
            .trust(&r.username, r.source.ip(), r.registered_at_ms);
        self.registrar.restore(r);
    }

    /// Replaces the set of trunks that register to carriers (see
    /// [`OutboundRegs::set`]); on an error nothing changes.
    pub fn set_trunk_registrations(
        &mut self,
        now_ms: u64,
        regs: Vec<(TrunkRegistration, Option<std::net::SocketAddr>)>,
    ) -> Result<(), TrunkConfigError> {
        let r = self.trunks.set(now_ms, regs);
        self.drain_trunks();
        r
    }

    /// Replaces the trunks calls go out through and the dial plan (see
    /// [`Outbound::set`]); on an error nothing changes.
    pub fn set_outbound_trunks(
        &mut self,
        trunks: Vec<(OutboundTrunk, Option<std::net::SocketAddr>)>,
        policy: OutboundPolicy,
    ) -> Result<(), OutboundTrunkError> {
        self.io.outbound.set(trunks, policy)
    }

    /// Replaces the trunks calls are taken from and the DID routes (see
    /// `inbound.rs`). Calls up are not affected.
    pub fn set_inbound(
        &mut self,
        trunks: Vec<InboundTrunk>,
        routes: Arc<domain::dids::InboundRoutes>,
    ) {
        self.inbound.set(trunks, routes);
        self.auth.trunk_accounts = self.inbound.accounts();
    }

    /// Channels of trunk `id` in use now.
    pub fn trunk_channels_in_use(&self, id: i64) -> u32 {
        self.io.outbound.channels_in_use(id)
    }

    /// Registers trunk `key` now (see [`OutboundRegs::force`]).
    pub fn force_trunk_registration(&mut self, now_ms: u64, key: &str) -> bool {
        let found = self.trunks.force(now_ms, key);
        self.drain_trunks();
        found
    }

    /// Answer to an [`Output::Lookup`]: the parked requests are replayed.
    pub fn handle_lookup(&mut self, now_ms: u64, key: Lookup, found: Option<Account>) {
        match found {
            Some(a) => self.auth.accounts.insert(a, now_ms),
            None => self.auth.accounts.remember_unknown(key.clone(), now_ms),
        }
        for (src, m) in self.auth.accounts.take_parked(&key) {
            self.dispatch(now_ms, src, m);
        }
    }

    /// The lookup behind an [`Output::Lookup`] failed (database down): the
    /// parked requests are dropped unanswered, nothing is cached, and the
    /// clients' retransmissions will try again.
    pub fn handle_lookup_failed(&mut self, key: Lookup) {
        self.auth.accounts.take_parked(&key);
    }

    /// A TCP/TLS/WS connection closed: its calls end, its bindings go.
    pub fn handle_flow_closed(&mut self, now_ms: u64, flow: u64) {
        let mut ctx = self.io.ctx(now_ms);
        self.calls.handle_lost(&mut ctx, Lost::Flow(flow));
        self.originate_lost(now_ms, Lost::Flow(flow));
        let accounts = &self.auth.accounts;
        let ext_of = |u: &str| accounts.extension_of(u).unwrap_or("").to_string();
        self.registrar.flow_closed(flow, &ext_of, &mut self.io.out);
    }

    /// `to`, a TCP/TLS contact restored after a restart (no flow of its
    /// own: `to.flow` is [`UDP_FLOW`]), could not be reached: the shell's
    /// connection to it failed, or closed. Its calls treat it as a lost
    /// connection: a ringing fork fails at once (480, as when the phone's
    /// own connection closes) instead of waiting for the ring timeout, an
    /// answered call ends with a BYE to the other side. The binding stays:
    /// the phone may be back by the next call, and its next REGISTER
    /// replaces it anyway.
    pub fn handle_contact_lost(&mut self, now_ms: u64, to: Source) {
        let mut ctx = self.io.ctx(now_ms);
        self.calls.handle_lost(&mut ctx, Lost::Contact(to));
        // It may be a trunk's registrar we connected to.
        self.trunks.handle_transport_lost(now_ms, to);
        self.drain_trunks();
    }

    /// Something the media plane noticed about a call (see [`MediaEvent`]).
    pub fn handle_media_event(&mut self, now_ms: u64, event: MediaEvent) {
        let mut ctx = self.io.ctx(now_ms);
        self.calls.handle_media_event(&mut ctx, event);
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        if now_ms >= self.last_sweep_ms + SWEEP_MS {
            self.last_sweep_ms = now_ms;
            let accounts = &self.auth.accounts;
            let ext_of = |u: &str| accounts.extension_of(u).unwrap_or("").to_string();
            self.registrar.expire(now_ms, &ext_of, &mut self.io.out);
            self.auth.purge(now_ms);
            self.io.outbound.sweep(now_ms);
            self.io.txn.compact();
            self.calls.compact();
        }
        let dead = self.io.txn.poll(now_ms, &mut self.io.out);
        for owner in dead {
            if let super::txn::Owner::Originate { flow } = owner {
                self.originate_txn_timeout(now_ms, flow);
            } else {
                let mut ctx = self.io.ctx(now_ms);
                self.calls.handle_txn_timeout(&mut ctx, owner);
            }
        }
        let mut ctx = self.io.ctx(now_ms);
        self.calls.handle_timeout(&mut ctx);
        self.originate_timeouts(now_ms);
        self.trunks.handle_timeout(now_ms);
        self.drain_trunks();
    }

    /// The server is stopping: every call ends properly (BYE or CANCEL on
    /// each leg, a final answer to ringing callers, an `ended` event).
    pub fn handle_shutdown(&mut self, now_ms: u64) {
        let mut ctx = self.io.ctx(now_ms);
        self.calls.handle_shutdown(&mut ctx);
        // Trunks unregister (Expires: 0) while the sockets are still open.
        self.trunks.shutdown(now_ms);
        self.drain_trunks();
    }

    /// Ends the call recorded as `call_id` (a hang-up request); false
    /// when no such call is ringing or up.
    pub fn hang_up(&mut self, now_ms: u64, call_id: &str) -> bool {
        let mut ctx = self.io.ctx(now_ms);
        self.calls.hang_up(
            &mut ctx,
            call_id,
            domain::call_events::HangupCause::ForcedHangup,
        ) || self.originate_hang_up(now_ms, call_id)
    }

    /// One datagram, WebSocket message or framed stream message.
    pub fn handle_datagram(&mut self, now_ms: u64, src: Source, data: &[u8]) {
        if self.auth.guard().is_banned(src.peer.ip(), now_ms) {
            return;
        }
        if data.iter().all(|b| *b == b'\r' || *b == b'\n') {
            return; // keep-alive
        }
        match Msg::parse(data, &self.io.cfg.limits) {
            Ok(m)
                if m.method().is_some()
                    && m.header("User-Agent").is_some_and(|ua| {
                        security::is_scanner(ua, &self.io.cfg.scanner_user_agents)
                    }) =>
            {
                // Dropped unanswered: a scanner learns nothing, not even
                // that a SIP server listens here.
                self.scanners_dropped = self.scanners_dropped.saturating_add(1);
                tracing::debug!(peer = %src.peer, "request from a scanner User-Agent dropped");
            }
            Ok(m) => self.dispatch(now_ms, src, m),
            Err(e) => {
                if let Some(r) = malformed_reply(data, &e, &self.io.cfg.limits) {
                    tracing::debug!(peer = %src.peer, reason = e.reason, "malformed SIP message");
                    self.io.out.push_back(Output::Transmit {
                        to: src,
                        data: r.to_bytes(),
                    });
                }
            }
        }
    }

    // ---- routing of messages ----

    fn dispatch(&mut self, now_ms: u64, src: Source, mut m: Msg) {
        if m.method().is_some() {
            msg::stamp_top_via(&mut m, src.peer);
        }
        let Start::Request { method, uri } = &m.start else {
            self.handle_response(now_ms, m);
            return;
        };
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
        if m.method() != Some("ACK") && self.io.txn.absorb(&m, src, &mut self.io.out) {
            return;
        }
        match m.method().unwrap_or("") {
            "REGISTER" => {
                self.registers = self.registers.saturating_add(1);
                self.handle_register(now_ms, src, m)
            }
            "INVITE" => {
                self.invites = self.invites.saturating_add(1);
                self.handle_call_request(now_ms, src, m)
            }
            "OPTIONS" if msg::tag(m.header("To").unwrap_or("")).is_none() => {
                let mut r = response(&m, 200, "OK", Some("opt"));
                r.headers.push(("Allow".into(), ALLOW.into()));
                self.reply(now_ms, src, &m, r);
            }
            _ => self.handle_call_request(now_ms, src, m),
        }
    }

    fn handle_response(&mut self, now_ms: u64, m: Msg) {
        if OutboundRegs::owns(m.top_branch()) {
            // An answer to one of our trunk REGISTERs, never a call's.
            self.trunks.handle_response(now_ms, &m);
            self.drain_trunks();
            return;
        }
        let code = m.code().unwrap_or(0);
        let branch = m.top_branch().to_string();
        let (_, method) = m.cseq();
        let key = if method == "CANCEL" {
            TxnKey::Cancel(branch.clone())
        } else {
            TxnKey::Client(branch.clone())
        };
        let originated = Originations::owns_branch(&branch);
        if code >= 200 {
            self.io.txn.stop(&key);
        } else if method != "INVITE" || originated || self.calls.expects(&branch) {
            self.io.txn.quiet(&key);
        }
        if originated && method == "INVITE" {
            self.originate_response(now_ms, m);
            return;
        }
        let mut ctx = self.io.ctx(now_ms);
        self.calls.handle_response(&mut ctx, m);
    }

    fn handle_register(&mut self, now_ms: u64, src: Source, m: Msg) {
        let tag = self.io.rng.token();
        let account = match self
            .auth
            .authenticate(now_ms, src, &m, &tag, &mut self.io.out)
        {
            Auth::Ok(a) => {
                self.flow_authenticated(src);
                a
            }
            Auth::Challenge(r) | Auth::Refuse(r) => {
                // Challenges are not cached: a retransmission gets a new one.
                self.send(src, &r);
                return;
            }
            Auth::Parked => return,
        };
        let r = self
            .registrar
            .handle_register(now_ms, src, &m, &account, &mut self.io.out);
        self.reply(now_ms, src, &m, r);
    }

    /// Every request that is not REGISTER or out-of-dialog OPTIONS.
    fn handle_call_request(&mut self, now_ms: u64, src: Source, m: Msg) {
        if self.originate_in_dialog(now_ms, src, &m) {
            return;
        }
        let method = m.method().unwrap_or("").to_string();
        let in_dialog = msg::tag(m.header("To").unwrap_or("")).is_some();
        let known = self.calls.find(m.call_id());
        let mut ctx = self.io.ctx(now_ms);
        match (method.as_str(), known) {
            ("ACK", Some((id, side))) => {
                self.calls
                    .with(&mut ctx, id, |c, ctx| c.handle_ack(ctx, side, &m));
            }
            ("ACK", None) => {
                ctx.txn.ack(&m);
            }
            ("CANCEL", Some((id, Side::A))) => {
                self.calls
                    .with(&mut ctx, id, |c, ctx| c.handle_cancel(ctx, src, &m));
            }
            ("CANCEL", _) => {
                ctx.reply(
                    src,
                    &m,
                    response(&m, 481, "Call/Transaction Does Not Exist", None),
                );
            }
            ("INVITE", None) if !in_dialog => self.new_call(now_ms, src, m),
            ("INVITE", Some((_, Side::A))) if !in_dialog => {
                // Same Call-ID, new branch: a retransmission we absorbed
                // already, or a loop (RFC 3261 8.2.2.2).
                ctx.reply(src, &m, response(&m, 482, "Loop Detected", None));
            }
            (_, Some((id, side))) if in_dialog => {
                self.calls
                    .with(&mut ctx, id, |c, ctx| c.handle_in_dialog(ctx, side, src, m));
            }
            (_, _) if in_dialog || method == "BYE" => {
                ctx.reply(
                    src,
                    &m,
                    response(&m, 481, "Call/Transaction Does Not Exist", None),
                );
            }
            (
                "MESSAGE" | "SUBSCRIBE" | "NOTIFY" | "PUBLISH" | "REFER" | "INFO" | "UPDATE"
                | "PRACK",
                _,
            ) => {
                let mut r = response(&m, 405, "Method Not Allowed", None);
                r.headers.push(("Allow".into(), ALLOW.into()));
                ctx.reply(src, &m, r);
            }
            _ => ctx.reply(src, &m, response(&m, 501, "Not Implemented", None)),
        }
    }

    /// A new INVITE: authenticate the caller, decide where it goes, then
    /// refuse it or start the call.
    fn new_call(&mut self, now_ms: u64, src: Source, m: Msg) {
        // A carrier recognised by its address: no challenge (it would not
        // answer one), its DID decides where the call goes. A source an
        // agent's device registered from is that device, whatever trunk
        // shares its address (an office NAT, a PBX on the same host).
        let carrier = self
            .inbound
            .by_source(&src)
            .filter(|_| !self.is_agent_source(&src))
            .cloned();
        if let Some(trunk) = carrier {
            let a_tag = self.io.rng.token();
            self.inbound_call(now_ms, src, m, a_tag, &trunk);
            return;
        }
        let dialled = msg::uri_user(m.ruri()).unwrap_or("").to_string();
        // Resolve every account routing may read before verifying the
        // digest, so a parked request is verified exactly once (a second
        // check would see a replayed nc).
        if self.auth.credentials(&m).is_some() && !dialled.is_empty() {
            for key in [
                Lookup::Extension(dialled.clone()),
                Lookup::Username(dialled.clone()),
            ] {
                if self.auth.accounts.cached(&key).is_some() {
                    break;
                }
                if let super::accounts::Found::Parked =
                    self.auth
                        .accounts
                        .find(key, now_ms, src, &m, &mut self.io.out)
                {
                    return;
                }
            }
        }
        let a_tag = self.io.rng.token();
        let caller = match self
            .auth
            .authenticate(now_ms, src, &m, &a_tag, &mut self.io.out)
        {
            Auth::Ok(a) => {
                self.flow_authenticated(src);
                a
            }
            Auth::Challenge(r) | Auth::Refuse(r) => {
                // Stateless, as Kamailio challenges: sent once, never
                // retransmitted and not kept (a retransmitted INVITE is
                // challenged again). Retransmitting it until an ACK would
                // turn one spoofed INVITE into seven answers toward the
                // spoofed address, and keeping it would let a flood of
                // unauthenticated INVITEs fill memory.
                self.send(src, &r);
                return;
            }
            Auth::Parked => return,
        };
        // A carrier that answered the challenge with its trunk's inbound
        // credentials.
        if let Some(trunk) = self.inbound.by_account(&caller).cloned() {
            self.inbound_call(now_ms, src, m, a_tag, &trunk);
            return;
        }
        self.place_call(now_ms, src, m, a_tag, caller);
    }

    /// An INVITE from an agent whose identity is settled (its digest
    /// checked, or an originate's synthetic INVITE on the agent's behalf):
    /// the routing policy decides where it goes, then it is refused or
    /// started.
    fn place_call(
        &mut self,
        now_ms: u64,
        src: Source,
        m: Msg,
        a_tag: String,
        caller: Arc<Account>,
    ) {
        let dialled = msg::uri_user(m.ruri()).unwrap_or("").to_string();
        let Some(session_secs) = self.session_interval(now_ms, src, &m, &a_tag) else {
            return;
        };
        // The dial plan applies as soon as it has routes, trunks or not: a
        // number it sends out is then refused by the toll-fraud gate or
        // as "no trunk available", never "not found".
        let outbound =
            if self.io.outbound.has_trunks() || !self.io.outbound.policy.routes.is_empty() {
                let usage = self.io.outbound.usage(&caller.username, now_ms);
                let statuses = self.trunks.statuses();
                let registered = |key: &str| {
                    statuses.iter().any(|s| {
                        s.key == key
                            && matches!(
                                s.state,
                                super::outbound_reg::TrunkRegState::Registered { .. }
                            )
                    })
                };
                Some(OutboundView {
                    policy: &self.io.outbound.policy,
                    trunks: self.io.outbound.states(registered),
                    rights: caller
                        .dial
                        .unwrap_or(self.io.outbound.policy.default_rights),
                    usage,
                    // Only the originate's own (synthetic) call.
                    campaign_trunks: self
                        .originations
                        .campaign_trunks(m.call_id())
                        .filter(|_| src.flow >= originate::FLOW_BASE)
                        .map(<[i64]>::to_vec),
                })
            } else {
                None
            };
        let decision = routing::decide(
            &routing::Caller {
                username: &caller.username,
                extension: &caller.extension,
                agent_id: caller.user_id,
            },
            &dialled,
            &CachedDirectory {
                auth: &self.auth,
                registrar: &self.registrar,
                now_ms,
                outbound,
            },
        );
        let callee = match &decision {
            Decision::Agent(a) => Party {
                number: a.extension.clone(),
                agent_id: a.agent_id,
            },
            Decision::Reject { .. } => Party {
                number: dialled.clone(),
                agent_id: None,
            },
            Decision::Trunks {
                number_for_trunk, ..
            } => Party {
                number: number_for_trunk.clone(),
                agent_id: None,
            },
        };
        // A call the dial plan sent out, or refused on its way out (toll
        // fraud gate, no trunk), is an outbound call in the CDR.
        let direction = match &decision {
            Decision::Trunks { .. } => Direction::Outbound,
            Decision::Reject { cause, .. } if cause.is_outbound_refusal() => Direction::Outbound,
            _ => Direction::Internal,
        };
        // An originate's record started when the agent's phone rang.
        if src.flow < originate::FLOW_BASE {
            self.started(now_ms, src, &m, &caller, callee, direction);
        }
        match decision {
            Decision::Reject {
                code,
                reason,
                cause,
            } => {
                use domain::call_events::HangupCause as H;
                if matches!(
                    cause,
                    H::DestinationBlocked
                        | H::DialNotPermitted
                        | H::OutboundConcurrentLimit
                        | H::OutboundHourlyLimit
                ) {
                    tracing::warn!(user = %caller.username, peer = %src.peer, number = %dialled, cause = cause.as_str(), "outbound call refused");
                    self.io.out.push_back(Output::Security(
                        super::SecurityNotice::OutboundRefused {
                            username: caller.username.clone(),
                            ip: src.peer.ip(),
                            number: dialled.clone(),
                            cause,
                        },
                    ));
                }
                self.refuse_started(now_ms, src, &m, &a_tag, code, reason, cause);
            }
            Decision::Trunks {
                number_for_trunk,
                trunk_ids_in_order,
                ..
            } => {
                self.io.outbound.caller_started(&caller.username, now_ms);
                let media_open = self.originations.media_open(m.call_id());
                let mut ctx = self.io.ctx(now_ms);
                self.calls.start_trunk(
                    &mut ctx,
                    src,
                    m,
                    a_tag,
                    TrunkPlan {
                        caller: &caller,
                        number: number_for_trunk,
                        trunk_ids: trunk_ids_in_order,
                        session_secs,
                        media_open,
                    },
                );
            }
            Decision::Agent(target) => {
                self.ring_agent(now_ms, src, m, a_tag, &caller, &target, session_secs, None);
            }
        }
    }

    /// Whether a live binding of some agent was registered from `src`
    /// (same transport and address, or the same connection).
    fn is_agent_source(&self, src: &Source) -> bool {
        let loc = self.registrar.location();
        loc.usernames().any(|u| {
            loc.bindings(u).iter().any(|b| {
                (b.src.flow != UDP_FLOW && b.src.flow == src.flow)
                    || (b.src.transport == src.transport && b.src.peer == src.peer)
            })
        })
    }

    /// The session interval (RFC 4028) the call will run with (0: no
    /// timer); `None` when the request's was too small and was refused
    /// with 422.
    fn session_interval(&mut self, now_ms: u64, src: Source, m: &Msg, a_tag: &str) -> Option<u32> {
        if self.io.cfg.session_expires_secs == 0 {
            return Some(0);
        }
        match session_timer::interval_for(
            m,
            self.io.cfg.session_expires_secs,
            self.io.cfg.min_se_secs,
        ) {
            Ok(secs) => Some(secs),
            Err(min) => {
                let mut r = response(m, 422, "Session Interval Too Small", Some(a_tag));
                r.headers.push(("Min-SE".into(), min.to_string()));
                self.final_without_call(now_ms, src, m, r);
                None
            }
        }
    }

    /// A call from a carrier through `trunk`: the DID (the Request-URI's
    /// user) picks the destination. The customer is the caller; the CDR
    /// says inbound, through `trunk:<name>`, with the DID.
    fn inbound_call(
        &mut self,
        now_ms: u64,
        src: Source,
        m: Msg,
        a_tag: String,
        trunk: &InboundTrunk,
    ) {
        let Some(session_secs) = self.session_interval(now_ms, src, &m, &a_tag) else {
            return;
        };
        let did = trunk.did_of(
            msg::uri_user(m.ruri()),
            msg::uri_user(msg::addr_uri(m.header("To").unwrap_or(""))),
        );
        let number =
            inbound::caller_number(msg::uri_user(msg::addr_uri(m.header("From").unwrap_or(""))));
        let decision = routing::decide_inbound(
            &did,
            trunk.id,
            self.inbound.routes(),
            &CachedDirectory {
                auth: &self.auth,
                registrar: &self.registrar,
                now_ms,
                outbound: None,
            },
        );
        let callee = match &decision {
            Decision::Agent(a) => Party {
                number: a.extension.clone(),
                agent_id: a.agent_id,
            },
            _ => Party {
                number: did.clone(),
                agent_id: None,
            },
        };
        let transport = format!("trunk:{}", trunk.name);
        for kind in [
            CallEventKind::Started {
                direction: Direction::Inbound,
                caller: Party {
                    number: number.clone(),
                    agent_id: None,
                },
                callee,
                transport: transport.clone(),
            },
            CallEventKind::Origin {
                trunk: Some(trunk.name.clone()),
                did: (!did.is_empty()).then(|| did.clone()),
            },
        ] {
            self.io
                .out
                .push_back(Output::Call(domain::call_events::CallEvent {
                    call_id: m.call_id().to_string(),
                    at_ms: now_ms,
                    kind,
                }));
        }
        let target = match decision {
            Decision::Agent(target) => target,
            Decision::Reject {
                code,
                reason,
                cause,
            } => {
                tracing::info!(trunk = %trunk.name, %did, peer = %src.peer, cause = cause.as_str(), "call from a trunk refused");
                self.refuse_started(now_ms, src, &m, &a_tag, code, reason, cause);
                return;
            }
            // Inbound routing never sends a call back out.
            Decision::Trunks { .. } => {
                let cause = domain::call_events::HangupCause::Failed;
                self.refuse_started(now_ms, src, &m, &a_tag, 500, "Server Internal Error", cause);
                return;
            }
        };
        // Calls in count against the trunk's channels like calls out.
        let inbound_channel = if self.io.outbound.trunk(trunk.id).is_some() {
            if !self.io.outbound.reserve(trunk.id) {
                tracing::warn!(trunk = %trunk.name, %did, "call from a trunk refused: every channel in use");
                let cause = domain::call_events::HangupCause::TrunkAtCapacity;
                self.refuse_started(now_ms, src, &m, &a_tag, 503, "Service Unavailable", cause);
                return;
            }
            Some(trunk.id)
        } else {
            None
        };
        // The customer as the agent's phone shows them: their number.
        let caller = Account {
            username: transport,
            extension: number.clone(),
            user_id: None,
            display_name: number,
            secrets: Vec::new(),
            record_calls: None,
            dial: None,
        };
        self.ring_agent(
            now_ms,
            src,
            m,
            a_tag,
            &caller,
            &target,
            session_secs,
            inbound_channel,
        );
    }

    /// Answers a call whose `Started` was recorded with a final refusal,
    /// and ends it with `cause`.
    #[allow(clippy::too_many_arguments)]
    fn refuse_started(
        &mut self,
        now_ms: u64,
        src: Source,
        m: &Msg,
        a_tag: &str,
        code: u16,
        reason: &str,
        cause: domain::call_events::HangupCause,
    ) {
        let r = response(m, code, reason, Some(a_tag));
        self.final_without_call(now_ms, src, m, r);
        self.io
            .out
            .push_back(Output::Call(domain::call_events::CallEvent {
                call_id: m.call_id().to_string(),
                at_ms: now_ms,
                kind: CallEventKind::Ended { cause },
            }));
    }

    /// Rings every live contact of `target` for `caller`.
    #[allow(clippy::too_many_arguments)]
    fn ring_agent(
        &mut self,
        now_ms: u64,
        src: Source,
        m: Msg,
        a_tag: String,
        caller: &Account,
        target: &AgentTarget,
        session_secs: u32,
        inbound_channel: Option<i64>,
    ) {
        let contacts: Vec<Binding> = self
            .registrar
            .location()
            .bindings(&target.username)
            .iter()
            .filter(|b| b.expires_at_ms > now_ms && b.reachable())
            .cloned()
            .collect();
        let callee_record_calls = self
            .auth
            .accounts
            .cached(&Lookup::Username(target.username.clone()))
            .and_then(|a| a.record_calls);
        let media_open = self.originations.media_open(m.call_id());
        let mut ctx = self.io.ctx(now_ms);
        self.calls.start(
            &mut ctx,
            src,
            m,
            a_tag,
            Plan {
                caller,
                callee: target,
                callee_record_calls,
                contacts: &contacts,
                session_secs,
                inbound_channel,
                media_open,
            },
        );
    }

    fn started(
        &mut self,
        now_ms: u64,
        src: Source,
        m: &Msg,
        caller: &Arc<Account>,
        callee: Party,
        direction: Direction,
    ) {
        self.io
            .out
            .push_back(Output::Call(domain::call_events::CallEvent {
                call_id: m.call_id().to_string(),
                at_ms: now_ms,
                kind: CallEventKind::Started {
                    direction,
                    caller: Party {
                        number: caller.extension.clone(),
                        agent_id: caller.user_id,
                    },
                    callee,
                    transport: src.transport.as_str().to_string(),
                },
            }));
    }

    /// A final answer to an INVITE that creates no call, retransmitted
    /// until its ACK.
    fn final_without_call(&mut self, now_ms: u64, src: Source, m: &Msg, r: Msg) {
        let bytes = r.to_bytes();
        self.io
            .txn
            .remember_invite_final(now_ms, m, src, bytes.clone());
        self.io.out.push_back(Output::Transmit {
            to: src,
            data: bytes,
        });
    }

    /// Tells the shell that `src`'s connection authenticated (see
    /// [`Output::FlowAuthenticated`]); UDP has no connection to vouch for.
    fn flow_authenticated(&mut self, src: Source) {
        if src.flow != UDP_FLOW {
            self.io.out.push_back(Output::FlowAuthenticated(src.flow));
        }
    }

    /// Moves what the trunk registrations produced into the outbox.
    fn drain_trunks(&mut self) {
        while let Some(t) = self.trunks.poll_transmit() {
            self.io.out.push_back(Output::Transmit {
                to: t.to,
                data: t.data,
            });
        }
        while let Some(e) = self.trunks.poll_event() {
            self.io.out.push_back(Output::Trunk(e));
        }
    }

    fn send(&mut self, to: Source, m: &Msg) {
        self.io.out.push_back(Output::Transmit {
            to,
            data: m.to_bytes(),
        });
    }

    fn reply(&mut self, now_ms: u64, src: Source, req: &Msg, r: Msg) {
        let mut ctx = self.io.ctx(now_ms);
        ctx.reply(src, req, r);
    }
}

/// 400 (or 505/513) to a malformed request when the headers needed to
/// address a response are there; `None` means drop it silently.
fn malformed_reply(data: &[u8], e: &ParseError, limits: &msg::Limits) -> Option<Msg> {
    let text = String::from_utf8_lossy(&data[..data.len().min(limits.max_bytes)]);
    if !text.starts_with(|c: char| c.is_ascii_alphabetic())
        || text.starts_with("SIP/")
        || text.starts_with("ACK ")
    {
        return None;
    }
    const NEEDED: [(&str, &str); 5] = [
        ("Via", "v"),
        ("From", "f"),
        ("To", "t"),
        ("Call-ID", "i"),
        ("CSeq", ""),
    ];
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in text.split("\r\n").skip(1).take(limits.max_headers) {
        if line.is_empty() {
            break;
        }
        let Some((n, v)) = line.split_once(':') else {
            continue;
        };
        let n = n.trim();
        for (want, compact) in NEEDED {
            if n.eq_ignore_ascii_case(want)
                || (!compact.is_empty() && n.eq_ignore_ascii_case(compact))
            {
                headers.push((want.to_string(), v.trim().to_string()));
            }
        }
    }
    if NEEDED
        .iter()
        .any(|(want, _)| !headers.iter().any(|(n, _)| n == want))
    {
        return None;
    }
    let reason = match e.status {
        505 => "Version Not Supported",
        513 => "Message Too Large",
        _ => "Bad Request",
    };
    Some(Msg {
        start: Start::Response {
            code: e.status,
            reason: reason.to_string(),
        },
        headers,
        body: Vec::new(),
    })
}
