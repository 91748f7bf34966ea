//! One trunk's registration: the REGISTERs it builds and what each
//! answer does to it. `mod.rs` routes inputs here and owns the timers'
//! schedule across trunks.

use super::client_auth::{self, Answer, Challenge};
use super::{
    backoff_ms, refresh_after, Io, Target, Transmit, TrunkEvent, TrunkEventKind, TrunkRegState,
    TrunkRegistration, BRANCH_PREFIX, MAX_RETRY_AFTER_SECS,
};
use crate::core::msg::{self, Msg, Start};
use crate::core::txn::{T1, TIMEOUT};
use crate::core::types::{Source, Transport, ALLOW};

/// What one attempt (a REGISTER and its challenge answers) has used up.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Attempt {
    /// This request answers a challenge received in this attempt.
    pub(super) answered: bool,
    /// A `stale=true` challenge was answered already.
    pub(super) stale_retried: bool,
}

/// The client transaction in flight.
pub(super) struct Pending {
    pub(super) branch: String,
    pub(super) cseq: u32,
    pub(super) data: Vec<u8>,
    /// Next UDP retransmission (timer E); `None` on TCP.
    pub(super) retrans_at: Option<u64>,
    pub(super) interval: u64,
    /// Timer F.
    pub(super) deadline: u64,
    /// Expiry asked for (0: unregister).
    pub(super) expires: u32,
    pub(super) attempt: Attempt,
}

/// The last challenge, reused on refreshes.
pub(super) struct AuthCache {
    pub(super) challenge: Challenge,
    pub(super) proxy: bool,
    pub(super) nc: u32,
}

pub(super) struct Trunk {
    pub(super) cfg: TrunkRegistration,
    pub(super) target: Target,
    /// Where requests go; `None` when the registrar could not be resolved.
    pub(super) to: Option<Source>,
    pub(super) call_id: String,
    pub(super) from_tag: String,
    pub(super) cseq: u32,
    /// Expiry we ask for (raised by a 423).
    pub(super) expires: u32,
    pub(super) state: TrunkRegState,
    pub(super) since_ms: u64,
    pub(super) pending: Option<Pending>,
    pub(super) next_at: Option<u64>,
    pub(super) failures: u32,
    pub(super) auth: Option<AuthCache>,
    pub(super) registered_at_ms: Option<u64>,
    pub(super) expires_at_ms: Option<u64>,
    /// A binding may exist at the registrar: a REGISTER asking for time
    /// went out since the last completed unregister.
    pub(super) maybe_bound: bool,
    /// Removed or replaced: unregistering quietly (no events), then dropped.
    pub(super) leaving: bool,
    /// Shutting down: no more attempts.
    pub(super) stopping: bool,
}

impl Trunk {
    pub(super) fn set_state(&mut self, now_ms: u64, s: TrunkRegState) {
        if self.state != s {
            self.state = s;
            self.since_ms = now_ms;
        }
    }

    pub(super) fn event(&self, io: &mut Io, now_ms: u64, kind: TrunkEventKind) {
        if !self.leaving {
            io.events.push_back(TrunkEvent {
                key: self.cfg.key.clone(),
                at_ms: now_ms,
                kind,
            });
        }
    }

    /// Starts an attempt: a REGISTER asking for our expiry.
    pub(super) fn attempt(&mut self, io: &mut Io, now_ms: u64) {
        if self.stopping || self.leaving {
            return;
        }
        if self.to.is_none() {
            // Only a new `set` resolves again.
            self.failures = self.failures.saturating_add(1);
            let reason = format!("cannot resolve the registrar {}", self.target.host);
            self.set_state(
                now_ms,
                TrunkRegState::Failed {
                    reason: reason.clone(),
                },
            );
            self.event(
                io,
                now_ms,
                TrunkEventKind::Failed {
                    reason,
                    retry_at_ms: None,
                },
            );
            return;
        }
        if !matches!(self.state, TrunkRegState::Registered { .. }) {
            self.set_state(now_ms, TrunkRegState::Registering);
        }
        self.send(io, now_ms, self.expires, Attempt::default());
    }

    /// Sends a new REGISTER transaction asking for `expires` (0: unregister).
    pub(super) fn send(&mut self, io: &mut Io, now_ms: u64, expires: u32, attempt: Attempt) {
        let Some(to) = self.to else {
            return;
        };
        self.cseq = self.cseq.wrapping_add(1).max(1);
        let branch = format!("{BRANCH_PREFIX}{}", io.rng.token());
        let local = io.host_for(to.transport);
        let contact = match to.transport {
            Transport::Udp => format!("<sip:{}@{local}>", self.cfg.contact_user),
            t => format!(
                "<sip:{}@{local};transport={}>",
                self.cfg.contact_user,
                t.as_str()
            ),
        };
        let mut headers: Vec<(String, String)> = vec![
            (
                "Via".into(),
                format!(
                    "SIP/2.0/{} {local};branch={branch};rport",
                    to.transport.via()
                ),
            ),
            ("Max-Forwards".into(), "70".into()),
            (
                "From".into(),
                format!("<{}>;tag={}", self.target.aor, self.from_tag),
            ),
            ("To".into(), format!("<{}>", self.target.aor)),
            ("Call-ID".into(), self.call_id.clone()),
            ("CSeq".into(), format!("{} REGISTER", self.cseq)),
            ("Contact".into(), format!("{contact};expires={expires}")),
            ("Expires".into(), expires.to_string()),
        ];
        if let Some(a) = self.auth.as_mut() {
            a.nc = a.nc.saturating_add(1);
            let cnonce = io.rng.token();
            let value = client_auth::authorization(
                &a.challenge,
                &Answer {
                    username: &self.cfg.auth_username,
                    secret: &self.cfg.secret,
                    method: "REGISTER",
                    uri: &self.target.ruri,
                    nc: a.nc,
                    cnonce: &cnonce,
                },
            );
            let name = if a.proxy {
                "Proxy-Authorization"
            } else {
                "Authorization"
            };
            headers.push((name.into(), value));
        }
        headers.push(("Allow".into(), ALLOW.into()));
        headers.push(("User-Agent".into(), "centralita".into()));
        let data = Msg {
            start: Start::Request {
                method: "REGISTER".into(),
                uri: self.target.ruri.clone(),
            },
            headers,
            body: Vec::new(),
        }
        .to_bytes();
        if expires > 0 {
            self.maybe_bound = true;
        }
        io.transmits.push_back(Transmit {
            to,
            data: data.clone(),
        });
        self.pending = Some(Pending {
            branch,
            cseq: self.cseq,
            data,
            retrans_at: (!to.transport.reliable()).then_some(now_ms + T1),
            interval: T1,
            deadline: now_ms + TIMEOUT,
            expires,
            attempt,
        });
    }

    /// A 401/407: answered once per attempt (twice when the second says
    /// the nonce was merely stale).
    pub(super) fn challenged(
        &mut self,
        io: &mut Io,
        now_ms: u64,
        m: &Msg,
        code: u16,
        reason: &str,
        p: Pending,
    ) {
        let name = if code == 407 {
            "Proxy-Authenticate"
        } else {
            "WWW-Authenticate"
        };
        // Whole header values: a challenge has commas of its own.
        let values = m
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str());
        let Some(challenge) = client_auth::choose(values, self.cfg.realm.as_deref()) else {
            self.auth = None;
            return self.refused(
                io,
                now_ms,
                p.expires,
                code,
                format!("{reason}: no challenge we can answer"),
            );
        };
        let mut attempt = p.attempt;
        if attempt.answered {
            if challenge.stale && !attempt.stale_retried {
                attempt.stale_retried = true;
            } else {
                self.auth = None;
                return self.refused(
                    io,
                    now_ms,
                    p.expires,
                    code,
                    format!("{reason}: credentials refused"),
                );
            }
        }
        attempt.answered = true;
        self.auth = Some(AuthCache {
            challenge,
            proxy: code == 407,
            nc: 0,
        });
        self.send(io, now_ms, p.expires, attempt);
    }

    /// Authentication failed for good in this attempt.
    pub(super) fn refused(
        &mut self,
        io: &mut Io,
        now_ms: u64,
        expires: u32,
        code: u16,
        reason: String,
    ) {
        if expires == 0 {
            // Our unregister was refused: nothing more to do about it.
            self.unregistered(io, now_ms);
        } else {
            self.reject(io, now_ms, code, reason, 0);
        }
    }

    /// The expiry a 2xx granted our Contact.
    pub(super) fn granted(&self, io: &Io, m: &Msg, asked: u32) -> u32 {
        let host = self
            .to
            .map_or(io.local_host.as_str(), |to| io.host_for(to.transport));
        let ours = format!("sip:{}@{host}", self.cfg.contact_user);
        let from_contact = m.header_list("Contact").into_iter().find_map(|c| {
            let uri = msg::addr_uri(c);
            let base = uri.split(';').next().unwrap_or(uri);
            base.eq_ignore_ascii_case(&ours)
                .then(|| msg::param(c, "expires"))
                .flatten()
                .and_then(|v| v.parse::<u32>().ok())
        });
        from_contact
            .or_else(|| {
                m.header("Expires")
                    .and_then(|v| v.trim().parse::<u32>().ok())
            })
            .unwrap_or(asked)
            // A registrar may shorten the interval, not lengthen it (RFC
            // 3261 10.3): a longer grant is refreshed as if we had got what
            // we asked for, early but never late.
            .min(asked)
    }

    pub(super) fn registered(&mut self, io: &mut Io, now_ms: u64, granted: u32) {
        self.failures = 0;
        self.registered_at_ms = Some(now_ms);
        self.expires_at_ms = Some(now_ms + u64::from(granted) * 1000);
        self.next_at = Some(now_ms + u64::from(refresh_after(granted)) * 1000);
        self.set_state(
            now_ms,
            TrunkRegState::Registered {
                expires_secs: granted,
            },
        );
        self.event(
            io,
            now_ms,
            TrunkEventKind::Registered {
                expires_secs: granted,
            },
        );
    }

    /// Counts a failure; the next attempt's time, or `None` when
    /// `max_retries` is used up.
    pub(super) fn count_failure(&mut self) -> bool {
        self.failures = self.failures.saturating_add(1);
        self.cfg.max_retries == 0 || self.failures <= self.cfg.max_retries
    }

    pub(super) fn fail(
        &mut self,
        io: &mut Io,
        now_ms: u64,
        reason: String,
        retry_after_secs: Option<u64>,
    ) {
        let retry = self.count_failure().then(|| {
            now_ms
                + match retry_after_secs {
                    Some(s) => s.min(MAX_RETRY_AFTER_SECS) * 1000,
                    None => backoff_ms(self.cfg.retry_interval_secs, self.failures, io.rng.next()),
                }
        });
        self.next_at = retry;
        self.set_state(
            now_ms,
            TrunkRegState::Failed {
                reason: reason.clone(),
            },
        );
        self.event(
            io,
            now_ms,
            TrunkEventKind::Failed {
                reason,
                retry_at_ms: retry,
            },
        );
    }

    /// Refused by the registrar; tried again after `retry_secs` when not 0.
    pub(super) fn reject(
        &mut self,
        io: &mut Io,
        now_ms: u64,
        code: u16,
        reason: String,
        retry_secs: u32,
    ) {
        self.auth = None;
        let retry =
            (self.count_failure() && retry_secs > 0).then(|| now_ms + u64::from(retry_secs) * 1000);
        self.next_at = retry;
        self.set_state(
            now_ms,
            TrunkRegState::Rejected {
                code,
                reason: reason.clone(),
            },
        );
        self.event(
            io,
            now_ms,
            TrunkEventKind::Rejected {
                code,
                reason,
                retry_at_ms: retry,
            },
        );
    }

    /// Our unregister ended (answered, refused or unanswered).
    pub(super) fn unregistered(&mut self, io: &mut Io, now_ms: u64) {
        self.maybe_bound = false;
        self.expires_at_ms = None;
        self.set_state(now_ms, TrunkRegState::Unregistered);
        self.event(io, now_ms, TrunkEventKind::Unregistered);
    }
}
