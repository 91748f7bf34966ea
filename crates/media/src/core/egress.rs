//! What a leg hears when it does not hear the other party — hold music, a
//! prompt, silence — and, later, what a mixer feeds it (the other party
//! plus a supervisor's whisper, a conference): all are a [`FrameSource`]
//! producing 20 ms of 8 kHz mono PCM on demand. The shell's pacing timer
//! asks for one frame every 20 ms per leg that needs one, and a
//! [`Packetizer`] turns it into the leg's RTP (PCMU, PCMA or opus).
//!
//! Sources:
//! - [`LoopedAudio::chime`], the default hold music: a soft two-note chime
//!   (E5 then C5, bell-like decay, under −18 dBFS), then silence, every
//!   4 s. Generated once per process, shared by every held call;
//! - [`LoopedAudio::from_wav`]: the operator's WAV file, looped. 16-bit PCM
//!   mono at 8 kHz, or at 16 or 48 kHz (low-pass filtered and decimated
//!   once at load). Anything else is refused at load with an error that
//!   says what the file is and how to convert it, so a wrong file shows up
//!   when the configuration is read, not as noise in a customer's ear.
//!   The shell reads the file (the core does no I/O) and hands the bytes;
//! - [`Silence`].
//!
//! A source never fails and never ends: a loop wraps, silence is silence.
//! Every source is `Send`, so the shell can hand it to the thread that
//! owns the call.

use std::sync::{Arc, OnceLock};

use super::opus::{OpusEncoder, OpusError, OpusSettings, PCM_RATE};
use super::{g711, wav};
use crate::codec::Codec;
use crate::packet::RtpPacket;

/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
/// One 20 ms frame of 8 kHz mono PCM.
pub type Frame = [i16; FRAME_SAMPLES];

/// The longest audio [`LoopedAudio`] accepts (one hour at 8 kHz, 57 MB).
pub const MAX_LOOP_SECONDS: u32 = 3_600;

/// Produces audio toward a leg, one 20 ms frame at a time.
pub trait FrameSource: Send {
    /// The next 20 ms.
    fn next_frame(&mut self) -> Frame;
}

/// Nothing to hear (a leg that must keep receiving packets, e.g. while a
/// transfer is set up, so the far jitter buffer and NAT stay alive).
#[derive(Debug, Clone, Copy, Default)]
pub struct Silence;

impl Silence {
    /// Any number of samples of silence (the relay's ptime may be 10 or
    /// 30 ms).
    pub fn fill(&mut self, pcm: &mut [i16]) {
        pcm.fill(0);
    }
}

impl FrameSource for Silence {
    fn next_frame(&mut self) -> Frame {
        [0; FRAME_SAMPLES]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "hold music: not a 16-bit PCM WAV file ({0}); convert it with \
         `sox in.wav -r 8000 -c 1 -b 16 out.wav`"
    )]
    Wav(#[from] wav::WavError),
    #[error(
        "hold music must be a mono 16-bit PCM WAV at 8000, 16000 or 48000 Hz; \
         this file has {channels} channel(s) at {sample_rate} Hz (convert it with \
         `sox in.wav -r 8000 -c 1 -b 16 out.wav`)"
    )]
    Format { channels: u16, sample_rate: u32 },
    #[error("hold music has no samples")]
    Empty,
    #[error("hold music is longer than {MAX_LOOP_SECONDS} s")]
    TooLong,
}

/// 8 kHz mono audio played in a loop, decoded once and shared (an `Arc`)
/// by every call that hears it; [`source`](Self::source) gives each call
/// its own position.
#[derive(Debug, Clone)]
pub struct LoopedAudio {
    samples: Arc<[i16]>,
}

impl LoopedAudio {
    /// The default hold music (see the module docs), built on first use.
    pub fn chime() -> Self {
        static CHIME: OnceLock<Arc<[i16]>> = OnceLock::new();
        LoopedAudio {
            samples: CHIME.get_or_init(|| chime_pattern().into()).clone(),
        }
    }

    /// Audio already at 8 kHz mono.
    pub fn from_pcm(samples: Vec<i16>) -> Result<Self, SourceError> {
        if samples.is_empty() {
            return Err(SourceError::Empty);
        }
        if samples.len() > (MAX_LOOP_SECONDS * PCM_RATE) as usize {
            return Err(SourceError::TooLong);
        }
        Ok(LoopedAudio {
            samples: samples.into(),
        })
    }

    /// A WAV file's bytes: 16-bit PCM, mono, 8, 16 or 48 kHz.
    pub fn from_wav(bytes: &[u8]) -> Result<Self, SourceError> {
        let info = wav::parse_header(bytes)?;
        let format = info.format;
        let factor = match (format.channels, format.sample_rate) {
            (1, 8_000) => 1,
            (1, 16_000) => 2,
            (1, 48_000) => 6,
            (channels, sample_rate) => {
                return Err(SourceError::Format {
                    channels,
                    sample_rate,
                })
            }
        };
        // A header written before the file was complete may declare more
        // (or 0xFFFFFFFF) bytes than there are: take what is there.
        let data = bytes.get(info.data_offset..).unwrap_or_default();
        let data = &data[..data.len().min(info.data_len as usize)];
        let max_bytes = (MAX_LOOP_SECONDS * PCM_RATE) as usize * factor * 2;
        if data.len() > max_bytes {
            return Err(SourceError::TooLong);
        }
        let pcm: Vec<i16> = data
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        if pcm.is_empty() {
            return Err(SourceError::Empty);
        }
        let pcm = if factor == 1 {
            pcm
        } else {
            decimate(&pcm, factor)
        };
        Self::from_pcm(pcm)
    }

    /// Length in 8 kHz samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// A source playing this audio from the start.
    pub fn source(&self) -> LoopSource {
        LoopSource {
            samples: self.samples.clone(),
            position: 0,
        }
    }
}

/// One listener's position in a [`LoopedAudio`].
#[derive(Debug, Clone)]
pub struct LoopSource {
    samples: Arc<[i16]>,
    position: usize,
}

impl LoopSource {
    /// Fills `pcm` with the next samples, wrapping at the end (any length:
    /// the relay's ptime may be 10 or 30 ms).
    pub fn fill(&mut self, pcm: &mut [i16]) {
        let len = self.samples.len();
        if len == 0 {
            // LoopedAudio never holds an empty loop; stay silent anyway.
            pcm.fill(0);
            return;
        }
        let mut done = 0;
        while done < pcm.len() {
            let n = (len - self.position).min(pcm.len() - done);
            pcm[done..done + n].copy_from_slice(&self.samples[self.position..self.position + n]);
            done += n;
            self.position = (self.position + n) % len;
        }
    }
}

impl FrameSource for LoopSource {
    fn next_frame(&mut self) -> Frame {
        let mut frame = [0; FRAME_SAMPLES];
        self.fill(&mut frame);
        frame
    }
}

/// The chime: two bell-like notes (a fundamental and a faster-decaying
/// octave), a descending major third, then silence; 4 s in all. The attack
/// (8 ms) and the fade at the end of each note (50 ms) keep it free of
/// clicks, and the loop ends in silence so it wraps without one.
fn chime_pattern() -> Vec<i16> {
    const RATE: f32 = PCM_RATE as f32;
    const PERIOD_SECONDS: f32 = 4.0;
    // Peak of one note; two overlapping stay under −18 dBFS (4096).
    const AMPLITUDE: f32 = 2_600.0;
    // (start s, frequency Hz, decay time constant s, length s)
    const NOTES: [(f32, f32, f32, f32); 2] = [(0.0, 659.25, 0.30, 1.4), (0.45, 523.25, 0.40, 1.8)];
    let mut mix = vec![0f32; (PERIOD_SECONDS * RATE) as usize];
    for (start, frequency, tau, length) in NOTES {
        let first = (start * RATE) as usize;
        for k in 0..(length * RATE) as usize {
            let t = k as f32 / RATE;
            let edges = (t / 0.008).min(1.0) * ((length - t) / 0.05).clamp(0.0, 1.0);
            let w = 2.0 * std::f32::consts::PI * frequency * t;
            let note = (-t / tau).exp() * w.sin() + 0.2 * (-2.0 * t / tau).exp() * (2.0 * w).sin();
            if let Some(s) = mix.get_mut(first + k) {
                *s += AMPLITUDE * edges * note;
            }
        }
    }
    mix.iter()
        .map(|s| s.round().clamp(-32_768.0, 32_767.0) as i16)
        .collect()
}

/// `input` (a loop at `factor` × 8 kHz) down to 8 kHz: a windowed-sinc
/// low-pass (Blackman, cut-off 3.4 kHz, 32 taps per output sample) so
/// nothing above 4 kHz folds back as noise, then every `factor`-th sample.
/// The filter wraps around the ends: the input is a loop, and the seam
/// stays as smooth as the file's own. Runs once at load.
fn decimate(input: &[i16], factor: usize) -> Vec<i16> {
    let rate = (PCM_RATE as usize * factor) as f64;
    let half = 16 * factor;
    let taps = 2 * half + 1;
    let cutoff = 3_400.0 / rate;
    let pi = std::f64::consts::PI;
    let mut h: Vec<f64> = (0..taps)
        .map(|i| {
            let m = i as f64 - half as f64;
            let sinc = if m == 0.0 {
                2.0 * cutoff
            } else {
                (2.0 * pi * cutoff * m).sin() / (pi * m)
            };
            let x = i as f64 / (taps - 1) as f64;
            sinc * (0.42 - 0.5 * (2.0 * pi * x).cos() + 0.08 * (4.0 * pi * x).cos())
        })
        .collect();
    let sum: f64 = h.iter().sum();
    h.iter_mut().for_each(|c| *c /= sum);
    let len = input.len();
    (0..len / factor)
        .map(|j| {
            let center = j * factor;
            let acc: f64 = h
                .iter()
                .enumerate()
                .map(|(k, c)| c * f64::from(input[(center + len * taps + k - half) % len]))
                .sum();
            acc.round().clamp(-32_768.0, 32_767.0) as i16
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum PacketizeError {
    #[error("{0:?} carries no audio frames")]
    NotAudio(Codec),
    #[error(transparent)]
    Opus(#[from] OpusError),
}

/// Turns 20 ms frames into one RTP stream: sequence +1 and timestamp +160
/// (G.711) or +960 (opus, 48 kHz clock) per frame, the marker on the first
/// packet and after [`mark_next`](Self::mark_next).
#[derive(Debug)]
pub struct Packetizer {
    codec: Codec,
    payload_type: u8,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    marker: bool,
    opus: Option<OpusEncoder>,
}

impl Packetizer {
    /// A stream in `codec` (PCMU, PCMA or opus) starting at the given
    /// sequence number and timestamp (the leg's outgoing stream decides
    /// them, so the receiver sees one continuous stream).
    pub fn new(
        codec: Codec,
        payload_type: u8,
        ssrc: u32,
        first_sequence: u16,
        first_timestamp: u32,
        opus: &OpusSettings,
    ) -> Result<Self, PacketizeError> {
        let opus = match codec {
            Codec::Pcmu | Codec::Pcma => None,
            Codec::Opus => Some(OpusEncoder::new(opus)?),
            Codec::TelephoneEvent { .. } => return Err(PacketizeError::NotAudio(codec)),
        };
        Ok(Packetizer {
            codec,
            payload_type,
            ssrc,
            sequence: first_sequence,
            timestamp: first_timestamp,
            marker: true,
            opus,
        })
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// RTP ticks per 20 ms frame: 160 for G.711, 960 for opus.
    pub fn ticks_per_frame(&self) -> u32 {
        self.codec.clock_rate() / 50
    }

    /// The sequence number and timestamp of the next packet.
    pub fn next_position(&self) -> (u16, u32) {
        (self.sequence, self.timestamp)
    }

    /// The next packet starts a talk spurt (after a pause in sending):
    /// the receiver's jitter buffer resynchronises on the marker.
    pub fn mark_next(&mut self) {
        self.marker = true;
    }

    /// The next packet carries `frame`.
    pub fn packetize(&mut self, frame: &Frame) -> Result<RtpPacket, PacketizeError> {
        let payload = match (self.codec, self.opus.as_mut()) {
            (Codec::Opus, Some(encoder)) => encoder.encode(frame)?,
            (Codec::Pcma, _) => g711::encode_alaw(frame).into(),
            (Codec::Pcmu, _) => g711::encode_ulaw(frame).into(),
            (other, _) => return Err(PacketizeError::NotAudio(other)),
        };
        let packet = RtpPacket {
            payload_type: self.payload_type,
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
            marker: std::mem::take(&mut self.marker),
            payload,
        };
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(self.ticks_per_frame());
        Ok(packet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::opus::OpusDecoder;
    use crate::core::testaudio::{dominant_frequency, goertzel, rms, sine};
    use crate::core::testutil::Rng;
    use crate::core::wav::{header, WavFormat};

    fn wav_bytes(channels: u16, sample_rate: u32, samples: &[i16]) -> Vec<u8> {
        let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let format = WavFormat {
            channels,
            sample_rate,
        };
        let mut bytes = header(format, data.len() as u32).to_vec();
        bytes.extend(data);
        bytes
    }

    fn frames(source: &mut dyn FrameSource, n: usize) -> Vec<i16> {
        (0..n).flat_map(|_| source.next_frame()).collect()
    }

    #[test]
    fn chime_is_audible_soft_and_loops_without_clicks() {
        let chime = LoopedAudio::chime();
        assert_eq!(chime.len(), 32_000, "4 s at 8 kHz");
        let mut source = chime.source();
        let pcm = frames(&mut source, 400); // two loops
        let (first, second) = pcm.split_at(32_000);
        assert_eq!(first, second, "the loop repeats exactly");
        let peak = first.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!(
            (1_500..=4_096).contains(&peak),
            "peak {peak}: audible, under -18 dBFS"
        );
        let level = rms(first);
        assert!((150.0..1_500.0).contains(&level), "rms {level}");
        // A silence between chimes: the last 1.5 s are exactly zero.
        assert!(first[32_000 - 12_000..].iter().all(|&s| s == 0));
        // The two notes: E5 in the first 0.4 s, C5 after 0.5 s.
        let (e5, c5) = (&first[400..3_200], &first[4_400..8_000]);
        assert!(goertzel(e5, 659.25) > 5.0 * goertzel(e5, 1_000.0));
        assert!((dominant_frequency(e5) - 660.0).abs() <= 10.0);
        assert!((dominant_frequency(c5) - 520.0).abs() <= 10.0);
        // No clicks: no step between neighbours beyond what the notes
        // themselves make, across the wrap too.
        let max_step = pcm
            .windows(2)
            .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
            .max()
            .unwrap_or(0);
        assert!(max_step < 2_500, "step {max_step}");
    }

    #[test]
    fn silence_is_silent() {
        assert!(frames(&mut Silence, 10).iter().all(|&s| s == 0));
        let mut pcm = [7i16; 240];
        Silence.fill(&mut pcm);
        assert!(pcm.iter().all(|&s| s == 0));
    }

    #[test]
    fn wav_source_loops() {
        // 250 samples: not a multiple of a frame, so frames straddle the end.
        let ramp: Vec<i16> = (0..250).map(|i| i * 10 - 1_000).collect();
        let audio = LoopedAudio::from_wav(&wav_bytes(1, 8_000, &ramp)).expect("8 kHz mono");
        assert_eq!(audio.samples(), &ramp[..]);
        let mut source = audio.source();
        let pcm = frames(&mut source, 5);
        for (i, s) in pcm.iter().enumerate() {
            assert_eq!(*s, ramp[i % 250], "sample {i}");
        }
        // Any length (a 30 ms ptime) goes on from the same position.
        let mut odd = [0i16; 240];
        source.fill(&mut odd);
        for (i, s) in odd.iter().enumerate() {
            assert_eq!(*s, ramp[(800 + i) % 250], "sample {}", 800 + i);
        }
        // Each call has its own position over the same samples.
        assert_eq!(audio.source().next_frame()[0], ramp[0]);
    }

    #[test]
    fn wav_stereo_44_1_khz_is_refused_with_a_clear_error() {
        let stereo: Vec<i16> = sine(4_410, 440.0, 3_000.0)
            .iter()
            .flat_map(|&s| [s, s])
            .collect();
        let err =
            LoopedAudio::from_wav(&wav_bytes(2, 44_100, &stereo)).expect_err("stereo 44.1 kHz");
        assert!(matches!(
            err,
            SourceError::Format {
                channels: 2,
                sample_rate: 44_100
            }
        ));
        let message = err.to_string();
        for part in [
            "mono 16-bit PCM",
            "8000, 16000 or 48000 Hz",
            "2 channel(s) at 44100 Hz",
            "sox",
        ] {
            assert!(message.contains(part), "{message:?} lacks {part:?}");
        }
        // Mono at a rate we do not resample, and stereo at 8 kHz.
        assert!(matches!(
            LoopedAudio::from_wav(&wav_bytes(1, 22_050, &[0; 100])),
            Err(SourceError::Format {
                channels: 1,
                sample_rate: 22_050
            })
        ));
        assert!(matches!(
            LoopedAudio::from_wav(&wav_bytes(2, 8_000, &[0; 100])),
            Err(SourceError::Format { channels: 2, .. })
        ));
    }

    #[test]
    fn wav_other_encodings_empty_and_truncated_files() {
        let mut eight_bit = wav_bytes(1, 8_000, &[0; 100]);
        eight_bit[34] = 8; // bits per sample
        let err = LoopedAudio::from_wav(&eight_bit).expect_err("8-bit");
        assert!(err.to_string().contains("not 16-bit"), "{err}");
        assert!(err.to_string().contains("sox"), "{err}");
        assert!(matches!(
            LoopedAudio::from_wav(&wav_bytes(1, 8_000, &[])),
            Err(SourceError::Empty)
        ));
        assert!(matches!(
            LoopedAudio::from_wav(b"not a wav at all"),
            Err(SourceError::Wav(_))
        ));
        // A header that promises more than the file holds: what is there.
        let mut truncated = wav_bytes(1, 8_000, &[1, 2, 3, 4]);
        truncated[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        truncated.push(9); // half a sample
        let audio = LoopedAudio::from_wav(&truncated).expect("truncated");
        assert_eq!(audio.samples(), &[1, 2, 3, 4]);
    }

    #[test]
    fn wav_at_16_and_48_khz_is_resampled_without_aliasing() {
        for rate in [16_000u32, 48_000] {
            let factor = (rate / 8_000) as usize;
            let at = |frequency: f64| -> Vec<i16> {
                (0..rate as usize)
                    .map(|i| {
                        (8_000.0
                            * (2.0 * std::f64::consts::PI * frequency * i as f64 / f64::from(rate))
                                .sin()) as i16
                    })
                    .collect()
            };
            let tone = LoopedAudio::from_wav(&wav_bytes(1, rate, &at(1_000.0))).expect("tone");
            assert_eq!(tone.len(), rate as usize / factor);
            let pcm = tone.samples();
            assert!(
                (dominant_frequency(pcm) - 1_000.0).abs() <= 10.0,
                "{rate} Hz"
            );
            let level = goertzel(pcm, 1_000.0) / 8_000.0;
            assert!((0.95..1.05).contains(&level), "{rate} Hz: level {level}");
            // Above 4 kHz: would fold back to an audible tone if only
            // every n-th sample were taken.
            let high = LoopedAudio::from_wav(&wav_bytes(1, rate, &at(6_000.0))).expect("high");
            let folded = rms(high.samples());
            assert!(
                folded < 30.0,
                "{rate} Hz: 6 kHz folded back at rms {folded}"
            );
            let naive: Vec<i16> = at(6_000.0).iter().step_by(factor).copied().collect();
            assert!(rms(&naive) > 1_000.0, "the check above can fail");
        }
    }

    #[test]
    fn wav_garbage_never_panics() {
        let mut rng = Rng::new(0x3a7);
        let valid = wav_bytes(1, 16_000, &sine(400, 500.0, 1_000.0));
        for round in 0..20_000 {
            let bytes = if round % 2 == 0 {
                rng.bytes(200)
            } else {
                rng.mutate(&valid)
            };
            if let Ok(audio) = LoopedAudio::from_wav(&bytes) {
                assert!(!audio.is_empty());
                let _ = audio.source().next_frame();
            }
        }
    }

    #[test]
    fn packetizer_g711_timestamps_advance_160() {
        for (codec, pt) in [(Codec::Pcmu, 0u8), (Codec::Pcma, 8)] {
            let mut p = Packetizer::new(
                codec,
                pt,
                42,
                65_534,
                u32::MAX - 159,
                &OpusSettings::default(),
            )
            .expect("packetizer");
            assert_eq!(p.ticks_per_frame(), 160);
            let mut source = LoopedAudio::chime().source();
            let packets: Vec<RtpPacket> = (0..5)
                .map(|i| {
                    if i == 3 {
                        p.mark_next();
                    }
                    p.packetize(&source.next_frame()).expect("packetize")
                })
                .collect();
            let seqs: Vec<u16> = packets.iter().map(|p| p.sequence).collect();
            assert_eq!(seqs, [65_534, 65_535, 0, 1, 2]);
            let ts: Vec<u32> = packets.iter().map(|p| p.timestamp).collect();
            assert_eq!(ts, [u32::MAX - 159, 0, 160, 320, 480]);
            let markers: Vec<bool> = packets.iter().map(|p| p.marker).collect();
            assert_eq!(markers, [true, false, false, true, false]);
            assert!(packets
                .iter()
                .all(|p| p.payload.len() == 160 && p.payload_type == pt && p.ssrc == 42));
            assert_eq!(p.next_position(), (3, 640));
        }
        // The payload is the frame in that law.
        let mut p =
            Packetizer::new(Codec::Pcma, 8, 1, 0, 0, &OpusSettings::default()).expect("pcma");
        let frame = [1_000i16; FRAME_SAMPLES];
        let packet = p.packetize(&frame).expect("packetize");
        assert_eq!(&packet.payload[..], &g711::encode_alaw(&frame)[..]);
    }

    #[test]
    fn packetizer_opus_timestamps_advance_960_and_decode() {
        let mut p = Packetizer::new(Codec::Opus, 111, 7, 0, 1_000, &OpusSettings::default())
            .expect("packetizer");
        assert_eq!(p.ticks_per_frame(), 960);
        let tone = sine(FRAME_SAMPLES * 25, 800.0, 6_000.0);
        let mut decoder = OpusDecoder::new().expect("decoder");
        let mut decoded = Vec::new();
        for (i, chunk) in tone.chunks_exact(FRAME_SAMPLES).enumerate() {
            let mut frame = [0; FRAME_SAMPLES];
            frame.copy_from_slice(chunk);
            let packet = p.packetize(&frame).expect("packetize");
            assert_eq!(packet.timestamp, 1_000 + 960 * i as u32);
            assert_eq!(packet.sequence, i as u16);
            assert_eq!(packet.payload_type, 111);
            let mut pcm = [0i16; crate::core::opus::MAX_PACKET_SAMPLES];
            let n = decoder.decode(&packet.payload, &mut pcm).expect("decode");
            assert_eq!(n, FRAME_SAMPLES);
            decoded.extend_from_slice(&pcm[..n]);
        }
        assert!((dominant_frequency(&decoded[1_000..]) - 800.0).abs() <= 20.0);
    }

    #[test]
    fn packetizer_refuses_telephone_event() {
        let refused = Packetizer::new(
            Codec::TelephoneEvent { clock_rate: 8_000 },
            101,
            1,
            0,
            0,
            &OpusSettings::default(),
        );
        assert!(matches!(refused, Err(PacketizeError::NotAudio(_))));
    }

    #[test]
    fn sources_and_coders_can_move_to_the_call_thread() {
        fn send<T: Send>() {}
        send::<LoopSource>();
        send::<Silence>();
        send::<Packetizer>();
        send::<crate::core::transcode::Transcoder>();
        send::<Box<dyn FrameSource>>();
    }
}
