//! Health, console files, unknown routes, WebSockets, restarts.

use std::net::SocketAddr;

use axum::http::{header, StatusCode};
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::*;

#[tokio::test]
async fn health_and_unknown_routes() {
    let app = TestApp::new().await;
    let r = app.get("/api/health", &Auth::None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers
            .get("x-content-type-options")
            .and_then(|v| v.to_str().ok()),
        Some("nosniff")
    );
    assert_eq!(
        r.headers
            .get("x-frame-options")
            .and_then(|v| v.to_str().ok()),
        Some("DENY")
    );
    assert_eq!(r.json()["status"], "ok");
    let r = app.get("/api/nope", &Auth::None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["success"], false);
    let r = app.get("/hr/nope", &Auth::None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // A known route with a method it does not take: 405 in the envelope.
    let r = app
        .call(axum::http::Method::DELETE, "/api/health", None, &Auth::None)
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.json()["success"], false);
    assert_eq!(r.json()["error"]["code"], "method_not_allowed");
    // SIP over WebSocket needs the SIP server
    assert_eq!(
        app.get("/ws", &Auth::None).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let r = app
        .get("/api/telephony/security/blocked", &app.admin().await)
        .await;
    assert_eq!(r.json()["blocked"], json!([]));
}

#[tokio::test]
async fn console_files_and_spa_fallback() {
    let app = TestApp::new().await;
    let r = app.get("/", &Auth::None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.text.contains("npm run build"), "{}", r.text);

    std::fs::create_dir_all(app.console_dir.join("assets")).expect("mkdir");
    std::fs::write(app.console_dir.join("index.html"), "<html>console</html>").expect("write");
    std::fs::write(app.console_dir.join("assets/app.js"), "console.log(1)").expect("write");
    std::fs::write(app.dir.path().join("secret.txt"), "top secret").expect("write");
    let r = app.get("/", &Auth::None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text, "<html>console</html>");
    let r = app.get("/assets/app.js", &Auth::None).await;
    assert_eq!(r.text, "console.log(1)");
    assert!(r
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/javascript")));
    let r = app.get("/agents/42", &Auth::None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text, "<html>console</html>");
    assert_eq!(
        app.get("/assets/missing.js", &Auth::None).await.status,
        StatusCode::NOT_FOUND
    );
    let r = app.get("/../secret.txt", &Auth::None).await;
    assert!(!r.text.contains("top secret"));
    let r = app.get("/assets/..%2F..%2Fsecret.txt", &Auth::None).await;
    assert!(!r.text.contains("top secret"));
}

#[tokio::test]
async fn data_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path();
    {
        let s = open_services(path).await;
        s.users
            .bootstrap_admin(Some(ADMIN_PW))
            .await
            .expect("admin");
        let (_, creds) = s
            .users
            .create(
                &domain::Actor::system(),
                domain::NewUser {
                    name: "Persist Ent".into(),
                    login: Some("persist".into()),
                    password: "password-123".into(),
                    role: "agent".into(),
                    ..Default::default()
                },
            )
            .await
            .expect("create");
        assert_eq!(creds.expect("sip").extension, "1000");
        s.db.close().await;
    }
    let s = open_services(path).await;
    assert_eq!(
        s.users
            .bootstrap_admin(Some("another-password"))
            .await
            .expect("admin"),
        None
    );
    let out = s
        .auth
        .login("persist", "password-123", None)
        .await
        .expect("login after restart");
    assert_eq!(out.user.sip.map(|x| x.username), Some("persist_ent".into()));
    s.auth
        .login("admin", ADMIN_PW, None)
        .await
        .expect("admin password unchanged");
}

async fn serve(app: &TestApp) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let cfg = api::ApiConfig {
        console_dir: app.console_dir.clone(),
        ..Default::default()
    };
    let router = api::router(api::AppState::new(app.services.clone(), None, cfg));
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    addr
}

#[tokio::test]
async fn events_websocket_delivers_agent_events() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let addr = serve(&app).await;
    // no credentials: refused before the upgrade
    let err = tokio_tungstenite::connect_async(format!("ws://{addr}/api/events")).await;
    assert!(err.is_err());
    let Auth::Cookie(token) = &admin else {
        panic!("cookie")
    };
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/api/events?token={token}"))
            .await
            .expect("connect");
    let (id, _) = app.create_user(&admin, "Evented", "evented", "agent").await;
    let msg = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
        .await
        .expect("in time")
        .expect("msg")
        .expect("ok");
    let v: serde_json::Value = serde_json::from_str(msg.to_text().expect("text")).expect("json");
    assert_eq!(v["type"], "agent");
    assert_eq!(v["id"], id);
    assert_eq!(v["action"], "created");
    assert_eq!(v["sipUsername"], "evented");
    assert!(v["at"].is_string());

    // with the cookie header instead of ?token=
    let mut req = format!("ws://{addr}/api/events")
        .into_client_request()
        .expect("req");
    req.headers_mut().insert(
        header::COOKIE,
        format!("centralita_session={token}").parse().expect("hv"),
    );
    let (_ws2, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect with cookie");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
}

#[tokio::test]
async fn expired_session_is_refused() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    assert_eq!(app.get("/api/auth/me", &admin).await.status, StatusCode::OK);
    expire_sessions(&app).await;
    let r = app.get("/api/auth/me", &admin).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"]["code"], "unauthorized");
}

async fn expire_sessions(app: &TestApp) {
    // Move every session's expiry into the past, as if 12 h had gone by.
    let rows = store::testing::execute(&app.services.db, "UPDATE sessions SET expires_at = 1")
        .await
        .expect("update");
    assert!(rows > 0);
}

#[tokio::test]
async fn registrations_listing_and_status_counts() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    app.create_user(&admin, "Reg Istered", "reg", "agent").await;
    let now = chrono::Utc::now();
    app.services
        .registrations
        .save(&domain::RegistrationRecord {
            username: "reg_istered".into(),
            contact: "sip:reg_istered@127.0.0.1:5099;transport=udp".into(),
            transport: "udp".into(),
            source: "127.0.0.1:5099".into(),
            user_agent: Some("sipp".into()),
            instance_id: None,
            reg_id: None,
            call_id: "abc".into(),
            cseq: 2,
            expires_at: now + chrono::Duration::seconds(300),
            registered_at: now,
        })
        .await
        .expect("save");
    let r = app.get("/api/telephony/registrations", &admin).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["total"], 1);
    let reg = &r.json()["registrations"][0];
    assert_eq!(reg["extension"], "1000");
    assert_eq!(reg["transport"], "udp");
    assert_eq!(reg["userAgent"], "sipp");
    let r = app.get("/api/telephony/status", &admin).await;
    assert_eq!(r.json()["status"]["registeredContacts"], 1);
    let r = app.get("/api/agents?search=reg", &admin).await;
    assert_eq!(r.json()["agents"][0]["sip"]["contacts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_over_websocket_reaches_the_sip_server() {
    let app = TestApp::new().await;
    let sip_server = start_sip(&app, sip::SipConfig::default()).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = api::router(api::AppState::new(
        app.services.clone(),
        Some(engine(&sip_server)),
        Default::default(),
    ));
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });

    // without the subprotocol: refused
    assert!(tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .is_err());

    let mut req = format!("ws://{addr}/ws")
        .into_client_request()
        .expect("req");
    req.headers_mut()
        .insert("sec-websocket-protocol", "sip".parse().expect("hv"));
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect");
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("sip")
    );
    let register = "REGISTER sip:centralita.local SIP/2.0\r\n\
        Via: SIP/2.0/WS abc.invalid;branch=z9hG4bK-ws-test-1\r\n\
        Max-Forwards: 70\r\n\
        From: <sip:nobody@centralita.local>;tag=t1\r\n\
        To: <sip:nobody@centralita.local>\r\n\
        Call-ID: ws-test-call-1\r\n\
        CSeq: 1 REGISTER\r\n\
        Contact: <sip:nobody@abc.invalid;transport=ws>\r\n\
        Expires: 600\r\n\
        Content-Length: 0\r\n\r\n";
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::text(register))
        .await
        .expect("send");
    let msg = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
        .await
        .expect("in time")
        .expect("msg")
        .expect("ok");
    let text = msg.to_text().expect("text frame").to_string();
    assert!(text.starts_with("SIP/2.0 "), "{text}");
    assert!(text.contains("ws-test-call-1"), "{text}");
    sip_server.shutdown();
}

/// The builtin engine's per-address limit on SIP connections holds for
/// WebSockets too, and is answered before the upgrade; a closed socket
/// gives its slot back; after shutdown no flow is taken and the status
/// says the engine is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_engine_limits_websocket_flows_and_refuses_them_after_shutdown() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let sip_server = start_sip(
        &app,
        sip::SipConfig {
            max_connections_per_ip: 1,
            ..Default::default()
        },
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = api::router(api::AppState::new(
        app.services.clone(),
        Some(engine(&sip_server)),
        Default::default(),
    ));
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    let request = || {
        let mut req = format!("ws://{addr}/ws")
            .into_client_request()
            .expect("req");
        req.headers_mut()
            .insert("sec-websocket-protocol", "sip".parse().expect("hv"));
        req
    };
    let refusal = |r: Result<_, tokio_tungstenite::tungstenite::Error>| match r {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status(),
        Ok(_) => panic!("expected a refusal, the upgrade succeeded"),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
    };

    let (mut first, _) = tokio_tungstenite::connect_async(request())
        .await
        .expect("first flow");
    assert_eq!(
        refusal(
            tokio_tungstenite::connect_async(request())
                .await
                .map(|_| ())
        ),
        StatusCode::TOO_MANY_REQUESTS
    );
    first.close(None).await.expect("close");
    // The slot is released once the server has seen the socket close.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let second = loop {
        match tokio_tungstenite::connect_async(request()).await {
            Ok((ws, _)) => break ws,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "slot never released: {e}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    drop(second);

    sip_server.shutdown();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match tokio_tungstenite::connect_async(request()).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp))
                if resp.status() == StatusCode::SERVICE_UNAVAILABLE =>
            {
                break
            }
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "still taking flows after shutdown: {:?}",
                    other.map(|_| ())
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
    let Auth::Cookie(cookie) = admin else {
        panic!("admin logs in with a cookie")
    };
    let status = {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let req = axum::http::Request::get("/api/telephony/status")
            .header(header::COOKIE, format!("centralita_session={cookie}"))
            .body(axum::body::Body::empty())
            .expect("request");
        let resp = router_with_sip(&app, &sip_server)
            .oneshot(req)
            .await
            .expect("infallible");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        serde_json::from_slice::<serde_json::Value>(&body).expect("json")
    };
    assert_eq!(status["status"]["connected"], false, "{status}");
    assert_eq!(status["status"]["engine"], "builtin", "{status}");
}

#[tokio::test]
async fn agents_see_only_their_own_events_and_are_cut_off_when_deactivated() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let (id, _) = app
        .create_user(&admin, "Ev Agent", "evagent", "agent")
        .await;
    app.create_user(&admin, "Other Agent", "otheragent", "agent")
        .await;
    let Auth::Cookie(token) = app.login("evagent", "password-123").await else {
        panic!("cookie")
    };
    let addr = serve(&app).await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/api/events?token={token}"))
            .await
            .expect("connect");
    let now = chrono::Utc::now();
    // someone else's call, then one to this agent (extension 1000)
    app.record_call("other", ("1001", None), ("5555", None), now, None, None)
        .await;
    app.create_user(&admin, "Third Agent", "third", "agent")
        .await;
    app.record_call("mine", ("1001", None), ("1000", None), now, None, None)
        .await;
    let msg = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
        .await
        .expect("in time")
        .expect("msg")
        .expect("ok");
    let v: serde_json::Value = serde_json::from_str(msg.to_text().expect("text")).expect("json");
    assert_eq!(
        (v["type"].as_str(), v["callId"].as_str()),
        (Some("call"), Some("mine")),
        "{v}"
    );

    let r = app
        .call(
            axum::http::Method::POST,
            &format!("/api/agents/{id}/deactivate"),
            None,
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    match tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
        .await
        .expect("in time")
    {
        None | Some(Err(_)) => {}
        Some(Ok(m)) => assert!(m.is_close(), "expected the socket to close, got {m:?}"),
    }
}

#[tokio::test]
async fn hostile_bodies_never_cause_a_server_error() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let (id, _) = app.create_user(&admin, "Tar Get", "target", "agent").await;
    let Auth::Cookie(cookie) = admin.clone() else {
        panic!("cookie")
    };
    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let bodies: Vec<Vec<u8>> = vec![
        vec![0xff, 0xfe, 0x00, 0x7b],
        b"null".to_vec(),
        b"[]".to_vec(),
        b"\"string\"".to_vec(),
        b"{\"name\": null, \"login\": null, \"password\": null, \"role\": null}".to_vec(),
        b"{\"userId\": 1e400}".to_vec(),
        b"{\"userId\": -9223372036854775809}".to_vec(),
        b"{\"name\": \"\\u0000\\u0007\", \"login\": \"x\\u0000\", \"password\": \"password-123\", \"role\": \"agent\"}".to_vec(),
        "{\"name\": \"\u{202e}\u{fffd}名前\", \"login\": \"\u{1F600}\", \"password\": \"password-123\", \"role\": \"agent\"}".as_bytes().to_vec(),
        deep.into_bytes(),
        b"{\"login\": \"admin\", \"password\": {\"$ne\": 1}}".to_vec(),
        b"{\"stunServer\": 5, \"wsUrl\": [\"ws://x\"]}".to_vec(),
        b"{\"username\": \"admin\", \"password\": \"\", \"extra\": true}".to_vec(),
    ];
    let doc = app.get("/api/openapi.json", &Auth::None).await.json();
    for (method, path) in crate::openapi::operations(&doc) {
        if method == "get" || path.ends_with("/logout") {
            continue;
        }
        let m: axum::http::Method = method.to_uppercase().parse().expect("method");
        let concrete = path.replace("{id}", &id.to_string());
        for body in &bodies {
            let req = axum::http::Request::builder()
                .method(m.clone())
                .uri(&concrete)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::COOKIE, format!("centralita_session={cookie}"))
                .body(axum::body::Body::from(body.clone()))
                .expect("req");
            let r = app.raw(req).await;
            assert!(
                r.status.as_u16() < 500,
                "{method} {path} with {:?}: {} {}",
                String::from_utf8_lossy(body),
                r.status,
                r.text
            );
        }
    }
    // the target survived everything except possibly being changed by a valid body
    assert_eq!(app.get("/api/auth/me", &admin).await.status, StatusCode::OK);
}

/// With a live SIP server, the status counts its calls and contacts, not
/// the rows (written behind the calls); without one, the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_come_from_the_live_sip_server() {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let app = TestApp::new().await;
    let admin = app.admin().await;
    let now = chrono::Utc::now();
    app.record_call("stale-row", ("1000", None), ("1001", None), now, None, None)
        .await;
    let r = app.get("/api/telephony/status", &admin).await;
    assert_eq!(r.json()["status"]["activeCalls"], 1, "{}", r.text);
    assert_eq!(r.json()["status"]["connected"], false);

    let sip_server = start_sip(&app, sip::SipConfig::default()).await;
    let router = router_with_sip(&app, &sip_server);
    let Auth::Cookie(cookie) = admin else {
        panic!("admin logs in with a cookie")
    };
    let req = axum::http::Request::get("/api/telephony/status")
        .header(header::COOKIE, format!("centralita_session={cookie}"))
        .body(Body::empty())
        .expect("request");
    let resp = router.oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let st = &v["status"];
    assert_eq!(st["connected"], true, "{v}");
    // The open row is not a live call.
    assert_eq!(
        (
            st["activeCalls"].as_i64(),
            st["registeredContacts"].as_i64()
        ),
        (Some(0), Some(0)),
        "{v}"
    );
    sip_server.shutdown();
}

#[tokio::test]
async fn admin_lifts_a_sip_ban_and_it_is_audited() {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let app = TestApp::new().await;
    let admin = app.admin().await;
    let sip_server = start_sip(
        &app,
        sip::SipConfig {
            auth_fail_limit: 1,
            ..Default::default()
        },
    )
    .await;

    // One REGISTER with a wrong digest answer from a real UDP socket bans 127.0.0.1.
    let ua = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = ua.local_addr().expect("addr").port();
    let register = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKban{cseq};rport\r\nMax-Forwards: 70\r\nFrom: <sip:nobody@127.0.0.1>;tag=b\r\nTo: <sip:nobody@127.0.0.1>\r\nCall-ID: ban-test\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:nobody@127.0.0.1:{port}>\r\n{auth}Content-Length: 0\r\n\r\n"
        )
    };
    let mut buf = vec![0u8; 4096];
    ua.send_to(register(1, "").as_bytes(), sip_server.local_addr())
        .await
        .expect("send");
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), ua.recv(&mut buf))
        .await
        .expect("401 in time")
        .expect("recv");
    let challenge = String::from_utf8_lossy(&buf[..n]).to_string();
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("nonce in the 401");
    let auth = format!(
        "Authorization: Digest username=\"nobody\", realm=\"{}\", nonce=\"{nonce}\", uri=\"sip:127.0.0.1\", response=\"00000000000000000000000000000000\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c\"\r\n",
        app.services.config.sip_domain
    );
    ua.send_to(register(2, &auth).as_bytes(), sip_server.local_addr())
        .await
        .expect("send");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while sip_server.blocked_sources().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "source was never banned"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let router = router_with_sip(&app, &sip_server);
    let Auth::Cookie(cookie) = admin else {
        panic!("admin logs in with a cookie")
    };
    let call = |method: &str, path: &str| {
        axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header(header::COOKIE, format!("centralita_session={cookie}"))
            .body(Body::empty())
            .expect("request")
    };
    let send = |req: axum::http::Request<Body>| async {
        let resp = router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        (status, v)
    };

    let (status, v) = send(call("GET", "/api/telephony/security/blocked")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["blocked"][0]["ip"], "127.0.0.1", "{v}");
    let (status, v) = send(call("DELETE", "/api/telephony/security/blocked/not-an-ip")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (status, v) = send(call("DELETE", "/api/telephony/security/blocked/127.0.0.1")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(sip_server.blocked_sources().is_empty());
    let (status, v) = send(call("DELETE", "/api/telephony/security/blocked/127.0.0.1")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["success"], false);
    let (entries, _) = app
        .services
        .audit
        .list(Some("sip.unblock"), None, 10, 0)
        .await
        .expect("audit");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].target_id.as_deref(), Some("127.0.0.1"));
    sip_server.shutdown();
}

/// A real SIP server on a free loopback port over the app's services.
async fn start_sip(app: &TestApp, cfg: sip::SipConfig) -> sip::SipServer {
    let cfg = sip::SipConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        realm: app.services.config.sip_domain.clone(),
        ..cfg
    };
    let backend = std::sync::Arc::new(centralita::DomainBackend::new(app.services.clone()));
    sip::start(cfg, backend).await.expect("sip server")
}

/// The builtin engine as the API sees it.
fn engine(sip_server: &sip::SipServer) -> std::sync::Arc<dyn domain::Engine> {
    std::sync::Arc::new(sip_server.clone())
}

/// The router with a live SIP server behind it, as the binary wires it.
fn router_with_sip(app: &TestApp, sip_server: &sip::SipServer) -> axum::Router {
    use axum::extract::connect_info::MockConnectInfo;
    api::router(api::AppState::new(
        app.services.clone(),
        Some(engine(sip_server)),
        Default::default(),
    ))
    .layer(MockConnectInfo(
        "127.0.0.1:40000".parse::<SocketAddr>().expect("addr"),
    ))
}

/// Issue 8: API JSON must not be cached; the console carries a
/// Content-Security-Policy (the browser suite checks the console works under it).
#[tokio::test]
async fn api_json_is_not_cached_and_the_console_has_a_content_security_policy() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let no_store = |r: &Resp| {
        r.headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    for (path, auth) in [
        ("/api/health", &Auth::None),
        ("/api/auth/me", &admin),
        ("/api/agents", &admin),
        ("/api/nope", &Auth::None),
        ("/hr/users", &Auth::None),
        ("/hr/nope", &Auth::None),
    ] {
        let r = app.get(path, auth).await;
        assert_eq!(
            no_store(&r).as_deref(),
            Some("no-store"),
            "{path}: {:?}",
            r.headers
        );
    }
    let r = app
        .post(
            "/api/auth/login",
            json!({"login": "admin", "password": "wrong-password"}),
            &Auth::None,
        )
        .await;
    assert_eq!(no_store(&r).as_deref(), Some("no-store"));

    std::fs::create_dir_all(app.console_dir.join("assets")).expect("mkdir");
    std::fs::write(app.console_dir.join("index.html"), "<html>console</html>").expect("write");
    std::fs::write(app.console_dir.join("assets/app.js"), "console.log(1)").expect("write");
    for path in ["/", "/admin/agents", "/assets/app.js"] {
        let r = app.get(path, &Auth::None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        let csp = r
            .headers
            .get(header::CONTENT_SECURITY_POLICY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "object-src 'none'",
            "frame-ancestors 'none'",
        ] {
            assert!(
                csp.contains(directive),
                "{path}: CSP {csp:?} lacks {directive}"
            );
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        // Static console files keep their own caching.
        assert_ne!(no_store(&r).as_deref(), Some("no-store"), "{path}");
    }
}
