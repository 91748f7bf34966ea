//! Calls and CDRs: one `calls` row per call attempt and one `call_legs`
//! row per leg, written by the recorder (`crate::recorder`) from the
//! engines' call events; rows left open by a crash are closed as FAILED at
//! the next start.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use store::call_legs::LegRow;
use store::call_quality::QualityRow;
use store::calls::{CallFilter, CallRow, FinishCall, SaveCall, SaveRecording};

use crate::call_events::{CallEvent, CallEventKind, LegNo, MediaDirection, Party};
use crate::events::Event;
use crate::quality::{self, CallQuality, LegQuality, QualityClass};
use crate::recorder::{
    self, CallNotice, CallRecord, LegRecord, QualityRecord, Recorder, RecordingRecord,
};
use crate::time::{from_ms, now_ms, opt_from_ms, to_ms};
use crate::{Ctx, DomainError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
    Internal,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
            Self::Internal => "internal",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "inbound" => Self::Inbound,
            "outbound" => Self::Outbound,
            "internal" => Self::Internal,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Disposition {
    #[serde(rename = "ANSWERED")]
    Answered,
    #[serde(rename = "NO ANSWER")]
    NoAnswer,
    #[serde(rename = "BUSY")]
    Busy,
    #[serde(rename = "FAILED")]
    Failed,
    #[serde(rename = "CANCELLED")]
    Cancelled,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "ANSWERED",
            Self::NoAnswer => "NO ANSWER",
            Self::Busy => "BUSY",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Accepts the CDR spelling and common variants (`no_answer`, `noAnswer`).
    pub fn parse(s: &str) -> Option<Self> {
        let norm: String = s
            .trim()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_uppercase();
        Some(match norm.as_str() {
            "ANSWERED" => Self::Answered,
            "NOANSWER" => Self::NoAnswer,
            "BUSY" => Self::Busy,
            "FAILED" => Self::Failed,
            "CANCELLED" | "CANCELED" => Self::Cancelled,
            _ => return None,
        })
    }
}

/// An agent reference in a call.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct CallAgent {
    pub id: i64,
    pub name: String,
}

/// A CDR as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    pub id: i64,
    pub call_id: String,
    pub direction: String,
    pub caller_number: String,
    pub callee_number: String,
    pub agent_id: Option<i64>,
    pub agent: Option<CallAgent>,
    pub callee_agent_id: Option<i64>,
    pub callee_agent: Option<CallAgent>,
    /// ringing | answered | ended
    pub state: String,
    pub start_time: DateTime<Utc>,
    pub answer_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub duration: i64,
    pub billsec: i64,
    pub disposition: Option<String>,
    pub hangup_cause: Option<String>,
    /// A finished recording exists (`GET .../calls/{callId}/recording`).
    pub has_recording: bool,
    pub recording: Option<CallRecording>,
    /// The media figures per leg and direction and their summary; null
    /// when the media plane reported none (calls not anchored).
    pub quality: Option<CallQuality>,
    /// The trunk the call came in or went out through.
    pub trunk: Option<CallTrunk>,
    /// The number the caller dialled, for a call that came from a trunk.
    pub did: Option<String>,
}

/// The trunk of a call (its name when it still exists).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallTrunk {
    pub id: i64,
    pub name: Option<String>,
}

/// A call's finished recording: a stereo WAV, customer left, agent right.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallRecording {
    /// Relative to the recording directory; never shown.
    #[serde(skip)]
    pub path: String,
    pub bytes: i64,
    pub duration_ms: i64,
    /// Audio frames the recorder dropped (a gap of silence each).
    pub dropped_frames: i64,
}

fn call_from_row(r: CallRow) -> Call {
    let state = if r.end_time.is_some() {
        "ended"
    } else if r.answer_time.is_some() {
        "answered"
    } else {
        "ringing"
    };
    Call {
        id: r.id,
        call_id: r.call_id,
        direction: r.direction,
        caller_number: r.caller_number,
        callee_number: r.callee_number,
        agent_id: r.agent_id,
        agent: r
            .agent_id
            .zip(r.agent_name)
            .map(|(id, name)| CallAgent { id, name }),
        callee_agent_id: r.callee_agent_id,
        callee_agent: r
            .callee_agent_id
            .zip(r.callee_agent_name)
            .map(|(id, name)| CallAgent { id, name }),
        state: state.into(),
        start_time: from_ms(r.start_time),
        answer_time: opt_from_ms(r.answer_time),
        end_time: opt_from_ms(r.end_time),
        duration: r.duration,
        billsec: r.billsec,
        disposition: r.disposition,
        hangup_cause: r.hangup_cause,
        has_recording: r.recording_path.is_some(),
        recording: r.recording_path.map(|path| CallRecording {
            path,
            bytes: r.recording_bytes.unwrap_or(0),
            duration_ms: r.recording_duration_ms.unwrap_or(0),
            dropped_frames: r.recording_dropped_frames.unwrap_or(0),
        }),
        // Filled by `with_quality`.
        quality: None,
        trunk: r.trunk_id.map(|id| CallTrunk {
            id,
            name: r.trunk_name,
        }),
        did: r.did,
    }
}

fn leg_quality_from_row(r: QualityRow) -> Option<(String, LegQuality)> {
    let direction = MediaDirection::parse(&r.direction)?;
    let packets = u64::try_from(r.packets).unwrap_or(0);
    let lost = u64::try_from(r.lost).unwrap_or(0);
    let mos = r.mos as f32;
    Some((
        r.call_id,
        LegQuality {
            leg: leg_no(r.leg_no),
            direction,
            packets,
            lost,
            loss_percent: quality::loss_percent(packets, lost),
            jitter_ms: r.jitter_ms as f32,
            rtt_ms: r.rtt_ms.map(|v| v as f32),
            mos,
            class: QualityClass::from_mos(mos),
            codec: r.codec,
        },
    ))
}

fn quality_row(q: QualityRecord) -> QualityRow {
    let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    QualityRow {
        leg_no: i64::from(q.leg),
        direction: q.direction.as_str().into(),
        at_ms: q.at_ms,
        packets: int(q.packets),
        lost: int(q.lost),
        jitter_ms: f64::from(q.jitter_ms),
        rtt_ms: q.rtt_ms.map(f64::from),
        mos: f64::from(q.mos),
        codec: q.codec,
        call_id: q.call_id,
    }
}

fn save_recording(r: &RecordingRecord) -> SaveRecording<'_> {
    let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    SaveRecording {
        call_id: &r.call_id,
        at: r.at_ms,
        path: &r.path,
        bytes: int(r.bytes),
        duration_ms: int(r.duration_ms),
        dropped_frames: int(r.dropped_frames),
    }
}

/// Fills in the quality of `calls` with one query.
async fn with_quality(c: &mut store::Conn, mut calls: Vec<Call>) -> Result<Vec<Call>, DomainError> {
    if calls.is_empty() {
        return Ok(calls);
    }
    let ids: Vec<&str> = calls.iter().map(|c| c.call_id.as_str()).collect();
    let rows = store::call_quality::for_calls(c, &ids).await?;
    let mut by_call: HashMap<String, Vec<LegQuality>> = HashMap::new();
    for (id, q) in rows.into_iter().filter_map(leg_quality_from_row) {
        by_call.entry(id).or_default().push(q);
    }
    for call in &mut calls {
        if let Some(legs) = by_call.remove(&call.call_id) {
            call.quality = quality::summarize(legs);
        }
    }
    Ok(calls)
}

/// One leg of a call as the API shows it: leg 0 is the caller, legs 1..
/// the destinations tried.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallLeg {
    #[schema(value_type = u32)]
    pub leg: LegNo,
    pub number: String,
    pub agent_id: Option<i64>,
    /// `udp`, `tcp`, `tls`, `ws`, `wss`, or `trunk:<name>`.
    pub transport: String,
    pub created_at: DateTime<Utc>,
    pub ringing_at: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub end_cause: Option<String>,
    pub sip_code: Option<u16>,
}

fn leg_no(n: i64) -> LegNo {
    LegNo::try_from(n).unwrap_or(LegNo::MAX)
}

fn sip_code(c: Option<i64>) -> Option<u16> {
    c.and_then(|c| u16::try_from(c).ok())
}

fn leg_from_row(r: LegRow) -> CallLeg {
    CallLeg {
        leg: leg_no(r.leg_no),
        number: r.party_number,
        agent_id: r.agent_id,
        transport: r.transport,
        created_at: from_ms(r.created_at),
        ringing_at: opt_from_ms(r.ringing_at),
        answered_at: opt_from_ms(r.answered_at),
        ended_at: opt_from_ms(r.ended_at),
        end_cause: r.end_cause,
        sip_code: sip_code(r.sip_code),
    }
}

// Between the store's rows and the recorder's records.

fn record_from_row(r: CallRow) -> CallRecord {
    CallRecord {
        direction: Direction::parse(&r.direction).unwrap_or(Direction::Internal),
        caller: Party {
            number: r.caller_number,
            agent_id: r.agent_id,
        },
        callee: Party {
            number: r.callee_number,
            agent_id: r.callee_agent_id,
        },
        start_ms: r.start_time,
        answer_ms: r.answer_time,
        end_ms: r.end_time,
        duration: r.duration,
        billsec: r.billsec,
        disposition: r.disposition.as_deref().and_then(Disposition::parse),
        hangup_cause: r.hangup_cause,
        call_id: r.call_id,
    }
}

fn save_call(c: &CallRecord) -> SaveCall<'_> {
    SaveCall {
        call_id: &c.call_id,
        direction: c.direction.as_str(),
        caller_number: &c.caller.number,
        callee_number: &c.callee.number,
        agent_id: c.caller.agent_id,
        callee_agent_id: c.callee.agent_id,
        start_time: c.start_ms,
        answer_time: c.answer_ms,
        end_time: c.end_ms,
        duration: c.duration,
        billsec: c.billsec,
        disposition: c.disposition.map(Disposition::as_str),
        hangup_cause: c.hangup_cause.as_deref(),
    }
}

fn leg_record_from_row(r: LegRow) -> LegRecord {
    LegRecord {
        leg: leg_no(r.leg_no),
        party: Party {
            number: r.party_number,
            agent_id: r.agent_id,
        },
        transport: r.transport,
        created_ms: r.created_at,
        ringing_ms: r.ringing_at,
        answered_ms: r.answered_at,
        ended_ms: r.ended_at,
        end_cause: r.end_cause,
        sip_code: sip_code(r.sip_code),
        call_id: r.call_id,
    }
}

fn leg_row(l: LegRecord) -> LegRow {
    LegRow {
        call_id: l.call_id,
        leg_no: i64::from(l.leg),
        party_number: l.party.number,
        agent_id: l.party.agent_id,
        transport: l.transport,
        created_at: l.created_ms,
        ringing_at: l.ringing_ms,
        answered_at: l.answered_ms,
        ended_at: l.ended_ms,
        end_cause: l.end_cause,
        sip_code: l.sip_code.map(i64::from),
    }
}

fn notice_event(n: CallNotice) -> Event {
    Event::Call {
        at: from_ms(n.at_ms),
        call_id: n.call_id,
        state: n.phase.as_str().into(),
        caller_number: n.caller_number,
        callee_number: n.callee_number,
        disposition: n.disposition.map(|d| d.as_str().into()),
    }
}

/// History query; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct CallQuery {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Calls where this user is caller or callee agent.
    pub agent_id: Option<i64>,
    pub disposition: Option<Disposition>,
    pub search: Option<String>,
    pub limit: i64,
    pub offset: i64,
    /// `field` or `-field` (see [`store::calls::order_column`]); default
    /// `-startTime` (newest first).
    pub order: Option<String>,
}

impl CallQuery {
    fn filter(&self) -> CallFilter {
        CallFilter {
            from: self.from.map(to_ms),
            to: self.to.map(to_ms),
            agent: self.agent_id,
            disposition: self.disposition.map(|d| d.as_str().to_string()),
            search: self
                .search
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.chars().take(100).collect()),
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallStats {
    pub total_calls: i64,
    pub answered: i64,
    pub no_answer: i64,
    pub busy: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub total_duration: i64,
    pub total_billsec: i64,
    pub avg_duration: i64,
    /// Average over answered calls.
    pub avg_billsec: i64,
    /// Percentage of answered calls, two decimals ("80.00").
    pub answer_rate: String,
}

#[derive(Clone, Debug)]
pub struct CallService {
    ctx: Arc<Ctx>,
}

impl CallService {
    pub(crate) fn new(ctx: Arc<Ctx>) -> Self {
        Self { ctx }
    }

    /// Records a batch of call events (any calls, in the order the engine
    /// emitted them) in one write transaction: loads the stored rows of
    /// their calls, runs them through the [`Recorder`] and saves the rows
    /// it changed. After the commit it publishes a `call` event for each
    /// phase change (ringing at `Started`, answered, ended), in order.
    /// Events that cannot apply (see [`crate::recorder`]) are skipped and
    /// logged. If the batch fails nothing of it is written and nothing is
    /// published; the caller may retry its events one by one so that one
    /// bad event (e.g. an agent that no longer exists) loses only its own
    /// call.
    pub async fn record(&self, events: &[CallEvent]) -> Result<(), DomainError> {
        if events.is_empty() {
            return Ok(());
        }
        let ids = recorder::call_ids(events);
        let mut tx = self.ctx.db.write().await?;
        // Read, merge, write back: one merge at a time (see store::Lock).
        store::lock(&mut tx, store::Lock::CallRecords).await?;
        let calls = store::calls::by_call_ids(&mut tx, &ids).await?;
        let legs = store::call_legs::for_calls(&mut tx, &ids).await?;
        // Legs already ended before this batch: a trunk attempt is counted
        // once, when its leg ends.
        let ended_before: std::collections::HashSet<(String, i64)> = legs
            .iter()
            .filter(|l| l.ended_at.is_some())
            .map(|l| (l.call_id.clone(), l.leg_no))
            .collect();
        let mut rec = Recorder::with_stored(
            calls.into_iter().map(record_from_row),
            legs.into_iter().map(leg_record_from_row),
        );
        for ev in events {
            if let Err(why) = rec.apply(ev) {
                tracing::debug!(call_id = %ev.call_id, event = ?ev.kind, %why, "call event ignored");
            }
        }
        let changes = rec.into_changes();
        let now = now_ms();
        let rows: Vec<SaveCall<'_>> = changes.calls.iter().map(save_call).collect();
        store::calls::save(&mut tx, &rows, now).await?;
        let legs: Vec<LegRow> = changes.legs.into_iter().map(leg_row).collect();
        store::call_legs::upsert(&mut tx, &legs).await?;
        // Per trunk leg, one lookup of the trunk for both uses:
        // - its counters follow from the CDR legs: every attempt through a
        //   trunk (`trunk:<name>`) that ended here counts, as successful
        //   when the carrier's leg answered;
        // - the call's trunk is the one whose leg answered, else the first
        //   trunk leg (the first carrier tried); a call from a trunk gets
        //   it (and its DID) from its `Origin` event below.
        for l in &legs {
            let Some(name) = l.transport.strip_prefix("trunk:") else {
                continue;
            };
            let Some(id) = store::trunks::id_by_name(&mut tx, name).await? else {
                continue;
            };
            let ends_here =
                l.ended_at.is_some() && !ended_before.contains(&(l.call_id.clone(), l.leg_no));
            if ends_here {
                store::trunks::count_call(&mut tx, id, l.answered_at.is_some()).await?;
            }
            if l.answered_at.is_some() && l.leg_no > 0 {
                store::calls::set_trunk(&mut tx, &l.call_id, id, now).await?;
            } else {
                store::calls::set_origin(&mut tx, &l.call_id, Some(id), None, now).await?;
            }
        }
        for ev in events {
            if let CallEventKind::Origin { trunk, did } = &ev.kind {
                let id = match trunk {
                    Some(name) => store::trunks::id_by_name(&mut tx, name).await?,
                    None => None,
                };
                store::calls::set_origin(&mut tx, &ev.call_id, id, did.as_deref(), now).await?;
            }
        }
        // After the legs: a quality row refers to its leg.
        let quality: Vec<QualityRow> = changes.quality.into_iter().map(quality_row).collect();
        store::call_quality::upsert(&mut tx, &quality).await?;
        let recordings: Vec<SaveRecording<'_>> =
            changes.recordings.iter().map(save_recording).collect();
        store::calls::save_recordings(&mut tx, &recordings, now).await?;
        tx.commit().await?;
        for n in changes.notices {
            self.ctx.events.publish(notice_event(n));
        }
        Ok(())
    }

    /// Closes every call row with no end time as FAILED with `cause`, and
    /// every open leg with the same cause (rows a crash left open). Returns
    /// the calls closed.
    pub async fn close_orphans(&self, cause: &str) -> Result<u64, DomainError> {
        let mut tx = self.ctx.db.write().await?;
        let now = now_ms();
        let mut n = 0;
        for open in store::calls::open(&mut tx).await? {
            let end = now
                .max(open.start_time)
                .max(open.answer_time.unwrap_or(open.start_time));
            let (duration, billsec) = recorder::billing(open.start_time, open.answer_time, end);
            let f = FinishCall {
                call_id: &open.call_id,
                end_time: end,
                disposition: Disposition::Failed.as_str(),
                hangup_cause: cause,
                duration,
                billsec,
            };
            n += u64::from(store::calls::finish(&mut tx, &f, now).await?);
        }
        store::call_legs::close_open(&mut tx, cause, now).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Closes the rows a crash left open at the last moment the server was
    /// known to be alive (`last_alive_ms`, from the engine's persisted
    /// heartbeat), not at the restart: the downtime is not billed. The
    /// cause is `server_crash`; the disposition follows the usual rule
    /// (`ANSWERED` if a leg answered, else `FAILED`). A row is never closed
    /// before its start or answer, nor after now. Without a heartbeat the
    /// rows end now. Returns the calls closed.
    pub async fn close_after_crash(&self, last_alive_ms: Option<u64>) -> Result<u64, DomainError> {
        let cause = crate::call_events::HangupCause::ServerCrash;
        let mut tx = self.ctx.db.write().await?;
        let now = now_ms();
        let alive = last_alive_ms
            .map(|t| i64::try_from(t).unwrap_or(i64::MAX))
            .unwrap_or(now)
            .min(now);
        let mut n = 0;
        for open in store::calls::open(&mut tx).await? {
            let end = alive
                .max(open.start_time)
                .max(open.answer_time.unwrap_or(open.start_time));
            let (duration, billsec) = recorder::billing(open.start_time, open.answer_time, end);
            let f = FinishCall {
                call_id: &open.call_id,
                end_time: end,
                disposition: recorder::disposition(open.answer_time.is_some(), cause).as_str(),
                hangup_cause: cause.as_str(),
                duration,
                billsec,
            };
            n += u64::from(store::calls::finish(&mut tx, &f, now).await?);
        }
        store::call_legs::close_open(&mut tx, cause.as_str(), alive).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// The legs of a call, by leg number (none for an unknown call).
    pub async fn legs(&self, call_id: &str) -> Result<Vec<CallLeg>, DomainError> {
        let mut c = self.ctx.db.conn().await?;
        Ok(store::call_legs::for_call(&mut c, call_id)
            .await?
            .into_iter()
            .map(leg_from_row)
            .collect())
    }

    pub async fn get(&self, call_id: &str) -> Result<Option<Call>, DomainError> {
        let mut c = self.ctx.db.conn().await?;
        let call = store::calls::get(&mut c, call_id).await?.map(call_from_row);
        let calls = with_quality(&mut c, call.into_iter().collect()).await?;
        Ok(calls.into_iter().next())
    }

    /// Open calls, optionally only those of one agent.
    pub async fn active(&self, agent_id: Option<i64>) -> Result<Vec<Call>, DomainError> {
        let mut c = self.ctx.db.conn().await?;
        let calls = store::calls::active(&mut c, agent_id)
            .await?
            .into_iter()
            .map(call_from_row)
            .collect();
        with_quality(&mut c, calls).await
    }

    /// (open calls, open calls that were answered)
    pub async fn open_counts(&self) -> Result<(i64, i64), DomainError> {
        let mut c = self.ctx.db.conn().await?;
        Ok(store::calls::count_open(&mut c).await?)
    }

    pub async fn history(&self, q: &CallQuery) -> Result<(Vec<Call>, i64), DomainError> {
        let mut c = self.ctx.db.conn().await?;
        let (order, desc) = match q.order.as_deref().map(str::trim).filter(|o| !o.is_empty()) {
            None => ("c.start_time", true),
            Some(o) => {
                let (field, desc) = match o.strip_prefix('-') {
                    Some(f) => (f, true),
                    None => (o.strip_prefix('+').unwrap_or(o), false),
                };
                let col = store::calls::order_column(field).ok_or_else(|| {
                    DomainError::invalid("order", format!("cannot order by {field:?}"))
                })?;
                (col, desc)
            }
        };
        let (rows, total) = store::calls::history(
            &mut c,
            &q.filter(),
            order,
            desc,
            q.limit.clamp(1, 10_000),
            q.offset.max(0),
        )
        .await?;
        let calls = rows.into_iter().map(call_from_row).collect();
        Ok((with_quality(&mut c, calls).await?, total))
    }

    pub async fn stats(&self, q: &CallQuery) -> Result<CallStats, DomainError> {
        let mut c = self.ctx.db.conn().await?;
        let s = store::calls::stats(&mut c, &q.filter()).await?;
        let avg = |sum: i64, n: i64| if n > 0 { sum / n } else { 0 };
        let rate = if s.total_calls > 0 {
            s.answered as f64 * 100.0 / s.total_calls as f64
        } else {
            0.0
        };
        Ok(CallStats {
            total_calls: s.total_calls,
            answered: s.answered,
            no_answer: s.no_answer,
            busy: s.busy,
            failed: s.failed,
            cancelled: s.cancelled,
            total_duration: s.total_duration,
            total_billsec: s.total_billsec,
            avg_duration: avg(s.total_duration, s.total_calls),
            avg_billsec: avg(s.total_billsec, s.answered),
            answer_rate: format!("{rate:.2}"),
        })
    }
}
