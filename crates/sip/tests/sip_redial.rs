//! Phones registered over TLS (and TCP) whose connection did not survive a
//! restart: the restarted server reaches them by opening a new connection
//! (a TLS handshake as the client, the phone's certificate checked as
//! `tls_dial_verify` says), and a phone that is gone fails the call at
//! once. The "phone" is a Rust UA: a tokio-rustls server with a
//! certificate from `centralita::devcert` (Debian's sipp 3.6 is built
//! without TLS).

mod support;

use sip::core::digest::Algorithm;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::ua::{Ua, SDP};
use support::{Agent, TestServer, REALM};
use tokio::net::TcpListener;

struct Setup {
    /// The server's certificate and key (also trusted by the phone).
    server_cert: PathBuf,
    server_key: PathBuf,
    phone_cert: PathBuf,
    phone_key: PathBuf,
    /// A certificate unrelated to the phone's (a CA that did not sign it).
    other_cert: PathBuf,
    certs: tempfile::TempDir,
}

fn setup() -> Setup {
    let certs = tempfile::tempdir().expect("temp dir");
    let (server_cert, server_key) = support::dev_cert(&certs.path().join("server"));
    let (phone_cert, phone_key) = support::dev_cert(&certs.path().join("phone"));
    let (other_cert, _) = support::dev_cert(&certs.path().join("other"));
    Setup {
        server_cert,
        server_key,
        phone_cert,
        phone_key,
        other_cert,
        certs,
    }
}

fn with_tls(s: &Setup, verify: sip::TlsDialVerify) -> impl FnOnce(&mut sip::SipConfig) {
    let (cert, key) = (s.server_cert.clone(), s.server_key.clone());
    move |c: &mut sip::SipConfig| {
        c.tls_listen = Some("127.0.0.1:0".parse().expect("literal"));
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        c.tls_dial_verify = verify;
    }
}

/// Stops `srv` the way a restart does (its connections close, its
/// bindings stay stored) and starts it again on the same database.
async fn restart(srv: TestServer, tweak: impl FnOnce(&mut sip::SipConfig)) -> TestServer {
    srv.sip.end_all_calls();
    srv.sip.shutdown();
    srv.sip.drain(Duration::from_secs(5)).await;
    let url = store::testing::database_url(srv.dir.path());
    let TestServer { dir, .. } = srv;
    tokio::time::sleep(Duration::from_millis(200)).await;
    TestServer::start_with(dir, &url, tweak).await
}

/// `callee` registers over TLS with a Contact on `listen_port`; the
/// connection is dropped when the returned UA is.
async fn register_over_tls(srv: &TestServer, s: &Setup, callee: &Agent, listen_port: u16) -> Ua {
    let tls = srv.sip.tls_addr().expect("TLS listening");
    let mut b = Ua::tls_listening(
        tls,
        srv.addr,
        &s.server_cert,
        listen_port,
        &callee.username,
        &callee.password,
        REALM,
    )
    .await;
    assert_eq!(b.register(Algorithm::Md5).await.code(), Some(200));
    b
}

/// Waits for the server's connection on `listener` and completes the TLS
/// handshake as the phone; None if the handshake fails.
async fn accept_tls(listener: &TcpListener, s: &Setup) -> Option<Ua> {
    let (tcp, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("the server connects within 5 s")
        .expect("accept");
    let port = listener.local_addr().expect("address").port();
    let tls = support::tls_acceptor(&s.phone_cert, &s.phone_key)
        .accept(tcp)
        .await
        .ok()?;
    // The server's address is only used for Via/Contact of requests we send.
    let server: std::net::SocketAddr = "127.0.0.1:5060".parse().expect("literal");
    Some(Ua::tls_stream(tls, port, server, "phone", "unused", REALM))
}

/// The caller's final answer to its INVITE and how long it took.
async fn final_answer(a: &mut Ua) -> (u16, Duration) {
    let t0 = Instant::now();
    for _ in 0..20 {
        let m = a.recv(10_000).await.expect("an answer");
        match m.code() {
            Some(c) if c >= 200 => return (c, t0.elapsed()),
            Some(_) => continue,
            None => panic!("expected a response, got {:?}", m.start),
        }
    }
    panic!("no final answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_binding_survives_a_restart_and_is_reached_by_a_new_tls_connection() {
    let s = setup();
    let srv = TestServer::start(with_tls(&s, sip::TlsDialVerify::None)).await;
    let callee = srv.agent("Tania Tls").await;
    let caller = srv.agent("Ulises Udp").await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let b = register_over_tls(&srv, &s, &callee, port).await;
    let again = restart(srv, with_tls(&s, sip::TlsDialVerify::None)).await;
    drop(b);
    assert_eq!(again.sip.registered_contacts(), 1);

    let mut a = Ua::udp(again.addr, &caller.username, &caller.password, REALM).await;
    a.invite(&callee.extension, "tls-restart-1").await;
    let mut b = accept_tls(&listener, &s).await.expect("TLS handshake");
    let inv = b.expect_request("INVITE").await;
    assert!(
        inv.header("Via")
            .is_some_and(|v| v.starts_with("SIP/2.0/TLS")),
        "{:?}",
        inv.header("Via")
    );
    // The phone's answers come back on the connection the server opened.
    b.respond(&inv, 180, "Ringing", "tlsB", None).await;
    assert_eq!(a.expect_code(180).await.code(), Some(180));
    b.respond(&inv, 200, "OK", "tlsB", Some(SDP)).await;
    let ok = a.expect_code(200).await;
    a.ack(&ok).await;
    assert_eq!(b.expect_request("ACK").await.method(), Some("ACK"));
    // A second call reuses that connection: no new one is opened.
    let bye = format!(
        "BYE {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: tls-restart-1\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n",
        sip::core::msg::addr_uri(ok.header("Contact").unwrap_or("")),
        a.via(),
        ok.header("From").unwrap_or(""),
        ok.header("To").unwrap_or(""),
    );
    a.send(&bye).await;
    let bye_b = b.expect_request("BYE").await;
    b.respond(&bye_b, 200, "OK", "tlsB", None).await;
    assert_eq!(a.expect_code(200).await.code(), Some(200));
    a.invite(&callee.extension, "tls-restart-2").await;
    let inv2 = b.expect_request("INVITE").await;
    assert_ne!(inv2.call_id(), inv.call_id(), "a new call");
    let inv = inv2;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), listener.accept())
            .await
            .is_err(),
        "a second connection was opened"
    );
    b.respond(&inv, 486, "Busy Here", "tlsB2", None).await;
    assert_eq!(final_answer(&mut a).await.0, 486);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_tls_contact_that_is_gone_fails_the_call_at_once() {
    let s = setup();
    let srv = TestServer::start(with_tls(&s, sip::TlsDialVerify::None)).await;
    let callee = srv.agent("Gina Gone").await;
    let caller = srv.agent("Hugo Here").await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let b = register_over_tls(&srv, &s, &callee, port).await;
    let again = restart(srv, with_tls(&s, sip::TlsDialVerify::None)).await;
    drop(b);
    // The phone is gone: nothing listens on its Contact any more.
    drop(listener);
    assert_eq!(again.sip.registered_contacts(), 1);
    let mut a = Ua::udp(again.addr, &caller.username, &caller.password, REALM).await;
    a.invite(&callee.extension, "tls-gone-1").await;
    let (code, took) = final_answer(&mut a).await;
    assert_eq!(code, 480);
    // Well before the ring timeout (3 s in these tests, 30 s by default).
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(again.finished_calls(1).await.len(), 1);
    // The binding stays: the phone may be back for the next call.
    assert_eq!(again.sip.registered_contacts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_ca_verification_only_a_phone_certificate_from_that_ca_is_accepted() {
    let s = setup();
    let srv = TestServer::start(with_tls(&s, sip::TlsDialVerify::None)).await;
    let callee = srv.agent("Carla Cert").await;
    let caller = srv.agent("Dario Dial").await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let b = register_over_tls(&srv, &s, &callee, port).await;

    // A CA that did not sign the phone's certificate: the handshake fails
    // (the server refuses it) and the caller gets 480 at once.
    let other = sip::TlsDialVerify::Ca(s.other_cert.clone());
    let again = restart(srv, with_tls(&s, other)).await;
    drop(b);
    let mut a = Ua::udp(again.addr, &caller.username, &caller.password, REALM).await;
    a.invite(&callee.extension, "tls-ca-1").await;
    assert!(
        accept_tls(&listener, &s).await.is_none(),
        "the server accepted a certificate its CA did not sign"
    );
    let (code, took) = final_answer(&mut a).await;
    assert_eq!(code, 480);
    assert!(took < Duration::from_secs(2), "took {took:?}");

    // The phone's own certificate as the CA: accepted.
    let trusted = sip::TlsDialVerify::Ca(s.phone_cert.clone());
    let again = restart(again, with_tls(&s, trusted)).await;
    let mut a = Ua::udp(again.addr, &caller.username, &caller.password, REALM).await;
    a.invite(&callee.extension, "tls-ca-2").await;
    let mut b = accept_tls(&listener, &s).await.expect("TLS handshake");
    let inv = b.expect_request("INVITE").await;
    b.respond(&inv, 200, "OK", "caB", Some(SDP)).await;
    assert_eq!(a.expect_code(200).await.code(), Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_file_without_certificates_stops_the_start() {
    let s = setup();
    let empty = s.certs.path().join("empty.pem");
    std::fs::write(&empty, "").expect("write");
    let mut cfg = sip::SipConfig {
        listen: "127.0.0.1:0".parse().expect("literal"),
        ..Default::default()
    };
    with_tls(&s, sip::TlsDialVerify::Ca(empty))(&mut cfg);
    let backend = Arc::new(sip::MemoryBackend::default());
    let err = sip::start(cfg, backend)
        .await
        .err()
        .expect("an empty CA file is refused");
    assert!(err.to_string().contains("no CA certificate"), "{err}");
}

/// The TCP counterpart of the test above: consistent answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_tcp_contact_that_is_gone_fails_the_call_at_once() {
    let srv = TestServer::start(|_| {}).await;
    let callee = srv.agent("Tito Tcp").await;
    let caller = srv.agent("Vera Voz").await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let conn = tokio::net::TcpStream::connect(srv.addr)
        .await
        .expect("connect");
    let mut b = Ua::tcp(
        conn,
        port,
        srv.addr,
        &callee.username,
        &callee.password,
        REALM,
    );
    assert_eq!(b.register(Algorithm::Md5).await.code(), Some(200));
    let again = restart(srv, |_| {}).await;
    drop(b);
    drop(listener);
    let mut a = Ua::udp(again.addr, &caller.username, &caller.password, REALM).await;
    a.invite(&callee.extension, "tcp-gone-1").await;
    let (code, took) = final_answer(&mut a).await;
    assert_eq!(code, 480);
    assert!(took < Duration::from_secs(2), "took {took:?}");
}
