//! Trunks through the real binary: an administrator adds a trunk with the
//! REST API and the running server registers it to the carrier — Kamailio
//! (Debian package `kamailio`) on 127.0.0.1 standing in for an ITSP that
//! demands digest authentication — and the trunk's live state follows
//! what the carrier answered; `force_register` and `test_connection`
//! (an OPTIONS) report the far end; a wrong password ends "rejected"
//! without a retry loop; deleting the trunk unregisters it. And the
//! toll-fraud gate in front of the trunks: an agent without permission
//! cannot dial abroad, and a number no trunk can carry is refused, each
//! with its cause in the CDR.

mod support;
use support::{Reaped, TestDatabase};

use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN_PASSWORD: &str = "admin-password-for-trunk-tests";
const SECRET: &str = "carrier-secret-9";
const REALM: &str = "carrier.test";

fn kamailio_config(port: u16, customer_port: u16) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=1
listen=udp:127.0.0.1:{port}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "siputils.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "textops.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
modparam("usrloc", "db_mode", 0)
modparam("registrar", "min_expires", 5)
modparam("registrar", "max_expires", 3600)

request_route {{
    if (has_totag()) {{
        # In-dialog: relayed to the Request-URI (the customer's Contact),
        # along the recorded route when there is one.
        xlog("L_NOTICE", "IN-DIALOG $rm to $ru\n");
        loose_route();
        t_relay();
        exit;
    }}
    if (is_method("CANCEL|ACK")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    if (is_method("INVITE")) {{
        xlog("L_NOTICE", "INVITE-SEEN ruri=$ru from=$fu auth=$hdr(Proxy-Authorization)\n");
        if (!pv_auth_check("{REALM}", "{SECRET}", "0", "0")) {{
            auth_challenge("{REALM}", "1");
            exit;
        }}
        consume_credentials();
        record_route();
        $ru = "sip:" + $rU + "@127.0.0.1:{customer_port}";
        t_relay();
        exit;
    }}
    if (is_method("REGISTER")) {{
        xlog("L_NOTICE", "REGISTER-SEEN user=$fU expires=$hdr(Expires)\n");
        if (!pv_auth_check("{REALM}", "{SECRET}", "0", "1")) {{
            auth_challenge("{REALM}", "1");
            exit;
        }}
        if (!save("location")) {{
            sl_reply_error();
        }}
        exit;
    }}
    if (is_method("OPTIONS") && $rU == $null) {{
        sl_send_reply("200", "Carrier Alive");
        exit;
    }}
    sl_send_reply("403", "Forbidden");
}}
"#
    )
}

struct Kamailio {
    /// Ended with its process group when the test is over.
    _child: Reaped,
    log: std::path::PathBuf,
    port: u16,
}

/// SIGTERM first: Kamailio's main process then stops its workers (a
/// SIGKILL would leave them running, orphaned); SIGKILL only if it lingers.
impl Kamailio {
    /// Kamailio on a free port; INVITEs it authenticates go on to the
    /// customer at `customer_port`.
    fn start(dir: &Path, customer_port: u16) -> Kamailio {
        let port = support::free_ports(1, true, false);
        let cfg = dir.join("kamailio.cfg");
        std::fs::write(&cfg, kamailio_config(port, customer_port)).expect("write kamailio.cfg");
        let log = dir.join("kamailio.log");
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new("kamailio");
        cmd.arg("-f")
            .arg(&cfg)
            .args(["-DD", "-E", "-m", "32", "-M", "8"])
            .stdout(Stdio::null())
            .stderr(file);
        let child = Reaped::spawn_group("kamailio", &mut cmd);
        let k = Kamailio {
            _child: child,
            log,
            port,
        };
        // Ready when it answers an OPTIONS.
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        probe
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let me = probe.local_addr().expect("address");
        let options = format!(
            "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKready\r\n\
             Max-Forwards: 70\r\nFrom: <sip:t@127.0.0.1>;tag=r\r\nTo: <sip:127.0.0.1>\r\n\
             Call-ID: ready@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let mut buf = [0u8; 2048];
        for _ in 0..50 {
            let _ = probe.send_to(options.as_bytes(), ("127.0.0.1", port));
            if let Ok(n) = probe.recv(&mut buf) {
                if String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200") {
                    return k;
                }
            }
        }
        panic!("kamailio did not answer within 10 s: {}", k.log_text());
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn registers(&self, user: &str) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains("REGISTER-SEEN") && l.contains(&format!("user={user} ")))
            .map(str::to_string)
            .collect()
    }
}

struct Server {
    _child: Reaped,
    http: String,
    sip: String,
    cookie: String,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_centralita"));
        cmd.arg("serve")
            .env("CENTRALITA_HTTP_LISTEN", "127.0.0.1:0")
            .env("CENTRALITA_SIP_LISTEN", "127.0.0.1:0")
            .env("CENTRALITA_MEDIA_ANCHOR", "never")
            .env("CENTRALITA_DATA_DIR", dir)
            .env("CENTRALITA_CONSOLE_DIR", dir.join("no-console"))
            .env("CENTRALITA_AUTH_INSECURE_FAST_PASSWORD_HASHING", "true")
            .env("CENTRALITA_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .test_database(dir)
            .env(
                "RUST_LOG",
                std::env::var("TRUNK_TEST_LOG").unwrap_or("warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = Reaped::spawn("centralita", &mut cmd);
        let lines = support::stdout_lines(&mut child.child);
        let http = support::wait_for_http(&lines).0;
        let sip = support::wait_for_sip(&lines);
        let body = json!({"login": "admin", "password": ADMIN_PASSWORD}).to_string();
        let (status, head, text) =
            support::http_request(&http, "POST", "/api/auth/login", Some(&body), None);
        assert_eq!(status, 200, "{text}");
        Server {
            _child: child,
            cookie: support::session_cookie(&head),
            http,
            sip,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        let (status, _, text) = support::http_request(
            &self.http,
            method,
            path,
            body.as_deref(),
            Some(&self.cookie),
        );
        let v = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, v)
    }

    fn create_trunk(&self, name: &str, user: &str, password: &str, carrier: u16) -> i64 {
        let (status, v) = self.call(
            "POST",
            "/api/telephony/trunks",
            Some(json!({
                "name": name, "kind": "nat_provider", "host": "127.0.0.1", "port": carrier,
                "transport": "udp", "outboundAuthUsername": user,
                "outboundAuthPassword": password, "registrationExpiration": 60,
                "registrationRetryInterval": 10,
            })),
        );
        assert_eq!(status, 201, "{v}");
        assert_eq!(
            v["trunk"]["sendsRegistration"], true,
            "nat_provider registers: {v}"
        );
        v["trunk"]["id"].as_i64().expect("id")
    }

    /// Creates an agent; returns (id, SIP username, SIP password).
    fn create_agent(&self, name: &str, login: &str) -> (i64, String, String) {
        let (status, v) = self.call(
            "POST",
            "/api/agents",
            Some(json!({"name": name, "login": login, "password": "console-pass-123", "role": "agent"})),
        );
        assert_eq!(status, 201, "{v}");
        let text = |k: &str| {
            v["sipCredentials"][k]
                .as_str()
                .expect("credential")
                .to_string()
        };
        (
            v["agent"]["id"].as_i64().expect("agent id"),
            text("username"),
            text("password"),
        )
    }

    /// Polls the trunk until `done` holds (10 s at most).
    fn wait_trunk(&self, id: i64, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let t0 = Instant::now();
        loop {
            let (status, v) = self.call("GET", &format!("/api/telephony/trunks/{id}"), None);
            assert_eq!(status, 200, "{v}");
            if done(&v["trunk"]) {
                return v["trunk"].clone();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "trunk {id}: {what}; it is {}",
                v["trunk"]
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn a_trunk_added_by_the_api_registers_to_the_carrier_and_reports_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let carrier = Kamailio::start(dir.path(), 9);
    let server = Server::start(dir.path());

    // The right password: registered, and the live state says so.
    let good = server.create_trunk("Carrier main", "acct1", SECRET, carrier.port);
    let t = server.wait_trunk(good, "registered", |t| t["registered"] == true);
    assert!(t["lastRegisteredAt"].is_string(), "{t}");
    assert!(t["lastError"].is_null(), "{t}");
    assert_eq!(
        carrier.registers("acct1").len(),
        2,
        "one challenged, one with credentials"
    );

    // Force register: a fresh REGISTER now, answered with the outcome.
    let (status, v) = server.call(
        "POST",
        &format!("/api/telephony/trunks/{good}/force_register"),
        None,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["registration"]["state"], "registered", "{v}");
    assert!(
        carrier.registers("acct1").len() >= 3,
        "the forced REGISTER reached the carrier"
    );

    // Test connection: the carrier's answer to an OPTIONS, and the registration.
    let (status, v) = server.call(
        "POST",
        &format!("/api/telephony/trunks/{good}/test_connection"),
        None,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["options"]["status"], 200, "{v}");
    assert_eq!(v["result"]["options"]["reason"], "Carrier Alive", "{v}");
    assert_eq!(v["result"]["registration"]["state"], "registered", "{v}");

    // A wrong password: rejected after one answer to the challenge, then
    // no loop; the far end's refusal is the trunk's last error.
    let bad = server.create_trunk("Carrier wrong", "acct2", "not-the-secret", carrier.port);
    let t = server.wait_trunk(bad, "rejected", |t| t["lastError"].is_string());
    assert_eq!(t["registered"], false, "{t}");
    let err = t["lastError"].as_str().expect("error text");
    assert!(err.starts_with("401") || err.starts_with("403"), "{err}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        carrier.registers("acct2").len(),
        2,
        "no retry loop on a wrong password"
    );
    let (_, v) = server.call(
        "POST",
        &format!("/api/telephony/trunks/{bad}/test_connection"),
        None,
    );
    assert_eq!(v["result"]["registration"]["state"], "rejected", "{v}");

    // A trunk that does not register cannot be forced to.
    let (status, v) = server.call(
        "PATCH",
        &format!("/api/telephony/trunks/{bad}"),
        Some(json!({"sendsRegistration": false})),
    );
    assert_eq!(status, 200, "{v}");
    let (status, v) = server.call(
        "POST",
        &format!("/api/telephony/trunks/{bad}/force_register"),
        None,
    );
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "trunk_not_registering", "{v}");

    // Deleting the registered trunk unregisters it at the carrier.
    let (status, _) = server.call("DELETE", &format!("/api/telephony/trunks/{good}"), None);
    assert_eq!(status, 200);
    let t0 = Instant::now();
    while !carrier
        .registers("acct1")
        .iter()
        .any(|l| l.contains("expires=0"))
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no unregister: {:?}",
            carrier.registers("acct1")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(carrier);
}

/// The CDR row of the call to `number` once it ended (5 s at most).
fn cdr_of(server: &Server, number: &str) -> Value {
    let t0 = Instant::now();
    loop {
        let (_, v) = server.call("GET", "/api/telephony/calls/history?limit=50", None);
        if let Some(c) = v["calls"].as_array().and_then(|a| {
            a.iter()
                .find(|c| c["calleeNumber"] == number && c["state"] == "ended")
        }) {
            return c.clone();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no CDR for {number}: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An agent calls `number` with sipp (digest-authenticated INVITE) and
/// expects a refusal; returns the CDR row of that call.
fn refused_call(server: &Server, dir: &Path, user: &str, password: &str, number: &str) -> Value {
    let csv = agent_csv(dir, number, user, password);
    let status = sipp(
        dir,
        "uac_refused.xml",
        support::free_ports(1, true, false),
        &["-s", number, "-inf", &csv],
    )
    .arg(&server.sip)
    .status()
    .expect("sipp (Debian package sip-tester)");
    assert!(
        status.success(),
        "{number}: sipp expected 403 or 503: {}",
        sipp_logs(dir)
    );
    cdr_of(server, number)
}

#[test]
fn an_agent_without_permission_cannot_dial_abroad_and_no_trunk_is_a_clear_failure() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Defaults: agents may dial national numbers, not international ones.
    let server = Server::start(dir.path());
    let (id, user, password) = server.create_agent("Dana Dialer", "dana");

    // Abroad (Paris): refused by the toll-fraud gate before any trunk.
    let c = refused_call(&server, dir.path(), &user, &password, "0033142685300");
    assert_eq!(c["hangupCause"], "dial_not_permitted", "{c}");
    assert_eq!(c["disposition"], "FAILED", "{c}");
    // A satellite number: blocked for everybody.
    let c = refused_call(&server, dir.path(), &user, &password, "+881612345678");
    assert_eq!(c["hangupCause"], "destination_blocked", "{c}");
    // A national number the agent may dial, but no trunk exists yet.
    let c = refused_call(&server, dir.path(), &user, &password, "912345678");
    assert_eq!(c["hangupCause"], "no_trunk_available", "{c}");
    assert_eq!(c["direction"], "outbound", "{c}");

    // The admin grants this agent international dialling: abroad now gets
    // as far as the trunks (none here); a bad value changes nothing.
    let (status, bad) = server.call(
        "PATCH",
        &format!("/api/agents/{id}"),
        Some(json!({"dialPermission": "everywhere"})),
    );
    assert_eq!(status, 422, "{bad}");
    let (status, a) = server.call(
        "PATCH",
        &format!("/api/agents/{id}"),
        Some(json!({"dialPermission": "international"})),
    );
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["agent"]["dialPermission"], "international", "{a}");
    let c = refused_call(&server, dir.path(), &user, &password, "0033142685301");
    assert_eq!(c["hangupCause"], "no_trunk_available", "{c}");
    // Internal only: not even national numbers.
    let (status, a) = server.call(
        "PATCH",
        &format!("/api/agents/{id}"),
        Some(json!({"dialPermission": "internal"})),
    );
    assert_eq!(status, 200, "{a}");
    let c = refused_call(&server, dir.path(), &user, &password, "912345679");
    assert_eq!(c["hangupCause"], "dial_not_permitted", "{c}");
}

/// sipp with a scenario of `tests/sipp`, in `dir`, output discarded.
fn sipp(dir: &Path, scenario: &str, port: u16, extra: &[&str]) -> Command {
    let mut cmd = Command::new("sipp");
    cmd.arg("-sf")
        .arg(
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/sipp")
                .join(scenario),
        )
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-m", "1"])
        .args([
            "-timeout",
            "30s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ])
        .args(extra)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

#[test]
fn an_agent_calls_a_customer_through_the_trunk_the_admin_added() {
    let dir = tempfile::tempdir().expect("temp dir");
    let customer_port = support::free_ports(1, true, false);
    let carrier = Kamailio::start(dir.path(), customer_port);
    let server = Server::start(dir.path());
    let trunk = server.create_trunk("Carrier out", "acct9", SECRET, carrier.port);
    let (status, v) = server.call(
        "PATCH",
        &format!("/api/telephony/trunks/{trunk}"),
        Some(json!({"fromUser": "34910000000"})),
    );
    assert_eq!(status, 200, "{v}");
    // A registering trunk carries calls once it is registered.
    server.wait_trunk(trunk, "registered", |t| t["registered"] == true);
    let (_, user, password) = server.create_agent("Omar Out", "omar");

    // The customer's phone, behind the carrier.
    let mut customer = Reaped::spawn(
        "sipp customer",
        &mut sipp(dir.path(), "uas_answer.xml", customer_port, &[]),
    );
    // The agent dials the customer's national number.
    let number = "912345678";
    let agent_port = support::free_ports(1, true, false);
    let csv_arg = agent_csv(dir.path(), "agent", &user, &password);
    let agent = sipp(
        dir.path(),
        "uac_call.xml",
        agent_port,
        &["-s", number, "-inf", &csv_arg],
    )
    .arg(&server.sip)
    .status()
    .expect("sipp (Debian package sip-tester)");
    assert!(
        agent.success(),
        "the agent's call failed: {}",
        carrier.log_text()
    );
    let t0 = Instant::now();
    while matches!(customer.child.try_wait(), Ok(None)) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the customer's call did not end (customer port {customer_port}, carrier {}): {:?} {}\n{}",
            carrier.port,
            std::fs::read_dir(dir.path())
                .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>()),
            sipp_logs(dir.path()),
            carrier.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        customer.child.wait().map(|s| s.success()).unwrap_or(false),
        "the customer's phone saw the call fail"
    );

    // The carrier challenged the INVITE once and saw our caller ID.
    let invites: Vec<String> = carrier
        .log_text()
        .lines()
        .filter(|l| l.contains("INVITE-SEEN"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        invites.len(),
        2,
        "challenged once, then authenticated: {invites:?}"
    );
    assert!(invites[1].contains("from=sip:34910000000@"), "{invites:?}");
    assert!(invites[1].contains("ruri=sip:912345678@"), "{invites:?}");

    let c = cdr_of(&server, number);
    assert_eq!(c["direction"], "outbound", "{c}");
    assert_eq!(c["disposition"], "ANSWERED", "{c}");
    let call_id = c["callId"].as_str().expect("call id");
    let (status, v) = server.call("GET", &format!("/api/telephony/calls/{call_id}"), None);
    assert_eq!(status, 200, "{v}");
    let legs = v["legs"].as_array().expect("legs");
    assert!(
        legs.iter()
            .any(|l| l["transport"] == "trunk:Carrier out" && l["answeredAt"].is_string()),
        "the answered leg is the trunk: {v}"
    );
    // The trunk's counters follow from the CDR: one call, successful.
    let t = server.wait_trunk(trunk, "counted", |t| t["totalCalls"] == 1);
    assert_eq!(
        (t["successfulCalls"].as_i64(), t["failedCalls"].as_i64()),
        (Some(1), Some(0)),
        "{t}"
    );
}

/// What the sipp runs in `dir` logged (messages and errors), for failures.
fn sipp_logs(dir: &Path) -> String {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.ends_with("errors.log") || n.ends_with("messages.log")
        })
        .map(|e| {
            format!(
                "== {}\n{}",
                e.file_name().to_string_lossy(),
                std::fs::read_to_string(e.path()).unwrap_or_default()
            )
        })
        .collect()
}

/// A sipp injection file with the agent's digest credentials; its path.
fn agent_csv(dir: &Path, name: &str, user: &str, password: &str) -> String {
    let csv = dir.join(format!("{name}.csv"));
    std::fs::write(
        &csv,
        format!("SEQUENTIAL\n{user};[authentication username={user} password={password}];\n"),
    )
    .expect("csv");
    csv.to_string_lossy().to_string()
}

/// Calls from carriers: a trunk recognised by its address (no digest, as
/// most ITSPs send) and one that authenticates with its inbound
/// credentials; DIDs added by the API send them to an agent (a registered
/// sipp that answers), an unknown DID is refused 404 with its cause, a
/// catch-all DID is a data change away, and a stranger's INVITE is
/// challenged like any unknown caller. CDRs carry the trunk and the DID.
#[test]
fn customers_calls_reach_the_agent_their_did_names() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let (id, user, password) = server.create_agent("Ines Inbound", "ines");
    let (_, agent) = server.call("GET", &format!("/api/agents/{id}"), None);
    let extension = agent["agent"]["sip"]["extension"]
        .as_str()
        .unwrap_or_else(|| panic!("the agent's extension: {agent}"))
        .to_string();

    // The agent's phone registers, then waits for a call at that contact.
    let agent_port = support::free_ports(1, true, false);
    let csv = agent_csv(dir.path(), "ines", &user, &password);
    let reg = sipp(dir.path(), "reg_ok.xml", agent_port, &["-inf", &csv])
        .arg(&server.sip)
        .status()
        .expect("sipp (Debian package sip-tester)");
    assert!(
        reg.success(),
        "the agent registers: {}",
        sipp_logs(dir.path())
    );

    // A carrier that sends from its own address, and one that
    // authenticates.
    let carrier_port = support::free_ports(1, true, false);
    let (status, v) = server.call(
        "POST",
        "/api/telephony/trunks",
        Some(json!({
            "name": "Carrier in", "kind": "no_nat", "host": "127.0.0.1", "port": carrier_port,
            "transport": "udp", "sendsRegistration": false,
        })),
    );
    assert_eq!(status, 201, "{v}");
    let trunk = v["trunk"]["id"].as_i64().expect("id");
    let (status, v) = server.call(
        "POST",
        "/api/telephony/trunks",
        Some(json!({
            "name": "Carrier auth", "kind": "no_nat", "host": "127.0.0.1", "port": 9,
            "transport": "udp", "sendsRegistration": false, "acceptsAuth": true,
            "inboundAuthUsername": "carrier2", "inboundAuthPassword": "inbound-secret-7",
        })),
    );
    assert_eq!(status, 201, "{v}");
    assert!(
        !v.to_string().contains("inbound-secret-7"),
        "secrets are write-only: {v}"
    );

    // DIDs: bad input is refused and stores nothing.
    for bad in [
        json!({"number": "12ab", "destination": extension}),
        json!({"number": "+34910000001"}),
        json!({"number": "+34910000001", "destination": extension, "trunkId": 999_999}),
        json!({"number": "+34910000001", "destinationType": "queue", "destination": "1"}),
    ] {
        let (status, v) = server.call("POST", "/api/telephony/dids", Some(bad.clone()));
        assert_eq!(status, 422, "{bad} -> {v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
    let (status, v) = server.call(
        "POST",
        "/api/telephony/dids",
        Some(json!({"number": "+34910000001", "destination": extension, "description": "Sales"})),
    );
    assert_eq!(status, 201, "{v}");
    let (status, v) = server.call(
        "POST",
        "/api/telephony/dids",
        Some(json!({"number": "34910000001", "destination": extension})),
    );
    assert_eq!(status, 201, "another spelling is another entry: {v}");
    let (status, v) = server.call(
        "POST",
        "/api/telephony/dids",
        Some(json!({"number": "+34910000001", "destination": extension})),
    );
    assert_eq!(status, 409, "{v}");
    let (_, v) = server.call("GET", "/api/telephony/dids", None);
    assert_eq!(v["total"], 2, "{v}");

    // An unknown DID is refused with its cause.
    let from_carrier = |scenario: &str, did: &str| {
        sipp(dir.path(), scenario, carrier_port, &["-s", did])
            .arg(&server.sip)
            .status()
            .expect("sipp (Debian package sip-tester)")
            .success()
    };
    assert!(
        from_carrier("carrier_refused_404.xml", "34919999999"),
        "unknown DID: {}",
        sipp_logs(dir.path())
    );
    let c = cdr_of(&server, "34919999999");
    assert_eq!(c["direction"], "inbound", "{c}");
    assert_eq!(c["hangupCause"], "unknown_did", "{c}");
    assert_eq!(c["did"], "34919999999", "{c}");
    assert_eq!(c["trunk"]["name"], "Carrier in", "{c}");

    // The same INVITE from an address that is no trunk is challenged.
    let stranger = support::free_ports(1, true, false);
    let challenged = sipp(
        dir.path(),
        "carrier_refused_407.xml",
        stranger,
        &["-s", "+34910000001"],
    )
    .arg(&server.sip)
    .status()
    .expect("sipp")
    .success();
    assert!(
        challenged,
        "a stranger is challenged: {}",
        sipp_logs(dir.path())
    );

    // The DID rings the agent, who answers; the carrier hangs up.
    let mut phone = Reaped::spawn(
        "sipp agent phone",
        &mut sipp(dir.path(), "uas_answer.xml", agent_port, &[]),
    );
    assert!(
        from_carrier("carrier_call.xml", "+34910000001"),
        "the customer's call: {}",
        sipp_logs(dir.path())
    );
    let t0 = Instant::now();
    while matches!(phone.child.try_wait(), Ok(None)) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the agent's phone did not see the end"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let c = cdr_of(&server, &extension);
    assert_eq!(c["direction"], "inbound", "{c}");
    assert_eq!(c["disposition"], "ANSWERED", "{c}");
    assert_eq!(c["callerNumber"], "+34600111222", "{c}");
    assert_eq!(c["did"], "+34910000001", "{c}");
    assert_eq!(c["trunk"]["id"], trunk, "{c}");
    assert_eq!(c["calleeAgent"]["name"], "Ines Inbound", "{c}");
    let t = server.wait_trunk(trunk, "counted", |t| t["totalCalls"] == 2);
    assert_eq!(t["successfulCalls"], 1, "{t}");

    // A catch-all sends every other number to the agent too (data only);
    // the authenticating carrier reaches it with its credentials.
    let (status, v) = server.call(
        "POST",
        "/api/telephony/dids",
        Some(json!({"number": "*", "destination": extension})),
    );
    assert_eq!(status, 201, "{v}");
    let mut phone = Reaped::spawn(
        "sipp agent phone",
        &mut sipp(dir.path(), "uas_answer.xml", agent_port, &[]),
    );
    let carrier2 = agent_csv(dir.path(), "carrier2", "carrier2", "inbound-secret-7");
    let ok = sipp(
        dir.path(),
        "uac_call.xml",
        support::free_ports(1, true, false),
        &["-s", "34912223333", "-inf", &carrier2],
    )
    .arg(&server.sip)
    .status()
    .expect("sipp")
    .success();
    assert!(
        ok,
        "the authenticating carrier's call: {}",
        sipp_logs(dir.path())
    );
    let t0 = Instant::now();
    while matches!(phone.child.try_wait(), Ok(None)) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the agent's phone did not see the end"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, v) = server.call("GET", "/api/telephony/calls/history?limit=50", None);
    let c = v["calls"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["did"] == "34912223333"))
        .unwrap_or_else(|| panic!("the catch-all call's CDR: {v}"))
        .clone();
    assert_eq!(c["trunk"]["name"], "Carrier auth", "{c}");
    assert_eq!(c["direction"], "inbound", "{c}");
}

/// The dial plan is the configuration's until an administrator saves
/// another through the API; a bad one is refused whole and changes
/// nothing; the next call is routed with what was saved; DELETE goes back
/// to the configuration's.
#[test]
fn an_admin_changes_the_dial_plan_and_the_next_call_follows_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let (dora, user, password) = server.create_agent("Dora Dialplan", "dora");
    let (_, a) = server.call("GET", &format!("/api/agents/{dora}"), None);
    let extension = a["agent"]["sip"]["extension"].clone();
    let (status, v) = server.call(
        "POST",
        "/api/telephony/call/originate",
        Some(json!({"agentExtension": extension, "customerPhone": "0033123456789"})),
    );
    assert_eq!(status, 403, "the toll-fraud gate comes first: {v}");
    assert_eq!(v["error"]["code"], "dial_not_permitted", "{v}");
    let (status, v) = server.call(
        "POST",
        "/api/telephony/call/originate",
        Some(json!({"agentExtension": extension, "customerPhone": "912345678"})),
    );
    // No trunk here: the plan cannot pick one.
    assert_eq!(status, 503, "{v}");
    let (status, v) = server.call("GET", "/api/telephony/dialplan", None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["source"], "config", "{v}");
    let mut settings = v["settings"].clone();
    assert_eq!(settings["agentPermission"], "national", "{settings}");

    // Nothing saved until the whole plan is valid.
    for (field, bad) in [
        ("agentPermission", json!("world")),
        ("outboundPatterns", json!(["_9Q."])),
        ("blockedPrefixes", json!(["80a"])),
        ("countryCode", json!("+34")),
    ] {
        let mut b = settings.clone();
        b[field] = bad;
        let (status, v) = server.call("PUT", "/api/telephony/dialplan", Some(b));
        assert_eq!(status, 422, "{field}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(field)),
            "{field}: {v}"
        );
    }
    let (_, v) = server.call("GET", "/api/telephony/dialplan", None);
    assert_eq!(v["source"], "config", "{v}");

    // Numbers starting 3491 (Madrid) are blocked from now on.
    settings["blockedPrefixes"] = json!(["3491"]);
    let (status, v) = server.call("PUT", "/api/telephony/dialplan", Some(settings));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["source"], "saved", "{v}");
    // (The SIP server applies it a moment after the answer: a call placed
    // in that moment may still see the old plan.)
    let refused_with = |first: u32, cause: &str| {
        let mut seen = Vec::new();
        for n in first..first + 5 {
            let c = refused_call(&server, dir.path(), &user, &password, &n.to_string());
            if c["hangupCause"] == cause {
                return;
            }
            seen.push(c["hangupCause"].clone());
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("never refused with {cause}: {seen:?}");
    };
    refused_with(912_345_670, "destination_blocked");

    // Back to the configuration's plan: the same numbers are no longer
    // blocked (no trunk can carry them here).
    let (status, v) = server.call("DELETE", "/api/telephony/dialplan", None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["source"], "config", "{v}");
    refused_with(912_345_680, "no_trunk_available");

    // With a trunk the plan is complete, but Dora has no softphone
    // registered to ring: a clear 409, and nothing rings.
    let (status, v) = server.call(
        "POST",
        "/api/telephony/trunks",
        Some(json!({"name": "Spare", "host": "127.0.0.1", "port": 9, "sendsRegistration": false})),
    );
    assert_eq!(status, 201, "{v}");
    let (status, v) = server.call(
        "POST",
        "/api/telephony/call/originate",
        Some(json!({"agentExtension": extension, "customerPhone": "912345678"})),
    );
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "agent_not_registered", "{v}");
    // The builtin engine is the PBX: it generates no configuration for one.
    let (status, v) = server.call("GET", "/api/telephony/pbx/config", None);
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "no_pbx_config", "{v}");
}

/// A campaign's own trunks (seeds/001 `campaign_trunks`): replaced whole by
/// an administrator, refused whole (the list does not change), audited,
/// followed by trunk deletion; an originate for the campaign is planned
/// through its list, not the dial plan's trunks.
#[test]
fn an_admin_gives_a_campaign_its_own_trunks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let trunk = |name: &str, priority: u32, status: &str| {
        let (status_code, v) = server.call(
            "POST",
            "/api/telephony/trunks",
            Some(json!({
                "name": name, "host": "127.0.0.1", "port": 9, "priority": priority,
                "sendsRegistration": false, "status": status,
            })),
        );
        assert_eq!(status_code, 201, "{v}");
        v["trunk"]["id"].as_i64().expect("trunk id")
    };
    let main = trunk("Main", 1, "active");
    let sales = trunk("Sales carrier", 5, "active");
    let spare = trunk("Spare", 9, "maintenance");
    let path = "/api/telephony/campaigns/7/trunks";
    let (status, v) = server.call("GET", path, None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["campaignId"].clone(), v["total"].clone()),
        (json!(7), json!(0)),
        "{v}"
    );

    let (status, v) = server.call(
        "PUT",
        path,
        Some(json!({"trunks": [{"trunkId": main, "priority": 20}, {"trunkId": sales, "priority": 1}, {"trunkId": spare}]})),
    );
    assert_eq!(status, 200, "{v}");
    let expected = json!([
        {"trunkId": sales, "trunkName": "Sales carrier", "priority": 1},
        {"trunkId": spare, "trunkName": "Spare", "priority": 10},
        {"trunkId": main, "trunkName": "Main", "priority": 20},
    ]);
    assert_eq!(v["trunks"], expected, "{v}");
    let (_, v) = server.call("GET", path, None);
    assert_eq!(v["trunks"], expected, "{v}");
    let (status, v) = server.call("GET", "/api/audit?action=campaign_trunks.update", None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(v["entries"][0]["targetId"], "7", "{v}");

    // Refused whole, with the API's error envelope; the list stays.
    for (body, code, what) in [
        (
            json!({"trunks": [{"trunkId": main}, {"trunkId": main, "priority": 2}]}),
            422,
            "twice",
        ),
        (
            json!({"trunks": [{"trunkId": main}, {"trunkId": spare + 100}]}),
            422,
            "unknown trunk",
        ),
        (
            json!({"trunks": [{"trunkId": main, "priority": 1001}]}),
            422,
            "priority",
        ),
        (
            json!({"trunks": [{"trunkId": main, "weight": 1}]}),
            422,
            "unknown field",
        ),
        (json!({"trunk": []}), 422, "no list"),
    ] {
        let (status, v) = server.call("PUT", path, Some(body));
        assert_eq!(status, code, "{what}: {v}");
        assert_eq!(v["error"]["code"], "invalid_field", "{what}: {v}");
        let (_, v) = server.call("GET", path, None);
        assert_eq!(v["trunks"], expected, "{what} changed the list: {v}");
    }
    let (status, v) = server.call(
        "PUT",
        "/api/telephony/campaigns/0/trunks",
        Some(json!({"trunks": []})),
    );
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"]["code"], "campaign_not_found", "{v}");
    let (status, v) = server.call("GET", "/api/telephony/campaigns/x/trunks", None);
    assert_eq!(status, 400, "{v}");
    let (_, v) = server.call("GET", "/api/audit?action=campaign_trunks.update", None);
    assert_eq!(v["total"], 1, "a refused request is not audited: {v}");

    // Originate plans through the campaign's list: campaign 8 has only
    // the trunk in maintenance, so no trunk can carry its call, while the
    // same call without a campaign gets as far as ringing the agent
    // (who has no softphone here).
    let (status, v) = server.call(
        "PUT",
        "/api/telephony/campaigns/8/trunks",
        Some(json!({"trunks": [{"trunkId": spare, "priority": 1}]})),
    );
    assert_eq!(status, 200, "{v}");
    let (dora, _, _) = server.create_agent("Cam Paign", "campaign");
    let (_, a) = server.call("GET", &format!("/api/agents/{dora}"), None);
    let extension = a["agent"]["sip"]["extension"].clone();
    let originate = |campaign: Option<i64>| {
        let mut body = json!({"agentExtension": extension, "customerPhone": "912345678"});
        if let Some(c) = campaign {
            body["campaignId"] = json!(c);
        }
        server.call("POST", "/api/telephony/call/originate", Some(body))
    };
    let (status, v) = originate(Some(8));
    assert_eq!(status, 503, "{v}");
    let (status, v) = originate(None);
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "agent_not_registered", "{v}");
    let (status, v) = originate(Some(7));
    assert_eq!(status, 409, "{v}");

    // Deleting a trunk takes it off every campaign's list.
    let (status, v) = server.call("DELETE", &format!("/api/telephony/trunks/{sales}"), None);
    assert_eq!(status, 200, "{v}");
    let (_, v) = server.call("GET", path, None);
    let names: Vec<&str> = v["trunks"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["trunkName"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, vec!["Spare", "Main"], "{v}");
    // An empty list: the campaign uses the dial plan's trunks again.
    let (status, v) = server.call(
        "PUT",
        "/api/telephony/campaigns/8/trunks",
        Some(json!({"trunks": []})),
    );
    assert_eq!((status, v["total"].clone()), (200, json!(0)), "{v}");
    let (status, v) = originate(Some(8));
    assert_eq!(status, 409, "{v}");
}

/// Several outbound routes in the dial plan, each with its own patterns,
/// rewrite and trunks: saved whole or not at all, read back, and used
/// instead of the single pattern list (an originate is planned with them).
#[test]
fn an_admin_sets_several_outbound_routes_with_their_own_trunks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path());
    let trunk = |name: &str, status: &str| {
        let (code, v) = server.call(
            "POST",
            "/api/telephony/trunks",
            Some(json!({"name": name, "host": "127.0.0.1", "port": 9, "sendsRegistration": false, "status": status})),
        );
        assert_eq!(code, 201, "{v}");
        v["trunk"]["id"].as_i64().expect("trunk id")
    };
    let main = trunk("Main", "active");
    let spare = trunk("Spare", "maintenance");
    let (_, v) = server.call("GET", "/api/telephony/dialplan", None);
    let mut settings = v["settings"].clone();
    assert_eq!(settings["routes"], json!([]), "{settings}");
    let (agent, _, _) = server.create_agent("Rita Routes", "rita");
    let (_, a) = server.call("GET", &format!("/api/agents/{agent}"), None);
    let extension = a["agent"]["sip"]["extension"].clone();
    let originate = |phone: &str| {
        server.call(
            "POST",
            "/api/telephony/call/originate",
            Some(json!({"agentExtension": extension, "customerPhone": phone})),
        )
    };

    let routes = json!([
        {"name": "mobiles", "patterns": ["_6XXXXXXXX"], "trunkIds": [main]},
        {"name": "landlines", "patterns": ["_9XXXXXXXX"], "strip": 0, "prepend": "", "trunkIds": [spare]},
    ]);
    // Nothing saved while any route is wrong.
    for (bad, what) in [
        (
            json!([{"name": "x", "patterns": ["_6Q"], "trunkIds": []}]),
            "pattern",
        ),
        (
            json!([{"name": "x", "patterns": ["_6."], "trunkIds": [spare + 100]}]),
            "no trunk",
        ),
        (
            json!([{"name": "x", "patterns": ["_6."]}, {"name": "X", "patterns": ["_7."]}]),
            "twice",
        ),
        (json!([{"name": "x", "patterns": []}]), "patterns"),
        (
            json!([{"name": "x", "patterns": ["_6."], "trunks": [main]}]),
            "trunks",
        ),
    ] {
        let mut b = settings.clone();
        b["routes"] = bad;
        let (status, v) = server.call("PUT", "/api/telephony/dialplan", Some(b));
        assert_eq!(status, 422, "{what}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains("routes") && message.contains(what),
            "{what}: {v}"
        );
        let (_, v) = server.call("GET", "/api/telephony/dialplan", None);
        assert_eq!(v["source"], "config", "{what}: {v}");
    }

    settings["routes"] = routes;
    let (status, v) = server.call("PUT", "/api/telephony/dialplan", Some(settings.clone()));
    assert_eq!(status, 200, "{v}");
    let (_, v) = server.call("GET", "/api/telephony/dialplan", None);
    assert_eq!(v["source"], "saved", "{v}");
    assert_eq!(v["settings"]["routes"][0]["name"], "mobiles", "{v}");
    assert_eq!(
        v["settings"]["routes"][0]["strip"], 0,
        "defaults filled: {v}"
    );
    assert_eq!(
        v["settings"]["routes"][1]["trunkIds"],
        json!([spare]),
        "{v}"
    );

    // Mobiles go through Main (the agent has no phone to ring: 409);
    // landlines only through Spare, which is in maintenance (503); a
    // number only the single pattern list matched is no route now.
    let (status, v) = originate("612345678");
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (409, json!("agent_not_registered")),
        "{v}"
    );
    let (status, v) = originate("912345678");
    assert_eq!(status, 503, "{v}");
    let (status, v) = originate("+44207946001");
    assert_eq!(status, 422, "{v}");

    // Without routes, the single list is back.
    settings["routes"] = json!([]);
    let (status, v) = server.call("PUT", "/api/telephony/dialplan", Some(settings));
    assert_eq!(status, 200, "{v}");
    let (status, v) = originate("912345678");
    assert_eq!(status, 409, "{v}");
}
