//! Failed-authentication counting and temporary bans per source IP
//! ([`Guard`]), per-account protection against guessing spread over many
//! addresses ([`AccountGuard`]) and the scanner User-Agent filter.

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
    /// Failures recorded since start (metrics).
    pub failures_total: u64,
    /// Bans started since start (metrics).
    pub bans_total: u64,
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
            failures_total: 0,
            bans_total: 0,
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
        self.failures_total = self.failures_total.saturating_add(1);
        let e = self.entries.entry(ip).or_default();
        if now_ms.saturating_sub(e.window_start) > p.window_ms {
            e.window_start = now_ms;
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        if e.failures >= p.limit && e.banned_until <= now_ms {
            e.banned_until = now_ms + p.ban_ms;
            self.bans_total = self.bans_total.saturating_add(1);
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

/// Per-account protection: the IP ban alone lets an attacker spread its
/// guesses over many addresses (9 each from 17 addresses found a password).
#[derive(Debug, Clone, Copy)]
pub struct AccountPolicy {
    /// Failed authentications for one username, from addresses that never
    /// authenticated as it, within `window_ms` before the account is guarded.
    pub limit: u32,
    pub window_ms: u64,
    /// How long a guarded account refuses attempts from unknown addresses
    /// (403 without checking the digest, so guessing gains nothing).
    pub lock_ms: u64,
    /// How long an address that authenticated as an account is remembered.
    pub trust_ms: u64,
}

impl Default for AccountPolicy {
    fn default() -> Self {
        AccountPolicy {
            limit: 20,
            window_ms: 10 * 60_000,
            lock_ms: 15 * 60_000,
            trust_ms: 30 * 24 * 3_600_000,
        }
    }
}

/// Addresses remembered per account (the most recent ones win).
const TRUSTED_PER_ACCOUNT: usize = 16;
/// Usernames tracked at most (failures and trusted addresses each); beyond
/// it the stalest are swept first, then new names are not tracked.
const MAX_ACCOUNTS_TRACKED: usize = 100_000;

#[derive(Debug, Default, Clone, Copy)]
struct AccountEntry {
    window_start: u64,
    failures: u32,
    locked_until: u64,
}

/// What the account guard says about an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountCheck {
    /// Check the digest as usual.
    Allow,
    /// The account is guarded and this address never authenticated as it:
    /// refuse without checking.
    Refuse,
}

/// Failure counts per username (existing or not: unknown names are guarded
/// the same way, so a guard does not reveal which names exist) and the
/// addresses each account authenticated from, which keep working while the
/// account is guarded. Kept in memory: a restart forgets both, and restored
/// bindings give back the addresses of registered phones (see
/// [`AccountGuard::trust`]).
#[derive(Debug)]
pub struct AccountGuard {
    policy: AccountPolicy,
    entries: HashMap<String, AccountEntry>,
    /// username -> (address, last success)
    trusted: HashMap<String, Vec<(IpAddr, u64)>>,
    /// Attempts refused because their account was guarded.
    pub refused: u64,
    /// Guards started.
    pub locks: u64,
}

impl AccountGuard {
    pub fn new(policy: AccountPolicy) -> Self {
        AccountGuard {
            policy,
            entries: HashMap::new(),
            trusted: HashMap::new(),
            refused: 0,
            locks: 0,
        }
    }

    fn is_trusted(&self, user: &str, ip: IpAddr, now_ms: u64) -> bool {
        let ttl = self.policy.trust_ms;
        self.trusted.get(user).is_some_and(|l| {
            l.iter()
                .any(|(a, at)| *a == ip && now_ms.saturating_sub(*at) <= ttl)
        })
    }

    /// Whether an attempt for `user` from `ip` may be checked (counts refusals).
    pub fn check(&mut self, user: &str, ip: IpAddr, now_ms: u64) -> AccountCheck {
        let locked = self
            .entries
            .get(user)
            .is_some_and(|e| e.locked_until > now_ms);
        if locked && !self.is_trusted(user, ip, now_ms) {
            self.refused = self.refused.saturating_add(1);
            return AccountCheck::Refuse;
        }
        AccountCheck::Allow
    }

    /// A successful authentication: `ip` keeps working for `user` while the
    /// account is guarded.
    pub fn trust(&mut self, user: &str, ip: IpAddr, now_ms: u64) {
        if !self.trusted.contains_key(user) && self.trusted.len() >= MAX_ACCOUNTS_TRACKED {
            let ttl = self.policy.trust_ms;
            self.trusted.retain(|_, l| {
                l.retain(|(_, at)| now_ms.saturating_sub(*at) <= ttl);
                !l.is_empty()
            });
            if self.trusted.len() >= MAX_ACCOUNTS_TRACKED {
                return;
            }
        }
        let l = self.trusted.entry(user.to_string()).or_default();
        match l.iter_mut().find(|(a, _)| *a == ip) {
            Some(e) => e.1 = e.1.max(now_ms),
            None => {
                if l.len() >= TRUSTED_PER_ACCOUNT {
                    if let Some(oldest) = l
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, e)| e.1)
                        .map(|(i, _)| i)
                    {
                        l.swap_remove(oldest);
                    }
                }
                l.push((ip, now_ms));
            }
        }
    }

    /// Records a failed authentication for `user` from `ip`; true when it
    /// starts a guard. Failures from trusted addresses do not count (a
    /// phone with an old password must not lock its owner's other phones
    /// out; the IP ban deals with it).
    pub fn failure(&mut self, user: &str, ip: IpAddr, now_ms: u64) -> bool {
        if self.is_trusted(user, ip, now_ms) {
            return false;
        }
        let p = self.policy;
        if !self.entries.contains_key(user) && self.entries.len() >= MAX_ACCOUNTS_TRACKED {
            self.purge(now_ms);
            if self.entries.len() >= MAX_ACCOUNTS_TRACKED {
                return false;
            }
        }
        let e = self.entries.entry(user.to_string()).or_default();
        if now_ms.saturating_sub(e.window_start) > p.window_ms {
            e.window_start = now_ms;
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        if e.failures >= p.limit.max(1) && e.locked_until <= now_ms {
            e.locked_until = now_ms + p.lock_ms;
            e.failures = 0;
            e.window_start = now_ms;
            self.locks = self.locks.saturating_add(1);
            return true;
        }
        false
    }

    pub fn purge(&mut self, now_ms: u64) {
        let w = self.policy.window_ms;
        self.entries
            .retain(|_, e| e.locked_until > now_ms || now_ms.saturating_sub(e.window_start) <= w);
    }
}

/// User-Agents of SIP scanners dropped by default (case-insensitive
/// substrings): SIPVicious (`friendly-scanner` is its default UA),
/// sipcli, sip-scan, the VaxSIP SDK and sundayddr used by scanners.
pub const SCANNER_USER_AGENTS: &[&str] = &[
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "sip-scan",
    "VaxSIPUserAgent",
    "sundayddr",
    "iWar",
    "SIVuS",
];

/// Whether `ua` contains one of `patterns` (ASCII case-insensitive).
pub fn is_scanner(ua: &str, patterns: &[String]) -> bool {
    let ua = ua.to_ascii_lowercase();
    patterns
        .iter()
        .filter(|p| !p.is_empty())
        .any(|p| ua.contains(&p.to_ascii_lowercase()))
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

    fn policy() -> AccountPolicy {
        AccountPolicy {
            limit: 3,
            window_ms: 60_000,
            lock_ms: 120_000,
            trust_ms: 3_600_000,
        }
    }

    #[test]
    fn guarded_account_refuses_new_addresses_but_not_known_ones() {
        let mut g = AccountGuard::new(policy());
        let home: IpAddr = "192.0.2.1".parse().expect("literal");
        g.trust("alice", home, 0);
        // One guess from each of many addresses: no IP ban would see it.
        for i in 0..2u8 {
            assert!(!g.failure("alice", IpAddr::from([198, 51, 100, i]), 10));
        }
        assert!(g.failure("alice", IpAddr::from([198, 51, 100, 9]), 11));
        assert_eq!(g.locks, 1);
        let fresh = IpAddr::from([203, 0, 113, 7]);
        assert_eq!(g.check("alice", fresh, 12), AccountCheck::Refuse);
        assert_eq!(g.check("alice", home, 12), AccountCheck::Allow);
        assert_eq!(g.check("bob", fresh, 12), AccountCheck::Allow);
        assert_eq!(g.refused, 1);
        // Failures from a trusted address never count.
        g.trust("bob", home, 0);
        for t in 0..10 {
            assert!(!g.failure("bob", home, 20 + t));
        }
        // The guard ends on its own.
        assert_eq!(g.check("alice", fresh, 120_012), AccountCheck::Allow);
        g.purge(500_000);
        assert!(g.entries.is_empty());
    }

    #[test]
    fn scanner_user_agents_match_case_insensitively() {
        let list: Vec<String> = SCANNER_USER_AGENTS.iter().map(|s| s.to_string()).collect();
        assert!(is_scanner("friendly-scanner", &list));
        assert!(is_scanner("SIPVicious 0.3.4", &list));
        assert!(is_scanner("sipcli/v1.8", &list));
        assert!(is_scanner("VaxSIPUserAgent/3.1", &list));
        assert!(!is_scanner("JsSIP 3.10.1", &list));
        assert!(!is_scanner("baresip v1.0", &list));
        assert!(!is_scanner("anything", &[String::new()]));
    }
}
