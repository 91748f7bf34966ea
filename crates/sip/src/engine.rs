//! The builtin engine: [`SipServer`] behind the [`domain::Engine`]
//! interface the API talks to.

use std::net::{IpAddr, SocketAddr};

use crate::core::outbound_reg::TrunkRegState;
use crate::SipServer;

impl domain::Engine for SipServer {
    fn name(&self) -> &'static str {
        "builtin"
    }

    fn status(&self) -> domain::EngineStatus {
        let sec = self.security_stats();
        domain::EngineStatus {
            scanner_requests_dropped: sec.scanners_dropped,
            auth_guarded_refused: sec.guarded_refused,
            auth_accounts_guarded: sec.accounts_guarded,
            auth_failures: sec.auth_failures,
            sources_banned: sec.bans,
            register_requests: sec.registers,
            invite_requests: sec.invites,
            write_queue_depth: u64::try_from(self.shared.writers.pending()).unwrap_or(u64::MAX),
            write_lag_registrations_us: self.shared.writers.lag_us().0,
            write_lag_cdrs_us: self.shared.writers.lag_us().1,
            connected: !*self.shared.shutdown.borrow(),
            active_calls: u64::try_from(SipServer::active_calls(self)).unwrap_or(u64::MAX),
            registered_contacts: u64::try_from(SipServer::registered_contacts(self))
                .unwrap_or(u64::MAX),
        }
    }

    fn blocked_sources(&self) -> Vec<domain::BlockedSource> {
        SipServer::blocked_sources(self)
            .into_iter()
            .map(|b| domain::BlockedSource {
                ip: b.ip,
                failures: b.failures,
                blocked_until: chrono::DateTime::from_timestamp(b.blocked_until_unix, 0)
                    .unwrap_or_default(),
            })
            .collect()
    }

    fn unblock(&self, ip: IpAddr) -> bool {
        SipServer::unblock(self, ip)
    }

    fn attach_flow(
        &self,
        peer: SocketAddr,
        secure: bool,
    ) -> Result<domain::FlowHandle, domain::FlowRefused> {
        self.shared.attach_websocket(peer, secure)
    }

    /// Trunks are registered under their id as the key (see the binary's
    /// `trunks` module).
    fn trunk_registration(&self, trunk_id: i64) -> Option<domain::TrunkRegistrationView> {
        let key = trunk_id.to_string();
        let s = self.trunk_statuses().into_iter().find(|s| s.key == key)?;
        let at = |ms: u64| chrono::DateTime::from_timestamp_millis(ms as i64);
        let state = match s.state {
            TrunkRegState::Idle | TrunkRegState::Registering => "registering",
            TrunkRegState::Registered { .. } => "registered",
            TrunkRegState::Rejected { .. } => "rejected",
            TrunkRegState::Failed { .. } => "failed",
            TrunkRegState::Unregistering | TrunkRegState::Unregistered => "unregistered",
        };
        Some(domain::TrunkRegistrationView {
            state: state.to_string(),
            since: at(s.since_ms).unwrap_or_default(),
            last_registered_at: s.registered_at_ms.and_then(at),
            expires_at: s.expires_at_ms.and_then(at),
            next_attempt_at: s.next_attempt_ms.and_then(at),
            failures: s.failures,
        })
    }

    fn force_trunk_registration(&self, trunk_id: i64) -> bool {
        SipServer::force_trunk_registration(self, &trunk_id.to_string())
    }

    fn hang_up(&self, call_id: &str) -> bool {
        SipServer::hang_up(self, call_id)
    }

    /// The core dials the number itself (the route and trunk it picks
    /// when the agent answers may differ from the plan's, e.g. after a
    /// failover), through the campaign's trunks when the plan has them;
    /// the plan's checks have already passed.
    fn originate(
        &self,
        plan: domain::originate::OriginatePlan,
    ) -> Option<domain::engine::OriginateFuture> {
        let server = SipServer {
            shared: self.shared.clone(),
            local: self.local,
            tls_local: self.tls_local,
        };
        Some(Box::pin(async move {
            use crate::core::OriginateError as E;
            use domain::engine::OriginateFailure as F;
            server
                .originate(&plan.agent_username, &plan.dialled, plan.campaign_trunks)
                .await
                .map_err(|e| match e {
                    E::NotRegistered => F::AgentNotRegistered,
                    e @ (E::UnknownAgent(_) | E::InvalidNumber(_)) => F::Refused(e.to_string()),
                })
        }))
    }

    fn probe(&self, host: String, port: u16, transport: &'static str) -> domain::ProbeFuture {
        let ip = self.local_addr().ip();
        let tls = self.shared.tls_trunk.clone();
        Box::pin(async move {
            crate::shell::probe::probe(ip, &host, port, transport, &tls)
                .await
                .map(|a| domain::ProbeAnswer {
                    status: a.status,
                    reason: a.reason,
                    rtt_ms: a.rtt.as_millis() as u64,
                })
                .map_err(|e| e.to_string())
        })
    }
}
