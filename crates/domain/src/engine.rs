//! The engine interface: what the console and the REST API need from
//! whichever PBX is doing the calls (the builtin SIP server, and later the
//! Asterisk driver and the relay). The API holds an `Arc<dyn Engine>` and
//! never names a concrete engine; the binary wires the one the
//! configuration names.
//!
//! Reads (`status`, `blocked_sources`) answer from the engine's own
//! in-memory view, never with a round trip to another process: an engine
//! that drives a remote PBX keeps that view up to date from the PBX's
//! events. That is why the trait is synchronous and cheap to call from a
//! request handler.
//!
//! What is durable does not go through here: the registration list and the
//! call history are rows in the store, written by the engines (the builtin
//! one through its backend, the others from the PBX's events) and read by
//! the API from the domain services. The engine reports only what exists
//! while it runs: live counts, bans, and the SIP-over-WebSocket flows it
//! takes from `/ws`.
//!
//! Commands (originate, hang up) join the trait when the first engine
//! carries them out.

use std::net::{IpAddr, SocketAddr};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

/// The PBX behind the console.
pub trait Engine: Send + Sync {
    /// Short name for logs and the status endpoint: `builtin`, `asterisk`,
    /// `relay`.
    fn name(&self) -> &'static str;

    /// What is live right now.
    fn status(&self) -> EngineStatus;

    /// Sources the engine refuses after repeated failed authentications.
    fn blocked_sources(&self) -> Vec<BlockedSource>;

    /// Lifts the ban on `ip` (an admin's decision) and forgets its failed
    /// attempts; false when the engine was not tracking that address.
    fn unblock(&self, ip: IpAddr) -> bool;

    /// Takes one SIP-over-WebSocket connection (RFC 7118, subprotocol
    /// `sip`) from `peer`, before the HTTP layer completes the upgrade, so
    /// a refusal can still be answered as an HTTP error. `secure` is true
    /// when the socket arrived over TLS (WSS). Must be called within a tokio
    /// runtime: the engine may spawn the task that serves the flow.
    ///
    /// The caller then forwards every message the client sends into
    /// [`FlowHandle::inbound`] and writes every message from
    /// [`FlowHandle::outbound`] back to the client. Dropping the handle (or
    /// just its `inbound` sender) closes the flow; `outbound` ending means
    /// the engine closed it and the socket should be closed too.
    fn attach_flow(&self, peer: SocketAddr, secure: bool) -> Result<FlowHandle, FlowRefused>;

    /// The registration of trunk `trunk_id` to its carrier, as it stands
    /// now; `None` when the engine does not register that trunk.
    fn trunk_registration(&self, _trunk_id: i64) -> Option<TrunkRegistrationView> {
        None
    }

    /// Registers trunk `trunk_id` now (an admin's "force register"); false
    /// when the engine does not register that trunk.
    fn force_trunk_registration(&self, _trunk_id: i64) -> bool {
        false
    }

    /// Rings the agent, then the customer through the trunk of `plan`;
    /// resolves to the id the call's CDR will have. `None`: this engine
    /// cannot originate.
    fn originate(&self, _plan: crate::originate::OriginatePlan) -> Option<OriginateFuture> {
        None
    }

    /// The configuration the engine generates for the PBX it drives (the
    /// Asterisk engine's PJSIP files, secrets masked) and the outcome of
    /// its last reload. `None`: this engine generates none.
    fn pbx_config(&self) -> Option<PbxConfigFuture> {
        None
    }

    /// Renders that configuration again, writes it and reloads the PBX;
    /// resolves to the new state. `None`: this engine generates none.
    fn regenerate_pbx_config(&self) -> Option<PbxConfigFuture> {
        None
    }

    /// Ends the call recorded as `call_id` now (a hang-up request); false
    /// when the engine has no such call ringing or up.
    fn hang_up(&self, _call_id: &str) -> bool {
        false
    }

    /// Sends a SIP OPTIONS to `host:port` over `transport` (`udp`, `tcp`)
    /// from the engine's own address and reports the far end's final
    /// answer (a trunk's "test connection").
    fn probe(&self, _host: String, _port: u16, _transport: &'static str) -> ProbeFuture {
        Box::pin(async { Err("this engine cannot send OPTIONS".to_string()) })
    }
}

/// What [`Engine::pbx_config`] resolves to.
pub type PbxConfigFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<PbxConfigView, String>> + Send + 'static>,
>;

/// Generated PBX configuration, as an administrator may see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PbxConfigView {
    /// Each generated file, passwords and HA1s masked.
    pub files: Vec<PbxConfigFile>,
    /// The last reload the engine asked of the PBX (null: none yet).
    pub last_reload: Option<PbxReload>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PbxConfigFile {
    pub name: String,
    /// Where it is written.
    pub path: String,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PbxReload {
    pub at: chrono::DateTime<chrono::Utc>,
    /// The PBX accepted it.
    pub ok: bool,
    /// The PBX's own words (or why it could not be asked).
    pub message: String,
}

/// What [`Engine::originate`] resolves to: the call id, or why not.
pub type OriginateFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<String, OriginateFailure>> + Send + 'static>,
>;

/// Why an engine could not originate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginateFailure {
    /// The agent has no softphone registered to ring.
    #[error("the agent has no registered softphone")]
    AgentNotRegistered,
    /// The PBX refused, in its own words.
    #[error("{0}")]
    Refused(String),
}

/// What [`Engine::probe`] resolves to: the answer, or why there was none.
pub type ProbeFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<ProbeAnswer, String>> + Send + 'static>,
>;

/// The final answer to an OPTIONS probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeAnswer {
    pub status: u16,
    pub reason: String,
    /// From sending the request to the final answer.
    pub rtt_ms: u64,
}

/// A trunk's registration to its carrier, live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkRegistrationView {
    /// `registering`, `registered`, `rejected`, `failed`, `unregistered`.
    pub state: String,
    pub since: DateTime<Utc>,
    pub last_registered_at: Option<DateTime<Utc>>,
    /// When the carrier's binding expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// The next REGISTER (refresh or retry), if one is planned.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Failed attempts in a row.
    pub failures: u32,
}

/// Live figures of an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineStatus {
    /// The engine can take calls now (the builtin: listening; a driver of
    /// a remote PBX: its control session is up).
    pub connected: bool,
    /// Calls ringing or answered right now.
    pub active_calls: u64,
    /// Contacts registered right now, over every transport.
    pub registered_contacts: u64,
    /// Requests dropped unanswered because of a scanner User-Agent (since start).
    pub scanner_requests_dropped: u64,
    /// Authentication attempts refused unchecked because their account was
    /// guarded (many failures from other addresses) and the address never
    /// authenticated as it (since start).
    pub auth_guarded_refused: u64,
    /// Account guards started (since start).
    pub auth_accounts_guarded: u64,
    /// Failed authentications counted against source addresses (since start).
    pub auth_failures: u64,
    /// Source addresses banned after repeated failures (bans started since start).
    pub sources_banned: u64,
    /// REGISTER requests handled, retransmissions not counted (since start).
    pub register_requests: u64,
    /// INVITE requests handled, retransmissions not counted (since start).
    pub invite_requests: u64,
    /// Registration and CDR writes queued for the database right now.
    pub write_queue_depth: u64,
    /// How long the oldest registration write of the last batch waited
    /// for the database, in microseconds.
    pub write_lag_registrations_us: u64,
    /// The same for the last batch of call events (CDRs).
    pub write_lag_cdrs_us: u64,
}

/// A source address refused after repeated failed authentications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedSource {
    pub ip: IpAddr,
    /// Failed attempts counted against it.
    pub failures: u32,
    /// When the ban ends on its own.
    pub blocked_until: DateTime<Utc>,
}

/// One message-oriented flow between a client connection and the engine.
/// Each `Vec<u8>` is one whole SIP message (one WebSocket message).
#[derive(Debug)]
pub struct FlowHandle {
    /// Messages from the client, to the engine.
    pub inbound: mpsc::Sender<Vec<u8>>,
    /// Messages from the engine, for the client. Ends (`recv` gives `None`)
    /// when the engine closes the flow (shutdown, oversized message).
    pub outbound: mpsc::Receiver<Vec<u8>>,
}

/// Why an engine did not take a flow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlowRefused {
    /// The per-address connection limit is reached.
    #[error("too many connections from {0}")]
    TooManyConnections(IpAddr),
    /// The engine is stopping or stopped.
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// This engine takes no SIP over WebSocket here: phones register to
    /// the PBX it drives.
    #[error("SIP over WebSocket is served by the PBX itself in this mode")]
    NotServed,
}
