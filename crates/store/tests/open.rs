//! Opening a real SQLite file: pragmas, migrations, constraints.

use store::Db;

async fn open(dir: &tempfile::TempDir) -> Db {
    Db::open(&format!(
        "sqlite://{}",
        dir.path().join("sub/dir/s.db").display()
    ))
    .await
    .expect("open")
}

#[tokio::test]
async fn creates_the_file_with_wal_and_foreign_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(&dir).await;
    assert!(
        dir.path().join("sub/dir/s.db").exists(),
        "parent directories and file created"
    );
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(db.pool())
        .await
        .expect("pragma");
    assert_eq!(mode, "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(db.pool())
        .await
        .expect("pragma");
    assert_eq!(fk, 1);
    let timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(db.pool())
        .await
        .expect("pragma");
    assert!(timeout >= 1000);
    db.close().await;
    // reopening applies no migration twice
    let db = open(&dir).await;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(db.pool())
        .await
        .expect("count");
    assert_eq!(n, 1);
}

#[tokio::test]
async fn constraints_guard_the_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(&dir).await;
    let mut tx = db.write().await.expect("tx");
    let u = store::users::NewUser {
        name: "A",
        login: Some("a"),
        email: None,
        phone: None,
        role: "agent",
        password_hash: "x",
        active: true,
    };
    let id = store::users::insert(&mut tx, &u, 1).await.expect("insert");
    let err = store::users::insert(
        &mut tx,
        &store::users::NewUser {
            login: Some("A"),
            ..u.clone()
        },
        1,
    )
    .await
    .expect_err("duplicate login (case-insensitive)");
    assert_eq!(
        store::unique_violation(&err).as_deref(),
        Some("users.login")
    );
    let err = store::users::insert(
        &mut tx,
        &store::users::NewUser {
            login: None,
            ..u.clone()
        },
        1,
    )
    .await
    .expect_err("no login and no email");
    assert!(store::check_violation(&err));
    let err = store::users::insert(
        &mut tx,
        &store::users::NewUser {
            login: Some("b"),
            role: "god",
            ..u.clone()
        },
        1,
    )
    .await
    .expect_err("bad role");
    assert!(store::check_violation(&err));
    let acct = store::sip_accounts::NewSipAccount {
        user_id: id,
        username: "a",
        extension: "1000",
        ha1_md5: "m",
        ha1_sha256: "s",
    };
    store::sip_accounts::insert(&mut tx, &acct, 1)
        .await
        .expect("account");
    assert_eq!(
        store::sip_accounts::next_extension(&mut tx, 1000)
            .await
            .expect("next"),
        1001
    );
    assert_eq!(
        store::sip_accounts::next_extension(&mut tx, 5000)
            .await
            .expect("next"),
        5000
    );
    // a registration for an unknown username violates the foreign key
    let reg = store::registrations::RegistrationRow {
        username: "ghost".into(),
        contact: "sip:ghost@127.0.0.1".into(),
        transport: "udp".into(),
        source: "127.0.0.1:5060".into(),
        user_agent: None,
        instance_id: None,
        reg_id: None,
        call_id: "c".into(),
        cseq: 1,
        expires_at: 10,
        registered_at: 1,
    };
    assert!(store::registrations::upsert(&mut tx, &reg).await.is_err());
    // deleting the user cascades to the account
    assert!(store::users::delete(&mut tx, id).await.expect("delete"));
    assert!(store::sip_accounts::by_username(&mut tx, "a")
        .await
        .expect("q")
        .is_none());
    tx.commit().await.expect("commit");
}

#[test]
fn like_patterns_escape_wildcards() {
    assert_eq!(store::like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
}
