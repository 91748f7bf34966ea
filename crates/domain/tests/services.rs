//! Domain services against a real database: an SQLite file in a temp dir,
//! or a fresh PostgreSQL database when `CENTRALITA_TEST_DATABASE_URL` names
//! a server (see `store::testing`).

use std::collections::HashSet;

use chrono::{Duration, SubsecRound, Utc};
use domain::sip_credentials::{self as sc, DigestAlgorithm};
use domain::users::UserQuery;
use domain::{
    Actor, Db, Direction, Disposition, DomainConfig, DomainError, Event, NewUser, PasswordCost,
    RegistrationRecord, Services, UserUpdate,
};

async fn services(dir: &tempfile::TempDir) -> Services {
    services_at(&store::testing::fresh_database_url(dir.path())).await
}

/// Services on the database at `url` (to reopen the same one).
async fn services_at(url: &str) -> Services {
    let db = Db::open(url).await.expect("open db");
    let cfg = DomainConfig {
        password_cost: PasswordCost::TestOnlyCheap,
        ..Default::default()
    };
    Services::new(db, cfg)
}

fn agent(name: &str, login: &str) -> NewUser {
    NewUser {
        name: name.into(),
        login: Some(login.into()),
        password: "secret-password".into(),
        role: "agent".into(),
        ..Default::default()
    }
}

fn admin() -> Actor {
    Actor {
        user_id: None,
        login: Some("tester".into()),
        ip: Some("127.0.0.1".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_never_duplicate_extensions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = services(&dir).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.users
                .create(&admin(), agent("Same Name", &format!("a{i}")))
                .await
        }));
    }
    let mut exts = HashSet::new();
    let mut names = HashSet::new();
    for t in tasks {
        let (_, creds) = t.await.expect("join").expect("create");
        let creds = creds.expect("agents get SIP");
        assert!(
            exts.insert(creds.extension.clone()),
            "duplicate extension {}",
            creds.extension
        );
        assert!(
            names.insert(creds.username.clone()),
            "duplicate username {}",
            creds.username
        );
    }
    let expected: HashSet<String> = (1000..1020).map(|n| n.to_string()).collect();
    assert_eq!(exts, expected);
    assert!(
        names.contains("same_name")
            && names.contains("same_name2")
            && names.contains("same_name20")
    );
}

#[tokio::test]
async fn ha1_digest_credentials_and_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = services(&dir).await;
    let mut events = s.events.subscribe();
    let (user, creds) = s
        .users
        .create(&admin(), agent("John Doe", "jdoe"))
        .await
        .expect("create");
    let creds = creds.expect("sip");
    assert_eq!(creds.username, "john_doe");
    assert_eq!(creds.extension, "1000");
    assert_eq!(creds.password.len(), 32);
    match events.recv().await.expect("event") {
        Event::Agent {
            id,
            action,
            sip_username,
            ..
        } => {
            assert_eq!(
                (id, action.as_str(), sip_username.as_deref()),
                (user.id, "created", Some("john_doe"))
            )
        }
        e => panic!("unexpected {e:?}"),
    }

    let dc = s
        .sip_accounts
        .digest_credentials("john_doe")
        .await
        .expect("q")
        .expect("known");
    assert_eq!(dc.ha1.len(), 1);
    assert_eq!(
        dc.ha1[0].md5,
        sc::ha1(
            DigestAlgorithm::Md5,
            "john_doe",
            "centralita.local",
            &creds.password
        )
    );
    assert_eq!(
        dc.ha1[0].sha256,
        sc::ha1(
            DigestAlgorithm::Sha256,
            "john_doe",
            "centralita.local",
            &creds.password
        )
    );
    assert_eq!(dc.account.extension, "1000");
    assert_eq!(
        s.sip_accounts
            .by_extension("1000")
            .await
            .expect("q")
            .map(|a| a.username),
        Some("john_doe".into())
    );
    assert!(s
        .sip_accounts
        .digest_credentials("nobody")
        .await
        .expect("q")
        .is_none());

    // Ephemeral: valid next to the long-lived one, at most 5 kept.
    let mut last = None;
    for _ in 0..7 {
        last = Some(
            s.sip_accounts
                .issue_ephemeral(user.id)
                .await
                .expect("ephemeral"),
        );
    }
    let eph = last.expect("issued");
    assert_eq!(eph.account.username, "john_doe");
    assert_ne!(eph.password, creds.password);
    let dc = s
        .sip_accounts
        .digest_credentials("john_doe")
        .await
        .expect("q")
        .expect("known");
    assert_eq!(dc.ha1.len(), 6);
    assert!(dc.ha1[0].expires_at.is_none());
    assert!(dc.ha1[1..]
        .iter()
        .all(|h| h.expires_at.is_some_and(|t| t > Utc::now())));
    assert_eq!(
        dc.ha1[1].md5,
        sc::ha1(
            DigestAlgorithm::Md5,
            "john_doe",
            "centralita.local",
            &eph.password
        )
    );

    // Rotation: new long-lived HA1, ephemeral ones gone, registrations gone.
    let reg = RegistrationRecord {
        username: "john_doe".into(),
        contact: "sip:john_doe@127.0.0.1:5070".into(),
        transport: "udp".into(),
        source: "127.0.0.1:5070".into(),
        user_agent: Some("test".into()),
        instance_id: None,
        reg_id: None,
        call_id: "c1".into(),
        cseq: 1,
        // the store keeps millisecond precision
        expires_at: Utc::now().trunc_subsecs(3) + Duration::seconds(600),
        registered_at: Utc::now().trunc_subsecs(3),
    };
    s.registrations.save(&reg).await.expect("save");
    assert_eq!(
        s.registrations
            .load_unexpired(Utc::now())
            .await
            .expect("load"),
        vec![reg.clone()]
    );
    let rotated = s
        .sip_accounts
        .rotate(&admin(), user.id)
        .await
        .expect("rotate");
    assert_eq!(rotated.username, "john_doe");
    assert_ne!(rotated.password, creds.password);
    let dc = s
        .sip_accounts
        .digest_credentials("john_doe")
        .await
        .expect("q")
        .expect("known");
    assert_eq!(dc.ha1.len(), 1);
    assert_eq!(
        dc.ha1[0].md5,
        sc::ha1(
            DigestAlgorithm::Md5,
            "john_doe",
            "centralita.local",
            &rotated.password
        )
    );
    assert!(s
        .registrations
        .load_unexpired(Utc::now())
        .await
        .expect("load")
        .is_empty());

    // Deactivation hides the account from the registrar.
    s.users
        .deactivate(&admin(), user.id)
        .await
        .expect("deactivate");
    assert!(s
        .sip_accounts
        .digest_credentials("john_doe")
        .await
        .expect("q")
        .is_none());
    assert!(s.sip_accounts.issue_ephemeral(user.id).await.is_err());
    assert!(s
        .sip_accounts
        .all_digest_credentials()
        .await
        .expect("all")
        .is_empty());
    s.users
        .update(
            &admin(),
            user.id,
            UserUpdate {
                active: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("reactivate");
    assert_eq!(
        s.sip_accounts
            .all_digest_credentials()
            .await
            .expect("all")
            .len(),
        1
    );
}

#[tokio::test]
async fn duplicate_login_is_conflict_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = services(&dir).await;
    s.users
        .create(&admin(), agent("A", "dup"))
        .await
        .expect("first");
    let before = s.users.stats().await.expect("stats");
    let err = s
        .users
        .create(&admin(), agent("B", "DUP"))
        .await
        .expect_err("duplicate");
    assert!(
        matches!(err, DomainError::Conflict { field: "login", .. }),
        "{err:?}"
    );
    let after = s.users.stats().await.expect("stats");
    assert_eq!(
        (before.total_users, before.agents_with_sip),
        (after.total_users, after.agents_with_sip)
    );
    // the failed create must not have consumed an extension
    let (_, c) = s
        .users
        .create(&admin(), agent("C", "c"))
        .await
        .expect("third");
    assert_eq!(c.expect("sip").extension, "1001");
}

#[tokio::test]
async fn extension_start_is_configurable_and_non_numeric_extensions_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = store::testing::fresh_database_url(dir.path());
    let db = Db::open(&url).await.expect("open");
    let s = Services::new(
        db,
        DomainConfig {
            extension_start: 6170,
            password_cost: PasswordCost::TestOnlyCheap,
            ..Default::default()
        },
    );
    let (_, c) = s
        .users
        .create(&admin(), agent("X", "x"))
        .await
        .expect("create");
    assert_eq!(c.expect("sip").extension, "6170");
    let (_, c) = s
        .users
        .create(&admin(), agent("Y", "y"))
        .await
        .expect("create");
    assert_eq!(c.expect("sip").extension, "6171");
}

#[tokio::test]
async fn cdr_lifecycle_and_orphans() {
    use domain::HangupCause as H;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = services(&dir).await;
    let (u, _) = s
        .users
        .create(&admin(), agent("Caller", "caller"))
        .await
        .expect("create");
    let t0 = (Utc::now() - Duration::seconds(100)).timestamp_millis() as u64;
    let caller = Some(u.id);
    s.calls
        .record(&call_script(
            "a",
            t0,
            caller,
            Some(10_000),
            Some((70_000, H::CallerBye)),
        ))
        .await
        .expect("record a");
    // ending twice changes nothing
    s.calls
        .record(&[ce(
            "a",
            t0 + 90_000,
            domain::CallEventKind::Ended { cause: H::Failed },
        )])
        .await
        .expect("end again");
    let a = s.calls.get("a").await.expect("q").expect("row");
    assert_eq!(
        (
            a.duration,
            a.billsec,
            a.disposition.as_deref(),
            a.hangup_cause.as_deref()
        ),
        (70, 60, Some("ANSWERED"), Some("caller_bye"))
    );
    assert_eq!(a.agent.map(|x| x.name), Some("Caller".into()));

    s.calls
        .record(&call_script(
            "b",
            t0,
            caller,
            None,
            Some((30_000, H::NoAnswer)),
        ))
        .await
        .expect("record b");
    s.calls
        .record(&call_script("open", t0, caller, None, None))
        .await
        .expect("record open");
    assert_eq!(s.calls.active(None).await.expect("active").len(), 1);
    assert_eq!(
        s.calls
            .close_orphans("server restart")
            .await
            .expect("close"),
        1
    );
    let o = s.calls.get("open").await.expect("q").expect("row");
    assert_eq!(
        (o.disposition.as_deref(), o.hangup_cause.as_deref()),
        (Some("FAILED"), Some("server restart"))
    );
    assert!(o.end_time.is_some() && o.duration >= 100);

    let stats = s.calls.stats(&Default::default()).await.expect("stats");
    assert_eq!(
        (
            stats.total_calls,
            stats.answered,
            stats.no_answer,
            stats.failed
        ),
        (3, 1, 1, 1)
    );
    assert_eq!(stats.answer_rate, "33.33");
    assert_eq!(stats.avg_billsec, 60);
    let (page, total) = s
        .calls
        .history(&domain::calls::CallQuery {
            disposition: Some(Disposition::NoAnswer),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("history");
    assert_eq!((total, page.len(), page[0].call_id.as_str()), (1, 1, "b"));
}

/// The events of a few calls, interleaved as the SIP writer sends them,
/// with every call id prefixed by `p` and events that cannot apply: a
/// repeated start, answer and end, an answer after the end, events of an
/// unknown call and of a leg that does not exist.
fn cdr_script(p: &str, agent: i64, t0: u64) -> Vec<domain::CallEvent> {
    use domain::CallEventKind as K;
    use domain::HangupCause as H;
    let id = |name: &str| format!("{p}{name}");
    let a = Some(agent);
    let answered = call_script(
        &id("answered"),
        t0,
        a,
        Some(10_000),
        Some((70_000, H::CallerBye)),
    );
    let noanswer = call_script(
        &id("noanswer"),
        t0 + 1_000,
        a,
        None,
        Some((30_000, H::NoAnswer)),
    );
    let mut twice = call_script(
        &id("twice"),
        t0 + 2_000,
        a,
        Some(10_000),
        Some((40_000, H::CalleeBye)),
    );
    // A second start (another caller agent) and a second answer, before
    // the end; a second end after it.
    twice.insert(1, started(&id("twice"), t0 + 3_000, None, None));
    twice.insert(4, ce(&id("twice"), t0 + 20_000, K::Answered { leg: 1 }));
    twice.push(ce(&id("twice"), t0 + 90_000, K::Ended { cause: H::Failed }));
    let mut busy = call_script(&id("busy"), t0 + 4_000, a, None, Some((2_000, H::Busy)));
    busy.insert(2, ce(&id("busy"), t0 + 4_500, K::Ringing { leg: 7 }));
    busy.push(ce(&id("busy"), t0 + 7_000, K::Answered { leg: 1 }));
    let open = call_script(&id("open"), t0 + 5_000, a, Some(3_000), None);
    let ghost = vec![
        ce(&id("ghost"), t0 + 9_000, K::Answered { leg: 1 }),
        ce(&id("ghost"), t0 + 9_000, K::Ended { cause: H::Failed }),
    ];
    let calls = [answered, noanswer, twice, busy, open, ghost];
    let longest = calls.iter().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|k| calls.iter().filter_map(move |c| c.get(k).cloned()))
        .collect()
}

type CdrView = (
    String,
    String,
    Option<i64>,
    i64,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
    Option<String>,
    Option<String>,
);

async fn cdr_view(s: &Services, id: &str) -> Option<CdrView> {
    s.calls.get(id).await.expect("get").map(|c| {
        (
            c.caller_number,
            c.state,
            c.answer_time.map(|t| t.timestamp_millis()),
            c.start_time.timestamp_millis(),
            c.end_time.map(|t| t.timestamp_millis()),
            c.agent_id,
            c.duration,
            c.billsec,
            c.disposition,
            c.hangup_cause,
        )
    })
}

/// (call id without prefix, state, disposition) of the call events queued.
fn call_events(rx: &mut tokio::sync::broadcast::Receiver<Event>, p: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let Event::Call {
            call_id,
            state,
            disposition,
            caller_number,
            ..
        } = e
        {
            let id = call_id.strip_prefix(p).unwrap_or(&call_id).to_string();
            out.push(format!("{id} {state} {caller_number} {disposition:?}"));
        }
    }
    out
}

/// Recording events in one batch (the recorder works on rows in memory)
/// and one event per batch (the rows go through the database between
/// events) gives the same rows, legs and bus events.
#[tokio::test]
async fn record_in_one_batch_matches_one_event_per_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = services(&dir).await;
    let (u, _) = s
        .users
        .create(&admin(), agent("Caller", "caller"))
        .await
        .expect("create");
    let t0 = (Utc::now() - Duration::seconds(100)).timestamp_millis() as u64;
    let mut rx = s.events.subscribe();

    for ev in cdr_script("single-", u.id, t0) {
        s.calls
            .record(std::slice::from_ref(&ev))
            .await
            .expect("one event");
    }
    let single_events = call_events(&mut rx, "single-");

    s.calls
        .record(&cdr_script("batch-", u.id, t0))
        .await
        .expect("batch");
    let batch_events = call_events(&mut rx, "batch-");

    for id in ["answered", "noanswer", "twice", "busy", "open", "ghost"] {
        let single = cdr_view(&s, &format!("single-{id}")).await;
        let batch = cdr_view(&s, &format!("batch-{id}")).await;
        assert_eq!(single, batch, "call {id}");
        assert_eq!(
            leg_views(&s, &format!("single-{id}")).await,
            leg_views(&s, &format!("batch-{id}")).await,
            "legs of {id}"
        );
    }
    assert_eq!(single_events, batch_events);
    // 5 starts, 3 answers and 4 ends took effect; the rest were ignored.
    assert_eq!(batch_events.len(), 12, "{batch_events:?}");
    assert_eq!(batch_events[0], "answered ringing 1000 None");

    // What recording is known to do, checked on the batch rows.
    let a = cdr_view(&s, "batch-answered").await.expect("row");
    assert_eq!((a.6, a.7, a.8.as_deref()), (70, 60, Some("ANSWERED")));
    let t = cdr_view(&s, "batch-twice").await.expect("row");
    assert_eq!(
        (t.5, t.6, t.7, t.9.as_deref()),
        (Some(u.id), 40, 30, Some("callee_bye"))
    );
    let b = cdr_view(&s, "batch-busy").await.expect("row");
    assert_eq!(
        (b.2, b.7, b.8.as_deref(), b.9.as_deref()),
        (None, 0, Some("BUSY"), Some("busy"))
    );
    let o = cdr_view(&s, "batch-open").await.expect("row");
    assert_eq!((o.1.as_str(), o.4), ("answered", None));
    assert!(cdr_view(&s, "batch-ghost").await.is_none());
    assert_eq!(s.calls.active(None).await.expect("active").len(), 2);
}

/// A failed batch leaves the rows it would have changed as they were and
/// announces nothing; the same events without the bad one then apply.
#[tokio::test]
async fn record_batch_failure_leaves_stored_calls_unchanged() {
    use domain::CallEventKind as K;
    use domain::HangupCause as H;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = services(&dir).await;
    let t0 = Utc::now().timestamp_millis() as u64;
    s.calls
        .record(&call_script("ok", t0, None, None, None))
        .await
        .expect("start");
    let before = (
        cdr_view(&s, "ok").await,
        s.calls.legs("ok").await.expect("legs"),
    );
    let mut rx = s.events.subscribe();
    // The last event starts a call whose agent does not exist (foreign
    // key), after the events that answer and end the stored call.
    let good = [
        ce("ok", t0 + 1_000, K::Answered { leg: 1 }),
        ce(
            "ok",
            t0 + 3_000,
            K::Ended {
                cause: H::CallerBye,
            },
        ),
    ];
    let mut batch = good.to_vec();
    batch.push(started("bad", t0 + 2_000, Some(424_242), None));
    let err = s.calls.record(&batch).await.expect_err("foreign key");
    assert!(matches!(err, DomainError::Db(_)), "{err:?}");
    let after = (
        cdr_view(&s, "ok").await,
        s.calls.legs("ok").await.expect("legs"),
    );
    assert_eq!(after, before);
    assert_eq!(after.0.map(|v| v.1), Some("ringing".to_string()));
    assert!(s.calls.get("bad").await.expect("get").is_none());
    assert!(call_events(&mut rx, "").is_empty());

    s.calls.record(&good).await.expect("retry");
    let ok = cdr_view(&s, "ok").await.expect("row");
    assert_eq!((ok.1.as_str(), ok.7), ("ended", 2));
    assert_eq!(
        call_events(&mut rx, ""),
        ["ok answered 1000 None", "ok ended 1000 Some(\"ANSWERED\")"]
    );
}

#[tokio::test]
async fn login_rate_limit_and_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = services(&dir).await;
    let (u, _) = s
        .users
        .create(&admin(), agent("Ann", "ann"))
        .await
        .expect("create");
    let ok = s
        .auth
        .login("ann", "secret-password", Some("10.0.0.1"))
        .await
        .expect("login");
    assert_eq!(ok.user.id, u.id);
    assert_eq!(
        s.auth
            .session_user(&ok.session_token)
            .await
            .expect("q")
            .map(|u| u.id),
        Some(u.id)
    );
    for _ in 0..4 {
        assert!(matches!(
            s.auth
                .login("ann", "wrong-password", Some("10.0.0.2"))
                .await,
            Err(DomainError::InvalidCredentials)
        ));
    }
    match s
        .auth
        .login("ann", "wrong-password", Some("10.0.0.2"))
        .await
    {
        Err(DomainError::RateLimited { retry_after_secs }) => assert!(retry_after_secs > 0),
        other => panic!("expected rate limit, got {other:?}"),
    }
    // even the right password is refused while blocked
    assert!(matches!(
        s.auth
            .login("ann", "secret-password", Some("10.0.0.3"))
            .await,
        Err(DomainError::RateLimited { .. })
    ));
    s.auth.logout(&ok.session_token).await.expect("logout");
    assert!(s
        .auth
        .session_user(&ok.session_token)
        .await
        .expect("q")
        .is_none());
}

#[tokio::test]
async fn server_secret_is_stable_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = store::testing::fresh_database_url(dir.path());
    let a = services_at(&url)
        .await
        .server_secret()
        .await
        .expect("secret");
    assert_eq!(a.len(), 64);
    let s = services_at(&url).await;
    assert_eq!(s.server_secret().await.expect("secret"), a);
}

// ---- The recorder: call events → calls + call_legs rows ----

fn ce(call_id: &str, at_ms: u64, kind: domain::CallEventKind) -> domain::CallEvent {
    domain::CallEvent {
        call_id: call_id.into(),
        at_ms,
        kind,
    }
}

fn party(number: &str, agent_id: Option<i64>) -> domain::Party {
    domain::Party {
        number: number.into(),
        agent_id,
    }
}

fn started(id: &str, at: u64, caller: Option<i64>, callee: Option<i64>) -> domain::CallEvent {
    ce(
        id,
        at,
        domain::CallEventKind::Started {
            direction: Direction::Internal,
            caller: party("1000", caller),
            callee: party("1001", callee),
            transport: "udp".into(),
        },
    )
}

fn leg_added(
    id: &str,
    at: u64,
    leg: u32,
    agent: Option<i64>,
    transport: &str,
) -> domain::CallEvent {
    ce(
        id,
        at,
        domain::CallEventKind::LegAdded {
            leg,
            party: party("1001", agent),
            transport: transport.into(),
        },
    )
}

/// The events of a call from 1000 (agent `caller`) to 1001 over one
/// destination leg, at `t0` and ms offsets from it: answered after
/// `answer`, ended after `end` with its cause (open if `None`).
fn call_script(
    id: &str,
    t0: u64,
    caller: Option<i64>,
    answer: Option<u64>,
    end: Option<(u64, domain::HangupCause)>,
) -> Vec<domain::CallEvent> {
    use domain::CallEventKind as K;
    let mut v = vec![
        started(id, t0, caller, None),
        leg_added(id, t0, 1, None, "udp"),
    ];
    if let Some(dt) = answer {
        v.push(ce(id, t0 + dt, K::Answered { leg: 1 }));
    }
    if let Some((dt, cause)) = end {
        v.push(ce(id, t0 + dt, K::Ended { cause }));
    }
    v
}

/// `leg number agent transport ringing? answered? ended? cause sip`
fn leg_view(l: &domain::CallLeg) -> String {
    format!(
        "{} {} {:?} {} {} {} {} {} {:?}",
        l.leg,
        l.number,
        l.agent_id,
        l.transport,
        l.ringing_at.is_some(),
        l.answered_at.is_some(),
        l.ended_at.is_some(),
        l.end_cause.as_deref().unwrap_or("-"),
        l.sip_code
    )
}

async fn leg_views(s: &Services, call_id: &str) -> Vec<String> {
    let legs = s.calls.legs(call_id).await.expect("legs");
    legs.iter().map(leg_view).collect()
}

#[tokio::test]
async fn record_writes_calls_and_legs_and_announces_each_phase() {
    use domain::CallEventKind as K;
    use domain::HangupCause as H;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = services(&dir).await;
    let (a, _) = s
        .users
        .create(&admin(), agent("Caller", "caller"))
        .await
        .expect("create");
    let (b, _) = s
        .users
        .create(&admin(), agent("Callee", "callee"))
        .await
        .expect("create");
    let mut rx = s.events.subscribe();
    let t0 = (Utc::now() - Duration::seconds(100)).timestamp_millis() as u64;

    // Batch 1: two calls start; c1 forks to two contacts of b.
    s.calls
        .record(&[
            started("c1", t0, Some(a.id), Some(b.id)),
            leg_added("c1", t0 + 5, 1, Some(b.id), "ws"),
            started("c2", t0 + 6, Some(a.id), Some(b.id)),
            leg_added("c1", t0 + 7, 2, Some(b.id), "udp"),
            ce("c1", t0 + 100, K::Ringing { leg: 1 }),
            leg_added("c2", t0 + 8, 1, Some(b.id), "tcp"),
        ])
        .await
        .expect("batch 1");
    let c1 = s.calls.get("c1").await.expect("get").expect("c1");
    assert_eq!(
        (c1.state.as_str(), c1.agent_id, c1.callee_agent_id),
        ("ringing", Some(a.id), Some(b.id))
    );
    let legs = leg_views(&s, "c1").await;
    let (ai, bi) = (Some(a.id), Some(b.id));
    assert_eq!(
        legs,
        [
            format!("0 1000 {ai:?} udp true false false - None"),
            format!("1 1001 {bi:?} ws true false false - None"),
            format!("2 1001 {bi:?} udp false false false - None"),
        ]
    );
    assert_eq!(
        call_events(&mut rx, ""),
        ["c1 ringing 1000 None", "c2 ringing 1000 None"]
    );

    // Batch 2: c1 answered by leg 2; c2 busy.
    s.calls
        .record(&[
            ce("c1", t0 + 2_000, K::Answered { leg: 2 }),
            ce(
                "c2",
                t0 + 300,
                K::LegEnded {
                    leg: 1,
                    cause: H::Busy,
                    sip_code: Some(486),
                },
            ),
            ce("c2", t0 + 301, K::Ended { cause: H::Busy }),
        ])
        .await
        .expect("batch 2");
    // Batch 3: c1 ends; then a duplicate end, a late answer, a repeated
    // start and events of a call never started.
    s.calls
        .record(&[
            ce(
                "c1",
                t0 + 62_500,
                K::Ended {
                    cause: H::CalleeBye,
                },
            ),
            ce("c1", t0 + 70_000, K::Ended { cause: H::Failed }),
            ce("c1", t0 + 70_001, K::Answered { leg: 1 }),
            started("c1", t0 + 70_002, None, None),
            ce("ghost", t0, K::Answered { leg: 1 }),
            ce("ghost", t0, K::Ended { cause: H::Failed }),
        ])
        .await
        .expect("batch 3");
    assert_eq!(
        call_events(&mut rx, ""),
        [
            "c1 answered 1000 None",
            "c2 ended 1000 Some(\"BUSY\")",
            "c1 ended 1000 Some(\"ANSWERED\")",
        ]
    );
    let c1 = s.calls.get("c1").await.expect("get").expect("c1");
    assert_eq!(
        (
            c1.state.as_str(),
            c1.duration,
            c1.billsec,
            c1.disposition.as_deref(),
            c1.hangup_cause.as_deref()
        ),
        ("ended", 62, 60, Some("ANSWERED"), Some("callee_bye"))
    );
    let legs = leg_views(&s, "c1").await;
    assert_eq!(
        legs,
        [
            format!("0 1000 {ai:?} udp true true true callee_bye None"),
            format!("1 1001 {bi:?} ws true false true answered_elsewhere None"),
            format!("2 1001 {bi:?} udp false true true callee_bye None"),
        ]
    );
    let c2 = s.calls.get("c2").await.expect("get").expect("c2");
    assert_eq!(
        (c2.duration, c2.billsec, c2.disposition.as_deref()),
        (0, 0, Some("BUSY"))
    );
    let legs = leg_views(&s, "c2").await;
    assert_eq!(
        legs,
        [
            format!("0 1000 {ai:?} udp false false true busy None"),
            format!("1 1001 {bi:?} tcp false false true busy Some(486)"),
        ]
    );
    assert!(s.calls.get("ghost").await.expect("get").is_none());
    assert!(s.calls.legs("ghost").await.expect("legs").is_empty());
    let (_, total) = s
        .calls
        .history(&domain::calls::CallQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("history");
    assert_eq!(total, 2);
    s.calls.record(&[]).await.expect("empty batch");
}

/// A batch with one bad event (an agent that does not exist) writes
/// nothing and announces nothing; retried event by event, as the SIP
/// writer does, only the bad event's own rows are lost.
#[tokio::test]
async fn record_batch_failure_writes_nothing_and_retry_by_event_keeps_the_rest() {
    use domain::CallEventKind as K;
    use domain::HangupCause as H;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = services(&dir).await;
    let mut rx = s.events.subscribe();
    let t0 = Utc::now().timestamp_millis() as u64;
    let batch = [
        started("ok", t0, None, None),
        leg_added("ok", t0 + 1, 1, Some(424_242), "udp"),
        leg_added("ok", t0 + 2, 2, None, "udp"),
        started("bad", t0 + 3, Some(424_242), None),
        ce("bad", t0 + 4, K::Ended { cause: H::Failed }),
        ce("ok", t0 + 1_000, K::Answered { leg: 2 }),
        ce(
            "ok",
            t0 + 3_000,
            K::Ended {
                cause: H::CallerBye,
            },
        ),
    ];
    let err = s.calls.record(&batch).await.expect_err("foreign key");
    assert!(matches!(err, DomainError::Db(_)), "{err:?}");
    assert!(s.calls.get("ok").await.expect("get").is_none());
    assert!(call_events(&mut rx, "").is_empty());
    let failed: Vec<usize> = {
        let mut v = Vec::new();
        for (i, e) in batch.iter().enumerate() {
            if s.calls.record(std::slice::from_ref(e)).await.is_err() {
                v.push(i);
            }
        }
        v
    };
    assert_eq!(failed, [1, 3], "the bad leg and the bad call");
    let ok = s.calls.get("ok").await.expect("get").expect("ok");
    assert_eq!(
        (ok.disposition.as_deref(), ok.billsec),
        (Some("ANSWERED"), 2)
    );
    let legs: Vec<u32> = s
        .calls
        .legs("ok")
        .await
        .expect("legs")
        .iter()
        .map(|l| l.leg)
        .collect();
    assert_eq!(legs, [0, 2]);
    assert!(s.calls.get("bad").await.expect("get").is_none());
    assert_eq!(
        call_events(&mut rx, ""),
        [
            "ok ringing 1000 None",
            "ok answered 1000 None",
            "ok ended 1000 Some(\"ANSWERED\")"
        ]
    );
}

/// Rows a crash left open are closed as FAILED at the next start, legs
/// included; events of those calls arriving later change nothing.
#[tokio::test]
async fn close_orphans_closes_open_calls_and_their_legs() {
    use domain::CallEventKind as K;
    use domain::HangupCause as H;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = services(&dir).await;
    let t0 = (Utc::now() - Duration::seconds(100)).timestamp_millis() as u64;
    s.calls
        .record(&[
            started("open", t0, None, None),
            leg_added("open", t0 + 1, 1, None, "udp"),
            leg_added("open", t0 + 1, 2, None, "udp"),
            ce("open", t0 + 10_000, K::Answered { leg: 1 }),
            started("done", t0, None, None),
            leg_added("done", t0 + 1, 1, None, "udp"),
            ce("done", t0 + 5_000, K::Ended { cause: H::NoAnswer }),
        ])
        .await
        .expect("record");
    assert_eq!(
        s.calls
            .close_orphans("server restart")
            .await
            .expect("close"),
        1
    );
    let o = s.calls.get("open").await.expect("get").expect("open");
    assert_eq!(
        (o.disposition.as_deref(), o.hangup_cause.as_deref()),
        (Some("FAILED"), Some("server restart"))
    );
    assert!(o.duration >= 100 && o.billsec >= 90, "{o:?}");
    let legs = s.calls.legs("open").await.expect("legs");
    assert_eq!(legs.len(), 3);
    assert!(legs
        .iter()
        .all(|l| l.ended_at.is_some() && l.end_cause.as_deref() == Some("server restart")));
    let done = s.calls.legs("done").await.expect("legs");
    assert!(done
        .iter()
        .all(|l| l.end_cause.as_deref() == Some("no_answer")));

    let mut rx = s.events.subscribe();
    s.calls
        .record(&[
            ce(
                "open",
                t0 + 200_000,
                K::Ended {
                    cause: H::CallerBye,
                },
            ),
            started("open", t0 + 200_001, None, None),
        ])
        .await
        .expect("late events");
    assert!(call_events(&mut rx, "").is_empty());
    let again = s.calls.get("open").await.expect("get").expect("open");
    assert_eq!(
        (again.hangup_cause, again.end_time),
        (o.hangup_cause, o.end_time)
    );
    assert_eq!(s.calls.legs("open").await.expect("legs"), legs);
}

/// After a crash the rows left open end at the last moment the server was
/// known alive, not at the restart: an answered call is billed up to then
/// (ANSWERED, `server_crash`), a ringing one is FAILED; legs end then too.
/// Never before the answer, never after now; no heartbeat: now.
#[tokio::test]
async fn close_after_crash_ends_calls_at_the_last_heartbeat() {
    use domain::CallEventKind as K;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = services(&dir).await;
    let t0 = (Utc::now() - Duration::seconds(100)).timestamp_millis() as u64;
    s.calls
        .record(&[
            started("up", t0, None, None),
            leg_added("up", t0 + 1, 1, None, "udp"),
            ce("up", t0 + 10_000, K::Answered { leg: 1 }),
            started("ringing", t0, None, None),
            leg_added("ringing", t0 + 1, 1, None, "udp"),
            started("late", t0, None, None),
            leg_added("late", t0 + 1, 1, None, "udp"),
            ce("late", t0 + 40_000, K::Answered { leg: 1 }),
        ])
        .await
        .expect("record");
    // Alive until t0 + 30 s; the restart is 70 s later.
    assert_eq!(
        s.calls
            .close_after_crash(Some(t0 + 30_000))
            .await
            .expect("close"),
        3
    );
    let get = |id: &'static str| {
        let s = s.clone();
        async move { s.calls.get(id).await.expect("get").expect("row") }
    };
    let up = get("up").await;
    assert_eq!(
        (up.disposition.as_deref(), up.hangup_cause.as_deref()),
        (Some("ANSWERED"), Some("server_crash"))
    );
    assert_eq!((up.duration, up.billsec), (30, 20), "{up:?}");
    assert_eq!(
        up.end_time.map(|t| t.timestamp_millis()),
        Some(t0 as i64 + 30_000)
    );
    let ringing = get("ringing").await;
    assert_eq!(
        (
            ringing.disposition.as_deref(),
            ringing.hangup_cause.as_deref()
        ),
        (Some("FAILED"), Some("server_crash"))
    );
    assert_eq!((ringing.duration, ringing.billsec), (30, 0));
    // Answered after the last heartbeat: ends at its answer.
    let late = get("late").await;
    assert_eq!((late.duration, late.billsec), (40, 0), "{late:?}");
    for l in s.calls.legs("late").await.expect("legs") {
        assert_eq!(
            l.ended_at.map(|t| t.timestamp_millis()),
            Some(t0 as i64 + 40_000),
            "a leg does not end before its answer: {l:?}"
        );
    }
    for l in s.calls.legs("up").await.expect("legs") {
        assert_eq!(l.end_cause.as_deref(), Some("server_crash"));
        assert_eq!(
            l.ended_at.map(|t| t.timestamp_millis()),
            Some(t0 as i64 + 30_000)
        );
    }

    // No heartbeat: closed now; a heartbeat in the future: now as well.
    s.calls
        .record(&[started("x", t0, None, None), started("y", t0, None, None)])
        .await
        .expect("record");
    let future = Utc::now().timestamp_millis() as u64 + 3_600_000;
    assert_eq!(
        s.calls
            .close_after_crash(Some(future))
            .await
            .expect("close"),
        2
    );
    let x = get("x").await;
    assert!((100..110).contains(&x.duration), "{x:?}");
}

/// 1,200 calls whose events interleave, recorded in batches of 500
/// events as the SIP writer sends them: every call and leg is complete.
#[tokio::test]
async fn record_many_interleaved_calls() {
    use domain::CallEventKind as K;
    use domain::HangupCause as H;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = services(&dir).await;
    let t0 = (Utc::now() - Duration::seconds(100)).timestamp_millis() as u64;
    let n = 1_200u64;
    let script = |i: u64| {
        let id = format!("call-{i}");
        let t = t0 + i;
        let mut v = vec![
            started(&id, t, None, None),
            leg_added(&id, t + 1, 1, None, "udp"),
            leg_added(&id, t + 1, 2, None, "ws"),
            ce(&id, t + 10, K::Ringing { leg: 1 }),
        ];
        if i % 2 == 1 {
            v.push(ce(&id, t + 1_000, K::Answered { leg: 1 }));
            v.push(ce(
                &id,
                t + 3_000,
                K::Ended {
                    cause: H::CallerBye,
                },
            ));
        } else {
            v.push(ce(&id, t + 3_000, K::Ended { cause: H::NoAnswer }));
        }
        v
    };
    let per_call: Vec<Vec<domain::CallEvent>> = (0..n).map(script).collect();
    let mut all = Vec::new();
    for k in 0..6 {
        for call in &per_call {
            if let Some(e) = call.get(k) {
                all.push(e.clone());
            }
        }
    }
    let started_at = std::time::Instant::now();
    for batch in all.chunks(500) {
        s.calls.record(batch).await.expect("batch");
    }
    eprintln!(
        "recorded {} events of {n} calls in {:?}",
        all.len(),
        started_at.elapsed()
    );
    let (rows, total) = s
        .calls
        .history(&domain::calls::CallQuery {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .expect("history");
    assert_eq!(total, n as i64);
    for c in rows {
        let i: u64 = c.call_id["call-".len()..].parse().expect("call number");
        let answered = i % 2 == 1;
        assert_eq!(c.state, "ended", "{}", c.call_id);
        assert_eq!((c.duration, c.billsec), (3, if answered { 2 } else { 0 }));
        assert_eq!(
            c.disposition.as_deref(),
            Some(if answered { "ANSWERED" } else { "NO ANSWER" })
        );
    }
    for i in [0, 1, n - 1] {
        let legs = s.calls.legs(&format!("call-{i}")).await.expect("legs");
        let causes: Vec<&str> = legs
            .iter()
            .map(|l| l.end_cause.as_deref().unwrap_or("-"))
            .collect();
        if i % 2 == 1 {
            assert_eq!(causes, ["caller_bye", "caller_bye", "answered_elsewhere"]);
        } else {
            assert_eq!(causes, ["no_answer", "no_answer", "no_answer"]);
        }
    }
}

/// The same login asked for by many requests at once: exactly one user is
/// created and every other request is a conflict on `login`, on SQLite
/// (writers serialised, the explicit check answers) and on PostgreSQL
/// (writers side by side, the named unique index answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicate_logins_are_conflicts_on_login() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = services(&dir).await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let s = s.clone();
        // Different case each time: logins are unique ignoring ASCII case.
        let login = if i % 2 == 0 { "race" } else { "RACE" };
        tasks.push(tokio::spawn(async move {
            s.users
                .create(&admin(), agent(&format!("Racer {i}"), login))
                .await
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.expect("join") {
            Ok(_) => created += 1,
            Err(DomainError::Conflict { field: "login", .. }) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(s.users.stats().await.expect("stats").total_users, 1);
}

/// Updates that would duplicate another user's login or email are
/// conflicts on that field; a user's own values (in any case) are not.
#[tokio::test]
async fn update_to_a_taken_login_or_email_is_a_conflict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = services(&dir).await;
    let (a, _) = s
        .users
        .create(
            &admin(),
            NewUser {
                email: Some("a@example.test".into()),
                ..agent("A", "alpha")
            },
        )
        .await
        .expect("a");
    let (b, _) = s
        .users
        .create(&admin(), agent("B", "beta"))
        .await
        .expect("b");
    let err = s
        .users
        .update(
            &admin(),
            b.id,
            UserUpdate {
                login: Some("ALPHA".into()),
                ..Default::default()
            },
        )
        .await
        .expect_err("taken login");
    assert!(
        matches!(err, DomainError::Conflict { field: "login", .. }),
        "{err:?}"
    );
    let err = s
        .users
        .update(
            &admin(),
            b.id,
            UserUpdate {
                email: Some("A@example.test".into()),
                ..Default::default()
            },
        )
        .await
        .expect_err("taken email");
    assert!(
        matches!(err, DomainError::Conflict { field: "email", .. }),
        "{err:?}"
    );
    let same = s
        .users
        .update(
            &admin(),
            a.id,
            UserUpdate {
                login: Some("Alpha".into()),
                ..Default::default()
            },
        )
        .await
        .expect("own login in another case");
    assert_eq!(same.login.as_deref(), Some("Alpha"));
}

/// Search ignores ASCII case and ordering puts users without a value
/// first (ascending), the same on both databases.
#[tokio::test]
async fn user_search_and_order_are_the_same_on_both_databases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = services(&dir).await;
    for (name, login) in [
        ("Zoe Ward", "zw"),
        ("adam Smith", "as"),
        ("Bob 50%", "b5"),
        ("José Ñu", "jn"),
    ] {
        s.users
            .create(&admin(), agent(name, login))
            .await
            .expect("create");
    }
    s.users
        .create(
            &admin(),
            NewUser {
                name: "no login".into(),
                login: None,
                email: Some("nl@example.test".into()),
                password: "secret-password".into(),
                role: "supervisor".into(),
                ..Default::default()
            },
        )
        .await
        .expect("no login");
    let names = |q: UserQuery| {
        let s = s.clone();
        async move {
            let (rows, total) = s.users.list(&q).await.expect("list");
            assert_eq!(rows.len() as i64, total);
            rows.into_iter().map(|u| u.name).collect::<Vec<_>>()
        }
    };
    let q = |search: Option<&str>, order: &str| UserQuery {
        search: search.map(str::to_string),
        limit: 50,
        order: Some(order.into()),
        ..Default::default()
    };
    assert_eq!(names(q(Some("SMITH"), "name")).await, ["adam Smith"]);
    // ASCII letters fold, others compare as they are (SQLite's LIKE).
    assert_eq!(names(q(Some("JOSé Ñ"), "name")).await, ["José Ñu"]);
    assert_eq!(names(q(Some("josé ñ"), "name")).await, Vec::<String>::new());
    assert_eq!(names(q(Some("50%"), "name")).await, ["Bob 50%"]);
    assert_eq!(names(q(Some("5_"), "name")).await, Vec::<String>::new());
    assert_eq!(
        names(q(None, "name")).await,
        ["adam Smith", "Bob 50%", "José Ñu", "no login", "Zoe Ward"]
    );
    assert_eq!(
        names(q(None, "login")).await,
        ["no login", "adam Smith", "Bob 50%", "José Ñu", "Zoe Ward"]
    );
    assert_eq!(
        names(q(None, "-login")).await,
        ["Zoe Ward", "José Ñu", "Bob 50%", "adam Smith", "no login"]
    );
    // Extensions in numeric order; the user without one first.
    assert_eq!(
        names(q(None, "extension")).await,
        ["no login", "Zoe Ward", "adam Smith", "Bob 50%", "José Ñu"]
    );
}

/// An agent's recording override reaches what the SIP side loads for a
/// call (digest credentials, the cache warm-up) and decides with
/// `should_record`; `None` again follows the system default.
#[tokio::test]
async fn record_calls_override_reaches_the_sip_lookup() {
    use domain::recording::should_record;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = services(&dir).await;
    let (a, _) = s
        .users
        .create(&admin(), agent("Ana", "ana"))
        .await
        .expect("a");
    let (b, _) = s
        .users
        .create(&admin(), agent("Bea", "bea"))
        .await
        .expect("b");
    let sip = |u: &domain::User| u.sip.as_ref().expect("sip").username.clone();
    let pref = |username: String| {
        let s = s.clone();
        async move {
            s.sip_accounts
                .digest_credentials(&username)
                .await
                .expect("q")
                .expect("account")
                .account
                .record_calls
        }
    };
    assert_eq!(pref(sip(&a)).await, None);
    let set = |id: i64, v: Option<bool>| {
        let s = s.clone();
        async move {
            s.users
                .update(
                    &admin(),
                    id,
                    UserUpdate {
                        record_calls: Some(v),
                        ..Default::default()
                    },
                )
                .await
                .expect("update")
        }
    };
    assert_eq!(set(a.id, Some(false)).await.record_calls, Some(false));
    assert_eq!(set(b.id, Some(true)).await.record_calls, Some(true));
    let (pa, pb) = (pref(sip(&a)).await, pref(sip(&b)).await);
    assert_eq!((pa, pb), (Some(false), Some(true)));
    // Ana is exempt but Bea is recorded: the call between them is.
    assert!(should_record(false, Some(pa), Some(pb)));
    let all = s.sip_accounts.all_digest_credentials().await.expect("all");
    let warm: Vec<_> = all
        .iter()
        .map(|c| (c.account.user_id, c.account.record_calls))
        .collect();
    assert!(warm.contains(&(a.id, Some(false))) && warm.contains(&(b.id, Some(true))));
    // Back to the default.
    assert_eq!(set(b.id, None).await.record_calls, None);
    assert_eq!(pref(sip(&b)).await, None);
    assert!(!should_record(true, Some(pa), None));
}

/// A campaign's trunk list: replaced whole and audited, refused whole
/// (nothing changes), and an originate for the campaign plans its call
/// through the campaign's first trunk instead of the dial plan's.
#[tokio::test]
async fn a_campaigns_trunks_replace_the_routes_for_its_calls() {
    use domain::campaign_trunks::{CampaignTrunkInput, CampaignTrunksInput};
    use domain::trunks::TrunkInput;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = services(&dir).await;
    let (_, sip) = s
        .users
        .create(&admin(), agent("Cora Campaign", "cora"))
        .await
        .expect("agent");
    let ext = sip.expect("agents get a SIP account").extension;
    let trunk = |name: &str, priority: i64| {
        serde_json::from_value::<TrunkInput>(serde_json::json!({
            "name": name, "host": "127.0.0.1", "priority": priority,
            "sendsRegistration": false,
        }))
        .expect("input")
    };
    let main = s
        .trunks()
        .create(&admin(), &trunk("Main", 1))
        .await
        .expect("trunk");
    let campaign = s
        .trunks()
        .create(&admin(), &trunk("Campaign carrier", 5))
        .await
        .expect("trunk");
    let list = |entries: Vec<(i64, Option<i64>)>| CampaignTrunksInput {
        trunks: entries
            .into_iter()
            .map(|(trunk_id, priority)| CampaignTrunkInput { trunk_id, priority })
            .collect(),
    };
    let ct = s.campaign_trunks();
    assert!(ct.list(42).await.expect("list").is_empty());
    let saved = ct
        .replace(
            &admin(),
            42,
            &list(vec![(main.id, Some(7)), (campaign.id, Some(2))]),
        )
        .await
        .expect("replace");
    let seen: Vec<(i64, &str, i64)> = saved
        .iter()
        .map(|t| (t.trunk_id, t.trunk_name.as_str(), t.priority))
        .collect();
    assert_eq!(
        seen,
        vec![(campaign.id, "Campaign carrier", 2), (main.id, "Main", 7)]
    );
    assert_eq!(ct.list(42).await.expect("list"), saved);
    let (audit, _) = s
        .audit
        .list(Some("campaign_trunks.update"), None, 10, 0)
        .await
        .expect("audit");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].target_id.as_deref(), Some("42"));

    // Refused whole: an unknown trunk after a good one, a trunk twice.
    for bad in [
        list(vec![(main.id, None), (campaign.id + 100, None)]),
        list(vec![(main.id, None), (main.id, Some(3))]),
    ] {
        match ct.replace(&admin(), 42, &bad).await {
            Err(DomainError::Invalid { field, .. }) => assert_eq!(field, "trunkId"),
            other => panic!("not refused: {other:?}"),
        }
    }
    assert_eq!(ct.list(42).await.expect("list"), saved, "unchanged");
    assert!(matches!(
        ct.replace(&admin(), 0, &list(vec![])).await,
        Err(DomainError::NotFound { what: "campaign" })
    ));

    // The dial plan's choice is the lowest priority (Main); the campaign's
    // call goes through its own first trunk, and the engine gets its list.
    let plan = s
        .plan_originate(&ext, "912345678", None, None)
        .await
        .expect("plan");
    assert_eq!(
        (plan.trunk_name.as_str(), plan.campaign_trunks),
        ("Main", None)
    );
    let plan = s
        .plan_originate(&ext, "912345678", Some(42), Some(9))
        .await
        .expect("plan");
    assert_eq!(plan.trunk_name, "Campaign carrier");
    assert_eq!(plan.campaign_trunks, Some(vec![campaign.id, main.id]));
    assert_eq!((plan.campaign_id, plan.lead_id), (Some(42), Some(9)));
    // A campaign without a list uses the dial plan's trunks.
    let plan = s
        .plan_originate(&ext, "912345678", Some(43), None)
        .await
        .expect("plan");
    assert_eq!(
        (plan.trunk_name.as_str(), plan.campaign_trunks),
        ("Main", None)
    );

    // An empty list removes the campaign's own trunks.
    assert!(ct
        .replace(&admin(), 42, &list(vec![]))
        .await
        .expect("replace")
        .is_empty());
    let plan = s
        .plan_originate(&ext, "912345678", Some(42), None)
        .await
        .expect("plan");
    assert_eq!(plan.trunk_name, "Main");
}
