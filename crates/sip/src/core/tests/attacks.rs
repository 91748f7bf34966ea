//! The attacks of issue 8 against the core, on virtual time: amplification
//! by challenges, telling users apart by the work a wrong password costs,
//! guessing one account from many addresses, scanners.

use super::*;

fn from(ip: [u8; 4]) -> Source {
    Source {
        flow: UDP_FLOW,
        transport: Transport::Udp,
        peer: SocketAddr::from((ip, 5060)),
    }
}

/// Runs the timers up to `until`, returning everything transmitted meanwhile.
fn run_timers(core: &mut Core, from_ms: u64, until: u64) -> Vec<(Source, Msg)> {
    let mut sent = Vec::new();
    let mut now = from_ms;
    for _ in 0..10_000 {
        now = core.poll_timeout().max(now + 1);
        if now > until {
            break;
        }
        core.handle_timeout(now);
        sent.extend(drain(core).0);
    }
    sent
}

#[test]
fn challenges_are_sent_once_and_never_retransmitted() {
    let mut core = Core::new(cfg());
    core.cache_account(account("alice", "1000", "pa"));
    core.cache_account(account("bob", "1001", "pb"));
    let mut a = Ua::new("alice", "pa", udp(5071));
    let inv = invite(&mut a, "1001", "spoofed-1", None);
    let (sent, _) = feed(&mut core, 1_000, a.src, &inv);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].1.code(), Some(407));
    // Nobody ACKs (the source was spoofed): nothing more is sent, ever.
    let later = run_timers(&mut core, 1_000, 70_000);
    assert!(later.is_empty(), "407 retransmitted: {later:?}");
    // A retransmitted INVITE is simply challenged again, once.
    let (sent, _) = feed(&mut core, 71_000, a.src, &inv);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.code(), Some(407));
    assert!(run_timers(&mut core, 71_000, 140_000).is_empty());
    // Same for a wrong answer to the challenge, and for REGISTER's 401.
    let mut wrong = Ua::new("alice", "nope", udp(5071));
    wrong.cseq = 10;
    let ch = sent[0].1.clone();
    let (sent, _) = feed(
        &mut core,
        141_000,
        a.src,
        &invite(&mut wrong, "1001", "spoofed-2", Some(&ch)),
    );
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.code(), Some(407));
    let (sent, _) = feed(
        &mut core,
        142_000,
        a.src,
        &a.register("<sip:a@x>", None, None),
    );
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.code(), Some(401));
    assert!(run_timers(&mut core, 142_000, 220_000).is_empty());
}

/// One probe: a challenge, then a wrong answer; returns (digests computed,
/// lookups asked for, the final answer).
fn probe(core: &mut Core, now: u64, user: &str, ip: [u8; 4]) -> (u64, usize, Msg) {
    let (work, lookups, answer, _) = probe_noting(core, now, user, ip);
    (work, lookups, answer)
}

/// [`probe`], also returning the security notices the core raised.
fn probe_noting(
    core: &mut Core,
    now: u64,
    user: &str,
    ip: [u8; 4],
) -> (u64, usize, Msg, Vec<SecurityNotice>) {
    let mut ua = Ua::new(user, "wrong-password", from(ip));
    let (sent, _) = feed(core, now, ua.src, &ua.register("<sip:p@x>", None, None));
    assert_eq!(sent[0].1.code(), Some(401));
    let ch = sent[0].1.clone();
    let before = core.digests_computed();
    let req = ua.register("<sip:p@x>", None, Some((&ch, Algorithm::Md5)));
    let (mut sent, mut outs) = feed_raw(core, now, ua.src, &req);
    let mut lookups = 0;
    // Answer lookups as the shell would (what `feed` does), counting them.
    while let Some(i) = outs.iter().position(|o| matches!(o, Output::Lookup(_))) {
        let Output::Lookup(key) = outs.remove(i) else {
            unreachable!()
        };
        lookups += 1;
        core.handle_lookup(now, key.clone(), directory(&key));
        let (s, o) = drain(core);
        sent.extend(s);
        outs.extend(o);
    }
    assert_eq!(sent.len(), 1, "{sent:?}");
    let notices = outs
        .into_iter()
        .filter_map(|o| match o {
            Output::Security(n) => Some(n),
            _ => None,
        })
        .collect();
    (
        core.digests_computed() - before,
        lookups,
        sent[0].1.clone(),
        notices,
    )
}

#[test]
fn existing_and_unknown_users_cost_the_same_work_for_a_wrong_password() {
    let mut core = Core::new(cfg());
    // alice has three secrets cached (a password and two softphone ones).
    let mut alice = account("alice", "1000", "pa");
    for p in ["soft-1", "soft-2"] {
        alice.secrets.push(Ha1 {
            md5: digest::ha1(Algorithm::Md5, "alice", REALM, p),
            sha256: digest::ha1(Algorithm::Sha256, "alice", REALM, p),
            expires_at_ms: None,
        });
    }
    core.cache_account(alice);
    let names = |m: &Msg| m.headers.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    // Each probe from its own address (no ban), at three moments: first
    // sight (alice's cache entry is old, ghost was never looked up), over
    // 2 s later (reload / negative answer refreshed), and right after.
    for (i, now) in [10_000u64, 13_000, 13_500].into_iter().enumerate() {
        let i = u8::try_from(i).unwrap_or(0);
        let (known_work, known_lookups, known) = probe(&mut core, now, "alice", [10, 0, 1, i]);
        let (ghost_work, ghost_lookups, ghost) = probe(&mut core, now, "ghost", [10, 0, 2, i]);
        assert_eq!(
            (known_work, known_lookups),
            (ghost_work, ghost_lookups),
            "at {now}: existing user (digests, lookups) vs unknown user"
        );
        assert!(known_work >= digest::MIN_SECRETS_CHECKED as u64);
        assert_eq!(known.code(), Some(401));
        assert_eq!(ghost.code(), Some(401));
        assert_eq!(names(&known), names(&ghost));
    }
}

#[test]
fn an_account_guessed_from_many_addresses_is_guarded_but_its_phone_keeps_working() {
    let mut core = Core::new(cfg());
    core.cache_account(account("alice", "1000", "pa"));
    // alice's phone registered from 10.0.0.1 before the attack.
    let mut phone = Ua::new("alice", "pa", from([10, 0, 0, 1]));
    do_register(&mut core, &mut phone, "<sip:alice@10.0.0.1>");
    // One wrong guess from each of many addresses (the per-address ban,
    // limit 3, never sees more than one): after 4 the account is guarded.
    for i in 0..4u8 {
        let (_, _, r, notices) =
            probe_noting(&mut core, 5_000 + u64::from(i), "alice", [10, 9, 0, i]);
        assert_eq!(r.code(), Some(401));
        // The operator is told once, when the guard starts.
        let want = if i == 3 {
            vec![SecurityNotice::AccountGuarded {
                username: "alice".into(),
                ip: std::net::IpAddr::from([10, 9, 0, 3]),
            }]
        } else {
            vec![]
        };
        assert_eq!(notices, want, "guess {i}");
    }
    assert!(core.banned(5_010).is_empty());
    assert_eq!(core.security_stats().accounts_guarded, 1);
    // Further attempts from new addresses are refused unchecked, even the
    // right password: guessing on gains nothing.
    let mut lucky = Ua::new("alice", "pa", from([10, 9, 1, 1]));
    let (sent, _) = feed(
        &mut core,
        6_000,
        lucky.src,
        &lucky.register("<sip:x@y>", None, None),
    );
    let ch = sent[0].1.clone();
    let req = lucky.register("<sip:x@y>", None, Some((&ch, Algorithm::Md5)));
    let (sent, _) = feed(&mut core, 6_001, lucky.src, &req);
    assert_eq!(sent[0].1.code(), Some(403), "{:?}", sent[0].1);
    let (_, _, r) = probe(&mut core, 6_002, "alice", [10, 9, 1, 2]);
    assert_eq!(r.code(), Some(403));
    assert_eq!(core.security_stats().guarded_refused, 2);
    // The phone that registered before keeps working.
    let r = do_register(&mut core, &mut phone, "<sip:alice@10.0.0.1>");
    assert_eq!(r.code(), Some(200));
    // Other accounts are not affected.
    let (_, _, r) = probe(&mut core, 6_003, "bob", [10, 9, 1, 3]);
    assert_eq!(r.code(), Some(401));
    // The guard ends on its own (policy: 120 s).
    let (sent, _) = feed(
        &mut core,
        200_000,
        lucky.src,
        &lucky.register("<sip:x@y>", None, None),
    );
    let ch = sent[0].1.clone();
    let req = lucky.register("<sip:x@y>", None, Some((&ch, Algorithm::Md5)));
    let (sent, _) = feed(&mut core, 200_001, lucky.src, &req);
    assert_eq!(sent[0].1.code(), Some(200));
}

#[test]
fn restored_bindings_keep_their_address_trusted() {
    let mut core = Core::new(cfg());
    core.cache_account(account("alice", "1000", "pa"));
    core.restore_binding(BindingRecord {
        username: "alice".into(),
        contact: "sip:alice@10.0.0.5".into(),
        transport: Transport::Udp,
        source: SocketAddr::from(([10, 0, 0, 5], 5060)),
        user_agent: None,
        instance_id: None,
        reg_id: None,
        call_id: "c".into(),
        cseq: 1,
        expires_at_ms: 500_000,
        registered_at_ms: 1_000,
    });
    for i in 0..4u8 {
        probe(&mut core, 5_000, "alice", [10, 9, 0, i]);
    }
    let mut phone = Ua::new("alice", "pa", from([10, 0, 0, 5]));
    let r = do_register(&mut core, &mut phone, "<sip:alice@10.0.0.5>");
    assert_eq!(r.code(), Some(200));
}

#[test]
fn scanner_user_agents_are_dropped_unanswered_and_counted() {
    let opt = |ua: &str, branch: &str| {
        format!("OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{branch}\r\nFrom: <sip:100@x>;tag=1\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nUser-Agent: {ua}\r\nContent-Length: 0\r\n\r\n")
    };
    let mut core = Core::new(cfg());
    for (i, ua) in [
        "friendly-scanner",
        "sipcli/v1.8",
        "SIPVicious 0.3",
        "VaxSIPUserAgent/3.1",
    ]
    .into_iter()
    .enumerate()
    {
        let (sent, outs) = feed(&mut core, 0, udp(9), &opt(ua, &format!("s{i}")));
        assert!(sent.is_empty() && outs.is_empty(), "{ua}: {sent:?}");
    }
    let mut scanner = Ua::new("alice", "pa", udp(9));
    let reg = scanner.register("<sip:a@x>", None, None).replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nUser-Agent: friendly-scanner\r\n",
    );
    assert!(feed(&mut core, 0, udp(9), &reg).0.is_empty());
    assert_eq!(core.security_stats().scanners_dropped, 5);
    let (sent, _) = feed(&mut core, 0, udp(9), &opt("JsSIP 3.10.1", "ok"));
    assert_eq!(sent[0].1.code(), Some(200));
    // The list is configuration: empty turns the filter off.
    let mut c = cfg();
    c.scanner_user_agents.clear();
    let mut core = Core::new(c);
    let (sent, _) = feed(&mut core, 0, udp(9), &opt("friendly-scanner", "s9"));
    assert_eq!(sent[0].1.code(), Some(200));
    assert_eq!(core.security_stats().scanners_dropped, 0);
}
