//! The relay as rtpload (`../shared/bench/rtpload`) drives it: N sessions
//! whose legs learn their peers by latching, and a ports file with one
//! `portA portB` line per session.
//!
//! usage: relay_bench -n SESSIONS -o ports.txt [-r 30000-39999] [-t THREADS] [-s SECONDS]
//! Runs for SECONDS (default 120) or until the file `ports.txt.stop` appears,
//! then prints the shell's counters (send drops among them) and exits.

use media::codec::Codec;
use media::relay::{Direction, LegId, LegParams};
use media::shell::{self, ShellConfig};
use std::io::Write;
use std::time::Duration;

fn main() -> anyhow::Result<()> {
    let mut n = 0usize;
    let mut out = None;
    let mut range = (30_000u16, 39_999u16);
    let mut threads = 1usize;
    let mut secs = 120u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))
        };
        match a.as_str() {
            "-n" => n = val()?.parse()?,
            "-o" => out = Some(val()?),
            "-t" => threads = val()?.parse()?,
            "-s" => secs = val()?.parse()?,
            "-r" => {
                let v = val()?;
                let (lo, hi) = v
                    .split_once('-')
                    .ok_or_else(|| anyhow::anyhow!("-r LOW-HIGH"))?;
                range = (lo.parse()?, hi.parse()?);
            }
            _ => anyhow::bail!("usage: relay_bench -n SESSIONS -o ports.txt [-r LOW-HIGH] [-t THREADS] [-s SECONDS]"),
        }
    }
    let out = out.ok_or_else(|| anyhow::anyhow!("-o ports.txt is required"))?;
    anyhow::ensure!(n > 0, "-n SESSIONS is required");
    // Four sockets per session.
    let _ = rlimit::increase_nofile_limit(u64::MAX);

    let (relay, mut events) = shell::start(ShellConfig {
        port_range: range.0..=range.1,
        threads,
        ..ShellConfig::default()
    })?;
    let pcmu = LegParams {
        remote_rtp: None,
        remote_rtcp: None,
        codecs: vec![(0, Codec::Pcmu)],
        direction: Direction::SendRecv,
    };
    let tmp = format!("{out}.tmp");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    for _ in 0..n {
        let s = relay.create_session_blocking()?;
        relay.set_leg(s.id, LegId::A, pcmu.clone())?;
        relay.set_leg(s.id, LegId::B, pcmu.clone())?;
        writeln!(f, "{} {}", s.ports[0], s.ports[1])?;
    }
    f.flush()?;
    drop(f);
    std::fs::rename(&tmp, &out)?;
    eprintln!(
        "relay_bench pid={} sessions={n} threads={threads}",
        std::process::id()
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    let mut latched = 0u64;
    let mut timeouts = 0u64;
    let stop = std::path::PathBuf::from(format!("{out}.stop"));
    while std::time::Instant::now() < deadline && !stop.exists() {
        std::thread::sleep(Duration::from_millis(200));
        while let Ok(e) = events.try_recv() {
            match e {
                shell::ShellEvent::Media {
                    event: media::relay::Event::Latched { .. },
                    ..
                } => latched += 1,
                shell::ShellEvent::Media {
                    event: media::relay::Event::MediaTimeout { .. },
                    ..
                } => timeouts += 1,
                _ => {}
            }
        }
    }
    let c = relay.counters();
    eprintln!(
        "relay_bench latched={latched} media_timeouts={timeouts} send_dropped={} recv_errors={} events_dropped={}",
        c.send_dropped.load(std::sync::atomic::Ordering::Relaxed),
        c.recv_errors.load(std::sync::atomic::Ordering::Relaxed),
        c.events_dropped.load(std::sync::atomic::Ordering::Relaxed),
    );
    relay.shutdown();
    Ok(())
}
