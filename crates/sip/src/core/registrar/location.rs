//! Location service: bindings per account, kept in memory.
//!
//! Policy when an account already has `max_contacts` bindings and a new one
//! arrives: the binding that expires first is replaced (a softphone that
//! reloads its page gets a new WebSocket flow and must not be locked out
//! until the old binding expires).

use super::super::types::{Source, Transport, UDP_FLOW};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Contact header element as received (without `expires`).
    pub contact: String,
    /// The Contact URI.
    pub uri: String,
    pub expires_at_ms: u64,
    pub registered_at_ms: u64,
    /// The flow the REGISTER came in on: requests go back over it (RFC 5626).
    pub src: Source,
    pub instance: Option<String>,
    pub reg_id: Option<u32>,
    pub call_id: String,
    pub cseq: u32,
    pub user_agent: Option<String>,
}

impl Binding {
    /// Whether a request can reach this contact: over its live flow, over
    /// UDP, or — for a plain TCP or TLS binding restored after a restart
    /// whose connection is gone — by opening a connection to its Contact
    /// address (the shell does, see `shell/dial.rs`). An RFC 5626
    /// (outbound) binding without its flow cannot be reached: the phone
    /// asked for requests over the flow it opened, and re-registers over a
    /// new one when it notices the old one is gone (RFC 5626 section 4.4).
    /// WebSocket flows cannot be opened from our side at all.
    pub fn reachable(&self) -> bool {
        let t = self.src.transport;
        !t.reliable() || self.src.flow != UDP_FLOW || (dialable(t) && self.reg_id.is_none())
    }

    fn same(&self, other: &Binding) -> bool {
        match (&self.instance, &other.instance) {
            (Some(a), Some(b)) => a == b && self.reg_id == other.reg_id,
            _ => self.uri == other.uri,
        }
    }
}

/// Transports the server can open a connection over to reach a contact.
pub fn dialable(t: Transport) -> bool {
    matches!(t, Transport::Tcp | Transport::Tls)
}

#[derive(Debug, Default)]
pub struct Location {
    aors: HashMap<String, Vec<Binding>>,
    count: usize,
}

/// What changed for one account after an operation.
#[derive(Debug, Default)]
pub struct Change {
    pub saved: Vec<Binding>,
    pub removed: Vec<Binding>,
}

impl Location {
    pub fn bindings(&self, username: &str) -> &[Binding] {
        self.aors.get(username).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn total(&self) -> usize {
        self.count
    }

    /// Adds or refreshes a binding (expires > 0) or removes it (expires == 0).
    pub fn update(
        &mut self,
        username: &str,
        b: Binding,
        expires_s: u32,
        max: usize,
        ch: &mut Change,
    ) {
        // Most accounts have one contact: a default Vec would reserve four.
        let list = self
            .aors
            .entry(username.to_string())
            .or_insert_with(|| Vec::with_capacity(1));
        let pos = list.iter().position(|x| x.same(&b));
        if expires_s == 0 {
            if let Some(i) = pos {
                ch.removed.push(list.remove(i));
                self.count -= 1;
            }
        } else if let Some(i) = pos {
            let registered_at = list[i].registered_at_ms;
            list[i] = Binding {
                registered_at_ms: registered_at,
                ..b
            };
            ch.saved.push(list[i].clone());
        } else {
            if list.len() >= max.max(1) {
                // Replace the binding that would expire first.
                if let Some((i, _)) = list.iter().enumerate().min_by_key(|(_, x)| x.expires_at_ms) {
                    ch.removed.push(list.remove(i));
                    self.count -= 1;
                }
            }
            ch.saved.push(b.clone());
            list.push(b);
            self.count += 1;
        }
        if list.is_empty() {
            self.aors.remove(username);
        }
    }

    pub fn remove_all(&mut self, username: &str, ch: &mut Change) {
        if let Some(list) = self.aors.remove(username) {
            self.count -= list.len();
            ch.removed.extend(list);
        }
    }

    /// Drops bindings whose flow closed; returns (username, removed) pairs.
    pub fn flow_closed(&mut self, flow: u64) -> Vec<(String, Vec<Binding>)> {
        self.retain_where(|b| b.src.flow == flow && b.src.transport != Transport::Udp)
    }

    /// Drops expired bindings.
    pub fn expire(&mut self, now_ms: u64) -> Vec<(String, Vec<Binding>)> {
        self.retain_where(|b| b.expires_at_ms <= now_ms)
    }

    fn retain_where(&mut self, drop: impl Fn(&Binding) -> bool) -> Vec<(String, Vec<Binding>)> {
        let mut out = Vec::new();
        let mut removed_total = 0;
        self.aors.retain(|user, list| {
            if list.iter().any(&drop) {
                let (gone, keep): (Vec<_>, Vec<_>) = list.drain(..).partition(|b| drop(b));
                removed_total += gone.len();
                *list = keep;
                out.push((user.clone(), gone));
            }
            !list.is_empty()
        });
        self.count -= removed_total;
        crate::core::compact::map(&mut self.aors);
        out
    }

    /// Restores a binding loaded from storage (no change records).
    pub fn restore(&mut self, username: &str, b: Binding) {
        self.aors
            .entry(username.to_string())
            .or_insert_with(|| Vec::with_capacity(1))
            .push(b);
        self.count += 1;
    }

    pub fn usernames(&self) -> impl Iterator<Item = &String> {
        self.aors.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(uri: &str, exp: u64, inst: Option<&str>) -> Binding {
        Binding {
            contact: format!("<{uri}>"),
            uri: uri.into(),
            expires_at_ms: exp,
            registered_at_ms: 0,
            src: Source {
                flow: 0,
                transport: Transport::Udp,
                peer: ([127, 0, 0, 1], 5070).into(),
            },
            instance: inst.map(str::to_string),
            reg_id: inst.map(|_| 1),
            call_id: "c".into(),
            cseq: 1,
            user_agent: None,
        }
    }

    #[test]
    fn add_refresh_replace_remove_expire() {
        let mut r = Location::default();
        let mut ch = Change::default();
        r.update("a", b("sip:a@1", 10, None), 10, 2, &mut ch);
        r.update("a", b("sip:a@2", 20, None), 20, 2, &mut ch);
        r.update("a", b("sip:a@1", 30, None), 30, 2, &mut ch);
        assert_eq!(r.bindings("a").len(), 2);
        // Third contact replaces the one expiring first (sip:a@2 at 20).
        r.update("a", b("sip:a@3", 40, None), 40, 2, &mut ch);
        let uris: Vec<_> = r.bindings("a").iter().map(|x| x.uri.as_str()).collect();
        assert_eq!(uris, ["sip:a@1", "sip:a@3"]);
        // Same instance with a different URI is the same binding.
        r.update("a", b("sip:x@9", 50, Some("urn:1")), 50, 3, &mut ch);
        r.update("a", b("sip:y@9", 50, Some("urn:1")), 50, 3, &mut ch);
        assert_eq!(r.bindings("a").len(), 3);
        r.update("a", b("sip:a@1", 0, None), 0, 3, &mut ch);
        assert_eq!(r.total(), 2);
        let gone = r.expire(45);
        assert_eq!(gone[0].1.len(), 1);
        assert_eq!(r.total(), 1);
        let mut ch = Change::default();
        r.remove_all("a", &mut ch);
        assert_eq!(r.total(), 0);
        assert_eq!(ch.removed.len(), 1);
    }
}
