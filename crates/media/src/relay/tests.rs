//! The relay core on virtual time: a fixed `t0` and explicit offsets, no
//! sockets, no sleeping.

use super::*;
use std::net::{Ipv4Addr, SocketAddrV4};

const TE: Codec = Codec::TelephoneEvent { clock_rate: 8000 };
const OUT_A: u32 = 0xaaaa_0001;
const OUT_B: u32 = 0xbbbb_0002;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), port))
}

fn nat(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), port))
}

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let mut v = Vec::new();
    rtp::write_rtp(
        &RtpPacket {
            payload_type: pt,
            sequence: seq,
            timestamp: ts,
            ssrc,
            marker: false,
            payload: Bytes::from_static(&[0x55; 160]),
        },
        &mut v,
    );
    v
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

struct Call {
    t0: Instant,
    relay: Relay,
}

impl Call {
    /// A: PCMU 0 + telephone-event 101 at 10.0.0.1:4000.
    /// B: PCMU 0 + telephone-event 96 at 10.0.0.1:6000.
    fn new() -> Call {
        Call::with_config(RelayConfig::default())
    }

    fn with_config(config: RelayConfig) -> Call {
        let t0 = Instant::now();
        let mut relay = Relay::new(t0, config, [OUT_A, OUT_B]);
        relay.set_leg(
            t0,
            LegId::A,
            params(addr(4000), &[(0, Codec::Pcmu), (101, TE)]),
        );
        relay.set_leg(
            t0,
            LegId::B,
            params(addr(6000), &[(0, Codec::Pcmu), (96, TE)]),
        );
        Call { t0, relay }
    }

    fn at(&self, offset: Duration) -> Instant {
        self.t0 + offset
    }

    fn send(&mut self, t: Duration, leg: LegId, from: SocketAddr, data: &[u8]) -> Vec<Transmit> {
        let now = self.at(t);
        self.relay.handle_datagram(now, leg, Port::Rtp, from, data);
        self.drain()
    }

    fn drain(&mut self) -> Vec<Transmit> {
        std::iter::from_fn(|| self.relay.poll_transmit()).collect()
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.relay.poll_event()).collect()
    }

    fn one(&mut self, t: Duration, leg: LegId, from: SocketAddr, data: &[u8]) -> Transmit {
        let mut out = self.send(t, leg, from, data);
        assert_eq!(out.len(), 1, "one packet forwarded");
        out.remove(0)
    }
}

fn params(remote: SocketAddr, codecs: &[(u8, Codec)]) -> LegParams {
    LegParams {
        remote_rtp: Some(remote),
        remote_rtcp: None,
        codecs: codecs.to_vec(),
        direction: Direction::SendRecv,
    }
}

#[test]
fn forwards_with_our_ssrc_and_mapped_payload_type() {
    let mut c = Call::new();
    let t = c.one(ms(0), LegId::A, addr(4000), &rtp(0, 10, 1000, 0x1111));
    assert_eq!(t.leg, LegId::B);
    assert_eq!(t.to, addr(6000));
    assert_eq!(t.packet.ssrc, OUT_B);
    assert_eq!((t.packet.sequence, t.packet.timestamp), (10, 1000));
    assert_eq!(t.packet.payload.len(), 160);
    // telephone-event: 101 on A is 96 on B, and back.
    let t = c.one(ms(20), LegId::A, addr(4000), &rtp(101, 11, 1160, 0x1111));
    assert_eq!(t.packet.payload_type, 96);
    let t = c.one(ms(20), LegId::B, addr(6000), &rtp(96, 500, 9, 0x2222));
    assert_eq!(
        (t.leg, t.packet.payload_type, t.packet.ssrc),
        (LegId::A, 101, OUT_A)
    );
    // PCMA was negotiated on neither leg: dropped, counted.
    assert!(c
        .send(ms(40), LegId::A, addr(4000), &rtp(8, 12, 1320, 0x1111))
        .is_empty());
    assert_eq!(c.relay.stats(LegId::A).dropped_payload_type, 1);
}

#[test]
fn a_payload_type_the_other_leg_lacks_is_dropped() {
    let mut c = Call::new();
    c.relay
        .set_leg(c.t0, LegId::B, params(addr(6000), &[(0, Codec::Pcmu)]));
    assert!(c
        .send(ms(0), LegId::A, addr(4000), &rtp(101, 1, 0, 7))
        .is_empty());
    assert_eq!(c.relay.stats(LegId::A).dropped_payload_type, 1);
}

#[test]
fn ssrc_change_continues_sequence_and_timestamp_by_elapsed_time() {
    let mut c = Call::new();
    let mut last = None;
    for i in 0..5u16 {
        let t = c.one(
            ms(20 * u64::from(i)),
            LegId::A,
            addr(4000),
            &rtp(0, 100 + i, 8000 + 160 * u32::from(i), 0x1111),
        );
        last = Some(t.packet);
    }
    let last = last.expect("sent");
    assert_eq!((last.sequence, last.timestamp), (104, 8640));
    // A re-INVITE brings a new source (other SSRC, random numbers) 100 ms
    // after the last packet of the old one.
    let t = c.one(
        ms(180),
        LegId::A,
        addr(4000),
        &rtp(0, 40_000, 3_000_000_000, 0x2222),
    );
    assert_eq!(t.packet.ssrc, OUT_B);
    assert_eq!(t.packet.sequence, 105);
    assert_eq!(t.packet.timestamp, 8640 + 100 * 8);
    assert!(t.packet.marker, "splice marked");
    // The new source then runs on from there, unmarked.
    let t = c.one(
        ms(200),
        LegId::A,
        addr(4000),
        &rtp(0, 40_001, 3_000_000_160, 0x2222),
    );
    assert_eq!(
        (t.packet.sequence, t.packet.timestamp),
        (106, 8640 + 800 + 160)
    );
    assert!(!t.packet.marker);
    assert_eq!(c.relay.stats(LegId::B).out_resyncs, 1);
}

#[test]
fn sequence_wrap_is_not_a_source_change() {
    let mut c = Call::new();
    let mut seqs = Vec::new();
    for (i, seq) in [65_533u16, 65_534, 65_535, 0, 1, 2].into_iter().enumerate() {
        let ts = (u32::MAX - 400).wrapping_add(160 * i as u32); // the timestamp wraps too
        let t = c.one(
            ms(20 * i as u64),
            LegId::A,
            addr(4000),
            &rtp(0, seq, ts, 0x1111),
        );
        seqs.push(t.packet.sequence);
        assert!(!t.packet.marker);
    }
    assert_eq!(seqs, vec![65_533, 65_534, 65_535, 0, 1, 2]);
    assert_eq!(c.relay.stats(LegId::B).out_resyncs, 0);
    // A loss gap and a late packet keep their shape (the receiver's jitter
    // buffer needs to see them) and do not resync either.
    let t = c.one(ms(200), LegId::A, addr(4000), &rtp(0, 10, 1000, 0x1111));
    assert_eq!(t.packet.sequence, 10);
    let t = c.one(ms(210), LegId::A, addr(4000), &rtp(0, 8, 700, 0x1111));
    assert_eq!(t.packet.sequence, 8);
    // A jump of 20,000 on the same SSRC is a restart: spliced at last + 1.
    let t = c.one(ms(220), LegId::A, addr(4000), &rtp(0, 20_010, 5, 0x1111));
    assert_eq!(t.packet.sequence, 11);
    assert!(t.packet.marker);
}

#[test]
fn nat_source_is_latched_after_probation_and_then_held() {
    let mut c = Call::new();
    // A's phone announced 10.0.0.1:4000 but its packets come from the NAT.
    for i in 0..3u16 {
        assert!(c
            .send(
                ms(20 * u64::from(i)),
                LegId::A,
                nat(31000),
                &rtp(0, i, 0, 0x1111)
            )
            .is_empty());
    }
    assert_eq!(c.relay.stats(LegId::A).dropped_source, 3);
    assert!(c.events().is_empty());
    let t = c.one(ms(60), LegId::A, nat(31000), &rtp(0, 3, 480, 0x1111));
    assert_eq!(t.to, addr(6000));
    assert_eq!(
        c.events(),
        vec![Event::Latched {
            leg: LegId::A,
            addr: nat(31000)
        }]
    );
    // Media toward A now goes to the NAT address, not the SDP address.
    let t = c.one(ms(70), LegId::B, addr(6000), &rtp(0, 1, 0, 0x2222));
    assert_eq!(t.to, nat(31000));
    // Another source, even with perfect sequence numbers, is rejected
    // while the latched one keeps talking.
    for i in 0..10u16 {
        let now = 80 + 20 * u64::from(i);
        assert!(c
            .send(ms(now), LegId::A, nat(6666), &rtp(0, 900 + i, 0, 0x9999))
            .is_empty());
        c.one(ms(now), LegId::A, nat(31000), &rtp(0, 4 + i, 0, 0x1111));
    }
    assert_eq!(c.relay.latched(LegId::A), Some(nat(31000)));
}

#[test]
fn probation_needs_consecutive_sequence_numbers_from_one_ssrc() {
    let mut c = Call::new();
    // Alternating SSRCs and gaps never complete probation.
    for i in 0..8u16 {
        let ssrc = if i % 2 == 0 { 1 } else { 2 };
        assert!(c
            .send(ms(u64::from(i)), LegId::A, nat(1), &rtp(0, i * 3, 0, ssrc))
            .is_empty());
    }
    assert_eq!(c.relay.latched(LegId::A), None);
}

#[test]
fn the_sdp_address_latches_at_once() {
    let mut c = Call::new();
    c.one(ms(0), LegId::A, addr(4000), &rtp(0, 1, 0, 1));
    assert_eq!(c.relay.latched(LegId::A), Some(addr(4000)));
}

#[test]
fn relatch_after_silence_or_after_new_sdp() {
    let mut c = Call::new();
    c.one(ms(0), LegId::A, addr(4000), &rtp(0, 1, 0, 1));
    c.events();
    // The phone's NAT rebinds: a new port, old one silent. Within 3 s: no.
    for i in 0..4u16 {
        assert!(c
            .send(
                ms(1000 + u64::from(i)),
                LegId::A,
                nat(2),
                &rtp(0, 2 + i, 0, 1)
            )
            .is_empty());
    }
    // After 3 s of silence from the latched source: learned after probation.
    for i in 0..3u16 {
        assert!(c
            .send(
                ms(3100 + u64::from(i)),
                LegId::A,
                nat(2),
                &rtp(0, 10 + i, 0, 1)
            )
            .is_empty());
    }
    c.one(ms(3103), LegId::A, nat(2), &rtp(0, 13, 0, 1));
    assert_eq!(
        c.events(),
        vec![Event::Latched {
            leg: LegId::A,
            addr: nat(2)
        }]
    );

    // With relatching on silence off, only new SDP opens learning again.
    let mut c = Call::with_config(RelayConfig {
        relatch_after: None,
        ..RelayConfig::default()
    });
    c.one(ms(0), LegId::A, addr(4000), &rtp(0, 1, 0, 1));
    for i in 0..6u16 {
        assert!(c
            .send(
                ms(60_000 + u64::from(i)),
                LegId::A,
                nat(2),
                &rtp(0, 2 + i, 0, 1)
            )
            .is_empty());
    }
    let t1 = c.at(ms(61_000));
    c.relay
        .set_leg(t1, LegId::A, params(addr(4002), &[(0, Codec::Pcmu)]));
    // The old source still passes while the new one is learned.
    c.one(ms(61_001), LegId::A, addr(4000), &rtp(0, 2, 160, 1));
    c.one(ms(61_002), LegId::A, addr(4002), &rtp(0, 3, 320, 1));
    assert_eq!(c.relay.latched(LegId::A), Some(addr(4002)));
    assert!(c
        .send(ms(61_003), LegId::A, addr(4000), &rtp(0, 4, 480, 1))
        .is_empty());
}

#[test]
fn media_timeout_fires_once_and_not_on_hold() {
    let mut c = Call::new();
    c.one(ms(0), LegId::A, addr(4000), &rtp(0, 1, 0, 1));
    c.events();
    // B keeps talking, A falls silent.
    let mut t = 0;
    while t < 31_000 {
        t += 1000;
        c.send(ms(t), LegId::B, addr(6000), &rtp(0, t as u16, 0, 2));
        c.relay.handle_timeout(c.at(ms(t)));
        c.drain();
    }
    let ev: Vec<Event> = c
        .events()
        .into_iter()
        .filter(|e| !matches!(e, Event::Latched { .. }))
        .collect();
    assert_eq!(ev, vec![Event::MediaTimeout { leg: LegId::A }]);
    assert_eq!(
        c.relay.poll_timeout(),
        Some(c.at(ms(31_000 + 30_000))),
        "only B's clock runs"
    );
    c.relay.handle_timeout(c.at(ms(40_000)));
    assert!(c.events().is_empty(), "once");
    c.one(ms(40_010), LegId::A, addr(4000), &rtp(0, 2, 160, 1));
    assert_eq!(c.events(), vec![Event::MediaResumed { leg: LegId::A }]);

    // On hold nobody times out, however long; unhold restarts the clock.
    let mut c = Call::new();
    let mut held = params(addr(4000), &[(0, Codec::Pcmu), (101, TE)]);
    held.direction = Direction::SendOnly;
    c.relay.set_leg(c.at(ms(0)), LegId::A, held);
    c.relay.handle_timeout(c.at(ms(600_000)));
    c.drain();
    assert!(c.events().is_empty());
    c.relay.set_leg(
        c.at(ms(600_000)),
        LegId::A,
        params(addr(4000), &[(0, Codec::Pcmu), (101, TE)]),
    );
    assert_eq!(c.relay.poll_timeout(), Some(c.at(ms(630_000))));
    c.relay.handle_timeout(c.at(ms(630_000)));
    assert_eq!(
        c.events(),
        vec![
            Event::MediaTimeout { leg: LegId::A },
            Event::MediaTimeout { leg: LegId::B }
        ]
    );
}

#[test]
fn hold_feeds_the_held_party_from_the_egress_source_continuously() {
    let mut c = Call::new();
    for i in 0..3u16 {
        c.one(
            ms(20 * u64::from(i)),
            LegId::A,
            addr(4000),
            &rtp(0, 50 + i, 160 * u32::from(i), 1),
        );
    }
    // A puts B on hold (A: sendonly). B hears the tone; A hears nothing.
    let mut p = params(addr(4000), &[(0, Codec::Pcmu), (101, TE)]);
    p.direction = Direction::SendOnly;
    c.relay.set_leg(c.at(ms(100)), LegId::A, p);
    assert!(c.relay.egress_active(LegId::B));
    assert_eq!(c.relay.poll_timeout(), Some(c.at(ms(100))));
    let mut music = Vec::new();
    let mut now = ms(100);
    while now <= ms(200) {
        c.relay.handle_timeout(c.at(now));
        music.extend(c.drain());
        now += ms(10);
    }
    assert_eq!(music.len(), 6, "a frame every 20 ms from 100 to 200 ms");
    assert!(music
        .iter()
        .all(|t| t.leg == LegId::B && t.to == addr(6000) && t.packet.payload.len() == 160));
    let seqs: Vec<u16> = music.iter().map(|t| t.packet.sequence).collect();
    assert_eq!(
        seqs,
        vec![53, 54, 55, 56, 57, 58],
        "continues the relayed stream"
    );
    assert_eq!(
        music[0].packet.timestamp,
        320 + 60 * 8,
        "40 ms after the last relayed packet, +60 ms"
    );
    assert!(music[0].packet.marker && !music[1].packet.marker);
    assert_eq!(music[1].packet.timestamp - music[0].packet.timestamp, 160);
    assert!(music.iter().all(|t| t.packet.ssrc == OUT_B));
    // Meanwhile A's audio does not reach B, and B's does not reach A.
    assert!(c
        .send(ms(205), LegId::A, addr(4000), &rtp(0, 60, 2000, 1))
        .is_empty());
    assert!(c
        .send(ms(205), LegId::B, addr(6000), &rtp(0, 1, 0, 2))
        .is_empty());
    // Unhold: the music stops, relaying resumes in the same stream.
    c.relay.set_leg(
        c.at(ms(210)),
        LegId::A,
        params(addr(4000), &[(0, Codec::Pcmu), (101, TE)]),
    );
    assert!(!c.relay.egress_active(LegId::B));
    let t = c.one(ms(220), LegId::A, addr(4000), &rtp(0, 61, 2160, 1));
    assert_eq!(t.packet.sequence, 59);
    assert!(t.packet.marker);
}

#[test]
fn custom_egress_source_and_pcma() {
    struct Constant;
    impl EgressSource for Constant {
        fn fill(&mut self, pcm: &mut [i16]) -> bool {
            pcm.fill(0);
            true
        }
    }
    let mut c = Call::new();
    c.relay
        .set_leg(c.t0, LegId::B, params(addr(6000), &[(8, Codec::Pcma)]));
    c.relay.set_egress_source(LegId::B, Box::new(Constant));
    let mut p = params(addr(4000), &[(0, Codec::Pcmu)]);
    p.direction = Direction::Inactive;
    c.relay.set_leg(c.at(ms(0)), LegId::A, p);
    c.relay.handle_timeout(c.at(ms(0)));
    let out = c.drain();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].packet.payload_type, 8);
    assert!(
        out[0].packet.payload.iter().all(|b| *b == 0xd5),
        "A-law silence"
    );
}

#[test]
fn rtcp_is_terminated_and_garbage_is_not_forwarded() {
    let mut c = Call::new();
    c.one(ms(0), LegId::A, addr(4000), &rtp(0, 1, 0, 1));
    let rr = [0x80u8, 201, 0, 1, 0, 0, 0, 1];
    let rtcp_from = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 4001));
    c.relay
        .handle_datagram(c.at(ms(1)), LegId::A, Port::Rtcp, rtcp_from, &rr);
    // Muxed on the RTP port too.
    c.relay
        .handle_datagram(c.at(ms(2)), LegId::A, Port::Rtp, addr(4000), &rr);
    assert!(c.drain().is_empty(), "never relayed");
    let ev = c.events();
    assert_eq!(ev.len(), 3, "latched + two RTCP: {ev:?}");
    assert!(matches!(ev[1], Event::Rtcp { leg: LegId::A, .. }));
    // From another host, or malformed: dropped.
    c.relay
        .handle_datagram(c.at(ms(3)), LegId::A, Port::Rtcp, nat(4001), &rr);
    c.relay
        .handle_datagram(c.at(ms(3)), LegId::A, Port::Rtcp, rtcp_from, &rr[..6]);
    assert_eq!(c.relay.stats(LegId::A).rtcp_dropped, 2);
    assert_eq!(c.relay.stats(LegId::A).rtcp_packets, 2);
}

#[test]
fn random_datagrams_never_panic_nor_leak_through() {
    let mut c = Call::new();
    let mut s: u64 = 0x0123_4567_89ab_cdef;
    let mut next = move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        s.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut forwarded = 0;
    for i in 0..50_000u64 {
        let len = (next() % 200) as usize;
        let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if len > 1 && next() % 2 == 0 {
            buf[0] = 0x80;
            buf[1] &= 0x7f;
        }
        let leg = if next() % 2 == 0 { LegId::A } else { LegId::B };
        let port = if next() % 4 == 0 {
            Port::Rtcp
        } else {
            Port::Rtp
        };
        let from = if next() % 3 == 0 {
            addr(4000)
        } else {
            nat((next() % 4) as u16)
        };
        c.relay.handle_datagram(c.at(ms(i)), leg, port, from, &buf);
        c.relay.handle_timeout(c.at(ms(i)));
        for t in c.drain() {
            // Whatever went through is a well-formed packet in our stream.
            assert!(t.packet.ssrc == OUT_A || t.packet.ssrc == OUT_B);
            assert!(matches!(t.packet.payload_type, 0 | 96 | 101));
            forwarded += 1;
        }
        c.events();
    }
    assert!(
        forwarded > 0,
        "some random packets were valid enough to pass"
    );
}

#[test]
fn stats_are_reported_every_interval_when_asked() {
    let mut c = Call::with_config(RelayConfig {
        stats_interval: Some(Duration::from_secs(5)),
        ..RelayConfig::default()
    });
    c.one(ms(0), LegId::A, addr(4000), &rtp(0, 1, 0, 1));
    c.events();
    assert_eq!(c.relay.poll_timeout(), Some(c.at(ms(5000))));
    c.relay.handle_timeout(c.at(ms(5000)));
    let ev = c.events();
    let Some(Event::Stats { legs }) = ev.last() else {
        panic!("stats expected: {ev:?}");
    };
    assert_eq!((legs[0].in_packets, legs[1].out_packets), (1, 1));
    assert_eq!(c.relay.poll_timeout(), Some(c.at(ms(10_000))));
    // Without an interval: none.
    let mut c = Call::new();
    c.relay.handle_timeout(c.at(ms(29_000)));
    assert!(c.events().is_empty());
}

#[test]
fn a_digit_sent_toward_a_leg_replaces_its_audio_for_the_event() {
    let mut c = Call::new();
    // Audio A → B first: the stream toward B starts.
    let first = c.one(ms(0), LegId::A, addr(4000), &rtp(0, 10, 1000, 0x1111));
    assert!(c.relay.send_dtmf(
        c.at(ms(10)),
        LegId::B,
        crate::core::dtmf::Digit::from_char('5').expect("5"),
        ms(100)
    ));
    // Over the next 300 ms: the events go out on time, audio from A is held back.
    let mut events = Vec::new();
    let mut audio = 0;
    for step in 1..=15u64 {
        let t = ms(10 + step * 20);
        let now = c.at(t);
        let sent = c.send(
            t,
            LegId::A,
            addr(4000),
            &rtp(0, 10 + step as u16, 1000 + 160 * step as u32, 0x1111),
        );
        for t in sent {
            if t.packet.payload_type == 96 {
                events.push(t);
            } else {
                audio += 1;
            }
        }
        c.relay.handle_timeout(now);
        events.extend(
            c.drain()
                .into_iter()
                .filter(|t| t.packet.payload_type == 96),
        );
    }
    // 100 ms: the start, an update at 50 ms that is already the end, ×3.
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(events
        .iter()
        .all(|t| t.leg == LegId::B && t.packet.ssrc == OUT_B));
    let ts = events[0].packet.timestamp;
    assert!(
        events.iter().all(|t| t.packet.timestamp == ts),
        "one event, one timestamp"
    );
    assert!(events[0].packet.marker);
    let parsed: Vec<_> = events
        .iter()
        .map(|t| crate::core::dtmf::TelephoneEvent::parse(&t.packet.payload).expect("event"))
        .collect();
    assert!(parsed.iter().all(|e| e.event == 5));
    assert_eq!(
        parsed.iter().filter(|e| e.end).count(),
        3,
        "end sent three times"
    );
    assert!(events
        .windows(2)
        .all(|w| w[1].packet.sequence == w[0].packet.sequence.wrapping_add(1)));
    assert!(
        events[0].packet.sequence == first.packet.sequence.wrapping_add(1),
        "continues the stream"
    );
    // Audio resumed once the event ended (100 ms + the end repeats).
    assert!(
        (3..=12).contains(&audio),
        "audio packets forwarded: {audio}"
    );
    // No telephone-event on the leg: refused.
    let mut c = Call::new();
    c.relay
        .set_leg(c.t0, LegId::B, params(addr(6000), &[(0, Codec::Pcmu)]));
    assert!(!c.relay.send_dtmf(
        c.t0,
        LegId::B,
        crate::core::dtmf::Digit::from_char('1').expect("1"),
        ms(100)
    ));
}

// --- Transcoding: legs that share no codec ---------------------------------

use crate::core::egress::{Packetizer, FRAME_SAMPLES};
use crate::core::opus::{OpusDecoder, MAX_PACKET_SAMPLES};
use crate::core::testaudio::{dominant_frequency, goertzel, rms, sine};

const TE48: Codec = Codec::TelephoneEvent { clock_rate: 48_000 };

/// A leg's RTP packet with the given payload.
fn rtp_with(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    rtp::write_rtp(
        &RtpPacket {
            payload_type: pt,
            sequence: seq,
            timestamp: ts,
            ssrc,
            marker: false,
            payload: Bytes::copy_from_slice(payload),
        },
        &mut v,
    );
    v
}

/// `pcm` as 20 ms packets of `codec` (the core's own packetizer: opus
/// from the core's libopus encoder).
fn packets(codec: Codec, pt: u8, ssrc: u32, pcm: &[i16], seq: u16, ts: u32) -> Vec<RtpPacket> {
    let mut p = Packetizer::new(
        codec,
        pt,
        ssrc,
        seq,
        ts,
        &crate::core::opus::OpusSettings::default(),
    )
    .expect("packetizer");
    pcm.chunks_exact(FRAME_SAMPLES)
        .map(|c| {
            let mut frame = [0; FRAME_SAMPLES];
            frame.copy_from_slice(c);
            p.packetize(&frame).expect("packetize")
        })
        .collect()
}

fn encoded(p: &RtpPacket) -> Vec<u8> {
    let mut v = Vec::new();
    rtp::write_rtp(p, &mut v);
    v
}

/// A: PCMU 0 + telephone-event 101; B: PCMA 8 + telephone-event 96.
fn ulaw_alaw_call() -> Call {
    let mut c = Call::new();
    c.relay.set_leg(
        c.t0,
        LegId::B,
        params(addr(6000), &[(8, Codec::Pcma), (96, TE)]),
    );
    c
}

#[test]
fn pcmu_and_pcma_legs_are_transcoded_both_ways() {
    let mut c = ulaw_alaw_call();
    let tone = sine(8 * FRAME_SAMPLES, 1000.0, 8000.0);
    // A → B: µ-law in, A-law out, the same samples (G.711 both sides).
    let mut at_b = Vec::new();
    for (i, frame) in tone.chunks_exact(FRAME_SAMPLES).enumerate() {
        let i = i as u16;
        let payload = g711::encode_ulaw(frame);
        let t = c.one(
            ms(20 * u64::from(i)),
            LegId::A,
            addr(4000),
            &rtp_with(0, 100 + i, 16_000 + 160 * u32::from(i), 0x1111, &payload),
        );
        assert_eq!((t.leg, t.to), (LegId::B, addr(6000)));
        assert_eq!(t.packet.payload_type, 8, "B's PCMA number");
        assert_eq!(t.packet.ssrc, OUT_B);
        assert_eq!(
            (t.packet.sequence, t.packet.timestamp),
            (100 + i, 16_000 + 160 * u32::from(i)),
            "numbers kept: one 20 ms packet for one"
        );
        let expected: Vec<u8> = payload
            .iter()
            .map(|&u| g711::linear_to_alaw(g711::ulaw_to_linear(u)))
            .collect();
        assert_eq!(&t.packet.payload[..], &expected[..]);
        at_b.extend(g711::decode_alaw(&t.packet.payload));
    }
    assert_eq!(dominant_frequency(&at_b), 1000.0);
    assert!((rms(&at_b) / rms(&tone) - 1.0).abs() < 0.05, "level kept");
    // B → A: A-law in, µ-law out.
    let payload = g711::encode_alaw(&sine(FRAME_SAMPLES, 440.0, 4000.0));
    let t = c.one(
        ms(200),
        LegId::B,
        addr(6000),
        &rtp_with(8, 7, 960, 0x2222, &payload),
    );
    assert_eq!(
        (t.leg, t.packet.payload_type, t.packet.ssrc),
        (LegId::A, 0, OUT_A)
    );
    let expected: Vec<u8> = payload
        .iter()
        .map(|&a| g711::linear_to_ulaw(g711::alaw_to_linear(a)))
        .collect();
    assert_eq!(&t.packet.payload[..], &expected[..]);
    // Telephone-event (8 kHz both sides) is mapped, not transcoded.
    let t = c.one(
        ms(220),
        LegId::A,
        addr(4000),
        &rtp(101, 108, 17_280, 0x1111),
    );
    assert_eq!(t.packet.payload_type, 96);
    assert_eq!(&t.packet.payload[..], &[0x55; 160][..]);
    // Counted: what was transcoded toward each leg.
    let (a, b) = (c.relay.stats(LegId::A), c.relay.stats(LegId::B));
    assert_eq!((b.out_transcoded, b.out_packets), (8, 9));
    assert_eq!((a.out_transcoded, a.out_packets), (1, 1));
    assert_eq!(a.transcode_errors + b.transcode_errors, 0);
    // An empty payload is an error of the transcoder: dropped, counted,
    // and the stream goes on.
    assert!(c
        .send(
            ms(240),
            LegId::A,
            addr(4000),
            &rtp_with(0, 109, 17_440, 0x1111, &[])
        )
        .is_empty());
    assert_eq!(c.relay.stats(LegId::A).transcode_errors, 1);
    let t = c.one(
        ms(260),
        LegId::A,
        addr(4000),
        &rtp_with(0, 110, 17_600, 0x1111, &[0xff; 160]),
    );
    assert_eq!(t.packet.sequence, 110);
    assert!(
        t.packet.payload.iter().all(|&b| b == 0xd5),
        "µ-law 0 is A-law 0"
    );
}

#[test]
fn opus_and_pcmu_legs_are_transcoded_with_the_tone_kept() {
    let mut c = Call::new();
    // A is a browser with opus only (and events at 48 kHz only).
    c.relay.set_leg(
        c.t0,
        LegId::A,
        params(addr(4000), &[(111, Codec::Opus), (110, TE48)]),
    );
    // A → B: 1 s of a 1 kHz tone in opus, the first 10 packets at 48 kHz
    // timestamps from 96,000.
    let tone = sine(50 * FRAME_SAMPLES, 1000.0, 8000.0);
    let opus = packets(Codec::Opus, 111, 0x1111, &tone, 500, 96_000);
    let mut pcm = Vec::new();
    for (i, p) in opus.iter().enumerate() {
        let t = c.one(ms(20 * i as u64), LegId::A, addr(4000), &encoded(p));
        assert_eq!(
            (t.leg, t.packet.payload_type, t.packet.ssrc),
            (LegId::B, 0, OUT_B)
        );
        assert_eq!(t.packet.sequence, 500 + i as u16);
        assert_eq!(
            t.packet.timestamp,
            16_000 + 160 * i as u32,
            "the 48 kHz clock ÷ 6"
        );
        assert_eq!(t.packet.payload.len(), FRAME_SAMPLES, "20 ms of µ-law");
        pcm.extend(g711::decode_ulaw(&t.packet.payload));
    }
    // Past the codec's start-up: the tone, at its level (±25 %), and
    // nothing at the wrong frequency.
    let steady = &pcm[10 * FRAME_SAMPLES..];
    assert_eq!(dominant_frequency(steady), 1000.0);
    let level = goertzel(steady, 1000.0);
    assert!((6000.0..10_000.0).contains(&level), "1 kHz at {level}");
    assert!(goertzel(steady, 500.0) < level / 20.0);

    // B → A: a 440 Hz tone in µ-law becomes opus at A's number, 960 ticks
    // per 20 ms; A's decoder hears 440 Hz.
    let tone = sine(50 * FRAME_SAMPLES, 440.0, 8000.0);
    let ulaw = packets(Codec::Pcmu, 0, 0x2222, &tone, 9000, 320);
    let mut decoder = OpusDecoder::new().expect("decoder");
    let mut frame = [0i16; MAX_PACKET_SAMPLES];
    let mut pcm = Vec::new();
    let mut first_ts = None;
    for (i, p) in ulaw.iter().enumerate() {
        let t = c.one(ms(1000 + 20 * i as u64), LegId::B, addr(6000), &encoded(p));
        assert_eq!(
            (t.leg, t.packet.payload_type, t.packet.ssrc),
            (LegId::A, 111, OUT_A)
        );
        assert_eq!(t.packet.sequence, 9000u16.wrapping_add(i as u16));
        let ts0 = *first_ts.get_or_insert(t.packet.timestamp);
        assert_eq!(t.packet.timestamp.wrapping_sub(ts0), 960 * i as u32);
        assert!(t.packet.payload.len() < 160, "opus, not G.711");
        let n = decoder
            .decode(&t.packet.payload, &mut frame)
            .expect("decode");
        assert_eq!(n, FRAME_SAMPLES);
        pcm.extend_from_slice(&frame[..n]);
    }
    let steady = &pcm[10 * FRAME_SAMPLES..];
    assert_eq!(dominant_frequency(steady), 440.0);
    assert!(goertzel(steady, 440.0) > 5000.0);

    // Events at 8 kHz toward a leg with events at 48 kHz only: rescaled
    // (`telephone_events_cross_clock_rates_rescaled`), not transcoded.
    let dropped = c.relay.stats(LegId::B).dropped_payload_type;
    let t = c.one(ms(2100), LegId::B, addr(6000), &rtp(96, 9050, 8320, 0x2222));
    assert_eq!(t.packet.payload_type, 110);
    assert_eq!(c.relay.stats(LegId::B).dropped_payload_type, dropped);
    assert_eq!(c.relay.stats(LegId::B).out_transcoded, 50);
    assert_eq!(c.relay.stats(LegId::A).out_transcoded, 50);
    // Garbage in the opus payload: refused by the transcoder, counted,
    // nothing sent; the stream goes on.
    let mut rng = crate::core::testutil::Rng::new(7);
    let mut errors = 0;
    for i in 0..200u16 {
        let garbage = rng.mutate(&opus[i as usize % opus.len()].payload);
        let out = c.send(
            ms(2200 + u64::from(i) * 20),
            LegId::A,
            addr(4000),
            &rtp_with(111, 600 + i, 200_000 + 960 * u32::from(i), 0x1111, &garbage),
        );
        errors += usize::from(out.is_empty());
        assert!(out
            .iter()
            .all(|t| t.packet.payload_type == 0 && t.packet.payload.len() % 40 == 0));
    }
    assert_eq!(c.relay.stats(LegId::A).transcode_errors as usize, errors);
    assert!(errors > 0, "some mutations do not decode");
}

#[test]
fn new_codecs_by_set_leg_replace_the_transcoder() {
    let mut c = ulaw_alaw_call();
    let frame = sine(FRAME_SAMPLES, 1000.0, 8000.0);
    let ulaw = g711::encode_ulaw(&frame);
    let send = |c: &mut Call, i: u16| {
        c.one(
            ms(20 * u64::from(i)),
            LegId::A,
            addr(4000),
            &rtp_with(0, i, 160 * u32::from(i), 0x1111, &ulaw),
        )
    };
    let t = send(&mut c, 0);
    assert_eq!((t.packet.payload_type, t.packet.payload.len()), (8, 160));
    // B's re-INVITE: opus only. The next packet is opus at B's number.
    c.relay.set_leg(
        c.at(ms(30)),
        LegId::B,
        params(addr(6000), &[(107, Codec::Opus)]),
    );
    let t = send(&mut c, 2);
    assert_eq!(t.packet.payload_type, 107);
    let mut decoder = OpusDecoder::new().expect("decoder");
    let mut out = [0i16; MAX_PACKET_SAMPLES];
    let n = decoder
        .decode(&t.packet.payload, &mut out)
        .expect("B receives opus");
    assert_eq!(n, FRAME_SAMPLES);
    // PCMA again but at another number: a new transcoder stamps it.
    c.relay.set_leg(
        c.at(ms(50)),
        LegId::B,
        params(addr(6000), &[(100, Codec::Pcma)]),
    );
    let t = send(&mut c, 3);
    assert_eq!((t.packet.payload_type, t.packet.payload.len()), (100, 160));
    // PCMU: passed through untouched, nothing transcoded any more.
    let before = c.relay.stats(LegId::B).out_transcoded;
    c.relay.set_leg(
        c.at(ms(70)),
        LegId::B,
        params(addr(6000), &[(0, Codec::Pcmu)]),
    );
    let t = send(&mut c, 4);
    assert_eq!(t.packet.payload_type, 0);
    assert_eq!(&t.packet.payload[..], &ulaw[..]);
    assert_eq!(c.relay.stats(LegId::B).out_transcoded, before);
    assert_eq!(before, 3);
}

// --- Opus-only legs: hold music, events across clocks, loss ----------------

/// A: an opus-only leg (telephone-event at 48 kHz, as a browser offers);
/// B: PCMU + telephone-event 96 at 8 kHz.
fn opus_pcmu_call() -> Call {
    let mut c = Call::new();
    c.relay.set_leg(
        c.t0,
        LegId::A,
        params(addr(4000), &[(111, Codec::Opus), (110, TE48)]),
    );
    c.relay.set_leg(
        c.t0,
        LegId::B,
        params(addr(6000), &[(0, Codec::Pcmu), (96, TE)]),
    );
    c
}

fn event(code: u8, end: bool, duration: u16) -> [u8; 4] {
    crate::core::dtmf::TelephoneEvent {
        event: code,
        end,
        volume: 10,
        duration,
    }
    .to_bytes()
}

fn parse_event(t: &Transmit) -> crate::core::dtmf::TelephoneEvent {
    crate::core::dtmf::TelephoneEvent::parse(&t.packet.payload).expect("event")
}

#[test]
fn hold_music_toward_an_opus_only_leg_is_opus_carrying_the_tone() {
    let mut c = opus_pcmu_call();
    // B holds A (B: sendonly): A, opus only, hears the hold tone.
    let mut p = params(addr(6000), &[(0, Codec::Pcmu), (96, TE)]);
    p.direction = Direction::SendOnly;
    c.relay.set_leg(c.at(ms(0)), LegId::B, p);
    assert!(c.relay.egress_active(LegId::A));
    let mut music = Vec::new();
    for step in 0..25u64 {
        c.relay.handle_timeout(c.at(ms(20 * step)));
        music.extend(c.drain());
    }
    assert_eq!(music.len(), 25, "a frame every 20 ms for 500 ms");
    assert!(music.iter().all(|t| t.leg == LegId::A
        && t.to == addr(4000)
        && t.packet.payload_type == 111
        && t.packet.ssrc == OUT_A));
    assert!(
        music.windows(2).all(
            |w| w[1].packet.timestamp.wrapping_sub(w[0].packet.timestamp) == 960
                && w[1].packet.sequence == w[0].packet.sequence.wrapping_add(1)
        ),
        "48 kHz clock: 960 ticks per 20 ms"
    );
    let mut decoder = OpusDecoder::new().expect("decoder");
    let mut frame = [0i16; MAX_PACKET_SAMPLES];
    let mut pcm = Vec::new();
    for t in &music {
        assert!(t.packet.payload.len() < 160, "opus, not G.711");
        let n = decoder
            .decode(&t.packet.payload, &mut frame)
            .expect("decodable opus");
        assert_eq!(n, FRAME_SAMPLES);
        pcm.extend_from_slice(&frame[..n]);
    }
    // The tone (440 Hz at about 5,000, on for the first 0.5 s) past the
    // codec's start-up.
    let steady = &pcm[5 * FRAME_SAMPLES..];
    assert_eq!(dominant_frequency(steady), 440.0);
    let level = goertzel(steady, 440.0);
    assert!((3000.0..7000.0).contains(&level), "440 Hz at {level}");
    assert_eq!(c.relay.stats(LegId::A).out_generated, 25);
    // Its encoder follows the loss A's peer reports, like a transcoder.
    assert_eq!(c.relay.egress_expected_loss(LegId::A), Some(10), "default");
    c.relay.set_expected_loss(LegId::A, 0.3);
    assert_eq!(c.relay.egress_expected_loss(LegId::A), Some(30));
    // A G.711 leg still gets G.711 (B held by A the other way round).
    let mut c = opus_pcmu_call();
    let mut p = params(addr(4000), &[(111, Codec::Opus), (110, TE48)]);
    p.direction = Direction::Inactive;
    c.relay.set_leg(c.at(ms(0)), LegId::A, p);
    c.relay.handle_timeout(c.at(ms(0)));
    let out = c.drain();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].leg, out[0].packet.payload_type), (LegId::B, 0));
    assert_eq!(out[0].packet.payload.len(), 160);
}

#[test]
fn telephone_events_cross_clock_rates_rescaled() {
    let mut c = opus_pcmu_call();
    // B → A: µ-law audio becomes opus at 48 kHz...
    let tone = sine(3 * FRAME_SAMPLES, 440.0, 4000.0);
    let ulaw = packets(Codec::Pcmu, 0, 0x2222, &tone, 100, 8000);
    let mut ts0 = None;
    for (i, p) in ulaw.iter().enumerate() {
        let t = c.one(ms(20 * i as u64), LegId::B, addr(6000), &encoded(p));
        ts0.get_or_insert(t.packet.timestamp);
    }
    let ts0 = ts0.expect("audio");
    // ...and its events at 8 kHz become events at 48 kHz: PT 110, the
    // timestamp where the audio's mapping puts it, durations ×6.
    let t = c.one(
        ms(60),
        LegId::B,
        addr(6000),
        &rtp_with(96, 103, 8480, 0x2222, &event(5, false, 800)),
    );
    assert_eq!(
        (t.leg, t.packet.payload_type, t.packet.ssrc),
        (LegId::A, 110, OUT_A)
    );
    assert_eq!(t.packet.timestamp, ts0.wrapping_add(480 * 6));
    assert_eq!(t.packet.sequence, 103);
    let e = parse_event(&t);
    assert_eq!((e.event, e.end, e.volume, e.duration), (5, false, 10, 4800));
    let t = c.one(
        ms(80),
        LegId::B,
        addr(6000),
        &rtp_with(96, 104, 8480, 0x2222, &event(5, true, 1600)),
    );
    assert_eq!(t.packet.timestamp, ts0.wrapping_add(480 * 6), "same event");
    let e = parse_event(&t);
    assert_eq!((e.end, e.duration), (true, 9600));
    // A long event saturates the 16-bit field instead of wrapping.
    let t = c.one(
        ms(100),
        LegId::B,
        addr(6000),
        &rtp_with(96, 105, 20_000, 0x2222, &event(1, false, 20_000)),
    );
    assert_eq!(parse_event(&t).duration, u16::MAX);

    // A → B: opus audio at 48 kHz becomes µ-law; events at 48 kHz
    // become events at 8 kHz, ÷6.
    let tone = sine(3 * FRAME_SAMPLES, 440.0, 4000.0);
    let opus = packets(Codec::Opus, 111, 0x1111, &tone, 700, 96_000);
    let mut ts0 = None;
    for (i, p) in opus.iter().enumerate() {
        let t = c.one(ms(200 + 20 * i as u64), LegId::A, addr(4000), &encoded(p));
        ts0.get_or_insert(t.packet.timestamp);
    }
    let ts0 = ts0.expect("audio");
    let t = c.one(
        ms(260),
        LegId::A,
        addr(4000),
        &rtp_with(110, 703, 96_000 + 2880, 0x1111, &event(9, true, 4800)),
    );
    assert_eq!(
        (t.leg, t.packet.payload_type, t.packet.ssrc),
        (LegId::B, 96, OUT_B)
    );
    assert_eq!(t.packet.timestamp, ts0.wrapping_add(480));
    let e = parse_event(&t);
    assert_eq!((e.event, e.end, e.duration), (9, true, 800));
    assert_eq!(c.relay.stats(LegId::A).dropped_payload_type, 0);
    assert_eq!(c.relay.stats(LegId::B).dropped_payload_type, 0);
}

#[test]
fn injected_digits_use_the_target_legs_event_clock() {
    let mut c = opus_pcmu_call();
    for toward in [LegId::A, LegId::B] {
        assert!(c.relay.send_dtmf(
            c.at(ms(0)),
            toward,
            crate::core::dtmf::Digit::from_char('7').expect("7"),
            ms(100)
        ));
    }
    let mut sent = Vec::new();
    for step in 0..20u64 {
        c.relay.handle_timeout(c.at(ms(10 * step)));
        sent.extend(c.drain());
    }
    for (toward, pt, rate) in [(LegId::A, 110u8, 48_000u32), (LegId::B, 96, 8_000)] {
        let events: Vec<_> = sent.iter().filter(|t| t.leg == toward).collect();
        assert_eq!(events.len(), 4, "start, end ×3: {events:?}");
        assert!(events.iter().all(|t| t.packet.payload_type == pt));
        let last = parse_event(events[3]);
        assert!(last.end);
        assert_eq!(
            u32::from(last.duration),
            rate / 10,
            "100 ms in the leg's event clock"
        );
    }
    // A leg with events only at the clock its audio lacks still gets them
    // in the clock it negotiated.
    let mut c = Call::new();
    c.relay.set_leg(
        c.t0,
        LegId::B,
        params(addr(6000), &[(0, Codec::Pcmu), (97, TE48)]),
    );
    assert!(c.relay.send_dtmf(
        c.t0,
        LegId::B,
        crate::core::dtmf::Digit::from_char('1').expect("1"),
        ms(100)
    ));
}

#[test]
fn reported_loss_maps_to_the_encoders_expected_loss() {
    assert_eq!(expected_loss_percent(0.0), 0);
    assert_eq!(expected_loss_percent(-1.0), 0);
    assert_eq!(expected_loss_percent(f32::NAN), 0);
    assert_eq!(expected_loss_percent(0.004), MIN_FEC_PERCENT);
    assert_eq!(expected_loss_percent(0.253), 25);
    assert_eq!(expected_loss_percent(1.0), 100);
    assert_eq!(expected_loss_percent(7.0), 100);

    let mut c = opus_pcmu_call();
    // A browser (A) reported 50 % before any audio toward it: the
    // transcoder created at B's first packet starts there.
    c.relay.set_expected_loss(LegId::A, 0.5);
    assert_eq!(c.relay.expected_loss(LegId::A), None, "no encoder yet");
    let ulaw = packets(
        Codec::Pcmu,
        0,
        0x2222,
        &sine(FRAME_SAMPLES, 440.0, 4000.0),
        1,
        0,
    );
    c.one(ms(0), LegId::B, addr(6000), &encoded(&ulaw[0]));
    assert_eq!(c.relay.expected_loss(LegId::A), Some(50));
    // Then the reports change it on the running encoder.
    c.relay.set_expected_loss(LegId::A, 0.02);
    assert_eq!(c.relay.expected_loss(LegId::A), Some(MIN_FEC_PERCENT));
    c.relay.set_expected_loss(LegId::A, 0.0);
    assert_eq!(c.relay.expected_loss(LegId::A), Some(0));
    // Toward the G.711 leg there is no opus encoder to tune.
    c.relay.set_expected_loss(LegId::B, 0.5);
    assert_eq!(c.relay.expected_loss(LegId::B), None);

    // A plain opus leg's own RTCP receiver report on our stream (fraction
    // 64/256) sets it; a block about another source does not.
    let rr = |ssrc: u32, fraction_lost: u8| {
        crate::core::rtcp::build_compound(&[crate::core::rtcp::RtcpPacket::ReceiverReport(
            crate::core::rtcp::ReceiverReport {
                ssrc: 0x1111,
                reports: vec![crate::core::rtcp::ReportBlock {
                    ssrc,
                    fraction_lost,
                    ..Default::default()
                }],
            },
        )])
        .expect("rr")
    };
    c.relay.handle_datagram(
        c.at(ms(20)),
        LegId::A,
        Port::Rtcp,
        addr(4001),
        &rr(0x9999, 128),
    );
    assert_eq!(c.relay.expected_loss(LegId::A), Some(0));
    c.relay.handle_datagram(
        c.at(ms(40)),
        LegId::A,
        Port::Rtcp,
        addr(4001),
        &rr(OUT_A, 64),
    );
    assert_eq!(c.relay.expected_loss(LegId::A), Some(25));
}
