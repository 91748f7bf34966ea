//! The tokio AMI client: one task owns the TCP connection and the sans-IO
//! [`Session`], feeds it bytes and time, carries out its outputs, and
//! turns events into call events and registration changes. The
//! application talks to it through a cheap, cloneable [`AmiClient`].
//!
//! After every login the client asks for the state it may have missed
//! (`PJSIPShowContacts`, `PJSIPShowRegistrationsOutbound`,
//! `CoreShowChannels`): contacts and trunk registrations are replaced, and
//! calls whose channels vanished while it was away are ended.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use domain::call_events::CallEvent;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::ami::calls::{CallTranslator, Directory};
use crate::ami::registrations::{RegistrationChange, Registrations};
use crate::ami::{Action, ActionError, Config, Message, Output, Response, Session, Token};

/// Where and how to connect.
#[derive(Clone)]
pub struct ClientConfig {
    /// `host:port` of the manager (5038 by default in `manager.conf`).
    pub addr: String,
    pub session: Config,
    pub connect_timeout: Duration,
    /// How often the calls and contacts are listed again while connected
    /// (ends calls whose `Hangup` was never seen, e.g. a manager.conf
    /// `read=` filter or a lost event), besides after every login.
    pub resync_interval: Duration,
    /// Milliseconds since the epoch, for stamping call events (AMI events
    /// carry no time). Tests may pass their own.
    pub clock: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("addr", &self.addr)
            .field("session", &self.session)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

pub fn system_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl ClientConfig {
    pub fn new(addr: impl Into<String>, session: Config) -> Self {
        Self {
            addr: addr.into(),
            session,
            connect_timeout: Duration::from_secs(5),
            resync_interval: Duration::from_secs(300),
            clock: Arc::new(system_clock_ms),
        }
    }
}

/// What the client tells its subscribers.
#[derive(Debug, Clone)]
pub enum ClientEvent {
    /// Logged in (again).
    Connected {
        banner: String,
    },
    /// The session went down; it reconnects after `retry_in`.
    Disconnected {
        reason: String,
        retry_in: Option<Duration>,
    },
    /// Every AMI event, as received.
    Ami(Arc<Message>),
    /// A call event for the recorder.
    Call(CallEvent),
    Registration(RegistrationChange),
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error(transparent)]
    Action(#[from] ActionError),
    #[error("Asterisk refused {action}: {message}")]
    Refused { action: String, message: String },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("the AMI client has stopped")]
    Stopped,
}

enum Command {
    Send {
        action: Action,
        reply: oneshot::Sender<Result<Response, ActionError>>,
    },
    /// An originate is about to be sent (`Some`: channel id, customer) or
    /// was refused (`None` customer).
    Originate {
        channel_id: String,
        /// (customer, the originate's `Channel`)
        customer: Option<(String, String)>,
    },
    /// The application hangs this call up (its CDR cause).
    ForceHangup {
        call_id: String,
    },
    Stop,
}

/// What an internal action was for.
#[derive(Debug, Clone, Copy)]
enum Resync {
    Contacts,
    TrunkRegistrations,
    Channels,
}

#[derive(Debug, Default)]
struct Shared {
    connected: bool,
    registrations: Registrations,
    active_calls: usize,
    /// Call id (Linkedid) → names of its live channels.
    call_channels: HashMap<String, Vec<String>>,
}

/// Handle on the client task. Cheap to clone.
#[derive(Clone)]
pub struct AmiClient {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<ClientEvent>,
    shared: Arc<Mutex<Shared>>,
}

/// A request to ring an agent, then the customer (seeds/001): Asterisk
/// calls `PJSIP/<agent_endpoint>`; when the agent answers, the agent's
/// channel runs `context`,`customer_number`,1 of the dialplan, which dials
/// the customer through the trunk named in `CENTRALITA_TRUNK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginateRequest {
    pub agent_endpoint: String,
    pub customer_number: String,
    pub context: String,
    /// The trunk's PJSIP name (its wizard section), chosen by routing.
    pub trunk: Option<String>,
    /// `"Name" <number>` shown to the agent.
    pub caller_id: Option<String>,
    /// The trunk's P-Asserted-Identity (`pai` of the trunk model), for the
    /// dialplan (`CENTRALITA_PAI`): PJSIP has no per-endpoint value.
    pub pai: Option<String>,
    /// How long the agent's phone rings.
    pub ring_timeout: Duration,
    /// More channel variables for the dialplan (campaign, lead).
    pub variables: Vec<(String, String)>,
    /// The Uniqueid the agent's channel gets (`ChannelId`, Asterisk 13+):
    /// as the first channel of the call it is also its Linkedid, the id
    /// the call's events and CDR carry, so the caller knows it at once.
    pub channel_id: Option<String>,
}

fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 80
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+' | b'@'))
}

impl OriginateRequest {
    /// The `Originate` action (`Async: true`: the answer comes at once,
    /// the outcome as events).
    pub fn to_action(&self) -> Result<Action, ClientError> {
        // `&` in a channel would dial several; anything but a plain name
        // in the extension could reach another part of the dialplan.
        if !name_ok(&self.agent_endpoint) {
            return Err(ClientError::Invalid(format!(
                "agent endpoint {:?}",
                self.agent_endpoint
            )));
        }
        let n = &self.customer_number;
        if n.is_empty()
            || n.len() > 32
            || !n
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'*' | b'#'))
        {
            return Err(ClientError::Invalid(format!("customer number {n:?}")));
        }
        if !name_ok(&self.context) {
            return Err(ClientError::Invalid(format!("context {:?}", self.context)));
        }
        let mut a = Action::new("Originate")
            .field("Channel", format!("PJSIP/{}", self.agent_endpoint))
            .field("Context", self.context.clone())
            .field("Exten", n.clone())
            .field("Priority", "1")
            .field("Timeout", self.ring_timeout.as_millis().to_string())
            .field("Async", "true");
        if let Some(c) = &self.caller_id {
            a = a.field("CallerID", c.clone());
        }
        if let Some(id) = &self.channel_id {
            if !name_ok(id) {
                return Err(ClientError::Invalid(format!("channel id {id:?}")));
            }
            a = a.field("ChannelId", id.clone());
        }
        let mut vars = Vec::new();
        if let Some(t) = &self.trunk {
            if !name_ok(t) {
                return Err(ClientError::Invalid(format!("trunk {t:?}")));
            }
            vars.push(("CENTRALITA_TRUNK".to_string(), t.clone()));
        }
        if let Some(p) = &self.pai {
            vars.push(("CENTRALITA_PAI".to_string(), p.clone()));
        }
        vars.extend(self.variables.iter().cloned());
        for (k, v) in vars {
            if !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') || k.is_empty() {
                return Err(ClientError::Invalid(format!("variable name {k:?}")));
            }
            a = a.field("Variable", format!("{k}={v}"));
        }
        Ok(a)
    }
}

/// The outcome of a configuration reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    pub module: String,
    /// Asterisk's own words (`Module Reloaded.`).
    pub message: String,
}

impl AmiClient {
    /// Starts the client task (within a tokio runtime). It connects at
    /// once and keeps reconnecting until [`AmiClient::stop`].
    pub fn start(config: ClientConfig, directory: Arc<dyn Directory + Send + Sync>) -> Self {
        let (commands, rx) = mpsc::channel(64);
        let (events, _) = broadcast::channel(4096);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let task = Task {
            session: Session::new(config.session.clone(), std::time::Instant::now()),
            config,
            directory,
            commands: rx,
            events: events.clone(),
            shared: shared.clone(),
            replies: HashMap::new(),
            syncs: HashMap::new(),
            asked_channels: HashMap::new(),
            translator: CallTranslator::new(),
            registry_sync_pending: false,
        };
        tokio::spawn(task.run());
        Self {
            commands,
            events,
            shared,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ClientEvent> {
        self.events.subscribe()
    }

    pub fn is_connected(&self) -> bool {
        self.shared.lock().map(|s| s.connected).unwrap_or(false)
    }

    pub fn active_calls(&self) -> usize {
        self.shared.lock().map(|s| s.active_calls).unwrap_or(0)
    }

    /// Reads the live registration state.
    pub fn with_registrations<R>(&self, f: impl FnOnce(&Registrations) -> R) -> Option<R> {
        self.shared.lock().ok().map(|s| f(&s.registrations))
    }

    /// Sends `action` and waits for its whole answer (list actions: until
    /// the `…Complete` event). A `Response: Error` is an `Ok` response
    /// whose `is_success()` is false.
    pub async fn send_action(&self, action: Action) -> Result<Response, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Send { action, reply })
            .await
            .map_err(|_| ClientError::Stopped)?;
        Ok(rx.await.map_err(|_| ClientError::Stopped)??)
    }

    async fn expect_success(&self, action: Action) -> Result<Response, ClientError> {
        let name = action.name.clone();
        let r = self.send_action(action).await?;
        if r.is_success() {
            Ok(r)
        } else {
            Err(ClientError::Refused {
                action: name,
                message: r.text().to_string(),
            })
        }
    }

    /// `Action: Reload` of `res_pjsip.so` (which also re-reads the
    /// wizard). The `pjsip reload` CLI command is an alias not every
    /// version has; this works on all.
    pub async fn reload_pjsip(&self) -> Result<ReloadOutcome, ClientError> {
        let r = self
            .expect_success(Action::new("Reload").field("Module", "res_pjsip.so"))
            .await?;
        Ok(ReloadOutcome {
            module: "res_pjsip.so".into(),
            message: r.text().to_string(),
        })
    }

    /// Sends the `Originate`. With a `channel_id`, the call is live (its
    /// call events start) from the moment the agent's channel appears,
    /// with the customer as the callee.
    pub async fn originate(&self, req: &OriginateRequest) -> Result<Response, ClientError> {
        let action = req.to_action()?;
        let Some(id) = req.channel_id.clone() else {
            return self.expect_success(action).await;
        };
        // Before the action, on the same queue: the task learns of it
        // before any event of its channel can arrive.
        self.commands
            .send(Command::Originate {
                channel_id: id.clone(),
                customer: Some((
                    req.customer_number.clone(),
                    format!("PJSIP/{}", req.agent_endpoint),
                )),
            })
            .await
            .map_err(|_| ClientError::Stopped)?;
        let r = self.expect_success(action).await;
        if r.is_err() {
            let _ = self
                .commands
                .send(Command::Originate {
                    channel_id: id,
                    customer: None,
                })
                .await;
        }
        r
    }

    /// `Action: PJSIPRegister` of the outbound registration `registration`
    /// (its object name, `config::trunks::registration_name`): Asterisk
    /// unregisters and registers it again (`Reregistration sent`); the
    /// outcome arrives as `Registry` events.
    pub async fn register_trunk(&self, registration: &str) -> Result<Response, ClientError> {
        if !name_ok(registration) {
            return Err(ClientError::Invalid(format!(
                "registration {registration:?}"
            )));
        }
        self.expect_success(Action::new("PJSIPRegister").field("Registration", registration))
            .await
    }

    /// `Action: PJSIPQualify` of endpoint `endpoint`: Asterisk sends an
    /// OPTIONS to each contact of its AORs (`Endpoint found, will
    /// qualify`); a change of reachability arrives as `ContactStatus`.
    /// Asterisk's answer is returned as it is, `Response: Error` included.
    pub async fn qualify(&self, endpoint: &str) -> Result<Response, ClientError> {
        if !name_ok(endpoint) {
            return Err(ClientError::Invalid(format!("endpoint {endpoint:?}")));
        }
        self.send_action(Action::new("PJSIPQualify").field("Endpoint", endpoint))
            .await
    }

    /// Hangs up one channel by its exact name (`PJSIP/1001-00000001`).
    pub async fn hangup(&self, channel: &str) -> Result<Response, ClientError> {
        // A name starting with '/' is a regular expression to Asterisk: it
        // would hang up every channel it matches.
        if channel.is_empty() || channel.starts_with('/') || !channel.contains('/') {
            return Err(ClientError::Invalid(format!("channel {channel:?}")));
        }
        self.expect_success(
            Action::new("Hangup")
                .field("Channel", channel)
                .field("Cause", "16"),
        )
        .await
    }

    /// Whether call `call_id` (the Linkedid) has live channels now.
    pub fn knows_call(&self, call_id: &str) -> bool {
        self.shared
            .lock()
            .map(|s| s.call_channels.get(call_id).is_some_and(|c| !c.is_empty()))
            .unwrap_or(false)
    }

    /// Hangs up every channel of call `call_id` (the Linkedid); its CDR
    /// ends with cause `forced_hangup`.
    pub async fn hangup_call(&self, call_id: &str) -> Result<usize, ClientError> {
        let chans = self
            .shared
            .lock()
            .ok()
            .and_then(|s| s.call_channels.get(call_id).cloned())
            .unwrap_or_default();
        if chans.is_empty() {
            return Err(ClientError::Invalid(format!("no live call {call_id:?}")));
        }
        // Before the hang-ups, on the same queue: the call's end is then
        // recorded as `forced_hangup`.
        self.commands
            .send(Command::ForceHangup {
                call_id: call_id.to_string(),
            })
            .await
            .map_err(|_| ClientError::Stopped)?;
        let mut n = 0;
        for c in &chans {
            // A channel may already be gone because its peer hung up.
            if self.hangup(c).await.is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Stops the task: logs nothing off, closes, never reconnects.
    pub async fn stop(&self) {
        let _ = self.commands.send(Command::Stop).await;
    }
}

struct Task {
    config: ClientConfig,
    session: Session,
    directory: Arc<dyn Directory + Send + Sync>,
    commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<ClientEvent>,
    shared: Arc<Mutex<Shared>>,
    replies: HashMap<Token, oneshot::Sender<Result<Response, ActionError>>>,
    syncs: HashMap<Token, Resync>,
    /// The channels tracked when `CoreShowChannels` was asked, by token.
    asked_channels: HashMap<Token, HashSet<String>>,
    translator: CallTranslator,
    registry_sync_pending: bool,
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl Task {
    async fn run(mut self) {
        let mut conn: Option<TcpStream> = None;
        let mut buf = vec![0u8; 16 * 1024];
        let mut stopped = false;
        let mut next_resync = tokio::time::Instant::now() + self.config.resync_interval;
        loop {
            // 1. Drain the outputs.
            while let Some(out) = self.session.poll_output() {
                match out {
                    Output::Connect => {
                        let r = tokio::time::timeout(
                            self.config.connect_timeout,
                            TcpStream::connect(&self.config.addr),
                        )
                        .await;
                        match r {
                            Ok(Ok(s)) => {
                                let _ = s.set_nodelay(true);
                                conn = Some(s);
                                self.session.handle_connected(now());
                            }
                            Ok(Err(e)) => self.session.handle_connect_failed(now(), e.to_string()),
                            Err(_) => self.session.handle_connect_failed(now(), "timed out"),
                        }
                    }
                    Output::Transmit(bytes) => {
                        // A peer that stops reading must not stall the
                        // task (and its keep-alive) forever.
                        let ok = match conn.as_mut() {
                            Some(c) => matches!(
                                tokio::time::timeout(
                                    self.config.session.ping_timeout,
                                    c.write_all(&bytes)
                                )
                                .await,
                                Ok(Ok(()))
                            ),
                            None => false,
                        };
                        if !ok {
                            conn = None;
                            self.session.handle_closed(now());
                        }
                    }
                    Output::Close => conn = None,
                    Output::Ready { banner } => self.ready(banner),
                    Output::Down { reason, retry_in } => {
                        conn = None;
                        self.set(|s| s.connected = false);
                        tracing::warn!(%reason, ?retry_in, addr = %self.config.addr, "AMI session down");
                        self.registry_sync_pending = false;
                        let _ = self.events.send(ClientEvent::Disconnected {
                            reason: reason.to_string(),
                            retry_in,
                        });
                        if retry_in.is_none() {
                            stopped = true;
                        }
                    }
                    Output::Event(m) => self.event(m),
                    Output::Completed { token, result } => self.completed(token, result),
                }
            }
            if stopped {
                // Answer whoever still waits, then end.
                while let Ok(cmd) = self.commands.try_recv() {
                    if let Command::Send { reply, .. } = cmd {
                        let _ = reply.send(Err(ActionError::NotConnected));
                    }
                }
                return;
            }
            // 2. Wait for the next input.
            let deadline = self.session.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending::<()>().await,
                }
            };
            let read = async {
                match conn.as_mut() {
                    Some(c) => c.read(&mut buf).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = read => match r {
                    Ok(0) | Err(_) => {
                        conn = None;
                        self.session.handle_closed(now());
                    }
                    Ok(n) => self.session.handle_bytes(now(), &buf[..n]),
                },
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Send { action, reply }) => {
                        match self.session.send_action(now(), &action) {
                            Ok(t) => {
                                self.replies.insert(t, reply);
                            }
                            Err(e) => {
                                let _ = reply.send(Err(e));
                            }
                        }
                    }
                    Some(Command::Originate { channel_id, customer }) => match customer {
                        Some((c, chan)) => self.translator.expect_originate(&channel_id, &c, &chan),
                        None => self.translator.forget_originate(&channel_id),
                    },
                    Some(Command::ForceHangup { call_id }) => {
                        self.translator.force_hangup(&call_id);
                    }
                    Some(Command::Stop) | None => self.session.stop(now()),
                },
                () = sleep => self.session.handle_timeout(now()),
                () = tokio::time::sleep_until(next_resync) => {
                    next_resync = tokio::time::Instant::now() + self.config.resync_interval;
                    if self.session.is_ready() {
                        self.sync("PJSIPShowContacts", Resync::Contacts);
                        self.sync("CoreShowChannels", Resync::Channels);
                    }
                }
            }
        }
    }

    fn set(&self, f: impl FnOnce(&mut Shared)) {
        if let Ok(mut s) = self.shared.lock() {
            f(&mut s);
        }
    }

    fn ready(&mut self, banner: String) {
        tracing::info!(%banner, addr = %self.config.addr, "AMI session up");
        self.set(|s| s.connected = true);
        let _ = self.events.send(ClientEvent::Connected { banner });
        for (name, purpose) in [
            ("PJSIPShowContacts", Resync::Contacts),
            ("PJSIPShowRegistrationsOutbound", Resync::TrunkRegistrations),
            ("CoreShowChannels", Resync::Channels),
        ] {
            self.sync(name, purpose);
        }
    }

    fn sync(&mut self, name: &str, purpose: Resync) {
        match self.session.send_action(now(), &Action::new(name)) {
            Ok(t) => {
                if let Resync::Channels = purpose {
                    self.asked_channels
                        .insert(t, self.translator.tracked_channels());
                }
                self.syncs.insert(t, purpose);
            }
            Err(e) => tracing::debug!(error = %e, "AMI: {name} not sent"),
        }
    }

    fn event(&mut self, m: Message) {
        let at = (self.config.clock)();
        let mut calls = Vec::new();
        self.translator
            .handle(self.directory.as_ref(), &m, at, &mut calls);
        let change = self
            .shared
            .lock()
            .ok()
            .and_then(|mut s| s.registrations.handle(&m, at));
        if let Some(RegistrationChange::Trunk { trunk: None, .. }) = &change {
            // A registration no listing named yet (a trunk added since).
            if !self.registry_sync_pending {
                self.registry_sync_pending = true;
                self.sync("PJSIPShowRegistrationsOutbound", Resync::TrunkRegistrations);
            }
        }
        let touched: HashSet<String> = ["Linkedid", "DestLinkedid"]
            .iter()
            .filter_map(|k| m.get(k).map(str::to_string))
            .collect();
        let _ = self.events.send(ClientEvent::Ami(Arc::new(m)));
        self.publish_calls(calls, touched);
        if let Some(c) = change {
            let _ = self.events.send(ClientEvent::Registration(c));
        }
    }

    /// Broadcasts call events and refreshes the shared view of the calls
    /// they, or the AMI event behind them, touched (`touched`: Linkedids).
    fn publish_calls(&mut self, calls: Vec<CallEvent>, mut touched: HashSet<String>) {
        touched.extend(calls.iter().map(|c| c.call_id.clone()));
        let chans: Vec<(String, Vec<String>)> = touched
            .into_iter()
            .map(|id| {
                let c = self.translator.channels_of(&id);
                (id, c)
            })
            .collect();
        let active = self.translator.active_calls();
        self.set(|s| {
            s.active_calls = active;
            for (id, c) in chans {
                if c.is_empty() {
                    s.call_channels.remove(&id);
                } else {
                    s.call_channels.insert(id, c);
                }
            }
        });
        for c in calls {
            let _ = self.events.send(ClientEvent::Call(c));
        }
    }

    fn completed(&mut self, token: Token, result: Result<Response, ActionError>) {
        if let Some(reply) = self.replies.remove(&token) {
            let _ = reply.send(result);
            return;
        }
        let Some(purpose) = self.syncs.remove(&token) else {
            return;
        };
        let asked = self.asked_channels.remove(&token).unwrap_or_default();
        let Ok(r) = result else {
            return;
        };
        let at = (self.config.clock)();
        match purpose {
            Resync::Contacts if r.is_success() => {
                self.set(|s| s.registrations.apply_contact_list(r.items()));
            }
            Resync::TrunkRegistrations => {
                self.registry_sync_pending = false;
                if r.is_success() {
                    self.set(|s| s.registrations.apply_outbound_registrations(r.items(), at));
                }
            }
            Resync::Channels if r.is_success() => {
                let live: HashSet<String> = r
                    .items()
                    .filter_map(|e| e.get("Uniqueid").map(str::to_string))
                    .collect();
                let mut calls = Vec::new();
                self.translator
                    .reconcile(self.directory.as_ref(), &asked, &live, at, &mut calls);
                self.publish_calls(calls, HashSet::new());
            }
            _ => {}
        }
    }
}
