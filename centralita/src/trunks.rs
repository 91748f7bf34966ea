//! Keeps the SIP server's trunks in step with the `trunks` table — the
//! registrations to carriers and the trunks outbound calls go through —
//! at start and again after every trunk change (the domain's `trunk`
//! events); and writes what the carriers answered back to the trunk's live
//! state (registered, last registered at, last error), which the console
//! shows.
//!
//! A trunk registers when it is `active` and `sendsRegistration`; its key
//! in the SIP server is its id, so a rename keeps the binding. Every
//! `active` trunk carries outbound calls (a registering one only while it
//! is registered), by priority, under the `[dialplan]` policy.

use domain::trunks::{TrunkSettings, TrunkTransport};
use domain::{Event, Services};
use sip::{
    InboundTrunkSpec, OutboundTrunk, SipServer, Transport, TrunkEvent, TrunkEventKind,
    TrunkRegistration,
};
use tokio::sync::broadcast::error::RecvError;

/// The registration of trunk `id`, or why it cannot register.
pub fn registration_of(id: i64, s: &TrunkSettings) -> Result<TrunkRegistration, String> {
    let transport = match s.transport {
        TrunkTransport::Udp => Transport::Udp,
        TrunkTransport::Tcp => Transport::Tcp,
        TrunkTransport::Tls => Transport::Tls,
    };
    let aor = s.effective_client_uri();
    let aor_user = contact_user_of(s);
    let auth_username = s
        .outbound_username
        .clone()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| aor_user.clone());
    let r = TrunkRegistration {
        key: id.to_string(),
        registrar: s
            .registration_server_uri
            .clone()
            .unwrap_or_else(|| format!("{}:{}", host_in_uri(&s.host), s.port)),
        transport,
        aor,
        // The carrier sends our calls to this user at our address.
        contact_user: aor_user,
        auth_username,
        secret: s
            .outbound_secret
            .as_ref()
            .map(|p| p.expose().to_string())
            .unwrap_or_default(),
        realm: s.outbound_realm.clone(),
        expires_secs: s.registration_expiry,
        retry_interval_secs: s.registration_retry_interval,
        max_retries: s.registration_max_retries,
        forbidden_retry_secs: s.registration_forbidden_retry,
    };
    r.target().map_err(|e| e.to_string())?;
    Ok(r)
}

/// The user of the Contact a trunk registers (its AOR's user): the
/// carrier sends our calls to this user at our address.
fn contact_user_of(s: &TrunkSettings) -> String {
    s.effective_client_uri()
        .trim_start_matches("sip:")
        .split('@')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The trunk outbound calls of the dial plan may use, or why not.
pub fn outbound_of(id: i64, s: &TrunkSettings) -> Result<OutboundTrunk, String> {
    let transport = match s.transport {
        TrunkTransport::Udp => Transport::Udp,
        TrunkTransport::Tcp => Transport::Tcp,
        TrunkTransport::Tls => Transport::Tls,
    };
    Ok(OutboundTrunk {
        id,
        name: s.name.clone(),
        host: host_in_uri(&s.host),
        port: s.port,
        transport,
        auth_username: s.outbound_username.clone().unwrap_or_default(),
        secret: s
            .outbound_secret
            .as_ref()
            .map(|p| p.expose().to_string())
            .unwrap_or_default(),
        realm: s.outbound_realm.clone(),
        from_user: s.from_user.clone(),
        from_domain: s.from_domain.clone(),
        send_pai: s.send_pai,
        max_channels: s.max_channels,
        priority: i32::try_from(s.priority).unwrap_or(i32::MAX),
        active: true,
        registers: s.sends_registration,
        codecs: s.codecs.iter().map(|c| c.as_str().to_string()).collect(),
    })
}

/// How calls from trunk `id` are recognised: by its inbound credentials
/// when it authenticates (`acceptsAuth` with a username and password; the
/// HA1s are computed here for the server's `realm`), else by its sources:
/// the configured `inboundMatch`, or its host at its port.
pub fn inbound_of(id: i64, s: &TrunkSettings, realm: &str) -> InboundTrunkSpec {
    let digest = match (&s.inbound_username, &s.inbound_secret) {
        (Some(user), Some(secret)) if s.accepts_auth && !user.is_empty() => {
            let (md5, sha256) = domain::sip_accounts::ha1_pair(user, realm, secret.expose());
            Some((
                user.clone(),
                vec![sip::core::digest::Ha1 {
                    md5,
                    sha256,
                    expires_at_ms: None,
                }],
            ))
        }
        _ => None,
    };
    let sources = if s.inbound_match.is_empty() {
        // The carrier sends from the address we send to.
        s.effective_inbound_match()
            .into_iter()
            .map(|h| format!("{}:{}", host_in_uri(&h), s.port))
            .collect()
    } else {
        s.inbound_match.clone()
    };
    // The carrier may send calls to the Contact we register.
    let contact_user = s.sends_registration.then(|| contact_user_of(s));
    InboundTrunkSpec {
        id,
        name: s.name.clone(),
        sources,
        digest,
        contact_user,
    }
}

fn host_in_uri(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Reads the trunks and hands them to the SIP server: the ones that
/// register, and all of them for outbound calls; a trunk whose settings
/// cannot be used gets that as its last error.
pub async fn sync(
    services: &Services,
    sip: &SipServer,
    dialplan: &domain::dialplan_settings::DialplanService,
    realm: &str,
) -> anyhow::Result<()> {
    let effective = dialplan.effective().await?;
    let policy = crate::config::policy_of(&effective.settings)?;
    let trunks = services.trunks();
    let mut regs = Vec::new();
    let mut outbound = Vec::new();
    let mut inbound = Vec::new();
    for (id, s) in trunks.active_settings().await? {
        inbound.push(inbound_of(id, &s, realm));
        match outbound_of(id, &s) {
            Ok(t) => outbound.push(t),
            Err(why) => {
                tracing::warn!(trunk = id, name = %s.name, %why, "trunk cannot carry calls");
            }
        }
        if !s.sends_registration {
            continue;
        }
        match registration_of(id, &s) {
            Ok(r) => regs.push(r),
            Err(why) => {
                tracing::warn!(trunk = id, name = %s.name, %why, "trunk cannot register");
                trunks
                    .report_registration_state(id, "failed", false, Some(&why))
                    .await?;
            }
        }
    }
    tracing::info!(
        registering = regs.len(),
        outbound = outbound.len(),
        "trunks handed to the SIP server"
    );
    sip.set_trunk_registrations(regs).await?;
    sip.set_outbound_trunks(outbound, policy.clone()).await?;
    sip.set_inbound(inbound, services.dids().routes().await?)
        .await;
    Ok(())
}

/// Follows trunk changes and registration outcomes until the event
/// streams end (server shutdown).
pub fn spawn(
    services: Services,
    sip: SipServer,
    dialplan: domain::dialplan_settings::DialplanService,
    realm: String,
) {
    let mut changes = services.events.subscribe();
    let mut outcomes = sip.trunk_events();
    let trunks = services.trunks();
    let (svc, server) = (services.clone(), sip.clone());
    tokio::spawn(async move {
        if let Err(e) = sync(&svc, &server, &dialplan, &realm).await {
            tracing::error!(error = %e, "loading the trunks for registration");
        }
        loop {
            match changes.recv().await {
                Ok(Event::Trunk { action, .. })
                    if matches!(action.as_str(), "created" | "updated" | "deleted") =>
                {
                    if let Err(e) = sync(&svc, &server, &dialplan, &realm).await {
                        tracing::error!(error = %e, "reloading the trunks for registration");
                    }
                }
                Ok(Event::Did { .. } | Event::Dialplan { .. }) => {
                    if let Err(e) = sync(&svc, &server, &dialplan, &realm).await {
                        tracing::error!(error = %e, "reloading the trunks for registration");
                    }
                }
                Ok(_) => {}
                // Missed some: read everything again.
                Err(RecvError::Lagged(_)) => {
                    if let Err(e) = sync(&svc, &server, &dialplan, &realm).await {
                        tracing::error!(error = %e, "reloading the trunks for registration");
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    tokio::spawn(async move {
        loop {
            match outcomes.recv().await {
                Ok(e) => report(&trunks, e).await,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "trunk registration events missed");
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
}

/// Writes one registration outcome to the trunk's live state.
async fn report(trunks: &domain::trunks::TrunkService, e: TrunkEvent) {
    let Ok(id) = e.key.parse::<i64>() else {
        return;
    };
    let (state, registered, error) = match &e.kind {
        TrunkEventKind::Registered { .. } => ("registered", true, None),
        TrunkEventKind::Rejected { code, reason, .. } => {
            ("rejected", false, Some(format!("{code} {reason}")))
        }
        TrunkEventKind::Failed { reason, .. } => ("failed", false, Some(reason.clone())),
        TrunkEventKind::Unregistered => ("unregistered", false, None),
    };
    if let Err(err) = trunks
        .report_registration_state(id, state, registered, error.as_deref())
        .await
    {
        tracing::error!(trunk = id, error = %err, "storing a trunk's registration state");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn a_registering_trunk_becomes_a_registration_keyed_by_id() {
        let input = |transport: &str| -> domain::trunks::TrunkInput {
            serde_json::from_value(serde_json::json!({
                "name": "Carrier", "kind": "nat_provider", "host": "127.0.0.1",
                "port": 5070, "transport": transport,
                "outboundAuthUsername": "acct", "outboundAuthPassword": "pw",
            }))
            .expect("a trunk input")
        };
        let s = domain::trunks::resolve(&input("udp"), None).expect("valid");
        assert!(s.sends_registration, "the nat_provider preset registers");
        let r = registration_of(7, &s).expect("registers");
        assert_eq!(r.key, "7");
        assert_eq!(r.registrar, "127.0.0.1:5070");
        assert_eq!(
            (r.auth_username.as_str(), r.secret.as_str()),
            ("acct", "pw")
        );
        assert_eq!(r.transport, Transport::Udp);
        assert_eq!(r.aor, "sip:acct@127.0.0.1");
        let tls = domain::trunks::resolve(&input("tls"), None).expect("valid");
        let r = registration_of(7, &tls).expect("TLS registers");
        assert_eq!(r.transport, Transport::Tls);
        let o = outbound_of(7, &tls).expect("TLS carries calls");
        assert_eq!(o.transport, Transport::Tls);
    }
}
