//! An RTP packet as the legs exchange it: header fields already parsed (and,
//! on a WebRTC leg, already decrypted), payload shared without copying.
//!
//! Both legs speak this type, so the relay between them is a header rewrite
//! (SSRC, sequence number, timestamp per direction) and a payload-type
//! mapping, never a re-parse.

use bytes::Bytes;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub marker: bool,
    pub payload: Bytes,
}
