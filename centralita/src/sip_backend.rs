//! The SIP server's storage port ([`sip::Backend`]) over the domain
//! services (SQLite/PostgreSQL through `store`): accounts, bindings,
//! registration states, CDR events and account changes. It lives in the
//! binary's wiring so that `sip` knows only its port trait.

use chrono::{DateTime, TimeZone, Utc};
use domain::call_events::CallEvent;
use domain::{DigestCredentials, Services};
use sip::backend::{AccountChange, Backend, BackendError, BoxFuture, RegistrationState};
use sip::core::digest::Ha1;
use sip::core::{Account, BindingRecord, Lookup, Transport};
use std::net::SocketAddr;
use tokio::sync::{broadcast, mpsc};

/// The adapter the binary hands to [`sip::start`].
pub struct DomainBackend {
    services: Services,
    /// Outbound limits that go with an agent's own dial permission.
    dial_limits: domain::dialplan::OutboundLimits,
}

impl DomainBackend {
    pub fn new(services: Services) -> Self {
        DomainBackend {
            services,
            dial_limits: domain::dialplan::OutboundLimits::default(),
        }
    }

    /// The per-agent outbound limits (`dialplan.max_*`), applied with an
    /// agent's own dial permission.
    pub fn with_dial_limits(mut self, limits: domain::dialplan::OutboundLimits) -> Self {
        self.dial_limits = limits;
        self
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

fn account(c: DigestCredentials, limits: domain::dialplan::OutboundLimits) -> Account {
    Account {
        username: c.account.username,
        extension: c.account.extension,
        user_id: Some(c.account.user_id),
        display_name: c.account.display_name,
        record_calls: c.account.record_calls,
        // The agent's own dial permission, or the dial plan's default.
        dial: c
            .account
            .dial_permission
            .map(|permission| sip::DialRights { permission, limits }),
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
                .map(|c| account(c, self.dial_limits)))
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
                .map(|c| account(c, self.dial_limits))
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

    fn security_notice(&self, notice: sip::SecurityNotice) {
        let (kind, ip, username) = match notice {
            sip::SecurityNotice::AddressBanned { ip } => ("address_banned", ip, None),
            sip::SecurityNotice::AccountGuarded { username, ip } => {
                ("account_guarded", ip, Some(username))
            }
            // Toll-fraud signs: the kind is the refusal's cause.
            sip::SecurityNotice::OutboundRefused {
                username,
                ip,
                cause,
                ..
            } => (cause.as_str(), ip, Some(username)),
        };
        self.services.events.publish(domain::Event::Security {
            at: Utc::now(),
            kind: kind.into(),
            ip: ip.to_string(),
            username,
        });
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

#[cfg(test)]
mod tests {
    use super::*;
    use domain::call_events::{CallEventKind as K, HangupCause, Party};
    use std::collections::HashMap;

    /// As many call events as the SIP server's CDR writer hands the backend
    /// in one call (`sip::shell::writer::CDR_BATCH`).
    const WRITER_BATCH: usize = 500;

    async fn services(dir: &tempfile::TempDir) -> Services {
        let url = store::testing::database_url(dir.path());
        let db = domain::Db::open(&url)
            .await
            .expect("open the test database");
        Services::new(
            db,
            domain::DomainConfig {
                password_cost: domain::PasswordCost::TestOnlyCheap,
                ..Default::default()
            },
        )
    }

    /// The call events of call `i`, which starts at `t0 + i` ms and is
    /// answered after 1 s and ends after 3 s (odd calls) or is not answered.
    fn ops(i: u64, t0: u64, agent: Option<i64>) -> Vec<CallEvent> {
        let call_id = format!("call-{i}");
        let ev = |at_ms: u64, kind: K| CallEvent {
            call_id: call_id.clone(),
            at_ms,
            kind,
        };
        let party = |number: &str, agent_id| Party {
            number: number.into(),
            agent_id,
        };
        let mut v = vec![
            ev(
                t0 + i,
                K::Started {
                    direction: domain::Direction::Internal,
                    caller: party("1000", agent),
                    callee: party("1001", None),
                    transport: "udp".into(),
                },
            ),
            ev(
                t0 + i,
                K::LegAdded {
                    leg: 1,
                    party: party("1001", None),
                    transport: "udp".into(),
                },
            ),
            ev(t0 + i + 10, K::Ringing { leg: 1 }),
        ];
        let answered = i % 2 == 1;
        if answered {
            v.push(ev(t0 + i + 1_000, K::Answered { leg: 1 }));
        }
        let cause = if answered {
            HangupCause::CallerBye
        } else {
            HangupCause::NoAnswer
        };
        v.push(ev(t0 + i + 3_000, K::Ended { cause }));
        v
    }

    /// 1,200 calls whose operations interleave (every call starts before
    /// the first ends) arrive in several 500-operation batches, as the SIP
    /// server's writer sends them; every row is complete and each call's
    /// events are published in order.
    /// Bans and account guards reach the console's live view as `security`
    /// events, with the address and (for a guard) the account.
    #[tokio::test]
    async fn security_notices_become_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = services(&dir).await;
        let mut events = s.events.subscribe();
        let backend = DomainBackend::new(s);
        let ip: std::net::IpAddr = [127, 0, 0, 9].into();
        backend.security_notice(sip::SecurityNotice::AddressBanned { ip });
        backend.security_notice(sip::SecurityNotice::AccountGuarded {
            username: "alice".into(),
            ip,
        });
        let mut got = Vec::new();
        for _ in 0..2 {
            match events.recv().await.expect("event") {
                domain::Event::Security {
                    kind, ip, username, ..
                } => got.push((kind, ip, username)),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            got,
            [
                ("address_banned".to_string(), "127.0.0.9".to_string(), None),
                (
                    "account_guarded".to_string(),
                    "127.0.0.9".to_string(),
                    Some("alice".to_string())
                ),
            ]
        );
    }

    #[tokio::test]
    async fn interleaved_cdr_batches_keep_order_per_call() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = services(&dir).await;
        // The bus keeps 1,024 events: read them while the batches are written.
        let mut events = s.events.subscribe();
        let n = 1_200u64;
        let collector = tokio::spawn(async move {
            let mut seen: HashMap<String, Vec<String>> = HashMap::new();
            let mut ended = 0;
            while ended < n {
                match events.recv().await {
                    Ok(domain::Event::Call { call_id, state, .. }) => {
                        ended += u64::from(state == "ended");
                        seen.entry(call_id).or_default().push(state);
                    }
                    Ok(_) => {}
                    Err(e) => panic!("event bus: {e}"),
                }
            }
            seen
        });
        let backend = DomainBackend::new(s.clone());
        let t0 = 1_700_000_000_000u64;
        let per_call: Vec<Vec<CallEvent>> = (0..n).map(|i| ops(i, t0, None)).collect();
        // Round-robin over the calls: start of all, then the next op of each.
        let longest = per_call.iter().map(Vec::len).max().unwrap_or(0);
        let interleaved: Vec<CallEvent> = (0..longest)
            .flat_map(|k| per_call.iter().filter_map(move |call| call.get(k).cloned()))
            .collect();
        for batch in interleaved.chunks(WRITER_BATCH) {
            backend
                .call_events(batch.to_vec())
                .await
                .expect("CDR batch");
        }

        let (rows, total) = s
            .calls
            .history(&domain::calls::CallQuery {
                limit: 10_000,
                ..Default::default()
            })
            .await
            .expect("history");
        assert_eq!(total, n as i64);
        for c in rows {
            let i: u64 = c.call_id["call-".len()..].parse().expect("call number");
            let answered = i % 2 == 1;
            assert_eq!(c.state, "ended", "{}", c.call_id);
            assert_eq!(c.duration, 3, "{}", c.call_id);
            assert_eq!(c.billsec, if answered { 2 } else { 0 }, "{}", c.call_id);
            assert_eq!(
                c.disposition.as_deref(),
                Some(if answered { "ANSWERED" } else { "NO ANSWER" })
            );
        }
        let seen = tokio::time::timeout(std::time::Duration::from_secs(10), collector)
            .await
            .expect("all call events within 10 s")
            .expect("collector");
        assert_eq!(seen.len(), n as usize);
        for (id, states) in seen {
            let i: u64 = id["call-".len()..].parse().expect("call number");
            let want: &[&str] = if i % 2 == 1 {
                &["ringing", "answered", "ended"]
            } else {
                &["ringing", "ended"]
            };
            assert_eq!(states, want, "{id}");
        }
    }

    /// A bad operation (a start naming an agent that does not exist) fails
    /// its batch; the backend then writes the others one by one and reports
    /// the one that failed.
    #[tokio::test]
    async fn a_bad_cdr_operation_does_not_lose_its_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = services(&dir).await;
        let backend = DomainBackend::new(s.clone());
        let t0 = 1_700_000_000_000u64;
        let batch: Vec<CallEvent> = (0..10)
            .flat_map(|i| ops(i, t0, (i == 4).then_some(424_242)))
            .collect();
        let err = backend
            .call_events(batch)
            .await
            .expect_err("the bad start is reported");
        assert!(err.0.contains("CDR writes failed"), "{err}");
        let (rows, total) = s
            .calls
            .history(&domain::calls::CallQuery {
                limit: 100,
                ..Default::default()
            })
            .await
            .expect("history");
        assert_eq!(total, 9);
        assert!(rows
            .iter()
            .all(|c| c.state == "ended" && c.call_id != "call-4"));
    }
}
