//! One media thread: an epoll set over its sessions' sockets, the relay
//! cores, a deadline heap. See the module docs of `shell` for why.

use super::recording::RecorderLink;
use super::udp::{RecvBatch, SendBatch};
use super::{Command, SessionId, SessionInfo, ShellConfig, ShellCounters, ShellError, ShellEvent};
use crate::core::dtmf::DtmfReceiver;
use crate::relay::quality::PeerReports;
use crate::relay::{rtp, Direction, LegId, LegStats, Port, Relay};
use crate::shell::ports::{PortAllocator, PortPair};
use crate::webrtc::{MediaDirection, WebRtcEvent, WebRtcLeg, WebRtcStats};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use parking_lot::Mutex;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Epoll token of the wake-up socket.
const WAKE: u64 = u64::MAX;
/// Readiness reports taken per `epoll_wait`.
const EVENTS: usize = 256;
/// The longest sleep: commands wake the thread anyway; this bounds how long
/// a lost wake-up could go unnoticed.
const MAX_SLEEP: Duration = Duration::from_millis(500);
/// A WebRTC leg's deadlines are rounded up to this grid. What str0m asks
/// `handle_timeout` for while media flows (TWCC feedback every 50 ms,
/// sender and receiver reports, ICE consent, stats) tolerates being a
/// little late, and `send_rtp` already runs str0m's timeout handling with
/// every packet the leg sends (every 20 ms): with the grid, that packet
/// usually gets there first, and the heap entry finds nothing due
/// (`fire_timers` then only reschedules). Deadlines that did come due share
/// grid points, so they fire in one round. The relay's own deadlines (hold
/// music frames, DTMF) and the digit receiver's stay exact.
/// Measured in `bench/media/REPORT.md` ("WebRTC ↔ RTP calls").
const WEBRTC_TIMER_GRAIN: Duration = Duration::from_millis(20);

struct Session {
    id: SessionId,
    generation: u32,
    relay: Relay,
    legs: [PortPair; 2],
    /// The deadline this session has in the heap, if any.
    scheduled: Option<Instant>,
    /// A leg that is a browser: its RTP port carries ICE, DTLS and SRTP
    /// for this str0m leg; the relay sees it as a plain leg whose peer is
    /// [`WEBRTC_PEER`] (decrypted packets in, packets to send out).
    webrtc: [Option<Box<WebRtcLeg>>; 2],
    /// Digits from a plain leg whose other leg is a browser (see
    /// [`ShellEvent::Dtmf`]); made when the browser leg is installed.
    dtmf_in: [Option<Box<DtmfReceiver>>; 2],
    /// What a browser leg's RTCP told str0m (loss and RTT of our stream).
    peer: [PeerReports; 2],
    /// The session is recorded; frames the recording queue refused.
    recording: Option<u64>,
}

/// The address the relay core knows a WebRTC leg's peer by. Packets the
/// leg decrypted come "from" it (so they pass latching at once: it is the
/// leg's SDP address), and packets the relay sends "to" it go to the
/// leg's `send_rtp`. Never a real destination.
pub(crate) const WEBRTC_PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 9);

/// The relay's view of a WebRTC leg's direction: what the browser does,
/// from the server's view of the leg.
pub(crate) fn peer_direction(d: Option<MediaDirection>) -> Direction {
    match d.map(|d| (d.is_receiving(), d.is_sending())) {
        // The browser sends when we receive, and receives when we send.
        Some((true, true)) | None => Direction::SendRecv,
        Some((true, false)) => Direction::SendOnly,
        Some((false, true)) => Direction::RecvOnly,
        Some((false, false)) => Direction::Inactive,
    }
}

/// epoll token: slot (32 bits) | generation (28 bits) | leg (1) | rtcp (1).
fn token(slot: usize, generation: u32, leg: LegId, port: Port) -> u64 {
    ((slot as u64) << 32)
        | (u64::from(generation & 0x0fff_ffff) << 4)
        | ((leg.index() as u64) << 1)
        | u64::from(port == Port::Rtcp)
}

fn untoken(t: u64) -> (usize, u32, LegId, Port) {
    let slot = (t >> 32) as usize;
    let generation = ((t >> 4) & 0x0fff_ffff) as u32;
    let leg = if (t >> 1) & 1 == 0 {
        LegId::A
    } else {
        LegId::B
    };
    let port = if t & 1 == 0 { Port::Rtp } else { Port::Rtcp };
    (slot, generation, leg, port)
}

pub(crate) struct Worker {
    config: ShellConfig,
    ports: Arc<Mutex<PortAllocator>>,
    commands: mpsc::Receiver<Command>,
    wake: UnixStream,
    events: tokio::sync::mpsc::Sender<ShellEvent>,
    counters: Arc<ShellCounters>,
    epoll: Epoll,
    sessions: Vec<Option<Session>>,
    free_slots: Vec<usize>,
    by_id: HashMap<SessionId, usize>,
    next_generation: u32,
    timers: BinaryHeap<Reverse<(Instant, usize, u32)>>,
    /// Origin of the [`WEBRTC_TIMER_GRAIN`] grid.
    epoch: Instant,
    rx: RecvBatch,
    tx: [SendBatch; 2],
    recorder: RecorderLink,
}

impl Worker {
    pub(crate) fn new(
        config: ShellConfig,
        ports: Arc<Mutex<PortAllocator>>,
        commands: mpsc::Receiver<Command>,
        wake: UnixStream,
        events: tokio::sync::mpsc::Sender<ShellEvent>,
        counters: Arc<ShellCounters>,
        recorder: RecorderLink,
    ) -> Result<Worker, ShellError> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(std::io::Error::from)?;
        epoll
            .add(&wake, EpollEvent::new(EpollFlags::EPOLLIN, WAKE))
            .map_err(std::io::Error::from)?;
        Ok(Worker {
            config,
            ports,
            commands,
            wake,
            events,
            counters,
            epoll,
            sessions: Vec::new(),
            free_slots: Vec::new(),
            by_id: HashMap::new(),
            next_generation: 0,
            timers: BinaryHeap::new(),
            epoch: Instant::now(),
            rx: RecvBatch::new(),
            tx: [SendBatch::new(), SendBatch::new()],
            recorder,
        })
    }

    pub(crate) fn run(mut self) {
        let mut ready = vec![EpollEvent::empty(); EVENTS];
        let mut now = Instant::now();
        loop {
            let sleep = self.sleep_for(now);
            let n = match self.epoll.wait(&mut ready, sleep) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => 0,
                Err(e) => {
                    tracing::error!(error = %e, "epoll_wait failed; media thread stops");
                    return;
                }
            };
            // One clock read per round: every datagram of the round is
            // stamped with it (the round is far shorter than a ptime).
            now = Instant::now();
            // Commands first: a caller that applied SDP and then made a
            // peer send expects the packet to meet the new SDP, even when
            // both arrive in the same round.
            if ready[..n].iter().any(|ev| ev.data() == WAKE) {
                let mut sink = [0u8; 64];
                while matches!((&self.wake).read(&mut sink), Ok(k) if k > 0) {}
                if !self.commands_pending(now) {
                    return;
                }
            }
            for ev in &ready[..n] {
                let t = ev.data();
                if t != WAKE {
                    self.readable(now, t);
                }
            }
            self.fire_timers(now);
        }
    }

    fn sleep_for(&self, now: Instant) -> EpollTimeout {
        let until = self
            .timers
            .peek()
            .map(|Reverse((at, _, _))| at.saturating_duration_since(now))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        // Round up: waking a little late is fine, spinning until the
        // deadline in 0 ms waits is not.
        let ms = until.as_micros().div_ceil(1000);
        EpollTimeout::try_from(ms as u64).unwrap_or(EpollTimeout::NONE)
    }

    /// Datagrams are queued on one socket: relay them all.
    fn readable(&mut self, now: Instant, t: u64) {
        let (slot, generation, leg, port) = untoken(t);
        let Some(Some(s)) = self.sessions.get_mut(slot) else {
            return;
        };
        if s.generation & 0x0fff_ffff != generation {
            return;
        }
        let pair = &s.legs[leg.index()];
        let fd = match port {
            Port::Rtp => pair.rtp.as_raw_fd(),
            Port::Rtcp => pair.rtcp.as_raw_fd(),
        };
        let rx = &mut self.rx;
        match rx.recv(fd) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                // ICMP port unreachable from an earlier send shows up here
                // (ECONNREFUSED); nothing to do but count it.
                tracing::trace!(error = %e, "RTP receive error");
                self.counters.recv_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let relay = &mut s.relay;
        let local = SocketAddr::new(self.config.bind, pair.port);
        let webrtc = &mut s.webrtc[leg.index()];
        let dtmf_in = &mut s.dtmf_in[leg.index()];
        let session = s.id;
        let events = &self.events;
        let counters = &self.counters;
        let ok = catch_unwind(AssertUnwindSafe(|| {
            for (data, from) in rx.datagrams() {
                match webrtc {
                    Some(w) => w.handle_receive(now, from, local, data),
                    None => {
                        if let Some(d) = dtmf_in {
                            watch_dtmf(now, relay, leg, port, from, data, d);
                            report_digits(session, leg, d, events, counters);
                        }
                        relay.handle_datagram(now, leg, port, from, data);
                    }
                }
            }
        }))
        .is_ok();
        if ok {
            self.service(slot, true);
        } else {
            self.fail(slot);
        }
    }

    /// Sends what the session produced, forwards its events, reschedules.
    /// `after_datagrams`: the input was received datagrams only. Those
    /// never bring a deadline forward (they push the media timeout later
    /// and start nothing), so with an entry already in the heap the
    /// deadline need not be recomputed on every packet.
    fn service(&mut self, slot: usize, after_datagrams: bool) {
        let Some(Some(s)) = self.sessions.get_mut(slot) else {
            return;
        };
        let has_webrtc = s.webrtc.iter().any(Option::is_some);
        if has_webrtc && !webrtc_to_relay(s) {
            self.fail(slot);
            return;
        }
        let Some(Some(s)) = self.sessions.get_mut(slot) else {
            return;
        };
        let mut dropped = 0;
        let mut now = None;
        while let Some(t) = s.relay.poll_transmit() {
            let i = t.leg.index();
            if let Some(w) = &mut s.webrtc[i] {
                // Not connected yet, on hold: counted by the leg, not fatal.
                // What str0m makes of it is sent below, with the leg's
                // other datagrams.
                let now = *now.get_or_insert_with(Instant::now);
                let _ = w.send_rtp(now, t.packet);
                continue;
            }
            if self.tx[i].is_full() {
                dropped += self.tx[i].flush(s.legs[i].rtp.as_raw_fd()).dropped;
            }
            self.tx[i].push(t.to, |buf| t.encode(buf));
        }
        // A WebRTC leg's datagrams (SRTP of what the relay sent it above,
        // RTCP and STUN str0m produced on input or timeout) go out like a
        // plain leg's: one sendmmsg per socket and round of this session,
        // rather than a sendto each. (The relay never addresses a WebRTC
        // leg's socket directly, so its batch holds str0m's datagrams only.)
        for (i, w) in s.webrtc.iter_mut().enumerate() {
            let Some(w) = w else {
                continue;
            };
            while let Some(t) = w.poll_transmit() {
                if self.tx[i].is_full() {
                    dropped += self.tx[i].flush(s.legs[i].rtp.as_raw_fd()).dropped;
                }
                self.tx[i].push(t.destination, |buf| {
                    buf.clear();
                    buf.extend_from_slice(&t.contents);
                });
            }
        }
        for i in 0..2 {
            if !self.tx[i].is_empty() {
                dropped += self.tx[i].flush(s.legs[i].rtp.as_raw_fd()).dropped;
            }
        }
        if dropped > 0 {
            self.counters
                .send_dropped
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
        if let Some(dropped) = &mut s.recording {
            let now = Instant::now();
            while let Some(frame) = s.relay.poll_tap() {
                if !self.recorder.frame(s.id, now, frame) {
                    *dropped += 1;
                    self.counters
                        .recording_dropped
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        while let Some(event) = s.relay.poll_event() {
            let e = ShellEvent::Media {
                session: s.id,
                event,
            };
            if self.events.try_send(e).is_err() {
                self.counters.events_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        // str0m's deadlines move earlier after input, so a session with a
        // WebRTC leg always recomputes its own.
        // A digit in progress has its own, short deadline (its end packets
        // may all be lost), earlier than what the heap holds.
        let digit_in_progress = s
            .dtmf_in
            .iter()
            .flatten()
            .any(|d| d.poll_timeout().is_some());
        if after_datagrams && s.scheduled.is_some() && !has_webrtc && !digit_in_progress {
            return;
        }
        if let Some(at) = deadline(s, self.epoch) {
            // Only an earlier deadline needs a heap entry: a later one (the
            // usual case: each packet pushes the media timeout forward) is
            // picked up when the current entry fires.
            if s.scheduled.is_none_or(|cur| at < cur) {
                s.scheduled = Some(at);
                self.timers.push(Reverse((at, slot, s.generation)));
            }
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse((at, slot, generation))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(Some(s)) = self.sessions.get_mut(slot) else {
                continue;
            };
            if s.generation != generation || s.scheduled != Some(at) {
                continue; // stale entry
            }
            s.scheduled = None;
            // Work done since the entry was pushed may have met the
            // deadline (a WebRTC leg's str0m timeouts run with every packet
            // it sends): then there is nothing to handle yet.
            match deadline(s, self.epoch) {
                None => continue,
                Some(due) if due > now => {
                    s.scheduled = Some(due);
                    self.timers.push(Reverse((due, slot, generation)));
                    continue;
                }
                Some(_) => {}
            }
            let relay = &mut s.relay;
            let webrtc = &mut s.webrtc;
            let dtmf_in = &mut s.dtmf_in;
            let session = s.id;
            let (events, counters) = (&self.events, &self.counters);
            if catch_unwind(AssertUnwindSafe(|| {
                relay.handle_timeout(now);
                for w in webrtc.iter_mut().flatten() {
                    w.handle_timeout(now);
                }
                for (i, d) in dtmf_in.iter_mut().enumerate() {
                    if let Some(d) = d {
                        d.handle_timeout(now);
                        let leg = if i == 0 { LegId::A } else { LegId::B };
                        report_digits(session, leg, d, events, counters);
                    }
                }
            }))
            .is_ok()
            {
                self.service(slot, false);
            } else {
                self.fail(slot);
            }
        }
    }

    /// A session's core panicked: close it, tell the call.
    fn fail(&mut self, slot: usize) {
        if let Some(id) = self
            .sessions
            .get(slot)
            .and_then(|s| s.as_ref())
            .map(|s| s.id)
        {
            tracing::error!(session = id, "relay session panicked; closed");
            // Failed before the session's closing report, which ends what
            // the event side knows of the session.
            let _ = self.events.try_send(ShellEvent::Failed { session: id });
            self.remove(id);
        }
    }

    /// Handles queued commands; false on shutdown.
    fn commands_pending(&mut self, now: Instant) -> bool {
        while let Ok(c) = self.commands.try_recv() {
            match c {
                Command::Create { id, reply } => {
                    let _ = reply.send(self.create(now, id));
                }
                Command::Adopt { id, legs } => {
                    let [a, b] = *legs;
                    if let Err(e) = self.install(now, id, a, b) {
                        tracing::warn!(session = id, error = %e, "media session not installed");
                        let _ = self.events.try_send(ShellEvent::Failed { session: id });
                    }
                }
                Command::Dtmf {
                    id,
                    toward,
                    digit,
                    duration,
                } => {
                    if let Some(slot) = self.by_id.get(&id).copied() {
                        if let Some(Some(s)) = self.sessions.get_mut(slot) {
                            if !s.relay.send_dtmf(now, toward, digit, duration) {
                                tracing::debug!(session = id, "no telephone-event on the leg");
                            }
                            s.scheduled = None;
                        }
                        self.service(slot, false);
                    }
                }
                Command::Reoffer {
                    id,
                    leg,
                    offer,
                    reply,
                } => {
                    let slot = self.by_id.get(&id).copied();
                    let answer = match slot
                        .and_then(|i| self.sessions.get_mut(i))
                        .and_then(|s| s.as_mut())
                        .and_then(|s| s.webrtc[leg.index()].as_mut())
                    {
                        Some(w) => w.accept_offer(&offer).map_err(|e| e.to_string()),
                        None => Err("no WebRTC leg there".to_string()),
                    };
                    let _ = reply.send(answer);
                    if let Some(slot) = slot {
                        // The direction change reaches the relay (hold music).
                        self.service(slot, false);
                    }
                }
                Command::OfferAgain {
                    id,
                    leg,
                    answer,
                    reply,
                } => {
                    let slot = self.by_id.get(&id).copied();
                    let result = match slot
                        .and_then(|i| self.sessions.get_mut(i))
                        .and_then(|s| s.as_mut())
                        .and_then(|s| s.webrtc[leg.index()].as_mut())
                    {
                        Some(w) => match answer {
                            None => w.create_offer_again(),
                            Some(a) => w.accept_answer(&a).map(|()| String::new()),
                        }
                        .map_err(|e| e.to_string()),
                        None => Err("no WebRTC leg there".to_string()),
                    };
                    let _ = reply.send(result);
                    if let Some(slot) = slot {
                        // A direction change (unhold) reaches the relay.
                        self.service(slot, false);
                    }
                }
                Command::SetWebRtc { id, leg, webrtc } => {
                    if let Some(slot) = self.by_id.get(&id).copied() {
                        if let Some(Some(s)) = self.sessions.get_mut(slot) {
                            let mut params = s.relay.params(leg).clone();
                            params.remote_rtp = Some(WEBRTC_PEER);
                            params.remote_rtcp = None;
                            params.codecs = webrtc.payload_types().collect();
                            params.direction = peer_direction(webrtc.direction());
                            s.relay.set_leg(now, leg, params);
                            s.webrtc[leg.index()] = Some(webrtc);
                            let other = leg.other().index();
                            if s.webrtc[other].is_none() {
                                s.dtmf_in[other] = Some(Box::new(DtmfReceiver::new(8_000)));
                            }
                            // Its first deadline is str0m's, not the relay's.
                            s.scheduled = None;
                        }
                        self.service(slot, false);
                    }
                }
                Command::SetLeg { id, leg, params } => {
                    if let Some(slot) = self.by_id.get(&id).copied() {
                        if let Some(Some(s)) = self.sessions.get_mut(slot) {
                            s.relay.set_leg(now, leg, params);
                        }
                        self.service(slot, false);
                    }
                }
                Command::SetEgress { id, leg, source } => {
                    if let Some(Some(s)) =
                        self.by_id.get(&id).and_then(|i| self.sessions.get_mut(*i))
                    {
                        s.relay.set_egress_source(leg, source);
                    }
                }
                Command::Stats { id, reply } => {
                    let stats = self
                        .by_id
                        .get(&id)
                        .and_then(|i| self.sessions.get(*i))
                        .and_then(|s| s.as_ref())
                        .map(|s| [s.relay.stats(LegId::A), s.relay.stats(LegId::B)]);
                    let _ = reply.send(stats);
                }
                Command::Record { id, spec } => {
                    if let Some(Some(s)) =
                        self.by_id.get(&id).and_then(|i| self.sessions.get_mut(*i))
                    {
                        self.recorder.start(id, spec);
                        s.relay.set_tap(true);
                        s.recording = Some(0);
                    }
                }
                Command::Destroy { id, reply } => {
                    let _ = reply.send(self.remove(id));
                }
                Command::Shutdown => return false,
            }
        }
        true
    }

    fn create(&mut self, now: Instant, id: SessionId) -> Result<SessionInfo, ShellError> {
        let ip = self.config.bind;
        let (a, b) = {
            let mut ports = self.ports.lock();
            let a = ports.bind_pair(ip)?;
            match ports.bind_pair(ip) {
                Ok(b) => (a, b),
                Err(e) => {
                    ports.release(a.port);
                    return Err(e.into());
                }
            }
        };
        self.install(now, id, a, b)
    }

    /// Registers a session's bound sockets and starts its relay core.
    fn install(
        &mut self,
        now: Instant,
        id: SessionId,
        a: PortPair,
        b: PortPair,
    ) -> Result<SessionInfo, ShellError> {
        let ip = self.config.bind;
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.sessions.push(None);
            self.sessions.len() - 1
        });
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        let registered = (|| -> std::io::Result<()> {
            for (leg, pair) in [(LegId::A, &a), (LegId::B, &b)] {
                for (port, sock) in [(Port::Rtp, &pair.rtp), (Port::Rtcp, &pair.rtcp)] {
                    let ev =
                        EpollEvent::new(EpollFlags::EPOLLIN, token(slot, generation, leg, port));
                    self.epoll.add(sock, ev)?;
                }
            }
            Ok(())
        })();
        if let Err(e) = registered {
            // Dropping the sockets removes them from the epoll set.
            let mut ports = self.ports.lock();
            ports.release(a.port);
            ports.release(b.port);
            self.free_slots.push(slot);
            return Err(e.into());
        }
        let ssrcs = [rand::random::<u32>(), rand::random::<u32>()];
        let relay = Relay::new(now, self.config.relay.clone(), ssrcs);
        let info = SessionInfo {
            id,
            ip,
            ports: [a.port, b.port],
        };
        self.sessions[slot] = Some(Session {
            id,
            generation,
            relay,
            legs: [a, b],
            scheduled: None,
            webrtc: [None, None],
            dtmf_in: [None, None],
            peer: Default::default(),
            recording: None,
        });
        self.by_id.insert(id, slot);
        self.service(slot, false);
        Ok(info)
    }

    fn remove(&mut self, id: SessionId) -> Option<[LegStats; 2]> {
        let slot = self.by_id.remove(&id)?;
        let s = self.sessions.get_mut(slot)?.take()?;
        for pair in &s.legs {
            let _ = self.epoll.delete(&pair.rtp);
            let _ = self.epoll.delete(&pair.rtcp);
        }
        let stats = [s.relay.stats(LegId::A), s.relay.stats(LegId::B)];
        let quality = [LegId::A, LegId::B].map(|l| {
            let peer = s.webrtc[l.index()].as_ref().map(|_| &s.peer[l.index()]);
            s.relay.quality(l, peer)
        });
        let closed = ShellEvent::Closed {
            session: id,
            quality: Box::new(quality),
        };
        if self.events.try_send(closed).is_err() {
            self.counters.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(dropped) = s.recording {
            self.recorder.stop(id, dropped);
        }
        let ports = [s.legs[0].port, s.legs[1].port];
        // Close the sockets before the ports go back to the pool.
        drop(s);
        let mut pool = self.ports.lock();
        for p in ports {
            pool.release(p);
        }
        self.free_slots.push(slot);
        Some(stats)
    }
}

/// When the session next needs `handle_timeout`: the earliest deadline of
/// its relay core, WebRTC legs (rounded up to [`WEBRTC_TIMER_GRAIN`]) and
/// digit receivers. Each is a pure reading of current state, so it can be
/// asked again when a heap entry fires.
fn deadline(s: &Session, epoch: Instant) -> Option<Instant> {
    let digit_at = s
        .dtmf_in
        .iter()
        .flatten()
        .filter_map(|d| d.poll_timeout())
        .min();
    let webrtc_at = s
        .webrtc
        .iter()
        .flatten()
        .filter_map(|w| w.poll_timeout())
        .min()
        .map(|at| round_up(epoch, at, WEBRTC_TIMER_GRAIN));
    [s.relay.poll_timeout(), webrtc_at, digit_at]
        .into_iter()
        .flatten()
        .min()
}

/// The first point of the grid `epoch + k × grain` at or after `at` (a
/// deadline before `epoch`, such as str0m's "already happened", is due at
/// once).
fn round_up(epoch: Instant, at: Instant, grain: Duration) -> Instant {
    let g = grain.as_nanos().max(1);
    let k = at.saturating_duration_since(epoch).as_nanos().div_ceil(g);
    u64::try_from(k * g)
        .ok()
        .and_then(|ns| epoch.checked_add(Duration::from_nanos(ns)))
        .unwrap_or(at)
}

/// Hands what the session's WebRTC legs produced to the relay: decrypted
/// RTP as datagrams from [`WEBRTC_PEER`], direction changes as new leg
/// parameters. False when a leg died (the session is then closed).
fn webrtc_to_relay(s: &mut Session) -> bool {
    let now = Instant::now();
    let mut buf = Vec::with_capacity(256);
    let mut alive = true;
    for (i, leg) in [LegId::A, LegId::B].into_iter().enumerate() {
        let Some(w) = &mut s.webrtc[i] else {
            continue;
        };
        while let Some(ev) = w.poll_event() {
            match ev {
                WebRtcEvent::Rtp { packet, .. } => {
                    rtp::write_rtp(&packet, &mut buf);
                    let relay = &mut s.relay;
                    let ok = catch_unwind(AssertUnwindSafe(|| {
                        relay.handle_datagram(now, leg, Port::Rtp, WEBRTC_PEER, &buf)
                    }))
                    .is_ok();
                    if !ok {
                        return false;
                    }
                }
                WebRtcEvent::DirectionChanged(d) => {
                    let mut params = s.relay.params(leg).clone();
                    params.direction = peer_direction(Some(d));
                    s.relay.set_leg(now, leg, params);
                }
                WebRtcEvent::Failed { reason } => {
                    tracing::info!(session = s.id, %reason, "WebRTC leg failed");
                    alive = false;
                }
                WebRtcEvent::Closed => alive = false,
                WebRtcEvent::Stats(stats) => {
                    // The browser's receiver reports on what we send it:
                    // the opus encoders toward it follow the loss.
                    if let WebRtcStats::Egress(e) = &stats {
                        if let Some(loss) = e.loss {
                            s.relay.set_expected_loss(leg, loss);
                        }
                    }
                    note_peer_reports(&mut s.peer[i], &stats);
                }
                WebRtcEvent::Connected | WebRtcEvent::Disconnected => {}
            }
        }
    }
    alive
}

/// Keeps what str0m learned from a browser's RTCP about our stream.
fn note_peer_reports(peer: &mut PeerReports, stats: &WebRtcStats) {
    match stats {
        WebRtcStats::Egress(e) => {
            if let Some(loss) = e.loss {
                peer.outbound_loss = Some(f64::from(loss));
            }
            if e.remote_packets_lost.is_some() {
                peer.outbound_lost = e.remote_packets_lost;
            }
            if e.remote_jitter_rtp.is_some() {
                peer.outbound_jitter_rtp = e.remote_jitter_rtp;
            }
            if e.rtt.is_some() {
                peer.rtt = e.rtt;
            }
        }
        WebRtcStats::Ingress(i) => {
            if i.rtt.is_some() {
                peer.rtt = i.rtt;
            }
        }
    }
}

/// Hands the digits `receiver` completed to the call (a digit whose end
/// packets were all lost completes by its timeout, from `fire_timers`).
fn report_digits(
    session: SessionId,
    leg: LegId,
    receiver: &mut DtmfReceiver,
    events: &tokio::sync::mpsc::Sender<ShellEvent>,
    counters: &ShellCounters,
) {
    while let Some(digit) = receiver.poll_digit() {
        let e = ShellEvent::Dtmf {
            session,
            leg,
            digit: digit.digit.to_char().unwrap_or('?'),
            duration: digit.duration,
        };
        if events.try_send(e).is_err() {
            counters.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Feeds a telephone-event packet from a plain leg's latched source (or
/// its SDP address) to that leg's digit receiver.
fn watch_dtmf(
    now: Instant,
    relay: &Relay,
    leg: LegId,
    port: Port,
    from: SocketAddr,
    data: &[u8],
    receiver: &mut DtmfReceiver,
) {
    if port != Port::Rtp || rtp::looks_like_rtcp(data) {
        return;
    }
    let Ok(h) = rtp::parse_rtp_header(data) else {
        return;
    };
    let params = relay.params(leg);
    let te = params.codecs.iter().any(|(pt, c)| {
        *pt == h.payload_type && matches!(c, crate::codec::Codec::TelephoneEvent { .. })
    });
    let trusted = relay.latched(leg).or(params.remote_rtp) == Some(from);
    if te && trusted {
        let _ = receiver.handle_packet(h.timestamp, &data[h.payload_start..h.payload_end], now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webrtc_deadlines_round_up_to_the_grid() {
        let epoch = Instant::now();
        let g = Duration::from_millis(20);
        let ms = |n: u64| epoch + Duration::from_millis(n);
        assert_eq!(round_up(epoch, ms(0), g), ms(0));
        assert_eq!(round_up(epoch, ms(1), g), ms(20));
        assert_eq!(round_up(epoch, ms(20), g), ms(20));
        assert_eq!(round_up(epoch, ms(20) + Duration::from_nanos(1), g), ms(40));
        // Never earlier than asked, never more than one grain later.
        for n in [3u64, 17, 39, 1_001, 86_400_000] {
            let at = ms(n) + Duration::from_micros(n % 997);
            let r = round_up(epoch, at, g);
            assert!(r >= at && r - at < g, "{n}: {r:?} vs {at:?}");
        }
        // "Already happened" (before the grid's origin) is due at once.
        let past = epoch.checked_sub(Duration::from_secs(5)).unwrap_or(epoch);
        assert_eq!(round_up(epoch, past, g), epoch);
    }
}
