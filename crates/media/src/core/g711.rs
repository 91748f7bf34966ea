//! ITU-T G.711 µ-law (PCMU) and A-law (PCMA) to and from 16-bit linear PCM.
//!
//! Written in-house rather than taken from a crate: it is a few lines of bit
//! arithmetic, it keeps the core free of dependencies, and the decoder
//! tables are built at compile time. Encoding follows the segment/mantissa
//! rules of G.711 (µ-law: 14-bit magnitude biased by 33, code inverted;
//! A-law: 13-bit magnitude, even bits toggled with 0x55). The 16-bit input
//! is rounded to 14/13 bits first. Encoder and decoder are checked
//! bit-exactly against sox in the tests (`testdata/g711_*`).
//!
//! Frames are slices so the same functions serve the relay's transcoding,
//! the recorder and, later, the mixer; the `*_into` forms reuse a buffer.

use crate::codec::Codec;

/// The codec given to [`decode_into`]/[`encode_into`] is not G.711.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not G.711")]
pub struct NotG711(pub Codec);

/// Decodes a PCMU or PCMA payload, appending to `out` (the entry point the
/// recorder and the mixer use, whatever law a leg negotiated).
pub fn decode_into(codec: Codec, payload: &[u8], out: &mut Vec<i16>) -> Result<(), NotG711> {
    match codec {
        Codec::Pcmu => decode_ulaw_into(payload, out),
        Codec::Pcma => decode_alaw_into(payload, out),
        other => return Err(NotG711(other)),
    }
    Ok(())
}

/// Encodes PCM as PCMU or PCMA, appending to `out`.
pub fn encode_into(codec: Codec, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), NotG711> {
    match codec {
        Codec::Pcmu => encode_ulaw_into(pcm, out),
        Codec::Pcma => encode_alaw_into(pcm, out),
        other => return Err(NotG711(other)),
    }
    Ok(())
}

/// µ-law code → linear sample, for all 256 codes.
static ULAW_TO_LINEAR: [i16; 256] = build_ulaw_table();
/// A-law code → linear sample, for all 256 codes.
static ALAW_TO_LINEAR: [i16; 256] = build_alaw_table();

/// Decoder bias on the 16-bit scale (33 on the 14-bit scale, shifted by 2).
const ULAW_BIAS: i32 = 0x84;
/// Encoder bias and clip on the 14-bit scale.
const ULAW_BIAS_14: i32 = 0x21;
const ULAW_CLIP_14: i32 = 8_159;

const fn ulaw_decode_const(code: u8) -> i16 {
    let u = !code;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0f) as i32;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn alaw_decode_const(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mantissa = (a & 0x0f) as i32;
    let segment = ((a >> 4) & 0x07) as i32;
    let magnitude = if segment == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (segment - 1)
    };
    // A-law sets the sign bit for positive samples.
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn build_ulaw_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = ulaw_decode_const(i as u8);
        i += 1;
    }
    table
}

const fn build_alaw_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = alaw_decode_const(i as u8);
        i += 1;
    }
    table
}

/// One linear sample to a µ-law code.
///
/// G.711 µ-law is defined on 14-bit samples; the 16-bit sample is rounded
/// to the nearest 14-bit value first (as sox does), which halves the
/// quantisation error of plain truncation near the segment edges.
#[inline]
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let x = ((sample as i32 + 2) >> 2).min(8_191);
    let (mask, magnitude) = if x < 0 { (0x7f, -x) } else { (0xff, x) };
    let biased = magnitude.min(ULAW_CLIP_14) + ULAW_BIAS_14;
    // Segment: how many times the biased magnitude exceeds 0x3f doubled.
    let segment = (32 - biased.leading_zeros() as i32 - 6).max(0);
    if segment >= 8 {
        return 0x7f ^ mask;
    }
    let mantissa = (biased >> (segment + 1)) & 0x0f;
    (((segment << 4) | mantissa) as u8) ^ mask
}

/// One µ-law code to a linear sample.
#[inline]
pub fn ulaw_to_linear(code: u8) -> i16 {
    ULAW_TO_LINEAR[code as usize]
}

/// One linear sample to an A-law code.
///
/// G.711 A-law is defined on 13-bit samples; the 16-bit sample is rounded
/// to the nearest 13-bit value first (as sox does).
#[inline]
pub fn linear_to_alaw(sample: i16) -> u8 {
    let x = ((sample as i32 + 4) >> 3).min(4_095);
    // A-law sets the sign bit for positive samples; even bits are toggled.
    let (mask, magnitude) = if x >= 0 { (0xd5, x) } else { (0x55, -x - 1) };
    let segment = (32 - magnitude.leading_zeros() as i32 - 5).max(0);
    if segment >= 8 {
        return 0x7f ^ mask;
    }
    let mantissa = if segment < 2 {
        (magnitude >> 1) & 0x0f
    } else {
        (magnitude >> segment) & 0x0f
    };
    (((segment << 4) | mantissa) as u8) ^ mask
}

/// One A-law code to a linear sample.
#[inline]
pub fn alaw_to_linear(code: u8) -> i16 {
    ALAW_TO_LINEAR[code as usize]
}

/// Encodes `pcm` as µ-law, appending to `out`.
pub fn encode_ulaw_into(pcm: &[i16], out: &mut Vec<u8>) {
    out.extend(pcm.iter().map(|&s| linear_to_ulaw(s)));
}

/// Decodes µ-law `payload`, appending to `out`.
pub fn decode_ulaw_into(payload: &[u8], out: &mut Vec<i16>) {
    out.extend(payload.iter().map(|&c| ulaw_to_linear(c)));
}

/// Encodes `pcm` as A-law, appending to `out`.
pub fn encode_alaw_into(pcm: &[i16], out: &mut Vec<u8>) {
    out.extend(pcm.iter().map(|&s| linear_to_alaw(s)));
}

/// Decodes A-law `payload`, appending to `out`.
pub fn decode_alaw_into(payload: &[u8], out: &mut Vec<i16>) {
    out.extend(payload.iter().map(|&c| alaw_to_linear(c)));
}

/// Encodes `pcm` as µ-law.
pub fn encode_ulaw(pcm: &[i16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pcm.len());
    encode_ulaw_into(pcm, &mut out);
    out
}

/// Decodes µ-law.
pub fn decode_ulaw(payload: &[u8]) -> Vec<i16> {
    let mut out = Vec::with_capacity(payload.len());
    decode_ulaw_into(payload, &mut out);
    out
}

/// Encodes `pcm` as A-law.
pub fn encode_alaw(pcm: &[i16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pcm.len());
    encode_alaw_into(pcm, &mut out);
    out
}

/// Decodes A-law.
pub fn decode_alaw(payload: &[u8]) -> Vec<i16> {
    let mut out = Vec::with_capacity(payload.len());
    decode_alaw_into(payload, &mut out);
    out
}

/// The µ-law code of digital silence (linear 0).
pub const ULAW_SILENCE: u8 = 0xff;
/// The A-law code of digital silence (linear 0 encodes to +8).
pub const ALAW_SILENCE: u8 = 0xd5;

#[cfg(test)]
mod tests {
    use super::*;

    /// The linear input the sox vectors were made from: every 7th value of
    /// the i16 range, then the extremes (see testdata/README).
    fn sox_input() -> Vec<i16> {
        let mut v: Vec<i16> = (i16::MIN as i32..=i16::MAX as i32)
            .step_by(7)
            .map(|x| x as i16)
            .collect();
        v.extend_from_slice(&[i16::MIN, -1, 0, 1, i16::MAX]);
        v
    }

    fn le_i16(bytes: &[u8]) -> Vec<i16> {
        bytes
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn encoders_match_sox() {
        let input = sox_input();
        let ulaw = include_bytes!("testdata/g711_ramp.ulaw");
        let alaw = include_bytes!("testdata/g711_ramp.alaw");
        assert_eq!(ulaw.len(), input.len());
        assert_eq!(encode_ulaw(&input), ulaw.to_vec());
        assert_eq!(encode_alaw(&input), alaw.to_vec());
    }

    #[test]
    fn decoders_match_sox() {
        let codes: Vec<u8> = (0..=255).collect();
        let ulaw = le_i16(include_bytes!("testdata/g711_codes_ulaw.s16"));
        let alaw = le_i16(include_bytes!("testdata/g711_codes_alaw.s16"));
        assert_eq!(decode_ulaw(&codes), ulaw);
        assert_eq!(decode_alaw(&codes), alaw);
    }

    #[test]
    fn every_code_round_trips() {
        for code in 0..=255u8 {
            let u = ulaw_to_linear(code);
            // 0x7f and 0xff both decode to 0; the encoder picks 0xff.
            let back = linear_to_ulaw(u);
            assert_eq!(ulaw_to_linear(back), u, "µ-law code {code:#x}");
            let a = alaw_to_linear(code);
            assert_eq!(linear_to_alaw(a), code, "A-law code {code:#x}");
        }
    }

    #[test]
    fn quantisation_error_is_bounded() {
        // The step doubles per segment; the error relative to the
        // magnitude stays under about 1/16 above the first segments.
        for x in (i16::MIN as i32 + 1..=i16::MAX as i32).step_by(3) {
            let s = x as i16;
            for decoded in [
                ulaw_to_linear(linear_to_ulaw(s)),
                alaw_to_linear(linear_to_alaw(s)),
            ] {
                let err = (decoded as i32 - x).abs();
                let bound = (x.abs() / 16).max(16) + 4;
                assert!(err <= bound, "sample {x} decoded {decoded}");
            }
        }
    }

    #[test]
    fn silence_codes() {
        assert_eq!(linear_to_ulaw(0), ULAW_SILENCE);
        assert_eq!(ulaw_to_linear(ULAW_SILENCE), 0);
        assert_eq!(linear_to_alaw(0), ALAW_SILENCE);
        assert_eq!(alaw_to_linear(ALAW_SILENCE), 8);
    }

    #[test]
    fn dispatch_by_codec() {
        let mut pcm = Vec::new();
        decode_into(Codec::Pcma, &[ALAW_SILENCE], &mut pcm).expect("pcma");
        decode_into(Codec::Pcmu, &[ULAW_SILENCE], &mut pcm).expect("pcmu");
        assert_eq!(pcm, vec![8, 0]);
        let mut bytes = Vec::new();
        encode_into(Codec::Pcmu, &[0], &mut bytes).expect("pcmu");
        encode_into(Codec::Pcma, &[0], &mut bytes).expect("pcma");
        assert_eq!(bytes, vec![ULAW_SILENCE, ALAW_SILENCE]);
        assert_eq!(
            decode_into(Codec::Opus, &[1], &mut pcm),
            Err(NotG711(Codec::Opus))
        );
        assert_eq!(
            encode_into(Codec::Opus, &[1], &mut bytes),
            Err(NotG711(Codec::Opus))
        );
    }

    #[test]
    fn into_forms_append() {
        let mut out = vec![1u8];
        encode_ulaw_into(&[0, 0], &mut out);
        assert_eq!(out, vec![1, 0xff, 0xff]);
        let mut pcm = vec![5i16];
        decode_alaw_into(&[0xd5], &mut pcm);
        assert_eq!(pcm, vec![5, 8]);
    }
}
