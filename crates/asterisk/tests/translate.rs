//! The captured events of a real Asterisk 22, at their recorded times,
//! through the translator and the domain's recorder: the CDR rows that
//! result, checked against what Asterisk's own `Cdr` events say about the
//! same calls. No sockets here (see client.rs for the TCP replay).

mod common;

use std::collections::HashMap;

use asterisk::ami::calls::{AsteriskCdr, CallTranslator, Endpoint};
use asterisk::ami::Message;
use domain::call_events::{CallEvent, CallEventKind, HangupCause};
use domain::calls::{Direction, Disposition};
use domain::recorder::{CallRecord, LegRecord, Recorder};

const T0_MS: u64 = 1_795_266_090_000;

/// The test site: 2000 and 2001 are agents 20 and 21, `trunk-test` a trunk.
fn directory(name: &str) -> Endpoint {
    match name {
        "2000" | "2001" => Endpoint::Agent {
            agent_id: if name == "2000" { 20 } else { 21 },
            extension: name.to_string(),
        },
        "trunk-test" => Endpoint::Trunk {
            name: "trunk-test".into(),
        },
        _ => Endpoint::Other,
    }
}

struct Site;
impl asterisk::ami::calls::Directory for Site {
    fn endpoint(&self, name: &str) -> Endpoint {
        directory(name)
    }
    fn agent_by_extension(&self, number: &str) -> Option<i64> {
        match directory(number) {
            Endpoint::Agent { agent_id, .. } => Some(agent_id),
            _ => None,
        }
    }
}

fn at_ms(t: f64) -> u64 {
    T0_MS + (t * 1000.0) as u64
}

/// Call events and Asterisk's CDRs of a transcript.
fn replay(name: &str) -> (Vec<CallEvent>, Vec<AsteriskCdr>) {
    let chunks = common::transcript(name);
    let mut t = CallTranslator::new();
    let mut events = Vec::new();
    let mut cdrs = Vec::new();
    for (time, m) in common::server_messages(&chunks) {
        t.handle(&Site, &m, at_ms(time), &mut events);
        cdrs.extend(AsteriskCdr::from_message(&m));
    }
    assert_eq!(t.active_calls(), 0, "calls left open: {events:?}");
    (events, cdrs)
}

fn rows(events: &[CallEvent]) -> (Vec<CallRecord>, Vec<LegRecord>) {
    let mut r = Recorder::new();
    for e in events {
        r.apply(e)
            .unwrap_or_else(|why| panic!("the recorder ignored {e:?}: {why}"));
    }
    let c = r.into_changes();
    (c.calls, c.legs)
}

#[test]
fn sip_calls_give_the_cdr_asterisk_gives() {
    let (events, cdrs) = replay("ami-transcript-sip-calls.raw.jsonl");
    let (calls, legs) = rows(&events);
    assert_eq!(calls.len(), 2, "{calls:#?}");

    // Call 1: 2000 dials 2001, who answers; 2000 hangs up after ~3 s.
    let c = &calls[0];
    assert_eq!(c.call_id, "1795266092.11");
    assert_eq!(c.direction, Direction::Internal);
    assert_eq!(
        (c.caller.number.as_str(), c.caller.agent_id),
        ("2000", Some(20))
    );
    assert_eq!(
        (c.callee.number.as_str(), c.callee.agent_id),
        ("2001", Some(21))
    );
    let cdr = cdrs
        .iter()
        .find(|x| x.unique_id == c.call_id)
        .expect("Asterisk's CDR of call 1");
    assert_eq!(
        c.disposition.map(|d| d.as_str()),
        Some(cdr.disposition.as_str())
    );
    assert_eq!(c.billsec, cdr.billable_seconds as i64);
    assert_eq!(c.duration, cdr.duration as i64);
    assert_eq!(
        c.hangup_cause.as_deref(),
        Some(HangupCause::CallerBye.as_str())
    );
    let l: Vec<&LegRecord> = legs.iter().filter(|l| l.call_id == c.call_id).collect();
    assert_eq!(l.len(), 2);
    assert_eq!((l[1].leg, l[1].party.number.as_str()), (1, "2001"));
    assert_eq!(l[1].transport, "pjsip");
    assert!(l[1].ringing_ms.is_some() && l[1].answered_ms.is_some());
    assert_eq!(l[1].end_cause.as_deref(), Some("caller_bye"));
    // Asterisk names the dialled channel in its CDR: the leg we recorded.
    assert_eq!(cdr.destination_channel, "PJSIP/2001-00000006");

    // Call 2: 2000 dials the echo test (600): answered by the dialplan.
    let c = &calls[1];
    let cdr = cdrs
        .iter()
        .find(|x| x.unique_id == c.call_id)
        .expect("Asterisk's CDR of call 2");
    assert_eq!(c.callee.number, "600");
    assert_eq!(c.direction, Direction::Outbound);
    assert_eq!(c.disposition, Some(Disposition::Answered));
    assert_eq!(cdr.disposition, "ANSWERED");
    assert_eq!(c.billsec, cdr.billable_seconds as i64);
    assert_eq!(legs.iter().filter(|l| l.call_id == c.call_id).count(), 1);
}

#[test]
fn originated_local_calls_and_the_queue_call() {
    let (events, cdrs) = replay("ami-transcript.raw.jsonl");
    let (calls, _) = rows(&events);
    // Three originates: echo (hung up by AMI), echo (hangs itself up),
    // a caller in a queue nobody answers (hung up by AMI).
    assert_eq!(calls.len(), 3, "{calls:#?}");
    for c in &calls {
        let cdr = cdrs
            .iter()
            .find(|x| x.unique_id == c.call_id)
            .expect("Asterisk's CDR");
        assert_eq!(
            c.disposition.map(|d| d.as_str()),
            Some(cdr.disposition.as_str()),
            "{c:?}"
        );
        // AMI events carry no time: ours is the arrival time, Asterisk's
        // its own clock rounded to seconds.
        assert!(
            (c.billsec - cdr.billable_seconds as i64).abs() <= 1,
            "{c:?} vs {cdr:?}"
        );
    }
    assert_eq!(calls[2].callee.number, "700");
}

fn kinds(events: &[CallEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match &e.kind {
            CallEventKind::Started { .. } => "started".to_string(),
            CallEventKind::LegAdded { leg, .. } => format!("leg_added {leg}"),
            CallEventKind::Ringing { leg } => format!("ringing {leg}"),
            CallEventKind::Answered { leg } => format!("answered {leg}"),
            CallEventKind::LegEnded { leg, cause, .. } => {
                format!("leg_ended {leg} {}", cause.as_str())
            }
            CallEventKind::Ended { cause } => format!("ended {}", cause.as_str()),
            other => format!("{other:?}"),
        })
        .collect()
}

/// Variants derived from the captured call: the same events with the
/// callee never answering and the caller giving up (`DialStatus: CANCEL`),
/// or the callee busy. Asterisk's own CDR would say NO ANSWER / BUSY; the
/// CDR here says CANCELLED / BUSY.
fn variant(status: &str) -> Vec<Message> {
    let chunks = common::transcript("ami-transcript-sip-calls.raw.jsonl");
    let msgs: Vec<Message> = common::server_messages(&chunks)
        .into_iter()
        .map(|(_, m)| m)
        .filter(|m| {
            m.get("Linkedid") == Some("1795266092.11")
                || m.get("DestLinkedid") == Some("1795266092.11")
        })
        .collect();
    let mut out = Vec::new();
    for m in msgs {
        match m.event() {
            // The answer and the bridge never happen.
            Some("Newstate") if m.is("ChannelStateDesc", "Up") => continue,
            Some("BridgeEnter" | "BridgeLeave" | "BridgeCreate" | "BridgeDestroy") => continue,
            Some("DialEnd") => {
                let fields = m
                    .fields()
                    .iter()
                    .map(|(k, v)| {
                        let v = if k == "DialStatus" {
                            status.to_string()
                        } else {
                            v.clone()
                        };
                        (k.clone(), v)
                    })
                    .collect::<Vec<_>>();
                out.push(Message::from_pairs(fields));
            }
            Some("Hangup") => {
                let cause = if status == "BUSY" { "17" } else { "16" };
                let fields = m
                    .fields()
                    .iter()
                    .map(|(k, v)| {
                        let v = if k == "Cause" {
                            cause.to_string()
                        } else {
                            v.clone()
                        };
                        (k.clone(), v)
                    })
                    .collect::<Vec<_>>();
                out.push(Message::from_pairs(fields));
            }
            _ => out.push(m),
        }
    }
    out
}

#[test]
fn cancel_and_busy_variants() {
    for (status, disposition, leg_cause) in [
        ("CANCEL", Disposition::Cancelled, "cancelled"),
        ("BUSY", Disposition::Busy, "busy"),
        ("NOANSWER", Disposition::NoAnswer, "no_answer"),
    ] {
        let mut t = CallTranslator::new();
        let mut events = Vec::new();
        for (i, m) in variant(status).iter().enumerate() {
            t.handle(&Site, m, T0_MS + i as u64 * 100, &mut events);
        }
        let k = kinds(&events);
        assert_eq!(
            k,
            [
                "started",
                "leg_added 1",
                "ringing 1",
                &format!("leg_ended 1 {leg_cause}"),
                &format!("ended {leg_cause}"),
            ],
            "{status}"
        );
        let (calls, legs) = rows(&events);
        assert_eq!(calls[0].disposition, Some(disposition), "{status}");
        assert_eq!(calls[0].billsec, 0);
        assert_eq!(legs.len(), 2);
    }
}

#[test]
fn trunk_and_agent_filled_in_for_an_inbound_call() {
    // The captured call with 2000 replaced by a call from the trunk.
    let chunks = common::transcript("ami-transcript-sip-calls.raw.jsonl");
    let mut t = CallTranslator::new();
    let mut events = Vec::new();
    let swap: HashMap<&str, &str> =
        HashMap::from([("PJSIP/2000-00000005", "PJSIP/trunk-test-00000005")]);
    for (time, m) in common::server_messages(&chunks) {
        if m.get("Linkedid") != Some("1795266092.11")
            && m.get("DestLinkedid") != Some("1795266092.11")
        {
            continue;
        }
        let fields: Vec<(String, String)> = m
            .fields()
            .iter()
            .map(|(k, v)| {
                let v = match (k.as_str(), swap.get(v.as_str())) {
                    (_, Some(n)) => n.to_string(),
                    ("CallerIDNum", _) if v == "2000" => "+34600111222".to_string(),
                    _ => v.clone(),
                };
                (k.clone(), v)
            })
            .collect();
        t.handle(
            &Site,
            &Message::from_pairs(fields),
            at_ms(time),
            &mut events,
        );
    }
    let (calls, legs) = rows(&events);
    let c = &calls[0];
    assert_eq!(c.direction, Direction::Inbound);
    assert_eq!(c.caller.number, "+34600111222");
    assert_eq!(c.caller.agent_id, None);
    assert_eq!(
        (c.callee.number.as_str(), c.callee.agent_id),
        ("2001", Some(21))
    );
    assert_eq!(legs[0].transport, "trunk:trunk-test");
    assert_eq!(legs[1].party.agent_id, Some(21));
    assert_eq!(c.disposition, Some(Disposition::Answered));
}

/// One channel event in the shape the transcripts show (the fields the
/// translator reads, plus the usual ones).
fn chan_event(
    event: &str,
    chan: &str,
    uid: &str,
    linked: &str,
    state: &str,
    exten: &str,
) -> Message {
    Message::from_pairs([
        ("Event", event),
        ("Privilege", "call,all"),
        ("Channel", chan),
        ("ChannelStateDesc", state),
        ("CallerIDNum", "2000"),
        ("Context", "centralita-outbound"),
        ("Exten", exten),
        ("Priority", "1"),
        ("Uniqueid", uid),
        ("Linkedid", linked),
    ])
}

fn with(mut m: Message, extra: &[(&str, &str)]) -> Message {
    for (k, v) in extra {
        m.push(*k, *v);
    }
    m
}

/// The originate of seeds/001, in the event shapes of the transcripts:
/// Asterisk rings agent 2000 (leg 0, no caller channel in its DialBegin);
/// the agent answers, the agent's channel runs the customer's number and
/// dials it through the trunk (leg 1); the customer answers, talks 60 s
/// and hangs up (or is busy).
fn originate_script(customer: &str) -> Vec<(u64, Message)> {
    let agent = "PJSIP/2000-0000000a";
    let trunk = "PJSIP/trunk-test-0000000b";
    let (a, b) = ("1795270000.20", "1795270000.21");
    let dial_end = |dest: &str, uid: &str, status: &str| {
        Message::from_pairs([
            ("Event", "DialEnd"),
            ("DestChannel", dest),
            ("DestUniqueid", uid),
            ("DestLinkedid", a),
            ("DialStatus", status),
        ])
    };
    let mut v = vec![
        (0, chan_event("Newchannel", agent, a, a, "Down", "s")),
        (
            0,
            Message::from_pairs([
                ("Event", "DialBegin"),
                ("DestChannel", agent),
                ("DestUniqueid", a),
                ("DestLinkedid", a),
                ("DialString", "2000"),
            ]),
        ),
        (1_000, chan_event("Newstate", agent, a, a, "Ringing", "s")),
        (4_000, chan_event("Newstate", agent, a, a, "Up", "s")),
        (4_000, dial_end(agent, a, "ANSWER")),
        (
            4_001,
            chan_event("Newexten", agent, a, a, "Up", "+34911222333"),
        ),
        (4_002, chan_event("Newchannel", trunk, b, a, "Down", "s")),
        (
            4_002,
            with(
                chan_event("DialBegin", agent, a, a, "Up", "+34911222333"),
                &[
                    ("DestChannel", trunk),
                    ("DestUniqueid", b),
                    ("DestLinkedid", a),
                    ("DialString", "+34911222333@trunk-test"),
                ],
            ),
        ),
        (
            5_000,
            Message::from_pairs([
                ("Event", "DialState"),
                ("DestChannel", trunk),
                ("DestUniqueid", b),
                ("DestLinkedid", a),
                ("DialStatus", "RINGING"),
            ]),
        ),
    ];
    match customer {
        "answers" => v.extend([
            (9_000, dial_end(trunk, b, "ANSWER")),
            (9_001, chan_event("BridgeEnter", trunk, b, a, "Up", "")),
            (
                9_001,
                chan_event("BridgeEnter", agent, a, a, "Up", "+34911222333"),
            ),
            (69_000, chan_event("HangupRequest", trunk, b, a, "Up", "")),
            (
                69_001,
                with(
                    chan_event("Hangup", trunk, b, a, "Up", ""),
                    &[("Cause", "16")],
                ),
            ),
            (
                69_002,
                with(
                    chan_event("Hangup", agent, a, a, "Up", "+34911222333"),
                    &[("Cause", "16")],
                ),
            ),
        ]),
        _ => v.extend([
            (7_000, dial_end(trunk, b, "BUSY")),
            (
                7_001,
                with(
                    chan_event("Hangup", trunk, b, a, "Busy", ""),
                    &[("Cause", "17")],
                ),
            ),
            (
                7_002,
                with(
                    chan_event("Hangup", agent, a, a, "Up", "+34911222333"),
                    &[("Cause", "17")],
                ),
            ),
        ]),
    }
    v
}

#[test]
fn originate_through_a_trunk() {
    for (customer, disposition, billsec, duration) in [
        ("answers", Disposition::Answered, 60, 69),
        ("busy", Disposition::Busy, 0, 7),
    ] {
        let mut t = CallTranslator::new();
        let mut events = Vec::new();
        for (at, m) in originate_script(customer) {
            t.handle(&Site, &m, T0_MS + at, &mut events);
        }
        let (calls, legs) = rows(&events);
        let c = &calls[0];
        assert_eq!(c.direction, Direction::Outbound, "{customer}");
        assert_eq!(
            (c.caller.number.as_str(), c.caller.agent_id),
            ("2000", Some(20))
        );
        assert_eq!(c.callee.number, "+34911222333");
        // The agent's ringing counts in the duration, not in billsec.
        assert_eq!(c.start_ms, T0_MS as i64);
        assert_eq!(c.disposition, Some(disposition), "{customer}");
        assert_eq!((c.billsec, c.duration), (billsec, duration), "{customer}");
        assert_eq!(legs.len(), 2);
        assert_eq!(legs[1].transport, "trunk:trunk-test");
        assert_eq!(legs[1].party.number, "+34911222333");
        assert!(legs[1].ringing_ms.is_some());
        let want_end = if customer == "answers" {
            "callee_bye"
        } else {
            "busy"
        };
        assert_eq!(legs[1].end_cause.as_deref(), Some(want_end));
        assert_eq!(c.hangup_cause.as_deref(), Some(want_end));
    }
}

/// An originate the application announced (`expect_originate`, its
/// `ChannelId`) is live from its first channel on: started with the
/// customer as the callee while the agent's phone still rings, ringing
/// when it rings; the rows at the end are those of the same originate
/// unannounced. An agent who does not answer leaves a NO ANSWER row to
/// the customer's number.
#[test]
fn an_announced_originate_is_live_while_the_agent_rings() {
    let a = "1795270000.20";
    for customer in ["answers", "busy"] {
        let script = originate_script(customer);
        let mut plain = CallTranslator::new();
        let mut plain_events = Vec::new();
        for (at, m) in &script {
            plain.handle(&Site, m, T0_MS + at, &mut plain_events);
        }
        let mut t = CallTranslator::new();
        t.expect_originate(a, "+34911222333", "PJSIP/2000");
        let mut events = Vec::new();
        let mut agent_rang = false;
        for (i, (at, m)) in script.iter().enumerate() {
            t.handle(&Site, m, T0_MS + at, &mut events);
            if i == 0 {
                // The agent's Newchannel (Exten `s`): the call is on.
                assert!(
                    matches!(
                        &events[..],
                        [CallEvent { kind: CallEventKind::Started { direction: Direction::Outbound, callee, .. }, call_id, .. }]
                            if callee.number == "+34911222333" && call_id == a
                    ),
                    "{events:?}"
                );
            }
            if m.event() == Some("Newstate") && m.get("ChannelStateDesc") == Some("Ringing") {
                agent_rang = events
                    .iter()
                    .any(|e| matches!(e.kind, CallEventKind::Ringing { leg: 0 }));
            }
        }
        assert!(agent_rang, "the agent's ringing is an event: {events:?}");
        let (calls, legs) = rows(&events);
        let (plain_calls, plain_legs) = rows(&plain_events);
        let strip = |c: &CallRecord| {
            (
                c.direction,
                c.caller.clone(),
                c.callee.clone(),
                c.start_ms,
                c.answer_ms,
                c.end_ms,
                c.disposition,
                c.hangup_cause.clone(),
            )
        };
        assert_eq!(strip(&calls[0]), strip(&plain_calls[0]), "{customer}");
        assert_eq!(legs.len(), plain_legs.len(), "{customer}");
    }

    // The agent does not answer.
    let agent = "PJSIP/2000-0000000a";
    let mut t = CallTranslator::new();
    t.expect_originate(a, "912345678", "PJSIP/2000");
    let mut events = Vec::new();
    for (at, m) in [
        (0, chan_event("Newchannel", agent, a, a, "Down", "s")),
        (1_000, chan_event("Newstate", agent, a, a, "Ringing", "s")),
        (
            30_000,
            Message::from_pairs([
                ("Event", "DialEnd"),
                ("DestChannel", agent),
                ("DestUniqueid", a),
                ("DestLinkedid", a),
                ("DialStatus", "NOANSWER"),
            ]),
        ),
        (
            30_001,
            with(
                chan_event("Hangup", agent, a, a, "Ringing", "s"),
                &[("Cause", "19")],
            ),
        ),
    ] {
        t.handle(&Site, &m, T0_MS + at, &mut events);
    }
    assert_eq!(t.active_calls(), 0);
    let (calls, _) = rows(&events);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].callee.number, "912345678");
    assert_eq!(calls[0].disposition, Some(Disposition::NoAnswer));
    assert_eq!(calls[0].end_ms, Some((T0_MS + 30_001) as i64));
    // An unannounced channel id, or one announced then forgotten (the
    // originate was refused), waits for the extension as before.
    let mut t = CallTranslator::new();
    t.expect_originate("other", "912345678", "PJSIP/2000");
    t.expect_originate(a, "912345678", "PJSIP/2000");
    t.forget_originate(a);
    let mut events = Vec::new();
    t.handle(
        &Site,
        &chan_event("Newchannel", agent, a, a, "Down", "s"),
        T0_MS,
        &mut events,
    );
    assert!(events.is_empty(), "{events:?}");
}

/// An announced originate Asterisk could not even start (no channel: the
/// agent's endpoint has no contact, or busy) is recorded from its
/// `OriginateResponse` `Failure`, in Asterisk's event shape; one whose
/// channel exists is left to its channel's events.
#[test]
fn an_originate_refused_before_any_channel_is_recorded() {
    let failure = |reason: &str, uid: &str| {
        Message::from_pairs([
            ("Event", "OriginateResponse"),
            ("Privilege", "call,all"),
            ("ActionID", "7"),
            ("Response", "Failure"),
            ("Channel", "PJSIP/2000"),
            ("Context", "centralita-originate"),
            ("Exten", "912345678"),
            ("Reason", reason),
            ("Uniqueid", uid),
            ("CallerIDNum", "912345678"),
            ("CallerIDName", "912345678"),
        ])
    };
    for (reason, uid, cause, disposition) in [
        ("0", "<null>", "not_registered", Disposition::Failed),
        ("5", "centralita-2000-1", "busy", Disposition::Busy),
    ] {
        let mut t = CallTranslator::new();
        t.expect_originate("centralita-2000-1", "912345678", "PJSIP/2000");
        let mut events = Vec::new();
        t.handle(&Site, &failure(reason, uid), T0_MS, &mut events);
        assert_eq!(t.active_calls(), 0);
        let (calls, _) = rows(&events);
        assert_eq!(calls.len(), 1, "{events:?}");
        let c = &calls[0];
        assert_eq!(c.call_id, "centralita-2000-1");
        assert_eq!(c.direction, Direction::Outbound);
        assert_eq!(
            (c.caller.number.as_str(), c.caller.agent_id),
            ("2000", Some(20))
        );
        assert_eq!(c.callee.number, "912345678");
        assert_eq!(c.hangup_cause.as_deref(), Some(cause));
        assert_eq!(c.disposition, Some(disposition));
        // Once: a second answer of the same kind changes nothing.
        let mut again = Vec::new();
        t.handle(&Site, &failure(reason, uid), T0_MS, &mut again);
        assert!(again.is_empty());
    }
    // Its channel rang: its Hangup ends it, the response adds nothing.
    let agent = "PJSIP/2000-0000000a";
    let a = "centralita-2000-2";
    let mut t = CallTranslator::new();
    t.expect_originate(a, "912345678", "PJSIP/2000");
    let mut events = Vec::new();
    t.handle(
        &Site,
        &chan_event("Newchannel", agent, a, a, "Down", "s"),
        T0_MS,
        &mut events,
    );
    let n = events.len();
    t.handle(&Site, &failure("3", a), T0_MS + 30_000, &mut events);
    assert_eq!(events.len(), n, "{events:?}");
    assert_eq!(t.active_calls(), 1);
}

/// A call the application hangs up (`force_hangup`, then AMI `Hangup`
/// of its channels) ends `forced_hangup`, as the builtin engine records
/// it; the disposition still follows whether it was answered.
#[test]
fn a_forced_hangup_is_recorded_as_such() {
    let a = "1795270000.20";
    let mut t = CallTranslator::new();
    assert!(!t.force_hangup(a), "no such call yet");
    let mut events = Vec::new();
    for (at, m) in originate_script("answers") {
        if at == 69_000 {
            assert!(t.force_hangup(a));
        }
        t.handle(&Site, &m, T0_MS + at, &mut events);
    }
    let (calls, legs) = rows(&events);
    assert_eq!(calls[0].hangup_cause.as_deref(), Some("forced_hangup"));
    assert_eq!(calls[0].disposition, Some(Disposition::Answered));
    assert_eq!(calls[0].billsec, 60);
    assert_eq!(legs[1].end_cause.as_deref(), Some("forced_hangup"));
}

/// The captured server bytes of both sessions, cut at pseudo-random
/// places instead of where the kernel cut them, parse to the same
/// messages.
#[test]
fn any_split_of_the_captured_bytes_parses_the_same() {
    use asterisk::ami::{Frame, FrameParser};
    for name in [
        "ami-transcript.raw.jsonl",
        "ami-transcript-sip-calls.raw.jsonl",
    ] {
        let chunks = common::transcript(name);
        let want: Vec<Message> = common::server_messages(&chunks)
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        let all: Vec<u8> = chunks
            .iter()
            .filter(|c| c.from_server)
            .flat_map(|c| c.bytes.as_bytes().to_vec())
            .collect();
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for round in 0..20 {
            let mut p = FrameParser::new(asterisk::ami::frame::DEFAULT_MAX_MESSAGE);
            let mut frames = Vec::new();
            let mut i = 0;
            while i < all.len() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                // Pieces of 1..=64 bytes in even rounds, up to 4 KiB in odd.
                let max = if round % 2 == 0 { 64 } else { 4096 };
                let n = (1 + (seed % max) as usize).min(all.len() - i);
                p.feed(&all[i..i + n], &mut frames).expect("parse");
                i += n;
            }
            let got: Vec<Message> = frames
                .into_iter()
                .filter_map(|f| match f {
                    Frame::Message(m) => Some(m),
                    Frame::Banner(_) => None,
                })
                .collect();
            assert_eq!(got.len(), want.len(), "{name} round {round}");
            assert!(got == want, "{name} round {round}: messages differ");
        }
    }
}
