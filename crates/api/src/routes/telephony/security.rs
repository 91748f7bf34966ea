//! /api/telephony/security: the SIP sources banned for failed
//! authentication, and lifting a ban (admins).

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::JsonResult;
use crate::auth::Admin;
use crate::doc::{self, Done};
use crate::error::AppError;
use crate::extract::{AppJson, AppPath};
use crate::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(blocked))
        .routes(routes!(unblock))
}

#[derive(Serialize, ToSchema)]
pub struct BlockedList {
    pub success: bool,
    pub total: usize,
    pub blocked: Vec<Blocked>,
}

/// A source address refused after failed SIP authentication.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Blocked {
    pub ip: String,
    /// Failed attempts counted against it.
    pub failures: u32,
    /// When the ban ends on its own.
    pub blocked_until: DateTime<Utc>,
}

/// Lift the ban on a source address.
///
/// E.g. an office NAT address that a misconfigured phone got banned.
/// Audited like every admin change. Roles: admin.
#[utoipa::path(
    delete,
    path = "/security/blocked/{ip}",
    tag = "telephony",
    params(("ip" = String, Path, description = "IPv4 or IPv6 address")),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The ban is lifted", body = Done),
        doc::Role,
        doc::NotFound,
        (status = 422, description = "Not an IP address (`invalid_field`)", body = doc::ErrorBody),
        doc::Engine,
    ),
)]
async fn unblock(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppPath(ip): AppPath<String>,
) -> JsonResult<Done> {
    let addr: std::net::IpAddr = ip
        .parse()
        .map_err(|_| AppError::invalid("ip", "not an IP address"))?;
    let engine = st
        .engine
        .as_ref()
        .ok_or_else(|| AppError::Unavailable("the SIP server is not running".into()))?;
    if !engine.unblock(addr) {
        return Err(AppError::NotFound("blocked source"));
    }
    st.services
        .audit
        .log(
            &u.actor(),
            "sip.unblock",
            "sip_source",
            &addr.to_string(),
            json!({}),
        )
        .await?;
    Ok(AppJson(Done::new()))
}

/// Sources refused after failed SIP authentication.
///
/// Empty without a running engine. Roles: admin.
#[utoipa::path(
    get,
    path = "/security/blocked",
    tag = "telephony",
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "Banned addresses", body = BlockedList), doc::Role),
)]
async fn blocked(State(st): State<AppState>, Admin(_): Admin) -> JsonResult<BlockedList> {
    let list: Vec<Blocked> = st
        .engine
        .as_ref()
        .map(|e| e.blocked_sources())
        .unwrap_or_default()
        .into_iter()
        .map(|b| Blocked {
            ip: b.ip.to_string(),
            failures: b.failures,
            blocked_until: b.blocked_until,
        })
        .collect();
    Ok(AppJson(BlockedList {
        success: true,
        total: list.len(),
        blocked: list,
    }))
}
