//! Two flows of one relay (Alice's and Bob's browsers) with a proxy in
//! between played by hand: what each side receives, message by message.

use super::*;

fn limits() -> Limits {
    Limits::default()
}

fn flow(id: u64, port: u16) -> FlowCore {
    let local: SocketAddr = ([127, 0, 0, 1], port).into();
    FlowCore::new(id, UpTransport::Udp, local, false, limits())
}

/// Strictly when it can, else framing only (the PBX's quoted parameters).
fn parse(b: &[u8]) -> Msg {
    Msg::parse(b, &limits())
        .ok()
        .or_else(|| lenient_parse(b, &limits()))
        .expect("relayed messages parse")
}

fn to_upstream(o: Outcome) -> Msg {
    match o.send {
        Some(Action::ToUpstream(b)) => parse(&b),
        other => panic!(
            "expected a message to the PBX, got {other:?} ({:?})",
            o.refused
        ),
    }
}

fn to_browser(o: Outcome) -> Msg {
    match o.send {
        Some(Action::ToBrowser(b)) => parse(&b),
        other => panic!(
            "expected a message to the browser, got {other:?} ({:?})",
            o.refused
        ),
    }
}

fn text(s: &str) -> Vec<u8> {
    s.replace('\n', "\r\n").into_bytes()
}

const REGISTER: &str = "REGISTER sip:pbx.test SIP/2.0
Via: SIP/2.0/WSS abc.invalid;branch=z9hG4bKreg1
Max-Forwards: 69
From: <sip:1000@pbx.test>;tag=r1
To: <sip:1000@pbx.test>
Call-ID: reg-1
CSeq: 1 REGISTER
Contact: <sip:k7x@abc.invalid;transport=ws>;+sip.ice;reg-id=1;+sip.instance=\"<urn:uuid:a-1>\";expires=600
Expires: 600
User-Agent: JsSIP 3.13.8
Content-Length: 0

";

/// The PBX's answer to the REGISTER it got (`sent`): Via and Contact copied.
fn pbx_answer(sent: &Msg, status: &str, extra: &str) -> Vec<u8> {
    let mut s = format!("SIP/2.0 {status}\r\n");
    for v in sent.header_list("Via") {
        s.push_str(&format!("Via: {v}\r\n"));
    }
    for h in ["From", "Call-ID", "CSeq"] {
        s.push_str(&format!("{h}: {}\r\n", sent.header(h).unwrap_or("")));
    }
    s.push_str(&format!(
        "To: {};tag=pbx\r\n",
        sent.header("To").unwrap_or("")
    ));
    s.push_str(extra);
    s.push_str("Content-Length: 0\r\n\r\n");
    s.into_bytes()
}

#[test]
fn sent_by_is_the_socket_or_the_advertised_host_with_the_sockets_port() {
    let v4: SocketAddr = ([10, 0, 0, 5], 40_001).into();
    let v6: SocketAddr = (std::net::Ipv6Addr::LOCALHOST, 40_002).into();
    assert_eq!(sent_by(v4, None), "10.0.0.5:40001");
    assert_eq!(sent_by(v6, None), "[::1]:40002");
    assert_eq!(sent_by(v4, Some("")), "10.0.0.5:40001");
    assert_eq!(
        sent_by(v4, Some("relay.example.test")),
        "relay.example.test:40001"
    );
    assert_eq!(sent_by(v4, Some("203.0.113.9")), "203.0.113.9:40001");
    assert_eq!(sent_by(v4, Some("2001:db8::9")), "[2001:db8::9]:40001");
    assert_eq!(sent_by(v6, Some("[2001:db8::9]")), "[2001:db8::9]:40002");
}

/// `relay.advertised_host`: Via sent-by, Contact and Record-Route toward
/// the PBX name it (with the socket's port); the PBX's answers and
/// requests to that Contact still find the flow (by its `crl` mark), and
/// the browser sees its own Contact and Via only.
#[test]
fn an_advertised_host_is_written_toward_the_pbx() {
    let local: SocketAddr = ([10, 0, 0, 5], 40_001).into();
    let mut a = FlowCore::new(1, UpTransport::Udp, local, false, limits())
        .with_advertised_host(local, Some("relay.example.test"));
    let out = to_upstream(a.from_browser(&text(REGISTER)));
    assert!(
        out.header_list("Via")[0]
            .starts_with("SIP/2.0/UDP relay.example.test:40001;rport;branch=z9hG4bKcrl1x"),
        "{:?}",
        out.header_list("Via")
    );
    assert!(!String::from_utf8_lossy(&out.to_bytes()).contains("10.0.0.5"));
    assert_eq!(
        out.header("Contact"),
        Some(
            "<sip:k7x@relay.example.test:40001;transport=udp;crl=1>;+sip.ice;+sip.instance=\"<urn:uuid:a-1>\";expires=600"
        )
    );
    let ok = pbx_answer(
        &out,
        "200 OK",
        "Contact: <sip:k7x@relay.example.test:40001;transport=udp;crl=1>;expires=300\r\n",
    );
    let back = to_browser(a.from_upstream(&ok));
    assert_eq!(back.code(), Some(200));
    assert_eq!(
        back.header("Contact"),
        Some("<sip:k7x@abc.invalid;transport=ws>;expires=300")
    );
    assert_eq!(
        back.header_list("Via"),
        ["SIP/2.0/WSS abc.invalid;branch=z9hG4bKreg1"]
    );
    // An INVITE from the PBX to that Contact reaches the browser's own URI.
    let invite = text(
        "INVITE sip:k7x@relay.example.test:40001;transport=udp;crl=1 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKpbxadv1
Max-Forwards: 70
From: <sip:2000@pbx.test>;tag=p1
To: <sip:1000@pbx.test>
Call-ID: adv-1
CSeq: 1 INVITE
Contact: <sip:2000@192.0.2.1:5060>
Content-Length: 0

",
    );
    let down = to_browser(a.from_upstream(&invite));
    assert_eq!(down.ruri(), "sip:k7x@abc.invalid;transport=ws");
    let rr = down.header_list("Record-Route");
    assert!(
        rr.iter().any(|r| r.contains("relay.example.test:40001")),
        "{rr:?}"
    );
}

#[test]
fn register_contact_points_at_the_flow_and_comes_back_as_the_browsers() {
    let mut a = flow(1, 40_001);
    let out = to_upstream(a.from_browser(&text(REGISTER)));
    // Our Via on top, the browser's below; Max-Forwards decremented.
    let vias = out.header_list("Via");
    assert!(vias[0].starts_with("SIP/2.0/UDP 127.0.0.1:40001;rport;branch=z9hG4bKcrl1x"));
    assert_eq!(vias[1], "SIP/2.0/WSS abc.invalid;branch=z9hG4bKreg1");
    assert_eq!(out.header("Max-Forwards"), Some("68"));
    // The Contact is ours (reg-id gone, the rest of the parameters kept);
    // the Request-URI (digest `uri=`) is untouched.
    assert_eq!(
        out.header("Contact"),
        Some(
            "<sip:k7x@127.0.0.1:40001;transport=udp;crl=1>;+sip.ice;+sip.instance=\"<urn:uuid:a-1>\";expires=600"
        )
    );
    assert_eq!(out.ruri(), "sip:pbx.test");

    // The challenge passes untouched but for our Via.
    let challenge = "WWW-Authenticate: Digest realm=\"pbx.test\", nonce=\"n1\", qop=\"auth\"\r\n";
    let back = to_browser(a.from_upstream(&pbx_answer(&out, "401 Unauthorized", challenge)));
    assert_eq!(back.code(), Some(401));
    assert_eq!(
        back.header("WWW-Authenticate"),
        Some("Digest realm=\"pbx.test\", nonce=\"n1\", qop=\"auth\"")
    );
    assert_eq!(
        back.header_list("Via"),
        ["SIP/2.0/WSS abc.invalid;branch=z9hG4bKreg1"]
    );

    // The 200 lists our contact: the browser sees its own, and the
    // registration is reported.
    let ok = pbx_answer(
        &out,
        "200 OK",
        // Kamailio's GRUU parameters hold a quoted `;` (RFC 5627).
        "Contact: <sip:k7x@127.0.0.1:40001;transport=udp;crl=1>;expires=300;temp-gruu=\"sip:uloc-1@pbx.test;gr\"\r\n",
    );
    assert!(Msg::parse(&ok, &limits()).is_ok());
    let o = a.from_upstream(&ok);
    assert_eq!(
        o.reg,
        Some(RegChange {
            user: "1000".into(),
            expires: 300,
            contact: "sip:k7x@abc.invalid;transport=ws".into(),
            user_agent: Some("JsSIP 3.13.8".into()),
        })
    );
    let back = to_browser(o);
    assert_eq!(
        back.header("Contact"),
        Some("<sip:k7x@abc.invalid;transport=ws>;expires=300;temp-gruu=\"sip:uloc-1@pbx.test;gr\"")
    );
}

#[test]
fn call_between_two_browsers_through_a_record_routing_proxy() {
    let mut a = flow(1, 40_001);
    let mut b = flow(2, 40_002);
    // Bob's browser registered: the flow knows his contact.
    let reg_b = text(
        &REGISTER
            .replace("1000", "1001")
            .replace("k7x", "b9y")
            .replace("abc.invalid", "bob.invalid"),
    );
    to_upstream(b.from_browser(&reg_b));

    let invite = text(
        "INVITE sip:1001@pbx.test SIP/2.0
Via: SIP/2.0/WS abc.invalid;branch=z9hG4bKinv1
Max-Forwards: 70
From: <sip:1000@pbx.test>;tag=a1
To: <sip:1001@pbx.test>
Call-ID: call-1
CSeq: 2 INVITE
Contact: <sip:k7x@abc.invalid;transport=ws;ob>
Content-Type: application/sdp
Content-Length: 5

v=0
",
    );
    let up = to_upstream(a.from_browser(&invite));
    let rr = up.header_list("Record-Route");
    assert_eq!(
        rr,
        [
            "<sip:127.0.0.1:40001;transport=udp;lr;crl=1>",
            "<sip:relay.invalid;transport=ws;lr;crl=1>"
        ]
    );
    assert_eq!(up.body, b"v=0\r\n");
    // The proxy: record-routes, looks Bob up (his contact at flow 2), relays.
    let mut p = up.clone();
    p.start = Start::Request {
        method: "INVITE".into(),
        uri: "sip:b9y@127.0.0.1:40002;transport=udp;crl=2".into(),
    };
    push_top(
        &mut p,
        "Via",
        "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKproxy1".into(),
    );
    push_top(&mut p, "Record-Route", "<sip:127.0.0.1:5060;lr>".into());
    let at_b = to_browser(b.from_upstream(&p.to_bytes()));
    // Bob's own Contact as the Request-URI; our browser-side entries on top.
    assert_eq!(at_b.ruri(), "sip:b9y@bob.invalid;transport=ws");
    assert_eq!(
        at_b.header_list("Record-Route"),
        [
            "<sip:relay.invalid;transport=ws;lr;crl=2>",
            "<sip:127.0.0.1:40002;transport=udp;lr;crl=2>",
            "<sip:127.0.0.1:5060;lr>",
            "<sip:127.0.0.1:40001;transport=udp;lr;crl=1>",
            "<sip:relay.invalid;transport=ws;lr;crl=1>"
        ]
    );
    assert!(at_b.header_list("Via")[0].starts_with("SIP/2.0/WS relay.invalid;branch=z9hG4bKcrl2x"));
    // Alice's Contact, as Bob sees it, is flow 1's address.
    assert_eq!(
        at_b.header("Contact"),
        Some("<sip:k7x@127.0.0.1:40001;transport=udp;crl=1>")
    );

    // Bob answers: his Contact is rewritten, our Via comes off.
    let mut ok = msg::response(&at_b, 200, "OK", Some("b1"));
    for r in at_b.header_list("Record-Route") {
        ok.headers.push(("Record-Route".into(), r.to_string()));
    }
    ok.headers.push((
        "Contact".into(),
        "<sip:b9y@bob.invalid;transport=ws>".into(),
    ));
    let up_ok = to_upstream(b.from_browser(&ok.to_bytes()));
    assert_eq!(
        up_ok.header("Contact"),
        Some("<sip:b9y@127.0.0.1:40002;transport=udp;crl=2>")
    );
    assert_eq!(up_ok.top_branch(), "z9hG4bKproxy1");
    // The proxy takes its Via off; Alice's flow takes its own off.
    let mut p_ok = up_ok.clone();
    pop_top(&mut p_ok, "Via");
    let at_a = to_browser(a.from_upstream(&p_ok.to_bytes()));
    assert_eq!(
        at_a.header_list("Via"),
        ["SIP/2.0/WS abc.invalid;branch=z9hG4bKinv1"]
    );

    // Alice's BYE with her route set (Record-Route reversed): flow 1 pops
    // its entries, the proxy's and flow 2's stay.
    let mut route: Vec<&str> = at_a.header_list("Record-Route");
    route.reverse();
    let mut bye = String::from(
        "BYE sip:b9y@127.0.0.1:40002;transport=udp;crl=2 SIP/2.0\r\nVia: SIP/2.0/WS abc.invalid;branch=z9hG4bKbye1\r\nMax-Forwards: 70\r\n",
    );
    for r in &route {
        bye.push_str(&format!("Route: {r}\r\n"));
    }
    bye.push_str("From: <sip:1000@pbx.test>;tag=a1\r\nTo: <sip:1001@pbx.test>;tag=b1\r\nCall-ID: call-1\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n");
    let up_bye = to_upstream(a.from_browser(bye.as_bytes()));
    assert_eq!(
        up_bye.header_list("Route"),
        [
            "<sip:127.0.0.1:5060;lr>",
            "<sip:127.0.0.1:40002;transport=udp;lr;crl=2>",
            "<sip:relay.invalid;transport=ws;lr;crl=2>"
        ]
    );
    // Through the proxy (loose_route pops its entry) to flow 2.
    let mut p_bye = up_bye.clone();
    pop_top(&mut p_bye, "Route");
    push_top(
        &mut p_bye,
        "Via",
        "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKproxy2".into(),
    );
    let at_b = to_browser(b.from_upstream(&p_bye.to_bytes()));
    assert_eq!(at_b.ruri(), "sip:b9y@bob.invalid;transport=ws");
    assert!(at_b.header("Route").is_none());
}

#[test]
fn hops_loops_and_garbage_are_answered_or_dropped() {
    let mut a = flow(1, 40_001);
    // Max-Forwards 0: 483 back to the browser.
    let zero = text(&REGISTER.replace("Max-Forwards: 69", "Max-Forwards: 0"));
    let o = a.from_browser(&zero);
    assert_eq!(to_browser(o).code(), Some(483));

    // The same request coming back to the same side: 482.
    let out = to_upstream(a.from_browser(&text(REGISTER)));
    let mut looped = out.clone();
    // Whoever sent it back put its own Via on top.
    push_top(
        &mut looped,
        "Via",
        "SIP/2.0/WS other.invalid;branch=z9hG4bKelse".into(),
    );
    let o = a.from_browser(&looped.to_bytes());
    let r = to_browser(o);
    assert_eq!(r.code(), Some(482));

    // Malformed request with enough headers: 400 to the sender.
    let bad = text(
        "INVITE sip:1001@pbx.test SIP/2.0
Via: SIP/2.0/WS abc.invalid;branch=z9hG4bKbad
From: <sip:1000@pbx.test>;tag=x
To: <sip:1001@pbx.test>
Call-ID: bad-1
CSeq: 1 BYE
Content-Length: 0

",
    );
    let r = to_browser(a.from_browser(&bad));
    assert_eq!(r.code(), Some(400));
    assert_eq!(r.call_id(), "bad-1");
    // From the PBX side the answer goes back to the PBX.
    match a.from_upstream(&bad).send {
        Some(Action::ToUpstream(b)) => assert!(b.starts_with(b"SIP/2.0 400 ")),
        other => panic!("{other:?}"),
    }
    // Garbage and responses that are not ours: dropped, nothing sent.
    for junk in [
        &b"\x00\xff garbage"[..],
        b"SIP/2.0 200 OK\r\n\r\n",
        b"\r\n\r\n",
    ] {
        let o = a.from_browser(junk);
        assert!(o.send.is_none() && o.refused.is_some());
    }
    let foreign = pbx_answer(&parse(&text(REGISTER)), "200 OK", "");
    let o = a.from_upstream(&foreign);
    assert!(o.send.is_none(), "a response whose top Via is not ours");
}

#[test]
fn cancel_and_failure_ack_get_the_branch_of_their_invite() {
    let mut a = flow(3, 40_003);
    let raw = "INVITE sip:1001@pbx.test SIP/2.0
Via: SIP/2.0/WS abc.invalid;branch=z9hG4bKinv9
From: <sip:1000@pbx.test>;tag=a9
To: <sip:1001@pbx.test>
Call-ID: c9
CSeq: 5 INVITE
Content-Length: 0

";
    let inv = text(raw);
    let cancel = text(
        &raw.replace("INVITE sip", "CANCEL sip")
            .replace("5 INVITE", "5 CANCEL"),
    );
    // The ACK of a failure: same top Via, now with the To tag.
    let ack = text(
        &raw.replace("INVITE sip", "ACK sip")
            .replace("5 INVITE", "5 ACK")
            .replace("<sip:1001@pbx.test>\n", "<sip:1001@pbx.test>;tag=b9\n"),
    );
    let i = to_upstream(a.from_browser(&inv));
    let c = to_upstream(a.from_browser(&cancel));
    let k = to_upstream(a.from_browser(&ack));
    assert_eq!(k.header("To"), Some("<sip:1001@pbx.test>;tag=b9"));
    assert_eq!(i.top_branch(), c.top_branch());
    assert_eq!(i.top_branch(), k.top_branch());
    assert!(i.top_branch().starts_with("z9hG4bKcrl3x"));
}

/// Every prefix of real messages, and copies with bytes changed, go
/// through both directions without a panic (answered, relayed or dropped).
#[test]
fn truncated_and_mangled_messages_never_panic() {
    let mut a = flow(7, 40_007);
    let register = text(REGISTER);
    let out = to_upstream(a.from_browser(&register));
    let ok = pbx_answer(
        &out,
        "200 OK",
        "Contact: <sip:k7x@127.0.0.1:40007;transport=udp;crl=7>;expires=60;temp-gruu=\"sip:x@y;gr\"\r\n",
    );
    let samples = [register, out.to_bytes(), ok];
    let mut seed: u32 = 12_345;
    for sample in &samples {
        for cut in 0..=sample.len() {
            let _ = a.from_browser(&sample[..cut]);
            let _ = a.from_upstream(&sample[..cut]);
        }
        for _ in 0..300 {
            let mut m = sample.clone();
            for _ in 0..3 {
                // A small linear congruential generator: reproducible.
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let i = (seed as usize >> 8) % m.len();
                m[i] = (seed >> 16) as u8;
            }
            let _ = a.from_browser(&m);
            let _ = a.from_upstream(&m);
        }
    }
}

/// Alice (flow 1) calls Bob (flow 2) through a record-routing proxy played
/// by hand; returns both flows, the INVITE as flow 1 sent it to the proxy
/// and as Bob got it.
fn invite_through_the_proxy() -> (FlowCore, FlowCore, Msg, Msg) {
    let mut a = flow(1, 40_001);
    let mut b = flow(2, 40_002);
    let reg_b = text(
        &REGISTER
            .replace("1000", "1001")
            .replace("k7x", "b9y")
            .replace("abc.invalid", "bob.invalid"),
    );
    to_upstream(b.from_browser(&reg_b));
    let invite = text(
        "INVITE sip:1001@pbx.test SIP/2.0
Via: SIP/2.0/WS abc.invalid;branch=z9hG4bKinv1
Max-Forwards: 70
From: <sip:1000@pbx.test>;tag=a1
To: <sip:1001@pbx.test>
Call-ID: call-1
CSeq: 2 INVITE
Contact: <sip:k7x@abc.invalid;transport=ws;ob>
Content-Length: 0

",
    );
    let up = to_upstream(a.from_browser(&invite));
    let mut p = up.clone();
    p.start = Start::Request {
        method: "INVITE".into(),
        uri: "sip:b9y@127.0.0.1:40002;transport=udp;crl=2".into(),
    };
    push_top(
        &mut p,
        "Via",
        "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKproxy1".into(),
    );
    push_top(&mut p, "Record-Route", "<sip:127.0.0.1:5060;lr>".into());
    let at_b = to_browser(b.from_upstream(&p.to_bytes()));
    (a, b, up, at_b)
}

fn own(r: &OwnRequest) -> (Side, Msg) {
    match &r.send {
        Action::ToUpstream(b) => (Side::Upstream, parse(b)),
        Action::ToBrowser(b) => (Side::Browser, parse(b)),
    }
}

#[test]
fn a_flow_hangs_up_its_answered_call_with_a_bye_each_way() {
    let (mut a, mut b, _, at_b) = invite_through_the_proxy();
    let mut ok = msg::response(&at_b, 200, "OK", Some("b1"));
    for r in at_b.header_list("Record-Route") {
        ok.headers.push(("Record-Route".into(), r.to_string()));
    }
    ok.headers.push((
        "Contact".into(),
        "<sip:b9y@bob.invalid;transport=ws>".into(),
    ));
    let up_ok = to_upstream(b.from_browser(&ok.to_bytes()));
    let mut p_ok = up_ok.clone();
    pop_top(&mut p_ok, "Via");
    to_browser(a.from_upstream(&p_ok.to_bytes()));
    assert!(a.knows_dialog("call-1") && b.knows_dialog("call-1"));

    // From Bob's flow, where the caller is on the PBX's side.
    let reqs = b.hang_up("call-1");
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    let (side, to_bob) = own(&reqs[0]);
    assert_eq!(side, Side::Browser);
    assert_eq!(to_bob.ruri(), "sip:b9y@bob.invalid;transport=ws");
    assert!(to_bob.header("Route").is_none());
    assert_eq!(to_bob.header("From"), Some("<sip:1000@pbx.test>;tag=a1"));
    assert_eq!(to_bob.header("To"), Some("<sip:1001@pbx.test>;tag=b1"));
    assert_eq!(to_bob.cseq(), (3, "BYE"));
    assert!(to_bob.top_branch().starts_with("z9hG4bKcrl2x"));
    let (side, to_alice) = own(&reqs[1]);
    assert_eq!(side, Side::Upstream);
    assert_eq!(
        to_alice.ruri(),
        "sip:k7x@127.0.0.1:40001;transport=udp;crl=1"
    );
    assert_eq!(
        to_alice.header_list("Route"),
        [
            "<sip:127.0.0.1:5060;lr>",
            "<sip:127.0.0.1:40001;transport=udp;lr;crl=1>",
            "<sip:relay.invalid;transport=ws;lr;crl=1>"
        ]
    );
    assert_eq!(to_alice.header("From"), Some("<sip:1001@pbx.test>;tag=b1"));
    assert_eq!(to_alice.header("To"), Some("<sip:1000@pbx.test>;tag=a1"));
    assert_eq!(reqs[1].method, "BYE");
    // Through the proxy to flow 1: Alice gets it at her own Contact.
    let mut p_bye = to_alice.clone();
    pop_top(&mut p_bye, "Route");
    push_top(
        &mut p_bye,
        "Via",
        "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKproxy3".into(),
    );
    let at_a = to_browser(a.from_upstream(&p_bye.to_bytes()));
    assert_eq!(at_a.ruri(), "sip:k7x@abc.invalid;transport=ws;ob");
    assert!(at_a.header("Route").is_none());
    // Bob's answer to our BYE stops at the relay, and says which request
    // it answers (for retransmissions).
    let bye_ok = msg::response(&to_bob, 200, "OK", None);
    let o = b.from_browser(&bye_ok.to_bytes());
    assert!(o.send.is_none());
    assert_eq!(
        o.own_answer,
        Some((reqs[0].branch.clone(), "BYE".to_string(), 200))
    );
    // The dialog is gone from flow 2 (hung up) and from flow 1 (its BYE
    // passed).
    assert!(b.hang_up("call-1").is_empty());
    assert!(!a.knows_dialog("call-1"));
}

#[test]
fn a_closed_flow_hangs_up_the_pbx_side_of_its_calls() {
    let (mut a, mut b, _, at_b) = invite_through_the_proxy();
    let mut ok = msg::response(&at_b, 200, "OK", Some("b1"));
    for r in at_b.header_list("Record-Route") {
        ok.headers.push(("Record-Route".into(), r.to_string()));
    }
    ok.headers.push((
        "Contact".into(),
        "<sip:b9y@bob.invalid;transport=ws>".into(),
    ));
    let up_ok = to_upstream(b.from_browser(&ok.to_bytes()));
    let mut p_ok = up_ok.clone();
    pop_top(&mut p_ok, "Via");
    to_browser(a.from_upstream(&p_ok.to_bytes()));
    // Bob's tab closes: Alice (on the PBX's side) gets a BYE, Bob nothing.
    let reqs = b.abandon();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let (side, bye) = own(&reqs[0]);
    assert_eq!(side, Side::Upstream);
    assert_eq!(bye.method(), Some("BYE"));
    assert_eq!(bye.header("To"), Some("<sip:1000@pbx.test>;tag=a1"));
    assert!(b.abandon().is_empty(), "once");
}

#[test]
fn a_closed_flow_cancels_its_ringing_invite_and_leaves_the_pbxs_to_the_pbx() {
    let (mut a, mut b, up, _) = invite_through_the_proxy();
    // Alice's INVITE still rings: cancelled toward the PBX.
    let reqs = a.abandon();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let (side, cancel) = own(&reqs[0]);
    assert_eq!(side, Side::Upstream);
    assert_eq!(cancel.method(), Some("CANCEL"));
    assert_eq!(cancel.top_branch(), up.top_branch());
    // Bob's flow has the PBX's INVITE ringing at Bob: nothing to send.
    assert!(b.abandon().is_empty());
}

#[test]
fn a_flow_cancels_its_ringing_call_toward_the_callee() {
    let (mut a, _b, up, _) = invite_through_the_proxy();
    let reqs = a.hang_up("call-1");
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let (side, cancel) = own(&reqs[0]);
    assert_eq!(side, Side::Upstream);
    // The INVITE's Request-URI, branch, From, To and CSeq number.
    assert_eq!(cancel.method(), Some("CANCEL"));
    assert_eq!(cancel.ruri(), up.ruri());
    assert_eq!(cancel.top_branch(), up.top_branch());
    assert_eq!(cancel.header_list("Via").len(), 1);
    assert_eq!(cancel.header("From"), up.header("From"));
    assert_eq!(cancel.header("To"), up.header("To"));
    assert_eq!(cancel.cseq(), (2, "CANCEL"));
    assert!(a.hang_up("call-1").is_empty());
}

#[test]
fn a_closed_flow_unregisters_its_binding_without_credentials() {
    let mut a = flow(1, 40_001);
    assert!(a.unregister().is_none(), "nothing registered");
    let out = to_upstream(a.from_browser(&text(REGISTER)));
    assert!(a.unregister().is_none(), "not confirmed yet");
    let ok = pbx_answer(
        &out,
        "200 OK",
        "Contact: <sip:k7x@127.0.0.1:40001;transport=udp;crl=1>;expires=300\r\n",
    );
    to_browser(a.from_upstream(&ok));
    let r = a.unregister().expect("a binding to remove");
    assert_eq!(r.method, "REGISTER");
    let Action::ToUpstream(bytes) = &r.send else {
        panic!("toward the PBX: {r:?}");
    };
    let m = parse(bytes);
    assert_eq!(m.ruri(), "sip:pbx.test");
    assert_eq!(
        m.header("Contact"),
        Some("<sip:k7x@127.0.0.1:40001;transport=udp;crl=1>;expires=0")
    );
    assert_eq!(m.header("Expires"), Some("0"));
    assert_eq!(m.cseq(), (2, "REGISTER"));
    assert_eq!(m.call_id(), "reg-1");
    assert!(m.header("Authorization").is_none());
    assert_eq!(m.header_list("Via").len(), 1);
    assert_eq!(m.top_branch(), r.branch);
    // The PBX's answer stops at the relay.
    let challenge = pbx_answer(&m, "401 Unauthorized", "");
    let o = a.from_upstream(&challenge);
    assert!(o.send.is_none());
    assert_eq!(
        o.own_answer,
        Some((r.branch.clone(), "REGISTER".into(), 401))
    );
    assert!(a.unregister().is_none(), "once");
    // A browser that unregistered itself leaves nothing to remove.
    let mut b = flow(2, 40_002);
    let out = to_upstream(b.from_browser(&text(REGISTER)));
    to_browser(b.from_upstream(&pbx_answer(
        &out,
        "200 OK",
        "Contact: <sip:k7x@127.0.0.1:40002;transport=udp;crl=2>;expires=300\r\n",
    )));
    let bye = text(
        &REGISTER
            .replace("expires=600", "expires=0")
            .replace("Expires: 600", "Expires: 0"),
    );
    let out = to_upstream(b.from_browser(&bye));
    to_browser(b.from_upstream(&pbx_answer(&out, "200 OK", "")));
    assert!(b.unregister().is_none());
}
