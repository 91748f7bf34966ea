//! UDP in batches: `recvmmsg` takes up to [`BATCH`] queued datagrams in one
//! system call and `sendmmsg` sends what one batch produced in one more.
//!
//! Why: at tens of thousands of datagrams a second the UDP thread spent
//! most of its time entering the kernel (one `recvfrom`, one `epoll_wait`
//! and one `sendto` per datagram; see `bench/REPORT.md`). Under light load a
//! batch holds one datagram and this costs what the plain calls did; under
//! heavy load the per-datagram system calls drop by up to [`BATCH`] times,
//! which is where a server at its limit gains the most.

use nix::sys::socket::{
    recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
};
use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams per system call. 32 keeps a batch's processing (the core lock
/// is held for the whole batch) well under a millisecond.
pub const BATCH: usize = 32;
/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// Buffers and headers for receiving, allocated once per UDP loop.
pub struct Receiver {
    bufs: Vec<Vec<u8>>,
    headers: MultiHeaders<SockaddrStorage>,
    /// (length, sender) of each datagram of the last batch.
    got: Vec<(usize, SocketAddr)>,
}

impl Receiver {
    pub fn new() -> Self {
        Receiver {
            bufs: (0..BATCH).map(|_| vec![0u8; MAX_DATAGRAM]).collect(),
            headers: MultiHeaders::preallocate(BATCH, None),
            got: Vec::with_capacity(BATCH),
        }
    }

    /// Takes the datagrams queued on `sock` (up to [`BATCH`]) without
    /// waiting. `Err(WouldBlock)` when none is queued (and the socket's
    /// readiness is cleared, so `readable().await` waits again).
    pub fn recv(&mut self, sock: &UdpSocket) -> std::io::Result<usize> {
        let fd = sock.as_raw_fd();
        let Receiver { bufs, headers, got } = self;
        got.clear();
        sock.try_io(Interest::READABLE, || {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = bufs
                .iter_mut()
                .map(|b| [IoSliceMut::new(b.as_mut_slice())])
                .collect();
            let res = recvmmsg(fd, headers, slices.iter_mut(), MsgFlags::MSG_DONTWAIT, None)
                .map_err(std::io::Error::from)?;
            for m in res {
                // A datagram without a usable sender address cannot be
                // answered; drop it (its slot keeps its index).
                let peer = m.address.as_ref().and_then(to_socket_addr);
                got.push((m.bytes, peer.unwrap_or(UNSPECIFIED)));
            }
            Ok(got.len())
        })
    }

    /// The datagrams of the last [`Receiver::recv`]: (payload, sender).
    pub fn datagrams(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> + '_ {
        self.got
            .iter()
            .zip(&self.bufs)
            .filter(|((_, peer), _)| *peer != UNSPECIFIED)
            .map(|((n, peer), buf)| (&buf[..(*n).min(buf.len())], *peer))
    }
}

const UNSPECIFIED: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));

fn to_socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// Sends `out` (destination, payload) on `sock`, as few system calls as it
/// takes. What the socket cannot take now is returned, to be sent by a task
/// that waits for the socket (a full send buffer must not stall the loop).
pub fn send_all(
    sock: &UdpSocket,
    mut out: Vec<(SocketAddr, Vec<u8>)>,
) -> Vec<(SocketAddr, Vec<u8>)> {
    if out.len() == 1 {
        let (to, data) = &out[0];
        return match sock.try_send_to(data, *to) {
            Ok(_) => Vec::new(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => out,
            Err(e) => {
                tracing::debug!(peer = %to, error = %e, "UDP send failed");
                Vec::new()
            }
        };
    }
    let fd = sock.as_raw_fd();
    let mut headers: MultiHeaders<SockaddrStorage> =
        MultiHeaders::preallocate(out.len().min(BATCH), None);
    let mut start = 0;
    while start < out.len() {
        let end = (start + BATCH).min(out.len());
        let chunk = &out[start..end];
        let r = sock.try_io(Interest::WRITABLE, || {
            let slices: Vec<[IoSlice<'_>; 1]> =
                chunk.iter().map(|(_, data)| [IoSlice::new(data)]).collect();
            let addrs: Vec<Option<SockaddrStorage>> = chunk
                .iter()
                .map(|(to, _)| Some(SockaddrStorage::from(*to)))
                .collect();
            let none: [ControlMessage<'_>; 0] = [];
            let res = sendmmsg(
                fd,
                &mut headers,
                &slices,
                &addrs,
                none,
                MsgFlags::MSG_DONTWAIT,
            )
            .map_err(std::io::Error::from)?;
            Ok(res.count())
        });
        match r {
            // The kernel took the first `n`; go on from there.
            Ok(n) if n > 0 => start += n,
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => {
                // The first message of the chunk failed (e.g. an address the
                // kernel refuses): skip it, keep the rest.
                tracing::debug!(peer = %chunk[0].0, error = %e, "UDP send failed");
                start += 1;
            }
        }
    }
    out.drain(..start);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_goes_out_and_comes_back_in_order() {
        let a = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let b = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let to = b.local_addr().expect("addr");
        let out: Vec<(SocketAddr, Vec<u8>)> =
            (0..50u8).map(|i| (to, vec![i; 100 + i as usize])).collect();
        a.writable().await.expect("writable");
        let left = send_all(&a, out);
        assert!(left.is_empty(), "{} not sent", left.len());

        let mut rx = Receiver::new();
        let mut seen = Vec::new();
        while seen.len() < 50 {
            b.readable().await.expect("readable");
            match rx.recv(&b) {
                Ok(n) => {
                    assert!(n <= BATCH);
                    for (data, peer) in rx.datagrams() {
                        assert_eq!(peer, a.local_addr().expect("addr"));
                        seen.push((data[0], data.len()));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("recv: {e}"),
            }
        }
        let want: Vec<(u8, usize)> = (0..50u8).map(|i| (i, 100 + i as usize)).collect();
        assert_eq!(seen, want);
    }
}
