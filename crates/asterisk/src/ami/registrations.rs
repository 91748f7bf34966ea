//! Live registration state from AMI: agents' contacts (`ContactStatus`
//! events, `PJSIPShowContacts` / `PJSIPShowEndpoints` listings) and trunks'
//! outbound registrations (`Registry` events,
//! `PJSIPShowRegistrationsOutbound` listings). No IO, no clock.
//!
//! A `Registry` event names the registration by its URIs only
//! (`Username: sip:trunkuser@127.0.0.1:5090`, `Domain: sip:127.0.0.1:5090`);
//! the listing maps those URIs to the trunk's endpoint. An event whose URIs
//! no listing mentioned is reported with `trunk: None`, so that the shell
//! asks for the listing again.

use std::collections::{BTreeMap, HashMap};

use super::frame::Message;

/// State of one registered contact of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactState {
    /// Registered, answering OPTIONS (or just created/updated).
    Reachable,
    /// Registered, not answering OPTIONS.
    Unreachable,
    /// Registered, not qualified (`qualify_frequency = 0`).
    NonQualified,
    /// Registered, state not reported (from `PJSIPShowEndpoints`).
    Unknown,
}

impl ContactState {
    /// `Reachable`, `Unreachable`, `NonQualified`, `Unknown`, and the
    /// `ContactStatus` event's `Created` / `Updated`; `None` for `Removed`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Reachable" | "Created" | "Updated" => Self::Reachable,
            "Unreachable" => Self::Unreachable,
            "NonQualified" => Self::NonQualified,
            "Removed" => return None,
            _ => Self::Unknown,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The endpoint (for an agent: its SIP account's endpoint name).
    pub endpoint: String,
    pub aor: String,
    pub uri: String,
    pub state: ContactState,
    pub rtt_us: Option<u64>,
    pub user_agent: Option<String>,
}

/// A trunk's outbound registration state, as Asterisk names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrunkRegState {
    Registered,
    Unregistered,
    Rejected,
    Failed,
    Other(String),
}

impl TrunkRegState {
    pub fn parse(s: &str) -> Self {
        match s {
            "Registered" => Self::Registered,
            "Unregistered" => Self::Unregistered,
            "Rejected" => Self::Rejected,
            "Failed" => Self::Failed,
            o => Self::Other(o.to_string()),
        }
    }

    /// The engine interface's vocabulary (`registered`, `unregistered`,
    /// `rejected`, `failed`, `registering`).
    pub fn as_engine_state(&self) -> &str {
        match self {
            Self::Registered => "registered",
            Self::Unregistered => "unregistered",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
            Self::Other(_) => "registering",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkRegistration {
    /// The trunk's endpoint name (the wizard section).
    pub trunk: String,
    pub client_uri: String,
    pub server_uri: String,
    pub state: TrunkRegState,
    /// When this state was reported (ms since the epoch, the caller's).
    pub since_ms: u64,
    /// The registration object's name (`ObjectName` of the listing,
    /// `trunk-test-reg-0`), for `PJSIPRegister`.
    pub object_name: Option<String>,
}

/// A change worth telling the console about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationChange {
    /// `state` `None`: the contact was removed.
    Contact {
        endpoint: String,
        uri: String,
        state: Option<ContactState>,
    },
    /// `trunk` `None`: URIs no listing mentioned (ask for one).
    Trunk {
        trunk: Option<String>,
        state: TrunkRegState,
    },
}

/// Live registration state of agents and trunks.
#[derive(Debug, Default)]
pub struct Registrations {
    /// By (endpoint, uri).
    contacts: BTreeMap<(String, String), Contact>,
    trunks: BTreeMap<String, TrunkRegistration>,
    by_uris: HashMap<(String, String), String>,
}

impl Registrations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Contacts of `endpoint`.
    pub fn contacts_of<'a>(&'a self, endpoint: &'a str) -> impl Iterator<Item = &'a Contact> + 'a {
        self.contacts
            .values()
            .filter(move |c| c.endpoint == endpoint)
    }

    /// Whether `endpoint` has a registered contact that is not known to be
    /// unreachable.
    pub fn is_registered(&self, endpoint: &str) -> bool {
        self.contacts_of(endpoint)
            .any(|c| c.state != ContactState::Unreachable)
    }

    pub fn contact_count(&self) -> usize {
        self.contacts.len()
    }

    pub fn trunk(&self, name: &str) -> Option<&TrunkRegistration> {
        self.trunks.get(name)
    }

    pub fn trunks(&self) -> impl Iterator<Item = &TrunkRegistration> {
        self.trunks.values()
    }

    /// Replaces every contact with the `ContactList` items of a
    /// `PJSIPShowContacts` answer.
    pub fn apply_contact_list<'a>(&mut self, items: impl IntoIterator<Item = &'a Message>) {
        self.contacts.clear();
        for m in items {
            if !m.is("Event", "ContactList") {
                continue;
            }
            let (Some(uri), Some(endpoint)) = (m.get("Uri"), m.get("Endpoint")) else {
                continue;
            };
            // ObjectName is `<aor>;@<hash>`.
            let aor = m
                .get("ObjectName")
                .and_then(|n| n.split(";@").next())
                .unwrap_or(endpoint);
            let Some(state) = ContactState::parse(m.get("Status").unwrap_or("")) else {
                continue;
            };
            self.contacts.insert(
                (endpoint.to_string(), uri.to_string()),
                Contact {
                    endpoint: endpoint.to_string(),
                    aor: aor.to_string(),
                    uri: uri.to_string(),
                    state,
                    rtt_us: m.get("RoundtripUsec").and_then(|v| v.parse().ok()),
                    user_agent: m
                        .get("UserAgent")
                        .filter(|v| !v.is_empty())
                        .map(str::to_string),
                },
            );
        }
    }

    /// Replaces every contact with those the `EndpointList` items of a
    /// `PJSIPShowEndpoints` answer name (`Contacts: 2001/sip:2001@127.0.0.1:15071,`),
    /// state unknown.
    pub fn apply_endpoint_list<'a>(&mut self, items: impl IntoIterator<Item = &'a Message>) {
        self.contacts.clear();
        for m in items {
            if !m.is("Event", "EndpointList") {
                continue;
            }
            let Some(endpoint) = m.get("ObjectName") else {
                continue;
            };
            for c in m.get("Contacts").unwrap_or("").split(',') {
                let Some((aor, uri)) = c.trim().split_once('/') else {
                    continue;
                };
                self.contacts.insert(
                    (endpoint.to_string(), uri.to_string()),
                    Contact {
                        endpoint: endpoint.to_string(),
                        aor: aor.to_string(),
                        uri: uri.to_string(),
                        state: ContactState::Unknown,
                        rtt_us: None,
                        user_agent: None,
                    },
                );
            }
        }
    }

    /// Learns (and replaces) trunk registrations from the
    /// `OutboundRegistrationDetail` items of `PJSIPShowRegistrationsOutbound`.
    pub fn apply_outbound_registrations<'a>(
        &mut self,
        items: impl IntoIterator<Item = &'a Message>,
        at_ms: u64,
    ) {
        self.trunks.clear();
        self.by_uris.clear();
        for m in items {
            if !m.is("Event", "OutboundRegistrationDetail") {
                continue;
            }
            let (Some(trunk), Some(client), Some(server)) =
                (m.get("Endpoint"), m.get("ClientUri"), m.get("ServerUri"))
            else {
                continue;
            };
            let trunk = if trunk.is_empty() {
                // A registration without `endpoint=`: its own name.
                m.get("ObjectName").unwrap_or("").to_string()
            } else {
                trunk.to_string()
            };
            self.by_uris
                .insert((client.to_string(), server.to_string()), trunk.clone());
            self.trunks.insert(
                trunk.clone(),
                TrunkRegistration {
                    trunk,
                    client_uri: client.to_string(),
                    server_uri: server.to_string(),
                    state: TrunkRegState::parse(m.get("Status").unwrap_or("")),
                    since_ms: at_ms,
                    object_name: m.get("ObjectName").map(str::to_string),
                },
            );
        }
    }

    /// Applies a `ContactStatus` or `Registry` event.
    pub fn handle(&mut self, m: &Message, at_ms: u64) -> Option<RegistrationChange> {
        match m.event()? {
            "ContactStatus" => {
                let uri = m.get("URI")?.to_string();
                let endpoint = m.get("EndpointName")?.to_string();
                let state = ContactState::parse(m.get("ContactStatus").unwrap_or(""));
                let key = (endpoint.clone(), uri.clone());
                match state {
                    Some(s) => {
                        let c = self.contacts.entry(key).or_insert_with(|| Contact {
                            endpoint: endpoint.clone(),
                            aor: m.get("AOR").unwrap_or(&endpoint).to_string(),
                            uri: uri.clone(),
                            state: s,
                            rtt_us: None,
                            user_agent: None,
                        });
                        c.state = s;
                        if let Some(rtt) = m.get("RoundtripUsec").and_then(|v| v.parse().ok()) {
                            c.rtt_us = Some(rtt);
                        }
                        if let Some(ua) = m.get("UserAgent").filter(|v| !v.is_empty()) {
                            c.user_agent = Some(ua.to_string());
                        }
                    }
                    None => {
                        self.contacts.remove(&key);
                    }
                }
                Some(RegistrationChange::Contact {
                    endpoint,
                    uri,
                    state,
                })
            }
            "Registry" => {
                if !m.is("ChannelType", "PJSIP") {
                    return None;
                }
                let client = m.get("Username")?.to_string();
                let server = m.get("Domain")?.to_string();
                let state = TrunkRegState::parse(m.get("Status").unwrap_or(""));
                let trunk = self.by_uris.get(&(client.clone(), server.clone())).cloned();
                if let Some(t) = &trunk {
                    let object_name = self.trunks.get(t).and_then(|r| r.object_name.clone());
                    self.trunks.insert(
                        t.clone(),
                        TrunkRegistration {
                            trunk: t.clone(),
                            client_uri: client,
                            server_uri: server,
                            state: state.clone(),
                            since_ms: at_ms,
                            object_name,
                        },
                    );
                }
                Some(RegistrationChange::Trunk { trunk, state })
            }
            _ => None,
        }
    }
}
