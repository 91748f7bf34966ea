//! The account cache (the auth_db role): accounts by username and by
//! extension, negative answers for a while, and requests parked while the
//! shell looks a missing account up (park and replay keeps the core sans-IO).

use super::msg::Msg;
use super::types::{Account, Lookup, Outbox, Output, Source};
use std::collections::HashMap;
use std::sync::Arc;

/// How long "no such account" is believed.
const NEGATIVE_TTL_MS: u64 = 10_000;
/// Parked requests beyond this are dropped (the clients retransmit).
const MAX_PARKED: usize = 20_000;

#[derive(Default)]
pub struct AccountCache {
    /// username -> (account, when it was loaded)
    accounts: HashMap<String, (Arc<Account>, u64)>,
    by_ext: HashMap<String, String>,
    negative: HashMap<Lookup, u64>,
    parked: HashMap<Lookup, Vec<(Source, Msg)>>,
    parked_count: usize,
}

/// What the cache knows about a key.
pub enum Found {
    Account(Arc<Account>),
    /// Known not to exist.
    Nobody,
    /// Being looked up: the request was parked (or dropped under overload).
    Parked,
}

impl AccountCache {
    pub fn insert(&mut self, a: Account, now_ms: u64) {
        self.negative.remove(&Lookup::Username(a.username.clone()));
        self.negative
            .remove(&Lookup::Extension(a.extension.clone()));
        if let Some((old, _)) = self.accounts.get(&a.username) {
            if old.extension != a.extension {
                self.by_ext.remove(&old.extension);
            }
        }
        self.by_ext.insert(a.extension.clone(), a.username.clone());
        self.accounts
            .insert(a.username.clone(), (Arc::new(a), now_ms));
    }

    /// Forgets an account; negative answers too, since a new agent may now
    /// answer to a name or extension remembered as unknown.
    pub fn forget(&mut self, username: &str) {
        if let Some((a, _)) = self.accounts.remove(username) {
            self.by_ext.remove(&a.extension);
        }
        self.negative.clear();
    }

    pub fn remember_unknown(&mut self, key: Lookup, now_ms: u64) {
        self.negative.insert(key, now_ms + NEGATIVE_TTL_MS);
    }

    /// When `key` was last found not to exist (while that is believed).
    pub fn unknown_since(&self, key: &Lookup) -> Option<u64> {
        self.negative
            .get(key)
            .map(|exp| exp.saturating_sub(NEGATIVE_TTL_MS))
    }

    /// Stops believing that `key` does not exist (the next use looks it up).
    pub fn forget_unknown(&mut self, key: &Lookup) {
        self.negative.remove(key);
    }

    /// The account answering to `key`, from the cache only.
    pub fn cached(&self, key: &Lookup) -> Option<&Arc<Account>> {
        let user = match key {
            Lookup::Username(u) => Some(u.as_str()),
            Lookup::Extension(e) => self.by_ext.get(e).map(String::as_str),
        };
        user.and_then(|u| self.accounts.get(u)).map(|(a, _)| a)
    }

    /// When `username` was loaded into the cache.
    pub fn loaded_at(&self, username: &str) -> Option<u64> {
        self.accounts.get(username).map(|(_, at)| *at)
    }

    pub fn extension_of(&self, username: &str) -> Option<&str> {
        self.accounts
            .get(username)
            .map(|(a, _)| a.extension.as_str())
    }

    /// Looks `key` up; on a miss `m` is parked and an [`Output::Lookup`]
    /// asks the shell (once per key), and the request is replayed by
    /// [`AccountCache::take_parked`] when the answer comes.
    pub fn find(
        &mut self,
        key: Lookup,
        now_ms: u64,
        src: Source,
        m: &Msg,
        out: &mut Outbox,
    ) -> Found {
        if let Some(a) = self.cached(&key) {
            return Found::Account(a.clone());
        }
        if self.negative.get(&key).is_some_and(|exp| *exp > now_ms) {
            return Found::Nobody;
        }
        if self.parked_count >= MAX_PARKED {
            return Found::Parked; // overloaded: dropped, the client retransmits
        }
        let list = self.parked.entry(key.clone()).or_default();
        if list.is_empty() {
            out.push_back(Output::Lookup(key));
        }
        list.push((src, m.clone()));
        self.parked_count += 1;
        Found::Parked
    }

    /// The requests parked on `key`, to replay (or drop when the lookup failed).
    pub fn take_parked(&mut self, key: &Lookup) -> Vec<(Source, Msg)> {
        let list = self.parked.remove(key).unwrap_or_default();
        self.parked_count -= list.len();
        list
    }

    pub fn purge(&mut self, now_ms: u64) {
        self.negative.retain(|_, exp| *exp > now_ms);
        super::compact::map(&mut self.negative);
        super::compact::map(&mut self.parked);
    }
}
