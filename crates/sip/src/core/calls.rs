//! The table of calls: finds the call a message or a timer belongs to and
//! hands it over. Calls are found by Call-ID (every leg's) and, for
//! responses, by the call id our branches carry; deadlines are kept in one
//! ordered set so the endpoint's `poll_timeout` is cheap.

use super::call::leg::call_of_branch;
use super::call::{Call, Lost, Plan, Side, TrunkPlan};
use super::compact;
use super::ctx::Ctx;
use super::media::MediaEvent;
use super::msg::Msg;
use super::txn::Owner;
use super::types::Source;
use domain::call_events::HangupCause;
use std::collections::{BTreeSet, HashMap};

#[derive(Default)]
pub struct Calls {
    /// Boxed: the table keeps spare slots after growing (and twice its
    /// size while it grows), which then cost 16 bytes each, not a `Call`.
    calls: HashMap<u64, Box<Call>>,
    by_callid: HashMap<String, (u64, Side)>,
    /// (deadline, call)
    timers: BTreeSet<(u64, u64)>,
    scheduled: HashMap<u64, u64>,
    next_id: u64,
    /// Ids taken before their call exists (an originate's media session
    /// opens while the agent rings), by the call's Call-ID.
    reserved: HashMap<String, u64>,
}

impl Calls {
    /// Calls up (ringing or answered), not counting those lingering.
    pub fn live(&self) -> usize {
        self.calls.values().filter(|c| c.is_live()).count()
    }

    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.iter().next().map(|(t, _)| *t)
    }

    pub fn find(&self, call_id: &str) -> Option<(u64, Side)> {
        self.by_callid.get(call_id).copied()
    }

    /// An id for the call that will have `call_id` (the next `start` with
    /// that Call-ID uses it).
    pub fn reserve(&mut self, call_id: &str) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.reserved.insert(call_id.to_string(), id);
        id
    }

    /// Gives a reserved id back (its call will not start).
    pub fn unreserve(&mut self, call_id: &str) -> Option<u64> {
        self.reserved.remove(call_id)
    }

    fn id_for(&mut self, call_id: &str) -> u64 {
        self.reserved.remove(call_id).unwrap_or_else(|| {
            let id = self.next_id;
            self.next_id += 1;
            id
        })
    }

    /// Creates a call and lets it send its INVITEs.
    pub fn start(&mut self, ctx: &mut Ctx<'_>, src: Source, m: Msg, a_tag: String, plan: Plan<'_>) {
        let id = self.id_for(m.call_id());
        let call = Call::start(ctx, id, src, m, a_tag, plan);
        for (cid, side) in call.call_ids() {
            self.by_callid.insert(cid.to_string(), (id, side));
        }
        self.calls.insert(id, Box::new(call));
        self.reschedule(id);
    }

    /// Creates a call out through trunks and lets it send its first INVITE.
    pub fn start_trunk(
        &mut self,
        ctx: &mut Ctx<'_>,
        src: Source,
        m: Msg,
        a_tag: String,
        plan: TrunkPlan<'_>,
    ) {
        let id = self.id_for(m.call_id());
        let call = Call::start_trunk(ctx, id, src, m, a_tag, plan);
        for (cid, side) in call.call_ids() {
            self.by_callid.insert(cid.to_string(), (id, side));
        }
        self.calls.insert(id, Box::new(call));
        self.reschedule(id);
    }

    /// Runs `f` on call `id`, then updates its deadline (or forgets it).
    pub fn with<R>(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: u64,
        f: impl FnOnce(&mut Call, &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        let call = self.calls.get_mut(&id)?;
        let legs = call.legs();
        let r = f(call, ctx);
        if call.legs() != legs {
            // A trunk call failed over: its new leg's Call-ID routes here too.
            for (cid, side) in call.call_ids().skip(legs + 1) {
                self.by_callid.insert(cid.to_string(), (id, side));
            }
        }
        self.reschedule(id);
        Some(r)
    }

    /// A response: to a fork INVITE, a CANCEL, a BYE or a relayed request.
    pub fn handle_response(&mut self, ctx: &mut Ctx<'_>, m: Msg) {
        let Some(id) = call_of_branch(m.top_branch()) else {
            return;
        };
        self.with(ctx, id, |call, ctx| call.handle_response(ctx, m));
    }

    /// Whether our request with `branch` is one a call waits on.
    pub fn expects(&self, branch: &str) -> bool {
        call_of_branch(branch)
            .and_then(|id| self.calls.get(&id))
            .is_some_and(|c| c.expects(branch))
    }

    pub fn handle_txn_timeout(&mut self, ctx: &mut Ctx<'_>, owner: Owner) {
        let id = match owner {
            Owner::ForkInvite { call, .. }
            | Owner::InviteFinal { call, .. }
            | Owner::Relay { call } => call,
            Owner::None | Owner::Stray | Owner::Originate { .. } => return,
        };
        self.with(ctx, id, |call, ctx| call.handle_txn_timeout(ctx, owner));
    }

    /// Runs every call whose deadline passed; forgets calls done lingering.
    pub fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        while let Some(&(at, id)) = self.timers.iter().next() {
            if at > ctx.now_ms {
                break;
            }
            self.timers.remove(&(at, id));
            self.scheduled.remove(&id);
            let finished = self
                .with(ctx, id, |call, ctx| {
                    call.handle_timeout(ctx);
                    call.is_finished(ctx.now_ms)
                })
                .unwrap_or(false);
            if finished {
                self.remove(id);
            }
        }
    }

    /// A connection closed (or a restored contact could not be reached):
    /// the calls with a leg that way end, or lose that fork.
    pub fn handle_lost(&mut self, ctx: &mut Ctx<'_>, lost: Lost) {
        let ids: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| c.is_live() && c.uses(lost))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.with(ctx, id, |call, ctx| call.handle_lost(ctx, lost));
        }
    }

    /// A media plane event for one call.
    pub fn handle_media_event(&mut self, ctx: &mut Ctx<'_>, event: MediaEvent) {
        let call = match &event {
            MediaEvent::Timeout { call }
            | MediaEvent::Failed { call }
            | MediaEvent::Dtmf { call, .. } => *call,
            MediaEvent::Report { call_id, kinds } => {
                // For the record only: the call may be long gone.
                let now = ctx.now_ms;
                for kind in kinds {
                    ctx.event(call_id, now, kind.clone());
                }
                return;
            }
        };
        self.with(ctx, call, |c, ctx| c.handle_media_event(ctx, &event));
    }

    /// The server stops: every live call is ended properly.
    pub fn handle_shutdown(&mut self, ctx: &mut Ctx<'_>) {
        let ids: Vec<u64> = self.calls.keys().copied().collect();
        for id in ids {
            self.with(ctx, id, |call, ctx| call.handle_shutdown(ctx));
        }
    }

    /// Ends the call whose caller's Call-ID is `call_id` (the id in its
    /// record) with `cause`; false when there is no such live call.
    pub fn hang_up(&mut self, ctx: &mut Ctx<'_>, call_id: &str, cause: HangupCause) -> bool {
        let Some(&(id, Side::A)) = self.by_callid.get(call_id) else {
            return false;
        };
        self.with(ctx, id, |call, ctx| {
            let live = call.is_live();
            call.hang_up(ctx, cause);
            live
        })
        .unwrap_or(false)
    }

    /// Gives back the memory of a burst of calls (see `compact.rs`).
    pub fn compact(&mut self) {
        compact::map(&mut self.calls);
        compact::map(&mut self.by_callid);
        compact::map(&mut self.scheduled);
        compact::map(&mut self.reserved);
    }

    fn reschedule(&mut self, id: u64) {
        if let Some(old) = self.scheduled.remove(&id) {
            self.timers.remove(&(old, id));
        }
        if let Some(at) = self.calls.get(&id).and_then(|c| c.poll_timeout()) {
            self.timers.insert((at, id));
            self.scheduled.insert(id, at);
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some(old) = self.scheduled.remove(&id) {
            self.timers.remove(&(old, id));
        }
        if let Some(call) = self.calls.remove(&id) {
            for (cid, _) in call.call_ids() {
                self.by_callid.remove(cid);
            }
        }
    }
}
