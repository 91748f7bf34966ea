//! The registrar (save/lookup policy, RFC 3261 section 10.3) over the
//! location table in `location.rs`. Authentication happens before: this
//! module gets an authenticated account and decides what the REGISTER does.

pub mod location;

use super::msg::{self, response, strip_param, Msg};
use super::types::{Account, BindingRecord, Outbox, Output, Source, StoreOp, Transport, UDP_FLOW};
use location::{Binding, Change, Location};

pub struct Registrar {
    location: Location,
    min_expires: u32,
    max_expires: u32,
    default_expires: u32,
    max_contacts: usize,
}

impl Registrar {
    pub fn new(
        min_expires: u32,
        max_expires: u32,
        default_expires: u32,
        max_contacts: usize,
    ) -> Self {
        Registrar {
            location: Location::default(),
            min_expires,
            max_expires,
            default_expires,
            max_contacts,
        }
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Carries out an authenticated REGISTER; returns the response to send.
    pub fn handle_register(
        &mut self,
        now_ms: u64,
        src: Source,
        m: &Msg,
        account: &Account,
        out: &mut Outbox,
    ) -> Msg {
        let to_user = msg::uri_user(msg::addr_uri(m.header("To").unwrap_or(""))).unwrap_or("");
        if to_user != account.username && to_user != account.extension {
            return response(m, 403, "Forbidden", None);
        }
        let contacts = m.header_list("Contact");
        let header_exp = m
            .header("Expires")
            .and_then(|e| e.trim().parse::<u32>().ok());
        let user = account.username.as_str();
        let mut ch = Change::default();
        if contacts.contains(&"*") {
            if contacts.len() != 1 || header_exp != Some(0) {
                return response(m, 400, "Bad Request", None);
            }
            self.location.remove_all(user, &mut ch);
            if !ch.removed.is_empty() {
                out.push_back(Output::Store(StoreOp::RemoveAll {
                    username: user.to_string(),
                }));
            }
        } else {
            // Check every Contact before changing anything.
            let mut plan = Vec::with_capacity(contacts.len());
            for c in &contacts {
                let exp = msg::param(c, "expires")
                    .and_then(|e| e.parse::<u32>().ok())
                    .or(header_exp)
                    .unwrap_or(self.default_expires);
                if exp != 0 && exp < self.min_expires {
                    let mut r = response(m, 423, "Interval Too Brief", None);
                    r.headers
                        .push(("Min-Expires".into(), self.min_expires.to_string()));
                    return r;
                }
                plan.push((*c, exp.min(self.max_expires)));
            }
            let (cseq, _) = m.cseq();
            let ua = m
                .header("User-Agent")
                .map(|s| s.chars().take(200).collect::<String>());
            for (c, exp) in plan {
                let b = Binding {
                    contact: strip_param(c, "expires"),
                    uri: msg::addr_uri(c).to_string(),
                    expires_at_ms: now_ms + exp as u64 * 1000,
                    registered_at_ms: now_ms,
                    src,
                    instance: msg::param(c, "+sip.instance").map(|s| s.to_string()),
                    reg_id: msg::param(c, "reg-id").and_then(|s| s.parse().ok()),
                    call_id: m.call_id().to_string(),
                    cseq,
                    user_agent: ua.clone(),
                };
                self.location
                    .update(user, b, exp, self.max_contacts, &mut ch);
            }
        }
        for b in &ch.removed {
            out.push_back(Output::Store(StoreOp::Remove {
                username: user.to_string(),
                contact: b.uri.clone(),
            }));
        }
        for b in &ch.saved {
            out.push_back(Output::Store(StoreOp::Save(record(user, b))));
        }
        let mut r = response(m, 200, "OK", None);
        for b in self.location.bindings(user) {
            let left = b.expires_at_ms.saturating_sub(now_ms).div_ceil(1000);
            r.headers
                .push(("Contact".into(), format!("{};expires={left}", b.contact)));
        }
        let count_changed =
            ch.saved.iter().any(|b| b.registered_at_ms == now_ms) || !ch.removed.is_empty();
        if count_changed {
            let ua = m.header("User-Agent").map(str::to_string);
            self.push_state(user, &account.extension, ua, out);
        }
        r
    }

    /// Drops every binding of an account (deactivated, deleted, rotated).
    pub fn remove_all(&mut self, username: &str, extension: &str, out: &mut Outbox) {
        let mut ch = Change::default();
        self.location.remove_all(username, &mut ch);
        if !ch.removed.is_empty() {
            out.push_back(Output::Store(StoreOp::RemoveAll {
                username: username.to_string(),
            }));
            self.push_state(username, extension, None, out);
        }
    }

    /// A TCP/TLS/WS connection closed: its bindings go with it.
    pub fn flow_closed(&mut self, flow: u64, ext_of: &dyn Fn(&str) -> String, out: &mut Outbox) {
        let gone = self.location.flow_closed(flow);
        self.removed(gone, ext_of, out);
    }

    /// Drops expired bindings.
    pub fn expire(&mut self, now_ms: u64, ext_of: &dyn Fn(&str) -> String, out: &mut Outbox) {
        let gone = self.location.expire(now_ms);
        self.removed(gone, ext_of, out);
    }

    fn removed(
        &mut self,
        gone: Vec<(String, Vec<Binding>)>,
        ext_of: &dyn Fn(&str) -> String,
        out: &mut Outbox,
    ) {
        for (user, list) in gone {
            for b in list {
                out.push_back(Output::Store(StoreOp::Remove {
                    username: user.clone(),
                    contact: b.uri,
                }));
            }
            self.push_state(&user, &ext_of(&user), None, out);
        }
    }

    /// Restores a persisted binding at startup.
    pub fn restore(&mut self, r: BindingRecord) {
        // The connection the phone registered over is gone. A plain TCP or
        // TLS phone listens on its Contact address (RFC 3261 section 18.2.1
        // and 19.1.2: port 5061 when a TLS Contact names none): connect
        // there, but only to the address it registered from (never a third
        // party it names).
        let peer = match (r.transport, r.reg_id) {
            (t, None) if location::dialable(t) => {
                let default_port = if t == Transport::Tls { 5061 } else { 5060 };
                msg::uri_host_port_or(&r.contact, default_port)
                    .filter(|a| a.ip() == r.source.ip())
                    .unwrap_or(r.source)
            }
            _ => r.source,
        };
        let b = Binding {
            contact: format!("<{}>", r.contact),
            uri: r.contact,
            expires_at_ms: r.expires_at_ms,
            registered_at_ms: r.registered_at_ms,
            src: Source {
                flow: UDP_FLOW,
                transport: r.transport,
                peer,
            },
            instance: r.instance_id,
            reg_id: r.reg_id,
            call_id: r.call_id,
            cseq: r.cseq,
            user_agent: r.user_agent,
        };
        self.location.restore(&r.username, b);
    }

    fn push_state(&self, user: &str, ext: &str, ua: Option<String>, out: &mut Outbox) {
        let list = self.location.bindings(user);
        let ip = list.last().map(|b| b.src.peer.ip().to_string());
        let ua = ua.or_else(|| list.last().and_then(|b| b.user_agent.clone()));
        out.push_back(Output::Store(StoreOp::State {
            username: user.to_string(),
            extension: ext.to_string(),
            registered: !list.is_empty(),
            contacts: list.len(),
            user_agent: ua,
            ip,
        }));
    }
}

fn record(user: &str, b: &Binding) -> BindingRecord {
    BindingRecord {
        username: user.to_string(),
        contact: b.uri.clone(),
        transport: b.src.transport,
        source: b.src.peer,
        user_agent: b.user_agent.clone(),
        instance_id: b.instance.clone(),
        reg_id: b.reg_id,
        call_id: b.call_id.clone(),
        cseq: b.cseq,
        expires_at_ms: b.expires_at_ms,
        registered_at_ms: b.registered_at_ms,
    }
}
