//! The builtin engine: [`SipServer`] behind the [`domain::Engine`]
//! interface the API talks to.

use std::net::{IpAddr, SocketAddr};

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
}
