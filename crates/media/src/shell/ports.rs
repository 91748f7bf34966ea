//! RTP port pairs from a configured range: an even port for RTP and the
//! next odd one for RTCP (RFC 3550 §11), as plain RTP/AVP peers expect.
//!
//! Free pairs wait in a FIFO: a released pair goes to the back, so it is
//! reused as late as possible and straggling packets of the old call do not
//! land in a new one. Allocation pops from the front (O(1)); a pair some
//! other process holds is skipped and put back.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("port range {0:?} holds no even/odd pair")]
    EmptyRange(RangeInclusive<u16>),
    #[error("no free RTP port pair in the range")]
    Exhausted,
}

#[derive(Debug)]
pub struct PortAllocator {
    free: VecDeque<u16>,
    total: usize,
}

/// An RTP socket and its RTCP neighbour.
#[derive(Debug)]
pub struct PortPair {
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
    pub port: u16,
}

impl PortAllocator {
    pub fn new(range: RangeInclusive<u16>) -> Result<Self, PortError> {
        let start = u32::from(*range.start());
        let first = start + (start % 2);
        let end = u32::from(*range.end());
        let free: VecDeque<u16> = (first..end)
            .step_by(2)
            .filter_map(|p| u16::try_from(p).ok())
            .collect();
        if free.is_empty() {
            return Err(PortError::EmptyRange(range));
        }
        let total = free.len();
        Ok(PortAllocator { free, total })
    }

    /// Pairs not handed out (some may be held by other processes).
    pub fn available(&self) -> usize {
        self.free.len()
    }

    pub fn capacity(&self) -> usize {
        self.total
    }

    /// Binds the next free pair on `ip`, non-blocking.
    pub fn bind_pair(&mut self, ip: IpAddr) -> Result<PortPair, PortError> {
        for _ in 0..self.free.len() {
            let Some(port) = self.free.pop_front() else {
                break;
            };
            match bind(ip, port) {
                Some((rtp, rtcp)) => return Ok(PortPair { rtp, rtcp, port }),
                None => self.free.push_back(port),
            }
        }
        Err(PortError::Exhausted)
    }

    /// Returns `port` (the RTP port of a pair) to the pool.
    pub fn release(&mut self, port: u16) {
        self.free.push_back(port);
    }
}

fn bind(ip: IpAddr, port: u16) -> Option<(UdpSocket, UdpSocket)> {
    let rtp = UdpSocket::bind(SocketAddr::new(ip, port)).ok()?;
    let rtcp = UdpSocket::bind(SocketAddr::new(ip, port.checked_add(1)?)).ok()?;
    rtp.set_nonblocking(true).ok()?;
    rtcp.set_nonblocking(true).ok()?;
    Some((rtp, rtcp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn pairs_are_even_odd_and_reused_last() {
        let mut a = PortAllocator::new(41_001..=41_008).expect("range");
        assert_eq!(
            a.capacity(),
            3,
            "41002, 41004, 41006 (41008 has no odd neighbour)"
        );
        let p1 = a.bind_pair(LO).expect("pair");
        assert_eq!(p1.port % 2, 0);
        assert_eq!(p1.rtcp.local_addr().expect("addr").port(), p1.port + 1);
        let first = p1.port;
        drop(p1);
        a.release(first);
        let p2 = a.bind_pair(LO).expect("pair");
        assert_ne!(p2.port, first, "a released pair goes to the back");
    }

    #[test]
    fn a_busy_pair_is_skipped_and_exhaustion_is_an_error() {
        let mut a = PortAllocator::new(41_100..=41_103).expect("range");
        let squatter = UdpSocket::bind((LO, 41_101)).expect("squat");
        let p = a.bind_pair(LO).expect("the other pair");
        assert_eq!(p.port, 41_102);
        assert!(matches!(a.bind_pair(LO), Err(PortError::Exhausted)));
        drop(squatter);
        assert!(PortAllocator::new(41_201..=41_201).is_err());
    }
}
