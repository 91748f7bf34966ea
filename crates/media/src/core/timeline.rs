//! A common sample timeline for the streams of one call.
//!
//! Each leg's RTP timestamps run on their own clock, from a random origin,
//! at the codec's rate; the recorder (and later the mixer) needs every
//! decoded frame at a position on one timeline so that the sides line up.
//!
//! - [`Timeline`]: the call's origin (an `Instant`) and output sample rate;
//!   turns an arrival time into a sample position.
//! - [`StreamClock`]: one stream's mapping. The first frame is placed where
//!   it arrived; later frames by their RTP timestamp relative to it, so
//!   network jitter does not move audio around. A new SSRC, or a timestamp
//!   that drifts too far from the arrival time (a peer restarting its
//!   clock, a transfer), re-anchors on the arrival time.
//! - [`SampleBuffer`]: samples addressed by position, read out in order;
//!   gaps read as silence, frames behind the read point are refused, and
//!   its size is bounded.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The call's timeline: position 0 is `origin`, counted in samples at
/// `sample_rate`.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    origin: Instant,
    sample_rate: u32,
}

impl Timeline {
    pub fn new(origin: Instant, sample_rate: u32) -> Self {
        Timeline {
            origin,
            sample_rate: sample_rate.max(1),
        }
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// The sample position of an instant (negative before the origin).
    pub fn position_at(&self, at: Instant) -> i64 {
        if at >= self.origin {
            self.samples_in(at - self.origin)
        } else {
            -self.samples_in(self.origin - at)
        }
    }

    /// How many samples `d` lasts.
    pub fn samples_in(&self, d: Duration) -> i64 {
        (d.as_nanos() * self.sample_rate as u128 / 1_000_000_000).min(i64::MAX as u128) as i64
    }
}

/// When a stream's timestamp-based position and its arrival-based position
/// differ by more than this, the stream is re-anchored.
pub const DEFAULT_MAX_DRIFT: Duration = Duration::from_millis(500);

const POSITION_LIMIT: i128 = 1 << 60;

#[derive(Debug, Clone, Copy)]
struct Anchor {
    ssrc: u32,
    rtp_timestamp: u32,
    position: i64,
}

/// Frames in a row that must agree on a new anchor before the stream is
/// re-anchored (one stray packet must not shift the whole stream).
const REANCHOR_AFTER: u32 = 3;

/// One stream's RTP timestamps → timeline positions.
#[derive(Debug, Clone)]
pub struct StreamClock {
    anchor: Option<Anchor>,
    /// A possible new anchor and how many frames in a row agreed with it.
    candidate: Option<(Anchor, u32)>,
    max_drift: Duration,
    reanchors: u64,
}

impl Default for StreamClock {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamClock {
    pub fn new() -> Self {
        Self::with_max_drift(DEFAULT_MAX_DRIFT)
    }

    pub fn with_max_drift(max_drift: Duration) -> Self {
        StreamClock {
            anchor: None,
            candidate: None,
            max_drift,
            reanchors: 0,
        }
    }

    /// How often the stream was re-anchored after its first frame.
    pub fn reanchors(&self) -> u64 {
        self.reanchors
    }

    /// Forgets the anchor (the next frame is placed by its arrival).
    pub fn reset(&mut self) {
        self.anchor = None;
        self.candidate = None;
    }

    /// The timeline position of a frame with `rtp_timestamp` (at
    /// `clock_rate`) that arrived at `arrival`.
    ///
    /// A frame whose timestamp puts it more than the maximum drift away
    /// from its arrival is still placed by its timestamp (a stray late
    /// retransmission then falls behind the read point and is dropped);
    /// only when three frames in a row agree on a new anchor does the
    /// stream move to it. A new SSRC re-anchors at once.
    pub fn position(
        &mut self,
        timeline: &Timeline,
        ssrc: u32,
        rtp_timestamp: u32,
        clock_rate: u32,
        arrival: Instant,
    ) -> i64 {
        let arrived = timeline.position_at(arrival);
        let fresh = Anchor {
            ssrc,
            rtp_timestamp,
            position: arrived,
        };
        let max_drift = timeline.samples_in(self.max_drift) as u64;
        let Some(anchor) = self.anchor.filter(|a| a.ssrc == ssrc) else {
            if self.anchor.is_some() {
                self.reanchors += 1;
            }
            self.anchor = Some(fresh);
            self.candidate = None;
            return arrived;
        };
        let position = anchor.place(timeline, rtp_timestamp, clock_rate);
        if (position - arrived).unsigned_abs() <= max_drift {
            self.candidate = None;
            return position;
        }
        let agreeing = match self.candidate {
            Some((c, n)) if c.ssrc == ssrc => {
                let p = c.place(timeline, rtp_timestamp, clock_rate);
                ((p - arrived).unsigned_abs() <= max_drift).then_some((c, n + 1))
            }
            _ => None,
        };
        match agreeing {
            Some((c, n)) if n >= REANCHOR_AFTER => {
                self.anchor = Some(c);
                self.candidate = None;
                self.reanchors += 1;
                c.place(timeline, rtp_timestamp, clock_rate)
            }
            Some(candidate) => {
                self.candidate = Some(candidate);
                position
            }
            None => {
                self.candidate = Some((fresh, 1));
                position
            }
        }
    }
}

impl Anchor {
    fn place(&self, timeline: &Timeline, rtp_timestamp: u32, clock_rate: u32) -> i64 {
        let ticks = rtp_timestamp.wrapping_sub(self.rtp_timestamp) as i32 as i128;
        let offset = ticks * timeline.sample_rate() as i128 / clock_rate.max(1) as i128;
        // Clamped far inside i64 so later arithmetic on positions cannot
        // overflow whatever the clock rates.
        (self.position as i128 + offset).clamp(-POSITION_LIMIT, POSITION_LIMIT) as i64
    }
}

/// What happened to a write into a [`SampleBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Stored (possibly only its part after the read point).
    Stored,
    /// Entirely behind the read point: too late.
    Late,
    /// Beyond the buffer's capacity ahead of the read point.
    TooFarAhead,
}

/// Mono samples addressed by timeline position, read out in order.
#[derive(Debug, Clone)]
pub struct SampleBuffer {
    /// The position of `samples[0]`: everything before it was read.
    read_position: i64,
    samples: VecDeque<i16>,
    /// The end of the furthest write (may be behind `read_position`).
    written_end: i64,
    capacity: usize,
}

impl SampleBuffer {
    /// `capacity` samples may be buffered ahead of the read point.
    pub fn new(start: i64, capacity: usize) -> Self {
        SampleBuffer {
            read_position: start,
            samples: VecDeque::new(),
            written_end: start,
            capacity,
        }
    }

    pub fn read_position(&self) -> i64 {
        self.read_position
    }

    /// The end of the furthest write so far.
    pub fn written_end(&self) -> i64 {
        self.written_end
    }

    /// Puts `frame` at `position` (overwriting what is there).
    pub fn write(&mut self, position: i64, frame: &[i16]) -> WriteOutcome {
        let end = position.saturating_add(frame.len() as i64);
        if end <= self.read_position {
            return WriteOutcome::Late;
        }
        if end - self.read_position > self.capacity as i64 {
            return WriteOutcome::TooFarAhead;
        }
        let skip = (self.read_position - position).max(0) as usize;
        let offset = (position - self.read_position).max(0) as usize;
        let needed = offset + frame.len() - skip;
        if self.samples.len() < needed {
            self.samples.resize(needed, 0);
        }
        for (i, &s) in frame[skip..].iter().enumerate() {
            self.samples[offset + i] = s;
        }
        self.written_end = self.written_end.max(end);
        WriteOutcome::Stored
    }

    /// Appends the samples from the read point up to `until` (exclusive) to
    /// `out`, silence where nothing was written, and advances.
    pub fn read_until(&mut self, until: i64, out: &mut Vec<i16>) {
        let n = (until - self.read_position).max(0) as usize;
        let stored = n.min(self.samples.len());
        out.extend(self.samples.drain(..stored));
        out.extend(std::iter::repeat_n(0, n - stored));
        self.read_position += n as i64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_rtp_timestamps_not_jitter() {
        let t0 = Instant::now();
        let timeline = Timeline::new(t0, 8000);
        let mut clock = StreamClock::new();
        // First frame arrives 100 ms in: position 800.
        let p0 = clock.position(&timeline, 1, 5000, 8000, t0 + Duration::from_millis(100));
        assert_eq!(p0, 800);
        // The next arrives 35 ms late; its timestamp says +160.
        let p1 = clock.position(&timeline, 1, 5160, 8000, t0 + Duration::from_millis(155));
        assert_eq!(p1, 960);
        // Opus: 48 kHz timestamps onto the 8 kHz timeline.
        let mut opus = StreamClock::new();
        let q0 = opus.position(&timeline, 2, 0, 48_000, t0);
        let q1 = opus.position(&timeline, 2, 960, 48_000, t0 + Duration::from_millis(20));
        assert_eq!((q0, q1), (0, 160));
        // Timestamp wrap between two frames.
        let mut wrap = StreamClock::new();
        let w0 = wrap.position(&timeline, 3, u32::MAX - 479, 48_000, t0);
        let w1 = wrap.position(&timeline, 3, 480, 48_000, t0 + Duration::from_millis(20));
        assert_eq!(w1 - w0, 160);
        assert_eq!(wrap.reanchors(), 0);
    }

    #[test]
    fn reanchors_on_new_ssrc_or_jump() {
        let t0 = Instant::now();
        let timeline = Timeline::new(t0, 8000);
        let mut clock = StreamClock::new();
        clock.position(&timeline, 1, 0, 8000, t0);
        // A stray packet 10 s off: placed by its timestamp, no re-anchor.
        let stray = clock.position(&timeline, 1, 80_000, 8000, t0 + Duration::from_millis(20));
        assert_eq!(stray, 80_000);
        assert_eq!(
            clock.position(&timeline, 1, 320, 8000, t0 + Duration::from_millis(40)),
            320
        );
        // The source restarts its timestamps for good: the first two
        // frames are placed by the old anchor, the third re-anchors.
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(clock.position(&timeline, 1, 500_000, 8000, at(60)), 500_000);
        clock.position(&timeline, 1, 500_160, 8000, at(80));
        let p = clock.position(&timeline, 1, 500_320, 8000, at(100));
        assert_eq!(p, 800);
        assert_eq!(clock.reanchors(), 1);
        assert_eq!(clock.position(&timeline, 1, 500_480, 8000, at(120)), 960);
        // A new SSRC: placed at its arrival at once.
        let q = clock.position(&timeline, 9, 123, 8000, at(140));
        assert_eq!(q, 1120);
        assert_eq!(clock.reanchors(), 2);
    }

    #[test]
    fn buffer_fills_gaps_and_refuses_late_frames() {
        let mut buf = SampleBuffer::new(0, 1000);
        assert_eq!(buf.write(0, &[1, 1]), WriteOutcome::Stored);
        assert_eq!(buf.write(4, &[2, 2]), WriteOutcome::Stored);
        let mut out = Vec::new();
        buf.read_until(3, &mut out);
        assert_eq!(out, vec![1, 1, 0]);
        // Half behind the read point: the rest is kept.
        assert_eq!(buf.write(2, &[9, 9, 9]), WriteOutcome::Stored);
        assert_eq!(buf.write(0, &[7, 7]), WriteOutcome::Late);
        assert_eq!(buf.write(900, &[1; 200]), WriteOutcome::TooFarAhead);
        buf.read_until(8, &mut out);
        assert_eq!(out, vec![1, 1, 0, 9, 9, 2, 0, 0]);
        assert_eq!(buf.written_end(), 6);
        // Reading backwards does nothing.
        buf.read_until(2, &mut out);
        assert_eq!(out.len(), 8);
    }
}
