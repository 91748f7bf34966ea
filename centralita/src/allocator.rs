//! What jemalloc (the binary's global allocator, `main.rs`) holds, as
//! gauges beside `process_resident_memory_bytes`: live data (`allocated`),
//! pages it keeps for reuse (`active` minus `allocated`, plus dirty pages
//! counted in `resident`), its own bookkeeping (`metadata`). With them an
//! operator can tell a growing heap from memory the allocator has not yet
//! returned, and the part of the RSS that is neither (SQLite's page caches,
//! thread stacks, the binary) is the difference.

use std::time::Duration;

use tikv_jemalloc_ctl::{epoch, stats};

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
