//! Batched UDP for the media thread: `recvmmsg` takes every datagram queued
//! on a socket (up to [`BATCH`]) in one system call; `sendmmsg` sends what a
//! batch produced for one socket in one more.
//!
//! With a few thousand calls, packets arrive spread over time, so a socket
//! usually holds one datagram when epoll reports it: then these cost what
//! `recvfrom`/`sendto` cost. The gain comes when several are queued (a
//! stalled thread catching up, high per-call rates). A batch of one is sent
//! with `sendto` itself, the cheaper call for a single datagram.

use nix::sys::socket::{
    recvmmsg, sendmmsg, sendto, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
};
use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// Datagrams per system call. Each call to `recvmmsg` prepares this many
/// headers, and a socket of one call rarely holds more than one or two
/// datagrams (50 packets/s per leg), so a small batch is cheaper on the
/// common path; after a stall, level-triggered epoll brings us back.
pub const BATCH: usize = 8;
/// Receive buffer per datagram: RTP on a plain leg never comes near it;
/// anything longer arrives truncated and fails to parse.
const MAX_DATAGRAM: usize = 2048;

/// Receive buffers and headers, allocated once per media thread.
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    headers: MultiHeaders<SockaddrStorage>,
    got: Vec<(usize, Option<SocketAddr>)>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch::new()
    }
}

impl RecvBatch {
    pub fn new() -> Self {
        RecvBatch {
            bufs: (0..BATCH).map(|_| vec![0u8; MAX_DATAGRAM]).collect(),
            headers: MultiHeaders::preallocate(BATCH, None),
            got: Vec::with_capacity(BATCH),
        }
    }

    /// Takes what is queued on `fd` without waiting; `Ok(0)` when nothing.
    pub fn recv(&mut self, fd: RawFd) -> std::io::Result<usize> {
        let RecvBatch { bufs, headers, got } = self;
        got.clear();
        let mut slices: [[IoSliceMut<'_>; 1]; BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(&mut [])]);
        for (slot, buf) in slices.iter_mut().zip(bufs.iter_mut()) {
            slot[0] = IoSliceMut::new(buf.as_mut_slice());
        }
        match recvmmsg(fd, headers, slices.iter_mut(), MsgFlags::MSG_DONTWAIT, None) {
            Ok(res) => {
                for m in res {
                    got.push((m.bytes, m.address.as_ref().and_then(to_socket_addr)));
                }
                Ok(got.len())
            }
            Err(nix::errno::Errno::EAGAIN) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// The datagrams of the last `recv`: (payload, sender).
    pub fn datagrams(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> + '_ {
        self.got
            .iter()
            .zip(&self.bufs)
            .filter_map(|((n, from), buf)| Some((&buf[..(*n).min(buf.len())], (*from)?)))
    }
}

fn to_socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// Outgoing datagrams for one socket, sent together.
pub struct SendBatch {
    bufs: Vec<Vec<u8>>,
    addrs: Vec<Option<SockaddrStorage>>,
    len: usize,
    headers: MultiHeaders<SockaddrStorage>,
}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch::new()
    }
}

/// What one flush did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub sent: usize,
    /// Not taken by the kernel (full send buffer, refused address): media
    /// that late is useless, so it is counted and dropped, never queued.
    pub dropped: usize,
}

impl SendBatch {
    pub fn new() -> Self {
        SendBatch {
            bufs: (0..BATCH)
                .map(|_| Vec::with_capacity(MAX_DATAGRAM))
                .collect(),
            addrs: Vec::with_capacity(BATCH),
            len: 0,
            headers: MultiHeaders::preallocate(BATCH, None),
        }
    }

    pub fn is_full(&self) -> bool {
        self.len == BATCH
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a datagram to `to`, written by `write` into a reused buffer.
    /// The caller flushes first when [`SendBatch::is_full`].
    pub fn push(&mut self, to: SocketAddr, write: impl FnOnce(&mut Vec<u8>)) {
        if self.len == BATCH {
            return;
        }
        write(&mut self.bufs[self.len]);
        self.addrs.push(Some(SockaddrStorage::from(to)));
        self.len += 1;
    }

    /// Sends everything queued from `fd`.
    pub fn flush(&mut self, fd: RawFd) -> Sent {
        let SendBatch {
            bufs,
            addrs,
            len,
            headers,
        } = self;
        let mut sent = Sent::default();
        let mut start = 0;
        while start < *len {
            if *len - start == 1 {
                // One datagram, the usual case at 50 packets/s per leg:
                // `sendto` is the kernel's shorter path (no message header
                // and iovec to copy in, no count to copy out).
                let r = match &addrs[start] {
                    Some(to) => sendto(fd, &bufs[start], to, MsgFlags::MSG_DONTWAIT),
                    None => Err(nix::errno::Errno::EDESTADDRREQ),
                };
                match r {
                    Ok(_) => {
                        sent.sent += 1;
                        start += 1;
                    }
                    Err(nix::errno::Errno::EAGAIN) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "RTP send failed");
                        sent.dropped += 1;
                        start += 1;
                    }
                }
                continue;
            }
            let mut slices: [[IoSlice<'_>; 1]; BATCH] =
                std::array::from_fn(|_| [IoSlice::new(&[])]);
            for (slot, b) in slices.iter_mut().zip(&bufs[start..*len]) {
                slot[0] = IoSlice::new(b);
            }
            let none: [ControlMessage<'_>; 0] = [];
            let r = sendmmsg(
                fd,
                headers,
                &slices[..*len - start],
                &addrs[start..*len],
                none,
                MsgFlags::MSG_DONTWAIT,
            )
            .map(|res| res.count());
            match r {
                Ok(n) if n > 0 => {
                    sent.sent += n;
                    start += n;
                }
                Ok(_) | Err(nix::errno::Errno::EAGAIN) => break,
                Err(e) => {
                    // The first datagram failed (e.g. an address the kernel
                    // refuses); skip it, keep the rest.
                    tracing::debug!(error = %e, "RTP send failed");
                    sent.dropped += 1;
                    start += 1;
                }
            }
        }
        sent.dropped += *len - start;
        *len = 0;
        addrs.clear();
        sent
    }
}
