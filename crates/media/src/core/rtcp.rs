//! RTCP as a call-quality source (RFC 3550 §6): sender reports (SR),
//! receiver reports (RR) with their report blocks, SDES CNAME and BYE, in
//! compound packets; round-trip time from a report block's LSR/DLSR
//! (RFC 3550 §6.4.1).
//!
//! Written here rather than with `rtcp-types`: we need five packet types
//! and one calculation, owned value types that can be stored and compared in
//! tests, and an error type of our own; the parser is about 200 lines and
//! keeps the media core free of dependencies. Feedback (RTPFB/PSFB), APP and
//! XR packets are kept as [`RtcpPacket::Other`] so a compound packet that
//! carries them still parses.
//!
//! Time: RTCP speaks NTP timestamps. The core reads no clock, so the shell
//! gives an [`NtpClock`] (one wall-clock reading paired with the `Instant`
//! it was taken at) and every conversion is an argument away.

use std::time::{Duration, Instant};

/// RTCP packet types (RFC 3550 §12.1).
pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;

/// SDES item type of the canonical name (RFC 3550 §6.5.1).
const SDES_CNAME: u8 = 1;
/// The 5-bit count field limits report blocks, SDES chunks and BYE sources.
const MAX_COUNT: usize = 31;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RtcpError {
    #[error("RTCP packet too short: {0} bytes")]
    TooShort(usize),
    #[error("RTCP version {0}, expected 2")]
    BadVersion(u8),
    #[error("RTCP length field says {declared} bytes, {available} available")]
    BadLength { declared: usize, available: usize },
    #[error("RTCP padding of {0} bytes does not fit the packet")]
    BadPadding(u8),
    #[error("RTCP packet type {packet_type} body is malformed: {reason}")]
    Malformed {
        packet_type: u8,
        reason: &'static str,
    },
    #[error("the first packet of a compound RTCP packet must be SR or RR, got {0}")]
    NotReportFirst(u8),
    #[error("more than 31 items in one RTCP packet")]
    TooManyItems,
    #[error("SDES text longer than 255 bytes")]
    TextTooLong,
}

/// A 64-bit NTP timestamp: seconds since 1900 in the high 32 bits, the
/// fraction in the low 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NtpTime(pub u64);

impl NtpTime {
    /// The middle 32 bits (16.16 fixed point seconds), as LSR carries it.
    pub fn compact(self) -> u32 {
        (self.0 >> 16) as u32
    }

    /// Seconds since the Unix epoch → NTP time.
    pub fn from_unix(since_epoch: Duration) -> Self {
        const UNIX_TO_NTP_SECS: u64 = 2_208_988_800;
        let secs = since_epoch.as_secs() + UNIX_TO_NTP_SECS;
        let frac = ((since_epoch.subsec_nanos() as u64) << 32) / 1_000_000_000;
        NtpTime((secs << 32) | frac)
    }

    fn add(self, d: Duration) -> Self {
        let units = ((d.as_nanos() << 32) / 1_000_000_000) as u64;
        NtpTime(self.0.wrapping_add(units))
    }

    fn sub(self, d: Duration) -> Self {
        let units = ((d.as_nanos() << 32) / 1_000_000_000) as u64;
        NtpTime(self.0.wrapping_sub(units))
    }
}

/// Maps monotonic `Instant`s to NTP time from one reading the shell made of
/// both clocks at the same moment; later readings follow the monotonic
/// clock, so a wall-clock step does not disturb round-trip times.
#[derive(Debug, Clone, Copy)]
pub struct NtpClock {
    anchor: Instant,
    anchor_ntp: NtpTime,
}

impl NtpClock {
    pub fn new(anchor: Instant, anchor_ntp: NtpTime) -> Self {
        NtpClock { anchor, anchor_ntp }
    }

    pub fn ntp_at(&self, at: Instant) -> NtpTime {
        if at >= self.anchor {
            self.anchor_ntp.add(at - self.anchor)
        } else {
            self.anchor_ntp.sub(self.anchor - at)
        }
    }
}

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed: duplicates can make it
    /// negative).
    pub cumulative_lost: i32,
    /// Cycles (high 16 bits) and highest sequence number received.
    pub extended_highest_sequence: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received (0: none).
    pub last_sr: u32,
    /// Delay since that SR was received, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    /// Round-trip time as the sender of the SR computes it (RFC 3550
    /// §6.4.1): arrival time A − LSR − DLSR, all in 1/65536 s. `None` when
    /// the reporter has seen no SR yet (LSR 0) or the result is negative
    /// (clock trouble or a stale block).
    pub fn round_trip_time(&self, arrival: NtpTime) -> Option<Duration> {
        if self.last_sr == 0 {
            return None;
        }
        let rtt = arrival
            .compact()
            .wrapping_sub(self.last_sr)
            .wrapping_sub(self.delay_since_last_sr);
        // More than half the 16.16 range means A < LSR + DLSR.
        if rtt > u32::MAX / 2 {
            return None;
        }
        Some(Duration::from_nanos((rtt as u64 * 1_000_000_000) >> 16))
    }

    /// The fraction lost as a ratio in 0..=1.
    pub fn fraction_lost_ratio(&self) -> f64 {
        self.fraction_lost as f64 / 256.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderReport {
    pub ssrc: u32,
    pub ntp_time: NtpTime,
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
    pub reports: Vec<ReportBlock>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverReport {
    pub ssrc: u32,
    pub reports: Vec<ReportBlock>,
}

/// One SDES chunk; only the CNAME is kept (the other items carry nothing a
/// call-quality figure needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesChunk {
    pub ssrc: u32,
    pub cname: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bye {
    pub sources: Vec<u32>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    SenderReport(SenderReport),
    ReceiverReport(ReceiverReport),
    SourceDescription(Vec<SdesChunk>),
    Bye(Bye),
    /// Any other type (APP, feedback, XR), its body kept as it came.
    Other {
        packet_type: u8,
        count: u8,
        body: Vec<u8>,
    },
}

impl RtcpPacket {
    pub fn packet_type(&self) -> u8 {
        match self {
            RtcpPacket::SenderReport(_) => PT_SR,
            RtcpPacket::ReceiverReport(_) => PT_RR,
            RtcpPacket::SourceDescription(_) => PT_SDES,
            RtcpPacket::Bye(_) => PT_BYE,
            RtcpPacket::Other { packet_type, .. } => *packet_type,
        }
    }

    /// The report blocks an SR or RR carries (empty for other types).
    pub fn report_blocks(&self) -> &[ReportBlock] {
        match self {
            RtcpPacket::SenderReport(sr) => &sr.reports,
            RtcpPacket::ReceiverReport(rr) => &rr.reports,
            _ => &[],
        }
    }
}

/// Whether a datagram looks like RTCP rather than RTP on a multiplexed port
/// (RFC 5761 §4: RTCP packet types 192–223 collide with no RTP payload type
/// in use).
pub fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 8 && datagram[0] >> 6 == 2 && (192..=223).contains(&datagram[1])
}

/// Parses a compound RTCP packet. RFC 3550 §6.1 requires it to start with
/// an SR or RR; every packet must be version 2 and fit its length field.
pub fn parse_compound(buf: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    let packets = parse_packets(buf)?;
    match packets.first() {
        Some(p) if !matches!(p.packet_type(), PT_SR | PT_RR) => {
            Err(RtcpError::NotReportFirst(p.packet_type()))
        }
        _ => Ok(packets),
    }
}

/// Parses a datagram of RTCP packets that need not start with a report:
/// reduced-size RTCP (RFC 5506, `a=rtcp-rsize`, which baresip offers and
/// browsers use) sends lone feedback packets.
pub fn parse_packets(buf: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    if buf.is_empty() {
        return Err(RtcpError::TooShort(0));
    }
    let mut packets = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let (packet, used) = parse_one(rest)?;
        packets.push(packet);
        rest = &rest[used..];
    }
    Ok(packets)
}

/// Parses one RTCP packet from the start of `buf`; returns it and the number
/// of bytes it took.
pub fn parse_one(buf: &[u8]) -> Result<(RtcpPacket, usize), RtcpError> {
    if buf.len() < 4 {
        return Err(RtcpError::TooShort(buf.len()));
    }
    let version = buf[0] >> 6;
    if version != 2 {
        return Err(RtcpError::BadVersion(version));
    }
    let padding = buf[0] & 0x20 != 0;
    let count = buf[0] & 0x1f;
    let packet_type = buf[1];
    let len = (u16::from_be_bytes([buf[2], buf[3]]) as usize + 1) * 4;
    if len > buf.len() {
        return Err(RtcpError::BadLength {
            declared: len,
            available: buf.len(),
        });
    }
    let mut body = &buf[4..len];
    if padding {
        let pad = *body.last().ok_or(RtcpError::BadPadding(0))?;
        if pad == 0 || pad as usize > body.len() {
            return Err(RtcpError::BadPadding(pad));
        }
        body = &body[..body.len() - pad as usize];
    }
    let malformed = |reason| RtcpError::Malformed {
        packet_type,
        reason,
    };
    let packet = match packet_type {
        PT_SR => {
            let mut r = Reader::new(body);
            let ssrc = r.u32().ok_or(malformed("short sender info"))?;
            let ntp = r.u64().ok_or(malformed("short sender info"))?;
            let rtp_timestamp = r.u32().ok_or(malformed("short sender info"))?;
            let packet_count = r.u32().ok_or(malformed("short sender info"))?;
            let octet_count = r.u32().ok_or(malformed("short sender info"))?;
            let reports = parse_blocks(&mut r, count).ok_or(malformed("short report block"))?;
            RtcpPacket::SenderReport(SenderReport {
                ssrc,
                ntp_time: NtpTime(ntp),
                rtp_timestamp,
                packet_count,
                octet_count,
                reports,
            })
        }
        PT_RR => {
            let mut r = Reader::new(body);
            let ssrc = r.u32().ok_or(malformed("missing SSRC"))?;
            let reports = parse_blocks(&mut r, count).ok_or(malformed("short report block"))?;
            RtcpPacket::ReceiverReport(ReceiverReport { ssrc, reports })
        }
        PT_SDES => RtcpPacket::SourceDescription(
            parse_sdes(body, count).ok_or(malformed("bad SDES chunk"))?,
        ),
        PT_BYE => {
            let mut r = Reader::new(body);
            let mut sources = Vec::with_capacity(count as usize);
            for _ in 0..count {
                sources.push(r.u32().ok_or(malformed("short source list"))?);
            }
            let reason = match r.u8() {
                None => None,
                Some(n) => {
                    let text = r.take(n as usize).ok_or(malformed("short reason"))?;
                    Some(String::from_utf8_lossy(text).into_owned())
                }
            };
            RtcpPacket::Bye(Bye { sources, reason })
        }
        _ => RtcpPacket::Other {
            packet_type,
            count,
            body: body.to_vec(),
        },
    };
    Ok((packet, len))
}

fn parse_blocks(r: &mut Reader<'_>, count: u8) -> Option<Vec<ReportBlock>> {
    let mut blocks = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let ssrc = r.u32()?;
        let lost = r.u32()?;
        // 24-bit two's complement in the low bits.
        let cumulative = ((lost & 0x00ff_ffff) << 8) as i32 >> 8;
        blocks.push(ReportBlock {
            ssrc,
            fraction_lost: (lost >> 24) as u8,
            cumulative_lost: cumulative,
            extended_highest_sequence: r.u32()?,
            jitter: r.u32()?,
            last_sr: r.u32()?,
            delay_since_last_sr: r.u32()?,
        });
    }
    Some(blocks)
}

fn parse_sdes(body: &[u8], count: u8) -> Option<Vec<SdesChunk>> {
    let mut r = Reader::new(body);
    let mut chunks = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let ssrc = r.u32()?;
        let mut cname = None;
        // Items until a null item; then padding to the next 32-bit boundary.
        loop {
            let item = r.u8()?;
            if item == 0 {
                break;
            }
            let len = r.u8()? as usize;
            let text = r.take(len)?;
            if item == SDES_CNAME {
                cname = Some(String::from_utf8_lossy(text).into_owned());
            }
        }
        r.align4();
        chunks.push(SdesChunk { ssrc, cname });
    }
    Some(chunks)
}

/// Builds a compound packet from `packets` (the caller puts an SR or RR
/// first, then SDES, as RFC 3550 §6.1 asks).
pub fn build_compound(packets: &[RtcpPacket]) -> Result<Vec<u8>, RtcpError> {
    let mut out = Vec::with_capacity(128);
    for packet in packets {
        write_packet(packet, &mut out)?;
    }
    Ok(out)
}

/// Appends one RTCP packet to `out`.
pub fn write_packet(packet: &RtcpPacket, out: &mut Vec<u8>) -> Result<(), RtcpError> {
    let start = out.len();
    let count = match packet {
        RtcpPacket::SenderReport(sr) => {
            check_count(sr.reports.len())?;
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&sr.ssrc.to_be_bytes());
            out.extend_from_slice(&sr.ntp_time.0.to_be_bytes());
            out.extend_from_slice(&sr.rtp_timestamp.to_be_bytes());
            out.extend_from_slice(&sr.packet_count.to_be_bytes());
            out.extend_from_slice(&sr.octet_count.to_be_bytes());
            write_blocks(&sr.reports, out);
            sr.reports.len()
        }
        RtcpPacket::ReceiverReport(rr) => {
            check_count(rr.reports.len())?;
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&rr.ssrc.to_be_bytes());
            write_blocks(&rr.reports, out);
            rr.reports.len()
        }
        RtcpPacket::SourceDescription(chunks) => {
            check_count(chunks.len())?;
            out.extend_from_slice(&[0; 4]);
            for chunk in chunks {
                out.extend_from_slice(&chunk.ssrc.to_be_bytes());
                if let Some(cname) = &chunk.cname {
                    let len = u8::try_from(cname.len()).map_err(|_| RtcpError::TextTooLong)?;
                    out.push(SDES_CNAME);
                    out.push(len);
                    out.extend_from_slice(cname.as_bytes());
                }
                // The null item ending the list, then zeros to a 32-bit
                // boundary (at least one zero byte).
                out.push(0);
                while !(out.len() - start).is_multiple_of(4) {
                    out.push(0);
                }
            }
            chunks.len()
        }
        RtcpPacket::Bye(bye) => {
            check_count(bye.sources.len())?;
            out.extend_from_slice(&[0; 4]);
            for ssrc in &bye.sources {
                out.extend_from_slice(&ssrc.to_be_bytes());
            }
            if let Some(reason) = &bye.reason {
                let len = u8::try_from(reason.len()).map_err(|_| RtcpError::TextTooLong)?;
                out.push(len);
                out.extend_from_slice(reason.as_bytes());
                while !(out.len() - start).is_multiple_of(4) {
                    out.push(0);
                }
            }
            bye.sources.len()
        }
        RtcpPacket::Other { count, body, .. } => {
            if *count as usize > MAX_COUNT {
                return Err(RtcpError::TooManyItems);
            }
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(body);
            while !(out.len() - start).is_multiple_of(4) {
                out.push(0);
            }
            *count as usize
        }
    };
    let words = (out.len() - start) / 4 - 1;
    let words = u16::try_from(words).map_err(|_| RtcpError::TooManyItems)?;
    out[start] = 0x80 | count as u8;
    out[start + 1] = packet.packet_type();
    out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
    Ok(())
}

fn check_count(n: usize) -> Result<(), RtcpError> {
    if n > MAX_COUNT {
        Err(RtcpError::TooManyItems)
    } else {
        Ok(())
    }
}

fn write_blocks(blocks: &[ReportBlock], out: &mut Vec<u8>) {
    for b in blocks {
        out.extend_from_slice(&b.ssrc.to_be_bytes());
        // Clamp to the 24-bit signed range (RFC 3550 A.3).
        let cumulative = b.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32 & 0x00ff_ffff;
        out.extend_from_slice(&(((b.fraction_lost as u32) << 24) | cumulative).to_be_bytes());
        out.extend_from_slice(&b.extended_highest_sequence.to_be_bytes());
        out.extend_from_slice(&b.jitter.to_be_bytes());
        out.extend_from_slice(&b.last_sr.to_be_bytes());
        out.extend_from_slice(&b.delay_since_last_sr.to_be_bytes());
    }
}

/// A bounds-checked big-endian cursor: every read returns `None` past the
/// end instead of panicking.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn u64(&mut self) -> Option<u64> {
        let hi = self.u32()? as u64;
        let lo = self.u32()? as u64;
        Some((hi << 32) | lo)
    }

    fn align4(&mut self) {
        self.pos = (self.pos.div_ceil(4) * 4).min(self.buf.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testutil::Rng;

    fn block() -> ReportBlock {
        ReportBlock {
            ssrc: 0x1122_3344,
            fraction_lost: 26,
            cumulative_lost: -3,
            extended_highest_sequence: 0x0001_0005,
            jitter: 57,
            last_sr: 0xabcd_1234,
            delay_since_last_sr: 0x0001_8000,
        }
    }

    fn sample_compound() -> Vec<RtcpPacket> {
        vec![
            RtcpPacket::SenderReport(SenderReport {
                ssrc: 7,
                ntp_time: NtpTime(0xe000_0000_8000_0000),
                rtp_timestamp: 160_000,
                packet_count: 1000,
                octet_count: 160_000,
                reports: vec![block()],
            }),
            RtcpPacket::SourceDescription(vec![SdesChunk {
                ssrc: 7,
                cname: Some("centralita@127.0.0.1".into()),
            }]),
            RtcpPacket::Bye(Bye {
                sources: vec![7],
                reason: Some("hangup".into()),
            }),
        ]
    }

    #[test]
    fn compound_round_trips() {
        let packets = sample_compound();
        let bytes = build_compound(&packets).expect("build");
        assert_eq!(bytes.len() % 4, 0);
        assert!(is_rtcp(&bytes));
        assert_eq!(parse_compound(&bytes).expect("parse"), packets);
    }

    #[test]
    fn receiver_report_wire_format() {
        let rr = RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: 1,
            reports: vec![block()],
        });
        let bytes = build_compound(std::slice::from_ref(&rr)).expect("build");
        // V=2, RC=1, PT=201, length 7 words (8 - 1).
        assert_eq!(&bytes[..4], &[0x81, 201, 0, 7]);
        assert_eq!(bytes.len(), 32);
        // fraction 26, cumulative -3 as 24-bit two's complement.
        assert_eq!(&bytes[12..16], &[26, 0xff, 0xff, 0xfd]);
        assert_eq!(parse_compound(&bytes).expect("parse"), vec![rr]);
    }

    #[test]
    fn parses_a_browser_style_compound_with_feedback() {
        // RR without blocks + SDES CNAME + a PSFB (PLI, type 206) packet.
        let mut bytes = build_compound(&[
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: 9,
                reports: vec![],
            }),
            RtcpPacket::SourceDescription(vec![SdesChunk {
                ssrc: 9,
                cname: Some("abc".into()),
            }]),
        ])
        .expect("build");
        bytes.extend_from_slice(&[0x81, 206, 0, 2, 0, 0, 0, 9, 0, 0, 0, 7]);
        let parsed = parse_compound(&bytes).expect("parse");
        assert_eq!(parsed.len(), 3);
        assert_eq!(
            parsed[2],
            RtcpPacket::Other {
                packet_type: 206,
                count: 1,
                body: vec![0, 0, 0, 9, 0, 0, 0, 7]
            }
        );
    }

    #[test]
    fn sdes_with_other_items_and_padding_bit() {
        // SDES: one chunk with NAME (2) then CNAME, plus the P bit with 4
        // padding bytes.
        let mut body = vec![0, 0, 0, 5, 2, 2, b'h', b'i', 1, 1, b'x', 0];
        body.extend_from_slice(&[0, 0, 0, 4]);
        let words = (body.len() + 4) / 4 - 1;
        let mut bytes = vec![0xa1, 202, 0, words as u8];
        bytes.extend_from_slice(&body);
        let (packet, used) = parse_one(&bytes).expect("parse");
        assert_eq!(used, bytes.len());
        assert_eq!(
            packet,
            RtcpPacket::SourceDescription(vec![SdesChunk {
                ssrc: 5,
                cname: Some("x".into())
            }])
        );
    }

    #[test]
    fn compound_must_start_with_a_report() {
        let bytes = build_compound(&[RtcpPacket::Bye(Bye {
            sources: vec![1],
            reason: None,
        })])
        .expect("build");
        assert_eq!(
            parse_compound(&bytes),
            Err(RtcpError::NotReportFirst(PT_BYE))
        );
        // Reduced-size RTCP allows it.
        assert_eq!(parse_packets(&bytes).map(|p| p.len()), Ok(1));
        assert_eq!(parse_packets(&[]), Err(RtcpError::TooShort(0)));
    }

    #[test]
    fn round_trip_time_from_lsr_and_dlsr() {
        // RFC 3550 §6.4.1 example: A = 0xb710:8000 (46864.500 s), LSR =
        // 0xb705:2000 (46853.125 s), DLSR = 0x0005:4000 (5.250 s) → 6.125 s.
        let block = ReportBlock {
            last_sr: 0xb705_2000,
            delay_since_last_sr: 0x0005_4000,
            ..ReportBlock::default()
        };
        let arrival = NtpTime(0x0000_b710_8000_0000);
        assert_eq!(
            block.round_trip_time(arrival),
            Some(Duration::from_millis(6125))
        );
        // No SR seen by the reporter yet.
        let none = ReportBlock::default();
        assert_eq!(none.round_trip_time(arrival), None);
        // DLSR larger than the elapsed time: negative, rejected.
        let bad = ReportBlock {
            last_sr: 0xb710_8000,
            delay_since_last_sr: 0x0001_0000,
            ..ReportBlock::default()
        };
        assert_eq!(bad.round_trip_time(arrival), None);
    }

    #[test]
    fn ntp_clock_follows_instants() {
        let t0 = Instant::now();
        let ntp0 = NtpTime::from_unix(Duration::from_secs(1_700_000_000));
        let clock = NtpClock::new(t0, ntp0);
        let later = clock.ntp_at(t0 + Duration::from_millis(1500));
        assert_eq!(later.compact().wrapping_sub(ntp0.compact()), 0x0001_8000);
        let earlier = clock.ntp_at(t0 - Duration::from_millis(500));
        assert_eq!(ntp0.compact().wrapping_sub(earlier.compact()), 0x8000);
        // 1900 → 1970 offset.
        assert_eq!(NtpTime::from_unix(Duration::ZERO).0 >> 32, 2_208_988_800);
    }

    #[test]
    fn round_trip_against_our_own_sender_report() {
        // We send an SR at t0; the peer answers 80 ms later after holding it
        // for 30 ms: RTT = 50 ms (to the 1/65536 s resolution).
        let t0 = Instant::now();
        let clock = NtpClock::new(t0, NtpTime::from_unix(Duration::from_secs(1_800_000_000)));
        let sent = clock.ntp_at(t0);
        let block = ReportBlock {
            last_sr: sent.compact(),
            delay_since_last_sr: (30 * 65536) / 1000,
            ..ReportBlock::default()
        };
        let rtt = block
            .round_trip_time(clock.ntp_at(t0 + Duration::from_millis(80)))
            .expect("rtt");
        let ms = rtt.as_secs_f64() * 1000.0;
        assert!((ms - 50.0).abs() < 0.1, "{ms}");
    }

    #[test]
    fn too_many_blocks_is_an_error() {
        let rr = RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: 1,
            reports: vec![ReportBlock::default(); 32],
        });
        assert_eq!(build_compound(&[rr]), Err(RtcpError::TooManyItems));
    }

    #[test]
    fn truncated_packets_are_errors() {
        let bytes = build_compound(&sample_compound()).expect("build");
        for len in 0..bytes.len() {
            // Every strict prefix either fails or is a shorter valid
            // compound ending on a packet boundary.
            if let Ok(packets) = parse_compound(&bytes[..len]) {
                assert!(packets.len() < 3);
            }
        }
        assert!(matches!(
            parse_one(&[0x80, 200, 0, 6]),
            Err(RtcpError::BadLength { .. })
        ));
        assert!(matches!(
            parse_one(&[0x81, 201, 0, 1, 0, 0, 0, 1]),
            Err(RtcpError::Malformed { .. })
        ));
        assert_eq!(parse_one(&[0x40, 200, 0, 0]), Err(RtcpError::BadVersion(1)));
        assert_eq!(
            parse_one(&[0xa0, 201, 0, 1, 0, 0, 0, 9]).err(),
            Some(RtcpError::BadPadding(9))
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Rng::new(0x5eed_0001);
        let valid = build_compound(&sample_compound()).expect("build");
        for _ in 0..20_000 {
            let mut bytes = rng.bytes(96);
            if !bytes.is_empty() && rng.below(2) == 0 {
                // Mostly-valid headers reach the body parsers.
                bytes[0] = 0x80 | (bytes[0] & 0x3f);
                if bytes.len() > 1 {
                    bytes[1] = 200 + (bytes[1] % 8);
                }
            }
            let _ = parse_compound(&bytes);
            let _ = parse_packets(&bytes);
            let _ = parse_compound(&rng.mutate(&valid));
        }
    }
}
