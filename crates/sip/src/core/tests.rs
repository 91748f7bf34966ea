//! Core driven on virtual time: user agents are plain strings in, bytes out.

use super::digest::{self, Algorithm, Ha1};
use super::msg::{self, response, Limits, Msg};
use super::security::{self, BanPolicy};
use super::*;
use domain::call_events::{CallEvent, CallEventKind, HangupCause};
use std::net::SocketAddr;

const REALM: &str = "pbx";

fn cfg() -> CoreConfig {
    CoreConfig {
        realm: REALM.into(),
        local_host: "127.0.0.1:5060".into(),
        tls_host: None,
        min_expires: 60,
        max_expires: 3600,
        default_expires: 600,
        max_contacts: 3,
        ring_timeout_ms: 30_000,
        nonce_lifetime_ms: 60_000,
        ban: BanPolicy {
            limit: 3,
            window_ms: 60_000,
            ban_ms: 300_000,
        },
        account_guard: security::AccountPolicy {
            limit: 4,
            window_ms: 60_000,
            lock_ms: 120_000,
            trust_ms: 3_600_000,
        },
        scanner_user_agents: security::SCANNER_USER_AGENTS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        limits: Limits::default(),
        secret: [9; 32],
        seed: 1,
        sha256_user_agents: Vec::new(),
        session_expires_secs: 0,
        min_se_secs: 90,
        max_call_duration_ms: 0,
        anchor: media::AnchorMode::Never,
        record_calls: false,
    }
}

fn account(user: &str, ext: &str, pass: &str) -> Account {
    Account {
        record_calls: None,
        dial: None,
        username: user.into(),
        extension: ext.into(),
        user_id: Some(ext.parse().unwrap_or(0)),
        display_name: user.into(),
        secrets: vec![Ha1 {
            md5: digest::ha1(Algorithm::Md5, user, REALM, pass),
            sha256: digest::ha1(Algorithm::Sha256, user, REALM, pass),
            expires_at_ms: None,
        }],
    }
}

struct Ua {
    user: String,
    pass: String,
    src: Source,
    nc: u32,
    cseq: u32,
}

fn udp(port: u16) -> Source {
    Source {
        flow: UDP_FLOW,
        transport: Transport::Udp,
        peer: SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

impl Ua {
    fn new(user: &str, pass: &str, src: Source) -> Ua {
        Ua {
            user: user.into(),
            pass: pass.into(),
            src,
            nc: 0,
            cseq: 0,
        }
    }

    fn register(
        &mut self,
        contact: &str,
        expires: Option<u32>,
        auth: Option<(&Msg, Algorithm)>,
    ) -> String {
        self.cseq += 1;
        let mut s = format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK{u}{p}x{c};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{u}@127.0.0.1>;tag=f{u}\r\nTo: <sip:{u}@127.0.0.1>\r\nCall-ID: reg-{u}-{p}\r\nCSeq: {c} REGISTER\r\n",
            p = self.src.peer.port(),
            u = self.user,
            c = self.cseq
        );
        if !contact.is_empty() {
            s.push_str(&format!("Contact: {contact}\r\n"));
        }
        if let Some(e) = expires {
            s.push_str(&format!("Expires: {e}\r\n"));
        }
        if let Some((ch, alg)) = auth {
            s.push_str(&format!(
                "Authorization: {}\r\n",
                self.answer(ch, alg, "REGISTER", "sip:127.0.0.1", "WWW-Authenticate")
            ));
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        s
    }

    fn answer(&mut self, ch: &Msg, alg: Algorithm, method: &str, uri: &str, hname: &str) -> String {
        let want = alg.name();
        // The challenge for `alg` if offered, else any: our nonces are not
        // tied to an algorithm (a client may answer MD5's with SHA-256).
        let offered: Vec<String> = ch
            .headers
            .iter()
            .filter(|(n, _)| n == hname)
            .map(|(_, v)| v.clone())
            .collect();
        let c = offered
            .iter()
            .find(|v| v.contains(&format!("algorithm={want},")))
            .or(offered.first())
            .expect("a challenge")
            .clone();
        let nonce = c
            .split("nonce=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("nonce")
            .to_string();
        self.nc += 1;
        let mut cr = digest::Credentials {
            username: self.user.clone(),
            realm: REALM.into(),
            nonce: nonce.clone(),
            uri: uri.into(),
            response: String::new(),
            algorithm: want.into(),
            cnonce: "cn".into(),
            qop: "auth".into(),
            nc: format!("{:08x}", self.nc),
        };
        let ha1 = digest::ha1(alg, &self.user, REALM, &self.pass);
        cr.response = digest::expected_response(alg, &ha1, method, &cr);
        format!(
            "Digest username=\"{}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{}\", algorithm={want}, qop=auth, nc={}, cnonce=\"cn\"",
            self.user, cr.response, cr.nc
        )
    }
}

/// Feeds one message and returns the transmitted messages (parsed) with
/// their destination, plus the other outputs.
fn feed_raw(
    core: &mut Core,
    now: u64,
    src: Source,
    data: &str,
) -> (Vec<(Source, Msg)>, Vec<Output>) {
    core.handle_datagram(now, src, data.as_bytes());
    drain(core)
}

fn directory(key: &Lookup) -> Option<Account> {
    let all = [
        account("alice", "1000", "pa"),
        account("bob", "1001", "pb"),
        account("carol", "1002", "pc"),
    ];
    all.into_iter().find(|a| match key {
        Lookup::Username(u) => &a.username == u,
        Lookup::Extension(e) => &a.extension == e,
    })
}

/// Like `feed_raw`, answering account lookups from `directory` as the shell would.
fn feed(core: &mut Core, now: u64, src: Source, data: &str) -> (Vec<(Source, Msg)>, Vec<Output>) {
    let (mut sent, mut outs) = feed_raw(core, now, src, data);
    while let Some(i) = outs.iter().position(|o| matches!(o, Output::Lookup(_))) {
        let Output::Lookup(key) = outs.remove(i) else {
            unreachable!()
        };
        core.handle_lookup(now, key.clone(), directory(&key));
        let (s, o) = drain(core);
        sent.extend(s);
        outs.extend(o);
    }
    (sent, outs)
}

fn drain(core: &mut Core) -> (Vec<(Source, Msg)>, Vec<Output>) {
    let mut sent = Vec::new();
    let mut other = Vec::new();
    while let Some(o) = core.poll_output() {
        match o {
            Output::Transmit { to, data } => sent.push((
                to,
                Msg::parse(&data, &Limits::default()).expect("we send valid SIP"),
            )),
            o => other.push(o),
        }
    }
    (sent, other)
}

fn registered_core() -> (Core, Ua, Ua, Ua) {
    registered_core_with(cfg())
}

fn registered_core_with(c: CoreConfig) -> (Core, Ua, Ua, Ua) {
    let mut core = Core::new(c);
    core.cache_account(account("alice", "1000", "pa"));
    core.cache_account(account("bob", "1001", "pb"));
    let mut a = Ua::new("alice", "pa", udp(5071));
    let mut b1 = Ua::new("bob", "pb", udp(5072));
    let b2 = Ua::new("bob", "pb", udp(5073));
    do_register(&mut core, &mut a, "<sip:alice@127.0.0.1:5071>");
    do_register(&mut core, &mut b1, "<sip:bob@127.0.0.1:5072>");
    let mut b2m = Ua::new("bob", "pb", udp(5073));
    do_register(&mut core, &mut b2m, "<sip:bob@127.0.0.1:5073>");
    (core, a, b1, b2)
}

fn do_register(core: &mut Core, ua: &mut Ua, contact: &str) -> Msg {
    let src = ua.src;
    let r = ua.register(contact, Some(300), None);
    let (sent, _) = feed(core, 1_000, src, &r);
    assert_eq!(sent[0].1.code(), Some(401));
    let ch = sent[0].1.clone();
    let r = ua.register(contact, Some(300), Some((&ch, Algorithm::Sha256)));
    let (sent, _) = feed(core, 1_000, src, &r);
    assert_eq!(sent[0].1.code(), Some(200), "{:?}", sent[0].1);
    sent[0].1.clone()
}

#[test]
fn register_challenge_then_ok_with_both_algorithms() {
    let mut core = Core::new(cfg());
    core.cache_account(account("alice", "1000", "pa"));
    let mut ua = Ua::new("alice", "pa", udp(5071));
    let (sent, _) = feed(
        &mut core,
        0,
        ua.src,
        &ua.register("<sip:alice@127.0.0.1:5071>", None, None),
    );
    let ch = &sent[0].1;
    assert_eq!(ch.code(), Some(401));
    let www: Vec<_> = ch
        .headers
        .iter()
        .filter(|(n, _)| n == "WWW-Authenticate")
        .map(|(_, v)| v.clone())
        .collect();
    // One MD5 challenge by default; a SHA-256 answer to it is accepted too.
    assert!(
        www.len() == 1 && www[0].contains("algorithm=MD5"),
        "{www:?}"
    );
    let ch = ch.clone();
    let (sent, other) = feed(
        &mut core,
        10,
        ua.src,
        &ua.register(
            "<sip:alice@127.0.0.1:5071>",
            None,
            Some((&ch, Algorithm::Md5)),
        ),
    );
    let ok = &sent[0].1;
    assert_eq!(ok.code(), Some(200));
    assert_eq!(
        ok.header_list("Contact"),
        ["<sip:alice@127.0.0.1:5071>;expires=600"]
    );
    assert!(other
        .iter()
        .any(|o| matches!(o, Output::Store(StoreOp::Save(r)) if r.username == "alice")));
    assert!(other.iter().any(|o| matches!(
        o,
        Output::Store(StoreOp::State {
            registered: true,
            contacts: 1,
            ..
        })
    )));
    // Same nonce, next nc, SHA-256: accepted (nonce reuse is fine, replay is not).
    let (sent, _) = feed(
        &mut core,
        20,
        ua.src,
        &ua.register(
            "<sip:alice@127.0.0.1:5071>",
            Some(120),
            Some((&ch, Algorithm::Sha256)),
        ),
    );
    assert_eq!(sent[0].1.code(), Some(200));
    assert_eq!(core.registered_contacts(), 1);
}

#[test]
fn md5_only_unless_the_client_is_listed_or_already_uses_sha256() {
    let mut c = cfg();
    c.sha256_user_agents = vec!["linphone".into()];
    let mut core = Core::new(c);
    core.cache_account(account("alice", "1000", "pa"));
    let mut ua = Ua::new("alice", "pa", udp(5071));
    let challenges = |core: &mut Core, req: String| -> Vec<String> {
        let (sent, _) = feed(core, 0, udp(5071), &req);
        assert_eq!(sent[0].1.code(), Some(401));
        sent[0]
            .1
            .headers
            .iter()
            .filter(|(n, _)| n == "WWW-Authenticate")
            .map(|(_, v)| v.clone())
            .collect()
    };
    let plain = ua.register("<sip:alice@127.0.0.1:5071>", None, None);
    let only = challenges(&mut core, plain.clone());
    assert_eq!(only.len(), 1, "{only:?}");
    assert!(only[0].contains("algorithm=MD5"), "{only:?}");

    let listed = plain.replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nUser-Agent: Linphone-Desktop/5.2 (belle-sip/5.2)\r\n",
    );
    let both = challenges(&mut core, listed);
    assert_eq!(both.len(), 2, "{both:?}");
    assert!(both[0].contains("algorithm=SHA-256"), "{both:?}");
    assert!(both[1].contains("algorithm=MD5"), "{both:?}");

    // A client that answered with SHA-256 (here with a wrong password) is
    // challenged with SHA-256 again, so it is never downgraded.
    let ch = {
        let (sent, _) = feed(&mut core, 0, udp(5071), &plain);
        sent[0].1.clone()
    };
    let mut wrong = Ua::new("alice", "nope", udp(5071));
    let sha = wrong.register(
        "<sip:alice@127.0.0.1:5071>",
        None,
        Some((&ch, Algorithm::Sha256)),
    );
    assert_eq!(challenges(&mut core, sha).len(), 2);
}

#[test]
fn replayed_nc_wrong_password_unknown_user_and_ban() {
    let mut core = Core::new(cfg());
    core.cache_account(account("alice", "1000", "pa"));
    let mut ua = Ua::new("alice", "pa", udp(5071));
    let (sent, _) = feed(
        &mut core,
        0,
        ua.src,
        &ua.register("<sip:a@127.0.0.1>", None, None),
    );
    let ch = sent[0].1.clone();
    let good = ua.register("<sip:a@127.0.0.1>", None, Some((&ch, Algorithm::Md5)));
    assert_eq!(feed(&mut core, 10, ua.src, &good).0[0].1.code(), Some(200));
    // Replay with a new branch but the same nc: refused.
    let replay = good
        .replace(";rport", ";x=1;rport")
        .replace("z9hG4bKalice5071x2", "z9hG4bKreplay");
    let (sent, _) = feed(&mut core, 10_000, ua.src, &replay);
    assert_eq!(sent[0].1.code(), Some(401));

    // Unknown user and wrong password get the same answer shape.
    let mut ghost = Ua::new("ghost", "x", udp(5090));
    let (sent, _) = feed(
        &mut core,
        20,
        ghost.src,
        &ghost.register("<sip:g@127.0.0.1>", None, None),
    );
    let gch = sent[0].1.clone();
    let (sent, outs) = feed_raw(
        &mut core,
        21,
        ghost.src,
        &ghost.register("<sip:g@127.0.0.1>", None, Some((&gch, Algorithm::Md5))),
    );
    // Not cached: the core asks the shell and parks the request.
    assert!(sent.is_empty());
    assert_eq!(outs, [Output::Lookup(Lookup::Username("ghost".into()))]);
    core.handle_lookup(22, Lookup::Username("ghost".into()), None);
    let (sent, _) = drain(&mut core);
    let unknown = sent[0].1.clone();
    let mut bad = Ua::new("alice", "wrong", udp(5091));
    let (sent, _) = feed(
        &mut core,
        30,
        bad.src,
        &bad.register("<sip:a@127.0.0.1>", None, None),
    );
    let bch = sent[0].1.clone();
    let (sent, outs) = feed(
        &mut core,
        31,
        bad.src,
        &bad.register("<sip:a@127.0.0.1>", None, Some((&bch, Algorithm::Md5))),
    );
    let wrong = sent[0].1.clone();
    // The failure that starts the ban is reported once, for the live view.
    let notices: Vec<_> = outs
        .iter()
        .filter(|o| matches!(o, Output::Security(_)))
        .collect();
    assert_eq!(
        notices,
        [&Output::Security(SecurityNotice::AddressBanned {
            ip: bad.src.peer.ip()
        })]
    );
    assert_eq!(unknown.code(), Some(401));
    assert_eq!(wrong.code(), Some(401));
    let names = |m: &Msg| m.headers.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&unknown), names(&wrong));

    // Replay, unknown user, wrong password: the third failure from
    // 127.0.0.1 starts the ban and further requests are dropped.
    assert_eq!(core.banned(41).len(), 1);
    let (sent, _) = feed(
        &mut core,
        50,
        ua.src,
        &ua.register("<sip:a@127.0.0.1>", None, None),
    );
    assert!(sent.is_empty());
    assert!(core.banned(400_000).is_empty());
}

#[test]
fn stale_cached_secret_is_reloaded_once() {
    let mut core = Core::new(cfg());
    // Cached with an old password; the directory has the new one.
    core.cache_account(account("alice", "1000", "old"));
    let mut ua = Ua::new("alice", "pa", udp(5071));
    let (sent, _) = feed(
        &mut core,
        10_000,
        ua.src,
        &ua.register("<sip:a@127.0.0.1>", None, None),
    );
    let ch = sent[0].1.clone();
    let (sent, outs) = feed_raw(
        &mut core,
        10_001,
        ua.src,
        &ua.register("<sip:a@127.0.0.1>", None, Some((&ch, Algorithm::Md5))),
    );
    assert!(sent.is_empty());
    assert_eq!(outs, [Output::Lookup(Lookup::Username("alice".into()))]);
    core.handle_lookup(
        10_002,
        Lookup::Username("alice".into()),
        directory(&Lookup::Username("alice".into())),
    );
    let (sent, _) = drain(&mut core);
    assert_eq!(sent[0].1.code(), Some(200));
    assert!(core.banned(10_003).is_empty());
}

#[test]
fn stale_nonce_is_rechallenged_with_stale_true() {
    let mut core = Core::new(cfg());
    core.cache_account(account("alice", "1000", "pa"));
    let mut ua = Ua::new("alice", "pa", udp(5071));
    let (sent, _) = feed(
        &mut core,
        0,
        ua.src,
        &ua.register("<sip:a@127.0.0.1>", None, None),
    );
    let ch = sent[0].1.clone();
    let late = ua.register("<sip:a@127.0.0.1>", None, Some((&ch, Algorithm::Sha256)));
    let (sent, _) = feed(&mut core, 61_000, ua.src, &late);
    let r = &sent[0].1;
    assert_eq!(r.code(), Some(401));
    assert!(r
        .header("WWW-Authenticate")
        .unwrap_or("")
        .contains("stale=true"));
    assert!(core.banned(61_000).is_empty());
}

#[test]
fn expires_bounds_unregister_fetch_and_max_contacts() {
    let (mut core, _a, mut b, _) = registered_core();
    assert_eq!(core.bindings("bob").len(), 2);
    let (sent, _) = feed(
        &mut core,
        2_000,
        b.src,
        &b.register("<sip:bob@127.0.0.1:5072>", Some(10), None),
    );
    let ch = sent[0].1.clone();
    let (sent, _) = feed(
        &mut core,
        2_000,
        b.src,
        &b.register(
            "<sip:bob@127.0.0.1:5072>",
            Some(10),
            Some((&ch, Algorithm::Md5)),
        ),
    );
    assert_eq!(sent[0].1.code(), Some(423));
    assert_eq!(sent[0].1.header("Min-Expires"), Some("60"));
    // Fetch: no Contact lists the current bindings.
    let (sent, _) = feed(
        &mut core,
        2_000,
        b.src,
        &b.register("", None, Some((&ch, Algorithm::Md5))),
    );
    assert_eq!(sent[0].1.header_list("Contact").len(), 2);
    // Max 3 contacts: the 4th replaces the one expiring first.
    for port in [6001, 6002] {
        let (sent, _) = feed(
            &mut core,
            3_000,
            b.src,
            &b.register(
                &format!("<sip:bob@127.0.0.1:{port}>;expires=100"),
                None,
                Some((&ch, Algorithm::Md5)),
            ),
        );
        assert_eq!(sent[0].1.code(), Some(200));
    }
    assert_eq!(core.bindings("bob").len(), 3);
    // Expires: 0 removes one; * removes all.
    let (sent, _) = feed(
        &mut core,
        4_000,
        b.src,
        &b.register(
            "<sip:bob@127.0.0.1:6002>",
            Some(0),
            Some((&ch, Algorithm::Md5)),
        ),
    );
    assert_eq!(sent[0].1.header_list("Contact").len(), 2);
    let (sent, other) = feed(
        &mut core,
        4_000,
        b.src,
        &b.register("*", Some(0), Some((&ch, Algorithm::Md5))),
    );
    assert_eq!(sent[0].1.code(), Some(200));
    assert!(core.bindings("bob").is_empty());
    assert!(other.contains(&Output::Store(StoreOp::RemoveAll {
        username: "bob".into()
    })));
    // Contacts expire on their own.
    assert_eq!(core.bindings("alice").len(), 1);
    core.handle_timeout(302_000);
    assert!(core.bindings("alice").is_empty());
}

fn invite(ua: &mut Ua, to_ext: &str, call_id: &str, auth: Option<&Msg>) -> String {
    ua.cseq += 1;
    let mut s = format!(
        "INVITE sip:{to_ext}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKinv{c}\r\nMax-Forwards: 70\r\nFrom: <sip:{u}@127.0.0.1>;tag=ftag\r\nTo: <sip:{to_ext}@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: {c} INVITE\r\nContact: <sip:{u}@127.0.0.1:{p}>\r\nContent-Type: application/sdp\r\n",
        p = ua.src.peer.port(),
        u = ua.user,
        c = ua.cseq
    );
    if let Some(ch) = auth {
        let a = ua.answer(
            ch,
            Algorithm::Md5,
            "INVITE",
            &format!("sip:{to_ext}@127.0.0.1"),
            "Proxy-Authenticate",
        );
        s.push_str(&format!("Proxy-Authorization: {a}\r\n"));
    }
    s.push_str("Content-Length: 8\r\n\r\nv=0\r\nx=1");
    s
}

/// Caller alice invites `ext`; returns the forks' INVITEs.
fn start_call(
    core: &mut Core,
    a: &mut Ua,
    ext: &str,
    now: u64,
) -> (Vec<(Source, Msg)>, Vec<Output>) {
    let (sent, _) = feed(core, now, a.src, &invite(a, ext, "call-1", None));
    assert_eq!(sent[0].1.code(), Some(407));
    let ch = sent[0].1.clone();
    // ACK the 407 (hop by hop): absorbed.
    let ack = format!(
        "ACK sip:{ext}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKinv{c}\r\nFrom: <sip:alice@127.0.0.1>;tag=ftag\r\nTo: {to}\r\nCall-ID: call-1\r\nCSeq: {c} ACK\r\nContent-Length: 0\r\n\r\n",
        c = a.cseq,
        to = ch.header("To").unwrap_or("")
    );
    assert!(feed(core, now, a.src, &ack).0.is_empty());
    feed(core, now, a.src, &invite(a, ext, "call-1", Some(&ch)))
}

fn reply_to(req: &Msg, code: u16, tag: &str, body: &str) -> String {
    let mut r = response(req, code, "X", Some(tag));
    r.headers
        .push(("Contact".into(), "<sip:bob@127.0.0.1:5072>".into()));
    if !body.is_empty() {
        r.headers
            .push(("Content-Type".into(), "application/sdp".into()));
        r.body = body.as_bytes().to_vec();
    }
    String::from_utf8(r.to_bytes()).unwrap_or_default()
}

fn cdr_finish(outs: &[Output]) -> Option<HangupCause> {
    outs.iter().find_map(|o| match o {
        Output::Call(CallEvent {
            kind: CallEventKind::Ended { cause },
            ..
        }) => Some(*cause),
        _ => None,
    })
}

#[test]
fn answered_call_forks_cancels_loser_and_bye_from_callee() {
    let (mut core, mut a, b1, b2) = registered_core();
    let (sent, outs) = start_call(&mut core, &mut a, "1001", 5_000);
    assert_eq!(sent[0].1.code(), Some(100));
    let forks: Vec<_> = sent[1..].to_vec();
    assert_eq!(forks.len(), 2);
    assert!(outs.iter().any(|o| matches!(o, Output::Call(CallEvent { kind: CallEventKind::Started { caller, callee, .. }, .. }) if caller.number == "1000" && callee.number == "1001")));
    assert_eq!(forks[0].1.body, b"v=0\r\nx=1");
    assert!(forks
        .iter()
        .all(|(_, m)| m.header("Contact").unwrap_or("").contains("127.0.0.1:5060")));
    // Fork 2 rings; the caller hears it.
    let (sent, _) = feed(
        &mut core,
        5_100,
        b2.src,
        &reply_to(&forks[1].1, 180, "t2", ""),
    );
    assert_eq!(sent[0].1.code(), Some(180));
    assert_eq!(sent[0].0, a.src);
    // Fork 1 answers: 200 to the caller with the callee's SDP, CANCEL to fork 2.
    let (sent, outs) = feed(
        &mut core,
        6_000,
        b1.src,
        &reply_to(&forks[0].1, 200, "t1", "v=0 b"),
    );
    let ok = sent
        .iter()
        .find(|(to, _)| *to == a.src)
        .expect("200 to caller");
    assert_eq!(ok.1.code(), Some(200));
    assert_eq!(ok.1.body, b"v=0 b");
    assert!(sent
        .iter()
        .any(|(to, m)| *to == b2.src && m.method() == Some("CANCEL")));
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Call(CallEvent {
            kind: CallEventKind::Answered { leg: 1 },
            ..
        })
    )));
    // No ACK yet: the 200 is retransmitted on UDP.
    core.handle_timeout(6_600);
    let (sent, _) = drain(&mut core);
    assert!(sent
        .iter()
        .any(|(to, m)| *to == a.src && m.code() == Some(200)));
    // Caller ACKs: the winner gets an ACK end to end.
    let a_tag = msg::tag(ok.1.header("To").unwrap_or(""))
        .unwrap_or("")
        .to_string();
    let ack = format!(
        "ACK sip:centralita@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKack1\r\nFrom: <sip:alice@127.0.0.1>;tag=ftag\r\nTo: <sip:1001@127.0.0.1>;tag={a_tag}\r\nCall-ID: call-1\r\nCSeq: {} ACK\r\nContent-Length: 0\r\n\r\n",
        a.cseq
    );
    let (sent, _) = feed(&mut core, 6_700, a.src, &ack);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, b1.src);
    assert_eq!(sent[0].1.method(), Some("ACK"));
    let b_ack = sent[0].1.clone();
    // Fork 2 answers 487 to the CANCEL and gets a hop-by-hop ACK.
    let (sent, _) = feed(
        &mut core,
        6_800,
        b2.src,
        &reply_to(&forks[1].1, 487, "t2", ""),
    );
    assert_eq!(sent[0].1.method(), Some("ACK"));
    // Well past 32 s nothing is retransmitted and the call is still up.
    core.handle_timeout(40_000);
    let (sent, _) = drain(&mut core);
    assert!(sent.is_empty(), "{sent:?}");
    assert_eq!(core.active_calls(), 1);
    // re-INVITE (hold) from the callee is relayed to the caller.
    let reinv = format!(
        "INVITE sip:centralita@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5072;branch=z9hG4bKre1\r\nFrom: <sip:1001@127.0.0.1>;tag=t1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 2 INVITE\r\nContact: <sip:bob@127.0.0.1:5072>\r\nContent-Type: application/sdp\r\nContent-Length: 10\r\n\r\na=sendonly",
        b_ack.header("From").unwrap_or(""),
        b_ack.call_id()
    );
    let (sent, _) = feed(&mut core, 41_000, b1.src, &reinv);
    assert_eq!(sent[0].0, a.src);
    assert_eq!(sent[0].1.method(), Some("INVITE"));
    assert_eq!(sent[0].1.body, b"a=sendonly");
    let fwd = sent[0].1.clone();
    let (sent, _) = feed(
        &mut core,
        41_100,
        a.src,
        &reply_to(&fwd, 200, "ftag", "a=recvonly"),
    );
    assert_eq!(sent[0].0, b1.src);
    assert_eq!(sent[0].1.code(), Some(200));
    // Callee hangs up.
    let bye = reinv
        .replace("INVITE sip", "BYE sip")
        .replace("2 INVITE", "3 BYE")
        .replace("z9hG4bKre1", "z9hG4bKbye1");
    let bye =
        bye.split("Content-Type").next().unwrap_or("").to_string() + "Content-Length: 0\r\n\r\n";
    let (sent, outs) = feed(&mut core, 50_000, b1.src, &bye);
    assert!(sent
        .iter()
        .any(|(to, m)| *to == b1.src && m.code() == Some(200)));
    assert!(sent
        .iter()
        .any(|(to, m)| *to == a.src && m.method() == Some("BYE")));
    assert_eq!(cdr_finish(&outs), Some(HangupCause::CalleeBye));
    assert_eq!(core.active_calls(), 0);
}

#[test]
fn busy_everywhere_is_busy() {
    let (mut core, mut a, b1, b2) = registered_core();
    let (sent, _) = start_call(&mut core, &mut a, "bob", 5_000);
    let forks: Vec<_> = sent[1..].to_vec();
    let (sent, _) = feed(
        &mut core,
        5_100,
        b1.src,
        &reply_to(&forks[0].1, 486, "t1", ""),
    );
    assert_eq!(sent.len(), 1); // only the ACK
    let (sent, outs) = feed(
        &mut core,
        5_200,
        b2.src,
        &reply_to(&forks[1].1, 603, "t2", ""),
    );
    assert!(sent
        .iter()
        .any(|(to, m)| *to == a.src && m.code() == Some(486)));
    assert_eq!(cdr_finish(&outs), Some(HangupCause::Busy));
}

#[test]
fn ring_timeout_is_no_answer_and_cancel_is_cancelled() {
    let (mut core, mut a, _b1, _b2) = registered_core();
    let (_sent, _) = start_call(&mut core, &mut a, "1001", 5_000);
    core.handle_timeout(20_000);
    assert!(cdr_finish(&drain(&mut core).1).is_none());
    core.handle_timeout(35_001);
    let (sent, outs) = drain(&mut core);
    assert!(sent
        .iter()
        .any(|(to, m)| *to == a.src && m.code() == Some(480)));
    assert_eq!(
        sent.iter()
            .filter(|(_, m)| m.method() == Some("CANCEL"))
            .count(),
        2
    );
    assert_eq!(cdr_finish(&outs), Some(HangupCause::NoAnswer));

    let (mut core, mut a, _b1, _b2) = registered_core();
    let (_sent, _) = start_call(&mut core, &mut a, "1001", 5_000);
    let cancel = format!(
        "CANCEL sip:1001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKinv{c}\r\nFrom: <sip:alice@127.0.0.1>;tag=ftag\r\nTo: <sip:1001@127.0.0.1>\r\nCall-ID: call-1\r\nCSeq: {c} CANCEL\r\nContent-Length: 0\r\n\r\n",
        c = a.cseq
    );
    let (sent, outs) = feed(&mut core, 6_000, a.src, &cancel);
    let codes: Vec<_> = sent
        .iter()
        .filter(|(to, _)| *to == a.src)
        .filter_map(|(_, m)| m.code())
        .collect();
    assert_eq!(codes, [200, 487]);
    assert_eq!(cdr_finish(&outs), Some(HangupCause::Cancelled));
}

#[test]
fn unknown_and_unregistered_callees_fail() {
    let (mut core, mut a, _, _) = registered_core();
    let (sent, _) = feed(
        &mut core,
        5_000,
        a.src,
        &invite(&mut a, "4242", "call-9", None),
    );
    let ch = sent[0].1.clone();
    let (sent, outs) = feed_raw(
        &mut core,
        5_000,
        a.src,
        &invite(&mut a, "4242", "call-9", Some(&ch)),
    );
    assert!(sent.is_empty());
    assert_eq!(outs, [Output::Lookup(Lookup::Extension("4242".into()))]);
    core.handle_lookup(5_001, Lookup::Extension("4242".into()), None);
    let (sent, outs) = drain(&mut core);
    assert!(sent.is_empty());
    assert_eq!(outs, [Output::Lookup(Lookup::Username("4242".into()))]);
    core.handle_lookup(5_002, Lookup::Username("4242".into()), None);
    let (sent, outs) = drain(&mut core);
    assert_eq!(sent[0].1.code(), Some(404));
    assert_eq!(cdr_finish(&outs), Some(HangupCause::NotFound));

    core.cache_account(account("carol", "1002", "pc"));
    a.cseq += 1;
    let (sent, _) = feed(
        &mut core,
        6_000,
        a.src,
        &invite(&mut a, "1002", "call-2", None),
    );
    let ch = sent[0].1.clone();
    let (sent, outs) = feed(
        &mut core,
        6_000,
        a.src,
        &invite(&mut a, "1002", "call-2", Some(&ch)),
    );
    assert_eq!(sent[0].1.code(), Some(480));
    assert_eq!(cdr_finish(&outs), Some(HangupCause::NotRegistered));
}

#[test]
fn options_and_malformed() {
    let mut core = Core::new(cfg());
    let opt = "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKo\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let (sent, _) = feed(&mut core, 0, udp(9), opt);
    assert_eq!(sent[0].1.code(), Some(200));
    // Retransmission absorbed: same answer, nothing reprocessed.
    let (sent, _) = feed(&mut core, 500, udp(9), opt);
    assert_eq!(sent[0].1.code(), Some(200));
    let bad = opt
        .replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE")
        .replace("z9hG4bKo", "z9hG4bKp");
    let (sent, _) = feed(&mut core, 0, udp(9), &bad);
    assert_eq!(sent[0].1.code(), Some(400));
    let hopeless = "INVITE sip:x@y SIP/2.0\r\nFoo: bar\r\n\r\n";
    let (sent, _) = feed(&mut core, 0, udp(9), hopeless);
    assert!(sent.is_empty());
    let v = opt.replace(
        "OPTIONS sip:127.0.0.1 SIP/2.0",
        "OPTIONS sip:127.0.0.1 SIP/7.0",
    );
    let (sent, _) = feed(&mut core, 0, udp(9), &v);
    assert_eq!(sent[0].1.code(), Some(505));
}

#[test]
fn update_from_the_caller_is_relayed_and_answered_back() {
    let (mut core, mut a, b1, _b2) = registered_core();
    let (sent, _) = start_call(&mut core, &mut a, "1001", 5_000);
    let forks: Vec<_> = sent[1..].to_vec();
    let (sent, _) = feed(
        &mut core,
        6_000,
        b1.src,
        &reply_to(&forks[0].1, 200, "t1", "v=0 b"),
    );
    let ok = sent
        .iter()
        .find(|(to, _)| *to == a.src)
        .expect("200 to caller")
        .1
        .clone();
    let a_tag = msg::tag(ok.header("To").unwrap_or(""))
        .unwrap_or("")
        .to_string();
    let in_dialog = |method: &str, cseq: u32, branch: &str, body: &str| {
        format!(
            "{method} sip:centralita@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch={branch}\r\nFrom: <sip:alice@127.0.0.1>;tag=ftag\r\nTo: <sip:1001@127.0.0.1>;tag={a_tag}\r\nCall-ID: call-1\r\nCSeq: {cseq} {method}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let ack = in_dialog("ACK", a.cseq, "z9hG4bKa1", "");
    assert_eq!(feed(&mut core, 6_100, a.src, &ack).0.len(), 1);
    let (sent, _) = feed(
        &mut core,
        7_000,
        a.src,
        &in_dialog("UPDATE", 10, "z9hG4bKu1", "v=0 upd"),
    );
    assert_eq!(sent.len(), 1);
    let (to, fwd) = &sent[0];
    assert_eq!(*to, b1.src);
    assert_eq!(fwd.method(), Some("UPDATE"));
    assert_eq!(fwd.body, b"v=0 upd");
    // The callee's dialog: its own Call-ID and tags, our next CSeq.
    assert_eq!(fwd.call_id(), forks[0].1.call_id());
    assert_eq!(fwd.cseq(), (2, "UPDATE"));
    let (sent, _) = feed(
        &mut core,
        7_100,
        b1.src,
        &reply_to(fwd, 200, "t1", "v=0 upd-ok"),
    );
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, a.src);
    assert_eq!(sent[0].1.code(), Some(200));
    assert_eq!(sent[0].1.cseq(), (10, "UPDATE"));
    assert_eq!(sent[0].1.body, b"v=0 upd-ok");
    // A retransmitted UPDATE is answered from the cache, not relayed again.
    let (sent, _) = feed(
        &mut core,
        7_500,
        a.src,
        &in_dialog("UPDATE", 10, "z9hG4bKu1", "v=0 upd"),
    );
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, a.src);
    assert_eq!(sent[0].1.code(), Some(200));
}

#[test]
fn a_lost_connection_ends_its_calls() {
    let (mut core, _a, b1, b2) = registered_core();
    // The caller is a browser on WebSocket flow 7.
    let ws = Source {
        flow: 7,
        transport: Transport::Ws,
        peer: SocketAddr::from(([127, 0, 0, 1], 40_000)),
    };
    let mut a = Ua::new("alice", "pa", ws);
    let (sent, _) = start_call(&mut core, &mut a, "1001", 5_000);
    let forks: Vec<_> = sent[1..].to_vec();
    let (sent, _) = feed(
        &mut core,
        6_000,
        b1.src,
        &reply_to(&forks[0].1, 200, "t1", "v=0 b"),
    );
    assert!(sent
        .iter()
        .any(|(to, m)| *to == ws && m.code() == Some(200)));
    // The tab reloads: the callee gets a BYE, the CDR closes.
    core.handle_flow_closed(7_000, 7);
    let (sent, outs) = drain(&mut core);
    assert!(sent
        .iter()
        .any(|(to, m)| *to == b1.src && m.method() == Some("BYE")));
    assert_eq!(cdr_finish(&outs), Some(HangupCause::CallerConnectionLost));
    assert_eq!(core.active_calls(), 0);

    // Same while ringing (once the first call has been forgotten): the forks
    // are cancelled.
    core.handle_timeout(16_000);
    let _ = drain(&mut core);
    let (sent, _) = start_call(&mut core, &mut a, "1001", 16_500);
    assert_eq!(sent.len(), 3);
    core.handle_flow_closed(17_000, 7);
    let (sent, outs) = drain(&mut core);
    assert_eq!(
        sent.iter()
            .filter(|(_, m)| m.method() == Some("CANCEL"))
            .count(),
        2
    );
    assert!(sent.iter().all(|(to, _)| *to == b1.src || *to == b2.src));
    assert_eq!(cdr_finish(&outs), Some(HangupCause::CallerConnectionLost));
}

#[test]
fn a_failed_lookup_drops_the_request_and_caches_nothing() {
    let mut core = Core::new(cfg());
    let mut ua = Ua::new("alice", "pa", udp(5071));
    let (sent, _) = feed_raw(
        &mut core,
        0,
        ua.src,
        &ua.register("<sip:a@127.0.0.1>", None, None),
    );
    let ch = sent[0].1.clone();
    let r = ua.register("<sip:a@127.0.0.1>", None, Some((&ch, Algorithm::Md5)));
    let (sent, outs) = feed_raw(&mut core, 1, ua.src, &r);
    assert!(sent.is_empty());
    assert_eq!(outs, [Output::Lookup(Lookup::Username("alice".into()))]);
    core.handle_lookup_failed(Lookup::Username("alice".into()));
    assert!(drain(&mut core).0.is_empty());
    // The retransmission asks again (nothing negative was cached) and succeeds.
    let (_, outs) = feed_raw(&mut core, 500, ua.src, &r);
    assert_eq!(outs, [Output::Lookup(Lookup::Username("alice".into()))]);
    core.handle_lookup(
        501,
        Lookup::Username("alice".into()),
        directory(&Lookup::Username("alice".into())),
    );
    assert_eq!(drain(&mut core).0[0].1.code(), Some(200));
}

/// alice calls bob (two contacts) with `extra` headers in her INVITE; the
/// first contact answers with `answer_extra` headers; alice ACKs. Returns
/// the 200 alice got and the ACK bob got.
fn answered_call(
    core: &mut Core,
    a: &mut Ua,
    b1: &Ua,
    now: u64,
    extra: &str,
    answer_extra: &[(&str, &str)],
) -> (Msg, Msg) {
    let (sent, _) = feed(
        core,
        now,
        a.src,
        &invite(a, "1001", "call-1", None).replace("Max-Forwards", &format!("{extra}Max-Forwards")),
    );
    let ch = sent[0].1.clone();
    let inv = invite(a, "1001", "call-1", Some(&ch))
        .replace("Max-Forwards", &format!("{extra}Max-Forwards"));
    let (sent, _) = feed(core, now, a.src, &inv);
    assert_eq!(sent[0].1.code(), Some(100), "{sent:?}");
    let fork = sent
        .iter()
        .find(|(to, m)| *to == b1.src && m.method() == Some("INVITE"))
        .expect("fork to b1")
        .1
        .clone();
    let mut ok = Msg::parse(
        reply_to(&fork, 200, "t1", "v=0 b").as_bytes(),
        &Limits::default(),
    )
    .expect("valid");
    for (n, v) in answer_extra {
        ok.headers.push((n.to_string(), v.to_string()));
    }
    let (sent, _) = feed(
        core,
        now + 100,
        b1.src,
        &String::from_utf8_lossy(&ok.to_bytes()),
    );
    let to_a = sent
        .iter()
        .find(|(to, m)| *to == a.src && m.code() == Some(200))
        .expect("200 to caller")
        .1
        .clone();
    let a_tag = msg::tag(to_a.header("To").unwrap_or(""))
        .unwrap_or("")
        .to_string();
    let ack = format!(
        "ACK sip:centralita@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKack1\r\nFrom: <sip:alice@127.0.0.1>;tag=ftag\r\nTo: <sip:1001@127.0.0.1>;tag={a_tag}\r\nCall-ID: call-1\r\nCSeq: {} ACK\r\nContent-Length: 0\r\n\r\n",
        a.cseq
    );
    let (sent, _) = feed(core, now + 200, a.src, &ack);
    let b_ack = sent
        .iter()
        .find(|(to, m)| *to == b1.src && m.method() == Some("ACK"))
        .expect("ACK to b1")
        .1
        .clone();
    (to_a, b_ack)
}

fn ended_at(outs: &[Output]) -> Option<(HangupCause, u64)> {
    outs.iter().find_map(|o| match o {
        Output::Call(CallEvent {
            kind: CallEventKind::Ended { cause },
            at_ms,
            ..
        }) => Some((*cause, *at_ms)),
        _ => None,
    })
}

fn byes_to(sent: &[(Source, Msg)], who: Source) -> usize {
    sent.iter()
        .filter(|(to, m)| *to == who && m.method() == Some("BYE"))
        .count()
}

#[test]
fn session_timer_ends_a_call_whose_phone_vanished_and_refreshes_keep_it() {
    let mut c = cfg();
    c.session_expires_secs = 90;
    let (mut core, mut a, b1, _b2) = registered_core_with(c);
    let t0 = 10_000;
    let (to_a, b_ack) = answered_call(&mut core, &mut a, &b1, t0, "Supported: timer\r\n", &[]);
    // The caller supports timers and the callee did not answer with any:
    // the caller refreshes.
    assert_eq!(to_a.header("Session-Expires"), Some("90;refresher=uac"));
    assert_eq!(to_a.header("Require"), Some("timer"));
    let answered = t0 + 100;
    // A refresh (re-INVITE from the caller, answered by the callee) 40 s in.
    let a_tag = msg::tag(to_a.header("To").unwrap_or(""))
        .unwrap_or("")
        .to_string();
    let reinv = format!(
        "INVITE sip:centralita@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKref1\r\nFrom: <sip:alice@127.0.0.1>;tag=ftag\r\nTo: <sip:1001@127.0.0.1>;tag={a_tag}\r\nCall-ID: call-1\r\nCSeq: 10 INVITE\r\nContact: <sip:alice@127.0.0.1:5071>\r\nSession-Expires: 90;refresher=uac\r\nContent-Type: application/sdp\r\nContent-Length: 8\r\n\r\nv=0\r\nx=1"
    );
    let refresh_at = answered + 40_000;
    let (sent, _) = feed(&mut core, refresh_at, a.src, &reinv);
    let fwd = sent
        .iter()
        .find(|(to, m)| *to == b1.src && m.method() == Some("INVITE"))
        .expect("refresh relayed")
        .1
        .clone();
    assert_eq!(fwd.call_id(), b_ack.call_id());
    feed(
        &mut core,
        refresh_at + 50,
        b1.src,
        &reply_to(&fwd, 200, "t1", "v=0 b"),
    );
    // 60 s after the answer (90 - 30) nothing happens: the refresh counted.
    core.handle_timeout(answered + 61_000);
    let (sent, outs) = drain(&mut core);
    assert_eq!(
        byes_to(&sent, a.src) + byes_to(&sent, b1.src),
        0,
        "{sent:?}"
    );
    assert_eq!(ended_at(&outs), None);
    assert_eq!(core.active_calls(), 1);
    // Then nobody refreshes: BYE to both legs, billed to the last refresh.
    core.handle_timeout(refresh_at + 50 + 60_000);
    let (sent, outs) = drain(&mut core);
    assert_eq!(byes_to(&sent, a.src), 1, "{sent:?}");
    assert_eq!(byes_to(&sent, b1.src), 1, "{sent:?}");
    assert_eq!(
        ended_at(&outs),
        Some((HangupCause::SessionTimerExpired, refresh_at + 50))
    );
    assert_eq!(core.active_calls(), 0);
}

#[test]
fn callee_refreshes_when_the_caller_cannot() {
    let mut c = cfg();
    c.session_expires_secs = 600;
    let (mut core, mut a, b1, _b2) = registered_core_with(c);
    // No `Supported: timer` from the caller: the callee is asked to refresh.
    let (sent, _) = feed(
        &mut core,
        1_000,
        a.src,
        &invite(&mut a, "1001", "call-1", None),
    );
    let ch = sent[0].1.clone();
    let (sent, _) = feed(
        &mut core,
        1_000,
        a.src,
        &invite(&mut a, "1001", "call-1", Some(&ch)),
    );
    let fork = &sent.iter().find(|(to, _)| *to == b1.src).expect("fork").1;
    assert_eq!(fork.header("Session-Expires"), Some("600;refresher=uas"));
    assert!(fork.header_list("Supported").contains(&"timer"));
}

#[test]
fn maximum_call_duration_ends_the_call() {
    let mut c = cfg();
    c.max_call_duration_ms = 3_600_000;
    let (mut core, mut a, b1, _b2) = registered_core_with(c);
    let (_to_a, _b_ack) = answered_call(&mut core, &mut a, &b1, 1_000, "", &[]);
    assert!(core.poll_timeout() <= 1_100 + 3_600_000);
    core.handle_timeout(1_100 + 3_599_000);
    let (sent, _) = drain(&mut core);
    assert_eq!(byes_to(&sent, a.src), 0);
    core.handle_timeout(1_100 + 3_600_000);
    let (sent, outs) = drain(&mut core);
    assert_eq!(byes_to(&sent, a.src), 1);
    assert_eq!(byes_to(&sent, b1.src), 1);
    assert_eq!(
        ended_at(&outs),
        Some((HangupCause::MaxDuration, 1_100 + 3_600_000))
    );
}

#[test]
fn shutdown_ends_answered_and_ringing_calls() {
    let (mut core, mut a, b1, b2) = registered_core();
    answered_call(&mut core, &mut a, &b1, 1_000, "", &[]);
    // A second call from bob's first phone to alice, still ringing.
    let mut caller = Ua::new("bob", "pb", b1.src);
    caller.cseq = 50;
    let inv = invite(&mut caller, "1000", "call-2", None);
    let (sent, _) = feed(&mut core, 2_000, b1.src, &inv);
    let ch = sent[0].1.clone();
    let inv = invite(&mut caller, "1000", "call-2", Some(&ch));
    let (sent, _) = feed(&mut core, 2_000, b1.src, &inv);
    assert!(sent
        .iter()
        .any(|(to, m)| *to == a.src && m.method() == Some("INVITE")));
    assert_eq!(core.active_calls(), 2);
    core.handle_shutdown(3_000);
    let (sent, outs) = drain(&mut core);
    // Answered call: BYE both legs. Ringing call: CANCEL to alice, 503 to bob.
    assert_eq!(byes_to(&sent, a.src), 1, "{sent:?}");
    assert!(sent
        .iter()
        .any(|(to, m)| *to == b1.src && m.method() == Some("BYE")));
    assert!(sent
        .iter()
        .any(|(to, m)| *to == a.src && m.method() == Some("CANCEL")));
    assert!(sent
        .iter()
        .any(|(to, m)| *to == b1.src && m.code() == Some(503)));
    let ends = outs
        .iter()
        .filter(|o| {
            matches!(
                o,
                Output::Call(CallEvent {
                    kind: CallEventKind::Ended {
                        cause: HangupCause::Shutdown
                    },
                    ..
                })
            )
        })
        .count();
    assert_eq!(ends, 2);
    assert_eq!(core.active_calls(), 0);
    let _ = b2;
}
mod anchor;
mod attacks;
mod inbound_calls;
mod originate;
mod outbound_calls;
mod redial;
mod trunks;
