use axum::http::{header, Method, StatusCode};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn login_me_logout() {
    let app = TestApp::new().await;
    let r = app
        .post(
            "/api/auth/login",
            json!({"login": "admin", "password": ADMIN_PW}),
            &Auth::None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let cookie = r
        .headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .expect("cookie")
        .to_string();
    assert!(cookie.starts_with("centralita_session="), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert_eq!(r.json()["success"], true);
    assert_eq!(r.json()["user"]["login"], "admin");
    assert_eq!(r.json()["user"]["role"], "admin");
    assert!(!r.text.contains("password"), "{}", r.text);

    let auth = app.admin().await;
    let me = app.get("/api/auth/me", &auth).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json()["user"]["login"], "admin");

    let out = app
        .call(Method::POST, "/api/auth/logout", None, &auth)
        .await;
    assert_eq!(out.status, StatusCode::OK);
    assert!(out
        .headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.contains("Max-Age=0")));
    let me = app.get("/api/auth/me", &auth).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    assert_eq!(me.json()["error"]["code"], "unauthorized");
    assert_eq!(me.json()["success"], false);
}

#[tokio::test]
async fn login_by_email_and_bad_credentials() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let r = app
        .post(
            "/api/agents",
            json!({"name": "Mail User", "email": "mail@example.com", "password": "password-123", "role": "supervisor"}),
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    app.login("MAIL@example.com", "password-123").await;

    for (login, pw) in [("admin", "wrong-password"), ("nobody", "whatever-pass")] {
        let r = app
            .post(
                "/api/auth/login",
                json!({"login": login, "password": pw}),
                &Auth::None,
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.json()["error"]["code"], "invalid_credentials");
    }
    // malformed and invalid bodies
    let r = app
        .raw(
            axum::http::Request::post("/api/auth/login")
                .header(header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from("{\"login\": "))
                .expect("req"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["success"], false);
    let r = app
        .post("/api/auth/login", json!({"login": "admin"}), &Auth::None)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .post(
            "/api/auth/login",
            json!({"login": "admin", "password": "x", "extra": 1}),
            &Auth::None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .post(
            "/api/auth/login",
            json!({"login": "a".repeat(300), "password": "x"}),
            &Auth::None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // expired/unknown session
    let r = app
        .get("/api/auth/me", &Auth::Cookie("deadbeef".into()))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn login_rate_limited_per_account_and_per_ip() {
    let mut app = TestApp::new().await;
    app.set_client_ip("10.1.1.1");
    for i in 0..4 {
        let r = app
            .post(
                "/api/auth/login",
                json!({"login": "admin", "password": format!("bad-{i}")}),
                &Auth::None,
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = app
        .post(
            "/api/auth/login",
            json!({"login": "admin", "password": "bad-5"}),
            &Auth::None,
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "rate_limited");
    let retry: u64 = r
        .headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!(retry > 0);
    // the account is blocked even with the right password, from anywhere
    app.set_client_ip("10.2.2.2");
    let r = app
        .post(
            "/api/auth/login",
            json!({"login": "admin", "password": ADMIN_PW}),
            &Auth::None,
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);

    // per IP: one address spraying many accounts
    app.set_client_ip("10.3.3.3");
    for i in 0..4 {
        let r = app
            .post(
                "/api/auth/login",
                json!({"login": format!("user{i}"), "password": "nope-nope"}),
                &Auth::None,
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = app
        .post(
            "/api/auth/login",
            json!({"login": "user9", "password": "nope-nope"}),
            &Auth::None,
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn api_tokens_create_use_revoke() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let (sup_id, _) = app.create_user(&admin, "Sup Er", "sup", "supervisor").await;
    let r = app
        .post(
            "/api/auth/tokens",
            json!({"name": "crm", "userId": sup_id}),
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let secret = r.json()["secret"].as_str().expect("secret").to_string();
    assert!(secret.starts_with("ctk_"));
    let id = r.json()["token"]["id"].as_i64().expect("id");
    let bearer = Auth::Bearer(secret.clone());
    let me = app.get("/api/auth/me", &bearer).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json()["user"]["id"], sup_id);
    // supervisors may read agents but not manage tokens
    assert_eq!(app.get("/api/agents", &bearer).await.status, StatusCode::OK);
    assert_eq!(
        app.get("/api/auth/tokens", &bearer).await.status,
        StatusCode::FORBIDDEN
    );

    let list = app.get("/api/auth/tokens", &admin).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json()["total"], 1);
    assert!(!list.text.contains(&secret), "token list leaks the secret");
    assert_eq!(list.json()["tokens"][0]["name"], "crm");
    assert!(
        list.json()["tokens"][0]["lastUsedAt"].is_string(),
        "use is recorded: {}",
        list.text
    );
    assert!(list.json()["tokens"][0]["revokedAt"].is_null());

    let r = app
        .call(
            Method::DELETE,
            &format!("/api/auth/tokens/{id}"),
            None,
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        app.get("/api/auth/me", &bearer).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/auth/tokens/{id}"),
            None,
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // validation
    let r = app
        .post(
            "/api/auth/tokens",
            json!({"name": "", "userId": sup_id}),
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .post(
            "/api/auth/tokens",
            json!({"name": "x", "userId": 99999}),
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get("/api/auth/me", &Auth::Bearer("ctk_nope".into()))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn password_change_ends_sessions_and_role_change_applies_at_once() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let (id, _) = app.create_user(&admin, "Pat Agent", "pat", "agent").await;
    let pat = app.login("pat", "password-123").await;
    assert_eq!(
        app.get("/api/agents", &pat).await.status,
        StatusCode::FORBIDDEN
    );
    let r = app
        .call(
            Method::PATCH,
            &format!("/api/agents/{id}"),
            Some(json!({"role": "supervisor"})),
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        app.get("/api/agents", &pat).await.status,
        StatusCode::OK,
        "new role applies to the live session"
    );
    let r = app
        .call(
            Method::PATCH,
            &format!("/api/agents/{id}"),
            Some(json!({"password": "new-password-1"})),
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        app.get("/api/auth/me", &pat).await.status,
        StatusCode::UNAUTHORIZED,
        "sessions end on a password change"
    );
    let r = app
        .post(
            "/api/auth/login",
            json!({"login": "pat", "password": "password-123"}),
            &Auth::None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    app.login("pat", "new-password-1").await;
    // a supervisor cannot promote themselves
    let sup = app.login("pat", "new-password-1").await;
    let r = app
        .call(
            Method::PATCH,
            &format!("/api/agents/{id}"),
            Some(json!({"role": "admin"})),
            &sup,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}
