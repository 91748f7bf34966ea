//! packaging/centralita.service: the hardening the operations guide
//! promises, commands the binary has, and (where `systemd-analyze` is
//! installed) a unit systemd accepts without a warning.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_centralita");

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/centralita.service")
}

fn unit() -> String {
    std::fs::read_to_string(unit_path()).expect("read packaging/centralita.service")
}

/// The non-comment `key=value` lines.
fn directives(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn unit_runs_a_dedicated_user_with_hardening_and_real_commands() {
    let d = directives(&unit());
    let get = |k: &str| {
        d.iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    for (key, want) in [
        ("User", "centralita"),
        ("StateDirectory", "centralita"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("Environment", "CENTRALITA_DATA_DIR=/var/lib/centralita"),
    ] {
        assert!(get(key).contains(&want), "{key}={want} missing");
    }
    // The default ports are above 1024: no capability at all.
    assert_eq!(get("AmbientCapabilities"), [""]);
    assert_eq!(get("CapabilityBoundingSet"), [""]);
    // Every command it runs is a subcommand this binary has, and every
    // variable it sets is a setting.
    for exec in get("ExecStart").into_iter().chain(get("ExecStartPre")) {
        let mut words = exec.split_whitespace();
        assert_eq!(words.next(), Some("/usr/local/bin/centralita"), "{exec}");
        let sub = words.next().expect("a subcommand");
        let out = Command::new(BIN)
            .args([sub, "--help"])
            .output()
            .expect("run centralita");
        assert!(out.status.success(), "{exec}: no such subcommand");
        assert!(words.any(|w| w == "--config"), "{exec}");
    }
    let settings = centralita::config::settings();
    // Not centralita's: glibc's allocator, which SQLite uses.
    let process_env = ["MALLOC_ARENA_MAX"];
    for env in get("Environment") {
        let name = env.split('=').next().unwrap_or("");
        assert!(
            process_env.contains(&name) || settings.iter().any(|s| s.env_name() == name),
            "{name} is no setting"
        );
    }
}

/// `systemd-analyze verify` on the unit, with the binary path pointed at
/// the built binary (verify checks that it exists). Any warning fails: an
/// unknown or misspelt directive is only a warning to systemd.
#[test]
fn systemd_accepts_the_unit_without_warnings() {
    let Ok(which) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED: systemd-analyze is not installed");
        return;
    };
    assert!(which.status.success());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("centralita.service");
    std::fs::write(&path, unit().replace("/usr/local/bin/centralita", BIN)).expect("write unit");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("centralita.service"))
        .collect();
    assert!(out.status.success(), "{stderr}");
    assert!(ours.is_empty(), "{stderr}");
}
