//! Campaign trunk lists (seeds/001 3.4): a call that belongs to a campaign
//! goes out through the campaign's own trunks, in the campaign's priority
//! order, instead of the route's ([`crate::dialplan::trunk_order`]).
//! Campaigns have no table yet: a campaign id is a positive number, and a
//! campaign without a list uses the dial plan's trunks.

use serde::{Deserialize, Serialize};

use crate::audit;
use crate::time::now_ms;
use crate::trunks::MAX_PRIORITY;
use crate::{Actor, Db, DomainError, Services};

/// The most trunks one campaign lists.
pub const MAX_TRUNKS: usize = 50;
/// A campaign's trunk priority when the request gives none (seeds/001).
pub const DEFAULT_PRIORITY: i64 = 10;

/// One trunk of a campaign's list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignTrunk {
    pub trunk_id: i64,
    pub trunk_name: String,
    /// Lower is tried first (within the campaign's list).
    pub priority: i64,
}

/// One entry of a `PUT`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CampaignTrunkInput {
    pub trunk_id: i64,
    /// 0..=1000, lower first; 10 when absent.
    #[serde(default)]
    pub priority: Option<i64>,
}

/// The whole list of a campaign (`PUT` replaces it; empty removes it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CampaignTrunksInput {
    pub trunks: Vec<CampaignTrunkInput>,
}

/// Checks a list without the database: at most [`MAX_TRUNKS`], positive
/// trunk ids, no trunk twice, priorities in range. Returns (trunk id,
/// priority) pairs in the order given.
pub fn validate(input: &CampaignTrunksInput) -> Result<Vec<(i64, i64)>, DomainError> {
    if input.trunks.len() > MAX_TRUNKS {
        return Err(DomainError::invalid(
            "trunks",
            format!("at most {MAX_TRUNKS} trunks"),
        ));
    }
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(input.trunks.len());
    for t in &input.trunks {
        if t.trunk_id < 1 {
            return Err(DomainError::invalid(
                "trunkId",
                format!("{}: a trunk id is positive", t.trunk_id),
            ));
        }
        if out.iter().any(|(id, _)| *id == t.trunk_id) {
            return Err(DomainError::invalid(
                "trunkId",
                format!("trunk {} is listed twice", t.trunk_id),
            ));
        }
        let priority = t.priority.unwrap_or(DEFAULT_PRIORITY);
        if !(0..=MAX_PRIORITY).contains(&priority) {
            return Err(DomainError::invalid(
                "priority",
                format!("must be between 0 and {MAX_PRIORITY}"),
            ));
        }
        out.push((t.trunk_id, priority));
    }
    Ok(out)
}

/// Campaign ids are positive; anything else is no campaign at all.
fn campaign(id: i64) -> Result<i64, DomainError> {
    if id < 1 {
        return Err(DomainError::NotFound { what: "campaign" });
    }
    Ok(id)
}

/// Campaign trunk lists in the database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct CampaignTrunkService {
    db: Db,
}

impl Services {
    pub fn campaign_trunks(&self) -> CampaignTrunkService {
        CampaignTrunkService::new(self.db.clone())
    }
}

impl CampaignTrunkService {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The campaign's trunks, lowest priority first (empty: none of its own).
    pub async fn list(&self, campaign_id: i64) -> Result<Vec<CampaignTrunk>, DomainError> {
        let id = campaign(campaign_id)?;
        let mut c = self.db.conn().await?;
        Ok(store::campaign_trunks::list(&mut c, id)
            .await?
            .into_iter()
            .map(|r| CampaignTrunk {
                trunk_id: r.trunk_id,
                trunk_name: r.trunk_name,
                priority: r.priority,
            })
            .collect())
    }

    /// The trunk ids routing tries for the campaign, in its order; `None`
    /// when the campaign has no list of its own.
    pub async fn trunk_ids(&self, campaign_id: i64) -> Result<Option<Vec<i64>>, DomainError> {
        if campaign_id < 1 {
            return Ok(None);
        }
        let ids: Vec<i64> = self
            .list(campaign_id)
            .await?
            .into_iter()
            .map(|t| t.trunk_id)
            .collect();
        Ok((!ids.is_empty()).then_some(ids))
    }

    /// Replaces the campaign's whole list (validated first; every trunk
    /// must exist). Nothing changes when any entry is refused.
    pub async fn replace(
        &self,
        actor: &Actor,
        campaign_id: i64,
        input: &CampaignTrunksInput,
    ) -> Result<Vec<CampaignTrunk>, DomainError> {
        let id = campaign(campaign_id)?;
        let entries = validate(input)?;
        let mut tx = self.db.write().await?;
        for (trunk_id, _) in &entries {
            if store::trunks::get(&mut tx, *trunk_id).await?.is_none() {
                return Err(DomainError::invalid(
                    "trunkId",
                    format!("no trunk {trunk_id}"),
                ));
            }
        }
        store::campaign_trunks::replace(&mut tx, id, &entries, now_ms()).await?;
        audit::record(
            &mut tx,
            actor,
            "campaign_trunks.update",
            "campaign",
            &id.to_string(),
            serde_json::json!({
                "trunks": entries
                    .iter()
                    .map(|(t, p)| serde_json::json!({"trunkId": t, "priority": p}))
                    .collect::<Vec<_>>(),
            }),
        )
        .await?;
        let rows = store::campaign_trunks::list(&mut tx, id).await?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|r| CampaignTrunk {
                trunk_id: r.trunk_id,
                trunk_name: r.trunk_name,
                priority: r.priority,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(trunk_id: i64, priority: Option<i64>) -> CampaignTrunkInput {
        CampaignTrunkInput { trunk_id, priority }
    }

    fn field(r: Result<Vec<(i64, i64)>, DomainError>) -> &'static str {
        match r {
            Err(DomainError::Invalid { field, .. }) => field,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_list_is_checked_whole() {
        let ok = CampaignTrunksInput {
            trunks: vec![entry(3, Some(1)), entry(1, None), entry(2, Some(0))],
        };
        assert_eq!(validate(&ok).expect("valid"), vec![(3, 1), (1, 10), (2, 0)]);
        assert!(validate(&CampaignTrunksInput { trunks: vec![] })
            .expect("valid")
            .is_empty());
        let twice = CampaignTrunksInput {
            trunks: vec![entry(1, Some(1)), entry(2, None), entry(1, Some(5))],
        };
        assert_eq!(field(validate(&twice)), "trunkId");
        let zero = CampaignTrunksInput {
            trunks: vec![entry(0, None)],
        };
        assert_eq!(field(validate(&zero)), "trunkId");
        for p in [-1, MAX_PRIORITY + 1] {
            let bad = CampaignTrunksInput {
                trunks: vec![entry(1, Some(p))],
            };
            assert_eq!(field(validate(&bad)), "priority", "{p}");
        }
        let long = CampaignTrunksInput {
            trunks: (1..=51).map(|i| entry(i, None)).collect(),
        };
        assert_eq!(field(validate(&long)), "trunks");
    }

    #[test]
    fn only_positive_ids_are_campaigns() {
        assert_eq!(campaign(4).expect("valid"), 4);
        assert!(matches!(
            campaign(0),
            Err(DomainError::NotFound { what: "campaign" })
        ));
    }
}
