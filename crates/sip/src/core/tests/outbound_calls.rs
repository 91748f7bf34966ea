//! Calls out through trunks on virtual time: the dial plan's refusals,
//! the INVITE a carrier gets, its digest challenge answered once, failover
//! to the next trunk only on carrier failures, and channel limits.

use super::*;
use crate::core::outbound::{DialRights, OutboundPolicy, OutboundTrunk};
use domain::dialplan::{DialPermission, OutboundLimits, OutboundRoute, Pattern};

const T1: u16 = 5091;
const T2: u16 = 5092;

pub(super) fn trunk(id: i64, port: u16, priority: i32) -> OutboundTrunk {
    OutboundTrunk {
        id,
        name: format!("carrier{id}"),
        host: "127.0.0.1".into(),
        port,
        transport: Transport::Udp,
        auth_username: format!("user{id}"),
        secret: "s3cret".into(),
        realm: None,
        from_user: None,
        from_domain: None,
        send_pai: false,
        max_channels: 0,
        priority,
        active: true,
        registers: false,
        codecs: Vec::new(),
    }
}

fn policy() -> OutboundPolicy {
    OutboundPolicy {
        routes: vec![OutboundRoute {
            name: "outside".into(),
            patterns: vec![
                Pattern::parse("_0.").expect("valid"),
                Pattern::parse("_+X.").expect("valid"),
                Pattern::parse("_[6-9]XXXXXXXX").expect("valid"),
            ],
            strip: 0,
            prepend: String::new(),
            trunks: vec![],
        }],
        plan: Default::default(),
        default_rights: DialRights {
            permission: DialPermission::National,
            limits: OutboundLimits {
                max_concurrent: 3,
                max_per_hour: 100,
            },
        },
    }
}

pub(super) fn core_with(trunks: Vec<OutboundTrunk>) -> (Core, Ua) {
    let (mut core, a, _, _) = registered_core();
    let addr = |t: &OutboundTrunk| Some(SocketAddr::from(([127, 0, 0, 1], t.port)));
    core.set_outbound_trunks(
        trunks.into_iter().map(|t| (t.clone(), addr(&t))).collect(),
        policy(),
    )
    .expect("valid trunks");
    (core, a)
}

/// Alice dials `number` (answering our 407); returns what the core sent.
fn dial(
    core: &mut Core,
    a: &mut Ua,
    number: &str,
    call_id: &str,
    now: u64,
) -> (Vec<(Source, Msg)>, Vec<Output>) {
    let (sent, _) = feed(core, now, a.src, &invite(a, number, call_id, None));
    assert_eq!(sent[0].1.code(), Some(407), "{:?}", sent[0].1);
    let ch = sent[0].1.clone();
    feed(core, now, a.src, &invite(a, number, call_id, Some(&ch)))
}

pub(super) fn to(sent: &[(Source, Msg)], port: u16) -> Vec<Msg> {
    sent.iter()
        .filter(|(s, _)| s.peer.port() == port)
        .map(|(_, m)| m.clone())
        .collect()
}

pub(super) fn carrier_reply(req: &Msg, code: u16, extra: &[(&str, &str)]) -> String {
    let mut r = response(req, code, "X", Some("carrier"));
    for (n, v) in extra {
        r.headers.push((n.to_string(), v.to_string()));
    }
    if code == 200 || code == 183 {
        r.headers
            .push(("Contact".into(), "<sip:carrier@127.0.0.1:5091>".into()));
        r.headers
            .push(("Content-Type".into(), "application/sdp".into()));
        r.body = b"v=0\r\ny=2".to_vec();
    }
    String::from_utf8(r.to_bytes()).expect("text")
}

#[test]
fn refusals_answer_with_the_dial_plan_code_and_cause() {
    let (mut core, mut a) = core_with(vec![trunk(1, T1, 0)]);
    // (number, SIP status, CDR cause)
    let table = [
        ("0033123456789", 403, HangupCause::DialNotPermitted),
        ("+881612345678", 403, HangupCause::DestinationBlocked),
        ("803123456", 403, HangupCause::DestinationBlocked),
        ("5555", 404, HangupCause::NotFound),
    ];
    for (i, (number, code, cause)) in table.into_iter().enumerate() {
        let (sent, outs) = dial(&mut core, &mut a, number, &format!("r{i}"), 2_000);
        assert_eq!(sent.len(), 1, "{number}: {sent:?}");
        assert_eq!(sent[0].1.code(), Some(code), "{number}");
        assert_eq!(cdr_finish(&outs), Some(cause), "{number}");
        assert!(to(&sent, T1).is_empty());
        // Fraud-like refusals are security notices too; no route is not.
        let notice = outs.iter().find_map(|o| match o {
            Output::Security(SecurityNotice::OutboundRefused {
                username,
                number,
                cause,
                ..
            }) => Some((username.as_str(), number.as_str(), *cause)),
            _ => None,
        });
        let expected = (code == 403).then_some(("alice", number, cause));
        assert_eq!(notice, expected, "{number}");
    }
    assert_eq!(core.trunk_channels_in_use(1), 0);
}

#[test]
fn the_carrier_gets_our_invite_and_its_challenge_is_answered_once() {
    let mut t = trunk(1, T1, 0);
    t.from_user = Some("34910000000".into());
    t.from_domain = Some("carrier.test".into());
    t.send_pai = true;
    let (mut core, mut a) = core_with(vec![t]);
    let (sent, outs) = dial(&mut core, &mut a, "912345678", "c1", 2_000);
    assert_eq!(sent[0].1.code(), Some(100));
    assert!(outs.iter().any(|o| matches!(o, Output::Call(CallEvent { kind: CallEventKind::Started { direction: domain::calls::Direction::Outbound, callee, .. }, .. }) if callee.number == "912345678")));
    assert!(outs.iter().any(|o| matches!(o, Output::Call(CallEvent { kind: CallEventKind::LegAdded { transport, .. }, .. }) if transport == "trunk:carrier1")));
    let [inv] = &to(&sent, T1)[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(inv.ruri(), "sip:912345678@127.0.0.1:5091;transport=udp");
    assert!(inv
        .header("From")
        .is_some_and(|f| f.contains("<sip:34910000000@carrier.test>")));
    assert_eq!(
        inv.header("P-Asserted-Identity"),
        Some("<sip:34910000000@carrier.test>")
    );
    assert_eq!(inv.body, b"v=0\r\nx=1");
    assert_eq!(core.trunk_channels_in_use(1), 1);

    let challenge = "Digest realm=\"carrier.test\", nonce=\"n1\", qop=\"auth\"";
    let (sent, _) = feed_raw(
        &mut core,
        2_100,
        udp(T1),
        &carrier_reply(inv, 407, &[("Proxy-Authenticate", challenge)]),
    );
    let out = to(&sent, T1);
    assert_eq!(out.len(), 2, "ACK then the INVITE again: {out:?}");
    assert_eq!(out[0].method(), Some("ACK"));
    assert_eq!(out[0].cseq(), (1, "ACK"));
    let inv2 = &out[1];
    assert_eq!(inv2.method(), Some("INVITE"));
    assert_eq!(inv2.cseq(), (2, "INVITE"));
    assert_eq!(inv2.call_id(), inv.call_id());
    assert_ne!(inv2.top_branch(), inv.top_branch());
    let auth = inv2.header("Proxy-Authorization").expect("answered");
    assert!(auth.contains("username=\"user1\"") && auth.contains("nc=00000001"));
    // The caller heard nothing of it.
    assert!(to(&sent, a.src.peer.port()).is_empty());

    // A second challenge is final: no third INVITE; with one trunk the
    // caller gets 503 and the channel is free again.
    let (sent, outs) = feed_raw(
        &mut core,
        2_200,
        udp(T1),
        &carrier_reply(inv2, 407, &[("Proxy-Authenticate", challenge)]),
    );
    let out = to(&sent, T1);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].method(), Some("ACK"));
    assert_eq!(out[0].cseq(), (2, "ACK"));
    let to_a = to(&sent, a.src.peer.port());
    assert_eq!(to_a[0].code(), Some(503));
    assert_eq!(cdr_finish(&outs), Some(HangupCause::NoTrunkAvailable));
    assert_eq!(core.trunk_channels_in_use(1), 0);
}

#[test]
fn a_503_fails_over_to_the_next_trunk_which_answers() {
    let (mut core, mut a) = core_with(vec![trunk(2, T2, 5), trunk(1, T1, 0)]);
    let (sent, _) = dial(&mut core, &mut a, "912345678", "c1", 2_000);
    let [inv1] = &to(&sent, T1)[..] else {
        panic!("priority 0 first: {sent:?}")
    };
    assert!(to(&sent, T2).is_empty());
    let (sent, outs) = feed_raw(&mut core, 2_100, udp(T1), &carrier_reply(inv1, 503, &[]));
    assert_eq!(to(&sent, T1)[0].method(), Some("ACK"));
    let [inv2] = &to(&sent, T2)[..] else {
        panic!("{sent:?}")
    };
    assert_ne!(inv2.call_id(), inv1.call_id());
    assert!(to(&sent, a.src.peer.port()).is_empty(), "no answer yet");
    assert_eq!(cdr_finish(&outs), None);
    assert_eq!(
        (core.trunk_channels_in_use(1), core.trunk_channels_in_use(2)),
        (0, 1)
    );
    // Early media from the second carrier reaches the caller.
    let (sent, _) = feed_raw(&mut core, 2_200, udp(T2), &carrier_reply(inv2, 183, &[]));
    assert_eq!(to(&sent, a.src.peer.port())[0].code(), Some(183));
    let (sent, outs) = feed_raw(&mut core, 2_300, udp(T2), &carrier_reply(inv2, 200, &[]));
    let to_a = to(&sent, a.src.peer.port());
    assert_eq!(to_a[0].code(), Some(200));
    assert_eq!(to_a[0].body, b"v=0\r\ny=2");
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Call(CallEvent {
            kind: CallEventKind::Answered { leg: 2 },
            ..
        })
    )));
    // The caller's ACK goes to the carrier; its BYE ends the call and
    // frees the channel.
    let ack = format!(
        "ACK sip:centralita@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKack1\r\nFrom: <sip:alice@127.0.0.1>;tag=ftag\r\nTo: {to}\r\nCall-ID: c1\r\nCSeq: {c} ACK\r\nContent-Length: 0\r\n\r\n",
        c = a.cseq,
        to = to_a[0].header("To").unwrap_or("")
    );
    let (sent, _) = feed_raw(&mut core, 2_400, a.src, &ack);
    assert_eq!(to(&sent, T2)[0].method(), Some("ACK"));
    assert_eq!(to(&sent, T2)[0].cseq(), (1, "ACK"));
    let bye = format!(
        "BYE sip:centralita@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKbye1\r\nFrom: <sip:alice@127.0.0.1>;tag=ftag\r\nTo: {to}\r\nCall-ID: c1\r\nCSeq: {c} BYE\r\nContent-Length: 0\r\n\r\n",
        c = a.cseq + 1,
        to = to_a[0].header("To").unwrap_or("")
    );
    let (sent, outs) = feed_raw(&mut core, 60_000, a.src, &bye);
    assert_eq!(to(&sent, T2)[0].method(), Some("BYE"));
    assert_eq!(cdr_finish(&outs), Some(HangupCause::CallerBye));
    assert_eq!(core.trunk_channels_in_use(2), 0);
}

#[test]
fn busy_is_the_callee_answer_and_never_fails_over() {
    let (mut core, mut a) = core_with(vec![trunk(1, T1, 0), trunk(2, T2, 1)]);
    let (sent, _) = dial(&mut core, &mut a, "912345678", "c1", 2_000);
    let [inv1] = &to(&sent, T1)[..] else {
        panic!("{sent:?}")
    };
    let (sent, outs) = feed_raw(&mut core, 2_100, udp(T1), &carrier_reply(inv1, 486, &[]));
    assert!(to(&sent, T2).is_empty(), "no failover on busy: {sent:?}");
    assert_eq!(to(&sent, a.src.peer.port())[0].code(), Some(486));
    assert_eq!(cdr_finish(&outs), Some(HangupCause::Busy));
    assert_eq!(core.trunk_channels_in_use(1), 0);
}

#[test]
fn no_answer_from_a_carrier_fails_over_and_the_last_failure_is_503() {
    let (mut core, mut a) = core_with(vec![trunk(1, T1, 0), trunk(2, T2, 1)]);
    let (sent, _) = dial(&mut core, &mut a, "912345678", "c1", 2_000);
    assert_eq!(to(&sent, T1).len(), 1);
    // No response at all, not even 100 Trying.
    let mut t = 2_000;
    let mut second = None;
    while t < 40_000 && second.is_none() {
        t = core.poll_timeout().max(t + 1);
        core.handle_timeout(t);
        let (sent, _) = drain(&mut core);
        second = to(&sent, T2)
            .into_iter()
            .find(|m| m.method() == Some("INVITE"));
    }
    let inv2 = second.expect("the second trunk was tried");
    assert!(
        t <= 2_000 + crate::core::call::CARRIER_RESPONSE_MS,
        "failover after {t} ms: a silent carrier must not cost Timer B"
    );
    let (sent, outs) = feed_raw(&mut core, t + 10, udp(T2), &carrier_reply(&inv2, 502, &[]));
    let to_a = to(&sent, a.src.peer.port());
    assert_eq!(to_a[0].code(), Some(503));
    assert!(
        matches!(&to_a[0].start, msg::Start::Response { reason, .. } if reason == "No trunk available")
    );
    assert_eq!(cdr_finish(&outs), Some(HangupCause::NoTrunkAvailable));
}

#[test]
fn channels_are_counted_across_concurrent_calls() {
    let mut small = trunk(1, T1, 0);
    small.max_channels = 1;
    let (mut core, mut a) = core_with(vec![small, trunk(2, T2, 1)]);
    let (sent, _) = dial(&mut core, &mut a, "912345678", "c1", 2_000);
    assert_eq!(to(&sent, T1).len(), 1);
    // The first trunk is full: the second call goes out on the other one.
    let (sent, _) = dial(&mut core, &mut a, "912345679", "c2", 2_010);
    assert!(to(&sent, T1).is_empty(), "{sent:?}");
    assert_eq!(to(&sent, T2).len(), 1);
    assert_eq!(
        (core.trunk_channels_in_use(1), core.trunk_channels_in_use(2)),
        (1, 1)
    );
    // Only the full trunk allowed: the third call is refused with 503.
    let mut only = policy();
    only.routes[0].trunks = vec![1];
    let mut small = trunk(1, T1, 0);
    small.max_channels = 1;
    let addr = Some(SocketAddr::from(([127, 0, 0, 1], T1)));
    core.set_outbound_trunks(vec![(small, addr)], only)
        .expect("valid");
    let (sent, outs) = dial(&mut core, &mut a, "912345670", "c3", 2_020);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].1.code(), Some(503));
    assert_eq!(cdr_finish(&outs), Some(HangupCause::NoTrunkAvailable));
    assert_eq!(core.trunk_channels_in_use(1), 1, "kept across the reload");
}

#[test]
fn concurrent_outbound_calls_per_caller_are_limited() {
    let (mut core, mut a) = core_with(vec![trunk(1, T1, 0)]);
    for i in 0..3 {
        let (sent, _) = dial(&mut core, &mut a, "912345678", &format!("c{i}"), 2_000 + i);
        assert_eq!(to(&sent, T1).len(), 1, "call {i}");
    }
    let (sent, outs) = dial(&mut core, &mut a, "912345678", "c9", 2_100);
    assert_eq!(sent[0].1.code(), Some(403));
    assert_eq!(
        cdr_finish(&outs),
        Some(HangupCause::OutboundConcurrentLimit)
    );
}

#[test]
fn anchored_trunk_calls_offer_our_sdp_to_each_carrier_in_turn() {
    use crate::core::media::{AnchorMode, LegKind, MemoryPlane};
    let mut c = cfg();
    c.anchor = AnchorMode::Always;
    let (mut core, mut a, _, _) = registered_core_with(c);
    let plane = MemoryPlane::default();
    core.set_media_plane(Box::new(plane.clone()));
    let addr = |p: u16| Some(SocketAddr::from(([127, 0, 0, 1], p)));
    core.set_outbound_trunks(
        vec![(trunk(1, T1, 0), addr(T1)), (trunk(2, T2, 1), addr(T2))],
        policy(),
    )
    .expect("valid");
    let (sent, _) = dial(&mut core, &mut a, "912345678", "c1", 2_000);
    let [inv1] = &to(&sent, T1)[..] else {
        panic!("{sent:?}")
    };
    assert!(String::from_utf8_lossy(&inv1.body).contains("a=x-leg:fork0"));
    let (sent, _) = feed_raw(&mut core, 2_100, udp(T1), &carrier_reply(inv1, 500, &[]));
    let [inv2] = &to(&sent, T2)[..] else {
        panic!("{sent:?}")
    };
    // The failed carrier's leg is closed; the next one gets its own offer.
    assert!(String::from_utf8_lossy(&inv2.body).contains("a=x-leg:fork1"));
    {
        let st = plane.0.lock();
        let call = st.calls.values().next().expect("session open");
        assert_eq!(call.caller, Some(LegKind::Plain));
        assert_eq!(call.closed_forks, vec![0]);
    }
    let (sent, _) = feed_raw(&mut core, 2_200, udp(T2), &carrier_reply(inv2, 183, &[]));
    let early = to(&sent, a.src.peer.port())[0].clone();
    assert_eq!(early.code(), Some(183));
    assert!(String::from_utf8_lossy(&early.body).contains("a=x-leg:caller"));
    let (sent, _) = feed_raw(&mut core, 2_300, udp(T2), &carrier_reply(inv2, 200, &[]));
    let ok = to(&sent, a.src.peer.port())[0].clone();
    assert_eq!(ok.code(), Some(200));
    assert_eq!(ok.body, early.body, "same SDP in 183 and 200");
}

#[test]
fn the_caller_cancelling_cancels_the_authenticated_invite_and_frees_the_channel() {
    let (mut core, mut a) = core_with(vec![trunk(1, T1, 0)]);
    let (sent, _) = dial(&mut core, &mut a, "912345678", "c1", 2_000);
    let [inv] = &to(&sent, T1)[..] else {
        panic!("{sent:?}")
    };
    let challenge = "Digest realm=\"carrier.test\", nonce=\"n1\"";
    let (sent, _) = feed_raw(
        &mut core,
        2_100,
        udp(T1),
        &carrier_reply(inv, 401, &[("WWW-Authenticate", challenge)]),
    );
    let inv2 = to(&sent, T1)[1].clone();
    assert!(inv2.header("Authorization").is_some());
    let (sent, _) = feed_raw(&mut core, 2_200, udp(T1), &carrier_reply(&inv2, 180, &[]));
    assert_eq!(to(&sent, a.src.peer.port())[0].code(), Some(180));
    let cancel = format!(
        "CANCEL sip:912345678@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKinv{c}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=ftag\r\nTo: <sip:912345678@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: {c} CANCEL\r\nContent-Length: 0\r\n\r\n",
        c = a.cseq
    );
    let (sent, outs) = feed_raw(&mut core, 3_000, a.src, &cancel);
    let c = to(&sent, T1);
    let [c] = &c[..] else { panic!("{sent:?}") };
    assert_eq!(c.method(), Some("CANCEL"));
    // CANCEL matches the INVITE it cancels: same branch and CSeq number.
    assert_eq!(c.cseq(), (2, "CANCEL"));
    assert_eq!(c.top_branch(), inv2.top_branch());
    assert_eq!(cdr_finish(&outs), Some(HangupCause::Cancelled));
    assert_eq!(core.trunk_channels_in_use(1), 0);
    // The caller's count is given back too: three more calls fit.
    for i in 0..3 {
        let (sent, _) = dial(&mut core, &mut a, "912345678", &format!("n{i}"), 4_000 + i);
        assert_eq!(to(&sent, T1).len(), 1, "call {i}");
    }
}

#[test]
fn a_late_answer_from_a_carrier_given_up_is_acked_and_hung_up() {
    let (mut core, mut a) = core_with(vec![trunk(1, T1, 0), trunk(2, T2, 1)]);
    let (sent, _) = dial(&mut core, &mut a, "912345678", "c1", 2_000);
    let inv1 = to(&sent, T1)[0].clone();
    core.handle_timeout(2_000 + crate::core::call::CARRIER_RESPONSE_MS);
    let (sent, _) = drain(&mut core);
    let inv2 = to(&sent, T2)[0].clone();
    assert_eq!(inv2.method(), Some("INVITE"));
    assert_eq!(core.trunk_channels_in_use(1), 0);
    // The first carrier wakes up and answers: it gets ACK and BYE, the
    // caller hears nothing of it and the second attempt goes on.
    let (sent, outs) = feed_raw(&mut core, 8_000, udp(T1), &carrier_reply(&inv1, 200, &[]));
    let methods: Vec<_> = to(&sent, T1)
        .iter()
        .map(|m| m.method().unwrap_or("").to_string())
        .collect();
    assert_eq!(methods, ["ACK", "BYE"]);
    assert!(to(&sent, a.src.peer.port()).is_empty(), "{sent:?}");
    assert_eq!(cdr_finish(&outs), None);
    let (sent, _) = feed_raw(&mut core, 8_100, udp(T2), &carrier_reply(&inv2, 200, &[]));
    assert_eq!(to(&sent, a.src.peer.port())[0].code(), Some(200));
    assert_eq!(core.trunk_channels_in_use(2), 1);
}
