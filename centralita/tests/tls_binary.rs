//! HTTPS and WSS on the real `centralita` binary with a certificate from
//! `centralita gen-cert`: the client trusts only that certificate, the
//! console API answers over HTTPS with a Secure cookie and `wss://` URLs,
//! and an agent registers over SIP-over-WSS. A bad certificate path stops
//! the start with a clear error.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[allow(dead_code)]
mod support;
use support::TestDatabase;

const BIN: &str = env!("CARGO_BIN_EXE_centralita");
const ADMIN_PW: &str = "tls-admin-pass";

fn gen_cert(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("gen-cert")
        .arg("--out")
        .arg(out)
        .env("CENTRALITA_DATA_DIR", data)
        .env("CENTRALITA_SIP_DOMAIN", "pbx.test")
        .env_remove("CENTRALITA_HTTP_TLS_LISTEN")
        .env_remove("CENTRALITA_CONFIG");
    for h in extra {
        cmd.args(["--host", h]);
    }
    cmd.output().expect("run gen-cert")
}

struct Running {
    child: Child,
    http: SocketAddr,
    https: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn serve_command(data: &Path, cert: &Path, key: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env("CENTRALITA_HTTP_LISTEN", "127.0.0.1:0")
        .env("CENTRALITA_HTTP_TLS_LISTEN", "127.0.0.1:0")
        .env("CENTRALITA_HTTP_TLS_CERT", cert)
        .env("CENTRALITA_HTTP_TLS_KEY", key)
        .env("CENTRALITA_SIP_LISTEN", "127.0.0.1:0")
        .env("CENTRALITA_SIP_DOMAIN", "pbx.test")
        .env("CENTRALITA_DATA_DIR", data)
        .env("CENTRALITA_CONSOLE_DIR", data.join("no-console"))
        .env("CENTRALITA_AUTH_INSECURE_FAST_PASSWORD_HASHING", "true")
        .env("CENTRALITA_ADMIN_PASSWORD", ADMIN_PW)
        .test_database(data)
        .env_remove("CENTRALITA_HTTP_COOKIE_SECURE")
        .env_remove("CENTRALITA_CONFIG")
        .env("RUST_LOG", "warn");
    cmd
}

fn start(data: &Path, cert: &Path, key: &Path) -> Running {
    let mut child = serve_command(data, cert, key)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn centralita");
    let stdout = child.stdout.take().expect("stdout");
    let mut running = Running {
        child,
        http: "0.0.0.0:0".parse().expect("addr"),
        https: "0.0.0.0:0".parse().expect("addr"),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut http, mut https) = (None, None);
    while http.is_none() || https.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("server printed its addresses in time");
        if let Some(a) = line.strip_prefix("centralita listening on http://") {
            http = Some(a.trim().parse().expect("http addr"));
        } else if let Some(a) = line.strip_prefix("centralita listening on https://") {
            https = Some(a.trim().parse().expect("https addr"));
        }
    }
    running.http = http.expect("http");
    running.https = https.expect("https");
    running
}

/// A rustls client that trusts exactly `cert` (the generated one).
fn client_config(cert: &Path) -> Arc<rustls::ClientConfig> {
    centralita::tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).expect("read cert") {
        roots.add(c.expect("pem")).expect("add root");
    }
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

async fn tls_connect(
    cfg: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_string()).expect("server name");
    tokio_rustls::TlsConnector::from(cfg.clone())
        .connect(name, tcp)
        .await
}

struct Resp {
    status: u16,
    head: String,
    body: String,
}

/// One HTTP/1.1 request over TLS (one connection each).
async fn https_request(
    cfg: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    cookie: Option<&str>,
) -> Resp {
    let mut s = tls_connect(cfg, addr, "127.0.0.1")
        .await
        .expect("TLS handshake with the generated certificate as the only root");
    let body = body.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n",
        addr.port()
    );
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: centralita_session={c}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    // A peer that closes without close_notify ends in UnexpectedEof; what
    // was read is still the whole response (Connection: close).
    let read = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
        .await
        .expect("response in time");
    if let Err(e) = read {
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("http response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    Resp {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

fn set_cookie(head: &str) -> String {
    head.lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("set-cookie")
        .to_string()
}

fn cookie_value(set_cookie: &str) -> String {
    let v = set_cookie
        .split_once("centralita_session=")
        .expect("cookie")
        .1;
    v.split(';').next().expect("value").to_string()
}

fn md5_hex(s: &str) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(s.as_bytes()))
}

/// `name="value"` or `name=value` from a Digest challenge.
fn param(challenge: &str, name: &str) -> Option<String> {
    let start = challenge.find(&format!("{name}="))? + name.len() + 1;
    let rest = &challenge[start..];
    if let Some(q) = rest.strip_prefix('"') {
        q.split('"').next().map(str::to_string)
    } else {
        rest.split(',').next().map(|v| v.trim().to_string())
    }
}

fn register_text(user: &str, realm: &str, cseq: u32, auth: Option<&str>) -> String {
    let mut s = format!(
        "REGISTER sip:{realm} SIP/2.0\r\nVia: SIP/2.0/WSS tlstest.invalid;branch=z9hG4bKtls{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@{realm}>;tag=tls{user}\r\nTo: <sip:{user}@{realm}>\r\n\
         Call-ID: tls-reg-{user}\r\nCSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{user}@tlstest.invalid;transport=ws>;expires=300\r\nUser-Agent: tls-test\r\n"
    );
    if let Some(a) = auth {
        s.push_str(&format!("Authorization: {a}\r\n"));
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

type Wss =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn next_sip(ws: &mut Wss) -> String {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("SIP answer in time")
            .expect("socket open")
            .expect("frame");
        match msg {
            Message::Text(t) => return t.as_str().to_string(),
            Message::Binary(b) => return String::from_utf8_lossy(&b).into_owned(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn gen_cert_writes_loadable_files_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let out = dir.path().join("certs");
    let first = gen_cert(&data, &out, &["pbx.example.test", "192.0.2.10"]);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    for want in [
        "localhost",
        "127.0.0.1",
        "pbx.test",
        "pbx.example.test",
        "192.0.2.10",
        "tls_listen = \"127.0.0.1:8443\"",
        "CENTRALITA_HTTP_TLS_CERT=",
        "CENTRALITA_HTTP_TLS_KEY=",
        "cert.pem",
        "key.pem",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    let (cert, key) = (out.join("cert.pem"), out.join("key.pem"));
    centralita::tls::server_config(&cert, &key).expect("generated files load");
    let before = std::fs::read(&cert).expect("read");

    let again = gen_cert(&data, &out, &[]);
    assert!(!again.status.success(), "must refuse to overwrite");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("--force"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        std::fs::read(&cert).expect("read"),
        before,
        "left untouched"
    );

    let forced = Command::new(BIN)
        .args(["gen-cert", "--force", "--out"])
        .arg(&out)
        .env("CENTRALITA_DATA_DIR", &data)
        .output()
        .expect("run");
    assert!(forced.status.success());
    assert_ne!(std::fs::read(&cert).expect("read"), before, "replaced");
    centralita::tls::server_config(&cert, &key).expect("new files load");

    // Default directory: <data_dir>/tls.
    let default = Command::new(BIN)
        .arg("gen-cert")
        .env("CENTRALITA_DATA_DIR", &data)
        .env_remove("CENTRALITA_CONFIG")
        .output()
        .expect("run");
    assert!(default.status.success());
    assert!(data.join("tls/cert.pem").exists() && data.join("tls/key.pem").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_wss_serve_the_console_api_and_sip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let out = dir.path().join("tls");
    let g = gen_cert(&data, &out, &[]);
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let cert = out.join("cert.pem");
    let server = start(&data, &cert, &out.join("key.pem"));
    let cfg = client_config(&cert);
    let https = server.https;

    // Health over HTTPS, by IP address and by name.
    let r = https_request(&cfg, https, "GET", "/api/health", None, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"sip\":true"), "{}", r.body);
    tls_connect(&cfg, https, "localhost")
        .await
        .expect("the certificate covers localhost");
    // A name the certificate does not cover is refused by the client.
    assert!(tls_connect(&cfg, https, "other.test").await.is_err());

    // Login over HTTPS: the session cookie is Secure.
    let body = serde_json::json!({"login": "admin", "password": ADMIN_PW}).to_string();
    let r = https_request(&cfg, https, "POST", "/api/auth/login", Some(&body), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sc = set_cookie(&r.head);
    assert!(sc.contains("; Secure"), "{sc}");
    let admin = cookie_value(&sc);

    // An agent with a SIP account, created over HTTPS.
    let body = serde_json::json!({"name": "Tina TLS", "login": "tina", "password": "agent-pass-1", "role": "agent"}).to_string();
    let r = https_request(
        &cfg,
        https,
        "POST",
        "/api/agents",
        Some(&body),
        Some(&admin),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let creds = &json(&r.body)["sipCredentials"];
    let user = creds["username"].as_str().expect("username").to_string();
    let sip_pw = creds["password"].as_str().expect("password").to_string();

    // The softphone URL handed out over HTTPS is wss:// on the HTTPS port.
    let r = https_request(&cfg, https, "GET", "/hr/webrtc-config", None, Some(&admin)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ws_url = json(&r.body)["config"]["wsUrl"]
        .as_str()
        .expect("wsUrl")
        .to_string();
    assert_eq!(ws_url, format!("wss://127.0.0.1:{}/ws", https.port()));

    // The plain listener still serves the same routes, handing out ws://.
    let mut plain = tokio::net::TcpStream::connect(server.http)
        .await
        .expect("plain HTTP still listening");
    let req = format!(
        "GET /hr/webrtc-config HTTP/1.1\r\nHost: {}\r\nCookie: centralita_session={admin}\r\nConnection: close\r\n\r\n",
        server.http
    );
    plain.write_all(req.as_bytes()).await.expect("write");
    let mut text = String::new();
    plain.read_to_string(&mut text).await.expect("read");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains(&format!("\"wsUrl\":\"ws://{}/ws\"", server.http)),
        "{text}"
    );

    // SIP over WSS, subprotocol sip.
    let tls = tls_connect(&cfg, https, "127.0.0.1").await.expect("tls");
    let mut req = ws_url.as_str().into_client_request().expect("request");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "sip".parse().expect("header value"),
    );
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tls)
        .await
        .expect("WSS upgrade");
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("sip")
    );
    let options =
        "OPTIONS sip:pbx.test SIP/2.0\r\nVia: SIP/2.0/WSS tlstest.invalid;branch=z9hG4bKopt1\r\n\
                   Max-Forwards: 70\r\nFrom: <sip:probe@pbx.test>;tag=o1\r\nTo: <sip:pbx.test>\r\n\
                   Call-ID: tls-options-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    ws.send(Message::Text(options.into())).await.expect("send");
    let answer = next_sip(&mut ws).await;
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");

    ws.send(Message::Text(
        register_text(&user, "pbx.test", 1, None).into(),
    ))
    .await
    .expect("send");
    let challenge = next_sip(&mut ws).await;
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    let www = challenge
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("www-authenticate:"))
        .find(|l| !l.contains("SHA-256"))
        .expect("an MD5 challenge");
    let realm = param(www, "realm").expect("realm");
    let nonce = param(www, "nonce").expect("nonce");
    let uri = "sip:pbx.test";
    let ha1 = md5_hex(&format!("{user}:{realm}:{sip_pw}"));
    let ha2 = md5_hex(&format!("REGISTER:{uri}"));
    let (nc, cnonce) = ("00000001", "c0ffee42");
    let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    let mut auth = format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\""
    );
    if let Some(opaque) = param(www, "opaque") {
        auth.push_str(&format!(", opaque=\"{opaque}\""));
    }
    ws.send(Message::Text(
        register_text(&user, "pbx.test", 2, Some(&auth)).into(),
    ))
    .await
    .expect("send");
    let ok = next_sip(&mut ws).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(header(&ok, "Contact").is_some(), "{ok}");

    // The registrar saw a secure WebSocket flow. Registrations are stored
    // behind the answer, so poll briefly.
    let mut seen = String::new();
    for _ in 0..50 {
        let r = https_request(
            &cfg,
            https,
            "GET",
            "/api/telephony/registrations",
            None,
            Some(&admin),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        seen = r.body;
        if seen.contains(&user) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let regs = json(&seen);
    let reg = regs["registrations"]
        .as_array()
        .and_then(|l| l.iter().find(|r| r["username"] == user.as_str()))
        .unwrap_or_else(|| panic!("registration of {user} listed: {seen}"));
    assert_eq!(
        reg["transport"]
            .as_str()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("wss"),
        "{seen}"
    );
    let _ = ws.close(None).await;
}

#[test]
fn a_bad_certificate_path_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let missing = PathBuf::from("/nonexistent/centralita-test/cert.pem");
    let out = serve_command(&data, &missing, &missing)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    assert!(!out.status.success(), "must not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("http.tls_cert"), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/centralita-test/cert.pem"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !data.join("centralita.db").exists(),
        "stopped before touching the database"
    );
}

#[test]
fn half_configured_https_is_refused_but_gen_cert_still_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // Only the address: serve refuses and says which keys are missing.
    let out = Command::new(BIN)
        .arg("serve")
        .env("CENTRALITA_DATA_DIR", &data)
        .env("CENTRALITA_HTTP_LISTEN", "127.0.0.1:0")
        .env("CENTRALITA_SIP_LISTEN", "127.0.0.1:0")
        .env("CENTRALITA_HTTP_TLS_LISTEN", "127.0.0.1:0")
        .env_remove("CENTRALITA_HTTP_TLS_CERT")
        .env_remove("CENTRALITA_HTTP_TLS_KEY")
        .env_remove("CENTRALITA_CONFIG")
        .output()
        .expect("run");
    assert!(!out.status.success(), "must not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("http.tls_cert") && stderr.contains("gen-cert"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // gen-cert runs with that same configuration and uses its address.
    let out = Command::new(BIN)
        .arg("gen-cert")
        .env("CENTRALITA_DATA_DIR", &data)
        .env("CENTRALITA_HTTP_TLS_LISTEN", "127.0.0.1:9443")
        .env_remove("CENTRALITA_CONFIG")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("CENTRALITA_HTTP_TLS_LISTEN=127.0.0.1:9443"),
        "{stdout}"
    );
}
