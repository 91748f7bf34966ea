//! `/api/openapi.json`: the OpenAPI 3.1 document, generated from the code.
//!
//! Every route is added through [`api`], an `utoipa_axum::OpenApiRouter`
//! whose `routes!(handler, ...)` takes each route's method and path from the
//! handler's `#[utoipa::path]`: the router and the document come from one
//! source, so a route cannot exist without its description (and no module
//! may add routes any other way; `tests/api/openapi.rs` checks both the
//! source and the assembled router). docs/API.md stays for prose.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::provision::{ProvisionError, Provisioned};
use super::{
    agents, audit, auth, campaign_trunks, dialplan, dids, events, health, hr, metrics, pbx,
    provision, ready, sip_ws, telephony, trunks,
};
use crate::doc::{Done, ErrorBody};
use crate::state::AppState;

/// The security requirement of authenticated operations, for
/// `#[utoipa::path(security(...))]`: a console session cookie or an API
/// token as a bearer token (either one).
pub const COOKIE_AUTH: &str = "cookieAuth";
pub const BEARER_AUTH: &str = "bearerAuth";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "centralita",
        description = "Call-center telephony server: agents, SIP accounts, calls (CDRs), \
            live events and the softphone's provisioning. JSON in camelCase; answers carry \
            `success` (or `status` on the seed-shaped `/hr` and `/api/provision` routes); \
            errors are `{\"success\": false, \"error\": {\"code\", \"message\"}}`. \
            Prose and examples: docs/API.md.",
    ),
    tags(
        (name = "auth", description = "Console login, sessions and API tokens"),
        (name = "agents", description = "Users and agents with their SIP accounts"),
        (name = "audit", description = "Who changed what"),
        (name = "hr", description = "The HR page endpoints of seeds/004 (`{\"status\": \"ok\"}` shapes)"),
        (name = "telephony", description = "PBX status, SIP accounts, calls (CDRs), registrations, SIP security"),
        (name = "trunks", description = "SIP trunks to carriers and other PBXs (admin)"),
        (name = "dids", description = "Inbound numbers and where their calls go (admin)"),
        (name = "provisioning", description = "seeds/000: a softphone trades a login for short-lived SIP credentials"),
        (name = "events", description = "Live events over WebSocket"),
        (name = "sip", description = "SIP over WebSocket (RFC 7118) for softphones"),
        (name = "system", description = "Health, readiness, metrics and this document"),
    ),
    components(schemas(ErrorBody, Done, Provisioned, ProvisionError)),
    modifiers(&SecuritySchemes),
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            COOKIE_AUTH,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::SESSION_COOKIE,
                "Console session, set by POST /api/auth/login",
            ))),
        );
        components.add_security_scheme(
            BEARER_AUTH,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "API token (`ctk_...`, POST /api/auth/tokens) or a session token",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every HTTP route of the main listener, with its description. The SIP
/// WebSocket is documented at `ws_path` (configurable, `/ws` by default).
pub fn api(ws_path: &str) -> OpenApiRouter<AppState> {
    let (schemas, mut paths, ws) = routes!(sip_ws::upgrade);
    if ws_path != sip_ws::DEFAULT_PATH {
        if let Some(item) = paths.paths.remove(sip_ws::DEFAULT_PATH) {
            paths.paths.insert(ws_path.to_string(), item);
        }
    }
    let mut api = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::routes())
        .merge(agents::routes())
        .merge(audit::routes())
        .merge(hr::routes())
        .merge(telephony::routes())
        .merge(trunks::routes())
        .merge(dids::routes())
        .merge(dialplan::routes())
        .merge(campaign_trunks::routes())
        .merge(pbx::routes())
        .merge(provision::routes())
        .merge(events::routes())
        .merge(health::routes())
        .merge(ready::routes())
        .merge(metrics::routes())
        .merge(routes())
        .routes((schemas, paths, ws));
    qualify_operation_ids(api.get_openapi_mut());
    api
}

/// utoipa names an operation after its handler function, and handlers
/// of different areas share names (`list`, `create`): prefix the tag so
/// every `operationId` is unique (`agents.list`, `hr.list`).
fn qualify_operation_ids(doc: &mut Document) {
    for item in doc.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            let tag = op.tags.as_ref().and_then(|t| t.first()).cloned();
            if let (Some(tag), Some(id)) = (tag, op.operation_id.as_mut()) {
                if !id.starts_with(&format!("{tag}.")) {
                    *id = format!("{tag}.{id}");
                }
            }
        }
    }
}

/// The document for a server whose SIP WebSocket is at `ws_path`.
pub fn document(ws_path: &str) -> Document {
    api(ws_path).into_openapi()
}

/// The document, serialized once when the router is built.
#[derive(Clone)]
pub struct Served(pub Arc<Bytes>);

impl Served {
    pub fn new(doc: &Document) -> Self {
        // Serializing a tree of strings and maps cannot fail; an empty
        // body would fail the tests that read the document.
        let json = serde_json::to_vec(doc).unwrap_or_default();
        Self(Arc::new(Bytes::from(json)))
    }
}

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_json))
}

/// This document (OpenAPI 3.1).
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "system",
    responses((status = 200, description = "The OpenAPI document", body = Object, content_type = "application/json")),
)]
async fn openapi_json(Extension(doc): Extension<Served>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        Bytes::clone(&doc.0),
    )
        .into_response()
}
