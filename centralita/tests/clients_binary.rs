//! SIP clients we do not control, against the real `centralita serve` with
//! its default configuration: baresip 1.0 and linphonec (liblinphone 5.1),
//! both Debian packages, register (the caller over UDP, the callee over
//! TCP), call another agent, talk and hang up. Each call must leave one
//! ANSWERED CDR row, and RTP must flow both ways through the server's media
//! ports (`media.anchor = always` by default), counted on the loopback
//! interface: each client sends to and receives from the server's port
//! range, and nothing goes straight from one client to the other.
//!
//! Every process a test starts is killed by PID when the test ends, also
//! when it fails (`support::Reaped`), and every wait has a deadline. A
//! failing test keeps its directory (configurations, client logs with the
//! SIP messages, server log) and prints where; KEEP_CLIENT_TEST_FILES=1
//! keeps it always.

mod clients;
mod support;

use std::time::Duration;

use clients::baresip::Baresip;
use clients::capture::Capture;
use clients::linphone::Linphonec;
use clients::{Agent, Phone, PhoneSetup, Server, Workdir};

/// How long a call stays up: long enough for billsec >= 1 and for well
/// over 50 packets each way at one packet per 20 ms.
const TALK: Duration = Duration::from_secs(4);
/// The longest any one step (registering, answering, hanging up) may take.
const STEP: Duration = Duration::from_secs(20);
/// `media.port_range` of the default configuration.
const SERVER_MEDIA: std::ops::RangeInclusive<u16> = 20_000..=29_999;

/// One server with two agents, alice (the caller) and bob.
struct Office {
    srv: Server,
    cookie: String,
    alice: Agent,
    bob: Agent,
    tone: std::path::PathBuf,
    // Last: dropped after the server, so a failure keeps its files.
    work: Workdir,
}

impl Office {
    fn open() -> Office {
        let work = Workdir::new();
        let srv = Server::start(work.path());
        let cookie = srv.login();
        let alice = srv.agent(&cookie, "alice");
        let bob = srv.agent(&cookie, "bob");
        let tone = clients::write_tone(work.path());
        Office {
            srv,
            cookie,
            alice,
            bob,
            tone,
            work,
        }
    }

    /// Starts alice's phone (with `alice`, over UDP) and bob's (with `bob`,
    /// over TCP, answering by itself); alice calls bob, they talk, alice
    /// hangs up.
    fn call(
        &self,
        alice: fn(&PhoneSetup) -> Box<dyn Phone>,
        bob: fn(&PhoneSetup) -> Box<dyn Phone>,
    ) {
        let (a_rtp, b_rtp) = clients::two_port_ranges(10);
        let setup = |name, agent, transport, rtp, auto_answer| PhoneSetup {
            root: self.work.path(),
            name,
            agent,
            sip_port: self.srv.sip_port,
            transport,
            rtp,
            tone: &self.tone,
            auto_answer,
        };
        let a = alice(&setup("alice", &self.alice, "udp", &a_rtp, false));
        let b = bob(&setup("bob", &self.bob, "tcp", &b_rtp, true));
        let diag = || {
            format!(
                "{}{}--- server log (tail) ---\n{}",
                a.diag(),
                b.diag(),
                self.srv.log_tail()
            )
        };

        self.srv
            .wait_registered(
                &self.cookie,
                &[(&self.alice.username, "udp"), (&self.bob.username, "tcp")],
                STEP,
            )
            .unwrap_or_else(|regs| panic!("not both registered: {regs}\n{}", diag()));

        let capture = Capture::start(&a_rtp, &b_rtp);
        let uri = format!("sip:{}@127.0.0.1:{}", self.bob.extension, self.srv.sip_port);
        a.dial(&uri)
            .unwrap_or_else(|e| panic!("dial {uri}: {e}\n{}", diag()));
        for p in [&a, &b] {
            assert!(
                p.wait_answered(STEP),
                "{}: no call up\n{}",
                p.name(),
                diag()
            );
        }
        std::thread::sleep(TALK);
        a.hang_up()
            .unwrap_or_else(|e| panic!("hang up: {e}\n{}", diag()));
        for p in [&a, &b] {
            assert!(
                p.wait_ended(STEP),
                "{}: call not ended\n{}",
                p.name(),
                diag()
            );
        }

        // RTP in flight when the BYE went out has arrived by now.
        std::thread::sleep(Duration::from_millis(300));
        let direct = capture.count(&a_rtp, &b_rtp) + capture.count(&b_rtp, &a_rtp);
        // A port of the server's range that is neither client's.
        let server = |port: u16| {
            SERVER_MEDIA.contains(&port) && !a_rtp.contains(&port) && !b_rtp.contains(&port)
        };
        let [a_out, a_in, b_out, b_in] = [
            capture.count_where(|p| a_rtp.contains(&p.sport) && server(p.dport)),
            capture.count_where(|p| server(p.sport) && a_rtp.contains(&p.dport)),
            capture.count_where(|p| b_rtp.contains(&p.sport) && server(p.dport)),
            capture.count_where(|p| server(p.sport) && b_rtp.contains(&p.dport)),
        ];
        let counts = format!(
            "alice->server {a_out}, server->alice {a_in}, bob->server {b_out}, \
             server->bob {b_in}, straight between them {direct}"
        );
        eprintln!("RTP {counts}; {}", capture.summary());
        assert!(
            a_out > 50 && a_in > 50 && b_out > 50 && b_in > 50 && direct == 0,
            "RTP {counts}; {}\n{}",
            capture.summary(),
            diag()
        );

        let calls = self
            .srv
            .finished_calls(&self.cookie, 1, STEP)
            .unwrap_or_else(|rows| panic!("no finished CDR row: {rows}\n{}", diag()));
        eprintln!("CDR: {calls:?}");
        assert_eq!(calls.len(), 1, "{calls:?}");
        let c = &calls[0];
        assert_eq!(c["disposition"], "ANSWERED", "{c}\n{}", diag());
        assert!(c["billsec"].as_i64().unwrap_or(0) >= 1, "{c}");
        assert_eq!(c["hangupCause"], "caller_bye", "{c}");
        assert_eq!(c["callerNumber"], self.alice.extension.as_str(), "{c}");
        assert_eq!(c["calleeNumber"], self.bob.extension.as_str(), "{c}");
    }
}

fn baresip(s: &PhoneSetup) -> Box<dyn Phone> {
    Box::new(Baresip::start(s))
}

fn linphonec(s: &PhoneSetup) -> Box<dyn Phone> {
    Box::new(Linphonec::start(s))
}

#[test]
fn baresip_registers_calls_and_talks_to_baresip_with_defaults() {
    Office::open().call(baresip, baresip);
}

#[test]
fn linphonec_registers_calls_and_talks_to_linphonec_with_defaults() {
    Office::open().call(linphonec, linphonec);
}

/// Two SIP stacks and two codec lists (baresip offers G.711 only,
/// linphonec prefers Opus) meeting through the B2BUA.
#[test]
fn baresip_calls_and_talks_to_linphonec_with_defaults() {
    Office::open().call(baresip, linphonec);
}
