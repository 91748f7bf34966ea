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

// Not `Eq`: quality figures are floats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallEvent {
    pub call_id: String,
    /// Milliseconds since the Unix epoch, as the engine saw it.
    pub at_ms: u64,
    pub kind: CallEventKind,
}

// New variants go at the end and old ones never change shape: journal
// lines written by an older build must still read back (externally tagged
// JSON, so a line names its variant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The call is over. The last event that changes the CDR figures;
    /// only `Quality` and `Recording` may follow it.
    Ended { cause: HangupCause },
    /// The latest media figures of one leg in one direction, from the media
    /// plane. May come several times (periodically, at the end of the leg,
    /// after `Ended`): the one with the latest `at_ms` wins.
    Quality {
        leg: LegNo,
        direction: MediaDirection,
        /// RTP packets received (inbound) or sent (outbound).
        packets: u64,
        /// Packets lost (RFC 3550 cumulative lost, never negative here):
        /// counted by us (inbound) or reported by the leg's receiver
        /// reports (outbound).
        lost: u64,
        /// RFC 3550 interarrival jitter, in milliseconds.
        jitter_ms: f32,
        /// Round-trip time from RTCP (RFC 3550 §6.4.1), when RTCP gave one.
        #[serde(default)]
        rtt_ms: Option<f32>,
        /// Estimated MOS (ITU-T G.107 E-model), 1.0..=4.5.
        mos: f32,
        /// The codec as SDP names it (`PCMU`, `PCMA`, `opus`).
        codec: String,
    },
    /// The call's recording is finished (written and closed).
    Recording {
        /// Relative to the recording directory (`media.recording_dir`).
        path: String,
        bytes: u64,
        duration_ms: u64,
        /// Audio frames the recorder dropped (queue full, late frames).
        dropped_frames: u64,
    },
    /// Where a call came from or went outside: the trunk (by name) and, for
    /// a call from a trunk, the number the caller dialled (the DID).
    /// Attached to the call row (each value is kept once), like
    /// `Recording`; it never changes the CDR's times or disposition.
    Origin {
        trunk: Option<String>,
        did: Option<String>,
    },
}

/// Which way the media of a [`CallEventKind::Quality`] flowed, as seen from
/// centralita: `Inbound` is what we received from the leg's party,
/// `Outbound` what we sent to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaDirection {
    Inbound,
    Outbound,
}

impl MediaDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "inbound" => Some(Self::Inbound),
            "outbound" => Some(Self::Outbound),
            _ => None,
        }
    }
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
    // Outbound (trunk) refusals: the names are `dialplan::Refusal::cause()`,
    // so the CDR and the security event say the same thing.
    /// The dialled number is not a phone number.
    InvalidNumber,
    /// The destination is on the blocked list (premium rate, satellite).
    DestinationBlocked,
    /// The caller may not dial that far (national, international).
    DialNotPermitted,
    /// The caller already has its maximum of simultaneous outbound calls.
    OutboundConcurrentLimit,
    /// The caller reached its outbound calls per hour.
    OutboundHourlyLimit,
    /// No trunk could carry the call (none usable, or every one failed).
    NoTrunkAvailable,
    /// A call from a trunk dialled a number no DID routes.
    UnknownDid,
    /// A call from a carrier refused because its trunk had all its
    /// `maxChannels` in use.
    TrunkAtCapacity,
    /// Ended by a hang-up request (`POST /api/telephony/call/hangup`: a
    /// supervisor, the agent's CRM), not by either party.
    ForcedHangup,
}

impl HangupCause {
    /// A refusal of the outbound dial plan (the call was on its way out).
    pub fn is_outbound_refusal(self) -> bool {
        matches!(
            self,
            Self::InvalidNumber
                | Self::DestinationBlocked
                | Self::DialNotPermitted
                | Self::OutboundConcurrentLimit
                | Self::OutboundHourlyLimit
                | Self::NoTrunkAvailable
        )
    }

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
            Self::InvalidNumber => "invalid_number",
            Self::DestinationBlocked => "destination_blocked",
            Self::DialNotPermitted => "dial_not_permitted",
            Self::OutboundConcurrentLimit => "outbound_concurrent_limit",
            Self::OutboundHourlyLimit => "outbound_hourly_limit",
            Self::NoTrunkAvailable => "no_trunk_available",
            Self::UnknownDid => "unknown_did",
            Self::ForcedHangup => "forced_hangup",
            Self::TrunkAtCapacity => "trunk_at_capacity",
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as builds before `Quality` and `Recording` wrote them to the
    /// SIP shell's journal still read back, unchanged.
    #[test]
    fn old_journal_lines_still_read() {
        let lines = [
            r#"{"call_id":"c1","at_ms":1,"kind":{"Started":{"direction":"internal","caller":{"number":"1000","agent_id":7},"callee":{"number":"1001","agent_id":null},"transport":"ws"}}}"#,
            r#"{"call_id":"c1","at_ms":2,"kind":{"LegAdded":{"leg":1,"party":{"number":"1001","agent_id":null},"transport":"udp"}}}"#,
            r#"{"call_id":"c1","at_ms":3,"kind":{"Ringing":{"leg":1}}}"#,
            r#"{"call_id":"c1","at_ms":4,"kind":{"Answered":{"leg":1}}}"#,
            r#"{"call_id":"c1","at_ms":5,"kind":{"LegEnded":{"leg":1,"cause":"callee_bye","sip_code":null}}}"#,
            r#"{"call_id":"c1","at_ms":6,"kind":{"Ended":{"cause":"caller_bye"}}}"#,
        ];
        let evs: Vec<CallEvent> = lines
            .iter()
            .map(|l| serde_json::from_str(l).expect(l))
            .collect();
        assert_eq!(
            evs[0].kind,
            CallEventKind::Started {
                direction: Direction::Internal,
                caller: Party {
                    number: "1000".into(),
                    agent_id: Some(7)
                },
                callee: Party {
                    number: "1001".into(),
                    agent_id: None
                },
                transport: "ws".into(),
            }
        );
        assert_eq!(
            evs[5].kind,
            CallEventKind::Ended {
                cause: HangupCause::CallerBye
            }
        );
        // And they are written the same way today.
        for (l, ev) in lines.iter().zip(&evs) {
            assert_eq!(serde_json::to_string(ev).expect("json"), *l);
        }
    }

    #[test]
    fn quality_and_recording_round_trip() {
        let evs = [
            CallEvent {
                call_id: "c1".into(),
                at_ms: 10,
                kind: CallEventKind::Quality {
                    leg: 1,
                    direction: MediaDirection::Outbound,
                    packets: 500,
                    lost: 3,
                    jitter_ms: 4.5,
                    rtt_ms: Some(22.0),
                    mos: 4.2,
                    codec: "PCMU".into(),
                },
            },
            CallEvent {
                call_id: "c1".into(),
                at_ms: 11,
                kind: CallEventKind::Recording {
                    path: "2026/12/01/c1.wav".into(),
                    bytes: 44 + 32_000,
                    duration_ms: 1_000,
                    dropped_frames: 0,
                },
            },
        ];
        for ev in evs {
            let line = serde_json::to_string(&ev).expect("json");
            assert_eq!(serde_json::from_str::<CallEvent>(&line).expect("read"), ev);
        }
        // No RTT from RTCP: the key may be absent.
        let line = r#"{"call_id":"c","at_ms":1,"kind":{"Quality":{"leg":0,"direction":"inbound","packets":1,"lost":0,"jitter_ms":0.0,"mos":4.4,"codec":"opus"}}}"#;
        let ev: CallEvent = serde_json::from_str(line).expect("read");
        assert!(matches!(
            ev.kind,
            CallEventKind::Quality { rtt_ms: None, .. }
        ));
    }
}
