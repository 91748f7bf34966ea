//! `/api/openapi.json` is the contract: every route is described, every
//! description is a route, and the document holds together (references
//! resolve, every operation has typed answers, JSON bodies are declared).

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::Value;

use crate::common::{Auth, TestApp};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// (method, path) of every operation in the document.
pub fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(m).is_some() {
                out.push((m.to_string(), path.clone()));
            }
        }
    }
    out
}

/// A concrete URL for a templated path (ids that do not exist).
pub fn concrete(path: &str, id: &str) -> String {
    path.replace("{id}", id)
        .replace("{call_id}", "no-such-call")
        .replace("{ip}", "192.0.2.1")
}

async fn served_doc(app: &TestApp) -> Value {
    let r = app.get("/api/openapi.json", &Auth::None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .is_ok_and(|c| c.starts_with("application/json")),
        "{:?}",
        r.headers
    );
    r.json()
}

/// Whether the answer came from the router's fallbacks (no such route or
/// no such method) rather than from a handler.
fn unrouted(r: &crate::common::Resp) -> bool {
    r.status == StatusCode::METHOD_NOT_ALLOWED
        || r.json()["error"]["code"] == "route_not_found"
        || r.text.contains("Console not built")
}

/// Both directions, per method: every documented operation reaches a
/// handler, and every other method on a documented path is a 405. A route
/// added outside the documented handlers is caught by
/// `routes_are_only_added_through_documented_handlers` below.
#[tokio::test]
async fn every_documented_operation_is_routed_and_no_other_method_is() {
    let app = TestApp::new().await;
    let doc = served_doc(&app).await;
    let ops = operations(&doc);
    assert!(ops.len() >= 40, "only {} operations", ops.len());
    let documented: BTreeSet<(String, String)> = ops.into_iter().collect();
    let paths: BTreeSet<String> = documented.iter().map(|(_, p)| p.clone()).collect();
    for path in &paths {
        let url = concrete(path, "999999");
        for m in METHODS {
            let method: Method = m.to_uppercase().parse().expect("method");
            let r = app.call(method, &url, None, &Auth::None).await;
            if documented.contains(&(m.to_string(), path.clone())) {
                assert!(
                    !unrouted(&r),
                    "{m} {path} is documented but not routed: {} {}",
                    r.status,
                    r.text
                );
            } else {
                assert_eq!(
                    (r.status, r.json()["error"]["code"].clone()),
                    (
                        StatusCode::METHOD_NOT_ALLOWED,
                        Value::from("method_not_allowed")
                    ),
                    "{m} {path} is routed but not documented: {}",
                    r.text
                );
            }
        }
    }
}

/// Every file of the API adds routes only with `routes!(handler)`, which
/// takes the method and path from the handler's `#[utoipa::path]`: a
/// plain axum route would exist without a description.
#[test]
fn routes_are_only_added_through_documented_handlers() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let forbidden = [
        ".route(",
        ".route_service(",
        ".nest_service(",
        "Router::new(",
        "axum::routing::",
        "routing::{",
        "OpenApiRouter::from(",
    ];
    let mut files = vec![src];
    let mut seen = 0;
    let mut offences = Vec::new();
    while let Some(p) = files.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).expect("read_dir") {
                files.push(e.expect("entry").path());
            }
            continue;
        }
        if p.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        seen += 1;
        let text = std::fs::read_to_string(&p).expect("read");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for f in forbidden {
                // Whole names only (`OpenApiRouter::new(` is fine).
                let hit = code.match_indices(f).any(|(i, _)| {
                    !code[..i]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                if hit {
                    offences.push(format!("{}:{}: {}", p.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(seen >= 20, "only {seen} source files found");
    assert!(
        offences.is_empty(),
        "routes added without an OpenAPI description (use `routes!(handler)` with \
         #[utoipa::path]):\n{}",
        offences.join("\n")
    );
}

/// Resolves a local `$ref` (`#/components/schemas/X`).
fn resolve<'a>(doc: &'a Value, r: &str) -> Option<&'a Value> {
    doc.pointer(r.strip_prefix('#')?)
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    if let Some(s) = x.as_str() {
                        out.push(s.to_string());
                    }
                }
                collect_refs(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_holds_together() {
    let app = TestApp::new().await;
    let doc = served_doc(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "centralita");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
    assert_eq!(schemes["cookieAuth"]["in"], "cookie");
    assert_eq!(schemes["cookieAuth"]["name"], api::auth::SESSION_COOKIE);
    let tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();

    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 50, "only {} references", refs.len());
    for r in &refs {
        assert!(resolve(&doc, r).is_some(), "unresolved $ref {r}");
    }

    let mut ids = BTreeMap::new();
    for (m, path) in operations(&doc) {
        let op = &doc["paths"][&path][&m];
        let what = format!("{m} {path}");
        let id = op["operationId"].as_str().expect("operationId");
        if let Some(other) = ids.insert(id.to_string(), what.clone()) {
            panic!("operationId {id} of {what} is also {other}'s");
        }
        assert!(
            op["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{what}: no summary"
        );
        let op_tags = op["tags"].as_array().expect("tags");
        assert!(!op_tags.is_empty(), "{what}: no tag");
        for t in op_tags {
            assert!(
                tags.contains(t.as_str().unwrap_or("")),
                "{what}: undeclared tag {t}"
            );
        }
        // Path parameters: every template variable is declared, required.
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        for var in path.split('{').skip(1).filter_map(|s| s.split('}').next()) {
            assert!(
                params
                    .iter()
                    .any(|p| p["name"] == var && p["in"] == "path" && p["required"] == true),
                "{what}: path parameter {var} not declared"
            );
        }
        // Security: only declared schemes.
        for req in op["security"].as_array().cloned().unwrap_or_default() {
            for scheme in req.as_object().expect("requirement").keys() {
                assert!(
                    schemes.contains_key(scheme),
                    "{what}: unknown scheme {scheme}"
                );
            }
        }
        // Responses: a success, and every answer either has a typed body
        // or is explicitly empty (101 Switching Protocols, 204).
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses
                .keys()
                .any(|s| s.starts_with('2') || s.as_str() == "101"),
            "{what}: no success response"
        );
        for (status, resp) in responses {
            let resp = match resp.get("$ref").and_then(Value::as_str) {
                Some(r) => resolve(&doc, r).expect("resolved above"),
                None => resp,
            };
            assert!(
                resp["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{what} {status}: no description"
            );
            if status == "101" || status == "204" {
                assert!(
                    resp.get("content").is_none(),
                    "{what} {status}: has content"
                );
                continue;
            }
            let content = resp["content"]
                .as_object()
                .unwrap_or_else(|| panic!("{what} {status}: no content"));
            assert!(!content.is_empty(), "{what} {status}: empty content");
            for (media, c) in content {
                assert!(
                    c["schema"].is_object(),
                    "{what} {status} {media}: no schema"
                );
            }
            // JSON errors are the envelope (or the seed-shaped one).
            if status.starts_with('4') || status.starts_with('5') {
                if let Some(schema) = content.get("application/json").map(|c| &c["schema"]) {
                    let r = schema["$ref"].as_str().unwrap_or("");
                    assert!(
                        r.ends_with("/ErrorBody")
                            || r.ends_with("/ProvisionError")
                            || r.ends_with("/NotReady"),
                        "{what} {status}: error body {schema}"
                    );
                }
            }
        }
        // Protected operations say who may call them and answer 401.
        if op.get("security").is_some_and(|s| {
            s.as_array().is_some_and(|a| {
                !a.iter()
                    .any(|r| r.as_object().is_some_and(|o| o.is_empty()))
            })
        }) {
            assert!(responses.contains_key("401"), "{what}: protected, no 401");
        }
    }
}

/// Request bodies: an operation that documents a JSON body parses one
/// (an unknown field is refused: every body type denies unknown fields),
/// and one that documents none ignores a body. This ties the document to
/// what the handlers really read.
#[tokio::test]
async fn documented_request_bodies_are_the_ones_handlers_read() {
    let app = TestApp::new().await;
    let doc = served_doc(&app).await;
    let admin = app.admin().await;
    let Auth::Cookie(cookie) = admin.clone() else {
        panic!("cookie")
    };
    let mut with_body = 0;
    for (m, path) in operations(&doc) {
        if m == "get" {
            continue;
        }
        let op = &doc["paths"][&path][&m];
        let body = &op["requestBody"];
        let what = format!("{m} {path}");
        if m != "delete" && body.is_null() {
            // Body-less actions: logout, deactivate, regenerate-sip, a
            // trunk's force_register and test_connection, the PBX
            // configuration's regenerate.
            assert!(
                path.ends_with("/logout")
                    || path.ends_with("/deactivate")
                    || path.ends_with("/regenerate-sip")
                    || path.ends_with("/force_register")
                    || path.ends_with("/test_connection")
                    || path.ends_with("/config/regenerate"),
                "{what}: no request body documented"
            );
        }
        if !body.is_null() {
            with_body += 1;
            assert!(
                body["content"]["application/json"]["schema"].is_object(),
                "{what}: request body is not JSON"
            );
        }
        // Do not log ourselves out or delete things for real.
        if path.ends_with("/logout") || m == "delete" {
            continue;
        }
        let method: Method = m.to_uppercase().parse().expect("method");
        let req = Request::builder()
            .method(method)
            .uri(concrete(&path, "999999"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::COOKIE, format!("centralita_session={cookie}"))
            .body(Body::from(r#"{"surelyNotAField": 1}"#))
            .expect("request");
        let r = app.raw(req).await;
        if body.is_null() {
            assert!(
                r.status != StatusCode::UNPROCESSABLE_ENTITY && r.status != StatusCode::BAD_REQUEST,
                "{what}: documents no body but read one: {} {}",
                r.status,
                r.text
            );
        } else {
            assert_eq!(
                r.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{what}: documents a JSON body but did not refuse an unknown field: {}",
                r.text
            );
        }
    }
    assert!(with_body >= 8, "only {with_body} request bodies");
}

/// The roles written in each operation's description are the ones the
/// server enforces: an agent gets 403 from admin and supervisor routes.
#[tokio::test]
async fn documented_roles_are_enforced() {
    let app = TestApp::new().await;
    let doc = served_doc(&app).await;
    let admin = app.admin().await;
    app.create_user(&admin, "Ag Ent", "agent1", "agent").await;
    let agent = app.login("agent1", "password-123").await;
    let mut checked = 0;
    for (m, path) in operations(&doc) {
        let op = &doc["paths"][&path][&m];
        let desc = op["description"].as_str().unwrap_or("");
        let restricted =
            desc.contains("Roles: admin.") || desc.contains("Roles: admin, supervisor.");
        if !restricted {
            continue;
        }
        assert!(
            op["responses"]["403"].is_object(),
            "{m} {path}: restricted, no 403 documented"
        );
        let method: Method = m.to_uppercase().parse().expect("method");
        let r = app.call(method, &concrete(&path, "1"), None, &agent).await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "{m} {path} as an agent: {}",
            r.text
        );
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} restricted operations");
}

/// The document follows the configured SIP WebSocket path.
#[test]
fn the_sip_websocket_is_documented_where_it_is() {
    let doc = serde_json::to_value(api::routes::openapi::document("/sip")).expect("json");
    assert!(doc["paths"]["/sip"]["get"].is_object());
    assert!(doc["paths"].get("/ws").is_none());
    let doc = serde_json::to_value(api::routes::openapi::document("/ws")).expect("json");
    assert!(doc["paths"]["/ws"]["get"].is_object());
}

/// Schema names are global in the document: two types with one name (two
/// `CreateBody` in different modules) would silently describe one with the
/// other. Every type deriving `ToSchema` in api and domain has its own name.
#[test]
fn schema_names_are_unique() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("src"), root.join("../domain/src")];
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut found = 0;
    while let Some(p) = dirs.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).expect("read_dir") {
                dirs.push(e.expect("entry").path());
            }
            continue;
        }
        if p.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&p).expect("read");
        let mut pending = false;
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with("#[derive(") && t.contains("ToSchema") {
                pending = true;
                continue;
            }
            if !pending {
                continue;
            }
            let words: Vec<&str> = t.split_whitespace().collect();
            let name = match words.as_slice() {
                ["pub", "struct" | "enum", n, ..] | ["struct" | "enum", n, ..] => Some(*n),
                _ => None,
            };
            if let Some(n) = name {
                let n = n.trim_end_matches(['{', '(', ';']).to_string();
                found += 1;
                if let Some(other) = names.insert(n.clone(), p.display().to_string()) {
                    panic!("schema {n} is defined in {other} and in {}", p.display());
                }
                pending = false;
            }
        }
    }
    assert!(found >= 60, "only {found} schema types found");
}
