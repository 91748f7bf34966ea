//! Failed-authentication counting and temporary bans per source IP.

use std::collections::HashMap;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy)]
pub struct BanPolicy {
    pub limit: u32,
    pub window_ms: u64,
    pub ban_ms: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    window_start: u64,
    failures: u32,
    banned_until: u64,
}

#[derive(Debug)]
pub struct Guard {
    policy: BanPolicy,
    entries: HashMap<IpAddr, Entry>,
}

/// A banned source as reported to admins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banned {
    pub ip: IpAddr,
    pub failures: u32,
    pub until_ms: u64,
}

impl Guard {
    pub fn new(policy: BanPolicy) -> Self {
        Guard {
            policy,
            entries: HashMap::new(),
        }
    }

    pub fn is_banned(&self, ip: IpAddr, now_ms: u64) -> bool {
        self.entries
            .get(&ip)
            .is_some_and(|e| e.banned_until > now_ms)
    }

    /// Records one failure; true when this failure starts a ban.
    pub fn failure(&mut self, ip: IpAddr, now_ms: u64) -> bool {
        let p = self.policy;
        let e = self.entries.entry(ip).or_default();
        if now_ms.saturating_sub(e.window_start) > p.window_ms {
            e.window_start = now_ms;
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        if e.failures >= p.limit && e.banned_until <= now_ms {
            e.banned_until = now_ms + p.ban_ms;
            return true;
        }
        false
    }

    pub fn banned(&self, now_ms: u64) -> Vec<Banned> {
        self.entries
            .iter()
            .filter(|(_, e)| e.banned_until > now_ms)
            .map(|(ip, e)| Banned {
                ip: *ip,
                failures: e.failures,
                until_ms: e.banned_until,
            })
            .collect()
    }

    /// Lifts a ban and forgets the source's failures (an admin decision);
    /// true when the source was known.
    pub fn forgive(&mut self, ip: IpAddr) -> bool {
        self.entries.remove(&ip).is_some()
    }

    pub fn purge(&mut self, now_ms: u64) {
        let w = self.policy.window_ms;
        self.entries
            .retain(|_, e| e.banned_until > now_ms || now_ms.saturating_sub(e.window_start) <= w);
        super::compact::map(&mut self.entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgiven_source_is_no_longer_banned_and_starts_afresh() {
        let mut g = Guard::new(BanPolicy {
            limit: 2,
            window_ms: 60_000,
            ban_ms: 300_000,
        });
        let ip: IpAddr = "192.0.2.9".parse().expect("literal");
        g.failure(ip, 0);
        assert!(g.failure(ip, 1));
        assert!(g.is_banned(ip, 2));
        assert!(g.forgive(ip));
        assert!(!g.is_banned(ip, 3));
        assert!(
            !g.failure(ip, 4),
            "one failure after forgiveness is not a ban"
        );
        assert!(!g.forgive("192.0.2.10".parse().expect("literal")));
    }

    #[test]
    fn bans_after_limit_within_window_and_expires() {
        let mut g = Guard::new(BanPolicy {
            limit: 3,
            window_ms: 10_000,
            ban_ms: 60_000,
        });
        let ip: IpAddr = [10, 0, 0, 1].into();
        assert!(!g.failure(ip, 0));
        assert!(!g.failure(ip, 1));
        // Window restarts: the old failures no longer count.
        assert!(!g.failure(ip, 20_000));
        assert!(!g.failure(ip, 20_001));
        assert!(g.failure(ip, 20_002));
        assert!(g.is_banned(ip, 30_000));
        assert_eq!(g.banned(30_000).len(), 1);
        assert!(!g.is_banned(ip, 80_003));
        g.purge(200_000);
        assert!(g.banned(200_000).is_empty());
    }
}
