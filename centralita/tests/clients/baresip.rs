//! baresip 1.0 (Debian package `baresip`, or `baresip-core`) driven
//! through its ctrl_tcp module: commands and events are JSON in netstrings
//! on one TCP connection.
//!
//! Its configuration is what a user writes for a plain setup: one account
//! line with the agent's username and password and the server's address,
//! audio from a WAV file (there is no sound card here) with G.711, and the
//! callee's account answering by itself (`answermode=auto`). SIP listens on
//! ports the kernel picks (no `sip_listen`), so they cannot collide; media
//! uses the RTP port range given, so a capture can find it.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{file_tail, Phone, PhoneSetup, Transcript};
use crate::support::{self, Reaped};

type Events = Arc<Mutex<Vec<serde_json::Value>>>;

pub struct Baresip {
    name: String,
    /// The control connection and the last command token used.
    ctrl: Mutex<(TcpStream, u32)>,
    events: Events,
    out: Transcript,
    log: PathBuf,
    _proc: Reaped,
}

impl Baresip {
    /// Starts baresip with its own configuration directory; it registers
    /// the account at once.
    pub fn start(s: &PhoneSetup) -> Baresip {
        let dir = s.root.join(s.name);
        std::fs::create_dir_all(&dir).expect("baresip dir");
        let ctrl_port = support::free_ports(1, false, true);
        let config = format!(
            "poll_method\tepoll\n\
             # Only the loopback address: no other interface is used or advertised.\n\
             net_interface\t127.0.0.1\n\
             dns_server\t127.0.0.1:53\n\
             audio_source\taufile,{tone}\n\
             ausrc_srate\t8000\n\
             rtp_ports\t{}-{}\n\
             module_path\t/usr/lib/baresip/modules\n\
             module\tg711.so\n\
             module\taufile.so\n\
             module_app\taccount.so\n\
             module_app\tmenu.so\n\
             module_app\tctrl_tcp.so\n\
             ctrl_tcp_listen\t127.0.0.1:{ctrl_port}\n",
            s.rtp.start(),
            s.rtp.end(),
            tone = s.tone.display(),
        );
        std::fs::write(dir.join("config"), config).expect("baresip config");
        // The server's address as the account's domain, as a user would
        // write it from the agent's credentials.
        let account = format!(
            "<sip:{}@127.0.0.1:{};transport={}>;auth_pass={}{}\n",
            s.agent.username,
            s.sip_port,
            s.transport,
            s.agent.password,
            if s.auto_answer {
                ";answermode=auto"
            } else {
                ""
            }
        );
        std::fs::write(dir.join("accounts"), account).expect("baresip accounts");
        let out = Transcript::default();
        // -s: SIP trace in the output, which failure messages show.
        let mut cmd = Command::new("baresip");
        cmd.arg("-f")
            .arg(&dir)
            .arg("-s")
            .env("HOME", &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut proc = Reaped::spawn("baresip (Debian package baresip)", &mut cmd);
        out.follow(proc.child.stdout.take().expect("stdout is piped"));
        out.follow(proc.child.stderr.take().expect("stderr is piped"));
        let ctrl = connect(ctrl_port, &out);
        let events = Events::default();
        let sink = events.clone();
        let reader = ctrl.try_clone().expect("clone ctrl socket");
        std::thread::spawn(move || read_netstrings(reader, sink));
        Baresip {
            name: s.name.to_string(),
            ctrl: Mutex::new((ctrl, 0)),
            events,
            out,
            log: dir.join("baresip.log"),
            _proc: proc,
        }
    }

    /// Sends a command (as the `menu` module knows it) and waits for its
    /// answer; Err(answer or timeout) unless it says ok.
    pub fn command(&self, command: &str, params: &str) -> Result<(), String> {
        let token = {
            let mut ctrl = self.ctrl.lock().unwrap_or_else(|e| e.into_inner());
            ctrl.1 += 1;
            let token = format!("t{}", ctrl.1);
            let body = serde_json::json!({"command": command, "params": params, "token": token})
                .to_string();
            ctrl.0
                .write_all(format!("{}:{},", body.len(), body).as_bytes())
                .map_err(|e| format!("ctrl write: {e}"))?;
            token
        };
        let answer = self
            .wait(Duration::from_secs(10), |v| {
                v["response"] == true && v["token"] == token.as_str()
            })
            .ok_or_else(|| format!("no answer to {command}"))?;
        if answer["ok"] == true {
            Ok(())
        } else {
            Err(answer.to_string())
        }
    }

    /// Waits for an event of type `ty` (e.g. CALL_ESTABLISHED).
    pub fn wait_event(&self, ty: &str, timeout: Duration) -> Option<serde_json::Value> {
        self.wait(timeout, |v| v["event"] == true && v["type"] == ty)
    }

    fn wait(
        &self,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self
                .events
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find(|v| pred(v))
            {
                return Some(v.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Writes its output (SIP trace included) to `baresip.log` in its
    /// directory.
    fn save_log(&self) {
        let _ = std::fs::write(&self.log, self.out.tail(usize::MAX));
    }
}

impl Phone for Baresip {
    fn name(&self) -> &str {
        &self.name
    }

    fn dial(&self, uri: &str) -> Result<(), String> {
        self.command("dial", uri)
    }

    fn wait_answered(&self, timeout: Duration) -> bool {
        self.wait_event("CALL_ESTABLISHED", timeout).is_some()
    }

    fn hang_up(&self) -> Result<(), String> {
        self.command("hangup", "")
    }

    fn wait_ended(&self, timeout: Duration) -> bool {
        self.wait_event("CALL_CLOSED", timeout).is_some()
    }

    fn diag(&self) -> String {
        let events: Vec<String> = self
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|v| v.to_string())
            .collect();
        self.save_log();
        format!(
            "--- baresip {} output (tail; all of it in {}) ---\n{}\n--- its events ---\n{}\n",
            self.name,
            self.log.display(),
            file_tail(&self.log, 6000),
            super::tail(&events.join("\n"), 3000)
        )
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        // The test directory is kept when a test fails: leave the trace there.
        self.save_log();
    }
}

/// Connects to ctrl_tcp once baresip listens (it loads its modules first).
fn connect(port: u16, out: &Transcript) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(e) if Instant::now() >= deadline => {
                panic!(
                    "baresip ctrl_tcp on port {port}: {e}; baresip said:\n{}",
                    out.tail(4000)
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Reads `len:json,` frames until the connection ends.
fn read_netstrings(s: TcpStream, sink: Events) {
    let mut r = BufReader::new(s);
    loop {
        let mut len = String::new();
        let mut byte = [0u8; 1];
        loop {
            if r.read_exact(&mut byte).is_err() {
                return;
            }
            match byte[0] {
                b':' => break,
                b'0'..=b'9' if len.len() < 9 => len.push(byte[0] as char),
                _ => return, // not a netstring: stop reading
            }
        }
        let Ok(n) = len.parse::<usize>() else { return };
        let mut body = vec![0u8; n + 1]; // the JSON and the trailing ','
        if r.read_exact(&mut body).is_err() {
            return;
        }
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body[..n]) {
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(v);
        }
    }
}
