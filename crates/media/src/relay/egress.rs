//! Egress sources: audio the relay itself sends toward a leg instead of
//! (or, later, mixed with) what the far leg sends. Hold music is the first
//! one; a per-call mixer (supervisor whisper, conference) will be another:
//! it produces, for each participant, the next frame of linear audio.
//!
//! A source fills one frame of 8 kHz mono linear PCM; the relay encodes it
//! into the leg's G.711 codec and stamps it into the leg's outgoing stream
//! (same SSRC, continuous sequence numbers and timestamps).

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

/// G.711 µ-law encoding of one sample (ITU-T G.711, with the usual bias
/// of 0x84). Kept here so the relay does not depend on the codec module;
/// the two should merge once both exist.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32_635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let exponent = (7 - (s.leading_zeros() as i32 - 17)).clamp(0, 7);
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// G.711 A-law encoding of one sample.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut s = i32::from(sample) >> 3; // 13-bit magnitude
    let sign = if s >= 0 {
        0x80
    } else {
        s = -s - 1;
        0
    };
    let s = s.min(0x0fff);
    let out = if s < 32 {
        (s >> 1) as u8
    } else {
        let exponent = (31 - s.leading_zeros() as i32) - 4; // 1..=7
        let mantissa = (s >> exponent) & 0x0f;
        ((exponent << 4) as u8) | mantissa as u8
    };
    (sign | out) ^ 0x55
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_reference_points() {
        // G.711 µ-law: 0 -> 0xff, full scale -> 0x80 / 0x00.
        assert_eq!(linear_to_ulaw(0), 0xff);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_ulaw(-1), 0x7f);
    }

    #[test]
    fn alaw_reference_points() {
        // G.711 A-law: small positive -> 0xd5, small negative -> 0x55.
        assert_eq!(linear_to_alaw(0), 0xd5);
        assert_eq!(linear_to_alaw(-8), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xaa);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2a);
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
