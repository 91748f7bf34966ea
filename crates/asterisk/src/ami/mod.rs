//! The Asterisk Manager Interface, sans-IO: framing ([`frame`]), the
//! session state machine ([`session`]), AMI events turned into call events
//! ([`calls`]) and registration state ([`registrations`]).
//!
//! Nothing here does IO or reads a clock: bytes and time come in as
//! arguments, and what to send, when to wake up and what happened come
//! out. The tokio client in [`crate::shell`] drives it.

pub mod calls;
pub mod frame;
pub mod registrations;
pub mod session;

pub use frame::{Action, Frame, FrameError, FrameParser, Message};
pub use session::{ActionError, AuthMode, Config, DownReason, Output, Response, Session, Token};
