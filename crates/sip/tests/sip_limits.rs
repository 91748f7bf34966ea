//! Edge protection and account lifecycle against a real server: header and
//! size limits, connections per source, malformed input over TCP, events,
//! and an agent's bindings dropped when it is deactivated.

mod support;

use sip::core::digest::Algorithm;
use std::time::Duration;
use support::ua::Ua;
use support::{TestServer, REALM};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

fn options(extra: &str) -> String {
    format!(
        "OPTIONS sip:{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKlim{}\r\nFrom: <sip:x@{REALM}>;tag=1\r\nTo: <sip:{REALM}>\r\nCall-ID: lim-{}\r\nCSeq: 1 OPTIONS\r\n{extra}Content-Length: 0\r\n\r\n",
        extra.len(),
        extra.len()
    )
}

async fn udp_answer(srv: &TestServer, text: &str) -> Option<String> {
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    s.send_to(text.as_bytes(), srv.addr).await.expect("send");
    let mut buf = vec![0u8; 65_535];
    let n = tokio::time::timeout(Duration::from_millis(1_500), s.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_count_size_and_garbage() {
    let srv = TestServer::start(|c| c.max_message_bytes = 4_000).await;
    let ok = udp_answer(&srv, &options("")).await.expect("answer");
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let many: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = udp_answer(&srv, &options(&many)).await.expect("answer");
    assert!(r.starts_with("SIP/2.0 400"), "{r}");
    let big = format!("X-Big: {}\r\n", "a".repeat(5_000));
    let r = udp_answer(&srv, &options(&big)).await;
    assert!(
        r.as_deref().is_none_or(|r| r.starts_with("SIP/2.0 513")),
        "{r:?}"
    );
    // Binary garbage: dropped, and the server still answers afterwards.
    assert!(udp_answer(&srv, "\u{0}\u{1}\u{2}garbage\r\n\r\n")
        .await
        .is_none());
    let ok = udp_answer(&srv, &options("")).await.expect("still alive");
    assert!(ok.starts_with("SIP/2.0 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_source_are_limited_and_bad_framing_closes() {
    let srv = TestServer::start(|c| c.max_connections_per_ip = 2).await;
    let mut a = TcpStream::connect(srv.addr).await.expect("connect 1");
    let _b = TcpStream::connect(srv.addr).await.expect("connect 2");
    let mut c = TcpStream::connect(srv.addr).await.expect("connect 3");
    let mut buf = [0u8; 64];
    // The third connection is closed by the server at once.
    let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // A stream message without Content-Length cannot be framed: closed.
    a.write_all(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\r\n")
        .await
        .expect("write");
    let n = tokio::time::timeout(Duration::from_secs(2), a.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_events_and_deactivation_drop_bindings() {
    let srv = TestServer::start(|_| {}).await;
    let a = srv.agent("Eva Event").await;
    let mut events = srv.services.events.subscribe();
    let mut ua = Ua::udp(srv.addr, &a.username, &a.password, REALM).await;
    assert_eq!(ua.register(Algorithm::Md5).await.code(), Some(200));
    let ev = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if let Ok(domain::Event::Registration {
                username,
                registered,
                contacts,
                ..
            }) = events.recv().await
            {
                break (username, registered, contacts);
            }
        }
    })
    .await
    .expect("registration event");
    assert_eq!(ev, (a.username.clone(), true, 1));
    let info = srv.services.users.require(a.user_id).await.expect("user");
    assert!(info.sip.is_some_and(|s| s.registered));

    srv.services
        .users
        .deactivate(&domain::Actor::system(), a.user_id)
        .await
        .expect("deactivate");
    for _ in 0..50 {
        if srv.sip.registered_contacts() == 0 {
            // And it can no longer register.
            let r = ua.register(Algorithm::Md5).await;
            assert_eq!(r.code(), Some(401));
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("bindings of a deactivated agent are still there");
}
