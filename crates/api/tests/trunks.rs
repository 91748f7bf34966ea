//! /api/telephony/trunks over the real router and a real database: create,
//! list, get, update (PATCH and seeds/003's PUT), delete, preview; kind
//! presets; admin only; duplicate names; validation; passwords never in
//! an answer nor in the audit log; a failed request changes nothing.

#[path = "api/common.rs"]
mod common;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use common::{Auth, Resp, TestApp};
use serde_json::{json, Value};

const OUT_SECRET: &str = "out-Secret-7f3a";
const IN_SECRET: &str = "in-Secret-91bc";
const NEW_SECRET: &str = "rotated-Secret-55d0";

/// Every answer of a test, to check no password ever left the server.
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    fn keep(&mut self, r: Resp) -> Resp {
        self.0.push(r.text.clone());
        r
    }

    fn assert_no_secret(&self) {
        assert!(self.0.len() > 3, "only {} answers seen", self.0.len());
        for text in &self.0 {
            for s in [OUT_SECRET, IN_SECRET, NEW_SECRET] {
                assert!(!text.contains(s), "a password in an answer: {text}");
            }
        }
    }
}

fn twilio() -> Value {
    // seeds/001's example record, camelCased, with its `username` and
    // `password` names for the outbound credentials.
    json!({
        "name": "Twilio Main", "provider": "twilio", "kind": "nat_provider",
        "host": "sip.example.test", "port": 5060, "username": "AC1234567890abcdef",
        "password": OUT_SECRET, "fromUser": "+15551234567", "maxChannels": 20,
        "priority": 1, "status": "active"
    })
}

async fn patch(app: &TestApp, path: &str, body: Value, auth: &Auth) -> Resp {
    app.call(Method::PATCH, path, Some(body), auth).await
}

async fn put(app: &TestApp, path: &str, body: Value, auth: &Auth) -> Resp {
    app.call(Method::PUT, path, Some(body), auth).await
}

async fn delete(app: &TestApp, path: &str, auth: &Auth) -> Resp {
    app.call(Method::DELETE, path, None, auth).await
}

/// The stored outbound password (the SIP side's view).
async fn stored_secret(app: &TestApp, id: i64) -> Option<String> {
    app.services
        .trunks()
        .settings(id)
        .await
        .expect("settings")
        .outbound_secret
        .map(|s| s.expose().to_string())
}

async fn audit_actions(app: &TestApp, admin: &Auth) -> Vec<Value> {
    let r = app.get("/api/audit?limit=500", admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let entries = r.json()["entries"].as_array().cloned().unwrap_or_default();
    entries
        .into_iter()
        .filter(|e| {
            e["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("trunk."))
        })
        .collect()
}

#[tokio::test]
async fn create_list_get_update_preview_delete() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let mut seen = Seen::default();

    let r = seen.keep(app.post("/api/telephony/trunks", twilio(), &admin).await);
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let t = r.json()["trunk"].clone();
    let id = t["id"].as_i64().expect("id");
    assert_eq!(t["name"], "Twilio Main");
    assert_eq!(t["provider"], "twilio");
    assert_eq!(t["kind"], "nat_provider");
    assert_eq!(t["outboundAuthUsername"], "AC1234567890abcdef");
    assert_eq!(t["hasSecret"], true);
    assert_eq!(t["hasInboundSecret"], false);
    assert_eq!(t["sendsAuth"], true);
    assert_eq!(
        (t["maxChannels"].clone(), t["priority"].clone()),
        (json!(20), json!(1))
    );
    // The kind's preset where the body said nothing.
    assert_eq!(t["sendsRegistration"], true);
    assert_eq!(t["rtpSymmetric"], true);
    assert_eq!(t["forceRport"], true);
    assert_eq!(t["rewriteContact"], true);
    assert_eq!(t["qualifyFrequency"], 60);
    assert_eq!(t["codecs"], json!(["pcmu", "pcma"]));
    assert_eq!(t["dtmfMode"], "rfc4733");
    // Live state and counters start empty.
    assert_eq!(t["registered"], false);
    assert_eq!(t["lastRegisteredAt"], Value::Null);
    assert_eq!(t["totalCalls"], 0);
    assert!(t.get("outboundAuthPassword").is_none() && t.get("password").is_none());
    assert_eq!(stored_secret(&app, id).await.as_deref(), Some(OUT_SECRET));

    let r = seen.keep(app.get("/api/telephony/trunks", &admin).await);
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    assert_eq!(
        (v["success"].clone(), v["count"].clone(), v["total"].clone()),
        (json!(true), json!(1), json!(1))
    );
    assert_eq!(v["trunks"][0]["id"], id);
    assert_eq!(v["trunks"][0]["successfulCalls"], 0);

    let r = seen.keep(
        app.get(&format!("/api/telephony/trunks/{id}"), &admin)
            .await,
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["trunk"], t);

    // PATCH without a password keeps it.
    let r = seen.keep(
        patch(
            &app,
            &format!("/api/telephony/trunks/{id}"),
            json!({"priority": 2, "description": "main"}),
            &admin,
        )
        .await,
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let t2 = r.json()["trunk"].clone();
    assert_eq!(
        (t2["priority"].clone(), t2["description"].clone()),
        (json!(2), json!("main"))
    );
    assert_eq!(t2["hasSecret"], true);
    assert_eq!(t2["rtpSymmetric"], true, "no preset re-applied");
    assert_eq!(stored_secret(&app, id).await.as_deref(), Some(OUT_SECRET));

    // seeds/003's PUT with the whole form and an empty password field.
    let mut form = t2.clone();
    for k in [
        "id",
        "hasSecret",
        "hasInboundSecret",
        "registered",
        "lastRegisteredAt",
        "lastError",
        "lastErrorAt",
        "totalCalls",
        "successfulCalls",
        "failedCalls",
        "createdAt",
        "updatedAt",
    ] {
        form.as_object_mut().expect("object").remove(k);
    }
    form["outboundAuthPassword"] = json!("");
    form["maxChannels"] = json!(0);
    let r = seen.keep(put(&app, &format!("/api/telephony/trunks/{id}"), form, &admin).await);
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["trunk"]["maxChannels"], 0, "0 = no limit");
    assert_eq!(stored_secret(&app, id).await.as_deref(), Some(OUT_SECRET));

    // A new password replaces it (and is not shown).
    let r = seen.keep(
        patch(
            &app,
            &format!("/api/telephony/trunks/{id}"),
            json!({"outboundAuthPassword": NEW_SECRET}),
            &admin,
        )
        .await,
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(stored_secret(&app, id).await.as_deref(), Some(NEW_SECRET));

    let r = seen.keep(
        app.get(
            &format!("/api/telephony/trunks/{id}/preview_config"),
            &admin,
        )
        .await,
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let p = r.json();
    assert_eq!(p["success"], true);
    assert_eq!(p["trunk"], "Twilio Main");
    let config = p["config"].as_str().expect("config");
    assert!(
        config.contains("[Twilio_Main]\ntype=endpoint\n"),
        "{config}"
    );
    assert!(config.contains("password=********"), "{config}");
    assert!(
        config.contains("[Twilio_Main-reg]\ntype=registration\n"),
        "{config}"
    );
    assert!(config.contains("from_user=+15551234567"), "{config}");
    assert_eq!(
        p["settings"]["outboundAuth"]["username"],
        "AC1234567890abcdef"
    );
    assert_eq!(
        p["settings"]["registration"]["server_uri"],
        "sip:sip.example.test:5060"
    );

    let r = seen.keep(delete(&app, &format!("/api/telephony/trunks/{id}"), &admin).await);
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json(), json!({"success": true}));
    for r in [
        app.get(&format!("/api/telephony/trunks/{id}"), &admin)
            .await,
        app.get(
            &format!("/api/telephony/trunks/{id}/preview_config"),
            &admin,
        )
        .await,
        delete(&app, &format!("/api/telephony/trunks/{id}"), &admin).await,
        patch(
            &app,
            &format!("/api/telephony/trunks/{id}"),
            json!({"priority": 1}),
            &admin,
        )
        .await,
    ] {
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
        assert_eq!(r.json()["error"]["code"], "trunk_not_found");
    }

    // Every change audited, without a password.
    let entries = audit_actions(&app, &admin).await;
    let actions: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "trunk.delete",
            "trunk.update",
            "trunk.update",
            "trunk.update",
            "trunk.create"
        ],
        "newest first"
    );
    assert_eq!(
        entries[1]["details"]["fields"],
        json!(["outboundAuthPassword"])
    );
    assert_eq!(
        entries[3]["details"]["fields"],
        json!(["description", "priority"])
    );
    assert_eq!(entries[4]["targetId"], id.to_string());
    seen.0.extend(entries.iter().map(Value::to_string));
    seen.assert_no_secret();
}

#[tokio::test]
async fn inbound_secret_is_write_only_too() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let mut seen = Seen::default();
    let r = seen.keep(
        app.post(
            "/api/telephony/trunks",
            json!({
                "name": "Branch", "host": "192.0.2.20", "kind": "corporate",
                "inboundAuthUsername": "branch", "inboundAuthPassword": IN_SECRET,
                "outboundAuthUsername": "hq", "outboundAuthPassword": OUT_SECRET
            }),
            &admin,
        )
        .await,
    );
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let t = r.json()["trunk"].clone();
    let id = t["id"].as_i64().expect("id");
    assert_eq!(
        (t["acceptsAuth"].clone(), t["hasInboundSecret"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(t["trustRemotePartyId"], true, "corporate preset");
    let r = seen.keep(
        app.get(
            &format!("/api/telephony/trunks/{id}/preview_config"),
            &admin,
        )
        .await,
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["settings"]["inboundAuth"]["password"], "********");
    let r = seen.keep(app.get("/api/telephony/trunks", &admin).await);
    assert_eq!(r.status, StatusCode::OK);
    // Removing the inbound password while inbound auth is on is refused...
    let r = seen.keep(
        patch(
            &app,
            &format!("/api/telephony/trunks/{id}"),
            json!({"inboundAuthPassword": null}),
            &admin,
        )
        .await,
    );
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("inboundAuthPassword"));
    // ...and done with it off.
    let r = seen.keep(
        patch(
            &app,
            &format!("/api/telephony/trunks/{id}"),
            json!({"inboundAuthPassword": null, "acceptsAuth": false}),
            &admin,
        )
        .await,
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["trunk"]["hasInboundSecret"], false);
    let settings = app.services.trunks().settings(id).await.expect("settings");
    assert!(settings.inbound_secret.is_none());
    seen.assert_no_secret();
}

#[tokio::test]
async fn kinds_fill_their_presets() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let r = app
        .post(
            "/api/telephony/trunks",
            json!({"name": "Old PBX", "host": "192.0.2.5", "kind": "pbx_lan"}),
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let t = r.json()["trunk"].clone();
    assert_eq!(t["sendsRegistration"], false);
    assert_eq!(t["sendsAuth"], false);
    assert_eq!(t["rtpSymmetric"], false);
    assert_eq!(t["forceRport"], false);
    assert_eq!(t["rewriteContact"], false);
    assert_eq!(t["trustRemotePartyId"], true);
    assert_eq!(t["qualifyFrequency"], 30);
    assert_eq!(t["codecs"], json!(["pcmu", "pcma", "g722"]));
    assert_eq!(
        (t["port"].clone(), t["transport"].clone()),
        (json!(5060), json!("udp"))
    );
    assert_eq!(
        (t["maxChannels"].clone(), t["priority"].clone()),
        (json!(10), json!(10))
    );
    let id = t["id"].as_i64().expect("id");
    let p = app
        .get(
            &format!("/api/telephony/trunks/{id}/preview_config"),
            &admin,
        )
        .await
        .json();
    assert_eq!(
        p["settings"]["identify"]["match"], "192.0.2.5",
        "matched by address"
    );
    assert_eq!(p["settings"]["registration"], Value::Null);

    // Changing the kind applies the new preset where the body is silent.
    let r = patch(
        &app,
        &format!("/api/telephony/trunks/{id}"),
        json!({"kind": "nat_provider", "qualifyFrequency": 20}),
        &admin,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let t = r.json()["trunk"].clone();
    assert_eq!(t["kind"], "nat_provider");
    assert_eq!(
        (t["rtpSymmetric"].clone(), t["sendsRegistration"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(t["qualifyFrequency"], 20);

    // A preview of a trunk not saved: nothing stored.
    let r = app
        .post(
            "/api/telephony/trunks/preview_config",
            json!({"name": "Draft", "host": "sip.example.test", "kind": "no_nat",
                   "outboundAuthUsername": "u", "outboundAuthPassword": OUT_SECRET}),
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(!r.text.contains(OUT_SECRET), "{}", r.text);
    assert_eq!(r.json()["settings"]["endpoint"]["rtp_symmetric"], "no");
    let list = app.get("/api/telephony/trunks", &admin).await.json();
    assert_eq!(list["total"], 1, "the draft was not stored");
}

#[tokio::test]
async fn admin_only() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    app.create_user(&admin, "Ag Ent", "agent1", "agent").await;
    app.create_user(&admin, "Su Per", "super1", "supervisor")
        .await;
    let agent = app.login("agent1", "password-123").await;
    let supervisor = app.login("super1", "password-123").await;
    let r = app.post("/api/telephony/trunks", twilio(), &admin).await;
    let id = r.json()["trunk"]["id"].as_i64().expect("id");
    let one = format!("/api/telephony/trunks/{id}");
    let preview = format!("{one}/preview_config");
    let body = json!({"priority": 99});
    for (who, auth, status) in [
        ("anonymous", Auth::None, StatusCode::UNAUTHORIZED),
        ("agent", agent, StatusCode::FORBIDDEN),
        ("supervisor", supervisor, StatusCode::FORBIDDEN),
    ] {
        for r in [
            app.get("/api/telephony/trunks", &auth).await,
            app.post(
                "/api/telephony/trunks",
                json!({"name": "X", "host": "x.test"}),
                &auth,
            )
            .await,
            app.get(&one, &auth).await,
            patch(&app, &one, body.clone(), &auth).await,
            put(&app, &one, body.clone(), &auth).await,
            delete(&app, &one, &auth).await,
            app.get(&preview, &auth).await,
            app.post("/api/telephony/trunks/preview_config", twilio(), &auth)
                .await,
        ] {
            assert_eq!(r.status, status, "{who}: {}", r.text);
            assert_eq!(r.json()["success"], false);
            assert!(!r.text.contains("Twilio"), "{who} saw a trunk: {}", r.text);
        }
    }
    // Nothing changed.
    let t = app.get(&one, &admin).await.json();
    assert_eq!(t["trunk"]["priority"], 1);
    assert_eq!(
        app.get("/api/telephony/trunks", &admin).await.json()["total"],
        1
    );
}

#[tokio::test]
async fn duplicate_names_conflict_and_change_nothing() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let r = app.post("/api/telephony/trunks", twilio(), &admin).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let mut other = twilio();
    other["name"] = json!("twilio MAIN");
    let r = app
        .post("/api/telephony/trunks", other.clone(), &admin)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "duplicate_trunk_name");

    other["name"] = json!("Vonage");
    let r = app.post("/api/telephony/trunks", other, &admin).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.json()["trunk"]["id"].as_i64().expect("id");
    let r = patch(
        &app,
        &format!("/api/telephony/trunks/{id}"),
        json!({"name": "TWILIO Main", "priority": 7}),
        &admin,
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "duplicate_trunk_name");
    let t = app
        .get(&format!("/api/telephony/trunks/{id}"), &admin)
        .await
        .json();
    assert_eq!(
        (t["trunk"]["name"].clone(), t["trunk"]["priority"].clone()),
        (json!("Vonage"), json!(1))
    );
    // Its own name in another case is not a conflict.
    let r = patch(
        &app,
        &format!("/api/telephony/trunks/{id}"),
        json!({"name": "VONAGE"}),
        &admin,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        app.get("/api/telephony/trunks", &admin).await.json()["total"],
        2
    );
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let r = app.post("/api/telephony/trunks", twilio(), &admin).await;
    let id = r.json()["trunk"]["id"].as_i64().expect("id");
    let before = app
        .get(&format!("/api/telephony/trunks/{id}"), &admin)
        .await
        .json();
    let audits = audit_actions(&app, &admin).await.len();

    let bad_fields = [
        (json!({"host": "sip.example.test"}), "name"),
        (json!({"name": "X"}), "host"),
        (
            json!({"name": "X", "host": "sip.example.test:5060"}),
            "host",
        ),
        (json!({"name": "X", "host": "x.test", "port": 0}), "port"),
        (
            json!({"name": "X", "host": "x.test", "port": 70000}),
            "port",
        ),
        (
            json!({"name": "X", "host": "x.test", "kind": "cloud"}),
            "kind",
        ),
        (
            json!({"name": "X", "host": "x.test", "codecs": ["pcmu", "gsm"]}),
            "codecs",
        ),
        (
            json!({"name": "X", "host": "x.test", "priority": -1}),
            "priority",
        ),
        (
            json!({"name": "X", "host": "x.test", "registrationExpiration": 10}),
            "registrationExpiration",
        ),
        (
            json!({"name": "X", "host": "x.test", "sendsAuth": true}),
            "outboundAuthUsername",
        ),
        (
            json!({"name": "X", "host": "x.test", "advancedSettings": "text"}),
            "advancedSettings",
        ),
    ];
    for (body, field) in bad_fields {
        let r = app
            .post("/api/telephony/trunks", body.clone(), &admin)
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.text
        );
        let e = &r.json()["error"];
        assert_eq!(e["code"], "invalid_field", "{body}");
        assert!(
            e["message"]
                .as_str()
                .unwrap_or("")
                .starts_with(&format!("{field}:")),
            "{body}: {}",
            r.text
        );
        // The same mistakes in an update leave the trunk as it was.
        // (Not the auth one: this trunk has credentials.)
        if body.get("name").is_some()
            && body.get("host").is_some()
            && field != "outboundAuthUsername"
        {
            let mut change = body.clone();
            change.as_object_mut().expect("object").remove("name");
            let r = patch(
                &app,
                &format!("/api/telephony/trunks/{id}"),
                change.clone(),
                &admin,
            )
            .await;
            assert_eq!(
                r.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{change}: {}",
                r.text
            );
        }
    }
    // Wrong types and unknown fields: 422; broken JSON and no JSON: 400.
    for body in [
        json!({"name": "X", "host": "x.test", "port": "5060"}),
        json!({"name": "X", "host": "x.test", "secretSauce": 1}),
    ] {
        let r = app
            .post("/api/telephony/trunks", body.clone(), &admin)
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.text
        );
    }
    let Auth::Cookie(cookie) = admin.clone() else {
        panic!("cookie")
    };
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/telephony/trunks")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::COOKIE, format!("centralita_session={cookie}"))
        .body(Body::from("{\"name\": "))
        .expect("request");
    let r = app.raw(req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "bad_request");
    // Bad list parameters and ids: 400.
    for path in [
        "/api/telephony/trunks?status=dead",
        "/api/telephony/trunks?order=password",
        "/api/telephony/trunks/abc",
    ] {
        let r = app.get(path, &admin).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.text);
    }

    let after = app
        .get(&format!("/api/telephony/trunks/{id}"), &admin)
        .await
        .json();
    assert_eq!(before, after, "the trunk is as it was");
    assert_eq!(
        app.get("/api/telephony/trunks", &admin).await.json()["total"],
        1
    );
    assert_eq!(
        audit_actions(&app, &admin).await.len(),
        audits,
        "nothing audited"
    );
}

#[tokio::test]
async fn listing_filters_and_orders() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    for (name, provider, kind, status, priority) in [
        ("Twilio", "twilio", "nat_provider", "active", 5),
        ("Vonage", "vonage", "nat_provider", "maintenance", 1),
        ("LAN", "custom", "pbx_lan", "active", 3),
    ] {
        let r = app
            .post(
                "/api/telephony/trunks",
                json!({"name": name, "provider": provider, "kind": kind, "status": status,
                       "priority": priority, "host": "sip.example.test"}),
                &admin,
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let names = |v: Value| -> Vec<String> {
        v["trunks"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let v = app.get("/api/telephony/trunks", &admin).await.json();
    assert_eq!(names(v), ["Vonage", "LAN", "Twilio"], "by priority");
    let v = app
        .get("/api/telephony/trunks?order=-name", &admin)
        .await
        .json();
    assert_eq!(names(v), ["Vonage", "Twilio", "LAN"]);
    let v = app
        .get(
            "/api/telephony/trunks?status=active&kind=nat_provider",
            &admin,
        )
        .await
        .json();
    assert_eq!(
        (names(v.clone()), v["count"].clone()),
        (vec!["Twilio".to_string()], json!(1))
    );
    let v = app
        .get("/api/telephony/trunks?search=vON", &admin)
        .await
        .json();
    assert_eq!(names(v), ["Vonage"]);
    let v = app
        .get("/api/telephony/trunks?limit=1&offset=1", &admin)
        .await
        .json();
    assert_eq!(
        (names(v.clone()), v["total"].clone()),
        (vec!["LAN".to_string()], json!(3))
    );
}

#[tokio::test]
async fn live_state_reported_by_the_sip_side_shows() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let r = app.post("/api/telephony/trunks", twilio(), &admin).await;
    let id = r.json()["trunk"]["id"].as_i64().expect("id");
    let trunks = app.services.trunks();
    assert!(trunks
        .report_registration(id, false, Some("401 Unauthorized (rejected)"))
        .await
        .expect("report"));
    assert!(trunks
        .report_registration(id, true, None)
        .await
        .expect("report"));
    for ok in [true, false, true] {
        assert!(trunks.count_call(id, ok).await.expect("count"));
    }
    assert!(!trunks.count_call(id + 1, true).await.expect("count"));
    let t = app
        .get(&format!("/api/telephony/trunks/{id}"), &admin)
        .await
        .json()["trunk"]
        .clone();
    assert_eq!(t["registered"], true);
    assert!(t["lastRegisteredAt"].is_string());
    assert_eq!(t["lastError"], "401 Unauthorized (rejected)");
    assert!(t["lastErrorAt"].is_string());
    assert_eq!(
        (
            t["totalCalls"].clone(),
            t["successfulCalls"].clone(),
            t["failedCalls"].clone()
        ),
        (json!(3), json!(2), json!(1))
    );
    // A request cannot write them.
    let r = patch(
        &app,
        &format!("/api/telephony/trunks/{id}"),
        json!({"registered": false}),
        &admin,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = patch(
        &app,
        &format!("/api/telephony/trunks/{id}"),
        json!({"totalCalls": 0}),
        &admin,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
}

/// A campaign's trunk list is the administrator's: supervisors and agents
/// neither read nor change it.
#[tokio::test]
async fn campaign_trunk_lists_are_admin_only() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    app.create_user(&admin, "Sup S", "sups", "supervisor").await;
    app.create_user(&admin, "Agent A", "agenta", "agent").await;
    let r = app.post("/api/telephony/trunks", twilio(), &admin).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.json()["trunk"]["id"].as_i64().expect("id");
    let path = "/api/telephony/campaigns/3/trunks";
    let body = json!({"trunks": [{"trunkId": id, "priority": 2}]});
    for who in [
        app.login("sups", "password-123").await,
        app.login("agenta", "password-123").await,
    ] {
        assert_eq!(app.get(path, &who).await.status, StatusCode::FORBIDDEN);
        let r = put(&app, path, body.clone(), &who).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    }
    assert_eq!(
        app.get(path, &Auth::None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.get(path, &admin).await.json()["total"], 0);
    let r = put(&app, path, body, &admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json()["trunks"],
        json!([{"trunkId": id, "trunkName": "Twilio Main", "priority": 2}])
    );
}
