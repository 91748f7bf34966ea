//! The `centralita` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "centralita",
    version,
    about = "Call-center telephony server: SIP PBX, agents, CDRs and a web console",
    after_help = "Configuration: defaults, then --config FILE (TOML, see config/centralita.sample.toml), then \
environment variables CENTRALITA_<SECTION>_<KEY> (top-level keys: CENTRALITA_<KEY>), e.g. \
CENTRALITA_HTTP_LISTEN=127.0.0.1:8080, CENTRALITA_DATA_DIR=./data, CENTRALITA_DATABASE_URL=sqlite://./data/centralita.db, \
CENTRALITA_ADMIN_PASSWORD=..., CENTRALITA_SIP_DOMAIN=centralita.local, CENTRALITA_SIP_LISTEN=127.0.0.1:5060, \
CENTRALITA_CONSOLE_DIR=web/dist. Logs: RUST_LOG (default info)."
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Serve { config } => {
            let cfg = centralita::Config::load(config.as_deref(), std::env::vars())?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(serve(cfg))
        }
        Command::ResetPassword { config, login } => {
            let cfg = centralita::Config::load(config.as_deref(), std::env::vars())?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(reset_password(cfg, login))
        }
    }
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
    let sip = centralita::start_sip(&server.config, &server.services).await?;
    println!("centralita listening on http://{}", server.local_addr);
    println!(
        "SIP on udp/tcp {} and ws://{}{}",
        server.config.sip.listen, server.local_addr, server.config.sip.ws_path
    );
    tracing::info!(addr = %server.local_addr, sip_domain = %server.config.sip.domain, "HTTP listening");
    server.serve_with_sip(Some(sip), shutdown).await
}
