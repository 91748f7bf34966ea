//! Reaching a TCP or TLS contact that has no connection of its own: a
//! binding restored after a restart (the phone's connection died with the
//! old process). The core only says "send to this contact" (a [`Source`]
//! with flow [`UDP_FLOW`] and a stream transport, see
//! `registrar::location::Binding::reachable`); here we open a connection
//! to it — TCP, then the TLS handshake for a TLS contact — and run it like
//! an accepted one: the phone's answers and requests come back on it, and
//! it lives in the connection table under the same limits (counted as
//! authenticated: we connect only to a contact that registered with valid
//! credentials, at the address it registered from). Messages sent while
//! it is being opened queue on its flow. When it cannot be opened, or
//! closes, the core is told the contact is lost (`Core::handle_contact_lost`),
//! so a call to it fails at once instead of ringing into the void.
//!
//! TCP and TLS trunks go the same way: the core sends REGISTERs and calls
//! to the registrar's or carrier's address with flow [`UDP_FLOW`], and the
//! connection opened here carries the carrier's answers and requests back.
//! A TLS trunk's connection is opened for the trunk's configured host (SNI,
//! and the name its certificate must carry under `ca`; see `tls_client.rs`).

use super::{now_ms, stream_flow, tls_client, Shared};
use crate::core::{Source, Transport, UDP_FLOW};
use std::sync::Arc;
use std::time::Duration;

/// How long connecting to a phone's contact may take, TLS handshake
/// included: a phone that is gone without a trace (no RST) fails the call
/// after this long.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection to a contact could not be opened.
#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error("connecting timed out")]
    Timeout,
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
}

impl Shared {
    /// Sends `data` to `to` (flow [`UDP_FLOW`], TCP or TLS) over the
    /// connection we opened to it, opening one if there is none.
    pub(super) fn send_to_contact(self: &Arc<Self>, to: Source, data: Vec<u8>) {
        debug_assert!(to.flow == UDP_FLOW && to.transport.reliable());
        if !matches!(to.transport, Transport::Tcp | Transport::Tls) {
            // WebSocket flows are never opened from our side (the core
            // does not route to them without their flow either).
            tracing::debug!(peer = %to.peer, "no flow to a WebSocket contact; dropping message");
            return;
        }
        // Looked up and claimed under one lock: two messages to the same
        // contact from two threads must not open two connections.
        let flow = {
            let mut dialed = self.dialed.lock();
            match dialed.get(&to) {
                Some(&flow) => Ok(flow),
                None => match self.admit(to.peer.ip(), true) {
                    Ok(ticket) => {
                        let rx = self.open_flow(ticket.id);
                        dialed.insert(to, ticket.id);
                        Err(Some((ticket, rx)))
                    }
                    Err(_) => Err(None),
                },
            }
        };
        match flow {
            Ok(flow) => self.send_on_flow(flow, data),
            Err(Some((ticket, rx))) => {
                let id = ticket.id;
                self.send_on_flow(id, data);
                let me = self.clone();
                self.main.spawn(async move {
                    match me.connect(to).await {
                        Ok(stream) => match stream {
                            Stream::Tcp(s) => {
                                stream_flow(me, s, to.peer, Transport::Tcp, ticket, rx).await
                            }
                            Stream::Tls(s) => {
                                stream_flow(me, *s, to.peer, Transport::Tls, ticket, rx).await
                            }
                        },
                        Err(e) => {
                            tracing::info!(peer = %to.peer, transport = to.transport.as_str(), error = %e, "cannot open a connection to a contact or trunk");
                            drop(rx);
                            me.close_flow(id);
                        }
                    }
                });
            }
            Err(None) => {
                // The connection caps refused it (logged by the table).
                let me = self.clone();
                self.main
                    .spawn(async move { me.feed(|c| c.handle_contact_lost(now_ms(), to)) });
            }
        }
    }

    /// TCP to `to.peer`, then the TLS handshake for a TLS contact, within
    /// [`DIAL_TIMEOUT`].
    async fn connect(&self, to: Source) -> Result<Stream, DialError> {
        let open = async {
            let tcp = tokio::net::TcpStream::connect(to.peer)
                .await
                .map_err(DialError::Connect)?;
            let _ = tcp.set_nodelay(true);
            if to.transport != Transport::Tls {
                return Ok(Stream::Tcp(tcp));
            }
            // A TLS trunk's carrier is connected to for its configured
            // name; a phone for its address (see `tls_client.rs`).
            let trunk = self.trunk_names.lock().name_of(to.peer);
            let (connector, name) = match trunk {
                Some(host) => match tls_client::trunk_server_name(&host) {
                    Some(name) => (&self.tls_trunk, name),
                    None => {
                        return Err(DialError::Handshake(std::io::Error::other(format!(
                            "{host:?} is not a name a certificate can carry"
                        ))))
                    }
                },
                None => (&self.tls_dial, tls_client::server_name(to.peer.ip())),
            };
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(DialError::Handshake)?;
            Ok(Stream::Tls(Box::new(tls)))
        };
        tokio::time::timeout(DIAL_TIMEOUT, open)
            .await
            .map_err(|_| DialError::Timeout)?
    }

    /// Connection `id` closed: the contact it was opened to, if it was one
    /// of ours.
    pub(super) fn forget_dialed(&self, id: u64) -> Option<Source> {
        let mut dialed = self.dialed.lock();
        let to = dialed.iter().find(|(_, &f)| f == id).map(|(to, _)| *to)?;
        dialed.remove(&to);
        Some(to)
    }
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}
