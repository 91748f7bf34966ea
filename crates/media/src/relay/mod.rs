//! The plain RTP relay of one call: two RTP/AVP legs (A and B), media from
//! each forwarded to the other with its header rewritten.
//!
//! This module does no I/O and reads no clock: every input carries the
//! `Instant` it happened at; datagrams to send, the next deadline and
//! events for the call are polled. The shell (`crate::shell`) owns the
//! sockets and the timers.
//!
//! # Run loop
//!
//! After every input (`handle_datagram`, `handle_timeout`, or a command such
//! as `set_leg`), drain the outputs in this order until each returns `None`:
//! 1. [`Relay::poll_transmit`] — send each datagram from the leg's RTP port;
//! 2. [`Relay::poll_timeout`] — call `handle_timeout` at (or after) it;
//! 3. [`Relay::poll_event`] — media timeouts, latching, RTCP for quality.
//!
//! # What it does per direction (A→B shown; B→A is the mirror)
//! - accepts a packet on A's port only if it parses as RTP, its payload type
//!   is one A negotiated, and its source passes latching ([`latch`]);
//! - forwards it only if A's peer sends (`sendrecv`/`sendonly`) and B's
//!   peer receives (`sendrecv`/`recvonly`), and B is not being fed by an
//!   egress source (hold music);
//! - maps the payload type to B's number for the same codec (PCMU may be 0
//!   on both; telephone-event 101 on A and 96 on B);
//! - transcodes audio in a codec B did not negotiate into B's codec
//!   (G.711 first, else opus) with this direction's
//!   [`Transcoder`](crate::core::transcode::Transcoder), created at the first
//!   such packet and replaced when new SDP changes either leg's codecs; the
//!   common case (a codec both legs have) is never decoded. Telephone-event
//!   is never transcoded: an event at a clock rate B lacks goes out at B's
//!   telephone-event clock, timestamp and durations rescaled
//!   (`Relay::relay_event`); with no telephone-event on B it is
//!   dropped and counted;
//! - rewrites SSRC, sequence number and timestamp into B's one outgoing
//!   stream ([`rewrite`]), continuous across SSRC changes of A's source.
//!
//! RTCP (port + 1, or muxed on the RTP port) is terminated, not relayed: the
//! relay rewrites SSRCs and sequence numbers, so a far-side report describes
//! a stream the other leg never saw (wrong SSRC, wrong extended sequence,
//! wrong loss); forwarding it would feed garbage to the receiver's quality
//! figures. Valid compound RTCP from the leg's peer is handed up as
//! [`Event::Rtcp`] (round-trip time, the peer's view of loss); the relay's
//! own reports per leg come with the statistics module.

pub mod egress;
mod inject;
pub mod latch;
pub mod quality;
pub mod rewrite;
pub mod rtp;

#[cfg(test)]
mod tests;

use crate::codec::Codec;
use crate::core::g711;
use crate::core::opus::{OpusEncoder, OpusSettings, TICKS_PER_SAMPLE};
use crate::core::transcode::Transcoder;
use crate::packet::RtpPacket;
use bytes::Bytes;
use egress::{EgressSource, ToneSource, EGRESS_RATE};
use latch::{Latch, Verdict};
use quality::{LegQuality, LegTracker, PeerReports};
use rewrite::{OutStream, Source};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// An egress source as the shell passes it between threads.
pub type EgressSourceBox = Box<dyn EgressSource>;

/// One side of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LegId {
    A,
    B,
}

impl LegId {
    pub fn other(self) -> LegId {
        match self {
            LegId::A => LegId::B,
            LegId::B => LegId::A,
        }
    }

    pub fn index(self) -> usize {
        match self {
            LegId::A => 0,
            LegId::B => 1,
        }
    }
}

/// Which port of a leg a datagram arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Rtp,
    Rtcp,
}

/// The SDP direction attribute a leg's peer declared, from the peer's
/// point of view (RFC 3264 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn peer_sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    pub fn peer_receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The peer put the call on hold: it does not want to hear the other
    /// side, so the other side gets hold music.
    pub fn holds(self) -> bool {
        matches!(self, Direction::SendOnly | Direction::Inactive)
    }
}

/// Per-call settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// No RTP from a sending leg for this long (not on hold) ends the call.
    pub rtp_timeout: Duration,
    /// Consecutive packets a new source must send before it is latched.
    pub probation: u8,
    /// A latched source silent this long may be replaced (NAT rebinding);
    /// `None`: only new SDP lets the leg learn again. See [`latch`].
    pub relatch_after: Option<Duration>,
    /// Frame length of generated audio (hold music).
    pub ptime: Duration,
    /// Emit [`Event::Stats`] this often (live quality display); `None`:
    /// only on request ([`Relay::stats`]).
    pub stats_interval: Option<Duration>,
    /// Encoder settings for audio transcoded toward an opus leg.
    pub opus: OpusSettings,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            rtp_timeout: Duration::from_secs(30),
            // Asterisk's strictrtp default; 80 ms of audio at 20 ms ptime
            // (rustpbx uses 6). Only sources other than the SDP address pay it.
            probation: 4,
            relatch_after: Some(Duration::from_secs(3)),
            ptime: Duration::from_millis(20),
            stats_interval: None,
            opus: OpusSettings::default(),
        }
    }
}

/// What the SDP of one leg says: where its peer wants media, which payload
/// types mean which codec on this leg, and the direction.
#[derive(Debug, Clone, Default)]
pub struct LegParams {
    /// The `c=`/`m=` address; `None` until known (latching fills it in).
    pub remote_rtp: Option<SocketAddr>,
    /// `a=rtcp:` or RTP port + 1.
    pub remote_rtcp: Option<SocketAddr>,
    /// (payload type, codec) pairs negotiated on this leg.
    pub codecs: Vec<(u8, Codec)>,
    pub direction: Direction,
}

/// Counters of one leg. "in" is what the leg's peer sent us, "out" what we
/// sent to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegStats {
    pub in_packets: u64,
    pub in_bytes: u64,
    pub out_packets: u64,
    pub out_bytes: u64,
    /// Frames from an egress source (hold music), included in `out_packets`.
    pub out_generated: u64,
    pub dropped_malformed: u64,
    /// Payload type this leg did not negotiate (or the other leg cannot take).
    pub dropped_payload_type: u64,
    /// From a source that is not latched (probation or rejected).
    pub dropped_source: u64,
    /// Direction (hold) says not to forward.
    pub dropped_direction: u64,
    /// The other leg has no address yet.
    pub dropped_no_destination: u64,
    pub rtcp_packets: u64,
    pub rtcp_dropped: u64,
    /// Source changes spliced into the outgoing stream toward this leg.
    pub out_resyncs: u64,
    /// Packets toward this leg made by transcoding the other leg's audio
    /// (concealed frames for lost opus packets included), included in
    /// `out_packets`.
    pub out_transcoded: u64,
    /// Packets from this leg that could not be transcoded (garbage
    /// payload, a frame size the encoder refuses, a codec failure).
    pub transcode_errors: u64,
}

/// Something the call should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The leg's media source was learned (or changed after re-learning).
    Latched { leg: LegId, addr: SocketAddr },
    /// No RTP from the leg for `rtp_timeout` while not on hold.
    MediaTimeout { leg: LegId },
    /// RTP arrived again after a `MediaTimeout`.
    MediaResumed { leg: LegId },
    /// A valid compound RTCP packet from the leg's peer.
    Rtcp { leg: LegId, packet: Bytes },
    /// Counters of both legs (A, B), every `stats_interval` (boxed: the
    /// other events are small).
    Stats { legs: Box<[LegStats; 2]> },
}

/// A datagram to send from `leg`'s RTP port to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub leg: LegId,
    pub to: SocketAddr,
    pub packet: RtpPacket,
}

impl Transmit {
    /// The datagram bytes, written into `out` (its contents replaced).
    pub fn encode(&self, out: &mut Vec<u8>) {
        rtp::write_rtp(&self.packet, out);
    }
}

struct Leg {
    params: LegParams,
    /// Codec of each payload type this leg negotiated, by PT number.
    codec_of: [Option<Codec>; 128],
    latch: Latch,
    rtcp_from: Option<SocketAddr>,
    /// When the media timeout clock (re)started: the last accepted packet,
    /// or the moment timing became relevant (creation, end of hold).
    timer_base: Instant,
    timed_out: bool,
    /// The stream we send toward this leg.
    out: OutStream,
    /// Hold music (or later a mixer) toward this leg.
    egress: Box<dyn EgressSource>,
    egress_next: Option<Instant>,
    egress_seq: u16,
    egress_ts: u32,
    /// Encoder of the egress source toward an opus-only leg (created at
    /// its first frame).
    egress_opus: Option<Box<OpusEncoder>>,
    /// The loss (percent) this leg's peer reports for what we send it,
    /// which encoders toward it plan their FEC for; `None`: not reported
    /// yet (the configured default applies).
    expected_loss: Option<u8>,
    stats: LegStats,
    /// Quality figures, from the first speech packet either way.
    quality: Option<Box<LegTracker>>,
}

impl Leg {
    fn new(now: Instant, out_ssrc: u32) -> Leg {
        Leg {
            params: LegParams::default(),
            codec_of: [None; 128],
            latch: Latch::new(),
            rtcp_from: None,
            timer_base: now,
            timed_out: false,
            out: OutStream::new(out_ssrc),
            egress: Box::new(ToneSource::new()),
            egress_next: None,
            egress_seq: 0,
            egress_ts: 0,
            egress_opus: None,
            expected_loss: None,
            stats: LegStats::default(),
            quality: None,
        }
    }

    /// Where media for this leg goes: the latched source, else the SDP.
    fn destination(&self) -> Option<SocketAddr> {
        self.latch.latched().or(self.params.remote_rtp)
    }

    fn pt_for(&self, codec: Codec) -> Option<u8> {
        self.params
            .codecs
            .iter()
            .find(|(_, c)| *c == codec)
            .map(|(pt, _)| *pt)
    }

    /// The leg's G.711 codec with its PT.
    fn g711_codec(&self) -> Option<(u8, Codec)> {
        self.params
            .codecs
            .iter()
            .copied()
            .find(|(_, c)| matches!(c, Codec::Pcmu | Codec::Pcma))
    }

    /// The leg's opus with its PT.
    fn opus_codec(&self) -> Option<(u8, Codec)> {
        self.params
            .codecs
            .iter()
            .copied()
            .find(|(_, c)| *c == Codec::Opus)
    }

    /// The codec generated audio (hold music) is sent in, with its PT: the
    /// leg's G.711 (no encoder to run), else its opus (an opus-only
    /// browser or softphone).
    fn egress_codec(&self) -> Option<(u8, Codec)> {
        self.g711_codec().or_else(|| self.opus_codec())
    }

    /// The telephone-event this leg negotiated (PT, clock rate): the one
    /// at its audio codec's clock when it has several (RFC 4733 §2.1:
    /// events share the audio's clock), else the first.
    fn telephone_event(&self) -> Option<(u8, u32)> {
        let audio_rate = self.egress_codec().map(|(_, c)| c.clock_rate());
        let mut events = self.params.codecs.iter().filter_map(|(pt, c)| match c {
            Codec::TelephoneEvent { clock_rate } => Some((*pt, *clock_rate)),
            _ => None,
        });
        let first = events.clone().next();
        events.find(|(_, r)| Some(*r) == audio_rate).or(first)
    }

    /// Encoder settings toward this leg: the configured ones, the loss
    /// its peer reported instead of the default.
    fn opus_settings(&self, base: &OpusSettings) -> OpusSettings {
        OpusSettings {
            expected_loss_percent: self.expected_loss.unwrap_or(base.expected_loss_percent),
            ..*base
        }
    }

    /// The codec (with its PT) audio in `from`, which this leg did not
    /// negotiate, is transcoded into: its G.711 (PCMU ↔ PCMA costs almost
    /// nothing, G.711 → opus an encoder), else its opus. `None`: nothing
    /// here `from` can be turned into.
    fn transcode_target(&self, from: Codec) -> Option<(u8, Codec)> {
        match from {
            Codec::Pcmu | Codec::Pcma => self.egress_codec(),
            Codec::Opus => self.g711_codec(),
            Codec::TelephoneEvent { .. } => None,
        }
    }
}

/// The transcoder of one direction, with the payload type it stamps.
struct Transcoding {
    transcoder: Transcoder,
    payload_type: u8,
}

/// The relay core of one call.
pub struct Relay {
    config: RelayConfig,
    legs: [Leg; 2],
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    pcm: Vec<i16>,
    next_stats: Option<Instant>,
    /// RFC 4733 digits being sent toward each leg (`inject.rs`).
    dtmf_out: [inject::DtmfOut; 2],
    /// Speech frames for the recorder, when the call is recorded.
    tap: Option<VecDeque<TapFrame>>,
    /// Per direction, by the leg the audio comes from: the transcoder in
    /// use when the other leg lacks that leg's codec (boxed: most calls
    /// never need one).
    transcoders: [Option<Box<Transcoding>>; 2],
    /// Scratch for a transcoder's output packets.
    transcoded: Vec<RtpPacket>,
}

/// A speech packet one leg's peer sent, as accepted (before any hold or
/// direction rule), for the call recorder. The payload shares the
/// packet's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapFrame {
    pub leg: LegId,
    pub codec: Codec,
    pub ssrc: u32,
    pub timestamp: u32,
    pub payload: Bytes,
}

/// Frames kept for the shell between two drains; more means the shell
/// stopped draining, and the oldest are dropped.
const TAP_LIMIT: usize = 256;

impl Relay {
    /// `out_ssrcs`: the SSRC of the stream sent toward A and toward B
    /// (chosen at random by the caller: the core draws no randomness).
    pub fn new(now: Instant, config: RelayConfig, out_ssrcs: [u32; 2]) -> Relay {
        let next_stats = config.stats_interval.and_then(|d| now.checked_add(d));
        Relay {
            next_stats,
            config,
            legs: [Leg::new(now, out_ssrcs[0]), Leg::new(now, out_ssrcs[1])],
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            pcm: Vec::new(),
            dtmf_out: Default::default(),
            tap: None,
            transcoders: Default::default(),
            transcoded: Vec::new(),
        }
    }

    /// Starts (or stops) handing accepted speech frames to
    /// [`poll_tap`](Self::poll_tap) for a recording.
    pub fn set_tap(&mut self, on: bool) {
        self.tap = on.then(VecDeque::new);
    }

    pub fn poll_tap(&mut self) -> Option<TapFrame> {
        self.tap.as_mut()?.pop_front()
    }

    /// Quality of `leg` so far (`None` before any speech either way);
    /// `peer` is what a WebRTC stack learned from the browser's RTCP.
    pub fn quality(&self, leg: LegId, peer: Option<&PeerReports>) -> Option<LegQuality> {
        self.leg(leg).quality.as_ref().map(|q| q.report(peer))
    }

    fn leg(&self, id: LegId) -> &Leg {
        &self.legs[id.index()]
    }

    fn leg_mut(&mut self, id: LegId) -> &mut Leg {
        &mut self.legs[id.index()]
    }

    pub fn stats(&self, leg: LegId) -> LegStats {
        let l = self.leg(leg);
        LegStats {
            out_resyncs: l.out.resyncs(),
            ..l.stats
        }
    }

    pub fn latched(&self, leg: LegId) -> Option<SocketAddr> {
        self.leg(leg).latch.latched()
    }

    pub fn params(&self, leg: LegId) -> &LegParams {
        &self.leg(leg).params
    }

    /// Applies SDP for `leg` (initial offer/answer or a re-INVITE). A new
    /// remote address makes the leg learn its source again; a change of
    /// direction restarts the media-timeout clock and switches hold music.
    pub fn set_leg(&mut self, now: Instant, leg: LegId, params: LegParams) {
        let l = self.leg_mut(leg);
        let moved = l.params.remote_rtp != params.remote_rtp;
        let codecs_changed = l.params.codecs != params.codecs;
        let direction_changed = l.params.direction != params.direction;
        l.codec_of = [None; 128];
        for (pt, codec) in &params.codecs {
            if let Some(slot) = l.codec_of.get_mut(usize::from(*pt)) {
                *slot = Some(*codec);
            }
        }
        l.params = params;
        if moved {
            l.latch.relearn();
        }
        if codecs_changed {
            // Either direction may now pass through, or need another
            // pair or payload type; the next packet that needs one
            // creates it afresh (a new decoder state for a new stream).
            self.transcoders = Default::default();
        }
        if moved || direction_changed {
            for l in &mut self.legs {
                l.timer_base = now;
                l.timed_out = false;
            }
        }
        self.update_egress(now);
    }

    /// Replaces the egress source toward `leg` (hold music file, later a
    /// mixer output). The default is [`ToneSource`].
    pub fn set_egress_source(&mut self, leg: LegId, source: Box<dyn EgressSource>) {
        self.leg_mut(leg).egress = source;
    }

    /// True while `leg` hears the egress source instead of the other leg.
    pub fn egress_active(&self, leg: LegId) -> bool {
        self.leg(leg).egress_next.is_some()
    }

    fn update_egress(&mut self, now: Instant) {
        for id in [LegId::A, LegId::B] {
            let held_by_other = self.leg(id.other()).params.direction.holds();
            let l = self.leg_mut(id);
            let want = held_by_other && l.params.direction.peer_receives();
            match (want, l.egress_next.is_some()) {
                (true, false) => l.egress_next = Some(now),
                (false, true) => l.egress_next = None,
                _ => {}
            }
        }
    }

    /// True while the call is on hold on either side: silence is expected.
    fn on_hold(&self) -> bool {
        self.legs
            .iter()
            .any(|l| l.params.direction != Direction::SendRecv)
    }

    /// One datagram that arrived on `leg`'s `port` from `from`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        leg: LegId,
        port: Port,
        from: SocketAddr,
        data: &[u8],
    ) {
        if port == Port::Rtcp || rtp::looks_like_rtcp(data) {
            self.handle_rtcp(now, leg, from, data);
            return;
        }
        let probation = self.config.probation;
        let relatch_after = self.config.relatch_after;
        let on_hold = self.on_hold();
        let l = self.leg_mut(leg);
        let packet = match rtp::parse_rtp(data) {
            Ok(p) => p,
            Err(_) => {
                l.stats.dropped_malformed += 1;
                return;
            }
        };
        let Some(codec) = l.codec_of[usize::from(packet.payload_type)] else {
            l.stats.dropped_payload_type += 1;
            return;
        };
        let sdp_addr = l.params.remote_rtp;
        match l.latch.on_packet(
            now,
            from,
            packet.ssrc,
            packet.sequence,
            sdp_addr,
            probation,
            relatch_after,
            !on_hold,
        ) {
            Verdict::Accept => {}
            Verdict::Latched(addr) => self.events.push_back(Event::Latched { leg, addr }),
            Verdict::Probation | Verdict::Reject => {
                self.leg_mut(leg).stats.dropped_source += 1;
                return;
            }
        }
        let l = self.leg_mut(leg);
        l.stats.in_packets += 1;
        l.stats.in_bytes += data.len() as u64;
        l.timer_base = now;
        if matches!(codec, Codec::TelephoneEvent { .. }) {
            if let Some(q) = &mut l.quality {
                q.received_event(packet.ssrc, packet.sequence, packet.payload.len(), now);
            }
        } else {
            let our_ssrc = l.out.ssrc();
            l.quality
                .get_or_insert_with(|| Box::new(LegTracker::new(now, our_ssrc, codec)))
                .received(
                    codec,
                    packet.ssrc,
                    packet.sequence,
                    packet.timestamp,
                    packet.payload.len(),
                    now,
                );
            if let Some(tap) = &mut self.tap {
                if tap.len() >= TAP_LIMIT {
                    tap.pop_front();
                }
                tap.push_back(TapFrame {
                    leg,
                    codec,
                    ssrc: packet.ssrc,
                    timestamp: packet.timestamp,
                    payload: packet.payload.clone(),
                });
            }
        }
        let l = self.leg_mut(leg);
        if l.timed_out {
            l.timed_out = false;
            self.events.push_back(Event::MediaResumed { leg });
        }
        let sends = self.leg(leg).params.direction.peer_sends();
        // While a digit is sent toward the other leg, its events replace
        // the audio (RFC 4733 §2.5.1.1): one source switch each way.
        // Events already due go first, so audio never slips between them.
        self.send_due_dtmf(now, leg.other());
        let digit_playing = self.dtmf_out[leg.other().index()].busy(now);
        let to = self.leg(leg.other());
        if !sends
            || !to.params.direction.peer_receives()
            || to.egress_next.is_some()
            || digit_playing
        {
            self.leg_mut(leg).stats.dropped_direction += 1;
            return;
        }
        let dest = to.destination();
        let (out_pt, target) = match to.pt_for(codec) {
            Some(pt) => (pt, None),
            None => match (codec, to.telephone_event()) {
                // Events at another clock (8 kHz from a phone, 48 kHz
                // toward opus): rescaled, see `relay_event`.
                (Codec::TelephoneEvent { .. }, Some((pt, clock_rate))) => {
                    (pt, Some(Codec::TelephoneEvent { clock_rate }))
                }
                _ => match to.transcode_target(codec) {
                    Some((pt, target)) => (pt, Some(target)),
                    None => {
                        self.leg_mut(leg).stats.dropped_payload_type += 1;
                        return;
                    }
                },
            },
        };
        let Some(dest) = dest else {
            self.leg_mut(leg).stats.dropped_no_destination += 1;
            return;
        };
        match target {
            None => self.forward(now, leg.other(), dest, codec, out_pt, packet),
            Some(Codec::TelephoneEvent { clock_rate }) => {
                self.relay_event(now, leg, dest, codec, clock_rate, out_pt, packet)
            }
            Some(target) => self.transcode(now, leg, dest, codec, target, out_pt, &packet),
        }
    }

    /// An RFC 4733 event from `leg` in `from` (telephone-event at one
    /// clock), toward the other leg whose telephone-event runs at
    /// `to_rate`: its timestamp and durations rescaled (×6 from a phone's
    /// 8 kHz toward opus's 48 kHz, ÷6 back). The timestamp is mapped the
    /// way this direction's transcoder maps the audio of the same source,
    /// so the event lands where the audio around it does in the outgoing
    /// stream.
    #[allow(clippy::too_many_arguments)]
    fn relay_event(
        &mut self,
        now: Instant,
        leg: LegId,
        dest: SocketAddr,
        from: Codec,
        to_rate: u32,
        payload_type: u8,
        mut packet: RtpPacket,
    ) {
        let from_rate = from.clock_rate();
        let aligned = self.transcoders[leg.index()].as_ref().filter(|t| {
            t.transcoder.from_codec().clock_rate() == from_rate
                && t.transcoder.to_codec().clock_rate() == to_rate
        });
        packet.timestamp = match aligned {
            Some(t) => t.transcoder.map_timestamp(packet.ssrc, packet.timestamp),
            None => rescale(packet.timestamp, from_rate, to_rate),
        };
        packet.payload = rescale_event_durations(&packet.payload, from_rate, to_rate);
        let to = Codec::TelephoneEvent {
            clock_rate: to_rate,
        };
        self.forward(now, leg.other(), dest, to, payload_type, packet);
    }

    /// Sends `packet` (in `codec`, to carry `payload_type`) toward `toward`
    /// at `dest`, rewritten into that leg's outgoing stream.
    fn forward(
        &mut self,
        now: Instant,
        toward: LegId,
        dest: SocketAddr,
        codec: Codec,
        payload_type: u8,
        packet: RtpPacket,
    ) {
        let to = self.leg_mut(toward);
        let r = to.out.rewrite(
            now,
            Source::Ssrc(packet.ssrc),
            packet.sequence,
            packet.timestamp,
            codec.clock_rate(),
        );
        to.stats.out_packets += 1;
        to.stats.out_bytes += (rtp::RTP_HEADER + packet.payload.len()) as u64;
        if !matches!(codec, Codec::TelephoneEvent { .. }) {
            let our_ssrc = to.out.ssrc();
            to.quality
                .get_or_insert_with(|| Box::new(LegTracker::new(now, our_ssrc, codec)))
                .sent(codec, r.timestamp, packet.payload.len(), now);
        }
        self.transmits.push_back(Transmit {
            leg: toward,
            to: dest,
            packet: RtpPacket {
                payload_type,
                sequence: r.sequence,
                timestamp: r.timestamp,
                ssrc: r.ssrc,
                marker: packet.marker || r.marker,
                payload: packet.payload,
            },
        });
    }

    /// Audio from `leg` in `codec`, which the other leg lacks: transcoded
    /// into `target` (`payload_type` on the other leg) by this direction's
    /// transcoder, and each packet it makes forwarded like a relayed one
    /// (same rewrite, same counters, the target's clock rate).
    #[allow(clippy::too_many_arguments)]
    fn transcode(
        &mut self,
        now: Instant,
        leg: LegId,
        dest: SocketAddr,
        codec: Codec,
        target: Codec,
        payload_type: u8,
        packet: &RtpPacket,
    ) {
        let fits = self.transcoders[leg.index()].as_ref().is_some_and(|t| {
            t.transcoder.from_codec() == codec
                && t.transcoder.to_codec() == target
                && t.payload_type == payload_type
        });
        if !fits {
            let settings = self.legs[leg.other().index()].opus_settings(&self.config.opus);
            let slot = &mut self.transcoders[leg.index()];
            match Transcoder::new(codec, target, payload_type, &settings) {
                Ok(transcoder) => {
                    *slot = Some(Box::new(Transcoding {
                        transcoder,
                        payload_type,
                    }))
                }
                Err(_) => {
                    *slot = None;
                    self.leg_mut(leg).stats.transcode_errors += 1;
                    return;
                }
            }
        }
        let Some(t) = self.transcoders[leg.index()].as_mut() else {
            return;
        };
        let mut out = std::mem::take(&mut self.transcoded);
        out.clear();
        // On an error nothing was produced and the transcoder's state is
        // unchanged: the packet is dropped, the next good one goes on.
        if t.transcoder.push(packet, &mut out).is_err() {
            self.leg_mut(leg).stats.transcode_errors += 1;
        }
        let toward = leg.other();
        for p in out.drain(..) {
            self.leg_mut(toward).stats.out_transcoded += 1;
            self.forward(now, toward, dest, target, payload_type, p);
        }
        self.transcoded = out;
    }

    fn handle_rtcp(&mut self, now: Instant, leg: LegId, from: SocketAddr, data: &[u8]) {
        let l = self.leg_mut(leg);
        // Only from the peer's host (latched RTP source or SDP address):
        // anything else cannot be told from injected reports.
        let expected_ip = l.latch.latched().or(l.params.remote_rtp).map(|a| a.ip());
        if expected_ip != Some(from.ip()) || rtp::validate_rtcp(data).is_err() {
            l.stats.rtcp_dropped += 1;
            return;
        }
        l.stats.rtcp_packets += 1;
        l.rtcp_from = Some(from);
        if let Some(q) = &mut l.quality {
            q.rtcp(data, now);
        }
        // The peer's report on our stream: encoders toward it follow it.
        let our_ssrc = l.out.ssrc();
        let reported = crate::core::rtcp::parse_compound(data)
            .ok()
            .and_then(|packets| {
                packets
                    .iter()
                    .flat_map(|p| p.report_blocks())
                    .rfind(|b| b.ssrc == our_ssrc)
                    .map(|b| b.fraction_lost_ratio() as f32)
            });
        if let Some(fraction) = reported {
            self.set_expected_loss(leg, fraction);
        }
        self.events.push_back(Event::Rtcp {
            leg,
            packet: Bytes::copy_from_slice(data),
        });
    }

    /// `leg`'s peer reports losing `fraction` (0..=1) of what we send it
    /// (a browser's RTCP receiver reports as str0m averages them, or a
    /// plain peer's report blocks on our SSRC): the opus encoders toward
    /// that leg (the transcoder of the other leg's audio, the hold-music
    /// encoder) plan their in-band FEC for it from now on, and so do those
    /// created later. See [`expected_loss_percent`].
    pub fn set_expected_loss(&mut self, leg: LegId, fraction: f32) {
        let percent = expected_loss_percent(fraction);
        let l = self.leg_mut(leg);
        if l.expected_loss == Some(percent) {
            return;
        }
        l.expected_loss = Some(percent);
        if let Some(e) = l.egress_opus.as_mut() {
            // A failure leaves the previous setting: nothing to undo.
            let _ = e.set_expected_loss(percent);
        }
        if let Some(t) = self.transcoders[leg.other().index()].as_mut() {
            let _ = t.transcoder.set_expected_loss(percent);
        }
    }

    /// The loss percentage the encoder transcoding audio toward `toward`
    /// plans its FEC for (libopus's setting, read back); `None` when no
    /// opus is being encoded toward that leg.
    pub fn expected_loss(&mut self, toward: LegId) -> Option<u8> {
        self.transcoders[toward.other().index()]
            .as_mut()?
            .transcoder
            .expected_loss()
    }

    /// The same for the hold-music encoder toward `toward`.
    pub fn egress_expected_loss(&mut self, toward: LegId) -> Option<u8> {
        self.leg_mut(toward)
            .egress_opus
            .as_mut()?
            .expected_loss()
            .ok()
    }

    /// Deadlines reached: media timeouts, hold-music frames.
    pub fn handle_timeout(&mut self, now: Instant) {
        let on_hold = self.on_hold();
        let timeout = self.config.rtp_timeout;
        for id in [LegId::A, LegId::B] {
            let l = self.leg_mut(id);
            let due = l.timer_base.checked_add(timeout);
            if !on_hold && !l.timed_out && due.is_some_and(|d| now >= d) {
                l.timed_out = true;
                self.events.push_back(Event::MediaTimeout { leg: id });
            }
            self.generate(now, id);
            self.send_due_dtmf(now, id);
        }
        if let (Some(due), Some(every)) = (self.next_stats, self.config.stats_interval) {
            if now >= due {
                // From now, not from `due`: after a stall, one report, not a burst.
                self.next_stats = now.checked_add(every.max(Duration::from_millis(100)));
                self.events.push_back(Event::Stats {
                    legs: Box::new([self.stats(LegId::A), self.stats(LegId::B)]),
                });
            }
        }
    }

    /// Sends the hold-music frames due toward `id`.
    fn generate(&mut self, now: Instant, id: LegId) {
        let ptime = self.config.ptime;
        let frame = (u64::from(EGRESS_RATE) * ptime.as_millis() as u64 / 1000) as usize;
        let mut pcm = std::mem::take(&mut self.pcm);
        pcm.resize(frame.max(1), 0);
        let config_opus = self.config.opus;
        let l = &mut self.legs[id.index()];
        // Never send a burst to catch up after a stall: at most 3 frames
        // late, then restart the cadence from now.
        while let Some(due) = l.egress_next.filter(|d| *d <= now) {
            let next = if now.saturating_duration_since(due) > ptime * 3 {
                now + ptime
            } else {
                due + ptime
            };
            l.egress_next = Some(next);
            let (Some((pt, codec)), Some(dest)) = (l.egress_codec(), l.destination()) else {
                continue;
            };
            if !l.egress.fill(&mut pcm) {
                continue;
            }
            let (payload, ticks): (Bytes, u32) = match codec {
                Codec::Pcma => (pcm.iter().map(|s| g711::linear_to_alaw(*s)).collect(), 1),
                Codec::Opus => {
                    // An opus-only leg: its own encoder, planning FEC
                    // for the loss its peer reports, 48 kHz ticks.
                    if l.egress_opus.is_none() {
                        let settings = l.opus_settings(&config_opus);
                        match OpusEncoder::new(&settings) {
                            Ok(e) => l.egress_opus = Some(Box::new(e)),
                            Err(_) => {
                                l.stats.transcode_errors += 1;
                                continue;
                            }
                        }
                    }
                    let Some(Ok(p)) = l.egress_opus.as_mut().map(|e| e.encode(&pcm)) else {
                        // A ptime opus cannot carry (not 10, 20, 40, 60 ms).
                        l.stats.transcode_errors += 1;
                        continue;
                    };
                    (p, TICKS_PER_SAMPLE)
                }
                _ => (pcm.iter().map(|s| g711::linear_to_ulaw(*s)).collect(), 1),
            };
            let seq = l.egress_seq;
            let ts = l.egress_ts;
            l.egress_seq = seq.wrapping_add(1);
            l.egress_ts = ts.wrapping_add(frame as u32 * ticks);
            let r = l
                .out
                .rewrite(due, Source::Generated, seq, ts, codec.clock_rate());
            l.stats.out_packets += 1;
            l.stats.out_generated += 1;
            l.stats.out_bytes += (rtp::RTP_HEADER + payload.len()) as u64;
            self.transmits.push_back(Transmit {
                leg: id,
                to: dest,
                packet: RtpPacket {
                    payload_type: pt,
                    sequence: r.sequence,
                    timestamp: r.timestamp,
                    ssrc: r.ssrc,
                    marker: r.marker,
                    payload,
                },
            });
        }
        self.pcm = pcm;
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next instant `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let on_hold = self.on_hold();
        self.legs
            .iter()
            .flat_map(|l| {
                let media = if on_hold || l.timed_out {
                    None
                } else {
                    l.timer_base.checked_add(self.config.rtp_timeout)
                };
                [media, l.egress_next]
            })
            .flatten()
            .chain(self.next_stats)
            .chain(self.dtmf_out.iter().filter_map(inject::DtmfOut::next_due))
            .min()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

/// The loss percentage an opus encoder should plan FEC for, from a
/// receiver's reported fraction lost (0..=1): the nearest percentage,
/// and at least [`MIN_FEC_PERCENT`] once anything is lost (libopus at the
/// default complexity 1 sends no FEC below about 10 %,
/// `core::opus::OpusSettings::expected_loss_percent`); 0 for no loss (no
/// FEC: the whole bit rate to the audio). Nonsense (NaN, negative) is 0.
pub fn expected_loss_percent(fraction: f32) -> u8 {
    if fraction.is_nan() || fraction <= 0.0 {
        return 0;
    }
    let percent = (fraction.min(1.0) * 100.0).round() as u8;
    percent.max(MIN_FEC_PERCENT)
}

/// The lowest expected loss set once a receiver reports any.
pub const MIN_FEC_PERCENT: u8 = 10;

/// A timestamp from one RTP clock to another: ×(to/from) or ÷(from/to)
/// for the rates audio uses (8, 16, 48 kHz), as the transcoder maps the
/// first packet of a stream.
fn rescale(ts: u32, from: u32, to: u32) -> u32 {
    if from == 0 || to == 0 || from == to {
        ts
    } else if to.is_multiple_of(from) {
        ts.wrapping_mul(to / from)
    } else if from.is_multiple_of(to) {
        ts / (from / to)
    } else {
        (u64::from(ts) * u64::from(to) / u64::from(from)) as u32
    }
}

/// An RFC 4733 payload with each event's duration (in `from` ticks)
/// rescaled to `to` ticks, saturating at the 16-bit field's maximum; a
/// trailing partial block is kept as it came.
fn rescale_event_durations(payload: &[u8], from: u32, to: u32) -> Bytes {
    let mut out = payload.to_vec();
    for block in out.chunks_exact_mut(4) {
        let d = u64::from(u16::from_be_bytes([block[2], block[3]]));
        let scaled = (d * u64::from(to) / u64::from(from.max(1))).min(u64::from(u16::MAX)) as u16;
        block[2..4].copy_from_slice(&scaled.to_be_bytes());
    }
    Bytes::from(out)
}
