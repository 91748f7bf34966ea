//! Who may see what: admins and supervisors see everything; an agent sees
//! their own user record, the calls they took part in and their own
//! registrations. Every HTTP handler that filters by role and the events
//! socket ask a [`Scope`], so a new rule (a supervisor's team, say) is
//! written once, here.

use crate::calls::{Call, CallLeg};
use crate::events::Event;
use crate::users::{Role, User};

/// What one user may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Admins and supervisors: everyone's data.
    All,
    /// Agents: their own.
    Own {
        user_id: i64,
        /// The agent's SIP username and extension: either may name them in
        /// a call's numbers or a registration.
        sip_ids: Vec<String>,
    },
}

impl Scope {
    pub fn of(user: &User) -> Scope {
        match user.role {
            Role::Admin | Role::Supervisor => Scope::All,
            Role::Agent => Scope::Own {
                user_id: user.id,
                sip_ids: user
                    .sip
                    .iter()
                    .flat_map(|s| [s.username.clone(), s.extension.clone()])
                    .collect(),
            },
        }
    }

    pub fn sees_all(&self) -> bool {
        matches!(self, Scope::All)
    }

    /// The agent filter of a call list or statistics query, given the one
    /// the client asked for: anyone's (or everyone's) for `All`, and always
    /// the agent's own for `Own`, whatever was asked.
    pub fn call_filter(&self, requested: Option<i64>) -> Option<i64> {
        match self {
            Scope::All => requested,
            Scope::Own { user_id, .. } => Some(*user_id),
        }
    }

    /// Whether the user record (agent profile) `id` is visible.
    pub fn may_see_user(&self, id: i64) -> bool {
        match self {
            Scope::All => true,
            Scope::Own { user_id, .. } => *user_id == id,
        }
    }

    /// Whether one call is visible: for an agent, one they took part in as
    /// caller, callee or on any leg.
    pub fn may_see_call(&self, call: &Call, legs: &[CallLeg]) -> bool {
        match self {
            Scope::All => true,
            Scope::Own { user_id, .. } => {
                let me = Some(*user_id);
                call.agent_id == me
                    || call.callee_agent_id == me
                    || legs.iter().any(|l| l.agent_id == me)
            }
        }
    }

    /// Whether an event on the bus goes to this user's events socket.
    pub fn may_see(&self, ev: &Event) -> bool {
        let (user_id, sip_ids) = match self {
            Scope::All => return true,
            Scope::Own { user_id, sip_ids } => (*user_id, sip_ids),
        };
        match ev {
            Event::Agent { id, .. } => *id == user_id,
            Event::Registration { username, .. } => sip_ids.contains(username),
            Event::Call {
                caller_number,
                callee_number,
                ..
            } => sip_ids.contains(caller_number) || sip_ids.contains(callee_number),
            // Attacks and bans are for the staff who can act on them.
            Event::Security { .. } => false,
            // Carrier trunks are the staff's business.
            Event::Trunk { .. } | Event::Did { .. } | Event::Dialplan { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::UserSip;
    use chrono::{DateTime, Utc};

    const AGENT: i64 = 7;
    const OTHER: i64 = 8;

    fn user(role: Role, id: i64, sip: Option<(&str, &str)>) -> User {
        User {
            id,
            name: format!("user {id}"),
            login: Some(format!("user{id}")),
            email: None,
            phone: None,
            role,
            active: true,
            created_at: DateTime::<Utc>::default(),
            updated_at: DateTime::<Utc>::default(),
            last_login_at: None,
            has_sip_credentials: sip.is_some(),
            sip: sip.map(|(username, extension)| UserSip {
                username: username.into(),
                extension: extension.into(),
                status: "active".into(),
                registered: false,
                last_registered_at: None,
                user_agent: None,
                ip_address: None,
                contacts: 0,
            }),
            record_calls: None,
            dial_permission: None,
        }
    }

    /// The viewers of every table: (name, user).
    fn viewers() -> Vec<(&'static str, User)> {
        vec![
            ("admin", user(Role::Admin, 1, None)),
            (
                "supervisor",
                user(Role::Supervisor, 2, Some(("sup", "1002"))),
            ),
            ("agent", user(Role::Agent, AGENT, Some(("ag7", "1007")))),
            ("agent without SIP", user(Role::Agent, AGENT, None)),
        ]
    }

    /// One row: what is looked at, and whether each viewer of [`viewers`]
    /// (admin, supervisor, agent, agent without SIP) may see it.
    fn check<T: std::fmt::Debug>(rows: &[(T, [bool; 4])], sees: impl Fn(&Scope, &T) -> bool) {
        for (subject, want) in rows {
            for ((name, u), want) in viewers().iter().zip(want) {
                assert_eq!(
                    sees(&Scope::of(u), subject),
                    *want,
                    "{name} looking at {subject:?}"
                );
            }
        }
    }

    #[test]
    fn who_sees_all() {
        let got: Vec<bool> = viewers()
            .iter()
            .map(|(_, u)| Scope::of(u).sees_all())
            .collect();
        assert_eq!(got, [true, true, false, false]);
    }

    #[test]
    fn call_filters() {
        // (the agent filter asked for, the filter applied per viewer)
        let rows: [(Option<i64>, [Option<i64>; 4]); 3] = [
            (None, [None, None, Some(AGENT), Some(AGENT)]),
            (Some(AGENT), [Some(AGENT); 4]),
            (
                Some(OTHER),
                [Some(OTHER), Some(OTHER), Some(AGENT), Some(AGENT)],
            ),
        ];
        for (asked, want) in rows {
            for ((name, u), want) in viewers().iter().zip(want) {
                assert_eq!(
                    Scope::of(u).call_filter(asked),
                    want,
                    "{name} asking for {asked:?}"
                );
            }
        }
    }

    #[test]
    fn users() {
        check(
            &[
                (AGENT, [true, true, true, true]),
                (OTHER, [true, true, false, false]),
            ],
            |s, id| s.may_see_user(*id),
        );
    }

    fn call(agent: Option<i64>, callee: Option<i64>, legs: &[Option<i64>]) -> (Call, Vec<CallLeg>) {
        let call = Call {
            id: 1,
            call_id: "c1".into(),
            direction: "internal".into(),
            caller_number: "1007".into(),
            callee_number: "1008".into(),
            agent_id: agent,
            agent: None,
            callee_agent_id: callee,
            callee_agent: None,
            state: "ringing".into(),
            start_time: DateTime::<Utc>::default(),
            answer_time: None,
            end_time: None,
            duration: 0,
            billsec: 0,
            disposition: None,
            hangup_cause: None,
            has_recording: false,
            recording: None,
            quality: None,
            trunk: None,
            did: None,
        };
        let legs = legs
            .iter()
            .zip(1..)
            .map(|(a, leg)| CallLeg {
                leg,
                number: "1008".into(),
                agent_id: *a,
                transport: "udp".into(),
                created_at: DateTime::<Utc>::default(),
                ringing_at: None,
                answered_at: None,
                ended_at: None,
                end_cause: None,
                sip_code: None,
            })
            .collect();
        (call, legs)
    }

    #[test]
    fn calls() {
        let mine = [true, true, true, true];
        let not_mine = [true, true, false, false];
        check(
            &[
                (call(Some(AGENT), None, &[]), mine),
                (call(None, Some(AGENT), &[]), mine),
                (call(Some(OTHER), None, &[Some(OTHER), Some(AGENT)]), mine),
                (call(Some(OTHER), Some(OTHER), &[Some(OTHER)]), not_mine),
                (call(None, None, &[None]), not_mine),
            ],
            |s, (c, legs)| s.may_see_call(c, legs),
        );
    }

    #[test]
    fn events() {
        let at = DateTime::<Utc>::default();
        let agent = |id, action: &str| Event::Agent {
            at,
            id,
            action: action.into(),
            sip_username: None,
        };
        let reg = |username: &str| Event::Registration {
            at,
            username: username.into(),
            extension: "1007".into(),
            registered: true,
            contacts: 1,
        };
        let call = |caller: &str, callee: &str| Event::Call {
            at,
            call_id: "c1".into(),
            state: "ringing".into(),
            caller_number: caller.into(),
            callee_number: callee.into(),
            disposition: None,
        };
        let mine = [true, true, true, true];
        let sip_mine = [true, true, true, false];
        let not_mine = [true, true, false, false];
        check(
            &[
                (agent(AGENT, "updated"), mine),
                (agent(OTHER, "updated"), not_mine),
                (reg("ag7"), sip_mine),
                (reg("ag8"), not_mine),
                (call("1007", "1008"), sip_mine),
                (call("1008", "ag7"), sip_mine),
                (call("1008", "1007"), sip_mine),
                (call("1008", "1009"), not_mine),
                // An agent without SIP is named by no number, empty ones included.
                (call("", ""), not_mine),
                // Even about their own account, agents do not see attacks.
                (
                    Event::Security {
                        at,
                        kind: "account_guarded".into(),
                        ip: "192.0.2.1".into(),
                        username: Some("ag7".into()),
                    },
                    not_mine,
                ),
            ],
            |s, ev| s.may_see(ev),
        );
    }
}
