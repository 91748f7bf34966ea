//! Inbound numbers (DIDs): what a call from a trunk to a number reaches.
//!
//! A DID is a number as the carrier sends it (`+34911234567`), a pattern in
//! the dial plan's notation (`_3491123XXXX`, see [`Pattern`]) or `*`, the
//! catch-all for "any other number" (the configurable destination of
//! unknown DIDs). It may be limited to one trunk. Its destination is data
//! (`destinationType` + `destination`): an agent's extension today; queues
//! and IVRs become new destination types, not new code in the engines.
//!
//! Which entry wins ([`InboundRoutes::route`]): an exact number over a
//! pattern over the catch-all; within each, an entry for the call's trunk
//! over one for every trunk; among patterns, the one with more literal
//! characters, then the longer one. A number without a route is refused
//! (404, cause `unknown_did`). Exact numbers compare without a leading `+`
//! (carriers differ in sending E.164 with or without it).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::audit;
use crate::dialplan::Pattern;
use crate::events::{Event, EventBus};
use crate::time::{from_ms, now_ms};
use crate::{Actor, Db, DomainError, Services};

/// The longest DID or pattern accepted.
const MAX_NUMBER: usize = 64;
const MAX_DESCRIPTION: usize = 200;
const MAX_DESTINATION: usize = 64;

/// Where a DID sends its calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DestinationType {
    /// Ring the agent whose extension is `destination`.
    Agent,
    /// Refuse the call (603 Decline): a number taken out of service.
    Reject,
}

impl DestinationType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Reject => "reject",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "agent" => Some(Self::Agent),
            "reject" => Some(Self::Reject),
            _ => None,
        }
    }
}

/// A DID as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Did {
    pub id: i64,
    /// An exact number, a `_` pattern or `*` (any other number).
    pub number: String,
    pub description: Option<String>,
    pub destination_type: DestinationType,
    /// The agent's extension (empty for `reject`).
    pub destination: String,
    /// Only calls from this trunk; null: from any trunk.
    pub trunk_id: Option<i64>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn did_from_row(r: store::dids::DidRow) -> Did {
    Did {
        id: r.id,
        number: r.number,
        description: r.description,
        // The column's CHECK allows only the known names.
        destination_type: DestinationType::parse(&r.destination_type)
            .unwrap_or(DestinationType::Reject),
        destination: r.destination,
        trunk_id: r.trunk_id,
        enabled: r.enabled,
        created_at: from_ms(r.created_at),
        updated_at: from_ms(r.updated_at),
    }
}

/// Creating (every field but the optional ones required) or changing a DID
/// (what is left out keeps its value).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DidInput {
    pub number: Option<String>,
    #[serde(default, deserialize_with = "crate::trunks::present")]
    #[schema(value_type = Option<String>, nullable)]
    pub description: Option<Option<String>>,
    /// agent | reject (default agent)
    pub destination_type: Option<String>,
    /// The agent's extension for `agent`.
    pub destination: Option<String>,
    #[serde(default, deserialize_with = "crate::trunks::present")]
    #[schema(value_type = Option<i64>, nullable)]
    pub trunk_id: Option<Option<i64>>,
    pub enabled: Option<bool>,
}

/// How an entry's number matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DidNumber {
    /// Compared without a leading `+`.
    Exact(String),
    Pattern(Pattern),
    Any,
}

impl DidNumber {
    /// Parses a stored or submitted number.
    pub fn parse(v: &str) -> Result<Self, DomainError> {
        let t = v.trim();
        if t.is_empty() {
            return Err(DomainError::invalid("number", "required"));
        }
        if t.len() > MAX_NUMBER {
            return Err(DomainError::invalid(
                "number",
                format!("at most {MAX_NUMBER} characters"),
            ));
        }
        if t == "*" {
            return Ok(Self::Any);
        }
        if t.starts_with('_') {
            return Pattern::parse(t)
                .map(Self::Pattern)
                .map_err(|e| DomainError::invalid("number", e.to_string()));
        }
        let digits = t.strip_prefix('+').unwrap_or(t);
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(DomainError::invalid(
                "number",
                format!("{t:?}: digits with an optional leading +, a _pattern, or *"),
            ));
        }
        Ok(Self::Exact(digits.to_string()))
    }

    /// How specific a match is (higher wins): exact, then patterns by
    /// literal characters and length, then the catch-all.
    fn rank(&self) -> (u8, usize, usize) {
        match self {
            Self::Exact(_) => (2, 0, 0),
            Self::Pattern(p) => (1, p.literal_len(), p.as_str().len()),
            Self::Any => (0, 0, 0),
        }
    }

    fn matches(&self, dialled: &str) -> bool {
        let bare = dialled.strip_prefix('+').unwrap_or(dialled);
        match self {
            Self::Exact(n) => n == bare,
            Self::Pattern(p) => p.matches(dialled) || p.matches(bare),
            Self::Any => true,
        }
    }
}

/// What a routed inbound call reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DidTarget {
    Agent { extension: String },
    Reject,
}

/// One enabled DID, ready to match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRoute {
    pub did_id: i64,
    pub number: DidNumber,
    pub trunk_id: Option<i64>,
    pub target: DidTarget,
}

/// The enabled DIDs: what engines route calls from trunks with. Cheap to
/// share (the engines hold it behind an `Arc` and swap it on changes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundRoutes {
    routes: Vec<InboundRoute>,
}

impl InboundRoutes {
    pub fn new(routes: Vec<InboundRoute>) -> Self {
        Self { routes }
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The most specific route for `dialled` arriving from `trunk_id` (see
    /// the module's documentation).
    pub fn route(&self, dialled: &str, trunk_id: i64) -> Option<&InboundRoute> {
        self.routes
            .iter()
            .filter(|r| r.trunk_id.is_none_or(|t| t == trunk_id))
            .filter(|r| r.number.matches(dialled))
            .max_by_key(|r| {
                let (class, literal, len) = r.number.rank();
                (
                    class,
                    r.trunk_id.is_some(),
                    literal,
                    len,
                    std::cmp::Reverse(r.did_id),
                )
            })
    }
}

fn route_from_row(r: &store::dids::DidRow) -> Option<InboundRoute> {
    let number = DidNumber::parse(&r.number).ok()?;
    let target = match DestinationType::parse(&r.destination_type)? {
        DestinationType::Agent => DidTarget::Agent {
            extension: r.destination.clone(),
        },
        DestinationType::Reject => DidTarget::Reject,
    };
    Some(InboundRoute {
        did_id: r.id,
        number,
        trunk_id: r.trunk_id,
        target,
    })
}

/// A validated DID, ready to store.
struct Resolved {
    number: String,
    description: Option<String>,
    destination_type: DestinationType,
    destination: String,
    trunk_id: Option<i64>,
    enabled: bool,
}

fn resolve(input: &DidInput, base: Option<&store::dids::DidRow>) -> Result<Resolved, DomainError> {
    let number = match (&input.number, base) {
        (Some(n), _) => {
            DidNumber::parse(n)?;
            n.trim().to_string()
        }
        (None, Some(b)) => b.number.clone(),
        (None, None) => return Err(DomainError::invalid("number", "required")),
    };
    let description = match (&input.description, base) {
        (Some(d), _) => {
            let d = d.as_deref().map(str::trim).filter(|d| !d.is_empty());
            if let Some(d) = d {
                if d.chars().count() > MAX_DESCRIPTION || d.chars().any(char::is_control) {
                    return Err(DomainError::invalid(
                        "description",
                        format!("at most {MAX_DESCRIPTION} characters, no control characters"),
                    ));
                }
            }
            d.map(str::to_string)
        }
        (None, Some(b)) => b.description.clone(),
        (None, None) => None,
    };
    let destination_type = match (&input.destination_type, base) {
        (Some(t), _) => DestinationType::parse(t.trim()).ok_or_else(|| {
            DomainError::invalid("destinationType", format!("{t:?}: agent or reject"))
        })?,
        (None, Some(b)) => {
            DestinationType::parse(&b.destination_type).unwrap_or(DestinationType::Agent)
        }
        (None, None) => DestinationType::Agent,
    };
    let destination = match (&input.destination, base) {
        (Some(d), _) => d.trim().to_string(),
        (None, Some(b)) => b.destination.clone(),
        (None, None) => String::new(),
    };
    let destination = match destination_type {
        DestinationType::Reject => String::new(),
        DestinationType::Agent => {
            let ok = !destination.is_empty()
                && destination.len() <= MAX_DESTINATION
                && destination
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !ok {
                return Err(DomainError::invalid(
                    "destination",
                    "an agent's extension (letters, digits, . _ -)",
                ));
            }
            destination
        }
    };
    let trunk_id = match (input.trunk_id, base) {
        (Some(t), _) => t,
        (None, Some(b)) => b.trunk_id,
        (None, None) => None,
    };
    let enabled = input.enabled.or(base.map(|b| b.enabled)).unwrap_or(true);
    Ok(Resolved {
        number,
        description,
        destination_type,
        destination,
        trunk_id,
        enabled,
    })
}

impl Resolved {
    fn values(&self) -> store::dids::DidValues<'_> {
        store::dids::DidValues {
            number: &self.number,
            description: self.description.as_deref(),
            destination_type: self.destination_type.as_str(),
            destination: &self.destination,
            trunk_id: self.trunk_id,
            enabled: self.enabled,
        }
    }

    fn audit(&self) -> serde_json::Value {
        serde_json::json!({
            "number": self.number, "destinationType": self.destination_type.as_str(),
            "destination": self.destination, "trunkId": self.trunk_id, "enabled": self.enabled,
        })
    }
}

/// DIDs in the database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DidService {
    db: Db,
    events: Option<EventBus>,
}

impl Services {
    /// The DID service; its changes are published on the event bus (the SIP
    /// server re-reads the routes).
    pub fn dids(&self) -> DidService {
        DidService {
            db: self.db.clone(),
            events: Some(self.events.clone()),
        }
    }
}

impl DidService {
    pub fn new(db: Db) -> Self {
        Self { db, events: None }
    }

    fn publish(&self, id: i64, action: &str) {
        if let Some(bus) = &self.events {
            bus.publish(Event::Did {
                at: Utc::now(),
                id,
                action: action.to_string(),
            });
        }
    }

    /// Every DID, by id.
    pub async fn list(&self) -> Result<Vec<Did>, DomainError> {
        let mut c = self.db.conn().await?;
        Ok(store::dids::all(&mut c)
            .await?
            .into_iter()
            .map(did_from_row)
            .collect())
    }

    pub async fn require(&self, id: i64) -> Result<Did, DomainError> {
        let mut c = self.db.conn().await?;
        store::dids::get(&mut c, id)
            .await?
            .map(did_from_row)
            .ok_or(DomainError::NotFound { what: "did" })
    }

    pub async fn create(&self, actor: &Actor, input: &DidInput) -> Result<Did, DomainError> {
        let r = resolve(input, None)?;
        let now = now_ms();
        let mut tx = self.db.write().await?;
        check_refs(&mut tx, &r, None).await?;
        let id = store::dids::insert(&mut tx, &r.values(), now)
            .await
            .map_err(write_error)?;
        audit::record(
            &mut tx,
            actor,
            "did.create",
            "did",
            &id.to_string(),
            r.audit(),
        )
        .await?;
        let row = store::dids::get(&mut tx, id)
            .await?
            .ok_or(DomainError::NotFound { what: "did" })?;
        tx.commit().await?;
        self.publish(id, "created");
        Ok(did_from_row(row))
    }

    pub async fn update(
        &self,
        actor: &Actor,
        id: i64,
        input: &DidInput,
    ) -> Result<Did, DomainError> {
        let now = now_ms();
        let mut tx = self.db.write().await?;
        let base = store::dids::get(&mut tx, id)
            .await?
            .ok_or(DomainError::NotFound { what: "did" })?;
        let r = resolve(input, Some(&base))?;
        check_refs(&mut tx, &r, Some(id)).await?;
        store::dids::update(&mut tx, id, &r.values(), now)
            .await
            .map_err(write_error)?;
        audit::record(
            &mut tx,
            actor,
            "did.update",
            "did",
            &id.to_string(),
            r.audit(),
        )
        .await?;
        let row = store::dids::get(&mut tx, id)
            .await?
            .ok_or(DomainError::NotFound { what: "did" })?;
        tx.commit().await?;
        self.publish(id, "updated");
        Ok(did_from_row(row))
    }

    pub async fn delete(&self, actor: &Actor, id: i64) -> Result<(), DomainError> {
        let mut tx = self.db.write().await?;
        let row = store::dids::get(&mut tx, id)
            .await?
            .ok_or(DomainError::NotFound { what: "did" })?;
        store::dids::delete(&mut tx, id).await?;
        audit::record(
            &mut tx,
            actor,
            "did.delete",
            "did",
            &id.to_string(),
            serde_json::json!({ "number": row.number, "trunkId": row.trunk_id }),
        )
        .await?;
        tx.commit().await?;
        self.publish(id, "deleted");
        Ok(())
    }

    /// The enabled DIDs as routes, for the engines.
    pub async fn routes(&self) -> Result<Arc<InboundRoutes>, DomainError> {
        let mut c = self.db.conn().await?;
        let rows = store::dids::all(&mut c).await?;
        Ok(Arc::new(InboundRoutes::new(
            rows.iter()
                .filter(|r| r.enabled)
                .filter_map(route_from_row)
                .collect(),
        )))
    }
}

/// The number is free on its trunk, and the trunk exists.
async fn check_refs(
    tx: &mut store::Conn,
    r: &Resolved,
    except: Option<i64>,
) -> Result<(), DomainError> {
    if let Some(t) = r.trunk_id {
        if store::trunks::get(tx, t).await?.is_none() {
            return Err(DomainError::invalid("trunkId", format!("no trunk {t}")));
        }
    }
    if store::dids::number_taken(tx, &r.number, r.trunk_id, except).await? {
        return Err(DomainError::conflict("number"));
    }
    Ok(())
}

/// A unique violation found by the database itself (a concurrent writer).
fn write_error(e: store::DbError) -> DomainError {
    if store::unique_violation(&e).is_some() {
        return DomainError::conflict("number");
    }
    DomainError::Db(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(id: i64, number: &str, trunk: Option<i64>, ext: &str) -> InboundRoute {
        InboundRoute {
            did_id: id,
            number: DidNumber::parse(number).expect("valid"),
            trunk_id: trunk,
            target: DidTarget::Agent {
                extension: ext.into(),
            },
        }
    }

    fn target(routes: &InboundRoutes, dialled: &str, trunk: i64) -> Option<String> {
        routes.route(dialled, trunk).map(|r| match &r.target {
            DidTarget::Agent { extension } => extension.clone(),
            DidTarget::Reject => "reject".into(),
        })
    }

    #[test]
    fn exact_beats_pattern_beats_catch_all_and_trunk_specific_wins() {
        let routes = InboundRoutes::new(vec![
            route(1, "*", None, "any"),
            route(2, "_3491XXXXXXX", None, "madrid"),
            route(3, "_349112XXXXX", None, "madrid-sales"),
            route(4, "+34911234567", None, "exact"),
            route(5, "34911234567", Some(7), "exact-trunk7"),
            route(6, "*", Some(9), "any-trunk9"),
        ]);
        assert_eq!(target(&routes, "+34911234567", 1).as_deref(), Some("exact"));
        assert_eq!(target(&routes, "34911234567", 1).as_deref(), Some("exact"));
        assert_eq!(
            target(&routes, "+34911234567", 7).as_deref(),
            Some("exact-trunk7")
        );
        assert_eq!(
            target(&routes, "34911299999", 1).as_deref(),
            Some("madrid-sales")
        );
        assert_eq!(
            target(&routes, "+34915550000", 1).as_deref(),
            Some("madrid")
        );
        assert_eq!(target(&routes, "442071234567", 1).as_deref(), Some("any"));
        assert_eq!(
            target(&routes, "442071234567", 9).as_deref(),
            Some("any-trunk9")
        );
        // Without a catch-all an unknown number has no route.
        let strict = InboundRoutes::new(vec![route(1, "100", None, "x")]);
        assert_eq!(target(&strict, "101", 1), None);
        assert_eq!(target(&strict, "", 1), None);
    }

    #[test]
    fn numbers_are_validated() {
        for bad in ["", "abc", "12 34", "+", "_", "_12Q", "1;2", "+-1"] {
            assert!(DidNumber::parse(bad).is_err(), "{bad:?}");
        }
        let long = "1".repeat(MAX_NUMBER + 1);
        assert!(DidNumber::parse(&long).is_err());
        for good in ["*", "+34911234567", "100", "_91XXXXXXX", "_+34."] {
            assert!(DidNumber::parse(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn input_is_validated_before_anything_is_stored() {
        let bad_dest = DidInput {
            number: Some("100".into()),
            destination: Some("1001; DROP".into()),
            ..Default::default()
        };
        assert!(matches!(
            resolve(&bad_dest, None),
            Err(DomainError::Invalid {
                field: "destination",
                ..
            })
        ));
        let no_dest = DidInput {
            number: Some("100".into()),
            ..Default::default()
        };
        assert!(resolve(&no_dest, None).is_err());
        let reject = DidInput {
            number: Some("100".into()),
            destination_type: Some("reject".into()),
            destination: Some("ignored".into()),
            ..Default::default()
        };
        let r = resolve(&reject, None).expect("valid");
        assert_eq!(r.destination, "");
        let bad_type = DidInput {
            number: Some("100".into()),
            destination_type: Some("queue".into()),
            destination: Some("1001".into()),
            ..Default::default()
        };
        assert!(matches!(
            resolve(&bad_type, None),
            Err(DomainError::Invalid {
                field: "destinationType",
                ..
            })
        ));
    }
}
