//! Bench-only server: domain services on a SQLite file, N agents seeded
//! through the domain service, the SIP server on `--listen`; writes a sipp
//! injection file with every agent's credentials. Not for production.
//!
//! cargo run --release -p sip --example bench_server -- \
//!     --db /tmp/b/bench.db --agents 10000 --csv /tmp/b/users.csv --listen 127.0.0.1:5560

use sip::backend::BoxFuture;
use sip::{
    Account, AccountChange, Backend, BackendError, BindingRecord, CdrOp, Lookup, RegistrationState,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// `--no-cdr`: the domain backend with CDR writes dropped, to measure how
/// much of the call path is the database (for the report, not a mode to run).
struct NoCdr(sip::DomainBackend);

impl Backend for NoCdr {
    fn account(&self, key: &Lookup) -> BoxFuture<'_, Result<Option<Account>, BackendError>> {
        self.0.account(key)
    }
    fn all_accounts(&self) -> BoxFuture<'_, Result<Vec<Account>, BackendError>> {
        self.0.all_accounts()
    }
    fn load_bindings(
        &self,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<Vec<BindingRecord>, BackendError>> {
        self.0.load_bindings(now_ms)
    }
    fn save_bindings(&self, batch: Vec<BindingRecord>) -> BoxFuture<'_, Result<(), BackendError>> {
        self.0.save_bindings(batch)
    }
    fn remove_binding(
        &self,
        username: String,
        contact: String,
    ) -> BoxFuture<'_, Result<(), BackendError>> {
        self.0.remove_binding(username, contact)
    }
    fn remove_all_bindings(&self, username: String) -> BoxFuture<'_, Result<(), BackendError>> {
        self.0.remove_all_bindings(username)
    }
    fn registration_state(&self, s: RegistrationState) -> BoxFuture<'_, Result<(), BackendError>> {
        self.0.registration_state(s)
    }
    fn call_event(&self, _op: CdrOp) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async { Ok(()) })
    }
    fn close_orphan_calls(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        self.0.close_orphan_calls()
    }
    fn account_changes(&self) -> Option<mpsc::UnboundedReceiver<AccountChange>> {
        self.0.account_changes()
    }
}

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db_path = arg("--db", "/tmp/centralita-bench/bench.db");
    let agents: usize = arg("--agents", "10000").parse()?;
    let csv = arg("--csv", "/tmp/centralita-bench/users.csv");
    let listen = arg("--listen", "127.0.0.1:5560").parse()?;
    let ring: u64 = arg("--ring-timeout", "30").parse()?;
    let nonce: u64 = arg("--nonce-lifetime", "60").parse()?;
    let db = domain::Db::open(&format!("sqlite://{db_path}")).await?;
    let services = domain::Services::new(
        db,
        domain::DomainConfig {
            sip_domain: "centralita.bench".into(),
            password_cost: domain::PasswordCost::TestOnlyCheap,
            ..Default::default()
        },
    );
    let t = Instant::now();
    let mut rows = String::from("SEQUENTIAL\n");
    let mut extensions = Vec::new();
    // Seed concurrently; each create is one transaction with a cheap hash.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..agents {
        let s = services.clone();
        set.spawn(async move {
            s.users
                .create(
                    &domain::Actor::system(),
                    domain::NewUser {
                        name: format!("Bench Agent {i}"),
                        login: Some(format!("bench{i}")),
                        email: None,
                        phone: None,
                        password: "bench-password-1".into(),
                        role: "agent".into(),
                        create_sip: None,
                    },
                )
                .await
        });
        while set.len() >= 8 {
            if let Some(r) = set.join_next().await {
                let (_, c) = r??;
                if let Some(c) = c {
                    rows.push_str(&format!(
                        "{u};[authentication username={u} password={p}];{e};\n",
                        u = c.username,
                        p = c.password,
                        e = c.extension
                    ));
                    extensions.push(c.extension);
                }
            }
        }
    }
    while let Some(r) = set.join_next().await {
        let (_, c) = r??;
        if let Some(c) = c {
            rows.push_str(&format!(
                "{u};[authentication username={u} password={p}];{e};\n",
                u = c.username,
                p = c.password,
                e = c.extension
            ));
            extensions.push(c.extension);
        }
    }
    std::fs::write(&csv, rows)?;
    eprintln!(
        "seeded {} agents in {:.1}s",
        extensions.len(),
        t.elapsed().as_secs_f64()
    );
    let cfg = sip::SipConfig {
        listen,
        realm: "centralita.bench".into(),
        ring_timeout: Duration::from_secs(ring),
        nonce_lifetime: Duration::from_secs(nonce),
        // Everything comes from 127.0.0.1 here: never ban it.
        auth_fail_limit: u32::MAX,
        max_contacts: 5,
        ..Default::default()
    };
    let domain_backend = sip::DomainBackend::new(services.clone());
    let backend: Arc<dyn Backend> = if std::env::args().any(|a| a == "--no-cdr") {
        Arc::new(NoCdr(domain_backend))
    } else {
        Arc::new(domain_backend)
    };
    let sip = sip::start(cfg, backend).await?;
    println!("READY {} pid {}", sip.local_addr(), std::process::id());
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        eprintln!(
            "contacts {} active calls {}",
            sip.registered_contacts(),
            sip.active_calls()
        );
    }
}
