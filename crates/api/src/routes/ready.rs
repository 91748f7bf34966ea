//! `GET /api/ready`: readiness, no auth. 200 when the database answers and
//! the PBX engine (when one is wired) is listening; otherwise 503 with the
//! failed checks, so a load balancer stops sending traffic here.
//! `/api/health` stays the liveness probe.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::state::AppState;

/// How long the database may take to answer `SELECT 1`.
const DB_LIMIT: Duration = Duration::from_secs(2);

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/ready", get(ready))
}

async fn ready(State(st): State<AppState>) -> Response {
    let database = st.services.db.ping(DB_LIMIT).await;
    let sip = st.engine.as_ref().map(|e| {
        if e.status().connected {
            Ok(())
        } else {
            Err(format!("the {} engine is not listening", e.name()))
        }
    });
    let show = |r: &Result<(), String>| match r {
        Ok(()) => json!("ok"),
        Err(e) => json!(e),
    };
    let checks = json!({
        "database": show(&database),
        "sip": sip.as_ref().map_or(json!("not running"), show),
    });
    let failed: Vec<String> = [("database", &database)]
        .into_iter()
        .chain(sip.as_ref().map(|s| ("sip", s)))
        .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("{name}: {e}")))
        .collect();
    if failed.is_empty() {
        Json(json!({"success": true, "status": "ready", "checks": checks})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "success": false,
                "status": "unavailable",
                "checks": checks,
                "error": {"code": "unavailable", "message": failed.join("; ")},
            })),
        )
            .into_response()
    }
}
