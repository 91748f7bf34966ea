//! `call_legs`: one row per leg of a call (leg 0 the caller, 1.. the
//! destinations tried), keyed by (call_id, leg_no). Rows are written whole
//! by the domain's recorder; the store only saves and reads them.

use sqlx::AssertSqlSafe;

use crate::{Conn, DbError};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LegRow {
    pub call_id: String,
    pub leg_no: i64,
    pub party_number: String,
    pub agent_id: Option<i64>,
    pub transport: String,
    pub created_at: i64,
    pub ringing_at: Option<i64>,
    pub answered_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub end_cause: Option<String>,
    pub sip_code: Option<i64>,
}

const COLUMNS: &str =
    "call_id, leg_no, party_number, agent_id, transport, created_at, ringing_at, \
    answered_at, ended_at, end_cause, sip_code";

/// Rows per multi-row statement: 11 parameters each stays far below the
/// parameter limits of SQLite (32,766) and PostgreSQL (65,535).
const ROWS_PER_STATEMENT: usize = 500;
/// Call ids per `IN (...)` list.
const IDS_PER_STATEMENT: usize = 500;

/// The legs of one call, by leg number.
pub async fn for_call(c: &mut Conn, call_id: &str) -> Result<Vec<LegRow>, DbError> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM call_legs WHERE call_id = $1 ORDER BY leg_no"
    )))
    .bind(call_id)
    .fetch_all(&mut *c)
    .await
    .map_err(DbError::from)
}

/// The legs of all these calls (in no particular order).
pub async fn for_calls(c: &mut Conn, call_ids: &[&str]) -> Result<Vec<LegRow>, DbError> {
    let mut out = Vec::new();
    for ids in call_ids.chunks(IDS_PER_STATEMENT) {
        let sql = format!(
            "SELECT {COLUMNS} FROM call_legs WHERE call_id IN ({})",
            crate::param_list(crate::sigil(c), ids.len(), 1)
        );
        let mut q = sqlx::query_as::<_, LegRow>(AssertSqlSafe(sql));
        for id in ids {
            q = q.bind(*id);
        }
        out.extend(q.persistent(false).fetch_all(&mut *c).await?);
    }
    Ok(out)
}

/// Inserts each row, or, when the leg exists and is still open, replaces
/// its times, cause and SIP code. An ended leg is never changed. Returns
/// the rows written.
pub async fn upsert(c: &mut Conn, rows: &[LegRow]) -> Result<u64, DbError> {
    let mut n = 0;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO call_legs ({COLUMNS}) VALUES {} \
             ON CONFLICT (call_id, leg_no) DO UPDATE SET ringing_at = excluded.ringing_at, \
               answered_at = excluded.answered_at, ended_at = excluded.ended_at, \
               end_cause = excluded.end_cause, sip_code = excluded.sip_code \
             WHERE call_legs.ended_at IS NULL",
            crate::values_tuples(crate::sigil(c), chunk.len(), 11, 1)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for r in chunk {
            q = q
                .bind(&r.call_id)
                .bind(r.leg_no)
                .bind(&r.party_number)
                .bind(r.agent_id)
                .bind(&r.transport)
                .bind(r.created_at)
                .bind(r.ringing_at)
                .bind(r.answered_at)
                .bind(r.ended_at)
                .bind(&r.end_cause)
                .bind(r.sip_code);
        }
        // Not cached: its text varies with the batch, and caching it would
        // evict the hot statements of the connection's cache.
        n += q.persistent(false).execute(&mut *c).await?.rows_affected();
    }
    Ok(n)
}

/// Closes every open leg with `cause` at `now` (never before the leg was
/// created, rang or answered): legs left open by a crash.
pub async fn close_open(c: &mut Conn, cause: &str, now: i64) -> Result<u64, DbError> {
    // The latest of the leg's times and now: SQLite's scalar MAX takes
    // several arguments, PostgreSQL calls it GREATEST.
    let latest = if crate::is_postgres(c) {
        "GREATEST"
    } else {
        "MAX"
    };
    let r = sqlx::query(AssertSqlSafe(format!(
        "UPDATE call_legs SET end_cause = $1, \
           ended_at = {latest}(created_at, COALESCE(ringing_at, created_at), \
                          COALESCE(answered_at, created_at), $2) \
         WHERE ended_at IS NULL"
    )))
    .bind(cause)
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected())
}
