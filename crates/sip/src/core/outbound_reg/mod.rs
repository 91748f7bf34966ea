//! Outbound registration of SIP trunks: centralita registering to a
//! carrier's registrar as a client, one binding per trunk.
//!
//! Sans-IO like the rest of `core`: no sockets, no clock (every input takes
//! `now_ms`), randomness from the core's seeded generator. The endpoint
//! owns one [`OutboundRegs`] and routes to it every response whose top Via
//! branch starts with [`BRANCH_PREFIX`] (see [`OutboundRegs::owns`]).
//!
//! Behaviour (after Asterisk's `res_pjsip_outbound_registration`, see
//! `shared/research/trunks-media.md` §D1, with exponential backoff added):
//! - one Call-ID and From tag per binding, kept across refreshes; CSeq
//!   grows; a new Via branch per transaction; Contact
//!   `<sip:contact_user@our host:port>;expires=N` plus `Expires: N`;
//! - 401/407 answered once per attempt (an attempt is a REGISTER and the
//!   requests that answer its challenges); a second challenge to an
//!   answered request is `Rejected` (no loop), unless it says `stale=true`,
//!   which is answered once more; the last challenge is reused with a
//!   growing nonce count on refreshes (pre-emptive credentials), and a
//!   registrar that no longer accepts it just challenges again;
//! - 200: `Registered` with the granted expiry (our Contact's `expires`,
//!   else `Expires`), refreshed at `max(expires/2, expires-30 s)`, never
//!   later than `expires-5 s` ([`refresh_after`]);
//! - 423: once more with its `Min-Expires` (kept for later refreshes);
//! - 403: `Rejected`, retried after `forbidden_retry_secs` when non-zero;
//!   other 4xx (except 408 and 480): `Rejected` for good;
//! - no answer within 32 s (timer F; UDP retransmits per timer E), 408,
//!   480, 5xx, 6xx, a lost TCP connection: `Failed`, retried after
//!   `retry_interval * 2^(failures-1)` ±20 % ([`backoff_ms`]), or after
//!   `Retry-After` on 480/500/503; `max_retries` failures in a row (0:
//!   never) stop the retries;
//! - the first REGISTER of trunks added together is spread over up to
//!   500 ms per trunk (at most 10 s), so a restart does not send every
//!   trunk's REGISTER in the same millisecond;
//! - a removed or changed trunk, and every trunk at shutdown, unregisters
//!   (`Expires: 0` on its own Contact only).
//!
//! Run-loop contract: after any input ([`OutboundRegs::set`],
//! [`OutboundRegs::handle_response`], [`OutboundRegs::handle_timeout`],
//! [`OutboundRegs::handle_transport_lost`], [`OutboundRegs::force`],
//! [`OutboundRegs::shutdown`]) drain [`OutboundRegs::poll_transmit`] and
//! [`OutboundRegs::poll_event`], and call `handle_timeout` again no later
//! than [`OutboundRegs::poll_timeout`].

pub(crate) mod client_auth;
mod settings;
#[cfg(test)]
mod tests;
mod trunk;

pub use settings::{Target, TrunkConfigError, TrunkRegistration};

use super::msg::{Msg, Start};
use super::rng::Rng;
use super::txn::T2;
use super::types::{Source, Transport, UDP_FLOW};
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use trunk::{Attempt, Trunk};

/// Via branches of our REGISTERs start with this (`tr-` cannot follow
/// `z9hG4bK` in the branches calls make, which are hex).
pub const BRANCH_PREFIX: &str = "z9hG4bKtr-";
/// Longest backoff step, unless the retry interval itself is longer.
const MAX_BACKOFF_MS: u64 = 3_600_000;
/// Start-up spread per trunk added at once, and its cap (Asterisk's
/// `max_random_initial_delay` is 10 s).
const STAGGER_PER_TRUNK_MS: u64 = 500;
const MAX_STAGGER_MS: u64 = 10_000;
/// A Retry-After longer than a day is taken as a day.
const MAX_RETRY_AFTER_SECS: u64 = 86_400;

/// Where a trunk's registration stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrunkRegState {
    /// Added, waiting for its first REGISTER (start-up spread).
    Idle,
    /// A REGISTER is out and nothing was granted yet.
    Registering,
    /// The registrar holds our binding for `expires_secs` from the last
    /// success (a refresh in flight does not change this state).
    Registered {
        expires_secs: u32,
    },
    /// The registrar refused us (credentials refused, 403, other 4xx).
    Rejected {
        code: u16,
        reason: String,
    },
    /// No answer, a server failure or a lost connection.
    Failed {
        reason: String,
    },
    /// Unregistering (shutdown).
    Unregistering,
    Unregistered,
}

/// What happened to a trunk's registration: one event per outcome (every
/// successful refresh too, so "last registered at" can follow it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrunkEventKind {
    Registered {
        expires_secs: u32,
    },
    Rejected {
        code: u16,
        reason: String,
        /// When the next attempt is made; `None`: no more attempts until
        /// the settings change or a forced registration.
        retry_at_ms: Option<u64>,
    },
    Failed {
        reason: String,
        retry_at_ms: Option<u64>,
    },
    /// Unregistered, or removed from the set.
    Unregistered,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkEvent {
    pub key: String,
    pub at_ms: u64,
    pub kind: TrunkEventKind,
}

/// A trunk's registration as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkStatus {
    pub key: String,
    pub state: TrunkRegState,
    /// When `state` was entered.
    pub since_ms: u64,
    /// The last successful registration.
    pub registered_at_ms: Option<u64>,
    /// When the binding granted last expires at the registrar.
    pub expires_at_ms: Option<u64>,
    /// The next REGISTER (refresh or retry), if one is planned.
    pub next_attempt_ms: Option<u64>,
    /// Failed attempts in a row.
    pub failures: u32,
}

/// Bytes to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: Source,
    pub data: Vec<u8>,
}

/// Our side of the wire, shared by every trunk.
struct Io {
    rng: Rng,
    /// host:port in Via and Contact (the same port for UDP and TCP).
    local_host: String,
    /// host:port of our TLS listener, in Via and Contact over TLS; none
    /// when there is no listener (then `local_host`, the advertised host:
    /// the carrier answers over the connection we opened anyway).
    tls_host: Option<String>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TrunkEvent>,
}

impl Io {
    /// Our host:port in Via and Contact over `t`.
    fn host_for(&self, t: Transport) -> &str {
        match (t, &self.tls_host) {
            (Transport::Tls, Some(h)) => h,
            _ => &self.local_host,
        }
    }
}

/// Every trunk's registration.
pub struct OutboundRegs {
    trunks: Vec<Trunk>,
    io: Io,
}

/// Seconds after a success at which the binding is refreshed.
pub fn refresh_after(granted_secs: u32) -> u32 {
    let g = granted_secs;
    (g / 2)
        .max(g.saturating_sub(30))
        .min(g.saturating_sub(5))
        .max(1)
}

/// Delay before retry number `failures` (1 for the first failure):
/// `retry_interval * 2^(failures-1)`, capped at an hour (or the interval
/// when longer), times a factor drawn from [0.8, 1.2] so that trunks that
/// failed together do not retry together.
pub fn backoff_ms(retry_interval_secs: u32, failures: u32, rng_value: u64) -> u64 {
    let base = u64::from(retry_interval_secs) * 1000;
    let cap = base.max(MAX_BACKOFF_MS);
    let step = base
        .saturating_mul(1u64 << failures.saturating_sub(1).min(32))
        .min(cap);
    let permille = 800 + rng_value % 401;
    step.saturating_mul(permille) / 1000
}

impl OutboundRegs {
    /// `local_host`: host:port we put in Via and Contact (never 0.0.0.0).
    pub fn new(seed: u64, local_host: String) -> Self {
        OutboundRegs {
            trunks: Vec::new(),
            io: Io {
                rng: Rng::new(seed),
                local_host,
                tls_host: None,
                transmits: VecDeque::new(),
                events: VecDeque::new(),
            },
        }
    }

    /// Our TLS listener's host:port, for Via and Contact of registrations
    /// over TLS (none: `local_host`).
    pub fn with_tls_host(mut self, tls_host: Option<String>) -> Self {
        self.io.tls_host = tls_host;
        self
    }

    // ---- outputs and getters ----

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.io.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TrunkEvent> {
        self.io.events.pop_front()
    }

    /// The next instant `handle_timeout` must be called, if any.
    pub fn poll_timeout(&self) -> Option<u64> {
        let waiting = self.waiting_keys();
        self.trunks
            .iter()
            .flat_map(|t| {
                let p = t.pending.as_ref();
                [
                    p.and_then(|p| p.retrans_at),
                    p.map(|p| p.deadline),
                    t.next_at.filter(|_| !waiting.contains(t.cfg.key.as_str())),
                ]
            })
            .flatten()
            .min()
    }

    /// Whether a response with this top Via branch is one of ours.
    pub fn owns(branch: &str) -> bool {
        branch.starts_with(BRANCH_PREFIX)
    }

    /// The registration of every trunk in the set, by key.
    pub fn statuses(&self) -> Vec<TrunkStatus> {
        let mut v: Vec<TrunkStatus> = self
            .trunks
            .iter()
            .filter(|t| !t.leaving)
            .map(|t| TrunkStatus {
                key: t.cfg.key.clone(),
                state: t.state.clone(),
                since_ms: t.since_ms,
                registered_at_ms: t.registered_at_ms,
                expires_at_ms: t.expires_at_ms,
                next_attempt_ms: t.next_at,
                failures: t.failures,
            })
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }

    // ---- inputs ----

    /// Replaces the set of trunks. Each comes with the registrar's address
    /// (resolved by the caller; `None`: it could not be, and the trunk is
    /// `Failed` until set again). Unchanged trunks carry on; removed ones
    /// unregister; changed ones unregister the old binding and register
    /// anew once it is gone; new ones register, spread over a few
    /// seconds. On an error nothing changes.
    pub fn set(
        &mut self,
        now_ms: u64,
        regs: Vec<(TrunkRegistration, Option<SocketAddr>)>,
    ) -> Result<(), TrunkConfigError> {
        let mut seen = BTreeSet::new();
        let mut checked = Vec::with_capacity(regs.len());
        for (r, addr) in regs {
            let target = r.target()?;
            if !seen.insert(r.key.clone()) {
                return Err(TrunkConfigError::Duplicate(r.key));
            }
            checked.push((r, target, addr));
        }
        // Removed, or changed (the old binding leaves quietly).
        let mut kept = BTreeSet::new();
        for i in 0..self.trunks.len() {
            let t = &self.trunks[i];
            if t.leaving {
                continue;
            }
            let same = checked
                .iter()
                .any(|(r, _, addr)| *r == t.cfg && *addr == t.to.map(|s| s.peer) && !t.stopping);
            if same {
                kept.insert(t.cfg.key.clone());
                continue;
            }
            let removed = !seen.contains(&t.cfg.key);
            let key = t.cfg.key.clone();
            self.leave(now_ms, i);
            if removed {
                self.io.events.push_back(TrunkEvent {
                    key,
                    at_ms: now_ms,
                    kind: TrunkEventKind::Unregistered,
                });
            }
        }
        self.trunks.retain(|t| !(t.leaving && t.pending.is_none()));
        let fresh = checked
            .iter()
            .filter(|(r, _, _)| {
                !kept.contains(&r.key) && !self.trunks.iter().any(|t| t.cfg.key == r.key)
            })
            .count() as u64;
        let spread = (fresh.saturating_sub(1) * STAGGER_PER_TRUNK_MS).min(MAX_STAGGER_MS);
        for (r, target, addr) in checked {
            if kept.contains(&r.key) {
                continue;
            }
            // A changed trunk registers as soon as its old binding is gone
            // (see `waiting_keys`), not after a start-up spread.
            let changed = self.trunks.iter().any(|t| t.cfg.key == r.key);
            let delay = if changed || spread == 0 {
                0
            } else {
                self.io.rng.next() % (spread + 1)
            };
            let to = addr.map(|peer| Source {
                flow: UDP_FLOW,
                transport: r.transport,
                peer,
            });
            let call_id = format!("{}@{}", self.io.rng.token(), self.io.local_host);
            let from_tag = self.io.rng.token();
            self.trunks.push(Trunk {
                expires: r.expires_secs,
                cfg: r,
                target,
                to,
                call_id,
                from_tag,
                cseq: 0,
                state: TrunkRegState::Idle,
                since_ms: now_ms,
                pending: None,
                next_at: Some(now_ms + delay),
                failures: 0,
                auth: None,
                registered_at_ms: None,
                expires_at_ms: None,
                maybe_bound: false,
                leaving: false,
                stopping: false,
            });
        }
        Ok(())
    }

    /// Registers `key` now, whatever its state (an operator's "force
    /// register", or settings fixed elsewhere); the failure count restarts.
    /// False when there is no such trunk.
    pub fn force(&mut self, now_ms: u64, key: &str) -> bool {
        let Some(t) = self
            .trunks
            .iter_mut()
            .find(|t| !t.leaving && !t.stopping && t.cfg.key == key)
        else {
            return false;
        };
        t.failures = 0;
        if t.pending.is_none() {
            t.next_at = Some(now_ms);
        }
        true
    }

    /// A response whose branch [`OutboundRegs::owns`]. Responses to
    /// transactions no longer in flight (late retransmissions) are ignored.
    pub fn handle_response(&mut self, now_ms: u64, m: &Msg) {
        let Start::Response { code, reason } = &m.start else {
            return;
        };
        let (cseq, method) = m.cseq();
        let Some(i) = self.trunks.iter().position(|t| {
            t.pending.as_ref().is_some_and(|p| {
                p.branch == m.top_branch()
                    && p.cseq == cseq
                    && method.eq_ignore_ascii_case("REGISTER")
                    && t.call_id == m.call_id()
            })
        }) else {
            return;
        };
        let code = *code;
        let io = &mut self.io;
        let t = &mut self.trunks[i];
        if code < 200 {
            // A provisional: the registrar is working on it; retransmit
            // at T2 only (RFC 3261 17.1.2.2), timer F still runs.
            if let Some(p) = t.pending.as_mut() {
                if p.retrans_at.is_some() {
                    p.interval = T2;
                    p.retrans_at = Some(now_ms + T2);
                }
            }
            return;
        }
        let Some(p) = t.pending.take() else {
            return;
        };
        let reason = format!("{code} {reason}");
        match code {
            401 | 407 => t.challenged(io, now_ms, m, code, &reason, p),
            _ if p.expires == 0 => {
                if (200..300).contains(&code) {
                    t.maybe_bound = false;
                }
                t.unregistered(io, now_ms);
            }
            200..=299 => {
                let granted = t.granted(io, m, p.expires);
                if granted == 0 {
                    t.fail(
                        io,
                        now_ms,
                        "the registrar kept no binding (expires=0)".into(),
                        None,
                    );
                } else {
                    t.registered(io, now_ms, granted);
                }
            }
            423 => {
                let min = m
                    .header("Min-Expires")
                    .and_then(|v| v.trim().parse::<u32>().ok())
                    .unwrap_or(0);
                if min > p.expires {
                    t.expires = min;
                    t.send(io, now_ms, min, p.attempt);
                } else {
                    t.fail(
                        io,
                        now_ms,
                        format!("{reason} without a longer Min-Expires"),
                        None,
                    );
                }
            }
            403 => {
                let retry = t.cfg.forbidden_retry_secs;
                t.reject(io, now_ms, code, reason, retry);
            }
            408 | 480 | 500..=699 => {
                let retry_after = matches!(code, 480 | 500 | 503)
                    .then(|| m.header("Retry-After"))
                    .flatten()
                    .and_then(|v| v.split([';', '(']).next())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .filter(|s| *s > 0);
                t.fail(io, now_ms, reason, retry_after);
            }
            _ => t.reject(io, now_ms, code, reason, 0),
        }
        self.drop_finished();
    }

    /// Retransmissions, timeouts, refreshes and retries that are due.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let waiting: BTreeSet<String> = self
            .waiting_keys()
            .into_iter()
            .map(str::to_string)
            .collect();
        let io = &mut self.io;
        for t in &mut self.trunks {
            if let Some(p) = t.pending.as_mut() {
                if p.deadline <= now_ms {
                    let p = t.pending.take();
                    if p.is_some_and(|p| p.expires == 0) {
                        t.unregistered(io, now_ms);
                    } else {
                        t.fail(io, now_ms, "no answer from the registrar".into(), None);
                    }
                } else if p.retrans_at.is_some_and(|at| at <= now_ms) {
                    if let Some(to) = t.to {
                        io.transmits.push_back(Transmit {
                            to,
                            data: p.data.clone(),
                        });
                    }
                    p.interval = (p.interval * 2).min(T2);
                    p.retrans_at = Some(now_ms + p.interval);
                }
            }
            if t.pending.is_none()
                && t.next_at.is_some_and(|at| at <= now_ms)
                && !waiting.contains(&t.cfg.key)
            {
                t.next_at = None;
                t.attempt(io, now_ms);
            }
        }
        self.drop_finished();
    }

    /// The connection to `to` (a TCP registrar) failed or closed: the
    /// transaction in flight on it fails now instead of at timer F.
    pub fn handle_transport_lost(&mut self, now_ms: u64, to: Source) {
        let io = &mut self.io;
        for t in &mut self.trunks {
            if t.to != Some(to) {
                continue;
            }
            if let Some(p) = t.pending.take() {
                if p.expires == 0 {
                    t.unregistered(io, now_ms);
                } else {
                    t.fail(
                        io,
                        now_ms,
                        "the connection to the registrar was lost".into(),
                        None,
                    );
                }
            }
        }
        self.drop_finished();
    }

    /// The server is stopping: every trunk that may hold a binding
    /// unregisters, and nothing is retried any more.
    pub fn shutdown(&mut self, now_ms: u64) {
        for i in 0..self.trunks.len() {
            let io = &mut self.io;
            let t = &mut self.trunks[i];
            if t.stopping || t.leaving {
                continue;
            }
            t.stopping = true;
            t.next_at = None;
            if t.maybe_bound || t.pending.is_some() {
                t.set_state(now_ms, TrunkRegState::Unregistering);
                t.send(io, now_ms, 0, Attempt::default());
            } else {
                t.unregistered(io, now_ms);
            }
        }
    }

    // ---- internals ----

    /// Trunk `i` was removed or replaced: it unregisters quietly when it
    /// may hold a binding, else it is dropped.
    fn leave(&mut self, now_ms: u64, i: usize) {
        let io = &mut self.io;
        let t = &mut self.trunks[i];
        t.leaving = true;
        t.next_at = None;
        if (t.maybe_bound || t.pending.is_some()) && t.to.is_some() {
            t.send(io, now_ms, 0, Attempt::default());
        } else {
            t.pending = None;
        }
    }

    /// Keys whose old binding is still being removed: their new
    /// registration waits for that to end. Sent together, the old
    /// binding's `Expires: 0` could reach the registrar after the new
    /// REGISTER, and a registrar removes a contact whatever Call-ID asks
    /// (RFC 3261 10.3), taking the new binding with it.
    fn waiting_keys(&self) -> BTreeSet<&str> {
        self.trunks
            .iter()
            .filter(|t| t.leaving && t.pending.is_some())
            .map(|t| t.cfg.key.as_str())
            .collect()
    }

    fn drop_finished(&mut self) {
        self.trunks.retain(|t| !(t.leaving && t.pending.is_none()));
    }
}
