//! The seeds' endpoints: /hr (seeds/004), /api/telephony/sip (seeds/001),
//! /api/provision (seeds/000).

use axum::http::{header, Method, StatusCode};
use domain::sip_credentials::{self as sc, DigestAlgorithm};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn hr_users_crud_and_stats() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let r = app
        .post("/hr/users", json!({"name": "John Doe", "phoneNumber": "+232 76 123 456", "password": "agent123x", "accountType": "agent"}), &admin)
        .await;
    // no login and no email: refused
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = app
        .post(
            "/hr/users",
            json!({"name": "John Doe", "phoneNumber": "+232 76 123 456", "password": "agent123x", "accountType": "agent", "email": "john@example.com"}),
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let v = r.json();
    assert_eq!(v["status"], "ok");
    assert_eq!(
        v["message"],
        "Agent created with SIP credentials. Extension: 1000"
    );
    assert_eq!(v["sipCredentials"]["extension"], "1000");
    assert_eq!(v["sipCredentials"]["username"], "john_doe");
    let pw = v["sipCredentials"]["password"]
        .as_str()
        .expect("pw")
        .to_string();
    let u = &v["user"];
    assert_eq!(u["sipUsername"], "john_doe");
    assert_eq!(u["sipExtension"], "1000");
    assert_eq!(u["hasSipCredentials"], true);
    assert_eq!(u["phoneNumber"], "+232 76 123 456");
    assert_eq!(u["accountType"], "agent");
    let id = u["id"].as_i64().expect("id");

    let r = app
        .get("/hr/users?accountType=agent&search=john", &admin)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["total"], 1);
    assert!(!r.text.contains(&pw));
    assert_eq!(
        app.get("/hr/users?accountType=admin", &admin).await.json()["total"],
        1
    );
    assert_eq!(
        app.get("/hr/users?accountType=alien", &admin).await.status,
        StatusCode::BAD_REQUEST
    );
    let r = app.get("/hr/stats", &admin).await;
    assert_eq!(r.json()["stats"]["agentsWithSip"], 1);

    let r = app
        .call(
            Method::PUT,
            &format!("/hr/users/{id}"),
            Some(json!({"phoneNumber": "555", "name": "John D."})),
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["user"]["phoneNumber"], "555");
    assert_eq!(r.json()["user"]["name"], "John D.");
    let r = app
        .call(
            Method::PUT,
            &format!("/hr/users/{id}"),
            Some(json!({"sipPassword": "x"})),
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    let r = app
        .call(
            Method::POST,
            &format!("/hr/users/{id}/regenerate-sip"),
            None,
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let new_pw = r.json()["sipCredentials"]["password"]
        .as_str()
        .expect("pw")
        .to_string();
    assert_ne!(new_pw, pw);
    assert_eq!(r.json()["sipCredentials"]["username"], "john_doe");
    assert_eq!(
        app.get(&format!("/hr/users/{id}"), &admin).await.json()["user"]["sipExtension"],
        "1000"
    );

    let r = app
        .call(Method::DELETE, &format!("/hr/users/{id}"), None, &admin)
        .await;
    assert_eq!(r.json()["status"], "ok");
    assert_eq!(
        app.get(&format!("/hr/users/{id}"), &admin).await.status,
        StatusCode::NOT_FOUND
    );
    let r = app
        .call(
            Method::POST,
            &format!("/hr/users/{id}/regenerate-sip"),
            None,
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn webrtc_config() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let r = app.get("/hr/webrtc-config", &admin).await;
    assert_eq!(r.status, StatusCode::OK);
    let c = &r.json()["config"];
    assert!(
        c["stunServer"].is_null() && c["turnServer"].is_null(),
        "no external servers by default: {c}"
    );
    assert_eq!(c["iceServers"], json!([]));
    assert_eq!(c["wsUrl"], c["asteriskWsUrl"]);
    assert!(c["wsUrl"]
        .as_str()
        .is_some_and(|u| u.starts_with("ws://127.0.0.1")));
    // derived from the Host the client used when none is configured
    let r = app
        .raw(
            axum::http::Request::get("/hr/webrtc-config")
                .header(header::HOST, "pbx.example:8080")
                .header(
                    header::COOKIE,
                    match &admin {
                        Auth::Cookie(c) => format!("centralita_session={c}"),
                        _ => String::new(),
                    },
                )
                .body(axum::body::Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(r.json()["config"]["wsUrl"], "ws://pbx.example:8080/ws");

    let r = app
        .call(
            Method::PUT,
            "/hr/webrtc-config",
            Some(json!({"stunServer": "stun:127.0.0.1:3478", "turnServer": "turn:127.0.0.1:3478", "turnUsername": "u", "turnPassword": "turn-secret", "wsUrl": "ws://127.0.0.1:9/ws"})),
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(!r.text.contains("turn-secret"));
    let c = app.get("/hr/webrtc-config", &admin).await.json()["config"].clone();
    assert_eq!(c["stunServer"], "stun:127.0.0.1:3478");
    assert_eq!(c["hasTurnPassword"], true);
    assert_eq!(c["asteriskWsUrl"], "ws://127.0.0.1:9/ws");
    assert_eq!(c["iceServers"].as_array().map(Vec::len), Some(2));
    let r = app
        .call(
            Method::PUT,
            "/hr/webrtc-config",
            Some(json!({"stunServer": "http://nope"})),
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .call(
            Method::PUT,
            "/hr/webrtc-config",
            Some(json!({"stunServer": null, "turnServer": ""})),
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json()["config"]["iceServers"].as_array().map(Vec::len),
        Some(0)
    );
    assert_eq!(r.json()["config"]["wsUrl"], "ws://127.0.0.1:9/ws");
}

#[tokio::test]
async fn telephony_sip_create_status_and_short_lived_credentials() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let r = app
        .post("/api/agents", json!({"name": "Plain User", "login": "plain", "password": "password-123", "role": "supervisor"}), &admin)
        .await;
    let uid = r.json()["agent"]["id"].as_i64().expect("id");
    let plain = app.login("plain", "password-123").await;
    let r = app.get("/api/telephony/sip/status", &plain).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"]["code"], "sip_account_not_found");
    assert_eq!(
        app.get("/api/telephony/sip/credentials", &plain)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let r = app
        .post(
            "/api/telephony/sip/create",
            json!({"userId": uid, "primerNombre": "John", "primerApellido": "Doe"}),
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    assert_eq!(v["message"], "SIP peer created successfully");
    assert_eq!(v["sipPeer"]["sipUsername"], "john_doe");
    assert_eq!(v["sipPeer"]["status"], "active");
    let long_pw = v["sipCredentials"]["password"]
        .as_str()
        .expect("pw")
        .to_string();
    let r = app
        .post("/api/telephony/sip/create", json!({"userId": uid}), &admin)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        app.post("/api/telephony/sip/create", json!({"userId": 9999}), &admin)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.post("/api/telephony/sip/create", json!({"userId": "x"}), &admin)
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    let r = app.get("/api/telephony/sip/status", &plain).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["sipPeer"]["username"], "john_doe");
    assert_eq!(r.json()["sipPeer"]["registered"], false);
    assert!(!r.text.contains(&long_pw));

    let r = app.get("/api/telephony/sip/credentials", &plain).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let c = r.json()["credentials"].clone();
    let eph = c["password"].as_str().expect("pw").to_string();
    assert_eq!(eph.len(), 32);
    assert_ne!(
        eph, long_pw,
        "the long-lived password must never be handed out"
    );
    assert_eq!(c["username"], "john_doe");
    assert_eq!(c["domain"], "centralita.local");
    assert!(c["wsUri"]
        .as_str()
        .is_some_and(|u| u.starts_with("ws://") && u.ends_with("/ws")));
    assert!(c["expiresAt"].is_string());
    // the registrar will accept the short-lived password
    let dc = app
        .services
        .sip_accounts
        .digest_credentials("john_doe")
        .await
        .expect("q")
        .expect("creds");
    let want = sc::ha1(
        DigestAlgorithm::Sha256,
        "john_doe",
        "centralita.local",
        &eph,
    );
    assert!(dc
        .ha1
        .iter()
        .any(|h| h.sha256 == want && h.expires_at.is_some()));
}

#[tokio::test]
async fn provisioning_both_shapes() {
    let mut app = TestApp::new().await;
    let admin = app.admin().await;
    app.create_user(&admin, "Prov Agent", "prov", "agent").await;
    for path in ["/api/provision", "/api/provision.php"] {
        let r = app
            .post(
                path,
                json!({"username": "prov", "password": "password-123"}),
                &Auth::None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        let v = r.json();
        assert_eq!(v["status"], "ok");
        assert_eq!(v["sip_user"], "prov_agent");
        assert_eq!(v["sip_domain"], "centralita.local");
        assert_eq!(v["extension"], "1000");
        assert_eq!(v["display_name"], "Prov Agent");
        assert_eq!(v["sip_pass"].as_str().map(str::len), Some(32));
        assert!(v["ws_uri"].as_str().is_some_and(|u| u.starts_with("ws")));
        assert!(v["expires_at"].is_string());
        assert!(v["ice_servers"].is_array());

        let r = app
            .post(
                path,
                json!({"username": "prov", "password": "wrong-pass"}),
                &Auth::None,
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.json(),
            json!({"status": "error", "message": "Invalid credentials"})
        );
    }
    // with the session cookie and no body
    let agent = app.login("prov", "password-123").await;
    let r = app.call(Method::POST, "/api/provision", None, &agent).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["sip_user"], "prov_agent");
    assert_eq!(
        app.call(Method::POST, "/api/provision", None, &Auth::None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // a user without a SIP account
    let r = app
        .post(
            "/api/provision",
            json!({"username": "admin", "password": ADMIN_PW}),
            &Auth::None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["status"], "error");
    // malformed
    let r = app
        .raw(
            axum::http::Request::post("/api/provision.php")
                .header(header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from("{"))
                .expect("req"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["status"], "error");
    // rate limited in the seed's shape
    app.set_client_ip("10.9.9.9");
    let mut last = None;
    for _ in 0..6 {
        last = Some(
            app.post(
                "/api/provision.php",
                json!({"username": "prov", "password": "nope-nope"}),
                &Auth::None,
            )
            .await,
        );
    }
    let r = last.expect("response");
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.json()["status"], "error");
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    // only 5 short-lived credentials are kept
    let dc = app
        .services
        .sip_accounts
        .digest_credentials("prov_agent")
        .await
        .expect("q")
        .expect("creds");
    assert_eq!(dc.ha1.len(), 1 + 3);
}
