//! The SIP core's media plane (`sip::core::media::MediaPlane`) over
//! `media::anchor`: a thin translation of names and errors, plus the task
//! that hands media events (timeouts, failures) to the calls.

use crate::config::Config;
use anyhow::Context;
use media::anchor::{self, Anchor, AnchorEvent, AnchorSettings, Kind, Side};
use sip::core::media::{LegKind, MediaError, MediaEvent, MediaPlane, MediaSide};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// `media::anchor::Anchor` as the SIP core sees it.
pub struct AnchorPlane(pub Anchor);

fn kind(k: LegKind) -> Kind {
    match k {
        LegKind::WebRtc => Kind::WebRtc,
        LegKind::Plain => Kind::Plain,
    }
}

fn err(e: anchor::AnchorError) -> MediaError {
    MediaError(e.to_string())
}

impl MediaPlane for AnchorPlane {
    fn open(&mut self, call: u64, caller: LegKind, offer: &[u8]) -> Result<(), MediaError> {
        self.0.open(call, kind(caller), offer).map_err(err)
    }
    fn offer(&mut self, call: u64, fork: usize, k: LegKind) -> Result<Vec<u8>, MediaError> {
        self.0
            .offer(call, fork, kind(k))
            .map(String::into_bytes)
            .map_err(err)
    }
    fn answer(&mut self, call: u64, fork: usize, sdp: &[u8]) -> Result<Vec<u8>, MediaError> {
        self.0
            .answer(call, fork, sdp)
            .map(String::into_bytes)
            .map_err(err)
    }
    fn reoffer(&mut self, call: u64, side: MediaSide, offer: &[u8]) -> Result<Vec<u8>, MediaError> {
        let side = match side {
            MediaSide::Caller => Side::Caller,
            MediaSide::Fork(i) => Side::Fork(i),
        };
        self.0
            .reoffer(call, side, offer)
            .map(String::into_bytes)
            .map_err(err)
    }
    fn dtmf(&mut self, call: u64, from: MediaSide, content_type: &str, body: &[u8]) -> bool {
        let from = match from {
            MediaSide::Caller => Side::Caller,
            MediaSide::Fork(i) => Side::Fork(i),
        };
        match self.0.dtmf(call, from, content_type, body) {
            Ok(taken) => taken,
            Err(e) => {
                tracing::debug!(error = %e, "DTMF INFO not converted; relayed");
                false
            }
        }
    }
    fn close_fork(&mut self, call: u64, fork: usize) {
        self.0.close_fork(call, fork);
    }
    fn close(&mut self, call: u64) {
        self.0.close(call);
    }
}

/// The address our SDP announces: `media.advertised_address`, else the SIP
/// advertised host when it is an IP address, else the SIP listen address
/// (127.0.0.1 for a wildcard: never 0.0.0.0, which nobody can send to).
pub fn advertised_address(cfg: &Config) -> anyhow::Result<IpAddr> {
    if let Some(a) = &cfg.media.advertised_address {
        return a
            .trim()
            .parse()
            .with_context(|| format!("media.advertised_address {a:?}"));
    }
    if let Some(ip) = cfg
        .sip
        .advertised_host
        .as_deref()
        .and_then(|h| h.trim_matches(['[', ']']).parse::<IpAddr>().ok())
    {
        return Ok(ip);
    }
    let listen: SocketAddr = cfg.sip.listen.parse().context("sip.listen")?;
    Ok(if listen.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        listen.ip()
    })
}

/// Starts the media threads and plugs them into the SIP server.
pub fn attach(cfg: &Config, server: &sip::SipServer) -> anyhow::Result<()> {
    let listen: SocketAddr = cfg.sip.listen.parse().context("sip.listen")?;
    let settings = AnchorSettings {
        bind: listen.ip(),
        advertised: advertised_address(cfg)?,
        port_range: cfg.media.ports()?,
        rtp_timeout: Duration::from_secs(u64::from(cfg.media.rtp_timeout_secs.max(1))),
    };
    let (plane, mut events) = anchor::start(&settings).context("starting the media plane")?;
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            let e = match e {
                AnchorEvent::Timeout { call } => MediaEvent::Timeout { call },
                AnchorEvent::Failed { call } => MediaEvent::Failed { call },
                AnchorEvent::Dtmf {
                    call,
                    from_caller,
                    digit,
                    duration,
                } => MediaEvent::Dtmf {
                    call,
                    from: if from_caller {
                        MediaSide::Caller
                    } else {
                        MediaSide::Fork(0)
                    },
                    digit,
                    duration_ms: duration.as_millis().min(u128::from(u32::MAX)) as u32,
                },
            };
            if tx.send(e).await.is_err() {
                break;
            }
        }
    });
    server.set_media_plane(Box::new(AnchorPlane(plane)), rx);
    tracing::info!(
        anchor = %cfg.media.anchor,
        advertised = %settings.advertised,
        ports = %cfg.media.port_range,
        "media anchoring on"
    );
    Ok(())
}
