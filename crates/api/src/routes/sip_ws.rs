//! `/ws`: SIP over WebSocket (RFC 7118). Upgrades only when the client
//! offers the `sip` subprotocol and the engine takes the flow, then glues
//! the socket to it: client frames go in as bytes, engine messages go out
//! as text frames (binary if not UTF-8).

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::{FlowHandle, FlowRefused};

use crate::extract::PeerAddr;
use crate::state::AppState;

/// Where `/ws` is unless `http.ws_path` says otherwise.
pub const DEFAULT_PATH: &str = "/ws";

/// SIP over WebSocket (RFC 7118).
///
/// Softphones (JsSIP) open `new WebSocket(url, 'sip')`; each WebSocket
/// message is one SIP message. Over the HTTPS listener this is WSS.
/// SIP digest authentication happens inside; the upgrade itself is open.
/// Answers other than 101 are plain text.
#[utoipa::path(
    get,
    path = "/ws",
    tag = "sip",
    params(
        ("Sec-WebSocket-Protocol" = String, Header, description = "must offer `sip`"),
    ),
    responses(
        (status = 101, description = "Switched to WebSocket, subprotocol `sip`"),
        (status = 400, description = "The `sip` subprotocol was not offered", body = String, content_type = "text/plain"),
        (status = 426, description = "Not a WebSocket upgrade request", body = String, content_type = "text/plain"),
        (status = 429, description = "Too many SIP WebSocket connections from this address", body = String, content_type = "text/plain"),
        (status = 500, description = "The peer address is unknown (server wiring fault)", body = String, content_type = "text/plain"),
        (status = 503, description = "No SIP server running, or it refused the flow", body = String, content_type = "text/plain"),
    ),
)]
pub async fn upgrade(
    State(st): State<AppState>,
    peer: PeerAddr,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Some(engine) = st.engine.clone() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "SIP server not running").into_response();
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            return (
                StatusCode::UPGRADE_REQUIRED,
                format!("WebSocket upgrade with subprotocol sip required: {e}"),
            )
                .into_response()
        }
    };
    let offers_sip = ws.requested_protocols().any(|p| {
        p.to_str()
            .is_ok_and(|s| s.split(',').any(|x| x.trim().eq_ignore_ascii_case("sip")))
    });
    if !offers_sip {
        return (
            StatusCode::BAD_REQUEST,
            "the WebSocket subprotocol sip is required",
        )
            .into_response();
    }
    let PeerAddr(Some(peer)) = peer else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "peer address unknown").into_response();
    };
    // Over the HTTPS listener this is WSS: the engine records the flow as
    // secure (Via transport, sips: policies).
    let secure = st.config.served_over_tls;
    // The flow is taken before the upgrade so that a refusal is an HTTP
    // answer the client can see. Should the upgrade never complete, the
    // callback holding the flow is dropped, and with it the flow.
    let flow = match engine.attach_flow(peer, secure) {
        Ok(flow) => flow,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "SIP over WebSocket refused");
            let status = match e {
                FlowRefused::TooManyConnections(_) => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            return (status, e.to_string()).into_response();
        }
    };
    ws.protocols(["sip"])
        .max_message_size(1 << 16)
        .on_upgrade(move |socket| glue(socket, flow))
}

async fn glue(mut socket: WebSocket, flow: FlowHandle) {
    let FlowHandle {
        inbound: tx,
        outbound: mut rx,
    } = flow;
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(bytes) => {
                    let msg = match String::from_utf8(bytes) {
                        Ok(text) => Message::Text(text.into()),
                        Err(e) => Message::Binary(e.into_bytes().into()),
                    };
                    if socket.send(msg).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            },
            inc = socket.recv() => match inc {
                Some(Ok(Message::Text(t))) => {
                    if tx.send(t.as_str().as_bytes().to_vec()).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Binary(b))) => {
                    if tx.send(b.to_vec()).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
            },
        }
    }
}
