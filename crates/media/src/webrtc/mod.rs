//! The WebRTC leg of the media plane: the browser side of an anchored call.
//!
//! A [`WebRtcLeg`] wraps one `str0m::Rtc` (pinned `=0.25.0`) in RTP mode:
//! ICE-lite (the server only answers the browser's connectivity checks), one
//! DTLS certificate shared by every leg, rtcp-mux, a host candidate per
//! configured address on the leg's port. Packets cross it already decrypted as
//! the shared [`crate::packet::RtpPacket`]; G.711 is passed through without
//! decoding, and the relay above decides SSRC, sequence numbers and timestamps.
//!
//! Sans-IO like the rest of the crate: every input carries its `Instant`, every
//! output (datagram, deadline, event) is polled. str0m's single-mutation
//! invariant (drain `poll_output` after every mutation) is kept inside the
//! wrapper, and every call into str0m runs under `catch_unwind`: str0m panics
//! on broken internal invariants by design, and one faulty call must never take
//! the media thread (and the other calls) down. A panic marks the leg dead and
//! surfaces as [`WebRtcEvent::Failed`].
//!
//! Crypto backend: `aws-lc-rs`. The pure-Rust `rust-crypto` backend was the
//! first choice (no C/assembly build on a 2-core CI machine), but str0m 0.25.0
//! requires `str0m-rust-crypto` 0.7, which the crates.io index reachable here
//! does not carry (its newest is 0.6.0), so it cannot resolve. `aws-lc-rs` needs
//! only a C compiler (no cmake, no Go): on this 2-core machine, shared with
//! three other builds, a cold `cargo build -p media` took 3 min 48 s of which
//! the aws-lc-sys C build was 49 s (measured with `cargo build --timings`).
//!
//! The shell shares one UDP port between many legs: [`demux`] routes the first
//! datagram of a browser by the ICE username fragment in its STUN check, and
//! later ones by source address, with maps (never a scan over calls).

mod config;
pub mod demux;
mod leg;
mod sdp;

pub use config::{WebRtcConfig, WebRtcSettings};
pub use demux::{classify, stun_local_ufrag, DatagramKind, WebRtcDemux};
pub use leg::{
    DropCounters, EgressStats, IngressStats, LegOptions, MediaDirection, SendError, Transmit,
    WebRtcEvent, WebRtcLeg, WebRtcStats,
};
pub use sdp::{check_webrtc_offer, with_narrowband_opus};

/// Why a WebRTC operation failed. None of these is fatal to other legs; a
/// [`WebRtcError::Dead`] leg has to be dropped by its owner.
#[derive(Debug, thiserror::Error)]
pub enum WebRtcError {
    #[error("invalid WebRTC configuration: {0}")]
    Config(String),
    /// The peer's SDP is not WebRTC (for example a plain RTP/AVP offer from a
    /// desk phone): it needs the plain RTP leg, not this one.
    #[error("not a WebRTC offer: {0}")]
    NotWebRtc(String),
    #[error("SDP rejected: {0}")]
    Sdp(String),
    #[error("no offer of ours is waiting for an answer")]
    NoPendingOffer,
    #[error("the WebRTC leg is dead (closed or its str0m instance failed)")]
    Dead,
}
