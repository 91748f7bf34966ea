//! The two migration sets describe the same schema: the same migration
//! files, tables, columns and nullability on SQLite and PostgreSQL.
//!
//! The SQLite side is always migrated for real. The PostgreSQL side is
//! migrated on the server of `CENTRALITA_TEST_DATABASE_URL` when it is set
//! (CI's second pass) and read back from `information_schema`; without a
//! server, its migration files are still read and their `CREATE TABLE`
//! statements compared column by column.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use store::{Backend, Db};

/// (table, column, NOT NULL)
type Columns = BTreeSet<(String, String, bool)>;

fn migrations(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(kind)
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("migrations dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn sqlite_columns(dir: &tempfile::TempDir) -> Columns {
    let url = format!("sqlite://{}", dir.path().join("schema.db").display());
    let db = Db::open(&url).await.expect("migrate SQLite");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(db.pool())
    .await
    .expect("tables");
    let mut out = Columns::new();
    for t in tables {
        let cols: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT name, \"notnull\", pk FROM pragma_table_info($1)")
                .bind(&t)
                .fetch_all(db.pool())
                .await
                .expect("columns");
        for (name, notnull, pk) in cols {
            // A primary key column is NOT NULL on PostgreSQL; SQLite's
            // table_info only flags an explicit NOT NULL.
            out.insert((t.clone(), name, notnull != 0 || pk != 0));
        }
    }
    db.close().await;
    out
}

async fn postgres_columns(url: &str) -> Columns {
    let db = Db::open(url).await.expect("migrate PostgreSQL");
    assert_eq!(db.backend(), Backend::Postgres);
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT), CAST(is_nullable AS TEXT) \
         FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(db.pool())
    .await
    .expect("columns");
    db.close().await;
    rows.into_iter()
        .map(|(t, c, nullable)| (t, c, nullable == "NO"))
        .collect()
}

/// The columns the `CREATE TABLE` statements of PostgreSQL migration files
/// declare (the files are ours: one column or constraint per line).
fn declared_columns(dir: &Path) -> Columns {
    let mut out = Columns::new();
    for name in file_names(dir) {
        let sql = std::fs::read_to_string(dir.join(&name)).expect("read migration");
        let mut table: Option<String> = None;
        for line in sql.lines() {
            let line = line.split("--").next().unwrap_or("").trim();
            // `ALTER TABLE t ADD COLUMN c type ...;` (one per line).
            if let Some(rest) = line.strip_prefix("ALTER TABLE ") {
                let words: Vec<&str> = rest.split_whitespace().collect();
                if let [t, "ADD", "COLUMN", c, ..] = words.as_slice() {
                    let not_null = line.to_ascii_uppercase().contains("NOT NULL");
                    out.insert((t.to_string(), c.to_string(), not_null));
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("CREATE TABLE ") {
                table = rest.split_whitespace().next().map(str::to_string);
                continue;
            }
            let Some(t) = &table else { continue };
            if line.starts_with(')') {
                table = None;
                continue;
            }
            let first = line.split_whitespace().next().unwrap_or("");
            if first.is_empty()
                || matches!(
                    first,
                    "CONSTRAINT" | "PRIMARY" | "UNIQUE" | "CHECK" | "FOREIGN" | "REFERENCES"
                )
                || line.starts_with("CHECK")
            {
                continue;
            }
            let upper = line.to_ascii_uppercase();
            // An identity column is NOT NULL without saying so.
            let not_null = upper.contains("NOT NULL") || upper.contains("AS IDENTITY");
            out.insert((t.clone(), first.to_string(), not_null));
        }
    }
    out
}

fn difference(a: &Columns, b: &Columns) -> Vec<String> {
    a.symmetric_difference(b)
        .map(|(t, c, nn)| {
            let side = if a.contains(&(t.clone(), c.clone(), *nn)) {
                "SQLite"
            } else {
                "PostgreSQL"
            };
            format!("{side}: {t}.{c} not null={nn}")
        })
        .collect()
}

#[test]
fn migration_files_match_one_for_one() {
    let sqlite = file_names(&migrations("sqlite"));
    let postgres = file_names(&migrations("postgres"));
    assert!(!sqlite.is_empty());
    assert_eq!(
        sqlite, postgres,
        "migrations/sqlite and migrations/postgres must have the same files"
    );
}

#[tokio::test]
async fn both_databases_have_the_same_tables_and_columns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = sqlite_columns(&dir).await;
    assert!(sqlite.contains(&("users".into(), "login".into(), false)));
    assert!(sqlite.contains(&("call_legs".into(), "leg_no".into(), true)));
    assert!(sqlite.contains(&("call_quality".into(), "mos".into(), true)));
    assert!(sqlite.contains(&("calls".into(), "recording_path".into(), false)));
    assert!(sqlite.contains(&("users".into(), "record_calls".into(), false)));

    let declared = declared_columns(&migrations("postgres"));
    let diff = difference(&sqlite, &declared);
    assert!(
        diff.is_empty(),
        "the PostgreSQL migration files declare another schema:\n{}",
        diff.join("\n")
    );

    match store::testing::postgres_admin_url() {
        Some(_) => {
            let url = store::testing::fresh_database_url(dir.path());
            let live = postgres_columns(&url).await;
            let diff = difference(&sqlite, &live);
            assert!(
                diff.is_empty(),
                "the migrated PostgreSQL schema differs from SQLite's:\n{}",
                diff.join("\n")
            );
        }
        None => eprintln!(
            "{} not set: PostgreSQL schema compared from its migration files only",
            store::testing::TEST_DATABASE_ENV
        ),
    }
}
