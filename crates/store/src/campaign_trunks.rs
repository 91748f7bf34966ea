//! `campaign_trunks`: a campaign's own trunks, in its priority order.

use crate::{Conn, DbError};

/// One entry of a campaign's list, with the trunk's name.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CampaignTrunkRow {
    pub trunk_id: i64,
    pub trunk_name: String,
    pub priority: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The campaign's trunks, lowest priority first (then by trunk id).
pub async fn list(c: &mut Conn, campaign_id: i64) -> Result<Vec<CampaignTrunkRow>, DbError> {
    sqlx::query_as(
        "SELECT ct.trunk_id, t.name AS trunk_name, ct.priority, ct.created_at, ct.updated_at \
           FROM campaign_trunks ct JOIN trunks t ON t.id = ct.trunk_id \
          WHERE ct.campaign_id = $1 ORDER BY ct.priority, ct.trunk_id",
    )
    .bind(campaign_id)
    .fetch_all(&mut *c)
    .await
    .map_err(DbError::from)
}

/// Replaces the campaign's whole list with `entries` (trunk id,
/// priority). Run it in a transaction: it deletes first. An entry kept
/// from the old list keeps its `created_at`.
pub async fn replace(
    c: &mut Conn,
    campaign_id: i64,
    entries: &[(i64, i64)],
    now: i64,
) -> Result<(), DbError> {
    let old = list(c, campaign_id).await?;
    sqlx::query("DELETE FROM campaign_trunks WHERE campaign_id = $1")
        .bind(campaign_id)
        .execute(&mut *c)
        .await?;
    for (trunk_id, priority) in entries {
        let created = old
            .iter()
            .find(|r| r.trunk_id == *trunk_id)
            .map_or(now, |r| r.created_at);
        sqlx::query(
            "INSERT INTO campaign_trunks (campaign_id, trunk_id, priority, created_at, \
               updated_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(campaign_id)
        .bind(*trunk_id)
        .bind(*priority)
        .bind(created)
        .bind(now)
        .execute(&mut *c)
        .await?;
    }
    Ok(())
}
