//! A speech-like test signal shared by the benchmarks (`#[path]`-included):
//! codec work depends on the content, and a pure tone flatters it.

/// A voice-like test signal at `rate`: a glottal-pulse-rich harmonic series
/// whose pitch glides, syllables (3 per second) and a pause every 2 s, a
/// little noise. The encoder's work depends on the content; a pure tone
/// would flatter it.
pub fn speech_like(seconds: usize, rate: usize) -> Vec<i16> {
    let mut out = Vec::with_capacity(seconds * rate);
    let mut phase = 0.0f64;
    let mut seed: u32 = 0x2545_f491;
    for i in 0..seconds * rate {
        let t = i as f64 / rate as f64;
        let f0 = 120.0 + 50.0 * (2.0 * std::f64::consts::PI * 0.4 * t).sin();
        phase += 2.0 * std::f64::consts::PI * f0 / rate as f64;
        let syllable = (0.5 + 0.5 * (2.0 * std::f64::consts::PI * 3.0 * t).sin()).powi(2);
        let talking = if t % 2.0 < 1.6 { 1.0 } else { 0.0 };
        let mut voiced = 0.0;
        for h in 1..=20 {
            // A formant-ish emphasis around 500 Hz and 1.5 kHz.
            let f = h as f64 * f0;
            let gain = 1.0 / h as f64
                * (1.0
                    + 2.0 * (-((f - 500.0) / 200.0).powi(2)).exp()
                    + (-((f - 1_500.0) / 300.0).powi(2)).exp());
            if f < rate as f64 / 2.0 {
                voiced += gain * (h as f64 * phase).sin();
            }
        }
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let noise = (f64::from(seed >> 16) / 65_536.0 - 0.5) * 0.02;
        out.push(((voiced * 0.15 * syllable * talking + noise) * 16_000.0) as i16);
    }
    out
}
