//! TLS for centralita: the process-wide rustls crypto provider, loading a
//! certificate and key from PEM files into a rustls [`ServerConfig`], and
//! the HTTPS listener ([`TlsListener`]) that serves the same router as the
//! plain HTTP port. The SIP server reuses [`server_config`] for SIP over TLS.

mod listener;

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

pub use listener::{TlsListener, TlsListenerLimits};

/// Installs ring as the process-wide rustls [`CryptoProvider`]. Call it once
/// at startup, before anything builds a TLS configuration: when more than
/// one provider is compiled in (a dependency may bring aws-lc), rustls
/// cannot pick one by itself and its default builders would panic.
/// Calling it again, or after another provider was installed, does nothing.
pub fn install_crypto_provider() {
    if CryptoProvider::get_default().is_none()
        && rustls::crypto::ring::default_provider()
            .install_default()
            .is_err()
    {
        // Lost a race with another installer; that provider is used.
        tracing::debug!("a rustls crypto provider was already installed");
    }
}

/// The process-wide provider (installing ring first if none is).
fn provider() -> Arc<CryptoProvider> {
    install_crypto_provider();
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// A rustls server configuration from a PEM certificate chain (leaf first)
/// and a PEM private key (PKCS#8, PKCS#1 or SEC1), with safe protocol
/// versions and no client authentication. Errors name the file and say
/// what is wrong with it. No ALPN is set: the caller adds what its protocol
/// needs (the HTTPS listener adds `http/1.1`; SIP over TLS needs none).
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<ServerConfig> {
    let chain = load_certs(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        anyhow::anyhow!(
            "reading TLS private key {}: {}",
            key.display(),
            pem_error_text(&e)
        )
    })?;
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .with_context(|| {
            format!(
                "TLS certificate {} and key {} cannot be used together",
                cert.display(),
                key.display()
            )
        })
}

/// The configuration of the HTTPS listener: [`server_config`] plus ALPN
/// `http/1.1` (the server speaks HTTP/1.1 only; WebSocket upgrades need it).
pub fn https_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let mut cfg = server_config(cert, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let read_err = |e: rustls::pki_types::pem::Error| {
        anyhow::anyhow!(
            "reading TLS certificate {}: {}",
            path.display(),
            pem_error_text(&e)
        )
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(read_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err)?;
    if chain.is_empty() {
        bail!(
            "reading TLS certificate {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            path.display()
        );
    }
    Ok(chain)
}

/// The PEM reader's errors in words an operator can act on.
fn pem_error_text(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::Io(io) => io.to_string(),
        E::NoItemsFound => "no PEM item of the expected kind in it".into(),
        other => format!("not valid PEM ({other:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_and_garbage_are_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.pem");
        let err = format!(
            "{:#}",
            server_config(&missing, &missing).expect_err("missing")
        );
        assert!(err.contains("reading TLS certificate"), "{err}");
        assert!(err.contains("nope.pem"), "{err}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "hello, not a certificate\n").expect("write");
        let err = format!(
            "{:#}",
            server_config(&garbage, &garbage).expect_err("garbage")
        );
        assert!(err.contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn generated_cert_loads_and_a_foreign_key_is_rejected() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        let hosts = vec!["localhost".to_string()];
        let ca = crate::devcert::generate(a.path(), &hosts, false).expect("gen a");
        let cb = crate::devcert::generate(b.path(), &hosts, false).expect("gen b");
        let cfg = https_config(&ca.cert_path, &ca.key_path).expect("loads");
        assert_eq!(cfg.alpn_protocols, vec![b"http/1.1".to_vec()]);
        // A key that belongs to another certificate.
        let err = format!(
            "{:#}",
            server_config(&ca.cert_path, &cb.key_path).expect_err("mismatch")
        );
        assert!(err.contains("cannot be used together"), "{err}");
        // The key file where the certificate should be.
        let err = format!(
            "{:#}",
            server_config(&ca.key_path, &ca.key_path).expect_err("key as cert")
        );
        assert!(err.contains("no PEM certificate"), "{err}");
    }
}
