//! Relay mode through the real `centralita` binary, with Kamailio (Debian
//! package `kamailio`) on 127.0.0.1 standing in for the third-party PBX:
//! registrar with digest auth for REGISTER (401) and INVITE (407), and the
//! proxy that routes INVITEs between registered users (`lookup` +
//! `t_relay`, with `record_route`). Two SIP-over-WebSocket clients connect
//! to centralita's `/ws`, register through the relay answering Kamailio's
//! challenges themselves (centralita never knows these passwords), one
//! calls the other, the callee answers, the caller hangs up; Kamailio's log
//! shows what it received, and the CDR comes back from
//! `/api/telephony/calls/history`. Once over UDP, once over TCP upstream.

mod support;
use support::TestDatabase;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use md5::{Digest, Md5};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const ADMIN_PASSWORD: &str = "admin-password-for-relay-tests";
const REALM: &str = "pbx.test";

fn kamailio_config(port: u16, users: &[(String, String)]) -> String {
    let mut pw = String::from("    $var(pw) = \"\";\n");
    for (u, p) in users {
        pw.push_str(&format!(
            "    if ($var(user) == \"{u}\") {{ $var(pw) = \"{p}\"; }}\n"
        ));
    }
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=1
tcp_children=1
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
modparam("usrloc", "db_mode", 0)
modparam("registrar", "max_expires", 3600)

route[PASSWORD] {{
{pw}}}

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    xlog("L_NOTICE", "SEEN $rm ruri=$ru proto=$pr src=$si:$sp contact=$hdr(Contact) auth=$hdr(Authorization)$hdr(Proxy-Authorization)\n");
    if (has_totag()) {{
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{
                t_relay();
            }}
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    if (is_method("OPTIONS")) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    if (is_method("REGISTER")) {{
        $var(user) = $tU;
        route(PASSWORD);
        if (!pv_auth_check("{REALM}", "$var(pw)", "0", "1")) {{
            auth_challenge("{REALM}", "1");
            exit;
        }}
        if (!save("location")) {{
            sl_reply_error();
        }}
        exit;
    }}
    if (is_method("INVITE")) {{
        $var(user) = $fU;
        route(PASSWORD);
        if (!pv_auth_check("{REALM}", "$var(pw)", "0", "1")) {{
            proxy_challenge("{REALM}", "1");
            exit;
        }}
        consume_credentials();
        record_route();
        if (!lookup("location")) {{
            sl_send_reply("404", "Not Found");
            exit;
        }}
        t_relay();
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
}}
"#
    )
}

/// Kamailio in the foreground, stopped by PID when dropped.
struct Kamailio {
    /// Ended with its process group when the test is over.
    _child: support::Reaped,
    log: PathBuf,
}

impl Kamailio {
    fn start(dir: &Path, port: u16, users: &[(String, String)]) -> Kamailio {
        let cfg = dir.join("kamailio.cfg");
        std::fs::write(&cfg, kamailio_config(port, users)).expect("write kamailio.cfg");
        let log = dir.join("kamailio.log");
        let file = std::fs::File::create(&log).expect("log file");
        let child = support::Reaped::spawn_group(
            "kamailio",
            Command::new("kamailio")
                .arg("-f")
                .arg(&cfg)
                .args(["-DD", "-E", "-m", "32", "-M", "8"])
                .stdout(Stdio::null())
                .stderr(file),
        );
        let k = Kamailio { _child: child, log };
        // Ready when it answers an OPTIONS.
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let me = sock.local_addr().expect("addr");
        for i in 0..50 {
            let opt = format!(
                "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKready{i}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:probe@{REALM}>;tag=p{i}\r\nTo: <sip:127.0.0.1:{port}>\r\n\
                 Call-ID: ready-{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            );
            let _ = sock.send_to(opt.as_bytes(), ("127.0.0.1", port));
            let mut buf = [0u8; 2048];
            if sock.recv(&mut buf).is_ok() {
                return k;
            }
        }
        panic!("kamailio did not answer: {}", k.log_text());
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Lines Kamailio logged for requests of `method`.
    fn seen(&self, method: &str) -> Vec<String> {
        let needle = format!("SEEN {method} ");
        self.log_text()
            .lines()
            .filter(|l| l.contains(&needle))
            .map(str::to_string)
            .collect()
    }
}

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    headers(msg, name).into_iter().next()
}

/// Values of header `name` in order (one per line; no comma splitting).
fn headers<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    let head = msg.split("\r\n\r\n").next().unwrap_or("");
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    value
        .split([',', ';', ' '])
        .filter_map(|p| p.trim().split_once('='))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().trim_matches('"'))
}

/// The `Authorization` (or `Proxy-Authorization`) value answering `challenge`.
fn digest(challenge: &str, user: &str, password: &str, method: &str, uri: &str) -> String {
    let realm = param(challenge, "realm").expect("realm");
    let nonce = param(challenge, "nonce").expect("nonce");
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let (nc, cnonce) = ("00000001", "0a4f113b");
    let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\""
    )
}

/// A SIP-over-WebSocket client the way JsSIP behaves: `.invalid` Via and
/// Contact hosts, a random contact user, `+sip.instance` and `reg-id`.
struct Ua {
    ws: WebSocketStream<TcpStream>,
    user: String,
    password: String,
    /// The user part of our Contact (JsSIP makes it random).
    contact_user: String,
    host: String,
    branch: u32,
}

impl Ua {
    async fn connect(http: &str, user: &str, password: &str) -> Ua {
        let tcp = TcpStream::connect(http).await.expect("connect");
        let mut req = format!("ws://{http}/ws")
            .into_client_request()
            .expect("request");
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "sip".parse().expect("header value"),
        );
        let (ws, resp) = tokio_tungstenite::client_async(req, tcp)
            .await
            .expect("WebSocket upgrade");
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some("sip")
        );
        Ua {
            ws,
            user: user.into(),
            password: password.into(),
            contact_user: format!("c{}x", md5_hex(user).get(..6).unwrap_or("0")),
            host: format!("{}.invalid", md5_hex(password).get(..8).unwrap_or("h")),
            branch: 0,
        }
    }

    fn contact(&self) -> String {
        format!("<sip:{}@{};transport=ws>", self.contact_user, self.host)
    }

    fn via(&mut self) -> String {
        self.branch += 1;
        format!(
            "SIP/2.0/WS {};branch=z9hG4bK{}b{}",
            self.host, self.contact_user, self.branch
        )
    }

    async fn send(&mut self, text: String) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send over WebSocket");
    }

    /// The next SIP message, provisional 100s skipped.
    async fn recv(&mut self) -> String {
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{}: nothing received within 10 s", self.user));
            let text = match next {
                Some(Ok(Message::Text(t))) => t.as_str().to_string(),
                Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                Some(Ok(_)) => continue,
                other => panic!("{}: WebSocket ended: {other:?}", self.user),
            };
            if text.starts_with("SIP/2.0 100 ") {
                continue;
            }
            return text;
        }
    }

    /// REGISTER, answer the 401 from the PBX, and the final answer.
    async fn register(&mut self) -> String {
        let call_id = format!("reg-{}", self.contact_user);
        let mut auth = String::new();
        for cseq in 1..=2 {
            let via = self.via();
            let text = format!(
                "REGISTER sip:{REALM} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 69\r\n\
                 From: <sip:{u}@{REALM}>;tag=r{u}\r\nTo: <sip:{u}@{REALM}>\r\nCall-ID: {call_id}\r\n\
                 CSeq: {cseq} REGISTER\r\nContact: {c};+sip.ice;reg-id=1;\
                 +sip.instance=\"<urn:uuid:{u}-0000>\";expires=600\r\n{auth}Expires: 600\r\n\
                 Supported: path, gruu, outbound\r\nUser-Agent: relay-test\r\nContent-Length: 0\r\n\r\n",
                u = self.user,
                c = self.contact(),
            );
            self.send(text).await;
            let answer = self.recv().await;
            if cseq == 1 {
                assert!(answer.starts_with("SIP/2.0 401 "), "{answer}");
                let challenge = header(&answer, "WWW-Authenticate").expect("challenge");
                auth = format!(
                    "Authorization: {}\r\n",
                    digest(
                        challenge,
                        &self.user,
                        &self.password,
                        "REGISTER",
                        &format!("sip:{REALM}")
                    )
                );
                continue;
            }
            return answer;
        }
        unreachable!()
    }
}

/// Builds a response to `req` (Via, From, To with our tag, Call-ID, CSeq,
/// Record-Route copied).
fn response_to(req: &str, status: &str, to_tag: &str, contact: &str, body: &str) -> String {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for v in headers(req, "Via") {
        out.push_str(&format!("Via: {v}\r\n"));
    }
    for v in headers(req, "Record-Route") {
        out.push_str(&format!("Record-Route: {v}\r\n"));
    }
    let to = header(req, "To").expect("To");
    let to = if to.contains(";tag=") {
        to.to_string()
    } else {
        format!("{to};tag={to_tag}")
    };
    for (n, v) in [
        ("From", header(req, "From").expect("From").to_string()),
        ("To", to),
        (
            "Call-ID",
            header(req, "Call-ID").expect("Call-ID").to_string(),
        ),
        ("CSeq", header(req, "CSeq").expect("CSeq").to_string()),
    ] {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    if !contact.is_empty() {
        out.push_str(&format!("Contact: {contact}\r\n"));
    }
    if !body.is_empty() {
        out.push_str("Content-Type: application/sdp\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    out
}

fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
}

struct Centralita {
    child: support::Reaped,
    http: String,
}

fn start_centralita(dir: &Path, upstream: &str, env: &[(&str, &str)]) -> Centralita {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_centralita"));
    cmd.arg("serve")
        .env("CENTRALITA_MODE", "relay")
        .env("CENTRALITA_RELAY_UPSTREAM", upstream)
        .env("CENTRALITA_HTTP_LISTEN", "127.0.0.1:0")
        .env("CENTRALITA_SIP_DOMAIN", REALM)
        .env("CENTRALITA_DATA_DIR", dir)
        .env("CENTRALITA_CONSOLE_DIR", dir.join("no-console"))
        .env("CENTRALITA_AUTH_INSECURE_FAST_PASSWORD_HASHING", "true")
        .env("CENTRALITA_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .test_database(dir)
        .env("RUST_LOG", "warn,relay=debug")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = support::Reaped::spawn("centralita", &mut cmd);
    let lines = support::stdout_lines(&mut child.child);
    let (http, _) = support::wait_for_http(&lines);
    let relay_line = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("relay line");
    assert!(
        relay_line.starts_with(&format!("SIP relay to {upstream} for ws://")),
        "{relay_line}"
    );
    Centralita { child, http }
}

impl Centralita {
    fn login(&self) -> String {
        let body = serde_json::json!({"login": "admin", "password": ADMIN_PASSWORD}).to_string();
        let (status, head, text) =
            support::http_request(&self.http, "POST", "/api/auth/login", Some(&body), None);
        assert_eq!(status, 200, "{text}");
        support::session_cookie(&head)
    }

    /// Creates an agent; returns (user id, extension).
    fn agent(&self, cookie: &str, login: &str) -> (i64, String) {
        let body = serde_json::json!({"name": login, "login": login, "password": "console-pass-123", "role": "agent"});
        let (status, _, text) = support::http_request(
            &self.http,
            "POST",
            "/api/agents",
            Some(&body.to_string()),
            Some(cookie),
        );
        assert_eq!(status, 201, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        let ext = v["sipCredentials"]["extension"]
            .as_str()
            .expect("extension")
            .to_string();
        let id = v["id"]
            .as_i64()
            .or_else(|| v["agent"]["id"].as_i64())
            .or_else(|| v["user"]["id"].as_i64())
            .unwrap_or(-1);
        (id, ext)
    }

    fn get(&self, cookie: &str, path: &str) -> serde_json::Value {
        let (status, _, text) = support::http_request(&self.http, "GET", path, None, Some(cookie));
        assert_eq!(status, 200, "{path}: {text}");
        serde_json::from_str(&text).expect("json")
    }
}

/// centralita in relay mode toward Kamailio, two agents whose extensions
/// are the PBX's users, and both clients registered through the relay.
struct Site {
    _dir: tempfile::TempDir,
    srv: Centralita,
    cookie: String,
    kam: Kamailio,
    a: Ua,
    b: Ua,
    alice: String,
    bob: String,
}

async fn site(transport: &str) -> Site {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = support::free_ports(1, true, true);
    let upstream = format!("{transport}:127.0.0.1:{port}");
    let srv = start_centralita(dir.path(), &upstream, &[]);
    let cookie = srv.login();
    // The PBX's extensions are the agents' extensions: the CDR names them.
    let (_, alice) = srv.agent(&cookie, "alice.relay");
    let (_, bob) = srv.agent(&cookie, "bob.relay");
    let users = [
        (alice.clone(), "pbx-secret-alice".to_string()),
        (bob.clone(), "pbx-secret-bob".to_string()),
    ];
    let kam = Kamailio::start(dir.path(), port, &users);

    // Both register through the relay; the PBX challenges, they answer.
    let mut a = Ua::connect(&srv.http, &alice, "pbx-secret-alice").await;
    let mut b = Ua::connect(&srv.http, &bob, "pbx-secret-bob").await;
    for ua in [&mut a, &mut b] {
        let ok = ua.register().await;
        assert!(ok.starts_with("SIP/2.0 200 "), "{ok}\n{}", kam.log_text());
        // The client finds its own Contact in the answer, with the expiry.
        let contact = headers(&ok, "Contact").join(", ");
        assert!(contact.contains(&ua.contact()), "{contact}");
        assert!(contact.contains("expires="), "{contact}");
        // Our Via is gone; the client's is on top.
        assert!(
            header(&ok, "Via").is_some_and(|v| v.contains(&ua.host)),
            "{ok}"
        );
    }
    let registers = kam.seen("REGISTER");
    assert_eq!(registers.len(), 4, "{registers:#?}");
    for l in &registers {
        // Kamailio got them over the configured transport, from centralita,
        // with the Contact rewritten to the relay's address (no .invalid).
        assert!(l.contains(&format!("proto={transport}")), "{l}");
        assert!(!l.contains(".invalid"), "{l}");
        assert!(l.contains("crl="), "{l}");
    }
    // The second REGISTER of each carried the client's own credentials.
    assert!(registers.iter().any(|l| l.contains("Digest username=")));
    let status = srv.get(&cookie, "/api/telephony/status");
    assert_eq!(status["status"]["engine"], "relay", "{status}");
    assert_eq!(status["status"]["registeredContacts"], 2, "{status}");
    // The PBX answered: the relay is connected.
    assert_eq!(status["status"]["connected"], true, "{status}");
    // Each agent is listed with the browser's own Contact (written behind:
    // it may take a moment).
    let mut listed = Vec::new();
    for _ in 0..50 {
        let v = srv.get(&cookie, "/api/telephony/registrations");
        listed = v["registrations"].as_array().cloned().unwrap_or_default();
        if listed.len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for (ext, ua) in [(&alice, &a), (&bob, &b)] {
        let r = listed
            .iter()
            .find(|r| r["extension"] == ext.as_str())
            .unwrap_or_else(|| panic!("{ext} not listed: {listed:#?}"));
        assert_eq!(
            r["contact"],
            format!("sip:{}@{};transport=ws", ua.contact_user, ua.host),
            "{r}"
        );
        assert_eq!(r["transport"], "ws", "{r}");
    }
    Site {
        _dir: dir,
        srv,
        cookie,
        kam,
        a,
        b,
        alice,
        bob,
    }
}

/// The finished CDR of `call_id` (waits for it; fails on a second row).
fn finished_cdr(srv: &Centralita, cookie: &str, call_id: &str) -> serde_json::Value {
    for _ in 0..100 {
        let v = srv.get(cookie, "/api/telephony/calls/history?limit=50");
        let calls = v["calls"].as_array().cloned().unwrap_or_default();
        let mine: Vec<_> = calls
            .iter()
            .filter(|c| c["callId"] == call_id)
            .cloned()
            .collect();
        assert!(mine.len() <= 1, "one row per call: {mine:#?}");
        if let Some(c) = mine.first().filter(|c| !c["endTime"].is_null()) {
            return c.clone();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no finished CDR for {call_id}");
}

async fn call_through_the_relay(transport: &str) {
    let Site {
        _dir,
        srv,
        cookie,
        kam,
        mut a,
        mut b,
        alice,
        bob,
    } = site(transport).await;

    // Alice calls Bob: 407 from the PBX, answered, then routed to Bob.
    let call_id = format!("relay-call-{transport}");
    let invite = |via: &str, cseq: u32, auth: &str, contact: &str| {
        let body = sdp(40_000);
        format!(
            "INVITE sip:{bob}@{REALM} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 69\r\n\
             From: <sip:{alice}@{REALM}>;tag=alice1\r\nTo: <sip:{bob}@{REALM}>\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nContact: {contact}\r\n{auth}\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let via1 = a.via();
    a.send(invite(&via1, 1, "", &a.contact())).await;
    let challenge = a.recv().await;
    assert!(challenge.starts_with("SIP/2.0 407 "), "{challenge}");
    let to = header(&challenge, "To").expect("To").to_string();
    a.send(format!(
        "ACK sip:{bob}@{REALM} SIP/2.0\r\nVia: {via1}\r\nMax-Forwards: 69\r\n\
         From: <sip:{alice}@{REALM}>;tag=alice1\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    ))
    .await;
    let pa = header(&challenge, "Proxy-Authenticate").expect("Proxy-Authenticate");
    let auth = format!(
        "Proxy-Authorization: {}\r\n",
        digest(
            pa,
            &alice,
            "pbx-secret-alice",
            "INVITE",
            &format!("sip:{bob}@{REALM}")
        )
    );
    let via2 = a.via();
    a.send(invite(&via2, 2, &auth, &a.contact())).await;

    // Bob gets it at his own Contact, through us, with us record-routed.
    let inv = b.recv().await;
    assert!(
        inv.starts_with(&format!("INVITE sip:{}@{}", b.contact_user, b.host)),
        "{inv}"
    );
    assert_eq!(header(&inv, "Call-ID"), Some(call_id.as_str()));
    assert!(
        header(&inv, "Via").is_some_and(|v| v.contains("relay.invalid")),
        "{inv}"
    );
    let rr = headers(&inv, "Record-Route").join(", ");
    assert!(rr.starts_with("<sip:relay.invalid"), "{rr}");
    // Alice's Contact, as Bob sees it, is the relay's (no .invalid).
    let alice_contact = header(&inv, "Contact").expect("Contact");
    assert!(!alice_contact.contains(".invalid"), "{alice_contact}");
    let bob_contact = b.contact();
    b.send(response_to(&inv, "180 Ringing", "bob1", &bob_contact, ""))
        .await;
    let ringing = a.recv().await;
    assert!(ringing.starts_with("SIP/2.0 180 "), "{ringing}");
    b.send(response_to(
        &inv,
        "200 OK",
        "bob1",
        &bob_contact,
        &sdp(40_002),
    ))
    .await;
    let ok = a.recv().await;
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    assert!(ok.contains("m=audio 40002"), "{ok}");

    // Alice's dialog: remote target and route set from the 200.
    let target = header(&ok, "Contact")
        .and_then(|c| c.split('<').nth(1))
        .and_then(|c| c.split('>').next())
        .expect("Contact URI")
        .to_string();
    assert!(!target.contains(".invalid"), "{target}");
    let mut route: Vec<String> = headers(&ok, "Record-Route")
        .iter()
        .flat_map(|v| v.split(", "))
        .map(str::to_string)
        .collect();
    route.reverse();
    assert!(route.len() >= 5, "{route:?}");
    assert!(route[0].contains("relay.invalid"), "{route:?}");
    let to = header(&ok, "To").expect("To").to_string();
    let in_dialog = |via: &str, method: &str, cseq: u32| {
        let mut s = format!("{method} {target} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 69\r\n");
        for r in &route {
            s.push_str(&format!("Route: {r}\r\n"));
        }
        s.push_str(&format!(
            "From: <sip:{alice}@{REALM}>;tag=alice1\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
        ));
        s
    };
    let via = a.via();
    a.send(in_dialog(&via, "ACK", 2)).await;
    let ack = b.recv().await;
    assert!(
        ack.starts_with(&format!("ACK sip:{}@{}", b.contact_user, b.host)),
        "{ack}"
    );
    // Our own Route entries are gone by the time it reaches Bob.
    assert!(!ack.contains("crl="), "{ack}");

    // A moment of conversation, then Alice hangs up.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let via = a.via();
    a.send(in_dialog(&via, "BYE", 3)).await;
    let bye = b.recv().await;
    assert!(bye.starts_with("BYE "), "{bye}");
    b.send(response_to(&bye, "200 OK", "bob1", "", "")).await;
    let bye_ok = a.recv().await;
    assert!(
        bye_ok.starts_with("SIP/2.0 200 ") && bye_ok.contains("CSeq: 3 BYE"),
        "{bye_ok}"
    );

    // What the PBX saw: both INVITEs (challenged, authenticated), the ACK
    // and the BYE, all over the configured transport.
    let invites = kam.seen("INVITE");
    assert_eq!(invites.len(), 2, "{invites:#?}");
    assert!(invites[1].contains("Digest username="), "{invites:#?}");
    assert!(!kam.seen("BYE").is_empty(), "{}", kam.log_text());
    assert!(kam
        .seen("BYE")
        .iter()
        .all(|l| l.contains(&format!("proto={transport}"))));

    // One CDR: answered, Alice to Bob, internal, caller hung up.
    let row = finished_cdr(&srv, &cookie, &call_id);
    assert_eq!(row["disposition"], "ANSWERED", "{row}");
    assert_eq!(row["hangupCause"], "caller_bye", "{row}");
    assert_eq!(row["callerNumber"], alice.as_str(), "{row}");
    assert_eq!(row["calleeNumber"], bob.as_str(), "{row}");
    assert_eq!(row["direction"], "internal", "{row}");
    assert!(row["billsec"].as_i64().is_some_and(|s| s >= 1), "{row}");
    // Closing the WebSockets ends the flows: the agents are no longer
    // listed (the PBX keeps its bindings until they expire).
    drop(a);
    drop(b);
    let mut left = usize::MAX;
    for _ in 0..50 {
        let v = srv.get(&cookie, "/api/telephony/registrations");
        left = v["registrations"].as_array().map_or(0, Vec::len);
        if left == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(left, 0, "bindings of closed flows are removed");
    let status = srv.get(&cookie, "/api/telephony/status");
    assert_eq!(status["status"]["registeredContacts"], 0, "{status}");
    drop(kam);
    drop(srv.child);
}

/// Alice's INVITE to Bob through the relay with the PBX's 407 answered:
/// the authenticated INVITE as Alice sent it, and as Bob received it.
async fn invite_bob(s: &mut Site, call_id: &str) -> (String, String) {
    let (alice, bob) = (s.alice.clone(), s.bob.clone());
    let contact = s.a.contact();
    let text = |via: &str, cseq: u32, auth: &str| {
        let body = sdp(40_010);
        format!(
            "INVITE sip:{bob}@{REALM} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 69\r\n\
             From: <sip:{alice}@{REALM}>;tag=t-{call_id}\r\nTo: <sip:{bob}@{REALM}>\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nContact: {contact}\r\n{auth}\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let via1 = s.a.via();
    s.a.send(text(&via1, 1, "")).await;
    let challenge = s.a.recv().await;
    assert!(challenge.starts_with("SIP/2.0 407 "), "{challenge}");
    let to = header(&challenge, "To").expect("To").to_string();
    s.a.send(format!(
        "ACK sip:{bob}@{REALM} SIP/2.0\r\nVia: {via1}\r\nMax-Forwards: 69\r\n\
         From: <sip:{alice}@{REALM}>;tag=t-{call_id}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    ))
    .await;
    let pa = header(&challenge, "Proxy-Authenticate").expect("Proxy-Authenticate");
    let auth = format!(
        "Proxy-Authorization: {}\r\n",
        digest(
            pa,
            &alice,
            "pbx-secret-alice",
            "INVITE",
            &format!("sip:{bob}@{REALM}")
        )
    );
    let via2 = s.a.via();
    let invite = text(&via2, 2, &auth);
    s.a.send(invite.clone()).await;
    let at_b = s.b.recv().await;
    assert!(at_b.starts_with("INVITE "), "{at_b}");
    assert_eq!(header(&at_b, "Call-ID"), Some(call_id));
    (invite, at_b)
}

/// The ACK for a non-2xx final answer `resp` to `invite` (same branch).
fn ack_for(invite: &str, resp: &str) -> String {
    let ruri = invite
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .expect("R-URI");
    format!(
        "ACK {ruri} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 69\r\nFrom: {}\r\nTo: {}\r\n\
         Call-ID: {}\r\nCSeq: 2 ACK\r\nContent-Length: 0\r\n\r\n",
        header(invite, "Via").expect("Via"),
        header(invite, "From").expect("From"),
        header(resp, "To").expect("To"),
        header(invite, "Call-ID").expect("Call-ID"),
    )
}

/// Busy, cancelled and callee-hung-up calls through the relay: each party
/// gets what it should (the CANCEL matches its INVITE at the PBX, the ACKs
/// of failures are hop by hop, the callee's BYE reaches the caller at its
/// own Contact), and each CDR says what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_cancelled_and_callee_hangup_through_the_relay() {
    let mut s = site("udp").await;

    // Busy: Bob answers 486.
    let (invite, at_b) = invite_bob(&mut s, "relay-busy").await;
    s.b.send(response_to(&at_b, "486 Busy Here", "bob2", "", ""))
        .await;
    let busy = s.a.recv().await;
    assert!(busy.starts_with("SIP/2.0 486 "), "{busy}");
    s.a.send(ack_for(&invite, &busy)).await;
    // The PBX acknowledges Bob's 486 itself (hop by hop).
    let ack = s.b.recv().await;
    assert!(
        ack.starts_with("ACK ") && ack.contains("relay-busy"),
        "{ack}"
    );
    let row = finished_cdr(&s.srv, &s.cookie, "relay-busy");
    assert_eq!(row["disposition"], "BUSY", "{row}");
    assert_eq!(row["hangupCause"], "busy", "{row}");

    // Cancelled: Bob rings, Alice gives up.
    let (invite, at_b) = invite_bob(&mut s, "relay-cancel").await;
    s.b.send(response_to(
        &at_b,
        "180 Ringing",
        "bob3",
        &s.b.contact(),
        "",
    ))
    .await;
    let ringing = s.a.recv().await;
    assert!(ringing.starts_with("SIP/2.0 180 "), "{ringing}");
    let cancel = invite
        .split("\r\n\r\n")
        .next()
        .expect("head")
        .lines()
        .filter(|l| {
            !l.starts_with("Contact:")
                && !l.starts_with("Proxy-Authorization:")
                && !l.starts_with("Content-Type:")
                && !l.starts_with("Content-Length:")
        })
        .map(|l| {
            l.replacen("INVITE sip:", "CANCEL sip:", 1)
                .replace("CSeq: 2 INVITE", "CSeq: 2 CANCEL")
        })
        .collect::<Vec<_>>()
        .join("\r\n")
        + "\r\nContent-Length: 0\r\n\r\n";
    s.a.send(cancel).await;
    // The PBX matched the CANCEL to the INVITE (same branch from the
    // relay): 200 to Alice, CANCEL on to Bob.
    let cancel_ok = s.a.recv().await;
    assert!(
        cancel_ok.starts_with("SIP/2.0 200 ") && cancel_ok.contains("CSeq: 2 CANCEL"),
        "{cancel_ok}"
    );
    let cancel_at_b = s.b.recv().await;
    assert!(cancel_at_b.starts_with("CANCEL "), "{cancel_at_b}");
    s.b.send(response_to(&cancel_at_b, "200 OK", "bob3", "", ""))
        .await;
    s.b.send(response_to(&at_b, "487 Request Terminated", "bob3", "", ""))
        .await;
    let terminated = s.a.recv().await;
    assert!(terminated.starts_with("SIP/2.0 487 "), "{terminated}");
    s.a.send(ack_for(&invite, &terminated)).await;
    let ack = s.b.recv().await;
    assert!(
        ack.starts_with("ACK ") && ack.contains("relay-cancel"),
        "{ack}"
    );
    let row = finished_cdr(&s.srv, &s.cookie, "relay-cancel");
    assert_eq!(row["disposition"], "CANCELLED", "{row}");
    assert_eq!(row["hangupCause"], "cancelled", "{row}");

    // Answered, then Bob hangs up: his BYE follows his route set (the
    // INVITE's Record-Route) to Alice's Contact as he saw it.
    let (_, at_b) = invite_bob(&mut s, "relay-callee-bye").await;
    s.b.send(response_to(
        &at_b,
        "200 OK",
        "bob4",
        &s.b.contact(),
        &sdp(40_012),
    ))
    .await;
    let ok = s.a.recv().await;
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    let target = header(&ok, "Contact")
        .and_then(|c| c.split('<').nth(1))
        .and_then(|c| c.split('>').next())
        .expect("Contact URI")
        .to_string();
    let mut route: Vec<&str> = headers(&ok, "Record-Route")
        .into_iter()
        .flat_map(|v| v.split(", "))
        .collect();
    route.reverse();
    let via = s.a.via();
    let mut ack = format!("ACK {target} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 69\r\n");
    for r in &route {
        ack.push_str(&format!("Route: {r}\r\n"));
    }
    ack.push_str(&format!(
        "From: {}\r\nTo: {}\r\nCall-ID: relay-callee-bye\r\nCSeq: 2 ACK\r\nContent-Length: 0\r\n\r\n",
        header(&ok, "From").expect("From"),
        header(&ok, "To").expect("To")
    ));
    s.a.send(ack).await;
    let ack_at_b = s.b.recv().await;
    assert!(ack_at_b.starts_with("ACK "), "{ack_at_b}");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let alice_target = header(&at_b, "Contact")
        .and_then(|c| c.split('<').nth(1))
        .and_then(|c| c.split('>').next())
        .expect("Alice's Contact")
        .to_string();
    let via = s.b.via();
    let mut bye = format!("BYE {alice_target} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 69\r\n");
    for r in headers(&at_b, "Record-Route")
        .into_iter()
        .flat_map(|v| v.split(", "))
    {
        bye.push_str(&format!("Route: {r}\r\n"));
    }
    bye.push_str(&format!(
        "From: {};tag=bob4\r\nTo: {}\r\nCall-ID: relay-callee-bye\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        header(&at_b, "To").expect("To"),
        header(&at_b, "From").expect("From")
    ));
    s.b.send(bye).await;
    let bye_at_a = s.a.recv().await;
    // At Alice's own Contact again, with the relay's Route entries gone.
    assert!(
        bye_at_a.starts_with(&format!("BYE sip:{}@{}", s.a.contact_user, s.a.host)),
        "{bye_at_a}"
    );
    assert!(!bye_at_a.contains("crl="), "{bye_at_a}");
    s.a.send(response_to(&bye_at_a, "200 OK", "x", "", ""))
        .await;
    let bye_ok = s.b.recv().await;
    assert!(
        bye_ok.starts_with("SIP/2.0 200 ") && bye_ok.contains("CSeq: 1 BYE"),
        "{bye_ok}"
    );
    let row = finished_cdr(&s.srv, &s.cookie, "relay-callee-bye");
    assert_eq!(row["disposition"], "ANSWERED", "{row}");
    assert_eq!(row["hangupCause"], "callee_bye", "{row}");
    assert!(row["billsec"].as_i64().is_some_and(|b| b >= 1), "{row}");
    // Every call was seen by the PBX: two INVITEs each (challenged, then
    // authenticated).
    assert_eq!(s.kam.seen("INVITE").len(), 6);
    assert_eq!(s.kam.seen("CANCEL").len(), 1);

    // Answered, then Bob's browser goes away (tab closed): no BYE will
    // ever pass, the call ends when his flow closes.
    let (_, at_b) = invite_bob(&mut s, "relay-callee-gone").await;
    s.b.send(response_to(
        &at_b,
        "200 OK",
        "bob5",
        &s.b.contact(),
        &sdp(40_014),
    ))
    .await;
    let ok = s.a.recv().await;
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    let Site { b, srv, cookie, .. } = s;
    drop(b);
    let row = finished_cdr(&srv, &cookie, "relay-callee-gone");
    assert_eq!(row["disposition"], "ANSWERED", "{row}");
    assert_eq!(row["hangupCause"], "callee_connection_lost", "{row}");
}

/// One SIP message from a stream (Content-Length framing).
async fn read_framed<S: tokio::io::AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> String {
    use tokio::io::AsyncReadExt;
    loop {
        let text = String::from_utf8_lossy(buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let cl = header(&text[..end + 4], "Content-Length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + cl {
                let msg: Vec<u8> = buf.drain(..end + 4 + cl).collect();
                return String::from_utf8_lossy(&msg).into_owned();
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("the relay sent something within 10 s")
            .expect("read");
        assert!(n > 0, "the relay closed the TLS connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A TLS upstream: a PBX played by the test over rustls (Kamailio's TLS
/// module is not installed here). The relay checks its certificate against
/// `relay.tls_ca`, registers through it (401, then 200) and takes an
/// incoming call from it over the same connection to the browser's own
/// Contact; the browser's 486 goes back, and the CDR is an inbound BUSY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_upstream_registers_and_takes_an_incoming_call() {
    use tokio::io::AsyncWriteExt;
    centralita::tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let cert = centralita::devcert::generate(&dir.path().join("tls"), &names, false).expect("cert");
    let tls = centralita::tls::server_config(&cert.cert_path, &cert.key_path).expect("tls config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let upstream = format!("tls:127.0.0.1:{port}");
    let ca = cert.cert_path.display().to_string();
    let srv = start_centralita(
        dir.path(),
        &upstream,
        &[("CENTRALITA_RELAY_TLS_CA", ca.as_str())],
    );
    let cookie = srv.login();
    let (_, ext) = srv.agent(&cookie, "carla.relay");

    let peer_ext = ext.clone();
    let pbx = tokio::spawn(async move {
        // The relay's OPTIONS probes come on connections of their own:
        // answered, then the browser's flow is the connection that registers.
        let (mut s, mut buf, first) = loop {
            let (tcp, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
                .await
                .expect("the relay connects")
                .expect("accept");
            let mut s = acceptor.accept(tcp).await.expect("TLS handshake");
            let mut buf = Vec::new();
            let first = read_framed(&mut s, &mut buf).await;
            if first.starts_with("OPTIONS ") {
                let mut ok = String::from("SIP/2.0 200 OK\r\n");
                for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
                    ok.push_str(&format!("{h}: {}\r\n", header(&first, h).unwrap_or("")));
                }
                ok.push_str("Content-Length: 0\r\n\r\n");
                s.write_all(ok.as_bytes()).await.expect("write");
                continue;
            }
            break (s, buf, first);
        };
        let reply = |req: &str, status: &str, extra: &str| {
            let mut out = format!("SIP/2.0 {status}\r\n");
            for v in headers(req, "Via") {
                out.push_str(&format!("Via: {v}\r\n"));
            }
            for h in ["From", "Call-ID", "CSeq"] {
                out.push_str(&format!("{h}: {}\r\n", header(req, h).unwrap_or("")));
            }
            out.push_str(&format!(
                "To: {};tag=pbx\r\n{extra}Content-Length: 0\r\n\r\n",
                header(req, "To").unwrap_or("")
            ));
            out
        };
        assert!(first.starts_with("REGISTER "), "{first}");
        assert!(
            header(&first, "Via").is_some_and(|v| v.starts_with("SIP/2.0/TLS 127.0.0.1:")),
            "{first}"
        );
        let contact = header(&first, "Contact").expect("Contact").to_string();
        assert!(contact.contains(";transport=tls;crl="), "{contact}");
        let challenge = "WWW-Authenticate: Digest realm=\"pbx.test\", nonce=\"tls-nonce\", qop=\"auth\", algorithm=MD5\r\n";
        s.write_all(reply(&first, "401 Unauthorized", challenge).as_bytes())
            .await
            .expect("write");
        let second = read_framed(&mut s, &mut buf).await;
        assert!(
            header(&second, "Authorization").is_some_and(|a| a.contains("nonce=\"tls-nonce\"")),
            "{second}"
        );
        let bound = header(&second, "Contact").expect("Contact").to_string();
        let uri = bound
            .split('<')
            .nth(1)
            .and_then(|c| c.split('>').next())
            .expect("URI")
            .to_string();
        s.write_all(
            reply(
                &second,
                "200 OK",
                &format!("Contact: <{uri}>;expires=600\r\n"),
            )
            .as_bytes(),
        )
        .await
        .expect("write");
        // An incoming call for the registered user, over the same connection.
        let body = sdp(40_020);
        let invite = format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:{port};branch=z9hG4bKpbxinv1\r\n\
             Max-Forwards: 70\r\nFrom: <sip:5551234@pbx.test>;tag=pbx-in\r\nTo: <sip:{peer_ext}@pbx.test>\r\n\
             Call-ID: relay-tls-in\r\nCSeq: 1 INVITE\r\nContact: <sip:5551234@127.0.0.1:{port};transport=tls>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(invite.as_bytes()).await.expect("write");
        let answer = read_framed(&mut s, &mut buf).await;
        let to = header(&answer, "To").unwrap_or("").to_string();
        s.write_all(
            format!(
                "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:{port};branch=z9hG4bKpbxinv1\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:5551234@pbx.test>;tag=pbx-in\r\nTo: {to}\r\n\
                 Call-ID: relay-tls-in\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("write");
        answer
    });

    let mut c = Ua::connect(&srv.http, &ext, "pbx-secret-carla").await;
    let ok = c.register().await;
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    assert!(ok.contains(&c.contact()), "{ok}");
    let inv = c.recv().await;
    assert!(
        inv.starts_with(&format!("INVITE sip:{}@{}", c.contact_user, c.host)),
        "{inv}"
    );
    assert!(inv.contains("m=audio 40020"), "{inv}");
    c.send(response_to(&inv, "486 Busy Here", "carla1", "", ""))
        .await;
    let answer = tokio::time::timeout(Duration::from_secs(10), pbx)
        .await
        .expect("the PBX finished")
        .expect("the PBX's checks held");
    assert!(answer.starts_with("SIP/2.0 486 "), "{answer}");
    // Our Via came off: the PBX's own is on top.
    assert!(
        header(&answer, "Via").is_some_and(|v| v.contains("z9hG4bKpbxinv1")),
        "{answer}"
    );
    let ack = c.recv().await;
    assert!(ack.starts_with("ACK "), "{ack}");
    let row = finished_cdr(&srv, &cookie, "relay-tls-in");
    assert_eq!(row["disposition"], "BUSY", "{row}");
    assert_eq!(row["direction"], "inbound", "{row}");
    assert_eq!(row["callerNumber"], "5551234", "{row}");
    assert_eq!(row["calleeNumber"], ext.as_str(), "{row}");
}

/// A PBX's answer to `req`: Via, From, Call-ID, CSeq copied, To tagged.
fn pbx_reply(req: &str, status: &str, extra: &str) -> String {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for v in headers(req, "Via") {
        out.push_str(&format!("Via: {v}\r\n"));
    }
    for h in ["From", "Call-ID", "CSeq"] {
        out.push_str(&format!("{h}: {}\r\n", header(req, h).unwrap_or("")));
    }
    out.push_str(&format!(
        "To: {};tag=pbx\r\n{extra}Content-Length: 0\r\n\r\n",
        header(req, "To").unwrap_or("")
    ));
    out
}

/// A byte stream under the test PBX's WebSocket: TCP or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// A `ws:`/`wss:` upstream (SIP over WebSocket toward the PBX, as a 3CX's
/// browser endpoint is): the relay opens the WebSocket with subprotocol
/// `sip` on the configured path (over TLS for `wss:`, the certificate
/// checked against `relay.tls_ca`), registers through it and takes an
/// incoming call over it; the PBX is played by the test
/// (tokio-tungstenite server).
///
/// The WSS PBX plays a 3CX behind its WebSocket (seeds/002): it refuses
/// (403) every handshake whose `Origin` is not the one it knows, so the
/// relay must send `relay.origin` on the browser's flow and on its OPTIONS
/// probes alike; and the relay writes `relay.advertised_host` toward it in
/// Via and Contact. The WS PBX checks that no `Origin` is sent when none
/// is configured, and sees the socket's own address.
async fn ws_upstream(secure: bool) {
    use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
    centralita::tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let cert = centralita::devcert::generate(&dir.path().join("tls"), &names, false).expect("cert");
    let tls = centralita::tls::server_config(&cert.cert_path, &cert.key_path).expect("tls config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let scheme = if secure { "wss" } else { "ws" };
    let ca = cert.cert_path.display().to_string();
    let origin: Option<&'static str> = secure.then_some("https://pbx.example.test:5001");
    let host = if secure {
        "relay.example.test"
    } else {
        "127.0.0.1"
    };
    let mut env = vec![("CENTRALITA_RELAY_TLS_CA", ca.as_str())];
    if let Some(o) = origin {
        env.push(("CENTRALITA_RELAY_ORIGIN", o));
        env.push(("CENTRALITA_RELAY_ADVERTISED_HOST", host));
    }
    let srv = start_centralita(dir.path(), &format!("{scheme}:127.0.0.1:{port}/sip"), &env);
    let cookie = srv.login();
    let (_, ext) = srv.agent(&cookie, "dora.relay");
    let peer_ext = ext.clone();
    let via_t = scheme.to_ascii_uppercase();
    let pbx = tokio::spawn(async move {
        async fn next_text(ws: &mut WebSocketStream<Box<dyn Io>>) -> String {
            loop {
                let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
                    .await
                    .expect("the relay sent something within 10 s")
                    .expect("the relay kept the WebSocket open")
                    .expect("WebSocket message");
                if let Message::Text(t) = m {
                    return t.as_str().to_string();
                }
            }
        }
        // The relay's OPTIONS probes come on WebSockets of their own.
        let (mut ws, first) = loop {
            let (tcp, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
                .await
                .expect("the relay connects")
                .expect("accept");
            let io: Box<dyn Io> = if secure {
                Box::new(acceptor.accept(tcp).await.expect("TLS handshake"))
            } else {
                Box::new(tcp)
            };
            // The Origin of each handshake, as the PBX got it.
            let mut seen: Option<Option<String>> = None;
            // The callback's type is tungstenite's (its error is an HTTP response).
            #[allow(clippy::result_large_err)]
            let check = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
                let got = req
                    .headers()
                    .get("Origin")
                    .map(|v| v.to_str().unwrap_or("(not text)").to_string());
                let known = got.as_deref() == origin;
                seen = Some(got);
                if !known {
                    let mut e = ErrorResponse::new(Some("unknown origin".into()));
                    *e.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::FORBIDDEN;
                    return Err(e);
                }
                let offers_sip = req
                    .headers()
                    .get("Sec-WebSocket-Protocol")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.split(',').any(|p| p.trim() == "sip"));
                if req.uri().path() != "/sip" || !offers_sip {
                    let mut e = ErrorResponse::new(Some("wrong path or no sip".into()));
                    *e.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::BAD_REQUEST;
                    return Err(e);
                }
                resp.headers_mut().insert(
                    "Sec-WebSocket-Protocol",
                    "sip".parse().expect("header value"),
                );
                Ok(resp)
            };
            let mut ws = match tokio_tungstenite::accept_hdr_async(io, check).await {
                Ok(ws) => ws,
                Err(e) => panic!(
                    "WebSocket handshake on /sip with subprotocol sip and Origin {origin:?} \
                     refused ({e}); the relay sent Origin {seen:?}"
                ),
            };
            let first = next_text(&mut ws).await;
            if first.starts_with("OPTIONS ") {
                ws.send(Message::Text(pbx_reply(&first, "200 OK", "").into()))
                    .await
                    .expect("send");
                continue;
            }
            break (ws, first);
        };
        assert!(first.starts_with("REGISTER "), "{first}");
        assert!(
            header(&first, "Via")
                .is_some_and(|v| v.starts_with(&format!("SIP/2.0/{via_t} {host}:"))),
            "{first}"
        );
        let contact = header(&first, "Contact").expect("Contact").to_string();
        assert!(
            contact.contains(&format!("@{host}:"))
                && contact.contains(&format!(";transport={scheme};crl=")),
            "{contact}"
        );
        let challenge =
            "WWW-Authenticate: Digest realm=\"pbx.test\", nonce=\"ws-nonce\", qop=\"auth\"\r\n";
        ws.send(Message::Text(
            pbx_reply(&first, "401 Unauthorized", challenge).into(),
        ))
        .await
        .expect("send");
        let second = next_text(&mut ws).await;
        assert!(
            header(&second, "Authorization").is_some_and(|a| a.contains("nonce=\"ws-nonce\"")),
            "{second}"
        );
        let bound = header(&second, "Contact").expect("Contact").to_string();
        let uri = bound
            .split('<')
            .nth(1)
            .and_then(|c| c.split('>').next())
            .expect("URI")
            .to_string();
        let ok = pbx_reply(
            &second,
            "200 OK",
            &format!("Contact: <{uri}>;expires=600\r\n"),
        );
        ws.send(Message::Text(ok.into())).await.expect("send");
        let invite = format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/{via_t} 127.0.0.1:{port};branch=z9hG4bKpbxws1\r\n\
             Max-Forwards: 70\r\nFrom: <sip:5557777@pbx.test>;tag=pbx-ws\r\nTo: <sip:{peer_ext}@pbx.test>\r\n\
             Call-ID: relay-ws-in\r\nCSeq: 1 INVITE\r\nContact: <sip:5557777@127.0.0.1:{port};transport={scheme}>\r\n\
             Content-Length: 0\r\n\r\n"
        );
        ws.send(Message::Text(invite.into())).await.expect("send");
        next_text(&mut ws).await
    });

    let mut c = Ua::connect(&srv.http, &ext, "pbx-secret-dora").await;
    let ok = c.register().await;
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    let inv = c.recv().await;
    assert!(
        inv.starts_with(&format!("INVITE sip:{}@{}", c.contact_user, c.host)),
        "{inv}"
    );
    c.send(response_to(&inv, "486 Busy Here", "dora1", "", ""))
        .await;
    let answer = tokio::time::timeout(Duration::from_secs(10), pbx)
        .await
        .expect("the PBX finished")
        .expect("the PBX's checks held");
    assert!(answer.starts_with("SIP/2.0 486 "), "{answer}");
    assert!(
        header(&answer, "Via").is_some_and(|v| v.contains("z9hG4bKpbxws1")),
        "{answer}"
    );
    let row = finished_cdr(&srv, &cookie, "relay-ws-in");
    assert_eq!(row["disposition"], "BUSY", "{row}");
    assert_eq!(row["calleeNumber"], ext.as_str(), "{row}");
    let cookie = srv.login();
    let status = srv.get(&cookie, "/api/telephony/status");
    assert_eq!(status["status"]["connected"], true, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_upstream_registers_and_takes_an_incoming_call() {
    ws_upstream(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_upstream_registers_and_takes_an_incoming_call() {
    ws_upstream(true).await;
}

/// A `tls:` upstream whose CA file cannot be read stops the start with a
/// message naming the setting.
#[test]
fn tls_upstream_with_an_unreadable_ca_stops_the_start_and_check_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_centralita"))
        .arg("serve")
        .env("CENTRALITA_MODE", "relay")
        .env("CENTRALITA_RELAY_UPSTREAM", "tls:127.0.0.1:5061")
        .env("CENTRALITA_RELAY_TLS_CA", dir.path().join("missing.pem"))
        .env("CENTRALITA_HTTP_LISTEN", "127.0.0.1:0")
        .env("CENTRALITA_DATA_DIR", dir.path())
        .env("CENTRALITA_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .test_database(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("relay.tls_ca") && err.contains("missing.pem"),
        "{err}"
    );
    // check-config says the same without starting.
    let out = Command::new(env!("CARGO_BIN_EXE_centralita"))
        .arg("check-config")
        .env("CENTRALITA_MODE", "relay")
        .env("CENTRALITA_RELAY_UPSTREAM", "tls:127.0.0.1:5061")
        .env("CENTRALITA_RELAY_TLS_CA", dir.path().join("missing.pem"))
        .env("CENTRALITA_DATA_DIR", dir.path())
        .test_database(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("relay.tls_ca") && err.contains("missing.pem"),
        "{err}"
    );
    // And with a usable upstream, it names it.
    let out = Command::new(env!("CARGO_BIN_EXE_centralita"))
        .arg("check-config")
        .env("CENTRALITA_MODE", "relay")
        .env("CENTRALITA_RELAY_UPSTREAM", "udp:127.0.0.1:5060")
        .env("CENTRALITA_DATA_DIR", dir.path())
        .test_database(dir.path())
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("relay: browsers' SIP over /ws to udp:127.0.0.1:5060"),
        "{text}"
    );
    // The WebSocket Origin and the advertised host are named; a bad Origin
    // stops it with the setting's name.
    let check = |origin: &str| {
        Command::new(env!("CARGO_BIN_EXE_centralita"))
            .arg("check-config")
            .env("CENTRALITA_MODE", "relay")
            .env("CENTRALITA_RELAY_UPSTREAM", "wss:127.0.0.1:5001/ws")
            .env("CENTRALITA_RELAY_ORIGIN", origin)
            .env("CENTRALITA_RELAY_ADVERTISED_HOST", "relay.example.test")
            .env("CENTRALITA_DATA_DIR", dir.path())
            .test_database(dir.path())
            .output()
            .expect("run")
    };
    let out = check("https://pbx.example.test:5001");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("WebSocket Origin https://pbx.example.test:5001")
            && text.contains("advertised to the PBX as relay.example.test"),
        "{text}"
    );
    let out = check("pbx.example.test");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("relay.origin"), "{err}");
}

/// Over UDP the relay retransmits for the browser (which never does over
/// its WebSocket): a PBX that loses the first REGISTER gets it again, with
/// the same branch, about T1 (500 ms) later, and the browser gets one answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_upstream_gets_lost_requests_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = sock.local_addr().expect("addr").port();
    let srv = start_centralita(dir.path(), &format!("udp:127.0.0.1:{port}"), &[]);
    let pbx = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        let mut got = Vec::new();
        // The first copy is "lost"; the second is answered. (The relay's
        // OPTIONS probes go unanswered: not what this is about.)
        while got.len() < 2 {
            let (n, from) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
                .await
                .expect("a REGISTER within 5 s")
                .expect("recv");
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !text.starts_with("OPTIONS ") {
                got.push((std::time::Instant::now(), text, from));
            }
        }
        let (_, req, from) = &got[1];
        let mut out = String::from("SIP/2.0 200 OK\r\n");
        for v in headers(req, "Via") {
            out.push_str(&format!("Via: {v}\r\n"));
        }
        for h in ["From", "To", "Call-ID", "CSeq", "Contact"] {
            out.push_str(&format!("{h}: {}\r\n", header(req, h).unwrap_or("")));
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        sock.send_to(out.as_bytes(), from).await.expect("send");
        // Nothing more: the answer stopped the retransmissions.
        let quiet = loop {
            match tokio::time::timeout(Duration::from_millis(1_500), sock.recv_from(&mut buf)).await
            {
                Err(_) => break true,
                Ok(Ok((n, _))) if buf[..n].starts_with(b"OPTIONS ") => continue,
                Ok(_) => break false,
            }
        };
        (got, quiet)
    });
    let mut c = Ua::connect(&srv.http, "2000", "unused").await;
    let via = c.via();
    c.send(format!(
        "REGISTER sip:{REALM} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
         From: <sip:2000@{REALM}>;tag=r2000\r\nTo: <sip:2000@{REALM}>\r\nCall-ID: retx-1\r\n\
         CSeq: 1 REGISTER\r\nContact: {};expires=60\r\nContent-Length: 0\r\n\r\n",
        c.contact()
    ))
    .await;
    let ok = c.recv().await;
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    let (got, quiet) = pbx.await.expect("the PBX's checks held");
    let gap = got[1].0.duration_since(got[0].0);
    assert_eq!(got[0].1, got[1].1, "the same request, byte for byte");
    assert!(
        gap >= Duration::from_millis(400) && gap <= Duration::from_millis(1_500),
        "{gap:?}"
    );
    assert!(quiet, "no retransmission after the answer");
}

/// Each browser flow holds a socket toward the PBX: the per-address cap
/// (`sip.max_connections_per_ip`) refuses the next WebSocket with 429, and
/// a closed flow frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_per_address_are_capped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = sock.local_addr().expect("addr").port();
    let srv = start_centralita(
        dir.path(),
        &format!("udp:127.0.0.1:{port}"),
        &[("CENTRALITA_SIP_MAX_CONNECTIONS_PER_IP", "2")],
    );
    let upgrade = |http: String| async move {
        let tcp = TcpStream::connect(&http).await.expect("connect");
        let mut req = format!("ws://{http}/ws")
            .into_client_request()
            .expect("request");
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "sip".parse().expect("value"));
        tokio_tungstenite::client_async(req, tcp).await
    };
    let first = upgrade(srv.http.clone()).await.expect("first flow");
    let _second = upgrade(srv.http.clone()).await.expect("second flow");
    match upgrade(srv.http.clone()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 429)
        }
        other => panic!("a third flow from one address: {:?}", other.map(|_| ())),
    }
    drop(first);
    let mut again = None;
    for _ in 0..50 {
        if let Ok(ws) = upgrade(srv.http.clone()).await {
            again = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "a closed flow frees its place");
    // This "PBX" never answers: the console is told the relay is not connected.
    let cookie = srv.login();
    let status = srv.get(&cookie, "/api/telephony/status");
    assert_eq!(status["status"]["connected"], false, "{status}");
    drop(sock);
}

/// Stopping the server with a call up closes its CDR as `shutdown` (the
/// relay keeps no journal: a row left open would stay open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_with_a_call_up_closes_its_cdr() {
    let mut s = site("udp").await;
    let (_, at_b) = invite_bob(&mut s, "relay-shutdown").await;
    s.b.send(response_to(
        &at_b,
        "200 OK",
        "bob6",
        &s.b.contact(),
        &sdp(40_016),
    ))
    .await;
    let ok = s.a.recv().await;
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    let Site {
        _dir: dir,
        mut srv,
        a,
        b,
        kam,
        ..
    } = s;
    let _ = Command::new("kill")
        .args(["-TERM", &srv.child.pid().to_string()])
        .status();
    let mut exited = None;
    for _ in 0..100 {
        if let Ok(Some(st)) = srv.child.child.try_wait() {
            exited = Some(st);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        exited.is_some_and(|st| st.success()),
        "clean stop: {exited:?}"
    );
    drop((a, b, kam));
    // The row, as the next run reads it.
    srv = start_centralita(dir.path(), "udp:127.0.0.1:9", &[]);
    let cookie = srv.login();
    let row = finished_cdr(&srv, &cookie, "relay-shutdown");
    assert_eq!(row["disposition"], "ANSWERED", "{row}");
    assert_eq!(row["hangupCause"], "shutdown", "{row}");
    // Bindings of the previous run are gone with its flows.
    let regs = srv.get(&cookie, "/api/telephony/registrations");
    assert_eq!(
        regs["registrations"].as_array().map(Vec::len),
        Some(0),
        "{regs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_register_and_call_through_the_relay_over_udp() {
    call_through_the_relay("udp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_register_and_call_through_the_relay_over_tcp() {
    call_through_the_relay("tcp").await;
}

impl Centralita {
    /// `POST /api/telephony/call/hangup` of `call_id`: (status, body).
    fn hang_up(&self, cookie: &str, call_id: &str) -> (u16, serde_json::Value) {
        let body = serde_json::json!({ "callId": call_id }).to_string();
        let (status, _, text) = support::http_request(
            &self.http,
            "POST",
            "/api/telephony/call/hangup",
            Some(&body),
            Some(cookie),
        );
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }
}

/// The console hangs relayed calls up (`POST /api/telephony/call/hangup`):
/// an answered call gets a BYE to each party (to Alice straight from the
/// relay, to Bob through the PBX along the route set), a ringing one a
/// CANCEL toward Bob through the PBX (Alice then gets Bob's 487); each
/// CDR ends `forced_hangup`. Calls that are over, or unknown, are 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_hangs_up_relayed_calls() {
    let mut s = site("udp").await;

    // Answered: Alice calls Bob, Bob answers, Alice acknowledges.
    let (_, at_b) = invite_bob(&mut s, "relay-forced").await;
    s.b.send(response_to(
        &at_b,
        "200 OK",
        "bob7",
        &s.b.contact(),
        &sdp(40_016),
    ))
    .await;
    let ok = s.a.recv().await;
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    let target = header(&ok, "Contact")
        .and_then(|c| c.split('<').nth(1))
        .and_then(|c| c.split('>').next())
        .expect("Contact URI")
        .to_string();
    let mut route: Vec<&str> = headers(&ok, "Record-Route")
        .into_iter()
        .flat_map(|v| v.split(", "))
        .collect();
    route.reverse();
    let via = s.a.via();
    let mut ack = format!("ACK {target} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 69\r\n");
    for r in &route {
        ack.push_str(&format!("Route: {r}\r\n"));
    }
    ack.push_str(&format!(
        "From: {}\r\nTo: {}\r\nCall-ID: relay-forced\r\nCSeq: 2 ACK\r\nContent-Length: 0\r\n\r\n",
        header(&ok, "From").expect("From"),
        header(&ok, "To").expect("To")
    ));
    s.a.send(ack).await;
    let ack_at_b = s.b.recv().await;
    assert!(ack_at_b.starts_with("ACK "), "{ack_at_b}");
    let byes_before = s.kam.seen("BYE").len();

    let (status, v) = s.srv.hang_up(&s.cookie, "relay-forced");
    assert_eq!(status, 200, "{v}");
    // Alice: at her own Contact, in her dialog (Bob's tag as From tag).
    let bye_at_a = s.a.recv().await;
    assert!(
        bye_at_a.starts_with(&format!("BYE sip:{}@{}", s.a.contact_user, s.a.host)),
        "{bye_at_a}"
    );
    assert!(
        header(&bye_at_a, "From").is_some_and(|f| f.contains("tag=bob7")),
        "{bye_at_a}"
    );
    assert!(
        header(&bye_at_a, "To").is_some_and(|t| t.contains("tag=t-relay-forced")),
        "{bye_at_a}"
    );
    assert!(!bye_at_a.contains("crl="), "{bye_at_a}");
    s.a.send(response_to(&bye_at_a, "200 OK", "x", "", ""))
        .await;
    // Bob: through the PBX, at his own Contact, in his dialog.
    let bye_at_b = s.b.recv().await;
    assert!(
        bye_at_b.starts_with(&format!("BYE sip:{}@{}", s.b.contact_user, s.b.host)),
        "{bye_at_b}"
    );
    assert!(
        header(&bye_at_b, "From").is_some_and(|f| f.contains("tag=t-relay-forced")),
        "{bye_at_b}"
    );
    assert!(
        header(&bye_at_b, "To").is_some_and(|t| t.contains("tag=bob7")),
        "{bye_at_b}"
    );
    assert!(
        header(&bye_at_b, "CSeq").is_some_and(|c| c == "3 BYE"),
        "above Alice's INVITE: {bye_at_b}"
    );
    s.b.send(response_to(&bye_at_b, "200 OK", "bob7", "", ""))
        .await;
    assert_eq!(
        s.kam.seen("BYE").len(),
        byes_before + 1,
        "one BYE through the PBX"
    );
    let row = finished_cdr(&s.srv, &s.cookie, "relay-forced");
    assert_eq!(row["disposition"], "ANSWERED", "{row}");
    assert_eq!(row["hangupCause"], "forced_hangup", "{row}");
    // Over: nothing to hang up; the BYE answers were the relay's own and
    // went no further.
    let (status, v) = s.srv.hang_up(&s.cookie, "relay-forced");
    assert_eq!(status, 404, "{v}");
    let quiet = tokio::time::timeout(Duration::from_millis(600), s.a.ws.next()).await;
    assert!(quiet.is_err(), "nothing more for Alice: {quiet:?}");

    // Ringing: Bob's phone rings; the hang-up cancels it at the PBX, Bob
    // answers 487 and Alice gets it.
    let (invite, at_b) = invite_bob(&mut s, "relay-forced-ring").await;
    s.b.send(response_to(
        &at_b,
        "180 Ringing",
        "bob8",
        &s.b.contact(),
        "",
    ))
    .await;
    let ringing = s.a.recv().await;
    assert!(ringing.starts_with("SIP/2.0 180 "), "{ringing}");
    let (status, v) = s.srv.hang_up(&s.cookie, "relay-forced-ring");
    assert_eq!(status, 200, "{v}");
    let cancel_at_b = s.b.recv().await;
    assert!(
        cancel_at_b.starts_with("CANCEL ") && cancel_at_b.contains("relay-forced-ring"),
        "{cancel_at_b}"
    );
    s.b.send(response_to(&cancel_at_b, "200 OK", "bob8", "", ""))
        .await;
    s.b.send(response_to(&at_b, "487 Request Terminated", "bob8", "", ""))
        .await;
    let terminated = s.a.recv().await;
    assert!(terminated.starts_with("SIP/2.0 487 "), "{terminated}");
    s.a.send(ack_for(&invite, &terminated)).await;
    let ack = s.b.recv().await;
    assert!(
        ack.starts_with("ACK ") && ack.contains("relay-forced-ring"),
        "{ack}"
    );
    let row = finished_cdr(&s.srv, &s.cookie, "relay-forced-ring");
    assert_eq!(row["hangupCause"], "forced_hangup", "{row}");
    assert_eq!(row["disposition"], "FAILED", "{row}");
    let (status, v) = s.srv.hang_up(&s.cookie, "no-such-call");
    assert_eq!(status, 404, "{v}");

    // Bob closes his browser: the relay asks the PBX to drop the binding
    // of his flow (Expires: 0 for the flow's Contact, no credentials: it
    // has none). Kamailio challenges it, so there the binding expires on
    // its own.
    let before = s.kam.seen("REGISTER").len();
    let Site {
        b, kam, srv, _dir, ..
    } = s;
    let bob_contact = format!("sip:{}@", b.contact_user);
    drop(b);
    let t0 = std::time::Instant::now();
    let line = loop {
        if let Some(l) = kam.seen("REGISTER").get(before) {
            break l.clone();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no REGISTER after the flow closed: {}",
            kam.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(line.contains(&bob_contact), "{line}");
    assert!(
        line.contains("crl=") && line.contains("expires=0"),
        "{line}"
    );
    assert!(!line.contains("Digest"), "no credentials: {line}");
    drop(srv);
}

/// A browser tab that closes mid-call leaves nobody talking to it: the
/// relay sends the PBX's side a BYE in that party's dialog, and the CDR
/// ends with the lost connection as its cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_tab_hangs_up_the_other_party_through_the_pbx() {
    let mut s = site("udp").await;
    let (_, at_b) = invite_bob(&mut s, "relay-tab-closed").await;
    s.b.send(response_to(
        &at_b,
        "200 OK",
        "bob8",
        &s.b.contact(),
        &sdp(40_018),
    ))
    .await;
    let ok = s.a.recv().await;
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    // Alice's tab closes (her WebSocket goes) without a BYE.
    let Site {
        _dir,
        srv,
        cookie,
        kam,
        a,
        mut b,
        ..
    } = s;
    drop(a);
    let bye_at_b = b.recv().await;
    assert!(
        bye_at_b.starts_with(&format!("BYE sip:{}@{}", b.contact_user, b.host)),
        "{bye_at_b}"
    );
    assert!(
        header(&bye_at_b, "From").is_some_and(|f| f.contains("tag=t-relay-tab-closed")),
        "in Bob's dialog: {bye_at_b}"
    );
    assert!(
        header(&bye_at_b, "To").is_some_and(|t| t.contains("tag=bob8")),
        "{bye_at_b}"
    );
    b.send(response_to(&bye_at_b, "200 OK", "x", "", "")).await;
    assert!(!kam.seen("BYE").is_empty(), "the BYE went through the PBX");
    let row = finished_cdr(&srv, &cookie, "relay-tab-closed");
    assert_eq!(row["disposition"], "ANSWERED", "{row}");
    assert_eq!(row["hangupCause"], "caller_connection_lost", "{row}");
}
