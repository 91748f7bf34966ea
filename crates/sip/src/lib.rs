//! centralita SIP: registrar, digest authentication and B2BUA.
//!
//! `core` is sans-IO (no sockets, no clock); `shell` runs it on tokio.
//! The HTTP layer reaches SIP only through [`SipServer::attach_websocket`]
//! (RFC 7118 SIP over WebSocket on the HTTP port) and the read-only views
//! below.

use std::net::SocketAddr;
use tokio::sync::mpsc;

/// A source address refused after repeated failed authentications.
#[derive(Debug, Clone)]
pub struct BlockedSource {
    pub ip: std::net::IpAddr,
    pub failures: u32,
    pub blocked_until_unix: i64,
}

/// Cheap-to-clone handle on the running SIP server.
#[derive(Clone)]
pub struct SipServer {
    _private: (),
}

impl SipServer {
    /// Hands one upgraded WebSocket connection (subprotocol `sip`) to the SIP
    /// server. The caller forwards every frame the client sends into the
    /// returned sender and writes every message from the returned receiver
    /// back to the client as a text frame. Dropping the sender closes the flow;
    /// the receiver ends when the server closes it.
    pub fn attach_websocket(
        &self,
        peer: SocketAddr,
        secure: bool,
    ) -> (mpsc::Sender<Vec<u8>>, mpsc::Receiver<Vec<u8>>) {
        let _ = (peer, secure);
        let (tx, _rx) = mpsc::channel(1);
        let (_tx2, rx2) = mpsc::channel(1);
        (tx, rx2)
    }

    /// Sources currently refused by the SIP edge (for admins).
    pub fn blocked_sources(&self) -> Vec<BlockedSource> {
        Vec::new()
    }
}
