//! Opening a real database (SQLite, or PostgreSQL when
//! `CENTRALITA_TEST_DATABASE_URL` names a server): pragmas, migrations,
//! constraints, the batch writes.

use sqlx::Connection;
use store::{Backend, Db};

/// A fresh database of this run's kind (see `store::testing`).
async fn open(dir: &tempfile::TempDir) -> Db {
    let url = store::testing::fresh_database_url(dir.path());
    Db::open(&url).await.expect("open")
}

async fn open_sqlite(dir: &tempfile::TempDir) -> Db {
    Db::open(&format!(
        "sqlite://{}",
        dir.path().join("sub/dir/s.db").display()
    ))
    .await
    .expect("open")
}

/// SQLite's own settings: on every run, whichever database the rest uses.
#[tokio::test]
async fn creates_the_file_with_wal_and_foreign_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open_sqlite(&dir).await;
    assert_eq!(db.backend(), Backend::Sqlite);
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
    assert_eq!(timeout, 10_000);
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(db.pool())
        .await
        .expect("pragma");
    assert_eq!(sync, 1, "NORMAL");
    db.close().await;
    // reopening applies no migration twice
    let db = open_sqlite(&dir).await;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(db.pool())
        .await
        .expect("count");
    assert_eq!(n, migration_count(), "every migration, once each");
}

/// Both databases: the migrations apply once, and the pool reports its use.
#[tokio::test]
async fn reopening_applies_no_migration_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = store::testing::fresh_database_url(dir.path());
    let db = Db::open(&url).await.expect("open");
    let expected = match store::testing::postgres_admin_url() {
        Some(_) => Backend::Postgres,
        None => Backend::Sqlite,
    };
    assert_eq!(db.backend(), expected);
    let (size, idle) = db.pool_stats();
    assert!(size >= 1 && idle <= size, "{size} {idle}");
    db.close().await;
    let db = Db::open(&url).await.expect("reopen");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(db.pool())
        .await
        .expect("count");
    assert_eq!(n, migration_count(), "every migration, once each");
    assert!(db.migrate().await.expect("migrate").is_empty());
    db.close().await;
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
    // What the domain asks before writing: taken, ignoring ASCII case.
    assert_eq!(
        store::users::taken(&mut tx, Some("A"), None, None)
            .await
            .expect("taken"),
        Some("login")
    );
    assert_eq!(
        store::users::taken(&mut tx, Some("A"), None, Some(id))
            .await
            .expect("taken"),
        None,
        "a user's own login is not taken"
    );
    assert!(store::users::exists_login(&mut tx, "A").await.expect("q"));
    let found = store::users::credentials(&mut tx, "A").await.expect("q");
    assert_eq!(found.map(|(i, _, active)| (i, active)), Some((id, true)));
    // A statement that fails aborts a PostgreSQL transaction: each runs in
    // a savepoint of its own (dropped, it rolls back).
    let mut sp = tx.begin().await.expect("savepoint");
    let err = store::users::insert(
        &mut sp,
        &store::users::NewUser {
            login: Some("A"),
            ..u.clone()
        },
        1,
    )
    .await
    .expect_err("duplicate login (case-insensitive)");
    drop(sp);
    let column = store::unique_violation(&err).expect("unique").column;
    match db.backend() {
        // Named by its constraint.
        Backend::Postgres => assert_eq!(column, Some("users.login")),
        // SQLite names no constraint; only its message does, not read.
        Backend::Sqlite => assert_eq!(column, None),
    }
    let mut sp = tx.begin().await.expect("savepoint");
    let err = store::users::insert(
        &mut sp,
        &store::users::NewUser {
            login: None,
            ..u.clone()
        },
        1,
    )
    .await
    .expect_err("no login and no email");
    drop(sp);
    assert!(store::check_violation(&err));
    assert!(store::unique_violation(&err).is_none());
    let mut sp = tx.begin().await.expect("savepoint");
    let err = store::users::insert(
        &mut sp,
        &store::users::NewUser {
            login: Some("b"),
            role: "god",
            ..u.clone()
        },
        1,
    )
    .await
    .expect_err("bad role");
    drop(sp);
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
    let mut sp = tx.begin().await.expect("savepoint");
    let err = store::sip_accounts::insert(&mut sp, &acct, 1)
        .await
        .expect_err("second account of the user");
    drop(sp);
    assert!(store::unique_violation(&err).is_some());
    if db.backend() == Backend::Postgres {
        assert_eq!(
            store::unique_violation(&err).and_then(|v| v.column),
            Some("sip_accounts.user_id")
        );
    }
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
    let mut sp = tx.begin().await.expect("savepoint");
    let err = store::registrations::upsert(&mut sp, &reg)
        .await
        .expect_err("unknown username");
    drop(sp);
    assert!(err.is_foreign_key_violation(), "{err}");
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

fn call(id: &str, start: i64) -> store::calls::SaveCall<'_> {
    store::calls::SaveCall {
        call_id: id,
        direction: "internal",
        caller_number: "1000",
        callee_number: "1001",
        agent_id: None,
        callee_agent_id: None,
        start_time: start,
        answer_time: None,
        end_time: None,
        duration: 0,
        billsec: 0,
        disposition: None,
        hangup_cause: None,
    }
}

fn leg(call_id: &str, leg_no: i64, created_at: i64) -> store::call_legs::LegRow {
    store::call_legs::LegRow {
        call_id: call_id.into(),
        leg_no,
        party_number: "1001".into(),
        agent_id: None,
        transport: "udp".into(),
        created_at,
        ringing_at: None,
        answered_at: None,
        ended_at: None,
        end_cause: None,
        sip_code: None,
    }
}

/// Saving whole rows: new rows are inserted, open rows take the new answer
/// and end values, closed rows never change; legs belong to a call and go
/// with it; the migration's named constraints hold.
#[tokio::test]
async fn calls_and_legs_save_as_whole_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(&dir).await;
    let mut tx = db.write().await.expect("tx");
    let calls = |ids: &[&'static str]| ids.iter().map(|id| call(id, 1_000)).collect::<Vec<_>>();
    assert_eq!(
        store::calls::save(&mut tx, &calls(&["a", "b"]), 5)
            .await
            .expect("insert"),
        2
    );
    let closed = store::calls::SaveCall {
        answer_time: Some(2_000),
        end_time: Some(9_000),
        duration: 8,
        billsec: 7,
        disposition: Some("ANSWERED"),
        hangup_cause: Some("caller_bye"),
        ..call("a", 1_000)
    };
    // A second start of "b" with another start time does not move it.
    let moved = call("b", 4_000);
    assert_eq!(
        store::calls::save(&mut tx, &[closed.clone(), moved], 6)
            .await
            .expect("update"),
        2
    );
    let a = store::calls::get(&mut tx, "a")
        .await
        .expect("q")
        .expect("a");
    assert_eq!(
        (a.end_time, a.duration, a.billsec, a.disposition.as_deref()),
        (Some(9_000), 8, 7, Some("ANSWERED"))
    );
    let b = store::calls::get(&mut tx, "b")
        .await
        .expect("q")
        .expect("b");
    assert_eq!(b.start_time, 1_000);
    // A closed row is final.
    let reopened = store::calls::SaveCall {
        end_time: None,
        disposition: None,
        ..closed
    };
    assert_eq!(
        store::calls::save(&mut tx, &[reopened], 7)
            .await
            .expect("no-op"),
        0
    );
    let a = store::calls::get(&mut tx, "a")
        .await
        .expect("q")
        .expect("a");
    assert_eq!(a.end_time, Some(9_000));
    let found = store::calls::by_call_ids(&mut tx, &["b", "nobody", "a"])
        .await
        .expect("by ids");
    let mut ids: Vec<_> = found.iter().map(|c| c.call_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["a", "b"]);

    // Legs: insert, update while open, final once ended.
    let mut l1 = leg("b", 1, 1_100);
    store::call_legs::upsert(&mut tx, &[leg("b", 0, 1_000), l1.clone()])
        .await
        .expect("legs");
    l1.ringing_at = Some(1_200);
    l1.ended_at = Some(1_500);
    l1.end_cause = Some("busy".into());
    l1.sip_code = Some(486);
    assert_eq!(
        store::call_legs::upsert(&mut tx, std::slice::from_ref(&l1))
            .await
            .expect("update"),
        1
    );
    let mut late = l1.clone();
    late.end_cause = Some("failed".into());
    assert_eq!(
        store::call_legs::upsert(&mut tx, &[late])
            .await
            .expect("no-op"),
        0
    );
    let legs = store::call_legs::for_call(&mut tx, "b").await.expect("q");
    assert_eq!(legs.len(), 2);
    assert_eq!(legs[1], l1);
    assert_eq!(
        store::call_legs::for_calls(&mut tx, &["a", "b"])
            .await
            .expect("q")
            .len(),
        2
    );

    // A leg without its call, a negative leg number, an impossible SIP
    // code and an end before the start are refused.
    let bad = [
        leg("nobody", 0, 1),
        leg("b", -1, 1),
        store::call_legs::LegRow {
            sip_code: Some(42),
            ..leg("b", 5, 1)
        },
        store::call_legs::LegRow {
            ended_at: Some(0),
            ..leg("b", 6, 1)
        },
    ];
    for (i, row) in bad.iter().enumerate() {
        let mut sp = tx.begin().await.expect("savepoint");
        let err = store::call_legs::upsert(&mut sp, std::slice::from_ref(row))
            .await
            .expect_err("refused");
        drop(sp);
        assert!(
            err.is_foreign_key_violation() || store::check_violation(&err),
            "row {i}: {err}"
        );
    }

    // Orphan legs close at `now`, never before they were created.
    store::call_legs::upsert(&mut tx, &[leg("a", 0, 1_000), leg("a", 1, 50_000)])
        .await
        .expect("legs");
    assert_eq!(
        store::call_legs::close_open(&mut tx, "server restart", 10_000)
            .await
            .expect("close"),
        3
    );
    // (Each failed statement rolled back only its savepoint: the
    // transaction goes on.)
    let mut ends: Vec<_> = store::call_legs::for_calls(&mut tx, &["a", "b"])
        .await
        .expect("q")
        .into_iter()
        .map(|l| (l.call_id, l.leg_no, l.ended_at, l.end_cause))
        .collect();
    ends.sort();
    assert_eq!(
        ends,
        [
            ("a".into(), 0, Some(10_000), Some("server restart".into())),
            ("a".into(), 1, Some(50_000), Some("server restart".into())),
            ("b".into(), 0, Some(10_000), Some("server restart".into())),
            ("b".into(), 1, Some(1_500), Some("busy".into())),
        ]
    );
    // Deleting a call deletes its legs.
    sqlx::query("DELETE FROM calls WHERE call_id = 'b'")
        .execute(&mut *tx)
        .await
        .expect("delete");
    assert!(store::call_legs::for_call(&mut tx, "b")
        .await
        .expect("q")
        .is_empty());
    tx.commit().await.expect("commit");
}

/// Many bindings and registration states in a few statements: each row
/// lands, a repeated (username, contact) keeps its last values, other
/// accounts are untouched.
#[tokio::test]
async fn registrations_and_states_are_written_in_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(&dir).await;
    let mut tx = db.write().await.expect("tx");
    let n = 1_200; // more than one multi-row statement
    for i in 0..n {
        let login = format!("u{i}");
        let id = store::users::insert(
            &mut tx,
            &store::users::NewUser {
                name: "U",
                login: Some(&login),
                email: None,
                phone: None,
                role: "agent",
                password_hash: "x",
                active: true,
            },
            1,
        )
        .await
        .expect("user");
        let ext = format!("{}", 1000 + i);
        store::sip_accounts::insert(
            &mut tx,
            &store::sip_accounts::NewSipAccount {
                user_id: id,
                username: &login,
                extension: &ext,
                ha1_md5: "m",
                ha1_sha256: "s",
            },
            1,
        )
        .await
        .expect("account");
    }
    let reg = |i: usize, cseq: i64| store::registrations::RegistrationRow {
        username: format!("u{i}"),
        contact: format!("sip:u{i}@127.0.0.1:5062"),
        transport: "udp".into(),
        source: "127.0.0.1:5062".into(),
        user_agent: Some("ua".into()),
        instance_id: None,
        reg_id: None,
        call_id: format!("c{i}"),
        cseq,
        expires_at: 10_000,
        registered_at: 1,
    };
    // Every account but the last once, then account 0 again with a later CSeq.
    let mut rows: Vec<_> = (0..n - 1).map(|i| reg(i, 1)).collect();
    rows.push(reg(0, 7));
    store::registrations::upsert_many(&mut tx, &rows)
        .await
        .expect("upsert_many");
    let saved = store::registrations::unexpired(&mut tx, 0)
        .await
        .expect("load");
    assert_eq!(saved.len(), n - 1);
    let first = saved.iter().find(|r| r.username == "u0").expect("u0");
    assert_eq!(first.cseq, 7, "the last row for a binding wins");

    let names: Vec<String> = (0..n - 1).map(|i| format!("u{i}")).collect();
    let states: Vec<_> = names
        .iter()
        .map(|u| store::sip_accounts::RegistrationStateRow {
            username: u,
            registered: true,
            user_agent: Some("phone/1"),
            ip: Some("127.0.0.9"),
        })
        .collect();
    let changed = store::sip_accounts::set_registration_states(&mut tx, &states, 42)
        .await
        .expect("states");
    assert_eq!(changed, (n - 1) as u64);
    let a = store::sip_accounts::by_username(&mut tx, "u5")
        .await
        .expect("q")
        .expect("u5");
    assert!(a.registered);
    assert_eq!(a.last_registered_at, Some(42));
    assert_eq!(a.user_agent.as_deref(), Some("phone/1"));
    assert_eq!(a.ip_address.as_deref(), Some("127.0.0.9"));
    let last = format!("u{}", n - 1);
    let untouched = store::sip_accounts::by_username(&mut tx, &last)
        .await
        .expect("q")
        .expect("last");
    assert!(!untouched.registered);
    assert_eq!(untouched.last_registered_at, None);
    // Unregistering keeps the time of the last registration.
    let off = [store::sip_accounts::RegistrationStateRow {
        username: "u5",
        registered: false,
        user_agent: None,
        ip: None,
    }];
    store::sip_accounts::set_registration_states(&mut tx, &off, 50)
        .await
        .expect("off");
    let a = store::sip_accounts::by_username(&mut tx, "u5")
        .await
        .expect("q")
        .expect("u5");
    assert!(!a.registered);
    assert_eq!(a.last_registered_at, Some(42));
    assert_eq!(a.user_agent.as_deref(), Some("phone/1"));
    tx.commit().await.expect("commit");
}

/// How many migrations there are (the same on both databases:
/// `tests/schema.rs`).
fn migration_count() -> i64 {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let n = std::fs::read_dir(dir).expect("migrations dir").count();
    i64::try_from(n).expect("a few files")
}

/// Quality rows: one per (call, leg, direction), the latest by event time
/// wins (a replayed older row changes nothing), a row needs its leg, the
/// named constraints hold; recordings attach to closed calls, newest wins.
#[tokio::test]
async fn quality_and_recordings() {
    use store::call_quality::QualityRow;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(&dir).await;
    let mut tx = db.write().await.expect("tx");
    let closed = store::calls::SaveCall {
        end_time: Some(9_000),
        duration: 8,
        disposition: Some("FAILED"),
        hangup_cause: Some("caller_bye"),
        ..call("q", 1_000)
    };
    store::calls::save(&mut tx, &[closed], 5)
        .await
        .expect("call");
    store::call_legs::upsert(&mut tx, &[leg("q", 0, 1_000), leg("q", 1, 1_000)])
        .await
        .expect("legs");
    let row = |leg_no: i64, direction: &str, at_ms: i64, mos: f64| QualityRow {
        call_id: "q".into(),
        leg_no,
        direction: direction.into(),
        at_ms,
        packets: 500,
        lost: 5,
        jitter_ms: 3.25,
        rtt_ms: Some(40.5),
        mos,
        codec: "PCMU".into(),
    };
    store::call_quality::upsert(
        &mut tx,
        &[
            row(0, "inbound", 10_000, 4.2),
            row(1, "outbound", 10_000, 3.9),
        ],
    )
    .await
    .expect("insert");
    // Newer replaces, older does not.
    assert_eq!(
        store::call_quality::upsert(&mut tx, &[row(0, "inbound", 11_000, 4.0)])
            .await
            .expect("newer"),
        1
    );
    assert_eq!(
        store::call_quality::upsert(&mut tx, &[row(0, "inbound", 10_500, 1.5)])
            .await
            .expect("older"),
        0
    );
    let got = store::call_quality::for_calls(&mut tx, &["q", "nobody"])
        .await
        .expect("read");
    assert_eq!(
        got,
        [
            row(0, "inbound", 11_000, 4.0),
            row(1, "outbound", 10_000, 3.9)
        ]
    );
    let no_rtt = QualityRow {
        rtt_ms: None,
        ..row(1, "inbound", 1, 4.4)
    };
    store::call_quality::upsert(&mut tx, std::slice::from_ref(&no_rtt))
        .await
        .expect("no rtt");
    let got = store::call_quality::for_calls(&mut tx, &["q"])
        .await
        .expect("read");
    assert_eq!(got[1], no_rtt);

    for bad in [
        row(7, "inbound", 1, 4.0),
        row(0, "sideways", 1, 4.0),
        row(0, "outbound", 1, 0.5),
        QualityRow {
            lost: -1,
            ..row(0, "outbound", 1, 4.0)
        },
    ] {
        let mut sp = tx.begin().await.expect("savepoint");
        let err = store::call_quality::upsert(&mut sp, std::slice::from_ref(&bad))
            .await
            .expect_err("refused");
        drop(sp);
        assert!(
            err.is_foreign_key_violation() || store::check_violation(&err),
            "{bad:?}: {err}"
        );
    }

    let rec = |at: i64, path: &'static str| store::calls::SaveRecording {
        call_id: "q",
        at,
        path,
        bytes: 1_044,
        duration_ms: 1_000,
        dropped_frames: 3,
    };
    assert_eq!(
        store::calls::save_recordings(&mut tx, &[rec(10_000, "q.wav")], 7)
            .await
            .expect("set"),
        1
    );
    assert_eq!(
        store::calls::save_recordings(&mut tx, &[rec(9_000, "old.wav")], 8)
            .await
            .expect("older"),
        0
    );
    let c = store::calls::get(&mut tx, "q")
        .await
        .expect("q")
        .expect("row");
    assert_eq!(
        (
            c.recording_path.as_deref(),
            c.recording_bytes,
            c.recording_duration_ms,
            c.recording_dropped_frames,
            c.end_time
        ),
        (
            Some("q.wav"),
            Some(1_044),
            Some(1_000),
            Some(3),
            Some(9_000)
        )
    );
}
