//! /api/telephony/dialplan: the outbound dial plan and the toll-fraud
//! defaults (admin only, audited). The configuration's `[dialplan]` is in
//! force until an administrator saves other settings; DELETE goes back to
//! it. The SIP server routes the next call with what was saved.

use axum::extract::State;
use domain::dialplan_settings::{DialplanSettings, EffectiveDialplan};
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
    OpenApiRouter::new().routes(routes!(dialplan_get, dialplan_put, dialplan_reset))
}

#[derive(Serialize, ToSchema)]
pub struct DialplanAnswer {
    pub success: bool,
    pub settings: DialplanSettings,
    /// `config` (the `[dialplan]` section) or `saved` (by an administrator).
    pub source: String,
}

fn answer(d: EffectiveDialplan) -> AppJson<DialplanAnswer> {
    AppJson(DialplanAnswer {
        success: true,
        settings: d.settings,
        source: d.source,
    })
}

/// The dial plan in force.
///
/// `source` says whether it is the configuration's (`config`) or saved by
/// an administrator (`saved`). Roles: admin.
#[utoipa::path(
    get,
    path = "/api/telephony/dialplan",
    tag = "trunks",
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "The dial plan", body = DialplanAnswer), doc::Role),
)]
async fn dialplan_get(
    State(st): State<AppState>,
    Admin(_): Admin,
) -> Result<AppJson<DialplanAnswer>, AppError> {
    Ok(answer(st.services.dialplan().effective().await?))
}

/// Save the dial plan.
///
/// Every field is required and the whole is checked before anything is
/// saved (422 names the first bad field). Roles: admin.
#[utoipa::path(
    put,
    path = "/api/telephony/dialplan",
    tag = "trunks",
    request_body = DialplanSettings,
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "Saved", body = DialplanAnswer), doc::Role, doc::JsonBody),
)]
async fn dialplan_put(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppJson(b): AppJson<DialplanSettings>,
) -> Result<AppJson<DialplanAnswer>, AppError> {
    Ok(answer(st.services.dialplan().save(&u.actor(), &b).await?))
}

/// Back to the configuration's dial plan.
///
/// Roles: admin.
#[utoipa::path(
    delete,
    path = "/api/telephony/dialplan",
    tag = "trunks",
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "The configuration's dial plan", body = DialplanAnswer), doc::Role),
)]
async fn dialplan_reset(
    State(st): State<AppState>,
    Admin(u): Admin,
) -> Result<AppJson<DialplanAnswer>, AppError> {
    Ok(answer(st.services.dialplan().reset(&u.actor()).await?))
}
