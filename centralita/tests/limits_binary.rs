//! Denial of service by connections (issue 8), against the real binary
//! started with a hard open-file limit of 1,024 (`ulimit -n`): idle SIP
//! connections from many addresses and half-sent HTTP requests (slowloris)
//! must not take the API or SIP down for others, and are closed after the
//! (test-shortened) timeouts.

mod support;
use support::TestDatabase;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Running {
    child: Child,
    http: String,
    sip: String,
    stderr: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Starts the binary under `ulimit -n 1024` (soft and hard) with `env`.
fn start(env: &[(&str, &str)]) -> Running {
    let dir = tempfile::tempdir().expect("temp dir");
    let stderr = dir.path().join("stderr.log");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -n 1024 && exec \"$0\" serve")
        .arg(env!("CARGO_BIN_EXE_centralita"))
        .env("CENTRALITA_HTTP_LISTEN", "127.0.0.1:0")
        .env("CENTRALITA_SIP_LISTEN", "127.0.0.1:0")
        .env("CENTRALITA_DATA_DIR", dir.path())
        .env("CENTRALITA_CONSOLE_DIR", dir.path().join("no-console"))
        .env("CENTRALITA_AUTH_INSECURE_FAST_PASSWORD_HASHING", "true")
        .env("CENTRALITA_ADMIN_PASSWORD", "admin-password-1")
        .test_database(dir.path())
        .env("RUST_LOG", "info,sqlx=warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).expect("stderr file"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn centralita");
    let lines = support::stdout_lines(&mut child);
    let mut running = Running {
        child,
        http: String::new(),
        sip: String::new(),
        stderr,
        _dir: dir,
    };
    running.http = support::wait_for_http(&lines).0;
    running.sip = support::wait_for_sip(&lines);
    running
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// GET /api/health on a new connection; the status, or None when no
    /// answer came within `within`.
    fn health(&self, within: Duration) -> Option<u16> {
        let mut s = TcpStream::connect(&self.http).ok()?;
        s.set_read_timeout(Some(within)).ok()?;
        let req = format!(
            "GET /api/health HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.http
        );
        s.write_all(req.as_bytes()).ok()?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).ok()?;
        let text = String::from_utf8_lossy(&resp);
        text.split(' ').nth(1)?.parse().ok()
    }
}

/// Longest the tests spend opening their connections. On two busy cores
/// (the whole suite beside it) opening 1,024 took more than 4 s (764 opened).
const OPENING_BUDGET: Duration = Duration::from_secs(8);

/// Room for the test's own sockets (the server's limit is set apart).
fn raise_own_limit() {
    let _ = rlimit::increase_nofile_limit(8_192);
}

/// A TCP connection to `to` from loopback address 127.0.0.`host`.
fn connect_from(host: u8, to: &str) -> std::io::Result<TcpStream> {
    let to: SocketAddr = to.parse().expect("address");
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)), 0).into())?;
    sock.connect_timeout(&to.into(), Duration::from_secs(1))?;
    Ok(sock.into())
}

/// How many of `conns` the server closed by `deadline` (EOF, reset, or
/// an answer followed by EOF).
fn count_closed(conns: &mut [TcpStream], deadline: Instant) -> usize {
    let mut closed = 0;
    for s in conns.iter_mut() {
        let mut buf = [0u8; 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = s.set_read_timeout(Some(left));
            match s.read(&mut buf) {
                Ok(0) => {
                    closed += 1;
                    break;
                }
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(_) => {
                    closed += 1;
                    break;
                }
            }
        }
    }
    closed
}

fn too_many_files_lines(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("Too many open files") || l.contains("os error 24"))
        .count()
}

/// 1,100 half-sent requests from one address (more than the descriptor
/// limit): /api/health still answers for others at once, and the
/// half-sent ones are closed after the header timeout. A request whose
/// body stalls is ended by the body timeout.
#[test]
fn slowloris_does_not_take_http_down() {
    raise_own_limit();
    let srv = start(&[
        ("CENTRALITA_HTTP_HEADER_TIMEOUT_SECS", "2"),
        ("CENTRALITA_HTTP_BODY_TIMEOUT_SECS", "2"),
    ]);
    assert_eq!(srv.health(Duration::from_secs(5)), Some(200));
    let started = Instant::now();
    let mut held = Vec::new();
    for _ in 0..1_100 {
        // Bounded: a server that stopped accepting makes each connect wait.
        if started.elapsed() > OPENING_BUDGET {
            break;
        }
        // A refused connection may be reset before we write: that is fine.
        let Ok(mut s) = connect_from(2, &srv.http) else {
            continue;
        };
        let _ = s.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: ");
        held.push(s);
    }
    // Another client is served while they are all open.
    let t = Instant::now();
    assert_eq!(
        srv.health(Duration::from_secs(3)),
        Some(200),
        "/api/health did not answer during the slowloris"
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    // A stalled body: the head is complete, 10 of 1,000 bytes arrive.
    let mut slow_body = TcpStream::connect(&srv.http).expect("connect");
    slow_body
        .write_all(
            b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n{\"login\":",
        )
        .expect("write");
    // Every half-sent request is closed within the header timeout (2 s)
    // plus slack.
    let deadline = Instant::now() + Duration::from_secs(6);
    let closed = count_closed(&mut held, deadline);
    assert_eq!(
        closed,
        held.len(),
        "half-sent requests still open after the header timeout"
    );
    assert_eq!(
        count_closed(
            std::slice::from_mut(&mut slow_body),
            Instant::now() + Duration::from_secs(5)
        ),
        1,
        "a stalled request body was not ended by the body timeout"
    );
    assert_eq!(srv.health(Duration::from_secs(3)), Some(200));
    let log = srv.log();
    assert!(
        too_many_files_lines(&log) <= 5,
        "descriptor exhaustion logged repeatedly:\n{log}"
    );
    assert!(
        log.contains("too many connections from this address"),
        "the per-address refusal is logged:\n{log}"
    );
}

/// 16 addresses x 64 idle SIP TCP connections (the whole descriptor
/// limit): the API still answers, a new SIP client still gets in (the
/// oldest idle connections make room), and the idle ones are closed after
/// the unauthenticated timeout.
#[test]
fn idle_sip_connections_do_not_take_the_server_down() {
    raise_own_limit();
    // Longer than the opening budget: none is closed before all are open.
    let srv = start(&[("CENTRALITA_SIP_UNAUTHENTICATED_TIMEOUT_SECS", "9")]);
    let log = srv.log();
    assert!(
        log.contains("max_connections=768"),
        "the SIP cap is derived from a limit of 1,024:\n{log}"
    );
    let started = Instant::now();
    let mut idle = Vec::new();
    for host in 10..26u8 {
        for _ in 0..64 {
            if started.elapsed() > OPENING_BUDGET {
                break;
            }
            if let Ok(s) = connect_from(host, &srv.sip) {
                idle.push(s);
            }
        }
    }
    // More than the cap (768 under 1,024 descriptors) is what matters; a
    // loaded machine opens fewer than the 1,024 tried within the budget.
    assert!(idle.len() > 800, "only {} connections opened", idle.len());
    assert_eq!(
        srv.health(Duration::from_secs(3)),
        Some(200),
        "/api/health did not answer with SIP connections filling the limit"
    );
    // A new SIP client over TCP is answered.
    let mut client = connect_from(60, &srv.sip).expect("a new SIP connection");
    let options = format!(
        "OPTIONS sip:{sip} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.60:5060;branch=z9hG4bKlimits1\r\n\
         From: <sip:probe@127.0.0.60>;tag=1\r\nTo: <sip:{sip}>\r\nCall-ID: limits-1\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        sip = srv.sip
    );
    client.write_all(options.as_bytes()).expect("write");
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    let n = client.read(&mut buf).unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(
        answer.starts_with("SIP/2.0 200"),
        "a new SIP client was not served: {answer:?}"
    );
    // The idle ones are all closed after the unauthenticated timeout (9 s).
    let closed = count_closed(&mut idle, Instant::now() + Duration::from_secs(13));
    assert_eq!(closed, idle.len(), "idle SIP connections still open");
    let log = srv.log();
    assert!(
        too_many_files_lines(&log) <= 5,
        "descriptor exhaustion logged repeatedly:\n{log}"
    );
}
