//! Opus at 8 kHz: the one place that touches the opus binding, so the
//! transcoder and the egress packetizer share one set of settings and the
//! binding can be swapped without touching them.
//!
//! # Why `opus` 0.3.1 on Debian's libopus
//!
//! Measured on this 2-core machine (release build, fresh target directory,
//! 60 s of a speech-like signal in 20 ms frames at 8 kHz, FEC requested;
//! libopus at its automatic bit rate, about 9.5 kb/s, opus-rs at 16 kb/s):
//!
//! | crate | cold build | encode µs/frame (complexity 0 / 3 / 5 / 10) | decode µs/frame |
//! |---|---|---|---|
//! | `opus` 0.3.1 + `libopus-dev` 1.3.1 | 3.7 s (no C compiled) | 28 / 51 / 64 / 116 | 6.1 |
//! | `opus-rs` 0.1.40 (pure Rust) | 11.4 s | 27 / 48 / 68 / 120 | 7.0 |
//!
//! Both build on a fresh Debian machine; the speed is the same. libopus wins
//! on what cannot be measured in a minute: it is the reference decoder that
//! every browser's opus was tested against, fuzzed continuously upstream and
//! patched by Debian's security team, while `opus-rs` is a young port
//! (0.1.x, several releases a month) whose 8 kHz output of a browser-like
//! 48 kHz hybrid stream differs from libopus's by 16 dB SNR (a 4-sample
//! delay difference plus something else not investigated). The media path
//! decodes whatever a browser sends; the reference is the safe choice.
//! `opus` 0.4 builds libopus from source with cmake (not installed on CI,
//! and a C build on every cold CI run); the 0.3 line's `audiopus_sys` finds
//! the system library through pkg-config and compiles nothing. The cost is
//! one Debian package: `libopus-dev` to build (`.ci/run` installs it),
//! `libopus0` to run. Without `libopus-dev`, `audiopus_sys` falls back to
//! a cmake build and fails with a cmake error.
//!
//! # Rates
//!
//! libopus encodes from and decodes to 8 kHz itself (one of the five rates
//! `opus_encoder_create`/`opus_decoder_create` accept), so opus ↔ G.711
//! needs no resampler. The RTP clock of opus stays 48 kHz (RFC 7587): six
//! ticks per 8 kHz sample, 960 per 20 ms frame.

use bytes::Bytes;

/// The RTP clock of opus (RFC 7587), whatever the audio bandwidth.
pub const OPUS_CLOCK: u32 = 48_000;
/// The PCM rate the media core works at.
pub const PCM_RATE: u32 = 8_000;
/// Opus RTP ticks per 8 kHz sample.
pub const TICKS_PER_SAMPLE: u32 = OPUS_CLOCK / PCM_RATE;
/// The longest opus packet (120 ms) in 8 kHz samples: the decode buffer.
pub const MAX_PACKET_SAMPLES: usize = 960;
/// The largest opus packet libopus produces (RFC 6716 §3.4: 1275 bytes per
/// frame, three frames in a 60 ms packet).
const MAX_PACKET_BYTES: usize = 4_000;

#[derive(Debug, thiserror::Error)]
pub enum OpusError {
    #[error("opus: {0}")]
    Codec(#[from] opus::Error),
    #[error("an opus packet has at least one byte (the TOC)")]
    EmptyPacket,
    #[error("{0} samples is not an opus frame at 8 kHz (10, 20, 40 or 60 ms)")]
    FrameSize(usize),
}

/// Encoder settings. The defaults are what a transcoded call toward a
/// browser needs; `complexity` is the knob that trades CPU for quality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusSettings {
    /// 0..=10. 1 by default, for the budget: 240 transcoded calls per core
    /// leave about 83 µs of CPU per 20 ms for both directions, the relay's
    /// packet I/O included. Measured here (`examples/transcode_bench.rs`,
    /// 32 kb/s, FEC on): PCMU → opus costs 37 µs per frame at complexity 1,
    /// 66 µs at 2 (where SILK's delayed-decision quantiser starts), 72 at
    /// 3, 164 at libopus's default of 9; opus → PCMU 20 µs. The round
    /// trip's waveform SNR above 300 Hz is the same at every level (12.3
    /// dB: the higher levels shape noise for the ear, which this cannot
    /// measure). Raise it where few calls are transcoded.
    pub complexity: u8,
    /// Target bit rate in bit/s. 32 kb/s by default, half of G.711's 64
    /// and about what browsers send: narrowband speech alone needs about
    /// 16, but libopus 1.3.1 adds in-band FEC only from about 20 kb/s at
    /// 8 kHz (at 16 and 18 kb/s a lost frame came back as plain PLC; the
    /// test `fec_recovers_the_content_of_a_lost_frame` checks it), and the
    /// FEC takes its share of the rate.
    pub bitrate: u32,
    /// In-band FEC (LBRR): each packet carries a coarse copy of the previous
    /// one, which the receiver's decoder uses when a packet is lost.
    pub fec: bool,
    /// The loss the encoder plans FEC for, in percent: libopus sends no
    /// LBRR at 0 %, and at complexity 0 and 1 it sent none for the test's
    /// frame at 5 % either (it did at 10 %, and at 5 % from complexity 2
    /// up). 10 % by default; the call can follow the browser's receiver
    /// reports with [`OpusEncoder::set_expected_loss`].
    pub expected_loss_percent: u8,
}

impl Default for OpusSettings {
    fn default() -> Self {
        OpusSettings {
            complexity: 1,
            bitrate: 32_000,
            fec: true,
            expected_loss_percent: 10,
        }
    }
}

/// An opus encoder fed with 8 kHz mono PCM.
pub struct OpusEncoder {
    inner: opus::Encoder,
    out: Vec<u8>,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder").finish_non_exhaustive()
    }
}

impl OpusEncoder {
    pub fn new(settings: &OpusSettings) -> Result<Self, OpusError> {
        let mut inner =
            opus::Encoder::new(PCM_RATE, opus::Channels::Mono, opus::Application::Voip)?;
        inner.set_complexity(i32::from(settings.complexity.min(10)))?;
        inner.set_bitrate(opus::Bitrate::Bits(
            settings.bitrate.clamp(6_000, 64_000) as i32
        ))?;
        inner.set_signal(opus::Signal::Voice)?;
        inner.set_inband_fec(settings.fec)?;
        inner.set_packet_loss_perc(i32::from(settings.expected_loss_percent.min(100)))?;
        Ok(OpusEncoder {
            inner,
            out: vec![0; MAX_PACKET_BYTES],
        })
    }

    /// The loss the far receiver reports (RTCP fraction lost, in percent):
    /// more loss, more of the bit rate goes to FEC.
    pub fn set_expected_loss(&mut self, percent: u8) -> Result<(), OpusError> {
        Ok(self
            .inner
            .set_packet_loss_perc(i32::from(percent.min(100)))?)
    }

    /// The loss percentage the encoder plans its FEC for now (libopus's
    /// own setting, read back).
    pub fn expected_loss(&mut self) -> Result<u8, OpusError> {
        let percent = self.inner.get_packet_loss_perc()?;
        Ok(percent.clamp(0, 100) as u8)
    }

    /// Encodes one frame of 80, 160, 320 or 480 samples (10, 20, 40, 60 ms)
    /// into one opus packet.
    pub fn encode(&mut self, pcm: &[i16]) -> Result<Bytes, OpusError> {
        if !matches!(pcm.len(), 80 | 160 | 320 | 480) {
            return Err(OpusError::FrameSize(pcm.len()));
        }
        let n = self.inner.encode(pcm, &mut self.out)?;
        Ok(Bytes::copy_from_slice(&self.out[..n]))
    }
}

/// An opus decoder producing 8 kHz mono PCM, whatever bandwidth, mode or
/// channel count the sender used (libopus downmixes and resamples).
pub struct OpusDecoder {
    inner: opus::Decoder,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder").finish_non_exhaustive()
    }
}

impl OpusDecoder {
    pub fn new() -> Result<Self, OpusError> {
        Ok(OpusDecoder {
            inner: opus::Decoder::new(PCM_RATE, opus::Channels::Mono)?,
        })
    }

    /// Decodes one packet into `out`, returning the number of samples (the
    /// packet's duration at 8 kHz). A packet of one byte (a DTX frame: the
    /// TOC and nothing else) decodes as concealment / comfort noise.
    pub fn decode(
        &mut self,
        payload: &[u8],
        out: &mut [i16; MAX_PACKET_SAMPLES],
    ) -> Result<usize, OpusError> {
        // An empty slice means "lost" to libopus; a packet is never empty.
        if payload.is_empty() {
            return Err(OpusError::EmptyPacket);
        }
        Ok(self.inner.decode(payload, &mut out[..], false)?)
    }

    /// Packet loss concealment: `samples` of audio extrapolated from what
    /// came before (a multiple of 2.5 ms: 20 of 8 kHz samples).
    pub fn conceal(&mut self, samples: usize, out: &mut [i16]) -> Result<usize, OpusError> {
        let out = plc_slice(samples, out)?;
        Ok(self.inner.decode(&[], out, false)?)
    }

    /// The lost frame right before `next` rebuilt from `next`'s in-band FEC
    /// (libopus conceals instead when `next` carries none). `next` itself
    /// must then be decoded with [`decode`](Self::decode).
    pub fn recover(
        &mut self,
        next: &[u8],
        samples: usize,
        out: &mut [i16],
    ) -> Result<usize, OpusError> {
        let out = plc_slice(samples, out)?;
        if next.is_empty() {
            return Ok(self.inner.decode(&[], out, false)?);
        }
        Ok(self.inner.decode(next, out, true)?)
    }

    /// Forgets the stream (a new SSRC: the old state would colour the first
    /// frames of the new one).
    pub fn reset(&mut self) -> Result<(), OpusError> {
        Ok(self.inner.reset_state()?)
    }
}

fn plc_slice(samples: usize, out: &mut [i16]) -> Result<&mut [i16], OpusError> {
    if samples == 0
        || !samples.is_multiple_of(20)
        || samples > MAX_PACKET_SAMPLES
        || samples > out.len()
    {
        return Err(OpusError::FrameSize(samples));
    }
    Ok(&mut out[..samples])
}
