//! Users and agents: creation (with a SIP account for agents), listing,
//! stats, update, deactivation and deletion.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use store::users::{ListFilter, UserChanges, UserRow};

use crate::events::Event;
use crate::sip_accounts::{self, SipCredentials};
use crate::time::{from_ms, now_ms, opt_from_ms};
use crate::{audit, validate, Actor, Ctx, DomainError};

/// Console roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Supervisor,
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Supervisor => "supervisor",
            Self::Agent => "agent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "admin" => Some(Self::Admin),
            "supervisor" => Some(Self::Supervisor),
            "agent" => Some(Self::Agent),
            _ => None,
        }
    }
}

/// The SIP part of a [`User`] (no secrets).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserSip {
    pub username: String,
    pub extension: String,
    pub status: String,
    pub registered: bool,
    pub last_registered_at: Option<DateTime<Utc>>,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
    pub contacts: i64,
}

/// A user as the API shows it (docs/API.md "The user object").
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: i64,
    pub name: String,
    pub login: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub role: Role,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
    pub has_sip_credentials: bool,
    pub sip: Option<UserSip>,
    /// Recording of this agent's calls: null follows the system default
    /// (`media.recording`), true always, false never (unless the other
    /// agent of the call is recorded; see `domain::recording::should_record`).
    pub record_calls: Option<bool>,
    /// What this agent may dial beyond the extensions: `internal`,
    /// `national` or `international`; null follows the system default
    /// (`dialplan.agent_permission`).
    pub dial_permission: Option<String>,
}

impl User {
    /// The login if set, else the email (every user has one of them).
    pub fn handle(&self) -> &str {
        self.login
            .as_deref()
            .or(self.email.as_deref())
            .unwrap_or("")
    }
}

pub(crate) fn user_from_row(r: UserRow) -> User {
    let sip = match (r.sip_username, r.sip_extension) {
        (Some(username), Some(extension)) => Some(UserSip {
            username,
            extension,
            status: r.sip_status.unwrap_or_default(),
            registered: r.sip_registered.unwrap_or(false),
            last_registered_at: opt_from_ms(r.sip_last_registered_at),
            user_agent: r.sip_user_agent,
            ip_address: r.sip_ip_address,
            contacts: r.sip_contacts,
        }),
        _ => None,
    };
    User {
        id: r.id,
        name: r.name,
        login: r.login,
        email: r.email,
        phone: r.phone,
        role: Role::parse(&r.role).unwrap_or(Role::Agent),
        active: r.active,
        created_at: from_ms(r.created_at),
        updated_at: from_ms(r.updated_at),
        last_login_at: opt_from_ms(r.last_login_at),
        has_sip_credentials: sip.is_some(),
        sip,
        record_calls: r.record_calls,
        dial_permission: r.dial_permission,
    }
}

/// A user to create.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub name: String,
    pub login: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub password: String,
    pub role: String,
    /// `None`: agents get a SIP account, other roles do not.
    pub create_sip: Option<bool>,
}

/// Changes to a user. For login, email and phone, `Some("")` clears.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    pub name: Option<String>,
    pub login: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub role: Option<String>,
    pub active: Option<bool>,
    pub password: Option<String>,
    /// `Some(None)`: follow the system default again.
    pub record_calls: Option<Option<bool>>,
    /// `Some(None)`: follow the system default again.
    pub dial_permission: Option<Option<String>>,
}

/// Listing parameters.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    pub search: Option<String>,
    pub role: Option<Role>,
    pub has_sip: Option<bool>,
    pub active: Option<bool>,
    pub limit: i64,
    pub offset: i64,
    /// `field` or `-field`; see [`store::users::order_column`].
    pub order: Option<String>,
}

/// The seeds' HR page figures.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserStats {
    pub total_users: i64,
    pub agents: i64,
    pub active: i64,
    pub agents_with_sip: i64,
    pub registered: i64,
}

#[derive(Clone, Debug)]
pub struct UserService {
    ctx: Arc<Ctx>,
}

fn role(v: &str) -> Result<Role, DomainError> {
    Role::parse(v).ok_or_else(|| DomainError::invalid("role", "must be admin, supervisor or agent"))
}

impl UserService {
    pub(crate) fn new(ctx: Arc<Ctx>) -> Self {
        Self { ctx }
    }

    /// Creates a user, and a SIP account for agents (or when asked). The
    /// SIP password is returned only here.
    pub async fn create(
        &self,
        actor: &Actor,
        n: NewUser,
    ) -> Result<(User, Option<SipCredentials>), DomainError> {
        let name = validate::required("name", &n.name, validate::MAX_NAME)?;
        let login = validate::login(n.login.as_deref())?;
        let email = validate::email(n.email.as_deref())?;
        let phone = validate::phone(n.phone.as_deref())?;
        validate::password(&n.password)?;
        let role = role(&n.role)?;
        if login.is_none() && email.is_none() {
            return Err(DomainError::invalid("login", "login or email is required"));
        }
        let with_sip = n.create_sip.unwrap_or(role == Role::Agent);
        // Hash before taking the write lock: argon2 takes tens of ms.
        let hash = self
            .ctx
            .hashes
            .hash(self.ctx.cfg.password_cost, &n.password)
            .await?;

        let now = now_ms();
        let mut tx = self.ctx.db.write().await?;
        if let Some(field) =
            store::users::taken(&mut tx, login.as_deref(), email.as_deref(), None).await?
        {
            return Err(DomainError::conflict(field));
        }
        let id = store::users::insert(
            &mut tx,
            &store::users::NewUser {
                name: &name,
                login: login.as_deref(),
                email: email.as_deref(),
                phone: phone.as_deref(),
                role: role.as_str(),
                password_hash: &hash,
                active: true,
            },
            now,
        )
        .await
        .map_err(DomainError::from_write)?;
        let creds = if with_sip {
            Some(
                sip_accounts::create_in_tx(&mut tx, &self.ctx, id, &name)
                    .await?
                    .1,
            )
        } else {
            None
        };
        audit::record(
            &mut tx,
            actor,
            "user.create",
            "user",
            &id.to_string(),
            serde_json::json!({
                "name": name, "login": login, "email": email, "role": role.as_str(),
                "sipUsername": creds.as_ref().map(|c| c.username.clone()),
                "extension": creds.as_ref().map(|c| c.extension.clone()),
            }),
        )
        .await?;
        let user = store::users::get(&mut tx, id, now)
            .await?
            .ok_or(DomainError::NotFound { what: "user" })?;
        tx.commit().await?;
        let user = user_from_row(user);
        self.publish(
            user.id,
            "created",
            user.sip.as_ref().map(|s| s.username.clone()),
        );
        Ok((user, creds))
    }

    pub async fn get(&self, id: i64) -> Result<Option<User>, DomainError> {
        let mut c = self.ctx.db.conn().await?;
        Ok(store::users::get(&mut c, id, now_ms())
            .await?
            .map(user_from_row))
    }

    /// Like [`get`](Self::get) but a missing user is `NotFound`.
    pub async fn require(&self, id: i64) -> Result<User, DomainError> {
        self.get(id)
            .await?
            .ok_or(DomainError::NotFound { what: "user" })
    }

    pub async fn list(&self, q: &UserQuery) -> Result<(Vec<User>, i64), DomainError> {
        let (order, desc) = match q.order.as_deref().map(str::trim).filter(|o| !o.is_empty()) {
            None => ("u.id", false),
            Some(o) => {
                let (field, desc) = match o.strip_prefix('-') {
                    Some(f) => (f, true),
                    None => (o.strip_prefix('+').unwrap_or(o), false),
                };
                let col = store::users::order_column(field).ok_or_else(|| {
                    DomainError::invalid("order", format!("cannot order by {field:?}"))
                })?;
                (col, desc)
            }
        };
        let search = q
            .search
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.chars().take(100).collect());
        let filter = ListFilter {
            search,
            role: q.role.map(|r| r.as_str().to_string()),
            has_sip: q.has_sip,
            active: q.active,
        };
        let mut c = self.ctx.db.conn().await?;
        let (rows, total) = store::users::list(
            &mut c,
            &filter,
            order,
            desc,
            q.limit.clamp(1, 500),
            q.offset.max(0),
            now_ms(),
        )
        .await?;
        Ok((rows.into_iter().map(user_from_row).collect(), total))
    }

    pub async fn stats(&self) -> Result<UserStats, DomainError> {
        let mut c = self.ctx.db.conn().await?;
        let s = store::users::stats(&mut c).await?;
        Ok(UserStats {
            total_users: s.total_users,
            agents: s.agents,
            active: s.active,
            agents_with_sip: s.agents_with_sip,
            registered: s.registered,
        })
    }

    /// Applies `u`. Deactivating ends the user's sessions, short-lived SIP
    /// credentials and registrations; a new password ends their sessions.
    pub async fn update(&self, actor: &Actor, id: i64, u: UserUpdate) -> Result<User, DomainError> {
        let mut ch = UserChanges::default();
        let mut changed = Vec::<&str>::new();
        if let Some(n) = &u.name {
            ch.name = Some(validate::required("name", n, validate::MAX_NAME)?);
            changed.push("name");
        }
        if let Some(l) = &u.login {
            ch.login = Some(validate::login(Some(l))?);
            changed.push("login");
        }
        if let Some(e) = &u.email {
            ch.email = Some(validate::email(Some(e))?);
            changed.push("email");
        }
        if let Some(p) = &u.phone {
            ch.phone = Some(validate::phone(Some(p))?);
            changed.push("phone");
        }
        let new_role = u.role.as_deref().map(role).transpose()?;
        if let Some(r) = new_role {
            ch.role = Some(r.as_str().to_string());
            changed.push("role");
        }
        if let Some(a) = u.active {
            ch.active = Some(a);
            changed.push("active");
        }
        if let Some(p) = &u.password {
            validate::password(p)?;
            ch.password_hash = Some(self.ctx.hashes.hash(self.ctx.cfg.password_cost, p).await?);
            changed.push("password");
        }
        if let Some(r) = u.record_calls {
            ch.record_calls = Some(r);
            changed.push("recordCalls");
        }
        if let Some(p) = &u.dial_permission {
            if let Some(v) = p {
                if crate::dialplan::DialPermission::parse(v).is_none() {
                    return Err(DomainError::invalid(
                        "dialPermission",
                        "must be internal, national, international or null",
                    ));
                }
            }
            ch.dial_permission = Some(p.clone());
            changed.push("dialPermission");
        }
        let now = now_ms();
        let mut tx = self.ctx.db.write().await?;
        let before = store::users::get(&mut tx, id, now)
            .await?
            .ok_or(DomainError::NotFound { what: "user" })?;
        if actor.user_id == Some(id)
            && (u.active == Some(false) || new_role.is_some_and(|r| r != Role::Admin))
        {
            return Err(DomainError::NotAllowed {
                code: "cannot_modify_self",
                message: "you cannot deactivate or demote your own account".into(),
            });
        }
        if let Some(field) = store::users::taken(
            &mut tx,
            ch.login.clone().flatten().as_deref(),
            ch.email.clone().flatten().as_deref(),
            Some(id),
        )
        .await?
        {
            return Err(DomainError::conflict(field));
        }
        store::users::update(&mut tx, id, &ch, now)
            .await
            .map_err(DomainError::from_write)?;
        let after = store::users::get(&mut tx, id, now)
            .await?
            .ok_or(DomainError::NotFound { what: "user" })?;
        if after.login.is_none() && after.email.is_none() {
            return Err(DomainError::invalid("login", "login or email is required"));
        }
        let deactivated = before.active && !after.active;
        if deactivated {
            end_access_in_tx(&mut tx, &after, now).await?;
        } else if !before.active && after.active {
            if let Some(sid) = after.sip_id {
                store::sip_accounts::set_status(&mut tx, sid, "active", now).await?;
            }
        }
        if u.password.is_some() && !deactivated {
            store::sessions::delete_for_user(&mut tx, id).await?;
        }
        audit::record(&mut tx, actor, "user.update", "user", &id.to_string(), {
            // Who may be recorded, and who may dial where, are worth
            // their values in the log.
            let mut d = serde_json::json!({ "fields": changed });
            if let Some(r) = u.record_calls {
                d["recordCalls"] = serde_json::json!(r);
            }
            if let Some(p) = &u.dial_permission {
                d["dialPermission"] = serde_json::json!(p);
            }
            d
        })
        .await?;
        let user = store::users::get(&mut tx, id, now)
            .await?
            .ok_or(DomainError::NotFound { what: "user" })?;
        tx.commit().await?;
        let user = user_from_row(user);
        let action = if deactivated {
            "deactivated"
        } else {
            "updated"
        };
        self.publish(id, action, user.sip.as_ref().map(|s| s.username.clone()));
        Ok(user)
    }

    /// Deactivates a user: no console login, SIP account inactive,
    /// sessions, short-lived credentials and registrations ended.
    pub async fn deactivate(&self, actor: &Actor, id: i64) -> Result<User, DomainError> {
        if actor.user_id == Some(id) {
            return Err(DomainError::NotAllowed {
                code: "cannot_modify_self",
                message: "you cannot deactivate your own account".into(),
            });
        }
        let now = now_ms();
        let mut tx = self.ctx.db.write().await?;
        let row = store::users::get(&mut tx, id, now)
            .await?
            .ok_or(DomainError::NotFound { what: "user" })?;
        store::users::update(
            &mut tx,
            id,
            &UserChanges {
                active: Some(false),
                ..Default::default()
            },
            now,
        )
        .await?;
        end_access_in_tx(&mut tx, &row, now).await?;
        audit::record(
            &mut tx,
            actor,
            "user.deactivate",
            "user",
            &id.to_string(),
            serde_json::json!({}),
        )
        .await?;
        let user = store::users::get(&mut tx, id, now)
            .await?
            .ok_or(DomainError::NotFound { what: "user" })?;
        tx.commit().await?;
        let user = user_from_row(user);
        self.publish(
            id,
            "deactivated",
            user.sip.as_ref().map(|s| s.username.clone()),
        );
        Ok(user)
    }

    /// Deletes a user with their SIP account, sessions and tokens. CDRs
    /// keep the call but lose the agent link.
    pub async fn delete(&self, actor: &Actor, id: i64) -> Result<(), DomainError> {
        if actor.user_id == Some(id) {
            return Err(DomainError::NotAllowed {
                code: "cannot_modify_self",
                message: "you cannot delete your own account".into(),
            });
        }
        let now = now_ms();
        let mut tx = self.ctx.db.write().await?;
        let row = store::users::get(&mut tx, id, now)
            .await?
            .ok_or(DomainError::NotFound { what: "user" })?;
        if let (Some(sid), Some(username)) = (row.sip_id, row.sip_username.as_deref()) {
            sip_accounts::revoke_sessions_in_tx(&mut tx, sid, username).await?;
        }
        store::users::delete(&mut tx, id).await?;
        audit::record(
            &mut tx,
            actor,
            "user.delete",
            "user",
            &id.to_string(),
            serde_json::json!({"name": row.name, "login": row.login, "email": row.email, "sipUsername": row.sip_username}),
        )
        .await?;
        tx.commit().await?;
        self.publish(id, "deleted", row.sip_username);
        Ok(())
    }

    /// Creates the `admin` account on an empty database. Returns the
    /// password it generated, or `None` if one was given or users exist.
    pub async fn bootstrap_admin(
        &self,
        password: Option<&str>,
    ) -> Result<Option<String>, DomainError> {
        {
            let mut c = self.ctx.db.conn().await?;
            if store::users::count(&mut c).await? > 0 {
                return Ok(None);
            }
        }
        let (pw, generated) = match password {
            Some(p) => (p.to_string(), false),
            None => (crate::sip_credentials::random_hex(12), true),
        };
        let n = NewUser {
            name: "Administrator".into(),
            login: Some("admin".into()),
            password: pw.clone(),
            role: "admin".into(),
            create_sip: Some(false),
            ..Default::default()
        };
        self.create(&Actor::system(), n).await?;
        Ok(generated.then_some(pw))
    }

    /// Sets a new console password for the user with this login (or
    /// email), ends their sessions and reactivates them; for recovering the
    /// admin account from the command line. Returns the user's id.
    pub async fn reset_password(
        &self,
        actor: &Actor,
        login: &str,
        password: &str,
    ) -> Result<i64, DomainError> {
        let id = {
            let mut c = self.ctx.db.conn().await?;
            store::users::credentials(&mut c, login.trim())
                .await?
                .ok_or(DomainError::NotFound { what: "user" })?
                .0
        };
        let update = UserUpdate {
            password: Some(password.to_string()),
            active: Some(true),
            ..Default::default()
        };
        self.update(actor, id, update).await?;
        Ok(id)
    }

    fn publish(&self, id: i64, action: &str, sip_username: Option<String>) {
        self.ctx.events.publish(Event::Agent {
            at: Utc::now(),
            id,
            action: action.into(),
            sip_username,
        });
    }
}

/// Ends a deactivated user's access: sessions, short-lived SIP
/// credentials, registrations; the SIP account becomes inactive.
async fn end_access_in_tx(c: &mut store::Conn, row: &UserRow, now: i64) -> Result<(), DomainError> {
    store::sessions::delete_for_user(c, row.id).await?;
    if let (Some(sid), Some(username)) = (row.sip_id, row.sip_username.as_deref()) {
        store::sip_accounts::set_status(c, sid, "inactive", now).await?;
        store::sip_accounts::set_registration_state(c, username, false, None, None, now).await?;
        sip_accounts::revoke_sessions_in_tx(c, sid, username).await?;
    }
    Ok(())
}
