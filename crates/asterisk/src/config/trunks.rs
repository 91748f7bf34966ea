//! Trunks as `pjsip_wizard.conf` sections (`type = wizard`), one per
//! trunk, carrying every setting of the trunk model (seeds/003) that PJSIP
//! has: where the far end is, both directions of digest authentication,
//! the outbound registration, codecs, DTMF, NAT handling, qualify, session
//! timers, From and caller-identity settings. What PJSIP does not have
//! (a channel limit, a fixed PAI value) is said in a comment and enforced
//! by centralita.
//!
//! The wizard needs the outbound password itself (a digest client cannot
//! work from a hash without knowing the realm in advance), so this file
//! holds secrets: the writer makes it readable by its owner and group
//! only, and [`Secrets::Masked`] renders the same text for previews.

use domain::trunks::{SessionTimers, TrunkSettings, TrunkStatus, TrunkTransport, MASK};

use super::ini::{check_name, check_value, render, Section};
use super::{header, ConfigError};

/// Whether passwords are written or masked (previews, logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    Included,
    Masked,
}

/// Site settings the trunks' sections refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkOptions {
    /// The site's transport sections, by protocol.
    pub udp_transport: String,
    pub tcp_transport: String,
    pub tls_transport: String,
    /// Dialplan context of calls from trunks.
    pub context: String,
}

impl Default for TrunkOptions {
    fn default() -> Self {
        Self {
            udp_transport: "transport-udp".into(),
            tcp_transport: "transport-tcp".into(),
            tls_transport: "transport-tls".into(),
            context: "from-trunk".into(),
        }
    }
}

/// The section (and endpoint) name of a trunk: its name with anything but
/// letters, digits and `_ - .` replaced by `_`, as `domain::trunks::
/// preview_config` names it. Channels of the trunk are `PJSIP/<this>-…`.
pub fn section_name(trunk_name: &str) -> String {
    trunk_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Wizard keys an administrator may set through `advancedSettings`:
/// `endpoint/…`, `aor/…`, `registration/…`, `identify/…` with a lowercase
/// PJSIP option name.
fn advanced_key_ok(k: &str) -> bool {
    let Some((obj, opt)) = k.split_once('/') else {
        return false;
    };
    matches!(obj, "endpoint" | "aor" | "registration" | "identify")
        && !opt.is_empty()
        && opt
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether a trunk is configured in Asterisk at all (not inactive or in
/// maintenance).
pub fn in_service(t: &TrunkSettings) -> bool {
    !matches!(t.status, TrunkStatus::Inactive | TrunkStatus::Maintenance)
}

/// The name of the outbound registration the wizard makes of a trunk's
/// section `section`: `<section>-reg-0` (one per `remote_hosts` entry;
/// ours has one server URI). `PJSIPRegister` and
/// `PJSIPShowRegistrationsOutbound` (`ObjectName`) name it so, as the
/// captured Asterisk 22 does (`trunk-test-reg-0`).
pub fn registration_name(section: &str) -> String {
    format!("{section}-reg-0")
}

/// The wizard section of one trunk, or `None` for a trunk an administrator
/// took out of service (inactive, maintenance).
pub fn trunk_section(
    t: &TrunkSettings,
    o: &TrunkOptions,
    secrets: Secrets,
) -> Result<Option<Section>, ConfigError> {
    let name = section_name(&t.name);
    check_name("trunk name", &name)?;
    check_name("context", &o.context)?;
    if !in_service(t) {
        return Ok(None);
    }
    let transport = match t.transport {
        TrunkTransport::Udp => &o.udp_transport,
        TrunkTransport::Tcp => &o.tcp_transport,
        TrunkTransport::Tls => &o.tls_transport,
    };
    check_name("transport", transport)?;
    let secret = |s: Option<&domain::trunks::Secret>, what: &str| -> Result<String, ConfigError> {
        let Some(s) = s else {
            return Err(ConfigError::Invalid(format!(
                "trunk {} authenticates {what} but has no password",
                t.name
            )));
        };
        Ok(match secrets {
            Secrets::Included => s.expose().to_string(),
            Secrets::Masked => MASK.to_string(),
        })
    };

    let mut s = Section::new(name.clone()).comment(format!(
        "trunk {:?} ({}, {}), priority {}",
        t.name, t.kind, t.provider, t.priority
    ));
    s = s.comment(if t.max_channels == 0 {
        "max_channels: no limit".to_string()
    } else {
        format!(
            "max_channels {}: enforced by centralita (PJSIP has no per-endpoint channel limit)",
            t.max_channels
        )
    });
    if let Some(p) = &t.pai {
        check_value("pai", p)?;
        s = s.comment(format!(
            "pai {p}: PJSIP has no per-endpoint PAI value; originate passes it as CENTRALITA_PAI for the dialplan"
        ));
    }
    s.set("type", "wizard");
    s.set("transport", transport.clone());
    if !t.accepts_registrations {
        // A trunk that does not register to us is reached at its host.
        s.set("remote_hosts", host_port(&t.host, t.port));
    }
    s.set("accepts_registrations", yes(t.accepts_registrations));
    s.set("sends_registrations", yes(t.sends_registration));
    s.set("accepts_auth", yes(t.accepts_auth));
    s.set("sends_auth", yes(t.sends_auth));
    if t.sends_auth {
        s.set(
            "outbound_auth/username",
            t.outbound_username.clone().unwrap_or_default(),
        );
        s.set(
            "outbound_auth/password",
            secret(t.outbound_secret.as_ref(), "itself to the far end")?,
        );
        if let Some(r) = &t.outbound_realm {
            s.set("outbound_auth/realm", r.clone());
        }
    }
    if t.accepts_auth {
        s.set(
            "inbound_auth/username",
            t.inbound_username.clone().unwrap_or_default(),
        );
        s.set(
            "inbound_auth/password",
            secret(t.inbound_secret.as_ref(), "the far end")?,
        );
    }
    if t.sends_registration {
        // Requests from the carrier find this trunk by the Contact's
        // `line` parameter, not by address (several trunks may share one).
        s.set("sends_line_with_registrations", "yes");
        s.set("registration/server_uri", t.effective_server_uri());
        s.set("registration/client_uri", t.effective_client_uri());
        s.set("registration/expiration", t.registration_expiry.to_string());
        s.set(
            "registration/retry_interval",
            t.registration_retry_interval.to_string(),
        );
        s.set(
            "registration/max_retries",
            t.registration_max_retries.to_string(),
        );
        s.set(
            "registration/forbidden_retry_interval",
            t.registration_forbidden_retry.to_string(),
        );
    }
    if !t.inbound_match.is_empty() {
        s.set("identify/match", t.inbound_match.join(","));
    }
    s.set("endpoint/context", o.context.clone());
    s.set("endpoint/disallow", "all");
    s.set(
        "endpoint/allow",
        t.codecs
            .iter()
            .map(|c| c.asterisk_name())
            .collect::<Vec<_>>()
            .join(","),
    );
    s.set("endpoint/dtmf_mode", t.dtmf_mode.as_str());
    s.set("endpoint/rtp_symmetric", yes(t.rtp_symmetric));
    s.set("endpoint/force_rport", yes(t.force_rport));
    s.set("endpoint/rewrite_contact", yes(t.rewrite_contact));
    s.set("endpoint/direct_media", "no");
    if let Some(m) = &t.media_address {
        s.set("endpoint/media_address", m.clone());
    }
    s.set(
        "endpoint/timers",
        match t.session_timers {
            SessionTimers::No => "no",
            SessionTimers::Yes => "yes",
            SessionTimers::Required => "required",
            // PJSIP's name for "always ask for them".
            SessionTimers::Always => "forced",
        },
    );
    s.set(
        "endpoint/timers_sess_expires",
        t.session_expires.to_string(),
    );
    s.set("endpoint/timers_min_se", t.session_min_se.to_string());
    if let Some(u) = &t.from_user {
        s.set("endpoint/from_user", u.clone());
    }
    if let Some(d) = &t.from_domain {
        s.set("endpoint/from_domain", d.clone());
    }
    s.set("endpoint/send_pai", yes(t.send_pai));
    s.set("endpoint/trust_id_inbound", yes(t.trust_remote_party_id));
    s.set("endpoint/trust_id_outbound", yes(t.send_pai));
    s.set("aor/qualify_frequency", t.qualify_frequency.to_string());
    if t.accepts_registrations {
        s.set("aor/max_contacts", "1");
    }
    for (k, v) in &t.advanced_settings {
        if !advanced_key_ok(k) {
            return Err(ConfigError::Invalid(format!(
                "advanced setting {k:?} of trunk {} is not a wizard key (endpoint/…, aor/…, registration/…, identify/…)",
                t.name
            )));
        }
        // JSON text, number or boolean (the type is domain's; no serde_json
        // dependency needed here).
        let text = if let Some(t) = v.as_str() {
            Some(t.to_string())
        } else if let Some(b) = v.as_bool() {
            Some(yes(b).to_string())
        } else if v.is_number() {
            Some(v.to_string())
        } else {
            None
        };
        let Some(text) = text else {
            return Err(ConfigError::Invalid(format!(
                "advanced setting {k} of trunk {} must be text, a number or a boolean",
                t.name
            )));
        };
        s.set(k, text);
    }
    Ok(Some(s))
}

/// `centralita_pjsip_wizard.conf`: one wizard section per trunk in
/// service, by priority then name.
pub fn render_trunks(
    trunks: &[TrunkSettings],
    o: &TrunkOptions,
    secrets: Secrets,
) -> Result<String, ConfigError> {
    let mut sorted: Vec<&TrunkSettings> = trunks.iter().collect();
    sorted.sort_by(|a, b| a.priority.cmp(&b.priority).then(a.name.cmp(&b.name)));
    let mut names = std::collections::HashSet::new();
    let mut sections = Vec::new();
    let mut skipped = Vec::new();
    for t in sorted {
        let name = section_name(&t.name);
        if !names.insert(name.clone()) {
            return Err(ConfigError::Invalid(format!(
                "two trunks would both be named {name} in PJSIP"
            )));
        }
        match trunk_section(t, o, secrets)? {
            Some(s) => sections.push(s),
            None => skipped.push(format!("{name} ({})", t.status)),
        }
    }
    let mut h = header("Trunks (PJSIP configuration wizard)");
    if !skipped.is_empty() {
        h.push(format!(
            "Out of service, not configured: {}",
            skipped.join(", ")
        ));
    }
    render(&h, &sections)
}
