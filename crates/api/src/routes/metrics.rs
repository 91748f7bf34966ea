//! `GET /metrics`: Prometheus text format (see `crate::metrics`). On the
//! HTTP listeners for admins (bearer API token or console session); on the
//! optional `metrics.listen` address for anyone who can reach it.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::auth::Admin;
use crate::state::AppState;

/// `/metrics` for admins, merged into the main router.
pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(for_admin))
}

/// `/metrics` without authentication, for the separate metrics listener.
pub fn open_routes() -> Router<AppState> {
    Router::new().route("/metrics", get(open))
}

async fn for_admin(_admin: Admin, State(st): State<AppState>) -> Response {
    scrape(&st)
}

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
