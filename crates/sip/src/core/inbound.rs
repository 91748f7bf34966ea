//! Calls from carriers: which trunk an INVITE comes from, and who it is
//! for (the DID routes of `domain::dids`).
//!
//! A trunk is recognised either by the source of its requests (the
//! addresses of [`InboundTrunk::sources`], for carriers that do not
//! authenticate, the usual case) or by answering our digest challenge with
//! its inbound credentials (for carriers that do). Anything else is
//! treated like any other unknown caller: challenged, and refused without
//! saying why, so a scanner learns nothing about which trunks exist.

use super::digest::Ha1;
use super::types::{Account, Source, Transport};
use domain::dids::InboundRoutes;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The source addresses of one carrier: an IP network, and for UDP a
/// port when given (a carrier usually sends from the port it listens on;
/// over TCP/TLS the source port is ephemeral and never compared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceMatch {
    pub net: IpAddr,
    pub prefix: u8,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("inbound match {entry:?}: {why}")]
pub struct SourceMatchError {
    pub entry: String,
    pub why: &'static str,
}

impl SourceMatch {
    /// `203.0.113.5`, `203.0.113.0/24`, `203.0.113.5:5060`,
    /// `[2001:db8::1]:5060` or `2001:db8::/32`.
    pub fn parse(entry: &str) -> Result<Self, SourceMatchError> {
        let err = |why| SourceMatchError {
            entry: entry.chars().take(80).collect(),
            why,
        };
        let t = entry.trim();
        if let Some((addr, prefix)) = t.split_once('/') {
            let net: IpAddr = addr
                .parse()
                .map_err(|_| err("not an IP address before /"))?;
            let max = if net.is_ipv4() { 32 } else { 128 };
            let prefix: u8 = prefix
                .parse()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| err("bad prefix length"))?;
            return Ok(Self {
                net,
                prefix,
                port: None,
            });
        }
        if let Ok(net) = t.parse::<IpAddr>() {
            return Ok(Self::host(net, None));
        }
        if let Ok(sa) = t.parse::<SocketAddr>() {
            return Ok(Self::host(sa.ip(), Some(sa.port())));
        }
        Err(err("not an IP address, IP:port or CIDR block"))
    }

    /// One address (optionally one port).
    pub fn host(ip: IpAddr, port: Option<u16>) -> Self {
        Self {
            net: ip,
            prefix: if ip.is_ipv4() { 32 } else { 128 },
            port,
        }
    }

    pub fn matches(&self, peer: SocketAddr, transport: Transport) -> bool {
        if let Some(p) = self.port {
            if transport == Transport::Udp && peer.port() != p {
                return false;
            }
        }
        in_network(peer.ip(), self.net, self.prefix)
    }
}

fn in_network(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        // An IPv4 peer on a dual-stack socket arrives mapped.
        (IpAddr::V6(a), IpAddr::V4(_)) => a
            .to_ipv4_mapped()
            .is_some_and(|v4| in_network(IpAddr::V4(v4), net, prefix)),
        _ => false,
    }
}

/// A trunk whose calls we take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundTrunk {
    pub id: i64,
    /// The trunk's name (CDR legs say `trunk:<name>`).
    pub name: String,
    /// Where its requests come from, when it does not authenticate.
    pub sources: Vec<SourceMatch>,
    /// The username and HA1s (in our realm) it answers our challenge
    /// with, when it authenticates; its source is then not enough.
    pub digest: Option<(String, Vec<Ha1>)>,
    /// The user of the Contact we register at this carrier, when we do: a
    /// carrier that sends calls to our registered Contact puts that user
    /// in the Request-URI, and the DID in the To header.
    pub contact_user: Option<String>,
}

impl InboundTrunk {
    /// The number the caller dialled: the Request-URI's user, or the To
    /// header's when the Request-URI is our registered Contact (or has no
    /// user).
    pub fn did_of(&self, ruri_user: Option<&str>, to_user: Option<&str>) -> String {
        let ruri = ruri_user.filter(|u| !u.is_empty());
        let is_contact = ruri.is_some_and(|u| self.contact_user.as_deref() == Some(u));
        match ruri {
            Some(u) if !is_contact => u.to_string(),
            _ => to_user.or(ruri).unwrap_or("").to_string(),
        }
    }
}

/// The trunks we take calls from and the DID routes.
#[derive(Debug, Default)]
pub struct Inbound {
    trunks: Vec<InboundTrunk>,
    /// Digest trunks as the authenticator sees them, by username.
    accounts: Vec<(Arc<Account>, usize)>,
    routes: Arc<InboundRoutes>,
}

impl Inbound {
    pub fn set(&mut self, trunks: Vec<InboundTrunk>, routes: Arc<InboundRoutes>) {
        self.accounts = trunks
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let (user, secrets) = t.digest.as_ref()?;
                let account = Account {
                    username: user.clone(),
                    extension: String::new(),
                    user_id: None,
                    display_name: t.name.clone(),
                    secrets: secrets.clone(),
                    record_calls: None,
                    dial: None,
                };
                Some((Arc::new(account), i))
            })
            .collect();
        self.trunks = trunks;
        self.routes = routes;
    }

    /// The digest trunks' accounts, for the authenticator.
    pub fn accounts(&self) -> Vec<Arc<Account>> {
        self.accounts.iter().map(|(a, _)| a.clone()).collect()
    }

    pub fn routes(&self) -> &InboundRoutes {
        &self.routes
    }

    /// The trunk that does not authenticate whose sources include `src`.
    /// Never over WebSocket: carriers do not call over it, and browsers
    /// may share a carrier's address (the same office, the same host).
    pub fn by_source(&self, src: &Source) -> Option<&InboundTrunk> {
        if matches!(src.transport, Transport::Ws | Transport::Wss) {
            return None;
        }
        self.trunks.iter().find(|t| {
            t.digest.is_none() && t.sources.iter().any(|s| s.matches(src.peer, src.transport))
        })
    }

    /// The digest account of the trunk authenticating as `username`.
    pub fn account(&self, username: &str) -> Option<&Arc<Account>> {
        self.accounts
            .iter()
            .find(|(a, _)| a.username == username)
            .map(|(a, _)| a)
    }

    /// The trunk behind an account [`Inbound::account`] returned.
    pub fn by_account(&self, account: &Arc<Account>) -> Option<&InboundTrunk> {
        self.accounts
            .iter()
            .find(|(a, _)| Arc::ptr_eq(a, account))
            .and_then(|(_, i)| self.trunks.get(*i))
    }
}

/// The caller's number as we pass it on (the From user), or `anonymous`
/// when it is missing or holds anything a number should not (it goes into
/// the From URI of the agent's leg).
pub fn caller_number(from_user: Option<&str>) -> String {
    match from_user {
        Some(u)
            if !u.is_empty()
                && u.len() <= 64
                && u.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '+' | '*' | '#' | '.' | '-' | '_')
                }) =>
        {
            u.to_string()
        }
        _ => "anonymous".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(peer: &str, transport: Transport) -> Source {
        Source {
            flow: 0,
            transport,
            peer: peer.parse().expect("literal"),
        }
    }

    #[test]
    fn sources_match_by_network_and_udp_port() {
        let one = SourceMatch::parse("203.0.113.5:5060").expect("valid");
        assert!(one.matches("203.0.113.5:5060".parse().expect("a"), Transport::Udp));
        assert!(!one.matches("203.0.113.5:5070".parse().expect("a"), Transport::Udp));
        // TCP connections come from ephemeral ports.
        assert!(one.matches("203.0.113.5:40000".parse().expect("a"), Transport::Tcp));
        assert!(!one.matches("203.0.113.6:5060".parse().expect("a"), Transport::Udp));
        let block = SourceMatch::parse("198.51.100.0/24").expect("valid");
        assert!(block.matches("198.51.100.77:1".parse().expect("a"), Transport::Udp));
        assert!(!block.matches("198.51.101.1:1".parse().expect("a"), Transport::Udp));
        let all = SourceMatch::parse("0.0.0.0/0").expect("valid");
        assert!(all.matches("192.0.2.1:5".parse().expect("a"), Transport::Udp));
        let v6 = SourceMatch::parse("2001:db8::/32").expect("valid");
        assert!(v6.matches("[2001:db8::1]:5060".parse().expect("a"), Transport::Udp));
        assert!(!v6.matches("[2001:db9::1]:5060".parse().expect("a"), Transport::Udp));
        let mapped = SourceMatch::parse("203.0.113.5").expect("valid");
        assert!(mapped.matches("[::ffff:203.0.113.5]:9".parse().expect("a"), Transport::Udp));
        for bad in [
            "",
            "carrier.example",
            "1.2.3.4/33",
            "1.2.3.4:99999",
            "::1/129",
        ] {
            assert!(SourceMatch::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn trunks_are_found_by_source_or_by_account() {
        let mut inbound = Inbound::default();
        inbound.set(
            vec![
                InboundTrunk {
                    id: 1,
                    name: "ip".into(),
                    sources: vec![SourceMatch::parse("203.0.113.5:5060").expect("valid")],
                    digest: None,
                    contact_user: None,
                },
                InboundTrunk {
                    id: 2,
                    name: "digest".into(),
                    // Its source alone does not identify it.
                    sources: vec![SourceMatch::parse("198.51.100.9").expect("valid")],
                    digest: Some(("carrier2".into(), Vec::new())),
                    contact_user: None,
                },
            ],
            Arc::new(InboundRoutes::default()),
        );
        let found = |peer: &str| inbound.by_source(&src(peer, Transport::Udp)).map(|t| t.id);
        assert_eq!(found("203.0.113.5:5060"), Some(1));
        assert_eq!(found("203.0.113.5:5099"), None);
        assert_eq!(found("198.51.100.9:5060"), None);
        let a = inbound.account("carrier2").expect("digest trunk").clone();
        assert_eq!(inbound.by_account(&a).map(|t| t.id), Some(2));
        assert!(inbound.account("carrier1").is_none());
        // An equal account that is not the trunk's own is not the trunk.
        let lookalike = Arc::new((*a).clone());
        assert!(inbound.by_account(&lookalike).is_none());
    }

    #[test]
    fn the_did_is_the_request_uri_unless_it_is_our_registered_contact() {
        let t = InboundTrunk {
            id: 1,
            name: "reg".into(),
            sources: Vec::new(),
            digest: None,
            contact_user: Some("acct9".into()),
        };
        assert_eq!(t.did_of(Some("34910000001"), Some("x")), "34910000001");
        assert_eq!(
            t.did_of(Some("acct9"), Some("+34910000001")),
            "+34910000001"
        );
        assert_eq!(t.did_of(None, Some("+34910000001")), "+34910000001");
        assert_eq!(t.did_of(Some(""), None), "");
        assert_eq!(t.did_of(Some("acct9"), None), "acct9");
    }

    #[test]
    fn caller_numbers_are_sanitised() {
        assert_eq!(caller_number(Some("+34600111222")), "+34600111222");
        assert_eq!(caller_number(Some("")), "anonymous");
        assert_eq!(caller_number(None), "anonymous");
        assert_eq!(caller_number(Some("a@b")), "anonymous");
        assert_eq!(caller_number(Some("1>2")), "anonymous");
        assert_eq!(caller_number(Some(&"1".repeat(65))), "anonymous");
    }
}
