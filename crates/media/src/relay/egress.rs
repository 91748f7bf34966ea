//! Egress sources: audio the relay itself sends toward a leg instead of
//! (or, later, mixed with) what the far leg sends. Hold music is the first
//! one; a per-call mixer (supervisor whisper, conference) will be another:
//! it produces, for each participant, the next frame of linear audio.
//!
//! A source fills one frame of 8 kHz mono linear PCM; the relay encodes it
//! into the leg's G.711 codec (`crate::core::g711`), or for an opus-only
//! leg into opus (`crate::core::opus`, 48 kHz RTP clock), and stamps it
//! into the leg's outgoing stream (same SSRC, continuous sequence numbers
//! and timestamps).

/// The sample rate egress sources produce.
pub const EGRESS_RATE: u32 = 8_000;

/// Something that produces audio toward a leg, one frame at a time.
pub trait EgressSource: Send {
    /// Fills `pcm` (8 kHz mono, `pcm.len()` samples = one ptime) with the
    /// next frame. Returns false when the source has nothing more (the
    /// relay then sends nothing, as if the source were absent).
    fn fill(&mut self, pcm: &mut [i16]) -> bool;
}

/// The default hold music: a soft 440 Hz tone, 0.5 s on, 1.5 s off, so a
/// held customer knows the line is alive without being annoyed.
#[derive(Debug, Clone, Default)]
pub struct ToneSource {
    sample: u64,
}

impl ToneSource {
    pub fn new() -> Self {
        ToneSource::default()
    }
}

impl EgressSource for ToneSource {
    fn fill(&mut self, pcm: &mut [i16]) -> bool {
        const PERIOD: u64 = 2 * EGRESS_RATE as u64;
        const ON: u64 = EGRESS_RATE as u64 / 2;
        // About -16 dBFS: audible, not loud.
        const AMPLITUDE: f32 = 5_000.0;
        for s in pcm.iter_mut() {
            let n = self.sample % PERIOD;
            *s = if n < ON {
                let t = n as f32 / EGRESS_RATE as f32;
                (AMPLITUDE * (2.0 * std::f32::consts::PI * 440.0 * t).sin()) as i16
            } else {
                0
            };
            self.sample = self.sample.wrapping_add(1);
        }
        true
    }
}

// The core's sources (`crate::core::egress`): the hold chime and an
// operator's looping WAV, in whatever ptime the leg has.
impl EgressSource for crate::core::egress::LoopSource {
    fn fill(&mut self, pcm: &mut [i16]) -> bool {
        crate::core::egress::LoopSource::fill(self, pcm);
        true
    }
}

impl EgressSource for crate::core::egress::Silence {
    fn fill(&mut self, pcm: &mut [i16]) -> bool {
        crate::core::egress::Silence::fill(self, pcm);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_loop_sources_feed_the_relay() {
        let chime = crate::core::egress::LoopedAudio::chime();
        let mut source: Box<dyn EgressSource> = Box::new(chime.source());
        let mut frame = [0i16; 240]; // a 30 ms ptime
        assert!(source.fill(&mut frame));
        assert_eq!(&frame[..], &chime.samples()[..240]);
        assert!(frame.iter().any(|s| s.abs() > 500));
    }

    #[test]
    fn tone_has_a_cadence() {
        let mut t = ToneSource::new();
        let mut frame = [0i16; 160];
        assert!(t.fill(&mut frame));
        assert!(frame.iter().any(|s| s.abs() > 1000), "tone is on first");
        // Skip to 1 s: inside the 1.5 s pause.
        for _ in 0..49 {
            t.fill(&mut frame);
        }
        assert!(frame.iter().all(|s| *s == 0), "then silent");
    }
}
