//! Starting the real `centralita` binary: a listen address already in use
//! ends the start with a message naming the address and transport and a
//! non-zero exit (no panic, nothing left running); `--help`, `serve --help`
//! and the README name only real settings, with their compiled defaults.

// Only the port helper is used here.
#[allow(dead_code)]
mod support;
use support::TestDatabase;

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_centralita");

/// Kills the child if the test fails before it exits.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Runs `centralita serve` with `vars` and expects it to stop by itself
/// within 30 s; returns its exit status and stderr.
fn serve_expecting_exit(data: &Path, vars: &[(&str, String)]) -> (ExitStatus, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env("CENTRALITA_DATA_DIR", data)
        .env("CENTRALITA_CONSOLE_DIR", data.join("no-console"))
        .env("CENTRALITA_ADMIN_PASSWORD", "startup-admin-pass")
        .env("CENTRALITA_AUTH_INSECURE_FAST_PASSWORD_HASHING", "true")
        .test_database(data)
        .env_remove("CENTRALITA_CONFIG")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = Guard(cmd.spawn().expect("spawn centralita"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "centralita kept running although its port is taken"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .expect("stderr is piped")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    (status, stderr)
}

/// A clean refusal: exit code 1 (an error returned from main, not a panic's
/// 101 or a signal) and every `needle` in the message.
fn assert_refused(status: ExitStatus, stderr: &str, needles: &[&str]) {
    assert_eq!(status.code(), Some(1), "exit status {status}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "stderr lacks {n:?}: {stderr}");
    }
}

#[test]
fn busy_sip_udp_port_is_reported_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = support::free_ports(1, true, true);
    let _taken = UdpSocket::bind(("127.0.0.1", port)).expect("occupy the UDP port");
    let addr = format!("127.0.0.1:{port}");
    let (status, stderr) = serve_expecting_exit(
        dir.path(),
        &[
            ("CENTRALITA_HTTP_LISTEN", "127.0.0.1:0".into()),
            ("CENTRALITA_SIP_LISTEN", addr.clone()),
        ],
    );
    assert_refused(
        status,
        &stderr,
        &[&format!("SIP over UDP on {addr}"), "sip.listen", "in use"],
    );
}

#[test]
fn busy_sip_tcp_port_is_reported_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = support::free_ports(1, true, true);
    let _taken = TcpListener::bind(("127.0.0.1", port)).expect("occupy the TCP port");
    let addr = format!("127.0.0.1:{port}");
    let (status, stderr) = serve_expecting_exit(
        dir.path(),
        &[
            ("CENTRALITA_HTTP_LISTEN", "127.0.0.1:0".into()),
            ("CENTRALITA_SIP_LISTEN", addr.clone()),
        ],
    );
    assert_refused(
        status,
        &stderr,
        &[&format!("SIP over TCP on {addr}"), "sip.listen", "in use"],
    );
    // The UDP socket it had opened is closed again: the port is free.
    UdpSocket::bind(("127.0.0.1", port)).expect("nothing left bound on UDP");
}

#[test]
fn busy_http_port_is_reported_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = TcpListener::bind("127.0.0.1:0").expect("occupy a TCP port");
    let addr = taken.local_addr().expect("address").to_string();
    let (status, stderr) = serve_expecting_exit(
        dir.path(),
        &[
            ("CENTRALITA_HTTP_LISTEN", addr.clone()),
            ("CENTRALITA_SIP_LISTEN", "127.0.0.1:0".into()),
        ],
    );
    assert_refused(
        status,
        &stderr,
        &[&format!("HTTP on {addr}"), "http.listen", "in use"],
    );
}

fn help(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().expect("run --help");
    assert!(out.status.success(), "{args:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `(NAME, value after '=' if any)` for every CENTRALITA_ variable in `text`.
fn variables(text: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("CENTRALITA_") {
        rest = &rest[i..];
        let end = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        let name = rest[..end].trim_end_matches('_').to_string();
        let value = rest[end..].strip_prefix('=').map(|v| {
            v.split(|c: char| c == ',' || c.is_whitespace() || c == '`')
                .next()
                .unwrap_or("")
                .to_string()
        });
        out.push((name, value));
        rest = &rest[end..];
    }
    out
}

/// Every variable `text` names is a setting (or one of `others`), and
/// where it shows a value next to a setting with a default, that value is
/// the compiled default.
fn assert_names_real_settings(what: &str, text: &str, others: &[&str]) {
    let settings = centralita::config::settings();
    let found = variables(text);
    assert!(!found.is_empty(), "{what} names no variable");
    for (name, value) in found {
        if others.contains(&name.as_str()) || name == "CENTRALITA" {
            continue;
        }
        let s = settings
            .iter()
            .find(|s| s.env_name() == name)
            .unwrap_or_else(|| panic!("{what} names {name}, which is no setting"));
        if let (Some(v), Some(toml::Value::String(d))) = (value, &s.default) {
            if v != "..." {
                assert_eq!(&v, d, "{what}: {name}'s default");
            }
        }
    }
}

#[test]
fn help_and_readme_agree_with_the_settings() {
    let top = help(&["--help"]);
    assert!(top.contains("serve --help"), "{top}");
    assert_names_real_settings("centralita --help", &top, &[]);

    let serve = help(&["serve", "--help"]);
    // The flags it claims.
    assert!(
        serve.contains("--config <CONFIG>") && serve.contains("CENTRALITA_CONFIG"),
        "{serve}"
    );
    // Every setting, with its default.
    for s in centralita::config::settings() {
        let line = serve
            .lines()
            .find(|l| l.split_whitespace().next() == Some(s.env_name().as_str()))
            .unwrap_or_else(|| panic!("serve --help lacks {}:\n{serve}", s.env_name()));
        let shown = line
            .rsplit_once("[default: ")
            .and_then(|(_, d)| d.strip_suffix(']'))
            .unwrap_or_else(|| panic!("no default on {line:?}"));
        match &s.default {
            None => assert_eq!(shown, "(unset)", "{line}"),
            Some(toml::Value::String(d)) => assert_eq!(shown, d, "{line}"),
            Some(toml::Value::Integer(i)) => assert_eq!(shown, i.to_string(), "{line}"),
            Some(toml::Value::Boolean(b)) => assert_eq!(shown, b.to_string(), "{line}"),
            Some(toml::Value::Array(a)) if a.is_empty() => assert_eq!(shown, "[]", "{line}"),
            Some(toml::Value::Array(a)) if a.iter().all(toml::Value::is_str) => {
                let items: Vec<String> = a
                    .iter()
                    .filter_map(|i| i.as_str().map(|s| format!("{s:?}")))
                    .collect();
                assert_eq!(shown, format!("[{}]", items.join(", ")), "{line}");
            }
            Some(other) => panic!("no check for {other:?}"),
        }
    }
    assert_names_real_settings("serve --help", &serve, &["CENTRALITA_CONFIG"]);

    // --config is honoured: a file with a bad address is refused by name.
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("c.toml");
    std::fs::write(&f, "[http]\nlisten = \"nowhere\"\n").expect("write");
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&f)
        .env_remove("CENTRALITA_HTTP_LISTEN")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("http.listen \"nowhere\""));

    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README");
    assert_names_real_settings(
        "README.md",
        &readme,
        // Read by clap, by the browser tests, and by the Rust tests
        // (store::testing: which database the test run uses).
        &[
            "CENTRALITA_CONFIG",
            "CENTRALITA_BIN",
            store::testing::TEST_DATABASE_ENV,
        ],
    );
    // The README's table shows defaults as `| `VAR` | `value` |`.
    let settings = centralita::config::settings();
    for line in readme.lines().filter(|l| l.starts_with("| `CENTRALITA_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`');
        let default = cells[2];
        if let Some(s) = settings.iter().find(|s| s.env_name() == name) {
            if let (Some(toml::Value::String(d)), Some(v)) = (
                &s.default,
                default.strip_prefix('`').and_then(|v| v.strip_suffix('`')),
            ) {
                assert_eq!(v, d, "README default of {name}");
            }
        }
    }
}
