//! /api/telephony/pbx/config: the configuration an engine generates for
//! the PBX it drives (`mode = "asterisk"`: its PJSIP files), for an admin
//! to read before including it, and to regenerate and reload on demand.
//! Secrets are masked. 409 `no_pbx_config` with an engine that generates
//! none (the builtin one is the PBX).

use axum::extract::State;
use domain::engine::PbxConfigView;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Admin;
use crate::doc;
use crate::error::AppError;
use crate::extract::AppJson;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(pbx_config))
        .routes(routes!(pbx_config_regenerate))
}

#[derive(Serialize, ToSchema)]
pub struct PbxConfigAnswer {
    pub success: bool,
    pub config: PbxConfigView,
}

/// 409 `no_pbx_config`: in this mode nothing is generated for a PBX (the
/// builtin engine is the PBX itself).
fn not_generated(name: &str) -> AppError {
    AppError::Conflict {
        code: "no_pbx_config",
        message: format!("the {name} engine generates no PBX configuration"),
    }
}

/// The generated PBX configuration.
///
/// The files as they would be written now (passwords and HA1s masked)
/// and the outcome of the last reload. Roles: admin.
#[utoipa::path(
    get,
    path = "/api/telephony/pbx/config",
    tag = "trunks",
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The generated configuration", body = PbxConfigAnswer),
        doc::Role,
        (status = 409, description = "The engine generates none (`no_pbx_config`)", body = doc::ErrorBody),
    ),
)]
async fn pbx_config(
    State(st): State<AppState>,
    Admin(_): Admin,
) -> Result<AppJson<PbxConfigAnswer>, AppError> {
    let fut = st
        .engine
        .as_ref()
        .and_then(|e| e.pbx_config())
        .ok_or_else(|| not_generated(st.engine.as_ref().map_or("running", |e| e.name())))?;
    let config = fut.await.map_err(AppError::Internal)?;
    Ok(AppJson(PbxConfigAnswer {
        success: true,
        config,
    }))
}

/// Regenerate the PBX configuration and reload the PBX.
///
/// Writes the files again and asks the PBX to reload them (for Asterisk,
/// `Action: Reload` of `res_pjsip.so`); the answer holds the reload's
/// outcome. Roles: admin. Audited as `pbx.regenerate_config`.
#[utoipa::path(
    post,
    path = "/api/telephony/pbx/config/regenerate",
    tag = "trunks",
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "Regenerated; see lastReload", body = PbxConfigAnswer),
        doc::Role,
        (status = 409, description = "The engine generates none (`no_pbx_config`)", body = doc::ErrorBody),
    ),
)]
async fn pbx_config_regenerate(
    State(st): State<AppState>,
    Admin(u): Admin,
) -> Result<AppJson<PbxConfigAnswer>, AppError> {
    let name = st.engine.as_ref().map_or("running", |e| e.name());
    let fut = st
        .engine
        .as_ref()
        .and_then(|e| e.regenerate_pbx_config())
        .ok_or_else(|| not_generated(name))?;
    let config = fut.await.map_err(AppError::Internal)?;
    st.services
        .audit
        .log(
            &u.actor(),
            "pbx.regenerate_config",
            "pbx",
            name,
            serde_json::json!({ "reload": config.last_reload }),
        )
        .await?;
    Ok(AppJson(PbxConfigAnswer {
        success: true,
        config,
    }))
}
