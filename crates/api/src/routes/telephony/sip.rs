//! /api/telephony/sip: creating an agent's SIP account, its status, and
//! the short-lived credentials a softphone registers with.

use axum::extract::State;
use axum::http::header;
use chrono::{DateTime, Utc};
use domain::users::UserSip;
use domain::webrtc::IceServer;
use domain::SipCredentials;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::JsonResult;
use crate::auth::{Admin, CurrentUser};
use crate::doc;
use crate::error::AppError;
use crate::extract::AppJson;
use crate::routes::max_len;
use crate::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sip_create))
        .routes(routes!(sip_status))
        .routes(routes!(sip_credentials))
}

/// seeds/001's body; the names make the SIP display name.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SipCreateBody {
    user_id: i64,
    primer_nombre: Option<String>,
    primer_apellido: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SipCreated {
    pub success: bool,
    pub message: String,
    pub sip_peer: CreatedPeer,
    /// The SIP password, shown only here.
    pub sip_credentials: SipCredentials,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedPeer {
    pub sip_username: String,
    pub extension: String,
    /// active | inactive
    pub status: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SipStatus {
    pub success: bool,
    pub sip_peer: UserSip,
}

#[derive(Serialize, ToSchema)]
pub struct CredentialsAnswer {
    pub success: bool,
    pub credentials: SoftphoneCredentials,
}

/// What a softphone registers with: the account's username and a
/// short-lived password.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SoftphoneCredentials {
    /// Host of the SIP UDP/TCP listener.
    pub sip_server: String,
    /// Its port, as a string (seeds/001).
    pub sip_port: String,
    pub username: String,
    /// Valid until `expiresAt`.
    pub password: String,
    pub extension: String,
    pub display_name: String,
    /// The SIP domain (realm).
    pub domain: String,
    /// SIP over WebSocket URL.
    pub ws_uri: String,
    pub expires_at: DateTime<Utc>,
    pub ice_servers: Vec<IceServer>,
}

/// seeds/001: create a user's SIP account.
///
/// The password is in the answer, once. Roles: admin.
#[utoipa::path(
    post,
    path = "/sip/create",
    tag = "telephony",
    request_body = SipCreateBody,
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "Created", body = SipCreated),
        doc::Role,
        doc::JsonBody,
        doc::NotFound,
        doc::Conflict,
    ),
)]
async fn sip_create(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppJson(b): AppJson<SipCreateBody>,
) -> JsonResult<SipCreated> {
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
    Ok(AppJson(SipCreated {
        success: true,
        message: "SIP peer created successfully".into(),
        sip_peer: CreatedPeer {
            sip_username: account.username,
            extension: account.extension,
            status: if account.active { "active" } else { "inactive" }.into(),
        },
        sip_credentials: creds,
    }))
}

/// seeds/001: the caller's SIP account and its registration.
///
/// Any role.
#[utoipa::path(
    get,
    path = "/sip/status",
    tag = "telephony",
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "The account", body = SipStatus), doc::Auth, doc::NotFound),
)]
async fn sip_status(u: CurrentUser) -> JsonResult<SipStatus> {
    let Some(sip) = u.user.sip else {
        return Err(AppError::NotFound("sip account"));
    };
    Ok(AppJson(SipStatus {
        success: true,
        sip_peer: sip,
    }))
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

/// Short-lived softphone credentials for the caller.
///
/// Any role with a SIP account.
#[utoipa::path(
    get,
    path = "/sip/credentials",
    tag = "telephony",
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The credentials", body = CredentialsAnswer),
        doc::Auth,
        doc::NotFound,
        doc::Conflict,
    ),
)]
async fn sip_credentials(
    State(st): State<AppState>,
    u: CurrentUser,
    headers: axum::http::HeaderMap,
) -> JsonResult<CredentialsAnswer> {
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
    Ok(AppJson(CredentialsAnswer {
        success: true,
        credentials: SoftphoneCredentials {
            sip_server: st.config.sip_host.clone(),
            sip_port: st.config.sip_port.to_string(),
            username: eph.account.username,
            password: eph.password,
            extension: eph.account.extension,
            display_name: eph.account.display_name,
            domain: st.config.sip_domain.clone(),
            ws_uri: ws_uri(&st, &w, &headers),
            expires_at: eph.expires_at,
            ice_servers: w.ice_servers(),
        },
    }))
}
