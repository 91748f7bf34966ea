//! What the application says about one trunk's registration, and the
//! checks that keep a bad setting from reaching the wire (no CR/LF or
//! header syntax smuggled through a URI or a user name).

use crate::core::types::Transport;

/// One trunk's outbound registration settings (the fields of Asterisk's
/// `registration` section that matter here; see README, "Outbound
/// registration of trunks").
#[derive(Clone, PartialEq, Eq)]
pub struct TrunkRegistration {
    /// The trunk's identity in events and statuses (e.g. its id).
    pub key: String,
    /// The registrar: `host[:port]` or a SIP URI (`sip:host[:port]`); it is
    /// both where REGISTERs are sent and their Request-URI. Port 5060 when
    /// none is given. A host name is resolved by the shell.
    pub registrar: String,
    /// UDP, TCP or TLS.
    pub transport: Transport,
    /// The address of record being registered (To and From):
    /// `sip:user@domain` or `user@domain`.
    pub aor: String,
    /// User part of our Contact (the carrier sends calls for the trunk there).
    pub contact_user: String,
    pub auth_username: String,
    pub secret: String,
    /// Only challenges of this realm are answered; `None`: any.
    pub realm: Option<String>,
    /// Expiry asked for (the registrar may grant less).
    pub expires_secs: u32,
    /// First delay after a failure; doubled per failure in a row.
    pub retry_interval_secs: u32,
    /// Failed attempts in a row before giving up; 0 retries forever.
    pub max_retries: u32,
    /// After a 403, try again this long later; 0 never does.
    pub forbidden_retry_secs: u32,
}

impl std::fmt::Debug for TrunkRegistration {
    // By hand so the secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrunkRegistration")
            .field("key", &self.key)
            .field("registrar", &self.registrar)
            .field("transport", &self.transport)
            .field("aor", &self.aor)
            .field("contact_user", &self.contact_user)
            .field("auth_username", &self.auth_username)
            .field("secret", &"<redacted>")
            .field("realm", &self.realm)
            .field("expires_secs", &self.expires_secs)
            .field("retry_interval_secs", &self.retry_interval_secs)
            .field("max_retries", &self.max_retries)
            .field("forbidden_retry_secs", &self.forbidden_retry_secs)
            .finish()
    }
}

/// A setting that cannot be used; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrunkConfigError {
    #[error("trunk {key:?}: {problem}")]
    Invalid { key: String, problem: &'static str },
    #[error("trunk {0:?} is listed twice")]
    Duplicate(String),
}

/// Where a trunk's REGISTERs go, worked out from its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host to resolve (an IP literal needs no resolving), without brackets.
    pub host: String,
    pub port: u16,
    /// Request-URI: `sip:host[:port]`.
    pub ruri: String,
    /// `sip:user@domain`.
    pub aor: String,
}

/// Characters that could end a header or break its syntax.
fn unsafe_char(c: char) -> bool {
    c.is_control() || c.is_whitespace() || matches!(c, '<' | '>' | '"' | ',' | '\\')
}

/// A user part we put inside a URI and a quoted string.
fn plain_user(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| unsafe_char(c) || matches!(c, '@' | ';' | ':' | '?'))
}

impl TrunkRegistration {
    /// Checks the settings and works out the target.
    pub fn target(&self) -> Result<Target, TrunkConfigError> {
        let bad = |problem| TrunkConfigError::Invalid {
            key: self.key.clone(),
            problem,
        };
        if self.key.is_empty() || self.key.chars().any(char::is_control) {
            return Err(bad("the key is empty or has control characters"));
        }
        if !matches!(
            self.transport,
            Transport::Udp | Transport::Tcp | Transport::Tls
        ) {
            return Err(bad("registration supports UDP, TCP and TLS only"));
        }
        if self.expires_secs == 0 {
            return Err(bad("expires must be at least 1 second"));
        }
        if self.retry_interval_secs == 0 {
            return Err(bad("the retry interval must be at least 1 second"));
        }
        if !plain_user(&self.contact_user) {
            return Err(bad("the contact user must be a plain SIP user name"));
        }
        if self.auth_username.is_empty()
            || self
                .auth_username
                .chars()
                .any(|c| c.is_control() || c == '"' || c == '\\')
        {
            return Err(bad("the auth username is empty or cannot be quoted"));
        }
        if self
            .realm
            .as_deref()
            .is_some_and(|r| r.chars().any(|c| c.is_control() || c == '"'))
        {
            return Err(bad("the realm has control characters or quotes"));
        }
        let (host, port, explicit_port) = host_port(&self.registrar)
            .ok_or_else(|| bad("the registrar is not host[:port] or sip:host[:port]"))?;
        let aor_body = self
            .aor
            .strip_prefix("sip:")
            .or_else(|| self.aor.strip_prefix("SIP:"))
            .unwrap_or(&self.aor);
        let Some((user, domain)) = aor_body.split_once('@') else {
            return Err(bad("the AOR must be user@domain"));
        };
        if !plain_user(user)
            || domain.is_empty()
            || domain
                .chars()
                .any(|c| unsafe_char(c) || matches!(c, '@' | ';' | '?'))
        {
            return Err(bad("the AOR must be user@domain"));
        }
        let host_in_uri = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let ruri = if explicit_port {
            format!("sip:{host_in_uri}:{port}")
        } else {
            format!("sip:{host_in_uri}")
        };
        Ok(Target {
            host,
            port,
            ruri,
            aor: format!("sip:{user}@{domain}"),
        })
    }
}

/// (host, port, whether the port was written) of `host[:port]`,
/// `[v6]:port` or `sip:[user@]host[:port][;params]`.
fn host_port(s: &str) -> Option<(String, u16, bool)> {
    let s = s.trim();
    let s = s
        .strip_prefix("sip:")
        .or_else(|| s.strip_prefix("SIP:"))
        .unwrap_or(s);
    let s = s.rsplit_once('@').map_or(s, |(_, h)| h);
    let s = s.split([';', '?']).next()?;
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (ip, rest) = v6.split_once(']')?;
        ip.parse::<std::net::Ipv6Addr>().ok()?;
        (ip, rest.strip_prefix(':'))
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty()
        || host
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')))
    {
        return None;
    }
    match port {
        None => Some((host.to_string(), 5060, false)),
        Some(p) => {
            let p: u16 = p.parse().ok().filter(|p| *p != 0)?;
            Some((host.to_string(), p, true))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn reg(key: &str) -> TrunkRegistration {
        TrunkRegistration {
            key: key.into(),
            registrar: "sip:carrier.test:5070".into(),
            transport: Transport::Udp,
            aor: "sip:trunk1@carrier.test".into(),
            contact_user: "trunk1".into(),
            auth_username: "trunk1".into(),
            secret: "s3cret".into(),
            realm: None,
            expires_secs: 300,
            retry_interval_secs: 60,
            max_retries: 0,
            forbidden_retry_secs: 0,
        }
    }

    #[test]
    fn target_from_uri_and_host_port() {
        let t = reg("a").target().expect("valid");
        assert_eq!((t.host.as_str(), t.port), ("carrier.test", 5070));
        assert_eq!(t.ruri, "sip:carrier.test:5070");
        assert_eq!(t.aor, "sip:trunk1@carrier.test");
        let mut r = reg("a");
        r.registrar = "10.0.0.1".into();
        r.aor = "trunk1@10.0.0.1".into();
        let t = r.target().expect("valid");
        assert_eq!((t.port, t.ruri.as_str()), (5060, "sip:10.0.0.1"));
        assert_eq!(t.aor, "sip:trunk1@10.0.0.1");
        r.registrar = "[::1]:5080".into();
        let t = r.target().expect("valid");
        assert_eq!(
            (t.host.as_str(), t.ruri.as_str()),
            ("::1", "sip:[::1]:5080")
        );
    }

    #[test]
    fn refuses_settings_that_would_break_the_message() {
        // Each case breaks one setting of a valid registration.
        let cases: Vec<fn(&mut TrunkRegistration)> = vec![
            |r| r.registrar = "carrier.test:0".into(),
            |r| r.registrar = "carrier.test:99999".into(),
            |r| r.registrar = "carrier test".into(),
            |r| r.aor = "sip:carrier.test".into(),
            |r| r.aor = "sip:a@b\r\nX-Evil: 1".into(),
            |r| r.contact_user = "a>b".into(),
            |r| r.contact_user = String::new(),
            |r| r.auth_username = "a\"b".into(),
            |r| r.expires_secs = 0,
            |r| r.retry_interval_secs = 0,
            |r| r.transport = Transport::Ws,
            |r| r.key = String::new(),
        ];
        for (i, f) in cases.iter().enumerate() {
            let mut r = reg("a");
            f(&mut r);
            assert!(
                matches!(r.target(), Err(TrunkConfigError::Invalid { .. })),
                "case {i} accepted: {r:?}"
            );
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let s = format!("{:?}", reg("a"));
        assert!(!s.contains("s3cret") && s.contains("redacted"));
    }
}
