//! Anchored media through the real binary (`media.anchor = always`): two
//! plain SIP phones (sipp for the signalling, UDP sockets of this test for
//! their RTP) call each other; RTP must cross the server both ways with
//! rewritten SSRCs, from and to ports of the configured range that our SDP
//! announced; a call whose media stops ends with cause `media_timeout`; a
//! PCMU-only caller and a PCMA-only callee hear each other transcoded.

mod support;
use support::{Reaped, TestDatabase};

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN_PASSWORD: &str = "admin-password-for-anchor-tests";
const SSRC_A: u32 = 0xA1A1_A1A1;
const SSRC_B: u32 = 0xB2B2_B2B2;

struct Running {
    _child: Reaped,
    http: String,
    sip: String,
    dir: tempfile::TempDir,
    ports: std::ops::RangeInclusive<u16>,
}

fn sipp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sipp")
}

fn start() -> Running {
    let dir = tempfile::tempdir().expect("temp dir");
    // A block of ports nobody else uses, so our SDP's port can be checked.
    let first = support::free_ports(40, true, false);
    let first = first + first % 2;
    let ports = first..=first + 37;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_centralita"));
    cmd.arg("serve")
        .env("CENTRALITA_HTTP_LISTEN", "127.0.0.1:0")
        .env("CENTRALITA_SIP_LISTEN", "127.0.0.1:0")
        .env("CENTRALITA_SIP_DOMAIN", "pbx.test")
        .env("CENTRALITA_SIP_AUTH_FAIL_LIMIT", "1000")
        .env("CENTRALITA_MEDIA_ANCHOR", "always")
        .env(
            "CENTRALITA_MEDIA_PORT_RANGE",
            format!("{}-{}", ports.start(), ports.end()),
        )
        .env("CENTRALITA_MEDIA_RTP_TIMEOUT_SECS", "2")
        .env("CENTRALITA_DATA_DIR", dir.path())
        .env("CENTRALITA_CONSOLE_DIR", dir.path().join("no-console"))
        .env("CENTRALITA_AUTH_INSECURE_FAST_PASSWORD_HASHING", "true")
        .env("CENTRALITA_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .test_database(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = Reaped::spawn("centralita", &mut cmd);
    let lines = support::stdout_lines(&mut child.child);
    let http = support::wait_for_http(&lines).0;
    let sip = support::wait_for_sip(&lines);
    Running {
        _child: child,
        http,
        sip,
        dir,
        ports,
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
                "30s",
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

    /// CDR rows once `n` of them are finished (newest first).
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

/// `c=IN IP4 <ip>` and `m=audio <port>` of the line `tag` logged by sipp.
fn logged_address(log: &Path, tag: &str, within: Duration) -> Option<SocketAddr> {
    let until = Instant::now() + within;
    while Instant::now() < until {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(tag)) {
            let ip = line.split("c=IN IP4 ").nth(1)?.split_whitespace().next()?;
            let port = line.split("m=audio ").nth(1)?.split_whitespace().next()?;
            return format!("{ip}:{port}").parse().ok();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend(std::iter::repeat_n(0xd5u8, 160));
    p
}

/// (payload type, SSRC) of an RTP datagram.
fn header(d: &[u8]) -> Option<(u8, u32)> {
    (d.len() >= 12 && d[0] >> 6 == 2)
        .then(|| (d[1] & 0x7f, u32::from_be_bytes([d[8], d[9], d[10], d[11]])))
}

#[test]
fn plain_phones_talk_through_the_anchored_server_and_silence_ends_the_call() {
    let srv = start();
    let cookie = srv.login();
    let (alice, alice_pw, _) = srv.agent(&cookie, "alice.anchor");
    let (bob, bob_pw, bob_ext) = srv.agent(&cookie, "bob.anchor");
    let bob_port = support::free_ports(1, true, true);
    let bob_csv = srv.csv("bob.csv", &bob, &bob_pw);
    let mut reg = srv.sipp("reg_ok.xml", Some(&bob_csv), bob_port, &[]);
    assert!(wait(&mut reg), "register: {}", srv.errors());
    let alice_csv = srv.csv("alice.csv", &alice, &alice_pw);

    // The phones' media sockets.
    let phone_a = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let phone_b = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for s in [&phone_a, &phone_b] {
        s.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
    }
    let port_of = |s: &UdpSocket| s.local_addr().expect("addr").port().to_string();
    let uas_log = srv.dir.path().join("uas1.log");
    let uac_log = srv.dir.path().join("uac1.log");
    let mut callee = srv.sipp(
        "anchored_uas.xml",
        None,
        bob_port,
        &[
            "-set",
            "rtp",
            &port_of(&phone_b),
            "-trace_logs",
            "-log_file",
            &uas_log.display().to_string(),
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut caller = srv.sipp(
        "anchored_uac.xml",
        Some(&alice_csv),
        support::free_ports(1, true, true),
        &[
            "-s",
            &bob_ext,
            "-set",
            "rtp",
            &port_of(&phone_a),
            "-trace_logs",
            "-log_file",
            &uac_log.display().to_string(),
        ],
    );
    let ours_a = logged_address(&uac_log, "ANSWER", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no answer SDP logged: {}", srv.errors()));
    let ours_b =
        logged_address(&uas_log, "OFFER", Duration::from_secs(2)).expect("offer SDP logged");
    // Our SDP, not the other phone's: our address and ports of the range.
    for ours in [ours_a, ours_b] {
        assert_eq!(ours.ip().to_string(), "127.0.0.1");
        assert!(
            srv.ports.contains(&ours.port()),
            "{ours} outside {:?}",
            srv.ports
        );
    }
    assert_ne!(ours_a.port().to_string(), port_of(&phone_b));
    assert_ne!(ours_b.port().to_string(), port_of(&phone_a));

    // 1 s of audio each way, 20 ms apart; B answers toward where A's audio came from.
    let (mut at_b, mut at_a) = (0, 0);
    let mut buf = [0u8; 2048];
    let mut b_source = None;
    for i in 0..50u16 {
        std::thread::sleep(Duration::from_millis(20));
        phone_a
            .send_to(&rtp(8, 1000 + i, 160 * u32::from(i), SSRC_A), ours_a)
            .expect("send A");
        if let Ok((n, from)) = phone_b.recv_from(&mut buf) {
            let (pt, ssrc) = header(&buf[..n]).expect("RTP at B");
            assert_eq!(pt, 8, "PCMA keeps its payload type toward B");
            assert_ne!(ssrc, SSRC_A, "the SSRC toward B is the server's");
            assert_eq!(from, ours_b, "B hears the address our offer named");
            at_b += 1;
            b_source = Some(from);
        }
        if let Some(to) = b_source {
            phone_b
                .send_to(&rtp(8, 7000 + i, 160 * u32::from(i), SSRC_B), to)
                .expect("send B");
        }
        if let Ok((n, from)) = phone_a.recv_from(&mut buf) {
            let (pt, ssrc) = header(&buf[..n]).expect("RTP at A");
            assert_eq!(pt, 8);
            assert_ne!(ssrc, SSRC_B, "the SSRC toward A is the server's");
            assert_eq!(from, ours_a, "A hears the address our answer named");
            at_a += 1;
        }
    }
    assert!(at_b >= 40, "B received {at_b} of 50 packets");
    assert!(at_a >= 35, "A received {at_a} packets");

    assert!(wait(&mut caller), "caller: {}", srv.errors());
    assert!(wait(&mut callee), "callee: {}", srv.errors());
    let calls = srv.finished_calls(&cookie, 1);
    assert_eq!(calls[0]["hangupCause"], "caller_bye", "{}", calls[0]);
    assert_eq!(calls[0]["disposition"], "ANSWERED", "{}", calls[0]);

    // Second call: nobody sends RTP. After media.rtp_timeout_secs (2 s)
    // the server hangs both legs up, cause media_timeout.
    let started = Instant::now();
    let mut callee = srv.sipp(
        "anchored_uas.xml",
        None,
        bob_port,
        &["-set", "rtp", &port_of(&phone_b)],
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut caller = srv.sipp(
        "anchored_uac_bye.xml",
        Some(&alice_csv),
        support::free_ports(1, true, true),
        &["-s", &bob_ext, "-set", "rtp", &port_of(&phone_a)],
    );
    assert!(wait(&mut caller), "caller: {}", srv.errors());
    assert!(wait(&mut callee), "callee: {}", srv.errors());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "ended after {took:?}, before the timeout"
    );
    let calls = srv.finished_calls(&cookie, 2);
    assert_eq!(calls[0]["hangupCause"], "media_timeout", "{}", calls[0]);
    assert_eq!(calls[0]["disposition"], "ANSWERED", "{}", calls[0]);
}

/// The caller holds (re-INVITE `sendonly`): answered by the server on that
/// leg alone (`recvonly`), the callee is not re-INVITEd and hears the
/// server's hold tone in the same RTP stream instead of the caller; the held
/// caller hears nothing; after the resume audio flows both ways again.
#[test]
fn hold_is_answered_per_leg_and_the_other_party_hears_the_hold_tone() {
    let srv = start();
    let cookie = srv.login();
    let (alice, alice_pw, _) = srv.agent(&cookie, "alice.hold");
    let (bob, bob_pw, bob_ext) = srv.agent(&cookie, "bob.hold");
    let bob_port = support::free_ports(1, true, true);
    let bob_csv = srv.csv("bob.csv", &bob, &bob_pw);
    let mut reg = srv.sipp("reg_ok.xml", Some(&bob_csv), bob_port, &[]);
    assert!(wait(&mut reg), "register: {}", srv.errors());
    let alice_csv = srv.csv("alice.csv", &alice, &alice_pw);
    let phone_a = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let phone_b = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for s in [&phone_a, &phone_b] {
        s.set_nonblocking(true).expect("nonblocking");
    }
    let port_of = |s: &UdpSocket| s.local_addr().expect("addr").port().to_string();
    let uas_log = srv.dir.path().join("uas.log");
    let uac_log = srv.dir.path().join("uac.log");
    // The callee's scenario fails on any request other than the BYE: a
    // relayed re-INVITE would make it fail.
    let mut callee = srv.sipp(
        "anchored_uas.xml",
        None,
        bob_port,
        &[
            "-set",
            "rtp",
            &port_of(&phone_b),
            "-trace_logs",
            "-log_file",
            &uas_log.display().to_string(),
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut caller = srv.sipp(
        "anchored_uac_hold.xml",
        Some(&alice_csv),
        support::free_ports(1, true, true),
        &[
            "-s",
            &bob_ext,
            "-set",
            "rtp",
            &port_of(&phone_a),
            "-trace_logs",
            "-log_file",
            &uac_log.display().to_string(),
        ],
    );
    let ours_a = logged_address(&uac_log, "ANSWER", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no answer SDP logged: {}", srv.errors()));
    let ours_b = logged_address(&uas_log, "OFFER", Duration::from_secs(2)).expect("offer logged");

    // Phase 0: before the hold, 1: held, 2: resumed.
    let mut at_a = [0u32; 3];
    let mut at_b = [0u32; 3];
    let mut toned = 0;
    let mut ssrcs_at_b = std::collections::HashSet::new();
    let mut buf = [0u8; 2048];
    let until = Instant::now() + Duration::from_secs(8);
    let mut i = 0u16;
    while Instant::now() < until {
        let log = std::fs::read_to_string(&uac_log).unwrap_or_default();
        if log.contains("HOLD") {
            assert!(
                log.contains("HOLD a=recvonly"),
                "hold answered recvonly: {log}"
            );
        }
        let phase = if log.contains("RESUME") {
            2
        } else if log.contains("HOLD") {
            1
        } else {
            0
        };
        if caller.try_wait().ok().flatten().is_some() {
            break;
        }
        if phase != 1 {
            let _ = phone_a.send_to(&rtp(8, 100 + i, 160 * u32::from(i), SSRC_A), ours_a);
        }
        let _ = phone_b.send_to(&rtp(8, 900 + i, 160 * u32::from(i), SSRC_B), ours_b);
        i = i.wrapping_add(1);
        std::thread::sleep(Duration::from_millis(20));
        while let Ok((n, _)) = phone_a.recv_from(&mut buf) {
            if header(&buf[..n]).is_some() {
                at_a[phase] += 1;
            }
        }
        while let Ok((n, _)) = phone_b.recv_from(&mut buf) {
            if let Some((_, ssrc)) = header(&buf[..n]) {
                at_b[phase] += 1;
                ssrcs_at_b.insert(ssrc);
                // The test's phones send constant A-law silence; a tone varies.
                let payload = &buf[12..n];
                if phase == 1 && payload.iter().any(|b| *b != payload[0]) {
                    toned += 1;
                }
            }
        }
    }
    assert!(wait(&mut caller), "caller: {}", srv.errors());
    assert!(
        wait(&mut callee),
        "callee (no re-INVITE may reach it): {}",
        srv.errors()
    );
    assert!(
        at_a[0] >= 20 && at_b[0] >= 20,
        "before the hold: A {at_a:?}, B {at_b:?}"
    );
    // A packet or two in flight when the hold lands.
    assert!(
        at_a[1] <= 3,
        "the held caller still heard the callee: {at_a:?}"
    );
    // The default hold tone is 0.5 s of 440 Hz every 2 s, silence between:
    // a frame every 20 ms all along, a quarter of them toned.
    assert!(
        at_b[1] >= 60,
        "the callee's stream stopped while held: {at_b:?}"
    );
    assert!(
        toned >= 15,
        "the callee heard {toned} tone packets while held ({at_b:?})"
    );
    assert!(
        at_a[2] >= 20 && at_b[2] >= 20,
        "after the resume: A {at_a:?}, B {at_b:?}"
    );
    assert_eq!(
        ssrcs_at_b.len(),
        1,
        "hold tone and speech in one stream toward B"
    );
    let calls = srv.finished_calls(&cookie, 1);
    assert_eq!(calls[0]["hangupCause"], "caller_bye", "{}", calls[0]);
}

/// The `o=` session version in the line `tag` logged by sipp.
fn logged_version(log: &Path, tag: &str) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains(tag))?;
    let origin = line.split(" o=").nth(1)?;
    origin.split_whitespace().nth(2)?.parse().ok()
}

#[test]
fn a_re_invite_without_sdp_gets_our_offer_and_the_ack_answers_it() {
    let srv = start();
    let cookie = srv.login();
    let (alice, alice_pw, _) = srv.agent(&cookie, "alice.nosdp");
    let (bob, bob_pw, bob_ext) = srv.agent(&cookie, "bob.nosdp");
    let bob_port = support::free_ports(1, true, true);
    let bob_csv = srv.csv("bob.csv", &bob, &bob_pw);
    let mut reg = srv.sipp("reg_ok.xml", Some(&bob_csv), bob_port, &[]);
    assert!(wait(&mut reg), "register: {}", srv.errors());
    let alice_csv = srv.csv("alice.csv", &alice, &alice_pw);
    // The caller's phone moves to another port in its answer in the ACK.
    let phone_a = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let phone_a2 = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let phone_b = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for s in [&phone_a, &phone_a2, &phone_b] {
        s.set_nonblocking(true).expect("nonblocking");
    }
    let port_of = |s: &UdpSocket| s.local_addr().expect("addr").port().to_string();
    let uas_log = srv.dir.path().join("uas.log");
    let uac_log = srv.dir.path().join("uac.log");
    // The callee's scenario fails on any request but the BYE: nothing of
    // the caller's re-INVITEs may reach it.
    let mut callee = srv.sipp(
        "anchored_uas.xml",
        None,
        bob_port,
        &[
            "-set",
            "rtp",
            &port_of(&phone_b),
            "-trace_logs",
            "-log_file",
            &uas_log.display().to_string(),
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut caller = srv.sipp(
        "anchored_uac_offerless.xml",
        Some(&alice_csv),
        support::free_ports(1, true, true),
        &[
            "-s",
            &bob_ext,
            "-set",
            "rtp",
            &port_of(&phone_a),
            "-set",
            "rtp2",
            &port_of(&phone_a2),
            "-trace_logs",
            "-log_file",
            &uac_log.display().to_string(),
        ],
    );
    let ours_a = logged_address(&uac_log, "ANSWER", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no answer SDP logged: {}", srv.errors()));
    let ours_b = logged_address(&uas_log, "OFFER", Duration::from_secs(2)).expect("offer logged");

    // Phase 0: talking, 1: held, 2: resumed by the offer in our 200 and
    // the answer in the ACK (phone A now on its second port).
    let mut at_a = [0u32; 3];
    let mut at_a2 = [0u32; 3];
    let mut at_b = [0u32; 3];
    let mut speech_at_b = [0u32; 3];
    let mut buf = [0u8; 2048];
    let until = Instant::now() + Duration::from_secs(9);
    let mut i = 0u16;
    while Instant::now() < until {
        let log = std::fs::read_to_string(&uac_log).unwrap_or_default();
        let phase = if log.contains("OFFERAGAIN") {
            2
        } else if log.contains("HOLD") {
            1
        } else {
            0
        };
        if caller.try_wait().ok().flatten().is_some() {
            break;
        }
        let frame = rtp(8, 100 + i, 160 * u32::from(i), SSRC_A);
        match phase {
            0 => {
                let _ = phone_a.send_to(&frame, ours_a);
            }
            2 => {
                let _ = phone_a2.send_to(&frame, ours_a);
            }
            _ => {}
        }
        let _ = phone_b.send_to(&rtp(8, 900 + i, 160 * u32::from(i), SSRC_B), ours_b);
        i = i.wrapping_add(1);
        std::thread::sleep(Duration::from_millis(20));
        for (socket, counts) in [(&phone_a, &mut at_a), (&phone_a2, &mut at_a2)] {
            while let Ok((n, _)) = socket.recv_from(&mut buf) {
                if header(&buf[..n]).is_some() {
                    counts[phase] += 1;
                }
            }
        }
        while let Ok((n, _)) = phone_b.recv_from(&mut buf) {
            if header(&buf[..n]).is_some() {
                at_b[phase] += 1;
                // The phones send constant A-law silence; the hold tone
                // varies (and its pauses are silence of another law value).
                let payload = &buf[12..n];
                if payload.iter().all(|b| *b == 0xd5) {
                    speech_at_b[phase] += 1;
                }
            }
        }
    }
    assert!(wait(&mut caller), "caller: {}", srv.errors());
    assert!(
        wait(&mut callee),
        "callee (no re-INVITE may reach it): {}",
        srv.errors()
    );
    let log = std::fs::read_to_string(&uac_log).unwrap_or_default();
    assert!(
        log.contains("OFFERAGAIN a=sendrecv"),
        "our 200 offers send and receive: {log}"
    );
    let (first, again) = (
        logged_version(&uac_log, "ANSWER").expect("answer's o= logged"),
        logged_version(&uac_log, "OFFERAGAIN").expect("offer's o= logged"),
    );
    assert!(
        again > first,
        "the offer's o= version {again} after {first}"
    );
    assert!(
        at_a[0] >= 20 && at_b[0] >= 20,
        "before the hold: A {at_a:?}, B {at_b:?}"
    );
    assert!(
        at_b[1] >= 60 && speech_at_b[1] <= 3 + at_b[1] * 3 / 4,
        "the callee heard the hold tone: {at_b:?} {speech_at_b:?}"
    );
    // The ACK's answer moved A's media to its second port and resumed it
    // (sendrecv): A hears B there, B hears A's audio again.
    assert!(
        at_a2[2] >= 20 && at_a[2] <= 3,
        "after the ACK: first port {at_a:?}, second port {at_a2:?}"
    );
    assert!(
        speech_at_b[2] >= 20,
        "the callee hears the caller again: {at_b:?} {speech_at_b:?}"
    );
    let calls = srv.finished_calls(&cookie, 1);
    assert_eq!(calls[0]["hangupCause"], "caller_bye", "{}", calls[0]);
}

/// The payload formats of the m-line `tag` logged by sipp (`RTP/AVP 0 8 101`
/// gives "0 8 101"; the caller's scenario logs the first one only).
fn logged_formats(log: &Path, tag: &str) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains(tag))?;
    Some(line.split("RTP/AVP ").nth(1)?.trim().to_string())
}

/// 20 ms of a sine at 8 kHz, `frame` frames into it.
fn tone(frequency: f64, frame: u16) -> Vec<i16> {
    (0..160u32)
        .map(|i| {
            let n = f64::from(u32::from(frame) * 160 + i);
            (8000.0 * (2.0 * std::f64::consts::PI * frequency * n / 8000.0).sin()).round() as i16
        })
        .collect()
}

fn rtp_with(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// The largest difference between a received frame and the tone it should
/// carry: two G.711 quantisations (one law to the other) stay within a few
/// percent; anything else (the other law's bytes read as this one, noise)
/// is thousands off.
fn max_error(got: &[i16], want: &[i16]) -> i32 {
    if got.len() != want.len() {
        return i32::MAX;
    }
    got.iter()
        .zip(want)
        .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
        .max()
        .unwrap_or(0)
}

/// The caller offers PCMU only and the callee answers PCMA only: nothing in
/// common, so the server answers the caller PCMU and transcodes. Each phone
/// receives its own law, carrying the other's tone sample for sample.
#[test]
fn a_pcmu_caller_and_a_pcma_callee_hear_each_other_through_transcoding() {
    use media::codec::Codec;
    use media::core::g711;
    let srv = start();
    let cookie = srv.login();
    let (alice, alice_pw, _) = srv.agent(&cookie, "alice.transcode");
    let (bob, bob_pw, bob_ext) = srv.agent(&cookie, "bob.transcode");
    let bob_port = support::free_ports(1, true, true);
    let bob_csv = srv.csv("bob.csv", &bob, &bob_pw);
    let mut reg = srv.sipp("reg_ok.xml", Some(&bob_csv), bob_port, &[]);
    assert!(wait(&mut reg), "register: {}", srv.errors());
    let alice_csv = srv.csv("alice.csv", &alice, &alice_pw);
    let phone_a = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let phone_b = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for s in [&phone_a, &phone_b] {
        s.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
    }
    let port_of = |s: &UdpSocket| s.local_addr().expect("addr").port().to_string();
    let uas_log = srv.dir.path().join("uas.log");
    let uac_log = srv.dir.path().join("uac.log");
    // anchored_uas.xml answers PCMA (8) and telephone-event only.
    let mut callee = srv.sipp(
        "anchored_uas.xml",
        None,
        bob_port,
        &[
            "-set",
            "rtp",
            &port_of(&phone_b),
            "-trace_logs",
            "-log_file",
            &uas_log.display().to_string(),
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut caller = srv.sipp(
        "anchored_uac_pcmu.xml",
        Some(&alice_csv),
        support::free_ports(1, true, true),
        &[
            "-s",
            &bob_ext,
            "-set",
            "rtp",
            &port_of(&phone_a),
            "-trace_logs",
            "-log_file",
            &uac_log.display().to_string(),
        ],
    );
    let ours_a = logged_address(&uac_log, "ANSWER", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no answer SDP logged: {}", srv.errors()));
    let ours_b = logged_address(&uas_log, "OFFER", Duration::from_secs(2)).expect("offer logged");
    // The callee was offered the caller's PCMU, then PCMA to transcode to;
    // the caller was answered its own PCMU.
    let offered = logged_formats(&uas_log, "OFFER").expect("offer m-line");
    assert!(offered.starts_with("0 8"), "offer to the callee: {offered}");
    let answered = logged_formats(&uac_log, "ANSWER").expect("answer m-line");
    assert_eq!(answered, "0", "answer to the caller");

    let (mut at_a, mut at_b) = (0, 0);
    let mut buf = [0u8; 2048];
    let mut b_source = None;
    // What each phone sent, by sequence number, to compare with what the
    // other one hears.
    let (a_tone, b_tone) = (1000.0, 440.0);
    for i in 0..50u16 {
        std::thread::sleep(Duration::from_millis(20));
        let mut ulaw = Vec::new();
        g711::encode_into(Codec::Pcmu, &tone(a_tone, i), &mut ulaw).expect("µ-law");
        phone_a
            .send_to(
                &rtp_with(0, 1000 + i, 160 * u32::from(i), SSRC_A, &ulaw),
                ours_a,
            )
            .expect("send A");
        if let Ok((n, from)) = phone_b.recv_from(&mut buf) {
            let d = &buf[..n];
            let (pt, ssrc) = header(d).expect("RTP at B");
            assert_eq!(pt, 8, "B hears PCMA, its only codec");
            assert_ne!(ssrc, SSRC_A);
            assert_eq!(from, ours_b);
            let seq = u16::from_be_bytes([d[2], d[3]]);
            let mut pcm = Vec::new();
            g711::decode_into(Codec::Pcma, &d[12..], &mut pcm).expect("A-law");
            let err = max_error(&pcm, &tone(a_tone, seq.wrapping_sub(1000)));
            assert!(err < 600, "B heard A's tone off by {err} (packet {seq})");
            at_b += 1;
            b_source = Some(from);
        }
        if let Some(to) = b_source {
            let mut alaw = Vec::new();
            g711::encode_into(Codec::Pcma, &tone(b_tone, i), &mut alaw).expect("A-law");
            phone_b
                .send_to(
                    &rtp_with(8, 7000 + i, 160 * u32::from(i), SSRC_B, &alaw),
                    to,
                )
                .expect("send B");
        }
        if let Ok((n, from)) = phone_a.recv_from(&mut buf) {
            let d = &buf[..n];
            let (pt, ssrc) = header(d).expect("RTP at A");
            assert_eq!(pt, 0, "A hears PCMU, its only codec");
            assert_ne!(ssrc, SSRC_B);
            assert_eq!(from, ours_a);
            let seq = u16::from_be_bytes([d[2], d[3]]);
            let mut pcm = Vec::new();
            g711::decode_into(Codec::Pcmu, &d[12..], &mut pcm).expect("µ-law");
            let err = max_error(&pcm, &tone(b_tone, seq.wrapping_sub(7000)));
            assert!(err < 600, "A heard B's tone off by {err} (packet {seq})");
            at_a += 1;
        }
    }
    assert!(at_b >= 40, "B received {at_b} of 50 packets");
    assert!(at_a >= 35, "A received {at_a} packets");
    assert!(wait(&mut caller), "caller: {}", srv.errors());
    assert!(wait(&mut callee), "callee: {}", srv.errors());
    let calls = srv.finished_calls(&cookie, 1);
    assert_eq!(calls[0]["hangupCause"], "caller_bye", "{}", calls[0]);
}
