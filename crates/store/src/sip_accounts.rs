//! `sip_accounts`: one SIP account per user. The password itself is never
//! stored, only its HA1 digests for the configured realm.

use crate::flag::{Flag, OptFlag};
use crate::{Conn, DbError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SipAccountRow {
    pub id: i64,
    pub user_id: i64,
    pub username: String,
    pub extension: String,
    pub ha1_md5: String,
    pub ha1_sha256: String,
    pub status: String,
    #[sqlx(try_from = "Flag")]
    pub registered: bool,
    pub last_registered_at: Option<i64>,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
    pub credential_version: i64,
    /// From the joined user: display name and whether the user is active.
    pub display_name: String,
    #[sqlx(try_from = "Flag")]
    pub user_active: bool,
    /// The user's recording override (`users.record_calls`).
    #[sqlx(try_from = "OptFlag")]
    pub record_calls: Option<bool>,
    /// The user's dial permission (`users.dial_permission`).
    pub dial_permission: Option<String>,
}

const SELECT: &str =
    "SELECT s.id, s.user_id, s.username, s.extension, s.ha1_md5, s.ha1_sha256, s.status, \
    s.registered, s.last_registered_at, s.user_agent, s.ip_address, s.credential_version, \
    u.name AS display_name, u.active AS user_active, u.record_calls, u.dial_permission \
    FROM sip_accounts s JOIN users u ON u.id = s.user_id";

pub struct NewSipAccount<'a> {
    pub user_id: i64,
    pub username: &'a str,
    pub extension: &'a str,
    pub ha1_md5: &'a str,
    pub ha1_sha256: &'a str,
}

pub async fn insert(c: &mut Conn, a: &NewSipAccount<'_>, now: i64) -> Result<i64, DbError> {
    sqlx::query_scalar(
        "INSERT INTO sip_accounts (user_id, username, extension, ha1_md5, ha1_sha256, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
    )
    .bind(a.user_id)
    .bind(a.username)
    .bind(a.extension)
    .bind(a.ha1_md5)
    .bind(a.ha1_sha256)
    .bind(now)
    .fetch_one(&mut *c)
    .await
    .map_err(DbError::from)
}

/// The next extension: one above the highest all-digit extension, and at
/// least `start`. Run inside the write transaction that inserts it, after
/// [`lock_allocation`].
pub async fn next_extension(c: &mut Conn, start: i64) -> Result<i64, DbError> {
    let sql = if crate::is_postgres(c) {
        "SELECT MAX(CAST(extension AS BIGINT)) FROM sip_accounts \
         WHERE extension ~ '^[0-9]{1,18}$'"
    } else {
        "SELECT MAX(CAST(extension AS INTEGER)) FROM sip_accounts \
         WHERE extension <> '' AND extension NOT GLOB '*[^0-9]*' AND length(extension) <= 18"
    };
    let max: Option<i64> = sqlx::query_scalar(sql).fetch_one(&mut *c).await?;
    Ok(max.map_or(start, |m| (m + 1).max(start)))
}

/// Serialises the choice of new SIP usernames and extensions until the
/// transaction ends: see [`crate::Lock::SipAllocation`].
pub async fn lock_allocation(c: &mut Conn) -> Result<(), DbError> {
    crate::lock(c, crate::Lock::SipAllocation).await
}

pub async fn username_taken(c: &mut Conn, username: &str) -> Result<bool, DbError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sip_accounts WHERE username = $1")
        .bind(username)
        .fetch_one(&mut *c)
        .await?;
    Ok(n > 0)
}

/// All usernames starting with `prefix` (for choosing a free suffix).
pub async fn usernames_with_prefix(c: &mut Conn, prefix: &str) -> Result<Vec<String>, DbError> {
    let pattern = format!("{}%", crate::like_escape(prefix));
    sqlx::query_scalar("SELECT username FROM sip_accounts WHERE username LIKE $1 ESCAPE '\\'")
        .bind(pattern)
        .fetch_all(&mut *c)
        .await
        .map_err(DbError::from)
}

pub async fn by_user(c: &mut Conn, user_id: i64) -> Result<Option<SipAccountRow>, DbError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE s.user_id = $1"
    )))
    .bind(user_id)
    .fetch_optional(&mut *c)
    .await
    .map_err(DbError::from)
}

pub async fn by_username(c: &mut Conn, username: &str) -> Result<Option<SipAccountRow>, DbError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE s.username = $1"
    )))
    .bind(username)
    .fetch_optional(&mut *c)
    .await
    .map_err(DbError::from)
}

pub async fn by_extension(c: &mut Conn, extension: &str) -> Result<Option<SipAccountRow>, DbError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE s.extension = $1"
    )))
    .bind(extension)
    .fetch_optional(&mut *c)
    .await
    .map_err(DbError::from)
}

/// Every account whose user is active and whose status is `active`.
pub async fn all_enabled(c: &mut Conn) -> Result<Vec<SipAccountRow>, DbError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE u.active = TRUE AND s.status = 'active' ORDER BY s.id"
    )))
    .fetch_all(&mut *c)
    .await
    .map_err(DbError::from)
}

/// Replaces the HA1s and bumps the credential version.
pub async fn set_ha1(
    c: &mut Conn,
    id: i64,
    md5: &str,
    sha256: &str,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE sip_accounts SET ha1_md5 = $2, ha1_sha256 = $3, credential_version = credential_version + 1, \
         updated_at = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(md5)
    .bind(sha256)
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub async fn set_status(c: &mut Conn, id: i64, status: &str, now: i64) -> Result<(), DbError> {
    sqlx::query("UPDATE sip_accounts SET status = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(status)
        .bind(now)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// Records what the registrar saw; returns false for an unknown username.
pub async fn set_registration_state(
    c: &mut Conn,
    username: &str,
    registered: bool,
    user_agent: Option<&str>,
    ip: Option<&str>,
    now: i64,
) -> Result<bool, DbError> {
    let r = sqlx::query(
        "UPDATE sip_accounts SET registered = $2, \
           last_registered_at = CASE WHEN $2 THEN $5 ELSE last_registered_at END, \
           user_agent = COALESCE($3, user_agent), ip_address = COALESCE($4, ip_address), updated_at = $5 \
         WHERE username = $1",
    )
    .bind(username)
    .bind(registered)
    .bind(user_agent)
    .bind(ip)
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// What the registrar saw of one account, for [`set_registration_states`].
#[derive(Debug, Clone)]
pub struct RegistrationStateRow<'a> {
    pub username: &'a str,
    pub registered: bool,
    pub user_agent: Option<&'a str>,
    pub ip: Option<&'a str>,
}

/// Accounts per multi-row statement.
const STATES_PER_STATEMENT: usize = 500;

/// [`set_registration_state`] for many accounts, a few hundred per
/// statement (one statement per account was a database round trip each at
/// every REGISTER burst). Each username must appear once. Returns the rows
/// changed.
pub async fn set_registration_states(
    c: &mut Conn,
    states: &[RegistrationStateRow<'_>],
    now: i64,
) -> Result<u64, DbError> {
    let mut n = 0;
    for chunk in states.chunks(STATES_PER_STATEMENT) {
        let now_param = chunk.len() * 4 + 1;
        let sql = format!(
            "WITH v(username, registered, user_agent, ip) AS (VALUES {}) \
             UPDATE sip_accounts SET registered = v.registered, \
               last_registered_at = CASE WHEN v.registered THEN ${now_param} \
                 ELSE sip_accounts.last_registered_at END, \
               user_agent = COALESCE(v.user_agent, sip_accounts.user_agent), \
               ip_address = COALESCE(v.ip, sip_accounts.ip_address), updated_at = ${now_param} \
             FROM v WHERE sip_accounts.username = v.username",
            crate::values_tuples(crate::sigil(c), chunk.len(), 4, 1)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for s in chunk {
            q = q
                .bind(s.username)
                .bind(s.registered)
                .bind(s.user_agent)
                .bind(s.ip);
        }
        n += q
            .bind(now)
            .persistent(false)
            .execute(&mut *c)
            .await?
            .rows_affected();
    }
    Ok(n)
}

pub async fn delete_for_user(c: &mut Conn, user_id: i64) -> Result<bool, DbError> {
    let r = sqlx::query("DELETE FROM sip_accounts WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected() > 0)
}
