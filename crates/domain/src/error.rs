//! The domain's error type. Each variant maps to one HTTP status in `api`.

/// Why a domain operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    /// The thing asked for does not exist (`what` is e.g. "user").
    #[error("{what} not found")]
    NotFound { what: &'static str },
    /// A unique value is already taken (`field` is e.g. "login").
    #[error("{field} already exists")]
    Conflict {
        field: &'static str,
        message: String,
    },
    /// A field's value is not acceptable.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// Wrong login or password (never says which).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Too many failures; try again after this many seconds.
    #[error("rate limited, retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// The server is too busy to check a password now (login flood); try
    /// again after this many seconds.
    #[error("too busy to check passwords now, retry after {retry_after_secs} s")]
    Busy { retry_after_secs: u64 },
    /// The operation is not allowed in the current state (e.g. removing
    /// oneself).
    #[error("{message}")]
    NotAllowed { code: &'static str, message: String },
    #[error("database error: {0}")]
    Db(#[from] store::DbError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl DomainError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }

    pub(crate) fn conflict(field: &'static str) -> Self {
        Self::Conflict {
            field,
            message: format!("{field} already exists"),
        }
    }

    /// Maps a UNIQUE violation of a users or sip_accounts column to a
    /// conflict on that field; anything else stays a database error.
    ///
    /// PostgreSQL names the violated constraint, so a concurrent writer
    /// that took the value between our check and our write is reported on
    /// the right field. SQLite does not; there the explicit checks made
    /// inside the write transaction (`BEGIN IMMEDIATE` serialises writers)
    /// have already reported any duplicate, and a violation left over
    /// still means "taken", with the field unknown.
    pub(crate) fn from_write(err: store::DbError) -> Self {
        if store::check_violation(&err) {
            // The only CHECK a request can trip: users need a login or an email.
            return Self::invalid("login", "login or email is required");
        }
        match store::unique_violation(&err).map(|v| v.column) {
            Some(Some("users.login")) => Self::conflict("login"),
            Some(Some("users.email")) => Self::conflict("email"),
            Some(Some("sip_accounts.extension")) => Self::conflict("extension"),
            Some(Some("sip_accounts.username")) => Self::conflict("sipUsername"),
            Some(Some("sip_accounts.user_id")) => Self::conflict("sipAccount"),
            Some(_) => Self::Conflict {
                field: "value",
                message: "a value that must be unique is already taken".into(),
            },
            None => Self::Db(err),
        }
    }
}
