//! The SIP core's media plane (`sip::core::media::MediaPlane`) over
//! `media::anchor`: a thin translation of names and errors, where a call's
//! recording goes, and the task that hands media events (timeouts,
//! failures, DTMF, quality and recording reports) to the calls.

use crate::config::Config;
use anyhow::Context;
use domain::call_events::{CallEventKind, MediaDirection};
use media::anchor::{self, Anchor, AnchorEvent, AnchorSettings, Customer, Kind, Record, Side};
use media::relay::quality::{DirectionQuality, LegQuality};
use sip::core::media::{
    LegKind, MediaError, MediaEvent, MediaPlane, MediaSide, OpenCall, RecordCustomer,
};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Call-ID of each open media session, for reports that come after the
/// call is gone from the SIP core.
type CallIds = Arc<parking_lot::Mutex<HashMap<u64, String>>>;

/// `media::anchor::Anchor` as the SIP core sees it.
pub struct AnchorPlane {
    anchor: Anchor,
    recording_dir: PathBuf,
    call_ids: CallIds,
}

/// Where a call's recording goes, relative to the recording directory:
/// one folder per day (`YYYY/MM/DD`), the file named after the Call-ID
/// with anything but `[A-Za-z0-9._-]` replaced (a Call-ID is the caller's
/// choice: it must not name a path).
pub fn recording_relative_path(call_id: &str, day: chrono::NaiveDate) -> String {
    let mut name: String = call_id
        .chars()
        .take(120)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with('.') {
        name.insert(0, 'c');
    }
    format!("{}/{name}.wav", day.format("%Y/%m/%d"))
}

fn kind(k: LegKind) -> Kind {
    match k {
        LegKind::WebRtc => Kind::WebRtc,
        LegKind::Plain => Kind::Plain,
    }
}

fn err(e: anchor::AnchorError) -> MediaError {
    MediaError(e.to_string())
}

impl AnchorPlane {
    /// Where the call is recorded, when it is.
    fn record(&self, info: &OpenCall<'_>) -> Option<Record> {
        info.record.map(|customer| {
            let relative = recording_relative_path(info.call_id, chrono::Utc::now().date_naive());
            Record {
                path: self.recording_dir.join(&relative),
                relative,
                customer: match customer {
                    RecordCustomer::Caller => Customer::Caller,
                    RecordCustomer::Callee => Customer::Callee,
                },
            }
        })
    }
}

impl MediaPlane for AnchorPlane {
    fn open(
        &mut self,
        call: u64,
        caller: LegKind,
        offer: &[u8],
        info: &OpenCall<'_>,
    ) -> Result<(), MediaError> {
        let record = self.record(info);
        self.anchor
            .open(call, kind(caller), offer, record)
            .map_err(err)?;
        self.call_ids.lock().insert(call, info.call_id.to_string());
        Ok(())
    }
    fn open_offering(
        &mut self,
        call: u64,
        caller: LegKind,
        info: &OpenCall<'_>,
    ) -> Result<Vec<u8>, MediaError> {
        let record = self.record(info);
        let sdp = self
            .anchor
            .open_offering(call, kind(caller), record)
            .map_err(err)?;
        self.call_ids.lock().insert(call, info.call_id.to_string());
        Ok(sdp.into_bytes())
    }
    fn caller_answer(&mut self, call: u64, answer: &[u8]) -> Result<(), MediaError> {
        self.anchor.accept_caller_answer(call, answer).map_err(err)
    }
    fn offer(&mut self, call: u64, fork: usize, k: LegKind) -> Result<Vec<u8>, MediaError> {
        self.anchor
            .offer(call, fork, kind(k))
            .map(String::into_bytes)
            .map_err(err)
    }
    fn offer_limited(
        &mut self,
        call: u64,
        fork: usize,
        k: LegKind,
        codecs: &[String],
    ) -> Result<Vec<u8>, MediaError> {
        let ours: Vec<media::codec::Codec> = codecs
            .iter()
            .filter_map(|c| match c.as_str() {
                "pcmu" => Some(media::codec::Codec::Pcmu),
                "pcma" => Some(media::codec::Codec::Pcma),
                "opus" => Some(media::codec::Codec::Opus),
                _ => None,
            })
            .collect();
        if ours.is_empty() && !codecs.is_empty() {
            // Only codecs we do not have (g729...): offering ours is the
            // best chance (carriers take G.711).
            tracing::warn!(
                ?codecs,
                "none of the trunk's codecs is one centralita speaks; offering G.711"
            );
        }
        self.anchor
            .offer_limited(call, fork, kind(k), &ours)
            .map(String::into_bytes)
            .map_err(err)
    }
    fn answer(&mut self, call: u64, fork: usize, sdp: &[u8]) -> Result<Vec<u8>, MediaError> {
        self.anchor
            .answer(call, fork, sdp)
            .map(String::into_bytes)
            .map_err(err)
    }
    fn reoffer(&mut self, call: u64, side: MediaSide, offer: &[u8]) -> Result<Vec<u8>, MediaError> {
        let side = match side {
            MediaSide::Caller => Side::Caller,
            MediaSide::Fork(i) => Side::Fork(i),
        };
        self.anchor
            .reoffer(call, side, offer)
            .map(String::into_bytes)
            .map_err(err)
    }
    fn offer_again(&mut self, call: u64, side: MediaSide) -> Result<Vec<u8>, MediaError> {
        let side = match side {
            MediaSide::Caller => Side::Caller,
            MediaSide::Fork(i) => Side::Fork(i),
        };
        self.anchor
            .offer_again(call, side)
            .map(String::into_bytes)
            .map_err(err)
    }
    fn ack_answer(&mut self, call: u64, side: MediaSide, answer: &[u8]) -> Result<(), MediaError> {
        let side = match side {
            MediaSide::Caller => Side::Caller,
            MediaSide::Fork(i) => Side::Fork(i),
        };
        self.anchor.ack_answer(call, side, answer).map_err(err)
    }
    fn dtmf(&mut self, call: u64, from: MediaSide, content_type: &str, body: &[u8]) -> bool {
        let from = match from {
            MediaSide::Caller => Side::Caller,
            MediaSide::Fork(i) => Side::Fork(i),
        };
        match self.anchor.dtmf(call, from, content_type, body) {
            Ok(taken) => taken,
            Err(e) => {
                tracing::debug!(error = %e, "DTMF INFO not converted; relayed");
                false
            }
        }
    }
    fn close_fork(&mut self, call: u64, fork: usize) {
        self.anchor.close_fork(call, fork);
    }
    fn close(&mut self, call: u64) {
        self.anchor.close(call);
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

fn quality_events(legs: &[(u32, LegQuality)]) -> Vec<CallEventKind> {
    let one = |leg: u32, direction, codec: &str, q: &DirectionQuality| CallEventKind::Quality {
        leg,
        direction,
        packets: q.packets,
        lost: q.lost,
        jitter_ms: q.jitter_ms as f32,
        rtt_ms: q.rtt.map(|d| d.as_secs_f32() * 1000.0),
        mos: q.mos as f32,
        codec: codec.to_string(),
    };
    let mut out = Vec::new();
    for (leg, q) in legs {
        let codec = q.codec.sdp_name();
        if let Some(i) = &q.inbound {
            out.push(one(*leg, MediaDirection::Inbound, codec, i));
        }
        if let Some(o) = &q.outbound {
            out.push(one(*leg, MediaDirection::Outbound, codec, o));
        }
    }
    out
}

/// A media event as the SIP core takes it (`None`: nothing for it).
fn media_event(e: AnchorEvent, call_ids: &CallIds) -> Option<MediaEvent> {
    Some(match e {
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
        AnchorEvent::Quality { call, legs, last } => {
            // A recorded call's recording report comes after this one.
            let call_id = if last {
                call_ids.lock().remove(&call)?
            } else {
                call_ids.lock().get(&call).cloned()?
            };
            MediaEvent::Report {
                call_id,
                kinds: quality_events(&legs),
            }
        }
        AnchorEvent::Recording { call, report } => MediaEvent::Report {
            call_id: call_ids.lock().remove(&call)?,
            kinds: vec![report.map(|report| CallEventKind::Recording {
                path: report.relative,
                bytes: report.bytes,
                duration_ms: report.duration.as_millis().min(u128::from(u64::MAX)) as u64,
                dropped_frames: report.dropped_frames,
            })?],
        },
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
    let call_ids = CallIds::default();
    let plane = AnchorPlane {
        anchor: plane,
        recording_dir: crate::recording_dir(cfg),
        call_ids: call_ids.clone(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            let Some(e) = media_event(e, &call_ids) else {
                continue;
            };
            if tx.send(e).await.is_err() {
                break;
            }
        }
    });
    server.set_media_plane(Box::new(plane), rx);
    tracing::info!(
        anchor = %cfg.media.anchor,
        advertised = %settings.advertised,
        ports = %cfg.media.port_range,
        "media anchoring on"
    );
    Ok(())
}
