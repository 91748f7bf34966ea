//! End-to-end harness: a real server (domain services on a temporary SQLite
//! file + the SIP server on random 127.0.0.1 ports + a WebSocket endpoint
//! that bridges to `domain::Engine::attach_flow` as the HTTP layer does),
//! sipp as a real peer, and a small SIP user agent in Rust.
//!
//! Switching to the real binary: replace `TestServer::start` with a spawn of
//! `env!("CARGO_BIN_EXE_centralita")` (CENTRALITA_SIP_LISTEN, DATABASE_URL)
//! and create agents through `POST /api/agents`; the tests use only the
//! methods below.
#![allow(dead_code)]
// The tungstenite handshake callback type fixes its large error type.
#![allow(clippy::result_large_err)]

pub mod ua;

use futures_util::{SinkExt, StreamExt};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

pub const REALM: &str = "centralita.test";
pub const AGENT_PASSWORD: &str = "console-password-1";

pub struct Agent {
    pub user_id: i64,
    pub username: String,
    pub password: String,
    pub extension: String,
}

pub struct TestServer {
    pub services: domain::Services,
    pub sip: sip::SipServer,
    pub addr: SocketAddr,
    pub ws_addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

pub fn sipp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../centralita/tests/sipp")
}

/// A 127.0.0.1 port that was free for UDP and for TCP a moment ago, for a
/// sipp or Kamailio peer (`-t u1` uses UDP, `-t t1` TCP; a port free for one
/// transport may be taken for the other). The server under test listens on
/// port 0.
///
/// Chosen below the kernel's ephemeral range (32768 and up): a peer that is
/// restarted on the same port must find it free again, and an ephemeral
/// port can be taken in the meantime by any outgoing connection of another
/// test running in parallel.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().wrapping_mul(2_654_435_761);
    for _ in 0..500 {
        let step = NEXT.fetch_add(7_919, Ordering::Relaxed);
        let port = (FIRST + seed.wrapping_add(step) % SPAN) as u16;
        let udp_free = UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if udp_free && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() && reserve(port) {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1 in 500 tries");
}

/// Claims `port` for this test process across the whole test run: nextest
/// runs every test in its own process, and a test that restarts its peer
/// (Kamailio in sip_trunk_register) leaves the port free for a moment, when
/// another test's `free_port` must not hand it out. A claim is a file made
/// with `create_new`; one older than the longest test is stale and taken
/// over.
fn reserve(port: u16) -> bool {
    const STALE: Duration = Duration::from_secs(15 * 60);
    let dir = std::env::temp_dir().join("centralita-sip-test-ports");
    if std::fs::create_dir_all(&dir).is_err() {
        return true; // no shared directory: fall back to the bind check alone
    }
    let claim = dir.join(port.to_string());
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&claim)
            .is_ok()
    };
    if create() {
        return true;
    }
    let stale = std::fs::metadata(&claim)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > STALE);
    // Two processes may both see a stale claim: only the one whose
    // remove-then-create wins gets the port.
    stale && std::fs::remove_file(&claim).is_ok() && create()
}

impl TestServer {
    pub async fn start(tweak: impl FnOnce(&mut sip::SipConfig)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = store::testing::database_url(dir.path());
        TestServer::start_with(dir, &url, tweak).await
    }

    /// Starts on an existing database (restart tests).
    pub async fn start_with(
        dir: tempfile::TempDir,
        url: &str,
        tweak: impl FnOnce(&mut sip::SipConfig),
    ) -> TestServer {
        let db = domain::Db::open(url).await.expect("open the test database");
        let services = domain::Services::new(
            db,
            domain::DomainConfig {
                sip_domain: REALM.into(),
                password_cost: domain::PasswordCost::TestOnlyCheap,
                ..Default::default()
            },
        );
        let mut cfg = sip::SipConfig {
            listen: "127.0.0.1:0".parse().expect("literal address"),
            realm: REALM.into(),
            ring_timeout: Duration::from_secs(3),
            auth_fail_limit: 1_000,
            // sipp 3.6 answers only the first challenge and only MD5.
            ..Default::default()
        };
        tweak(&mut cfg);
        let backend = Arc::new(centralita::DomainBackend::new(services.clone()));
        let sip = sip::start(cfg, backend).await.expect("start SIP");
        let addr = sip.local_addr();
        let ws = TcpListener::bind("127.0.0.1:0").await.expect("bind WS");
        let ws_addr = ws.local_addr().expect("WS address");
        tokio::spawn(ws_bridge(ws, sip.clone()));
        TestServer {
            services,
            sip,
            addr,
            ws_addr,
            dir,
        }
    }

    pub async fn agent(&self, name: &str) -> Agent {
        let (user, creds) = self
            .services
            .users
            .create(
                &domain::Actor::system(),
                domain::NewUser {
                    name: name.into(),
                    login: Some(name.to_lowercase().replace(' ', ".")),
                    email: None,
                    phone: None,
                    password: AGENT_PASSWORD.into(),
                    role: "agent".into(),
                    create_sip: None,
                },
            )
            .await
            .expect("create agent");
        let c = creds.expect("agents get SIP credentials");
        Agent {
            user_id: user.id,
            username: c.username,
            password: c.password,
            extension: c.extension,
        }
    }

    /// CDR rows, newest first, once `n` rows are finished (waits for the write-behind).
    pub async fn finished_calls(&self, n: usize) -> Vec<domain::Call> {
        let mut last = Vec::new();
        for _ in 0..100 {
            let (rows, _) = self
                .services
                .calls
                .history(&domain::calls::CallQuery {
                    limit: 100,
                    ..Default::default()
                })
                .await
                .expect("call history");
            if rows.iter().filter(|c| c.end_time.is_some()).count() >= n {
                return rows;
            }
            last = rows;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {n} finished calls, have {last:?}");
    }

    /// Writes a sipp injection file `user;[authentication ...];` and returns its
    /// path (sipp 3.6 does not expand fields inside `[authentication]`, but it
    /// does expand a whole keyword stored in a field).
    pub fn csv(&self, name: &str, rows: &[(&str, &str)]) -> PathBuf {
        let p = self.dir.path().join(name);
        let mut s = String::from("SEQUENTIAL\n");
        for (u, pw) in rows {
            s.push_str(&format!(
                "{u};[authentication username={u} password={pw}];\n"
            ));
        }
        std::fs::write(&p, s).expect("write CSV");
        p
    }

    /// Runs one sipp scenario to completion (`-m 1`); returns success and its output.
    pub async fn sipp(
        &self,
        scenario: &str,
        csv: &PathBuf,
        port: u16,
        extra: &[&str],
    ) -> (bool, String) {
        let child = self.spawn_sipp(scenario, Some(csv), port, extra);
        let (ok, mut out) = finish(child).await;
        if !ok {
            out.push_str(&self.sipp_errors());
        }
        (ok, out)
    }

    /// The tail of sipp's error logs (`-trace_err`) in the test directory.
    pub fn sipp_errors(&self) -> String {
        let mut s = String::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.path()) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().ends_with(".log") {
                    let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(60).collect();
                    s.push_str(&format!("\n== {} ==\n", e.file_name().to_string_lossy()));
                    s.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
                }
            }
        }
        s
    }

    pub fn spawn_sipp(
        &self,
        scenario: &str,
        csv: Option<&PathBuf>,
        port: u16,
        extra: &[&str],
    ) -> tokio::process::Child {
        let mut cmd = tokio::process::Command::new("sipp");
        cmd.arg(self.addr.to_string())
            .arg("-sf")
            .arg(sipp_dir().join(scenario))
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args([
                "-m",
                "1",
                "-timeout",
                "45s",
                "-timeout_error",
                "-nostdin",
                "-trace_err",
                "-trace_msg",
            ])
            .args(extra)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(c) = csv {
            cmd.arg("-inf").arg(c);
        }
        cmd.spawn().expect("start sipp (Debian package sip-tester)")
    }

    /// Registers `a` with sipp from `port` (so a sipp UAS can listen there next).
    pub async fn register_with_sipp(&self, a: &Agent, port: u16) {
        let csv = self.csv(
            &format!("reg-{}.csv", a.username),
            &[(&a.username, &a.password)],
        );
        let (ok, out) = self.sipp("reg_ok.xml", &csv, port, &[]).await;
        assert!(ok, "sipp REGISTER failed: {out}");
        // The binding is in memory at once; wait for the write-behind too.
        for _ in 0..50 {
            let r = self
                .services
                .registrations
                .for_username(&a.username)
                .await
                .expect("registrations");
            if !r.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("registration of {} not persisted", a.username);
    }
}

pub async fn finish(child: tokio::process::Child) -> (bool, String) {
    match tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await {
        Ok(Ok(o)) => (
            o.status.success(),
            format!(
                "status {:?}\n{}\n{}",
                o.status.code(),
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .join("\n"),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Ok(Err(e)) => (false, format!("sipp: {e}")),
        Err(_) => (false, "sipp did not finish in 60 s".into()),
    }
}

/// What the HTTP layer does at /ws: accept subprotocol `sip`, forward frames.
async fn ws_bridge(listener: TcpListener, sip: sip::SipServer) {
    while let Ok((stream, peer)) = listener.accept().await {
        let sip = sip.clone();
        tokio::spawn(async move {
            let cb = |req: &Request, mut resp: Response| {
                let wants_sip = req
                    .headers()
                    .get("Sec-WebSocket-Protocol")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.split(',').any(|p| p.trim() == "sip"));
                if wants_sip {
                    resp.headers_mut()
                        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
                }
                Ok(resp)
            };
            let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, cb).await else {
                return;
            };
            let (mut wr, mut rd) = ws.split();
            // Through the engine interface, as the HTTP layer does.
            let Ok(domain::FlowHandle {
                inbound: tx,
                outbound: mut rx,
            }) = domain::Engine::attach_flow(&sip, peer, false)
            else {
                let _ = wr.close().await;
                return;
            };
            let out = tokio::spawn(async move {
                while let Some(m) = rx.recv().await {
                    let text = String::from_utf8_lossy(&m).into_owned();
                    if wr.send(Message::text(text)).await.is_err() {
                        break;
                    }
                }
                let _ = wr.close().await;
            });
            while let Some(Ok(m)) = rd.next().await {
                let data = match m {
                    Message::Text(t) => t.as_bytes().to_vec(),
                    Message::Binary(b) => b.to_vec(),
                    Message::Close(_) => break,
                    _ => continue,
                };
                if tx.send(data).await.is_err() {
                    break;
                }
            }
            drop(tx);
            let _ = out.await;
        });
    }
}

/// Starts `cmd` in a process group of its own, so that
/// [`stop_grouped`] ends every process it forks: Kamailio's children
/// outlive a SIGTERM to its main process (seen: four of them still
/// listening on its ports an hour later, so that a Kamailio restarted on
/// the same port could not bind it).
pub fn spawn_grouped(cmd: &mut std::process::Command) -> std::io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0).spawn()
}

/// Ends a process started by [`spawn_grouped`] and everything it forked:
/// SIGTERM to the group and a moment for a clean stop, then SIGKILL to
/// whatever of the group is left; the main process is reaped.
pub fn stop_grouped(child: &mut std::process::Child) {
    let group = format!("-{}", child.id());
    let _ = std::process::Command::new("kill")
        .args(["-TERM", "--", &group])
        .stderr(Stdio::null())
        .status();
    for _ in 0..60 {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &group])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
}

/// A self-signed development certificate (cert, key) in `dir`, for
/// `localhost` and 127.0.0.1: a TLS peer of the tests (phone, carrier).
pub fn dev_cert(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let c = centralita::devcert::generate(dir, &["localhost".into(), "127.0.0.1".into()], false)
        .expect("development certificate");
    (c.cert_path, c.key_path)
}

/// The accepting side of a TLS peer of the tests, with its certificate.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("read certificate")
        .collect::<Result<_, _>>()
        .expect("PEM certificate");
    let key = PrivateKeyDer::from_pem_file(key).expect("read key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("TLS certificate");
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}
