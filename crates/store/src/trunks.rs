//! `trunks`: SIP trunks to carriers and other PBXs, with their settings,
//! the live registration state the SIP side reports and call counters.
//!
//! The row carries the two secrets (outbound and inbound digest
//! passwords) because the SIP side needs them; [`TrunkRow`]'s `Debug`
//! masks them, and it is the domain's job never to return them.

use std::fmt;

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe, Row};

use crate::flag::Flag;
use crate::{Conn, DbError};

/// A whole `trunks` row.
#[derive(Clone, sqlx::FromRow)]
pub struct TrunkRow {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub provider: String,
    pub kind: String,
    pub host: String,
    pub port: i64,
    pub transport: String,
    #[sqlx(try_from = "Flag")]
    pub sends_auth: bool,
    pub outbound_username: Option<String>,
    pub outbound_secret: Option<String>,
    pub outbound_realm: Option<String>,
    #[sqlx(try_from = "Flag")]
    pub accepts_auth: bool,
    pub inbound_username: Option<String>,
    pub inbound_secret: Option<String>,
    /// Comma-separated.
    pub inbound_match: String,
    #[sqlx(try_from = "Flag")]
    pub sends_registration: bool,
    #[sqlx(try_from = "Flag")]
    pub accepts_registrations: bool,
    pub registration_server_uri: Option<String>,
    pub registration_client_uri: Option<String>,
    pub registration_expiry: i64,
    pub registration_retry_interval: i64,
    pub registration_max_retries: i64,
    pub registration_forbidden_retry: i64,
    /// Comma-separated, in order of preference.
    pub codecs: String,
    pub dtmf_mode: String,
    #[sqlx(try_from = "Flag")]
    pub rtp_symmetric: bool,
    #[sqlx(try_from = "Flag")]
    pub force_rport: bool,
    #[sqlx(try_from = "Flag")]
    pub rewrite_contact: bool,
    pub qualify_frequency: i64,
    pub media_address: Option<String>,
    pub session_timers: String,
    pub session_expires: i64,
    pub session_min_se: i64,
    pub from_user: Option<String>,
    pub from_domain: Option<String>,
    pub pai: Option<String>,
    #[sqlx(try_from = "Flag")]
    pub send_pai: bool,
    #[sqlx(try_from = "Flag")]
    pub trust_remote_party_id: bool,
    pub max_channels: i64,
    pub priority: i64,
    pub status: String,
    #[sqlx(try_from = "Flag")]
    pub registered: bool,
    pub last_registered_at: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub total_calls: i64,
    pub successful_calls: i64,
    pub failed_calls: i64,
    /// A JSON object.
    pub advanced_settings: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Whether a secret is set, for `Debug`: never its value.
fn mask(s: &Option<String>) -> &'static str {
    match s {
        Some(_) => "Some(***)",
        None => "None",
    }
}

impl fmt::Debug for TrunkRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The settings a log line may need; secrets only as set or not.
        f.debug_struct("TrunkRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("transport", &self.transport)
            .field("outbound_username", &self.outbound_username)
            .field("outbound_secret", &mask(&self.outbound_secret))
            .field("inbound_username", &self.inbound_username)
            .field("inbound_secret", &mask(&self.inbound_secret))
            .field("status", &self.status)
            .field("registered", &self.registered)
            .finish_non_exhaustive()
    }
}

/// Every column an administrator sets (all but the id, the live state,
/// the counters and the timestamps), for [`insert`] and [`update`].
#[derive(Clone)]
pub struct TrunkValues<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub provider: &'a str,
    pub kind: &'a str,
    pub host: &'a str,
    pub port: i64,
    pub transport: &'a str,
    pub sends_auth: bool,
    pub outbound_username: Option<&'a str>,
    pub outbound_secret: Option<&'a str>,
    pub outbound_realm: Option<&'a str>,
    pub accepts_auth: bool,
    pub inbound_username: Option<&'a str>,
    pub inbound_secret: Option<&'a str>,
    pub inbound_match: &'a str,
    pub sends_registration: bool,
    pub accepts_registrations: bool,
    pub registration_server_uri: Option<&'a str>,
    pub registration_client_uri: Option<&'a str>,
    pub registration_expiry: i64,
    pub registration_retry_interval: i64,
    pub registration_max_retries: i64,
    pub registration_forbidden_retry: i64,
    pub codecs: &'a str,
    pub dtmf_mode: &'a str,
    pub rtp_symmetric: bool,
    pub force_rport: bool,
    pub rewrite_contact: bool,
    pub qualify_frequency: i64,
    pub media_address: Option<&'a str>,
    pub session_timers: &'a str,
    pub session_expires: i64,
    pub session_min_se: i64,
    pub from_user: Option<&'a str>,
    pub from_domain: Option<&'a str>,
    pub pai: Option<&'a str>,
    pub send_pai: bool,
    pub trust_remote_party_id: bool,
    pub max_channels: i64,
    pub priority: i64,
    pub status: &'a str,
    pub advanced_settings: &'a str,
}

impl fmt::Debug for TrunkValues<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrunkValues")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("outbound_secret", &self.outbound_secret.map(|_| "***"))
            .field("inbound_secret", &self.inbound_secret.map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// The columns of [`TrunkValues`], in the order [`bind_values`] binds them.
const VALUE_COLUMNS: [&str; 42] = [
    "name",
    "description",
    "provider",
    "kind",
    "host",
    "port",
    "transport",
    "sends_auth",
    "outbound_username",
    "outbound_secret",
    "outbound_realm",
    "accepts_auth",
    "inbound_username",
    "inbound_secret",
    "inbound_match",
    "sends_registration",
    "accepts_registrations",
    "registration_server_uri",
    "registration_client_uri",
    "registration_expiry",
    "registration_retry_interval",
    "registration_max_retries",
    "registration_forbidden_retry",
    "codecs",
    "dtmf_mode",
    "rtp_symmetric",
    "force_rport",
    "rewrite_contact",
    "qualify_frequency",
    "media_address",
    "session_timers",
    "session_expires",
    "session_min_se",
    "from_user",
    "from_domain",
    "pai",
    "send_pai",
    "trust_remote_party_id",
    "max_channels",
    "priority",
    "status",
    "advanced_settings",
];

fn bind_values<'q>(
    q: Query<'q, Any, AnyArguments>,
    v: &TrunkValues<'_>,
) -> Query<'q, Any, AnyArguments> {
    q.bind(v.name.to_string())
        .bind(v.description.map(str::to_string))
        .bind(v.provider.to_string())
        .bind(v.kind.to_string())
        .bind(v.host.to_string())
        .bind(v.port)
        .bind(v.transport.to_string())
        .bind(v.sends_auth)
        .bind(v.outbound_username.map(str::to_string))
        .bind(v.outbound_secret.map(str::to_string))
        .bind(v.outbound_realm.map(str::to_string))
        .bind(v.accepts_auth)
        .bind(v.inbound_username.map(str::to_string))
        .bind(v.inbound_secret.map(str::to_string))
        .bind(v.inbound_match.to_string())
        .bind(v.sends_registration)
        .bind(v.accepts_registrations)
        .bind(v.registration_server_uri.map(str::to_string))
        .bind(v.registration_client_uri.map(str::to_string))
        .bind(v.registration_expiry)
        .bind(v.registration_retry_interval)
        .bind(v.registration_max_retries)
        .bind(v.registration_forbidden_retry)
        .bind(v.codecs.to_string())
        .bind(v.dtmf_mode.to_string())
        .bind(v.rtp_symmetric)
        .bind(v.force_rport)
        .bind(v.rewrite_contact)
        .bind(v.qualify_frequency)
        .bind(v.media_address.map(str::to_string))
        .bind(v.session_timers.to_string())
        .bind(v.session_expires)
        .bind(v.session_min_se)
        .bind(v.from_user.map(str::to_string))
        .bind(v.from_domain.map(str::to_string))
        .bind(v.pai.map(str::to_string))
        .bind(v.send_pai)
        .bind(v.trust_remote_party_id)
        .bind(v.max_channels)
        .bind(v.priority)
        .bind(v.status.to_string())
        .bind(v.advanced_settings.to_string())
}

const SELECT: &str = "SELECT * FROM trunks";

/// Inserts a trunk; returns its id.
pub async fn insert(c: &mut Conn, v: &TrunkValues<'_>, now: i64) -> Result<i64, DbError> {
    let n = VALUE_COLUMNS.len();
    let sql = format!(
        "INSERT INTO trunks ({}, created_at, updated_at) VALUES ({}, ${}, ${}) RETURNING id",
        VALUE_COLUMNS.join(", "),
        crate::param_list('$', n, 1),
        n + 1,
        n + 1
    );
    let q = bind_values(sqlx::query(AssertSqlSafe(sql)), v).bind(now);
    let row = q.fetch_one(&mut *c).await?;
    Ok(row.try_get::<i64, _>(0)?)
}

/// Replaces every settable column of trunk `id`; false if there is none.
pub async fn update(c: &mut Conn, id: i64, v: &TrunkValues<'_>, now: i64) -> Result<bool, DbError> {
    let n = VALUE_COLUMNS.len();
    let sets: Vec<String> = VALUE_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, col)| format!("{col} = ${}", i + 1))
        .collect();
    let sql = format!(
        "UPDATE trunks SET {}, updated_at = ${} WHERE id = ${}",
        sets.join(", "),
        n + 1,
        n + 2
    );
    let r = bind_values(sqlx::query(AssertSqlSafe(sql)), v)
        .bind(now)
        .bind(id)
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn get(c: &mut Conn, id: i64) -> Result<Option<TrunkRow>, DbError> {
    sqlx::query_as(AssertSqlSafe(format!("{SELECT} WHERE id = $1")))
        .bind(id)
        .fetch_optional(&mut *c)
        .await
        .map_err(DbError::from)
}

/// `LOWER(name) = LOWER($1)`: the unique index's comparison on both
/// databases (SQLite's column is NOCASE, PostgreSQL's index is on LOWER).
pub async fn by_name(c: &mut Conn, name: &str) -> Result<Option<TrunkRow>, DbError> {
    sqlx::query_as(AssertSqlSafe(format!(
        "{SELECT} WHERE LOWER(name) = LOWER($1)"
    )))
    .bind(name)
    .fetch_optional(&mut *c)
    .await
    .map_err(DbError::from)
}

/// Whether another trunk than `except` has this name (ignoring ASCII
/// case). The domain asks inside its write transaction, as for logins:
/// SQLite's unique violation does not name the column.
pub async fn name_taken(c: &mut Conn, name: &str, except: Option<i64>) -> Result<bool, DbError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM trunks WHERE LOWER(name) = LOWER($1) AND ($2 IS NULL OR id <> $2)",
    )
    .bind(name)
    .bind(except)
    .fetch_one(&mut *c)
    .await?;
    Ok(n > 0)
}

/// The id of the trunk named `name` (ASCII case ignored, as names are
/// unique), if any.
pub async fn id_by_name(c: &mut Conn, name: &str) -> Result<Option<i64>, DbError> {
    Ok(
        sqlx::query_scalar("SELECT id FROM trunks WHERE LOWER(name) = LOWER($1) LIMIT 1")
            .bind(name)
            .fetch_optional(&mut *c)
            .await?,
    )
}

/// Filters of a trunk listing; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Contains, in name, description or host (ASCII case ignored).
    pub search: Option<String>,
    pub status: Option<String>,
    pub provider: Option<String>,
    pub kind: Option<String>,
}

/// Sortable columns: the API's field names mapped to SQL.
pub fn order_column(field: &str) -> Option<&'static str> {
    Some(match field {
        "id" => "id",
        "name" => "LOWER(name)",
        "priority" => "priority",
        "status" => "status",
        "provider" => "provider",
        "kind" => "kind",
        "host" => "LOWER(host)",
        "maxChannels" => "max_channels",
        "totalCalls" => "total_calls",
        "createdAt" => "created_at",
        "updatedAt" => "updated_at",
        _ => return None,
    })
}

const FILTER: &str = " WHERE ($1 IS NULL OR LOWER(name) LIKE $1 ESCAPE '\\' \
      OR LOWER(description) LIKE $1 ESCAPE '\\' OR LOWER(host) LIKE $1 ESCAPE '\\') \
    AND ($2 IS NULL OR status = $2) \
    AND ($3 IS NULL OR provider = $3) \
    AND ($4 IS NULL OR kind = $4)";

/// One page of trunks and the total matching. `order` must come from
/// [`order_column`]; ties go by id.
pub async fn list(
    c: &mut Conn,
    f: &ListFilter,
    order: &'static str,
    descending: bool,
    limit: i64,
    offset: i64,
) -> Result<(Vec<TrunkRow>, i64), DbError> {
    let pattern = f.search.as_deref().map(crate::search_pattern);
    let order = crate::order_by(order, descending, "id");
    let rows: Vec<TrunkRow> = sqlx::query_as(AssertSqlSafe(format!(
        "{SELECT}{FILTER}{order} LIMIT $5 OFFSET $6"
    )))
    .bind(&pattern)
    .bind(&f.status)
    .bind(&f.provider)
    .bind(&f.kind)
    .bind(limit)
    .bind(offset)
    .fetch_all(&mut *c)
    .await?;
    let total: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM trunks{FILTER}"
    )))
    .bind(&pattern)
    .bind(&f.status)
    .bind(&f.provider)
    .bind(&f.kind)
    .fetch_one(&mut *c)
    .await?;
    Ok((rows, total))
}

/// Trunks with status `active`, the lowest priority first (ties by id):
/// the candidates of outbound routing, before their registration and
/// channel checks.
pub async fn active_by_priority(c: &mut Conn) -> Result<Vec<TrunkRow>, DbError> {
    sqlx::query_as(AssertSqlSafe(format!(
        "{SELECT} WHERE status = 'active' ORDER BY priority, id"
    )))
    .fetch_all(&mut *c)
    .await
    .map_err(DbError::from)
}

pub async fn delete(c: &mut Conn, id: i64) -> Result<bool, DbError> {
    let r = sqlx::query("DELETE FROM trunks WHERE id = $1")
        .bind(id)
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Records what the registration client saw: registered (the time is
/// kept as the last registration), or not, with the error if there was
/// one (kept with its time until the next error; a success does not erase
/// it, so the console can say what went wrong last). False for an unknown
/// trunk.
pub async fn set_registration_state(
    c: &mut Conn,
    id: i64,
    registered: bool,
    error: Option<&str>,
    now: i64,
) -> Result<bool, DbError> {
    let r = sqlx::query(
        "UPDATE trunks SET registered = $2, \
           last_registered_at = CASE WHEN $2 THEN $4 ELSE last_registered_at END, \
           last_error = COALESCE($3, last_error), \
           last_error_at = CASE WHEN $3 IS NULL THEN last_error_at ELSE $4 END \
         WHERE id = $1",
    )
    .bind(id)
    .bind(registered)
    .bind(error)
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Counts one finished call through trunk `id`. False for an unknown trunk.
pub async fn count_call(c: &mut Conn, id: i64, successful: bool) -> Result<bool, DbError> {
    let r = sqlx::query(
        "UPDATE trunks SET total_calls = total_calls + 1, \
           successful_calls = successful_calls + CASE WHEN $2 THEN 1 ELSE 0 END, \
           failed_calls = failed_calls + CASE WHEN $2 THEN 0 ELSE 1 END \
         WHERE id = $1",
    )
    .bind(id)
    .bind(successful)
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected() > 0)
}
