//! Sans-IO SIP core: digest authentication, registrar, B2BUA and the
//! transaction timers.
//!
//! This module does no I/O and reads no clock. Every input carries the
//! current time in milliseconds (`now_ms`, Unix epoch, so expiry times can be
//! stored as they are); randomness comes from a seeded generator.
//!
//! Where things are:
//! - `endpoint.rs` — [`Core`]: every message enters here and is routed to
//!   the registrar, to an existing call or to a new call;
//! - `auth.rs` — which challenge a client gets and checking its answer
//!   (`digest.rs` is the mechanism, `accounts.rs` the account cache,
//!   `security.rs` the bans);
//! - `registrar/` — REGISTER policy (`mod.rs`) over the location table
//!   (`location.rs`);
//! - `call/` — one call's state machine (its legs, forks, dialogs, session
//!   timer); `calls.rs` — the table that finds a call;
//! - `outbound_reg/` — our own registrations to carriers (trunks), a
//!   client state machine the endpoint feeds responses and time to;
//! - `media.rs` — the media plane a call asks for SDP when its media is
//!   anchored, and the events it reports back;
//! - `txn.rs` — retransmissions and their deadlines; `msg.rs` — parsing,
//!   validation, building; `types.rs` — the shared vocabulary.
//!
//! Run-loop contract (what `shell` does):
//! 1. feed an input: [`Core::handle_datagram`], [`Core::handle_lookup`],
//!    [`Core::handle_flow_closed`], [`Core::invalidate_account`],
//!    [`Core::handle_timeout`], [`Core::handle_shutdown`],
//!    [`Core::set_trunk_registrations`] or [`Core::force_trunk_registration`];
//! 2. drain [`Core::poll_output`] until it returns `None`, carrying out each
//!    [`Output`] (send bytes, look an account up, persist, record a call event);
//! 3. call `handle_timeout` again no later than [`Core::poll_timeout`].

mod accounts;
mod auth;
pub mod call;
mod calls;
mod compact;
mod ctx;
pub mod digest;
mod endpoint;
pub mod inbound;
pub mod media;
pub mod msg;
pub mod outbound;
pub mod outbound_reg;
pub mod registrar;
mod rng;
pub mod security;
pub mod txn;
mod types;

pub use endpoint::{Core, OriginateError, OriginateRequest, SecurityStats};
pub use types::*;

#[cfg(test)]
mod tests;
