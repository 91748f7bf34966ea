//! Login rate limiting, per key (an IP address or an account). Pure state
//! machine over explicit time, kept in memory: a restart forgets it, which
//! only gives an attacker one more window.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::LoginLimits;

#[derive(Debug, Clone, Default)]
struct Entry {
    /// Failure times (ms) inside the window.
    failures: Vec<i64>,
    blocked_until: i64,
    /// Blocks served so far; each doubles the next one.
    strikes: u32,
    last_seen: i64,
}

/// Most keys kept; beyond it the stalest are dropped.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Default)]
pub struct RateLimiter {
    limits: LoginLimits,
    entries: Mutex<HashMap<String, Entry>>,
}

impl RateLimiter {
    pub fn new(limits: LoginLimits) -> Self {
        Self {
            limits,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds until `key` may try again, or `None` if it may now.
    pub fn check(&self, key: &str, now_ms: i64) -> Option<u64> {
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let e = map.get(key)?;
        (e.blocked_until > now_ms)
            .then(|| ((e.blocked_until - now_ms) as u64).div_ceil(1000).max(1))
    }

    /// Records a failure; returns the block length in seconds if this
    /// failure started a block.
    pub fn fail(&self, key: &str, now_ms: i64) -> Option<u64> {
        let window = (self.limits.window_secs * 1000) as i64;
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            map.retain(|_, e| e.blocked_until > now_ms || e.last_seen > now_ms - window);
            if map.len() >= MAX_KEYS {
                return None;
            }
        }
        let e = map.entry(key.to_string()).or_default();
        e.last_seen = now_ms;
        e.failures.retain(|t| *t > now_ms - window);
        e.failures.push(now_ms);
        if e.failures.len() as u32 >= self.limits.max_failures.max(1) {
            let factor = 1u64 << e.strikes.min(16);
            let secs = self
                .limits
                .block_secs
                .saturating_mul(factor)
                .min(self.limits.max_block_secs)
                .max(1);
            e.blocked_until = now_ms + (secs * 1000) as i64;
            e.strikes = e.strikes.saturating_add(1);
            e.failures.clear();
            return Some(secs);
        }
        None
    }

    /// Forgets the failures of `key` (after a successful login). Strikes
    /// are kept so a later attack starts with a longer block, and a block
    /// running is kept: a login from an address the account trusts (see
    /// `AuthService`) must not lift the block for the attacker.
    pub fn succeed(&self, key: &str) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get_mut(key) {
            e.failures.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> RateLimiter {
        RateLimiter::new(LoginLimits {
            max_failures: 3,
            window_secs: 60,
            block_secs: 10,
            max_block_secs: 25,
        })
    }

    #[test]
    fn blocks_after_max_failures_and_backs_off() {
        let l = limiter();
        assert_eq!(l.fail("k", 0), None);
        assert_eq!(l.fail("k", 1000), None);
        assert_eq!(l.check("k", 1000), None);
        assert_eq!(l.fail("k", 2000), Some(10));
        assert_eq!(l.check("k", 2000), Some(10));
        assert_eq!(l.check("k", 11_500), Some(1));
        assert_eq!(l.check("k", 12_000), None);
        // second block is twice as long, third is capped
        for t in [13_000, 14_000] {
            assert_eq!(l.fail("k", t), None);
        }
        assert_eq!(l.fail("k", 15_000), Some(20));
        for t in [40_000, 41_000] {
            l.fail("k", t);
        }
        assert_eq!(l.fail("k", 42_000), Some(25));
        assert_eq!(l.check("other", 42_000), None);
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let l = limiter();
        l.fail("k", 0);
        l.fail("k", 1000);
        assert_eq!(l.fail("k", 70_000), None);
        l.succeed("k");
        assert_eq!(l.fail("k", 71_000), None);
    }
}
