//! The outbound dial plan as an administrator edits it: the numbering
//! plan, which numbers go out through the trunks, and the toll-fraud
//! defaults (what agents may dial, how many calls). The configuration's
//! `[dialplan]` section gives the values until an administrator saves
//! others (`PUT /api/telephony/dialplan`); what was saved is kept in the
//! `settings` table as JSON and wins from then on. Every save is validated
//! as a whole, audited, and published (`dialplan` event) so the SIP server
//! routes the next call with it.

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::audit;
use crate::dialplan::{DialPermission, NumberingPlan, OutboundLimits, OutboundRoute, Pattern};
use crate::events::{Event, EventBus};
use crate::{Actor, Db, DomainError, Services};

/// The `settings` key the saved dial plan is kept under.
const KEY: &str = "dialplan";
const MAX_PATTERNS: usize = 50;
/// The most outbound routes a dial plan has.
const MAX_ROUTES: usize = 20;
/// The most trunks one route lists.
const MAX_ROUTE_TRUNKS: usize = 50;
const MAX_ROUTE_NAME: usize = 64;
const MAX_PREFIXES: usize = 200;
/// The most a per-agent limit can be set to (0 means no limit).
const MAX_LIMIT: u32 = 100_000;

/// The dial plan's settings (the configuration's `[dialplan]` keys, in the
/// API's spelling).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DialplanSettings {
    /// Country calling code of the call center (digits, no `+`).
    pub country_code: String,
    /// What precedes an international number besides `+`, comma-separated
    /// (`00`, `011`).
    pub international_prefix: String,
    /// Trunk prefix of national numbers (`0`), empty where there is none.
    pub national_prefix: String,
    /// Patterns of the numbers that go out through the trunks.
    pub outbound_patterns: Vec<String>,
    /// Leading characters removed before the number goes to the trunk.
    pub strip: u32,
    /// Added in front after `strip` (digits and `+`).
    pub prepend: String,
    /// What agents without their own setting may dial: internal | national
    /// | international.
    pub agent_permission: String,
    /// Simultaneous outbound calls per agent (0: no limit).
    pub max_concurrent_outbound: u32,
    /// Outbound calls per agent in the last hour (0: no limit).
    pub max_outbound_per_hour: u32,
    /// E.164 prefixes (digits, no `+`) nobody may dial.
    pub blocked_prefixes: Vec<String>,
    /// Several outbound routes, tried in order (the first with a matching
    /// pattern carries the call), each with its own rewrite and trunks;
    /// when not empty they replace `outboundPatterns`, `strip` and
    /// `prepend`. Optional (absent: none).
    #[serde(default)]
    pub routes: Vec<RouteSettings>,
}

/// One outbound route as an administrator edits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteSettings {
    /// Unique within the dial plan (1–64 characters).
    pub name: String,
    /// Patterns of the numbers this route carries (at least one).
    pub patterns: Vec<String>,
    /// Leading characters removed before the number goes to the trunk.
    #[serde(default)]
    pub strip: u32,
    /// Added in front after `strip` (digits and `+`).
    #[serde(default)]
    pub prepend: String,
    /// The trunks this route may use (by their priority); empty: every
    /// active trunk.
    #[serde(default)]
    pub trunk_ids: Vec<i64>,
}

impl Default for DialplanSettings {
    /// Spain's numbering, full numbers out through the trunks, national
    /// calls for agents, the blocked prefixes of [`NumberingPlan`].
    fn default() -> Self {
        let plan = NumberingPlan::default();
        let limits = OutboundLimits::default();
        Self {
            country_code: plan.country_code,
            international_prefix: plan.international_prefixes.join(","),
            national_prefix: plan.national_prefix,
            // Full numbers only: an unknown 4-digit extension must be
            // "not found", not a call to the carrier.
            outbound_patterns: vec!["_+X.".into(), "_XXXXXX.".into()],
            strip: 0,
            prepend: String::new(),
            // International dialling is the toll-fraud target: granted on
            // purpose, per agent.
            agent_permission: DialPermission::National.as_str().into(),
            max_concurrent_outbound: limits.max_concurrent,
            max_outbound_per_hour: limits.max_per_hour,
            blocked_prefixes: plan.blocked_prefixes,
            routes: Vec::new(),
        }
    }
}

/// The settings ready for routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledDialplan {
    pub routes: Vec<OutboundRoute>,
    pub plan: NumberingPlan,
    pub permission: DialPermission,
    pub limits: OutboundLimits,
}

fn digits(field: &'static str, v: &str, max: usize, allow_empty: bool) -> Result<(), DomainError> {
    let ok =
        (allow_empty || !v.is_empty()) && v.len() <= max && v.chars().all(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(
            field,
            format!("{v:?}: digits only, at most {max}"),
        ))
    }
}

fn prepend_ok(v: &str) -> bool {
    v.len() <= 10
        && v.chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_digit() || (c == '+' && i == 0))
}

impl RouteSettings {
    /// Checks one route; errors say which route (`n` counts from 1).
    fn compile(&self, n: usize) -> Result<OutboundRoute, DomainError> {
        let name = self.name.trim();
        let bad = |what: String| {
            DomainError::invalid("routes", format!("route {n} ({:?}): {what}", name))
        };
        if name.is_empty()
            || name.chars().count() > MAX_ROUTE_NAME
            || name.chars().any(char::is_control)
        {
            return Err(DomainError::invalid(
                "routes",
                format!("route {n}: a name of 1 to {MAX_ROUTE_NAME} characters"),
            ));
        }
        if self.patterns.is_empty() || self.patterns.len() > MAX_PATTERNS {
            return Err(bad(format!("patterns: 1 to {MAX_PATTERNS}")));
        }
        let mut patterns = Vec::with_capacity(self.patterns.len());
        for p in &self.patterns {
            patterns.push(Pattern::parse(p.trim()).map_err(|e| bad(format!("patterns: {e}")))?);
        }
        if self.strip > 20 {
            return Err(bad("strip: at most 20".into()));
        }
        if !prepend_ok(&self.prepend) {
            return Err(bad(
                "prepend: digits, with an optional leading +, at most 10".into(),
            ));
        }
        if self.trunk_ids.len() > MAX_ROUTE_TRUNKS {
            return Err(bad(format!("trunkIds: at most {MAX_ROUTE_TRUNKS}")));
        }
        for (i, t) in self.trunk_ids.iter().enumerate() {
            if *t < 1 {
                return Err(bad(format!("trunkIds: {t} is no trunk id")));
            }
            if self.trunk_ids[..i].contains(t) {
                return Err(bad(format!("trunkIds: trunk {t} is listed twice")));
            }
        }
        Ok(OutboundRoute {
            name: name.to_string(),
            patterns,
            strip: self.strip as usize,
            prepend: self.prepend.clone(),
            trunks: self.trunk_ids.clone(),
        })
    }
}

impl DialplanSettings {
    /// Checks every field (the error names the first bad one) and builds
    /// what routing reads.
    pub fn compile(&self) -> Result<CompiledDialplan, DomainError> {
        digits("countryCode", &self.country_code, 3, false)?;
        let international_prefixes: Vec<String> = self
            .international_prefix
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        for p in &international_prefixes {
            digits("internationalPrefix", p, 4, false)?;
        }
        digits("nationalPrefix", &self.national_prefix, 2, true)?;
        if self.outbound_patterns.len() > MAX_PATTERNS {
            return Err(DomainError::invalid(
                "outboundPatterns",
                format!("at most {MAX_PATTERNS}"),
            ));
        }
        let mut patterns = Vec::with_capacity(self.outbound_patterns.len());
        for p in &self.outbound_patterns {
            patterns.push(
                Pattern::parse(p.trim())
                    .map_err(|e| DomainError::invalid("outboundPatterns", e.to_string()))?,
            );
        }
        if self.strip > 20 {
            return Err(DomainError::invalid("strip", "at most 20"));
        }
        if !prepend_ok(&self.prepend) {
            return Err(DomainError::invalid(
                "prepend",
                "digits, with an optional leading +, at most 10",
            ));
        }
        let permission = DialPermission::parse(self.agent_permission.trim()).ok_or_else(|| {
            DomainError::invalid(
                "agentPermission",
                format!(
                    "{:?}: internal, national or international",
                    self.agent_permission
                ),
            )
        })?;
        for (field, v) in [
            ("maxConcurrentOutbound", self.max_concurrent_outbound),
            ("maxOutboundPerHour", self.max_outbound_per_hour),
        ] {
            if v > MAX_LIMIT {
                return Err(DomainError::invalid(
                    field,
                    format!("at most {MAX_LIMIT} (0: no limit)"),
                ));
            }
        }
        if self.blocked_prefixes.len() > MAX_PREFIXES {
            return Err(DomainError::invalid(
                "blockedPrefixes",
                format!("at most {MAX_PREFIXES}"),
            ));
        }
        let mut blocked = Vec::with_capacity(self.blocked_prefixes.len());
        for p in &self.blocked_prefixes {
            let p = p.trim().trim_start_matches('+');
            digits("blockedPrefixes", p, 15, false)?;
            blocked.push(p.to_string());
        }
        if self.routes.len() > MAX_ROUTES {
            return Err(DomainError::invalid(
                "routes",
                format!("at most {MAX_ROUTES}"),
            ));
        }
        let mut routes = Vec::with_capacity(self.routes.len());
        for (i, r) in self.routes.iter().enumerate() {
            let route = r.compile(i + 1)?;
            if routes
                .iter()
                .any(|o: &OutboundRoute| o.name.eq_ignore_ascii_case(&route.name))
            {
                return Err(DomainError::invalid(
                    "routes",
                    format!("route {}: the name {:?} is used twice", i + 1, route.name),
                ));
            }
            routes.push(route);
        }
        let routes = if !routes.is_empty() {
            routes
        } else if patterns.is_empty() {
            Vec::new()
        } else {
            vec![OutboundRoute {
                name: "outbound".into(),
                patterns,
                strip: self.strip as usize,
                prepend: self.prepend.clone(),
                trunks: Vec::new(),
            }]
        };
        Ok(CompiledDialplan {
            routes,
            plan: NumberingPlan {
                country_code: self.country_code.clone(),
                international_prefixes,
                national_prefix: self.national_prefix.clone(),
                blocked_prefixes: blocked,
            },
            permission,
            limits: OutboundLimits {
                max_concurrent: self.max_concurrent_outbound,
                max_per_hour: self.max_outbound_per_hour,
            },
        })
    }
}

/// Whether the settings in force are the configuration's or saved ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveDialplan {
    pub settings: DialplanSettings,
    /// `config` (the `[dialplan]` section) or `saved` (by an administrator).
    pub source: String,
}

/// The dial plan in the database over the configuration's defaults.
#[derive(Clone, Debug)]
pub struct DialplanService {
    db: Db,
    events: Option<EventBus>,
    defaults: DialplanSettings,
}

impl Services {
    /// The dial plan service over the configuration's values.
    pub fn dialplan(&self) -> DialplanService {
        DialplanService {
            db: self.db.clone(),
            events: Some(self.events.clone()),
            defaults: self.config.dialplan.clone(),
        }
    }
}

impl DialplanService {
    /// The settings in force: the saved ones, else the defaults. Saved
    /// settings that no longer read back (a newer field, a hand edit) are
    /// ignored with an error in the log, never half applied.
    pub async fn effective(&self) -> Result<EffectiveDialplan, DomainError> {
        let mut c = self.db.conn().await?;
        let saved = store::settings::get(&mut c, KEY).await?;
        if let Some(text) = saved {
            match serde_json::from_str::<DialplanSettings>(&text) {
                Ok(s) if s.compile().is_ok() => {
                    return Ok(EffectiveDialplan {
                        settings: s,
                        source: "saved".into(),
                    })
                }
                _ => tracing::error!(
                    "the saved dial plan does not read back; using the configuration's"
                ),
            }
        }
        Ok(EffectiveDialplan {
            settings: self.defaults.clone(),
            source: "config".into(),
        })
    }

    /// Validates and saves `s` as the dial plan in force.
    pub async fn save(
        &self,
        actor: &Actor,
        s: &DialplanSettings,
    ) -> Result<EffectiveDialplan, DomainError> {
        s.compile()?;
        let text = serde_json::to_string(s).map_err(|e| DomainError::Internal(e.to_string()))?;
        let mut tx = self.db.write().await?;
        // A route names trunks that exist (one deleted later is skipped
        // by routing like an inactive one).
        for (i, r) in s.routes.iter().enumerate() {
            for t in &r.trunk_ids {
                if store::trunks::get(&mut tx, *t).await?.is_none() {
                    return Err(DomainError::invalid(
                        "routes",
                        format!(
                            "route {} ({:?}): trunkIds: no trunk {t}",
                            i + 1,
                            r.name.trim()
                        ),
                    ));
                }
            }
        }
        store::settings::set(&mut tx, KEY, &text).await?;
        audit::record(
            &mut tx,
            actor,
            "dialplan.update",
            "dialplan",
            KEY,
            serde_json::to_value(s).unwrap_or_default(),
        )
        .await?;
        tx.commit().await?;
        self.publish();
        Ok(EffectiveDialplan {
            settings: s.clone(),
            source: "saved".into(),
        })
    }

    /// Forgets the saved settings: the configuration's apply again.
    pub async fn reset(&self, actor: &Actor) -> Result<EffectiveDialplan, DomainError> {
        let mut tx = self.db.write().await?;
        store::settings::delete(&mut tx, KEY).await?;
        audit::record(
            &mut tx,
            actor,
            "dialplan.reset",
            "dialplan",
            KEY,
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        self.publish();
        Ok(EffectiveDialplan {
            settings: self.defaults.clone(),
            source: "config".into(),
        })
    }

    fn publish(&self) {
        if let Some(bus) = &self.events {
            bus.publish(Event::Dialplan { at: Utc::now() });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spain() -> DialplanSettings {
        DialplanSettings {
            country_code: "34".into(),
            international_prefix: "00".into(),
            national_prefix: String::new(),
            outbound_patterns: vec!["_+X.".into(), "_XXXXXX.".into()],
            strip: 0,
            prepend: String::new(),
            agent_permission: "national".into(),
            max_concurrent_outbound: 2,
            max_outbound_per_hour: 120,
            blocked_prefixes: vec!["+803".into(), "881".into()],
            routes: Vec::new(),
        }
    }

    fn route(name: &str, patterns: &[&str], trunk_ids: Vec<i64>) -> RouteSettings {
        RouteSettings {
            name: name.into(),
            patterns: patterns.iter().map(|p| (*p).to_string()).collect(),
            strip: 0,
            prepend: String::new(),
            trunk_ids,
        }
    }

    #[test]
    fn several_routes_replace_the_single_pattern_list() {
        let s = DialplanSettings {
            routes: vec![
                route("emergency", &["112"], vec![]),
                RouteSettings {
                    strip: 1,
                    prepend: "+34".into(),
                    ..route("outside line", &["_9NXXXXXXXX"], vec![3, 1])
                },
                route("mobiles", &["_[6-7]XXXXXXXX"], vec![2]),
            ],
            ..spain()
        };
        let c = s.compile().expect("valid");
        let names: Vec<&str> = c.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, vec!["emergency", "outside line", "mobiles"]);
        let r = crate::dialplan::find_route(&c.routes, "9912345678").expect("routed");
        assert_eq!(
            (r.rewrite("9912345678"), r.trunks.clone()),
            ("+34912345678".into(), vec![3, 1])
        );
        let r = crate::dialplan::find_route(&c.routes, "612345678").expect("routed");
        assert_eq!(r.trunks, vec![2]);
        // The single list no longer applies: a number only it matched is no route.
        assert!(crate::dialplan::find_route(&c.routes, "+33123456789").is_none());
        // Absent in JSON (older saved plans, clients that do not send it).
        let mut v = serde_json::to_value(spain()).expect("json");
        v.as_object_mut().expect("object").remove("routes");
        let back: DialplanSettings = serde_json::from_value(v).expect("reads back");
        assert_eq!(back.routes, Vec::new());
        assert_eq!(back.compile().expect("valid").routes.len(), 1);
    }

    #[test]
    fn every_route_is_checked_and_the_whole_plan_refused() {
        let bad_routes: Vec<(&str, Vec<RouteSettings>)> = vec![
            ("name", vec![route(" ", &["_X."], vec![])]),
            ("name", vec![route(&"n".repeat(65), &["_X."], vec![])]),
            ("patterns", vec![route("a", &[], vec![])]),
            ("patterns", vec![route("a", &["_9Q."], vec![])]),
            (
                "twice",
                vec![route("a", &["1"], vec![]), route("A", &["2"], vec![])],
            ),
            ("trunkIds", vec![route("a", &["1"], vec![1, 1])]),
            ("trunkIds", vec![route("a", &["1"], vec![0])]),
            (
                "strip",
                vec![RouteSettings {
                    strip: 21,
                    ..route("a", &["1"], vec![])
                }],
            ),
            (
                "prepend",
                vec![RouteSettings {
                    prepend: "9+".into(),
                    ..route("a", &["1"], vec![])
                }],
            ),
            (
                "at most",
                (0..21)
                    .map(|i| route(&format!("r{i}"), &["1"], vec![]))
                    .collect(),
            ),
        ];
        for (what, routes) in bad_routes {
            let s = DialplanSettings { routes, ..spain() };
            match s.compile() {
                Err(DomainError::Invalid { field, message }) => {
                    assert_eq!(field, "routes", "{what}");
                    assert!(message.contains(what), "{what}: {message}");
                }
                other => panic!("{what}: {other:?}"),
            }
        }
        // The route's position is named.
        let s = DialplanSettings {
            routes: vec![route("ok", &["1"], vec![]), route("bad", &["_["], vec![])],
            ..spain()
        };
        let e = s.compile().expect_err("refused").to_string();
        assert!(e.contains("route 2 (\"bad\")"), "{e}");
    }

    #[test]
    fn a_good_plan_compiles_to_what_routing_reads() {
        let c = spain().compile().expect("valid");
        assert_eq!(c.routes.len(), 1);
        assert!(c.routes[0].patterns[1].matches("912345678"));
        assert_eq!(c.plan.blocked_prefixes, vec!["803", "881"]);
        assert_eq!(c.permission, DialPermission::National);
        assert_eq!(c.limits.max_per_hour, 120);
        let none = DialplanSettings {
            outbound_patterns: Vec::new(),
            ..spain()
        };
        assert!(none.compile().expect("valid").routes.is_empty());
    }

    #[test]
    fn every_field_is_checked_and_named() {
        let cases: Vec<(&str, DialplanSettings)> = vec![
            (
                "countryCode",
                DialplanSettings {
                    country_code: "+34".into(),
                    ..spain()
                },
            ),
            (
                "countryCode",
                DialplanSettings {
                    country_code: String::new(),
                    ..spain()
                },
            ),
            (
                "internationalPrefix",
                DialplanSettings {
                    international_prefix: "0x".into(),
                    ..spain()
                },
            ),
            (
                "nationalPrefix",
                DialplanSettings {
                    national_prefix: "012".into(),
                    ..spain()
                },
            ),
            (
                "outboundPatterns",
                DialplanSettings {
                    outbound_patterns: vec!["_9Q.".into()],
                    ..spain()
                },
            ),
            (
                "strip",
                DialplanSettings {
                    strip: 21,
                    ..spain()
                },
            ),
            (
                "prepend",
                DialplanSettings {
                    prepend: "9+".into(),
                    ..spain()
                },
            ),
            (
                "agentPermission",
                DialplanSettings {
                    agent_permission: "world".into(),
                    ..spain()
                },
            ),
            (
                "maxConcurrentOutbound",
                DialplanSettings {
                    max_concurrent_outbound: MAX_LIMIT + 1,
                    ..spain()
                },
            ),
            (
                "blockedPrefixes",
                DialplanSettings {
                    blocked_prefixes: vec!["80a".into()],
                    ..spain()
                },
            ),
            (
                "blockedPrefixes",
                DialplanSettings {
                    blocked_prefixes: vec!["".into()],
                    ..spain()
                },
            ),
        ];
        for (field, s) in cases {
            match s.compile() {
                Err(DomainError::Invalid { field: f, .. }) => assert_eq!(f, field, "{s:?}"),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
