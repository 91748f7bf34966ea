//! RFC 4475 torture messages (tests/fixtures/rfc4475): the valid ones
//! parse, the invalid ones are rejected, and nothing panics, whether parsed
//! alone, fed to the core, truncated or corrupted byte by byte.

use sip::core::msg::{Limits, Msg};
use sip::core::security::BanPolicy;
use sip::core::{Core, CoreConfig, Output, Source, Transport};
use std::path::PathBuf;

fn fixtures(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rfc4475")
        .join(kind);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixture directory")
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("fixture"),
            )
        })
        .collect();
    v.sort();
    v
}

fn core() -> Core {
    Core::new(CoreConfig {
        realm: "example.com".into(),
        local_host: "127.0.0.1:5060".into(),
        tls_host: None,
        min_expires: 60,
        max_expires: 3600,
        default_expires: 600,
        max_contacts: 3,
        ring_timeout_ms: 30_000,
        nonce_lifetime_ms: 60_000,
        ban: BanPolicy {
            limit: 10,
            window_ms: 60_000,
            ban_ms: 60_000,
        },
        account_guard: sip::core::security::AccountPolicy::default(),
        scanner_user_agents: sip::SipConfig::default().scanner_user_agents,
        limits: Limits::default(),
        secret: [1; 32],
        seed: 7,
        sha256_user_agents: Vec::new(),
        session_expires_secs: 0,
        min_se_secs: 90,
        max_call_duration_ms: 0,
        anchor: sip::core::media::AnchorMode::Never,
        record_calls: false,
    })
}

fn answers(c: &mut Core, data: &[u8]) -> Vec<u16> {
    let src = Source {
        flow: 0,
        transport: Transport::Udp,
        peer: ([192, 0, 2, 1], 5060).into(),
    };
    c.handle_datagram(0, src, data);
    let mut codes = Vec::new();
    while let Some(o) = c.poll_output() {
        if let Output::Transmit { data, .. } = o {
            // A 400 echoes the request's (possibly malformed) headers, so
            // read only the status line.
            let text = String::from_utf8_lossy(&data);
            let code = text
                .strip_prefix("SIP/2.0 ")
                .and_then(|r| r.get(..3))
                .and_then(|c| c.parse().ok())
                .expect("a response");
            codes.push(code);
        }
    }
    codes
}

#[test]
fn valid_messages_parse() {
    let all = fixtures("valid");
    assert!(all.len() >= 13);
    for (name, data) in all {
        let m = Msg::parse(&data, &Limits::default()).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        match name.as_str() {
            "dblreq.sip" => assert_eq!(m.method(), Some("REGISTER")),
            "wsinv.sip" => {
                assert_eq!(m.header_list("Via").len(), 3);
                assert_eq!(m.cseq(), (9, "INVITE"));
                assert_eq!(m.body.len(), 150);
            }
            "intmeth.sip" => assert_eq!(
                m.method(),
                Some("!interesting-Method0123456789_*+`.%indeed'~")
            ),
            "esc02.sip" => assert_eq!(m.method(), Some("RE%47IST%45R")),
            "noreason.sip" => assert_eq!(m.code(), Some(100)),
            "unreason.sip" => assert_eq!(m.code(), Some(200)),
            "mpart01.sip" => assert!(m.body.ends_with(b"--boundary42--\r\n")),
            _ => {}
        }
    }
}

#[test]
fn invalid_messages_are_rejected() {
    let all = fixtures("invalid");
    assert!(all.len() >= 19);
    for (name, data) in all {
        let parsed = Msg::parse(&data, &Limits::default());
        if name == "unkscm.sip" {
            // Well-formed, but the scheme is unknown: 416 from the core.
            assert!(parsed.is_ok());
            assert_eq!(answers(&mut core(), &data), [416]);
            continue;
        }
        let e = parsed
            .err()
            .unwrap_or_else(|| panic!("{name} was accepted"));
        let codes = answers(&mut core(), &data);
        let expected = if name == "badvers.sip" { 505 } else { 400 };
        assert!(
            codes.is_empty() || codes == [expected],
            "{name}: {e:?} answered {codes:?}"
        );
    }
}

#[test]
fn nothing_panics_on_truncation_or_corruption() {
    let mut c = core();
    for kind in ["valid", "invalid"] {
        for (_, data) in fixtures(kind) {
            answers(&mut c, &data);
            for cut in (0..data.len()).step_by(7) {
                answers(&mut c, &data[..cut]);
            }
            let mut x = data.clone();
            for i in (0..x.len()).step_by(13) {
                let keep = x[i];
                for b in [0u8, b'\r', b'\n', b':', b';', b'<', b'"', 0xff] {
                    x[i] = b;
                    answers(&mut c, &x);
                }
                x[i] = keep;
            }
        }
    }
}
