//! The API's error type and its JSON envelope
//! `{"success": false, "error": {"code", "message"}}`.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::DomainError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("authentication required")]
    Unauthorized,
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("your role may not do this")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("this method is not allowed on this route")]
    MethodNotAllowed,
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{message}")]
    Invalid { field: String, message: String },
    #[error("too many attempts, retry in {0} s")]
    RateLimited(u64),
    #[error("the server is busy, retry in {0} s")]
    Busy(u64),
    #[error("request body too large")]
    PayloadTooLarge,
    /// A `Range` that selects nothing of a resource of `len` bytes.
    #[error("range not satisfiable")]
    RangeNotSatisfiable { len: u64 },
    #[error("{0}")]
    Unavailable(String),
    /// Policy forbids it (a dial-plan refusal: `code` is its cause).
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    /// The running engine cannot do this.
    #[error("{0}")]
    NotImplemented(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The message of a 5xx, stored in the response extensions so the logging
/// middleware can log it once (responses only say "internal error").
#[derive(Clone, Debug)]
pub struct LoggedError(pub String);

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::Unavailable(_) | Self::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Refused { .. } => StatusCode::FORBIDDEN,
            Self::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> String {
        match self {
            Self::BadRequest(_) => "bad_request".into(),
            Self::Unauthorized => "unauthorized".into(),
            Self::InvalidCredentials => "invalid_credentials".into(),
            Self::Forbidden => "forbidden".into(),
            Self::NotFound(what) => format!("{}_not_found", what.replace(' ', "_")),
            Self::MethodNotAllowed => "method_not_allowed".into(),
            Self::Conflict { code, .. } => (*code).into(),
            Self::Invalid { .. } => "invalid_field".into(),
            Self::RateLimited(_) => "rate_limited".into(),
            Self::PayloadTooLarge => "payload_too_large".into(),
            Self::RangeNotSatisfiable { .. } => "range_not_satisfiable".into(),
            Self::Unavailable(_) => "unavailable".into(),
            Self::Refused { code, .. } => (*code).into(),
            Self::NotImplemented(_) => "not_implemented".into(),
            Self::Busy(_) => "busy".into(),
            Self::Internal(_) => "internal".into(),
        }
    }

    /// What the client may see.
    pub fn public_message(&self) -> String {
        match self {
            Self::Internal(_) => "internal error".into(),
            other => other.to_string(),
        }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<DomainError> for AppError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::NotFound { what } => Self::NotFound(what),
            DomainError::Conflict { field, message } => Self::Conflict {
                code: match field {
                    "login" => "duplicate_login",
                    "email" => "duplicate_email",
                    "extension" => "duplicate_extension",
                    "sipAccount" => "sip_account_exists",
                    _ => "conflict",
                },
                message,
            },
            DomainError::Invalid { field, message } => Self::Invalid {
                field: field.into(),
                message: format!("{field}: {message}"),
            },
            DomainError::InvalidCredentials => Self::InvalidCredentials,
            DomainError::RateLimited { retry_after_secs } => Self::RateLimited(retry_after_secs),
            DomainError::Busy { retry_after_secs } => Self::Busy(retry_after_secs),
            DomainError::NotAllowed { code, message } => Self::Conflict { code, message },
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<JsonRejection> for AppError {
    fn from(r: JsonRejection) -> Self {
        match r {
            // Wrong type, unknown field, missing field: the JSON is fine,
            // the content is not.
            JsonRejection::JsonDataError(e) => Self::Invalid {
                field: String::new(),
                message: e.body_text(),
            },
            JsonRejection::JsonSyntaxError(e) => {
                Self::BadRequest(format!("malformed JSON: {}", e.body_text()))
            }
            JsonRejection::MissingJsonContentType(_) => {
                Self::BadRequest("expected a JSON body with Content-Type: application/json".into())
            }
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::PayloadTooLarge
            }
            other => Self::BadRequest(other.body_text()),
        }
    }
}

impl From<QueryRejection> for AppError {
    fn from(r: QueryRejection) -> Self {
        Self::BadRequest(format!("bad query: {}", r.body_text()))
    }
}

impl From<PathRejection> for AppError {
    fn from(r: PathRejection) -> Self {
        Self::BadRequest(format!("bad path: {}", r.body_text()))
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = crate::doc::ErrorBody {
            success: false,
            error: crate::doc::ErrorDetail {
                code: self.code(),
                message: self.public_message(),
            },
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if let Self::RateLimited(secs) | Self::Busy(secs) = &self {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        // RFC 9110 §15.5.17: a 416 says how long the resource is.
        if let Self::RangeNotSatisfiable { len } = &self {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
        }
        // A busy answer is expected under a login flood: not logged as a
        // failure (it would add a log line per attempt of the flood).
        if status.is_server_error() && !matches!(self, Self::Busy(_)) {
            resp.extensions_mut().insert(LoggedError(self.to_string()));
        }
        resp
    }
}

/// Logs every request at debug level and 5xx errors once at error level,
/// inside the request's context.
pub async fn log_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    if let Some(LoggedError(msg)) = resp.extensions().get::<LoggedError>() {
        tracing::error!(%method, %path, status, error = %msg, "request failed");
    } else {
        tracing::debug!(%method, %path, status, ms = started.elapsed().as_millis() as u64, "request");
    }
    resp
}

/// The console's Content-Security-Policy: its scripts, styles and fonts
/// come only from this server (the build has no inline script or style),
/// no plugins, no framing, forms post here only. `connect-src` allows the
/// API here and SIP over WebSocket to any host (the softphone's WebSocket
/// URL is a setting and may name another server). `data:` images: the
/// empty favicon of index.html. `blob:` media: nothing today, kept so a
/// recorded-audio player does not need a policy change.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; font-src 'self'; media-src 'self' blob:; \
connect-src 'self' ws: wss:; object-src 'none'; base-uri 'self'; form-action 'self'; \
frame-ancestors 'none'";

/// Headers every answer carries: no MIME sniffing, no framing (clickjacking
/// of the console), no referrer leaking console URLs, the console's
/// Content-Security-Policy; and `Cache-Control: no-store` on the JSON of
/// `/api` and `/hr` (sessions, agents, CDRs must not stay in a shared or
/// browser cache).
pub async fn security_headers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    let json_api = ["/api", "/hr"]
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')));
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    h.entry(header::X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("DENY"));
    h.entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    if json_api {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}
