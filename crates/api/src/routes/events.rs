//! /api/events: a WebSocket of domain events as JSON, for the console.
//! Authenticated by the session cookie, a bearer token or `?token=`
//! (session or API token; browsers cannot set headers on WebSockets).

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{bearer, cookie, resolve, SESSION_COOKIE};
use crate::doc::{self, ErrorBody};
use crate::error::AppError;
use crate::extract::AppQuery;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(upgrade))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct TokenQuery {
    /// A session token or an API token (browsers cannot set headers on a
    /// WebSocket).
    token: Option<String>,
}

/// Live events (WebSocket).
///
/// One JSON text message per event: `{"type": "registration" | "call" |
/// "agent" | "security", "at", ...}` with camelCase fields (docs/API.md).
/// Agents receive only events about themselves. Authenticated by the
/// session cookie, a bearer token or `?token=`; any role.
#[utoipa::path(
    get,
    path = "/api/events",
    tag = "events",
    params(TokenQuery),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 101, description = "Switched to WebSocket; the server sends events"),
        (status = 400, description = "Not a WebSocket upgrade request", body = ErrorBody),
        doc::Auth,
    ),
)]
async fn upgrade(
    State(st): State<AppState>,
    headers: HeaderMap,
    AppQuery(q): AppQuery<TokenQuery>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    let token = q.token.or_else(|| bearer(&headers));
    let session = cookie(&headers, SESSION_COOKIE);
    let user = match (&token, &session) {
        (Some(t), _) if t.starts_with(domain::auth::TOKEN_PREFIX) => {
            resolve(&st, None, Some(t)).await?
        }
        (Some(t), _) => resolve(&st, Some(t), None).await?,
        (None, s) => resolve(&st, s.as_deref(), None).await?,
    };
    let Some((user, _)) = user else {
        return Err(AppError::Unauthorized);
    };
    let ws = ws.map_err(|e| AppError::BadRequest(format!("WebSocket upgrade required: {e}")))?;
    let rx = st.services.events.subscribe();
    tracing::debug!(user = user.id, "events subscriber connected");
    // Fixed at connect time, like the user it was made from.
    let scope = domain::Scope::of(&user);
    let uid = user.id;
    Ok(ws.on_upgrade(move |socket| pump(socket, rx, uid, scope)))
}

/// Whether `ev` ends the subscriber's access (deactivated or deleted).
fn ends_access(ev: &domain::Event, uid: i64) -> bool {
    matches!(ev, domain::Event::Agent { id, action, .. } if *id == uid && (action == "deactivated" || action == "deleted"))
}

async fn pump(
    mut socket: WebSocket,
    mut rx: tokio::sync::broadcast::Receiver<domain::Event>,
    uid: i64,
    scope: domain::Scope,
) {
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    if ends_access(&ev, uid) {
                        let _ = socket.send(Message::Close(None)).await;
                        return;
                    }
                    if !scope.may_see(&ev) {
                        continue;
                    }
                    let Ok(text) = serde_json::to_string(&ev) else { continue };
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                // A slow client missed some events; keep going.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
