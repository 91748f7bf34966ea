//! Configuration: defaults, then a TOML file (`--config`), then
//! environment variables `CENTRALITA_<SECTION>_<KEY>` (top-level keys:
//! `CENTRALITA_<KEY>`). Every key is documented in
//! config/centralita.sample.toml.

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
    pub http: HttpConfig,
    pub console: ConsoleConfig,
    pub sip: SipConfig,
    pub auth: AuthConfig,
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

/// The `[sip]` section, passed to the SIP server as is.
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
    /// User-Agent prefixes also offered a SHA-256 digest challenge (see the sample config).
    pub sha256_user_agents: Vec<String>,
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
            http: HttpConfig::default(),
            console: ConsoleConfig::default(),
            sip: SipConfig::default(),
            auth: AuthConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            trust_proxy: false,
            cookie_secure: false,
            body_limit_bytes: 65_536,
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("web/dist"),
        }
    }
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:5060".into(),
            ws_path: "/ws".into(),
            domain: "centralita.local".into(),
            advertised_host: None,
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
            min_expires: 60,
            max_expires: 3600,
            default_expires: 600,
            max_contacts: 5,
            ring_timeout_secs: 30,
            auth_fail_limit: 10,
            auth_fail_window_secs: 60,
            ban_secs: 300,
            ephemeral_ttl_secs: 43_200,
            extension_start: 1000,
            max_message_bytes: 65_535,
            max_connections_per_ip: 64,
            sha256_user_agents: Vec::new(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_ttl_secs: 43_200,
            login_max_failures: 5,
            login_window_secs: 900,
            login_block_secs: 60,
            login_max_block_secs: 3600,
            insecure_fast_password_hashing: false,
        }
    }
}

/// Keys whose default is unset (so absent from the serialized defaults).
const OPTIONAL_KEYS: &[(&str, &str)] = &[
    ("", "database_url"),
    ("", "admin_password"),
    ("http", "tls_listen"),
    ("http", "tls_cert"),
    ("http", "tls_key"),
    ("sip", "advertised_host"),
    ("sip", "tls_listen"),
    ("sip", "tls_cert"),
    ("sip", "tls_key"),
];

const ENV_PREFIX: &str = "CENTRALITA_";

impl Config {
    /// Defaults, then `file`, then the environment `vars`.
    pub fn load(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let defaults = toml::Table::try_from(Config::default()).context("serializing defaults")?;
        let mut table = defaults.clone();
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
            let rest = rest.to_ascii_lowercase();
            let (section, key) = match rest.split_once('_') {
                Some((s, k)) if defaults.get(s).is_some_and(toml::Value::is_table) => {
                    (s.to_string(), k.to_string())
                }
                _ => (String::new(), rest.clone()),
            };
            let known_default = if section.is_empty() {
                defaults.get(&key).filter(|v| !v.is_table()).cloned()
            } else {
                defaults.get(&section).and_then(|t| t.get(&key)).cloned()
            };
            let optional = OPTIONAL_KEYS
                .iter()
                .any(|(s, k)| *s == section && *k == key);
            let typed = match known_default {
                Some(toml::Value::Integer(_)) => toml::Value::Integer(
                    value
                        .trim()
                        .parse()
                        .with_context(|| format!("{name} must be an integer"))?,
                ),
                Some(toml::Value::Boolean(_)) => toml::Value::Boolean(
                    parse_bool(&value).with_context(|| format!("{name} must be true or false"))?,
                ),
                Some(_) => toml::Value::String(value),
                None if optional => toml::Value::String(value),
                // Not one of ours (CI and scripts may set other CENTRALITA_ vars).
                None => continue,
            };
            if section.is_empty() {
                table.insert(key, typed);
            } else if let Some(toml::Value::Table(t)) = table.get_mut(&section) {
                t.insert(key, typed);
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
        for v in [
            &mut self.database_url,
            &mut self.admin_password,
            &mut self.http.tls_listen,
            &mut self.http.tls_cert,
            &mut self.http.tls_key,
            &mut self.sip.advertised_host,
            &mut self.sip.tls_listen,
            &mut self.sip.tls_cert,
            &mut self.sip.tls_key,
        ] {
            if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                *v = None;
            }
        }
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
        if self.sip.min_expires > self.sip.max_expires {
            bail!("sip.min_expires must not exceed sip.max_expires");
        }
        if !matches!(self.mode.as_str(), "builtin" | "asterisk" | "relay") {
            bail!("mode must be builtin, asterisk or relay");
        }
        if let Some(p) = &self.admin_password {
            let n = p.chars().count();
            if !(8..=128).contains(&n) {
                bail!("admin_password (CENTRALITA_ADMIN_PASSWORD) must be 8 to 128 characters");
            }
        }
        Ok(())
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
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[sip]\nno_such_key = 1\n").expect("write");
        assert!(Config::load(Some(&f), env(&[])).is_err());
    }
}
