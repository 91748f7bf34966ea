//! centralita persistence: the sqlx pool, migrations and one module per
//! table. It knows nothing of HTTP or SIP; callers pass plain values.
//!
//! One code base for two databases, chosen by the URL's scheme at run time:
//! SQLite (`sqlite://PATH`, the embedded default) or PostgreSQL 15+
//! (`postgres://...`). The pool is sqlx's `Any` driver, so every query is
//! written once in the SQL both understand (`$N` placeholders, `ON
//! CONFLICT`, `RETURNING`); the few that differ ask [`is_postgres`].
//!
//! Every function takes a `&mut Conn` so the domain layer can run several
//! of them inside one transaction (`Db::write`). Timestamps are
//! milliseconds since the Unix epoch (UTC).

pub mod api_tokens;
pub mod audit;
pub mod call_legs;
pub mod call_quality;
pub mod calls;
pub mod campaign_trunks;
pub mod dids;
mod error;
mod flag;
pub mod ops;
pub mod registrations;
pub mod sessions;
pub mod settings;
pub mod sip_accounts;
pub mod sip_ephemeral;
pub mod testing;
pub mod trunks;
pub mod users;
pub mod webrtc;

use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Any, AnyPool, ConnectOptions, Connection, Executor, Transaction};

pub use error::{check_violation, unique_violation, DbError, UniqueViolation};
pub use ops::{Applied, DbUrl};

/// A connection of either database; every store function takes one.
pub type Conn = sqlx::AnyConnection;

/// A pooled connection for reads (dereferences to [`Conn`]).
pub type PoolConn = PoolConnection<Any>;

/// Errors from opening the store: the database itself or the migrations.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] DbError),
    #[error("migration error: {0}")]
    Migrate(String),
    #[error("bad database url: {0}")]
    Url(String),
    /// The database named by a valid URL cannot be used: server down,
    /// wrong credentials, missing database, unreadable file.
    #[error("{0}")]
    Open(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e.into())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Self::Migrate(e.to_string())
    }
}

pub(crate) static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
pub(crate) static POSTGRES_MIGRATOR: sqlx::migrate::Migrator =
    sqlx::migrate!("./migrations/postgres");

/// Which database a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub(crate) fn migrator(self) -> &'static sqlx::migrate::Migrator {
        match self {
            Self::Sqlite => &SQLITE_MIGRATOR,
            Self::Postgres => &POSTGRES_MIGRATOR,
        }
    }
}

/// Whether `c` is a PostgreSQL connection (for the few statements whose
/// SQL differs).
pub fn is_postgres(c: &Conn) -> bool {
    c.backend_name() == <sqlx::Postgres as sqlx::Database>::NAME
}

/// A kind of write transaction that must not run beside another of its
/// kind. SQLite's `BEGIN IMMEDIATE` already serialises every writer; on
/// PostgreSQL (READ COMMITTED, writers side by side) these read, decide
/// and write, and two at once would decide on the same stale reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// Choosing a new SIP username and extension: two transactions would
    /// both pick the same next extension, and the loser's unique
    /// violation aborts its whole transaction (no retry inside it).
    SipAllocation,
    /// Merging call events into stored CDR rows (read the rows, apply the
    /// events, write them back): a concurrent merge would be lost.
    CallRecords,
}

/// Takes `lock` until the end of the current transaction (a
/// transaction-scoped advisory lock on PostgreSQL, which also holds
/// between several servers sharing the database; nothing on SQLite).
pub async fn lock(c: &mut Conn, lock: Lock) -> Result<(), DbError> {
    if is_postgres(c) {
        // Keys of our own (any constants; "centralita" in the high bits).
        let key: i64 = match lock {
            Lock::SipAllocation => 0x0063_656e_0001,
            Lock::CallRecords => 0x0063_656e_0002,
        };
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(key)
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}

/// The database handle: a cheap-to-clone pool.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

/// A write transaction (dereferences to [`Conn`]). Dropped without
/// [`Tx::commit`], it rolls back.
#[derive(Debug)]
pub struct Tx(Transaction<'static, Any>);

impl Tx {
    pub async fn commit(self) -> Result<(), DbError> {
        Ok(self.0.commit().await?)
    }

    pub async fn rollback(self) -> Result<(), DbError> {
        Ok(self.0.rollback().await?)
    }
}

impl Deref for Tx {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.0
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.0
    }
}

/// SQLite's busy timeout: how long a writer waits for the write lock.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

fn install_drivers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

impl Db {
    /// Opens the database at `url` (`sqlite://PATH`, created if missing,
    /// with WAL, foreign keys and a busy timeout; or `postgres://...`) and
    /// applies pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        // An unknown scheme is refused, never taken for a file name.
        let parsed = ops::DbUrl::parse(url)?;
        let db = Self::connect(&parsed, url).await?;
        let migrated = db.backend.migrator().run(&db.pool).await;
        if let Err(e) = migrated {
            db.pool.close().await;
            return Err(e.into());
        }
        Ok(db)
    }

    /// Opens the pool without migrating (the URL is checked by the caller).
    async fn connect(parsed: &DbUrl, url: &str) -> Result<Self, StoreError> {
        install_drivers();
        let (opts, backend, max) = match parsed {
            DbUrl::Sqlite { .. } => {
                let sqlite = SqliteConnectOptions::from_str(url)
                    .map_err(|e| StoreError::Url(e.to_string()))?
                    .create_if_missing(true);
                if let Some(parent) = sqlite.get_filename().parent() {
                    if !parent.as_os_str().is_empty() {
                        tokio::fs::create_dir_all(parent).await.map_err(|e| {
                            StoreError::Url(format!("cannot create {}: {e}", parent.display()))
                        })?;
                    }
                }
                // The Any driver rebuilds SQLite's options from a URL, which
                // carries only the file and its open mode (`mode=rwc`: create
                // if missing); the pragmas are set per connection below.
                let any = AnyConnectOptions::from_str(sqlite.to_url_lossy().as_str())
                    .map_err(|e| StoreError::Url(e.to_string()))?;
                (any, Backend::Sqlite, 8)
            }
            DbUrl::Postgres { .. } => {
                let any =
                    AnyConnectOptions::from_str(url).map_err(|e| StoreError::Url(e.to_string()))?;
                (any, Backend::Postgres, 10)
            }
        };
        // One connection first, on its own: a server that is down, wrong
        // credentials or a missing database fail here at once with the
        // database's own words, not after the pool's acquire timeout.
        let probe = sqlx::AnyConnection::connect_with(&opts)
            .await
            .map_err(|e| StoreError::Open(open_error(parsed, &e)))?;
        let _ = probe.close().await;
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            // Each connection keeps its own caches (SQLite: a page cache of
            // up to 2 MiB and the statement cache); after a burst,
            // connections idle this long are closed so that memory goes
            // back (reopening one costs well under a millisecond on SQLite).
            .idle_timeout(Duration::from_secs(10))
            .acquire_timeout(Duration::from_secs(15))
            .after_connect(move |c, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers never block the writer. NORMAL is
                        // durable across application crashes in WAL mode;
                        // only an OS crash may lose the last transactions.
                        c.execute(sqlx::AssertSqlSafe(format!(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {}",
                            SQLITE_BUSY_TIMEOUT.as_millis()
                        )))
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Open(open_error(parsed, &e)))?;
        Ok(Self { pool, backend })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for tests and tools that run their own SQL.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A pooled connection, for reads.
    pub async fn conn(&self) -> Result<PoolConn, DbError> {
        Ok(self.pool.acquire().await?)
    }

    /// Starts a write transaction.
    ///
    /// SQLite: `BEGIN IMMEDIATE` takes the write lock up front so
    /// concurrent writers queue on the busy timeout instead of failing when
    /// a read lock cannot be upgraded (SQLITE_BUSY_SNAPSHOT). Writers are
    /// therefore serialised, and a check made inside the transaction (is
    /// this login taken?) still holds at its commit.
    ///
    /// PostgreSQL: a plain `BEGIN` (READ COMMITTED); writers run side by
    /// side, and the unique constraints, recognised by name, catch what a
    /// concurrent transaction committed between a check and a write.
    pub async fn write(&self) -> Result<Tx, DbError> {
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(Tx(tx))
    }

    /// Connections open in the pool and, of those, idle: for the metrics.
    pub fn pool_stats(&self) -> (u32, u32) {
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        (self.pool.size(), idle)
    }

    /// The most connections the pool opens.
    pub fn pool_max(&self) -> u32 {
        self.pool.options().get_max_connections()
    }

    /// Closes the pool (on SQLite, checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// What went wrong opening `url`, in words an operator can act on (the
/// password of a PostgreSQL URL is never shown).
fn open_error(url: &DbUrl, e: &sqlx::Error) -> String {
    let shown = url.redacted();
    match url {
        DbUrl::Sqlite { path } => {
            format!("cannot open the SQLite database {}: {e}", path.display())
        }
        DbUrl::Postgres { .. } => {
            let hint = match e {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => {
                    " (is the PostgreSQL server running and listening there?)"
                }
                sqlx::Error::Database(db) => match db.code().as_deref() {
                    Some("28P01" | "28000") => " (wrong user name or password)",
                    Some("3D000") => " (create the database first: createdb NAME)",
                    _ => "",
                },
                _ => "",
            };
            format!("cannot connect to PostgreSQL at {shown}: {e}{hint}")
        }
    }
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

/// The pattern of a case-insensitive "contains" search, for
/// `LOWER(column) LIKE $n ESCAPE '\\'`: ASCII letters lowercased as
/// LOWER() lowercases them on both databases (others are left as they are,
/// as SQLite's LIKE and LOWER leave them).
pub fn search_pattern(search: &str) -> String {
    like_pattern(&search.to_ascii_lowercase())
}

/// `ORDER BY` for `order` (one or more expressions separated by ", ", from
/// a module's `order_column`) then `tie`, all in one direction. NULLs
/// sort as SQLite sorts them (lowest) on both databases: PostgreSQL puts
/// them last in ascending order unless told.
pub(crate) fn order_by(order: &str, descending: bool, tie: &str) -> String {
    let (dir, nulls) = if descending {
        ("DESC", "NULLS LAST")
    } else {
        ("ASC", "NULLS FIRST")
    };
    let mut out = String::from(" ORDER BY ");
    for expr in order.split(", ") {
        out.push_str(&format!("{expr} {dir} {nulls}, "));
    }
    out.push_str(&format!("{tie} {dir}"));
    out
}

/// `($1, $2), ($3, $4)`: the tuples of a multi-row `VALUES` with `rows`
/// rows of `cols` parameters, numbered from `first`. (sqlx's QueryBuilder
/// writes `?` for the Any driver, which PostgreSQL does not accept.)
/// The placeholder sigil for long parameter lists on `c`'s database:
/// PostgreSQL takes only `$N`. SQLite gets bare `?` (the parameters of
/// these statements appear once each, in order): `$N` and `?N` enter a list
/// that SQLite searches linearly, both when it prepares the statement and
/// for every `sqlite3_bind_parameter_name` sqlx calls while binding, so a
/// 500-row batch (5,000+ parameters) costs quadratic time (68 % of the
/// server's CPU in a profile at 3,000 calls/s, CDR writes falling behind).
pub(crate) fn sigil(c: &Conn) -> char {
    if c.backend_name() == "SQLite" {
        '?'
    } else {
        '$'
    }
}

/// One placeholder: `$N` for PostgreSQL, a bare `?` for SQLite.
fn placeholder(out: &mut String, sigil: char, n: usize) {
    out.push(sigil);
    if sigil == '$' {
        out.push_str(&n.to_string());
    }
}

/// `(p1, p2, ...), (...)`: `rows` tuples of `cols` numbered placeholders
/// from `first` on (see [`sigil`]).
pub(crate) fn values_tuples(sigil: char, rows: usize, cols: usize, first: usize) -> String {
    let mut out = String::with_capacity(rows * cols * 6);
    let mut n = first;
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for col in 0..cols {
            if col > 0 {
                out.push_str(", ");
            }
            placeholder(&mut out, sigil, n);
            n += 1;
        }
        out.push(')');
    }
    out
}

/// `p1, p2, ...`: `n` numbered placeholders from `first` on.
pub(crate) fn param_list(sigil: char, n: usize, first: usize) -> String {
    let mut out = String::with_capacity(n * 6);
    for i in first..first + n {
        if i > first {
            out.push_str(", ");
        }
        placeholder(&mut out, sigil, i);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(super::values_tuples('$', 2, 2, 1), "($1, $2), ($3, $4)");
        assert_eq!(super::values_tuples('?', 2, 2, 1), "(?, ?), (?, ?)");
        assert_eq!(super::param_list('$', 3, 2), "$2, $3, $4");
        assert_eq!(super::param_list('?', 2, 5), "?, ?");
    }
}
