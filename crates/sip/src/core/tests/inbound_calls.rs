//! Calls in from carriers on virtual time: a trunk recognised by its
//! source or by its digest credentials, the DID routes, a trunk's channels
//! counted for calls in, and what a stranger gets.

use super::*;
use crate::core::inbound::{InboundTrunk, SourceMatch};
use crate::core::outbound::{DialRights, OutboundPolicy, OutboundTrunk};
use domain::calls::Direction;
use domain::dialplan::{DialPermission, OutboundLimits};
use domain::dids::{DidNumber, DidTarget, InboundRoute, InboundRoutes};
use std::sync::Arc;

const CARRIER: u16 = 5093;

fn routes() -> Arc<InboundRoutes> {
    let to = |id, number: &str, target| InboundRoute {
        did_id: id,
        number: DidNumber::parse(number).expect("valid"),
        trunk_id: None,
        target,
    };
    Arc::new(InboundRoutes::new(vec![
        to(
            1,
            "+34910000001",
            DidTarget::Agent {
                extension: "1001".into(),
            },
        ),
        to(2, "_3491999XXXX", DidTarget::Reject),
    ]))
}

/// A core where bob is registered, trunk 7 ("carrier7", one channel) is
/// recognised by 127.0.0.1:5093 and trunk 8 by its digest credentials.
fn inbound_core() -> Core {
    let (mut core, _, _, _) = registered_core();
    let out = OutboundTrunk {
        id: 7,
        name: "carrier7".into(),
        host: "127.0.0.1".into(),
        port: CARRIER,
        transport: Transport::Udp,
        auth_username: String::new(),
        secret: String::new(),
        realm: None,
        from_user: None,
        from_domain: None,
        send_pai: false,
        max_channels: 1,
        priority: 0,
        active: true,
        registers: false,
    };
    let policy = OutboundPolicy {
        routes: Vec::new(),
        plan: Default::default(),
        default_rights: DialRights {
            permission: DialPermission::Internal,
            limits: OutboundLimits {
                max_concurrent: 1,
                max_per_hour: 1,
            },
        },
    };
    core.set_outbound_trunks(
        vec![(out, Some(SocketAddr::from(([127, 0, 0, 1], CARRIER))))],
        policy,
    )
    .expect("valid trunk");
    let ha1 = |alg| digest::ha1(alg, "carrier8", REALM, "in-secret");
    core.set_inbound(
        vec![
            InboundTrunk {
                id: 7,
                name: "carrier7".into(),
                sources: vec![SourceMatch::parse(&format!("127.0.0.1:{CARRIER}")).expect("valid")],
                digest: None,
                contact_user: None,
            },
            InboundTrunk {
                id: 8,
                name: "carrier8".into(),
                sources: Vec::new(),
                digest: Some((
                    "carrier8".into(),
                    vec![Ha1 {
                        md5: ha1(Algorithm::Md5),
                        sha256: ha1(Algorithm::Sha256),
                        expires_at_ms: None,
                    }],
                )),
                contact_user: None,
            },
        ],
        routes(),
    );
    core
}

/// An INVITE from the carrier at `src` to `did`, from the customer.
fn carrier_invite(src: Source, did: &str, call_id: &str) -> String {
    format!(
        "INVITE sip:{did}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK{call_id}\r\nMax-Forwards: 70\r\nFrom: \"Customer\" <sip:+34600111222@carrier.test>;tag=c{call_id}\r\nTo: <sip:{did}@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:carrier@127.0.0.1:{p}>\r\nContent-Type: application/sdp\r\nContent-Length: 8\r\n\r\nv=0\r\nx=1",
        p = src.peer.port()
    )
}

fn started(outs: &[Output]) -> Option<(Direction, String, String, String)> {
    outs.iter().find_map(|o| match o {
        Output::Call(CallEvent {
            kind:
                CallEventKind::Started {
                    direction,
                    caller,
                    callee,
                    transport,
                },
            ..
        }) => Some((
            *direction,
            caller.number.clone(),
            callee.number.clone(),
            transport.clone(),
        )),
        _ => None,
    })
}

fn origin(outs: &[Output]) -> Option<(Option<String>, Option<String>)> {
    outs.iter().find_map(|o| match o {
        Output::Call(CallEvent {
            kind: CallEventKind::Origin { trunk, did },
            ..
        }) => Some((trunk.clone(), did.clone())),
        _ => None,
    })
}

#[test]
fn a_did_rings_its_agent_and_the_trunk_channel_is_held_until_the_end() {
    let mut core = inbound_core();
    let carrier = udp(CARRIER);
    let (sent, outs) = feed(
        &mut core,
        2_000,
        carrier,
        &carrier_invite(carrier, "+34910000001", "in-1"),
    );
    assert_eq!(
        sent[0].1.code(),
        Some(100),
        "no challenge for the carrier: {sent:?}"
    );
    // Bob's two phones ring, and see the customer's number.
    let forks: Vec<&Msg> = sent[1..].iter().map(|(_, m)| m).collect();
    assert_eq!(forks.len(), 2, "{sent:?}");
    assert!(forks
        .iter()
        .all(|m| m.header("From").unwrap_or("").contains("sip:+34600111222@")));
    assert_eq!(
        started(&outs),
        Some((
            Direction::Inbound,
            "+34600111222".into(),
            "1001".into(),
            "trunk:carrier7".into()
        ))
    );
    assert_eq!(
        origin(&outs),
        Some((Some("carrier7".into()), Some("+34910000001".into())))
    );
    assert_eq!(core.trunk_channels_in_use(7), 1);

    // The trunk's only channel is taken: the next call is refused.
    let (sent, outs) = feed(
        &mut core,
        2_100,
        carrier,
        &carrier_invite(carrier, "+34910000001", "in-2"),
    );
    assert_eq!(sent[0].1.code(), Some(503), "{sent:?}");
    assert_eq!(cdr_finish(&outs), Some(HangupCause::TrunkAtCapacity));

    // The customer gives up: the channel comes back.
    let cancel = format!(
        "CANCEL sip:+34910000001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{CARRIER};branch=z9hG4bKin-1\r\nMax-Forwards: 70\r\nFrom: \"Customer\" <sip:+34600111222@carrier.test>;tag=cin-1\r\nTo: <sip:+34910000001@127.0.0.1>\r\nCall-ID: in-1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    );
    let (_, outs) = feed(&mut core, 2_200, carrier, &cancel);
    assert_eq!(cdr_finish(&outs), Some(HangupCause::Cancelled));
    assert_eq!(core.trunk_channels_in_use(7), 0);
}

#[test]
fn unknown_and_rejected_dids_and_strangers() {
    let mut core = inbound_core();
    let carrier = udp(CARRIER);
    let (sent, outs) = feed(
        &mut core,
        2_000,
        carrier,
        &carrier_invite(carrier, "34915550000", "u-1"),
    );
    assert_eq!(sent[0].1.code(), Some(404), "{sent:?}");
    assert_eq!(cdr_finish(&outs), Some(HangupCause::UnknownDid));
    assert_eq!(
        origin(&outs),
        Some((Some("carrier7".into()), Some("34915550000".into())))
    );
    let (sent, outs) = feed(
        &mut core,
        2_000,
        carrier,
        &carrier_invite(carrier, "34919991234", "u-2"),
    );
    assert_eq!(sent[0].1.code(), Some(603), "{sent:?}");
    assert_eq!(cdr_finish(&outs), Some(HangupCause::Rejected));
    // An agent's extension is not reachable from outside without a DID.
    let (sent, _) = feed(
        &mut core,
        2_000,
        carrier,
        &carrier_invite(carrier, "1001", "u-3"),
    );
    assert_eq!(sent[0].1.code(), Some(404), "{sent:?}");
    assert_eq!(
        core.trunk_channels_in_use(7),
        0,
        "refused calls hold no channel"
    );

    // The same INVITE from another port of the same host is a stranger's:
    // challenged like any unknown caller, and no call starts.
    let stranger = udp(5094);
    let (sent, outs) = feed(
        &mut core,
        2_000,
        stranger,
        &carrier_invite(stranger, "+34910000001", "s-1"),
    );
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.code(), Some(407), "{sent:?}");
    assert!(started(&outs).is_none());
}

#[test]
fn a_carrier_that_authenticates_is_recognised_by_its_credentials_only() {
    let mut core = inbound_core();
    let mut carrier = Ua::new("carrier8", "in-secret", udp(5095));
    let (sent, _) = feed(
        &mut core,
        2_000,
        carrier.src,
        &invite(&mut carrier, "+34910000001", "d-1", None),
    );
    assert_eq!(sent[0].1.code(), Some(407));
    let ch = sent[0].1.clone();
    let (sent, outs) = feed(
        &mut core,
        2_000,
        carrier.src,
        &invite(&mut carrier, "+34910000001", "d-1", Some(&ch)),
    );
    assert_eq!(sent[0].1.code(), Some(100), "{sent:?}");
    let (direction, caller, callee, transport) = started(&outs).expect("a call started");
    assert_eq!(
        (direction, callee.as_str(), transport.as_str()),
        (Direction::Inbound, "1001", "trunk:carrier8")
    );
    // Its From user is the customer as far as we know.
    assert_eq!(caller, "carrier8");

    // Its credentials are for calls only: a REGISTER with them is refused
    // like an unknown user's.
    let mut reg = Ua::new("carrier8", "in-secret", udp(5096));
    let r = reg.register("<sip:carrier8@127.0.0.1:5096>", Some(60), None);
    let (sent, _) = feed(&mut core, 2_000, reg.src, &r);
    let ch = sent[0].1.clone();
    let r = reg.register(
        "<sip:carrier8@127.0.0.1:5096>",
        Some(60),
        Some((&ch, Algorithm::Md5)),
    );
    let (sent, _) = feed(&mut core, 2_000, reg.src, &r);
    assert_ne!(sent[0].1.code(), Some(200), "{sent:?}");
    // A wrong password is challenged again, no call.
    let mut liar = Ua::new("carrier8", "guess", udp(5097));
    let (sent, _) = feed(
        &mut core,
        2_000,
        liar.src,
        &invite(&mut liar, "+34910000001", "d-2", None),
    );
    let ch = sent[0].1.clone();
    let (sent, outs) = feed(
        &mut core,
        2_000,
        liar.src,
        &invite(&mut liar, "+34910000001", "d-2", Some(&ch)),
    );
    assert_eq!(sent[0].1.code(), Some(407), "{sent:?}");
    assert!(started(&outs).is_none());
}

#[test]
fn an_agent_sharing_the_carriers_address_is_still_an_agent() {
    let (mut core, mut a, _, _) = registered_core();
    // Every address of the host is this trunk's (an office NAT, a PBX on
    // the same machine): alice registered from 127.0.0.1:5071.
    core.set_inbound(
        vec![InboundTrunk {
            id: 9,
            name: "office".into(),
            sources: vec![SourceMatch::parse("127.0.0.0/8").expect("valid")],
            digest: None,
            contact_user: None,
        }],
        routes(),
    );
    let (sent, outs) = feed(
        &mut core,
        2_000,
        a.src,
        &invite(&mut a, "1001", "a-1", None),
    );
    assert_eq!(sent[0].1.code(), Some(407), "alice is challenged: {sent:?}");
    assert!(started(&outs).is_none());
    // Over WebSocket nobody is a carrier.
    let ws = Source {
        flow: 77,
        transport: Transport::Ws,
        peer: SocketAddr::from(([127, 0, 0, 1], 40_000)),
    };
    let (sent, _) = feed(
        &mut core,
        2_000,
        ws,
        &carrier_invite(ws, "+34910000001", "w-1"),
    );
    assert_eq!(sent[0].1.code(), Some(407), "{sent:?}");
    // Another port of the host is the carrier.
    let carrier = udp(5099);
    let (sent, outs) = feed(
        &mut core,
        2_000,
        carrier,
        &carrier_invite(carrier, "+34910000001", "c-1"),
    );
    assert_eq!(sent[0].1.code(), Some(100), "{sent:?}");
    assert!(started(&outs).is_some_and(|s| s.3 == "trunk:office"));
}
