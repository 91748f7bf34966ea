//! DTMF in SIP INFO bodies.
//!
//! - `application/dtmf-relay`: `Signal=5\r\nDuration=160\r\n`, what JsSIP
//!   sends by default (`RTCSession/DTMF.js`: `Signal=${tone}\r\nDuration=${duration}`,
//!   duration in ms) and what it parses on an incoming INFO: `Signal` on the
//!   first line as one character of `[0-9A-D#*]`, `Duration` on the second
//!   with at most 4 digits. [`build_dtmf_relay`] writes exactly that form.
//!   Other phones send `Signal=10` for `*`, `Signal=11` for `#` and
//!   `Signal=16` for hook flash; the parser takes both forms, keys in any
//!   case and order, and LF or CRLF.
//! - `application/dtmf`: the digit alone (RFC 2976 era devices).

use std::time::Duration;

use super::{Digit, DtmfError};

/// Longer bodies are not DTMF (and not worth scanning).
const MAX_BODY: usize = 1024;
/// JsSIP reads at most 4 duration digits.
const MAX_DURATION_MS: u64 = 9_999;

/// A digit from an INFO body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InfoDtmf {
    pub digit: Digit,
    /// `Duration`, when the body gave one.
    pub duration: Option<Duration>,
}

/// A `Signal` value: one character, or an event number 0–16.
fn parse_signal(value: &str) -> Result<Digit, DtmfError> {
    let value = value.trim();
    let mut chars = value.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        return Digit::from_char(c).ok_or(DtmfError::BadBody("unknown signal"));
    }
    let code: u8 = value
        .parse()
        .map_err(|_| DtmfError::BadBody("unknown signal"))?;
    Digit::from_event(code).ok_or(DtmfError::BadBody("signal out of range"))
}

/// Parses an `application/dtmf-relay` body.
pub fn parse_dtmf_relay(body: &str) -> Result<InfoDtmf, DtmfError> {
    if body.len() > MAX_BODY {
        return Err(DtmfError::BadBody("too long"));
    }
    let mut digit = None;
    let mut duration = None;
    for line in body.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(DtmfError::BadBody("line without '='"));
        };
        let key = key.trim();
        if key.eq_ignore_ascii_case("signal") {
            digit = Some(parse_signal(value)?);
        } else if key.eq_ignore_ascii_case("duration") {
            let ms: u64 = value
                .trim()
                .parse()
                .map_err(|_| DtmfError::BadBody("bad duration"))?;
            duration = Some(Duration::from_millis(ms));
        }
        // Other keys are ignored.
    }
    let digit = digit.ok_or(DtmfError::BadBody("no Signal"))?;
    Ok(InfoDtmf { digit, duration })
}

/// Builds an `application/dtmf-relay` body JsSIP understands. The duration
/// is written in ms, clamped to 1..=9999 (JsSIP reads 4 digits); flash is
/// written as `Signal=16` (JsSIP ignores it; other phones know it).
pub fn build_dtmf_relay(digit: Digit, duration: Duration) -> String {
    let ms = (duration.as_millis() as u64).clamp(1, MAX_DURATION_MS);
    match digit.to_char() {
        Some(c) => format!("Signal={c}\r\nDuration={ms}\r\n"),
        None => format!("Signal={}\r\nDuration={ms}\r\n", digit.event()),
    }
}

/// Parses an `application/dtmf` body (the digit, maybe with whitespace).
pub fn parse_dtmf(body: &str) -> Result<Digit, DtmfError> {
    if body.len() > MAX_BODY {
        return Err(DtmfError::BadBody("too long"));
    }
    let value = body.trim();
    if value.is_empty() {
        return Err(DtmfError::BadBody("empty"));
    }
    parse_signal(value)
}

/// Builds an `application/dtmf` body.
pub fn build_dtmf(digit: Digit) -> String {
    match digit.to_char() {
        Some(c) => c.to_string(),
        None => digit.event().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testutil::Rng;

    fn d(c: char) -> Digit {
        Digit::from_char(c).expect("digit")
    }

    #[test]
    fn parses_what_jssip_sends() {
        // JsSIP: no trailing CRLF.
        let got = parse_dtmf_relay("Signal=5\r\nDuration=160").expect("body");
        assert_eq!(got.digit, d('5'));
        assert_eq!(got.duration, Some(Duration::from_millis(160)));
        let star = parse_dtmf_relay("Signal=*\r\nDuration=100\r\n").expect("body");
        assert_eq!(star.digit, d('*'));
    }

    #[test]
    fn parses_other_phones_variants() {
        for (body, digit, ms) in [
            ("Signal= 11\nDuration= 250\n", d('#'), Some(250)),
            ("signal=10\r\n", d('*'), None),
            ("Duration=80\r\nSignal=b\r\n", d('B'), Some(80)),
            ("Signal=16\r\nDuration=500\r\n", Digit::FLASH, Some(500)),
            (
                "Signal=1\r\nDuration=160\r\nVolume=10\r\n",
                d('1'),
                Some(160),
            ),
        ] {
            let got = parse_dtmf_relay(body).expect(body);
            assert_eq!(got.digit, digit, "{body:?}");
            assert_eq!(got.duration, ms.map(Duration::from_millis), "{body:?}");
        }
    }

    #[test]
    fn rejects_bad_bodies() {
        for body in [
            "",
            "Duration=100",
            "Signal=E",
            "Signal=17",
            "Signal=",
            "Signal=5\r\nDuration=abc",
            "Signal 5",
            "Signal=55x",
        ] {
            assert!(parse_dtmf_relay(body).is_err(), "{body:?}");
        }
        assert!(parse_dtmf_relay(&"Signal=1\n".repeat(200)).is_err());
    }

    #[test]
    fn builds_the_form_jssip_parses() {
        let body = build_dtmf_relay(d('5'), Duration::from_millis(160));
        assert_eq!(body, "Signal=5\r\nDuration=160\r\n");
        // JsSIP's own regexes, by hand: line 1 "Signal=" + one of
        // [0-9A-D#*], line 2 "Duration=" + 1 to 4 digits.
        for c in "0123456789*#ABCD".chars() {
            let body = build_dtmf_relay(d(c), Duration::from_secs(60));
            let mut lines = body.split('\n');
            assert_eq!(lines.next(), Some(format!("Signal={c}\r").as_str()));
            assert_eq!(lines.next(), Some("Duration=9999\r"));
            assert_eq!(parse_dtmf_relay(&body).expect("own").digit, d(c));
        }
        assert_eq!(
            build_dtmf_relay(Digit::FLASH, Duration::ZERO),
            "Signal=16\r\nDuration=1\r\n"
        );
    }

    #[test]
    fn application_dtmf() {
        assert_eq!(parse_dtmf("7\r\n"), Ok(d('7')));
        assert_eq!(parse_dtmf(" # "), Ok(d('#')));
        assert_eq!(parse_dtmf("16"), Ok(Digit::FLASH));
        assert!(parse_dtmf("").is_err());
        assert!(parse_dtmf("12x").is_err());
        assert_eq!(build_dtmf(d('A')), "A");
        assert_eq!(build_dtmf(Digit::FLASH), "16");
    }

    #[test]
    fn garbage_bodies_never_panic() {
        let mut rng = Rng::new(0x5eed_0004);
        let valid = b"Signal=5\r\nDuration=160\r\n";
        for _ in 0..20_000 {
            let bytes = if rng.below(2) == 0 {
                rng.bytes(40)
            } else {
                rng.mutate(valid)
            };
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_dtmf_relay(&text);
            let _ = parse_dtmf(&text);
        }
    }
}
