//! AMI channel events → the domain's call events, so that an Asterisk call
//! leaves the same CDR (`calls` + `call_legs`) as a call of the builtin
//! engine. No IO, no clock: the caller stamps each event with the time it
//! arrived (AMI channel events carry no timestamp).
//!
//! The rules, from the event sequences of Asterisk 22
//! (`shared/asterisk/*.txt`):
//!
//! - **One call per `Linkedid`.** Its id is the Linkedid. Leg 0 is the
//!   channel whose `Uniqueid` equals the Linkedid (the caller, or for an
//!   AMI `Originate` the agent's channel that rings first); legs 1.. are
//!   the channels a `DialBegin` (`DestUniqueid`) adds. Other channels with
//!   the same Linkedid (the `;2` half of a Local channel) only count for
//!   when the call ends.
//! - **Started** is sent once the dialled number is known: the `Exten` of
//!   leg 0 when it is neither empty nor `s` (an originated channel gets its
//!   extension only after it answers), else at its first `DialBegin` or
//!   at the end of the call; it carries the time leg 0 appeared, so the
//!   ringing of an originate's agent counts in the call's duration. An
//!   originate the application announced
//!   ([`CallTranslator::expect_originate`]: the `ChannelId` it gave and the
//!   customer's number) starts at its channel's `Newchannel`, so the call
//!   is live (active list, events) while the agent's phone rings.
//! - **Ringing** from `DialState`/`Newstate` *Ringing* of a leg;
//!   **Answered** from `DialEnd` `DialStatus: ANSWER` of a leg ≥ 1 or from
//!   its `BridgeEnter`. A call that never dialled anybody but whose leg 0
//!   went *Up* (answered by an application: IVR, echo, voicemail) is
//!   answered at that moment, reported when it ends.
//! - **LegEnded** at each dialled leg's `Hangup`, with the cause its
//!   `DialEnd` gave (`CANCEL` → cancelled, `BUSY`, `NOANSWER`,
//!   `CHANUNAVAIL` → not registered for an agent, else failed), or
//!   `answered_elsewhere` when another leg won, or who hung up first
//!   (`HangupRequest`) for the answered leg.
//! - **Ended** when the last channel of the Linkedid hangs up. Asterisk
//!   CDRs have no CANCELLED disposition: an unanswered call with a
//!   `DialStatus: CANCEL` ends `cancelled`, then `BUSY`, `NOANSWER`,
//!   `CHANUNAVAIL`/`CONGESTION`, else the Q.850 `Cause` of leg 0.
//! - `Cdr` events are not needed for this; [`AsteriskCdr`] parses them for
//!   whoever wants Asterisk's own figures (the tests compare with them).

use std::collections::{HashMap, HashSet};

use domain::call_events::{CallEvent, CallEventKind, HangupCause, LegNo, Party};
use domain::calls::Direction;

use super::frame::Message;

/// What a PJSIP endpoint is to centralita.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// An agent's SIP account; `extension` is the number shown in the CDR.
    Agent { agent_id: i64, extension: String },
    /// A trunk (its endpoint name is the trunk's section name).
    Trunk { name: String },
    /// Anything else (a phone the site configured itself).
    Other,
}

/// The lookup the translator needs from the domain: who is behind a PJSIP
/// endpoint name, and which agent a dialled number reaches.
pub trait Directory {
    fn endpoint(&self, name: &str) -> Endpoint;
    /// The agent whose extension is `number`, if any.
    fn agent_by_extension(&self, _number: &str) -> Option<i64> {
        None
    }
}

impl<F: Fn(&str) -> Endpoint> Directory for F {
    fn endpoint(&self, name: &str) -> Endpoint {
        self(name)
    }
}

/// A [`Directory`] from lists the application keeps current: agents'
/// endpoint names (their SIP usernames) with agent id and extension, and
/// trunks' endpoint names (`config::trunks::section_name`). Shared
/// (`Arc`) with the AMI client and updated in place with
/// [`StaticDirectory::replace`] when agents or trunks change.
#[derive(Debug, Default)]
pub struct StaticDirectory {
    inner: std::sync::RwLock<DirectoryMaps>,
}

#[derive(Debug, Default)]
struct DirectoryMaps {
    endpoints: HashMap<String, Endpoint>,
    extensions: HashMap<String, i64>,
}

impl StaticDirectory {
    pub fn new(
        agents: impl IntoIterator<Item = (String, i64, String)>,
        trunks: impl IntoIterator<Item = String>,
    ) -> Self {
        let d = Self::default();
        d.replace(agents, trunks);
        d
    }

    /// Replaces both lists: `(endpoint, agent_id, extension)` per agent,
    /// the endpoint name per trunk.
    pub fn replace(
        &self,
        agents: impl IntoIterator<Item = (String, i64, String)>,
        trunks: impl IntoIterator<Item = String>,
    ) {
        let mut m = DirectoryMaps::default();
        for t in trunks {
            m.endpoints.insert(t.clone(), Endpoint::Trunk { name: t });
        }
        for (endpoint, agent_id, extension) in agents {
            m.extensions.insert(extension.clone(), agent_id);
            m.endpoints.insert(
                endpoint,
                Endpoint::Agent {
                    agent_id,
                    extension,
                },
            );
        }
        // A poisoned lock only means a writer panicked mid-replace; the
        // maps it held are whole values, so take it over.
        match self.inner.write() {
            Ok(mut g) => *g = m,
            Err(p) => *p.into_inner() = m,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, DirectoryMaps> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl Directory for StaticDirectory {
    fn endpoint(&self, name: &str) -> Endpoint {
        self.read()
            .endpoints
            .get(name)
            .cloned()
            .unwrap_or(Endpoint::Other)
    }

    fn agent_by_extension(&self, number: &str) -> Option<i64> {
        self.read().extensions.get(number).copied()
    }
}

/// Technology and resource of a channel name: `PJSIP/2000-00000005` →
/// (`PJSIP`, `2000`); `Local/600@from-internal-00000000;1` → (`Local`,
/// `600@from-internal`). The resource of a PJSIP channel is its endpoint.
pub fn parse_channel(name: &str) -> Option<(&str, &str)> {
    let (tech, rest) = name.split_once('/')?;
    let rest = rest.split(';').next().unwrap_or(rest);
    // The suffix after the last '-' is Asterisk's channel counter; endpoint
    // names may contain '-' themselves (`trunk-test-0000000a`).
    let resource = rest.rsplit_once('-').map_or(rest, |(r, _)| r);
    (!tech.is_empty() && !resource.is_empty()).then_some((tech, resource))
}

/// The domain cause of a Q.850 cause code (`Cause:` of `Hangup`).
pub fn cause_from_q850(code: u32) -> HangupCause {
    match code {
        17 => HangupCause::Busy,
        18 | 19 => HangupCause::NoAnswer,
        1 | 3 | 28 => HangupCause::NotFound,
        21 => HangupCause::Rejected,
        20 => HangupCause::NotRegistered,
        _ => HangupCause::Failed,
    }
}

/// The number a `DialString` dials: `2001` → `2001`, `+34911@carrier` →
/// `+34911`, `carrier/sip:+34911@host` → `+34911`.
pub fn dialled_number(dial_string: &str) -> &str {
    let s = dial_string
        .split_once("sip:")
        .map_or(dial_string, |(_, r)| r);
    s.split('@').next().unwrap_or(s)
}

/// Asterisk's own CDR record (`Event: Cdr`), one per channel pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsteriskCdr {
    pub unique_id: String,
    pub channel: String,
    pub destination_channel: String,
    pub source: String,
    pub destination: String,
    /// `ANSWERED`, `NO ANSWER`, `BUSY`, `FAILED` (never CANCELLED).
    pub disposition: String,
    pub duration: u64,
    pub billable_seconds: u64,
    pub last_application: String,
}

impl AsteriskCdr {
    pub fn from_message(m: &Message) -> Option<Self> {
        if !m.is("Event", "Cdr") {
            return None;
        }
        let s = |k: &str| m.get(k).unwrap_or("").to_string();
        let n = |k: &str| m.get(k).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        Some(Self {
            unique_id: s("UniqueID"),
            channel: s("Channel"),
            destination_channel: s("DestinationChannel"),
            source: s("Source"),
            destination: s("Destination"),
            disposition: s("Disposition"),
            duration: n("Duration"),
            billable_seconds: n("BillableSeconds"),
            last_application: s("LastApplication"),
        })
    }
}

#[derive(Debug)]
struct Chan {
    /// The channel's name (`PJSIP/2000-00000005`), for a hangup.
    name: String,
    endpoint: Endpoint,
    leg: Option<LegNo>,
    rang: bool,
    dial_status: Option<String>,
}

#[derive(Debug)]
struct Call {
    leg0: String,
    /// When leg 0 appeared: the call's start, even when `Started` waits
    /// for the dialled number.
    created_ms: u64,
    started: bool,
    originated: bool,
    /// Live channels of the Linkedid, by Uniqueid.
    chans: HashMap<String, Chan>,
    next_leg: LegNo,
    answered: Option<LegNo>,
    leg0_up_ms: Option<u64>,
    /// The leg whose side asked to hang up first (`HangupRequest`).
    first_hangup: Option<LegNo>,
    /// The application hung it up ([`CallTranslator::force_hangup`]).
    forced: bool,
    /// Dial statuses of legs that ended unanswered, and of an originate.
    statuses: Vec<(String, bool)>,
    leg0_cause: Option<u32>,
    /// Caller side, kept for `Started`.
    caller_endpoint: Endpoint,
    caller_num: String,
    caller_transport: String,
}

/// AMI events in, call events out. One per AMI session; see the module
/// docs for the rules.
#[derive(Debug, Default)]
pub struct CallTranslator {
    calls: HashMap<String, Call>,
    /// Uniqueid → Linkedid of every live channel we track.
    owner: HashMap<String, String>,
    /// Originates sent whose channel has not appeared yet, oldest first.
    expected: std::collections::VecDeque<Expected>,
}

/// An `Originate` the application sent.
#[derive(Debug, Clone)]
struct Expected {
    /// Its `ChannelId`: the Uniqueid (and Linkedid) its channel will have.
    channel_id: String,
    customer: String,
    /// Its `Channel` (`PJSIP/<agent endpoint>`).
    channel: String,
}

/// Announced originates kept at most (an originate Asterisk refused never
/// shows a channel; the oldest are forgotten first).
const MAX_EXPECTED_ORIGINATES: usize = 256;

fn transport_of(tech: &str, endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::Trunk { name } => format!("trunk:{name}"),
        _ => tech.to_ascii_lowercase(),
    }
}

fn real_exten(e: Option<&str>) -> Option<&str> {
    e.filter(|e| !e.is_empty() && *e != "s")
}

fn number(v: Option<&str>) -> Option<&str> {
    v.filter(|n| !n.is_empty() && *n != "<unknown>")
}

impl CallTranslator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Announces an `Originate` of `channel` (`PJSIP/<agent endpoint>`)
    /// sent with `ChannelId: channel_id` that will call `customer` once
    /// the agent answers: its call starts as soon as that channel appears,
    /// with the customer as the callee; and if Asterisk cannot create the
    /// channel at all (`OriginateResponse` `Failure` before any channel
    /// event), the call is recorded as failed.
    pub fn expect_originate(&mut self, channel_id: &str, customer: &str, channel: &str) {
        self.expected.retain(|e| e.channel_id != channel_id);
        if self.expected.len() >= MAX_EXPECTED_ORIGINATES {
            self.expected.pop_front();
        }
        self.expected.push_back(Expected {
            channel_id: channel_id.to_string(),
            customer: customer.to_string(),
            channel: channel.to_string(),
        });
    }

    /// Forgets an announced originate (Asterisk refused it).
    pub fn forget_originate(&mut self, channel_id: &str) {
        self.expected.retain(|e| e.channel_id != channel_id);
    }

    /// The application is hanging call `linkedid` up (an admin's or
    /// agent's hang-up): the legs that end from now on, and the call, end
    /// with cause `forced_hangup`, as with the builtin engine. False when
    /// no such call is in progress.
    pub fn force_hangup(&mut self, linkedid: &str) -> bool {
        match self.calls.get_mut(linkedid) {
            Some(c) => {
                c.forced = true;
                true
            }
            None => false,
        }
    }

    /// Calls in progress (started or not yet).
    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    /// Whether `linkedid` is a call in progress.
    pub fn is_active(&self, linkedid: &str) -> bool {
        self.calls.contains_key(linkedid)
    }

    /// The names of the live channels of a call (for a hangup by call),
    /// leg 0 first.
    pub fn channels_of(&self, linkedid: &str) -> Vec<String> {
        let Some(call) = self.calls.get(linkedid) else {
            return Vec::new();
        };
        let mut v: Vec<(Option<LegNo>, &str)> = call
            .chans
            .values()
            .map(|c| (c.leg.or(Some(LegNo::MAX)), c.name.as_str()))
            .collect();
        v.sort();
        v.into_iter().map(|(_, n)| n.to_string()).collect()
    }

    /// Feeds one AMI event that arrived at `at_ms`; call events go to `out`.
    pub fn handle(
        &mut self,
        dir: &dyn Directory,
        m: &Message,
        at_ms: u64,
        out: &mut Vec<CallEvent>,
    ) {
        let Some(ev) = m.event() else { return };
        match ev {
            "Newchannel" => self.newchannel(dir, m, at_ms, out),
            "Newstate" => self.newstate(dir, m, at_ms, out),
            "Newexten" | "NewCallerid" | "NewConnectedLine" | "VarSet" => {
                self.maybe_start_from(dir, m, at_ms, out)
            }
            "DialBegin" => self.dial_begin(dir, m, at_ms, out),
            "DialState" => self.dial_state(m, at_ms, out),
            "DialEnd" => self.dial_end(dir, m, at_ms, out),
            "BridgeEnter" => self.bridge_enter(m, at_ms, out),
            "HangupRequest" => self.hangup_request(m),
            "Hangup" => self.hangup(dir, m, at_ms, out),
            "OriginateResponse" => self.originate_failed(dir, m, at_ms, out),
            _ => {}
        }
    }

    /// The Uniqueids of every channel tracked now. Take this when asking
    /// for `CoreShowChannels`, and give it to [`Self::reconcile`].
    pub fn tracked_channels(&self) -> HashSet<String> {
        self.owner.keys().cloned().collect()
    }

    /// After a reconnection (or periodically): `live` are the Uniqueids
    /// Asterisk listed in `CoreShowChannels`, `asked` what we tracked when
    /// we asked ([`Self::tracked_channels`]). Channels of `asked` that are
    /// not live hung up while we were not listening; their calls end now.
    /// Channels that appeared after the question are left alone: their
    /// `Newchannel` may arrive interleaved with the listing.
    pub fn reconcile(
        &mut self,
        dir: &dyn Directory,
        asked: &HashSet<String>,
        live: &HashSet<String>,
        at_ms: u64,
        out: &mut Vec<CallEvent>,
    ) {
        let mut gone: Vec<(String, String)> = self
            .owner
            .iter()
            .filter(|(u, _)| asked.contains(*u) && !live.contains(*u))
            .map(|(u, l)| (u.clone(), l.clone()))
            .collect();
        gone.sort();
        for (uid, linkedid) in gone {
            self.channel_gone(dir, &linkedid, &uid, None, at_ms, out);
        }
    }

    fn newchannel(
        &mut self,
        dir: &dyn Directory,
        m: &Message,
        at_ms: u64,
        out: &mut Vec<CallEvent>,
    ) {
        let (Some(uid), Some(linkedid), Some(chan)) =
            (m.get("Uniqueid"), m.get("Linkedid"), m.get("Channel"))
        else {
            return;
        };
        let Some((tech, resource)) = parse_channel(chan) else {
            return;
        };
        let endpoint = if tech.eq_ignore_ascii_case("PJSIP") {
            dir.endpoint(resource)
        } else {
            Endpoint::Other
        };
        if uid == linkedid && !self.calls.contains_key(linkedid) {
            let caller_num = match &endpoint {
                Endpoint::Agent { extension, .. } => extension.clone(),
                _ => number(m.get("CallerIDNum")).unwrap_or(resource).to_string(),
            };
            let caller_transport = transport_of(tech, &endpoint);
            let mut chans = HashMap::new();
            chans.insert(
                uid.to_string(),
                Chan {
                    name: chan.to_string(),
                    endpoint: endpoint.clone(),
                    leg: Some(0),
                    rang: false,
                    dial_status: None,
                },
            );
            self.calls.insert(
                linkedid.to_string(),
                Call {
                    leg0: uid.to_string(),
                    created_ms: at_ms,
                    started: false,
                    originated: false,
                    chans,
                    next_leg: 1,
                    answered: None,
                    leg0_up_ms: None,
                    first_hangup: None,
                    forced: false,
                    statuses: Vec::new(),
                    leg0_cause: None,
                    caller_endpoint: endpoint,
                    caller_num,
                    caller_transport,
                },
            );
            self.owner.insert(uid.to_string(), linkedid.to_string());
            let announced = self.expected.iter().position(|e| e.channel_id == uid);
            match announced.and_then(|i| self.expected.remove(i)) {
                Some(e) => {
                    if let Some(call) = self.calls.get_mut(linkedid) {
                        call.originated = true;
                    }
                    self.start(dir, linkedid, &e.customer, at_ms, out);
                }
                None => self.maybe_start_from(dir, m, at_ms, out),
            }
            return;
        }
        if let Some(call) = self.calls.get_mut(linkedid) {
            call.chans.entry(uid.to_string()).or_insert(Chan {
                name: chan.to_string(),
                endpoint,
                leg: None,
                rang: false,
                dial_status: None,
            });
            self.owner.insert(uid.to_string(), linkedid.to_string());
        }
    }

    /// `OriginateResponse` with `Response: Failure` for an announced
    /// originate whose channel never appeared (the agent's endpoint has no
    /// contact, say: `Uniqueid: <null>`): the call starts and ends here,
    /// the cause from `Reason` (Asterisk's control frame: 5 busy, 3 or 1
    /// no answer, 8 congestion, anything else: the agent's channel was
    /// unavailable).
    fn originate_failed(
        &mut self,
        dir: &dyn Directory,
        m: &Message,
        at_ms: u64,
        out: &mut Vec<CallEvent>,
    ) {
        if !m.is("Response", "Failure") {
            return;
        }
        let uid = m.get("Uniqueid");
        let (chan, exten) = (m.get("Channel"), m.get("Exten"));
        let Some(i) = self.expected.iter().position(|e| {
            Some(e.channel_id.as_str()) == uid
                || (Some(e.channel.as_str()) == chan && Some(e.customer.as_str()) == exten)
        }) else {
            return;
        };
        let Some(e) = self.expected.remove(i) else {
            return;
        };
        if self.calls.contains_key(&e.channel_id) {
            // Its channel is tracked: its own events end it.
            return;
        }
        let (tech, resource) = parse_channel(&e.channel).unwrap_or(("PJSIP", ""));
        let endpoint = if tech.eq_ignore_ascii_case("PJSIP") {
            dir.endpoint(resource)
        } else {
            Endpoint::Other
        };
        let agent = matches!(endpoint, Endpoint::Agent { .. });
        let cause = match m.get("Reason").and_then(|r| r.trim().parse::<u32>().ok()) {
            Some(5) => HangupCause::Busy,
            Some(1 | 3) => HangupCause::NoAnswer,
            Some(8) => HangupCause::Failed,
            _ if agent => HangupCause::NotRegistered,
            _ => HangupCause::Failed,
        };
        let caller_num = match &endpoint {
            Endpoint::Agent { extension, .. } => extension.clone(),
            _ => resource.to_string(),
        };
        self.calls.insert(
            e.channel_id.clone(),
            Call {
                leg0: e.channel_id.clone(),
                created_ms: at_ms,
                started: false,
                originated: true,
                chans: HashMap::new(),
                next_leg: 1,
                answered: None,
                leg0_up_ms: None,
                first_hangup: None,
                forced: false,
                statuses: Vec::new(),
                leg0_cause: None,
                caller_transport: transport_of(tech, &endpoint),
                caller_endpoint: endpoint,
                caller_num,
            },
        );
        self.start(dir, &e.channel_id, &e.customer, at_ms, out);
        self.calls.remove(&e.channel_id);
        out.push(ev(&e.channel_id, at_ms, CallEventKind::Ended { cause }));
    }

    /// Starts the call of `m`'s channel if it is leg 0 and its extension
    /// is now known.
    fn maybe_start_from(
        &mut self,
        dir: &dyn Directory,
        m: &Message,
        at_ms: u64,
        out: &mut Vec<CallEvent>,
    ) {
        let (Some(uid), Some(linkedid)) = (m.get("Uniqueid"), m.get("Linkedid")) else {
            return;
        };
        if uid != linkedid {
            return;
        }
        if let Some(exten) = real_exten(m.get("Exten")) {
            self.start(dir, linkedid, exten, at_ms, out);
        }
    }

    fn start(
        &mut self,
        dir: &dyn Directory,
        linkedid: &str,
        callee: &str,
        at_ms: u64,
        out: &mut Vec<CallEvent>,
    ) {
        let Some(call) = self.calls.get_mut(linkedid) else {
            return;
        };
        if call.started {
            return;
        }
        call.started = true;
        let callee_agent = dir.agent_by_extension(callee);
        let direction = match (&call.caller_endpoint, callee_agent) {
            (Endpoint::Trunk { .. }, _) => Direction::Inbound,
            (_, Some(_)) => Direction::Internal,
            (Endpoint::Agent { .. }, None) => Direction::Outbound,
            (Endpoint::Other, None) => Direction::Internal,
        };
        let caller_agent = match &call.caller_endpoint {
            Endpoint::Agent { agent_id, .. } => Some(*agent_id),
            _ => None,
        };
        out.push(CallEvent {
            call_id: linkedid.to_string(),
            at_ms: call.created_ms.min(at_ms),
            kind: CallEventKind::Started {
                direction,
                caller: Party {
                    number: call.caller_num.clone(),
                    agent_id: caller_agent,
                },
                callee: Party {
                    number: callee.to_string(),
                    agent_id: callee_agent,
                },
                transport: call.caller_transport.clone(),
            },
        });
    }

    fn call_of(&mut self, uid: &str) -> Option<(String, &mut Call)> {
        let linkedid = self.owner.get(uid)?.clone();
        let call = self.calls.get_mut(&linkedid)?;
        Some((linkedid, call))
    }

    fn newstate(&mut self, dir: &dyn Directory, m: &Message, at_ms: u64, out: &mut Vec<CallEvent>) {
        self.maybe_start_from(dir, m, at_ms, out);
        let Some(uid) = m.get("Uniqueid") else { return };
        let state = m.get("ChannelStateDesc").unwrap_or("");
        let Some((linkedid, call)) = self.call_of(uid) else {
            return;
        };
        let started = call.started;
        let Some(chan) = call.chans.get_mut(uid) else {
            return;
        };
        match (state, chan.leg) {
            ("Up", Some(0)) => {
                call.leg0_up_ms.get_or_insert(at_ms);
            }
            ("Ringing", Some(leg)) if !chan.rang && started => {
                chan.rang = true;
                out.push(ev(&linkedid, at_ms, CallEventKind::Ringing { leg }));
            }
            _ => {}
        }
    }

    fn dial_begin(
        &mut self,
        dir: &dyn Directory,
        m: &Message,
        at_ms: u64,
        out: &mut Vec<CallEvent>,
    ) {
        let (Some(dest_uid), Some(dest_chan)) = (m.get("DestUniqueid"), m.get("DestChannel"))
        else {
            return;
        };
        let linkedid = match m.get("DestLinkedid").or(m.get("Linkedid")) {
            Some(l) => l.to_string(),
            None => return,
        };
        let Some(call) = self.calls.get_mut(&linkedid) else {
            return;
        };
        if dest_uid == call.leg0 {
            // An Originate ringing its first channel (no caller channel).
            call.originated = true;
            return;
        }
        // The dialling channel's extension, when the call waits for one.
        let callee = real_exten(m.get("Exten"))
            .filter(|_| m.get("Uniqueid") == Some(call.leg0.as_str()))
            .map(str::to_string)
            .unwrap_or_else(|| dialled_number(m.get("DialString").unwrap_or("")).to_string());
        if !call.started {
            self.start(dir, &linkedid, &callee, at_ms, out);
        }
        let Some(call) = self.calls.get_mut(&linkedid) else {
            return;
        };
        let (tech, resource) = parse_channel(dest_chan).unwrap_or(("", ""));
        let chan = call
            .chans
            .entry(dest_uid.to_string())
            .or_insert_with(|| Chan {
                name: dest_chan.to_string(),
                endpoint: if tech.eq_ignore_ascii_case("PJSIP") {
                    dir.endpoint(resource)
                } else {
                    Endpoint::Other
                },
                leg: None,
                rang: false,
                dial_status: None,
            });
        if chan.leg.is_some() {
            return;
        }
        let leg = call.next_leg;
        call.next_leg += 1;
        chan.leg = Some(leg);
        let dial_num = dialled_number(m.get("DialString").unwrap_or(""));
        let party = match &chan.endpoint {
            Endpoint::Agent {
                agent_id,
                extension,
            } => Party {
                number: extension.clone(),
                agent_id: Some(*agent_id),
            },
            _ if !dial_num.is_empty() && dial_num != resource => Party {
                number: dial_num.to_string(),
                agent_id: None,
            },
            _ => Party {
                number: number(m.get("DestCallerIDNum"))
                    .unwrap_or(if dial_num.is_empty() {
                        resource
                    } else {
                        dial_num
                    })
                    .to_string(),
                agent_id: None,
            },
        };
        let transport = transport_of(tech, &chan.endpoint);
        self.owner.insert(dest_uid.to_string(), linkedid.clone());
        out.push(ev(
            &linkedid,
            at_ms,
            CallEventKind::LegAdded {
                leg,
                party,
                transport,
            },
        ));
    }

    fn dial_state(&mut self, m: &Message, at_ms: u64, out: &mut Vec<CallEvent>) {
        let Some(dest_uid) = m.get("DestUniqueid") else {
            return;
        };
        if !m.is("DialStatus", "RINGING") {
            return;
        }
        let Some((linkedid, call)) = self.call_of(dest_uid) else {
            return;
        };
        let started = call.started;
        if let Some(chan) = call.chans.get_mut(dest_uid) {
            if let (Some(leg), false, true) = (chan.leg, chan.rang, started) {
                chan.rang = true;
                out.push(ev(&linkedid, at_ms, CallEventKind::Ringing { leg }));
            }
        }
    }

    fn dial_end(
        &mut self,
        _dir: &dyn Directory,
        m: &Message,
        at_ms: u64,
        out: &mut Vec<CallEvent>,
    ) {
        let (Some(dest_uid), Some(status)) = (m.get("DestUniqueid"), m.get("DialStatus")) else {
            return;
        };
        let Some((linkedid, call)) = self.call_of(dest_uid) else {
            return;
        };
        let status = status.to_ascii_uppercase();
        if dest_uid == call.leg0 {
            if status == "ANSWER" {
                call.leg0_up_ms.get_or_insert(at_ms);
            } else {
                let agent = matches!(call.caller_endpoint, Endpoint::Agent { .. });
                call.statuses.push((status, agent));
            }
            return;
        }
        let answered = call.answered.is_some();
        let Some(chan) = call.chans.get_mut(dest_uid) else {
            return;
        };
        let Some(leg) = chan.leg else { return };
        chan.dial_status = Some(status.clone());
        if status == "ANSWER" && !answered && call.started {
            call.answered = Some(leg);
            out.push(ev(&linkedid, at_ms, CallEventKind::Answered { leg }));
        }
    }

    fn bridge_enter(&mut self, m: &Message, at_ms: u64, out: &mut Vec<CallEvent>) {
        let Some(uid) = m.get("Uniqueid") else { return };
        let Some((linkedid, call)) = self.call_of(uid) else {
            return;
        };
        if call.answered.is_some() || !call.started {
            return;
        }
        if let Some(Chan { leg: Some(leg), .. }) = call.chans.get(uid) {
            if *leg != 0 {
                let leg = *leg;
                call.answered = Some(leg);
                out.push(ev(&linkedid, at_ms, CallEventKind::Answered { leg }));
            }
        }
    }

    fn hangup_request(&mut self, m: &Message) {
        let Some(uid) = m.get("Uniqueid") else { return };
        let Some((_, call)) = self.call_of(uid) else {
            return;
        };
        if call.first_hangup.is_none() {
            if let Some(leg) = call.chans.get(uid).and_then(|c| c.leg) {
                call.first_hangup = Some(leg);
            }
        }
    }

    fn hangup(&mut self, dir: &dyn Directory, m: &Message, at_ms: u64, out: &mut Vec<CallEvent>) {
        let Some(uid) = m.get("Uniqueid") else { return };
        let Some(linkedid) = self.owner.get(uid).cloned() else {
            return;
        };
        let cause = m.get("Cause").and_then(|c| c.trim().parse::<u32>().ok());
        self.channel_gone(dir, &linkedid, uid, cause, at_ms, out);
    }

    fn channel_gone(
        &mut self,
        dir: &dyn Directory,
        linkedid: &str,
        uid: &str,
        cause: Option<u32>,
        at_ms: u64,
        out: &mut Vec<CallEvent>,
    ) {
        self.owner.remove(uid);
        let Some(call) = self.calls.get_mut(linkedid) else {
            return;
        };
        let Some(chan) = call.chans.remove(uid) else {
            return;
        };
        if call.first_hangup.is_none() {
            call.first_hangup = chan.leg;
        }
        match chan.leg {
            Some(0) => call.leg0_cause = cause,
            Some(leg) => {
                let c = match (call.answered, &chan.dial_status) {
                    (Some(a), _) if a == leg => {
                        if call.first_hangup == Some(leg) {
                            HangupCause::CalleeBye
                        } else {
                            HangupCause::CallerBye
                        }
                    }
                    (Some(_), _) => HangupCause::AnsweredElsewhere,
                    (None, Some(s)) => {
                        let agent = matches!(chan.endpoint, Endpoint::Agent { .. });
                        call.statuses.push((s.clone(), agent));
                        status_cause(s, agent)
                    }
                    (None, None) => cause.map_or(HangupCause::Failed, cause_from_q850),
                };
                let c = if call.forced {
                    HangupCause::ForcedHangup
                } else {
                    c
                };
                if call.started {
                    out.push(ev(
                        linkedid,
                        at_ms,
                        CallEventKind::LegEnded {
                            leg,
                            cause: c,
                            sip_code: None,
                        },
                    ));
                }
            }
            None => {}
        }
        if !call.chans.is_empty() {
            return;
        }
        // The last channel is gone: the call is over.
        if !call.started {
            self.start(dir, linkedid, "", at_ms, out);
        }
        let Some(call) = self.calls.remove(linkedid) else {
            return;
        };
        let mut answered = call.answered.is_some();
        if !answered && call.next_leg == 1 {
            if let Some(up) = call.leg0_up_ms {
                // Answered by an application on leg 0 (IVR, echo).
                out.push(ev(linkedid, up, CallEventKind::Answered { leg: 0 }));
                answered = true;
            }
        }
        let cause = if call.forced {
            HangupCause::ForcedHangup
        } else if answered {
            if call.first_hangup.unwrap_or(0) == 0 {
                HangupCause::CallerBye
            } else {
                HangupCause::CalleeBye
            }
        } else {
            unanswered_cause(&call)
        };
        out.push(ev(linkedid, at_ms, CallEventKind::Ended { cause }));
    }
}

fn status_cause(status: &str, agent: bool) -> HangupCause {
    match status {
        "CANCEL" => HangupCause::Cancelled,
        "BUSY" => HangupCause::Busy,
        "NOANSWER" => HangupCause::NoAnswer,
        "CHANUNAVAIL" if agent => HangupCause::NotRegistered,
        _ => HangupCause::Failed,
    }
}

fn unanswered_cause(call: &Call) -> HangupCause {
    let has = |s: &str| call.statuses.iter().any(|(x, _)| x == s);
    if has("CANCEL") {
        return HangupCause::Cancelled;
    }
    for s in ["BUSY", "NOANSWER", "CHANUNAVAIL", "CONGESTION"] {
        if let Some((_, agent)) = call.statuses.iter().find(|(x, _)| x == s) {
            return status_cause(s, *agent);
        }
    }
    match call.leg0_cause {
        // The caller hung up before anybody answered: a cancel.
        Some(0 | 16) | None if call.first_hangup.unwrap_or(0) == 0 => HangupCause::Cancelled,
        Some(c) => cause_from_q850(c),
        None => HangupCause::Failed,
    }
}

fn ev(call_id: &str, at_ms: u64, kind: CallEventKind) -> CallEvent {
    CallEvent {
        call_id: call_id.to_string(),
        at_ms,
        kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_directory() {
        let d = StaticDirectory::new(
            [("john_doe".to_string(), 7, "1000".to_string())],
            ["Carrier_One".to_string()],
        );
        assert_eq!(
            d.endpoint("john_doe"),
            Endpoint::Agent {
                agent_id: 7,
                extension: "1000".into()
            }
        );
        assert_eq!(d.agent_by_extension("1000"), Some(7));
        assert_eq!(
            d.endpoint("Carrier_One"),
            Endpoint::Trunk {
                name: "Carrier_One".into()
            }
        );
        assert_eq!(d.endpoint("1000"), Endpoint::Other);
        d.replace([], []);
        assert_eq!(d.endpoint("john_doe"), Endpoint::Other);
        assert_eq!(d.agent_by_extension("1000"), None);
    }

    #[test]
    fn channel_names() {
        assert_eq!(
            parse_channel("PJSIP/2000-00000005"),
            Some(("PJSIP", "2000"))
        );
        assert_eq!(
            parse_channel("PJSIP/trunk-test-0000000a"),
            Some(("PJSIP", "trunk-test"))
        );
        assert_eq!(
            parse_channel("Local/600@from-internal-00000000;1"),
            Some(("Local", "600@from-internal"))
        );
        assert_eq!(parse_channel("garbage"), None);
        assert_eq!(dialled_number("2001"), "2001");
        assert_eq!(dialled_number("+34911@carrier"), "+34911");
        assert_eq!(dialled_number("carrier/sip:+34911@host"), "+34911");
    }

    fn m(pairs: &[(&str, &str)]) -> Message {
        Message::from_pairs(pairs.iter().copied())
    }

    fn dir(name: &str) -> Endpoint {
        match name {
            "1001" => Endpoint::Agent {
                agent_id: 7,
                extension: "1001".into(),
            },
            "carrier" => Endpoint::Trunk {
                name: "carrier".into(),
            },
            _ => Endpoint::Other,
        }
    }

    /// Events lost while disconnected: the listing after reconnecting ends
    /// the call whose channels vanished, and only those we asked about.
    #[test]
    fn reconcile_ends_vanished_calls_only() {
        let mut t = CallTranslator::new();
        let mut out = Vec::new();
        let d: &dyn Directory = &dir;
        let newchan = |chan: &str, uid: &str, exten: &str| {
            m(&[
                ("Event", "Newchannel"),
                ("Channel", chan),
                ("Uniqueid", uid),
                ("Linkedid", uid),
                ("Exten", exten),
                ("CallerIDNum", "1001"),
            ])
        };
        t.handle(
            d,
            &newchan("PJSIP/1001-00000001", "1.1", "600"),
            1_000,
            &mut out,
        );
        let asked = t.tracked_channels();
        // Appears while the listing is on its way.
        t.handle(
            d,
            &newchan("PJSIP/1001-00000002", "2.2", "601"),
            2_000,
            &mut out,
        );
        out.clear();
        t.reconcile(d, &asked, &HashSet::new(), 3_000, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].call_id, "1.1");
        assert!(matches!(out[0].kind, CallEventKind::Ended { .. }));
        assert!(t.is_active("2.2"));
        assert_eq!(t.channels_of("2.2"), ["PJSIP/1001-00000002"]);
        assert_eq!(t.active_calls(), 1);
    }

    /// The agent does not answer an originate: NO ANSWER, never started
    /// with a made-up callee.
    #[test]
    fn originate_not_answered_by_the_agent() {
        let mut t = CallTranslator::new();
        let mut out = Vec::new();
        let d: &dyn Directory = &dir;
        let chan = [
            ("Channel", "PJSIP/1001-00000001"),
            ("Uniqueid", "1.1"),
            ("Linkedid", "1.1"),
        ];
        let with = |ev: &str, extra: &[(&str, &str)]| {
            let mut v = vec![("Event", ev)];
            v.extend_from_slice(&chan);
            v.extend_from_slice(extra);
            m(&v)
        };
        t.handle(d, &with("Newchannel", &[("Exten", "s")]), 1000, &mut out);
        t.handle(
            d,
            &m(&[
                ("Event", "DialBegin"),
                ("DestChannel", "PJSIP/1001-00000001"),
                ("DestUniqueid", "1.1"),
                ("DestLinkedid", "1.1"),
                ("DialString", "1001"),
            ]),
            1000,
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        t.handle(
            d,
            &m(&[
                ("Event", "DialEnd"),
                ("DestUniqueid", "1.1"),
                ("DestLinkedid", "1.1"),
                ("DialStatus", "NOANSWER"),
            ]),
            31_000,
            &mut out,
        );
        t.handle(
            d,
            &with("Hangup", &[("Exten", "s"), ("Cause", "19")]),
            31_000,
            &mut out,
        );
        let kinds: Vec<_> = out.iter().map(|e| e.kind.clone()).collect();
        assert!(
            matches!(&kinds[0], CallEventKind::Started { direction: Direction::Outbound, caller, .. } if caller.agent_id == Some(7)),
            "{kinds:?}"
        );
        assert_eq!(
            kinds[1],
            CallEventKind::Ended {
                cause: HangupCause::NoAnswer
            }
        );
        assert_eq!(t.active_calls(), 0);
    }
}
