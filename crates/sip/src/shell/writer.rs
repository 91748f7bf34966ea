//! Write-behind of registrations and CDRs so that no SIP message waits for
//! the database. Registrations are saved in batches; state updates are
//! coalesced per account; CDR operations keep their order per call (a call
//! always goes to the same of a few writer tasks).

use crate::backend::{Backend, RegistrationState};
use crate::core::{BindingRecord, CdrOp, StoreOp};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

const BATCH: usize = 5_000;
/// One CDR writer: SQLite takes one writer at a time, and concurrent
/// `BEGIN IMMEDIATE` transactions would wait in its sleeping busy handler.
const CDR_WRITERS: usize = 1;
/// The writers wake on a tick instead of on every message: a wake-up per
/// REGISTER (a futex call across threads) costs more than the write itself.
const TICK: std::time::Duration = std::time::Duration::from_millis(50);

pub(crate) struct Writers {
    store: mpsc::UnboundedSender<StoreOp>,
    cdr: Vec<mpsc::UnboundedSender<CdrOp>>,
    /// Operations queued and not yet written (for a clean shutdown).
    pending: Arc<AtomicUsize>,
}

impl Writers {
    pub fn spawn(backend: Arc<dyn Backend>) -> Writers {
        let pending = Arc::new(AtomicUsize::new(0));
        let (store, rx) = mpsc::unbounded_channel();
        tokio::spawn(store_loop(backend.clone(), rx, pending.clone()));
        let mut cdr = Vec::new();
        for _ in 0..CDR_WRITERS {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(cdr_loop(backend.clone(), rx, pending.clone()));
            cdr.push(tx);
        }
        Writers {
            store,
            cdr,
            pending,
        }
    }

    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    pub fn store(&self, op: StoreOp) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        if self.store.send(op).is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }

    pub fn cdr(&self, op: CdrOp) {
        let id = match &op {
            CdrOp::Start { call_id, .. }
            | CdrOp::Ringing { call_id, .. }
            | CdrOp::Answer { call_id, .. }
            | CdrOp::Finish { call_id, .. } => call_id,
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut h);
        let i = (h.finish() as usize) % self.cdr.len();
        self.pending.fetch_add(1, Ordering::AcqRel);
        if self.cdr[i].send(op).is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Everything queued now, waiting at least one tick; None when closed and empty.
async fn next_batch<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> Option<Vec<T>> {
    let mut ops = Vec::new();
    loop {
        loop {
            match rx.try_recv() {
                Ok(op) => {
                    ops.push(op);
                    if ops.len() >= BATCH {
                        return Some(ops);
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    return (!ops.is_empty()).then_some(ops);
                }
            }
        }
        if !ops.is_empty() {
            return Some(ops);
        }
        tokio::time::sleep(TICK).await;
    }
}

async fn cdr_loop(
    backend: Arc<dyn Backend>,
    mut rx: mpsc::UnboundedReceiver<CdrOp>,
    pending: Arc<AtomicUsize>,
) {
    while let Some(ops) = next_batch(&mut rx).await {
        let n = ops.len();
        for op in ops {
            if let Err(e) = backend.call_event(op).await {
                tracing::warn!(error = %e, "CDR write failed");
            }
        }
        pending.fetch_sub(n, Ordering::AcqRel);
    }
}

async fn flush(backend: &Arc<dyn Backend>, saves: &mut Vec<BindingRecord>) {
    if saves.is_empty() {
        return;
    }
    let batch = std::mem::take(saves);
    if let Err(e) = backend.save_bindings(batch).await {
        tracing::warn!(error = %e, "saving registrations failed");
    }
}

async fn store_loop(
    backend: Arc<dyn Backend>,
    mut rx: mpsc::UnboundedReceiver<StoreOp>,
    pending: Arc<AtomicUsize>,
) {
    let mut saves: Vec<BindingRecord> = Vec::new();
    let mut states: HashMap<String, RegistrationState> = HashMap::new();
    while let Some(ops) = next_batch(&mut rx).await {
        let n = ops.len();
        for op in ops {
            match op {
                StoreOp::Save(r) => saves.push(r),
                StoreOp::Remove { username, contact } => {
                    flush(&backend, &mut saves).await;
                    if let Err(e) = backend.remove_binding(username, contact).await {
                        tracing::warn!(error = %e, "removing a registration failed");
                    }
                }
                StoreOp::RemoveAll { username } => {
                    flush(&backend, &mut saves).await;
                    if let Err(e) = backend.remove_all_bindings(username).await {
                        tracing::warn!(error = %e, "removing registrations failed");
                    }
                }
                StoreOp::State {
                    username,
                    extension,
                    registered,
                    contacts,
                    user_agent,
                    ip,
                } => {
                    states.insert(
                        username.clone(),
                        RegistrationState {
                            username,
                            extension,
                            registered,
                            contacts,
                            user_agent,
                            ip,
                        },
                    );
                }
            }
        }
        flush(&backend, &mut saves).await;
        for (_, s) in states.drain() {
            if let Err(e) = backend.registration_state(s).await {
                tracing::warn!(error = %e, "registration state update failed");
            }
        }
        pending.fetch_sub(n, Ordering::AcqRel);
    }
}
