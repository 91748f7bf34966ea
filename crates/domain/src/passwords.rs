//! Console password hashing with argon2 (PHC strings). Hashing is CPU and
//! memory bound (19 MiB per hash with the default parameters), so it runs
//! on the blocking pool behind a small fixed number of permits
//! ([`HashPool`]): a login flood cannot take more than those permits' worth
//! of CPU and memory, and attempts that cannot get one quickly are refused
//! (`DomainError::Busy`, 503 with Retry-After) instead of queueing without
//! bound. The memory of a finished hash is freed; the binary's allocator
//! (jemalloc with background threads) hands it back to the system.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::OnceCell;

use argon2::{
    password_hash::{PasswordHasher, PasswordVerifier},
    Argon2, Params,
};

use crate::{DomainError, PasswordCost};

/// How many password hashes may run at once and how long a login waits
/// for its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashLimits {
    /// Hashes computed at once (each uses a core and 19 MiB).
    pub concurrency: usize,
    /// Logins waiting for a permit beyond this are refused at once.
    pub max_waiting: usize,
    /// A login waiting longer than this for a permit is refused.
    pub max_wait: Duration,
}

impl Default for HashLimits {
    fn default() -> Self {
        // Two at most, one on a single-core machine: the rest of the server
        // (SIP, API) keeps a core even during a login flood.
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            concurrency: cpus.clamp(1, 2),
            max_waiting: 16,
            max_wait: Duration::from_millis(500),
        }
    }
}

/// Figures of the hash pool, for tests and status pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HashStats {
    /// Hashes running now.
    pub running: usize,
    /// Most hashes that ever ran at once.
    pub peak: usize,
    /// Verifications refused because the pool was busy.
    pub refused: u64,
}

/// The permits behind every password hash of one set of services.
#[derive(Debug)]
pub struct HashPool {
    limits: HashLimits,
    permits: tokio::sync::Semaphore,
    /// One more permit, only for logins from an address that logged in as
    /// that account before: a flood must not keep the admin out.
    reserved: tokio::sync::Semaphore,
    waiting: AtomicUsize,
    running: AtomicUsize,
    peak: AtomicUsize,
    refused: AtomicU64,
}

/// How a hash gets its permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// Waits as long as it takes (hashing a new password: an admin's action).
    Wait,
    /// A login: refused when too many wait or the wait is too long.
    Bounded,
    /// A login from an address that logged in as that account before.
    Trusted,
}

/// Counts one running hash while alive.
struct Running<'a>(&'a HashPool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts one waiter while alive.
struct Waiting<'a>(&'a HashPool);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

impl HashPool {
    pub fn new(limits: HashLimits) -> Self {
        Self {
            limits,
            permits: tokio::sync::Semaphore::new(limits.concurrency.max(1)),
            reserved: tokio::sync::Semaphore::new(1),
            waiting: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> HashStats {
        HashStats {
            running: self.running.load(Ordering::SeqCst),
            peak: self.peak.load(Ordering::SeqCst),
            refused: self.refused.load(Ordering::SeqCst),
        }
    }

    fn busy(&self) -> DomainError {
        self.refused.fetch_add(1, Ordering::SeqCst);
        DomainError::Busy {
            retry_after_secs: 1,
        }
    }

    /// Runs `f` on the blocking pool once a permit is free; with `bounded`,
    /// gives up (Busy) when too many wait or the wait is too long.
    async fn run<T: Send + 'static>(
        &self,
        turn: Turn,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, DomainError> {
        let permit = if turn == Turn::Trusted {
            // A free shared permit, else the reserved one (waiting longer:
            // only trusted logins queue there).
            match self.permits.try_acquire() {
                Ok(p) => p,
                Err(_) => {
                    let wait = self.limits.max_wait.saturating_mul(4);
                    match tokio::time::timeout(wait, self.reserved.acquire()).await {
                        Ok(Ok(p)) => p,
                        Ok(Err(e)) => {
                            return Err(DomainError::Internal(format!("hash permits: {e}")))
                        }
                        Err(_) => return Err(self.busy()),
                    }
                }
            }
        } else if turn == Turn::Bounded {
            let queued = self.waiting.fetch_add(1, Ordering::SeqCst);
            let _waiting = Waiting(self);
            if queued >= self.limits.max_waiting {
                return Err(self.busy());
            }
            match tokio::time::timeout(self.limits.max_wait, self.permits.acquire()).await {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => return Err(DomainError::Internal(format!("hash permits: {e}"))),
                Err(_) => return Err(self.busy()),
            }
        } else {
            self.permits
                .acquire()
                .await
                .map_err(|e| DomainError::Internal(format!("hash permits: {e}")))?
        };
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        let _running = Running(self);
        self.peak.fetch_max(now, Ordering::SeqCst);
        let out = tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| DomainError::Internal(format!("hash task: {e}")));
        drop(permit);
        out
    }

    /// Hashes `password` into a PHC string (waits for a permit: this is an
    /// authenticated admin's action, never a flood).
    pub async fn hash(&self, cost: PasswordCost, password: &str) -> Result<String, DomainError> {
        let pw = password.to_owned();
        self.run(Turn::Wait, move || {
            hasher(cost)
                .hash_password(pw.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| DomainError::Internal(format!("password hashing failed: {e}")))
        })
        .await?
    }

    /// Checks `password` against a PHC string (its own parameters apply);
    /// `Busy` when no permit came in time.
    pub async fn verify(&self, password: &str, phc: &str) -> Result<bool, DomainError> {
        self.verify_as(false, password, phc).await
    }

    /// Like [`HashPool::verify`]; `trusted` (the address logged in as this
    /// account before) may also use the reserved permit.
    pub async fn verify_as(
        &self,
        trusted: bool,
        password: &str,
        phc: &str,
    ) -> Result<bool, DomainError> {
        let pw = password.to_owned();
        let phc = phc.to_owned();
        let turn = if trusted {
            Turn::Trusted
        } else {
            Turn::Bounded
        };
        self.run(turn, move || {
            Argon2::default()
                .verify_password(pw.as_bytes(), phc.as_str())
                .is_ok()
        })
        .await
    }

    /// A hash of a random password with the configured cost, verified
    /// against when the login is unknown so that unknown and known logins
    /// take the same time.
    pub async fn dummy_hash(&self, cost: PasswordCost) -> &'static str {
        // One initialiser, the others wait for it: a flood of unknown
        // logins right after start must not compute one dummy hash each.
        static DEFAULT: OnceCell<String> = OnceCell::const_new();
        static CHEAP: OnceCell<String> = OnceCell::const_new();
        let cell = match cost {
            PasswordCost::Argon2Default => &DEFAULT,
            PasswordCost::TestOnlyCheap => &CHEAP,
        };
        cell.get_or_init(|| async {
            self.hash(cost, &crate::sip_credentials::random_hex(16))
                .await
                .unwrap_or_default()
        })
        .await
    }
}

fn hasher(cost: PasswordCost) -> Argon2<'static> {
    match cost {
        PasswordCost::Argon2Default => Argon2::default(),
        PasswordCost::TestOnlyCheap => match Params::new(8, 1, 1, None) {
            Ok(p) => Argon2::from(p),
            Err(_) => Argon2::default(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn at_most_the_permits_run_and_the_excess_is_refused_quickly() {
        let pool = std::sync::Arc::new(HashPool::new(HashLimits {
            concurrency: 1,
            max_waiting: 2,
            max_wait: Duration::from_millis(300),
        }));
        let phc = pool
            .hash(PasswordCost::Argon2Default, "right")
            .await
            .expect("hash");
        let started = std::time::Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..24 {
            let (pool, phc) = (pool.clone(), phc.clone());
            tasks.push(tokio::spawn(async move {
                let t = std::time::Instant::now();
                (pool.verify("wrong", &phc).await, t.elapsed())
            }));
        }
        // While the flood runs, a login from an address the account trusts
        // gets the reserved permit instead of a 503.
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(pool.stats().running >= 1, "the flood is running");
        let trusted = pool.verify_as(true, "right", &phc).await;
        assert_eq!(trusted.ok(), Some(true), "trusted login during the flood");
        let (mut busy, mut checked) = (0, 0);
        for t in tasks {
            let (r, took) = t.await.expect("task");
            match r {
                Ok(ok) => {
                    assert!(!ok);
                    checked += 1;
                }
                Err(DomainError::Busy { retry_after_secs }) => {
                    assert!(retry_after_secs >= 1);
                    // Refused within the wait bound (plus scheduling slack),
                    // not after the whole queue.
                    assert!(took < Duration::from_secs(2), "refused after {took:?}");
                    busy += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
        let s = pool.stats();
        // One shared permit plus the reserved one.
        assert_eq!(s.peak, 2, "{s:?}");
        assert_eq!(s.running, 0);
        assert!(busy > 0 && checked > 0, "busy {busy}, checked {checked}");
        assert_eq!(s.refused, busy);
        assert!(started.elapsed() < Duration::from_secs(10));
        // Once the flood is over, a login gets through.
        assert_eq!(pool.verify("right", &phc).await.ok(), Some(true));
    }
}
