//! Counts the UDP packets two clients' RTP ports send and receive on the
//! loopback interface: straight to each other (media not anchored), or to
//! and from the server's media ports (anchored, the default).
//!
//! dumpcap (Debian package tshark; it needs CAP_NET_RAW, which root has)
//! writes pcap to a pipe and flushes every packet, so killing it at the
//! end loses nothing; this module reads the pcap stream itself.

use std::io::Read;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Transcript;
use crate::support::Reaped;

#[derive(Clone, Debug)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

pub struct Capture {
    packets: Arc<Mutex<Vec<Packet>>>,
    stderr: Transcript,
    _proc: Reaped,
}

impl Capture {
    /// Starts capturing UDP to or from ports of `a` or of `b` (either
    /// direction); returns once dumpcap is capturing.
    pub fn start(a: &RangeInclusive<u16>, b: &RangeInclusive<u16>) -> Capture {
        let (a, b) = (
            format!("{}-{}", a.start(), a.end()),
            format!("{}-{}", b.start(), b.end()),
        );
        let filter = format!("udp and (portrange {a} or portrange {b})");
        let mut cmd = Command::new("dumpcap");
        cmd.args(["-i", "lo", "-f", &filter, "-w", "-", "-P", "-q"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut proc = Reaped::spawn("dumpcap (Debian package tshark)", &mut cmd);
        let stderr = Transcript::default();
        stderr.follow(proc.child.stderr.take().expect("stderr is piped"));
        let stdout = proc.child.stdout.take().expect("stdout is piped");
        let packets = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let sink = packets.clone();
        std::thread::spawn(move || read_pcap(stdout, ready_tx, sink));
        match ready_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("dumpcap: {e}; it said: {}", stderr.tail(2000)),
            Err(_) => panic!(
                "dumpcap did not start capturing on lo within 20 s (it needs CAP_NET_RAW); it said: {}",
                stderr.tail(2000)
            ),
        }
        Capture {
            packets,
            stderr,
            _proc: proc,
        }
    }

    /// Packets from a port in `from` to a port in `to`.
    pub fn count(&self, from: &RangeInclusive<u16>, to: &RangeInclusive<u16>) -> usize {
        self.count_where(|p| from.contains(&p.sport) && to.contains(&p.dport))
    }

    pub fn count_where(&self, keep: impl Fn(&Packet) -> bool) -> usize {
        self.packets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|p| keep(p))
            .count()
    }

    /// Packet counts per (source, destination) address, for failure messages.
    pub fn summary(&self) -> String {
        let mut flows: Vec<(String, usize)> = Vec::new();
        for p in self
            .packets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let key = format!("{}:{} -> {}:{}", p.src, p.sport, p.dst, p.dport);
            match flows.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => *n += 1,
                None => flows.push((key, 1)),
            }
        }
        let lines: Vec<String> = flows.iter().map(|(k, n)| format!("{n} x {k}")).collect();
        format!(
            "captured: [{}]; dumpcap said: {}",
            lines.join(", "),
            self.stderr.tail(500)
        )
    }
}

/// Reads a pcap stream: the global header (then `ready` is told), then
/// records until the stream ends.
fn read_pcap(
    mut r: impl Read,
    ready: mpsc::Sender<Result<(), String>>,
    sink: Arc<Mutex<Vec<Packet>>>,
) {
    let mut head = [0u8; 24];
    if let Err(e) = r.read_exact(&mut head) {
        let _ = ready.send(Err(format!("no pcap header ({e})")));
        return;
    }
    let le = match head[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => {
            let _ = ready.send(Err("not a pcap stream".into()));
            return;
        }
    };
    let u32_at = |b: &[u8], i: usize| {
        let w = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    let linktype = u32_at(&head, 20);
    let _ = ready.send(Ok(()));
    let mut rec = [0u8; 16];
    while r.read_exact(&mut rec).is_ok() {
        let len = u32_at(&rec, 8) as usize;
        let mut data = vec![0u8; len];
        if r.read_exact(&mut data).is_err() {
            break;
        }
        if let Some(p) = parse_frame(linktype, &data) {
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(p);
        }
    }
}

/// The UDP ports and IP addresses of one captured frame.
fn parse_frame(linktype: u32, f: &[u8]) -> Option<Packet> {
    let be16 = |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*f.get(i)?, *f.get(i + 1)?])) };
    // Where the IP header starts and which protocol it is.
    let (ip, ethertype) = match linktype {
        1 => (14, be16(12)?),   // Ethernet (Linux lo)
        113 => (16, be16(14)?), // Linux cooked capture
        276 => (20, be16(0)?),  // Linux cooked capture v2
        _ => return None,
    };
    let (udp, src, dst) = match ethertype {
        0x0800 => {
            let ihl = (*f.get(ip)? as usize & 0x0f) * 4;
            if *f.get(ip + 9)? != 17 {
                return None;
            }
            let a = |i: usize| -> Option<IpAddr> {
                let b: [u8; 4] = f.get(i..i + 4)?.try_into().ok()?;
                Some(IpAddr::from(b))
            };
            (ip + ihl, a(ip + 12)?, a(ip + 16)?)
        }
        0x86dd => {
            if *f.get(ip + 6)? != 17 {
                return None; // extension headers are not expected on lo
            }
            let a = |i: usize| -> Option<IpAddr> {
                let b: [u8; 16] = f.get(i..i + 16)?.try_into().ok()?;
                Some(IpAddr::from(b))
            };
            (ip + 40, a(ip + 8)?, a(ip + 24)?)
        }
        _ => return None,
    };
    Some(Packet {
        src,
        dst,
        sport: be16(udp)?,
        dport: be16(udp + 2)?,
    })
}
