//! The shared vocabulary of the SIP core: transports and sources, accounts,
//! bindings as persisted, the outputs the shell carries out, configuration.

use super::digest::Ha1;
use super::msg::Limits;
use super::security::{AccountPolicy, BanPolicy};
use domain::call_events::CallEvent;
use std::net::SocketAddr;

/// Flow id 0 is the UDP socket; every TCP/TLS/WS connection gets its own.
pub const UDP_FLOW: u64 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }
    pub fn via(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }
    pub fn parse(s: &str) -> Option<Transport> {
        Some(match s.to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            "ws" => Transport::Ws,
            "wss" => Transport::Wss,
            _ => return None,
        })
    }
    pub fn reliable(self) -> bool {
        self != Transport::Udp
    }
}

/// Where a message came from / goes to: a flow and the peer address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source {
    pub flow: u64,
    pub transport: Transport,
    pub peer: SocketAddr,
}

/// A SIP account as the core needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub username: String,
    pub extension: String,
    pub user_id: Option<i64>,
    pub display_name: String,
    pub secrets: Vec<Ha1>,
    /// The agent's recording override (`None`: the system default).
    pub record_calls: Option<bool>,
    /// What the agent may dial through trunks (`None`: the outbound
    /// policy's default, internal-only unless configured).
    pub dial: Option<super::outbound::DialRights>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lookup {
    Username(String),
    Extension(String),
}

/// A binding as persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRecord {
    pub username: String,
    pub contact: String,
    pub transport: Transport,
    pub source: SocketAddr,
    pub user_agent: Option<String>,
    pub instance_id: Option<String>,
    pub reg_id: Option<u32>,
    pub call_id: String,
    pub cseq: u32,
    pub expires_at_ms: u64,
    pub registered_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    Save(BindingRecord),
    Remove {
        username: String,
        contact: String,
    },
    RemoveAll {
        username: String,
    },
    /// Registration state of an account changed (contact count moved).
    State {
        username: String,
        extension: String,
        registered: bool,
        contacts: usize,
        user_agent: Option<String>,
        ip: Option<String>,
    },
}

// Not `Eq`: call events carry quality figures (floats).
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Transmit {
        to: Source,
        data: Vec<u8>,
    },
    Lookup(Lookup),
    Store(StoreOp),
    /// What happened to a call, for the CDR recorder and live views.
    Call(CallEvent),
    /// A request on this connection (never [`UDP_FLOW`]) carried valid
    /// credentials: the shell stops treating the connection as a stranger
    /// (unauthenticated connections are closed early and evicted first).
    FlowAuthenticated(u64),
    /// A protection started (an address banned, an account guarded): for
    /// the operator's live view and alerts. Already logged by the core.
    Security(SecurityNotice),
    /// A trunk's outbound registration changed (see `outbound_reg`).
    Trunk(super::outbound_reg::TrunkEvent),
}

/// What [`Output::Security`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityNotice {
    /// `ip` failed authentication too often and is ignored for a while.
    AddressBanned { ip: std::net::IpAddr },
    /// Guessing on `username` from many addresses: only addresses it
    /// authenticated from are checked for a while (`ip` tipped it over).
    AccountGuarded {
        username: String,
        ip: std::net::IpAddr,
    },
    /// The dial plan refused an outbound call of `username` for a reason
    /// that smells of toll fraud: a blocked destination, beyond its
    /// permission, or over its concurrent/hourly limit (`cause` says
    /// which; `number` as dialled, at most 64 characters).
    OutboundRefused {
        username: String,
        ip: std::net::IpAddr,
        number: String,
        cause: domain::call_events::HangupCause,
    },
}

#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub realm: String,
    /// host:port we put in Via and Contact (never 0.0.0.0).
    pub local_host: String,
    /// host:port of the TLS listener, for Via/Contact on TLS legs.
    pub tls_host: Option<String>,
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    pub max_contacts: usize,
    pub ring_timeout_ms: u64,
    pub nonce_lifetime_ms: u64,
    pub ban: BanPolicy,
    /// Per-account protection against guessing from many addresses.
    pub account_guard: AccountPolicy,
    /// Requests whose User-Agent contains one of these (case-insensitive)
    /// are dropped unanswered and counted.
    pub scanner_user_agents: Vec<String>,
    pub limits: Limits,
    pub secret: [u8; 32],
    pub seed: u64,
    /// User-Agent prefixes (case-insensitive) that are also offered a
    /// SHA-256 challenge (before the MD5 one). Everyone else gets MD5 only:
    /// clients differ in which of several challenges they read (JsSIP the
    /// last, sipp the first) and some reject a 401 that offers an algorithm
    /// they lack (baresip 1.x), so offering one is the only safe default.
    pub sha256_user_agents: Vec<String>,
    /// RFC 4028 session interval offered and accepted (seconds); 0 turns
    /// session timers off.
    pub session_expires_secs: u32,
    /// Smallest session interval we accept (Min-SE, at least 90 s).
    pub min_se_secs: u32,
    /// Calls longer than this are ended (last resort against a vanished
    /// phone with no session timer); 0 means no limit.
    pub max_call_duration_ms: u64,
    /// When calls' media goes through the media plane (see `media.rs`).
    pub anchor: super::media::AnchorMode,
    /// The system default for recording anchored calls.
    pub record_calls: bool,
}

/// Methods we handle, for `Allow`.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REGISTER";

/// The queue of outputs every part of the core appends to.
pub type Outbox = std::collections::VecDeque<Output>;
