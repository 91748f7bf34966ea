//! How calls end without anyone hanging up: the server shutting down with
//! calls up (every leg gets a BYE, every CDR is closed with cause
//! `shutdown`).

mod support;

use sip::core::digest::Algorithm;
use support::ua::{Ua, SDP};
use support::{TestServer, REALM};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_up_at_shutdown_get_a_bye_on_both_legs_and_a_closed_cdr() {
    let srv = TestServer::start(|_| {}).await;
    let alice = srv.agent("Alba Sanz").await;
    let bob = srv.agent("Bruno Gil").await;
    let mut a = Ua::udp(srv.addr, &alice.username, &alice.password, REALM).await;
    let mut b = Ua::udp(srv.addr, &bob.username, &bob.password, REALM).await;
    assert_eq!(b.register(Algorithm::Md5).await.code(), Some(200));

    a.invite(&bob.extension, "shutdown-1").await;
    let inv = b.expect_request("INVITE").await;
    b.respond(&inv, 200, "OK", "sdB", Some(SDP)).await;
    let ok = a.expect_code(200).await;
    a.ack(&ok).await;
    b.expect_request("ACK").await;
    assert_eq!(srv.sip.active_calls(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;

    srv.sip.end_all_calls();
    let bye_a = a.expect_request("BYE").await;
    a.respond(&bye_a, 200, "OK", "", None).await;
    let bye_b = b.expect_request("BYE").await;
    b.respond(&bye_b, 200, "OK", "", None).await;
    assert_eq!(bye_b.call_id(), inv.call_id());
    assert_eq!(srv.sip.active_calls(), 0);
    srv.sip.shutdown();
    srv.sip.drain(std::time::Duration::from_secs(5)).await;

    let rows = srv.finished_calls(1).await;
    assert_eq!(
        rows[0].disposition.as_deref(),
        Some("ANSWERED"),
        "{:?}",
        rows[0]
    );
    assert_eq!(rows[0].hangup_cause.as_deref(), Some("shutdown"));
    assert!(rows[0].billsec >= 1, "{:?}", rows[0]);
}
