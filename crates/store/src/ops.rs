//! What an operator runs beside the server: checking a database URL before
//! anything is opened, applying migrations on their own, an online copy of
//! a live database, and the readiness probe.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

use crate::{Backend, Db, StoreError};

/// A database URL this build can open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// An SQLite database file (created if missing).
    Sqlite { path: PathBuf },
    /// A database on a PostgreSQL server (`postgres://` or
    /// `postgresql://`); it must exist.
    Postgres { url: String },
}

const USE: &str = "use sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE";

impl DbUrl {
    /// Checks `url` without touching the file system beyond reading what
    /// exists: the scheme must be one this build supports (`sqlite:`,
    /// `postgres:`, `postgresql:`) and an SQLite path must not be a
    /// directory. It never reinterprets an unknown URL as something else:
    /// `mysql://host/db` is refused, not taken for a file name.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let url = url.trim();
        let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
        let valid_scheme = scheme.as_deref().is_some_and(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        });
        match scheme.as_deref() {
            Some("sqlite") => {}
            Some("postgres" | "postgresql") => return Self::parse_postgres(url),
            Some("mysql" | "mariadb") => {
                return Err(StoreError::Url(format!(
                    "{url}: MySQL/MariaDB is not supported; {USE}"
                )))
            }
            Some(s) if valid_scheme => {
                return Err(StoreError::Url(format!(
                    "{url}: unknown database scheme {s:?}; {USE}"
                )))
            }
            _ => {
                return Err(StoreError::Url(format!(
                    "{url:?} is not a database URL; {USE}"
                )))
            }
        }
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Url(format!("{url}: {e}")))?;
        let path = opts.get_filename().to_path_buf();
        let shown = path.display().to_string();
        if shown.is_empty() || shown == ":memory:" || url.contains(":memory:") {
            // Each pooled connection would get its own empty database.
            return Err(StoreError::Url(format!(
                "{url}: an in-memory database loses everything at exit; give a file path \
                 (sqlite://PATH)"
            )));
        }
        if path.is_dir() {
            return Err(StoreError::Url(format!(
                "{url}: {shown} is a directory, not a database file"
            )));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            // An ancestor that exists but is a file: create_dir_all would
            // fail later with a less helpful message.
            if let Some(file) = parent.ancestors().find(|a| a.is_file()) {
                return Err(StoreError::Url(format!(
                    "{url}: {} is a file, so the directory {} cannot be created",
                    file.display(),
                    parent.display()
                )));
            }
        }
        Ok(Self::Sqlite { path })
    }

    fn parse_postgres(url: &str) -> Result<Self, StoreError> {
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Url(format!("{}: {e}", redact(url))))?;
        if opts.get_database().is_none_or(str::is_empty) {
            return Err(StoreError::Url(format!(
                "{}: name the database (postgres://USER@HOST:PORT/DATABASE)",
                redact(url)
            )));
        }
        Ok(Self::Postgres {
            url: url.to_string(),
        })
    }

    /// The database file of an SQLite URL.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Sqlite { path } => Some(path),
            Self::Postgres { .. } => None,
        }
    }

    /// Which database this names.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite { .. } => Backend::Sqlite,
            Self::Postgres { .. } => Backend::Postgres,
        }
    }

    /// The URL as it may be shown or logged: a PostgreSQL password is
    /// replaced by `***`.
    pub fn redacted(&self) -> String {
        match self {
            Self::Sqlite { path } => format!("sqlite://{}", path.display()),
            Self::Postgres { url } => redact(url),
        }
    }
}

/// `url` with the password of its user info (if any) replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let authority_end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    let authority = &url[start..authority_end];
    match authority.rfind('@') {
        Some(at) => match authority[..at].split_once(':') {
            Some((user, _password)) => format!("{}{user}:***{}", &url[..start], &url[start + at..]),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// A migration applied by [`Db::migrate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: i64,
    pub description: String,
}

impl Db {
    /// Opens the database at `url` (checked with [`DbUrl::parse`]) without
    /// applying migrations: for `centralita migrate`, which reports them.
    pub async fn open_unmigrated(url: &str) -> Result<Self, StoreError> {
        let parsed = DbUrl::parse(url)?;
        Self::connect(&parsed, url).await
    }

    /// The versions recorded as applied (none on a new database, which has
    /// no migrations table yet).
    async fn applied_versions(&self) -> Result<Vec<i64>, StoreError> {
        let exists_sql = match self.backend() {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'"
            }
        };
        let exists: i64 = sqlx::query_scalar(exists_sql)
            .fetch_one(self.pool())
            .await?;
        if exists == 0 {
            return Ok(Vec::new());
        }
        Ok(
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// Applies the pending migrations; returns those it applied (none when
    /// the schema was current).
    pub async fn migrate(&self) -> Result<Vec<Applied>, StoreError> {
        let done = self.applied_versions().await?;
        let migrator = self.backend().migrator();
        migrator.run(self.pool()).await?;
        Ok(migrator
            .iter()
            .filter(|m| !done.contains(&m.version))
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| Applied {
                version: m.version,
                description: m.description.to_string(),
            })
            .collect())
    }

    /// The migrations this build knows and whether each is applied.
    pub async fn migration_status(&self) -> Result<Vec<(Applied, bool)>, StoreError> {
        let done = self.applied_versions().await?;
        Ok(self
            .backend()
            .migrator()
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| {
                (
                    Applied {
                        version: m.version,
                        description: m.description.to_string(),
                    },
                    done.contains(&m.version),
                )
            })
            .collect())
    }

    /// Writes a consistent copy of the live SQLite database to `dest`
    /// (`VACUUM INTO`: one read transaction, so concurrent writers go on
    /// and the copy is the database as of one moment, compacted). Refuses
    /// to overwrite an existing file. A PostgreSQL database is backed up
    /// with the server's own tools (`pg_dump`), and this says so.
    pub async fn backup_to(&self, dest: &Path) -> Result<(), StoreError> {
        if self.backend() == Backend::Postgres {
            return Err(StoreError::Url(POSTGRES_BACKUP.to_string()));
        }
        if dest.exists() {
            return Err(StoreError::Url(format!(
                "{} exists; a backup never overwrites a file",
                dest.display()
            )));
        }
        let dest = dest
            .to_str()
            .ok_or_else(|| StoreError::Url(format!("{}: not UTF-8", dest.display())))?;
        sqlx::query("VACUUM INTO $1")
            .bind(dest)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Whether the database answers a trivial query within `limit` (the
    /// readiness probe).
    pub async fn ping(&self, limit: Duration) -> Result<(), String> {
        match tokio::time::timeout(limit, sqlx::query("SELECT 1").execute(self.pool())).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
        }
    }
}

/// What `backup` says for a PostgreSQL database.
pub const POSTGRES_BACKUP: &str = "centralita backup copies SQLite databases only; back up a \
    PostgreSQL database with pg_dump (for example: pg_dump --format=custom --file=FILE \
    \"$CENTRALITA_DATABASE_URL\"), see docs/OPERATIONS.md";

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> String {
        match DbUrl::parse(url) {
            Err(StoreError::Url(m)) => m,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn only_sqlite_and_postgres_urls_are_accepted() {
        let pg = DbUrl::parse("postgres://postgres@127.0.0.1/centralita").expect("postgres");
        assert_eq!(pg.backend(), Backend::Postgres);
        assert!(pg.path().is_none());
        let pg = DbUrl::parse("postgresql://u:secret@h:5433/db?sslmode=disable").expect("pg");
        assert_eq!(
            pg.redacted(),
            "postgresql://u:***@h:5433/db?sslmode=disable"
        );
        assert!(refused("postgres://u:secret@h/").contains("name the database"));
        assert!(!refused("postgres://u:secret@h/").contains("secret"));
        assert!(refused("mysql://root@127.0.0.1/x").contains("MySQL"));
        assert!(refused("redis://x").contains("unknown database scheme"));
        assert!(refused("just a path").contains("not a database URL"));
        assert!(refused("/var/lib/centralita.db").contains("not a database URL"));
        assert!(refused("sqlite::memory:").contains("in-memory"));
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display();
        assert!(refused(&format!("sqlite://{d}")).contains("is a directory"));
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").expect("write");
        assert!(refused(&format!("sqlite://{}/sub/c.db", file.display())).contains("is a file"));
        let ok = DbUrl::parse(&format!("sqlite://{d}/new/c.db")).expect("ok");
        assert_eq!(ok.path(), Some(dir.path().join("new/c.db").as_path()));
        DbUrl::parse("sqlite:relative.db").expect("sqlite:PATH");
    }

    #[tokio::test]
    async fn migrate_reports_what_it_applied_then_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("m.db").display());
        let db = Db::open_unmigrated(&url).await.expect("open");
        let first = db.migrate().await.expect("migrate");
        assert!(!first.is_empty());
        assert_eq!(first[0].version, 1);
        assert!(db.migrate().await.expect("again").is_empty());
        assert!(db
            .migration_status()
            .await
            .expect("status")
            .iter()
            .all(|(_, applied)| *applied));
        db.close().await;
    }

    #[tokio::test]
    async fn backup_refuses_to_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("b.db").display());
        let db = Db::open(&url).await.expect("open");
        let dest = dir.path().join("copy.db");
        db.backup_to(&dest).await.expect("backup");
        assert!(dest.is_file());
        assert!(db.backup_to(&dest).await.is_err());
        db.ping(Duration::from_secs(1)).await.expect("ping");
        db.close().await;
        assert!(db.ping(Duration::from_secs(1)).await.is_err());
    }
}
