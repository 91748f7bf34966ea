//! How the SIP server talks to the rest of centralita: accounts, location
//! storage, CDRs and events. [`MemoryBackend`] is for tests; the binary
//! implements it over the domain services (`centralita::DomainBackend`,
//! `centralita/src/sip_backend.rs`).

use crate::core::{Account, BindingRecord, Lookup, SecurityNotice};
use domain::call_events::CallEvent;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use tokio::sync::mpsc;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
#[error("backend: {0}")]
pub struct BackendError(pub String);

/// A registration state change for the agent views and the events socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationState {
    pub username: String,
    pub extension: String,
    pub registered: bool,
    pub contacts: usize,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// Something happened to an account outside SIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountChange {
    /// Deactivated, deleted or password rotated: forget it, drop its bindings.
    Revoked { username: String },
    /// Other changes (e.g. new short-lived credentials): reload on next use.
    Updated { username: String },
}

pub trait Backend: Send + Sync + 'static {
    /// One account by username or extension; `None` if unknown or inactive.
    fn account(&self, key: &Lookup) -> BoxFuture<'_, Result<Option<Account>, BackendError>>;
    /// All active accounts (to warm the cache at start).
    fn all_accounts(&self) -> BoxFuture<'_, Result<Vec<Account>, BackendError>>;
    /// Bindings that have not expired (restored at start).
    fn load_bindings(&self, now_ms: u64)
        -> BoxFuture<'_, Result<Vec<BindingRecord>, BackendError>>;
    fn save_bindings(&self, batch: Vec<BindingRecord>) -> BoxFuture<'_, Result<(), BackendError>>;
    fn remove_binding(
        &self,
        username: String,
        contact: String,
    ) -> BoxFuture<'_, Result<(), BackendError>>;
    fn remove_all_bindings(&self, username: String) -> BoxFuture<'_, Result<(), BackendError>>;
    /// What the registrar now knows of these accounts (one entry per
    /// account; a backend over a database writes them together).
    fn registration_states(
        &self,
        states: Vec<RegistrationState>,
    ) -> BoxFuture<'_, Result<(), BackendError>>;
    /// A call event for the CDR recorder, in order per call.
    fn call_event(&self, op: CallEvent) -> BoxFuture<'_, Result<(), BackendError>>;
    /// Many call events in order (a backend over a database does them in one
    /// transaction). Every operation is attempted even if another fails; the
    /// error says how many failed. The default calls [`Backend::call_event`]
    /// for each.
    fn call_events(&self, ops: Vec<CallEvent>) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(each_call_event(self, ops))
    }
    /// A protection started (see [`SecurityNotice`]); the default only
    /// keeps the core's log line. Called on the SIP thread: must not block.
    fn security_notice(&self, _notice: SecurityNotice) {}
    /// Close calls left open by a crash, at `last_alive_ms` (the last time
    /// the previous run was known to be alive) or now when unknown.
    fn close_orphan_calls(
        &self,
        last_alive_ms: Option<u64>,
    ) -> BoxFuture<'_, Result<(), BackendError>>;
    /// A stream of account changes, if the backend has one.
    fn account_changes(&self) -> Option<mpsc::UnboundedReceiver<AccountChange>>;
}

/// [`Backend::call_event`] for each operation in order, going on after a
/// failure; the error counts the failures and keeps the first message.
pub async fn each_call_event<B: Backend + ?Sized>(
    backend: &B,
    ops: Vec<CallEvent>,
) -> Result<(), BackendError> {
    let total = ops.len();
    let mut failed = 0usize;
    let mut first = None;
    for op in ops {
        if let Err(e) = backend.call_event(op).await {
            failed += 1;
            first.get_or_insert(e);
        }
    }
    match first {
        None => Ok(()),
        Some(e) => Err(BackendError(format!(
            "{failed} of {total} CDR writes failed, first: {}",
            e.0
        ))),
    }
}

/// In-memory backend: accounts added by tests, everything else recorded.
#[derive(Default)]
pub struct MemoryBackend {
    pub accounts: Mutex<Vec<Account>>,
    pub bindings: Mutex<HashMap<(String, String), BindingRecord>>,
    pub states: Mutex<Vec<RegistrationState>>,
    pub cdrs: Mutex<Vec<CallEvent>>,
    pub lookups: Mutex<usize>,
    changes: Mutex<Option<mpsc::UnboundedSender<AccountChange>>>,
}

impl MemoryBackend {
    pub fn add(&self, a: Account) {
        self.accounts.lock().push(a);
    }
    /// Sends an account change to the running server.
    pub fn notify(&self, c: AccountChange) {
        if let Some(tx) = self.changes.lock().as_ref() {
            let _ = tx.send(c);
        }
    }
}

impl Backend for MemoryBackend {
    fn account(&self, key: &Lookup) -> BoxFuture<'_, Result<Option<Account>, BackendError>> {
        *self.lookups.lock() += 1;
        let found = self
            .accounts
            .lock()
            .iter()
            .find(|a| match key {
                Lookup::Username(u) => &a.username == u,
                Lookup::Extension(e) => &a.extension == e,
            })
            .cloned();
        Box::pin(async move { Ok(found) })
    }
    fn all_accounts(&self) -> BoxFuture<'_, Result<Vec<Account>, BackendError>> {
        let all = self.accounts.lock().clone();
        Box::pin(async move { Ok(all) })
    }
    fn load_bindings(
        &self,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<Vec<BindingRecord>, BackendError>> {
        let v = self
            .bindings
            .lock()
            .values()
            .filter(|b| b.expires_at_ms > now_ms)
            .cloned()
            .collect();
        Box::pin(async move { Ok(v) })
    }
    fn save_bindings(&self, batch: Vec<BindingRecord>) -> BoxFuture<'_, Result<(), BackendError>> {
        let mut m = self.bindings.lock();
        for b in batch {
            m.insert((b.username.clone(), b.contact.clone()), b);
        }
        Box::pin(async { Ok(()) })
    }
    fn remove_binding(
        &self,
        username: String,
        contact: String,
    ) -> BoxFuture<'_, Result<(), BackendError>> {
        self.bindings.lock().remove(&(username, contact));
        Box::pin(async { Ok(()) })
    }
    fn remove_all_bindings(&self, username: String) -> BoxFuture<'_, Result<(), BackendError>> {
        self.bindings.lock().retain(|(u, _), _| *u != username);
        Box::pin(async { Ok(()) })
    }
    fn registration_states(
        &self,
        states: Vec<RegistrationState>,
    ) -> BoxFuture<'_, Result<(), BackendError>> {
        self.states.lock().extend(states);
        Box::pin(async { Ok(()) })
    }
    fn call_event(&self, op: CallEvent) -> BoxFuture<'_, Result<(), BackendError>> {
        self.cdrs.lock().push(op);
        Box::pin(async { Ok(()) })
    }
    fn close_orphan_calls(
        &self,
        _last_alive_ms: Option<u64>,
    ) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async { Ok(()) })
    }
    fn account_changes(&self) -> Option<mpsc::UnboundedReceiver<AccountChange>> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.changes.lock() = Some(tx);
        Some(rx)
    }
}
