//! Bindings restored after a restart over TCP/TLS, whose connection is
//! gone: which can be reached by connecting, where, and what a call does
//! when the shell reports the contact unreachable.

use super::*;

fn restored(transport: Transport, contact: &str, reg_id: Option<u32>) -> BindingRecord {
    BindingRecord {
        username: "bob".into(),
        contact: contact.into(),
        transport,
        source: SocketAddr::from(([127, 0, 0, 1], 40_123)),
        user_agent: None,
        instance_id: reg_id.map(|_| "<urn:uuid:1>".into()),
        reg_id,
        call_id: "c".into(),
        cseq: 1,
        expires_at_ms: 500_000,
        registered_at_ms: 1_000,
    }
}

fn core_with(b: BindingRecord) -> (Core, Ua) {
    let mut core = Core::new(cfg());
    core.cache_account(account("alice", "1000", "pa"));
    core.cache_account(account("bob", "1001", "pb"));
    core.restore_binding(b);
    let mut a = Ua::new("alice", "pa", udp(5071));
    do_register(&mut core, &mut a, "<sip:alice@127.0.0.1:5071>");
    (core, a)
}

#[test]
fn a_restored_tls_contact_is_dialled_at_its_contact_port_default_5061() {
    for (contact, port) in [
        ("sip:bob@127.0.0.1:5999;transport=tls", 5999),
        ("sip:bob@127.0.0.1;transport=tls", 5061),
        ("sips:bob@127.0.0.1", 5061),
    ] {
        let (mut core, mut a) = core_with(restored(Transport::Tls, contact, None));
        let (sent, _) = start_call(&mut core, &mut a, "1001", 5_000);
        let to = Source {
            flow: UDP_FLOW,
            transport: Transport::Tls,
            peer: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        assert!(
            sent.iter()
                .any(|(dst, m)| *dst == to && m.method() == Some("INVITE")),
            "{contact}: {sent:?}"
        );
    }
    // A Contact naming another address is not connected to: the address
    // the phone registered from is.
    let (mut core, mut a) = core_with(restored(
        Transport::Tls,
        "sip:bob@192.0.2.9:5061;transport=tls",
        None,
    ));
    let (sent, _) = start_call(&mut core, &mut a, "1001", 5_000);
    assert!(sent
        .iter()
        .any(|(dst, m)| dst.peer.port() == 40_123 && m.method() == Some("INVITE")));
}

#[test]
fn an_outbound_binding_without_its_flow_is_not_dialled() {
    // RFC 5626: the phone asked for its own flow; it re-registers over a new one.
    for t in [Transport::Tcp, Transport::Tls] {
        let (mut core, mut a) = core_with(restored(t, "sip:bob@127.0.0.1:5999", Some(1)));
        let (sent, outs) = start_call(&mut core, &mut a, "1001", 5_000);
        assert!(sent.iter().all(|(_, m)| m.method() != Some("INVITE")));
        assert!(sent.iter().any(|(_, m)| m.code() == Some(480)), "{sent:?}");
        assert_eq!(cdr_finish(&outs), Some(HangupCause::NotRegistered));
    }
}

#[test]
fn an_unreachable_restored_contact_fails_the_call_at_once() {
    let (mut core, mut a) = core_with(restored(
        Transport::Tls,
        "sip:bob@127.0.0.1:5999;transport=tls",
        None,
    ));
    let (sent, _) = start_call(&mut core, &mut a, "1001", 5_000);
    let (to, _) = sent
        .iter()
        .find(|(_, m)| m.method() == Some("INVITE"))
        .cloned()
        .expect("INVITE to the restored contact");
    // Another contact's loss, or a flow with the same address, is not this one.
    core.handle_contact_lost(
        5_100,
        Source {
            transport: Transport::Tcp,
            ..to
        },
    );
    core.handle_flow_closed(5_100, 9);
    let (sent, _) = drain(&mut core);
    assert!(sent.is_empty(), "{sent:?}");
    core.handle_contact_lost(5_200, to);
    let (sent, outs) = drain(&mut core);
    assert!(
        sent.iter()
            .any(|(dst, m)| *dst == a.src && m.code() == Some(480)),
        "{sent:?}"
    );
    // The leg ends as a lost connection; the call as every failed ring
    // with 480 does (the same as when a phone's own connection closes).
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Call(CallEvent {
            kind: CallEventKind::LegEnded {
                cause: HangupCause::CalleeConnectionLost,
                ..
            },
            ..
        })
    )));
    assert_eq!(cdr_finish(&outs), Some(HangupCause::NoAnswer));
    assert_eq!(core.bindings("bob").len(), 1, "the binding stays");
}

#[test]
fn a_lost_dialled_connection_ends_an_answered_call() {
    let (mut core, mut a) = core_with(restored(
        Transport::Tcp,
        "sip:bob@127.0.0.1:5999;transport=tcp",
        None,
    ));
    let (sent, _) = start_call(&mut core, &mut a, "1001", 5_000);
    let (to, inv) = sent
        .iter()
        .find(|(_, m)| m.method() == Some("INVITE"))
        .cloned()
        .expect("INVITE to the restored contact");
    // The answer comes back on the connection the shell opened (flow 12).
    let back = Source { flow: 12, ..to };
    let (sent, _) = feed(&mut core, 6_000, back, &reply_to(&inv, 200, "tb", "v=0 b"));
    assert!(sent
        .iter()
        .any(|(dst, m)| *dst == a.src && m.code() == Some(200)));
    core.handle_contact_lost(7_000, to);
    let (sent, outs) = drain(&mut core);
    assert!(sent
        .iter()
        .any(|(dst, m)| *dst == a.src && m.method() == Some("BYE")));
    assert_eq!(cdr_finish(&outs), Some(HangupCause::CalleeConnectionLost));
}
