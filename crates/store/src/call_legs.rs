//! `call_legs`: one row per leg of a call (leg 0 the caller, 1.. the
//! destinations tried), keyed by (call_id, leg_no). Rows are written whole
//! by the domain's recorder; the store only saves and reads them.

use sqlx::{AssertSqlSafe, QueryBuilder, Sqlite};

use crate::Conn;

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
pub async fn for_call(c: &mut Conn, call_id: &str) -> Result<Vec<LegRow>, sqlx::Error> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM call_legs WHERE call_id = $1 ORDER BY leg_no"
    )))
    .bind(call_id)
    .fetch_all(&mut *c)
    .await
}

/// The legs of all these calls (in no particular order).
pub async fn for_calls(c: &mut Conn, call_ids: &[&str]) -> Result<Vec<LegRow>, sqlx::Error> {
    let mut out = Vec::new();
    for ids in call_ids.chunks(IDS_PER_STATEMENT) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT {COLUMNS} FROM call_legs WHERE call_id IN ("
        ));
        let mut sep = q.separated(", ");
        for id in ids {
            sep.push_bind(*id);
        }
        q.push(")");
        out.extend(
            q.build_query_as::<LegRow>()
                .persistent(false)
                .fetch_all(&mut *c)
                .await?,
        );
    }
    Ok(out)
}

/// Inserts each row, or, when the leg exists and is still open, replaces
/// its times, cause and SIP code. An ended leg is never changed. Returns
/// the rows written.
pub async fn upsert(c: &mut Conn, rows: &[LegRow]) -> Result<u64, sqlx::Error> {
    let mut n = 0;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("INSERT INTO call_legs ({COLUMNS}) "));
        q.push_values(chunk, |mut b, r| {
            b.push_bind(&r.call_id)
                .push_bind(r.leg_no)
                .push_bind(&r.party_number)
                .push_bind(r.agent_id)
                .push_bind(&r.transport)
                .push_bind(r.created_at)
                .push_bind(r.ringing_at)
                .push_bind(r.answered_at)
                .push_bind(r.ended_at)
                .push_bind(&r.end_cause)
                .push_bind(r.sip_code);
        });
        q.push(
            " ON CONFLICT (call_id, leg_no) DO UPDATE SET ringing_at = excluded.ringing_at, \
               answered_at = excluded.answered_at, ended_at = excluded.ended_at, \
               end_cause = excluded.end_cause, sip_code = excluded.sip_code \
             WHERE call_legs.ended_at IS NULL",
        );
        // Not cached: its text varies with the batch, and caching it would
        // evict the hot statements of the connection's cache.
        n += q
            .build()
            .persistent(false)
            .execute(&mut *c)
            .await?
            .rows_affected();
    }
    Ok(n)
}

/// Closes every open leg with `cause` at `now` (never before the leg was
/// created, rang or answered): legs left open by a crash.
pub async fn close_open(c: &mut Conn, cause: &str, now: i64) -> Result<u64, sqlx::Error> {
    // SQLite's scalar MAX takes several arguments (NULL only if one is).
    let r = sqlx::query(
        "UPDATE call_legs SET end_cause = $1, \
           ended_at = MAX(created_at, COALESCE(ringing_at, created_at), \
                          COALESCE(answered_at, created_at), $2) \
         WHERE ended_at IS NULL",
    )
    .bind(cause)
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected())
}
