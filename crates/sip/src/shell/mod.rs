//! tokio shell around [`crate::core::Core`]: sockets, WebSocket flows, the
//! timer, account lookups and the write-behind of registrations and CDRs.
//!
//! One mutex guards the core; every input locks it, feeds one message and
//! drains the outputs, which are carried out after the lock is released.

pub(crate) mod conns;
mod dial;
pub(crate) mod journal;
pub(crate) mod probe;
pub(crate) mod tls;
pub(crate) mod tls_client;
pub(crate) mod trunks;
mod udp;
mod writer;

use crate::backend::{AccountChange, Backend};
use crate::core::{msg, Core, Output, Source, Transport, UDP_FLOW};
use conns::{ConnLimits, Conns, RateLimited, Refused, Ticket};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
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

/// Per-connection outbound queue depth; a client that does not read is cut off.
const FLOW_QUEUE: usize = 256;

/// Bytes a stream connection's read buffer grows by.
const READ_RESERVE: usize = 4096;

pub(crate) struct Shared {
    pub core: Mutex<Core>,
    flows: Mutex<HashMap<u64, mpsc::Sender<Vec<u8>>>>,
    /// Connections we opened ourselves to reach a restored TCP/TLS
    /// contact, by that contact (see `dial.rs`).
    dialed: Mutex<HashMap<Source, u64>>,
    /// Opens TLS connections to phones (see `tls_client.rs`).
    tls_dial: tokio_rustls::TlsConnector,
    /// Opens TLS connections to carriers (TLS trunks), checking the name.
    pub(crate) tls_trunk: tokio_rustls::TlsConnector,
    /// The configured host of each TLS trunk, by the address it resolved
    /// to: the name its connection is opened for (see `dial.rs`).
    pub(crate) trunk_names: Mutex<trunks::TrunkNames>,
    /// Every stream connection: caps, eviction, idle deadlines.
    pub(crate) conns: Conns,
    /// Accept errors (out of descriptors) are logged at most once a second.
    accept_errors: RateLimited,
    next_flow: AtomicU64,
    pub udp: Arc<UdpSocket>,
    pub backend: Arc<dyn Backend>,
    pub writers: Writers,
    pub shutdown: watch::Sender<bool>,
    /// Trunk registration events (see `trunks.rs`).
    pub trunk_events: tokio::sync::broadcast::Sender<crate::core::outbound_reg::TrunkEvent>,
    /// The runtime `start` was called on: lookups and writers run there, the
    /// UDP loop and the timer run on their own thread.
    pub main: tokio::runtime::Handle,
    pub max_bytes: usize,
}

impl Shared {
    pub fn new(
        core: Core,
        udp: Arc<UdpSocket>,
        backend: Arc<dyn Backend>,
        journal: Option<Arc<journal::Journal>>,
        limits: ConnLimits,
        max_bytes: usize,
        tls: tls_client::Dialers,
    ) -> Arc<Self> {
        let (shutdown, _) = watch::channel(false);
        let writers = Writers::spawn(backend.clone(), journal);
        Arc::new(Shared {
            core: Mutex::new(core),
            flows: Mutex::new(HashMap::new()),
            dialed: Mutex::new(HashMap::new()),
            tls_dial: tls.phones,
            tls_trunk: tls.trunks,
            trunk_names: Mutex::new(trunks::TrunkNames::default()),
            conns: Conns::new(limits),
            accept_errors: RateLimited::new(Duration::from_secs(1)),
            next_flow: AtomicU64::new(1),
            udp,
            backend,
            writers,
            shutdown,
            trunk_events: trunks::channel(),
            main: tokio::runtime::Handle::current(),
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
        // Datagrams go out together (one sendmmsg for a whole batch).
        let mut datagrams = Vec::new();
        for o in outs {
            match o {
                Output::Transmit { to, data }
                    if to.flow == UDP_FLOW && to.transport == Transport::Udp =>
                {
                    datagrams.push((to.peer, data));
                }
                o => self.carry_out(o),
            }
        }
        if !datagrams.is_empty() {
            self.send_datagrams(datagrams);
        }
    }

    /// Sends datagrams now; what the socket cannot take yet is sent by a
    /// task that waits for it.
    fn send_datagrams(&self, datagrams: Vec<(SocketAddr, Vec<u8>)>) {
        let left = udp::send_all(&self.udp, datagrams);
        if !left.is_empty() {
            let sock = self.udp.clone();
            self.main.spawn(async move {
                for (to, data) in left {
                    if let Err(e) = sock.send_to(&data, to).await {
                        tracing::debug!(peer = %to, error = %e, "UDP send failed");
                    }
                }
            });
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
            Output::FlowAuthenticated(flow) => self.conns.authenticated(flow),
            Output::Security(notice) => self.backend.security_notice(notice),
            Output::Trunk(e) => self.trunk_event(e),
        }
    }

    fn transmit(self: &Arc<Self>, to: Source, data: Vec<u8>) {
        if to.flow == UDP_FLOW && to.transport.reliable() {
            // A TCP/TLS contact without a live connection (restored after
            // a restart): use the one we opened to it, or open one.
            self.send_to_contact(to, data);
            return;
        }
        if to.flow == UDP_FLOW {
            self.send_datagrams(vec![(to.peer, data)]);
            return;
        }
        self.send_on_flow(to.flow, data);
    }

    fn send_on_flow(&self, flow: u64, data: Vec<u8>) {
        let tx = self.flows.lock().get(&flow).cloned();
        match tx {
            Some(tx) => {
                if tx.try_send(data).is_err() {
                    tracing::debug!(flow, "flow queue full or closed; dropping message");
                }
            }
            None => tracing::debug!(flow, "flow gone; dropping message"),
        }
    }

    /// Takes a connection slot for `ip` under a new flow id (see
    /// [`Conns::admit`]); `trusted` for connections we open ourselves.
    pub(crate) fn admit(&self, ip: std::net::IpAddr, trusted: bool) -> Result<Ticket, Refused> {
        let id = self.next_flow.fetch_add(1, Ordering::Relaxed);
        self.conns.admit(id, ip, trusted)
    }

    fn open_flow(&self, id: u64) -> mpsc::Receiver<Vec<u8>> {
        let (tx, rx) = mpsc::channel(FLOW_QUEUE);
        self.flows.lock().insert(id, tx);
        rx
    }

    fn close_flow(self: &Arc<Self>, id: u64) {
        self.flows.lock().remove(&id);
        let dialed_to = self.forget_dialed(id);
        self.conns.release(id);
        // A connection we close because we are stopping is not the phone
        // going away: its binding stays registered (and is restored at the
        // next start; plain TCP/TLS contacts are then reached by connecting).
        if !*self.shutdown.borrow() {
            self.feed(|c| {
                let now = now_ms();
                c.handle_flow_closed(now, id);
                // A connection we opened to a restored contact failed or
                // closed: what was sent that way is lost too.
                if let Some(to) = dialed_to {
                    c.handle_contact_lost(now, to);
                }
            });
        }
    }

    /// An accept failed: per-connection errors are retried at once; others
    /// (out of descriptors) free a descriptor by closing the oldest
    /// unauthenticated connection and pause the loop so it does not spin,
    /// logging at most once a second.
    pub(crate) async fn accept_failed(&self, what: &str, e: std::io::Error) {
        use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
        if matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted) {
            return;
        }
        // EMFILE (24) and ENFILE (23): the process or the system is out of descriptors.
        let out_of_fds = matches!(e.raw_os_error(), Some(23 | 24));
        let shed = out_of_fds && self.conns.shed();
        if let Some(suppressed) = self.accept_errors.hit() {
            tracing::warn!(
                error = %e,
                connections = self.conns.len(),
                closed_a_stranger = shed,
                suppressed,
                "{what} accept failed"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
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
        let Ok(ticket) = self.admit(peer.ip(), false) else {
            return Err(domain::FlowRefused::TooManyConnections(peer.ip()));
        };
        let id = ticket.id;
        let (in_tx, mut in_rx) = mpsc::channel::<Vec<u8>>(FLOW_QUEUE);
        let out_rx = self.open_flow(id);
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
            let mut last = tokio::time::Instant::now();
            let deadline = tokio::time::sleep_until(ticket.first_check());
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    m = in_rx.recv() => match m {
                        Some(data) => {
                            if data.len() > me.max_bytes {
                                break;
                            }
                            last = tokio::time::Instant::now();
                            me.feed(|c| c.handle_datagram(now_ms(), src, &data));
                        }
                        None => break,
                    },
                    _ = &mut deadline => {
                        if !extend(&ticket, last, deadline.as_mut(), peer) {
                            break;
                        }
                    }
                    _ = ticket.evicted() => break,
                    _ = stop.changed() => break,
                }
            }
            me.close_flow(id);
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

/// Batches taken in a row before the loop lets the timer task run.
const UDP_ROUNDS: usize = 8;

/// Receives datagrams a batch at a time (see `udp.rs`); each batch is fed
/// to the core under one lock and its answers leave in one `sendmmsg`.
pub(crate) async fn run_udp(shared: Arc<Shared>) {
    let mut rx = udp::Receiver::new();
    let mut stop = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            r = shared.udp.readable() => if let Err(e) = r {
                tracing::warn!(error = %e, "UDP socket failed");
                return;
            },
            _ = stop.changed() => return,
        }
        for _ in 0..UDP_ROUNDS {
            match rx.recv(&shared.udp) {
                Ok(n) => {
                    let now = now_ms();
                    shared.feed(|c| {
                        for (data, peer) in rx.datagrams() {
                            let src = Source {
                                flow: UDP_FLOW,
                                transport: Transport::Udp,
                                peer,
                            };
                            c.handle_datagram(now, src, data);
                        }
                    });
                    if n < udp::BATCH {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // ICMP port unreachable shows up here on some systems; keep going.
                    tracing::debug!(error = %e, "UDP receive error");
                    break;
                }
            }
        }
        tokio::task::yield_now().await;
    }
}

pub(crate) async fn run_tcp(shared: Arc<Shared>, listener: TcpListener) {
    let mut stop = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let Ok(ticket) = shared.admit(peer.ip(), false) else {
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(stream_conn(shared.clone(), stream, peer, Transport::Tcp, ticket));
                }
                Err(e) => shared.accept_failed("SIP TCP", e).await,
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
    ticket: Ticket,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let out_rx = shared.open_flow(ticket.id);
    stream_flow(shared, stream, peer, transport, ticket, out_rx).await;
}

/// A connection's deadline passed: true (and the timer moved) when it was
/// extended in the meantime (it authenticated, or bytes arrived), false
/// when the connection is to be closed.
fn extend(
    ticket: &Ticket,
    last_inbound: tokio::time::Instant,
    timer: std::pin::Pin<&mut tokio::time::Sleep>,
    peer: SocketAddr,
) -> bool {
    let now = tokio::time::Instant::now();
    let due = ticket.deadline(last_inbound);
    if due > now {
        timer.reset(ticket.next_check(now, due));
        return true;
    }
    if ticket.is_authenticated() {
        tracing::debug!(%peer, flow = ticket.id, "closing an idle SIP connection");
    } else {
        tracing::debug!(%peer, flow = ticket.id, "closing a SIP connection that did not authenticate in time");
    }
    false
}

/// Runs stream connection `id` (accepted or dialed) until it closes.
async fn stream_flow<S>(
    shared: Arc<Shared>,
    stream: S,
    peer: SocketAddr,
    transport: Transport,
    ticket: Ticket,
    mut out_rx: mpsc::Receiver<Vec<u8>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let id = ticket.id;
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
    // Read straight into `buf`, grown only when a message needs it: an
    // idle connection holds a small buffer, not a fixed 16 KiB chunk.
    let mut buf: Vec<u8> = Vec::new();
    let mut last = tokio::time::Instant::now();
    let deadline = tokio::time::sleep_until(ticket.first_check());
    tokio::pin!(deadline);
    'conn: loop {
        if buf.is_empty() && buf.capacity() > READ_RESERVE * 4 {
            buf = Vec::new();
        }
        if buf.capacity() - buf.len() < READ_RESERVE / 2 {
            buf.reserve(READ_RESERVE);
        }
        tokio::select! {
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => last = tokio::time::Instant::now(),
            },
            _ = &mut deadline => {
                if extend(&ticket, last, deadline.as_mut(), peer) {
                    continue;
                }
                break;
            }
            _ = ticket.evicted() => {
                tracing::debug!(%peer, flow = id, "SIP connection evicted to make room");
                break;
            }
            _ = stop.changed() => break,
        }
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
    shared.close_flow(id);
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
