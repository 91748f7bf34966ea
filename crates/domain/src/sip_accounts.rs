//! SIP accounts: creation with a unique username and extension, password
//! rotation, short-lived softphone credentials, and the lookups the SIP
//! server uses for digest authentication.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use store::sip_accounts::{NewSipAccount, SipAccountRow};

use crate::events::Event;
use crate::sip_credentials::{self as sc, DigestAlgorithm};
use crate::time::{from_ms, now_ms};
use crate::{audit, Actor, Ctx, DomainError};

/// The public face of a SIP account (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SipAccountInfo {
    pub id: i64,
    pub user_id: i64,
    pub username: String,
    pub extension: String,
    pub display_name: String,
    /// The user is active and the account's status is `active`.
    pub active: bool,
    /// The agent's recording override, for
    /// [`crate::recording::should_record`] at call setup (`None`: the
    /// system default).
    pub record_calls: Option<bool>,
    /// The agent's dial permission (`None`: the dial plan's default).
    pub dial_permission: Option<crate::dialplan::DialPermission>,
}

/// One pair of HA1 digests for the realm `sip.domain`, lowercase hex.
/// `expires_at` is `None` for the long-lived password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ha1 {
    pub md5: String,
    pub sha256: String,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Ha1 {
    /// The digest for `alg`.
    pub fn for_algorithm(&self, alg: DigestAlgorithm) -> &str {
        match alg {
            DigestAlgorithm::Md5 => &self.md5,
            DigestAlgorithm::Sha256 => &self.sha256,
        }
    }
}

/// What the registrar needs to check a digest response: the account and
/// every HA1 it accepts (long-lived first, then unexpired short-lived ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestCredentials {
    pub account: SipAccountInfo,
    pub ha1: Vec<Ha1>,
}

/// A plaintext SIP password, returned exactly once (creation or rotation).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SipCredentials {
    pub username: String,
    pub password: String,
    pub extension: String,
    pub domain: String,
}

/// A short-lived softphone password for an account's real username.
#[derive(Debug, Clone)]
pub struct EphemeralCredentials {
    pub account: SipAccountInfo,
    pub password: String,
    pub expires_at: DateTime<Utc>,
}

fn info(r: &SipAccountRow) -> SipAccountInfo {
    SipAccountInfo {
        id: r.id,
        user_id: r.user_id,
        username: r.username.clone(),
        extension: r.extension.clone(),
        display_name: r.display_name.clone(),
        active: r.user_active && r.status == "active",
        record_calls: r.record_calls,
        dial_permission: r
            .dial_permission
            .as_deref()
            .and_then(crate::dialplan::DialPermission::parse),
    }
}

fn long_lived(r: &SipAccountRow) -> Ha1 {
    Ha1 {
        md5: r.ha1_md5.clone(),
        sha256: r.ha1_sha256.clone(),
        expires_at: None,
    }
}

/// Both HA1s of `password` for `username` in `realm`.
pub fn ha1_pair(username: &str, realm: &str, password: &str) -> (String, String) {
    (
        sc::ha1(DigestAlgorithm::Md5, username, realm, password),
        sc::ha1(DigestAlgorithm::Sha256, username, realm, password),
    )
}

/// Creates the SIP account of `user_id` inside the caller's write
/// transaction: username from `name` (suffix on collision), the next
/// extension, a fresh password. Returns the account id and the credentials.
pub(crate) async fn create_in_tx(
    c: &mut store::Conn,
    ctx: &Ctx,
    user_id: i64,
    name: &str,
) -> Result<(i64, SipCredentials), DomainError> {
    let now = now_ms();
    let base = sc::username_slug(name);
    // Allocators wait for each other (a no-op on SQLite, whose writers are
    // already serialised), so the username and extension chosen below are
    // still free at the insert.
    store::sip_accounts::lock_allocation(c).await?;
    let username = free_username(c, &base).await?;
    let extension = store::sip_accounts::next_extension(c, ctx.cfg.extension_start)
        .await?
        .to_string();
    let password = sc::generate_password();
    let (md5, sha256) = ha1_pair(&username, &ctx.cfg.sip_domain, &password);
    let new = NewSipAccount {
        user_id,
        username: &username,
        extension: &extension,
        ha1_md5: &md5,
        ha1_sha256: &sha256,
    };
    // The UNIQUE constraints stay the last guard (an account created for
    // the same user meanwhile on PostgreSQL: `sipAccount`).
    let id = store::sip_accounts::insert(c, &new, now)
        .await
        .map_err(DomainError::from_write)?;
    let creds = SipCredentials {
        username,
        password,
        extension,
        domain: ctx.cfg.sip_domain.clone(),
    };
    Ok((id, creds))
}

async fn free_username(c: &mut store::Conn, base: &str) -> Result<String, DomainError> {
    let taken: std::collections::HashSet<String> =
        store::sip_accounts::usernames_with_prefix(c, base)
            .await?
            .into_iter()
            .collect();
    if !taken.contains(base) {
        return Ok(base.to_string());
    }
    let mut n = 2u32;
    loop {
        let candidate = sc::username_with_suffix(base, n);
        if !taken.contains(&candidate)
            && !store::sip_accounts::username_taken(c, &candidate).await?
        {
            return Ok(candidate);
        }
        n = n
            .checked_add(1)
            .ok_or_else(|| DomainError::conflict("sipUsername"))?;
    }
}

/// Ends everything that authenticates as this account besides the
/// long-lived HA1: short-lived credentials and stored registrations.
pub(crate) async fn revoke_sessions_in_tx(
    c: &mut store::Conn,
    account_id: i64,
    username: &str,
) -> Result<(), DomainError> {
    store::sip_ephemeral::delete_for_account(c, account_id).await?;
    store::registrations::remove_all(c, username).await?;
    Ok(())
}

#[derive(Clone, Debug)]
pub struct SipAccountService {
    ctx: Arc<Ctx>,
}

/// What the registrar saw of one account (see
/// [`SipAccountService::set_registration_states`]).
#[derive(Debug, Clone)]
pub struct RegistrationStateUpdate<'a> {
    pub username: &'a str,
    pub registered: bool,
    pub user_agent: Option<&'a str>,
    pub ip: Option<&'a str>,
}

impl SipAccountService {
    pub(crate) fn new(ctx: Arc<Ctx>) -> Self {
        Self { ctx }
    }

    // ---- SIP-facing API -------------------------------------------------

    /// Credentials for a digest check. `None` if the username is unknown or
    /// the user or account is inactive.
    pub async fn digest_credentials(
        &self,
        username: &str,
    ) -> Result<Option<DigestCredentials>, DomainError> {
        let mut c = self.ctx.db.conn().await?;
        let row = store::sip_accounts::by_username(&mut c, username).await?;
        let Some(row) = row.filter(|r| info(r).active) else {
            // The same second query as for an account, on an id that does
            // not exist: a SIP lookup of an unknown name must not answer
            // sooner than one of an existing name (it tells which exist).
            let _ = store::sip_ephemeral::unexpired(&mut c, -1, now_ms()).await?;
            return Ok(None);
        };
        let account = info(&row);
        let mut ha1 = vec![long_lived(&row)];
        for e in store::sip_ephemeral::unexpired(&mut c, row.id, now_ms()).await? {
            ha1.push(Ha1 {
                md5: e.ha1_md5,
                sha256: e.ha1_sha256,
                expires_at: Some(from_ms(e.expires_at)),
            });
        }
        Ok(Some(DigestCredentials { account, ha1 }))
    }

    /// Every enabled account's credentials (two queries), for warming a
    /// cache.
    pub async fn all_digest_credentials(&self) -> Result<Vec<DigestCredentials>, DomainError> {
        let mut c = self.ctx.db.conn().await?;
        let rows = store::sip_accounts::all_enabled(&mut c).await?;
        let mut eph: HashMap<i64, Vec<Ha1>> = HashMap::new();
        for e in store::sip_ephemeral::all_unexpired(&mut c, now_ms()).await? {
            eph.entry(e.sip_account_id).or_default().push(Ha1 {
                md5: e.ha1_md5,
                sha256: e.ha1_sha256,
                expires_at: Some(from_ms(e.expires_at)),
            });
        }
        Ok(rows
            .iter()
            .map(|r| {
                let mut ha1 = vec![long_lived(r)];
                ha1.extend(eph.remove(&r.id).unwrap_or_default());
                DigestCredentials {
                    account: info(r),
                    ha1,
                }
            })
            .collect())
    }

    pub async fn by_extension(
        &self,
        extension: &str,
    ) -> Result<Option<SipAccountInfo>, DomainError> {
        let mut c = self.ctx.db.conn().await?;
        Ok(store::sip_accounts::by_extension(&mut c, extension)
            .await?
            .as_ref()
            .map(info))
    }

    pub async fn by_username(&self, username: &str) -> Result<Option<SipAccountInfo>, DomainError> {
        let mut c = self.ctx.db.conn().await?;
        Ok(store::sip_accounts::by_username(&mut c, username)
            .await?
            .as_ref()
            .map(info))
    }

    pub async fn by_user(&self, user_id: i64) -> Result<Option<SipAccountInfo>, DomainError> {
        let mut c = self.ctx.db.conn().await?;
        Ok(store::sip_accounts::by_user(&mut c, user_id)
            .await?
            .as_ref()
            .map(info))
    }

    /// Records the registrar's view of an account (registered flag, last
    /// user agent and source IP). Unknown usernames are ignored.
    pub async fn set_registration_state(
        &self,
        username: &str,
        registered: bool,
        user_agent: Option<&str>,
        ip: Option<&str>,
    ) -> Result<(), DomainError> {
        let mut tx = self.ctx.db.write().await?;
        store::sip_accounts::set_registration_state(
            &mut tx,
            username,
            registered,
            user_agent,
            ip,
            now_ms(),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// [`Self::set_registration_state`] for many accounts in one
    /// transaction (each username once).
    pub async fn set_registration_states(
        &self,
        states: &[RegistrationStateUpdate<'_>],
    ) -> Result<(), DomainError> {
        if states.is_empty() {
            return Ok(());
        }
        let rows: Vec<store::sip_accounts::RegistrationStateRow<'_>> = states
            .iter()
            .map(|s| store::sip_accounts::RegistrationStateRow {
                username: s.username,
                registered: s.registered,
                user_agent: s.user_agent,
                ip: s.ip,
            })
            .collect();
        let mut tx = self.ctx.db.write().await?;
        store::sip_accounts::set_registration_states(&mut tx, &rows, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- management ------------------------------------------------------

    /// Creates the SIP account of a user who has none (409 otherwise).
    pub async fn create_for_user(
        &self,
        actor: &Actor,
        user_id: i64,
        name_override: Option<&str>,
    ) -> Result<(SipAccountInfo, SipCredentials), DomainError> {
        let mut tx = self.ctx.db.write().await?;
        let user = store::users::get(&mut tx, user_id, now_ms())
            .await?
            .ok_or(DomainError::NotFound { what: "user" })?;
        if user.sip_id.is_some() {
            return Err(DomainError::Conflict {
                field: "sipAccount",
                message: "the user already has a SIP account".into(),
            });
        }
        let name = name_override
            .filter(|n| !n.trim().is_empty())
            .unwrap_or(&user.name)
            .to_string();
        let (account_id, creds) = create_in_tx(&mut tx, &self.ctx, user_id, &name).await?;
        if !user.active {
            store::sip_accounts::set_status(&mut tx, account_id, "inactive", now_ms()).await?;
        }
        audit::record(
            &mut tx,
            actor,
            "sip.create",
            "user",
            &user_id.to_string(),
            serde_json::json!({"sipUsername": creds.username, "extension": creds.extension}),
        )
        .await?;
        let row = store::sip_accounts::by_user(&mut tx, user_id)
            .await?
            .ok_or(DomainError::NotFound {
                what: "sip account",
            })?;
        tx.commit().await?;
        self.publish_agent(user_id, "updated", Some(creds.username.clone()));
        Ok((info(&row), creds))
    }

    /// Rotates the SIP password (creating the account if missing). Ends
    /// short-lived credentials and stored registrations of the account.
    pub async fn rotate(&self, actor: &Actor, user_id: i64) -> Result<SipCredentials, DomainError> {
        let mut tx = self.ctx.db.write().await?;
        let user = store::users::get(&mut tx, user_id, now_ms())
            .await?
            .ok_or(DomainError::NotFound { what: "user" })?;
        let (creds, action) = match store::sip_accounts::by_user(&mut tx, user_id).await? {
            Some(row) => {
                let password = sc::generate_password();
                let (md5, sha256) = ha1_pair(&row.username, &self.ctx.cfg.sip_domain, &password);
                store::sip_accounts::set_ha1(&mut tx, row.id, &md5, &sha256, now_ms()).await?;
                revoke_sessions_in_tx(&mut tx, row.id, &row.username).await?;
                let creds = SipCredentials {
                    username: row.username,
                    password,
                    extension: row.extension,
                    domain: self.ctx.cfg.sip_domain.clone(),
                };
                (creds, "sip_rotated")
            }
            None => {
                let (id, creds) = create_in_tx(&mut tx, &self.ctx, user_id, &user.name).await?;
                if !user.active {
                    store::sip_accounts::set_status(&mut tx, id, "inactive", now_ms()).await?;
                }
                (creds, "updated")
            }
        };
        audit::record(
            &mut tx,
            actor,
            "sip.rotate",
            "user",
            &user_id.to_string(),
            serde_json::json!({"sipUsername": creds.username, "extension": creds.extension}),
        )
        .await?;
        tx.commit().await?;
        self.publish_agent(user_id, action, Some(creds.username.clone()));
        Ok(creds)
    }

    /// Mints a short-lived password for the user's real SIP username; only
    /// its HA1s and expiry are stored, and the 5 newest are kept.
    pub async fn issue_ephemeral(&self, user_id: i64) -> Result<EphemeralCredentials, DomainError> {
        let mut tx = self.ctx.db.write().await?;
        let row = store::sip_accounts::by_user(&mut tx, user_id)
            .await?
            .ok_or(DomainError::NotFound {
                what: "sip account",
            })?;
        let account = info(&row);
        if !account.active {
            return Err(DomainError::NotAllowed {
                code: "sip_account_inactive",
                message: "the SIP account is not active".into(),
            });
        }
        let now = now_ms();
        let ttl_ms = self.ctx.cfg.ephemeral_ttl_secs.max(60).saturating_mul(1000);
        let expires = now.saturating_add(ttl_ms);
        let password = sc::generate_password();
        let (md5, sha256) = ha1_pair(&row.username, &self.ctx.cfg.sip_domain, &password);
        store::sip_ephemeral::insert_and_trim(
            &mut tx,
            row.id,
            &md5,
            &sha256,
            now,
            expires,
            self.ctx.cfg.ephemeral_keep.max(1),
        )
        .await?;
        tx.commit().await?;
        Ok(EphemeralCredentials {
            account,
            password,
            expires_at: from_ms(expires),
        })
    }

    fn publish_agent(&self, id: i64, action: &str, sip_username: Option<String>) {
        self.ctx.events.publish(Event::Agent {
            at: Utc::now(),
            id,
            action: action.into(),
            sip_username,
        });
    }
}
