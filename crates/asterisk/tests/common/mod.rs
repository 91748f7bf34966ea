//! Test tools: the captured AMI transcripts of a real Asterisk 22
//! (`tests/fixtures/*.raw.jsonl`, copies of `shared/asterisk`),
//! and an AMI peer on 127.0.0.1 that replays their server bytes, answering
//! the client's actions by ActionID.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use asterisk::ami::{Frame, FrameParser, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One chunk of a transcript: seconds since connect, direction, bytes.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub t: f64,
    pub from_server: bool,
    pub bytes: String,
}

/// The captured Asterisk files: the copies in `tests/fixtures` (the
/// repository is self-contained: CI runs on a clean clone).
pub fn shared_asterisk() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    assert!(
        dir.is_dir(),
        "the Asterisk transcripts are missing from {dir:?}"
    );
    dir
}

/// The chunks of `tests/fixtures/<name>`.
pub fn transcript(name: &str) -> Vec<Chunk> {
    let path = shared_asterisk().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read the transcript {path:?}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{path:?}: bad line {l:?}: {e}"));
            Chunk {
                t: v["t"].as_f64().expect("t"),
                from_server: v["dir"].as_str() == Some("S->C"),
                bytes: v["bytes"].as_str().expect("bytes").to_string(),
            }
        })
        .collect()
}

/// Messages of client bytes (which have no banner).
pub fn client_messages(bytes: &str) -> Vec<Message> {
    let mut p = FrameParser::new(1 << 20);
    let mut out = Vec::new();
    p.feed(b"Asterisk Call Manager/11.0.0\r\n", &mut out)
        .expect("banner");
    p.feed(bytes.as_bytes(), &mut out).expect("client bytes");
    out.into_iter()
        .filter_map(|f| match f {
            Frame::Message(m) => Some(m),
            Frame::Banner(_) => None,
        })
        .collect()
}

/// Every server message of a transcript, in order (banner skipped).
pub fn server_messages(chunks: &[Chunk]) -> Vec<(f64, Message)> {
    let mut p = FrameParser::new(1 << 20);
    let mut out = Vec::new();
    for c in chunks.iter().filter(|c| c.from_server) {
        let mut frames = Vec::new();
        p.feed(c.bytes.as_bytes(), &mut frames)
            .expect("server bytes");
        for f in frames {
            if let Frame::Message(m) = f {
                out.push((c.t, m));
            }
        }
    }
    out
}

/// Rewrites `ActionID:` lines through `map`.
pub fn rewrite_ids(bytes: &str, map: &HashMap<String, String>) -> String {
    bytes
        .split_inclusive("\r\n")
        .map(|line| {
            if let Some(id) = line
                .strip_prefix("ActionID: ")
                .and_then(|r| r.strip_suffix("\r\n"))
            {
                if let Some(new) = map.get(id) {
                    return format!("ActionID: {new}\r\n");
                }
            }
            line.to_string()
        })
        .collect()
}

/// The server bytes a transcript sent right after the client's action
/// named `action` (its answer), with the transcript's ActionID.
pub fn answer_in(chunks: &[Chunk], action: &str) -> Option<(String, String)> {
    let i = chunks.iter().position(|c| {
        !c.from_server
            && client_messages(&c.bytes)
                .first()
                .is_some_and(|m| m.is("Action", action))
    })?;
    let id = client_messages(&chunks[i].bytes)[0]
        .action_id()?
        .to_string();
    let answer: String = chunks[i + 1..]
        .iter()
        .take_while(|c| c.from_server)
        .map(|c| c.bytes.as_str())
        .collect();
    // Only the messages that carry the action's id (plus nothing else).
    let msgs: String = answer
        .split_inclusive("\r\n\r\n")
        .filter(|m| m.contains(&format!("ActionID: {id}\r\n")))
        .collect();
    Some((id, msgs))
}

/// How the peer spaces the server chunks.
#[derive(Debug, Clone, Copy)]
pub enum Pacing {
    /// As fast as possible.
    Instant,
    /// The recorded gaps, each at most `max_gap`.
    Recorded { max_gap: Duration },
}

/// What the peer does on one connection.
#[derive(Debug, Clone)]
pub struct Script {
    pub chunks: Vec<Chunk>,
    pub pacing: Pacing,
    /// Close the connection when the script ends (else keep answering).
    pub close_at_end: bool,
    /// Answer `Ping` actions (a dead peer does not).
    pub answer_pings: bool,
    /// MD5 login: the challenge to send and the secret the key must use.
    pub md5: Option<(String, String)>,
    /// The first this many `PJSIPShowRegistrationsOutbound` the client asks
    /// on its own get an empty listing (a trunk added since).
    pub empty_listings: usize,
}

impl Script {
    pub fn new(chunks: Vec<Chunk>) -> Self {
        Self {
            chunks,
            pacing: Pacing::Instant,
            close_at_end: false,
            answer_pings: true,
            md5: None,
            empty_listings: 0,
        }
    }
}

/// What the peer saw, for assertions.
#[derive(Debug, Default)]
pub struct Seen {
    /// Every action received, per connection.
    pub actions: Vec<Vec<Message>>,
    pub connections: usize,
}

/// Canned answers to what the client asks on its own (keep-alive, the
/// resync after login), from the transcripts where they have one.
fn side_answer(
    m: &Message,
    listing: &HashMap<String, (String, String)>,
    empty: &mut usize,
) -> Option<String> {
    let id = m.action_id()?.to_string();
    let name = m.get("Action")?;
    if name.eq_ignore_ascii_case("Ping") {
        return Some(format!(
            "Response: Success\r\nActionID: {id}\r\nPing: Pong\r\nTimestamp: 0.0\r\n\r\n"
        ));
    }
    let listed = listing.get(&name.to_ascii_lowercase());
    let skip = listed.is_some() && *empty > 0;
    if skip {
        *empty -= 1;
    }
    if let Some((orig, bytes)) = listed.filter(|_| !skip) {
        let map = HashMap::from([(orig.clone(), id)]);
        return Some(rewrite_ids(bytes, &map));
    }
    let complete = match name {
        "PJSIPShowContacts" => "ContactListComplete",
        "CoreShowChannels" => "CoreShowChannelsComplete",
        "PJSIPShowRegistrationsOutbound" => "OutboundRegistrationDetailComplete",
        _ => return None,
    };
    Some(format!(
        "Response: Success\r\nActionID: {id}\r\nEventList: start\r\nMessage: listing follows\r\n\r\n\
         Event: {complete}\r\nActionID: {id}\r\nEventList: Complete\r\nListItems: 0\r\n\r\n"
    ))
}

pub struct Peer {
    pub addr: String,
    pub seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Peer {
    /// Listens on 127.0.0.1:0 and serves `scripts[i]` to the i-th
    /// connection (the last one to any later connection).
    pub async fn start(scripts: Vec<Script>) -> Self {
        Self::start_on("127.0.0.1:0", scripts).await
    }

    /// The same on a given address.
    pub async fn start_on(addr: &str, scripts: Vec<Script>) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let seen = Arc::new(Mutex::new(Seen::default()));
        // The real listing of the wizard trunk answers the client's own
        // PJSIPShowRegistrationsOutbound.
        let mut listing = HashMap::new();
        if let Some(a) = answer_in(
            &transcript("ami-transcript.raw.jsonl"),
            "PJSIPShowRegistrationsOutbound",
        ) {
            listing.insert("pjsipshowregistrationsoutbound".to_string(), a);
        }
        let s2 = seen.clone();
        let task = tokio::spawn(async move {
            let mut n = 0usize;
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let script = scripts[n.min(scripts.len() - 1)].clone();
                n += 1;
                let (seen, listing) = (s2.clone(), listing.clone());
                let conn = {
                    let mut s = seen.lock().expect("seen");
                    s.connections += 1;
                    s.actions.push(Vec::new());
                    s.actions.len() - 1
                };
                tokio::spawn(serve(sock, script, seen, conn, listing));
            }
        });
        Self { addr, seen, task }
    }

    pub fn actions(&self, conn: usize) -> Vec<Message> {
        self.seen
            .lock()
            .expect("seen")
            .actions
            .get(conn)
            .cloned()
            .unwrap_or_default()
    }

    pub fn connections(&self) -> usize {
        self.seen.lock().expect("seen").connections
    }
}

struct Reader {
    sock: tokio::io::ReadHalf<TcpStream>,
    parser: FrameParser,
    queue: std::collections::VecDeque<Message>,
}

impl Reader {
    async fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(m) = self.queue.pop_front() {
                return Some(m);
            }
            let mut buf = [0u8; 4096];
            let n = self.sock.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            let mut frames = Vec::new();
            self.parser.feed(&buf[..n], &mut frames).ok()?;
            for f in frames {
                if let Frame::Message(m) = f {
                    self.queue.push_back(m);
                }
            }
        }
    }
}

async fn serve(
    sock: TcpStream,
    script: Script,
    seen: Arc<Mutex<Seen>>,
    conn: usize,
    listing: HashMap<String, (String, String)>,
) {
    let (r, mut w) = tokio::io::split(sock);
    let mut parser = FrameParser::new(1 << 20);
    let mut ignore = Vec::new();
    parser
        .feed(b"Asterisk Call Manager/11.0.0\r\n", &mut ignore)
        .expect("banner");
    let mut reader = Reader {
        sock: r,
        parser,
        queue: Default::default(),
    };
    let record = |m: &Message| seen.lock().expect("seen").actions[conn].push(m.clone());
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut empty = script.empty_listings;
    let mut last_t: Option<f64> = None;
    for chunk in &script.chunks {
        if chunk.from_server {
            if let (Pacing::Recorded { max_gap }, Some(prev)) = (script.pacing, last_t) {
                let gap = Duration::from_secs_f64((chunk.t - prev).max(0.0)).min(max_gap);
                tokio::time::sleep(gap).await;
            }
            last_t = Some(chunk.t);
            if w.write_all(rewrite_ids(&chunk.bytes, &ids).as_bytes())
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        // Wait for the client's action of the same name; answer what it
        // asks on its own meanwhile.
        let expected = client_messages(&chunk.bytes);
        let Some(exp) = expected.first() else {
            continue;
        };
        let exp_name = exp.get("Action").unwrap_or("").to_string();
        loop {
            let Some(m) = reader.next().await else { return };
            record(&m);
            let name = m.get("Action").unwrap_or("");
            if let (Some((challenge, _)), true) =
                (&script.md5, name.eq_ignore_ascii_case("Challenge"))
            {
                let id = m.action_id().unwrap_or("");
                let reply = format!(
                    "Response: Success\r\nActionID: {id}\r\nChallenge: {challenge}\r\n\r\n"
                );
                if w.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
                continue;
            }
            if name.eq_ignore_ascii_case(&exp_name) {
                if let (Some((challenge, secret)), true) =
                    (&script.md5, name.eq_ignore_ascii_case("Login"))
                {
                    let want = asterisk::ami::session::md5_key(challenge, secret);
                    if m.get("Key") != Some(want.as_str()) || m.get("Secret").is_some() {
                        let id = m.action_id().unwrap_or("");
                        let _ = w
                            .write_all(
                                format!("Response: Error\r\nActionID: {id}\r\nMessage: Authentication failed\r\n\r\n")
                                    .as_bytes(),
                            )
                            .await;
                        return;
                    }
                }
                if let (Some(o), Some(n)) = (exp.action_id(), m.action_id()) {
                    ids.insert(o.to_string(), n.to_string());
                }
                break;
            }
            if name.eq_ignore_ascii_case("Ping") && !script.answer_pings {
                continue;
            }
            if let Some(reply) = side_answer(&m, &listing, &mut empty) {
                if w.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    }
    if script.close_at_end {
        return;
    }
    // Keep answering until the client goes.
    while let Some(m) = reader.next().await {
        record(&m);
        if m.is("Action", "Ping") && !script.answer_pings {
            continue;
        }
        if let Some(reply) = side_answer(&m, &listing, &mut empty) {
            if w.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

/// Waits (bounded) for `pred` to hold.
pub async fn eventually(what: &str, timeout: Duration, mut pred: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < end {
        if pred() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}
