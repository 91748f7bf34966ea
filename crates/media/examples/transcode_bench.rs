//! CPU cost of transcoding, per 20 ms frame and per call.
//!
//! `cargo run --release -p media --example transcode_bench [seconds]`
//!
//! Feeds `seconds` (default 60) of a speech-like signal through the two
//! transcoders of a call (opus → PCMU toward the phone, PCMU → opus toward
//! the browser) and reports µs of this thread's CPU time per frame
//! (`/proc/thread-self/schedstat`, so time the scheduler gave to the other
//! builds on this shared machine is not counted; the best of 3 runs), then
//! transcoded calls per core. The opus input is what a browser sends:
//! libopus at 48 kHz, VoIP, 32 kb/s, decoded by the transcoder at 8 kHz.
//! The PCMU → opus cost is also shown per encoder complexity. A report,
//! not a test: nothing here asserts.

use std::time::Instant;

use anyhow::{Context, Result};
use bytes::Bytes;
use media::codec::Codec;
use media::core::egress::{Packetizer, FRAME_SAMPLES};
use media::core::opus::OpusSettings;
use media::core::transcode::Transcoder;
use media::packet::RtpPacket;

#[path = "common/speech.rs"]
mod speech;
use speech::speech_like;

/// CPU time of the calling thread, in ns (Linux schedstat: on-CPU time).
fn thread_cpu_ns() -> Result<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat")
        .context("reading /proc/thread-self/schedstat")?;
    s.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .context("parsing /proc/thread-self/schedstat")
}

/// Best of 3: µs of CPU per input packet for `t` over `input`.
fn measure(
    mut make: impl FnMut() -> Result<Transcoder>,
    input: &[RtpPacket],
) -> Result<(f64, f64)> {
    let mut best = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        let mut t = make()?;
        let mut out = Vec::with_capacity(4);
        let (cpu0, wall0) = (thread_cpu_ns()?, Instant::now());
        for p in input {
            out.clear();
            t.push(p, &mut out)?;
        }
        let cpu = (thread_cpu_ns()? - cpu0) as f64 / 1_000.0 / input.len() as f64;
        let wall = wall0.elapsed().as_secs_f64() * 1e6 / input.len() as f64;
        best = (best.0.min(cpu), best.1.min(wall));
    }
    Ok(best)
}

/// PCMU → opus (`settings`) → PCMU against the input, aligned on the
/// codec delay: a rough quality figure to compare settings by (SILK shapes
/// its noise for the ear, so the absolute value says little).
fn round_trip_snr(pcm: &[i16], pcmu: &[RtpPacket], settings: &OpusSettings) -> Result<f64> {
    let mut up = Transcoder::new(Codec::Pcmu, Codec::Opus, 111, settings)?;
    let mut down = Transcoder::new(Codec::Opus, Codec::Pcmu, 0, settings)?;
    let (mut opus, mut back) = (Vec::new(), Vec::new());
    for p in pcmu {
        up.push(p, &mut opus)?;
    }
    for p in &opus {
        down.push(p, &mut back)?;
    }
    let mut out = Vec::new();
    for p in &back {
        media::core::g711::decode_into(Codec::Pcmu, &p.payload, &mut out)?;
    }
    // The opus encoder's VoIP high-pass takes out the lowest harmonics;
    // compare the telephone band (above 300 Hz) only.
    let (pcm, out) = (high_pass(pcm), high_pass(&out));
    let mut best = f64::MIN;
    for lag in 0..200 {
        let (mut signal, mut noise) = (0.0f64, 0.0f64);
        for (a, b) in pcm[8_000..pcm.len() - 400].iter().zip(&out[8_000 + lag..]) {
            signal += f64::from(*a).powi(2);
            noise += (f64::from(*a) - f64::from(*b)).powi(2);
        }
        best = best.max(10.0 * (signal / noise.max(1.0)).log10());
    }
    Ok(best)
}

/// A 2nd-order Butterworth high-pass at 300 Hz (8 kHz, RBJ biquad).
fn high_pass(x: &[i16]) -> Vec<i16> {
    let w = 2.0 * std::f64::consts::PI * 300.0 / 8_000.0;
    let alpha = w.sin() / (2.0 * std::f64::consts::FRAC_1_SQRT_2);
    let a0 = 1.0 + alpha;
    let b = [
        (1.0 + w.cos()) / 2.0 / a0,
        -(1.0 + w.cos()) / a0,
        (1.0 + w.cos()) / 2.0 / a0,
    ];
    let a = [-2.0 * w.cos() / a0, (1.0 - alpha) / a0];
    let (mut x1, mut x2, mut y1, mut y2) = (0.0, 0.0, 0.0, 0.0);
    x.iter()
        .map(|&v| {
            let v = f64::from(v);
            let y = b[0] * v + b[1] * x1 + b[2] * x2 - a[0] * y1 - a[1] * y2;
            (x2, x1, y2, y1) = (x1, v, y1, y);
            y as i16
        })
        .collect()
}

fn main() -> Result<()> {
    let seconds: usize = match std::env::args().nth(1) {
        Some(s) => s.parse().context("seconds")?,
        None => 60,
    };
    let settings = OpusSettings::default();

    // PCMU input, as a phone sends it.
    let pcm = speech_like(seconds, 8_000);
    let mut packetizer = Packetizer::new(Codec::Pcmu, 0, 1, 0, 0, &settings)?;
    let mut pcmu = Vec::new();
    for chunk in pcm.chunks_exact(FRAME_SAMPLES) {
        let mut frame = [0; FRAME_SAMPLES];
        frame.copy_from_slice(chunk);
        pcmu.push(packetizer.packetize(&frame)?);
    }

    // Opus input, as a browser sends it: 48 kHz, 20 ms, 32 kb/s.
    let wide = speech_like(seconds, 48_000);
    let mut encoder = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)?;
    encoder.set_bitrate(opus::Bitrate::Bits(32_000))?;
    encoder.set_inband_fec(true)?;
    encoder.set_packet_loss_perc(5)?;
    let mut buf = [0u8; 4_000];
    let mut browser = Vec::new();
    for (i, frame) in wide.chunks_exact(960).enumerate() {
        let n = encoder.encode(frame, &mut buf)?;
        browser.push(RtpPacket {
            payload_type: 111,
            sequence: i as u16,
            timestamp: 960 * i as u32,
            ssrc: 2,
            marker: false,
            payload: Bytes::copy_from_slice(&buf[..n]),
        });
    }

    println!(
        "transcode_bench: {} frames of 20 ms per run ({seconds} s), best of 3, CPU µs per frame",
        pcmu.len()
    );
    let (down, down_wall) = measure(
        || Ok(Transcoder::new(Codec::Opus, Codec::Pcmu, 0, &settings)?),
        &browser,
    )?;
    println!("  opus (browser, 48 kHz 32 kb/s) -> PCMU   {down:6.1} µs  (wall {down_wall:.1})");
    let mut up = 0.0;
    for (complexity, fec) in [
        (0u8, true),
        (1, true),
        (2, true),
        (3, true),
        (3, false),
        (5, true),
        (9, true),
    ] {
        let s = OpusSettings {
            complexity,
            fec,
            ..settings
        };
        let (cpu, wall) = measure(
            || Ok(Transcoder::new(Codec::Pcmu, Codec::Opus, 111, &s)?),
            &pcmu,
        )?;
        let snr = round_trip_snr(&pcm, &pcmu, &s)?;
        let default = if complexity == settings.complexity && fec == settings.fec {
            up = cpu;
            "  <- default"
        } else {
            ""
        };
        println!(
            "  PCMU -> opus (complexity {complexity}, {} kb/s, FEC {})  {cpu:6.1} µs  (wall {wall:.1}; round trip SNR {snr:.1} dB){default}",
            settings.bitrate / 1_000,
            if fec { "on " } else { "off" }
        );
    }
    let (g711, _) = measure(
        || Ok(Transcoder::new(Codec::Pcmu, Codec::Pcma, 8, &settings)?),
        &pcmu,
    )?;
    println!("  PCMU -> PCMA                              {g711:6.1} µs");
    // A call: 50 frames per second in each direction.
    let per_call_ms = 50.0 * (down + up) / 1_000.0;
    println!(
        "one transcoded call (both directions, default settings): {per_call_ms:.2} ms CPU per second \
         => {:.0} calls per core (codec work only; the relay's packet I/O comes on top)",
        1_000.0 / per_call_ms
    );
    Ok(())
}
