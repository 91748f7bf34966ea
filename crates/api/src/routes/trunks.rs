//! /api/telephony/trunks: SIP trunks (seeds/001's list shape, seeds/003's
//! form fields and `preview_config`), admin only, every change audited.
//! Passwords are write-only: answers say `hasSecret` / `hasInboundSecret`.
//!
//! `test_connection` and `force_register` (seeds/003) go to the engine:
//! an OPTIONS from the SIP server's address, and the live registration.

use axum::extract::State;
use axum::http::StatusCode;
use domain::trunks::{self, Trunk, TrunkInput, TrunkPreview, TrunkQuery};
use domain::DomainError;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Admin;
use crate::doc::{self, Done};
use crate::error::AppError;
use crate::extract::{AppJson, AppPath, AppQuery};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(trunk_list, trunk_create))
        .routes(routes!(trunk_get, trunk_patch, trunk_put, trunk_delete))
        .routes(routes!(trunk_preview))
        .routes(routes!(trunk_preview_unsaved))
        .routes(routes!(trunk_force_register))
        .routes(routes!(trunk_test_connection))
}

type JsonResult<T> = Result<AppJson<T>, AppError>;

/// seeds/001's list: `count` as there, `total` as every list here (both
/// the number matching the filters).
#[derive(Serialize, ToSchema)]
pub struct TrunkList {
    pub success: bool,
    pub count: i64,
    pub total: i64,
    pub trunks: Vec<Trunk>,
}

#[derive(Serialize, ToSchema)]
pub struct TrunkAnswer {
    pub success: bool,
    pub trunk: Trunk,
}

/// The effective SIP settings of a trunk, passwords masked.
#[derive(Serialize, ToSchema)]
pub struct TrunkPreviewAnswer {
    pub success: bool,
    #[serde(flatten)]
    pub preview: TrunkPreview,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct TrunkListQuery {
    /// Matches name, description or host.
    search: Option<String>,
    /// active | inactive | maintenance | error
    status: Option<String>,
    /// twilio | vonage | bandwidth | custom
    provider: Option<String>,
    /// nat_provider | no_nat | pbx_lan | corporate | custom
    kind: Option<String>,
    /// 1..500, default 50.
    limit: Option<i64>,
    offset: Option<i64>,
    /// A field (`priority` (default), `name`, `id`, `status`, `provider`,
    /// `kind`, `host`, `maxChannels`, `totalCalls`, `createdAt`,
    /// `updatedAt`), `-` in front for descending.
    order: Option<String>,
}

/// A duplicate name says so in its own code.
fn trunk_error(e: DomainError) -> AppError {
    match e {
        DomainError::Conflict { field: "name", .. } => AppError::Conflict {
            code: "duplicate_trunk_name",
            message: "a trunk with this name already exists".into(),
        },
        other => other.into(),
    }
}

/// List trunks.
///
/// seeds/001: `{"success", "count", "trunks"}`, lowest priority first.
/// Roles: admin.
#[utoipa::path(
    get,
    path = "/api/telephony/trunks",
    tag = "trunks",
    params(TrunkListQuery),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "One page of trunks", body = TrunkList), doc::Role, doc::BadInput),
)]
async fn trunk_list(
    State(st): State<AppState>,
    Admin(_): Admin,
    AppQuery(q): AppQuery<TrunkListQuery>,
) -> JsonResult<TrunkList> {
    super::max_len("search", q.search.as_deref().unwrap_or(""), 100)?;
    let tq = TrunkQuery {
        search: q.search,
        status: q.status,
        provider: q.provider,
        kind: q.kind,
        limit: q.limit.unwrap_or(50).clamp(1, 500),
        offset: q.offset.unwrap_or(0).max(0),
        order: q.order,
    };
    let (trunks, total) = st.services.trunks().list(&tq).await.map_err(|e| match e {
        // A bad filter or order is a bad query, not a bad body.
        DomainError::Invalid { field, message } => {
            AppError::BadRequest(format!("{field}: {message}"))
        }
        other => other.into(),
    })?;
    Ok(AppJson(TrunkList {
        success: true,
        count: total,
        total,
        trunks,
    }))
}

/// Create a trunk.
///
/// `name` and `host` are required; the kind's preset fills the settings
/// the body leaves out. Roles: admin.
#[utoipa::path(
    post,
    path = "/api/telephony/trunks",
    tag = "trunks",
    request_body = TrunkInput,
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 201, description = "Created", body = TrunkAnswer),
        doc::Role,
        doc::JsonBody,
        doc::Conflict,
    ),
)]
async fn trunk_create(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppJson(b): AppJson<TrunkInput>,
) -> Result<(StatusCode, AppJson<TrunkAnswer>), AppError> {
    let trunk = st
        .services
        .trunks()
        .create(&u.actor(), &b)
        .await
        .map_err(trunk_error)?;
    Ok((
        StatusCode::CREATED,
        AppJson(TrunkAnswer {
            success: true,
            trunk,
        }),
    ))
}

/// One trunk.
///
/// Roles: admin.
#[utoipa::path(
    get,
    path = "/api/telephony/trunks/{id}",
    tag = "trunks",
    params(("id" = i64, Path, description = "trunk id")),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "The trunk", body = TrunkAnswer), doc::Role, doc::BadInput, doc::NotFound),
)]
async fn trunk_get(
    State(st): State<AppState>,
    Admin(_): Admin,
    AppPath(id): AppPath<i64>,
) -> JsonResult<TrunkAnswer> {
    let trunk = st.services.trunks().require(id).await?;
    Ok(AppJson(TrunkAnswer {
        success: true,
        trunk,
    }))
}

async fn update(st: &AppState, u: &Admin, id: i64, b: &TrunkInput) -> JsonResult<TrunkAnswer> {
    let trunk = st
        .services
        .trunks()
        .update(&u.0.actor(), id, b)
        .await
        .map_err(trunk_error)?;
    Ok(AppJson(TrunkAnswer {
        success: true,
        trunk,
    }))
}

/// Update a trunk.
///
/// Only the fields present change; passwords left out or `""` are kept,
/// `null` removes them. A new `kind` applies its preset to the fields the
/// body leaves out. Roles: admin.
#[utoipa::path(
    patch,
    path = "/api/telephony/trunks/{id}",
    tag = "trunks",
    params(("id" = i64, Path, description = "trunk id")),
    request_body = TrunkInput,
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The updated trunk", body = TrunkAnswer),
        doc::Role,
        doc::JsonBody,
        doc::NotFound,
        doc::Conflict,
    ),
)]
async fn trunk_patch(
    State(st): State<AppState>,
    u: Admin,
    AppPath(id): AppPath<i64>,
    AppJson(b): AppJson<TrunkInput>,
) -> JsonResult<TrunkAnswer> {
    update(&st, &u, id, &b).await
}

/// Update a trunk (seeds/003's PUT).
///
/// The same as PATCH: the seeds' form sends every field, and a password
/// field left empty keeps the stored password. Roles: admin.
#[utoipa::path(
    put,
    path = "/api/telephony/trunks/{id}",
    tag = "trunks",
    params(("id" = i64, Path, description = "trunk id")),
    request_body = TrunkInput,
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The updated trunk", body = TrunkAnswer),
        doc::Role,
        doc::JsonBody,
        doc::NotFound,
        doc::Conflict,
    ),
)]
async fn trunk_put(
    State(st): State<AppState>,
    u: Admin,
    AppPath(id): AppPath<i64>,
    AppJson(b): AppJson<TrunkInput>,
) -> JsonResult<TrunkAnswer> {
    update(&st, &u, id, &b).await
}

/// Delete a trunk.
///
/// Roles: admin.
#[utoipa::path(
    delete,
    path = "/api/telephony/trunks/{id}",
    tag = "trunks",
    params(("id" = i64, Path, description = "trunk id")),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "Deleted", body = Done), doc::Role, doc::BadInput, doc::NotFound),
)]
async fn trunk_delete(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppPath(id): AppPath<i64>,
) -> JsonResult<Done> {
    st.services.trunks().delete(&u.actor(), id).await?;
    Ok(AppJson(Done::new()))
}

/// The effective SIP settings of a trunk.
///
/// seeds/003's `preview_config`: the PJSIP sections (`config`) and the
/// same values as JSON (`settings`), passwords masked. Roles: admin.
#[utoipa::path(
    get,
    path = "/api/telephony/trunks/{id}/preview_config",
    tag = "trunks",
    params(("id" = i64, Path, description = "trunk id")),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "The effective settings", body = TrunkPreviewAnswer), doc::Role, doc::BadInput, doc::NotFound),
)]
async fn trunk_preview(
    State(st): State<AppState>,
    Admin(_): Admin,
    AppPath(id): AppPath<i64>,
) -> JsonResult<TrunkPreviewAnswer> {
    let preview = st.services.trunks().preview(id).await?;
    Ok(AppJson(TrunkPreviewAnswer {
        success: true,
        preview,
    }))
}

/// The effective SIP settings of a trunk not saved yet.
///
/// The body of a create; nothing is stored. For the form's preview before
/// saving. Roles: admin.
#[utoipa::path(
    post,
    path = "/api/telephony/trunks/preview_config",
    tag = "trunks",
    request_body = TrunkInput,
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "The effective settings", body = TrunkPreviewAnswer), doc::Role, doc::JsonBody),
)]
async fn trunk_preview_unsaved(
    Admin(_): Admin,
    AppJson(b): AppJson<TrunkInput>,
) -> JsonResult<TrunkPreviewAnswer> {
    let settings = trunks::resolve(&b, None)?;
    Ok(AppJson(TrunkPreviewAnswer {
        success: true,
        preview: trunks::preview_config(&settings),
    }))
}

/// A trunk's registration to its carrier, live from the SIP server.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrunkRegistration {
    /// registering | registered | rejected | failed | unregistered
    pub state: String,
    pub since: chrono::DateTime<chrono::Utc>,
    pub last_registered_at: Option<chrono::DateTime<chrono::Utc>>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub next_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    pub failures: u32,
    /// The far end's last refusal or failure (from the trunk's live state).
    pub last_error: Option<String>,
}

impl TrunkRegistration {
    fn of(v: domain::TrunkRegistrationView, last_error: Option<String>) -> Self {
        Self {
            state: v.state,
            since: v.since,
            last_registered_at: v.last_registered_at,
            expires_at: v.expires_at,
            next_attempt_at: v.next_attempt_at,
            failures: v.failures,
            last_error,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RegistrationAnswer {
    pub success: bool,
    pub registration: TrunkRegistration,
}

/// What the far end answered an OPTIONS.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OptionsResult {
    pub status: u16,
    pub reason: String,
    pub rtt_ms: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ConnectionTest {
    /// The far end's answer to an OPTIONS; `null` when none came.
    pub options: Option<OptionsResult>,
    /// For a registering trunk: its registration after a fresh attempt.
    pub registration: Option<TrunkRegistration>,
    /// Why the OPTIONS got no answer.
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ConnectionTestAnswer {
    pub success: bool,
    pub result: ConnectionTest,
}

fn engine(st: &AppState) -> Result<std::sync::Arc<dyn domain::Engine>, AppError> {
    st.engine
        .clone()
        .ok_or_else(|| AppError::Unavailable("no SIP server is running".into()))
}

/// Waits (up to `wait`) for trunk `id`'s registration attempt started at
/// `since` to end, and returns the registration as it stands then.
async fn settled_registration(
    engine: &dyn domain::Engine,
    id: i64,
    since: chrono::DateTime<chrono::Utc>,
    wait: std::time::Duration,
) -> Option<domain::TrunkRegistrationView> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let v = engine.trunk_registration(id)?;
        let settled = v.state != "registering" && v.since >= since;
        if settled || tokio::time::Instant::now() >= deadline {
            return Some(v);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Register a trunk now.
///
/// seeds/003's `force_register`: a REGISTER to the carrier at once, and
/// the registration after it (the answer waits up to 5 s for the
/// carrier). 409 `trunk_not_registering` when the trunk does not register
/// (inactive, or `sendsRegistration` off); 503 without a SIP server.
/// Audited as `trunk.force_register`. Roles: admin.
#[utoipa::path(
    post,
    path = "/api/telephony/trunks/{id}/force_register",
    tag = "trunks",
    params(("id" = i64, Path, description = "trunk id")),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The registration after the attempt", body = RegistrationAnswer),
        doc::Role,
        doc::BadInput,
        doc::NotFound,
        doc::Conflict,
        doc::Engine,
    ),
)]
async fn trunk_force_register(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppPath(id): AppPath<i64>,
) -> JsonResult<RegistrationAnswer> {
    let trunks = st.services.trunks();
    trunks.require(id).await?;
    let engine = engine(&st)?;
    let since = chrono::Utc::now() - chrono::Duration::milliseconds(5);
    if !engine.force_trunk_registration(id) {
        return Err(not_registering());
    }
    st.services
        .audit
        .log(
            &u.actor(),
            "trunk.force_register",
            "trunk",
            &id.to_string(),
            serde_json::json!({}),
        )
        .await?;
    let v = settled_registration(
        engine.as_ref(),
        id,
        since,
        std::time::Duration::from_secs(5),
    )
    .await
    .ok_or_else(not_registering)?;
    let last_error = trunks.require(id).await?.last_error;
    Ok(AppJson(RegistrationAnswer {
        success: true,
        registration: TrunkRegistration::of(v, last_error),
    }))
}

fn not_registering() -> AppError {
    AppError::Conflict {
        code: "trunk_not_registering",
        message: "this trunk does not register (inactive, or registration is off)".into(),
    }
}

/// Test a trunk's connection.
///
/// seeds/003's `test_connection`: a SIP OPTIONS to the trunk's host and
/// port over its transport, from the SIP server's address, and what the
/// far end answered (any answer, 404 included, proves it is reachable);
/// for a registering trunk also a fresh registration attempt and its
/// outcome. Answers 200 with the findings whatever they are; 503 without
/// a SIP server. Roles: admin.
#[utoipa::path(
    post,
    path = "/api/telephony/trunks/{id}/test_connection",
    tag = "trunks",
    params(("id" = i64, Path, description = "trunk id")),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "What the far end answered", body = ConnectionTestAnswer),
        doc::Role,
        doc::BadInput,
        doc::NotFound,
        doc::Engine,
    ),
)]
async fn trunk_test_connection(
    State(st): State<AppState>,
    Admin(_): Admin,
    AppPath(id): AppPath<i64>,
) -> JsonResult<ConnectionTestAnswer> {
    let trunks = st.services.trunks();
    let s = trunks.settings(id).await?;
    let engine = engine(&st)?;
    let transport: &'static str = match s.transport {
        trunks::TrunkTransport::Udp => "udp",
        trunks::TrunkTransport::Tcp => "tcp",
        other => other.as_str(),
    };
    let since = chrono::Utc::now() - chrono::Duration::milliseconds(5);
    let registering = engine.force_trunk_registration(id);
    let (options, error) = match engine.probe(s.host.clone(), s.port, transport).await {
        Ok(a) => (
            Some(OptionsResult {
                status: a.status,
                reason: a.reason,
                rtt_ms: a.rtt_ms,
            }),
            None,
        ),
        Err(e) => (None, Some(e)),
    };
    let registration = if registering {
        match settled_registration(
            engine.as_ref(),
            id,
            since,
            std::time::Duration::from_secs(5),
        )
        .await
        {
            Some(v) => Some(TrunkRegistration::of(
                v,
                trunks.require(id).await?.last_error,
            )),
            None => None,
        }
    } else {
        None
    };
    Ok(AppJson(ConnectionTestAnswer {
        success: true,
        result: ConnectionTest {
            options,
            registration,
            error,
        },
    }))
}
