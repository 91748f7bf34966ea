//! Recording and call quality over real UDP on 127.0.0.1: two plain RTP
//! phones send different tones through a recorded session; the stereo WAV
//! must carry each phone's tone on its own channel (customer left), and
//! the closing report must count what each leg sent and lost.

use media::codec::Codec;
use media::core::g711;
use media::core::wav;
use media::packet::RtpPacket;
use media::relay::rtp::write_rtp;
use media::relay::{Direction, LegId, LegParams, RelayConfig};
use media::shell::{self, RecordSpec, ShellConfig, ShellEvent};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::{sleep, timeout};

/// 20 ms of a sine at `hz`, starting at sample `n0`, 8 kHz.
fn tone(hz: f64, n0: usize) -> Vec<i16> {
    (n0..n0 + 160)
        .map(|n| (8000.0 * (2.0 * std::f64::consts::PI * hz * n as f64 / 8000.0).sin()) as i16)
        .collect()
}

fn packet(codec: Codec, pt: u8, seq: u16, ssrc: u32, hz: f64) -> Vec<u8> {
    let pcm = tone(hz, usize::from(seq) * 160);
    let mut payload = Vec::new();
    g711::encode_into(codec, &pcm, &mut payload).expect("G.711");
    let mut v = Vec::new();
    write_rtp(
        &RtpPacket {
            payload_type: pt,
            sequence: seq,
            timestamp: u32::from(seq) * 160,
            ssrc,
            marker: false,
            payload: payload.into(),
        },
        &mut v,
    );
    v
}

/// Zero crossings per second of one channel: about twice the tone's
/// frequency for a pure tone.
fn crossings_per_second(samples: &[i16]) -> f64 {
    let n = samples
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count();
    n as f64 * 8000.0 / samples.len().max(1) as f64
}

fn rms(samples: &[i16]) -> f64 {
    let sum: f64 = samples.iter().map(|s| f64::from(*s).powi(2)).sum();
    (sum / samples.len().max(1) as f64).sqrt()
}

#[tokio::test]
async fn a_recorded_call_has_one_phone_per_channel_and_a_quality_report() {
    let (relay, mut events) = shell::start(ShellConfig {
        port_range: 31_300..=31_399,
        relay: RelayConfig {
            rtp_timeout: Duration::from_secs(30),
            ..RelayConfig::default()
        },
        ..ShellConfig::default()
    })
    .expect("start");
    let s = relay.create_session().await.expect("session");
    let a = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let b = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let relay_a: SocketAddr = (s.ip, s.ports[0]).into();
    let relay_b: SocketAddr = (s.ip, s.ports[1]).into();
    // Both legs take both G.711 laws, so each side's packets pass through
    // unchanged (and the recorder decodes one of each).
    let leg = |remote: SocketAddr| LegParams {
        remote_rtp: Some(remote),
        remote_rtcp: None,
        codecs: vec![(0, Codec::Pcmu), (8, Codec::Pcma)],
        direction: Direction::SendRecv,
    };
    relay
        .set_leg(s.id, LegId::A, leg(a.local_addr().expect("addr")))
        .expect("leg A");
    relay
        .set_leg(s.id, LegId::B, leg(b.local_addr().expect("addr")))
        .expect("leg B");
    let dir = std::env::temp_dir().join(format!("media-recording-{}", std::process::id()));
    let relative = "2026/12/01/call-1.wav".to_string();
    let path = dir.join(&relative);
    relay
        .record(
            s.id,
            RecordSpec {
                path: path.clone(),
                relative: relative.clone(),
                customer: LegId::A,
            },
        )
        .expect("record");

    // 2 s of audio each way, 20 ms apart: A sends 440 Hz in PCMU and
    // loses every 20th packet; B sends 1,000 Hz in PCMA.
    let mut sent_a = 0u64;
    for seq in 0u16..100 {
        if seq % 20 != 7 {
            a.send_to(&packet(Codec::Pcmu, 0, seq, 0xa, 440.0), relay_a)
                .await
                .expect("send A");
            sent_a += 1;
        }
        b.send_to(&packet(Codec::Pcma, 8, seq, 0xb, 1000.0), relay_b)
            .await
            .expect("send B");
        sleep(Duration::from_millis(20)).await;
    }
    relay.destroy(s.id).await.expect("destroy");

    let mut quality = None;
    let mut report = None;
    let deadline = Duration::from_secs(5);
    while report.is_none() {
        match timeout(deadline, events.recv())
            .await
            .expect("events within 5 s")
        {
            Some(ShellEvent::Closed {
                session,
                quality: q,
            }) if session == s.id => quality = Some(q),
            Some(ShellEvent::Recorded { session, report: r }) if session == s.id => {
                assert!(quality.is_some(), "quality comes before the recording");
                report = Some(r.expect("a recording was written"));
            }
            Some(_) => {}
            None => panic!("event stream ended"),
        }
    }
    let [qa, qb] = *quality.expect("quality");
    let qa = qa.expect("leg A quality");
    let qb = qb.expect("leg B quality");
    assert_eq!(qa.codec, Codec::Pcmu);
    assert_eq!(qb.codec, Codec::Pcma);
    let ina = qa.inbound.expect("A inbound");
    assert_eq!(ina.packets, sent_a);
    assert_eq!(ina.lost, 100 - sent_a);
    let inb = qb.inbound.expect("B inbound");
    assert_eq!(inb.packets, 100);
    assert_eq!(inb.lost, 0);
    assert!(inb.mos > ina.mos, "loss costs MOS: {inb:?} vs {ina:?}");
    // What reached each phone was counted as sent to it.
    assert!(qa.outbound.expect("A outbound").packets >= 90);

    let report = report.expect("report");
    assert_eq!(report.relative, relative);
    let bytes = std::fs::read(&path).expect("the WAV file");
    assert_eq!(report.bytes, bytes.len() as u64);
    let info = wav::parse_header(&bytes).expect("a WAV header");
    assert_eq!(info.format.channels, 2);
    assert_eq!(info.format.sample_rate, 8000);
    let data = &bytes[info.data_offset..info.data_offset + info.data_len as usize];
    let samples: Vec<i16> = data
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
    let secs = left.len() as f64 / 8000.0;
    assert!((1.7..=2.6).contains(&secs), "{secs} s recorded");
    assert!(
        (report.duration.as_secs_f64() - secs).abs() < 0.05,
        "{:?} vs {secs}",
        report.duration
    );
    assert!(
        rms(&left) > 2000.0 && rms(&right) > 2000.0,
        "both channels carry audio"
    );
    let (fl, fr) = (crossings_per_second(&left), crossings_per_second(&right));
    // 440 Hz ≈ 880 crossings/s (lost packets are silence), 1,000 Hz ≈ 2,000.
    assert!(
        (700.0..=950.0).contains(&fl),
        "customer channel: {fl} crossings/s"
    );
    assert!(
        (1800.0..=2100.0).contains(&fr),
        "agent channel: {fr} crossings/s"
    );
    let _ = std::fs::remove_dir_all(&dir);
    relay.shutdown();
}
