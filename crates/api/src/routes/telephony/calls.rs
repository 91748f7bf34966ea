//! /api/telephony/calls: active calls, one call with its legs, history
//! (JSON or CSV) and statistics; agents see only their own calls.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use domain::calls::{Call, CallQuery};
use domain::{CallLeg, CallStats, Disposition};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::JsonResult;
use crate::auth::CurrentUser;
use crate::doc;
use crate::error::AppError;
use crate::extract::{AppJson, AppPath, AppQuery};
use crate::routes::max_len;
use crate::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(calls_active))
        .routes(routes!(calls_history))
        .routes(routes!(calls_stats))
        .routes(routes!(call_detail))
        .routes(routes!(call_hangup))
        .routes(routes!(call_originate))
}

#[derive(Serialize, ToSchema)]
pub struct ActiveCalls {
    pub success: bool,
    pub count: usize,
    pub calls: Vec<Call>,
}

#[derive(Serialize, ToSchema)]
pub struct CallDetail {
    pub success: bool,
    pub call: Call,
    /// Leg 0 is the caller, legs 1.. the destinations tried.
    pub legs: Vec<CallLeg>,
}

#[derive(Serialize, ToSchema)]
pub struct CallHistory {
    pub success: bool,
    /// Same as `total` (seeds/001).
    pub count: i64,
    /// Matching calls over all pages.
    pub total: i64,
    pub calls: Vec<Call>,
}

#[derive(Serialize, ToSchema)]
pub struct CallStatsAnswer {
    pub success: bool,
    pub stats: CallStats,
}

/// Calls in progress.
///
/// Any role; agents see their own calls only.
#[utoipa::path(
    get,
    path = "/calls/active",
    tag = "telephony",
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "Open calls", body = ActiveCalls), doc::Auth),
)]
async fn calls_active(State(st): State<AppState>, u: CurrentUser) -> JsonResult<ActiveCalls> {
    let calls = st
        .services
        .calls
        .active(u.scope().call_filter(None))
        .await?;
    Ok(AppJson(ActiveCalls {
        success: true,
        count: calls.len(),
        calls,
    }))
}

/// One call with its legs.
///
/// Any role; agents only see calls they took part in (as caller, callee or
/// on a leg): any other call is "not found" to them.
#[utoipa::path(
    get,
    path = "/calls/{call_id}",
    tag = "telephony",
    params(("call_id" = String, Path, description = "the SIP Call-ID of the caller's leg")),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "The call", body = CallDetail), doc::Auth, doc::NotFound),
)]
async fn call_detail(
    State(st): State<AppState>,
    u: CurrentUser,
    AppPath(call_id): AppPath<String>,
) -> JsonResult<CallDetail> {
    let calls = &st.services.calls;
    let call = calls
        .get(&call_id)
        .await?
        .ok_or(AppError::NotFound("call"))?;
    let legs = calls.legs(&call_id).await?;
    if !u.scope().may_see_call(&call, &legs) {
        return Err(AppError::NotFound("call"));
    }
    Ok(AppJson(CallDetail {
        success: true,
        call,
        legs,
    }))
}

/// Which call to hang up: `callId` (the id of its record), or seeds/001's
/// `channel` (an Asterisk channel name; the builtin engine takes the call
/// id there too).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HangupRequest {
    pub call_id: Option<String>,
    pub channel: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct HangupAnswer {
    pub success: bool,
    pub message: String,
}

/// Hang up a call.
///
/// Ends a call that is ringing or up: BYE to both parties (or CANCEL to
/// the callee and 503 to the caller while it rings); its CDR ends with
/// cause `forced_hangup`. Any role: agents only calls they take part in
/// (any other is "not found"), staff any call. Audited as `call.hangup`.
#[utoipa::path(
    post,
    path = "/call/hangup",
    tag = "telephony",
    request_body = HangupRequest,
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "Hung up", body = HangupAnswer),
        doc::Auth,
        doc::JsonBody,
        doc::NotFound,
        doc::Engine,
    ),
)]
async fn call_hangup(
    State(st): State<AppState>,
    u: CurrentUser,
    AppJson(b): AppJson<HangupRequest>,
) -> JsonResult<HangupAnswer> {
    let call_id = b
        .call_id
        .or(b.channel)
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| AppError::invalid("callId", "required (or channel)"))?;
    max_len("callId", &call_id, 256)?;
    let calls = &st.services.calls;
    let mut call = calls.get(&call_id).await?;
    // The record is written behind the call: one started a moment ago (an
    // originate the CRM hangs up at once) may not be stored yet: up to a
    // second for it (the writer ticks every 50 ms).
    for _ in 0..20 {
        if call.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        call = calls.get(&call_id).await?;
    }
    let call = call.ok_or(AppError::NotFound("call"))?;
    let legs = calls.legs(&call_id).await?;
    if !u.scope().may_see_call(&call, &legs) || call.end_time.is_some() {
        return Err(AppError::NotFound("call"));
    }
    let engine = st
        .engine
        .as_ref()
        .ok_or_else(|| AppError::Unavailable("the SIP server is not running".into()))?;
    if !engine.hang_up(&call_id) {
        // Its record is open but the engine has no such call (it ended a
        // moment ago, or the row is left from before a restart).
        return Err(AppError::NotFound("call"));
    }
    st.services
        .audit
        .log(
            &u.actor(),
            "call.hangup",
            "call",
            &call_id,
            serde_json::json!({ "state": call.state }),
        )
        .await?;
    Ok(AppJson(HangupAnswer {
        success: true,
        message: "Call hung up successfully".into(),
    }))
}

/// seeds/001's originate request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OriginateRequest {
    /// The extension of the agent whose phone rings first.
    pub agent_extension: String,
    /// The customer's number, as an agent would dial it.
    pub customer_phone: String,
    pub campaign_id: Option<i64>,
    pub lead_id: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct OriginateAnswer {
    pub success: bool,
    pub message: String,
    pub data: OriginateData,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OriginateData {
    /// The id the call's CDR has (`GET /api/telephony/calls/{callId}`).
    pub call_id: String,
    /// The trunk the customer is dialled through.
    pub trunk: String,
}

/// Originate a call (click-to-call).
///
/// Rings the agent's phone; when the agent answers, the customer is dialled
/// through the first usable trunk of the dial plan (seeds/001). The number
/// goes through the same toll-fraud gate as the agent's own calls (403 with
/// the cause as code: `dial_not_permitted`, `destination_blocked`). Agents
/// may originate only from their own extension; staff for anyone. Audited
/// as `call.originate`. 409 `agent_not_registered` when the agent has no
/// softphone to ring; 501 when the running engine cannot originate (the
/// relay).
#[utoipa::path(
    post,
    path = "/call/originate",
    tag = "telephony",
    request_body = OriginateRequest,
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The agent's phone is ringing", body = OriginateAnswer),
        doc::Auth,
        doc::JsonBody,
        doc::NotFound,
        (status = 403, description = "Not your extension, or the dial plan refuses the number", body = doc::ErrorBody),
        (status = 409, description = "The agent has no registered softphone", body = doc::ErrorBody),
        (status = 501, description = "The engine cannot originate", body = doc::ErrorBody),
        doc::Engine,
    ),
)]
async fn call_originate(
    State(st): State<AppState>,
    u: CurrentUser,
    AppJson(b): AppJson<OriginateRequest>,
) -> JsonResult<OriginateAnswer> {
    use domain::dialplan::Refusal;
    use domain::originate::OriginateError;
    max_len("agentExtension", &b.agent_extension, 64)?;
    max_len("customerPhone", &b.customer_phone, 64)?;
    if u.user.role == domain::Role::Agent {
        let own = st.services.sip_accounts.by_user(u.user.id).await?;
        if own.is_none_or(|a| a.extension != b.agent_extension.trim()) {
            return Err(AppError::Forbidden);
        }
    }
    let plan = st
        .services
        .plan_originate(
            &b.agent_extension,
            &b.customer_phone,
            b.campaign_id,
            b.lead_id,
        )
        .await
        .map_err(|e| match e {
            OriginateError::Domain(d) => AppError::from(d),
            OriginateError::Refused(r @ (Refusal::NoRoute | Refusal::BadNumber(_))) => {
                AppError::invalid("customerPhone", r.to_string())
            }
            OriginateError::Refused(Refusal::NoTrunkAvailable) => {
                AppError::Unavailable("no trunk available".into())
            }
            OriginateError::Refused(r) => AppError::Refused {
                code: r.cause(),
                message: r.to_string(),
            },
        })?;
    let engine = st
        .engine
        .as_ref()
        .ok_or_else(|| AppError::Unavailable("no PBX engine is running".into()))?;
    let trunk = plan.trunk_name.clone();
    let audit = serde_json::json!({
        "agentExtension": plan.agent_extension, "customerPhone": plan.e164,
        "trunk": trunk, "campaignId": plan.campaign_id, "leadId": plan.lead_id,
    });
    let Some(fut) = engine.originate(plan) else {
        return Err(AppError::NotImplemented(format!(
            "the {} engine cannot originate calls yet",
            engine.name()
        )));
    };
    let call_id = fut.await.map_err(|e| match e {
        domain::engine::OriginateFailure::AgentNotRegistered => AppError::Conflict {
            code: "agent_not_registered",
            message: "the agent has no registered softphone to ring".into(),
        },
        domain::engine::OriginateFailure::Refused(e) => {
            AppError::Unavailable(format!("the PBX refused the originate: {e}"))
        }
    })?;
    st.services
        .audit
        .log(&u.actor(), "call.originate", "call", &call_id, audit)
        .await?;
    Ok(AppJson(OriginateAnswer {
        success: true,
        message: "Call originated successfully".into(),
        data: OriginateData { call_id, trunk },
    }))
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

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct HistoryQuery {
    /// 1..500 (CSV: 1..10000, default 10000), default 50.
    limit: Option<i64>,
    offset: Option<i64>,
    /// `YYYY-MM-DD` (start of that UTC day) or an RFC 3339 time.
    from: Option<String>,
    /// `YYYY-MM-DD` (the whole day included) or an RFC 3339 time.
    to: Option<String>,
    /// seeds/001's name of `from`.
    start_date: Option<String>,
    /// seeds/001's name of `to`.
    end_date: Option<String>,
    /// Ignored for agents (always themselves).
    agent_id: Option<i64>,
    /// ANSWERED | NO ANSWER | BUSY | FAILED | CANCELLED
    disposition: Option<String>,
    /// Matches caller, callee or Call-ID.
    search: Option<String>,
    /// json (default) | csv
    format: Option<String>,
    /// A field (`startTime`, `duration`, ...), `-` in front for descending.
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
        "id,callId,direction,callerNumber,calleeNumber,agentId,agentName,startTime,answerTime,endTime,duration,billsec,disposition,hangupCause,quality,worstMos,hasRecording\n",
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
            c.quality
                .as_ref()
                .map(|q| q.class.as_str().to_string())
                .unwrap_or_default(),
            c.quality
                .as_ref()
                .map(|q| format!("{:.2}", q.worst_mos))
                .unwrap_or_default(),
            c.has_recording.to_string(),
        ];
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

/// Call detail records.
///
/// JSON, or CSV with `format=csv`. Any role; agents see their own calls
/// only.
#[utoipa::path(
    get,
    path = "/calls/history",
    tag = "telephony",
    params(HistoryQuery),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "One page of CDRs, newest first", content(
            (CallHistory = "application/json"),
            (String = "text/csv"),
        )),
        doc::Auth,
        doc::BadInput,
    ),
)]
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
    Ok(AppJson(CallHistory {
        success: true,
        count: total,
        total,
        calls,
    })
    .into_response())
}

/// CDR figures.
///
/// Over the calls the history's filters select. Any role; agents their own
/// calls only.
#[utoipa::path(
    get,
    path = "/calls/stats",
    tag = "telephony",
    params(HistoryQuery),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "Figures", body = CallStatsAnswer), doc::Auth, doc::BadInput),
)]
async fn calls_stats(
    State(st): State<AppState>,
    u: CurrentUser,
    AppQuery(q): AppQuery<HistoryQuery>,
) -> JsonResult<CallStatsAnswer> {
    let cq = q.to_query(&u, 500)?;
    let stats = st.services.calls.stats(&cq).await?;
    Ok(AppJson(CallStatsAnswer {
        success: true,
        stats,
    }))
}
