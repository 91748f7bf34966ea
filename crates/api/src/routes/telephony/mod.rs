//! /api/telephony, one nest: the SIP account endpoints of seeds/001
//! (`sip`), calls: active, history with CSV, stats (`calls`), registrations
//! (`registrations`), blocked SIP sources (`security`), and the status below.

mod calls;
mod registrations;
mod security;
mod sip;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde_json::json;

use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::extract::AppJson;
use crate::state::AppState;

pub use self::sip::ws_uri;

pub fn routes() -> Router<AppState> {
    Router::new().nest(
        "/api/telephony",
        Router::new()
            .route("/status", get(status))
            .merge(sip::routes())
            .merge(calls::routes())
            .merge(registrations::routes())
            .merge(security::routes()),
    )
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
