//! The CDR journal: call events are appended to a file before the messages
//! they cause are sent, so a call that a phone saw answered has its record
//! even if the process dies before the write-behind reaches the database.
//!
//! Why a journal and not group commit (holding each 200 OK until its
//! answer is in the database): the database write stays batched and off
//! the SIP path, the core stays as it is (no "wait for the disk" state in
//! every call), and the cost on the SIP path is one `write(2)` of a few
//! hundred bytes into the page cache per message that changes a call.
//!
//! How it holds:
//! - [`Journal::append`] runs in `Shared::feed` with the core locked, after
//!   the core produced its outputs and before any of them is transmitted:
//!   when the 200 OK leaves, its `Answered` (and the call's `Started`) are
//!   already in the kernel. A process crash (kill -9, panic, OOM kill)
//!   keeps what is in the page cache, so nothing a phone saw is lost.
//! - No `fsync` on that path: it would cost a disk flush per message (ms on
//!   real disks, far below the call rate). Instead the heartbeat task
//!   `fdatasync`s the current file once a second, off the core lock; a
//!   machine crash or power loss may lose up to that second, which is the
//!   same order as the database itself (SQLite WAL with
//!   `synchronous = NORMAL` does not sync each commit either).
//! - The file is split into segments of [`SEGMENT_BYTES`]. Each event goes
//!   to the writer with its [`Segment`]; once a segment is full (sealed)
//!   and every event in it is in the database, the file is deleted. A
//!   segment with a failed database write is kept and replayed at the
//!   next start.
//! - Every second, and at the top of each segment, an `alive` line records
//!   the time: the last moment the server was known to be running, at
//!   which the next start closes the calls left open (cause
//!   `server_crash`, downtime not billed).
//! - At start ([`recover`]) every segment is read in order and its events
//!   go through the backend (the recorder ignores what it already has: a
//!   second `Started`, anything after `Ended`, a second answer), the calls
//!   still open are closed at the last `alive` time, and the files are
//!   deleted. A line cut short by the crash is skipped.
//! - A clean stop ([`Journal::seal`], after the writers drained) deletes
//!   the files, so a normal restart replays nothing.

use crate::backend::{Backend, BackendError};
use domain::call_events::CallEvent;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// A segment is sealed (and a new one begun) past this size: at ~4,000
/// calls/s that is about one segment a second, so a crash replays at most
/// a few MB and disk use stays small.
const SEGMENT_BYTES: u64 = 4 << 20;
/// Events replayed per backend call (one database transaction).
const REPLAY_BATCH: usize = 500;
/// How often the heartbeat is written (and the file synced to disk).
pub(crate) const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// One journal line, as written.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum LineOut<'a> {
    Alive(u64),
    Event(&'a CallEvent),
}

/// One journal line, as read back.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum LineIn {
    Alive(u64),
    Event(CallEvent),
}

/// One journal file and how many of its events are not yet in the database.
pub(crate) struct Segment {
    path: PathBuf,
    outstanding: AtomicUsize,
    /// No more events will be added.
    sealed: AtomicBool,
    /// A database write of one of its events failed: keep it for replay.
    failed: AtomicBool,
    removed: AtomicBool,
}

impl Segment {
    /// `n` of its events went to the database (`ok`: without error).
    pub(crate) fn written(&self, n: usize, ok: bool) {
        if !ok {
            self.failed.store(true, Ordering::SeqCst);
        }
        self.outstanding.fetch_sub(n, Ordering::SeqCst);
        self.remove_if_done();
    }

    /// Deletes the file once it is sealed and all of it is in the database.
    /// Called by both sides (the writer after a write, the journal after
    /// sealing); whichever sees both conditions first deletes it, once.
    fn remove_if_done(&self) {
        if self.sealed.load(Ordering::SeqCst)
            && self.outstanding.load(Ordering::SeqCst) == 0
            && !self.failed.load(Ordering::SeqCst)
            && !self.removed.swap(true, Ordering::SeqCst)
        {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot delete a CDR journal segment");
            }
        }
    }
}

struct Current {
    file: File,
    seq: u64,
    bytes: u64,
    segment: Arc<Segment>,
    buf: Vec<u8>,
    /// Set by [`Journal::seal`]: nothing more is written.
    closed: bool,
    /// A write failed; logged once, then calls go on without the journal
    /// (availability over durability: the database write-behind still runs).
    broken: bool,
}

pub(crate) struct Journal {
    dir: PathBuf,
    /// [`SEGMENT_BYTES`], smaller in tests.
    segment_bytes: u64,
    cur: Mutex<Current>,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("cdr-{seq:016}.jsonl"))
}

/// The segments in `dir`, oldest first.
fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut v = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(v),
        Err(e) => return Err(e),
    };
    for entry in rd {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let seq = name
            .strip_prefix("cdr-")
            .and_then(|s| s.strip_suffix(".jsonl"))
            .and_then(|s| s.parse::<u64>().ok());
        if let Some(seq) = seq {
            v.push((seq, entry.path()));
        }
    }
    v.sort();
    Ok(v)
}

fn alive_line(buf: &mut Vec<u8>, now_ms: u64) {
    // Serializing an integer into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, &LineOut::Alive(now_ms));
    buf.push(b'\n');
}

fn open_segment(dir: &Path, seq: u64, now_ms: u64) -> std::io::Result<(File, Arc<Segment>, u64)> {
    let path = segment_path(dir, seq);
    let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
    let mut head = Vec::new();
    alive_line(&mut head, now_ms);
    file.write_all(&head)?;
    let segment = Arc::new(Segment {
        path,
        outstanding: AtomicUsize::new(0),
        sealed: AtomicBool::new(false),
        failed: AtomicBool::new(false),
        removed: AtomicBool::new(false),
    });
    Ok((file, segment, head.len() as u64))
}

impl Journal {
    /// Opens a new segment in `dir` (created if missing), after any left
    /// there: call [`recover`] first so that those are replayed.
    pub(crate) fn open(dir: &Path, now_ms: u64) -> std::io::Result<Journal> {
        Self::open_with(dir, now_ms, SEGMENT_BYTES)
    }

    fn open_with(dir: &Path, now_ms: u64, segment_bytes: u64) -> std::io::Result<Journal> {
        std::fs::create_dir_all(dir)?;
        let seq = segments(dir)?.last().map_or(1, |(s, _)| s + 1);
        let (file, segment, bytes) = open_segment(dir, seq, now_ms)?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            segment_bytes,
            cur: Mutex::new(Current {
                file,
                seq,
                bytes,
                segment,
                buf: Vec::with_capacity(4096),
                closed: false,
                broken: false,
            }),
        })
    }

    /// Appends `events` with one write; returns the segment they are in
    /// (to report to once written to the database), or None when the
    /// journal is closed or broken.
    pub(crate) fn append(&self, events: &[CallEvent], now_ms: u64) -> Option<Arc<Segment>> {
        let mut guard = self.cur.lock();
        let cur = &mut *guard;
        if cur.closed || cur.broken {
            return None;
        }
        cur.buf.clear();
        for ev in events {
            // A CallEvent is plain strings and numbers: this cannot fail.
            let _ = serde_json::to_writer(&mut cur.buf, &LineOut::Event(ev));
            cur.buf.push(b'\n');
        }
        if let Err(e) = cur.file.write_all(&cur.buf) {
            cur.broken = true;
            tracing::error!(dir = %self.dir.display(), error = %e, "CDR journal write failed; going on without it (CDRs are written behind only)");
            return None;
        }
        cur.bytes += cur.buf.len() as u64;
        cur.segment
            .outstanding
            .fetch_add(events.len(), Ordering::SeqCst);
        let seg = cur.segment.clone();
        if cur.bytes >= self.segment_bytes {
            self.roll(cur, now_ms);
        }
        Some(seg)
    }

    /// Seals the current segment and starts the next one.
    fn roll(&self, cur: &mut Current, now_ms: u64) {
        match open_segment(&self.dir, cur.seq + 1, now_ms) {
            Ok((file, segment, bytes)) => {
                let old = std::mem::replace(&mut cur.segment, segment);
                cur.file = file;
                cur.seq += 1;
                cur.bytes = bytes;
                old.sealed.store(true, Ordering::SeqCst);
                old.remove_if_done();
            }
            Err(e) => {
                // Keep appending to the current one; try again next time.
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot start a new CDR journal segment");
            }
        }
    }

    /// Records that the server is alive at `now_ms`, then syncs the current
    /// file to disk without holding the lock.
    pub(crate) fn heartbeat(&self, now_ms: u64) -> Option<File> {
        let mut cur = self.cur.lock();
        if cur.closed || cur.broken {
            return None;
        }
        let mut line = Vec::with_capacity(32);
        alive_line(&mut line, now_ms);
        if let Err(e) = cur.file.write_all(&line) {
            cur.broken = true;
            tracing::error!(dir = %self.dir.display(), error = %e, "CDR journal write failed; going on without it");
            return None;
        }
        cur.bytes += line.len() as u64;
        cur.file.try_clone().ok()
    }

    /// A clean stop, once every queued CDR is written: nothing more is
    /// journaled and the files whose events are all in the database go.
    pub(crate) fn seal(&self) {
        let mut cur = self.cur.lock();
        cur.closed = true;
        cur.segment.sealed.store(true, Ordering::SeqCst);
        cur.segment.remove_if_done();
    }
}

/// What [`recover`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    pub segments: usize,
    pub events: usize,
    /// Lines that could not be read (a write cut short by the crash).
    pub skipped: usize,
    /// The last moment the previous run was known to be alive.
    pub last_alive_ms: Option<u64>,
}

/// Replays the journal left in `dir` by a previous run into `backend`,
/// closes the calls still open at the last time that run was known to be
/// alive, and deletes the replayed files. Without a journal (first start,
/// or the last run stopped cleanly) open calls are closed now.
pub async fn recover(dir: &Path, backend: &dyn Backend) -> Result<Recovered, BackendError> {
    let files = segments(dir)
        .map_err(|e| BackendError(format!("reading the CDR journal {}: {e}", dir.display())))?;
    let mut r = Recovered {
        segments: files.len(),
        ..Recovered::default()
    };
    // One segment at a time: a journal kept through a long database outage
    // may be large.
    for (_, path) in &files {
        let data = std::fs::read(path).map_err(|e| {
            BackendError(format!("reading the CDR journal {}: {e}", path.display()))
        })?;
        let mut events = Vec::new();
        for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<LineIn>(line) {
                Ok(LineIn::Alive(t)) => r.last_alive_ms = r.last_alive_ms.max(Some(t)),
                Ok(LineIn::Event(ev)) => {
                    r.last_alive_ms = r.last_alive_ms.max(Some(ev.at_ms));
                    events.push(ev);
                }
                Err(_) => r.skipped += 1,
            }
        }
        r.events += events.len();
        while !events.is_empty() {
            let rest = events.split_off(events.len().min(REPLAY_BATCH));
            // What fails here (e.g. an agent deleted since) fails for good:
            // the backend already retried it alone. Log it and go on.
            if let Err(e) = backend.call_events(events).await {
                tracing::warn!(error = %e, "replaying the CDR journal: some events were not recorded");
            }
            events = rest;
        }
    }
    backend.close_orphan_calls(r.last_alive_ms).await?;
    for (_, path) in &files {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot delete a replayed CDR journal segment");
        }
    }
    if r.segments > 0 {
        tracing::info!(
            segments = r.segments,
            events = r.events,
            skipped = r.skipped,
            last_alive_ms = r.last_alive_ms,
            "replayed the CDR journal of the previous run"
        );
    }
    Ok(r)
}

/// Writes the heartbeat every [`HEARTBEAT`] and syncs the journal to disk,
/// until `stop` turns true.
pub(crate) async fn run_heartbeat(
    journal: Arc<Journal>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Some(file) = journal.heartbeat(super::now_ms()) {
                    // fdatasync can take milliseconds: not on a runtime thread.
                    let synced = tokio::task::spawn_blocking(move || file.sync_data()).await;
                    if let Ok(Err(e)) = synced {
                        tracing::warn!(error = %e, "syncing the CDR journal failed");
                    }
                }
            }
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryBackend;
    use domain::call_events::{CallEventKind as K, HangupCause, Party};

    fn ev(call: &str, at_ms: u64, kind: K) -> CallEvent {
        CallEvent {
            call_id: call.into(),
            at_ms,
            kind,
        }
    }

    fn call(id: &str, t: u64) -> Vec<CallEvent> {
        let party = |n: &str| Party {
            number: n.into(),
            agent_id: Some(7),
        };
        vec![
            ev(
                id,
                t,
                K::Started {
                    direction: domain::Direction::Internal,
                    caller: party("1000"),
                    callee: party("1001"),
                    transport: "udp".into(),
                },
            ),
            ev(
                id,
                t + 1,
                K::LegAdded {
                    leg: 1,
                    party: party("1001"),
                    transport: "tcp".into(),
                },
            ),
            ev(id, t + 2, K::Ringing { leg: 1 }),
            ev(id, t + 3, K::Answered { leg: 1 }),
            ev(
                id,
                t + 4,
                K::LegEnded {
                    leg: 1,
                    cause: HangupCause::CalleeBye,
                    sip_code: Some(200),
                },
            ),
            ev(
                id,
                t + 5,
                K::Ended {
                    cause: HangupCause::CalleeBye,
                },
            ),
        ]
    }

    fn files(dir: &Path) -> Vec<u64> {
        segments(dir)
            .expect("list")
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    }

    /// What a crashed run left is replayed in order, every kind of event
    /// reads back as written, a line cut short is skipped, the last
    /// heartbeat or event dates the crash, and the files are deleted.
    #[tokio::test]
    async fn recover_replays_what_a_crash_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(dir.path(), 1_000).expect("open");
        let a = call("a", 2_000);
        let b = call("b", 2_100);
        assert!(j.append(&a[..4], 2_003).is_some());
        assert!(j.append(&b, 2_105).is_some());
        j.heartbeat(9_000);
        assert!(j.append(&a[4..], 2_005).is_some());
        // The crash cut the last write short.
        let path = segment_path(dir.path(), 1);
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(br#"{"event":{"call_id":"c","at_"#)
            .expect("write");
        drop(j);

        let backend = MemoryBackend::default();
        let r = recover(dir.path(), &backend).await.expect("recover");
        let mut want = a[..4].to_vec();
        want.extend(b.iter().cloned());
        want.extend(a[4..].iter().cloned());
        assert_eq!(*backend.cdrs.lock(), want);
        assert_eq!(
            r,
            Recovered {
                segments: 1,
                events: 12,
                skipped: 1,
                last_alive_ms: Some(9_000),
            }
        );
        assert!(files(dir.path()).is_empty());
        // The next run starts a new segment after the ones it found.
        std::fs::write(segment_path(dir.path(), 41), b"").expect("write");
        let next = Journal::open(dir.path(), 10_000).expect("open");
        assert_eq!(files(dir.path()), [41, 42]);
        drop(next);
    }

    /// No journal: nothing replayed, open calls closed now (no heartbeat).
    #[tokio::test]
    async fn recover_without_a_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = MemoryBackend::default();
        let r = recover(&dir.path().join("missing"), &backend)
            .await
            .expect("recover");
        assert_eq!(r, Recovered::default());
        assert!(backend.cdrs.lock().is_empty());
    }

    /// A full segment is sealed and a new one begun; a sealed segment goes
    /// once all its events are written, not before, and not if a write
    /// failed (it is replayed at the next start instead). A clean stop
    /// deletes the current one.
    #[test]
    fn segments_go_once_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open_with(dir.path(), 0, 600).expect("open");
        let first = j.append(&call("a", 0), 1).expect("journaled");
        assert_eq!(files(dir.path()), [1, 2], "rolled past 600 bytes");
        let second = j.append(&call("b", 0), 1).expect("journaled");
        let third = j.append(&call("c", 0)[..1], 1).expect("journaled");
        assert_eq!(files(dir.path()), [1, 2, 3]);
        first.written(4, true);
        assert_eq!(files(dir.path()), [1, 2, 3], "two events still pending");
        first.written(2, true);
        assert_eq!(files(dir.path()), [2, 3]);
        second.written(6, false);
        assert_eq!(files(dir.path()), [2, 3], "a failed write keeps it");
        third.written(1, true);
        assert_eq!(files(dir.path()), [2, 3], "the current one stays");
        j.seal();
        assert_eq!(files(dir.path()), [2]);
        assert!(j.append(&call("d", 0), 1).is_none(), "sealed");
    }

    /// Through the writer: each event reports its segment once written, so
    /// after a drain and a clean stop no file is left.
    #[tokio::test]
    async fn writer_reports_segments_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Arc::new(Journal::open_with(dir.path(), 0, 2_000).expect("open"));
        let backend = Arc::new(MemoryBackend::default());
        let w = crate::shell::Writers::spawn(backend.clone(), Some(j.clone()));
        let mut all = Vec::new();
        for i in 0..50 {
            let c = call(&format!("call-{i}"), i);
            w.cdrs(c.clone(), i);
            all.extend(c);
        }
        assert!(files(dir.path()).len() > 3, "several segments");
        for _ in 0..500 {
            if w.pending() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(w.pending(), 0);
        assert_eq!(*backend.cdrs.lock(), all);
        assert_eq!(files(dir.path()).len(), 1, "only the current segment");
        w.seal_journal();
        assert!(files(dir.path()).is_empty());
    }
}
