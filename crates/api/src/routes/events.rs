//! /api/events: a WebSocket of domain events as JSON, for the console.
//! Authenticated by the session cookie, a bearer token or `?token=`
//! (session or API token; browsers cannot set headers on WebSockets).

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::{bearer, cookie, resolve, SESSION_COOKIE};
use crate::error::AppError;
use crate::extract::AppQuery;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/events", get(upgrade))
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

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
    let viewer = Viewer::of(&user);
    Ok(ws.on_upgrade(move |socket| pump(socket, rx, viewer)))
}

/// What one subscriber may see: admins and supervisors everything, agents
/// only their own registrations, calls and account changes.
#[derive(Debug, Clone)]
struct Viewer {
    uid: i64,
    sees_all: bool,
    /// The agent's SIP username and extension (either may identify them in
    /// a call's numbers).
    sip_ids: Vec<String>,
}

impl Viewer {
    fn of(user: &domain::User) -> Self {
        let sip_ids = user
            .sip
            .iter()
            .flat_map(|s| [s.username.clone(), s.extension.clone()])
            .collect();
        Self {
            uid: user.id,
            sees_all: user.role != domain::Role::Agent,
            sip_ids,
        }
    }

    fn may_see(&self, ev: &domain::Event) -> bool {
        if self.sees_all {
            return true;
        }
        match ev {
            domain::Event::Agent { id, .. } => *id == self.uid,
            domain::Event::Registration { username, .. } => self.sip_ids.contains(username),
            domain::Event::Call {
                caller_number,
                callee_number,
                ..
            } => self.sip_ids.contains(caller_number) || self.sip_ids.contains(callee_number),
        }
    }
}

/// Whether `ev` ends the subscriber's access (deactivated or deleted).
fn ends_access(ev: &domain::Event, uid: i64) -> bool {
    matches!(ev, domain::Event::Agent { id, action, .. } if *id == uid && (action == "deactivated" || action == "deleted"))
}

async fn pump(
    mut socket: WebSocket,
    mut rx: tokio::sync::broadcast::Receiver<domain::Event>,
    viewer: Viewer,
) {
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    if ends_access(&ev, viewer.uid) {
                        let _ = socket.send(Message::Close(None)).await;
                        return;
                    }
                    if !viewer.may_see(&ev) {
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
