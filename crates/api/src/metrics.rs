//! Prometheus metrics: the process-wide recorder, the HTTP request
//! middleware, and the figures read at scrape time.
//!
//! The SIP engine's figures are not pushed per message (the UDP loop handles
//! tens of thousands a second): they are the engine's own counters, read
//! through `Engine::status` when `/metrics` is scraped and published as
//! absolute values. Only HTTP requests (a middleware) and ended calls (the
//! CDR recorder) update metrics as they happen.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

/// Buckets of `centralita_http_request_duration_seconds`.
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
static UPKEEP: OnceLock<()> = OnceLock::new();

/// The process's Prometheus recorder, installed as the global `metrics`
/// recorder on first use. `None` when another recorder was installed first
/// (then `/metrics` answers 503).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("centralita_http_request_duration_seconds".into()),
                    HTTP_BUCKETS,
                )
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed: /metrics is off");
                return None;
            }
            describe();
            Some(handle)
        })
        .as_ref()
}

/// Installs the recorder and, inside a tokio runtime, the task that drains
/// histogram samples every few seconds (without it they would pile up
/// between scrapes, or forever when nobody scrapes).
pub fn install() {
    let Some(handle) = handle() else { return };
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        UPKEEP.get_or_init(|| {
            rt.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    handle.run_upkeep();
                }
            });
        });
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "centralita_http_requests_total",
        "HTTP requests answered, by route template, method and status"
    );
    describe_histogram!(
        "centralita_http_request_duration_seconds",
        Unit::Seconds,
        "Time to the response head, by route template and method"
    );
    describe_counter!(
        "centralita_calls_total",
        "Calls ended, by disposition (CDR)"
    );
    describe_gauge!("centralita_sip_up", "1 when the PBX engine takes calls");
    describe_gauge!(
        "centralita_registered_contacts",
        "SIP contacts registered now, all transports"
    );
    describe_gauge!("centralita_active_calls", "Calls ringing or answered now");
    describe_counter!(
        "centralita_sip_requests_total",
        "REGISTER and INVITE requests handled, retransmissions not counted"
    );
    describe_counter!(
        "centralita_sip_auth_failures_total",
        "Failed SIP authentications counted against source addresses"
    );
    describe_counter!(
        "centralita_sip_bans_total",
        "Source addresses banned after repeated SIP authentication failures"
    );
    describe_gauge!(
        "centralita_sip_banned_sources",
        "Source addresses banned now"
    );
    describe_counter!(
        "centralita_sip_scanner_requests_dropped_total",
        "SIP requests dropped unanswered because of a scanner User-Agent"
    );
    describe_counter!(
        "centralita_sip_auth_guarded_refused_total",
        "SIP authentications refused unchecked because the account was guarded"
    );
    describe_counter!(
        "centralita_sip_accounts_guarded_total",
        "SIP account guards started (failures on one username from many addresses)"
    );
    describe_gauge!(
        "centralita_store_write_queue_depth",
        "Registration and CDR writes queued for the database"
    );
    describe_gauge!(
        "centralita_store_write_lag_seconds",
        Unit::Seconds,
        "How long the oldest write of the last batch waited for the database (writer=registrations|cdrs)"
    );
    describe_gauge!(
        "centralita_db_pool_connections",
        "Database connections open in the pool (state=in_use|idle) and its maximum (state=max)"
    );
    describe_gauge!(
        "process_resident_memory_bytes",
        Unit::Bytes,
        "Resident set size of the process"
    );
}

/// Counts and times every request by its route template (`/api/agents/{id}`,
/// never the raw path: the label set stays small) and status. Requests no
/// route matched (console files, unknown paths) share `route="fallback"`.
pub async fn track_http(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "fallback".to_string(), |p| p.as_str().to_string());
    let method = req.method().as_str().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("centralita_http_requests_total",
        "route" => route.clone(), "method" => method.clone(), "status" => status)
    .increment(1);
    metrics::histogram!("centralita_http_request_duration_seconds",
        "route" => route, "method" => method)
    .record(started.elapsed().as_secs_f64());
    resp
}

/// Resident memory from `/proc/self/status` (`VmRSS`, in kB), Linux only.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

/// Publishes the figures read at scrape time, then renders everything in
/// the Prometheus text format. `None` when no recorder could be installed.
pub fn render(state: &AppState) -> Option<String> {
    let handle = handle()?;
    if let Some(engine) = &state.engine {
        let s = engine.status();
        metrics::gauge!("centralita_sip_up").set(if s.connected { 1.0 } else { 0.0 });
        metrics::gauge!("centralita_registered_contacts").set(s.registered_contacts as f64);
        metrics::gauge!("centralita_active_calls").set(s.active_calls as f64);
        metrics::counter!("centralita_sip_requests_total", "method" => "REGISTER")
            .absolute(s.register_requests);
        metrics::counter!("centralita_sip_requests_total", "method" => "INVITE")
            .absolute(s.invite_requests);
        metrics::counter!("centralita_sip_auth_failures_total").absolute(s.auth_failures);
        metrics::counter!("centralita_sip_bans_total").absolute(s.sources_banned);
        metrics::gauge!("centralita_sip_banned_sources").set(engine.blocked_sources().len() as f64);
        metrics::counter!("centralita_sip_scanner_requests_dropped_total")
            .absolute(s.scanner_requests_dropped);
        metrics::counter!("centralita_sip_auth_guarded_refused_total")
            .absolute(s.auth_guarded_refused);
        metrics::counter!("centralita_sip_accounts_guarded_total")
            .absolute(s.auth_accounts_guarded);
        metrics::gauge!("centralita_store_write_queue_depth").set(s.write_queue_depth as f64);
        metrics::gauge!("centralita_store_write_lag_seconds", "writer" => "registrations")
            .set(s.write_lag_registrations_us as f64 / 1e6);
        metrics::gauge!("centralita_store_write_lag_seconds", "writer" => "cdrs")
            .set(s.write_lag_cdrs_us as f64 / 1e6);
    }
    let (open, idle) = state.services.db.pool_stats();
    let max = state.services.db.pool_max();
    for (kind, n) in [
        ("in_use", open.saturating_sub(idle)),
        ("idle", idle),
        ("max", max),
    ] {
        metrics::gauge!("centralita_db_pool_connections", "state" => kind).set(f64::from(n));
    }
    if let Some(rss) = resident_bytes() {
        metrics::gauge!("process_resident_memory_bytes").set(rss as f64);
    }
    Some(handle.render())
}
