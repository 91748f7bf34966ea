//! centralita SIP: registrar, digest authentication and B2BUA.
//!
//! `core` is sans-IO (no sockets, no clock); `shell` runs it on tokio.
//! The HTTP layer reaches SIP only through the [`domain::Engine`] interface
//! that [`SipServer`] implements (`engine.rs`): live status, bans, and the
//! RFC 7118 SIP-over-WebSocket flows it hands over from the HTTP port.
//! rsipstack is used inside `core::msg` only; none of its types are public.

pub mod backend;
pub mod core;
mod engine;
mod shell;

pub use backend::{AccountChange, Backend, BackendError, MemoryBackend, RegistrationState};
pub use core::outbound::{DialRights, OutboundPolicy, OutboundTrunk, OutboundTrunkError};
pub use core::outbound_reg::{
    TrunkConfigError, TrunkEvent, TrunkEventKind, TrunkRegState, TrunkRegistration, TrunkStatus,
};
pub use core::{Account, BindingRecord, Lookup, SecurityNotice, Transport};
pub use shell::journal::{recover as recover_cdr_journal, Recovered};
pub use shell::trunks::InboundTrunkSpec;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};

/// Settings of the SIP server. Its `Default` is the one place the SIP
/// protocol defaults are written: the binary's `[sip]` section, the sample
/// configuration and `centralita serve --help` are derived from it (and a
/// test in `centralita` checks that they agree).
#[derive(Debug, Clone)]
pub struct SipConfig {
    /// UDP and TCP listen address (port 0 picks a free port for both).
    pub listen: SocketAddr,
    /// Host we advertise in Via/Contact when `listen` is 0.0.0.0 / [::].
    pub advertised_host: Option<String>,
    /// Digest realm; must be the realm the HA1s were computed with.
    pub realm: String,
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    /// Bindings per account; a new one beyond this replaces the one expiring first.
    pub max_contacts: usize,
    pub ring_timeout: Duration,
    /// Failed authentications from one IP within `auth_fail_window` before a ban.
    pub auth_fail_limit: u32,
    pub auth_fail_window: Duration,
    pub ban: Duration,
    pub nonce_lifetime: Duration,
    pub max_message_bytes: usize,
    pub max_headers: usize,
    pub max_connections_per_ip: usize,
    /// Stream connections (TCP, TLS, WebSocket) open at once; 0 derives the
    /// cap from the process's open-file limit, keeping a quarter of it (at
    /// least 256 descriptors) for HTTP, the database and files. At the cap
    /// a new connection closes the oldest one that never authenticated.
    pub max_connections: usize,
    /// A stream connection that has not authenticated a request this long
    /// after opening is closed (Asterisk's `tcpauthtimeout` is 30 s too).
    pub unauthenticated_timeout: Duration,
    /// An authenticated stream connection with no inbound traffic (SIP or
    /// CRLF keep-alives) for this long is closed. A registered phone sends
    /// a REGISTER at least every `max_expires`, so this should exceed it;
    /// the default is twice the default `max_expires`.
    pub idle_connection_timeout: Duration,
    /// SIP over TLS listener; needs `tls_cert` and `tls_key` (PEM files).
    /// Development certificate: `openssl req -x509 -newkey rsa:2048 -nodes
    /// -keyout key.pem -out cert.pem -days 365 -subj /CN=localhost
    /// -addext subjectAltName=IP:127.0.0.1,DNS:localhost -addext basicConstraints=critical,CA:FALSE`
    pub tls_listen: Option<SocketAddr>,
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    /// How the certificate of a phone is checked when the server opens a
    /// TLS connection to it (a TLS binding restored after a restart whose
    /// connection is gone), and that of a TLS trunk's carrier (with `Ca`,
    /// also its name). See README, "TLS", for why the default is
    /// [`TlsDialVerify::None`], and "TLS trunks".
    pub tls_dial_verify: TlsDialVerify,
    /// User-Agent prefixes (case-insensitive) also offered a SHA-256 digest
    /// challenge; everyone else gets MD5 only (see README, "Challenges").
    pub sha256_user_agents: Vec<String>,
    /// Requests whose User-Agent contains one of these (case-insensitive)
    /// are dropped unanswered and counted: SIP scanners (SIPVicious,
    /// sipcli, ...) by default; empty turns the filter off.
    pub scanner_user_agents: Vec<String>,
    /// RFC 4028 session interval offered to both legs of a call; zero
    /// turns session timers off.
    pub session_expires: Duration,
    /// Smallest session interval accepted (Min-SE; at least 90 s).
    pub min_session_expires: Duration,
    /// Calls are ended after this long, a last resort when a phone vanished
    /// without session timers; zero means no limit.
    pub max_call_duration: Duration,
    /// Directory of the CDR journal (see `shell/journal.rs`): call events
    /// are appended there before the messages they cause are sent, so that
    /// a crash loses no call a phone saw answered, and a heartbeat there
    /// dates the crash. None: no journal (CDRs are only written behind, and
    /// calls left open by a crash are closed at the next start's time).
    pub cdr_journal_dir: Option<std::path::PathBuf>,
    /// Called on the SIP UDP thread whenever it runs out of work (its
    /// runtime parks). The binary hands its allocator's per-thread cache
    /// back here (`centralita/src/allocator.rs`); it must be cheap.
    pub on_thread_idle: Option<fn()>,
    /// Which calls' media goes through the media plane given to
    /// [`SipServer::set_media_plane`] (without one, anchored calls get 488).
    pub anchor: core::media::AnchorMode,
    /// Record anchored calls unless the agents' overrides say otherwise
    /// (`domain::recording::should_record`; `media.recording`).
    pub record_calls: bool,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5060)),
            advertised_host: None,
            // The domain owns the SIP domain: its HA1s are computed with it.
            realm: domain::DomainConfig::default().sip_domain,
            min_expires: 60,
            max_expires: 3600,
            default_expires: 600,
            max_contacts: 5,
            ring_timeout: Duration::from_secs(30),
            auth_fail_limit: 10,
            auth_fail_window: Duration::from_secs(60),
            ban: Duration::from_secs(300),
            nonce_lifetime: Duration::from_secs(60),
            max_message_bytes: 65_535,
            max_headers: 100,
            max_connections_per_ip: 64,
            max_connections: 0,
            unauthenticated_timeout: Duration::from_secs(30),
            idle_connection_timeout: Duration::from_secs(7200),
            sha256_user_agents: Vec::new(),
            scanner_user_agents: core::security::SCANNER_USER_AGENTS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            session_expires: Duration::from_secs(1800),
            min_session_expires: Duration::from_secs(90),
            max_call_duration: Duration::from_secs(4 * 3600),
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
            tls_dial_verify: TlsDialVerify::None,
            cdr_journal_dir: None,
            on_thread_idle: None,
            anchor: core::media::AnchorMode::Never,
            record_calls: false,
        }
    }
}

/// Checking a phone's or a TLS trunk's carrier's certificate when the
/// server connects to it over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsDialVerify {
    /// Any certificate: phones rarely have one a PBX can check, and the
    /// address is one the phone registered from after authenticating.
    None,
    /// The chain must lead to a CA certificate of this PEM file. For a
    /// phone the name is not checked (its certificate names the device,
    /// not its current address); a carrier's must name the trunk's host
    /// (for carriers: the system's CAs, `/etc/ssl/certs/ca-certificates.crt`).
    Ca(std::path::PathBuf),
}

impl TlsDialVerify {
    /// Loads what the check needs (the CA file), as [`start`] does: for a
    /// configuration check before starting.
    pub fn check(&self) -> Result<(), SipError> {
        shell::tls_client::connector(self, None)
            .map(drop)
            .map_err(|e| SipError::Tls(format!("connecting to phones: {e}")))
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SipError {
    /// A listener could not be opened; `transport` is UDP, TCP or TLS.
    /// (`error` is in the message, so it is not also reported as the source.)
    #[error("cannot listen for SIP over {transport} on {addr}: {error}")]
    Bind {
        transport: &'static str,
        addr: SocketAddr,
        error: std::io::Error,
    },
    /// The UDP thread (its runtime or the thread itself) could not be started.
    #[error("cannot start the SIP UDP thread: {0}")]
    Thread(std::io::Error),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// Requested UDP socket buffer sizes.
const UDP_BUFFER_BYTES: usize = 8 << 20;

/// A source address refused after repeated failed authentications.
#[derive(Debug, Clone)]
pub struct BlockedSource {
    pub ip: IpAddr,
    pub failures: u32,
    pub blocked_until_unix: i64,
}

/// Cheap-to-clone handle on the running SIP server.
#[derive(Clone)]
pub struct SipServer {
    shared: Arc<shell::Shared>,
    local: SocketAddr,
    tls_local: Option<SocketAddr>,
}

/// Starts the SIP server: binds UDP and TCP, warms the account cache,
/// restores UDP/TCP/TLS bindings, closes CDRs left open by a crash.
pub async fn start(config: SipConfig, backend: Arc<dyn Backend>) -> Result<SipServer, SipError> {
    // Every listener is opened before anything else happens, so a busy port
    // fails the start before the database is touched or a task is spawned.
    let (std_udp, tcp) = bind_udp_and_tcp(config.listen).await?;
    let local = std_udp.local_addr().map_err(|source| SipError::Bind {
        transport: "UDP",
        addr: config.listen,
        error: source,
    })?;
    let host = match (&config.advertised_host, local.ip().is_unspecified()) {
        (Some(h), _) => h.clone(),
        (None, true) => "127.0.0.1".to_string(),
        (None, false) => local.ip().to_string(),
    };
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    let tls = match (&config.tls_listen, &config.tls_cert, &config.tls_key) {
        (Some(addr), Some(cert), Some(key)) => {
            let tls_err = |source| SipError::Bind {
                transport: "TLS",
                addr: *addr,
                error: source,
            };
            let acceptor = shell::tls::acceptor(cert, key).map_err(SipError::Tls)?;
            let l = TcpListener::bind(addr).await.map_err(tls_err)?;
            let a = l.local_addr().map_err(tls_err)?;
            Some((l, acceptor, a))
        }
        (None, _, _) => None,
        _ => {
            return Err(SipError::Tls(
                "tls_listen needs tls_cert and tls_key".into(),
            ))
        }
    };
    let tls_local = tls.as_ref().map(|(_, _, a)| *a);
    // Our certificate, when we have one, is also what a phone that asks for
    // a client certificate is shown when we connect to it.
    let identity = match (&config.tls_cert, &config.tls_key) {
        (Some(c), Some(k)) if config.tls_listen.is_some() => Some((c.as_path(), k.as_path())),
        _ => None,
    };
    let tls_dial = shell::tls_client::connector(&config.tls_dial_verify, identity)
        .map_err(|e| SipError::Tls(format!("connecting to phones: {e}")))?;
    let tls_trunk = shell::tls_client::trunk_connector(&config.tls_dial_verify, identity)
        .map_err(|e| SipError::Tls(format!("connecting to carriers: {e}")))?;
    let mut secret = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut secret[..]);
    let core_cfg = core::CoreConfig {
        realm: config.realm.clone(),
        local_host: format!("{host}:{}", local.port()),
        tls_host: tls_local.map(|a| format!("{host}:{}", a.port())),
        min_expires: config.min_expires,
        max_expires: config.max_expires,
        default_expires: config.default_expires,
        max_contacts: config.max_contacts,
        ring_timeout_ms: config.ring_timeout.as_millis() as u64,
        nonce_lifetime_ms: config.nonce_lifetime.as_millis() as u64,
        ban: core::security::BanPolicy {
            limit: config.auth_fail_limit.max(1),
            window_ms: config.auth_fail_window.as_millis() as u64,
            ban_ms: config.ban.as_millis() as u64,
        },
        account_guard: core::security::AccountPolicy::default(),
        scanner_user_agents: config.scanner_user_agents.clone(),
        limits: core::msg::Limits {
            max_bytes: config.max_message_bytes,
            max_headers: config.max_headers,
        },
        secret,
        seed: rand::random(),
        sha256_user_agents: config.sha256_user_agents.clone(),
        session_expires_secs: config.session_expires.as_secs().min(u32::MAX as u64) as u32,
        min_se_secs: config
            .min_session_expires
            .as_secs()
            .clamp(90, u32::MAX as u64) as u32,
        max_call_duration_ms: config.max_call_duration.as_millis().min(u64::MAX as u128) as u64,
        anchor: config.anchor,
        record_calls: config.record_calls,
    };
    let mut core = core::Core::new(core_cfg);
    let accounts = backend.all_accounts().await?;
    let warmed = accounts.len();
    for a in accounts {
        core.cache_account(a);
    }
    let mut restored = 0;
    for b in backend.load_bindings(shell::now_ms()).await? {
        if matches!(b.transport, Transport::Ws | Transport::Wss) {
            // A WebSocket flow does not survive a restart.
            let _ = backend
                .remove_binding(b.username.clone(), b.contact.clone())
                .await;
            continue;
        }
        core.restore_binding(b);
        restored += 1;
    }
    let journal = match &config.cdr_journal_dir {
        Some(dir) => {
            shell::journal::recover(dir, backend.as_ref()).await?;
            let j = shell::journal::Journal::open(dir, shell::now_ms()).map_err(|e| {
                BackendError(format!("opening the CDR journal in {}: {e}", dir.display()))
            })?;
            Some(Arc::new(j))
        }
        None => {
            backend.close_orphan_calls(None).await?;
            None
        }
    };
    // The UDP socket belongs to a single-threaded runtime on its own thread
    // (see shell::spawn_udp_thread), so it is registered with that reactor.
    // That runtime is built last: dropping it here, inside the caller's
    // runtime, would panic, so the one error path after it shuts it down
    // in the background instead.
    let mut udp_rt = tokio::runtime::Builder::new_current_thread();
    if let Some(idle) = config.on_thread_idle {
        udp_rt.on_thread_park(idle);
    }
    let udp_rt = udp_rt.enable_all().build().map_err(SipError::Thread)?;
    let udp = {
        let _guard = udp_rt.enter();
        UdpSocket::from_std(std_udp)
    };
    let udp = match udp {
        Ok(udp) => udp,
        Err(source) => {
            udp_rt.shutdown_background();
            return Err(SipError::Bind {
                transport: "UDP",
                addr: local,
                error: source,
            });
        }
    };
    let shared = shell::Shared::new(
        core,
        Arc::new(udp),
        backend.clone(),
        journal.clone(),
        connection_limits(&config),
        config.max_message_bytes,
        shell::tls_client::Dialers {
            phones: tls_dial,
            trunks: tls_trunk,
        },
    );
    if let Some(j) = journal {
        tokio::spawn(shell::journal::run_heartbeat(
            j,
            shared.shutdown.subscribe(),
        ));
    }
    shell::spawn_udp_thread(udp_rt, shared.clone()).map_err(SipError::Thread)?;
    tokio::spawn(shell::run_tcp(shared.clone(), tcp));
    if let Some((l, acceptor, a)) = tls {
        tokio::spawn(shell::tls::run_tls(shared.clone(), l, acceptor));
        tracing::info!(%a, "SIP over TLS listening");
    }
    if let Some(rx) = backend.account_changes() {
        tokio::spawn(shell::run_account_changes(shared.clone(), rx));
    }
    tracing::info!(%local, warmed, restored, "SIP server listening (UDP and TCP)");
    Ok(SipServer {
        shared,
        local,
        tls_local,
    })
}

/// The stream connection limits of `config`, the global cap resolved
/// against the open-file limit in force now.
fn connection_limits(config: &SipConfig) -> shell::conns::ConnLimits {
    let nofile = shell::conns::nofile_limit();
    let max_total = shell::conns::effective_cap(config.max_connections, nofile);
    if config.idle_connection_timeout <= Duration::from_secs(u64::from(config.max_expires)) {
        tracing::warn!(
            idle_connection_timeout_secs = config.idle_connection_timeout.as_secs(),
            max_expires = config.max_expires,
            "sip.idle_connection_timeout_secs does not exceed sip.max_expires: phones that \
             send no keep-alives lose their connection (and registration) between refreshes"
        );
    }
    tracing::info!(
        max_connections = max_total,
        open_file_limit = nofile,
        per_address = config.max_connections_per_ip,
        "SIP connection limits"
    );
    shell::conns::ConnLimits {
        max_per_ip: config.max_connections_per_ip,
        max_total,
        unauthenticated_timeout: config.unauthenticated_timeout,
        idle_timeout: config.idle_connection_timeout,
    }
}

/// Opens the UDP socket and the TCP listener on the same address. With
/// port 0 the kernel picks a UDP port that may already be taken for TCP by
/// someone else: then another port is tried (a bounded number of times), so
/// "port 0" always yields a port free for both transports.
async fn bind_udp_and_tcp(
    listen: SocketAddr,
) -> Result<(std::net::UdpSocket, TcpListener), SipError> {
    const PORT_0_ATTEMPTS: usize = 32;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let udp_err = |source| SipError::Bind {
            transport: "UDP",
            addr: listen,
            error: source,
        };
        let udp = std::net::UdpSocket::bind(listen).map_err(udp_err)?;
        udp.set_nonblocking(true).map_err(udp_err)?;
        let local = udp.local_addr().map_err(udp_err)?;
        match TcpListener::bind(local).await {
            Ok(tcp) => {
                // Bursts of thousands of datagrams overflow the default ~200 KiB
                // receive buffer and every drop costs a retransmission 500 ms
                // later. The kernel caps the value at net.core.rmem_max / wmem_max.
                let sock = socket2::SockRef::from(&udp);
                let _ = sock.set_recv_buffer_size(UDP_BUFFER_BYTES);
                let _ = sock.set_send_buffer_size(UDP_BUFFER_BYTES);
                return Ok((udp, tcp));
            }
            Err(e)
                if listen.port() == 0
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && attempt < PORT_0_ATTEMPTS =>
            {
                tracing::debug!(%local, "port free for UDP but not for TCP; trying another");
            }
            Err(source) => {
                return Err(SipError::Bind {
                    transport: "TCP",
                    addr: local,
                    error: source,
                })
            }
        }
    }
}

impl SipServer {
    /// Plugs in the media plane for anchored calls and feeds its events
    /// (media timeout, failures) to the calls until the stream ends.
    pub fn set_media_plane(
        &self,
        plane: Box<dyn core::media::MediaPlane>,
        mut events: tokio::sync::mpsc::Receiver<core::media::MediaEvent>,
    ) {
        self.shared.core.lock().set_media_plane(plane);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                shared.feed(|core| core.handle_media_event(shell::now_ms(), e));
            }
        });
    }

    /// Sources currently refused by the SIP edge (for admins).
    /// Lifts the ban on a source (an admin's decision) and forgets its
    /// failed attempts; false when the address was not being tracked.
    pub fn unblock(&self, ip: std::net::IpAddr) -> bool {
        self.shared.core.lock().unban(ip)
    }

    pub fn blocked_sources(&self) -> Vec<BlockedSource> {
        let now = shell::now_ms();
        self.shared
            .core
            .lock()
            .banned(now)
            .into_iter()
            .map(|b| BlockedSource {
                ip: b.ip,
                failures: b.failures,
                blocked_until_unix: (b.until_ms / 1000) as i64,
            })
            .collect()
    }

    /// The UDP/TCP address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The TLS listen address, when TLS is configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_local
    }

    /// Contacts currently registered (all transports).
    pub fn registered_contacts(&self) -> usize {
        self.shared.core.lock().registered_contacts()
    }

    /// Calls ringing or answered right now.
    pub fn active_calls(&self) -> usize {
        self.shared.core.lock().active_calls()
    }

    /// Scanner requests dropped, guarded-account refusals, guards started.
    pub fn security_stats(&self) -> core::SecurityStats {
        self.shared.core.lock().security_stats()
    }

    /// Stops listening and closes every connection.
    /// Ends every call now: BYE on both legs of answered calls, CANCEL and
    /// 503 for ringing ones, each CDR closed with cause `shutdown`. Call it
    /// before [`SipServer::shutdown`] while connections are still open.
    pub fn end_all_calls(&self) {
        self.shared.feed(|c| c.handle_shutdown(shell::now_ms()));
    }

    /// Ends one call now (BYE both ways, or CANCEL and 503 while it
    /// rings), its CDR closed with cause `forced_hangup`; false when no
    /// call recorded as `call_id` is ringing or up.
    pub fn hang_up(&self, call_id: &str) -> bool {
        let mut found = false;
        self.shared
            .feed(|c| found = c.hang_up(shell::now_ms(), call_id));
        found
    }

    /// Click-to-call: rings `agent_username`'s newest softphone
    /// registration and, when the agent answers, dials `number` as if
    /// the agent had (dial plan, toll-fraud gate, trunks; see
    /// `core/endpoint/originate.rs`). `campaign_trunks` (the campaign's
    /// trunk ids in its order) replaces the route's trunks for the
    /// customer's call. Resolves to the call's id once the agent's phone
    /// is being rung.
    pub async fn originate(
        &self,
        agent_username: &str,
        number: &str,
        campaign_trunks: Option<Vec<i64>>,
    ) -> Result<String, core::OriginateError> {
        // The account as stored now (its dial rights may have changed
        // since it was cached).
        let key = core::Lookup::Username(agent_username.to_string());
        if let Ok(found) = self.shared.backend.account(&key).await {
            self.shared
                .feed(|c| c.handle_lookup(shell::now_ms(), key, found));
        }
        let req = core::OriginateRequest {
            agent_username: agent_username.to_string(),
            number: number.to_string(),
            campaign_trunks,
        };
        let mut result = Err(core::OriginateError::NotRegistered);
        self.shared
            .feed(|c| result = c.originate(shell::now_ms(), &req));
        result
    }

    pub fn shutdown(&self) {
        let _ = self.shared.shutdown.send(true);
    }

    /// Waits (at most `limit`) until every queued registration and CDR write
    /// has reached the backend. Call after [`SipServer::shutdown`] and before
    /// closing the database.
    pub async fn drain(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.shared.writers.pending() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.shared.writers.pending() == 0 {
            // Everything is in the database: the journal is not needed.
            self.shared.writers.seal_journal();
        }
    }
}
