//! `calls`: one CDR row per call attempt, written when the call starts and
//! completed when it ends.

use sqlx::AssertSqlSafe;

use crate::Conn;

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
}

const SELECT: &str = "SELECT c.id, c.call_id, c.direction, c.caller_number, c.callee_number, c.agent_id, \
    c.callee_agent_id, a.name AS agent_name, b.name AS callee_agent_name, c.start_time, c.answer_time, \
    c.end_time, c.duration, c.billsec, c.disposition, c.hangup_cause \
    FROM calls c LEFT JOIN users a ON a.id = c.agent_id LEFT JOIN users b ON b.id = c.callee_agent_id";

pub struct NewCallRow<'a> {
    pub call_id: &'a str,
    pub direction: &'a str,
    pub caller_number: &'a str,
    pub callee_number: &'a str,
    pub agent_id: Option<i64>,
    pub callee_agent_id: Option<i64>,
    pub start_time: i64,
}

/// Inserts the row of a starting call; a repeated call_id is ignored (the
/// first start wins) and reported as false.
pub async fn insert(c: &mut Conn, n: &NewCallRow<'_>, now: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO calls (call_id, direction, caller_number, callee_number, agent_id, callee_agent_id, \
           start_time, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
         ON CONFLICT (call_id) DO NOTHING",
    )
    .bind(n.call_id)
    .bind(n.direction)
    .bind(n.caller_number)
    .bind(n.callee_number)
    .bind(n.agent_id)
    .bind(n.callee_agent_id)
    .bind(n.start_time)
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Sets the answer time of an open, unanswered call.
pub async fn answer(c: &mut Conn, call_id: &str, at: i64, now: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE calls SET answer_time = $2, updated_at = $3 \
         WHERE call_id = $1 AND answer_time IS NULL AND end_time IS NULL",
    )
    .bind(call_id)
    .bind(at)
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Closes an open call, computing duration (end - start) and billsec
/// (end - answer) in whole seconds, never negative.
pub async fn finish(
    c: &mut Conn,
    call_id: &str,
    end: i64,
    disposition: &str,
    cause: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE calls SET end_time = $2, disposition = $3, hangup_cause = $4, updated_at = $5, \
           duration = MAX(0, ($2 - start_time) / 1000), \
           billsec = CASE WHEN answer_time IS NULL THEN 0 ELSE MAX(0, ($2 - answer_time) / 1000) END \
         WHERE call_id = $1 AND end_time IS NULL",
    )
    .bind(call_id)
    .bind(end)
    .bind(disposition)
    .bind(cause)
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Closes every open row as FAILED with `cause` (after a crash or restart).
pub async fn close_open(c: &mut Conn, cause: &str, now: i64) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE calls SET end_time = MAX(start_time, COALESCE(answer_time, start_time), $2), \
           disposition = 'FAILED', hangup_cause = $1, updated_at = $2, \
           duration = MAX(0, ($2 - start_time) / 1000), \
           billsec = CASE WHEN answer_time IS NULL THEN 0 ELSE MAX(0, ($2 - answer_time) / 1000) END \
         WHERE end_time IS NULL",
    )
    .bind(cause)
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected())
}

pub async fn get(c: &mut Conn, call_id: &str) -> Result<Option<CallRow>, sqlx::Error> {
    sqlx::query_as(AssertSqlSafe(format!("{SELECT} WHERE c.call_id = $1")))
        .bind(call_id)
        .fetch_optional(&mut *c)
        .await
}

/// Open calls; with `agent` only those where that user is caller or callee.
pub async fn active(c: &mut Conn, agent: Option<i64>) -> Result<Vec<CallRow>, sqlx::Error> {
    sqlx::query_as(AssertSqlSafe(format!(
        "{SELECT} WHERE c.end_time IS NULL AND ($1 IS NULL OR c.agent_id = $1 OR c.callee_agent_id = $1) \
         ORDER BY c.start_time DESC LIMIT 1000"
    )))
    .bind(agent)
    .fetch_all(&mut *c)
    .await
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
    AND ($5 IS NULL OR c.caller_number LIKE $5 ESCAPE '\\' OR c.callee_number LIKE $5 ESCAPE '\\' \
         OR c.call_id LIKE $5 ESCAPE '\\')";

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
) -> Result<(Vec<CallRow>, i64), sqlx::Error> {
    let pattern = f.search.as_deref().map(crate::like_pattern);
    let dir = if descending { "DESC" } else { "ASC" };
    let rows = sqlx::query_as(AssertSqlSafe(format!(
        "{SELECT}{FILTER} ORDER BY {order} {dir}, c.id {dir} LIMIT $6 OFFSET $7"
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
pub async fn stats(c: &mut Conn, f: &CallFilter) -> Result<CallStats, sqlx::Error> {
    let pattern = f.search.as_deref().map(crate::like_pattern);
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT COUNT(*) AS total_calls, \
           COALESCE(SUM(c.disposition = 'ANSWERED'), 0) AS answered, \
           COALESCE(SUM(c.disposition = 'NO ANSWER'), 0) AS no_answer, \
           COALESCE(SUM(c.disposition = 'BUSY'), 0) AS busy, \
           COALESCE(SUM(c.disposition = 'FAILED'), 0) AS failed, \
           COALESCE(SUM(c.disposition = 'CANCELLED'), 0) AS cancelled, \
           COALESCE(SUM(c.duration), 0) AS total_duration, \
           COALESCE(SUM(c.billsec), 0) AS total_billsec \
         FROM calls c{FILTER} AND c.end_time IS NOT NULL"
    )))
    .bind(f.from)
    .bind(f.to)
    .bind(f.agent)
    .bind(&f.disposition)
    .bind(&pattern)
    .fetch_one(&mut *c)
    .await
}

pub async fn count_open(c: &mut Conn) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(answer_time IS NOT NULL), 0) FROM calls WHERE end_time IS NULL",
    )
    .fetch_one(&mut *c)
    .await
}
