//! The location service: SIP bindings saved by the registrar so UDP/TCP
//! contacts survive a restart. The registrar publishes
//! `Event::Registration` itself (it knows the contact count).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use store::registrations::RegistrationRow;

use crate::time::{from_ms, now_ms, to_ms};
use crate::{Ctx, DomainError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationRecord {
    pub username: String,
    pub contact: String,
    /// udp | tcp | tls | ws | wss
    pub transport: String,
    /// ip:port
    pub source: String,
    pub user_agent: Option<String>,
    pub instance_id: Option<String>,
    pub reg_id: Option<i64>,
    pub call_id: String,
    pub cseq: i64,
    pub expires_at: DateTime<Utc>,
    pub registered_at: DateTime<Utc>,
}

fn to_row(r: &RegistrationRecord) -> RegistrationRow {
    RegistrationRow {
        username: r.username.clone(),
        contact: r.contact.clone(),
        transport: r.transport.clone(),
        source: r.source.clone(),
        user_agent: r.user_agent.clone(),
        instance_id: r.instance_id.clone(),
        reg_id: r.reg_id,
        call_id: r.call_id.clone(),
        cseq: r.cseq,
        expires_at: to_ms(r.expires_at),
        registered_at: to_ms(r.registered_at),
    }
}

fn from_row(r: RegistrationRow) -> RegistrationRecord {
    RegistrationRecord {
        username: r.username,
        contact: r.contact,
        transport: r.transport,
        source: r.source,
        user_agent: r.user_agent,
        instance_id: r.instance_id,
        reg_id: r.reg_id,
        call_id: r.call_id,
        cseq: r.cseq,
        expires_at: from_ms(r.expires_at),
        registered_at: from_ms(r.registered_at),
    }
}

#[derive(Clone, Debug)]
pub struct RegistrationService {
    ctx: Arc<Ctx>,
}

impl RegistrationService {
    pub(crate) fn new(ctx: Arc<Ctx>) -> Self {
        Self { ctx }
    }

    /// Upsert on (username, contact). Fails for an unknown username.
    pub async fn save(&self, r: &RegistrationRecord) -> Result<(), DomainError> {
        self.save_batch(std::slice::from_ref(r)).await
    }

    /// Saves many bindings in one transaction.
    pub async fn save_batch(&self, rs: &[RegistrationRecord]) -> Result<(), DomainError> {
        if rs.is_empty() {
            return Ok(());
        }
        let rows: Vec<RegistrationRow> = rs.iter().map(to_row).collect();
        let mut tx = self.ctx.db.write().await?;
        store::registrations::upsert_many(&mut tx, &rows).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn remove(&self, username: &str, contact: &str) -> Result<(), DomainError> {
        let mut tx = self.ctx.db.write().await?;
        store::registrations::remove(&mut tx, username, contact).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn remove_all(&self, username: &str) -> Result<(), DomainError> {
        let mut tx = self.ctx.db.write().await?;
        store::registrations::remove_all(&mut tx, username).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn load_unexpired(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<RegistrationRecord>, DomainError> {
        let mut c = self.ctx.db.conn().await?;
        Ok(store::registrations::unexpired(&mut c, to_ms(now))
            .await?
            .into_iter()
            .map(from_row)
            .collect())
    }

    pub async fn for_username(
        &self,
        username: &str,
    ) -> Result<Vec<RegistrationRecord>, DomainError> {
        let mut c = self.ctx.db.conn().await?;
        Ok(
            store::registrations::unexpired_for(&mut c, username, now_ms())
                .await?
                .into_iter()
                .map(from_row)
                .collect(),
        )
    }

    /// Unexpired bindings with their account's extension (for admins).
    pub async fn list_with_extension(
        &self,
    ) -> Result<Vec<(RegistrationRecord, String)>, DomainError> {
        let mut c = self.ctx.db.conn().await?;
        Ok(
            store::registrations::unexpired_with_extension(&mut c, now_ms())
                .await?
                .into_iter()
                .map(|(r, ext)| (from_row(r), ext))
                .collect(),
        )
    }

    pub async fn count_unexpired(&self) -> Result<i64, DomainError> {
        let mut c = self.ctx.db.conn().await?;
        Ok(store::registrations::count_unexpired(&mut c, now_ms()).await?)
    }

    pub async fn purge_expired(&self, now: DateTime<Utc>) -> Result<u64, DomainError> {
        let mut tx = self.ctx.db.write().await?;
        let n = store::registrations::purge_expired(&mut tx, to_ms(now)).await?;
        tx.commit().await?;
        Ok(n)
    }
}
