//! What a call (or the endpoint) needs from the rest of the core while it
//! handles one input: the time, the configuration, the output queue, the
//! transaction timers and the token generator. Borrowed per input, so a
//! call owns no shared state and never sees another call.

use super::media::MediaPlane;
use super::msg::Msg;
use super::rng::Rng;
use super::txn::Txns;
use super::types::{CoreConfig, Outbox, Output, Source, Transport};
use domain::call_events::{CallEvent, CallEventKind};

pub struct Ctx<'a> {
    pub now_ms: u64,
    pub cfg: &'a CoreConfig,
    pub out: &'a mut Outbox,
    pub txn: &'a mut Txns,
    pub rng: &'a mut Rng,
    pub media: &'a mut dyn MediaPlane,
    /// Trunks, channels in use and outbound counts per caller.
    pub outbound: &'a mut super::outbound::Outbound,
}

impl Ctx<'_> {
    pub fn send(&mut self, to: Source, m: &Msg) {
        self.out.push_back(Output::Transmit {
            to,
            data: m.to_bytes(),
        });
    }

    pub fn send_bytes(&mut self, to: Source, data: Vec<u8>) {
        self.out.push_back(Output::Transmit { to, data });
    }

    pub fn token(&mut self) -> String {
        self.rng.token()
    }

    pub fn event(&mut self, call_id: &str, at_ms: u64, kind: CallEventKind) {
        self.out.push_back(Output::Call(CallEvent {
            call_id: call_id.to_string(),
            at_ms,
            kind,
        }));
    }

    /// Sends a response to a non-INVITE request and, over UDP, remembers it
    /// so a retransmitted request is answered without being processed again.
    pub fn reply(&mut self, src: Source, req: &Msg, r: Msg) {
        let bytes = r.to_bytes();
        // REGISTER is idempotent and its digest check recognises its own
        // retransmissions, so its answers are not cached: at thousands of
        // REGISTER/s that cache would cost more memory than the bindings.
        if !src.transport.reliable()
            && r.code().unwrap_or(0) >= 200
            && req.method() != Some("REGISTER")
        {
            self.txn.remember(self.now_ms, req, src, bytes.clone());
        }
        self.send_bytes(src, bytes);
    }

    /// host:port we are reachable at over `t`.
    pub fn host_for(&self, t: Transport) -> &str {
        match (t, &self.cfg.tls_host) {
            (Transport::Tls, Some(h)) => h,
            _ => &self.cfg.local_host,
        }
    }

    /// Our Contact for a leg over `t` (never 0.0.0.0: see `advertised_host`).
    pub fn our_contact(&self, t: Transport) -> String {
        match t {
            Transport::Udp => format!("<sip:centralita@{}>", self.host_for(t)),
            _ => format!(
                "<sip:centralita@{};transport={}>",
                self.host_for(t),
                t.as_str()
            ),
        }
    }
}
