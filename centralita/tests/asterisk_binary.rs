//! `mode = "asterisk"` through the real binary. Asterisk is not in Debian,
//! so the manager interface is played by this test: an AMI peer on
//! 127.0.0.1 that speaks the protocol as the captured Asterisk 22 did
//! (banner, MD5 challenge login, action answers by ActionID, list answers)
//! and then sends the events of a captured call
//! (`crates/asterisk/tests/fixtures/ami-transcript-sip-calls.raw.jsonl`).
//!
//! Checked: the binary logs in with the MD5 key of its secret; an agent
//! and a trunk created through the API are rendered into the two files of
//! its own (the agent's stored HA1 as `md5_cred`, never the password) and
//! each change is followed by `Action: Reload` of `res_pjsip.so`; the
//! status endpoint reports the engine as connected; `/ws` is refused (the
//! phones register to Asterisk); the captured call, replayed in steps, is
//! listed in the active calls while it rings and once answered, leaves the
//! list at its hang-up, passes the events socket as ringing / answered /
//! ended, and becomes one CDR row with the right numbers and disposition.

mod support;
use support::{Reaped, TestDatabase};

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ADMIN_PASSWORD: &str = "admin-password-for-asterisk-tests";
const AMI_USER: &str = "centralita";
const AMI_SECRET: &str = "ami-secret-5";
const CHALLENGE: &str = "417318265";

/// What the fake manager saw: every action, as its key/value lines.
#[derive(Default)]
struct Seen {
    actions: Vec<Vec<(String, String)>>,
    logged_in: bool,
}

fn field<'a>(msg: &'a [(String, String)], key: &str) -> Option<&'a str> {
    msg.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

fn md5_hex(s: &str) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(s.as_bytes()))
}

/// The server side of the captured call, as AMI event messages.
fn captured_events() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/asterisk/tests/fixtures/ami-transcript-sip-calls.raw.jsonl");
    let text = std::fs::read_to_string(&path).expect("the captured AMI transcript");
    let mut server = String::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).expect("a JSON line");
        if v["dir"] == "S->C" {
            server.push_str(v["bytes"].as_str().expect("bytes"));
        }
    }
    server
        .split("\r\n\r\n")
        .filter(|m| m.starts_with("Event:"))
        .map(|m| format!("{m}\r\n\r\n"))
        .collect()
}

/// Serves one manager connection: answers every action, and once logged
/// in sends the captured events when `play` is set.
fn serve(mut stream: TcpStream, seen: Arc<Mutex<Seen>>, outbox: Arc<Mutex<Vec<String>>>) {
    let _ = stream.write_all(b"Asterisk Call Manager/11.0.0\r\n");
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let _ = read_half.set_read_timeout(Some(Duration::from_millis(100)));
    let mut reader = BufReader::new(read_half);
    let mut msg: Vec<(String, String)> = Vec::new();
    let mut line = String::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(120) {
        if seen.lock().expect("lock").logged_in {
            let queued: Vec<String> = std::mem::take(&mut *outbox.lock().expect("lock"));
            for ev in queued {
                if stream.write_all(ev.as_bytes()).is_err() {
                    return;
                }
            }
        }
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if !l.is_empty() {
            if let Some((k, v)) = l.split_once(':') {
                msg.push((k.trim().to_string(), v.trim().to_string()));
            }
            continue;
        }
        if msg.is_empty() {
            continue;
        }
        let action = std::mem::take(&mut msg);
        let name = field(&action, "Action").unwrap_or("").to_string();
        let id = field(&action, "ActionID").unwrap_or("").to_string();
        let reply = match name.to_ascii_lowercase().as_str() {
            "challenge" => format!("Response: Success\r\nActionID: {id}\r\nChallenge: {CHALLENGE}\r\n\r\n"),
            "login" => {
                let key_ok = field(&action, "Key") == Some(&md5_hex(&format!("{CHALLENGE}{AMI_SECRET}")));
                if field(&action, "Username") == Some(AMI_USER) && key_ok {
                    seen.lock().expect("lock").logged_in = true;
                    format!("Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n")
                } else {
                    format!("Response: Error\r\nActionID: {id}\r\nMessage: Authentication failed\r\n\r\n")
                }
            }
            "reload" => format!("Response: Success\r\nActionID: {id}\r\nMessage: Module Reloaded.\r\n\r\n"),
            // Asterisk's words and bytes (`astman_send_error` messages end
            // with a bare "\n" of their own).
            "pjsipqualify" if field(&action, "Endpoint") == Some("Carrier_Main") => format!(
                "Response: Success\r\nActionID: {id}\r\nMessage: Endpoint found, will qualify\r\n\r\n\
                 Event: ContactStatus\r\nPrivilege: system,all\r\nURI: sip:sip.carrier.test:5060\r\n\
                 ContactStatus: Reachable\r\nAOR: Carrier_Main\r\nEndpointName: Carrier_Main\r\n\
                 RoundtripUsec: 23456\r\n\r\n"
            ),
            "pjsipqualify" => format!(
                "Response: Error\r\nActionID: {id}\r\nMessage: Unable to retrieve endpoint\n\r\n\r\n"
            ),
            "pjsipregister" if field(&action, "Registration") == Some("Carrier_Reg-reg-0") => format!(
                "Response: Success\r\nActionID: {id}\r\nMessage: Reregistration sent\r\n\r\n\
                 Event: Registry\r\nPrivilege: system,all\r\nChannelType: PJSIP\r\n\
                 Username: sip:acct2@sip.reg.test\r\nDomain: sip:sip.reg.test:5060\r\nStatus: Unregistered\r\n\r\n\
                 Event: Registry\r\nPrivilege: system,all\r\nChannelType: PJSIP\r\n\
                 Username: sip:acct2@sip.reg.test\r\nDomain: sip:sip.reg.test:5060\r\nStatus: Registered\r\n\r\n"
            ),
            "pjsipregister" => format!(
                "Response: Error\r\nActionID: {id}\r\nMessage: Unable to retrieve registration entry\n\r\n\r\n"
            ),
            // The registration of Carrier Reg (created later) is listed
            // as the wizard names it.
            "pjsipshowregistrationsoutbound" => format!(
                "Response: Success\r\nActionID: {id}\r\nEventList: start\r\n\
                 Message: Following are Events for each Outbound registration\r\n\r\n\
                 Event: OutboundRegistrationDetail\r\nActionID: {id}\r\nObjectType: registration\r\n\
                 ObjectName: Carrier_Reg-reg-0\r\nClientUri: sip:acct2@sip.reg.test\r\n\
                 ServerUri: sip:sip.reg.test:5060\r\nEndpoint: Carrier_Reg\r\nStatus: Rejected\r\n\r\n\
                 Event: OutboundRegistrationDetailComplete\r\nActionID: {id}\r\nEventList: Complete\r\n\
                 ListItems: 1\r\n\r\n"
            ),
            "pjsipshowcontacts" | "coreshowchannels" => format!(
                "Response: Success\r\nActionID: {id}\r\nEventList: start\r\nMessage: Listing follows\r\n\r\n\
                 Event: {name}Complete\r\nActionID: {id}\r\nEventList: Complete\r\nListItems: 0\r\n\r\n"
            ),
            "ping" => format!("Response: Success\r\nActionID: {id}\r\nPing: Pong\r\n\r\n"),
            _ => format!("Response: Success\r\nActionID: {id}\r\n\r\n"),
        };
        seen.lock().expect("lock").actions.push(action);
        if stream.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

struct Ami {
    port: u16,
    seen: Arc<Mutex<Seen>>,
    /// Events to send once logged in.
    outbox: Arc<Mutex<Vec<String>>>,
}

impl Ami {
    fn start() -> Ami {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the AMI peer");
        let port = listener.local_addr().expect("address").port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let outbox = Arc::new(Mutex::new(Vec::new()));
        let (s, p) = (seen.clone(), outbox.clone());
        std::thread::spawn(move || {
            // The client reconnects after a drop: serve each connection.
            for stream in listener.incoming().take(20).flatten() {
                let (s, p) = (s.clone(), p.clone());
                std::thread::spawn(move || serve(stream, s, p));
            }
        });
        Ami { port, seen, outbox }
    }

    /// The actions named `name` the manager received.
    fn actions_named(&self, name: &str) -> Vec<Vec<(String, String)>> {
        self.seen
            .lock()
            .expect("lock")
            .actions
            .iter()
            .filter(|a| field(a, "Action").is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .cloned()
            .collect()
    }

    fn reloads(&self) -> usize {
        self.seen
            .lock()
            .expect("lock")
            .actions
            .iter()
            .filter(|a| {
                field(a, "Action").is_some_and(|n| n.eq_ignore_ascii_case("reload"))
                    && field(a, "Module") == Some("res_pjsip.so")
            })
            .count()
    }
}

/// The API as the test calls it: (method, path, body) → (status, JSON).
type Api<'a> = dyn Fn(&str, &str, Option<Value>) -> (u16, Value) + 'a;

/// The extension of the only agent.
fn v_agent_extension(call: &impl Fn(&str, &str, Option<Value>) -> (u16, Value)) -> String {
    let (_, v) = call("GET", "/api/agents?role=agent", None);
    v["agents"][0]["sip"]["extension"]
        .as_str()
        .unwrap_or_else(|| panic!("the agent's extension: {v}"))
        .to_string()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < Duration::from_secs(15), "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The console's events socket (`/api/events`), read with a timeout.
struct EventsSocket {
    ws: tokio_tungstenite::tungstenite::WebSocket<TcpStream>,
}

impl EventsSocket {
    fn connect(http: &str, cookie: &str) -> EventsSocket {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let tcp = TcpStream::connect(http).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut req = format!("ws://{http}/api/events")
            .into_client_request()
            .expect("request");
        req.headers_mut().insert(
            "Cookie",
            format!("centralita_session={cookie}")
                .parse()
                .expect("header value"),
        );
        let (ws, _) = tokio_tungstenite::tungstenite::client(req, tcp).expect("WebSocket upgrade");
        EventsSocket { ws }
    }

    /// The states of the first `n` `call` events of `call_id`.
    fn call_states(&mut self, call_id: &str, n: usize) -> Vec<String> {
        use tokio_tungstenite::tungstenite::Message;
        let mut states = Vec::new();
        let t0 = Instant::now();
        while states.len() < n && t0.elapsed() < Duration::from_secs(15) {
            let text = match self.ws.read() {
                Ok(Message::Text(t)) => t.to_string(),
                Ok(_) => continue,
                Err(tokio_tungstenite::tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => panic!("events socket: {e}"),
            };
            let v: Value = serde_json::from_str(&text).expect("a JSON event");
            if v["type"] == "call" && v["callId"] == call_id {
                states.push(v["state"].as_str().unwrap_or("").to_string());
            }
        }
        states
    }
}

#[test]
fn the_binary_drives_asterisk_over_ami() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = dir.path().join("asterisk-conf");
    let ami = Ami::start();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_centralita"));
    cmd.arg("serve")
        .env("CENTRALITA_MODE", "asterisk")
        .env(
            "CENTRALITA_ASTERISK_AMI_ADDRESS",
            format!("127.0.0.1:{}", ami.port),
        )
        .env("CENTRALITA_ASTERISK_AMI_USERNAME", AMI_USER)
        .env("CENTRALITA_ASTERISK_AMI_SECRET", AMI_SECRET)
        .env("CENTRALITA_ASTERISK_CONFIG_DIR", &conf)
        .env("CENTRALITA_HTTP_LISTEN", "127.0.0.1:0")
        .env("CENTRALITA_DATA_DIR", dir.path())
        .env("CENTRALITA_CONSOLE_DIR", dir.path().join("no-console"))
        .env("CENTRALITA_AUTH_INSECURE_FAST_PASSWORD_HASHING", "true")
        .env("CENTRALITA_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .test_database(dir.path())
        .env(
            "RUST_LOG",
            std::env::var("ASTERISK_TEST_LOG").unwrap_or("warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = Reaped::spawn("centralita", &mut cmd);
    let lines = support::stdout_lines(&mut child.child);
    let http = support::wait_for_http(&lines).0;
    let body = json!({"login": "admin", "password": ADMIN_PASSWORD}).to_string();
    let (status, head, text) =
        support::http_request(&http, "POST", "/api/auth/login", Some(&body), None);
    assert_eq!(status, 200, "{text}");
    let cookie = support::session_cookie(&head);
    let call = |method: &str, path: &str, body: Option<Value>| {
        let b = body.map(|b| b.to_string());
        let (status, _, text) =
            support::http_request(&http, method, path, b.as_deref(), Some(&cookie));
        (
            status,
            serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
        )
    };

    wait_until("the binary logs in to the manager with the MD5 key", || {
        ami.seen.lock().expect("lock").logged_in
    });
    let (status, v) = call("GET", "/api/telephony/status", None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"]["engine"], "asterisk", "{v}");
    wait_until("the status says connected", || {
        call("GET", "/api/telephony/status", None).1["status"]["connected"] == true
    });

    // An agent: rendered with the stored HA1, never the password.
    let reloads_before = ami.reloads();
    let (status, v) = call(
        "POST",
        "/api/agents",
        Some(
            json!({"name": "Ana Asterisk", "login": "ana.ast", "password": "console-pass-123", "role": "agent"}),
        ),
    );
    assert_eq!(status, 201, "{v}");
    let sip_user = v["sipCredentials"]["username"]
        .as_str()
        .expect("username")
        .to_string();
    let sip_password = v["sipCredentials"]["password"]
        .as_str()
        .expect("password")
        .to_string();
    let pjsip = conf.join("centralita_pjsip.conf");
    wait_until("the agent is rendered", || {
        std::fs::read_to_string(&pjsip).is_ok_and(|t| t.contains(&format!("[{sip_user}]")))
    });
    let text = std::fs::read_to_string(&pjsip).expect("pjsip file");
    assert!(text.contains("md5_cred"), "{text}");
    assert!(text.contains("webrtc = yes"), "{text}");
    assert!(
        !text.contains(&sip_password),
        "no plaintext password: {text}"
    );
    wait_until("PJSIP reloaded after the agent", || {
        ami.reloads() > reloads_before
    });

    // A trunk: its wizard section, and another reload.
    let reloads_before = ami.reloads();
    let (status, v) = call(
        "POST",
        "/api/telephony/trunks",
        Some(
            json!({"name": "Carrier Main", "kind": "nat_provider", "host": "sip.carrier.test",
                    "port": 5060, "transport": "udp", "outboundAuthUsername": "acct1",
                    "outboundAuthPassword": "trunk-pass-1", "sendsRegistration": false}),
        ),
    );
    assert_eq!(status, 201, "{v}");
    let wizard = conf.join("centralita_pjsip_wizard.conf");
    wait_until("the trunk is rendered", || {
        std::fs::read_to_string(&wizard).is_ok_and(|t| t.contains("[Carrier_Main]"))
    });
    let text = std::fs::read_to_string(&wizard).expect("wizard file");
    assert!(text.contains("sip.carrier.test"), "{text}");
    wait_until("PJSIP reloaded after the trunk", || {
        ami.reloads() > reloads_before
    });

    // Trunk actions go to Asterisk. Carrier Main does not register: no
    // force register (409, as with the builtin engine); its connection
    // test is a PJSIPQualify of its endpoint, answered by the contact's
    // reachability Asterisk reports.
    let main_id = v["trunk"]["id"].as_i64().expect("trunk id");
    let (status, r) = call(
        "POST",
        &format!("/api/telephony/trunks/{main_id}/force_register"),
        None,
    );
    assert_eq!(status, 409, "{r}");
    assert_eq!(r["error"]["code"], "trunk_not_registering", "{r}");
    let (status, r) = call(
        "POST",
        &format!("/api/telephony/trunks/{main_id}/test_connection"),
        None,
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["result"]["options"]["status"], 200, "{r}");
    assert_eq!(r["result"]["options"]["rttMs"], 23, "{r}");
    assert!(
        r["result"]["options"]["reason"]
            .as_str()
            .is_some_and(|t| t.starts_with("Reachable")),
        "{r}"
    );
    assert_eq!(r["result"]["error"], Value::Null, "{r}");
    assert!(ami
        .actions_named("PJSIPQualify")
        .iter()
        .any(|a| field(a, "Endpoint") == Some("Carrier_Main")));
    // Carrier Reg registers: force register is PJSIPRegister of the
    // wizard's registration object, and the answer waits for Asterisk's
    // outcome (Unregistered, then Registered).
    let (status, r) = call(
        "POST",
        "/api/telephony/trunks",
        Some(
            json!({"name": "Carrier Reg", "kind": "nat_provider", "host": "sip.reg.test",
                    "port": 5060, "transport": "udp", "outboundAuthUsername": "acct2",
                    "outboundAuthPassword": "trunk-pass-2", "sendsRegistration": true}),
        ),
    );
    assert_eq!(status, 201, "{r}");
    let reg_id = r["trunk"]["id"].as_i64().expect("trunk id");
    wait_until("the registering trunk is rendered", || {
        std::fs::read_to_string(&wizard).is_ok_and(|t| t.contains("[Carrier_Reg]"))
    });
    let (status, r) = call(
        "POST",
        &format!("/api/telephony/trunks/{reg_id}/force_register"),
        None,
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["registration"]["state"], "registered", "{r}");
    let sent = ami.actions_named("PJSIPRegister");
    assert_eq!(sent.len(), 1, "one PJSIPRegister");
    assert_eq!(field(&sent[0], "Registration"), Some("Carrier_Reg-reg-0"));
    // A trunk Asterisk does not know (its reload failed, say): its words
    // come back, for the test and for the registration.
    let (status, r) = call(
        "POST",
        "/api/telephony/trunks",
        Some(
            json!({"name": "Carrier Gone", "kind": "nat_provider", "host": "sip.gone.test",
                    "port": 5070, "transport": "udp", "outboundAuthUsername": "acct3",
                    "outboundAuthPassword": "trunk-pass-3", "sendsRegistration": true}),
        ),
    );
    assert_eq!(status, 201, "{r}");
    let gone_id = r["trunk"]["id"].as_i64().expect("trunk id");
    wait_until("the unknown trunk is rendered", || {
        std::fs::read_to_string(&wizard).is_ok_and(|t| t.contains("[Carrier_Gone]"))
    });
    let (status, r) = call(
        "POST",
        &format!("/api/telephony/trunks/{gone_id}/test_connection"),
        None,
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["result"]["options"], Value::Null, "{r}");
    assert_eq!(
        r["result"]["error"], "Asterisk: Unable to retrieve endpoint",
        "{r}"
    );
    assert_eq!(r["result"]["registration"]["state"], "failed", "{r}");
    assert!(
        r["result"]["registration"]["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("Unable to retrieve registration entry")),
        "{r}"
    );

    // The generated files as an admin sees them (secrets masked), and a
    // regenerate on demand that reloads and says how it went.
    let (status, v) = call("GET", "/api/telephony/pbx/config", None);
    assert_eq!(status, 200, "{v}");
    let shown = v["config"]["files"].to_string();
    assert!(shown.contains(&format!("[{sip_user}]")), "{v}");
    assert!(shown.contains("[Carrier_Main]"), "{v}");
    assert!(
        !shown.contains("trunk-pass-1"),
        "trunk password masked: {v}"
    );
    let real = std::fs::read_to_string(&pjsip).expect("pjsip file");
    let ha1 = real
        .lines()
        .find_map(|l| l.trim().strip_prefix("md5_cred = "))
        .expect("the HA1 in the written file")
        .to_string();
    assert!(!shown.contains(&ha1), "HA1 masked: {v}");
    assert_eq!(v["config"]["lastReload"]["ok"], true, "{v}");
    let reloads_before = ami.reloads();
    let (status, v) = call("POST", "/api/telephony/pbx/config/regenerate", None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["config"]["lastReload"]["ok"], true, "{v}");
    assert_eq!(
        v["config"]["lastReload"]["message"], "Module Reloaded.",
        "{v}"
    );
    assert!(ami.reloads() > reloads_before, "a reload on demand");

    // Originate (seeds/001): the agent's channel first, the customer through
    // the trunk the dial plan picks, the CDR's id known at once.
    let extension = v_agent_extension(&call);
    let (status, v) = call(
        "POST",
        "/api/telephony/call/originate",
        Some(json!({"agentExtension": extension, "customerPhone": "912345678", "leadId": 7})),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["trunk"], "Carrier Main", "{v}");
    let call_id = v["data"]["callId"].as_str().expect("call id").to_string();
    let originate = ami
        .seen
        .lock()
        .expect("lock")
        .actions
        .iter()
        .find(|a| field(a, "Action") == Some("Originate"))
        .cloned()
        .expect("an Originate action");
    let channel = format!("PJSIP/{sip_user}");
    assert_eq!(field(&originate, "Channel"), Some(channel.as_str()));
    assert_eq!(field(&originate, "Exten"), Some("912345678"));
    assert_eq!(field(&originate, "Context"), Some("centralita-originate"));
    assert_eq!(field(&originate, "ChannelId"), Some(call_id.as_str()));
    let vars: Vec<&str> = originate
        .iter()
        .filter(|(k, _)| k == "Variable")
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(vars.contains(&"CENTRALITA_TRUNK=Carrier_Main"), "{vars:?}");
    assert!(vars.contains(&"CENTRALITA_LEAD=7"), "{vars:?}");
    // The originated call is live while her phone rings (its channel has
    // no extension yet), with the customer as the callee; a hang-up from
    // the console hangs its channels up over AMI and the CDR says
    // `forced_hangup`, as with the builtin engine.
    let agent_chan = format!("PJSIP/{sip_user}-00000001");
    let chan_event = |event: &str, state: &str, extra: &str| {
        format!(
            "Event: {event}\r\nPrivilege: call,all\r\nChannel: {agent_chan}\r\n\
             ChannelState: 0\r\nChannelStateDesc: {state}\r\nCallerIDNum: 912345678\r\n\
             Context: centralita-originate\r\nExten: s\r\nPriority: 1\r\n\
             Uniqueid: {call_id}\r\nLinkedid: {call_id}\r\n{extra}\r\n"
        )
    };
    ami.outbox.lock().expect("lock").extend([
        chan_event("Newchannel", "Down", ""),
        chan_event("Newstate", "Ringing", ""),
    ]);
    let (_, a) = call("GET", "/api/agents?role=agent", None);
    let agent_id = a["agents"][0]["id"].clone();
    let live = |call: &Api<'_>| {
        let (_, v) = call("GET", "/api/telephony/calls/active", None);
        v["calls"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["callId"] == call_id.as_str()).cloned())
    };
    wait_until(
        "the originated call is active while the agent rings",
        || live(&call).is_some_and(|c| c["state"] == "ringing"),
    );
    let row = live(&call).expect("the originated call");
    assert_eq!(row["calleeNumber"], "912345678", "{row}");
    assert_eq!(row["direction"], "outbound", "{row}");
    assert_eq!(row["agentId"], agent_id, "{row}");
    let (status, v) = call(
        "POST",
        "/api/telephony/call/hangup",
        Some(json!({"callId": call_id})),
    );
    assert_eq!(status, 200, "{v}");
    wait_until("the agent's channel is hung up over AMI", || {
        ami.seen.lock().expect("lock").actions.iter().any(|a| {
            field(a, "Action") == Some("Hangup") && field(a, "Channel") == Some(agent_chan.as_str())
        })
    });
    ami.outbox.lock().expect("lock").extend([
        chan_event("HangupRequest", "Ringing", ""),
        chan_event(
            "Hangup",
            "Ringing",
            "Cause: 16\r\nCause-txt: Normal Clearing\r\n",
        ),
    ]);
    wait_until("the hung-up call leaves the active list", || {
        live(&call).is_none()
    });
    let (status, v) = call("GET", &format!("/api/telephony/calls/{call_id}"), None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["call"]["hangupCause"], "forced_hangup", "{v}");
    assert_eq!(v["call"]["state"], "ended", "{v}");
    // A call that is over cannot be hung up again.
    let (status, v) = call(
        "POST",
        "/api/telephony/call/hangup",
        Some(json!({"callId": call_id})),
    );
    assert_eq!(status, 404, "{v}");

    // Her phone is not registered: Asterisk cannot even make the channel
    // and says so only in `OriginateResponse`; the call is recorded anyway.
    let (status, v) = call(
        "POST",
        "/api/telephony/call/originate",
        Some(json!({"agentExtension": extension, "customerPhone": "912345678"})),
    );
    assert_eq!(status, 200, "{v}");
    let failed_id = v["data"]["callId"].as_str().expect("call id").to_string();
    ami.outbox.lock().expect("lock").push(format!(
        "Event: OriginateResponse\r\nPrivilege: call,all\r\nResponse: Failure\r\n\
         Channel: PJSIP/{sip_user}\r\nContext: centralita-originate\r\nExten: 912345678\r\n\
         Reason: 0\r\nUniqueid: <null>\r\nCallerIDNum: 912345678\r\nCallerIDName: 912345678\r\n\r\n"
    ));
    wait_until("the refused originate has its CDR", || {
        call("GET", &format!("/api/telephony/calls/{failed_id}"), None).0 == 200
    });
    let (_, v) = call("GET", &format!("/api/telephony/calls/{failed_id}"), None);
    assert_eq!(v["call"]["state"], "ended", "{v}");
    assert_eq!(v["call"]["hangupCause"], "not_registered", "{v}");
    assert_eq!(v["call"]["calleeNumber"], "912345678", "{v}");

    // The toll-fraud gate applies: abroad needs a permission she has not.
    let (status, v) = call(
        "POST",
        "/api/telephony/call/originate",
        Some(json!({"agentExtension": extension, "customerPhone": "0033123456789"})),
    );
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"]["code"], "dial_not_permitted", "{v}");
    let (status, v) = call(
        "POST",
        "/api/telephony/call/originate",
        Some(json!({"agentExtension": "9999", "customerPhone": "912345678"})),
    );
    assert_eq!(status, 404, "{v}");
    // An agent originates only from her own extension.
    let body = json!({"login": "ana.ast", "password": "console-pass-123"}).to_string();
    let (status, head, text) =
        support::http_request(&http, "POST", "/api/auth/login", Some(&body), None);
    assert_eq!(status, 200, "{text}");
    let ana = support::session_cookie(&head);
    let other = json!({"agentExtension": "1999", "customerPhone": "912345678"}).to_string();
    let (status, _, text) = support::http_request(
        &http,
        "POST",
        "/api/telephony/call/originate",
        Some(&other),
        Some(&ana),
    );
    assert_eq!(status, 403, "{text}");

    // Her browser registers to Asterisk: the agents page shows it.
    let (_, a) = call("GET", "/api/agents?role=agent", None);
    assert_eq!(a["agents"][0]["sip"]["registered"], false, "{a}");
    ami.outbox.lock().expect("lock").push(format!(
        "Event: ContactStatus\r\nPrivilege: system,all\r\nURI: sip:{sip_user}@127.0.0.1:40000;transport=ws\r\n\
         ContactStatus: Created\r\nAOR: {sip_user}\r\nEndpointName: {sip_user}\r\n\
         RoundtripUsec: 0\r\nUserAgent: JsSIP 3.10.9\r\n\r\n"
    ));
    wait_until("the agent shows registered", || {
        call("GET", "/api/agents?role=agent", None).1["agents"][0]["sip"]["registered"] == true
    });
    ami.outbox.lock().expect("lock").push(format!(
        "Event: ContactStatus\r\nPrivilege: system,all\r\nURI: sip:{sip_user}@127.0.0.1:40000;transport=ws\r\n\
         ContactStatus: Removed\r\nAOR: {sip_user}\r\nEndpointName: {sip_user}\r\n\r\n"
    ));
    wait_until("the agent shows unregistered", || {
        call("GET", "/api/agents?role=agent", None).1["agents"][0]["sip"]["registered"] == false
    });

    // Phones register to Asterisk: no SIP over WebSocket here.
    let mut ws = TcpStream::connect(&http).expect("connect");
    ws.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Protocol: sip\r\n\r\n",
    )
    .expect("write");
    let mut head = [0u8; 64];
    let n = ws.read(&mut head).expect("read");
    let status_line = String::from_utf8_lossy(&head[..n]).to_string();
    assert!(status_line.starts_with("HTTP/1.1 503"), "{status_line}");

    // The captured call, replayed in three steps: the console sees it live
    // (active calls and the events socket, as in builtin mode), then one
    // CDR row.
    let mut events = EventsSocket::connect(&http, &cookie);
    let captured = captured_events();
    let linkedid = "1795266092.11";
    let ringing_at = 1 + captured
        .iter()
        .position(|m| m.starts_with("Event: DialState\r\n"))
        .expect("the callee rings in the capture");
    let answered_at = 1 + captured
        .iter()
        .rposition(|m| m.starts_with("Event: BridgeEnter\r\n"))
        .expect("both sides are bridged in the capture");
    let active = |call: &Api<'_>| {
        let (status, v) = call("GET", "/api/telephony/calls/active", None);
        assert_eq!(status, 200, "{v}");
        v["calls"]
            .as_array()
            .unwrap_or_else(|| panic!("a list of calls: {v}"))
            .iter()
            .filter(|c| c["callId"] == linkedid)
            .cloned()
            .collect::<Vec<Value>>()
    };
    ami.outbox
        .lock()
        .expect("lock")
        .extend(captured[..ringing_at].iter().cloned());
    wait_until("the ringing call is listed as active", || {
        active(&call)
            .first()
            .is_some_and(|c| c["state"] == "ringing")
    });
    let live = active(&call).remove(0);
    assert_eq!(live["callerNumber"], "2000", "{live}");
    assert_eq!(live["calleeNumber"], "2001", "{live}");
    ami.outbox
        .lock()
        .expect("lock")
        .extend(captured[ringing_at..answered_at].iter().cloned());
    wait_until("the answered call is listed as active", || {
        active(&call)
            .first()
            .is_some_and(|c| c["state"] == "answered")
    });
    ami.outbox
        .lock()
        .expect("lock")
        .extend(captured[answered_at..].iter().cloned());
    wait_until("the call leaves the active list at its hang-up", || {
        active(&call).is_empty()
    });
    let (_, v) = call("GET", "/api/telephony/calls/history?limit=50", None);
    let rows: Vec<&Value> = v["calls"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|c| c["callId"] == linkedid)
        .collect();
    assert_eq!(rows.len(), 1, "one CDR row for the call: {v}");
    let row = rows[0];
    assert_eq!(row["state"], "ended", "{row}");
    assert_eq!(row["callerNumber"], "2000", "{row}");
    assert_eq!(row["calleeNumber"], "2001", "{row}");
    assert_eq!(row["disposition"], "ANSWERED", "{row}");
    assert!(row["billsec"].as_i64().is_some_and(|b| b >= 0), "{row}");
    // The events socket carried the same phases as with the builtin
    // engine, in order.
    let phases = events.call_states(linkedid, 3);
    assert_eq!(phases, ["ringing", "answered", "ended"], "call events");
    drop(child);
}
