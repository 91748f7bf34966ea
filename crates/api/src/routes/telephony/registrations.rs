//! /api/telephony/registrations: the bindings the registrar holds (staff).

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde_json::json;

use super::JsonResult;
use crate::auth::Staff;
use crate::extract::AppJson;
use crate::state::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/registrations", get(registrations))
}

async fn registrations(State(st): State<AppState>, Staff(_): Staff) -> JsonResult {
    let regs = st.services.registrations.list_with_extension().await?;
    let list: Vec<serde_json::Value> = regs
        .into_iter()
        .map(|(r, ext)| {
            json!({
                "username": r.username, "extension": ext, "contact": r.contact, "transport": r.transport,
                "source": r.source, "userAgent": r.user_agent, "expiresAt": r.expires_at, "registeredAt": r.registered_at,
            })
        })
        .collect();
    Ok(AppJson(
        json!({"success": true, "total": list.len(), "registrations": list}),
    ))
}
