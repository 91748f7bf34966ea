//! Call recording policy and where a recording lives: whether a call is
//! recorded (system default and per-agent override), and the safe path of
//! a stored recording inside the recording directory.

use std::path::{Component, Path, PathBuf};

/// An agent party's `record_calls` setting: `None` follows the system
/// default (`media.recording`), `Some(b)` overrides it for that agent.
pub type AgentRecording = Option<bool>;

/// Whether a call is recorded.
///
/// The rule: each party that is an agent has a say, its own override or,
/// without one, the system default; the call is recorded when **either**
/// agent party says yes (a call is recorded for the agent who must be
/// recorded even if the other agent is exempt). Parties that are not
/// agents (`None`: a customer, a trunk) have no say; a call with no agent
/// party follows the system default.
pub fn should_record(
    system_default: bool,
    caller_agent: Option<AgentRecording>,
    callee_agent: Option<AgentRecording>,
) -> bool {
    let says = |a: AgentRecording| a.unwrap_or(system_default);
    match (caller_agent, callee_agent) {
        (None, None) => system_default,
        (a, b) => a.is_some_and(says) || b.is_some_and(says),
    }
}

/// Why a stored recording path cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordingPathError {
    #[error("recording path is empty")]
    Empty,
    #[error("recording path is absolute")]
    Absolute,
    #[error("recording path leaves the recording directory")]
    Escapes,
}

/// The file of a recording: `relative` (as stored with the call) joined to
/// the recording directory. Only plain names are allowed (`a/b/c.wav`):
/// no absolute path, no `..`, no root or drive prefix, so the result stays
/// inside `dir` whatever the database holds. (Symbolic links inside the
/// directory are the operator's own.)
pub fn recording_file(dir: &Path, relative: &str) -> Result<PathBuf, RecordingPathError> {
    if relative.is_empty() || relative.contains('\0') {
        return Err(RecordingPathError::Empty);
    }
    let rel = Path::new(relative);
    if rel.is_absolute() || relative.starts_with(['/', '\\']) {
        return Err(RecordingPathError::Absolute);
    }
    let mut out = dir.to_path_buf();
    let mut names = 0;
    for c in rel.components() {
        match c {
            Component::Normal(name) => {
                // A backslash is a separator on Windows; refuse it so the
                // rule does not depend on the platform.
                if name.to_string_lossy().contains('\\') {
                    return Err(RecordingPathError::Escapes);
                }
                out.push(name);
                names += 1;
            }
            Component::CurDir => {}
            Component::ParentDir => return Err(RecordingPathError::Escapes),
            Component::RootDir | Component::Prefix(_) => return Err(RecordingPathError::Absolute),
        }
    }
    if names == 0 {
        return Err(RecordingPathError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_agent_party_decides() {
        // (system default, caller agent, callee agent, recorded)
        let rows: &[(bool, Option<AgentRecording>, Option<AgentRecording>, bool)] = &[
            // No agent party: the system default.
            (false, None, None, false),
            (true, None, None, true),
            // Agents without an override follow the default.
            (true, Some(None), Some(None), true),
            (false, Some(None), Some(None), false),
            (true, Some(None), None, true),
            (false, None, Some(None), false),
            // One agent's override is enough to record.
            (false, Some(Some(true)), Some(None), true),
            (false, None, Some(Some(true)), true),
            (false, Some(Some(false)), Some(Some(true)), true),
            // An exempt agent: not recorded unless the other agent records.
            (true, Some(Some(false)), None, false),
            (true, Some(Some(false)), Some(Some(false)), false),
            (true, Some(Some(false)), Some(None), true),
            (false, Some(Some(false)), Some(None), false),
        ];
        for &(default, a, b, want) in rows {
            assert_eq!(should_record(default, a, b), want, "{default} {a:?} {b:?}");
        }
    }

    #[test]
    fn recording_files_stay_inside_the_directory() {
        let dir = Path::new("/var/lib/centralita/recordings");
        assert_eq!(
            recording_file(dir, "2026/12/01/call.wav"),
            Ok(dir.join("2026/12/01/call.wav"))
        );
        assert_eq!(recording_file(dir, "./a.wav"), Ok(dir.join("a.wav")));
        for (bad, why) in [
            ("", RecordingPathError::Empty),
            (".", RecordingPathError::Empty),
            ("/etc/passwd", RecordingPathError::Absolute),
            ("\\etc\\passwd", RecordingPathError::Absolute),
            ("../centralita.db", RecordingPathError::Escapes),
            ("a/../../b.wav", RecordingPathError::Escapes),
            ("a/../b.wav", RecordingPathError::Escapes),
            ("..\\..\\x.wav", RecordingPathError::Escapes),
            ("a\0.wav", RecordingPathError::Empty),
        ] {
            assert_eq!(recording_file(dir, bad), Err(why), "{bad:?}");
        }
    }
}
