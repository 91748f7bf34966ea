//! An [`axum::serve::Listener`] that accepts TCP connections and completes
//! the TLS handshake before handing the stream to the HTTP server.
//!
//! Handshakes run in their own tasks, each under a timeout, so a client that
//! connects and then stalls (or sends garbage) never holds up the accept
//! loop. Their number is bounded: when the bound is reached the listener
//! stops accepting until one finishes, and new clients wait in the kernel's
//! backlog instead of costing memory here. The per-address connection cap
//! ([`PeerLimiter`]) is taken before the handshake, so one address cannot
//! hold every handshake slot either.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::http_serve::{PeerLimiter, PeerSlot, Slotted};

/// Bounds of the handshake phase.
#[derive(Debug, Clone, Copy)]
pub struct TlsListenerLimits {
    /// Longest a client may take to complete its handshake.
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once.
    pub max_handshakes: usize,
}

impl Default for TlsListenerLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 256,
        }
    }
}

type Handshake = Result<(Slotted<TlsStream<TcpStream>>, SocketAddr), (SocketAddr, io::Error)>;

/// A bound TCP listener that yields TLS streams. Serve it with
/// `axum::serve(listener.tap_io(..), router.into_make_service_with_connect_info::<SocketAddr>())`:
/// the client address is the TCP peer.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    limits: TlsListenerLimits,
    peers: Arc<PeerLimiter>,
    handshakes: JoinSet<Handshake>,
}

impl TlsListener {
    pub fn new(
        tcp: TcpListener,
        config: Arc<rustls::ServerConfig>,
        limits: TlsListenerLimits,
    ) -> Self {
        Self {
            tcp,
            acceptor: TlsAcceptor::from(config),
            limits: TlsListenerLimits {
                max_handshakes: limits.max_handshakes.max(1),
                ..limits
            },
            peers: PeerLimiter::new(usize::MAX),
            handshakes: JoinSet::new(),
        }
    }

    /// Caps the connections per client address (the default is no cap).
    pub fn with_peer_limiter(mut self, peers: Arc<PeerLimiter>) -> Self {
        self.peers = peers;
        self
    }

    fn start_handshake(&mut self, tcp: TcpStream, peer: SocketAddr, slot: PeerSlot) {
        let acceptor = self.acceptor.clone();
        let timeout = self.limits.handshake_timeout;
        self.handshakes.spawn(async move {
            match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => Ok((Slotted::new(tls, slot), peer)),
                Ok(Err(e)) => Err((peer, e)),
                Err(_) => Err((
                    peer,
                    io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"),
                )),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = Slotted<TlsStream<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // Both branches are cancel-safe: `TcpListener::accept` per tokio's
        // docs, and `join_next` leaves unfinished tasks in the set.
        loop {
            let room = self.handshakes.len() < self.limits.max_handshakes;
            tokio::select! {
                accepted = self.tcp.accept(), if room => match accepted {
                    Ok((tcp, peer)) => {
                        // Over the cap: dropping the stream closes it.
                        if let Some(slot) = self.peers.try_acquire(peer.ip()) {
                            let _ = tcp.set_nodelay(true);
                            self.start_handshake(tcp, peer, slot);
                        }
                    }
                    Err(e) => accept_error(e).await,
                },
                Some(done) = self.handshakes.join_next() => match done {
                    Ok(Ok(ready)) => return ready,
                    Ok(Err((peer, e))) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    }
                    Err(e) => tracing::warn!(error = %e, "TLS handshake task ended abnormally"),
                },
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Per-connection errors (the client reset before we accepted) are retried
/// at once; others (out of file descriptors) are logged and retried after a
/// pause so the loop does not spin.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a TLS connection");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::serve::Listener;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn acceptor_config() -> (tempfile::TempDir, Arc<rustls::ServerConfig>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let hosts = vec!["localhost".to_string()];
        let c = crate::devcert::generate(dir.path(), &hosts, false).expect("gen");
        let cfg = super::super::https_config(&c.cert_path, &c.key_path).expect("config");
        (dir, cfg)
    }

    fn client_config(dir: &std::path::Path) -> Arc<rustls::ClientConfig> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in
            rustls::pki_types::CertificateDer::pem_file_iter(dir.join("cert.pem")).expect("read")
        {
            roots.add(c.expect("pem")).expect("root");
        }
        Arc::new(
            rustls::ClientConfig::builder_with_provider(super::super::provider())
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// A client that stalls in the handshake and one that speaks plain
    /// text do not stop a good client from being accepted, even with room
    /// for only one handshake at a time.
    #[tokio::test]
    async fn stalled_and_bad_clients_do_not_block_accepting() {
        let (dir, cfg) = acceptor_config();
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = tcp.local_addr().expect("addr");
        let mut listener = TlsListener::new(
            tcp,
            cfg,
            TlsListenerLimits {
                handshake_timeout: Duration::from_millis(300),
                max_handshakes: 1,
            },
        );
        // Stalls: connects and sends nothing.
        let _stalled = TcpStream::connect(addr).await.expect("connect");
        // Garbage: plain HTTP on the TLS port.
        let mut garbage = TcpStream::connect(addr).await.expect("connect");
        garbage
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .await
            .expect("write");

        let connector = tokio_rustls::TlsConnector::from(client_config(dir.path()));
        let client = tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
            let mut tls = connector
                .connect(name, tcp)
                .await
                .expect("client handshake");
            tls.write_all(b"ping").await.expect("write");
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.expect("read");
            buf
        });

        let (mut io, peer) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .expect("the good client is accepted despite the others");
        assert_eq!(peer.ip().to_string(), "127.0.0.1");
        let mut buf = [0u8; 4];
        io.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"ping");
        io.write_all(b"pong").await.expect("write");
        let got = client.await.expect("join");
        assert_eq!(&got, b"pong");
        // The garbage client was answered with a TLS alert or a close.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), garbage.read_to_end(&mut rest)).await;
        assert!(!rest.starts_with(b"HTTP/"), "no HTTP over the TLS port");
    }
}
