//! Agents' SIP accounts as PJSIP `endpoint`, `auth` and `aor` sections.
//!
//! The endpoint and its aor are named after the SIP username (what the
//! softphone registers as: `identify_by=username` and the REGISTER's
//! address of record both use it), the auth section is `<username>-auth`.
//! The password is never written: `auth_type = md5` with `md5_cred` set to
//! the stored HA1 (MD5 of `username:realm:password`), so the `realm` must
//! be the realm the HA1 was computed for.

use super::ini::{check_name, check_value, render, Section};
use super::{header, ConfigError};

/// One agent's SIP account, as rendered.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentAccount {
    /// The SIP username; also the endpoint and aor name.
    pub username: String,
    pub extension: String,
    pub display_name: String,
    /// Lowercase hex MD5 of `username:realm:password`.
    pub ha1_md5: String,
    /// A browser softphone (WebRTC over WSS) rather than a desk phone.
    pub webrtc: bool,
}

impl std::fmt::Debug for AgentAccount {
    // The HA1 is as good as the password against this realm.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentAccount")
            .field("username", &self.username)
            .field("extension", &self.extension)
            .field("webrtc", &self.webrtc)
            .finish_non_exhaustive()
    }
}

impl AgentAccount {
    /// The account of `c` with its long-lived MD5 HA1; `None` for an
    /// inactive account (it must not be able to register) or one without
    /// a long-lived HA1. Short-lived softphone passwords cannot be given
    /// to Asterisk (one `md5_cred` per auth section).
    pub fn from_credentials(c: &domain::DigestCredentials, webrtc: bool) -> Option<Self> {
        if !c.account.active {
            return None;
        }
        let ha1 = c.ha1.iter().find(|h| h.expires_at.is_none())?;
        Some(Self {
            username: c.account.username.clone(),
            extension: c.account.extension.clone(),
            display_name: c.account.display_name.clone(),
            ha1_md5: ha1.md5.clone(),
            webrtc,
        })
    }
}

/// Site settings the agents' sections refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentOptions {
    /// The realm of the stored HA1s (centralita's `sip.domain`).
    pub realm: String,
    /// Dialplan context of calls from agents.
    pub context: String,
    /// The site's transport sections for browsers (`protocol=wss`/`ws`)
    /// and for desk phones; `None` lets Asterisk pick.
    pub webrtc_transport: Option<String>,
    pub phone_transport: Option<String>,
    /// `allow` for browsers and for desk phones, in preference order.
    pub webrtc_codecs: Vec<String>,
    pub phone_codecs: Vec<String>,
    /// Contacts per agent (a browser in two tabs registers twice).
    pub max_contacts: u32,
    /// OPTIONS to each contact, seconds; gives live `ContactStatus`.
    pub qualify_frequency: u32,
}

impl AgentOptions {
    pub fn new(realm: impl Into<String>) -> Self {
        Self {
            realm: realm.into(),
            context: "from-internal".into(),
            webrtc_transport: None,
            phone_transport: None,
            webrtc_codecs: vec!["opus".into(), "ulaw".into(), "alaw".into()],
            phone_codecs: vec!["ulaw".into(), "alaw".into()],
            max_contacts: 1,
            qualify_frequency: 30,
        }
    }
}

fn codecs(list: &[String]) -> Result<String, ConfigError> {
    for c in list {
        check_name("codec", c)?;
    }
    if list.is_empty() {
        return Err(ConfigError::Invalid(
            "an agent needs at least one codec".into(),
        ));
    }
    Ok(list.join(","))
}

/// The sections of one agent.
pub fn agent_sections(a: &AgentAccount, o: &AgentOptions) -> Result<Vec<Section>, ConfigError> {
    check_name("username", &a.username)?;
    check_name("extension", &a.extension)?;
    check_name("context", &o.context)?;
    check_value("realm", &o.realm)?;
    if o.realm.is_empty() || o.realm.contains([';', '"']) {
        return Err(ConfigError::Invalid(format!(
            "realm {:?} is not usable",
            o.realm
        )));
    }
    if a.ha1_md5.len() != 32 || !a.ha1_md5.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ConfigError::Invalid(format!(
            "the MD5 HA1 of {} is not 32 hex digits",
            a.username
        )));
    }
    // The display name goes between quotes in `callerid`.
    let display: String = a
        .display_name
        .chars()
        .filter(|c| !matches!(c, '"' | '<' | '>' | '\\') && !c.is_control())
        .collect();
    let auth = format!("{}-auth", a.username);

    let mut ep = Section::new(a.username.clone()).comment(format!(
        "agent {} ({}), {}",
        a.extension,
        display.trim(),
        if a.webrtc {
            "browser softphone"
        } else {
            "SIP phone"
        }
    ));
    ep.set("type", "endpoint");
    ep.set("context", o.context.clone());
    ep.set("disallow", "all");
    if a.webrtc {
        ep.set("allow", codecs(&o.webrtc_codecs)?);
        // webrtc=yes turns on what a browser needs: AVPF, DTLS-SRTP with
        // fingerprint verification, ICE, rtcp-mux, media over the
        // transport the request came on.
        ep.set("webrtc", "yes");
        ep.set("dtls_auto_generate_cert", "yes");
        if let Some(t) = &o.webrtc_transport {
            check_name("transport", t)?;
            ep.set("transport", t.clone());
        }
    } else {
        ep.set("allow", codecs(&o.phone_codecs)?);
        ep.set("rtp_symmetric", "yes");
        ep.set("force_rport", "yes");
        ep.set("rewrite_contact", "yes");
        if let Some(t) = &o.phone_transport {
            check_name("transport", t)?;
            ep.set("transport", t.clone());
        }
    }
    ep.set("direct_media", "no");
    ep.set("auth", auth.clone());
    ep.set("aors", a.username.clone());
    ep.set(
        "callerid",
        format!("\"{}\" <{}>", display.trim(), a.extension),
    );

    let mut au = Section::new(auth);
    au.set("type", "auth");
    au.set("auth_type", "md5");
    au.set("username", a.username.clone());
    au.set("realm", o.realm.clone());
    au.set("md5_cred", a.ha1_md5.to_ascii_lowercase());

    let mut aor = Section::new(a.username.clone());
    aor.set("type", "aor");
    aor.set("max_contacts", o.max_contacts.max(1).to_string());
    aor.set("remove_existing", "yes");
    aor.set("qualify_frequency", o.qualify_frequency.to_string());

    Ok(vec![ep, au, aor])
}

/// `centralita_pjsip.conf`: every agent's sections, sorted by username so
/// the file only changes when an account does.
pub fn render_agents(agents: &[AgentAccount], o: &AgentOptions) -> Result<String, ConfigError> {
    let mut sorted: Vec<&AgentAccount> = agents.iter().collect();
    sorted.sort_by(|a, b| a.username.cmp(&b.username));
    let mut seen = std::collections::HashSet::new();
    let mut sections = Vec::new();
    for a in sorted {
        if !seen.insert(a.username.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "two agents have the username {}",
                a.username
            )));
        }
        sections.extend(agent_sections(a, o)?);
    }
    render(
        &header("Agents' SIP accounts (PJSIP endpoint/auth/aor)"),
        &sections,
    )
}
