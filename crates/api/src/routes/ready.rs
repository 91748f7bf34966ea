//! `GET /api/ready`: readiness, no auth. 200 when the database answers and
//! the PBX engine (when one is wired) is listening; otherwise 503 with the
//! failed checks, so a load balancer stops sending traffic here.
//! `/api/health` stays the liveness probe.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::doc::ErrorDetail;
use crate::state::AppState;

/// How long the database may take to answer `SELECT 1`.
const DB_LIMIT: Duration = Duration::from_secs(2);

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(ready))
}

#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// Always `true`.
    pub success: bool,
    /// `ready`
    pub status: String,
    pub checks: Checks,
}

/// Each check: `ok`, or what is wrong.
#[derive(Serialize, ToSchema)]
pub struct Checks {
    pub database: String,
    /// `ok`, what is wrong, or `not running` when no engine is wired.
    pub sip: String,
}

#[derive(Serialize, ToSchema)]
pub struct NotReady {
    /// Always `false`.
    pub success: bool,
    /// `unavailable`
    pub status: String,
    pub checks: Checks,
    /// `unavailable`, with the failed checks.
    pub error: ErrorDetail,
}

/// Readiness.
///
/// 200 when the database answers and the PBX engine (if wired) listens,
/// else 503. Public.
#[utoipa::path(
    get,
    path = "/api/ready",
    tag = "system",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "Not ready", body = NotReady),
    ),
)]
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
        Ok(()) => "ok".to_string(),
        Err(e) => e.clone(),
    };
    let checks = Checks {
        database: show(&database),
        sip: sip.as_ref().map_or("not running".to_string(), show),
    };
    let failed: Vec<String> = [("database", &database)]
        .into_iter()
        .chain(sip.as_ref().map(|s| ("sip", s)))
        .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("{name}: {e}")))
        .collect();
    if failed.is_empty() {
        Json(Ready {
            success: true,
            status: "ready".into(),
            checks,
        })
        .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(NotReady {
                success: false,
                status: "unavailable".into(),
                checks,
                error: ErrorDetail {
                    code: "unavailable".into(),
                    message: failed.join("; "),
                },
            }),
        )
            .into_response()
    }
}
