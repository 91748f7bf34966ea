//! Originate (click-to-call, seeds/001): ring the agent's softphone first
//! and, once the agent answers, dial the customer as if the agent had.
//!
//! The agent is sent an INVITE without SDP, so its 200 carries the offer
//! (a browser's WebRTC offer, JsSIP supports this "late offer"). That
//! offer becomes the body of a synthetic INVITE *from the agent* to the
//! customer's number, which goes through the same path as one the agent
//! dialled ([`Core::place_call`]): dial plan, toll-fraud gate, trunk
//! choice and failover, anchoring, CDR. The synthetic caller's leg uses a
//! fake flow ([`FLOW_BASE`] and up) until the customer's side answers, and
//! [`Core::poll_output`] hands what the call sends that way to
//! [`Core::deliver_to_synthetic_caller`] instead of the shell:
//!
//! - the first answer SDP (a 183's or the 200's) goes to the agent in the
//!   ACK of its 200 (the answer to its offer);
//! - the 200 is acknowledged with a synthetic ACK, and the call's caller
//!   leg is handed the agent's real flow: the dialogs line up (same
//!   Call-ID, our tag and the agent's), so BYE, re-INVITE and INFO in
//!   either direction need no translation from then on;
//! - a refusal (busy, no trunk, dial not permitted) is acknowledged
//!   likewise and the agent gets a BYE whose `Reason` says why.
//!
//! Limit: the agent's softphone retransmits its 200 until our ACK for at
//! most 64×T1 = 32 s (RFC 3261 13.3.1.4), and the ACK needs the
//! customer's answer; so without early media the customer rings at most
//! [`ANSWER_WAIT_MS`].

use super::{Core, Output};
use crate::core::call::leg::{self, Leg};
use crate::core::call::Lost;
use crate::core::media::{AnchorMode, LegKind, OpenCall, RecordCustomer};
use crate::core::msg::{self, response, Msg, Start};
use crate::core::txn::{Owner, TxnKey};
use crate::core::types::{Account, Lookup, Source, Transport, ALLOW};
use domain::call_events::{CallEvent, CallEventKind, HangupCause, Party};
use domain::calls::Direction;
use std::collections::HashMap;
use std::sync::Arc;

/// Flows at and above this are the synthetic callers of originated calls,
/// never a connection of the shell.
pub const FLOW_BASE: u64 = 1 << 62;
/// How long the customer may ring before an answer we can give the agent
/// (the agent's 200 is retransmitted for 32 s at most).
pub const ANSWER_WAIT_MS: u64 = 30_000;
/// An anchored originate's call ends by itself (ring timeout, answer,
/// refusal); this only bounds how long its entry can be kept.
const HANDED_OVER_LIMIT_MS: u64 = 4 * 3_600_000;
/// How long a finished originate is kept to answer retransmissions.
const LINGER_MS: u64 = 40_000;
/// How long a CANCEL of the agent's INVITE waits for its 487.
const CANCEL_WAIT_MS: u64 = 32_000;
/// Our INVITEs to agents carry this branch prefix: their responses come
/// here, not to a call (calls' branches end in `.<call id>`).
const BRANCH_PREFIX: &str = "z9hG4bKorig";

/// What to originate: the agent's SIP username and the number as the
/// agent would dial it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginateRequest {
    pub agent_username: String,
    pub number: String,
    /// The trunks of the call's campaign, in the campaign's order (its
    /// `campaign_trunks`): when given, the customer's call goes out
    /// through these instead of the route's.
    pub campaign_trunks: Option<Vec<i64>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginateError {
    #[error("no active SIP account {0}")]
    UnknownAgent(String),
    #[error("the agent has no registered softphone")]
    NotRegistered,
    #[error("not a phone number: {0:?}")]
    InvalidNumber(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Our INVITE rings the agent.
    RingingAgent,
    /// The agent did not answer in time: CANCEL sent, 487 awaited.
    Cancelling,
    /// The agent answered with an offer; the customer's call runs with
    /// the agent as its caller on the fake flow.
    Dialling,
    /// The call has the agent's real flow: only retransmitted 2xx are
    /// left to answer with our ACK.
    HandedOver,
    Done,
}

struct Origination {
    /// Our dialog with the agent (we are its UAC).
    agent: Leg,
    invite: Msg,
    branch: String,
    caller: Arc<Account>,
    number: String,
    /// The campaign's trunks, for the customer's call.
    campaign_trunks: Option<Vec<i64>>,
    flow: u64,
    stage: Stage,
    deadline: u64,
    /// The synthetic INVITE, for the synthetic ACKs.
    synthetic: Option<Msg>,
    /// Our ACK of the agent's 200, resent when the 200 is.
    ack: Option<Vec<u8>>,
    /// The agent hung up (or its connection went) before the hand-over.
    agent_gone: bool,
    /// Anchored: the call id reserved for the customer's call, whose
    /// media session opened with our offer to the agent.
    media: Option<u64>,
}

/// Originates in progress, by Call-ID and by fake flow.
#[derive(Default)]
pub struct Originations {
    by_call_id: HashMap<String, Origination>,
    by_flow: HashMap<u64, String>,
    next_flow: u64,
}

impl Originations {
    pub fn owns_branch(branch: &str) -> bool {
        branch.starts_with(BRANCH_PREFIX)
    }

    pub fn next_deadline(&self) -> Option<u64> {
        self.by_call_id.values().map(|o| o.deadline).min()
    }

    /// Whether an in-dialog request with `call_id` is the originate's to
    /// answer (the call does not have the agent's flow yet).
    fn intercepts(&self, call_id: &str) -> bool {
        self.by_call_id
            .get(call_id)
            .is_some_and(|o| o.stage != Stage::HandedOver)
    }

    /// The campaign trunk list of the customer's call being placed for
    /// `call_id`, when the originate has one.
    pub fn campaign_trunks(&self, call_id: &str) -> Option<&[i64]> {
        self.by_call_id
            .get(call_id)
            .filter(|o| o.stage == Stage::Dialling)
            .and_then(|o| o.campaign_trunks.as_deref())
            .filter(|t| !t.is_empty())
    }

    /// Whether the call being placed for `call_id` finds its media
    /// session open (the agent answered our offer).
    pub fn media_open(&self, call_id: &str) -> bool {
        self.by_call_id
            .get(call_id)
            .is_some_and(|o| o.media.is_some() && o.stage == Stage::Dialling)
    }

    fn remove(&mut self, call_id: &str) {
        if let Some(o) = self.by_call_id.remove(call_id) {
            self.by_flow.remove(&o.flow);
        }
    }
}

/// Digits with an optional leading `+`, as the API accepts them.
fn valid_number(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && n.chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_digit() || (i == 0 && c == '+' && n.len() > 1))
}

impl Core {
    /// Rings the agent's newest reachable softphone registration; the
    /// customer is dialled when the agent answers. Returns the Call-ID
    /// the call's events and CDR carry.
    pub fn originate(
        &mut self,
        now_ms: u64,
        req: &OriginateRequest,
    ) -> Result<String, OriginateError> {
        if !valid_number(&req.number) {
            return Err(OriginateError::InvalidNumber(req.number.clone()));
        }
        let caller = self
            .auth
            .accounts
            .cached(&Lookup::Username(req.agent_username.clone()))
            .cloned()
            .ok_or_else(|| OriginateError::UnknownAgent(req.agent_username.clone()))?;
        let binding = self
            .registrar
            .location()
            .bindings(&caller.username)
            .iter()
            .filter(|b| b.expires_at_ms > now_ms && b.reachable())
            .max_by_key(|b| b.registered_at_ms)
            .cloned()
            .ok_or(OriginateError::NotRegistered)?;
        let flow = FLOW_BASE + self.originations.next_flow;
        self.originations.next_flow += 1;
        let call_id = format!("{}@centralita", self.io.rng.token());
        // Anchored, the agent gets our offer and its answer settles its
        // leg at once; otherwise (a desk phone, media never anchored) it
        // is asked for an offer (late offer) that becomes the customer's.
        let browser = matches!(binding.src.transport, Transport::Ws | Transport::Wss);
        let kind = if browser {
            LegKind::WebRtc
        } else {
            LegKind::Plain
        };
        let anchor = match self.io.cfg.anchor {
            AnchorMode::Never => false,
            AnchorMode::Always => true,
            AnchorMode::WhenNeeded => browser,
        };
        let mut media = None;
        let mut offer = Vec::new();
        if anchor {
            let id = self.calls.reserve(&call_id);
            let record = domain::recording::should_record(
                self.io.cfg.record_calls,
                Some(caller.record_calls),
                None,
            )
            .then_some(RecordCustomer::Callee);
            let info = OpenCall {
                call_id: &call_id,
                record,
            };
            match self.io.media.open_offering(id, kind, &info) {
                Ok(sdp) => {
                    media = Some(id);
                    offer = sdp;
                }
                Err(e) => {
                    tracing::warn!(call_id = %call_id, error = %e, "originate: no anchored offer for the agent, asking for its offer");
                    self.calls.unreserve(&call_id);
                }
            }
        }
        let mut ctx = self.io.ctx(now_ms);
        let host = ctx.cfg.local_host.clone();
        let number = req.number.clone();
        let agent = Leg {
            call_id,
            local_tag: ctx.token(),
            remote_tag: String::new(),
            // The agent's softphone shows whom it is about to call.
            local_uri: format!("\"{number}\" <sip:{number}@{host}>"),
            remote_uri: format!("<sip:{}@{host}>", caller.username),
            local_cseq: 1,
            remote_target: binding.uri.clone(),
            src: binding.src,
            route: Vec::new(),
        };
        let branch = format!("{BRANCH_PREFIX}{}", ctx.token());
        let mut invite = agent.request(&ctx, "INVITE", 1, &branch);
        invite.headers.push(("Allow".into(), ALLOW.into()));
        if !offer.is_empty() {
            invite
                .headers
                .push(("Content-Type".into(), "application/sdp".into()));
            invite.body = offer;
        }
        let bytes = invite.to_bytes();
        ctx.txn.start(
            now_ms,
            TxnKey::Client(branch.clone()),
            agent.src,
            bytes.clone(),
            true,
            Owner::Originate { flow },
        );
        ctx.send_bytes(agent.src, bytes);
        let deadline = now_ms + ctx.cfg.ring_timeout_ms;
        let call_id = agent.call_id.clone();
        tracing::info!(call_id = %call_id, agent = %caller.username, number = %number, "originate: ringing the agent");
        // The record starts now, so the call is listed (and can be hung
        // up) while the agent's phone rings; the call placed when the
        // agent answers does not start it again.
        ctx.event(
            &call_id,
            now_ms,
            CallEventKind::Started {
                direction: Direction::Outbound,
                caller: Party {
                    number: caller.extension.clone(),
                    agent_id: caller.user_id,
                },
                callee: Party {
                    number: number.clone(),
                    agent_id: None,
                },
                transport: agent.src.transport.as_str().to_string(),
            },
        );
        self.originations.by_flow.insert(flow, call_id.clone());
        self.originations.by_call_id.insert(
            call_id.clone(),
            Origination {
                agent,
                invite,
                branch,
                caller,
                number,
                campaign_trunks: req.campaign_trunks.clone(),
                flow,
                stage: Stage::RingingAgent,
                deadline,
                synthetic: None,
                ack: None,
                agent_gone: false,
                media,
            },
        );
        Ok(call_id)
    }

    /// A response from the agent to our INVITE.
    pub(super) fn originate_response(&mut self, now_ms: u64, m: Msg) {
        let call_id = m.call_id().to_string();
        let Some(o) = self.originations.by_call_id.get_mut(&call_id) else {
            return;
        };
        if o.branch != m.top_branch() {
            return;
        }
        let code = m.code().unwrap_or(0);
        if code < 200 {
            return;
        }
        let mut ctx = self.io.ctx(now_ms);
        if code >= 300 {
            ctx.send(o.agent.src, &leg::ack_of_failure(&o.invite, &m, 1));
            let cause = match o.stage {
                Stage::RingingAgent => HangupCause::from_sip_code(code),
                Stage::Cancelling => HangupCause::NoAnswer,
                _ => return,
            };
            tracing::info!(call_id = %call_id, code, "originate: the agent did not answer");
            o.stage = Stage::Done;
            o.deadline = now_ms + LINGER_MS;
            self.unanswered_by_agent(now_ms, &call_id, cause);
            return;
        }
        match o.stage {
            Stage::RingingAgent | Stage::Cancelling => {}
            _ => {
                // A retransmitted 2xx: our ACK was lost (or is not due yet:
                // it waits for the customer's answer).
                if let Some(ack) = o.ack.clone() {
                    ctx.send_bytes(o.agent.src, ack);
                }
                return;
            }
        }
        o.agent.remote_tag = msg::tag(m.header("To").unwrap_or(""))
            .unwrap_or("")
            .to_string();
        if let Some(c) = m.first_in_header("Contact") {
            o.agent.remote_target = msg::addr_uri(c).to_string();
        }
        o.agent.route = m
            .header_list("Record-Route")
            .into_iter()
            .rev()
            .map(str::to_string)
            .collect();
        let late = o.stage == Stage::Cancelling;
        let mut unusable = late || m.body.is_empty();
        if let (Some(id), false) = (o.media, unusable) {
            match ctx.media.caller_answer(id, &m.body) {
                Ok(()) => {
                    // The agent's leg is settled: acknowledged at once, it
                    // hears the customer's side as soon as there is one.
                    send_ack(o, &mut ctx, None);
                }
                Err(e) => {
                    tracing::warn!(call_id = %call_id, error = %e, "originate: the agent's answer refused by the media plane");
                    unusable = true;
                }
            }
        }
        if unusable {
            // Answered as we gave up, or without the offer we asked for.
            tracing::info!(call_id = %call_id, late, "originate: the agent's answer cannot be used");
            let cause = if late {
                HangupCause::NoAnswer
            } else {
                HangupCause::Failed
            };
            ack_and_bye(o, &mut ctx, None, Some((488, "Not Acceptable Here")));
            o.stage = Stage::Done;
            o.deadline = now_ms + LINGER_MS;
            self.release_media(&call_id);
            self.unanswered_by_agent(now_ms, &call_id, cause);
            return;
        }
        // The agent's offer, sent on as its own call to the customer.
        let host = ctx.cfg.local_host.clone();
        let t = o.agent.src.transport;
        let mut inv = Msg {
            start: Start::Request {
                method: "INVITE".into(),
                uri: format!("sip:{}@{host}", o.number),
            },
            headers: vec![
                (
                    "Via".into(),
                    format!(
                        "SIP/2.0/{} {};branch=z9hG4bKsyn{}",
                        t.via(),
                        o.agent.src.peer,
                        ctx.token()
                    ),
                ),
                ("Max-Forwards".into(), "70".into()),
                (
                    "From".into(),
                    format!("{};tag={}", o.agent.remote_uri, o.agent.remote_tag),
                ),
                ("To".into(), o.agent.local_uri.clone()),
                ("Call-ID".into(), call_id.clone()),
                ("CSeq".into(), "1 INVITE".into()),
                ("Contact".into(), format!("<{}>", o.agent.remote_target)),
            ],
            body: Vec::new(),
        };
        if o.media.is_none() {
            leg::copy_body(&m, &mut inv);
        }
        o.synthetic = Some(inv.clone());
        o.stage = Stage::Dialling;
        // Anchored, the agent is acknowledged already: the customer rings
        // for the call's own ring timeout.
        o.deadline = now_ms
            + if o.media.is_some() {
                HANDED_OVER_LIMIT_MS
            } else {
                ANSWER_WAIT_MS
            };
        let src = Source {
            flow: o.flow,
            transport: t,
            peer: o.agent.src.peer,
        };
        let (a_tag, caller) = (o.agent.local_tag.clone(), o.caller.clone());
        tracing::info!(call_id = %call_id, "originate: the agent answered, dialling the customer");
        self.place_call(now_ms, src, inv, a_tag, caller);
    }

    /// Something the customer's call sent to its (synthetic) caller.
    pub(super) fn deliver_to_synthetic_caller(&mut self, to: Source, data: &[u8]) {
        let now_ms = self.io.now_ms;
        let Some(call_id) = self.originations.by_flow.get(&to.flow).cloned() else {
            return;
        };
        let Ok(m) = Msg::parse(data, &self.io.cfg.limits) else {
            return;
        };
        let call_exists = self.calls.find(&call_id).is_some();
        let Some(o) = self.originations.by_call_id.get_mut(&call_id) else {
            return;
        };
        let (Some(code), Stage::Dialling) = (m.code(), o.stage) else {
            return; // retransmissions after the end, or a request
        };
        let mut ctx = self.io.ctx(now_ms);
        if code < 200 {
            if !m.body.is_empty() && o.ack.is_none() && !o.agent_gone {
                // Early media: the agent hears the customer's side ring.
                send_ack(o, &mut ctx, Some(&m));
            }
            return;
        }
        let Some(mut ack) = o.synthetic.clone() else {
            return;
        };
        if code < 300 {
            if o.ack.is_none() {
                send_ack(o, &mut ctx, Some(&m));
            }
            o.stage = Stage::HandedOver;
        } else {
            if !call_exists {
                // Refused before a call existed (dial plan, limits).
                if let Some(id) = o.media.take() {
                    self.calls.unreserve(&call_id);
                    ctx.media.close(id);
                }
            }
            if !o.agent_gone {
                let reason = match &m.start {
                    Start::Response { reason, .. } => reason.clone(),
                    Start::Request { .. } => String::new(),
                };
                ack_and_bye(o, &mut ctx, Some(&m), Some((code, &reason)));
            }
            o.stage = Stage::Done;
        }
        o.deadline = now_ms + LINGER_MS;
        let agent_src = o.agent.src;
        // The synthetic ACK: same Via (a non-2xx's ACK is hop by hop on
        // the INVITE's branch), CSeq and tags as the call expects.
        ack.start = Start::Request {
            method: "ACK".into(),
            uri: ack.ruri().to_string(),
        };
        ack.headers
            .retain(|(n, _)| matches!(n.as_str(), "Via" | "From" | "Call-ID" | "Max-Forwards"));
        ack.headers
            .push(("To".into(), m.header("To").unwrap_or("").to_string()));
        ack.headers.push(("CSeq".into(), "1 ACK".into()));
        ack.body.clear();
        self.handle_call_request(now_ms, to, ack);
        if code < 300 {
            if let Some((id, _)) = self.calls.find(&call_id) {
                let mut ctx = self.io.ctx(now_ms);
                self.calls
                    .with(&mut ctx, id, |c, _| c.set_caller_source(agent_src));
            }
            tracing::info!(call_id = %call_id, "originate: the customer answered");
        }
    }

    /// An in-dialog request from the agent before its call has its flow:
    /// a BYE ends the customer's call still ringing; anything else waits.
    /// False when the request is not the originate's to answer.
    pub(super) fn originate_in_dialog(&mut self, now_ms: u64, src: Source, m: &Msg) -> bool {
        let call_id = m.call_id();
        if m.method() == Some("ACK") || !self.originations.intercepts(call_id) {
            return false;
        }
        let Some(o) = self.originations.by_call_id.get_mut(call_id) else {
            return false;
        };
        let dialling = o.stage == Stage::Dialling;
        let r = match m.method().unwrap_or("") {
            "BYE" => {
                o.agent_gone = true;
                response(m, 200, "OK", None)
            }
            "INVITE" | "UPDATE" if dialling => response(m, 491, "Request Pending", None),
            _ if dialling => response(m, 200, "OK", None),
            _ => response(m, 481, "Call/Transaction Does Not Exist", None),
        };
        let bye = m.method() == Some("BYE");
        let mut ctx = self.io.ctx(now_ms);
        ctx.reply(src, m, r);
        if bye && dialling {
            tracing::info!(call_id = %call_id, "originate: the agent hung up before the customer answered");
            let call_id = call_id.to_string();
            self.calls
                .hang_up(&mut ctx, &call_id, HangupCause::Cancelled);
        }
        true
    }

    /// Ring timeouts, the answer wait, and forgetting finished originates.
    pub(super) fn originate_timeouts(&mut self, now_ms: u64) {
        let due: Vec<String> = self
            .originations
            .by_call_id
            .iter()
            .filter(|(_, o)| o.deadline <= now_ms)
            .map(|(k, _)| k.clone())
            .collect();
        for call_id in due {
            let Some(o) = self.originations.by_call_id.get_mut(&call_id) else {
                continue;
            };
            match o.stage {
                Stage::RingingAgent => {
                    let mut ctx = self.io.ctx(now_ms);
                    cancel(o, &mut ctx);
                    o.stage = Stage::Cancelling;
                    o.deadline = now_ms + CANCEL_WAIT_MS;
                }
                Stage::Cancelling => {
                    o.stage = Stage::Done;
                    o.deadline = now_ms + LINGER_MS;
                    self.unanswered_by_agent(now_ms, &call_id, HangupCause::NoAnswer);
                }
                Stage::Dialling => {
                    // The agent's 200 cannot wait any longer for an answer.
                    tracing::info!(call_id = %call_id, "originate: no answer from the customer in time");
                    o.deadline = now_ms + LINGER_MS;
                    let mut ctx = self.io.ctx(now_ms);
                    // The call's final answer to its synthetic caller is
                    // what ends the agent's side (`deliver_to_synthetic_caller`);
                    // a call already gone has sent it.
                    self.calls
                        .hang_up(&mut ctx, &call_id, HangupCause::NoAnswer);
                    if self.calls.find(&call_id).is_none() {
                        if let Some(o) = self.originations.by_call_id.get_mut(&call_id) {
                            o.stage = Stage::Done;
                        }
                    }
                }
                Stage::HandedOver | Stage::Done => self.originations.remove(&call_id),
            }
        }
    }

    /// Our INVITE to the agent got no response at all.
    pub(super) fn originate_txn_timeout(&mut self, now_ms: u64, flow: u64) {
        let Some(call_id) = self.originations.by_flow.get(&flow).cloned() else {
            return;
        };
        let Some(o) = self.originations.by_call_id.get_mut(&call_id) else {
            return;
        };
        if !matches!(o.stage, Stage::RingingAgent | Stage::Cancelling) {
            return;
        }
        o.stage = Stage::Done;
        o.deadline = now_ms + LINGER_MS;
        self.unanswered_by_agent(now_ms, &call_id, HangupCause::NoAnswer);
    }

    /// The agent's connection closed: an originate ringing it ends; one
    /// whose customer rings ends that call.
    pub(super) fn originate_lost(&mut self, now_ms: u64, lost: Lost) {
        let hit: Vec<String> = self
            .originations
            .by_call_id
            .iter()
            .filter(|(_, o)| {
                matches!(o.stage, Stage::RingingAgent | Stage::Dialling) && lost.hits(o.agent.src)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for call_id in hit {
            let Some(o) = self.originations.by_call_id.get_mut(&call_id) else {
                continue;
            };
            o.agent_gone = true;
            let stage = o.stage;
            o.deadline = now_ms + LINGER_MS;
            if stage == Stage::RingingAgent {
                o.stage = Stage::Done;
                self.unanswered_by_agent(now_ms, &call_id, HangupCause::CallerConnectionLost);
            } else {
                let mut ctx = self.io.ctx(now_ms);
                self.calls
                    .hang_up(&mut ctx, &call_id, HangupCause::CallerConnectionLost);
            }
        }
    }

    /// A hang-up request for an originate still ringing its agent (no
    /// call exists yet): CANCEL, and the record closed as forced.
    pub(super) fn originate_hang_up(&mut self, now_ms: u64, call_id: &str) -> bool {
        let Some(o) = self.originations.by_call_id.get_mut(call_id) else {
            return false;
        };
        if o.stage != Stage::RingingAgent {
            return false;
        }
        let mut ctx = self.io.ctx(now_ms);
        cancel(o, &mut ctx);
        o.stage = Stage::Done;
        o.deadline = now_ms + LINGER_MS;
        self.unanswered_by_agent(now_ms, call_id, HangupCause::ForcedHangup);
        true
    }

    /// Closes an anchored originate's media session when its call never
    /// started (a call that did closes it when it ends).
    fn release_media(&mut self, call_id: &str) {
        let Some(o) = self.originations.by_call_id.get_mut(call_id) else {
            return;
        };
        let Some(id) = o.media.take() else {
            return;
        };
        if self.calls.find(call_id).is_none() {
            self.calls.unreserve(call_id);
            self.io.media.close(id);
        }
    }

    /// The end of the record of an originate that never reached the
    /// customer: the agent did not answer (or could not be reached).
    fn unanswered_by_agent(&mut self, now_ms: u64, call_id: &str, cause: HangupCause) {
        self.release_media(call_id);
        self.io.out.push_back(Output::Call(CallEvent {
            call_id: call_id.to_string(),
            at_ms: now_ms,
            kind: CallEventKind::Ended { cause },
        }));
    }
}

/// ACK of the agent's 200, carrying the answer SDP of `answer` (a 183's
/// or 200's from the customer's side).
fn send_ack(o: &mut Origination, ctx: &mut crate::core::ctx::Ctx<'_>, answer: Option<&Msg>) {
    let branch = format!("{BRANCH_PREFIX}{}", ctx.token());
    let mut ack = o.agent.request(ctx, "ACK", 1, &branch);
    if let Some(m) = answer {
        leg::copy_body(m, &mut ack);
    }
    let bytes = ack.to_bytes();
    ctx.send_bytes(o.agent.src, bytes.clone());
    o.ack = Some(bytes);
}

/// The customer's side failed (or the agent's answer was unusable):
/// ACK the agent's 200 if not done yet, then BYE saying why.
fn ack_and_bye(
    o: &mut Origination,
    ctx: &mut crate::core::ctx::Ctx<'_>,
    answer: Option<&Msg>,
    why: Option<(u16, &str)>,
) {
    if o.ack.is_none() {
        send_ack(o, ctx, answer.filter(|m| !m.body.is_empty()));
    }
    o.agent.local_cseq += 1;
    let branch = format!("{BRANCH_PREFIX}{}", ctx.token());
    let mut bye = o.agent.request(ctx, "BYE", o.agent.local_cseq, &branch);
    if let Some((code, text)) = why {
        let text = text.replace(['"', '\\'], "");
        bye.headers.push((
            "Reason".into(),
            format!("SIP ;cause={code} ;text=\"{text}\""),
        ));
    }
    let bytes = bye.to_bytes();
    ctx.txn.start(
        ctx.now_ms,
        TxnKey::Client(branch),
        o.agent.src,
        bytes.clone(),
        false,
        Owner::None,
    );
    ctx.send_bytes(o.agent.src, bytes);
}

/// CANCEL of our INVITE to the agent.
fn cancel(o: &Origination, ctx: &mut crate::core::ctx::Ctx<'_>) {
    let bytes = leg::cancel_of(&o.invite, 1).to_bytes();
    ctx.txn.start(
        ctx.now_ms,
        TxnKey::Cancel(o.branch.clone()),
        o.agent.src,
        bytes.clone(),
        false,
        Owner::None,
    );
    ctx.send_bytes(o.agent.src, bytes);
}

#[cfg(test)]
mod tests {
    use super::valid_number;

    #[test]
    fn numbers_are_digits_with_an_optional_plus() {
        for ok in ["+34911222333", "600111222", "1"] {
            assert!(valid_number(ok), "{ok}");
        }
        for bad in ["", "+", "12a", "1+2", "<sip:x>", &"9".repeat(33)] {
            assert!(!valid_number(bad), "{bad}");
        }
    }
}
