//! Latching (symmetric RTP): which address a leg's media really comes from,
//! and so where the relay sends that leg's media.
//!
//! A phone behind NAT writes its private address in SDP; its packets arrive
//! from the NAT's public address. The relay learns that address from the
//! first valid packets on the leg's port and sends there from then on.
//!
//! Anyone who can reach the port can also send packets. If the relay
//! re-learned on every new source, one spoofed packet would redirect the
//! other party's audio to the attacker ("RTP Bleed", Asterisk
//! CVE-2017-14099) and let them inject audio (spam, fraud prompts). So:
//! - a source is learned only after `probation` consecutive packets (same
//!   SSRC, sequence numbers +1) from it — unless it is the address the SDP
//!   announced, which signalling vouches for and is taken at once;
//! - once latched, the leg learns again only (1) after new SDP for the leg
//!   (re-INVITE: the phone may really have moved) or (2) when the latched
//!   source has been silent for `relatch_after` (a NAT rebinding mid-call
//!   gives the phone a new public port and no re-INVITE; without this the
//!   call stays one-way until `rtp_timeout`). (2) is a window an attacker
//!   can use while the real source is quiet, which is why it needs seconds
//!   of silence, still requires probation, and is disabled while the leg is
//!   on hold (a held phone is legitimately silent for minutes).
//!   `relatch_after = None` turns (2) off.
//! - packets from the old latched source are still accepted while a new
//!   one is being learned, so a re-INVITE that changes nothing costs nothing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Candidate sources tracked at once while learning. Bounded: a flood of
/// spoofed sources evicts each other, not the state of the process.
const CANDIDATES: usize = 4;

#[derive(Debug, Clone, Copy)]
struct Candidate {
    addr: SocketAddr,
    ssrc: u32,
    next_seq: u16,
    count: u8,
    seen: Instant,
}

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// From the latched source: relay it.
    Accept,
    /// This packet completed probation: `addr` is now latched; relay it.
    Latched(SocketAddr),
    /// From a candidate still on probation: drop it.
    Probation,
    /// From a source that may not be learned now: drop it.
    Reject,
}

#[derive(Debug, Clone)]
pub struct Latch {
    latched: Option<SocketAddr>,
    learning: bool,
    last_from_latched: Option<Instant>,
    candidates: [Option<Candidate>; CANDIDATES],
}

impl Default for Latch {
    fn default() -> Self {
        Latch::new()
    }
}

impl Latch {
    pub fn new() -> Self {
        Latch {
            latched: None,
            learning: true,
            last_from_latched: None,
            candidates: [None; CANDIDATES],
        }
    }

    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }

    /// New SDP for the leg: learn again (the old source stays accepted
    /// until a new one latches).
    pub fn relearn(&mut self) {
        self.learning = true;
        self.candidates = [None; CANDIDATES];
    }

    /// Judges one valid RTP packet from `from`.
    /// `may_relatch_on_silence` is false while the leg is on hold.
    #[allow(clippy::too_many_arguments)]
    pub fn on_packet(
        &mut self,
        now: Instant,
        from: SocketAddr,
        ssrc: u32,
        seq: u16,
        sdp_addr: Option<SocketAddr>,
        probation: u8,
        relatch_after: Option<Duration>,
        may_relatch_on_silence: bool,
    ) -> Verdict {
        if self.latched == Some(from) {
            self.last_from_latched = Some(now);
            return Verdict::Accept;
        }
        let silent_long_enough = match (self.latched, self.last_from_latched, relatch_after) {
            (Some(_), Some(last), Some(after)) => {
                may_relatch_on_silence && now.saturating_duration_since(last) >= after
            }
            _ => false,
        };
        if !self.learning && !silent_long_enough {
            return Verdict::Reject;
        }
        if sdp_addr == Some(from) || probation <= 1 {
            return self.latch(now, from);
        }
        let slot = self
            .candidates
            .iter()
            .position(|c| c.is_some_and(|c| c.addr == from));
        let slot = match slot {
            Some(i) => i,
            None => {
                // A free slot, else evict the candidate heard from longest ago.
                let i = self
                    .candidates
                    .iter()
                    .position(Option::is_none)
                    .unwrap_or_else(|| {
                        let mut oldest = 0;
                        for (i, c) in self.candidates.iter().enumerate() {
                            if let (Some(c), Some(o)) = (c, &self.candidates[oldest]) {
                                if c.seen < o.seen {
                                    oldest = i;
                                }
                            }
                        }
                        oldest
                    });
                self.candidates[i] = Some(Candidate {
                    addr: from,
                    ssrc,
                    next_seq: seq,
                    count: 0,
                    seen: now,
                });
                i
            }
        };
        let Some(c) = self.candidates[slot].as_mut() else {
            return Verdict::Probation;
        };
        if c.ssrc == ssrc && c.next_seq == seq {
            c.count = c.count.saturating_add(1);
        } else {
            c.ssrc = ssrc;
            c.count = 1;
        }
        c.next_seq = seq.wrapping_add(1);
        c.seen = now;
        if c.count >= probation {
            self.latch(now, from)
        } else {
            Verdict::Probation
        }
    }

    fn latch(&mut self, now: Instant, from: SocketAddr) -> Verdict {
        self.latched = Some(from);
        self.learning = false;
        self.last_from_latched = Some(now);
        self.candidates = [None; CANDIDATES];
        Verdict::Latched(from)
    }
}
