//! Call events: what every engine (the builtin SIP B2BUA, and later the
//! Asterisk driver and the relay) reports about a call. Plain data, no IO.
//! The recorder (`crate::recorder`) turns them into the `calls` row and its
//! `call_legs`; engines never write CDR rows themselves.
//!
//! A call is identified by the engine's id for the conversation (the A-leg
//! Call-ID in the builtin engine). Leg 0 is the caller's leg; legs 1.. are
//! the destinations the engine tried (forks to an agent's contacts, later a
//! trunk or a queue member).

use crate::calls::Direction;
use serde::{Deserialize, Serialize};

/// Leg number within a call: 0 is the caller, 1.. the destinations tried.
pub type LegNo = u32;

/// One party of a call: the number as dialled or presented, and the agent
/// behind it when there is one.
// Serde: the SIP shell journals call events to a file before acting on
// them (crash recovery); the derived JSON is that file's format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    pub number: String,
    pub agent_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallEvent {
    pub call_id: String,
    /// Milliseconds since the Unix epoch, as the engine saw it.
    pub at_ms: u64,
    pub kind: CallEventKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallEventKind {
    /// The call was accepted for routing (after authentication). Leg 0 is
    /// the caller, reached over `transport`.
    Started {
        direction: Direction,
        caller: Party,
        callee: Party,
        transport: String,
    },
    /// A destination leg was created (a fork to one contact, a trunk).
    LegAdded {
        leg: LegNo,
        party: Party,
        /// `udp`, `tcp`, `tls`, `ws`, `wss`, or `trunk:<name>` later.
        transport: String,
    },
    /// A destination leg answered with 180/183.
    Ringing { leg: LegNo },
    /// A destination leg answered with 2xx and won the call.
    Answered { leg: LegNo },
    /// A destination leg ended (lost the race, refused, cancelled, hung up).
    LegEnded {
        leg: LegNo,
        cause: HangupCause,
        /// The final SIP status that leg answered, if any.
        sip_code: Option<u16>,
    },
    /// The call is over. Always the last event of a call.
    Ended { cause: HangupCause },
}

/// Why a call or a leg ended; the stable strings are the `hangup_cause`
/// column and the API's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HangupCause {
    CallerBye,
    CalleeBye,
    /// The caller cancelled before an answer.
    Cancelled,
    /// Nobody answered within the ring timeout (or 408/480 from every fork).
    NoAnswer,
    /// 486/600/603 from every destination.
    Busy,
    /// The dialled number is nobody.
    NotFound,
    /// The dialled agent has no registered contact.
    NotRegistered,
    /// Routing refused the call (no permission, no route).
    Rejected,
    /// Another fork answered first.
    AnsweredElsewhere,
    /// A 2xx was never acknowledged.
    AckTimeout,
    CallerConnectionLost,
    CalleeConnectionLost,
    /// An RFC 4028 session timer expired without a refresh.
    SessionTimerExpired,
    /// The configured maximum call duration was reached.
    MaxDuration,
    /// The server shut down with the call up.
    Shutdown,
    /// An anchored call's media stopped (no RTP from a leg for
    /// `media.rtp_timeout_secs` while not on hold).
    MediaTimeout,
    /// Any other failure (an unexpected final response).
    Failed,
    /// The server process died with the call open (crash, kill -9, power
    /// loss): the row is closed at the next start, at the last moment the
    /// server was known to be alive.
    ServerCrash,
}

impl HangupCause {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CallerBye => "caller_bye",
            Self::CalleeBye => "callee_bye",
            Self::Cancelled => "cancelled",
            Self::NoAnswer => "no_answer",
            Self::Busy => "busy",
            Self::NotFound => "not_found",
            Self::NotRegistered => "not_registered",
            Self::Rejected => "rejected",
            Self::AnsweredElsewhere => "answered_elsewhere",
            Self::AckTimeout => "ack_timeout",
            Self::CallerConnectionLost => "caller_connection_lost",
            Self::CalleeConnectionLost => "callee_connection_lost",
            Self::SessionTimerExpired => "session_timer_expired",
            Self::MaxDuration => "max_duration",
            Self::Shutdown => "shutdown",
            Self::MediaTimeout => "media_timeout",
            Self::Failed => "failed",
            Self::ServerCrash => "server_crash",
        }
    }

    /// The cause a final SIP response from a destination means.
    pub fn from_sip_code(code: u16) -> Self {
        match code {
            486 | 600 | 603 => Self::Busy,
            408 | 480 => Self::NoAnswer,
            404 | 604 => Self::NotFound,
            _ => Self::Failed,
        }
    }
}
