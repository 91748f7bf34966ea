//! centralita wiring: configuration, database, services, HTTP server and
//! graceful shutdown. No business logic lives here. `main.rs` is the CLI;
//! tests start [`Server`] in-process.

pub mod allocator;
pub mod asterisk_engine;
pub mod config;
pub mod devcert;
pub mod http_serve;
pub mod logging;
pub mod media_plane;
pub mod ops;
pub mod sip_backend;
pub mod tls;
pub mod trunks;

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
pub use config::Config;
use domain::{DomainConfig, LoginLimits, PasswordCost, Services};
pub use sip_backend::DomainBackend;

/// The domain's view of the configuration.
pub fn domain_config(cfg: &Config, http_addr: SocketAddr) -> DomainConfig {
    DomainConfig {
        sip_domain: cfg.sip.domain.clone(),
        extension_start: i64::from(cfg.sip.extension_start),
        ephemeral_ttl_secs: i64::from(cfg.sip.ephemeral_ttl_secs),
        ephemeral_keep: 5,
        session_ttl_secs: i64::from(cfg.auth.session_ttl_secs),
        password_cost: if cfg.auth.insecure_fast_password_hashing {
            PasswordCost::TestOnlyCheap
        } else {
            PasswordCost::Argon2Default
        },
        // Internal: one or two at once (by CPU count), 16 waiting, 0.5 s.
        hash_limits: domain::passwords::HashLimits::default(),
        login_limits: LoginLimits {
            max_failures: cfg.auth.login_max_failures,
            window_secs: u64::from(cfg.auth.login_window_secs),
            block_secs: u64::from(cfg.auth.login_block_secs),
            max_block_secs: u64::from(cfg.auth.login_max_block_secs),
        },
        // Driving an Asterisk, softphones register to its WebSocket.
        default_ws_url: match (&cfg.asterisk.ws_url, cfg.mode.as_str()) {
            (Some(url), "asterisk") => url.clone(),
            _ => format!("ws://{http_addr}{}", cfg.sip.ws_path),
        },
        dialplan: cfg.dialplan.settings(),
    }
}

/// The HTTP side's view of the configuration.
pub fn api_config(cfg: &Config) -> api::ApiConfig {
    let sip_addr: Option<SocketAddr> = cfg.sip.listen.parse().ok();
    api::ApiConfig {
        console_dir: cfg.console.dir.clone(),
        trust_proxy: cfg.http.trust_proxy,
        cookie_secure: cfg.http.cookie_secure,
        session_ttl_secs: i64::from(cfg.auth.session_ttl_secs),
        sip_domain: cfg.sip.domain.clone(),
        // Phones must be told the host the SIP server advertises, not a
        // wildcard listen address.
        sip_host: cfg
            .sip
            .advertised_host
            .clone()
            .unwrap_or_else(|| sip_addr.map_or_else(|| "127.0.0.1".into(), |a| a.ip().to_string())),
        sip_port: sip_addr.map_or(5060, |a| a.port()),
        ws_path: cfg.sip.ws_path.clone(),
        body_limit: usize::try_from(cfg.http.body_limit_bytes).unwrap_or(65_536),
        mode: cfg.mode.clone(),
        served_over_tls: false,
        recording_dir: Some(recording_dir(cfg)),
    }
}

/// Where call recordings are written and served from: `media.recording_dir`,
/// default `<data_dir>/recordings`.
pub fn recording_dir(cfg: &Config) -> std::path::PathBuf {
    match cfg.media.recording_dir.as_deref().map(str::trim) {
        Some(dir) if !dir.is_empty() => std::path::PathBuf::from(dir),
        _ => cfg.data_dir.join("recordings"),
    }
}

/// Raises the soft open-file limit (`RLIMIT_NOFILE`) to the hard limit:
/// the usual soft limit of 1,024 is what a few hundred idle connections
/// exhausted. The SIP connection cap is derived from the result, so the
/// server stays up when the hard limit is low too. Returns the soft limit
/// now in force, when it could be read.
pub fn raise_open_file_limit() -> Option<u64> {
    let before = rlimit::Resource::NOFILE.get().ok();
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(now) => {
            tracing::info!(
                before = before.map(|(soft, _)| soft),
                now,
                "open-file limit (RLIMIT_NOFILE)"
            );
            Some(now)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit (RLIMIT_NOFILE)");
            before.map(|(soft, _)| soft)
        }
    }
}

/// The HTTP listeners' limits from the `[http]` section.
pub fn http_limits(cfg: &Config) -> http_serve::HttpLimits {
    use std::time::Duration;
    http_serve::HttpLimits {
        header_timeout: Duration::from_secs(u64::from(cfg.http.header_timeout_secs.max(1))),
        body_timeout: Duration::from_secs(u64::from(cfg.http.body_timeout_secs.max(1))),
        // Behind a reverse proxy every connection comes from the proxy's
        // address: a per-address cap would throttle all clients together
        // (the proxy is the place to limit slow clients then).
        max_connections_per_ip: if cfg.http.trust_proxy {
            usize::MAX
        } else {
            cfg.http.max_connections_per_ip as usize
        },
    }
}

/// The SIP server's settings from the `[sip]` section ([`start_sip`] hands
/// them to `sip::start` with a [`DomainBackend`]).
pub fn sip_config(cfg: &Config) -> anyhow::Result<sip::SipConfig> {
    use std::time::Duration;
    let listen: SocketAddr = cfg
        .sip
        .listen
        .parse()
        .with_context(|| format!("sip.listen {:?}", cfg.sip.listen))?;
    let tls_listen = match &cfg.sip.tls_listen {
        Some(a) => Some(
            a.parse::<SocketAddr>()
                .with_context(|| format!("sip.tls_listen {a:?}"))?,
        ),
        None => None,
    };
    if tls_listen.is_some() && (cfg.sip.tls_cert.is_none() || cfg.sip.tls_key.is_none()) {
        anyhow::bail!(
            "sip.tls_listen needs sip.tls_cert and sip.tls_key (see `centralita gen-cert`)"
        );
    }
    let tls_dial_verify = match (cfg.sip.tls_dial_verify.as_str(), &cfg.sip.tls_dial_ca) {
        ("none", None) => sip::TlsDialVerify::None,
        ("ca", Some(ca)) => sip::TlsDialVerify::Ca(std::path::PathBuf::from(ca)),
        ("ca", None) => anyhow::bail!(
            "sip.tls_dial_verify = \"ca\" needs sip.tls_dial_ca, the PEM file of the CA \
             that signed the phones' certificates"
        ),
        ("none", Some(_)) => anyhow::bail!(
            "sip.tls_dial_ca is only used with sip.tls_dial_verify = \"ca\" \
             (phones' certificates are not checked with \"none\")"
        ),
        (other, _) => anyhow::bail!("sip.tls_dial_verify {other:?} must be none or ca"),
    };
    Ok(sip::SipConfig {
        listen,
        tls_dial_verify,
        advertised_host: cfg.sip.advertised_host.clone(),
        tls_listen,
        tls_cert: cfg.sip.tls_cert.as_ref().map(std::path::PathBuf::from),
        tls_key: cfg.sip.tls_key.as_ref().map(std::path::PathBuf::from),
        realm: cfg.sip.domain.clone(),
        min_expires: cfg.sip.min_expires,
        max_expires: cfg.sip.max_expires,
        default_expires: cfg.sip.default_expires,
        max_contacts: cfg.sip.max_contacts as usize,
        ring_timeout: Duration::from_secs(u64::from(cfg.sip.ring_timeout_secs)),
        auth_fail_limit: cfg.sip.auth_fail_limit,
        auth_fail_window: Duration::from_secs(u64::from(cfg.sip.auth_fail_window_secs)),
        ban: Duration::from_secs(u64::from(cfg.sip.ban_secs)),
        max_message_bytes: cfg.sip.max_message_bytes as usize,
        max_connections_per_ip: cfg.sip.max_connections_per_ip as usize,
        max_connections: cfg.sip.max_connections as usize,
        unauthenticated_timeout: Duration::from_secs(u64::from(
            cfg.sip.unauthenticated_timeout_secs.max(1),
        )),
        idle_connection_timeout: Duration::from_secs(u64::from(
            cfg.sip.idle_connection_timeout_secs.max(1),
        )),
        sha256_user_agents: cfg.sip.sha256_user_agents.clone(),
        scanner_user_agents: cfg.sip.scanner_user_agents.clone(),
        session_expires: Duration::from_secs(u64::from(cfg.sip.session_expires_secs)),
        min_session_expires: Duration::from_secs(u64::from(cfg.sip.min_session_expires_secs)),
        max_call_duration: Duration::from_secs(u64::from(cfg.sip.max_call_duration_secs)),
        cdr_journal_dir: Some(cdr_journal_dir(cfg)),
        on_thread_idle: Some(allocator::release_thread_cache_when_idle),
        anchor: domain::media::AnchorMode::parse(&cfg.media.anchor)
            .with_context(|| format!("media.anchor {:?}", cfg.media.anchor))?,
        record_calls: cfg.media.recording,
        ..Default::default()
    })
}

/// Where the SIP server journals call events (crash recovery of CDRs).
pub fn cdr_journal_dir(cfg: &Config) -> std::path::PathBuf {
    cfg.data_dir.join("cdr-journal")
}

/// Starts the SIP server over the domain services; [`Server::serve_with_sip`]
/// puts it behind the API as the engine and shuts it down on exit.
pub async fn start_sip(config: &Config, services: &Services) -> anyhow::Result<sip::SipServer> {
    let limits = config.dialplan.policy()?.default_rights.limits;
    let backend =
        std::sync::Arc::new(DomainBackend::new(services.clone()).with_dial_limits(limits));
    let sip_cfg = sip_config(config)?;
    let anchor = sip_cfg.anchor;
    let server = sip::start(sip_cfg, backend).await.with_context(|| {
        format!(
            "starting the SIP server (sip.listen = {}, CENTRALITA_SIP_LISTEN)",
            config.sip.listen
        )
    })?;
    if anchor != domain::media::AnchorMode::Never {
        media_plane::attach(config, &server)?;
    }
    Ok(server)
}

/// Starts the relay engine (`mode = "relay"`) toward `relay.upstream`;
/// [`Server::serve_with_relay`] puts it behind the API.
pub fn start_relay(config: &Config, services: &Services) -> anyhow::Result<relay::RelayEngine> {
    let upstream = config.relay_upstream()?.context(
        "mode = \"relay\" needs relay.upstream (CENTRALITA_RELAY_UPSTREAM), e.g. udp:10.0.0.5:5060",
    )?;
    let mut cfg = relay::RelayConfig::new(upstream);
    cfg.max_message_bytes = config.sip.max_message_bytes as usize;
    cfg.tls_ca = config.relay_tls_ca();
    cfg.origin = config.relay_origin();
    cfg.advertised_host = config.relay_advertised_host();
    // The builtin server's connection caps apply to the relay's flows
    // (each holds a socket toward the PBX).
    cfg.max_flows_per_ip = config.sip.max_connections_per_ip as usize;
    if config.sip.max_connections > 0 {
        cfg.max_flows = config.sip.max_connections as usize;
    }
    relay::RelayEngine::start(cfg, services.clone())
        .context("starting the relay (relay.upstream, relay.tls_ca)")
}

/// Opens the configured database (creating the data dir for the default
/// SQLite file) and builds the services, without binding anything.
pub async fn open_services(config: &Config) -> anyhow::Result<Services> {
    let url = config.database_url();
    if url.starts_with("sqlite:") && config.database_url.is_none() {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    }
    let db = domain::Db::open(&url)
        .await
        .context("opening the database")?;
    let http = config.http_listen()?;
    Ok(Services::new(db, domain_config(config, http)))
}

/// A started server: database open, migrations applied, admin ensured,
/// HTTP listener bound (not yet serving).
pub struct Server {
    pub config: Config,
    pub services: Services,
    pub listener: tokio::net::TcpListener,
    pub local_addr: SocketAddr,
    /// The generated one-time admin password, if one was created.
    pub generated_admin_password: Option<String>,
    /// The HTTPS listener (same console, API and `/ws` as WSS), when
    /// `http.tls_listen` is configured.
    pub https: Option<HttpsListener>,
    /// The metrics-only listener (`metrics.listen`) and its bound address.
    pub metrics: Option<(tokio::net::TcpListener, SocketAddr)>,
}

/// A bound HTTPS listener with its certificate loaded.
pub struct HttpsListener {
    pub listener: tls::TlsListener,
    pub local_addr: SocketAddr,
}

impl HttpsListener {
    /// Loads the certificate and key, then binds `settings.listen`; a bad
    /// certificate is reported before anything is bound.
    pub async fn bind(settings: &config::HttpsSettings) -> anyhow::Result<Self> {
        let tls_config = tls::https_config(&settings.cert, &settings.key)
            .context("loading the HTTPS certificate (http.tls_cert, http.tls_key)")?;
        let tcp = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen for HTTPS on {} (http.tls_listen, CENTRALITA_HTTP_TLS_LISTEN)",
                    settings.listen
                )
            })?;
        let local_addr = tcp.local_addr()?;
        Ok(Self {
            listener: tls::TlsListener::new(tcp, tls_config, tls::TlsListenerLimits::default()),
            local_addr,
        })
    }
}

impl Server {
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        tls::install_crypto_provider();
        // TLS first: a wrong certificate path is the likeliest mistake and
        // should stop the start before the database is touched.
        let https = match config.https()? {
            Some(settings) => Some(HttpsListener::bind(&settings).await?),
            None => None,
        };
        let addr = config.http_listen()?;
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen for HTTP on {addr} (http.listen, CENTRALITA_HTTP_LISTEN)")
        })?;
        let local_addr = listener.local_addr()?;
        let metrics = match config.metrics_listen()? {
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                    format!(
                        "cannot listen for metrics on {addr} (metrics.listen, \
                         CENTRALITA_METRICS_LISTEN)"
                    )
                })?;
                let bound = l.local_addr()?;
                Some((l, bound))
            }
            None => None,
        };
        let db = open_services(&config).await?.db;
        let services = Services::new(db, domain_config(&config, local_addr));
        // Calls the previous run left open: their journaled events go to
        // the database first, then what is still open is closed at the
        // last moment that run was known alive (cause `server_crash`).
        let backend = DomainBackend::new(services.clone());
        sip::recover_cdr_journal(&cdr_journal_dir(&config), &backend)
            .await
            .context("recovering the CDR journal")?;
        let generated_admin_password = services
            .users
            .bootstrap_admin(config.admin_password.as_deref())
            .await?;
        Ok(Self {
            config,
            services,
            listener,
            local_addr,
            generated_admin_password,
            https,
            metrics,
        })
    }

    /// Serves HTTP until `shutdown` resolves, then drains connections and
    /// closes the database. The SIP server is not started (`sip: None`).
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.serve_with_sip(None, shutdown).await
    }

    /// Like [`serve`](Self::serve), with a running SIP server behind `/ws`
    /// and the telephony endpoints; it is shut down after HTTP.
    pub async fn serve_with_sip(
        self,
        sip: Option<sip::SipServer>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.serve_engine(sip, None, None, shutdown).await
    }

    /// Like [`serve`](Self::serve), with another engine than the builtin
    /// SIP server (`mode = "asterisk"`) behind the telephony endpoints.
    pub async fn serve_with_engine(
        self,
        engine: std::sync::Arc<dyn domain::Engine>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.serve_engine(None, Some(engine), None, shutdown).await
    }

    /// Like [`serve_with_engine`](Self::serve_with_engine) with the relay
    /// engine (`mode = "relay"`): its open calls end as `shutdown` before
    /// the WebSockets close, and what it queued for the database is written
    /// before the database closes.
    pub async fn serve_with_relay(
        self,
        relay: relay::RelayEngine,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let engine = std::sync::Arc::new(relay.clone()) as std::sync::Arc<dyn domain::Engine>;
        self.serve_engine(None, Some(engine), Some(relay), shutdown)
            .await
    }

    async fn serve_engine(
        self,
        sip: Option<sip::SipServer>,
        other: Option<std::sync::Arc<dyn domain::Engine>>,
        relay: Option<relay::RelayEngine>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let mut api_cfg = api_config(&self.config);
        if let Some(s) = &sip {
            // Phones are told the port actually bound (`sip.listen` may say 0).
            api_cfg.sip_port = s.local_addr().port();
        }
        if let Some(s) = &sip {
            // Trunks register to their carriers while the server runs.
            // A bad `[dialplan]` is a configuration error at start.
            self.config.dialplan.policy()?;
            trunks::spawn(
                self.services.clone(),
                s.clone(),
                self.services.dialplan(),
                self.config.sip.domain.clone(),
            );
        }
        // The API sees the builtin SIP server only as an engine.
        let engine = sip
            .clone()
            .map(|s| std::sync::Arc::new(s) as std::sync::Arc<dyn domain::Engine>)
            .or(other);
        let state = api::AppState::new(self.services.clone(), engine.clone(), api_cfg.clone());
        let app = api::router(state.clone());
        // After the router: it installs the metrics recorder.
        allocator::spawn_gauges();
        // One shutdown signal, two listeners.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let sip_calls = sip.clone();
        let relay_calls = relay.clone();
        tokio::spawn(async move {
            shutdown.await;
            if let Some(relay) = relay_calls {
                // Before the WebSockets close: the calls end as `shutdown`,
                // not as a lost connection.
                relay.shutdown();
            }
            if let Some(sip) = sip_calls {
                // End the calls while every connection is still open, so
                // each leg gets its BYE (or CANCEL) and each CDR is closed.
                sip.end_all_calls();
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            // An error means the sender is gone: stop as well.
            let _ = rx.wait_for(|stop| *stop).await;
        };
        // One per-address count for both listeners: the same client on
        // the HTTP and the HTTPS port is still one client.
        let limits = http_limits(&self.config);
        if let Some((listener, _)) = self.metrics {
            // Its own per-address count: a scraper is not a console client.
            let app = api::metrics_router(state.clone());
            let peers = http_serve::PeerLimiter::new(limits.max_connections_per_ip);
            tokio::spawn(http_serve::serve(
                http_serve::LimitedTcp::new(listener, peers),
                app,
                limits,
                stopped(stop_rx.clone()),
            ));
        }
        let peers = http_serve::PeerLimiter::new(limits.max_connections_per_ip);
        let plain = http_serve::serve(
            http_serve::LimitedTcp::new(self.listener, peers.clone()),
            app,
            limits,
            stopped(stop_rx.clone()),
        );
        match self.https {
            None => plain.await,
            Some(https) => {
                // The same routes with a configuration that knows the
                // transport is TLS (Secure cookie, WSS, wss:// URLs).
                let tls_cfg = api::ApiConfig {
                    served_over_tls: true,
                    ..api_cfg
                };
                let tls_app =
                    api::router(api::AppState::new(self.services.clone(), engine, tls_cfg));
                let secure = http_serve::serve(
                    https.listener.with_peer_limiter(peers),
                    tls_app,
                    limits,
                    stopped(stop_rx),
                );
                tokio::join!(plain, secure);
            }
        }
        if let Some(sip) = sip {
            sip.shutdown();
            // Registration removals and CDR updates queued by the connections
            // that just closed must reach the database before it closes.
            sip.drain(std::time::Duration::from_secs(5)).await;
        }
        if let Some(relay) = relay {
            relay.shutdown();
            // Call events of the flows that just closed.
            relay.drain(std::time::Duration::from_secs(5)).await;
        }
        self.services.db.close().await;
        Ok(())
    }
}

/// A future that resolves on Ctrl-C (SIGINT) or SIGTERM. The handlers are
/// installed when this is called, not when the future is first polled, so
/// call it before announcing readiness: a signal that arrives right after
/// start-up then shuts down cleanly instead of killing the process.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            tracing::info!("shutting down");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async move {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn start_sip_binds_the_configured_address() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vars = [
            ("CENTRALITA_SIP_LISTEN", "127.0.0.1:0".to_string()),
            ("CENTRALITA_DATA_DIR", dir.path().display().to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v));
        let cfg = Config::load(None, vars).expect("config");
        let services = open_services(&cfg).await.expect("services");
        let sip = start_sip(&cfg, &services).await.expect("sip");
        assert_eq!(sip.local_addr().ip().to_string(), "127.0.0.1");
        assert_ne!(sip.local_addr().port(), 0);
        sip.shutdown();
    }

    #[tokio::test]
    async fn serves_http_with_the_sip_server_and_shuts_both_down() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().expect("tempdir");
        let vars = [
            ("CENTRALITA_HTTP_LISTEN", "127.0.0.1:0".to_string()),
            ("CENTRALITA_SIP_LISTEN", "127.0.0.1:0".to_string()),
            ("CENTRALITA_DATA_DIR", dir.path().display().to_string()),
            ("CENTRALITA_ADMIN_PASSWORD", "admin-pass-123".to_string()),
            (
                "CENTRALITA_AUTH_INSECURE_FAST_PASSWORD_HASHING",
                "true".to_string(),
            ),
        ]
        .map(|(k, v)| (k.to_string(), v));
        let cfg = Config::load(None, vars).expect("config");
        let server = Server::start(cfg.clone()).await.expect("start");
        let addr = server.local_addr;
        let sip = start_sip(&cfg, &server.services).await.expect("sip");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve_with_sip(Some(sip), async move {
            let _ = stop_rx.await;
        }));
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut resp = String::new();
        s.read_to_string(&mut resp).await.expect("read");
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.contains("\"sip\":true"), "{resp}");
        let _ = stop_tx.send(());
        task.await.expect("join").expect("clean shutdown");
    }

    /// Both listeners serve until the one shutdown signal, then `serve`
    /// returns cleanly; the HTTPS one answers with the generated certificate.
    #[tokio::test]
    async fn serves_https_beside_http_and_shuts_both_down() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().expect("tempdir");
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let cert = devcert::generate(&dir.path().join("tls"), &names, false).expect("cert");
        let vars = [
            ("CENTRALITA_HTTP_LISTEN", "127.0.0.1:0".to_string()),
            ("CENTRALITA_HTTP_TLS_LISTEN", "127.0.0.1:0".to_string()),
            (
                "CENTRALITA_HTTP_TLS_CERT",
                cert.cert_path.display().to_string(),
            ),
            (
                "CENTRALITA_HTTP_TLS_KEY",
                cert.key_path.display().to_string(),
            ),
            ("CENTRALITA_DATA_DIR", dir.path().display().to_string()),
            ("CENTRALITA_ADMIN_PASSWORD", "admin-pass-123".to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v));
        let cfg = Config::load(None, vars).expect("config");
        let server = Server::start(cfg).await.expect("start");
        let https = server.https.as_ref().expect("https listener").local_addr;
        assert_ne!(https.port(), 0);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            let _ = stop_rx.await;
        }));

        let mut roots = rustls::RootCertStore::empty();
        for c in
            <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::pem_file_iter(
                &cert.cert_path,
            )
            .expect("read")
        {
            roots.add(c.expect("pem")).expect("root");
        }
        let client = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(https)
            .await
            .expect("connect");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let mut s = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client))
            .connect(name, tcp)
            .await
            .expect("handshake");
        s.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut resp = Vec::new();
        // Connection: close; a missing close_notify still leaves the whole answer.
        let _ = s.read_to_end(&mut resp).await;
        let resp = String::from_utf8_lossy(&resp);
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        let _ = stop_tx.send(());
        tokio::time::timeout(std::time::Duration::from_secs(10), task)
            .await
            .expect("stops in time")
            .expect("join")
            .expect("clean shutdown");
    }

    /// The fields of a `{:#?}` rendering of a struct: name -> rendered value.
    fn fields(debug: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for line in debug.lines().skip(1) {
            let field = line
                .strip_prefix("    ")
                .filter(|l| !l.starts_with(' '))
                .and_then(|l| l.split_once(": "));
            match (field, out.last_mut()) {
                (Some((name, value)), _) => out.push((name.to_string(), value.to_string())),
                (None, Some((_, value))) => value.push_str(line.trim()),
                (None, None) => {}
            }
        }
        out
    }

    /// The SIP server owns its defaults: the default `[sip]` section maps
    /// back to exactly `sip::SipConfig::default()`.
    #[test]
    fn default_sip_section_is_the_sip_server_default() {
        let mut mapped = sip_config(&Config::default()).expect("defaults map");
        // Not a [sip] key: the binary always journals CDRs in its data dir.
        assert_eq!(
            mapped.cdr_journal_dir.take(),
            Some(Config::default().data_dir.join("cdr-journal"))
        );
        // Nor is the allocator hook the binary always installs.
        assert!(mapped.on_thread_idle.take().is_some());
        // Nor anchoring, a [media] key whose default is the binary's own
        // (`MediaConfig::default`: the library alone has no media plane).
        assert_eq!(mapped.anchor, domain::media::AnchorMode::Always);
        mapped.anchor = sip::SipConfig::default().anchor;
        assert_eq!(
            format!("{mapped:#?}"),
            format!("{:#?}", sip::SipConfig::default())
        );
        let d = domain_config(&Config::default(), "127.0.0.1:8080".parse().expect("addr"));
        let owner = domain::DomainConfig::default();
        assert_eq!(
            (
                d.sip_domain,
                d.extension_start,
                d.ephemeral_ttl_secs,
                d.session_ttl_secs
            ),
            (
                owner.sip_domain,
                owner.extension_start,
                owner.ephemeral_ttl_secs,
                owner.session_ttl_secs
            )
        );
        assert_eq!(d.default_ws_url, owner.default_ws_url);
    }

    /// Every field of `sip::SipConfig` is either a `[sip]` key (and setting
    /// that key changes it) or knowingly internal. A new SIP server setting
    /// fails here until it is given a key (and a line in the sample config)
    /// or is listed as internal.
    #[test]
    fn every_sip_server_setting_has_a_key() {
        // cdr_journal_dir follows data_dir (always on in the binary);
        // on_thread_idle is the binary's allocator hook.
        const INTERNAL: &[&str] = &[
            "nonce_lifetime",
            "max_headers",
            "cdr_journal_dir",
            "on_thread_idle",
        ];
        // (CENTRALITA_ variable, a non-default value, the sip::SipConfig field).
        const KEYS: &[(&str, &str, &str)] = &[
            ("CENTRALITA_SIP_LISTEN", "127.0.0.1:5999", "listen"),
            (
                "CENTRALITA_SIP_ADVERTISED_HOST",
                "pbx.test",
                "advertised_host",
            ),
            ("CENTRALITA_SIP_DOMAIN", "pbx.test", "realm"),
            ("CENTRALITA_SIP_MIN_EXPIRES", "61", "min_expires"),
            ("CENTRALITA_SIP_MAX_EXPIRES", "3599", "max_expires"),
            ("CENTRALITA_SIP_DEFAULT_EXPIRES", "601", "default_expires"),
            ("CENTRALITA_SIP_MAX_CONTACTS", "2", "max_contacts"),
            ("CENTRALITA_SIP_RING_TIMEOUT_SECS", "12", "ring_timeout"),
            ("CENTRALITA_SIP_AUTH_FAIL_LIMIT", "3", "auth_fail_limit"),
            (
                "CENTRALITA_SIP_AUTH_FAIL_WINDOW_SECS",
                "7",
                "auth_fail_window",
            ),
            ("CENTRALITA_SIP_BAN_SECS", "9", "ban"),
            (
                "CENTRALITA_SIP_MAX_MESSAGE_BYTES",
                "4096",
                "max_message_bytes",
            ),
            (
                "CENTRALITA_SIP_MAX_CONNECTIONS_PER_IP",
                "3",
                "max_connections_per_ip",
            ),
            ("CENTRALITA_SIP_TLS_LISTEN", "127.0.0.1:5997", "tls_listen"),
            ("CENTRALITA_SIP_TLS_CERT", "/other-cert.pem", "tls_cert"),
            ("CENTRALITA_SIP_TLS_KEY", "/other-key.pem", "tls_key"),
            (
                "CENTRALITA_SIP_SHA256_USER_AGENTS",
                "Zoiper,Linphone",
                "sha256_user_agents",
            ),
            (
                "CENTRALITA_SIP_SCANNER_USER_AGENTS",
                "evil-scanner",
                "scanner_user_agents",
            ),
            (
                "CENTRALITA_SIP_SESSION_EXPIRES_SECS",
                "0",
                "session_expires",
            ),
            (
                "CENTRALITA_SIP_MIN_SESSION_EXPIRES_SECS",
                "120",
                "min_session_expires",
            ),
            (
                "CENTRALITA_SIP_MAX_CALL_DURATION_SECS",
                "60",
                "max_call_duration",
            ),
            ("CENTRALITA_SIP_MAX_CONNECTIONS", "100", "max_connections"),
            (
                "CENTRALITA_SIP_UNAUTHENTICATED_TIMEOUT_SECS",
                "5",
                "unauthenticated_timeout",
            ),
            (
                "CENTRALITA_SIP_IDLE_CONNECTION_TIMEOUT_SECS",
                "9000",
                "idle_connection_timeout",
            ),
            // [media] decides whether calls are anchored.
            ("CENTRALITA_MEDIA_ANCHOR", "when_needed", "anchor"),
            ("CENTRALITA_MEDIA_RECORDING", "true", "record_calls"),
        ];
        // TLS keys go together; the base has all three so each can change alone.
        let base = [
            ("CENTRALITA_SIP_TLS_LISTEN", "127.0.0.1:5061"),
            ("CENTRALITA_SIP_TLS_CERT", "/cert.pem"),
            ("CENTRALITA_SIP_TLS_KEY", "/key.pem"),
        ];
        // Fields set by several keys together: (the keys and values, the field).
        const KEY_SETS: &[(&[(&str, &str)], &str)] = &[(
            &[
                ("CENTRALITA_SIP_TLS_DIAL_VERIFY", "ca"),
                ("CENTRALITA_SIP_TLS_DIAL_CA", "/phones-ca.pem"),
            ],
            "tls_dial_verify",
        )];
        let load = |extra: &[(&str, &str)]| {
            let vars = base
                .iter()
                .copied()
                .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
                .chain(extra.iter().copied())
                .map(|(k, v)| (k.to_string(), v.to_string()));
            let cfg = Config::load(None, vars).expect("config");
            fields(&format!("{:#?}", sip_config(&cfg).expect("sip config")))
        };
        let before = load(&[]);
        for (name, _) in &before {
            assert!(
                INTERNAL.contains(&name.as_str())
                    || KEYS.iter().any(|k| k.2 == name)
                    || KEY_SETS.iter().any(|k| k.1 == name),
                "sip::SipConfig.{name} has no [sip] key: add one (config.rs, the sample \
                 config) or list it as internal here"
            );
        }
        let singles = KEYS
            .iter()
            .map(|(var, value, field)| (vec![(*var, *value)], *field));
        let sets = KEY_SETS.iter().map(|(vars, field)| (vars.to_vec(), *field));
        for (vars, field) in singles.chain(sets) {
            let after = load(&vars);
            let changed: Vec<&str> = after
                .iter()
                .zip(&before)
                .filter(|(a, b)| a != b)
                .map(|(a, _)| a.0.as_str())
                .collect();
            assert_eq!(changed, [field], "{vars:?}");
        }
    }

    #[test]
    fn tls_dial_verify_takes_a_ca_file_only_with_ca() {
        let load = |vars: &[(&str, &str)]| {
            Config::load(
                None,
                vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            )
        };
        let verify = |vars: &[(&str, &str)]| {
            sip_config(&load(vars).expect("config")).map(|s| s.tls_dial_verify)
        };
        assert_eq!(verify(&[]).expect("default"), sip::TlsDialVerify::None);
        assert_eq!(
            verify(&[
                ("CENTRALITA_SIP_TLS_DIAL_VERIFY", "ca"),
                ("CENTRALITA_SIP_TLS_DIAL_CA", "/phones-ca.pem"),
            ])
            .expect("ca"),
            sip::TlsDialVerify::Ca("/phones-ca.pem".into())
        );
        let err = verify(&[("CENTRALITA_SIP_TLS_DIAL_VERIFY", "ca")]).expect_err("no CA file");
        assert!(format!("{err:#}").contains("sip.tls_dial_ca"), "{err:#}");
        let err = verify(&[("CENTRALITA_SIP_TLS_DIAL_CA", "/ca.pem")]).expect_err("CA unused");
        assert!(format!("{err:#}").contains("tls_dial_verify"), "{err:#}");
        let err = load(&[("CENTRALITA_SIP_TLS_DIAL_VERIFY", "strict")]).expect_err("unknown");
        assert!(
            format!("{err:#}").contains("CENTRALITA_SIP_TLS_DIAL_VERIFY"),
            "{err:#}"
        );
    }

    #[test]
    fn sip_section_maps_to_the_sip_server_config() {
        let vars = [
            ("CENTRALITA_SIP_LISTEN", "127.0.0.1:5070"),
            ("CENTRALITA_SIP_DOMAIN", "pbx.test"),
            ("CENTRALITA_SIP_RING_TIMEOUT_SECS", "12"),
            ("CENTRALITA_SIP_MAX_CONTACTS", "2"),
            ("CENTRALITA_SIP_ADVERTISED_HOST", "pbx.example.test"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let cfg = Config::load(None, vars).expect("config");
        let s = sip_config(&cfg).expect("sip config");
        assert_eq!(
            s.listen,
            "127.0.0.1:5070".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(s.realm, "pbx.test");
        assert_eq!(s.ring_timeout, std::time::Duration::from_secs(12));
        assert_eq!(s.max_contacts, 2);
        assert_eq!(s.advertised_host.as_deref(), Some("pbx.example.test"));
        let unset = sip_config(&Config::default()).expect("defaults");
        assert_eq!(unset.advertised_host, None);
        let d = domain_config(&cfg, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(d.sip_domain, "pbx.test");
        assert_eq!(d.default_ws_url, "ws://127.0.0.1:8080/ws");
        let a = api_config(&cfg);
        assert_eq!(
            (a.sip_host.as_str(), a.sip_port),
            ("pbx.example.test", 5070)
        );
        let a = api_config(&Config::default());
        assert_eq!((a.sip_host.as_str(), a.sip_port), ("127.0.0.1", 5060));
    }
}
