//! A SIP user agent in Rust over WebSocket (subprotocol `sip`), registering
//! and calling the way a browser softphone does; requests to it must come
//! back over its own connection (`.invalid` contact, RFC 5626 flow).

mod support;

use sip::core::digest::Algorithm;
use sip::core::msg;
use std::time::Duration;
use support::ua::{Ua, SDP};
use support::{finish, free_port, TestServer, REALM};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_agent_registers_and_calls_a_sipp_agent() {
    let srv = TestServer::start(|_| {}).await;
    let alice = srv.agent("Web Alice").await;
    let bob = srv.agent("Sipp Bob").await;
    let bob_port = free_port();
    srv.register_with_sipp(&bob, bob_port).await;
    let uas = srv.spawn_sipp("uas_answer.xml", None, bob_port, &[]);

    let mut ua = Ua::ws(
        srv.ws_addr,
        srv.addr,
        &alice.username,
        &alice.password,
        REALM,
    )
    .await;
    let ok = ua.register(Algorithm::Sha256).await;
    assert_eq!(ok.code(), Some(200));
    assert!(ok
        .header("Contact")
        .unwrap_or("")
        .contains(".invalid;transport=ws"));
    assert_eq!(srv.sip.registered_contacts(), 2);

    // INVITE, challenged with 407, ACK it, then INVITE with credentials.
    let target = format!("sip:{}@{REALM}", bob.extension);
    let invite = |ua: &mut Ua, cseq: u32, via: &str, auth: Option<&str>| {
        let mut s = format!(
            "INVITE {target} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: \"Web Alice\" <sip:{u}@{REALM}>;tag=wsA\r\nTo: <{target}>\r\nCall-ID: ws-call-1\r\nCSeq: {cseq} INVITE\r\nContact: {c}\r\nContent-Type: application/sdp\r\n",
            u = ua.user,
            c = ua.contact()
        );
        if let Some(a) = auth {
            s.push_str(&format!("Proxy-Authorization: {a}\r\n"));
        }
        s.push_str(&format!("Content-Length: {}\r\n\r\n{SDP}", SDP.len()));
        s
    };
    let via1 = ua.via();
    let text = invite(&mut ua, 1, &via1, None);
    ua.send(&text).await;
    let ch = ua.expect_code(407).await;
    let ack = format!(
        "ACK {target} SIP/2.0\r\nVia: {via1}\r\nMax-Forwards: 70\r\nFrom: \"Web Alice\" <sip:{}@{REALM}>;tag=wsA\r\nTo: {}\r\nCall-ID: ws-call-1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        ua.user,
        ch.header("To").unwrap_or("")
    );
    ua.send(&ack).await;
    let auth = ua.answer(&ch, Algorithm::Md5, "INVITE", &target);
    let via2 = ua.via();
    let text = invite(&mut ua, 2, &via2, Some(&auth));
    ua.send(&text).await;
    let ok = ua.expect_code(200).await;
    assert!(
        String::from_utf8_lossy(&ok.body).contains("m=audio"),
        "callee SDP relayed"
    );
    let to = ok.header("To").unwrap_or("").to_string();
    let contact =
        msg::addr_uri(ok.header_list("Contact").first().copied().unwrap_or("")).to_string();
    assert!(!contact.contains("0.0.0.0"));
    let in_dialog = |method: &str, cseq: u32, via: &str| {
        format!(
            "{method} {contact} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: \"Web Alice\" <sip:{}@{REALM}>;tag=wsA\r\nTo: {to}\r\nCall-ID: ws-call-1\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
            alice.username
        )
    };
    let v = ua.via();
    ua.send(&in_dialog("ACK", 2, &v)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v = ua.via();
    ua.send(&in_dialog("BYE", 3, &v)).await;
    ua.expect_code(200).await;
    let (ok, out) = finish(uas).await;
    assert!(ok, "sipp callee failed: {out}{}", srv.sipp_errors());
    let rows = srv.finished_calls(1).await;
    assert_eq!(rows[0].disposition.as_deref(), Some("ANSWERED"));
    assert_eq!(rows[0].caller_number, alice.extension);

    // The WebSocket binding dies with the connection.
    drop(ua);
    for _ in 0..50 {
        if srv.sip.registered_contacts() == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("WebSocket binding still there after close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_agent_calls_a_websocket_agent_over_its_flow() {
    let srv = TestServer::start(|_| {}).await;
    let alice = srv.agent("Sipp Alice").await;
    let bob = srv.agent("Web Bob").await;
    let mut ua = Ua::ws(srv.ws_addr, srv.addr, &bob.username, &bob.password, REALM).await;
    assert_eq!(ua.register(Algorithm::Md5).await.code(), Some(200));

    let csv = srv.csv("caller.csv", &[(&alice.username, &alice.password)]);
    let caller = srv.spawn_sipp(
        "uac_call.xml",
        Some(&csv),
        free_port(),
        &["-s", &bob.extension],
    );
    // The INVITE reaches the browser over its WebSocket although its
    // Contact host is `.invalid`.
    let inv = ua.expect_request("INVITE").await;
    assert!(inv.ruri().contains(".invalid"));
    assert!(String::from_utf8_lossy(&inv.body).contains("m=audio"));
    ua.respond(&inv, 180, "Ringing", "wsB", None).await;
    ua.respond(&inv, 200, "OK", "wsB", Some(SDP)).await;
    let ack = ua.expect_request("ACK").await;
    assert_eq!(ack.call_id(), inv.call_id());
    let bye = ua.expect_request("BYE").await;
    ua.respond(&bye, 200, "OK", "wsB", None).await;
    let (ok, out) = finish(caller).await;
    assert!(ok, "sipp caller failed: {out}{}", srv.sipp_errors());
    let rows = srv.finished_calls(1).await;
    assert_eq!(rows[0].disposition.as_deref(), Some("ANSWERED"));
    assert_eq!(rows[0].hangup_cause.as_deref(), Some("caller_bye"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_websocket_agents_call_each_other_and_the_callee_hangs_up() {
    let srv = TestServer::start(|_| {}).await;
    let alice = srv.agent("Web Ana").await;
    let bob = srv.agent("Web Beto").await;
    let mut a = Ua::ws(
        srv.ws_addr,
        srv.addr,
        &alice.username,
        &alice.password,
        REALM,
    )
    .await;
    let mut b = Ua::ws(srv.ws_addr, srv.addr, &bob.username, &bob.password, REALM).await;
    assert_eq!(a.register(Algorithm::Md5).await.code(), Some(200));
    assert_eq!(b.register(Algorithm::Sha256).await.code(), Some(200));

    let target = format!("sip:{}@{REALM}", bob.extension);
    let invite = |ua: &Ua, cseq: u32, via: &str, auth: Option<&str>| {
        let mut s = format!(
            "INVITE {target} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:{u}@{REALM}>;tag=wwA\r\nTo: <{target}>\r\nCall-ID: ws-ws-1\r\nCSeq: {cseq} INVITE\r\nContact: {c}\r\nContent-Type: application/sdp\r\n",
            u = ua.user,
            c = ua.contact()
        );
        if let Some(x) = auth {
            s.push_str(&format!("Proxy-Authorization: {x}\r\n"));
        }
        s.push_str(&format!("Content-Length: {}\r\n\r\n{SDP}", SDP.len()));
        s
    };
    let via = a.via();
    let text = invite(&a, 1, &via, None);
    a.send(&text).await;
    let ch = a.expect_code(407).await;
    let auth = a.answer(&ch, Algorithm::Md5, "INVITE", &target);
    let via = a.via();
    let text = invite(&a, 2, &via, Some(&auth));
    a.send(&text).await;

    let inv = b.expect_request("INVITE").await;
    b.respond(&inv, 180, "Ringing", "wwB", None).await;
    assert_eq!(a.expect_code(180).await.code(), Some(180));
    b.respond(&inv, 200, "OK", "wwB", Some(SDP)).await;
    let ok = a.expect_code(200).await;
    let to = ok.header("To").unwrap_or("").to_string();
    let contact =
        msg::addr_uri(ok.header_list("Contact").first().copied().unwrap_or("")).to_string();
    let via = a.via();
    a.send(&format!(
        "ACK {contact} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:{}@{REALM}>;tag=wwA\r\nTo: {to}\r\nCall-ID: ws-ws-1\r\nCSeq: 2 ACK\r\nContent-Length: 0\r\n\r\n",
        alice.username
    ))
    .await;
    let ack = b.expect_request("ACK").await;

    // The callee hangs up inside its own dialog (its Call-ID, our tags).
    let via = b.via();
    b.send(&format!(
        "BYE {} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        msg::addr_uri(inv.header("Contact").unwrap_or("")),
        ack.header("To").unwrap_or(""),
        ack.header("From").unwrap_or(""),
        ack.call_id()
    ))
    .await;
    assert_eq!(b.expect_code(200).await.code(), Some(200));
    let bye = a.expect_request("BYE").await;
    a.respond(&bye, 200, "OK", "wwA", None).await;
    let rows = srv.finished_calls(1).await;
    assert_eq!(rows[0].disposition.as_deref(), Some("ANSWERED"));
    assert_eq!(rows[0].hangup_cause.as_deref(), Some("callee_bye"));
    assert_eq!(rows[0].callee_number, bob.extension);
}
