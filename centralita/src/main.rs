//! The `centralita` command line.

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

// glibc malloc kept freed memory resident after load (RSS ~350 MB of which
// ~110 MB in use, 60 s after 140,000 calls; malloc_trim gave 215 MB back):
// jemalloc hands freed pages back to the system within seconds.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "centralita",
    version,
    about = "Call-center telephony server: SIP PBX, agents, CDRs and a web console",
    after_help = "Configuration: defaults, then --config FILE (TOML, see config/centralita.sample.toml), then \
environment variables CENTRALITA_<SECTION>_<KEY> (top-level keys: CENTRALITA_<KEY>), e.g. \
CENTRALITA_HTTP_LISTEN=127.0.0.1:8080, CENTRALITA_DATA_DIR=./data, CENTRALITA_DATABASE_URL=sqlite://./data/centralita.db, \
CENTRALITA_ADMIN_PASSWORD=..., CENTRALITA_SIP_DOMAIN=centralita.local, CENTRALITA_SIP_LISTEN=127.0.0.1:5060, \
CENTRALITA_CONSOLE_DIR=web/dist, CENTRALITA_SIP_SHA256_USER_AGENTS=Linphone,Zoiper (a list). HTTPS/WSS: \
CENTRALITA_HTTP_TLS_LISTEN, CENTRALITA_HTTP_TLS_CERT, CENTRALITA_HTTP_TLS_KEY (see `centralita gen-cert` and \
docs/TLS.md). `centralita serve --help` lists every setting with its default. Logs: RUST_LOG (default info); \
CENTRALITA_LOG_FORMAT (text, or json for one JSON object per line)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (HTTP API, console, SIP).
    Serve {
        /// TOML configuration file.
        #[arg(long, short, env = "CENTRALITA_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Set a new password for a console account (default `admin`), end its
    /// sessions and reactivate it. Uses CENTRALITA_ADMIN_PASSWORD if set,
    /// otherwise generates and prints a random one. Run it while the server
    /// is stopped or running; it talks only to the database.
    ResetPassword {
        /// TOML configuration file.
        #[arg(long, short, env = "CENTRALITA_CONFIG")]
        config: Option<PathBuf>,
        /// Login (or email) of the account.
        #[arg(long, default_value = "admin")]
        login: String,
    },
    /// Generate a self-signed certificate and key (PEM) for development
    /// HTTPS/WSS (and SIP over TLS). Covers localhost, 127.0.0.1, ::1, the
    /// SIP domain and the configured listen addresses, plus every --host.
    /// Browsers must be told to trust it (docs/TLS.md).
    GenCert {
        /// TOML configuration file (for data_dir, the SIP domain and listen addresses).
        #[arg(long, short, env = "CENTRALITA_CONFIG")]
        config: Option<PathBuf>,
        /// Output directory [default: <data_dir>/tls].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Another DNS name or IP address the certificate must cover (repeatable).
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
        /// Replace cert.pem and key.pem if they exist.
        #[arg(long)]
        force: bool,
    },
    /// Apply pending database migrations and exit, printing each one
    /// applied (`serve` also applies them at start).
    Migrate {
        /// TOML configuration file.
        #[arg(long, short, env = "CENTRALITA_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Write a consistent copy of the SQLite database to FILE, also while
    /// the server runs (SQLite VACUUM INTO). Never overwrites FILE.
    Backup {
        /// TOML configuration file.
        #[arg(long, short, env = "CENTRALITA_CONFIG")]
        config: Option<PathBuf>,
        /// Where to write the copy (must not exist).
        file: PathBuf,
    },
    /// Check the configuration file and environment without starting:
    /// exit 0 and print a summary, or print what is wrong and exit 1.
    CheckConfig {
        /// TOML configuration file.
        #[arg(long, short, env = "CENTRALITA_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    // jemalloc is this binary's allocator (above): idle threads may hand
    // their caches back (see allocator.rs).
    centralita::allocator::enable_idle_release();
    // `serve --help` lists every setting, read from the configuration
    // structs so that it cannot fall behind them.
    let matches = Cli::command()
        .mut_subcommand("serve", |c| c.after_help(centralita::config::help()))
        .get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // The log format is a setting: read the configuration first (an error
    // in it is then reported in the format asked for, when that is known).
    let file = cli.command.config_file();
    let loaded = centralita::Config::load(file.as_deref(), std::env::vars());
    let json = match &loaded {
        Ok(cfg) => cfg.json_logs(),
        Err(_) => std::env::var("CENTRALITA_LOG_FORMAT").is_ok_and(|v| v.trim() == "json"),
    };
    centralita::logging::init(json);
    match loaded.and_then(|cfg| run(cli.command, cfg)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if json {
                tracing::error!(error = format!("{e:#}"), "centralita stopped");
            } else {
                eprintln!("Error: {e:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

impl Command {
    fn config_file(&self) -> Option<PathBuf> {
        match self {
            Command::Serve { config }
            | Command::ResetPassword { config, .. }
            | Command::GenCert { config, .. }
            | Command::Migrate { config }
            | Command::Backup { config, .. }
            | Command::CheckConfig { config } => config.clone(),
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .on_thread_park(centralita::allocator::release_thread_cache_when_idle)
        .enable_all()
        .build()?)
}

fn run(command: Command, cfg: centralita::Config) -> anyhow::Result<()> {
    // Before anything can build a TLS configuration (see tls.rs).
    centralita::tls::install_crypto_provider();
    match command {
        Command::Serve { .. } => {
            // Before anything opens a descriptor: the SIP connection cap is
            // derived from the limit in force when the SIP server starts.
            centralita::raise_open_file_limit();
            runtime()?.block_on(serve(cfg))
        }
        Command::ResetPassword { login, .. } => runtime()?.block_on(reset_password(cfg, login)),
        Command::GenCert {
            out, hosts, force, ..
        } => gen_cert(&cfg, out, &hosts, force),
        Command::Migrate { .. } => runtime()?.block_on(async {
            let applied = centralita::ops::migrate(&cfg).await?;
            if applied.is_empty() {
                println!(
                    "{}: the schema is up to date; nothing applied.",
                    cfg.database_url()
                );
            } else {
                for m in &applied {
                    println!("applied migration {:04} {}", m.version, m.description);
                }
                println!(
                    "{}: {} migration(s) applied.",
                    cfg.database_url(),
                    applied.len()
                );
            }
            Ok(())
        }),
        Command::Backup { file, .. } => runtime()?.block_on(async {
            let bytes = centralita::ops::backup(&cfg, &file).await?;
            println!(
                "Backed up {} to {} ({bytes} bytes).",
                cfg.database_url(),
                file.display()
            );
            Ok(())
        }),
        Command::CheckConfig { config } => {
            for line in centralita::ops::check_config(&cfg, config.as_deref())? {
                println!("{line}");
            }
            Ok(())
        }
    }
}

fn gen_cert(
    cfg: &centralita::Config,
    out: Option<PathBuf>,
    hosts: &[String],
    force: bool,
) -> anyhow::Result<()> {
    use centralita::devcert;
    let out = out.unwrap_or_else(|| cfg.data_dir.join("tls"));
    let names = devcert::default_names(cfg, hosts);
    let c = devcert::generate(&out, &names, force)?;
    // Absolute paths, so the printed lines work from any directory.
    let cert = std::path::absolute(&c.cert_path).unwrap_or(c.cert_path);
    let key = std::path::absolute(&c.key_path).unwrap_or(c.key_path);
    let listen = cfg
        .http
        .tls_listen
        .clone()
        .unwrap_or_else(|| "127.0.0.1:8443".into());
    println!(
        "Wrote a self-signed development certificate for {} (valid until {}):",
        c.names.join(", "),
        c.not_after
    );
    println!("  certificate: {}", cert.display());
    println!("  private key: {}", key.display());
    println!();
    println!("Enable HTTPS and WSS with these lines in the config file:");
    println!("  [http]");
    println!("  tls_listen = \"{listen}\"");
    println!("  tls_cert = \"{}\"", cert.display());
    println!("  tls_key = \"{}\"", key.display());
    println!("or in the environment:");
    println!("  CENTRALITA_HTTP_TLS_LISTEN={listen}");
    println!("  CENTRALITA_HTTP_TLS_CERT={}", cert.display());
    println!("  CENTRALITA_HTTP_TLS_KEY={}", key.display());
    println!();
    println!(
        "Browsers do not trust this certificate: open https://{listen}/ once and accept it \
         (or import cert.pem as trusted) before a softphone can use wss://{listen}{}.",
        cfg.sip.ws_path
    );
    println!("For production use a certificate from a real authority (docs/TLS.md).");
    Ok(())
}

async fn reset_password(cfg: centralita::Config, login: String) -> anyhow::Result<()> {
    let services = centralita::open_services(&cfg).await?;
    let (password, generated) = match &cfg.admin_password {
        Some(p) => (p.clone(), false),
        None => (domain::sip_credentials::random_hex(12), true),
    };
    let actor = domain::Actor {
        user_id: None,
        login: Some("cli".into()),
        ip: None,
    };
    services
        .users
        .reset_password(&actor, &login, &password)
        .await?;
    if generated {
        println!("New password for {login:?}: {password}");
    } else {
        println!("Password for {login:?} set from CENTRALITA_ADMIN_PASSWORD.");
    }
    services.db.close().await;
    Ok(())
}

async fn serve(cfg: centralita::Config) -> anyhow::Result<()> {
    let shutdown = centralita::shutdown_signal()?;
    let server = centralita::Server::start(cfg).await?;
    if let Some(pw) = &server.generated_admin_password {
        println!("Created the admin account. Log in with login \"admin\" and this one-time password: {pw}");
        println!("(It is not stored anywhere in clear text; change it after logging in.)");
    }
    if server.config.mode == "relay" {
        return serve_relay(server, shutdown).await;
    }
    if server.config.mode == "asterisk" {
        let engine = centralita::asterisk_engine::start(&server.config, &server.services)?;
        println!("centralita listening on http://{}", server.local_addr);
        println!(
            "driving Asterisk at {} (AMI); configuration in {}",
            server.config.asterisk.ami_address,
            centralita::asterisk_engine::config_dir(&server.config).display()
        );
        return server
            .serve_with_engine(std::sync::Arc::new(engine), shutdown)
            .await;
    }
    let sip = centralita::start_sip(&server.config, &server.services).await?;
    println!("centralita listening on http://{}", server.local_addr);
    if let Some(https) = &server.https {
        println!("centralita listening on https://{}", https.local_addr);
    }
    if let Some((_, addr)) = &server.metrics {
        println!("metrics on http://{addr}/metrics");
    }
    let wss = server.https.as_ref().map_or_else(String::new, |h| {
        format!(" and wss://{}{}", h.local_addr, server.config.sip.ws_path)
    });
    // The bound address: with port 0 in sip.listen, the one the kernel chose.
    println!(
        "SIP on udp/tcp {} and ws://{}{}{wss}",
        sip.local_addr(),
        server.local_addr,
        server.config.sip.ws_path
    );
    tracing::info!(addr = %server.local_addr, sip_domain = %server.config.sip.domain, "HTTP listening");
    server.serve_with_sip(Some(sip), shutdown).await
}

/// `mode = "relay"`: no SIP server of our own; browsers' SIP over `/ws` is
/// relayed to `relay.upstream`.
async fn serve_relay(
    server: centralita::Server,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let relay = centralita::start_relay(&server.config, &server.services)?;
    println!("centralita listening on http://{}", server.local_addr);
    if let Some(https) = &server.https {
        println!("centralita listening on https://{}", https.local_addr);
    }
    if let Some((_, addr)) = &server.metrics {
        println!("metrics on http://{addr}/metrics");
    }
    println!(
        "SIP relay to {} for ws://{}{}",
        relay.upstream(),
        server.local_addr,
        server.config.sip.ws_path
    );
    tracing::info!(addr = %server.local_addr, upstream = %relay.upstream(), "HTTP listening (relay mode)");
    server.serve_with_relay(relay, shutdown).await
}
