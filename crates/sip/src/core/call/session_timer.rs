//! RFC 4028 session timers, as a B2BUA applies them to its two legs.
//!
//! Each leg negotiates on its own: toward the caller we ask the caller to
//! refresh (`refresher=uac`) when it supports timers; toward the callee we
//! offer timers and accept the refresher it picks. Refreshes (re-INVITE or
//! UPDATE) are relayed end to end, so one refresh keeps both legs alive.
//! When nobody would refresh a leg that negotiated timers, we refresh it
//! ourselves with UPDATE. When the interval passes without a refresh the
//! call ends (`session_timer_expired`).

use super::super::msg::Msg;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}

/// A parsed `Session-Expires` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    pub secs: u32,
    pub refresher: Option<Refresher>,
}

pub fn parse_session_expires(m: &Msg) -> Option<SessionExpires> {
    let v = m.header("Session-Expires")?;
    let mut parts = v.split(';');
    let secs = parts.next()?.trim().parse::<u32>().ok()?;
    let mut refresher = None;
    for p in parts {
        if let Some((k, val)) = p.split_once('=') {
            if k.trim().eq_ignore_ascii_case("refresher") {
                refresher = match val.trim().to_ascii_lowercase().as_str() {
                    "uac" => Some(Refresher::Uac),
                    "uas" => Some(Refresher::Uas),
                    _ => None,
                };
            }
        }
    }
    Some(SessionExpires { secs, refresher })
}

/// The peer said it supports (or requires) the `timer` extension.
pub fn supports_timer(m: &Msg) -> bool {
    ["Supported", "Require"].iter().any(|h| {
        m.header_list(h)
            .iter()
            .any(|t| t.trim().eq_ignore_ascii_case("timer"))
    })
}

/// The peer accepts UPDATE (RFC 3311) in this dialog.
pub fn allows_update(m: &Msg) -> bool {
    m.header_list("Allow")
        .iter()
        .any(|t| t.trim().eq_ignore_ascii_case("UPDATE"))
}

/// The Min-SE a request asks for (RFC 4028 section 5), at least 90.
pub fn min_se(m: &Msg) -> u32 {
    m.header("Min-SE")
        .and_then(|v| v.split(';').next())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(90)
        .max(90)
}

/// The session interval for a new call: the caller's wish capped by ours,
/// never below either side's minimum. `Err(min)` when the caller asked for
/// less than our minimum (answer 422 with `Min-SE: min`).
pub fn interval_for(invite: &Msg, ours: u32, our_min: u32) -> Result<u32, u32> {
    let our_min = our_min.max(90);
    let theirs = parse_session_expires(invite);
    if let Some(se) = theirs {
        if se.secs < our_min {
            return Err(our_min);
        }
    }
    let wanted = theirs.map_or(ours, |se| se.secs.min(ours));
    Ok(wanted.max(our_min).max(min_se(invite)))
}

/// When the non-refresher gives up on a session refreshed last at `last`
/// (RFC 4028 section 10: a little before the interval ends).
pub fn expiry_ms(last_ms: u64, secs: u32) -> u64 {
    let secs = secs as u64;
    last_ms + (secs - (secs / 3).min(32)) * 1000
}

/// When the refresher sends its refresh: half the interval.
pub fn refresh_ms(last_ms: u64, secs: u32) -> u64 {
    last_ms + secs as u64 * 500
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::msg::Limits;

    fn invite(extra: &str) -> Msg {
        let raw = format!(
            "INVITE sip:1000@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:1000@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Msg::parse(raw.as_bytes(), &Limits::default()).expect("valid")
    }

    #[test]
    fn negotiation() {
        assert_eq!(interval_for(&invite(""), 1800, 90), Ok(1800));
        assert_eq!(
            interval_for(&invite("Session-Expires: 600\r\n"), 1800, 90),
            Ok(600)
        );
        assert_eq!(
            interval_for(&invite("x: 3600;refresher=uac\r\n"), 1800, 90),
            Ok(1800)
        );
        assert_eq!(
            interval_for(&invite("Session-Expires: 60\r\n"), 1800, 90),
            Err(90)
        );
        assert_eq!(
            interval_for(
                &invite("Session-Expires: 900\r\nMin-SE: 1200\r\n"),
                1800,
                90
            ),
            Ok(1200)
        );
        let se = parse_session_expires(&invite("Session-Expires: 900;refresher=uas\r\n"));
        assert_eq!(
            se,
            Some(SessionExpires {
                secs: 900,
                refresher: Some(Refresher::Uas)
            })
        );
        assert!(supports_timer(&invite("Supported: replaces, timer\r\n")));
        assert!(supports_timer(&invite("k: timer\r\n")));
        assert!(!supports_timer(&invite("Supported: replaces\r\n")));
        assert_eq!(expiry_ms(0, 90), 60_000);
        assert_eq!(expiry_ms(0, 1800), 1_768_000);
        assert_eq!(refresh_ms(0, 1800), 900_000);
    }
}
