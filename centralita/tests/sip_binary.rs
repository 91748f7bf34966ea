//! SIP through the real `centralita` binary: agents created over the HTTP
//! API (their `sipCredentials`), sipp registers (right password, wrong
//! password, unknown user) and calls (answered, busy, no answer), and every
//! call's CDR is read back from `/api/telephony/calls/history`.
//! The scenarios live in tests/sipp/; crates/sip/tests has the same flows
//! against an in-process server plus the WebSocket and TLS user agents.

mod support;
use support::TestDatabase;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ADMIN_PASSWORD: &str = "admin-password-for-sip-tests";

struct Running {
    child: Child,
    http: String,
    sip: String,
    dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sipp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sipp")
}

fn start() -> Running {
    start_in(tempfile::tempdir().expect("temp dir"))
}

/// Starts the binary on the data directory `dir` (restart tests).
fn start_in(dir: tempfile::TempDir) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_centralita"))
        .arg("serve")
        .env("CENTRALITA_HTTP_LISTEN", "127.0.0.1:0")
        // Port 0: the server picks a port free for UDP and TCP and prints it.
        .env("CENTRALITA_SIP_LISTEN", "127.0.0.1:0")
        .env("CENTRALITA_SIP_DOMAIN", "pbx.test")
        .env("CENTRALITA_SIP_RING_TIMEOUT_SECS", "3")
        .env("CENTRALITA_SIP_AUTH_FAIL_LIMIT", "1000")
        .env("CENTRALITA_DATA_DIR", dir.path())
        .env("CENTRALITA_CONSOLE_DIR", dir.path().join("no-console"))
        .env("CENTRALITA_AUTH_INSECURE_FAST_PASSWORD_HASHING", "true")
        .env("CENTRALITA_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .test_database(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn centralita");
    let lines = support::stdout_lines(&mut child);
    let mut running = Running {
        child,
        http: String::new(),
        sip: String::new(),
        dir,
    };
    running.http = support::wait_for_http(&lines).0;
    running.sip = support::wait_for_sip(&lines);
    running
}

impl Running {
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        cookie: Option<&str>,
    ) -> (u16, String, String) {
        support::http_request(&self.http, method, path, body, cookie)
    }

    fn login(&self) -> String {
        let body = serde_json::json!({"login": "admin", "password": ADMIN_PASSWORD}).to_string();
        let (status, head, text) = self.request("POST", "/api/auth/login", Some(&body), None);
        assert_eq!(status, 200, "{text}");
        support::session_cookie(&head)
    }

    /// Creates an agent; returns (username, password, extension).
    fn agent(&self, cookie: &str, login: &str) -> (String, String, String) {
        let body = serde_json::json!({"name": login, "login": login, "password": "console-pass-123", "role": "agent"});
        let (status, _, text) =
            self.request("POST", "/api/agents", Some(&body.to_string()), Some(cookie));
        assert_eq!(status, 201, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        let c = &v["sipCredentials"];
        let s = |k: &str| c[k].as_str().expect("credential field").to_string();
        (s("username"), s("password"), s("extension"))
    }

    fn csv(&self, name: &str, user: &str, password: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(
            &p,
            format!("SEQUENTIAL\n{user};[authentication username={user} password={password}];\n"),
        )
        .expect("csv");
        p
    }

    fn sipp(&self, scenario: &str, csv: Option<&Path>, port: u16, extra: &[&str]) -> Child {
        let mut cmd = Command::new("sipp");
        cmd.arg(&self.sip)
            .arg("-sf")
            .arg(sipp_dir().join(scenario))
            .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-m", "1"])
            .args([
                "-timeout",
                "40s",
                "-timeout_error",
                "-nostdin",
                "-trace_err",
            ])
            .args(extra)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(c) = csv {
            cmd.arg("-inf").arg(c);
        }
        cmd.spawn().expect("start sipp (Debian package sip-tester)")
    }

    fn errors(&self) -> String {
        let mut s = String::new();
        for e in std::fs::read_dir(self.dir.path()).expect("dir").flatten() {
            if e.file_name().to_string_lossy().ends_with("errors.log") {
                s.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        s
    }

    fn run(&self, scenario: &str, csv: Option<&Path>, port: u16, extra: &[&str]) -> bool {
        let mut c = self.sipp(scenario, csv, port, extra);
        wait(&mut c)
    }

    /// CDR rows once `n` of them are finished.
    fn finished_calls(&self, cookie: &str, n: usize) -> Vec<serde_json::Value> {
        for _ in 0..100 {
            let (status, _, text) = self.request(
                "GET",
                "/api/telephony/calls/history?limit=50",
                None,
                Some(cookie),
            );
            assert_eq!(status, 200, "{text}");
            let v: serde_json::Value = serde_json::from_str(&text).expect("json");
            let calls = v["calls"].as_array().cloned().unwrap_or_default();
            if calls.iter().filter(|c| !c["endTime"].is_null()).count() >= n {
                return calls;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("fewer than {n} finished calls");
    }
}

fn wait(c: &mut Child) -> bool {
    for _ in 0..600 {
        if let Ok(Some(s)) = c.try_wait() {
            return s.success();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = c.kill();
    false
}

#[test]
fn sipp_agents_register_and_call_through_the_binary() {
    let srv = start();
    let cookie = srv.login();
    let (alice, alice_pw, _alice_ext) = srv.agent(&cookie, "alice.sip");
    let (bob, bob_pw, bob_ext) = srv.agent(&cookie, "bob.sip");

    // Phones are told the SIP port the server bound (it was started on port 0).
    let body = serde_json::json!({"login": "bob.sip", "password": "console-pass-123"}).to_string();
    let (status, head, text) = srv.request("POST", "/api/auth/login", Some(&body), None);
    assert_eq!(status, 200, "{text}");
    let bob_cookie = support::session_cookie(&head);
    let (status, _, text) = srv.request(
        "GET",
        "/api/telephony/sip/credentials",
        None,
        Some(&bob_cookie),
    );
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let bound = srv.sip.rsplit(':').next().unwrap_or("");
    assert_eq!(v["credentials"]["sipPort"], bound, "{text}");

    // REGISTER: right password (bob, from the port his UAS will use), wrong password, unknown user.
    let bob_port = support::free_ports(1, true, true);
    let bob_csv = srv.csv("bob.csv", &bob, &bob_pw);
    assert!(
        srv.run("reg_ok.xml", Some(&bob_csv), bob_port, &[]),
        "{}",
        srv.errors()
    );
    let wrong = srv.csv("wrong.csv", &alice, "not-her-password");
    assert!(
        srv.run(
            "reg_fail.xml",
            Some(&wrong),
            support::free_ports(1, true, true),
            &[]
        ),
        "{}",
        srv.errors()
    );
    let ghost = srv.csv("ghost.csv", "ghost_user", "whatever");
    assert!(
        srv.run(
            "reg_fail.xml",
            Some(&ghost),
            support::free_ports(1, true, true),
            &[]
        ),
        "{}",
        srv.errors()
    );
    let (status, _, text) = srv.request("GET", "/api/telephony/registrations", None, Some(&cookie));
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(&bob), "{text}");
    assert!(!text.contains(&alice), "{text}");
    let alice_csv = srv.csv("alice.csv", &alice, &alice_pw);

    // Calls from alice to bob's extension, each with its CDR.
    let mut expected = Vec::new();
    for (uas, uac, disposition, cause) in [
        ("uas_answer.xml", "uac_call.xml", "ANSWERED", "caller_bye"),
        (
            "uas_bye.xml",
            "uac_call_remote_bye.xml",
            "ANSWERED",
            "callee_bye",
        ),
        ("uas_busy.xml", "uac_busy.xml", "BUSY", "busy"),
        ("uas_ring.xml", "uac_noanswer.xml", "NO ANSWER", "no_answer"),
    ] {
        let mut callee = srv.sipp(uas, None, bob_port, &[]);
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            srv.run(
                uac,
                Some(&alice_csv),
                support::free_ports(1, true, true),
                &["-s", &bob_ext]
            ),
            "{uac}: {}",
            srv.errors()
        );
        assert!(wait(&mut callee), "{uas}: {}", srv.errors());
        expected.push((disposition, cause));
        let calls = srv.finished_calls(&cookie, expected.len());
        let last = &calls[0];
        assert_eq!(last["disposition"], disposition, "{last}");
        assert_eq!(last["hangupCause"], cause, "{last}");
        assert_eq!(last["calleeNumber"], bob_ext.as_str(), "{last}");
    }
    let calls = srv.finished_calls(&cookie, expected.len());
    assert_eq!(calls.len(), expected.len(), "one row per call attempt");
}

/// SIGTERM with a call up: both legs get a BYE before the server exits,
/// and the CDR is closed (cause `shutdown`) with the right billsec.
#[test]
fn sigterm_with_a_call_up_hangs_up_both_legs_and_closes_the_cdr() {
    let srv = start();
    let cookie = srv.login();
    let (alice, alice_pw, _) = srv.agent(&cookie, "alice.term");
    let (bob, bob_pw, bob_ext) = srv.agent(&cookie, "bob.term");
    let bob_port = support::free_ports(1, true, true);
    let bob_csv = srv.csv("bob.csv", &bob, &bob_pw);
    assert!(
        srv.run("reg_ok.xml", Some(&bob_csv), bob_port, &[]),
        "{}",
        srv.errors()
    );
    // Both sides wait for a BYE they will not send themselves.
    let mut callee = srv.sipp("uas_answer.xml", None, bob_port, &[]);
    std::thread::sleep(Duration::from_millis(300));
    let alice_csv = srv.csv("alice.csv", &alice, &alice_pw);
    let caller_port = support::free_ports(1, true, true);
    let mut caller = srv.sipp(
        "uac_call_remote_bye.xml",
        Some(&alice_csv),
        caller_port,
        &["-s", &bob_ext],
    );
    let answered = (0..100).any(|_| {
        let (_, _, text) = srv.request(
            "GET",
            "/api/telephony/calls/history?limit=5",
            None,
            Some(&cookie),
        );
        let up = text.contains("\"state\":\"answered\"");
        if !up {
            std::thread::sleep(Duration::from_millis(100));
        }
        up
    });
    assert!(answered, "the call was never answered: {}", srv.errors());
    std::thread::sleep(Duration::from_millis(1_200));

    let mut srv = srv;
    let pid = srv.child.id().to_string();
    let term = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(term.is_ok_and(|s| s.success()), "kill -TERM {pid}");
    assert!(wait(&mut caller), "caller got no BYE: {}", srv.errors());
    assert!(wait(&mut callee), "callee got no BYE: {}", srv.errors());
    let exited = (0..100).find_map(|_| {
        let s = srv.child.try_wait().ok().flatten();
        if s.is_none() {
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    });
    assert!(exited.is_some_and(|s| s.success()), "exit: {exited:?}");
    // A clean stop leaves no CDR journal to replay: every event reached
    // the database first.
    let journal: Vec<_> = std::fs::read_dir(srv.dir.path().join("cdr-journal"))
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(journal.is_empty(), "journal left: {journal:?}");

    // The CDR, read after a restart on the same data directory.
    let dir = std::mem::replace(&mut srv.dir, tempfile::tempdir().expect("temp dir"));
    drop(srv);
    let again = start_in(dir);
    let cookie = again.login();
    let calls = again.finished_calls(&cookie, 1);
    assert_eq!(calls.len(), 1, "{calls:?}");
    let c = &calls[0];
    assert_eq!(c["disposition"], "ANSWERED", "{c}");
    assert_eq!(c["hangupCause"], "shutdown", "{c}");
    assert!(c["billsec"].as_i64().is_some_and(|b| b >= 1), "{c}");
}

/// `POST /api/telephony/call/hangup` ends a call that is up: both parties
/// get a BYE, the CDR says `forced_hangup`. An agent may hang up only a
/// call they are in; anything else is "not found", as is a call that is
/// over.
#[test]
fn a_call_hung_up_through_the_api_ends_for_both_parties() {
    let srv = start();
    let cookie = srv.login();
    let (alice, alice_pw, _) = srv.agent(&cookie, "alice.hang");
    let (bob, bob_pw, bob_ext) = srv.agent(&cookie, "bob.hang");
    srv.agent(&cookie, "carol.hang");
    let bob_port = support::free_ports(1, true, true);
    let bob_csv = srv.csv("bob.csv", &bob, &bob_pw);
    assert!(
        srv.run("reg_ok.xml", Some(&bob_csv), bob_port, &[]),
        "{}",
        srv.errors()
    );
    let mut callee = srv.sipp("uas_answer.xml", None, bob_port, &[]);
    std::thread::sleep(Duration::from_millis(300));
    let alice_csv = srv.csv("alice.csv", &alice, &alice_pw);
    let mut caller = srv.sipp(
        "uac_call_remote_bye.xml",
        Some(&alice_csv),
        support::free_ports(1, true, true),
        &["-s", &bob_ext],
    );
    let call_id = (0..100)
        .find_map(|_| {
            let (_, _, text) =
                srv.request("GET", "/api/telephony/calls/active", None, Some(&cookie));
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let up = v["calls"].as_array().and_then(|a| {
                a.iter()
                    .find(|c| c["state"] == "answered")
                    .and_then(|c| c["callId"].as_str().map(str::to_string))
            });
            if up.is_none() {
                std::thread::sleep(Duration::from_millis(100));
            }
            up
        })
        .unwrap_or_else(|| panic!("the call was never answered: {}", srv.errors()));

    let agent_login = |login: &str| {
        let body = serde_json::json!({"login": login, "password": "console-pass-123"}).to_string();
        let (status, head, text) = srv.request("POST", "/api/auth/login", Some(&body), None);
        assert_eq!(status, 200, "{text}");
        support::session_cookie(&head)
    };
    let hang_up = |who: &str, body: serde_json::Value| {
        let (status, _, text) = srv.request(
            "POST",
            "/api/telephony/call/hangup",
            Some(&body.to_string()),
            Some(who),
        );
        (status, text)
    };
    let body = serde_json::json!({ "callId": call_id });
    // Bad requests and someone else's call change nothing.
    let (status, text) = hang_up(&cookie, serde_json::json!({}));
    assert_eq!(status, 422, "{text}");
    let (status, text) = hang_up(&cookie, serde_json::json!({"callId": "no-such-call"}));
    assert_eq!(status, 404, "{text}");
    let carol = agent_login("carol.hang");
    let (status, text) = hang_up(&carol, body.clone());
    assert_eq!(status, 404, "not carol's call: {text}");
    assert!(
        matches!(caller.try_wait(), Ok(None)),
        "the call is still up"
    );
    // The caller's own CRM hangs up (seeds/001's field name).
    let alice_session = agent_login("alice.hang");
    let (status, text) = hang_up(&alice_session, serde_json::json!({ "channel": call_id }));
    assert_eq!(status, 200, "{text}");
    assert!(wait(&mut caller), "caller got no BYE: {}", srv.errors());
    assert!(wait(&mut callee), "callee got no BYE: {}", srv.errors());
    let calls = srv.finished_calls(&cookie, 1);
    let c = &calls[0];
    assert_eq!(c["disposition"], "ANSWERED", "{c}");
    assert_eq!(c["hangupCause"], "forced_hangup", "{c}");
    // Over: a second request finds nothing to hang up.
    let (status, text) = hang_up(&cookie, body);
    assert_eq!(status, 404, "{text}");
}

/// Every CDR row, paging through the history (the API returns 500 at most).
fn all_calls(srv: &Running, cookie: &str) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    for page in 0..20 {
        let (status, _, text) = srv.request(
            "GET",
            &format!(
                "/api/telephony/calls/history?limit=500&offset={}",
                page * 500
            ),
            None,
            Some(cookie),
        );
        assert_eq!(status, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        let calls = v["calls"].as_array().cloned().unwrap_or_default();
        let n = calls.len();
        all.extend(calls);
        if n < 500 {
            return all;
        }
    }
    panic!("more than 10,000 CDR rows");
}

fn epoch_ms(v: &serde_json::Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("a time, got {v}"));
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("time {s:?}: {e}"))
        .timestamp_millis()
}

fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// kill -9 in the middle of a burst (400 calls/s, calls held 1 s): after a
/// restart every call whose caller saw the 200 OK has exactly one row,
/// closed and ANSWERED (the CDR journal, replayed at start), and the calls
/// that were up end at the last heartbeat before the kill, not at the
/// restart a few seconds later (cause `server_crash`): the downtime is not
/// billed.
#[test]
fn kill_9_mid_burst_keeps_every_answered_call_and_bills_no_downtime() {
    // The heartbeat interval (sip shell journal) plus scheduling slack.
    const ALIVE_SLACK_MS: i64 = 1_000 + 700;
    let srv = start();
    let cookie = srv.login();
    let (alice, alice_pw, _) = srv.agent(&cookie, "alice.crash");
    let (bob, bob_pw, bob_ext) = srv.agent(&cookie, "bob.crash");
    let bob_port = support::free_ports(1, true, true);
    let bob_csv = srv.csv("bob.csv", &bob, &bob_pw);
    assert!(
        srv.run("reg_ok.xml", Some(&bob_csv), bob_port, &[]),
        "{}",
        srv.errors()
    );
    let alice_csv = srv.csv("alice.csv", &alice, &alice_pw);
    let sipp = |scenario: &str, port: u16, args: &[&str]| {
        let mut cmd = Command::new("sipp");
        cmd.arg(&srv.sip)
            .arg("-sf")
            .arg(sipp_dir().join(scenario))
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-timeout", "30s", "-nostdin", "-trace_err"])
            .args(args)
            .current_dir(srv.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        support::Reaped::spawn("sipp (Debian package sip-tester)", &mut cmd)
    };
    // The callee answers every call and waits for its BYE.
    let callee = sipp("uas_answer.xml", bob_port, &["-l", "5000"]);
    std::thread::sleep(Duration::from_millis(300));
    let caller_port = support::free_ports(1, true, true);
    let csv = alice_csv.to_string_lossy().to_string();
    let mut caller = sipp(
        "uac_burst.xml",
        caller_port,
        &[
            "-inf",
            &csv,
            "-s",
            &bob_ext,
            "-r",
            "400",
            "-m",
            "800",
            "-l",
            "2000",
            // Calls caught by the kill fail instead of waiting 32 s.
            "-recv_timeout",
            "2000",
            "-trace_logs",
        ],
    );
    // By now the first calls have hung up and hundreds are up or ringing.
    std::thread::sleep(Duration::from_millis(1_300));
    let mut srv = srv;
    let killed_ms = wall_ms();
    srv.child.kill().expect("kill -9 the server");
    let _ = srv.child.wait();
    // It exits with an error (the calls the kill caught failed): only its
    // end matters, which flushes its log.
    let finished = (0..400).any(|_| {
        let done = matches!(caller.child.try_wait(), Ok(Some(_)));
        if !done {
            std::thread::sleep(Duration::from_millis(100));
        }
        done
    });
    assert!(finished, "the caller's sipp did not finish within 40 s");
    drop(callee);
    // Down for a few seconds: a restart-time end would bill them.
    let down = Duration::from_millis(3_000).saturating_sub(Duration::from_millis(
        u64::try_from(wall_ms() - killed_ms).unwrap_or(0),
    ));
    std::thread::sleep(down);

    let mut answered: Vec<String> = Vec::new();
    for e in std::fs::read_dir(srv.dir.path()).expect("dir").flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("uac_burst") && name.ends_with("_logs.log") {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            answered.extend(
                text.lines()
                    .filter_map(|l| l.trim().strip_prefix("answered "))
                    .map(str::to_string),
            );
        }
    }
    assert!(
        answered.len() >= 100,
        "only {} calls answered before the kill: {}",
        answered.len(),
        srv.errors()
    );

    let dir = std::mem::replace(&mut srv.dir, tempfile::tempdir().expect("temp dir"));
    drop(srv);
    let again = start_in(dir);
    let cookie = again.login();
    let calls = all_calls(&again, &cookie);
    let mut rows: std::collections::HashMap<&str, Vec<&serde_json::Value>> =
        std::collections::HashMap::new();
    for c in &calls {
        rows.entry(c["callId"].as_str().unwrap_or(""))
            .or_default()
            .push(c);
    }
    let missing: Vec<_> = answered
        .iter()
        .filter(|id| !rows.contains_key(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} calls the caller saw answered have no CDR row, e.g. {:?}",
        missing.len(),
        answered.len(),
        &missing[..missing.len().min(5)]
    );
    let mut crashed = 0;
    for id in &answered {
        let r = &rows[id.as_str()];
        assert_eq!(r.len(), 1, "one row per call: {r:?}");
        let c = r[0];
        assert_eq!(c["disposition"], "ANSWERED", "{c}");
        assert!(!c["answerTime"].is_null(), "{c}");
        let end = epoch_ms(&c["endTime"]);
        assert!(
            end <= killed_ms + ALIVE_SLACK_MS,
            "ended {} ms after the kill (downtime billed): {c}",
            end - killed_ms
        );
        if c["hangupCause"] == "server_crash" {
            crashed += 1;
            // Closed at the last heartbeat, which is at most its interval
            // (plus slack) before the kill.
            assert!(end >= killed_ms - ALIVE_SLACK_MS, "{c}");
        } else {
            assert_eq!(c["hangupCause"], "caller_bye", "{c}");
        }
    }
    assert!(
        crashed > 0,
        "no call was up at the kill: the test did not test the crash"
    );
    let open: Vec<_> = calls.iter().filter(|c| c["endTime"].is_null()).collect();
    assert!(open.is_empty(), "rows left open: {open:?}");
    eprintln!(
        "{} calls answered before the kill, {} rows, {crashed} closed at the last heartbeat",
        answered.len(),
        calls.len()
    );
}
