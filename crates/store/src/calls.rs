//! `calls`: one CDR row per call attempt, saved whole ([`save`]) as the
//! domain's recorder computes it from call events, and closed by
//! [`finish`] when a restart finds it left open. The billing figures
//! (duration, billsec) and the disposition are the domain's to compute; the
//! store only saves them.

use sqlx::AssertSqlSafe;

use crate::{Conn, DbError};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CallRow {
    pub id: i64,
    pub call_id: String,
    pub direction: String,
    pub caller_number: String,
    pub callee_number: String,
    pub agent_id: Option<i64>,
    pub callee_agent_id: Option<i64>,
    pub agent_name: Option<String>,
    pub callee_agent_name: Option<String>,
    pub start_time: i64,
    pub answer_time: Option<i64>,
    pub end_time: Option<i64>,
    pub duration: i64,
    pub billsec: i64,
    pub disposition: Option<String>,
    pub hangup_cause: Option<String>,
    /// The finished recording, relative to the recording directory.
    pub recording_path: Option<String>,
    pub recording_bytes: Option<i64>,
    pub recording_duration_ms: Option<i64>,
    pub recording_dropped_frames: Option<i64>,
    /// The trunk the call came in or went out through, and its name.
    pub trunk_id: Option<i64>,
    pub trunk_name: Option<String>,
    /// The number dialled, for calls that came in through a trunk.
    pub did: Option<String>,
}

const SELECT: &str = "SELECT c.id, c.call_id, c.direction, c.caller_number, c.callee_number, c.agent_id, \
    c.callee_agent_id, a.name AS agent_name, b.name AS callee_agent_name, c.start_time, c.answer_time, \
    c.end_time, c.duration, c.billsec, c.disposition, c.hangup_cause, c.recording_path, \
    c.recording_bytes, c.recording_duration_ms, c.recording_dropped_frames, c.trunk_id, \
    t.name AS trunk_name, c.did \
    FROM calls c LEFT JOIN users a ON a.id = c.agent_id LEFT JOIN users b ON b.id = c.callee_agent_id \
    LEFT JOIN trunks t ON t.id = c.trunk_id";

/// Closes an open call with the figures the domain computed. A row already
/// closed is left as it is (false).
pub async fn finish(c: &mut Conn, f: &FinishCall<'_>, now: i64) -> Result<bool, DbError> {
    let r = sqlx::query(
        "UPDATE calls SET end_time = $2, disposition = $3, hangup_cause = $4, duration = $5, \
           billsec = $6, updated_at = $7 \
         WHERE call_id = $1 AND end_time IS NULL",
    )
    .bind(f.call_id)
    .bind(f.end_time)
    .bind(f.disposition)
    .bind(f.hangup_cause)
    .bind(f.duration)
    .bind(f.billsec)
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// The closing values of a call row.
#[derive(Debug, Clone, Copy)]
pub struct FinishCall<'a> {
    pub call_id: &'a str,
    pub end_time: i64,
    pub disposition: &'a str,
    pub hangup_cause: &'a str,
    pub duration: i64,
    pub billsec: i64,
}

/// The times of an open call, for closing it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OpenCall {
    pub call_id: String,
    pub start_time: i64,
    pub answer_time: Option<i64>,
}

/// Every row with no end time (after a crash or restart these are orphans).
pub async fn open(c: &mut Conn) -> Result<Vec<OpenCall>, DbError> {
    sqlx::query_as("SELECT call_id, start_time, answer_time FROM calls WHERE end_time IS NULL")
        .fetch_all(&mut *c)
        .await
        .map_err(DbError::from)
}

/// A whole `calls` row as the domain's recorder computed it.
#[derive(Debug, Clone)]
pub struct SaveCall<'a> {
    pub call_id: &'a str,
    pub direction: &'a str,
    pub caller_number: &'a str,
    pub callee_number: &'a str,
    pub agent_id: Option<i64>,
    pub callee_agent_id: Option<i64>,
    pub start_time: i64,
    pub answer_time: Option<i64>,
    pub end_time: Option<i64>,
    pub duration: i64,
    pub billsec: i64,
    pub disposition: Option<&'a str>,
    pub hangup_cause: Option<&'a str>,
}

/// Rows per multi-row statement: 15 parameters each stays far below the
/// parameter limits of SQLite (32,766) and PostgreSQL (65,535).
const ROWS_PER_STATEMENT: usize = 500;
/// Call ids per `IN (...)` list.
const IDS_PER_STATEMENT: usize = 500;

/// Inserts each row, or, when the call exists and is still open, replaces
/// its answer and end values (who and when it started never change). A
/// closed row is never changed. Returns the rows written.
pub async fn save(c: &mut Conn, rows: &[SaveCall<'_>], now: i64) -> Result<u64, DbError> {
    let mut n = 0;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO calls (call_id, direction, caller_number, callee_number, agent_id, \
               callee_agent_id, start_time, answer_time, end_time, duration, billsec, disposition, \
               hangup_cause, created_at, updated_at) VALUES {} \
             ON CONFLICT (call_id) DO UPDATE SET answer_time = excluded.answer_time, \
               end_time = excluded.end_time, duration = excluded.duration, \
               billsec = excluded.billsec, disposition = excluded.disposition, \
               hangup_cause = excluded.hangup_cause, updated_at = excluded.updated_at \
             WHERE calls.end_time IS NULL",
            crate::values_tuples(crate::sigil(c), chunk.len(), 15, 1)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for r in chunk {
            q = q
                .bind(r.call_id)
                .bind(r.direction)
                .bind(r.caller_number)
                .bind(r.callee_number)
                .bind(r.agent_id)
                .bind(r.callee_agent_id)
                .bind(r.start_time)
                .bind(r.answer_time)
                .bind(r.end_time)
                .bind(r.duration)
                .bind(r.billsec)
                .bind(r.disposition)
                .bind(r.hangup_cause)
                .bind(now)
                .bind(now);
        }
        // Not cached: its text varies with the batch, and caching it would
        // evict the hot statements of the connection's cache.
        n += q.persistent(false).execute(&mut *c).await?.rows_affected();
    }
    Ok(n)
}

/// Where a call came from or went: the trunk and the DID, each set once
/// (the first value given wins; later ones are ignored). Returns the rows
/// written.
pub async fn set_origin(
    c: &mut Conn,
    call_id: &str,
    trunk_id: Option<i64>,
    did: Option<&str>,
    now: i64,
) -> Result<u64, DbError> {
    Ok(sqlx::query(
        "UPDATE calls SET trunk_id = COALESCE(trunk_id, $2), did = COALESCE(did, $3), \
           updated_at = $4 WHERE call_id = $1 AND ((trunk_id IS NULL AND $2 IS NOT NULL) \
           OR (did IS NULL AND $3 IS NOT NULL))",
    )
    .bind(call_id)
    .bind(trunk_id)
    .bind(did)
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected())
}

/// The call went out (or came in) through trunk `trunk_id` after all: the
/// leg through it answered. Overrides what [`set_origin`] kept (the first
/// trunk tried, which failed over).
pub async fn set_trunk(
    c: &mut Conn,
    call_id: &str,
    trunk_id: i64,
    now: i64,
) -> Result<u64, DbError> {
    Ok(
        sqlx::query("UPDATE calls SET trunk_id = $2, updated_at = $3 WHERE call_id = $1")
            .bind(call_id)
            .bind(trunk_id)
            .bind(now)
            .execute(&mut *c)
            .await?
            .rows_affected(),
    )
}

/// A call's finished recording, as the domain's recorder reports it.
#[derive(Debug, Clone)]
pub struct SaveRecording<'a> {
    pub call_id: &'a str,
    /// Event time of the figures.
    pub at: i64,
    pub path: &'a str,
    pub bytes: i64,
    pub duration_ms: i64,
    pub dropped_frames: i64,
}

/// Sets the recording of each call (ended or not), unless the stored one
/// is newer (a replayed older event). One statement per call, inside the
/// caller's batch transaction: a call has one recording, so a batch has
/// at most one per call. Returns the rows written.
pub async fn save_recordings(
    c: &mut Conn,
    rows: &[SaveRecording<'_>],
    now: i64,
) -> Result<u64, DbError> {
    let mut n = 0;
    for r in rows {
        n += sqlx::query(
            "UPDATE calls SET recording_path = $2, recording_bytes = $3, \
               recording_duration_ms = $4, recording_dropped_frames = $5, recording_at = $6, \
               updated_at = $7 \
             WHERE call_id = $1 AND (recording_at IS NULL OR recording_at <= $6)",
        )
        .bind(r.call_id)
        .bind(r.path)
        .bind(r.bytes)
        .bind(r.duration_ms)
        .bind(r.dropped_frames)
        .bind(r.at)
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected();
    }
    Ok(n)
}

/// The rows of these calls (in no particular order; unknown ids are
/// absent).
pub async fn by_call_ids(c: &mut Conn, call_ids: &[&str]) -> Result<Vec<CallRow>, DbError> {
    let mut out = Vec::new();
    for ids in call_ids.chunks(IDS_PER_STATEMENT) {
        let sql = format!(
            "{SELECT} WHERE c.call_id IN ({})",
            crate::param_list(crate::sigil(c), ids.len(), 1)
        );
        let mut q = sqlx::query_as::<_, CallRow>(AssertSqlSafe(sql));
        for id in ids {
            q = q.bind(*id);
        }
        out.extend(q.persistent(false).fetch_all(&mut *c).await?);
    }
    Ok(out)
}

pub async fn get(c: &mut Conn, call_id: &str) -> Result<Option<CallRow>, DbError> {
    sqlx::query_as(AssertSqlSafe(format!("{SELECT} WHERE c.call_id = $1")))
        .bind(call_id)
        .fetch_optional(&mut *c)
        .await
        .map_err(DbError::from)
}

/// Open calls; with `agent` only those where that user is caller or callee.
pub async fn active(c: &mut Conn, agent: Option<i64>) -> Result<Vec<CallRow>, DbError> {
    sqlx::query_as(AssertSqlSafe(format!(
        "{SELECT} WHERE c.end_time IS NULL AND ($1 IS NULL OR c.agent_id = $1 OR c.callee_agent_id = $1) \
         ORDER BY c.start_time DESC LIMIT 1000"
    )))
    .bind(agent)
    .fetch_all(&mut *c)
    .await
    .map_err(DbError::from)
}

/// History filter; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub agent: Option<i64>,
    pub disposition: Option<String>,
    pub search: Option<String>,
}

const FILTER: &str =
    " WHERE ($1 IS NULL OR c.start_time >= $1) AND ($2 IS NULL OR c.start_time < $2) \
    AND ($3 IS NULL OR c.agent_id = $3 OR c.callee_agent_id = $3) \
    AND ($4 IS NULL OR c.disposition = $4) \
    AND ($5 IS NULL OR LOWER(c.caller_number) LIKE $5 ESCAPE '\\' \
         OR LOWER(c.callee_number) LIKE $5 ESCAPE '\\' \
         OR LOWER(c.call_id) LIKE $5 ESCAPE '\\')";

/// Sortable history columns: the API's field names mapped to SQL.
pub fn order_column(field: &str) -> Option<&'static str> {
    Some(match field {
        "id" => "c.id",
        "startTime" => "c.start_time",
        "answerTime" => "c.answer_time",
        "endTime" => "c.end_time",
        "duration" => "c.duration",
        "billsec" => "c.billsec",
        "disposition" => "c.disposition",
        "callerNumber" => "c.caller_number",
        "calleeNumber" => "c.callee_number",
        _ => return None,
    })
}

/// A page of history and the total matching. `order` must come from
/// [`order_column`].
pub async fn history(
    c: &mut Conn,
    f: &CallFilter,
    order: &'static str,
    descending: bool,
    limit: i64,
    offset: i64,
) -> Result<(Vec<CallRow>, i64), DbError> {
    let pattern = f.search.as_deref().map(crate::search_pattern);
    let order = crate::order_by(order, descending, "c.id");
    let rows = sqlx::query_as(AssertSqlSafe(format!(
        "{SELECT}{FILTER}{order} LIMIT $6 OFFSET $7"
    )))
    .bind(f.from)
    .bind(f.to)
    .bind(f.agent)
    .bind(&f.disposition)
    .bind(&pattern)
    .bind(limit)
    .bind(offset)
    .fetch_all(&mut *c)
    .await?;
    let total = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM calls c{FILTER}"
    )))
    .bind(f.from)
    .bind(f.to)
    .bind(f.agent)
    .bind(&f.disposition)
    .bind(&pattern)
    .fetch_one(&mut *c)
    .await?;
    Ok((rows, total))
}

#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct CallStats {
    pub total_calls: i64,
    pub answered: i64,
    pub no_answer: i64,
    pub busy: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub total_duration: i64,
    pub total_billsec: i64,
}

/// Figures over finished calls matching `f` (its search and disposition
/// are honoured too).
pub async fn stats(c: &mut Conn, f: &CallFilter) -> Result<CallStats, DbError> {
    let pattern = f.search.as_deref().map(crate::search_pattern);
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT COUNT(*) AS total_calls, \
           {} AS answered, {} AS no_answer, {} AS busy, {} AS failed, {} AS cancelled, \
           {} AS total_duration, {} AS total_billsec \
         FROM calls c{FILTER} AND c.end_time IS NOT NULL",
        count_if("c.disposition = 'ANSWERED'"),
        count_if("c.disposition = 'NO ANSWER'"),
        count_if("c.disposition = 'BUSY'"),
        count_if("c.disposition = 'FAILED'"),
        count_if("c.disposition = 'CANCELLED'"),
        sum("c.duration"),
        sum("c.billsec"),
    )))
    .bind(f.from)
    .bind(f.to)
    .bind(f.agent)
    .bind(&f.disposition)
    .bind(&pattern)
    .fetch_one(&mut *c)
    .await
    .map_err(DbError::from)
}

pub async fn count_open(c: &mut Conn) -> Result<(i64, i64), DbError> {
    sqlx::query_as(
        "SELECT COUNT(*), CAST(COALESCE(SUM(CASE WHEN answer_time IS NOT NULL THEN 1 ELSE 0 END), 0) \
           AS BIGINT) FROM calls WHERE end_time IS NULL",
    )
    .fetch_one(&mut *c)
    .await
    .map_err(DbError::from)
}

/// How many rows satisfy `cond`, as a BIGINT on both databases
/// (PostgreSQL cannot SUM a boolean, and its SUM of a BIGINT is NUMERIC).
pub(crate) fn count_if(cond: &str) -> String {
    format!("CAST(COALESCE(SUM(CASE WHEN {cond} THEN 1 ELSE 0 END), 0) AS BIGINT)")
}

/// The sum of an integer column, 0 when no rows, as a BIGINT.
pub(crate) fn sum(col: &str) -> String {
    format!("CAST(COALESCE(SUM({col}), 0) AS BIGINT)")
}
