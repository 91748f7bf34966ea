//! The audit log: every administrative change, written in the same
//! transaction as the change itself. Details never contain secrets.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::time::{from_ms, now_ms};
use crate::{Actor, Ctx, DomainError};

/// Writes one entry inside the caller's transaction.
pub(crate) async fn record(
    c: &mut store::Conn,
    actor: &Actor,
    action: &str,
    target_type: &str,
    target_id: &str,
    details: serde_json::Value,
) -> Result<(), DomainError> {
    let details = details.to_string();
    store::audit::insert(
        c,
        &store::audit::NewAudit {
            actor_id: actor.user_id,
            actor_login: actor.login.as_deref(),
            action,
            target_type: Some(target_type),
            target_id: Some(target_id),
            details: &details,
            ip: actor.ip.as_deref(),
        },
        now_ms(),
    )
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor_id: Option<i64>,
    pub actor_login: Option<String>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub details: serde_json::Value,
    pub ip: Option<String>,
}

#[derive(Clone, Debug)]
pub struct AuditService {
    ctx: Arc<Ctx>,
}

impl AuditService {
    pub(crate) fn new(ctx: Arc<Ctx>) -> Self {
        Self { ctx }
    }

    /// Records an entry on its own (for actions with no other write, such
    /// as a login).
    pub async fn log(
        &self,
        actor: &Actor,
        action: &str,
        target_type: &str,
        target_id: &str,
        details: serde_json::Value,
    ) -> Result<(), DomainError> {
        let mut tx = self.ctx.db.write().await?;
        record(&mut tx, actor, action, target_type, target_id, details).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Newest first.
    pub async fn list(
        &self,
        action: Option<&str>,
        actor_id: Option<i64>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<AuditEntry>, i64), DomainError> {
        let mut c = self.ctx.db.conn().await?;
        let (rows, total) = store::audit::list(&mut c, action, actor_id, limit, offset).await?;
        let entries = rows
            .into_iter()
            .map(|r| AuditEntry {
                id: r.id,
                at: from_ms(r.at),
                actor_id: r.actor_id,
                actor_login: r.actor_login,
                action: r.action,
                target_type: r.target_type,
                target_id: r.target_id,
                details: serde_json::from_str(&r.details).unwrap_or(serde_json::Value::Null),
                ip: r.ip,
            })
            .collect();
        Ok((entries, total))
    }
}
