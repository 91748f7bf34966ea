//! The tokio AMI client against a peer on 127.0.0.1 that replays the
//! server bytes of the captured Asterisk 22 sessions (and variants derived
//! from them): login (plain and MD5), ActionID correlation of every action
//! in the transcript, keep-alive, reconnection, and the CDR the replayed
//! calls leave.

mod common;

use std::sync::Arc;
use std::time::Duration;

use asterisk::ami::calls::Endpoint;
use asterisk::ami::registrations::{RegistrationChange, TrunkRegState};
use asterisk::ami::{Action, AuthMode, Config};
use asterisk::shell::{AmiClient, ClientConfig, ClientEvent, OriginateRequest};
use common::{Chunk, Pacing, Peer, Script};
use domain::call_events::CallEvent;
use domain::calls::Disposition;
use domain::recorder::Recorder;
use tokio::sync::broadcast;

fn config(addr: &str, auth: AuthMode) -> ClientConfig {
    let mut s = Config::new("anchor", "anchorpass", auth);
    s.ping_interval = Duration::from_secs(60);
    s.action_timeout = Duration::from_secs(5);
    s.backoff_initial = Duration::from_millis(50);
    s.backoff_max = Duration::from_millis(200);
    ClientConfig::new(addr, s)
}

fn site() -> Arc<dyn asterisk::ami::calls::Directory + Send + Sync> {
    Arc::new(|name: &str| match name {
        "2000" | "2001" => Endpoint::Agent {
            agent_id: if name == "2000" { 20 } else { 21 },
            extension: name.to_string(),
        },
        "trunk-test" => Endpoint::Trunk {
            name: "trunk-test".into(),
        },
        _ => Endpoint::Other,
    })
}

async fn next_connected(rx: &mut broadcast::Receiver<ClientEvent>) -> String {
    let r = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match rx.recv().await {
                Ok(ClientEvent::Connected { banner }) => return banner,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("events ended: {e}"),
            }
        }
    })
    .await;
    r.expect("no Connected event within 5 s")
}

/// The transcript up to (excluding) the first client chunk after `upto`
/// client chunks: the login exchange and what follows it.
fn first_chunks(chunks: &[Chunk], client_chunks: usize) -> Vec<Chunk> {
    let mut n = 0;
    chunks
        .iter()
        .take_while(|c| {
            if !c.from_server {
                n += 1;
            }
            n <= client_chunks
        })
        .cloned()
        .collect()
}

/// Every action of the captured session, sent by the client in the same
/// order: each answer reaches its action and equals, field by field, what
/// Asterisk answered (ActionID aside), list answers with all their events.
#[tokio::test]
async fn every_transcript_action_gets_its_own_answer() {
    let chunks = common::transcript("ami-transcript.raw.jsonl");
    let peer = Peer::start(vec![Script::new(chunks.clone())]).await;
    let client = AmiClient::start(config(&peer.addr, AuthMode::Plain), site());
    let mut events = client.subscribe();
    let banner = next_connected(&mut events).await;
    assert_eq!(banner, "Asterisk Call Manager/11.0.0");
    let server = common::server_messages(&chunks);
    let mut checked = 0;
    for c in chunks.iter().filter(|c| !c.from_server) {
        let m = common::client_messages(&c.bytes).remove(0);
        let name = m.get("Action").expect("action").to_string();
        if name == "Login" || name == "Logoff" {
            continue;
        }
        let orig_id = m.action_id().expect("id").to_string();
        let mut action = Action::new(name.clone());
        for (k, v) in m.fields() {
            if k != "Action" && k != "ActionID" {
                action = action.field(k.clone(), v.clone());
            }
        }
        let resp = client.send_action(action).await.expect("answer");
        let want: Vec<_> = server
            .iter()
            .filter(|(_, s)| s.action_id() == Some(orig_id.as_str()))
            .map(|(_, s)| s)
            .collect();
        let strip = |m: &asterisk::ami::Message| -> Vec<(String, String)> {
            m.fields()
                .iter()
                .filter(|(k, _)| k != "ActionID")
                .cloned()
                .collect()
        };
        assert_eq!(strip(&resp.message), strip(want[0]), "{name}");
        // List answers carry their events; other events with the same id
        // (OriginateResponse of an async Originate) are plain events.
        if want[0].is("EventList", "start") {
            assert_eq!(resp.events.len(), want.len() - 1, "{name}");
            for (got, w) in resp.events.iter().zip(&want[1..]) {
                assert_eq!(strip(got), strip(w), "{name}");
            }
        } else {
            assert!(resp.events.is_empty(), "{name}");
        }
        assert_eq!(resp.is_success(), name != "NoSuchAction", "{name}");
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} actions");

    // The OriginateResponse events came as events, with the client's ids.
    let mut originate_responses = 0;
    let mut calls: Vec<CallEvent> = Vec::new();
    while let Ok(ev) = events.try_recv() {
        match ev {
            ClientEvent::Ami(m) if m.is("Event", "OriginateResponse") => {
                assert!(
                    m.action_id().is_some_and(|id| id.starts_with("c-")),
                    "{m:?}"
                );
                originate_responses += 1;
            }
            ClientEvent::Call(c) => calls.push(c),
            _ => {}
        }
    }
    assert_eq!(originate_responses, 3);
    // Three originated calls, all ended, all answered (by the dialplan),
    // as Asterisk's CDRs say.
    let mut r = Recorder::new();
    for c in &calls {
        r.apply(c).unwrap_or_else(|e| panic!("{c:?}: {e}"));
    }
    let rows = r.into_changes().calls;
    assert_eq!(rows.len(), 3);
    assert!(rows
        .iter()
        .all(|c| c.disposition == Some(Disposition::Answered) && c.end_ms.is_some()));
    // The client read the trunk's registration: from its own listing
    // after login, then from the Registry event.
    let st = client
        .with_registrations(|r| r.trunk("trunk-test").map(|t| t.state.clone()))
        .flatten();
    assert_eq!(st, Some(TrunkRegState::Registered));
    client.stop().await;
}

/// The SIP calls session replayed at its recorded pace (gaps capped): the
/// call events on the broadcast make the CDR Asterisk made.
#[tokio::test]
async fn replayed_calls_make_the_cdr() {
    let chunks = common::transcript("ami-transcript-sip-calls.raw.jsonl");
    // Up to the last event before the Logoff.
    let body: Vec<Chunk> = first_chunks(&chunks, 1);
    let mut script = Script::new(body);
    script.pacing = Pacing::Recorded {
        max_gap: Duration::from_millis(3200),
    };
    let peer = Peer::start(vec![script]).await;
    let client = AmiClient::start(config(&peer.addr, AuthMode::Plain), site());
    let mut events = client.subscribe();
    next_connected(&mut events).await;
    let mut calls = Vec::new();
    let mut cdr_billsec = Vec::new();
    let done = tokio::time::timeout(Duration::from_secs(20), async {
        let mut ended = 0;
        while ended < 2 {
            match events.recv().await {
                Ok(ClientEvent::Call(c)) => {
                    if matches!(c.kind, domain::call_events::CallEventKind::Ended { .. }) {
                        ended += 1;
                    }
                    calls.push(c);
                }
                Ok(ClientEvent::Ami(m)) if m.is("Event", "Cdr") => {
                    if let Some(c) = asterisk::ami::calls::AsteriskCdr::from_message(&m) {
                        cdr_billsec.push((c.unique_id, c.billable_seconds, c.disposition));
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await;
    done.expect("both calls ended within 20 s");
    let mut r = Recorder::new();
    for c in &calls {
        r.apply(c).unwrap_or_else(|e| panic!("{c:?}: {e}"));
    }
    let ch = r.into_changes();
    assert_eq!(ch.calls.len(), 2);
    let first = &ch.calls[0];
    assert_eq!(first.caller.number, "2000");
    assert_eq!(first.callee.number, "2001");
    assert_eq!(first.caller.agent_id, Some(20));
    let (_, billsec, disp) = cdr_billsec
        .iter()
        .find(|(id, _, _)| *id == first.call_id)
        .expect("Asterisk's CDR");
    assert_eq!(first.disposition.map(|d| d.as_str()), Some(disp.as_str()));
    // Real time on a shared machine: within a second of Asterisk's figure.
    assert!((first.billsec - *billsec as i64).abs() <= 1, "{first:?}");
    assert_eq!(
        ch.legs
            .iter()
            .filter(|l| l.call_id == first.call_id)
            .count(),
        2
    );
    assert_eq!(client.active_calls(), 0);
    client.stop().await;
}

#[tokio::test]
async fn md5_login_variant() {
    let chunks = common::transcript("ami-transcript.raw.jsonl");
    // Banner, Login, its answer, then CoreStatus and its answer; the peer
    // answers a Challenge first and checks the Key of the Login.
    let mut script = Script::new(first_chunks(&chunks, 2));
    script.md5 = Some(("840415273".into(), "anchorpass".into()));
    let peer = Peer::start(vec![script]).await;
    let client = AmiClient::start(config(&peer.addr, AuthMode::Md5), site());
    let mut events = client.subscribe();
    next_connected(&mut events).await;
    let r = client
        .send_action(Action::new("CoreStatus"))
        .await
        .expect("CoreStatus");
    assert_eq!(r.message.get("CoreCurrentCalls"), Some("0"));
    let sent = peer.actions(0);
    assert_eq!(sent[0].get("Action"), Some("Challenge"));
    let login = sent
        .iter()
        .find(|m| m.is("Action", "Login"))
        .expect("login");
    assert!(login.get("Secret").is_none());
    assert_eq!(login.get("AuthType"), Some("MD5"));
    client.stop().await;

    // A wrong secret is refused, and the client keeps retrying.
    let mut script = Script::new(first_chunks(&chunks, 2));
    script.md5 = Some(("840415273".into(), "anchorpass".into()));
    let peer = Peer::start(vec![script]).await;
    let mut cfg = config(&peer.addr, AuthMode::Md5);
    cfg.session.secret = "wrong".into();
    let client = AmiClient::start(cfg, site());
    common::eventually("two refused logins", Duration::from_secs(5), || {
        peer.connections() >= 2
    })
    .await;
    assert!(!client.is_connected());
    client.stop().await;
}

/// The peer drops the connection right after the login; the client
/// reconnects (backoff 50..200 ms) and works on the new connection. An
/// action pending when the connection drops fails at once.
#[tokio::test]
async fn reconnects_after_the_peer_drops() {
    let chunks = common::transcript("ami-transcript.raw.jsonl");
    let mut dropper = Script::new(first_chunks(&chunks, 1));
    dropper.close_at_end = true;
    let stays = Script::new(first_chunks(&chunks, 2));
    let peer = Peer::start(vec![dropper.clone(), dropper, stays]).await;
    let client = AmiClient::start(config(&peer.addr, AuthMode::Plain), site());
    let mut events = client.subscribe();
    let mut ups = 0;
    let mut downs = 0;
    tokio::time::timeout(Duration::from_secs(10), async {
        while ups < 3 {
            match events.recv().await {
                Ok(ClientEvent::Connected { .. }) => ups += 1,
                Ok(ClientEvent::Disconnected { retry_in, .. }) => {
                    assert!(retry_in.is_some_and(|d| d <= Duration::from_millis(200)));
                    downs += 1;
                }
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .expect("three logins within 10 s");
    assert_eq!(downs, 2);
    assert_eq!(peer.connections(), 3);
    let r = client
        .send_action(Action::new("CoreStatus"))
        .await
        .expect("works after reconnecting");
    assert!(r.is_success());
    client.stop().await;
}

#[tokio::test]
async fn dead_peer_is_detected_by_the_keepalive() {
    let chunks = common::transcript("ami-transcript.raw.jsonl");
    let mut mute = Script::new(first_chunks(&chunks, 1));
    mute.answer_pings = false;
    let peer = Peer::start(vec![mute.clone(), mute]).await;
    let mut cfg = config(&peer.addr, AuthMode::Plain);
    cfg.session.ping_interval = Duration::from_millis(200);
    cfg.session.ping_timeout = Duration::from_millis(200);
    let client = AmiClient::start(cfg, site());
    let mut events = client.subscribe();
    let reason = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(ClientEvent::Disconnected { reason, .. }) = events.recv().await {
                return reason;
            }
        }
    })
    .await
    .expect("the dead peer was not noticed");
    assert!(reason.contains("Ping"), "{reason}");
    common::eventually("a new connection", Duration::from_secs(5), || {
        peer.connections() >= 2
    })
    .await;
    assert!(peer.actions(0).iter().any(|m| m.is("Action", "Ping")));
    client.stop().await;
}

/// `originate`, `hangup` and `reload_pjsip` put exactly these fields on
/// the wire; answers from the peer (derived: the transcript's Originate
/// answer, Asterisk's `Module Reloaded.`).
#[tokio::test]
async fn originate_hangup_and_reload_fields() {
    let chunks = common::transcript("ami-transcript.raw.jsonl");
    let mut script = first_chunks(&chunks, 1);
    let answer = |action: &str, reply: &str| -> Vec<Chunk> {
        vec![
            Chunk {
                t: 0.0,
                from_server: false,
                bytes: format!("Action: {action}\r\nActionID: x-{action}\r\n\r\n"),
            },
            Chunk {
                t: 0.0,
                from_server: true,
                bytes: format!(
                    "Response: Success\r\nActionID: x-{action}\r\nMessage: {reply}\r\n\r\n"
                ),
            },
        ]
    };
    script.extend(answer("Originate", "Originate successfully queued"));
    script.extend(answer("Hangup", "Channel Hungup"));
    script.extend(answer("Reload", "Module Reloaded."));
    let peer = Peer::start(vec![Script::new(script)]).await;
    let client = AmiClient::start(config(&peer.addr, AuthMode::Plain), site());
    let mut events = client.subscribe();
    next_connected(&mut events).await;
    let req = OriginateRequest {
        agent_endpoint: "1001".into(),
        customer_number: "+34911222333".into(),
        context: "centralita-outbound".into(),
        trunk: Some("carrier-1".into()),
        caller_id: Some("\"Campaign 7\" <+34911000000>".into()),
        pai: Some("+34911000000".into()),
        ring_timeout: Duration::from_secs(30),
        variables: vec![("CENTRALITA_LEAD".into(), "123".into())],
        channel_id: Some("centralita-orig-1".into()),
    };
    let r = client.originate(&req).await.expect("originate");
    assert_eq!(r.text(), "Originate successfully queued");
    client.hangup("PJSIP/1001-00000001").await.expect("hangup");
    let reload = client.reload_pjsip().await.expect("reload");
    assert_eq!(reload.message, "Module Reloaded.");
    // Refused before reaching the wire.
    assert!(client.hangup("/^PJSIP/").await.is_err());
    let mut bad = req.clone();
    bad.agent_endpoint = "1001&PJSIP/1002".into();
    assert!(client.originate(&bad).await.is_err());
    bad = req.clone();
    bad.customer_number = "123,1,Hangup".into();
    assert!(client.originate(&bad).await.is_err());

    let seen = peer.actions(0);
    let o = seen
        .iter()
        .find(|m| m.is("Action", "Originate"))
        .expect("originate");
    assert_eq!(o.get("Channel"), Some("PJSIP/1001"));
    assert_eq!(o.get("Context"), Some("centralita-outbound"));
    assert_eq!(o.get("Exten"), Some("+34911222333"));
    assert_eq!(o.get("Priority"), Some("1"));
    assert_eq!(o.get("Async"), Some("true"));
    assert_eq!(o.get("Timeout"), Some("30000"));
    assert_eq!(o.get("CallerID"), Some("\"Campaign 7\" <+34911000000>"));
    assert_eq!(o.get("ChannelId"), Some("centralita-orig-1"));
    assert_eq!(
        o.get_all("Variable").collect::<Vec<_>>(),
        [
            "CENTRALITA_TRUNK=carrier-1",
            "CENTRALITA_PAI=+34911000000",
            "CENTRALITA_LEAD=123"
        ]
    );
    let h = seen
        .iter()
        .find(|m| m.is("Action", "Hangup"))
        .expect("hangup");
    assert_eq!(h.get("Channel"), Some("PJSIP/1001-00000001"));
    let rl = seen
        .iter()
        .find(|m| m.is("Action", "Reload"))
        .expect("reload");
    assert_eq!(rl.get("Module"), Some("res_pjsip.so"));
    // Nothing else but the login, the resync listings and these.
    assert!(seen.iter().all(|m| [
        "Login",
        "PJSIPShowContacts",
        "PJSIPShowRegistrationsOutbound",
        "CoreShowChannels",
        "Originate",
        "Hangup",
        "Reload",
        "Ping"
    ]
    .iter()
    .any(|a| m.is("Action", a))));
    client.stop().await;
}

/// A `Registry` event for a registration the listing named maps to its
/// trunk; one no listing named (a trunk added since the login) makes the
/// client ask for the listing again, which then names it.
#[tokio::test]
async fn registry_event_maps_to_the_trunk() {
    registry_case(0).await;
    registry_case(1).await;
}

async fn registry_case(empty_listings: usize) {
    let chunks = common::transcript("ami-transcript.raw.jsonl");
    let registry: Vec<Chunk> = chunks
        .iter()
        .filter(|c| c.from_server && c.bytes.starts_with("Event: Registry\r\n"))
        .cloned()
        .collect();
    assert_eq!(registry.len(), 1, "the transcript's Registry event");
    // Login; then (after CoreStatus) the Registry event.
    let mut script = first_chunks(&chunks, 2);
    script.extend(registry);
    let mut script = Script::new(script);
    script.empty_listings = empty_listings;
    let peer = Peer::start(vec![script]).await;
    let client = AmiClient::start(config(&peer.addr, AuthMode::Plain), site());
    let mut events = client.subscribe();
    next_connected(&mut events).await;
    client
        .send_action(Action::new("CoreStatus"))
        .await
        .expect("CoreStatus");
    let change = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(ClientEvent::Registration(c)) = events.recv().await {
                return c;
            }
        }
    })
    .await
    .expect("a registration change");
    let named = (empty_listings == 0).then(|| "trunk-test".to_string());
    assert_eq!(
        change,
        RegistrationChange::Trunk {
            trunk: named,
            state: TrunkRegState::Registered
        }
    );
    // Either way the trunk's state ends up known.
    common::eventually("the trunk's registration", Duration::from_secs(5), || {
        client
            .with_registrations(|r| r.trunk("trunk-test").map(|t| t.state.clone()))
            .flatten()
            == Some(TrunkRegState::Registered)
    })
    .await;
    let asked = peer
        .actions(0)
        .iter()
        .filter(|m| m.is("Action", "PJSIPShowRegistrationsOutbound"))
        .count();
    assert_eq!(asked, 1 + empty_listings);
    client.stop().await;
}

/// A peer that sends the banner and then bytes without end (no line
/// break): the client drops it at the message bound and reconnects; its
/// memory does not follow the peer.
#[tokio::test]
async fn endless_line_from_a_hostile_peer() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let acc = accepted.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            acc.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let _ = s
                    .write_all(b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nMessage: ")
                    .await;
                let junk = vec![b'x'; 64 * 1024];
                // At most 64 MiB: far past the 1 MiB bound set below.
                for _ in 0..1024 {
                    if s.write_all(&junk).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let mut cfg = config(&addr, AuthMode::Plain);
    cfg.session.max_message = 1 << 20;
    let client = AmiClient::start(cfg, site());
    let mut events = client.subscribe();
    let reason = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(ClientEvent::Disconnected { reason, .. }) = events.recv().await {
                return reason;
            }
        }
    })
    .await
    .expect("the client never gave up on the endless line");
    assert!(reason.contains("grew past"), "{reason}");
    common::eventually("a reconnection", Duration::from_secs(5), || {
        accepted.load(std::sync::atomic::Ordering::SeqCst) >= 2
    })
    .await;
    assert!(!client.is_connected());
    client.stop().await;
    server.abort();
}

/// Nothing listens yet: the client retries with a growing, jittered
/// delay, and logs in once the manager is up.
#[tokio::test]
async fn connects_once_asterisk_is_up() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = free.local_addr().expect("addr").to_string();
    drop(free);
    let client = AmiClient::start(config(&addr, AuthMode::Plain), site());
    let mut events = client.subscribe();
    let mut delays = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while delays.len() < 3 {
            if let Ok(ClientEvent::Disconnected { reason, retry_in }) = events.recv().await {
                assert!(reason.starts_with("connect failed"), "{reason}");
                delays.push(retry_in.expect("retries"));
            }
        }
    })
    .await
    .expect("three refused connects");
    // 50 ms doubling up to 200 ms, each in [half, full].
    for (d, cap) in delays.iter().zip([50u64, 100, 200]) {
        let ms = d.as_millis() as u64;
        assert!(ms >= cap / 2 && ms <= cap, "{delays:?}");
    }
    let chunks = common::transcript("ami-transcript.raw.jsonl");
    let _peer = Peer::start_on(&addr, vec![Script::new(first_chunks(&chunks, 2))]).await;
    next_connected(&mut events).await;
    assert!(client.is_connected());
    client.stop().await;
}
