//! The audio formats a leg can negotiate. Payload type numbers are per leg
//! (a browser's opus may be 111, a carrier's telephone-event 101 or 96), so
//! the relay maps formats, not numbers.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, 8 kHz (static payload type 0).
    Pcmu,
    /// G.711 A-law, 8 kHz (static payload type 8).
    Pcma,
    /// Opus, RTP clock 48 kHz (RFC 7587).
    Opus,
    /// RFC 4733 named events (DTMF) at the given RTP clock rate.
    TelephoneEvent { clock_rate: u32 },
}

impl Codec {
    /// The RTP clock rate, which the timestamp advances by per second.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8_000,
            Codec::Opus => 48_000,
            Codec::TelephoneEvent { clock_rate } => clock_rate,
        }
    }

    /// The encoding name SDP gives it (`a=rtpmap`).
    pub fn sdp_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::Opus => "opus",
            Codec::TelephoneEvent { .. } => "telephone-event",
        }
    }
}
