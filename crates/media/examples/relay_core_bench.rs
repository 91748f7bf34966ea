//! CPU cost of the relay core alone (no sockets): N calls, packets fed
//! round-robin as a relay under load sees them, each forwarded packet
//! encoded as the shell would. Prints ns per packet.
//!
//! usage: relay_core_bench [CALLS=1000] [PACKETS=5000000]

use media::codec::Codec;
use media::packet::RtpPacket;
use media::relay::rtp::write_rtp;
use media::relay::{Direction, LegId, LegParams, Port, Relay, RelayConfig};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let calls: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let packets: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(5_000_000);
    let t0 = Instant::now();
    let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let mut relays: Vec<Relay> = (0..calls)
        .map(|i| {
            let mut r = Relay::new(t0, RelayConfig::default(), [i as u32, !(i as u32)]);
            for (leg, port) in [(LegId::A, 10_000), (LegId::B, 20_000)] {
                r.set_leg(
                    t0,
                    leg,
                    LegParams {
                        remote_rtp: Some(addr(port + i as u16)),
                        remote_rtcp: None,
                        codecs: vec![
                            (0, Codec::Pcmu),
                            (101, Codec::TelephoneEvent { clock_rate: 8000 }),
                        ],
                        direction: Direction::SendRecv,
                    },
                );
            }
            r
        })
        .collect();
    let mut pkt = Vec::new();
    let mut out = Vec::with_capacity(2048);
    let mut bytes = 0usize;
    let start = Instant::now();
    for n in 0..packets {
        let call = n % calls;
        let round = (n / calls) as u16;
        let leg = if round.is_multiple_of(2) {
            LegId::A
        } else {
            LegId::B
        };
        let from = addr(if leg == LegId::A { 10_000 } else { 20_000 } + call as u16);
        write_rtp(
            &RtpPacket {
                payload_type: 0,
                sequence: round / 2,
                timestamp: u32::from(round / 2) * 160,
                ssrc: 7,
                marker: false,
                payload: bytes::Bytes::from_static(&[0xff; 160]),
            },
            &mut pkt,
        );
        let now = t0 + Duration::from_micros(n as u64 * 10);
        let r = &mut relays[call];
        r.handle_datagram(now, leg, Port::Rtp, from, &pkt);
        while let Some(t) = r.poll_transmit() {
            t.encode(&mut out);
            bytes += out.len();
        }
        while r.poll_event().is_some() {}
        std::hint::black_box(r.poll_timeout());
    }
    let el = start.elapsed();
    println!(
        "calls={calls} packets={packets} ns_per_packet={:.0} (incl. building the input) out_bytes={bytes}",
        el.as_nanos() as f64 / packets as f64
    );
}
