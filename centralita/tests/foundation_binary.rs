//! The real `centralita` binary: first start prints or takes the admin
//! password, data survives a restart, SIGTERM shuts it down cleanly.

mod support;
use support::TestDatabase;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Running {
    child: Child,
    addr: String,
    stdout_lines: Vec<String>,
}

fn start(data: &Path, admin_password: Option<&str>) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_centralita"));
    cmd.arg("serve")
        .env("CENTRALITA_HTTP_LISTEN", "127.0.0.1:0")
        .env("CENTRALITA_SIP_LISTEN", "127.0.0.1:0")
        .env("CENTRALITA_DATA_DIR", data)
        .env("CENTRALITA_CONSOLE_DIR", data.join("no-console"))
        .env("CENTRALITA_AUTH_INSECURE_FAST_PASSWORD_HASHING", "true")
        .test_database(data)
        .env_remove("CENTRALITA_ADMIN_PASSWORD")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(pw) = admin_password {
        cmd.env("CENTRALITA_ADMIN_PASSWORD", pw);
    }
    let mut child = cmd.spawn().expect("spawn centralita");
    let lines = support::stdout_lines(&mut child);
    // From here on, a panic drops `running`, which kills the process.
    let mut running = Running {
        child,
        addr: String::new(),
        stdout_lines: Vec::new(),
    };
    let (addr, seen) = support::wait_for_http(&lines);
    running.addr = addr;
    running.stdout_lines = seen;
    running
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Running {
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        cookie: Option<&str>,
    ) -> (u16, String, String) {
        support::http_request(&self.addr, method, path, body, cookie)
    }

    fn login(&self, login: &str, password: &str) -> String {
        let body = serde_json::json!({"login": login, "password": password}).to_string();
        let (status, head, text) = self.request("POST", "/api/auth/login", Some(&body), None);
        assert_eq!(status, 200, "{text}");
        support::session_cookie(&head)
    }

    fn stop(mut self) {
        self.stop_in_place();
    }

    fn stop_in_place(&mut self) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "clean exit after SIGTERM: {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("centralita did not stop within 10 s of SIGTERM");
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

#[test]
fn admin_password_from_env_agents_survive_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = start(&data, Some("env-admin-pass"));
    assert!(
        !server
            .stdout_lines
            .iter()
            .any(|l| l.contains("one-time password")),
        "no generated password when CENTRALITA_ADMIN_PASSWORD is set"
    );
    if support::test_database_url(&data).is_none() {
        assert!(
            data.join("centralita.db").exists(),
            "database created under the data dir"
        );
    }
    let cookie = server.login("admin", "env-admin-pass");
    let mut sip_passwords = Vec::new();
    for (name, login) in [("Ana Agent", "ana"), ("Bob Agent", "bob")] {
        let body = serde_json::json!({"name": name, "login": login, "password": "agent-pass-1", "role": "agent"}).to_string();
        let (status, _, text) = server.request("POST", "/api/agents", Some(&body), Some(&cookie));
        assert_eq!(status, 201, "{text}");
        let pw = json(&text)["sipCredentials"]["password"]
            .as_str()
            .expect("sip password")
            .to_string();
        sip_passwords.push(pw);
    }
    let (status, _, text) = server.request("GET", "/", None, None);
    assert_eq!(status, 503, "console not built page");
    assert!(text.contains("Console not built"));
    server.stop();

    let server = start(&data, Some("env-admin-pass"));
    let cookie = server.login("admin", "env-admin-pass");
    let (status, _, text) = server.request("GET", "/api/agents?role=agent", None, Some(&cookie));
    assert_eq!(status, 200);
    let v = json(&text);
    assert_eq!(v["total"], 2, "{text}");
    let exts: Vec<&str> = v["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .filter_map(|a| a["sip"]["extension"].as_str())
        .collect();
    assert_eq!(exts, ["1000", "1001"]);
    for pw in &sip_passwords {
        assert!(
            !text.contains(pw.as_str()),
            "SIP password visible after creation"
        );
    }
    server.login("ana", "agent-pass-1");
    server.stop();
}

#[test]
fn first_start_prints_a_one_time_admin_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = start(&data, None);
    let line = server
        .stdout_lines
        .iter()
        .find(|l| l.contains("one-time password"))
        .expect("password printed")
        .clone();
    let pw = line
        .rsplit(' ')
        .next()
        .expect("password")
        .trim()
        .to_string();
    assert!(pw.len() >= 16, "{line}");
    server.login("admin", &pw);
    let (status, _, _) = server.request(
        "POST",
        "/api/auth/login",
        Some(r#"{"login":"admin","password":"not-the-password"}"#),
        None,
    );
    assert_eq!(status, 401);
    server.stop();
    // A second start creates nothing and prints no password.
    let server = start(&data, None);
    assert!(!server
        .stdout_lines
        .iter()
        .any(|l| l.contains("one-time password")));
    server.login("admin", &pw);
    server.stop();
}

#[test]
fn help_documents_the_configuration() {
    let out = Command::new(env!("CARGO_BIN_EXE_centralita"))
        .arg("--help")
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "serve",
        "CENTRALITA_HTTP_LISTEN",
        "CENTRALITA_ADMIN_PASSWORD",
        "CENTRALITA_SIP_DOMAIN",
        "CENTRALITA_DATABASE_URL",
    ] {
        assert!(text.contains(needle), "--help lacks {needle}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_centralita"))
        .arg("serve")
        .env("CENTRALITA_HTTP_LISTEN", "not-an-address")
        .output()
        .expect("run");
    assert!(!out.status.success(), "bad configuration is refused");
}

#[test]
fn reset_password_recovers_the_admin_account() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    start(&data, Some("first-admin-pass")).stop();
    let out = Command::new(env!("CARGO_BIN_EXE_centralita"))
        .args(["reset-password", "--login", "admin"])
        .env("CENTRALITA_DATA_DIR", &data)
        .env("CENTRALITA_AUTH_INSECURE_FAST_PASSWORD_HASHING", "true")
        .env_remove("CENTRALITA_ADMIN_PASSWORD")
        .test_database(&data)
        .output()
        .expect("run reset-password");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let pw = text
        .trim()
        .rsplit(' ')
        .next()
        .expect("password")
        .to_string();
    assert!(pw.len() >= 16, "{text}");
    let server = start(&data, None);
    server.login("admin", &pw);
    let (status, _, _) = server.request(
        "POST",
        "/api/auth/login",
        Some(r#"{"login":"admin","password":"first-admin-pass"}"#),
        None,
    );
    assert_eq!(status, 401, "the old password no longer works");
    server.stop();
    let out = Command::new(env!("CARGO_BIN_EXE_centralita"))
        .args(["reset-password", "--login", "nobody"])
        .env("CENTRALITA_DATA_DIR", &data)
        .test_database(&data)
        .output()
        .expect("run");
    assert!(!out.status.success(), "unknown login is an error");
}
