use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::negotiate::{default_payload_type, read_answer};
use super::*;
use crate::core::testutil::Rng;

/// Asterisk (chan_pjsip) offering G.711 and telephone-event, written after
/// its usual form (not a capture: the transcripts in shared/asterisk hold
/// AMI events, no SDP, and Asterisk is not installed here).
const ASTERISK_OFFER: &str = "v=0\r\n\
o=- 1737014623 1737014623 IN IP4 127.0.0.1\r\n\
s=Asterisk\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 10056 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=maxptime:150\r\n\
a=sendrecv\r\n";

/// baresip 1.0.0 (Debian baresip-core, modules opus, g722, g711), captured
/// here: its INVITE to a UDP listener on 127.0.0.1.
const BARESIP_OFFER: &str = "v=0\r\n\
o=- 4073902164 836798568 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
a=tool:baresip 1.0.0\r\n\
m=audio 41000 RTP/AVP 96 9 0 8 101\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 stereo=1;sprop-stereo=1\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=sendrecv\r\n\
a=label:1\r\n\
a=rtcp-rsize\r\n\
a=ssrc:320787559 cname:sip:alice@127.0.0.1\r\n\
a=minptime:20\r\n\
a=ptime:20\r\n";

/// linphonec (Debian linphone-cli, liblinphone 5.1) with its default
/// configuration, captured here the same way: session-level rtcp-xr, many
/// codecs, telephone-event at three rates, and an IPv6 `c=` (the host's
/// interface address, although it called 127.0.0.1).
const LINPHONE_OFFER: &str = "v=0\r\n\
o=linphone 2188 552 IN IP6 fd00::2\r\n\
s=Talk\r\n\
c=IN IP6 fd00::2\r\n\
t=0 0\r\n\
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n\
m=audio 42094 RTP/AVP 96 97 98 0 8 18 99 100 101\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 useinbandfec=1\r\n\
a=rtpmap:97 speex/16000\r\n\
a=fmtp:97 vbr=on\r\n\
a=rtpmap:98 speex/8000\r\n\
a=fmtp:98 vbr=on\r\n\
a=fmtp:18 annexb=yes\r\n\
a=rtpmap:99 telephone-event/48000\r\n\
a=rtpmap:100 telephone-event/16000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=rtcp-fb:* trr-int 5000\r\n\
a=rtcp-fb:* ccm tmmbr\r\n";

/// The linphone offer with a video m-line after the audio one (what it
/// sends with video enabled).
fn linphone_with_video() -> String {
    LINPHONE_OFFER.to_string()
        + "m=video 9078 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\na=rtcp-fb:* trr-int 1000\r\n"
}

/// sipp's stock UAC offer (PCMU only, no rtpmap needed for PT 0).
const SIPP_OFFER: &str = "v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n";

/// A carrier (written, not captured): media-level c=, b=, a=rtcp with its
/// own address, G.729 first.
const CARRIER_OFFER: &str = "v=0\r\n\
o=Sonus_UAC 27431 1965 IN IP4 192.0.2.10\r\n\
s=SIP Media Capabilities\r\n\
t=0 0\r\n\
m=audio 24570 RTP/AVP 18 0 101\r\n\
c=IN IP4 192.0.2.20\r\n\
b=AS:80\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=rtcp:24575 IN IP4 192.0.2.21\r\n\
a=sendrecv\r\n\
a=maxptime:20\r\n";

fn ours() -> LocalAudio {
    LocalAudio::g711(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 30_000)
}

fn parse(text: &str) -> SessionDescription {
    SessionDescription::parse(text).expect("valid SDP")
}

#[test]
fn parses_asterisk_offer() {
    let sdp = parse(ASTERISK_OFFER);
    assert_eq!(sdp.origin.session_version, 1_737_014_623);
    assert_eq!(sdp.session_name, "Asterisk");
    let audio = sdp.audio().expect("audio");
    assert_eq!(audio.rtp, Some("127.0.0.1:10056".parse().expect("addr")));
    assert_eq!(audio.rtcp, Some("127.0.0.1:10057".parse().expect("addr")));
    assert_eq!(audio.ptime, Some(20));
    assert_eq!(audio.direction, Direction::SendRecv);
    assert!(!audio.hold);
    let codecs: Vec<_> = audio.formats.iter().map(|f| f.codec).collect();
    assert_eq!(
        codecs,
        vec![
            Some(Codec::Pcmu),
            Some(Codec::Pcma),
            Some(Codec::TelephoneEvent { clock_rate: 8000 })
        ]
    );
    assert_eq!(audio.formats[2].fmtp.as_deref(), Some("0-16"));
    assert_eq!(sdp.media[0].maxptime, Some(150));
}

#[test]
fn parses_lf_only_and_keeps_unknown_attributes() {
    // baresip's offer with LF line ends, as some stacks forward bodies.
    let sdp = parse(&BARESIP_OFFER.replace("\r\n", "\n"));
    assert_eq!(sdp, parse(BARESIP_OFFER));
    assert_eq!(sdp.attributes[0].name, "tool");
    let m = &sdp.media[0];
    assert!(m
        .attributes
        .iter()
        .any(|a| a.name == "rtcp-rsize" && a.value.is_none()));
    assert!(m
        .attributes
        .iter()
        .any(|a| a.name == "ssrc"
            && a.value.as_deref() == Some("320787559 cname:sip:alice@127.0.0.1")));
    let audio = sdp.audio().expect("audio");
    assert_eq!(audio.formats[0].codec, Some(Codec::Opus));
    assert_eq!(audio.formats[0].channels, Some(2));
    assert_eq!(
        (audio.formats[1].encoding.as_str(), audio.formats[1].codec),
        ("G722", None)
    );
    assert_eq!(audio.ptime, Some(20));
    // Re-serialised with CRLF and parsed again: the same description.
    let again = parse(&sdp.to_string());
    assert_eq!(again, sdp);
    // b= lines are kept, after the media c=.
    let carrier = parse(CARRIER_OFFER).to_string();
    assert!(
        carrier.contains("c=IN IP4 192.0.2.20\r\nb=AS:80\r\n"),
        "{carrier}"
    );
}

#[test]
fn static_payload_types_without_rtpmap() {
    let audio = parse(SIPP_OFFER).audio().expect("audio");
    assert_eq!(audio.formats.len(), 1);
    assert_eq!(audio.formats[0].codec, Some(Codec::Pcmu));
    assert_eq!(audio.formats[0].encoding, "PCMU");
    let linphone = parse(LINPHONE_OFFER).audio().expect("audio");
    assert_eq!(linphone.rtp, Some("[fd00::2]:42094".parse().expect("addr")));
    let g729 = &linphone.formats[5];
    assert_eq!(
        (g729.payload_type, g729.encoding.as_str(), g729.codec),
        (18, "G729", None)
    );
    assert_eq!(g729.fmtp.as_deref(), Some("annexb=yes"));
}

#[test]
fn media_level_connection_and_rtcp_attribute() {
    let audio = parse(CARRIER_OFFER).audio().expect("audio");
    assert_eq!(audio.rtp, Some("192.0.2.20:24570".parse().expect("addr")));
    assert_eq!(audio.rtcp, Some("192.0.2.21:24575".parse().expect("addr")));
    // a=rtcp with a port only uses the media address.
    let text = CARRIER_OFFER.replace("a=rtcp:24575 IN IP4 192.0.2.21", "a=rtcp:24599");
    let audio = parse(&text).audio().expect("audio");
    assert_eq!(audio.rtcp, Some("192.0.2.20:24599".parse().expect("addr")));
    // rtcp-mux: RTCP on the RTP port.
    let text = SIPP_OFFER.to_string() + "a=rtcp-mux\r\n";
    let audio = parse(&text).audio().expect("audio");
    assert_eq!(audio.rtcp, audio.rtp);
}

#[test]
fn hold_forms() {
    // RFC 2543 hold: c=0.0.0.0, no direction attribute.
    let old = SIPP_OFFER.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
    let audio = parse(&old).audio().expect("audio");
    assert!(audio.hold);
    assert_eq!(audio.rtp, None);
    assert_eq!(audio.direction, Direction::SendOnly);
    // RFC 3264 hold: a=sendonly (sipp's uac_call_hold re-INVITE).
    let sendonly = SIPP_OFFER.to_string() + "a=rtpmap:0 PCMU/8000\r\na=sendonly\r\n";
    let audio = parse(&sendonly).audio().expect("audio");
    assert!(audio.hold);
    assert_eq!(audio.direction, Direction::SendOnly);
    assert_eq!(audio.rtp, Some("127.0.0.1:6000".parse().expect("addr")));
    // inactive, given at session level.
    let inactive = SIPP_OFFER.replace("t=0 0\r\n", "t=0 0\r\na=inactive\r\n");
    let audio = parse(&inactive).audio().expect("audio");
    assert!(audio.hold);
    assert_eq!(audio.direction, Direction::Inactive);
    // Media level overrides session level.
    let both = inactive.clone() + "a=sendrecv\r\n";
    assert_eq!(
        parse(&both).audio().expect("audio").direction,
        Direction::SendRecv
    );
}

#[test]
fn answer_picks_the_offerers_first_common_codec() {
    let mut local = LocalSdp::new(42, IpAddr::V4(Ipv4Addr::LOCALHOST));
    let offer = parse(ASTERISK_OFFER);
    let answer = local.answer(&offer, &ours());
    let audio = answer.audio.expect("negotiated");
    assert_eq!(
        (audio.codec, audio.payload_type, audio.telephone_event),
        (Codec::Pcmu, 0, Some(101))
    );
    assert_eq!(audio.direction, Direction::SendRecv);
    let text = answer.sdp.to_string();
    assert!(text.contains("m=audio 30000 RTP/AVP 0 101\r\n"), "{text}");
    assert!(text.contains("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"));
    assert!(text.contains("a=ptime:20\r\n"));
    assert!(text.contains("a=sendrecv\r\n"));
    assert!(text.contains("c=IN IP4 127.0.0.1\r\n"));
    // What we answer parses back, and reading it as an answer to the
    // offer gives the same choice.
    let back = parse(&text);
    let read = read_answer(&offer, &back).expect("read");
    assert_eq!(
        (read.codec, read.payload_type, read.telephone_event),
        (Codec::Pcmu, 0, Some(101))
    );

    // Carrier with G.729 first: PCMU chosen, its telephone-event kept.
    let carrier = local.answer(&parse(CARRIER_OFFER), &ours());
    let audio = carrier.audio.expect("negotiated");
    assert_eq!(
        (audio.codec, audio.telephone_event),
        (Codec::Pcmu, Some(101))
    );
    assert!(carrier.sdp.to_string().contains("a=fmtp:101 0-15\r\n"));
}

#[test]
fn telephone_event_only_if_offered_and_at_the_codecs_rate() {
    let mut local = LocalSdp::new(1, IpAddr::V4(Ipv4Addr::LOCALHOST));
    // sipp offers no telephone-event: none in the answer.
    let answer = local.answer(&parse(SIPP_OFFER), &ours());
    assert_eq!(answer.audio.as_ref().map(|a| a.telephone_event), Some(None));
    assert!(!answer.sdp.to_string().contains("telephone-event"));
    // linphone offers opus first; with G.711 only we take PCMU (PT 0) and
    // its 8 kHz telephone-event (PT 101), not the 48 kHz one (PT 99).
    let answer = local.answer(&parse(LINPHONE_OFFER), &ours());
    let audio = answer.audio.expect("negotiated");
    assert_eq!(
        (audio.codec, audio.telephone_event),
        (Codec::Pcmu, Some(101))
    );
    // baresip: opus, G.722 first; PCMU with its event (PT 101, events 0-15).
    let answer = local.answer(&parse(BARESIP_OFFER), &ours());
    let audio = answer.audio.expect("negotiated");
    assert_eq!(
        (audio.codec, audio.payload_type, audio.telephone_event),
        (Codec::Pcmu, 0, Some(101))
    );
    assert!(answer
        .sdp
        .to_string()
        .contains("m=audio 30000 RTP/AVP 0 101\r\n"));
    assert!(answer.sdp.to_string().contains("a=fmtp:101 0-15\r\n"));
    // Supporting opus: opus (PT 96) with the 48 kHz event (PT 99).
    let mut with_opus = ours();
    with_opus.codecs = vec![Codec::Pcmu, Codec::Opus];
    let answer = local.answer(&parse(LINPHONE_OFFER), &with_opus);
    let audio = answer.audio.expect("negotiated");
    assert_eq!(
        (audio.codec, audio.payload_type, audio.telephone_event),
        (Codec::Opus, 96, Some(99))
    );
    let text = answer.sdp.to_string();
    assert!(
        text.contains("a=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\n"),
        "{text}"
    );
    // DTMF disabled on our side: no event even if offered.
    let mut no_dtmf = ours();
    no_dtmf.telephone_event = false;
    let answer = local.answer(&parse(ASTERISK_OFFER), &no_dtmf);
    assert_eq!(answer.audio.map(|a| a.telephone_event), Some(None));
}

#[test]
fn other_m_lines_and_no_common_codec_get_port_zero() {
    let mut local = LocalSdp::new(1, IpAddr::V4(Ipv4Addr::LOCALHOST));
    let answer = local.answer(&parse(&linphone_with_video()), &ours());
    assert_eq!(answer.sdp.media.len(), 2);
    assert_eq!(answer.sdp.media[1].port, 0);
    assert!(answer.sdp.to_string().contains("m=video 0 RTP/AVP 96\r\n"));

    // G.729 only: rejected.
    let g729 = CARRIER_OFFER.replace("RTP/AVP 18 0 101", "RTP/AVP 18 101");
    let answer = local.answer(&parse(&g729), &ours());
    assert!(answer.audio.is_none());
    assert!(answer
        .sdp
        .to_string()
        .contains("m=audio 0 RTP/AVP 18 101\r\n"));

    // SRTP-only audio (RTP/SAVP): rejected, we have no SDES-SRTP.
    let savp = ASTERISK_OFFER.replace("RTP/AVP", "RTP/SAVP");
    let answer = local.answer(&parse(&savp), &ours());
    assert!(answer.audio.is_none());
    assert_eq!(answer.sdp.media[0].port, 0);

    // SRTP offered first with a plain fallback line: the plain one is used.
    let fallback = ASTERISK_OFFER.replace("RTP/AVP", "RTP/SAVP")
        + "m=audio 10058 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
    let answer = local.answer(&parse(&fallback), &ours());
    let audio = answer.audio.expect("fallback line");
    assert_eq!((audio.index, audio.codec), (1, Codec::Pcma));
    assert_eq!(answer.sdp.media[0].port, 0);
    assert_eq!(answer.sdp.media[0].protocol, "RTP/SAVP");

    // A first audio line with port 0 is skipped for the next audio line.
    let two = SIPP_OFFER.replace("m=audio 6000", "m=audio 0") + "m=audio 6002 RTP/AVP 8\r\n";
    let answer = local.answer(&parse(&two), &ours());
    let audio = answer.audio.expect("second audio line");
    assert_eq!((audio.index, audio.codec), (1, Codec::Pcma));
    assert_eq!(answer.sdp.media[0].port, 0);
    assert_eq!(answer.sdp.media[1].port, 30_000);
}

#[test]
fn answer_direction_follows_the_offer() {
    let mut local = LocalSdp::new(1, IpAddr::V4(Ipv4Addr::LOCALHOST));
    for (attr, expected) in [
        ("a=sendonly\r\n", Direction::RecvOnly),
        ("a=recvonly\r\n", Direction::SendOnly),
        ("a=inactive\r\n", Direction::Inactive),
        ("", Direction::SendRecv),
    ] {
        let offer = SIPP_OFFER.to_string() + attr;
        let answer = local.answer(&parse(&offer), &ours());
        assert_eq!(answer.audio.expect("audio").direction, expected, "{attr:?}");
    }
    // Old-style hold: we must not send, so recvonly.
    let old = SIPP_OFFER.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
    let answer = local.answer(&parse(&old), &ours());
    assert_eq!(answer.audio.expect("audio").direction, Direction::RecvOnly);
    // We hold the peer (sendonly) and it offers sendrecv: sendonly.
    let mut holding = ours();
    holding.direction = Direction::SendOnly;
    let answer = local.answer(&parse(SIPP_OFFER), &holding);
    assert_eq!(answer.audio.expect("audio").direction, Direction::SendOnly);
}

#[test]
fn offer_lists_our_codecs_and_version_rises_on_change() {
    let mut local = LocalSdp::new(777, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    let mut audio = LocalAudio::g711(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 40_000);
    let offer = local.offer(&audio);
    let text = offer.to_string();
    assert!(
        text.starts_with("v=0\r\no=centralita 777 1 IN IP4 192.0.2.1\r\n"),
        "{text}"
    );
    assert!(text.contains("m=audio 40000 RTP/AVP 0 8 101\r\n"));
    assert!(text.contains("a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"));
    assert!(text.contains("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"));
    assert!(text.contains("a=ptime:20\r\na=sendrecv\r\n"));
    // Same description again: same version.
    assert_eq!(local.offer(&audio).origin.session_version, 1);
    // Hold: a change, version 2; resume: version 3.
    audio.direction = Direction::SendOnly;
    let held = local.offer(&audio);
    assert_eq!(held.origin.session_version, 2);
    assert!(held.to_string().contains("a=sendonly\r\n"));
    audio.direction = Direction::SendRecv;
    assert_eq!(local.offer(&audio).origin.session_version, 3);
    assert_eq!(local.version(), 3);
    // An offer with opus and DTMF: one event type per clock rate.
    audio.codecs = vec![Codec::Opus, Codec::Pcmu];
    let text = local.offer(&audio).to_string();
    assert!(
        text.contains("m=audio 40000 RTP/AVP 111 0 110 101\r\n"),
        "{text}"
    );
    assert!(text.contains("a=rtpmap:111 opus/48000/2\r\n"));
    assert!(text.contains("a=rtpmap:110 telephone-event/48000\r\n"));
    assert_eq!(default_payload_type(Codec::Pcma), 8);
}

#[test]
fn read_answer_from_a_phone() {
    let mut local = LocalSdp::new(5, IpAddr::V4(Ipv4Addr::LOCALHOST));
    let offer = local.offer(&ours());
    let answer = "v=0\r\no=- 99 99 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 7000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\na=ptime:30\r\na=recvonly\r\n";
    let got = read_answer(&offer, &parse(answer)).expect("negotiated");
    assert_eq!(
        (got.codec, got.payload_type, got.telephone_event),
        (Codec::Pcma, 8, Some(101))
    );
    assert_eq!(got.ptime, 30);
    assert_eq!(got.direction, Direction::SendOnly);
    assert_eq!(
        got.remote.rtp,
        Some(SocketAddr::from(([127, 0, 0, 1], 7000)))
    );
    // Rejected audio.
    let rejected = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n";
    assert!(read_answer(&offer, &parse(rejected)).is_none());
}

#[test]
fn invalid_sdp_is_an_error() {
    for (text, what) in [
        ("", "empty"),
        ("o=- 1 1 IN IP4 127.0.0.1\r\n", "no version"),
        ("v=1\r\no=- 1 1 IN IP4 127.0.0.1\r\n", "wrong version"),
        ("v=0\r\ns=-\r\n", "no origin"),
        ("v=0\r\no=- 1 x IN IP4 1.2.3.4\r\n", "bad session version"),
        (
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n",
            "bad port",
        ),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 1\r\n", "short m="),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN\r\n", "short c="),
        (
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nhello\r\n",
            "not type=value",
        ),
        (
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n",
            "rtpmap without rate",
        ),
        (
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:300 X/8000\r\n",
            "pt > 255",
        ),
        (
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0\r\na=ptime:abc\r\n",
            "bad ptime",
        ),
        (
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0\r\nv=0\r\n",
            "v= inside media",
        ),
    ] {
        assert!(SessionDescription::parse(text).is_err(), "{what}: {text:?}");
    }
    let huge = format!(
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n{}",
        "a=x\r\n".repeat(20_000)
    );
    assert_eq!(SessionDescription::parse(&huge), Err(SdpError::TooLarge));
    let many = format!(
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n{}",
        "m=audio 1 RTP/AVP 0\r\n".repeat(40)
    );
    assert_eq!(SessionDescription::parse(&many), Err(SdpError::TooMany));
}

#[test]
fn decimal_ptime_and_ipv6() {
    let text = "v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\n\
m=audio 5004 RTP/AVP 0\r\na=ptime:20.0\r\n";
    let audio = parse(text).audio().expect("audio");
    assert_eq!(audio.ptime, Some(20));
    assert_eq!(audio.rtp, Some("[::1]:5004".parse().expect("addr")));
}

#[test]
fn garbage_never_panics() {
    let mut rng = Rng::new(0x5eed_0005);
    let samples = [
        ASTERISK_OFFER,
        BARESIP_OFFER,
        LINPHONE_OFFER,
        SIPP_OFFER,
        CARRIER_OFFER,
    ];
    let mut local = LocalSdp::new(1, IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut parsed = 0;
    for i in 0..20_000 {
        let bytes = if i % 4 == 0 {
            rng.bytes(200)
        } else {
            let sample = samples[rng.below(samples.len())].as_bytes();
            rng.mutate(sample)
        };
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(sdp) = SessionDescription::parse(&text) {
            parsed += 1;
            // Whatever parses can be answered and printed.
            let _ = sdp.audio();
            let answer = local.answer(&sdp, &ours());
            let _ = answer.sdp.to_string();
            let _ = read_answer(&sdp, &sdp);
        }
    }
    // The mutations keep many inputs valid: the negotiation path ran.
    assert!(parsed > 1000, "{parsed}");
}
