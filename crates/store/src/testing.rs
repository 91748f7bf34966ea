//! For tests in every crate: a fresh, empty database for one test.
//!
//! By default that is a SQLite file in the test's own directory. When
//! `CENTRALITA_TEST_DATABASE_URL` names a PostgreSQL server (an admin URL
//! such as `postgres://postgres@127.0.0.1:5433/postgres`, as `.ci/run` sets
//! for its second pass), a new uniquely named database is created on that
//! server instead, so the same test runs against PostgreSQL. The throwaway
//! cluster is removed with everything in it when the run ends.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection;

/// The variable that switches the test suite to PostgreSQL.
pub const TEST_DATABASE_ENV: &str = "CENTRALITA_TEST_DATABASE_URL";

/// Which database the tests of this run use.
pub fn postgres_admin_url() -> Option<String> {
    std::env::var(TEST_DATABASE_ENV)
        .ok()
        .filter(|url| url.starts_with("postgres://") || url.starts_with("postgresql://"))
}

/// A URL for a fresh database: `sqlite://{dir}/centralita.db`, or a new
/// database on the PostgreSQL server of `CENTRALITA_TEST_DATABASE_URL`.
///
/// Callable from synchronous and asynchronous tests alike (the database is
/// created on a thread of its own). Panics when the server cannot be used:
/// a test run that asked for PostgreSQL must not quietly test SQLite.
pub fn fresh_database_url(dir: &Path) -> String {
    match postgres_admin_url() {
        None => format!("sqlite://{}", dir.join("centralita.db").display()),
        Some(admin) => {
            let name = unique_name();
            let url = with_database(&admin, &name);
            let created = std::thread::spawn(move || create_database(&admin, &name))
                .join()
                .unwrap_or_else(|_| Err("the database-creating thread panicked".to_string()));
            if let Err(e) = created {
                panic!("{TEST_DATABASE_ENV}: cannot create a test database: {e}");
            }
            url
        }
    }
}

/// The URL of the test database that belongs to the directory `dir`, the
/// same on every call in this process (restart tests reopen it):
/// `sqlite://{dir}/centralita.db`, or a PostgreSQL database created on first
/// use. Nothing is written into `dir` (tests check what a command created).
pub fn database_url(dir: &Path) -> String {
    if postgres_admin_url().is_none() {
        return fresh_database_url(dir);
    }
    static BY_DIR: Mutex<Option<HashMap<PathBuf, String>>> = Mutex::new(None);
    let mut by_dir = BY_DIR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    by_dir
        .get_or_insert_with(HashMap::new)
        .entry(dir.to_path_buf())
        .or_insert_with(|| fresh_database_url(dir))
        .clone()
}

/// Runs one statement of a test's own (moving a session's expiry into the
/// past, say) and returns the rows it touched, so that tests in other
/// crates need no database driver of their own.
pub async fn execute(db: &crate::Db, sql: &'static str) -> Result<u64, crate::DbError> {
    let done = sqlx::query(sql).execute(db.pool()).await?;
    Ok(done.rows_affected())
}

fn unique_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "t_{}_{}_{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// `admin` with its database path replaced by `name` (query kept).
fn with_database(admin: &str, name: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut url = format!("{}/{name}", &base[..host_end]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

fn create_database(admin: &str, name: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let mut conn = sqlx::PgConnection::connect(admin)
            .await
            .map_err(|e| format!("connect {admin}: {e}"))?;
        // `name` is ours (letters, digits, underscores), safe to splice.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        conn.close().await.map_err(|e| e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_name_replaces_the_path_and_keeps_the_query() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5433/postgres", "t_1"),
            "postgres://u@127.0.0.1:5433/t_1"
        );
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5433", "t_2"),
            "postgres://u@127.0.0.1:5433/t_2"
        );
        assert_eq!(
            with_database("postgresql://u@%2Ftmp%2Fpg/postgres?sslmode=disable", "t_3"),
            "postgresql://u@%2Ftmp%2Fpg/t_3?sslmode=disable"
        );
    }
}
