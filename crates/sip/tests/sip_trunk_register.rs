//! Outbound trunk registration against a real registrar: Kamailio (Debian
//! package `kamailio`) on 127.0.0.1 playing the carrier, demanding digest
//! authentication for REGISTER (`auth` module, `pv_auth_check` with a
//! plain password) and keeping the location table in memory only, so a
//! restart forgets every binding.
//!
//! Whether Kamailio holds our contact is checked the way a carrier would
//! use it: an OPTIONS to the trunk's AOR sent to Kamailio is looked up in
//! its location table and relayed to our server, whose 200 comes back
//! (404 from Kamailio when there is no binding). REGISTERs Kamailio
//! received are counted from its log (an `xlog` line per REGISTER).

mod support;

use sip::{Transport, TrunkEvent, TrunkEventKind, TrunkRegState, TrunkRegistration};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use support::free_port;
use tokio::net::UdpSocket;
use tokio::sync::broadcast;

const SECRET: &str = "trunk-secret-42";
const REALM: &str = "carrier.test";

/// Kamailio in the foreground, started and stopped by PID.
struct Kamailio {
    child: Option<std::process::Child>,
    dir: PathBuf,
    port: u16,
    /// Log of each start, in order.
    logs: Vec<PathBuf>,
}

fn config(port: u16) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=1
tcp_children=1
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "textops.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
# Memory only: a restart forgets every binding.
modparam("usrloc", "db_mode", 0)
# Short expiries are allowed so the test can watch refreshes.
modparam("registrar", "min_expires", 5)
modparam("registrar", "default_expires", 20)
modparam("registrar", "max_expires", 3600)

request_route {{
    if (is_method("REGISTER")) {{
        xlog("L_NOTICE", "REGISTER-SEEN cseq=$cs expires=$hdr(Expires) auth=$hdr(Authorization)\n");
        # An overloaded carrier, for the AOR user "overloaded".
        if ($fU == "overloaded") {{
            append_to_reply("Retry-After: 2\r\n");
            sl_send_reply("503", "Service Unavailable");
            exit;
        }}
        if (!pv_auth_check("{REALM}", "{SECRET}", "0", "1")) {{
            auth_challenge("{REALM}", "1");
            exit;
        }}
        if (!save("location")) {{
            sl_reply_error();
        }}
        exit;
    }}
    if (is_method("OPTIONS")) {{
        if (!lookup("location")) {{
            sl_send_reply("404", "Not Found");
            exit;
        }}
        t_relay();
        exit;
    }}
    sl_send_reply("403", "Forbidden");
}}
"#
    )
}

impl Kamailio {
    async fn start(dir: &Path, port: u16) -> Kamailio {
        let mut k = Kamailio {
            child: None,
            dir: dir.to_path_buf(),
            port,
            logs: Vec::new(),
        };
        k.spawn().await;
        k
    }

    async fn spawn(&mut self) {
        // A restart can find the port still held for a moment (the old
        // instance's children closing their sockets): Kamailio then exits at
        // once, and is started again.
        for _ in 0..10 {
            if self.try_spawn().await {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("kamailio did not answer within 10 s: {}", self.log_text());
    }

    /// Starts Kamailio and waits until it answers; false when it exited
    /// first.
    async fn try_spawn(&mut self) -> bool {
        let cfg = self.dir.join("kamailio.cfg");
        std::fs::write(&cfg, config(self.port)).expect("write kamailio.cfg");
        let log = self.dir.join(format!("kamailio-{}.log", self.logs.len()));
        let file = std::fs::File::create(&log).expect("create the log");
        let child = support::spawn_grouped(
            std::process::Command::new("kamailio")
                .arg("-f")
                .arg(&cfg)
                .args(["-DD", "-E", "-m", "32", "-M", "8"])
                .stdout(Stdio::null())
                .stderr(file),
        )
        .expect("start kamailio (Debian package kamailio)");
        self.child = Some(child);
        self.logs.push(log);
        // Ready when it answers an OPTIONS (404: nobody registered yet).
        for _ in 0..50 {
            if options(self.port, "nobody", Duration::from_millis(200))
                .await
                .is_some()
            {
                return true;
            }
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited {
                self.child = None;
                return false;
            }
        }
        self.stop();
        false
    }

    /// Stops Kamailio with every process it forked (see
    /// `support::stop_grouped`), so its ports are free for the restart.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            support::stop_grouped(&mut child);
        }
    }

    async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    fn log_text(&self) -> String {
        self.logs
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n----- restart -----\n")
    }

    /// REGISTER requests the current instance received.
    fn registers_seen(&self) -> Vec<String> {
        let last = self
            .logs
            .last()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default());
        last.unwrap_or_default()
            .lines()
            .filter(|l| l.contains("REGISTER-SEEN"))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends an OPTIONS for `user` to Kamailio; the final answer's text.
async fn options(port: u16, user: &str, wait: Duration) -> Option<String> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let me = sock.local_addr().expect("address");
    let n: u64 = rand_token();
    let req = format!(
        "OPTIONS sip:{user}@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bKprobe{n};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@127.0.0.1>;tag=p{n}\r\n\
         To: <sip:{user}@127.0.0.1>\r\n\
         Call-ID: probe-{n}@127.0.0.1\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    sock.send_to(req.as_bytes(), ("127.0.0.1", port))
        .await
        .expect("send");
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = vec![0u8; 65_535];
    loop {
        let r = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await;
        let Ok(Ok((len, _))) = r else {
            return None;
        };
        let text = String::from_utf8_lossy(&buf[..len]).to_string();
        if !text.starts_with("SIP/2.0 1") {
            return Some(text);
        }
    }
}

fn rand_token() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed) ^ (std::process::id() as u64) << 32
}

fn code(resp: &Option<String>) -> Option<u16> {
    resp.as_ref()?.split_whitespace().nth(1)?.parse().ok()
}

/// The contact is at Kamailio: the OPTIONS is relayed to our server and
/// our own 200 (with our Allow list) comes back.
async fn reaches_us(port: u16) -> bool {
    let r = options(port, "trunk1", Duration::from_secs(2)).await;
    code(&r) == Some(200)
        && r.as_deref()
            .is_some_and(|t| t.contains("Allow: INVITE, ACK, CANCEL, BYE, OPTIONS"))
}

fn trunk(port: u16, secret: &str, transport: Transport) -> TrunkRegistration {
    TrunkRegistration {
        key: "carrier".into(),
        registrar: format!("sip:127.0.0.1:{port}"),
        transport,
        aor: "sip:trunk1@127.0.0.1".into(),
        contact_user: "trunk1".into(),
        auth_username: "trunk1".into(),
        secret: secret.into(),
        realm: Some(REALM.into()),
        expires_secs: 10,
        retry_interval_secs: 1,
        max_retries: 0,
        forbidden_retry_secs: 0,
    }
}

async fn server() -> sip::SipServer {
    let cfg = sip::SipConfig {
        listen: "127.0.0.1:0".parse().expect("literal address"),
        ..Default::default()
    };
    sip::start(cfg, Arc::new(sip::MemoryBackend::default()))
        .await
        .expect("start SIP")
}

async fn next_event(rx: &mut broadcast::Receiver<TrunkEvent>, within: Duration) -> TrunkEventKind {
    match tokio::time::timeout(within, rx.recv()).await {
        Ok(Ok(e)) => {
            assert_eq!(e.key, "carrier");
            e.kind
        }
        other => panic!("no trunk event within {within:?}: {other:?}"),
    }
}

async fn registers_and_survives_a_registrar_restart(transport: Transport) {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut kam = Kamailio::start(dir.path(), port).await;
    assert!(!reaches_us(port).await, "nothing registered yet");
    let srv = server().await;
    let mut events = srv.trunk_events();
    srv.set_trunk_registrations(vec![trunk(port, SECRET, transport)])
        .await
        .expect("valid settings");

    let ev = next_event(&mut events, Duration::from_secs(5)).await;
    assert_eq!(
        ev,
        TrunkEventKind::Registered { expires_secs: 10 },
        "{}",
        kam.log_text()
    );
    // One REGISTER challenged, one answering the challenge.
    let seen = kam.registers_seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert!(
        seen[0].contains("auth=<null>") && !seen[1].contains("auth=<null>"),
        "{seen:#?}"
    );
    assert!(reaches_us(port).await, "Kamailio routes the AOR to us");
    let st = srv.trunk_statuses();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].state, TrunkRegState::Registered { expires_secs: 10 });

    // The carrier restarts and forgets us; the next refresh (5 s after
    // the last success) registers again.
    kam.restart().await;
    let reached = reaches_us(port).await;
    if kam.registers_seen().is_empty() {
        // (Only meaningful if our refresh did not arrive first.)
        assert!(!reached, "a restarted Kamailio has no binding");
    }
    let ev = next_event(&mut events, Duration::from_secs(12)).await;
    assert_eq!(
        ev,
        TrunkEventKind::Registered { expires_secs: 10 },
        "{}",
        kam.log_text()
    );
    assert!(reaches_us(port).await, "registered again after the restart");
    // The stale credentials of the refresh were challenged once, at most.
    let seen = kam.registers_seen();
    assert!((1..=2).contains(&seen.len()), "{seen:#?}");

    // Removed: Expires 0, and the binding is gone from Kamailio.
    srv.set_trunk_registrations(Vec::new())
        .await
        .expect("empty set");
    assert_eq!(
        next_event(&mut events, Duration::from_secs(1)).await,
        TrunkEventKind::Unregistered
    );
    let mut gone = false;
    for _ in 0..20 {
        if code(&options(port, "trunk1", Duration::from_secs(1)).await) == Some(404) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "unregistered at Kamailio: {}", kam.log_text());
    assert!(kam.registers_seen().iter().any(|l| l.contains("expires=0")));
    assert!(srv.trunk_statuses().is_empty());
    srv.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_trunk_registers_with_digest_and_again_after_kamailio_restarts() {
    registers_and_survives_a_registrar_restart(Transport::Udp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_trunk_registers_with_digest_and_again_after_kamailio_restarts() {
    registers_and_survives_a_registrar_restart(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_rejected_after_one_retry_not_a_loop() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let kam = Kamailio::start(dir.path(), port).await;
    let srv = server().await;
    let mut events = srv.trunk_events();
    srv.set_trunk_registrations(vec![trunk(port, "not-the-secret", Transport::Udp)])
        .await
        .expect("valid settings");
    match next_event(&mut events, Duration::from_secs(5)).await {
        TrunkEventKind::Rejected {
            code: 401,
            retry_at_ms: None,
            ..
        } => {}
        other => panic!("{other:?}\n{}", kam.log_text()),
    }
    // Long enough for a loop, or a retry at the 1 s retry interval, to show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = kam.registers_seen();
    assert_eq!(seen.len(), 2, "one REGISTER and one answer: {seen:#?}");
    assert!(events.try_recv().is_err(), "no further events");
    assert!(matches!(
        srv.trunk_statuses()[0].state,
        TrunkRegState::Rejected { code: 401, .. }
    ));
    assert!(!reaches_us(port).await);

    // Fixing the secret registers at once.
    srv.set_trunk_registrations(vec![trunk(port, SECRET, Transport::Udp)])
        .await
        .expect("valid settings");
    assert_eq!(
        next_event(&mut events, Duration::from_secs(5)).await,
        TrunkEventKind::Registered { expires_secs: 10 }
    );
    assert!(reaches_us(port).await);

    // Shutting down (the binary calls end_all_calls first) unregisters.
    srv.end_all_calls();
    let mut gone = false;
    for _ in 0..20 {
        if code(&options(port, "trunk1", Duration::from_secs(1)).await) == Some(404) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "unregistered at shutdown: {}", kam.log_text());
    srv.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_of_a_503_is_honoured() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let kam = Kamailio::start(dir.path(), port).await;
    let srv = server().await;
    let mut events = srv.trunk_events();
    let mut t = trunk(port, SECRET, Transport::Udp);
    t.aor = "sip:overloaded@127.0.0.1".into();
    t.retry_interval_secs = 60;
    srv.set_trunk_registrations(vec![t])
        .await
        .expect("valid settings");
    let mut at = Vec::new();
    for _ in 0..2 {
        match next_event(&mut events, Duration::from_secs(5)).await {
            TrunkEventKind::Failed {
                reason,
                retry_at_ms: Some(retry),
            } => {
                assert!(reason.starts_with("503"), "{reason}");
                at.push((srv.trunk_statuses()[0].since_ms, retry));
            }
            other => panic!("{other:?}\n{}", kam.log_text()),
        }
    }
    // Retry-After: 2 (not the 60 s retry interval), both times.
    for (failed, retry) in &at {
        assert_eq!(retry - failed, 2_000, "{at:?}");
    }
    assert!((1_900..=2_600).contains(&(at[1].0 - at[0].0)), "{at:?}");
    assert_eq!(kam.registers_seen().len(), 2);
    srv.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registrar_that_is_down_is_retried_with_backoff_until_it_is_up() {
    // Over TCP a registrar that is down refuses the connection at once,
    // so the failures and the backoff show without waiting for timer F.
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let srv = server().await;
    let mut events = srv.trunk_events();
    // By name this time: the shell resolves it (from /etc/hosts).
    let mut t = trunk(port, SECRET, Transport::Tcp);
    t.registrar = format!("localhost:{port}");
    srv.set_trunk_registrations(vec![t])
        .await
        .expect("valid settings");
    let mut retries = Vec::new();
    for _ in 0..2 {
        match next_event(&mut events, Duration::from_secs(5)).await {
            TrunkEventKind::Failed {
                reason,
                retry_at_ms: Some(at),
            } => {
                assert!(reason.contains("connection"), "{reason}");
                let st = srv.trunk_statuses();
                retries.push(at.saturating_sub(st[0].since_ms));
            }
            other => panic!("{other:?}"),
        }
    }
    // 1 s then 2 s, each ±20 %.
    assert!((800..=1_200).contains(&retries[0]), "{retries:?}");
    assert!((1_600..=2_400).contains(&retries[1]), "{retries:?}");
    let st = srv.trunk_statuses();
    assert!(matches!(st[0].state, TrunkRegState::Failed { .. }));
    assert_eq!(st[0].failures, 2);

    let kam = Kamailio::start(dir.path(), port).await;
    loop {
        match next_event(&mut events, Duration::from_secs(10)).await {
            TrunkEventKind::Failed { .. } => continue,
            TrunkEventKind::Registered { expires_secs: 10 } => break,
            other => panic!("{other:?}\n{}", kam.log_text()),
        }
    }
    assert_eq!(srv.trunk_statuses()[0].failures, 0);
    assert!(reaches_us(port).await);
    srv.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_are_refused_and_change_nothing() {
    let srv = server().await;
    let mut t = trunk(5060, SECRET, Transport::Udp);
    t.aor = "no-user-part".into();
    let err = srv
        .set_trunk_registrations(vec![t])
        .await
        .expect_err("an AOR without user@domain");
    assert!(err.to_string().contains("user@domain"), "{err}");
    assert!(srv.trunk_statuses().is_empty());
    srv.shutdown();
}
