//! Routing policy: what a dialled number means. One pure function over a
//! read-only view of domain data ([`Directory`]); no IO, no clock. Engines
//! carry the [`Decision`] out (the builtin B2BUA forks to the agent's
//! contacts or answers the refusal). Trunks, queues and IVRs arrive as new
//! `Decision` variants and new rules here, not as branches in protocol code.

use crate::call_events::HangupCause;
use crate::dialplan::{
    self, DialPermission, NumberingPlan, OutboundLimits, OutboundRoute, OutboundUsage, Refusal,
    TrunkState,
};
use crate::dids::{DidTarget, InboundRoutes};

/// Who is calling, as the engine authenticated them.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub username: &'a str,
    pub extension: &'a str,
    pub agent_id: Option<i64>,
}

/// An agent a call can be sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTarget {
    pub username: String,
    pub extension: String,
    pub agent_id: Option<i64>,
}

/// The domain data routing reads. Engines implement it over what they keep
/// warm (the builtin engine: its account cache and location table), so a
/// decision never waits on the database.
pub trait Directory {
    /// The active agent answering to `number` (an extension or a SIP username).
    fn agent(&self, number: &str) -> Option<AgentTarget>;
    /// How many live contacts (registered devices) the SIP account has.
    fn live_contacts(&self, username: &str) -> usize;
    /// The outbound dial plan as it applies to `caller` now; `None` (the
    /// default) when the engine has no trunks: a number that is not an
    /// agent is then nobody.
    fn outbound(&self, _caller: &Caller<'_>) -> Option<Outbound<'_>> {
        None
    }
}

/// What outbound routing reads: the dial plan, the trunks' live state, and
/// the caller's rights and current activity (counted by the engine).
#[derive(Debug, Clone, Copy)]
pub struct Outbound<'a> {
    pub routes: &'a [OutboundRoute],
    pub plan: &'a NumberingPlan,
    pub trunks: &'a [TrunkState],
    pub permission: DialPermission,
    pub limits: OutboundLimits,
    pub usage: OutboundUsage,
    /// The trunks of the call's campaign, in the campaign's order, when
    /// the call belongs to one that has a list: they replace the route's
    /// (see [`dialplan::trunk_order`]).
    pub campaign_trunks: Option<&'a [i64]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Ring every live contact of this agent.
    Agent(AgentTarget),
    /// Call out through a carrier: try the trunks in this order (the next
    /// one only when the previous failed as a carrier, see
    /// [`dialplan::fails_over`]), asking each for `number_for_trunk`.
    Trunks {
        /// The dialled number rewritten by the route (strip/prepend).
        number_for_trunk: String,
        trunk_ids_in_order: Vec<i64>,
        /// The same number in E.164 without `+` (CDR, reports).
        e164: String,
    },
    /// Refuse the call with this SIP status; the CDR records `cause`.
    Reject {
        code: u16,
        reason: &'static str,
        cause: HangupCause,
    },
}

/// The longest dialled string accepted; anything longer is nobody.
const MAX_NUMBER_LEN: usize = 64;

/// Decides what `dialled` (the user part of the Request-URI) means for
/// `caller`: an agent first (extensions win over the dial plan), else an
/// outbound route, else nobody.
pub fn decide(caller: &Caller<'_>, dialled: &str, dir: &impl Directory) -> Decision {
    if dialled.is_empty() {
        return Decision::Reject {
            code: 484,
            reason: "Address Incomplete",
            cause: HangupCause::NotFound,
        };
    }
    if dialled.len() > MAX_NUMBER_LEN {
        return not_found();
    }
    match dir.agent(dialled) {
        None => match dir.outbound(caller) {
            Some(out) => outbound(dialled, &out),
            None => not_found(),
        },
        Some(agent) if dir.live_contacts(&agent.username) == 0 => Decision::Reject {
            code: 480,
            reason: "Temporarily Unavailable",
            cause: HangupCause::NotRegistered,
        },
        Some(agent) => Decision::Agent(agent),
    }
}

/// What a call from trunk `trunk_id` to `did` (the user part of its
/// Request-URI) reaches: the most specific DID route (see
/// [`crate::dids`]), an agent who must have a live contact; a number no
/// route knows is refused as an unknown DID.
pub fn decide_inbound(
    did: &str,
    trunk_id: i64,
    routes: &InboundRoutes,
    dir: &impl Directory,
) -> Decision {
    let unknown = Decision::Reject {
        code: 404,
        reason: "Not Found",
        cause: HangupCause::UnknownDid,
    };
    if did.is_empty() || did.len() > MAX_NUMBER_LEN {
        return unknown;
    }
    let Some(route) = routes.route(did, trunk_id) else {
        return unknown;
    };
    match &route.target {
        DidTarget::Reject => Decision::Reject {
            code: 603,
            reason: "Decline",
            cause: HangupCause::Rejected,
        },
        DidTarget::Agent { extension } => match dir.agent(extension) {
            // The DID names an agent who no longer exists.
            None => unknown,
            Some(agent) if dir.live_contacts(&agent.username) == 0 => Decision::Reject {
                code: 480,
                reason: "Temporarily Unavailable",
                cause: HangupCause::NotRegistered,
            },
            Some(agent) => Decision::Agent(agent),
        },
    }
}

/// A number that is no agent, through the dial plan: the route first (its
/// rewrite is what the carrier is asked to ring, so the toll-fraud gate
/// judges that number, not the digits before the strip), then the gate,
/// then the trunks that can take the call now.
fn outbound(dialled: &str, out: &Outbound<'_>) -> Decision {
    let Some(route) = dialplan::find_route(out.routes, dialled) else {
        return refused(&Refusal::NoRoute);
    };
    let number_for_trunk = route.rewrite(dialled);
    let number = match dialplan::authorize(
        out.plan,
        &number_for_trunk,
        out.permission,
        out.limits,
        out.usage,
    ) {
        Ok(n) => n,
        Err(r) => return refused(&r),
    };
    match dialplan::trunk_order(route, out.campaign_trunks, out.trunks) {
        Ok(trunk_ids_in_order) => Decision::Trunks {
            number_for_trunk,
            trunk_ids_in_order,
            e164: number.e164,
        },
        Err(r) => refused(&r),
    }
}

/// A dial-plan refusal as the caller's answer and the CDR cause.
pub fn refused(r: &Refusal) -> Decision {
    let (code, reason) = r.sip_status();
    Decision::Reject {
        code,
        reason,
        cause: refusal_cause(r),
    }
}

/// The hangup cause of a dial-plan refusal (same names as
/// [`Refusal::cause`], except that no route is an unknown number).
pub fn refusal_cause(r: &Refusal) -> HangupCause {
    match r {
        Refusal::BadNumber(_) => HangupCause::InvalidNumber,
        Refusal::Blocked { .. } => HangupCause::DestinationBlocked,
        Refusal::NotPermitted { .. } => HangupCause::DialNotPermitted,
        Refusal::TooManyConcurrent { .. } => HangupCause::OutboundConcurrentLimit,
        Refusal::TooManyPerHour { .. } => HangupCause::OutboundHourlyLimit,
        Refusal::NoRoute => HangupCause::NotFound,
        Refusal::NoTrunkAvailable => HangupCause::NoTrunkAvailable,
    }
}

fn not_found() -> Decision {
    Decision::Reject {
        code: 404,
        reason: "Not Found",
        cause: HangupCause::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Dir {
        agents: Vec<AgentTarget>,
        contacts: HashMap<String, usize>,
        out: Option<OutDir>,
    }

    struct OutDir {
        routes: Vec<OutboundRoute>,
        plan: NumberingPlan,
        trunks: Vec<TrunkState>,
        permission: DialPermission,
        limits: OutboundLimits,
        usage: OutboundUsage,
        campaign: Option<Vec<i64>>,
    }

    impl Directory for Dir {
        fn agent(&self, number: &str) -> Option<AgentTarget> {
            self.agents
                .iter()
                .find(|a| a.extension == number)
                .or_else(|| self.agents.iter().find(|a| a.username == number))
                .cloned()
        }
        fn live_contacts(&self, username: &str) -> usize {
            self.contacts.get(username).copied().unwrap_or(0)
        }
        fn outbound(&self, _caller: &Caller<'_>) -> Option<Outbound<'_>> {
            self.out.as_ref().map(|o| Outbound {
                routes: &o.routes,
                plan: &o.plan,
                trunks: &o.trunks,
                permission: o.permission,
                limits: o.limits,
                usage: o.usage,
                campaign_trunks: o.campaign.as_deref(),
            })
        }
    }

    fn agent(user: &str, ext: &str, id: i64) -> AgentTarget {
        AgentTarget {
            username: user.into(),
            extension: ext.into(),
            agent_id: Some(id),
        }
    }

    #[test]
    fn inbound_calls_follow_the_did_routes() {
        use crate::dids::{DidNumber, InboundRoute};
        let dir = Dir {
            agents: vec![agent("alice", "1001", 1), agent("bob", "1002", 2)],
            contacts: HashMap::from([("alice".to_string(), 1)]),
            out: None,
        };
        let to = |id, number: &str, target| InboundRoute {
            did_id: id,
            number: DidNumber::parse(number).expect("valid"),
            trunk_id: None,
            target,
        };
        let agent_at = |ext: &str| DidTarget::Agent {
            extension: ext.into(),
        };
        let routes = InboundRoutes::new(vec![
            to(1, "+34911000001", agent_at("1001")),
            to(2, "+34911000002", agent_at("1002")),
            to(3, "+34911000003", DidTarget::Reject),
            to(4, "+34911000004", agent_at("1999")),
        ]);
        assert_eq!(
            decide_inbound("+34911000001", 1, &routes, &dir),
            Decision::Agent(agent("alice", "1001", 1))
        );
        let refused = |did: &str| match decide_inbound(did, 1, &routes, &dir) {
            Decision::Reject { code, cause, .. } => (code, cause),
            other => panic!("{did}: {other:?}"),
        };
        // Bob has no registered device.
        assert_eq!(refused("34911000002"), (480, HangupCause::NotRegistered));
        assert_eq!(refused("+34911000003"), (603, HangupCause::Rejected));
        // An agent that was deleted, a number nobody routes, junk.
        assert_eq!(refused("+34911000004"), (404, HangupCause::UnknownDid));
        assert_eq!(refused("+34911000009"), (404, HangupCause::UnknownDid));
        assert_eq!(refused(""), (404, HangupCause::UnknownDid));
        assert_eq!(
            refused(&"9".repeat(MAX_NUMBER_LEN + 1)),
            (404, HangupCause::UnknownDid)
        );
        // The extension of an agent is not reachable from outside unless
        // a DID routes to it.
        assert_eq!(refused("1001"), (404, HangupCause::UnknownDid));
    }

    #[test]
    fn decisions_table() {
        let dir = Dir {
            agents: vec![
                agent("ana", "1000", 1),
                agent("bob", "1001", 2),
                // A username that looks like another agent's extension: the
                // extension wins, as people dial extensions.
                agent("1000", "1002", 3),
            ],
            contacts: HashMap::from([("ana".into(), 2), ("1000".into(), 1)]),
            out: None,
        };
        let caller = Caller {
            username: "bob",
            extension: "1001",
            agent_id: Some(2),
        };
        // (dialled, expected refusal, expected agent)
        type Row<'a> = (&'a str, (Option<u16>, Option<HangupCause>), Option<&'a str>);
        let reject = |code, cause| (Some(code), Some(cause));
        let table: &[Row<'_>] = &[
            ("1000", (None, None), Some("ana")),
            ("ana", (None, None), Some("ana")),
            ("1002", (None, None), Some("1000")),
            ("1001", reject(480, HangupCause::NotRegistered), None),
            ("bob", reject(480, HangupCause::NotRegistered), None),
            ("1003", reject(404, HangupCause::NotFound), None),
            ("", reject(484, HangupCause::NotFound), None),
            ("+34600000000", reject(404, HangupCause::NotFound), None),
        ];
        for (dialled, want_reject, want_agent) in table {
            let d = decide(&caller, dialled, &dir);
            match (d, want_agent) {
                (Decision::Agent(a), Some(user)) => assert_eq!(a.username, *user, "{dialled}"),
                (Decision::Reject { code, cause, .. }, None) => {
                    assert_eq!((Some(code), Some(cause)), *want_reject, "{dialled}")
                }
                (d, _) => panic!("{dialled:?}: unexpected {d:?}"),
            }
        }
        let long = "9".repeat(MAX_NUMBER_LEN + 1);
        assert!(matches!(
            decide(&caller, &long, &dir),
            Decision::Reject { code: 404, .. }
        ));
    }

    fn trunk(id: i64, priority: i32) -> TrunkState {
        TrunkState {
            id,
            priority,
            active: true,
            registers: false,
            registered: false,
            max_channels: 2,
            channels_in_use: 0,
        }
    }

    fn outbound_dir(permission: DialPermission, usage: OutboundUsage) -> Dir {
        let pattern = |p: &str| dialplan::Pattern::parse(p).expect("valid pattern");
        let mut full = trunk(9, 0);
        full.channels_in_use = 2;
        Dir {
            agents: vec![agent("ana", "1000", 1)],
            contacts: HashMap::from([("ana".into(), 1)]),
            out: Some(OutDir {
                routes: vec![
                    // "0" for an outside line, then the number as people write it.
                    OutboundRoute {
                        name: "outside".into(),
                        patterns: vec![pattern("_0."), pattern("_+X.")],
                        strip: 0,
                        prepend: String::new(),
                        trunks: vec![],
                    },
                    OutboundRoute {
                        name: "nine".into(),
                        patterns: vec![pattern("_9NXXXXXXXX")],
                        strip: 1,
                        prepend: "+34".into(),
                        trunks: vec![2, 1],
                    },
                    // Trunk 9 is full: this route has nothing usable.
                    OutboundRoute {
                        name: "full".into(),
                        patterns: vec![pattern("_7XXXXXXXX")],
                        strip: 0,
                        prepend: String::new(),
                        trunks: vec![9],
                    },
                ],
                plan: NumberingPlan::default(),
                trunks: vec![trunk(2, 5), trunk(1, 5), trunk(3, 1), full],
                permission,
                limits: OutboundLimits {
                    max_concurrent: 1,
                    max_per_hour: 10,
                },
                usage,
                campaign: None,
            }),
        }
    }

    #[test]
    fn numbers_that_are_no_agent_go_through_the_dial_plan() {
        let caller = Caller {
            username: "bob",
            extension: "1001",
            agent_id: Some(2),
        };
        let idle = OutboundUsage::default();
        let dir = outbound_dir(DialPermission::National, idle);
        // An extension still wins over the dial plan.
        assert!(matches!(decide(&caller, "1000", &dir), Decision::Agent(_)));
        assert_eq!(
            decide(&caller, "9912345678", &dir),
            Decision::Trunks {
                number_for_trunk: "+34912345678".into(),
                trunk_ids_in_order: vec![1, 2],
                e164: "34912345678".into(),
            }
        );
        assert_eq!(
            decide(&caller, "+34912345678", &dir),
            Decision::Trunks {
                number_for_trunk: "+34912345678".into(),
                trunk_ids_in_order: vec![3, 1, 2],
                e164: "34912345678".into(),
            }
        );
        // A campaign's call goes out through the campaign's trunks, in its
        // order, whatever the route's list.
        let mut campaign = outbound_dir(DialPermission::National, idle);
        if let Some(o) = campaign.out.as_mut() {
            o.campaign = Some(vec![3, 9, 2]);
        }
        assert_eq!(
            decide(&caller, "9912345678", &campaign),
            Decision::Trunks {
                number_for_trunk: "+34912345678".into(),
                trunk_ids_in_order: vec![3, 2],
                e164: "34912345678".into(),
            }
        );
        // (dialled, permission, usage) -> (code, cause)
        let busy = OutboundUsage {
            concurrent: 1,
            last_hour: 0,
        };
        let hourly = OutboundUsage {
            concurrent: 0,
            last_hour: 10,
        };
        use DialPermission::*;
        use HangupCause as H;
        let table = [
            ("0033123456789", National, idle, 403, H::DialNotPermitted),
            ("912345678", International, idle, 404, H::NotFound),
            (
                "00881612345678",
                International,
                idle,
                403,
                H::DestinationBlocked,
            ),
            (
                "+34803123456",
                International,
                idle,
                403,
                H::DestinationBlocked,
            ),
            ("9912345678", Internal, idle, 403, H::DialNotPermitted),
            (
                "9912345678",
                National,
                busy,
                403,
                H::OutboundConcurrentLimit,
            ),
            ("9912345678", National, hourly, 403, H::OutboundHourlyLimit),
            ("712345678", National, idle, 503, H::NoTrunkAvailable),
        ];
        for (dialled, perm, usage, code, cause) in table {
            let dir = outbound_dir(perm, usage);
            match decide(&caller, dialled, &dir) {
                Decision::Reject {
                    code: c, cause: k, ..
                } => assert_eq!((c, k), (code, cause), "{dialled}"),
                d => panic!("{dialled}: unexpected {d:?}"),
            }
        }
        assert_eq!(H::DialNotPermitted.as_str(), "dial_not_permitted");
        assert_eq!(H::NoTrunkAvailable.as_str(), "no_trunk_available");
    }
}
