//! Registration state from the captured answers of a real Asterisk 22
//! (`PJSIPShowEndpoints`, `PJSIPShowRegistrationsOutbound`, the `Registry`
//! event) and from `ContactStatus` events in Asterisk's documented shape.

mod common;

use asterisk::ami::registrations::{
    ContactState, RegistrationChange, Registrations, TrunkRegState,
};
use asterisk::ami::Message;

fn answer(action: &str) -> Vec<Message> {
    let chunks = common::transcript("ami-transcript.raw.jsonl");
    let (_, bytes) = common::answer_in(&chunks, action).expect("the transcript has it");
    let c = common::Chunk {
        t: 0.0,
        from_server: true,
        bytes: format!("Asterisk Call Manager/11.0.0\r\n{bytes}"),
    };
    common::server_messages(&[c])
        .into_iter()
        .map(|(_, m)| m)
        .collect()
}

#[test]
fn endpoint_listing_gives_the_registered_contacts() {
    let msgs = answer("PJSIPShowEndpoints");
    let mut r = Registrations::new();
    r.apply_endpoint_list(&msgs);
    // Only 2001 had a contact when the transcript was captured.
    assert_eq!(r.contact_count(), 1);
    assert!(r.is_registered("2001"));
    assert!(!r.is_registered("1000"));
    let c: Vec<_> = r.contacts_of("2001").collect();
    assert_eq!(c[0].uri, "sip:2001@127.0.0.1:15071");
    assert_eq!(c[0].aor, "2001");
}

#[test]
fn trunk_registration_from_listing_and_registry_event() {
    let msgs = answer("PJSIPShowRegistrationsOutbound");
    let mut r = Registrations::new();
    r.apply_outbound_registrations(&msgs, 1_000);
    let t = r.trunk("trunk-test").expect("the wizard trunk");
    assert_eq!(t.state, TrunkRegState::Registered);
    assert_eq!(t.client_uri, "sip:trunkuser@127.0.0.1:5090");
    assert_eq!(t.server_uri, "sip:127.0.0.1:5090");

    // The captured Registry event, then a derived Rejected one.
    let chunks = common::transcript("ami-transcript.raw.jsonl");
    let registry = common::server_messages(&chunks)
        .into_iter()
        .map(|(_, m)| m)
        .find(|m| m.is("Event", "Registry"))
        .expect("Registry event");
    assert_eq!(
        r.handle(&registry, 2_000),
        Some(RegistrationChange::Trunk {
            trunk: Some("trunk-test".into()),
            state: TrunkRegState::Registered
        })
    );
    let rejected = Message::from_pairs(registry.fields().iter().map(|(k, v)| {
        let v = if k == "Status" {
            "Rejected".to_string()
        } else {
            v.clone()
        };
        (k.clone(), v)
    }));
    r.handle(&rejected, 3_000);
    let t = r.trunk("trunk-test").expect("trunk");
    assert_eq!((t.state.as_engine_state(), t.since_ms), ("rejected", 3_000));

    // Before any listing the event names no trunk.
    let mut fresh = Registrations::new();
    assert_eq!(
        fresh.handle(&registry, 1),
        Some(RegistrationChange::Trunk {
            trunk: None,
            state: TrunkRegState::Registered
        })
    );
}

#[test]
fn contact_status_events() {
    let mut r = Registrations::new();
    let ev = |status: &str| {
        Message::from_pairs([
            ("Event", "ContactStatus"),
            ("Privilege", "system,all"),
            ("URI", "sip:jd@192.0.2.7:50123;transport=ws"),
            ("ContactStatus", status),
            ("AOR", "john_doe_1700000000"),
            ("EndpointName", "john_doe_1700000000"),
            ("RoundtripUsec", "1834"),
        ])
    };
    assert_eq!(
        r.handle(&ev("Created"), 1),
        Some(RegistrationChange::Contact {
            endpoint: "john_doe_1700000000".into(),
            uri: "sip:jd@192.0.2.7:50123;transport=ws".into(),
            state: Some(ContactState::Reachable)
        })
    );
    assert!(r.is_registered("john_doe_1700000000"));
    r.handle(&ev("Unreachable"), 2);
    assert!(!r.is_registered("john_doe_1700000000"));
    assert_eq!(r.contact_count(), 1);
    r.handle(&ev("Reachable"), 3);
    let c: Vec<_> = r.contacts_of("john_doe_1700000000").collect();
    assert_eq!(c[0].rtt_us, Some(1834));
    r.handle(&ev("Removed"), 4);
    assert_eq!(r.contact_count(), 0);
}
