//! The store's error type and how constraint violations are recognised:
//! by SQLSTATE or SQLite's extended result code and by constraint name,
//! never by the text of a message (which differs between databases,
//! versions and locales).

use sqlx::error::ErrorKind;

/// A database error. Opaque outside the store; its message is the
/// database's.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DbError(#[from] sqlx::Error);

impl DbError {
    /// The SQLSTATE (PostgreSQL) or extended result code (SQLite), if the
    /// database reported one.
    pub fn code(&self) -> Option<String> {
        self.0
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned())
    }

    /// Whether the pool could not hand out a connection in time or was
    /// closed.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self.0,
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
        )
    }

    fn kind(&self) -> Option<ErrorKind> {
        self.0.as_database_error().map(|d| d.kind())
    }

    /// Whether this is a foreign key violation.
    pub fn is_foreign_key_violation(&self) -> bool {
        matches!(self.kind(), Some(ErrorKind::ForeignKeyViolation))
    }
}

/// A UNIQUE (or primary key) violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UniqueViolation {
    /// The `table.column` whose value was taken, from the constraint's
    /// name. PostgreSQL names the constraint; SQLite does not (only its
    /// message does), so there this is `None` and the domain checks for
    /// duplicates itself inside the write transaction, where `BEGIN
    /// IMMEDIATE` makes the check race-free; the violation is then only a
    /// last guard.
    pub column: Option<&'static str>,
}

/// The named unique constraints of `migrations/postgres` and the column
/// each guards. A constraint missing here is still a [`UniqueViolation`],
/// with no column.
const UNIQUE_CONSTRAINTS: &[(&str, &str)] = &[
    ("users_login_key", "users.login"),
    ("users_email_key", "users.email"),
    ("sip_accounts_user_id_key", "sip_accounts.user_id"),
    ("sip_accounts_username_key", "sip_accounts.username"),
    ("sip_accounts_extension_key", "sip_accounts.extension"),
    ("sessions_token_hash_key", "sessions.token_hash"),
    ("api_tokens_token_hash_key", "api_tokens.token_hash"),
    ("calls_call_id_key", "calls.call_id"),
    (
        "registrations_username_contact_key",
        "registrations.username",
    ),
    ("trunks_name_key", "trunks.name"),
];

/// If `err` is a UNIQUE constraint violation: which column, when the
/// database says (see [`UniqueViolation::column`]).
pub fn unique_violation(err: &DbError) -> Option<UniqueViolation> {
    let db = err.0.as_database_error()?;
    if !matches!(db.kind(), ErrorKind::UniqueViolation) {
        return None;
    }
    let column = db.constraint().and_then(|name| {
        UNIQUE_CONSTRAINTS
            .iter()
            .find(|(c, _)| *c == name)
            .map(|(_, col)| *col)
    });
    Some(UniqueViolation { column })
}

/// Whether `err` is a CHECK constraint violation.
pub fn check_violation(err: &DbError) -> bool {
    matches!(err.kind(), Some(ErrorKind::CheckViolation))
}
