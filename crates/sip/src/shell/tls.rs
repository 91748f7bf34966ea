//! SIP over TLS (RFC 3261 section 26): the same stream framing as TCP.

use super::{stream_conn, Shared};
use crate::core::Transport;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Builds the acceptor from PEM files, with the ring provider passed
/// explicitly so nothing depends on a process-wide default provider.
pub(crate) fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

pub(crate) async fn run_tls(shared: Arc<Shared>, listener: TcpListener, acceptor: TlsAcceptor) {
    let mut stop = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    if !shared.admit(peer.ip()) {
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        // A handshake that stalls must not hold the slot forever.
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => stream_conn(shared, tls, peer, Transport::Tls).await,
                            _ => {
                                tracing::debug!(%peer, "TLS handshake failed");
                                shared.release(peer.ip());
                            }
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "TLS accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}
