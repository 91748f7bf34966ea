//! /hr: the HR page endpoints of seeds/004 (`{"status": "ok", ...}`
//! shapes), backed by the same services as /api/agents.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use domain::users::{User, UserQuery};
use domain::webrtc::{WebrtcSettings, WebrtcUpdate};
use domain::{NewUser, Role, UserUpdate};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::{Admin, CurrentUser, Staff};
use crate::error::AppError;
use crate::extract::{AppJson, AppPath, AppQuery};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/hr/users", get(list).post(create))
        .route("/hr/stats", get(stats))
        .route("/hr/users/{id}", get(get_one).put(update).delete(remove))
        .route("/hr/users/{id}/regenerate-sip", post(regenerate))
        .route("/hr/webrtc-config", get(get_webrtc).put(put_webrtc))
}

type JsonResult = Result<AppJson<serde_json::Value>, AppError>;

/// The seeds' user shape.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HrUser {
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

/// SIP credentials in the seeds' shape (no domain).
fn hr_creds(c: &domain::SipCredentials) -> serde_json::Value {
    json!({"username": c.username, "password": c.password, "extension": c.extension})
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    account_type: Option<String>,
    search: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn list(
    State(st): State<AppState>,
    Staff(_): Staff,
    AppQuery(q): AppQuery<ListQuery>,
) -> JsonResult {
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
    Ok(AppJson(
        json!({"status": "ok", "total": total, "users": users}),
    ))
}

async fn stats(State(st): State<AppState>, Staff(_): Staff) -> JsonResult {
    let s = st.services.users.stats().await?;
    Ok(AppJson(json!({"status": "ok", "stats": s})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateBody {
    name: String,
    phone_number: Option<String>,
    password: String,
    account_type: String,
    email: Option<String>,
    login: Option<String>,
}

async fn create(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppJson(b): AppJson<CreateBody>,
) -> Result<(StatusCode, AppJson<serde_json::Value>), AppError> {
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
        AppJson(json!({
            "status": "ok",
            "user": hr_user(user),
            "sipCredentials": creds.as_ref().map(hr_creds),
            "message": message,
        })),
    ))
}

async fn get_one(
    State(st): State<AppState>,
    Staff(_): Staff,
    AppPath(id): AppPath<i64>,
) -> JsonResult {
    let user = st.services.users.require(id).await?;
    Ok(AppJson(json!({"status": "ok", "user": hr_user(user)})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UpdateBody {
    name: Option<String>,
    phone_number: Option<String>,
    email: Option<String>,
    login: Option<String>,
    account_type: Option<String>,
    active: Option<bool>,
    password: Option<String>,
}

async fn update(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppPath(id): AppPath<i64>,
    AppJson(b): AppJson<UpdateBody>,
) -> JsonResult {
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
            },
        )
        .await?;
    Ok(AppJson(json!({"status": "ok", "user": hr_user(user)})))
}

async fn remove(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppPath(id): AppPath<i64>,
) -> JsonResult {
    st.services.users.delete(&u.actor(), id).await?;
    Ok(AppJson(json!({"status": "ok"})))
}

async fn regenerate(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppPath(id): AppPath<i64>,
) -> JsonResult {
    let creds = st.services.sip_accounts.rotate(&u.actor(), id).await?;
    Ok(AppJson(
        json!({"status": "ok", "sipCredentials": hr_creds(&creds)}),
    ))
}

/// WebrtcConfig of docs/API.md; the TURN password is never returned.
pub fn webrtc_json(w: &WebrtcSettings, ws_url: &str) -> serde_json::Value {
    let ice: Vec<serde_json::Value> = w
        .ice_servers()
        .into_iter()
        .map(|s| {
            let mut v = json!({"urls": s.urls});
            if let Some(u) = s.username {
                v["username"] = json!(u);
            }
            if s.credential.is_some() {
                v["hasCredential"] = json!(true);
            }
            v
        })
        .collect();
    json!({
        "stunServer": w.stun_server,
        "turnServer": w.turn_server,
        "turnUsername": w.turn_username,
        "hasTurnPassword": w.turn_password.is_some(),
        "wsUrl": ws_url,
        "asteriskWsUrl": ws_url,
        "wsUrlConfigured": w.ws_url.is_some(),
        "iceServers": ice,
    })
}

async fn get_webrtc(
    State(st): State<AppState>,
    _u: CurrentUser,
    headers: axum::http::HeaderMap,
) -> JsonResult {
    let w = st.services.webrtc.get().await?;
    let url = super::telephony::ws_uri(&st, &w, &headers);
    Ok(AppJson(
        json!({"status": "ok", "config": webrtc_json(&w, &url)}),
    ))
}

/// `null` or `""` clears a field; a missing field stays as it is.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WebrtcBody {
    #[serde(default, deserialize_with = "nullable")]
    stun_server: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    turn_server: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    turn_username: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    turn_password: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    ws_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    asterisk_ws_url: Option<Option<String>>,
}

fn nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::<String>::deserialize(d)?))
}

async fn put_webrtc(
    State(st): State<AppState>,
    Admin(u): Admin,
    headers: axum::http::HeaderMap,
    AppJson(b): AppJson<WebrtcBody>,
) -> JsonResult {
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
    Ok(AppJson(
        json!({"status": "ok", "config": webrtc_json(&w, &url)}),
    ))
}
