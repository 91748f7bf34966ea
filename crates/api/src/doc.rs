//! Shapes shared by many routes, for the handlers and for the OpenAPI
//! document alike: the error envelope, the bare `{"success": true}`
//! answer, and the error responses an operation lists in its
//! `#[utoipa::path]` (`responses(..., doc::Auth, doc::JsonBody)`).
//!
//! The envelope types here are what `AppError` serializes, so the document
//! and the wire cannot disagree.

use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};

/// The error envelope of every JSON route (except the seed-shaped
/// `/api/provision`): `{"success": false, "error": {"code", "message"}}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Always `false`.
    pub success: bool,
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: `bad_request`, `unauthorized`,
    /// `invalid_credentials`, `forbidden`, `<thing>_not_found`,
    /// `method_not_allowed`, `duplicate_login`, `duplicate_email`,
    /// `duplicate_extension`, `sip_account_exists`, `conflict`,
    /// `invalid_field`, `rate_limited`, `payload_too_large`, `unavailable`,
    /// `busy`, `internal`, ...
    #[schema(example = "invalid_field")]
    pub code: String,
    /// For people; not stable.
    pub message: String,
}

/// `{"success": true}`: the action was done; nothing else to say.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Done {
    /// Always `true`.
    pub success: bool,
}

impl Done {
    pub fn new() -> Self {
        Self { success: true }
    }
}

impl Default for Done {
    fn default() -> Self {
        Self::new()
    }
}

/// Operations that need a console session or an API token, open to every
/// role.
#[derive(IntoResponses)]
pub enum Auth {
    /// Not authenticated: no or expired session, unknown or revoked token.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// A server fault (`internal`); the log has the cause.
    #[response(status = 500)]
    Internal(ErrorBody),
}

/// Operations that need a session or token of certain roles.
#[derive(IntoResponses)]
pub enum Role {
    /// Not authenticated: no or expired session, unknown or revoked token.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Authenticated, but the role may not do this.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// A server fault (`internal`); the log has the cause.
    #[response(status = 500)]
    Internal(ErrorBody),
}

/// Public operations that use the database.
#[derive(IntoResponses)]
pub enum Internal {
    /// A server fault (`internal`); the log has the cause.
    #[response(status = 500)]
    Internal(ErrorBody),
}

/// Operations that take a JSON body.
#[derive(IntoResponses)]
pub enum JsonBody {
    /// Malformed JSON, or no `Content-Type: application/json`.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// The body is larger than `http.body_limit`.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Well-formed JSON with a wrong, missing, unknown or invalid field
    /// (`invalid_field`).
    #[response(status = 422)]
    Invalid(ErrorBody),
}

/// Operations with query or path parameters that can be malformed.
#[derive(IntoResponses)]
pub enum BadInput {
    /// A parameter has the wrong type or an unknown value.
    #[response(status = 400)]
    BadRequest(ErrorBody),
}

/// Operations on one thing that may not exist.
#[derive(IntoResponses)]
pub enum NotFound {
    /// No such thing (`<thing>_not_found`).
    #[response(status = 404)]
    NotFound(ErrorBody),
}

/// Operations that may clash with existing data or the thing's state.
#[derive(IntoResponses)]
pub enum Conflict {
    /// Duplicate login, email or extension, or not allowed in the thing's
    /// current state.
    #[response(status = 409)]
    Conflict(ErrorBody),
}

/// Credential checks (login).
#[derive(IntoResponses)]
pub enum Login {
    /// Wrong login or password (`invalid_credentials`).
    #[response(status = 401)]
    InvalidCredentials(ErrorBody),
    /// Too many failed attempts from this address or for this login
    /// (`rate_limited`; `Retry-After` says when to try again).
    #[response(status = 429, headers(("Retry-After" = u64, description = "seconds")))]
    RateLimited(ErrorBody),
    /// Password checks are saturated (`busy`; `Retry-After`).
    #[response(status = 503, headers(("Retry-After" = u64, description = "seconds")))]
    Busy(ErrorBody),
    /// A server fault (`internal`); the log has the cause.
    #[response(status = 500)]
    Internal(ErrorBody),
}

/// Operations that need the PBX engine.
#[derive(IntoResponses)]
pub enum Engine {
    /// No PBX engine is running (`unavailable`).
    #[response(status = 503)]
    Unavailable(ErrorBody),
}
