//! The AMI session: login, ActionID correlation, keep-alive and
//! reconnection, as a state machine. No IO, no clock: time comes in as an
//! argument, randomness (the backoff's jitter) from a seed in the config.
//!
//! # Run loop
//!
//! The shell owns one [`Session`] and does, forever:
//!
//! 1. drain [`Session::poll_output`] until it returns `None`, carrying out
//!    each [`Output`] (`Connect`: open a TCP connection and report it with
//!    [`Session::handle_connected`] or [`Session::handle_connect_failed`];
//!    `Transmit`: write the bytes; `Close`: drop the connection);
//! 2. wait until the earliest of: bytes from the socket
//!    ([`Session::handle_bytes`]), the socket closing
//!    ([`Session::handle_closed`]), an action from the application
//!    ([`Session::send_action`]), or [`Session::poll_timeout`]
//!    ([`Session::handle_timeout`]);
//! 3. go to 1.
//!
//! Every input may produce outputs, so step 1 follows every input.
//!
//! # Correlation
//!
//! Every action carries an `ActionID` the session chooses. A `Response`
//! with that id completes the action, unless it says `EventList: start`:
//! then the events carrying the same id are collected until one says
//! `EventList: Complete` (PJSIPShowEndpoints → EndpointList… +
//! EndpointListComplete, PJSIPShowContacts, PJSIPShowRegistrationsOutbound,
//! CoreShowChannels, QueueStatus, and Hangup by regex → ChannelHungup…).
//! Events with an id that completed already (the `OriginateResponse` of an
//! `Async` originate) and events with no id are plain events.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

use super::frame::{Action, Frame, FrameError, FrameParser, Message, DEFAULT_MAX_MESSAGE};

/// How the session logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// `Action: Login` with `Secret:` (the secret crosses the wire).
    Plain,
    /// `Action: Challenge` (`AuthType: MD5`), then `Login` with
    /// `Key: md5(challenge + secret)`.
    Md5,
}

/// Session settings. `Debug` hides the secret.
#[derive(Clone)]
pub struct Config {
    pub username: String,
    pub secret: String,
    pub auth: AuthMode,
    /// A `Ping` when the session has been idle this long.
    pub ping_interval: Duration,
    /// No `Pong` within this: the connection is dead, reconnect.
    pub ping_timeout: Duration,
    /// An action without its (whole) response within this fails.
    pub action_timeout: Duration,
    /// From TCP connect to logged in.
    pub login_timeout: Duration,
    /// First reconnect delay; doubles per failure up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Bound on one AMI message, bytes.
    pub max_message: usize,
    /// Seed of the jitter (the shell passes something random).
    pub jitter_seed: u64,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("username", &self.username)
            .field("secret", &"***")
            .field("auth", &self.auth)
            .field("ping_interval", &self.ping_interval)
            .field("ping_timeout", &self.ping_timeout)
            .field("action_timeout", &self.action_timeout)
            .field("login_timeout", &self.login_timeout)
            .field("backoff_initial", &self.backoff_initial)
            .field("backoff_max", &self.backoff_max)
            .field("max_message", &self.max_message)
            .finish()
    }
}

impl Config {
    pub fn new(username: impl Into<String>, secret: impl Into<String>, auth: AuthMode) -> Self {
        Self {
            username: username.into(),
            secret: secret.into(),
            auth,
            ping_interval: Duration::from_secs(20),
            ping_timeout: Duration::from_secs(10),
            action_timeout: Duration::from_secs(15),
            login_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            max_message: DEFAULT_MAX_MESSAGE,
            jitter_seed: 0x9e37_79b9_7f4a_7c15,
        }
    }
}

/// The application's handle on an action it sent.
pub type Token = u64;

/// A completed action: the `Response` message and, for list actions, the
/// events of the list (the final `…Complete` event included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub message: Message,
    pub events: Vec<Message>,
}

impl Response {
    /// `Response: Success` (or `Goodbye`, the answer to `Logoff`).
    pub fn is_success(&self) -> bool {
        self.message.is("Response", "Success") || self.message.is("Response", "Goodbye")
    }

    /// `Message:` of the response.
    pub fn text(&self) -> &str {
        self.message.get("Message").unwrap_or("")
    }

    /// The list events, without the final `…Complete` one.
    pub fn items(&self) -> impl Iterator<Item = &Message> {
        self.events.iter().filter(|e| !is_list_end(e))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ActionError {
    #[error("not connected to the Asterisk manager")]
    NotConnected,
    #[error("the connection to the Asterisk manager was lost before the answer")]
    Disconnected,
    #[error("no answer from the Asterisk manager within {0:?}")]
    Timeout(Duration),
    #[error("the action cannot be written: {0}")]
    Frame(#[from] FrameError),
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    ConnectFailed(String),
    Closed,
    LoginRefused(String),
    LoginTimeout,
    PingTimeout,
    Protocol(FrameError),
    Stopped,
}

impl std::fmt::Display for DownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ConnectFailed(e) => write!(f, "connect failed: {e}"),
            Self::Closed => f.write_str("connection closed"),
            Self::LoginRefused(m) => write!(f, "login refused: {m}"),
            Self::LoginTimeout => f.write_str("no login answer in time"),
            Self::PingTimeout => f.write_str("no answer to Ping in time"),
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::Stopped => f.write_str("stopped"),
        }
    }
}

/// What the shell must do, or what the application is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a TCP connection to the manager now.
    Connect,
    /// Write these bytes to the connection.
    Transmit(Vec<u8>),
    /// Drop the connection.
    Close,
    /// Logged in: actions may be sent.
    Ready { banner: String },
    /// The session is down; a `Connect` follows after the backoff (unless
    /// stopped). `retry_in` is that backoff.
    Down {
        reason: DownReason,
        retry_in: Option<Duration>,
    },
    /// An event that belongs to no pending action.
    Event(Message),
    /// An action finished.
    Completed {
        token: Token,
        result: Result<Response, ActionError>,
    },
}

#[derive(Debug)]
enum State {
    /// Before (re)connecting.
    Waiting {
        until: Instant,
    },
    /// `Connect` was emitted; waiting for the shell's report.
    Connecting,
    /// Connected; banner, optional challenge, login.
    LoggingIn {
        deadline: Instant,
        step: LoginStep,
        banner: Option<String>,
    },
    Ready {
        banner: String,
        next_ping: Instant,
        /// Id and deadline of the outstanding `Ping`.
        ping: Option<(String, Instant)>,
    },
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LoginStep {
    Banner,
    Challenge(String),
    Login(String),
}

#[derive(Debug)]
struct Pending {
    token: Token,
    deadline: Instant,
    /// Set once the response said `EventList: start`.
    list: Option<Response>,
}

/// One AMI session across reconnections. See the module docs.
#[derive(Debug)]
pub struct Session {
    config: Config,
    state: State,
    parser: FrameParser,
    out: VecDeque<Output>,
    pending: HashMap<String, Pending>,
    next_id: u64,
    next_token: Token,
    failures: u32,
    rng: u64,
}

fn is_list_end(m: &Message) -> bool {
    m.is("EventList", "Complete") || m.is("EventList", "Cancelled")
}

impl Session {
    /// A session that connects at once (the first `poll_output` is
    /// `Connect`).
    pub fn new(config: Config, now: Instant) -> Self {
        let parser = FrameParser::new(config.max_message);
        let rng = config.jitter_seed | 1;
        Self {
            config,
            state: State::Waiting { until: now },
            parser,
            out: VecDeque::new(),
            pending: HashMap::new(),
            next_id: 1,
            next_token: 1,
            failures: 0,
            rng,
        }
    }

    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready { .. })
    }

    /// The banner of the current connection, once logged in.
    pub fn banner(&self) -> Option<&str> {
        match &self.state {
            State::Ready { banner, .. } => Some(banner),
            _ => None,
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The next moment [`Session::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let state = match &self.state {
            State::Waiting { until } => Some(*until),
            State::Connecting | State::Stopped => None,
            State::LoggingIn { deadline, .. } => Some(*deadline),
            State::Ready {
                next_ping, ping, ..
            } => Some(ping.as_ref().map_or(*next_ping, |(_, d)| *d)),
        };
        let actions = self.pending.values().map(|p| p.deadline).min();
        match (state, actions) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(p) = self.pending.remove(&id) {
                self.out.push_back(Output::Completed {
                    token: p.token,
                    result: Err(ActionError::Timeout(self.config.action_timeout)),
                });
            }
        }
        enum Due {
            Connect,
            LoginTimeout,
            PingTimeout,
            Ping,
        }
        let due = match &self.state {
            State::Waiting { until } if *until <= now => Some(Due::Connect),
            State::LoggingIn { deadline, .. } if *deadline <= now => Some(Due::LoginTimeout),
            State::Ready {
                next_ping, ping, ..
            } => match ping {
                Some((_, deadline)) if *deadline <= now => Some(Due::PingTimeout),
                None if *next_ping <= now => Some(Due::Ping),
                _ => None,
            },
            _ => None,
        };
        match due {
            Some(Due::Connect) => {
                self.state = State::Connecting;
                self.out.push_back(Output::Connect);
            }
            Some(Due::LoginTimeout) => self.down(now, DownReason::LoginTimeout, true),
            Some(Due::PingTimeout) => self.down(now, DownReason::PingTimeout, true),
            Some(Due::Ping) => {
                let id = self.fresh_id("ping");
                if let State::Ready { ping, .. } = &mut self.state {
                    *ping = Some((id.clone(), now + self.config.ping_timeout));
                }
                self.transmit(&Action::new("Ping"), &id);
            }
            None => {}
        }
    }

    /// The TCP connection the last `Connect` asked for is open.
    pub fn handle_connected(&mut self, now: Instant) {
        if !matches!(self.state, State::Connecting) {
            return;
        }
        self.parser = FrameParser::new(self.config.max_message);
        self.state = State::LoggingIn {
            deadline: now + self.config.login_timeout,
            step: LoginStep::Banner,
            banner: None,
        };
    }

    pub fn handle_connect_failed(&mut self, now: Instant, error: impl Into<String>) {
        if matches!(self.state, State::Connecting) {
            self.down(now, DownReason::ConnectFailed(error.into()), false);
        }
    }

    /// The peer closed the connection (or reading/writing failed).
    pub fn handle_closed(&mut self, now: Instant) {
        if matches!(self.state, State::LoggingIn { .. } | State::Ready { .. }) {
            self.down(now, DownReason::Closed, false);
        }
    }

    /// Stops for good: fails what is pending, closes, never reconnects.
    pub fn stop(&mut self, now: Instant) {
        if !matches!(self.state, State::Stopped) {
            self.down(now, DownReason::Stopped, true);
        }
    }

    pub fn handle_bytes(&mut self, now: Instant, data: &[u8]) {
        if !matches!(self.state, State::LoggingIn { .. } | State::Ready { .. }) {
            return;
        }
        let mut frames = Vec::new();
        let res = self.parser.feed(data, &mut frames);
        for f in frames {
            self.frame(now, f);
            if !matches!(self.state, State::LoggingIn { .. } | State::Ready { .. }) {
                return;
            }
        }
        if let Err(e) = res {
            self.down(now, DownReason::Protocol(e), true);
        }
    }

    /// Sends `action` now; its answer comes as `Output::Completed` with
    /// the returned token. Fails at once when not logged in (callers decide
    /// whether to retry; nothing is queued across a reconnection).
    pub fn send_action(&mut self, now: Instant, action: &Action) -> Result<Token, ActionError> {
        if !self.is_ready() {
            return Err(ActionError::NotConnected);
        }
        let id = self.fresh_id("c");
        let bytes = action.to_wire(&id)?;
        let token = self.next_token;
        self.next_token += 1;
        self.pending.insert(
            id,
            Pending {
                token,
                deadline: now + self.config.action_timeout,
                list: None,
            },
        );
        self.out.push_back(Output::Transmit(bytes));
        Ok(token)
    }

    fn fresh_id(&mut self, prefix: &str) -> String {
        // Never reused across reconnections, so a late answer from an old
        // connection cannot complete a new action.
        let id = format!("{prefix}-{}", self.next_id);
        self.next_id += 1;
        id
    }

    /// Writes an internal action (login, ping), whose fields are ours.
    fn transmit(&mut self, action: &Action, id: &str) {
        match action.to_wire(id) {
            Ok(b) => self.out.push_back(Output::Transmit(b)),
            // Only the username or secret from the config can do this.
            Err(e) => tracing::error!(error = %e, "AMI: cannot write {}", action.name),
        }
    }

    fn frame(&mut self, now: Instant, frame: Frame) {
        match frame {
            Frame::Banner(b) => {
                if let State::LoggingIn {
                    step: LoginStep::Banner,
                    banner,
                    ..
                } = &mut self.state
                {
                    *banner = Some(b);
                    self.start_login();
                }
            }
            Frame::Message(m) => match &self.state {
                State::LoggingIn { .. } => self.login_message(now, m),
                State::Ready { .. } => self.ready_message(now, m),
                _ => {}
            },
        }
    }

    fn start_login(&mut self) {
        let id = self.fresh_id("login");
        let (action, step) = match self.config.auth {
            AuthMode::Plain => (
                Action::new("Login")
                    .field("Username", self.config.username.clone())
                    .field("Secret", self.config.secret.clone()),
                LoginStep::Login(id.clone()),
            ),
            AuthMode::Md5 => (
                Action::new("Challenge").field("AuthType", "MD5"),
                LoginStep::Challenge(id.clone()),
            ),
        };
        if let State::LoggingIn { step: s, .. } = &mut self.state {
            *s = step;
        }
        self.transmit(&action, &id);
    }

    fn login_message(&mut self, now: Instant, m: Message) {
        let State::LoggingIn { step, banner, .. } = &self.state else {
            return;
        };
        let Some(resp) = m.response() else {
            // Nothing but our answers is expected before the login.
            return;
        };
        let ok = resp.eq_ignore_ascii_case("Success");
        match step.clone() {
            LoginStep::Challenge(id) if m.action_id() == Some(id.as_str()) => {
                let challenge = m.get("Challenge").filter(|c| !c.is_empty());
                match challenge.filter(|_| ok) {
                    Some(c) => {
                        let key = md5_key(c, &self.config.secret);
                        let id = self.fresh_id("login");
                        if let State::LoggingIn { step, .. } = &mut self.state {
                            *step = LoginStep::Login(id.clone());
                        }
                        let login = Action::new("Login")
                            .field("AuthType", "MD5")
                            .field("Username", self.config.username.clone())
                            .field("Key", key);
                        self.transmit(&login, &id);
                    }
                    None => {
                        let why = m.get("Message").unwrap_or("challenge refused").to_string();
                        self.down(now, DownReason::LoginRefused(why), true);
                    }
                }
            }
            LoginStep::Login(id) if m.action_id() == Some(id.as_str()) => {
                if ok {
                    let banner = banner.clone().unwrap_or_default();
                    self.failures = 0;
                    self.state = State::Ready {
                        banner: banner.clone(),
                        next_ping: now + self.config.ping_interval,
                        ping: None,
                    };
                    self.out.push_back(Output::Ready { banner });
                } else {
                    let why = m.get("Message").unwrap_or("login refused").to_string();
                    self.down(now, DownReason::LoginRefused(why), true);
                }
            }
            _ => {}
        }
    }

    fn ready_message(&mut self, now: Instant, m: Message) {
        let id = m.action_id().map(str::to_string);
        // `OriginateResponse` is an event with a `Response:` field: only a
        // message without `Event:` is an answer.
        if m.response().is_some() && m.event().is_none() {
            let Some(id) = id else {
                tracing::debug!(?m, "AMI: response without ActionID");
                return;
            };
            if let State::Ready {
                ping, next_ping, ..
            } = &mut self.state
            {
                if ping.as_ref().is_some_and(|(p, _)| *p == id) {
                    *ping = None;
                    *next_ping = now + self.config.ping_interval;
                    return;
                }
            }
            let Some(mut p) = self.pending.remove(&id) else {
                tracing::debug!(action_id = %id, "AMI: response to no pending action");
                return;
            };
            if m.is("EventList", "start") {
                p.list = Some(Response {
                    message: m,
                    events: Vec::new(),
                });
                self.pending.insert(id, p);
            } else {
                self.out.push_back(Output::Completed {
                    token: p.token,
                    result: Ok(Response {
                        message: m,
                        events: Vec::new(),
                    }),
                });
            }
            return;
        }
        if let Some(id) = id {
            if let Some(p) = self.pending.get_mut(&id) {
                if let Some(list) = &mut p.list {
                    let end = is_list_end(&m);
                    list.events.push(m);
                    if end {
                        if let Some(p) = self.pending.remove(&id) {
                            if let Some(list) = p.list {
                                self.out.push_back(Output::Completed {
                                    token: p.token,
                                    result: Ok(list),
                                });
                            }
                        }
                    }
                    return;
                }
            }
        }
        // Any traffic proves the connection alive: push the next ping back.
        if let State::Ready {
            next_ping,
            ping: None,
            ..
        } = &mut self.state
        {
            *next_ping = now + self.config.ping_interval;
        }
        self.out.push_back(Output::Event(m));
    }

    /// Ends the connection: fails what is pending, schedules the next
    /// attempt (unless stopped).
    fn down(&mut self, now: Instant, reason: DownReason, close: bool) {
        if close {
            self.out.push_back(Output::Close);
        }
        let mut ids: Vec<_> = self.pending.drain().map(|(_, p)| p.token).collect();
        ids.sort_unstable();
        for token in ids {
            self.out.push_back(Output::Completed {
                token,
                result: Err(ActionError::Disconnected),
            });
        }
        if reason == DownReason::Stopped {
            self.state = State::Stopped;
            self.out.push_back(Output::Down {
                reason,
                retry_in: None,
            });
            return;
        }
        let delay = self.backoff();
        self.failures = self.failures.saturating_add(1);
        self.state = State::Waiting { until: now + delay };
        self.out.push_back(Output::Down {
            reason,
            retry_in: Some(delay),
        });
    }

    /// Exponential backoff with "equal jitter": half the delay fixed, half
    /// random, so that many clients restarted together spread out.
    fn backoff(&mut self) -> Duration {
        let base = self.config.backoff_initial.as_millis() as u64;
        let max = self.config.backoff_max.as_millis().max(1) as u64;
        let exp = base
            .saturating_mul(1u64 << self.failures.min(20))
            .clamp(1, max);
        let half = exp / 2;
        Duration::from_millis(half + self.next_random() % (exp - half + 1))
    }

    /// splitmix64: enough for jitter, no dependency, deterministic in tests.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// `Key` of an MD5 login: lowercase hex of md5(challenge + secret).
pub fn md5_key(challenge: &str, secret: &str) -> String {
    let mut h = Md5::new();
    h.update(challenge.as_bytes());
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BANNER: &[u8] = b"Asterisk Call Manager/11.0.0\r\n";

    fn cfg(auth: AuthMode) -> Config {
        let mut c = Config::new("anchor", "anchorpass", auth);
        c.ping_interval = Duration::from_secs(5);
        c.ping_timeout = Duration::from_secs(2);
        c.action_timeout = Duration::from_secs(3);
        c.backoff_initial = Duration::from_secs(1);
        c.backoff_max = Duration::from_secs(8);
        c
    }

    fn drain(s: &mut Session) -> Vec<Output> {
        std::iter::from_fn(|| s.poll_output()).collect()
    }

    fn sent(outs: &[Output]) -> Vec<Message> {
        let mut p = FrameParser::new(DEFAULT_MAX_MESSAGE);
        let mut frames = Vec::new();
        p.feed(BANNER, &mut frames).expect("banner");
        for o in outs {
            if let Output::Transmit(b) = o {
                p.feed(b, &mut frames).expect("our own bytes parse");
            }
        }
        frames
            .into_iter()
            .filter_map(|f| match f {
                Frame::Message(m) => Some(m),
                Frame::Banner(_) => None,
            })
            .collect()
    }

    /// A session logged in with the plain login; returns it and the time.
    fn ready() -> (Session, Instant) {
        let t0 = Instant::now();
        let mut s = Session::new(cfg(AuthMode::Plain), t0);
        s.handle_timeout(t0);
        assert_eq!(drain(&mut s), [Output::Connect]);
        s.handle_connected(t0);
        s.handle_bytes(t0, BANNER);
        let login = sent(&drain(&mut s));
        assert_eq!(login.len(), 1);
        assert_eq!(login[0].get("Action"), Some("Login"));
        assert_eq!(login[0].get("Secret"), Some("anchorpass"));
        let id = login[0].action_id().expect("id").to_string();
        s.handle_bytes(
            t0,
            format!(
                "Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n"
            )
            .as_bytes(),
        );
        let outs = drain(&mut s);
        assert!(
            matches!(&outs[..], [Output::Ready { banner }] if banner.starts_with("Asterisk Call Manager/")),
            "{outs:?}"
        );
        (s, t0)
    }

    fn id_of(s: &mut Session, now: Instant, a: Action) -> (Token, String) {
        let t = s.send_action(now, &a).expect("send");
        let m = sent(&drain(s));
        (t, m[0].action_id().expect("id").to_string())
    }

    #[test]
    fn md5_login_sends_the_key_not_the_secret() {
        let t0 = Instant::now();
        let mut s = Session::new(cfg(AuthMode::Md5), t0);
        s.handle_timeout(t0);
        drain(&mut s);
        s.handle_connected(t0);
        // Banner and response split mid-line.
        s.handle_bytes(t0, b"Asterisk Call Man");
        s.handle_bytes(t0, b"ager/11.0.0\r");
        s.handle_bytes(t0, b"\n");
        let ch = sent(&drain(&mut s));
        assert_eq!(ch[0].get("Action"), Some("Challenge"));
        assert_eq!(ch[0].get("AuthType"), Some("MD5"));
        let id = ch[0].action_id().expect("id");
        s.handle_bytes(
            t0,
            format!("Response: Success\r\nActionID: {id}\r\nChallenge: 840415273\r\n\r\n")
                .as_bytes(),
        );
        let outs = drain(&mut s);
        let raw: Vec<u8> = outs
            .iter()
            .filter_map(|o| match o {
                Output::Transmit(b) => Some(b.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert!(!String::from_utf8_lossy(&raw).contains("anchorpass"));
        let login = sent(&outs);
        assert_eq!(login[0].get("Action"), Some("Login"));
        // md5("840415273anchorpass"), computed independently.
        let mut h = Md5::new();
        h.update(b"840415273anchorpass");
        assert_eq!(
            login[0].get("Key"),
            Some(hex::encode(h.finalize()).as_str())
        );
        let id = login[0].action_id().expect("id");
        s.handle_bytes(
            t0,
            format!("Response: Success\r\nActionID: {id}\r\n\r\n").as_bytes(),
        );
        assert!(s.is_ready());
    }

    #[test]
    fn refused_login_backs_off_and_retries() {
        let t0 = Instant::now();
        let mut s = Session::new(cfg(AuthMode::Plain), t0);
        let mut delays = Vec::new();
        let mut now = t0;
        for _ in 0..6 {
            s.handle_timeout(now);
            assert_eq!(drain(&mut s), [Output::Connect]);
            s.handle_connected(now);
            s.handle_bytes(now, BANNER);
            let id = sent(&drain(&mut s))[0].action_id().expect("id").to_string();
            s.handle_bytes(
                now,
                format!(
                    "Response: Error\r\nActionID: {id}\r\nMessage: Authentication failed\r\n\r\n"
                )
                .as_bytes(),
            );
            let outs = drain(&mut s);
            let Some(Output::Down {
                reason: DownReason::LoginRefused(m),
                retry_in: Some(d),
            }) = outs.last()
            else {
                panic!("{outs:?}");
            };
            assert_eq!(m, "Authentication failed");
            assert_eq!(outs[0], Output::Close);
            delays.push(*d);
            // Nothing happens before the backoff ends.
            s.handle_timeout(now + *d - Duration::from_millis(1));
            assert!(drain(&mut s).is_empty());
            now += *d;
        }
        // 1, 2, 4, 8, 8, 8 s with jitter in [half, full].
        let caps = [1000u64, 2000, 4000, 8000, 8000, 8000];
        for (d, cap) in delays.iter().zip(caps) {
            let ms = d.as_millis() as u64;
            assert!(
                ms >= cap / 2 && ms <= cap,
                "{ms} not in [{}, {cap}]",
                cap / 2
            );
        }
        // The jitter does jitter.
        assert!(delays[3..].windows(2).any(|w| w[0] != w[1]), "{delays:?}");
    }

    #[test]
    fn responses_reach_their_action_in_any_order() {
        let (mut s, t0) = ready();
        let (ta, ida) = id_of(&mut s, t0, Action::new("CoreStatus"));
        let (tb, idb) = id_of(&mut s, t0, Action::new("NoSuchAction"));
        assert_ne!(ida, idb);
        s.handle_bytes(
            t0,
            format!("Response: Error\r\nActionID: {idb}\r\nMessage: Invalid/unknown command\r\n\r\nResponse: Success\r\nActionID: {ida}\r\nCoreCurrentCalls: 0\r\n\r\n").as_bytes(),
        );
        let outs = drain(&mut s);
        let done: HashMap<Token, Response> = outs
            .into_iter()
            .filter_map(|o| match o {
                Output::Completed { token, result } => Some((token, result.expect("ok"))),
                _ => None,
            })
            .collect();
        assert!(!done[&tb].is_success());
        assert_eq!(done[&tb].text(), "Invalid/unknown command");
        assert_eq!(done[&ta].message.get("CoreCurrentCalls"), Some("0"));
    }

    #[test]
    fn list_actions_collect_their_events_and_others_pass() {
        let (mut s, t0) = ready();
        let (t, id) = id_of(&mut s, t0, Action::new("PJSIPShowEndpoints"));
        s.handle_bytes(t0, format!("Response: Success\r\nActionID: {id}\r\nEventList: start\r\n\r\nEvent: EndpointList\r\nActionID: {id}\r\nObjectName: 1000\r\n\r\nEvent: Newchannel\r\nChannel: PJSIP/1000-1\r\n\r\nEvent: EndpointList\r\nActionID: {id}\r\nObjectName: 1001\r\n\r\n").as_bytes());
        let outs = drain(&mut s);
        assert!(
            matches!(&outs[..], [Output::Event(e)] if e.event() == Some("Newchannel")),
            "{outs:?}"
        );
        s.handle_bytes(t0, format!("Event: EndpointListComplete\r\nActionID: {id}\r\nEventList: Complete\r\nListItems: 2\r\n\r\n").as_bytes());
        let outs = drain(&mut s);
        let [Output::Completed {
            token,
            result: Ok(r),
        }] = &outs[..]
        else {
            panic!("{outs:?}");
        };
        assert_eq!(*token, t);
        let names: Vec<_> = r.items().filter_map(|e| e.get("ObjectName")).collect();
        assert_eq!(names, ["1000", "1001"]);
        assert_eq!(r.events.len(), 3);
    }

    #[test]
    fn originate_response_is_an_event() {
        let (mut s, t0) = ready();
        let (t, id) = id_of(&mut s, t0, Action::new("Originate").field("Async", "true"));
        s.handle_bytes(t0, format!("Response: Success\r\nActionID: {id}\r\nMessage: Originate successfully queued\r\n\r\nEvent: OriginateResponse\r\nActionID: {id}\r\nResponse: Success\r\nReason: 4\r\n\r\n").as_bytes());
        let outs = drain(&mut s);
        assert!(
            matches!(&outs[0], Output::Completed { token, result: Ok(r) } if *token == t && r.is_success()),
            "{outs:?}"
        );
        assert!(
            matches!(&outs[1], Output::Event(e) if e.event() == Some("OriginateResponse")),
            "{outs:?}"
        );
        assert_eq!(outs.len(), 2);
    }

    #[test]
    fn actions_time_out_and_fail_on_disconnect() {
        let (mut s, t0) = ready();
        let (ta, _) = id_of(&mut s, t0, Action::new("CoreStatus"));
        let t1 = t0 + Duration::from_secs(1);
        let (tb, _) = id_of(&mut s, t1, Action::new("CoreStatus"));
        s.handle_timeout(t0 + Duration::from_secs(3));
        let outs = drain(&mut s);
        assert_eq!(
            outs,
            [Output::Completed {
                token: ta,
                result: Err(ActionError::Timeout(Duration::from_secs(3)))
            }]
        );
        s.handle_closed(t1 + Duration::from_millis(1500));
        let outs = drain(&mut s);
        assert_eq!(
            outs[0],
            Output::Completed {
                token: tb,
                result: Err(ActionError::Disconnected)
            }
        );
        assert!(matches!(
            outs[1],
            Output::Down {
                reason: DownReason::Closed,
                ..
            }
        ));
        assert_eq!(
            s.send_action(t1, &Action::new("Ping")),
            Err(ActionError::NotConnected)
        );
        // Injection is refused before anything is written.
        let (mut s, t0) = ready();
        let e = s.send_action(
            t0,
            &Action::new("Hangup").field("Channel", "x\r\n\r\nAction: Logoff"),
        );
        assert!(matches!(
            e,
            Err(ActionError::Frame(FrameError::LineBreakInValue(_)))
        ));
        assert!(drain(&mut s).is_empty());
    }

    #[test]
    fn keepalive_ping_and_dead_peer() {
        let (mut s, t0) = ready();
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        let t1 = t0 + Duration::from_secs(5);
        s.handle_timeout(t1);
        let ping = sent(&drain(&mut s));
        assert_eq!(ping[0].get("Action"), Some("Ping"));
        let id = ping[0].action_id().expect("id");
        s.handle_bytes(
            t1,
            format!("Response: Success\r\nActionID: {id}\r\nPing: Pong\r\n\r\n").as_bytes(),
        );
        // The pong is internal.
        assert!(drain(&mut s).is_empty());
        assert_eq!(s.poll_timeout(), Some(t1 + Duration::from_secs(5)));
        let t2 = t1 + Duration::from_secs(5);
        s.handle_timeout(t2);
        assert_eq!(sent(&drain(&mut s)).len(), 1);
        // No pong within 2 s: close and reconnect.
        s.handle_timeout(t2 + Duration::from_secs(2));
        let outs = drain(&mut s);
        assert_eq!(outs[0], Output::Close);
        let Output::Down {
            reason: DownReason::PingTimeout,
            retry_in: Some(d),
        } = outs[1]
        else {
            panic!("{outs:?}");
        };
        s.handle_timeout(t2 + Duration::from_secs(2) + d);
        assert_eq!(drain(&mut s), [Output::Connect]);
    }

    #[test]
    fn oversize_message_drops_the_connection() {
        let (mut s, t0) = ready();
        let big = format!("Event: X\r\nData: {}\r\n", "y".repeat(DEFAULT_MAX_MESSAGE));
        s.handle_bytes(t0, big.as_bytes());
        let outs = drain(&mut s);
        assert_eq!(outs[0], Output::Close);
        assert!(matches!(
            outs[1],
            Output::Down {
                reason: DownReason::Protocol(FrameError::TooLarge { .. }),
                ..
            }
        ));
    }
}
