//! What jemalloc (the binary's global allocator, `main.rs`) holds, as
//! gauges beside `process_resident_memory_bytes`: live data (`allocated`),
//! pages it keeps for reuse (`active` minus `allocated`, plus dirty pages
//! counted in `resident`), its own bookkeeping (`metadata`). With them an
//! operator can tell a growing heap from memory the allocator has not yet
//! returned, and the part of the RSS that is neither (SQLite's page caches,
//! thread stacks, the binary) is the difference.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tikv_jemalloc_ctl::{epoch, stats, Access, AsName};

/// How often the figures are refreshed (reading them is a few microseconds).
const EVERY: Duration = Duration::from_secs(5);

/// Refreshes the allocator gauges every few seconds until the runtime ends.
pub fn spawn_gauges() {
    metrics::describe_gauge!(
        "centralita_allocator_bytes",
        metrics::Unit::Bytes,
        "jemalloc: allocated (live data), active (pages holding it), resident \
         (mapped and resident, incl. dirty pages not yet returned), metadata, retained \
         (virtual, returned to the system but kept mapped)"
    );
    tokio::spawn(async {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            if let Err(e) = publish() {
                tracing::debug!(error = %e, "jemalloc statistics unavailable");
                return;
            }
        }
    });
}

fn publish() -> Result<(), tikv_jemalloc_ctl::Error> {
    // The statistics are a snapshot taken when the epoch advances.
    epoch::advance()?;
    for (kind, bytes) in [
        ("allocated", stats::allocated::read()?),
        ("active", stats::active::read()?),
        ("resident", stats::resident::read()?),
        ("metadata", stats::metadata::read()?),
        ("retained", stats::retained::read()?),
    ] {
        metrics::gauge!("centralita_allocator_bytes", "kind" => kind).set(bytes as f64);
    }
    Ok(())
}

/// Set by the binary, whose global allocator jemalloc is; library users
/// and tests (system allocator) never touch jemalloc through this module.
static RELEASE_ON_IDLE: AtomicBool = AtomicBool::new(false);

/// A thread returns its cache at most this often.
const RELEASE_EVERY: Duration = Duration::from_secs(5);

/// Turns on [`release_thread_cache_when_idle`] (the binary calls this once).
pub fn enable_idle_release() {
    RELEASE_ON_IDLE.store(true, Ordering::Relaxed);
}

/// Hands the calling thread's jemalloc cache back to the arenas, at most
/// every few seconds; called when a runtime thread runs out of work.
///
/// Why: each thread keeps up to ~200 freed objects per size class for
/// quick reuse, and jemalloc trims that cache only as the thread goes on
/// allocating. A thread that goes quiet after a burst keeps its cache for
/// good, and each cached object keeps the page it sits on (a slab of
/// others long freed) resident: 60 s after 80,000 calls that was 2.5-3 MB
/// of half-empty pages, a third of the growth of the RSS. Turning the
/// cache off and on again flushes it (the safe `mallctl` for it; the
/// workspace has no unsafe code). At most one flush per thread every 5 s
/// costs nothing measurable under load (a refill of the cache).
pub fn release_thread_cache_when_idle() {
    if !RELEASE_ON_IDLE.load(Ordering::Relaxed) {
        return;
    }
    thread_local! {
        static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    let now = Instant::now();
    let due = LAST.with(|last| {
        let due = last
            .get()
            .is_none_or(|t| now.duration_since(t) >= RELEASE_EVERY);
        if due {
            last.set(Some(now));
        }
        due
    });
    if due {
        let enabled = b"thread.tcache.enabled\0".name();
        let flushed = enabled.write(false).and_then(|()| enabled.write(true));
        if let Err(e) = flushed {
            tracing::debug!(error = %e, "jemalloc thread cache not released");
        }
    }
}
