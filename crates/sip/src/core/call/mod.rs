//! One call through the B2BUA: the caller's leg (A, we are its UAS), one
//! fork per contact of the callee (B legs, we are their UAC), and every
//! timer of the call. The first 2xx wins and the other forks are
//! cancelled; ACK for a 2xx is end to end, for a non-2xx hop by hop;
//! in-dialog requests are relayed to the other leg with that leg's dialog
//! state. A call knows nothing of other calls, accounts or the location
//! table: what to ring comes in with [`Call::start`] from the routing
//! decision; what happened goes out as call events.
//!
//! Files: `fork.rs` (the ringing phase: responses of the forks, CANCEL,
//! failure), `dialog.rs` (ACK, CANCEL, BYE and relayed in-dialog requests),
//! `leg.rs` (dialog state and request building), `session_timer.rs`
//! (RFC 4028), `anchor.rs` (anchored media: SDP goes through the media
//! plane). Without anchoring SDP is relayed unchanged.

mod anchor;
mod dialog;
mod fork;
pub mod leg;
pub mod session_timer;
mod trunk;

pub use trunk::{TrunkPlan, CARRIER_RESPONSE_MS};

use super::ctx::Ctx;
use super::media::{OpenCall, RecordCustomer};
use super::msg::{self, response, strip_param, Msg};
use super::registrar::location::Binding;
use super::txn::{Owner, TxnKey};
use super::types::{Account, Source, Transport, ALLOW, UDP_FLOW};
use domain::call_events::{CallEventKind, HangupCause, Party};
use domain::media::{self as media_policy, LegKind};
use domain::routing::AgentTarget;
use leg::{copy_body, new_branch, Leg};
use std::collections::HashMap;

/// A way to a peer that is gone, as the shell reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// A connection (TCP, TLS or WebSocket; never [`UDP_FLOW`]) closed.
    Flow(u64),
    /// A TCP/TLS contact restored after a restart, which has no flow of
    /// its own (`flow` is [`UDP_FLOW`]): the connection the shell opened
    /// to reach it failed or closed.
    Contact(Source),
}

impl Lost {
    /// Whether messages to `src` went the way that is gone.
    pub fn hits(self, src: Source) -> bool {
        match self {
            Lost::Flow(flow) => src.flow == flow && flow != UDP_FLOW && src.transport.reliable(),
            Lost::Contact(to) => src == to && to.flow == UDP_FLOW && to.transport.reliable(),
        }
    }
}

/// How long an ended call keeps its dialogs to answer late retransmissions
/// (UDP retransmits come at 0.5, 1.5, 3.5 and 7.5 s).
const LINGER_MS: u64 = 8_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    A,
    B(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ForkState {
    Calling,
    Proceeding,
    Answered,
    Done,
}

#[derive(Debug)]
struct Fork {
    leg: Leg,
    branch: String,
    invite: Msg,
    state: ForkState,
    code: u16,
    ack: Option<Vec<u8>>,
    ringing_reported: bool,
    /// CSeq number of `invite` (2 after answering a trunk's challenge).
    cseq: u32,
    /// The trunk this fork goes out through (a carrier leg).
    trunk_id: Option<i64>,
    /// A 401/407 was answered once already: another one is final.
    auth_tried: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ringing,
    Answered,
    Ending,
}

/// A relayed (or our own) in-dialog request waiting for its response.
#[derive(Debug)]
struct Relay {
    from: Side,
    /// The request as received; `None` for a request we originated
    /// (a session refresh).
    req: Option<Msg>,
    src: Source,
    fwd_cseq: u32,
    /// A re-INVITE or UPDATE: its 2xx refreshes the session.
    refresh: bool,
}

/// ACK of a relayed re-INVITE 2xx still to pass on.
#[derive(Debug)]
struct ReinviteAck {
    from: Side,
    cseq: u32,
    to: Side,
    fwd_cseq: u32,
}

/// Placeholder for the anchored media of one side (issue 10 fills it).
#[derive(Debug, Default)]
pub struct MediaLeg {
    pub last_sdp: Vec<u8>,
}

/// Session timer state of an answered call (RFC 4028).
#[derive(Debug)]
struct SessionTimer {
    secs: u32,
    last_refresh_ms: u64,
    /// We refresh the B leg ourselves with UPDATE.
    we_refresh_b: bool,
}

#[derive(Debug, Default)]
struct Deadlines {
    ring: Option<u64>,
    /// A trunk's INVITE got no response at all yet (`trunk.rs`).
    carrier: Option<u64>,
    max_duration: Option<u64>,
    linger: Option<u64>,
}

#[derive(Debug)]
pub struct Call {
    id: u64,
    phase: Phase,
    a: Leg,
    a_invite: Msg,
    /// Never shrinks once the call exists, so the indices kept in `winner`
    /// and in `Side::B(i)` always index into it.
    forks: Vec<Fork>,
    winner: Option<usize>,
    relays: HashMap<String, Relay>,
    reinvite_acks: Vec<ReinviteAck>,
    ringing_sent: bool,
    deadlines: Deadlines,
    /// Negotiated session interval (0: no session timer).
    session_secs: u32,
    session: Option<SessionTimer>,
    pub media: [MediaLeg; 2],
    /// The call's media goes through the media plane (`anchor.rs`): SDP
    /// toward every leg is ours, re-INVITEs are answered per leg.
    anchored: bool,
    /// A call out through trunks (`trunk.rs`).
    trunk: Option<trunk::TrunkCall>,
    /// A call in from a carrier: the trunk whose channel it holds.
    inbound_channel: Option<i64>,
}

/// Where a new call goes and under which terms.
pub struct Plan<'a> {
    pub caller: &'a Account,
    pub callee: &'a AgentTarget,
    /// The callee agent's recording override (`None`: system default).
    pub callee_record_calls: Option<bool>,
    pub contacts: &'a [Binding],
    /// Session interval to offer (0: none).
    pub session_secs: u32,
    /// The trunk whose channel this call from a carrier holds (released
    /// when the call ends).
    pub inbound_channel: Option<i64>,
    /// The media session is open already, the caller's leg negotiated:
    /// an originate's (`endpoint/originate.rs`).
    pub media_open: bool,
}

impl Leg {
    /// The caller's leg of a new call, after answering its INVITE with 100
    /// Trying (remembered by the transaction layer for retransmissions).
    fn caller(ctx: &mut Ctx<'_>, src: Source, m: &Msg, a_tag: String) -> Leg {
        let trying = response(m, 100, "Trying", None);
        let bytes = trying.to_bytes();
        ctx.txn.remember(ctx.now_ms, m, src, bytes.clone());
        ctx.send_bytes(src, bytes);
        let from = m.header("From").unwrap_or("");
        Leg {
            call_id: m.call_id().to_string(),
            local_tag: a_tag,
            remote_tag: msg::tag(from).unwrap_or("").to_string(),
            local_uri: strip_param(m.header("To").unwrap_or(""), "tag"),
            remote_uri: strip_param(from, "tag"),
            local_cseq: 1,
            remote_target: m
                .header_list("Contact")
                .first()
                .map(|c| msg::addr_uri(c).to_string())
                .unwrap_or_default(),
            src,
            route: Vec::new(),
        }
    }
}

impl Call {
    /// Starts a call: 100 Trying to the caller, an INVITE to every contact.
    pub fn start(
        ctx: &mut Ctx<'_>,
        id: u64,
        src: Source,
        m: Msg,
        a_tag: String,
        plan: Plan<'_>,
    ) -> Call {
        let now = ctx.now_ms;
        let a = Leg::caller(ctx, src, &m, a_tag);
        let is_ws = |t: Transport| matches!(t, Transport::Ws | Transport::Wss);
        let caller_kind = LegKind::of(Some(&m.body), is_ws(src.transport));
        let fork_kinds: Vec<LegKind> = plan
            .contacts
            .iter()
            .map(|b| LegKind::of(None, is_ws(b.src.transport)))
            .collect();
        // A late offer (INVITE without SDP) is relayed as before: anchoring
        // it needs an offer of ours toward the caller in the 200.
        let mut anchored = plan.media_open
            || (!m.body.is_empty()
                && media_policy::anchors(ctx.cfg.anchor, caller_kind, &fork_kinds));
        let mut refused = false;
        if anchored && !plan.media_open {
            // Both parties are agents here: each has a say (trunk calls
            // will pass `None` for the customer's side).
            let record = domain::recording::should_record(
                ctx.cfg.record_calls,
                Some(plan.caller.record_calls),
                Some(plan.callee_record_calls),
            )
            .then_some(RecordCustomer::Caller);
            let info = OpenCall {
                call_id: m.call_id(),
                record,
            };
            if let Err(e) = ctx.media.open(id, caller_kind, &m.body, &info) {
                tracing::warn!(call_id = %m.call_id(), error = %e, "media plane refused the caller's offer");
                anchored = false;
                refused = true;
            }
        }
        let display = plan.caller.display_name.replace(['"', '\\'], "");
        let host = ctx.cfg.local_host.clone();
        let mut forks = Vec::with_capacity(plan.contacts.len());
        for (b, kind) in plan.contacts.iter().zip(&fork_kinds) {
            if refused {
                break;
            }
            let leg = Leg {
                call_id: format!("{}@centralita", ctx.token()),
                local_tag: ctx.token(),
                remote_tag: String::new(),
                local_uri: format!("\"{display}\" <sip:{}@{host}>", plan.caller.extension),
                remote_uri: format!("<sip:{}@{host}>", plan.callee.extension),
                local_cseq: 1,
                remote_target: b.uri.clone(),
                src: b.src,
                route: Vec::new(),
            };
            let branch = new_branch(ctx, id);
            let mut inv = leg.request(ctx, "INVITE", 1, &branch);
            inv.headers.push(("Allow".into(), ALLOW.into()));
            if plan.session_secs > 0 {
                // When the caller cannot refresh, the callee must (a UAS
                // keeps the refresher the request names, RFC 4028 section 9).
                let refresher = if session_timer::supports_timer(&m) {
                    ""
                } else {
                    ";refresher=uas"
                };
                inv.headers.push(("Supported".into(), "timer".into()));
                inv.headers.push((
                    "Session-Expires".into(),
                    format!("{}{refresher}", plan.session_secs),
                ));
                inv.headers
                    .push(("Min-SE".into(), ctx.cfg.min_se_secs.max(90).to_string()));
            }
            if anchored {
                match ctx.media.offer(id, forks.len(), *kind) {
                    Ok(sdp) => {
                        inv.headers
                            .push(("Content-Type".into(), "application/sdp".into()));
                        inv.body = sdp;
                    }
                    Err(e) => {
                        // This contact cannot be offered media: it is not rung.
                        tracing::warn!(call_id = %m.call_id(), error = %e, "no media offer for a fork");
                        continue;
                    }
                }
            } else {
                copy_body(&m, &mut inv);
            }
            let bytes = inv.to_bytes();
            ctx.txn.start(
                now,
                TxnKey::Client(branch.clone()),
                b.src,
                bytes.clone(),
                true,
                Owner::ForkInvite {
                    call: id,
                    fork: forks.len(),
                },
            );
            ctx.send_bytes(b.src, bytes);
            ctx.event(
                &a.call_id,
                now,
                CallEventKind::LegAdded {
                    leg: forks.len() as u32 + 1,
                    party: Party {
                        number: plan.callee.extension.clone(),
                        agent_id: plan.callee.agent_id,
                    },
                    transport: b.src.transport.as_str().to_string(),
                },
            );
            forks.push(Fork {
                leg,
                branch,
                invite: inv,
                state: ForkState::Calling,
                code: 0,
                ack: None,
                ringing_reported: false,
                cseq: 1,
                trunk_id: None,
                auth_tried: false,
            });
        }
        let mut media: [MediaLeg; 2] = Default::default();
        media[0].last_sdp = m.body.clone();
        let no_forks = forks.is_empty();
        let mut call = Call {
            id,
            phase: Phase::Ringing,
            a,
            a_invite: m,
            forks,
            winner: None,
            relays: HashMap::new(),
            reinvite_acks: Vec::new(),
            ringing_sent: false,
            deadlines: Deadlines {
                ring: Some(now + ctx.cfg.ring_timeout_ms),
                ..Default::default()
            },
            session_secs: plan.session_secs,
            session: None,
            media,
            anchored,
            trunk: None,
            inbound_channel: plan.inbound_channel,
        };
        if refused || (anchored && no_forks) {
            // Nothing rings: the caller's offer (or every contact) cannot
            // be given media.
            let r = response(
                &call.a_invite,
                488,
                "Not Acceptable Here",
                Some(&call.a.local_tag),
            );
            call.final_to_a(ctx, r);
            call.end(ctx, now, HangupCause::Failed);
        }
        call
    }

    // ---- getters ----

    /// The caller's Call-ID (and the call's id in events and CDRs).
    pub fn call_id(&self) -> &str {
        &self.a.call_id
    }

    /// Every Call-ID of the call with its side, for the endpoint's index.
    pub fn call_ids(&self) -> impl Iterator<Item = (&str, Side)> {
        std::iter::once((self.a.call_id.as_str(), Side::A)).chain(
            self.forks
                .iter()
                .enumerate()
                .map(|(i, f)| (f.leg.call_id.as_str(), Side::B(i))),
        )
    }

    /// From now on the caller's leg is reached over `src`: an originated
    /// call's caller was synthetic until the customer answered
    /// (`endpoint/originate.rs`).
    pub fn set_caller_source(&mut self, src: Source) {
        self.a.src = src;
    }

    /// How many destination legs the call has tried so far.
    pub fn legs(&self) -> usize {
        self.forks.len()
    }

    /// Up (ringing or answered), as opposed to lingering after its end.
    pub fn is_live(&self) -> bool {
        self.phase != Phase::Ending
    }

    /// Lingered long enough to be forgotten.
    pub fn is_finished(&self, now_ms: u64) -> bool {
        self.deadlines.linger.is_some_and(|t| t <= now_ms)
    }

    /// Whether a leg of this call travels over the way `lost` names.
    pub fn uses(&self, lost: Lost) -> bool {
        lost.hits(self.a.src) || self.forks.iter().any(|f| lost.hits(f.leg.src))
    }

    /// The next instant [`Call::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<u64> {
        let session = self.session.as_ref().map(|s| self.session_deadline(s));
        [
            self.deadlines.ring,
            self.deadlines.carrier,
            self.deadlines.max_duration,
            self.deadlines.linger,
            session,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn session_deadline(&self, s: &SessionTimer) -> u64 {
        let expiry = session_timer::expiry_ms(s.last_refresh_ms, s.secs);
        if s.we_refresh_b {
            session_timer::refresh_ms(s.last_refresh_ms, s.secs).min(expiry)
        } else {
            expiry
        }
    }

    fn leg(&self, side: Side) -> Option<&Leg> {
        match side {
            Side::A => Some(&self.a),
            Side::B(i) => self.forks.get(i).map(|f| &f.leg),
        }
    }

    fn leg_mut(&mut self, side: Side) -> Option<&mut Leg> {
        match side {
            Side::A => Some(&mut self.a),
            Side::B(i) => self.forks.get_mut(i).map(|f| &mut f.leg),
        }
    }

    // ---- inputs ----

    /// Deadlines: ring timeout, session timer, maximum duration, linger.
    pub fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now_ms;
        if self.deadlines.ring.is_some_and(|t| t <= now) {
            self.deadlines.ring = None;
            if self.phase == Phase::Ringing {
                let r = response(
                    &self.a_invite,
                    480,
                    "Temporarily Unavailable",
                    Some(&self.a.local_tag),
                );
                self.cancel_forks(ctx, None);
                self.final_to_a(ctx, r);
                self.end(ctx, now, HangupCause::NoAnswer);
            }
        }
        if self.deadlines.carrier.is_some_and(|t| t <= now) {
            self.deadlines.carrier = None;
            self.carrier_silent(ctx);
        }
        if self.deadlines.max_duration.is_some_and(|t| t <= now) {
            self.deadlines.max_duration = None;
            if self.phase == Phase::Answered {
                tracing::info!(call_id = %self.a.call_id, "maximum call duration reached");
                self.hang_up_both(ctx, now, HangupCause::MaxDuration);
            }
        }
        self.session_timeout(ctx);
    }

    fn session_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now_ms;
        let Some(s) = &self.session else {
            return;
        };
        if self.phase != Phase::Answered {
            return;
        }
        let (secs, last) = (s.secs, s.last_refresh_ms);
        if session_timer::expiry_ms(last, secs) <= now {
            tracing::info!(call_id = %self.a.call_id, "session timer expired without a refresh");
            // Bill up to the last moment both sides were known to be there.
            self.hang_up_both(ctx, last, HangupCause::SessionTimerExpired);
            return;
        }
        let pending_refresh = self.relays.values().any(|r| r.req.is_none());
        if s.we_refresh_b && !pending_refresh && session_timer::refresh_ms(last, secs) <= now {
            self.send_refresh_b(ctx);
        }
    }

    /// A TCP/TLS/WebSocket connection the call uses closed (a browser tab
    /// reloaded or a phone lost its network), or a restored contact could
    /// not be reached: the call ends now (or that fork fails) instead of
    /// hanging until someone else hangs up or the ring timeout.
    pub fn handle_lost(&mut self, ctx: &mut Ctx<'_>, lost: Lost) {
        let now = ctx.now_ms;
        let lost_side = if lost.hits(self.a.src) {
            Some(Side::A)
        } else {
            self.forks
                .iter()
                .position(|f| lost.hits(f.leg.src))
                .map(Side::B)
        };
        match (self.phase, lost_side) {
            (Phase::Answered, Some(Side::A)) => {
                if let Some(w) = self.winner {
                    self.send_bye(ctx, Side::B(w));
                }
                self.end(ctx, now, HangupCause::CallerConnectionLost);
            }
            (Phase::Answered, Some(Side::B(i))) if self.winner == Some(i) => {
                self.send_bye(ctx, Side::A);
                self.end(ctx, now, HangupCause::CalleeConnectionLost);
            }
            (Phase::Ringing, Some(Side::A)) => {
                self.cancel_forks(ctx, None);
                self.end(ctx, now, HangupCause::CallerConnectionLost);
            }
            (Phase::Ringing, Some(Side::B(i))) => {
                if let Some(f) = self.forks.get_mut(i) {
                    if f.state != ForkState::Done {
                        f.state = ForkState::Done;
                        f.code = 480;
                        ctx.event(
                            &self.a.call_id,
                            now,
                            CallEventKind::LegEnded {
                                leg: i as u32 + 1,
                                cause: HangupCause::CalleeConnectionLost,
                                sip_code: None,
                            },
                        );
                    }
                }
                self.fork_failed(ctx);
            }
            _ => {}
        }
    }

    /// The server is stopping: answered calls get a BYE on both legs,
    /// ringing ones a CANCEL toward the callee and a 503 to the caller.
    pub fn handle_shutdown(&mut self, ctx: &mut Ctx<'_>) {
        self.hang_up(ctx, HangupCause::Shutdown);
    }

    /// Ends the call from outside (shutdown, a hang-up request): BYE on
    /// both legs when answered; when ringing, CANCEL to the callee and 503
    /// to the caller. Nothing when it is already ending.
    pub fn hang_up(&mut self, ctx: &mut Ctx<'_>, cause: HangupCause) {
        let now = ctx.now_ms;
        match self.phase {
            Phase::Answered => self.hang_up_both(ctx, now, cause),
            Phase::Ringing => {
                let r = response(
                    &self.a_invite,
                    503,
                    "Service Unavailable",
                    Some(&self.a.local_tag),
                );
                self.cancel_forks(ctx, None);
                self.final_to_a(ctx, r);
                self.end(ctx, now, cause);
            }
            Phase::Ending => {}
        }
    }

    /// A retransmission deadline of ours passed without an answer.
    pub fn handle_txn_timeout(&mut self, ctx: &mut Ctx<'_>, owner: Owner) {
        let now = ctx.now_ms;
        match owner {
            Owner::ForkInvite { fork, .. } => {
                if let Some(f) = self.forks.get_mut(fork) {
                    if matches!(f.state, ForkState::Calling | ForkState::Proceeding) {
                        f.state = ForkState::Done;
                        f.code = 408;
                        ctx.event(
                            &self.a.call_id,
                            now,
                            CallEventKind::LegEnded {
                                leg: fork as u32 + 1,
                                cause: HangupCause::NoAnswer,
                                sip_code: Some(408),
                            },
                        );
                    }
                }
                self.fork_failed(ctx);
            }
            Owner::InviteFinal { success: true, .. } => {
                // The caller never ACKed our 200: hang both legs up.
                if self.phase == Phase::Answered {
                    self.hang_up_both(ctx, now, HangupCause::AckTimeout);
                }
            }
            Owner::Relay { .. } => self.relays_timed_out(ctx),
            Owner::InviteFinal { .. } | Owner::None | Owner::Stray | Owner::Originate { .. } => {}
        }
    }

    // ---- helpers shared by fork.rs and dialog.rs ----

    /// Sends a final response to the caller's INVITE, retransmitted until ACK.
    fn final_to_a(&mut self, ctx: &mut Ctx<'_>, r: Msg) {
        let success = r.code().unwrap_or(0) < 300;
        let bytes = r.to_bytes();
        ctx.txn
            .remember(ctx.now_ms, &self.a_invite, self.a.src, bytes.clone());
        ctx.txn.start(
            ctx.now_ms,
            TxnKey::InviteFinal(self.id),
            self.a.src,
            bytes.clone(),
            false,
            Owner::InviteFinal {
                call: self.id,
                success,
            },
        );
        ctx.send_bytes(self.a.src, bytes);
    }

    /// BYE toward both legs of an answered call, then the end.
    fn hang_up_both(&mut self, ctx: &mut Ctx<'_>, at_ms: u64, cause: HangupCause) {
        self.send_bye(ctx, Side::A);
        if let Some(w) = self.winner {
            self.send_bye(ctx, Side::B(w));
        }
        self.end(ctx, at_ms, cause);
    }

    fn send_bye(&mut self, ctx: &mut Ctx<'_>, side: Side) {
        let id = self.id;
        let Some(leg) = self.leg_mut(side) else {
            return;
        };
        leg.local_cseq += 1;
        let branch = new_branch(ctx, id);
        let bye = leg.request(ctx, "BYE", leg.local_cseq, &branch);
        let bytes = bye.to_bytes();
        let to = leg.src;
        ctx.txn.start(
            ctx.now_ms,
            TxnKey::Client(branch),
            to,
            bytes.clone(),
            false,
            Owner::None,
        );
        ctx.send_bytes(to, bytes);
    }

    /// Once the call is answered or over, the stored INVITEs shrink to
    /// what is still read from them: no response is built from the
    /// caller's INVITE any more (its branch, CSeq and Call-ID still match
    /// its ACK and its transaction), and a fork's INVITE is needed only
    /// while the fork rings (CANCEL, ACK of its final). Authorization,
    /// Contact, SDP and the rest are read only while the call is set up;
    /// under load tens of thousands of calls are held at once.
    fn trim_invites(&mut self) {
        self.a_invite.retain_headers(&["Via", "CSeq", "Call-ID"]);
        for f in &mut self.forks {
            if matches!(f.state, ForkState::Answered | ForkState::Done) {
                f.invite.retain_headers(&[]);
            } else {
                f.invite
                    .retain_headers(&["Via", "From", "To", "Call-ID", "Max-Forwards"]);
            }
        }
    }

    /// The call is over: report it, keep the dialogs a while for late
    /// retransmissions, free what is no longer needed.
    fn end(&mut self, ctx: &mut Ctx<'_>, at_ms: u64, cause: HangupCause) {
        if self.phase == Phase::Ending {
            return;
        }
        self.phase = Phase::Ending;
        self.release_trunk(ctx);
        if let Some(t) = self.inbound_channel.take() {
            ctx.outbound.release(t);
        }
        ctx.event(&self.a.call_id, at_ms, CallEventKind::Ended { cause });
        self.trim_invites();
        if self.anchored {
            ctx.media.close(self.id);
        }
        self.media = Default::default();
        self.session = None;
        self.deadlines = Deadlines {
            linger: Some(ctx.now_ms + LINGER_MS),
            ..Default::default()
        };
    }
}
