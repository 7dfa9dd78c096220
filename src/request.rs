//! The parsed form of a request for events: transport negotiation, cursor, wait, and why a
//! request can be refused.

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{header, Method, Response};

use crate::measure::{self, GapCause};
use crate::respond::RespondFuture;
use crate::transport::long_poll::LongPollFuture;
use crate::transport::watch::{Resume, Watch};
use crate::{CursorError, EventFeed, EventStreamBody, LastEventId, StreamConfig};

/// Which transport answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// `text/event-stream`.
    Sse,
    /// JSON, held until an event exists or the wait ends; a wait of zero is a short poll.
    LongPoll,
}

impl Transport {
    /// `Accept: text/event-stream` (what every `EventSource` sends) means SSE, anything
    /// else long poll. The query parameter `transport=sse` or `transport=poll` overrides.
    pub fn negotiate(parts: &Parts) -> Result<Self, RequestError> {
        match query_param(parts.uri.query(), "transport") {
            Some(Ok(value)) if value == b"sse" => return Ok(Transport::Sse),
            Some(Ok(value)) if value == b"poll" => return Ok(Transport::LongPoll),
            Some(_) => return Err(RequestError::Transport),
            None => {}
        }
        let wants_sse = parts.headers.get_all(header::ACCEPT).iter().any(|value| {
            value
                .to_str()
                .map(|text| text.split(',').any(accepts_event_stream))
                .unwrap_or(false)
        });
        Ok(if wants_sse {
            Transport::Sse
        } else {
            Transport::LongPoll
        })
    }
}

/// A request for events, parsed: transport, cursor and long-poll wait.
///
/// With the `axum` feature this is also an extractor (it follows the router state's
/// [`StreamConfig`]; see the README). Answer it from a log with
/// [`serve`](StreamRequest::serve), or from any source with [`respond`](StreamRequest::respond):
///
/// ```
/// use std::sync::Arc;
/// use tower_eventstream::{Event, StreamConfig, StreamRequest, Transport};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
/// # rt.block_on(async {
/// let (parts, ()) = http::Request::get("/events?lastEventId=7&timeout=0")
///     .header("accept", "application/json")
///     .body(())
///     .unwrap()
///     .into_parts();
/// let request = StreamRequest::from_parts(&parts, Arc::new(StreamConfig::default())).unwrap();
/// assert_eq!(request.transport(), Transport::LongPoll);
/// assert_eq!(request.cursor().unwrap().as_str(), "7");
///
/// let next = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(
///     Event::new("eight").with_id("8").unwrap(),
/// )]);
/// let response = request.respond(next).await;
/// assert_eq!(response.headers()["content-type"], "application/json");
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct StreamRequest {
    pub(crate) transport: Transport,
    pub(crate) cursor: Option<LastEventId>,
    pub(crate) wait: Duration,
    pub(crate) head: bool,
    pub(crate) config: Arc<StreamConfig>,
    /// The `topic` label of this request's metrics, when the application asked for one.
    #[cfg(feature = "metrics")]
    pub(crate) topic_label: Option<Arc<str>>,
}

impl StreamRequest {
    /// Parses the request head, negotiating the transport.
    pub fn from_parts(parts: &Parts, config: Arc<StreamConfig>) -> Result<Self, RequestError> {
        Self::parse(parts, config, None)
    }

    /// Parses the request head. The transport is negotiated unless `forced`.
    pub(crate) fn parse(
        parts: &Parts,
        config: Arc<StreamConfig>,
        forced: Option<Transport>,
    ) -> Result<Self, RequestError> {
        let transport = match forced {
            Some(transport) => transport,
            None => Transport::negotiate(parts)?,
        };
        let cursor =
            LastEventId::from_request_parts(parts, config.max_cursor_len).map_err(RequestError::Cursor)?;
        let wait = match query_param(parts.uri.query(), "timeout") {
            None => config.max_wait,
            Some(Err(())) => return Err(RequestError::Timeout),
            Some(Ok(raw)) => parse_wait(&raw)?.min(config.max_wait),
        };
        Ok(StreamRequest {
            transport,
            cursor,
            wait,
            head: parts.method == Method::HEAD,
            config,
            #[cfg(feature = "metrics")]
            topic_label: None,
        })
    }

    /// The transport that answers.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The client's position, if it sent one.
    pub fn cursor(&self) -> Option<&LastEventId> {
        self.cursor.as_ref()
    }

    /// How long a long poll may wait (zero: answer at once).
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// The settings the answer follows.
    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// Answers the request from `source` with the negotiated transport: an SSE stream, or a
    /// long poll that completes once events are ready or the wait ends. A `HEAD` request gets
    /// the headers only. A source already at the end of a complete stream
    /// ([`EventFeed::is_finished`]: a client that comes back at the end of a finished log)
    /// gets `204 No Content`.
    pub fn respond<S: EventFeed>(self, source: S) -> RespondFuture<S> {
        let plain_stream_ended = !source.honours_cursor()
            && self.cursor.as_ref().map(LastEventId::as_str) == Some(crate::transport::wire::END_CURSOR);
        if source.is_finished() || plain_stream_ended {
            // Nothing more, ever: the one answer that stops an `EventSource` for good, and a
            // long-poll client is told the same way.
            let mut response = Response::new(EventStreamBody::empty());
            *response.status_mut() = http::StatusCode::NO_CONTENT;
            return RespondFuture::ready(response);
        }
        if self.head {
            let mut response = Response::new(EventStreamBody::empty());
            match self.transport {
                Transport::Sse => crate::transport::sse::headers(&mut response),
                Transport::LongPoll => crate::transport::long_poll::headers(&mut response),
            }
            return RespondFuture::ready(response);
        }
        let reset_first = self.cursor.is_some() && !source.honours_cursor();
        let resume = match (reset_first, &self.cursor) {
            (true, _) => {
                // A live-only feed holds no history for the client's cursor.
                measure::reset(GapCause::Trimmed);
                Resume::Gap
            }
            (false, Some(_)) => Resume::Resumed,
            (false, None) => Resume::Fresh,
        };
        #[cfg(feature = "metrics")]
        let topic = self.topic_label.as_deref();
        #[cfg(not(feature = "metrics"))]
        let topic = None;
        let watch = Watch::open(self.transport, resume, topic);
        match self.transport {
            Transport::Sse => RespondFuture::ready(crate::transport::sse::response(
                source,
                &self.config,
                reset_first,
                watch,
            )),
            Transport::LongPoll => RespondFuture::long_poll(LongPollFuture::new(
                source,
                self.cursor,
                self.wait,
                &self.config,
                watch,
            )),
        }
    }
}

/// Whether one item of an `Accept` list is `text/event-stream` with a non-zero quality
/// (`q=0` means "not acceptable").
fn accepts_event_stream(item: &str) -> bool {
    let mut parts = item.split(';');
    let media_type = parts.next().unwrap_or("").trim();
    media_type.eq_ignore_ascii_case("text/event-stream")
        && !parts.any(|parameter| {
            let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
            name.trim().eq_ignore_ascii_case("q") && value.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
        })
}

fn parse_wait(raw: &[u8]) -> Result<Duration, RequestError> {
    if raw.is_empty() || raw.len() > 64 || !raw.iter().all(u8::is_ascii_digit) {
        return Err(RequestError::Timeout);
    }
    // All digits: anything past u64 is simply "very long", clamped by the caller.
    let millis = std::str::from_utf8(raw)
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    Ok(Duration::from_millis(millis))
}

/// Why a request for events was refused; answered with `400 Bad Request` and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// The cursor is malformed or not one this log issued.
    Cursor(CursorError),
    /// `timeout` is not a whole number of milliseconds.
    Timeout,
    /// `transport` is neither `sse` nor `poll`.
    Transport,
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Cursor(e) => e.fmt(f),
            RequestError::Timeout => {
                f.write_str("timeout must be a whole, non-negative number of milliseconds")
            }
            RequestError::Transport => f.write_str("transport must be `sse` or `poll`"),
        }
    }
}

impl std::error::Error for RequestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RequestError::Cursor(e) => Some(e),
            _ => None,
        }
    }
}

impl From<CursorError> for RequestError {
    fn from(e: CursorError) -> Self {
        RequestError::Cursor(e)
    }
}

/// Finds `name` in a query string and percent-decodes its value (`+` is a space).
/// `Some(Err(()))` for a value whose encoding is broken.
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<Result<Vec<u8>, ()>> {
    let query = query?;
    query
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
        .next()
        .map(percent_decode)
}

pub(crate) fn percent_decode(value: &str) -> Result<Vec<u8>, ()> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'%' => {
                // Exactly two hex digits (`from_str_radix` would also take a sign, as in `%+A`).
                let digit = |at: usize| bytes.get(at).and_then(|&b| (b as char).to_digit(16));
                let (Some(high), Some(low)) = (digit(at + 1), digit(at + 2)) else {
                    return Err(());
                };
                out.push((high * 16 + low) as u8);
                at += 3;
            }
            b'+' => {
                out.push(b' ');
                at += 1;
            }
            byte => {
                out.push(byte);
                at += 1;
            }
        }
    }
    Ok(out)
}
