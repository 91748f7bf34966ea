//! REGISTER against a real server: sipp (right password, wrong password,
//! stale nonce, unknown user) and a Rust UA (replayed nonce count, which
//! sipp cannot send since it always increments nc; SHA-256, unregister,
//! persistence across a restart, bans, TLS).

mod support;

use sip::core::digest::Algorithm;
use support::ua::{Ua, SDP};
use support::{free_port, TestServer, REALM};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_register_right_wrong_unknown_and_stale() {
    let srv = TestServer::start(|c| c.nonce_lifetime = std::time::Duration::from_secs(2)).await;
    let a = srv.agent("Ana Lopez").await;
    srv.register_with_sipp(&a, free_port()).await;
    let regs = srv
        .services
        .registrations
        .for_username(&a.username)
        .await
        .expect("rows");
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0].transport, "udp");
    assert_eq!(regs[0].user_agent.as_deref(), Some("sipp"));
    let info = srv
        .services
        .sip_accounts
        .by_username(&a.username)
        .await
        .expect("account");
    assert!(info.is_some());

    let wrong = srv.csv("wrong.csv", &[(&a.username, "not-the-password")]);
    let (ok, out) = srv.sipp("reg_fail.xml", &wrong, free_port(), &[]).await;
    assert!(ok, "wrong password must be challenged again: {out}");
    let ghost = srv.csv("ghost.csv", &[("nobody_here", "whatever")]);
    let (ok, out) = srv.sipp("reg_fail.xml", &ghost, free_port(), &[]).await;
    assert!(ok, "unknown user must look like a wrong password: {out}");
    let good = srv.csv("good.csv", &[(&a.username, &a.password)]);
    let (ok, out) = srv.sipp("reg_stale.xml", &good, free_port(), &[]).await;
    assert!(
        ok,
        "expired nonce must give stale=true and then succeed: {out}"
    );
    // The wrong-password scenario must fail against a right password (the test can fail).
    let (ok, _) = srv.sipp("reg_fail.xml", &good, free_port(), &[]).await;
    assert!(!ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_nonce_count_is_refused_and_sha256_works() {
    let srv = TestServer::start(|_| {}).await;
    let a = srv.agent("Bea Diaz").await;
    let mut ua = Ua::udp(srv.addr, &a.username, &a.password, REALM).await;
    let r = ua.register_text(300, None);
    ua.send(&r).await;
    let ch = ua.expect_code(401).await;
    let auth = ua.answer(&ch, Algorithm::Sha256, "REGISTER", &format!("sip:{REALM}"));
    let r = ua.register_text(300, Some(&auth));
    ua.send(&r).await;
    assert_eq!(ua.recv(5_000).await.and_then(|m| m.code()), Some(200));
    // Same Authorization (same nc) in a new transaction: a replay.
    let r = ua.register_text(300, Some(&auth));
    ua.send(&r).await;
    assert_eq!(ua.recv(5_000).await.and_then(|m| m.code()), Some(401));
    // Next nc on the same nonce is fine.
    let auth = ua.answer(&ch, Algorithm::Md5, "REGISTER", &format!("sip:{REALM}"));
    let r = ua.register_text(0, Some(&auth));
    ua.send(&r).await;
    let ok = ua.recv(5_000).await.expect("answer");
    assert_eq!(ok.code(), Some(200));
    assert!(
        ok.header("Contact").is_none(),
        "Expires 0 removed the only binding"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_bindings_survive_a_restart() {
    let srv = TestServer::start(|_| {}).await;
    let a = srv.agent("Carla Ruiz").await;
    srv.register_with_sipp(&a, free_port()).await;
    assert_eq!(srv.sip.registered_contacts(), 1);
    srv.sip.shutdown();
    srv.sip.drain(std::time::Duration::from_secs(5)).await;
    let url = store::testing::database_url(srv.dir.path());
    let TestServer { dir, .. } = srv;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let again = TestServer::start_with(dir, &url, |_| {}).await;
    assert_eq!(again.sip.registered_contacts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_block_the_source() {
    let srv = TestServer::start(|c| c.auth_fail_limit = 3).await;
    let a = srv.agent("Dora Gil").await;
    let mut ua = Ua::udp(srv.addr, &a.username, "wrong-password", REALM).await;
    for _ in 0..3 {
        let r = ua.register(Algorithm::Md5).await;
        assert_eq!(r.code(), Some(401));
    }
    let blocked = srv.sip.blocked_sources();
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].ip.to_string(), "127.0.0.1");
    // Now even the right password gets no answer at all.
    let mut good = Ua::udp(srv.addr, &a.username, &a.password, REALM).await;
    let r = good.register_text(300, None);
    good.send(&r).await;
    assert!(good.recv(1_500).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_over_tls_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
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
    })
    .await;
    let a = srv.agent("Tina Tls").await;
    let tls = srv.sip.tls_addr().expect("TLS listening");
    let mut ua = Ua::tls(tls, srv.addr, &cert, &a.username, &a.password, REALM).await;
    let ok = ua.register(Algorithm::Sha256).await;
    assert_eq!(ok.code(), Some(200));
    for _ in 0..50 {
        let r = srv
            .services
            .registrations
            .for_username(&a.username)
            .await
            .expect("rows");
        if let Some(r) = r.first() {
            assert_eq!(r.transport, "tls");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("TLS registration not stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_registers_over_tcp_and_the_binding_ends_with_the_connection() {
    let srv = TestServer::start(|_| {}).await;
    let a = srv.agent("Tere Tcp").await;
    let csv = srv.csv("tcp.csv", &[(&a.username, &a.password)]);
    let (ok, out) = srv
        .sipp("reg_ok.xml", &csv, free_port(), &["-t", "t1"])
        .await;
    assert!(ok, "REGISTER over TCP failed: {out}");
    // sipp closed its connection on exit: the flow and its binding are gone,
    // and the stored row goes with them.
    for _ in 0..60 {
        let rows = srv
            .services
            .registrations
            .for_username(&a.username)
            .await
            .expect("rows");
        if srv.sip.registered_contacts() == 0 && rows.is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("TCP binding outlived its connection");
}

/// A TCP phone's binding survives a restart although its connection does
/// not: the restarted server reaches it by connecting to its Contact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_binding_survives_a_restart_and_is_reached_by_a_new_connection() {
    let srv = TestServer::start(|_| {}).await;
    let callee = srv.agent("Tomas Vidal").await;
    let caller = srv.agent("Ursula Paz").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
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
    srv.sip.end_all_calls();
    srv.sip.shutdown();
    srv.sip.drain(std::time::Duration::from_secs(5)).await;
    let url = store::testing::database_url(srv.dir.path());
    let TestServer { dir, .. } = srv;
    drop(b);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let again = TestServer::start_with(dir, &url, |_| {}).await;
    assert_eq!(again.sip.registered_contacts(), 1);

    let mut a = Ua::udp(again.addr, &caller.username, &caller.password, REALM).await;
    a.invite(&callee.extension, "tcp-restart-1").await;
    // The server connects to the Contact the phone registered.
    let (stream, _) = tokio::time::timeout(std::time::Duration::from_secs(5), listener.accept())
        .await
        .expect("the server connects within 5 s")
        .expect("accept");
    let mut b = Ua::tcp(
        stream,
        port,
        again.addr,
        &callee.username,
        &callee.password,
        REALM,
    );
    let inv = b.expect_request("INVITE").await;
    b.respond(&inv, 200, "OK", "tcpB", Some(SDP)).await;
    assert_eq!(a.expect_code(200).await.code(), Some(200));
}
