//! /api/telephony/calls: active calls, one call with its legs, history
//! (JSON or CSV) and statistics; agents see only their own calls.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, NaiveDate, Utc};
use domain::calls::{Call, CallQuery};
use domain::Disposition;
use serde::Deserialize;
use serde_json::json;

use super::JsonResult;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::extract::{AppJson, AppPath, AppQuery};
use crate::routes::max_len;
use crate::state::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/calls/active", get(calls_active))
        .route("/calls/history", get(calls_history))
        .route("/calls/stats", get(calls_stats))
        .route("/calls/{call_id}", get(call_detail))
}

async fn calls_active(State(st): State<AppState>, u: CurrentUser) -> JsonResult {
    let calls = st
        .services
        .calls
        .active(u.scope().call_filter(None))
        .await?;
    Ok(AppJson(
        json!({"success": true, "count": calls.len(), "calls": calls}),
    ))
}

/// One call with its legs. Agents only see calls they took part in (as
/// caller, callee or on a leg); any other call is "not found" to them.
async fn call_detail(
    State(st): State<AppState>,
    u: CurrentUser,
    AppPath(call_id): AppPath<String>,
) -> JsonResult {
    let calls = &st.services.calls;
    let call = calls
        .get(&call_id)
        .await?
        .ok_or(AppError::NotFound("call"))?;
    let legs = calls.legs(&call_id).await?;
    if !u.scope().may_see_call(&call, &legs) {
        return Err(AppError::NotFound("call"));
    }
    Ok(AppJson(
        json!({"success": true, "call": call, "legs": legs}),
    ))
}

/// A date (`2026-11-21`, start of that UTC day, or the next day when
/// `end_of_day`) or an RFC 3339 time.
fn parse_time(field: &str, v: &str, end_of_day: bool) -> Result<DateTime<Utc>, AppError> {
    let v = v.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| {
        AppError::BadRequest(format!("{field} must be YYYY-MM-DD or an RFC 3339 time"))
    })?;
    let d = if end_of_day {
        d.succ_opt().unwrap_or(d)
    } else {
        d
    };
    Ok(d.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or_default())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryQuery {
    limit: Option<i64>,
    offset: Option<i64>,
    from: Option<String>,
    to: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
    agent_id: Option<i64>,
    disposition: Option<String>,
    search: Option<String>,
    format: Option<String>,
    order: Option<String>,
}

impl HistoryQuery {
    fn to_query(&self, u: &CurrentUser, max_limit: i64) -> Result<CallQuery, AppError> {
        let from = self
            .from
            .as_deref()
            .or(self.start_date.as_deref())
            .filter(|s| !s.is_empty());
        let to = self
            .to
            .as_deref()
            .or(self.end_date.as_deref())
            .filter(|s| !s.is_empty());
        let disposition = match self.disposition.as_deref().filter(|s| !s.is_empty()) {
            Some(d) => Some(Disposition::parse(d).ok_or_else(|| {
                AppError::BadRequest(
                    "disposition must be ANSWERED, NO ANSWER, BUSY, FAILED or CANCELLED".into(),
                )
            })?),
            None => None,
        };
        max_len("search", self.search.as_deref().unwrap_or(""), 100)?;
        // Agents only ever see their own calls.
        let agent_id = u.scope().call_filter(self.agent_id);
        Ok(CallQuery {
            from: from.map(|f| parse_time("from", f, false)).transpose()?,
            to: to.map(|t| parse_time("to", t, true)).transpose()?,
            agent_id,
            disposition,
            search: self.search.clone(),
            limit: self.limit.unwrap_or(50).clamp(1, max_limit),
            offset: self.offset.unwrap_or(0).max(0),
            order: self.order.clone(),
        })
    }
}

fn csv_field(s: &str) -> String {
    // Quote always; neutralise spreadsheet formulas.
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn calls_csv(calls: &[Call]) -> String {
    let mut out = String::from(
        "id,callId,direction,callerNumber,calleeNumber,agentId,agentName,startTime,answerTime,endTime,duration,billsec,disposition,hangupCause\n",
    );
    let t = |d: Option<DateTime<Utc>>| {
        d.map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    for c in calls {
        let row = [
            c.id.to_string(),
            csv_field(&c.call_id),
            c.direction.clone(),
            csv_field(&c.caller_number),
            csv_field(&c.callee_number),
            c.agent_id.map(|a| a.to_string()).unwrap_or_default(),
            csv_field(c.agent.as_ref().map(|a| a.name.as_str()).unwrap_or("")),
            t(Some(c.start_time)),
            t(c.answer_time),
            t(c.end_time),
            c.duration.to_string(),
            c.billsec.to_string(),
            csv_field(c.disposition.as_deref().unwrap_or("")),
            csv_field(c.hangup_cause.as_deref().unwrap_or("")),
        ];
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

async fn calls_history(
    State(st): State<AppState>,
    u: CurrentUser,
    AppQuery(q): AppQuery<HistoryQuery>,
) -> Result<Response, AppError> {
    let csv = match q.format.as_deref() {
        None | Some("") | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(AppError::BadRequest("format must be json or csv".into())),
    };
    let mut cq = q.to_query(&u, if csv { 10_000 } else { 500 })?;
    if csv && q.limit.is_none() {
        cq.limit = 10_000;
    }
    let (calls, total) = st.services.calls.history(&cq).await.map_err(|e| match e {
        domain::DomainError::Invalid { message, .. } => AppError::BadRequest(message),
        other => other.into(),
    })?;
    if csv {
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"calls.csv\"",
                ),
            ],
            calls_csv(&calls),
        )
            .into_response());
    }
    Ok(
        AppJson(json!({"success": true, "count": total, "total": total, "calls": calls}))
            .into_response(),
    )
}

async fn calls_stats(
    State(st): State<AppState>,
    u: CurrentUser,
    AppQuery(q): AppQuery<HistoryQuery>,
) -> JsonResult {
    let cq = q.to_query(&u, 500)?;
    let stats = st.services.calls.stats(&cq).await?;
    Ok(AppJson(json!({"success": true, "stats": stats})))
}
