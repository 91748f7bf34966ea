//! Codec negotiation of anchored calls through the production plane
//! (`media::anchor`, real sockets on 127.0.0.1): what each fork is offered,
//! what the caller is answered, and a PCMU caller with a PCMA callee whose
//! audio crosses the relay transcoded. Ports 31,400–31,499 (below Linux's
//! ephemeral range, apart from the other tests' blocks).

use media::anchor::{self, Anchor, AnchorError, AnchorSettings, Kind};
use media::codec::Codec;
use media::core::g711;
use media::core::sdp::SessionDescription;
use media::packet::RtpPacket;
use media::relay::rtp::{parse_rtp, write_rtp};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn start() -> Anchor {
    let (anchor, _events) = anchor::start(&AnchorSettings {
        bind: LOCAL,
        advertised: LOCAL,
        port_range: 31_400..=31_499,
        rtp_timeout: Duration::from_secs(30),
    })
    .expect("start the media plane");
    anchor
}

/// A plain phone's SDP at `port` with these m-line formats and rtpmaps.
fn phone_sdp(port: u16, formats: &str, rtpmaps: &[&str]) -> String {
    let mut s = format!(
        "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {formats}\r\n"
    );
    for r in rtpmaps {
        s.push_str(&format!("a=rtpmap:{r}\r\n"));
    }
    s
}

/// The codecs (telephone-event left out) of the first audio m-line, in
/// order, and its port.
fn codecs(sdp: &str) -> (Vec<Codec>, u16) {
    let parsed = SessionDescription::parse(sdp).expect("our SDP parses");
    let audio = parsed.audio().expect("an audio m-line");
    let codecs = audio
        .formats
        .iter()
        .filter_map(|f| f.codec)
        .filter(|c| !matches!(c, Codec::TelephoneEvent { .. }))
        .collect();
    (codecs, parsed.media[audio.index].port)
}

#[test]
fn a_pcmu_caller_and_a_pcma_callee_are_joined_by_transcoding() {
    let mut anchor = start();
    let phone_a = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let phone_b = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for s in [&phone_a, &phone_b] {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
    }
    let port = |s: &UdpSocket| s.local_addr().expect("addr").port();
    let offer = phone_sdp(
        port(&phone_a),
        "0 101",
        &["0 PCMU/8000", "101 telephone-event/8000"],
    );
    anchor
        .open(1, Kind::Plain, offer.as_bytes(), None)
        .expect("open");
    // The phone fork is offered PCMU (the caller's) then PCMA; a browser
    // fork would also get opus.
    let to_b = anchor.offer(1, 0, Kind::Plain).expect("offer");
    let (offered, port_b) = codecs(&to_b);
    assert_eq!(offered, vec![Codec::Pcmu, Codec::Pcma]);
    let to_browser = anchor.offer(1, 1, Kind::WebRtc).expect("WebRTC offer");
    assert_eq!(
        codecs(&to_browser).0,
        vec![Codec::Pcmu, Codec::Pcma, Codec::Opus]
    );
    anchor.close_fork(1, 1);
    // The callee takes PCMA only; the caller is answered PCMU.
    let answer_b = phone_sdp(
        port(&phone_b),
        "8 101",
        &["8 PCMA/8000", "101 telephone-event/8000"],
    );
    let to_a = anchor.answer(1, 0, answer_b.as_bytes()).expect("answer");
    let (answered, port_a) = codecs(&to_a);
    assert_eq!(answered, vec![Codec::Pcmu]);
    assert!(to_a.contains("m=audio"), "{to_a}");

    // A tone of µ-law from A arrives at B as A-law, and back.
    let ours_a = SocketAddr::new(LOCAL, port_a);
    let ours_b = SocketAddr::new(LOCAL, port_b);
    let tone: Vec<i16> = (0..160)
        .map(|i| {
            (6000.0 * (2.0 * std::f64::consts::PI * 1000.0 * f64::from(i) / 8000.0).sin()) as i16
        })
        .collect();
    let mut buf = [0u8; 2048];
    let mut got = [0usize; 2];
    for i in 0..10u16 {
        for (from, to, pt, law) in [
            (&phone_a, ours_a, 0u8, Codec::Pcmu),
            (&phone_b, ours_b, 8, Codec::Pcma),
        ] {
            let mut payload = Vec::new();
            g711::encode_into(law, &tone, &mut payload).expect("G.711");
            let mut d = Vec::new();
            write_rtp(
                &RtpPacket {
                    payload_type: pt,
                    sequence: 100 + i,
                    timestamp: 160 * u32::from(i),
                    ssrc: 0x1234 + u32::from(pt),
                    marker: false,
                    payload: payload.into(),
                },
                &mut d,
            );
            from.send_to(&d, to).expect("send");
        }
        for (k, (sock, pt, law)) in [(&phone_b, 8u8, Codec::Pcma), (&phone_a, 0, Codec::Pcmu)]
            .into_iter()
            .enumerate()
        {
            let Ok(n) = sock.recv(&mut buf) else {
                continue;
            };
            let p = parse_rtp(&buf[..n]).expect("RTP from the relay");
            assert_eq!(p.payload_type, pt, "the receiver's own law");
            let mut pcm = Vec::new();
            g711::decode_into(law, &p.payload, &mut pcm).expect("G.711");
            // Two G.711 quantisations: within a few percent of the tone.
            let err = pcm
                .iter()
                .zip(&tone)
                .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
                .max()
                .unwrap_or(i32::MAX);
            assert!(err < 600, "sample error {err}");
            got[k] += 1;
        }
    }
    assert!(got[0] >= 8 && got[1] >= 8, "received {got:?}");
    anchor.close(1);
    anchor.shutdown();
}

#[test]
fn opus_from_a_plain_caller_passes_through_or_is_transcoded() {
    let mut anchor = start();
    // linphone: opus/48000/2 on RTP/AVP, then PCMU.
    let offer = phone_sdp(
        40_000,
        "96 0 101",
        &["96 opus/48000/2", "0 PCMU/8000", "101 telephone-event/8000"],
    );
    for call in [1, 2, 3] {
        anchor
            .open(call, Kind::Plain, offer.as_bytes(), None)
            .expect("open");
        let to_b = anchor.offer(call, 0, Kind::Plain).expect("offer");
        assert_eq!(
            codecs(&to_b).0,
            vec![Codec::Opus, Codec::Pcmu, Codec::Pcma],
            "{to_b}"
        );
    }
    // The callee takes opus: passed through, the caller's own number.
    let b_opus = phone_sdp(40_010, "111", &["111 opus/48000/2"]);
    let a = anchor.answer(1, 0, b_opus.as_bytes()).expect("answer");
    assert!(a.contains("RTP/AVP 96") && a.contains("opus/48000"), "{a}");
    // PCMU: passed through.
    let b_pcmu = phone_sdp(40_020, "0", &["0 PCMU/8000"]);
    let a = anchor.answer(2, 0, b_pcmu.as_bytes()).expect("answer");
    assert_eq!(codecs(&a).0, vec![Codec::Pcmu], "{a}");
    // PCMA, which the caller lacks: the caller keeps G.711 (PCMU), the
    // relay converts the law.
    let b_pcma = phone_sdp(40_030, "8", &["8 PCMA/8000"]);
    let a = anchor.answer(3, 0, b_pcma.as_bytes()).expect("answer");
    assert_eq!(codecs(&a).0, vec![Codec::Pcmu], "{a}");
    for call in [1, 2, 3] {
        anchor.close(call);
    }
    anchor.shutdown();
}

#[test]
fn a_caller_with_nothing_we_can_transcode_is_refused() {
    let mut anchor = start();
    let offer = phone_sdp(40_000, "9 18", &["9 G722/8000", "18 G729/8000"]);
    let err = anchor
        .open(1, Kind::Plain, offer.as_bytes(), None)
        .expect_err("G.722 and G.729 only");
    assert!(matches!(err, AnchorError::NoCodec(_)), "{err}");
    assert_eq!(anchor.open_calls(), 0);
    anchor.shutdown();
}

/// A browser's re-INVITE without SDP through the production plane: the
/// offer comes from its str0m leg on the media thread (send and receive,
/// new ICE credentials, a higher `o=` version than our answer), and the
/// browser's answer from the ACK is taken there; a plain leg's offer is
/// its codec in use at the next version, and its answer moves the relay.
#[test]
fn a_re_invite_without_sdp_is_offered_on_either_kind_of_leg() {
    use str0m::change::{SdpAnswer, SdpOffer};
    use str0m::media::{Direction, MediaKind};
    use str0m::{Candidate, Rtc};
    let mut anchor = start();
    let now = std::time::Instant::now();
    let mut browser = Rtc::builder()
        .set_crypto_provider(std::sync::Arc::new(str0m::crypto::from_feature_flags()))
        .clear_codecs()
        .enable_opus(true, false)
        .enable_pcmu(true, false)
        .build(now);
    browser
        .add_local_candidate(
            Candidate::host("127.0.0.1:50123".parse().expect("addr"), "udp").expect("candidate"),
        )
        .expect("candidate accepted");
    let mut api = browser.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = api.apply().expect("browser offer");
    anchor
        .open(7, Kind::WebRtc, offer.to_sdp_string().as_bytes(), None)
        .expect("open");
    let phone = UdpSocket::bind("127.0.0.1:0").expect("bind");
    phone
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let phone_port = phone.local_addr().expect("addr").port();
    let to_phone = anchor.offer(7, 0, Kind::Plain).expect("offer");
    let answer_b = phone_sdp(
        phone_port,
        "0 101",
        &["0 PCMU/8000", "101 telephone-event/8000"],
    );
    let to_browser = anchor.answer(7, 0, answer_b.as_bytes()).expect("answer");
    browser
        .sdp_api()
        .accept_answer(
            pending,
            SdpAnswer::from_sdp_string(&to_browser).expect("answer parses"),
        )
        .expect("browser takes our answer");
    let field = |sdp: &str, prefix: &str, n: usize| -> String {
        sdp.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|l| l.split_whitespace().nth(n))
            .unwrap_or_default()
            .to_string()
    };

    // The browser re-INVITEs without SDP.
    let again = anchor
        .offer_again(7, anchor::Side::Caller)
        .expect("offer for the browser");
    assert!(again.contains("a=sendrecv"), "{again}");
    assert!(
        field(&again, "o=", 2).parse::<u64>().expect("version")
            > field(&to_browser, "o=", 2).parse::<u64>().expect("version"),
        "{again}"
    );
    assert_ne!(
        field(&again, "a=ice-ufrag:", 0),
        field(&to_browser, "a=ice-ufrag:", 0)
    );
    let reply = browser
        .sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(&again).expect("offer parses"))
        .expect("browser answers")
        .to_sdp_string();
    anchor
        .ack_answer(7, anchor::Side::Caller, reply.as_bytes())
        .expect("the ACK's answer is taken");
    // Only once: a second ACK body is no answer to anything.
    anchor
        .ack_answer(7, anchor::Side::Caller, b"garbage")
        .expect("nothing pending: ignored");

    // The phone re-INVITEs without SDP: PCMU (in use) at the next version;
    // its answer in the ACK (another port) is taken (the binary's sipp
    // test checks that the media follows it).
    let again = anchor
        .offer_again(7, anchor::Side::Fork(0))
        .expect("offer for the phone");
    assert_eq!(codecs(&again).0, vec![Codec::Pcmu]);
    assert!(again.contains("a=sendrecv"), "{again}");
    assert!(
        field(&again, "o=", 2).parse::<u64>().expect("version")
            > field(&to_phone, "o=", 2).parse::<u64>().expect("version"),
        "{again} after {to_phone}"
    );
    let moved = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let moved_port = moved.local_addr().expect("addr").port();
    let answer = phone_sdp(
        moved_port,
        "0 101",
        &["0 PCMU/8000", "101 telephone-event/8000"],
    );
    anchor
        .ack_answer(7, anchor::Side::Fork(0), answer.as_bytes())
        .expect("the phone's answer");
    // An answer rejecting audio is an error (the call then ends).
    anchor
        .offer_again(7, anchor::Side::Fork(0))
        .expect("offer again");
    let rejected = "v=0\r\no=phone 1 3 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
                    t=0 0\r\nm=audio 0 RTP/AVP 0\r\n";
    assert!(anchor
        .ack_answer(7, anchor::Side::Fork(0), rejected.as_bytes())
        .is_err());
    anchor.close(7);
}
