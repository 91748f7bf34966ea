//! /api/telephony/registrations: the bindings the registrar holds (staff).

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::JsonResult;
use crate::auth::Staff;
use crate::doc;
use crate::extract::AppJson;
use crate::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(registrations))
}

#[derive(Serialize, ToSchema)]
pub struct RegistrationList {
    pub success: bool,
    pub total: usize,
    pub registrations: Vec<Registration>,
}

/// One registered contact (binding).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    pub username: String,
    pub extension: String,
    pub contact: String,
    /// udp | tcp | tls | ws | wss
    pub transport: String,
    /// ip:port the REGISTER came from.
    pub source: String,
    pub user_agent: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub registered_at: DateTime<Utc>,
}

/// Registered SIP contacts.
///
/// Roles: admin, supervisor.
#[utoipa::path(
    get,
    path = "/registrations",
    tag = "telephony",
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "Every unexpired binding", body = RegistrationList), doc::Role),
)]
async fn registrations(
    State(st): State<AppState>,
    Staff(_): Staff,
) -> JsonResult<RegistrationList> {
    let regs = st.services.registrations.list_with_extension().await?;
    let list: Vec<Registration> = regs
        .into_iter()
        .map(|(r, ext)| Registration {
            username: r.username,
            extension: ext,
            contact: r.contact,
            transport: r.transport,
            source: r.source,
            user_agent: r.user_agent,
            expires_at: r.expires_at,
            registered_at: r.registered_at,
        })
        .collect();
    Ok(AppJson(RegistrationList {
        success: true,
        total: list.len(),
        registrations: list,
    }))
}
