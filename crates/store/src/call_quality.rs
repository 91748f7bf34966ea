//! `call_quality`: the latest media figures of each leg of a call in each
//! direction, keyed by (call_id, leg_no, direction). Written by the
//! domain's recorder from the media plane's quality events; the store
//! keeps, per key, the row with the latest `at_ms`.

use sqlx::AssertSqlSafe;

use crate::{Conn, DbError};

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct QualityRow {
    pub call_id: String,
    pub leg_no: i64,
    /// inbound | outbound (as seen from centralita)
    pub direction: String,
    pub at_ms: i64,
    pub packets: i64,
    pub lost: i64,
    pub jitter_ms: f64,
    pub rtt_ms: Option<f64>,
    pub mos: f64,
    pub codec: String,
}

const COLUMNS: &str =
    "call_id, leg_no, direction, at_ms, packets, lost, jitter_ms, rtt_ms, mos, codec";

/// Rows per multi-row statement: 10 parameters each stays far below the
/// parameter limits of SQLite (32,766) and PostgreSQL (65,535).
const ROWS_PER_STATEMENT: usize = 500;
/// Call ids per `IN (...)` list.
const IDS_PER_STATEMENT: usize = 500;

/// Inserts each row, or replaces the stored one of the same key when this
/// one is not older. The rows must have distinct keys (PostgreSQL refuses
/// to update one row twice in a statement; the recorder keeps one per key).
/// Returns the rows written.
pub async fn upsert(c: &mut Conn, rows: &[QualityRow]) -> Result<u64, DbError> {
    let mut n = 0;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO call_quality ({COLUMNS}) VALUES {} \
             ON CONFLICT (call_id, leg_no, direction) DO UPDATE SET at_ms = excluded.at_ms, \
               packets = excluded.packets, lost = excluded.lost, \
               jitter_ms = excluded.jitter_ms, rtt_ms = excluded.rtt_ms, mos = excluded.mos, \
               codec = excluded.codec \
             WHERE call_quality.at_ms <= excluded.at_ms",
            crate::values_tuples(crate::sigil(c), chunk.len(), 10, 1)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for r in chunk {
            q = q
                .bind(&r.call_id)
                .bind(r.leg_no)
                .bind(&r.direction)
                .bind(r.at_ms)
                .bind(r.packets)
                .bind(r.lost)
                .bind(r.jitter_ms)
                .bind(r.rtt_ms)
                .bind(r.mos)
                .bind(&r.codec);
        }
        // Not cached: its text varies with the batch.
        n += q.persistent(false).execute(&mut *c).await?.rows_affected();
    }
    Ok(n)
}

/// The figures of all these calls, by call, leg and direction.
pub async fn for_calls(c: &mut Conn, call_ids: &[&str]) -> Result<Vec<QualityRow>, DbError> {
    let mut out = Vec::new();
    for ids in call_ids.chunks(IDS_PER_STATEMENT) {
        let sql = format!(
            "SELECT {COLUMNS} FROM call_quality WHERE call_id IN ({}) \
             ORDER BY call_id, leg_no, direction",
            crate::param_list(crate::sigil(c), ids.len(), 1)
        );
        let mut q = sqlx::query_as::<_, QualityRow>(AssertSqlSafe(sql));
        for id in ids {
            q = q.bind(*id);
        }
        out.extend(q.persistent(false).fetch_all(&mut *c).await?);
    }
    Ok(out)
}
