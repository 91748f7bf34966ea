//! `GET /api/telephony/calls/{callId}/recording`: a call's recording (a
//! stereo WAV) streamed from the recording directory, with single-range
//! HTTP Range support (RFC 9110 §14) so players can seek.

use std::io::SeekFrom;
use std::path::Path;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::CurrentUser;
use crate::doc;
use crate::error::AppError;
use crate::extract::AppPath;
use crate::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(call_recording))
}

/// Bytes read from the file per body chunk.
const CHUNK: usize = 64 * 1024;

/// What a `Range` header asks of a resource of a given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAsk {
    /// No usable Range: the whole resource, 200. A header in another unit,
    /// with several ranges or that does not parse is ignored, as RFC 9110
    /// §14.2 allows.
    Whole,
    /// Bytes `start..=end` (inclusive, inside the resource), 206.
    Part { start: u64, end: u64 },
    /// A valid range that selects nothing, 416.
    Unsatisfiable,
}

/// Reads one `bytes=` range (`a-b`, `a-`, `-n`) against `len` bytes.
pub fn parse_range(value: Option<&str>, len: u64) -> RangeAsk {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeAsk::Whole;
    };
    let spec = spec.trim();
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeAsk::Whole;
    };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // `-n`: the last n bytes.
        (true, false) => match num(last) {
            None => RangeAsk::Whole,
            Some(0) => RangeAsk::Unsatisfiable,
            Some(_) if len == 0 => RangeAsk::Unsatisfiable,
            Some(n) => RangeAsk::Part {
                start: len.saturating_sub(n),
                end: len - 1,
            },
        },
        // `a-`: from a to the end.
        (false, true) => match num(first) {
            None => RangeAsk::Whole,
            Some(a) if a >= len => RangeAsk::Unsatisfiable,
            Some(a) => RangeAsk::Part {
                start: a,
                end: len - 1,
            },
        },
        // `a-b`
        (false, false) => match (num(first), num(last)) {
            (Some(a), Some(b)) if a <= b => {
                if a >= len {
                    RangeAsk::Unsatisfiable
                } else {
                    RangeAsk::Part {
                        start: a,
                        end: b.min(len - 1),
                    }
                }
            }
            // b < a or not numbers: not a valid range, ignored.
            _ => RangeAsk::Whole,
        },
        (true, true) => RangeAsk::Whole,
    }
}

/// A call's recording.
///
/// The stereo WAV (customer left, agent right) as `audio/wav`, with HTTP
/// Range support (`bytes=a-b`, `bytes=a-`, `bytes=-n`; one range: 206
/// with `Content-Range`, 416 when it selects nothing; no Range: 200).
/// Any role, with the call detail's scope: agents only hear calls they took
/// part in (any other call is "not found"). Each listen (a request from
/// byte 0) is audited as `recording.listen`.
#[utoipa::path(
    get,
    path = "/calls/{call_id}/recording",
    tag = "telephony",
    params(
        ("call_id" = String, Path, description = "the SIP Call-ID of the caller's leg"),
        ("Range" = Option<String>, Header, description = "one byte range: `bytes=a-b`, `bytes=a-` or `bytes=-n`"),
    ),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The whole recording", content_type = "audio/wav", body = Vec<u8>),
        (status = 206, description = "The range asked for (`Content-Range`)", content_type = "audio/wav", body = Vec<u8>),
        (status = 416, description = "The range selects nothing (`Content-Range: bytes */length`)", body = doc::ErrorBody),
        doc::Auth,
        doc::NotFound,
    ),
)]
async fn call_recording(
    State(st): State<AppState>,
    u: CurrentUser,
    AppPath(call_id): AppPath<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let calls = &st.services.calls;
    let call = calls
        .get(&call_id)
        .await?
        .ok_or(AppError::NotFound("call"))?;
    let legs = calls.legs(&call_id).await?;
    if !u.scope().may_see_call(&call, &legs) {
        return Err(AppError::NotFound("call"));
    }
    let (Some(rec), Some(dir)) = (&call.recording, &st.config.recording_dir) else {
        return Err(AppError::NotFound("recording"));
    };
    let file_path = match domain::recording::recording_file(dir, &rec.path) {
        Ok(p) => p,
        Err(e) => {
            // Only a damaged or tampered row gets here: say so in the log,
            // and to the client only that there is nothing to hear.
            tracing::warn!(%call_id, path = %rec.path, error = %e, "refusing a recording path");
            return Err(AppError::NotFound("recording"));
        }
    };
    let (mut file, len) = open_regular(&file_path).await.map_err(|e| {
        tracing::warn!(%call_id, path = %file_path.display(), error = %e, "recording file missing");
        AppError::NotFound("recording")
    })?;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let ask = parse_range(range, len);
    let (status, start, end) = match ask {
        RangeAsk::Whole => (StatusCode::OK, 0, len.checked_sub(1)),
        RangeAsk::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, Some(end)),
        RangeAsk::Unsatisfiable => return Err(AppError::RangeNotSatisfiable { len }),
    };
    if start == 0 {
        // Audited once per listen, not per seek: players fetch many ranges.
        st.services
            .audit
            .log(
                &u.actor(),
                "recording.listen",
                "call",
                &call_id,
                serde_json::json!({ "range": range }),
            )
            .await?;
    }
    let count = end.map_or(0, |end| end - start + 1);
    if start > 0 {
        file.seek(SeekFrom::Start(start))
            .await
            .map_err(|e| AppError::Internal(format!("seeking in a recording: {e}")))?;
    }
    let mut resp = Response::new(Body::from_stream(chunks(file, count)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if let RangeAsk::Part { start, end } = ask {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    // A file name of our own: the Call-ID is the caller's text.
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"call-{}.wav\"", call.id)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp.into_response())
}

/// Opens a regular file (not a directory or device) and its length.
async fn open_regular(path: &Path) -> std::io::Result<(tokio::fs::File, u64)> {
    let file = tokio::fs::File::open(path).await?;
    let meta = file.metadata().await?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok((file, meta.len()))
}

/// `count` bytes of `file` from where it stands, in chunks. A file that
/// shrinks underneath ends the body early (the client sees a short body,
/// never bytes from elsewhere).
fn chunks(
    file: tokio::fs::File,
    count: u64,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send {
    futures_util::stream::unfold((file, count), |(mut file, left)| async move {
        if left == 0 {
            return None;
        }
        let want = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
        let mut buf = vec![0u8; want];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), (file, left - n as u64)))
            }
            Err(e) => Some((Err(e), (file, 0))),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeAsk::*;
        let part = |start, end| Part { start, end };
        // (header, length, answer)
        let rows: &[(Option<&str>, u64, RangeAsk)] = &[
            (None, 100, Whole),
            (Some("bytes=0-9"), 100, part(0, 9)),
            (Some("bytes=10-"), 100, part(10, 99)),
            (Some("bytes=-10"), 100, part(90, 99)),
            (Some("bytes=-1000"), 100, part(0, 99)),
            (Some("bytes=90-1000"), 100, part(90, 99)),
            (Some("bytes=99-99"), 100, part(99, 99)),
            (Some(" bytes= 5 - 6 "), 100, part(5, 6)),
            (Some("bytes=100-"), 100, Unsatisfiable),
            (Some("bytes=100-200"), 100, Unsatisfiable),
            (Some("bytes=-0"), 100, Unsatisfiable),
            (Some("bytes=0-"), 0, Unsatisfiable),
            (Some("bytes=-5"), 0, Unsatisfiable),
            // Ignored: other units, several ranges, nonsense.
            (Some("items=0-9"), 100, Whole),
            (Some("bytes=0-9,20-29"), 100, Whole),
            (Some("bytes=9-0"), 100, Whole),
            (Some("bytes=-"), 100, Whole),
            (Some("bytes=a-b"), 100, Whole),
            (Some("bytes=+1-5"), 100, Whole),
            (Some("bytes=5"), 100, Whole),
            (Some("bytes=99999999999999999999999-"), 100, Whole),
        ];
        for &(h, len, want) in rows {
            assert_eq!(parse_range(h, len), want, "{h:?} of {len}");
        }
    }
}
