//! /api/audit (admin).

use axum::extract::State;
use domain::AuditEntry;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Admin;
use crate::doc;
use crate::error::AppError;
use crate::extract::{AppJson, AppQuery};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// 1..500, default 50.
    limit: Option<i64>,
    offset: Option<i64>,
    /// Exact action, e.g. `user.create`, `sip.unblock`.
    action: Option<String>,
    actor_id: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditList {
    pub success: bool,
    pub total: i64,
    pub entries: Vec<AuditEntry>,
}

/// The audit log, newest first.
///
/// Roles: admin.
#[utoipa::path(
    get,
    path = "/api/audit",
    tag = "audit",
    params(AuditQuery),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "One page of entries", body = AuditList), doc::Role, doc::BadInput),
)]
async fn list(
    State(st): State<AppState>,
    Admin(_): Admin,
    AppQuery(q): AppQuery<AuditQuery>,
) -> Result<AppJson<AuditList>, AppError> {
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
    Ok(AppJson(AuditList {
        success: true,
        total,
        entries,
    }))
}
