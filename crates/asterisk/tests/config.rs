//! Rendered PJSIP configuration: golden files (rewrite them with
//! `UPDATE_GOLDEN=1`), parsed back and compared with the settings they
//! came from, checked against the configuration a real Asterisk 22 ran
//! (`shared/asterisk/pjsip*.conf.example`), injection refused, and the
//! atomic writer.

mod common;

use std::path::PathBuf;

use asterisk::config::trunks::Secrets;
use asterisk::config::{
    parse, render_agents, render_trunks, AgentAccount, AgentOptions, ConfigDir, ConfigError,
    ConfigFile, Section, TrunkOptions,
};
use domain::trunks::{resolve, TrunkInput, TrunkSettings};

fn golden(name: &str, text: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, text).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path:?}: {e} (UPDATE_GOLDEN=1 writes it)"));
    assert_eq!(
        text, want,
        "{name} differs from its golden file (UPDATE_GOLDEN=1 rewrites it)"
    );
}

fn trunk(json: &str) -> TrunkSettings {
    let input: TrunkInput = serde_json::from_str(json).expect("trunk input");
    resolve(&input, None).expect("valid trunk")
}

fn agents() -> Vec<AgentAccount> {
    // HA1 = md5("john_doe_1700000000:pbx.example.test:secret1").
    let ha1 = |u: &str, p: &str| {
        use md5::{Digest, Md5};
        hex::encode(Md5::digest(format!("{u}:pbx.example.test:{p}")))
    };
    vec![
        AgentAccount {
            username: "john_doe_1700000000".into(),
            extension: "1000".into(),
            display_name: "John \"JD\" Doe".into(),
            ha1_md5: ha1("john_doe_1700000000", "secret1"),
            webrtc: true,
        },
        AgentAccount {
            username: "desk_2000".into(),
            extension: "2000".into(),
            display_name: "Front desk".into(),
            ha1_md5: ha1("desk_2000", "secret2"),
            webrtc: false,
        },
    ]
}

fn agent_options() -> AgentOptions {
    let mut o = AgentOptions::new("pbx.example.test");
    o.webrtc_transport = Some("transport-wss".into());
    o.phone_transport = Some("transport-udp".into());
    o
}

fn trunks() -> Vec<TrunkSettings> {
    vec![
        trunk(
            r#"{"name": "Carrier One", "kind": "nat_provider", "provider": "twilio",
                "host": "sip.carrier.example", "outboundAuthUsername": "acct42",
                "outboundAuthPassword": "s3cr;et", "fromUser": "acct42",
                "fromDomain": "carrier.example", "priority": 1, "maxChannels": 30,
                "registrationExpiration": 600, "codecs": ["pcma", "pcmu"],
                "advancedSettings": {"endpoint/t38_udptl": true, "aor/qualify_timeout": 3}}"#,
        ),
        trunk(
            r#"{"name": "old-pbx", "kind": "pbx_lan", "host": "192.0.2.10", "port": 5070,
                "transport": "tcp", "inboundMatch": ["192.0.2.10", "192.0.2.11/32"],
                "pai": "+34910000000", "sessionTimers": "always", "maxChannels": 0,
                "acceptsAuth": true, "inboundAuthUsername": "oldpbx",
                "inboundAuthPassword": "lanpass"}"#,
        ),
        trunk(
            r#"{"name": "spare", "kind": "no_nat", "host": "spare.example", "status": "maintenance"}"#,
        ),
    ]
}

#[test]
fn agents_golden_and_parsed_back() {
    let a = agents();
    let text = render_agents(&a, &agent_options()).expect("render");
    golden("centralita_pjsip.conf", &text);
    assert!(
        !text.contains("secret1") && !text.contains("password"),
        "{text}"
    );
    let sections = parse(&text).expect("parse back");
    let by = |name: &str, ty: &str| -> &Section {
        sections
            .iter()
            .find(|s| s.name == name && s.get("type") == Some(ty))
            .unwrap_or_else(|| panic!("no [{name}] type={ty}"))
    };
    for acc in &a {
        let ep = by(&acc.username, "endpoint");
        assert_eq!(ep.get("webrtc"), acc.webrtc.then_some("yes"));
        assert_eq!(ep.get("aors"), Some(acc.username.as_str()));
        let auth_name = ep.get("auth").expect("auth");
        let au = by(auth_name, "auth");
        assert_eq!(au.get("auth_type"), Some("md5"));
        assert_eq!(au.get("md5_cred"), Some(acc.ha1_md5.as_str()));
        assert_eq!(au.get("username"), Some(acc.username.as_str()));
        assert_eq!(au.get("realm"), Some("pbx.example.test"));
        assert!(au.get("password").is_none());
        let aor = by(&acc.username, "aor");
        assert_eq!(aor.get("remove_existing"), Some("yes"));
        assert!(ep
            .get("callerid")
            .is_some_and(|c| c.ends_with(&format!("<{}>", acc.extension))));
    }
    // The browser endpoint has what the WebRTC endpoints of the captured
    // Asterisk had (shared/asterisk/pjsip.conf.example, [webrtc-endpoint]).
    let example = std::fs::read_to_string(common::shared_asterisk().join("pjsip.conf.example"))
        .expect("pjsip.conf.example");
    let ex = parse(&example).expect("parse the example");
    let tpl = ex
        .iter()
        .find(|s| s.name == "webrtc-endpoint")
        .expect("template");
    let ep = by("john_doe_1700000000", "endpoint");
    for key in [
        "webrtc",
        "dtls_auto_generate_cert",
        "disallow",
        "allow",
        "direct_media",
    ] {
        assert_eq!(ep.get(key), tpl.get(key), "{key}");
    }
}

#[test]
fn trunks_golden_and_parsed_back() {
    let t = trunks();
    let text = render_trunks(&t, &TrunkOptions::default(), Secrets::Included).expect("render");
    golden("centralita_pjsip_wizard.conf", &text);
    let masked = render_trunks(&t, &TrunkOptions::default(), Secrets::Masked).expect("render");
    golden("centralita_pjsip_wizard.preview.conf", &masked);
    assert!(!masked.contains("s3cr") && !masked.contains("lanpass"));

    let sections = parse(&text).expect("parse back");
    // The trunk in maintenance is not configured.
    assert_eq!(sections.len(), 2);
    assert!(text.contains("Out of service, not configured: spare (maintenance)"));

    let c = &t[0];
    let s = sections
        .iter()
        .find(|s| s.name == "Carrier_One")
        .expect("[Carrier_One]");
    let want = [
        ("type", "wizard".to_string()),
        ("transport", "transport-udp".to_string()),
        ("remote_hosts", format!("{}:{}", c.host, c.port)),
        ("sends_registrations", "yes".into()),
        ("sends_line_with_registrations", "yes".into()),
        ("accepts_registrations", "no".into()),
        ("sends_auth", "yes".into()),
        ("accepts_auth", "no".into()),
        ("outbound_auth/username", "acct42".into()),
        // Written escaped (`\;`), read back whole.
        ("outbound_auth/password", "s3cr;et".into()),
        ("registration/server_uri", c.effective_server_uri()),
        ("registration/client_uri", c.effective_client_uri()),
        ("registration/expiration", c.registration_expiry.to_string()),
        (
            "registration/retry_interval",
            c.registration_retry_interval.to_string(),
        ),
        (
            "registration/max_retries",
            c.registration_max_retries.to_string(),
        ),
        ("endpoint/context", "from-trunk".into()),
        ("endpoint/allow", "alaw,ulaw".into()),
        ("endpoint/dtmf_mode", "rfc4733".into()),
        ("endpoint/rtp_symmetric", "yes".into()),
        ("endpoint/force_rport", "yes".into()),
        ("endpoint/rewrite_contact", "yes".into()),
        ("endpoint/direct_media", "no".into()),
        ("endpoint/from_user", "acct42".into()),
        ("endpoint/from_domain", "carrier.example".into()),
        ("endpoint/timers", "yes".into()),
        (
            "endpoint/timers_sess_expires",
            c.session_expires.to_string(),
        ),
        ("aor/qualify_frequency", c.qualify_frequency.to_string()),
        ("endpoint/t38_udptl", "yes".into()),
        ("aor/qualify_timeout", "3".into()),
    ];
    for (k, v) in want {
        assert_eq!(s.get(k), Some(v.as_str()), "{k}");
    }
    assert!(text.contains("max_channels 30: enforced by centralita"));

    let lan = sections
        .iter()
        .find(|s| s.name == "old-pbx")
        .expect("[old-pbx]");
    assert_eq!(lan.get("transport"), Some("transport-tcp"));
    assert_eq!(lan.get("remote_hosts"), Some("192.0.2.10:5070"));
    assert_eq!(lan.get("sends_registrations"), Some("no"));
    assert_eq!(lan.get("identify/match"), Some("192.0.2.10,192.0.2.11/32"));
    assert_eq!(lan.get("endpoint/timers"), Some("forced"));
    assert_eq!(lan.get("endpoint/send_pai"), Some("yes"));
    assert_eq!(lan.get("endpoint/trust_id_inbound"), Some("yes"));
    assert_eq!(lan.get("inbound_auth/username"), Some("oldpbx"));
    assert_eq!(lan.get("inbound_auth/password"), Some("lanpass"));
    assert!(lan.get("registration/server_uri").is_none());
}

/// A trunk set up like the wizard trunk of the captured Asterisk
/// (`shared/asterisk/pjsip_wizard.conf.example`, which registered) renders
/// the same wizard settings it had.
#[test]
fn trunk_like_the_captured_one() {
    let t = trunk(
        r#"{"name": "trunk-test", "kind": "custom", "host": "127.0.0.1", "port": 5090,
            "sendsRegistration": true, "outboundAuthUsername": "trunkuser",
            "outboundAuthPassword": "trunkpass", "mediaAddress": "127.0.0.1",
            "codecs": ["ulaw", "alaw"], "registrationRetryInterval": 10,
            "registrationExpiration": 120}"#,
    );
    // The default context is the example's `from-trunk`.
    let text = render_trunks(&[t], &TrunkOptions::default(), Secrets::Included).expect("render");
    let ours = parse(&text).expect("parse");
    let example =
        std::fs::read_to_string(common::shared_asterisk().join("pjsip_wizard.conf.example"))
            .expect("pjsip_wizard.conf.example");
    let ex = parse(&example).expect("parse the example");
    let (ours, ex) = (&ours[0], &ex[0]);
    assert_eq!(ours.name, ex.name);
    for (k, v) in &ex.entries {
        let v = match k.as_str() {
            // The same codecs; the example spells "allow everything but".
            "endpoint/allow" => "ulaw,alaw".to_string(),
            _ => v.clone(),
        };
        // `endpoint/bind_rtp_to_media_address` is the lab's own setting.
        if k == "endpoint/bind_rtp_to_media_address" {
            continue;
        }
        assert_eq!(ours.get(k), Some(v.as_str()), "{k}");
    }
}

#[test]
fn injection_in_data_is_refused() {
    let mut a = agents();
    a[0].username = "evil]\n[x".into();
    assert!(matches!(
        render_agents(&a, &agent_options()),
        Err(ConfigError::BadName { .. })
    ));
    let mut a = agents();
    a[0].username = "a;b".into();
    assert!(render_agents(&a, &agent_options()).is_err());
    let mut a = agents();
    a[1].ha1_md5 = "not-a-hash".into();
    assert!(matches!(
        render_agents(&a, &agent_options()),
        Err(ConfigError::Invalid(_))
    ));
    let mut o = agent_options();
    o.realm = "x\n#include /etc/passwd".into();
    assert!(render_agents(&agents(), &o).is_err());

    let mut t = trunks();
    t[0].from_user = Some("u\n[evil]".into());
    assert!(matches!(
        render_trunks(&t, &TrunkOptions::default(), Secrets::Included),
        Err(ConfigError::BadValue { .. })
    ));
    let mut t = trunks();
    t[0].advanced_settings
        .insert("endpoint/x\ny".into(), serde_json::Value::Bool(true));
    assert!(render_trunks(&t, &TrunkOptions::default(), Secrets::Included).is_err());
    let mut t = trunks();
    t[0].advanced_settings
        .insert("type".into(), serde_json::Value::String("endpoint".into()));
    assert!(render_trunks(&t, &TrunkOptions::default(), Secrets::Included).is_err());
}

#[test]
fn atomic_write_touches_only_our_files() {
    let dir = std::env::temp_dir().join(format!(
        "centralita-asterisk-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("pjsip.conf"),
        "[global]\n#include centralita_pjsip.conf\n",
    )
    .expect("site file");
    let cd = ConfigDir::new(&dir);
    let text =
        render_trunks(&trunks(), &TrunkOptions::default(), Secrets::Included).expect("render");
    assert!(cd.write(ConfigFile::Wizard, &text).expect("write"));
    // Unchanged: not written again (no reload needed).
    assert!(!cd.write(ConfigFile::Wizard, &text).expect("write"));
    assert!(cd.write(ConfigFile::Pjsip, "; empty\n").expect("write"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "centralita_pjsip.conf",
            "centralita_pjsip_wizard.conf",
            "pjsip.conf"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("pjsip.conf")).expect("site file"),
        "[global]\n#include centralita_pjsip.conf\n"
    );
    assert_eq!(
        cd.read(ConfigFile::Wizard).expect("read").as_deref(),
        Some(text.as_str())
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cd.path(ConfigFile::Wizard))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            mode & 0o040,
            "group read at most, nothing for others: {mode:o}"
        );
    }
    // A directory that is not there: an error, nothing created.
    let missing = ConfigDir::new(dir.join("nope"));
    assert!(missing.write(ConfigFile::Pjsip, "x").is_err());
    assert!(!dir.join("nope").exists());
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn agent_from_stored_credentials() {
    use domain::{DigestCredentials, Ha1, SipAccountInfo};
    let account = |active: bool| SipAccountInfo {
        id: 1,
        user_id: 2,
        username: "john_doe_1700000000".into(),
        extension: "1000".into(),
        display_name: "John Doe".into(),
        active,
        record_calls: None,
        dial_permission: None,
    };
    let long = Ha1 {
        md5: "632e08735bde5584914ee187a3928553".into(),
        sha256: "x".into(),
        expires_at: None,
    };
    let short = Ha1 {
        md5: "ffffffffffffffffffffffffffffffff".into(),
        sha256: "y".into(),
        // Any instant: only its presence matters here.
        expires_at: Some(Default::default()),
    };
    let c = DigestCredentials {
        account: account(true),
        ha1: vec![short.clone(), long],
    };
    let a = AgentAccount::from_credentials(&c, true).expect("active account");
    assert_eq!(a.ha1_md5, "632e08735bde5584914ee187a3928553");
    assert_eq!(
        (a.username.as_str(), a.extension.as_str()),
        ("john_doe_1700000000", "1000")
    );
    let inactive = DigestCredentials {
        account: account(false),
        ..c.clone()
    };
    assert!(AgentAccount::from_credentials(&inactive, true).is_none());
    let only_short = DigestCredentials {
        account: account(true),
        ha1: vec![short],
    };
    assert!(AgentAccount::from_credentials(&only_short, true).is_none());
}
