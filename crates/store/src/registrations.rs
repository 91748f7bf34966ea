//! `registrations`: the SIP location service (one row per username and
//! contact).

use crate::{Conn, DbError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RegistrationRow {
    pub username: String,
    pub contact: String,
    pub transport: String,
    pub source: String,
    pub user_agent: Option<String>,
    pub instance_id: Option<String>,
    pub reg_id: Option<i64>,
    pub call_id: String,
    pub cseq: i64,
    pub expires_at: i64,
    pub registered_at: i64,
}

/// Inserts or replaces the binding of (username, contact).
pub async fn upsert(c: &mut Conn, r: &RegistrationRow) -> Result<(), DbError> {
    upsert_many(c, std::slice::from_ref(r)).await
}

/// Rows per multi-row statement: 11 parameters each stays far below the
/// parameter limits of SQLite (32,766) and PostgreSQL (65,535).
const ROWS_PER_STATEMENT: usize = 500;

/// [`upsert`] for many bindings, a few hundred per statement: one statement
/// per binding cost a round trip to the database thread each and limited
/// the REGISTER rate (see `bench/REPORT.md`). Within one call the last row
/// for a (username, contact) wins.
pub async fn upsert_many(c: &mut Conn, rows: &[RegistrationRow]) -> Result<(), DbError> {
    // One statement cannot update the same row twice: keep the last.
    let mut last = std::collections::HashMap::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        last.insert((r.username.as_str(), r.contact.as_str()), i);
    }
    let mut unique: Vec<&RegistrationRow> = rows
        .iter()
        .enumerate()
        .filter(|(i, r)| last.get(&(r.username.as_str(), r.contact.as_str())) == Some(i))
        .map(|(_, r)| r)
        .collect();
    // In key order, so that two batches writing the same bindings at once
    // on PostgreSQL lock their rows in the same order (no deadlock).
    unique.sort_by(|a, b| (&a.username, &a.contact).cmp(&(&b.username, &b.contact)));
    for chunk in unique.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO registrations (username, contact, transport, source, user_agent, \
               instance_id, reg_id, call_id, cseq, expires_at, registered_at) VALUES {} \
             ON CONFLICT (username, contact) DO UPDATE SET transport = excluded.transport, \
               source = excluded.source, user_agent = excluded.user_agent, \
               instance_id = excluded.instance_id, reg_id = excluded.reg_id, \
               call_id = excluded.call_id, cseq = excluded.cseq, \
               expires_at = excluded.expires_at, registered_at = excluded.registered_at",
            crate::values_tuples(crate::sigil(c), chunk.len(), 11, 1)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in chunk {
            q = q
                .bind(&r.username)
                .bind(&r.contact)
                .bind(&r.transport)
                .bind(&r.source)
                .bind(&r.user_agent)
                .bind(&r.instance_id)
                .bind(r.reg_id)
                .bind(&r.call_id)
                .bind(r.cseq)
                .bind(r.expires_at)
                .bind(r.registered_at);
        }
        // Not cached: its text varies with the batch size.
        q.persistent(false).execute(&mut *c).await?;
    }
    Ok(())
}

pub async fn remove(c: &mut Conn, username: &str, contact: &str) -> Result<u64, DbError> {
    let r = sqlx::query("DELETE FROM registrations WHERE username = $1 AND contact = $2")
        .bind(username)
        .bind(contact)
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected())
}

pub async fn remove_all(c: &mut Conn, username: &str) -> Result<u64, DbError> {
    let r = sqlx::query("DELETE FROM registrations WHERE username = $1")
        .bind(username)
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected())
}

const SELECT: &str =
    "SELECT username, contact, transport, source, user_agent, instance_id, reg_id, call_id, \
    cseq, expires_at, registered_at FROM registrations";

pub async fn unexpired(c: &mut Conn, now: i64) -> Result<Vec<RegistrationRow>, DbError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE expires_at > $1 ORDER BY username, registered_at"
    )))
    .bind(now)
    .fetch_all(&mut *c)
    .await
    .map_err(DbError::from)
}

pub async fn unexpired_for(
    c: &mut Conn,
    username: &str,
    now: i64,
) -> Result<Vec<RegistrationRow>, DbError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE username = $1 AND expires_at > $2 ORDER BY registered_at"
    )))
    .bind(username)
    .bind(now)
    .fetch_all(&mut *c)
    .await
    .map_err(DbError::from)
}

pub async fn count_unexpired(c: &mut Conn, now: i64) -> Result<i64, DbError> {
    sqlx::query_scalar("SELECT COUNT(*) FROM registrations WHERE expires_at > $1")
        .bind(now)
        .fetch_one(&mut *c)
        .await
        .map_err(DbError::from)
}

pub async fn purge_expired(c: &mut Conn, now: i64) -> Result<u64, DbError> {
    let r = sqlx::query("DELETE FROM registrations WHERE expires_at <= $1")
        .bind(now)
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected())
}

/// Unexpired bindings with the extension of their account.
pub async fn unexpired_with_extension(
    c: &mut Conn,
    now: i64,
) -> Result<Vec<(RegistrationRow, String)>, DbError> {
    #[derive(sqlx::FromRow)]
    struct Joined {
        #[sqlx(flatten)]
        reg: RegistrationRow,
        extension: String,
    }
    let rows: Vec<Joined> = sqlx::query_as(
        "SELECT r.username, r.contact, r.transport, r.source, r.user_agent, r.instance_id, r.reg_id, r.call_id, \
           r.cseq, r.expires_at, r.registered_at, s.extension \
         FROM registrations r JOIN sip_accounts s ON s.username = r.username \
         WHERE r.expires_at > $1 ORDER BY r.username, r.registered_at LIMIT 50000",
    )
    .bind(now)
    .fetch_all(&mut *c)
    .await?;
    Ok(rows.into_iter().map(|j| (j.reg, j.extension)).collect())
}
