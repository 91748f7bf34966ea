//! centralita persistence: the sqlx pool, migrations and one module per
//! table. It knows nothing of HTTP or SIP; callers pass plain values.
//!
//! Every function takes a `&mut SqliteConnection` so the domain layer can run
//! several of them inside one transaction (`Db::write`). Timestamps are
//! milliseconds since the Unix epoch (UTC).

pub mod api_tokens;
pub mod audit;
pub mod call_legs;
pub mod calls;
pub mod ops;
pub mod registrations;
pub mod sessions;
pub mod settings;
pub mod sip_accounts;
pub mod sip_ephemeral;
pub mod testing;
pub mod users;
pub mod webrtc;

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

pub use ops::{Applied, DbUrl};
pub use sqlx::SqliteConnection as Conn;

/// Errors from the store: the database itself or the migrations.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("bad database url: {0}")]
    Url(String),
}

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The database handle: a cheap-to-clone pool.
#[derive(Clone, Debug)]
pub struct Db {
    pool: SqlitePool,
}

impl Db {
    /// Opens (creating if missing) the SQLite database at `url`
    /// (`sqlite://path` or `sqlite:path`), with WAL, foreign keys and a busy
    /// timeout, and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        // An unknown scheme is refused, never taken for a file name.
        ops::DbUrl::parse(url)?;
        let db = Self::connect(url).await?;
        MIGRATOR.run(&db.pool).await?;
        Ok(db)
    }

    /// Opens the pool without migrating (the URL is checked by the caller).
    async fn connect(url: &str) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Url(e.to_string()))?
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable across application crashes in WAL mode; only
            // an OS crash may lose the last transactions.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        if let Some(parent) = opts.get_filename().parent() {
            if !parent.as_os_str().is_empty() {
                tokio::fs::create_dir_all(parent).await.map_err(|e| {
                    StoreError::Url(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // Each connection keeps its own page cache (up to 2 MiB) and
            // statement cache; after a burst, connections idle this long are
            // closed so that memory goes back (reopening one costs well
            // under a millisecond).
            .idle_timeout(Duration::from_secs(10))
            .acquire_timeout(Duration::from_secs(15))
            .connect_with(opts)
            .await?;
        Ok(Self { pool })
    }

    /// The pool, for reads.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Starts a write transaction. `BEGIN IMMEDIATE` takes the write lock up
    /// front so concurrent writers queue on the busy timeout instead of
    /// failing when a read lock cannot be upgraded (SQLITE_BUSY_SNAPSHOT).
    pub async fn write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// Closes the pool, checkpointing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Whether `err` is a CHECK constraint violation.
pub fn check_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|db| matches!(db.kind(), sqlx::error::ErrorKind::CheckViolation))
}

/// If `err` is a UNIQUE constraint violation, the `table.column` it names.
pub fn unique_violation(err: &sqlx::Error) -> Option<String> {
    let db = err.as_database_error()?;
    if !matches!(db.kind(), sqlx::error::ErrorKind::UniqueViolation) {
        return None;
    }
    // SQLite: "UNIQUE constraint failed: users.login"
    let msg = db.message();
    Some(
        msg.rsplit(": ")
            .next()
            .unwrap_or(msg)
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .to_string(),
    )
}

/// Escapes `%`, `_` and `\\` for a `LIKE ... ESCAPE '\\'` pattern.
pub fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A "contains" pattern for `LIKE ... ESCAPE '\\'`.
pub fn like_pattern(search: &str) -> String {
    format!("%{}%", like_escape(search))
}
