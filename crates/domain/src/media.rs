//! Whether centralita anchors a call's media (puts itself in the audio
//! path): a policy decision, so it lives here and the SIP core only asks.

use serde::{Deserialize, Serialize};

/// `media.anchor` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnchorMode {
    /// Every call: measured, recordable, NAT-proof, hold music.
    Always,
    /// Only when the legs cannot talk directly (WebRTC on one side, plain
    /// RTP/AVP on the other).
    WhenNeeded,
    /// Never: SDP is relayed unchanged and the phones send media to each other.
    #[default]
    Never,
}

impl AnchorMode {
    pub fn parse(s: &str) -> Option<AnchorMode> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "always" => Some(AnchorMode::Always),
            "when_needed" => Some(AnchorMode::WhenNeeded),
            "never" => Some(AnchorMode::Never),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AnchorMode::Always => "always",
            AnchorMode::WhenNeeded => "when_needed",
            AnchorMode::Never => "never",
        }
    }
}

/// What a leg speaks: ICE + DTLS-SRTP (a browser) or plain RTP/AVP (a
/// phone, a carrier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LegKind {
    WebRtc,
    Plain,
}

impl LegKind {
    /// A leg's kind from what is known of it: its SDP offer (a WebRTC
    /// offer uses the `UDP/TLS/RTP/SAVPF` profile) or, for a callee we
    /// have not heard from yet, the transport of its contact (browsers
    /// register over WebSocket).
    pub fn of(sdp: Option<&[u8]>, websocket: bool) -> LegKind {
        let savpf = sdp.is_some_and(|b| {
            String::from_utf8_lossy(b)
                .lines()
                .any(|l| l.starts_with("m=audio") && l.contains("UDP/TLS/RTP/SAVPF"))
        });
        if savpf || (sdp.is_none_or(|b| b.is_empty()) && websocket) {
            LegKind::WebRtc
        } else {
            LegKind::Plain
        }
    }
}

/// Whether a call between a caller of kind `caller` and callees of kinds
/// `callees` is anchored. `when_needed` anchors as soon as one callee
/// differs from the caller (all forks of a call are then anchored: one
/// media session per call, so the winner need not be known in advance).
pub fn anchors(mode: AnchorMode, caller: LegKind, callees: &[LegKind]) -> bool {
    match mode {
        AnchorMode::Always => true,
        AnchorMode::Never => false,
        AnchorMode::WhenNeeded => callees.iter().any(|k| *k != caller),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LegKind::*;

    #[test]
    fn decision() {
        assert!(anchors(AnchorMode::Always, Plain, &[Plain]));
        assert!(!anchors(AnchorMode::Never, WebRtc, &[Plain]));
        assert!(anchors(AnchorMode::WhenNeeded, WebRtc, &[Plain]));
        assert!(anchors(AnchorMode::WhenNeeded, Plain, &[Plain, WebRtc]));
        assert!(!anchors(AnchorMode::WhenNeeded, WebRtc, &[WebRtc]));
        assert!(!anchors(AnchorMode::WhenNeeded, Plain, &[]));
    }

    #[test]
    fn kinds() {
        let webrtc = b"v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\n";
        let plain = b"v=0\r\nm=audio 4000 RTP/AVP 0 8\r\n";
        assert_eq!(LegKind::of(Some(webrtc), false), WebRtc);
        assert_eq!(LegKind::of(Some(plain), true), Plain);
        assert_eq!(LegKind::of(None, true), WebRtc);
        assert_eq!(LegKind::of(None, false), Plain);
        assert_eq!(
            AnchorMode::parse("When-Needed"),
            Some(AnchorMode::WhenNeeded)
        );
        assert_eq!(AnchorMode::parse("sometimes"), None);
    }
}
