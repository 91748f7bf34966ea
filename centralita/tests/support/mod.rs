//! Helpers shared by the tests that run the real `centralita` binary: wait
//! for its "listening" line and talk plain HTTP/1.1 to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command};
use std::sync::mpsc::Receiver;
use std::time::Duration;

/// Forwards the child's stdout, line by line, to a channel (the reader
/// thread ends with the process).
pub fn stdout_lines(child: &mut Child) -> Receiver<String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads lines until "centralita listening on http://ADDR"; returns ADDR and
/// every line read, that one included.
pub fn wait_for_http(lines: &Receiver<String>) -> (String, Vec<String>) {
    let mut seen = Vec::new();
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("server printed its address in time");
        let addr = line
            .strip_prefix("centralita listening on http://")
            .map(|a| a.trim().to_string());
        seen.push(line);
        if let Some(addr) = addr {
            return (addr, seen);
        }
    }
}

/// Reads lines until "SIP on udp/tcp ADDR and ..." (printed after the HTTP
/// line); returns ADDR, the address the SIP server bound.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn wait_for_sip(lines: &Receiver<String>) -> String {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("server printed its SIP address in time");
        if let Some(rest) = line.strip_prefix("SIP on udp/tcp ") {
            let addr = rest.split_whitespace().next().expect("SIP address");
            return addr.to_string();
        }
    }
}

/// One HTTP/1.1 request on its own connection: (status, head, body).
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    cookie: Option<&str>,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let body = body.unwrap_or("");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: centralita_session={c}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let (head, body) = resp.split_once("\r\n\r\n").expect("http response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (status, head.to_string(), body.to_string())
}

/// The value of the `centralita_session` cookie a login answer set.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn session_cookie(head: &str) -> String {
    let line = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("set-cookie");
    let v = line.split_once("centralita_session=").expect("cookie").1;
    v.split(';').next().expect("cookie value").to_string()
}

/// The first of `span` consecutive ports on 127.0.0.1 that were all free a
/// moment ago for every transport asked for. A port free for TCP can be
/// busy for UDP (and the other way round), so a caller that listens on both
/// must check both.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn free_ports(span: u16, udp: bool, tcp: bool) -> u16 {
    for _ in 0..200 {
        let first = {
            let probe = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
            probe.local_addr().expect("address").port()
        };
        let Some(last) = first.checked_add(span.max(1) - 1) else {
            continue;
        };
        // Hold every socket until the whole block is checked.
        let mut udps = Vec::new();
        let mut tcps = Vec::new();
        let all_free = (first..=last).all(|p| {
            (!udp
                || UdpSocket::bind(("127.0.0.1", p))
                    .map(|s| udps.push(s))
                    .is_ok())
                && (!tcp
                    || TcpListener::bind(("127.0.0.1", p))
                        .map(|s| tcps.push(s))
                        .is_ok())
        });
        if all_free {
            return first;
        }
    }
    panic!("no block of {span} free ports on 127.0.0.1");
}

/// An external process that is killed (SIGKILL to its PID) and reaped when
/// this is dropped, so a failing assertion never leaves it running.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub struct Reaped {
    pub name: String,
    pub child: Child,
    /// Started in a process group of its own ([`Reaped::spawn_group`]).
    group: bool,
}

#[allow(dead_code)]
impl Reaped {
    pub fn spawn(name: &str, cmd: &mut Command) -> Reaped {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Reaped {
            name: name.to_string(),
            child,
            group: false,
        }
    }

    /// Like [`Reaped::spawn`], in a process group of its own, for a
    /// program that forks (Kamailio): when this is dropped the group gets
    /// SIGTERM and a moment for a clean stop, then SIGKILL for whatever is
    /// left. Kamailio's children outlive a signal to its main process
    /// alone and keep its ports.
    pub fn spawn_group(name: &str, cmd: &mut Command) -> Reaped {
        use std::os::unix::process::CommandExt;
        let mut r = Reaped::spawn(name, cmd.process_group(0));
        r.group = true;
        r
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if self.group {
            let group = format!("-{}", self.child.id());
            let signal = |sig: &str| {
                let _ = Command::new("kill")
                    .args([sig, "--", &group])
                    .stderr(std::process::Stdio::null())
                    .status();
            };
            signal("-TERM");
            for _ in 0..60 {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            signal("-KILL");
        } else if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Points a command at the test database of the data directory `data`:
/// SQLite inside it by default (the binary's own default), or, when the run
/// asked for PostgreSQL (`CENTRALITA_TEST_DATABASE_URL`), a database created
/// for this directory on first use and remembered in it, so a restarted
/// server finds its data again.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub trait TestDatabase {
    fn test_database(&mut self, data: &std::path::Path) -> &mut Self;
}

impl TestDatabase for Command {
    fn test_database(&mut self, data: &std::path::Path) -> &mut Self {
        match test_database_url(data) {
            Some(url) => self.env("CENTRALITA_DATABASE_URL", url),
            None => self.env_remove("CENTRALITA_DATABASE_URL"),
        }
    }
}

#[allow(dead_code)] // not every test binary that includes this module uses it
/// The PostgreSQL URL of `data`'s test database, or None on SQLite runs.
pub fn test_database_url(data: &std::path::Path) -> Option<String> {
    store::testing::postgres_admin_url()?;
    Some(store::testing::database_url(data))
}
