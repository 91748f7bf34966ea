//! /api/telephony/sip: creating an agent's SIP account, its status, and
//! the short-lived credentials a softphone registers with.

use axum::extract::State;
use axum::http::header;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use super::JsonResult;
use crate::auth::{Admin, CurrentUser};
use crate::error::AppError;
use crate::extract::AppJson;
use crate::routes::max_len;
use crate::state::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/sip/create", post(sip_create))
        .route("/sip/status", get(sip_status))
        .route("/sip/credentials", get(sip_credentials))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SipCreateBody {
    user_id: i64,
    primer_nombre: Option<String>,
    primer_apellido: Option<String>,
}

async fn sip_create(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppJson(b): AppJson<SipCreateBody>,
) -> JsonResult {
    max_len(
        "primerNombre",
        b.primer_nombre.as_deref().unwrap_or(""),
        100,
    )?;
    max_len(
        "primerApellido",
        b.primer_apellido.as_deref().unwrap_or(""),
        100,
    )?;
    let name = [b.primer_nombre.as_deref(), b.primer_apellido.as_deref()]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let name = (!name.is_empty()).then_some(name);
    let (account, creds) = st
        .services
        .sip_accounts
        .create_for_user(&u.actor(), b.user_id, name.as_deref())
        .await?;
    Ok(AppJson(json!({
        "success": true,
        "message": "SIP peer created successfully",
        "sipPeer": {
            "sipUsername": account.username,
            "extension": account.extension,
            "status": if account.active { "active" } else { "inactive" },
        },
        "sipCredentials": creds,
    })))
}

async fn sip_status(u: CurrentUser) -> JsonResult {
    let Some(sip) = u.user.sip else {
        return Err(AppError::NotFound("sip account"));
    };
    Ok(AppJson(json!({
        "success": true,
        "sipPeer": {
            "username": sip.username,
            "extension": sip.extension,
            "status": sip.status,
            "registered": sip.registered,
            "lastRegisteredAt": sip.last_registered_at,
            "userAgent": sip.user_agent,
            "ipAddress": sip.ip_address,
            "contacts": sip.contacts,
        }
    })))
}

/// The WebSocket URL softphones use: the one configured in the console,
/// else this server's `/ws` at the host the client reached us by (so it
/// works through whatever name or address the browser used), else the
/// listen address.
pub fn ws_uri(
    st: &AppState,
    w: &domain::WebrtcSettings,
    headers: &axum::http::HeaderMap,
) -> String {
    if let Some(url) = &w.ws_url {
        return url.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'?' | b'#' | b'@'))
        });
    match host {
        Some(host) => {
            let forwarded_https = st.config.trust_proxy
                && headers
                    .get("x-forwarded-proto")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
            let scheme = if st.config.cookie_secure || st.config.served_over_tls || forwarded_https
            {
                "wss"
            } else {
                "ws"
            };
            format!("{scheme}://{host}{}", st.config.ws_path)
        }
        None => w.default_ws_url.clone(),
    }
}

async fn sip_credentials(
    State(st): State<AppState>,
    u: CurrentUser,
    headers: axum::http::HeaderMap,
) -> JsonResult {
    let eph = st
        .services
        .sip_accounts
        .issue_ephemeral(u.user.id)
        .await
        .map_err(|e| match e {
            domain::DomainError::NotFound { .. } => AppError::NotFound("sip account"),
            other => other.into(),
        })?;
    let w = st.services.webrtc.get().await?;
    Ok(AppJson(json!({
        "success": true,
        "credentials": {
            "sipServer": st.config.sip_host,
            "sipPort": st.config.sip_port.to_string(),
            "username": eph.account.username,
            "password": eph.password,
            "extension": eph.account.extension,
            "displayName": eph.account.display_name,
            "domain": st.config.sip_domain,
            "wsUri": ws_uri(&st, &w, &headers),
            "expiresAt": eph.expires_at,
            "iceServers": w.ice_servers(),
        }
    })))
}
