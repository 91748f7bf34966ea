//! /api/audit (admin).

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use crate::auth::Admin;
use crate::error::AppError;
use crate::extract::{AppJson, AppQuery};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/audit", get(list))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditQuery {
    limit: Option<i64>,
    offset: Option<i64>,
    action: Option<String>,
    actor_id: Option<i64>,
}

async fn list(
    State(st): State<AppState>,
    Admin(_): Admin,
    AppQuery(q): AppQuery<AuditQuery>,
) -> Result<AppJson<serde_json::Value>, AppError> {
    let action = q.action.as_deref().map(str::trim).filter(|a| !a.is_empty());
    super::max_len("action", action.unwrap_or(""), 64)?;
    let (entries, total) = st
        .services
        .audit
        .list(
            action,
            q.actor_id,
            q.limit.unwrap_or(50).clamp(1, 500),
            q.offset.unwrap_or(0).max(0),
        )
        .await?;
    Ok(AppJson(
        json!({"success": true, "total": total, "entries": entries}),
    ))
}
