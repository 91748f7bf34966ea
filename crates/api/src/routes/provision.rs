//! /api/provision and /api/provision.php (seeds/000): a softphone trades a
//! console login (or the caller's session / bearer token) for short-lived
//! SIP credentials. Answers keep the seed's `{"status": ...}` shapes.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use domain::webrtc::IceServer;
use domain::DomainError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoResponses, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{bearer, cookie, resolve, SESSION_COOKIE};
use crate::extract::ClientIp;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(provision))
        .routes(routes!(provision_php))
}

/// A console login (or email) and password. Without a body, the session
/// cookie or bearer token of the request is used instead.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ProvisionBody {
    username: String,
    password: String,
}

/// seeds/000's answer (snake_case, `status: ok`).
#[derive(Serialize, ToSchema)]
pub struct Provisioned {
    /// `ok`
    pub status: String,
    pub sip_user: String,
    /// Short-lived: valid until `expires_at`.
    pub sip_pass: String,
    pub sip_domain: String,
    pub ws_uri: String,
    pub extension: String,
    pub display_name: String,
    pub expires_at: DateTime<Utc>,
    pub ice_servers: Vec<IceServer>,
}

/// seeds/000's error shape: `{"status": "error", "message"}`.
#[derive(Serialize, ToSchema)]
pub struct ProvisionError {
    /// `error`
    pub status: String,
    pub message: String,
}

/// Every answer of the two provisioning paths (one list for both; its
/// schemas are registered in `routes::openapi`).
#[derive(IntoResponses)]
pub enum ProvisionAnswers {
    /// SIP credentials
    #[response(status = 200)]
    Ok(Provisioned),
    /// Malformed JSON
    #[response(status = 400)]
    BadRequest(ProvisionError),
    /// Invalid credentials (or no session without a body)
    #[response(status = 401)]
    Unauthorized(ProvisionError),
    /// The SIP account is inactive
    #[response(status = 403)]
    Forbidden(ProvisionError),
    /// The user has no SIP account
    #[response(status = 404)]
    NotFound(ProvisionError),
    /// Unknown, missing or too long field
    #[response(status = 422)]
    Invalid(ProvisionError),
    /// Too many attempts; `Retry-After`
    #[response(status = 429, headers(("Retry-After" = u64, description = "seconds")))]
    TooMany(ProvisionError),
    /// Server fault
    #[response(status = 500)]
    Internal(ProvisionError),
    /// Password checks saturated; `Retry-After`
    #[response(status = 503, headers(("Retry-After" = u64, description = "seconds")))]
    Busy(ProvisionError),
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(ProvisionError {
            status: "error".into(),
            message: message.into(),
        }),
    )
        .into_response()
}

fn rate_limited(secs: u64) -> Response {
    retry_later(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many attempts, try again later",
        secs,
    )
}

fn retry_later(status: StatusCode, message: &str, secs: u64) -> Response {
    let mut r = error(status, message);
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "provisioning failed");
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// seeds/000: trade a login for short-lived SIP credentials.
///
/// With a JSON body (`username`, `password`: a console login), or with an
/// empty body and the caller's session cookie or bearer token. Public.
#[utoipa::path(
    post,
    path = "/api/provision",
    tag = "provisioning",
    request_body(content = Option<ProvisionBody>, description = "Optional: empty to use the session or bearer token", content_type = "application/json"),
    security((), ("cookieAuth" = []), ("bearerAuth" = [])),
    responses(ProvisionAnswers),
)]
async fn provision(
    State(st): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let user = if body.iter().all(u8::is_ascii_whitespace) {
        let session = cookie(&headers, SESSION_COOKIE);
        match resolve(&st, session.as_deref(), bearer(&headers).as_deref()).await {
            Ok(Some((u, _))) => u,
            Ok(None) => return error(StatusCode::UNAUTHORIZED, "Invalid credentials"),
            Err(e) => return internal(e),
        }
    } else {
        let b: ProvisionBody = match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) if e.is_syntax() || e.is_eof() => {
                return error(StatusCode::BAD_REQUEST, "Malformed JSON")
            }
            Err(e) => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!("Invalid request: {e}"),
                )
            }
        };
        if b.username.chars().count() > domain::validate::MAX_EMAIL
            || b.password.chars().count() > domain::validate::MAX_PASSWORD
        {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid request: field too long",
            );
        }
        let ip = ip.as_string();
        match st
            .services
            .auth
            .authenticate(&b.username, &b.password, ip.as_deref())
            .await
        {
            Ok(u) => u,
            Err(DomainError::RateLimited { retry_after_secs }) => {
                return rate_limited(retry_after_secs)
            }
            Err(DomainError::Busy { retry_after_secs }) => {
                return retry_later(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Server busy, try again shortly",
                    retry_after_secs,
                )
            }
            Err(DomainError::InvalidCredentials) => {
                return error(StatusCode::UNAUTHORIZED, "Invalid credentials")
            }
            Err(e) => return internal(e),
        }
    };
    let eph = match st.services.sip_accounts.issue_ephemeral(user.id).await {
        Ok(e) => e,
        Err(DomainError::NotFound { .. }) => {
            return error(StatusCode::NOT_FOUND, "No SIP account for this user")
        }
        Err(DomainError::NotAllowed { .. }) => {
            return error(StatusCode::FORBIDDEN, "SIP account inactive")
        }
        Err(e) => return internal(e),
    };
    let w = match st.services.webrtc.get().await {
        Ok(w) => w,
        Err(e) => return internal(e),
    };
    axum::Json(Provisioned {
        status: "ok".into(),
        sip_user: eph.account.username,
        sip_pass: eph.password,
        sip_domain: st.config.sip_domain.clone(),
        ws_uri: super::telephony::ws_uri(&st, &w, &headers),
        extension: eph.account.extension,
        display_name: eph.account.display_name,
        expires_at: eph.expires_at,
        ice_servers: w.ice_servers(),
    })
    .into_response()
}

/// seeds/000: the same as `/api/provision` (the PHP endpoint's path).
#[utoipa::path(
    post,
    path = "/api/provision.php",
    tag = "provisioning",
    request_body(content = Option<ProvisionBody>, description = "Optional: empty to use the session or bearer token", content_type = "application/json"),
    security((), ("cookieAuth" = []), ("bearerAuth" = [])),
    responses(ProvisionAnswers),
)]
async fn provision_php(
    st: State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    provision(st, ip, headers, body).await
}
