//! Routing datagrams on a UDP port shared by many WebRTC legs.
//!
//! A browser's first datagram is a STUN binding request whose USERNAME is
//! `<our ufrag>:<its ufrag>` (RFC 8445 §7.2.2), so the local ufrag names the
//! leg. Once a leg has answered an address (its ICE agent only answers checks
//! whose MESSAGE-INTEGRITY verified), DTLS, SRTP and SRTCP from that address
//! are routed by source address. Both are hash maps: cost per packet does not
//! grow with the number of calls (str0m's chat example scans every client).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;

/// What a datagram on a WebRTC port is, by its first byte (RFC 7983).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramKind {
    Stun,
    Dtls,
    /// RTP or RTCP (SRTP / SRTCP once keyed).
    Rtp,
    Unknown,
}

const STUN_MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const STUN_HEADER_LEN: usize = 20;
const STUN_ATTR_USERNAME: u16 = 0x0006;

pub fn classify(datagram: &[u8]) -> DatagramKind {
    match datagram.first() {
        Some(0..=3) if is_stun(datagram) => DatagramKind::Stun,
        Some(20..=63) => DatagramKind::Dtls,
        Some(128..=191) => DatagramKind::Rtp,
        _ => DatagramKind::Unknown,
    }
}

fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= STUN_HEADER_LEN
        && datagram[0] & 0xc0 == 0
        && datagram[4..8] == STUN_MAGIC_COOKIE
        && usize::from(u16::from_be_bytes([datagram[2], datagram[3]])) % 4 == 0
}

/// The local (our) ICE username fragment of a STUN message, if the datagram
/// is STUN and carries a USERNAME attribute of the form `local:remote`.
///
/// Bounds-checked on every step: the input comes straight from the network.
pub fn stun_local_ufrag(datagram: &[u8]) -> Option<&str> {
    if !is_stun(datagram) {
        return None;
    }
    let body_len = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let body = datagram.get(STUN_HEADER_LEN..STUN_HEADER_LEN.checked_add(body_len)?)?;
    let mut rest = body;
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let value = rest.get(4..4 + len)?;
        if kind == STUN_ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            let (local, _remote) = username.split_once(':')?;
            return (!local.is_empty()).then_some(local);
        }
        let padded = (4 + len).checked_next_multiple_of(4)?;
        rest = rest.get(padded..)?;
    }
    None
}

/// Maps from ICE ufrag and from source address to a leg key (a call id, a
/// slab index...). The shell owns one per shared port.
#[derive(Debug)]
pub struct WebRtcDemux<K> {
    by_ufrag: HashMap<String, K>,
    by_addr: HashMap<SocketAddr, K>,
    /// Reverse index so that removing a leg does not scan the address map.
    addrs_of: HashMap<K, Vec<SocketAddr>>,
    ufrag_of: HashMap<K, String>,
}

impl<K> Default for WebRtcDemux<K> {
    fn default() -> Self {
        WebRtcDemux {
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            addrs_of: HashMap::new(),
            ufrag_of: HashMap::new(),
        }
    }
}

impl<K: Clone + Eq + Hash> WebRtcDemux<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a leg under its local ufrag (`WebRtcLeg::local_ufrag`). Returns
    /// false, registering nothing, if another leg already holds that ufrag.
    pub fn insert(&mut self, key: K, local_ufrag: &str) -> bool {
        if let Some(holder) = self.by_ufrag.get(local_ufrag) {
            return *holder == key;
        }
        if let Some(old) = self.ufrag_of.insert(key.clone(), local_ufrag.to_owned()) {
            // A re-keyed leg (ICE restart): its old ufrag no longer routes.
            self.by_ufrag.remove(&old);
        }
        self.by_ufrag.insert(local_ufrag.to_owned(), key);
        true
    }

    /// Remember that `addr` belongs to the leg `key`. Call it with the
    /// destination of each datagram the leg transmits: str0m only answers (and
    /// sends to) addresses whose checks passed its integrity verification, so
    /// a spoofed STUN with a guessed ufrag cannot capture an address.
    pub fn learn(&mut self, addr: SocketAddr, key: &K) {
        match self.by_addr.get(&addr) {
            Some(current) if current == key => return,
            Some(previous) => {
                // The address moved to another leg (a port reused by a new
                // browser session): drop it from the old leg's list.
                let previous = previous.clone();
                if let Some(list) = self.addrs_of.get_mut(&previous) {
                    list.retain(|a| *a != addr);
                }
            }
            None => {}
        }
        self.by_addr.insert(addr, key.clone());
        self.addrs_of.entry(key.clone()).or_default().push(addr);
    }

    /// The leg a datagram from `from` belongs to: by source address first
    /// (every packet after the first check), else by the STUN ufrag.
    pub fn route(&self, from: SocketAddr, datagram: &[u8]) -> Option<&K> {
        if let Some(key) = self.by_addr.get(&from) {
            return Some(key);
        }
        stun_local_ufrag(datagram).and_then(|ufrag| self.by_ufrag.get(ufrag))
    }

    pub fn remove(&mut self, key: &K) {
        if let Some(ufrag) = self.ufrag_of.remove(key) {
            self.by_ufrag.remove(&ufrag);
        }
        for addr in self.addrs_of.remove(key).unwrap_or_default() {
            self.by_addr.remove(&addr);
        }
    }

    pub fn len(&self) -> usize {
        self.ufrag_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ufrag_of.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&STUN_ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        // A PRIORITY attribute after USERNAME, as browsers send.
        attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        msg.extend_from_slice(&STUN_MAGIC_COOKIE);
        msg.extend_from_slice(&[7; 12]);
        msg.extend_from_slice(&attrs);
        msg
    }

    #[test]
    fn extracts_local_ufrag_from_binding_request() {
        let msg = binding_request("srvA:brw1");
        assert_eq!(classify(&msg), DatagramKind::Stun);
        assert_eq!(stun_local_ufrag(&msg), Some("srvA"));
    }

    #[test]
    fn truncated_or_odd_stun_yields_none() {
        let msg = binding_request("srvA:brw1");
        for cut in 0..msg.len() {
            // Shorter buffers with the original length field must not panic.
            let _ = stun_local_ufrag(&msg[..cut]);
        }
        assert_eq!(stun_local_ufrag(&binding_request("nocolon")), None);
        assert_eq!(stun_local_ufrag(&binding_request(":remote")), None);
        assert_eq!(classify(&[0x80, 0, 0, 0]), DatagramKind::Rtp);
        assert_eq!(classify(&[22, 254, 253]), DatagramKind::Dtls);
        assert_eq!(classify(&[]), DatagramKind::Unknown);
    }

    #[test]
    fn routes_by_ufrag_then_by_address() {
        let mut demux = WebRtcDemux::new();
        assert!(demux.insert(1u32, "aaaa"));
        assert!(demux.insert(2u32, "bbbb"));
        assert!(!demux.insert(3u32, "aaaa"), "duplicate ufrag refused");
        let from: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        assert_eq!(demux.route(from, &binding_request("bbbb:x")), Some(&2));
        assert_eq!(demux.route(from, &[0x80, 0, 0, 0]), None);
        demux.learn(from, &2);
        assert_eq!(demux.route(from, &[0x80, 0, 0, 0]), Some(&2));
        demux.remove(&2);
        assert_eq!(demux.route(from, &[0x80, 0, 0, 0]), None);
        assert_eq!(demux.route(from, &binding_request("bbbb:x")), None);
        assert_eq!(demux.len(), 1);
    }
}
