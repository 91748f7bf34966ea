//! Digits the relay sends itself: a DTMF key the other side signalled out
//! of band (a browser's SIP INFO) becomes RFC 4733 events in the outgoing
//! stream toward a leg, paced as `core::dtmf::generate` says (an update
//! every 50 ms, the end three times), with the audio toward that leg held
//! back meanwhile so the stream switches source once each way.

use super::rewrite::Source;
use super::{LegId, Relay, Transmit};
use crate::core::dtmf::{self, Digit};
use crate::packet::RtpPacket;
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Queued event packets toward one leg.
#[derive(Debug, Default)]
pub(super) struct DtmfOut {
    /// (due, marker, event), in order.
    queue: VecDeque<(Instant, bool, dtmf::TelephoneEvent)>,
    /// Input numbers of our generated event stream.
    seq: u16,
    ts: u32,
    /// Audio toward the leg stays muted until then (the last end packet).
    until: Option<Instant>,
}

impl DtmfOut {
    /// Audio toward the leg waits: events are queued or still playing.
    pub(super) fn busy(&self, now: Instant) -> bool {
        !self.queue.is_empty() || self.until.is_some_and(|u| now <= u)
    }

    pub(super) fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|(at, _, _)| *at)
    }
}

impl Relay {
    /// Sends `digit` toward `toward` as RFC 4733 events lasting `duration`.
    /// False when that leg negotiated no telephone-event (nothing is sent;
    /// the caller may fall back to SIP INFO).
    pub fn send_dtmf(
        &mut self,
        now: Instant,
        toward: LegId,
        digit: Digit,
        duration: Duration,
    ) -> bool {
        // At the leg's telephone-event clock (48 kHz toward an opus leg
        // that negotiated telephone-event/48000): timestamps and durations
        // in its ticks.
        let Some((_, rate)) = self.leg(toward).telephone_event() else {
            return false;
        };
        let out = &mut self.dtmf_out[toward.index()];
        // A digit starts after the one still playing.
        let start = out.until.filter(|u| *u > now).unwrap_or(now);
        // Each digit is a new event: a timestamp well past the last one.
        out.ts = out.ts.wrapping_add(rate);
        let packets = dtmf::generate(digit, duration, dtmf::DEFAULT_VOLUME, rate, out.ts);
        for p in &packets {
            out.queue.push_back((start + p.offset, p.marker, p.event));
        }
        out.until = packets.last().map(|p| start + p.offset);
        true
    }

    /// Sends the event packets due toward `id`.
    pub(super) fn send_due_dtmf(&mut self, now: Instant, id: LegId) {
        let i = id.index();
        let Some((pt, rate)) = self.leg(id).telephone_event() else {
            // The leg renegotiated without events: nothing to send them in.
            self.dtmf_out[i].queue.clear();
            return;
        };
        while let Some(&(due, marker, event)) = self.dtmf_out[i].queue.front() {
            if due > now {
                break;
            }
            self.dtmf_out[i].queue.pop_front();
            let out = &mut self.dtmf_out[i];
            let (seq, ts) = (out.seq, out.ts);
            out.seq = seq.wrapping_add(1);
            let l = &mut self.legs[i];
            let Some(dest) = l.destination() else {
                continue;
            };
            let r = l.out.rewrite(due, Source::Generated, seq, ts, rate);
            let payload = Bytes::copy_from_slice(&event.to_bytes());
            l.stats.out_packets += 1;
            l.stats.out_generated += 1;
            l.stats.out_bytes += (super::rtp::RTP_HEADER + payload.len()) as u64;
            self.transmits.push_back(Transmit {
                leg: id,
                to: dest,
                packet: RtpPacket {
                    payload_type: pt,
                    sequence: r.sequence,
                    timestamp: r.timestamp,
                    ssrc: r.ssrc,
                    marker: marker || r.marker,
                    payload,
                },
            });
        }
    }
}
