//! `mode = "asterisk"`: an existing Asterisk (Issabel, FreePBX) does the
//! calls; centralita drives it (crates/asterisk).
//!
//! - Configuration it owns: the agents' SIP accounts (stored HA1s as
//!   `md5_cred`, never a password) and the trunks are rendered into two
//!   files of their own in `asterisk.config_dir`, which the site's
//!   configuration `#include`s; after every change of an agent, SIP
//!   account or trunk they are rendered again and, when they changed,
//!   `res_pjsip.so` is reloaded. The outcome is logged.
//! - Calls: the AMI client turns Asterisk's events into the same call
//!   events the builtin engine emits; they are recorded as CDRs here.
//! - The API sees it as an engine: status from AMI, hang-ups through AMI,
//!   a trunk's "force register" as `PJSIPRegister` and its "test
//!   connection" as `PJSIPQualify` of its endpoint.
//!   Phones (and browsers) register to Asterisk itself, so `/ws` is not
//!   served in this mode.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use asterisk::ami::calls::StaticDirectory;
use asterisk::ami::registrations::{RegistrationChange, TrunkRegState};
use asterisk::ami::{AuthMode, Config as SessionConfig};
use asterisk::config::trunks::{in_service, registration_name, section_name, Secrets};
use asterisk::config::{
    render_agents, render_trunks, AgentAccount, AgentOptions, ConfigDir, ConfigFile, TrunkOptions,
};
use asterisk::shell::{AmiClient, ClientConfig, ClientEvent, OriginateRequest};
use domain::engine::{
    PbxConfigFile, PbxConfigFuture, PbxConfigView, PbxReload, ProbeAnswer, ProbeFuture,
    TrunkRegistrationView,
};
use domain::{Event, Services};
use tokio::sync::broadcast::error::RecvError;

use crate::config::Config;

/// The running driver: the AMI client and what the API asks of it.
#[derive(Clone)]
pub struct AsteriskEngine {
    client: AmiClient,
    /// The dialplan context an originated agent channel runs.
    originate_context: String,
    sync: Arc<ConfigSync>,
    /// Trunks an admin asked to register again, until Asterisk reports the
    /// outcome.
    forced: Arc<std::sync::Mutex<HashMap<i64, ForcedRegistration>>>,
}

/// A `PJSIPRegister` sent for a trunk.
#[derive(Debug, Clone)]
struct ForcedRegistration {
    at: chrono::DateTime<chrono::Utc>,
    /// Asterisk refused the action (its words).
    refused: Option<String>,
}

/// How long a forced registration shows as `registering` (or, refused,
/// as `failed`) at most when Asterisk reports nothing newer.
const FORCED_REGISTRATION_WAIT: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// How long "test connection" waits for Asterisk to report the trunk's
/// contact reachable or not after `PJSIPQualify` (its qualify timeout is
/// 3 s by default).
const QUALIFY_WAIT: std::time::Duration = std::time::Duration::from_millis(3500);

/// A trunk as the generated configuration names it.
#[derive(Debug, Clone)]
struct TrunkRef {
    id: i64,
    /// Its wizard section: the endpoint and AOR name.
    section: String,
    host: String,
    port: u16,
    transport: &'static str,
    registers: bool,
}

/// What rendering the PBX's configuration needs, and its last reload.
struct ConfigSync {
    services: Services,
    client: AmiClient,
    directory: Arc<StaticDirectory>,
    dir: ConfigDir,
    realm: String,
    last_reload: std::sync::Mutex<Option<PbxReload>>,
    /// The trunks configured in Asterisk, as of the last rendering.
    trunks: std::sync::RwLock<Vec<TrunkRef>>,
}

impl domain::Engine for AsteriskEngine {
    fn name(&self) -> &'static str {
        "asterisk"
    }

    fn status(&self) -> domain::EngineStatus {
        domain::EngineStatus {
            connected: self.client.is_connected(),
            active_calls: self.client.active_calls() as u64,
            registered_contacts: self
                .client
                .with_registrations(|r| r.contact_count() as u64)
                .unwrap_or(0),
            ..Default::default()
        }
    }

    fn blocked_sources(&self) -> Vec<domain::BlockedSource> {
        // Asterisk's own fail2ban-style protection is the site's business.
        Vec::new()
    }

    fn unblock(&self, _ip: std::net::IpAddr) -> bool {
        false
    }

    fn attach_flow(
        &self,
        _peer: std::net::SocketAddr,
        _secure: bool,
    ) -> Result<domain::FlowHandle, domain::FlowRefused> {
        Err(domain::FlowRefused::NotServed)
    }

    fn originate(
        &self,
        plan: domain::originate::OriginatePlan,
    ) -> Option<domain::engine::OriginateFuture> {
        // The agent's channel gets this Uniqueid; being the call's first
        // channel it is the Linkedid, the id of the call's CDR.
        let call_id = format!(
            "centralita-{}-{}",
            plan.agent_extension,
            rand_seed() % 1_000_000_000
        );
        let mut variables = Vec::new();
        if let Some(c) = plan.campaign_id {
            variables.push(("CENTRALITA_CAMPAIGN".to_string(), c.to_string()));
        }
        if let Some(l) = plan.lead_id {
            variables.push(("CENTRALITA_LEAD".to_string(), l.to_string()));
        }
        let req = OriginateRequest {
            agent_endpoint: plan.agent_username.clone(),
            customer_number: plan.number_for_trunk.clone(),
            context: self.originate_context.clone(),
            trunk: Some(section_name(&plan.trunk_name)),
            // The agent's phone shows whom it is about to call.
            caller_id: Some(format!(
                "\"{}\" <{}>",
                plan.number_for_trunk, plan.number_for_trunk
            )),
            pai: plan.trunk_pai.clone(),
            ring_timeout: std::time::Duration::from_secs(30),
            variables,
            channel_id: Some(call_id.clone()),
        };
        let client = self.client.clone();
        Some(Box::pin(async move {
            client
                .originate(&req)
                .await
                .map(|_| call_id)
                .map_err(|e| domain::engine::OriginateFailure::Refused(e.to_string()))
        }))
    }

    fn pbx_config(&self) -> Option<PbxConfigFuture> {
        let sync = self.sync.clone();
        Some(Box::pin(async move {
            sync.view().await.map_err(|e| e.to_string())
        }))
    }

    fn regenerate_pbx_config(&self) -> Option<PbxConfigFuture> {
        let sync = self.sync.clone();
        Some(Box::pin(async move {
            sync.regenerate(true).await.map_err(|e| e.to_string())?;
            sync.view().await.map_err(|e| e.to_string())
        }))
    }

    fn trunk_registration(&self, trunk_id: i64) -> Option<TrunkRegistrationView> {
        let t = self.sync.trunk(trunk_id).filter(|t| t.registers)?;
        let reported = self
            .client
            .with_registrations(|r| r.trunk(&t.section).cloned())
            .flatten();
        let now = chrono::Utc::now();
        let at = |ms: u64| {
            chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
                .unwrap_or(now)
        };
        let view = |state: &str, since| TrunkRegistrationView {
            state: state.to_string(),
            since,
            last_registered_at: (state == "registered").then_some(since),
            expires_at: None,
            next_attempt_at: None,
            failures: u32::from(matches!(state, "rejected" | "failed")),
        };
        if let Ok(mut forced) = self.forced.lock() {
            if let Some(f) = forced.get(&trunk_id).cloned() {
                // Asterisk unregisters, then registers: the outcome is the
                // first registered/rejected/failed reported after the
                // request (or after its refusal), in milliseconds as the
                // client stamps events.
                let asked_ms = u64::try_from(f.at.timestamp_millis()).unwrap_or(0);
                let settled = reported.as_ref().is_some_and(|r| {
                    r.since_ms >= asked_ms
                        && matches!(
                            r.state,
                            TrunkRegState::Registered
                                | TrunkRegState::Rejected
                                | TrunkRegState::Failed
                        )
                });
                if settled || now - f.at > FORCED_REGISTRATION_WAIT {
                    forced.remove(&trunk_id);
                } else if f.refused.is_some() {
                    return Some(view("failed", f.at));
                } else {
                    return Some(view("registering", f.at));
                }
            }
        }
        Some(match reported {
            Some(r) => view(r.state.as_engine_state(), at(r.since_ms)),
            // Not listed by Asterisk yet: it registers the trunk after the
            // reload.
            None => view("registering", now),
        })
    }

    fn force_trunk_registration(&self, trunk_id: i64) -> bool {
        let Some(t) = self.sync.trunk(trunk_id).filter(|t| t.registers) else {
            return false;
        };
        let object = self
            .client
            .with_registrations(|r| r.trunk(&t.section).and_then(|r| r.object_name.clone()))
            .flatten()
            .unwrap_or_else(|| registration_name(&t.section));
        if let Ok(mut forced) = self.forced.lock() {
            forced.insert(
                trunk_id,
                ForcedRegistration {
                    at: chrono::Utc::now(),
                    refused: None,
                },
            );
        }
        let (client, forced, services) = (
            self.client.clone(),
            self.forced.clone(),
            self.sync.services.clone(),
        );
        tokio::spawn(async move {
            let Err(e) = client.register_trunk(&object).await else {
                return;
            };
            let why = format!("Asterisk did not re-register {object}: {e}");
            tracing::warn!(trunk = %t.section, error = %e, "PJSIPRegister refused");
            // Stored first: whoever sees the failure below reads its words.
            if let Err(e) = services
                .trunks()
                .report_registration_state(trunk_id, "failed", false, Some(&why))
                .await
            {
                tracing::warn!(trunk = %t.section, error = %e, "storing a trunk's registration state");
            }
            if let Ok(mut forced) = forced.lock() {
                forced.insert(
                    trunk_id,
                    ForcedRegistration {
                        at: chrono::Utc::now(),
                        refused: Some(why),
                    },
                );
            }
        });
        true
    }

    /// `PJSIPQualify` of the trunk that goes to `host:port`, and what
    /// Asterisk says: its refusal as the error; else the reachability of
    /// the trunk's contact if Asterisk reports it within [`QUALIFY_WAIT`]
    /// (`ContactStatus`: Reachable → 200 with its round trip, Unreachable
    /// → an error), else its acknowledgement (200, `Asterisk: Endpoint
    /// found, will qualify`).
    fn probe(&self, host: String, port: u16, transport: &'static str) -> ProbeFuture {
        let trunk = self.sync.trunk_to(&host, port, transport);
        let client = self.client.clone();
        Box::pin(async move {
            let t = trunk
                .ok_or_else(|| format!("no trunk configured in Asterisk goes to {host}:{port}"))?;
            let mut events = client.subscribe();
            let t0 = std::time::Instant::now();
            let r = client
                .qualify(&t.section)
                .await
                .map_err(|e| e.to_string())?;
            let ami_ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
            let said = r.text().trim().to_string();
            if !r.is_success() {
                return Err(format!("Asterisk: {said}"));
            }
            let wait = tokio::time::sleep(QUALIFY_WAIT);
            tokio::pin!(wait);
            loop {
                let m = tokio::select! {
                    () = &mut wait => break,
                    ev = events.recv() => match ev {
                        Ok(ClientEvent::Ami(m)) => m,
                        Ok(_) | Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => break,
                    },
                };
                let ours = m.is("Event", "ContactStatus")
                    && (m.get("EndpointName") == Some(t.section.as_str())
                        || m.get("AOR") == Some(t.section.as_str()));
                if !ours {
                    continue;
                }
                match m.get("ContactStatus").unwrap_or("") {
                    "Reachable" => {
                        let rtt = m
                            .get("RoundtripUsec")
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .map_or(ami_ms, |us| us / 1000);
                        return Ok(ProbeAnswer {
                            status: 200,
                            reason: "Reachable (Asterisk qualified the trunk)".into(),
                            rtt_ms: rtt,
                        });
                    }
                    "Unreachable" => {
                        return Err(format!(
                            "Asterisk reports the trunk's contact {} unreachable",
                            m.get("URI").unwrap_or("")
                        ));
                    }
                    _ => {}
                }
            }
            Ok(ProbeAnswer {
                status: 200,
                reason: format!("Asterisk: {said}"),
                rtt_ms: ami_ms,
            })
        })
    }

    fn hang_up(&self, call_id: &str) -> bool {
        if !self.client.knows_call(call_id) {
            return false;
        }
        let client = self.client.clone();
        let id = call_id.to_string();
        tokio::spawn(async move {
            if let Err(e) = client.hangup_call(&id).await {
                tracing::warn!(call_id = %id, error = %e, "Asterisk did not hang the call up");
            }
        });
        true
    }
}

/// Where the generated files go.
pub fn config_dir(cfg: &Config) -> PathBuf {
    cfg.asterisk
        .config_dir
        .as_ref()
        .map_or_else(|| cfg.data_dir.join("asterisk"), PathBuf::from)
}

/// Connects to Asterisk's manager and starts the tasks that keep its
/// configuration and the CDRs in step. Within a tokio runtime.
pub fn start(cfg: &Config, services: &Services) -> anyhow::Result<AsteriskEngine> {
    let a = &cfg.asterisk;
    let mut session = SessionConfig::new(
        a.ami_username.clone(),
        a.ami_secret.clone().unwrap_or_default(),
        AuthMode::Md5,
    );
    session.jitter_seed = rand_seed();
    let directory = Arc::new(StaticDirectory::default());
    let client = AmiClient::start(
        ClientConfig::new(a.ami_address.clone(), session),
        directory.clone(),
    );
    std::fs::create_dir_all(config_dir(cfg))
        .map_err(|e| anyhow::anyhow!("asterisk.config_dir {:?}: {e}", config_dir(cfg)))?;
    let sync = Arc::new(ConfigSync {
        services: services.clone(),
        client: client.clone(),
        directory,
        dir: ConfigDir::new(config_dir(cfg)),
        realm: cfg.sip.domain.clone(),
        last_reload: std::sync::Mutex::new(None),
        trunks: std::sync::RwLock::new(Vec::new()),
    });
    spawn_config_sync(sync.clone());
    spawn_recorder(services.clone(), client.clone());
    spawn_trunk_states(services.clone(), client.clone());
    spawn_agent_states(services.clone(), client.clone());
    tracing::info!(ami = %a.ami_address, "driving Asterisk over AMI");
    Ok(AsteriskEngine {
        client,
        originate_context: a.originate_context.clone(),
        sync,
        forced: Arc::default(),
    })
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id())
}

/// Masks what follows `key = ` on every line (the preview shows the
/// shape, not the secrets).
fn mask(text: &str, keys: &[&str]) -> String {
    text.lines()
        .map(|l| {
            let masked = keys.iter().find_map(|k| {
                l.trim_start()
                    .strip_prefix(k)
                    .and_then(|rest| rest.trim_start().strip_prefix('='))
                    .map(|_| format!("{k} = ********"))
            });
            masked.unwrap_or_else(|| l.to_string())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigSync {
    /// Trunk `id`, if Asterisk has it configured.
    fn trunk(&self, id: i64) -> Option<TrunkRef> {
        let trunks = self.trunks.read().unwrap_or_else(|p| p.into_inner());
        trunks.iter().find(|t| t.id == id).cloned()
    }

    /// The configured trunk that goes to `host:port` (over `transport`
    /// first).
    fn trunk_to(&self, host: &str, port: u16, transport: &str) -> Option<TrunkRef> {
        let trunks = self.trunks.read().unwrap_or_else(|p| p.into_inner());
        let to = |t: &&TrunkRef| t.host.eq_ignore_ascii_case(host) && t.port == port;
        trunks
            .iter()
            .filter(to)
            .find(|t| t.transport == transport)
            .or_else(|| trunks.iter().find(to))
            .cloned()
    }

    /// Both files as they are rendered from the database now.
    async fn render(&self, secrets: Secrets) -> anyhow::Result<(String, String)> {
        let creds = self.services.sip_accounts.all_digest_credentials().await?;
        // Browser agents register over WSS: every agent gets a WebRTC
        // endpoint.
        let agents: Vec<AgentAccount> = creds
            .iter()
            .filter_map(|c| AgentAccount::from_credentials(c, true))
            .collect();
        let with_ids = self.services.trunks().active_settings().await?;
        let refs = with_ids
            .iter()
            .filter(|(_, s)| in_service(s))
            .map(|(id, s)| TrunkRef {
                id: *id,
                section: section_name(&s.name),
                host: s.host.clone(),
                port: s.port,
                transport: s.transport.as_str(),
                registers: s.sends_registration,
            })
            .collect();
        match self.trunks.write() {
            Ok(mut t) => *t = refs,
            Err(p) => *p.into_inner() = refs,
        }
        let trunks: Vec<domain::trunks::TrunkSettings> =
            with_ids.into_iter().map(|(_, s)| s).collect();
        self.directory.replace(
            creds.iter().filter(|c| c.account.active).map(|c| {
                (
                    c.account.username.clone(),
                    c.account.user_id,
                    c.account.extension.clone(),
                )
            }),
            trunks.iter().map(|t| section_name(&t.name)),
        );
        let pjsip = render_agents(&agents, &AgentOptions::new(&self.realm))?;
        let wizard = render_trunks(&trunks, &TrunkOptions::default(), secrets)?;
        Ok((pjsip, wizard))
    }

    /// Renders both files from the database and writes them; reloads PJSIP
    /// when either changed, or when `force` (and the manager is up).
    /// Returns whether anything changed.
    async fn regenerate(&self, force: bool) -> anyhow::Result<bool> {
        let (pjsip, wizard) = self.render(Secrets::Included).await?;
        let changed = self.dir.write(ConfigFile::Pjsip, &pjsip)?
            | self.dir.write(ConfigFile::Wizard, &wizard)?;
        if changed || force {
            let outcome = if self.client.is_connected() {
                match self.client.reload_pjsip().await {
                    Ok(r) => {
                        tracing::info!(message = %r.message, "PJSIP reloaded after a configuration change");
                        (true, r.message)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "PJSIP reload refused");
                        (false, e.to_string())
                    }
                }
            } else {
                (
                    false,
                    "the manager is not connected: reloaded when it is".to_string(),
                )
            };
            if let Ok(mut last) = self.last_reload.lock() {
                *last = Some(PbxReload {
                    at: chrono::Utc::now(),
                    ok: outcome.0,
                    message: outcome.1,
                });
            }
        }
        Ok(changed)
    }

    /// The files as an administrator may see them: trunk passwords and
    /// the agents' HA1s masked.
    async fn view(&self) -> anyhow::Result<PbxConfigView> {
        let (pjsip, wizard) = self.render(Secrets::Masked).await?;
        let file = |f: ConfigFile, content: String| PbxConfigFile {
            name: f.file_name().to_string(),
            path: self.dir.path(f).display().to_string(),
            content,
        };
        Ok(PbxConfigView {
            files: vec![
                // The agents' HA1s; the trunks' passwords are masked by
                // rendering with `Secrets::Masked`.
                file(ConfigFile::Pjsip, mask(&pjsip, &["md5_cred"])),
                file(ConfigFile::Wizard, wizard),
            ],
            last_reload: self.last_reload.lock().ok().and_then(|l| l.clone()),
        })
    }
}

/// Regenerates at start, after every change of agents, SIP accounts or
/// trunks, and after every (re)connection (a reload missed while the
/// manager was down is done then).
fn spawn_config_sync(sync: Arc<ConfigSync>) {
    let mut changes = sync.services.events.subscribe();
    let mut ami = sync.client.subscribe();
    tokio::spawn(async move {
        // Render at start; `force` reloads even when nothing changed.
        let mut dirty = true;
        let mut force = false;
        loop {
            if dirty {
                dirty = false;
                match sync.regenerate(std::mem::take(&mut force)).await {
                    Ok(changed) => tracing::debug!(changed, "Asterisk configuration rendered"),
                    Err(e) => tracing::error!(error = %e, "rendering the Asterisk configuration"),
                }
            }
            tokio::select! {
                ev = changes.recv() => match ev {
                    Ok(Event::Agent { .. } | Event::Trunk { .. }) | Err(RecvError::Lagged(_)) => {
                        dirty = true
                    }
                    Ok(_) => {}
                    Err(RecvError::Closed) => return,
                },
                ev = ami.recv() => match ev {
                    Ok(ClientEvent::Connected { .. }) => {
                        // Asterisk may have restarted, or missed a reload
                        // while the manager was down: render and reload.
                        dirty = true;
                        force = true;
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                },
            }
        }
    });
}

/// Writes what Asterisk says of each trunk's registration to the trunk's
/// live state (the trunks page, and originate's trunk choice: a trunk
/// that registers is used only while registered).
fn spawn_trunk_states(services: Services, client: AmiClient) {
    let mut ami = client.subscribe();
    tokio::spawn(async move {
        loop {
            let (name, state) = match ami.recv().await {
                Ok(ClientEvent::Registration(RegistrationChange::Trunk {
                    trunk: Some(name),
                    state,
                })) => (name, state),
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            };
            let trunks = services.trunks();
            let Ok(all) = trunks.active_settings().await else {
                continue;
            };
            let Some((id, _)) = all.iter().find(|(_, s)| section_name(&s.name) == name) else {
                continue;
            };
            let registered = state == TrunkRegState::Registered;
            let error =
                matches!(state, TrunkRegState::Rejected | TrunkRegState::Failed).then(|| {
                    format!(
                        "Asterisk reports the registration {}",
                        state.as_engine_state()
                    )
                });
            if let Err(e) = trunks
                .report_registration_state(
                    *id,
                    state.as_engine_state(),
                    registered,
                    error.as_deref(),
                )
                .await
            {
                tracing::warn!(trunk = %name, error = %e, "storing a trunk's registration state");
            }
        }
    });
}

/// Writes what Asterisk says of each agent's contacts to the agent's SIP
/// account (registered, user agent) and publishes it as a `registration`
/// event, as the builtin registrar does: the agents page and the events
/// socket show phones registered to Asterisk.
fn spawn_agent_states(services: Services, client: AmiClient) {
    let mut ami = client.subscribe();
    tokio::spawn(async move {
        loop {
            let endpoint = match ami.recv().await {
                Ok(ClientEvent::Registration(RegistrationChange::Contact { endpoint, .. })) => {
                    endpoint
                }
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            };
            // The endpoint of an agent is its SIP username.
            let Ok(Some(account)) = services.sip_accounts.by_username(&endpoint).await else {
                continue;
            };
            let (contacts, user_agent) = client
                .with_registrations(|r| {
                    let all: Vec<_> = r.contacts_of(&endpoint).collect();
                    (all.len(), all.first().and_then(|c| c.user_agent.clone()))
                })
                .unwrap_or((0, None));
            let registered = contacts > 0;
            let update = domain::RegistrationStateUpdate {
                username: &account.username,
                registered,
                user_agent: user_agent.as_deref(),
                ip: None,
            };
            if let Err(e) = services
                .sip_accounts
                .set_registration_states(&[update])
                .await
            {
                tracing::warn!(%endpoint, error = %e, "storing an agent's registration state");
                continue;
            }
            services.events.publish(Event::Registration {
                at: chrono::Utc::now(),
                username: account.username.clone(),
                extension: account.extension.clone(),
                registered,
                contacts: u32::try_from(contacts).unwrap_or(u32::MAX),
            });
        }
    });
}

/// Records the call events the AMI client derives, in batches.
fn spawn_recorder(services: Services, client: AmiClient) {
    let mut ami = client.subscribe();
    tokio::spawn(async move {
        loop {
            let first = match ami.recv().await {
                Ok(ClientEvent::Call(ev)) => ev,
                Ok(_) => continue,
                Err(RecvError::Lagged(n)) => {
                    tracing::error!(missed = n, "AMI call events missed: CDRs may be incomplete");
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            let mut batch = vec![first];
            // Whatever else is already queued goes in the same transaction.
            while batch.len() < 256 {
                match ami.try_recv() {
                    Ok(ClientEvent::Call(ev)) => batch.push(ev),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            if let Err(e) = services.calls.record(&batch).await {
                tracing::error!(error = %e, "recording Asterisk call events");
                // One by one, so one bad event loses only its own call.
                for ev in &batch {
                    let _ = services.calls.record(std::slice::from_ref(ev)).await;
                }
            }
        }
    });
}
