//! SIP trunks as data: their settings, validation, the presets of each
//! trunk kind (seeds/003), the effective SIP configuration a trunk gives
//! (`preview`), and the service that stores them (admin changes audited).
//!
//! What is stored is always a complete, valid [`TrunkSettings`]: a request
//! ([`TrunkInput`]) is laid over the kind's [`Preset`] (creation, or a
//! change of kind) or over the stored settings (update), then checked as a
//! whole. The two digest passwords are write-only: they are stored because
//! a digest client needs them, kept in a [`Secret`] whose `Debug` hides
//! them, and no view or audit entry ever carries them.
//!
//! Live state (registered, last error) and the call counters are written
//! by the SIP side through [`TrunkService::report_registration`] and
//! [`TrunkService::count_call`], never by a request.

use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use store::trunks::{ListFilter, TrunkRow, TrunkValues};

use crate::time::{from_ms, now_ms, opt_from_ms};
use crate::{audit, Actor, Db, DomainError, Event, EventBus, Services};

// ---------------------------------------------------------------------
// Vocabulary
// ---------------------------------------------------------------------

/// Implements `as_str`, `parse` (with a clear message listing the
/// accepted values) and `ALL` for a plain enum of text values.
macro_rules! text_enum {
    ($name:ident, $field:literal, [$($variant:ident => $text:literal $(| $alias:literal)*),+ $(,)?]) => {
        impl $name {
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            /// The value named `s` (ASCII case ignored, surrounding blanks
            /// trimmed).
            pub fn parse(s: &str) -> Result<Self, DomainError> {
                let t = s.trim().to_ascii_lowercase();
                match t.as_str() {
                    $($text $(| $alias)* => Ok(Self::$variant),)+
                    _ => Err(DomainError::invalid(
                        $field,
                        format!(
                            "must be one of {}",
                            [$($text),+].join(", ")
                        ),
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// Who runs the far end (seeds/001).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrunkProvider {
    Twilio,
    Vonage,
    Bandwidth,
    Custom,
}
text_enum!(TrunkProvider, "provider", [
    Twilio => "twilio", Vonage => "vonage", Bandwidth => "bandwidth", Custom => "custom",
]);

/// Where the far end is and how it is reached (seeds/003's trunk types);
/// each kind has a [`Preset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrunkKind {
    /// A carrier on the internet reached through NAT: registers,
    /// symmetric RTP, rport, contact rewriting, keep-alive OPTIONS.
    NatProvider,
    /// A carrier reached without NAT (public address or a private link).
    NoNat,
    /// Another PBX on the LAN: no registration, recognised by address,
    /// no NAT handling, trusted caller identity.
    PbxLan,
    /// Another site of the company (over the internet or a VPN):
    /// registers, NAT handling, trusted caller identity.
    Corporate,
    /// Nothing assumed: SIP's own defaults, every setting by hand.
    Custom,
}
text_enum!(TrunkKind, "kind", [
    NatProvider => "nat_provider", NoNat => "no_nat", PbxLan => "pbx_lan",
    Corporate => "corporate", Custom => "custom",
]);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrunkTransport {
    Udp,
    Tcp,
    Tls,
}
text_enum!(TrunkTransport, "transport", [Udp => "udp", Tcp => "tcp", Tls => "tls"]);

/// How DTMF digits travel. `rfc4733` (telephone-event packets, what
/// carriers expect; `rfc2833` is accepted as its old name), `info` (SIP
/// INFO), `inband` (tones in the audio), `auto` (RFC 4733 when the far end
/// offers it, else in band).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DtmfMode {
    Rfc4733,
    Info,
    Inband,
    Auto,
}
text_enum!(DtmfMode, "dtmfMode", [
    Rfc4733 => "rfc4733" | "rfc2833", Info => "info", Inband => "inband", Auto => "auto",
]);

/// `active` trunks carry calls; `inactive` and `maintenance` are kept out
/// of routing by the administrator; `error` by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrunkStatus {
    Active,
    Inactive,
    Maintenance,
    Error,
}
text_enum!(TrunkStatus, "status", [
    Active => "active", Inactive => "inactive", Maintenance => "maintenance", Error => "error",
]);

/// RFC 4028 session timers: `no` (never), `yes` (when the far end asks or
/// supports them), `required` (refuse a far end without them), `always`
/// (ask for them every time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionTimers {
    No,
    Yes,
    Required,
    Always,
}
text_enum!(SessionTimers, "sessionTimers", [
    No => "no", Yes => "yes", Required => "required", Always => "always",
]);

/// The codecs a trunk may offer, by their RTP names (`ulaw`/`alaw`, the
/// Asterisk names, are accepted for PCMU/PCMA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Codec {
    Pcmu,
    Pcma,
    Opus,
    G722,
    G729,
}
text_enum!(Codec, "codecs", [
    Pcmu => "pcmu" | "ulaw" | "g711u", Pcma => "pcma" | "alaw" | "g711a", Opus => "opus",
    G722 => "g722", G729 => "g729",
]);

impl Codec {
    /// The name in an Asterisk `allow=` line.
    pub fn asterisk_name(self) -> &'static str {
        match self {
            Self::Pcmu => "ulaw",
            Self::Pcma => "alaw",
            other => other.as_str(),
        }
    }
}

// ---------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------

pub const MAX_NAME: usize = 100;
pub const MAX_DESCRIPTION: usize = 500;
pub const MAX_HOST: usize = 253;
pub const MAX_URI: usize = 255;
pub const MAX_USER: usize = 64;
pub const MAX_SECRET: usize = 128;
pub const MAX_MATCH_ENTRIES: usize = 32;
/// Serialized `advancedSettings`, bytes.
pub const MAX_ADVANCED: usize = 16 * 1024;
/// Registration expiry, seconds (seeds/003's form: 60..7200).
pub const EXPIRY_RANGE: (i64, i64) = (60, 7200);
/// Registration retry interval, seconds (seeds/003's form: 10..3600).
pub const RETRY_RANGE: (i64, i64) = (10, 3600);
pub const MAX_RETRIES: i64 = 10_000;
/// Retry after a 403, seconds; 0 = a 403 is final.
pub const FORBIDDEN_RETRY_MAX: i64 = 3600;
/// OPTIONS keep-alive, seconds; 0 = off.
pub const QUALIFY_MAX: i64 = 3600;
pub const SESSION_EXPIRES_RANGE: (i64, i64) = (90, 86_400);
pub const MAX_PRIORITY: i64 = 1000;
/// 0 = no limit.
pub const MAX_CHANNELS: i64 = 100_000;

/// What a masked secret looks like in a preview.
pub const MASK: &str = "********";

// ---------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------

/// A password kept for the SIP side. `Debug` never shows it; there is no
/// `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The password itself, for the digest computation only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Everything an administrator sets on a trunk, complete and valid.
#[derive(Debug, Clone, PartialEq)]
pub struct TrunkSettings {
    pub name: String,
    pub description: Option<String>,
    pub provider: TrunkProvider,
    pub kind: TrunkKind,
    pub host: String,
    pub port: u16,
    pub transport: TrunkTransport,
    /// Outbound authentication: centralita answers the far end's digest
    /// challenges with these.
    pub sends_auth: bool,
    pub outbound_username: Option<String>,
    pub outbound_secret: Option<Secret>,
    /// Realm to answer; `None` answers any realm.
    pub outbound_realm: Option<String>,
    /// Inbound digest authentication of the far end.
    pub accepts_auth: bool,
    pub inbound_username: Option<String>,
    pub inbound_secret: Option<Secret>,
    /// Source addresses (IP, CIDR or host name) recognised as this trunk;
    /// empty = the trunk's host (unless it registers to us).
    pub inbound_match: Vec<String>,
    pub sends_registration: bool,
    /// The far end registers to us (a PBX behind NAT).
    pub accepts_registrations: bool,
    /// `None`: `sip:host:port` (with the transport).
    pub registration_server_uri: Option<String>,
    /// `None`: `sip:user@host`, user the auth username or `fromUser`.
    pub registration_client_uri: Option<String>,
    pub registration_expiry: u32,
    pub registration_retry_interval: u32,
    pub registration_max_retries: u32,
    /// 0: a 403 ends the attempts.
    pub registration_forbidden_retry: u32,
    /// In order of preference, at least one, no duplicates.
    pub codecs: Vec<Codec>,
    pub dtmf_mode: DtmfMode,
    pub rtp_symmetric: bool,
    pub force_rport: bool,
    pub rewrite_contact: bool,
    /// OPTIONS keep-alive, seconds; 0 = off.
    pub qualify_frequency: u32,
    /// The address put in SDP for media instead of the server's own.
    pub media_address: Option<String>,
    pub session_timers: SessionTimers,
    pub session_expires: u32,
    pub session_min_se: u32,
    pub from_user: Option<String>,
    pub from_domain: Option<String>,
    /// The identity sent in P-Asserted-Identity (a number or SIP URI);
    /// `None` = the caller's own.
    pub pai: Option<String>,
    pub send_pai: bool,
    /// Believe the caller identity (PAI / Remote-Party-ID) this trunk sends.
    pub trust_remote_party_id: bool,
    /// Simultaneous calls; 0 = no limit.
    pub max_channels: u32,
    /// Lower goes first.
    pub priority: u32,
    pub status: TrunkStatus,
    /// A JSON object for settings without a field of their own.
    pub advanced_settings: Map<String, Value>,
}

/// What a kind fills in when a request leaves it out (seeds/003: "al
/// seleccionar tipo de troncal, ajusta opciones automáticamente").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preset {
    pub sends_registration: bool,
    pub rtp_symmetric: bool,
    pub force_rport: bool,
    pub rewrite_contact: bool,
    pub qualify_frequency: u32,
    pub codecs: &'static [Codec],
    pub dtmf_mode: DtmfMode,
    pub session_timers: SessionTimers,
    pub send_pai: bool,
    pub trust_remote_party_id: bool,
}

impl Preset {
    pub fn of(kind: TrunkKind) -> Self {
        use Codec::{Pcma, Pcmu, G722};
        // NAT handling is the one remedy for one-way audio and lost
        // in-dialog requests behind NAT (research §D5): symmetric RTP,
        // rport and contact rewriting go together. A LAN PBX or a company
        // site is trusted with the caller identity it sends; a carrier is
        // not. Keep-alive OPTIONS every 60 s keep a NAT binding open and
        // notice a dead carrier; 30 s on a LAN, where it costs nothing.
        match kind {
            TrunkKind::NatProvider => Self {
                sends_registration: true,
                rtp_symmetric: true,
                force_rport: true,
                rewrite_contact: true,
                qualify_frequency: 60,
                codecs: &[Pcmu, Pcma],
                dtmf_mode: DtmfMode::Rfc4733,
                session_timers: SessionTimers::Yes,
                send_pai: false,
                trust_remote_party_id: false,
            },
            TrunkKind::NoNat => Self {
                sends_registration: true,
                rtp_symmetric: false,
                force_rport: false,
                rewrite_contact: false,
                qualify_frequency: 60,
                codecs: &[Pcmu, Pcma],
                dtmf_mode: DtmfMode::Rfc4733,
                session_timers: SessionTimers::Yes,
                send_pai: false,
                trust_remote_party_id: false,
            },
            TrunkKind::PbxLan => Self {
                sends_registration: false,
                rtp_symmetric: false,
                force_rport: false,
                rewrite_contact: false,
                qualify_frequency: 30,
                codecs: &[Pcmu, Pcma, G722],
                dtmf_mode: DtmfMode::Rfc4733,
                session_timers: SessionTimers::Yes,
                send_pai: true,
                trust_remote_party_id: true,
            },
            TrunkKind::Corporate => Self {
                sends_registration: true,
                rtp_symmetric: true,
                force_rport: true,
                rewrite_contact: true,
                qualify_frequency: 60,
                codecs: &[Pcmu, Pcma, G722],
                dtmf_mode: DtmfMode::Rfc4733,
                session_timers: SessionTimers::Yes,
                send_pai: true,
                trust_remote_party_id: true,
            },
            // SIP's (and PJSIP's) own defaults.
            TrunkKind::Custom => Self {
                sends_registration: false,
                rtp_symmetric: false,
                force_rport: true,
                rewrite_contact: false,
                qualify_frequency: 0,
                codecs: &[Pcmu, Pcma],
                dtmf_mode: DtmfMode::Rfc4733,
                session_timers: SessionTimers::Yes,
                send_pai: false,
                trust_remote_party_id: false,
            },
        }
    }

    fn apply(&self, s: &mut TrunkSettings) {
        s.sends_registration = self.sends_registration;
        s.rtp_symmetric = self.rtp_symmetric;
        s.force_rport = self.force_rport;
        s.rewrite_contact = self.rewrite_contact;
        s.qualify_frequency = self.qualify_frequency;
        s.codecs = self.codecs.to_vec();
        s.dtmf_mode = self.dtmf_mode;
        s.session_timers = self.session_timers;
        s.send_pai = self.send_pai;
        s.trust_remote_party_id = self.trust_remote_party_id;
    }
}

impl TrunkSettings {
    /// A trunk of `kind` to `host` with the kind's preset and the
    /// defaults of seeds/001 (port 5060, or 5061 over TLS; 10 channels;
    /// priority 10; active).
    fn preset(name: String, host: String, kind: TrunkKind) -> Self {
        let mut s = Self {
            name,
            description: None,
            provider: TrunkProvider::Custom,
            kind,
            host,
            port: 5060,
            transport: TrunkTransport::Udp,
            sends_auth: false,
            outbound_username: None,
            outbound_secret: None,
            outbound_realm: None,
            accepts_auth: false,
            inbound_username: None,
            inbound_secret: None,
            inbound_match: Vec::new(),
            sends_registration: false,
            accepts_registrations: false,
            registration_server_uri: None,
            registration_client_uri: None,
            registration_expiry: 3600,
            registration_retry_interval: 60,
            registration_max_retries: 10,
            registration_forbidden_retry: 0,
            codecs: Vec::new(),
            dtmf_mode: DtmfMode::Rfc4733,
            rtp_symmetric: false,
            force_rport: true,
            rewrite_contact: false,
            qualify_frequency: 0,
            media_address: None,
            session_timers: SessionTimers::Yes,
            session_expires: 1800,
            session_min_se: 90,
            from_user: None,
            from_domain: None,
            pai: None,
            send_pai: false,
            trust_remote_party_id: false,
            max_channels: 10,
            priority: 10,
            status: TrunkStatus::Active,
            advanced_settings: Map::new(),
        };
        Preset::of(kind).apply(&mut s);
        s
    }

    /// The settings of a stored row. A value the database holds but this
    /// build does not know (a later version wrote it) is an internal
    /// error, not a guess.
    pub fn from_row(r: &TrunkRow) -> Result<Self, DomainError> {
        let bad = |what: &str, e: DomainError| {
            DomainError::Internal(format!("trunk {} has a bad stored {what}: {e}", r.id))
        };
        let num = |what: &str, v: i64| {
            u32::try_from(v).map_err(|_| {
                DomainError::Internal(format!("trunk {} has a bad stored {what}: {v}", r.id))
            })
        };
        let codecs = split_list(&r.codecs)
            .map(Codec::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("codec", e))?;
        let advanced = match serde_json::from_str::<Value>(&r.advanced_settings) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(bad(
                    "advanced_settings",
                    DomainError::invalid("json", "object"),
                ))
            }
        };
        Ok(Self {
            name: r.name.clone(),
            description: r.description.clone(),
            provider: TrunkProvider::parse(&r.provider).map_err(|e| bad("provider", e))?,
            kind: TrunkKind::parse(&r.kind).map_err(|e| bad("kind", e))?,
            host: r.host.clone(),
            port: u16::try_from(r.port).map_err(|_| {
                DomainError::Internal(format!("trunk {} has a bad stored port", r.id))
            })?,
            transport: TrunkTransport::parse(&r.transport).map_err(|e| bad("transport", e))?,
            sends_auth: r.sends_auth,
            outbound_username: r.outbound_username.clone(),
            outbound_secret: r.outbound_secret.clone().map(Secret),
            outbound_realm: r.outbound_realm.clone(),
            accepts_auth: r.accepts_auth,
            inbound_username: r.inbound_username.clone(),
            inbound_secret: r.inbound_secret.clone().map(Secret),
            inbound_match: split_list(&r.inbound_match).map(str::to_string).collect(),
            sends_registration: r.sends_registration,
            accepts_registrations: r.accepts_registrations,
            registration_server_uri: r.registration_server_uri.clone(),
            registration_client_uri: r.registration_client_uri.clone(),
            registration_expiry: num("registration_expiry", r.registration_expiry)?,
            registration_retry_interval: num(
                "registration_retry_interval",
                r.registration_retry_interval,
            )?,
            registration_max_retries: num("registration_max_retries", r.registration_max_retries)?,
            registration_forbidden_retry: num(
                "registration_forbidden_retry",
                r.registration_forbidden_retry,
            )?,
            codecs,
            dtmf_mode: DtmfMode::parse(&r.dtmf_mode).map_err(|e| bad("dtmf_mode", e))?,
            rtp_symmetric: r.rtp_symmetric,
            force_rport: r.force_rport,
            rewrite_contact: r.rewrite_contact,
            qualify_frequency: num("qualify_frequency", r.qualify_frequency)?,
            media_address: r.media_address.clone(),
            session_timers: SessionTimers::parse(&r.session_timers)
                .map_err(|e| bad("session_timers", e))?,
            session_expires: num("session_expires", r.session_expires)?,
            session_min_se: num("session_min_se", r.session_min_se)?,
            from_user: r.from_user.clone(),
            from_domain: r.from_domain.clone(),
            pai: r.pai.clone(),
            send_pai: r.send_pai,
            trust_remote_party_id: r.trust_remote_party_id,
            max_channels: num("max_channels", r.max_channels)?,
            priority: num("priority", r.priority)?,
            status: TrunkStatus::parse(&r.status).map_err(|e| bad("status", e))?,
            advanced_settings: advanced,
        })
    }

    /// The source addresses that identify this trunk's requests: the
    /// configured list, else its host, unless the far end registers to us
    /// (then its registration identifies it and an address match would
    /// claim every device behind the same address).
    pub fn effective_inbound_match(&self) -> Vec<String> {
        if !self.inbound_match.is_empty() {
            self.inbound_match.clone()
        } else if self.accepts_registrations {
            Vec::new()
        } else {
            vec![self.host.clone()]
        }
    }

    /// The registrar's URI: the configured one, else `sip:host:port` with
    /// the transport when it is not UDP.
    pub fn effective_server_uri(&self) -> String {
        match &self.registration_server_uri {
            Some(u) => u.clone(),
            None => {
                let scheme = if self.transport == TrunkTransport::Tls {
                    "sips"
                } else {
                    "sip"
                };
                let host = uri_host(&self.host);
                match self.transport {
                    TrunkTransport::Udp => format!("{scheme}:{host}:{}", self.port),
                    t => format!("{scheme}:{host}:{};transport={t}", self.port),
                }
            }
        }
    }

    /// The address of record registered: the configured one, else
    /// `sip:user@host` (user: the auth username, else `fromUser`, else the
    /// trunk's name).
    pub fn effective_client_uri(&self) -> String {
        match &self.registration_client_uri {
            Some(u) => u.clone(),
            None => {
                let user = self
                    .outbound_username
                    .as_deref()
                    .or(self.from_user.as_deref())
                    .unwrap_or(&self.name);
                format!("sip:{}@{}", user.replace(' ', "_"), uri_host(&self.host))
            }
        }
    }

    fn values(&self) -> OwnedValues {
        OwnedValues {
            inbound_match: self.inbound_match.join(","),
            codecs: self
                .codecs
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(","),
            advanced: Value::Object(self.advanced_settings.clone()).to_string(),
        }
    }
}

/// The joined texts a [`TrunkValues`] borrows.
struct OwnedValues {
    inbound_match: String,
    codecs: String,
    advanced: String,
}

fn store_values<'a>(s: &'a TrunkSettings, o: &'a OwnedValues) -> TrunkValues<'a> {
    TrunkValues {
        name: &s.name,
        description: s.description.as_deref(),
        provider: s.provider.as_str(),
        kind: s.kind.as_str(),
        host: &s.host,
        port: i64::from(s.port),
        transport: s.transport.as_str(),
        sends_auth: s.sends_auth,
        outbound_username: s.outbound_username.as_deref(),
        outbound_secret: s.outbound_secret.as_ref().map(Secret::expose),
        outbound_realm: s.outbound_realm.as_deref(),
        accepts_auth: s.accepts_auth,
        inbound_username: s.inbound_username.as_deref(),
        inbound_secret: s.inbound_secret.as_ref().map(Secret::expose),
        inbound_match: &o.inbound_match,
        sends_registration: s.sends_registration,
        accepts_registrations: s.accepts_registrations,
        registration_server_uri: s.registration_server_uri.as_deref(),
        registration_client_uri: s.registration_client_uri.as_deref(),
        registration_expiry: i64::from(s.registration_expiry),
        registration_retry_interval: i64::from(s.registration_retry_interval),
        registration_max_retries: i64::from(s.registration_max_retries),
        registration_forbidden_retry: i64::from(s.registration_forbidden_retry),
        codecs: &o.codecs,
        dtmf_mode: s.dtmf_mode.as_str(),
        rtp_symmetric: s.rtp_symmetric,
        force_rport: s.force_rport,
        rewrite_contact: s.rewrite_contact,
        qualify_frequency: i64::from(s.qualify_frequency),
        media_address: s.media_address.as_deref(),
        session_timers: s.session_timers.as_str(),
        session_expires: i64::from(s.session_expires),
        session_min_se: i64::from(s.session_min_se),
        from_user: s.from_user.as_deref(),
        from_domain: s.from_domain.as_deref(),
        pai: s.pai.as_deref(),
        send_pai: s.send_pai,
        trust_remote_party_id: s.trust_remote_party_id,
        max_channels: i64::from(s.max_channels),
        priority: i64::from(s.priority),
        status: s.status.as_str(),
        advanced_settings: &o.advanced,
    }
}

fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty())
}

/// `host` as it goes in a URI: an IPv6 address in brackets.
fn uri_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

// ---------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------

/// A trunk to create, or the changes to one: every field optional. On
/// creation `name` and `host` are required and what is left out comes
/// from the kind's preset (or the defaults); on update what is left out
/// keeps its value, except that a new `kind` applies its preset to the
/// preset's fields the request leaves out.
///
/// Text fields that may be empty take `null` (or `""`) to clear them. The
/// passwords are write-only: left out or `""`, the stored one is kept;
/// `null` removes it. `username`/`password` (seeds/001) are accepted for
/// `outboundAuthUsername`/`outboundAuthPassword`.
#[derive(Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrunkInput {
    /// Unique (ignoring case); letters, digits, spaces and `. _ -`; 1..100.
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub description: Option<Option<String>>,
    /// twilio | vonage | bandwidth | custom (default custom)
    pub provider: Option<String>,
    /// nat_provider | no_nat | pbx_lan | corporate | custom (default custom)
    pub kind: Option<String>,
    /// Host name or IP address of the far end (no port).
    pub host: Option<String>,
    /// 1..65535 (default 5060, 5061 over TLS).
    pub port: Option<i64>,
    /// udp | tcp | tls (default udp)
    pub transport: Option<String>,
    /// Answer the far end's challenges (default: whether a username is set).
    pub sends_auth: Option<bool>,
    #[serde(default, deserialize_with = "present", alias = "username")]
    #[schema(value_type = Option<String>, nullable)]
    pub outbound_auth_username: Option<Option<String>>,
    /// Write-only.
    #[serde(default, deserialize_with = "present", alias = "password")]
    #[schema(value_type = Option<String>, nullable)]
    pub outbound_auth_password: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub outbound_auth_realm: Option<Option<String>>,
    /// Challenge the far end's requests (default: whether an inbound
    /// username is set).
    pub accepts_auth: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub inbound_auth_username: Option<Option<String>>,
    /// Write-only.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub inbound_auth_password: Option<Option<String>>,
    /// Source addresses (IP, CIDR or host name) recognised as this trunk.
    pub inbound_match: Option<Vec<String>>,
    pub sends_registration: Option<bool>,
    pub accepts_registrations: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub registration_server_uri: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub registration_client_uri: Option<Option<String>>,
    /// Seconds, 60..7200 (default 3600).
    pub registration_expiration: Option<i64>,
    /// Seconds, 10..3600 (default 60).
    pub registration_retry_interval: Option<i64>,
    /// 0..10000 (default 10).
    pub registration_max_retries: Option<i64>,
    /// Seconds before retrying after a 403, 0..3600; 0 = a 403 is final.
    pub registration_forbidden_retry_interval: Option<i64>,
    /// pcmu | pcma | opus | g722 | g729, in order of preference.
    pub codecs: Option<Vec<String>>,
    /// rfc4733 | info | inband | auto
    pub dtmf_mode: Option<String>,
    pub rtp_symmetric: Option<bool>,
    pub force_rport: Option<bool>,
    pub rewrite_contact: Option<bool>,
    /// Seconds between OPTIONS keep-alives, 0..3600; 0 = off.
    pub qualify_frequency: Option<i64>,
    /// An IP address to put in SDP instead of the server's.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub media_address: Option<Option<String>>,
    /// no | yes | required | always
    pub session_timers: Option<String>,
    /// Seconds, 90..86400 (default 1800).
    pub session_expires: Option<i64>,
    /// Seconds, 90..sessionExpires (default 90).
    pub session_min_se: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub from_user: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub from_domain: Option<Option<String>>,
    /// The P-Asserted-Identity to send (number or SIP URI).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub pai: Option<Option<String>>,
    pub send_pai: Option<bool>,
    pub trust_remote_party_id: Option<bool>,
    /// 0..100000; 0 = no limit (default 10).
    pub max_channels: Option<i64>,
    /// 0..1000, lower first (default 10).
    pub priority: Option<i64>,
    /// active | inactive | maintenance | error (default active)
    pub status: Option<String>,
    /// A JSON object (replaces the stored one; at most 16 KiB). Not
    /// secret: it is shown back.
    #[schema(value_type = Option<Object>)]
    pub advanced_settings: Option<Value>,
}

impl fmt::Debug for TrunkInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the passwords: a request may be logged.
        let given = |p: &Option<Option<String>>| match p {
            None => "absent",
            Some(None) => "null",
            Some(Some(_)) => "***",
        };
        f.debug_struct("TrunkInput")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("outbound_auth_username", &self.outbound_auth_username)
            .field(
                "outbound_auth_password",
                &given(&self.outbound_auth_password),
            )
            .field("inbound_auth_username", &self.inbound_auth_username)
            .field("inbound_auth_password", &given(&self.inbound_auth_password))
            .finish_non_exhaustive()
    }
}

/// A field that may be absent (`None`), `null` (`Some(None)`) or a value.
pub(crate) fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

// ---------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------

fn text(field: &'static str, v: &str, max: usize) -> Result<String, DomainError> {
    crate::validate::required(field, v, max)
}

/// No blanks, no control characters, none of `<>"` (they would break a
/// header), at most `max` characters.
fn token(field: &'static str, v: &str, max: usize) -> Result<String, DomainError> {
    let t = text(field, v, max)?;
    if t.chars()
        .any(|c| c.is_whitespace() || matches!(c, '<' | '>' | '"'))
    {
        return Err(DomainError::invalid(
            field,
            "must not contain blanks or < > \"",
        ));
    }
    Ok(t)
}

/// `Some(None)` and `Some(Some(""))` clear; `None` keeps.
fn opt_text<F>(
    v: &Option<Option<String>>,
    keep: &Option<String>,
    check: F,
) -> Result<Option<String>, DomainError>
where
    F: Fn(&str) -> Result<String, DomainError>,
{
    match v {
        None => Ok(keep.clone()),
        Some(None) => Ok(None),
        Some(Some(s)) if s.trim().is_empty() => Ok(None),
        Some(Some(s)) => check(s).map(Some),
    }
}

fn name(v: &str) -> Result<String, DomainError> {
    let n = text("name", v, MAX_NAME)?;
    if !n
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '.' | '_' | '-'))
    {
        return Err(DomainError::invalid(
            "name",
            "may contain letters, digits, spaces and . _ - only",
        ));
    }
    Ok(n)
}

/// Whether `h` is a DNS host name (RFC 1123 labels).
fn is_hostname(h: &str) -> bool {
    h.len() <= MAX_HOST
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// A host name or IP address (an IPv6 address may come in brackets; it
/// is stored without).
pub fn host(field: &'static str, v: &str) -> Result<String, DomainError> {
    let t = v.trim();
    if t.is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    let bare = t
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(t);
    if bare.parse::<IpAddr>().is_ok() {
        return Ok(bare.to_string());
    }
    if is_hostname(t) && !t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Ok(t.to_string());
    }
    let hint = if t.contains(':') && !t.contains("::") {
        " (give the port in port, and no sip: prefix)"
    } else {
        ""
    };
    Err(DomainError::invalid(
        field,
        format!("{t:?} is not a host name or an IP address{hint}"),
    ))
}

fn ip(field: &'static str, v: &str) -> Result<String, DomainError> {
    let t = v.trim();
    t.parse::<IpAddr>()
        .map(|a| a.to_string())
        .map_err(|_| DomainError::invalid(field, format!("{t:?} is not an IP address")))
}

/// An IP address, `IP:port` (over UDP only requests from that port
/// match), a CIDR block or a host name.
fn match_entry(v: &str) -> Result<String, DomainError> {
    let t = v.trim();
    if let Ok(sa) = t.parse::<std::net::SocketAddr>() {
        if sa.port() == 0 {
            return Err(DomainError::invalid(
                "inboundMatch",
                format!("{t:?}: port 0"),
            ));
        }
        return Ok(sa.to_string());
    }
    if let Some((addr, prefix)) = t.split_once('/') {
        let a: IpAddr = addr.parse().map_err(|_| {
            DomainError::invalid("inboundMatch", format!("{t:?}: not an IP address before /"))
        })?;
        let max = if a.is_ipv4() { 32 } else { 128 };
        match prefix.parse::<u8>() {
            Ok(p) if p <= max => return Ok(format!("{a}/{p}")),
            _ => {
                return Err(DomainError::invalid(
                    "inboundMatch",
                    format!("{t:?}: the prefix length must be 0..{max}"),
                ))
            }
        }
    }
    host("inboundMatch", t)
}

fn sip_uri(field: &'static str, v: &str) -> Result<String, DomainError> {
    let t = token(field, v, MAX_URI)?;
    let lower = t.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("sip:")
        .or_else(|| lower.strip_prefix("sips:"));
    match rest {
        Some(r) if !r.is_empty() => Ok(t),
        _ => Err(DomainError::invalid(
            field,
            "must be a SIP URI (sip:host or sip:user@host)",
        )),
    }
}

fn secret(field: &'static str, v: &str) -> Result<Secret, DomainError> {
    // Not trimmed: a password is what it is.
    let n = v.chars().count();
    if n > MAX_SECRET {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {MAX_SECRET} characters"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(Secret(v.to_string()))
}

/// `None` or `""` keep `keep`; `null` clears.
fn opt_secret(
    field: &'static str,
    v: &Option<Option<String>>,
    keep: &Option<Secret>,
) -> Result<Option<Secret>, DomainError> {
    match v {
        None => Ok(keep.clone()),
        Some(None) => Ok(None),
        Some(Some(s)) if s.is_empty() => Ok(keep.clone()),
        Some(Some(s)) => secret(field, s).map(Some),
    }
}

fn in_range(field: &'static str, v: i64, (lo, hi): (i64, i64)) -> Result<u32, DomainError> {
    if !(lo..=hi).contains(&v) {
        return Err(DomainError::invalid(
            field,
            format!("must be between {lo} and {hi}"),
        ));
    }
    // In range, so within u32 (every upper bound here is far below it).
    u32::try_from(v).map_err(|_| DomainError::invalid(field, "out of range"))
}

fn codecs(v: &[String]) -> Result<Vec<Codec>, DomainError> {
    if v.is_empty() {
        return Err(DomainError::invalid("codecs", "name at least one codec"));
    }
    let mut out = Vec::with_capacity(v.len());
    for c in v {
        let codec = Codec::parse(c)?;
        if out.contains(&codec) {
            return Err(DomainError::invalid(
                "codecs",
                format!("{codec} is listed twice"),
            ));
        }
        out.push(codec);
    }
    Ok(out)
}

/// Lays `input` over `base` (or, for a new trunk, over the preset of its
/// kind) and checks the result as a whole.
pub fn resolve(
    input: &TrunkInput,
    base: Option<&TrunkSettings>,
) -> Result<TrunkSettings, DomainError> {
    let kind = input.kind.as_deref().map(TrunkKind::parse).transpose()?;
    let mut s = match base {
        None => {
            let n = name(input.name.as_deref().unwrap_or(""))?;
            let h = host("host", input.host.as_deref().unwrap_or(""))?;
            TrunkSettings::preset(n, h, kind.unwrap_or(TrunkKind::Custom))
        }
        Some(b) => {
            let mut s = b.clone();
            if let Some(k) = kind.filter(|k| *k != b.kind) {
                s.kind = k;
                Preset::of(k).apply(&mut s);
            }
            s
        }
    };
    if let Some(n) = &input.name {
        s.name = name(n)?;
    }
    if let Some(h) = &input.host {
        s.host = host("host", h)?;
    }
    s.description = opt_text(&input.description, &s.description, |v| {
        text("description", v, MAX_DESCRIPTION)
    })?;
    if let Some(p) = &input.provider {
        s.provider = TrunkProvider::parse(p)?;
    }
    if let Some(t) = &input.transport {
        s.transport = TrunkTransport::parse(t)?;
        // A new trunk over TLS without a port: the SIPS port.
        if base.is_none() && input.port.is_none() && s.transport == TrunkTransport::Tls {
            s.port = 5061;
        }
    }
    if let Some(p) = input.port {
        s.port = u16::try_from(in_range("port", p, (1, 65_535))?)
            .map_err(|_| DomainError::invalid("port", "must be between 1 and 65535"))?;
    }

    s.outbound_username = opt_text(&input.outbound_auth_username, &s.outbound_username, |v| {
        token("outboundAuthUsername", v, MAX_USER)
    })?;
    s.outbound_secret = opt_secret(
        "outboundAuthPassword",
        &input.outbound_auth_password,
        &s.outbound_secret,
    )?;
    s.outbound_realm = opt_text(&input.outbound_auth_realm, &s.outbound_realm, |v| {
        token("outboundAuthRealm", v, MAX_URI)
    })?;
    s.sends_auth = match input.sends_auth {
        Some(b) => b,
        // Giving credentials is asking to use them; on update a username
        // given or cleared says the same.
        None if base.is_none() || input.outbound_auth_username.is_some() => {
            s.outbound_username.is_some()
        }
        None => s.sends_auth,
    };
    s.inbound_username = opt_text(&input.inbound_auth_username, &s.inbound_username, |v| {
        token("inboundAuthUsername", v, MAX_USER)
    })?;
    s.inbound_secret = opt_secret(
        "inboundAuthPassword",
        &input.inbound_auth_password,
        &s.inbound_secret,
    )?;
    s.accepts_auth = match input.accepts_auth {
        Some(b) => b,
        None if base.is_none() || input.inbound_auth_username.is_some() => {
            s.inbound_username.is_some()
        }
        None => s.accepts_auth,
    };
    if let Some(m) = &input.inbound_match {
        if m.len() > MAX_MATCH_ENTRIES {
            return Err(DomainError::invalid(
                "inboundMatch",
                format!("at most {MAX_MATCH_ENTRIES} entries"),
            ));
        }
        let mut out: Vec<String> = Vec::with_capacity(m.len());
        for e in m {
            let e = match_entry(e)?;
            if !out.contains(&e) {
                out.push(e);
            }
        }
        s.inbound_match = out;
    }

    if let Some(b) = input.sends_registration {
        s.sends_registration = b;
    }
    if let Some(b) = input.accepts_registrations {
        s.accepts_registrations = b;
    }
    s.registration_server_uri = opt_text(
        &input.registration_server_uri,
        &s.registration_server_uri,
        |v| sip_uri("registrationServerUri", v),
    )?;
    s.registration_client_uri = opt_text(
        &input.registration_client_uri,
        &s.registration_client_uri,
        |v| sip_uri("registrationClientUri", v),
    )?;
    if let Some(v) = input.registration_expiration {
        s.registration_expiry = in_range("registrationExpiration", v, EXPIRY_RANGE)?;
    }
    if let Some(v) = input.registration_retry_interval {
        s.registration_retry_interval = in_range("registrationRetryInterval", v, RETRY_RANGE)?;
    }
    if let Some(v) = input.registration_max_retries {
        s.registration_max_retries = in_range("registrationMaxRetries", v, (0, MAX_RETRIES))?;
    }
    if let Some(v) = input.registration_forbidden_retry_interval {
        s.registration_forbidden_retry = in_range(
            "registrationForbiddenRetryInterval",
            v,
            (0, FORBIDDEN_RETRY_MAX),
        )?;
    }

    if let Some(c) = &input.codecs {
        s.codecs = codecs(c)?;
    }
    if let Some(d) = &input.dtmf_mode {
        s.dtmf_mode = DtmfMode::parse(d)?;
    }
    if let Some(b) = input.rtp_symmetric {
        s.rtp_symmetric = b;
    }
    if let Some(b) = input.force_rport {
        s.force_rport = b;
    }
    if let Some(b) = input.rewrite_contact {
        s.rewrite_contact = b;
    }
    if let Some(v) = input.qualify_frequency {
        s.qualify_frequency = in_range("qualifyFrequency", v, (0, QUALIFY_MAX))?;
    }
    s.media_address = opt_text(&input.media_address, &s.media_address, |v| {
        ip("mediaAddress", v)
    })?;
    if let Some(t) = &input.session_timers {
        s.session_timers = SessionTimers::parse(t)?;
    }
    if let Some(v) = input.session_expires {
        s.session_expires = in_range("sessionExpires", v, SESSION_EXPIRES_RANGE)?;
    }
    if let Some(v) = input.session_min_se {
        s.session_min_se = in_range("sessionMinSe", v, SESSION_EXPIRES_RANGE)?;
    }

    s.from_user = opt_text(&input.from_user, &s.from_user, |v| {
        let t = token("fromUser", v, MAX_USER)?;
        if t.contains(['@', ':', ';']) {
            return Err(DomainError::invalid(
                "fromUser",
                "is the user part only (no @ : ;)",
            ));
        }
        Ok(t)
    })?;
    s.from_domain = opt_text(&input.from_domain, &s.from_domain, |v| {
        host("fromDomain", v)
    })?;
    s.pai = opt_text(&input.pai, &s.pai, |v| token("pai", v, MAX_URI))?;
    if let Some(b) = input.send_pai {
        s.send_pai = b;
    }
    if let Some(b) = input.trust_remote_party_id {
        s.trust_remote_party_id = b;
    }
    if let Some(v) = input.max_channels {
        s.max_channels = in_range("maxChannels", v, (0, MAX_CHANNELS))?;
    }
    if let Some(v) = input.priority {
        s.priority = in_range("priority", v, (0, MAX_PRIORITY))?;
    }
    if let Some(v) = &input.status {
        s.status = TrunkStatus::parse(v)?;
    }
    if let Some(a) = &input.advanced_settings {
        let Value::Object(m) = a else {
            return Err(DomainError::invalid(
                "advancedSettings",
                "must be a JSON object",
            ));
        };
        if a.to_string().len() > MAX_ADVANCED {
            return Err(DomainError::invalid(
                "advancedSettings",
                format!("must be at most {} KiB", MAX_ADVANCED / 1024),
            ));
        }
        s.advanced_settings = m.clone();
    }
    check(&s)?;
    Ok(s)
}

/// The rules between fields.
fn check(s: &TrunkSettings) -> Result<(), DomainError> {
    if s.sends_auth {
        if s.outbound_username.is_none() {
            return Err(DomainError::invalid(
                "outboundAuthUsername",
                "is required when sendsAuth is true",
            ));
        }
        if s.outbound_secret.is_none() {
            return Err(DomainError::invalid(
                "outboundAuthPassword",
                "is required when sendsAuth is true",
            ));
        }
    }
    if s.accepts_auth {
        if s.inbound_username.is_none() {
            return Err(DomainError::invalid(
                "inboundAuthUsername",
                "is required when acceptsAuth is true",
            ));
        }
        if s.inbound_secret.is_none() {
            return Err(DomainError::invalid(
                "inboundAuthPassword",
                "is required when acceptsAuth is true",
            ));
        }
    }
    if s.session_min_se > s.session_expires {
        return Err(DomainError::invalid(
            "sessionMinSe",
            "must not be above sessionExpires",
        ));
    }
    if s.codecs.is_empty() {
        return Err(DomainError::invalid("codecs", "name at least one codec"));
    }
    Ok(())
}

// ---------------------------------------------------------------------
// Views
// ---------------------------------------------------------------------

/// A trunk as the API shows it (docs/API.md "The trunk object"): every
/// setting, the live state and the counters; never a password
/// (`hasSecret`, `hasInboundSecret` say whether one is set).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trunk {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub provider: TrunkProvider,
    pub kind: TrunkKind,
    pub host: String,
    pub port: u16,
    pub transport: TrunkTransport,
    pub sends_auth: bool,
    pub outbound_auth_username: Option<String>,
    pub outbound_auth_realm: Option<String>,
    /// Whether an outbound password is stored.
    pub has_secret: bool,
    pub accepts_auth: bool,
    pub inbound_auth_username: Option<String>,
    /// Whether an inbound password is stored.
    pub has_inbound_secret: bool,
    pub inbound_match: Vec<String>,
    pub sends_registration: bool,
    pub accepts_registrations: bool,
    pub registration_server_uri: Option<String>,
    pub registration_client_uri: Option<String>,
    pub registration_expiration: u32,
    pub registration_retry_interval: u32,
    pub registration_max_retries: u32,
    pub registration_forbidden_retry_interval: u32,
    pub codecs: Vec<Codec>,
    pub dtmf_mode: DtmfMode,
    pub rtp_symmetric: bool,
    pub force_rport: bool,
    pub rewrite_contact: bool,
    pub qualify_frequency: u32,
    pub media_address: Option<String>,
    pub session_timers: SessionTimers,
    pub session_expires: u32,
    pub session_min_se: u32,
    pub from_user: Option<String>,
    pub from_domain: Option<String>,
    pub pai: Option<String>,
    pub send_pai: bool,
    pub trust_remote_party_id: bool,
    /// 0 = no limit.
    pub max_channels: u32,
    pub priority: u32,
    pub status: TrunkStatus,
    /// Live: the last registration attempt succeeded and has not expired.
    pub registered: bool,
    pub last_registered_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub total_calls: i64,
    pub successful_calls: i64,
    pub failed_calls: i64,
    #[schema(value_type = Object)]
    pub advanced_settings: Map<String, Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Trunk {
    fn new(r: &TrunkRow, s: TrunkSettings) -> Self {
        Self {
            id: r.id,
            name: s.name,
            description: s.description,
            provider: s.provider,
            kind: s.kind,
            host: s.host,
            port: s.port,
            transport: s.transport,
            sends_auth: s.sends_auth,
            outbound_auth_username: s.outbound_username,
            outbound_auth_realm: s.outbound_realm,
            has_secret: s.outbound_secret.is_some(),
            accepts_auth: s.accepts_auth,
            inbound_auth_username: s.inbound_username,
            has_inbound_secret: s.inbound_secret.is_some(),
            inbound_match: s.inbound_match,
            sends_registration: s.sends_registration,
            accepts_registrations: s.accepts_registrations,
            registration_server_uri: s.registration_server_uri,
            registration_client_uri: s.registration_client_uri,
            registration_expiration: s.registration_expiry,
            registration_retry_interval: s.registration_retry_interval,
            registration_max_retries: s.registration_max_retries,
            registration_forbidden_retry_interval: s.registration_forbidden_retry,
            codecs: s.codecs,
            dtmf_mode: s.dtmf_mode,
            rtp_symmetric: s.rtp_symmetric,
            force_rport: s.force_rport,
            rewrite_contact: s.rewrite_contact,
            qualify_frequency: s.qualify_frequency,
            media_address: s.media_address,
            session_timers: s.session_timers,
            session_expires: s.session_expires,
            session_min_se: s.session_min_se,
            from_user: s.from_user,
            from_domain: s.from_domain,
            pai: s.pai,
            send_pai: s.send_pai,
            trust_remote_party_id: s.trust_remote_party_id,
            max_channels: s.max_channels,
            priority: s.priority,
            status: s.status,
            registered: r.registered,
            last_registered_at: opt_from_ms(r.last_registered_at),
            last_error: r.last_error.clone(),
            last_error_at: opt_from_ms(r.last_error_at),
            total_calls: r.total_calls,
            successful_calls: r.successful_calls,
            failed_calls: r.failed_calls,
            advanced_settings: s.advanced_settings,
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
        }
    }

    fn from_row(r: &TrunkRow) -> Result<Self, DomainError> {
        Ok(Self::new(r, TrunkSettings::from_row(r)?))
    }
}

/// The effective SIP configuration of a trunk: the same settings as a
/// JSON object (`settings`, one object per section) and as the PJSIP
/// sections an Asterisk would need (`config`), passwords masked.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrunkPreview {
    /// The trunk's name.
    pub trunk: String,
    /// The section id used for it (the name with anything but letters,
    /// digits, `_ - .` replaced by `_`).
    pub section: String,
    /// pjsip.conf text: endpoint, aor, auth, registration, identify.
    pub config: String,
    /// `{"endpoint": {...}, "aor": {...}, "outboundAuth": {...} | null,
    /// "inboundAuth": {...} | null, "registration": {...} | null,
    /// "identify": {...} | null}` with the values of `config`.
    #[schema(value_type = Object)]
    pub settings: Value,
}

/// One `[section]` of the rendering.
struct Section {
    /// Key in `settings`.
    key: &'static str,
    id: String,
    kind: &'static str,
    entries: Vec<(&'static str, String)>,
}

fn yes(b: bool) -> String {
    (if b { "yes" } else { "no" }).to_string()
}

/// The effective SIP settings of `s`, passwords masked.
pub fn preview_config(s: &TrunkSettings) -> TrunkPreview {
    let id: String = s
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let out_auth = format!("{id}-auth");
    let in_auth = format!("{id}-inbound-auth");
    let mut sections = Vec::new();

    let mut ep: Vec<(&'static str, String)> = vec![
        ("transport", format!("transport-{}", s.transport)),
        ("aors", id.clone()),
        ("disallow", "all".into()),
        (
            "allow",
            s.codecs
                .iter()
                .map(|c| c.asterisk_name())
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("dtmf_mode", s.dtmf_mode.to_string()),
        ("rtp_symmetric", yes(s.rtp_symmetric)),
        ("force_rport", yes(s.force_rport)),
        ("rewrite_contact", yes(s.rewrite_contact)),
        // Media is always anchored by centralita (recording, quality,
        // WebRTC on the other leg): never directly between the parties.
        ("direct_media", "no".into()),
        ("timers", s.session_timers.to_string()),
        ("timers_sess_expires", s.session_expires.to_string()),
        ("timers_min_se", s.session_min_se.to_string()),
        ("send_pai", yes(s.send_pai)),
        ("trust_id_inbound", yes(s.trust_remote_party_id)),
        ("trust_id_outbound", yes(s.send_pai)),
    ];
    if let Some(m) = &s.media_address {
        ep.push(("media_address", m.clone()));
    }
    if let Some(u) = &s.from_user {
        ep.push(("from_user", u.clone()));
    }
    if let Some(d) = &s.from_domain {
        ep.push(("from_domain", d.clone()));
    }
    if let Some(p) = &s.pai {
        ep.push(("pai", p.clone()));
    }
    if s.sends_auth {
        ep.push(("outbound_auth", out_auth.clone()));
    }
    if s.accepts_auth {
        ep.push(("auth", in_auth.clone()));
    }
    if s.max_channels > 0 {
        // PJSIP has no per-endpoint limit: centralita counts the channels.
        ep.push(("max_channels", s.max_channels.to_string()));
    }
    sections.push(Section {
        key: "endpoint",
        id: id.clone(),
        kind: "endpoint",
        entries: ep,
    });

    let mut aor: Vec<(&'static str, String)> = Vec::new();
    if !s.accepts_registrations {
        let scheme = if s.transport == TrunkTransport::Tls {
            "sips"
        } else {
            "sip"
        };
        aor.push((
            "contact",
            format!("{scheme}:{}:{}", uri_host(&s.host), s.port),
        ));
    } else {
        aor.push(("max_contacts", "1".into()));
    }
    aor.push(("qualify_frequency", s.qualify_frequency.to_string()));
    sections.push(Section {
        key: "aor",
        id: id.clone(),
        kind: "aor",
        entries: aor,
    });

    if s.sends_auth {
        let mut a = vec![
            ("auth_type", "userpass".to_string()),
            ("username", s.outbound_username.clone().unwrap_or_default()),
            ("password", MASK.to_string()),
        ];
        if let Some(r) = &s.outbound_realm {
            a.push(("realm", r.clone()));
        }
        sections.push(Section {
            key: "outboundAuth",
            id: out_auth.clone(),
            kind: "auth",
            entries: a,
        });
    }
    if s.accepts_auth {
        sections.push(Section {
            key: "inboundAuth",
            id: in_auth,
            kind: "auth",
            entries: vec![
                ("auth_type", "userpass".to_string()),
                ("username", s.inbound_username.clone().unwrap_or_default()),
                ("password", MASK.to_string()),
            ],
        });
    }
    if s.sends_registration {
        let mut r = vec![
            ("transport", format!("transport-{}", s.transport)),
            ("server_uri", s.effective_server_uri()),
            ("client_uri", s.effective_client_uri()),
            ("expiration", s.registration_expiry.to_string()),
            ("retry_interval", s.registration_retry_interval.to_string()),
            ("max_retries", s.registration_max_retries.to_string()),
            (
                "forbidden_retry_interval",
                s.registration_forbidden_retry.to_string(),
            ),
            // Inbound requests are matched to the registration by the
            // Contact's `line` parameter, not by address (research §D4).
            ("line", "yes".into()),
            ("endpoint", id.clone()),
        ];
        if s.sends_auth {
            r.push(("outbound_auth", out_auth));
        }
        sections.push(Section {
            key: "registration",
            id: format!("{id}-reg"),
            kind: "registration",
            entries: r,
        });
    }
    let matches = s.effective_inbound_match();
    if !matches.is_empty() {
        sections.push(Section {
            key: "identify",
            id: format!("{id}-identify"),
            kind: "identify",
            entries: vec![("endpoint", id.clone()), ("match", matches.join(","))],
        });
    }

    let mut config = format!(
        "; trunk {:?} ({}, {}), priority {}, {}\n",
        s.name,
        s.kind,
        s.provider,
        s.priority,
        if s.max_channels == 0 {
            "no channel limit".to_string()
        } else {
            format!("at most {} channels", s.max_channels)
        }
    );
    let mut settings = Map::new();
    for key in [
        "endpoint",
        "aor",
        "outboundAuth",
        "inboundAuth",
        "registration",
        "identify",
    ] {
        settings.insert(key.into(), Value::Null);
    }
    for sec in &sections {
        config.push_str(&format!("\n[{}]\ntype={}\n", sec.id, sec.kind));
        let mut obj = Map::new();
        obj.insert("id".into(), Value::from(sec.id.clone()));
        for (k, v) in &sec.entries {
            config.push_str(&format!("{k}={v}\n"));
            obj.insert((*k).into(), Value::from(v.clone()));
        }
        settings.insert(sec.key.into(), Value::Object(obj));
    }
    if !s.advanced_settings.is_empty() {
        settings.insert(
            "advancedSettings".into(),
            Value::Object(s.advanced_settings.clone()),
        );
    }
    TrunkPreview {
        trunk: s.name.clone(),
        section: id,
        config,
        settings: Value::Object(settings),
    }
}

// ---------------------------------------------------------------------
// Service
// ---------------------------------------------------------------------

/// Listing parameters.
#[derive(Debug, Clone, Default)]
pub struct TrunkQuery {
    pub search: Option<String>,
    pub status: Option<String>,
    pub provider: Option<String>,
    pub kind: Option<String>,
    pub limit: i64,
    pub offset: i64,
    /// `field` or `-field`; see [`store::trunks::order_column`]. Default
    /// `priority` (the order outbound routing tries them in).
    pub order: Option<String>,
}

/// Trunks in the database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TrunkService {
    db: Db,
    events: Option<EventBus>,
}

impl Services {
    /// The trunk service over this database; its changes are published on
    /// the event bus (the SIP server follows them).
    pub fn trunks(&self) -> TrunkService {
        TrunkService {
            db: self.db.clone(),
            events: Some(self.events.clone()),
        }
    }
}

/// A unique violation on the name, found by the database itself (a
/// concurrent writer on PostgreSQL, between our check and our write).
fn write_error(e: store::DbError) -> DomainError {
    if store::unique_violation(&e).is_some() {
        return DomainError::conflict("name");
    }
    DomainError::Db(e)
}

impl TrunkService {
    pub fn new(db: Db) -> Self {
        Self { db, events: None }
    }

    fn publish(&self, id: i64, action: &str, detail: Option<String>) {
        if let Some(bus) = &self.events {
            bus.publish(Event::Trunk {
                at: Utc::now(),
                id,
                action: action.to_string(),
                detail,
            });
        }
    }

    /// Creates a trunk; its kind's preset fills what `input` leaves out.
    pub async fn create(&self, actor: &Actor, input: &TrunkInput) -> Result<Trunk, DomainError> {
        let s = resolve(input, None)?;
        let owned = s.values();
        let now = now_ms();
        let mut tx = self.db.write().await?;
        if store::trunks::name_taken(&mut tx, &s.name, None).await? {
            return Err(DomainError::conflict("name"));
        }
        let id = store::trunks::insert(&mut tx, &store_values(&s, &owned), now)
            .await
            .map_err(write_error)?;
        audit::record(
            &mut tx,
            actor,
            "trunk.create",
            "trunk",
            &id.to_string(),
            serde_json::json!({
                "name": s.name, "kind": s.kind.as_str(), "provider": s.provider.as_str(),
                "host": s.host, "port": s.port, "transport": s.transport.as_str(),
                "status": s.status.as_str(),
            }),
        )
        .await?;
        let row = store::trunks::get(&mut tx, id)
            .await?
            .ok_or(DomainError::NotFound { what: "trunk" })?;
        tx.commit().await?;
        self.publish(id, "created", None);
        Trunk::from_row(&row)
    }

    pub async fn get(&self, id: i64) -> Result<Option<Trunk>, DomainError> {
        let mut c = self.db.conn().await?;
        store::trunks::get(&mut c, id)
            .await?
            .map(|r| Trunk::from_row(&r))
            .transpose()
    }

    /// Like [`get`](Self::get) but a missing trunk is `NotFound`.
    pub async fn require(&self, id: i64) -> Result<Trunk, DomainError> {
        self.get(id)
            .await?
            .ok_or(DomainError::NotFound { what: "trunk" })
    }

    /// The full settings of a trunk, passwords included: for the SIP
    /// side, never for an answer.
    pub async fn settings(&self, id: i64) -> Result<TrunkSettings, DomainError> {
        let mut c = self.db.conn().await?;
        let row = store::trunks::get(&mut c, id)
            .await?
            .ok_or(DomainError::NotFound { what: "trunk" })?;
        TrunkSettings::from_row(&row)
    }

    pub async fn list(&self, q: &TrunkQuery) -> Result<(Vec<Trunk>, i64), DomainError> {
        let (order, desc) = match q.order.as_deref().map(str::trim).filter(|o| !o.is_empty()) {
            None => ("priority", false),
            Some(o) => {
                let (field, desc) = match o.strip_prefix('-') {
                    Some(f) => (f, true),
                    None => (o.strip_prefix('+').unwrap_or(o), false),
                };
                let col = store::trunks::order_column(field).ok_or_else(|| {
                    DomainError::invalid("order", format!("cannot order by {field:?}"))
                })?;
                (col, desc)
            }
        };
        let filter = ListFilter {
            search: q
                .search
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.chars().take(100).collect()),
            status: q
                .status
                .as_deref()
                .map(|v| TrunkStatus::parse(v).map(|x| x.as_str().to_string()))
                .transpose()?,
            provider: q
                .provider
                .as_deref()
                .map(|v| TrunkProvider::parse(v).map(|x| x.as_str().to_string()))
                .transpose()?,
            kind: q
                .kind
                .as_deref()
                .map(|v| TrunkKind::parse(v).map(|x| x.as_str().to_string()))
                .transpose()?,
        };
        let mut c = self.db.conn().await?;
        let (rows, total) = store::trunks::list(
            &mut c,
            &filter,
            order,
            desc,
            q.limit.clamp(1, 500),
            q.offset.max(0),
        )
        .await?;
        let trunks = rows
            .iter()
            .map(Trunk::from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((trunks, total))
    }

    /// Applies `input` to trunk `id`. Left-out fields keep their values
    /// (and the passwords when left out or `""`).
    pub async fn update(
        &self,
        actor: &Actor,
        id: i64,
        input: &TrunkInput,
    ) -> Result<Trunk, DomainError> {
        let now = now_ms();
        let mut tx = self.db.write().await?;
        let before_row = store::trunks::get(&mut tx, id)
            .await?
            .ok_or(DomainError::NotFound { what: "trunk" })?;
        let before = TrunkSettings::from_row(&before_row)?;
        let after = resolve(input, Some(&before))?;
        // Asked even when the name did not change: the database's idea of
        // "the same name" (ASCII case folded) is the one that counts.
        if store::trunks::name_taken(&mut tx, &after.name, Some(id)).await? {
            return Err(DomainError::conflict("name"));
        }
        let owned = after.values();
        store::trunks::update(&mut tx, id, &store_values(&after, &owned), now)
            .await
            .map_err(write_error)?;
        let changed = changed_fields(&before, &after);
        audit::record(
            &mut tx,
            actor,
            "trunk.update",
            "trunk",
            &id.to_string(),
            serde_json::json!({ "name": after.name, "fields": changed }),
        )
        .await?;
        let row = store::trunks::get(&mut tx, id)
            .await?
            .ok_or(DomainError::NotFound { what: "trunk" })?;
        tx.commit().await?;
        self.publish(id, "updated", None);
        Trunk::from_row(&row)
    }

    pub async fn delete(&self, actor: &Actor, id: i64) -> Result<(), DomainError> {
        let mut tx = self.db.write().await?;
        let row = store::trunks::get(&mut tx, id)
            .await?
            .ok_or(DomainError::NotFound { what: "trunk" })?;
        store::trunks::delete(&mut tx, id).await?;
        audit::record(
            &mut tx,
            actor,
            "trunk.delete",
            "trunk",
            &id.to_string(),
            serde_json::json!({ "name": row.name, "host": row.host }),
        )
        .await?;
        tx.commit().await?;
        self.publish(id, "deleted", None);
        Ok(())
    }

    /// The settings of every `active` trunk (secrets included), lowest
    /// priority first: what the SIP server registers and routes with.
    pub async fn active_settings(&self) -> Result<Vec<(i64, TrunkSettings)>, DomainError> {
        let mut c = self.db.conn().await?;
        let rows = store::trunks::active_by_priority(&mut c).await?;
        rows.iter()
            .map(|r| Ok((r.id, TrunkSettings::from_row(r)?)))
            .collect()
    }

    /// Like [`active_settings`](Self::active_settings), with whether each
    /// trunk is registered now (its live state).
    pub async fn active_settings_with_state(
        &self,
    ) -> Result<Vec<(i64, TrunkSettings, bool)>, DomainError> {
        let mut c = self.db.conn().await?;
        let rows = store::trunks::active_by_priority(&mut c).await?;
        rows.iter()
            .map(|r| Ok((r.id, TrunkSettings::from_row(r)?, r.registered)))
            .collect()
    }

    /// The effective SIP configuration of a stored trunk.
    pub async fn preview(&self, id: i64) -> Result<TrunkPreview, DomainError> {
        Ok(preview_config(&self.settings(id).await?))
    }

    /// What the SIP side saw of the trunk's registration. False for an
    /// unknown trunk (deleted meanwhile). Published as a `trunk` event
    /// with the state (`registered`, `rejected`, ...) as its action.
    pub async fn report_registration(
        &self,
        id: i64,
        registered: bool,
        error: Option<&str>,
    ) -> Result<bool, DomainError> {
        self.report_registration_state(
            id,
            if registered { "registered" } else { "failed" },
            registered,
            error,
        )
        .await
    }

    /// [`report_registration`](Self::report_registration) with the
    /// registration state's own name.
    pub async fn report_registration_state(
        &self,
        id: i64,
        state: &str,
        registered: bool,
        error: Option<&str>,
    ) -> Result<bool, DomainError> {
        let mut tx = self.db.write().await?;
        let found =
            store::trunks::set_registration_state(&mut tx, id, registered, error, now_ms()).await?;
        tx.commit().await?;
        if found {
            self.publish(id, state, error.map(str::to_string));
        }
        Ok(found)
    }

    /// Counts one finished call through the trunk.
    pub async fn count_call(&self, id: i64, successful: bool) -> Result<bool, DomainError> {
        let mut tx = self.db.write().await?;
        let found = store::trunks::count_call(&mut tx, id, successful).await?;
        tx.commit().await?;
        Ok(found)
    }
}

/// The API names of the settings that differ (passwords by name only).
fn changed_fields(a: &TrunkSettings, b: &TrunkSettings) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut diff = |name: &'static str, changed: bool| {
        if changed {
            out.push(name);
        }
    };
    diff("name", a.name != b.name);
    diff("description", a.description != b.description);
    diff("provider", a.provider != b.provider);
    diff("kind", a.kind != b.kind);
    diff("host", a.host != b.host);
    diff("port", a.port != b.port);
    diff("transport", a.transport != b.transport);
    diff("sendsAuth", a.sends_auth != b.sends_auth);
    diff(
        "outboundAuthUsername",
        a.outbound_username != b.outbound_username,
    );
    diff(
        "outboundAuthPassword",
        a.outbound_secret != b.outbound_secret,
    );
    diff("outboundAuthRealm", a.outbound_realm != b.outbound_realm);
    diff("acceptsAuth", a.accepts_auth != b.accepts_auth);
    diff(
        "inboundAuthUsername",
        a.inbound_username != b.inbound_username,
    );
    diff("inboundAuthPassword", a.inbound_secret != b.inbound_secret);
    diff("inboundMatch", a.inbound_match != b.inbound_match);
    diff(
        "sendsRegistration",
        a.sends_registration != b.sends_registration,
    );
    diff(
        "acceptsRegistrations",
        a.accepts_registrations != b.accepts_registrations,
    );
    diff(
        "registrationServerUri",
        a.registration_server_uri != b.registration_server_uri,
    );
    diff(
        "registrationClientUri",
        a.registration_client_uri != b.registration_client_uri,
    );
    diff(
        "registrationExpiration",
        a.registration_expiry != b.registration_expiry,
    );
    diff(
        "registrationRetryInterval",
        a.registration_retry_interval != b.registration_retry_interval,
    );
    diff(
        "registrationMaxRetries",
        a.registration_max_retries != b.registration_max_retries,
    );
    diff(
        "registrationForbiddenRetryInterval",
        a.registration_forbidden_retry != b.registration_forbidden_retry,
    );
    diff("codecs", a.codecs != b.codecs);
    diff("dtmfMode", a.dtmf_mode != b.dtmf_mode);
    diff("rtpSymmetric", a.rtp_symmetric != b.rtp_symmetric);
    diff("forceRport", a.force_rport != b.force_rport);
    diff("rewriteContact", a.rewrite_contact != b.rewrite_contact);
    diff(
        "qualifyFrequency",
        a.qualify_frequency != b.qualify_frequency,
    );
    diff("mediaAddress", a.media_address != b.media_address);
    diff("sessionTimers", a.session_timers != b.session_timers);
    diff("sessionExpires", a.session_expires != b.session_expires);
    diff("sessionMinSe", a.session_min_se != b.session_min_se);
    diff("fromUser", a.from_user != b.from_user);
    diff("fromDomain", a.from_domain != b.from_domain);
    diff("pai", a.pai != b.pai);
    diff("sendPai", a.send_pai != b.send_pai);
    diff(
        "trustRemotePartyId",
        a.trust_remote_party_id != b.trust_remote_party_id,
    );
    diff("maxChannels", a.max_channels != b.max_channels);
    diff("priority", a.priority != b.priority);
    diff("status", a.status != b.status);
    diff(
        "advancedSettings",
        a.advanced_settings != b.advanced_settings,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(v: serde_json::Value) -> TrunkInput {
        serde_json::from_value(v).expect("input")
    }

    fn create(v: serde_json::Value) -> Result<TrunkSettings, DomainError> {
        resolve(&input(v), None)
    }

    fn invalid_field(r: Result<TrunkSettings, DomainError>) -> (&'static str, String) {
        match r {
            Err(DomainError::Invalid { field, message }) => (field, message),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn each_kind_fills_its_preset_where_the_request_is_silent() {
        let s = create(serde_json::json!({
            "name": "Carrier", "host": "sip.example.test", "kind": "nat_provider",
            "username": "AC1", "password": "pw"
        }))
        .expect("valid");
        assert!(s.sends_registration && s.rtp_symmetric && s.force_rport && s.rewrite_contact);
        assert_eq!(s.qualify_frequency, 60);
        assert!(s.sends_auth, "credentials given: sends auth");
        assert_eq!(s.codecs, [Codec::Pcmu, Codec::Pcma]);
        assert_eq!((s.port, s.transport), (5060, TrunkTransport::Udp));
        assert_eq!((s.max_channels, s.priority), (10, 10));
        assert_eq!(s.status, TrunkStatus::Active);

        let lan =
            create(serde_json::json!({"name": "Old PBX", "host": "192.0.2.5", "kind": "pbx_lan"}))
                .expect("valid");
        assert!(!lan.sends_registration && !lan.rtp_symmetric && !lan.force_rport);
        assert!(!lan.sends_auth && !lan.accepts_auth);
        assert!(lan.trust_remote_party_id && lan.send_pai);
        assert_eq!(
            lan.effective_inbound_match(),
            ["192.0.2.5"],
            "matched by address"
        );
        assert_eq!(lan.qualify_frequency, 30);

        // Every kind's preset is what a new trunk of that kind gets.
        for kind in TrunkKind::ALL {
            let s =
                create(serde_json::json!({"name": "T", "host": "h.test", "kind": kind.as_str()}))
                    .expect("valid");
            let p = Preset::of(*kind);
            assert_eq!(s.kind, *kind);
            assert_eq!(
                (
                    s.sends_registration,
                    s.rtp_symmetric,
                    s.force_rport,
                    s.rewrite_contact
                ),
                (
                    p.sends_registration,
                    p.rtp_symmetric,
                    p.force_rport,
                    p.rewrite_contact
                ),
                "{kind}"
            );
            assert_eq!(s.qualify_frequency, p.qualify_frequency, "{kind}");
            assert_eq!(s.codecs, p.codecs, "{kind}");
        }
        // The request wins over the preset.
        let s = create(serde_json::json!({
            "name": "Carrier", "host": "sip.example.test", "kind": "nat_provider",
            "sendsRegistration": false, "qualifyFrequency": 0, "codecs": ["opus", "ulaw"],
            "rtpSymmetric": false
        }))
        .expect("valid");
        assert!(!s.sends_registration && !s.rtp_symmetric);
        assert_eq!(s.qualify_frequency, 0);
        assert_eq!(s.codecs, [Codec::Opus, Codec::Pcmu]);
        // No kind: custom, SIP's own defaults.
        let s = create(serde_json::json!({"name": "X", "host": "x.test"})).expect("valid");
        assert_eq!(s.kind, TrunkKind::Custom);
        assert!(!s.sends_registration && s.force_rport);
        // TLS without a port: 5061.
        let s = create(serde_json::json!({"name": "X", "host": "x.test", "transport": "TLS"}))
            .expect("valid");
        assert_eq!((s.transport, s.port), (TrunkTransport::Tls, 5061));
    }

    #[test]
    fn a_new_kind_on_update_applies_its_preset_except_where_given() {
        let base = create(
            serde_json::json!({"name": "T", "host": "h.test", "kind": "pbx_lan", "priority": 3}),
        )
        .expect("valid");
        let s = resolve(
            &input(serde_json::json!({"kind": "nat_provider", "qualifyFrequency": 15})),
            Some(&base),
        )
        .expect("valid");
        assert_eq!(s.kind, TrunkKind::NatProvider);
        assert!(s.sends_registration && s.rtp_symmetric);
        assert_eq!(s.qualify_frequency, 15, "given wins");
        assert_eq!(s.priority, 3, "not a preset field: kept");
        // The same kind again changes nothing.
        let mut tweaked = base.clone();
        tweaked.rtp_symmetric = true;
        let s = resolve(
            &input(serde_json::json!({"kind": "pbx_lan"})),
            Some(&tweaked),
        )
        .expect("valid");
        assert!(
            s.rtp_symmetric,
            "no preset re-applied without a change of kind"
        );
    }

    #[test]
    fn validation_names_the_field_and_says_why() {
        let base = || serde_json::json!({"name": "T", "host": "sip.example.test"});
        let with = |k: &str, v: serde_json::Value| {
            let mut b = base();
            b[k] = v;
            create(b)
        };
        for (k, v, field, says) in [
            ("host", serde_json::json!(""), "host", "empty"),
            (
                "host",
                serde_json::json!("sip.example.test:5060"),
                "host",
                "port",
            ),
            (
                "host",
                serde_json::json!("bad host"),
                "host",
                "not a host name",
            ),
            (
                "host",
                serde_json::json!("-x.test"),
                "host",
                "not a host name",
            ),
            (
                "host",
                serde_json::json!("999.1.1.1"),
                "host",
                "not a host name",
            ),
            ("port", serde_json::json!(0), "port", "between 1 and 65535"),
            (
                "port",
                serde_json::json!(65536),
                "port",
                "between 1 and 65535",
            ),
            ("name", serde_json::json!("  "), "name", "empty"),
            ("name", serde_json::json!("a/b"), "name", "letters"),
            ("kind", serde_json::json!("cloud"), "kind", "nat_provider"),
            ("provider", serde_json::json!("acme"), "provider", "twilio"),
            ("transport", serde_json::json!("sctp"), "transport", "udp"),
            ("codecs", serde_json::json!([]), "codecs", "at least one"),
            (
                "codecs",
                serde_json::json!(["pcmu", "gsm"]),
                "codecs",
                "pcmu",
            ),
            (
                "codecs",
                serde_json::json!(["pcmu", "ulaw"]),
                "codecs",
                "twice",
            ),
            (
                "dtmfMode",
                serde_json::json!("tones"),
                "dtmfMode",
                "rfc4733",
            ),
            (
                "registrationExpiration",
                serde_json::json!(30),
                "registrationExpiration",
                "60 and 7200",
            ),
            (
                "registrationExpiration",
                serde_json::json!(7201),
                "registrationExpiration",
                "60 and 7200",
            ),
            (
                "registrationRetryInterval",
                serde_json::json!(5),
                "registrationRetryInterval",
                "10 and 3600",
            ),
            ("priority", serde_json::json!(-1), "priority", "between 0"),
            (
                "maxChannels",
                serde_json::json!(-1),
                "maxChannels",
                "between 0",
            ),
            (
                "qualifyFrequency",
                serde_json::json!(-1),
                "qualifyFrequency",
                "between 0",
            ),
            ("status", serde_json::json!("dead"), "status", "active"),
            (
                "registrationServerUri",
                serde_json::json!("carrier.test"),
                "registrationServerUri",
                "SIP URI",
            ),
            (
                "inboundMatch",
                serde_json::json!(["192.0.2.0/40"]),
                "inboundMatch",
                "prefix",
            ),
            (
                "inboundMatch",
                serde_json::json!(["not an address"]),
                "inboundMatch",
                "not a host",
            ),
            (
                "mediaAddress",
                serde_json::json!("media.test"),
                "mediaAddress",
                "IP address",
            ),
            (
                "fromUser",
                serde_json::json!("a@b"),
                "fromUser",
                "user part",
            ),
            (
                "advancedSettings",
                serde_json::json!([1]),
                "advancedSettings",
                "object",
            ),
            (
                "sessionMinSe",
                serde_json::json!(3600),
                "sessionMinSe",
                "sessionExpires",
            ),
        ] {
            let (f, m) = invalid_field(with(k, v.clone()));
            assert_eq!(f, field, "{k}={v}");
            assert!(m.contains(says), "{k}={v}: {m}");
        }
        // Auth asked for without its secret.
        let (f, _) = invalid_field(create(serde_json::json!({
            "name": "T", "host": "h.test", "outboundAuthUsername": "u"
        })));
        assert_eq!(f, "outboundAuthPassword");
        let (f, _) = invalid_field(create(serde_json::json!({
            "name": "T", "host": "h.test", "acceptsAuth": true, "inboundAuthUsername": "u"
        })));
        assert_eq!(f, "inboundAuthPassword");
        // What is accepted.
        for h in [
            "sip.example.test",
            "192.0.2.1",
            "2001:db8::1",
            "[2001:db8::1]",
            "localhost",
        ] {
            let s = with("host", serde_json::json!(h)).expect(h);
            assert_eq!(s.host, h.trim_matches(['[', ']']));
        }
        let s = with(
            "inboundMatch",
            serde_json::json!(["192.0.2.0/24", "carrier.test", "192.0.2.0/24"]),
        )
        .expect("valid");
        assert_eq!(
            s.inbound_match,
            ["192.0.2.0/24", "carrier.test"],
            "duplicates dropped"
        );
        let s = with("dtmfMode", serde_json::json!("RFC2833")).expect("alias");
        assert_eq!(s.dtmf_mode, DtmfMode::Rfc4733);
        let s = with("maxChannels", serde_json::json!(0)).expect("0 = no limit");
        assert_eq!(s.max_channels, 0);
    }

    #[test]
    fn secrets_are_kept_unless_replaced_or_removed() {
        let base = create(serde_json::json!({
            "name": "T", "host": "h.test", "outboundAuthUsername": "u", "outboundAuthPassword": "old-Pw-4411"
        }))
        .expect("valid");
        let keep = resolve(&input(serde_json::json!({"priority": 2})), Some(&base)).expect("valid");
        assert_eq!(
            keep.outbound_secret.as_ref().map(Secret::expose),
            Some("old-Pw-4411")
        );
        let keep = resolve(
            &input(serde_json::json!({"outboundAuthPassword": ""})),
            Some(&base),
        )
        .expect("valid");
        assert_eq!(
            keep.outbound_secret.as_ref().map(Secret::expose),
            Some("old-Pw-4411")
        );
        let new =
            resolve(&input(serde_json::json!({"password": "new"})), Some(&base)).expect("valid");
        assert_eq!(
            new.outbound_secret.as_ref().map(Secret::expose),
            Some("new")
        );
        // Removing the password of a trunk that sends auth is refused...
        let (f, _) = invalid_field(resolve(
            &input(serde_json::json!({"outboundAuthPassword": null})),
            Some(&base),
        ));
        assert_eq!(f, "outboundAuthPassword");
        // ...and allowed with auth turned off.
        let off = resolve(
            &input(serde_json::json!({"outboundAuthPassword": null, "sendsAuth": false})),
            Some(&base),
        )
        .expect("valid");
        assert!(off.outbound_secret.is_none() && !off.sends_auth);
        // Debug never shows a password.
        assert!(!format!("{base:?}").contains("old-Pw-4411"));
        assert_eq!(
            changed_fields(&base, &new),
            ["outboundAuthPassword"],
            "the change is named, not shown"
        );
    }

    #[test]
    fn the_preview_shows_the_effective_settings_with_passwords_masked() {
        let s = create(serde_json::json!({
            "name": "Twilio Main", "host": "sip.example.test", "kind": "nat_provider",
            "provider": "twilio", "username": "AC1", "password": "top-secret",
            "fromUser": "+15551234567", "maxChannels": 20, "priority": 1,
            "inboundMatch": ["192.0.2.0/24"], "codecs": ["pcmu", "pcma", "opus"],
            "acceptsAuth": true, "inboundAuthUsername": "carrier", "inboundAuthPassword": "in-secret"
        }))
        .expect("valid");
        let p = preview_config(&s);
        assert_eq!(p.section, "Twilio_Main");
        assert!(
            !p.config.contains("top-secret") && !p.config.contains("in-secret"),
            "{}",
            p.config
        );
        let json = p.settings.to_string();
        assert!(
            !json.contains("top-secret") && !json.contains("in-secret"),
            "{json}"
        );
        for line in [
            "[Twilio_Main]\ntype=endpoint\n",
            "allow=ulaw,alaw,opus\n",
            "rtp_symmetric=yes\n",
            "force_rport=yes\n",
            "direct_media=no\n",
            "from_user=+15551234567\n",
            "outbound_auth=Twilio_Main-auth\n",
            "[Twilio_Main-auth]\ntype=auth\nauth_type=userpass\nusername=AC1\npassword=********\n",
            "[Twilio_Main-inbound-auth]\ntype=auth\n",
            "contact=sip:sip.example.test:5060\n",
            "qualify_frequency=60\n",
            "[Twilio_Main-reg]\ntype=registration\n",
            "server_uri=sip:sip.example.test:5060\n",
            "client_uri=sip:AC1@sip.example.test\n",
            "expiration=3600\n",
            "line=yes\n",
            "[Twilio_Main-identify]\ntype=identify\nendpoint=Twilio_Main\nmatch=192.0.2.0/24\n",
        ] {
            assert!(p.config.contains(line), "missing {line:?} in\n{}", p.config);
        }
        assert_eq!(p.settings["outboundAuth"]["password"], MASK);
        assert_eq!(
            p.settings["registration"]["client_uri"],
            "sip:AC1@sip.example.test"
        );
        assert_eq!(p.settings["endpoint"]["max_channels"], "20");

        // A LAN PBX: no registration, no auth sections, matched by its host.
        let lan = create(serde_json::json!({
            "name": "pbx", "host": "2001:db8::5", "kind": "pbx_lan", "transport": "tcp", "port": 5070
        }))
        .expect("valid");
        let p = preview_config(&lan);
        assert!(p.settings["registration"].is_null());
        assert!(p.settings["outboundAuth"].is_null());
        assert_eq!(p.settings["identify"]["match"], "2001:db8::5");
        assert_eq!(p.settings["aor"]["contact"], "sip:[2001:db8::5]:5070");
        assert_eq!(p.settings["endpoint"]["transport"], "transport-tcp");
        assert_eq!(
            lan.effective_server_uri(),
            "sip:[2001:db8::5]:5070;transport=tcp"
        );
    }

    /// Concurrent creates of one name on a real database (SQLite, or
    /// PostgreSQL when the run asks): one trunk, the others a conflict on
    /// `name`, one audit entry.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_creates_of_one_name_make_one_trunk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(&store::testing::fresh_database_url(dir.path()))
            .await
            .expect("open");
        let svc = TrunkService::new(db.clone());
        let mut tasks = Vec::new();
        for i in 0..8 {
            let svc = svc.clone();
            let name = if i % 2 == 0 { "Same Name" } else { "SAME name" };
            let body = input(serde_json::json!({"name": name, "host": "h.test"}));
            tasks.push(tokio::spawn(async move {
                svc.create(&Actor::system(), &body).await
            }));
        }
        let (mut ok, mut conflicts) = (0, 0);
        for t in tasks {
            match t.await.expect("join") {
                Ok(_) => ok += 1,
                Err(DomainError::Conflict { field: "name", .. }) => conflicts += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!((ok, conflicts), (1, 7));
        let (list, total) = svc
            .list(&TrunkQuery {
                limit: 50,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!((list.len(), total), (1, 1));
        let mut c = db.conn().await.expect("conn");
        let (entries, n) = store::audit::list(&mut c, Some("trunk.create"), None, 50, 0)
            .await
            .expect("audit");
        assert_eq!((entries.len(), n), (1, 1));
        drop(c);
        db.close().await;
    }

    #[test]
    fn names_serialize_as_they_parse() {
        for k in TrunkKind::ALL {
            assert_eq!(serde_json::to_value(k).expect("json"), k.as_str());
        }
        for c in Codec::ALL {
            assert_eq!(serde_json::to_value(c).expect("json"), c.as_str());
        }
        for d in DtmfMode::ALL {
            assert_eq!(serde_json::to_value(d).expect("json"), d.as_str());
        }
        for p in TrunkProvider::ALL {
            assert_eq!(serde_json::to_value(p).expect("json"), p.as_str());
        }
        for s in TrunkStatus::ALL {
            assert_eq!(serde_json::to_value(s).expect("json"), s.as_str());
        }
        for t in SessionTimers::ALL {
            assert_eq!(serde_json::to_value(t).expect("json"), t.as_str());
        }
        for t in TrunkTransport::ALL {
            assert_eq!(serde_json::to_value(t).expect("json"), t.as_str());
        }
    }
}
