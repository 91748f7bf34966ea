//! "Test connection" of a trunk: one SIP OPTIONS to the far end and its
//! final answer, with the round-trip time. It leaves from the server's
//! own IP address (a carrier that allows our address sees the address it
//! allows) on a port of its own, so the answer never mixes with the
//! server's traffic. UDP retransmits as RFC 3261 Timer E does (0.5, 1,
//! 2 s); after 4 s without a final answer the far end is unreachable.
//! Over TLS the handshake is made as for the trunk's calls (the carrier's
//! certificate checked as `tls_dial_verify` says, for the trunk's host).

use crate::core::msg::{Limits, Msg};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long a probe waits for a final answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(4);

/// The far end's final answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeAnswer {
    pub status: u16,
    pub reason: String,
    pub rtt: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("no answer within {} s", PROBE_TIMEOUT.as_secs())]
    Timeout,
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    #[error("transport {0} cannot be probed (udp, tcp or tls)")]
    Transport(String),
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
}

async fn resolve(host: &str, port: u16, prefer_v4: bool) -> Result<SocketAddr, ProbeError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let all: Vec<SocketAddr> = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::lookup_host((host, port)),
    )
    .await
    .map_err(|_| ProbeError::Resolve(host.to_string()))?
    .map_err(|_| ProbeError::Resolve(host.to_string()))?
    .collect();
    all.iter()
        .find(|a| a.is_ipv4() == prefer_v4)
        .or(all.first())
        .copied()
        .ok_or_else(|| ProbeError::Resolve(host.to_string()))
}

fn request(host: &str, port: u16, transport: &str, local: SocketAddr, token: &str) -> String {
    let via = transport.to_ascii_uppercase();
    let uri_host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    format!(
        "OPTIONS sip:{uri_host}:{port} SIP/2.0\r\n\
         Via: SIP/2.0/{via} {local};branch=z9hG4bKprobe{token};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:centralita@{ip}>;tag=probe{token}\r\n\
         To: <sip:{uri_host}:{port}>\r\n\
         Call-ID: probe-{token}@{ip}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Contact: <sip:centralita@{local}>\r\n\
         Accept: application/sdp\r\n\
         User-Agent: centralita\r\n\
         Content-Length: 0\r\n\r\n",
        ip = local.ip(),
    )
}

/// The final answer in `data` to the probe with Call-ID `call_id`, if it
/// is one (provisional answers and anything else are not).
fn final_answer(data: &[u8], call_id: &str, sent: Instant) -> Option<ProbeAnswer> {
    let m = Msg::parse(data, &Limits::default()).ok()?;
    let status = m.code()?;
    if status < 200 || m.call_id() != call_id {
        return None;
    }
    let reason = String::from_utf8_lossy(data)
        .lines()
        .next()
        .and_then(|l| l.splitn(3, ' ').nth(2))
        .unwrap_or("")
        .chars()
        .take(100)
        .collect();
    Some(ProbeAnswer {
        status,
        reason,
        rtt: sent.elapsed(),
    })
}

/// Sends `req` on `stream` and reads answers until the final one to
/// `call_id`.
async fn over_stream<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    req: String,
    call_id: &str,
) -> Result<ProbeAnswer, ProbeError> {
    let sent = Instant::now();
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(ProbeError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        buf.extend_from_slice(&chunk[..n]);
        // Answers are framed by their empty line (OPTIONS answers rarely
        // carry a body we would need).
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let msg: Vec<u8> = buf.drain(..end + 4).collect();
            if let Some(a) = final_answer(&msg, call_id, sent) {
                return Ok(a);
            }
        }
        if buf.len() > 65_535 {
            return Err(ProbeError::Timeout);
        }
    }
}

/// Sends one OPTIONS to `host:port` from `local_ip` and waits for its
/// final answer; `tls` makes the handshake of a TLS probe.
pub async fn probe(
    local_ip: IpAddr,
    host: &str,
    port: u16,
    transport: &str,
    tls: &tokio_rustls::TlsConnector,
) -> Result<ProbeAnswer, ProbeError> {
    let target = resolve(host, port, local_ip.is_ipv4()).await?;
    let token = format!("{:016x}", rand::random::<u64>());
    let call_id = format!("probe-{token}@{local_ip}");
    match transport {
        "udp" => {
            let sock = UdpSocket::bind(SocketAddr::new(local_ip, 0)).await?;
            let req = request(host, port, "udp", sock.local_addr()?, &token);
            let sent = Instant::now();
            let deadline = sent + PROBE_TIMEOUT;
            let mut interval = Duration::from_millis(500);
            let mut buf = vec![0u8; 65_535];
            loop {
                sock.send_to(req.as_bytes(), target).await?;
                let resend = (Instant::now() + interval).min(deadline);
                loop {
                    let now = Instant::now();
                    if now >= resend {
                        break;
                    }
                    match tokio::time::timeout(resend - now, sock.recv_from(&mut buf)).await {
                        Ok(Ok((n, from))) if from == target => {
                            if let Some(a) = final_answer(&buf[..n], &call_id, sent) {
                                return Ok(a);
                            }
                        }
                        Ok(Ok(_)) => {} // not from the far end: ignored
                        // ICMP port unreachable: nothing listens there.
                        Ok(Err(e)) => return Err(e.into()),
                        Err(_) => break,
                    }
                }
                if Instant::now() >= deadline {
                    return Err(ProbeError::Timeout);
                }
                interval = (interval * 2).min(Duration::from_secs(4));
            }
        }
        "tcp" => {
            let run = async {
                let stream = TcpStream::connect(target).await?;
                let req = request(host, port, "tcp", stream.local_addr()?, &token);
                over_stream(stream, req, &call_id).await
            };
            tokio::time::timeout(PROBE_TIMEOUT, run)
                .await
                .map_err(|_| ProbeError::Timeout)?
        }
        "tls" => {
            let run = async {
                let stream = TcpStream::connect(target).await?;
                let local = stream.local_addr()?;
                let name = super::tls_client::trunk_server_name(host)
                    .ok_or_else(|| ProbeError::Resolve(host.to_string()))?;
                let stream = tls
                    .connect(name, stream)
                    .await
                    .map_err(ProbeError::Handshake)?;
                let req = request(host, port, "tls", local, &token);
                over_stream(stream, req, &call_id).await
            };
            tokio::time::timeout(PROBE_TIMEOUT, run)
                .await
                .map_err(|_| ProbeError::Timeout)?
        }
        other => Err(ProbeError::Transport(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A far end that answers 100 then 404 on UDP; the probe reports 404.
    #[tokio::test]
    async fn udp_probe_reports_the_final_answer() {
        let far = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let port = far.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            let (n, from) = far.recv_from(&mut buf).await.expect("recv");
            let req = Msg::parse(&buf[..n], &Limits::default()).expect("a SIP request");
            assert_eq!(req.method(), Some("OPTIONS"));
            for (code, reason) in [(100, "Trying"), (404, "Not Here")] {
                let r = crate::core::msg::response(&req, code, reason, None);
                far.send_to(&r.to_bytes(), from).await.expect("send");
            }
        });
        let a = probe(
            "127.0.0.1".parse().expect("ip"),
            "127.0.0.1",
            port,
            "udp",
            &no_tls(),
        )
        .await
        .expect("an answer");
        assert_eq!((a.status, a.reason.as_str()), (404, "Not Here"));
        server.await.expect("server");
    }

    fn no_tls() -> tokio_rustls::TlsConnector {
        crate::shell::tls_client::trunk_connector(&crate::TlsDialVerify::None, None)
            .expect("a connector")
    }

    #[tokio::test]
    async fn silence_is_a_timeout_and_ws_is_refused() {
        let far = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let port = far.local_addr().expect("addr").port();
        let t0 = Instant::now();
        let e = probe(
            "127.0.0.1".parse().expect("ip"),
            "127.0.0.1",
            port,
            "udp",
            &no_tls(),
        )
        .await
        .expect_err("nobody answers");
        assert!(matches!(e, ProbeError::Timeout), "{e}");
        assert!(t0.elapsed() >= PROBE_TIMEOUT);
        // Retransmitted meanwhile (Timer E): more than one copy arrived.
        let mut buf = vec![0u8; 65_535];
        let mut copies = 0;
        while let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(50), far.recv_from(&mut buf)).await
        {
            copies += 1;
        }
        assert!(copies >= 3, "{copies} copies");
        let e = probe(
            "127.0.0.1".parse().expect("ip"),
            "127.0.0.1",
            port,
            "ws",
            &no_tls(),
        )
        .await
        .expect_err("ws");
        assert!(matches!(e, ProbeError::Transport(_)));
    }
}
