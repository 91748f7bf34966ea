//! Anchored calls: the media plane the SIP B2BUA asks for SDP.
//!
//! One relay session per call (`shell`): leg A is the caller, leg B the
//! callee. Everything here runs on the caller's thread (the SIP core's)
//! and never waits for the media thread: the ports are bound here
//! ([`RelayHandle::open_session`]), SDP is built here (plain RTP/AVP with
//! `core::sdp`, WebRTC with str0m's `accept_offer`/`create_offer` on a
//! [`WebRtcLeg`] that is then handed to the media thread), and the media
//! thread only receives commands.
//!
//! What is decided where:
//! - whether a call is anchored: the SIP side (`domain::media::anchors`);
//! - codecs: the caller's offer fixes the candidates (its PCMU, PCMA and
//!   opus, in its order); each fork is offered those its kind can take,
//!   then the others we can transcode to ([`fork_codecs`]). When the fork
//!   answers a codec the caller offered, our answer gives the caller that
//!   codec: both legs use it and the relay only maps payload-type numbers
//!   (the common case, never decoded). Otherwise the caller gets one of its
//!   codecs that transcodes to and from the fork's ([`caller_codec`]: its
//!   other G.711 law first, else its first) and the relay transcodes. Only a caller offering none of PCMU, PCMA and opus
//!   is refused ([`AnchorError::NoCodec`]);
//! - the caller's answer is built once, at the first SDP answer of a fork
//!   (183 or 200), and repeated, so 183 and 200 carry the same SDP;
//! - plain forks share leg B's port (one offer per call); a WebRTC fork gets
//!   its own str0m leg on that port, and only the winner's is installed.

use crate::codec::Codec;
use crate::core::dtmf::info;
use crate::core::sdp::{self, LocalAudio, LocalSdp, SessionDescription};
use crate::relay::quality::LegQuality;
use crate::relay::{Direction, LegId, LegParams, RelayConfig};
use crate::shell::{
    self, RecordSpec, RecordingReport, RelayHandle, SessionId, SessionInfo, ShellConfig, ShellEvent,
};
use crate::webrtc::{LegOptions, WebRtcConfig, WebRtcLeg, WebRtcSettings};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a leg speaks (the SIP side decides it from SDP and transport).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    WebRtc,
    Plain,
}

/// A leg of an anchored call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Caller,
    Fork(usize),
}

#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("media: {0}")]
    Shell(#[from] shell::ShellError),
    #[error("WebRTC: {0}")]
    WebRtc(#[from] crate::webrtc::WebRtcError),
    #[error("SDP: {0}")]
    Sdp(String),
    #[error("no usable codec: {0}")]
    NoCodec(String),
    #[error("no media session for call {0}")]
    NoCall(u64),
    #[error("{0}")]
    Unsupported(&'static str),
}

/// `[media]` as the plane needs it.
#[derive(Debug, Clone)]
pub struct AnchorSettings {
    /// Address the RTP sockets bind to.
    pub bind: IpAddr,
    /// Address our SDP announces (and the WebRTC host candidate); never
    /// unspecified.
    pub advertised: IpAddr,
    pub port_range: RangeInclusive<u16>,
    pub rtp_timeout: Duration,
}

/// Whose voice goes on channel 0 (the customer) of a call's recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Customer {
    Caller,
    Callee,
}

/// A call to record: where, and who the customer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The file (`recording_dir` joined with `relative`).
    pub path: PathBuf,
    /// The path stored with the call, relative to the recording directory.
    pub relative: String,
    pub customer: Customer,
}

/// A leg's number in the call's record: 0 the caller, `n + 1` fork `n`.
pub type LegNumber = u32;

/// What the media plane reports about a call.
#[derive(Debug, Clone, PartialEq)]
pub enum AnchorEvent {
    Timeout {
        call: u64,
    },
    Failed {
        call: u64,
    },
    /// RFC 4733 digit from a plain leg, for the browser on the other leg.
    Dtmf {
        call: u64,
        /// The digit came from the caller's leg (else from the callee's).
        from_caller: bool,
        digit: char,
        duration: Duration,
    },
    /// The call's media is closed: quality per leg over the whole call.
    /// `last`: no report of this call follows (it was not recorded).
    Quality {
        call: u64,
        legs: Vec<(LegNumber, LegQuality)>,
        last: bool,
    },
    /// The call's recording is complete (`None`: nothing could be
    /// recorded); always the call's last report.
    Recording {
        call: u64,
        report: Option<RecordingReport>,
    },
}

/// What the event side knows of a session (kept after the call closes its
/// media, until the last report of the session is out).
#[derive(Debug, Clone, Copy)]
struct SessionCall {
    call: u64,
    /// The leg number of the callee's (winning) leg.
    callee_leg: LegNumber,
    recorded: bool,
}

type Sessions = Arc<Mutex<HashMap<SessionId, SessionCall>>>;

/// The event side: shell events translated to calls.
pub struct AnchorEvents {
    rx: tokio::sync::mpsc::Receiver<ShellEvent>,
    sessions: Sessions,
}

impl AnchorEvents {
    /// The next event for a call; `None` when the plane stopped.
    pub async fn recv(&mut self) -> Option<AnchorEvent> {
        loop {
            let ev = self.rx.recv().await?;
            if let Some(e) = self.translate(ev) {
                return Some(e);
            }
        }
    }

    fn translate(&mut self, ev: ShellEvent) -> Option<AnchorEvent> {
        let session = match &ev {
            ShellEvent::Media { session, .. }
            | ShellEvent::Failed { session }
            | ShellEvent::Dtmf { session, .. }
            | ShellEvent::Closed { session, .. }
            | ShellEvent::Recorded { session, .. } => *session,
        };
        let mut sessions = self.sessions.lock();
        let s = *sessions.get(&session)?;
        let call = s.call;
        Some(match ev {
            ShellEvent::Media {
                event: crate::relay::Event::MediaTimeout { .. },
                ..
            } => AnchorEvent::Timeout { call },
            ShellEvent::Media { .. } => return None,
            ShellEvent::Failed { .. } => AnchorEvent::Failed { call },
            ShellEvent::Dtmf {
                leg,
                digit,
                duration,
                ..
            } => AnchorEvent::Dtmf {
                call,
                from_caller: leg == LegId::A,
                digit,
                duration,
            },
            ShellEvent::Closed { quality, .. } => {
                if !s.recorded {
                    sessions.remove(&session);
                }
                let [a, b] = *quality;
                let legs = [(0, a), (s.callee_leg, b)]
                    .into_iter()
                    .filter_map(|(n, q)| Some((n, q?)))
                    .collect();
                AnchorEvent::Quality {
                    call,
                    legs,
                    last: !s.recorded,
                }
            }
            ShellEvent::Recorded { report, .. } => {
                sessions.remove(&session);
                AnchorEvent::Recording {
                    call,
                    report: report.map(|r| *r),
                }
            }
        })
    }
}

/// One side's SDP state on a plain leg.
struct PlainLeg {
    local: LocalSdp,
    /// The last SDP we sent on this leg (answer or offer).
    last: String,
    /// Codec and payload types in use on the leg.
    codec: Option<Codec>,
    /// Our offer of a re-INVITE without SDP, until the ACK answers it.
    pending: Option<Box<SessionDescription>>,
}

enum ForkMedia {
    Plain {
        leg: Box<PlainLeg>,
        offer: Box<SessionDescription>,
    },
    /// Our offer's leg, until the fork answers (then it goes to the media thread).
    WebRtc {
        leg: Option<Box<WebRtcLeg>>,
        codecs: Vec<Codec>,
    },
}

struct CallMedia {
    session: SessionInfo,
    caller_kind: Kind,
    caller_offer: String,
    /// Codecs the caller offered that we can relay or transcode (PCMU,
    /// PCMA, opus), in its order.
    caller_codecs: Vec<Codec>,
    caller_plain: Option<PlainLeg>,
    /// Our offer to an originated call's caller, until it answers
    /// ([`Anchor::open_offering`]).
    caller_pending: Option<ForkMedia>,
    caller_answer: Option<String>,
    forks: HashMap<usize, ForkMedia>,
    winner: Option<usize>,
    /// Per relay leg: a browser's re-INVITE without SDP got our offer,
    /// its ACK brings the answer.
    offered_again: [bool; 2],
}

impl CallMedia {
    /// The relay leg of `side` when it is a browser's (its str0m leg runs
    /// on the media thread).
    fn webrtc_leg(&self, side: Side) -> Option<LegId> {
        match side {
            Side::Caller if self.caller_kind == Kind::WebRtc => Some(LegId::A),
            Side::Fork(i) if matches!(self.forks.get(&i), Some(ForkMedia::WebRtc { .. })) => {
                Some(LegId::B)
            }
            _ => None,
        }
    }

    /// The plain leg of `side`, with its relay leg and our port.
    fn plain_leg(&mut self, side: Side) -> Option<(&mut PlainLeg, LegId, u16)> {
        match side {
            Side::Caller => {
                let port = self.session.ports[0];
                self.caller_plain.as_mut().map(|l| (l, LegId::A, port))
            }
            Side::Fork(i) => {
                let port = self.session.ports[1];
                match self.forks.get_mut(&i) {
                    Some(ForkMedia::Plain { leg, .. }) => Some((&mut **leg, LegId::B, port)),
                    _ => None,
                }
            }
        }
    }
}

/// The production media plane.
pub struct Anchor {
    relay: RelayHandle,
    webrtc: WebRtcConfig,
    advertised: IpAddr,
    calls: HashMap<u64, CallMedia>,
    sessions: Sessions,
}

/// Starts the media threads.
pub fn start(settings: &AnchorSettings) -> Result<(Anchor, AnchorEvents), AnchorError> {
    if settings.advertised.is_unspecified() {
        return Err(AnchorError::Unsupported(
            "the advertised media address cannot be 0.0.0.0 or ::",
        ));
    }
    let (relay, rx) = shell::start(ShellConfig {
        bind: settings.bind,
        port_range: settings.port_range.clone(),
        relay: RelayConfig {
            rtp_timeout: settings.rtp_timeout,
            ..RelayConfig::default()
        },
        ..ShellConfig::default()
    })?;
    let webrtc = WebRtcConfig::new(&WebRtcSettings {
        addresses: vec![settings.advertised],
        ..WebRtcSettings::default()
    })?;
    let sessions = Sessions::default();
    Ok((
        Anchor {
            relay,
            webrtc,
            advertised: settings.advertised,
            calls: HashMap::new(),
            sessions: sessions.clone(),
        },
        AnchorEvents { rx, sessions },
    ))
}

/// The speech codecs the relay can pass through or transcode.
const AUDIO: [Codec; 3] = [Codec::Pcmu, Codec::Pcma, Codec::Opus];

/// Whether `core::transcode` converts between `a` and `b` (opus ↔ G.711,
/// PCMU ↔ PCMA); a codec and itself pass through instead.
pub fn transcodable(a: Codec, b: Codec) -> bool {
    a != b && AUDIO.contains(&a) && AUDIO.contains(&b)
}

/// What we offer a fork of `kind` when the caller offered `caller` (in
/// its order): the caller's codecs first, so a fork that can take one of
/// them answers it and nothing is transcoded; then the codecs the fork's
/// kind may prefer that we can transcode from the caller's. A plain fork
/// gets both G.711 laws (every phone and carrier has one; opus only when
/// the caller offered it, on RTP/AVP, as linphone does); a browser fork
/// also gets opus, which every browser has.
pub fn fork_codecs(caller: &[Codec], kind: Kind) -> Vec<Codec> {
    let mut codecs: Vec<Codec> = caller
        .iter()
        .copied()
        .filter(|c| AUDIO.contains(c))
        .collect();
    let others: &[Codec] = match kind {
        Kind::Plain => &[Codec::Pcmu, Codec::Pcma],
        Kind::WebRtc => &AUDIO,
    };
    for &c in others {
        if !codecs.contains(&c) && caller.iter().any(|k| transcodable(*k, c)) {
            codecs.push(c);
        }
    }
    codecs
}

/// The codec our answer gives the caller when the fork answered `fork`:
/// `fork` itself if the caller offered it (passed through), else the
/// caller's first codec the relay can transcode to and from `fork` —
/// toward a G.711 fork the caller's other law before its opus: PCMU ↔
/// PCMA costs under 0.5 µs a frame and loses nothing, opus ↔ G.711 about
/// 58 µs a frame both ways and gains nothing over an 8 kHz leg.
pub fn caller_codec(caller: &[Codec], fork: Codec) -> Option<Codec> {
    if caller.contains(&fork) {
        return Some(fork);
    }
    let g711 = |c: &Codec| matches!(c, Codec::Pcmu | Codec::Pcma);
    let cheap = g711(&fork)
        .then(|| caller.iter().copied().find(|c| g711(c)))
        .flatten();
    cheap.or_else(|| caller.iter().copied().find(|c| transcodable(*c, fork)))
}

fn text(sdp: &[u8]) -> Result<&str, AnchorError> {
    std::str::from_utf8(sdp).map_err(|_| AnchorError::Sdp("not UTF-8".into()))
}

fn parse(sdp: &[u8]) -> Result<SessionDescription, AnchorError> {
    SessionDescription::parse(text(sdp)?).map_err(|e| AnchorError::Sdp(e.to_string()))
}

fn relay_direction(d: sdp::Direction) -> Direction {
    match d {
        sdp::Direction::SendRecv => Direction::SendRecv,
        sdp::Direction::SendOnly => Direction::SendOnly,
        sdp::Direction::RecvOnly => Direction::RecvOnly,
        sdp::Direction::Inactive => Direction::Inactive,
    }
}

/// Relay parameters of a plain leg from what was negotiated on it.
fn plain_params(n: &sdp::NegotiatedAudio) -> LegParams {
    let mut codecs = vec![(n.payload_type, n.codec)];
    if let Some(pt) = n.telephone_event {
        codecs.push((
            pt,
            Codec::TelephoneEvent {
                clock_rate: n.codec.clock_rate(),
            },
        ));
    }
    LegParams {
        remote_rtp: n.remote.rtp,
        remote_rtcp: n.remote.rtcp,
        codecs,
        direction: relay_direction(n.remote.direction),
    }
}

/// Our offer on `port` toward a leg of `kind` with `codecs`, and the
/// leg's state until its answer.
fn offer_leg(
    webrtc: &WebRtcConfig,
    advertised: IpAddr,
    port: u16,
    kind: Kind,
    codecs: Vec<Codec>,
) -> Result<(ForkMedia, String), AnchorError> {
    Ok(match kind {
        Kind::Plain => {
            let mut leg = PlainLeg {
                local: LocalSdp::new(u64::from(rand::random::<u32>()), advertised),
                last: String::new(),
                codec: None,
                pending: None,
            };
            let offer = leg.local.offer(&LocalAudio {
                codecs,
                ..LocalAudio::g711(advertised, port)
            });
            leg.last = offer.to_string();
            let sdp = leg.last.clone();
            (
                ForkMedia::Plain {
                    leg: Box::new(leg),
                    offer: Box::new(offer),
                },
                sdp,
            )
        }
        Kind::WebRtc => {
            let mut leg = WebRtcLeg::new(
                webrtc,
                Instant::now(),
                &LegOptions {
                    port,
                    codecs: codecs.clone(),
                },
            )?;
            let sdp = leg.create_offer()?;
            (
                ForkMedia::WebRtc {
                    leg: Some(Box::new(leg)),
                    codecs,
                },
                sdp,
            )
        }
    })
}

/// The answer to our offer of [`offer_leg`]: relay leg `relay_leg` of
/// session `id` follows it. The codec chosen, or `None` when a browser's
/// leg was installed already (a repeated answer: 183, then 200).
fn accept_leg_answer(
    relay: &RelayHandle,
    id: SessionId,
    relay_leg: LegId,
    media: &mut ForkMedia,
    answer: &[u8],
) -> Result<Option<Codec>, AnchorError> {
    Ok(Some(match media {
        ForkMedia::Plain { leg, offer } => {
            let parsed = parse(answer)?;
            let n = sdp::read_answer(offer, &parsed)
                .ok_or(AnchorError::NoCodec("the callee rejected audio".into()))?;
            relay.set_leg(id, relay_leg, plain_params(&n))?;
            leg.codec = Some(n.codec);
            n.codec
        }
        ForkMedia::WebRtc { leg, codecs } => {
            let Some(mut l) = leg.take() else {
                return Ok(None);
            };
            l.accept_answer(text(answer)?)?;
            let chosen = codecs
                .iter()
                .copied()
                .find(|k| l.payload_type_for(*k).is_some())
                .ok_or(AnchorError::NoCodec("the browser accepted none".into()))?;
            relay.set_webrtc(id, relay_leg, l)?;
            chosen
        }
    }))
}

impl Anchor {
    pub fn open_calls(&self) -> usize {
        self.calls.len()
    }

    fn call(&mut self, call: u64) -> Result<&mut CallMedia, AnchorError> {
        self.calls.get_mut(&call).ok_or(AnchorError::NoCall(call))
    }

    /// The caller's offer: a session with both legs' ports.
    pub fn open(
        &mut self,
        call: u64,
        kind: Kind,
        offer: &[u8],
        record: Option<Record>,
    ) -> Result<(), AnchorError> {
        let parsed = parse(offer)?;
        let audio = match kind {
            Kind::Plain => parsed.plain_audio(),
            Kind::WebRtc => parsed.audio(),
        }
        .ok_or(AnchorError::Sdp("no audio stream in the offer".into()))?;
        let mut caller_codecs: Vec<Codec> = Vec::new();
        // Opus from a plain caller too: linphone offers opus/48000/2 on
        // RTP/AVP, and it passes through to a browser or is transcoded.
        for c in audio.formats.iter().filter_map(|f| f.codec) {
            if AUDIO.contains(&c) && !caller_codecs.contains(&c) {
                caller_codecs.push(c);
            }
        }
        if caller_codecs.is_empty() {
            return Err(AnchorError::NoCodec(
                "the caller offers none of PCMU, PCMA, opus".into(),
            ));
        }
        let session = self.start_session(call, record)?;
        let caller_plain = (kind == Kind::Plain).then(|| PlainLeg {
            local: LocalSdp::new(u64::from(rand::random::<u32>()), self.advertised),
            last: String::new(),
            codec: None,
            pending: None,
        });
        self.calls.insert(
            call,
            CallMedia {
                session,
                caller_kind: kind,
                caller_offer: text(offer)?.to_string(),
                caller_codecs,
                caller_plain,
                caller_pending: None,
                caller_answer: None,
                forks: HashMap::new(),
                winner: None,
                offered_again: [false; 2],
            },
        );
        Ok(())
    }

    /// A session for call `call`, recording when `record` says so.
    fn start_session(
        &mut self,
        call: u64,
        record: Option<Record>,
    ) -> Result<SessionInfo, AnchorError> {
        let session = self.relay.open_session()?;
        self.sessions.lock().insert(
            session.id,
            SessionCall {
                call,
                callee_leg: 1,
                recorded: record.is_some(),
            },
        );
        if let Some(r) = record {
            let spec = RecordSpec {
                path: r.path,
                relative: r.relative,
                customer: match r.customer {
                    Customer::Caller => LegId::A,
                    Customer::Callee => LegId::B,
                },
            };
            if let Err(e) = self.relay.record(session.id, spec) {
                self.sessions.lock().remove(&session.id);
                self.relay.close_session(session.id);
                return Err(e.into());
            }
        }
        Ok(session)
    }

    /// An originated call (click-to-call): the session opens with *our*
    /// offer toward the caller (the agent, rung first), since a stock
    /// browser softphone answers an INVITE without SDP with an offer that
    /// has no audio. The agent's answer comes to
    /// [`Anchor::accept_caller_answer`]; forks are then offered and
    /// answered as usual, and the caller is never answered again.
    pub fn open_offering(
        &mut self,
        call: u64,
        kind: Kind,
        record: Option<Record>,
    ) -> Result<String, AnchorError> {
        let session = self.start_session(call, record)?;
        // G.711 first: the customer behind a trunk speaks it, and a browser
        // answering PCMU then needs no transcoding at all.
        let codecs = vec![Codec::Pcmu, Codec::Pcma, Codec::Opus];
        let made = offer_leg(
            &self.webrtc,
            self.advertised,
            session.ports[0],
            kind,
            codecs,
        );
        let (media, sdp) = match made {
            Ok(m) => m,
            Err(e) => {
                self.sessions.lock().remove(&session.id);
                self.relay.close_session(session.id);
                return Err(e);
            }
        };
        self.calls.insert(
            call,
            CallMedia {
                session,
                caller_kind: kind,
                caller_offer: String::new(),
                caller_codecs: Vec::new(),
                caller_plain: None,
                caller_pending: Some(media),
                caller_answer: None,
                forks: HashMap::new(),
                winner: None,
                offered_again: [false; 2],
            },
        );
        Ok(sdp)
    }

    /// The agent's answer to [`Anchor::open_offering`]'s offer: its leg
    /// is installed, and the codec it chose is what forks are offered
    /// first (passed through when they take it, transcoded otherwise).
    pub fn accept_caller_answer(&mut self, call: u64, answer: &[u8]) -> Result<(), AnchorError> {
        let relay = self.relay.clone();
        let c = self.call(call)?;
        let mut media = c
            .caller_pending
            .take()
            .ok_or(AnchorError::Unsupported("no offer was made to the caller"))?;
        let codec = accept_leg_answer(&relay, c.session.id, LegId::A, &mut media, answer)?
            .ok_or(AnchorError::Unsupported("the caller's answer came twice"))?;
        if let ForkMedia::Plain { leg, .. } = media {
            c.caller_plain = Some(*leg);
        }
        c.caller_codecs = vec![codec];
        for other in AUDIO {
            if other != codec {
                c.caller_codecs.push(other);
            }
        }
        // Forks' answers do not answer the caller again.
        c.caller_answer = Some(String::new());
        Ok(())
    }

    /// Our offer toward fork `fork` (leg B's port).
    pub fn offer(&mut self, call: u64, fork: usize, kind: Kind) -> Result<String, AnchorError> {
        self.offer_limited(call, fork, kind, &[])
    }

    /// [`Anchor::offer`] with only the codecs of `allowed` (a trunk's
    /// list), when it is not empty.
    pub fn offer_limited(
        &mut self,
        call: u64,
        fork: usize,
        kind: Kind,
        allowed: &[Codec],
    ) -> Result<String, AnchorError> {
        let (advertised, webrtc) = (self.advertised, self.webrtc.clone());
        let c = self.call(call)?;
        let port = c.session.ports[1];
        let mut codecs = fork_codecs(&c.caller_codecs, kind);
        if !allowed.is_empty() {
            codecs.retain(|k| allowed.contains(k));
        }
        if codecs.is_empty() {
            return Err(AnchorError::NoCodec("nothing to offer the callee".into()));
        }
        let (media, sdp) = offer_leg(&webrtc, advertised, port, kind, codecs)?;
        c.forks.insert(fork, media);
        Ok(sdp)
    }

    /// Fork `fork` answered (183 or 2xx): leg B follows its answer; the
    /// caller's answer (built once) is returned. It gives the caller the
    /// fork's codec when the caller offered it, else the caller's first
    /// codec the relay transcodes to and from it. A later answer from
    /// another fork may pick another codec: leg B follows it and the relay
    /// transcodes between the two.
    pub fn answer(&mut self, call: u64, fork: usize, answer: &[u8]) -> Result<String, AnchorError> {
        let relay = self.relay.clone();
        let webrtc = self.webrtc.clone();
        let advertised = self.advertised;
        let c = self.call(call)?;
        let id = c.session.id;
        let media = c
            .forks
            .get_mut(&fork)
            .ok_or_else(|| AnchorError::Sdp(format!("no offer was made to fork {fork}")))?;
        let Some(codec) = accept_leg_answer(&relay, id, LegId::B, media, answer)? else {
            // A repeated answer (183 then 200): already installed.
            return c
                .caller_answer
                .clone()
                .ok_or(AnchorError::Sdp("no answer yet".into()));
        };
        c.winner = Some(fork);
        if let Some(s) = self.sessions.lock().get_mut(&id) {
            s.callee_leg = fork as LegNumber + 1;
        }
        let c = self.call(call)?;
        if let Some(a) = &c.caller_answer {
            return Ok(a.clone());
        }
        let port = c.session.ports[0];
        // The fork's codec if the caller has it (passed through), else one
        // the relay transcodes to and from it.
        let fork_codec = codec;
        let codec = caller_codec(&c.caller_codecs, codec).ok_or(AnchorError::NoCodec(format!(
            "the callee chose {codec:?}, which the caller's codecs cannot be transcoded to"
        )))?;
        let answer = match c.caller_kind {
            Kind::Plain => {
                let offer = parse(c.caller_offer.as_bytes())?;
                let leg = c
                    .caller_plain
                    .as_mut()
                    .ok_or(AnchorError::Unsupported("caller leg state lost"))?;
                let a = leg.local.answer(
                    &offer,
                    &LocalAudio {
                        codecs: vec![codec],
                        ..LocalAudio::g711(advertised, port)
                    },
                );
                let n = a.audio.ok_or(AnchorError::NoCodec(format!(
                    "the caller cannot take {codec:?}"
                )))?;
                relay.set_leg(id, LegId::A, plain_params(&n))?;
                leg.codec = Some(n.codec);
                leg.last = a.sdp.to_string();
                leg.last.clone()
            }
            Kind::WebRtc => {
                let mut codecs = vec![codec];
                codecs.extend(c.caller_codecs.iter().copied().filter(|k| *k != codec));
                let mut l = WebRtcLeg::new(&webrtc, Instant::now(), &LegOptions { port, codecs })?;
                let a = l.accept_offer(&c.caller_offer)?;
                relay.set_webrtc(id, LegId::A, Box::new(l))?;
                // The browser's opus becomes G.711: narrowband is all
                // that reaches the other side.
                if codec == Codec::Opus && matches!(fork_codec, Codec::Pcmu | Codec::Pcma) {
                    crate::webrtc::with_narrowband_opus(&a)
                } else {
                    a
                }
            }
        };
        c.caller_answer = Some(answer.clone());
        Ok(answer)
    }

    /// A re-INVITE offer from one leg (hold, unhold): answered for that
    /// leg alone; the relay follows its direction (the other party hears
    /// the egress source while it holds).
    pub fn reoffer(&mut self, call: u64, side: Side, offer: &[u8]) -> Result<String, AnchorError> {
        let relay = self.relay.clone();
        let advertised = self.advertised;
        let c = self.call(call)?;
        let id = c.session.id;
        let webrtc_leg = match side {
            Side::Caller if c.caller_kind == Kind::WebRtc => Some(LegId::A),
            Side::Fork(i) if matches!(c.forks.get(&i), Some(ForkMedia::WebRtc { .. })) => {
                Some(LegId::B)
            }
            _ => None,
        };
        if let Some(l) = webrtc_leg {
            if offer.is_empty() {
                return Err(AnchorError::Unsupported(
                    "a re-INVITE without SDP to a browser",
                ));
            }
            let answer = relay
                .reoffer_webrtc(id, l, text(offer)?.to_string(), Duration::from_millis(500))?
                .map_err(AnchorError::Sdp)?;
            if l == LegId::A {
                c.caller_answer = Some(answer.clone());
            }
            return Ok(answer);
        }
        let (leg, port, relay_leg) = match side {
            Side::Caller => (c.caller_plain.as_mut(), c.session.ports[0], LegId::A),
            Side::Fork(i) => match c.forks.get_mut(&i) {
                Some(ForkMedia::Plain { leg, .. }) => {
                    (Some(&mut **leg), c.session.ports[1], LegId::B)
                }
                _ => (None, 0, LegId::B),
            },
        };
        let Some(leg) = leg else {
            return Err(AnchorError::Unsupported("leg not negotiated"));
        };
        if offer.is_empty() {
            return Ok(leg.last.clone());
        }
        let codec = leg
            .codec
            .ok_or(AnchorError::Unsupported("leg not negotiated"))?;
        let a = leg.local.answer(
            &parse(offer)?,
            &LocalAudio {
                codecs: vec![codec],
                ..LocalAudio::g711(advertised, port)
            },
        );
        let n = a
            .audio
            .ok_or(AnchorError::NoCodec(format!("re-offer without {codec:?}")))?;
        relay.set_leg(id, relay_leg, plain_params(&n))?;
        leg.last = a.sdp.to_string();
        Ok(leg.last.clone())
    }

    /// A re-INVITE without SDP from one leg (RFC 3261 §14.2): our offer
    /// for that leg alone, sent in the 200 — on a plain leg the codec in
    /// use (and telephone-event), send and receive, at the next `o=`
    /// version; on a browser's, its str0m leg's offer of the session
    /// (`WebRtcLeg::create_offer_again`). The answer comes from the ACK
    /// ([`Anchor::ack_answer`]); until then the leg runs as before.
    pub fn offer_again(&mut self, call: u64, side: Side) -> Result<String, AnchorError> {
        let relay = self.relay.clone();
        let advertised = self.advertised;
        let c = self.call(call)?;
        let id = c.session.id;
        if let Some(l) = c.webrtc_leg(side) {
            let offer = relay
                .offer_again_webrtc(id, l, None, Duration::from_millis(500))?
                .map_err(AnchorError::Sdp)?;
            c.offered_again[l.index()] = true;
            return Ok(offer);
        }
        let (leg, _, port) = c
            .plain_leg(side)
            .ok_or(AnchorError::Unsupported("leg not negotiated"))?;
        let codec = leg
            .codec
            .ok_or(AnchorError::Unsupported("leg not negotiated"))?;
        leg.local.bump();
        let offer = leg.local.offer(&LocalAudio {
            codecs: vec![codec],
            ..LocalAudio::g711(advertised, port)
        });
        leg.last = offer.to_string();
        leg.pending = Some(Box::new(offer));
        Ok(leg.last.clone())
    }

    /// The body of the ACK to our 200 on leg `side`'s re-INVITE: after
    /// [`Anchor::offer_again`], the leg's answer, which the relay then
    /// follows (address, payload types, direction); ignored otherwise. An
    /// empty answer leaves the leg as it was.
    pub fn ack_answer(&mut self, call: u64, side: Side, answer: &[u8]) -> Result<(), AnchorError> {
        let relay = self.relay.clone();
        let c = self.call(call)?;
        let id = c.session.id;
        if let Some(l) = c.webrtc_leg(side) {
            if !std::mem::take(&mut c.offered_again[l.index()]) || answer.is_empty() {
                return Ok(());
            }
            relay
                .offer_again_webrtc(
                    id,
                    l,
                    Some(text(answer)?.to_string()),
                    Duration::from_millis(500),
                )?
                .map_err(AnchorError::Sdp)?;
            return Ok(());
        }
        let Some((leg, relay_leg, _)) = c.plain_leg(side) else {
            return Ok(());
        };
        let Some(offer) = leg.pending.take() else {
            return Ok(());
        };
        if answer.is_empty() {
            return Ok(());
        }
        let n = sdp::read_answer(&offer, &parse(answer)?)
            .ok_or(AnchorError::NoCodec("the answer rejects audio".into()))?;
        relay.set_leg(id, relay_leg, plain_params(&n))?;
        leg.codec = Some(n.codec);
        Ok(())
    }

    /// A DTMF key signalled by SIP INFO on leg `from` (`content_type`
    /// `application/dtmf-relay` or `application/dtmf`). When the other
    /// leg is a plain phone the digit goes to it as RFC 4733 events and
    /// `Ok(true)` says the INFO is answered here; `Ok(false)`: relay the
    /// INFO as it is (the other leg is a browser, which takes INFO).
    pub fn dtmf(
        &mut self,
        call: u64,
        from: Side,
        content_type: &str,
        body: &[u8],
    ) -> Result<bool, AnchorError> {
        let relay = self.relay.clone();
        let c = self.call(call)?;
        let (toward, other_plain) = match from {
            Side::Caller => {
                let plain = c
                    .winner
                    .and_then(|w| c.forks.get(&w))
                    .is_some_and(|f| matches!(f, ForkMedia::Plain { .. }));
                (LegId::B, plain)
            }
            Side::Fork(_) => (LegId::A, c.caller_kind == Kind::Plain),
        };
        if !other_plain {
            return Ok(false);
        }
        let body = text(body)?;
        let ct = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let (digit, duration) = match ct.as_str() {
            "application/dtmf-relay" => {
                let d =
                    info::parse_dtmf_relay(body).map_err(|e| AnchorError::Sdp(e.to_string()))?;
                (d.digit, d.duration)
            }
            "application/dtmf" => (
                info::parse_dtmf(body).map_err(|e| AnchorError::Sdp(e.to_string()))?,
                None,
            ),
            _ => return Ok(false),
        };
        // JsSIP sends 100 ms by default; keep key presses between 40 ms and 1 s.
        let duration = duration
            .unwrap_or(Duration::from_millis(100))
            .clamp(Duration::from_millis(40), Duration::from_secs(1));
        relay.send_dtmf(c.session.id, toward, digit, duration)?;
        Ok(true)
    }

    /// A fork that will not be the call's: its pending WebRTC leg goes.
    pub fn close_fork(&mut self, call: u64, fork: usize) {
        if let Some(c) = self.calls.get_mut(&call) {
            if c.winner != Some(fork) {
                c.forks.remove(&fork);
            }
        }
    }

    /// The call ended: the session and its ports are released.
    pub fn close(&mut self, call: u64) {
        // The session's entry in `sessions` stays until its reports
        // (quality, then the recording) are out: see `AnchorEvents`.
        if let Some(c) = self.calls.remove(&call) {
            self.relay.close_session(c.session.id);
        }
    }

    /// Stops the media threads.
    pub fn shutdown(&self) {
        self.relay.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: Codec = Codec::Pcmu;
    const A: Codec = Codec::Pcma;
    const O: Codec = Codec::Opus;

    #[test]
    fn forks_are_offered_the_callers_codecs_then_what_can_be_transcoded() {
        // A phone with PCMU only: a phone fork may answer PCMA, a browser
        // fork PCMA or opus.
        assert_eq!(fork_codecs(&[U], Kind::Plain), vec![U, A]);
        assert_eq!(fork_codecs(&[U], Kind::WebRtc), vec![U, A, O]);
        // The caller's order comes first.
        assert_eq!(fork_codecs(&[A, U], Kind::Plain), vec![A, U]);
        assert_eq!(fork_codecs(&[A], Kind::WebRtc), vec![A, U, O]);
        // linphone on RTP/AVP: opus first, offered to a phone fork too
        // (it passes through if the phone takes it).
        assert_eq!(fork_codecs(&[O, U], Kind::Plain), vec![O, U, A]);
        assert_eq!(fork_codecs(&[O, U], Kind::WebRtc), vec![O, U, A]);
        // A browser caller's usual order.
        assert_eq!(fork_codecs(&[O, U, A], Kind::Plain), vec![O, U, A]);
        // An opus-only caller: G.711 for a phone, nothing added for a browser.
        assert_eq!(fork_codecs(&[O], Kind::Plain), vec![O, U, A]);
        assert_eq!(fork_codecs(&[O], Kind::WebRtc), vec![O, U, A]);
        // Nothing we can use: nothing to offer.
        assert!(fork_codecs(&[], Kind::Plain).is_empty());
        assert!(
            fork_codecs(&[Codec::TelephoneEvent { clock_rate: 8000 }], Kind::WebRtc).is_empty()
        );
    }

    #[test]
    fn the_caller_gets_the_forks_codec_when_it_has_it_else_a_transcodable_one() {
        // Pass-through whenever possible, whatever the caller's order.
        assert_eq!(caller_codec(&[A, U], U), Some(U));
        assert_eq!(caller_codec(&[O, U, A], O), Some(O));
        assert_eq!(caller_codec(&[O, U, A], A), Some(A));
        // Transcoded: PCMU caller, PCMA or opus fork.
        assert_eq!(caller_codec(&[U], A), Some(U));
        assert_eq!(caller_codec(&[U], O), Some(U));
        assert_eq!(caller_codec(&[A, U], O), Some(A), "the caller's first");
        // A G.711 fork: the caller's other law before its opus.
        assert_eq!(caller_codec(&[O, U], A), Some(U));
        assert_eq!(caller_codec(&[O], A), Some(O));
        // Nothing transcodes to or from telephone-event.
        assert_eq!(
            caller_codec(&[U], Codec::TelephoneEvent { clock_rate: 8000 }),
            None
        );
        assert_eq!(caller_codec(&[], U), None);
    }

    #[test]
    fn transcodable_pairs_are_the_transcoders() {
        for a in AUDIO {
            for b in AUDIO {
                let supported = crate::core::transcode::Transcoder::new(
                    a,
                    b,
                    0,
                    &crate::core::opus::OpusSettings::default(),
                )
                .is_ok();
                assert_eq!(transcodable(a, b), supported, "{a:?} → {b:?}");
            }
        }
    }
}
