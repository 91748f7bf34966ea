//! Trunk registrations on the running server: resolving each registrar
//! (the sans-IO core cannot), handing the set to the core, and publishing
//! the state changes. REGISTERs leave from the server's own UDP socket (or
//! over a TCP or TLS connection the shell opens, see `dial.rs`), so the carrier
//! sees the address it will send calls to; their answers come back
//! through the ordinary receive path and the endpoint routes them to
//! `core::outbound_reg` by Via branch.

use super::{now_ms, Shared};
use crate::core::inbound::{InboundTrunk, SourceMatch};
use crate::core::outbound::{OutboundPolicy, OutboundTrunk, OutboundTrunkError};
use crate::core::outbound_reg::{TrunkConfigError, TrunkEvent, TrunkRegistration, TrunkStatus};
use crate::core::Transport;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::sync::broadcast;

/// Events kept for a slow subscriber before it starts missing some.
pub(crate) const EVENT_BUFFER: usize = 256;

/// The configured host of each TLS trunk by the address it resolved to,
/// for registrations and for calls (each replaced with its set): the
/// name a connection to that address is opened for and checked against.
#[derive(Default)]
pub(crate) struct TrunkNames {
    pub(crate) registrars: HashMap<SocketAddr, String>,
    pub(crate) outbound: HashMap<SocketAddr, String>,
}

impl TrunkNames {
    pub(crate) fn name_of(&self, peer: SocketAddr) -> Option<String> {
        self.registrars
            .get(&peer)
            .or_else(|| self.outbound.get(&peer))
            .cloned()
    }
}

/// How long resolving one registrar's name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

impl Shared {
    /// Publishes a trunk registration event (nobody listening is fine).
    pub(crate) fn trunk_event(&self, e: TrunkEvent) {
        match &e.kind {
            crate::core::outbound_reg::TrunkEventKind::Registered { expires_secs } => {
                tracing::debug!(trunk = %e.key, expires_secs, "trunk registered")
            }
            kind => tracing::info!(trunk = %e.key, ?kind, "trunk registration"),
        }
        let _ = self.trunk_events.send(e);
    }
}

/// The address REGISTERs for `host:port` go to: an IP literal as it is,
/// a name through the resolver, preferring the family of our own socket.
async fn resolve(host: &str, port: u16, local: SocketAddr) -> Option<SocketAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .ok()?
        .ok()?;
    let all: Vec<SocketAddr> = found.collect();
    all.iter()
        .find(|a| a.is_ipv4() == local.is_ipv4())
        .or(all.first())
        .copied()
}

/// A trunk calls are taken from, as configured (see
/// [`crate::SipServer::set_inbound`]).
#[derive(Debug, Clone)]
pub struct InboundTrunkSpec {
    pub id: i64,
    pub name: String,
    pub sources: Vec<String>,
    /// Username and HA1s (in the server's realm) when the carrier
    /// authenticates; its sources then do not identify it.
    pub digest: Option<(String, Vec<crate::core::digest::Ha1>)>,
    /// The user of the Contact we register at this carrier, if we do.
    pub contact_user: Option<String>,
}

/// Every address of `name` or `name:port` (the port kept for UDP
/// matching).
async fn resolve_all(entry: &str) -> Option<Vec<SourceMatch>> {
    let (host, port) = match entry.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p.parse::<u16>().ok()?)),
        _ => (entry, None),
    };
    let found = tokio::time::timeout(
        RESOLVE_TIMEOUT,
        tokio::net::lookup_host((host, port.unwrap_or(0))),
    )
    .await
    .ok()?
    .ok()?;
    let all: Vec<SourceMatch> = found.map(|a| SourceMatch::host(a.ip(), port)).collect();
    (!all.is_empty()).then_some(all)
}

impl crate::SipServer {
    /// Replaces the set of trunks that register to carriers: unchanged
    /// trunks carry on, removed ones unregister, changed ones re-register,
    /// new ones register (spread over a few seconds). Registrar names are
    /// resolved now; one that does not resolve leaves its trunk `Failed`
    /// until the next call. A bad setting is an error and changes nothing.
    pub async fn set_trunk_registrations(
        &self,
        regs: Vec<TrunkRegistration>,
    ) -> Result<(), TrunkConfigError> {
        let mut targets = Vec::with_capacity(regs.len());
        for r in &regs {
            targets.push(r.target()?);
        }
        // All at once: one slow name must not hold up the others.
        let addrs = futures_util::future::join_all(
            targets.iter().map(|t| resolve(&t.host, t.port, self.local)),
        )
        .await;
        let mut resolved = Vec::with_capacity(regs.len());
        for ((r, t), addr) in regs.into_iter().zip(&targets).zip(addrs) {
            if addr.is_none() {
                tracing::warn!(trunk = %r.key, host = %t.host, "cannot resolve the trunk's registrar");
            }
            resolved.push((r, addr));
        }
        let names = resolved
            .iter()
            .zip(&targets)
            .filter(|((r, _), _)| r.transport == Transport::Tls)
            .filter_map(|((_, addr), t)| Some(((*addr)?, t.host.clone())))
            .collect();
        let shared = &self.shared;
        // Known before the first REGISTER opens a connection.
        let before = std::mem::replace(&mut shared.trunk_names.lock().registrars, names);
        let mut result = Ok(());
        shared.feed(|c| result = c.set_trunk_registrations(now_ms(), resolved));
        if result.is_err() {
            shared.trunk_names.lock().registrars = before;
        }
        result
    }

    /// Replaces the trunks calls go out through and the outbound dial plan.
    /// Hosts are resolved now (all at once); a trunk whose host does not
    /// resolve is skipped by routing until the next call. Calls up keep
    /// their channels counted. A bad setting is an error and changes
    /// nothing.
    pub async fn set_outbound_trunks(
        &self,
        trunks: Vec<OutboundTrunk>,
        policy: OutboundPolicy,
    ) -> Result<(), OutboundTrunkError> {
        for t in &trunks {
            t.validate()?;
        }
        let addrs = futures_util::future::join_all(trunks.iter().map(|t| {
            // An IPv6 literal is bracketed, as in the URIs we build.
            let host = t.host.trim_start_matches('[').trim_end_matches(']');
            resolve(host, t.port, self.local)
        }))
        .await;
        let mut resolved = Vec::with_capacity(trunks.len());
        for (t, addr) in trunks.into_iter().zip(addrs) {
            if addr.is_none() {
                tracing::warn!(trunk = t.id, host = %t.host, "cannot resolve the trunk's host");
            }
            resolved.push((t, addr));
        }
        let names = resolved
            .iter()
            .filter(|(t, _)| t.transport == Transport::Tls)
            .filter_map(|(t, addr)| Some(((*addr)?, t.host.clone())))
            .collect();
        let before = std::mem::replace(&mut self.shared.trunk_names.lock().outbound, names);
        let mut result = Ok(());
        self.shared
            .feed(|c| result = c.set_outbound_trunks(resolved, policy));
        if result.is_err() {
            self.shared.trunk_names.lock().outbound = before;
        }
        result
    }

    /// Replaces the trunks calls are taken from and the DID routes. Each
    /// source is an IP, `IP:port`, CIDR block or a host name (optionally
    /// `name:port`), resolved now to every address it has; an entry that
    /// is none of these or does not resolve is skipped with a warning.
    pub async fn set_inbound(
        &self,
        trunks: Vec<InboundTrunkSpec>,
        routes: std::sync::Arc<domain::dids::InboundRoutes>,
    ) {
        let mut ready = Vec::with_capacity(trunks.len());
        for t in trunks {
            let mut sources = Vec::new();
            for entry in &t.sources {
                match SourceMatch::parse(entry) {
                    Ok(m) => sources.push(m),
                    Err(_) => match resolve_all(entry).await {
                        Some(found) => sources.extend(found),
                        None => {
                            tracing::warn!(trunk = %t.name, %entry, "cannot resolve an inbound source of the trunk")
                        }
                    },
                }
            }
            ready.push(InboundTrunk {
                id: t.id,
                name: t.name,
                sources,
                digest: t.digest,
                contact_user: t.contact_user,
            });
        }
        self.shared.feed(|c| c.set_inbound(ready, routes));
    }

    /// Channels of trunk `id` in use now (calls ringing or up through it).
    pub fn trunk_channels_in_use(&self, id: i64) -> u32 {
        self.shared.core.lock().trunk_channels_in_use(id)
    }

    /// Every trunk's registration now, by key.
    pub fn trunk_statuses(&self) -> Vec<TrunkStatus> {
        self.shared.core.lock().trunk_statuses()
    }

    /// Trunk registration events from now on (a subscriber that falls more
    /// than a few hundred events behind is told it lagged).
    pub fn trunk_events(&self) -> broadcast::Receiver<TrunkEvent> {
        self.shared.trunk_events.subscribe()
    }

    /// Registers trunk `key` now ("force register"); false when unknown.
    pub fn force_trunk_registration(&self, key: &str) -> bool {
        let mut found = false;
        self.shared
            .feed(|c| found = c.force_trunk_registration(now_ms(), key));
        found
    }
}

/// The sender trunk events are published on.
pub(crate) fn channel() -> broadcast::Sender<TrunkEvent> {
    broadcast::channel(EVENT_BUFFER).0
}
