//! Anchored WebRTC ↔ plain RTP calls through the real media shell: what
//! one call costs the media thread, and in memory.
//!
//! usage: webrtc_bench -n CALLS [-w WARMUP_S] [-d SECONDS] [-r LOW-HIGH] [-p PEER_THREADS] [-t]
//!
//! `-t`: transcoded calls. The server's browser leg takes opus only, the
//! phone leg PCMU, so the relay decodes and encodes every packet both ways;
//! the browsers send real opus (a tone encoded once at start). Payloads do
//! not survive transcoding, so latency is not measured then: packets that
//! arrive inside the window are counted (loss to about one packet per call
//! at the window's edges).
//!
//! This process is the server side: `shell::start` with one media thread,
//! and per call a session whose leg A is a [`WebRtcLeg`] (installed the way
//! `anchor.rs` does it: the browser's offer answered by `accept_offer`,
//! then `set_webrtc`) and whose leg B is plain PCMU that latches.
//!
//! The far ends run in a child process (this binary with `--peer`), so
//! their CPU and memory are not the server's: per call one str0m instance
//! configured like a browser (full ICE, so controlling; Chrome's audio
//! codecs, opus first; RTP mode) on its own UDP socket, and one plain UDP
//! socket standing for the phone. Both send 20 ms PCMU, 50 packets/s, each
//! way; the calls' send times are spread evenly over the 20 ms. Every
//! payload carries its send time, so the peer measures one-way latency
//! through the server (both ends are in the peer process) and loss.
//!
//! The two processes talk over the child's stdin/stdout: `OFFER <len>` +
//! SDP, answered by `ANSWER <plain port> <len>` + SDP, one call at a time;
//! then the peer reports `CONNECTED`, `START` (after the warm-up), `END`
//! and a `RESULT` line, and the server samples its media thread's CPU
//! (`/proc/self/task/<tid>/schedstat`) and its RSS at those points.
//! Everything on 127.0.0.1. Output: `key=value` lines on stdout.

#[path = "common/speech.rs"]
mod speech;

use media::codec::Codec;
use media::relay::{Direction, LegId, LegParams};
use media::shell::{self, ShellConfig, ShellEvent};
use media::webrtc::{LegOptions, WebRtcConfig, WebRtcLeg, WebRtcSettings};
use std::io::{BufRead, BufReader, Read, Write};
use std::time::Instant;

#[derive(Debug, Clone)]
struct Args {
    calls: usize,
    warmup: u64,
    duration: u64,
    range: (u16, u16),
    peer: bool,
    peer_threads: usize,
    transcode: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        calls: 0,
        warmup: 3,
        duration: 15,
        range: (20_000, 29_999),
        peer: false,
        peer_threads: 2,
        transcode: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(k) = args.next() {
        let mut val = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{k} needs a value"))
        };
        match k.as_str() {
            "-n" => a.calls = val()?.parse()?,
            "-w" => a.warmup = val()?.parse()?,
            "-d" => a.duration = val()?.parse()?,
            "-r" => {
                let v = val()?;
                let (lo, hi) = v
                    .split_once('-')
                    .ok_or_else(|| anyhow::anyhow!("-r LOW-HIGH"))?;
                a.range = (lo.parse()?, hi.parse()?);
            }
            "-p" => a.peer_threads = val()?.parse()?,
            "--peer" => a.peer = true,
            "-t" => a.transcode = true,
            _ => anyhow::bail!(
                "usage: webrtc_bench -n CALLS [-w WARMUP_S] [-d SECONDS] [-r LOW-HIGH] [-p PEER_THREADS] [-t]"
            ),
        }
    }
    anyhow::ensure!(a.calls > 0, "-n CALLS is required");
    // Bounded: the peer stops by itself after this, whatever happens.
    anyhow::ensure!(a.warmup + a.duration <= 120, "at most 120 s per run");
    Ok(a)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    // Two sockets per call in the peer, four in the server.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    if args.peer {
        peer::run(&args)
    } else {
        server(&args)
    }
}

/// Resident set size of this process, KiB.
fn rss_kib() -> anyhow::Result<u64> {
    let s = std::fs::read_to_string("/proc/self/status")?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/self/status"))
}

/// CPU time a thread of this process has run, ns (schedstat's first field).
fn thread_cpu_ns(tid: &str) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))?;
    s.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("bad schedstat for thread {tid}"))
}

/// CPU time of the calling thread, ns.
fn own_thread_cpu_ns() -> anyhow::Result<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    s.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("bad /proc/thread-self/schedstat"))
}

/// CPU time of every thread of this process, ns.
fn process_cpu_ns() -> anyhow::Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir("/proc/self/task")? {
        let tid = e?.file_name().to_string_lossy().into_owned();
        total += thread_cpu_ns(&tid).unwrap_or(0);
    }
    Ok(total)
}

/// The id of the thread named `name` (the shell names its threads `media-N`).
fn find_thread(name: &str) -> anyhow::Result<String> {
    for e in std::fs::read_dir("/proc/self/task")? {
        let tid = e?.file_name().to_string_lossy().into_owned();
        let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))?;
        if comm.trim_end() == name {
            return Ok(tid);
        }
    }
    anyhow::bail!("no thread named {name}")
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

/// Reads `<len>` bytes following a header line.
fn read_blob(r: &mut impl Read, len: usize) -> anyhow::Result<String> {
    anyhow::ensure!(len < 1 << 20, "blob of {len} bytes");
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(String::from_utf8(buf)?)
}

#[derive(Default, Clone, Copy)]
struct Sample {
    media_ns: u64,
    process_ns: u64,
    rss: u64,
    at: Option<Instant>,
}

fn sample(tid: &str) -> anyhow::Result<Sample> {
    Ok(Sample {
        media_ns: thread_cpu_ns(tid)?,
        process_ns: process_cpu_ns()?,
        rss: rss_kib()?,
        at: Some(Instant::now()),
    })
}

fn server(a: &Args) -> anyhow::Result<()> {
    let rss_empty = rss_kib()?;
    let (relay, mut events) = shell::start(ShellConfig {
        port_range: a.range.0..=a.range.1,
        threads: 1,
        ..ShellConfig::default()
    })?;
    let tid = find_thread("media-0")?;
    let webrtc = WebRtcConfig::new(&WebRtcSettings::default())?;
    let base = sample(&tid)?;
    // For a profiler (bench/media/calls.sh attaches perf to this thread).
    eprintln!(
        "webrtc_bench pid={} media_tid={tid} calls={}",
        std::process::id(),
        a.calls
    );

    let exe = std::env::current_exe()?;
    let mut child = std::process::Command::new(exe)
        .args(a.transcode.then_some("-t"))
        .args([
            "--peer",
            "-n",
            &a.calls.to_string(),
            "-w",
            &a.warmup.to_string(),
            "-d",
            &a.duration.to_string(),
            "-p",
            &a.peer_threads.to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let peer_pid = child.id();
    let mut from = BufReader::new(
        child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no peer stdout"))?,
    );
    let mut to = child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no peer stdin"))?;

    let plain = LegParams {
        remote_rtp: None,
        remote_rtcp: None,
        codecs: vec![(0, Codec::Pcmu)],
        direction: Direction::SendRecv,
    };
    let mut answered = 0usize;
    let mut setup_done = None;
    let (mut connected, mut start, mut end) = (None, None, None);
    let mut result = String::new();
    let mut line = String::new();
    let mut setup_role = String::new();
    loop {
        line.clear();
        if from.read_line(&mut line)? == 0 {
            break;
        }
        let mut words = line.split_whitespace();
        match words.next() {
            Some("OFFER") => {
                let len: usize = words.next().unwrap_or("").parse()?;
                let offer = read_blob(&mut from, len)?;
                // What the anchor does for a browser caller facing a phone.
                let s = relay.open_session()?;
                relay.set_leg(s.id, LegId::B, plain.clone())?;
                let options = if a.transcode {
                    LegOptions {
                        port: s.ports[0],
                        codecs: vec![Codec::Opus],
                    }
                } else {
                    LegOptions::g711_first(s.ports[0])
                };
                let mut leg = WebRtcLeg::new(&webrtc, Instant::now(), &options)?;
                let mut answer = leg.accept_offer(&offer)?;
                if a.transcode {
                    // As the anchor answers a browser whose opus becomes G.711.
                    answer = media::webrtc::with_narrowband_opus(&answer);
                }
                if setup_role.is_empty() {
                    setup_role = answer
                        .lines()
                        .find_map(|l| l.strip_prefix("a=setup:"))
                        .unwrap_or("?")
                        .to_string();
                }
                relay.set_webrtc(s.id, LegId::A, Box::new(leg))?;
                write!(to, "ANSWER {} {}\n{answer}", s.ports[1], answer.len())?;
                to.flush()?;
                answered += 1;
                if answered == a.calls {
                    setup_done = Some(sample(&tid)?);
                }
            }
            Some("CONNECTED") => {
                connected = Some(sample(&tid)?);
                println!("peer {}", line.trim_end());
            }
            Some("START") => start = Some(sample(&tid)?),
            Some("END") => end = Some(sample(&tid)?),
            Some("RESULT") => result = line.trim_end().to_string(),
            _ => eprintln!("peer said: {}", line.trim_end()),
        }
    }
    let status = child.wait()?;
    let mut timeouts = 0;
    let mut failed = 0;
    while let Ok(e) = events.try_recv() {
        match e {
            ShellEvent::Media {
                event: media::relay::Event::MediaTimeout { .. },
                ..
            } => timeouts += 1,
            ShellEvent::Failed { .. } => failed += 1,
            _ => {}
        }
    }
    let c = relay.counters();
    let (send_dropped, recv_errors) = (
        c.send_dropped.load(std::sync::atomic::Ordering::Relaxed),
        c.recv_errors.load(std::sync::atomic::Ordering::Relaxed),
    );
    relay.shutdown();
    anyhow::ensure!(status.success(), "peer (pid {peer_pid}) failed: {status}");
    let (Some(setup), Some(conn), Some(start), Some(end)) = (setup_done, connected, start, end)
    else {
        anyhow::bail!("the peer stopped early");
    };

    // The peer's figures: key=value.
    let field = |k: &str| -> f64 {
        result
            .split_whitespace()
            .find_map(|w| w.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let n = a.calls as f64;
    let window = match (start.at, end.at) {
        (Some(s), Some(e)) => e.duration_since(s).as_secs_f64(),
        _ => f64::NAN,
    };
    let media_ns = (end.media_ns - start.media_ns) as f64;
    let process_ns = (end.process_ns - start.process_ns) as f64;
    let forwarded = field("recv_b2p") + field("recv_p2b");
    let per_call_s_us = media_ns / 1e3 / (n * window);
    println!(
        "calls={} window_s={window:.2} media_cpu_pct={:.1} process_cpu_pct={:.1} \
         us_per_call_s={per_call_s_us:.1} calls_per_core={:.0} us_per_pkt={:.2} \
         forwarded_pkts={forwarded} loss_b2p_pct={:.3} loss_p2b_pct={:.3} \
         setup_media_cpu_ms_per_call={:.3} answer_phase_media_cpu_ms={:.1} \
         rss_empty_kib={rss_empty} rss_base_kib={} rss_setup_kib={} rss_start_kib={} rss_media_kib={} \
         kib_per_call_setup={:.1} kib_per_call_media={:.1} \
         media_timeouts={timeouts} failed={failed} send_dropped={send_dropped} \
         recv_errors={recv_errors} dtls_setup_answer={setup_role} transcoded={} loadavg={}",
        a.calls,
        media_ns / 1e7 / window,
        process_ns / 1e7 / window,
        1e6 / per_call_s_us,
        media_ns / 1e3 / forwarded,
        100.0 * (1.0 - field("recv_b2p") / field("sent_b2p")),
        100.0 * (1.0 - field("recv_p2b") / field("sent_p2b")),
        (conn.media_ns - base.media_ns) as f64 / 1e6 / n,
        (setup.media_ns - base.media_ns) as f64 / 1e6,
        base.rss,
        conn.rss,
        start.rss,
        end.rss,
        (conn.rss as f64 - base.rss as f64) / n,
        (end.rss as f64 - base.rss as f64) / n,
        a.transcode,
        loadavg(),
    );
    println!("peer {result}");
    Ok(())
}

/// The far ends: browsers (str0m) and phones (UDP), one process.
mod peer {
    use super::{read_blob, Args};
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    use std::io::{BufRead, Write};
    use std::net::{SocketAddr, UdpSocket};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use str0m::change::SdpAnswer;
    use str0m::format::{Codec as StrCodec, FormatParams};
    use str0m::media::{Direction, Frequency, MediaKind, Mid};
    use str0m::net::{Protocol, Receive};
    use str0m::rtp::RtpWrite;
    use str0m::{Candidate, Event, Input, Output, Rtc};

    const PTIME: Duration = Duration::from_millis(20);
    const PCMU: u8 = 0;
    /// Payload: send time (ns since the peer's epoch, 8 bytes), then a
    /// byte saying whether it was sent inside the measured window.
    const PAYLOAD: usize = 160;

    struct Call {
        /// The payload type the server's answer gave opus (transcoded runs).
        opus_pt: u8,
        rtc: Rtc,
        bsock: UdpSocket,
        baddr: SocketAddr,
        mid: Option<Mid>,
        connected: bool,
        /// str0m's deadline, and the one the heap holds.
        timeout: Instant,
        scheduled: Option<Instant>,
        plain: UdpSocket,
        relay_b: SocketAddr,
        bseq: u64,
        pseq: u16,
        ts: u32,
        ssrc: u32,
    }

    /// One direction's counts inside the window.
    #[derive(Default)]
    struct Dir {
        sent: u64,
        recv: u64,
        lat_us: Vec<u32>,
    }

    struct Peer {
        calls: Vec<Call>,
        epoll: Epoll,
        /// (due, call, what): 0 = send both ways, 1 = str0m timeout.
        heap: BinaryHeap<Reverse<(Instant, u32, u8)>>,
        epoch: Instant,
        window: Option<(Instant, Instant)>,
        sending: bool,
        b2p: Dir,
        p2b: Dir,
        max_lag: Duration,
        buf: Vec<u8>,
        bad: u64,
        /// Transcoded run: the browsers send `opus` (20 ms frames of a tone).
        transcode: bool,
        opus: Arc<Vec<Vec<u8>>>,
    }

    /// Two seconds of a speech-like signal as 20 ms opus frames, as a
    /// browser would send them (a tone would make decoding look cheaper
    /// or dearer than speech does): fullband at 32 kb/s, or, when the
    /// answer says `maxplaybackrate=8000`, narrowband at 12 kb/s (what
    /// Chrome's encoder then does).
    fn opus_frames(narrow: bool) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)?;
        if narrow {
            enc.set_max_bandwidth(opus::Bandwidth::Narrowband)?;
            enc.set_bitrate(opus::Bitrate::Bits(12_000))?;
        } else {
            enc.set_bitrate(opus::Bitrate::Bits(32_000))?;
        }
        let mut frames = Vec::new();
        let mut out = vec![0u8; 1500];
        for pcm in super::speech::speech_like(2, 48_000).chunks_exact(960) {
            let n = enc.encode(pcm, &mut out)?;
            frames.push(out[..n].to_vec());
        }
        Ok(frames)
    }

    /// The payload type of opus in an SDP answer.
    fn opus_pt(sdp: &str) -> Option<u8> {
        sdp.lines().find_map(|l| {
            let (pt, codec) = l.strip_prefix("a=rtpmap:")?.split_once(' ')?;
            codec
                .to_ascii_lowercase()
                .starts_with("opus/")
                .then(|| pt.parse().ok())?
        })
    }

    fn browser(now: Instant, local: SocketAddr) -> anyhow::Result<Rtc> {
        // Like Chrome: opus first, then G.711, telephone-event at both
        // clocks; full ICE (not lite), so the controlling side.
        let mut cfg = Rtc::builder()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_pcmu(true, false)
            .enable_pcma(true, false);
        for (pt, rate) in [
            (110u8, Frequency::FORTY_EIGHT_KHZ),
            (126u8, Frequency::EIGHT_KHZ),
        ] {
            cfg.codec_config().add_config(
                pt.into(),
                None,
                StrCodec::Tele,
                rate,
                None,
                FormatParams::parse_line("0-16"),
            );
        }
        let mut rtc = cfg.build(now);
        let c = Candidate::host(local, "udp")?;
        rtc.add_local_candidate(c)
            .ok_or_else(|| anyhow::anyhow!("candidate refused"))?;
        Ok(rtc)
    }

    fn in_window(w: Option<(Instant, Instant)>, t: Instant) -> bool {
        w.is_some_and(|(s, e)| t >= s && t < e)
    }

    impl Peer {
        fn payload(&self, now: Instant) -> [u8; PAYLOAD] {
            let mut p = [0xffu8; PAYLOAD];
            let ns = now.duration_since(self.epoch).as_nanos() as u64;
            p[..8].copy_from_slice(&ns.to_be_bytes());
            p[8] = u8::from(in_window(self.window, now));
            p
        }

        /// A payload arrived at one end: latency and count. Transcoded,
        /// the payload is not ours any more: counted when it arrives
        /// inside the window.
        fn arrived(
            epoch: Instant,
            window: Option<(Instant, Instant)>,
            transcoded: bool,
            now: Instant,
            payload: &[u8],
            dir: &mut Dir,
        ) -> bool {
            if transcoded {
                if in_window(window, now) {
                    dir.recv += 1;
                }
                return !payload.is_empty();
            }
            if payload.len() < 9 || payload[8] != 1 {
                return payload.len() >= 9;
            }
            let mut ns = [0u8; 8];
            ns.copy_from_slice(&payload[..8]);
            let sent = epoch + Duration::from_nanos(u64::from_be_bytes(ns));
            dir.recv += 1;
            dir.lat_us
                .push(now.saturating_duration_since(sent).as_micros() as u32);
            true
        }

        /// Drains a browser's outputs: transmits go out, RTP is counted.
        fn drain(&mut self, i: usize, now: Instant) -> anyhow::Result<()> {
            let (epoch, window, transcoded) = (self.epoch, self.window, self.transcode);
            let c = &mut self.calls[i];
            loop {
                match c.rtc.poll_output()? {
                    Output::Timeout(t) => {
                        c.timeout = t;
                        break;
                    }
                    Output::Transmit(t) => {
                        // Loss at our own socket is the peer's problem, not
                        // the server's: counted as not received anyway.
                        let _ = c.bsock.send_to(&t.contents, t.destination);
                    }
                    Output::Event(e) => match e {
                        Event::Connected => c.connected = true,
                        Event::MediaAdded(m) => c.mid = Some(m.mid),
                        Event::RtpPacket(p)
                            if !Self::arrived(
                                epoch,
                                window,
                                transcoded,
                                now,
                                &p.payload,
                                &mut self.p2b,
                            ) =>
                        {
                            self.bad += 1;
                        }
                        _ => {}
                    },
                }
            }
            if c.scheduled.is_none_or(|s| c.timeout < s) {
                c.scheduled = Some(c.timeout);
                self.heap.push(Reverse((c.timeout, i as u32, 1)));
            }
            Ok(())
        }

        fn send(&mut self, i: usize, now: Instant) -> anyhow::Result<()> {
            let payload = self.payload(now);
            let counted = payload[8] == 1;
            let c = &mut self.calls[i];
            c.ts = c.ts.wrapping_add(160);
            // Browser → phone, through str0m's SRTP.
            if let Some(mid) = c.mid.filter(|_| c.connected) {
                c.bseq += 1;
                let mut api = c.rtc.direct_api();
                if let Some(stream) = api.stream_tx_by_mid(mid, None) {
                    let (pt, ts, body) = if self.transcode {
                        let frame = &self.opus[(c.bseq % self.opus.len() as u64) as usize];
                        (c.opus_pt, c.ts.wrapping_mul(6), &frame[..])
                    } else {
                        (PCMU, c.ts, &payload[..])
                    };
                    stream.write_rtp(RtpWrite::new(pt.into(), c.bseq.into(), ts, now, body));
                    if counted {
                        self.b2p.sent += 1;
                    }
                }
                self.drain(i, now)?;
                let c = &mut self.calls[i];
                c.rtc.handle_input(Input::Timeout(now))?;
                self.drain(i, now)?;
            }
            // Phone → browser, plain RTP.
            let c = &mut self.calls[i];
            c.pseq = c.pseq.wrapping_add(1);
            let mut pkt = Vec::with_capacity(12 + PAYLOAD);
            pkt.extend_from_slice(&[0x80, PCMU]);
            pkt.extend_from_slice(&c.pseq.to_be_bytes());
            pkt.extend_from_slice(&c.ts.to_be_bytes());
            pkt.extend_from_slice(&c.ssrc.to_be_bytes());
            pkt.extend_from_slice(&payload);
            if c.plain.send_to(&pkt, c.relay_b).is_ok() && counted {
                self.p2b.sent += 1;
            }
            Ok(())
        }

        fn readable(&mut self, token: u64, now: Instant) -> anyhow::Result<()> {
            let i = (token >> 1) as usize;
            if token & 1 == 0 {
                loop {
                    let c = &mut self.calls[i];
                    let (len, from) = match c.bsock.recv_from(&mut self.buf) {
                        Ok(v) => v,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                        Err(e) => return Err(e.into()),
                    };
                    if let Ok(r) = Receive::new(Protocol::Udp, from, c.baddr, &self.buf[..len]) {
                        // A refused datagram is str0m's business.
                        let _ = c.rtc.handle_input(Input::Receive(now, r));
                    }
                    self.drain(i, now)?;
                }
            } else {
                loop {
                    let c = &mut self.calls[i];
                    let len = match c.plain.recv(&mut self.buf) {
                        Ok(v) => v,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                        // ICMP unreachable before the relay latched.
                        Err(_) => return Ok(()),
                    };
                    let d = &self.buf[..len];
                    let ok = len >= 12 && {
                        let cc = usize::from(d[0] & 0x0f);
                        let mut off = 12 + 4 * cc;
                        if d[0] & 0x10 != 0 && len >= off + 4 {
                            off +=
                                4 + 4 * usize::from(u16::from_be_bytes([d[off + 2], d[off + 3]]));
                        }
                        // RTCP from the relay is not media.
                        (200..=207).contains(&d[1])
                            || (off <= len
                                && Self::arrived(
                                    self.epoch,
                                    self.window,
                                    self.transcode,
                                    now,
                                    &d[off..],
                                    &mut self.b2p,
                                ))
                    };
                    if !ok {
                        self.bad += 1;
                    }
                }
            }
        }

        /// Runs the event loop until `end`.
        fn run_until(&mut self, end: Instant) -> anyhow::Result<()> {
            let mut ready = vec![EpollEvent::empty(); 256];
            loop {
                let now = Instant::now();
                if now >= end {
                    return Ok(());
                }
                while let Some(Reverse((at, i, what))) = self.heap.peek().copied() {
                    if at > now {
                        break;
                    }
                    self.heap.pop();
                    let i = i as usize;
                    if what == 0 {
                        if !self.sending {
                            continue;
                        }
                        self.max_lag = self.max_lag.max(now - at);
                        self.send(i, now)?;
                        // The schedule, not the clock: lateness does not drift.
                        self.heap.push(Reverse((at + PTIME, i as u32, 0)));
                    } else {
                        let c = &mut self.calls[i];
                        if c.scheduled != Some(at) {
                            continue;
                        }
                        c.scheduled = None;
                        c.rtc.handle_input(Input::Timeout(now))?;
                        self.drain(i, now)?;
                    }
                }
                let until = self
                    .heap
                    .peek()
                    .map(|Reverse((at, _, _))| *at)
                    .unwrap_or(end)
                    .min(end);
                let ms = until
                    .saturating_duration_since(Instant::now())
                    .as_micros()
                    .div_ceil(1000);
                let timeout = EpollTimeout::try_from(ms as u64).unwrap_or(EpollTimeout::NONE);
                let n = match self.epoll.wait(&mut ready, timeout) {
                    Ok(n) => n,
                    Err(nix::errno::Errno::EINTR) => 0,
                    Err(e) => return Err(e.into()),
                };
                let now = Instant::now();
                for ev in &ready[..n] {
                    self.readable(ev.data(), now)?;
                }
            }
        }
    }

    pub fn run(a: &Args) -> anyhow::Result<()> {
        let hard_stop = Instant::now() + Duration::from_secs(a.warmup + a.duration + 60);
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        let mut out = std::io::stdout().lock();
        let epoch = Instant::now();
        let mut p = Peer {
            calls: Vec::with_capacity(a.calls),
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            heap: BinaryHeap::new(),
            epoch,
            window: None,
            sending: false,
            b2p: Dir::default(),
            p2b: Dir::default(),
            max_lag: Duration::ZERO,
            buf: vec![0u8; 2048],
            bad: 0,
            transcode: a.transcode,
            opus: Arc::new(Vec::new()),
        };
        let mut line = String::new();
        for i in 0..a.calls {
            let now = Instant::now();
            let bsock = UdpSocket::bind("127.0.0.1:0")?;
            bsock.set_nonblocking(true)?;
            let baddr = bsock.local_addr()?;
            let plain = UdpSocket::bind("127.0.0.1:0")?;
            plain.set_nonblocking(true)?;
            let mut rtc = browser(now, baddr)?;
            let mut api = rtc.sdp_api();
            let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
            let (offer, pending) = api
                .apply()
                .ok_or_else(|| anyhow::anyhow!("browser made no offer"))?;
            let offer = offer.to_sdp_string();
            write!(out, "OFFER {}\n{offer}", offer.len())?;
            out.flush()?;
            line.clear();
            input.read_line(&mut line)?;
            let mut w = line.split_whitespace();
            anyhow::ensure!(w.next() == Some("ANSWER"), "expected ANSWER, got {line}");
            let port: u16 = w.next().unwrap_or("").parse()?;
            let len: usize = w.next().unwrap_or("").parse()?;
            let answer = read_blob(&mut input, len)?;
            let opus = opus_pt(&answer);
            anyhow::ensure!(
                !a.transcode || opus.is_some(),
                "the server's answer has no opus: {answer}"
            );
            if a.transcode && p.opus.is_empty() {
                p.opus = Arc::new(opus_frames(answer.contains("maxplaybackrate=8000"))?);
            }
            rtc.sdp_api()
                .accept_answer(pending, SdpAnswer::from_sdp_string(&answer)?)?;
            p.epoll.add(
                &bsock,
                EpollEvent::new(EpollFlags::EPOLLIN, (i as u64) << 1),
            )?;
            p.epoll.add(
                &plain,
                EpollEvent::new(EpollFlags::EPOLLIN, ((i as u64) << 1) | 1),
            )?;
            p.calls.push(Call {
                opus_pt: opus.unwrap_or(111),
                rtc,
                bsock,
                baddr,
                mid: Some(mid),
                connected: false,
                timeout: now,
                scheduled: None,
                plain,
                relay_b: SocketAddr::from(([127, 0, 0, 1], port)),
                bseq: 1000,
                pseq: 0,
                ts: 0,
                ssrc: 0x1000_0000 + i as u32,
            });
            p.drain(i, now)?;
        }
        // ICE + DTLS for every call, bounded.
        let t0 = Instant::now();
        let limit = (t0 + Duration::from_secs(20)).min(hard_stop);
        while Instant::now() < limit && p.calls.iter().any(|c| !c.connected) {
            p.run_until((Instant::now() + Duration::from_millis(50)).min(limit))?;
        }
        let up = p.calls.iter().filter(|c| c.connected).count();
        writeln!(
            out,
            "CONNECTED {up} of {} in {} ms",
            a.calls,
            t0.elapsed().as_millis()
        )?;
        out.flush()?;

        // Media, on several threads: the browsers cost the peer about what
        // the server's legs cost it, and one starved peer thread (other
        // builds share the cores) would make the server's figures the
        // generator's. Send times spread evenly over one ptime.
        let start = Instant::now() + Duration::from_millis(5);
        let w0 = start + Duration::from_secs(a.warmup);
        let w1 = w0 + Duration::from_secs(a.duration);
        let n = a.calls;
        let threads = a.peer_threads.clamp(1, n);
        let mut groups: Vec<Peer> = Vec::new();
        for _ in 0..threads {
            groups.push(Peer {
                calls: Vec::new(),
                epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
                heap: BinaryHeap::new(),
                epoch,
                window: Some((w0, w1)),
                sending: true,
                b2p: Dir::default(),
                p2b: Dir::default(),
                max_lag: Duration::ZERO,
                buf: vec![0u8; 2048],
                bad: p.bad,
                transcode: p.transcode,
                opus: p.opus.clone(),
            });
        }
        for (g, mut c) in std::mem::take(&mut p.calls).into_iter().enumerate() {
            let q = &mut groups[g % threads];
            let i = q.calls.len();
            q.epoll.add(
                &c.bsock,
                EpollEvent::new(EpollFlags::EPOLLIN, (i as u64) << 1),
            )?;
            q.epoll.add(
                &c.plain,
                EpollEvent::new(EpollFlags::EPOLLIN, ((i as u64) << 1) | 1),
            )?;
            let at = start + PTIME * g as u32 / n as u32;
            q.heap.push(Reverse((at, i as u32, 0)));
            c.scheduled = Some(c.timeout);
            q.heap.push(Reverse((c.timeout, i as u32, 1)));
            q.calls.push(c);
        }
        drop(p);
        let workers: Vec<_> = groups
            .into_iter()
            .map(|mut q| {
                std::thread::spawn(move || -> anyhow::Result<(Peer, u64)> {
                    q.run_until(w0.min(hard_stop))?;
                    let cpu0 = super::own_thread_cpu_ns()?;
                    q.max_lag = Duration::ZERO;
                    q.run_until(w1.min(hard_stop))?;
                    let cpu = super::own_thread_cpu_ns()? - cpu0;
                    // Late packets of the window still count for a second.
                    q.sending = false;
                    q.run_until((w1 + Duration::from_secs(1)).min(hard_stop))?;
                    Ok((q, cpu))
                })
            })
            .collect();
        std::thread::sleep(w0.saturating_duration_since(Instant::now()));
        writeln!(out, "START")?;
        out.flush()?;
        std::thread::sleep(w1.saturating_duration_since(Instant::now()));
        writeln!(out, "END")?;
        out.flush()?;
        let mut p = Peer {
            calls: Vec::new(),
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            heap: BinaryHeap::new(),
            epoch,
            window: None,
            sending: false,
            b2p: Dir::default(),
            p2b: Dir::default(),
            max_lag: Duration::ZERO,
            buf: Vec::new(),
            bad: 0,
            transcode: false,
            opus: Arc::new(Vec::new()),
        };
        let mut cpu_ns = 0;
        for w in workers {
            let (q, cpu) = w
                .join()
                .map_err(|_| anyhow::anyhow!("a peer thread panicked"))??;
            cpu_ns += cpu;
            p.b2p.sent += q.b2p.sent;
            p.b2p.recv += q.b2p.recv;
            p.b2p.lat_us.extend(q.b2p.lat_us);
            p.p2b.sent += q.p2b.sent;
            p.p2b.recv += q.p2b.recv;
            p.p2b.lat_us.extend(q.p2b.lat_us);
            p.max_lag = p.max_lag.max(q.max_lag);
            p.bad += q.bad;
        }
        let pct = |v: &mut Vec<u32>, q: f64| -> u32 {
            if v.is_empty() {
                return 0;
            }
            v.sort_unstable();
            v[((v.len() - 1) as f64 * q) as usize]
        };
        let (b50, b99) = (pct(&mut p.b2p.lat_us, 0.5), pct(&mut p.b2p.lat_us, 0.99));
        let (p50, p99) = (pct(&mut p.p2b.lat_us, 0.5), pct(&mut p.p2b.lat_us, 0.99));
        writeln!(
            out,
            "RESULT connected={up} sent_b2p={} recv_b2p={} sent_p2b={} recv_p2b={} \
             p50_b2p_us={b50} p99_b2p_us={b99} p50_p2b_us={p50} p99_p2b_us={p99} \
             peer_max_lag_ms={} peer_cpu_pct={:.1} unparsed={}",
            p.b2p.sent,
            p.b2p.recv,
            p.p2b.sent,
            p.p2b.recv,
            p.max_lag.as_millis(),
            cpu_ns as f64 / 1e7 / a.duration as f64,
            p.bad,
        )?;
        out.flush()?;
        Ok(())
    }
}
