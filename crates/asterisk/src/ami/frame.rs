//! AMI framing: the banner line, messages as ordered key/value lists, and
//! actions written back. No IO.
//!
//! On the wire (Asterisk 22, see `shared/asterisk/*.txt`) every line ends
//! with CRLF and a message ends with an empty line. The first line after
//! connecting is the banner (`Asterisk Call Manager/11.0.0`) with no empty
//! line after it. Keys may repeat within one message (`Output:` of a
//! `Command`, `ChanVariable`, `Variable`), so a message is a list, not a map.

use std::fmt;

/// Default bound on one message (all its lines), bytes. The largest
/// message in the transcripts is ~9 KB (a `Command` output); a peer that
/// sends more than this without an empty line is broken or hostile.
pub const DEFAULT_MAX_MESSAGE: usize = 256 * 1024;

/// One AMI message: a response, an event, or (written by us) an action.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Message {
    fields: Vec<(String, String)>,
}

impl fmt::Debug for Message {
    // Compact and secret-free: a `Login`'s `Secret` never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.fields {
            if k.eq_ignore_ascii_case("Secret") || k.eq_ignore_ascii_case("Key") {
                m.entry(k, &"***");
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

impl Message {
    pub fn new() -> Self {
        Self::default()
    }

    /// A message from `(key, value)` pairs, in order.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            fields: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.fields.push((key.into(), value.into()));
    }

    /// The first value of `key` (AMI keys are case-insensitive).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// Whether `key` has the value `value` (ASCII case ignored).
    pub fn is(&self, key: &str, value: &str) -> bool {
        self.get(key).is_some_and(|v| v.eq_ignore_ascii_case(value))
    }

    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }

    /// `Event:` value, if this is an event.
    pub fn event(&self) -> Option<&str> {
        self.get("Event")
    }

    /// `Response:` value, if this is a response.
    pub fn response(&self) -> Option<&str> {
        self.get("Response")
    }

    pub fn action_id(&self) -> Option<&str> {
        self.get("ActionID")
    }

    /// Bytes on the wire; refuses CR/LF anywhere and `:` in keys, which
    /// would let a value start a new header or a new message.
    pub fn to_wire(&self) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(64 + self.fields.len() * 24);
        for (k, v) in &self.fields {
            if k.is_empty() || k.contains([':', '\r', '\n']) || k.trim() != k {
                return Err(FrameError::BadKey(k.clone()));
            }
            if v.contains(['\r', '\n']) {
                return Err(FrameError::LineBreakInValue(k.clone()));
            }
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        Ok(out)
    }
}

/// An action to send: its name and its fields (without `Action` and
/// `ActionID`, which the session adds).
#[derive(Clone, PartialEq, Eq)]
pub struct Action {
    pub name: String,
    pub fields: Vec<(String, String)>,
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = Message::from_pairs([("Action", self.name.as_str())]);
        for (k, v) in &self.fields {
            m.push(k.as_str(), v.as_str());
        }
        fmt::Debug::fmt(&m, f)
    }
}

impl Action {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            fields: Vec::new(),
        }
    }

    /// Adds a field (builder style). Keys may repeat (`Variable`).
    pub fn field(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.push((key.into(), value.into()));
        self
    }

    /// The message with `Action` and `ActionID` first.
    pub fn to_message(&self, action_id: &str) -> Message {
        let mut m = Message::from_pairs([("Action", self.name.as_str()), ("ActionID", action_id)]);
        for (k, v) in &self.fields {
            m.push(k.as_str(), v.as_str());
        }
        m
    }

    /// Bytes on the wire, or why not (see [`Message::to_wire`]). A field
    /// named `Action` or `ActionID` is refused too: the session owns them.
    pub fn to_wire(&self, action_id: &str) -> Result<Vec<u8>, FrameError> {
        for (k, _) in &self.fields {
            if k.eq_ignore_ascii_case("Action") || k.eq_ignore_ascii_case("ActionID") {
                return Err(FrameError::BadKey(k.clone()));
            }
        }
        if self.name.is_empty() || self.name.contains([':', '\r', '\n', ' ']) {
            return Err(FrameError::BadKey(self.name.clone()));
        }
        self.to_message(action_id).to_wire()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("a message grew past {limit} bytes without ending")]
    TooLarge { limit: usize },
    #[error("the peer is not an Asterisk manager (banner {0:?})")]
    BadBanner(String),
    #[error("the value of {0:?} contains a line break")]
    LineBreakInValue(String),
    #[error("{0:?} is not a valid key")]
    BadKey(String),
}

/// What the parser produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The first line of the connection, e.g. `Asterisk Call Manager/11.0.0`.
    Banner(String),
    Message(Message),
}

/// Bytes in (split anywhere), frames out. One per connection.
#[derive(Debug)]
pub struct FrameParser {
    buf: Vec<u8>,
    /// Bytes of `buf` already known to hold no `\n`.
    scanned: usize,
    banner_seen: bool,
    current: Message,
    /// Bytes of the message being assembled (its lines so far).
    current_bytes: usize,
    max_message: usize,
    failed: bool,
}

impl FrameParser {
    pub fn new(max_message: usize) -> Self {
        Self {
            buf: Vec::new(),
            scanned: 0,
            banner_seen: false,
            current: Message::new(),
            current_bytes: 0,
            max_message: max_message.max(64),
            failed: false,
        }
    }

    /// Feeds bytes; complete frames are appended to `out`. After an error
    /// the parser stays failed (the connection must be dropped).
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<Frame>) -> Result<(), FrameError> {
        if self.failed {
            return Err(FrameError::TooLarge {
                limit: self.max_message,
            });
        }
        self.buf.extend_from_slice(data);
        let mut start = 0;
        loop {
            let from = self.scanned.max(start);
            let Some(nl) = self.buf[from..].iter().position(|&b| b == b'\n') else {
                self.scanned = self.buf.len();
                break;
            };
            let end = from + nl;
            let mut line = &self.buf[start..end];
            if let Some(l) = line.strip_suffix(b"\r") {
                line = l;
            }
            let text = String::from_utf8_lossy(line).into_owned();
            let consumed = end + 1 - start;
            start = end + 1;
            self.scanned = start;
            if let Err(e) = self.line(text, consumed, out) {
                self.failed = true;
                return Err(e);
            }
        }
        self.buf.drain(..start);
        self.scanned -= start;
        // An unfinished line counts against the bound too: a peer that
        // never sends a line break must not grow the buffer forever.
        if self.current_bytes + self.buf.len() > self.max_message {
            self.failed = true;
            return Err(FrameError::TooLarge {
                limit: self.max_message,
            });
        }
        Ok(())
    }

    fn line(
        &mut self,
        text: String,
        raw_len: usize,
        out: &mut Vec<Frame>,
    ) -> Result<(), FrameError> {
        if !self.banner_seen {
            if text.is_empty() {
                // Tolerate stray blank lines before the banner.
                return Ok(());
            }
            if !text.contains("Call Manager/") {
                return Err(FrameError::BadBanner(text.chars().take(80).collect()));
            }
            self.banner_seen = true;
            out.push(Frame::Banner(text));
            return Ok(());
        }
        if text.is_empty() {
            if !self.current.fields.is_empty() {
                out.push(Frame::Message(std::mem::take(&mut self.current)));
            }
            self.current_bytes = 0;
            return Ok(());
        }
        self.current_bytes += raw_len;
        if self.current_bytes > self.max_message {
            return Err(FrameError::TooLarge {
                limit: self.max_message,
            });
        }
        // "Key: value": Asterisk writes exactly one space after the colon;
        // anything after it (leading blanks included) is the value. A line
        // without a colon (never seen from Asterisk 22) is kept whole as a
        // value with an empty key rather than dropped.
        match text.split_once(':') {
            Some((k, v)) => {
                let v = v.strip_prefix(' ').unwrap_or(v);
                self.current.push(k.trim(), v);
            }
            None => self.current.push("", text),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<Frame> {
        let mut p = FrameParser::new(DEFAULT_MAX_MESSAGE);
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out).expect("parse");
        }
        out
    }

    const WIRE: &[u8] = b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nActionID: login-1\r\nMessage: Authentication accepted\r\n\r\nEvent: VarSet\r\nValue:    minrxmes=0;\r\nChanVariable: A=1\r\nChanVariable: B=2\r\nAccountCode: \r\n\r\n";

    #[test]
    fn every_split_gives_the_same_frames() {
        let whole = parse_all(&[WIRE]);
        assert_eq!(whole.len(), 3);
        assert_eq!(
            whole[0],
            Frame::Banner("Asterisk Call Manager/11.0.0".into())
        );
        let Frame::Message(ev) = &whole[2] else {
            panic!("not a message: {:?}", whole[2]);
        };
        assert_eq!(ev.get("value"), Some("   minrxmes=0;"));
        assert_eq!(
            ev.get_all("ChanVariable").collect::<Vec<_>>(),
            ["A=1", "B=2"]
        );
        assert_eq!(ev.get("AccountCode"), Some(""));
        // Every split point, including between \r and \n and inside the
        // final \r\n\r\n; and byte by byte.
        for i in 0..=WIRE.len() {
            assert_eq!(parse_all(&[&WIRE[..i], &WIRE[i..]]), whole, "split at {i}");
        }
        let bytes: Vec<&[u8]> = WIRE.chunks(1).collect();
        assert_eq!(parse_all(&bytes), whole);
    }

    #[test]
    fn banner_must_be_a_manager() {
        let mut p = FrameParser::new(1024);
        let mut out = Vec::new();
        let e = p.feed(b"SSH-2.0-OpenSSH_9.2\r\n", &mut out);
        assert!(matches!(e, Err(FrameError::BadBanner(_))), "{e:?}");
    }

    #[test]
    fn oversize_message_is_an_error_not_memory() {
        let mut p = FrameParser::new(1024);
        let mut out = Vec::new();
        p.feed(b"Asterisk Call Manager/11.0.0\r\n", &mut out)
            .expect("banner");
        // Many short lines that never end the message.
        let mut failed = None;
        for i in 0..1000 {
            if let Err(e) = p.feed(format!("Output: line {i}\r\n").as_bytes(), &mut out) {
                failed = Some((i, e));
                break;
            }
        }
        let (i, e) = failed.expect("the bound was never hit");
        assert_eq!(e, FrameError::TooLarge { limit: 1024 });
        assert!(i < 100, "hit only after {i} lines");
        // One endless line without a line break.
        let mut p = FrameParser::new(1024);
        p.feed(b"Asterisk Call Manager/11.0.0\r\n", &mut out)
            .expect("banner");
        let mut failed = false;
        for _ in 0..100 {
            if p.feed(&[b'x'; 100], &mut out).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "an endless line was buffered");
        assert!(p.buf.len() <= 1200);
        // A failed parser stays failed.
        assert!(p.feed(b"\r\n\r\n", &mut out).is_err());
        // Messages just under the bound pass, repeatedly.
        let mut p = FrameParser::new(1024);
        p.feed(b"Asterisk Call Manager/11.0.0\r\n", &mut out)
            .expect("banner");
        let msg = format!("Event: X\r\nData: {}\r\n\r\n", "y".repeat(900));
        for _ in 0..10 {
            p.feed(msg.as_bytes(), &mut out).expect("under the bound");
        }
    }

    #[test]
    fn writer_refuses_injection() {
        let ok = Action::new("Hangup").field("Channel", "PJSIP/1001-00000001");
        assert_eq!(
            ok.to_wire("h-1").expect("wire"),
            b"Action: Hangup\r\nActionID: h-1\r\nChannel: PJSIP/1001-00000001\r\n\r\n"
        );
        for (k, v) in [
            ("Channel", "PJSIP/1\r\n\r\nAction: Command"),
            ("Channel", "x\ny"),
            ("Channel", "x\r"),
        ] {
            let e = Action::new("Hangup").field(k, v).to_wire("h-2");
            assert_eq!(e, Err(FrameError::LineBreakInValue(k.into())), "{v:?}");
        }
        for k in ["Chan: nel", "", "A\r\nB", " Channel", "ActionID", "action"] {
            let e = Action::new("Hangup").field(k, "v").to_wire("h-3");
            assert!(matches!(e, Err(FrameError::BadKey(_))), "{k:?}: {e:?}");
        }
        assert!(Action::new("Hangup\r\nX").to_wire("h").is_err());
        assert!(Action::new("Ping").to_wire("bad\r\nid").is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let a = Action::new("Login")
            .field("Username", "u")
            .field("Secret", "hunter2");
        let s = format!("{a:?}");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("Username"));
    }
}
