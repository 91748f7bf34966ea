//! Calls out through a trunk to a real carrier: Kamailio (Debian package
//! `kamailio`) on 127.0.0.1 demands digest authentication for INVITEs
//! from the trunk, then forwards them (record-routed) to a sipp UAS, the
//! customer; in-dialog requests are accepted only along the recorded route. The calling agent is a sipp UAC registered to our server.
//! A second listening port of the same Kamailio plays a broken carrier
//! that answers every INVITE with 503, for failover.

mod support;

use domain::dialplan::{DialPermission, OutboundLimits, OutboundRoute, Pattern};
use sip::{DialRights, OutboundPolicy, OutboundTrunk, Transport};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use support::{finish, free_port, TestServer};

const SECRET: &str = "carrier-secret-7";
const REALM: &str = "carrier.test";
const NUMBER: &str = "612345678";

/// Kamailio in the foreground, started and stopped by PID.
struct Kamailio {
    child: Option<std::process::Child>,
    log: PathBuf,
}

fn config(port: u16, broken_port: u16, customer_port: u16) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=1
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
tcp_children=1
listen=udp:127.0.0.1:{broken_port}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "auth.so"

request_route {{
    if (has_totag()) {{
        # In-dialog: only along the recorded route, as a strict carrier.
        if (loose_route()) {{
            xlog("L_NOTICE", "IN-DIALOG $rm from $si:$sp to $ru\n");
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{
                t_relay();
            }}
            exit;
        }}
        xlog("L_NOTICE", "NO-ROUTE $rm from $si:$sp\n");
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    if (is_method("ACK")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    if (is_method("INVITE")) {{
        xlog("L_NOTICE", "INVITE-SEEN port=$Rp proto=$pr ruri=$ru from=$fu pai=$hdr(P-Asserted-Identity) auth=$hdr(Proxy-Authorization)\n");
        if ($Rp == {broken_port}) {{
            sl_send_reply("503", "Service Unavailable");
            exit;
        }}
        if (!pv_auth_check("{REALM}", "{SECRET}", "0", "0")) {{
            auth_challenge("{REALM}", "1");
            exit;
        }}
        consume_credentials();
        record_route();
        $ru = "sip:" + $rU + "@127.0.0.1:{customer_port}";
        t_relay();
        exit;
    }}
    sl_send_reply("403", "Forbidden");
}}
"#
    )
}

impl Kamailio {
    async fn start(dir: &Path, port: u16, broken_port: u16, customer_port: u16) -> Kamailio {
        let cfg = dir.join("kamailio.cfg");
        std::fs::write(&cfg, config(port, broken_port, customer_port)).expect("write kamailio.cfg");
        let log = dir.join("kamailio.log");
        let file = std::fs::File::create(&log).expect("create the log");
        let child = support::spawn_grouped(
            std::process::Command::new("kamailio")
                .arg("-f")
                .arg(&cfg)
                .args(["-DD", "-E", "-m", "32", "-M", "8"])
                .stdout(Stdio::null())
                .stderr(file),
        )
        .expect("start kamailio (Debian package kamailio)");
        let k = Kamailio {
            child: Some(child),
            log,
        };
        // Ready when it logs that it listens (or give it a moment).
        for _ in 0..50 {
            if k.log_text().contains("INFO") || k.log_text().contains("Listening on") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        k
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn invites_seen(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains("INVITE-SEEN"))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            support::stop_grouped(&mut child);
        }
    }
}

/// The customer behind the carrier: answers (echoing the carrier's
/// Record-Route, as a UAS must), then waits for BYE or, with `hangs_up`,
/// sends its own BYE along the route set.
fn customer_scenario(hangs_up: bool) -> String {
    let response = |first: &str, body: bool| {
        format!(
            r#"  <send{retrans}>
    <![CDATA[
      SIP/2.0 {first}
      [last_Via:]
      [last_Record-Route:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
{content}
    ]]>
  </send>
"#,
            retrans = if body { r#" retrans="500""# } else { "" },
            content = if body {
                "      Content-Type: application/sdp\n      Content-Length: [len]\n\n      v=0\n      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]\n      s=-\n      c=IN IP[media_ip_type] [media_ip]\n      t=0 0\n      m=audio [media_port] RTP/AVP 0\n      a=rtpmap:0 PCMU/8000\n"
            } else {
                "      Content-Length: 0\n"
            }
        )
    };
    let end = if hangs_up {
        r#"  <pause milliseconds="300"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      [routes]
      From:[$local_to];tag=[pid]SIPpTag01[call_number]
      To:[$remote_from]
      Call-ID: [call_id]
      CSeq: 1 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
"#
        .to_string()
    } else {
        r#"  <recv request="BYE"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="500"/>
"#
        .to_string()
    };
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="customer behind the carrier">
  <recv request="INVITE" crlf="true" rrs="true">
{keep}  </recv>
{ringing}{ok}  <recv request="ACK" crlf="true"/>
{end}</scenario>
"#,
        // sipp refuses a scenario that sets a variable it never reads.
        keep = if hangs_up {
            r#"    <action>
      <ereg regexp=".*" search_in="hdr" header="From:" assign_to="remote_from"/>
      <ereg regexp=".*" search_in="hdr" header="To:" assign_to="local_to"/>
    </action>
"#
        } else {
            ""
        },
        ringing = response("180 Ringing", false),
        ok = response("200 OK", true),
    )
}

/// The customer's sipp, talking to the carrier (not to us).
fn spawn_customer(dir: &Path, kam_port: u16, port: u16, hangs_up: bool) -> tokio::process::Child {
    let scenario = dir.join(format!("customer-{hangs_up}.xml"));
    std::fs::write(&scenario, customer_scenario(hangs_up)).expect("write the scenario");
    tokio::process::Command::new("sipp")
        .arg(format!("127.0.0.1:{kam_port}"))
        .arg("-sf")
        .arg(&scenario)
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args([
            "-m",
            "1",
            "-timeout",
            "45s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
            "-trace_msg",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start sipp (Debian package sip-tester)")
}

fn trunk(id: i64, port: u16, priority: i32) -> OutboundTrunk {
    OutboundTrunk {
        id,
        name: format!("carrier{id}"),
        host: "127.0.0.1".into(),
        port,
        transport: Transport::Udp,
        auth_username: "trunk1".into(),
        secret: SECRET.into(),
        realm: Some(REALM.into()),
        from_user: Some("34910000000".into()),
        from_domain: Some(REALM.into()),
        send_pai: true,
        max_channels: 4,
        priority,
        active: true,
        registers: false,
        codecs: Vec::new(),
    }
}

fn policy() -> OutboundPolicy {
    OutboundPolicy {
        routes: vec![OutboundRoute {
            name: "national".into(),
            patterns: vec![Pattern::parse("_[6-9]XXXXXXXX").expect("valid pattern")],
            strip: 0,
            prepend: String::new(),
            trunks: vec![],
        }],
        plan: Default::default(),
        default_rights: DialRights {
            permission: DialPermission::National,
            limits: OutboundLimits::default(),
        },
    }
}

/// The agent calls NUMBER out through the trunks and runs `uac`; the
/// customer hangs up or waits for the agent's BYE.
async fn call_out(
    trunks: Vec<OutboundTrunk>,
    uac: &str,
    customer_hangs_up: bool,
) -> (TestServer, Kamailio) {
    let srv = TestServer::start(|_| {}).await;
    let agent = srv.agent("Olivia Outbound").await;
    let agent_port = free_port();
    srv.register_with_sipp(&agent, agent_port).await;
    let customer_port = free_port();
    let (kam_port, broken_port) = (free_port(), free_port());
    let trunks = trunks
        .into_iter()
        .map(|mut t| {
            t.port = if t.port == 0 { kam_port } else { broken_port };
            t
        })
        .collect();
    srv.sip
        .set_outbound_trunks(trunks, policy())
        .await
        .expect("valid trunks");
    let kam = Kamailio::start(srv.dir.path(), kam_port, broken_port, customer_port).await;
    let customer = spawn_customer(srv.dir.path(), kam_port, customer_port, customer_hangs_up);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let csv = srv.csv("agent.csv", &[(&agent.username, &agent.password)]);
    let (ok, out) = srv.sipp(uac, &csv, agent_port, &["-s", NUMBER]).await;
    assert!(ok, "agent scenario {uac} failed: {out}\n{}", kam.log_text());
    let (ok, out) = finish(customer).await;
    assert!(
        ok,
        "customer scenario failed: {out}{}\n{}",
        srv.sipp_errors(),
        kam.log_text()
    );
    (srv, kam)
}

async fn only_cdr(srv: &TestServer) -> domain::Call {
    let rows = srv.finished_calls(1).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let c = rows.into_iter().next().expect("one row");
    assert_eq!(c.direction, "outbound");
    assert_eq!(c.callee_number, NUMBER);
    assert_eq!(c.disposition.as_deref(), Some("ANSWERED"));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_out_through_kamailio_with_digest_and_the_agent_hangs_up() {
    let (srv, kam) = call_out(vec![trunk(1, 0, 0)], "uac_call.xml", false).await;
    let seen = kam.invites_seen();
    // Challenged once, then the INVITE with our credentials, caller ID and PAI.
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert!(seen[0].contains("auth=<null>"), "{seen:#?}");
    assert!(seen.iter().all(|l| l.contains("proto=udp")), "{seen:#?}");
    assert!(seen[1].contains("username=\"trunk1\""), "{seen:#?}");
    assert!(
        seen[1].contains(&format!("ruri=sip:{NUMBER}@127.0.0.1")),
        "{seen:#?}"
    );
    assert!(
        seen[1].contains("from=sip:34910000000@carrier.test"),
        "{seen:#?}"
    );
    assert!(
        seen[1].contains("pai=<sip:34910000000@carrier.test>"),
        "{seen:#?}"
    );
    // Our ACK and BYE toward the customer follow the carrier's Record-Route.
    let log = kam.log_text();
    assert!(
        log.contains("IN-DIALOG ACK") && log.contains("IN-DIALOG BYE"),
        "{log}"
    );
    assert!(!log.contains("NO-ROUTE"), "{log}");
    let c = only_cdr(&srv).await;
    assert_eq!(c.hangup_cause.as_deref(), Some("caller_bye"));
    assert_eq!(srv.sip.trunk_channels_in_use(1), 0, "channel released");
    srv.sip.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_customer_hangs_up_through_the_carrier() {
    let (srv, kam) = call_out(vec![trunk(1, 0, 0)], "uac_call_remote_bye.xml", true).await;
    let log = kam.log_text();
    assert!(
        log.contains("IN-DIALOG BYE") && !log.contains("NO-ROUTE"),
        "the customer's BYE went through the carrier: {log}"
    );
    let c = only_cdr(&srv).await;
    assert_eq!(c.hangup_cause.as_deref(), Some("callee_bye"));
    assert_eq!(srv.sip.trunk_channels_in_use(1), 0);
    srv.sip.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_answering_503_fails_over_to_the_next_trunk() {
    // Trunk 2 (port 1 = the broken carrier) comes first by priority.
    let (srv, kam) = call_out(vec![trunk(1, 0, 5), trunk(2, 1, 0)], "uac_call.xml", false).await;
    let seen = kam.invites_seen();
    assert_eq!(seen.len(), 3, "503, then challenge and answer: {seen:#?}");
    let port = |l: &str| {
        l.split("port=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .map(str::to_string)
    };
    assert_ne!(port(&seen[0]), port(&seen[1]), "{seen:#?}");
    assert_eq!(port(&seen[1]), port(&seen[2]), "{seen:#?}");
    let c = only_cdr(&srv).await;
    assert_eq!(c.hangup_cause.as_deref(), Some("caller_bye"));
    assert_eq!(
        (
            srv.sip.trunk_channels_in_use(1),
            srv.sip.trunk_channels_in_use(2)
        ),
        (0, 0)
    );
    srv.sip.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_out_over_tcp() {
    let mut t = trunk(1, 0, 0);
    t.transport = Transport::Tcp;
    let (srv, kam) = call_out(vec![t], "uac_call.xml", false).await;
    let seen = kam.invites_seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert!(
        seen.iter().all(|l| l.contains("proto=tcp")) && seen[1].contains(";transport=tcp"),
        "{seen:#?}"
    );
    let log = kam.log_text();
    assert!(
        log.contains("IN-DIALOG BYE") && !log.contains("NO-ROUTE"),
        "{log}"
    );
    let c = only_cdr(&srv).await;
    assert_eq!(c.hangup_cause.as_deref(), Some("caller_bye"));
    assert_eq!(srv.sip.trunk_channels_in_use(1), 0);
    srv.sip.shutdown();
}
