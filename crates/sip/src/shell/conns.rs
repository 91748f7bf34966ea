//! The table of stream connections (TCP, TLS and WebSocket flows): the
//! per-address and global caps, the deadlines that close idle connections,
//! and eviction of connections that never authenticated.
//!
//! Every connection holds one file descriptor, so an attacker who can open
//! connections faster than they close could take every descriptor of the
//! process (and with them the console, the API and the database). Three
//! rules prevent it:
//! - a connection that has not authenticated a request within
//!   `unauthenticated_timeout` of opening is closed, whatever it sends
//!   (CRLF pings or challenges do not keep a stranger alive);
//! - an authenticated connection is closed after `idle_timeout` without
//!   any inbound byte (a registered phone refreshes before its binding
//!   expires, so this only ends connections whose phone is gone);
//! - at most `max_total` connections exist; when a new one arrives at the
//!   cap, the oldest connection that never authenticated is closed to make
//!   room, so idle sockets cannot keep a real phone out. Only when every
//!   connection has authenticated is the new one refused.

use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Descriptors kept for everything that is not a SIP connection (HTTP
/// clients, the database, log files, listeners): a quarter of the limit,
/// at least 256.
const MIN_RESERVE: u64 = 256;

/// Upper bound of the derived cap: each connection also costs memory
/// (buffers, a task), so a huge descriptor limit is not an invitation to
/// hold a million idle sockets. `max_connections` may go beyond it.
const DERIVED_CAP_MAX: u64 = 65_536;

/// The cap derived from the process's open-file limit (`RLIMIT_NOFILE`
/// soft value): what is left after the reserve, bounded by
/// [`DERIVED_CAP_MAX`]. With the usual 1,024 it is 768.
pub(crate) fn derived_cap(nofile: u64) -> usize {
    let reserve = (nofile / 4).max(MIN_RESERVE);
    let cap = nofile.saturating_sub(reserve).clamp(1, DERIVED_CAP_MAX);
    usize::try_from(cap).unwrap_or(usize::MAX)
}

/// The soft open-file limit of this process, when it can be read.
pub(crate) fn nofile_limit() -> Option<u64> {
    rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft)
}

/// The global cap: `configured` (0 = derive) never above what the
/// descriptor limit allows.
pub(crate) fn effective_cap(configured: usize, nofile: Option<u64>) -> usize {
    let derived = nofile.map(derived_cap);
    match (configured, nofile) {
        (0, _) => derived.unwrap_or(DERIVED_CAP_MAX as usize),
        (n, Some(limit)) => {
            let most =
                usize::try_from(limit.saturating_sub(MIN_RESERVE).max(1)).unwrap_or(usize::MAX);
            if n > most {
                tracing::warn!(
                    configured = n,
                    open_file_limit = limit,
                    used = most,
                    "sip.max_connections exceeds what the open-file limit allows; lowered"
                );
            }
            n.min(most)
        }
        (n, None) => n,
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    pub max_per_ip: usize,
    pub max_total: usize,
    pub unauthenticated_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    PerAddress,
    Full,
}

/// What a connection's task holds: its id, whether it authenticated, the
/// signal that it was evicted, and its deadlines.
pub(crate) struct Ticket {
    pub id: u64,
    authenticated: Arc<AtomicBool>,
    evicted: Arc<Notify>,
    opened: Instant,
    limits: ConnLimits,
}

impl Ticket {
    /// When the connection is to be closed, given the last time a byte
    /// arrived on it.
    pub fn deadline(&self, last_inbound: Instant) -> Instant {
        if self.authenticated.load(Ordering::Relaxed) {
            last_inbound + self.limits.idle_timeout
        } else {
            self.opened + self.limits.unauthenticated_timeout
        }
    }

    /// When to look at a new connection first: its deadline, or one idle
    /// timeout from now if that is sooner (it may authenticate meanwhile
    /// and then be due sooner than while a stranger).
    pub fn first_check(&self) -> Instant {
        self.next_check(self.opened, self.deadline(self.opened))
    }

    /// When to look again at a connection due at `due` (after `now`).
    pub fn next_check(&self, now: Instant, due: Instant) -> Instant {
        due.min(now + self.limits.idle_timeout)
    }

    pub fn is_authenticated(&self) -> bool {
        self.authenticated.load(Ordering::Relaxed)
    }

    /// Resolves when the table evicted this connection to make room.
    pub async fn evicted(&self) {
        self.evicted.notified().await
    }
}

struct Entry {
    ip: IpAddr,
    authenticated: Arc<AtomicBool>,
    evicted: Arc<Notify>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<u64, Entry>,
    per_ip: HashMap<IpAddr, usize>,
    /// Connections that never authenticated; ids grow, so the first is the oldest.
    strangers: BTreeSet<u64>,
}

impl Inner {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.entries.remove(&id)?;
        self.strangers.remove(&id);
        if let Some(n) = self.per_ip.get_mut(&e.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&e.ip);
            }
        }
        Some(e)
    }

    /// Takes the oldest unauthenticated connection out of the table and
    /// tells its task to close.
    fn evict_oldest_stranger(&mut self) -> Option<IpAddr> {
        let id = self.strangers.pop_first()?;
        let e = self.remove(id)?;
        // notify_one keeps a permit if the task is not waiting right now.
        e.evicted.notify_one();
        Some(e.ip)
    }
}

pub(crate) struct Conns {
    limits: ConnLimits,
    inner: Mutex<Inner>,
    refusals: RateLimited,
    evictions: RateLimited,
}

impl Conns {
    pub fn new(limits: ConnLimits) -> Self {
        Conns {
            limits: ConnLimits {
                max_per_ip: limits.max_per_ip.max(1),
                max_total: limits.max_total.max(1),
                ..limits
            },
            inner: Mutex::new(Inner::default()),
            refusals: RateLimited::new(Duration::from_secs(1)),
            evictions: RateLimited::new(Duration::from_secs(1)),
        }
    }

    /// Admits connection `id` from `ip`; `trusted` for connections we opened
    /// ourselves (to a registered contact). At the global cap the oldest
    /// unauthenticated connection is evicted to make room.
    pub fn admit(&self, id: u64, ip: IpAddr, trusted: bool) -> Result<Ticket, Refused> {
        let mut evicted = None;
        let ticket = {
            let mut g = self.inner.lock();
            if g.per_ip.get(&ip).copied().unwrap_or(0) >= self.limits.max_per_ip {
                drop(g);
                self.refused(ip, Refused::PerAddress);
                return Err(Refused::PerAddress);
            }
            if g.entries.len() >= self.limits.max_total {
                match g.evict_oldest_stranger() {
                    Some(victim) => evicted = Some(victim),
                    None => {
                        drop(g);
                        self.refused(ip, Refused::Full);
                        return Err(Refused::Full);
                    }
                }
            }
            let authenticated = Arc::new(AtomicBool::new(trusted));
            let notify = Arc::new(Notify::new());
            g.entries.insert(
                id,
                Entry {
                    ip,
                    authenticated: authenticated.clone(),
                    evicted: notify.clone(),
                },
            );
            *g.per_ip.entry(ip).or_insert(0) += 1;
            if !trusted {
                g.strangers.insert(id);
            }
            Ticket {
                id,
                authenticated,
                evicted: notify,
                opened: Instant::now(),
                limits: self.limits,
            }
        };
        if let Some(victim) = evicted {
            if let Some(suppressed) = self.evictions.hit() {
                tracing::warn!(
                    %victim,
                    for_ip = %ip,
                    cap = self.limits.max_total,
                    suppressed,
                    "SIP connection cap reached: closed the oldest unauthenticated connection"
                );
            }
        }
        Ok(ticket)
    }

    /// Connection `id` authenticated a request: it is no longer evictable
    /// and gets the idle timeout instead of the unauthenticated one.
    pub fn authenticated(&self, id: u64) {
        let mut g = self.inner.lock();
        if g.strangers.remove(&id) {
            if let Some(e) = g.entries.get(&id) {
                e.authenticated.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Forgets connection `id` (closed, or its handshake failed). Does
    /// nothing for a connection that was evicted (already forgotten).
    pub fn release(&self, id: u64) {
        self.inner.lock().remove(id);
    }

    /// Closes the oldest unauthenticated connection, if any: called when
    /// the process ran out of descriptors, to free one.
    pub fn shed(&self) -> bool {
        self.inner.lock().evict_oldest_stranger().is_some()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    fn refused(&self, ip: IpAddr, why: Refused) {
        if let Some(suppressed) = self.refusals.hit() {
            match why {
                Refused::PerAddress => tracing::warn!(
                    %ip,
                    limit = self.limits.max_per_ip,
                    suppressed,
                    "SIP connection refused: too many connections from this address"
                ),
                Refused::Full => tracing::warn!(
                    %ip,
                    cap = self.limits.max_total,
                    suppressed,
                    "SIP connection refused: connection cap reached and every connection is authenticated"
                ),
            }
        }
    }
}

/// At most one log line per `every`; the line reports how many were
/// suppressed since the last one.
pub(crate) struct RateLimited {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimited {
    pub fn new(every: Duration) -> Self {
        RateLimited {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(suppressed)` when a line may be logged now.
    pub fn hit(&self) -> Option<u64> {
        let now = Instant::now();
        let mut s = self.state.lock();
        match s.0 {
            Some(last) if now.duration_since(last) < self.every => {
                s.1 += 1;
                None
            }
            _ => {
                let suppressed = s.1;
                *s = (Some(now), 0);
                Some(suppressed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_per_ip: usize, max_total: usize) -> ConnLimits {
        ConnLimits {
            max_per_ip,
            max_total,
            unauthenticated_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(3600),
        }
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
    }

    #[test]
    fn derived_cap_keeps_a_reserve() {
        assert_eq!(derived_cap(1024), 768);
        assert_eq!(derived_cap(256), 1);
        assert_eq!(derived_cap(4096), 3072);
        assert_eq!(derived_cap(1 << 20), DERIVED_CAP_MAX as usize);
        assert_eq!(effective_cap(0, Some(1024)), 768);
        assert_eq!(effective_cap(5000, Some(1024)), 768);
        assert_eq!(effective_cap(100, Some(1024)), 100);
    }

    #[tokio::test]
    async fn at_the_cap_the_oldest_stranger_is_evicted() {
        let c = Conns::new(limits(10, 3));
        let a = c.admit(1, ip(2), false).expect("a");
        let b = c.admit(2, ip(2), false).expect("b");
        let phone = c.admit(3, ip(3), false).expect("phone");
        c.authenticated(phone.id);
        assert!(phone.is_authenticated());
        let _d = c.admit(4, ip(4), false).expect("evicts a");
        tokio::time::timeout(Duration::from_secs(1), a.evicted())
            .await
            .expect("a evicted");
        assert_eq!(c.len(), 3);
        // a's task releasing later must not free someone else's slot.
        c.release(a.id);
        assert_eq!(c.len(), 3);
        let _e = c.admit(5, ip(5), false).expect("evicts b");
        tokio::time::timeout(Duration::from_secs(1), b.evicted())
            .await
            .expect("b evicted");
        // Only authenticated connections and newer strangers remain.
        let _f = c.admit(6, ip(6), false).expect("evicts 4");
        let _g = c.admit(7, ip(6), false).expect("evicts 5");
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn refused_when_every_connection_authenticated() {
        let c = Conns::new(limits(10, 2));
        for id in 1..=2 {
            let _t = c.admit(id, ip(2), false).expect("admit");
            c.authenticated(id);
        }
        assert_eq!(c.admit(3, ip(3), false).err(), Some(Refused::Full));
        c.release(1);
        assert!(c.admit(4, ip(3), false).is_ok());
    }

    #[test]
    fn per_address_limit() {
        let c = Conns::new(limits(2, 100));
        assert!(c.admit(1, ip(2), false).is_ok());
        assert!(c.admit(2, ip(2), false).is_ok());
        assert_eq!(c.admit(3, ip(2), false).err(), Some(Refused::PerAddress));
        assert!(c.admit(4, ip(3), false).is_ok());
        c.release(1);
        assert!(c.admit(5, ip(2), false).is_ok());
    }

    #[test]
    fn rate_limited_counts_what_it_suppressed() {
        let r = RateLimited::new(Duration::from_secs(3600));
        assert_eq!(r.hit(), Some(0));
        assert_eq!(r.hit(), None);
        assert_eq!(r.hit(), None);
        let r2 = RateLimited::new(Duration::ZERO);
        assert_eq!(r2.hit(), Some(0));
        assert_eq!(r2.hit(), Some(0));
    }
}
