//! One browser leg: a contained `str0m::Rtc` in RTP mode.

use std::any::Any;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::{Codec as StrCodec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tracing::{debug, warn};

use super::config::WebRtcConfig;
use super::sdp::{check_webrtc_offer, with_connection_address, with_origin_version};
use super::WebRtcError;
use crate::codec::Codec;
use crate::packet::RtpPacket;

/// Telephone-event payload types we offer, one per RTP clock (Chrome offers
/// both: 8 kHz to go with G.711, 48 kHz with opus). In an answer str0m takes
/// the offerer's numbers, and adds telephone-event only if it was offered.
const TELEPHONE_EVENT_8K_PT: u8 = 101;
const TELEPHONE_EVENT_48K_PT: u8 = 110;

/// Upper bound of outputs drained after one input. str0m reaches
/// `Output::Timeout` after a handful; one that never does is broken, and
/// looping forever would stall every call on the media thread.
const MAX_OUTPUTS_PER_DRAIN: usize = 10_000;
/// Consecutive `poll_output` errors tolerated within one drain.
const MAX_POLL_ERRORS: usize = 16;

/// Per-leg choices made when the call is set up.
#[derive(Debug, Clone)]
pub struct LegOptions {
    /// The UDP port this leg's candidates announce (the shell's shared
    /// WebRTC port, or a port of its own).
    pub port: u16,
    /// Audio codecs in preference order. The order is the order of the
    /// answer's (and our offer's) m-line, so the browser sends the first it
    /// also supports: put G.711 first when the other leg is plain G.711, and
    /// no transcoding is needed. Telephone-event is always added (8 and 48 kHz).
    pub codecs: Vec<Codec>,
}

impl LegOptions {
    /// PCMU, PCMA, then opus: for calls whose other leg is plain G.711.
    pub fn g711_first(port: u16) -> Self {
        LegOptions {
            port,
            codecs: vec![Codec::Pcmu, Codec::Pcma, Codec::Opus],
        }
    }

    /// Opus first: browser to browser, where nothing needs G.711.
    pub fn opus_first(port: u16) -> Self {
        LegOptions {
            port,
            codecs: vec![Codec::Opus, Codec::Pcmu, Codec::Pcma],
        }
    }
}

/// The media direction of the leg, seen from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaDirection {
    SendRecv,
    /// We send, the browser does not (the browser put us on hold with
    /// `a=recvonly`, or we hold it).
    SendOnly,
    /// We only receive (the browser holds: its offer said `a=sendonly`).
    RecvOnly,
    Inactive,
}

impl MediaDirection {
    pub fn is_sending(self) -> bool {
        matches!(self, MediaDirection::SendRecv | MediaDirection::SendOnly)
    }

    pub fn is_receiving(self) -> bool {
        matches!(self, MediaDirection::SendRecv | MediaDirection::RecvOnly)
    }

    fn from_str0m(d: Direction) -> Self {
        match d {
            Direction::SendRecv => MediaDirection::SendRecv,
            Direction::SendOnly => MediaDirection::SendOnly,
            Direction::RecvOnly => MediaDirection::RecvOnly,
            Direction::Inactive => MediaDirection::Inactive,
        }
    }

    fn to_str0m(self) -> Direction {
        match self {
            MediaDirection::SendRecv => Direction::SendRecv,
            MediaDirection::SendOnly => Direction::SendOnly,
            MediaDirection::RecvOnly => Direction::RecvOnly,
            MediaDirection::Inactive => Direction::Inactive,
        }
    }
}

/// A datagram to send. `source` is the local candidate str0m chose; with one
/// socket per port the shell sends from that socket to `destination`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

/// What the browser sent us, measured by str0m (RTCP we send and receive).
#[derive(Debug, Clone, PartialEq)]
pub struct IngressStats {
    pub packets: u64,
    pub bytes: u64,
    /// Fraction lost (0.0–1.0) from our last receiver report.
    pub loss: Option<f32>,
    /// RFC 3550 interarrival jitter in RTP timestamp units...
    pub jitter_rtp: u32,
    /// ...and in time, using the clock of the leg's first negotiated codec.
    pub jitter: Option<Duration>,
    /// From RTCP XR DLRR, when the browser sends it.
    pub rtt: Option<Duration>,
}

/// What we sent the browser, and what its receiver reports say about it.
#[derive(Debug, Clone, PartialEq)]
pub struct EgressStats {
    pub packets: u64,
    pub bytes: u64,
    /// Fraction lost (0.0–1.0) averaged over the browser's receiver reports.
    pub loss: Option<f32>,
    pub rtt: Option<Duration>,
    /// Jitter the browser measured, RTP timestamp units.
    pub remote_jitter_rtp: Option<u32>,
    /// Cumulative packets the browser reports lost.
    pub remote_packets_lost: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WebRtcStats {
    Ingress(IngressStats),
    Egress(EgressStats),
}

#[derive(Debug, Clone, PartialEq)]
pub enum WebRtcEvent {
    /// ICE and DTLS are up, SRTP keyed: media can flow. Emitted again when ICE
    /// recovers after a `Disconnected`.
    Connected,
    /// ICE consent lapsed (the browser stopped answering or went away). May
    /// recover; the call decides how long to wait (media timeout).
    Disconnected,
    /// The leg is dead: str0m panicked or failed beyond repair. Drop it.
    Failed {
        reason: String,
    },
    /// The leg was closed (locally or by DTLS close_notify). Drop it.
    Closed,
    /// A decrypted RTP packet from the browser, with the codec its payload
    /// type was negotiated as. RFC 4733 events arrive the same way, as
    /// `Codec::TelephoneEvent`.
    Rtp {
        packet: RtpPacket,
        codec: Codec,
    },
    /// The negotiated direction changed (hold / unhold by re-offer).
    DirectionChanged(MediaDirection),
    Stats(WebRtcStats),
}

/// Why `send_rtp` did not send. The relay counts these; none is fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("the leg is dead")]
    Dead,
    #[error("the leg is not connected yet")]
    NotConnected,
    #[error("no audio media negotiated")]
    NoMedia,
    #[error("the negotiated direction does not send")]
    NotSending,
    #[error("payload type {0} was not negotiated on this leg")]
    UnnegotiatedPayloadType(u8),
}

/// Counters of what the leg dropped; a quality or security signal, never an
/// error to the call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounters {
    /// Datagrams str0m could not even classify (not STUN/DTLS/RTP/RTCP).
    pub malformed_datagrams: u64,
    /// Datagrams str0m refused (bad SRTP auth, unexpected DTLS...).
    pub rejected_inputs: u64,
    /// Decrypted RTP with a payload type not negotiated on this leg.
    pub unnegotiated_rtp: u64,
}

pub struct WebRtcLeg {
    /// `None` once dead: str0m panicked, failed, or closed.
    rtc: Option<Rtc>,
    candidates: Vec<SocketAddr>,
    local_ufrag: String,
    mid: Option<Mid>,
    pending_offer: Option<SdpPendingOffer>,
    /// The `o=` version of the next SDP we produce: str0m writes 2 in
    /// every one, RFC 3264 §8 wants each new description's version
    /// higher than the last.
    sdp_version: u64,
    /// Negotiated payload type → codec, refreshed after every SDP exchange,
    /// so the per-packet path is an array lookup.
    pt_codecs: [Option<Codec>; 128],
    /// Clock of the first negotiated audio codec (for jitter in time).
    primary_clock: Option<u32>,
    direction: Option<MediaDirection>,
    connected: bool,
    ice_disconnected: bool,
    /// Highest extended sequence number sent: SRTP needs the rollover
    /// counter, so the relay's 16-bit numbers are extended here.
    tx_seq: Option<u64>,
    timeout: Option<Instant>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<WebRtcEvent>,
    drops: DropCounters,
}

impl std::fmt::Debug for WebRtcLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcLeg")
            .field("alive", &self.rtc.is_some())
            .field("local_ufrag", &self.local_ufrag)
            .field("candidates", &self.candidates)
            .field("direction", &self.direction)
            .field("connected", &self.connected)
            .finish()
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

impl WebRtcLeg {
    pub fn new(
        config: &WebRtcConfig,
        now: Instant,
        options: &LegOptions,
    ) -> Result<Self, WebRtcError> {
        let candidates: Vec<SocketAddr> = config
            .addresses
            .iter()
            .map(|ip| SocketAddr::new(*ip, options.port))
            .collect();
        let rtc_config = config.rtc.clone();
        let codecs = options.codecs.clone();
        let cands = candidates.clone();
        let built = catch_unwind(AssertUnwindSafe(move || {
            let mut cfg = rtc_config.clear_codecs();
            for codec in &codecs {
                cfg = match codec {
                    Codec::Pcmu => cfg.enable_pcmu(true, false),
                    Codec::Pcma => cfg.enable_pcma(true, false),
                    Codec::Opus => cfg.enable_opus(true, false),
                    Codec::TelephoneEvent { .. } => cfg,
                };
            }
            // Telephone-event is opt-in in str0m; one payload type per clock.
            // (Chromium sends its DTMF as telephone-event/8000 whenever that
            // is negotiated, even next to opus: tests/e2e/webrtc-echo.)
            for (pt, rate) in [
                (TELEPHONE_EVENT_8K_PT, Frequency::EIGHT_KHZ),
                (TELEPHONE_EVENT_48K_PT, Frequency::FORTY_EIGHT_KHZ),
            ] {
                cfg.codec_config().add_config(
                    pt.into(),
                    None,
                    StrCodec::Tele,
                    rate,
                    None,
                    FormatParams::parse_line("0-16"),
                );
            }
            let mut rtc = cfg.build(now);
            for addr in &cands {
                let candidate = Candidate::host(*addr, "udp").map_err(|e| e.to_string())?;
                if rtc.add_local_candidate(candidate).is_none() {
                    return Err(format!("str0m refused the candidate {addr}"));
                }
            }
            let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
            Ok((rtc, ufrag))
        }));
        let (rtc, local_ufrag) = match built {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(WebRtcError::Config(e)),
            Err(p) => {
                return Err(WebRtcError::Config(format!(
                    "str0m panicked while creating a leg: {}",
                    panic_message(p.as_ref())
                )))
            }
        };
        let mut leg = WebRtcLeg {
            rtc: Some(rtc),
            candidates,
            local_ufrag,
            mid: None,
            pending_offer: None,
            sdp_version: 2,
            pt_codecs: [None; 128],
            primary_clock: None,
            direction: None,
            connected: false,
            ice_disconnected: false,
            tx_seq: None,
            timeout: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            drops: DropCounters::default(),
        };
        leg.drain();
        Ok(leg)
    }

    /// Our ICE username fragment: the key the shell's demux routes STUN by.
    pub fn local_ufrag(&self) -> &str {
        &self.local_ufrag
    }

    pub fn is_alive(&self) -> bool {
        self.rtc.is_some()
    }

    pub fn is_connected(&self) -> bool {
        self.rtc.is_some() && self.connected
    }

    pub fn direction(&self) -> Option<MediaDirection> {
        self.direction
    }

    /// The negotiated codec of a payload type on this leg.
    pub fn codec_of(&self, payload_type: u8) -> Option<Codec> {
        self.pt_codecs
            .get(usize::from(payload_type))
            .copied()
            .flatten()
    }

    /// Negotiated payload types with their codecs, in the answer's order of
    /// preference is not kept here; ask `preferred_payload_type` for that.
    pub fn payload_types(&self) -> impl Iterator<Item = (u8, Codec)> + '_ {
        (0u8..128).filter_map(|pt| self.codec_of(pt).map(|c| (pt, c)))
    }

    /// The payload type negotiated for `codec`, to address packets to the
    /// browser (the relay maps formats, not numbers).
    pub fn payload_type_for(&self, codec: Codec) -> Option<u8> {
        self.payload_types()
            .find(|(_, c)| *c == codec)
            .map(|(pt, _)| pt)
    }

    /// The SSRC our packets to the browser carry (announced in `a=ssrc`).
    pub fn tx_ssrc(&mut self) -> Option<u32> {
        let mid = self.mid?;
        self.with_rtc(|rtc| {
            rtc.direct_api()
                .stream_tx_by_mid(mid, None)
                .map(|s| *s.ssrc())
        })
        .flatten()
    }

    pub fn drop_counters(&self) -> DropCounters {
        self.drops
    }

    /// The browser's offer (JsSIP INVITE or re-INVITE): returns our answer,
    /// to go in the 183 and the 200 alike.
    pub fn accept_offer(&mut self, sdp: &str) -> Result<String, WebRtcError> {
        check_webrtc_offer(sdp)?;
        // str0m rolls back any offer of ours that was waiting (glare is the
        // SIP layer's business: it answers 491 before we get here).
        self.pending_offer = None;
        let sdp = sdp.to_owned();
        let result = self
            .with_rtc(move |rtc| {
                let offer = SdpOffer::from_sdp_string(&sdp).map_err(|e| e.to_string())?;
                let answer = rtc
                    .sdp_api()
                    .accept_offer(offer)
                    .map_err(|e| e.to_string())?;
                // str0m only announces media (`MediaAdded`) once SRTP is up;
                // the audio mid is needed before that, so read it here.
                let mid = answer
                    .media_lines
                    .iter()
                    .find(|m| {
                        !m.disabled && m.rtp_params().iter().any(|p| p.spec().codec.is_audio())
                    })
                    .map(|m| m.mid());
                Ok::<_, String>((mid, answer.to_sdp_string()))
            })
            .ok_or(WebRtcError::Dead)?;
        self.drain();
        let (mid, answer) = result.map_err(WebRtcError::Sdp)?;
        if self.mid.is_none() {
            self.mid = mid;
        }
        self.refresh_negotiation();
        if self.mid.is_none() {
            return Err(WebRtcError::Sdp("the offer has no usable audio".into()));
        }
        Ok(self.finish_local_sdp(&answer))
    }

    /// Our offer to the browser (a call to an agent): audio, send and receive.
    pub fn create_offer(&mut self) -> Result<String, WebRtcError> {
        self.offer(MediaDirection::SendRecv)
    }

    /// A re-offer changing direction (we hold the browser with `SendOnly`,
    /// resume with `SendRecv`). The answer goes to `accept_answer`.
    pub fn create_reoffer(&mut self, direction: MediaDirection) -> Result<String, WebRtcError> {
        if self.mid.is_none() {
            return Err(WebRtcError::Sdp("nothing negotiated to re-offer".into()));
        }
        self.offer(direction)
    }

    /// Our offer of the session as it stands, for a browser that sent a
    /// re-INVITE without SDP: send and receive (unholding a leg held by
    /// its answer), and when that changes nothing an ICE restart keeping
    /// our candidates, since str0m makes an offer only for a change (the
    /// browser just runs its connectivity checks again with the new
    /// credentials; DTLS and SRTP go on). The answer goes to
    /// `accept_answer`.
    pub fn create_offer_again(&mut self) -> Result<String, WebRtcError> {
        let Some(mid) = self.mid else {
            return Err(WebRtcError::Sdp("nothing negotiated to re-offer".into()));
        };
        let result = self
            .with_rtc(move |rtc| {
                let mut api = rtc.sdp_api();
                api.set_direction(mid, MediaDirection::SendRecv.to_str0m());
                if !api.has_changes() {
                    api.ice_restart(true);
                }
                api.apply()
                    .map(|(offer, pending)| (offer.to_sdp_string(), pending))
            })
            .ok_or(WebRtcError::Dead)?;
        self.drain();
        let Some((offer, pending)) = result else {
            return Err(WebRtcError::Sdp("str0m made no offer".into()));
        };
        self.pending_offer = Some(pending);
        Ok(self.finish_local_sdp(&offer))
    }

    fn offer(&mut self, direction: MediaDirection) -> Result<String, WebRtcError> {
        let existing = self.mid;
        let result = self
            .with_rtc(move |rtc| {
                let mut api = rtc.sdp_api();
                let mid = match existing {
                    Some(mid) => {
                        api.set_direction(mid, direction.to_str0m());
                        mid
                    }
                    None => api.add_media(MediaKind::Audio, direction.to_str0m(), None, None, None),
                };
                api.apply()
                    .map(|(offer, pending)| (mid, offer.to_sdp_string(), pending))
            })
            .ok_or(WebRtcError::Dead)?;
        self.drain();
        let Some((mid, offer, pending)) = result else {
            return Err(WebRtcError::Sdp("nothing changed, no offer to make".into()));
        };
        self.mid = Some(mid);
        self.pending_offer = Some(pending);
        Ok(self.finish_local_sdp(&offer))
    }

    /// The browser's answer to our offer.
    pub fn accept_answer(&mut self, sdp: &str) -> Result<(), WebRtcError> {
        check_webrtc_offer(sdp)?;
        let pending = self
            .pending_offer
            .take()
            .ok_or(WebRtcError::NoPendingOffer)?;
        let sdp = sdp.to_owned();
        let result = self
            .with_rtc(move |rtc| {
                let answer = SdpAnswer::from_sdp_string(&sdp).map_err(|e| e.to_string())?;
                rtc.sdp_api()
                    .accept_answer(pending, answer)
                    .map_err(|e| e.to_string())
            })
            .ok_or(WebRtcError::Dead)?;
        self.drain();
        self.refresh_negotiation();
        result.map_err(WebRtcError::Sdp)
    }

    /// A datagram that arrived for this leg. `to` is the local address it
    /// arrived on; a wildcard or NAT-translated address is mapped to the
    /// preferred candidate, since str0m only answers checks on its candidates.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        from: SocketAddr,
        to: SocketAddr,
        datagram: &[u8],
    ) {
        if self.rtc.is_none() {
            return;
        }
        let to = if self.candidates.contains(&to) {
            to
        } else {
            self.candidates.first().copied().unwrap_or(to)
        };
        let outcome = self.with_rtc(|rtc| {
            let Ok(receive) = Receive::new(Protocol::Udp, from, to, datagram) else {
                return Err(None);
            };
            rtc.handle_input(Input::Receive(now, receive))
                .map_err(|e| Some(e.to_string()))
        });
        match outcome {
            Some(Err(None)) => self.drops.malformed_datagrams += 1,
            Some(Err(Some(e))) => {
                self.drops.rejected_inputs += 1;
                debug!(%from, error = %e, "webrtc leg rejected a datagram");
            }
            _ => {}
        }
        self.drain();
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let outcome = self.with_rtc(|rtc| rtc.handle_input(Input::Timeout(now)));
        if let Some(Err(e)) = outcome {
            debug!(error = %e, "webrtc leg timeout handling failed");
        }
        self.drain();
    }

    /// Send one RTP packet to the browser. Sequence number, timestamp, marker
    /// and payload type are the caller's (the relay rewrites per direction);
    /// the SSRC is the one this leg announced (`tx_ssrc`).
    pub fn send_rtp(&mut self, now: Instant, packet: RtpPacket) -> Result<(), SendError> {
        if self.rtc.is_none() {
            return Err(SendError::Dead);
        }
        if !self.connected {
            return Err(SendError::NotConnected);
        }
        let mid = self.mid.ok_or(SendError::NoMedia)?;
        if !self.direction.is_some_and(MediaDirection::is_sending) {
            return Err(SendError::NotSending);
        }
        if self.codec_of(packet.payload_type).is_none() {
            return Err(SendError::UnnegotiatedPayloadType(packet.payload_type));
        }
        let seq = self.extend_tx_seq(packet.sequence);
        let written = self.with_rtc(move |rtc| {
            let mut api = rtc.direct_api();
            let Some(stream) = api.stream_tx_by_mid(mid, None) else {
                return false;
            };
            let write = RtpWrite::new(
                packet.payload_type.into(),
                seq.into(),
                packet.timestamp,
                now,
                &packet.payload[..],
            )
            .marker(packet.marker);
            stream.write_rtp(write);
            true
        });
        self.drain();
        match written {
            None => Err(SendError::Dead),
            Some(false) => Err(SendError::NotSending),
            Some(true) => {
                // str0m releases queued packets when time moves forward.
                self.handle_timeout(now);
                Ok(())
            }
        }
    }

    /// Close the leg (DTLS close_notify, RTCP BYE); `Closed` follows.
    pub fn close(&mut self) {
        let outcome = self.with_rtc(|rtc| rtc.close());
        if let Some(Err(e)) = outcome {
            debug!(error = %e, "webrtc leg close failed");
        }
        self.drain();
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<WebRtcEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` is next due; `None` for a dead leg.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.rtc.as_ref().and(self.timeout)
    }

    /// Run `f` on the str0m instance, containing a panic: the leg is marked
    /// dead, a `Failed` event is queued, and `None` is returned.
    fn with_rtc<R>(&mut self, f: impl FnOnce(&mut Rtc) -> R) -> Option<R> {
        let rtc = self.rtc.as_mut()?;
        match catch_unwind(AssertUnwindSafe(|| f(rtc))) {
            Ok(r) => Some(r),
            Err(payload) => {
                let reason = format!("str0m panicked: {}", panic_message(payload.as_ref()));
                self.kill(reason);
                None
            }
        }
    }

    fn kill(&mut self, reason: String) {
        if self.rtc.take().is_some() {
            warn!(ufrag = %self.local_ufrag, %reason, "webrtc leg failed");
            self.connected = false;
            self.timeout = None;
            self.events.push_back(WebRtcEvent::Failed { reason });
        }
    }

    /// Drain str0m's outputs until it asks for a timeout (the single-mutation
    /// invariant: every mutation is followed by a full drain).
    fn drain(&mut self) {
        let mut errors = 0;
        for _ in 0..MAX_OUTPUTS_PER_DRAIN {
            let Some(output) = self.with_rtc(|rtc| rtc.poll_output()) else {
                return;
            };
            match output {
                Ok(Output::Timeout(at)) => {
                    self.timeout = Some(at);
                    self.check_alive();
                    return;
                }
                Ok(Output::Transmit(t)) => self.transmits.push_back(Transmit {
                    source: t.source,
                    destination: t.destination,
                    contents: t.contents.into(),
                }),
                Ok(Output::Event(e)) => self.on_event(e),
                Err(e) => {
                    errors += 1;
                    debug!(error = %e, "webrtc leg poll error");
                    if errors > MAX_POLL_ERRORS {
                        self.kill(format!("str0m keeps failing: {e}"));
                        return;
                    }
                }
            }
        }
        self.kill("str0m never reached a timeout".into());
    }

    fn check_alive(&mut self) {
        let alive = self.rtc.as_ref().is_some_and(Rtc::is_alive);
        if self.rtc.is_some() && !alive {
            self.rtc = None;
            self.connected = false;
            self.timeout = None;
            self.events.push_back(WebRtcEvent::Closed);
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Connected => {
                self.connected = true;
                self.events.push_back(WebRtcEvent::Connected);
            }
            Event::IceConnectionStateChange(state) => match state {
                IceConnectionState::Disconnected => {
                    self.ice_disconnected = true;
                    self.events.push_back(WebRtcEvent::Disconnected);
                }
                IceConnectionState::Connected | IceConnectionState::Completed
                    if self.ice_disconnected =>
                {
                    self.ice_disconnected = false;
                    self.events.push_back(WebRtcEvent::Connected);
                }
                _ => {}
            },
            Event::MediaAdded(added) if added.kind == MediaKind::Audio && self.mid.is_none() => {
                self.mid = Some(added.mid);
            }
            Event::RtpPacket(p) => {
                let pt = *p.header.payload_type;
                let Some(codec) = self.codec_of(pt) else {
                    self.drops.unnegotiated_rtp += 1;
                    return;
                };
                let packet = RtpPacket {
                    payload_type: pt,
                    sequence: p.header.sequence_number,
                    timestamp: p.header.timestamp,
                    ssrc: *p.header.ssrc,
                    marker: p.header.marker,
                    payload: Bytes::from_owner(p.payload),
                };
                self.events.push_back(WebRtcEvent::Rtp { packet, codec });
            }
            Event::MediaIngressStats(s) => {
                let jitter = self
                    .primary_clock
                    .map(|clock| Duration::from_secs_f64(f64::from(s.jitter) / f64::from(clock)));
                self.events
                    .push_back(WebRtcEvent::Stats(WebRtcStats::Ingress(IngressStats {
                        packets: s.packets,
                        bytes: s.bytes,
                        loss: s.loss,
                        jitter_rtp: s.jitter,
                        jitter,
                        rtt: s.rtt,
                    })));
            }
            Event::MediaEgressStats(s) => {
                self.events
                    .push_back(WebRtcEvent::Stats(WebRtcStats::Egress(EgressStats {
                        packets: s.packets,
                        bytes: s.bytes,
                        loss: s.loss,
                        rtt: s.rtt,
                        remote_jitter_rtp: s.remote.as_ref().map(|r| r.jitter),
                        remote_packets_lost: s.remote.as_ref().map(|r| r.packets_lost),
                    })));
            }
            Event::Closed => {
                self.connected = false;
            }
            _ => {}
        }
    }

    /// After an SDP exchange: negotiated payload types, direction, ufrag.
    fn refresh_negotiation(&mut self) {
        let Some(mid) = self.mid else {
            return;
        };
        let snapshot = self.with_rtc(|rtc| {
            let media = rtc.media(mid)?;
            let direction = media.direction();
            let remote_pts: Vec<u8> = media.remote_pts().iter().map(|pt| **pt).collect();
            let mut codecs = Vec::new();
            for pt in &remote_pts {
                let Some(params) = rtc.codec_config().find(|p| *p.pt() == *pt) else {
                    continue;
                };
                let spec = params.spec();
                let codec = match spec.codec {
                    StrCodec::PCMU => Codec::Pcmu,
                    StrCodec::PCMA => Codec::Pcma,
                    StrCodec::Opus => Codec::Opus,
                    StrCodec::Tele => Codec::TelephoneEvent {
                        clock_rate: spec.clock_rate.get(),
                    },
                    _ => continue,
                };
                codecs.push((*pt, codec));
            }
            let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
            Some((direction, codecs, ufrag))
        });
        self.drain();
        let Some(Some((direction, codecs, ufrag))) = snapshot else {
            return;
        };
        self.pt_codecs = [None; 128];
        self.primary_clock = None;
        for (pt, codec) in codecs {
            if let Some(slot) = self.pt_codecs.get_mut(usize::from(pt)) {
                *slot = Some(codec);
            }
            if self.primary_clock.is_none() && !matches!(codec, Codec::TelephoneEvent { .. }) {
                self.primary_clock = Some(codec.clock_rate());
            }
        }
        self.local_ufrag = ufrag;
        let direction = MediaDirection::from_str0m(direction);
        if self.direction != Some(direction) {
            self.direction = Some(direction);
            self.events
                .push_back(WebRtcEvent::DirectionChanged(direction));
        }
    }

    fn finish_local_sdp(&mut self, sdp: &str) -> String {
        let version = self.sdp_version;
        self.sdp_version += 1;
        let sdp = with_origin_version(sdp, version);
        match self.candidates.first() {
            Some(addr) => with_connection_address(&sdp, *addr),
            None => sdp,
        }
    }

    fn extend_tx_seq(&mut self, seq: u16) -> u64 {
        let extended = match self.tx_seq {
            None => u64::from(seq),
            Some(last) => {
                let roc = last >> 16;
                let candidate = (roc << 16) | u64::from(seq);
                // The value nearest the last one sent: a forward wrap bumps
                // the rollover counter, a late packet stays in the old cycle.
                [
                    candidate.checked_sub(1 << 16),
                    Some(candidate),
                    candidate.checked_add(1 << 16),
                ]
                .into_iter()
                .flatten()
                .min_by_key(|c| c.abs_diff(last))
                .unwrap_or(candidate)
            }
        };
        if self.tx_seq.is_none_or(|last| extended > last) {
            self.tx_seq = Some(extended);
        }
        extended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webrtc::WebRtcSettings;

    #[test]
    fn tx_sequence_extension_follows_wraps() {
        let config = WebRtcConfig::new(&WebRtcSettings::default()).expect("config");
        let mut leg =
            WebRtcLeg::new(&config, Instant::now(), &LegOptions::g711_first(40000)).expect("leg");
        assert_eq!(leg.extend_tx_seq(65534), 65534);
        assert_eq!(leg.extend_tx_seq(65535), 65535);
        assert_eq!(leg.extend_tx_seq(0), 65536);
        assert_eq!(
            leg.extend_tx_seq(65535),
            65535,
            "late packet stays in cycle 0"
        );
        assert_eq!(leg.extend_tx_seq(1), 65537);
    }

    #[test]
    fn a_panic_inside_str0m_kills_only_the_leg() {
        let config = WebRtcConfig::new(&WebRtcSettings::default()).expect("config");
        let now = Instant::now();
        let mut leg = WebRtcLeg::new(&config, now, &LegOptions::g711_first(40000)).expect("leg");
        let mut other = WebRtcLeg::new(&config, now, &LegOptions::g711_first(40000)).expect("leg");
        // What str0m does on a broken invariant: the documented RTP-mode
        // misuse (`writer()` panics in RTP mode) stands in for an internal bug.
        let out = leg.with_rtc(|rtc| rtc.writer(Mid::from("a")).is_some());
        assert_eq!(out, None);
        assert!(!leg.is_alive());
        assert!(matches!(
            leg.poll_event(),
            Some(WebRtcEvent::Failed { reason }) if reason.contains("panicked")
        ));
        assert_eq!(leg.poll_timeout(), None);
        // Every entry point is inert afterwards, none panics.
        leg.handle_timeout(now);
        leg.handle_receive(
            now,
            "127.0.0.1:1".parse().expect("a"),
            "127.0.0.1:2".parse().expect("a"),
            &[0x80; 40],
        );
        assert!(matches!(leg.create_offer(), Err(WebRtcError::Dead)));
        assert!(leg.accept_offer("v=0").is_err());
        assert_eq!(leg.poll_event(), None);
        // The other leg, built from the same config, is untouched.
        assert!(other.create_offer().is_ok());
        assert!(other.is_alive());
    }
}
