//! Transcoding between legs that share no codec: opus (a browser) ↔ G.711
//! (a phone or a carrier), and PCMU ↔ PCMA. One [`Transcoder`] per
//! direction of a call; G.711 between two G.711 legs of the same law is
//! relayed without decoding and never comes here.
//!
//! # What [`Transcoder::push`] produces
//!
//! For each received packet, in order, zero or more packets in the target
//! codec, appended to the caller's `Vec`:
//! - **payload type**: the one given to [`Transcoder::new`] (the target
//!   leg's number for the target codec);
//! - **SSRC and marker**: the received packet's;
//! - **sequence number**: the received packet's, so the relay's per-leg
//!   rewrite (fixed offsets) applies unchanged and a loss the transcoder
//!   does not fill stays visible to the far receiver;
//! - **timestamp**: in the target codec's clock, continuous with the input
//!   (opus ticks at 48 kHz, G.711 at 8 kHz: ×6 or ÷6 of the input's
//!   advance). The first packet of a stream maps the input timestamp by
//!   the same factor; the caller's rewrite re-bases it into the leg's
//!   outgoing stream anyway;
//! - **duration**: the input packet's (20 ms in, 20 ms out; a 60 ms opus
//!   packet becomes one 60 ms G.711 packet).
//!
//! # Loss, DTX, reordering
//!
//! No jitter buffer here: the relay forwards as packets come, and the far
//! receiver has its own. So:
//! - **opus → G.711, packets lost** (a sequence gap of up to
//!   [`MAX_CONCEALED_FRAMES`] whose timestamps agree with it): when the
//!   next packet arrives, the missing frames are produced before it, with
//!   the missing sequence numbers and timestamps — by libopus's PLC, and
//!   the last one from the next packet's in-band FEC (which the browser's
//!   encoder adds when its receiver reports loss; libopus conceals instead
//!   when the packet carries none). A phone's G.711 decoder has no PLC worth
//!   the name; opus's is far better, and FEC brings back real speech. The
//!   concealed frames leave 20 ms late, like a jittered packet;
//! - **G.711 → opus, packets lost**: nothing is filled; the browser sees
//!   the gap in sequence numbers and its own opus decoder conceals it;
//! - **opus DTX** (the sender stops sending during silence: sequence numbers
//!   continue, the timestamp jumps): not a loss, nothing filled; the output
//!   timestamp jumps likewise. A 1-byte DTX packet (TOC only) decodes as
//!   concealment / comfort noise of its duration;
//! - **late or duplicate packets** (sequence not after the last one) are
//!   dropped and counted: their slot was already sent or concealed, and
//!   decoding out of order would corrupt the decoder's state;
//! - a **new SSRC** (or a sequence jump backwards beyond reordering) starts
//!   a new stream: the opus decoder is reset and the timestamp re-mapped.
//!
//! Garbage from the network never panics: a packet that does not decode
//! returns an error, is counted, and leaves the state as it was (the next
//! good packet then conceals it like a loss).

use bytes::Bytes;

use super::g711;
use super::opus::{
    OpusDecoder, OpusEncoder, OpusError, OpusSettings, MAX_PACKET_SAMPLES, TICKS_PER_SAMPLE,
};
use crate::codec::Codec;
use crate::packet::RtpPacket;

/// The longest gap (in packets) filled by concealment; beyond it the loss
/// is a network outage or a sender restart, and 100 ms of extrapolated
/// speech would only be noise.
pub const MAX_CONCEALED_FRAMES: u16 = 5;

/// A sequence number this far behind the last one is not a late packet
/// but a sender that restarted its numbering.
const MAX_REORDER: i16 = 100;

#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    #[error("no transcoding from {from:?} to {to:?} (only opus ↔ G.711 and PCMU ↔ PCMA)")]
    Unsupported { from: Codec, to: Codec },
    #[error("empty RTP payload")]
    EmptyPayload,
    #[error(transparent)]
    Opus(#[from] OpusError),
}

/// Counters of one direction, for the call's quality data and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TranscodeStats {
    pub packets_in: u64,
    pub packets_out: u64,
    /// Frames produced for lost packets (PLC, or FEC when the next packet
    /// carried it).
    pub concealed: u64,
    /// Late or duplicate packets dropped.
    pub late: u64,
    /// Packets that did not decode or encode.
    pub errors: u64,
}

/// The last packet that went through: where the next one should land.
#[derive(Debug, Clone, Copy)]
struct Last {
    ssrc: u32,
    sequence: u16,
    in_timestamp: u32,
    out_timestamp: u32,
    /// The packet's duration in 8 kHz samples.
    samples: u32,
}

/// One direction of a transcoded call.
#[derive(Debug)]
pub struct Transcoder {
    from: Codec,
    to: Codec,
    payload_type: u8,
    decoder: Option<OpusDecoder>,
    encoder: Option<OpusEncoder>,
    last: Option<Last>,
    pcm: Box<[i16; MAX_PACKET_SAMPLES]>,
    stats: TranscodeStats,
}

fn is_g711(c: Codec) -> bool {
    matches!(c, Codec::Pcmu | Codec::Pcma)
}

/// RTP ticks per 8 kHz sample in `codec`'s clock.
fn ticks(codec: Codec) -> u32 {
    if codec == Codec::Opus {
        TICKS_PER_SAMPLE
    } else {
        1
    }
}

impl Transcoder {
    /// A transcoder from `from` to `to`, stamping `payload_type` (the
    /// target leg's number for `to`) on what it produces. `opus` is used
    /// when `to` is opus.
    pub fn new(
        from: Codec,
        to: Codec,
        payload_type: u8,
        opus: &OpusSettings,
    ) -> Result<Self, TranscodeError> {
        let supported = (from == Codec::Opus && is_g711(to))
            || (is_g711(from) && to == Codec::Opus)
            || (is_g711(from) && is_g711(to) && from != to);
        if !supported {
            return Err(TranscodeError::Unsupported { from, to });
        }
        Ok(Transcoder {
            from,
            to,
            payload_type,
            decoder: if from == Codec::Opus {
                Some(OpusDecoder::new()?)
            } else {
                None
            },
            encoder: if to == Codec::Opus {
                Some(OpusEncoder::new(opus)?)
            } else {
                None
            },
            last: None,
            pcm: Box::new([0; MAX_PACKET_SAMPLES]),
            stats: TranscodeStats::default(),
        })
    }

    pub fn from_codec(&self) -> Codec {
        self.from
    }

    pub fn to_codec(&self) -> Codec {
        self.to
    }

    pub fn stats(&self) -> TranscodeStats {
        self.stats
    }

    /// Toward opus: the loss the browser's receiver reports (RTCP fraction
    /// lost, in percent), so the encoder's FEC follows the network. No-op
    /// toward G.711.
    pub fn set_expected_loss(&mut self, percent: u8) -> Result<(), TranscodeError> {
        if let Some(encoder) = self.encoder.as_mut() {
            encoder.set_expected_loss(percent)?;
        }
        Ok(())
    }

    /// Toward opus: the loss percentage the encoder plans its FEC for
    /// (read back from libopus); `None` toward G.711.
    pub fn expected_loss(&mut self) -> Option<u8> {
        self.encoder.as_mut()?.expected_loss().ok()
    }

    /// Where an input timestamp `in_timestamp` of `ssrc` (in the `from`
    /// codec's clock) lands in the output stream: the same mapping the
    /// audio got, so an RFC 4733 event of that source relayed beside the
    /// transcoded audio stays aligned with it. Before any audio of that
    /// source, the first packet's mapping (×6 or ÷6).
    pub fn map_timestamp(&self, ssrc: u32, in_timestamp: u32) -> u32 {
        let (in_ticks, out_ticks) = (ticks(self.from), ticks(self.to));
        match self.last {
            Some(l) if l.ssrc == ssrc => {
                let dts = in_timestamp.wrapping_sub(l.in_timestamp) as i32;
                l.out_timestamp
                    .wrapping_add(((dts / in_ticks as i32) * out_ticks as i32) as u32)
            }
            _ => self.first_timestamp(in_timestamp),
        }
    }

    /// Transcodes one received packet (in the `from` codec), appending the
    /// packets to send (see the module docs) to `out`. On an error nothing
    /// is appended and the state is unchanged.
    pub fn push(
        &mut self,
        packet: &RtpPacket,
        out: &mut Vec<RtpPacket>,
    ) -> Result<(), TranscodeError> {
        self.stats.packets_in += 1;
        let before = out.len();
        let result = self.push_inner(packet, out);
        if result.is_err() {
            out.truncate(before);
            self.stats.errors += 1;
        }
        self.stats.packets_out += (out.len() - before) as u64;
        result
    }

    fn push_inner(
        &mut self,
        packet: &RtpPacket,
        out: &mut Vec<RtpPacket>,
    ) -> Result<(), TranscodeError> {
        if packet.payload.is_empty() {
            return Err(TranscodeError::EmptyPayload);
        }
        let (in_ticks, out_ticks) = (ticks(self.from), ticks(self.to));
        let mut previous = None;
        let mut lost = 0u16;
        let mut restart = self.last.is_some();
        let out_timestamp = match self.last {
            Some(l) if l.ssrc == packet.ssrc => {
                let dseq = packet.sequence.wrapping_sub(l.sequence) as i16;
                if dseq <= 0 && dseq > -MAX_REORDER {
                    self.stats.late += 1;
                    return Ok(());
                }
                if dseq > 0 {
                    // i32 differences keep timestamp wrap-around harmless.
                    let dts = packet.timestamp.wrapping_sub(l.in_timestamp) as i32;
                    let missing = (dseq - 1) as u16;
                    let expected = i64::from(missing + 1) * i64::from(l.samples * in_ticks);
                    if missing > 0 && missing <= MAX_CONCEALED_FRAMES && i64::from(dts) == expected
                    {
                        lost = missing;
                    }
                    previous = Some(l);
                    restart = false;
                    l.out_timestamp
                        .wrapping_add(((dts / in_ticks as i32) * out_ticks as i32) as u32)
                } else {
                    self.first_timestamp(packet.timestamp)
                }
            }
            _ => self.first_timestamp(packet.timestamp),
        };

        let samples = match self.from {
            Codec::Opus => {
                let gap = previous.filter(|_| lost > 0);
                self.decode_opus(&packet.payload, restart, gap, lost, out)?
            }
            law => self.decode_g711(law, &packet.payload)?,
        };
        let payload = self.encode_pcm(samples)?;
        out.push(RtpPacket {
            payload_type: self.payload_type,
            sequence: packet.sequence,
            timestamp: out_timestamp,
            ssrc: packet.ssrc,
            marker: packet.marker,
            payload,
        });
        self.last = Some(Last {
            ssrc: packet.ssrc,
            sequence: packet.sequence,
            in_timestamp: packet.timestamp,
            out_timestamp,
            samples: samples as u32,
        });
        Ok(())
    }

    /// A stream starts (first packet, new SSRC, restart): the output
    /// timestamp is the input's in the target clock.
    fn first_timestamp(&self, in_timestamp: u32) -> u32 {
        (in_timestamp / ticks(self.from)).wrapping_mul(ticks(self.to))
    }

    /// Decodes an opus packet into `self.pcm`, returning its sample count.
    /// A `restart` (new SSRC, renumbered sender) resets the decoder first:
    /// the old stream's state would colour the new one's first frames.
    /// After a gap (`gap` is the last packet before it, `lost` frames
    /// missing), the missing frames are produced first (they come first
    /// in the decoder's timeline), the last from `payload`'s FEC.
    fn decode_opus(
        &mut self,
        payload: &[u8],
        restart: bool,
        gap: Option<Last>,
        lost: u16,
        out: &mut Vec<RtpPacket>,
    ) -> Result<usize, TranscodeError> {
        let (from, to) = (self.from, self.to);
        let decoder = self
            .decoder
            .as_mut()
            .ok_or(TranscodeError::Unsupported { from, to })?;
        if restart || gap.is_some() {
            // Checked before the state moves, so garbage after a gap or
            // on a new SSRC changes nothing.
            opus_packet_samples(payload)?;
        }
        if restart {
            decoder.reset()?;
        }
        if let Some(l) = gap {
            let frame = l.samples as usize;
            for i in 1..=lost {
                let pcm = &mut self.pcm[..];
                let n = if i == lost {
                    decoder.recover(payload, frame, pcm)
                } else {
                    decoder.conceal(frame, pcm)
                };
                // A duration libopus refuses to conceal: no filling.
                let Ok(n) = n else {
                    break;
                };
                out.push(RtpPacket {
                    payload_type: self.payload_type,
                    sequence: l.sequence.wrapping_add(i),
                    timestamp: l
                        .out_timestamp
                        .wrapping_add(u32::from(i) * l.samples * ticks(to)),
                    ssrc: l.ssrc,
                    marker: false,
                    payload: encode_g711(to, &self.pcm[..n]),
                });
                self.stats.concealed += 1;
            }
        }
        Ok(decoder.decode(payload, &mut self.pcm)?)
    }

    /// Decodes a G.711 payload into `self.pcm`, returning its sample count.
    fn decode_g711(&mut self, law: Codec, payload: &[u8]) -> Result<usize, TranscodeError> {
        // The opus encoder takes only these durations; checked before any
        // state changes.
        if self.to == Codec::Opus && !matches!(payload.len(), 80 | 160 | 320 | 480) {
            return Err(OpusError::FrameSize(payload.len()).into());
        }
        let n = payload.len().min(MAX_PACKET_SAMPLES);
        let decode = if law == Codec::Pcmu {
            g711::ulaw_to_linear
        } else {
            g711::alaw_to_linear
        };
        for (s, &code) in self.pcm.iter_mut().zip(&payload[..n]) {
            *s = decode(code);
        }
        Ok(n)
    }

    fn encode_pcm(&mut self, samples: usize) -> Result<Bytes, TranscodeError> {
        let pcm = &self.pcm[..samples];
        match (self.to, self.encoder.as_mut()) {
            (Codec::Opus, Some(encoder)) => Ok(encoder.encode(pcm)?),
            (to, _) => Ok(encode_g711(to, pcm)),
        }
    }
}

fn encode_g711(law: Codec, pcm: &[i16]) -> Bytes {
    let mut payload = Vec::with_capacity(pcm.len());
    if law == Codec::Pcma {
        g711::encode_alaw_into(pcm, &mut payload);
    } else {
        g711::encode_ulaw_into(pcm, &mut payload);
    }
    Bytes::from(payload)
}

/// The duration of an opus packet at 8 kHz from its TOC and frame count
/// (RFC 6716 §3.1), checked for well-formedness by libopus's parser.
fn opus_packet_samples(payload: &[u8]) -> Result<usize, TranscodeError> {
    let n =
        opus::packet::get_nb_samples(payload, super::opus::PCM_RATE).map_err(OpusError::from)?;
    if n == 0 || n > MAX_PACKET_SAMPLES {
        return Err(OpusError::FrameSize(n).into());
    }
    opus::packet::parse(payload).map_err(OpusError::from)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::egress::{Packetizer, FRAME_SAMPLES};
    use crate::core::testaudio::{
        dominant_frequency, goertzel, rms, sine, zero_crossings_per_second,
    };
    use crate::core::testutil::Rng;

    const SSRC: u32 = 0x1234_5678;

    /// `pcm` as 20 ms packets of `codec`, starting at the given numbers.
    fn stream(codec: Codec, pt: u8, pcm: &[i16], seq: u16, ts: u32) -> Vec<RtpPacket> {
        let mut p = Packetizer::new(codec, pt, SSRC, seq, ts, &OpusSettings::default())
            .expect("packetizer");
        pcm.chunks_exact(FRAME_SAMPLES)
            .map(|c| {
                let mut frame = [0; FRAME_SAMPLES];
                frame.copy_from_slice(c);
                p.packetize(&frame).expect("packetize")
            })
            .collect()
    }

    fn run(t: &mut Transcoder, input: &[RtpPacket]) -> Vec<RtpPacket> {
        let mut out = Vec::new();
        for p in input {
            t.push(p, &mut out).expect("push");
        }
        out
    }

    fn decode_g711(packets: &[RtpPacket], law: Codec) -> Vec<i16> {
        let mut pcm = Vec::new();
        for p in packets {
            g711::decode_into(law, &p.payload, &mut pcm).expect("g711");
        }
        pcm
    }

    fn transcoder(from: Codec, to: Codec, pt: u8) -> Transcoder {
        Transcoder::new(from, to, pt, &OpusSettings::default()).expect("transcoder")
    }

    #[test]
    fn pcmu_opus_pcmu_round_trip_keeps_frequency_and_level() {
        // Pure tones near 2.5 kHz came back up to 3 dB low at complexity 1
        // (0.72 of the level; 0.97 at complexity 9): SILK's long-term
        // predictor on a pure tone, not seen on speech; 3 kHz is fine.
        for frequency in [440.0, 1_000.0, 2_000.0, 3_000.0] {
            let input = sine(8_000 * 2, frequency, 8_000.0);
            let pcmu = stream(Codec::Pcmu, 0, &input, 100, 16_000);
            let opus = run(&mut transcoder(Codec::Pcmu, Codec::Opus, 111), &pcmu);
            // Really opus: narrowband SILK (TOC configs 0..=3), far smaller
            // than the 160 bytes of G.711.
            assert!(
                opus.iter().all(|p| p.payload[0] >> 3 <= 3),
                "{frequency} Hz: not SILK NB"
            );
            let bytes: usize = opus.iter().map(|p| p.payload.len()).sum();
            assert!(
                bytes / opus.len() <= 100,
                "{frequency} Hz: {} bytes/packet",
                bytes / opus.len()
            );
            let back = run(&mut transcoder(Codec::Opus, Codec::Pcmu, 0), &opus);
            let output = decode_g711(&back, Codec::Pcmu);
            assert_eq!(output.len(), input.len());
            // Skip the codec's start-up (encoder lookahead, first frames).
            let (a, b) = (&input[2_000..], &output[2_000..]);
            let found = dominant_frequency(b);
            assert!(
                (found - frequency).abs() <= 20.0,
                "{frequency} Hz came back as {found} Hz"
            );
            let level = goertzel(b, frequency) / goertzel(a, frequency);
            assert!(
                (0.85..1.15).contains(&level),
                "{frequency} Hz: level ratio {level:.2}"
            );
            let zc = zero_crossings_per_second(b) / (2.0 * frequency);
            assert!(
                (0.95..1.05).contains(&zc),
                "{frequency} Hz: zero crossings ratio {zc:.3}"
            );
        }
    }

    #[test]
    fn silence_stays_silent_and_a_wrong_rate_would_show() {
        // The frequency check above can fail: a 1 kHz tone played at the
        // wrong rate (decoded at 16 kHz, read as 8 kHz) is found at 500 Hz.
        let tone = sine(8_000, 1_000.0, 8_000.0);
        let slowed: Vec<i16> = tone.iter().flat_map(|&s| [s, s]).collect();
        assert!((dominant_frequency(&slowed[..8_000]) - 500.0).abs() <= 20.0);
        let silence = vec![0i16; 8_000];
        let pcmu = stream(Codec::Pcmu, 0, &silence, 1, 0);
        let opus = run(&mut transcoder(Codec::Pcmu, Codec::Opus, 111), &pcmu);
        let back = decode_g711(
            &run(&mut transcoder(Codec::Opus, Codec::Pcmu, 0), &opus),
            Codec::Pcmu,
        );
        assert!(rms(&back) < 50.0, "silence came back at rms {}", rms(&back));
    }

    #[test]
    fn output_numbers_follow_the_input() {
        let input = sine(8_000, 700.0, 5_000.0);
        let pcmu = stream(Codec::Pcmu, 0, &input, 65_530, u32::MAX - 800);
        let mut t = transcoder(Codec::Pcmu, Codec::Opus, 111);
        let opus = run(&mut t, &pcmu);
        assert_eq!(opus.len(), pcmu.len());
        for (i, (o, p)) in opus.iter().zip(&pcmu).enumerate() {
            assert_eq!(o.payload_type, 111);
            assert_eq!(o.sequence, p.sequence);
            assert_eq!(o.ssrc, SSRC);
            assert_eq!(o.marker, i == 0);
            if i > 0 {
                assert_eq!(
                    o.timestamp.wrapping_sub(opus[i - 1].timestamp),
                    960,
                    "packet {i}"
                );
            }
        }
        assert_eq!(opus[0].timestamp, (u32::MAX - 800).wrapping_mul(6));
        let mut back = transcoder(Codec::Opus, Codec::Pcma, 8);
        let pcma = run(&mut back, &opus);
        for (i, w) in pcma.windows(2).enumerate() {
            assert_eq!(
                w[1].timestamp.wrapping_sub(w[0].timestamp),
                160,
                "packet {i}"
            );
            assert_eq!(w[1].sequence, w[0].sequence.wrapping_add(1));
            assert_eq!(w[1].payload.len(), 160);
            assert_eq!(w[1].payload_type, 8);
        }
        assert_eq!(t.stats().packets_in, 50);
        assert_eq!(t.stats().packets_out, 50);
    }

    #[test]
    fn lost_opus_packets_are_concealed_with_the_right_numbers_and_length() {
        let input = sine(8_000 * 2, 600.0, 8_000.0);
        let opus = stream(Codec::Opus, 111, &input, 1_000, 48_000);
        let mut t = transcoder(Codec::Opus, Codec::Pcmu, 0);
        let mut out = Vec::new();
        // Packets 0..20, then 21 lost, then 22; 30..32 lost; 40..48 lost
        // (more than MAX_CONCEALED_FRAMES: not filled).
        let lost = |i: usize| i == 21 || (30..33).contains(&i) || (40..48).contains(&i);
        let mut per_push = Vec::new();
        for (i, p) in opus.iter().enumerate().take(60) {
            if lost(i) {
                continue;
            }
            let before = out.len();
            t.push(p, &mut out).expect("push");
            per_push.push((i, out.len() - before));
        }
        let pushed = |i| per_push.iter().find(|(j, _)| *j == i).map(|(_, n)| *n);
        assert_eq!(pushed(22), Some(2));
        assert_eq!(pushed(33), Some(4));
        assert_eq!(pushed(48), Some(1));
        assert_eq!(pushed(10), Some(1));
        assert_eq!(t.stats().concealed, 4);
        // Every output packet: 20 ms of PCMU, sequence numbers continuous
        // except for the unfilled gap, timestamps 160 per sequence step.
        assert!(out.iter().all(|p| p.payload.len() == 160));
        for w in out.windows(2) {
            let dseq = w[1].sequence.wrapping_sub(w[0].sequence);
            assert_eq!(
                w[1].timestamp.wrapping_sub(w[0].timestamp),
                160 * u32::from(dseq)
            );
            assert!(
                dseq == 1 || (dseq == 9 && w[1].sequence == 1_048),
                "{dseq} at {}",
                w[1].sequence
            );
        }
        // The concealed frame continues the tone rather than going silent.
        let concealed = out.iter().find(|p| p.sequence == 1_021).expect("frame 21");
        assert!(!concealed.marker);
        let pcm = decode_g711(std::slice::from_ref(concealed), Codec::Pcmu);
        assert!(rms(&pcm) > 0.3 * rms(&input), "concealed rms {}", rms(&pcm));
    }

    /// The lost frame is the first of a new tone: PLC alone can only
    /// extrapolate the old tone, FEC (the next packet's copy) brings the
    /// new one back. With FEC off the same frame is the old tone.
    #[test]
    fn fec_recovers_the_content_of_a_lost_frame() {
        let mut input = sine(8_000, 500.0, 8_000.0);
        input.extend(sine(8_000, 1_500.0, 8_000.0));
        let mut new_tone = Vec::new();
        for fec in [true, false] {
            let settings = OpusSettings {
                fec,
                ..OpusSettings::default()
            };
            let mut p =
                Packetizer::new(Codec::Opus, 111, SSRC, 0, 0, &settings).expect("packetizer");
            let opus: Vec<RtpPacket> = input
                .chunks_exact(FRAME_SAMPLES)
                .map(|c| {
                    let mut frame = [0; FRAME_SAMPLES];
                    frame.copy_from_slice(c);
                    p.packetize(&frame).expect("packetize")
                })
                .collect();
            let mut t = transcoder(Codec::Opus, Codec::Pcmu, 0);
            let mut out = Vec::new();
            for (i, packet) in opus.iter().enumerate() {
                if i != 50 {
                    t.push(packet, &mut out).expect("push");
                }
            }
            let frame = out.iter().find(|p| p.sequence == 50).expect("frame 50");
            let pcm = decode_g711(std::slice::from_ref(frame), Codec::Pcmu);
            new_tone.push(goertzel(&pcm, 1_500.0));
        }
        let (with_fec, without) = (new_tone[0], new_tone[1]);
        assert!(
            with_fec > 1_500.0,
            "FEC: the 1500 Hz tone at {with_fec:.0} of 8000"
        );
        assert!(
            without < 500.0,
            "PLC only: the 1500 Hz tone at {without:.0}"
        );
    }

    #[test]
    fn dtx_gaps_are_not_concealed_and_toc_only_packets_decode() {
        // A sender in DTX (libopus, as browsers run it) stops sending during
        // silence: sequence numbers go on, the timestamp jumps.
        let mut enc = opus::Encoder::new(8_000, opus::Channels::Mono, opus::Application::Voip)
            .expect("encoder");
        enc.set_dtx(true).expect("dtx");
        let mut signal = sine(4_000, 800.0, 6_000.0);
        signal.extend(vec![0i16; 16_000]);
        signal.extend(sine(4_000, 800.0, 6_000.0));
        let mut buf = [0u8; 1_500];
        let mut packets = Vec::new();
        let mut seq = 7u16;
        for (i, frame) in signal.chunks_exact(160).enumerate() {
            let n = enc.encode(frame, &mut buf).expect("encode");
            if n <= 2 {
                continue; // "does not need to be transmitted" (libopus docs)
            }
            packets.push(RtpPacket {
                payload_type: 111,
                sequence: seq,
                timestamp: 960 * i as u32,
                ssrc: SSRC,
                marker: false,
                payload: Bytes::copy_from_slice(&buf[..n]),
            });
            seq = seq.wrapping_add(1);
        }
        assert!(
            packets.len() < 100,
            "DTX sent {} of 150 frames",
            packets.len()
        );
        let mut t = transcoder(Codec::Opus, Codec::Pcmu, 0);
        let out = run(&mut t, &packets);
        assert_eq!(out.len(), packets.len());
        assert_eq!(t.stats().concealed, 0);
        for (o, w) in out.windows(2).zip(packets.windows(2)) {
            assert_eq!(
                o[1].timestamp.wrapping_sub(o[0].timestamp),
                w[1].timestamp.wrapping_sub(w[0].timestamp) / 6
            );
        }
        // A TOC-only packet (SILK NB 20 ms, no frame data) is 20 ms.
        let toc_only = RtpPacket {
            payload: Bytes::from_static(&[0x08]),
            sequence: seq,
            timestamp: 960 * 200,
            ..packets[0].clone()
        };
        let mut out = Vec::new();
        t.push(&toc_only, &mut out).expect("toc only");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].payload.len(), 160);
    }

    #[test]
    fn late_duplicate_and_restarted_packets() {
        let input = sine(1_600, 900.0, 4_000.0);
        let pcmu = stream(Codec::Pcmu, 0, &input, 10, 0);
        let mut t = transcoder(Codec::Pcmu, Codec::Opus, 111);
        let mut out = Vec::new();
        for i in [0, 1, 3, 2, 3, 4] {
            t.push(&pcmu[i], &mut out).expect("push");
        }
        assert_eq!(
            out.iter().map(|p| p.sequence).collect::<Vec<_>>(),
            [10, 11, 13, 14]
        );
        assert_eq!(t.stats().late, 2);
        // Far behind: a sender that restarted its numbering, followed.
        let mut restarted = pcmu[5].clone();
        restarted.sequence = 10_000;
        restarted.timestamp = 123_456;
        t.push(&restarted, &mut out).expect("restart");
        assert_eq!(out.last().map(|p| p.timestamp), Some(123_456 * 6));
        // A new SSRC starts a new stream: its timestamp is mapped afresh.
        let mut other = pcmu[6].clone();
        other.ssrc = 99;
        other.timestamp = 8_000;
        other.sequence = 3;
        t.push(&other, &mut out).expect("new ssrc");
        assert_eq!(
            out.last().map(|p| (p.ssrc, p.timestamp)),
            Some((99, 48_000))
        );
    }

    #[test]
    fn pcmu_to_pcma_and_back() {
        let input = sine(8_000, 1_200.0, 10_000.0);
        let pcmu = stream(Codec::Pcmu, 0, &input, 1, 0);
        let pcma = run(&mut transcoder(Codec::Pcmu, Codec::Pcma, 8), &pcmu);
        assert!(pcma
            .iter()
            .all(|p| p.payload_type == 8 && p.payload.len() == 160));
        let back = decode_g711(
            &run(&mut transcoder(Codec::Pcma, Codec::Pcmu, 0), &pcma),
            Codec::Pcmu,
        );
        assert_eq!(back.len(), input.len());
        let level = goertzel(&back, 1_200.0) / goertzel(&input, 1_200.0);
        assert!((0.97..1.03).contains(&level), "level {level}");
    }

    #[test]
    fn browser_fullband_opus_decodes_to_8_khz() {
        // What a browser sends: 48 kHz input, fullband, music/voice modes.
        let mut enc = opus::Encoder::new(48_000, opus::Channels::Stereo, opus::Application::Audio)
            .expect("encoder");
        enc.set_bitrate(opus::Bitrate::Bits(48_000))
            .expect("bitrate");
        let tone: Vec<i16> = (0..48_000 * 2)
            .flat_map(|i| {
                let s = (6_000.0
                    * (2.0 * std::f64::consts::PI * 1_000.0 * i as f64 / 48_000.0).sin())
                    as i16;
                [s, s]
            })
            .collect();
        let mut buf = [0u8; 4_000];
        let packets: Vec<RtpPacket> = tone
            .chunks_exact(960 * 2)
            .enumerate()
            .map(|(i, frame)| {
                let n = enc.encode(frame, &mut buf).expect("encode");
                RtpPacket {
                    payload_type: 111,
                    sequence: i as u16,
                    timestamp: 960 * i as u32,
                    ssrc: SSRC,
                    marker: false,
                    payload: Bytes::copy_from_slice(&buf[..n]),
                }
            })
            .collect();
        let configs: std::collections::BTreeSet<u8> =
            packets.iter().map(|p| p.payload[0] >> 3).collect();
        // libopus switches modes within the stream (SILK wideband, hybrid,
        // CELT): all of them must come out as 8 kHz.
        assert!(
            configs.iter().any(|&c| c >= 12),
            "no hybrid/CELT: TOC configs {configs:?}"
        );
        let out = run(&mut transcoder(Codec::Opus, Codec::Pcma, 8), &packets);
        let pcm = decode_g711(&out, Codec::Pcma);
        assert_eq!(pcm.len(), 16_000);
        assert!((dominant_frequency(&pcm[2_000..]) - 1_000.0).abs() <= 20.0);
        let level = goertzel(&pcm[2_000..], 1_000.0) / 6_000.0;
        assert!((0.7..1.25).contains(&level), "level {level}");
    }

    #[test]
    fn g711_frames_opus_cannot_carry_are_refused() {
        let mut t = transcoder(Codec::Pcmu, Codec::Opus, 111);
        let mut out = Vec::new();
        let odd = RtpPacket {
            payload_type: 0,
            sequence: 1,
            timestamp: 0,
            ssrc: SSRC,
            marker: false,
            payload: Bytes::from(vec![0xffu8; 240]), // 30 ms
        };
        assert!(matches!(
            t.push(&odd, &mut out),
            Err(TranscodeError::Opus(OpusError::FrameSize(240)))
        ));
        let empty = RtpPacket {
            payload: Bytes::new(),
            ..odd.clone()
        };
        assert!(matches!(
            t.push(&empty, &mut out),
            Err(TranscodeError::EmptyPayload)
        ));
        assert!(out.is_empty());
        assert_eq!(t.stats().errors, 2);
        // 30 ms between two G.711 legs is fine.
        let mut g = transcoder(Codec::Pcmu, Codec::Pcma, 8);
        g.push(&odd, &mut out).expect("30 ms G.711");
        assert_eq!(out[0].payload.len(), 240);
    }

    #[test]
    fn sixty_ms_packets_keep_their_duration_both_ways() {
        let tone = sine(480 * 10, 1_000.0, 6_000.0);
        let pcmu: Vec<RtpPacket> = tone
            .chunks_exact(480)
            .enumerate()
            .map(|(i, c)| RtpPacket {
                payload_type: 0,
                sequence: i as u16,
                timestamp: 480 * i as u32,
                ssrc: SSRC,
                marker: false,
                payload: g711::encode_ulaw(c).into(),
            })
            .collect();
        let opus = run(&mut transcoder(Codec::Pcmu, Codec::Opus, 111), &pcmu);
        for w in opus.windows(2) {
            assert_eq!(w[1].timestamp.wrapping_sub(w[0].timestamp), 2_880);
        }
        let mut samples = [0i16; MAX_PACKET_SAMPLES];
        let mut decoder = OpusDecoder::new().expect("decoder");
        assert_eq!(
            decoder
                .decode(&opus[0].payload, &mut samples)
                .expect("decode"),
            480
        );
        let back = run(&mut transcoder(Codec::Opus, Codec::Pcmu, 0), &opus);
        assert!(back.iter().all(|p| p.payload.len() == 480));
        for w in back.windows(2) {
            assert_eq!(w[1].timestamp.wrapping_sub(w[0].timestamp), 480);
        }
        let pcm = decode_g711(&back, Codec::Pcmu);
        assert!((dominant_frequency(&pcm[960..]) - 1_000.0).abs() <= 20.0);
    }

    #[test]
    fn unsupported_pairs_are_refused() {
        let s = OpusSettings::default();
        for (from, to) in [
            (Codec::Pcmu, Codec::Pcmu),
            (Codec::Opus, Codec::Opus),
            (Codec::TelephoneEvent { clock_rate: 8_000 }, Codec::Opus),
            (Codec::Pcma, Codec::TelephoneEvent { clock_rate: 8_000 }),
        ] {
            assert!(
                matches!(
                    Transcoder::new(from, to, 0, &s),
                    Err(TranscodeError::Unsupported { .. })
                ),
                "{from:?} -> {to:?}"
            );
        }
    }

    #[test]
    fn garbage_never_panics_and_the_stream_recovers() {
        let mut rng = Rng::new(0x0b05);
        let input = sine(8_000, 1_000.0, 8_000.0);
        let valid = stream(Codec::Opus, 111, &input, 0, 0);
        let mut t = transcoder(Codec::Opus, Codec::Pcmu, 0);
        let mut g = transcoder(Codec::Pcmu, Codec::Opus, 111);
        let mut out = Vec::new();
        let mut seq = 0u16;
        for round in 0..20_000 {
            let payload = if round % 2 == 0 {
                rng.bytes(300)
            } else {
                let pick = rng.below(valid.len());
                rng.mutate(&valid[pick].payload)
            };
            // Sequence numbers mostly forward, sometimes gaps or jumps.
            seq = seq.wrapping_add(match rng.below(10) {
                0 => 3,
                1 => rng.below(65_536) as u16,
                _ => 1,
            });
            let packet = RtpPacket {
                payload_type: 111,
                sequence: seq,
                timestamp: u32::from(seq).wrapping_mul(960),
                ssrc: if rng.below(50) == 0 {
                    rng.next_u64() as u32
                } else {
                    SSRC
                },
                marker: false,
                payload: payload.into(),
            };
            out.clear();
            let _ = t.push(&packet, &mut out);
            let _ = g.push(&packet, &mut out);
            for p in &out {
                assert!(p.payload.len() <= 960 || p.payload_type == 111);
            }
        }
        assert!(t.stats().errors > 1_000, "garbage decoded: {:?}", t.stats());
        // A clean stream afterwards is transcoded normally.
        let mut t = transcoder(Codec::Opus, Codec::Pcmu, 0);
        let back = decode_g711(&run(&mut t, &valid), Codec::Pcmu);
        assert!((dominant_frequency(&back[2_000..]) - 1_000.0).abs() <= 20.0);
    }
}
