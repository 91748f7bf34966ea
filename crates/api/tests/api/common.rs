//! Test harness: the real router over a real SQLite file in a temp dir.

#![allow(dead_code)]

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use chrono::{DateTime, Duration, Utc};
use domain::{
    CallEvent, CallEventKind, Db, Direction, DomainConfig, HangupCause, Party, PasswordCost,
    Services,
};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub const ADMIN_PW: &str = "admin-password-1";

pub struct TestApp {
    pub services: Services,
    pub dir: tempfile::TempDir,
    pub console_dir: std::path::PathBuf,
    /// The engine behind the router (none by default).
    pub engine: Option<std::sync::Arc<dyn domain::Engine>>,
    ip: SocketAddr,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    /// The body as sent (`text` is its lossy UTF-8 reading).
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

#[derive(Clone, Debug)]
pub enum Auth {
    None,
    Cookie(String),
    Bearer(String),
}

/// Services on the test database of the directory `dir` (SQLite in it, or
/// PostgreSQL when the run asks for it); reopening the same `dir` finds the
/// same data.
pub async fn open_services(dir: &std::path::Path) -> Services {
    open_services_with(
        dir,
        DomainConfig {
            password_cost: PasswordCost::TestOnlyCheap,
            ..Default::default()
        },
    )
    .await
}

pub async fn open_services_with(dir: &std::path::Path, cfg: DomainConfig) -> Services {
    let db = Db::open(&store::testing::database_url(dir))
        .await
        .expect("open db");
    Services::new(db, cfg)
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with_config(DomainConfig {
            password_cost: PasswordCost::TestOnlyCheap,
            ..Default::default()
        })
        .await
    }

    /// Like `new` with this domain configuration.
    pub async fn with_config(cfg: DomainConfig) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let services = open_services_with(dir.path(), cfg).await;
        services
            .users
            .bootstrap_admin(Some(ADMIN_PW))
            .await
            .expect("admin");
        let console_dir = dir.path().join("console");
        Self {
            services,
            console_dir,
            dir,
            engine: None,
            ip: "127.0.0.1:40000".parse().expect("addr"),
        }
    }

    /// The recording directory the router serves from (inside `dir`).
    pub fn recording_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("recordings")
    }

    /// Requests from now on come from this client address.
    pub fn set_client_ip(&mut self, ip: &str) {
        self.ip = format!("{ip}:40000").parse().expect("addr");
    }

    pub fn router(&self) -> Router {
        self.router_from(self.ip)
    }

    /// The router for requests from `ip`.
    pub fn router_from(&self, ip: SocketAddr) -> Router {
        let cfg = api::ApiConfig {
            console_dir: self.console_dir.clone(),
            recording_dir: Some(self.recording_dir()),
            ..Default::default()
        };
        api::router(api::AppState::new(
            self.services.clone(),
            self.engine.clone(),
            cfg,
        ))
        .layer(MockConnectInfo(ip))
    }

    pub async fn raw(&self, req: Request<Body>) -> Resp {
        let resp = self.router().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        Resp {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
            body: bytes.to_vec(),
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>, auth: &Auth) -> Resp {
        let mut b = Request::builder().method(method).uri(path);
        b = match auth {
            Auth::None => b,
            Auth::Cookie(c) => b.header(header::COOKIE, format!("centralita_session={c}")),
            Auth::Bearer(t) => b.header(header::AUTHORIZATION, format!("Bearer {t}")),
        };
        let req = match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string())),
            None => b.body(Body::empty()),
        }
        .expect("request");
        self.raw(req).await
    }

    pub async fn get(&self, path: &str, auth: &Auth) -> Resp {
        self.call(Method::GET, path, None, auth).await
    }

    pub async fn post(&self, path: &str, body: Value, auth: &Auth) -> Resp {
        self.call(Method::POST, path, Some(body), auth).await
    }

    /// Logs in and returns the session cookie value.
    pub async fn login(&self, login: &str, password: &str) -> Auth {
        let r = self
            .post(
                "/api/auth/login",
                serde_json::json!({"login": login, "password": password}),
                &Auth::None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "login {login}: {}", r.text);
        let set = r
            .headers
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .expect("set-cookie")
            .to_string();
        let value = set
            .split(';')
            .next()
            .and_then(|kv| kv.split_once('='))
            .map(|(_, v)| v.to_string())
            .expect("cookie");
        Auth::Cookie(value)
    }

    pub async fn admin(&self) -> Auth {
        self.login("admin", ADMIN_PW).await
    }

    /// Records, as an engine reports it, a call from `caller` to `callee`
    /// (number, agent) over one destination leg: it starts at `start`, is
    /// answered `answer` later and ends `end` after the start with that
    /// cause; without an end it stays open.
    pub async fn record_call(
        &self,
        id: &str,
        (caller, caller_agent): (&str, Option<i64>),
        (callee, callee_agent): (&str, Option<i64>),
        start: DateTime<Utc>,
        answer: Option<Duration>,
        end: Option<(Duration, HangupCause)>,
    ) {
        let ev = |at: DateTime<Utc>, kind| CallEvent {
            call_id: id.into(),
            at_ms: u64::try_from(at.timestamp_millis()).expect("after 1970"),
            kind,
        };
        let callee = Party {
            number: callee.into(),
            agent_id: callee_agent,
        };
        let mut events = vec![
            ev(
                start,
                CallEventKind::Started {
                    direction: Direction::Internal,
                    caller: Party {
                        number: caller.into(),
                        agent_id: caller_agent,
                    },
                    callee: callee.clone(),
                    transport: "udp".into(),
                },
            ),
            ev(
                start,
                CallEventKind::LegAdded {
                    leg: 1,
                    party: callee,
                    transport: "udp".into(),
                },
            ),
        ];
        if let Some(dt) = answer {
            events.push(ev(start + dt, CallEventKind::Answered { leg: 1 }));
        }
        if let Some((dt, cause)) = end {
            events.push(ev(start + dt, CallEventKind::Ended { cause }));
        }
        self.services
            .calls
            .record(&events)
            .await
            .expect("record call");
    }

    /// Creates a user through the API; returns (id, sip password if any).
    pub async fn create_user(
        &self,
        admin: &Auth,
        name: &str,
        login: &str,
        role: &str,
    ) -> (i64, Option<String>) {
        let r = self
            .post(
                "/api/agents",
                serde_json::json!({"name": name, "login": login, "password": "password-123", "role": role}),
                admin,
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let v = r.json();
        let id = v["agent"]["id"].as_i64().expect("id");
        (
            id,
            v["sipCredentials"]["password"].as_str().map(str::to_string),
        )
    }
}
