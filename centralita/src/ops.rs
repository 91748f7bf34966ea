//! The operator's commands beside `serve`: `migrate`, `backup FILE` and
//! `check-config` (main.rs prints what these return).

use std::path::Path;

use anyhow::{bail, Context};

use crate::Config;

/// Opens the configured database without migrating it. The data dir is
/// created for the default database, as `serve` does.
async fn open_unmigrated(cfg: &Config) -> anyhow::Result<store::Db> {
    let url = cfg.database_url();
    if cfg.database_url.is_none() {
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
    }
    store::Db::open_unmigrated(&url)
        .await
        .context("opening the database")
}

/// Applies the pending migrations; returns those applied.
pub async fn migrate(cfg: &Config) -> anyhow::Result<Vec<store::Applied>> {
    let db = open_unmigrated(cfg).await?;
    let applied = db.migrate().await.context("applying migrations");
    db.close().await;
    applied
}

/// Copies the live database to `dest` (consistent, online; see
/// `store::Db::backup_to`); returns the size of the copy in bytes.
pub async fn backup(cfg: &Config, dest: &Path) -> anyhow::Result<u64> {
    let url = cfg.database_url();
    let Some(db_path) = store::DbUrl::parse(&url)?.path().map(Path::to_path_buf) else {
        // PostgreSQL has its own tools for a consistent copy.
        bail!("{}", store::ops::POSTGRES_BACKUP);
    };
    // Opening would create an empty database: a typo in the URL must not
    // produce an empty "backup".
    if !db_path.is_file() {
        bail!("no database at {} ({url})", db_path.display());
    }
    if dest.exists() {
        bail!(
            "{} exists; a backup never overwrites a file",
            dest.display()
        );
    }
    let db = store::Db::open_unmigrated(&url)
        .await
        .with_context(|| format!("opening database {url}"))?;
    let done = db
        .backup_to(dest)
        .await
        .with_context(|| format!("writing the backup to {}", dest.display()));
    db.close().await;
    done?;
    Ok(std::fs::metadata(dest)
        .with_context(|| format!("reading {}", dest.display()))?
        .len())
}

/// Checks what `serve` would check before binding anything (the
/// configuration itself was validated by `Config::load`): the HTTPS and SIP
/// TLS settings and their files, the SIP settings, the database URL.
/// Returns a summary, one line each.
pub fn check_config(cfg: &Config, file: Option<&Path>) -> anyhow::Result<Vec<String>> {
    crate::tls::install_crypto_provider();
    let mut out = Vec::new();
    out.push(match file {
        Some(f) => format!("configuration: {} and the environment", f.display()),
        None => "configuration: defaults and the environment (no --config file)".into(),
    });
    let url = cfg.database_url();
    match store::DbUrl::parse(&url)? {
        store::DbUrl::Sqlite { path } => {
            let exists = if path.is_file() {
                "exists"
            } else {
                // The nearest directory that exists must let us create the rest.
                if let Some(existing) = path.ancestors().skip(1).find(|a| a.is_dir()) {
                    let meta = std::fs::metadata(existing)
                        .with_context(|| format!("reading {}", existing.display()))?;
                    if meta.permissions().readonly() {
                        bail!(
                            "database {}: {} is read-only, the database cannot be created there",
                            path.display(),
                            existing.display()
                        );
                    }
                }
                "will be created"
            };
            out.push(format!("database: SQLite {} ({exists})", path.display()));
        }
        // Not contacted here: `centralita migrate` (or `serve`) connects
        // and says what is wrong with the server, the user or the database.
        db @ store::DbUrl::Postgres { .. } => {
            out.push(format!("database: PostgreSQL {}", db.redacted()));
        }
    }
    out.push(format!("data dir: {}", cfg.data_dir.display()));
    out.push(format!("http: {}", cfg.http_listen()?));
    match cfg.https()? {
        Some(h) => {
            crate::tls::https_config(&h.cert, &h.key).with_context(|| {
                format!(
                    "loading the HTTPS certificate {} and key {}",
                    h.cert.display(),
                    h.key.display()
                )
            })?;
            out.push(format!(
                "https: {} (certificate {})",
                h.listen,
                h.cert.display()
            ));
        }
        None => out.push("https: off".into()),
    }
    let sip = crate::sip_config(cfg)?;
    out.push(format!(
        "sip: udp/tcp {} domain {} ws path {}",
        sip.listen, cfg.sip.domain, cfg.sip.ws_path
    ));
    if let (Some(listen), Some(cert), Some(key)) = (sip.tls_listen, &sip.tls_cert, &sip.tls_key) {
        crate::tls::server_config(cert, key).with_context(|| {
            format!(
                "loading the SIP TLS certificate {} and key {}",
                cert.display(),
                key.display()
            )
        })?;
        out.push(format!("sip tls: {listen}"));
    }
    if let sip::TlsDialVerify::Ca(ca) = &sip.tls_dial_verify {
        sip.tls_dial_verify
            .check()
            .with_context(|| format!("loading sip.tls_dial_ca {}", ca.display()))?;
        out.push(format!(
            "sip tls to phones: certificates checked against {}",
            ca.display()
        ));
    }
    if cfg.mode == "relay" {
        if let Some(u) = cfg.relay_upstream()? {
            let mut line = format!("relay: browsers' SIP over {} to {u}", cfg.sip.ws_path);
            if u.transport.is_tls() {
                let ca = cfg.relay_tls_ca();
                relay::shell::tls_client(ca.as_deref())
                    .context("relay.tls_ca (CENTRALITA_RELAY_TLS_CA)")?;
                let shown = ca.map_or(relay::shell::SYSTEM_CA_BUNDLE.to_string(), |p| {
                    p.display().to_string()
                });
                line.push_str(&format!(" (certificate checked against {shown})"));
            }
            if let Some(o) = cfg.relay_origin() {
                line.push_str(&format!(", WebSocket Origin {o}"));
            }
            if let Some(h) = cfg.relay_advertised_host() {
                line.push_str(&format!(", advertised to the PBX as {h}"));
            }
            out.push(line);
        }
    }
    out.push(format!("logs: {}", cfg.log_format));
    out.push(match cfg.metrics_listen()? {
        Some(a) => format!("metrics: /metrics (admin token) and http://{a}/metrics"),
        None => "metrics: /metrics (admin token)".into(),
    });
    out.push("configuration OK".into());
    Ok(out)
}
