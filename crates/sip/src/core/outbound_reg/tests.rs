//! The trunk registration state machine on virtual time, with the
//! registrar played by hand: each test reads the REGISTERs it sends and
//! answers them.

use super::*;
use crate::core::digest::{expected_response, ha1, parse_authorization, Algorithm};
use crate::core::msg::{self, response, Limits};
use crate::core::txn::{T2, TIMEOUT};
use crate::core::types::Transport;

const LOCAL: &str = "127.0.0.1:5060";
const REGISTRAR: ([u8; 4], u16) = ([127, 0, 0, 1], 5070);

fn reg(key: &str) -> TrunkRegistration {
    TrunkRegistration {
        key: key.into(),
        registrar: "127.0.0.1:5070".into(),
        transport: Transport::Udp,
        aor: "sip:trunk1@carrier.test".into(),
        contact_user: "trunk1".into(),
        auth_username: "trunk1".into(),
        secret: "s3cret".into(),
        realm: None,
        expires_secs: 300,
        retry_interval_secs: 60,
        max_retries: 0,
        forbidden_retry_secs: 0,
    }
}

fn addr() -> Option<SocketAddr> {
    Some(SocketAddr::from(REGISTRAR))
}

struct Rig {
    regs: OutboundRegs,
    now: u64,
}

impl Rig {
    fn new(trunks: Vec<TrunkRegistration>) -> Rig {
        let mut regs = OutboundRegs::new(7, LOCAL.into());
        regs.set(0, trunks.into_iter().map(|r| (r, addr())).collect())
            .expect("valid settings");
        Rig { regs, now: 0 }
    }

    fn one(r: TrunkRegistration) -> (Rig, Msg) {
        let mut rig = Rig::new(vec![r]);
        rig.regs.handle_timeout(0);
        let m = rig.sent_one();
        (rig, m)
    }

    fn sent(&mut self) -> Vec<Msg> {
        let mut v = Vec::new();
        while let Some(t) = self.regs.poll_transmit() {
            assert_eq!(t.to.peer, SocketAddr::from(REGISTRAR));
            v.push(Msg::parse(&t.data, &Limits::default()).expect("we send valid SIP"));
        }
        v
    }

    fn sent_one(&mut self) -> Msg {
        let mut v = self.sent();
        assert_eq!(v.len(), 1, "expected one message, got {v:?}");
        v.remove(0)
    }

    fn events(&mut self) -> Vec<TrunkEventKind> {
        std::iter::from_fn(|| self.regs.poll_event())
            .map(|e| e.kind)
            .collect()
    }

    fn answer(&mut self, req: &Msg, code: u16, reason: &str, extra: &[(&str, &str)]) {
        let mut r = response(req, code, reason, Some("srv"));
        for (n, v) in extra {
            r.headers.push((n.to_string(), v.to_string()));
        }
        let parsed = Msg::parse(&r.to_bytes(), &Limits::default()).expect("valid response");
        assert!(OutboundRegs::owns(parsed.top_branch()));
        self.regs.handle_response(self.now, &parsed);
    }

    /// Advances to the next timeout (at most `until`), returning its time.
    fn step(&mut self, until: u64) -> Option<u64> {
        let t = self.regs.poll_timeout()?;
        if t > until {
            return None;
        }
        self.now = self.now.max(t);
        self.regs.handle_timeout(self.now);
        Some(self.now)
    }

    fn status(&self) -> TrunkStatus {
        self.regs.statuses().remove(0)
    }
}

const CHALLENGE: &str =
    "Digest realm=\"carrier.test\", nonce=\"n-1\", algorithm=MD5, qop=\"auth\", opaque=\"op-1\"";

fn expires_of(m: &Msg) -> String {
    m.header("Expires").unwrap_or("").to_string()
}

/// Checks the Authorization of `m` against the secret, as a registrar would.
fn check_auth(m: &Msg, secret: &str) -> bool {
    let Some(c) = m.header("Authorization").and_then(parse_authorization) else {
        return false;
    };
    let alg = if c.algorithm.eq_ignore_ascii_case("SHA-256") {
        Algorithm::Sha256
    } else {
        Algorithm::Md5
    };
    let h1 = ha1(alg, &c.username, &c.realm, secret);
    expected_response(alg, &h1, "REGISTER", &c) == c.response
}

#[test]
fn challenge_answered_once_then_registered_and_refreshed_with_the_same_call_id() {
    let (mut rig, r1) = Rig::one(reg("t1"));
    assert_eq!(r1.ruri(), "sip:127.0.0.1:5070");
    assert_eq!(r1.cseq(), (1, "REGISTER"));
    assert!(r1.top_branch().starts_with(BRANCH_PREFIX));
    assert!(r1.header("Authorization").is_none());
    assert_eq!(
        r1.header("Contact"),
        Some("<sip:trunk1@127.0.0.1:5060>;expires=300")
    );
    assert_eq!(r1.header("To"), Some("<sip:trunk1@carrier.test>"));
    assert_eq!(expires_of(&r1), "300");
    assert_eq!(rig.status().state, TrunkRegState::Registering);

    rig.now = 40;
    rig.answer(&r1, 401, "Unauthorized", &[("WWW-Authenticate", CHALLENGE)]);
    let r2 = rig.sent_one();
    assert_eq!(r2.call_id(), r1.call_id());
    assert_eq!(r2.cseq(), (2, "REGISTER"));
    assert_ne!(r2.top_branch(), r1.top_branch());
    assert_eq!(
        msg::tag(r2.header("From").unwrap_or("")),
        msg::tag(r1.header("From").unwrap_or(""))
    );
    let auth = r2.header("Authorization").expect("credentials");
    assert!(
        auth.contains("opaque=\"op-1\"") && auth.contains("nc=00000001"),
        "{auth}"
    );
    assert!(check_auth(&r2, "s3cret"));
    assert!(!check_auth(&r2, "other"));
    assert!(rig.events().is_empty());

    rig.now = 80;
    // The registrar grants less than asked, in our Contact's parameter.
    rig.answer(
        &r2,
        200,
        "OK",
        &[
            (
                "Contact",
                "<sip:other@10.0.0.9>;expires=3000, <sip:trunk1@127.0.0.1:5060>;expires=120",
            ),
            ("Expires", "999"),
        ],
    );
    assert_eq!(
        rig.events(),
        [TrunkEventKind::Registered { expires_secs: 120 }]
    );
    let s = rig.status();
    assert_eq!(s.state, TrunkRegState::Registered { expires_secs: 120 });
    // max(60, 90) = 90 s after the success, before 115 s.
    assert_eq!(s.next_attempt_ms, Some(80 + 90_000));
    assert_eq!(s.expires_at_ms, Some(80 + 120_000));
    assert_eq!(rig.regs.poll_timeout(), Some(80 + 90_000));
    assert!(rig.sent().is_empty());

    assert_eq!(rig.step(u64::MAX), Some(90_080));
    let r3 = rig.sent_one();
    assert_eq!(r3.call_id(), r1.call_id());
    assert_eq!(r3.cseq(), (3, "REGISTER"));
    // The last challenge is reused with the next nonce count.
    let auth = r3.header("Authorization").expect("pre-emptive credentials");
    assert!(auth.contains("nc=00000002"), "{auth}");
    assert!(check_auth(&r3, "s3cret"));
    // Still registered while the refresh is in flight.
    assert_eq!(
        rig.status().state,
        TrunkRegState::Registered { expires_secs: 120 }
    );
    rig.answer(&r3, 200, "OK", &[("Expires", "60")]);
    assert_eq!(
        rig.events(),
        [TrunkEventKind::Registered { expires_secs: 60 }]
    );
    assert_eq!(rig.status().next_attempt_ms, Some(90_080 + 30_000));
}

#[test]
fn a_longer_grant_than_asked_is_taken_as_what_was_asked() {
    let (mut rig, r1) = Rig::one(reg("t1"));
    rig.answer(
        &r1,
        200,
        "OK",
        &[("Contact", "<sip:trunk1@127.0.0.1:5060>;expires=7200")],
    );
    assert_eq!(
        rig.events(),
        [TrunkEventKind::Registered { expires_secs: 300 }]
    );
    assert_eq!(rig.status().next_attempt_ms, Some(270_000));
}

#[test]
fn refresh_timing_follows_the_granted_expiry() {
    assert_eq!(refresh_after(3600), 3570);
    assert_eq!(refresh_after(120), 90);
    assert_eq!(refresh_after(60), 30);
    assert_eq!(refresh_after(10), 5);
    assert_eq!(refresh_after(8), 3);
    assert_eq!(refresh_after(2), 1);
    assert_eq!(refresh_after(1), 1);
    for g in 1..5000u32 {
        let r = refresh_after(g);
        assert!(r >= 1 && r <= g.saturating_sub(5).max(1), "{g} -> {r}");
        if g >= 10 {
            assert!(r >= g / 2, "{g} -> {r}");
        }
        if g >= 60 {
            assert!(g - r <= 30, "{g} -> {r}");
        }
    }
}

#[test]
fn a_second_challenge_to_the_answer_is_rejected_not_looped() {
    let (mut rig, r1) = Rig::one(reg("t1"));
    rig.answer(&r1, 401, "Unauthorized", &[("WWW-Authenticate", CHALLENGE)]);
    let r2 = rig.sent_one();
    let again = CHALLENGE.replace("n-1", "n-2");
    rig.answer(&r2, 401, "Unauthorized", &[("WWW-Authenticate", &again)]);
    assert!(rig.sent().is_empty(), "no third REGISTER");
    let ev = rig.events();
    assert!(
        matches!(&ev[..], [TrunkEventKind::Rejected { code: 401, reason, retry_at_ms: None }] if reason.contains("credentials refused")),
        "{ev:?}"
    );
    assert!(matches!(
        rig.status().state,
        TrunkRegState::Rejected { code: 401, .. }
    ));
    assert_eq!(rig.regs.poll_timeout(), None);
    rig.regs.handle_timeout(10_000_000);
    assert!(rig.sent().is_empty());
    // A forced registration starts a new attempt, without stale credentials.
    assert!(rig.regs.force(10_000_000, "t1"));
    rig.regs.handle_timeout(10_000_000);
    let r3 = rig.sent_one();
    assert!(r3.header("Authorization").is_none());
    assert!(!rig.regs.force(10_000_000, "nope"));
}

#[test]
fn a_stale_nonce_is_answered_once_more() {
    let (mut rig, r1) = Rig::one(reg("t1"));
    rig.answer(
        &r1,
        407,
        "Proxy Authentication Required",
        &[("Proxy-Authenticate", CHALLENGE)],
    );
    let r2 = rig.sent_one();
    assert!(r2.header("Proxy-Authorization").is_some());
    assert!(r2.header("Authorization").is_none());
    let stale = format!("{}, stale=true", CHALLENGE.replace("n-1", "n-2"));
    rig.answer(
        &r2,
        407,
        "Proxy Authentication Required",
        &[("Proxy-Authenticate", &stale)],
    );
    let r3 = rig.sent_one();
    assert!(r3
        .header("Proxy-Authorization")
        .is_some_and(|a| a.contains("n-2")));
    // A second stale answer is not answered (no loop even then).
    rig.answer(
        &r3,
        407,
        "Proxy Authentication Required",
        &[("Proxy-Authenticate", &stale)],
    );
    assert!(rig.sent().is_empty());
    assert!(matches!(
        rig.status().state,
        TrunkRegState::Rejected { code: 407, .. }
    ));
}

#[test]
fn a_pre_emptive_refresh_that_is_challenged_is_answered() {
    let (mut rig, r1) = Rig::one(reg("t1"));
    rig.answer(&r1, 401, "Unauthorized", &[("WWW-Authenticate", CHALLENGE)]);
    let r2 = rig.sent_one();
    rig.answer(&r2, 200, "OK", &[("Expires", "100")]);
    rig.events();
    rig.step(u64::MAX);
    let r3 = rig.sent_one();
    assert!(r3.header("Authorization").is_some());
    // The registrar restarted: the old nonce means nothing to it.
    let fresh = CHALLENGE.replace("n-1", "n-9");
    rig.answer(&r3, 401, "Unauthorized", &[("WWW-Authenticate", &fresh)]);
    let r4 = rig.sent_one();
    assert!(r4
        .header("Authorization")
        .is_some_and(|a| a.contains("n-9") && a.contains("nc=00000001")));
    rig.answer(&r4, 200, "OK", &[("Expires", "100")]);
    assert_eq!(
        rig.events(),
        [TrunkEventKind::Registered { expires_secs: 100 }]
    );
}

#[test]
fn realm_restriction_and_sha256_preference() {
    let mut r = reg("t1");
    r.realm = Some("carrier.test".into());
    let (mut rig, r1) = Rig::one(r);
    let other = "Digest realm=\"evil\", nonce=\"x\", algorithm=SHA-256, qop=\"auth\"";
    let sha = "Digest realm=\"carrier.test\", nonce=\"s\", algorithm=SHA-256, qop=\"auth\"";
    rig.answer(
        &r1,
        401,
        "Unauthorized",
        &[
            ("WWW-Authenticate", other),
            ("WWW-Authenticate", CHALLENGE),
            ("WWW-Authenticate", sha),
        ],
    );
    let r2 = rig.sent_one();
    let a = r2.header("Authorization").expect("credentials");
    assert!(
        a.contains("algorithm=SHA-256") && a.contains("realm=\"carrier.test\""),
        "{a}"
    );
    assert!(check_auth(&r2, "s3cret"));

    let mut r = reg("t2");
    r.realm = Some("carrier.test".into());
    let (mut rig, r1) = Rig::one(r);
    rig.answer(&r1, 401, "Unauthorized", &[("WWW-Authenticate", other)]);
    assert!(rig.sent().is_empty());
    assert!(matches!(
        rig.status().state,
        TrunkRegState::Rejected { code: 401, .. }
    ));
}

#[test]
fn forbidden_stops_or_retries_after_the_forbidden_interval() {
    let (mut rig, r1) = Rig::one(reg("t1"));
    rig.answer(&r1, 403, "Forbidden", &[]);
    assert!(matches!(
        &rig.events()[..],
        [TrunkEventKind::Rejected {
            code: 403,
            retry_at_ms: None,
            ..
        }]
    ));
    assert_eq!(rig.regs.poll_timeout(), None);

    let mut r = reg("t1");
    r.forbidden_retry_secs = 600;
    let (mut rig, r1) = Rig::one(r);
    rig.now = 1_000;
    rig.answer(&r1, 403, "Forbidden", &[]);
    assert!(matches!(
        &rig.events()[..],
        [TrunkEventKind::Rejected {
            code: 403,
            retry_at_ms: Some(601_000),
            ..
        }]
    ));
    assert_eq!(rig.step(u64::MAX), Some(601_000));
    let r2 = rig.sent_one();
    assert_eq!(r2.cseq().0, 2);
}

#[test]
fn interval_too_brief_retries_with_min_expires_and_keeps_it() {
    let mut r = reg("t1");
    r.expires_secs = 30;
    let (mut rig, r1) = Rig::one(r);
    assert_eq!(expires_of(&r1), "30");
    rig.answer(&r1, 423, "Interval Too Brief", &[("Min-Expires", "90")]);
    let r2 = rig.sent_one();
    assert_eq!(expires_of(&r2), "90");
    assert!(r2
        .header("Contact")
        .is_some_and(|c| c.ends_with(";expires=90")));
    rig.answer(&r2, 200, "OK", &[]);
    assert_eq!(
        rig.events(),
        [TrunkEventKind::Registered { expires_secs: 90 }]
    );
    rig.step(u64::MAX);
    let r3 = rig.sent_one();
    assert_eq!(expires_of(&r3), "90");
    // A 423 that asks for no more than we asked is a failure, not a loop.
    rig.answer(&r3, 423, "Interval Too Brief", &[("Min-Expires", "60")]);
    assert!(rig.sent().is_empty());
    assert!(matches!(rig.status().state, TrunkRegState::Failed { .. }));
}

/// Times the pending REGISTER is sent (first copy included) until it fails.
fn run_until_failure(rig: &mut Rig) -> Vec<u64> {
    let mut at = vec![rig.now];
    loop {
        let before = rig.regs.statuses()[0].failures;
        let Some(t) = rig.step(u64::MAX) else {
            panic!("no timeout pending");
        };
        let sent = rig.sent().len();
        if rig.regs.statuses()[0].failures > before {
            assert_eq!(sent, 0);
            return at;
        }
        for _ in 0..sent {
            at.push(t);
        }
    }
}

#[test]
fn no_answer_retransmits_fails_at_timer_f_and_backs_off_with_jitter() {
    let mut r = reg("t1");
    r.retry_interval_secs = 10;
    let mut rig = Rig::new(vec![r]);
    rig.regs.handle_timeout(0);
    rig.sent();
    let at = run_until_failure(&mut rig);
    // Timer E on UDP: 0.5, 1, 2, 4 s then T2 (4 s) until timer F (32 s).
    assert_eq!(
        at,
        [0, 500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
    );
    assert_eq!(rig.now, 32_000);
    let ev = rig.events();
    let retry = match &ev[..] {
        [TrunkEventKind::Failed {
            retry_at_ms: Some(r),
            ..
        }] => *r,
        other => panic!("{other:?}"),
    };
    // First retry after 10 s ±20 %.
    assert!(
        (32_000 + 8_000..=32_000 + 12_000).contains(&retry),
        "{retry}"
    );
    // Each further failure doubles the base.
    let mut base = 10_000u64;
    let mut last = retry;
    for _ in 0..4 {
        assert_eq!(rig.step(u64::MAX), Some(last));
        assert_eq!(rig.sent().len(), 1);
        run_until_failure(&mut rig);
        base *= 2;
        let ev = rig.events();
        let retry = match &ev[..] {
            [TrunkEventKind::Failed {
                retry_at_ms: Some(r),
                ..
            }] => *r,
            other => panic!("{other:?}"),
        };
        let delay = retry - rig.now;
        assert!(
            (base * 8 / 10..=base * 12 / 10).contains(&delay),
            "delay {delay} for base {base}"
        );
        last = retry;
    }
}

#[test]
fn backoff_bounds_hold_for_every_draw() {
    let mut rng = Rng::new(3);
    let mut seen_low = false;
    let mut seen_high = false;
    for failures in 1..40u32 {
        for _ in 0..200 {
            let d = backoff_ms(30, failures, rng.next());
            let base = (30_000u64 << (failures - 1).min(20)).min(MAX_BACKOFF_MS);
            assert!(d >= base * 8 / 10 && d <= base * 12 / 10, "{failures}: {d}");
            seen_low |= d < base * 9 / 10;
            seen_high |= d > base * 11 / 10;
        }
    }
    assert!(seen_low && seen_high, "the jitter spreads both ways");
    // An interval longer than the cap is used as it is.
    let d = backoff_ms(7_200, 5, 200);
    assert_eq!(d, 7_200_000);
}

#[test]
fn retry_after_is_honoured_on_503_and_server_errors_back_off() {
    let (mut rig, r1) = Rig::one(reg("t1"));
    rig.now = 100;
    rig.answer(
        &r1,
        503,
        "Service Unavailable",
        &[("Retry-After", "42 (maintenance)")],
    );
    assert!(matches!(
        &rig.events()[..],
        [TrunkEventKind::Failed {
            retry_at_ms: Some(42_100),
            ..
        }]
    ));
    assert_eq!(rig.step(u64::MAX), Some(42_100));
    let r2 = rig.sent_one();
    rig.answer(&r2, 500, "Server Internal Error", &[]);
    match &rig.events()[..] {
        // Second failure in a row: 120 s ±20 %.
        [TrunkEventKind::Failed {
            retry_at_ms: Some(r),
            reason,
        }] => {
            assert!(reason.starts_with("500"));
            assert!((42_100 + 96_000..=42_100 + 144_000).contains(r), "{r}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn max_retries_stops_retrying() {
    let mut r = reg("t1");
    r.max_retries = 2;
    let (mut rig, mut req) = Rig::one(r);
    for n in 1..=3 {
        rig.answer(&req, 503, "Service Unavailable", &[("Retry-After", "5")]);
        let ev = rig.events();
        let retry = match &ev[..] {
            [TrunkEventKind::Failed { retry_at_ms, .. }] => *retry_at_ms,
            other => panic!("{other:?}"),
        };
        if n < 3 {
            assert!(retry.is_some(), "retry {n}");
            rig.step(u64::MAX);
            req = rig.sent_one();
        } else {
            assert_eq!(retry, None, "gave up after 2 retries");
        }
    }
    assert_eq!(rig.regs.poll_timeout(), None);
    let s = rig.status();
    assert!(matches!(s.state, TrunkRegState::Failed { .. }));
    assert_eq!(s.failures, 3);
}

#[test]
fn a_success_resets_the_failure_count() {
    let mut r = reg("t1");
    r.max_retries = 1;
    let (mut rig, r1) = Rig::one(r);
    rig.answer(&r1, 503, "Service Unavailable", &[("Retry-After", "1")]);
    rig.step(u64::MAX);
    let r2 = rig.sent_one();
    rig.answer(&r2, 200, "OK", &[("Expires", "60")]);
    assert_eq!(rig.status().failures, 0);
    rig.events();
    rig.step(u64::MAX);
    let r3 = rig.sent_one();
    rig.answer(&r3, 503, "Service Unavailable", &[("Retry-After", "1")]);
    assert!(matches!(
        &rig.events()[..],
        [TrunkEventKind::Failed {
            retry_at_ms: Some(_),
            ..
        }]
    ));
}

#[test]
fn provisional_slows_retransmissions_and_late_answers_are_ignored() {
    let (mut rig, r1) = Rig::one(reg("t1"));
    rig.answer(&r1, 100, "Trying", &[]);
    assert_eq!(rig.regs.poll_timeout(), Some(T2));
    rig.answer(&r1, 401, "Unauthorized", &[("WWW-Authenticate", CHALLENGE)]);
    let r2 = rig.sent_one();
    // A retransmitted 401 to the first request belongs to no transaction now.
    rig.answer(&r1, 401, "Unauthorized", &[("WWW-Authenticate", CHALLENGE)]);
    assert!(rig.sent().is_empty());
    assert!(rig.events().is_empty());
    rig.answer(&r2, 200, "OK", &[]);
    assert_eq!(
        rig.events(),
        [TrunkEventKind::Registered { expires_secs: 300 }]
    );
}

#[test]
fn removal_unregisters_and_shutdown_unregisters_everyone() {
    let mut rig = Rig::new(vec![reg("a"), reg("b")]);
    while rig
        .regs
        .statuses()
        .iter()
        .any(|s| s.state == TrunkRegState::Idle)
    {
        rig.step(u64::MAX).expect("first attempts planned");
        for m in rig.sent() {
            rig.answer(&m, 200, "OK", &[]);
        }
    }
    assert!(rig.now <= 500, "two trunks spread over at most 500 ms");
    assert_eq!(rig.events().len(), 2);
    let with = |keys: &[&str]| keys.iter().map(|k| (reg(k), addr())).collect::<Vec<_>>();

    // "a" removed: reported at once, unregistered in the background.
    rig.regs.set(rig.now, with(&["b", "c"])).expect("valid");
    let ev: Vec<_> = std::iter::from_fn(|| rig.regs.poll_event()).collect();
    assert_eq!(
        ev.iter()
            .map(|e| (e.key.as_str(), &e.kind))
            .collect::<Vec<_>>(),
        [("a", &TrunkEventKind::Unregistered)]
    );
    let un = rig.sent_one();
    assert_eq!(expires_of(&un), "0");
    assert!(un
        .header("Contact")
        .is_some_and(|c| c.ends_with(";expires=0")));
    // "c", never sent anything, is removed without a message.
    rig.regs.set(rig.now, with(&["b"])).expect("valid");
    assert!(rig.sent().is_empty());
    let ev: Vec<_> = std::iter::from_fn(|| rig.regs.poll_event()).collect();
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (ev[0].key.as_str(), &ev[0].kind),
        ("c", &TrunkEventKind::Unregistered)
    );
    rig.answer(&un, 200, "OK", &[]);
    assert!(
        rig.events().is_empty(),
        "a removed trunk reports nothing more"
    );
    assert_eq!(rig.regs.statuses().len(), 1);
    assert_eq!(rig.status().key, "b");

    rig.regs.shutdown(rig.now);
    let un = rig.sent_one();
    assert_eq!(expires_of(&un), "0");
    assert_eq!(rig.status().state, TrunkRegState::Unregistering);
    rig.answer(&un, 200, "OK", &[]);
    assert_eq!(rig.events(), [TrunkEventKind::Unregistered]);
    assert_eq!(rig.regs.poll_timeout(), None);
}

#[test]
fn a_changed_trunk_unregisters_the_old_binding_and_registers_anew() {
    let (mut rig, r1) = Rig::one(reg("t1"));
    rig.answer(&r1, 200, "OK", &[]);
    rig.events();
    let mut changed = reg("t1");
    changed.contact_user = "line2".into();
    rig.regs.set(5, vec![(changed, addr())]).expect("valid");
    let old = rig.sent_one();
    assert_eq!(expires_of(&old), "0");
    assert_eq!(old.call_id(), r1.call_id());
    assert!(old.header("Contact").is_some_and(|c| c.contains("trunk1@")));
    // The new binding waits until the old one is gone.
    rig.regs.handle_timeout(5);
    assert!(rig.sent().is_empty());
    assert_ne!(rig.regs.poll_timeout(), Some(5));
    rig.now = 10;
    rig.answer(&old, 200, "OK", &[]);
    assert_eq!(rig.regs.poll_timeout(), Some(5));
    rig.regs.handle_timeout(10);
    let new = rig.sent_one();
    assert_eq!(expires_of(&new), "300");
    assert_ne!(new.call_id(), r1.call_id());
    assert!(new.header("Contact").is_some_and(|c| c.contains("line2@")));
    rig.answer(&new, 200, "OK", &[]);
    assert_eq!(
        rig.events(),
        [TrunkEventKind::Registered { expires_secs: 300 }]
    );
    assert_eq!(rig.regs.statuses().len(), 1);
    // Setting the same again changes nothing.
    let mut same = reg("t1");
    same.contact_user = "line2".into();
    rig.regs.set(6, vec![(same, addr())]).expect("valid");
    rig.regs.handle_timeout(6);
    assert!(rig.sent().is_empty() && rig.events().is_empty());
}

#[test]
fn start_up_is_spread_and_every_binding_has_its_own_call_id() {
    let trunks: Vec<_> = (0..10).map(|i| reg(&format!("t{i}"))).collect();
    let mut rig = Rig::new(trunks);
    // First time each binding's REGISTER went out (retransmissions follow).
    let mut first: Vec<u64> = Vec::new();
    let mut call_ids = BTreeSet::new();
    while call_ids.len() < 10 {
        let at = rig.step(60_000).expect("first REGISTERs planned");
        for m in rig.sent() {
            if call_ids.insert(m.call_id().to_string()) {
                first.push(at);
            }
        }
    }
    assert_eq!(call_ids.len(), 10);
    let (min, max) = (first[0], first[9]);
    assert!(max <= 4_500, "spread over at most 9 x 500 ms: {first:?}");
    assert!(max - min >= 1_000, "not all at once: {first:?}");
    let distinct: BTreeSet<_> = first.iter().collect();
    assert!(distinct.len() >= 5, "{first:?}");
}

#[test]
fn tcp_has_no_retransmissions_and_a_lost_connection_fails_at_once() {
    let mut r = reg("t1");
    r.transport = Transport::Tcp;
    let (mut rig, r1) = Rig::one(r);
    assert!(r1
        .header("Via")
        .is_some_and(|v| v.starts_with("SIP/2.0/TCP ")));
    assert!(r1
        .header("Contact")
        .is_some_and(|c| c.contains(";transport=tcp>")));
    assert_eq!(rig.regs.poll_timeout(), Some(TIMEOUT));
    rig.now = 2_000;
    rig.regs.handle_transport_lost(
        rig.now,
        Source {
            flow: UDP_FLOW,
            transport: Transport::Tcp,
            peer: SocketAddr::from(REGISTRAR),
        },
    );
    assert!(matches!(
        &rig.events()[..],
        [TrunkEventKind::Failed { retry_at_ms: Some(_), reason }] if reason.contains("connection")
    ));
}

/// Over TLS, Via and Contact name our TLS listener when there is one,
/// else the advertised host; the Contact says `transport=tls`, and the 2xx
/// that lists it is read for the granted expiry.
#[test]
fn tls_names_our_tls_host_or_the_advertised_one() {
    for (tls_host, expect) in [(Some("192.0.2.7:5061"), "192.0.2.7:5061"), (None, LOCAL)] {
        let mut r = reg("t1");
        r.transport = Transport::Tls;
        let mut regs =
            OutboundRegs::new(7, LOCAL.into()).with_tls_host(tls_host.map(str::to_string));
        regs.set(0, vec![(r, addr())]).expect("TLS is accepted");
        let mut rig = Rig { regs, now: 0 };
        rig.regs.handle_timeout(0);
        let m = rig.sent_one();
        assert!(
            m.header("Via")
                .is_some_and(|v| v.starts_with(&format!("SIP/2.0/TLS {expect};"))),
            "{:?}",
            m.header("Via")
        );
        let contact = format!("<sip:trunk1@{expect};transport=tls>");
        assert!(
            m.header("Contact").is_some_and(|c| c.starts_with(&contact)),
            "{:?}",
            m.header("Contact")
        );
        let granted = format!("{contact};expires=120");
        rig.answer(&m, 200, "OK", &[("Contact", granted.as_str())]);
        assert_eq!(
            rig.status().state,
            TrunkRegState::Registered { expires_secs: 120 }
        );
        assert_eq!(rig.regs.poll_timeout(), Some(90_000));
    }
}

#[test]
fn bad_settings_change_nothing() {
    let mut rig = Rig::new(vec![reg("t1")]);
    let mut bad = reg("t2");
    bad.aor = "nobody".into();
    let err = rig.regs.set(0, vec![(reg("t1"), addr()), (bad, addr())]);
    assert!(matches!(err, Err(TrunkConfigError::Invalid { ref key, .. }) if key == "t2"));
    let err = rig
        .regs
        .set(0, vec![(reg("t1"), addr()), (reg("t1"), addr())]);
    assert_eq!(err, Err(TrunkConfigError::Duplicate("t1".into())));
    assert_eq!(rig.regs.statuses().len(), 1);
    assert!(rig.events().is_empty());
}

#[test]
fn an_unresolved_registrar_fails_without_sending() {
    let mut regs = OutboundRegs::new(1, LOCAL.into());
    regs.set(0, vec![(reg("t1"), None)]).expect("valid");
    regs.handle_timeout(0);
    assert!(regs.poll_transmit().is_none());
    assert!(matches!(
        regs.poll_event().map(|e| e.kind),
        Some(TrunkEventKind::Failed {
            retry_at_ms: None,
            ..
        })
    ));
}
