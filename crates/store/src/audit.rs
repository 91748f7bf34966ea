//! `audit_log`: who changed what, when and from where.

use crate::{Conn, DbError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor_id: Option<i64>,
    pub actor_login: Option<String>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub details: String,
    pub ip: Option<String>,
}

pub struct NewAudit<'a> {
    pub actor_id: Option<i64>,
    pub actor_login: Option<&'a str>,
    pub action: &'a str,
    pub target_type: Option<&'a str>,
    pub target_id: Option<&'a str>,
    pub details: &'a str,
    pub ip: Option<&'a str>,
}

pub async fn insert(c: &mut Conn, a: &NewAudit<'_>, now: i64) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor_id, actor_login, action, target_type, target_id, details, ip) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(now)
    .bind(a.actor_id)
    .bind(a.actor_login)
    .bind(a.action)
    .bind(a.target_type)
    .bind(a.target_id)
    .bind(a.details)
    .bind(a.ip)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub async fn list(
    c: &mut Conn,
    action: Option<&str>,
    actor_id: Option<i64>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<AuditRow>, i64), DbError> {
    let rows = sqlx::query_as(
        "SELECT id, at, actor_id, actor_login, action, target_type, target_id, details, ip FROM audit_log \
         WHERE ($1 IS NULL OR action = $1) AND ($2 IS NULL OR actor_id = $2) \
         ORDER BY id DESC LIMIT $3 OFFSET $4",
    )
    .bind(action)
    .bind(actor_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(&mut *c)
    .await?;
    let total = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE ($1 IS NULL OR action = $1) AND ($2 IS NULL OR actor_id = $2)",
    )
    .bind(action)
    .bind(actor_id)
    .fetch_one(&mut *c)
    .await?;
    Ok((rows, total))
}
