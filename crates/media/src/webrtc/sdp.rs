//! SDP hygiene around str0m: what goes to the browser is str0m's SDP, made
//! readable by SIP tools on the way (no 0.0.0.0, a real port), and what comes
//! from the SIP side is checked to be WebRTC before str0m sees it, so a plain
//! RTP/AVP offer gets a clear error instead of a str0m parse message.

use std::net::SocketAddr;

use super::WebRtcError;

/// Is this offer (or answer) one a WebRTC leg can take? A desk phone or a
/// carrier offers `RTP/AVP` without DTLS or ICE: that is the plain leg's job.
pub fn check_webrtc_offer(sdp: &str) -> Result<(), WebRtcError> {
    let mut audio_protos = Vec::new();
    let mut has_media = false;
    let mut fingerprint = false;
    let mut ice_ufrag = false;
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            has_media = true;
            let mut fields = m.split_whitespace();
            let kind = fields.next().unwrap_or_default();
            let port = fields.next().unwrap_or_default();
            let proto = fields.next().unwrap_or_default();
            if kind == "audio" && port != "0" {
                audio_protos.push(proto.to_owned());
            }
        } else if line.starts_with("a=fingerprint:") {
            fingerprint = true;
        } else if line.starts_with("a=ice-ufrag:") {
            ice_ufrag = true;
        }
    }
    if !has_media {
        return Err(WebRtcError::Sdp("no m= line".into()));
    }
    let Some(proto) = audio_protos.first() else {
        return Err(WebRtcError::Sdp("no active audio m= line".into()));
    };
    if !proto.contains("SAVPF") {
        return Err(WebRtcError::NotWebRtc(format!(
            "audio uses {proto}, WebRTC needs UDP/TLS/RTP/SAVPF (use the plain RTP leg)"
        )));
    }
    if !fingerprint {
        return Err(WebRtcError::NotWebRtc(
            "no a=fingerprint: DTLS-SRTP is required".into(),
        ));
    }
    if !ice_ufrag {
        return Err(WebRtcError::NotWebRtc(
            "no a=ice-ufrag: ICE is required".into(),
        ));
    }
    Ok(())
}

/// `sdp` asking the far end to send its opus as narrowband (RFC 7587
/// `maxplaybackrate=8000`, with `sprop-maxcapturerate=8000` for what we
/// send): everything it sends is transcoded to G.711's 8 kHz, so a wider
/// band would only cost the browser bits and us decoding (a fullband
/// frame decoded at 8 kHz still runs CELT at 48 kHz). Browsers follow it
/// (Chrome caps its encoder's bandwidth). Every opus format of the SDP
/// gets it; one that already names a playback rate is left as it is.
pub fn with_narrowband_opus(sdp: &str) -> String {
    let opus: Vec<&str> = sdp
        .lines()
        .filter_map(|l| {
            let (pt, codec) = l.trim_end().strip_prefix("a=rtpmap:")?.split_once(' ')?;
            codec
                .to_ascii_lowercase()
                .starts_with("opus/")
                .then_some(pt)
        })
        .collect();
    const NARROW: &str = "maxplaybackrate=8000;sprop-maxcapturerate=8000";
    let has_fmtp = |pt: &str| sdp.lines().any(|l| l.starts_with(&format!("a=fmtp:{pt} ")));
    let mut out = String::with_capacity(sdp.len() + 64);
    for line in sdp.lines() {
        let line = line.trim_end();
        out.push_str(line);
        if let Some(rest) = line.strip_prefix("a=fmtp:") {
            let (pt, params) = rest.split_once(' ').unwrap_or((rest, ""));
            if opus.contains(&pt) && !params.contains("maxplaybackrate") {
                if !params.is_empty() {
                    out.push(';');
                }
                out.push_str(NARROW);
            }
        } else if let Some(rest) = line.strip_prefix("a=rtpmap:") {
            let pt = rest.split(' ').next().unwrap_or("");
            if opus.contains(&pt) && !has_fmtp(pt) {
                out.push_str(&format!("\r\na=fmtp:{pt} {NARROW}"));
            }
        }
        out.push_str("\r\n");
    }
    out
}

/// Put the leg's preferred candidate address in `c=` and the `m=` port where
/// str0m writes JSEP's placeholders (`0.0.0.0`, port 9). Browsers only use the
/// candidates, but SIP proxies, SBCs and call recorders read `c=`/`m=`, and a
/// 0.0.0.0 there reads as "hold" (RFC 2543) to older ones. Rejected m-lines
/// (port 0) stay rejected.
/// `sdp` with `version` as its `o=` line's session version.
pub(super) fn with_origin_version(sdp: &str, version: u64) -> String {
    let mut out = String::with_capacity(sdp.len() + 8);
    for line in sdp.lines() {
        let line = line.trim_end();
        match line.strip_prefix("o=") {
            Some(origin) => {
                let fields: Vec<&str> = origin.split(' ').collect();
                if fields.len() == 6 {
                    out.push_str(&format!(
                        "o={} {} {version} {} {} {}",
                        fields[0], fields[1], fields[3], fields[4], fields[5]
                    ));
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push_str("\r\n");
    }
    out
}

pub(super) fn with_connection_address(sdp: &str, addr: SocketAddr) -> String {
    let (family, ip) = match addr {
        SocketAddr::V4(a) => ("IP4", a.ip().to_string()),
        SocketAddr::V6(a) => ("IP6", a.ip().to_string()),
    };
    let mut out = String::with_capacity(sdp.len() + 32);
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(origin) = line.strip_prefix("o=") {
            // o=<user> <session id> <version> IN IP4 <address>
            let fields: Vec<&str> = origin.split(' ').collect();
            if fields.len() == 6 {
                out.push_str(&format!(
                    "o={} {} {} IN {family} {ip}",
                    fields[0], fields[1], fields[2]
                ));
            } else {
                out.push_str(line);
            }
        } else if line.starts_with("c=IN ") {
            out.push_str(&format!("c=IN {family} {ip}"));
        } else if let Some(rest) = line.strip_prefix("m=") {
            let mut fields = rest.splitn(3, ' ');
            let kind = fields.next().unwrap_or_default();
            let port = fields.next().unwrap_or_default();
            let tail = fields.next().unwrap_or_default();
            if port == "9" {
                out.push_str(&format!("m={kind} {} {tail}", addr.port()));
            } else {
                out.push_str(line);
            }
        } else if let Some(rest) = line.strip_prefix("a=rtcp:") {
            // `a=rtcp:9 IN IP4 0.0.0.0`: with rtcp-mux RTCP shares the RTP port.
            if rest.contains("0.0.0.0") || rest.contains("IN IP6 ::") {
                out.push_str(&format!("a=rtcp:{} IN {family} {ip}", addr.port()));
            } else {
                out.push_str(line);
            }
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opus_is_asked_for_narrowband_and_nothing_else_changes() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0 126\r\na=rtpmap:111 opus/48000/2\r\n\
                   a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\n\
                   a=rtpmap:126 telephone-event/8000\r\na=fmtp:126 0-16\r\n";
        let out = with_narrowband_opus(sdp);
        assert!(out.contains(
            "a=fmtp:111 minptime=10;useinbandfec=1;maxplaybackrate=8000;sprop-maxcapturerate=8000\r\n"
        ));
        assert!(out.contains("a=fmtp:126 0-16\r\n"), "{out}");
        assert_eq!(out.lines().count(), sdp.lines().count());
        // Idempotent, and an opus format without fmtp gets one.
        assert_eq!(with_narrowband_opus(&out), out);
        let bare = "m=audio 9 RTP/AVP 96\r\na=rtpmap:96 OPUS/48000/2\r\n";
        assert_eq!(
            with_narrowband_opus(bare),
            "m=audio 9 RTP/AVP 96\r\na=rtpmap:96 OPUS/48000/2\r\na=fmtp:96 maxplaybackrate=8000;sprop-maxcapturerate=8000\r\n"
        );
        // No opus: unchanged.
        let g711 = "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
        assert_eq!(with_narrowband_opus(g711), g711);
    }

    const AVP_OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n";

    #[test]
    fn plain_rtp_offer_is_refused_with_a_clear_error() {
        let err = check_webrtc_offer(AVP_OFFER).expect_err("RTP/AVP is not WebRTC");
        assert!(matches!(err, WebRtcError::NotWebRtc(_)), "{err}");
        assert!(err.to_string().contains("RTP/AVP"), "{err}");
        assert!(matches!(
            check_webrtc_offer("v=0\r\n"),
            Err(WebRtcError::Sdp(_))
        ));
        let no_fp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=ice-ufrag:abcd\r\n";
        assert!(matches!(
            check_webrtc_offer(no_fp),
            Err(WebRtcError::NotWebRtc(_))
        ));
    }

    #[test]
    fn placeholders_replaced_by_the_candidate_address() {
        let sdp = "v=0\r\no=str0m-0.25.0 42 2 IN IP4 0.0.0.0\r\nc=IN IP4 0.0.0.0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0 101\r\na=rtcp:9 IN IP4 0.0.0.0\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\n";
        let fixed = with_connection_address(sdp, "127.0.0.1:31000".parse().expect("addr"));
        assert!(!fixed.contains("0.0.0.0"), "{fixed}");
        assert!(fixed.contains("c=IN IP4 127.0.0.1\r\n"), "{fixed}");
        assert!(
            fixed.contains("o=str0m-0.25.0 42 2 IN IP4 127.0.0.1\r\n"),
            "{fixed}"
        );
        assert!(fixed.contains("m=audio 31000 UDP/TLS/RTP/SAVPF 0 101\r\n"));
        assert!(fixed.contains("a=rtcp:31000 IN IP4 127.0.0.1\r\n"));
        assert!(fixed.contains("m=video 0 UDP/TLS/RTP/SAVPF 96\r\n"));
    }
}
