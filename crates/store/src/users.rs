//! `users`: console accounts (admin / supervisor / agent) with the joined
//! view of their SIP account used by every listing.

use sqlx::AssertSqlSafe;

use crate::flag::{Flag, OptFlag};
use crate::{Conn, DbError};

/// A user joined with its SIP account (if any). Never carries secrets.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub login: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub role: String,
    #[sqlx(try_from = "Flag")]
    pub active: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_login_at: Option<i64>,
    pub sip_id: Option<i64>,
    pub sip_username: Option<String>,
    pub sip_extension: Option<String>,
    pub sip_status: Option<String>,
    #[sqlx(try_from = "OptFlag")]
    pub sip_registered: Option<bool>,
    pub sip_last_registered_at: Option<i64>,
    pub sip_user_agent: Option<String>,
    pub sip_ip_address: Option<String>,
    pub sip_contacts: i64,
    /// Per-agent recording override; `None` follows the system default.
    #[sqlx(try_from = "OptFlag")]
    pub record_calls: Option<bool>,
    /// internal | national | international; `None` follows the system default.
    pub dial_permission: Option<String>,
}

const SELECT: &str = "SELECT u.id, u.name, u.login, u.email, u.phone, u.role, u.active, \
    u.created_at, u.updated_at, u.last_login_at, \
    s.id AS sip_id, s.username AS sip_username, s.extension AS sip_extension, \
    s.status AS sip_status, s.registered AS sip_registered, \
    s.last_registered_at AS sip_last_registered_at, s.user_agent AS sip_user_agent, \
    s.ip_address AS sip_ip_address, \
    (SELECT COUNT(*) FROM registrations r WHERE r.username = s.username AND r.expires_at > $1) AS sip_contacts, \
    u.record_calls, u.dial_permission \
    FROM users u LEFT JOIN sip_accounts s ON s.user_id = u.id";

/// Fields of a new user.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    pub name: &'a str,
    pub login: Option<&'a str>,
    pub email: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub role: &'a str,
    pub password_hash: &'a str,
    pub active: bool,
}

pub async fn insert(c: &mut Conn, u: &NewUser<'_>, now: i64) -> Result<i64, DbError> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO users (name, login, email, phone, role, password_hash, active, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id",
    )
    .bind(u.name)
    .bind(u.login)
    .bind(u.email)
    .bind(u.phone)
    .bind(u.role)
    .bind(u.password_hash)
    .bind(u.active)
    .bind(now)
    .fetch_one(&mut *c)
    .await?;
    Ok(id)
}

pub async fn get(c: &mut Conn, id: i64, now: i64) -> Result<Option<UserRow>, DbError> {
    sqlx::query_as(AssertSqlSafe(format!("{SELECT} WHERE u.id = $2")))
        .bind(now)
        .bind(id)
        .fetch_optional(&mut *c)
        .await
        .map_err(DbError::from)
}

/// `col = $n` ignoring ASCII case: SQLite's login and email columns are
/// `COLLATE NOCASE`; PostgreSQL's unique indexes are on `LOWER(col)`, and
/// this form uses them.
fn same_text(c: &Conn, col: &str, param: &str) -> String {
    if crate::is_postgres(c) {
        format!("LOWER({col}) = LOWER({param})")
    } else {
        format!("{col} = {param}")
    }
}

/// Id, password hash and active flag of the user whose login or email is
/// `login_or_email` (case-insensitive).
pub async fn credentials(
    c: &mut Conn,
    login_or_email: &str,
) -> Result<Option<(i64, String, bool)>, DbError> {
    let login = same_text(c, "login", "$1");
    let email = same_text(c, "email", "$1");
    let row: Option<(i64, String, Flag)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT id, password_hash, active FROM users WHERE {login} OR {email} \
         ORDER BY ({login}) DESC LIMIT 1"
    )))
    .bind(login_or_email)
    .fetch_optional(&mut *c)
    .await?;
    Ok(row.map(|(id, hash, active)| (id, hash, active.0)))
}

/// Which of `login` and `email` another user than `except` already has
/// ("login" first), compared as the unique constraints compare them.
///
/// The domain asks this inside its write transaction before inserting or
/// updating: SQLite's violation does not name the constraint, and there
/// `BEGIN IMMEDIATE` keeps the answer true until the commit. On
/// PostgreSQL the named constraint still catches a concurrent writer.
pub async fn taken(
    c: &mut Conn,
    login: Option<&str>,
    email: Option<&str>,
    except: Option<i64>,
) -> Result<Option<&'static str>, DbError> {
    for (field, value) in [("login", login), ("email", email)] {
        let Some(value) = value else { continue };
        let cond = same_text(c, field, "$1");
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM users WHERE {cond} AND ($2 IS NULL OR id <> $2)"
        )))
        .bind(value)
        .bind(except)
        .fetch_one(&mut *c)
        .await?;
        if n > 0 {
            return Ok(Some(field));
        }
    }
    Ok(None)
}

pub async fn password_hash(c: &mut Conn, id: i64) -> Result<Option<String>, DbError> {
    sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *c)
        .await
        .map_err(DbError::from)
}

/// Filters of a user listing. `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub search: Option<String>,
    pub role: Option<String>,
    pub has_sip: Option<bool>,
    pub active: Option<bool>,
}

/// Sortable columns: the API's field names mapped to SQL.
pub fn order_column(field: &str) -> Option<&'static str> {
    Some(match field {
        "id" => "u.id",
        // LOWER on both databases: SQLite's is ASCII-only like its NOCASE.
        "name" => "LOWER(u.name)",
        "login" => "LOWER(u.login)",
        "email" => "LOWER(u.email)",
        "role" => "u.role",
        "active" => "u.active",
        "createdAt" => "u.created_at",
        "updatedAt" => "u.updated_at",
        "lastLoginAt" => "u.last_login_at",
        // Numeric order for the all-digit extensions the server allocates,
        // without a CAST that PostgreSQL would refuse on any other text.
        "extension" => "LENGTH(s.extension), s.extension",
        "sipUsername" => "s.username",
        _ => return None,
    })
}

/// `LIKE` ignores ASCII case on SQLite only; comparing LOWER(column) with
/// an ASCII-lowercased pattern ([`crate::search_pattern`]) searches alike
/// on both (LOWER is ASCII-only on SQLite and under PostgreSQL's "C"
/// collation of these columns).
const FILTER: &str = " WHERE ($2 IS NULL OR LOWER(u.name) LIKE $2 ESCAPE '\\' \
      OR LOWER(u.login) LIKE $2 ESCAPE '\\' OR LOWER(u.email) LIKE $2 ESCAPE '\\' \
      OR LOWER(u.phone) LIKE $2 ESCAPE '\\' OR LOWER(s.username) LIKE $2 ESCAPE '\\' \
      OR LOWER(s.extension) LIKE $2 ESCAPE '\\') \
    AND ($3 IS NULL OR u.role = $3) \
    AND ($4 IS NULL OR (s.id IS NOT NULL) = $4) \
    AND ($5 IS NULL OR u.active = $5)";

/// One page of users plus the total matching the filter. `order` must come
/// from [`order_column`].
pub async fn list(
    c: &mut Conn,
    f: &ListFilter,
    order: &'static str,
    descending: bool,
    limit: i64,
    offset: i64,
    now: i64,
) -> Result<(Vec<UserRow>, i64), DbError> {
    let pattern = f.search.as_deref().map(crate::search_pattern);
    let order = crate::order_by(order, descending, "u.id");
    let rows: Vec<UserRow> = sqlx::query_as(AssertSqlSafe(format!(
        "{SELECT}{FILTER}{order} LIMIT $6 OFFSET $7"
    )))
    .bind(now)
    .bind(&pattern)
    .bind(&f.role)
    .bind(f.has_sip)
    .bind(f.active)
    .bind(limit)
    .bind(offset)
    .fetch_all(&mut *c)
    .await?;
    let total: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM users u LEFT JOIN sip_accounts s ON s.user_id = u.id{FILTER} AND $1 = $1"
    )))
    .bind(now)
    .bind(&pattern)
    .bind(&f.role)
    .bind(f.has_sip)
    .bind(f.active)
    .fetch_one(&mut *c)
    .await?;
    Ok((rows, total))
}

/// The figures of the seeds' HR page.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct Stats {
    pub total_users: i64,
    pub agents: i64,
    pub active: i64,
    pub agents_with_sip: i64,
    pub registered: i64,
}

pub async fn stats(c: &mut Conn) -> Result<Stats, DbError> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT COUNT(*) AS total_users, {} AS agents, {} AS active, {} AS agents_with_sip, \
           {} AS registered \
         FROM users u LEFT JOIN sip_accounts s ON s.user_id = u.id",
        crate::calls::count_if("u.role = 'agent'"),
        crate::calls::count_if("u.active = TRUE"),
        crate::calls::count_if("u.role = 'agent' AND s.id IS NOT NULL"),
        crate::calls::count_if("s.registered = TRUE"),
    )))
    .fetch_one(&mut *c)
    .await
    .map_err(DbError::from)
}

/// Changes to a user; `None` leaves a field as it is. For the nullable
/// columns, `Some(None)` clears them.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub name: Option<String>,
    pub login: Option<Option<String>>,
    pub email: Option<Option<String>>,
    pub phone: Option<Option<String>>,
    pub role: Option<String>,
    pub active: Option<bool>,
    pub password_hash: Option<String>,
    /// `Some(None)`: follow the system default again.
    pub record_calls: Option<Option<bool>>,
    /// `Some(None)`: follow the system default again.
    pub dial_permission: Option<Option<String>>,
}

/// Applies `ch`; returns false if the user does not exist.
pub async fn update(c: &mut Conn, id: i64, ch: &UserChanges, now: i64) -> Result<bool, DbError> {
    let r = sqlx::query(
        "UPDATE users SET \
           name = COALESCE($2, name), \
           login = CASE WHEN $3 THEN $4 ELSE login END, \
           email = CASE WHEN $5 THEN $6 ELSE email END, \
           phone = CASE WHEN $7 THEN $8 ELSE phone END, \
           role = COALESCE($9, role), \
           active = COALESCE($10, active), \
           password_hash = COALESCE($11, password_hash), \
           updated_at = $12, \
           record_calls = CASE WHEN $13 THEN $14 ELSE record_calls END, \
           dial_permission = CASE WHEN $15 THEN $16 ELSE dial_permission END \
         WHERE id = $1",
    )
    .bind(id)
    .bind(&ch.name)
    .bind(ch.login.is_some())
    .bind(ch.login.clone().flatten())
    .bind(ch.email.is_some())
    .bind(ch.email.clone().flatten())
    .bind(ch.phone.is_some())
    .bind(ch.phone.clone().flatten())
    .bind(&ch.role)
    .bind(ch.active)
    .bind(&ch.password_hash)
    .bind(now)
    .bind(ch.record_calls.is_some())
    .bind(ch.record_calls.flatten())
    .bind(ch.dial_permission.is_some())
    .bind(ch.dial_permission.clone().flatten())
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn touch_login(c: &mut Conn, id: i64, now: i64) -> Result<(), DbError> {
    sqlx::query("UPDATE users SET last_login_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub async fn delete(c: &mut Conn, id: i64) -> Result<bool, DbError> {
    let r = sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn count(c: &mut Conn) -> Result<i64, DbError> {
    sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&mut *c)
        .await
        .map_err(DbError::from)
}

pub async fn exists_login(c: &mut Conn, login: &str) -> Result<bool, DbError> {
    Ok(taken(c, Some(login), None, None).await?.is_some())
}
