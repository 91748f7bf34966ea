//! Our side of RFC 3264 offer/answer on a plain RTP/AVP leg.
//!
//! [`LocalSdp`] owns the origin line: one session id for the leg and a
//! version that increases whenever the description we send changes (and
//! stays put when we resend the same one, RFC 3264 §8).
//!
//! - [`LocalSdp::offer`]: our codecs in preference order with their
//!   rtpmaps, telephone-event per clock rate when DTMF is enabled, ptime,
//!   direction.
//! - [`LocalSdp::answer`]: the first audio m-line of the offer gets the
//!   first codec in the *offerer's* order that we support, plus
//!   telephone-event only if offered (with the offerer's payload type and
//!   the chosen codec's clock rate); nothing in common, an SRTP-only
//!   profile, or any other m-line is answered with port 0.
//! - [`read_answer`]: what the peer chose in answer to our offer.

use std::net::IpAddr;

use super::{
    AudioView, Connection, Direction, MediaDescription, Origin, PayloadFormat, RtpMap,
    SessionDescription,
};
use crate::codec::Codec;

/// The payload type we offer a codec with (static types for G.711; the
/// dynamic numbers browsers and carriers commonly use otherwise).
pub fn default_payload_type(codec: Codec) -> u8 {
    match codec {
        Codec::Pcmu => 0,
        Codec::Pcma => 8,
        Codec::Opus => 111,
        Codec::TelephoneEvent { clock_rate: 48_000 } => 110,
        Codec::TelephoneEvent { .. } => 101,
    }
}

fn rtpmap_for(codec: Codec, payload_type: u8) -> RtpMap {
    let (encoding, clock_rate, channels) = match codec {
        Codec::Pcmu => ("PCMU", 8000, None),
        Codec::Pcma => ("PCMA", 8000, None),
        Codec::Opus => ("opus", 48_000, Some(2)),
        Codec::TelephoneEvent { clock_rate } => ("telephone-event", clock_rate, None),
    };
    RtpMap {
        payload_type,
        encoding: encoding.to_string(),
        clock_rate,
        channels,
    }
}

/// Our audio endpoint on the plain leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAudio {
    /// The address in `c=` (the advertised address behind NAT).
    pub address: IpAddr,
    pub port: u16,
    /// Codecs we can use (telephone-event excluded), in our preference order.
    pub codecs: Vec<Codec>,
    /// Whether we offer/accept RFC 4733 telephone-events.
    pub telephone_event: bool,
    /// Packet time in ms we ask for (20).
    pub ptime: u32,
    /// What we want: sendrecv, or sendonly when we put the peer on hold.
    pub direction: Direction,
}

impl LocalAudio {
    /// G.711 both laws and telephone-event, 20 ms, sendrecv.
    pub fn g711(address: IpAddr, port: u16) -> Self {
        LocalAudio {
            address,
            port,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            telephone_event: true,
            ptime: 20,
            direction: Direction::SendRecv,
        }
    }
}

/// The outcome of an offer/answer for the audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedAudio {
    /// Index of the audio m-line.
    pub index: usize,
    pub codec: Codec,
    pub payload_type: u8,
    /// The telephone-event payload type, when both sides use it.
    pub telephone_event: Option<u8>,
    /// The remote side's view (addresses, direction, hold).
    pub remote: AudioView,
    /// Our direction in the exchange.
    pub direction: Direction,
    /// The remote's ptime if it gave one, else 20.
    pub ptime: u32,
}

/// An answer to a remote offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub sdp: SessionDescription,
    /// `None` when the audio stream was rejected (or there was none).
    pub audio: Option<NegotiatedAudio>,
}

/// One leg's SDP origin and version.
#[derive(Debug, Clone)]
pub struct LocalSdp {
    session_id: u64,
    version: u64,
    address: IpAddr,
    last: Option<(Option<Connection>, Vec<MediaDescription>)>,
}

impl LocalSdp {
    /// `session_id` comes from the caller (the core draws no random
    /// numbers); `address` goes in `o=`.
    pub fn new(session_id: u64, address: IpAddr) -> Self {
        LocalSdp {
            session_id,
            version: 1,
            address,
            last: None,
        }
    }

    /// The version of the last description built.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The next description gets a new version even when it equals the
    /// last (an offer of the unchanged session, which a re-INVITE without
    /// SDP asks for).
    pub fn bump(&mut self) {
        self.version += 1;
        self.last = None;
    }

    /// Our offer.
    pub fn offer(&mut self, local: &LocalAudio) -> SessionDescription {
        let mut formats = Vec::new();
        let mut rtpmaps = Vec::new();
        let mut fmtps = Vec::new();
        let mut event_rates = Vec::new();
        for &codec in &local.codecs {
            if matches!(codec, Codec::TelephoneEvent { .. }) {
                continue;
            }
            let pt = default_payload_type(codec);
            formats.push(pt.to_string());
            rtpmaps.push(rtpmap_for(codec, pt));
            if codec == Codec::Opus {
                fmtps.push((pt, "minptime=10;useinbandfec=1".to_string()));
            }
            if !event_rates.contains(&codec.clock_rate()) {
                event_rates.push(codec.clock_rate());
            }
        }
        if local.telephone_event {
            for clock_rate in event_rates {
                let codec = Codec::TelephoneEvent { clock_rate };
                let pt = default_payload_type(codec);
                formats.push(pt.to_string());
                rtpmaps.push(rtpmap_for(codec, pt));
                fmtps.push((pt, "0-16".to_string()));
            }
        }
        let mut media = MediaDescription::new("audio", local.port, "RTP/AVP", formats);
        media.rtpmaps = rtpmaps;
        media.fmtps = fmtps;
        media.ptime = Some(local.ptime);
        media.direction = Some(local.direction);
        self.build(Some(Connection::from_ip(local.address)), vec![media])
    }

    /// Our answer to `offer` (see the module docs for the rules).
    pub fn answer(&mut self, offer: &SessionDescription, local: &LocalAudio) -> Answer {
        let remote = offer.plain_audio();
        let mut negotiated = None;
        let mut media = Vec::with_capacity(offer.media.len());
        for (index, offered) in offer.media.iter().enumerate() {
            let accepted = remote
                .as_ref()
                .filter(|r| r.index == index && offered.is_plain_rtp())
                .and_then(|r| answer_audio(r, local).map(|(m, n)| (m, n, r)));
            match accepted {
                Some((m, n, _)) => {
                    media.push(m);
                    negotiated = Some(n);
                }
                None => media.push(rejected(offered)),
            }
        }
        let sdp = self.build(Some(Connection::from_ip(local.address)), media);
        Answer {
            sdp,
            audio: negotiated,
        }
    }

    fn build(
        &mut self,
        connection: Option<Connection>,
        media: Vec<MediaDescription>,
    ) -> SessionDescription {
        let current = (connection, media);
        match &self.last {
            Some(last) if *last == current => {}
            Some(_) => self.version += 1,
            None => {}
        }
        self.last = Some(current.clone());
        let (connection, media) = current;
        SessionDescription {
            origin: Origin {
                username: "centralita".to_string(),
                session_id: self.session_id.to_string(),
                session_version: self.version,
                address_type: if self.address.is_ipv4() { "IP4" } else { "IP6" }.to_string(),
                address: self.address.to_string(),
            },
            session_name: "centralita".to_string(),
            connection,
            timing: "0 0".to_string(),
            direction: None,
            other_lines: Vec::new(),
            attributes: Vec::new(),
            media,
        }
    }
}

/// The m-line refusing an offered stream: port 0, the offer's formats.
fn rejected(offered: &MediaDescription) -> MediaDescription {
    let formats = if offered.formats.is_empty() {
        vec!["0".to_string()]
    } else {
        offered.formats.clone()
    };
    MediaDescription::new(&offered.kind, 0, &offered.protocol, formats)
}

/// Chooses the codec for an offered audio stream and builds our m-line.
fn answer_audio(
    remote: &AudioView,
    local: &LocalAudio,
) -> Option<(MediaDescription, NegotiatedAudio)> {
    let chosen: &PayloadFormat = remote.formats.iter().find(|f| {
        f.codec.is_some_and(|c| {
            !matches!(c, Codec::TelephoneEvent { .. }) && local.codecs.contains(&c)
        })
    })?;
    let codec = chosen.codec?;
    let event = local
        .telephone_event
        .then(|| {
            remote.formats.iter().find(|f| {
                f.codec
                    == Some(Codec::TelephoneEvent {
                        clock_rate: codec.clock_rate(),
                    })
            })
        })
        .flatten();

    let mut formats = vec![chosen.payload_type.to_string()];
    let mut rtpmaps = vec![RtpMap {
        payload_type: chosen.payload_type,
        encoding: chosen.encoding.clone(),
        clock_rate: chosen.clock_rate,
        channels: chosen.channels,
    }];
    let mut fmtps = Vec::new();
    if let Some(params) = &chosen.fmtp {
        fmtps.push((chosen.payload_type, params.clone()));
    }
    if let Some(ev) = event {
        formats.push(ev.payload_type.to_string());
        rtpmaps.push(rtpmap_for(
            Codec::TelephoneEvent {
                clock_rate: codec.clock_rate(),
            },
            ev.payload_type,
        ));
        fmtps.push((
            ev.payload_type,
            ev.fmtp.clone().unwrap_or_else(|| "0-16".to_string()),
        ));
    }
    let direction = Direction::from_parts(
        remote.direction.receives() && local.direction.sends(),
        remote.direction.sends() && local.direction.receives(),
    );
    let mut media = MediaDescription::new("audio", local.port, &remote.protocol, formats);
    media.rtpmaps = rtpmaps;
    media.fmtps = fmtps;
    media.ptime = Some(local.ptime);
    media.direction = Some(direction);
    let negotiated = NegotiatedAudio {
        index: remote.index,
        codec,
        payload_type: chosen.payload_type,
        telephone_event: event.map(|e| e.payload_type),
        remote: remote.clone(),
        direction,
        ptime: remote.ptime.unwrap_or(20),
    };
    Some((media, negotiated))
}

/// What the peer chose in `answer` to our `offer`: the first codec of its
/// audio m-line that we offered, and telephone-event at that codec's clock
/// rate if it kept it. `None` when it rejected audio.
pub fn read_answer(
    offer: &SessionDescription,
    answer: &SessionDescription,
) -> Option<NegotiatedAudio> {
    let remote = answer.audio()?;
    let ours = offer.media.get(remote.index)?.payload_formats();
    let offered = |f: &PayloadFormat| f.codec.is_some() && ours.iter().any(|o| o.codec == f.codec);
    let chosen = remote
        .formats
        .iter()
        .find(|f| offered(f) && !matches!(f.codec, Some(Codec::TelephoneEvent { .. })))?;
    let codec = chosen.codec?;
    let telephone_event = remote
        .formats
        .iter()
        .find(|f| {
            offered(f)
                && f.codec
                    == Some(Codec::TelephoneEvent {
                        clock_rate: codec.clock_rate(),
                    })
        })
        .map(|f| f.payload_type);
    let our_direction = offer
        .media
        .get(remote.index)
        .and_then(|m| m.direction)
        .or(offer.direction)
        .unwrap_or(Direction::SendRecv);
    Some(NegotiatedAudio {
        index: remote.index,
        codec,
        payload_type: chosen.payload_type,
        telephone_event,
        direction: Direction::from_parts(
            our_direction.sends() && remote.direction.receives(),
            our_direction.receives() && remote.direction.sends(),
        ),
        ptime: remote.ptime.unwrap_or(20),
        remote,
    })
}
