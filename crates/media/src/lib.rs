//! centralita's media plane: the server in the audio path of a call.
//!
//! `core` does no I/O and reads no clock: every input comes with the `Instant`
//! it happened at, every output (a datagram to send, the next deadline, an
//! event for the call) is polled. The shell owns the UDP sockets and the
//! timers and drives one core per call; one faulty call can never take the
//! others down.
//!
//! Shared vocabulary between the legs (plain RTP/AVP toward phones and
//! carriers, WebRTC toward browsers) lives in [`packet`] and [`codec`].

pub mod anchor;
pub mod codec;
pub mod core;
pub mod packet;
pub mod relay;
pub mod shell;
pub mod webrtc;
