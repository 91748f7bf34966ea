//! Sans-IO building blocks of the media plane.
//!
//! Nothing in this module does I/O, spawns a task or reads a clock: time is
//! always an argument (an [`std::time::Instant`] the shell read when a packet
//! arrived or a timer fired), and outputs are values or bytes the caller
//! sends or writes. Everything here is pure and can be unit-tested without a
//! runtime; every parser of network or user input returns an error on
//! truncated or garbage input and never panics.
//!
//! Where things are:
//! - [`rtcp`] — RTCP SR/RR/SDES/BYE parse and build, compound packets,
//!   round-trip time from LSR/DLSR (RFC 3550 §6.4);
//! - [`stats`] — per-direction receive statistics (RFC 3550 A.1, A.3, A.8):
//!   loss, sequence wrap, interarrival jitter, the figures a report block
//!   needs; send counters for sender reports;
//! - [`quality`] — estimated MOS from the ITU-T G.107 E-model and a
//!   good / fair / poor class;
//! - [`dtmf`] — RFC 4733 telephone-events (payload, generator, receiver) and
//!   the SIP INFO bodies (`application/dtmf-relay`, `application/dtmf`);
//! - [`g711`] — µ-law and A-law to and from 16-bit linear PCM;
//! - [`sdp`] — plain RTP/AVP SDP: parse a phone's or carrier's offer/answer,
//!   build ours, negotiate an answer;
//! - [`timeline`] — RTP timestamps onto a common sample timeline and a
//!   position-addressed sample buffer (shared by the recorder and, later,
//!   the mixer);
//! - [`wav`] and [`recorder`] — the stereo WAV format and the recorder that
//!   lays both sides of a call out on one timeline;
//! - [`opus`], [`transcode`] — opus at 8 kHz (libopus) and the per-direction
//!   opus ↔ G.711 / PCMU ↔ PCMA transcoder with loss concealment;
//! - [`egress`] — frame sources a leg can hear instead of (later: mixed
//!   with) the other party: hold chime, looping WAV, silence; and the
//!   packetizer that turns their frames into RTP.

pub mod dtmf;
pub mod egress;
pub mod g711;
pub mod opus;
pub mod quality;
pub mod recorder;
pub mod rtcp;
pub mod sdp;
pub mod stats;
pub mod timeline;
pub mod transcode;
pub mod wav;

#[cfg(test)]
pub(crate) mod testaudio;
#[cfg(test)]
pub(crate) mod testutil;
