//! `settings`: small key/value pairs the server keeps for itself.

use crate::{Conn, DbError};

pub async fn get(c: &mut Conn, key: &str) -> Result<Option<String>, DbError> {
    sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
        .bind(key)
        .fetch_optional(&mut *c)
        .await
        .map_err(DbError::from)
}

/// Sets `key` only if it has no value yet; returns the value now stored.
pub async fn get_or_insert(c: &mut Conn, key: &str, value: &str) -> Result<String, DbError> {
    sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
        .bind(key)
        .bind(value)
        .execute(&mut *c)
        .await?;
    sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
        .bind(key)
        .fetch_one(&mut *c)
        .await
        .map_err(DbError::from)
}

pub async fn delete(c: &mut Conn, key: &str) -> Result<(), DbError> {
    sqlx::query("DELETE FROM settings WHERE key = $1")
        .bind(key)
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub async fn set(c: &mut Conn, key: &str, value: &str) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind(value)
    .execute(&mut *c)
    .await?;
    Ok(())
}
