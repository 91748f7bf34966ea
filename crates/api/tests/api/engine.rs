//! The API reports what the engine says and hands `/ws` to it, whatever the
//! engine is. A small engine written here (our own interface, not a stand-in
//! for an external system) makes every answer distinguishable from the
//! database's and from the builtin engine's.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use chrono::{TimeZone, Utc};
use domain::{BlockedSource, Engine, EngineStatus, FlowHandle, FlowRefused};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

/// Flows it took: the peer, whether it was secure, and a signal sent when
/// the API closed the flow.
type Taken = Vec<(SocketAddr, bool, tokio::sync::oneshot::Receiver<()>)>;

struct TestEngine {
    status: EngineStatus,
    blocked: Mutex<Vec<BlockedSource>>,
    /// Flows it still takes before refusing as "too many".
    room: Mutex<usize>,
    taken: Mutex<Taken>,
}

impl TestEngine {
    fn new(status: EngineStatus, blocked: Vec<BlockedSource>, room: usize) -> Arc<Self> {
        Arc::new(Self {
            status,
            blocked: Mutex::new(blocked),
            room: Mutex::new(room),
            taken: Mutex::new(Vec::new()),
        })
    }
}

impl Engine for TestEngine {
    fn name(&self) -> &'static str {
        "test"
    }

    fn status(&self) -> EngineStatus {
        self.status
    }

    fn blocked_sources(&self) -> Vec<BlockedSource> {
        self.blocked.lock().expect("lock").clone()
    }

    fn unblock(&self, ip: IpAddr) -> bool {
        let mut b = self.blocked.lock().expect("lock");
        let before = b.len();
        b.retain(|s| s.ip != ip);
        b.len() != before
    }

    /// Answers every message with `echo: <message>`; a message `bye` makes
    /// it close the flow from its side.
    fn attach_flow(&self, peer: SocketAddr, secure: bool) -> Result<FlowHandle, FlowRefused> {
        {
            let mut room = self.room.lock().expect("lock");
            if *room == 0 {
                return Err(FlowRefused::TooManyConnections(peer.ip()));
            }
            *room -= 1;
        }
        let (in_tx, mut in_rx) = mpsc::channel::<Vec<u8>>(8);
        let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(8);
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            while let Some(m) = in_rx.recv().await {
                if m == b"bye" {
                    return;
                }
                let mut answer = b"echo: ".to_vec();
                answer.extend_from_slice(&m);
                if out_tx.send(answer).await.is_err() {
                    return;
                }
            }
            // The API dropped its sender: the client's socket is gone.
            let _ = closed_tx.send(());
        });
        self.taken
            .lock()
            .expect("lock")
            .push((peer, secure, closed_rx));
        Ok(FlowHandle {
            inbound: in_tx,
            outbound: out_rx,
        })
    }
}

fn ban(ip: &str, failures: u32) -> BlockedSource {
    BlockedSource {
        ip: ip.parse().expect("ip"),
        failures,
        blocked_until: Utc
            .with_ymd_and_hms(2030, 1, 2, 3, 4, 5)
            .single()
            .expect("time"),
    }
}

#[tokio::test]
async fn status_reports_the_engine_not_the_rows() {
    let mut app = TestApp::new().await;
    let admin = app.admin().await;
    // An open CDR row the engine does not count: the engine wins.
    app.record_call(
        "row-only",
        ("1000", None),
        ("1001", None),
        Utc::now(),
        None,
        None,
    )
    .await;
    app.engine = Some(TestEngine::new(
        EngineStatus {
            connected: false,
            active_calls: 7,
            registered_contacts: 3,
            scanner_requests_dropped: 5,
            auth_guarded_refused: 4,
            auth_accounts_guarded: 1,
            ..EngineStatus::default()
        },
        Vec::new(),
        0,
    ));
    let r = app.get("/api/telephony/status", &admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let st = &r.json()["status"];
    assert_eq!(st["activeCalls"], 7, "{st}");
    assert_eq!(st["registeredContacts"], 3, "{st}");
    assert_eq!(st["security"]["scannerRequestsDropped"], 5, "{st}");
    assert_eq!(st["security"]["authGuardedRefused"], 4, "{st}");
    assert_eq!(st["security"]["authAccountsGuarded"], 1, "{st}");
    // The engine says its PBX is unreachable; the API does not pretend.
    assert_eq!(st["connected"], false, "{st}");
    assert_eq!(st["engine"], "test", "{st}");
    // The answered-call count has no live counterpart: still the rows.
    assert_eq!(st["callsInProgress"], 0, "{st}");
    let r = app.get("/api/health", &Auth::None).await;
    assert_eq!(r.json()["sip"], true);
}

#[tokio::test]
async fn bans_are_the_engines_and_lifting_one_reaches_it() {
    let mut app = TestApp::new().await;
    let admin = app.admin().await;
    let engine = TestEngine::new(
        EngineStatus::default(),
        vec![ban("192.0.2.7", 12), ban("2001:db8::1", 3)],
        0,
    );
    app.engine = Some(engine.clone());

    let r = app.get("/api/telephony/security/blocked", &admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    assert_eq!(v["total"], 2, "{v}");
    assert_eq!(v["blocked"][0]["ip"], "192.0.2.7");
    assert_eq!(v["blocked"][0]["failures"], 12);
    assert_eq!(v["blocked"][0]["blockedUntil"], "2030-01-02T03:04:05Z");
    assert_eq!(v["blocked"][1]["ip"], "2001:db8::1");

    let r = app
        .call(
            axum::http::Method::DELETE,
            "/api/telephony/security/blocked/2001:db8::1",
            None,
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(engine.blocked_sources(), vec![ban("192.0.2.7", 12)]);
    // The engine says it does not know the address any more: 404.
    let r = app
        .call(
            axum::http::Method::DELETE,
            "/api/telephony/security/blocked/2001:db8::1",
            None,
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = app.get("/api/telephony/security/blocked", &admin).await;
    assert_eq!(r.json()["total"], 1);
    let (entries, _) = app
        .services
        .audit
        .list(Some("sip.unblock"), None, 10, 0)
        .await
        .expect("audit");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].target_id.as_deref(), Some("2001:db8::1"));

    // Agents may not look at or lift bans, whatever the engine.
    app.create_user(&admin, "Ag Ent", "agent1", "agent").await;
    let agent = app.login("agent1", "password-123").await;
    let r = app.get("/api/telephony/security/blocked", &agent).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(engine.blocked_sources().len(), 1);
}

/// Without an engine: nothing is banned and nothing can be lifted.
#[tokio::test]
async fn without_an_engine_bans_are_empty_and_unblock_is_unavailable() {
    let app = TestApp::new().await;
    let admin = app.admin().await;
    let r = app.get("/api/telephony/security/blocked", &admin).await;
    assert_eq!(r.json()["total"], 0);
    let r = app
        .call(
            axum::http::Method::DELETE,
            "/api/telephony/security/blocked/192.0.2.7",
            None,
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    let r = app.get("/api/telephony/status", &admin).await;
    assert_eq!(r.json()["status"]["engine"], serde_json::Value::Null);
}

async fn serve(app: &TestApp, served_over_tls: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = api::router(api::AppState::new(
        app.services.clone(),
        app.engine.clone(),
        api::ApiConfig {
            served_over_tls,
            ..Default::default()
        },
    ));
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    addr
}

fn sip_ws_request(addr: SocketAddr) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut req = format!("ws://{addr}/ws")
        .into_client_request()
        .expect("req");
    req.headers_mut()
        .insert("sec-websocket-protocol", "sip".parse().expect("hv"));
    req
}

async fn next_message<S>(ws: &mut S) -> Option<Message>
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("in time")
        .and_then(Result::ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_is_handed_to_the_engine_and_closed_with_the_socket() {
    let mut app = TestApp::new().await;
    let engine = TestEngine::new(EngineStatus::default(), Vec::new(), 1);
    app.engine = Some(engine.clone());
    let addr = serve(&app, true).await;

    let (mut ws, resp) = tokio_tungstenite::connect_async(sip_ws_request(addr))
        .await
        .expect("connect");
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("sip")
    );
    ws.send(Message::text("OPTIONS sip:x SIP/2.0"))
        .await
        .expect("send");
    let m = next_message(&mut ws).await.expect("answer");
    assert_eq!(m.to_text().expect("text"), "echo: OPTIONS sip:x SIP/2.0");
    ws.send(Message::binary(b"bin".to_vec()))
        .await
        .expect("send");
    let m = next_message(&mut ws).await.expect("answer");
    assert_eq!(m.to_text().expect("text"), "echo: bin");

    let (peer, secure, closed) = engine.taken.lock().expect("lock").remove(0);
    assert_eq!(peer.ip().to_string(), "127.0.0.1");
    assert!(secure, "a router served over TLS hands over WSS flows");

    // The engine has no room for a second flow: refused before the upgrade,
    // with an HTTP status the client sees.
    match tokio_tungstenite::connect_async(sip_ws_request(addr)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // Closing the socket closes the flow.
    ws.close(None).await.expect("close");
    tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("flow closed in time")
        .expect("closed signal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_closes_when_the_engine_closes_the_flow() {
    let mut app = TestApp::new().await;
    app.engine = Some(TestEngine::new(EngineStatus::default(), Vec::new(), 1));
    let addr = serve(&app, false).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(sip_ws_request(addr))
        .await
        .expect("connect");
    ws.send(Message::text("bye")).await.expect("send");
    match next_message(&mut ws).await {
        None => {}
        Some(m) => assert!(m.is_close(), "expected the socket to close, got {m:?}"),
    }
}

#[tokio::test]
async fn ws_without_an_engine_is_unavailable() {
    let app = TestApp::new().await;
    let addr = serve(&app, false).await;
    match tokio_tungstenite::connect_async(sip_ws_request(addr)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// `/api/ready`: 200 while the database answers and the engine listens;
/// 503 with the failed check when the engine is down or the database gone.
/// `/api/health` (liveness) is not affected by the engine.
#[tokio::test]
async fn ready_fails_while_the_engine_or_the_database_is_down() {
    let mut app = TestApp::new().await;
    let up = EngineStatus {
        connected: true,
        ..EngineStatus::default()
    };
    app.engine = Some(TestEngine::new(up, Vec::new(), 0));
    let r = app.get("/api/ready", &Auth::None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["checks"]["sip"], "ok", "{}", r.text);

    app.engine = Some(TestEngine::new(EngineStatus::default(), Vec::new(), 0));
    let r = app.get("/api/ready", &Auth::None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    let v = r.json();
    assert_eq!(v["success"], false);
    assert_eq!(v["checks"]["database"], "ok", "{}", r.text);
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("sip")),
        "{}",
        r.text
    );
    assert_eq!(
        app.get("/api/health", &Auth::None).await.status,
        StatusCode::OK
    );

    app.engine = Some(TestEngine::new(up, Vec::new(), 0));
    app.services.db.close().await;
    let r = app.get("/api/ready", &Auth::None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    let v = r.json();
    assert_ne!(v["checks"]["database"], "ok", "{}", r.text);
    assert_eq!(v["checks"]["sip"], "ok", "{}", r.text);
}
