//! The event bus: registrations, call state and agent changes, fanned out
//! to the console's WebSocket and to the SIP server (which drops cached
//! credentials and registrations of changed agents).

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::broadcast;

/// One event. JSON: `{"type": "registration" | "call" | "agent" | "security" | "trunk" | "did" | "dialplan", "at": ..., ...}`
/// with camelCase fields.
#[derive(Serialize, Clone, Debug)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Event {
    Registration {
        at: DateTime<Utc>,
        username: String,
        extension: String,
        registered: bool,
        contacts: u32,
    },
    Call {
        at: DateTime<Utc>,
        call_id: String,
        /// ringing | answered | ended
        state: String,
        caller_number: String,
        callee_number: String,
        disposition: Option<String>,
    },
    Agent {
        at: DateTime<Utc>,
        id: i64,
        /// created | updated | deactivated | deleted | sip_rotated
        action: String,
        sip_username: Option<String>,
    },
    /// A protection started against password guessing: an address banned
    /// (`address_banned`) or an account guarded (`account_guarded`, only
    /// addresses it authenticated from are checked for a while).
    Security {
        at: DateTime<Utc>,
        /// address_banned | account_guarded
        kind: String,
        ip: String,
        username: Option<String>,
    },
    /// A trunk changed (`created`, `updated`, `deleted`: the SIP server
    /// re-reads the trunks) or its registration did (`registered`,
    /// `rejected`, `failed`, `unregistered`, with the far end's answer in
    /// `detail`).
    Trunk {
        at: DateTime<Utc>,
        id: i64,
        action: String,
        detail: Option<String>,
    },
    /// A DID changed (`created`, `updated`, `deleted`): the SIP server
    /// re-reads the inbound routes.
    Did {
        at: DateTime<Utc>,
        id: i64,
        action: String,
    },
    /// The dial plan was saved or reset: the SIP server re-reads it.
    Dialplan { at: DateTime<Utc> },
}

/// A broadcast channel. Slow subscribers lose the oldest events
/// (`RecvError::Lagged`) rather than slowing publishers.
#[derive(Clone, Debug)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        Self { tx }
    }

    /// Sends to every current subscriber; with none, the event is dropped.
    pub fn publish(&self, e: Event) {
        let _ = self.tx.send(e);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(1024)
    }
}
