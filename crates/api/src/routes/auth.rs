//! /api/auth: login, logout, me, API tokens.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use super::max_len;
use crate::auth::{self as a, Admin, Credential, CurrentUser};
use crate::error::AppError;
use crate::extract::{AppJson, AppPath, AppQuery, ClientIp, Page};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/auth/login", post(login))
        .route("/api/auth/logout", post(logout))
        .route("/api/auth/me", get(me))
        .route("/api/auth/tokens", get(list_tokens).post(create_token))
        .route("/api/auth/tokens/{id}", delete(revoke_token))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    login: String,
    password: String,
}

async fn login(
    State(st): State<AppState>,
    ip: ClientIp,
    AppJson(b): AppJson<LoginBody>,
) -> Result<Response, AppError> {
    max_len("login", &b.login, domain::validate::MAX_EMAIL)?;
    max_len("password", &b.password, domain::validate::MAX_PASSWORD)?;
    let ip = ip.as_string();
    let out = st
        .services
        .auth
        .login(&b.login, &b.password, ip.as_deref())
        .await?;
    let ttl = (out.expires_at - chrono::Utc::now()).num_seconds().max(0);
    let secure = st.config.cookie_secure || st.config.served_over_tls;
    let cookie = a::session_cookie(&out.session_token, ttl, secure);
    Ok((
        [(header::SET_COOKIE, cookie)],
        AppJson(json!({"success": true, "user": out.user})),
    )
        .into_response())
}

async fn logout(
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, AppError> {
    if let Some(token) = a::cookie(&headers, a::SESSION_COOKIE) {
        st.services.auth.logout(&token).await?;
    }
    Ok((
        [(header::SET_COOKIE, a::clear_cookie())],
        AppJson(json!({"success": true})),
    )
        .into_response())
}

async fn me(u: CurrentUser) -> AppJson<serde_json::Value> {
    let via = match u.credential {
        Credential::Session(_) => "session",
        Credential::Token => "token",
    };
    AppJson(json!({"success": true, "user": u.user, "authenticatedBy": via}))
}

async fn list_tokens(
    State(st): State<AppState>,
    Admin(_): Admin,
    AppQuery(p): AppQuery<Page>,
) -> Result<AppJson<serde_json::Value>, AppError> {
    let (tokens, total) = st.services.auth.list_tokens(p.limit(), p.offset()).await?;
    Ok(AppJson(
        json!({"success": true, "total": total, "tokens": tokens}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewToken {
    name: String,
    user_id: Option<i64>,
}

async fn create_token(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppJson(b): AppJson<NewToken>,
) -> Result<(StatusCode, AppJson<serde_json::Value>), AppError> {
    let uid = b.user_id.unwrap_or(u.user.id);
    let (token, secret) = st
        .services
        .auth
        .create_token(&u.actor(), &b.name, uid)
        .await?;
    Ok((
        StatusCode::CREATED,
        AppJson(json!({"success": true, "token": token, "secret": secret})),
    ))
}

async fn revoke_token(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppPath(id): AppPath<i64>,
) -> Result<AppJson<serde_json::Value>, AppError> {
    st.services.auth.revoke_token(&u.actor(), id).await?;
    Ok(AppJson(json!({"success": true})))
}
