//! `GET /metrics`: Prometheus text format (see `crate::metrics`). On the
//! HTTP listeners for admins (bearer API token or console session); on the
//! optional `metrics.listen` address for anyone who can reach it.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Admin;
use crate::doc;
use crate::state::AppState;

/// `/metrics` for admins, merged into the main router.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(for_admin))
}

/// `/metrics` without authentication, for the separate metrics listener
/// (its own document is not served; the route is the same as above).
pub fn open_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(open))
}

/// Prometheus metrics.
///
/// Text exposition format. Roles: admin; also served without
/// authentication on `metrics.listen` when that is set.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    operation_id = "metrics",
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The metrics", body = String, content_type = "text/plain; version=0.0.4"),
        doc::Role,
        (status = 503, description = "The metrics recorder is not installed", body = String, content_type = "text/plain"),
    ),
)]
async fn for_admin(_admin: Admin, State(st): State<AppState>) -> Response {
    scrape(&st)
}

/// Prometheus metrics, without authentication (the `metrics.listen`
/// listener).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    responses(
        (status = 200, description = "The metrics", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 503, description = "The metrics recorder is not installed", body = String, content_type = "text/plain"),
    ),
)]
async fn open(State(st): State<AppState>) -> Response {
    scrape(&st)
}

fn scrape(st: &AppState) -> Response {
    match crate::metrics::render(st) {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable\n",
        )
            .into_response(),
    }
}
