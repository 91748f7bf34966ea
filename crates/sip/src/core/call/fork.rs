//! The ringing phase of a call: responses of the forks, the winner's 2xx
//! (and the session timer it settles), cancelling the losers, and the
//! answer to the caller when every fork failed.

use super::session_timer::{self, Refresher};
use super::{Call, Ctx, ForkState, Phase, SessionTimer, Side};
use crate::core::msg::{self, response, Msg};
use crate::core::txn::{Owner, TxnKey};
use crate::core::types::ALLOW;
use domain::call_events::{CallEventKind, HangupCause};

impl Call {
    /// A response to something this call sent, by the branch it carries.
    pub fn handle_response(&mut self, ctx: &mut Ctx<'_>, m: Msg) {
        let branch = m.top_branch().to_string();
        let (_, method) = m.cseq();
        if method == "CANCEL" {
            return;
        }
        if let Some(fi) = self.forks.iter().position(|f| f.branch == branch) {
            if method == "INVITE" {
                self.fork_response(ctx, fi, m);
            }
            return;
        }
        if self.relays.contains_key(&branch) {
            self.relay_response(ctx, &branch, m);
        }
    }

    /// Whether `branch` is a request of this call still waiting for a
    /// final response (so a provisional may quiet its retransmissions).
    pub fn expects(&self, branch: &str) -> bool {
        self.forks.iter().any(|f| f.branch == branch) || self.relays.contains_key(branch)
    }

    fn fork_response(&mut self, ctx: &mut Ctx<'_>, fi: usize, m: Msg) {
        let now = ctx.now_ms;
        let code = m.code().unwrap_or(0);
        let to_tag = msg::tag(m.header("To").unwrap_or(""))
            .unwrap_or("")
            .to_string();
        if self.abandoned_trunk_response(ctx, fi, &m) {
            return;
        }
        let fork = &mut self.forks[fi];
        if fork.trunk_id.is_some() && fork.state == ForkState::Calling {
            // The carrier is there: it gets the whole ring time now.
            self.deadlines.carrier = None;
        }
        let fork = &mut self.forks[fi];
        if !to_tag.is_empty() && fork.leg.remote_tag.is_empty() {
            fork.leg.remote_tag = to_tag;
        }
        if code < 200 {
            if fork.state == ForkState::Calling {
                fork.state = ForkState::Proceeding;
            }
            if self.phase == Phase::Ringing && (code == 180 || code == 183) {
                let first_of_fork = !fork.ringing_reported;
                fork.ringing_reported = true;
                let reason = if code == 180 {
                    "Ringing"
                } else {
                    "Session Progress"
                };
                let mut r = response(&self.a_invite, code, reason, Some(&self.a.local_tag));
                r.headers
                    .push(("Contact".into(), ctx.our_contact(self.a.src.transport)));
                if self.anchored {
                    if !m.body.is_empty() {
                        match self.media_answer(ctx, fi, &m) {
                            Ok(sdp) => Self::set_sdp(&mut r, sdp),
                            Err(e) => {
                                tracing::warn!(call_id = %self.a.call_id, error = %e, "early media answer refused")
                            }
                        }
                    }
                } else {
                    super::copy_body(&m, &mut r);
                }
                self.ringing_sent = true;
                let bytes = r.to_bytes();
                ctx.txn
                    .remember(now, &self.a_invite, self.a.src, bytes.clone());
                ctx.send_bytes(self.a.src, bytes);
                if first_of_fork {
                    ctx.event(
                        &self.a.call_id,
                        now,
                        CallEventKind::Ringing { leg: fi as u32 + 1 },
                    );
                }
            }
            return;
        }
        if code < 300 {
            if let Some(c) = m.first_in_header("Contact") {
                fork.leg.remote_target = msg::addr_uri(c).to_string();
            }
            if fork.trunk_id.is_some() && fork.state != ForkState::Answered {
                // A carrier's proxies may record-route; phones do not, and
                // agent legs keep going straight to the registered flow.
                fork.leg.route = m
                    .header_list("Record-Route")
                    .into_iter()
                    .rev()
                    .map(str::to_string)
                    .collect();
            }
            if fork.state == ForkState::Answered {
                // Retransmitted 2xx: our ACK was lost.
                if let Some(ack) = fork.ack.clone() {
                    ctx.send_bytes(fork.leg.src, ack);
                }
                return;
            }
            fork.state = ForkState::Answered;
            fork.code = code;
            if self.phase != Phase::Ringing || self.winner.is_some() {
                // Late answer on a losing fork or after a cancel: ACK and BYE it.
                fork.state = ForkState::Done;
                let branch = super::new_branch(ctx, self.id);
                let ack = fork.leg.request(ctx, "ACK", fork.cseq, &branch);
                ctx.send(fork.leg.src, &ack);
                self.send_bye(ctx, Side::B(fi));
                return;
            }
            if self.anchored {
                match self.media_answer(ctx, fi, &m) {
                    Ok(sdp) => {
                        self.answered(ctx, fi, &m, Some(sdp));
                    }
                    Err(e) => {
                        // The answer cannot be anchored (no common codec...):
                        // this fork ends; the caller gets 488 if it was the last.
                        tracing::warn!(call_id = %self.a.call_id, error = %e, "answer refused by the media plane");
                        let fork = &mut self.forks[fi];
                        fork.state = ForkState::Done;
                        fork.code = 488;
                        let branch = super::new_branch(ctx, self.id);
                        let ack = fork.leg.request(ctx, "ACK", fork.cseq, &branch);
                        ctx.send(fork.leg.src, &ack);
                        self.send_bye(ctx, Side::B(fi));
                        self.media_close_fork(ctx, fi);
                        ctx.event(
                            &self.a.call_id,
                            now,
                            CallEventKind::LegEnded {
                                leg: fi as u32 + 1,
                                cause: HangupCause::Failed,
                                sip_code: Some(488),
                            },
                        );
                        self.fork_failed(ctx);
                    }
                }
            } else {
                self.answered(ctx, fi, &m, None);
            }
            return;
        }
        // Non-2xx final: ACK hop by hop (same branch as the INVITE).
        fork.state = ForkState::Done;
        fork.code = code;
        let ack = super::leg::ack_of_failure(&fork.invite, &m, fork.cseq);
        ctx.send(fork.leg.src, &ack);
        if matches!(code, 401 | 407)
            && self.phase == Phase::Ringing
            && self.answer_challenge(ctx, fi, &m)
        {
            return;
        }
        self.media_close_fork(ctx, fi);
        let cause = if self.phase == Phase::Ringing {
            HangupCause::from_sip_code(code)
        } else {
            HangupCause::Cancelled
        };
        ctx.event(
            &self.a.call_id,
            now,
            CallEventKind::LegEnded {
                leg: fi as u32 + 1,
                cause,
                sip_code: Some(code),
            },
        );
        self.fork_failed(ctx);
    }

    /// Fork `fi` answered first: it wins, the others are cancelled, the
    /// caller gets the 200 with the callee's SDP.
    /// `sdp`: our answer for the caller when the call is anchored.
    fn answered(&mut self, ctx: &mut Ctx<'_>, fi: usize, m: &Msg, sdp: Option<Vec<u8>>) {
        let now = ctx.now_ms;
        self.winner = Some(fi);
        self.phase = Phase::Answered;
        self.deadlines.ring = None;
        self.media[1].last_sdp = m.body.clone();
        let mut r = response(&self.a_invite, 200, "OK", Some(&self.a.local_tag));
        r.headers
            .push(("Contact".into(), ctx.our_contact(self.a.src.transport)));
        r.headers.push(("Allow".into(), ALLOW.into()));
        self.settle_session_timer(ctx, m, &mut r);
        match sdp {
            Some(sdp) => Self::set_sdp(&mut r, sdp),
            None => super::copy_body(m, &mut r),
        }
        ctx.event(
            &self.a.call_id,
            now,
            CallEventKind::Answered { leg: fi as u32 + 1 },
        );
        if ctx.cfg.max_call_duration_ms > 0 {
            self.deadlines.max_duration = Some(now + ctx.cfg.max_call_duration_ms);
        }
        self.cancel_forks(ctx, Some(fi));
        for i in 0..self.forks.len() {
            if i != fi {
                self.media_close_fork(ctx, i);
            }
        }
        self.final_to_a(ctx, r);
        self.trim_invites();
    }

    /// Decides who refreshes the session on each leg (see
    /// `session_timer.rs`) and adds our terms to the caller's 200.
    fn settle_session_timer(&mut self, ctx: &mut Ctx<'_>, b_answer: &Msg, to_a: &mut Msg) {
        if self.session_secs == 0 {
            return;
        }
        let a_supports = session_timer::supports_timer(&self.a_invite);
        let b_terms = session_timer::parse_session_expires(b_answer);
        let secs = b_terms.map_or(self.session_secs, |t| t.secs.max(90));
        // Who refreshes toward the callee: the callee itself (uas), or us
        // as its UAC, which means the caller's refreshes relayed, or ours.
        let b_refreshes = b_terms.is_some_and(|t| t.refresher == Some(Refresher::Uas));
        // The caller's role toward us, and whether we refresh the callee.
        let (a_role, we_refresh_b) = match (b_terms.is_some(), b_refreshes, a_supports) {
            // The callee refreshes; its refreshes reach the caller as ours.
            (_, true, true) => (Some("uas"), false),
            (_, true, false) => (None, false),
            // The caller refreshes; relayed, they refresh the callee too.
            (_, false, true) => (Some("uac"), false),
            // We asked the callee to refresh (`refresher=uas`, since the
            // caller cannot) and it picked us anyway: refresh it with
            // UPDATE if it takes UPDATE; otherwise the expiry still holds.
            (true, false, false) => (None, session_timer::allows_update(b_answer)),
            // Nobody negotiated timers: only the maximum duration applies.
            (false, false, false) => return,
        };
        if let Some(role) = a_role {
            to_a.headers
                .push(("Session-Expires".into(), format!("{secs};refresher={role}")));
            to_a.headers.push(("Require".into(), "timer".into()));
        }
        self.session = Some(SessionTimer {
            secs,
            last_refresh_ms: ctx.now_ms,
            we_refresh_b,
        });
    }

    /// CANCEL to every fork still ringing except `except`.
    pub(super) fn cancel_forks(&mut self, ctx: &mut Ctx<'_>, except: Option<usize>) {
        let now = ctx.now_ms;
        let cause = if except.is_some() {
            HangupCause::AnsweredElsewhere
        } else {
            HangupCause::Cancelled
        };
        for (i, f) in self.forks.iter_mut().enumerate() {
            if Some(i) == except || !matches!(f.state, ForkState::Calling | ForkState::Proceeding) {
                continue;
            }
            let bytes = super::leg::cancel_of(&f.invite, f.cseq).to_bytes();
            ctx.txn.start(
                now,
                TxnKey::Cancel(f.branch.clone()),
                f.leg.src,
                bytes.clone(),
                false,
                Owner::None,
            );
            ctx.send_bytes(f.leg.src, bytes);
            ctx.event(
                &self.a.call_id,
                now,
                CallEventKind::LegEnded {
                    leg: i as u32 + 1,
                    cause,
                    sip_code: None,
                },
            );
        }
    }

    /// After a fork ended without an answer: if every fork did, the call
    /// fails with the most telling code (busy beats the rest).
    pub(super) fn fork_failed(&mut self, ctx: &mut Ctx<'_>) {
        if self.phase != Phase::Ringing || self.forks.iter().any(|f| f.state != ForkState::Done) {
            return;
        }
        if self.trunk.is_some() {
            self.trunk_failed(ctx);
            return;
        }
        let codes: Vec<u16> = self.forks.iter().map(|f| f.code).collect();
        let code = codes
            .iter()
            .copied()
            .find(|c| matches!(c, 486 | 600 | 603))
            .unwrap_or_else(|| codes.iter().copied().min().unwrap_or(480));
        let cause = HangupCause::from_sip_code(code);
        let (code, reason) = match code {
            486 | 600 | 603 => (486, "Busy Here"),
            408 => (480, "Temporarily Unavailable"),
            c => (c, "Call Failed"),
        };
        let r = response(&self.a_invite, code, reason, Some(&self.a.local_tag));
        self.final_to_a(ctx, r);
        let now = ctx.now_ms;
        self.end(ctx, now, cause);
    }
}
