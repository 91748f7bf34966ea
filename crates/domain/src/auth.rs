//! Console authentication: password logins (rate limited per IP and per
//! account), sessions and API tokens. Session and token secrets are random
//! and stored only as SHA-256 hashes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ratelimit::RateLimiter;
use crate::sip_credentials::{hash_hex, random_hex, DigestAlgorithm};
use crate::time::{from_ms, now_ms, opt_from_ms};
use crate::users::{user_from_row, User};
use crate::{audit, passwords, validate, Actor, Ctx, DomainError};

/// Prefix of API token secrets, so they are recognisable in logs and
/// secret scanners.
pub const TOKEN_PREFIX: &str = "ctk_";

fn sha256_hex(s: &str) -> String {
    hash_hex(DigestAlgorithm::Sha256, s.as_bytes())
}

/// A successful login: the session secret (cookie value) and the user.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    pub session_token: String,
    pub expires_at: DateTime<Utc>,
    pub user: User,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub user_id: i64,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

fn token_from_row(r: store::api_tokens::TokenRow) -> ApiToken {
    ApiToken {
        id: r.id,
        name: r.name,
        user_id: r.user_id,
        created_at: from_ms(r.created_at),
        last_used_at: opt_from_ms(r.last_used_at),
        revoked_at: opt_from_ms(r.revoked_at),
    }
}

/// Addresses remembered per account, most recent first.
const TRUSTED_PER_ACCOUNT: usize = 16;
/// Accounts whose addresses are remembered at most.
const TRUSTED_ACCOUNTS: usize = 100_000;
/// How long an address that logged in stays trusted for its account.
const TRUST_MS: i64 = 30 * 24 * 3_600_000;

/// user id -> (address, last successful login ms), most recent first.
type TrustedAddresses = HashMap<i64, Vec<(String, i64)>>;

#[derive(Clone, Debug)]
pub struct AuthService {
    ctx: Arc<Ctx>,
    limiter: Arc<RateLimiter>,
    /// user id -> (address, last successful login ms): addresses that
    /// logged in as that account get past the account's block (not past
    /// their own address's). In memory, like the limiter: a block never
    /// outlives a restart either, and looking addresses up in the database
    /// would put a query on the path an attacker hammers.
    trusted: Arc<Mutex<TrustedAddresses>>,
}

impl AuthService {
    pub(crate) fn new(ctx: Arc<Ctx>) -> Self {
        let limiter = Arc::new(RateLimiter::new(ctx.cfg.login_limits.clone()));
        Self {
            ctx,
            limiter,
            trusted: Arc::default(),
        }
    }

    /// Figures of the password hash pool (running, peak, refused).
    pub fn hash_stats(&self) -> passwords::HashStats {
        self.ctx.hashes.stats()
    }

    fn is_trusted(&self, user_id: i64, ip: &str, now: i64) -> bool {
        let map = self.trusted.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&user_id).is_some_and(|l| {
            l.iter()
                .any(|(a, at)| a == ip && now.saturating_sub(*at) <= TRUST_MS)
        })
    }

    fn trust(&self, user_id: i64, ip: &str, now: i64) {
        let mut map = self.trusted.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= TRUSTED_ACCOUNTS && !map.contains_key(&user_id) {
            map.retain(|_, l| {
                l.retain(|(_, at)| now.saturating_sub(*at) <= TRUST_MS);
                !l.is_empty()
            });
            if map.len() >= TRUSTED_ACCOUNTS {
                return;
            }
        }
        let l = map.entry(user_id).or_default();
        l.retain(|(a, _)| a != ip);
        l.insert(0, (ip.to_string(), now));
        l.truncate(TRUSTED_PER_ACCOUNT);
    }

    /// Checks a login (or email) and password, rate limited per `ip` and
    /// per account. An account blocked after repeated failures still lets
    /// in addresses that logged in as it before (so an attacker cannot
    /// lock the admin out); the per-address limit applies to everyone.
    /// Does not create a session (provisioning uses this).
    pub async fn authenticate(
        &self,
        login: &str,
        password: &str,
        ip: Option<&str>,
    ) -> Result<User, DomainError> {
        let now = now_ms();
        let login = login.trim();
        let ip_key = ip.map(|ip| format!("ip:{ip}"));
        let acct_key = format!("acct:{}", login.to_lowercase());
        if let Some(secs) = ip_key.as_ref().and_then(|k| self.limiter.check(k, now)) {
            return Err(DomainError::RateLimited {
                retry_after_secs: secs,
            });
        }
        let ok_shape = !login.is_empty()
            && login.chars().count() <= validate::MAX_EMAIL
            && password.chars().count() <= validate::MAX_PASSWORD;
        let found = if ok_shape {
            let mut c = self.ctx.db.conn().await?;
            store::users::credentials(&mut c, login).await?
        } else {
            None
        };
        // Unknown logins are never trusted, so this answers the same for
        // names that do not exist.
        let trusted = match (&found, ip) {
            (Some((id, _, _)), Some(ip)) => self.is_trusted(*id, ip, now),
            _ => false,
        };
        if let Some(secs) = self.limiter.check(&acct_key, now) {
            if !trusted {
                return Err(DomainError::RateLimited {
                    retry_after_secs: secs,
                });
            }
        }
        let verified = match &found {
            Some((_, hash, _)) => self.ctx.hashes.verify_as(trusted, password, hash).await?,
            None => {
                // Same work for unknown logins, so timing does not tell.
                let dummy = self.ctx.hashes.dummy_hash(self.ctx.cfg.password_cost).await;
                let _ = self.ctx.hashes.verify(password, dummy).await?;
                false
            }
        };
        match found {
            Some((id, _, true)) if verified => {
                self.limiter.succeed(&acct_key);
                if let Some(ip) = ip {
                    self.trust(id, ip, now);
                }
                let mut c = self.ctx.db.conn().await?;
                let row = store::users::get(&mut c, id, now)
                    .await?
                    .ok_or(DomainError::InvalidCredentials)?;
                Ok(user_from_row(row))
            }
            _ => {
                let mut retry = None;
                for key in ip_key.iter().chain(std::iter::once(&acct_key)) {
                    if let Some(secs) = self.limiter.fail(key, now) {
                        tracing::warn!(key = %key, block_secs = secs, "login blocked after repeated failures");
                        retry = Some(retry.map_or(secs, |r: u64| r.max(secs)));
                    }
                }
                match retry {
                    Some(secs) => Err(DomainError::RateLimited {
                        retry_after_secs: secs,
                    }),
                    None => Err(DomainError::InvalidCredentials),
                }
            }
        }
    }

    /// Authenticates and opens a session.
    pub async fn login(
        &self,
        login: &str,
        password: &str,
        ip: Option<&str>,
    ) -> Result<LoginOutcome, DomainError> {
        let user = self.authenticate(login, password, ip).await?;
        let token = random_hex(32);
        let now = now_ms();
        let expires =
            now.saturating_add(self.ctx.cfg.session_ttl_secs.max(60).saturating_mul(1000));
        let mut tx = self.ctx.db.write().await?;
        store::sessions::purge_expired(&mut tx, now).await?;
        store::sessions::insert(&mut tx, &sha256_hex(&token), user.id, now, expires, ip).await?;
        store::users::touch_login(&mut tx, user.id, now).await?;
        let actor = Actor {
            user_id: Some(user.id),
            login: Some(user.handle().to_string()),
            ip: ip.map(str::to_string),
        };
        audit::record(
            &mut tx,
            &actor,
            "auth.login",
            "user",
            &user.id.to_string(),
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        let mut user = user;
        user.last_login_at = Some(from_ms(now));
        Ok(LoginOutcome {
            session_token: token,
            expires_at: from_ms(expires),
            user,
        })
    }

    /// The active user owning an unexpired session.
    pub async fn session_user(&self, token: &str) -> Result<Option<User>, DomainError> {
        if token.is_empty() || token.len() > 256 {
            return Ok(None);
        }
        let now = now_ms();
        let mut c = self.ctx.db.conn().await?;
        let Some(uid) = store::sessions::user_for(&mut c, &sha256_hex(token), now).await? else {
            return Ok(None);
        };
        Ok(store::users::get(&mut c, uid, now)
            .await?
            .map(user_from_row)
            .filter(|u| u.active))
    }

    pub async fn logout(&self, token: &str) -> Result<(), DomainError> {
        let mut tx = self.ctx.db.write().await?;
        store::sessions::delete(&mut tx, &sha256_hex(token)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The active user owning an unrevoked API token (`ctk_...`).
    pub async fn token_user(&self, secret: &str) -> Result<Option<User>, DomainError> {
        if !secret.starts_with(TOKEN_PREFIX) || secret.len() > 256 {
            return Ok(None);
        }
        let now = now_ms();
        let mut c = self.ctx.db.conn().await?;
        let Some((id, uid, last_used)) =
            store::api_tokens::owner(&mut c, &sha256_hex(secret)).await?
        else {
            return Ok(None);
        };
        let user = store::users::get(&mut c, uid, now)
            .await?
            .map(user_from_row)
            .filter(|u| u.active);
        drop(c);
        // Record use at most once a minute: a busy CRM should not turn every
        // read into a write.
        if user.is_some() && last_used.is_none_or(|t| now - t > 60_000) {
            let mut tx = self.ctx.db.write().await?;
            store::api_tokens::touch(&mut tx, id, now).await?;
            tx.commit().await?;
        }
        Ok(user)
    }

    /// Creates an API token for `user_id`; the secret is returned only here.
    pub async fn create_token(
        &self,
        actor: &Actor,
        name: &str,
        user_id: i64,
    ) -> Result<(ApiToken, String), DomainError> {
        let name = validate::required("name", name, validate::MAX_NAME)?;
        let secret = format!("{TOKEN_PREFIX}{}", random_hex(24));
        let now = now_ms();
        let mut tx = self.ctx.db.write().await?;
        let user = store::users::get(&mut tx, user_id, now)
            .await?
            .ok_or(DomainError::NotFound { what: "user" })?;
        if !user.active {
            return Err(DomainError::invalid("userId", "the user is not active"));
        }
        let id =
            store::api_tokens::insert(&mut tx, &name, user_id, &sha256_hex(&secret), now).await?;
        audit::record(
            &mut tx,
            actor,
            "token.create",
            "api_token",
            &id.to_string(),
            serde_json::json!({"name": name, "userId": user_id}),
        )
        .await?;
        let row = store::api_tokens::get(&mut tx, id)
            .await?
            .ok_or(DomainError::NotFound { what: "token" })?;
        tx.commit().await?;
        Ok((token_from_row(row), secret))
    }

    pub async fn list_tokens(
        &self,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<ApiToken>, i64), DomainError> {
        let mut c = self.ctx.db.conn().await?;
        let (rows, total) =
            store::api_tokens::list(&mut c, limit.clamp(1, 500), offset.max(0)).await?;
        Ok((rows.into_iter().map(token_from_row).collect(), total))
    }

    pub async fn revoke_token(&self, actor: &Actor, id: i64) -> Result<(), DomainError> {
        let mut tx = self.ctx.db.write().await?;
        if !store::api_tokens::revoke(&mut tx, id, now_ms()).await? {
            return Err(DomainError::NotFound { what: "token" });
        }
        audit::record(
            &mut tx,
            actor,
            "token.revoke",
            "api_token",
            &id.to_string(),
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
