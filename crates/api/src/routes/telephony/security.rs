//! /api/telephony/security: the SIP sources banned for failed
//! authentication, and lifting a ban (admins).

use axum::extract::State;
use axum::routing::{delete, get};
use axum::Router;
use serde_json::json;

use super::JsonResult;
use crate::auth::Admin;
use crate::error::AppError;
use crate::extract::{AppJson, AppPath};
use crate::state::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/security/blocked", get(blocked))
        .route("/security/blocked/{ip}", delete(unblock))
}

/// Lifts a SIP ban early (e.g. an office NAT address that a misconfigured
/// phone got banned). Audited like every admin change.
async fn unblock(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppPath(ip): AppPath<String>,
) -> JsonResult {
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
    Ok(AppJson(json!({"success": true})))
}

async fn blocked(State(st): State<AppState>, Admin(_): Admin) -> JsonResult {
    let list: Vec<serde_json::Value> = st
        .engine
        .as_ref()
        .map(|e| e.blocked_sources())
        .unwrap_or_default()
        .into_iter()
        .map(|b| json!({"ip": b.ip.to_string(), "failures": b.failures, "blockedUntil": b.blocked_until}))
        .collect();
    Ok(AppJson(
        json!({"success": true, "total": list.len(), "blocked": list}),
    ))
}
