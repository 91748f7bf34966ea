//! WebRTC settings for softphones: STUN/TURN servers and the WebSocket URL.
//! Nothing is configured by default, so no traffic leaves the machine.

use std::sync::Arc;

use serde::Serialize;
use store::webrtc::WebrtcRow;

use crate::time::now_ms;
use crate::{audit, validate, Actor, Ctx, DomainError};

/// The stored settings (the TURN password is included: callers decide
/// whether to show it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebrtcSettings {
    pub stun_server: Option<String>,
    pub turn_server: Option<String>,
    pub turn_username: Option<String>,
    pub turn_password: Option<String>,
    /// The WebSocket URL configured in the console, if any.
    pub ws_url: Option<String>,
    /// The URL derived from the HTTP listen address, for callers that
    /// cannot derive a better one from the request's Host.
    pub default_ws_url: String,
}

/// One entry of RTCPeerConnection's `iceServers`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl WebrtcSettings {
    pub fn ice_servers(&self) -> Vec<IceServer> {
        let mut v = Vec::new();
        if let Some(s) = &self.stun_server {
            v.push(IceServer {
                urls: vec![s.clone()],
                username: None,
                credential: None,
            });
        }
        if let Some(t) = &self.turn_server {
            v.push(IceServer {
                urls: vec![t.clone()],
                username: self.turn_username.clone(),
                credential: self.turn_password.clone(),
            });
        }
        v
    }
}

/// Changes: `None` keeps, `Some(None)` (or an empty string) clears.
#[derive(Debug, Clone, Default)]
pub struct WebrtcUpdate {
    pub stun_server: Option<Option<String>>,
    pub turn_server: Option<Option<String>>,
    pub turn_username: Option<Option<String>>,
    pub turn_password: Option<Option<String>>,
    pub ws_url: Option<Option<String>>,
}

fn check_url(
    field: &'static str,
    v: Option<String>,
    schemes: &[&str],
) -> Result<Option<String>, DomainError> {
    let v = validate::optional(field, v.as_deref(), 500)?;
    if let Some(u) = &v {
        let lower = u.to_ascii_lowercase();
        if !schemes.iter().any(|s| lower.starts_with(s)) || u.contains(char::is_whitespace) {
            return Err(DomainError::invalid(
                field,
                format!("must start with {}", schemes.join(" or ")),
            ));
        }
    }
    Ok(v)
}

#[derive(Clone, Debug)]
pub struct WebrtcService {
    ctx: Arc<Ctx>,
}

impl WebrtcService {
    pub(crate) fn new(ctx: Arc<Ctx>) -> Self {
        Self { ctx }
    }

    pub async fn get(&self) -> Result<WebrtcSettings, DomainError> {
        let mut c = self.ctx.db.conn().await?;
        let r = store::webrtc::get(&mut c).await?;
        Ok(self.settings_of(r))
    }

    fn settings_of(&self, r: WebrtcRow) -> WebrtcSettings {
        WebrtcSettings {
            stun_server: r.stun_server,
            turn_server: r.turn_server,
            turn_username: r.turn_username,
            turn_password: r.turn_password,
            ws_url: r.ws_url,
            default_ws_url: self.ctx.cfg.default_ws_url.clone(),
        }
    }

    pub async fn update(
        &self,
        actor: &Actor,
        u: WebrtcUpdate,
    ) -> Result<WebrtcSettings, DomainError> {
        let mut tx = self.ctx.db.write().await?;
        let mut row = store::webrtc::get(&mut tx).await?;
        let mut fields = Vec::new();
        if let Some(v) = u.stun_server {
            row.stun_server = check_url("stunServer", v, &["stun:", "stuns:"])?;
            fields.push("stunServer");
        }
        if let Some(v) = u.turn_server {
            row.turn_server = check_url("turnServer", v, &["turn:", "turns:"])?;
            fields.push("turnServer");
        }
        if let Some(v) = u.turn_username {
            row.turn_username = validate::optional("turnUsername", v.as_deref(), 128)?;
            fields.push("turnUsername");
        }
        if let Some(v) = u.turn_password {
            row.turn_password = validate::optional("turnPassword", v.as_deref(), 128)?;
            fields.push("turnPassword");
        }
        if let Some(v) = u.ws_url {
            row.ws_url = check_url("wsUrl", v, &["ws://", "wss://"])?;
            fields.push("wsUrl");
        }
        store::webrtc::put(&mut tx, &row, now_ms()).await?;
        audit::record(
            &mut tx,
            actor,
            "webrtc.update",
            "webrtc_settings",
            "1",
            serde_json::json!({"fields": fields}),
        )
        .await?;
        tx.commit().await?;
        Ok(self.settings_of(row))
    }
}
