//! Domain services against a real SQLite file in a temp dir.

use std::collections::HashSet;

use chrono::{Duration, SubsecRound, Utc};
use domain::sip_credentials::{self as sc, DigestAlgorithm};
use domain::{
    Actor, CallOp, Db, Direction, Disposition, DomainConfig, DomainError, Event, NewCall, NewUser,
    PasswordCost, RegistrationRecord, Services, UserUpdate,
};

async fn services(dir: &tempfile::TempDir) -> Services {
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let db = Db::open(&url).await.expect("open db");
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
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
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
    let dir = tempfile::tempdir().expect("tempdir");
    let s = services(&dir).await;
    let (u, _) = s
        .users
        .create(&admin(), agent("Caller", "caller"))
        .await
        .expect("create");
    let t0 = Utc::now() - Duration::seconds(100);
    let call = |id: &str| NewCall {
        call_id: id.into(),
        direction: Direction::Internal,
        caller_number: "1000".into(),
        callee_number: "1001".into(),
        agent_id: Some(u.id),
        callee_agent_id: None,
        start_time: t0,
    };
    s.calls.start(&call("a")).await.expect("start");
    s.calls
        .answer("a", t0 + Duration::seconds(10))
        .await
        .expect("answer");
    s.calls
        .finish(
            "a",
            t0 + Duration::seconds(70),
            Disposition::Answered,
            "normal clearing",
        )
        .await
        .expect("finish");
    // finishing twice changes nothing
    s.calls
        .finish("a", t0 + Duration::seconds(90), Disposition::Failed, "late")
        .await
        .expect("finish again");
    let a = s.calls.get("a").await.expect("q").expect("row");
    assert_eq!(
        (a.duration, a.billsec, a.disposition.as_deref()),
        (70, 60, Some("ANSWERED"))
    );
    assert_eq!(a.agent.map(|x| x.name), Some("Caller".into()));

    s.calls.start(&call("b")).await.expect("start");
    s.calls
        .finish(
            "b",
            t0 + Duration::seconds(30),
            Disposition::NoAnswer,
            "timeout",
        )
        .await
        .expect("finish");
    s.calls.start(&call("open")).await.expect("start");
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

/// The CDR operations of a few calls, interleaved as the SIP server issues
/// them, with every call id prefixed by `p`: repeated starts, answers and
/// finishes, an answer after the end, operations on an unknown call and a
/// cause longer than the 200 characters kept.
fn cdr_script(p: &str, agent: i64, t0: chrono::DateTime<Utc>) -> Vec<CallOp> {
    let s = Duration::seconds;
    let start = |id: &str, caller: &str, at| {
        CallOp::Start(NewCall {
            call_id: format!("{p}{id}"),
            direction: Direction::Internal,
            caller_number: caller.into(),
            callee_number: "1001".into(),
            agent_id: Some(agent),
            callee_agent_id: None,
            start_time: at,
        })
    };
    let answer = |id: &str, at| CallOp::Answer {
        call_id: format!("{p}{id}"),
        at,
    };
    let finish = |id: &str, at, d, cause: &str| CallOp::Finish {
        call_id: format!("{p}{id}"),
        end: at,
        disposition: d,
        hangup_cause: cause.into(),
    };
    vec![
        start("answered", "1000", t0),
        start("noanswer", "1000", t0 + s(1)),
        start("twice", "1000", t0 + s(2)),
        start("twice", "9999", t0 + s(3)),
        answer("answered", t0 + s(10)),
        start("busy", "1000", t0 + s(4)),
        start("open", "1000", t0 + s(5)),
        answer("twice", t0 + s(12)),
        answer("twice", t0 + s(20)),
        finish("busy", t0 + s(6), Disposition::Busy, &"x".repeat(300)),
        answer("busy", t0 + s(7)),
        answer("open", t0 + s(8)),
        finish("noanswer", t0 + s(31), Disposition::NoAnswer, "timeout"),
        answer("ghost", t0 + s(9)),
        finish("ghost", t0 + s(9), Disposition::Failed, "unknown"),
        finish("answered", t0 + s(70), Disposition::Answered, "caller_bye"),
        finish("twice", t0 + s(42), Disposition::Answered, "callee_bye"),
        finish("twice", t0 + s(90), Disposition::Failed, "late"),
    ]
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

#[tokio::test]
async fn cdr_batch_matches_single_operations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = services(&dir).await;
    let (u, _) = s
        .users
        .create(&admin(), agent("Caller", "caller"))
        .await
        .expect("create");
    let t0 = (Utc::now() - Duration::seconds(100)).trunc_subsecs(3);
    let mut rx = s.events.subscribe();

    for op in cdr_script("single-", u.id, t0) {
        match op {
            CallOp::Start(c) => s.calls.start(&c).await.expect("start"),
            CallOp::Answer { call_id, at } => s.calls.answer(&call_id, at).await.expect("answer"),
            CallOp::Finish {
                call_id,
                end,
                disposition,
                hangup_cause,
            } => s
                .calls
                .finish(&call_id, end, disposition, &hangup_cause)
                .await
                .expect("finish"),
        }
    }
    let single_events = call_events(&mut rx, "single-");

    s.calls
        .apply_batch(&cdr_script("batch-", u.id, t0))
        .await
        .expect("batch");
    let batch_events = call_events(&mut rx, "batch-");

    for id in ["answered", "noanswer", "twice", "busy", "open", "ghost"] {
        let single = cdr_view(&s, &format!("single-{id}")).await;
        let batch = cdr_view(&s, &format!("batch-{id}")).await;
        assert_eq!(single, batch, "call {id}");
    }
    assert_eq!(single_events, batch_events);
    // 5 starts, 3 answers, 4 finishes took effect; the rest were no-ops.
    assert_eq!(batch_events.len(), 12, "{batch_events:?}");
    assert_eq!(batch_events[0], "answered ringing 1000 None");

    // What the single operations are known to do, checked on the batch rows.
    let a = cdr_view(&s, "batch-answered").await.expect("row");
    assert_eq!((a.6, a.7, a.8.as_deref()), (70, 60, Some("ANSWERED")));
    let t = cdr_view(&s, "batch-twice").await.expect("row");
    assert_eq!(
        (t.0.as_str(), t.6, t.7, t.9.as_deref()),
        ("1000", 40, 30, Some("callee_bye"))
    );
    let b = cdr_view(&s, "batch-busy").await.expect("row");
    assert_eq!((b.2, b.7, b.9.map(|c| c.len())), (None, 0, Some(200)));
    let o = cdr_view(&s, "batch-open").await.expect("row");
    assert_eq!((o.1.as_str(), o.4), ("answered", None));
    assert!(cdr_view(&s, "batch-ghost").await.is_none());
    assert_eq!(s.calls.active(None).await.expect("active").len(), 2);
}

#[tokio::test]
async fn cdr_batch_failure_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = services(&dir).await;
    let mut rx = s.events.subscribe();
    let t0 = Utc::now();
    let call = |id: &str, agent| {
        CallOp::Start(NewCall {
            call_id: id.into(),
            direction: Direction::Internal,
            caller_number: "1000".into(),
            callee_number: "1001".into(),
            agent_id: agent,
            callee_agent_id: None,
            start_time: t0,
        })
    };
    // The second start names an agent that does not exist (foreign key).
    let err = s
        .calls
        .apply_batch(&[call("ok", None), call("bad", Some(424_242))])
        .await
        .expect_err("foreign key");
    assert!(matches!(err, DomainError::Db(_)), "{err:?}");
    assert!(s.calls.get("ok").await.expect("get").is_none());
    assert!(call_events(&mut rx, "").is_empty());
    // The database is usable and an empty batch is a no-op.
    s.calls.apply_batch(&[]).await.expect("empty");
    s.calls
        .apply_batch(&[call("ok", None)])
        .await
        .expect("retry");
    assert_eq!(call_events(&mut rx, ""), vec!["ok ringing 1000 None"]);
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
    let a = services(&dir).await.server_secret().await.expect("secret");
    assert_eq!(a.len(), 64);
    let s = services(&dir).await;
    assert_eq!(s.server_secret().await.expect("secret"), a);
}
