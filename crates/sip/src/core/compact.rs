//! Giving back the memory of a burst.
//!
//! `HashMap` and `VecDeque` keep the capacity of their busiest moment:
//! `remove` and `retain` never shrink them. After a load peak the core's
//! tables (calls, transactions, nonce counts) would hold tens of MB of empty
//! slots for the life of the process. The endpoint's once-a-second sweep
//! calls these to shrink a table that is mostly empty; the thresholds keep
//! a table that is merely breathing from being rehashed every second.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Below this capacity a table is left alone: shrinking it gains little.
const SLACK: usize = 1024;

fn worth_shrinking(capacity: usize, len: usize) -> bool {
    capacity > len.saturating_mul(4).saturating_add(SLACK)
}

/// Shrinks `m` to twice its length when it is mostly empty.
pub fn map<K: Eq + Hash, V>(m: &mut HashMap<K, V>) {
    if worth_shrinking(m.capacity(), m.len()) {
        m.shrink_to(m.len().saturating_mul(2));
    }
}

/// Shrinks `d` to twice its length when it is mostly empty.
pub fn deque<T>(d: &mut VecDeque<T>) {
    if worth_shrinking(d.capacity(), d.len()) {
        d.shrink_to(d.len().saturating_mul(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drained_map_gives_its_capacity_back() {
        let mut m: HashMap<u64, [u8; 64]> = (0..100_000).map(|i| (i, [0; 64])).collect();
        m.retain(|k, _| *k < 10);
        // `capacity()` counts free slots but not tombstones, so it reads
        // lower than the allocation after removals; still far above `len`.
        assert!(worth_shrinking(m.capacity(), m.len()));
        map(&mut m);
        assert!(m.capacity() < 2 * SLACK, "capacity {}", m.capacity());
        assert_eq!(m.len(), 10);
    }

    #[test]
    fn a_busy_map_is_left_alone() {
        let mut m: HashMap<u64, u64> = (0..10_000).map(|i| (i, i)).collect();
        m.retain(|k, _| *k < 5_000);
        let before = m.capacity();
        map(&mut m);
        assert_eq!(m.capacity(), before);
    }

    #[test]
    fn a_drained_deque_gives_its_capacity_back() {
        let mut d: VecDeque<u64> = (0..50_000).collect();
        d.drain(..49_990);
        deque(&mut d);
        assert!(d.capacity() < 2 * SLACK, "capacity {}", d.capacity());
        assert_eq!(d.len(), 10);
    }
}
