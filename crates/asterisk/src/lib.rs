//! centralita's Asterisk engine (`engine = asterisk`): drives an existing
//! Asterisk 22 (Issabel, FreePBX) instead of being the PBX.
//!
//! - [`ami`]: the Asterisk Manager Interface as sans-IO state machines
//!   (framing, login, ActionID correlation, keep-alive, reconnection), and
//!   the translation of AMI events into the domain's call events and
//!   registration state;
//! - [`config`]: agents and trunks rendered as PJSIP configuration
//!   (`centralita_pjsip.conf`, `centralita_pjsip_wizard.conf`), pure
//!   functions plus an atomic writer;
//! - [`shell`]: the tokio AMI client around the core.

pub mod ami;
pub mod config;
pub mod shell;
