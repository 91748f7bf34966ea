//! Issue 8's SIP attacks against a real server over UDP on 127.0.0.1:
//! challenge amplification toward a spoofable address, scanners.

mod support;

use domain::Engine;
use std::time::Duration;
use support::{TestServer, REALM};
use tokio::net::UdpSocket;

/// Everything the server sends to `s` until `quiet` passes without a datagram.
async fn collect(s: &UdpSocket, quiet: Duration) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_535];
    for _ in 0..50 {
        match tokio::time::timeout(quiet, s.recv(&mut buf)).await {
            Ok(Ok(n)) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            _ => break,
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_unauthenticated_invite_gets_exactly_one_407() {
    let srv = TestServer::start(|_| {}).await;
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let port = s.local_addr().expect("addr").port();
    let invite = format!(
        "INVITE sip:1000@{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKamp1\r\nMax-Forwards: 70\r\nFrom: <sip:victim@{REALM}>;tag=a\r\nTo: <sip:1000@{REALM}>\r\nCall-ID: amp-1\r\nCSeq: 1 INVITE\r\nContact: <sip:victim@127.0.0.1:{port}>\r\nContent-Length: 0\r\n\r\n"
    );
    s.send_to(invite.as_bytes(), srv.addr).await.expect("send");
    // Timer G would retransmit at 0.5, 1.5, 3.5 s: wait past the second.
    let got = collect(&s, Duration::from_millis(2_200)).await;
    assert_eq!(got.len(), 1, "answers to one INVITE: {got:#?}");
    assert!(got[0].starts_with("SIP/2.0 407"), "{}", got[0]);
    // The same for REGISTER's 401.
    let register = format!(
        "REGISTER sip:{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKamp2\r\nMax-Forwards: 70\r\nFrom: <sip:1000@{REALM}>;tag=b\r\nTo: <sip:1000@{REALM}>\r\nCall-ID: amp-2\r\nCSeq: 1 REGISTER\r\nContact: <sip:1000@127.0.0.1:{port}>\r\nContent-Length: 0\r\n\r\n"
    );
    s.send_to(register.as_bytes(), srv.addr)
        .await
        .expect("send");
    let got = collect(&s, Duration::from_millis(1_600)).await;
    assert_eq!(got.len(), 1, "answers to one REGISTER: {got:#?}");
    assert!(got[0].starts_with("SIP/2.0 401"), "{}", got[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scanner_requests_are_dropped_and_counted_in_the_engine_status() {
    let srv = TestServer::start(|_| {}).await;
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let options = |ua: &str, n: u32| {
        format!(
            "OPTIONS sip:100@{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKscan{n}\r\nFrom: <sip:100@{REALM}>;tag=1\r\nTo: <sip:100@{REALM}>\r\nCall-ID: scan-{n}\r\nCSeq: 1 OPTIONS\r\nUser-Agent: {ua}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    for (n, ua) in ["friendly-scanner", "sipcli/v1.8", "sipvicious"]
        .iter()
        .enumerate()
    {
        let n = u32::try_from(n).unwrap_or(0);
        s.send_to(options(ua, n).as_bytes(), srv.addr)
            .await
            .expect("send");
    }
    assert!(collect(&s, Duration::from_millis(700)).await.is_empty());
    s.send_to(options("Zoiper rv2.10", 9).as_bytes(), srv.addr)
        .await
        .expect("send");
    let got = collect(&s, Duration::from_millis(700)).await;
    assert!(
        got.first().is_some_and(|r| r.starts_with("SIP/2.0 200")),
        "{got:?}"
    );
    assert_eq!(srv.sip.status().scanner_requests_dropped, 3);

    // Configurable: an empty list answers everyone.
    let open = TestServer::start(|c| c.scanner_user_agents.clear()).await;
    s.send_to(options("friendly-scanner", 20).as_bytes(), open.addr)
        .await
        .expect("send");
    let got = collect(&s, Duration::from_millis(700)).await;
    assert!(
        got.first().is_some_and(|r| r.starts_with("SIP/2.0 200")),
        "{got:?}"
    );
    assert_eq!(open.sip.status().scanner_requests_dropped, 0);
}
