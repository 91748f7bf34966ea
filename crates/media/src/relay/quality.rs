//! Call quality per leg and direction, for the call's record: what we
//! received from the leg's peer (our own RFC 3550 statistics: loss from
//! sequence numbers, interarrival jitter) and what we sent it (counted
//! here; loss, jitter and round-trip time from the peer's RTCP receiver
//! reports, or for a browser from str0m's view of its reports), each with
//! an E-model MOS estimate (`core::quality`).
//!
//! Sans-IO like the rest of the relay: packets and reports come in with
//! their arrival `Instant`.

use crate::codec::Codec;
use crate::core::quality::{self, QualityInput};
use crate::core::rtcp::{self, NtpClock, NtpTime};
use crate::core::stats::{LegStats as RtpLegStats, RemoteReception};
use std::time::{Duration, Instant};

/// Our streams are 20 ms frames (and so are browsers' and phones' by default).
const PTIME_MS: f64 = 20.0;

/// One direction of one leg, as the call's record stores it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DirectionQuality {
    /// RTP packets received (inbound) or sent (outbound).
    pub packets: u64,
    /// Packets lost: counted by us (inbound) or reported by the peer
    /// (outbound; 0 when it never reported).
    pub lost: u64,
    pub jitter_ms: f64,
    pub rtt: Option<Duration>,
    /// Estimated MOS (ITU-T G.107), 1.0..=4.5.
    pub mos: f64,
}

/// Both directions of one leg and the speech codec they used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LegQuality {
    pub codec: Codec,
    pub inbound: Option<DirectionQuality>,
    pub outbound: Option<DirectionQuality>,
}

/// What a browser leg's RTCP said (str0m's ingress/egress statistics),
/// which replaces the relay's own view where the relay sees less.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PeerReports {
    /// Fraction of our packets the peer reports lost (0..=1).
    pub outbound_loss: Option<f64>,
    /// Cumulative packets the peer reports lost.
    pub outbound_lost: Option<u64>,
    /// The peer's jitter of our stream, in RTP timestamp units.
    pub outbound_jitter_rtp: Option<u32>,
    pub rtt: Option<Duration>,
}

/// Quality tracking of one leg (created at the first speech packet in
/// either direction).
#[derive(Debug, Clone)]
pub struct LegTracker {
    stats: RtpLegStats,
    codec: Codec,
    received: bool,
    /// Never used to compute a round trip of ours (we send no SR yet):
    /// `LegStats::handle_rtcp` needs a clock to read report blocks.
    clock: NtpClock,
}

impl LegTracker {
    pub fn new(now: Instant, our_ssrc: u32, codec: Codec) -> Self {
        LegTracker {
            stats: RtpLegStats::new(our_ssrc, codec.clock_rate()),
            codec,
            received: false,
            clock: NtpClock::new(now, NtpTime(0)),
        }
    }

    fn follow_codec(&mut self, codec: Codec) {
        if codec != self.codec {
            self.codec = codec;
            self.stats.receive.set_clock_rate(codec.clock_rate());
        }
    }

    /// A speech packet the leg's peer sent us.
    pub fn received(
        &mut self,
        codec: Codec,
        ssrc: u32,
        sequence: u16,
        timestamp: u32,
        len: usize,
        at: Instant,
    ) {
        self.follow_codec(codec);
        self.received = true;
        self.stats
            .receive
            .record_header(ssrc, sequence, timestamp, len, at);
    }

    /// An RFC 4733 event packet the leg's peer sent us (in the speech
    /// stream's sequence space).
    pub fn received_event(&mut self, ssrc: u32, sequence: u16, len: usize, at: Instant) {
        if self.received {
            self.stats.receive.record_event(ssrc, sequence, len, at);
        }
    }

    /// A speech packet we sent the leg's peer.
    pub fn sent(&mut self, codec: Codec, timestamp: u32, len: usize, at: Instant) {
        if !self.received {
            self.follow_codec(codec);
        }
        self.stats.send.record_sent(timestamp, len, at);
    }

    /// A valid compound RTCP packet from the leg's peer.
    pub fn rtcp(&mut self, data: &[u8], at: Instant) {
        if let Ok(packets) = rtcp::parse_compound(data) {
            self.stats.handle_rtcp(&packets, at, &self.clock);
        }
    }

    /// The leg's figures now; `peer` fills in what only the WebRTC stack saw.
    pub fn report(&self, peer: Option<&PeerReports>) -> LegQuality {
        let rtt = peer.and_then(|p| p.rtt).or(self.stats.send.round_trip());
        let inbound = self.received.then(|| {
            let snap = self.stats.receive.snapshot();
            DirectionQuality {
                packets: snap.packets,
                lost: snap.lost.max(0) as u64,
                jitter_ms: snap.jitter_ms,
                rtt,
                mos: mos(QualityInput::inbound(self.codec, &snap, rtt, PTIME_MS)),
            }
        });
        let packets = self.stats.send.packets();
        let outbound = (packets > 0).then(|| {
            let remote: Option<RemoteReception> = self.stats.send.remote();
            let loss = peer
                .and_then(|p| p.outbound_loss)
                .or(remote.map(|r| f64::from(r.fraction_lost) / 256.0))
                .unwrap_or(0.0);
            let lost = peer
                .and_then(|p| p.outbound_lost)
                .or(remote.map(|r| r.cumulative_lost.max(0) as u64))
                .unwrap_or(0);
            let clock_khz = f64::from(self.codec.clock_rate().max(1000)) / 1000.0;
            let jitter_ms = peer
                .and_then(|p| p.outbound_jitter_rtp)
                .map(|j| f64::from(j) / clock_khz)
                .or(remote.map(|r| r.jitter_ms))
                .unwrap_or(0.0);
            let input =
                quality::CodecImpairment::for_codec(self.codec).map(|impairment| QualityInput {
                    impairment,
                    loss: loss.clamp(0.0, 1.0),
                    jitter_ms,
                    round_trip: rtt,
                    ptime_ms: PTIME_MS,
                });
            DirectionQuality {
                packets,
                lost,
                jitter_ms,
                rtt,
                mos: mos(input),
            }
        });
        LegQuality {
            codec: self.codec,
            inbound,
            outbound,
        }
    }
}

fn mos(input: Option<QualityInput>) -> f64 {
    input.map_or(1.0, |i| quality::estimate(&i).mos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_loss_and_reports_both_directions() {
        let t0 = Instant::now();
        let mut t = LegTracker::new(t0, 0x1234, Codec::Pcmu);
        // 100 packets expected, every 10th lost.
        for n in 0u16..100 {
            let at = t0 + Duration::from_millis(20 * u64::from(n));
            if n % 10 != 5 {
                t.received(Codec::Pcmu, 7, n, u32::from(n) * 160, 160, at);
            }
            t.sent(Codec::Pcmu, u32::from(n) * 160, 160, at);
        }
        let q = t.report(None);
        let inbound = q.inbound.expect("inbound");
        assert_eq!(inbound.packets, 90);
        assert_eq!(inbound.lost, 10);
        assert!(
            inbound.mos < 4.0,
            "10 % loss must cost MOS: {}",
            inbound.mos
        );
        let outbound = q.outbound.expect("outbound");
        assert_eq!(outbound.packets, 100);
        assert_eq!(outbound.lost, 0);
        assert!(outbound.mos > 4.0, "{}", outbound.mos);
        // A browser's reports replace the unknowns.
        let peer = PeerReports {
            outbound_loss: Some(0.2),
            outbound_lost: Some(20),
            outbound_jitter_rtp: Some(240),
            rtt: Some(Duration::from_millis(300)),
        };
        let q = t.report(Some(&peer));
        let outbound = q.outbound.expect("outbound");
        assert_eq!(outbound.lost, 20);
        assert_eq!(outbound.rtt, Some(Duration::from_millis(300)));
        assert!(outbound.mos < inbound.mos, "{outbound:?} vs {inbound:?}");
    }

    #[test]
    fn silence_in_one_direction_reports_only_the_other() {
        let t0 = Instant::now();
        let mut t = LegTracker::new(t0, 1, Codec::Pcma);
        t.sent(Codec::Pcma, 0, 160, t0);
        let q = t.report(None);
        assert!(q.inbound.is_none());
        assert_eq!(q.outbound.map(|o| o.packets), Some(1));
        // Garbage RTCP is ignored, never a panic.
        t.rtcp(&[0x80, 0xc9, 0, 1, 0, 0], t0);
        t.rtcp(&[], t0);
    }

    #[test]
    fn telephone_events_in_the_stream_are_not_loss() {
        let t0 = Instant::now();
        let mut t = LegTracker::new(t0, 1, Codec::Pcmu);
        // 50 speech packets, then 5 event packets on the next sequence
        // numbers (one timestamp), then 50 more speech packets.
        let mut seq = 0u16;
        let mut at = t0;
        for n in 0u32..100 {
            if n == 50 {
                for _ in 0..5 {
                    t.received_event(9, seq, 4, at);
                    seq += 1;
                }
            }
            at += Duration::from_millis(20);
            t.received(Codec::Pcmu, 9, seq, n * 160, 160, at);
            seq += 1;
        }
        let inbound = t.report(None).inbound.expect("inbound");
        assert_eq!(inbound.lost, 0, "{inbound:?}");
        assert!(inbound.jitter_ms < 1.0, "{inbound:?}");
    }
}
