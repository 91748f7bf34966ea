//! /hr: the HR page endpoints of seeds/004 (`{"status": "ok", ...}`
//! shapes), backed by the same services as /api/agents.

use axum::extract::State;
use axum::http::StatusCode;
use domain::users::{User, UserQuery, UserStats};
use domain::webrtc::{WebrtcSettings, WebrtcUpdate};
use domain::{NewUser, Role, UserUpdate};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Admin, CurrentUser, Staff};
use crate::doc;
use crate::error::AppError;
use crate::extract::{AppJson, AppPath, AppQuery};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(stats))
        .routes(routes!(get_one, update, remove))
        .routes(routes!(regenerate))
        .routes(routes!(get_webrtc, put_webrtc))
}

type JsonResult<T> = Result<AppJson<T>, AppError>;

/// `"ok"`: the seeds' success marker.
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum HrStatus {
    Ok,
}

/// The seeds' user shape.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HrUser {
    id: i64,
    name: String,
    email: Option<String>,
    login: Option<String>,
    phone_number: Option<String>,
    account_type: Role,
    active: bool,
    sip_username: Option<String>,
    sip_extension: Option<String>,
    has_sip_credentials: bool,
    sip_registered: bool,
    created_at: chrono::DateTime<chrono::Utc>,
}

fn hr_user(u: User) -> HrUser {
    HrUser {
        id: u.id,
        name: u.name,
        email: u.email,
        login: u.login,
        phone_number: u.phone,
        account_type: u.role,
        active: u.active,
        sip_username: u.sip.as_ref().map(|s| s.username.clone()),
        sip_extension: u.sip.as_ref().map(|s| s.extension.clone()),
        has_sip_credentials: u.has_sip_credentials,
        sip_registered: u.sip.as_ref().is_some_and(|s| s.registered),
        created_at: u.created_at,
    }
}

/// SIP credentials in the seeds' shape (no domain); the password is
/// shown only here.
#[derive(Serialize, ToSchema)]
pub struct HrCreds {
    pub username: String,
    pub password: String,
    pub extension: String,
}

fn hr_creds(c: &domain::SipCredentials) -> HrCreds {
    HrCreds {
        username: c.username.clone(),
        password: c.password.clone(),
        extension: c.extension.clone(),
    }
}

#[derive(Serialize, ToSchema)]
pub struct HrUsers {
    pub status: HrStatus,
    pub total: i64,
    pub users: Vec<HrUser>,
}

#[derive(Serialize, ToSchema)]
pub struct HrStats {
    pub status: HrStatus,
    pub stats: UserStats,
}

#[derive(Serialize, ToSchema)]
pub struct HrUserAnswer {
    pub status: HrStatus,
    pub user: HrUser,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HrCreated {
    pub status: HrStatus,
    pub user: HrUser,
    /// Agents only.
    pub sip_credentials: Option<HrCreds>,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct HrDone {
    pub status: HrStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HrRotated {
    pub status: HrStatus,
    pub sip_credentials: HrCreds,
}

#[derive(Serialize, ToSchema)]
pub struct HrWebrtc {
    pub status: HrStatus,
    pub config: WebrtcConfig,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// admin | supervisor | agent | all
    account_type: Option<String>,
    /// Matches name, login, email, phone, SIP username or extension.
    search: Option<String>,
    /// 1..500, default 500.
    limit: Option<i64>,
    offset: Option<i64>,
}

/// seeds/004: list users.
///
/// Roles: admin, supervisor.
#[utoipa::path(
    get,
    path = "/hr/users",
    tag = "hr",
    params(ListQuery),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "Users", body = HrUsers), doc::Role, doc::BadInput),
)]
async fn list(
    State(st): State<AppState>,
    Staff(_): Staff,
    AppQuery(q): AppQuery<ListQuery>,
) -> JsonResult<HrUsers> {
    let role = match q
        .account_type
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty() && *r != "all")
    {
        Some(r) => Some(Role::parse(r).ok_or_else(|| {
            AppError::BadRequest("accountType must be admin, supervisor or agent".into())
        })?),
        None => None,
    };
    super::max_len("search", q.search.as_deref().unwrap_or(""), 100)?;
    let uq = UserQuery {
        search: q.search,
        role,
        limit: q.limit.unwrap_or(500).clamp(1, 500),
        offset: q.offset.unwrap_or(0).max(0),
        ..Default::default()
    };
    let (users, total) = st.services.users.list(&uq).await?;
    let users: Vec<HrUser> = users.into_iter().map(hr_user).collect();
    Ok(AppJson(HrUsers {
        status: HrStatus::Ok,
        total,
        users,
    }))
}

/// seeds/004: the HR page figures.
///
/// Roles: admin, supervisor.
#[utoipa::path(
    get,
    path = "/hr/stats",
    tag = "hr",
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "Counts", body = HrStats), doc::Role),
)]
async fn stats(State(st): State<AppState>, Staff(_): Staff) -> JsonResult<HrStats> {
    let s = st.services.users.stats().await?;
    Ok(AppJson(HrStats {
        status: HrStatus::Ok,
        stats: s,
    }))
}

/// A login or an email is required.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HrNewUser {
    name: String,
    phone_number: Option<String>,
    password: String,
    /// admin | supervisor | agent
    account_type: String,
    email: Option<String>,
    login: Option<String>,
}

/// seeds/004: create a user.
///
/// Agents get SIP credentials, shown only here. Roles: admin.
#[utoipa::path(
    post,
    path = "/hr/users",
    tag = "hr",
    request_body = HrNewUser,
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 201, description = "Created", body = HrCreated),
        doc::Role,
        doc::JsonBody,
        doc::Conflict,
    ),
)]
async fn create(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppJson(b): AppJson<HrNewUser>,
) -> Result<(StatusCode, AppJson<HrCreated>), AppError> {
    let (user, creds) = st
        .services
        .users
        .create(
            &u.actor(),
            NewUser {
                name: b.name,
                login: b.login,
                email: b.email,
                phone: b.phone_number,
                password: b.password,
                role: b.account_type,
                create_sip: None,
            },
        )
        .await?;
    let message = match &creds {
        Some(c) => format!(
            "Agent created with SIP credentials. Extension: {}",
            c.extension
        ),
        None => "User created".to_string(),
    };
    Ok((
        StatusCode::CREATED,
        AppJson(HrCreated {
            status: HrStatus::Ok,
            user: hr_user(user),
            sip_credentials: creds.as_ref().map(hr_creds),
            message,
        }),
    ))
}

/// seeds/004: one user.
///
/// Roles: admin, supervisor.
#[utoipa::path(
    get,
    path = "/hr/users/{id}",
    tag = "hr",
    params(("id" = i64, Path, description = "user id")),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "The user", body = HrUserAnswer), doc::Role, doc::BadInput, doc::NotFound),
)]
async fn get_one(
    State(st): State<AppState>,
    Staff(_): Staff,
    AppPath(id): AppPath<i64>,
) -> JsonResult<HrUserAnswer> {
    let user = st.services.users.require(id).await?;
    Ok(AppJson(HrUserAnswer {
        status: HrStatus::Ok,
        user: hr_user(user),
    }))
}

/// Only the fields present change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HrUserChanges {
    name: Option<String>,
    phone_number: Option<String>,
    email: Option<String>,
    login: Option<String>,
    account_type: Option<String>,
    active: Option<bool>,
    password: Option<String>,
}

/// seeds/004: update a user.
///
/// Roles: admin.
#[utoipa::path(
    put,
    path = "/hr/users/{id}",
    tag = "hr",
    params(("id" = i64, Path, description = "user id")),
    request_body = HrUserChanges,
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The updated user", body = HrUserAnswer),
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
    AppJson(b): AppJson<HrUserChanges>,
) -> JsonResult<HrUserAnswer> {
    let user = st
        .services
        .users
        .update(
            &u.actor(),
            id,
            UserUpdate {
                name: b.name,
                login: b.login,
                email: b.email,
                phone: b.phone_number,
                role: b.account_type,
                active: b.active,
                password: b.password,
                // Not fields of the seeds' HR page.
                record_calls: None,
                dial_permission: None,
            },
        )
        .await?;
    Ok(AppJson(HrUserAnswer {
        status: HrStatus::Ok,
        user: hr_user(user),
    }))
}

/// seeds/004: delete a user and their SIP account.
///
/// Roles: admin.
#[utoipa::path(
    delete,
    path = "/hr/users/{id}",
    tag = "hr",
    params(("id" = i64, Path, description = "user id")),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "Deleted", body = HrDone),
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
) -> JsonResult<HrDone> {
    st.services.users.delete(&u.actor(), id).await?;
    Ok(AppJson(HrDone {
        status: HrStatus::Ok,
    }))
}

/// seeds/004: rotate SIP credentials.
///
/// The new password is in the answer, once. Roles: admin.
#[utoipa::path(
    post,
    path = "/hr/users/{id}/regenerate-sip",
    tag = "hr",
    params(("id" = i64, Path, description = "user id")),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The new SIP credentials", body = HrRotated),
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
) -> JsonResult<HrRotated> {
    let creds = st.services.sip_accounts.rotate(&u.actor(), id).await?;
    Ok(AppJson(HrRotated {
        status: HrStatus::Ok,
        sip_credentials: hr_creds(&creds),
    }))
}

/// WebrtcConfig of docs/API.md; the TURN password is never returned.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebrtcConfig {
    pub stun_server: Option<String>,
    pub turn_server: Option<String>,
    pub turn_username: Option<String>,
    pub has_turn_password: bool,
    /// The softphone's SIP WebSocket URL: the configured one, else this
    /// server's `/ws` as the client reached it.
    pub ws_url: String,
    /// Same as `wsUrl` (the seeds' name).
    pub asterisk_ws_url: String,
    /// `wsUrl` was set in the console (not derived).
    pub ws_url_configured: bool,
    pub ice_servers: Vec<IceServerView>,
}

/// An ICE server without its credential.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IceServerView {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Present (`true`) when a TURN password is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_credential: Option<bool>,
}

pub fn webrtc_config(w: &WebrtcSettings, ws_url: &str) -> WebrtcConfig {
    let ice = w
        .ice_servers()
        .into_iter()
        .map(|s| IceServerView {
            urls: s.urls,
            username: s.username,
            has_credential: s.credential.is_some().then_some(true),
        })
        .collect();
    WebrtcConfig {
        stun_server: w.stun_server.clone(),
        turn_server: w.turn_server.clone(),
        turn_username: w.turn_username.clone(),
        has_turn_password: w.turn_password.is_some(),
        ws_url: ws_url.to_string(),
        asterisk_ws_url: ws_url.to_string(),
        ws_url_configured: w.ws_url.is_some(),
        ice_servers: ice,
    }
}

/// STUN/TURN servers and the softphone WebSocket URL.
///
/// Any role (softphones need it).
#[utoipa::path(
    get,
    path = "/hr/webrtc-config",
    tag = "hr",
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "The settings", body = HrWebrtc), doc::Auth),
)]
async fn get_webrtc(
    State(st): State<AppState>,
    _u: CurrentUser,
    headers: axum::http::HeaderMap,
) -> JsonResult<HrWebrtc> {
    let w = st.services.webrtc.get().await?;
    let url = super::telephony::ws_uri(&st, &w, &headers);
    Ok(AppJson(HrWebrtc {
        status: HrStatus::Ok,
        config: webrtc_config(&w, &url),
    }))
}

/// `null` or `""` clears a field; a missing field stays as it is.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WebrtcBody {
    /// `stun:host:port`
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    stun_server: Option<Option<String>>,
    /// `turn:host:port` or `turns:host:port`
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    turn_server: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    turn_username: Option<Option<String>>,
    /// Write-only.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    turn_password: Option<Option<String>>,
    /// `ws://` or `wss://` URL the softphones use instead of this server's.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    ws_url: Option<Option<String>>,
    /// The seeds' name of `wsUrl` (used when `wsUrl` is absent).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    asterisk_ws_url: Option<Option<String>>,
}

fn nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::<String>::deserialize(d)?))
}

/// Change STUN/TURN servers and the WebSocket URL.
///
/// Roles: admin.
#[utoipa::path(
    put,
    path = "/hr/webrtc-config",
    tag = "hr",
    request_body = WebrtcBody,
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "The new settings", body = HrWebrtc), doc::Role, doc::JsonBody),
)]
async fn put_webrtc(
    State(st): State<AppState>,
    Admin(u): Admin,
    headers: axum::http::HeaderMap,
    AppJson(b): AppJson<WebrtcBody>,
) -> JsonResult<HrWebrtc> {
    let w = st
        .services
        .webrtc
        .update(
            &u.actor(),
            WebrtcUpdate {
                stun_server: b.stun_server,
                turn_server: b.turn_server,
                turn_username: b.turn_username,
                turn_password: b.turn_password,
                ws_url: b.ws_url.or(b.asterisk_ws_url),
            },
        )
        .await?;
    let url = super::telephony::ws_uri(&st, &w, &headers);
    Ok(AppJson(HrWebrtc {
        status: HrStatus::Ok,
        config: webrtc_config(&w, &url),
    }))
}
