//! Digest authentication policy (the auth + auth_db roles): which challenge
//! a client gets, checking its answer against the cached account, the
//! failure count behind bans. The mechanism (nonces, hashes) is `digest.rs`.

use super::accounts::{AccountCache, Found};
use super::digest::{self, Ha1, NonceKeeper, Verdict};
use super::msg::{response, Msg};
use super::rng::Rng;
use super::security::{BanPolicy, Guard};
use super::types::{Account, Lookup, Outbox, Source};
use std::sync::Arc;

/// A failed check against cached secrets older than this reloads the
/// account once (a softphone may just have fetched new short-lived credentials).
const REFRESH_AFTER_MS: u64 = 2_000;

pub struct Authenticator {
    realm: String,
    sha256_user_agents: Vec<String>,
    nonces: NonceKeeper,
    guard: Guard,
    rng: Rng,
    pub accounts: AccountCache,
}

/// Result of authenticating a request.
pub enum Auth {
    Ok(Arc<Account>),
    /// Send this 401/407 and stop.
    Challenge(Msg),
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
        seed: u64,
    ) -> Self {
        Authenticator {
            realm,
            sha256_user_agents,
            nonces: NonceKeeper::new(secret, nonce_lifetime_ms),
            guard: Guard::new(ban),
            rng: Rng::new(seed),
            accounts: AccountCache::default(),
        }
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
        let account =
            match self
                .accounts
                .find(Lookup::Username(c.username.clone()), now_ms, src, m, out)
            {
                Found::Parked => return Auth::Parked,
                Found::Account(a) => Some(a),
                Found::Nobody => None,
            };
        let method = m.method().unwrap_or("");
        let verdict = match &account {
            Some(a) => self
                .nonces
                .verify(&c, method, &self.realm, &a.secrets, now_ms, txn_id(m)),
            None => {
                // Unknown user: same path and same answer as a wrong password.
                let fake = [Ha1 {
                    md5: String::new(),
                    sha256: String::new(),
                    expires_at_ms: None,
                }];
                match self
                    .nonces
                    .verify(&c, method, &self.realm, &fake, now_ms, 0)
                {
                    Verdict::Stale => Verdict::Stale,
                    _ => Verdict::Fail,
                }
            }
        };
        match (verdict, account) {
            (Verdict::Ok, Some(a)) => Auth::Ok(a),
            (Verdict::Fail, Some(a))
                if self
                    .accounts
                    .loaded_at(&a.username)
                    .is_some_and(|at| now_ms.saturating_sub(at) > REFRESH_AFTER_MS) =>
            {
                // The cached secrets may be stale: reload once and check
                // again. The nc was not recorded, so the second check is not
                // a replay.
                self.accounts.forget(&a.username);
                let _ =
                    self.accounts
                        .find(Lookup::Username(a.username.clone()), now_ms, src, m, out);
                Auth::Parked
            }
            (Verdict::Stale, _) => Auth::Challenge(self.challenge(now_ms, m, true, challenge_tag)),
            _ => {
                if self.guard.failure(src.peer.ip(), now_ms) {
                    tracing::warn!(ip = %src.peer.ip(), "SIP source blocked after repeated authentication failures");
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
