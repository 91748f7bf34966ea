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
                    l.out_timestamp
                        .wrapping_add(((dts / in_ticks as i32) * out_ticks as i32) as u32)
                } else {
                    self.new_stream(packet.timestamp)?
                }
            }
            _ => self.new_stream(packet.timestamp)?,
        };

        let samples = match self.from {
            Codec::Opus => self.decode_opus(&packet.payload, previous.filter(|_| lost > 0), lost, out)?,
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
    fn new_stream(&mut self, in_timestamp: u32) -> Result<u32, TranscodeError> {
        if let (Some(decoder), Some(_)) = (self.decoder.as_mut(), self.last) {
            decoder.reset()?;
        }
        Ok((in_timestamp / ticks(self.from)).wrapping_mul(ticks(self.to)))
    }

    /// Decodes an opus packet into `self.pcm`, returning its sample count.
    /// After a gap (`gap` is the last packet before it, `lost` frames
    /// missing), the missing frames are produced first (they come first
    /// in the decoder's timeline), the last from `payload`'s FEC.
    fn decode_opus(
        &mut self,
        payload: &[u8],
        gap: Option<Last>,
        lost: u16,
        out: &mut Vec<RtpPacket>,
    ) -> Result<usize, TranscodeError> {
        let (from, to) = (self.from, self.to);
        let decoder = self
            .decoder
            .as_mut()
            .ok_or(TranscodeError::Unsupported { from, to })?;
        if let Some(l) = gap {
            // Checked before the concealment moves the decoder on, so
            // garbage after a gap changes nothing either.
            opus_packet_samples(payload)?;
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
    let n = opus::packet::get_nb_samples(payload, super::opus::PCM_RATE)
        .map_err(OpusError::from)?;
    if n == 0 || n > MAX_PACKET_SAMPLES {
        return Err(OpusError::FrameSize(n).into());
    }
    opus::packet::parse(payload).map_err(OpusError::from)?;
    Ok(n)
}
