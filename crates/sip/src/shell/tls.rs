//! SIP over TLS (RFC 3261 section 26): the same stream framing as TCP.
//! This is the listener; connections we open ourselves are in
//! `tls_client.rs` and `dial.rs`.

use super::{stream_conn, Shared};
use crate::core::Transport;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Builds the acceptor from PEM files, with the ring provider passed
/// explicitly so nothing depends on a process-wide default provider.
pub(crate) fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let (certs, key) = load_identity(cert, key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Our certificate chain and key from PEM files: what the listener shows,
/// and what we offer a phone that asks for a client certificate when we
/// connect to it (`tls_client.rs`).
pub(crate) fn load_identity(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    Ok((certs, key))
}

/// Longest a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn run_tls(shared: Arc<Shared>, listener: TcpListener, acceptor: TlsAcceptor) {
    let mut stop = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let Ok(ticket) = shared.admit(peer.ip(), false) else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        // A handshake that stalls must not hold the slot
                        // forever, nor one that is evicted to make room.
                        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                        let done = tokio::select! {
                            r = handshake => r.ok().and_then(Result::ok),
                            _ = ticket.evicted() => None,
                        };
                        match done {
                            Some(tls) => stream_conn(shared, tls, peer, Transport::Tls, ticket).await,
                            None => {
                                tracing::debug!(%peer, "TLS handshake failed");
                                shared.conns.release(ticket.id);
                            }
                        }
                    });
                }
                Err(e) => shared.accept_failed("SIP TLS", e).await,
            },
            _ = stop.changed() => return,
        }
    }
}
