//! `sessions`: console login sessions. Only the SHA-256 of the cookie value
//! is stored, so a leaked database does not hand out live sessions.

use crate::{Conn, DbError};

pub async fn insert(
    c: &mut Conn,
    token_hash: &str,
    user_id: i64,
    now: i64,
    expires_at: i64,
    ip: Option<&str>,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, ip) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(now)
    .bind(expires_at)
    .bind(ip)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// The user id of an unexpired session.
pub async fn user_for(c: &mut Conn, token_hash: &str, now: i64) -> Result<Option<i64>, DbError> {
    sqlx::query_scalar("SELECT user_id FROM sessions WHERE token_hash = $1 AND expires_at > $2")
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&mut *c)
        .await
        .map_err(DbError::from)
}

pub async fn delete(c: &mut Conn, token_hash: &str) -> Result<(), DbError> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub async fn delete_for_user(c: &mut Conn, user_id: i64) -> Result<u64, DbError> {
    let r = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected())
}

pub async fn purge_expired(c: &mut Conn, now: i64) -> Result<u64, DbError> {
    let r = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected())
}
