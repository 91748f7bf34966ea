//! How long the sans-IO core takes per authenticated REGISTER (challenge and
//! answer, parse to serialised response), with no sockets: the share of the
//! REGISTER cost that is ours rather than the kernel's or the database's.
//!
//! cargo run --release -p sip --example core_bench

use sip::core::digest::{self, Algorithm, Ha1};
use sip::core::msg::{Limits, Msg};
use sip::core::security::BanPolicy;
use sip::core::{Account, Core, CoreConfig, Output, Source, Transport};
use std::time::Instant;

fn main() {
    let n: usize = 10_000;
    let mut core = Core::new(CoreConfig {
        realm: "bench".into(),
        local_host: "127.0.0.1:5060".into(),
        tls_host: None,
        min_expires: 60,
        max_expires: 3600,
        default_expires: 600,
        max_contacts: 5,
        ring_timeout_ms: 30_000,
        nonce_lifetime_ms: 60_000,
        ban: BanPolicy {
            limit: u32::MAX,
            window_ms: 60_000,
            ban_ms: 1,
        },
        account_guard: sip::core::security::AccountPolicy {
            limit: u32::MAX,
            ..Default::default()
        },
        scanner_user_agents: Vec::new(),
        limits: Limits::default(),
        secret: [5; 32],
        seed: 11,
        sha256_user_agents: Vec::new(),
        session_expires_secs: 0,
        min_se_secs: 90,
        max_call_duration_ms: 0,
        anchor: sip::core::media::AnchorMode::Never,
        record_calls: false,
    });
    for i in 0..n {
        let u = format!("agent{i}");
        core.cache_account(Account {
            username: u.clone(),
            extension: format!("{}", 1000 + i),
            user_id: Some(i as i64),
            display_name: u.clone(),
            secrets: vec![Ha1 {
                md5: digest::ha1(Algorithm::Md5, &u, "bench", "pw"),
                sha256: digest::ha1(Algorithm::Sha256, &u, "bench", "pw"),
                expires_at_ms: None,
            }],
            record_calls: None,
            dial: None,
        });
    }
    let src = Source {
        flow: 0,
        transport: Transport::Udp,
        peer: ([127, 0, 0, 1], 5070).into(),
    };
    let reg = |u: &str, cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{u}{cseq};rport\r\nFrom: <sip:{u}@127.0.0.1>;tag=1\r\nTo: <sip:{u}@127.0.0.1>\r\nCall-ID: {u}@h\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{u}@127.0.0.1:5070>\r\nMax-Forwards: 70\r\nExpires: 300\r\n{auth}Content-Length: 0\r\n\r\n"
        )
    };
    let mut now = 1_000u64;
    let start = Instant::now();
    let mut ok = 0;
    for round in 0..3u32 {
        for i in 0..n {
            let u = format!("agent{i}");
            now += 1;
            core.handle_datagram(now, src, reg(&u, 2 * round + 1, "").as_bytes());
            let mut challenge = None;
            while let Some(o) = core.poll_output() {
                if let Output::Transmit { data, .. } = o {
                    challenge = Msg::parse(&data, &Limits::default()).ok();
                }
            }
            let Some(ch) = challenge else { continue };
            let v = ch.header("WWW-Authenticate").unwrap_or("");
            let nonce = v
                .split("nonce=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("");
            let mut c = digest::Credentials {
                username: u.clone(),
                realm: "bench".into(),
                nonce: nonce.into(),
                uri: "sip:127.0.0.1".into(),
                response: String::new(),
                algorithm: "MD5".into(),
                cnonce: "c".into(),
                qop: "auth".into(),
                nc: "00000001".into(),
            };
            c.response = digest::expected_response(
                Algorithm::Md5,
                &digest::ha1(Algorithm::Md5, &u, "bench", "pw"),
                "REGISTER",
                &c,
            );
            let auth = format!(
                "Authorization: Digest username=\"{u}\", realm=\"bench\", nonce=\"{nonce}\", uri=\"sip:127.0.0.1\", response=\"{}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c\"\r\n",
                c.response
            );
            core.handle_datagram(now, src, reg(&u, 2 * round + 2, &auth).as_bytes());
            while let Some(o) = core.poll_output() {
                if let Output::Transmit { data, .. } = o {
                    if data.starts_with(b"SIP/2.0 200") {
                        ok += 1;
                    }
                }
            }
        }
    }
    let el = start.elapsed();
    // The loop also builds the client side (formatting, one parse, one HA1 and
    // response per registration), so this is an upper bound for the core.
    println!(
        "{ok} authenticated registrations in {:.2} s: {:.1} us each (client side included), {:.0}/s on one core",
        el.as_secs_f64(),
        el.as_secs_f64() * 1e6 / ok as f64,
        ok as f64 / el.as_secs_f64()
    );
}
