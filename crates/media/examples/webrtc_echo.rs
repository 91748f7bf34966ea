//! A browser talks to one `WebRtcLeg` and hears itself: the smallest real
//! Chromium ↔ str0m check (tests/e2e/webrtc-echo.test.mjs drives it).
//!
//! - `GET /` serves a page that offers audio from the (fake) microphone;
//! - `POST /offer` takes the browser's SDP offer and answers with a new leg
//!   (`?codecs=g711` puts PCMU first, the default puts opus first);
//! - every RTP packet a leg receives is sent back to its browser unchanged;
//!   RFC 4733 events are also printed (`telephone-event N`), once per event.
//!
//! Only std: one thread, one UDP port shared by every leg and demultiplexed by
//! ICE ufrag then source address, a non-blocking HTTP listener, both on
//! 127.0.0.1. It exits by itself after `--max-secs` (default 120).
//!
//! Run: `cargo run -p media --example webrtc_echo`; it prints the page's URL.

use std::collections::{HashMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use media::codec::Codec;
use media::webrtc::{
    LegOptions, WebRtcConfig, WebRtcDemux, WebRtcEvent, WebRtcLeg, WebRtcSettings,
};

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>webrtc echo</title>
<p id="state">idle</p>
<script>
window.start = async (codecs) => {
  const pc = new RTCPeerConnection();
  window.pc = pc;
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  for (const track of stream.getTracks()) pc.addTrack(track, stream);
  pc.ontrack = (e) => {
    const audio = new Audio();
    audio.srcObject = e.streams[0] ?? new MediaStream([e.track]);
    audio.play().catch(() => {});
  };
  pc.onconnectionstatechange = () => {
    document.getElementById('state').textContent = pc.connectionState;
  };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && resolve();
    setTimeout(resolve, 3000);
  });
  const res = await fetch('/offer?codecs=' + codecs, { method: 'POST', body: pc.localDescription.sdp });
  const answer = await res.text();
  if (!res.ok) throw new Error('offer refused: ' + answer);
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  return answer;
};
</script>
"#;

struct Echo {
    config: WebRtcConfig,
    udp: UdpSocket,
    udp_addr: SocketAddr,
    legs: HashMap<u64, WebRtcLeg>,
    demux: WebRtcDemux<u64>,
    next_key: u64,
    dtmf_reported: HashSet<(u64, u32)>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let max_secs: u64 = std::env::args()
        .skip_while(|a| a != "--max-secs")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let http = TcpListener::bind("127.0.0.1:0")?;
    http.set_nonblocking(true)?;
    let udp = UdpSocket::bind("127.0.0.1:0")?;
    let udp_addr = udp.local_addr()?;
    let settings = WebRtcSettings {
        addresses: vec![udp_addr.ip()],
        stats_interval: Duration::from_secs(1),
    };
    let config = WebRtcConfig::new(&settings).map_err(|e| e.to_string())?;
    let mut echo = Echo {
        config,
        udp,
        udp_addr,
        legs: HashMap::new(),
        demux: WebRtcDemux::new(),
        next_key: 0,
        dtmf_reported: HashSet::new(),
    };
    println!("webrtc_echo listening on http://{}/", http.local_addr()?);
    std::io::stdout().flush()?;

    let start = Instant::now();
    let mut buf = vec![0u8; 2048];
    while start.elapsed() < Duration::from_secs(max_secs) {
        match http.accept() {
            Ok((stream, _)) => {
                if let Err(e) = echo.serve_http(stream) {
                    eprintln!("http: {e}");
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => eprintln!("accept: {e}"),
        }

        // Sleep in recv until the earliest leg deadline, 20 ms at most so
        // the HTTP listener stays responsive.
        let now = Instant::now();
        let wait = echo
            .legs
            .values()
            .filter_map(WebRtcLeg::poll_timeout)
            .min()
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(20))
            .clamp(Duration::from_millis(1), Duration::from_millis(20));
        echo.udp.set_read_timeout(Some(wait))?;
        match echo.udp.recv_from(&mut buf) {
            Ok((n, from)) => {
                let now = Instant::now();
                let key = echo.demux.route(from, &buf[..n]).copied();
                match key.and_then(|k| echo.legs.get_mut(&k)) {
                    Some(leg) => leg.handle_receive(now, from, echo.udp_addr, &buf[..n]),
                    None => eprintln!("dropped {n} bytes from {from}: no leg"),
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => eprintln!("udp: {e}"),
        }
        echo.service(Instant::now());
    }
    println!("webrtc_echo: --max-secs reached, exiting");
    Ok(())
}

impl Echo {
    /// Timers, datagrams out, events (and the echo itself) for every leg.
    /// Fine for a demo; the real shell keeps a deadline heap instead.
    fn service(&mut self, now: Instant) {
        let mut dead = Vec::new();
        for (key, leg) in self.legs.iter_mut() {
            if leg.poll_timeout().is_some_and(|t| t <= now) {
                leg.handle_timeout(now);
            }
            for _ in 0..64 {
                let mut echoes = Vec::new();
                while let Some(event) = leg.poll_event() {
                    match event {
                        WebRtcEvent::Rtp { packet, codec } => {
                            // RFC 4733: report each event once, on its end packet.
                            if let Codec::TelephoneEvent { clock_rate } = codec {
                                // The end packet is sent three times: same timestamp.
                                let end = packet.payload.get(1).is_some_and(|b| b & 0x80 != 0);
                                if end && self.dtmf_reported.insert((*key, packet.timestamp)) {
                                    println!(
                                        "leg {key}: telephone-event {} at {clock_rate} Hz",
                                        packet.payload.first().copied().unwrap_or(255)
                                    );
                                }
                            }
                            echoes.push(packet)
                        }
                        WebRtcEvent::Failed { reason } => {
                            println!("leg {key} failed: {reason}");
                            dead.push(*key);
                        }
                        WebRtcEvent::Closed => dead.push(*key),
                        other => println!("leg {key}: {other:?}"),
                    }
                }
                for packet in echoes {
                    if let Err(e) = leg.send_rtp(now, packet) {
                        eprintln!("leg {key}: echo not sent: {e}");
                    }
                }
                let mut sent = false;
                while let Some(t) = leg.poll_transmit() {
                    sent = true;
                    self.demux.learn(t.destination, key);
                    if let Err(e) = self.udp.send_to(&t.contents, t.destination) {
                        eprintln!("send to {}: {e}", t.destination);
                    }
                }
                if !sent {
                    break;
                }
            }
        }
        for key in dead {
            self.legs.remove(&key);
            self.demux.remove(&key);
        }
    }

    fn serve_http(&mut self, mut stream: TcpStream) -> std::io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut data = Vec::new();
        let mut chunk = [0u8; 4096];
        let header_end = loop {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            data.extend_from_slice(&chunk[..n]);
            if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if data.len() > 64 * 1024 {
                return respond(
                    &mut stream,
                    "413 Payload Too Large",
                    "text/plain",
                    "too big",
                );
            }
        };
        let head = String::from_utf8_lossy(&data[..header_end]).into_owned();
        let length: usize = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0)
            .min(64 * 1024);
        while data.len() < header_end + length {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            data.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&data[header_end..]).into_owned();
        let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
        if head.starts_with("GET / ") {
            return respond(&mut stream, "200 OK", "text/html; charset=utf-8", PAGE);
        }
        if head.starts_with("POST /offer") {
            let options = if target.contains("codecs=g711") {
                LegOptions::g711_first(self.udp_addr.port())
            } else {
                LegOptions::opus_first(self.udp_addr.port())
            };
            let mut leg = match WebRtcLeg::new(&self.config, Instant::now(), &options) {
                Ok(leg) => leg,
                Err(e) => {
                    return respond(
                        &mut stream,
                        "500 Internal Server Error",
                        "text/plain",
                        &e.to_string(),
                    )
                }
            };
            let answer = match leg.accept_offer(&body) {
                Ok(answer) => answer,
                Err(e) => {
                    return respond(&mut stream, "400 Bad Request", "text/plain", &e.to_string())
                }
            };
            let key = self.next_key;
            self.next_key += 1;
            if !self.demux.insert(key, leg.local_ufrag()) {
                return respond(
                    &mut stream,
                    "503 Service Unavailable",
                    "text/plain",
                    "ufrag clash",
                );
            }
            let pts: Vec<_> = leg.payload_types().collect();
            println!(
                "leg {key}: answered, ufrag {}, payload types {pts:?}",
                leg.local_ufrag()
            );
            self.legs.insert(key, leg);
            return respond(&mut stream, "200 OK", "application/sdp", &answer);
        }
        respond(&mut stream, "404 Not Found", "text/plain", "not found")
    }
}

fn respond(stream: &mut TcpStream, status: &str, kind: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}
