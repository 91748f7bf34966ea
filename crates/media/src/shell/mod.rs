//! The UDP shell of the plain RTP relay: sockets from a port range, media
//! threads that drive the relay cores, and a control handle for the SIP side.
//!
//! # Why threads with epoll, not a task per call
//! A forwarded packet should cost what the kernel charges for one receive
//! and one send, and little more (target ≤ 7 µs of CPU at 100,000
//! packets/s; a bare recvmmsg/sendmmsg relay costs 5–6 µs here). A tokio
//! task per call adds a waker, a reactor hop and a task poll to each packet.
//! Instead each media thread owns a level-triggered epoll set over its
//! calls' sockets and, per readiness report, runs one `recvmmsg` (all
//! queued datagrams), feeds the call's [`Relay`], and sends what it
//! produced with one `sendmmsg` per socket. The epoll token names the call
//! slot and the socket, so demultiplexing is an index, never a scan; call
//! deadlines (media timeout, hold-music frames) sit in a heap.
//!
//! The control side is async: [`RelayHandle`] sends commands over a
//! channel and wakes the thread through a socket pair; replies come back
//! on tokio oneshots and events on a bounded tokio mpsc (dropped, and
//! counted, if the consumer stalls: the media path never waits on it).
//!
//! One faulty call cannot take the others down: each call's handling runs
//! under `catch_unwind`; a call that panics is closed and reported.

mod ports;
mod recording;
pub mod udp;
mod worker;

pub use ports::{PortAllocator, PortError, PortPair};
pub use recording::{RecordSpec, RecordingReport};

use crate::relay::quality::LegQuality;
use crate::relay::{EgressSourceBox, Event, LegId, LegParams, LegStats, RelayConfig};
use crate::webrtc::WebRtcLeg;
use parking_lot::Mutex;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use tokio::sync::oneshot;

/// Identifies a relay session (one call's two plain legs).
pub type SessionId = u64;

#[derive(Debug, Clone)]
pub struct ShellConfig {
    /// The address the RTP sockets bind to.
    pub bind: IpAddr,
    /// RTP ports (even RTP, odd RTCP) come from here.
    pub port_range: RangeInclusive<u16>,
    pub relay: RelayConfig,
    /// Media threads. One is right for a small box: a second thread only
    /// helps when one core cannot keep up, and the SIP side needs a core too.
    pub threads: usize,
    /// Capacity of the event channel.
    pub event_queue: usize,
}

impl Default for ShellConfig {
    fn default() -> Self {
        ShellConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port_range: 20_000..=29_999,
            relay: RelayConfig::default(),
            threads: 1,
            event_queue: 65_536,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error(transparent)]
    Ports(#[from] PortError),
    #[error("media I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("no such relay session {0}")]
    NoSession(SessionId),
    #[error("the media thread has stopped")]
    Stopped,
}

/// The local side of a new session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: SessionId,
    pub ip: IpAddr,
    /// RTP port of leg A and of leg B (RTCP is each + 1): what our SDP
    /// toward that leg's peer announces.
    pub ports: [u16; 2],
}

/// What the media plane tells the call.
#[derive(Debug, Clone, PartialEq)]
pub enum ShellEvent {
    Media {
        session: SessionId,
        event: Event,
    },
    /// The session's relay core panicked; it was closed.
    Failed {
        session: SessionId,
    },
    /// A DTMF key received as RFC 4733 from plain leg `leg` whose other
    /// leg is a browser (which gets it by SIP INFO: JsSIP reports INFO,
    /// not in-band events, as `newDTMF`).
    Dtmf {
        session: SessionId,
        leg: LegId,
        digit: char,
        duration: std::time::Duration,
    },
    /// The session was closed: the quality of each leg (A, B) over the
    /// call (`None`: no speech either way on that leg).
    Closed {
        session: SessionId,
        quality: Box<[Option<LegQuality>; 2]>,
    },
    /// The session's recording is complete (after [`ShellEvent::Closed`]);
    /// `None`: nothing could be recorded (no audio, or the file failed).
    Recorded {
        session: SessionId,
        report: Option<Box<RecordingReport>>,
    },
}

pub(crate) enum Command {
    Create {
        id: SessionId,
        reply: oneshot::Sender<Result<SessionInfo, ShellError>>,
    },
    SetLeg {
        id: SessionId,
        leg: LegId,
        params: LegParams,
    },
    SetEgress {
        id: SessionId,
        leg: LegId,
        source: EgressSourceBox,
    },
    Stats {
        id: SessionId,
        reply: oneshot::Sender<Option<[LegStats; 2]>>,
    },
    Destroy {
        id: SessionId,
        reply: oneshot::Sender<Option<[LegStats; 2]>>,
    },
    /// A session whose ports were bound by the caller (see
    /// [`RelayHandle::open_session`]).
    Adopt {
        id: SessionId,
        legs: Box<[PortPair; 2]>,
    },
    /// Makes `leg` a WebRTC leg: datagrams on its RTP port go to `webrtc`,
    /// and the relay's packets toward it are sent through it.
    SetWebRtc {
        id: SessionId,
        leg: LegId,
        webrtc: Box<WebRtcLeg>,
    },
    /// An RFC 4733 digit toward `toward` (see `Relay::send_dtmf`).
    Dtmf {
        id: SessionId,
        toward: LegId,
        digit: crate::core::dtmf::Digit,
        duration: std::time::Duration,
    },
    /// Record the session from now on.
    Record {
        id: SessionId,
        spec: RecordSpec,
    },
    /// A new offer from the browser of a WebRTC leg (hold, unhold).
    Reoffer {
        id: SessionId,
        leg: LegId,
        offer: String,
        reply: mpsc::Sender<Result<String, String>>,
    },
    /// A re-INVITE without SDP from the browser of a WebRTC leg: our
    /// offer (`answer: None`; the reply is the offer), then the browser's
    /// answer from its ACK (`Some`; the reply is empty).
    OfferAgain {
        id: SessionId,
        leg: LegId,
        answer: Option<String>,
        reply: mpsc::Sender<Result<String, String>>,
    },
    Shutdown,
}

struct WorkerLink {
    commands: mpsc::Sender<Command>,
    wake: UnixStream,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl WorkerLink {
    fn send(&self, c: Command) -> Result<(), ShellError> {
        self.commands.send(c).map_err(|_| ShellError::Stopped)?;
        // A full wake socket means a wake-up is already pending.
        let _ = (&self.wake).write(&[1]);
        Ok(())
    }
}

/// Counters of the whole shell.
#[derive(Debug, Default)]
pub struct ShellCounters {
    pub events_dropped: AtomicU64,
    pub send_dropped: AtomicU64,
    pub recv_errors: AtomicU64,
    /// Recording frames dropped because the recording queue was full.
    pub recording_dropped: AtomicU64,
}

/// Control handle; cheap to clone, usable from any thread or task.
#[derive(Clone)]
pub struct RelayHandle {
    workers: Arc<Vec<WorkerLink>>,
    /// Shared with the media threads: [`RelayHandle::open_session`] binds
    /// on the caller's thread.
    ports: Arc<Mutex<PortAllocator>>,
    bind: IpAddr,
    next_id: Arc<AtomicU64>,
    counters: Arc<ShellCounters>,
    recorder: recording::RecorderLink,
    recorder_thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

/// Starts the media threads. Returns the handle and the event stream.
pub fn start(
    config: ShellConfig,
) -> Result<(RelayHandle, tokio::sync::mpsc::Receiver<ShellEvent>), ShellError> {
    let ports = Arc::new(Mutex::new(PortAllocator::new(config.port_range.clone())?));
    let (events_tx, events_rx) = tokio::sync::mpsc::channel(config.event_queue.max(1));
    let counters = Arc::new(ShellCounters::default());
    let (recorder, recorder_thread) = recording::spawn(events_tx.clone())?;
    let mut workers = Vec::new();
    for n in 0..config.threads.max(1) {
        let (tx, rx) = mpsc::channel();
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        // The batch buffers hold raw pointers (not Send): the worker is
        // built on its own thread, which reports whether that worked.
        let (init_tx, init_rx) = mpsc::channel();
        let (cfg, ports, events, counters, rec) = (
            config.clone(),
            ports.clone(),
            events_tx.clone(),
            counters.clone(),
            recorder.clone(),
        );
        let thread = std::thread::Builder::new()
            .name(format!("media-{n}"))
            .spawn(move || {
                match worker::Worker::new(cfg, ports, rx, wake_rx, events, counters, rec) {
                    Ok(w) => {
                        let _ = init_tx.send(Ok(()));
                        w.run();
                    }
                    Err(e) => {
                        let _ = init_tx.send(Err(e));
                    }
                }
            })?;
        init_rx.recv().map_err(|_| ShellError::Stopped)??;
        workers.push(WorkerLink {
            commands: tx,
            wake: wake_tx,
            thread: Mutex::new(Some(thread)),
        });
    }
    Ok((
        RelayHandle {
            workers: Arc::new(workers),
            ports,
            bind: config.bind,
            next_id: Arc::new(AtomicU64::new(1)),
            counters,
            recorder,
            recorder_thread: Arc::new(Mutex::new(Some(recorder_thread))),
        },
        events_rx,
    ))
}

impl RelayHandle {
    fn worker(&self, id: SessionId) -> &WorkerLink {
        // Sessions are spread over the threads by id; `workers` is never
        // empty (start() makes at least one).
        &self.workers[(id as usize) % self.workers.len()]
    }

    /// Opens a session: two legs, each an RTP/RTCP port pair.
    pub async fn create_session(&self) -> Result<SessionInfo, ShellError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        self.worker(id).send(Command::Create { id, reply })?;
        rx.await.map_err(|_| ShellError::Stopped)?
    }

    /// [`RelayHandle::create_session`] for callers outside a runtime.
    pub fn create_session_blocking(&self) -> Result<SessionInfo, ShellError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        self.worker(id).send(Command::Create { id, reply })?;
        rx.blocking_recv().map_err(|_| ShellError::Stopped)?
    }

    /// Opens a session without waiting for the media thread: the two port
    /// pairs are bound here (the caller needs the ports for its SDP now,
    /// and may be on a thread that must not block, such as the SIP core's),
    /// then handed over. Commands for the id sent afterwards are handled
    /// after the hand-over (one queue per thread, in order).
    pub fn open_session(&self) -> Result<SessionInfo, ShellError> {
        let (a, b) = {
            let mut ports = self.ports.lock();
            let a = ports.bind_pair(self.bind)?;
            match ports.bind_pair(self.bind) {
                Ok(b) => (a, b),
                Err(e) => {
                    let port = a.port;
                    drop(a);
                    ports.release(port);
                    return Err(e.into());
                }
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let info = SessionInfo {
            id,
            ip: self.bind,
            ports: [a.port, b.port],
        };
        self.worker(id).send(Command::Adopt {
            id,
            legs: Box::new([a, b]),
        })?;
        Ok(info)
    }

    /// Turns `leg` of session `id` into a WebRTC leg (its SDP was already
    /// negotiated by the caller; see [`Command::SetWebRtc`]).
    pub fn set_webrtc(
        &self,
        id: SessionId,
        leg: LegId,
        webrtc: Box<WebRtcLeg>,
    ) -> Result<(), ShellError> {
        self.worker(id).send(Command::SetWebRtc { id, leg, webrtc })
    }

    /// A re-offer from the browser of WebRTC leg `leg` (hold, unhold),
    /// answered by its str0m instance on the media thread. Waits for that
    /// thread (at most `wait`): a re-INVITE is rare, and its answer cannot
    /// be built anywhere else once the leg runs there.
    pub fn reoffer_webrtc(
        &self,
        id: SessionId,
        leg: LegId,
        offer: String,
        wait: std::time::Duration,
    ) -> Result<Result<String, String>, ShellError> {
        let (reply, rx) = mpsc::channel();
        self.worker(id).send(Command::Reoffer {
            id,
            leg,
            offer,
            reply,
        })?;
        rx.recv_timeout(wait).map_err(|_| ShellError::Stopped)
    }

    /// Our offer toward WebRTC leg `leg` whose browser sent a re-INVITE
    /// without SDP (`answer: None`), or that browser's answer from the ACK
    /// (`Some`), on the media thread like [`reoffer_webrtc`](Self::reoffer_webrtc).
    pub fn offer_again_webrtc(
        &self,
        id: SessionId,
        leg: LegId,
        answer: Option<String>,
        wait: std::time::Duration,
    ) -> Result<Result<String, String>, ShellError> {
        let (reply, rx) = mpsc::channel();
        self.worker(id).send(Command::OfferAgain {
            id,
            leg,
            answer,
            reply,
        })?;
        rx.recv_timeout(wait).map_err(|_| ShellError::Stopped)
    }

    /// Sends a DTMF digit as RFC 4733 events toward `toward`.
    pub fn send_dtmf(
        &self,
        id: SessionId,
        toward: LegId,
        digit: crate::core::dtmf::Digit,
        duration: std::time::Duration,
    ) -> Result<(), ShellError> {
        self.worker(id).send(Command::Dtmf {
            id,
            toward,
            digit,
            duration,
        })
    }

    /// [`RelayHandle::destroy`] without waiting for the counters.
    pub fn close_session(&self, id: SessionId) {
        let (reply, _) = oneshot::channel();
        let _ = self.worker(id).send(Command::Destroy { id, reply });
    }

    /// Records the session into `spec.path` (a stereo WAV; the report comes
    /// as [`ShellEvent::Recorded`] after the session is closed).
    pub fn record(&self, id: SessionId, spec: RecordSpec) -> Result<(), ShellError> {
        self.worker(id).send(Command::Record { id, spec })
    }

    /// Applies a leg's SDP (remote address, codecs, direction).
    pub fn set_leg(&self, id: SessionId, leg: LegId, params: LegParams) -> Result<(), ShellError> {
        self.worker(id).send(Command::SetLeg { id, leg, params })
    }

    /// Replaces what the leg hears while the other side holds.
    pub fn set_egress_source(
        &self,
        id: SessionId,
        leg: LegId,
        source: EgressSourceBox,
    ) -> Result<(), ShellError> {
        self.worker(id).send(Command::SetEgress { id, leg, source })
    }

    pub async fn stats(&self, id: SessionId) -> Result<[LegStats; 2], ShellError> {
        let (reply, rx) = oneshot::channel();
        self.worker(id).send(Command::Stats { id, reply })?;
        rx.await
            .map_err(|_| ShellError::Stopped)?
            .ok_or(ShellError::NoSession(id))
    }

    /// Closes the session, frees its ports; returns its final counters.
    pub async fn destroy(&self, id: SessionId) -> Result<[LegStats; 2], ShellError> {
        let (reply, rx) = oneshot::channel();
        self.worker(id).send(Command::Destroy { id, reply })?;
        rx.await
            .map_err(|_| ShellError::Stopped)?
            .ok_or(ShellError::NoSession(id))
    }

    pub fn counters(&self) -> &ShellCounters {
        &self.counters
    }

    /// Stops the media threads (sessions are dropped) and waits for them.
    pub fn shutdown(&self) {
        for w in self.workers.iter() {
            let _ = w.send(Command::Shutdown);
        }
        for w in self.workers.iter() {
            if let Some(t) = w.thread.lock().take() {
                let _ = t.join();
            }
        }
        self.recorder.shutdown();
        if let Some(t) = self.recorder_thread.lock().take() {
            let _ = t.join();
        }
    }
}
