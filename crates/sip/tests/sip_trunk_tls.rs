//! A trunk over TLS: the server opens a TLS connection to the carrier (the
//! carrier's certificate checked against `tls_dial_ca`), registers over it
//! answering a digest challenge, and places an outbound call over the same
//! connection; the carrier's answers and its in-dialog BYE come back on it.
//! The "carrier" is a tokio-rustls server in the test process (Debian's
//! sipp and Kamailio here are built without TLS). The server has no TLS
//! listener: Via and Contact name its advertised host with `transport=tls`.

mod support;

use domain::dialplan::{DialPermission, OutboundLimits, OutboundRoute, Pattern};
use sip::core::digest::{self, Algorithm};
use sip::core::msg::Msg;
use sip::{DialRights, OutboundPolicy, OutboundTrunk, Transport, TrunkRegState, TrunkRegistration};
use std::sync::Arc;
use std::time::Duration;
use support::ua::{Ua, SDP};
use support::{TestServer, REALM};
use tokio::net::TcpListener;

const CARRIER_REALM: &str = "carrier.test";
const SECRET: &str = "carrier-secret-9";
const NUMBER: &str = "612345678";

fn registration(port: u16) -> TrunkRegistration {
    TrunkRegistration {
        key: "1".into(),
        registrar: format!("sip:127.0.0.1:{port}"),
        transport: Transport::Tls,
        aor: format!("sip:trunk1@{CARRIER_REALM}"),
        contact_user: "trunk1".into(),
        auth_username: "trunk1".into(),
        secret: SECRET.into(),
        realm: Some(CARRIER_REALM.into()),
        expires_secs: 300,
        retry_interval_secs: 60,
        max_retries: 0,
        forbidden_retry_secs: 0,
    }
}

fn trunk(port: u16) -> OutboundTrunk {
    OutboundTrunk {
        id: 1,
        name: "carrier".into(),
        host: "127.0.0.1".into(),
        port,
        transport: Transport::Tls,
        auth_username: "trunk1".into(),
        secret: SECRET.into(),
        realm: Some(CARRIER_REALM.into()),
        from_user: Some("34910000000".into()),
        from_domain: Some(CARRIER_REALM.into()),
        send_pai: false,
        max_channels: 2,
        priority: 0,
        active: true,
        // Used only while registration "1" is registered.
        registers: true,
        codecs: Vec::new(),
    }
}

fn policy() -> OutboundPolicy {
    OutboundPolicy {
        routes: vec![OutboundRoute {
            name: "national".into(),
            patterns: vec![Pattern::parse("_[6-9]XXXXXXXX").expect("valid pattern")],
            strip: 0,
            prepend: String::new(),
            trunks: vec![],
        }],
        plan: Default::default(),
        default_rights: DialRights {
            permission: DialPermission::National,
            limits: OutboundLimits::default(),
        },
    }
}

/// Checks `req`'s `header` against the carrier's secret for `nonce`.
fn digest_ok(req: &Msg, header: &str, nonce: &str) -> bool {
    let Some(c) = req.header(header).and_then(digest::parse_authorization) else {
        return false;
    };
    let alg = Algorithm::Md5;
    let ha1 = digest::ha1(alg, "trunk1", CARRIER_REALM, SECRET);
    c.username == "trunk1"
        && c.realm == CARRIER_REALM
        && c.nonce == nonce
        && c.response == digest::expected_response(alg, &ha1, req.method().unwrap_or(""), &c)
}

/// A response to `req` with `extra` headers (after Via/From/To/Call-ID/CSeq).
fn response(req: &Msg, code: u16, reason: &str, extra: &[(&str, String)]) -> String {
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for (n, v) in &req.headers {
        if matches!(n.as_str(), "Via" | "From" | "To" | "Call-ID" | "CSeq") {
            s.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    for (n, v) in extra {
        s.push_str(&format!("{n}: {v}\r\n"));
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

async fn wait_registered(srv: &TestServer) {
    for _ in 0..100 {
        let st = srv.sip.trunk_statuses();
        if st
            .first()
            .is_some_and(|s| matches!(s.state, TrunkRegState::Registered { .. }))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not registered: {:?}", srv.sip.trunk_statuses());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_trunk_registers_with_digest_and_carries_a_call_over_its_connection() {
    let certs = tempfile::tempdir().expect("temp dir");
    let (carrier_cert, carrier_key) = support::dev_cert(&certs.path().join("carrier"));
    let ca = carrier_cert.clone();
    // No TLS listener of our own; the carrier's certificate is checked.
    let srv = TestServer::start(move |c| c.tls_dial_verify = sip::TlsDialVerify::Ca(ca)).await;
    let agent = srv.agent("Olga Outbound").await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let advertised = format!("127.0.0.1:{}", srv.addr.port());

    srv.sip
        .set_trunk_registrations(vec![registration(port)])
        .await
        .expect("valid registration");
    srv.sip
        .set_outbound_trunks(vec![trunk(port)], policy())
        .await
        .expect("valid trunk");

    // (1) REGISTER over the TLS connection the server opened.
    let (tcp, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("the server connects within 5 s")
        .expect("accept");
    let tls = support::tls_acceptor(&carrier_cert, &carrier_key)
        .accept(tcp)
        .await
        .expect("TLS handshake");
    let mut carrier = Ua::tls_stream(tls, port, srv.addr, "carrier", "unused", CARRIER_REALM);
    let reg = carrier.expect_request("REGISTER").await;
    let via = reg.header("Via").unwrap_or_default().to_string();
    assert!(
        via.starts_with(&format!("SIP/2.0/TLS {advertised};")),
        "{via}"
    );
    let contact = reg.header("Contact").unwrap_or_default().to_string();
    assert!(
        contact.starts_with(&format!("<sip:trunk1@{advertised};transport=tls>")),
        "{contact}"
    );
    assert!(reg.header("Authorization").is_none());
    let nonce = "tls-nonce-1";
    let challenge = digest::challenges(CARRIER_REALM, nonce, false, false)
        .into_iter()
        .next()
        .expect("a challenge");
    carrier
        .send(&response(
            &reg,
            401,
            "Unauthorized",
            &[("WWW-Authenticate", challenge)],
        ))
        .await;
    let reg2 = carrier.expect_request("REGISTER").await;
    assert!(
        digest_ok(&reg2, "Authorization", nonce),
        "{:?}",
        reg2.header("Authorization")
    );
    assert_eq!(reg2.call_id(), reg.call_id(), "same binding");
    carrier
        .send(&response(
            &reg2,
            200,
            "OK",
            &[("Contact", format!("{contact};expires=300"))],
        ))
        .await;
    wait_registered(&srv).await;

    // (2) The agent calls out; the INVITE comes over the same connection.
    let mut a = Ua::udp(srv.addr, &agent.username, &agent.password, REALM).await;
    a.invite(NUMBER, "tls-trunk-call-1").await;
    let inv = carrier.expect_request("INVITE").await;
    assert_eq!(
        inv.ruri(),
        format!("sip:{NUMBER}@127.0.0.1:{port};transport=tls")
    );
    let via = inv.header("Via").unwrap_or_default();
    assert!(via.starts_with("SIP/2.0/TLS "), "{via}");
    let contact = inv.header("Contact").unwrap_or_default();
    assert!(contact.contains(";transport=tls"), "{contact}");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), listener.accept())
            .await
            .is_err(),
        "a second connection was opened"
    );
    carrier
        .respond(&inv, 180, "Ringing", "carrierT", None)
        .await;
    assert_eq!(a.expect_code(180).await.code(), Some(180));
    carrier
        .respond(&inv, 200, "OK", "carrierT", Some(SDP))
        .await;
    let ok = a.expect_code(200).await;
    a.ack(&ok).await;
    assert_eq!(carrier.expect_request("ACK").await.method(), Some("ACK"));

    // The customer hangs up: the carrier's BYE over the same connection.
    let our_contact = sip::core::msg::addr_uri(contact).to_string();
    let bye = format!(
        "BYE {our_contact} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:{port};branch=z9hG4bKcarrierbye1\r\nMax-Forwards: 70\r\nFrom: {};tag=carrierT\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        inv.header("To").unwrap_or_default(),
        inv.header("From").unwrap_or_default(),
        inv.call_id(),
    );
    carrier.send(&bye).await;
    let bye_a = a.expect_request("BYE").await;
    a.respond(&bye_a, 200, "OK", "unused", None).await;
    let ok = carrier.expect_code(200).await;
    assert_eq!(ok.cseq().1, "BYE");

    let rows = srv.finished_calls(1).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].direction, "outbound");
    assert_eq!(rows[0].hangup_cause.as_deref(), Some("callee_bye"));
    assert_eq!(srv.sip.trunk_channels_in_use(1), 0, "channel released");
    srv.sip.shutdown();
}

/// Under `ca` the carrier's certificate must name the trunk's host: one
/// for `localhost` is refused when the trunk names 127.0.0.1 (the
/// registration fails without a REGISTER sent), and accepted when the
/// trunk names `localhost`, which is also sent as SNI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_carrier_certificate_must_name_the_trunk_host() {
    let certs = tempfile::tempdir().expect("temp dir");
    let c =
        centralita::devcert::generate(&certs.path().join("carrier"), &["localhost".into()], false)
            .expect("development certificate");
    let (carrier_cert, carrier_key) = (c.cert_path, c.key_path);
    let ca = carrier_cert.clone();
    let srv = TestServer::start(move |c| c.tls_dial_verify = sip::TlsDialVerify::Ca(ca)).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let acceptor = support::tls_acceptor(&carrier_cert, &carrier_key);

    srv.sip
        .set_trunk_registrations(vec![registration(port)])
        .await
        .expect("valid registration");
    let (tcp, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("the server connects within 5 s")
        .expect("accept");
    assert!(
        acceptor.accept(tcp).await.is_err(),
        "the server went on with a certificate for another name"
    );
    let mut failed = false;
    for _ in 0..100 {
        if let Some(s) = srv.sip.trunk_statuses().first() {
            if matches!(s.state, TrunkRegState::Failed { .. }) {
                failed = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(failed, "{:?}", srv.sip.trunk_statuses());

    let mut by_name = registration(port);
    by_name.registrar = format!("sip:localhost:{port}");
    srv.sip
        .set_trunk_registrations(vec![by_name])
        .await
        .expect("valid registration");
    let (tcp, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("the server connects again")
        .expect("accept");
    let tls = acceptor.accept(tcp).await.expect("TLS handshake");
    assert_eq!(tls.get_ref().1.server_name(), Some("localhost"), "SNI");
    let mut carrier = Ua::tls_stream(tls, port, srv.addr, "carrier", "unused", CARRIER_REALM);
    let mut reg = carrier.expect_request("REGISTER").await;
    if reg.header("Expires") == Some("0") {
        // The old binding is removed first (its REGISTER was sent, so it
        // may exist), over the same connection: same address.
        assert_eq!(reg.ruri(), format!("sip:127.0.0.1:{port}"));
        carrier.send(&response(&reg, 200, "OK", &[])).await;
        reg = carrier.expect_request("REGISTER").await;
    }
    assert_eq!(reg.ruri(), format!("sip:localhost:{port}"));
    assert_ne!(reg.header("Expires"), Some("0"));
    carrier.send(&response(&reg, 200, "OK", &[])).await;
    wait_registered(&srv).await;
    srv.sip.shutdown();
}

/// *Test connection* of a TLS trunk: an OPTIONS over TLS, the carrier's
/// certificate checked as for its calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_trunk_is_probed_over_tls() {
    use domain::Engine;
    let certs = tempfile::tempdir().expect("temp dir");
    let (carrier_cert, carrier_key) = support::dev_cert(&certs.path().join("carrier"));
    let ca = carrier_cert.clone();
    let srv = TestServer::start(move |c| c.tls_dial_verify = sip::TlsDialVerify::Ca(ca)).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let acceptor = support::tls_acceptor(&carrier_cert, &carrier_key);
    let server = srv.addr;
    let carrier = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let tls = acceptor.accept(tcp).await.expect("TLS handshake");
        let mut c = Ua::tls_stream(tls, port, server, "carrier", "unused", CARRIER_REALM);
        let opt = c.expect_request("OPTIONS").await;
        let via = opt.header("Via").unwrap_or_default().to_string();
        c.send(&response(&opt, 200, "OK", &[])).await;
        via
    });
    let a = srv
        .sip
        .probe("127.0.0.1".into(), port, "tls")
        .await
        .expect("an answer");
    assert_eq!((a.status, a.reason.as_str()), (200, "OK"));
    let via = carrier.await.expect("the carrier");
    assert!(via.starts_with("SIP/2.0/TLS "), "{via}");
    srv.sip.shutdown();
}

/// A customer's call from the carrier comes over the TLS connection the
/// registration opened, to the registered Contact: recognised as the
/// trunk's, routed by its DID (the To user) to the agent, answered over
/// that connection; the carrier's ACK and BYE follow on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_from_the_carrier_comes_over_the_registration_connection() {
    use domain::dids::{DidNumber, DidTarget, InboundRoute, InboundRoutes};
    let certs = tempfile::tempdir().expect("temp dir");
    let (carrier_cert, carrier_key) = support::dev_cert(&certs.path().join("carrier"));
    let ca = carrier_cert.clone();
    let srv = TestServer::start(move |c| c.tls_dial_verify = sip::TlsDialVerify::Ca(ca)).await;
    let agent = srv.agent("Ines Inbound").await;
    let mut b = Ua::udp(srv.addr, &agent.username, &agent.password, REALM).await;
    assert_eq!(b.register(Algorithm::Md5).await.code(), Some(200));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let did = "34910111222";
    srv.sip
        .set_inbound(
            vec![sip::InboundTrunkSpec {
                id: 1,
                name: "carrier".into(),
                sources: vec![format!("127.0.0.1:{port}")],
                digest: None,
                contact_user: Some("trunk1".into()),
            }],
            Arc::new(InboundRoutes::new(vec![InboundRoute {
                did_id: 1,
                number: DidNumber::parse(did).expect("a DID"),
                trunk_id: Some(1),
                target: DidTarget::Agent {
                    extension: agent.extension.clone(),
                },
            }])),
        )
        .await;
    srv.sip
        .set_trunk_registrations(vec![registration(port)])
        .await
        .expect("valid registration");
    let (tcp, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("the server connects within 5 s")
        .expect("accept");
    let tls = support::tls_acceptor(&carrier_cert, &carrier_key)
        .accept(tcp)
        .await
        .expect("TLS handshake");
    let mut carrier = Ua::tls_stream(tls, port, srv.addr, "carrier", "unused", CARRIER_REALM);
    let reg = carrier.expect_request("REGISTER").await;
    let contact = sip::core::msg::addr_uri(reg.header("Contact").unwrap_or_default()).to_string();
    carrier.send(&response(&reg, 200, "OK", &[])).await;
    wait_registered(&srv).await;

    let invite = format!(
        "INVITE {contact} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:{port};branch=z9hG4bKcarrierinv1\r\nMax-Forwards: 70\r\nFrom: <sip:600111222@{CARRIER_REALM}>;tag=cust1\r\nTo: <sip:{did}@{CARRIER_REALM}>\r\nCall-ID: carrier-call-1\r\nCSeq: 1 INVITE\r\nContact: <sip:carrier@127.0.0.1:{port};transport=tls>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    carrier.send(&invite).await;
    let inv_b = b.expect_request("INVITE").await;
    b.respond(&inv_b, 200, "OK", "agentB", Some(SDP)).await;
    let ok = carrier.expect_code(200).await;
    assert_eq!(ok.call_id(), "carrier-call-1");
    let to = ok.header("To").unwrap_or_default().to_string();
    let ours = sip::core::msg::addr_uri(ok.header("Contact").unwrap_or_default()).to_string();
    assert!(ours.contains(";transport=tls"), "{ours}");
    let in_dialog = |method: &str, cseq: u32, branch: &str| {
        format!(
            "{method} {ours} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:{port};branch={branch}\r\nMax-Forwards: 70\r\nFrom: <sip:600111222@{CARRIER_REALM}>;tag=cust1\r\nTo: {to}\r\nCall-ID: carrier-call-1\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    carrier
        .send(&in_dialog("ACK", 1, "z9hG4bKcarrierack1"))
        .await;
    assert_eq!(b.expect_request("ACK").await.method(), Some("ACK"));
    carrier
        .send(&in_dialog("BYE", 2, "z9hG4bKcarrierbye2"))
        .await;
    let bye_b = b.expect_request("BYE").await;
    b.respond(&bye_b, 200, "OK", "agentB", None).await;
    let ok = carrier.expect_code(200).await;
    assert_eq!(ok.cseq().1, "BYE");
    let rows = srv.finished_calls(1).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].direction, "inbound");
    srv.sip.shutdown();
}
