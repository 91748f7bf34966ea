//! The factory every WebRTC leg is cloned from, built once at startup.

use std::net::IpAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use str0m::RtcConfig;

use super::WebRtcError;

/// What the operator configures for the WebRTC legs (`[media]` section).
#[derive(Debug, Clone)]
pub struct WebRtcSettings {
    /// Addresses announced as host candidates, in preference order: the
    /// advertised (public, NAT) address first, then the local bind address if
    /// it differs. Never unspecified (0.0.0.0 / ::) nor multicast: a browser
    /// cannot reach those.
    pub addresses: Vec<IpAddr>,
    /// How often str0m reports packets, loss, jitter and RTT per direction.
    pub stats_interval: Duration,
}

impl Default for WebRtcSettings {
    fn default() -> Self {
        WebRtcSettings {
            addresses: vec![IpAddr::from([127, 0, 0, 1])],
            stats_interval: Duration::from_secs(5),
        }
    }
}

/// One str0m configuration with one DTLS certificate, cloned per leg.
///
/// Generating a certificate costs a key generation per call and would give
/// every call another fingerprint; one certificate per process is what
/// str0m's `RtcConfig: Clone` is meant for.
#[derive(Clone)]
pub struct WebRtcConfig {
    pub(super) rtc: RtcConfig,
    pub(super) addresses: Arc<[IpAddr]>,
    fingerprint: String,
}

impl std::fmt::Debug for WebRtcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcConfig")
            .field("addresses", &self.addresses)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl WebRtcConfig {
    pub fn new(settings: &WebRtcSettings) -> Result<Self, WebRtcError> {
        if settings.addresses.is_empty() {
            return Err(WebRtcError::Config(
                "at least one candidate address is needed".into(),
            ));
        }
        for ip in &settings.addresses {
            if ip.is_unspecified() || ip.is_multicast() {
                return Err(WebRtcError::Config(format!(
                    "{ip} cannot be a candidate address: set the advertised address"
                )));
            }
        }
        // The provider is set per instance rather than installed process-wide:
        // `install_process_default` panics when called twice (tests, reloads).
        let built = catch_unwind(AssertUnwindSafe(|| {
            let provider = str0m::crypto::from_feature_flags();
            let cert = provider.dtls_provider.generate_certificate();
            (Arc::new(provider), cert)
        }));
        let (provider, cert) = match built {
            Ok((provider, Some(cert))) => (provider, cert),
            Ok((_, None)) => {
                return Err(WebRtcError::Config(
                    "the crypto provider could not generate a DTLS certificate".into(),
                ))
            }
            Err(_) => {
                return Err(WebRtcError::Config(
                    "the crypto provider panicked while generating the DTLS certificate".into(),
                ))
            }
        };
        let rtc = RtcConfig::new()
            .set_crypto_provider(provider)
            .set_dtls_cert(cert)
            .set_ice_lite(true)
            // Passthrough: decrypted RTP packets out, our RTP packets in; no
            // depacketizing, no reorder buffer, no added latency.
            .set_rtp_mode(true)
            .set_stats_interval(Some(settings.stats_interval))
            // Header extensions: audio level and MID (BUNDLE) only. No
            // transport-wide congestion control: it is for adapting video
            // bitrates, G.711 cannot adapt and opus adapts from RTCP, while
            // its sequence numbers and feedback every 50 ms cost a fifth of
            // the media thread per call (bench/media/REPORT.md).
            .set_extension_map({
                let mut exts = str0m::rtp::ExtensionMap::empty();
                exts.set(1, str0m::rtp::Extension::AudioLevel);
                exts.set(4, str0m::rtp::Extension::RtpMid);
                exts
            });
        let fingerprint = Self::probe_fingerprint(&rtc)?;
        Ok(WebRtcConfig {
            rtc,
            addresses: settings.addresses.clone().into(),
            fingerprint,
        })
    }

    /// The `a=fingerprint` every leg announces (the same for all legs).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The candidate addresses, preferred first.
    pub fn addresses(&self) -> &[IpAddr] {
        &self.addresses
    }

    fn probe_fingerprint(rtc: &RtcConfig) -> Result<String, WebRtcError> {
        let rtc = rtc.clone();
        catch_unwind(AssertUnwindSafe(move || {
            let mut probe = rtc.build(std::time::Instant::now());
            probe.direct_api().local_dtls_fingerprint().to_string()
        }))
        .map_err(|_| WebRtcError::Config("str0m panicked while building an instance".into()))
    }
}
