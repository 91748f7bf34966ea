//! Signal helpers for the codec and egress tests: test tones and
//! measurements that tell a right frequency and level from a wrong one.

use std::f64::consts::PI;

/// `n` samples of a sine at 8 kHz.
pub(crate) fn sine(n: usize, frequency: f64, amplitude: f64) -> Vec<i16> {
    (0..n)
        .map(|i| (amplitude * (2.0 * PI * frequency * i as f64 / 8_000.0).sin()).round() as i16)
        .collect()
}

/// Amplitude of the `frequency` component of `x` (8 kHz), by the Goertzel
/// recurrence: a full-scale-`a` sine at exactly that frequency gives ≈ `a`.
pub(crate) fn goertzel(x: &[i16], frequency: f64) -> f64 {
    let w = 2.0 * PI * frequency / 8_000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = f64::from(v) + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2).max(0.0).sqrt() * 2.0 / x.len() as f64
}

/// The strongest frequency of `x` between 100 and 3,900 Hz, in 10 Hz steps.
pub(crate) fn dominant_frequency(x: &[i16]) -> f64 {
    let mut best = (0.0, f64::MIN);
    for step in 10..390 {
        let f = f64::from(step) * 10.0;
        let a = goertzel(x, f);
        if a > best.1 {
            best = (f, a);
        }
    }
    best.0
}

/// Root mean square of `x`.
pub(crate) fn rms(x: &[i16]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

/// Sign changes per second (8 kHz): twice the frequency of a pure tone.
pub(crate) fn zero_crossings_per_second(x: &[i16]) -> f64 {
    let crossings = x.windows(2).filter(|w| (w[0] >= 0) != (w[1] >= 0)).count();
    crossings as f64 * 8_000.0 / x.len() as f64
}
