//! `centralita gen-cert`: a self-signed certificate and key for development,
//! so HTTPS and WSS (and SIP over TLS) can be tried without a certificate
//! authority. Browsers do not trust it until told to (docs/TLS.md).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use chrono::Datelike;

use crate::Config;

/// File names inside the output directory.
pub const CERT_FILE: &str = "cert.pem";
pub const KEY_FILE: &str = "key.pem";

/// Days the certificate is valid. Kept under 398 days: some clients (Apple's)
/// refuse server certificates valid for longer, even ones the user trusts.
const VALID_DAYS: i64 = 397;

/// What [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct DevCert {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// Subject alternative names (DNS names and IP addresses).
    pub names: Vec<String>,
    /// Last day of validity (UTC), `YYYY-MM-DD`.
    pub not_after: String,
}

/// The names a development certificate covers: `localhost`, `127.0.0.1`,
/// `::1`, the SIP domain, the specific addresses the server listens on, then
/// `extra` (deduplicated, order kept).
pub fn default_names(cfg: &Config, extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    names.push(cfg.sip.domain.trim().to_string());
    let listens = [
        Some(cfg.http.listen.as_str()),
        cfg.http.tls_listen.as_deref(),
        Some(cfg.sip.listen.as_str()),
    ];
    for addr in listens.into_iter().flatten() {
        if let Ok(a) = addr.parse::<SocketAddr>() {
            if !a.ip().is_unspecified() {
                names.push(a.ip().to_string());
            }
        }
    }
    names.extend(extra.iter().map(|h| h.trim().to_string()));
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| !n.is_empty() && seen.insert(n.to_ascii_lowercase()));
    names
}

/// Writes `cert.pem` and `key.pem` (mode 0600 on Unix) into `out_dir`,
/// creating it. Without `force`, refuses if either file exists and writes
/// neither.
pub fn generate(out_dir: &Path, names: &[String], force: bool) -> anyhow::Result<DevCert> {
    if names.is_empty() {
        bail!("a certificate needs at least one host name");
    }
    for n in names {
        check_name(n)?;
    }
    let cert_path = out_dir.join(CERT_FILE);
    let key_path = out_dir.join(KEY_FILE);
    if !force {
        for p in [&cert_path, &key_path] {
            if p.exists() {
                bail!(
                    "{} already exists; use --force to replace it (or --out another directory)",
                    p.display()
                );
            }
        }
    }

    let mut params =
        rcgen::CertificateParams::new(names.to_vec()).context("certificate host names")?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, names[0].clone());
    dn.push(
        rcgen::DnType::OrganizationName,
        "centralita development (self-signed)",
    );
    params.distinguished_name = dn;
    let today = chrono::Utc::now().date_naive();
    // From yesterday, so a client whose clock is a little behind accepts it.
    let from = today - chrono::Duration::days(1);
    let until = today + chrono::Duration::days(VALID_DAYS - 1);
    let (y, m, d) = ymd(from)?;
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = ymd(until)?;
    params.not_after = rcgen::date_time_ymd(y, m, d);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    // ECDSA P-256 with SHA-256: accepted by every browser and SIP stack.
    let key = rcgen::KeyPair::generate().context("generating a key pair")?;
    let cert = params
        .self_signed(&key)
        .context("signing the certificate")?;

    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("creating directory {}", out_dir.display()))?;
    write_file(&key_path, key.serialize_pem().as_bytes(), force, true)?;
    write_file(&cert_path, cert.pem().as_bytes(), force, false)?;
    Ok(DevCert {
        cert_path,
        key_path,
        names: names.to_vec(),
        not_after: until.format("%Y-%m-%d").to_string(),
    })
}

/// rcgen takes dates as year, month, day (its `time` types are not ours).
fn ymd(d: chrono::NaiveDate) -> anyhow::Result<(i32, u8, u8)> {
    let month = u8::try_from(d.month()).context("month")?;
    let day = u8::try_from(d.day()).context("day")?;
    Ok((d.year(), month, day))
}

/// A DNS name (letters, digits, `-`, `.`, a leading `*.`) or an IP address.
fn check_name(n: &str) -> anyhow::Result<()> {
    if n.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let dns = n.strip_prefix("*.").unwrap_or(n);
    let ok = !dns.is_empty()
        && dns.len() <= 253
        && dns.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !ok {
        bail!("{n:?} is neither a DNS name nor an IP address");
    }
    Ok(())
}

fn write_file(path: &Path, data: &[u8], force: bool, private: bool) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        // Fails if the file appeared since the check above.
        opts.create_new(true);
    }
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_default_to_localhost_loopback_and_the_sip_domain() {
        let vars = [
            ("CENTRALITA_SIP_DOMAIN", "pbx.test"),
            ("CENTRALITA_HTTP_LISTEN", "192.0.2.7:8080"),
            ("CENTRALITA_SIP_LISTEN", "0.0.0.0:5060"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let cfg = Config::load(None, vars).expect("config");
        let names = default_names(&cfg, &["Extra.test".into(), "localhost".into()]);
        assert_eq!(
            names,
            [
                "localhost",
                "127.0.0.1",
                "::1",
                "pbx.test",
                "192.0.2.7",
                "Extra.test"
            ]
        );
    }

    #[test]
    fn refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = vec!["localhost".to_string()];
        let first = generate(dir.path(), &names, false).expect("first");
        let before = std::fs::read(&first.cert_path).expect("read");
        let err = generate(dir.path(), &names, false).expect_err("exists");
        assert!(format!("{err:#}").contains("--force"), "{err:#}");
        assert_eq!(std::fs::read(&first.cert_path).expect("read"), before);
        generate(dir.path(), &names, true).expect("forced");
        assert_ne!(std::fs::read(&first.cert_path).expect("read"), before);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&first.key_path)
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");
        }
    }

    #[test]
    fn bad_names_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        for bad in ["", "a b", "x/y", "-x.test", "a..b"] {
            assert!(
                generate(dir.path(), &[bad.to_string()], false).is_err(),
                "{bad:?}"
            );
        }
        assert!(!dir.path().join(CERT_FILE).exists());
    }
}
