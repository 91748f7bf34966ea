//! The relay engine (`mode = "relay"`): centralita in front of a
//! third-party PBX (3CX and others). Browsers keep connecting to
//! centralita's `/ws`; each browser flow gets one upstream flow (UDP,
//! TCP, TLS, WS or WSS) to the configured PBX, and the SIP between them is relayed with
//! Via, Record-Route and Contact rewritten so that requests and responses
//! find their way both ways (see [`core`]). The PBX's digest challenges
//! pass untouched: centralita never learns the PBX passwords.
//!
//! Calls are recorded from what passes ([`cdr`]): one CDR per Call-ID,
//! through `domain::CallService::record`, like every other engine.
//! Registrations the PBX confirms are counted live and mark the agent's
//! account registered.
//!
//! `core` and `cdr` are sans-IO; [`shell`] is the tokio part.

pub mod cdr;
pub mod core;
pub mod shell;

pub use core::UpTransport;
pub use shell::{RelayConfig, RelayEngine, StartError};

use std::fmt;
use std::str::FromStr;

/// The PBX the relay forwards to: `udp:HOST:PORT` or `tcp:HOST:PORT`
/// (`[v6]:PORT` for an IPv6 literal). HOST may be a name, resolved at
/// each connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub transport: UpTransport,
    pub host: String,
    pub port: u16,
    /// The HTTP path of a `ws:`/`wss:` upstream (`/` when none is given).
    pub path: String,
}

/// Why an upstream address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not an upstream address: write udp:HOST:PORT, tcp:HOST:PORT, \
     tls:HOST:PORT, ws:HOST:PORT[/PATH] or wss:HOST:PORT[/PATH]"
)]
pub struct UpstreamError(pub String);

impl FromStr for Upstream {
    type Err = UpstreamError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || UpstreamError(s.to_string());
        let (t, rest) = s.trim().split_once(':').ok_or_else(bad)?;
        let transport = match t.to_ascii_lowercase().as_str() {
            "udp" => UpTransport::Udp,
            "tcp" => UpTransport::Tcp,
            "tls" => UpTransport::Tls,
            "ws" => UpTransport::Ws,
            "wss" => UpTransport::Wss,
            _ => return Err(bad()),
        };
        // A WebSocket upstream may name its path after the port.
        let (rest, path) = match (transport, rest.find('/')) {
            (UpTransport::Ws | UpTransport::Wss, Some(i)) => (&rest[..i], rest[i..].to_string()),
            (_, Some(_)) => return Err(bad()),
            (_, None) => (rest, "/".to_string()),
        };
        if path.contains(char::is_whitespace) {
            return Err(bad());
        }
        let (host, port) = match rest.strip_prefix('[') {
            Some(v6) => {
                let (h, p) = v6.split_once("]:").ok_or_else(bad)?;
                h.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
                (h.to_string(), p)
            }
            None => {
                let (h, p) = rest.rsplit_once(':').ok_or_else(bad)?;
                (h.to_string(), p)
            }
        };
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
        if port == 0 || !host_ok {
            return Err(bad());
        }
        Ok(Upstream {
            transport,
            host,
            port,
            path,
        })
    }
}

impl Upstream {
    /// `host:port`, bracketed for IPv6.
    pub fn hostport(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport.as_str(), self.hostport())?;
        if matches!(self.transport, UpTransport::Ws | UpTransport::Wss) && self.path != "/" {
            f.write_str(&self.path)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_addresses_parse_and_print_back() {
        for s in [
            "udp:127.0.0.1:5060",
            "tcp:pbx.example.test:5080",
            "tls:pbx.example.test:5061",
            "udp:[::1]:5060",
            "ws:127.0.0.1:8088",
            "wss:pbx.example.test:443/ws",
        ] {
            let u: Upstream = s.parse().expect(s);
            assert_eq!(u.to_string(), s);
        }
        let u: Upstream = "TCP:10.0.0.1:5061".parse().expect("upper case");
        assert_eq!((u.transport, u.port), (UpTransport::Tcp, 5061));
        let u: Upstream = "wss:pbx.example.test:443/ws".parse().expect("wss");
        assert_eq!(
            (u.transport, u.host.as_str(), u.port, u.path.as_str()),
            (UpTransport::Wss, "pbx.example.test", 443, "/ws")
        );
        for bad in [
            "",
            "127.0.0.1:5060",
            "sips:pbx:5061",
            "udp:pbx:5060/ws",
            "wss:pbx/ws",
            "udp:pbx",
            "udp:pbx:0",
            "udp:pbx:99999",
            "udp::5060",
            "udp:pb x:5060",
            "udp:[::1:5060",
        ] {
            assert!(bad.parse::<Upstream>().is_err(), "{bad:?} accepted");
        }
    }
}
