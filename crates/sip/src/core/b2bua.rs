//! Back-to-back user agent for calls between agents.
//!
//! Each call has an A leg (we are the UAS toward the caller) and one fork per
//! contact of the callee (we are the UAC). The first 2xx wins; the other forks
//! are cancelled. ACK for a 2xx is end to end (we ACK the callee when the
//! caller ACKs us); ACK for a non-2xx is hop by hop. In-dialog requests are
//! relayed to the other leg with that leg's dialog state.
//!
//! SDP is relayed unchanged. `Call::media` is where a media leg per side
//! will hang once media is anchored.

use super::msg::{self, Msg, Start};
use super::txn::Owner;
use super::{
    response, Account, CdrOp, Core, Disposition, Lookup, Output, Source, Transport, ALLOW,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// How long an ended call keeps its dialogs to answer late retransmissions
/// (UDP retransmits come at 0.5, 1.5, 3.5 and 7.5 s).
const LINGER_MS: u64 = 8_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B(usize),
}

#[derive(Debug, Clone)]
pub struct Leg {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    pub local_uri: String,
    pub remote_uri: String,
    pub local_cseq: u32,
    pub remote_target: String,
    pub src: Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ForkState {
    Calling,
    Proceeding,
    Answered,
    Done,
}

#[derive(Debug)]
struct Fork {
    leg: Leg,
    branch: String,
    invite: Msg,
    state: ForkState,
    code: u16,
    ack: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ringing,
    Answered,
    Ending,
}

/// A relayed in-dialog request waiting for its response.
#[derive(Debug)]
struct Relay {
    from: Side,
    req: Msg,
    src: Source,
    fwd_cseq: u32,
}

/// Placeholder for the anchored media of one side (a later issue).
#[derive(Debug, Default)]
pub struct MediaLeg {
    pub last_sdp: Vec<u8>,
}

#[derive(Debug)]
pub struct Call {
    phase: Phase,
    a: Leg,
    a_invite: Msg,
    /// Never shrinks once the call exists, so the indices kept in `winner`
    /// and in `Side::B(i)` always index into it.
    forks: Vec<Fork>,
    winner: Option<usize>,
    caller_number: String,
    callee_number: String,
    relays: HashMap<String, Relay>,
    /// (caller side, cseq on the caller's leg) -> (fwd side, fwd cseq) for ACKs of re-INVITE 2xx.
    reinvite_acks: Vec<(Side, u32, Side, u32)>,
    branches: Vec<String>,
    ringing_sent: bool,
    pub media: [MediaLeg; 2],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Ring,
    Cleanup,
}

#[derive(Default)]
pub struct Calls {
    calls: HashMap<u64, Call>,
    by_callid: HashMap<String, (u64, Side)>,
    by_branch: HashMap<String, u64>,
    timers: BTreeMap<(u64, u64, TimerKind), ()>,
    next_id: u64,
}

impl Calls {
    pub fn len(&self) -> usize {
        self.calls
            .values()
            .filter(|c| c.phase != Phase::Ending)
            .count()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.keys().next().map(|(t, _, _)| *t)
    }
}

fn strip_tag(v: &str) -> String {
    let mut out = String::new();
    let (head, tail) = match v.rfind('>') {
        Some(i) => v.split_at(i + 1),
        None => match v.find(';') {
            Some(i) => v.split_at(i),
            None => (v, ""),
        },
    };
    out.push_str(head);
    for p in tail.split(';').filter(|p| !p.trim().is_empty()) {
        if !p.trim().to_ascii_lowercase().starts_with("tag=") {
            out.push(';');
            out.push_str(p.trim());
        }
    }
    out
}

fn disposition_for(code: u16) -> (Disposition, &'static str) {
    match code {
        486 | 600 | 603 => (Disposition::Busy, "busy"),
        408 | 480 => (Disposition::NoAnswer, "no_answer"),
        _ => (Disposition::Failed, "failed"),
    }
}

impl Core {
    /// host:port we are reachable at over `t`.
    fn host_for(&self, t: Transport) -> &str {
        match (t, &self.config().tls_host) {
            (Transport::Tls, Some(h)) => h,
            _ => &self.config().local_host,
        }
    }

    fn our_contact(&self, t: Transport) -> String {
        match t {
            Transport::Udp => format!("<sip:centralita@{}>", self.host_for(t)),
            _ => format!(
                "<sip:centralita@{};transport={}>",
                self.host_for(t),
                t.as_str()
            ),
        }
    }

    fn via(&mut self, t: Transport) -> (String, String) {
        let branch = format!("z9hG4bK{}", self.new_token());
        (
            format!(
                "SIP/2.0/{} {};branch={branch};rport",
                t.via(),
                self.host_for(t)
            ),
            branch,
        )
    }

    /// Builds a request on `leg` (in-dialog, or the initial INVITE when
    /// `remote_tag` is empty).
    fn leg_request(
        &mut self,
        leg: &Leg,
        method: &str,
        cseq: u32,
        branch_via: (String, String),
    ) -> Msg {
        let to = if leg.remote_tag.is_empty() {
            leg.remote_uri.clone()
        } else {
            format!("{};tag={}", leg.remote_uri, leg.remote_tag)
        };
        let mut headers = vec![
            ("Via".to_string(), branch_via.0),
            ("Max-Forwards".to_string(), "70".to_string()),
            (
                "From".to_string(),
                format!("{};tag={}", leg.local_uri, leg.local_tag),
            ),
            ("To".to_string(), to),
            ("Call-ID".to_string(), leg.call_id.clone()),
            ("CSeq".to_string(), format!("{cseq} {method}")),
        ];
        if method != "ACK" && method != "CANCEL" {
            headers.push(("Contact".to_string(), self.our_contact(leg.src.transport)));
        }
        Msg {
            start: Start::Request {
                method: method.to_string(),
                uri: leg.remote_target.clone(),
            },
            headers,
            body: Vec::new(),
        }
    }

    fn copy_body(from: &Msg, to: &mut Msg) {
        if !from.body.is_empty() {
            if let Some(ct) = from.header("Content-Type") {
                to.headers.push(("Content-Type".into(), ct.to_string()));
            }
            to.body = from.body.clone();
        }
    }

    /// Entry for every request that is not REGISTER or out-of-dialog OPTIONS.
    pub(crate) fn handle_call_request(&mut self, now_ms: u64, src: Source, m: Msg) {
        let method = m.method().unwrap_or("").to_string();
        let in_dialog = msg::tag(m.header("To").unwrap_or("")).is_some();
        let known = self.calls.by_callid.get(m.call_id()).copied();
        match (method.as_str(), known) {
            ("ACK", Some((id, side))) => self.on_ack(now_ms, id, side, &m),
            ("ACK", None) => {
                self.txn.ack(&m);
            }
            ("CANCEL", Some((id, Side::A))) => self.on_cancel(now_ms, id, src, &m),
            ("CANCEL", _) => {
                let r = response(&m, 481, "Call/Transaction Does Not Exist", None);
                self.reply(now_ms, src, &m, r);
            }
            ("INVITE", None) if !in_dialog => self.new_call(now_ms, src, m),
            ("INVITE", Some((_, Side::A))) if !in_dialog => {
                // Same Call-ID, new branch: a retransmission we absorbed already, or a
                // loop; answer 482 as RFC 3261 8.2.2.2 suggests.
                let r = response(&m, 482, "Loop Detected", None);
                self.reply(now_ms, src, &m, r);
            }
            (_, Some((id, side))) if in_dialog => self.in_dialog(now_ms, id, side, src, m),
            (_, _) if in_dialog || method == "BYE" => {
                let r = response(&m, 481, "Call/Transaction Does Not Exist", None);
                self.reply(now_ms, src, &m, r);
            }
            (
                "MESSAGE" | "SUBSCRIBE" | "NOTIFY" | "PUBLISH" | "REFER" | "INFO" | "UPDATE"
                | "PRACK",
                _,
            ) => {
                let mut r = response(&m, 405, "Method Not Allowed", None);
                r.headers.push(("Allow".into(), ALLOW.into()));
                self.reply(now_ms, src, &m, r);
            }
            _ => {
                let r = response(&m, 501, "Not Implemented", None);
                self.reply(now_ms, src, &m, r);
            }
        }
    }

    fn new_call(&mut self, now_ms: u64, src: Source, m: Msg) {
        let target = msg::uri_user(m.ruri()).unwrap_or("").to_string();
        let has_creds = m.header("Proxy-Authorization").is_some();
        // Resolve every account before verifying the digest, so that a parked
        // request is verified exactly once (a second check would see a replayed nc).
        let mut callee: Option<Arc<Account>> = None;
        if has_creds {
            if let Some(c) = m
                .headers
                .iter()
                .filter(|(n, _)| n == "Proxy-Authorization")
                .filter_map(|(_, v)| super::digest::parse_authorization(v))
                .next()
            {
                if self
                    .find_account(Lookup::Username(c.username), now_ms, src, &m)
                    .is_none()
                {
                    return;
                }
            }
            if !target.is_empty() {
                match self.find_account(Lookup::Extension(target.clone()), now_ms, src, &m) {
                    None => return,
                    Some(Some(a)) => callee = Some(a),
                    Some(None) => {
                        match self.find_account(Lookup::Username(target.clone()), now_ms, src, &m) {
                            None => return,
                            Some(a) => callee = a,
                        }
                    }
                }
            }
        }
        let caller = match self.authenticate(now_ms, src, &m) {
            super::Auth::Ok(a) => a,
            super::Auth::Done => return,
        };
        let a_tag = self.new_token();
        let callee_number = callee
            .as_ref()
            .map(|c| c.extension.clone())
            .unwrap_or(target);
        self.emit(Output::Cdr(CdrOp::Start {
            call_id: m.call_id().to_string(),
            caller_number: caller.extension.clone(),
            callee_number: callee_number.clone(),
            caller_user_id: caller.user_id,
            callee_user_id: callee.as_ref().and_then(|c| c.user_id),
            at_ms: now_ms,
        }));
        let fail = |core: &mut Core, code: u16, reason: &str, cause: &str| {
            let r = response(&m, code, reason, Some(&a_tag));
            let bytes = r.to_bytes();
            core.txn
                .remember_invite_final(now_ms, &m, src, bytes.clone());
            core.send_bytes(src, bytes);
            core.emit(Output::Cdr(CdrOp::Finish {
                call_id: m.call_id().to_string(),
                caller_number: caller.extension.clone(),
                callee_number: callee_number.clone(),
                at_ms: now_ms,
                disposition: Disposition::Failed,
                cause: cause.to_string(),
            }));
        };
        let Some(callee) = callee else {
            fail(self, 404, "Not Found", "not_found");
            return;
        };
        let bindings: Vec<_> = self
            .registrar
            .bindings(&callee.username)
            .iter()
            .filter(|b| b.expires_at_ms > now_ms)
            .cloned()
            .collect();
        if bindings.is_empty() {
            fail(self, 480, "Temporarily Unavailable", "not_registered");
            return;
        }
        let trying = response(&m, 100, "Trying", None);
        let bytes = trying.to_bytes();
        self.txn.remember(now_ms, &m, src, bytes.clone());
        self.send_bytes(src, bytes);

        let from = m.header("From").unwrap_or("");
        let a = Leg {
            call_id: m.call_id().to_string(),
            local_tag: a_tag,
            remote_tag: msg::tag(from).unwrap_or("").to_string(),
            local_uri: strip_tag(m.header("To").unwrap_or("")),
            remote_uri: strip_tag(from),
            local_cseq: 1,
            remote_target: m
                .header_list("Contact")
                .first()
                .map(|c| msg::addr_uri(c).to_string())
                .unwrap_or_default(),
            src,
        };
        let id = self.calls.next_id;
        self.calls.next_id += 1;
        let display = caller.display_name.replace(['"', '\\'], "");
        let host = self.config().local_host.clone();
        let mut forks = Vec::new();
        let mut branches = Vec::new();
        for b in bindings {
            let leg = Leg {
                call_id: format!("{}@centralita", self.new_token()),
                local_tag: self.new_token(),
                remote_tag: String::new(),
                local_uri: format!("\"{display}\" <sip:{}@{host}>", caller.extension),
                remote_uri: format!("<sip:{}@{host}>", callee.extension),
                local_cseq: 1,
                remote_target: b.uri.clone(),
                src: b.src,
            };
            let via = self.via(b.src.transport);
            let branch = via.1.clone();
            let mut inv = self.leg_request(&leg, "INVITE", 1, via);
            inv.headers.push(("Allow".into(), ALLOW.into()));
            Self::copy_body(&m, &mut inv);
            let bytes = inv.to_bytes();
            self.txn.start(
                now_ms,
                branch.clone(),
                b.src,
                bytes.clone(),
                true,
                Owner::ForkInvite {
                    call: id,
                    fork: forks.len(),
                },
            );
            self.send_bytes(b.src, bytes);
            self.calls.by_branch.insert(branch.clone(), id);
            self.calls
                .by_callid
                .insert(leg.call_id.clone(), (id, Side::B(forks.len())));
            branches.push(branch.clone());
            forks.push(Fork {
                leg,
                branch,
                invite: inv,
                state: ForkState::Calling,
                code: 0,
                ack: None,
            });
        }
        self.calls
            .by_callid
            .insert(a.call_id.clone(), (id, Side::A));
        let ring_at = now_ms + self.config().ring_timeout_ms;
        self.calls.timers.insert((ring_at, id, TimerKind::Ring), ());
        let mut media: [MediaLeg; 2] = Default::default();
        media[0].last_sdp = m.body.clone();
        self.calls.calls.insert(
            id,
            Call {
                phase: Phase::Ringing,
                a,
                a_invite: m,
                forks,
                winner: None,
                caller_number: caller.extension.clone(),
                callee_number,
                relays: HashMap::new(),
                reinvite_acks: Vec::new(),
                branches,
                ringing_sent: false,
                media,
            },
        );
    }

    /// Sends a final response to the caller's INVITE, retransmitted until ACK.
    fn final_to_a(&mut self, now_ms: u64, id: u64, r: Msg) {
        let Some(call) = self.calls.calls.get(&id) else {
            return;
        };
        let (src, inv) = (call.a.src, call.a_invite.clone());
        let success = r.code().unwrap_or(0) < 300;
        let bytes = r.to_bytes();
        self.txn.remember(now_ms, &inv, src, bytes.clone());
        self.txn.start(
            now_ms,
            format!("final\u{0}{id}"),
            src,
            bytes.clone(),
            false,
            Owner::InviteFinal { call: id, success },
        );
        self.send_bytes(src, bytes);
    }

    fn cancel_forks(&mut self, now_ms: u64, id: u64, except: Option<usize>) {
        let Some(call) = self.calls.calls.get_mut(&id) else {
            return;
        };
        let mut sends = Vec::new();
        for (i, f) in call.forks.iter_mut().enumerate() {
            if Some(i) == except || !matches!(f.state, ForkState::Calling | ForkState::Proceeding) {
                continue;
            }
            let mut c = f.invite.clone();
            c.start = Start::Request {
                method: "CANCEL".into(),
                uri: f.invite.ruri().to_string(),
            };
            c.headers.retain(|(n, _)| {
                matches!(
                    n.as_str(),
                    "Via" | "From" | "To" | "Call-ID" | "Max-Forwards"
                )
            });
            c.headers.push(("CSeq".into(), "1 CANCEL".into()));
            c.body.clear();
            sends.push((f.branch.clone(), f.leg.src, c.to_bytes()));
        }
        for (branch, to, bytes) in sends {
            self.txn.start(
                now_ms,
                format!("cancel\u{0}{branch}"),
                to,
                bytes.clone(),
                false,
                Owner::None,
            );
            self.send_bytes(to, bytes);
        }
    }

    fn end_call(&mut self, now_ms: u64, id: u64) {
        if let Some(call) = self.calls.calls.get_mut(&id) {
            call.phase = Phase::Ending;
            // While it lingers only headers are needed (to answer or ACK late
            // messages): free the SDP copies.
            call.a_invite.body = Vec::new();
            for f in &mut call.forks {
                f.invite.body = Vec::new();
            }
            call.media = Default::default();
            self.calls
                .timers
                .insert((now_ms + LINGER_MS, id, TimerKind::Cleanup), ());
        }
    }

    fn remove_call(&mut self, id: u64) {
        if let Some(call) = self.calls.calls.remove(&id) {
            self.calls.by_callid.remove(&call.a.call_id);
            for f in &call.forks {
                self.calls.by_callid.remove(&f.leg.call_id);
            }
            for b in &call.branches {
                self.calls.by_branch.remove(b);
            }
            for b in call.relays.keys() {
                self.calls.by_branch.remove(b);
            }
        }
    }

    /// A TCP/TLS/WebSocket connection closed (a browser tab reloaded, a
    /// phone lost its network): calls with a leg on it end now instead of
    /// hanging until someone else hangs up.
    pub(crate) fn flow_lost(&mut self, now_ms: u64, flow: u64) {
        let affected: Vec<(u64, Phase, Option<Side>)> = self
            .calls
            .calls
            .iter()
            .filter(|(_, c)| c.phase != Phase::Ending)
            .filter_map(|(id, c)| {
                let a_lost = c.a.src.flow == flow && c.a.src.transport.reliable();
                let lost_fork = c
                    .forks
                    .iter()
                    .position(|f| f.leg.src.flow == flow && f.leg.src.transport.reliable());
                match (a_lost, lost_fork) {
                    (true, _) => Some((*id, c.phase, Some(Side::A))),
                    (false, Some(i)) => Some((*id, c.phase, Some(Side::B(i)))),
                    _ => None,
                }
            })
            .collect();
        for (id, phase, lost) in affected {
            let Some(call) = self.calls.calls.get(&id) else {
                continue;
            };
            let v = CallView::of(call);
            let winner = call.winner;
            match (phase, lost) {
                (Phase::Answered, Some(Side::A)) => {
                    if let Some(w) = winner {
                        self.send_bye(now_ms, id, Side::B(w));
                    }
                    self.cdr_finish_view(
                        &v,
                        now_ms,
                        Disposition::Answered,
                        "caller_connection_lost",
                    );
                    self.end_call(now_ms, id);
                }
                (Phase::Answered, Some(Side::B(i))) if winner == Some(i) => {
                    self.send_bye(now_ms, id, Side::A);
                    self.cdr_finish_view(
                        &v,
                        now_ms,
                        Disposition::Answered,
                        "callee_connection_lost",
                    );
                    self.end_call(now_ms, id);
                }
                (Phase::Ringing, Some(Side::A)) => {
                    self.cancel_forks(now_ms, id, None);
                    self.cdr_finish_view(
                        &v,
                        now_ms,
                        Disposition::Cancelled,
                        "caller_connection_lost",
                    );
                    self.end_call(now_ms, id);
                }
                (Phase::Ringing, Some(Side::B(i))) => {
                    if let Some(f) = self
                        .calls
                        .calls
                        .get_mut(&id)
                        .and_then(|c| c.forks.get_mut(i))
                    {
                        if f.state != ForkState::Done {
                            f.state = ForkState::Done;
                            f.code = 480;
                        }
                    }
                    self.fork_failed(now_ms, id);
                }
                _ => {}
            }
        }
    }

    fn on_cancel(&mut self, now_ms: u64, id: u64, src: Source, m: &Msg) {
        let r = response(m, 200, "OK", None);
        self.reply(now_ms, src, m, r);
        let Some(call) = self.calls.calls.get(&id) else {
            return;
        };
        if call.phase != Phase::Ringing || call.a_invite.top_branch() != m.top_branch() {
            return;
        }
        let r = response(
            &call.a_invite,
            487,
            "Request Terminated",
            Some(&call.a.local_tag),
        );
        self.cancel_forks(now_ms, id, None);
        self.final_to_a(now_ms, id, r);
        if let Some(call) = self.calls.calls.get(&id) {
            let call_ptr = CallView::of(call);
            self.cdr_finish_view(&call_ptr, now_ms, Disposition::Cancelled, "cancelled");
        }
        self.end_call(now_ms, id);
    }

    fn on_ack(&mut self, _now_ms: u64, id: u64, side: Side, m: &Msg) {
        let (cseq, _) = m.cseq();
        let Some(call) = self.calls.calls.get_mut(&id) else {
            return;
        };
        // ACK of the caller's initial INVITE.
        if side == Side::A && cseq == call.a_invite.cseq().0 && m.call_id() == call.a.call_id {
            let stopped = self.txn.stop(&format!("final\u{0}{id}"));
            let Some(w) = call.winner else {
                return; // ACK for a non-2xx: hop by hop, absorbed here.
            };
            if stopped.is_none() && call.forks[w].ack.is_some() {
                return; // retransmitted ACK
            }
            if call.phase == Phase::Ending && call.forks[w].ack.is_none() && stopped.is_none() {
                return;
            }
            let leg = call.forks[w].leg.clone();
            let via = self.via(leg.src.transport);
            let mut ack = self.leg_request(&leg, "ACK", 1, via);
            Self::copy_body(m, &mut ack);
            let bytes = ack.to_bytes();
            if let Some(call) = self.calls.calls.get_mut(&id) {
                call.forks[w].ack = Some(bytes.clone());
            }
            self.send_bytes(leg.src, bytes);
            return;
        }
        // ACK of a relayed re-INVITE 2xx: pass it on end to end.
        let pos = call
            .reinvite_acks
            .iter()
            .position(|(s, c, _, _)| *s == side && *c == cseq);
        if let Some(i) = pos {
            let (_, _, to_side, fwd_cseq) = call.reinvite_acks.remove(i);
            self.txn.stop(&format!("re2xx\u{0}{id}\u{0}{cseq}"));
            let Some(leg) = self.leg_of(id, to_side) else {
                return;
            };
            let via = self.via(leg.src.transport);
            let mut ack = self.leg_request(&leg, "ACK", fwd_cseq, via);
            Self::copy_body(m, &mut ack);
            self.send(leg.src, &ack);
        }
    }

    fn leg_of(&self, id: u64, side: Side) -> Option<Leg> {
        let call = self.calls.calls.get(&id)?;
        match side {
            Side::A => Some(call.a.clone()),
            Side::B(i) => call.forks.get(i).map(|f| f.leg.clone()),
        }
    }

    fn in_dialog(&mut self, now_ms: u64, id: u64, side: Side, src: Source, m: Msg) {
        let Some(call) = self.calls.calls.get(&id) else {
            return;
        };
        let method = m.method().unwrap_or("").to_string();
        let other = match (side, call.winner) {
            (Side::A, Some(w)) => Side::B(w),
            (Side::B(i), Some(w)) if i == w => Side::A,
            _ => {
                let r = response(&m, 481, "Call/Transaction Does Not Exist", None);
                self.reply(now_ms, src, &m, r);
                return;
            }
        };
        if call.phase == Phase::Ending {
            let code = if method == "BYE" { 200 } else { 481 };
            let r = response(
                &m,
                code,
                if code == 200 {
                    "OK"
                } else {
                    "Call/Transaction Does Not Exist"
                },
                None,
            );
            self.reply(now_ms, src, &m, r);
            return;
        }
        if method == "BYE" {
            let r = response(&m, 200, "OK", None);
            self.reply(now_ms, src, &m, r);
            self.send_bye(now_ms, id, other);
            let cause = if side == Side::A {
                "caller_bye"
            } else {
                "callee_bye"
            };
            if let Some(call) = self.calls.calls.get(&id) {
                let v = CallView::of(call);
                self.cdr_finish_view(&v, now_ms, Disposition::Answered, cause);
            }
            self.end_call(now_ms, id);
            return;
        }
        // Relay any other in-dialog request (re-INVITE, UPDATE, INFO, OPTIONS...).
        let Some(mut leg) = self.leg_of(id, other) else {
            return;
        };
        leg.local_cseq += 1;
        let fwd_cseq = leg.local_cseq;
        let via = self.via(leg.src.transport);
        let branch = via.1.clone();
        let mut req = self.leg_request(&leg, &method, fwd_cseq, via);
        for h in [
            "Content-Disposition",
            "Supported",
            "Require",
            "Allow",
            "Event",
            "Session-Expires",
        ] {
            if let Some(v) = m.header(h) {
                req.headers.push((h.to_string(), v.to_string()));
            }
        }
        Self::copy_body(&m, &mut req);
        let bytes = req.to_bytes();
        self.txn.start(
            now_ms,
            branch.clone(),
            leg.src,
            bytes.clone(),
            method == "INVITE",
            Owner::Relay { call: id },
        );
        self.send_bytes(leg.src, bytes);
        self.calls.by_branch.insert(branch.clone(), id);
        if let Some(call) = self.calls.calls.get_mut(&id) {
            match other {
                Side::A => call.a.local_cseq = fwd_cseq,
                Side::B(i) => call.forks[i].leg.local_cseq = fwd_cseq,
            }
            if method == "INVITE" {
                let idx = if side == Side::A { 0 } else { 1 };
                call.media[idx].last_sdp = m.body.clone();
            }
            call.relays.insert(
                branch,
                Relay {
                    from: side,
                    req: m,
                    src,
                    fwd_cseq,
                },
            );
        }
    }

    fn send_bye(&mut self, now_ms: u64, id: u64, side: Side) {
        let Some(mut leg) = self.leg_of(id, side) else {
            return;
        };
        leg.local_cseq += 1;
        let via = self.via(leg.src.transport);
        let branch = via.1.clone();
        let bye = self.leg_request(&leg, "BYE", leg.local_cseq, via);
        let bytes = bye.to_bytes();
        self.txn
            .start(now_ms, branch, leg.src, bytes.clone(), false, Owner::None);
        self.send_bytes(leg.src, bytes);
        if let Some(call) = self.calls.calls.get_mut(&id) {
            match side {
                Side::A => call.a.local_cseq = leg.local_cseq,
                Side::B(i) => call.forks[i].leg.local_cseq = leg.local_cseq,
            }
        }
    }

    /// Responses: to our fork INVITEs, CANCELs, BYEs and relayed requests.
    pub(crate) fn handle_response(&mut self, now_ms: u64, _src: Source, m: Msg) {
        let code = m.code().unwrap_or(0);
        let branch = m.top_branch().to_string();
        let (_, method) = m.cseq();
        let method = method.to_string();
        let tkey = if method == "CANCEL" {
            format!("cancel\u{0}{branch}")
        } else {
            branch.clone()
        };
        if code >= 200 {
            self.txn.stop(&tkey);
        } else if method != "INVITE" || self.calls.by_branch.contains_key(&branch) {
            self.txn.quiet(&tkey);
        }
        if method == "CANCEL" {
            return;
        }
        let Some(&id) = self.calls.by_branch.get(&branch) else {
            return;
        };
        let Some(call) = self.calls.calls.get(&id) else {
            return;
        };
        if let Some(fi) = call.forks.iter().position(|f| f.branch == branch) {
            if method == "INVITE" {
                self.fork_response(now_ms, id, fi, m);
            }
            return;
        }
        if call.relays.contains_key(&branch) {
            self.relay_response(now_ms, id, &branch, m);
        }
    }

    fn fork_response(&mut self, now_ms: u64, id: u64, fi: usize, m: Msg) {
        let code = m.code().unwrap_or(0);
        let to_tag = msg::tag(m.header("To").unwrap_or(""))
            .unwrap_or("")
            .to_string();
        let contact = m
            .header_list("Contact")
            .first()
            .map(|c| msg::addr_uri(c).to_string());
        let Some(call) = self.calls.calls.get_mut(&id) else {
            return;
        };
        let fork = &mut call.forks[fi];
        if !to_tag.is_empty() && fork.leg.remote_tag.is_empty() {
            fork.leg.remote_tag = to_tag.clone();
        }
        if code < 200 {
            if fork.state == ForkState::Calling {
                fork.state = ForkState::Proceeding;
            }
            if call.phase == Phase::Ringing && (code == 180 || code == 183) {
                let mut r = response(
                    &call.a_invite,
                    code,
                    if code == 180 {
                        "Ringing"
                    } else {
                        "Session Progress"
                    },
                    Some(&call.a.local_tag),
                );
                r.headers.push(("Contact".into(), String::new()));
                Self::copy_body(&m, &mut r);
                let first = !call.ringing_sent;
                call.ringing_sent = true;
                let (src, inv) = (call.a.src, call.a_invite.clone());
                let cdr = CdrOp::Ringing {
                    call_id: call.a.call_id.clone(),
                    caller_number: call.caller_number.clone(),
                    callee_number: call.callee_number.clone(),
                    at_ms: now_ms,
                };
                let contact = self.our_contact(src.transport);
                if let Some(h) = r
                    .headers
                    .iter_mut()
                    .find(|(n, v)| n == "Contact" && v.is_empty())
                {
                    h.1 = contact;
                }
                let bytes = r.to_bytes();
                self.txn.remember(now_ms, &inv, src, bytes.clone());
                self.send_bytes(src, bytes);
                if first {
                    self.emit(Output::Cdr(cdr));
                }
            }
            return;
        }
        if code < 300 {
            if let Some(c) = contact {
                fork.leg.remote_target = c;
            }
            if fork.state == ForkState::Answered {
                // Retransmitted 2xx: our ACK was lost.
                if let Some(ack) = fork.ack.clone() {
                    let to = fork.leg.src;
                    self.send_bytes(to, ack);
                }
                return;
            }
            fork.state = ForkState::Answered;
            fork.code = code;
            if call.phase != Phase::Ringing || call.winner.is_some() {
                // Late answer on a losing fork or after cancel: ACK and BYE it.
                let leg = fork.leg.clone();
                fork.state = ForkState::Done;
                let via = self.via(leg.src.transport);
                let ack = self.leg_request(&leg, "ACK", 1, via);
                self.send(leg.src, &ack);
                self.send_bye(now_ms, id, Side::B(fi));
                return;
            }
            call.winner = Some(fi);
            call.phase = Phase::Answered;
            call.media[1].last_sdp = m.body.clone();
            let mut r = response(&call.a_invite, 200, "OK", Some(&call.a.local_tag));
            let a_t = call.a.src.transport;
            let cdr = CdrOp::Answer {
                call_id: call.a.call_id.clone(),
                caller_number: call.caller_number.clone(),
                callee_number: call.callee_number.clone(),
                at_ms: now_ms,
            };
            r.headers.push(("Contact".into(), self.our_contact(a_t)));
            r.headers.push(("Allow".into(), ALLOW.into()));
            Self::copy_body(&m, &mut r);
            self.emit(Output::Cdr(cdr));
            self.cancel_forks(now_ms, id, Some(fi));
            self.final_to_a(now_ms, id, r);
            return;
        }
        // Non-2xx final: ACK hop by hop (same branch as the INVITE).
        fork.state = ForkState::Done;
        fork.code = code;
        let mut ack = fork.invite.clone();
        ack.start = Start::Request {
            method: "ACK".into(),
            uri: fork.invite.ruri().to_string(),
        };
        ack.headers
            .retain(|(n, _)| matches!(n.as_str(), "Via" | "From" | "Call-ID" | "Max-Forwards"));
        ack.headers
            .push(("To".into(), m.header("To").unwrap_or("").to_string()));
        ack.headers.push(("CSeq".into(), "1 ACK".into()));
        ack.body.clear();
        let to = fork.leg.src;
        self.send(to, &ack);
        self.fork_failed(now_ms, id);
    }

    /// After a fork ended without answer: if every fork did, end the call.
    fn fork_failed(&mut self, now_ms: u64, id: u64) {
        let Some(call) = self.calls.calls.get(&id) else {
            return;
        };
        if call.phase != Phase::Ringing || call.forks.iter().any(|f| f.state != ForkState::Done) {
            return;
        }
        let codes: Vec<u16> = call.forks.iter().map(|f| f.code).collect();
        let code = codes
            .iter()
            .copied()
            .find(|c| matches!(c, 486 | 600 | 603))
            .unwrap_or_else(|| codes.iter().copied().min().unwrap_or(480));
        let (d, cause) = disposition_for(code);
        let (code, reason) = match code {
            486 | 600 | 603 => (486, "Busy Here"),
            408 => (480, "Temporarily Unavailable"),
            c => (c, "Call Failed"),
        };
        let r = response(&call.a_invite, code, reason, Some(&call.a.local_tag));
        let v = CallView::of(call);
        self.cdr_finish_view(&v, now_ms, d, cause);
        self.final_to_a(now_ms, id, r);
        self.end_call(now_ms, id);
    }

    fn relay_response(&mut self, now_ms: u64, id: u64, branch: &str, m: Msg) {
        let code = m.code().unwrap_or(0);
        let our_contact = self
            .calls
            .calls
            .get(&id)
            .and_then(|c| c.relays.get(branch))
            .map(|r| self.our_contact(r.src.transport))
            .unwrap_or_default();
        let Some(call) = self.calls.calls.get_mut(&id) else {
            return;
        };
        let (from, req, src, fwd_cseq) = {
            let Some(r) = call.relays.get(branch) else {
                return;
            };
            (r.from, r.req.clone(), r.src, r.fwd_cseq)
        };
        let is_invite = req.method() == Some("INVITE");
        let reason = match &m.start {
            Start::Response { reason, .. } => reason.clone(),
            _ => String::new(),
        };
        let mut r = response(&req, code, &reason, None);
        if (200..300).contains(&code) {
            if let Some(c) = m.header_list("Contact").first() {
                let target = msg::addr_uri(c).to_string();
                let other = match from {
                    Side::A => call.winner.map(Side::B),
                    Side::B(_) => Some(Side::A),
                };
                match other {
                    Some(Side::A) => call.a.remote_target = target,
                    Some(Side::B(i)) => call.forks[i].leg.remote_target = target,
                    None => {}
                }
            }
            r.headers.push(("Contact".into(), our_contact));
        }
        Self::copy_body(&m, &mut r);
        if code >= 200 {
            call.relays.remove(branch);
            self.calls.by_branch.remove(branch);
        }
        let other_side = match from {
            Side::A => call.winner.map(Side::B).unwrap_or(Side::A),
            Side::B(_) => Side::A,
        };
        if is_invite && code >= 300 {
            // Hop-by-hop ACK toward the side that refused the re-INVITE.
            if let Some(leg) = self.leg_of(id, other_side) {
                let mut ack =
                    self.leg_request(&leg, "ACK", fwd_cseq, (String::new(), String::new()));
                ack.headers[0].1 = m.header("Via").unwrap_or("").to_string();
                self.send(leg.src, &ack);
            }
        }
        let bytes = r.to_bytes();
        if code >= 200 {
            self.txn.remember(now_ms, &req, src, bytes.clone());
        }
        if is_invite && (200..300).contains(&code) {
            let (cseq, _) = req.cseq();
            if let Some(call) = self.calls.calls.get_mut(&id) {
                call.reinvite_acks.push((from, cseq, other_side, fwd_cseq));
            }
            self.txn.start(
                now_ms,
                format!("re2xx\u{0}{id}\u{0}{cseq}"),
                src,
                bytes.clone(),
                false,
                Owner::None,
            );
        }
        self.send_bytes(src, bytes);
    }

    pub(crate) fn txn_timeouts(&mut self, now_ms: u64) {
        let mut out = std::mem::take(&mut self.out);
        let dead = self.txn.poll(now_ms, &mut out);
        self.out = out;
        for owner in dead {
            match owner {
                Owner::ForkInvite { call, fork } => {
                    if let Some(c) = self.calls.calls.get_mut(&call) {
                        if let Some(f) = c.forks.get_mut(fork) {
                            if matches!(f.state, ForkState::Calling | ForkState::Proceeding) {
                                f.state = ForkState::Done;
                                f.code = 408;
                            }
                        }
                    }
                    self.fork_failed(now_ms, call);
                }
                Owner::InviteFinal {
                    call,
                    success: true,
                } => {
                    // The caller never ACKed our 200: hang both legs up.
                    if let Some(c) = self.calls.calls.get(&call) {
                        if c.phase == Phase::Answered {
                            let w = c.winner;
                            let v = CallView::of(c);
                            self.send_bye(now_ms, call, Side::A);
                            if let Some(w) = w {
                                self.send_bye(now_ms, call, Side::B(w));
                            }
                            self.cdr_finish_view(&v, now_ms, Disposition::Answered, "ack_timeout");
                            self.end_call(now_ms, call);
                        }
                    }
                }
                Owner::Relay { call } => {
                    // Other side never answered a relayed request: 408 to the sender.
                    if let Some(c) = self.calls.calls.get_mut(&call) {
                        let stale: Vec<String> = c.relays.keys().cloned().collect();
                        let mut replies = Vec::new();
                        for b in stale {
                            if !self.txn.retrans.contains_key(&b) {
                                if let Some(r) = c.relays.remove(&b) {
                                    replies.push(r);
                                }
                            }
                        }
                        for r in replies {
                            let resp = response(&r.req, 408, "Request Timeout", None);
                            self.send(r.src, &resp);
                        }
                    }
                }
                Owner::InviteFinal { .. } | Owner::None | Owner::Stray => {}
            }
        }
    }

    pub(crate) fn call_timeouts(&mut self, now_ms: u64) {
        while let Some((&(at, id, kind), _)) = self.calls.timers.iter().next() {
            if at > now_ms {
                break;
            }
            self.calls.timers.remove(&(at, id, kind));
            match kind {
                TimerKind::Ring => {
                    let Some(call) = self.calls.calls.get(&id) else {
                        continue;
                    };
                    if call.phase != Phase::Ringing {
                        continue;
                    }
                    let r = response(
                        &call.a_invite,
                        480,
                        "Temporarily Unavailable",
                        Some(&call.a.local_tag),
                    );
                    let v = CallView::of(call);
                    self.cancel_forks(now_ms, id, None);
                    self.final_to_a(now_ms, id, r);
                    self.cdr_finish_view(&v, now_ms, Disposition::NoAnswer, "no_answer");
                    self.end_call(now_ms, id);
                }
                TimerKind::Cleanup => self.remove_call(id),
            }
        }
    }

    fn cdr_finish_view(&mut self, v: &CallView, now_ms: u64, d: Disposition, cause: &str) {
        self.emit(Output::Cdr(CdrOp::Finish {
            call_id: v.call_id.clone(),
            caller_number: v.caller.clone(),
            callee_number: v.callee.clone(),
            at_ms: now_ms,
            disposition: d,
            cause: cause.to_string(),
        }));
    }
}

/// The identifying fields of a call, copied so the call map can be mutated.
struct CallView {
    call_id: String,
    caller: String,
    callee: String,
}

impl CallView {
    fn of(c: &Call) -> Self {
        CallView {
            call_id: c.a.call_id.clone(),
            caller: c.caller_number.clone(),
            callee: c.callee_number.clone(),
        }
    }
}
