//! /api/agents: users and agents with their SIP accounts (admin writes,
//! admin and supervisor read).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use domain::users::UserQuery;
use domain::{NewUser, Role, UserUpdate};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Admin, CurrentUser, Staff};
use crate::error::AppError;
use crate::extract::{AppJson, AppPath, AppQuery};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/agents", get(list).post(create))
        .route("/api/agents/stats", get(stats))
        .route(
            "/api/agents/{id}",
            get(get_one).patch(update).delete(remove),
        )
        .route("/api/agents/{id}/deactivate", post(deactivate))
        .route("/api/agents/{id}/regenerate-sip", post(regenerate))
}

type JsonResult = Result<AppJson<serde_json::Value>, AppError>;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    search: Option<String>,
    role: Option<String>,
    has_sip: Option<bool>,
    active: Option<bool>,
    limit: Option<i64>,
    offset: Option<i64>,
    order: Option<String>,
}

async fn list(
    State(st): State<AppState>,
    Staff(_): Staff,
    AppQuery(q): AppQuery<ListQuery>,
) -> JsonResult {
    let role = match q.role.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) => Some(Role::parse(r).ok_or_else(|| {
            AppError::BadRequest("role must be admin, supervisor or agent".into())
        })?),
        None => None,
    };
    super::max_len("search", q.search.as_deref().unwrap_or(""), 100)?;
    let uq = UserQuery {
        search: q.search,
        role,
        has_sip: q.has_sip,
        active: q.active,
        limit: q.limit.unwrap_or(50).clamp(1, 500),
        offset: q.offset.unwrap_or(0).max(0),
        order: q.order,
    };
    let (agents, total) = st.services.users.list(&uq).await.map_err(|e| match e {
        domain::DomainError::Invalid { message, .. } => AppError::BadRequest(message),
        other => other.into(),
    })?;
    Ok(AppJson(
        json!({"success": true, "total": total, "agents": agents}),
    ))
}

async fn stats(State(st): State<AppState>, Staff(_): Staff) -> JsonResult {
    let s = st.services.users.stats().await?;
    Ok(AppJson(json!({"success": true, "stats": s})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateBody {
    name: String,
    login: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    password: String,
    role: String,
    create_sip: Option<bool>,
}

async fn create(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppJson(b): AppJson<CreateBody>,
) -> Result<(StatusCode, AppJson<serde_json::Value>), AppError> {
    let (agent, creds) = st
        .services
        .users
        .create(
            &u.actor(),
            NewUser {
                name: b.name,
                login: b.login,
                email: b.email,
                phone: b.phone,
                password: b.password,
                role: b.role,
                create_sip: b.create_sip,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        AppJson(json!({"success": true, "agent": agent, "sipCredentials": creds})),
    ))
}

async fn get_one(
    State(st): State<AppState>,
    u: CurrentUser,
    AppPath(id): AppPath<i64>,
) -> JsonResult {
    if !u.scope().may_see_user(id) {
        return Err(AppError::Forbidden);
    }
    let agent = st.services.users.require(id).await?;
    Ok(AppJson(json!({"success": true, "agent": agent})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UpdateBody {
    name: Option<String>,
    login: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    role: Option<String>,
    active: Option<bool>,
    password: Option<String>,
}

async fn update(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppPath(id): AppPath<i64>,
    AppJson(b): AppJson<UpdateBody>,
) -> JsonResult {
    let agent = st
        .services
        .users
        .update(
            &u.actor(),
            id,
            UserUpdate {
                name: b.name,
                login: b.login,
                email: b.email,
                phone: b.phone,
                role: b.role,
                active: b.active,
                password: b.password,
            },
        )
        .await?;
    Ok(AppJson(json!({"success": true, "agent": agent})))
}

async fn deactivate(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppPath(id): AppPath<i64>,
) -> JsonResult {
    let agent = st.services.users.deactivate(&u.actor(), id).await?;
    Ok(AppJson(json!({"success": true, "agent": agent})))
}

async fn regenerate(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppPath(id): AppPath<i64>,
) -> JsonResult {
    let creds = st.services.sip_accounts.rotate(&u.actor(), id).await?;
    Ok(AppJson(json!({"success": true, "sipCredentials": creds})))
}

async fn remove(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppPath(id): AppPath<i64>,
) -> JsonResult {
    st.services.users.delete(&u.actor(), id).await?;
    Ok(AppJson(json!({"success": true})))
}
