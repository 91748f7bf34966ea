//! What an operator does with the real `centralita` binary besides serving:
//! a database URL it cannot use stops the start (never a fallback), the
//! `check-config`, `migrate` and `backup` commands, JSON logs, `/metrics`
//! and `/api/ready`.

mod support;
use support::TestDatabase;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_centralita");
const ADMIN_PASSWORD: &str = "admin-password-for-ops-tests";

/// A command of the binary with a clean environment for `data`, on the
/// default SQLite file in it: most of these tests are about that file
/// (what `migrate`, `check-config` and `backup` do with it). The PostgreSQL
/// paths have `unusable_postgres_servers_stop_the_start`; the tests that
/// serve calls switch to the run's database with `.test_database(data)`.
fn centralita(data: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(data)
        .env("CENTRALITA_DATA_DIR", data)
        .env("CENTRALITA_CONSOLE_DIR", data.join("no-console"))
        .env("CENTRALITA_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("CENTRALITA_AUTH_INSECURE_FAST_PASSWORD_HASHING", "true")
        .env("CENTRALITA_HTTP_LISTEN", "127.0.0.1:0")
        .env("CENTRALITA_SIP_LISTEN", "127.0.0.1:0")
        .env_remove("CENTRALITA_DATABASE_URL")
        .env_remove("CENTRALITA_CONFIG")
        .env_remove("CENTRALITA_LOG_FORMAT")
        .env_remove("CENTRALITA_METRICS_LISTEN")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    cmd
}

/// Runs a command that must end by itself within 60 s.
fn run_to_end(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn centralita");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("centralita did not stop by itself");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Exit code 1, no panic, every needle in stderr.
fn assert_refused(out: &Output, needles: &[&str]) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
}

/// Every entry under `dir`, recursively (to show nothing was created).
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(tree(&p));
        }
        out.push(p);
    }
    out.sort();
    out
}

#[test]
fn unusable_database_urls_stop_the_start_and_create_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let a_file = data.join("a-file");
    std::fs::write(&a_file, b"not a directory").expect("write");
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            "postgres://postgres@127.0.0.1/".into(),
            vec!["name the database", "CENTRALITA_DATABASE_URL"],
        ),
        ("mysql://root@127.0.0.1/c".into(), vec!["MySQL"]),
        ("nonsense".into(), vec!["not a database URL"]),
        ("ftp://x/y.db".into(), vec!["unknown database scheme"]),
        (
            format!("sqlite://{}", data.display()),
            vec!["is a directory"],
        ),
        (
            format!("sqlite://{}/sub/c.db", a_file.display()),
            vec!["is a file"],
        ),
        // Nobody, not even root, can create a directory in /proc.
        (
            "sqlite:///proc/centralita-no-such-dir/c.db".into(),
            vec!["/proc"],
        ),
    ];
    let before = tree(data);
    for (url, needles) in &cases {
        for command in [&["serve"][..], &["migrate"], &["check-config"]] {
            let mut cmd = centralita(data, command);
            cmd.env("CENTRALITA_DATABASE_URL", url);
            let out = run_to_end(cmd);
            assert_refused(&out, needles);
            assert!(
                !text(&out.stdout).contains("listening"),
                "{url}: {}",
                text(&out.stdout)
            );
        }
        assert_eq!(tree(data), before, "{url} created files");
    }
    // The same refusal from the configuration file.
    let cfg = data.join("c.toml");
    std::fs::write(&cfg, "database_url = \"redis://127.0.0.1/centralita\"\n").expect("write");
    let out = run_to_end(centralita(
        data,
        &["serve", "--config", cfg.to_str().expect("utf-8")],
    ));
    assert_refused(&out, &["unknown database scheme"]);
}

/// A PostgreSQL URL is accepted, and a server the binary cannot use stops
/// `serve` and `migrate` with the reason and exit code 1: never a fallback
/// to SQLite (nothing is created in the data dir), never the password.
/// With `CENTRALITA_TEST_DATABASE_URL` (CI's PostgreSQL pass) an unknown
/// user and a missing database on a live server are checked too.
#[test]
fn unusable_postgres_servers_stop_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    // Port 1 on the loopback: nothing listens, the connection is refused.
    let mut cases: Vec<(String, Vec<&str>)> = vec![(
        "postgres://centralita:s3cret@127.0.0.1:1/centralita".into(),
        vec![
            "cannot connect to PostgreSQL",
            "is the PostgreSQL server running",
        ],
    )];
    if let Some(admin) = store::testing::postgres_admin_url() {
        let (base, _) = admin.rsplit_once('/').expect("a database in the URL");
        let authority = base.split_once("://").map_or(base, |(_, a)| a);
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        cases.push((
            format!("postgres://no_such_user_h10:s3cret@{host}/postgres"),
            vec!["no_such_user_h10", "wrong user name or password"],
        ));
        cases.push((
            format!("{base}/no_such_database_h10"),
            vec!["no_such_database_h10", "does not exist", "createdb"],
        ));
    }
    let before = tree(data);
    for (url, needles) in &cases {
        for command in [&["serve"][..], &["migrate"]] {
            let mut cmd = centralita(data, command);
            cmd.env("CENTRALITA_DATABASE_URL", url);
            let out = run_to_end(cmd);
            assert_refused(&out, needles);
            let err = text(&out.stderr);
            assert!(!err.contains("s3cret"), "the password is shown: {err}");
            assert!(!text(&out.stdout).contains("listening"), "{url}");
        }
        // check-config accepts the URL without contacting the server.
        let mut cmd = centralita(data, &["check-config"]);
        cmd.env("CENTRALITA_DATABASE_URL", url);
        let out = run_to_end(cmd);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("database: PostgreSQL"),
            "{}",
            text(&out.stdout)
        );
        assert!(!text(&out.stdout).contains("s3cret"));
        // backup points to pg_dump.
        let mut cmd = centralita(data, &["backup", "copy.db"]);
        cmd.env("CENTRALITA_DATABASE_URL", url);
        assert_refused(&run_to_end(cmd), &["pg_dump"]);
        assert_eq!(tree(data), before, "{url} created files");
    }
}

#[test]
fn check_config_summarises_or_names_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let cfg = data.join("c.toml");
    std::fs::write(
        &cfg,
        "log_format = \"json\"\n[sip]\ndomain = \"pbx.test\"\n[metrics]\nlisten = \"127.0.0.1:9464\"\n",
    )
    .expect("write");
    let out = run_to_end(centralita(
        data,
        &["check-config", "--config", cfg.to_str().expect("utf-8")],
    ));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    for needle in [
        "configuration OK",
        "pbx.test",
        "logs: json",
        "127.0.0.1:9464",
        "centralita.db (will be created)",
    ] {
        assert!(stdout.contains(needle), "lacks {needle:?}: {stdout}");
    }
    // Checking starts nothing and writes nothing.
    assert_eq!(tree(data), vec![cfg.clone()]);

    let mut cmd = centralita(data, &["check-config"]);
    cmd.env("CENTRALITA_SIP_MAX_CONTACTS", "many");
    assert_refused(&run_to_end(cmd), &["CENTRALITA_SIP_MAX_CONTACTS"]);
    std::fs::write(&cfg, "[sip]\nno_such_key = 1\n").expect("write");
    assert_refused(
        &run_to_end(centralita(
            data,
            &["check-config", "--config", cfg.to_str().expect("utf-8")],
        )),
        &["no_such_key"],
    );
    // Files named by the configuration are read: a missing certificate.
    let mut cmd = centralita(data, &["check-config"]);
    cmd.env("CENTRALITA_HTTP_TLS_LISTEN", "127.0.0.1:8443")
        .env("CENTRALITA_HTTP_TLS_CERT", data.join("missing-cert.pem"))
        .env("CENTRALITA_HTTP_TLS_KEY", data.join("missing-key.pem"));
    assert_refused(&run_to_end(cmd), &["missing-cert.pem"]);
    // And the CA file phones' certificates are checked against.
    let mut cmd = centralita(data, &["check-config"]);
    cmd.env("CENTRALITA_SIP_TLS_DIAL_VERIFY", "ca").env(
        "CENTRALITA_SIP_TLS_DIAL_CA",
        data.join("missing-phones-ca.pem"),
    );
    assert_refused(&run_to_end(cmd), &["missing-phones-ca.pem"]);
}

#[test]
fn migrate_prints_what_it_applied_and_then_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("state");
    std::fs::create_dir(&data).expect("mkdir");
    let out = run_to_end(centralita(&data, &["migrate"]));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("applied migration 0001"), "{stdout}");
    assert!(data.join("centralita.db").is_file());
    let out = run_to_end(centralita(&data, &["migrate"]));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("nothing applied"), "{stdout}");
    assert!(!stdout.contains("applied migration"), "{stdout}");
}

/// A started `centralita serve`, killed on drop.
struct Running {
    child: Child,
    http: String,
    sip: String,
    stdout: Vec<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(mut cmd: Command, stderr: Stdio) -> Running {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn centralita");
    let lines = support::stdout_lines(&mut child);
    let (http, mut stdout) = support::wait_for_http(&lines);
    let mut sip = String::new();
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(60)) {
        stdout.push(line.clone());
        if let Some(rest) = line.strip_prefix("SIP on udp/tcp ") {
            sip = rest.split_whitespace().next().unwrap_or("").to_string();
            break;
        }
    }
    assert!(!sip.is_empty(), "no SIP line: {stdout:?}");
    Running {
        child,
        http,
        sip,
        stdout,
    }
}

impl Running {
    fn login(&self) -> String {
        let body = serde_json::json!({"login": "admin", "password": ADMIN_PASSWORD}).to_string();
        let (status, head, text) =
            support::http_request(&self.http, "POST", "/api/auth/login", Some(&body), None);
        assert_eq!(status, 200, "{text}");
        support::session_cookie(&head)
    }

    /// Creates an agent; returns its SIP (username, password, extension).
    fn agent(&self, cookie: &str, login: &str) -> (String, String, String) {
        let body = serde_json::json!({"name": login, "login": login,
            "password": "console-pass-123", "role": "agent"});
        let (status, _, text) = support::http_request(
            &self.http,
            "POST",
            "/api/agents",
            Some(&body.to_string()),
            Some(cookie),
        );
        assert_eq!(status, 201, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        let c = &v["sipCredentials"];
        let s = |k: &str| c[k].as_str().expect("credential field").to_string();
        (s("username"), s("password"), s("extension"))
    }
}

#[test]
fn backup_of_a_live_database_during_writes_opens_and_has_the_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let srv = serve(centralita(data, &["serve"]), Stdio::null());
    let cookie = srv.login();
    // Agents created without pause while the backup runs (each is a user,
    // a SIP account and audit rows); bounded in count and time.
    let stop = Arc::new(AtomicBool::new(false));
    let created = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (http, cookie) = (srv.http.clone(), cookie.clone());
        let (stop, created) = (stop.clone(), created.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            for i in 0..2_000 {
                if stop.load(Ordering::Acquire) || Instant::now() > deadline {
                    break;
                }
                let body = serde_json::json!({"name": format!("Load {i}"),
                    "login": format!("load{i}"), "password": "console-pass-123", "role": "agent"});
                let (status, _, text) = support::http_request(
                    &http,
                    "POST",
                    "/api/agents",
                    Some(&body.to_string()),
                    Some(&cookie),
                );
                assert_eq!(status, 201, "{text}");
                created.fetch_add(1, Ordering::AcqRel);
            }
        })
    };
    let t0 = Instant::now();
    while created.load(Ordering::Acquire) < 20 {
        assert!(t0.elapsed() < Duration::from_secs(60), "writes too slow");
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = created.load(Ordering::Acquire);
    let copy = data.join("backup.db");
    let out = run_to_end(centralita(data, &["backup", copy.to_str().expect("utf-8")]));
    let after = created.load(Ordering::Acquire);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("Backed up"),
        "{}",
        text(&out.stdout)
    );
    // The writes went on during the backup.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Release);
    writer.join().expect("writer");
    let total = created.load(Ordering::Acquire);
    assert!(total > after, "no write after the backup: {total}");

    // A second backup to the same file is refused; the copy is untouched.
    let len = std::fs::metadata(&copy).expect("copy").len();
    let out = run_to_end(centralita(data, &["backup", copy.to_str().expect("utf-8")]));
    assert_refused(&out, &["exists"]);
    assert_eq!(std::fs::metadata(&copy).expect("copy").len(), len);

    // The copy is a sound database holding every agent created before the
    // backup started, and none created after it ended.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (integrity, agents) = rt.block_on(async {
        use sqlx::ConnectOptions;
        let mut c = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&copy)
            .read_only(true)
            .connect()
            .await
            .expect("open the backup");
        let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&mut c)
            .await
            .expect("integrity_check");
        let agents: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE login LIKE 'load%'")
            .fetch_one(&mut c)
            .await
            .expect("count");
        (integrity, agents)
    });
    assert_eq!(integrity, "ok");
    let agents = usize::try_from(agents).expect("count");
    assert!(
        (before..=after).contains(&agents),
        "backup has {agents} agents; {before} existed when it started, {after} when it ended"
    );
    // The backup of a database that does not exist is refused, not created empty.
    let mut cmd = centralita(data, &["backup", "x.db"]);
    cmd.env(
        "CENTRALITA_DATABASE_URL",
        format!("sqlite://{}/nothing-here.db", data.display()),
    );
    assert_refused(&run_to_end(cmd), &["no database at"]);
    assert!(!data.join("nothing-here.db").exists());
}

/// JSON logs: every stderr line of a run (start, requests, SIP, shutdown)
/// is one JSON object with a level and a message.
#[test]
fn json_log_format_gives_one_json_object_per_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let log = data.join("stderr.log");
    let mut cmd = centralita(data, &["serve"]);
    cmd.test_database(data)
        .env("CENTRALITA_LOG_FORMAT", "json")
        .env("RUST_LOG", "debug,sqlx=warn");
    let file = std::fs::File::create(&log).expect("log file");
    let mut srv = serve(cmd, Stdio::from(file));
    let cookie = srv.login();
    let (alice, alice_pw, _) = srv.agent(&cookie, "json.alice");
    let (bob, bob_pw, bob_ext) = srv.agent(&cookie, "json.bob");
    // A registration and a (busy) call: their lines carry the call's id
    // and the agents.
    let bob_port = support::free_ports(1, true, true);
    let bob_csv = csv(data, "bob.csv", &bob, &bob_pw);
    assert!(sipp_ok(sipp_on(
        &srv,
        data,
        "reg_ok.xml",
        Some(&bob_csv),
        bob_port,
        &[]
    )));
    busy_call(&srv, data, (&alice, &alice_pw), bob_port, &bob_ext);
    // A request that fails authentication and an unknown route: logged too.
    support::http_request(&srv.http, "GET", "/api/agents", None, None);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    sock.send_to(
        b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKj1\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:x@x>\r\nCall-ID: json-log-1\r\nCSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n",
        &srv.sip,
    )
    .expect("send");
    std::thread::sleep(Duration::from_millis(300));
    let pid = srv.child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    let t0 = Instant::now();
    while srv.child.try_wait().expect("wait").is_none() {
        assert!(t0.elapsed() < Duration::from_secs(30), "no clean stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&log).expect("read log");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 5, "too few log lines: {text}");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
        assert!(v["timestamp"].is_string(), "{line}");
        assert!(v["fields"]["message"].is_string(), "{line}");
    }
    assert!(text.contains("\"HTTP listening\""), "{text}");
    let started: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "call started")
        .collect();
    assert_eq!(started.len(), 1, "{text}");
    let f = &started[0]["fields"];
    assert!(f["call_id"].as_str().is_some_and(|c| !c.is_empty()), "{f}");
    assert_eq!(f["callee"], bob_ext.as_str(), "{f}");
    assert!(
        f["caller_agent"].is_i64() || f["caller_agent"].is_u64(),
        "{f}"
    );
    let call_id = f["call_id"].as_str().unwrap_or_default().to_string();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"call ended\"") && l.contains(&call_id)),
        "{text}"
    );
    assert!(text.contains("\"shutting down\""), "{text}");
    // The default stays human-readable.
    assert!(!srv.stdout.is_empty());
    let out = run_to_end({
        let mut c = centralita(data, &["serve"]);
        c.env("CENTRALITA_SIP_MAX_CONTACTS", "many");
        c
    });
    assert!(text_is_not_json(&out.stderr), "{}", self::text(&out.stderr));
    // A start that fails reports its error as JSON too.
    let out = run_to_end({
        let mut c = centralita(data, &["serve"]);
        c.env("CENTRALITA_LOG_FORMAT", "json")
            .env("CENTRALITA_DATABASE_URL", "postgres://u@127.0.0.1:1/db");
        c
    });
    assert_eq!(out.status.code(), Some(1));
    let err = self::text(&out.stderr);
    let last = err.lines().last().expect("a line");
    let v: serde_json::Value = serde_json::from_str(last).expect("JSON error line");
    assert_eq!(v["level"], "ERROR", "{last}");
    assert!(
        v["fields"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot connect to PostgreSQL")),
        "{last}"
    );
}

fn text_is_not_json(b: &[u8]) -> bool {
    let t = text(b);
    !t.is_empty()
        && t.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
}

/// One HTTP/1.1 request with an `Authorization: Bearer` header.
fn bearer_get(addr: &str, path: &str, token: Option<&str>) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let (head, body) = resp.split_once("\r\n\r\n").expect("http response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (status, head.to_string(), body.to_string())
}

/// The value of the sample `series` (name and labels exactly as rendered).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A call from `caller` (SIP username, password) to the extension of a
/// sipp callee on `callee_port` that answers 486 Busy Here; both sides
/// must finish their scenario.
fn busy_call(srv: &Running, dir: &Path, caller: (&str, &str), callee_port: u16, callee_ext: &str) {
    let callee = sipp_on(srv, dir, "uas_busy.xml", None, callee_port, &[]);
    std::thread::sleep(Duration::from_millis(300));
    let caller_csv = csv(dir, "caller.csv", caller.0, caller.1);
    assert!(sipp_ok(sipp(
        srv,
        dir,
        "uac_busy.xml",
        Some(&caller_csv),
        &["-s", callee_ext]
    )));
    assert!(sipp_ok(callee));
}

fn sipp(srv: &Running, dir: &Path, scenario: &str, csv: Option<&Path>, extra: &[&str]) -> Child {
    let port = support::free_ports(1, true, true);
    sipp_on(srv, dir, scenario, csv, port, extra)
}

fn sipp_on(
    srv: &Running,
    dir: &Path,
    scenario: &str,
    csv: Option<&Path>,
    port: u16,
    extra: &[&str],
) -> Child {
    let mut cmd = Command::new("sipp");
    cmd.arg(&srv.sip)
        .arg("-sf")
        .arg(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/sipp")
                .join(scenario),
        )
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-m", "1"])
        .args(["-timeout", "30s", "-timeout_error", "-nostdin"])
        .args(extra)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(c) = csv {
        cmd.arg("-inf").arg(c);
    }
    cmd.spawn().expect("start sipp (Debian package sip-tester)")
}

fn sipp_ok(mut c: Child) -> bool {
    for _ in 0..400 {
        if let Ok(Some(s)) = c.try_wait() {
            return s.success();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = c.kill();
    let _ = c.wait();
    false
}

fn csv(dir: &Path, name: &str, user: &str, password: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(
        &p,
        format!("SEQUENTIAL\n{user};[authentication username={user} password={password}];\n"),
    )
    .expect("csv");
    p
}

#[test]
fn metrics_need_an_admin_and_move_with_registrations_and_calls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let metrics_port = support::free_ports(1, false, true);
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let mut cmd = centralita(data, &["serve"]);
    cmd.test_database(data)
        .env("CENTRALITA_METRICS_LISTEN", &metrics_addr)
        .env("CENTRALITA_SIP_DOMAIN", "pbx.test")
        .env("CENTRALITA_SIP_AUTH_FAIL_LIMIT", "1000")
        .env("RUST_LOG", "warn");
    let srv = serve(cmd, Stdio::null());
    assert!(
        srv.stdout
            .iter()
            .any(|l| l == &format!("metrics on http://{metrics_addr}/metrics")),
        "{:?}",
        srv.stdout
    );
    let cookie = srv.login();
    let body = serde_json::json!({"name": "prometheus"}).to_string();
    let (status, _, text) = support::http_request(
        &srv.http,
        "POST",
        "/api/auth/tokens",
        Some(&body),
        Some(&cookie),
    );
    assert_eq!(status, 201, "{text}");
    let token = serde_json::from_str::<serde_json::Value>(&text).expect("json")["secret"]
        .as_str()
        .expect("secret")
        .to_string();

    // Without a token: refused; an agent's session: forbidden.
    assert_eq!(bearer_get(&srv.http, "/metrics", None).0, 401);
    assert_eq!(bearer_get(&srv.http, "/metrics", Some("ctk_wrong")).0, 401);
    let (alice, alice_pw, _) = srv.agent(&cookie, "alice.metrics");
    let (bob, bob_pw, bob_ext) = srv.agent(&cookie, "bob.metrics");
    let body = serde_json::json!({"login": "bob.metrics", "password": "console-pass-123"});
    let (_, head, _) = support::http_request(
        &srv.http,
        "POST",
        "/api/auth/login",
        Some(&body.to_string()),
        None,
    );
    let (status, _, _) = support::http_request(
        &srv.http,
        "GET",
        "/metrics",
        None,
        Some(&support::session_cookie(&head)),
    );
    assert_eq!(status, 403);

    let scrape = || {
        let (status, head, body) = bearer_get(&srv.http, "/metrics", Some(&token));
        assert_eq!(status, 200, "{body}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        body
    };
    let m0 = scrape();
    let get = |text: &str, series: &str| sample(text, series).unwrap_or(0.0);
    assert_eq!(get(&m0, "centralita_registered_contacts"), 0.0, "{m0}");
    assert_eq!(sample(&m0, "centralita_sip_up"), Some(1.0), "{m0}");
    assert!(
        get(&m0, "process_resident_memory_bytes") > 1_000_000.0,
        "{m0}"
    );
    // The allocator's figures appear within their refresh period (5 s).
    let t0 = Instant::now();
    let allocated = r#"centralita_allocator_bytes{kind="allocated"}"#;
    let m = loop {
        let m = scrape();
        if sample(&m, allocated).is_some() || t0.elapsed() > Duration::from_secs(8) {
            break m;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let live = get(&m, allocated);
    let rss = get(&m, "process_resident_memory_bytes");
    assert!(
        live > 100_000.0 && live < rss,
        "allocated {live}, rss {rss}\n{m}"
    );
    assert!(
        get(&m, r#"centralita_allocator_bytes{kind="metadata"}"#) > 0.0,
        "{m}"
    );
    assert!(
        get(
            &m0,
            r#"centralita_http_requests_total{route="/api/agents",method="POST",status="201"}"#
        ) >= 2.0,
        "{m0}"
    );

    // A registration (and a wrong password), then a busy call.
    let bob_port = support::free_ports(1, true, true);
    let bob_csv = csv(data, "bob.csv", &bob, &bob_pw);
    assert!(sipp_ok(sipp_on(
        &srv,
        data,
        "reg_ok.xml",
        Some(&bob_csv),
        bob_port,
        &[]
    )));
    let wrong = csv(data, "wrong.csv", &alice, "not-her-password");
    assert!(sipp_ok(sipp(&srv, data, "reg_fail.xml", Some(&wrong), &[])));
    let m1 = scrape();
    assert_eq!(get(&m1, "centralita_registered_contacts"), 1.0, "{m1}");
    assert!(
        get(&m1, r#"centralita_sip_requests_total{method="REGISTER"}"#)
            >= get(&m0, r#"centralita_sip_requests_total{method="REGISTER"}"#) + 3.0,
        "{m1}"
    );
    assert!(
        get(&m1, "centralita_sip_auth_failures_total")
            > get(&m0, "centralita_sip_auth_failures_total"),
        "{m1}"
    );
    busy_call(&srv, data, (&alice, &alice_pw), bob_port, &bob_ext);
    let busy = r#"centralita_calls_total{disposition="BUSY"}"#;
    let t0 = Instant::now();
    let m2 = loop {
        let m = scrape();
        if get(&m, busy) >= 1.0 || t0.elapsed() > Duration::from_secs(10) {
            break m;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(get(&m2, busy), 1.0, "{m2}");
    assert!(
        get(&m2, r#"centralita_sip_requests_total{method="INVITE"}"#) >= 1.0,
        "{m2}"
    );
    assert_eq!(get(&m2, "centralita_active_calls"), 0.0, "{m2}");
    // The pool: some connection was opened for all that, none beyond its maximum.
    let pool = |state: &str| {
        get(
            &m2,
            &format!(r#"centralita_db_pool_connections{{state="{state}"}}"#),
        )
    };
    assert!(pool("max") >= 1.0, "{m2}");
    assert!(pool("in_use") + pool("idle") >= 1.0, "{m2}");
    assert!(pool("in_use") + pool("idle") <= pool("max"), "{m2}");
    // The CDR and registration writers have written batches: their lag is
    // measured (above zero: a batch waits at least for the writer's tick)
    // and below the time the test took.
    for writer in ["registrations", "cdrs"] {
        let lag = get(
            &m2,
            &format!(r#"centralita_store_write_lag_seconds{{writer="{writer}"}}"#),
        );
        assert!(lag > 0.0 && lag < 10.0, "{writer}: {lag}\n{m2}");
    }
    assert!(
        m2.contains(
            r#"centralita_http_request_duration_seconds_bucket{route="/metrics",method="GET",le="#
        ),
        "{m2}"
    );

    // The metrics listener: no token needed, nothing else served.
    let (status, _, open) = bearer_get(&metrics_addr, "/metrics", None);
    assert_eq!(status, 200, "{open}");
    assert_eq!(get(&open, busy), 1.0, "{open}");
    assert_eq!(
        bearer_get(&metrics_addr, "/api/agents", Some(&token)).0,
        404
    );
    assert_eq!(bearer_get(&metrics_addr, "/api/health", None).0, 404);

    // Readiness: the database and the SIP listener are up.
    let (status, _, body) = bearer_get(&srv.http, "/api/ready", None);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["checks"]["database"], "ok", "{body}");
    assert_eq!(v["checks"]["sip"], "ok", "{body}");
}
