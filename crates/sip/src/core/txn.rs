//! Transaction timers (RFC 3261 section 17) reduced to what a B2BUA needs:
//! - a response cache that absorbs retransmitted requests (server side);
//! - a retransmission table for what we send over UDP until it is answered
//!   (timers A/E, capped at T2 for non-INVITE), with a deadline (timers B/F,
//!   64*T1) also used on reliable transports; 2xx and non-2xx finals to an
//!   INVITE are retransmitted until the ACK (timers G/H).

use super::compact;
use super::msg::Msg;
use super::types::{Outbox, Output, Source};
use std::collections::{BTreeSet, HashMap, VecDeque};

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
    /// Our INVITE to the agent of an originate (its synthetic caller's flow).
    Originate { flow: u64 },
}

/// Identifies something we retransmit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
    /// Every entry's next wake-up (retransmission or deadline, whichever
    /// comes first), so finding the next deadline and what is due costs
    /// O(log n) instead of a scan of every entry.
    due: BTreeSet<(u64, TxnKey)>,
}

impl Retrans {
    fn wake(&self) -> u64 {
        self.next_at.unwrap_or(u64::MAX).min(self.deadline)
    }
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
        self.stop(&TxnKey::Stray(key(m))).is_some()
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
        let r = Retrans {
            to,
            data,
            next_at: (!reliable).then_some(now_ms + T1),
            interval: T1,
            cap: if invite { u64::MAX } else { T2 },
            deadline: now_ms + TIMEOUT,
            owner,
        };
        self.due.insert((r.wake(), k.clone()));
        if let Some(old) = self.retrans.insert(k.clone(), r) {
            self.due.remove(&(old.wake(), k));
        }
    }

    /// Stops retransmitting but keeps the deadline (a provisional arrived).
    pub fn quiet(&mut self, k: &TxnKey) {
        if let Some(r) = self.retrans.get_mut(k) {
            self.due.remove(&(r.wake(), k.clone()));
            r.next_at = None;
            r.deadline = u64::MAX;
        }
    }

    pub fn stop(&mut self, k: &TxnKey) -> Option<Retrans> {
        let r = self.retrans.remove(k)?;
        self.due.remove(&(r.wake(), k.clone()));
        Some(r)
    }

    pub fn contains(&self, k: &TxnKey) -> bool {
        self.retrans.contains_key(k)
    }

    /// Gives back the memory of a burst of transactions (see `compact.rs`).
    pub fn compact(&mut self) {
        compact::map(&mut self.absorb);
        compact::deque(&mut self.absorb_order);
        compact::map(&mut self.retrans);
    }

    pub fn next_deadline(&self) -> Option<u64> {
        let a = self.absorb_order.front().map(|(t, _)| *t);
        let r = self.due.first().map(|(t, _)| *t);
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
        while self.due.first().is_some_and(|(t, _)| *t <= now_ms) {
            let Some((_, k)) = self.due.pop_first() else {
                break;
            };
            let Some(r) = self.retrans.get_mut(&k) else {
                continue;
            };
            if r.deadline <= now_ms {
                if let Some(r) = self.retrans.remove(&k) {
                    dead.push(r.owner);
                }
                continue;
            }
            if r.next_at.is_some_and(|at| at <= now_ms) {
                out.push_back(Output::Transmit {
                    to: r.to,
                    data: r.data.clone(),
                });
                r.interval = (r.interval * 2).min(r.cap);
                r.next_at = Some(now_ms + r.interval);
            }
            self.due.insert((r.wake(), k));
        }
        dead
    }

    /// Entries retransmitted or waiting for their deadline (tests, metrics).
    pub fn pending(&self) -> usize {
        self.retrans.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::{Transport, UDP_FLOW};

    fn udp() -> Source {
        Source {
            flow: UDP_FLOW,
            transport: Transport::Udp,
            peer: std::net::SocketAddr::from(([127, 0, 0, 1], 5070)),
        }
    }

    #[test]
    fn retransmits_on_schedule_then_times_out_and_stops_cleanly() {
        let mut t = Txns::default();
        let mut out = Outbox::new();
        t.start(
            0,
            TxnKey::Client("a".into()),
            udp(),
            b"A".to_vec(),
            false,
            Owner::None,
        );
        t.start(
            0,
            TxnKey::Client("b".into()),
            udp(),
            b"B".to_vec(),
            true,
            Owner::Stray,
        );
        assert_eq!(t.next_deadline(), Some(T1));
        // "a" answered: never retransmitted again.
        assert!(t.stop(&TxnKey::Client("a".into())).is_some());
        let mut sent_at = Vec::new();
        let mut now = 0;
        let mut dead = Vec::new();
        while now <= TIMEOUT {
            now = t.next_deadline().unwrap_or(u64::MAX);
            if now == u64::MAX {
                break;
            }
            let before = out.len();
            dead.extend(t.poll(now, &mut out));
            if out.len() > before {
                sent_at.push(now);
            }
        }
        // INVITE-style doubling without a cap: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s.
        assert_eq!(sent_at, [500, 1_500, 3_500, 7_500, 15_500, 31_500]);
        assert_eq!(dead, [Owner::Stray]);
        assert_eq!(t.pending(), 0);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn quiet_stops_retransmissions_and_the_deadline() {
        let mut t = Txns::default();
        let mut out = Outbox::new();
        let k = TxnKey::Client("q".into());
        t.start(0, k.clone(), udp(), b"Q".to_vec(), true, Owner::None);
        t.quiet(&k);
        assert_eq!(t.next_deadline(), None);
        assert!(t.poll(TIMEOUT * 2, &mut out).is_empty());
        assert!(out.is_empty());
        assert_eq!(t.pending(), 1);
    }
}
