//! Write-behind of registrations and CDRs so that no SIP message waits for
//! the database. Registrations are saved in batches; state updates are
//! coalesced per account; CDR operations keep their order per call (a call
//! always goes to the same of a few writer tasks).
//!
//! With a [`Journal`] every batch of call events is first appended to it
//! (see `journal.rs`), and each event carries its journal segment to the
//! writer, which reports it written once the database has it.

use crate::backend::{Backend, RegistrationState};
use crate::core::{BindingRecord, StoreOp};
use crate::shell::journal::{Journal, Segment};
use domain::call_events::CallEvent;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

const BATCH: usize = 5_000;
/// CDR operations per backend call (one database transaction): one
/// transaction per operation capped CDR writes well below the call rate;
/// 500 keeps each transaction short enough not to hold the write lock for
/// long.
const CDR_BATCH: usize = 500;
/// One CDR writer: SQLite takes one writer at a time, and concurrent
/// `BEGIN IMMEDIATE` transactions would wait in its sleeping busy handler.
const CDR_WRITERS: usize = 1;
/// The writers wake on a tick instead of on every message: a wake-up per
/// REGISTER (a futex call across threads) costs more than the write itself.
const TICK: std::time::Duration = std::time::Duration::from_millis(50);

/// A call event on its way to the database, with the journal segment
/// that holds it and when it was queued.
type Queued = (CallEvent, Option<Arc<Segment>>, Instant);

pub(crate) struct Writers {
    store: mpsc::UnboundedSender<(StoreOp, Instant)>,
    cdr: Vec<mpsc::UnboundedSender<Queued>>,
    journal: Option<Arc<Journal>>,
    /// Operations queued and not yet written (for a clean shutdown).
    pending: Arc<AtomicUsize>,
    /// How long the oldest operation of the last written batch waited
    /// between being queued and being in the database, in microseconds.
    lag: Arc<WriteLag>,
}

/// The write lag of each writer, read by the metrics.
#[derive(Default)]
struct WriteLag {
    registrations_us: AtomicU64,
    cdrs_us: AtomicU64,
}

fn record_lag(slot: &AtomicU64, oldest: Option<Instant>) {
    if let Some(queued) = oldest {
        let us = u64::try_from(queued.elapsed().as_micros()).unwrap_or(u64::MAX);
        slot.store(us, Ordering::Relaxed);
    }
}

impl Writers {
    pub fn spawn(backend: Arc<dyn Backend>, journal: Option<Arc<Journal>>) -> Writers {
        let pending = Arc::new(AtomicUsize::new(0));
        let lag = Arc::new(WriteLag::default());
        let (store, rx) = mpsc::unbounded_channel();
        tokio::spawn(store_loop(
            backend.clone(),
            rx,
            pending.clone(),
            lag.clone(),
        ));
        let mut cdr = Vec::new();
        for _ in 0..CDR_WRITERS {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(cdr_loop(backend.clone(), rx, pending.clone(), lag.clone()));
            cdr.push(tx);
        }
        Writers {
            store,
            cdr,
            journal,
            pending,
            lag,
        }
    }

    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// The write lag of the last registration batch and of the last CDR
    /// batch, in microseconds.
    pub fn lag_us(&self) -> (u64, u64) {
        (
            self.lag.registrations_us.load(Ordering::Relaxed),
            self.lag.cdrs_us.load(Ordering::Relaxed),
        )
    }

    pub fn store(&self, op: StoreOp) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        if self.store.send((op, Instant::now())).is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Journals the call events the core produced in one step (one
    /// write), then queues them for the database. Call it with the core
    /// locked, before the messages of that step are sent.
    pub fn cdrs(&self, ops: Vec<CallEvent>, now_ms: u64) {
        // Debug level: off by default, so the hot path pays one level check.
        if tracing::enabled!(tracing::Level::DEBUG) {
            ops.iter().for_each(log_call_event);
        }
        let segment = self.journal.as_ref().and_then(|j| j.append(&ops, now_ms));
        for op in ops {
            self.cdr(op, segment.clone());
        }
    }

    /// A clean stop, after [`Writers::pending`] reached zero: the journal
    /// files are no longer needed.
    pub fn seal_journal(&self) {
        if let Some(j) = &self.journal {
            j.seal();
        }
    }

    /// Queues a call event; events of one call keep their order.
    fn cdr(&self, op: CallEvent, segment: Option<Arc<Segment>>) {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        op.call_id.hash(&mut h);
        let i = (h.finish() as usize) % self.cdr.len();
        self.pending.fetch_add(1, Ordering::AcqRel);
        if self.cdr[i].send((op, segment, Instant::now())).is_err() {
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
    mut rx: mpsc::UnboundedReceiver<Queued>,
    pending: Arc<AtomicUsize>,
    lag: Arc<WriteLag>,
) {
    while let Some(mut queued) = next_batch(&mut rx).await {
        // Chunks go out one after the other, so the order per call holds.
        while !queued.is_empty() {
            let rest = queued.split_off(queued.len().min(CDR_BATCH));
            let n = queued.len();
            let oldest = queued.first().map(|q| q.2);
            let (ops, segments): (Vec<CallEvent>, Vec<Option<Arc<Segment>>>) =
                queued.into_iter().map(|(op, seg, _)| (op, seg)).unzip();
            let ok = match backend.call_events(ops).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "CDR write failed");
                    false
                }
            };
            report_written(&segments, ok);
            record_lag(&lag.cdrs_us, oldest);
            pending.fetch_sub(n, Ordering::AcqRel);
            queued = rest;
        }
    }
}

/// Tells each journal segment how many of its events were written (runs
/// of the same segment are counted together: a batch spans one or two).
fn report_written(segments: &[Option<Arc<Segment>>], ok: bool) {
    let mut i = 0;
    while i < segments.len() {
        let mut j = i + 1;
        let same = |a: &Option<Arc<Segment>>, b: &Option<Arc<Segment>>| match (a, b) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        while j < segments.len() && same(&segments[i], &segments[j]) {
            j += 1;
        }
        if let Some(seg) = &segments[i] {
            seg.written(j - i, ok);
        }
        i = j;
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
    mut rx: mpsc::UnboundedReceiver<(StoreOp, Instant)>,
    pending: Arc<AtomicUsize>,
    lag: Arc<WriteLag>,
) {
    let mut saves: Vec<BindingRecord> = Vec::new();
    let mut states: HashMap<String, RegistrationState> = HashMap::new();
    while let Some(ops) = next_batch(&mut rx).await {
        let n = ops.len();
        let oldest = ops.first().map(|(_, at)| *at);
        for (op, _) in ops {
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
        if !states.is_empty() {
            let batch: Vec<RegistrationState> = states.drain().map(|(_, s)| s).collect();
            if let Err(e) = backend.registration_states(batch).await {
                tracing::warn!(error = %e, "registration state update failed");
            }
        }
        record_lag(&lag.registrations_us, oldest);
        pending.fetch_sub(n, Ordering::AcqRel);
    }
}

/// One log line per call event, with the fields a log search filters on:
/// `call_id` always, the parties and their agent ids when the call starts.
fn log_call_event(ev: &CallEvent) {
    use domain::call_events::CallEventKind as K;
    let call_id = ev.call_id.as_str();
    match &ev.kind {
        K::Started {
            caller,
            callee,
            transport,
            ..
        } => tracing::debug!(
            call_id,
            caller = %caller.number,
            caller_agent = caller.agent_id,
            callee = %callee.number,
            callee_agent = callee.agent_id,
            %transport,
            "call started"
        ),
        K::LegAdded { leg, party, .. } => tracing::debug!(
            call_id,
            leg,
            callee = %party.number,
            callee_agent = party.agent_id,
            "call leg added"
        ),
        K::Ringing { leg } => tracing::debug!(call_id, leg, "call ringing"),
        K::Answered { leg } => tracing::debug!(call_id, leg, "call answered"),
        K::LegEnded {
            leg,
            cause,
            sip_code,
        } => tracing::debug!(
            call_id,
            leg,
            cause = cause.as_str(),
            sip_code,
            "call leg ended"
        ),
        K::Ended { cause } => tracing::debug!(call_id, cause = cause.as_str(), "call ended"),
        K::Origin { trunk, did } => {
            tracing::debug!(
                call_id,
                trunk = trunk.as_deref(),
                did = did.as_deref(),
                "call origin"
            )
        }
        K::Quality {
            leg,
            direction,
            mos,
            ..
        } => tracing::debug!(
            call_id,
            leg,
            direction = direction.as_str(),
            mos,
            "call quality"
        ),
        K::Recording { path, .. } => tracing::debug!(call_id, %path, "call recording"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The call events of call `i`, which starts at `t0 + i` ms and is
    /// answered after 1 s and ends after 3 s (odd calls) or is not answered.
    fn ops(i: u64, t0: u64, agent: Option<i64>) -> Vec<CallEvent> {
        use domain::call_events::{CallEventKind as K, HangupCause, Party};
        let call_id = format!("call-{i}");
        let ev = |at_ms: u64, kind: K| CallEvent {
            call_id: call_id.clone(),
            at_ms,
            kind,
        };
        let party = |number: &str, agent_id| Party {
            number: number.into(),
            agent_id,
        };
        let mut v = vec![
            ev(
                t0 + i,
                K::Started {
                    direction: domain::Direction::Internal,
                    caller: party("1000", agent),
                    callee: party("1001", None),
                    transport: "udp".into(),
                },
            ),
            ev(
                t0 + i,
                K::LegAdded {
                    leg: 1,
                    party: party("1001", None),
                    transport: "udp".into(),
                },
            ),
            ev(t0 + i + 10, K::Ringing { leg: 1 }),
        ];
        let answered = i % 2 == 1;
        if answered {
            v.push(ev(t0 + i + 1_000, K::Answered { leg: 1 }));
        }
        let cause = if answered {
            HangupCause::CallerBye
        } else {
            HangupCause::NoAnswer
        };
        v.push(ev(t0 + i + 3_000, K::Ended { cause }));
        v
    }

    async fn wait_written(w: &Writers) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while w.pending() > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "CDR writes still pending: {}",
                w.pending()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The default `call_events` (MemoryBackend) records every operation in
    /// the order queued.
    #[tokio::test]
    async fn cdr_writer_default_batch_keeps_order() {
        let backend = Arc::new(crate::MemoryBackend::default());
        let w = Writers::spawn(backend.clone(), None);
        let queued: Vec<CallEvent> = (0..700).flat_map(|i| ops(i, 0, None)).collect();
        for op in &queued {
            w.cdr(op.clone(), None);
        }
        wait_written(&w).await;
        assert_eq!(*backend.cdrs.lock(), queued);
    }
}
