//! What an operator runs beside the server: checking a database URL before
//! anything is opened, applying migrations on their own, an online copy of
//! a live database, and the readiness probe.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;

use crate::{Db, StoreError, MIGRATOR};

/// A database URL this build can open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// An SQLite database file (created if missing).
    Sqlite { path: PathBuf },
}

impl DbUrl {
    /// Checks `url` without touching the file system beyond reading what
    /// exists: the scheme must be one this build supports (only `sqlite:`
    /// today) and the path must not be a directory. It never reinterprets
    /// an unknown URL as something else: `postgres://host/db` used to become
    /// an SQLite file named after the URL.
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
            Some("postgres" | "postgresql") => {
                return Err(StoreError::Url(format!(
                    "{url}: PostgreSQL is not supported yet; this build stores its data in \
                     SQLite only (sqlite://PATH, or leave the database URL unset for \
                     <data_dir>/centralita.db)"
                )))
            }
            Some("mysql" | "mariadb") => {
                return Err(StoreError::Url(format!(
                    "{url}: MySQL/MariaDB is not supported; use sqlite://PATH"
                )))
            }
            Some(s) if valid_scheme => {
                return Err(StoreError::Url(format!(
                    "{url}: unknown database scheme {s:?}; use sqlite://PATH"
                )))
            }
            _ => {
                return Err(StoreError::Url(format!(
                    "{url:?} is not a database URL; use sqlite://PATH"
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

    /// The database file.
    pub fn path(&self) -> &Path {
        match self {
            Self::Sqlite { path } => path,
        }
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
        DbUrl::parse(url)?;
        Self::connect(url).await
    }

    /// Applies the pending migrations; returns those it applied (none when
    /// the schema was current).
    pub async fn migrate(&self) -> Result<Vec<Applied>, StoreError> {
        let done: Vec<i64> = match sqlx::query_scalar::<_, i64>(
            "SELECT version FROM _sqlx_migrations WHERE success = 1",
        )
        .fetch_all(self.pool())
        .await
        {
            Ok(v) => v,
            // A new database has no migrations table yet.
            Err(sqlx::Error::Database(e)) if e.message().contains("no such table") => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        MIGRATOR.run(self.pool()).await?;
        Ok(MIGRATOR
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
        let done: Vec<i64> =
            sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations WHERE success = 1")
                .fetch_all(self.pool())
                .await
                .unwrap_or_default();
        Ok(MIGRATOR
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

    /// Writes a consistent copy of the live database to `dest` (SQLite
    /// `VACUUM INTO`: one read transaction, so concurrent writers go on and
    /// the copy is the database as of one moment, compacted). Refuses to
    /// overwrite an existing file.
    pub async fn backup_to(&self, dest: &Path) -> Result<(), StoreError> {
        if dest.exists() {
            return Err(StoreError::Url(format!(
                "{} exists; a backup never overwrites a file",
                dest.display()
            )));
        }
        let dest = dest
            .to_str()
            .ok_or_else(|| StoreError::Url(format!("{}: not UTF-8", dest.display())))?;
        sqlx::query("VACUUM INTO ?")
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
    fn only_sqlite_urls_are_accepted() {
        assert!(refused("postgres://postgres@127.0.0.1/centralita")
            .contains("PostgreSQL is not supported yet"));
        assert!(refused("postgresql://u@h/db").contains("PostgreSQL is not supported yet"));
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
        assert_eq!(ok.path(), dir.path().join("new/c.db"));
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
