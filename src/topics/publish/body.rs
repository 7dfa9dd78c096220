//! The body of a publish: how its media type says to read it, and reading it within a bound
//! (its JSON form is read in `super::json`).

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap};
use http_body::Body;

use crate::BoxError;

/// How a body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// The body is the event's data, as UTF-8 text.
    Text,
    /// The body is `{"event": <name>, "data": <value>}`.
    #[cfg(feature = "json")]
    Json,
}

/// Why a body's media type is refused (`415`): the reason, and the types that are taken if
/// the service lists them (for the `Accept` header of the answer).
pub(super) struct Unsupported {
    pub(super) reason: String,
    pub(super) accept: Option<String>,
}

/// How to read a body with these request headers: `accept_only` (lowercase media types)
/// refuses any other type; `whole_body` takes every body as text.
pub(super) fn format(
    headers: &HeaderMap,
    accept_only: Option<&[Box<str>]>,
    whole_body: bool,
) -> Result<Format, Unsupported> {
    // A body without a type is taken as text.
    let (raw, essence) = match headers.get(header::CONTENT_TYPE) {
        None => ("text/plain".into(), "text/plain".to_owned()),
        Some(value) => {
            let raw = String::from_utf8_lossy(value.as_bytes());
            let essence = raw
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            (raw, essence)
        }
    };
    if let Some(accepted) = accept_only {
        if !accepted.iter().any(|accepted| **accepted == *essence) {
            let list = accepted.join(", ");
            return Err(Unsupported {
                reason: format!("this route takes bodies of type {list}, not `{raw}`"),
                accept: Some(list),
            });
        }
    }
    let json = essence == "application/json" || essence.ends_with("+json");
    if whole_body || !json {
        return Ok(Format::Text);
    }
    json_format()
}

#[cfg(feature = "json")]
fn json_format() -> Result<Format, Unsupported> {
    Ok(Format::Json)
}

/// Without the `json` feature a JSON body cannot be read: `415`, rather than its text taken
/// for the data.
#[cfg(not(feature = "json"))]
fn json_format() -> Result<Format, Unsupported> {
    Err(Unsupported {
        reason: "this server is built without JSON bodies (the `json` feature of \
                 tower-eventstream): send the data as text (`Content-Type: text/plain`)"
            .to_owned(),
        accept: None,
    })
}

/// Why a body could not be read.
pub(super) enum ReadError {
    /// Longer than the bound (`413`).
    TooLarge,
    /// The body failed (the client went away, or sent a broken framing).
    Failed(BoxError),
}

/// Whether the `Content-Length` or the body's own size hint already says it is longer than
/// `limit`.
pub(super) fn announced_too_large<B: Body>(headers: &HeaderMap, body: &B, limit: usize) -> bool {
    let limit = limit as u64;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    declared.is_some_and(|length| length > limit) || body.size_hint().lower() > limit
}

/// Reads `body` to its end, refusing it as soon as it is longer than `limit`: never more
/// than `limit` bytes (and one frame) are held.
pub(super) async fn read<B>(body: B, limit: usize) -> Result<Bytes, ReadError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut length = 0usize;
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(|error| ReadError::Failed(error.into()))?;
        // Trailers carry no data.
        let Ok(data) = frame.into_data() else { continue };
        length = length.saturating_add(data.len());
        if length > limit {
            return Err(ReadError::TooLarge);
        }
        if !data.is_empty() {
            chunks.push(data);
        }
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => {
            let mut whole = BytesMut::with_capacity(length);
            chunks.iter().for_each(|chunk| whole.extend_from_slice(chunk));
            whole.freeze()
        }
    })
}
