//! One side of a call as a dialog we hold (we are the UAS toward the
//! caller, the UAC toward each callee contact), and the requests we build
//! on it.

use super::super::ctx::Ctx;
use super::super::msg::{Msg, Start};
use super::super::types::Source;

#[derive(Debug, Clone)]
pub struct Leg {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    pub local_uri: String,
    pub remote_uri: String,
    pub local_cseq: u32,
    pub remote_target: String,
    /// The flow to reach the other party over.
    pub src: Source,
    /// Route set (RFC 3261 12.1.2: the 2xx's Record-Route, reversed) of a
    /// carrier leg whose proxies record-route; empty for phones.
    pub route: Vec<String>,
}

/// A new branch for a request of call `call`. The call id rides in the
/// branch so responses are routed without an index; the call still checks
/// that the branch is one it sent.
pub fn new_branch(ctx: &mut Ctx<'_>, call: u64) -> String {
    format!("z9hG4bK{}.{call:x}", ctx.token())
}

/// The call a branch of ours belongs to.
pub fn call_of_branch(branch: &str) -> Option<u64> {
    let (_, id) = branch.strip_prefix("z9hG4bK")?.rsplit_once('.')?;
    u64::from_str_radix(id, 16).ok()
}

impl Leg {
    /// A request on this leg (in-dialog, or the initial INVITE while
    /// `remote_tag` is empty) with a Via carrying `branch`.
    pub fn request(&self, ctx: &Ctx<'_>, method: &str, cseq: u32, branch: &str) -> Msg {
        let to = if self.remote_tag.is_empty() {
            self.remote_uri.clone()
        } else {
            format!("{};tag={}", self.remote_uri, self.remote_tag)
        };
        let t = self.src.transport;
        let mut headers = vec![
            (
                "Via".to_string(),
                format!(
                    "SIP/2.0/{} {};branch={branch};rport",
                    t.via(),
                    ctx.host_for(t)
                ),
            ),
            ("Max-Forwards".to_string(), "70".to_string()),
        ];
        // Loose routing only (`;lr`): the Request-URI stays the remote
        // target and the request still goes to `src`, the first hop.
        if !self.remote_tag.is_empty() {
            headers.extend(self.route.iter().map(|r| ("Route".to_string(), r.clone())));
        }
        headers.extend([
            (
                "From".to_string(),
                format!("{};tag={}", self.local_uri, self.local_tag),
            ),
            ("To".to_string(), to),
            ("Call-ID".to_string(), self.call_id.clone()),
            ("CSeq".to_string(), format!("{cseq} {method}")),
        ]);
        if method != "ACK" && method != "CANCEL" {
            headers.push(("Contact".to_string(), ctx.our_contact(t)));
        }
        Msg {
            start: Start::Request {
                method: method.to_string(),
                uri: self.remote_target.clone(),
            },
            headers,
            body: Vec::new(),
        }
    }
}

/// The ACK of a non-2xx final `answer` to our `invite` (CSeq `cseq`): hop
/// by hop, on the INVITE's branch, with the answer's To tag (RFC 3261
/// 17.1.1.3).
pub fn ack_of_failure(invite: &Msg, answer: &Msg, cseq: u32) -> Msg {
    let mut ack = invite.clone();
    ack.start = Start::Request {
        method: "ACK".into(),
        uri: invite.ruri().to_string(),
    };
    ack.headers
        .retain(|(n, _)| matches!(n.as_str(), "Via" | "From" | "Call-ID" | "Max-Forwards"));
    ack.headers
        .push(("To".into(), answer.header("To").unwrap_or("").to_string()));
    ack.headers.push(("CSeq".into(), format!("{cseq} ACK")));
    ack.body.clear();
    ack
}

/// The CANCEL of our `invite` (CSeq `cseq`): same branch, Request-URI,
/// From, To and Call-ID (RFC 3261 9.1).
pub fn cancel_of(invite: &Msg, cseq: u32) -> Msg {
    let mut c = invite.clone();
    c.start = Start::Request {
        method: "CANCEL".into(),
        uri: invite.ruri().to_string(),
    };
    c.headers.retain(|(n, _)| {
        matches!(
            n.as_str(),
            "Via" | "From" | "To" | "Call-ID" | "Max-Forwards"
        )
    });
    c.headers.push(("CSeq".into(), format!("{cseq} CANCEL")));
    c.body.clear();
    c
}

/// Copies the body and its Content-Type.
pub fn copy_body(from: &Msg, to: &mut Msg) {
    if !from.body.is_empty() {
        if let Some(ct) = from.header("Content-Type") {
            to.headers.push(("Content-Type".into(), ct.to_string()));
        }
        to.body = from.body.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_carries_the_call_id() {
        assert_eq!(call_of_branch("z9hG4bK00ff00ff00ff00ff.1a"), Some(26));
        assert_eq!(call_of_branch("z9hG4bKabc"), None);
        assert_eq!(call_of_branch("z9hG4bKabc.zz"), None);
        assert_eq!(call_of_branch("xyz.1"), None);
    }
}
