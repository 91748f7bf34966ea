//! `/api/openapi.json`: an OpenAPI 3.1 description of every route, built
//! from one table. docs/API.md has the bodies in detail; this document
//! lists operations, roles and authentication for tools.

use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};

use crate::extract::AppJson;
use crate::state::AppState;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Public,
    AnyRole,
    Staff,
    Admin,
}

/// (method, path, tag, summary, access)
pub const ROUTES: &[(&str, &str, &str, &str, Access)] = &[
    (
        "post",
        "/api/auth/login",
        "auth",
        "Log in (login or email + password); sets the session cookie",
        Access::Public,
    ),
    (
        "post",
        "/api/auth/logout",
        "auth",
        "Log out; clears the session cookie",
        Access::Public,
    ),
    (
        "get",
        "/api/auth/me",
        "auth",
        "The logged-in user",
        Access::AnyRole,
    ),
    (
        "get",
        "/api/auth/tokens",
        "auth",
        "List API tokens",
        Access::Admin,
    ),
    (
        "post",
        "/api/auth/tokens",
        "auth",
        "Create an API token (secret shown once)",
        Access::Admin,
    ),
    (
        "delete",
        "/api/auth/tokens/{id}",
        "auth",
        "Revoke an API token",
        Access::Admin,
    ),
    (
        "get",
        "/api/agents",
        "agents",
        "List users (search, role, hasSip, active, limit, offset, order)",
        Access::Staff,
    ),
    (
        "post",
        "/api/agents",
        "agents",
        "Create a user; agents get a SIP account (password shown once)",
        Access::Admin,
    ),
    (
        "get",
        "/api/agents/stats",
        "agents",
        "User and agent counts",
        Access::Staff,
    ),
    (
        "get",
        "/api/agents/{id}",
        "agents",
        "One user (agents: only themselves)",
        Access::AnyRole,
    ),
    (
        "patch",
        "/api/agents/{id}",
        "agents",
        "Update a user",
        Access::Admin,
    ),
    (
        "delete",
        "/api/agents/{id}",
        "agents",
        "Delete a user and their SIP account",
        Access::Admin,
    ),
    (
        "post",
        "/api/agents/{id}/deactivate",
        "agents",
        "Deactivate a user (sessions and registrations end)",
        Access::Admin,
    ),
    (
        "post",
        "/api/agents/{id}/regenerate-sip",
        "agents",
        "Rotate (or create) the SIP password",
        Access::Admin,
    ),
    (
        "get",
        "/api/audit",
        "audit",
        "Audit log (action, actorId, limit, offset)",
        Access::Admin,
    ),
    (
        "get",
        "/hr/users",
        "hr",
        "seeds/004: list users (accountType, search)",
        Access::Staff,
    ),
    (
        "post",
        "/hr/users",
        "hr",
        "seeds/004: create a user with SIP credentials",
        Access::Admin,
    ),
    (
        "get",
        "/hr/stats",
        "hr",
        "seeds/004: HR page figures",
        Access::Staff,
    ),
    (
        "get",
        "/hr/users/{id}",
        "hr",
        "seeds/004: one user",
        Access::Staff,
    ),
    (
        "put",
        "/hr/users/{id}",
        "hr",
        "seeds/004: update a user",
        Access::Admin,
    ),
    (
        "delete",
        "/hr/users/{id}",
        "hr",
        "seeds/004: delete a user",
        Access::Admin,
    ),
    (
        "post",
        "/hr/users/{id}/regenerate-sip",
        "hr",
        "seeds/004: rotate SIP credentials",
        Access::Admin,
    ),
    (
        "get",
        "/hr/webrtc-config",
        "hr",
        "STUN/TURN servers and the softphone WebSocket URL",
        Access::AnyRole,
    ),
    (
        "put",
        "/hr/webrtc-config",
        "hr",
        "Change STUN/TURN servers and the WebSocket URL",
        Access::Admin,
    ),
    (
        "get",
        "/api/telephony/status",
        "telephony",
        "PBX status (active calls, registered contacts)",
        Access::AnyRole,
    ),
    (
        "post",
        "/api/telephony/sip/create",
        "telephony",
        "seeds/001: create a user's SIP account",
        Access::Admin,
    ),
    (
        "get",
        "/api/telephony/sip/status",
        "telephony",
        "seeds/001: own SIP account and registration",
        Access::AnyRole,
    ),
    (
        "get",
        "/api/telephony/sip/credentials",
        "telephony",
        "Short-lived softphone credentials for the caller",
        Access::AnyRole,
    ),
    (
        "get",
        "/api/telephony/calls/active",
        "telephony",
        "Calls in progress (agents: their own)",
        Access::AnyRole,
    ),
    (
        "get",
        "/api/telephony/calls/history",
        "telephony",
        "CDRs (from, to, agentId, disposition, search, order, format=csv)",
        Access::AnyRole,
    ),
    (
        "get",
        "/api/telephony/calls/stats",
        "telephony",
        "CDR figures (startDate, endDate, agentId)",
        Access::AnyRole,
    ),
    (
        "get",
        "/api/telephony/calls/{call_id}",
        "telephony",
        "One call with its legs (agents: their own)",
        Access::AnyRole,
    ),
    (
        "get",
        "/api/telephony/registrations",
        "telephony",
        "Registered SIP contacts",
        Access::Staff,
    ),
    (
        "get",
        "/api/telephony/security/blocked",
        "telephony",
        "Sources refused after failed SIP authentication",
        Access::Admin,
    ),
    (
        "delete",
        "/api/telephony/security/blocked/{ip}",
        "telephony",
        "Lift the ban on a source address (audited)",
        Access::Admin,
    ),
    (
        "post",
        "/api/provision",
        "provisioning",
        "seeds/000: console login (or session) -> short-lived SIP credentials",
        Access::Public,
    ),
    (
        "post",
        "/api/provision.php",
        "provisioning",
        "seeds/000: same as /api/provision",
        Access::Public,
    ),
    (
        "get",
        "/api/events",
        "events",
        "WebSocket of live events (cookie, bearer or ?token=)",
        Access::AnyRole,
    ),
    (
        "get",
        "/api/health",
        "system",
        "Liveness and database reachability",
        Access::Public,
    ),
    (
        "get",
        "/api/ready",
        "system",
        "Readiness: 200 when the database answers and the SIP engine listens, else 503",
        Access::Public,
    ),
    (
        "get",
        "/metrics",
        "system",
        "Prometheus metrics (text format); also on metrics.listen without auth",
        Access::Admin,
    ),
    (
        "get",
        "/api/openapi.json",
        "system",
        "This document",
        Access::Public,
    ),
];

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/openapi.json", get(document))
}

async fn document() -> AppJson<Value> {
    AppJson(build())
}

/// The OpenAPI document.
pub fn build() -> Value {
    let mut paths = Map::new();
    for (method, path, tag, summary, access) in ROUTES {
        let mut op = json!({
            "tags": [tag],
            "summary": summary,
            "responses": {
                "200": {"description": "success"},
                "400": {"description": "malformed request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "422": {"description": "invalid field", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        });
        let roles = match access {
            Access::Public => None,
            Access::AnyRole => Some("any role"),
            Access::Staff => Some("admin, supervisor"),
            Access::Admin => Some("admin"),
        };
        if let Some(roles) = roles {
            op["security"] = json!([{"cookieAuth": []}, {"bearerAuth": []}]);
            op["description"] = json!(format!("Roles: {roles}."));
            op["responses"]["401"] = json!({"description": "not authenticated"});
            if *access != Access::AnyRole {
                op["responses"]["403"] = json!({"description": "wrong role"});
            }
        }
        if path.contains("{id}") {
            op["parameters"] = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "format": "int64"}}]);
        }
        let entry = paths
            .entry((*path).to_string())
            .or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "centralita",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Call-center telephony server. Request and response bodies: docs/API.md.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "cookieAuth": {"type": "apiKey", "in": "cookie", "name": crate::auth::SESSION_COOKIE},
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "API token (ctk_...)"},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "success": {"const": false},
                        "error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}},
                    },
                },
            },
        },
    })
}
