//! The CDR recorder: call events in, `calls` and `call_legs` rows out.
//!
//! Pure (no IO, no clock): [`crate::CallService::record`] loads the stored
//! rows of the calls a batch of events is about, feeds them and the events
//! to a [`Recorder`], and saves the rows it returns in the same transaction.
//! Every engine emits the same [`CallEvent`]s, so the CDR rules live here
//! once:
//!
//! - one `calls` row per call id, created by `Started`; one `call_legs` row
//!   per leg: leg 0 is the caller (from `Started`), legs 1.. come from
//!   `LegAdded`;
//! - leg 0 is the caller's own dialog with us: it rings when the first
//!   destination rings and is answered when the call is answered;
//! - disposition: `ANSWERED` if a leg answered, otherwise from the `Ended`
//!   cause (`Cancelled` → `CANCELLED`, `NoAnswer` → `NO ANSWER`, `Busy` →
//!   `BUSY`, anything else → `FAILED`); `hangup_cause` is the cause's
//!   string; duration = end − start and billsec = end − answer, in whole
//!   seconds, never negative;
//! - `Ended` closes the legs still open with the call's cause, except forks
//!   that lost to another leg's answer: those end `answered_elsewhere`;
//! - a row, once ended, never changes again. Events that cannot apply are
//!   ignored and reported ([`Ignored`]): anything but `Started` for a call
//!   with no row (its `Started` was lost, or it is from before a restart),
//!   a second `Started`, anything after `Ended` (so a duplicate `Ended` or a
//!   late `Answered` neither writes a second row nor reopens one), events
//!   for a leg that does not exist or has ended, a second answer.
//!
//! - the media plane's figures are attached, not part of the CDR's life:
//!   `Quality` (one `call_quality` row per leg and direction) and
//!   `Recording` (the recording columns of `calls`) apply to a known call
//!   (and leg) whether it has ended or not, since they often come after
//!   `Ended`; the latest figures win (by event time, also across batches
//!   and journal replays), and they never change the CDR's times, billing
//!   or disposition. Figures that are not numbers are ignored.
//!
//! Times are the engine's; they are clamped so that nothing ends before it
//! began (an answer is never before the start, an end never before the
//! answer or the leg's creation).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::call_events::{CallEvent, CallEventKind, HangupCause, LegNo, MediaDirection, Party};
use crate::calls::{Direction, Disposition};

/// A `calls` row as the recorder sees it. Times are epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub call_id: String,
    pub direction: Direction,
    pub caller: Party,
    pub callee: Party,
    pub start_ms: i64,
    pub answer_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// Whole seconds, end − start.
    pub duration: i64,
    /// Whole seconds, end − answer (0 if never answered).
    pub billsec: i64,
    pub disposition: Option<Disposition>,
    /// A [`HangupCause`] string, or the free text of rows written before
    /// the recorder (or closed as orphans).
    pub hangup_cause: Option<String>,
}

/// A `call_legs` row. Times are epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegRecord {
    pub call_id: String,
    pub leg: LegNo,
    pub party: Party,
    /// `udp`, `tcp`, `tls`, `ws`, `wss`, or `trunk:<name>`.
    pub transport: String,
    pub created_ms: i64,
    pub ringing_ms: Option<i64>,
    pub answered_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub end_cause: Option<String>,
    pub sip_code: Option<u16>,
}

/// A `call_quality` row: the latest media figures of one leg in one
/// direction. `at_ms` is the event time of the figures.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityRecord {
    pub call_id: String,
    pub leg: LegNo,
    pub direction: MediaDirection,
    pub at_ms: i64,
    pub packets: u64,
    pub lost: u64,
    pub jitter_ms: f32,
    pub rtt_ms: Option<f32>,
    /// Clamped to 1.0..=4.5.
    pub mos: f32,
    pub codec: String,
}

/// A call's finished recording (the recording columns of `calls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingRecord {
    pub call_id: String,
    /// Event time, so a replayed older event never replaces a newer one.
    pub at_ms: i64,
    /// Relative to the recording directory.
    pub path: String,
    pub bytes: u64,
    pub duration_ms: u64,
    pub dropped_frames: u64,
}

/// The state a call reached, as the console's `call` events name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallPhase {
    Ringing,
    Answered,
    Ended,
}

impl CallPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ringing => "ringing",
            Self::Answered => "answered",
            Self::Ended => "ended",
        }
    }
}

/// A change of a call's phase, to announce once the rows are saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallNotice {
    pub call_id: String,
    pub at_ms: i64,
    pub phase: CallPhase,
    pub caller_number: String,
    pub callee_number: String,
    /// Set when `phase` is `Ended`.
    pub disposition: Option<Disposition>,
}

/// Why an event changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Not `Started`, and the call has no row.
    UnknownCall,
    /// `Started` for a call that already has a row.
    DuplicateStart,
    /// The call has ended; its rows are final.
    CallEnded,
    /// The call has no leg with that number.
    UnknownLeg,
    /// `LegAdded` with a leg number already used.
    DuplicateLeg,
    /// The leg has ended.
    LegEnded,
    /// The call was already answered.
    AlreadyAnswered,
    /// The leg already rang (or answered).
    AlreadyRinging,
    /// Quality figures that are not numbers (NaN, infinite, negative
    /// jitter or RTT), or a recording without a path.
    InvalidFigures,
}

impl Ignored {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownCall => "unknown call",
            Self::DuplicateStart => "duplicate start",
            Self::CallEnded => "call ended",
            Self::UnknownLeg => "unknown leg",
            Self::DuplicateLeg => "duplicate leg",
            Self::LegEnded => "leg ended",
            Self::AlreadyAnswered => "already answered",
            Self::AlreadyRinging => "already ringing",
            Self::InvalidFigures => "invalid figures",
        }
    }
}

impl std::fmt::Display for Ignored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a batch of events changed: the new value of every row that
/// changed (insert it, or replace the open row with the same key), and
/// the phase changes in event order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// In the order the calls were first touched.
    pub calls: Vec<CallRecord>,
    /// Grouped by call in the same order, then by leg number.
    pub legs: Vec<LegRecord>,
    pub notices: Vec<CallNotice>,
    /// The latest figures per (call, leg, direction) in the batch, in the
    /// order first reported.
    pub quality: Vec<QualityRecord>,
    /// The latest recording per call in the batch.
    pub recordings: Vec<RecordingRecord>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
            && self.legs.is_empty()
            && self.notices.is_empty()
            && self.quality.is_empty()
            && self.recordings.is_empty()
    }
}

/// The disposition of a call that ended with `cause`.
pub fn disposition(answered: bool, cause: HangupCause) -> Disposition {
    if answered {
        return Disposition::Answered;
    }
    match cause {
        HangupCause::Cancelled => Disposition::Cancelled,
        HangupCause::NoAnswer => Disposition::NoAnswer,
        HangupCause::Busy => Disposition::Busy,
        _ => Disposition::Failed,
    }
}

/// (duration, billsec) in whole seconds (truncated), never negative.
pub fn billing(start_ms: i64, answer_ms: Option<i64>, end_ms: i64) -> (i64, i64) {
    let secs = |from: i64| end_ms.saturating_sub(from).max(0) / 1000;
    (secs(start_ms), answer_ms.map_or(0, secs))
}

/// The distinct call ids of `events`, in order of first appearance: the
/// calls whose stored rows the recorder needs.
pub fn call_ids(events: &[CallEvent]) -> Vec<&str> {
    let mut seen = HashSet::new();
    events
        .iter()
        .map(|e| e.call_id.as_str())
        .filter(|id| seen.insert(*id))
        .collect()
}

fn ms(at_ms: u64) -> i64 {
    i64::try_from(at_ms).unwrap_or(i64::MAX)
}

struct Entry {
    call: CallRecord,
    legs: BTreeMap<LegNo, LegRecord>,
    call_changed: bool,
    legs_changed: BTreeSet<LegNo>,
    /// Already in the recorder's `order`.
    listed: bool,
}

impl Entry {
    /// The open leg `leg`.
    fn open_leg(&mut self, leg: LegNo) -> Result<&mut LegRecord, Ignored> {
        let l = self.legs.get_mut(&leg).ok_or(Ignored::UnknownLeg)?;
        if l.ended_ms.is_some() {
            return Err(Ignored::LegEnded);
        }
        Ok(l)
    }

    /// Sets a time on the caller's leg 0 when `other` is another leg, and
    /// leg 0 is open, not yet answered and has no such time yet.
    fn mirror_on_caller(
        &mut self,
        other: LegNo,
        t: i64,
        field: fn(&mut LegRecord) -> &mut Option<i64>,
    ) {
        if other == 0 {
            return;
        }
        if let Some(l0) = self.legs.get_mut(&0) {
            if l0.ended_ms.is_none() && l0.answered_ms.is_none() && field(l0).is_none() {
                *field(l0) = Some(t.max(l0.created_ms));
                self.legs_changed.insert(0);
            }
        }
    }

    /// Marks the call as changed in this batch, listing it the first time.
    fn touch(&mut self, order: &mut Vec<String>) {
        if !self.listed {
            self.listed = true;
            order.push(self.call.call_id.clone());
        }
    }
}

/// The earliest a leg may end: not before anything else happened to it.
fn leg_floor(l: &LegRecord) -> i64 {
    l.created_ms
        .max(l.ringing_ms.unwrap_or(i64::MIN))
        .max(l.answered_ms.unwrap_or(i64::MIN))
}

/// Keeps in `list` the record with the latest time per `key` (the later
/// of two with the same time: events are applied in order).
fn latest<K: std::hash::Hash + Eq, R>(
    list: &mut Vec<R>,
    index: &mut HashMap<K, usize>,
    key: K,
    rec: R,
    at: fn(&R) -> i64,
) {
    match index.get(&key) {
        Some(&i) => {
            if at(&rec) >= at(&list[i]) {
                list[i] = rec;
            }
        }
        None => {
            index.insert(key, list.len());
            list.push(rec);
        }
    }
}

/// Applies call events to the rows of their calls; see the module docs for
/// the rules. One recorder per batch: build it with the stored rows of the
/// batch's calls ([`call_ids`]), [`apply`](Self::apply) the events in
/// order, then take the [`Changes`].
#[derive(Default)]
pub struct Recorder {
    entries: HashMap<String, Entry>,
    /// Call ids in the order first changed.
    order: Vec<String>,
    notices: Vec<CallNotice>,
    quality: Vec<QualityRecord>,
    /// Index into `quality` by (call, leg, direction).
    quality_at: HashMap<(String, LegNo, MediaDirection), usize>,
    recordings: Vec<RecordingRecord>,
    /// Index into `recordings` by call.
    recording_at: HashMap<String, usize>,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A recorder that knows these stored rows (legs of calls not given
    /// are dropped: a leg never exists without its call).
    pub fn with_stored(
        calls: impl IntoIterator<Item = CallRecord>,
        legs: impl IntoIterator<Item = LegRecord>,
    ) -> Self {
        let mut entries: HashMap<String, Entry> = calls
            .into_iter()
            .map(|call| {
                (
                    call.call_id.clone(),
                    Entry {
                        call,
                        legs: BTreeMap::new(),
                        call_changed: false,
                        legs_changed: BTreeSet::new(),
                        listed: false,
                    },
                )
            })
            .collect();
        for leg in legs {
            if let Some(e) = entries.get_mut(&leg.call_id) {
                e.legs.insert(leg.leg, leg);
            }
        }
        Self {
            entries,
            ..Self::default()
        }
    }

    /// Applies one event, or says why it changes nothing.
    pub fn apply(&mut self, ev: &CallEvent) -> Result<(), Ignored> {
        let at = ms(ev.at_ms);
        match &ev.kind {
            CallEventKind::Started {
                direction,
                caller,
                callee,
                transport,
            } => self.start(&ev.call_id, at, *direction, caller, callee, transport),
            CallEventKind::Quality { .. } | CallEventKind::Recording { .. } => self.attach(ev, at),
            _ => self.update(ev, at),
        }
    }

    /// `Quality` and `Recording`: figures attached to a known call (and
    /// leg), ended or not; the latest by event time wins.
    fn attach(&mut self, ev: &CallEvent, at: i64) -> Result<(), Ignored> {
        let e = self.entries.get(&ev.call_id).ok_or(Ignored::UnknownCall)?;
        match &ev.kind {
            CallEventKind::Quality {
                leg,
                direction,
                packets,
                lost,
                jitter_ms,
                rtt_ms,
                mos,
                codec,
            } => {
                if !e.legs.contains_key(leg) {
                    return Err(Ignored::UnknownLeg);
                }
                let number = |v: f32| v.is_finite() && v >= 0.0;
                if !number(*jitter_ms) || !rtt_ms.is_none_or(number) || !mos.is_finite() {
                    return Err(Ignored::InvalidFigures);
                }
                let rec = QualityRecord {
                    call_id: ev.call_id.clone(),
                    leg: *leg,
                    direction: *direction,
                    at_ms: at,
                    packets: *packets,
                    lost: *lost,
                    jitter_ms: *jitter_ms,
                    rtt_ms: *rtt_ms,
                    mos: mos.clamp(1.0, 4.5),
                    codec: codec.clone(),
                };
                let key = (ev.call_id.clone(), *leg, *direction);
                latest(&mut self.quality, &mut self.quality_at, key, rec, |r| {
                    r.at_ms
                });
            }
            CallEventKind::Recording {
                path,
                bytes,
                duration_ms,
                dropped_frames,
            } => {
                if path.is_empty() {
                    return Err(Ignored::InvalidFigures);
                }
                let rec = RecordingRecord {
                    call_id: ev.call_id.clone(),
                    at_ms: at,
                    path: path.clone(),
                    bytes: *bytes,
                    duration_ms: *duration_ms,
                    dropped_frames: *dropped_frames,
                };
                let key = ev.call_id.clone();
                latest(
                    &mut self.recordings,
                    &mut self.recording_at,
                    key,
                    rec,
                    |r| r.at_ms,
                );
            }
            // Routed here only for the two kinds above.
            _ => return self.update(ev, at),
        }
        Ok(())
    }

    /// Any event but `Started`.
    fn update(&mut self, ev: &CallEvent, at: i64) -> Result<(), Ignored> {
        let e = self
            .entries
            .get_mut(&ev.call_id)
            .ok_or(Ignored::UnknownCall)?;
        if e.call.end_ms.is_some() {
            return Err(Ignored::CallEnded);
        }
        let notice = match &ev.kind {
            // Routed to `start` by `apply`.
            CallEventKind::Started { .. } => return Err(Ignored::DuplicateStart),
            // Routed to `attach` by `apply`; they change no row here.
            CallEventKind::Quality { .. } | CallEventKind::Recording { .. } => return Ok(()),
            // Applied by the call service to the stored row (see
            // `CallService::record`), not part of the recorder's figures.
            CallEventKind::Origin { .. } => return Ok(()),
            CallEventKind::LegAdded {
                leg,
                party,
                transport,
            } => {
                if e.legs.contains_key(leg) {
                    return Err(Ignored::DuplicateLeg);
                }
                e.legs.insert(
                    *leg,
                    LegRecord {
                        call_id: ev.call_id.clone(),
                        leg: *leg,
                        party: party.clone(),
                        transport: transport.clone(),
                        created_ms: at.max(e.call.start_ms),
                        ringing_ms: None,
                        answered_ms: None,
                        ended_ms: None,
                        end_cause: None,
                        sip_code: None,
                    },
                );
                e.legs_changed.insert(*leg);
                None
            }
            CallEventKind::Ringing { leg } => {
                let l = e.open_leg(*leg)?;
                if l.ringing_ms.is_some() || l.answered_ms.is_some() {
                    return Err(Ignored::AlreadyRinging);
                }
                let t = at.max(l.created_ms);
                l.ringing_ms = Some(t);
                e.legs_changed.insert(*leg);
                e.mirror_on_caller(*leg, t, |l| &mut l.ringing_ms);
                None
            }
            CallEventKind::Answered { leg } => {
                if e.call.answer_ms.is_some() {
                    return Err(Ignored::AlreadyAnswered);
                }
                let start = e.call.start_ms;
                let l = e.open_leg(*leg)?;
                let t = at.max(l.created_ms).max(start);
                l.answered_ms = Some(t);
                e.legs_changed.insert(*leg);
                e.mirror_on_caller(*leg, t, |l| &mut l.answered_ms);
                e.call.answer_ms = Some(t);
                e.call_changed = true;
                Some((t, CallPhase::Answered))
            }
            CallEventKind::LegEnded {
                leg,
                cause,
                sip_code,
            } => {
                let l = e.open_leg(*leg)?;
                l.ended_ms = Some(at.max(leg_floor(l)));
                l.end_cause = Some(cause.as_str().into());
                l.sip_code = *sip_code;
                e.legs_changed.insert(*leg);
                None
            }
            CallEventKind::Ended { cause } => {
                let c = &mut e.call;
                let end = at.max(c.start_ms).max(c.answer_ms.unwrap_or(c.start_ms));
                let answered = c.answer_ms.is_some();
                let d = disposition(answered, *cause);
                (c.duration, c.billsec) = billing(c.start_ms, c.answer_ms, end);
                c.end_ms = Some(end);
                c.disposition = Some(d);
                // Once per call, off the SIP hot path: a no-op until the
                // binary installs a metrics recorder.
                metrics::counter!("centralita_calls_total", "disposition" => d.as_str())
                    .increment(1);
                c.hangup_cause = Some(cause.as_str().into());
                e.call_changed = true;
                for l in e.legs.values_mut().filter(|l| l.ended_ms.is_none()) {
                    let lost = answered && l.leg != 0 && l.answered_ms.is_none();
                    let why = if lost {
                        HangupCause::AnsweredElsewhere
                    } else {
                        *cause
                    };
                    l.ended_ms = Some(end.max(leg_floor(l)));
                    l.end_cause = Some(why.as_str().into());
                    e.legs_changed.insert(l.leg);
                }
                Some((end, CallPhase::Ended))
            }
        };
        e.touch(&mut self.order);
        if let Some((at_ms, phase)) = notice {
            let c = &e.call;
            self.notices.push(CallNotice {
                call_id: c.call_id.clone(),
                at_ms,
                phase,
                caller_number: c.caller.number.clone(),
                callee_number: c.callee.number.clone(),
                disposition: c.disposition.filter(|_| phase == CallPhase::Ended),
            });
        }
        Ok(())
    }

    fn start(
        &mut self,
        call_id: &str,
        at: i64,
        direction: Direction,
        caller: &Party,
        callee: &Party,
        transport: &str,
    ) -> Result<(), Ignored> {
        if self.entries.contains_key(call_id) {
            return Err(Ignored::DuplicateStart);
        }
        let call = CallRecord {
            call_id: call_id.into(),
            direction,
            caller: caller.clone(),
            callee: callee.clone(),
            start_ms: at,
            answer_ms: None,
            end_ms: None,
            duration: 0,
            billsec: 0,
            disposition: None,
            hangup_cause: None,
        };
        let leg0 = LegRecord {
            call_id: call_id.into(),
            leg: 0,
            party: caller.clone(),
            transport: transport.into(),
            created_ms: at,
            ringing_ms: None,
            answered_ms: None,
            ended_ms: None,
            end_cause: None,
            sip_code: None,
        };
        self.entries.insert(
            call_id.into(),
            Entry {
                call,
                legs: BTreeMap::from([(0, leg0)]),
                call_changed: true,
                legs_changed: BTreeSet::from([0]),
                listed: true,
            },
        );
        self.order.push(call_id.into());
        self.notices.push(CallNotice {
            call_id: call_id.into(),
            at_ms: at,
            phase: CallPhase::Ringing,
            caller_number: caller.number.clone(),
            callee_number: callee.number.clone(),
            disposition: None,
        });
        Ok(())
    }

    /// The rows changed and the phase changes, consuming the recorder.
    pub fn into_changes(mut self) -> Changes {
        let mut out = Changes {
            notices: std::mem::take(&mut self.notices),
            quality: std::mem::take(&mut self.quality),
            recordings: std::mem::take(&mut self.recordings),
            ..Changes::default()
        };
        for id in &self.order {
            let Some(mut e) = self.entries.remove(id) else {
                continue;
            };
            if e.call_changed {
                out.calls.push(e.call);
            }
            for n in &e.legs_changed {
                if let Some(l) = e.legs.remove(n) {
                    out.legs.push(l);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    fn party(n: &str) -> Party {
        Party {
            number: n.into(),
            agent_id: n.parse::<i64>().ok().map(|x| x - 1000),
        }
    }

    fn ev(at: u64, kind: CallEventKind) -> CallEvent {
        CallEvent {
            call_id: "c".into(),
            at_ms: T0 + at,
            kind,
        }
    }
    fn started(at: u64) -> CallEvent {
        ev(
            at,
            CallEventKind::Started {
                direction: Direction::Internal,
                caller: party("1001"),
                callee: party("1002"),
                transport: "udp".into(),
            },
        )
    }
    fn added(at: u64, leg: LegNo, transport: &str) -> CallEvent {
        ev(
            at,
            CallEventKind::LegAdded {
                leg,
                party: party("1002"),
                transport: transport.into(),
            },
        )
    }
    fn ringing(at: u64, leg: LegNo) -> CallEvent {
        ev(at, CallEventKind::Ringing { leg })
    }
    fn answered(at: u64, leg: LegNo) -> CallEvent {
        ev(at, CallEventKind::Answered { leg })
    }
    fn leg_ended(at: u64, leg: LegNo, cause: HangupCause, code: Option<u16>) -> CallEvent {
        ev(
            at,
            CallEventKind::LegEnded {
                leg,
                cause,
                sip_code: code,
            },
        )
    }
    fn ended(at: u64, cause: HangupCause) -> CallEvent {
        ev(at, CallEventKind::Ended { cause })
    }

    fn t(v: Option<i64>) -> String {
        v.map_or("-".into(), |v| (v - T0 as i64).to_string())
    }

    /// `call start answer end duration billsec disposition cause`
    fn call_line(c: &CallRecord) -> String {
        format!(
            "call {} {} {} {} {} {} {}",
            t(Some(c.start_ms)),
            t(c.answer_ms),
            t(c.end_ms),
            c.duration,
            c.billsec,
            c.disposition.map_or("-", Disposition::as_str),
            c.hangup_cause.as_deref().unwrap_or("-"),
        )
    }

    /// `leg N number agent transport created ringing answered ended cause sip`
    fn leg_line(l: &LegRecord) -> String {
        format!(
            "leg {} {} {} {} {} {} {} {} {} {}",
            l.leg,
            l.party.number,
            l.party.agent_id.map_or("-".into(), |a| a.to_string()),
            l.transport,
            t(Some(l.created_ms)),
            t(l.ringing_ms),
            t(l.answered_ms),
            t(l.ended_ms),
            l.end_cause.as_deref().unwrap_or("-"),
            l.sip_code.map_or("-".into(), |c| c.to_string()),
        )
    }

    /// Runs `events` through a recorder that knows `stored`; the rows
    /// changed, then `notice <phase> <at> <disposition>` lines, then
    /// `ignored <n>: <why>` for every event that changed nothing.
    fn run(stored: Option<(CallRecord, Vec<LegRecord>)>, events: &[CallEvent]) -> Vec<String> {
        let mut r = match stored {
            Some((c, legs)) => Recorder::with_stored([c], legs),
            None => Recorder::new(),
        };
        let ignored: Vec<String> = events
            .iter()
            .enumerate()
            .filter_map(|(i, e)| r.apply(e).err().map(|why| format!("ignored {i}: {why}")))
            .collect();
        let ch = r.into_changes();
        let mut out: Vec<String> = ch.calls.iter().map(call_line).collect();
        out.extend(ch.legs.iter().map(leg_line));
        out.extend(ch.notices.iter().map(|n| {
            format!(
                "notice {} {} {}",
                n.phase.as_str(),
                t(Some(n.at_ms)),
                n.disposition.map_or("-", Disposition::as_str)
            )
        }));
        out.extend(ignored);
        out
    }

    use HangupCause::*;

    /// Event scripts of one call from scratch → the rows written.
    #[test]
    fn scripts_to_rows() {
        let cases: Vec<(&str, Vec<CallEvent>, Vec<&str>)> = vec![
            (
                "answered, callee hangs up",
                vec![
                    started(0),
                    added(5, 1, "ws"),
                    ringing(100, 1),
                    answered(2_000, 1),
                    ended(62_500, CalleeBye),
                ],
                vec![
                    "call 0 2000 62500 62 60 ANSWERED callee_bye",
                    "leg 0 1001 1 udp 0 100 2000 62500 callee_bye -",
                    "leg 1 1002 2 ws 5 100 2000 62500 callee_bye -",
                    "notice ringing 0 -",
                    "notice answered 2000 -",
                    "notice ended 62500 ANSWERED",
                ],
            ),
            (
                "two forks, the second answers, the first loses",
                vec![
                    started(0),
                    added(1, 1, "udp"),
                    added(1, 2, "wss"),
                    ringing(50, 1),
                    ringing(60, 2),
                    answered(3_000, 2),
                    leg_ended(3_010, 2, CallerBye, None),
                    ended(9_000, CallerBye),
                ],
                vec![
                    "call 0 3000 9000 9 6 ANSWERED caller_bye",
                    "leg 0 1001 1 udp 0 50 3000 9000 caller_bye -",
                    "leg 1 1002 2 udp 1 50 - 9000 answered_elsewhere -",
                    "leg 2 1002 2 wss 1 60 3000 3010 caller_bye -",
                    "notice ringing 0 -",
                    "notice answered 3000 -",
                    "notice ended 9000 ANSWERED",
                ],
            ),
            (
                "caller cancels while ringing",
                vec![
                    started(0),
                    added(1, 1, "tcp"),
                    ringing(10, 1),
                    leg_ended(4_000, 1, Cancelled, Some(487)),
                    ended(4_001, Cancelled),
                ],
                vec![
                    "call 0 - 4001 4 0 CANCELLED cancelled",
                    "leg 0 1001 1 udp 0 10 - 4001 cancelled -",
                    "leg 1 1002 2 tcp 1 10 - 4000 cancelled 487",
                    "notice ringing 0 -",
                    "notice ended 4001 CANCELLED",
                ],
            ),
            (
                "nobody answers: open legs close with the call's cause",
                vec![started(0), added(1, 1, "udp"), ended(30_000, NoAnswer)],
                vec![
                    "call 0 - 30000 30 0 NO ANSWER no_answer",
                    "leg 0 1001 1 udp 0 - - 30000 no_answer -",
                    "leg 1 1002 2 udp 1 - - 30000 no_answer -",
                    "notice ringing 0 -",
                    "notice ended 30000 NO ANSWER",
                ],
            ),
            (
                "busy",
                vec![
                    started(0),
                    added(1, 1, "udp"),
                    leg_ended(300, 1, Busy, Some(486)),
                    ended(301, Busy),
                ],
                vec![
                    "call 0 - 301 0 0 BUSY busy",
                    "leg 0 1001 1 udp 0 - - 301 busy -",
                    "leg 1 1002 2 udp 1 - - 300 busy 486",
                    "notice ringing 0 -",
                    "notice ended 301 BUSY",
                ],
            ),
            (
                "not found: FAILED, no destination leg",
                vec![started(0), ended(2, NotFound)],
                vec![
                    "call 0 - 2 0 0 FAILED not_found",
                    "leg 0 1001 1 udp 0 - - 2 not_found -",
                    "notice ringing 0 -",
                    "notice ended 2 FAILED",
                ],
            ),
            (
                "answered, then the callee's connection is lost",
                vec![
                    started(0),
                    added(1, 1, "udp"),
                    answered(1_000, 1),
                    ended(5_000, CalleeConnectionLost),
                ],
                vec![
                    "call 0 1000 5000 5 4 ANSWERED callee_connection_lost",
                    "leg 0 1001 1 udp 0 - 1000 5000 callee_connection_lost -",
                    "leg 1 1002 2 udp 1 - 1000 5000 callee_connection_lost -",
                    "notice ringing 0 -",
                    "notice answered 1000 -",
                    "notice ended 5000 ANSWERED",
                ],
            ),
            (
                "duplicates and late events change nothing",
                vec![
                    started(0),
                    started(5),
                    added(1, 1, "udp"),
                    added(2, 1, "tcp"),
                    added(2, 0, "tcp"),
                    ringing(10, 1),
                    ringing(20, 1),
                    ringing(20, 7),
                    answered(1_000, 1),
                    answered(1_500, 1),
                    leg_ended(9_000, 1, CalleeBye, Some(200)),
                    leg_ended(9_001, 1, Failed, None),
                    ended(10_000, CalleeBye),
                    ended(11_000, Failed),
                    answered(12_000, 1),
                    added(12_000, 3, "udp"),
                    leg_ended(12_000, 0, CallerBye, None),
                    started(13_000),
                ],
                vec![
                    "call 0 1000 10000 10 9 ANSWERED callee_bye",
                    "leg 0 1001 1 udp 0 10 1000 10000 callee_bye -",
                    "leg 1 1002 2 udp 1 10 1000 9000 callee_bye 200",
                    "notice ringing 0 -",
                    "notice answered 1000 -",
                    "notice ended 10000 ANSWERED",
                    "ignored 1: duplicate start",
                    "ignored 3: duplicate leg",
                    "ignored 4: duplicate leg",
                    "ignored 6: already ringing",
                    "ignored 7: unknown leg",
                    "ignored 9: already answered",
                    "ignored 11: leg ended",
                    "ignored 13: call ended",
                    "ignored 14: call ended",
                    "ignored 15: call ended",
                    "ignored 16: call ended",
                    "ignored 17: duplicate start",
                ],
            ),
            (
                "a second leg answering after the first is ignored",
                vec![
                    started(0),
                    added(1, 1, "udp"),
                    added(1, 2, "udp"),
                    answered(100, 1),
                    answered(101, 2),
                    ended(1_100, CallerBye),
                ],
                vec![
                    "call 0 100 1100 1 1 ANSWERED caller_bye",
                    "leg 0 1001 1 udp 0 - 100 1100 caller_bye -",
                    "leg 1 1002 2 udp 1 - 100 1100 caller_bye -",
                    "leg 2 1002 2 udp 1 - - 1100 answered_elsewhere -",
                    "notice ringing 0 -",
                    "notice answered 100 -",
                    "notice ended 1100 ANSWERED",
                    "ignored 4: already answered",
                ],
            ),
            (
                "an ended leg cannot answer",
                vec![
                    started(0),
                    added(1, 1, "udp"),
                    leg_ended(5, 1, Busy, Some(486)),
                    answered(6, 1),
                    ended(7, Busy),
                ],
                vec![
                    "call 0 - 7 0 0 BUSY busy",
                    "leg 0 1001 1 udp 0 - - 7 busy -",
                    "leg 1 1002 2 udp 1 - - 5 busy 486",
                    "notice ringing 0 -",
                    "notice ended 7 BUSY",
                    "ignored 3: leg ended",
                ],
            ),
            (
                "events of a call with no Started write nothing",
                vec![
                    added(1, 1, "udp"),
                    ringing(2, 1),
                    answered(3, 1),
                    leg_ended(4, 1, CalleeBye, None),
                    ended(5, CalleeBye),
                ],
                vec![
                    "ignored 0: unknown call",
                    "ignored 1: unknown call",
                    "ignored 2: unknown call",
                    "ignored 3: unknown call",
                    "ignored 4: unknown call",
                ],
            ),
            (
                "clock skew: nothing ends before it began",
                vec![
                    started(1_000),
                    added(900, 1, "udp"),
                    ringing(800, 1),
                    answered(700, 1),
                    leg_ended(600, 1, CalleeBye, None),
                    ended(500, CalleeBye),
                ],
                vec![
                    "call 1000 1000 1000 0 0 ANSWERED callee_bye",
                    "leg 0 1001 1 udp 1000 1000 1000 1000 callee_bye -",
                    "leg 1 1002 2 udp 1000 1000 1000 1000 callee_bye -",
                    "notice ringing 1000 -",
                    "notice answered 1000 -",
                    "notice ended 1000 ANSWERED",
                ],
            ),
            (
                "an answer with no destination leg (the engine answers the caller)",
                vec![started(0), answered(1_000, 0), ended(3_000, CallerBye)],
                vec![
                    "call 0 1000 3000 3 2 ANSWERED caller_bye",
                    "leg 0 1001 1 udp 0 - 1000 3000 caller_bye -",
                    "notice ringing 0 -",
                    "notice answered 1000 -",
                    "notice ended 3000 ANSWERED",
                ],
            ),
        ];
        for (name, events, want) in cases {
            assert_eq!(run(None, &events), want, "{name}");
        }
    }

    fn stored_after(events: &[CallEvent]) -> (CallRecord, Vec<LegRecord>) {
        let mut r = Recorder::new();
        for e in events {
            r.apply(e).expect("applies");
        }
        let ch = r.into_changes();
        (ch.calls[0].clone(), ch.legs)
    }

    /// A call whose events arrive over several batches: each batch starts
    /// from the rows the previous one stored and returns only what changed.
    #[test]
    fn later_batches_start_from_the_stored_rows() {
        let stored = stored_after(&[started(0), added(1, 1, "udp"), added(1, 2, "udp")]);
        assert_eq!(
            run(Some(stored.clone()), &[ringing(100, 2), answered(1_000, 2)]),
            vec![
                "call 0 1000 - 0 0 - -",
                "leg 0 1001 1 udp 0 100 1000 - - -",
                "leg 2 1002 2 udp 1 100 1000 - - -",
                "notice answered 1000 -",
            ]
        );
        // Only leg 1 changes when it alone ends.
        assert_eq!(
            run(
                Some(stored.clone()),
                &[leg_ended(50, 1, NotRegistered, Some(480))]
            ),
            vec!["leg 1 1002 2 udp 1 - - 50 not_registered 480"]
        );
        let answered_rows = stored_after(&[
            started(0),
            added(1, 1, "udp"),
            added(1, 2, "udp"),
            answered(1_000, 2),
        ]);
        assert_eq!(
            run(Some(answered_rows), &[ended(4_000, CallerBye)]),
            vec![
                "call 0 1000 4000 4 3 ANSWERED caller_bye",
                "leg 0 1001 1 udp 0 - 1000 4000 caller_bye -",
                "leg 1 1002 2 udp 1 - - 4000 answered_elsewhere -",
                "leg 2 1002 2 udp 1 - 1000 4000 caller_bye -",
                "notice ended 4000 ANSWERED",
            ]
        );
    }

    /// After a restart the stored row is closed (an orphan, FAILED): late
    /// events of that call change nothing and a repeated Started does not
    /// make a second row.
    #[test]
    fn closed_rows_are_final() {
        let (mut call, mut legs) = stored_after(&[started(0), added(1, 1, "udp")]);
        call.end_ms = Some(call.start_ms + 50_000);
        call.duration = 50;
        call.disposition = Some(Disposition::Failed);
        call.hangup_cause = Some("server restart".into());
        for l in &mut legs {
            l.ended_ms = call.end_ms;
            l.end_cause = Some("server restart".into());
        }
        assert_eq!(
            run(
                Some((call, legs)),
                &[
                    answered(60_000, 1),
                    ended(61_000, CallerBye),
                    started(62_000)
                ]
            ),
            vec![
                "ignored 0: call ended",
                "ignored 1: call ended",
                "ignored 2: duplicate start",
            ]
        );
    }

    fn quality(at: u64, leg: LegNo, direction: MediaDirection, mos: f32) -> CallEvent {
        ev(
            at,
            CallEventKind::Quality {
                leg,
                direction,
                packets: 1_000,
                lost: 10,
                jitter_ms: 2.5,
                rtt_ms: Some(30.0),
                mos,
                codec: "PCMU".into(),
            },
        )
    }

    fn recording(at: u64, path: &str) -> CallEvent {
        ev(
            at,
            CallEventKind::Recording {
                path: path.into(),
                bytes: 1_044,
                duration_ms: 1_000,
                dropped_frames: 2,
            },
        )
    }

    /// Quality and recording come after the end: they attach to the ended
    /// call without touching its CDR; the latest figures per leg and
    /// direction win, even when a batch (a replay) brings older ones.
    #[test]
    fn quality_and_recording_attach_to_ended_calls() {
        use MediaDirection::{Inbound, Outbound};
        let stored = stored_after(&[
            started(0),
            added(1, 1, "udp"),
            answered(1_000, 1),
            ended(4_000, CallerBye),
        ]);
        let mut r = Recorder::with_stored([stored.0.clone()], stored.1.clone());
        let events = [
            quality(3_000, 1, Inbound, 4.1),
            quality(4_100, 1, Inbound, 3.2),
            // Older than the one before: does not replace it.
            quality(3_500, 1, Inbound, 4.4),
            quality(4_100, 1, Outbound, 9.0),
            quality(4_100, 0, Inbound, 0.2),
            recording(4_200, "a.wav"),
            recording(4_300, "b.wav"),
        ];
        for e in &events {
            assert_eq!(r.apply(e), Ok(()));
        }
        let ch = r.into_changes();
        assert!(ch.calls.is_empty() && ch.legs.is_empty() && ch.notices.is_empty());
        let got: Vec<(LegNo, MediaDirection, i64, f32)> = ch
            .quality
            .iter()
            .map(|q| (q.leg, q.direction, q.at_ms - T0 as i64, q.mos))
            .collect();
        // MOS clamped to 1.0..=4.5.
        assert_eq!(
            got,
            [
                (1, Inbound, 4_100, 3.2),
                (1, Outbound, 4_100, 4.5),
                (0, Inbound, 4_100, 1.0)
            ]
        );
        assert_eq!(ch.recordings.len(), 1);
        assert_eq!(ch.recordings[0].path, "b.wav");
        assert_eq!(
            (ch.recordings[0].bytes, ch.recordings[0].dropped_frames),
            (1_044, 2)
        );
    }

    #[test]
    fn quality_that_cannot_apply_is_ignored() {
        let mut r = Recorder::new();
        let mut bad_jitter = quality(10, 0, MediaDirection::Inbound, 4.0);
        if let CallEventKind::Quality { jitter_ms, .. } = &mut bad_jitter.kind {
            *jitter_ms = f32::NAN;
        }
        let mut bad_rtt = quality(10, 0, MediaDirection::Inbound, 4.0);
        if let CallEventKind::Quality { rtt_ms, .. } = &mut bad_rtt.kind {
            *rtt_ms = Some(-1.0);
        }
        assert_eq!(
            r.apply(&quality(0, 0, MediaDirection::Inbound, 4.0)),
            Err(Ignored::UnknownCall)
        );
        assert_eq!(r.apply(&recording(0, "x.wav")), Err(Ignored::UnknownCall));
        r.apply(&started(0)).expect("start");
        assert_eq!(
            r.apply(&quality(5, 3, MediaDirection::Inbound, 4.0)),
            Err(Ignored::UnknownLeg)
        );
        assert_eq!(r.apply(&bad_jitter), Err(Ignored::InvalidFigures));
        assert_eq!(r.apply(&bad_rtt), Err(Ignored::InvalidFigures));
        assert_eq!(
            r.apply(&quality(5, 0, MediaDirection::Inbound, f32::INFINITY)),
            Err(Ignored::InvalidFigures)
        );
        assert_eq!(r.apply(&recording(6, "")), Err(Ignored::InvalidFigures));
        // Leg 0 exists from the start: figures for an open call apply.
        assert_eq!(
            r.apply(&quality(7, 0, MediaDirection::Outbound, 4.0)),
            Ok(())
        );
        assert_eq!(r.into_changes().quality.len(), 1);
    }

    /// Events of several calls interleaved: rows per call, notices in
    /// event order; legs handed in for a call that was not are dropped.
    #[test]
    fn interleaved_calls() {
        let on = |id: &str, mut e: CallEvent| {
            e.call_id = id.into();
            e
        };
        let stray = LegRecord {
            call_id: "nobody".into(),
            ..stored_after(&[started(0)]).1[0].clone()
        };
        let mut r = Recorder::with_stored([], [stray]);
        let events = [
            on("a", started(0)),
            on("b", started(1)),
            on("b", ended(2, Rejected)),
            on("a", added(3, 1, "udp")),
            on("a", answered(1_003, 1)),
            on("nobody", ended(4, Failed)),
        ];
        let ignored: Vec<_> = events.iter().map(|e| r.apply(e).err()).collect();
        assert_eq!(
            ignored,
            [None, None, None, None, None, Some(Ignored::UnknownCall)]
        );
        let ch = r.into_changes();
        assert_eq!(
            ch.calls
                .iter()
                .map(|c| c.call_id.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(
            ch.legs
                .iter()
                .map(|l| format!("{}/{}", l.call_id, l.leg))
                .collect::<Vec<_>>(),
            ["a/0", "a/1", "b/0"]
        );
        assert_eq!(
            ch.notices
                .iter()
                .map(|n| format!("{} {}", n.call_id, n.phase.as_str()))
                .collect::<Vec<_>>(),
            ["a ringing", "b ringing", "b ended", "a answered"]
        );
        assert_eq!(
            call_ids(&events),
            ["a", "b", "nobody"],
            "distinct, first seen first"
        );
    }

    #[test]
    fn disposition_and_billing_rules() {
        let table = [
            (false, Cancelled, Disposition::Cancelled),
            (false, NoAnswer, Disposition::NoAnswer),
            (false, Busy, Disposition::Busy),
            (false, NotFound, Disposition::Failed),
            (false, NotRegistered, Disposition::Failed),
            (false, Rejected, Disposition::Failed),
            (false, CallerBye, Disposition::Failed),
            (false, AckTimeout, Disposition::Failed),
            (false, Shutdown, Disposition::Failed),
            (true, Cancelled, Disposition::Answered),
            (true, Busy, Disposition::Answered),
            (true, MaxDuration, Disposition::Answered),
        ];
        for (answered, cause, want) in table {
            assert_eq!(disposition(answered, cause), want, "{answered} {cause:?}");
        }
        assert_eq!(billing(0, None, 59_999), (59, 0));
        assert_eq!(billing(0, Some(1_500), 61_499), (61, 59));
        assert_eq!(billing(10_000, Some(20_000), 5_000), (0, 0));
        assert_eq!(billing(i64::MIN, None, i64::MAX), (i64::MAX / 1000, 0));
    }
}
