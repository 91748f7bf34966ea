//! Plain RTP/AVP SDP (RFC 4566 syntax, RFC 3264 offer/answer), the SDP of
//! phones and carriers. str0m speaks only WebRTC SDP (BUNDLE, ICE, DTLS),
//! so the plain leg's SDP is ours.
//!
//! - [`SessionDescription::parse`] reads an offer or answer as real phones
//!   send it: CRLF or LF, unknown lines and attributes kept, session- and
//!   media-level `c=` and direction, `a=rtpmap`, `a=fmtp`, `a=ptime`,
//!   `a=rtcp`, several m-lines. Garbage and oversized input give an error.
//! - [`SessionDescription::audio`] is the view the relay needs: the first
//!   audio m-line's address, payload formats, ptime and effective direction
//!   (`c=IN IP4 0.0.0.0`, the RFC 2543 hold, reads as "do not send to me").
//! - [`negotiate`] builds our offers and answers ([`LocalSdp`] keeps the
//!   origin and raises its version on every change).
//!
//! `Display` writes a description back with CRLF line ends.

pub mod negotiate;

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::codec::Codec;

pub use negotiate::{
    default_payload_type, read_answer, Answer, LocalAudio, LocalSdp, NegotiatedAudio,
};

/// Larger bodies are refused (a real audio SDP is well under 4 KiB).
const MAX_SDP_BYTES: usize = 64 * 1024;
const MAX_MEDIA: usize = 32;
const MAX_LINES_PER_SECTION: usize = 512;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SdpError {
    #[error("SDP larger than {MAX_SDP_BYTES} bytes")]
    TooLarge,
    #[error("SDP has too many m-lines or attributes")]
    TooMany,
    #[error("SDP must start with v=0")]
    NoVersion,
    #[error("SDP has no o= line")]
    NoOrigin,
    #[error("SDP line {line}: {reason}")]
    BadLine { line: usize, reason: &'static str },
}

/// Media direction attribute (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn from_parts(send: bool, recv: bool) -> Self {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The direction as the other side sees it (sendonly ↔ recvonly).
    pub fn reversed(self) -> Self {
        Direction::from_parts(self.receives(), self.sends())
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }
}

/// `o=` (RFC 4566 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    /// Kept as text: some phones send ids beyond 64 bits.
    pub session_id: String,
    pub session_version: u64,
    pub address_type: String,
    pub address: String,
}

/// `c=` (RFC 4566 §5.7); a multicast `/ttl` suffix is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub address_type: String,
    pub address: String,
}

impl Connection {
    pub fn from_ip(ip: IpAddr) -> Self {
        Connection {
            address_type: if ip.is_ipv4() { "IP4" } else { "IP6" }.to_string(),
            address: ip.to_string(),
        }
    }

    /// The address as an IP (`None` for a host name).
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.parse().ok()
    }

    /// `0.0.0.0` (or `::`): the RFC 2543 way to put a call on hold.
    pub fn is_hold(&self) -> bool {
        self.ip().is_some_and(|ip| ip.is_unspecified())
    }
}

/// `a=rtpmap:<pt> <encoding>/<clock>[/<channels>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: Option<u16>,
}

/// `a=rtcp:<port> [IN IP4 <addr>]` (RFC 3605).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcpAttribute {
    pub port: u16,
    pub connection: Option<Connection>,
}

/// Any other attribute, kept as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// `audio`, `video`, `image`, ...
    pub kind: String,
    pub port: u16,
    pub port_count: Option<u16>,
    /// `RTP/AVP`, `RTP/SAVP`, `UDP/TLS/RTP/SAVPF`, `udptl`, ...
    pub protocol: String,
    /// The formats as listed (payload type numbers for RTP).
    pub formats: Vec<String>,
    pub connection: Option<Connection>,
    pub rtpmaps: Vec<RtpMap>,
    /// `a=fmtp:<pt> <params>`.
    pub fmtps: Vec<(u8, String)>,
    pub ptime: Option<u32>,
    pub maxptime: Option<u32>,
    pub direction: Option<Direction>,
    pub rtcp: Option<RtcpAttribute>,
    pub rtcp_mux: bool,
    /// Lines other than `c=`/`a=` (`b=`, `i=`, `k=`), kept as `x=value`.
    pub other_lines: Vec<String>,
    pub attributes: Vec<Attribute>,
}

impl MediaDescription {
    /// An m-line with nothing but its header.
    pub fn new(kind: &str, port: u16, protocol: &str, formats: Vec<String>) -> Self {
        MediaDescription {
            kind: kind.to_string(),
            port,
            port_count: None,
            protocol: protocol.to_string(),
            formats,
            connection: None,
            rtpmaps: Vec::new(),
            fmtps: Vec::new(),
            ptime: None,
            maxptime: None,
            direction: None,
            rtcp: None,
            rtcp_mux: false,
            other_lines: Vec::new(),
            attributes: Vec::new(),
        }
    }

    /// Plain RTP (what our plain leg speaks: no SRTP, no DTLS).
    pub fn is_plain_rtp(&self) -> bool {
        matches!(self.protocol.as_str(), "RTP/AVP" | "RTP/AVPF")
    }

    pub fn fmtp(&self, payload_type: u8) -> Option<&str> {
        self.fmtps
            .iter()
            .find(|(pt, _)| *pt == payload_type)
            .map(|(_, p)| p.as_str())
    }

    /// The payload formats in the order listed (non-numeric formats and
    /// numbers above 127 skipped); static types without an rtpmap get
    /// their RFC 3551 names.
    pub fn payload_formats(&self) -> Vec<PayloadFormat> {
        self.formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok())
            .filter(|pt| *pt <= 127)
            .map(|pt| {
                let (encoding, clock_rate, channels) =
                    match self.rtpmaps.iter().find(|m| m.payload_type == pt) {
                        Some(m) => (m.encoding.clone(), m.clock_rate, m.channels),
                        None => match static_payload(pt) {
                            Some((name, rate)) => (name.to_string(), rate, None),
                            None => (String::new(), 0, None),
                        },
                    };
                PayloadFormat {
                    payload_type: pt,
                    codec: codec_of(&encoding, clock_rate),
                    encoding,
                    clock_rate,
                    channels,
                    fmtp: self.fmtp(pt).map(str::to_string),
                }
            })
            .collect()
    }
}

/// Static RTP/AVP payload types (RFC 3551 Table 4) we may meet without an
/// rtpmap.
fn static_payload(pt: u8) -> Option<(&'static str, u32)> {
    Some(match pt {
        0 => ("PCMU", 8000),
        3 => ("GSM", 8000),
        4 => ("G723", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        13 => ("CN", 8000),
        18 => ("G729", 8000),
        _ => return None,
    })
}

/// The codec an rtpmap names, if it is one we handle.
pub fn codec_of(encoding: &str, clock_rate: u32) -> Option<Codec> {
    if encoding.eq_ignore_ascii_case("PCMU") && clock_rate == 8000 {
        Some(Codec::Pcmu)
    } else if encoding.eq_ignore_ascii_case("PCMA") && clock_rate == 8000 {
        Some(Codec::Pcma)
    } else if encoding.eq_ignore_ascii_case("opus") && clock_rate == 48_000 {
        Some(Codec::Opus)
    } else if encoding.eq_ignore_ascii_case("telephone-event") && clock_rate > 0 {
        Some(Codec::TelephoneEvent { clock_rate })
    } else {
        None
    }
}

/// One payload format of an m-line, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadFormat {
    pub payload_type: u8,
    /// `None` for codecs we do not handle (G.729, speex, ...).
    pub codec: Option<Codec>,
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: Option<u16>,
    pub fmtp: Option<String>,
}

/// What the relay needs from the first audio m-line of a description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioView {
    /// Index of the m-line.
    pub index: usize,
    /// Where to send RTP; `None` when the port is 0 or the address is a
    /// hold address or a host name.
    pub rtp: Option<SocketAddr>,
    /// Where to send RTCP (`a=rtcp`, else RTP port + 1; the RTP port with
    /// `a=rtcp-mux`).
    pub rtcp: Option<SocketAddr>,
    pub formats: Vec<PayloadFormat>,
    pub ptime: Option<u32>,
    /// Direction as the description's author states it, with a hold
    /// address (`0.0.0.0`) taken as "do not send to me".
    pub direction: Direction,
    /// On hold: a hold address, or the author does not want to receive.
    pub hold: bool,
    pub protocol: String,
}

/// A parsed SDP body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub origin: Origin,
    pub session_name: String,
    pub connection: Option<Connection>,
    /// `t=` as written (`0 0` for us).
    pub timing: String,
    /// Session-level direction attribute.
    pub direction: Option<Direction>,
    /// Other session-level lines (`i=`, `u=`, `b=`, ...), as `x=value`.
    pub other_lines: Vec<String>,
    /// Other session-level attributes.
    pub attributes: Vec<Attribute>,
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    /// Parses an SDP body (see the module docs for what is tolerated).
    pub fn parse(text: &str) -> Result<Self, SdpError> {
        if text.len() > MAX_SDP_BYTES {
            return Err(SdpError::TooLarge);
        }
        let mut lines = text
            .split('\n')
            .map(|l| l.trim_end_matches('\r').trim_end())
            .enumerate()
            .filter(|(_, l)| !l.is_empty());
        match lines.next() {
            Some((_, "v=0")) => {}
            _ => return Err(SdpError::NoVersion),
        }
        let mut origin = None;
        let mut session = SessionDescription {
            origin: Origin {
                username: String::new(),
                session_id: String::new(),
                session_version: 0,
                address_type: String::new(),
                address: String::new(),
            },
            session_name: "-".to_string(),
            connection: None,
            timing: "0 0".to_string(),
            direction: None,
            other_lines: Vec::new(),
            attributes: Vec::new(),
            media: Vec::new(),
        };
        let mut section_lines = 0usize;
        for (index, line) in lines {
            let line_no = index + 1;
            let bad = |reason| SdpError::BadLine {
                line: line_no,
                reason,
            };
            let bytes = line.as_bytes();
            if bytes.len() < 2 || bytes[1] != b'=' || !bytes[0].is_ascii_lowercase() {
                return Err(bad("not a type=value line"));
            }
            let kind = bytes[0];
            let value = &line[2..];
            section_lines += 1;
            if section_lines > MAX_LINES_PER_SECTION {
                return Err(SdpError::TooMany);
            }
            if kind == b'm' {
                if session.media.len() == MAX_MEDIA {
                    return Err(SdpError::TooMany);
                }
                session
                    .media
                    .push(parse_media_line(value).ok_or(bad("bad m= line"))?);
                section_lines = 0;
                continue;
            }
            match session.media.last_mut() {
                None => match kind {
                    b'o' => origin = Some(parse_origin(value).ok_or(bad("bad o= line"))?),
                    b's' => session.session_name = value.to_string(),
                    b't' => session.timing = value.to_string(),
                    b'c' => {
                        session.connection =
                            Some(parse_connection(value).ok_or(bad("bad c= line"))?)
                    }
                    b'a' => {
                        let (name, val) = split_attribute(value);
                        match Direction::parse(name) {
                            Some(d) if val.is_none() => session.direction = Some(d),
                            _ => session.attributes.push(Attribute {
                                name: name.to_string(),
                                value: val.map(str::to_string),
                            }),
                        }
                    }
                    b'v' => return Err(bad("second v= line")),
                    _ => session.other_lines.push(line.to_string()),
                },
                Some(media) => match kind {
                    b'c' => {
                        media.connection = Some(parse_connection(value).ok_or(bad("bad c= line"))?)
                    }
                    b'a' => parse_media_attribute(media, value).map_err(bad)?,
                    b'v' | b'o' | b's' | b't' => return Err(bad("session line inside media")),
                    _ => media.other_lines.push(line.to_string()),
                },
            }
        }
        session.origin = origin.ok_or(SdpError::NoOrigin)?;
        Ok(session)
    }

    /// The first audio m-line with a port, as the relay sees it.
    pub fn audio(&self) -> Option<AudioView> {
        let index = self
            .media
            .iter()
            .position(|m| m.kind == "audio" && m.port != 0)?;
        self.audio_at(index)
    }

    /// The first audio m-line with a port and a plain RTP profile: the one
    /// we answer (an offer may list RTP/SAVP first and RTP/AVP as a
    /// fallback).
    pub fn plain_audio(&self) -> Option<AudioView> {
        let index = self
            .media
            .iter()
            .position(|m| m.kind == "audio" && m.port != 0 && m.is_plain_rtp())?;
        self.audio_at(index)
    }

    /// The audio view of m-line `index`.
    pub fn audio_at(&self, index: usize) -> Option<AudioView> {
        let media = self.media.get(index)?;
        let connection = media.connection.as_ref().or(self.connection.as_ref());
        let ip = connection.and_then(Connection::ip);
        let on_hold_address = connection.is_some_and(Connection::is_hold);
        let declared = media
            .direction
            .or(self.direction)
            .unwrap_or(Direction::SendRecv);
        let direction = if on_hold_address {
            Direction::from_parts(declared.sends(), false)
        } else {
            declared
        };
        let rtp = ip
            .filter(|ip| !ip.is_unspecified())
            .map(|ip| SocketAddr::new(ip, media.port));
        let rtcp = match &media.rtcp {
            Some(attr) => {
                let ip = attr.connection.as_ref().and_then(Connection::ip).or(ip);
                ip.filter(|ip| !ip.is_unspecified())
                    .map(|ip| SocketAddr::new(ip, attr.port))
            }
            None if media.rtcp_mux => rtp,
            None => rtp.and_then(|a| a.port().checked_add(1).map(|p| SocketAddr::new(a.ip(), p))),
        };
        Some(AudioView {
            index,
            rtp,
            rtcp,
            formats: media.payload_formats(),
            ptime: media.ptime,
            direction,
            hold: on_hold_address || !direction.receives(),
            protocol: media.protocol.clone(),
        })
    }
}

fn split_attribute(value: &str) -> (&str, Option<&str>) {
    match value.split_once(':') {
        Some((name, val)) => (name, Some(val)),
        None => (value, None),
    }
}

fn parse_origin(value: &str) -> Option<Origin> {
    let mut f = value.split_ascii_whitespace();
    let origin = Origin {
        username: f.next()?.to_string(),
        session_id: f.next()?.to_string(),
        session_version: f.next()?.parse().ok()?,
        address_type: {
            let _net = f.next()?;
            f.next()?.to_string()
        },
        address: f.next()?.to_string(),
    };
    Some(origin)
}

fn parse_connection(value: &str) -> Option<Connection> {
    let mut f = value.split_ascii_whitespace();
    if f.next()? != "IN" {
        return None;
    }
    let address_type = f.next()?.to_string();
    let address = f.next()?;
    let address = address.split('/').next()?.to_string();
    if address.is_empty() || f.next().is_some() {
        return None;
    }
    Some(Connection {
        address_type,
        address,
    })
}

fn parse_media_line(value: &str) -> Option<MediaDescription> {
    let mut f = value.split_ascii_whitespace();
    let kind = f.next()?;
    let port_field = f.next()?;
    let (port, port_count) = match port_field.split_once('/') {
        Some((p, n)) => (p.parse().ok()?, Some(n.parse().ok()?)),
        None => (port_field.parse().ok()?, None),
    };
    let protocol = f.next()?;
    let formats: Vec<String> = f.map(str::to_string).collect();
    if formats.len() > MAX_LINES_PER_SECTION {
        return None;
    }
    let mut media = MediaDescription::new(kind, port, protocol, formats);
    media.port_count = port_count;
    Some(media)
}

fn parse_media_attribute(media: &mut MediaDescription, value: &str) -> Result<(), &'static str> {
    let (name, val) = split_attribute(value);
    match (name, val) {
        ("rtpmap", Some(v)) => {
            let (pt, rest) = v.trim().split_once(' ').ok_or("bad rtpmap")?;
            let payload_type: u8 = pt.parse().map_err(|_| "bad rtpmap payload type")?;
            let mut parts = rest.trim().split('/');
            let encoding = parts.next().filter(|e| !e.is_empty()).ok_or("bad rtpmap")?;
            let clock_rate = parts
                .next()
                .and_then(|r| r.trim().parse().ok())
                .ok_or("bad rtpmap clock rate")?;
            let channels = match parts.next() {
                Some(c) => Some(c.trim().parse().map_err(|_| "bad rtpmap channels")?),
                None => None,
            };
            media.rtpmaps.push(RtpMap {
                payload_type,
                encoding: encoding.to_string(),
                clock_rate,
                channels,
            });
        }
        ("fmtp", Some(v)) => {
            let (pt, params) = v.trim().split_once(' ').ok_or("bad fmtp")?;
            let pt: u8 = pt.parse().map_err(|_| "bad fmtp payload type")?;
            media.fmtps.push((pt, params.trim().to_string()));
        }
        ("ptime", Some(v)) => media.ptime = Some(parse_ms(v).ok_or("bad ptime")?),
        ("maxptime", Some(v)) => media.maxptime = Some(parse_ms(v).ok_or("bad maxptime")?),
        ("rtcp", Some(v)) => {
            let v = v.trim();
            let (port, rest) = match v.split_once(' ') {
                Some((p, rest)) => (p, Some(rest)),
                None => (v, None),
            };
            media.rtcp = Some(RtcpAttribute {
                port: port.parse().map_err(|_| "bad rtcp port")?,
                connection: match rest {
                    Some(r) => Some(parse_connection(r).ok_or("bad rtcp address")?),
                    None => None,
                },
            });
        }
        ("rtcp-mux", None) => media.rtcp_mux = true,
        (name, None) if Direction::parse(name).is_some() => {
            media.direction = Direction::parse(name);
        }
        (name, val) => {
            if media.attributes.len() >= MAX_LINES_PER_SECTION {
                return Err("too many attributes");
            }
            media.attributes.push(Attribute {
                name: name.to_string(),
                value: val.map(str::to_string),
            });
        }
    }
    Ok(())
}

/// A ptime: whole ms, or a decimal some phones write (`20.0`).
fn parse_ms(v: &str) -> Option<u32> {
    let v = v.trim();
    if let Ok(ms) = v.parse::<u32>() {
        return Some(ms);
    }
    let f: f64 = v.parse().ok()?;
    (f.is_finite() && (0.0..=100_000.0).contains(&f)).then(|| f.round() as u32)
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "a={}:{}\r\n", self.name, v),
            None => write!(f, "a={}\r\n", self.name),
        }
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IN {} {}", self.address_type, self.address)
    }
}

impl fmt::Display for MediaDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m={} {}", self.kind, self.port)?;
        if let Some(n) = self.port_count {
            write!(f, "/{n}")?;
        }
        write!(f, " {}", self.protocol)?;
        for format in &self.formats {
            write!(f, " {format}")?;
        }
        f.write_str("\r\n")?;
        for line in self.other_lines.iter().filter(|l| !l.starts_with("b=")) {
            write!(f, "{line}\r\n")?;
        }
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        for line in self.other_lines.iter().filter(|l| l.starts_with("b=")) {
            write!(f, "{line}\r\n")?;
        }
        for map in &self.rtpmaps {
            write!(
                f,
                "a=rtpmap:{} {}/{}",
                map.payload_type, map.encoding, map.clock_rate
            )?;
            if let Some(ch) = map.channels {
                write!(f, "/{ch}")?;
            }
            f.write_str("\r\n")?;
            if let Some(params) = self.fmtp(map.payload_type) {
                write!(f, "a=fmtp:{} {}\r\n", map.payload_type, params)?;
            }
        }
        // fmtp lines of payload types without an rtpmap (static types).
        for (pt, params) in &self.fmtps {
            if !self.rtpmaps.iter().any(|m| m.payload_type == *pt) {
                write!(f, "a=fmtp:{pt} {params}\r\n")?;
            }
        }
        if let Some(p) = self.ptime {
            write!(f, "a=ptime:{p}\r\n")?;
        }
        if let Some(p) = self.maxptime {
            write!(f, "a=maxptime:{p}\r\n")?;
        }
        if let Some(rtcp) = &self.rtcp {
            write!(f, "a=rtcp:{}", rtcp.port)?;
            if let Some(c) = &rtcp.connection {
                write!(f, " {c}")?;
            }
            f.write_str("\r\n")?;
        }
        if self.rtcp_mux {
            f.write_str("a=rtcp-mux\r\n")?;
        }
        for a in &self.attributes {
            write!(f, "{a}")?;
        }
        if let Some(d) = self.direction {
            write!(f, "a={}\r\n", d.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        write!(
            f,
            "v=0\r\no={} {} {} IN {} {}\r\ns={}\r\n",
            o.username,
            o.session_id,
            o.session_version,
            o.address_type,
            o.address,
            self.session_name
        )?;
        for line in self.other_lines.iter().filter(|l| !l.starts_with("b=")) {
            write!(f, "{line}\r\n")?;
        }
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        for line in self.other_lines.iter().filter(|l| l.starts_with("b=")) {
            write!(f, "{line}\r\n")?;
        }
        write!(f, "t={}\r\n", self.timing)?;
        for a in &self.attributes {
            write!(f, "{a}")?;
        }
        if let Some(d) = self.direction {
            write!(f, "a={}\r\n", d.as_str())?;
        }
        for m in &self.media {
            write!(f, "{m}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
