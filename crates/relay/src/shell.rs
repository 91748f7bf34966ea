//! The tokio shell of the relay: one task per browser flow owning its
//! upstream socket, one writer task batching call events and registration
//! states into the database, and the [`domain::Engine`] the API sees.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::{
    BlockedSource, CallEvent, CallEventKind, Direction, Engine, EngineStatus, FlowHandle,
    FlowRefused, Services,
};
use parking_lot::Mutex;
use sip::core::msg::{self, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::cdr::CallTracker;
use crate::core::retx::Retransmits;
use crate::core::{Action, FlowCore, Outcome, RegChange, UpTransport};
use crate::Upstream;

/// Where the roots that check a TLS PBX's certificate come from unless
/// [`RelayConfig::tls_ca`] says otherwise (Debian's bundle).
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Settings of the relay engine.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub upstream: Upstream,
    /// Largest SIP message relayed either way.
    pub max_message_bytes: usize,
    /// How long opening the upstream flow may take.
    pub connect_timeout: Duration,
    /// PEM file of the certificate authorities a `tls:` PBX's certificate
    /// must chain to; `None`: [`SYSTEM_CA_BUNDLE`]. The certificate must
    /// name the upstream host (checked always).
    pub tls_ca: Option<PathBuf>,
    /// Browser flows (and so upstream sockets) at once, from one address
    /// and in all.
    pub max_flows_per_ip: usize,
    pub max_flows: usize,
    /// The `Origin` header of the WebSocket handshake toward a `ws:`/`wss:`
    /// PBX (3CX and others refuse origins they do not know); `None`: no
    /// `Origin` header.
    pub origin: Option<String>,
    /// The host written toward the PBX in Via sent-by, Contact and
    /// Record-Route (and the OPTIONS probes) instead of the upstream
    /// socket's local IP, e.g. the public address behind NAT; the port
    /// stays the socket's. `None`: the local IP.
    pub advertised_host: Option<String>,
}

impl RelayConfig {
    pub fn new(upstream: Upstream) -> Self {
        Self {
            upstream,
            max_message_bytes: 65_535,
            connect_timeout: Duration::from_secs(5),
            tls_ca: None,
            max_flows_per_ip: 100,
            max_flows: 10_000,
            origin: None,
            advertised_host: None,
        }
    }
}

/// Why the relay engine did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("reading the CA certificates {path}: {why}")]
    TlsCa { path: String, why: String },
    #[error("{path} holds no CA certificate rustls accepts")]
    NoRoots { path: String },
    #[error("building the TLS client configuration: {0}")]
    Tls(String),
    #[error("relay.origin {0:?} cannot be sent as an HTTP header value")]
    Origin(String),
}

/// The TLS client configuration toward the PBX (ring provider, roots
/// from `ca` or the system bundle); `check-config` calls it too.
pub fn tls_client(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, StartError> {
    use rustls_pki_types::pem::PemObject;
    let path = ca.unwrap_or(Path::new(SYSTEM_CA_BUNDLE));
    let shown = path.display().to_string();
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        rustls_pki_types::CertificateDer::pem_file_iter(path).map_err(|e| StartError::TlsCa {
            path: shown.clone(),
            why: e.to_string(),
        })?;
    for c in certs {
        let c = c.map_err(|e| StartError::TlsCa {
            path: shown.clone(),
            why: e.to_string(),
        })?;
        // A bundle may hold certificates rustls cannot use: skip those.
        let _ = roots.add(c);
    }
    if roots.is_empty() {
        return Err(StartError::NoRoots { path: shown });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Work for the writer task.
enum Write {
    Calls(Vec<CallEvent>),
    Registration {
        user: String,
        registered: bool,
        /// The browser's own Contact URI.
        contact: String,
        expires: u32,
        /// The browser's address.
        source: SocketAddr,
        secure: bool,
        user_agent: Option<String>,
    },
    Flush(oneshot::Sender<()>),
}

struct Inner {
    cfg: RelayConfig,
    /// Set for a `tls:` upstream.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// `cfg.origin` as a header value, checked at start.
    origin: Option<HeaderValue>,
    next_flow: AtomicU64,
    tracker: Mutex<CallTracker>,
    /// Confirmed registrations by flow: (user, contact, when the binding
    /// expires, WSS).
    regs: Mutex<HashMap<u64, (String, String, Instant, bool)>>,
    /// Open flows by browser address.
    flows: Mutex<HashMap<IpAddr, usize>>,
    /// Each open flow's task takes the Call-IDs to hang up here.
    hang_ups: Mutex<HashMap<u64, mpsc::Sender<String>>>,
    writes: mpsc::Sender<Write>,
    stopping: AtomicBool,
    /// The PBX answered our last OPTIONS, or sent something on a flow
    /// since.
    pbx_up: AtomicBool,
    register_requests: AtomicU64,
    invite_requests: AtomicU64,
    /// Call events and registration states that did not fit in the queue.
    writes_dropped: AtomicU64,
}

/// The relay engine: `Clone` shares it.
#[derive(Clone)]
pub struct RelayEngine {
    inner: Arc<Inner>,
}

fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
}

impl RelayEngine {
    /// Starts the writer and the sweeper; must run within a tokio runtime.
    /// Fails when the TLS roots for a `tls:` upstream cannot be read, or
    /// `origin` is no valid header value.
    pub fn start(cfg: RelayConfig, services: Services) -> Result<Self, StartError> {
        let tls = match cfg.upstream.transport {
            t if t.is_tls() => Some(tls_client(cfg.tls_ca.as_deref())?),
            _ => None,
        };
        let origin = cfg
            .origin
            .as_deref()
            .map(|o| HeaderValue::from_str(o).map_err(|_| StartError::Origin(o.to_string())))
            .transpose()?;
        let (tx, rx) = mpsc::channel(4096);
        let inner = Arc::new(Inner {
            cfg,
            tls,
            origin,
            next_flow: AtomicU64::new(1),
            tracker: Mutex::new(CallTracker::new()),
            regs: Mutex::new(HashMap::new()),
            flows: Mutex::new(HashMap::new()),
            hang_ups: Mutex::new(HashMap::new()),
            writes: tx,
            stopping: AtomicBool::new(false),
            pbx_up: AtomicBool::new(false),
            register_requests: AtomicU64::new(0),
            invite_requests: AtomicU64::new(0),
            writes_dropped: AtomicU64::new(0),
        });
        tokio::spawn(writer(services, rx));
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let evs = inner.tracker.lock().sweep(now_ms());
                inner.queue(Write::Calls(evs));
            }
        });
        // Is the PBX there? OPTIONS now, then every PING_EVERY (more often
        // while it does not answer); the console shows it as `connected`.
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            let mut n: u64 = 0;
            loop {
                let Some(inner) = weak.upgrade() else { return };
                if inner.stopping.load(Ordering::Relaxed) {
                    return;
                }
                n += 1;
                let answer = ping(&inner, n).await;
                let up = answer.is_ok();
                let was = inner.pbx_up.swap(up, Ordering::Relaxed);
                match answer {
                    Ok(code) if !was => {
                        tracing::info!(upstream = %inner.cfg.upstream, code, "relay: the PBX answers OPTIONS")
                    }
                    Err(why) if was || n == 1 => {
                        tracing::warn!(upstream = %inner.cfg.upstream, why, "relay: the PBX does not answer OPTIONS")
                    }
                    _ => {}
                }
                let wait = if up { PING_EVERY } else { PING_RETRY };
                drop(inner);
                tokio::time::sleep(wait).await;
            }
        });
        Ok(Self { inner })
    }

    /// Refuses new flows from now on and ends the calls still open (cause
    /// `shutdown`): their flows are closing with the HTTP server, and a
    /// CDR left open would stay open (the relay keeps no journal).
    pub fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        let evs = self
            .inner
            .tracker
            .lock()
            .end_all(domain::HangupCause::Shutdown, now_ms());
        self.inner.queue(Write::Calls(evs));
    }

    /// Waits (at most `timeout`) until what is queued for the database is
    /// written.
    pub async fn drain(&self, timeout: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.inner.writes.send(Write::Flush(tx)).await.is_ok() {
            let _ = tokio::time::timeout(timeout, rx).await;
        }
    }

    pub fn upstream(&self) -> &Upstream {
        &self.inner.cfg.upstream
    }
}

impl Inner {
    fn queue(&self, w: Write) {
        if matches!(&w, Write::Calls(evs) if evs.is_empty()) {
            return;
        }
        if self.writes.try_send(w).is_err() {
            self.writes_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("relay: database write queue full, dropping an update");
        }
    }

    /// Counts, tracks and records what `out` says passed.
    fn observe(&self, flow: u64, peer: SocketAddr, secure: bool, out: &Outcome) {
        if let Some(m) = &out.relayed {
            match m.method() {
                Some("REGISTER") => {
                    self.register_requests.fetch_add(1, Ordering::Relaxed);
                }
                Some("INVITE") if m.header("To").and_then(msg::tag).is_none() => {
                    self.invite_requests.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
            // What the browser sends goes up; what the PBX sends goes down.
            let side = if matches!(out.send, Some(Action::ToUpstream(_))) {
                crate::core::Side::Browser
            } else {
                crate::core::Side::Upstream
            };
            let evs = self.tracker.lock().observe(m, flow, side, now_ms());
            self.queue(Write::Calls(evs));
        }
        if let Some(RegChange {
            user,
            expires,
            contact,
            user_agent,
        }) = &out.reg
        {
            let registered = *expires > 0;
            tracing::info!(flow, %peer, user, expires, "relay: registration confirmed by the PBX");
            {
                let mut regs = self.regs.lock();
                if registered {
                    let until = Instant::now() + Duration::from_secs(u64::from(*expires));
                    regs.insert(flow, (user.clone(), contact.clone(), until, secure));
                } else {
                    regs.remove(&flow);
                }
            }
            self.queue(Write::Registration {
                user: user.clone(),
                registered,
                contact: contact.clone(),
                expires: *expires,
                source: peer,
                secure,
                user_agent: user_agent.clone(),
            });
        }
    }

    /// The flow is gone: its binding at the PBX points at a closed socket
    /// (until it expires there), so the agent is shown unregistered.
    fn flow_closed(&self, flow: u64, peer: SocketAddr) {
        self.hang_ups.lock().remove(&flow);
        {
            let mut flows = self.flows.lock();
            if let Some(n) = flows.get_mut(&peer.ip()) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    flows.remove(&peer.ip());
                }
            }
        }
        let evs = self.tracker.lock().flow_closed(flow, now_ms());
        self.queue(Write::Calls(evs));
        let gone = self.regs.lock().remove(&flow);
        if let Some((user, contact, _, secure)) = gone {
            self.queue(Write::Registration {
                user,
                registered: false,
                contact,
                expires: 0,
                source: peer,
                secure,
                user_agent: None,
            });
        }
    }
}

impl Engine for RelayEngine {
    fn name(&self) -> &'static str {
        "relay"
    }

    fn status(&self) -> EngineStatus {
        let now = Instant::now();
        let registered = self
            .inner
            .regs
            .lock()
            .values()
            .filter(|(_, _, until, _)| *until > now)
            .count() as u64;
        EngineStatus {
            connected: !self.inner.stopping.load(Ordering::Relaxed)
                && self.inner.pbx_up.load(Ordering::Relaxed),
            active_calls: self.inner.tracker.lock().active(),
            registered_contacts: registered,
            register_requests: self.inner.register_requests.load(Ordering::Relaxed),
            invite_requests: self.inner.invite_requests.load(Ordering::Relaxed),
            write_queue_depth: (self.inner.writes.max_capacity() - self.inner.writes.capacity())
                as u64,
            ..EngineStatus::default()
        }
    }

    fn blocked_sources(&self) -> Vec<BlockedSource> {
        // Authentication is the PBX's: the relay bans nobody.
        Vec::new()
    }

    fn unblock(&self, _ip: IpAddr) -> bool {
        false
    }

    /// Ends a relayed call from its flow ([`crate::core::FlowCore::hang_up`]: BYE to
    /// both parties once answered, CANCEL toward the callee while it
    /// rings); its CDR ends now with cause `forced_hangup`.
    fn hang_up(&self, call_id: &str) -> bool {
        let Some(flow) = self.inner.tracker.lock().hang_up_flow(call_id) else {
            return false;
        };
        let Some(tx) = self.inner.hang_ups.lock().get(&flow).cloned() else {
            return false;
        };
        if tx.try_send(call_id.to_string()).is_err() {
            return false;
        }
        let evs =
            self.inner
                .tracker
                .lock()
                .end(call_id, domain::HangupCause::ForcedHangup, now_ms());
        self.inner.queue(Write::Calls(evs));
        true
    }

    fn attach_flow(&self, peer: SocketAddr, secure: bool) -> Result<FlowHandle, FlowRefused> {
        if self.inner.stopping.load(Ordering::SeqCst) {
            return Err(FlowRefused::ShuttingDown);
        }
        {
            let mut flows = self.inner.flows.lock();
            let total: usize = flows.values().sum();
            let here = flows.entry(peer.ip()).or_insert(0);
            if *here >= self.inner.cfg.max_flows_per_ip || total >= self.inner.cfg.max_flows {
                return Err(FlowRefused::TooManyConnections(peer.ip()));
            }
            *here += 1;
        }
        let id = self.inner.next_flow.fetch_add(1, Ordering::Relaxed);
        let (in_tx, in_rx) = mpsc::channel(64);
        let (out_tx, out_rx) = mpsc::channel(64);
        let (hang_tx, hang_rx) = mpsc::channel(16);
        self.inner.hang_ups.lock().insert(id, hang_tx);
        let inner = self.inner.clone();
        tokio::spawn(async move {
            run_flow(&inner, id, peer, secure, in_rx, out_tx, hang_rx).await;
            inner.flow_closed(id, peer);
            tracing::debug!(flow = id, %peer, "relay: flow closed");
        });
        Ok(FlowHandle {
            inbound: in_tx,
            outbound: out_rx,
        })
    }
}

/// The upstream side of one flow.
enum Up {
    Udp(UdpSocket),
    Tcp {
        rd: tokio::net::tcp::OwnedReadHalf,
        wr: tokio::net::tcp::OwnedWriteHalf,
    },
    Tls {
        rd: tokio::io::ReadHalf<TlsStream>,
        wr: tokio::io::WriteHalf<TlsStream>,
    },
    /// SIP over WebSocket: one message per WebSocket message.
    Ws {
        sink: futures_util::stream::SplitSink<WsStream, WsMessage>,
        stream: futures_util::stream::SplitStream<WsStream>,
    },
}

type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;
type WsMessage = tokio_tungstenite::tungstenite::Message;
type WsStream = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

/// A byte stream under the WebSocket: TCP, or TLS over TCP.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

fn io_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl Up {
    /// Opens the upstream flow; `origin` is the `Origin` header of a
    /// WebSocket handshake (ignored by the other transports).
    async fn connect(
        u: &Upstream,
        tls: Option<&Arc<rustls::ClientConfig>>,
        origin: Option<&HeaderValue>,
    ) -> std::io::Result<(Up, SocketAddr)> {
        let addr = tokio::net::lookup_host((u.host.as_str(), u.port))
            .await?
            .next()
            .ok_or_else(|| std::io::Error::other("the upstream host has no address"))?;
        match u.transport {
            UpTransport::Udp => {
                let bind: SocketAddr = if addr.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let s = UdpSocket::bind(bind).await?;
                // Connected: only the PBX's datagrams arrive here, and the
                // local address is the one that reaches it.
                s.connect(addr).await?;
                let local = s.local_addr()?;
                Ok((Up::Udp(s), local))
            }
            UpTransport::Tcp => {
                let s = TcpStream::connect(addr).await?;
                let _ = s.set_nodelay(true);
                let local = s.local_addr()?;
                let (rd, wr) = s.into_split();
                Ok((Up::Tcp { rd, wr }, local))
            }
            UpTransport::Tls => {
                let s = TcpStream::connect(addr).await?;
                let _ = s.set_nodelay(true);
                let local = s.local_addr()?;
                let s = tls_handshake(u, tls, s).await?;
                let (rd, wr) = tokio::io::split(s);
                Ok((Up::Tls { rd, wr }, local))
            }
            UpTransport::Ws | UpTransport::Wss => {
                use tokio_tungstenite::tungstenite::client::IntoClientRequest;
                let s = TcpStream::connect(addr).await?;
                let _ = s.set_nodelay(true);
                let local = s.local_addr()?;
                let (io, scheme): (Box<dyn Io>, &str) = if u.transport == UpTransport::Wss {
                    (Box::new(tls_handshake(u, tls, s).await?), "wss")
                } else {
                    (Box::new(s), "ws")
                };
                let url = format!("{scheme}://{}{}", u.hostport(), u.path);
                let mut req = url.into_client_request().map_err(io_error)?;
                // RFC 7118: the `sip` subprotocol, which the PBX must accept.
                req.headers_mut()
                    .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
                if let Some(o) = origin {
                    req.headers_mut().insert("Origin", o.clone());
                }
                let (ws, resp) = tokio_tungstenite::client_async(req, io)
                    .await
                    .map_err(io_error)?;
                let agreed = resp
                    .headers()
                    .get("Sec-WebSocket-Protocol")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("sip"));
                if !agreed {
                    return Err(std::io::Error::other(
                        "the PBX did not accept the WebSocket subprotocol sip",
                    ));
                }
                let (sink, stream) = futures_util::StreamExt::split(ws);
                Ok((Up::Ws { sink, stream }, local))
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Up::Ws { sink, .. } => {
                use futures_util::SinkExt;
                let m = match std::str::from_utf8(bytes) {
                    Ok(t) => WsMessage::Text(t.to_string().into()),
                    Err(_) => WsMessage::Binary(bytes.to_vec().into()),
                };
                sink.send(m).await.map_err(io_error)
            }
            Up::Udp(s) => s.send(bytes).await.map(|_| ()),
            Up::Tcp { wr, .. } => wr.write_all(bytes).await,
            Up::Tls { wr, .. } => {
                wr.write_all(bytes).await?;
                wr.flush().await
            }
        }
    }
}

async fn run_flow(
    inner: &Inner,
    id: u64,
    peer: SocketAddr,
    secure: bool,
    mut from_browser: mpsc::Receiver<Vec<u8>>,
    to_browser: mpsc::Sender<Vec<u8>>,
    mut hang_ups: mpsc::Receiver<String>,
) {
    let cfg = &inner.cfg;
    let limits = Limits {
        max_bytes: cfg.max_message_bytes,
        ..Limits::default()
    };
    let connected = tokio::time::timeout(
        cfg.connect_timeout,
        Up::connect(&cfg.upstream, inner.tls.as_ref(), inner.origin.as_ref()),
    )
    .await;
    let (mut up, local) = match connected {
        Ok(Ok(c)) => c,
        failed => {
            let why = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".to_string(),
            };
            tracing::warn!(flow = id, %peer, upstream = %cfg.upstream, error = why, "relay: cannot reach the PBX");
            // Answer what the browser sends for a moment, then close.
            let core = FlowCore::new(id, cfg.upstream.transport, peer, secure, limits);
            let until = tokio::time::Instant::now() + Duration::from_secs(2);
            while let Ok(Some(data)) = tokio::time::timeout_at(until, from_browser.recv()).await {
                if let Some(r) = core.refuse_browser_request(&data, 503, "PBX Unreachable") {
                    let _ = to_browser.send(r).await;
                }
            }
            return;
        }
    };
    tracing::debug!(flow = id, %peer, %local, upstream = %cfg.upstream, "relay: upstream flow open");
    let mut core = FlowCore::new(id, cfg.upstream.transport, local, secure, limits)
        .with_advertised_host(local, cfg.advertised_host.as_deref());
    let mut udp_buf = vec![0u8; 65_536];
    let mut tcp_buf: Vec<u8> = Vec::new();
    // Only a UDP upstream needs the relay to retransmit.
    let mut retx = (cfg.upstream.transport == UpTransport::Udp).then(Retransmits::new);
    loop {
        // Whole messages from the PBX (a datagram, or frames of the stream).
        let mut from_up: Vec<Vec<u8>> = Vec::new();
        let deadline = retx.as_ref().and_then(Retransmits::next_deadline);
        tokio::select! {
            m = from_browser.recv() => {
                let Some(data) = m else {
                    // The tab is gone: its calls end now (recorded as the
                    // lost connection, before our BYEs pass back through
                    // another flow and look like the party's own), and the
                    // PBX's side of them hears so.
                    let evs = inner.tracker.lock().flow_closed(id, now_ms());
                    inner.queue(Write::Calls(evs));
                    for r in core.abandon() {
                        if let Action::ToUpstream(bytes) = r.send {
                            tracing::info!(flow = id, method = r.method, "relay: ending a call of a closed flow");
                            let _ = up.send(&bytes).await;
                        }
                    }
                    unregister(id, &mut core, &mut up, &mut udp_buf, &mut tcp_buf, cfg.max_message_bytes).await;
                    return;
                };
                let out = core.from_browser(&data);
                let pending = match (&out.retransmit, &out.send, &mut retx) {
                    (Some((branch, method)), Some(Action::ToUpstream(bytes)), Some(_)) => {
                        Some((branch.clone(), method.clone(), bytes.clone()))
                    }
                    _ => None,
                };
                if !dispatch(inner, &core, peer, secure, out, &mut up, &to_browser).await {
                    return;
                }
                if let (Some((branch, method, bytes)), Some(r)) = (pending, retx.as_mut()) {
                    r.sent(&branch, &method, bytes, Instant::now());
                }
                continue;
            }
            Some(call_id) = hang_ups.recv() => {
                let own = core.hang_up(&call_id);
                if own.is_empty() {
                    tracing::warn!(flow = id, call_id, "relay: hang-up of a call this flow no longer knows");
                }
                for r in own {
                    tracing::info!(flow = id, call_id, method = r.method, "relay: hanging up");
                    match r.send {
                        Action::ToUpstream(bytes) => {
                            let _ = up.send(&bytes).await;
                            if let Some(retx) = retx.as_mut() {
                                retx.sent(&r.branch, &r.method, bytes, Instant::now());
                            }
                        }
                        Action::ToBrowser(bytes) => {
                            if to_browser.send(bytes).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                continue;
            }
            _ = sleep_until_opt(deadline) => {
                if let Some(r) = retx.as_mut() {
                    for bytes in r.due(Instant::now()) {
                        tracing::debug!(flow = id, "relay: retransmitting to the PBX");
                        let _ = up.send(&bytes).await;
                    }
                }
                continue;
            }
            r = recv_up(&mut up, &mut udp_buf, &mut tcp_buf) => match r {
                Ok(Some(n)) => from_up.push(udp_buf[..n].to_vec()),
                Ok(None) => {
                    // Stream data arrived: take the complete frames.
                    loop {
                        match next_frame(&mut tcp_buf, cfg.max_message_bytes) {
                            Ok(Some(frame)) => from_up.push(frame),
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!(flow = id, error = e.reason, "relay: unframeable stream from the PBX; closing");
                                return;
                            }
                        }
                    }
                }
                Err(e) => {
                    if matches!(up, Up::Udp(_)) && e.kind() == std::io::ErrorKind::ConnectionRefused {
                        // ICMP port unreachable after a send: the PBX is
                        // down for now; the next message may get through.
                        tracing::debug!(flow = id, "relay: PBX port unreachable");
                        continue;
                    }
                    tracing::info!(flow = id, error = %e, "relay: upstream flow closed");
                    return;
                }
            }
        }
        if !from_up.is_empty() {
            inner.pbx_up.store(true, Ordering::Relaxed);
        }
        for data in from_up {
            let out = core.from_upstream(&data);
            if let (Some(r), Some(m)) = (retx.as_mut(), &out.relayed) {
                if let Some(code) = m.code() {
                    r.answered(m.top_branch(), m.cseq().1, code);
                }
            }
            if let (Some(r), Some((branch, method, code))) = (retx.as_mut(), &out.own_answer) {
                r.answered(branch, method, *code);
            }
            if out.send.is_none() {
                let head = String::from_utf8_lossy(&data[..data.len().min(600)]).into_owned();
                tracing::debug!(
                    flow = id,
                    why = out.refused,
                    head,
                    "relay: dropped from the PBX"
                );
            }
            if !dispatch(inner, &core, peer, secure, out, &mut up, &to_browser).await {
                return;
            }
        }
    }
}

/// How long a closing flow waits for the PBX's answer to its unregistering.
const UNREGISTER_WAIT: Duration = Duration::from_secs(1);

/// The browser closed its flow: asks the PBX to drop the flow's binding
/// ([`FlowCore::unregister`]) and waits a moment for the answer, to say
/// in the log whether it did. A PBX that challenges the REGISTER keeps
/// the binding (to a socket about to close) until it expires: the relay
/// has no credentials to answer with.
async fn unregister(
    id: u64,
    core: &mut FlowCore,
    up: &mut Up,
    udp_buf: &mut [u8],
    tcp_buf: &mut Vec<u8>,
    max: usize,
) {
    let Some(r) = core.unregister() else { return };
    let Action::ToUpstream(bytes) = r.send else {
        return;
    };
    if up.send(&bytes).await.is_err() {
        return;
    }
    let until = tokio::time::Instant::now() + UNREGISTER_WAIT;
    loop {
        let Ok(got) = tokio::time::timeout_at(until, recv_up(up, udp_buf, tcp_buf)).await else {
            tracing::info!(
                flow = id,
                "relay: no answer to the unregistering of a closed flow"
            );
            return;
        };
        let mut frames = Vec::new();
        match got {
            Ok(Some(n)) => frames.push(udp_buf[..n].to_vec()),
            Ok(None) => {
                while let Ok(Some(f)) = next_frame(tcp_buf, max) {
                    frames.push(f);
                }
            }
            Err(_) => return,
        }
        for f in frames {
            let out = core.from_upstream(&f);
            let Some((branch, _, code)) = out.own_answer else {
                continue;
            };
            if branch != r.branch || code < 200 {
                continue;
            }
            match code {
                200..=299 => tracing::info!(flow = id, "relay: the closed flow's binding is removed at the PBX"),
                401 | 407 => tracing::info!(
                    flow = id,
                    "relay: the PBX wants credentials to remove the closed flow's binding; it expires there on its own"
                ),
                _ => tracing::info!(flow = id, code, "relay: the PBX refused to remove the closed flow's binding"),
            }
            return;
        }
    }
}

/// How often the PBX is asked whether it is there, while it answers.
pub const PING_EVERY: Duration = Duration::from_secs(30);
/// ... and while it does not.
pub const PING_RETRY: Duration = Duration::from_secs(5);

/// One OPTIONS to the PBX over a connection of its own: the final status,
/// or why there was none (within 5 s).
async fn ping(inner: &Inner, n: u64) -> Result<u16, String> {
    let cfg = &inner.cfg;
    let (mut up, local) = tokio::time::timeout(
        cfg.connect_timeout,
        Up::connect(&cfg.upstream, inner.tls.as_ref(), inner.origin.as_ref()),
    )
    .await
    .map_err(|_| "connecting timed out".to_string())?
    .map_err(|e| e.to_string())?;
    let u = &cfg.upstream;
    let hostport = u.hostport();
    let local = crate::core::sent_by(local, cfg.advertised_host.as_deref());
    let branch = format!("{}0xping{n}", crate::core::BRANCH_PREFIX);
    let t = u.transport.as_str().to_ascii_uppercase();
    let options = format!(
        "OPTIONS sip:{hostport} SIP/2.0\r\nVia: SIP/2.0/{t} {local};rport;branch={branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:centralita-relay@{local}>;tag=ping{n}\r\n\
         To: <sip:{hostport}>\r\nCall-ID: relay-ping-{n}-{local}\r\nCSeq: {n} OPTIONS\r\n\
         User-Agent: centralita relay\r\nContent-Length: 0\r\n\r\n"
    );
    up.send(options.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let limits = Limits {
        max_bytes: cfg.max_message_bytes,
        ..Limits::default()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut udp_buf = vec![0u8; 65_536];
    let mut tcp_buf = Vec::new();
    loop {
        let got = tokio::time::timeout_at(deadline, recv_up(&mut up, &mut udp_buf, &mut tcp_buf))
            .await
            .map_err(|_| "no answer within 5 s".to_string())?
            .map_err(|e| e.to_string())?;
        let mut frames = Vec::new();
        match got {
            Some(n) => frames.push(udp_buf[..n].to_vec()),
            None => {
                while let Ok(Some(f)) = next_frame(&mut tcp_buf, cfg.max_message_bytes) {
                    frames.push(f);
                }
            }
        }
        for f in frames {
            let Ok(m) = msg::Msg::parse(&f, &limits) else {
                continue;
            };
            if let Some(code) = m.code().filter(|c| *c >= 200) {
                if m.top_branch() == branch {
                    return Ok(code);
                }
            }
        }
    }
}

/// Sleeps until `at`, or forever.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// The TLS handshake toward the PBX, checking its certificate and name.
async fn tls_handshake(
    u: &Upstream,
    tls: Option<&Arc<rustls::ClientConfig>>,
    s: TcpStream,
) -> std::io::Result<TlsStream> {
    let cfg = tls
        .cloned()
        .ok_or_else(|| std::io::Error::other("no TLS configuration"))?;
    let name = rustls_pki_types::ServerName::try_from(u.host.clone())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    tokio_rustls::TlsConnector::from(cfg).connect(name, s).await
}

/// Reads from the PBX: `Some(n)` a whole message of n bytes in `udp_buf`
/// (a datagram, a WebSocket message), `None` more stream bytes appended to
/// `tcp_buf`. A closed stream is an error.
async fn recv_up(
    up: &mut Up,
    udp_buf: &mut [u8],
    tcp_buf: &mut Vec<u8>,
) -> std::io::Result<Option<usize>> {
    match up {
        Up::Udp(s) => s.recv(udp_buf).await.map(Some),
        Up::Ws { stream, .. } => loop {
            let m = futures_util::StreamExt::next(stream)
                .await
                .ok_or_else(|| io_error("the PBX closed the WebSocket"))?
                .map_err(io_error)?;
            let data: &[u8] = match &m {
                WsMessage::Text(t) => t.as_bytes(),
                WsMessage::Binary(b) => b,
                WsMessage::Close(_) => return Err(io_error("the PBX closed the WebSocket")),
                // Pongs are answered by the library.
                _ => continue,
            };
            if data.len() > udp_buf.len() {
                return Err(io_error("message from the PBX too large"));
            }
            udp_buf[..data.len()].copy_from_slice(data);
            return Ok(Some(data.len()));
        },
        Up::Tcp { .. } | Up::Tls { .. } => {
            let mut chunk = [0u8; 8192];
            let n = match up {
                Up::Tcp { rd, .. } => rd.read(&mut chunk).await?,
                Up::Tls { rd, .. } => rd.read(&mut chunk).await?,
                Up::Udp(_) | Up::Ws { .. } => 0,
            };
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the PBX closed the connection",
                ));
            }
            tcp_buf.extend_from_slice(&chunk[..n]);
            Ok(None)
        }
    }
}

/// The next whole message of a stream buffer (RFC 3261 §18.3 framing),
/// skipping keep-alive CRLFs.
fn next_frame(buf: &mut Vec<u8>, max: usize) -> Result<Option<Vec<u8>>, msg::ParseError> {
    let lead = buf
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    buf.drain(..lead);
    match msg::stream_frame_len(buf, max)? {
        Some(n) => Ok(Some(buf.drain(..n).collect())),
        None => Ok(None),
    }
}

/// Sends what `out` says and records what passed; false when a side is gone.
async fn dispatch(
    inner: &Inner,
    core: &FlowCore,
    peer: SocketAddr,
    secure: bool,
    out: Outcome,
    up: &mut Up,
    to_browser: &mpsc::Sender<Vec<u8>>,
) -> bool {
    if let Some(why) = out.refused {
        tracing::debug!(flow = core.id(), %peer, why, "relay: not relayed");
    }
    inner.observe(core.id(), peer, secure, &out);
    match out.send {
        Some(Action::ToUpstream(bytes)) => {
            if let Err(e) = up.send(&bytes).await {
                tracing::info!(flow = core.id(), error = %e, "relay: cannot send to the PBX");
                // A UDP send error (port unreachable) is not the end of the flow.
                return matches!(up, Up::Udp(_));
            }
            true
        }
        Some(Action::ToBrowser(bytes)) => to_browser.send(bytes).await.is_ok(),
        None => true,
    }
}

/// Writes call events (in batches) and registration states.
async fn writer(services: Services, mut rx: mpsc::Receiver<Write>) {
    // Bindings listed by an earlier run: their flows died with it (in
    // relay mode every binding in the location table is the relay's).
    match services.registrations.list_with_extension().await {
        Ok(stale) => {
            for (r, _) in stale {
                let _ = services.registrations.remove(&r.username, &r.contact).await;
                let _ = services
                    .sip_accounts
                    .set_registration_state(&r.username, false, None, None)
                    .await;
            }
        }
        Err(e) => tracing::warn!(error = %e, "relay: cannot list stale registrations"),
    }
    // Numbers already looked up: the agent behind each.
    let mut agents: HashMap<String, Option<Agent>> = HashMap::new();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let mut events = Vec::new();
        let mut flushes = Vec::new();
        for w in batch {
            match w {
                Write::Calls(evs) => events.extend(evs),
                Write::Flush(tx) => flushes.push(tx),
                Write::Registration {
                    user,
                    registered,
                    contact,
                    expires,
                    source,
                    secure,
                    user_agent,
                } => {
                    let Some(a) = agent(&services, &mut agents, &user).await else {
                        // A PBX extension that is no agent: counted, not listed.
                        continue;
                    };
                    let b = Binding {
                        registered,
                        contact: &contact,
                        expires,
                        source,
                        secure,
                        user_agent: user_agent.as_deref(),
                    };
                    if let Err(e) = save_registration(&services, &a, &b).await {
                        tracing::warn!(user, error = %e, "relay: cannot store a registration");
                    }
                }
            }
        }
        for ev in &mut events {
            if let CallEventKind::Started {
                direction,
                caller,
                callee,
                ..
            } = &mut ev.kind
            {
                caller.agent_id = agent(&services, &mut agents, &caller.number)
                    .await
                    .map(|a| a.user_id);
                callee.agent_id = agent(&services, &mut agents, &callee.number)
                    .await
                    .map(|a| a.user_id);
                *direction = match (caller.agent_id, callee.agent_id) {
                    (Some(_), Some(_)) => Direction::Internal,
                    (None, Some(_)) => Direction::Inbound,
                    _ => Direction::Outbound,
                };
            }
            if let CallEventKind::LegAdded { party, .. } = &mut ev.kind {
                party.agent_id = agent(&services, &mut agents, &party.number)
                    .await
                    .map(|a| a.user_id);
            }
        }
        if !events.is_empty() {
            if let Err(e) = services.calls.record(&events).await {
                tracing::warn!(error = %e, events = events.len(), "relay: cannot record call events");
            }
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
}

/// An agent's account, as the relay needs it.
#[derive(Debug, Clone)]
struct Agent {
    user_id: i64,
    username: String,
    extension: String,
}

/// A binding the PBX confirmed (or that ended).
#[derive(Debug, Clone, Copy)]
struct Binding<'a> {
    registered: bool,
    contact: &'a str,
    expires: u32,
    source: SocketAddr,
    secure: bool,
    user_agent: Option<&'a str>,
}

/// The agent's binding in the location table (what the registrations list
/// and the console show), its registered flag and the live event.
async fn save_registration(
    services: &Services,
    a: &Agent,
    b: &Binding<'_>,
) -> Result<(), domain::DomainError> {
    let Binding {
        registered,
        contact,
        expires,
        source,
        secure,
        user_agent,
    } = *b;
    let now = chrono::Utc::now();
    if registered {
        services
            .registrations
            .save(&domain::RegistrationRecord {
                username: a.username.clone(),
                contact: contact.to_string(),
                transport: if secure { "wss" } else { "ws" }.into(),
                source: source.to_string(),
                user_agent: user_agent.map(str::to_string),
                instance_id: None,
                reg_id: None,
                call_id: String::new(),
                cseq: 0,
                expires_at: now + chrono::Duration::seconds(i64::from(expires)),
                registered_at: now,
            })
            .await?;
    } else {
        services.registrations.remove(&a.username, contact).await?;
    }
    let ip = source.ip().to_string();
    services
        .sip_accounts
        .set_registration_state(&a.username, registered, user_agent, Some(&ip))
        .await?;
    services.events.publish(domain::Event::Registration {
        at: now,
        username: a.username.clone(),
        extension: a.extension.clone(),
        registered,
        contacts: u32::from(registered),
    });
    Ok(())
}

/// The agent whose extension or SIP username is `number`, cached: the
/// PBX's extension numbers are the agents' when the admin made them match.
async fn agent(
    services: &Services,
    cache: &mut HashMap<String, Option<Agent>>,
    number: &str,
) -> Option<Agent> {
    if number.is_empty() {
        return None;
    }
    if let Some(hit) = cache.get(number) {
        return hit.clone();
    }
    let found = match services.sip_accounts.by_extension(number).await {
        Ok(Some(a)) => Some(a),
        _ => services
            .sip_accounts
            .by_username(number)
            .await
            .ok()
            .flatten(),
    };
    let v = found.map(|a| Agent {
        user_id: a.user_id,
        username: a.username,
        extension: a.extension,
    });
    // Only hits are kept: an agent created later is found then.
    if v.is_some() {
        cache.insert(number.to_string(), v.clone());
    }
    v
}
