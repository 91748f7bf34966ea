//! `api_tokens`: bearer tokens for scripts and CRMs; only their SHA-256 is
//! stored.

use crate::{Conn, DbError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub user_id: i64,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

pub async fn insert(
    c: &mut Conn,
    name: &str,
    user_id: i64,
    token_hash: &str,
    now: i64,
) -> Result<i64, DbError> {
    sqlx::query_scalar(
        "INSERT INTO api_tokens (name, user_id, token_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(name)
    .bind(user_id)
    .bind(token_hash)
    .bind(now)
    .fetch_one(&mut *c)
    .await
    .map_err(DbError::from)
}

pub async fn get(c: &mut Conn, id: i64) -> Result<Option<TokenRow>, DbError> {
    sqlx::query_as("SELECT id, name, user_id, created_at, last_used_at, revoked_at FROM api_tokens WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *c)
        .await
        .map_err(DbError::from)
}

pub async fn list(c: &mut Conn, limit: i64, offset: i64) -> Result<(Vec<TokenRow>, i64), DbError> {
    let rows = sqlx::query_as(
        "SELECT id, name, user_id, created_at, last_used_at, revoked_at FROM api_tokens \
         ORDER BY id DESC LIMIT $1 OFFSET $2",
    )
    .bind(limit)
    .bind(offset)
    .fetch_all(&mut *c)
    .await?;
    let total = sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens")
        .fetch_one(&mut *c)
        .await?;
    Ok((rows, total))
}

/// The owner of an unrevoked token.
pub async fn owner(
    c: &mut Conn,
    token_hash: &str,
) -> Result<Option<(i64, i64, Option<i64>)>, DbError> {
    sqlx::query_as("SELECT id, user_id, last_used_at FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
        .bind(token_hash)
        .fetch_optional(&mut *c)
        .await
        .map_err(DbError::from)
}

pub async fn touch(c: &mut Conn, id: i64, now: i64) -> Result<(), DbError> {
    sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// Revokes a token; false if it does not exist or was already revoked.
pub async fn revoke(c: &mut Conn, id: i64, now: i64) -> Result<bool, DbError> {
    let r =
        sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .bind(now)
            .execute(&mut *c)
            .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn revoke_for_user(c: &mut Conn, user_id: i64, now: i64) -> Result<u64, DbError> {
    let r = sqlx::query(
        "UPDATE api_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected())
}
