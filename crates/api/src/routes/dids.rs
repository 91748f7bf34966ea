//! /api/telephony/dids: inbound numbers and where their calls go, admin
//! only, every change audited. The SIP server re-reads the routes after
//! each change (domain `did` events).

use axum::extract::State;
use axum::http::StatusCode;
use domain::dids::{Did, DidInput};
use domain::DomainError;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Admin;
use crate::doc::{self, Done};
use crate::error::AppError;
use crate::extract::{AppJson, AppPath};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(did_list, did_create))
        .routes(routes!(did_get, did_patch, did_delete))
}

type JsonResult<T> = Result<AppJson<T>, AppError>;

#[derive(Serialize, ToSchema)]
pub struct DidList {
    pub success: bool,
    pub total: usize,
    pub dids: Vec<Did>,
}

#[derive(Serialize, ToSchema)]
pub struct DidAnswer {
    pub success: bool,
    pub did: Did,
}

/// A number already routed on that trunk says so in its own code.
fn did_error(e: DomainError) -> AppError {
    match e {
        DomainError::Conflict {
            field: "number", ..
        } => AppError::Conflict {
            code: "duplicate_did",
            message: "this number already has a route on that trunk".into(),
        },
        other => other.into(),
    }
}

/// List DIDs.
///
/// Every inbound number, pattern and catch-all (`*`), by id. Roles: admin.
#[utoipa::path(
    get,
    path = "/api/telephony/dids",
    tag = "dids",
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "Every DID", body = DidList), doc::Role),
)]
async fn did_list(State(st): State<AppState>, Admin(_): Admin) -> JsonResult<DidList> {
    let dids = st.services.dids().list().await?;
    Ok(AppJson(DidList {
        success: true,
        total: dids.len(),
        dids,
    }))
}

/// Create a DID.
///
/// `number` (an exact number, a `_` pattern or `*`) is required, and the
/// agent's extension in `destination` unless `destinationType` is
/// `reject`. Roles: admin.
#[utoipa::path(
    post,
    path = "/api/telephony/dids",
    tag = "dids",
    request_body = DidInput,
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 201, description = "Created", body = DidAnswer),
        doc::Role,
        doc::JsonBody,
        doc::Conflict,
    ),
)]
async fn did_create(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppJson(b): AppJson<DidInput>,
) -> Result<(StatusCode, AppJson<DidAnswer>), AppError> {
    let did = st
        .services
        .dids()
        .create(&u.actor(), &b)
        .await
        .map_err(did_error)?;
    Ok((
        StatusCode::CREATED,
        AppJson(DidAnswer { success: true, did }),
    ))
}

/// One DID.
///
/// Roles: admin.
#[utoipa::path(
    get,
    path = "/api/telephony/dids/{id}",
    tag = "dids",
    params(("id" = i64, Path, description = "DID id")),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "The DID", body = DidAnswer), doc::Role, doc::BadInput, doc::NotFound),
)]
async fn did_get(
    State(st): State<AppState>,
    Admin(_): Admin,
    AppPath(id): AppPath<i64>,
) -> JsonResult<DidAnswer> {
    let did = st.services.dids().require(id).await?;
    Ok(AppJson(DidAnswer { success: true, did }))
}

/// Update a DID.
///
/// Only the fields present change. Roles: admin.
#[utoipa::path(
    patch,
    path = "/api/telephony/dids/{id}",
    tag = "dids",
    params(("id" = i64, Path, description = "DID id")),
    request_body = DidInput,
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The updated DID", body = DidAnswer),
        doc::Role,
        doc::JsonBody,
        doc::NotFound,
        doc::Conflict,
    ),
)]
async fn did_patch(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppPath(id): AppPath<i64>,
    AppJson(b): AppJson<DidInput>,
) -> JsonResult<DidAnswer> {
    let did = st
        .services
        .dids()
        .update(&u.actor(), id, &b)
        .await
        .map_err(did_error)?;
    Ok(AppJson(DidAnswer { success: true, did }))
}

/// Delete a DID.
///
/// Roles: admin.
#[utoipa::path(
    delete,
    path = "/api/telephony/dids/{id}",
    tag = "dids",
    params(("id" = i64, Path, description = "DID id")),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "Deleted", body = Done), doc::Role, doc::BadInput, doc::NotFound),
)]
async fn did_delete(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppPath(id): AppPath<i64>,
) -> JsonResult<Done> {
    st.services.dids().delete(&u.actor(), id).await?;
    Ok(AppJson(Done::new()))
}
