//! Who is calling: the session cookie or a bearer API token, and role
//! checks.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use domain::{Actor, Role, Scope, User};

use crate::error::AppError;
use crate::extract::ClientIp;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "centralita_session";

/// The value of cookie `name` in the request headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
}

/// A bearer token from `Authorization`.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// `Set-Cookie` for a new session.
pub fn session_cookie(token: &str, max_age_secs: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let v = format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age_secs}{secure}"
    );
    // Hex token and fixed text: always a valid header value.
    HeaderValue::from_str(&v)
        .unwrap_or_else(|_| HeaderValue::from_static("centralita_session=; Max-Age=0; Path=/"))
}

pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("centralita_session=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0")
}

/// How the caller authenticated.
#[derive(Debug, Clone)]
pub enum Credential {
    Session(String),
    Token,
}

/// The authenticated caller (any role). Rejects with 401.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub user: User,
    pub credential: Credential,
    pub ip: ClientIp,
}

impl CurrentUser {
    pub fn require(&self, roles: &[Role]) -> Result<(), AppError> {
        if roles.contains(&self.user.role) {
            Ok(())
        } else {
            Err(AppError::Forbidden)
        }
    }

    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }

    /// What this user may see (`domain::access`).
    pub fn scope(&self) -> Scope {
        Scope::of(&self.user)
    }

    pub fn actor(&self) -> Actor {
        Actor {
            user_id: Some(self.user.id),
            login: Some(self.user.handle().to_string()),
            ip: self.ip.as_string(),
        }
    }
}

/// Resolves a session token or API token to a user.
pub async fn resolve(
    state: &AppState,
    session: Option<&str>,
    token: Option<&str>,
) -> Result<Option<(User, Credential)>, AppError> {
    if let Some(t) = token {
        return Ok(state
            .services
            .auth
            .token_user(t)
            .await?
            .map(|u| (u, Credential::Token)));
    }
    if let Some(s) = session {
        return Ok(state
            .services
            .auth
            .session_user(s)
            .await?
            .map(|u| (u, Credential::Session(s.to_string()))));
    }
    Ok(None)
}

impl<S> FromRequestParts<S> for CurrentUser
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let app = AppState::from_ref(state);
        let ip = match ClientIp::from_request_parts(parts, state).await {
            Ok(ip) => ip,
            Err(never) => match never {},
        };
        let token = bearer(&parts.headers);
        let session = cookie(&parts.headers, SESSION_COOKIE);
        match resolve(&app, session.as_deref(), token.as_deref()).await? {
            Some((user, credential)) => Ok(Self {
                user,
                credential,
                ip,
            }),
            None => Err(AppError::Unauthorized),
        }
    }
}

/// Admin only.
pub struct Admin(pub CurrentUser);

/// Admin or supervisor.
pub struct Staff(pub CurrentUser);

impl<S> FromRequestParts<S> for Admin
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let u = CurrentUser::from_request_parts(parts, state).await?;
        u.require(&[Role::Admin])?;
        Ok(Self(u))
    }
}

impl<S> FromRequestParts<S> for Staff
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let u = CurrentUser::from_request_parts(parts, state).await?;
        u.require(&[Role::Admin, Role::Supervisor])?;
        Ok(Self(u))
    }
}
