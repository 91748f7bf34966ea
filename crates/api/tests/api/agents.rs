use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn agent_lifecycle_and_password_shown_once() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let r = app
        .post(
            "/api/agents",
            json!({"name": "John Doe", "login": "jdoe", "email": "jdoe@example.com", "phone": "+1 555 0100",
                   "password": "agent-pass-1", "role": "agent"}),
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let v = r.json();
    let id = v["agent"]["id"].as_i64().expect("id");
    let creds = &v["sipCredentials"];
    let pw1 = creds["password"].as_str().expect("password").to_string();
    assert_eq!(pw1.len(), 32);
    assert!(pw1.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(creds["username"], "john_doe");
    assert_eq!(creds["extension"], "1000");
    assert_eq!(creds["domain"], "centralita.local");
    assert_eq!(v["agent"]["hasSipCredentials"], true);
    assert_eq!(v["agent"]["sip"]["username"], "john_doe");
    assert_eq!(v["agent"]["sip"]["registered"], false);

    // A second agent with the same name gets a suffixed username and the next extension.
    let r = app
        .post("/api/agents", json!({"name": "John Doe", "login": "jdoe2", "password": "agent-pass-2", "role": "agent"}), &admin)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json()["sipCredentials"]["username"], "john_doe2");
    assert_eq!(r.json()["sipCredentials"]["extension"], "1001");
    let pw2 = r.json()["sipCredentials"]["password"]
        .as_str()
        .expect("pw")
        .to_string();

    // Non-agents get no SIP account unless asked.
    let r = app
        .post("/api/agents", json!({"name": "Sue Pervisor", "login": "sue", "password": "sup-pass-12", "role": "supervisor"}), &admin)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(r.json()["sipCredentials"].is_null());
    assert!(r.json()["agent"]["sip"].is_null());
    let r = app
        .post(
            "/api/agents",
            json!({"name": "No Sip", "login": "nosip", "password": "agent-pass-3", "role": "agent", "createSip": false}),
            &admin,
        )
        .await;
    assert!(r.json()["sipCredentials"].is_null());

    // Rotation returns a new password once.
    let r = app
        .call(
            Method::POST,
            &format!("/api/agents/{id}/regenerate-sip"),
            None,
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let pw3 = r.json()["sipCredentials"]["password"]
        .as_str()
        .expect("pw")
        .to_string();
    assert_ne!(pw3, pw1);
    assert_eq!(r.json()["sipCredentials"]["username"], "john_doe");
    assert_eq!(r.json()["sipCredentials"]["extension"], "1000");

    // No GET ever shows a SIP password.
    let gets = [
        "/api/agents".to_string(),
        format!("/api/agents/{id}"),
        "/api/agents/stats".into(),
        "/api/audit".into(),
        "/api/auth/me".into(),
        "/hr/users".into(),
        format!("/hr/users/{id}"),
        "/hr/webrtc-config".into(),
        "/api/telephony/registrations".into(),
        "/api/agents?search=john".into(),
    ];
    for path in &gets {
        let r = app.get(path, &admin).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        for pw in [&pw1, &pw2, &pw3] {
            assert!(!r.text.contains(pw.as_str()), "{path} leaks a SIP password");
        }
    }
    // The HA1 is never shown either.
    let ha1 = domain::sip_credentials::ha1(
        domain::sip_credentials::DigestAlgorithm::Md5,
        "john_doe",
        "centralita.local",
        &pw3,
    );
    for path in &gets {
        assert!(
            !app.get(path, &admin).await.text.contains(&ha1),
            "{path} leaks an HA1"
        );
    }

    // list, filters, pagination, order
    let r = app
        .get(
            "/api/agents?role=agent&hasSip=true&limit=1&order=-id",
            &admin,
        )
        .await;
    assert_eq!(r.json()["total"], 2);
    assert_eq!(r.json()["agents"].as_array().map(Vec::len), Some(1));
    assert_eq!(r.json()["agents"][0]["login"], "jdoe2");
    let r = app.get("/api/agents?search=pervis", &admin).await;
    assert_eq!(r.json()["total"], 1);
    let r = app.get("/api/agents?hasSip=false", &admin).await;
    assert_eq!(r.json()["total"], 3, "{}", r.text); // admin, sue, nosip
    assert_eq!(
        app.get("/api/agents?order=password", &admin).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get("/api/agents?limit=abc", &admin).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get("/api/agents?role=boss", &admin).await.status,
        StatusCode::BAD_REQUEST
    );

    let r = app.get("/api/agents/stats", &admin).await;
    let s = &r.json()["stats"];
    assert_eq!(
        (
            s["totalUsers"].as_i64(),
            s["agents"].as_i64(),
            s["agentsWithSip"].as_i64()
        ),
        (Some(5), Some(3), Some(2))
    );

    // update
    let r = app
        .call(
            Method::PATCH,
            &format!("/api/agents/{id}"),
            Some(json!({"name": "Johnny Doe", "phone": ""})),
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["agent"]["name"], "Johnny Doe");
    assert!(r.json()["agent"]["phone"].is_null());
    assert_eq!(
        r.json()["agent"]["sip"]["username"],
        "john_doe",
        "the SIP username is stable across renames"
    );

    // the agent can log in, then deactivation ends the session
    let agent = app.login("jdoe", "agent-pass-1").await;
    assert_eq!(
        app.get("/api/telephony/sip/status", &agent).await.status,
        StatusCode::OK
    );
    let r = app
        .call(
            Method::POST,
            &format!("/api/agents/{id}/deactivate"),
            None,
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["agent"]["active"], false);
    assert_eq!(r.json()["agent"]["sip"]["status"], "inactive");
    assert_eq!(
        app.get("/api/auth/me", &agent).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .post(
            "/api/auth/login",
            json!({"login": "jdoe", "password": "agent-pass-1"}),
            &Auth::None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(app
        .services
        .sip_accounts
        .digest_credentials("john_doe")
        .await
        .expect("q")
        .is_none());

    // delete
    let r = app
        .call(Method::DELETE, &format!("/api/agents/{id}"), None, &admin)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        app.get(&format!("/api/agents/{id}"), &admin).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(app
        .services
        .sip_accounts
        .by_username("john_doe")
        .await
        .expect("q")
        .is_none());
    assert_eq!(
        app.call(Method::DELETE, &format!("/api/agents/{id}"), None, &admin)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/agents/abc", &admin).await.status,
        StatusCode::BAD_REQUEST
    );

    // the audit log recorded it all, with actor and IP and without secrets
    let r = app.get("/api/audit?limit=100", &admin).await;
    let actions: Vec<String> = r.json()["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str().map(str::to_string))
        .collect();
    for a in [
        "user.create",
        "sip.rotate",
        "user.update",
        "user.deactivate",
        "user.delete",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "audit lacks {a}: {actions:?}"
        );
    }
    let entry = r.json()["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["action"] == "user.delete")
        .cloned()
        .expect("delete");
    assert_eq!(entry["actorLogin"], "admin");
    assert_eq!(entry["ip"], "127.0.0.1");
    assert_eq!(entry["targetId"], id.to_string());
    assert!(!r.text.contains("agent-pass-1"));
    let r = app.get("/api/audit?action=user.delete", &admin).await;
    assert_eq!(r.json()["total"], 1);
}

#[tokio::test]
async fn bad_input_leaves_the_database_unchanged() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    app.create_user(&admin, "Dup Licate", "dup", "agent").await;
    let before = app.get("/api/agents/stats", &admin).await.json();
    let audit_before = app.get("/api/audit", &admin).await.json()["total"].clone();

    let cases = [
        (
            json!({"name": "X", "login": "DUP", "password": "password-123", "role": "agent"}),
            StatusCode::CONFLICT,
            Some("duplicate_login"),
        ),
        (
            json!({"name": "X", "login": "x1", "password": "short", "role": "agent"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            json!({"name": "X", "login": "x1", "password": "password-123", "role": "boss"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            json!({"name": "X", "password": "password-123", "role": "agent"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            json!({"name": "x".repeat(101), "login": "x1", "password": "password-123", "role": "agent"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            json!({"name": "X", "login": "x".repeat(65), "password": "password-123", "role": "agent"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            json!({"name": "X", "login": "x1", "email": format!("{}@e.com", "a".repeat(260)), "password": "password-123", "role": "agent"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            json!({"name": "X", "login": "x1", "email": "not-an-email", "password": "password-123", "role": "agent"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            json!({"name": "X", "login": "x1", "phone": "1".repeat(33), "password": "password-123", "role": "agent"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            json!({"name": "X", "login": "x1", "password": "p".repeat(129), "role": "agent"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            json!({"name": "X", "login": "x1", "password": "password-123", "role": "agent", "isAdmin": true}),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            json!({"login": "x1", "password": "password-123", "role": "agent"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            json!({"name": 5, "login": "x1", "password": "password-123", "role": "agent"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (json!([1, 2]), StatusCode::UNPROCESSABLE_ENTITY, None),
    ];
    for (body, status, code) in cases {
        let r = app.post("/api/agents", body.clone(), &admin).await;
        assert_eq!(r.status, status, "{body}: {}", r.text);
        assert_eq!(r.json()["success"], false);
        if let Some(code) = code {
            assert_eq!(r.json()["error"]["code"], code);
        }
    }
    // malformed JSON, wrong content type, oversized body
    let raw = |body: String, ct: &str| {
        axum::http::Request::post("/api/agents")
            .header(axum::http::header::CONTENT_TYPE, ct)
            .header(
                axum::http::header::COOKIE,
                match &admin {
                    Auth::Cookie(c) => format!("centralita_session={c}"),
                    _ => String::new(),
                },
            )
            .body(axum::body::Body::from(body))
            .expect("req")
    };
    assert_eq!(
        app.raw(raw("{\"name\":".into(), "application/json"))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.raw(raw("name=x".into(), "application/x-www-form-urlencoded"))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let big = format!("{{\"name\":\"{}\"}}", "a".repeat(70_000));
    assert_eq!(
        app.raw(raw(big, "application/json")).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    // updates that fail change nothing either
    let (other, _) = app.create_user(&admin, "Other", "other", "agent").await;
    let r = app
        .call(
            Method::PATCH,
            &format!("/api/agents/{other}"),
            Some(json!({"name": "New", "login": "dup"})),
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        app.get(&format!("/api/agents/{other}"), &admin)
            .await
            .json()["agent"]["name"],
        "Other"
    );
    let r = app
        .call(
            Method::PATCH,
            &format!("/api/agents/{other}"),
            Some(json!({"role": "root"})),
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .call(
            Method::PATCH,
            &format!("/api/agents/{other}"),
            Some(json!({"login": "", "name": "Gone"})),
            &admin,
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a user keeps a login or an email: {}",
        r.text
    );
    assert_eq!(
        app.get(&format!("/api/agents/{other}"), &admin)
            .await
            .json()["agent"]["login"],
        "other"
    );
    let r = app
        .call(
            Method::PATCH,
            &format!("/api/agents/{other}"),
            Some(json!({"password": "short"})),
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .call(
            Method::PATCH,
            "/api/agents/424242",
            Some(json!({"name": "Nobody"})),
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let mut after = app.get("/api/agents/stats", &admin).await.json();
    // the one successful create above is the only difference
    after["stats"]["totalUsers"] = json!(after["stats"]["totalUsers"].as_i64().map(|n| n - 1));
    after["stats"]["agents"] = json!(after["stats"]["agents"].as_i64().map(|n| n - 1));
    after["stats"]["active"] = json!(after["stats"]["active"].as_i64().map(|n| n - 1));
    after["stats"]["agentsWithSip"] =
        json!(after["stats"]["agentsWithSip"].as_i64().map(|n| n - 1));
    assert_eq!(before, after);
    let audit_after = app.get("/api/audit", &admin).await.json()["total"]
        .as_i64()
        .expect("n");
    assert_eq!(
        audit_before.as_i64().map(|n| n + 1),
        Some(audit_after),
        "only the successful create is audited"
    );
    // an admin cannot lock themselves out
    let me = app.get("/api/auth/me", &admin).await.json()["user"]["id"]
        .as_i64()
        .expect("id");
    assert_eq!(
        app.call(Method::DELETE, &format!("/api/agents/{me}"), None, &admin)
            .await
            .status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        app.call(
            Method::POST,
            &format!("/api/agents/{me}/deactivate"),
            None,
            &admin
        )
        .await
        .status,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn roles_are_enforced_on_every_route() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let (agent_id, _) = app.create_user(&admin, "Agent A", "agenta", "agent").await;
    let (other_id, _) = app.create_user(&admin, "Agent B", "agentb", "agent").await;
    app.create_user(&admin, "Sup S", "sups", "supervisor").await;
    let sup = app.login("sups", "password-123").await;
    let agent = app.login("agenta", "password-123").await;
    let none = Auth::None;

    // (method, path, body, allowed for: admin, supervisor, agent)
    let routes: Vec<(Method, String, Option<serde_json::Value>, [bool; 3])> = vec![
        (Method::GET, "/api/agents".into(), None, [true, true, false]),
        (
            Method::GET,
            "/api/agents/stats".into(),
            None,
            [true, true, false],
        ),
        (
            Method::GET,
            format!("/api/agents/{other_id}"),
            None,
            [true, true, false],
        ),
        (
            Method::GET,
            format!("/api/agents/{agent_id}"),
            None,
            [true, true, true],
        ),
        (
            Method::POST,
            "/api/agents".into(),
            Some(json!({"name": "N", "login": "n1", "password": "password-123", "role": "agent"})),
            [true, false, false],
        ),
        (
            Method::PATCH,
            format!("/api/agents/{other_id}"),
            Some(json!({"phone": "123"})),
            [true, false, false],
        ),
        (
            Method::POST,
            format!("/api/agents/{other_id}/regenerate-sip"),
            None,
            [true, false, false],
        ),
        (Method::GET, "/api/audit".into(), None, [true, false, false]),
        (
            Method::GET,
            "/api/auth/tokens".into(),
            None,
            [true, false, false],
        ),
        (
            Method::POST,
            "/api/auth/tokens".into(),
            Some(json!({"name": "t"})),
            [true, false, false],
        ),
        (Method::GET, "/hr/users".into(), None, [true, true, false]),
        (
            Method::GET,
            format!("/hr/users/{other_id}"),
            None,
            [true, true, false],
        ),
        (
            Method::POST,
            "/hr/users".into(),
            Some(
                json!({"name": "H", "login": "h1", "password": "password-123", "accountType": "agent"}),
            ),
            [true, false, false],
        ),
        (
            Method::PUT,
            format!("/hr/users/{other_id}"),
            Some(json!({"phoneNumber": "555"})),
            [true, false, false],
        ),
        (
            Method::GET,
            "/hr/webrtc-config".into(),
            None,
            [true, true, true],
        ),
        (
            Method::PUT,
            "/hr/webrtc-config".into(),
            Some(json!({"stunServer": null})),
            [true, false, false],
        ),
        (
            Method::GET,
            "/api/telephony/status".into(),
            None,
            [true, true, true],
        ),
        (
            Method::GET,
            "/api/telephony/calls/active".into(),
            None,
            [true, true, true],
        ),
        (
            Method::GET,
            "/api/telephony/calls/history".into(),
            None,
            [true, true, true],
        ),
        (
            Method::GET,
            "/api/telephony/calls/stats".into(),
            None,
            [true, true, true],
        ),
        (
            Method::GET,
            "/api/telephony/registrations".into(),
            None,
            [true, true, false],
        ),
        (
            Method::GET,
            "/api/telephony/security/blocked".into(),
            None,
            [true, false, false],
        ),
        (
            Method::POST,
            "/api/telephony/sip/create".into(),
            Some(json!({"userId": 424242})),
            [true, false, false],
        ),
        (Method::GET, "/api/auth/me".into(), None, [true, true, true]),
    ];
    for (method, path, body, allowed) in &routes {
        let r = app.call(method.clone(), path, body.clone(), &none).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without auth: {}",
            r.text
        );
        for (who, auth, ok) in [
            ("admin", &admin, allowed[0]),
            ("supervisor", &sup, allowed[1]),
            ("agent", &agent, allowed[2]),
        ] {
            let r = app.call(method.clone(), path, body.clone(), auth).await;
            if ok {
                assert!(
                    r.status != StatusCode::FORBIDDEN && r.status != StatusCode::UNAUTHORIZED,
                    "{who} {method} {path}: {}",
                    r.status
                );
            } else {
                assert_eq!(
                    r.status,
                    StatusCode::FORBIDDEN,
                    "{who} {method} {path}: {}",
                    r.text
                );
                assert_eq!(r.json()["error"]["code"], "forbidden");
            }
        }
    }
    // destructive admin routes last
    for (method, path) in [
        (Method::POST, format!("/api/agents/{other_id}/deactivate")),
        (Method::DELETE, format!("/api/agents/{other_id}")),
    ] {
        assert_eq!(
            app.call(method.clone(), &path, None, &none).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            app.call(method.clone(), &path, None, &agent).await.status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            app.call(method.clone(), &path, None, &sup).await.status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            app.call(method.clone(), &path, None, &admin).await.status,
            StatusCode::OK
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_through_the_api_get_distinct_extensions() {
    let app = std::sync::Arc::new(TestApp::new().await);
    let admin = app.admin().await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let app = app.clone();
        let admin = admin.clone();
        tasks.push(tokio::spawn(async move {
            let r = app
                .post("/api/agents", json!({"name": "Par Allel", "login": format!("p{i}"), "password": "password-123", "role": "agent"}), &admin)
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
            r.json()["sipCredentials"]["extension"].as_str().map(str::to_string).expect("ext")
        }));
    }
    let mut exts = Vec::new();
    for t in tasks {
        exts.push(t.await.expect("join"));
    }
    exts.sort();
    exts.dedup();
    assert_eq!(exts.len(), 20);
}
