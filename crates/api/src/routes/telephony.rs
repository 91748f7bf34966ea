//! /api/telephony: the SIP account endpoints of seeds/001, calls (active,
//! history with CSV, stats), registrations, blocked SIP sources, status.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use chrono::{DateTime, NaiveDate, Utc};
use domain::calls::{Call, CallQuery};
use domain::Disposition;
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Admin, CurrentUser, Staff};
use crate::error::AppError;
use crate::extract::{AppJson, AppPath, AppQuery};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/telephony/status", get(status))
        .route("/api/telephony/sip/create", post(sip_create))
        .route("/api/telephony/sip/status", get(sip_status))
        .route("/api/telephony/sip/credentials", get(sip_credentials))
        .route("/api/telephony/calls/active", get(calls_active))
        .route("/api/telephony/calls/history", get(calls_history))
        .route("/api/telephony/calls/stats", get(calls_stats))
        .route("/api/telephony/calls/{call_id}", get(call_detail))
        .route("/api/telephony/registrations", get(registrations))
        .route("/api/telephony/security/blocked", get(blocked))
        .route("/api/telephony/security/blocked/{ip}", delete(unblock))
}

type JsonResult = Result<AppJson<serde_json::Value>, AppError>;

async fn status(State(st): State<AppState>, _u: CurrentUser) -> JsonResult {
    let (open, answered) = st.services.calls.open_counts().await?;
    // The engine knows every live binding (WebSocket ones included) and
    // every call now (CDR rows are written behind the calls, so open rows
    // lag under load); without one, the database is the best we have.
    // `callsInProgress` has no live counterpart and stays from the rows.
    let (connected, contacts, active, security) = match &st.engine {
        Some(engine) => {
            let live = engine.status();
            (
                live.connected,
                i64::try_from(live.registered_contacts).unwrap_or(i64::MAX),
                i64::try_from(live.active_calls).unwrap_or(i64::MAX),
                json!({
                    "scannerRequestsDropped": live.scanner_requests_dropped,
                    "authGuardedRefused": live.auth_guarded_refused,
                    "authAccountsGuarded": live.auth_accounts_guarded,
                }),
            )
        }
        None => (
            false,
            st.services.registrations.count_unexpired().await?,
            open,
            serde_json::Value::Null,
        ),
    };
    Ok(AppJson(json!({
        "success": true,
        "status": {
            "connected": connected,
            "activeCalls": active,
            "callsInProgress": answered,
            "registeredContacts": contacts,
            "mode": st.config.mode,
            "engine": st.engine.as_ref().map(|e| e.name()),
            // Counters since the engine started (null without an engine).
            "security": security,
        }
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SipCreateBody {
    user_id: i64,
    primer_nombre: Option<String>,
    primer_apellido: Option<String>,
}

async fn sip_create(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppJson(b): AppJson<SipCreateBody>,
) -> JsonResult {
    super::max_len(
        "primerNombre",
        b.primer_nombre.as_deref().unwrap_or(""),
        100,
    )?;
    super::max_len(
        "primerApellido",
        b.primer_apellido.as_deref().unwrap_or(""),
        100,
    )?;
    let name = [b.primer_nombre.as_deref(), b.primer_apellido.as_deref()]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let name = (!name.is_empty()).then_some(name);
    let (account, creds) = st
        .services
        .sip_accounts
        .create_for_user(&u.actor(), b.user_id, name.as_deref())
        .await?;
    Ok(AppJson(json!({
        "success": true,
        "message": "SIP peer created successfully",
        "sipPeer": {
            "sipUsername": account.username,
            "extension": account.extension,
            "status": if account.active { "active" } else { "inactive" },
        },
        "sipCredentials": creds,
    })))
}

async fn sip_status(u: CurrentUser) -> JsonResult {
    let Some(sip) = u.user.sip else {
        return Err(AppError::NotFound("sip account"));
    };
    Ok(AppJson(json!({
        "success": true,
        "sipPeer": {
            "username": sip.username,
            "extension": sip.extension,
            "status": sip.status,
            "registered": sip.registered,
            "lastRegisteredAt": sip.last_registered_at,
            "userAgent": sip.user_agent,
            "ipAddress": sip.ip_address,
            "contacts": sip.contacts,
        }
    })))
}

/// The WebSocket URL softphones use: the one configured in the console,
/// else this server's `/ws` at the host the client reached us by (so it
/// works through whatever name or address the browser used), else the
/// listen address.
pub fn ws_uri(
    st: &AppState,
    w: &domain::WebrtcSettings,
    headers: &axum::http::HeaderMap,
) -> String {
    if let Some(url) = &w.ws_url {
        return url.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'?' | b'#' | b'@'))
        });
    match host {
        Some(host) => {
            let forwarded_https = st.config.trust_proxy
                && headers
                    .get("x-forwarded-proto")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
            let scheme = if st.config.cookie_secure || st.config.served_over_tls || forwarded_https
            {
                "wss"
            } else {
                "ws"
            };
            format!("{scheme}://{host}{}", st.config.ws_path)
        }
        None => w.default_ws_url.clone(),
    }
}

async fn sip_credentials(
    State(st): State<AppState>,
    u: CurrentUser,
    headers: axum::http::HeaderMap,
) -> JsonResult {
    let eph = st
        .services
        .sip_accounts
        .issue_ephemeral(u.user.id)
        .await
        .map_err(|e| match e {
            domain::DomainError::NotFound { .. } => AppError::NotFound("sip account"),
            other => other.into(),
        })?;
    let w = st.services.webrtc.get().await?;
    Ok(AppJson(json!({
        "success": true,
        "credentials": {
            "sipServer": st.config.sip_host,
            "sipPort": st.config.sip_port.to_string(),
            "username": eph.account.username,
            "password": eph.password,
            "extension": eph.account.extension,
            "displayName": eph.account.display_name,
            "domain": st.config.sip_domain,
            "wsUri": ws_uri(&st, &w, &headers),
            "expiresAt": eph.expires_at,
            "iceServers": w.ice_servers(),
        }
    })))
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
        super::max_len("search", self.search.as_deref().unwrap_or(""), 100)?;
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

async fn registrations(State(st): State<AppState>, Staff(_): Staff) -> JsonResult {
    let regs = st.services.registrations.list_with_extension().await?;
    let list: Vec<serde_json::Value> = regs
        .into_iter()
        .map(|(r, ext)| {
            json!({
                "username": r.username, "extension": ext, "contact": r.contact, "transport": r.transport,
                "source": r.source, "userAgent": r.user_agent, "expiresAt": r.expires_at, "registeredAt": r.registered_at,
            })
        })
        .collect();
    Ok(AppJson(
        json!({"success": true, "total": list.len(), "registrations": list}),
    ))
}

/// Lifts a SIP ban early (e.g. an office NAT address that a misconfigured
/// phone got banned). Audited like every admin change.
async fn unblock(
    State(st): State<AppState>,
    Admin(u): Admin,
    AppPath(ip): AppPath<String>,
) -> JsonResult {
    let addr: std::net::IpAddr = ip
        .parse()
        .map_err(|_| AppError::invalid("ip", "not an IP address"))?;
    let engine = st
        .engine
        .as_ref()
        .ok_or_else(|| AppError::Unavailable("the SIP server is not running".into()))?;
    if !engine.unblock(addr) {
        return Err(AppError::NotFound("blocked source"));
    }
    st.services
        .audit
        .log(
            &u.actor(),
            "sip.unblock",
            "sip_source",
            &addr.to_string(),
            json!({}),
        )
        .await?;
    Ok(AppJson(json!({"success": true})))
}

async fn blocked(State(st): State<AppState>, Admin(_): Admin) -> JsonResult {
    let list: Vec<serde_json::Value> = st
        .engine
        .as_ref()
        .map(|e| e.blocked_sources())
        .unwrap_or_default()
        .into_iter()
        .map(|b| json!({"ip": b.ip.to_string(), "failures": b.failures, "blockedUntil": b.blocked_until}))
        .collect();
    Ok(AppJson(
        json!({"success": true, "total": list.len(), "blocked": list}),
    ))
}
