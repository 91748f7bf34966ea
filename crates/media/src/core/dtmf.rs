//! DTMF as RFC 4733 telephone-events, and (in [`info`]) as SIP INFO bodies.
//!
//! - [`TelephoneEvent`]: the 4-byte payload (event, end bit, volume,
//!   duration; RFC 4733 §2.3).
//! - [`generate`]: the packets that send one digit (RFC 4733 §2.5.1): all
//!   with the event's start timestamp, the first with the marker bit, an
//!   update every 50 ms carrying the duration so far, and the final packet
//!   with the end bit sent three times.
//! - [`DtmfReceiver`]: turns a stream of event packets into digits, each
//!   exactly once (retransmitted end packets and late updates are dropped;
//!   an event whose end packets were all lost is closed by the next event
//!   or by a timeout).
//!
//! JsSIP sends DTMF as SIP INFO by default; [`info`] converts those bodies,
//! so the B2BUA can turn an INFO into [`generate`]'s packets toward a plain
//! leg, and a [`DtmfReceiver`] digit into an INFO toward the browser.

pub mod info;

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::packet::RtpPacket;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DtmfError {
    #[error("telephone-event payload of {0} bytes, need 4")]
    ShortPayload(usize),
    #[error("event {0} is not a DTMF digit or flash")]
    NotDtmf(u8),
    #[error("DTMF body: {0}")]
    BadBody(&'static str),
}

/// A DTMF digit or hook flash: RFC 4733 event codes 0–16 (0–9, `*` = 10,
/// `#` = 11, A–D = 12–15, flash = 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digit(u8);

impl Digit {
    pub const FLASH: Digit = Digit(16);

    pub fn from_event(code: u8) -> Option<Self> {
        (code <= 16).then_some(Digit(code))
    }

    /// `0`–`9`, `*`, `#`, `A`–`D` (either case).
    pub fn from_char(c: char) -> Option<Self> {
        let code = match c {
            '0'..='9' => c as u8 - b'0',
            '*' => 10,
            '#' => 11,
            'A'..='D' => c as u8 - b'A' + 12,
            'a'..='d' => c as u8 - b'a' + 12,
            _ => return None,
        };
        Some(Digit(code))
    }

    pub fn event(self) -> u8 {
        self.0
    }

    /// The character, `None` for flash.
    pub fn to_char(self) -> Option<char> {
        match self.0 {
            0..=9 => Some((b'0' + self.0) as char),
            10 => Some('*'),
            11 => Some('#'),
            12..=15 => Some((b'A' + self.0 - 12) as char),
            _ => None,
        }
    }
}

impl fmt::Display for Digit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_char() {
            Some(c) => write!(f, "{c}"),
            None => f.write_str("flash"),
        }
    }
}

/// An RFC 4733 §2.3 event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    /// E bit: the last packet(s) of the event.
    pub end: bool,
    /// Power level as −dBm0 (0–63); 10 is the usual value.
    pub volume: u8,
    /// Duration so far, in RTP timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses the first event block of a payload (redundant older blocks,
    /// if any, follow and are ignored).
    pub fn parse(payload: &[u8]) -> Result<Self, DtmfError> {
        let [event, flags, d0, d1, ..] = *payload else {
            return Err(DtmfError::ShortPayload(payload.len()));
        };
        Ok(TelephoneEvent {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    pub fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (if self.end { 0x80 } else { 0 }) | (self.volume & 0x3f),
            d[0],
            d[1],
        ]
    }

    pub fn digit(self) -> Option<Digit> {
        Digit::from_event(self.event)
    }
}

/// How often an ongoing event is refreshed (RFC 4733 §2.5.1.2 suggests
/// 50 ms for DTMF).
pub const UPDATE_INTERVAL: Duration = Duration::from_millis(50);
/// Spacing of the end-packet retransmissions (one packet time).
pub const END_REPEAT_INTERVAL: Duration = Duration::from_millis(20);
/// Longer tones are cut to this (a key press; bounds the packet count).
pub const MAX_TONE: Duration = Duration::from_secs(8);
/// The usual volume (−10 dBm0).
pub const DEFAULT_VOLUME: u8 = 10;

/// One packet of a generated digit: send it `offset` after the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    pub offset: Duration,
    pub marker: bool,
    /// The event's start timestamp (the same in every packet of the event).
    pub timestamp: u32,
    pub event: TelephoneEvent,
}

/// The packets that send `digit` for `duration` (RFC 4733 §2.5.1).
///
/// `start_timestamp` is the RTP timestamp (in the stream's clock, at
/// `clock_rate`) of the moment the tone starts. Packet k goes out at
/// k × 50 ms and carries the duration covered once its interval has
/// played, up to the tone's length; the first that reaches the length has
/// the end bit and is sent three times, 20 ms apart. Tones are cut to
/// [`MAX_TONE`] and to the 16-bit duration field (65535 units, 1.4 s at
/// 48 kHz); RFC 4733's long-event segmenting is not needed for key presses.
pub fn generate(
    digit: Digit,
    duration: Duration,
    volume: u8,
    clock_rate: u32,
    start_timestamp: u32,
) -> Vec<EventPacket> {
    let units = |d: Duration| -> u16 {
        (d.as_nanos() * clock_rate as u128 / 1_000_000_000).min(u16::MAX as u128) as u16
    };
    let total = units(duration.min(MAX_TONE)).max(1);
    // At least one unit per update, so odd clock rates still terminate.
    let step = units(UPDATE_INTERVAL).max(1);
    let mut packets = Vec::new();
    let mut k: u16 = 0;
    loop {
        let covered = step.saturating_mul(k.saturating_add(1)).min(total);
        let end = covered >= total || covered == u16::MAX;
        let event = TelephoneEvent {
            event: digit.event(),
            end,
            volume: volume & 0x3f,
            duration: covered,
        };
        let offset = UPDATE_INTERVAL * k as u32;
        if end {
            for r in 0..3 {
                packets.push(EventPacket {
                    offset: offset + END_REPEAT_INTERVAL * r,
                    marker: k == 0 && r == 0,
                    timestamp: start_timestamp,
                    event,
                });
            }
            return packets;
        }
        packets.push(EventPacket {
            offset,
            marker: k == 0,
            timestamp: start_timestamp,
            event,
        });
        k += 1;
    }
}

/// How a received digit was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitEnd {
    /// A packet with the end bit.
    EndBit,
    /// A new event started before any end packet arrived.
    NextEvent,
    /// No packet of the event for [`DtmfReceiver`]'s timeout.
    Timeout,
}

/// A digit received over RTP, reported once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedDigit {
    pub digit: Digit,
    /// The event's length (from its last duration field).
    pub duration: Duration,
    /// The event's RTP timestamp.
    pub timestamp: u32,
    pub ended_by: DigitEnd,
}

#[derive(Debug, Clone, Copy)]
struct Ongoing {
    timestamp: u32,
    digit: Digit,
    duration: u16,
    last_seen: Instant,
}

/// Turns telephone-event packets of one stream into digits.
///
/// Call [`handle_packet`](Self::handle_packet) per packet with the
/// telephone-event payload type, [`handle_timeout`](Self::handle_timeout)
/// no later than [`poll_timeout`](Self::poll_timeout), then drain
/// [`poll_digit`](Self::poll_digit).
#[derive(Debug)]
pub struct DtmfReceiver {
    clock_rate: u32,
    timeout: Duration,
    current: Option<Ongoing>,
    /// Recently finished events (timestamp, event code): retransmitted end
    /// packets and late updates of those are ignored.
    finished: VecDeque<(u32, u8)>,
    ready: VecDeque<ReceivedDigit>,
}

/// How many finished events are remembered for deduplication.
const FINISHED_MEMORY: usize = 8;
/// Without end packets, an event is closed after this long without packets
/// (several update intervals: RFC 4733 senders refresh every 50 ms).
pub const DEFAULT_EVENT_TIMEOUT: Duration = Duration::from_millis(250);

impl DtmfReceiver {
    pub fn new(clock_rate: u32) -> Self {
        Self::with_timeout(clock_rate, DEFAULT_EVENT_TIMEOUT)
    }

    pub fn with_timeout(clock_rate: u32, timeout: Duration) -> Self {
        DtmfReceiver {
            clock_rate: clock_rate.max(1),
            timeout,
            current: None,
            finished: VecDeque::with_capacity(FINISHED_MEMORY),
            ready: VecDeque::new(),
        }
    }

    /// One telephone-event packet. Events other than digits and flash
    /// (modem tones, RFC 4734) are ignored; a malformed payload is an error
    /// and changes nothing.
    pub fn handle_packet(
        &mut self,
        timestamp: u32,
        payload: &[u8],
        now: Instant,
    ) -> Result<(), DtmfError> {
        let event = TelephoneEvent::parse(payload)?;
        let Some(digit) = event.digit() else {
            return Ok(());
        };
        if self.finished.contains(&(timestamp, event.event)) {
            return Ok(());
        }
        // A different timestamp, or (from senders that reuse one) a
        // different event, is a new event.
        let same = |c: &Ongoing| c.timestamp == timestamp && c.digit == digit;
        if let Some(cur) = self.current {
            if !same(&cur) {
                self.finish(cur, DigitEnd::NextEvent);
            }
        }
        let cur = Ongoing {
            timestamp,
            digit,
            duration: self
                .current
                .filter(same)
                .map_or(event.duration, |c| c.duration.max(event.duration)),
            last_seen: now,
        };
        if event.end {
            self.current = None;
            self.finish(cur, DigitEnd::EndBit);
        } else {
            self.current = Some(cur);
        }
        Ok(())
    }

    /// [`handle_packet`](Self::handle_packet) for an RTP packet of the
    /// negotiated telephone-event payload type.
    pub fn handle_rtp(&mut self, packet: &RtpPacket, now: Instant) -> Result<(), DtmfError> {
        self.handle_packet(packet.timestamp, &packet.payload, now)
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.current.map(|c| c.last_seen + self.timeout)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(cur) = self.current {
            if now >= cur.last_seen + self.timeout {
                self.current = None;
                self.finish(cur, DigitEnd::Timeout);
            }
        }
    }

    /// The next digit received, each reported once.
    pub fn poll_digit(&mut self) -> Option<ReceivedDigit> {
        self.ready.pop_front()
    }

    fn finish(&mut self, cur: Ongoing, ended_by: DigitEnd) {
        if self.finished.len() == FINISHED_MEMORY {
            self.finished.pop_front();
        }
        self.finished.push_back((cur.timestamp, cur.digit.event()));
        let nanos = cur.duration as u64 * 1_000_000_000 / self.clock_rate as u64;
        self.ready.push_back(ReceivedDigit {
            digit: cur.digit,
            duration: Duration::from_nanos(nanos),
            timestamp: cur.timestamp,
            ended_by,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testutil::Rng;

    fn d(c: char) -> Digit {
        Digit::from_char(c).expect("digit")
    }

    #[test]
    fn digits_and_characters() {
        let all = "0123456789*#ABCD";
        for (code, c) in all.chars().enumerate() {
            let digit = d(c);
            assert_eq!(digit.event() as usize, code);
            assert_eq!(digit.to_char(), Some(c));
        }
        assert_eq!(d('b'), d('B'));
        assert_eq!(Digit::from_char('E'), None);
        assert_eq!(Digit::from_event(17), None);
        assert_eq!(Digit::FLASH.to_char(), None);
        assert_eq!(Digit::FLASH.to_string(), "flash");
        assert_eq!(d('#').to_string(), "#");
    }

    #[test]
    fn payload_wire_format() {
        // RFC 4733 §2.3: event 5, E=1, volume 10, duration 1280.
        let ev = TelephoneEvent {
            event: 5,
            end: true,
            volume: 10,
            duration: 1280,
        };
        assert_eq!(ev.to_bytes(), [5, 0x8a, 0x05, 0x00]);
        assert_eq!(TelephoneEvent::parse(&ev.to_bytes()), Ok(ev));
        // The R bit is ignored; extra redundant blocks too.
        assert_eq!(TelephoneEvent::parse(&[5, 0xca, 5, 0, 9, 9, 9, 9]), Ok(ev));
        assert_eq!(
            TelephoneEvent::parse(&[5, 0, 1]),
            Err(DtmfError::ShortPayload(3))
        );
    }

    #[test]
    fn generator_follows_rfc4733() {
        // 160 ms at 8 kHz: 1280 units; updates at 0, 50, 100 ms, the end at
        // 150 ms, repeated at 170 and 190 ms.
        let packets = generate(d('5'), Duration::from_millis(160), 10, 8000, 4242);
        let summary: Vec<(u64, bool, bool, u16)> = packets
            .iter()
            .map(|p| {
                (
                    p.offset.as_millis() as u64,
                    p.marker,
                    p.event.end,
                    p.event.duration,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (0, true, false, 400),
                (50, false, false, 800),
                (100, false, false, 1200),
                (150, false, true, 1280),
                (170, false, true, 1280),
                (190, false, true, 1280),
            ]
        );
        assert!(packets
            .iter()
            .all(|p| p.timestamp == 4242 && p.event.event == 5));
    }

    #[test]
    fn generator_at_48_khz_and_short_tones() {
        let packets = generate(d('#'), Duration::from_millis(100), 10, 48_000, 0);
        // 100 ms at 48 kHz = 4800: 2400, then end 4800 ×3.
        assert_eq!(packets.len(), 4);
        assert_eq!(packets[0].event.duration, 2400);
        assert!(packets[1..]
            .iter()
            .all(|p| p.event.end && p.event.duration == 4800));
        // A tone shorter than one update: the first packet is already the
        // end, with the marker on it only.
        let short = generate(d('1'), Duration::from_millis(40), 10, 8000, 0);
        assert_eq!(short.len(), 3);
        assert!(short[0].marker && short[0].event.end);
        assert!(!short[1].marker && !short[2].marker);
        // Very long: capped at 8 s (64000 units at 8 kHz), and at the
        // 16-bit field at 48 kHz.
        let long = generate(d('0'), Duration::from_secs(20), 10, 8000, 0);
        assert_eq!(long.last().map(|p| p.event.duration), Some(64_000));
        let long = generate(d('0'), Duration::from_secs(20), 10, 48_000, 0);
        assert_eq!(long.last().map(|p| p.event.duration), Some(u16::MAX));
        // Nonsense clock rates (from a peer's SDP) still end quickly.
        for rate in [0, 1, 7, u32::MAX] {
            let packets = generate(d('0'), Duration::from_secs(3600), 10, rate, 0);
            assert!(packets.len() <= 200, "{rate}: {}", packets.len());
            assert!(packets.last().is_some_and(|p| p.event.end));
        }
    }

    #[test]
    fn receiver_reports_each_digit_once() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new(8000);
        let mut digits = Vec::new();
        for (i, c) in "159#".chars().enumerate() {
            let ts = 1000 + i as u32 * 8000;
            for p in generate(d(c), Duration::from_millis(160), 10, 8000, ts) {
                rx.handle_packet(p.timestamp, &p.event.to_bytes(), t0 + p.offset)
                    .expect("packet");
                while let Some(digit) = rx.poll_digit() {
                    digits.push(digit);
                }
            }
        }
        // The same through RtpPacket.
        let p = generate(d('7'), Duration::from_millis(40), 10, 8000, 99_000)[0];
        let packet = RtpPacket {
            payload_type: 101,
            sequence: 1,
            timestamp: p.timestamp,
            ssrc: 1,
            marker: p.marker,
            payload: bytes::Bytes::copy_from_slice(&p.event.to_bytes()),
        };
        rx.handle_rtp(&packet, t0 + Duration::from_secs(1))
            .expect("rtp");
        digits.extend(rx.poll_digit());
        let chars: String = digits.iter().filter_map(|r| r.digit.to_char()).collect();
        assert_eq!(chars, "159#7");
        assert!(digits.iter().all(|r| r.ended_by == DigitEnd::EndBit));
        assert_eq!(digits[0].duration, Duration::from_millis(160));
        assert_eq!(rx.poll_timeout(), None);
    }

    #[test]
    fn lost_end_packets_close_on_next_event_or_timeout() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new(8000);
        let start = |ev: u8, dur: u16| TelephoneEvent {
            event: ev,
            end: false,
            volume: 10,
            duration: dur,
        };
        rx.handle_packet(100, &start(1, 400).to_bytes(), t0)
            .expect("p");
        rx.handle_packet(100, &start(1, 800).to_bytes(), t0 + UPDATE_INTERVAL)
            .expect("p");
        assert_eq!(rx.poll_digit(), None);
        // A new event (new timestamp) closes the first.
        rx.handle_packet(
            5000,
            &start(2, 400).to_bytes(),
            t0 + Duration::from_millis(600),
        )
        .expect("p");
        let first = rx.poll_digit().expect("first");
        assert_eq!((first.digit, first.ended_by), (d('1'), DigitEnd::NextEvent));
        assert_eq!(first.duration, Duration::from_millis(100));
        // No more packets: closed by the timeout.
        let deadline = rx.poll_timeout().expect("deadline");
        rx.handle_timeout(deadline - Duration::from_millis(1));
        assert_eq!(rx.poll_digit(), None);
        rx.handle_timeout(deadline);
        let second = rx.poll_digit().expect("second");
        assert_eq!((second.digit, second.ended_by), (d('2'), DigitEnd::Timeout));
        // Its late end packets are ignored.
        let end = TelephoneEvent {
            end: true,
            ..start(2, 800)
        };
        rx.handle_packet(5000, &end.to_bytes(), deadline)
            .expect("p");
        assert_eq!(rx.poll_digit(), None);
    }

    #[test]
    fn a_sender_reusing_one_timestamp_still_gets_both_digits() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new(8000);
        for c in ['4', '2'] {
            for p in generate(d(c), Duration::from_millis(100), 10, 8000, 777) {
                rx.handle_packet(p.timestamp, &p.event.to_bytes(), t0 + p.offset)
                    .expect("packet");
            }
        }
        let got: Vec<Digit> = std::iter::from_fn(|| rx.poll_digit())
            .map(|r| r.digit)
            .collect();
        assert_eq!(got, vec![d('4'), d('2')]);
    }

    #[test]
    fn receiver_ignores_non_dtmf_events_and_rejects_garbage() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new(8000);
        // Event 32 (a modem tone, RFC 4734).
        rx.handle_packet(1, &[32, 0x8a, 1, 0], t0).expect("p");
        assert_eq!(rx.poll_digit(), None);
        assert!(rx.handle_packet(1, &[1, 2], t0).is_err());
        let mut rng = Rng::new(0x5eed_0003);
        for i in 0..20_000u32 {
            let payload = rng.bytes(8);
            let ts = (rng.below(4) as u32) * 1000;
            let _ = rx.handle_packet(ts, &payload, t0 + Duration::from_millis(i as u64));
            if i % 7 == 0 {
                rx.handle_timeout(t0 + Duration::from_millis(i as u64));
            }
            while let Some(digit) = rx.poll_digit() {
                assert!(digit.digit.event() <= 16);
            }
        }
    }
}
