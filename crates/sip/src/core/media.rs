//! The media plane as the sans-IO core sees it: a small synchronous
//! interface a call uses while it handles an INVITE or a response (SDP in,
//! SDP out), and the events the media plane reports back as inputs
//! ([`super::Core::handle_media_event`]).
//!
//! The core never touches a socket: the production plane
//! (`media::anchor`, wired by the shell) binds its UDP ports and builds
//! SDP on the calling thread and hands the legs to its media threads;
//! [`MemoryPlane`] does the same bookkeeping in memory for the core's
//! tests. Whether a call is anchored at all is `domain::media::anchors`.

pub use domain::call_events::CallEventKind;
pub use domain::media::{AnchorMode, LegKind};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// Which leg of an anchored call: the caller, or fork `i` of the callee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaSide {
    Caller,
    Fork(usize),
}

/// Why the media plane refused something: the call answers 488 (offer) or
/// ends (answer), and the reason is logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MediaError(pub String);

/// Whose voice is channel 0 (the customer) of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordCustomer {
    Caller,
    Callee,
}

/// What the media plane needs to know of a call when it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenCall<'a> {
    /// The call's id in its record (the caller's Call-ID): the media
    /// plane's reports ([`MediaEvent::Report`]) name the call by it, as
    /// they may arrive after the call is gone from the core.
    pub call_id: &'a str,
    /// Record the call (`domain::recording::should_record` said so).
    pub record: Option<RecordCustomer>,
}

/// What a call asks of the media plane. `call` is the core's call id.
///
/// Order for one call: `open` (the caller's offer), `offer` per fork,
/// `answer` for the fork whose SDP answer arrives (183 or 2xx; every call
/// returns the same SDP for the caller, so 183 and 200 carry the same
/// answer), `close_fork` for losing forks, `reoffer` for in-dialog
/// re-INVITEs (`offer_again` then `ack_answer` for one without SDP),
/// `close` when the call ends.
pub trait MediaPlane: Send {
    /// Opens the call's media session with the caller's offer.
    fn open(
        &mut self,
        call: u64,
        caller: LegKind,
        offer: &[u8],
        info: &OpenCall<'_>,
    ) -> Result<(), MediaError>;
    /// Our offer toward fork `fork`, whose contact is of kind `kind`.
    fn offer(&mut self, call: u64, fork: usize, kind: LegKind) -> Result<Vec<u8>, MediaError>;
    /// An originated call: opens the session with *our* offer toward the
    /// caller (the agent, rung first; a stock browser softphone cannot
    /// make a usable offer for an INVITE without SDP). Forks follow as
    /// usual once [`MediaPlane::caller_answer`] took the agent's answer;
    /// their answers then answer nobody. The default cannot.
    fn open_offering(
        &mut self,
        _call: u64,
        _caller: LegKind,
        _info: &OpenCall<'_>,
    ) -> Result<Vec<u8>, MediaError> {
        Err(MediaError(
            "this media plane cannot offer to a caller".into(),
        ))
    }
    /// The caller's answer to [`MediaPlane::open_offering`]'s offer.
    fn caller_answer(&mut self, _call: u64, _answer: &[u8]) -> Result<(), MediaError> {
        Err(MediaError(
            "this media plane cannot offer to a caller".into(),
        ))
    }
    /// Like [`MediaPlane::offer`], offering only `codecs` (names as the
    /// trunk model writes them: `pcmu`, `pcma`, `opus`) when the media
    /// plane can use any of them; the default ignores the list.
    fn offer_limited(
        &mut self,
        call: u64,
        fork: usize,
        kind: LegKind,
        _codecs: &[String],
    ) -> Result<Vec<u8>, MediaError> {
        self.offer(call, fork, kind)
    }
    /// The SDP answer of fork `fork`; returns our answer for the caller.
    fn answer(&mut self, call: u64, fork: usize, answer: &[u8]) -> Result<Vec<u8>, MediaError>;
    /// A new offer from one leg inside the dialog (hold, unhold, a
    /// refresh with SDP): answered by us for that leg alone.
    fn reoffer(&mut self, call: u64, side: MediaSide, offer: &[u8]) -> Result<Vec<u8>, MediaError>;
    /// A re-INVITE without SDP from one leg (RFC 3261 §14.2: the 2xx
    /// carries an offer, the ACK the answer): our offer for that leg
    /// alone — its current session, with the `o=` version bumped. The
    /// leg's answer comes with [`MediaPlane::ack_answer`]. The default
    /// refuses (the call answers 488).
    fn offer_again(&mut self, _call: u64, _side: MediaSide) -> Result<Vec<u8>, MediaError> {
        Err(MediaError(
            "a re-INVITE without SDP is not supported".into(),
        ))
    }
    /// The body of the ACK to a 2xx we sent on leg `side`'s re-INVITE.
    /// After [`MediaPlane::offer_again`] it is that leg's answer (an empty
    /// one leaves the leg as it was); otherwise there is nothing pending
    /// and the body is ignored (`Ok`). `Err`: the answer is unusable, and
    /// the call ends (RFC 3261 §13.3.1.4 says BYE).
    fn ack_answer(
        &mut self,
        _call: u64,
        _side: MediaSide,
        _answer: &[u8],
    ) -> Result<(), MediaError> {
        Ok(())
    }
    /// A SIP INFO carrying a DTMF key (`application/dtmf-relay` or
    /// `application/dtmf`) from leg `from`: true when the media plane
    /// sent it on as RFC 4733 toward the other leg (the call answers the
    /// INFO itself), false to relay the INFO as usual.
    fn dtmf(&mut self, _call: u64, _from: MediaSide, _content_type: &str, _body: &[u8]) -> bool {
        false
    }
    /// A fork lost (another answered, it failed, it was cancelled).
    fn close_fork(&mut self, call: u64, fork: usize);
    /// The call is over: every leg and port is released.
    fn close(&mut self, call: u64);
}

/// What the media plane reports about a call.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// No RTP from a leg for the configured timeout while not on hold.
    Timeout { call: u64 },
    /// The call's media session failed (its core panicked and was closed).
    Failed { call: u64 },
    /// A DTMF key received in the media (RFC 4733) from one leg, to be
    /// signalled to the other leg by SIP INFO (a browser: JsSIP reports an
    /// INFO as `newDTMF`).
    Dtmf {
        call: u64,
        from: MediaSide,
        digit: char,
        duration_ms: u32,
    },
    /// What the media plane measured or wrote for a call (quality per leg
    /// and direction, the recording), for the call's record. It usually
    /// arrives after the call ended, so it names the call by `call_id`.
    Report {
        call_id: String,
        kinds: Vec<CallEventKind>,
    },
}

/// The plane of a core that never anchors: every call is refused, so a
/// misconfigured anchor mode fails loudly instead of sending our SDP nowhere.
#[derive(Debug, Default)]
pub struct NoMedia;

impl MediaPlane for NoMedia {
    fn open(&mut self, _: u64, _: LegKind, _: &[u8], _: &OpenCall<'_>) -> Result<(), MediaError> {
        Err(MediaError("no media plane configured".into()))
    }
    fn offer(&mut self, _: u64, _: usize, _: LegKind) -> Result<Vec<u8>, MediaError> {
        Err(MediaError("no media plane configured".into()))
    }
    fn answer(&mut self, _: u64, _: usize, _: &[u8]) -> Result<Vec<u8>, MediaError> {
        Err(MediaError("no media plane configured".into()))
    }
    fn reoffer(&mut self, _: u64, _: MediaSide, _: &[u8]) -> Result<Vec<u8>, MediaError> {
        Err(MediaError("no media plane configured".into()))
    }
    fn close_fork(&mut self, _: u64, _: usize) {}
    fn close(&mut self, _: u64) {}
}

/// A deterministic in-memory plane for tests: SDP bodies name the call,
/// the leg and a version, so a test can see which SDP went where, and the
/// plane records what is open. Clones share the state, so a test keeps one
/// while the core owns the other.
#[derive(Debug, Default, Clone)]
pub struct MemoryPlane(pub Arc<Mutex<MemoryState>>);

#[derive(Debug, Default)]
pub struct MemoryState {
    /// Open calls: caller kind, forks with their kinds, our caller answer.
    pub calls: HashMap<u64, MemoryCall>,
    /// Every call ever closed, in order.
    pub closed: Vec<u64>,
    /// Refuse offers whose body contains this (tests of the 488 path).
    pub refuse: Option<String>,
    /// DTMF INFOs taken over: (call, Content-Type, body).
    pub dtmf: Vec<(u64, String, Vec<u8>)>,
    /// Every open: the call's record id and whether it is recorded.
    pub opened: Vec<(String, Option<RecordCustomer>)>,
}

#[derive(Debug, Default, Clone)]
pub struct MemoryCall {
    pub caller: Option<LegKind>,
    pub forks: HashMap<usize, LegKind>,
    pub closed_forks: Vec<usize>,
    pub caller_answer: Option<Vec<u8>>,
    pub reoffers: u32,
    /// Legs we sent an offer (a re-INVITE without SDP) awaiting the ACK.
    pub offered_again: Vec<MediaSide>,
    /// Answers taken from ACKs, by leg.
    pub ack_answers: Vec<(MediaSide, Vec<u8>)>,
}

impl MemoryState {
    fn sdp(call: u64, leg: &str, version: u32) -> Vec<u8> {
        format!(
            "v=0\r\no=centralita {call} {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
             t=0 0\r\nm=audio {} RTP/AVP 0\r\na=x-leg:{leg}\r\n",
            20_000 + call * 10
        )
        .into_bytes()
    }
}

impl MediaPlane for MemoryPlane {
    fn open(
        &mut self,
        call: u64,
        caller: LegKind,
        offer: &[u8],
        info: &OpenCall<'_>,
    ) -> Result<(), MediaError> {
        let mut st = self.0.lock();
        st.opened.push((info.call_id.to_string(), info.record));
        st.open(call, caller, offer)
    }
    fn offer(&mut self, call: u64, fork: usize, kind: LegKind) -> Result<Vec<u8>, MediaError> {
        self.0.lock().offer(call, fork, kind)
    }
    fn answer(&mut self, call: u64, fork: usize, sdp: &[u8]) -> Result<Vec<u8>, MediaError> {
        self.0.lock().answer(call, fork, sdp)
    }
    fn reoffer(&mut self, call: u64, side: MediaSide, offer: &[u8]) -> Result<Vec<u8>, MediaError> {
        self.0.lock().reoffer(call, side, offer)
    }
    fn offer_again(&mut self, call: u64, side: MediaSide) -> Result<Vec<u8>, MediaError> {
        self.0.lock().offer_again(call, side)
    }
    fn ack_answer(&mut self, call: u64, side: MediaSide, answer: &[u8]) -> Result<(), MediaError> {
        self.0.lock().ack_answer(call, side, answer)
    }
    fn close_fork(&mut self, call: u64, fork: usize) {
        self.0.lock().close_fork(call, fork)
    }
    fn dtmf(&mut self, call: u64, _from: MediaSide, content_type: &str, body: &[u8]) -> bool {
        let mut st = self.0.lock();
        if !st.calls.contains_key(&call) {
            return false;
        }
        st.dtmf
            .push((call, content_type.to_string(), body.to_vec()));
        true
    }
    fn close(&mut self, call: u64) {
        self.0.lock().close(call)
    }
}

impl MemoryState {
    pub fn open(&mut self, call: u64, caller: LegKind, offer: &[u8]) -> Result<(), MediaError> {
        if let Some(r) = &self.refuse {
            if String::from_utf8_lossy(offer).contains(r.as_str()) {
                return Err(MediaError("refused".into()));
            }
        }
        self.calls.entry(call).or_default().caller = Some(caller);
        Ok(())
    }
    pub fn offer(&mut self, call: u64, fork: usize, kind: LegKind) -> Result<Vec<u8>, MediaError> {
        let c = self
            .calls
            .get_mut(&call)
            .ok_or_else(|| MediaError("no session".into()))?;
        c.forks.insert(fork, kind);
        Ok(MemoryState::sdp(call, &format!("fork{fork}"), 1))
    }
    pub fn answer(&mut self, call: u64, _fork: usize, _sdp: &[u8]) -> Result<Vec<u8>, MediaError> {
        let c = self
            .calls
            .get_mut(&call)
            .ok_or_else(|| MediaError("no session".into()))?;
        Ok(c.caller_answer
            .get_or_insert_with(|| MemoryState::sdp(call, "caller", 1))
            .clone())
    }
    pub fn reoffer(
        &mut self,
        call: u64,
        side: MediaSide,
        _offer: &[u8],
    ) -> Result<Vec<u8>, MediaError> {
        let c = self
            .calls
            .get_mut(&call)
            .ok_or_else(|| MediaError("no session".into()))?;
        c.reoffers += 1;
        let leg = match side {
            MediaSide::Caller => "caller".to_string(),
            MediaSide::Fork(i) => format!("fork{i}"),
        };
        Ok(MemoryState::sdp(call, &leg, 1 + c.reoffers))
    }
    /// Our offer for a leg that re-INVITEd without SDP: the leg's SDP
    /// at the next version.
    pub fn offer_again(&mut self, call: u64, side: MediaSide) -> Result<Vec<u8>, MediaError> {
        let c = self
            .calls
            .get_mut(&call)
            .ok_or_else(|| MediaError("no session".into()))?;
        c.reoffers += 1;
        c.offered_again.retain(|s| *s != side);
        c.offered_again.push(side);
        let leg = match side {
            MediaSide::Caller => "caller".to_string(),
            MediaSide::Fork(i) => format!("fork{i}"),
        };
        Ok(MemoryState::sdp(call, &leg, 1 + c.reoffers))
    }
    /// An ACK's body: the answer when an offer is pending on that leg
    /// (refused when it contains [`MemoryState::refuse`]).
    pub fn ack_answer(
        &mut self,
        call: u64,
        side: MediaSide,
        answer: &[u8],
    ) -> Result<(), MediaError> {
        let refuse = self.refuse.clone();
        let Some(c) = self.calls.get_mut(&call) else {
            return Ok(());
        };
        let Some(i) = c.offered_again.iter().position(|s| *s == side) else {
            return Ok(());
        };
        c.offered_again.remove(i);
        if answer.is_empty() {
            return Ok(());
        }
        if let Some(r) = refuse {
            if String::from_utf8_lossy(answer).contains(r.as_str()) {
                return Err(MediaError("answer refused".into()));
            }
        }
        c.ack_answers.push((side, answer.to_vec()));
        Ok(())
    }
    pub fn close_fork(&mut self, call: u64, fork: usize) {
        if let Some(c) = self.calls.get_mut(&call) {
            c.closed_forks.push(fork);
        }
    }
    pub fn close(&mut self, call: u64) {
        if self.calls.remove(&call).is_some() {
            self.closed.push(call);
        }
    }
}
