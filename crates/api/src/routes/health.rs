//! /api/health: liveness and database reachability, no auth.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::doc::ErrorBody;
use crate::error::AppError;
use crate::extract::AppJson;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub success: bool,
    /// `ok`
    pub status: String,
    /// centralita's version.
    pub version: String,
    /// A PBX engine is wired.
    pub sip: bool,
}

/// Liveness and database reachability.
///
/// Public.
#[utoipa::path(
    get,
    path = "/api/health",
    tag = "system",
    responses(
        (status = 200, description = "Alive, the database answers", body = Health),
        (status = 503, description = "The database does not answer (`unavailable`)", body = ErrorBody),
    ),
)]
async fn health(State(st): State<AppState>) -> Result<AppJson<Health>, AppError> {
    st.services
        .users
        .stats()
        .await
        .map_err(|e| AppError::Unavailable(format!("database: {e}")))?;
    Ok(AppJson(Health {
        success: true,
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        sip: st.engine.is_some(),
    }))
}
