//! Denial of service by connections (issue 8): idle stream connections
//! from many loopback addresses are closed after the (shortened) timeouts,
//! and at the connection cap a phone still gets in because the oldest
//! connection that never authenticated makes room for it.

mod support;

use futures_util::StreamExt;
use sip::core::digest::Algorithm;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use support::ua::Ua;
use support::{TestServer, REALM};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// A TCP connection to `server` from loopback address 127.0.0.`host`.
async fn connect_from(host: u8, server: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().expect("socket");
    s.bind(SocketAddr::new(IpAddr::from([127, 0, 0, host]), 0))
        .expect("bind a loopback address");
    s.connect(server).await.expect("connect")
}

/// Whether the server closed `s` within `within` (EOF or reset); bytes it
/// sends meanwhile (CRLF pongs) are skipped.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Registers `agent` over a new TCP connection; returns the UA (its
/// connection stays open).
async fn tcp_phone(srv: &TestServer, agent: &support::Agent, host: u8) -> Ua {
    let conn = connect_from(host, srv.addr).await;
    let mut ua = Ua::tcp(
        conn,
        5070 + u16::from(host),
        srv.addr,
        &agent.username,
        &agent.password,
        REALM,
    );
    let ok = ua.register(Algorithm::Md5).await;
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    ua
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_strangers_are_closed_and_a_registered_phone_stays() {
    let srv = TestServer::start(|c| {
        c.unauthenticated_timeout = Duration::from_secs(1);
    })
    .await;
    let agent = srv.agent("Ana Stay").await;
    let mut phone = tcp_phone(&srv, &agent, 1).await;
    // 4 addresses x 40 idle connections, as an attacker holding descriptors.
    let mut idle = Vec::new();
    for host in 2..=5u8 {
        for _ in 0..40 {
            idle.push(connect_from(host, srv.addr).await);
        }
    }
    // WebSocket flows handed over by the HTTP layer are held to the same rule.
    let mut ws_strangers = Vec::new();
    for _ in 0..3 {
        let mut req = format!("ws://{}/ws", srv.ws_addr)
            .into_client_request()
            .expect("ws request");
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("WS connect");
        ws_strangers.push(ws);
    }
    // A stranger sending CRLF keep-alives is not kept alive by them.
    let mut pinger = connect_from(6, srv.addr).await;
    let ping = tokio::spawn(async move {
        for _ in 0..30 {
            if pinger.write_all(b"\r\n\r\n").await.is_err() {
                return true;
            }
            if closed_within(&mut pinger, Duration::from_millis(100)).await {
                return true;
            }
        }
        false
    });
    let started = Instant::now();
    for (i, s) in idle.iter_mut().enumerate() {
        let left = Duration::from_secs(5).saturating_sub(started.elapsed());
        assert!(
            closed_within(s, left).await,
            "idle unauthenticated connection {i} still open after {:?}",
            started.elapsed()
        );
    }
    for ws in ws_strangers.iter_mut() {
        let left = Duration::from_secs(5).saturating_sub(started.elapsed());
        let end = tokio::time::timeout(left, async {
            loop {
                match ws.next().await {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => continue,
                }
            }
        })
        .await;
        assert!(
            end.is_ok(),
            "an unauthenticated WebSocket flow is still open"
        );
    }
    assert!(
        ping.await.expect("pinger"),
        "CRLF pings kept an unauthenticated connection open"
    );
    // The phone authenticated: still connected, and still served.
    let r = phone.register_text(300, None);
    phone.send(&r).await;
    let ch = phone.expect_code(401).await;
    let uri = format!("sip:{REALM}");
    let a = phone.answer(&ch, Algorithm::Md5, "REGISTER", &uri);
    let r = phone.register_text(300, Some(&a));
    phone.send(&r).await;
    phone.expect_code(200).await;
    assert_eq!(srv.sip.registered_contacts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_connections_close_when_idle_unless_kept_alive() {
    let srv = TestServer::start(|c| {
        c.idle_connection_timeout = Duration::from_secs(2);
    })
    .await;
    let quiet_agent = srv.agent("Quiet Phone").await;
    let chatty_agent = srv.agent("Chatty Phone").await;
    let mut quiet = tcp_phone(&srv, &quiet_agent, 2).await;
    let mut chatty = tcp_phone(&srv, &chatty_agent, 3).await;
    let support::ua::Link::Tcp(quiet_conn, _, _) = &mut quiet.link else {
        panic!("TCP link");
    };
    let started = Instant::now();
    // The chatty phone sends an RFC 5626 CRLF keep-alive every 500 ms.
    let support::ua::Link::Tcp(chatty_conn, _, _) = &mut chatty.link else {
        panic!("TCP link");
    };
    let mut quiet_closed = None;
    for _ in 0..10 {
        chatty_conn.write_all(b"\r\n\r\n").await.expect("ping");
        if quiet_closed.is_none() && closed_within(quiet_conn, Duration::from_millis(500)).await {
            quiet_closed = Some(started.elapsed());
        } else if quiet_closed.is_some() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let quiet_closed = quiet_closed.expect("an idle authenticated connection is closed");
    assert!(
        quiet_closed >= Duration::from_millis(1_500),
        "closed too early: {quiet_closed:?}"
    );
    assert!(
        !closed_within(chatty_conn, Duration::from_millis(300)).await,
        "a connection with keep-alives was closed"
    );
    // Closing the quiet phone's connection dropped its binding only.
    let deadline = Instant::now() + Duration::from_secs(2);
    while srv.sip.registered_contacts() != 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(srv.sip.registered_contacts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_a_phone_evicts_the_oldest_stranger() {
    const CAP: usize = 30;
    let srv = TestServer::start(|c| {
        c.max_connections = CAP;
    })
    .await;
    let agent = srv.agent("Real Phone").await;
    let second = srv.agent("Second Phone").await;
    // Strangers from several addresses fill every slot.
    let mut strangers = Vec::new();
    for i in 0..CAP {
        strangers.push(connect_from(10 + (i % 5) as u8, srv.addr).await);
    }
    // Let the server admit them all (accepts are asynchronous).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut phone = tcp_phone(&srv, &agent, 2).await;
    assert!(
        closed_within(&mut strangers[0], Duration::from_secs(2)).await,
        "the oldest stranger was not evicted"
    );
    for s in strangers[1..].iter_mut() {
        assert!(
            !closed_within(s, Duration::from_millis(20)).await,
            "a newer stranger was evicted instead of the oldest"
        );
    }
    let _phone2 = tcp_phone(&srv, &second, 3).await;
    assert!(closed_within(&mut strangers[1], Duration::from_secs(2)).await);
    assert_eq!(srv.sip.registered_contacts(), 2);
    // Authenticated phones are never evicted: a flood of new strangers
    // only cycles among themselves.
    for i in 0..CAP {
        let _ = connect_from(20 + (i % 5) as u8, srv.addr).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = phone.register_text(300, None);
    phone.send(&r).await;
    phone.expect_code(401).await;
    assert_eq!(srv.sip.registered_contacts(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_only_when_every_connection_authenticated() {
    let srv = TestServer::start(|c| {
        c.max_connections = 2;
    })
    .await;
    let a = srv.agent("Phone One").await;
    let b = srv.agent("Phone Two").await;
    let _pa = tcp_phone(&srv, &a, 2).await;
    let _pb = tcp_phone(&srv, &b, 3).await;
    let mut late = connect_from(4, srv.addr).await;
    assert!(
        closed_within(&mut late, Duration::from_secs(2)).await,
        "a connection beyond the cap was not refused"
    );
    assert_eq!(srv.sip.registered_contacts(), 2);
}

/// TLS: connections stalled in the handshake are strangers too; at the cap
/// a phone's TLS connection evicts the oldest of them and registers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshakes_in_progress_are_evicted_for_a_phone() {
    const CAP: usize = 10;
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success());
    let srv = TestServer::start(|c| {
        c.tls_listen = Some("127.0.0.1:0".parse().expect("literal"));
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
        c.max_connections = CAP;
    })
    .await;
    let a = srv.agent("Tls Phone").await;
    let tls = srv.sip.tls_addr().expect("TLS listening");
    let mut stalled = Vec::new();
    for i in 0..CAP {
        stalled.push(connect_from(10 + (i % 3) as u8, tls).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ua = Ua::tls(tls, srv.addr, &cert, &a.username, &a.password, REALM).await;
    let ok = ua.register(Algorithm::Md5).await;
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    assert!(
        closed_within(&mut stalled[0], Duration::from_secs(2)).await,
        "the oldest stalled handshake was not evicted"
    );
    assert!(!closed_within(&mut stalled[CAP - 1], Duration::from_millis(50)).await);
}
