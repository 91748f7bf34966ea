//! centralita domain services over `store`: users and agents, console auth
//! (sessions, API tokens, login rate limiting), SIP accounts and their
//! digest credentials, registrations, calls/CDR (the recorder turns the
//! engines' call events into `calls` and `call_legs` rows), routing
//! decisions and the outbound dial plan with its toll-fraud rules (`dialplan`), who may see what (`access`), WebRTC settings, the audit log
//! and the event bus; and the
//! interface every PBX engine implements for the API (`engine`).
//!
//! Every mutating operation runs in one write transaction: a failure
//! leaves the database as it was. Services are cheap to clone.

pub mod access;
pub mod audit;
pub mod auth;
pub mod call_events;
pub mod calls;
pub mod campaign_trunks;
pub mod dialplan;
pub mod dialplan_settings;
pub mod dids;
pub mod engine;
mod error;
pub mod events;
pub mod media;
pub mod originate;
pub mod passwords;
pub mod quality;
pub mod ratelimit;
pub mod recorder;
pub mod recording;
pub mod registrations;
pub mod routing;
pub mod sip_accounts;
pub mod sip_credentials;
mod time;
pub mod trunks;
pub mod users;
pub mod validate;
pub mod webrtc;

use std::sync::Arc;

pub use access::Scope;
pub use audit::{AuditEntry, AuditService};
pub use auth::{ApiToken, AuthService, LoginOutcome};
pub use call_events::{CallEvent, CallEventKind, HangupCause, LegNo, MediaDirection, Party};
pub use calls::{Call, CallLeg, CallService, CallStats, Direction, Disposition};
pub use engine::{
    BlockedSource, Engine, EngineStatus, FlowHandle, FlowRefused, ProbeAnswer, ProbeFuture,
    TrunkRegistrationView,
};
pub use error::DomainError;
pub use events::{Event, EventBus};
pub use recorder::Recorder;
pub use registrations::{RegistrationRecord, RegistrationService};
pub use sip_accounts::RegistrationStateUpdate;
pub use sip_accounts::{DigestCredentials, Ha1, SipAccountInfo, SipAccountService, SipCredentials};
pub use store::Db;
pub use users::{NewUser, Role, User, UserService, UserUpdate};
pub use webrtc::{WebrtcService, WebrtcSettings};

/// How console passwords are hashed. Production always uses
/// `Argon2Default`; tests may pick the cheap parameters so a suite of
/// hundreds of logins stays fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PasswordCost {
    #[default]
    Argon2Default,
    /// Argon2id with 8 KiB and 1 pass: for tests only.
    TestOnlyCheap,
}

/// Limits of the login rate limiter, per IP address and per account.
#[derive(Debug, Clone)]
pub struct LoginLimits {
    /// Failures allowed within `window_secs` before a block starts.
    pub max_failures: u32,
    pub window_secs: u64,
    /// First block length; each further block doubles it up to `max_block_secs`.
    pub block_secs: u64,
    pub max_block_secs: u64,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window_secs: 900,
            block_secs: 60,
            max_block_secs: 3600,
        }
    }
}

/// What the domain needs from the configuration.
#[derive(Debug, Clone)]
pub struct DomainConfig {
    /// SIP domain, also the digest realm of every HA1.
    pub sip_domain: String,
    /// First extension handed out (default 1000).
    pub extension_start: i64,
    /// Lifetime of short-lived softphone credentials (default 12 h).
    pub ephemeral_ttl_secs: i64,
    /// How many short-lived credentials an account keeps (newest).
    pub ephemeral_keep: i64,
    /// Lifetime of a console session (default 12 h).
    pub session_ttl_secs: i64,
    pub password_cost: PasswordCost,
    /// Concurrent password hashes and how long a login waits for one.
    pub hash_limits: passwords::HashLimits,
    pub login_limits: LoginLimits,
    /// WebSocket URL agents use when none is configured in the console.
    pub default_ws_url: String,
    /// The configuration's dial plan: in force until an administrator
    /// saves another (`dialplan_settings`).
    pub dialplan: dialplan_settings::DialplanSettings,
}

impl Default for DomainConfig {
    fn default() -> Self {
        Self {
            sip_domain: "centralita.local".into(),
            extension_start: 1000,
            ephemeral_ttl_secs: 43_200,
            ephemeral_keep: 5,
            session_ttl_secs: 43_200,
            password_cost: PasswordCost::default(),
            hash_limits: passwords::HashLimits::default(),
            login_limits: LoginLimits::default(),
            default_ws_url: "ws://127.0.0.1:8080/ws".into(),
            dialplan: dialplan_settings::DialplanSettings::default(),
        }
    }
}

/// Who performs an operation, for the audit log.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub user_id: Option<i64>,
    pub login: Option<String>,
    pub ip: Option<String>,
}

impl Actor {
    /// The server itself (startup tasks, the SIP stack).
    pub fn system() -> Self {
        Self {
            user_id: None,
            login: Some("system".into()),
            ip: None,
        }
    }
}

/// Shared state of all services.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub db: Db,
    pub cfg: DomainConfig,
    pub events: EventBus,
    pub hashes: passwords::HashPool,
}

/// All domain services. Clone is cheap (an `Arc` inside each).
#[derive(Clone, Debug)]
pub struct Services {
    pub users: UserService,
    pub auth: AuthService,
    pub sip_accounts: SipAccountService,
    pub registrations: RegistrationService,
    pub calls: CallService,
    pub webrtc: WebrtcService,
    pub audit: AuditService,
    pub events: EventBus,
    pub config: Arc<DomainConfig>,
    pub db: Db,
}

impl Services {
    pub fn new(db: Db, cfg: DomainConfig) -> Self {
        let events = EventBus::default();
        let config = Arc::new(cfg.clone());
        let ctx = Arc::new(Ctx {
            db: db.clone(),
            hashes: passwords::HashPool::new(cfg.hash_limits),
            cfg,
            events: events.clone(),
        });
        Self {
            users: UserService::new(ctx.clone()),
            auth: AuthService::new(ctx.clone()),
            sip_accounts: SipAccountService::new(ctx.clone()),
            registrations: RegistrationService::new(ctx.clone()),
            calls: CallService::new(ctx.clone()),
            webrtc: WebrtcService::new(ctx.clone()),
            audit: AuditService::new(ctx),
            events,
            config,
            db,
        }
    }

    /// A random secret generated on first use and kept in `settings`
    /// (e.g. for HMAC-signed SIP nonces that stay valid across restarts).
    pub async fn server_secret(&self) -> Result<String, DomainError> {
        let mut tx = self.db.write().await?;
        let v = store::settings::get_or_insert(
            &mut tx,
            "server_secret",
            &sip_credentials::random_hex(32),
        )
        .await?;
        tx.commit().await?;
        Ok(v)
    }
}
