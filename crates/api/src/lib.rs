//! centralita HTTP API (docs/API.md): axum routes, console auth, the
//! events WebSocket, SIP over WebSocket at `/ws`, and the console's static
//! files. Handlers parse and check input, call `domain` services and shape
//! the answer; the logic lives in `domain`.

pub mod auth;
pub mod doc;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod routes;
pub mod state;
mod static_files;

use std::path::PathBuf;

use axum::extract::DefaultBodyLimit;
use axum::{Extension, Router};

pub use error::AppError;
pub use state::AppState;

/// HTTP-side configuration.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Directory of the built console (index.html and assets).
    pub console_dir: PathBuf,
    /// Trust `X-Forwarded-For` for the client address.
    pub trust_proxy: bool,
    /// Add `Secure` to the session cookie (behind HTTPS).
    pub cookie_secure: bool,
    /// Session cookie lifetime (matches the domain's session TTL).
    pub session_ttl_secs: i64,
    /// SIP domain handed to softphones.
    pub sip_domain: String,
    /// Host and port of the SIP UDP/TCP listener, for `/sip/credentials`.
    pub sip_host: String,
    pub sip_port: u16,
    /// Path of the SIP WebSocket on this server (`/ws`).
    pub ws_path: String,
    /// Largest request body accepted.
    pub body_limit: usize,
    /// "builtin" | "asterisk" | "relay"
    pub mode: String,
    /// This router is served over TLS (the HTTPS listener): the session
    /// cookie gets `Secure`, `/ws` is WSS for the SIP server and softphones
    /// are handed a `wss://` URL.
    pub served_over_tls: bool,
    /// Where call recordings are (`media.recording_dir`); the stored path
    /// of a recording is relative to it. `None`: no recording is served.
    pub recording_dir: Option<PathBuf>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            console_dir: PathBuf::from("web/dist"),
            trust_proxy: false,
            cookie_secure: false,
            session_ttl_secs: 43_200,
            sip_domain: "centralita.local".into(),
            sip_host: "127.0.0.1".into(),
            sip_port: 5060,
            ws_path: "/ws".into(),
            body_limit: 64 * 1024,
            mode: "builtin".into(),
            served_over_tls: false,
            recording_dir: None,
        }
    }
}

/// The whole HTTP application. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so client
/// addresses are known (rate limiting, audit, SIP over WebSocket).
pub fn router(state: AppState) -> Router {
    metrics::install();
    let limit = state.config.body_limit;
    // Routes and their OpenAPI description come from one source.
    let (routes, doc) = routes::openapi::api(&state.config.ws_path).split_for_parts();
    routes
        .fallback(static_files::fallback)
        // A known route with another method: the JSON error envelope too
        // (axum's default 405 has an empty body).
        .method_not_allowed_fallback(|| async { error::AppError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(error::log_errors))
        .layer(axum::middleware::from_fn(error::security_headers))
        // Outermost: the duration includes the other layers.
        .layer(axum::middleware::from_fn(metrics::track_http))
        .layer(Extension(routes::openapi::Served::new(&doc)))
        .with_state(state)
}

/// The separate metrics listener (`metrics.listen`): only `/metrics`,
/// without authentication; everything else is 404.
pub fn metrics_router(state: AppState) -> Router {
    metrics::install();
    let (routes, _doc) = routes::metrics::open_routes().split_for_parts();
    routes
        .layer(axum::middleware::from_fn(error::security_headers))
        .with_state(state)
}
