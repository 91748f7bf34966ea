//! `dids`: inbound numbers and what a call to them reaches.

use sqlx::{AssertSqlSafe, Row};

use crate::flag::Flag;
use crate::{Conn, DbError};

/// A whole `dids` row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DidRow {
    pub id: i64,
    pub number: String,
    pub description: Option<String>,
    pub destination_type: String,
    pub destination: String,
    pub trunk_id: Option<i64>,
    #[sqlx(try_from = "Flag")]
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The settable columns of a DID.
#[derive(Debug, Clone, Copy)]
pub struct DidValues<'a> {
    pub number: &'a str,
    pub description: Option<&'a str>,
    pub destination_type: &'a str,
    pub destination: &'a str,
    pub trunk_id: Option<i64>,
    pub enabled: bool,
}

const SELECT: &str = "SELECT id, number, description, destination_type, destination, \
     trunk_id, enabled, created_at, updated_at FROM dids";

pub async fn insert(c: &mut Conn, v: &DidValues<'_>, now: i64) -> Result<i64, DbError> {
    let row = sqlx::query(
        "INSERT INTO dids (number, description, destination_type, destination, trunk_id, \
           enabled, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
    )
    .bind(v.number)
    .bind(v.description)
    .bind(v.destination_type)
    .bind(v.destination)
    .bind(v.trunk_id)
    .bind(v.enabled)
    .bind(now)
    .fetch_one(&mut *c)
    .await?;
    Ok(row.try_get::<i64, _>(0)?)
}

/// Replaces every settable column of DID `id`; false if there is none.
pub async fn update(c: &mut Conn, id: i64, v: &DidValues<'_>, now: i64) -> Result<bool, DbError> {
    let r = sqlx::query(
        "UPDATE dids SET number = $1, description = $2, destination_type = $3, \
           destination = $4, trunk_id = $5, enabled = $6, updated_at = $7 WHERE id = $8",
    )
    .bind(v.number)
    .bind(v.description)
    .bind(v.destination_type)
    .bind(v.destination)
    .bind(v.trunk_id)
    .bind(v.enabled)
    .bind(now)
    .bind(id)
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn get(c: &mut Conn, id: i64) -> Result<Option<DidRow>, DbError> {
    sqlx::query_as(AssertSqlSafe(format!("{SELECT} WHERE id = $1")))
        .bind(id)
        .fetch_optional(&mut *c)
        .await
        .map_err(DbError::from)
}

/// Whether another DID than `except` has this number on this trunk (or on
/// every trunk when `trunk_id` is `None`).
pub async fn number_taken(
    c: &mut Conn,
    number: &str,
    trunk_id: Option<i64>,
    except: Option<i64>,
) -> Result<bool, DbError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM dids WHERE number = $1 AND COALESCE(trunk_id, 0) = $2 \
           AND ($3 IS NULL OR id <> $3)",
    )
    .bind(number)
    .bind(trunk_id.unwrap_or(0))
    .bind(except)
    .fetch_one(&mut *c)
    .await?;
    Ok(n > 0)
}

/// Every DID, by id (the routing table is small: a site has tens or
/// hundreds of numbers, and patterns cover ranges).
pub async fn all(c: &mut Conn) -> Result<Vec<DidRow>, DbError> {
    sqlx::query_as(AssertSqlSafe(format!("{SELECT} ORDER BY id")))
        .fetch_all(&mut *c)
        .await
        .map_err(DbError::from)
}

pub async fn delete(c: &mut Conn, id: i64) -> Result<bool, DbError> {
    let r = sqlx::query("DELETE FROM dids WHERE id = $1")
        .bind(id)
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected() > 0)
}
