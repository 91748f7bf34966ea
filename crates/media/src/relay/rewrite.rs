//! One outgoing RTP stream toward a leg: the receiver sees a single SSRC
//! whose sequence numbers and timestamps never jump, whatever feeds it
//! (the far leg's phone, a different phone after a re-INVITE or transfer,
//! the hold-music source).
//!
//! While one source lasts, its numbers are shifted by fixed offsets, so
//! gaps and reordering the network caused stay visible to the receiver's
//! jitter buffer and loss counters. When the source changes (a new SSRC, or
//! the same SSRC jumping more than a loss burst could explain), new offsets
//! are chosen so that the next packet carries sequence `last + 1` and a
//! timestamp advanced by the wall time elapsed since the last packet times
//! the clock rate, with the marker bit set (RFC 3551 §4.1: start of a talk
//! spurt, which tells the receiver's jitter buffer to resynchronise).

use std::time::{Duration, Instant};

/// What feeds the stream: a far-side SSRC or our own generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Ssrc(u32),
    Generated,
}

/// A same-SSRC sequence gap larger than this is a restart, not loss
/// (RFC 3550 A.1 uses 3000 as MAX_DROPOUT).
const MAX_DROPOUT: u16 = 3000;
/// Packets this far behind the newest are late (reordered), not a restart
/// (RFC 3550 A.1 MAX_MISORDER).
const MAX_MISORDER: u16 = 100;

#[derive(Debug, Clone, Copy)]
struct Anchor {
    source: Source,
    seq_offset: u16,
    ts_offset: u32,
    /// Highest input sequence number seen from this source.
    last_in_seq: u16,
}

#[derive(Debug, Clone, Copy)]
struct Last {
    seq: u16,
    ts: u32,
    at: Instant,
}

/// The rewriting state of one outgoing stream.
#[derive(Debug, Clone)]
pub struct OutStream {
    ssrc: u32,
    anchor: Option<Anchor>,
    last: Option<Last>,
    resyncs: u64,
}

/// The rewritten header fields of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    pub ssrc: u32,
    pub sequence: u16,
    pub timestamp: u32,
    /// True on the first packet after a change of source.
    pub marker: bool,
}

impl OutStream {
    pub fn new(ssrc: u32) -> Self {
        OutStream {
            ssrc,
            anchor: None,
            last: None,
            resyncs: 0,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// How many times a new source was spliced in.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// Rewrites one packet from `source` with input numbers `seq`/`ts`,
    /// sent at `now`; `clock_rate` is the RTP clock of its codec.
    pub fn rewrite(
        &mut self,
        now: Instant,
        source: Source,
        seq: u16,
        ts: u32,
        clock_rate: u32,
    ) -> Rewritten {
        let mut marker = false;
        let anchor = match self.anchor {
            Some(a) if a.source == source && !is_restart(a.last_in_seq, seq) => a,
            previous => {
                let (out_seq, out_ts) = match self.last {
                    // The very first source passes its numbers unchanged:
                    // nothing to be continuous with.
                    None => (seq, ts),
                    Some(l) => {
                        let elapsed = now.saturating_duration_since(l.at);
                        // At least one tick, so two packets never share a
                        // timestamp across a splice.
                        let step = ticks(elapsed, clock_rate).max(1);
                        (l.seq.wrapping_add(1), l.ts.wrapping_add(step))
                    }
                };
                if previous.is_some() {
                    marker = true;
                    self.resyncs += 1;
                }
                Anchor {
                    source,
                    seq_offset: out_seq.wrapping_sub(seq),
                    ts_offset: out_ts.wrapping_sub(ts),
                    last_in_seq: seq,
                }
            }
        };
        let out = Rewritten {
            ssrc: self.ssrc,
            sequence: seq.wrapping_add(anchor.seq_offset),
            timestamp: ts.wrapping_add(anchor.ts_offset),
            marker,
        };
        let mut anchor = anchor;
        // Only a newer packet moves "last": a late one keeps its own
        // (shifted) numbers and must not pull the splice point backwards.
        let newer = match self.last {
            None => true,
            Some(l) => is_newer(out.sequence, l.seq),
        };
        if newer || marker {
            anchor.last_in_seq = seq;
            self.last = Some(Last {
                seq: out.sequence,
                ts: out.timestamp,
                at: now,
            });
        }
        self.anchor = Some(anchor);
        out
    }
}

/// Serial-number comparison (RFC 1982) for 16-bit sequence numbers.
fn is_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

/// A same-source packet is a restart when it is neither a forward step of
/// at most MAX_DROPOUT nor a late packet within MAX_MISORDER.
fn is_restart(last: u16, seq: u16) -> bool {
    let ahead = seq.wrapping_sub(last);
    let behind = last.wrapping_sub(seq);
    ahead > MAX_DROPOUT && behind > MAX_MISORDER
}

/// RTP clock ticks in `d` at `rate` Hz, modulo 2^32 as timestamps are.
pub fn ticks(d: Duration, rate: u32) -> u32 {
    (d.as_nanos() * u128::from(rate) / 1_000_000_000) as u32
}
