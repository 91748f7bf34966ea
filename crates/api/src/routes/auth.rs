//! /api/auth: login, logout, me, API tokens.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::auth::ApiToken;
use domain::User;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::max_len;
use crate::auth::{self as a, Admin, Credential, CurrentUser};
use crate::doc::{self, Done};
use crate::error::AppError;
use crate::extract::{AppJson, AppPath, AppQuery, ClientIp, Page};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    /// Login or email.
    login: String,
    password: String,
}

/// `{"success": true, "user": ...}`
#[derive(Serialize, ToSchema)]
pub struct UserAnswer {
    pub success: bool,
    pub user: User,
}

/// How the caller authenticated.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthenticatedBy {
    Session,
    Token,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    pub success: bool,
    pub user: User,
    pub authenticated_by: AuthenticatedBy,
}

#[derive(Serialize, ToSchema)]
pub struct TokenList {
    pub success: bool,
    pub total: i64,
    pub tokens: Vec<ApiToken>,
}

/// The new token; `secret` is shown only here.
#[derive(Serialize, ToSchema)]
pub struct TokenCreated {
    pub success: bool,
    pub token: ApiToken,
    /// The bearer token (`ctk_...`). Not stored in clear: shown once.
    pub secret: String,
}

/// Log in.
///
/// With a login (or email) and password; sets the session cookie. Public.
#[utoipa::path(
    post,
    path = "/api/auth/login",
    tag = "auth",
    request_body = LoginBody,
    responses(
        (status = 200, description = "Logged in; `Set-Cookie` carries the session", body = UserAnswer,
            headers(("Set-Cookie" = String, description = "the session cookie (HttpOnly, SameSite=Strict)"))),
        doc::Login,
        doc::JsonBody,
    ),
)]
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
        AppJson(UserAnswer {
            success: true,
            user: out.user,
        }),
    )
        .into_response())
}

/// Log out.
///
/// Ends the session of the cookie, if any, and clears the cookie. Public.
#[utoipa::path(
    post,
    path = "/api/auth/logout",
    tag = "auth",
    responses(
        (status = 200, description = "Logged out (also without a session)", body = Done,
            headers(("Set-Cookie" = String, description = "clears the session cookie"))),
        doc::Internal,
    ),
)]
async fn logout(
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, AppError> {
    if let Some(token) = a::cookie(&headers, a::SESSION_COOKIE) {
        st.services.auth.logout(&token).await?;
    }
    Ok((
        [(header::SET_COOKIE, a::clear_cookie())],
        AppJson(Done::new()),
    )
        .into_response())
}

/// The logged-in user.
///
/// Any role.
#[utoipa::path(
    get,
    path = "/api/auth/me",
    tag = "auth",
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "The caller", body = Me), doc::Auth),
)]
async fn me(u: CurrentUser) -> AppJson<Me> {
    let via = match u.credential {
        Credential::Session(_) => AuthenticatedBy::Session,
        Credential::Token => AuthenticatedBy::Token,
    };
    AppJson(Me {
        success: true,
        user: u.user,
        authenticated_by: via,
    })
}

/// List API tokens.
///
/// Roles: admin.
#[utoipa::path(
    get,
    path = "/api/auth/tokens",
    tag = "auth",
    params(Page),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "Tokens, newest first", body = TokenList), doc::Role, doc::BadInput),
)]
async fn list_tokens(
    State(st): State<AppState>,
    Admin(_): Admin,
    AppQuery(p): AppQuery<Page>,
) -> Result<AppJson<TokenList>, AppError> {
    let (tokens, total) = st.services.auth.list_tokens(p.limit(), p.offset()).await?;
    Ok(AppJson(TokenList {
        success: true,
        total,
        tokens,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewToken {
    name: String,
    /// Whose token it is (default: the caller).
    user_id: Option<i64>,
}

/// Create an API token.
///
/// The secret is shown once. Roles: admin.
#[utoipa::path(
    post,
    path = "/api/auth/tokens",
    tag = "auth",
    request_body = NewToken,
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 201, description = "Created", body = TokenCreated),
        doc::Role,
        doc::JsonBody,
        doc::NotFound,
    ),
)]
async fn create_token(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppJson(b): AppJson<NewToken>,
) -> Result<(StatusCode, AppJson<TokenCreated>), AppError> {
    let uid = b.user_id.unwrap_or(u.user.id);
    let (token, secret) = st
        .services
        .auth
        .create_token(&u.actor(), &b.name, uid)
        .await?;
    Ok((
        StatusCode::CREATED,
        AppJson(TokenCreated {
            success: true,
            token,
            secret,
        }),
    ))
}

/// Revoke an API token.
///
/// Roles: admin.
#[utoipa::path(
    delete,
    path = "/api/auth/tokens/{id}",
    tag = "auth",
    params(("id" = i64, Path, description = "token id")),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "Revoked", body = Done), doc::Role, doc::BadInput, doc::NotFound),
)]
async fn revoke_token(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppPath(id): AppPath<i64>,
) -> Result<AppJson<Done>, AppError> {
    st.services.auth.revoke_token(&u.actor(), id).await?;
    Ok(AppJson(Done::new()))
}
