//! Anchored media: the call's SDP goes through the media plane
//! (`core::media`). The caller's offer opened the session in
//! `Call::start` and each fork got our offer for its kind; here the
//! fork's answer (183 or 2xx) becomes our answer to the caller (the same
//! SDP in 183 and 200, so early media and the first words are not lost),
//! re-INVITEs are answered by us for the leg that sent them (hold on one
//! side must not renegotiate the other: the media plane plays music to
//! the held party instead), and media events end the call.

use super::{Call, Ctx, Phase, Side};
use crate::core::media::{MediaError, MediaEvent, MediaSide};
use crate::core::msg::{response, Msg};
use crate::core::txn::{Owner, TxnKey};
use crate::core::types::{Source, ALLOW};
use domain::call_events::HangupCause;

impl Call {
    pub fn is_anchored(&self) -> bool {
        self.anchored
    }

    /// Our answer for the caller from fork `fi`'s SDP answer.
    pub(super) fn media_answer(
        &mut self,
        ctx: &mut Ctx<'_>,
        fi: usize,
        answer: &Msg,
    ) -> Result<Vec<u8>, MediaError> {
        ctx.media.answer(self.id, fi, &answer.body)
    }

    /// Puts our SDP (for the caller) into a response relayed from a fork.
    pub(super) fn set_sdp(r: &mut Msg, sdp: Vec<u8>) {
        r.headers.retain(|(n, _)| n != "Content-Type");
        r.headers
            .push(("Content-Type".into(), "application/sdp".into()));
        r.body = sdp;
    }

    /// Forks that lost (another answered) or failed give their legs back.
    pub(super) fn media_close_fork(&mut self, ctx: &mut Ctx<'_>, fi: usize) {
        if self.anchored {
            ctx.media.close_fork(self.id, fi);
        }
    }

    /// A re-INVITE inside an anchored call: answered here for that leg.
    pub(super) fn local_reinvite(&mut self, ctx: &mut Ctx<'_>, side: Side, src: Source, m: Msg) {
        let media_side = match side {
            Side::A => MediaSide::Caller,
            Side::B(i) => MediaSide::Fork(i),
        };
        let local_tag = self
            .leg(side)
            .map(|l| l.local_tag.clone())
            .unwrap_or_default();
        let mut refresh_other = false;
        // Without SDP (RFC 3261 §14.2) the 200 carries our offer for this
        // leg and the ACK its answer (`ack_answer`).
        let sdp = if m.body.is_empty() {
            ctx.media.offer_again(self.id, media_side)
        } else {
            ctx.media.reoffer(self.id, media_side, &m.body)
        };
        let r = match sdp {
            Ok(sdp) => {
                let mut r = response(&m, 200, "OK", Some(&local_tag));
                r.headers
                    .push(("Contact".into(), ctx.our_contact(src.transport)));
                r.headers.push(("Allow".into(), ALLOW.into()));
                if let Some(s) = &mut self.session {
                    // A refresh of this leg. The other leg used to be
                    // refreshed by this re-INVITE relayed; now it is not,
                    // so it gets an UPDATE of ours (below).
                    s.last_refresh_ms = ctx.now_ms;
                    if let Some(v) = m.header("Session-Expires") {
                        r.headers.push(("Session-Expires".into(), v.to_string()));
                        r.headers.push(("Require".into(), "timer".into()));
                    }
                    refresh_other = true;
                }
                Self::set_sdp(&mut r, sdp);
                r
            }
            Err(e) => {
                tracing::warn!(call_id = %self.a.call_id, error = %e, "re-INVITE offer refused");
                response(&m, 488, "Not Acceptable Here", Some(&local_tag))
            }
        };
        let success = r.code().unwrap_or(0) < 300;
        let bytes = r.to_bytes();
        ctx.txn.remember(ctx.now_ms, &m, src, bytes.clone());
        if success {
            // Retransmitted until the ACK (handle_ack stops it).
            let (cseq, _) = m.cseq();
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
        let other = match (side, self.winner) {
            (Side::A, Some(w)) => Some(Side::B(w)),
            (Side::B(_), _) => Some(Side::A),
            _ => None,
        };
        let pending = self.relays.values().any(|r| r.req.is_none());
        if let (true, Some(other), false) = (refresh_other, other, pending) {
            self.send_refresh(ctx, other);
        }
    }

    /// The first ACK of a 2xx we gave a re-INVITE of leg `side`: its body
    /// goes to the media plane (the answer to our offer when the re-INVITE
    /// had no SDP). An answer it cannot use ends the call.
    pub(super) fn media_ack(&mut self, ctx: &mut Ctx<'_>, side: Side, m: &Msg) {
        let media_side = match side {
            Side::A => MediaSide::Caller,
            Side::B(i) => MediaSide::Fork(i),
        };
        if let Err(e) = ctx.media.ack_answer(self.id, media_side, &m.body) {
            tracing::warn!(call_id = %self.a.call_id, error = %e, "answer in the ACK refused; ending the call");
            let now = ctx.now_ms;
            self.hang_up_both(ctx, now, HangupCause::Failed);
        }
    }

    /// A DTMF INFO the media plane sends on as RFC 4733 (true), or not.
    pub(super) fn dtmf_to_media(&mut self, ctx: &mut Ctx<'_>, side: Side, m: &Msg) -> bool {
        let ct = m.header("Content-Type").unwrap_or("");
        if !ct.to_ascii_lowercase().starts_with("application/dtmf") {
            return false;
        }
        let from = match side {
            Side::A => MediaSide::Caller,
            Side::B(i) => MediaSide::Fork(i),
        };
        ctx.media.dtmf(self.id, from, ct, &m.body)
    }

    /// A digit heard in the media of leg `from`: SIP INFO
    /// (`application/dtmf-relay`, the form JsSIP parses) to the other leg.
    /// Its answer is only absorbed: a key press is not worth a retry.
    fn send_dtmf_info(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: MediaSide,
        digit: char,
        duration_ms: u32,
    ) {
        let to = match (from, self.winner) {
            (MediaSide::Caller, Some(w)) => Side::B(w),
            (MediaSide::Fork(_), Some(_)) => Side::A,
            _ => return,
        };
        let id = self.id;
        let branch = super::new_branch(ctx, id);
        let Some(leg) = self.leg_mut(to) else {
            return;
        };
        leg.local_cseq += 1;
        let leg = leg.clone();
        let mut req = leg.request(ctx, "INFO", leg.local_cseq, &branch);
        req.headers
            .push(("Content-Type".into(), "application/dtmf-relay".into()));
        req.body = format!(
            "Signal={digit}\r\nDuration={}\r\n",
            duration_ms.clamp(40, 5_000)
        )
        .into_bytes();
        let bytes = req.to_bytes();
        ctx.txn.start(
            ctx.now_ms,
            TxnKey::Client(branch),
            leg.src,
            bytes.clone(),
            false,
            Owner::None,
        );
        ctx.send_bytes(leg.src, bytes);
    }

    /// What the media plane noticed: media stopped, or the session failed.
    pub fn handle_media_event(&mut self, ctx: &mut Ctx<'_>, event: &MediaEvent) {
        if !self.anchored || self.phase != Phase::Answered {
            return;
        }
        let cause = match event {
            MediaEvent::Timeout { .. } => HangupCause::MediaTimeout,
            MediaEvent::Failed { .. } => HangupCause::Failed,
            MediaEvent::Report { .. } => return,
            MediaEvent::Dtmf {
                from,
                digit,
                duration_ms,
                ..
            } => {
                self.send_dtmf_info(ctx, *from, *digit, *duration_ms);
                return;
            }
        };
        tracing::info!(call_id = %self.a.call_id, cause = cause.as_str(), "media ended the call");
        let now = ctx.now_ms;
        self.hang_up_both(ctx, now, cause);
    }
}
