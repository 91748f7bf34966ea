//! Trunk registrations through the endpoint: what the core sends for
//! them, that their answers reach them (and nothing else), and the events.

use super::*;
use crate::core::outbound_reg::{TrunkEventKind, TrunkRegState, TrunkRegistration};

const CARRIER: u16 = 5090;

fn trunk(transport: Transport) -> TrunkRegistration {
    TrunkRegistration {
        key: "carrier".into(),
        registrar: format!("127.0.0.1:{CARRIER}"),
        transport,
        aor: "sip:trunk1@carrier.test".into(),
        contact_user: "trunk1".into(),
        auth_username: "trunk1".into(),
        secret: "s3cret".into(),
        realm: None,
        expires_secs: 300,
        retry_interval_secs: 60,
        max_retries: 0,
        forbidden_retry_secs: 0,
    }
}

fn with_trunk(transport: Transport) -> Core {
    let mut core = Core::new(cfg());
    core.set_trunk_registrations(
        0,
        vec![(
            trunk(transport),
            Some(SocketAddr::from(([127, 0, 0, 1], CARRIER))),
        )],
    )
    .expect("valid settings");
    core
}

fn answer(req: &Msg, code: u16, reason: &str, extra: &[(&str, &str)]) -> String {
    let mut r = response(req, code, reason, Some("carrier-tag"));
    for (n, v) in extra {
        r.headers.push((n.to_string(), v.to_string()));
    }
    String::from_utf8(r.to_bytes()).expect("text")
}

#[test]
fn registers_through_the_endpoint_and_its_answers_reach_only_the_trunk() {
    let mut core = with_trunk(Transport::Udp);
    assert_eq!(core.poll_timeout(), 0, "the only trunk registers at once");
    core.handle_timeout(0);
    let (sent, other) = drain(&mut core);
    assert!(other.is_empty(), "{other:?}");
    let [(to, r1)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(*to, udp(CARRIER));
    assert_eq!(r1.method(), Some("REGISTER"));
    assert_eq!(
        r1.header("Contact"),
        Some("<sip:trunk1@127.0.0.1:5060>;expires=300")
    );

    let challenge = "Digest realm=\"carrier.test\", nonce=\"abc\", qop=\"auth\"";
    let (sent, other) = feed_raw(
        &mut core,
        10,
        udp(CARRIER),
        &answer(r1, 401, "Unauthorized", &[("WWW-Authenticate", challenge)]),
    );
    assert!(other.is_empty(), "{other:?}");
    let [(_, r2)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert!(r2.header("Authorization").is_some());

    let (sent, other) = feed_raw(&mut core, 20, udp(CARRIER), &answer(r2, 200, "OK", &[]));
    assert!(sent.is_empty(), "{sent:?}");
    assert_eq!(
        other,
        [Output::Trunk(outbound_reg::TrunkEvent {
            key: "carrier".into(),
            at_ms: 20,
            kind: TrunkEventKind::Registered { expires_secs: 300 },
        })]
    );
    assert_eq!(
        core.trunk_statuses()[0].state,
        TrunkRegState::Registered { expires_secs: 300 }
    );
    // A late copy of an answer, and a forged one, are absorbed silently.
    for data in [
        answer(r2, 200, "OK", &[]),
        answer(r2, 200, "OK", &[]).replace(r2.top_branch(), "z9hG4bKtr-0000000000000000"),
    ] {
        let (sent, other) = feed_raw(&mut core, 30, udp(CARRIER), &data);
        assert!(sent.is_empty() && other.is_empty(), "{sent:?} {other:?}");
    }
    // The refresh is driven by the core's timeouts: 270 s after the 200.
    assert_eq!(core.trunk_statuses()[0].next_attempt_ms, Some(270_020));
    core.handle_timeout(270_019);
    let (sent, _) = drain(&mut core);
    assert!(sent.is_empty(), "{sent:?}");
    core.handle_timeout(270_020);
    let (sent, _) = drain(&mut core);
    let [(_, r3)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(r3.call_id(), r1.call_id());
    assert!(r3
        .header("Authorization")
        .is_some_and(|a| a.contains("nc=00000002")));
    feed_raw(
        &mut core,
        270_030,
        udp(CARRIER),
        &answer(r3, 200, "OK", &[]),
    );

    // Shutting down unregisters.
    core.handle_shutdown(270_040);
    let (sent, _) = drain(&mut core);
    let [(_, un)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(un.header("Expires"), Some("0"));
    let (_, other) = feed_raw(
        &mut core,
        270_050,
        udp(CARRIER),
        &answer(un, 200, "OK", &[]),
    );
    assert!(matches!(
        &other[..],
        [Output::Trunk(outbound_reg::TrunkEvent {
            kind: TrunkEventKind::Unregistered,
            ..
        })]
    ));
}

#[test]
fn a_lost_tcp_connection_to_the_registrar_fails_the_attempt() {
    let mut core = with_trunk(Transport::Tcp);
    core.handle_timeout(0);
    let (sent, _) = drain(&mut core);
    let [(to, _)] = &sent[..] else {
        panic!("{sent:?}")
    };
    // Sent as "to this address over TCP": the shell opens the connection.
    assert_eq!((to.flow, to.transport), (UDP_FLOW, Transport::Tcp));
    core.handle_contact_lost(100, *to);
    let (_, other) = drain(&mut core);
    assert!(
        matches!(
            &other[..],
            [Output::Trunk(outbound_reg::TrunkEvent {
                kind: TrunkEventKind::Failed {
                    retry_at_ms: Some(_),
                    ..
                },
                ..
            })]
        ),
        "{other:?}"
    );
}
