//! Originate on virtual time: the agent rung without SDP, its offer sent
//! on to the carrier as its own call, the carrier's answer given to the
//! agent in the ACK, and every way it can end before that.

use super::outbound_calls::{carrier_reply, core_with, to, trunk};
use super::*;
use crate::core::endpoint::{OriginateError, OriginateRequest};
use domain::calls::Direction;

const T1: u16 = 5091;
const AGENT: u16 = 5071;
const AGENT_SDP: &str = "v=0\r\nagent=1";

fn request(number: &str) -> OriginateRequest {
    OriginateRequest {
        agent_username: "alice".into(),
        number: number.into(),
        campaign_trunks: None,
    }
}

fn started(outs: &[Output]) -> Option<(String, Direction, String, String)> {
    outs.iter().find_map(|o| match o {
        Output::Call(CallEvent {
            call_id,
            kind:
                CallEventKind::Started {
                    direction,
                    caller,
                    callee,
                    ..
                },
            ..
        }) => Some((
            call_id.clone(),
            *direction,
            caller.number.clone(),
            callee.number.clone(),
        )),
        _ => None,
    })
}

/// Originates `number` for alice; returns the call id and our INVITE to
/// her softphone.
fn ring_agent(core: &mut Core, number: &str, now: u64) -> (String, Msg) {
    ring_agent_for(core, &request(number), now)
}

/// Like [`ring_agent`] with a whole request.
fn ring_agent_for(core: &mut Core, req: &OriginateRequest, now: u64) -> (String, Msg) {
    let number = req.number.as_str();
    let call_id = core.originate(now, req).expect("originated");
    let (sent, outs) = drain(core);
    // The record starts as the agent's phone rings: listed, and can be hung up.
    assert_eq!(
        started(&outs),
        Some((
            call_id.clone(),
            Direction::Outbound,
            "1000".into(),
            number.into()
        ))
    );
    let invites = to(&sent, AGENT);
    assert_eq!(invites.len(), 1, "{sent:?}");
    let inv = invites[0].clone();
    assert_eq!(inv.method(), Some("INVITE"));
    assert_eq!(inv.call_id(), call_id);
    assert!(inv.body.is_empty(), "a late offer: the agent makes it");
    assert!(inv.header("From").unwrap_or("").contains(number));
    (call_id, inv)
}

/// The agent's 200 to our INVITE, with its offer.
fn agent_answer(inv: &Msg, body: &str) -> String {
    let mut r = response(inv, 200, "OK", Some("agenttag"));
    r.headers
        .push(("Contact".into(), format!("<sip:alice@127.0.0.1:{AGENT}>")));
    if !body.is_empty() {
        r.headers
            .push(("Content-Type".into(), "application/sdp".into()));
        r.body = body.as_bytes().to_vec();
    }
    String::from_utf8(r.to_bytes()).expect("text")
}

/// A request from the agent inside the originated dialog.
fn agent_request(method: &str, call_id: &str, our_tag: &str, cseq: u32) -> String {
    format!(
        "{method} sip:centralita@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{AGENT};branch=z9hG4bKagent{cseq}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=agenttag\r\nTo: <sip:600111222@127.0.0.1:5060>;tag={our_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

fn our_tag(inv: &Msg) -> String {
    msg::tag(inv.header("From").unwrap_or(""))
        .unwrap_or("")
        .to_string()
}

fn reason_code(m: &Msg) -> Option<String> {
    let r = m.header("Reason")?;
    let code = r.split("cause=").nth(1)?;
    Some(code.chars().take_while(|c| c.is_ascii_digit()).collect())
}

#[test]
fn the_agent_answers_then_the_customer_and_both_talk_until_the_agent_hangs_up() {
    let (mut core, a) = core_with(vec![trunk(1, T1, 0)]);
    let (call_id, inv) = ring_agent(&mut core, "600111222", 2_000);
    // The agent answers with its offer: the carrier gets it as alice's call.
    let (sent, outs) = feed(&mut core, 3_000, a.src, &agent_answer(&inv, AGENT_SDP));
    assert!(
        to(&sent, AGENT).is_empty(),
        "no ACK before an answer: {sent:?}"
    );
    let carrier = to(&sent, T1);
    assert_eq!(carrier.len(), 1, "{sent:?}");
    let out_inv = carrier[0].clone();
    assert_eq!(out_inv.method(), Some("INVITE"));
    assert_eq!(out_inv.body, AGENT_SDP.as_bytes());
    assert!(out_inv.ruri().starts_with("sip:600111222@"));
    assert_eq!(started(&outs), None, "started once, when the agent rang");
    // A retransmitted 200 from the agent is not acknowledged yet.
    let (sent, _) = feed(&mut core, 3_500, a.src, &agent_answer(&inv, AGENT_SDP));
    assert!(sent.is_empty(), "{sent:?}");
    // Early media: the carrier's answer reaches the agent in the ACK.
    let (sent, _) = feed(
        &mut core,
        4_000,
        udp(T1),
        &carrier_reply(&out_inv, 183, &[]),
    );
    let acks = to(&sent, AGENT);
    assert_eq!(acks.len(), 1, "{sent:?}");
    assert_eq!(acks[0].method(), Some("ACK"));
    assert_eq!(acks[0].body, b"v=0\r\ny=2");
    assert_eq!(acks[0].cseq().0, 1);
    assert!(acks[0].header("To").unwrap_or("").contains("tag=agenttag"));
    assert_eq!(acks[0].call_id(), call_id);
    // Now a retransmitted 200 gets that ACK again.
    let (sent, _) = feed(&mut core, 4_100, a.src, &agent_answer(&inv, AGENT_SDP));
    assert_eq!(to(&sent, AGENT).len(), 1);
    assert_eq!(to(&sent, AGENT)[0].method(), Some("ACK"));
    // The customer answers: the carrier is acknowledged, the agent has its answer already.
    let (sent, outs) = feed(
        &mut core,
        9_000,
        udp(T1),
        &carrier_reply(&out_inv, 200, &[]),
    );
    assert_eq!(
        to(&sent, T1).iter().map(|m| m.method()).collect::<Vec<_>>(),
        vec![Some("ACK")]
    );
    assert!(to(&sent, AGENT).is_empty(), "{sent:?}");
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Call(CallEvent {
            kind: CallEventKind::Answered { .. },
            ..
        })
    )));
    // The agent hangs up: the dialog lines up with the call's caller leg.
    let tag = our_tag(&inv);
    let (sent, outs) = feed(
        &mut core,
        20_000,
        a.src,
        &agent_request("BYE", &call_id, &tag, 7),
    );
    let answer = to(&sent, AGENT);
    assert_eq!(answer.len(), 1, "{sent:?}");
    assert_eq!(answer[0].code(), Some(200));
    assert_eq!(to(&sent, T1)[0].method(), Some("BYE"));
    assert_eq!(cdr_finish(&outs), Some(HangupCause::CallerBye));
}

#[test]
fn the_customer_hangs_up_and_the_agent_gets_the_bye_on_its_real_flow() {
    let (mut core, a) = core_with(vec![trunk(1, T1, 0)]);
    let (call_id, inv) = ring_agent(&mut core, "600111222", 2_000);
    let (sent, _) = feed(&mut core, 3_000, a.src, &agent_answer(&inv, AGENT_SDP));
    let out_inv = to(&sent, T1)[0].clone();
    // No early media: the 200's answer goes in the ACK.
    let (sent, _) = feed(
        &mut core,
        5_000,
        udp(T1),
        &carrier_reply(&out_inv, 200, &[]),
    );
    let acks = to(&sent, AGENT);
    assert_eq!(acks.len(), 1, "{sent:?}");
    assert_eq!(acks[0].body, b"v=0\r\ny=2");
    // The carrier's BYE reaches the agent, in the agent's dialog.
    let bye = format!(
        "BYE sip:centralita@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{T1};branch=z9hG4bKcbye\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n",
        carrier_reply(&out_inv, 200, &[])
            .lines()
            .find_map(|l| l.strip_prefix("To: "))
            .unwrap_or(""),
        out_inv.header("From").unwrap_or(""),
        out_inv.call_id()
    );
    let (sent, outs) = feed(&mut core, 30_000, udp(T1), &bye);
    let to_agent = to(&sent, AGENT);
    assert_eq!(to_agent.len(), 1, "{sent:?}");
    assert_eq!(to_agent[0].method(), Some("BYE"));
    assert_eq!(to_agent[0].call_id(), call_id);
    assert!(to_agent[0]
        .header("From")
        .unwrap_or("")
        .contains(&format!("tag={}", our_tag(&inv))));
    assert!(to_agent[0]
        .header("To")
        .unwrap_or("")
        .contains("tag=agenttag"));
    assert!(to_agent[0].cseq().0 > 1);
    assert_eq!(cdr_finish(&outs), Some(HangupCause::CalleeBye));
}

#[test]
fn a_busy_customer_ends_the_agents_call_with_the_reason() {
    let (mut core, a) = core_with(vec![trunk(1, T1, 0)]);
    let (_, inv) = ring_agent(&mut core, "600111222", 2_000);
    let (sent, _) = feed(&mut core, 3_000, a.src, &agent_answer(&inv, AGENT_SDP));
    let out_inv = to(&sent, T1)[0].clone();
    let (sent, outs) = feed(
        &mut core,
        4_000,
        udp(T1),
        &carrier_reply(&out_inv, 486, &[]),
    );
    let to_agent = to(&sent, AGENT);
    let methods: Vec<_> = to_agent.iter().map(|m| m.method()).collect();
    assert_eq!(methods, vec![Some("ACK"), Some("BYE")], "{sent:?}");
    assert_eq!(reason_code(&to_agent[1]).as_deref(), Some("486"));
    assert_eq!(cdr_finish(&outs), Some(HangupCause::Busy));
    // No failover on busy, and nothing is retransmitted to the synthetic caller.
    let (sent, _) = {
        core.handle_timeout(40_000);
        drain(&mut core)
    };
    assert!(to(&sent, T1).iter().all(|m| m.method() != Some("INVITE")));
}

#[test]
fn the_dial_plan_refuses_an_originated_number_as_it_would_the_agents_own_call() {
    let (mut core, a) = core_with(vec![trunk(1, T1, 0)]);
    let (_, inv) = ring_agent(&mut core, "0033123456789", 2_000);
    let (sent, outs) = feed(&mut core, 3_000, a.src, &agent_answer(&inv, AGENT_SDP));
    assert!(to(&sent, T1).is_empty(), "nothing goes out: {sent:?}");
    let to_agent = to(&sent, AGENT);
    let methods: Vec<_> = to_agent.iter().map(|m| m.method()).collect();
    assert_eq!(methods, vec![Some("ACK"), Some("BYE")], "{sent:?}");
    assert_eq!(reason_code(&to_agent[1]).as_deref(), Some("403"));
    assert_eq!(cdr_finish(&outs), Some(HangupCause::DialNotPermitted));
}

#[test]
fn an_agent_who_does_not_answer_is_cancelled_and_recorded() {
    let (mut core, a) = core_with(vec![trunk(1, T1, 0)]);
    let (call_id, inv) = ring_agent(&mut core, "600111222", 2_000);
    core.handle_timeout(2_000 + 30_000);
    let (sent, _) = drain(&mut core);
    // (The INVITE was retransmitted meanwhile: the softphone never said 100.)
    let cancels: Vec<Msg> = to(&sent, AGENT)
        .into_iter()
        .filter(|m| m.method() != Some("INVITE"))
        .collect();
    assert_eq!(cancels.len(), 1, "{sent:?}");
    assert_eq!(cancels[0].method(), Some("CANCEL"));
    assert_eq!(cancels[0].top_branch(), inv.top_branch());
    // The softphone answers the CANCEL and 487 to the INVITE.
    let r487 =
        String::from_utf8(response(&inv, 487, "Request Terminated", Some("agenttag")).to_bytes())
            .expect("text");
    let (sent, outs) = feed(&mut core, 32_100, a.src, &r487);
    assert_eq!(
        to(&sent, AGENT)
            .iter()
            .map(|m| m.method())
            .collect::<Vec<_>>(),
        vec![Some("ACK")]
    );
    assert_eq!(cdr_finish(&outs), Some(HangupCause::NoAnswer));
    assert!(outs.iter().all(|o| match o {
        Output::Call(e) => e.call_id == call_id,
        _ => true,
    }));
    assert!(to(&sent, T1).is_empty());
}

#[test]
fn an_agent_who_declines_is_recorded_busy_and_a_hang_up_request_cancels_the_ringing() {
    let (mut core, a) = core_with(vec![trunk(1, T1, 0)]);
    let (_, inv) = ring_agent(&mut core, "600111222", 2_000);
    let busy = String::from_utf8(response(&inv, 486, "Busy Here", Some("agenttag")).to_bytes())
        .expect("text");
    let (sent, outs) = feed(&mut core, 3_000, a.src, &busy);
    assert_eq!(to(&sent, AGENT)[0].method(), Some("ACK"));
    assert_eq!(cdr_finish(&outs), Some(HangupCause::Busy));

    let (call_id, _) = ring_agent(&mut core, "600111222", 4_000);
    assert!(core.hang_up(4_500, &call_id));
    let (sent, outs) = drain(&mut core);
    assert_eq!(to(&sent, AGENT)[0].method(), Some("CANCEL"));
    assert_eq!(cdr_finish(&outs), Some(HangupCause::ForcedHangup));
    assert!(!core.hang_up(4_600, &call_id), "once");
}

#[test]
fn the_agent_hanging_up_while_the_customer_rings_cancels_the_customer() {
    let (mut core, a) = core_with(vec![trunk(1, T1, 0)]);
    let (call_id, inv) = ring_agent(&mut core, "600111222", 2_000);
    let (sent, _) = feed(&mut core, 3_000, a.src, &agent_answer(&inv, AGENT_SDP));
    let out_inv = to(&sent, T1)[0].clone();
    feed(
        &mut core,
        3_500,
        udp(T1),
        &carrier_reply(&out_inv, 183, &[]),
    );
    let (sent, outs) = feed(
        &mut core,
        6_000,
        a.src,
        &agent_request("BYE", &call_id, &our_tag(&inv), 3),
    );
    assert_eq!(to(&sent, AGENT)[0].code(), Some(200), "{sent:?}");
    assert_eq!(
        to(&sent, AGENT).len(),
        1,
        "no BYE back to the agent: {sent:?}"
    );
    assert_eq!(to(&sent, T1)[0].method(), Some("CANCEL"));
    assert_eq!(cdr_finish(&outs), Some(HangupCause::Cancelled));
}

#[test]
fn a_customer_ringing_past_the_agents_patience_is_given_up() {
    let (mut core, a) = core_with(vec![trunk(1, T1, 0)]);
    let (_, inv) = ring_agent(&mut core, "600111222", 2_000);
    let (sent, _) = feed(&mut core, 3_000, a.src, &agent_answer(&inv, AGENT_SDP));
    let out_inv = to(&sent, T1)[0].clone();
    feed(
        &mut core,
        3_500,
        udp(T1),
        &carrier_reply(&out_inv, 180, &[]),
    );
    core.handle_timeout(3_000 + 30_000);
    let (sent, outs) = drain(&mut core);
    assert_eq!(to(&sent, T1)[0].method(), Some("CANCEL"), "{sent:?}");
    let to_agent = to(&sent, AGENT);
    let methods: Vec<_> = to_agent.iter().map(|m| m.method()).collect();
    assert_eq!(methods, vec![Some("ACK"), Some("BYE")], "{sent:?}");
    assert_eq!(cdr_finish(&outs), Some(HangupCause::NoAnswer));
}

#[test]
fn a_campaigns_originate_goes_out_on_the_campaigns_trunks_in_its_order() {
    const T2: u16 = 5092;
    const T3: u16 = 5094;
    let (mut core, a) = core_with(vec![trunk(1, T1, 0), trunk(2, T2, 1), trunk(3, T3, 2)]);
    // The route's first trunk is 1; the campaign lists 3 then 2.
    let req = OriginateRequest {
        campaign_trunks: Some(vec![3, 2]),
        ..request("600111222")
    };
    let (_, inv) = ring_agent_for(&mut core, &req, 2_000);
    let (sent, _) = feed(&mut core, 3_000, a.src, &agent_answer(&inv, AGENT_SDP));
    assert!(to(&sent, T1).is_empty(), "not the route's trunk: {sent:?}");
    assert!(to(&sent, T2).is_empty(), "the campaign's first: {sent:?}");
    let out_inv = to(&sent, T3);
    assert_eq!(out_inv.len(), 1, "{sent:?}");
    assert_eq!(out_inv[0].method(), Some("INVITE"));
    // The carrier fails: the next trunk is the campaign's second, not 1.
    let (sent, _) = feed(
        &mut core,
        3_500,
        udp(T3),
        &carrier_reply(&out_inv[0], 503, &[]),
    );
    assert!(to(&sent, T1).is_empty(), "{sent:?}");
    let next = to(&sent, T2);
    assert_eq!(next.len(), 1, "{sent:?}");
    assert_eq!(next[0].method(), Some("INVITE"));
    let (sent, outs) = feed(
        &mut core,
        4_000,
        udp(T2),
        &carrier_reply(&next[0], 200, &[]),
    );
    assert_eq!(to(&sent, T2)[0].method(), Some("ACK"), "{sent:?}");
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Call(CallEvent {
            kind: CallEventKind::Answered { .. },
            ..
        })
    )));

    // The same originate without a campaign takes the route's first trunk.
    let (_, inv) = ring_agent(&mut core, "600111223", 10_000);
    let (sent, _) = feed(&mut core, 11_000, a.src, &agent_answer(&inv, AGENT_SDP));
    assert_eq!(to(&sent, T1).len(), 1, "{sent:?}");
    assert!(to(&sent, T3).is_empty(), "{sent:?}");
}

#[test]
fn bad_requests_are_refused_before_anything_rings() {
    let (mut core, _) = core_with(vec![trunk(1, T1, 0)]);
    assert_eq!(
        core.originate(1_000, &request("12a")),
        Err(OriginateError::InvalidNumber("12a".into()))
    );
    let nobody = OriginateRequest {
        agent_username: "mallory".into(),
        number: "600111222".into(),
        campaign_trunks: None,
    };
    assert!(matches!(
        core.originate(1_000, &nobody),
        Err(OriginateError::UnknownAgent(_))
    ));
    core.cache_account(account("carol", "1002", "pc"));
    let unregistered = OriginateRequest {
        agent_username: "carol".into(),
        number: "600111222".into(),
        campaign_trunks: None,
    };
    assert_eq!(
        core.originate(1_000, &unregistered),
        Err(OriginateError::NotRegistered)
    );
    assert!(drain(&mut core).0.is_empty());
}
