//! /api/agents: users and agents with their SIP accounts (admin writes,
//! admin and supervisor read).

use axum::extract::State;
use axum::http::StatusCode;
use domain::users::{UserQuery, UserStats};
use domain::{NewUser, Role, SipCredentials, User, UserUpdate};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Admin, CurrentUser, Staff};
use crate::doc::{self, Done};
use crate::error::AppError;
use crate::extract::{AppJson, AppPath, AppQuery};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(stats))
        .routes(routes!(get_one, update, remove))
        .routes(routes!(deactivate))
        .routes(routes!(regenerate))
}

type JsonResult<T> = Result<AppJson<T>, AppError>;

#[derive(Serialize, ToSchema)]
pub struct AgentList {
    pub success: bool,
    pub total: i64,
    pub agents: Vec<User>,
}

#[derive(Serialize, ToSchema)]
pub struct AgentStats {
    pub success: bool,
    pub stats: UserStats,
}

#[derive(Serialize, ToSchema)]
pub struct AgentAnswer {
    pub success: bool,
    pub agent: User,
}

/// The new user; `sipCredentials` (agents, or `createSip`) carry the SIP
/// password, shown only here.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentCreated {
    pub success: bool,
    pub agent: User,
    pub sip_credentials: Option<SipCredentials>,
}

/// The new SIP password, shown only here.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SipRotated {
    pub success: bool,
    pub sip_credentials: SipCredentials,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Matches name, login, email, phone, SIP username or extension.
    search: Option<String>,
    /// admin | supervisor | agent
    role: Option<String>,
    has_sip: Option<bool>,
    active: Option<bool>,
    /// 1..500, default 50.
    limit: Option<i64>,
    offset: Option<i64>,
    /// A field (`name`, `createdAt`, ...), `-` in front for descending.
    order: Option<String>,
}

/// List users.
///
/// Roles: admin, supervisor.
#[utoipa::path(
    get,
    path = "/api/agents",
    tag = "agents",
    params(ListQuery),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "One page of users", body = AgentList), doc::Role, doc::BadInput),
)]
async fn list(
    State(st): State<AppState>,
    Staff(_): Staff,
    AppQuery(q): AppQuery<ListQuery>,
) -> JsonResult<AgentList> {
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
    Ok(AppJson(AgentList {
        success: true,
        total,
        agents,
    }))
}

/// User and agent counts.
///
/// Roles: admin, supervisor.
#[utoipa::path(
    get,
    path = "/api/agents/stats",
    tag = "agents",
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "Counts", body = AgentStats), doc::Role),
)]
async fn stats(State(st): State<AppState>, Staff(_): Staff) -> JsonResult<AgentStats> {
    let s = st.services.users.stats().await?;
    Ok(AppJson(AgentStats {
        success: true,
        stats: s,
    }))
}

/// A login or an email is required.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewAgent {
    name: String,
    login: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    password: String,
    /// admin | supervisor | agent
    role: String,
    /// Give a non-agent a SIP account too (agents always get one).
    create_sip: Option<bool>,
}

/// Create a user.
///
/// Agents get a SIP account; its password is in the answer, once.
/// Roles: admin.
#[utoipa::path(
    post,
    path = "/api/agents",
    tag = "agents",
    request_body = NewAgent,
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 201, description = "Created", body = AgentCreated),
        doc::Role,
        doc::JsonBody,
        doc::Conflict,
    ),
)]
async fn create(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppJson(b): AppJson<NewAgent>,
) -> Result<(StatusCode, AppJson<AgentCreated>), AppError> {
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
        AppJson(AgentCreated {
            success: true,
            agent,
            sip_credentials: creds,
        }),
    ))
}

/// One user.
///
/// Any role; agents only themselves (403 otherwise).
#[utoipa::path(
    get,
    path = "/api/agents/{id}",
    tag = "agents",
    params(("id" = i64, Path, description = "user id")),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "The user", body = AgentAnswer), doc::Role, doc::BadInput, doc::NotFound),
)]
async fn get_one(
    State(st): State<AppState>,
    u: CurrentUser,
    AppPath(id): AppPath<i64>,
) -> JsonResult<AgentAnswer> {
    if !u.scope().may_see_user(id) {
        return Err(AppError::Forbidden);
    }
    let agent = st.services.users.require(id).await?;
    Ok(AppJson(AgentAnswer {
        success: true,
        agent,
    }))
}

/// Only the fields present change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AgentChanges {
    name: Option<String>,
    login: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    role: Option<String>,
    active: Option<bool>,
    password: Option<String>,
    /// Record this agent's calls: `true` always, `false` never (unless the
    /// other agent of the call is recorded), `null` the system default
    /// (`media.recording`); absent leaves it as it is. Audited with its value.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<bool>, nullable)]
    record_calls: Option<Option<bool>>,
    /// What the agent may dial beyond the extensions: `internal`,
    /// `national`, `international`, or `null` for the system default
    /// (`dialplan.agent_permission`); absent leaves it as it is. Audited
    /// with its value.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    dial_permission: Option<Option<String>>,
}

/// A field that may be absent (`None`), `null` (`Some(None)`) or a value.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Update a user.
///
/// Roles: admin.
#[utoipa::path(
    patch,
    path = "/api/agents/{id}",
    tag = "agents",
    params(("id" = i64, Path, description = "user id")),
    request_body = AgentChanges,
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The updated user", body = AgentAnswer),
        doc::Role,
        doc::JsonBody,
        doc::NotFound,
        doc::Conflict,
    ),
)]
async fn update(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppPath(id): AppPath<i64>,
    AppJson(b): AppJson<AgentChanges>,
) -> JsonResult<AgentAnswer> {
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
                record_calls: b.record_calls,
                dial_permission: b.dial_permission,
            },
        )
        .await?;
    Ok(AppJson(AgentAnswer {
        success: true,
        agent,
    }))
}

/// Deactivate a user.
///
/// Their sessions and SIP registrations end. Roles: admin.
#[utoipa::path(
    post,
    path = "/api/agents/{id}/deactivate",
    tag = "agents",
    params(("id" = i64, Path, description = "user id")),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The deactivated user", body = AgentAnswer),
        doc::Role,
        doc::BadInput,
        doc::NotFound,
        doc::Conflict,
    ),
)]
async fn deactivate(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppPath(id): AppPath<i64>,
) -> JsonResult<AgentAnswer> {
    let agent = st.services.users.deactivate(&u.actor(), id).await?;
    Ok(AppJson(AgentAnswer {
        success: true,
        agent,
    }))
}

/// Rotate (or create) the SIP password.
///
/// The new password is in the answer, once. Roles: admin.
#[utoipa::path(
    post,
    path = "/api/agents/{id}/regenerate-sip",
    tag = "agents",
    params(("id" = i64, Path, description = "user id")),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The new SIP credentials", body = SipRotated),
        doc::Role,
        doc::BadInput,
        doc::NotFound,
        doc::Conflict,
    ),
)]
async fn regenerate(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppPath(id): AppPath<i64>,
) -> JsonResult<SipRotated> {
    let creds = st.services.sip_accounts.rotate(&u.actor(), id).await?;
    Ok(AppJson(SipRotated {
        success: true,
        sip_credentials: creds,
    }))
}

/// Delete a user and their SIP account.
///
/// Roles: admin.
#[utoipa::path(
    delete,
    path = "/api/agents/{id}",
    tag = "agents",
    params(("id" = i64, Path, description = "user id")),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "Deleted", body = Done),
        doc::Role,
        doc::BadInput,
        doc::NotFound,
        doc::Conflict,
    ),
)]
async fn remove(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppPath(id): AppPath<i64>,
) -> JsonResult<Done> {
    st.services.users.delete(&u.actor(), id).await?;
    Ok(AppJson(Done::new()))
}
