//! The call-recording thread: speech frames of recorded calls in (from the
//! media threads, over a bounded queue), stereo WAV files out.
//!
//! Why a thread of its own: decoding, mixing onto the timeline and file
//! writes must never hold up the media path. The media threads only
//! `try_send` each accepted frame; when the queue is full the frame is
//! dropped and counted for that call, and the count ends up in the
//! recording's report (`dropped_frames`). Start and stop travel on an
//! unbounded control channel, so they are never lost to a full queue.
//!
//! Per call: a [`Recorder`] (customer on channel 0, agent on channel 1),
//! created at the first frame, so the file starts when audio does (not at
//! the first ring); its output is written to the file every
//! [`FLUSH_EVERY`] and the WAV header kept valid, so a crash leaves a
//! playable file up to the last flush.

use super::{SessionId, ShellEvent};
use crate::codec::Codec;
use crate::core::g711;
use crate::core::opus::{OpusDecoder, MAX_PACKET_SAMPLES};
use crate::core::recorder::{DecodedFrame, Recorder, RecorderConfig, Side};
use crate::core::wav::{WavFormat, WavWriter};
use crate::relay::{LegId, TapFrame};
use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Frames waiting for the recording thread (all calls): about 10 s of
/// 100 recorded calls.
const QUEUE: usize = 100_000;
/// How often recorded audio is written out.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Where one call's recording goes and who the customer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSpec {
    /// The file (the recording directory joined with `relative`).
    pub path: PathBuf,
    /// As stored with the call (relative to the recording directory).
    pub relative: String,
    /// The leg whose party is the customer (channel 0).
    pub customer: LegId,
}

/// What a finished recording reports ([`ShellEvent::Recorded`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingReport {
    pub relative: String,
    /// File size, header included.
    pub bytes: u64,
    pub duration: Duration,
    pub dropped_frames: u64,
}

pub(crate) enum Control {
    Start {
        session: SessionId,
        spec: RecordSpec,
    },
    Stop {
        session: SessionId,
        dropped: u64,
    },
    Shutdown,
}

/// The media threads' side.
#[derive(Clone)]
pub(crate) struct RecorderLink {
    control: mpsc::Sender<Control>,
    frames: mpsc::SyncSender<(SessionId, Instant, TapFrame)>,
}

impl RecorderLink {
    pub(crate) fn start(&self, session: SessionId, spec: RecordSpec) {
        let _ = self.control.send(Control::Start { session, spec });
    }

    /// Hands one frame over; false when the queue is full (the caller
    /// counts it for the call).
    pub(crate) fn frame(&self, session: SessionId, at: Instant, frame: TapFrame) -> bool {
        self.frames.try_send((session, at, frame)).is_ok()
    }

    pub(crate) fn stop(&self, session: SessionId, dropped: u64) {
        let _ = self.control.send(Control::Stop { session, dropped });
    }

    pub(crate) fn shutdown(&self) {
        let _ = self.control.send(Control::Shutdown);
    }
}

/// Starts the recording thread.
pub(crate) fn spawn(
    events: tokio::sync::mpsc::Sender<ShellEvent>,
) -> std::io::Result<(RecorderLink, std::thread::JoinHandle<()>)> {
    let (control, control_rx) = mpsc::channel();
    let (frames, frames_rx) = mpsc::sync_channel(QUEUE);
    let thread = std::thread::Builder::new()
        .name("media-recorder".into())
        .spawn(move || {
            RecordingThread {
                control: control_rx,
                frames: frames_rx,
                events,
                calls: HashMap::new(),
            }
            .run()
        })?;
    Ok((RecorderLink { control, frames }, thread))
}

struct CallRecording {
    spec: RecordSpec,
    recorder: Option<Recorder>,
    writer: Option<WavWriter<BufWriter<File>>>,
    opus: [Option<OpusDecoder>; 2],
    pcm: Vec<i16>,
    out: Vec<u8>,
    failed: bool,
}

impl CallRecording {
    fn new(spec: RecordSpec) -> Self {
        CallRecording {
            spec,
            recorder: None,
            writer: None,
            opus: [None, None],
            pcm: Vec::new(),
            out: Vec::new(),
            failed: false,
        }
    }

    fn side(&self, leg: LegId) -> Side {
        if leg == self.spec.customer {
            Side::Customer
        } else {
            Side::Agent
        }
    }

    fn open_file(&mut self) -> Result<(), String> {
        if let Some(dir) = self.spec.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let file = File::create(&self.spec.path)
            .map_err(|e| format!("{}: {e}", self.spec.path.display()))?;
        let w = WavWriter::new(BufWriter::new(file), WavFormat::CALL_STEREO)
            .map_err(|e| e.to_string())?;
        self.writer = Some(w);
        Ok(())
    }

    fn frame(&mut self, at: Instant, f: &TapFrame) {
        if self.failed {
            return;
        }
        if self.writer.is_none() {
            if let Err(e) = self.open_file() {
                tracing::warn!(error = %e, "call recording cannot be written");
                self.failed = true;
                return;
            }
        }
        self.pcm.clear();
        let decoded = match f.codec {
            Codec::Pcmu | Codec::Pcma => {
                g711::decode_into(f.codec, &f.payload, &mut self.pcm).is_ok()
            }
            Codec::Opus => {
                let slot = &mut self.opus[f.leg.index()];
                if slot.is_none() {
                    *slot = OpusDecoder::new().ok();
                }
                let mut buf = [0i16; MAX_PACKET_SAMPLES];
                match slot.as_mut().map(|d| d.decode(&f.payload, &mut buf)) {
                    Some(Ok(n)) => {
                        self.pcm.extend_from_slice(&buf[..n.min(buf.len())]);
                        true
                    }
                    _ => false,
                }
            }
            Codec::TelephoneEvent { .. } => false,
        };
        let side = self.side(f.leg);
        let recorder = self
            .recorder
            .get_or_insert_with(|| Recorder::new(at, RecorderConfig::default()));
        if !decoded {
            recorder.note_dropped(1);
            return;
        }
        recorder.push_frame(
            side,
            DecodedFrame {
                ssrc: f.ssrc,
                rtp_timestamp: f.timestamp,
                clock_rate: f.codec.clock_rate(),
                samples: &self.pcm,
            },
            at,
        );
    }

    fn flush(&mut self, now: Instant) {
        let (Some(recorder), Some(writer)) = (&mut self.recorder, &mut self.writer) else {
            return;
        };
        self.out.clear();
        recorder.poll_bytes(now, &mut self.out);
        if self.out.is_empty() {
            return;
        }
        let written = writer
            .write_bytes(&self.out)
            .and_then(|()| writer.update_header());
        if let Err(e) = written {
            tracing::warn!(error = %e, path = %self.spec.path.display(), "call recording write failed");
            self.failed = true;
        }
    }

    /// The end of the call: the rest of the audio, the final header.
    fn finish(mut self, dropped: u64) -> Option<RecordingReport> {
        let (Some(mut recorder), Some(mut writer)) = (self.recorder.take(), self.writer.take())
        else {
            return None;
        };
        recorder.note_dropped(dropped);
        self.out.clear();
        recorder.finish_bytes(&mut self.out);
        let finished = if self.failed {
            Err("an earlier write failed".to_string())
        } else {
            writer
                .write_bytes(&self.out)
                .map_err(|e| e.to_string())
                .and_then(|()| writer.finalize().map(drop).map_err(|e| e.to_string()))
        };
        if let Err(e) = finished {
            tracing::warn!(error = %e, path = %self.spec.path.display(), "call recording not finished");
            return None;
        }
        let bytes = std::fs::metadata(&self.spec.path).map(|m| m.len()).ok()?;
        let rate = u64::from(recorder.config().sample_rate.max(1));
        let samples = recorder.counters().samples_out;
        Some(RecordingReport {
            relative: self.spec.relative,
            bytes,
            duration: Duration::from_millis(samples * 1000 / rate),
            dropped_frames: recorder.counters().dropped_frames,
        })
    }
}

struct RecordingThread {
    control: mpsc::Receiver<Control>,
    frames: mpsc::Receiver<(SessionId, Instant, TapFrame)>,
    events: tokio::sync::mpsc::Sender<ShellEvent>,
    calls: HashMap<SessionId, CallRecording>,
}

impl RecordingThread {
    fn run(mut self) {
        let mut next_flush = Instant::now() + FLUSH_EVERY;
        loop {
            // Control first: a call's start is always sent before its frames.
            if !self.drain_control() {
                return;
            }
            let wait = next_flush.saturating_duration_since(Instant::now());
            match self.frames.recv_timeout(wait) {
                Ok((session, at, frame)) => {
                    if !self.drain_control() {
                        return;
                    }
                    self.frame(session, at, &frame);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            if now >= next_flush {
                next_flush = now + FLUSH_EVERY;
                for c in self.calls.values_mut() {
                    c.flush(now);
                }
            }
        }
    }

    fn frame(&mut self, session: SessionId, at: Instant, frame: &TapFrame) {
        if let Some(c) = self.calls.get_mut(&session) {
            c.frame(at, frame);
        }
    }

    /// Handles pending control messages; false on shutdown.
    fn drain_control(&mut self) -> bool {
        while let Ok(c) = self.control.try_recv() {
            match c {
                Control::Start { session, spec } => {
                    self.calls.insert(session, CallRecording::new(spec));
                }
                Control::Stop { session, dropped } => {
                    // The call's last frames were queued before its stop.
                    while let Ok((s, at, f)) = self.frames.try_recv() {
                        self.frame(s, at, &f);
                    }
                    let Some(call) = self.calls.remove(&session) else {
                        continue;
                    };
                    // Sent even when nothing was written, so whoever waits
                    // for the session's last report stops waiting.
                    let e = ShellEvent::Recorded {
                        session,
                        report: call.finish(dropped).map(Box::new),
                    };
                    if self.events.try_send(e).is_err() {
                        tracing::warn!(session, "recording report dropped: event queue full");
                    }
                }
                Control::Shutdown => {
                    for (_, call) in self.calls.drain() {
                        let _ = call.finish(0);
                    }
                    return false;
                }
            }
        }
        true
    }
}
