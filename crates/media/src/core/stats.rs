//! Call-quality statistics per leg and direction, computed on our side from
//! the RTP we receive (many carriers send no RTCP at all).
//!
//! - [`ReceiveStats`]: one direction as we receive it. Sequence validation
//!   and wrap per RFC 3550 A.1, expected/lost and the interval fraction per
//!   A.3, interarrival jitter per A.8 (§6.4.1), and the report block an RR
//!   or SR carries about the source.
//! - [`SendStats`]: the direction we send: the counters a sender report
//!   needs, and what the peer's report blocks say about our stream (its loss,
//!   jitter, and the round-trip time).
//! - [`LegStats`]: both directions of one leg, fed with the RTCP the peer
//!   sends ([`LegStats::handle_rtcp`]) and producing ours
//!   ([`LegStats::build_report`]: SR or RR, plus SDES CNAME).
//!
//! One deviation from A.1: a new source is still validated with
//! `MIN_SEQUENTIAL` = 2 sequential packets, but once validated the
//! probation packets are counted as received (A.1 drops them from the
//! counts, which makes a clean 100-packet stream read 99 packets).
//!
//! RFC 4733 events repeat one timestamp over many packets and would read
//! as jitter: feed them with [`ReceiveStats::record_event`], which counts
//! their sequence numbers only.

use std::time::{Duration, Instant};

use super::rtcp::{
    build_compound, NtpClock, NtpTime, ReceiverReport, ReportBlock, RtcpError, RtcpPacket,
    SdesChunk, SenderReport,
};
use crate::packet::RtpPacket;

const RTP_SEQ_MOD: u32 = 1 << 16;
const MAX_DROPOUT: u32 = 3000;
const MAX_MISORDER: u32 = 100;
const MIN_SEQUENTIAL: u32 = 2;

/// How [`ReceiveStats::record`] classified a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    /// In sequence (or a tolerated reorder/duplicate): counted.
    Valid,
    /// A new source still on probation: not counted yet.
    Probation,
    /// A jump too large to accept; a second packet following it re-syncs.
    Rejected,
}

#[derive(Debug, Clone)]
struct SeqState {
    ssrc: u32,
    max_seq: u16,
    /// Sequence cycles, already shifted (a multiple of 65536).
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u32,
    /// First sequence number seen while on probation.
    probation_base: u16,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Jitter state (A.8): last transit time and the estimate, both in
    /// RTP timestamp units.
    transit: Option<i32>,
    jitter: f64,
}

impl SeqState {
    fn new(ssrc: u32, seq: u16) -> Self {
        SeqState {
            ssrc,
            // A.1: start "one before" so the first packet is in sequence.
            max_seq: seq.wrapping_sub(1),
            cycles: 0,
            base_seq: seq as u32,
            bad_seq: RTP_SEQ_MOD + 1,
            probation: MIN_SEQUENTIAL,
            probation_base: seq,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            transit: None,
            jitter: 0.0,
        }
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = seq as u32;
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    /// RFC 3550 A.1 `update_seq`.
    fn update_seq(&mut self, seq: u16) -> SeqVerdict {
        let udelta = seq.wrapping_sub(self.max_seq) as u32;
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    // Validated: count from the first probation packet.
                    let first = self.probation_base;
                    self.init_seq(seq);
                    self.base_seq = first as u32;
                    self.received = seq.wrapping_sub(first) as u64 + 1;
                    return SeqVerdict::Valid;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.probation_base = seq;
                self.max_seq = seq;
            }
            return SeqVerdict::Probation;
        } else if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
        } else if udelta <= RTP_SEQ_MOD - MAX_MISORDER {
            // A very large jump: accept it only if the next packet follows it
            // (the source restarted its sequence).
            if seq as u32 == self.bad_seq {
                self.init_seq(seq);
            } else {
                self.bad_seq = (seq as u32 + 1) & (RTP_SEQ_MOD - 1);
                return SeqVerdict::Rejected;
            }
        }
        // Otherwise a duplicate or reordered packet: counted as received.
        self.received += 1;
        SeqVerdict::Valid
    }

    fn extended_max(&self) -> u32 {
        self.cycles.wrapping_add(self.max_seq as u32)
    }

    fn expected(&self) -> u64 {
        (self.extended_max() as u64 + 1).saturating_sub(self.base_seq as u64)
    }
}

/// A summary of one receive direction.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ReceiveSnapshot {
    /// Every RTP packet that arrived (including probation, duplicates and
    /// rejected jumps).
    pub packets: u64,
    /// Payload bytes of those packets.
    pub bytes: u64,
    /// Packets expected from the sequence numbers (all sources so far).
    pub expected: u64,
    /// Packets counted as received against `expected`.
    pub received: u64,
    /// expected − received; negative when duplicates outnumber losses.
    pub lost: i64,
    /// lost / expected, clamped to 0..=1 (0 before anything is expected).
    pub loss_ratio: f64,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter_rtp: u32,
    /// The same in milliseconds at the stream's clock rate.
    pub jitter_ms: f64,
    /// Cycles and highest sequence number of the current source.
    pub extended_highest_sequence: Option<u32>,
}

/// One receive direction of a leg.
#[derive(Debug, Clone)]
pub struct ReceiveStats {
    clock_rate: u32,
    source: Option<SeqState>,
    /// Expected/received of sources that were replaced (SSRC change on
    /// re-INVITE or transfer), so the leg's totals survive the change.
    retired_expected: u64,
    retired_received: u64,
    packets: u64,
    bytes: u64,
    /// Origin of the arrival clock in RTP units (any fixed instant works:
    /// only differences of transit times matter).
    arrival_origin: Option<Instant>,
    last_sr: Option<(u32, Instant)>,
    last_arrival: Option<Instant>,
}

impl ReceiveStats {
    /// `clock_rate` is the RTP clock of the audio codec (8000 for G.711,
    /// 48000 for opus).
    pub fn new(clock_rate: u32) -> Self {
        ReceiveStats {
            clock_rate: clock_rate.max(1),
            source: None,
            retired_expected: 0,
            retired_received: 0,
            packets: 0,
            bytes: 0,
            arrival_origin: None,
            last_sr: None,
            last_arrival: None,
        }
    }

    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// Changes the clock rate (a re-INVITE switched codec); the jitter
    /// estimate restarts since its units change.
    pub fn set_clock_rate(&mut self, clock_rate: u32) {
        let clock_rate = clock_rate.max(1);
        if clock_rate != self.clock_rate {
            self.clock_rate = clock_rate;
            if let Some(s) = &mut self.source {
                s.transit = None;
                s.jitter = 0.0;
            }
        }
    }

    /// Records one received RTP packet.
    pub fn record(&mut self, packet: &RtpPacket, arrival: Instant) -> SeqVerdict {
        self.record_header(
            packet.ssrc,
            packet.sequence,
            packet.timestamp,
            packet.payload.len(),
            arrival,
        )
    }

    /// Records one received RTP packet from its header fields.
    pub fn record_header(
        &mut self,
        ssrc: u32,
        sequence: u16,
        timestamp: u32,
        payload_len: usize,
        arrival: Instant,
    ) -> SeqVerdict {
        self.count(ssrc, sequence, Some(timestamp), payload_len, arrival)
    }

    /// An RFC 4733 event packet of the same stream: it takes a sequence
    /// number (so leaving it out would read as loss) but repeats one
    /// timestamp, so it says nothing about jitter.
    pub fn record_event(
        &mut self,
        ssrc: u32,
        sequence: u16,
        payload_len: usize,
        arrival: Instant,
    ) -> SeqVerdict {
        self.count(ssrc, sequence, None, payload_len, arrival)
    }

    fn count(
        &mut self,
        ssrc: u32,
        sequence: u16,
        timestamp: Option<u32>,
        payload_len: usize,
        arrival: Instant,
    ) -> SeqVerdict {
        self.packets += 1;
        self.bytes += payload_len as u64;
        self.last_arrival = Some(arrival);
        let origin = *self.arrival_origin.get_or_insert(arrival);

        if self.source.as_ref().is_some_and(|s| s.ssrc != ssrc) {
            if let Some(old) = self.source.take() {
                if old.probation == 0 {
                    self.retired_expected += old.expected();
                    self.retired_received += old.received;
                }
            }
        }
        let source = self
            .source
            .get_or_insert_with(|| SeqState::new(ssrc, sequence));
        let verdict = source.update_seq(sequence);
        let Some(timestamp) = timestamp else {
            return verdict;
        };
        if verdict == SeqVerdict::Valid {
            // A.8: transit = arrival (in RTP units) − RTP timestamp; both
            // wrap, only differences matter.
            let elapsed = arrival.saturating_duration_since(origin);
            let arrival_rtp =
                ((elapsed.as_nanos() * self.clock_rate as u128) / 1_000_000_000) as u32;
            let transit = arrival_rtp.wrapping_sub(timestamp) as i32;
            if let Some(last) = source.transit {
                let d = transit.wrapping_sub(last).unsigned_abs() as f64;
                source.jitter += (d - source.jitter) / 16.0;
            }
            source.transit = Some(transit);
        }
        verdict
    }

    /// Records the arrival of an SR from this source, for the LSR/DLSR of
    /// our next report block.
    pub fn handle_sender_report(&mut self, ntp_time: NtpTime, arrival: Instant) {
        self.last_sr = Some((ntp_time.compact(), arrival));
    }

    /// The SSRC of the current source.
    pub fn ssrc(&self) -> Option<u32> {
        self.source.as_ref().map(|s| s.ssrc)
    }

    /// When the last packet (of any kind) arrived: the input of an RTP
    /// timeout.
    pub fn last_arrival(&self) -> Option<Instant> {
        self.last_arrival
    }

    pub fn snapshot(&self) -> ReceiveSnapshot {
        let (expected, received) = self.totals();
        let lost = expected as i64 - received as i64;
        let jitter = self.source.as_ref().map_or(0.0, |s| s.jitter);
        ReceiveSnapshot {
            packets: self.packets,
            bytes: self.bytes,
            expected,
            received,
            lost,
            loss_ratio: if expected == 0 {
                0.0
            } else {
                (lost.max(0) as f64 / expected as f64).min(1.0)
            },
            jitter_rtp: jitter.round() as u32,
            jitter_ms: jitter * 1000.0 / self.clock_rate as f64,
            extended_highest_sequence: self
                .source
                .as_ref()
                .filter(|s| s.probation == 0)
                .map(SeqState::extended_max),
        }
    }

    fn totals(&self) -> (u64, u64) {
        let (e, r) = match &self.source {
            Some(s) if s.probation == 0 => (s.expected(), s.received),
            _ => (0, 0),
        };
        (self.retired_expected + e, self.retired_received + r)
    }

    /// The report block about the current source for an RR or SR sent at
    /// `now` (RFC 3550 A.3), and the start of a new reporting interval.
    /// `None` before a source is validated.
    pub fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        let last_sr = self.last_sr;
        let source = self.source.as_mut().filter(|s| s.probation == 0)?;
        let expected = source.expected();
        let lost = expected as i64 - source.received as i64;
        let expected_interval = expected.saturating_sub(source.expected_prior);
        let received_interval = source.received.saturating_sub(source.received_prior);
        source.expected_prior = expected;
        source.received_prior = source.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        let (last_sr, delay_since_last_sr) = match last_sr {
            Some((lsr, at)) => {
                let delay = now.saturating_duration_since(at);
                let units = (delay.as_nanos() * 65_536 / 1_000_000_000).min(u32::MAX as u128);
                (lsr, units as u32)
            }
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc: source.ssrc,
            fraction_lost,
            cumulative_lost: lost.clamp(-0x80_0000, 0x7f_ffff) as i32,
            extended_highest_sequence: source.extended_max(),
            jitter: source.jitter.round() as u32,
            last_sr,
            delay_since_last_sr,
        })
    }
}

/// What the peer reported about the stream we send (from an RR/SR block
/// about our SSRC).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteReception {
    pub fraction_lost: u8,
    pub cumulative_lost: i32,
    /// The peer's interarrival jitter of our stream, in ms.
    pub jitter_ms: f64,
    /// Round-trip time, when the block carried an LSR of ours.
    pub round_trip: Option<Duration>,
    pub received_at: Instant,
}

/// The direction we send on a leg: counters for our sender reports and the
/// peer's view of our stream.
#[derive(Debug, Clone)]
pub struct SendStats {
    ssrc: u32,
    clock_rate: u32,
    packets: u64,
    octets: u64,
    last: Option<(u32, Instant)>,
    remote: Option<RemoteReception>,
    round_trip: Option<Duration>,
}

impl SendStats {
    pub fn new(ssrc: u32, clock_rate: u32) -> Self {
        SendStats {
            ssrc,
            clock_rate: clock_rate.max(1),
            packets: 0,
            octets: 0,
            last: None,
            remote: None,
            round_trip: None,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    pub fn packets(&self) -> u64 {
        self.packets
    }

    pub fn octets(&self) -> u64 {
        self.octets
    }

    /// Records one packet we sent at `at` (RTP timestamp and payload size).
    pub fn record_sent(&mut self, timestamp: u32, payload_len: usize, at: Instant) {
        self.packets += 1;
        self.octets += payload_len as u64;
        self.last = Some((timestamp, at));
    }

    /// Our SR at `now`: the RTP timestamp is extrapolated from the last
    /// packet sent so it corresponds to the NTP time (RFC 3550 §6.4.1).
    /// `None` before anything was sent (send an RR then).
    pub fn sender_report(
        &self,
        now: Instant,
        clock: &NtpClock,
        reports: Vec<ReportBlock>,
    ) -> Option<SenderReport> {
        let (timestamp, at) = self.last?;
        let since = now.saturating_duration_since(at);
        let advance = (since.as_nanos() * self.clock_rate as u128 / 1_000_000_000) as u32;
        Some(SenderReport {
            ssrc: self.ssrc,
            ntp_time: clock.ntp_at(now),
            rtp_timestamp: timestamp.wrapping_add(advance),
            // The SR counters are 32-bit and wrap (RFC 3550 §6.4.1).
            packet_count: self.packets as u32,
            octet_count: self.octets as u32,
            reports,
        })
    }

    /// Takes in a report block from the peer; blocks about other SSRCs are
    /// ignored. Returns whether it was about our stream.
    pub fn handle_report_block(
        &mut self,
        block: &ReportBlock,
        arrival: Instant,
        clock: &NtpClock,
    ) -> bool {
        if block.ssrc != self.ssrc {
            return false;
        }
        let round_trip = block.round_trip_time(clock.ntp_at(arrival));
        if round_trip.is_some() {
            self.round_trip = round_trip;
        }
        self.remote = Some(RemoteReception {
            fraction_lost: block.fraction_lost,
            cumulative_lost: block.cumulative_lost,
            jitter_ms: block.jitter as f64 * 1000.0 / self.clock_rate as f64,
            round_trip,
            received_at: arrival,
        });
        true
    }

    /// The latest report from the peer about our stream.
    pub fn remote(&self) -> Option<RemoteReception> {
        self.remote
    }

    /// The latest round-trip time measured (kept across reports without
    /// an LSR).
    pub fn round_trip(&self) -> Option<Duration> {
        self.round_trip
    }
}

/// Both directions of one leg and the RTCP between us and its peer.
#[derive(Debug, Clone)]
pub struct LegStats {
    pub receive: ReceiveStats,
    pub send: SendStats,
}

impl LegStats {
    /// `our_ssrc` is the SSRC we send with on this leg; `clock_rate` the
    /// negotiated audio codec's RTP clock.
    pub fn new(our_ssrc: u32, clock_rate: u32) -> Self {
        LegStats {
            receive: ReceiveStats::new(clock_rate),
            send: SendStats::new(our_ssrc, clock_rate),
        }
    }

    /// Takes in a parsed compound RTCP packet from the peer: an SR from the
    /// source we receive gives the LSR of our next report; report blocks
    /// about our SSRC give the peer's view of our stream and the RTT.
    pub fn handle_rtcp(&mut self, packets: &[RtcpPacket], arrival: Instant, clock: &NtpClock) {
        for packet in packets {
            if let RtcpPacket::SenderReport(sr) = packet {
                if self.receive.ssrc().is_none_or(|s| s == sr.ssrc) {
                    self.receive.handle_sender_report(sr.ntp_time, arrival);
                }
            }
            for block in packet.report_blocks() {
                self.send.handle_report_block(block, arrival, clock);
            }
        }
    }

    /// Our compound RTCP packet at `now`: an SR when we have sent media
    /// (else an RR), with a report block about the source we receive (when
    /// one is validated), then SDES with our CNAME. Starts a new reporting
    /// interval for the fraction lost.
    pub fn build_report(
        &mut self,
        now: Instant,
        clock: &NtpClock,
        cname: &str,
    ) -> Result<Vec<u8>, RtcpError> {
        let blocks: Vec<ReportBlock> = self.receive.report_block(now).into_iter().collect();
        let first = match self.send.sender_report(now, clock, blocks.clone()) {
            Some(sr) => RtcpPacket::SenderReport(sr),
            None => RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: self.send.ssrc(),
                reports: blocks,
            }),
        };
        let sdes = RtcpPacket::SourceDescription(vec![SdesChunk {
            ssrc: self.send.ssrc(),
            cname: Some(cname.to_string()),
        }]);
        build_compound(&[first, sdes])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testutil::Rng;

    const PTIME: Duration = Duration::from_millis(20);

    struct Feed {
        stats: ReceiveStats,
        t0: Instant,
    }

    impl Feed {
        fn new() -> Self {
            Feed {
                stats: ReceiveStats::new(8000),
                t0: Instant::now(),
            }
        }

        /// Packet `n` of a 20 ms G.711 stream, arriving `extra` late.
        fn packet(&mut self, seq: u16, n: u32, extra: Duration) -> SeqVerdict {
            let at = self.t0 + PTIME * n + extra;
            self.stats
                .record_header(0xabc, seq, 1000u32.wrapping_add(160 * n), 160, at)
        }
    }

    #[test]
    fn clean_stream_has_no_loss_and_no_jitter() {
        let mut f = Feed::new();
        assert_eq!(f.packet(100, 0, Duration::ZERO), SeqVerdict::Probation);
        for n in 1..100 {
            assert_eq!(
                f.packet(100 + n as u16, n, Duration::ZERO),
                SeqVerdict::Valid
            );
        }
        let s = f.stats.snapshot();
        assert_eq!(
            (s.packets, s.bytes, s.expected, s.received, s.lost),
            (100, 16_000, 100, 100, 0)
        );
        assert_eq!(s.loss_ratio, 0.0);
        assert_eq!(s.jitter_rtp, 0);
        assert_eq!(s.extended_highest_sequence, Some(199));
        let block = f.stats.report_block(f.t0).expect("block");
        assert_eq!((block.fraction_lost, block.cumulative_lost), (0, 0));
        assert_eq!(block.ssrc, 0xabc);
    }

    #[test]
    fn losses_count_cumulative_and_per_interval() {
        let mut f = Feed::new();
        // 50 packets, every 10th lost: 5 lost.
        for n in 0..50u32 {
            if n % 10 != 5 {
                f.packet(n as u16, n, Duration::ZERO);
            }
        }
        let s = f.stats.snapshot();
        assert_eq!((s.expected, s.received, s.lost), (50, 45, 5));
        assert!((s.loss_ratio - 0.1).abs() < 1e-9);
        let b = f.stats.report_block(f.t0).expect("block");
        // 5/50 in 1/256: 25.
        assert_eq!((b.fraction_lost, b.cumulative_lost), (25, 5));
        // Next interval: 50 more packets, none lost.
        for n in 50..100u32 {
            f.packet(n as u16, n, Duration::ZERO);
        }
        let b = f.stats.report_block(f.t0).expect("block");
        assert_eq!((b.fraction_lost, b.cumulative_lost), (0, 5));
        assert_eq!(b.extended_highest_sequence, 99);
    }

    #[test]
    fn sequence_wrap_extends_the_highest_sequence() {
        let mut f = Feed::new();
        for n in 0..20u32 {
            f.packet(65_530u16.wrapping_add(n as u16), n, Duration::ZERO);
        }
        let s = f.stats.snapshot();
        assert_eq!((s.expected, s.lost), (20, 0));
        assert_eq!(s.extended_highest_sequence, Some(65_536 + 13));
    }

    #[test]
    fn reordering_and_duplicates() {
        let mut f = Feed::new();
        for (seq, n) in [(1u16, 0u32), (2, 1), (4, 3), (3, 2), (5, 4), (5, 4)] {
            f.packet(seq, n, Duration::ZERO);
        }
        let s = f.stats.snapshot();
        // 5 expected, 6 counted (one duplicate): lost −1, ratio 0.
        assert_eq!((s.expected, s.received, s.lost), (5, 6, -1));
        assert_eq!(s.loss_ratio, 0.0);
        let b = f.stats.report_block(f.t0).expect("block");
        assert_eq!((b.fraction_lost, b.cumulative_lost), (0, -1));
    }

    #[test]
    fn large_jump_needs_a_second_packet_to_resync() {
        let mut f = Feed::new();
        for n in 0..10u32 {
            f.packet(n as u16, n, Duration::ZERO);
        }
        assert_eq!(f.packet(20_000, 10, Duration::ZERO), SeqVerdict::Rejected);
        assert_eq!(f.packet(20_001, 11, Duration::ZERO), SeqVerdict::Valid);
        f.packet(20_002, 12, Duration::ZERO);
        let s = f.stats.snapshot();
        // Restarted at 20001: 2 expected, 2 received.
        assert_eq!((s.expected, s.received), (2, 2));
        assert_eq!(s.packets, 13);
    }

    #[test]
    fn jitter_converges_to_the_arrival_variation() {
        // Every other packet arrives 5 ms late: |D| is always 40 units at
        // 8 kHz, and the A.8 estimate converges to 40 (5 ms).
        let mut f = Feed::new();
        for n in 0..500u32 {
            let late = if n % 2 == 1 {
                Duration::from_millis(5)
            } else {
                Duration::ZERO
            };
            f.packet(n as u16, n, late);
        }
        let s = f.stats.snapshot();
        assert_eq!(s.jitter_rtp, 40);
        assert!((s.jitter_ms - 5.0).abs() < 0.01, "{}", s.jitter_ms);
    }

    #[test]
    fn ssrc_change_keeps_the_leg_totals() {
        let mut f = Feed::new();
        for n in 0..10u32 {
            if n != 4 {
                f.packet(n as u16, n, Duration::ZERO);
            }
        }
        let at = f.t0 + PTIME * 10;
        for k in 0..10u16 {
            f.stats.record_header(
                0xdef,
                5000 + k,
                77 + 160 * k as u32,
                160,
                at + PTIME * k as u32,
            );
        }
        let s = f.stats.snapshot();
        assert_eq!((s.expected, s.received, s.lost), (20, 19, 1));
        assert_eq!(f.stats.ssrc(), Some(0xdef));
    }

    #[test]
    fn lsr_and_dlsr_in_the_report_block() {
        let mut f = Feed::new();
        for n in 0..5u32 {
            f.packet(n as u16, n, Duration::ZERO);
        }
        f.stats
            .handle_sender_report(NtpTime(0x1234_5678_9abc_def0), f.t0);
        let b = f
            .stats
            .report_block(f.t0 + Duration::from_millis(250))
            .expect("block");
        assert_eq!(b.last_sr, 0x5678_9abc);
        assert_eq!(b.delay_since_last_sr, 65_536 / 4);
    }

    #[test]
    fn sender_report_and_remote_view() {
        let t0 = Instant::now();
        let clock = NtpClock::new(t0, NtpTime::from_unix(Duration::from_secs(1_800_000_000)));
        let mut send = SendStats::new(42, 8000);
        assert!(send.sender_report(t0, &clock, vec![]).is_none());
        for n in 0..50u32 {
            send.record_sent(160 * n, 160, t0 + PTIME * n);
        }
        let at = t0 + PTIME * 49 + Duration::from_millis(10);
        let sr = send.sender_report(at, &clock, vec![]).expect("sr");
        assert_eq!((sr.packet_count, sr.octet_count), (50, 8000));
        assert_eq!(sr.rtp_timestamp, 160 * 49 + 80);

        // The peer held our SR for 20 ms and its RR reaches us 50 ms after
        // we sent the SR: RTT 30 ms.
        let block = ReportBlock {
            ssrc: 42,
            fraction_lost: 13,
            cumulative_lost: 2,
            jitter: 80,
            last_sr: sr.ntp_time.compact(),
            delay_since_last_sr: 65_536 / 50,
            ..ReportBlock::default()
        };
        let other = ReportBlock { ssrc: 7, ..block };
        assert!(!send.handle_report_block(&other, at, &clock));
        assert!(send.handle_report_block(&block, at + Duration::from_millis(50), &clock));
        let remote = send.remote().expect("remote");
        assert_eq!(remote.jitter_ms, 10.0);
        let rtt = send.round_trip().expect("rtt").as_secs_f64() * 1000.0;
        assert!((rtt - 30.0).abs() < 0.1, "{rtt}");
    }

    #[test]
    fn random_headers_never_panic() {
        let mut rng = Rng::new(0x5eed_0002);
        let t0 = Instant::now();
        let mut stats = ReceiveStats::new(8000);
        for i in 0..50_000u64 {
            let ssrc = if rng.below(100) == 0 {
                rng.next_u64() as u32
            } else {
                1
            };
            let seq = if rng.below(4) == 0 {
                rng.next_u64() as u16
            } else {
                i as u16
            };
            // Arrivals out of order too.
            let at = t0 + Duration::from_micros(rng.below(10_000_000) as u64);
            stats.record_header(ssrc, seq, rng.next_u64() as u32, rng.below(2000), at);
            if i % 1000 == 0 {
                let _ = stats.report_block(at);
                stats.handle_sender_report(NtpTime(rng.next_u64()), at);
                stats.set_clock_rate(if rng.below(2) == 0 { 8000 } else { 48_000 });
            }
        }
        let s = stats.snapshot();
        assert!(s.loss_ratio >= 0.0 && s.loss_ratio <= 1.0);
        assert_eq!(s.packets, 50_000);
    }

    #[test]
    fn two_legs_exchange_reports_and_measure_rtt() {
        use crate::core::rtcp::parse_compound;
        // A and B stream to each other over a path with 15 ms one-way delay;
        // B loses every 20th packet from A.
        let t0 = Instant::now();
        let clock_a = NtpClock::new(t0, NtpTime::from_unix(Duration::from_secs(1_800_000_000)));
        // B's wall clock is off by 3 s: RTT does not care.
        let clock_b = NtpClock::new(t0, NtpTime::from_unix(Duration::from_secs(1_800_000_003)));
        let mut a = LegStats::new(0xa, 8000);
        let mut b = LegStats::new(0xb, 8000);
        let delay = Duration::from_millis(15);
        for n in 0..250u32 {
            let at = t0 + PTIME * n;
            a.send.record_sent(n * 160, 160, at);
            if n % 20 != 7 {
                b.receive
                    .record_header(0xa, n as u16, n * 160, 160, at + delay);
            }
            b.send.record_sent(n * 160, 160, at);
            a.receive
                .record_header(0xb, n as u16, n * 160, 160, at + delay);
        }
        // A sends its SR at 5 s; B gets it 15 ms later.
        let t_sr = t0 + Duration::from_secs(5);
        let sr = a.build_report(t_sr, &clock_a, "a@test").expect("sr");
        let parsed = parse_compound(&sr).expect("parse");
        assert!(matches!(parsed[0], RtcpPacket::SenderReport(_)));
        assert!(
            matches!(&parsed[1], RtcpPacket::SourceDescription(c) if c[0].cname.as_deref() == Some("a@test"))
        );
        b.handle_rtcp(&parsed, t_sr + delay, &clock_b);
        // B answers 100 ms later; A reads it 15 ms after that.
        let t_rr = t_sr + delay + Duration::from_millis(100);
        let rr = b.build_report(t_rr, &clock_b, "b@test").expect("rr");
        let parsed = parse_compound(&rr).expect("parse");
        let block = parsed[0].report_blocks()[0];
        assert_eq!(block.ssrc, 0xa);
        assert_eq!(block.cumulative_lost, 13);
        assert_eq!(block.fraction_lost, (13 * 256 / 250) as u8);
        a.handle_rtcp(&parsed, t_rr + delay, &clock_a);
        let rtt = a.send.round_trip().expect("rtt").as_secs_f64() * 1000.0;
        assert!((rtt - 30.0).abs() < 0.1, "{rtt}");
        assert_eq!(a.send.remote().map(|r| r.cumulative_lost), Some(13));
        // Before any media was sent, a leg reports with an RR.
        let mut quiet = LegStats::new(0xc, 8000);
        let rr = quiet.build_report(t0, &clock_a, "c").expect("rr");
        assert!(matches!(
            parse_compound(&rr).expect("parse")[0],
            RtcpPacket::ReceiverReport(_)
        ));
    }
}
