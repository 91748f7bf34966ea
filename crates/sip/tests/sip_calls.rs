//! Agent-to-agent calls through the B2BUA with sipp on both sides; each
//! test asserts the CDR row and its disposition.

mod support;

use support::{finish, free_port, Agent, TestServer};

struct Pair {
    srv: TestServer,
    caller: Agent,
    callee: Agent,
    callee_port: u16,
}

async fn pair() -> Pair {
    let srv = TestServer::start(|_| {}).await;
    let caller = srv.agent("Alice Caller").await;
    let callee = srv.agent("Bob Callee").await;
    let callee_port = free_port();
    srv.register_with_sipp(&callee, callee_port).await;
    Pair {
        srv,
        caller,
        callee,
        callee_port,
    }
}

/// Runs the callee's UAS scenario and the caller's UAC scenario together.
async fn call(p: &Pair, uas: &str, uac: &str) {
    let uas_child = p.srv.spawn_sipp(uas, None, p.callee_port, &[]);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let csv = p
        .srv
        .csv("caller.csv", &[(&p.caller.username, &p.caller.password)]);
    let (ok, out) = p
        .srv
        .sipp(uac, &csv, free_port(), &["-s", &p.callee.extension])
        .await;
    assert!(ok, "caller scenario {uac} failed: {out}");
    let (ok, out) = finish(uas_child).await;
    assert!(
        ok,
        "callee scenario {uas} failed: {out}{}",
        p.srv.sipp_errors()
    );
}

async fn only_cdr(p: &Pair) -> domain::Call {
    let rows = p.srv.finished_calls(1).await;
    assert_eq!(rows.len(), 1, "one row per call attempt: {rows:?}");
    let c = rows.into_iter().next().expect("one row");
    assert_eq!(c.caller_number, p.caller.extension);
    assert_eq!(c.callee_number, p.callee.extension);
    assert_eq!(c.agent_id, Some(p.caller.user_id));
    assert_eq!(c.direction, "internal");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_and_caller_hangs_up() {
    let p = pair().await;
    call(&p, "uas_answer.xml", "uac_call.xml").await;
    let c = only_cdr(&p).await;
    assert_eq!(c.disposition.as_deref(), Some("ANSWERED"));
    assert_eq!(c.hangup_cause.as_deref(), Some("caller_bye"));
    assert!(c.answer_time.is_some());
    assert_eq!(p.srv.sip.active_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_and_callee_hangs_up() {
    let p = pair().await;
    call(&p, "uas_bye.xml", "uac_call_remote_bye.xml").await;
    let c = only_cdr(&p).await;
    assert_eq!(c.disposition.as_deref(), Some("ANSWERED"));
    assert_eq!(c.hangup_cause.as_deref(), Some("callee_bye"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_with_reinvite() {
    let p = pair().await;
    call(&p, "uas_hold.xml", "uac_call_hold.xml").await;
    let c = only_cdr(&p).await;
    assert_eq!(c.disposition.as_deref(), Some("ANSWERED"));
    assert_eq!(c.hangup_cause.as_deref(), Some("caller_bye"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy() {
    let p = pair().await;
    call(&p, "uas_busy.xml", "uac_busy.xml").await;
    let c = only_cdr(&p).await;
    assert_eq!(c.disposition.as_deref(), Some("BUSY"));
    assert_eq!(c.hangup_cause.as_deref(), Some("busy"));
    assert!(c.answer_time.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_cancels() {
    let p = pair().await;
    call(&p, "uas_ring.xml", "uac_cancel.xml").await;
    let c = only_cdr(&p).await;
    assert_eq!(c.disposition.as_deref(), Some("CANCELLED"));
    assert_eq!(c.hangup_cause.as_deref(), Some("cancelled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_after_ring_timeout() {
    let p = pair().await;
    // The server's ring timeout is 3 s in tests; the callee rings until CANCEL.
    call(&p, "uas_ring.xml", "uac_noanswer.xml").await;
    let c = only_cdr(&p).await;
    assert_eq!(c.disposition.as_deref(), Some("NO ANSWER"));
    assert_eq!(c.hangup_cause.as_deref(), Some("no_answer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_unregistered_extensions_fail() {
    let srv = TestServer::start(|_| {}).await;
    let caller = srv.agent("Alice Caller").await;
    let offline = srv.agent("Olga Offline").await;
    let csv = srv.csv("caller.csv", &[(&caller.username, &caller.password)]);
    let (ok, out) = srv
        .sipp("uac_failed.xml", &csv, free_port(), &["-s", "9999"])
        .await;
    assert!(ok, "404 expected: {out}");
    let (ok, out) = srv
        .sipp(
            "uac_failed.xml",
            &csv,
            free_port(),
            &["-s", &offline.extension],
        )
        .await;
    assert!(ok, "480 expected: {out}");
    let rows = srv.finished_calls(2).await;
    let mut causes: Vec<_> = rows
        .iter()
        .map(|c| {
            (
                c.disposition.clone().unwrap_or_default(),
                c.hangup_cause.clone().unwrap_or_default(),
            )
        })
        .collect();
    causes.sort();
    assert_eq!(
        causes,
        [
            ("FAILED".to_string(), "not_found".to_string()),
            ("FAILED".to_string(), "not_registered".to_string())
        ]
    );
}
