//! The relay over real UDP on 127.0.0.1: two plain RTP endpoints, the
//! media thread in between. Port ranges sit below Linux's ephemeral range
//! (32768–60999), so sockets other tests bind on port 0 never take them.

use media::codec::Codec;
use media::packet::RtpPacket;
use media::relay::rtp::{parse_rtp, write_rtp};
use media::relay::{Direction, Event, LegId, LegParams, RelayConfig};
use media::shell::{self, ShellConfig, ShellEvent};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::timeout;

const TE8K: Codec = Codec::TelephoneEvent { clock_rate: 8000 };

fn config(range: std::ops::RangeInclusive<u16>, rtp_timeout: Duration) -> ShellConfig {
    ShellConfig {
        port_range: range,
        relay: RelayConfig {
            rtp_timeout,
            ..RelayConfig::default()
        },
        ..ShellConfig::default()
    }
}

fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, tag: u8) -> Vec<u8> {
    let mut v = Vec::new();
    write_rtp(
        &RtpPacket {
            payload_type: pt,
            sequence: seq,
            timestamp: ts,
            ssrc,
            marker: false,
            payload: vec![tag; 160].into(),
        },
        &mut v,
    );
    v
}

fn leg(remote: SocketAddr, codecs: &[(u8, Codec)]) -> LegParams {
    LegParams {
        remote_rtp: Some(remote),
        remote_rtcp: None,
        codecs: codecs.to_vec(),
        direction: Direction::SendRecv,
    }
}

async fn recv(sock: &UdpSocket) -> (RtpPacket, SocketAddr) {
    let mut buf = [0u8; 2048];
    let (n, from) = timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
        .await
        .expect("a packet within 2 s")
        .expect("recv");
    (
        parse_rtp(&buf[..n]).expect("valid RTP from the relay"),
        from,
    )
}

#[tokio::test]
async fn packets_cross_with_continuous_rewritten_headers() {
    let (relay, _events) =
        shell::start(config(31_000..=31_099, Duration::from_secs(30))).expect("start");
    let s = relay.create_session().await.expect("session");
    let a = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let b = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let relay_a: SocketAddr = (s.ip, s.ports[0]).into();
    let relay_b: SocketAddr = (s.ip, s.ports[1]).into();
    relay
        .set_leg(
            s.id,
            LegId::A,
            leg(
                a.local_addr().expect("addr"),
                &[(0, Codec::Pcmu), (101, TE8K)],
            ),
        )
        .expect("leg A");
    relay
        .set_leg(
            s.id,
            LegId::B,
            leg(
                b.local_addr().expect("addr"),
                &[(0, Codec::Pcmu), (96, TE8K)],
            ),
        )
        .expect("leg B");

    // A talks with one SSRC, then (a re-INVITE on A's side) another with
    // unrelated numbers, and one telephone-event packet.
    let mut got = Vec::new();
    for i in 0..10u16 {
        a.send_to(&packet(0, 1000 + i, 160 * u32::from(i), 0x1111, 1), relay_a)
            .await
            .expect("send");
        let (p, from) = recv(&b).await;
        assert_eq!(from, relay_b, "B hears the relay from B's port");
        got.push(p);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for i in 0..10u16 {
        a.send_to(
            &packet(0, 50_000 + i, 7_000_000 + 160 * u32::from(i), 0x2222, 2),
            relay_a,
        )
        .await
        .expect("send");
        got.push(recv(&b).await.0);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.send_to(&packet(101, 50_010, 7_001_600, 0x2222, 3), relay_a)
        .await
        .expect("send");
    let dtmf = recv(&b).await.0;
    assert_eq!(
        dtmf.payload_type, 96,
        "telephone-event mapped to B's number"
    );
    got.push(dtmf);

    let ssrc = got[0].ssrc;
    assert!(got.iter().all(|p| p.ssrc == ssrc), "one SSRC toward B");
    assert_ne!(ssrc, 0x1111);
    for w in got.windows(2) {
        assert_eq!(
            w[1].sequence,
            w[0].sequence.wrapping_add(1),
            "sequence continues"
        );
        assert!(
            w[1].timestamp.wrapping_sub(w[0].timestamp) < 8000,
            "timestamp moves forward by little"
        );
        assert!(w[1].timestamp != w[0].timestamp || w[1].payload_type != w[0].payload_type);
    }
    assert!(got[10].marker && !got[11].marker, "the splice is marked");
    assert_eq!(got[10].payload[0], 2, "payload untouched");

    // And back: B to A.
    b.send_to(&packet(0, 7, 70, 0x3333, 9), relay_b)
        .await
        .expect("send");
    let (p, from) = recv(&a).await;
    assert_eq!(from, relay_a);
    assert_eq!((p.payload_type, p.sequence, p.payload[0]), (0, 7, 9));

    let stats = relay.destroy(s.id).await.expect("destroy");
    assert_eq!(stats[0].in_packets, 21);
    assert_eq!(stats[1].out_packets, 21);
    assert_eq!(stats[1].out_resyncs, 1);
    assert!(relay.destroy(s.id).await.is_err(), "gone");
    relay.shutdown();
}

#[tokio::test]
async fn a_nat_source_is_latched_and_media_timeout_is_reported() {
    let (relay, mut events) =
        shell::start(config(31_100..=31_199, Duration::from_millis(600))).expect("start");
    let s = relay.create_session().await.expect("session");
    let phone = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let b = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let relay_a: SocketAddr = (s.ip, s.ports[0]).into();
    let relay_b: SocketAddr = (s.ip, s.ports[1]).into();
    // A's SDP names a private address nobody listens on (behind NAT).
    let private: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    relay
        .set_leg(s.id, LegId::A, leg(private, &[(0, Codec::Pcmu)]))
        .expect("leg A");
    relay
        .set_leg(
            s.id,
            LegId::B,
            leg(b.local_addr().expect("addr"), &[(0, Codec::Pcmu)]),
        )
        .expect("leg B");
    for i in 0..4u16 {
        phone
            .send_to(&packet(0, i, 160 * u32::from(i), 0x4444, 1), relay_a)
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Probation: the 4th packet latches and is the first one relayed.
    let (p, _) = recv(&b).await;
    assert_eq!(p.sequence, 3);
    let ev = timeout(Duration::from_secs(2), events.recv())
        .await
        .expect("event")
        .expect("open");
    assert_eq!(
        ev,
        ShellEvent::Media {
            session: s.id,
            event: Event::Latched {
                leg: LegId::A,
                addr: phone.local_addr().expect("addr")
            }
        }
    );
    // B's media now reaches the phone at its real address.
    b.send_to(&packet(0, 1, 0, 0x5555, 7), relay_b)
        .await
        .expect("send");
    assert_eq!(recv(&phone).await.0.payload[0], 7);

    // Both fall silent: after 600 ms each leg times out.
    let mut timed_out = Vec::new();
    while timed_out.len() < 2 {
        match timeout(Duration::from_secs(3), events.recv())
            .await
            .expect("timeout event")
            .expect("open")
        {
            ShellEvent::Media {
                event: Event::MediaTimeout { leg },
                session,
            } => {
                assert_eq!(session, s.id);
                timed_out.push(leg);
            }
            // B's source is learned (from its SDP address) on its first packet.
            ShellEvent::Media {
                event: Event::Latched { leg: LegId::B, .. },
                ..
            } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    timed_out.sort_by_key(|l| l.index());
    assert_eq!(timed_out, vec![LegId::A, LegId::B]);
    relay.destroy(s.id).await.expect("destroy");
    relay.shutdown();
}

#[tokio::test]
async fn ports_come_from_the_range_and_are_reused() {
    let (relay, _events) =
        shell::start(config(31_200..=31_207, Duration::from_secs(30))).expect("start");
    // Four pairs: exactly two sessions.
    let s1 = relay.create_session().await.expect("first");
    let s2 = relay.create_session().await.expect("second");
    for p in s1.ports.iter().chain(&s2.ports) {
        assert!((31_200..=31_206).contains(p) && p % 2 == 0, "{p}");
    }
    assert!(relay.create_session().await.is_err(), "range exhausted");
    relay.destroy(s1.id).await.expect("destroy");
    let s3 = relay.create_session().await.expect("ports reused");
    let mut a = s1.ports;
    let mut b = s3.ports;
    a.sort();
    b.sort();
    assert_eq!(a, b);
    relay.shutdown();
}
