//! Serving the router over HTTP/1.1 with the limits `axum::serve` lacks
//! (it has no header-read timeout, no body timeout and no per-address cap,
//! so 1,100 half-sent requests from one address exhausted the descriptors
//! and `/api/health` stopped answering for everyone):
//! - a request head must arrive within `header_timeout` (this also closes
//!   a keep-alive connection left idle that long, and one that never sends);
//! - a request body must arrive within `body_timeout` of its head;
//! - at most `max_connections_per_ip` connections per client address, the
//!   WebSocket a connection was upgraded to included; more are closed at
//!   once (logged at most once a second).
//!
//! Used for both listeners: plain TCP ([`LimitedTcp`]) and HTTPS
//! ([`crate::tls::TlsListener`], which takes the same [`PeerLimiter`]
//! before the handshake).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use axum::Router;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The limits of both HTTP listeners; the `[http]` defaults come from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Longest wait for a complete request head (and idle keep-alive).
    pub header_timeout: Duration,
    /// Longest a request body may take to arrive, from its head.
    pub body_timeout: Duration,
    /// Open connections per client address (WebSockets included).
    pub max_connections_per_ip: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(30),
            // A console tab holds a few connections (page loads, the
            // events and SIP WebSockets); an office behind one NAT address
            // is many agents with a few tabs each.
            max_connections_per_ip: 256,
        }
    }
}

/// Counts connections per client address.
pub struct PeerLimiter {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
    /// When the last refusal was logged, and how many were not since.
    logged: Mutex<(Option<Instant>, u64)>,
}

impl PeerLimiter {
    pub fn new(max_per_ip: usize) -> Arc<Self> {
        Arc::new(PeerLimiter {
            max: max_per_ip.max(1),
            counts: Mutex::new(HashMap::new()),
            logged: Mutex::new((None, 0)),
        })
    }

    /// A slot for a connection from `ip`, or `None` when it has too many.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<PeerSlot> {
        {
            let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            let n = counts.entry(ip).or_insert(0);
            if *n < self.max {
                *n += 1;
                return Some(PeerSlot {
                    limiter: self.clone(),
                    ip,
                });
            }
        }
        self.log_refusal(ip);
        None
    }

    fn log_refusal(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut l = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        match l.0 {
            Some(at) if now.duration_since(at) < Duration::from_secs(1) => l.1 += 1,
            _ => {
                tracing::warn!(
                    %ip,
                    limit = self.max,
                    suppressed = l.1,
                    "HTTP connection refused: too many connections from this address \
                     (http.max_connections_per_ip)"
                );
                *l = (Some(now), 0);
            }
        }
    }

    fn release(&self, ip: IpAddr) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&ip);
            }
        }
    }
}

/// One connection's place in the per-address count, given back on drop.
pub struct PeerSlot {
    limiter: Arc<PeerLimiter>,
    ip: IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        self.limiter.release(self.ip);
    }
}

/// A connection holding its slot: the slot is released when the
/// connection closes, after an upgrade to a WebSocket as well.
pub struct Slotted<T> {
    io: T,
    _slot: PeerSlot,
}

impl<T> Slotted<T> {
    pub fn new(io: T, slot: PeerSlot) -> Self {
        Slotted { io, _slot: slot }
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Slotted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Slotted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The plain HTTP listener with the per-address cap.
pub struct LimitedTcp {
    tcp: TcpListener,
    limiter: Arc<PeerLimiter>,
}

impl LimitedTcp {
    pub fn new(tcp: TcpListener, limiter: Arc<PeerLimiter>) -> Self {
        LimitedTcp { tcp, limiter }
    }
}

impl Listener for LimitedTcp {
    type Io = Slotted<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // axum's accept retries errors itself, pausing a second on
            // those that are not about one connection (out of descriptors).
            let (tcp, peer) = Listener::accept(&mut self.tcp).await;
            if let Some(slot) = self.limiter.try_acquire(peer.ip()) {
                let _ = tcp.set_nodelay(true);
                return (Slotted::new(tcp, slot), peer);
            }
            // Over the cap: dropping the stream closes it.
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits for
/// the requests in progress (not for WebSockets, which end with the
/// engine). Each request sees the client address as
/// `ConnectInfo<SocketAddr>`.
pub async fn serve<L>(
    mut listener: L,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    L: Listener<Addr = SocketAddr>,
{
    // Dropped when we stop: each connection then shuts down gracefully.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    // Each connection holds a clone; `closed` resolves when all are gone.
    let (done_tx, done_rx) = tokio::sync::watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        let app = app.clone();
        let mut stop = stop_rx.clone();
        let done = done_rx.clone();
        tokio::spawn(async move {
            let body_timeout = limits.body_timeout;
            let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let mut req = req.map(|b| Body::new(TimedBody::new(b, body_timeout)));
                req.extensions_mut().insert(ConnectInfo(peer));
                let mut app = app.clone();
                async move { tower::Service::call(&mut app, req).await }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let conn = builder
                .serve_connection(TokioIo::new(io), svc)
                .with_upgrades();
            tokio::pin!(conn);
            let mut stopping = false;
            loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(%peer, error = %e, "HTTP connection ended");
                        }
                        break;
                    }
                    _ = stop.changed(), if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(done);
        });
    }
    drop(listener);
    drop(stop_tx);
    drop(done_rx);
    done_tx.closed().await;
}

/// A request body that must arrive whole before a deadline.
struct TimedBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl TimedBody {
    fn new(inner: Incoming, limit: Duration) -> Self {
        TimedBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            let e = io::Error::new(
                io::ErrorKind::TimedOut,
                "the request body did not arrive in time (http.body_timeout_secs)",
            );
            return Poll::Ready(Some(Err(e.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_address_slots_are_counted_and_given_back() {
        let l = PeerLimiter::new(2);
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        let s1 = l.try_acquire(a).expect("first");
        let _s2 = l.try_acquire(a).expect("second");
        assert!(l.try_acquire(a).is_none(), "third from one address");
        assert!(
            l.try_acquire(b).is_some(),
            "another address is not affected"
        );
        drop(s1);
        assert!(
            l.try_acquire(a).is_some(),
            "a closed connection frees its slot"
        );
    }

    #[test]
    fn no_cap_behind_a_trusted_proxy() {
        let mut cfg = crate::Config::default();
        cfg.http.max_connections_per_ip = 3;
        assert_eq!(crate::http_limits(&cfg).max_connections_per_ip, 3);
        cfg.http.trust_proxy = true;
        assert_eq!(crate::http_limits(&cfg).max_connections_per_ip, usize::MAX);
    }
}
