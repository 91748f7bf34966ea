//! Anchored calls with the in-memory media plane: our SDP toward every
//! leg, the same answer in 183 and 200, losing forks closed, re-INVITEs
//! answered per leg, media timeout ends the call.

use super::*;
use crate::core::media::{AnchorMode, LegKind, MediaEvent, MemoryPlane};

fn anchored_core() -> (Core, MemoryPlane, Ua, Ua, Ua) {
    let mut c = cfg();
    c.anchor = AnchorMode::Always;
    let (mut core, a, b1, b2) = registered_core_with(c);
    let plane = MemoryPlane::default();
    core.set_media_plane(Box::new(plane.clone()));
    (core, plane, a, b1, b2)
}

#[test]
fn anchored_call_uses_our_sdp_everywhere() {
    let (mut core, plane, mut a, b1, b2) = anchored_core();
    let (sent, _) = start_call(&mut core, &mut a, "1001", 5_000);
    assert_eq!(sent[0].1.code(), Some(100));
    let forks: Vec<_> = sent[1..].to_vec();
    assert_eq!(forks.len(), 2);
    // Each fork gets our offer for its leg, not the caller's SDP.
    for (i, (_, f)) in forks.iter().enumerate() {
        let body = String::from_utf8_lossy(&f.body).to_string();
        assert!(body.contains(&format!("a=x-leg:fork{i}")), "{body}");
        assert_eq!(f.header("Content-Type"), Some("application/sdp"));
    }
    {
        let st = plane.0.lock();
        let call = st.calls.values().next().expect("session open");
        assert_eq!(call.caller, Some(LegKind::Plain));
        assert_eq!(call.forks.len(), 2);
    }
    // Early media from fork 2: the caller gets our answer.
    let (sent, _) = feed(
        &mut core,
        5_100,
        b2.src,
        &reply_to(&forks[1].1, 183, "t2", "v=0 early"),
    );
    assert_eq!(sent[0].1.code(), Some(183));
    let early = sent[0].1.body.clone();
    assert!(String::from_utf8_lossy(&early).contains("a=x-leg:caller"));
    // Fork 1 answers: the 200 carries the same answer as the 183; fork 2
    // is cancelled and its leg closed.
    let (sent, _) = feed(
        &mut core,
        6_000,
        b1.src,
        &reply_to(&forks[0].1, 200, "t1", "v=0 b"),
    );
    let ok = sent
        .iter()
        .find(|(to, m)| *to == a.src && m.code() == Some(200))
        .expect("200 to caller")
        .1
        .clone();
    assert_eq!(ok.body, early, "same SDP in 183 and 200");
    assert_eq!(
        plane
            .0
            .lock()
            .calls
            .values()
            .next()
            .map(|c| c.closed_forks.clone()),
        Some(vec![1])
    );
    let a_tag = msg::tag(ok.header("To").unwrap_or(""))
        .unwrap_or("")
        .to_string();
    let ack = format!(
        "ACK sip:centralita@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKack1\r\nFrom: <sip:alice@127.0.0.1>;tag=ftag\r\nTo: <sip:1001@127.0.0.1>;tag={a_tag}\r\nCall-ID: call-1\r\nCSeq: {} ACK\r\nContent-Length: 0\r\n\r\n",
        a.cseq
    );
    let (sent, _) = feed(&mut core, 6_100, a.src, &ack);
    assert_eq!(sent[0].1.method(), Some("ACK"));
    assert!(
        sent[0].1.body.is_empty(),
        "the ACK carries no SDP of the caller"
    );
    // The caller holds: answered by us, nothing reaches the callee.
    let reinv = format!(
        "INVITE sip:centralita@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKre1\r\nFrom: <sip:alice@127.0.0.1>;tag=ftag\r\nTo: <sip:1001@127.0.0.1>;tag={a_tag}\r\nCall-ID: call-1\r\nCSeq: 50 INVITE\r\nContact: <sip:alice@127.0.0.1:5071>\r\nContent-Type: application/sdp\r\nContent-Length: 10\r\n\r\na=sendonly"
    );
    let (sent, _) = feed(&mut core, 7_000, a.src, &reinv);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, a.src);
    assert_eq!(sent[0].1.code(), Some(200));
    assert!(String::from_utf8_lossy(&sent[0].1.body).contains(" 2 IN IP4"));
    // Not ACKed: retransmitted; ACKed: quiet.
    core.handle_timeout(7_600);
    assert!(drain(&mut core)
        .0
        .iter()
        .any(|(to, m)| *to == a.src && m.code() == Some(200)));
    let ack2 = ack
        .replace("z9hG4bKack1", "z9hG4bKack2")
        .replace(&format!("CSeq: {} ACK", a.cseq), "CSeq: 50 ACK");
    let (sent, _) = feed(&mut core, 7_700, a.src, &ack2);
    assert!(sent.is_empty(), "{sent:?}");
    core.handle_timeout(12_000);
    assert!(!drain(&mut core)
        .0
        .iter()
        .any(|(_, m)| m.code() == Some(200)));
    // A DTMF INFO goes to the media plane (RFC 4733 toward the other
    // leg) and is answered here; nothing reaches the callee.
    let info = format!(
        "INFO sip:centralita@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKinfo1\r\nFrom: <sip:alice@127.0.0.1>;tag=ftag\r\nTo: <sip:1001@127.0.0.1>;tag={a_tag}\r\nCall-ID: call-1\r\nCSeq: 51 INFO\r\nMax-Forwards: 70\r\nContent-Type: application/dtmf-relay\r\nContent-Length: 24\r\n\r\nSignal=5\r\nDuration=160\r\n"
    );
    let (sent, _) = feed(&mut core, 13_000, a.src, &info);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((sent[0].0, sent[0].1.code()), (a.src, Some(200)));
    assert_eq!(
        plane.0.lock().dtmf,
        vec![(
            0,
            "application/dtmf-relay".to_string(),
            b"Signal=5\r\nDuration=160\r\n".to_vec()
        )]
    );
    // A key heard in the callee's media: INFO toward the caller.
    core.handle_media_event(
        13_500,
        MediaEvent::Dtmf {
            call: 0,
            from: crate::core::media::MediaSide::Fork(0),
            digit: '7',
            duration_ms: 100,
        },
    );
    let (sent, _) = drain(&mut core);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, a.src);
    assert_eq!(sent[0].1.method(), Some("INFO"));
    assert_eq!(
        sent[0].1.header("Content-Type"),
        Some("application/dtmf-relay")
    );
    assert_eq!(sent[0].1.body, b"Signal=7\r\nDuration=100\r\n");
    // Media stops: both legs get a BYE, the cause is media_timeout, the
    // session is closed.
    core.handle_media_event(20_000, MediaEvent::Timeout { call: 0 });
    let (sent, outs) = drain(&mut core);
    assert_eq!(byes_to(&sent, a.src), 1);
    assert_eq!(byes_to(&sent, b1.src), 1);
    assert_eq!(cdr_finish(&outs), Some(HangupCause::MediaTimeout));
    assert_eq!(plane.0.lock().closed, vec![0]);
}

#[test]
fn refused_offer_is_488_and_never_mode_relays() {
    let (mut core, plane, mut a, _, _) = anchored_core();
    plane.0.lock().refuse = Some("x=1".into());
    let (sent, outs) = start_call(&mut core, &mut a, "1001", 5_000);
    assert_eq!(sent[0].1.code(), Some(100));
    assert_eq!(sent[1].1.code(), Some(488));
    assert!(sent.iter().all(|(_, m)| m.method() != Some("INVITE")));
    assert_eq!(cdr_finish(&outs), Some(HangupCause::Failed));

    // anchor = never: SDP relayed unchanged, the plane is not asked.
    let (mut core, _, mut a, _, _) = registered_core_never();
    let (sent, _) = start_call(&mut core, &mut a, "1001", 5_000);
    assert_eq!(sent[1].1.body, b"v=0\r\nx=1");
}

fn registered_core_never() -> (Core, (), Ua, Ua, Ua) {
    let (mut core, a, b1, b2) = registered_core();
    core.set_media_plane(Box::new(crate::core::media::NoMedia));
    (core, (), a, b1, b2)
}

/// A caller's refresh re-INVITE is answered on its leg; the callee, which
/// no longer sees it, gets an UPDATE of ours so its session stays alive.
#[test]
fn a_refresh_answered_on_one_leg_refreshes_the_other_with_update() {
    let mut c = cfg();
    c.anchor = AnchorMode::Always;
    c.session_expires_secs = 90;
    let (mut core, mut a, b1, _b2) = registered_core_with(c);
    core.set_media_plane(Box::new(MemoryPlane::default()));
    let t0 = 10_000;
    let (to_a, b_ack) = answered_call(&mut core, &mut a, &b1, t0, "Supported: timer\r\n", &[]);
    assert_eq!(to_a.header("Session-Expires"), Some("90;refresher=uac"));
    let a_tag = msg::tag(to_a.header("To").unwrap_or(""))
        .unwrap_or("")
        .to_string();
    let reinv = format!(
        "INVITE sip:centralita@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKref1\r\nFrom: <sip:alice@127.0.0.1>;tag=ftag\r\nTo: <sip:1001@127.0.0.1>;tag={a_tag}\r\nCall-ID: call-1\r\nCSeq: 10 INVITE\r\nContact: <sip:alice@127.0.0.1:5071>\r\nSession-Expires: 90;refresher=uac\r\nContent-Type: application/sdp\r\nContent-Length: 8\r\n\r\nv=0\r\nx=1"
    );
    let (sent, _) = feed(&mut core, t0 + 40_000, a.src, &reinv);
    assert!(sent
        .iter()
        .any(|(to, m)| *to == a.src && m.code() == Some(200)));
    let update = sent
        .iter()
        .find(|(to, m)| *to == b1.src && m.method() == Some("UPDATE"))
        .expect("UPDATE to the callee")
        .1
        .clone();
    assert!(
        sent.iter().all(|(_, m)| m.method() != Some("INVITE")),
        "{sent:?}"
    );
    assert_eq!(update.call_id(), b_ack.call_id());
    assert!(update.body.is_empty());
    let (sent, outs) = feed(
        &mut core,
        t0 + 40_050,
        b1.src,
        &reply_to(&update, 200, "t1", ""),
    );
    assert!(sent.is_empty(), "the UPDATE's 200 stays here: {sent:?}");
    assert_eq!(ended_at(&outs), None);
    core.handle_timeout(t0 + 100_000);
    let (sent, _) = drain(&mut core);
    assert_eq!(
        byes_to(&sent, a.src) + byes_to(&sent, b1.src),
        0,
        "{sent:?}"
    );
}

#[test]
fn recording_follows_the_system_default_and_reports_reach_the_record() {
    use crate::core::media::RecordCustomer;
    use domain::call_events::MediaDirection;
    // Off by default: the plane is told not to record.
    let (mut core, plane, mut a, _, _) = anchored_core();
    start_call(&mut core, &mut a, "1001", 5_000);
    {
        let st = plane.0.lock();
        assert_eq!(st.opened.len(), 1);
        assert_eq!(st.opened[0].1, None);
        assert!(!st.opened[0].0.is_empty(), "the call's record id");
    }
    // On for the system: recorded, the caller on the customer channel.
    let mut c = cfg();
    c.anchor = AnchorMode::Always;
    c.record_calls = true;
    let (mut core, mut a, _, _) = registered_core_with(c);
    let plane = MemoryPlane::default();
    core.set_media_plane(Box::new(plane.clone()));
    start_call(&mut core, &mut a, "1001", 5_000);
    let call_id = {
        let st = plane.0.lock();
        assert_eq!(st.opened[0].1, Some(RecordCustomer::Caller));
        st.opened[0].0.clone()
    };
    // The media plane's report comes as call events under that id, even
    // for a call the core no longer knows.
    let quality = CallEventKind::Quality {
        leg: 0,
        direction: MediaDirection::Inbound,
        packets: 250,
        lost: 2,
        jitter_ms: 3.0,
        rtt_ms: None,
        mos: 4.3,
        codec: "PCMU".into(),
    };
    core.handle_media_event(
        9_000,
        MediaEvent::Report {
            call_id: call_id.clone(),
            kinds: vec![quality.clone()],
        },
    );
    core.handle_media_event(
        9_100,
        MediaEvent::Report {
            call_id: "gone@elsewhere".into(),
            kinds: vec![quality.clone()],
        },
    );
    let (_, outs) = drain(&mut core);
    let reported: Vec<&str> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Call(ev) if ev.kind == quality => Some(ev.call_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(reported, vec![call_id.as_str(), "gone@elsewhere"]);
}

/// A re-INVITE without SDP (RFC 3261 §14.2) from an anchored leg: the 200
/// carries our offer for that leg (its SDP at the next version), the ACK
/// its answer, which reaches the media plane; the other leg sees nothing.
#[test]
fn a_re_invite_without_sdp_is_offered_in_the_200_and_answered_in_the_ack() {
    let mut c = cfg();
    c.anchor = AnchorMode::Always;
    let (mut core, mut a, b1, _b2) = registered_core_with(c);
    let plane = MemoryPlane::default();
    core.set_media_plane(Box::new(plane.clone()));
    let t0 = 10_000;
    let (to_a, _) = answered_call(&mut core, &mut a, &b1, t0, "", &[]);
    let a_tag = msg::tag(to_a.header("To").unwrap_or(""))
        .unwrap_or("")
        .to_string();
    let reinvite = |cseq: u32, branch: &str| {
        format!(
            "INVITE sip:centralita@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch={branch}\r\nFrom: <sip:alice@127.0.0.1>;tag=ftag\r\nTo: <sip:1001@127.0.0.1>;tag={a_tag}\r\nCall-ID: call-1\r\nCSeq: {cseq} INVITE\r\nContact: <sip:alice@127.0.0.1:5071>\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let ack = |cseq: u32, branch: &str, body: &str| {
        let ct = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "ACK sip:centralita@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch={branch}\r\nFrom: <sip:alice@127.0.0.1>;tag=ftag\r\nTo: <sip:1001@127.0.0.1>;tag={a_tag}\r\nCall-ID: call-1\r\nCSeq: {cseq} ACK\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let (sent, _) = feed(&mut core, t0 + 1_000, a.src, &reinvite(20, "z9hG4bKnosdp1"));
    assert_eq!(
        sent.len(),
        1,
        "answered here, nothing to the callee: {sent:?}"
    );
    let (to, ok) = &sent[0];
    assert_eq!((*to, ok.code()), (a.src, Some(200)));
    assert_eq!(ok.header("Content-Type"), Some("application/sdp"));
    let offer = String::from_utf8_lossy(&ok.body).to_string();
    assert!(
        offer.contains("a=x-leg:caller"),
        "the caller's leg: {offer}"
    );
    assert!(offer.contains(" 2 IN IP4"), "the next version: {offer}");
    assert_eq!(
        plane
            .0
            .lock()
            .calls
            .get(&0)
            .map(|c| c.offered_again.clone()),
        Some(vec![crate::core::media::MediaSide::Caller])
    );
    // The ACK carries the answer: to the media plane, not to the callee.
    let answer = "v=0\r\na=sendrecv\r\n";
    let (sent, _) = feed(
        &mut core,
        t0 + 1_100,
        a.src,
        &ack(20, "z9hG4bKnosdpack1", answer),
    );
    assert!(sent.is_empty(), "{sent:?}");
    let answers = || {
        plane
            .0
            .lock()
            .calls
            .get(&0)
            .map(|c| c.ack_answers.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        answers(),
        vec![(
            crate::core::media::MediaSide::Caller,
            answer.as_bytes().to_vec()
        )]
    );
    // A retransmitted ACK is not an answer again; the 200 is no longer
    // retransmitted.
    feed(
        &mut core,
        t0 + 1_200,
        a.src,
        &ack(20, "z9hG4bKnosdpack1", answer),
    );
    assert_eq!(answers().len(), 1);
    core.handle_timeout(t0 + 6_000);
    assert!(!drain(&mut core)
        .0
        .iter()
        .any(|(_, m)| m.code() == Some(200)));
    // A re-INVITE with SDP: its ACK's body is no answer (nothing pending).
    let with_sdp = reinvite(21, "z9hG4bKsdp2").replace(
        "Content-Length: 0\r\n\r\n",
        "Content-Type: application/sdp\r\nContent-Length: 10\r\n\r\na=sendonly",
    );
    let (sent, _) = feed(&mut core, t0 + 7_000, a.src, &with_sdp);
    assert_eq!(sent[0].1.code(), Some(200));
    feed(
        &mut core,
        t0 + 7_100,
        a.src,
        &ack(21, "z9hG4bKsdpack2", "v=0 stray"),
    );
    assert_eq!(answers().len(), 1);
    // An answer the media plane cannot use ends the call (RFC 3261
    // §13.3.1.4): BYE on both legs.
    plane.0.lock().refuse = Some("unusable".into());
    let (sent, _) = feed(&mut core, t0 + 8_000, a.src, &reinvite(22, "z9hG4bKnosdp3"));
    assert_eq!(sent[0].1.code(), Some(200));
    let (sent, outs) = feed(
        &mut core,
        t0 + 8_100,
        a.src,
        &ack(22, "z9hG4bKnosdpack3", "v=0 unusable"),
    );
    assert_eq!(byes_to(&sent, a.src), 1, "{sent:?}");
    assert_eq!(byes_to(&sent, b1.src), 1, "{sent:?}");
    assert_eq!(cdr_finish(&outs), Some(HangupCause::Failed));
}
