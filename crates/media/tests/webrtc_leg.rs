//! The WebRTC leg against a real, independent WebRTC stack: a second str0m
//! instance configured as a browser is (full ICE, controlling, opus + G.711 +
//! telephone-event at 8 and 48 kHz). Both run on virtual time over an
//! in-memory network: no sockets, no sleeps, deterministic.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use media::codec::Codec;
use media::packet::RtpPacket;
use media::webrtc::{
    LegOptions, MediaDirection, SendError, WebRtcConfig, WebRtcError, WebRtcEvent, WebRtcLeg,
    WebRtcSettings, WebRtcStats,
};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::{Codec as StrCodec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};

const LEG_ADDR: &str = "127.0.0.1:40000";
const BROWSER_ADDR: &str = "127.0.0.1:50000";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

/// The browser: a full-ICE str0m with Chrome's audio payload numbers.
struct Browser {
    rtc: Rtc,
    timeout: Instant,
    out: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    mid: Option<Mid>,
    connected: bool,
    rtp: Vec<(u8, u16, u32, Vec<u8>)>,
}

impl Browser {
    fn new(now: Instant) -> Self {
        let mut cfg = Rtc::builder()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_pcmu(true, false)
            .enable_pcma(true, false);
        // Chrome: telephone-event/48000 as 110, /8000 as 126.
        for (pt, rate) in [
            (110u8, Frequency::FORTY_EIGHT_KHZ),
            (126u8, Frequency::EIGHT_KHZ),
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
        let candidate = Candidate::host(addr(BROWSER_ADDR), "udp").expect("candidate");
        rtc.add_local_candidate(candidate)
            .expect("candidate accepted");
        let mut b = Browser {
            rtc,
            timeout: now,
            out: VecDeque::new(),
            mid: None,
            connected: false,
            rtp: Vec::new(),
        };
        b.drain();
        b
    }

    fn drain(&mut self) {
        loop {
            match self.rtc.poll_output().expect("browser poll_output") {
                Output::Timeout(t) => {
                    self.timeout = t;
                    return;
                }
                Output::Transmit(t) => {
                    self.out
                        .push_back((t.source, t.destination, t.contents.into()))
                }
                Output::Event(e) => match e {
                    Event::Connected => self.connected = true,
                    Event::MediaAdded(m) => self.mid = Some(m.mid),
                    Event::RtpPacket(p) => self.rtp.push((
                        *p.header.payload_type,
                        p.header.sequence_number,
                        p.header.timestamp,
                        p.payload.to_vec(),
                    )),
                    _ => {}
                },
            }
        }
    }

    fn offer(&mut self, direction: Direction) -> (String, SdpPendingOffer) {
        let mut api = self.rtc.sdp_api();
        match self.mid {
            Some(mid) => api.set_direction(mid, direction),
            None => {
                self.mid = Some(api.add_media(MediaKind::Audio, direction, None, None, None));
            }
        }
        let (offer, pending) = api.apply().expect("browser offer");
        self.drain();
        (offer.to_sdp_string(), pending)
    }

    fn accept_answer(&mut self, pending: SdpPendingOffer, sdp: &str) {
        let answer = SdpAnswer::from_sdp_string(sdp).expect("answer parses");
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("browser accepts the answer");
        self.drain();
    }

    fn accept_offer(&mut self, sdp: &str) -> String {
        let offer = SdpOffer::from_sdp_string(sdp).expect("offer parses");
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .expect("browser accepts the offer");
        self.drain();
        answer.to_sdp_string()
    }

    fn receive(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        let recv = Receive::new(Protocol::Udp, from, to, data).expect("browser parses");
        self.rtc
            .handle_input(Input::Receive(now, recv))
            .expect("browser input");
        self.drain();
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.rtc
            .handle_input(Input::Timeout(now))
            .expect("browser timeout");
        self.drain();
    }

    fn send(&mut self, now: Instant, pt: u8, seq: u16, ts: u32, payload: &[u8]) {
        let mid = self.mid.expect("browser media");
        let mut api = self.rtc.direct_api();
        let stream = api
            .stream_tx_by_mid(mid, None)
            .expect("browser send stream");
        stream.write_rtp(RtpWrite::new(
            pt.into(),
            u64::from(seq).into(),
            ts,
            now,
            payload,
        ));
        self.drain();
        self.handle_timeout(now);
    }

    fn pt_for(&self, codec: StrCodec, rate: u32) -> u8 {
        let mid = self.mid.expect("browser media");
        let media = self.rtc.media(mid).expect("media");
        let pts = media.remote_pts();
        let p = self
            .rtc
            .codec_config()
            .find(|p| {
                pts.contains(&p.pt())
                    && p.spec().codec == codec
                    && p.spec().clock_rate.get() == rate
            })
            .expect("negotiated payload type");
        *p.pt()
    }
}

struct Net {
    now: Instant,
    leg: WebRtcLeg,
    browser: Browser,
    events: Vec<WebRtcEvent>,
}

impl Net {
    fn new(options: LegOptions) -> Self {
        let now = Instant::now();
        let settings = WebRtcSettings {
            addresses: vec![addr(LEG_ADDR).ip()],
            stats_interval: Duration::from_secs(1),
        };
        let config = WebRtcConfig::new(&settings).expect("config");
        let leg = WebRtcLeg::new(&config, now, &options).expect("leg");
        Net {
            now,
            leg,
            browser: Browser::new(now),
            events: Vec::new(),
        }
    }

    /// Deliver every datagram in flight, both ways, until the wire is quiet.
    fn pump(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            while let Some(t) = self.leg.poll_transmit() {
                moved = true;
                assert_eq!(
                    t.destination,
                    addr(BROWSER_ADDR),
                    "leg sends to the browser"
                );
                self.browser
                    .receive(self.now, t.source, t.destination, &t.contents);
            }
            while let Some((from, to, data)) = self.browser.out.pop_front() {
                moved = true;
                self.leg.handle_receive(self.now, from, to, &data);
            }
            while let Some(e) = self.leg.poll_event() {
                self.events.push(e);
            }
            if !moved {
                return;
            }
        }
        panic!("the network never went quiet");
    }

    /// Advance virtual time by `d`, honouring both sides' timers.
    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.pump();
            let leg_due = self.leg.poll_timeout().unwrap_or(end);
            let next = leg_due
                .min(self.browser.timeout)
                .min(end)
                .max(self.now + Duration::from_millis(1));
            self.now = next;
            self.leg.handle_timeout(self.now);
            self.browser.handle_timeout(self.now);
        }
        self.pump();
    }

    fn connect(&mut self) {
        for _ in 0..100 {
            if self.leg.is_connected() && self.browser.connected {
                return;
            }
            self.run_for(Duration::from_millis(50));
        }
        panic!("no connection in 5 s of virtual time: {:?}", self.events);
    }

    fn leg_rtp(&self) -> Vec<(RtpPacket, Codec)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                WebRtcEvent::Rtp { packet, codec } => Some((packet.clone(), *codec)),
                _ => None,
            })
            .collect()
    }
}

fn pcmu_payload(i: u8) -> Vec<u8> {
    (0..160).map(|k| i.wrapping_add(k as u8)).collect()
}

/// RFC 4733 payload: event, E bit + volume, duration.
fn dtmf_payload(event: u8, end: bool, duration: u16) -> Vec<u8> {
    let d = duration.to_be_bytes();
    vec![event, if end { 0x80 | 10 } else { 10 }, d[0], d[1]]
}

fn assert_sdp_hygiene(sdp: &str) {
    assert!(!sdp.contains("0.0.0.0"), "no 0.0.0.0 toward SIP:\n{sdp}");
    assert!(sdp.contains("a=ice-lite"), "ICE-lite announced:\n{sdp}");
    assert!(sdp.contains("a=rtcp-mux"), "rtcp-mux:\n{sdp}");
    assert!(sdp.contains("c=IN IP4 127.0.0.1\r\n"), "{sdp}");
    assert!(sdp.contains("m=audio 40000 UDP/TLS/RTP/SAVPF"), "{sdp}");
    assert!(
        sdp.contains("127.0.0.1 40000 typ host"),
        "host candidate on the leg's port:\n{sdp}"
    );
    assert!(sdp.contains("a=fingerprint:sha-256"), "{sdp}");
}

/// Media both ways once connected: PCMU and telephone-events, payloads intact.
fn exchange_media(net: &mut Net) {
    let pcmu_b = net.browser.pt_for(StrCodec::PCMU, 8000);
    let tele_b = net.browser.pt_for(StrCodec::Tele, 8000);
    // Browser → leg: 10 PCMU packets then a DTMF '5' (start, end).
    for i in 0..10u16 {
        let now = net.now;
        net.browser.send(
            now,
            pcmu_b,
            1000 + i,
            8000 + u32::from(i) * 160,
            &pcmu_payload(i as u8),
        );
        net.run_for(Duration::from_millis(20));
    }
    for (k, end) in [(0u16, false), (1, true)] {
        let now = net.now;
        net.browser.send(
            now,
            tele_b,
            1010 + k,
            9600,
            &dtmf_payload(5, end, 160 * (k + 1)),
        );
        net.run_for(Duration::from_millis(20));
    }
    let got = net.leg_rtp();
    let audio: Vec<_> = got.iter().filter(|(_, c)| *c == Codec::Pcmu).collect();
    assert_eq!(audio.len(), 10, "all PCMU packets crossed: {got:?}");
    for (i, (p, _)) in audio.iter().enumerate() {
        assert_eq!(p.payload_type, pcmu_b);
        assert_eq!(p.sequence, 1000 + i as u16);
        assert_eq!(p.timestamp, 8000 + i as u32 * 160);
        assert_eq!(&p.payload[..], &pcmu_payload(i as u8)[..]);
    }
    let dtmf: Vec<_> = got
        .iter()
        .filter(|(_, c)| *c == Codec::TelephoneEvent { clock_rate: 8000 })
        .collect();
    assert_eq!(dtmf.len(), 2, "both telephone-event packets: {got:?}");
    assert_eq!(&dtmf[1].0.payload[..], &dtmf_payload(5, true, 320)[..]);

    // Leg → browser, with the leg's negotiated numbers.
    let pcmu_l = net
        .leg
        .payload_type_for(Codec::Pcmu)
        .expect("PCMU negotiated");
    let tele_l = net
        .leg
        .payload_type_for(Codec::TelephoneEvent { clock_rate: 8000 })
        .expect("telephone-event/8000 negotiated");
    let ssrc = net.leg.tx_ssrc().expect("tx stream");
    for i in 0..10u16 {
        let packet = RtpPacket {
            payload_type: pcmu_l,
            sequence: 65530u16.wrapping_add(i),
            timestamp: 160 * u32::from(i),
            ssrc,
            marker: i == 0,
            payload: Bytes::from(pcmu_payload(100 + i as u8)),
        };
        let now = net.now;
        net.leg.send_rtp(now, packet).expect("leg sends PCMU");
        net.run_for(Duration::from_millis(20));
    }
    let packet = RtpPacket {
        payload_type: tele_l,
        sequence: 4,
        timestamp: 1600,
        ssrc,
        marker: true,
        payload: Bytes::from(dtmf_payload(9, true, 800)),
    };
    let now = net.now;
    net.leg.send_rtp(now, packet).expect("leg sends DTMF");
    net.run_for(Duration::from_millis(40));

    let rx = &net.browser.rtp;
    let audio: Vec<_> = rx.iter().filter(|p| p.0 == pcmu_l).collect();
    assert_eq!(
        audio.len(),
        10,
        "all PCMU reached the browser (sequence wrap included)"
    );
    for (i, p) in audio.iter().enumerate() {
        assert_eq!(p.1, 65530u16.wrapping_add(i as u16));
        assert_eq!(p.2, 160 * i as u32);
        assert_eq!(p.3, pcmu_payload(100 + i as u8));
    }
    let dtmf: Vec<_> = rx.iter().filter(|p| p.0 == tele_l).collect();
    assert_eq!(dtmf.len(), 1);
    assert_eq!(dtmf[0].3, dtmf_payload(9, true, 800));
}

#[test]
fn browser_offers_then_media_and_dtmf_cross_both_ways() {
    let mut net = Net::new(LegOptions::g711_first(40000));
    let (offer, pending) = net.browser.offer(Direction::SendRecv);
    let answer = net.leg.accept_offer(&offer).expect("leg answers");
    assert_sdp_hygiene(&answer);
    // G.711 first: the browser will send PCMU, no transcoding needed.
    let mline = answer
        .lines()
        .find(|l| l.starts_with("m=audio"))
        .expect("m=audio");
    assert!(
        mline.starts_with("m=audio 40000 UDP/TLS/RTP/SAVPF 0 "),
        "{mline}"
    );
    net.browser.accept_answer(pending, &answer);
    net.connect();
    assert!(net.events.contains(&WebRtcEvent::Connected));
    assert!(net
        .events
        .contains(&WebRtcEvent::DirectionChanged(MediaDirection::SendRecv)));
    exchange_media(&mut net);

    // Stats come on their interval, with what crossed; RTT once a sender
    // report (every 5 s for audio) has been answered by a receiver report.
    net.run_for(Duration::from_secs(12));
    let ingress = net
        .events
        .iter()
        .filter_map(|e| match e {
            WebRtcEvent::Stats(WebRtcStats::Ingress(s)) => Some(s.clone()),
            _ => None,
        })
        .last()
        .expect("ingress stats");
    assert!(ingress.packets >= 12, "{ingress:?}");
    let egress = net
        .events
        .iter()
        .filter_map(|e| match e {
            WebRtcEvent::Stats(WebRtcStats::Egress(s)) => Some(s.clone()),
            _ => None,
        })
        .last()
        .expect("egress stats");
    assert!(egress.packets >= 11, "{egress:?}");
    assert_eq!(egress.remote_packets_lost, Some(0), "{egress:?}");
    // Not necessarily in the last report: an interval in which no
    // receiver report arrived carries none (seen once under load).
    let rtt = net
        .events
        .iter()
        .filter_map(|e| match e {
            WebRtcEvent::Stats(WebRtcStats::Egress(s)) => s.rtt,
            _ => None,
        })
        .last()
        .expect("RTT from the browser's receiver report");
    assert!(rtt < Duration::from_millis(100), "{egress:?}");
    assert_eq!(net.leg.drop_counters().unnegotiated_rtp, 0);
}

#[test]
fn server_offers_then_media_and_dtmf_cross_both_ways() {
    let mut net = Net::new(LegOptions::g711_first(40000));
    let offer = net.leg.create_offer().expect("leg offers");
    assert_sdp_hygiene(&offer);
    assert!(
        offer.contains("a=rtpmap:101 telephone-event/8000"),
        "{offer}"
    );
    assert!(
        offer.contains("a=rtpmap:110 telephone-event/48000"),
        "{offer}"
    );
    let answer = net.browser.accept_offer(&offer);
    net.leg
        .accept_answer(&answer)
        .expect("leg takes the answer");
    assert!(matches!(
        net.leg.accept_answer(&answer),
        Err(WebRtcError::NoPendingOffer)
    ));
    net.connect();
    exchange_media(&mut net);
}

#[test]
fn reoffer_with_sendonly_puts_the_leg_on_receive_only_and_back() {
    let mut net = Net::new(LegOptions::opus_first(40000));
    let (offer, pending) = net.browser.offer(Direction::SendRecv);
    let answer = net.leg.accept_offer(&offer).expect("answer");
    assert!(answer
        .lines()
        .any(|l| l.starts_with("m=audio 40000 UDP/TLS/RTP/SAVPF 111 ")));
    net.browser.accept_answer(pending, &answer);
    net.connect();
    let pcmu = net.leg.payload_type_for(Codec::Pcmu).expect("pcmu");
    let packet = |seq: u16| RtpPacket {
        payload_type: pcmu,
        sequence: seq,
        timestamp: u32::from(seq) * 160,
        ssrc: 1,
        marker: false,
        payload: Bytes::from(pcmu_payload(seq as u8)),
    };

    // Hold from the browser: a=sendonly in its re-offer.
    let (offer, pending) = net.browser.offer(Direction::SendOnly);
    assert!(offer.contains("a=sendonly"));
    let answer = net.leg.accept_offer(&offer).expect("answer to hold");
    assert!(answer.contains("a=recvonly"), "{answer}");
    net.browser.accept_answer(pending, &answer);
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.leg.direction(), Some(MediaDirection::RecvOnly));
    assert!(net
        .events
        .contains(&WebRtcEvent::DirectionChanged(MediaDirection::RecvOnly)));
    let now = net.now;
    assert_eq!(net.leg.send_rtp(now, packet(1)), Err(SendError::NotSending));

    // Unhold.
    let (offer, pending) = net.browser.offer(Direction::SendRecv);
    let answer = net.leg.accept_offer(&offer).expect("answer to unhold");
    assert!(answer.contains("a=sendrecv"), "{answer}");
    net.browser.accept_answer(pending, &answer);
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.leg.direction(), Some(MediaDirection::SendRecv));
    let now = net.now;
    net.leg.send_rtp(now, packet(2)).expect("sends again");
    net.run_for(Duration::from_millis(40));
    assert!(net.browser.rtp.iter().any(|p| p.1 == 2 && p.0 == pcmu));
    assert!(net.leg.is_connected(), "re-offers kept the connection");
}

#[test]
fn plain_rtp_offer_is_refused() {
    let mut net = Net::new(LegOptions::g711_first(40000));
    let avp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
    let err = net.leg.accept_offer(avp).expect_err("not WebRTC");
    assert!(matches!(err, WebRtcError::NotWebRtc(_)), "{err}");
    assert!(net.leg.is_alive());
}

/// xorshift64*: a fixed-seed generator, enough for fuzzing inputs.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn garbage_datagrams_and_sdp_never_panic() {
    let mut net = Net::new(LegOptions::g711_first(40000));
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let from = addr(BROWSER_ADDR);
    let to = addr(LEG_ADDR);
    let feed = |net: &mut Net, rng: &mut Rng, count: usize| {
        for i in 0..count {
            let len = (rng.next() % 1400) as usize;
            let mut data = rng.bytes(len);
            // Aim at every demultiplexing branch: STUN (with the magic cookie),
            // DTLS, RTP/RTCP, and anything else.
            if let Some(first) = data.first_mut() {
                *first = match i % 4 {
                    0 => *first & 1,
                    1 => 20 + (*first % 44),
                    2 => 128 + (*first % 64),
                    _ => *first,
                };
            }
            if i % 4 == 0 && data.len() >= 8 {
                data[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
            }
            let now = net.now;
            net.leg.handle_receive(now, from, to, &data);
            while net.leg.poll_transmit().is_some() {}
        }
    };

    // Before any SDP, then connected.
    feed(&mut net, &mut rng, 2000);
    for _ in 0..200 {
        let len = (rng.next() % 600) as usize;
        let junk = String::from_utf8_lossy(&rng.bytes(len)).into_owned();
        let _ = net.leg.accept_offer(&junk);
        let _ = net.leg.accept_offer(&format!(
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=fingerprint:sha-256 {junk}\r\na=ice-ufrag:{junk}\r\n"
        ));
    }
    assert!(net.leg.is_alive(), "garbage SDP does not kill the leg");

    let mut net = Net::new(LegOptions::g711_first(40000));
    let (offer, pending) = net.browser.offer(Direction::SendRecv);
    let answer = net.leg.accept_offer(&offer).expect("answer");
    net.browser.accept_answer(pending, &answer);
    net.connect();
    feed(&mut net, &mut rng, 3000);
    assert!(net.leg.is_alive(), "garbage datagrams do not kill the leg");
    let drops = net.leg.drop_counters();
    assert!(
        drops.malformed_datagrams + drops.rejected_inputs > 0,
        "{drops:?}"
    );
    // And the call still works.
    net.events.clear();
    exchange_media(&mut net);
}

#[test]
fn payload_types_outside_the_negotiation_are_dropped_both_ways() {
    // The leg offers PCMU and PCMA; the offer reaching the browser lost PCMA
    // (as an SBC trimming codecs would), so only PCMU is negotiated.
    let options = LegOptions {
        port: 40000,
        codecs: vec![Codec::Pcmu, Codec::Pcma],
    };
    let mut net = Net::new(options);
    let offer = net.leg.create_offer().expect("offer");
    let mline = offer
        .lines()
        .find(|l| l.starts_with("m=audio"))
        .expect("m=audio")
        .to_owned();
    assert!(mline.contains(" 0 8 "), "{mline}");
    // str0m 0.25 reads audio rtpmaps even for payload types missing from the
    // m= line, so the trim removes both (as a real SBC does).
    let trimmed: String = offer
        .replace(&mline, &mline.replace(" 0 8 ", " 0 "))
        .split_inclusive("\r\n")
        .filter(|l| !l.starts_with("a=rtpmap:8 ") && !l.starts_with("a=rtcp-fb:8 "))
        .collect();
    let answer = net.browser.accept_offer(&trimmed);
    assert!(!answer.contains("PCMA"), "{answer}");
    net.leg.accept_answer(&answer).expect("answer");
    net.connect();
    assert_eq!(net.leg.codec_of(8), None);
    assert_eq!(net.leg.codec_of(0), Some(Codec::Pcmu));

    // A PCMA packet the browser was never allowed to send: str0m decrypts it
    // (PCMA is configured on the leg), the leg drops it.
    let now = net.now;
    net.browser.send(now, 8, 1, 0, &pcmu_payload(1));
    let now = net.now;
    net.browser.send(now, 0, 2, 160, &pcmu_payload(2));
    net.run_for(Duration::from_millis(40));
    let got = net.leg_rtp();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0.payload_type, 0);
    assert_eq!(net.leg.drop_counters().unnegotiated_rtp, 1);

    let now = net.now;
    let refused = net.leg.send_rtp(
        now,
        RtpPacket {
            payload_type: 8,
            sequence: 1,
            timestamp: 0,
            ssrc: 1,
            marker: false,
            payload: Bytes::from_static(&[0xd5; 160]),
        },
    );
    assert_eq!(refused, Err(SendError::UnnegotiatedPayloadType(8)));
}

#[test]
fn a_browser_that_goes_silent_is_reported_disconnected() {
    let mut net = Net::new(LegOptions::g711_first(40000));
    let (offer, pending) = net.browser.offer(Direction::SendRecv);
    let answer = net.leg.accept_offer(&offer).expect("answer");
    net.browser.accept_answer(pending, &answer);
    net.connect();
    // The browser vanishes: nothing of it reaches the leg any more.
    let silent_at = net.now;
    let end = net.now + Duration::from_secs(30);
    while net.now < end && !net.events.contains(&WebRtcEvent::Disconnected) {
        net.now += Duration::from_millis(100);
        let now = net.now;
        net.leg.handle_timeout(now);
        while net.leg.poll_transmit().is_some() {}
        while let Some(e) = net.leg.poll_event() {
            net.events.push(e);
        }
    }
    assert!(
        net.events.contains(&WebRtcEvent::Disconnected),
        "no Disconnected within 30 s: {:?}",
        net.events
    );
    // str0m 0.25's ICE-lite agent declares it after 15 s without checks
    // (not before a few seconds: one lost consent check is no disconnection).
    let after = net.now - silent_at;
    assert!(after >= Duration::from_secs(2), "{after:?}");
}

/// A browser's re-INVITE without SDP: the leg offers the session as it is
/// (an ICE restart when nothing else changes, a new `o=` version), the
/// browser answers, media keeps flowing both ways; after a hold by the
/// browser, the offer unholds.
#[test]
fn an_offer_again_keeps_the_session_and_media_flowing() {
    let mut net = Net::new(LegOptions::g711_first(40000));
    let (offer, pending) = net.browser.offer(Direction::SendRecv);
    let answer = net.leg.accept_offer(&offer).expect("answer");
    net.browser.accept_answer(pending, &answer);
    net.connect();
    exchange_media(&mut net);
    let version = |sdp: &str| -> u64 {
        sdp.lines()
            .find_map(|l| l.strip_prefix("o="))
            .and_then(|o| o.split_whitespace().nth(2))
            .and_then(|v| v.parse().ok())
            .expect("o= version")
    };
    let ufrag = |sdp: &str| -> String {
        sdp.lines()
            .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
            .expect("ufrag")
            .to_string()
    };
    let again = net.leg.create_offer_again().expect("offer again");
    assert_sdp_hygiene(&again);
    assert!(again.contains("a=sendrecv"), "{again}");
    assert!(version(&again) > version(&answer), "{again}");
    assert_ne!(ufrag(&again), ufrag(&answer), "an ICE restart");
    let reply = net.browser.accept_offer(&again);
    net.leg.accept_answer(&reply).expect("the browser's answer");
    net.run_for(Duration::from_millis(500));
    assert!(net.leg.is_connected(), "still connected");
    let pcmu = net.leg.payload_type_for(Codec::Pcmu).expect("pcmu");
    let now = net.now;
    net.leg
        .send_rtp(
            now,
            RtpPacket {
                payload_type: pcmu,
                sequence: 900,
                timestamp: 900 * 160,
                ssrc: 1,
                marker: false,
                payload: Bytes::from(pcmu_payload(9)),
            },
        )
        .expect("sends");
    net.run_for(Duration::from_millis(60));
    assert!(
        net.browser.rtp.iter().any(|p| p.1 == 900),
        "media after the restart"
    );

    // Held by the browser, then its re-INVITE without SDP: our offer is
    // sendrecv, and the leg sends again once the browser answers it.
    let (offer, pending) = net.browser.offer(Direction::SendOnly);
    let answer = net.leg.accept_offer(&offer).expect("answer to hold");
    net.browser.accept_answer(pending, &answer);
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.leg.direction(), Some(MediaDirection::RecvOnly));
    let again = net.leg.create_offer_again().expect("offer again");
    assert!(again.contains("a=sendrecv"), "{again}");
    let reply = net.browser.accept_offer(&again);
    net.leg.accept_answer(&reply).expect("answer");
    net.run_for(Duration::from_millis(100));
    assert!(net.leg.is_connected());
}
