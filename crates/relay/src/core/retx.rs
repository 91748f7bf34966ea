//! Retransmission toward a UDP PBX (sans-IO, time passed in).
//!
//! Browsers send over a reliable WebSocket and never retransmit, so over an
//! unreliable upstream the relay does it for them, the way RFC 3261 §17.1
//! clients do: from T1 (500 ms) doubling, capped at T2 (4 s) for requests
//! other than INVITE, until an answer comes (any answer for an INVITE, a
//! final one for the others; a provisional one moves a non-INVITE to T2)
//! or 32 s (64·T1) have passed. ACKs are never retransmitted (a 2xx
//! retransmitted by the far end brings the browser's ACK again).

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub const T1: Duration = Duration::from_millis(500);
pub const T2: Duration = Duration::from_secs(4);
/// How long a request is retransmitted without an answer (64·T1).
pub const GIVE_UP: Duration = Duration::from_secs(32);

#[derive(Debug)]
struct Pending {
    bytes: Vec<u8>,
    invite: bool,
    interval: Duration,
    next: Instant,
    give_up: Instant,
}

/// Requests sent upstream and not answered yet, by branch and method (a
/// CANCEL has its INVITE's branch).
#[derive(Debug, Default)]
pub struct Retransmits {
    pending: HashMap<(String, String), Pending>,
}

impl Retransmits {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// `bytes` (a request with top Via branch `branch`) was just sent.
    pub fn sent(&mut self, branch: &str, method: &str, bytes: Vec<u8>, now: Instant) {
        if method == "ACK" {
            return;
        }
        self.pending.insert(
            (branch.to_string(), method.to_string()),
            Pending {
                bytes,
                invite: method == "INVITE",
                interval: T1,
                next: now + T1,
                give_up: now + GIVE_UP,
            },
        );
    }

    /// A response with top Via branch `branch` and CSeq method `method`
    /// came from the PBX.
    pub fn answered(&mut self, branch: &str, method: &str, code: u16) {
        let key = (branch.to_string(), method.to_string());
        let Some(p) = self.pending.get_mut(&key) else {
            return;
        };
        if p.invite || code >= 200 {
            self.pending.remove(&key);
        } else {
            p.interval = T2;
        }
    }

    /// What to send again now.
    pub fn due(&mut self, now: Instant) -> Vec<Vec<u8>> {
        self.pending.retain(|_, p| now < p.give_up);
        let mut out = Vec::new();
        for p in self.pending.values_mut() {
            if p.next <= now {
                out.push(p.bytes.clone());
                p.interval = if p.invite {
                    p.interval * 2
                } else {
                    (p.interval * 2).min(T2)
                };
                p.next = now + p.interval;
            }
        }
        out
    }

    /// When [`Self::due`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.next.min(p.give_up)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_invite_backs_off_to_t2_and_stops_on_a_final_answer() {
        let t0 = Instant::now();
        let mut r = Retransmits::new();
        r.sent("b1", "REGISTER", b"REG".to_vec(), t0);
        assert!(r.due(t0 + Duration::from_millis(499)).is_empty());
        assert_eq!(r.due(t0 + T1), [b"REG".to_vec()]);
        // 1 s, 2 s, 4 s, then 4 s: at 1.5, 3.5, 7.5, 11.5 s after the start.
        let at = |ms| t0 + Duration::from_millis(ms);
        assert!(r.due(at(1_499)).is_empty());
        assert_eq!(r.due(at(1_500)).len(), 1);
        assert_eq!(r.due(at(3_500)).len(), 1);
        assert_eq!(r.due(at(7_500)).len(), 1);
        assert!(r.due(at(11_499)).is_empty());
        assert_eq!(r.due(at(11_500)).len(), 1);
        // A provisional answer is not the end; the final one is.
        r.answered("b1", "REGISTER", 100);
        assert_eq!(r.len(), 1);
        r.answered("b1", "REGISTER", 401);
        assert!(r.is_empty());
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn invite_stops_on_any_answer_and_cancel_is_its_own() {
        let t0 = Instant::now();
        let mut r = Retransmits::new();
        r.sent("b2", "INVITE", b"INV".to_vec(), t0);
        r.sent("b2", "CANCEL", b"CAN".to_vec(), t0);
        r.sent("b3", "ACK", b"ACK".to_vec(), t0);
        assert_eq!(r.len(), 2, "ACKs are not retransmitted");
        r.answered("b2", "CANCEL", 200);
        assert_eq!(r.due(t0 + T1), [b"INV".to_vec()]);
        r.answered("b2", "INVITE", 100);
        assert!(r.is_empty());
    }

    #[test]
    fn unanswered_requests_are_given_up_after_32_s() {
        let t0 = Instant::now();
        let mut r = Retransmits::new();
        r.sent("b4", "OPTIONS", b"OPT".to_vec(), t0);
        let mut sent = 0;
        let mut now = t0;
        while let Some(next) = r.next_deadline() {
            now = next;
            sent += r.due(now).len();
            assert!(sent < 20, "bounded");
        }
        assert!(now >= t0 + GIVE_UP);
        // 0.5, 1.5, 3.5, 7.5, then every 4 s until 32 s: 10 resends.
        assert_eq!(sent, 10);
    }
}
