//! `sip_ephemeral_credentials`: HA1s of short-lived softphone passwords.

use crate::{Conn, DbError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EphemeralRow {
    pub sip_account_id: i64,
    pub ha1_md5: String,
    pub ha1_sha256: String,
    pub expires_at: i64,
}

/// Inserts one and keeps only the `keep` newest of that account.
pub async fn insert_and_trim(
    c: &mut Conn,
    account_id: i64,
    md5: &str,
    sha256: &str,
    now: i64,
    expires_at: i64,
    keep: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO sip_ephemeral_credentials (sip_account_id, ha1_md5, ha1_sha256, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(account_id)
    .bind(md5)
    .bind(sha256)
    .bind(now)
    .bind(expires_at)
    .execute(&mut *c)
    .await?;
    sqlx::query(
        "DELETE FROM sip_ephemeral_credentials WHERE sip_account_id = $1 AND (expires_at <= $2 OR id NOT IN \
         (SELECT id FROM sip_ephemeral_credentials WHERE sip_account_id = $1 ORDER BY id DESC LIMIT $3))",
    )
    .bind(account_id)
    .bind(now)
    .bind(keep)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Unexpired rows of one account, newest first.
pub async fn unexpired(
    c: &mut Conn,
    account_id: i64,
    now: i64,
) -> Result<Vec<EphemeralRow>, DbError> {
    sqlx::query_as(
        "SELECT sip_account_id, ha1_md5, ha1_sha256, expires_at FROM sip_ephemeral_credentials \
         WHERE sip_account_id = $1 AND expires_at > $2 ORDER BY id DESC",
    )
    .bind(account_id)
    .bind(now)
    .fetch_all(&mut *c)
    .await
    .map_err(DbError::from)
}

/// Every unexpired row, newest first within an account.
pub async fn all_unexpired(c: &mut Conn, now: i64) -> Result<Vec<EphemeralRow>, DbError> {
    sqlx::query_as(
        "SELECT sip_account_id, ha1_md5, ha1_sha256, expires_at FROM sip_ephemeral_credentials \
         WHERE expires_at > $1 ORDER BY sip_account_id, id DESC",
    )
    .bind(now)
    .fetch_all(&mut *c)
    .await
    .map_err(DbError::from)
}

pub async fn delete_for_account(c: &mut Conn, account_id: i64) -> Result<u64, DbError> {
    let r = sqlx::query("DELETE FROM sip_ephemeral_credentials WHERE sip_account_id = $1")
        .bind(account_id)
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected())
}
