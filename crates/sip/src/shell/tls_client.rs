//! The TLS client side: the connector used to reach a phone's TLS contact
//! when its own connection is gone (a binding restored after a restart,
//! see `dial.rs`), and how the phone's certificate is checked
//! ([`crate::TlsDialVerify`]; the reasons for the default are in the
//! crate README, "TLS"); and the connector for TLS trunks, which also
//! checks the carrier's name under `ca`.

use crate::TlsDialVerify;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsConnector;

/// The two TLS connectors of the shell.
pub(crate) struct Dialers {
    /// To phones ([`connector`]).
    pub(crate) phones: TlsConnector,
    /// To carriers ([`trunk_connector`]).
    pub(crate) trunks: TlsConnector,
}

/// Builds the connector: the phone's certificate is checked as `verify`
/// says; `identity` (our TLS listener's certificate and key, when there is
/// one) is offered when a phone asks for a client certificate, so a phone
/// that checks who connects to it can recognise its PBX.
pub(crate) fn connector(
    verify: &TlsDialVerify,
    identity: Option<(&Path, &Path)>,
) -> Result<TlsConnector, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match verify {
        TlsDialVerify::None => None,
        TlsDialVerify::Ca(file) => Some(Arc::new(load_roots(file)?)),
    };
    let verifier = PhoneCertVerifier {
        algs: provider.signature_verification_algorithms,
        roots,
    };
    build(provider, Arc::new(verifier), identity)
}

/// A connector checking the far end with `verifier`, presenting
/// `identity` (our certificate and key files) when there is one.
fn build(
    provider: Arc<rustls::crypto::CryptoProvider>,
    verifier: Arc<dyn ServerCertVerifier>,
    identity: Option<(&Path, &Path)>,
) -> Result<TlsConnector, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let cfg = match identity {
        Some((cert, key)) => {
            let (certs, key) = super::tls::load_identity(cert, key)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| e.to_string())?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(TlsConnector::from(Arc::new(cfg)))
}

/// Builds the connector for trunks (carriers): with `ca`, the carrier's
/// chain must lead to a certificate in the file and the certificate must
/// name the trunk's host (the name we connect for, also sent as SNI); with
/// `none`, any certificate is accepted, as for phones. `identity` as in
/// [`connector`].
pub(crate) fn trunk_connector(
    verify: &TlsDialVerify,
    identity: Option<(&Path, &Path)>,
) -> Result<TlsConnector, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        TlsDialVerify::None => Arc::new(PhoneCertVerifier {
            algs: provider.signature_verification_algorithms,
            roots: None,
        }),
        TlsDialVerify::Ca(file) => rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(load_roots(file)?),
            provider.clone(),
        )
        .build()
        .map_err(|e| e.to_string())?,
    };
    build(provider, verifier, identity)
}

/// The name a trunk's handshake is made for: its configured host (a DNS
/// name, sent as SNI and checked in the certificate under `ca`; an IP
/// literal is checked against the certificate's IP addresses).
pub(crate) fn trunk_server_name(host: &str) -> Option<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).ok()
}

/// The trust anchors of `file` (PEM); at least one.
fn load_roots(file: &Path) -> Result<RootCertStore, String> {
    use rustls::pki_types::pem::PemObject;
    let what = |e: &dyn std::fmt::Display| format!("{}: {e}", file.display());
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(file).map_err(|e| what(&e))? {
        roots.add(c.map_err(|e| what(&e))?).map_err(|e| what(&e))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no CA certificate", file.display()));
    }
    Ok(roots)
}

/// Checks a phone's certificate: with `roots`, its chain must lead to one
/// of them and be valid now; without, any certificate is accepted. The
/// name is never checked: a phone's certificate names the device or its
/// user, not the address it happens to have, and we connect to an IP
/// address the phone registered from. The handshake signatures are always
/// checked (the peer holds the key of the certificate it showed).
#[derive(Debug)]
struct PhoneCertVerifier {
    algs: WebPkiSupportedAlgorithms,
    roots: Option<Arc<RootCertStore>>,
}

impl ServerCertVerifier for PhoneCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algs.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// The name the handshake is made for: the phone's address (rustls sends
/// no SNI for an IP address, and the name is not checked, see above).
pub(crate) fn server_name(ip: std::net::IpAddr) -> ServerName<'static> {
    ServerName::IpAddress(ip.into())
}
