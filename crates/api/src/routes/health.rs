//! /api/health: liveness and database reachability, no auth.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde_json::json;

use crate::error::AppError;
use crate::extract::AppJson;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/health", get(health))
}

async fn health(State(st): State<AppState>) -> Result<AppJson<serde_json::Value>, AppError> {
    st.services
        .users
        .stats()
        .await
        .map_err(|e| AppError::Unavailable(format!("database: {e}")))?;
    Ok(AppJson(json!({
        "success": true,
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "sip": st.engine.is_some(),
    })))
}
