//! /api/telephony, one nest: the SIP account endpoints of seeds/001
//! (`sip`), calls: active, history with CSV, stats (`calls`), a call's
//! recording (`recording`), registrations
//! (`registrations`), blocked SIP sources (`security`), and the status below.

mod calls;
mod recording;
mod registrations;
mod security;
mod sip;

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::CurrentUser;
use crate::doc;
use crate::error::AppError;
use crate::extract::AppJson;
use crate::state::AppState;

pub use self::sip::ws_uri;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().nest(
        "/api/telephony",
        OpenApiRouter::new()
            .routes(routes!(status))
            .merge(sip::routes())
            .merge(calls::routes())
            .merge(recording::routes())
            .merge(registrations::routes())
            .merge(security::routes()),
    )
}

type JsonResult<T> = Result<AppJson<T>, AppError>;

#[derive(Serialize, ToSchema)]
pub struct StatusAnswer {
    pub success: bool,
    pub status: PbxStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PbxStatus {
    /// The engine can take calls now.
    pub connected: bool,
    /// Calls ringing or answered now.
    pub active_calls: i64,
    /// Answered calls whose CDR is still open.
    pub calls_in_progress: i64,
    pub registered_contacts: i64,
    /// builtin | asterisk | relay
    pub mode: String,
    /// The running engine's name; null without one.
    pub engine: Option<String>,
    /// Counters since the engine started; null without an engine.
    pub security: Option<SecurityCounters>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecurityCounters {
    /// Requests dropped unanswered because of a scanner User-Agent.
    pub scanner_requests_dropped: u64,
    /// Authentication attempts refused unchecked on guarded accounts.
    pub auth_guarded_refused: u64,
    /// Account guards started.
    pub auth_accounts_guarded: u64,
}

/// PBX status.
///
/// Active calls and registered contacts (live from the engine when one
/// runs). Any role.
#[utoipa::path(
    get,
    path = "/status",
    tag = "telephony",
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses((status = 200, description = "The status", body = StatusAnswer), doc::Auth),
)]
async fn status(State(st): State<AppState>, _u: CurrentUser) -> JsonResult<StatusAnswer> {
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
                Some(SecurityCounters {
                    scanner_requests_dropped: live.scanner_requests_dropped,
                    auth_guarded_refused: live.auth_guarded_refused,
                    auth_accounts_guarded: live.auth_accounts_guarded,
                }),
            )
        }
        None => (
            false,
            st.services.registrations.count_unexpired().await?,
            open,
            None,
        ),
    };
    Ok(AppJson(StatusAnswer {
        success: true,
        status: PbxStatus {
            connected,
            active_calls: active,
            calls_in_progress: answered,
            registered_contacts: contacts,
            mode: st.config.mode.clone(),
            engine: st.engine.as_ref().map(|e| e.name().to_string()),
            security,
        },
    }))
}
