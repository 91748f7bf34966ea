//! Calls out through carriers (trunks): the trunks as the application
//! configured them, the dial plan, and the live figures outbound routing
//! and toll-fraud limits read — channels in use per trunk, outbound calls
//! per caller now and in the last hour. The core is one locked state
//! machine, so reserving a channel here is atomic with respect to every
//! other call: two calls racing for a trunk's last channel cannot both
//! get it.

use super::types::{Source, Transport, UDP_FLOW};
use domain::dialplan::{
    DialPermission, NumberingPlan, OutboundLimits, OutboundRoute, OutboundUsage, TrunkState,
};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

/// One trunk calls go out through (the carrier side of a call).
#[derive(Clone, PartialEq, Eq)]
pub struct OutboundTrunk {
    pub id: i64,
    /// Shown in CDR legs as `trunk:<name>`.
    pub name: String,
    /// The carrier's SIP host: a name (resolved by the shell), an IPv4
    /// literal or a bracketed IPv6 literal (`[2001:db8::1]`).
    pub host: String,
    pub port: u16,
    /// UDP, TCP or TLS.
    pub transport: Transport,
    /// Username and secret answering the carrier's 401/407.
    pub auth_username: String,
    pub secret: String,
    /// Only challenges of this realm are answered; `None`: any.
    pub realm: Option<String>,
    /// User part of From (the caller ID number the carrier presents);
    /// `None`: the caller's extension.
    pub from_user: Option<String>,
    /// Host part of From; `None`: the trunk's host.
    pub from_domain: Option<String>,
    /// Add P-Asserted-Identity (RFC 3325) with the From identity.
    pub send_pai: bool,
    /// Simultaneous calls through the trunk; 0 = unlimited.
    pub max_channels: u32,
    /// Lower is tried first.
    pub priority: i32,
    pub active: bool,
    /// The trunk registers to its carrier (see `outbound_reg`): it is used
    /// only while the registration whose key is the trunk's id (as a
    /// decimal string) is registered.
    pub registers: bool,
    /// Codecs the carrier takes (`pcmu`, `pcma`, `opus`, ...), in order:
    /// an anchored call offers it only these. Empty: whatever the media
    /// plane would offer.
    pub codecs: Vec<String>,
}

impl std::fmt::Debug for OutboundTrunk {
    // By hand so the secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundTrunk")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("transport", &self.transport)
            .field("auth_username", &self.auth_username)
            .field("secret", &"<redacted>")
            .field("realm", &self.realm)
            .field("from_user", &self.from_user)
            .field("from_domain", &self.from_domain)
            .field("send_pai", &self.send_pai)
            .field("max_channels", &self.max_channels)
            .field("priority", &self.priority)
            .field("active", &self.active)
            .field("registers", &self.registers)
            .field("codecs", &self.codecs)
            .finish()
    }
}

/// What one caller may dial beyond the extensions, and how much.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DialRights {
    pub permission: DialPermission,
    pub limits: OutboundLimits,
}

/// The dial plan: routes in order, how numbers are written, and the rights
/// of a caller whose account carries none ([`super::Account::dial`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    pub routes: Vec<OutboundRoute>,
    pub plan: NumberingPlan,
    /// Internal-only by default: a new agent cannot call out.
    pub default_rights: DialRights,
}

/// A trunk setting that cannot be used; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundTrunkError {
    #[error("trunk {id}: {problem}")]
    Invalid { id: i64, problem: &'static str },
    #[error("trunk {0} is listed twice")]
    Duplicate(i64),
}

/// Text that goes into a header or URI as is: no whitespace, CR/LF or
/// URI/header delimiters smuggled in.
fn clean(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"' | b',' | b';' | b'@'))
}

impl OutboundTrunk {
    /// Checks the settings that reach the wire.
    pub fn validate(&self) -> Result<(), OutboundTrunkError> {
        let bad = |problem| {
            Err(OutboundTrunkError::Invalid {
                id: self.id,
                problem,
            })
        };
        if !clean(&self.host) || self.host.contains([':', '/', '?']) && !self.host.starts_with('[')
        {
            return bad("the host must be a bare name or address");
        }
        if self.port == 0 {
            return bad("the port must not be 0");
        }
        if !matches!(
            self.transport,
            Transport::Udp | Transport::Tcp | Transport::Tls
        ) {
            return bad("the transport must be udp, tcp or tls");
        }
        if !self.auth_username.is_empty() && !clean(&self.auth_username) {
            return bad("the auth username has characters a header cannot carry");
        }
        if self.secret.contains(['\r', '\n', '"', '\\']) {
            return bad("the secret has characters a header cannot carry");
        }
        for v in [&self.from_user, &self.from_domain, &self.realm]
            .into_iter()
            .flatten()
        {
            if !clean(v) {
                return bad("from_user, from_domain and realm must be plain tokens");
            }
        }
        if self.name.contains(['\r', '\n']) {
            return bad("the name has a line break");
        }
        Ok(())
    }
}

/// A caller's outbound activity: calls up now, and the start times of its
/// calls in the last hour (oldest first).
#[derive(Debug, Default)]
struct CallerUsage {
    concurrent: u32,
    recent: VecDeque<u64>,
}

const HOUR_MS: u64 = 3_600_000;
/// Start times kept per caller: past any sane hourly limit, and bounded so
/// an unlimited caller cannot grow memory without end.
const MAX_RECENT: usize = 10_000;

/// The trunks and the live figures (owned by the core, lent to calls
/// through `Ctx`).
#[derive(Debug, Default)]
pub struct Outbound {
    trunks: Vec<(OutboundTrunk, Option<SocketAddr>)>,
    pub(crate) policy: OutboundPolicy,
    in_use: HashMap<i64, u32>,
    callers: HashMap<String, CallerUsage>,
}

impl Outbound {
    /// Replaces the trunks (each with the address the shell resolved, or
    /// `None`: unusable until it resolves) and the dial plan. Channels in
    /// use are kept: calls up stay counted against their trunk.
    pub fn set(
        &mut self,
        trunks: Vec<(OutboundTrunk, Option<SocketAddr>)>,
        policy: OutboundPolicy,
    ) -> Result<(), OutboundTrunkError> {
        let mut seen = std::collections::HashSet::new();
        for (t, _) in &trunks {
            t.validate()?;
            if !seen.insert(t.id) {
                return Err(OutboundTrunkError::Duplicate(t.id));
            }
        }
        self.trunks = trunks;
        self.policy = policy;
        Ok(())
    }

    pub fn has_trunks(&self) -> bool {
        !self.trunks.is_empty()
    }

    pub fn trunk(&self, id: i64) -> Option<&OutboundTrunk> {
        self.trunks.iter().find(|(t, _)| t.id == id).map(|(t, _)| t)
    }

    /// Where the trunk's requests go; `None` when its host did not resolve.
    pub fn destination(&self, id: i64) -> Option<Source> {
        let (t, addr) = self.trunks.iter().find(|(t, _)| t.id == id)?;
        Some(Source {
            peer: (*addr)?,
            transport: t.transport,
            // The shell opens (or reuses) a connection for TCP.
            flow: UDP_FLOW,
        })
    }

    pub fn channels_in_use(&self, id: i64) -> u32 {
        self.in_use.get(&id).copied().unwrap_or(0)
    }

    /// The trunks as routing sees them; `registered(key)` tells whether
    /// the registration with that key is up.
    pub fn states(&self, registered: impl Fn(&str) -> bool) -> Vec<TrunkState> {
        self.trunks
            .iter()
            .map(|(t, addr)| TrunkState {
                id: t.id,
                priority: t.priority,
                // A trunk whose host does not resolve cannot carry a call.
                active: t.active && addr.is_some(),
                registers: t.registers,
                registered: t.registers && registered(&t.id.to_string()),
                max_channels: t.max_channels,
                channels_in_use: self.channels_in_use(t.id),
            })
            .collect()
    }

    /// Takes one channel of trunk `id`; false when it is full or unknown.
    pub fn reserve(&mut self, id: i64) -> bool {
        let Some(t) = self.trunk(id) else {
            return false;
        };
        let max = t.max_channels;
        let used = self.in_use.entry(id).or_insert(0);
        if max > 0 && *used >= max {
            return false;
        }
        *used += 1;
        true
    }

    pub fn release(&mut self, id: i64) {
        if let Some(used) = self.in_use.get_mut(&id) {
            *used = used.saturating_sub(1);
            if *used == 0 {
                self.in_use.remove(&id);
            }
        }
    }

    /// `username`'s outbound calls now and in the hour before `now_ms`.
    pub fn usage(&mut self, username: &str, now_ms: u64) -> OutboundUsage {
        let Some(u) = self.callers.get_mut(username) else {
            return OutboundUsage::default();
        };
        while u.recent.front().is_some_and(|t| t + HOUR_MS <= now_ms) {
            u.recent.pop_front();
        }
        OutboundUsage {
            concurrent: u.concurrent,
            last_hour: u32::try_from(u.recent.len()).unwrap_or(u32::MAX),
        }
    }

    /// An outbound call of `username` starts.
    pub fn caller_started(&mut self, username: &str, now_ms: u64) {
        let u = self.callers.entry(username.to_string()).or_default();
        u.concurrent += 1;
        if u.recent.len() >= MAX_RECENT {
            u.recent.pop_front();
        }
        u.recent.push_back(now_ms);
    }

    /// An outbound call of `username` ended.
    pub fn caller_ended(&mut self, username: &str) {
        if let Some(u) = self.callers.get_mut(username) {
            u.concurrent = u.concurrent.saturating_sub(1);
        }
    }

    /// Forgets callers with nothing left to count (the periodic sweep).
    pub fn sweep(&mut self, now_ms: u64) {
        self.callers.retain(|_, u| {
            while u.recent.front().is_some_and(|t| t + HOUR_MS <= now_ms) {
                u.recent.pop_front();
            }
            u.concurrent > 0 || !u.recent.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: i64) -> OutboundTrunk {
        OutboundTrunk {
            id,
            name: "carrier".into(),
            host: "sip.carrier.test".into(),
            port: 5060,
            transport: Transport::Udp,
            auth_username: "trunk".into(),
            secret: "hunter2".into(),
            realm: None,
            from_user: None,
            from_domain: None,
            send_pai: false,
            max_channels: 2,
            priority: 0,
            active: true,
            registers: false,
            codecs: Vec::new(),
        }
    }

    #[test]
    fn bad_settings_are_refused_and_change_nothing() {
        let mut o = Outbound::default();
        o.set(vec![(t(1), None)], OutboundPolicy::default())
            .expect("valid");
        let bad: Vec<(&str, OutboundTrunk)> = vec![
            (
                "host",
                OutboundTrunk {
                    host: "a b".into(),
                    ..t(2)
                },
            ),
            (
                "host",
                OutboundTrunk {
                    host: "h\r\nX: y".into(),
                    ..t(2)
                },
            ),
            (
                "host",
                OutboundTrunk {
                    host: "h:5060".into(),
                    ..t(2)
                },
            ),
            ("port", OutboundTrunk { port: 0, ..t(2) }),
            (
                "transport",
                OutboundTrunk {
                    transport: Transport::Ws,
                    ..t(2)
                },
            ),
            (
                "from_user",
                OutboundTrunk {
                    from_user: Some("a>b".into()),
                    ..t(2)
                },
            ),
            (
                "secret",
                OutboundTrunk {
                    secret: "a\"b".into(),
                    ..t(2)
                },
            ),
        ];
        for (what, trunk) in bad {
            let e = o
                .set(vec![(trunk, None)], OutboundPolicy::default())
                .expect_err(what);
            assert!(
                matches!(e, OutboundTrunkError::Invalid { id: 2, .. }),
                "{what}: {e}"
            );
        }
        assert_eq!(
            o.set(vec![(t(3), None), (t(3), None)], OutboundPolicy::default()),
            Err(OutboundTrunkError::Duplicate(3))
        );
        assert!(o.trunk(1).is_some(), "the old set stays");
        assert!(!format!("{:?}", t(1)).contains("hunter2"));
    }

    #[test]
    fn channels_and_callers_are_counted() {
        let mut o = Outbound::default();
        let addr = Some(SocketAddr::from(([127, 0, 0, 1], 5060)));
        o.set(vec![(t(1), addr)], OutboundPolicy::default())
            .expect("valid");
        assert!(o.reserve(1) && o.reserve(1));
        assert!(!o.reserve(1), "max_channels 2");
        assert!(!o.reserve(9), "unknown trunk");
        o.release(1);
        assert_eq!(o.channels_in_use(1), 1);
        let st = o.states(|_| false);
        assert_eq!((st[0].channels_in_use, st[0].active), (1, true));

        o.caller_started("ana", 0);
        o.caller_started("ana", 1_000);
        o.caller_ended("ana");
        let u = o.usage("ana", 2_000);
        assert_eq!((u.concurrent, u.last_hour), (1, 2));
        // An hour later the first start no longer counts.
        assert_eq!(o.usage("ana", HOUR_MS).last_hour, 1);
        o.caller_ended("ana");
        o.sweep(HOUR_MS + 1_000);
        assert_eq!(o.usage("ana", HOUR_MS + 1_000).last_hour, 0);
        assert!(o.callers.is_empty(), "forgotten once nothing counts");
    }
}
