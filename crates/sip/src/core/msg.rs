//! SIP message framing, strict validation and serialisation.
//!
//! The framing (start line, header lines, folding, Content-Length) is ours
//! because the server edge must reject what RFC 3261 forbids (RFC 4475
//! invalid cases) and must accept extension methods; URIs are parsed with
//! rsipstack's `parse_uri`. See crates/sip/README.md for why.

use std::fmt::Write as _;

/// Why a message was refused. `answer` says which status code to send back
/// when the message carried enough headers to address a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub reason: &'static str,
    pub status: u16,
}

fn bad(reason: &'static str) -> ParseError {
    ParseError {
        reason,
        status: 400,
    }
}

/// Limits applied while parsing.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 65_535,
            max_headers: 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    Request { method: String, uri: String },
    Response { code: u16, reason: String },
}

/// One parsed message. Header names are stored in canonical long form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub start: Start,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

const COMPACT: &[(&str, &str)] = &[
    ("v", "Via"),
    ("f", "From"),
    ("t", "To"),
    ("i", "Call-ID"),
    ("m", "Contact"),
    ("l", "Content-Length"),
    ("c", "Content-Type"),
    ("e", "Content-Encoding"),
    ("s", "Subject"),
    ("k", "Supported"),
    ("o", "Event"),
    ("r", "Refer-To"),
    ("b", "Referred-By"),
    ("x", "Session-Expires"),
    ("u", "Allow-Events"),
];

const CANONICAL: &[&str] = &[
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Contact",
    "Max-Forwards",
    "Content-Length",
    "Content-Type",
    "Expires",
    "Min-Expires",
    "Authorization",
    "Proxy-Authorization",
    "WWW-Authenticate",
    "Proxy-Authenticate",
    "User-Agent",
    "Route",
    "Record-Route",
    "Allow",
    "Supported",
    "Require",
    "Date",
    "Server",
];

fn canonical_name(name: &str) -> String {
    if name.len() == 1 {
        for (c, long) in COMPACT {
            if name.eq_ignore_ascii_case(c) {
                return (*long).to_string();
            }
        }
    }
    for long in CANONICAL {
        if name.eq_ignore_ascii_case(long) {
            return (*long).to_string();
        }
    }
    name.to_string()
}

fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// Byte index of the first top-level comma (outside quotes and `<>`) at or
/// after `from`, or the length. Works on bytes: every delimiter is ASCII,
/// so the index is always a character boundary.
fn list_item_end(value: &[u8], from: usize) -> usize {
    let (mut in_q, mut in_angle, mut esc) = (false, false, false);
    for (i, &c) in value.iter().enumerate().skip(from) {
        if esc {
            esc = false;
            continue;
        }
        match c {
            b'\\' if in_q => esc = true,
            b'"' => in_q = !in_q,
            b'<' if !in_q => in_angle = true,
            b'>' if !in_q => in_angle = false,
            b',' if !in_q && !in_angle => return i,
            _ => {}
        }
    }
    value.len()
}

/// Splits a header value at top-level commas (outside quotes and `<>`).
pub fn split_list(value: &str) -> Vec<&str> {
    let bytes = value.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let end = list_item_end(bytes, start);
        out.push(value[start..end].trim());
        if end >= bytes.len() {
            return out;
        }
        start = end + 1;
    }
}

/// The first item of a comma-separated header value, without splitting the
/// rest (the top Via of every message is read several times).
pub fn first_in_list(value: &str) -> &str {
    value[..list_item_end(value.as_bytes(), 0)].trim()
}

/// Notes in the top Via where a request really came from (RFC 3261
/// §18.2.1, RFC 3581): `received` when the sent-by host is not the source
/// address or `rport` was asked for, and the source port in `rport`.
/// Responses copy the Via, so a client behind NAT learns its public address,
/// and the parameters a client wrote there itself are never trusted.
pub fn stamp_top_via(m: &mut Msg, peer: std::net::SocketAddr) {
    let Some(h) = m
        .headers
        .iter_mut()
        .find(|(n, _)| n.eq_ignore_ascii_case("Via"))
    else {
        return;
    };
    let elements = split_list(&h.1);
    let Some((top, rest)) = elements.split_first() else {
        return;
    };
    let mut segments = top.split(';');
    let sent = segments.next().unwrap_or("").trim();
    let sent_by = sent.split_ascii_whitespace().nth(1).unwrap_or("");
    let host = match sent_by.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => sent_by.split(':').next().unwrap_or(""),
    };
    let ip = peer.ip().to_string();
    let mut stamped = String::with_capacity(top.len() + 40);
    stamped.push_str(sent);
    let mut rport = false;
    for p in segments {
        let p = p.trim();
        let name = p.split('=').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("rport") {
            rport = true;
        } else if !name.eq_ignore_ascii_case("received") && !p.is_empty() {
            stamped.push(';');
            stamped.push_str(p);
        }
    }
    if rport || host != ip {
        stamped.push_str(";received=");
        stamped.push_str(&ip);
    }
    if rport {
        stamped.push_str(";rport=");
        stamped.push_str(&peer.port().to_string());
    }
    let mut value = stamped;
    for r in rest {
        value.push_str(", ");
        value.push_str(r);
    }
    h.1 = value;
}

/// Length of the first message in a stream buffer (headers + body), if
/// complete. Errors when the header section exceeds `max` bytes.
pub fn stream_frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, ParseError> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > max {
            return Err(bad("header section too large"));
        }
        return Ok(None);
    };
    let head = &buf[..end];
    let mut cl = None;
    for line in head.split(|b| *b == b'\n') {
        let line = trim_cr(line);
        if let Some(colon) = line.iter().position(|b| *b == b':') {
            let name = std::str::from_utf8(&line[..colon]).unwrap_or("").trim();
            if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
                let v = std::str::from_utf8(&line[colon + 1..]).unwrap_or("").trim();
                cl = Some(v.parse::<usize>().map_err(|_| bad("bad Content-Length"))?);
            }
        }
    }
    // On a stream Content-Length is mandatory (RFC 3261 18.3).
    let cl = cl.ok_or_else(|| bad("missing Content-Length on stream"))?;
    let total = end + 4 + cl;
    if total > max {
        return Err(bad("message too large"));
    }
    Ok((buf.len() >= total).then_some(total))
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Msg {
    /// Parses and validates one message (a datagram, a WebSocket frame or
    /// one framed stream message). Never panics on any input.
    pub fn parse(data: &[u8], limits: &Limits) -> Result<Msg, ParseError> {
        if data.len() > limits.max_bytes {
            return Err(ParseError {
                reason: "message too large",
                status: 513,
            });
        }
        let mut data = data;
        while data.starts_with(b"\r\n") {
            data = &data[2..];
        }
        let sep = find(data, b"\r\n\r\n").ok_or_else(|| bad("no end of headers"))?;
        let head = std::str::from_utf8(&data[..sep]).map_err(|_| bad("headers not UTF-8"))?;
        let rest = &data[sep + 4..];
        let mut lines = head.split("\r\n");
        let start_line = lines.next().unwrap_or("");
        let start = parse_start(start_line)?;

        let mut headers: Vec<(String, String)> = Vec::with_capacity(16);
        for line in lines {
            if line.starts_with([' ', '\t']) {
                let Some(last) = headers.last_mut() else {
                    return Err(bad("continuation before first header"));
                };
                last.1.push(' ');
                last.1.push_str(line.trim());
                continue;
            }
            if line.contains('\n') || line.contains('\r') {
                return Err(bad("bare CR or LF in headers"));
            }
            let colon = line
                .find(':')
                .ok_or_else(|| bad("header line without colon"))?;
            let name = line[..colon].trim_end_matches([' ', '\t']);
            if !is_token(name) {
                return Err(bad("bad header name"));
            }
            headers.push((canonical_name(name), line[colon + 1..].trim().to_string()));
            if headers.len() > limits.max_headers {
                return Err(bad("too many headers"));
            }
        }
        let mut msg = Msg {
            start,
            headers,
            body: Vec::new(),
        };
        let body = match msg.header("Content-Length") {
            Some(v) => {
                let cl: usize = parse_u32(v).ok_or_else(|| bad("bad Content-Length"))? as usize;
                if cl > rest.len() {
                    return Err(bad("Content-Length larger than body"));
                }
                // Anything after Content-Length bytes is ignored (RFC 4475 dblreq).
                &rest[..cl]
            }
            None => rest,
        };
        msg.body = body.to_vec();
        msg.validate()?;
        Ok(msg)
    }

    /// Keeps only the headers named (canonical names) and drops the body,
    /// releasing what the rest held. A stored request shrinks to what is
    /// still built from it (responses, ACK, CANCEL) once the call has
    /// moved on: tens of thousands of calls are held at once under load.
    pub fn retain_headers(&mut self, names: &[&str]) {
        self.headers.retain(|(n, _)| names.contains(&n.as_str()));
        self.headers.shrink_to_fit();
        self.body = Vec::new();
    }

    /// First value of a header (canonical name, case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of a header, each comma-separated list split.
    pub fn header_list(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| split_list(v))
            .collect()
    }

    pub fn method(&self) -> Option<&str> {
        match &self.start {
            Start::Request { method, .. } => Some(method),
            Start::Response { .. } => None,
        }
    }

    pub fn code(&self) -> Option<u16> {
        match &self.start {
            Start::Response { code, .. } => Some(*code),
            Start::Request { .. } => None,
        }
    }

    pub fn ruri(&self) -> &str {
        match &self.start {
            Start::Request { uri, .. } => uri,
            Start::Response { .. } => "",
        }
    }

    pub fn call_id(&self) -> &str {
        self.header("Call-ID").unwrap_or("")
    }

    /// (number, method) of CSeq; validated at parse time.
    pub fn cseq(&self) -> (u32, &str) {
        let v = self.header("CSeq").unwrap_or("");
        let mut it = v.split_ascii_whitespace();
        let n = it.next().and_then(parse_u32).unwrap_or(0);
        (n, it.next().unwrap_or(""))
    }

    /// The branch of the top Via.
    pub fn top_branch(&self) -> &str {
        self.first_in_header("Via")
            .and_then(|v| param(v, "branch"))
            .unwrap_or("")
    }

    /// The first item of the first `name` header (e.g. the top Via, the
    /// first Contact), without splitting the whole list.
    pub fn first_in_header(&self, name: &str) -> Option<&str> {
        self.header(name).map(first_in_list)
    }

    pub fn set_header(&mut self, name: &str, value: String) {
        if let Some(h) = self
            .headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            h.1 = value;
        } else {
            self.headers.push((name.to_string(), value));
        }
    }

    pub fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Wire form. Content-Length is always written from the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Sized up front: growing the buffer while writing showed up in
        // the profile (a message is usually larger than a guess).
        let start_len = match &self.start {
            Start::Request { method, uri } => method.len() + uri.len() + 10,
            Start::Response { reason, .. } => reason.len() + 14,
        };
        let headers_len: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum();
        let mut s = String::with_capacity(start_len + headers_len + 40 + self.body.len());
        match &self.start {
            Start::Request { method, uri } => {
                let _ = write!(s, "{method} {uri} SIP/2.0\r\n");
            }
            Start::Response { code, reason } => {
                let _ = write!(s, "SIP/2.0 {code} {reason}\r\n");
            }
        }
        for (n, v) in &self.headers {
            if n.eq_ignore_ascii_case("Content-Length") {
                continue;
            }
            s.push_str(n);
            s.push_str(": ");
            s.push_str(v);
            s.push_str("\r\n");
        }
        let _ = write!(s, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }

    fn validate(&self) -> Result<(), ParseError> {
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            if self.header(name).is_none() {
                return Err(bad("missing mandatory header"));
            }
        }
        let cseq = self.header("CSeq").unwrap_or("");
        let mut it = cseq.split_ascii_whitespace();
        let num = it.next().ok_or_else(|| bad("bad CSeq"))?;
        let cm = it.next().ok_or_else(|| bad("bad CSeq"))?;
        if it.next().is_some() || !is_token(cm) {
            return Err(bad("bad CSeq"));
        }
        match parse_u32(num) {
            Some(n) if n < 1 << 31 => {}
            _ => return Err(bad("CSeq out of range")),
        }
        if let Some(m) = self.method() {
            if m != cm {
                return Err(bad("CSeq method does not match"));
            }
        }
        if self.headers.iter().filter(|(n, _)| n == "Call-ID").count() > 1
            || self.headers.iter().filter(|(n, _)| n == "CSeq").count() > 1
            || self.headers.iter().filter(|(n, _)| n == "From").count() > 1
            || self.headers.iter().filter(|(n, _)| n == "To").count() > 1
        {
            return Err(bad("duplicate single-valued header"));
        }
        if self.call_id().is_empty() || self.call_id().contains(char::is_whitespace) {
            return Err(bad("bad Call-ID"));
        }
        if let Some(mf) = self.header("Max-Forwards") {
            match parse_u32(mf) {
                Some(n) if n <= 255 => {}
                _ => return Err(bad("bad Max-Forwards")),
            }
        }
        if let Some(e) = self.header("Expires") {
            parse_u32(e).ok_or_else(|| bad("bad Expires"))?;
        }
        if let Some(d) = self.header("Date") {
            if !d.ends_with("GMT") {
                return Err(bad("Date not in GMT"));
            }
        }
        for v in self.header_list("Via") {
            validate_via(v)?;
        }
        for name in ["From", "To"] {
            let v = self.header(name).unwrap_or("");
            validate_name_addr(v)?;
        }
        for c in self.header_list("Contact") {
            if c != "*" {
                validate_name_addr(c)?;
            }
        }
        Ok(())
    }
}

fn parse_u32(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_start(line: &str) -> Result<Start, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        let (ver, rest) = rest.split_once(' ').ok_or_else(|| bad("bad status line"))?;
        if ver != "2.0" {
            return Err(ParseError {
                reason: "unsupported version",
                status: 505,
            });
        }
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("bad status code"));
        }
        let code: u16 = code.parse().map_err(|_| bad("bad status code"))?;
        if !(100..700).contains(&code) {
            return Err(bad("bad status code"));
        }
        return Ok(Start::Response {
            code,
            reason: reason.to_string(),
        });
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(ver), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("bad request line"));
    };
    if !is_token(method) {
        return Err(bad("bad method"));
    }
    if ver != "SIP/2.0" {
        return Err(if ver.starts_with("SIP/") {
            ParseError {
                reason: "unsupported version",
                status: 505,
            }
        } else {
            bad("bad request line")
        });
    }
    if uri.is_empty() || uri.starts_with('<') || uri.contains(['\t', '"']) {
        return Err(bad("bad Request-URI"));
    }
    let colon = uri.find(':').ok_or_else(|| bad("bad Request-URI"))?;
    let scheme = &uri[..colon];
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err(bad("bad Request-URI"));
    }
    if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        let host_part = uri.rsplit('@').next().unwrap_or(uri);
        if host_part.contains('?') {
            // Headers are not allowed in a Request-URI (RFC 4475 escruri).
            return Err(bad("headers in Request-URI"));
        }
        rsipstack::sip::parse_uri(uri).map_err(|_| bad("bad Request-URI"))?;
    }
    Ok(Start::Request {
        method: method.to_string(),
        uri: uri.to_string(),
    })
}

fn validate_via(v: &str) -> Result<(), ParseError> {
    // sent-protocol allows LWS around each "/" (RFC 4475 wsinv).
    let (head, params) = v.split_once(';').unwrap_or((v, ""));
    let mut p = head.split('/');
    let (Some(n), Some(ver), Some(rest), None) = (p.next(), p.next(), p.next(), p.next()) else {
        return Err(bad("bad Via"));
    };
    let rest = rest.trim_start();
    let (t, sent_by) = rest.split_once([' ', '\t']).ok_or_else(|| bad("bad Via"))?;
    if !n.trim().eq_ignore_ascii_case("SIP") || ver.trim() != "2.0" || !is_token(t.trim()) {
        return Err(bad("bad Via"));
    }
    let sent_by = sent_by.trim();
    if sent_by.is_empty() || sent_by.contains(char::is_whitespace) {
        return Err(bad("bad Via sent-by"));
    }
    if sent_by.starts_with("255.255.255.255") {
        return Err(bad("broadcast Via sent-by"));
    }
    if !params.is_empty() {
        for param in params.split(';') {
            let name = param.split('=').next().unwrap_or("").trim();
            if !is_token(name) {
                return Err(bad("bad Via parameter"));
            }
        }
    }
    Ok(())
}

/// Validates `name-addr / addr-spec` followed by `;params`.
fn validate_name_addr(v: &str) -> Result<(), ParseError> {
    let v = v.trim();
    if v.is_empty() {
        return Err(bad("empty address"));
    }
    let params;
    if let Some(lt) = find_unquoted(v, '<') {
        let display = v[..lt].trim();
        if !display.is_empty() {
            if display.starts_with('"') {
                if !display.ends_with('"') || display.len() < 2 || !quotes_balanced(display) {
                    return Err(bad("bad display name"));
                }
            } else if !display
                .split([' ', '\t'])
                .filter(|w| !w.is_empty())
                .all(is_token)
            {
                return Err(bad("bad display name"));
            }
        }
        let after = &v[lt + 1..];
        let gt = after.find('>').ok_or_else(|| bad("missing >"))?;
        let uri = &after[..gt];
        if uri.is_empty() || uri.starts_with([' ', '\t']) || uri.ends_with([' ', '\t']) {
            return Err(bad("whitespace inside <>"));
        }
        params = &after[gt + 1..];
    } else {
        if v.contains('"') || v.contains('>') {
            return Err(bad("unbalanced quotes or brackets"));
        }
        let (uri, p) = v.split_once(';').unwrap_or((v, ""));
        let uri = uri.trim_end();
        if uri.contains(['?', ',', ' ', '\t']) {
            return Err(bad("addr-spec must be in <> here"));
        }
        params = if p.is_empty() {
            ""
        } else {
            v[uri.len()..].trim_start()
        };
    }
    let params = params.trim();
    if !params.is_empty() {
        let p = params
            .strip_prefix(';')
            .ok_or_else(|| bad("junk after address"))?;
        if !quotes_balanced(p) {
            return Err(bad("unbalanced quotes in a parameter"));
        }
        // A quoted value may hold `;` (RFC 5627's `temp-gruu="sip:…;gr"`).
        for param in split_unquoted(p, ';') {
            let name = param.split('=').next().unwrap_or("").trim();
            if !is_token(name) {
                return Err(bad("bad address parameter"));
            }
        }
    }
    Ok(())
}

/// `s` split on `sep` outside double quotes.
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = find_unquoted(rest, sep) {
        out.push(&rest[..i]);
        rest = &rest[i + sep.len_utf8()..];
    }
    out.push(rest);
    out
}

fn quotes_balanced(s: &str) -> bool {
    let (mut in_q, mut esc) = (false, false);
    for c in s.chars() {
        if esc {
            esc = false;
            continue;
        }
        match c {
            '\\' if in_q => esc = true,
            '"' => in_q = !in_q,
            _ => {}
        }
    }
    !in_q
}

fn find_unquoted(s: &str, needle: char) -> Option<usize> {
    let (mut in_q, mut esc) = (false, false);
    for (i, c) in s.char_indices() {
        if esc {
            esc = false;
            continue;
        }
        match c {
            '\\' if in_q => esc = true,
            '"' => in_q = !in_q,
            c if c == needle && !in_q => return Some(i),
            _ => {}
        }
    }
    None
}

/// Value of `;name=value` in a header element (case-insensitive name);
/// `Some("")` for a flag parameter.
pub fn param<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    // Parameters after the closing '>' if any (header params), else after the URI.
    let tail = match find_unquoted(element, '<') {
        Some(lt) => match element[lt..].find('>') {
            Some(gt) => &element[lt + gt + 1..],
            None => "",
        },
        None => element,
    };
    for p in tail.split(';').skip(1) {
        let (n, v) = p.split_once('=').unwrap_or((p, ""));
        if n.trim().eq_ignore_ascii_case(name) {
            return Some(v.trim().trim_matches('"'));
        }
    }
    None
}

/// The URI inside a name-addr (without `<>`), or the addr-spec without params.
pub fn addr_uri(element: &str) -> &str {
    if let Some(lt) = find_unquoted(element, '<') {
        let after = &element[lt + 1..];
        return after.split('>').next().unwrap_or("").trim();
    }
    element.split(';').next().unwrap_or("").trim()
}

/// User part of a sip/sips URI (percent-decoding not applied).
pub fn uri_user(uri: &str) -> Option<&str> {
    let rest = uri.split_once(':')?.1;
    let at = rest.find('@')?;
    let user = &rest[..at];
    Some(
        user.split(';')
            .next()
            .unwrap_or(user)
            .split(':')
            .next()
            .unwrap_or(user),
    )
}

/// The address of a SIP URI whose host is an IP literal (default port
/// 5060); `None` for a host name, which the sans-IO core cannot resolve.
pub fn uri_host_port(uri: &str) -> Option<std::net::SocketAddr> {
    uri_host_port_or(uri, 5060)
}

/// [`uri_host_port`] with `default_port` when the URI names no port
/// (5061 for a TLS contact).
pub fn uri_host_port_or(uri: &str, default_port: u16) -> Option<std::net::SocketAddr> {
    let rest = uri.split_once(':').map(|(_, r)| r)?;
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hostport = hostport.split([';', '?', '>']).next()?;
    if let Some(v6) = hostport.strip_prefix('[') {
        let (ip, port) = v6.split_once(']')?;
        let ip: std::net::IpAddr = ip.parse().ok()?;
        let port = port
            .strip_prefix(':')
            .map_or(Some(default_port), |p| p.parse().ok())?;
        return Some(std::net::SocketAddr::new(ip, port));
    }
    let (host, port) = match hostport.split_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (hostport, default_port),
    };
    Some(std::net::SocketAddr::new(host.parse().ok()?, port))
}

/// The `tag` parameter of a From/To value.
/// `element` (a Contact, From or To value) without the header parameter
/// `name` (e.g. `expires`, `tag`); URI parameters inside `<...>` are kept.
pub fn strip_param(element: &str, name: &str) -> String {
    // The name-addr ends at the first `>` after a quoted display name
    // (header parameters such as `+sip.instance="<urn:...>"` contain `>` too).
    let skip = match element.trim_start().strip_prefix('"') {
        Some(rest) => {
            let lead = element.len() - element.trim_start().len() + 1;
            quoted_len(rest).map_or(0, |n| lead + n)
        }
        None => 0,
    };
    let (head, tail) = match element[skip..].find('>').map(|i| i + skip) {
        Some(i) => element.split_at(i + 1),
        None => match element.find(';') {
            Some(i) => element.split_at(i),
            None => (element, ""),
        },
    };
    let mut out = head.to_string();
    for p in tail.split(';').filter(|p| !p.trim().is_empty()) {
        let n = p.split('=').next().unwrap_or("").trim();
        if !n.eq_ignore_ascii_case(name) {
            out.push(';');
            out.push_str(p.trim());
        }
    }
    out
}

/// Length of a quoted string's body up to and including its closing quote
/// (`s` starts after the opening quote); backslash escapes are honoured.
fn quoted_len(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '"') => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// A response to `req` copying Via, From, To (adding `to_tag` when To has
/// none), Call-ID and CSeq.
pub fn response(req: &Msg, code: u16, reason: &str, to_tag: Option<&str>) -> Msg {
    let mut headers = Vec::with_capacity(8);
    for (n, v) in &req.headers {
        match n.as_str() {
            "Via" | "From" | "Call-ID" | "CSeq" => headers.push((n.clone(), v.clone())),
            "To" => {
                let mut v = v.clone();
                if let Some(t) = to_tag {
                    if tag(&v).is_none() {
                        v.push_str(";tag=");
                        v.push_str(t);
                    }
                }
                headers.push((n.clone(), v));
            }
            _ => {}
        }
    }
    Msg {
        start: Start::Response {
            code,
            reason: reason.to_string(),
        },
        headers,
        body: Vec::new(),
    }
}

pub fn tag(v: &str) -> Option<&str> {
    param(v, "tag").filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoted_parameters_may_hold_semicolons() {
        // Kamailio's answer to a REGISTER with +sip.instance (RFC 5627).
        let raw = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n\
                   From: <sip:a@h>;tag=1\r\nTo: <sip:a@h>;tag=2\r\nCall-ID: c\r\n\
                   CSeq: 2 REGISTER\r\nContact: <sip:a@10.0.0.1:5060>;expires=60;\
                   +sip.instance=\"<urn:uuid:1>\";temp-gruu=\"sip:tgruu.x@h;gr\";\
                   pub-gruu=\"sip:a@h;gr=urn:uuid:1\"\r\nContent-Length: 0\r\n\r\n";
        let m = Msg::parse(raw.as_bytes(), &Limits::default()).expect("valid");
        assert_eq!(
            param(m.header("Contact").unwrap_or(""), "expires"),
            Some("60")
        );
        // Still refused: an unbalanced quote, a bad parameter name.
        for bad in [
            "Contact: <sip:a@h>;x=\"open\r\n",
            "Contact: <sip:a@h>;b@d=1\r\n",
        ] {
            let raw = format!(
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n\
                 From: <sip:a@h>;tag=1\r\nTo: <sip:a@h>;tag=2\r\nCall-ID: c\r\n\
                 CSeq: 2 REGISTER\r\n{bad}Content-Length: 0\r\n\r\n"
            );
            assert!(
                Msg::parse(raw.as_bytes(), &Limits::default()).is_err(),
                "{bad}"
            );
        }
    }

    use super::*;

    #[test]
    fn strip_param_keeps_uri_and_other_parameters() {
        assert_eq!(
            strip_param(
                "<sip:a@x.invalid;transport=ws>;+sip.instance=\"<urn:uuid:1>\";reg-id=1;expires=60",
                "expires"
            ),
            "<sip:a@x.invalid;transport=ws>;+sip.instance=\"<urn:uuid:1>\";reg-id=1"
        );
        assert_eq!(
            strip_param("\"A >\\\" b\" <sip:a@h>;tag=9;x=1", "tag"),
            "\"A >\\\" b\" <sip:a@h>;x=1"
        );
        assert_eq!(strip_param("sip:a@h;tag=9", "tag"), "sip:a@h");
    }

    #[test]
    fn uri_host_port_takes_ip_literals_only() {
        let a = |s: &str| s.parse::<std::net::SocketAddr>().ok();
        assert_eq!(
            uri_host_port("sip:bob@10.1.2.3:5080;transport=tcp"),
            a("10.1.2.3:5080")
        );
        assert_eq!(uri_host_port("sip:10.1.2.3"), a("10.1.2.3:5060"));
        assert_eq!(uri_host_port("sip:bob@[::1]:5070"), a("[::1]:5070"));
        assert_eq!(uri_host_port("sip:bob@phone.example;transport=tcp"), None);
        assert_eq!(uri_host_port("sip:bob@10.1.2.3:99999"), None);
    }

    const REG: &str = "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=a\r\nTo: <sip:alice@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@127.0.0.1:5070>;expires=60, \"A, b\" <sip:x@y>\r\nl: 0\r\n\r\n";

    #[test]
    fn top_via_gets_received_and_rport_from_the_source() {
        let peer: std::net::SocketAddr = "203.0.113.7:40000".parse().expect("literal");
        let mut m = Msg::parse(REG.as_bytes(), &Limits::default()).expect("valid");
        stamp_top_via(&mut m, peer);
        assert_eq!(
            m.header("Via"),
            Some("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1;received=203.0.113.7;rport=40000")
        );
        // A client cannot plant its own received/rport values, and the
        // other Via elements stay as they were.
        let forged = REG.replace(
            ";rport\r\n",
            ";received=10.9.9.9;rport=1, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK0\r\n",
        );
        let mut m = Msg::parse(forged.as_bytes(), &Limits::default()).expect("valid");
        stamp_top_via(&mut m, peer);
        assert_eq!(
            m.header("Via"),
            Some("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1;received=203.0.113.7;rport=40000, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK0")
        );
        // Same host and no rport asked for: nothing to add.
        let plain = REG.replace(";rport", "");
        let mut m = Msg::parse(plain.as_bytes(), &Limits::default()).expect("valid");
        stamp_top_via(&mut m, "127.0.0.1:5070".parse().expect("literal"));
        assert_eq!(
            m.header("Via"),
            Some("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1")
        );
    }

    #[test]
    fn lists_split_at_top_level_commas_only() {
        let v = r#"<sip:a@x;lr>, "B, the second" <sip:b@y>;q=0.5 ,sip:c@z,"#;
        assert_eq!(
            split_list(v),
            vec![
                "<sip:a@x;lr>",
                r#""B, the second" <sip:b@y>;q=0.5"#,
                "sip:c@z",
                ""
            ]
        );
        assert_eq!(first_in_list(v), "<sip:a@x;lr>");
        assert_eq!(
            first_in_list(r#" "a \" , b" <sip:q@w,x> , y"#),
            r#""a \" , b" <sip:q@w,x>"#
        );
        assert_eq!(split_list(""), vec![""]);
        assert_eq!(first_in_list("  one  "), "one");
        // Non-ASCII text around the delimiters keeps character boundaries.
        assert_eq!(
            split_list("\"Ñandú, sí\" <sip:ñ@x>,é"),
            vec!["\"Ñandú, sí\" <sip:ñ@x>", "é"]
        );
    }

    #[test]
    fn parses_and_round_trips() {
        let m = Msg::parse(REG.as_bytes(), &Limits::default()).expect("valid");
        assert_eq!(m.method(), Some("REGISTER"));
        assert_eq!(m.cseq(), (1, "REGISTER"));
        assert_eq!(m.top_branch(), "z9hG4bK1");
        assert_eq!(m.header_list("Contact").len(), 2);
        let again = Msg::parse(&m.to_bytes(), &Limits::default()).expect("valid");
        assert_eq!(again.headers, m.headers);
    }

    #[test]
    fn helpers() {
        assert_eq!(
            addr_uri("\"A\" <sip:a@b;transport=ws>;tag=1"),
            "sip:a@b;transport=ws"
        );
        assert_eq!(tag("<sip:a@b>;tag=xy"), Some("xy"));
        assert_eq!(uri_user("sip:1000@h:5060"), Some("1000"));
        assert_eq!(
            param("<sip:a@b>;expires=30;+sip.instance=\"<urn:x>\"", "expires"),
            Some("30")
        );
    }

    #[test]
    fn stream_framing() {
        let two = format!("{REG}{REG}");
        let n = stream_frame_len(two.as_bytes(), 65535)
            .expect("ok")
            .expect("complete");
        assert_eq!(n, REG.len());
        assert_eq!(stream_frame_len(&two.as_bytes()[..20], 65535), Ok(None));
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for s in [
            "",
            "\r\n\r\n",
            "INVITE\r\n\r\n",
            "SIP/2.0 99 x\r\n\r\n",
            "\u{0}\u{1}",
        ] {
            assert!(Msg::parse(s.as_bytes(), &Limits::default()).is_err());
        }
        let bytes = REG.as_bytes();
        for i in 0..bytes.len() {
            let _ = Msg::parse(&bytes[..i], &Limits::default());
        }
    }
}
