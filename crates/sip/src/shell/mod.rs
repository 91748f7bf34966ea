//! tokio shell around [`crate::core::Core`]: sockets, WebSocket flows, the
//! timer, account lookups and the write-behind of registrations and CDRs.
//!
//! One mutex guards the core; every input locks it, feeds one message and
//! drains the outputs, which are carried out after the lock is released.

pub(crate) mod journal;
pub(crate) mod tls;
mod writer;

use crate::backend::{AccountChange, Backend};
use crate::core::{msg, Core, Output, Source, Transport, UDP_FLOW};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};

pub(crate) use writer::Writers;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How long connecting to a phone's TCP contact may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-connection outbound queue depth; a client that does not read is cut off.
const FLOW_QUEUE: usize = 256;

pub(crate) struct Shared {
    pub core: Mutex<Core>,
    flows: Mutex<HashMap<u64, mpsc::Sender<Vec<u8>>>>,
    /// Connections we opened ourselves, by the address we connected to.
    dialed: Mutex<HashMap<SocketAddr, u64>>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    next_flow: AtomicU64,
    pub udp: Arc<UdpSocket>,
    pub backend: Arc<dyn Backend>,
    pub writers: Writers,
    pub shutdown: watch::Sender<bool>,
    /// The runtime `start` was called on: lookups and writers run there, the
    /// UDP loop and the timer run on their own thread.
    pub main: tokio::runtime::Handle,
    pub max_conn_per_ip: usize,
    pub max_bytes: usize,
}

impl Shared {
    pub fn new(
        core: Core,
        udp: Arc<UdpSocket>,
        backend: Arc<dyn Backend>,
        journal: Option<Arc<journal::Journal>>,
        max_conn_per_ip: usize,
        max_bytes: usize,
    ) -> Arc<Self> {
        let (shutdown, _) = watch::channel(false);
        let writers = Writers::spawn(backend.clone(), journal);
        Arc::new(Shared {
            core: Mutex::new(core),
            flows: Mutex::new(HashMap::new()),
            dialed: Mutex::new(HashMap::new()),
            per_ip: Mutex::new(HashMap::new()),
            next_flow: AtomicU64::new(1),
            udp,
            backend,
            writers,
            shutdown,
            main: tokio::runtime::Handle::current(),
            max_conn_per_ip,
            max_bytes,
        })
    }

    /// Runs `f` on the core and carries out everything it asked for.
    pub fn feed(self: &Arc<Self>, f: impl FnOnce(&mut Core)) {
        let mut outs = Vec::new();
        let mut calls = Vec::new();
        {
            let mut core = self.core.lock();
            f(&mut core);
            while let Some(o) = core.poll_output() {
                match o {
                    Output::Call(ev) => calls.push(ev),
                    Output::Store(op) => self.writers.store(op),
                    o => outs.push(o),
                }
            }
            // Journaled and queued while the core is locked, so the order
            // the core produced them in holds across threads (a 200 handled
            // on another thread must not overtake its call's start), and
            // before anything of this step is sent: a phone never sees an
            // answer whose event a crash could lose (see journal.rs).
            if !calls.is_empty() {
                self.writers.cdrs(calls, now_ms());
            }
        }
        for o in outs {
            self.carry_out(o);
        }
    }

    fn carry_out(self: &Arc<Self>, o: Output) {
        match o {
            Output::Transmit { to, data } => self.transmit(to, data),
            Output::Lookup(key) => {
                let me = self.clone();
                self.main.spawn(async move {
                    match me.backend.account(&key).await {
                        Ok(found) => me.feed(|c| c.handle_lookup(now_ms(), key, found)),
                        Err(e) => {
                            tracing::warn!(error = %e, "account lookup failed");
                            me.feed(|c| c.handle_lookup_failed(key));
                        }
                    }
                });
            }
            Output::Store(op) => self.writers.store(op),
            Output::Call(ev) => self.writers.cdrs(vec![ev], now_ms()),
        }
    }

    fn transmit(self: &Arc<Self>, mut to: Source, data: Vec<u8>) {
        if to.flow == UDP_FLOW && to.transport == Transport::Tcp {
            // A TCP contact without a live connection (restored after a
            // restart): use the one we opened to it, or open one.
            let dialed = self.dialed.lock().get(&to.peer).copied();
            match dialed {
                Some(flow) => to.flow = flow,
                None => {
                    self.dial(to.peer, data);
                    return;
                }
            }
        }
        if to.flow == UDP_FLOW {
            match self.udp.try_send_to(&data, to.peer) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let udp = self.udp.clone();
                    self.main.spawn(async move {
                        let _ = udp.send_to(&data, to.peer).await;
                    });
                }
                Err(e) => tracing::debug!(peer = %to.peer, error = %e, "UDP send failed"),
            }
            return;
        }
        let tx = self.flows.lock().get(&to.flow).cloned();
        match tx {
            Some(tx) => {
                if tx.try_send(data).is_err() {
                    tracing::debug!(
                        flow = to.flow,
                        "flow queue full or closed; dropping message"
                    );
                }
            }
            None => tracing::debug!(flow = to.flow, "flow gone; dropping message"),
        }
    }

    /// Opens a TCP connection to `peer` and sends `first` on it; what comes
    /// back is handled like any connection. Until it is up, later messages
    /// to `peer` queue on its flow.
    fn dial(self: &Arc<Self>, peer: SocketAddr, first: Vec<u8>) {
        if !self.admit(peer.ip()) {
            return;
        }
        let (id, rx) = self.open_flow();
        if let Some(tx) = self.flows.lock().get(&id) {
            let _ = tx.try_send(first);
        }
        self.dialed.lock().insert(peer, id);
        let me = self.clone();
        self.main.spawn(async move {
            let connect = tokio::net::TcpStream::connect(peer);
            match tokio::time::timeout(DIAL_TIMEOUT, connect).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    stream_flow(me, stream, peer, Transport::Tcp, id, rx).await;
                }
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "cannot connect to a TCP contact");
                    me.close_flow(id, peer.ip());
                }
                Err(_) => {
                    tracing::info!(%peer, "connecting to a TCP contact timed out");
                    me.close_flow(id, peer.ip());
                }
            }
        });
    }

    /// Reserves a connection slot for `ip`; false when over the limit.
    pub(crate) fn admit(&self, ip: IpAddr) -> bool {
        let mut m = self.per_ip.lock();
        let n = m.entry(ip).or_insert(0);
        if *n >= self.max_conn_per_ip {
            tracing::warn!(%ip, "SIP connection refused: too many connections from this address");
            return false;
        }
        *n += 1;
        true
    }

    pub(crate) fn release(&self, ip: IpAddr) {
        let mut m = self.per_ip.lock();
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }

    fn open_flow(&self) -> (u64, mpsc::Receiver<Vec<u8>>) {
        let id = self.next_flow.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(FLOW_QUEUE);
        self.flows.lock().insert(id, tx);
        (id, rx)
    }

    fn close_flow(self: &Arc<Self>, id: u64, ip: IpAddr) {
        self.flows.lock().remove(&id);
        self.dialed.lock().retain(|_, f| *f != id);
        self.release(ip);
        // A connection we close because we are stopping is not the phone
        // going away: its binding stays registered (and is restored at the
        // next start; plain TCP contacts are then reached by connecting).
        if !*self.shutdown.borrow() {
            self.feed(|c| c.handle_flow_closed(now_ms(), id));
        }
    }

    /// A WebSocket connection handed over by the HTTP layer (see
    /// [`domain::Engine::attach_flow`]).
    pub fn attach_websocket(
        self: &Arc<Self>,
        peer: SocketAddr,
        secure: bool,
    ) -> Result<domain::FlowHandle, domain::FlowRefused> {
        // Subscribe before checking: a stop sent after this point wakes the
        // flow's task, and one sent before is refused here (a receiver only
        // reports changes made after it subscribed, so a flow attached after
        // shutdown would otherwise outlive the server).
        let mut stop = self.shutdown.subscribe();
        if *stop.borrow_and_update() {
            return Err(domain::FlowRefused::ShuttingDown);
        }
        if !self.admit(peer.ip()) {
            return Err(domain::FlowRefused::TooManyConnections(peer.ip()));
        }
        let (in_tx, mut in_rx) = mpsc::channel::<Vec<u8>>(FLOW_QUEUE);
        let (id, out_rx) = self.open_flow();
        let transport = if secure {
            Transport::Wss
        } else {
            Transport::Ws
        };
        let src = Source {
            flow: id,
            transport,
            peer,
        };
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    m = in_rx.recv() => match m {
                        Some(data) => {
                            if data.len() > me.max_bytes {
                                break;
                            }
                            me.feed(|c| c.handle_datagram(now_ms(), src, &data));
                        }
                        None => break,
                    },
                    _ = stop.changed() => break,
                }
            }
            me.close_flow(id, peer.ip());
        });
        Ok(domain::FlowHandle {
            inbound: in_tx,
            outbound: out_rx,
        })
    }
}

/// Runs the UDP receive loop and the timer on a dedicated thread with a
/// single-threaded runtime: receive, process and send happen on one thread,
/// without handing each datagram between worker threads.
pub(crate) fn spawn_udp_thread(
    rt: tokio::runtime::Runtime,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("sip-udp".into())
        .spawn(move || {
            rt.block_on(async move {
                let timer = tokio::spawn(run_timer(shared.clone()));
                run_udp(shared).await;
                timer.abort();
            })
        })?;
    Ok(())
}

pub(crate) async fn run_udp(shared: Arc<Shared>) {
    let mut buf = vec![0u8; 65_535];
    let mut stop = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            r = shared.udp.recv_from(&mut buf) => match r {
                Ok((n, peer)) => {
                    let src = Source { flow: UDP_FLOW, transport: Transport::Udp, peer };
                    let data = &buf[..n];
                    shared.feed(|c| c.handle_datagram(now_ms(), src, data));
                }
                Err(e) => {
                    // ICMP port unreachable shows up here on some systems; keep going.
                    tracing::debug!(error = %e, "UDP receive error");
                }
            },
            _ = stop.changed() => return,
        }
    }
}

pub(crate) async fn run_tcp(shared: Arc<Shared>, listener: TcpListener) {
    let mut stop = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    if !shared.admit(peer.ip()) {
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(stream_conn(shared.clone(), stream, peer, Transport::Tcp));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

/// One stream connection (TCP or TLS): frames messages by Content-Length.
pub(crate) async fn stream_conn<S>(
    shared: Arc<Shared>,
    stream: S,
    peer: SocketAddr,
    transport: Transport,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (id, out_rx) = shared.open_flow();
    stream_flow(shared, stream, peer, transport, id, out_rx).await;
}

/// Runs stream connection `id` (accepted or dialed) until it closes.
async fn stream_flow<S>(
    shared: Arc<Shared>,
    stream: S,
    peer: SocketAddr,
    transport: Transport,
    id: u64,
    mut out_rx: mpsc::Receiver<Vec<u8>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let src = Source {
        flow: id,
        transport,
        peer,
    };
    let writer = tokio::spawn(async move {
        while let Some(data) = out_rx.recv().await {
            if wr.write_all(&data).await.is_err() {
                break;
            }
        }
    });
    let mut stop = shared.shutdown.subscribe();
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16_384];
    'conn: loop {
        let n = tokio::select! {
            r = rd.read(&mut chunk) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = stop.changed() => break,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            // RFC 5626 keep-alive: answer a double CRLF ping with a single CRLF pong.
            if buf.starts_with(b"\r\n\r\n") {
                buf.drain(..4);
                shared.transmit(src, b"\r\n".to_vec());
                continue;
            }
            while buf.starts_with(b"\r\n") && buf.len() > 2 && !buf.starts_with(b"\r\n\r\n") {
                buf.drain(..2);
            }
            match msg::stream_frame_len(&buf, shared.max_bytes) {
                Ok(Some(len)) => {
                    let frame: Vec<u8> = buf.drain(..len).collect();
                    shared.feed(|c| c.handle_datagram(now_ms(), src, &frame));
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(%peer, reason = e.reason, "closing TCP connection: bad framing");
                    break 'conn;
                }
            }
        }
    }
    shared.close_flow(id, peer.ip());
    writer.abort();
}

pub(crate) async fn run_timer(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut stop = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = now_ms();
                // Compare with the clock instead of trusting the sleep alone.
                let due = shared.core.lock().poll_timeout() <= now;
                if due {
                    shared.feed(|c| c.handle_timeout(now));
                }
            }
            _ = stop.changed() => return,
        }
    }
}

pub(crate) async fn run_account_changes(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<AccountChange>,
) {
    let mut stop = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            c = rx.recv() => match c {
                Some(AccountChange::Revoked { username }) => {
                    tracing::info!(%username, "SIP account revoked: dropping bindings");
                    shared.feed(|core| core.invalidate_account(&username, true));
                }
                Some(AccountChange::Updated { username }) => {
                    shared.feed(|core| core.invalidate_account(&username, false));
                }
                None => return,
            },
            _ = stop.changed() => return,
        }
    }
}
