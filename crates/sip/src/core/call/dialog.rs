//! Requests inside a call: ACK, CANCEL, BYE, and every other in-dialog
//! request (re-INVITE, UPDATE, INFO, OPTIONS...) relayed to the other leg;
//! their responses relayed back; session refreshes we send ourselves.

use super::{Call, Ctx, Phase, ReinviteAck, Relay, Side};
use crate::core::msg::{self, response, Msg, Start};
use crate::core::txn::{Owner, TxnKey};
use crate::core::types::Source;
use domain::call_events::HangupCause;

impl Call {
    /// ACK from either side.
    pub fn handle_ack(&mut self, ctx: &mut Ctx<'_>, side: Side, m: &Msg) {
        let (cseq, _) = m.cseq();
        // ACK of the caller's initial INVITE.
        if side == Side::A && cseq == self.a_invite.cseq().0 && m.call_id() == self.a.call_id {
            let stopped = ctx.txn.stop(&TxnKey::InviteFinal(self.id));
            let Some(w) = self.winner else {
                return; // ACK for a non-2xx: hop by hop, absorbed here.
            };
            if stopped.is_none() && self.forks[w].ack.is_some() {
                return; // retransmitted ACK
            }
            if self.phase == Phase::Ending && self.forks[w].ack.is_none() && stopped.is_none() {
                return;
            }
            let branch = super::new_branch(ctx, self.id);
            let leg = &self.forks[w].leg;
            let mut ack = leg.request(ctx, "ACK", self.forks[w].cseq, &branch);
            if !self.anchored {
                super::copy_body(m, &mut ack);
            }
            let bytes = ack.to_bytes();
            ctx.send_bytes(leg.src, bytes.clone());
            self.forks[w].ack = Some(bytes);
            return;
        }
        // ACK of a relayed re-INVITE 2xx: pass it on end to end.
        let Some(i) = self
            .reinvite_acks
            .iter()
            .position(|a| a.from == side && a.cseq == cseq)
        else {
            // ACK of a 2xx we gave ourselves (anchored re-INVITE); the
            // first one may carry the answer to our offer.
            let first = ctx.txn.stop(&TxnKey::ReInvite2xx(self.id, cseq)).is_some();
            if first && self.anchored {
                self.media_ack(ctx, side, m);
            }
            return;
        };
        let a = self.reinvite_acks.remove(i);
        ctx.txn.stop(&TxnKey::ReInvite2xx(self.id, cseq));
        let branch = super::new_branch(ctx, self.id);
        let Some(leg) = self.leg(a.to) else {
            return;
        };
        let mut ack = leg.request(ctx, "ACK", a.fwd_cseq, &branch);
        super::copy_body(m, &mut ack);
        ctx.send(leg.src, &ack);
    }

    /// CANCEL from the caller: 200 to the CANCEL; while ringing, 487 to
    /// the INVITE and CANCEL to every fork.
    pub fn handle_cancel(&mut self, ctx: &mut Ctx<'_>, src: Source, m: &Msg) {
        ctx.reply(src, m, response(m, 200, "OK", None));
        if self.phase != Phase::Ringing || self.a_invite.top_branch() != m.top_branch() {
            return;
        }
        let r = response(
            &self.a_invite,
            487,
            "Request Terminated",
            Some(&self.a.local_tag),
        );
        self.cancel_forks(ctx, None);
        self.final_to_a(ctx, r);
        let now = ctx.now_ms;
        self.end(ctx, now, HangupCause::Cancelled);
    }

    /// Any other request inside the dialog of `side`.
    pub fn handle_in_dialog(&mut self, ctx: &mut Ctx<'_>, side: Side, src: Source, m: Msg) {
        let method = m.method().unwrap_or("").to_string();
        let other = match (side, self.winner) {
            (Side::A, Some(w)) => Side::B(w),
            (Side::B(i), Some(w)) if i == w => Side::A,
            _ => {
                ctx.reply(
                    src,
                    &m,
                    response(&m, 481, "Call/Transaction Does Not Exist", None),
                );
                return;
            }
        };
        if self.phase == Phase::Ending {
            let r = if method == "BYE" {
                response(&m, 200, "OK", None)
            } else {
                response(&m, 481, "Call/Transaction Does Not Exist", None)
            };
            ctx.reply(src, &m, r);
            return;
        }
        if method == "BYE" {
            ctx.reply(src, &m, response(&m, 200, "OK", None));
            self.send_bye(ctx, other);
            let cause = if side == Side::A {
                HangupCause::CallerBye
            } else {
                HangupCause::CalleeBye
            };
            let now = ctx.now_ms;
            self.end(ctx, now, cause);
            return;
        }
        if method == "INVITE" && self.anchored {
            self.local_reinvite(ctx, side, src, m);
            return;
        }
        if method == "INFO" && self.anchored && self.dtmf_to_media(ctx, side, &m) {
            ctx.reply(src, &m, response(&m, 200, "OK", None));
            return;
        }
        // Relay it to the other leg with that leg's dialog state.
        let branch = super::new_branch(ctx, self.id);
        let Some(leg) = self.leg_mut(other) else {
            return;
        };
        leg.local_cseq += 1;
        let fwd_cseq = leg.local_cseq;
        let leg = leg.clone();
        let mut req = leg.request(ctx, &method, fwd_cseq, &branch);
        for h in [
            "Content-Disposition",
            "Supported",
            "Require",
            "Allow",
            "Event",
            "Session-Expires",
            "Min-SE",
        ] {
            if let Some(v) = m.header(h) {
                req.headers.push((h.to_string(), v.to_string()));
            }
        }
        super::copy_body(&m, &mut req);
        let bytes = req.to_bytes();
        ctx.txn.start(
            ctx.now_ms,
            TxnKey::Client(branch.clone()),
            leg.src,
            bytes.clone(),
            method == "INVITE",
            Owner::Relay { call: self.id },
        );
        ctx.send_bytes(leg.src, bytes);
        if method == "INVITE" {
            let idx = if side == Side::A { 0 } else { 1 };
            self.media[idx].last_sdp = m.body.clone();
        }
        self.relays.insert(
            branch,
            Relay {
                from: side,
                refresh: method == "INVITE" || method == "UPDATE",
                req: Some(m),
                src,
                fwd_cseq,
            },
        );
    }

    /// A response to a relayed request (or to our own refresh).
    pub(super) fn relay_response(&mut self, ctx: &mut Ctx<'_>, branch: &str, m: Msg) {
        let code = m.code().unwrap_or(0);
        let Some(relay) = self.relays.get(branch) else {
            return;
        };
        let (from, src, fwd_cseq, refresh) = (relay.from, relay.src, relay.fwd_cseq, relay.refresh);
        let Some(req) = relay.req.clone() else {
            if code >= 200 {
                self.relays.remove(branch);
                self.own_refresh_answered(ctx, code);
            }
            return;
        };
        if code >= 200 {
            self.relays.remove(branch);
        }
        if refresh && (200..300).contains(&code) {
            if let Some(s) = &mut self.session {
                s.last_refresh_ms = ctx.now_ms;
            }
        }
        let is_invite = req.method() == Some("INVITE");
        let reason = match &m.start {
            Start::Response { reason, .. } => reason.clone(),
            _ => String::new(),
        };
        let other_side = match from {
            Side::A => self.winner.map(Side::B).unwrap_or(Side::A),
            Side::B(_) => Side::A,
        };
        let mut r = response(&req, code, &reason, None);
        if (200..300).contains(&code) {
            if let Some(c) = m.first_in_header("Contact") {
                let target = msg::addr_uri(c).to_string();
                if let Some(leg) = self.leg_mut(other_side) {
                    leg.remote_target = target;
                }
            }
            r.headers
                .push(("Contact".into(), ctx.our_contact(src.transport)));
            for h in ["Session-Expires", "Require"] {
                if let Some(v) = m.header(h) {
                    r.headers.push((h.to_string(), v.to_string()));
                }
            }
        }
        super::copy_body(&m, &mut r);
        if is_invite && code >= 300 {
            // Hop-by-hop ACK toward the side that refused the re-INVITE.
            if let Some(leg) = self.leg(other_side) {
                let mut ack = leg.request(ctx, "ACK", fwd_cseq, "");
                ack.headers[0].1 = m.header("Via").unwrap_or("").to_string();
                ctx.send(leg.src, &ack);
            }
        }
        let bytes = r.to_bytes();
        if code >= 200 {
            ctx.txn.remember(ctx.now_ms, &req, src, bytes.clone());
        }
        if is_invite && (200..300).contains(&code) {
            let (cseq, _) = req.cseq();
            self.reinvite_acks.push(ReinviteAck {
                from,
                cseq,
                to: other_side,
                fwd_cseq,
            });
            ctx.txn.start(
                ctx.now_ms,
                TxnKey::ReInvite2xx(self.id, cseq),
                src,
                bytes.clone(),
                false,
                Owner::None,
            );
        }
        ctx.send_bytes(src, bytes);
    }

    /// Relayed requests the other side never answered: 408 to their senders.
    pub(super) fn relays_timed_out(&mut self, ctx: &mut Ctx<'_>) {
        let dead: Vec<String> = self
            .relays
            .keys()
            .filter(|b| !ctx.txn.contains(&TxnKey::Client((*b).clone())))
            .cloned()
            .collect();
        for b in dead {
            let Some(r) = self.relays.remove(&b) else {
                continue;
            };
            match r.req {
                Some(req) => ctx.send(r.src, &response(&req, 408, "Request Timeout", None)),
                None => self.own_refresh_answered(ctx, 408),
            }
        }
    }

    /// We refresh the callee's session ourselves (nobody else will; only
    /// chosen when its 2xx allowed UPDATE): UPDATE without a body.
    pub(super) fn send_refresh_b(&mut self, ctx: &mut Ctx<'_>) {
        let Some(w) = self.winner else {
            return;
        };
        self.send_refresh(ctx, Side::B(w));
    }

    /// UPDATE without a body toward `to`, refreshing its session: ours on
    /// the callee's leg (see `send_refresh_b`), or, on an anchored call, on
    /// the leg a refresh of the other side no longer reaches (re-INVITEs
    /// are answered per leg there, see `anchor.rs`).
    pub(super) fn send_refresh(&mut self, ctx: &mut Ctx<'_>, to: Side) {
        let secs = self.session.as_ref().map_or(0, |s| s.secs);
        let branch = super::new_branch(ctx, self.id);
        let from = if to == Side::A {
            self.winner.map_or(Side::A, Side::B)
        } else {
            Side::A
        };
        let Some(leg) = self.leg_mut(to) else {
            return;
        };
        leg.local_cseq += 1;
        let leg = leg.clone();
        let mut req = leg.request(ctx, "UPDATE", leg.local_cseq, &branch);
        req.headers
            .push(("Session-Expires".into(), format!("{secs};refresher=uac")));
        req.headers.push(("Supported".into(), "timer".into()));
        let bytes = req.to_bytes();
        ctx.txn.start(
            ctx.now_ms,
            TxnKey::Client(branch.clone()),
            leg.src,
            bytes.clone(),
            false,
            Owner::Relay { call: self.id },
        );
        ctx.send_bytes(leg.src, bytes);
        self.relays.insert(
            branch,
            Relay {
                from,
                req: None,
                src: leg.src,
                fwd_cseq: leg.local_cseq,
                refresh: true,
            },
        );
    }

    fn own_refresh_answered(&mut self, ctx: &mut Ctx<'_>, code: u16) {
        let now = ctx.now_ms;
        match code {
            200..=299 => {
                if let Some(s) = &mut self.session {
                    s.last_refresh_ms = now;
                }
            }
            408 | 481 => {
                // The callee is gone (RFC 5057): end the call.
                let last = self.session.as_ref().map_or(now, |s| s.last_refresh_ms);
                self.hang_up_both(ctx, last, HangupCause::SessionTimerExpired);
            }
            _ => {
                // It cannot take our refresh: stop trying; the expiry still holds.
                if let Some(s) = &mut self.session {
                    s.we_refresh_b = false;
                }
            }
        }
    }
}
