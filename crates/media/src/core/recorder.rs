//! The recorder core: decoded frames of both sides of a call in, stereo
//! 16-bit samples out (channel 0 the customer, channel 1 the agent), on one
//! timeline.
//!
//! Each side's frames are placed by their RTP timestamps through a
//! [`StreamClock`] (first frame at its arrival time), written into a
//! bounded [`SampleBuffer`], and read out together a little behind real
//! time (`latency`, so reordered frames still land). A side that sends
//! nothing reads as silence for that stretch, so both channels always have
//! the same length and stay aligned. Frames that arrive after their spot
//! was written out, or absurdly far ahead, are dropped and counted; the
//! shell adds the frames its bounded queue dropped
//! ([`Recorder::note_dropped`]) so one figure goes to the call's report.
//!
//! No file I/O here: [`Recorder::poll_bytes`] gives little-endian chunks
//! for [`crate::core::wav::WavWriter::write_bytes`] in the shell.
//!
//! Recording rule (research/callcenter.md §0.1): record what the customer
//! said and heard. When a supervisor barges, the shell feeds the agent side
//! with the mix the customer hears (agent + supervisor, from the mixer); a
//! whisper, which the customer does not hear, is not fed.
//!
//! Run-loop: [`Recorder::push_frame`] per decoded frame (in any order),
//! [`Recorder::poll_samples`] / [`Recorder::poll_bytes`] from a timer (every
//! 100 ms or so), [`Recorder::finish`] at hang-up.

use std::time::{Duration, Instant};

use super::timeline::{SampleBuffer, StreamClock, Timeline, WriteOutcome};

/// The two channels of a call recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The caller/customer: channel 0 (left).
    Customer,
    /// The agent: channel 1 (right).
    Agent,
}

impl Side {
    pub fn channel(self) -> usize {
        match self {
            Side::Customer => 0,
            Side::Agent => 1,
        }
    }
}

/// One decoded frame, as a leg hands it to the recorder (and later to the
/// mixer).
#[derive(Debug, Clone, Copy)]
pub struct DecodedFrame<'a> {
    pub ssrc: u32,
    pub rtp_timestamp: u32,
    /// The RTP clock of the stream the frame came from (8000 for G.711,
    /// 48000 for opus).
    pub clock_rate: u32,
    /// Mono PCM at the recorder's sample rate.
    pub samples: &'a [i16],
}

#[derive(Debug, Clone, Copy)]
pub struct RecorderConfig {
    /// Output sample rate (8000 for our WAVs).
    pub sample_rate: u32,
    /// How far behind real time the output runs, so late frames still fit.
    pub latency: Duration,
    /// How far ahead of the output a frame may be buffered; further is
    /// dropped (bounds the memory per call).
    pub max_ahead: Duration,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            sample_rate: 8000,
            latency: Duration::from_millis(200),
            max_ahead: Duration::from_secs(2),
        }
    }
}

/// Frame counts for the call's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecorderCounters {
    /// Frames stored.
    pub frames: u64,
    /// Frames dropped: too late, too far ahead, or dropped by the shell's
    /// queue.
    pub dropped_frames: u64,
    /// Sample frames (per channel) written out so far.
    pub samples_out: u64,
}

#[derive(Debug)]
pub struct Recorder {
    config: RecorderConfig,
    timeline: Timeline,
    clocks: [StreamClock; 2],
    buffers: [SampleBuffer; 2],
    counters: RecorderCounters,
    scratch: [Vec<i16>; 2],
}

impl Recorder {
    /// A recording starting at `start` (when the call was answered).
    pub fn new(start: Instant, config: RecorderConfig) -> Self {
        let timeline = Timeline::new(start, config.sample_rate);
        let capacity = timeline.samples_in(config.latency + config.max_ahead) as usize;
        Recorder {
            config,
            timeline,
            clocks: [StreamClock::new(), StreamClock::new()],
            buffers: [
                SampleBuffer::new(0, capacity),
                SampleBuffer::new(0, capacity),
            ],
            counters: RecorderCounters::default(),
            scratch: [Vec::new(), Vec::new()],
        }
    }

    pub fn config(&self) -> RecorderConfig {
        self.config
    }

    pub fn counters(&self) -> RecorderCounters {
        self.counters
    }

    /// Frames the shell dropped before they reached the recorder.
    pub fn note_dropped(&mut self, frames: u64) {
        self.counters.dropped_frames += frames;
    }

    /// One decoded frame of `side`, arrived at `arrival`. Returns whether
    /// it was stored.
    pub fn push_frame(&mut self, side: Side, frame: DecodedFrame<'_>, arrival: Instant) -> bool {
        let ch = side.channel();
        let position = self.clocks[ch].position(
            &self.timeline,
            frame.ssrc,
            frame.rtp_timestamp,
            frame.clock_rate,
            arrival,
        );
        match self.buffers[ch].write(position, frame.samples) {
            WriteOutcome::Stored => {
                self.counters.frames += 1;
                true
            }
            WriteOutcome::Late | WriteOutcome::TooFarAhead => {
                self.counters.dropped_frames += 1;
                false
            }
        }
    }

    /// Interleaved stereo samples up to `now − latency`, appended to `out`.
    /// Returns the number of sample frames (per channel) appended.
    pub fn poll_samples(&mut self, now: Instant, out: &mut Vec<i16>) -> usize {
        let until = self.timeline.position_at(now) - self.timeline.samples_in(self.config.latency);
        self.emit(until, out)
    }

    /// The same as little-endian bytes, ready for a WAV data chunk.
    pub fn poll_bytes(&mut self, now: Instant, out: &mut Vec<u8>) -> usize {
        let mut samples = Vec::new();
        let n = self.poll_samples(now, &mut samples);
        extend_le(out, &samples);
        n
    }

    /// Everything still buffered, up to the furthest frame of either side
    /// (both channels end at the same sample). Appends interleaved samples.
    pub fn finish(&mut self, out: &mut Vec<i16>) -> usize {
        let until = self.buffers[0]
            .written_end()
            .max(self.buffers[1].written_end());
        self.emit(until, out)
    }

    /// [`finish`](Self::finish) as little-endian bytes.
    pub fn finish_bytes(&mut self, out: &mut Vec<u8>) -> usize {
        let mut samples = Vec::new();
        let n = self.finish(&mut samples);
        extend_le(out, &samples);
        n
    }

    fn emit(&mut self, until: i64, out: &mut Vec<i16>) -> usize {
        // Both buffers share the read position: they are always read
        // together.
        let from = self.buffers[0].read_position();
        if until <= from {
            return 0;
        }
        let [left, right] = &mut self.scratch;
        left.clear();
        right.clear();
        self.buffers[0].read_until(until, left);
        self.buffers[1].read_until(until, right);
        out.reserve(left.len() * 2);
        for (l, r) in left.iter().zip(right.iter()) {
            out.push(*l);
            out.push(*r);
        }
        let n = left.len();
        self.counters.samples_out += n as u64;
        n
    }
}

fn extend_le(out: &mut Vec<u8>, samples: &[i16]) {
    out.reserve(samples.len() * 2);
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::g711;
    use crate::core::testutil::Rng;
    use crate::core::wav::{parse_header, WavFormat, WavWriter};
    use std::io::Cursor;

    const FRAME: usize = 160;
    const PTIME: Duration = Duration::from_millis(20);

    fn frame(ssrc: u32, ts: u32, samples: &[i16]) -> DecodedFrame<'_> {
        DecodedFrame {
            ssrc,
            rtp_timestamp: ts,
            clock_rate: 8000,
            samples,
        }
    }

    fn channel(out: &[i16], ch: usize) -> Vec<i16> {
        out.iter().skip(ch).step_by(2).copied().collect()
    }

    #[test]
    fn one_side_talking_gives_equal_channels() {
        let t0 = Instant::now();
        let mut rec = Recorder::new(t0, RecorderConfig::default());
        let voice = [1000i16; FRAME];
        // The customer talks for 1 s; the agent sends nothing.
        for n in 0..50u32 {
            rec.push_frame(Side::Customer, frame(7, n * 160, &voice), t0 + PTIME * n);
        }
        let mut out = Vec::new();
        rec.poll_samples(t0 + Duration::from_millis(600), &mut out);
        // 600 ms − 200 ms latency = 400 ms = 3200 sample frames.
        assert_eq!(out.len(), 2 * 3200);
        rec.finish(&mut out);
        let (left, right) = (channel(&out, 0), channel(&out, 1));
        assert_eq!(left.len(), 8000);
        assert_eq!(right.len(), left.len());
        assert!(left.iter().all(|&s| s == 1000));
        assert!(right.iter().all(|&s| s == 0));
        assert_eq!(rec.counters().samples_out, 8000);
    }

    #[test]
    fn sides_align_and_gaps_are_silence() {
        let t0 = Instant::now();
        let mut rec = Recorder::new(t0, RecorderConfig::default());
        // The customer from the start; the agent's first frame arrives
        // 100 ms in (a random RTP origin), and packet 3 of the customer is
        // lost.
        for n in 0..10u32 {
            if n != 3 {
                rec.push_frame(
                    Side::Customer,
                    frame(1, 90_000 + n * 160, &[1; FRAME]),
                    t0 + PTIME * n,
                );
            }
        }
        for n in 0..5u32 {
            let at = t0 + Duration::from_millis(100) + PTIME * n;
            rec.push_frame(
                Side::Agent,
                frame(2, 4_000_000_000 + n * 160, &[2; FRAME]),
                at,
            );
        }
        let mut out = Vec::new();
        rec.finish(&mut out);
        let (left, right) = (channel(&out, 0), channel(&out, 1));
        assert_eq!(left.len(), 1600);
        assert_eq!(right.len(), 1600);
        assert!(
            left[480..640].iter().all(|&s| s == 0),
            "lost packet is silence"
        );
        assert!(left[..480].iter().chain(&left[640..]).all(|&s| s == 1));
        assert!(right[..800].iter().all(|&s| s == 0));
        assert!(right[800..].iter().all(|&s| s == 2));
    }

    #[test]
    fn jitter_and_reordering_keep_frames_in_place() {
        let t0 = Instant::now();
        let mut rec = Recorder::new(t0, RecorderConfig::default());
        // Frames 0..20 carrying their index, delivered in a shuffled order
        // with up to 60 ms of extra delay.
        let mut order: Vec<u32> = (0..20).collect();
        order.swap(3, 4);
        order.swap(10, 13);
        for (i, &n) in order.iter().enumerate() {
            let delay = Duration::from_millis((i as u64 * 7) % 60);
            let samples = [n as i16; FRAME];
            rec.push_frame(
                Side::Agent,
                frame(5, n * 160, &samples),
                t0 + PTIME * n + delay,
            );
        }
        let mut out = Vec::new();
        rec.finish(&mut out);
        let right = channel(&out, 1);
        for n in 0..20usize {
            assert!(
                right[n * FRAME..(n + 1) * FRAME]
                    .iter()
                    .all(|&s| s == n as i16),
                "frame {n}"
            );
        }
        assert_eq!(rec.counters().dropped_frames, 0);
    }

    #[test]
    fn late_frames_are_dropped_and_counted() {
        let t0 = Instant::now();
        let mut rec = Recorder::new(t0, RecorderConfig::default());
        for n in 0..20u32 {
            rec.push_frame(
                Side::Customer,
                frame(1, n * 160, &[3; FRAME]),
                t0 + PTIME * n,
            );
        }
        let mut out = Vec::new();
        rec.poll_samples(t0 + Duration::from_millis(600), &mut out);
        // Frame 2's retransmission arrives now: its spot is written out.
        // It is placed by timestamp (anchor from frame 0), so it is late.
        let stored = rec.push_frame(
            Side::Customer,
            frame(1, 2 * 160, &[9; FRAME]),
            t0 + Duration::from_millis(600),
        );
        assert!(!stored);
        rec.note_dropped(4);
        assert_eq!(rec.counters().dropped_frames, 5);
        assert_eq!(rec.counters().frames, 20);
        assert!(channel(&out, 0).iter().all(|&s| s == 3));
    }

    #[test]
    fn opus_clock_frames_land_at_8_khz_positions() {
        let t0 = Instant::now();
        let mut rec = Recorder::new(t0, RecorderConfig::default());
        for n in 0..5u32 {
            let f = DecodedFrame {
                ssrc: 3,
                rtp_timestamp: n * 960,
                clock_rate: 48_000,
                samples: &[4; FRAME],
            };
            rec.push_frame(Side::Agent, f, t0 + PTIME * n);
        }
        let mut out = Vec::new();
        assert_eq!(rec.finish(&mut out), 800);
        assert!(channel(&out, 1).iter().all(|&s| s == 4));
    }

    #[test]
    fn g711_to_a_wav_file() {
        // The whole chain the shell will run: PCMU payloads decoded, laid
        // out, written as a stereo WAV, sizes fixed at the end.
        let t0 = Instant::now();
        let mut rec = Recorder::new(t0, RecorderConfig::default());
        let tone: Vec<i16> = (0..FRAME)
            .map(|i| ((i as f64 * 2.0 * std::f64::consts::PI / 20.0).sin() * 8000.0) as i16)
            .collect();
        let payload = g711::encode_ulaw(&tone);
        let mut wav = WavWriter::new(Cursor::new(Vec::new()), WavFormat::CALL_STEREO).expect("wav");
        let mut chunk = Vec::new();
        for n in 0..100u32 {
            let pcm = g711::decode_ulaw(&payload);
            rec.push_frame(Side::Customer, frame(1, n * 160, &pcm), t0 + PTIME * n);
            if n % 5 == 4 {
                chunk.clear();
                rec.poll_bytes(t0 + PTIME * (n + 1), &mut chunk);
                wav.write_bytes(&chunk).expect("write");
            }
        }
        chunk.clear();
        rec.finish_bytes(&mut chunk);
        wav.write_bytes(&chunk).expect("write");
        let bytes = wav.finalize().expect("finalize").into_inner();
        let info = parse_header(&bytes).expect("header");
        assert_eq!(info.format, WavFormat::CALL_STEREO);
        // 2 s of audio, 4 bytes per stereo sample frame.
        assert_eq!(info.data_len as usize, 16_000 * 4);
        assert_eq!(bytes.len(), 44 + 64_000);
        let samples: Vec<i16> = bytes[44..]
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        let energy = |ch: usize| -> f64 {
            channel(&samples, ch)
                .iter()
                .map(|&s| (s as f64).powi(2))
                .sum::<f64>()
        };
        assert!(energy(0) > 1e9);
        assert_eq!(energy(1), 0.0);
    }

    #[test]
    fn random_frames_stay_bounded_and_never_panic() {
        let t0 = Instant::now();
        let mut rec = Recorder::new(t0, RecorderConfig::default());
        let mut rng = Rng::new(0x5eed_0007);
        let mut out = Vec::new();
        let mut total = 0usize;
        for i in 0..20_000u64 {
            let side = if rng.below(2) == 0 {
                Side::Customer
            } else {
                Side::Agent
            };
            let len = rng.below(400);
            let samples = vec![1i16; len];
            let f = DecodedFrame {
                ssrc: rng.below(3) as u32,
                rtp_timestamp: rng.next_u64() as u32,
                clock_rate: [0, 8000, 16_000, 48_000][rng.below(4)],
                samples: &samples,
            };
            let at = t0 + Duration::from_millis(i) + Duration::from_millis(rng.below(3000) as u64);
            // Also arrivals before the recording started.
            let at = if rng.below(50) == 0 {
                t0 - Duration::from_millis(10)
            } else {
                at
            };
            rec.push_frame(side, f, at);
            if i % 100 == 0 {
                out.clear();
                total += rec.poll_samples(t0 + Duration::from_millis(i), &mut out);
                assert_eq!(out.len() % 2, 0);
            }
        }
        out.clear();
        total += rec.finish(&mut out);
        // The output never runs more than latency + max_ahead past the
        // last poll (20 s of calls here).
        assert!(total <= 8000 * 23, "{total}");
        let c = rec.counters();
        assert_eq!(c.samples_out as usize, total);
        assert!(c.frames + c.dropped_frames == 20_000);
    }
}
