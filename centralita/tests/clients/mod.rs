//! Helpers for clients_binary.rs: the real server with its default
//! configuration, the text a child process prints, a test tone for the
//! clients to send, and a capture of the RTP between two clients.

pub mod baresip;
pub mod capture;
pub mod linphone;

use std::io::Read;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::support::{self, Reaped, TestDatabase};

const ADMIN_PASSWORD: &str = "admin-password-for-client-tests";

/// Everything a child process printed so far (stdout and stderr as they
/// come), shared with the threads that read it. Kept as raw text rather
/// than lines: linphonec's prompt has no newline after it.
#[derive(Clone, Default)]
pub struct Transcript(Arc<Mutex<String>>);

impl Transcript {
    fn lock(&self) -> MutexGuard<'_, String> {
        // A reader thread cannot panic while holding the lock, but a
        // poisoned lock still holds good text.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends everything `from` yields until it ends (in a thread).
    pub fn follow(&self, mut from: impl Read + Send + 'static) {
        let me = self.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                me.lock().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }

    /// Waits until `needle` has been printed; false once `timeout` has
    /// passed.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.lock().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last `max` bytes (or so: cut on a character boundary).
    pub fn tail(&self, max: usize) -> String {
        tail(&self.lock(), max)
    }
}

/// The last `max` bytes of `s`, cut on a character boundary.
pub fn tail(s: &str, max: usize) -> String {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

/// A file's last `max` bytes, or why it could not be read.
pub fn file_tail(path: &Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(b) => tail(&String::from_utf8_lossy(&b), max),
        Err(e) => format!("({}: {e})", path.display()),
    }
}

/// Writes a 20 s, 440 Hz tone as a WAV file (8 kHz, mono, 16-bit PCM, the
/// format baresip's aufile source wants) and returns its path.
pub fn write_tone(dir: &Path) -> PathBuf {
    const RATE: u32 = 8000;
    let samples: Vec<i16> = (0..RATE * 20)
        .map(|i| {
            let t = i as f64 / RATE as f64;
            (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
        })
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut wav = Vec::with_capacity(44 + data_len as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&RATE.to_le_bytes());
    wav.extend_from_slice(&(RATE * 2).to_le_bytes()); // bytes per second
    wav.extend_from_slice(&2u16.to_le_bytes()); // block align
    wav.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        wav.extend_from_slice(&s.to_le_bytes());
    }
    let path = dir.join("tone.wav");
    std::fs::write(&path, wav).expect("write tone.wav");
    path
}

/// Two blocks of `span` UDP ports, free a moment ago and not overlapping
/// (one RTP/RTCP port range per client).
pub fn two_port_ranges(span: u16) -> (RangeInclusive<u16>, RangeInclusive<u16>) {
    let a = support::free_ports(span, true, false);
    for _ in 0..50 {
        let b = support::free_ports(span, true, false);
        if b + span <= a || a + span <= b {
            return (a..=a + span - 1, b..=b + span - 1);
        }
    }
    panic!("no two separate blocks of {span} free UDP ports");
}

/// What a test does with a softphone, whichever it is. Each phone makes or
/// takes one call per test, so "the call" is unambiguous.
pub trait Phone {
    fn name(&self) -> &str;
    /// Calls `uri`.
    fn dial(&self, uri: &str) -> Result<(), String>;
    /// Whether the call is up (answered, media started) within `timeout`.
    fn wait_answered(&self, timeout: Duration) -> bool;
    /// Hangs up the call.
    fn hang_up(&self) -> Result<(), String>;
    /// Whether the call has ended within `timeout`.
    fn wait_ended(&self, timeout: Duration) -> bool;
    /// Its output and logs, for failure messages.
    fn diag(&self) -> String;
}

/// How a phone is set up: whose account, over which transport, with
/// which RTP ports, sending which tone, answering by itself or not.
pub struct PhoneSetup<'a> {
    pub root: &'a Path,
    pub name: &'a str,
    pub agent: &'a Agent,
    pub sip_port: u16,
    /// "udp" or "tcp".
    pub transport: &'a str,
    pub rtp: &'a RangeInclusive<u16>,
    pub tone: &'a Path,
    pub auto_answer: bool,
}

/// An agent's SIP credentials as `POST /api/agents` returned them.
pub struct Agent {
    pub username: String,
    pub password: String,
    pub extension: String,
}

/// `centralita serve` with its default configuration: only what a test
/// must choose is set (addresses, data directory, admin password, cheap
/// console password hashing); every other CENTRALITA_* variable the test
/// runner has is removed, so the SIP settings are the shipped defaults.
pub struct Server {
    pub http: String,
    pub sip_port: u16,
    pub log: PathBuf,
    _stdout: Receiver<String>,
    _proc: Reaped,
}

impl Server {
    pub fn start(dir: &Path) -> Server {
        // The SIP server listens on UDP and TCP at the same port.
        let sip_port = support::free_ports(1, true, true);
        let log = dir.join("centralita.log");
        let stderr = std::fs::File::create(&log).expect("create server log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_centralita"));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("CENTRALITA_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("serve")
            .env("CENTRALITA_HTTP_LISTEN", "127.0.0.1:0")
            .env("CENTRALITA_SIP_LISTEN", format!("127.0.0.1:{sip_port}"))
            .env("CENTRALITA_DATA_DIR", dir.join("data"))
            .test_database(&dir.join("data"))
            .env("CENTRALITA_CONSOLE_DIR", dir.join("no-console"))
            .env("CENTRALITA_AUTH_INSECURE_FAST_PASSWORD_HASHING", "true")
            .env("CENTRALITA_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("RUST_LOG", "info,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut proc = Reaped::spawn("centralita", &mut cmd);
        let stdout = support::stdout_lines(&mut proc.child);
        let http = support::wait_for_http(&stdout).0;
        Server {
            http,
            sip_port,
            log,
            _stdout: stdout,
            _proc: proc,
        }
    }

    /// The server's log so far (its last few KiB), for failure messages.
    pub fn log_tail(&self) -> String {
        file_tail(&self.log, 4000)
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        cookie: Option<&str>,
    ) -> (u16, String, String) {
        support::http_request(&self.http, method, path, body, cookie)
    }

    /// Logs in as admin; returns the session cookie.
    pub fn login(&self) -> String {
        let body = serde_json::json!({"login": "admin", "password": ADMIN_PASSWORD}).to_string();
        let (status, head, text) = self.request("POST", "/api/auth/login", Some(&body), None);
        assert_eq!(status, 200, "{text}");
        support::session_cookie(&head)
    }

    /// Creates an agent (and so its SIP account) over the API.
    pub fn agent(&self, cookie: &str, login: &str) -> Agent {
        let body = serde_json::json!({"name": login, "login": login, "password": "console-pass-123", "role": "agent"});
        let (status, _, text) =
            self.request("POST", "/api/agents", Some(&body.to_string()), Some(cookie));
        assert_eq!(status, 201, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        let c = &v["sipCredentials"];
        let s = |k: &str| c[k].as_str().expect("credential field").to_string();
        Agent {
            username: s("username"),
            password: s("password"),
            extension: s("extension"),
        }
    }

    /// The registrations the API lists, once each `(username, transport)`
    /// of `want` is among them; None after `timeout`.
    pub fn wait_registered(
        &self,
        cookie: &str,
        want: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Vec<serde_json::Value>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, _, text) =
                self.request("GET", "/api/telephony/registrations", None, Some(cookie));
            assert_eq!(status, 200, "{text}");
            let v: serde_json::Value = serde_json::from_str(&text).expect("json");
            let regs = v["registrations"].as_array().cloned().unwrap_or_default();
            let all = want.iter().all(|(user, transport)| {
                regs.iter()
                    .any(|r| r["username"] == *user && r["transport"] == *transport)
            });
            if all {
                return Ok(regs);
            }
            if Instant::now() >= deadline {
                return Err(text);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every CDR row, once `n` of them are finished; Err(all rows) after
    /// `timeout`.
    pub fn finished_calls(
        &self,
        cookie: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<serde_json::Value>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, _, text) = self.request(
                "GET",
                "/api/telephony/calls/history?limit=50",
                None,
                Some(cookie),
            );
            assert_eq!(status, 200, "{text}");
            let v: serde_json::Value = serde_json::from_str(&text).expect("json");
            let calls = v["calls"].as_array().cloned().unwrap_or_default();
            if calls.iter().filter(|c| !c["endTime"].is_null()).count() >= n {
                return Ok(calls);
            }
            if Instant::now() >= deadline {
                return Err(text);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A test's temporary directory (configurations, logs, the server's data),
/// kept when the test fails so the clients' logs can be read.
pub struct Workdir(Option<tempfile::TempDir>);

impl Workdir {
    pub fn new() -> Workdir {
        Workdir(Some(tempfile::tempdir().expect("temp dir")))
    }

    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("present until dropped").path()
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("KEEP_CLIENT_TEST_FILES").is_some() {
            if let Some(d) = self.0.take() {
                eprintln!("test files kept in {}", d.keep().display());
            }
        }
    }
}
