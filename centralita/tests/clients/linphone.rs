//! linphonec (Debian package `linphone-cli`, liblinphone 5.1) driven over
//! its standard input, as a user types at its prompt: `register`, `call`,
//! `terminate`. Its answers are text on its standard output.
//!
//! Its configuration file only says where to keep its state and which RTP
//! ports to use (so a capture can find them); SIP listens on ports the
//! kernel picks. There is no sound card here, so it uses its own
//! `soundcard use files` and `play FILE` commands: the WAV file is the
//! microphone.

use std::io::Write;
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use super::{file_tail, Phone, PhoneSetup, Transcript};
use crate::support::Reaped;

pub struct Linphonec {
    name: String,
    stdin: Mutex<ChildStdin>,
    out: Transcript,
    log: PathBuf,
    _proc: Reaped,
}

impl Linphonec {
    /// Starts linphonec with its own configuration and HOME, then types
    /// `register <identity> <proxy> <password>` as its help says.
    pub fn start(s: &PhoneSetup) -> Linphonec {
        let dir = s.root.join(s.name);
        std::fs::create_dir_all(&dir).expect("linphonec dir");
        // [storage] uri: liblinphone 5.1 does not start its core (no SIP
        // socket at all, every call fails at once) when it cannot open its
        // database, and its default place (~/.local/share/linphone) does
        // not exist in a fresh HOME.
        let rc = format!(
            "[sip]\nsip_port=-1\nsip_tcp_port=-1\nsip_tls_port=0\n\
             [rtp]\naudio_rtp_port={}-{}\n\
             [storage]\nuri={}\n",
            s.rtp.start(),
            s.rtp.end(),
            dir.join("linphone.db").display()
        );
        let rc_path = dir.join("linphonerc");
        std::fs::write(&rc_path, rc).expect("linphonerc");
        let log = dir.join("linphone.log");
        let mut cmd = Command::new("linphonec");
        cmd.arg("-c")
            .arg(&rc_path)
            .args(["-d", "6", "-l"])
            .arg(&log)
            .env("HOME", &dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if s.auto_answer {
            cmd.arg("-a");
        }
        let mut proc = Reaped::spawn("linphonec (Debian package linphone-cli)", &mut cmd);
        let out = Transcript::default();
        out.follow(proc.child.stdout.take().expect("stdout is piped"));
        out.follow(proc.child.stderr.take().expect("stderr is piped"));
        let stdin = proc.child.stdin.take().expect("stdin is piped");
        let me = Linphonec {
            name: s.name.to_string(),
            stdin: Mutex::new(stdin),
            out,
            log,
            _proc: proc,
        };
        me.expect("linphonec>", Duration::from_secs(20));
        me.type_line("soundcard use files");
        me.expect(
            "Using wav files instead of soundcard",
            Duration::from_secs(10),
        );
        me.type_line(&format!("play {}", s.tone.display()));
        let server = format!("127.0.0.1:{}", s.sip_port);
        me.type_line(&format!(
            "register sip:{}@{server} sip:{server};transport={} {}",
            s.agent.username, s.transport, s.agent.password
        ));
        me
    }

    pub fn type_line(&self, line: &str) {
        let mut stdin = self.stdin.lock().unwrap_or_else(|e| e.into_inner());
        writeln!(stdin, "{line}").expect("write to linphonec");
        stdin.flush().expect("flush linphonec stdin");
    }

    /// Waits for `needle` in the output; panics with the output and the
    /// log otherwise.
    fn expect(&self, needle: &str, timeout: Duration) {
        if !self.out.wait_for(needle, timeout) {
            panic!(
                "linphonec {} did not print {needle:?} within {timeout:?}\n{}",
                self.name,
                self.diag()
            );
        }
    }
}

impl Phone for Linphonec {
    fn name(&self) -> &str {
        &self.name
    }

    fn dial(&self, uri: &str) -> Result<(), String> {
        self.type_line(&format!("call {uri}"));
        Ok(())
    }

    fn wait_answered(&self, timeout: Duration) -> bool {
        // "Media streams established with <peer> for call <n> (audio)."
        self.out.wait_for("Media streams established", timeout)
    }

    fn hang_up(&self) -> Result<(), String> {
        self.type_line("terminate");
        Ok(())
    }

    fn wait_ended(&self, timeout: Duration) -> bool {
        // "Call <n> with <peer> ended (<reason>)."
        self.out.wait_for(" ended (", timeout)
    }

    fn diag(&self) -> String {
        format!(
            "--- linphonec {} output (tail) ---\n{}\n--- its log (tail; SIP messages in {}) ---\n{}\n",
            self.name,
            self.out.tail(3000),
            self.log.display(),
            file_tail(&self.log, 6000)
        )
    }
}
