//! Digest authentication policy (the auth + auth_db roles): which challenge
//! a client gets, checking its answer against the cached account, the
//! failure counts behind bans (per address) and account guards (per
//! username). The mechanism (nonces, hashes) is `digest.rs`.
//!
//! Existing and unknown usernames take the same path and the same time: the
//! same number of responses is computed (`digest::MIN_SECRETS_CHECKED`),
//! and an unknown name is looked up again after the same delay a known
//! account with a failed check is reloaded after.

use super::accounts::{AccountCache, Found};
use super::digest::{self, Ha1, NonceKeeper, Verdict};
use super::msg::{response, Msg};
use super::rng::Rng;
use super::security::{AccountCheck, AccountGuard, AccountPolicy, BanPolicy, Guard};
use super::types::{Account, Lookup, Outbox, Output, SecurityNotice, Source};
use std::sync::Arc;

/// A failed check against cached secrets older than this reloads the
/// account once (a softphone may just have fetched new short-lived credentials).
const REFRESH_AFTER_MS: u64 = 2_000;

pub struct Authenticator {
    realm: String,
    sha256_user_agents: Vec<String>,
    nonces: NonceKeeper,
    guard: Guard,
    account_guard: AccountGuard,
    rng: Rng,
    /// A secret nobody knows, checked for unknown users and before a lookup.
    dummy: Ha1,
    pub accounts: AccountCache,
    /// Carriers that answer our challenges on their calls (see
    /// `inbound.rs`); checked before the agents' accounts, for INVITEs only.
    pub trunk_accounts: Vec<Arc<Account>>,
}

/// Result of authenticating a request.
pub enum Auth {
    Ok(Arc<Account>),
    /// Send this 401/407 and stop.
    Challenge(Msg),
    /// Send this final refusal (403: the account is guarded) and stop.
    Refuse(Msg),
    /// The account is being looked up; the request was parked.
    Parked,
}

impl Authenticator {
    pub fn new(
        realm: String,
        sha256_user_agents: Vec<String>,
        secret: [u8; 32],
        nonce_lifetime_ms: u64,
        ban: BanPolicy,
        account_policy: AccountPolicy,
        seed: u64,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let mut hex = || format!("{:016x}{:016x}", rng.next(), rng.next());
        let dummy = Ha1 {
            md5: hex(),
            sha256: format!("{}{}", hex(), hex()),
            expires_at_ms: None,
        };
        Authenticator {
            realm,
            sha256_user_agents,
            nonces: NonceKeeper::new(secret, nonce_lifetime_ms),
            guard: Guard::new(ban),
            account_guard: AccountGuard::new(account_policy),
            rng,
            dummy,
            accounts: AccountCache::default(),
            trunk_accounts: Vec::new(),
        }
    }

    pub fn account_guard(&self) -> &AccountGuard {
        &self.account_guard
    }

    pub fn account_guard_mut(&mut self) -> &mut AccountGuard {
        &mut self.account_guard
    }

    /// Digest responses computed so far (tests).
    #[cfg(test)]
    pub fn digests_computed(&self) -> u64 {
        self.nonces.digests
    }

    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    pub fn guard_mut(&mut self) -> &mut Guard {
        &mut self.guard
    }

    pub fn purge(&mut self, now_ms: u64) {
        self.nonces.purge(now_ms);
        self.guard.purge(now_ms);
        self.account_guard.purge(now_ms);
        self.accounts.purge(now_ms);
    }

    /// The credentials in `m` for our realm (`Authorization` for REGISTER,
    /// `Proxy-Authorization` otherwise).
    pub fn credentials(&self, m: &Msg) -> Option<digest::Credentials> {
        let hname = credentials_header(m);
        m.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(hname))
            .filter_map(|(_, v)| digest::parse_authorization(v))
            .find(|c| c.realm == self.realm)
    }

    /// Digest-authenticates `m` (401 for REGISTER, 407 otherwise).
    pub fn authenticate(
        &mut self,
        now_ms: u64,
        src: Source,
        m: &Msg,
        challenge_tag: &str,
        out: &mut Outbox,
    ) -> Auth {
        let Some(c) = self.credentials(m) else {
            return Auth::Challenge(self.challenge(now_ms, m, false, challenge_tag));
        };
        let ip = src.peer.ip();
        let method = m.method().unwrap_or("");
        if self.account_guard.check(&c.username, ip, now_ms) == AccountCheck::Refuse {
            // Not checked, so guessing gains nothing; still a failure for
            // the address, so one source cannot keep at it.
            if self.guard.failure(ip, now_ms) {
                tracing::warn!(%ip, "SIP source blocked after repeated authentication failures");
                out.push_back(Output::Security(SecurityNotice::AddressBanned { ip }));
            }
            let code = 403;
            return Auth::Refuse(response(m, code, "Forbidden", Some(challenge_tag)));
        }
        let user_key = Lookup::Username(c.username.clone());
        // A carrier that authenticates its calls (never its REGISTERs: a
        // trunk is not a device and has no binding).
        let trunk = (method == "INVITE")
            .then(|| {
                self.trunk_accounts
                    .iter()
                    .find(|a| a.username == c.username)
                    .cloned()
            })
            .flatten();
        let account = match trunk {
            Some(t) => Some(t),
            None => match self.accounts.find(user_key.clone(), now_ms, src, m, out) {
                Found::Parked => {
                    // The same check a cached account gets before its reload
                    // (below), so a lookup does not set unknown names apart.
                    let dummy = [self.dummy.clone()];
                    let _ = self
                        .nonces
                        .verify(&c, method, &self.realm, &dummy, now_ms, 0);
                    return Auth::Parked;
                }
                Found::Account(a) => Some(a),
                Found::Nobody => None,
            },
        };
        let verdict = match &account {
            Some(a) => self
                .nonces
                .verify(&c, method, &self.realm, &a.secrets, now_ms, txn_id(m)),
            None => {
                // Unknown user: same path and same answer as a wrong password.
                let dummy = [self.dummy.clone()];
                match self
                    .nonces
                    .verify(&c, method, &self.realm, &dummy, now_ms, 0)
                {
                    Verdict::Stale => Verdict::Stale,
                    _ => Verdict::Fail,
                }
            }
        };
        let reload_after =
            |at: Option<u64>| at.is_some_and(|at| now_ms.saturating_sub(at) > REFRESH_AFTER_MS);
        match (verdict, account) {
            (Verdict::Ok, Some(a)) => {
                self.account_guard.trust(&a.username, ip, now_ms);
                Auth::Ok(a)
            }
            (Verdict::Fail, Some(a)) if reload_after(self.accounts.loaded_at(&a.username)) => {
                // The cached secrets may be stale: reload once and check
                // again. The nc was not recorded, so the second check is not
                // a replay.
                self.accounts.forget(&a.username);
                let _ =
                    self.accounts
                        .find(Lookup::Username(a.username.clone()), now_ms, src, m, out);
                Auth::Parked
            }
            (Verdict::Fail, None) if reload_after(self.accounts.unknown_since(&user_key)) => {
                // Mirror of the reload above: an unknown name is looked up
                // again after the same delay, so a known account's failed
                // check does not take longer than an unknown one's.
                self.accounts.forget_unknown(&user_key);
                let _ = self.accounts.find(user_key, now_ms, src, m, out);
                Auth::Parked
            }
            (Verdict::Stale, _) => Auth::Challenge(self.challenge(now_ms, m, true, challenge_tag)),
            _ => {
                if self.guard.failure(ip, now_ms) {
                    tracing::warn!(%ip, "SIP source blocked after repeated authentication failures");
                    out.push_back(Output::Security(SecurityNotice::AddressBanned { ip }));
                }
                if self.account_guard.failure(&c.username, ip, now_ms) {
                    tracing::warn!(
                        username = %c.username,
                        %ip,
                        "SIP account guarded after repeated authentication failures from unknown addresses: \
                         only addresses it authenticated from are checked for a while"
                    );
                    out.push_back(Output::Security(SecurityNotice::AccountGuarded {
                        username: c.username.clone(),
                        ip,
                    }));
                }
                Auth::Challenge(self.challenge(now_ms, m, false, challenge_tag))
            }
        }
    }

    /// A 401 (REGISTER) or 407 with a fresh nonce.
    fn challenge(&mut self, now_ms: u64, m: &Msg, stale: bool, to_tag: &str) -> Msg {
        let salt = self.rng.next();
        let nonce = self.nonces.issue(now_ms, salt);
        let (code, reason, hname) = if m.method() == Some("REGISTER") {
            (401, "Unauthorized", "WWW-Authenticate")
        } else {
            (407, "Proxy Authentication Required", "Proxy-Authenticate")
        };
        let mut r = response(m, code, reason, Some(to_tag));
        for c in digest::challenges(&self.realm, &nonce, stale, self.offers_sha256(m)) {
            r.headers.push((hname.to_string(), c));
        }
        r
    }

    /// Whether this client is offered SHA-256 besides MD5: it is listed in
    /// `sha256_user_agents`, or it already answered one of our challenges
    /// with SHA-256 (so it can; a stale nonce must not downgrade it). See
    /// the crate README ("Challenges") for why MD5 alone is the default.
    fn offers_sha256(&self, m: &Msg) -> bool {
        let listed = m.header("User-Agent").is_some_and(|ua| {
            self.sha256_user_agents.iter().any(|p| {
                ua.len() >= p.len() && ua.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
            })
        });
        listed
            || self
                .credentials(m)
                .is_some_and(|c| c.algorithm.eq_ignore_ascii_case("SHA-256"))
    }
}

fn credentials_header(m: &Msg) -> &'static str {
    if m.method() == Some("REGISTER") {
        "Authorization"
    } else {
        "Proxy-Authorization"
    }
}

/// Identifies a request's transaction (top branch and Call-ID) for the nc table.
fn txn_id(m: &Msg) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    m.top_branch().hash(&mut h);
    m.call_id().hash(&mut h);
    h.finish() | 1
}
