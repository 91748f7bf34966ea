//! `trunks` on a real database (an SQLite file, or PostgreSQL when
//! `CENTRALITA_TEST_DATABASE_URL` names a server): insert, read back,
//! update, list, live state, counters, constraints, delete.

use store::trunks::{self, ListFilter, TrunkValues};
use store::Db;

async fn open(dir: &tempfile::TempDir) -> Db {
    let url = store::testing::fresh_database_url(dir.path());
    Db::open(&url).await.expect("open")
}

fn values(name: &str) -> TrunkValues<'_> {
    TrunkValues {
        name,
        description: Some("main carrier"),
        provider: "twilio",
        kind: "nat_provider",
        host: "sip.example.test",
        port: 5060,
        transport: "udp",
        sends_auth: true,
        outbound_username: Some("AC123"),
        outbound_secret: Some("s3cret-out"),
        outbound_realm: None,
        accepts_auth: false,
        inbound_username: None,
        inbound_secret: None,
        inbound_match: "192.0.2.10,198.51.100.0/24",
        sends_registration: true,
        accepts_registrations: false,
        registration_server_uri: Some("sip:sip.example.test"),
        registration_client_uri: None,
        registration_expiry: 3600,
        registration_retry_interval: 60,
        registration_max_retries: 10,
        registration_forbidden_retry: 0,
        codecs: "pcmu,pcma,opus",
        dtmf_mode: "rfc4733",
        rtp_symmetric: true,
        force_rport: true,
        rewrite_contact: true,
        qualify_frequency: 60,
        media_address: None,
        session_timers: "yes",
        session_expires: 1800,
        session_min_se: 90,
        from_user: Some("+15551234567"),
        from_domain: None,
        pai: None,
        send_pai: false,
        trust_remote_party_id: false,
        max_channels: 20,
        priority: 1,
        status: "active",
        advanced_settings: "{\"x\":1}",
    }
}

#[tokio::test]
async fn a_trunk_is_written_read_updated_and_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(&dir).await;
    let mut tx = db.write().await.expect("tx");
    let id = trunks::insert(&mut tx, &values("Twilio Main"), 1_000)
        .await
        .expect("insert");
    tx.commit().await.expect("commit");

    let mut c = db.conn().await.expect("conn");
    let row = trunks::get(&mut c, id).await.expect("get").expect("row");
    assert_eq!(row.name, "Twilio Main");
    assert_eq!(row.description.as_deref(), Some("main carrier"));
    assert_eq!(
        (row.provider.as_str(), row.kind.as_str()),
        ("twilio", "nat_provider")
    );
    assert_eq!((row.host.as_str(), row.port), ("sip.example.test", 5060));
    assert!(row.sends_auth && row.sends_registration && row.rtp_symmetric);
    assert!(!row.accepts_auth && !row.accepts_registrations && !row.send_pai);
    assert_eq!(row.outbound_secret.as_deref(), Some("s3cret-out"));
    assert_eq!(row.inbound_match, "192.0.2.10,198.51.100.0/24");
    assert_eq!(row.codecs, "pcmu,pcma,opus");
    assert_eq!((row.max_channels, row.priority), (20, 1));
    assert_eq!(row.advanced_settings, "{\"x\":1}");
    // Defaults of the live state and counters.
    assert!(!row.registered);
    assert_eq!(row.last_registered_at, None);
    assert_eq!(
        (row.total_calls, row.successful_calls, row.failed_calls),
        (0, 0, 0)
    );
    assert_eq!((row.created_at, row.updated_at), (1_000, 1_000));
    // Debug never shows a secret.
    let shown = format!("{row:?}");
    assert!(!shown.contains("s3cret-out"), "{shown}");
    assert!(shown.contains("Twilio Main"), "{shown}");

    // Lookup by name ignores ASCII case, as the unique index does.
    let found = trunks::by_name(&mut c, "twilio MAIN")
        .await
        .expect("by name");
    assert_eq!(found.map(|r| r.id), Some(id));
    assert!(trunks::name_taken(&mut c, "TWILIO main", None)
        .await
        .expect("q"));
    assert!(!trunks::name_taken(&mut c, "Twilio Main", Some(id))
        .await
        .expect("q"));
    assert!(!trunks::name_taken(&mut c, "Other", None).await.expect("q"));
    drop(c);

    let mut tx = db.write().await.expect("tx");
    let mut v = values("Twilio Backup");
    v.outbound_secret = None;
    v.status = "maintenance";
    v.description = None;
    v.port = 5080;
    assert!(trunks::update(&mut tx, id, &v, 2_000)
        .await
        .expect("update"));
    assert!(!trunks::update(&mut tx, id + 100, &v, 2_000)
        .await
        .expect("update"));
    tx.commit().await.expect("commit");
    let mut c = db.conn().await.expect("conn");
    let row = trunks::get(&mut c, id).await.expect("get").expect("row");
    assert_eq!(row.name, "Twilio Backup");
    assert_eq!(row.outbound_secret, None);
    assert_eq!(row.description, None);
    assert_eq!((row.status.as_str(), row.port), ("maintenance", 5080));
    assert_eq!((row.created_at, row.updated_at), (1_000, 2_000));
    drop(c);

    let mut tx = db.write().await.expect("tx");
    assert!(trunks::delete(&mut tx, id).await.expect("delete"));
    assert!(!trunks::delete(&mut tx, id).await.expect("delete"));
    tx.commit().await.expect("commit");
    let mut c = db.conn().await.expect("conn");
    assert!(trunks::get(&mut c, id).await.expect("get").is_none());
    drop(c);
    db.close().await;
}

#[tokio::test]
async fn constraints_refuse_duplicates_and_values_out_of_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(&dir).await;
    let mut tx = db.write().await.expect("tx");
    trunks::insert(&mut tx, &values("Main"), 1)
        .await
        .expect("insert");
    tx.commit().await.expect("commit");

    // A duplicate name, in another case: a unique violation (named on
    // PostgreSQL), and nothing written.
    let mut tx = db.write().await.expect("tx");
    let err = trunks::insert(&mut tx, &values("MAIN"), 2)
        .await
        .expect_err("duplicate");
    let v = store::unique_violation(&err).expect("unique violation");
    if db.backend() == store::Backend::Postgres {
        assert_eq!(v.column, Some("trunks.name"));
    }
    drop(tx);

    // Each CHECK the domain relies on as a last guard.
    type Spoil = fn(&mut TrunkValues<'static>);
    let bad: [(&str, Spoil); 8] = [
        ("port 0", |v| v.port = 0),
        ("port 70000", |v| v.port = 70_000),
        ("status", |v| v.status = "broken"),
        ("kind", |v| v.kind = "cloud"),
        ("provider", |v| v.provider = "acme"),
        ("transport", |v| v.transport = "sctp"),
        ("max_channels", |v| v.max_channels = -1),
        ("priority", |v| v.priority = -5),
    ];
    for (what, spoil) in bad {
        let mut v = values("Spoilt");
        spoil(&mut v);
        let mut tx = db.write().await.expect("tx");
        let err = trunks::insert(&mut tx, &v, 3).await.expect_err(what);
        assert!(store::check_violation(&err), "{what}: {err}");
        drop(tx);
    }
    let mut c = db.conn().await.expect("conn");
    let (rows, total) = trunks::list(&mut c, &ListFilter::default(), "id", false, 50, 0)
        .await
        .expect("list");
    assert_eq!((rows.len(), total), (1, 1), "only the first trunk exists");
    drop(c);
    db.close().await;
}

#[tokio::test]
async fn listing_filters_orders_and_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(&dir).await;
    let mut tx = db.write().await.expect("tx");
    for (name, provider, kind, status, priority, host) in [
        (
            "Twilio A",
            "twilio",
            "nat_provider",
            "active",
            5,
            "a.example.test",
        ),
        (
            "Vonage B",
            "vonage",
            "nat_provider",
            "active",
            1,
            "b.example.test",
        ),
        ("Lan PBX", "custom", "pbx_lan", "inactive", 3, "192.0.2.7"),
        (
            "Backup 100%",
            "custom",
            "no_nat",
            "active",
            1,
            "c.example.test",
        ),
    ] {
        let mut v = values(name);
        v.provider = provider;
        v.kind = kind;
        v.status = status;
        v.priority = priority;
        v.host = host;
        trunks::insert(&mut tx, &v, 1).await.expect("insert");
    }
    tx.commit().await.expect("commit");
    let mut c = db.conn().await.expect("conn");
    let names = |rows: Vec<store::trunks::TrunkRow>| -> Vec<String> {
        rows.into_iter().map(|r| r.name).collect()
    };

    let (rows, total) = trunks::list(&mut c, &ListFilter::default(), "priority", false, 50, 0)
        .await
        .expect("list");
    assert_eq!(total, 4);
    assert_eq!(
        names(rows),
        ["Vonage B", "Backup 100%", "Lan PBX", "Twilio A"],
        "priority, then id"
    );

    let f = ListFilter {
        status: Some("active".into()),
        provider: Some("custom".into()),
        ..Default::default()
    };
    let (rows, total) = trunks::list(&mut c, &f, "id", false, 50, 0)
        .await
        .expect("list");
    assert_eq!((names(rows), total), (vec!["Backup 100%".to_string()], 1));

    // Search ignores ASCII case and takes `%` literally.
    let f = ListFilter {
        search: Some("100%".into()),
        ..Default::default()
    };
    let (rows, _) = trunks::list(&mut c, &f, "id", false, 50, 0)
        .await
        .expect("list");
    assert_eq!(names(rows), ["Backup 100%"]);
    let f = ListFilter {
        search: Some("EXAMPLE".into()),
        kind: Some("nat_provider".into()),
        ..Default::default()
    };
    let (rows, total) = trunks::list(&mut c, &f, "LOWER(name)", true, 1, 1)
        .await
        .expect("list");
    assert_eq!(total, 2, "the total ignores the page");
    assert_eq!(names(rows), ["Twilio A"], "second of [Vonage B, Twilio A]");

    let active: Vec<String> = trunks::active_by_priority(&mut c)
        .await
        .expect("active")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(active, ["Vonage B", "Backup 100%", "Twilio A"]);
    drop(c);
    db.close().await;
}

#[tokio::test]
async fn live_state_and_counters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(&dir).await;
    let mut tx = db.write().await.expect("tx");
    let id = trunks::insert(&mut tx, &values("Main"), 1)
        .await
        .expect("insert");
    // Refused first: the error is kept with its time.
    assert!(
        trunks::set_registration_state(&mut tx, id, false, Some("403 Forbidden"), 10)
            .await
            .expect("state")
    );
    // Then registered: the time is kept, the last error stays on record.
    assert!(trunks::set_registration_state(&mut tx, id, true, None, 20)
        .await
        .expect("state"));
    assert!(
        !trunks::set_registration_state(&mut tx, id + 1, true, None, 20)
            .await
            .expect("state")
    );
    for ok in [true, true, false] {
        assert!(trunks::count_call(&mut tx, id, ok).await.expect("count"));
    }
    assert!(!trunks::count_call(&mut tx, id + 1, true)
        .await
        .expect("count"));
    tx.commit().await.expect("commit");

    let mut c = db.conn().await.expect("conn");
    let row = trunks::get(&mut c, id).await.expect("get").expect("row");
    assert!(row.registered);
    assert_eq!(row.last_registered_at, Some(20));
    assert_eq!(row.last_error.as_deref(), Some("403 Forbidden"));
    assert_eq!(row.last_error_at, Some(10));
    assert_eq!(
        (row.total_calls, row.successful_calls, row.failed_calls),
        (3, 2, 1)
    );
    drop(c);

    // Unregistered without an error: the last registration time stays.
    let mut tx = db.write().await.expect("tx");
    trunks::set_registration_state(&mut tx, id, false, None, 30)
        .await
        .expect("state");
    tx.commit().await.expect("commit");
    let mut c = db.conn().await.expect("conn");
    let row = trunks::get(&mut c, id).await.expect("get").expect("row");
    assert!(!row.registered);
    assert_eq!(row.last_registered_at, Some(20));
    assert_eq!(row.last_error_at, Some(10));
    drop(c);
    db.close().await;
}

#[tokio::test]
async fn a_campaigns_trunk_list_is_replaced_whole_and_follows_trunk_deletion() {
    use store::campaign_trunks;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(&dir).await;
    let mut tx = db.write().await.expect("tx");
    let a = trunks::insert(&mut tx, &values("Carrier A"), 1_000)
        .await
        .expect("insert");
    let b = trunks::insert(&mut tx, &values("Carrier B"), 1_000)
        .await
        .expect("insert");
    campaign_trunks::replace(&mut tx, 7, &[(a, 5), (b, 1)], 2_000)
        .await
        .expect("replace");
    campaign_trunks::replace(&mut tx, 8, &[(a, 1)], 2_000)
        .await
        .expect("replace");
    tx.commit().await.expect("commit");

    let mut c = db.conn().await.expect("conn");
    let list = campaign_trunks::list(&mut c, 7).await.expect("list");
    let seen: Vec<(i64, &str, i64)> = list
        .iter()
        .map(|r| (r.trunk_id, r.trunk_name.as_str(), r.priority))
        .collect();
    assert_eq!(seen, vec![(b, "Carrier B", 1), (a, "Carrier A", 5)]);
    assert!(campaign_trunks::list(&mut c, 9)
        .await
        .expect("list")
        .is_empty());
    drop(c);

    // Replaced whole: B goes, A stays (its created_at kept), one campaign only.
    let mut tx = db.write().await.expect("tx");
    campaign_trunks::replace(&mut tx, 7, &[(a, 3)], 3_000)
        .await
        .expect("replace");
    tx.commit().await.expect("commit");
    let mut c = db.conn().await.expect("conn");
    let list = campaign_trunks::list(&mut c, 7).await.expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(
        (
            list[0].trunk_id,
            list[0].priority,
            list[0].created_at,
            list[0].updated_at
        ),
        (a, 3, 2_000, 3_000)
    );
    assert_eq!(
        campaign_trunks::list(&mut c, 8).await.expect("list").len(),
        1
    );
    drop(c);

    // The database refuses a duplicate and an unknown trunk; the
    // transaction is then dropped and nothing changed.
    let mut tx = db.write().await.expect("tx");
    assert!(
        campaign_trunks::replace(&mut tx, 7, &[(b, 1), (b, 2)], 4_000)
            .await
            .is_err()
    );
    drop(tx);
    let mut tx = db.write().await.expect("tx");
    assert!(campaign_trunks::replace(&mut tx, 7, &[(b + 100, 1)], 4_000)
        .await
        .is_err());
    drop(tx);
    let mut c = db.conn().await.expect("conn");
    assert_eq!(campaign_trunks::list(&mut c, 7).await.expect("list"), list);
    drop(c);

    // Deleting a trunk takes it off every list.
    let mut tx = db.write().await.expect("tx");
    assert!(trunks::delete(&mut tx, a).await.expect("delete"));
    tx.commit().await.expect("commit");
    let mut c = db.conn().await.expect("conn");
    assert!(campaign_trunks::list(&mut c, 7)
        .await
        .expect("list")
        .is_empty());
    assert!(campaign_trunks::list(&mut c, 8)
        .await
        .expect("list")
        .is_empty());
}
