//! [`Backend`] over the domain services (SQLite/PostgreSQL through `store`).

use crate::backend::{AccountChange, Backend, BackendError, BoxFuture, RegistrationState};
use crate::core::digest::Ha1;
use crate::core::{Account, BindingRecord, Lookup, Transport};
use chrono::{DateTime, TimeZone, Utc};
use domain::call_events::CallEvent;
use domain::{DigestCredentials, Services};
use std::net::SocketAddr;
use tokio::sync::{broadcast, mpsc};

/// The adapter the binary hands to [`crate::start`].
pub struct DomainBackend {
    services: Services,
}

impl DomainBackend {
    pub fn new(services: Services) -> Self {
        DomainBackend { services }
    }

    /// The digest realm the HA1s were computed with (`sip_domain`).
    pub fn realm(&self) -> String {
        self.services.config.sip_domain.clone()
    }
}

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError(e.to_string())
}

fn ms(t: DateTime<Utc>) -> u64 {
    t.timestamp_millis().max(0) as u64
}

fn at(ms: u64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms as i64)
        .single()
        .unwrap_or_else(Utc::now)
}

fn account(c: DigestCredentials) -> Account {
    Account {
        username: c.account.username,
        extension: c.account.extension,
        user_id: Some(c.account.user_id),
        display_name: c.account.display_name,
        secrets: c
            .ha1
            .into_iter()
            .map(|h| Ha1 {
                md5: h.md5,
                sha256: h.sha256,
                expires_at_ms: h.expires_at.map(ms),
            })
            .collect(),
    }
}

impl Backend for DomainBackend {
    fn account(&self, key: &Lookup) -> BoxFuture<'_, Result<Option<Account>, BackendError>> {
        let key = key.clone();
        Box::pin(async move {
            let sa = &self.services.sip_accounts;
            let username = match key {
                Lookup::Username(u) => u,
                Lookup::Extension(e) => match sa.by_extension(&e).await.map_err(err)? {
                    Some(info) if info.active => info.username,
                    _ => return Ok(None),
                },
            };
            Ok(sa
                .digest_credentials(&username)
                .await
                .map_err(err)?
                .map(account))
        })
    }

    fn all_accounts(&self) -> BoxFuture<'_, Result<Vec<Account>, BackendError>> {
        Box::pin(async move {
            let all = self
                .services
                .sip_accounts
                .all_digest_credentials()
                .await
                .map_err(err)?;
            Ok(all
                .into_iter()
                .filter(|c| c.account.active)
                .map(account)
                .collect())
        })
    }

    fn load_bindings(
        &self,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<Vec<BindingRecord>, BackendError>> {
        Box::pin(async move {
            let rows = self
                .services
                .registrations
                .load_unexpired(at(now_ms))
                .await
                .map_err(err)?;
            Ok(rows
                .into_iter()
                .filter_map(|r| {
                    Some(BindingRecord {
                        transport: Transport::parse(&r.transport)?,
                        source: r.source.parse::<SocketAddr>().ok()?,
                        username: r.username,
                        contact: r.contact,
                        user_agent: r.user_agent,
                        instance_id: r.instance_id,
                        reg_id: r.reg_id.and_then(|x| u32::try_from(x).ok()),
                        call_id: r.call_id,
                        cseq: u32::try_from(r.cseq).unwrap_or(0),
                        expires_at_ms: ms(r.expires_at),
                        registered_at_ms: ms(r.registered_at),
                    })
                })
                .collect())
        })
    }

    fn save_bindings(&self, batch: Vec<BindingRecord>) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            let rows: Vec<domain::RegistrationRecord> = batch
                .into_iter()
                .map(|b| domain::RegistrationRecord {
                    username: b.username,
                    contact: b.contact,
                    transport: b.transport.as_str().to_string(),
                    source: b.source.to_string(),
                    user_agent: b.user_agent,
                    instance_id: b.instance_id,
                    reg_id: b.reg_id.map(i64::from),
                    call_id: b.call_id,
                    cseq: i64::from(b.cseq),
                    expires_at: at(b.expires_at_ms),
                    registered_at: at(b.registered_at_ms),
                })
                .collect();
            self.services
                .registrations
                .save_batch(&rows)
                .await
                .map_err(err)
        })
    }

    fn remove_binding(
        &self,
        username: String,
        contact: String,
    ) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            self.services
                .registrations
                .remove(&username, &contact)
                .await
                .map_err(err)
        })
    }

    fn remove_all_bindings(&self, username: String) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            self.services
                .registrations
                .remove_all(&username)
                .await
                .map_err(err)
        })
    }

    fn registration_states(
        &self,
        states: Vec<RegistrationState>,
    ) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            let rows: Vec<domain::RegistrationStateUpdate<'_>> = states
                .iter()
                .map(|s| domain::RegistrationStateUpdate {
                    username: &s.username,
                    registered: s.registered,
                    user_agent: s.user_agent.as_deref(),
                    ip: s.ip.as_deref(),
                })
                .collect();
            self.services
                .sip_accounts
                .set_registration_states(&rows)
                .await
                .map_err(err)?;
            let at = Utc::now();
            for s in states {
                self.services.events.publish(domain::Event::Registration {
                    at,
                    username: s.username,
                    extension: s.extension,
                    registered: s.registered,
                    contacts: u32::try_from(s.contacts).unwrap_or(u32::MAX),
                });
            }
            Ok(())
        })
    }

    fn call_event(&self, ev: CallEvent) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            self.services
                .calls
                .record(std::slice::from_ref(&ev))
                .await
                .map_err(err)
        })
    }

    fn call_events(&self, ops: Vec<CallEvent>) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            let calls = &self.services.calls;
            let Err(e) = calls.record(&ops).await else {
                return Ok(());
            };
            // Nothing of the batch was written: write them one by one so a
            // single bad operation does not lose the others.
            tracing::warn!(error = %e, ops = ops.len(), "CDR batch failed; writing its operations one by one");
            let total = ops.len();
            let mut failed = Vec::new();
            for op in &ops {
                if let Err(e) = calls.record(std::slice::from_ref(op)).await {
                    failed.push(e);
                }
            }
            match failed.first() {
                None => Ok(()),
                Some(e) => Err(BackendError(format!(
                    "{} of {total} CDR writes failed, first: {e}",
                    failed.len()
                ))),
            }
        })
    }

    fn close_orphan_calls(
        &self,
        last_alive_ms: Option<u64>,
    ) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            let n = self
                .services
                .calls
                .close_after_crash(last_alive_ms)
                .await
                .map_err(err)?;
            if n > 0 {
                tracing::warn!(
                    calls = n,
                    last_alive_ms,
                    "closed calls left open by a previous run (cause server_crash)"
                );
            }
            Ok(())
        })
    }

    fn account_changes(&self) -> Option<mpsc::UnboundedReceiver<AccountChange>> {
        let mut events = self.services.events.subscribe();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(domain::Event::Agent {
                        action,
                        sip_username: Some(username),
                        ..
                    }) => {
                        let change = match action.as_str() {
                            "deactivated" | "deleted" | "sip_rotated" => {
                                AccountChange::Revoked { username }
                            }
                            _ => AccountChange::Updated { username },
                        };
                        if tx.send(change).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(
                            missed = n,
                            "SIP missed agent events; cached accounts may be stale for a moment"
                        );
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Some(rx)
    }
}
