//! Transaction timers (RFC 3261 section 17) reduced to what a B2BUA needs:
//! - a response cache that absorbs retransmitted requests (server side);
//! - a retransmission table for what we send over UDP until it is answered
//!   (timers A/E, capped at T2 for non-INVITE), with a deadline (timers B/F,
//!   64*T1) also used on reliable transports; 2xx and non-2xx finals to an
//!   INVITE are retransmitted until the ACK (timers G/H).

use super::msg::Msg;
use super::types::{Outbox, Output, Source};
use std::collections::{HashMap, VecDeque};

pub const T1: u64 = 500;
pub const T2: u64 = 4_000;
pub const TIMEOUT: u64 = 64 * T1;
/// How long a final response to a non-INVITE request is kept to answer
/// retransmissions. Shorter than timer J (32 s) to bound memory at high
/// REGISTER rates: UDP retransmissions arrive at 0.5, 1.5 and 3.5 s.
pub const ABSORB_MS: u64 = 5_000;

/// What a retransmission entry belongs to, told back to the core on timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Nothing to do on timeout (e.g. BYE, CANCEL).
    None,
    /// INVITE to fork `fork` of call `call`.
    ForkInvite { call: u64, fork: usize },
    /// Our final response to the caller's INVITE, waiting for ACK.
    InviteFinal { call: u64, success: bool },
    /// A relayed in-dialog request.
    Relay { call: u64 },
    /// A non-2xx final to an out-of-call INVITE (e.g. 407), waiting for ACK.
    Stray,
}

/// Identifies something we retransmit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TxnKey {
    /// A client transaction of ours by its branch (fork INVITE, relayed
    /// request, BYE).
    Client(String),
    /// Our CANCEL of the INVITE with this branch.
    Cancel(String),
    /// Our final response to call `.0`'s initial INVITE, until its ACK.
    InviteFinal(u64),
    /// A relayed 2xx to a re-INVITE of call `.0` with CSeq `.1`, until its ACK.
    ReInvite2xx(u64, u32),
    /// A non-2xx final to an INVITE outside any call (e.g. 407), until its ACK.
    Stray(String),
}

#[derive(Debug)]
pub struct Retrans {
    pub to: Source,
    pub data: Vec<u8>,
    /// None on reliable transports or once a provisional stopped it.
    pub next_at: Option<u64>,
    pub interval: u64,
    pub cap: u64,
    pub deadline: u64,
    pub owner: Owner,
}

#[derive(Default)]
pub struct Txns {
    absorb: HashMap<String, (Source, Vec<u8>)>,
    absorb_order: VecDeque<(u64, String)>,
    retrans: HashMap<TxnKey, Retrans>,
}

fn key(m: &Msg) -> String {
    let (_, method) = m.cseq();
    let method = if method == "ACK" { "INVITE" } else { method };
    format!("{}\u{0}{}\u{0}{}", m.top_branch(), method, m.call_id())
}

impl Txns {
    /// If `m` retransmits a request already answered, re-send the answer.
    pub fn absorb(&mut self, m: &Msg, src: Source, out: &mut Outbox) -> bool {
        if m.top_branch().is_empty() {
            return false;
        }
        match self.absorb.get(&key(m)) {
            Some((_, data)) => {
                // Answer where this copy came from (a NAT may have moved it).
                out.push_back(Output::Transmit {
                    to: src,
                    data: data.clone(),
                });
                true
            }
            None => false,
        }
    }

    /// Remembers the latest response to request `req`.
    pub fn remember(&mut self, now_ms: u64, req: &Msg, src: Source, data: Vec<u8>) {
        if req.top_branch().is_empty() {
            return;
        }
        let k = key(req);
        if self.absorb.insert(k.clone(), (src, data)).is_none() {
            self.absorb_order.push_back((now_ms + ABSORB_MS, k));
        }
    }

    /// Final non-2xx to an INVITE outside a call (e.g. 407): absorb the
    /// INVITE retransmits and retransmit on UDP until the ACK arrives.
    pub fn remember_invite_final(&mut self, now_ms: u64, req: &Msg, src: Source, data: Vec<u8>) {
        self.remember(now_ms, req, src, data.clone());
        self.start(
            now_ms,
            TxnKey::Stray(key(req)),
            src,
            data,
            true,
            Owner::Stray,
        );
    }

    /// An ACK for a non-2xx final we sent outside a call.
    pub fn ack(&mut self, m: &Msg) -> bool {
        self.retrans.remove(&TxnKey::Stray(key(m))).is_some()
    }

    /// Starts retransmitting `data` (UDP) with a 64*T1 deadline.
    pub fn start(
        &mut self,
        now_ms: u64,
        k: TxnKey,
        to: Source,
        data: Vec<u8>,
        invite: bool,
        owner: Owner,
    ) {
        let reliable = to.transport.reliable();
        self.retrans.insert(
            k,
            Retrans {
                to,
                data,
                next_at: (!reliable).then_some(now_ms + T1),
                interval: T1,
                cap: if invite { u64::MAX } else { T2 },
                deadline: now_ms + TIMEOUT,
                owner,
            },
        );
    }

    /// Stops retransmitting but keeps the deadline (a provisional arrived).
    pub fn quiet(&mut self, k: &TxnKey) {
        if let Some(r) = self.retrans.get_mut(k) {
            r.next_at = None;
            r.deadline = u64::MAX;
        }
    }

    pub fn stop(&mut self, k: &TxnKey) -> Option<Retrans> {
        self.retrans.remove(k)
    }

    pub fn contains(&self, k: &TxnKey) -> bool {
        self.retrans.contains_key(k)
    }

    pub fn next_deadline(&self) -> Option<u64> {
        let a = self.absorb_order.front().map(|(t, _)| *t);
        let r = self
            .retrans
            .values()
            .map(|r| r.next_at.unwrap_or(u64::MAX).min(r.deadline))
            .min();
        [a, r].into_iter().flatten().min()
    }

    /// Retransmits what is due; returns the owners of entries that timed out.
    pub fn poll(&mut self, now_ms: u64, out: &mut Outbox) -> Vec<Owner> {
        while let Some((t, _)) = self.absorb_order.front() {
            if *t > now_ms {
                break;
            }
            if let Some((_, k)) = self.absorb_order.pop_front() {
                self.absorb.remove(&k);
            }
        }
        let mut dead = Vec::new();
        for (k, r) in self.retrans.iter_mut() {
            if r.deadline <= now_ms {
                dead.push(k.clone());
                continue;
            }
            if let Some(at) = r.next_at {
                if at <= now_ms {
                    out.push_back(Output::Transmit {
                        to: r.to,
                        data: r.data.clone(),
                    });
                    r.interval = (r.interval * 2).min(r.cap);
                    r.next_at = Some(now_ms + r.interval);
                }
            }
        }
        dead.into_iter()
            .filter_map(|k| self.retrans.remove(&k))
            .map(|r| r.owner)
            .collect()
    }
}
