//! Configuration: defaults, then a TOML file (`--config`), then
//! environment variables `CENTRALITA_<SECTION>_<KEY>` (top-level keys:
//! `CENTRALITA_<KEY>`). Every key is documented in
//! config/centralita.sample.toml, and a test holds that file, `serve --help`
//! and the README to the compiled defaults. Each default is written once, by
//! the crate that owns the setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for the database and other state.
    pub data_dir: PathBuf,
    /// Database URL; default `sqlite://<data_dir>/centralita.db`.
    pub database_url: Option<String>,
    /// Password of the `admin` account created on first start; when unset a
    /// random one is generated and printed once.
    pub admin_password: Option<String>,
    /// PBX mode: builtin | asterisk | relay.
    pub mode: String,
    /// Log lines on stderr: `text` (human-readable) or `json` (one JSON
    /// object per line, for log shippers).
    pub log_format: String,
    pub http: HttpConfig,
    pub console: ConsoleConfig,
    pub sip: SipConfig,
    pub auth: AuthConfig,
    pub metrics: MetricsConfig,
    pub media: MediaConfig,
    pub dialplan: DialplanConfig,
    pub asterisk: AsteriskConfig,
    pub relay: RelaySection,
}

/// The `[asterisk]` section: the Asterisk (Issabel, FreePBX) that does the
/// calls when `mode = "asterisk"` (see crates/asterisk/README.md for what
/// it must allow).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AsteriskConfig {
    /// `host:port` of the manager interface (AMI).
    pub ami_address: String,
    /// The `manager.conf` user centralita logs in as.
    pub ami_username: String,
    /// Its secret (MD5 challenge login; sent in clear only if Asterisk
    /// refuses the challenge).
    pub ami_secret: Option<String>,
    /// Where the two generated files go (`centralita_pjsip.conf`,
    /// `centralita_pjsip_wizard.conf`, `#include`d by the site's
    /// configuration); default `<data_dir>/asterisk`.
    pub config_dir: Option<String>,
    /// Dialplan context the agent's channel runs once the agent answers an
    /// originate (it dials the customer through `${CENTRALITA_TRUNK}`).
    pub originate_context: String,
    /// Asterisk's WebSocket URL agents' softphones register to (e.g.
    /// `wss://pbx.example.com:8089/ws`); default: the console's own.
    pub ws_url: Option<String>,
}

impl Default for AsteriskConfig {
    fn default() -> Self {
        Self {
            ami_address: "127.0.0.1:5038".into(),
            ami_username: String::new(),
            ami_secret: None,
            config_dir: None,
            originate_context: "centralita-originate".into(),
            ws_url: None,
        }
    }
}

/// The `[relay]` section: the PBX browsers are relayed to when
/// `mode = "relay"` (crates/relay).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelaySection {
    /// `udp:HOST:PORT`, `tcp:HOST:PORT`, `tls:HOST:PORT`,
    /// `ws:HOST:PORT[/PATH]` or `wss:HOST:PORT[/PATH]`; required in relay
    /// mode.
    pub upstream: Option<String>,
    /// PEM file of the CAs a `tls:`/`wss:` upstream's certificate must chain to;
    /// default: the system bundle.
    pub tls_ca: Option<String>,
    /// `Origin` header of the WebSocket handshake toward a `ws:`/`wss:`
    /// upstream (e.g. `https://pbx.example.com`: 3CX refuses origins it does
    /// not know); default: none sent.
    pub origin: Option<String>,
    /// Host written toward the PBX in Via, Contact and Record-Route instead
    /// of the upstream socket's local IP (the public address behind NAT);
    /// default: the local IP.
    pub advertised_host: Option<String>,
}

/// The `[media]` section: centralita in the audio path of calls.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// always | when_needed | never (see the sample config for why).
    pub anchor: String,
    /// RTP/RTCP ports of anchored calls, "FIRST-LAST".
    pub port_range: String,
    /// IP address put in our SDP (and WebRTC candidates); default: the SIP
    /// advertised host when it is an IP, else the SIP listen address.
    pub advertised_address: Option<String>,
    /// No RTP from a leg for this long (not on hold) ends the call.
    pub rtp_timeout_secs: u32,
    /// Record anchored calls (stereo WAV, customer left, agent right),
    /// unless an agent's own setting says otherwise.
    pub recording: bool,
    /// Where recordings go; default `<data_dir>/recordings`.
    pub recording_dir: Option<String>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            // A call center wants every call in the media path: recording,
            // quality figures, hold music and NAT-proof audio all need it.
            // (`sip::SipConfig` defaults to `never`: the library alone has
            // no media plane to anchor with.)
            anchor: domain::media::AnchorMode::Always.as_str().into(),
            port_range: "20000-29999".into(),
            advertised_address: None,
            rtp_timeout_secs: 30,
            recording: sip::SipConfig::default().record_calls,
            recording_dir: None,
        }
    }
}

impl MediaConfig {
    /// `port_range` as numbers: "20000-29999" → 20000..=29999.
    pub fn ports(&self) -> anyhow::Result<std::ops::RangeInclusive<u16>> {
        let bad = || {
            anyhow::anyhow!(
                "media.port_range {:?} must be FIRST-LAST with 1024 <= FIRST < LAST <= 65535 \
                 and room for a pair of ports (CENTRALITA_MEDIA_PORT_RANGE)",
                self.port_range
            )
        };
        let (a, b) = self.port_range.split_once('-').ok_or_else(bad)?;
        let a: u16 = a.trim().parse().map_err(|_| bad())?;
        let b: u16 = b.trim().parse().map_err(|_| bad())?;
        if a < 1024 || b < a.saturating_add(3) {
            return Err(bad());
        }
        Ok(a..=b)
    }
}

/// The `[dialplan]` section: which dialled numbers (that are no agent) go
/// out through the trunks, how numbers are written here, and what agents
/// may dial (the toll-fraud gate, `domain::dialplan`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DialplanConfig {
    /// Country calling code of the call center (E.164, no `+`).
    pub country_code: String,
    /// What precedes an international number besides `+` (`00`, `011`).
    pub international_prefix: String,
    /// Trunk prefix of national numbers (`0` in the UK, France, Germany;
    /// empty where there is none).
    pub national_prefix: String,
    /// Patterns (PBX notation: `X` digit, `Z` 1-9, `N` 2-9, `[1-5]`, `.`
    /// one or more) of the numbers that go out through the trunks, all
    /// active trunks by priority.
    pub outbound_patterns: Vec<String>,
    /// Leading characters removed before the number goes to the trunk.
    pub strip: u32,
    /// Added in front after `strip` (e.g. `+34`).
    pub prepend: String,
    /// What agents may dial: internal | national | international.
    pub agent_permission: String,
    /// Simultaneous outbound calls per agent (0: no limit).
    pub max_concurrent_outbound: u32,
    /// Outbound calls per agent in the last hour (0: no limit).
    pub max_outbound_per_hour: u32,
    /// E.164 prefixes (no `+`) nobody may dial.
    pub blocked_prefixes: Vec<String>,
}

impl Default for DialplanConfig {
    fn default() -> Self {
        let d = domain::dialplan_settings::DialplanSettings::default();
        Self {
            country_code: d.country_code,
            international_prefix: d.international_prefix,
            national_prefix: d.national_prefix,
            outbound_patterns: d.outbound_patterns,
            strip: d.strip,
            prepend: d.prepend,
            agent_permission: d.agent_permission,
            max_concurrent_outbound: d.max_concurrent_outbound,
            max_outbound_per_hour: d.max_outbound_per_hour,
            blocked_prefixes: d.blocked_prefixes,
        }
    }
}

impl DialplanConfig {
    /// The section as the dial plan's settings: the defaults until an
    /// administrator saves others (`domain::dialplan_settings`).
    pub fn settings(&self) -> domain::dialplan_settings::DialplanSettings {
        domain::dialplan_settings::DialplanSettings {
            country_code: self.country_code.clone(),
            international_prefix: self.international_prefix.clone(),
            national_prefix: self.national_prefix.clone(),
            outbound_patterns: self.outbound_patterns.clone(),
            strip: self.strip,
            prepend: self.prepend.clone(),
            agent_permission: self.agent_permission.clone(),
            max_concurrent_outbound: self.max_concurrent_outbound,
            max_outbound_per_hour: self.max_outbound_per_hour,
            blocked_prefixes: self.blocked_prefixes.clone(),
            // Several routes are set through the API (`PUT
            // /api/telephony/dialplan`); the section has the single list.
            routes: Vec::new(),
        }
    }

    /// The policy the SIP server routes outbound calls with; a bad value
    /// is a configuration error naming its key.
    pub fn policy(&self) -> anyhow::Result<sip::OutboundPolicy> {
        policy_of(&self.settings()).map_err(|e| match e {
            domain::DomainError::Invalid { field, message } => {
                let key = config_key(field);
                anyhow::anyhow!(
                    "dialplan.{key}: {message} (CENTRALITA_DIALPLAN_{})",
                    key.to_ascii_uppercase()
                )
            }
            other => anyhow::anyhow!("dialplan: {other}"),
        })
    }
}

/// The `[dialplan]` key of a settings field (`countryCode` → `country_code`).
fn config_key(field: &str) -> String {
    let mut out = String::new();
    for c in field.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The SIP server's outbound policy from dial plan settings.
pub fn policy_of(
    s: &domain::dialplan_settings::DialplanSettings,
) -> Result<sip::OutboundPolicy, domain::DomainError> {
    let c = s.compile()?;
    Ok(sip::OutboundPolicy {
        routes: c.routes,
        plan: c.plan,
        default_rights: sip::DialRights {
            permission: c.permission,
            limits: c.limits,
        },
    })
}

/// The `[metrics]` section: Prometheus metrics at `/metrics`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// A separate listener serving only `/metrics`, without a token (for a
    /// scraper on a private address); unset: `/metrics` on the HTTP
    /// listeners, for an admin's bearer token only.
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: String,
    /// Trust X-Forwarded-For for the client address (only behind a proxy).
    pub trust_proxy: bool,
    /// Mark the session cookie Secure (when served over HTTPS).
    pub cookie_secure: bool,
    pub body_limit_bytes: u64,
    /// HTTPS listen address (same console, API and `/ws` as WSS), e.g.
    /// "127.0.0.1:8443"; needs `tls_cert` and `tls_key`.
    pub tls_listen: Option<String>,
    /// PEM certificate chain (leaf first) and private key for `tls_listen`.
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    /// Seconds a client has to send a complete request head (also closes
    /// idle keep-alive connections).
    pub header_timeout_secs: u32,
    /// Seconds a request body has to arrive, from its head.
    pub body_timeout_secs: u32,
    /// Open connections per client address, both listeners together.
    pub max_connections_per_ip: u32,
}

/// The HTTPS listener's settings (see [`Config::https`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsSettings {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Directory of the built web console.
    pub dir: PathBuf,
}

/// The `[sip]` section as the file and the environment spell it. Its
/// defaults come from `sip::SipConfig` (protocol) and `domain::DomainConfig`
/// (the SIP domain, extensions, softphone credentials); `centralita::sip_config`
/// turns it into the SIP server's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// UDP and TCP listen address.
    pub listen: String,
    /// Path of SIP over WebSocket on the HTTP port.
    pub ws_path: String,
    /// SIP domain and digest realm.
    pub domain: String,
    /// Host (name or IP, no port) put in our Via and Contact headers;
    /// needed when `listen` is a wildcard address (0.0.0.0 / [::]).
    pub advertised_host: Option<String>,
    /// TLS listen address (SIP over TLS), e.g. "127.0.0.1:5061".
    pub tls_listen: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    /// Checking a phone's or a TLS trunk's carrier's certificate when the
    /// server connects to it over TLS: `none` or `ca` (against
    /// `tls_dial_ca`; a carrier's must also name the trunk's host).
    pub tls_dial_verify: String,
    /// PEM file of the CA(s) phone and carrier certificates must chain to
    /// with `ca` (for carriers: the system's CAs, or the carrier's).
    pub tls_dial_ca: Option<String>,
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    pub max_contacts: u32,
    pub ring_timeout_secs: u32,
    pub auth_fail_limit: u32,
    pub auth_fail_window_secs: u32,
    pub ban_secs: u32,
    pub ephemeral_ttl_secs: u32,
    pub extension_start: u32,
    pub max_message_bytes: u32,
    pub max_connections_per_ip: u32,
    /// Stream connections open at once; 0 derives it from the open-file limit.
    pub max_connections: u32,
    /// A connection that has not authenticated this long after opening is closed.
    pub unauthenticated_timeout_secs: u32,
    /// An authenticated connection silent this long is closed.
    pub idle_connection_timeout_secs: u32,
    /// User-Agent prefixes also offered a SHA-256 digest challenge (see the sample config).
    pub sha256_user_agents: Vec<String>,
    /// Requests whose User-Agent contains one of these are dropped (scanners).
    pub scanner_user_agents: Vec<String>,
    /// RFC 4028 session interval offered on both legs; 0 turns timers off.
    pub session_expires_secs: u32,
    /// Smallest session interval accepted (Min-SE, at least 90).
    pub min_session_expires_secs: u32,
    /// Calls are ended after this long (last resort); 0 means no limit.
    pub max_call_duration_secs: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub session_ttl_secs: u32,
    pub login_max_failures: u32,
    pub login_window_secs: u32,
    pub login_block_secs: u32,
    pub login_max_block_secs: u32,
    /// Tests only: cheap argon2 parameters for console passwords.
    pub insecure_fast_password_hashing: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            database_url: None,
            admin_password: None,
            mode: "builtin".into(),
            log_format: "text".into(),
            http: HttpConfig::default(),
            console: ConsoleConfig::default(),
            sip: SipConfig::default(),
            auth: AuthConfig::default(),
            metrics: MetricsConfig::default(),
            media: MediaConfig::default(),
            dialplan: DialplanConfig::default(),
            asterisk: AsteriskConfig::default(),
            relay: RelaySection::default(),
        }
    }
}

// The defaults below are read from the crate that owns each setting (the
// HTTP layer, the SIP server, the domain), never written again here.

impl Default for HttpConfig {
    fn default() -> Self {
        let api = api::ApiConfig::default();
        let limits = crate::http_serve::HttpLimits::default();
        Self {
            listen: "127.0.0.1:8080".into(),
            trust_proxy: api.trust_proxy,
            cookie_secure: api.cookie_secure,
            body_limit_bytes: u64::try_from(api.body_limit).unwrap_or(u64::MAX),
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
            header_timeout_secs: secs(limits.header_timeout),
            body_timeout_secs: secs(limits.body_timeout),
            max_connections_per_ip: to_u32(limits.max_connections_per_ip),
        }
    }
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            dir: api::ApiConfig::default().console_dir,
        }
    }
}

impl Default for SipConfig {
    fn default() -> Self {
        Self::from_parts(
            &sip::SipConfig::default(),
            &domain::DomainConfig::default(),
            api::ApiConfig::default().ws_path,
        )
    }
}

impl SipConfig {
    /// The `[sip]` section that describes `server` (the SIP server's
    /// settings) and the domain's account settings; `centralita::sip_config`
    /// is the way back.
    fn from_parts(server: &sip::SipConfig, domain: &domain::DomainConfig, ws_path: String) -> Self {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        Self {
            listen: server.listen.to_string(),
            ws_path,
            domain: domain.sip_domain.clone(),
            advertised_host: server.advertised_host.clone(),
            tls_listen: server.tls_listen.map(|a| a.to_string()),
            tls_cert: path(&server.tls_cert),
            tls_key: path(&server.tls_key),
            tls_dial_verify: match server.tls_dial_verify {
                sip::TlsDialVerify::None => "none",
                sip::TlsDialVerify::Ca(_) => "ca",
            }
            .into(),
            tls_dial_ca: match &server.tls_dial_verify {
                sip::TlsDialVerify::None => None,
                sip::TlsDialVerify::Ca(file) => Some(file.display().to_string()),
            },
            min_expires: server.min_expires,
            max_expires: server.max_expires,
            default_expires: server.default_expires,
            max_contacts: to_u32(server.max_contacts),
            ring_timeout_secs: secs(server.ring_timeout),
            auth_fail_limit: server.auth_fail_limit,
            auth_fail_window_secs: secs(server.auth_fail_window),
            ban_secs: secs(server.ban),
            ephemeral_ttl_secs: to_u32(domain.ephemeral_ttl_secs),
            extension_start: to_u32(domain.extension_start),
            max_message_bytes: to_u32(server.max_message_bytes),
            max_connections_per_ip: to_u32(server.max_connections_per_ip),
            max_connections: to_u32(server.max_connections),
            unauthenticated_timeout_secs: secs(server.unauthenticated_timeout),
            idle_connection_timeout_secs: secs(server.idle_connection_timeout),
            sha256_user_agents: server.sha256_user_agents.clone(),
            scanner_user_agents: server.scanner_user_agents.clone(),
            session_expires_secs: secs(server.session_expires),
            min_session_expires_secs: secs(server.min_session_expires),
            max_call_duration_secs: secs(server.max_call_duration),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        let d = domain::DomainConfig::default();
        Self {
            session_ttl_secs: to_u32(d.session_ttl_secs),
            login_max_failures: d.login_limits.max_failures,
            login_window_secs: to_u32(d.login_limits.window_secs),
            login_block_secs: to_u32(d.login_limits.block_secs),
            login_max_block_secs: to_u32(d.login_limits.max_block_secs),
            insecure_fast_password_hashing: d.password_cost == domain::PasswordCost::TestOnlyCheap,
        }
    }
}

/// A compiled default as a config value (they all fit; saturate if not).
fn to_u32<T: TryInto<u32>>(v: T) -> u32 {
    v.try_into().unwrap_or(u32::MAX)
}

fn secs(d: std::time::Duration) -> u32 {
    to_u32(d.as_secs())
}

const ENV_PREFIX: &str = "CENTRALITA_";

/// One configuration key, as the file and the environment name it.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// `[section]` of the key; empty for top-level keys.
    pub section: String,
    pub key: String,
    /// The compiled default; `None` for a key that is unset by default.
    pub default: Option<toml::Value>,
}

impl Setting {
    /// `sip.listen`, or `data_dir` for a top-level key.
    pub fn path(&self) -> String {
        if self.section.is_empty() {
            self.key.clone()
        } else {
            format!("{}.{}", self.section, self.key)
        }
    }

    /// `CENTRALITA_SIP_LISTEN`, `CENTRALITA_DATA_DIR`.
    pub fn env_name(&self) -> String {
        format!(
            "{ENV_PREFIX}{}",
            self.path().replace('.', "_").to_ascii_uppercase()
        )
    }
}

/// Every key of [`Config`] with its default: top-level keys first, then the
/// sections, each in alphabetical order. Read from the structs themselves,
/// so a new field is a new setting everywhere (environment, `--help`, and
/// the test that holds the sample file to it) without a list to update.
pub fn settings() -> Vec<Setting> {
    let defaults = Config::default();
    // JSON keeps unset options (as null) where TOML drops them.
    let all = match serde_json::to_value(&defaults) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    let values = toml::Table::try_from(&defaults).unwrap_or_default();
    let mut top = Vec::new();
    let mut sections = Vec::new();
    for (name, v) in &all {
        match v {
            serde_json::Value::Object(keys) => {
                for key in keys.keys() {
                    sections.push(Setting {
                        section: name.clone(),
                        key: key.clone(),
                        default: values.get(name).and_then(|t| t.get(key)).cloned(),
                    });
                }
            }
            _ => top.push(Setting {
                section: String::new(),
                key: name.clone(),
                default: values.get(name).cloned(),
            }),
        }
    }
    top.extend(sections);
    top
}

/// The settings as `centralita serve --help` lists them.
pub fn help() -> String {
    let settings = settings();
    let width = settings
        .iter()
        .map(|s| s.env_name().len())
        .max()
        .unwrap_or(0);
    let mut out = String::from(
        "Settings: defaults, then --config FILE (TOML), then the environment. Each key below \
         is shown with its variable and default; config/centralita.sample.toml explains them.\n\n",
    );
    for s in &settings {
        let default = s.default.as_ref().map_or("(unset)".into(), show);
        out.push_str(&format!(
            "  {:<width$}  {}  [default: {default}]\n",
            s.env_name(),
            s.path()
        ));
    }
    out.push_str(
        "\nBooleans: true/false/1/0/yes/no. Lists: comma-separated (a,b) or a TOML array \
         ([\"a\", \"b\"]). An empty value unsets an optional key. Logs: RUST_LOG (default info).",
    );
    out
}

impl Config {
    /// Defaults, then `file`, then the environment `vars`.
    pub fn load(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let settings = settings();
        let mut table = toml::Table::try_from(Config::default()).context("serializing defaults")?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let from_file: toml::Table =
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
            merge(&mut table, from_file);
        }
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let upper = name.to_ascii_uppercase();
            let Some(setting) = settings.iter().find(|s| s.env_name() == upper) else {
                // CI and scripts may set other CENTRALITA_ variables
                // (CENTRALITA_CONFIG, CENTRALITA_BIN), but a misspelt or
                // retired key of a section must not be ignored silently.
                let rest = rest.to_ascii_lowercase();
                if let Some(section) = settings
                    .iter()
                    .map(|s| s.section.as_str())
                    .find(|s| !s.is_empty() && rest.starts_with(&format!("{s}_")))
                {
                    bail!(
                        "{name}: [{section}] has no key {:?} (`centralita serve --help` lists \
                         every setting)",
                        &rest[section.len() + 1..]
                    );
                }
                continue;
            };
            let typed = match &setting.default {
                Some(toml::Value::Integer(_)) => toml::Value::Integer(
                    value
                        .trim()
                        .parse()
                        .with_context(|| format!("{name} must be an integer"))?,
                ),
                Some(toml::Value::Boolean(_)) => toml::Value::Boolean(
                    parse_bool(&value).with_context(|| format!("{name} must be true or false"))?,
                ),
                Some(toml::Value::Array(_)) => parse_list(&value).with_context(|| {
                    format!("{name} must be a comma-separated list or a TOML array")
                })?,
                _ => toml::Value::String(value),
            };
            if setting.section.is_empty() {
                table.insert(setting.key.clone(), typed);
            } else if let Some(toml::Value::Table(t)) = table.get_mut(&setting.section) {
                t.insert(setting.key.clone(), typed);
            }
        }
        // An empty value unsets a key that is unset by default.
        for s in settings.iter().filter(|s| s.default.is_none()) {
            let t = if s.section.is_empty() {
                Some(&mut table)
            } else {
                match table.get_mut(&s.section) {
                    Some(toml::Value::Table(t)) => Some(t),
                    _ => None,
                }
            };
            if let Some(t) = t {
                if t.get(&s.key)
                    .and_then(toml::Value::as_str)
                    .is_some_and(|v| v.trim().is_empty())
                {
                    t.remove(&s.key);
                }
            }
        }
        let mut cfg: Config = toml::Value::Table(table)
            .try_into()
            .context("invalid configuration")?;
        cfg.normalize();
        cfg.validate()?;
        Ok(cfg)
    }

    fn normalize(&mut self) {
        if let Some(h) = &mut self.sip.advertised_host {
            *h = h.trim().to_string();
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        // `https()` is checked by `serve`, not here: `gen-cert` must run
        // with a config that names certificate files not written yet.
        self.http_listen()?;
        self.sip
            .listen
            .parse::<SocketAddr>()
            .with_context(|| format!("sip.listen {:?} is not ip:port", self.sip.listen))?;
        if !self.sip.ws_path.starts_with('/') {
            bail!("sip.ws_path must start with /");
        }
        if self.sip.domain.trim().is_empty() {
            bail!("sip.domain must not be empty");
        }
        if let Some(h) = &self.sip.advertised_host {
            if !valid_host(h) {
                bail!(
                    "sip.advertised_host {h:?} must be a host name or IP address without a port \
                     (CENTRALITA_SIP_ADVERTISED_HOST)"
                );
            }
        }
        if !matches!(self.sip.tls_dial_verify.as_str(), "none" | "ca") {
            bail!(
                "sip.tls_dial_verify {:?} must be none or ca (CENTRALITA_SIP_TLS_DIAL_VERIFY)",
                self.sip.tls_dial_verify
            );
        }
        if self.sip.min_expires > self.sip.max_expires {
            bail!("sip.min_expires must not exceed sip.max_expires");
        }
        // RFC 4028 section 4: Min-SE is never below 90 s.
        if self.sip.min_session_expires_secs < 90 {
            bail!("sip.min_session_expires_secs must be at least 90 (RFC 4028)");
        }
        if self.sip.session_expires_secs != 0
            && self.sip.session_expires_secs < self.sip.min_session_expires_secs
        {
            bail!(
                "sip.session_expires_secs must be 0 (off) or at least sip.min_session_expires_secs"
            );
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            bail!(
                "log_format {:?} must be text or json (CENTRALITA_LOG_FORMAT)",
                self.log_format
            );
        }
        self.metrics_listen()?;
        if domain::media::AnchorMode::parse(&self.media.anchor).is_none() {
            bail!(
                "media.anchor {:?} must be always, when_needed or never (CENTRALITA_MEDIA_ANCHOR)",
                self.media.anchor
            );
        }
        self.media.ports()?;
        if let Some(a) = &self.media.advertised_address {
            match a.trim().parse::<std::net::IpAddr>() {
                Ok(ip) if !ip.is_unspecified() && !ip.is_multicast() => {}
                _ => bail!(
                    "media.advertised_address {a:?} must be an IP address phones and browsers \
                     can reach, not 0.0.0.0 (CENTRALITA_MEDIA_ADVERTISED_ADDRESS)"
                ),
            }
        }
        if self.media.rtp_timeout_secs == 0 {
            bail!("media.rtp_timeout_secs must be at least 1 (CENTRALITA_MEDIA_RTP_TIMEOUT_SECS)");
        }
        self.dialplan.policy()?;
        // The URL is checked here so that every command (serve, migrate,
        // check-config) refuses a database it cannot use before anything
        // else happens, and never falls back to another one.
        store::DbUrl::parse(&self.database_url())
            .map_err(|e| anyhow::anyhow!("database_url (CENTRALITA_DATABASE_URL): {e}"))?;
        if !matches!(self.mode.as_str(), "builtin" | "asterisk" | "relay") {
            bail!("mode must be builtin, asterisk or relay");
        }
        let upstream = self.relay_upstream()?;
        if let Some(o) = self.relay_origin() {
            // Sent as an HTTP header: a serialized origin, scheme://host[:port].
            let ok = o.contains("://") && o.chars().all(|c| c.is_ascii_graphic());
            if !ok {
                bail!(
                    "relay.origin {o:?} must be an origin such as https://pbx.example.com \
                     (CENTRALITA_RELAY_ORIGIN)"
                );
            }
        }
        if let Some(h) = self.relay_advertised_host() {
            if !valid_host(&h) {
                bail!(
                    "relay.advertised_host {h:?} must be a host name or IP address without a port \
                     (CENTRALITA_RELAY_ADVERTISED_HOST)"
                );
            }
        }
        if self.mode == "relay" && upstream.is_none() {
            bail!(
                "mode = \"relay\" needs relay.upstream, the PBX to relay browsers to: \
                 udp:HOST:PORT, tcp:HOST:PORT, tls:HOST:PORT, ws:HOST:PORT[/PATH] or \
                 wss:HOST:PORT[/PATH] (CENTRALITA_RELAY_UPSTREAM)"
            );
        }
        if self.mode == "asterisk" {
            let a = &self.asterisk;
            if a.ami_username.trim().is_empty() || a.ami_secret.as_deref().unwrap_or("").is_empty()
            {
                bail!(
                    "mode = \"asterisk\" needs asterisk.ami_username and asterisk.ami_secret \
                     (CENTRALITA_ASTERISK_AMI_USERNAME, CENTRALITA_ASTERISK_AMI_SECRET): the \
                     manager.conf user centralita logs in as"
                );
            }
            let port_ok = a
                .ami_address
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !port_ok {
                bail!(
                    "asterisk.ami_address {:?} must be host:port, e.g. 127.0.0.1:5038 \
                     (CENTRALITA_ASTERISK_AMI_ADDRESS)",
                    a.ami_address
                );
            }
            if a.originate_context.is_empty()
                || !a
                    .originate_context
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
            {
                bail!(
                    "asterisk.originate_context {:?} must be a dialplan context name \
                     (letters, digits, - _) (CENTRALITA_ASTERISK_ORIGINATE_CONTEXT)",
                    a.originate_context
                );
            }
        }
        if let Some(p) = &self.admin_password {
            let n = p.chars().count();
            if !(8..=128).contains(&n) {
                bail!("admin_password (CENTRALITA_ADMIN_PASSWORD) must be 8 to 128 characters");
            }
        }
        Ok(())
    }

    /// The PBX of relay mode, when `relay.upstream` is set.
    pub fn relay_upstream(&self) -> anyhow::Result<Option<relay::Upstream>> {
        match self.relay.upstream.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(u) => u
                .parse::<relay::Upstream>()
                .map(Some)
                .map_err(|e| anyhow::anyhow!("relay.upstream (CENTRALITA_RELAY_UPSTREAM): {e}")),
        }
    }

    /// `relay.origin`, when set (checked by `validate`).
    pub fn relay_origin(&self) -> Option<String> {
        self.relay
            .origin
            .as_deref()
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_string)
    }

    /// `relay.advertised_host`, when set (checked by `validate`).
    pub fn relay_advertised_host(&self) -> Option<String> {
        self.relay
            .advertised_host
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_string)
    }

    /// `relay.tls_ca`, when set.
    pub fn relay_tls_ca(&self) -> Option<PathBuf> {
        self.relay
            .tls_ca
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
    }

    /// The metrics-only listener, when `metrics.listen` is set.
    pub fn metrics_listen(&self) -> anyhow::Result<Option<SocketAddr>> {
        self.metrics
            .listen
            .as_deref()
            .map(|l| {
                l.parse().with_context(|| {
                    format!("metrics.listen {l:?} is not ip:port (CENTRALITA_METRICS_LISTEN)")
                })
            })
            .transpose()
    }

    /// JSON log lines (`log_format = "json"`).
    pub fn json_logs(&self) -> bool {
        self.log_format == "json"
    }

    pub fn http_listen(&self) -> anyhow::Result<SocketAddr> {
        self.http
            .listen
            .parse()
            .with_context(|| format!("http.listen {:?} is not ip:port", self.http.listen))
    }

    /// The HTTPS listener, when `http.tls_listen` is set: its address and
    /// the certificate and key files. Either all three keys or none.
    pub fn https(&self) -> anyhow::Result<Option<HttpsSettings>> {
        let h = &self.http;
        match (&h.tls_listen, &h.tls_cert, &h.tls_key) {
            (None, None, None) => Ok(None),
            (Some(listen), Some(cert), Some(key)) => Ok(Some(HttpsSettings {
                listen: listen
                    .parse()
                    .with_context(|| format!("http.tls_listen {listen:?} is not ip:port"))?,
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            })),
            _ => bail!(
                "HTTPS needs all of http.tls_listen, http.tls_cert and http.tls_key \
                 (CENTRALITA_HTTP_TLS_LISTEN, _TLS_CERT, _TLS_KEY); `centralita gen-cert` \
                 makes a development certificate"
            ),
        }
    }

    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!("sqlite://{}", self.data_dir.join("centralita.db").display())
        })
    }
}

/// A DNS name, an IPv4 address or an IPv6 address (bracketed or not): what
/// may stand as the host of a SIP URI. It goes into every Via and Contact we
/// send, so anything else (a port, spaces, `;`) would corrupt them.
fn valid_host(h: &str) -> bool {
    let bare = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A default as a person would type it in the environment.
fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(|i| format!("{:?}", show(i))).collect();
            format!("[{}]", items.join(", "))
        }
        other => format!("{other:?}"),
    }
}

/// A list from the environment: a TOML array (`["a", "b"]`, for items
/// holding commas) or comma-separated items (`a, b`); empty is `[]`.
fn parse_list(v: &str) -> anyhow::Result<toml::Value> {
    let v = v.trim();
    if v.starts_with('[') {
        let t: toml::Table = toml::from_str(&format!("v = {v}"))?;
        return match t.get("v") {
            Some(a @ toml::Value::Array(_)) => Ok(a.clone()),
            _ => bail!("not an array"),
        };
    }
    Ok(toml::Value::Array(
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| toml::Value::String(s.to_string()))
            .collect(),
    ))
}

/// Overlays `over` onto `base`, section by section.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let c = Config::load(None, env(&[])).expect("defaults load");
        assert_eq!(c.http.listen, "127.0.0.1:8080");
        assert_eq!(c.sip.listen, "127.0.0.1:5060");
        assert_eq!(c.sip.extension_start, 1000);
        assert_eq!(c.database_url(), "sqlite://./data/centralita.db");
    }

    #[test]
    fn file_then_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "data_dir = \"/tmp/x\"\n[sip]\ndomain = \"pbx.test\"\nmax_contacts = 3\n",
        )
        .expect("write");
        let c = Config::load(
            Some(&f),
            env(&[
                ("CENTRALITA_HTTP_LISTEN", "127.0.0.1:9999"),
                ("CENTRALITA_SIP_MAX_CONTACTS", "7"),
                ("CENTRALITA_ADMIN_PASSWORD", "12345678"),
                ("CENTRALITA_DATABASE_URL", "sqlite:///tmp/y.db"),
                ("CENTRALITA_SIP_TLS_CERT", "/c.pem"),
                ("CENTRALITA_AUTH_INSECURE_FAST_PASSWORD_HASHING", "true"),
                ("CENTRALITA_SOMETHING_ELSE", "ignored"),
                ("PATH", "/bin"),
            ]),
        )
        .expect("load");
        assert_eq!(c.http.listen, "127.0.0.1:9999");
        assert_eq!(c.sip.domain, "pbx.test");
        assert_eq!(c.sip.max_contacts, 7);
        assert_eq!(c.admin_password.as_deref(), Some("12345678"));
        assert_eq!(c.database_url(), "sqlite:///tmp/y.db");
        assert_eq!(c.sip.tls_cert.as_deref(), Some("/c.pem"));
        assert!(c.auth.insecure_fast_password_hashing);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn https_needs_all_three_keys() {
        let c = Config::load(None, env(&[])).expect("defaults");
        assert_eq!(c.https().expect("ok"), None);
        let c = Config::load(
            None,
            env(&[
                ("CENTRALITA_HTTP_TLS_LISTEN", "127.0.0.1:8443"),
                ("CENTRALITA_HTTP_TLS_CERT", "/t/cert.pem"),
                ("CENTRALITA_HTTP_TLS_KEY", "/t/key.pem"),
            ]),
        )
        .expect("load");
        let h = c.https().expect("ok").expect("configured");
        assert_eq!(h.listen.port(), 8443);
        assert_eq!(h.cert, PathBuf::from("/t/cert.pem"));
        assert_eq!(h.key, PathBuf::from("/t/key.pem"));
        // Empty values mean unset.
        let c = Config::load(None, env(&[("CENTRALITA_HTTP_TLS_LISTEN", " ")])).expect("load");
        assert_eq!(c.https().expect("ok"), None);
        let err = Config::load(
            None,
            env(&[("CENTRALITA_HTTP_TLS_LISTEN", "127.0.0.1:8443")]),
        )
        .expect("loads (gen-cert may still have to write the files)")
        .https()
        .expect_err("cert and key missing");
        assert!(format!("{err:#}").contains("http.tls_cert"), "{err:#}");
        let err = Config::load(
            None,
            env(&[
                ("CENTRALITA_HTTP_TLS_LISTEN", "port 8443"),
                ("CENTRALITA_HTTP_TLS_CERT", "/c"),
                ("CENTRALITA_HTTP_TLS_KEY", "/k"),
            ]),
        )
        .expect("loads")
        .https()
        .expect_err("bad address");
        assert!(format!("{err:#}").contains("http.tls_listen"), "{err:#}");
    }

    #[test]
    fn sample_config_parses_to_the_defaults() {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/centralita.sample.toml");
        let c = Config::load(Some(&sample), env(&[])).expect("sample parses");
        let d = Config::default();
        assert_eq!(toml::Table::try_from(c).ok(), toml::Table::try_from(d).ok());
    }

    /// The sample shows every key with its compiled default: set keys as
    /// `key = value`, keys unset by default as a commented `# key = ...`
    /// example; and it shows no key the server does not have.
    #[test]
    fn sample_config_shows_every_key_with_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/centralita.sample.toml");
        let text = std::fs::read_to_string(&path).expect("read sample");
        let sample: toml::Table = toml::from_str(&text).expect("sample is TOML");
        // (section, key) of the commented-out examples.
        let mut commented = Vec::new();
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_string();
            } else if let Some((key, _)) = line.strip_prefix("# ").and_then(|l| l.split_once(" = "))
            {
                if key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
                {
                    commented.push((section.clone(), key.to_string()));
                }
            }
        }
        let settings = settings();
        assert!(settings.len() > 30, "{settings:?}");
        for s in &settings {
            let shown = if s.section.is_empty() {
                sample.get(&s.key)
            } else {
                sample.get(&s.section).and_then(|t| t.get(&s.key))
            };
            match &s.default {
                Some(default) => assert_eq!(
                    shown,
                    Some(default),
                    "the sample must show {} = {default:?} (the compiled default)",
                    s.path()
                ),
                None => {
                    assert_eq!(shown, None, "{} is unset by default", s.path());
                    assert!(
                        commented.contains(&(s.section.clone(), s.key.clone())),
                        "the sample must show `# {} = ...` under [{}]",
                        s.key,
                        s.section
                    );
                }
            }
        }
        let known = |section: &str, key: &str| {
            settings
                .iter()
                .any(|s| s.section == section && s.key == key)
        };
        for (k, v) in &sample {
            match v {
                toml::Value::Table(t) => {
                    for key in t.keys() {
                        assert!(known(k, key), "the sample shows unknown key {k}.{key}");
                    }
                }
                _ => assert!(known("", k), "the sample shows unknown key {k}"),
            }
        }
        for (section, key) in &commented {
            assert!(
                known(section, key),
                "the sample shows unknown key {section}.{key}"
            );
        }
    }

    #[test]
    fn settings_include_the_options_and_name_their_variables() {
        let s = settings();
        let find = |path: &str| s.iter().find(|x| x.path() == path).cloned();
        let db = find("database_url").expect("database_url");
        assert_eq!(
            (db.env_name().as_str(), db.default),
            ("CENTRALITA_DATABASE_URL", None)
        );
        let l = find("sip.listen").expect("sip.listen");
        assert_eq!(l.env_name(), "CENTRALITA_SIP_LISTEN");
        assert_eq!(
            l.default,
            Some(toml::Value::String("127.0.0.1:5060".into()))
        );
        assert!(find("sip.tls_key").is_some_and(|x| x.default.is_none()));
        let help = help();
        for x in &s {
            let line = help
                .lines()
                .find(|l| l.split_whitespace().next() == Some(x.env_name().as_str()))
                .unwrap_or_else(|| panic!("help lacks {}", x.env_name()));
            assert!(line.contains(&x.path()), "{line}");
        }
    }

    #[test]
    fn relay_origin_and_advertised_host() {
        let c = Config::load(None, env(&[])).expect("defaults");
        assert_eq!((c.relay_origin(), c.relay_advertised_host()), (None, None));
        let c = Config::load(
            None,
            env(&[
                ("CENTRALITA_RELAY_ORIGIN", " https://pbx.example.test:5001 "),
                ("CENTRALITA_RELAY_ADVERTISED_HOST", "relay.example.test"),
            ]),
        )
        .expect("valid");
        assert_eq!(
            c.relay_origin().as_deref(),
            Some("https://pbx.example.test:5001")
        );
        assert_eq!(
            c.relay_advertised_host().as_deref(),
            Some("relay.example.test")
        );
        for (var, bad, says) in [
            (
                "CENTRALITA_RELAY_ORIGIN",
                "pbx.example.test",
                "relay.origin",
            ),
            (
                "CENTRALITA_RELAY_ORIGIN",
                "https://pbx test",
                "relay.origin",
            ),
            (
                "CENTRALITA_RELAY_ADVERTISED_HOST",
                "relay.example.test:5060",
                "relay.advertised_host",
            ),
            (
                "CENTRALITA_RELAY_ADVERTISED_HOST",
                "bad host",
                "relay.advertised_host",
            ),
        ] {
            let err = Config::load(None, env(&[(var, bad)])).expect_err(bad);
            assert!(format!("{err:#}").contains(says), "{bad}: {err:#}");
        }
    }

    #[test]
    fn relay_mode_needs_a_valid_upstream() {
        let err =
            Config::load(None, env(&[("CENTRALITA_MODE", "relay")])).expect_err("no upstream");
        assert!(format!("{err:#}").contains("relay.upstream"), "{err:#}");
        let err = Config::load(
            None,
            env(&[
                ("CENTRALITA_MODE", "relay"),
                ("CENTRALITA_RELAY_UPSTREAM", "pbx.example.test:5060"),
            ]),
        )
        .expect_err("no transport");
        let text = format!("{err:#}");
        assert!(
            text.contains("CENTRALITA_RELAY_UPSTREAM") && text.contains("udp:HOST:PORT"),
            "{text}"
        );
        let c = Config::load(
            None,
            env(&[
                ("CENTRALITA_MODE", "relay"),
                ("CENTRALITA_RELAY_UPSTREAM", "tcp:pbx.example.test:5080"),
            ]),
        )
        .expect("valid");
        let u = c.relay_upstream().expect("parses").expect("set");
        assert_eq!(
            (u.transport, u.host.as_str(), u.port),
            (relay::UpTransport::Tcp, "pbx.example.test", 5080)
        );
        // A bad upstream is refused in any mode (it would fail on switching).
        assert!(Config::load(None, env(&[("CENTRALITA_RELAY_UPSTREAM", "sips:x:1")])).is_err());
    }

    #[test]
    fn lists_from_the_environment() {
        let ua = |v: &str| {
            Config::load(None, env(&[("CENTRALITA_SIP_SHA256_USER_AGENTS", v)]))
                .map(|c| c.sip.sha256_user_agents)
        };
        assert_eq!(
            ua("Linphone, MicroSIP/3 ,").expect("commas"),
            ["Linphone", "MicroSIP/3"]
        );
        assert_eq!(
            ua(r#"["Acme, Inc. phone", "Zoiper"]"#).expect("TOML array"),
            ["Acme, Inc. phone", "Zoiper"]
        );
        assert_eq!(ua(" ").expect("empty"), Vec::<String>::new());
        assert_eq!(ua("[]").expect("empty array"), Vec::<String>::new());
        let err = ua(r#"["unterminated"#).expect_err("bad array");
        assert!(
            format!("{err:#}").contains("CENTRALITA_SIP_SHA256_USER_AGENTS"),
            "{err:#}"
        );
        assert!(ua("[1, 2]").is_err(), "items must be strings");
        // The file form is unchanged and the environment wins over it.
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[sip]\nsha256_user_agents = [\"FromFile\"]\n").expect("write");
        let c = Config::load(Some(&f), env(&[])).expect("file");
        assert_eq!(c.sip.sha256_user_agents, ["FromFile"]);
        let c = Config::load(
            Some(&f),
            env(&[("CENTRALITA_SIP_SHA256_USER_AGENTS", "A,B")]),
        )
        .expect("file and env");
        assert_eq!(c.sip.sha256_user_agents, ["A", "B"]);
    }

    #[test]
    fn media_section_is_validated() {
        let c = Config::load(None, env(&[])).expect("defaults");
        assert_eq!(c.media.anchor, "always");
        assert_eq!(c.media.ports().expect("range"), 20_000..=29_999);
        for (var, value, says) in [
            ("CENTRALITA_MEDIA_ANCHOR", "sometimes", "media.anchor"),
            (
                "CENTRALITA_DIALPLAN_AGENT_PERMISSION",
                "everywhere",
                "dialplan.agent_permission",
            ),
            (
                "CENTRALITA_DIALPLAN_OUTBOUND_PATTERNS",
                "_X.X",
                "dialplan.outbound_patterns",
            ),
            (
                "CENTRALITA_DIALPLAN_COUNTRY_CODE",
                "+34",
                "dialplan.country_code",
            ),
            ("CENTRALITA_MEDIA_PORT_RANGE", "30000", "media.port_range"),
            (
                "CENTRALITA_MEDIA_PORT_RANGE",
                "900-2000",
                "media.port_range",
            ),
            (
                "CENTRALITA_MEDIA_PORT_RANGE",
                "4000-4001",
                "media.port_range",
            ),
            (
                "CENTRALITA_MEDIA_ADVERTISED_ADDRESS",
                "0.0.0.0",
                "media.advertised_address",
            ),
            (
                "CENTRALITA_MEDIA_ADVERTISED_ADDRESS",
                "pbx.test",
                "media.advertised_address",
            ),
            (
                "CENTRALITA_MEDIA_RTP_TIMEOUT_SECS",
                "0",
                "media.rtp_timeout_secs",
            ),
        ] {
            let err = Config::load(None, env(&[(var, value)])).expect_err(value);
            assert!(format!("{err:#}").contains(says), "{var}={value}: {err:#}");
        }
    }

    /// Every key can come from the environment, whatever its type.
    #[test]
    fn every_key_is_settable_from_the_environment() {
        for s in settings() {
            let value = match &s.default {
                Some(toml::Value::Integer(i)) => (i + 1).to_string(),
                Some(toml::Value::Boolean(b)) => (!b).to_string(),
                Some(toml::Value::Array(_)) if s.path() == "dialplan.outbound_patterns" => {
                    "_9X.,_00X.".to_string()
                }
                Some(toml::Value::Array(_)) if s.path() == "dialplan.blocked_prefixes" => {
                    "803,900".to_string()
                }
                Some(toml::Value::Array(_)) => "x,y".to_string(),
                _ => match s.path().as_str() {
                    "sip.listen" | "http.listen" => "127.0.0.1:1".into(),
                    "sip.advertised_host" => "pbx.test".into(),
                    "sip.ws_path" => "/sip".into(),
                    "admin_password" => "long-enough-password".into(),
                    // (with relay.upstream, which relay mode needs: below)
                    "mode" => "relay".into(),
                    "relay.upstream" => "udp:127.0.0.1:5060".into(),
                    "relay.tls_ca" => "/etc/pbx-ca.pem".into(),
                    "relay.origin" => "https://pbx.example.test".into(),
                    "relay.advertised_host" => "203.0.113.9".into(),
                    "log_format" => "json".into(),
                    "sip.tls_dial_verify" => "ca".into(),
                    "database_url" => "sqlite:///tmp/elsewhere.db".into(),
                    p if p.ends_with("tls_listen") => "127.0.0.1:2".into(),
                    "metrics.listen" => "127.0.0.1:3".into(),
                    "media.anchor" => "when_needed".into(),
                    "media.port_range" => "30000-30999".into(),
                    "media.advertised_address" => "192.0.2.7".into(),
                    "dialplan.agent_permission" => "international".into(),
                    "dialplan.country_code" => "44".into(),
                    "dialplan.international_prefix" => "011".into(),
                    "dialplan.national_prefix" => "0".into(),
                    "dialplan.prepend" => "+34".into(),
                    p => format!("/{p}"),
                },
            };
            let name = s.env_name();
            let mut vars = vec![(name.as_str(), value.as_str())];
            if s.path() == "mode" {
                vars.push(("CENTRALITA_RELAY_UPSTREAM", "udp:127.0.0.1:5060"));
            }
            let c = Config::load(None, env(&vars))
                .unwrap_or_else(|e| panic!("{}={value}: {e:#}", s.env_name()));
            let t = toml::Table::try_from(c).expect("serialize");
            let got = if s.section.is_empty() {
                t.get(&s.key)
            } else {
                t.get(&s.section).and_then(|x| x.get(&s.key))
            };
            assert!(
                got.is_some() && got != s.default.as_ref(),
                "{} ignored: {got:?}",
                s.env_name()
            );
        }
    }

    #[test]
    fn unknown_keys_of_a_section_in_the_environment_are_errors() {
        let err = Config::load(None, env(&[("CENTRALITA_SIP_MD5_ONLY_USER_AGENTS", "x")]))
            .expect_err("retired key");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("CENTRALITA_SIP_MD5_ONLY_USER_AGENTS")
                && msg.contains("md5_only_user_agents"),
            "{msg}"
        );
        // Variables outside the sections belong to others (clap, scripts).
        Config::load(
            None,
            env(&[
                ("CENTRALITA_CONFIG", "x.toml"),
                ("CENTRALITA_BIN", "/bin/x"),
            ]),
        )
        .expect("not ours");
    }

    #[test]
    fn sip_advertised_host() {
        let c = Config::load(None, env(&[])).expect("defaults");
        assert_eq!(c.sip.advertised_host, None);
        let c = Config::load(
            None,
            env(&[
                ("CENTRALITA_SIP_LISTEN", "0.0.0.0:5060"),
                ("CENTRALITA_SIP_ADVERTISED_HOST", " pbx.example.test "),
            ]),
        )
        .expect("load");
        assert_eq!(c.sip.advertised_host.as_deref(), Some("pbx.example.test"));
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[sip]\nadvertised_host = \"192.0.2.7\"\n").expect("write");
        let c = Config::load(Some(&f), env(&[])).expect("load file");
        assert_eq!(c.sip.advertised_host.as_deref(), Some("192.0.2.7"));
        for ok in ["[2001:db8::1]", "2001:db8::1", "pbx-1.local"] {
            let c = Config::load(None, env(&[("CENTRALITA_SIP_ADVERTISED_HOST", ok)]));
            assert_eq!(c.expect(ok).sip.advertised_host.as_deref(), Some(ok));
        }
        // Empty means unset.
        let c = Config::load(None, env(&[("CENTRALITA_SIP_ADVERTISED_HOST", "")])).expect("load");
        assert_eq!(c.sip.advertised_host, None);
        for bad in ["pbx.test:5060", "a b", "pbx;lr", "-pbx", "a..b", "[pbx]"] {
            let err =
                Config::load(None, env(&[("CENTRALITA_SIP_ADVERTISED_HOST", bad)])).expect_err(bad);
            assert!(
                format!("{err:#}").contains("sip.advertised_host"),
                "{err:#}"
            );
        }
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(Config::load(None, env(&[("CENTRALITA_SIP_MAX_CONTACTS", "many")])).is_err());
        assert!(Config::load(None, env(&[("CENTRALITA_HTTP_LISTEN", "nowhere")])).is_err());
        assert!(Config::load(None, env(&[("CENTRALITA_ADMIN_PASSWORD", "short")])).is_err());
        assert!(Config::load(None, env(&[("CENTRALITA_LOG_FORMAT", "xml")])).is_err());
        assert!(Config::load(None, env(&[("CENTRALITA_METRICS_LISTEN", "9090")])).is_err());
        let err = Config::load(
            None,
            env(&[(
                "CENTRALITA_DATABASE_URL",
                "mysql://root@127.0.0.1/centralita",
            )]),
        )
        .expect_err("MySQL is not supported");
        assert!(format!("{err:#}").contains("MySQL"), "{err:#}");
        // PostgreSQL is: the server is only contacted at start.
        Config::load(
            None,
            env(&[(
                "CENTRALITA_DATABASE_URL",
                "postgres://postgres@127.0.0.1/centralita",
            )]),
        )
        .expect("a PostgreSQL URL");
        // Session timers: Min-SE never below 90 s, the interval 0 (off) or above Min-SE.
        let timers = |se: &str, min: &str| {
            Config::load(
                None,
                env(&[
                    ("CENTRALITA_SIP_SESSION_EXPIRES_SECS", se),
                    ("CENTRALITA_SIP_MIN_SESSION_EXPIRES_SECS", min),
                ]),
            )
        };
        assert!(timers("1800", "60").is_err());
        assert!(timers("100", "120").is_err());
        timers("0", "90").expect("timers off");
        timers("120", "120").expect("interval equal to Min-SE");
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[sip]\nno_such_key = 1\n").expect("write");
        assert!(Config::load(Some(&f), env(&[])).is_err());
    }
}
