//! Call events from what passes through the relay (sans-IO): one call per
//! Call-ID, started by its first INVITE without a To tag.
//!
//! A call between two browsers that both use the relay passes twice (out
//! on the caller's flow, back in on the callee's): every message is seen
//! on both flows, so each step is taken once, by the first copy, and the
//! state only moves forward (started → ringing → answered → ended).
//!
//! The tracker knows numbers only; whether a number is an agent (and so
//! the call's direction) is looked up by the shell before the events are
//! recorded: [`CallEventKind::Started`] carries `Direction::Outbound` and
//! no agent ids until then.

use std::collections::HashMap;

use domain::{CallEvent, CallEventKind, Direction, HangupCause, Party};
use sip::core::msg::{self, Msg};

use crate::core::Side;

/// Calls not answered and silent for this long are closed as failed (the
/// caller gave up after a challenge, a message was lost).
pub const STALE_UNANSWERED_MS: u64 = 180_000;
/// Answered calls silent for this long are closed (no BYE ever passed).
pub const STALE_ANSWERED_MS: u64 = 4 * 3_600_000;
/// Ended calls are remembered this long to absorb the second copy of
/// their last messages.
pub const ENDED_KEPT_MS: u64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Started,
    Ringing,
    Answered,
    Ended,
}

#[derive(Debug)]
struct Track {
    phase: Phase,
    caller_tag: String,
    last_ms: u64,
    /// The flow of the browser that placed the call, when one did.
    caller_flow: Option<u64>,
    /// Every flow the call's messages passed.
    flows: Vec<u64>,
}

/// Calls seen so far, by Call-ID.
#[derive(Debug, Default)]
pub struct CallTracker {
    calls: HashMap<String, Track>,
}

impl CallTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls started and not ended.
    pub fn active(&self) -> u64 {
        self.calls
            .values()
            .filter(|t| t.phase != Phase::Ended)
            .count() as u64
    }

    /// The events `m` (relayed at `now_ms` on `flow`, from `side`) means.
    pub fn observe(&mut self, m: &Msg, flow: u64, side: Side, now_ms: u64) -> Vec<CallEvent> {
        let out = self.step(m, flow, side, now_ms);
        if let Some(t) = self.calls.get_mut(m.call_id()) {
            if !t.flows.contains(&flow) {
                t.flows.push(flow);
            }
        }
        out
    }

    /// A browser's flow closed: the calls it carried that are not over end
    /// now (the browser is gone; no BYE will pass for it).
    pub fn flow_closed(&mut self, flow: u64, now_ms: u64) -> Vec<CallEvent> {
        let mut out = Vec::new();
        for (id, t) in &mut self.calls {
            if t.phase == Phase::Ended || !t.flows.contains(&flow) {
                continue;
            }
            let cause = if t.caller_flow == Some(flow) {
                HangupCause::CallerConnectionLost
            } else {
                HangupCause::CalleeConnectionLost
            };
            t.phase = Phase::Ended;
            t.last_ms = now_ms;
            for kind in [
                CallEventKind::LegEnded {
                    leg: 1,
                    cause,
                    sip_code: None,
                },
                CallEventKind::Ended { cause },
            ] {
                out.push(CallEvent {
                    call_id: id.clone(),
                    at_ms: now_ms,
                    kind,
                });
            }
        }
        out
    }

    fn step(&mut self, m: &Msg, flow: u64, side: Side, now_ms: u64) -> Vec<CallEvent> {
        let call_id = m.call_id().to_string();
        let ev = |kind| CallEvent {
            call_id: call_id.clone(),
            at_ms: now_ms,
            kind,
        };
        let mut out = Vec::new();
        if let Some(method) = m.method() {
            let to_tag = m.header("To").and_then(msg::tag);
            if method == "INVITE" && to_tag.is_none() && !self.calls.contains_key(&call_id) {
                let from = m.header("From").unwrap_or("");
                let caller = msg::uri_user(msg::addr_uri(from)).unwrap_or("").to_string();
                // The number dialled: the Request-URI's user, unless the PBX
                // already retargeted it to a browser's contact (ours, marked):
                // then the To user (the extension called).
                let to_user = msg::uri_user(msg::addr_uri(m.header("To").unwrap_or("")));
                let callee = if msg::param(m.ruri(), crate::core::MARK).is_some() {
                    to_user
                } else {
                    msg::uri_user(m.ruri()).or(to_user)
                }
                .unwrap_or("")
                .to_string();
                self.calls.insert(
                    call_id.clone(),
                    Track {
                        phase: Phase::Started,
                        caller_tag: msg::tag(from).unwrap_or("").to_string(),
                        last_ms: now_ms,
                        caller_flow: (side == Side::Browser).then_some(flow),
                        flows: Vec::new(),
                    },
                );
                let callee = Party {
                    number: callee,
                    agent_id: None,
                };
                out.push(ev(CallEventKind::Started {
                    direction: Direction::Outbound,
                    caller: Party {
                        number: caller,
                        agent_id: None,
                    },
                    callee: callee.clone(),
                    transport: "relay".into(),
                }));
                out.push(ev(CallEventKind::LegAdded {
                    leg: 1,
                    party: callee,
                    transport: "relay".into(),
                }));
                return out;
            }
            let Some(t) = self.calls.get_mut(&call_id) else {
                return out;
            };
            t.last_ms = now_ms;
            let cause = match method {
                "CANCEL" if t.phase < Phase::Answered => HangupCause::Cancelled,
                "BYE" if t.phase < Phase::Ended => {
                    let from_tag = m.header("From").and_then(msg::tag).unwrap_or("");
                    if from_tag == t.caller_tag {
                        HangupCause::CallerBye
                    } else {
                        HangupCause::CalleeBye
                    }
                }
                _ => return out,
            };
            t.phase = Phase::Ended;
            out.push(ev(CallEventKind::LegEnded {
                leg: 1,
                cause,
                sip_code: None,
            }));
            out.push(ev(CallEventKind::Ended { cause }));
            return out;
        }
        let (Some(code), (_, "INVITE")) = (m.code(), m.cseq()) else {
            return out;
        };
        let Some(t) = self.calls.get_mut(&call_id) else {
            return out;
        };
        t.last_ms = now_ms;
        match code {
            180 | 183 if t.phase == Phase::Started => {
                t.phase = Phase::Ringing;
                out.push(ev(CallEventKind::Ringing { leg: 1 }));
            }
            200..=299 if t.phase < Phase::Answered => {
                t.phase = Phase::Answered;
                out.push(ev(CallEventKind::Answered { leg: 1 }));
            }
            // A challenge: the caller answers it with the same Call-ID.
            401 | 407 => {}
            300..=699 if t.phase < Phase::Answered => {
                t.phase = Phase::Ended;
                let cause = HangupCause::from_sip_code(code);
                out.push(ev(CallEventKind::LegEnded {
                    leg: 1,
                    cause,
                    sip_code: Some(code),
                }));
                out.push(ev(CallEventKind::Ended { cause }));
            }
            _ => {}
        }
        out
    }

    /// The flow from which call `call_id` can be ended (a hang-up from
    /// the console): the caller's browser flow when a browser placed it,
    /// else the first flow it passed. `None` when the call is unknown or
    /// over.
    pub fn hang_up_flow(&self, call_id: &str) -> Option<u64> {
        let t = self
            .calls
            .get(call_id)
            .filter(|t| t.phase != Phase::Ended)?;
        t.caller_flow.or_else(|| t.flows.first().copied())
    }

    /// Ends call `call_id` now with `cause` (the relay hangs it up: the
    /// BYEs or CANCEL that follow pass as the second copy of an ended
    /// call). Nothing when it is unknown or over.
    pub fn end(&mut self, call_id: &str, cause: HangupCause, now_ms: u64) -> Vec<CallEvent> {
        let Some(t) = self
            .calls
            .get_mut(call_id)
            .filter(|t| t.phase != Phase::Ended)
        else {
            return Vec::new();
        };
        t.phase = Phase::Ended;
        t.last_ms = now_ms;
        [
            CallEventKind::LegEnded {
                leg: 1,
                cause,
                sip_code: None,
            },
            CallEventKind::Ended { cause },
        ]
        .into_iter()
        .map(|kind| CallEvent {
            call_id: call_id.to_string(),
            at_ms: now_ms,
            kind,
        })
        .collect()
    }

    /// Ends every call not over yet with `cause` (the server stops: no
    /// BYE of theirs will be seen any more).
    pub fn end_all(&mut self, cause: HangupCause, now_ms: u64) -> Vec<CallEvent> {
        let mut out = Vec::new();
        for (id, t) in &mut self.calls {
            if t.phase == Phase::Ended {
                continue;
            }
            t.phase = Phase::Ended;
            t.last_ms = now_ms;
            out.push(CallEvent {
                call_id: id.clone(),
                at_ms: now_ms,
                kind: CallEventKind::Ended { cause },
            });
        }
        out
    }

    /// Closes calls that went silent and forgets ended ones.
    pub fn sweep(&mut self, now_ms: u64) -> Vec<CallEvent> {
        let mut out = Vec::new();
        self.calls.retain(|id, t| {
            let idle = now_ms.saturating_sub(t.last_ms);
            let stale = match t.phase {
                Phase::Ended => return idle < ENDED_KEPT_MS,
                Phase::Answered => idle >= STALE_ANSWERED_MS,
                Phase::Started | Phase::Ringing => idle >= STALE_UNANSWERED_MS,
            };
            if stale {
                let cause = if t.phase == Phase::Answered {
                    HangupCause::CallerConnectionLost
                } else {
                    HangupCause::Failed
                };
                t.phase = Phase::Ended;
                t.last_ms = now_ms;
                out.push(CallEvent {
                    call_id: id.clone(),
                    at_ms: now_ms,
                    kind: CallEventKind::Ended { cause },
                });
            }
            true
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip::core::msg::Limits;

    fn parse(s: &str) -> Msg {
        Msg::parse(s.replace('\n', "\r\n").as_bytes(), &Limits::default()).expect("parse")
    }

    fn req(method: &str, ruri: &str, from_tag: &str, to_tag: Option<&str>) -> Msg {
        let to = to_tag.map_or(String::new(), |t| format!(";tag={t}"));
        parse(&format!(
            "{method} {ruri} SIP/2.0\nVia: SIP/2.0/WS a.invalid;branch=z9hG4bK1\nFrom: <sip:1000@pbx.test>;tag={from_tag}\nTo: <sip:1001@pbx.test>{to}\nCall-ID: c1\nCSeq: 2 {method}\nContent-Length: 0\n\n"
        ))
    }

    fn resp(code: u16, method: &str) -> Msg {
        parse(&format!(
            "SIP/2.0 {code} X\nVia: SIP/2.0/WS a.invalid;branch=z9hG4bK1\nFrom: <sip:1000@pbx.test>;tag=a\nTo: <sip:1001@pbx.test>;tag=b\nCall-ID: c1\nCSeq: 2 {method}\nContent-Length: 0\n\n"
        ))
    }

    impl CallTracker {
        /// As seen on flow 1, from the browser.
        fn observe_b(&mut self, m: &Msg, now_ms: u64) -> Vec<CallEvent> {
            self.observe(m, 1, Side::Browser, now_ms)
        }
    }

    fn kinds(evs: &[CallEvent]) -> Vec<String> {
        evs.iter()
            .map(|e| {
                format!("{:?}", e.kind)
                    .split([' ', '{'])
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn answered_call_seen_twice_gives_one_set_of_events() {
        let mut t = CallTracker::new();
        let mut all = Vec::new();
        // Every message passes twice (caller's flow and callee's flow).
        for m in [
            req("INVITE", "sip:1001@pbx.test", "a", None),
            resp(407, "INVITE"),
            req("INVITE", "sip:1001@pbx.test", "a", None),
            req("INVITE", "sip:1001@127.0.0.1:5070", "a", None),
            resp(180, "INVITE"),
            resp(180, "INVITE"),
            resp(200, "INVITE"),
            resp(200, "INVITE"),
            req("BYE", "sip:1001@127.0.0.1:5070", "b", Some("a")),
            req("BYE", "sip:1000@127.0.0.1:5071", "b", Some("a")),
            resp(200, "BYE"),
        ] {
            all.extend(t.observe_b(&m, 1_000));
        }
        assert_eq!(
            kinds(&all),
            ["Started", "LegAdded", "Ringing", "Answered", "LegEnded", "Ended"]
        );
        match &all[0].kind {
            CallEventKind::Started { caller, callee, .. } => {
                assert_eq!(
                    (caller.number.as_str(), callee.number.as_str()),
                    ("1000", "1001")
                );
            }
            k => panic!("{k:?}"),
        }
        // The BYE's From tag is the callee's: the callee hung up.
        assert_eq!(
            all[5].kind,
            CallEventKind::Ended {
                cause: HangupCause::CalleeBye
            }
        );
        assert_eq!(t.active(), 0);
    }

    #[test]
    fn a_call_from_the_pbx_to_a_browser_contact_is_for_the_to_user() {
        let mut t = CallTracker::new();
        let evs = t.observe_b(
            &req(
                "INVITE",
                "sip:k7x@127.0.0.1:5070;transport=udp;crl=3",
                "p",
                None,
            ),
            1,
        );
        match &evs[0].kind {
            CallEventKind::Started { callee, .. } => assert_eq!(callee.number, "1001"),
            k => panic!("{k:?}"),
        }
    }

    /// A browser's WebSocket closes with its call up: the call ends with
    /// its connection lost (caller's or callee's), once.
    #[test]
    fn a_closed_flow_ends_its_calls() {
        let mut t = CallTracker::new();
        let inv = req("INVITE", "sip:1001@pbx.test", "a", None);
        t.observe(&inv, 1, Side::Browser, 1);
        t.observe(&inv, 2, Side::Upstream, 1);
        t.observe(&resp(200, "INVITE"), 2, Side::Browser, 2);
        assert!(t.flow_closed(9, 3).is_empty(), "another flow");
        let evs = t.flow_closed(2, 3);
        assert_eq!(
            evs.last().map(|e| &e.kind),
            Some(&CallEventKind::Ended {
                cause: HangupCause::CalleeConnectionLost
            })
        );
        assert!(t.flow_closed(1, 4).is_empty(), "already ended");
        let mut t = CallTracker::new();
        t.observe(&inv, 1, Side::Browser, 1);
        let evs = t.flow_closed(1, 2);
        assert_eq!(
            evs.last().map(|e| &e.kind),
            Some(&CallEventKind::Ended {
                cause: HangupCause::CallerConnectionLost
            })
        );
    }

    #[test]
    fn a_hang_up_goes_to_the_callers_flow_and_ends_the_call_once() {
        let mut t = CallTracker::new();
        let inv = req("INVITE", "sip:1001@pbx.test", "a", None);
        assert_eq!(t.hang_up_flow("c1"), None, "unknown");
        // From the PBX to flow 2 first, then a browser's copy on flow 1:
        // the caller's browser flow is the first that saw it from a browser.
        t.observe(&inv, 2, Side::Upstream, 1);
        assert_eq!(t.hang_up_flow("c1"), Some(2), "no browser placed it");
        let mut t = CallTracker::new();
        t.observe(&inv, 1, Side::Browser, 1);
        t.observe(&inv, 2, Side::Upstream, 1);
        assert_eq!(t.hang_up_flow("c1"), Some(1));
        let evs = t.end("c1", HangupCause::ForcedHangup, 5);
        assert_eq!(
            evs.iter().map(|e| &e.kind).collect::<Vec<_>>(),
            [
                &CallEventKind::LegEnded {
                    leg: 1,
                    cause: HangupCause::ForcedHangup,
                    sip_code: None
                },
                &CallEventKind::Ended {
                    cause: HangupCause::ForcedHangup
                }
            ]
        );
        assert_eq!(t.hang_up_flow("c1"), None, "over");
        assert!(t.end("c1", HangupCause::ForcedHangup, 6).is_empty());
        // The BYEs that follow change nothing.
        assert!(t
            .observe_b(&req("BYE", "sip:b@x", "a", Some("b")), 7)
            .is_empty());
        assert_eq!(t.active(), 0);
    }

    #[test]
    fn end_all_closes_open_calls_once() {
        let mut t = CallTracker::new();
        t.observe_b(&req("INVITE", "sip:1001@pbx.test", "a", None), 1);
        let evs = t.end_all(HangupCause::Shutdown, 2);
        assert_eq!(kinds(&evs), ["Ended"]);
        assert!(t.end_all(HangupCause::Shutdown, 3).is_empty());
        assert!(t.flow_closed(1, 4).is_empty());
    }

    #[test]
    fn cancel_and_busy_end_unanswered_calls() {
        let mut t = CallTracker::new();
        t.observe_b(&req("INVITE", "sip:1001@pbx.test", "a", None), 1);
        let evs = t.observe_b(&req("CANCEL", "sip:1001@pbx.test", "a", None), 2);
        assert_eq!(
            evs.last().map(|e| &e.kind),
            Some(&CallEventKind::Ended {
                cause: HangupCause::Cancelled
            })
        );
        // The 487 that follows changes nothing.
        assert!(t.observe_b(&resp(487, "INVITE"), 3).is_empty());

        let mut t = CallTracker::new();
        t.observe_b(&req("INVITE", "sip:1001@pbx.test", "a", None), 1);
        let evs = t.observe_b(&resp(486, "INVITE"), 2);
        assert_eq!(
            evs.last().map(|e| &e.kind),
            Some(&CallEventKind::Ended {
                cause: HangupCause::Busy
            })
        );
    }

    #[test]
    fn caller_bye_and_stale_calls() {
        let mut t = CallTracker::new();
        t.observe_b(&req("INVITE", "sip:1001@pbx.test", "a", None), 1);
        t.observe_b(&resp(200, "INVITE"), 2);
        let evs = t.observe_b(&req("BYE", "sip:1001@x", "a", Some("b")), 3);
        assert_eq!(
            evs.last().map(|e| &e.kind),
            Some(&CallEventKind::Ended {
                cause: HangupCause::CallerBye
            })
        );
        // Unanswered and silent: closed by the sweep, then forgotten.
        let mut t = CallTracker::new();
        t.observe_b(&req("INVITE", "sip:1001@pbx.test", "a", None), 0);
        assert!(t.sweep(STALE_UNANSWERED_MS - 1).is_empty());
        let evs = t.sweep(STALE_UNANSWERED_MS);
        assert_eq!(kinds(&evs), ["Ended"]);
        assert_eq!(t.active(), 0);
        t.sweep(STALE_UNANSWERED_MS + ENDED_KEPT_MS);
        assert!(t.calls.is_empty());
    }
}
