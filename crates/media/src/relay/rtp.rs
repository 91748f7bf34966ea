//! A small RTP/RTCP wire parser and writer for the relay (RFC 3550 §5.1,
//! §6.4; RFC 5761 for telling RTCP from RTP on one port).
//!
//! Own code rather than `rtp-types`: the relay needs five header fields and
//! the payload bounds, and the writer must produce exactly the shared
//! [`RtpPacket`]. Every length is checked before it is used: arbitrary bytes
//! give an error, never a panic (see the random-bytes test).

use crate::packet::RtpPacket;
use bytes::Bytes;

/// Why a datagram is not a usable RTP or RTCP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("shorter than the fixed header")]
    TooShort,
    #[error("RTP version is not 2")]
    BadVersion,
    #[error("CSRC list or header extension runs past the end")]
    Truncated,
    #[error("padding length is zero or longer than the payload")]
    BadPadding,
    #[error("RTCP length fields do not add up to the datagram")]
    BadRtcpLength,
    #[error("not an RTCP packet type")]
    NotRtcp,
}

/// The fixed RTP header size.
pub const RTP_HEADER: usize = 12;

/// RFC 5761 §4: on a shared port, a second byte in 192..=223 (payload types
/// 64..=95 with the marker bit set, i.e. RTCP types 192..=223) is RTCP.
pub fn looks_like_rtcp(data: &[u8]) -> bool {
    data.len() >= 2 && (192..=223).contains(&data[1])
}

/// Parses an RTP packet; the payload excludes CSRCs, the header extension
/// and padding. CSRCs and extensions are not carried over: the relay is the
/// source toward each leg (it rewrites the SSRC), so a contributing-source
/// list from the far side would describe a stream the receiver never sees.
pub fn parse_rtp(data: &[u8]) -> Result<RtpPacket, WireError> {
    let h = parse_rtp_header(data)?;
    Ok(RtpPacket {
        payload_type: h.payload_type,
        sequence: h.sequence,
        timestamp: h.timestamp,
        ssrc: h.ssrc,
        marker: h.marker,
        payload: Bytes::copy_from_slice(&data[h.payload_start..h.payload_end]),
    })
}

/// Header fields and the payload bounds of an RTP packet, without copying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload_start: usize,
    pub payload_end: usize,
}

pub fn parse_rtp_header(data: &[u8]) -> Result<RtpHeader, WireError> {
    if data.len() < RTP_HEADER {
        return Err(WireError::TooShort);
    }
    let b0 = data[0];
    if b0 >> 6 != 2 {
        return Err(WireError::BadVersion);
    }
    let padding = b0 & 0x20 != 0;
    let extension = b0 & 0x10 != 0;
    let csrc_count = usize::from(b0 & 0x0f);
    let mut start = RTP_HEADER + 4 * csrc_count;
    if extension {
        // 16-bit profile id, 16-bit length in 32-bit words, then the words.
        let len_at = start + 2;
        let words = data.get(len_at..len_at + 2).ok_or(WireError::Truncated)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    if start > data.len() {
        return Err(WireError::Truncated);
    }
    let mut end = data.len();
    if padding {
        let pad = usize::from(data[end - 1]);
        if pad == 0 || pad > end - start {
            return Err(WireError::BadPadding);
        }
        end -= pad;
    }
    Ok(RtpHeader {
        payload_type: data[1] & 0x7f,
        marker: data[1] & 0x80 != 0,
        sequence: u16::from_be_bytes([data[2], data[3]]),
        timestamp: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
        ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
        payload_start: start,
        payload_end: end,
    })
}

/// Writes `p` as a plain RTP packet (no CSRC, no extension, no padding)
/// into `out`, replacing its contents.
pub fn write_rtp(p: &RtpPacket, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(RTP_HEADER + p.payload.len());
    out.push(0x80);
    out.push((p.payload_type & 0x7f) | if p.marker { 0x80 } else { 0 });
    out.extend_from_slice(&p.sequence.to_be_bytes());
    out.extend_from_slice(&p.timestamp.to_be_bytes());
    out.extend_from_slice(&p.ssrc.to_be_bytes());
    out.extend_from_slice(&p.payload);
}

/// Checks that `data` is a well-formed compound RTCP packet (RFC 3550 §6.1,
/// A.2): version 2 in every part, known packet types (SR, RR, SDES, BYE,
/// APP, RTPFB, PSFB, XR: 200..=207), and length fields that add up to the
/// datagram exactly. Returns the number of parts.
pub fn validate_rtcp(data: &[u8]) -> Result<usize, WireError> {
    if data.len() < 4 {
        return Err(WireError::TooShort);
    }
    let mut at = 0;
    let mut parts = 0;
    while at < data.len() {
        let head = data.get(at..at + 4).ok_or(WireError::BadRtcpLength)?;
        if head[0] >> 6 != 2 {
            return Err(WireError::BadVersion);
        }
        if !(200..=207).contains(&head[1]) {
            return Err(WireError::NotRtcp);
        }
        let words = usize::from(u16::from_be_bytes([head[2], head[3]]));
        at += 4 * (words + 1);
        parts += 1;
    }
    if at != data.len() {
        return Err(WireError::BadRtcpLength);
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(b0: u8, extra: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut v = vec![b0, 0x80 | 8, 0x12, 0x34, 0, 0, 1, 0, 0xde, 0xad, 0xbe, 0xef];
        v.extend_from_slice(extra);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn fixed_header_round_trips() {
        let raw = packet(0x80, &[], &[1, 2, 3]);
        let p = parse_rtp(&raw).expect("valid");
        assert_eq!(p.payload_type, 8);
        assert!(p.marker);
        assert_eq!(p.sequence, 0x1234);
        assert_eq!(p.timestamp, 256);
        assert_eq!(p.ssrc, 0xdead_beef);
        assert_eq!(&p.payload[..], &[1, 2, 3]);
        let mut out = Vec::new();
        write_rtp(&p, &mut out);
        assert_eq!(out, raw);
    }

    #[test]
    fn csrc_extension_and_padding_are_skipped() {
        // CC = 1, X = 1, P = 1: one CSRC, a one-word extension, 2 bytes of padding.
        let mut extra = vec![0, 0, 0, 7];
        extra.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]);
        let mut raw = packet(0x80 | 0x20 | 0x10 | 1, &extra, &[5, 6]);
        raw.extend_from_slice(&[0, 2]);
        let p = parse_rtp(&raw).expect("valid");
        assert_eq!(&p.payload[..], &[5, 6]);
    }

    #[test]
    fn malformed_headers_are_errors() {
        assert_eq!(parse_rtp(&[0x80; 11]), Err(WireError::TooShort));
        assert_eq!(
            parse_rtp(&packet(0x40, &[], &[])),
            Err(WireError::BadVersion)
        );
        // CC = 15 but nothing follows.
        assert_eq!(
            parse_rtp(&packet(0x8f, &[], &[])),
            Err(WireError::Truncated)
        );
        // Extension header announces 100 words.
        assert_eq!(
            parse_rtp(&packet(0x90, &[0, 0, 0, 100], &[])),
            Err(WireError::Truncated)
        );
        // Padding byte 0, and padding longer than the payload.
        assert_eq!(
            parse_rtp(&packet(0xa0, &[], &[1, 0])),
            Err(WireError::BadPadding)
        );
        assert_eq!(
            parse_rtp(&packet(0xa0, &[], &[1, 9])),
            Err(WireError::BadPadding)
        );
    }

    #[test]
    fn rtcp_compound_is_checked_to_the_last_byte() {
        // RR with no report blocks (1 word after the header) + SDES of 2 words.
        let mut rr = vec![0x80, 201, 0, 1, 1, 2, 3, 4];
        rr.extend_from_slice(&[0x81, 202, 0, 2, 1, 2, 3, 4, 0, 0, 0, 0]);
        assert!(looks_like_rtcp(&rr));
        assert_eq!(validate_rtcp(&rr), Ok(2));
        assert_eq!(
            validate_rtcp(&rr[..rr.len() - 1]),
            Err(WireError::BadRtcpLength)
        );
        let mut bad = rr.clone();
        bad[1] = 190;
        assert_eq!(validate_rtcp(&bad), Err(WireError::NotRtcp));
        assert!(!looks_like_rtcp(&packet(0x80, &[], &[0; 4])));
    }

    #[test]
    fn random_bytes_never_panic() {
        // xorshift64*, fixed seed: the same 200,000 inputs every run.
        let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            s.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let mut buf = Vec::with_capacity(64);
        let mut parsed = 0u32;
        for _ in 0..200_000 {
            buf.clear();
            let len = (next() % 64) as usize;
            for _ in 0..len {
                buf.push(next() as u8);
            }
            // Bias half the inputs toward version 2 so the deeper checks run.
            if !buf.is_empty() && next() % 2 == 0 {
                buf[0] = (buf[0] & 0x3f) | 0x80;
            }
            if let Ok(h) = parse_rtp_header(&buf) {
                assert!(h.payload_start <= h.payload_end && h.payload_end <= buf.len());
                parsed += 1;
            }
            let _ = validate_rtcp(&buf);
            let _ = looks_like_rtcp(&buf);
        }
        assert!(
            parsed > 1000,
            "the bias should let many inputs parse: {parsed}"
        );
    }
}
