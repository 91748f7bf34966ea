//! /api/provision and /api/provision.php (seeds/000): a softphone trades a
//! console login (or the caller's session / bearer token) for short-lived
//! SIP credentials. Answers keep the seed's `{"status": ...}` shapes.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use domain::DomainError;
use serde::Deserialize;
use serde_json::json;

use crate::auth::{bearer, cookie, resolve, SESSION_COOKIE};
use crate::extract::ClientIp;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/provision", post(provision))
        .route("/api/provision.php", post(provision))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    username: String,
    password: String,
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"status": "error", "message": message})),
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
        let b: Body = match serde_json::from_slice(&body) {
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
    axum::Json(json!({
        "status": "ok",
        "sip_user": eph.account.username,
        "sip_pass": eph.password,
        "sip_domain": st.config.sip_domain,
        "ws_uri": super::telephony::ws_uri(&st, &w, &headers),
        "extension": eph.account.extension,
        "display_name": eph.account.display_name,
        "expires_at": eph.expires_at,
        "ice_servers": w.ice_servers(),
    }))
    .into_response()
}
