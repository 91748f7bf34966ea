//! A call out through carriers: one fork at a time, to the trunks routing
//! chose in order. Each attempt holds one channel of its trunk from the
//! INVITE until it fails or the call ends; a carrier's digest challenge is
//! answered once with the trunk's credentials; an attempt that fails as a
//! carrier failure (no answer, 408, 5xx, a challenge we cannot meet) moves
//! on to the next trunk (`domain::dialplan::fails_over`), one that fails
//! as the callee's answer (busy, declined, not found, 6xx) ends the call
//! with that answer. The carrier leg is plain RTP when anchored.

use super::leg::{copy_body, new_branch, Leg};
use super::{session_timer, Call, Ctx, Deadlines, Fork, ForkState, MediaLeg, Phase};
use crate::core::media::{OpenCall, RecordCustomer};
use crate::core::msg::{self, response, Msg};
use crate::core::outbound_reg::client_auth::{self, Answer};
use crate::core::txn::{Owner, TxnKey};
use crate::core::types::{Account, Source, Transport, ALLOW};
use domain::call_events::{CallEventKind, HangupCause, Party};
use domain::dialplan::{fails_over, AttemptEnd};
use domain::media::{self as media_policy, LegKind};
use std::collections::{HashMap, VecDeque};

/// How long a trunk's INVITE may go without any response (not even 100
/// Trying) before the carrier counts as down and the next trunk is tried.
pub const CARRIER_RESPONSE_MS: u64 = 5_000;

/// Where a call out goes: routing's `Decision::Trunks`.
pub struct TrunkPlan<'a> {
    pub caller: &'a Account,
    /// The number as the carrier is asked for it.
    pub number: String,
    pub trunk_ids: Vec<i64>,
    /// Session interval to offer (0: none).
    pub session_secs: u32,
    /// The media session is open already (an originate's).
    pub media_open: bool,
}

/// What a trunk call remembers between attempts.
#[derive(Debug)]
pub(super) struct TrunkCall {
    caller: String,
    caller_extension: String,
    display: String,
    number: String,
    remaining: VecDeque<i64>,
    /// The trunk whose channel the call holds now.
    held: Option<i64>,
    /// The caller's outbound count was given back.
    released: bool,
}

impl Call {
    /// Starts a call out: 100 Trying to the caller, an INVITE to the first
    /// trunk that has a free channel (or 503 when none has).
    pub fn start_trunk(
        ctx: &mut Ctx<'_>,
        id: u64,
        src: Source,
        m: Msg,
        a_tag: String,
        plan: TrunkPlan<'_>,
    ) -> Call {
        let now = ctx.now_ms;
        let a = Leg::caller(ctx, src, &m, a_tag);
        let is_ws = matches!(src.transport, Transport::Ws | Transport::Wss);
        let caller_kind = LegKind::of(Some(&m.body), is_ws);
        let carrier = LegKind::of(None, false);
        let mut anchored = plan.media_open
            || (!m.body.is_empty()
                && media_policy::anchors(ctx.cfg.anchor, caller_kind, &[carrier]));
        let mut refused = false;
        if anchored && !plan.media_open {
            // Only the agent has a say: the customer is no agent.
            let record = domain::recording::should_record(
                ctx.cfg.record_calls,
                Some(plan.caller.record_calls),
                None,
            )
            .then_some(RecordCustomer::Callee);
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
        let mut media: [MediaLeg; 2] = Default::default();
        media[0].last_sdp = m.body.clone();
        let mut call = Call {
            id,
            phase: Phase::Ringing,
            a,
            a_invite: m,
            forks: Vec::new(),
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
            trunk: Some(TrunkCall {
                caller: plan.caller.username.clone(),
                caller_extension: plan.caller.extension.clone(),
                display: plan.caller.display_name.replace(['"', '\\'], ""),
                number: plan.number,
                remaining: plan.trunk_ids.into(),
                held: None,
                released: false,
            }),
            inbound_channel: None,
        };
        if refused {
            let r = response(
                &call.a_invite,
                488,
                "Not Acceptable Here",
                Some(&call.a.local_tag),
            );
            call.final_to_a(ctx, r);
            call.end(ctx, now, HangupCause::Failed);
        } else if !call.try_next_trunk(ctx) {
            call.no_trunk(ctx);
        }
        call
    }

    /// INVITE to the next trunk with a free channel; false when none is left.
    fn try_next_trunk(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let now = ctx.now_ms;
        loop {
            let Some(t) = self.trunk.as_mut() else {
                return false;
            };
            let Some(tid) = t.remaining.pop_front() else {
                return false;
            };
            let (Some(trunk), Some(dest)) = (
                ctx.outbound.trunk(tid).cloned(),
                ctx.outbound.destination(tid),
            ) else {
                continue; // removed or unresolved since routing decided
            };
            // Routing saw a free channel; another call may have taken it since.
            if !ctx.outbound.reserve(tid) {
                continue;
            }
            t.held = Some(tid);
            let number = t.number.clone();
            let from_user = trunk
                .from_user
                .clone()
                .unwrap_or_else(|| t.caller_extension.clone());
            let from_domain = trunk.from_domain.clone().unwrap_or(trunk.host.clone());
            let display = t.display.clone();
            let hostport = format!("{}:{}", trunk.host, trunk.port);
            let leg = Leg {
                call_id: format!("{}@centralita", ctx.token()),
                local_tag: ctx.token(),
                remote_tag: String::new(),
                local_uri: format!("\"{display}\" <sip:{from_user}@{from_domain}>"),
                remote_uri: format!("<sip:{number}@{}>", trunk.host),
                local_cseq: 1,
                remote_target: format!(
                    "sip:{number}@{hostport};transport={}",
                    trunk.transport.as_str()
                ),
                src: dest,
                route: Vec::new(),
            };
            let fi = self.forks.len();
            let branch = new_branch(ctx, self.id);
            let mut inv = leg.request(ctx, "INVITE", 1, &branch);
            inv.headers.push(("Allow".into(), ALLOW.into()));
            if trunk.send_pai {
                inv.headers.push((
                    "P-Asserted-Identity".into(),
                    format!("<sip:{from_user}@{from_domain}>"),
                ));
            }
            self.session_headers(ctx, &mut inv);
            if self.anchored {
                match ctx
                    .media
                    .offer_limited(self.id, fi, LegKind::of(None, false), &trunk.codecs)
                {
                    Ok(sdp) => {
                        inv.headers
                            .push(("Content-Type".into(), "application/sdp".into()));
                        inv.body = sdp;
                    }
                    Err(e) => {
                        tracing::warn!(call_id = %self.a.call_id, error = %e, "no media offer for a trunk");
                        self.release_channel(ctx);
                        continue;
                    }
                }
            } else {
                copy_body(&self.a_invite, &mut inv);
            }
            let bytes = inv.to_bytes();
            ctx.txn.start(
                now,
                TxnKey::Client(branch.clone()),
                dest,
                bytes.clone(),
                true,
                Owner::ForkInvite {
                    call: self.id,
                    fork: fi,
                },
            );
            ctx.send_bytes(dest, bytes);
            self.deadlines.carrier = Some(now + CARRIER_RESPONSE_MS);
            tracing::debug!(call_id = %self.a.call_id, trunk = tid, "calling out through a trunk");
            ctx.event(
                &self.a.call_id,
                now,
                CallEventKind::LegAdded {
                    leg: fi as u32 + 1,
                    party: Party {
                        number,
                        agent_id: None,
                    },
                    transport: format!("trunk:{}", trunk.name),
                },
            );
            self.forks.push(Fork {
                leg,
                branch,
                invite: inv,
                state: ForkState::Calling,
                code: 0,
                ack: None,
                ringing_reported: false,
                cseq: 1,
                trunk_id: Some(tid),
                auth_tried: false,
            });
            return true;
        }
    }

    /// RFC 4028 terms of our INVITE toward the carrier, as toward an agent.
    fn session_headers(&self, ctx: &Ctx<'_>, inv: &mut Msg) {
        if self.session_secs == 0 {
            return;
        }
        let refresher = if session_timer::supports_timer(&self.a_invite) {
            ""
        } else {
            ";refresher=uas"
        };
        inv.headers.push(("Supported".into(), "timer".into()));
        inv.headers.push((
            "Session-Expires".into(),
            format!("{}{refresher}", self.session_secs),
        ));
        inv.headers
            .push(("Min-SE".into(), ctx.cfg.min_se_secs.max(90).to_string()));
    }

    /// A carrier's 401/407 to fork `fi` (already ACKed): the INVITE goes
    /// again with the trunk's credentials, once. False when it is not a
    /// trunk fork, was answered already, or offers nothing we can answer.
    pub(super) fn answer_challenge(&mut self, ctx: &mut Ctx<'_>, fi: usize, m: &Msg) -> bool {
        let Some(fork) = self.forks.get(fi) else {
            return false;
        };
        let Some(tid) = fork.trunk_id.filter(|_| !fork.auth_tried) else {
            return false;
        };
        let Some(trunk) = ctx.outbound.trunk(tid) else {
            return false;
        };
        let code = m.code().unwrap_or(0);
        let (challenge_name, answer_name) = if code == 407 {
            ("Proxy-Authenticate", "Proxy-Authorization")
        } else {
            ("WWW-Authenticate", "Authorization")
        };
        // Whole header values: a challenge has commas of its own.
        let values = m
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(challenge_name))
            .map(|(_, v)| v.as_str());
        let Some(challenge) = client_auth::choose(values, trunk.realm.as_deref()) else {
            tracing::warn!(call_id = %self.a.call_id, trunk = tid, code, "trunk challenge we cannot answer");
            return false;
        };
        let (username, secret) = (trunk.auth_username.clone(), trunk.secret.clone());
        let cnonce = ctx.token();
        let uri = fork.invite.ruri().to_string();
        let value = client_auth::authorization(
            &challenge,
            &Answer {
                username: &username,
                secret: &secret,
                method: "INVITE",
                uri: &uri,
                nc: 1,
                cnonce: &cnonce,
            },
        );
        let branch = new_branch(ctx, self.id);
        let fork = &mut self.forks[fi];
        let mut inv = fork.invite.clone();
        let via = inv
            .header("Via")
            .unwrap_or("")
            .replace(&fork.branch, &branch);
        inv.set_header("Via", via);
        inv.set_header("CSeq", "2 INVITE".into());
        inv.headers.push((answer_name.into(), value));
        // The challenge's To tag was no dialog: the new INVITE starts afresh.
        fork.leg.remote_tag.clear();
        fork.leg.local_cseq = 2;
        fork.cseq = 2;
        fork.auth_tried = true;
        fork.state = ForkState::Calling;
        fork.code = 0;
        fork.branch = branch.clone();
        let bytes = inv.to_bytes();
        fork.invite = inv;
        let to = fork.leg.src;
        ctx.txn.start(
            ctx.now_ms,
            TxnKey::Client(branch),
            to,
            bytes.clone(),
            true,
            Owner::ForkInvite {
                call: self.id,
                fork: fi,
            },
        );
        ctx.send_bytes(to, bytes);
        self.deadlines.carrier = Some(ctx.now_ms + CARRIER_RESPONSE_MS);
        true
    }

    /// The trunk's INVITE had no response at all within
    /// [`CARRIER_RESPONSE_MS`]: the carrier is down or unreachable, and the
    /// next trunk is tried now rather than after Timer B (32 s, longer
    /// than a caller waits). No CANCEL: nothing was received to cancel
    /// (RFC 3261 9.1); a late answer is dealt with by
    /// [`Call::abandoned_trunk_response`].
    pub(super) fn carrier_silent(&mut self, ctx: &mut Ctx<'_>) {
        if self.phase != Phase::Ringing {
            return;
        }
        let Some(fi) = self.forks.len().checked_sub(1) else {
            return;
        };
        let fork = &mut self.forks[fi];
        if fork.trunk_id.is_none() || fork.state != ForkState::Calling {
            return;
        }
        ctx.txn.stop(&TxnKey::Client(fork.branch.clone()));
        fork.state = ForkState::Done;
        fork.code = 408;
        self.media_close_fork(ctx, fi);
        tracing::info!(call_id = %self.a.call_id, trunk = ?self.forks[fi].trunk_id, "no response from the carrier");
        ctx.event(
            &self.a.call_id,
            ctx.now_ms,
            CallEventKind::LegEnded {
                leg: fi as u32 + 1,
                cause: HangupCause::NoAnswer,
                sip_code: None,
            },
        );
        self.fork_failed(ctx);
    }

    /// A final response on a trunk attempt given up for silence: a non-2xx
    /// is ACKed, a 2xx ACKed and hung up (the call moved on). True when
    /// it was such a response.
    pub(super) fn abandoned_trunk_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        fi: usize,
        m: &Msg,
    ) -> bool {
        let code = m.code().unwrap_or(0);
        let Some(fork) = self.forks.get_mut(fi) else {
            return false;
        };
        if fork.trunk_id.is_none() || fork.state != ForkState::Done || fork.code != 408 {
            return false;
        }
        if code < 200 {
            return true;
        }
        if let Some(t) = msg::tag(m.header("To").unwrap_or("")) {
            fork.leg.remote_tag = t.to_string();
        }
        if code < 300 {
            if let Some(c) = m.first_in_header("Contact") {
                fork.leg.remote_target = msg::addr_uri(c).to_string();
            }
            let branch = new_branch(ctx, self.id);
            let ack = fork.leg.request(ctx, "ACK", fork.cseq, &branch);
            ctx.send(fork.leg.src, &ack);
            fork.code = code;
            self.send_bye(ctx, super::Side::B(fi));
        } else {
            let mut ack = fork.invite.clone();
            ack.start = crate::core::msg::Start::Request {
                method: "ACK".into(),
                uri: fork.invite.ruri().to_string(),
            };
            ack.headers
                .retain(|(n, _)| matches!(n.as_str(), "Via" | "From" | "Call-ID" | "Max-Forwards"));
            ack.headers
                .push(("To".into(), m.header("To").unwrap_or("").to_string()));
            ack.headers
                .push(("CSeq".into(), format!("{} ACK", fork.cseq)));
            ack.body.clear();
            ctx.send(fork.leg.src, &ack);
        }
        true
    }

    /// The current attempt failed (every fork is done): the next trunk
    /// when the carrier failed, else the end of the call.
    pub(super) fn trunk_failed(&mut self, ctx: &mut Ctx<'_>) {
        self.release_channel(ctx);
        let code = self.forks.last().map_or(503, |f| f.code);
        // A challenge left unmet is the carrier refusing our credentials:
        // another carrier may take the call.
        let carrier_failed = fails_over(AttemptEnd::Status(code)) || matches!(code, 401 | 407);
        if carrier_failed {
            if self.try_next_trunk(ctx) {
                return;
            }
            self.no_trunk(ctx);
            return;
        }
        // The callee's answer, passed through.
        let reason = match code {
            404 => "Not Found",
            480 => "Temporarily Unavailable",
            484 => "Address Incomplete",
            486 => "Busy Here",
            487 => "Request Terminated",
            600 => "Busy Everywhere",
            603 => "Decline",
            604 => "Does Not Exist Anywhere",
            606 => "Not Acceptable",
            _ => "Call Failed",
        };
        let r = response(&self.a_invite, code, reason, Some(&self.a.local_tag));
        self.final_to_a(ctx, r);
        let now = ctx.now_ms;
        self.end(ctx, now, HangupCause::from_sip_code(code));
    }

    /// Nothing left to try: 503 to the caller.
    fn no_trunk(&mut self, ctx: &mut Ctx<'_>) {
        let r = response(
            &self.a_invite,
            503,
            "No trunk available",
            Some(&self.a.local_tag),
        );
        self.final_to_a(ctx, r);
        let now = ctx.now_ms;
        self.end(ctx, now, HangupCause::NoTrunkAvailable);
    }

    fn release_channel(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(tid) = self.trunk.as_mut().and_then(|t| t.held.take()) {
            ctx.outbound.release(tid);
        }
    }

    /// The call ended: its channel and the caller's outbound count go back.
    pub(super) fn release_trunk(&mut self, ctx: &mut Ctx<'_>) {
        self.release_channel(ctx);
        if let Some(t) = self.trunk.as_mut().filter(|t| !t.released) {
            t.released = true;
            ctx.outbound.caller_ended(&t.caller);
        }
    }
}
