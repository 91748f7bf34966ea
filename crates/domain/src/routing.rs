//! Routing policy: what a dialled number means. One pure function over a
//! read-only view of domain data ([`Directory`]); no IO, no clock. Engines
//! carry the [`Decision`] out (the builtin B2BUA forks to the agent's
//! contacts or answers the refusal). Trunks, queues and IVRs arrive as new
//! `Decision` variants and new rules here, not as branches in protocol code.

use crate::call_events::HangupCause;

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Ring every live contact of this agent.
    Agent(AgentTarget),
    /// Refuse the call with this SIP status; the CDR records `cause`.
    Reject {
        code: u16,
        reason: &'static str,
        cause: HangupCause,
    },
}

/// The longest dialled string accepted; anything longer is nobody.
const MAX_NUMBER_LEN: usize = 64;

/// Decides what `dialled` (the user part of the Request-URI) means for `caller`.
pub fn decide(_caller: &Caller<'_>, dialled: &str, dir: &impl Directory) -> Decision {
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
        None => not_found(),
        Some(agent) if dir.live_contacts(&agent.username) == 0 => Decision::Reject {
            code: 480,
            reason: "Temporarily Unavailable",
            cause: HangupCause::NotRegistered,
        },
        Some(agent) => Decision::Agent(agent),
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
    }

    fn agent(user: &str, ext: &str, id: i64) -> AgentTarget {
        AgentTarget {
            username: user.into(),
            extension: ext.into(),
            agent_id: Some(id),
        }
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
}
