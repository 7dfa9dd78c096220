//! Settings shared by every transport, and the parsed form of one request.

use std::sync::Arc;
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::request::Parts;
use http::{header, Method, Response};
use pin_project_lite::pin_project;

use crate::cursor::{query_param, DEFAULT_MAX_CURSOR_LEN};
use crate::long_poll::LongPollFuture;
use crate::{CursorError, EventSource, EventStreamBody, LastEventId, Shutdown};

/// Transport settings. The defaults are those of the README's table.
///
/// The long-poll wait ([`max_wait`](StreamConfig::max_wait), 25 s by default) must stay
/// below any request timeout around the service (tower's or tower-http's `TimeoutLayer`
/// races the response future): otherwise that layer answers `408`/`504` instead of the
/// empty long-poll shape.
///
/// ```
/// use std::time::Duration;
/// use tower_eventstream::{Shutdown, StreamConfig};
///
/// let shutdown = Shutdown::new();
/// let config = StreamConfig::default()
///     .keep_alive(Duration::from_secs(10))
///     .max_connection_age(Duration::from_secs(600))
///     .shutdown(shutdown.clone());
/// assert_eq!(config.max_wait_value(), Duration::from_secs(25));
/// ```
#[derive(Debug, Clone)]
#[must_use = "a StreamConfig does nothing until a service, layer or request uses it"]
pub struct StreamConfig {
    pub(crate) keep_alive: Option<Duration>,
    pub(crate) retry: Option<Duration>,
    pub(crate) max_connection_age: Option<Duration>,
    pub(crate) max_wait: Duration,
    pub(crate) batch_limit: usize,
    pub(crate) max_cursor_len: usize,
    pub(crate) reset_event: Arc<str>,
    pub(crate) checkpoint_event: Arc<str>,
    pub(crate) shutdown: Option<Shutdown>,
    pub(crate) frame_bytes: usize,
}

/// Idle time after which an SSE stream sends a keep-alive comment.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The `retry:` hint sent when an SSE stream opens.
pub const DEFAULT_RETRY: Duration = Duration::from_secs(3);
/// The longest a long poll waits.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(25);
/// The most events one long-poll answer carries.
pub const DEFAULT_BATCH_LIMIT: usize = 100;
/// The name of the event that signals a gap.
pub const DEFAULT_RESET_EVENT: &str = "reset";
/// The name of the block that moves a client's cursor without an application event.
pub const DEFAULT_CHECKPOINT_EVENT: &str = "checkpoint";

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            keep_alive: Some(DEFAULT_KEEP_ALIVE),
            retry: Some(DEFAULT_RETRY),
            max_connection_age: None,
            max_wait: DEFAULT_MAX_WAIT,
            batch_limit: DEFAULT_BATCH_LIMIT,
            max_cursor_len: DEFAULT_MAX_CURSOR_LEN,
            reset_event: Arc::from(DEFAULT_RESET_EVENT),
            checkpoint_event: Arc::from(DEFAULT_CHECKPOINT_EVENT),
            shutdown: None,
            frame_bytes: 64 * 1024,
        }
    }
}

impl StreamConfig {
    /// Sends a keep-alive comment on an SSE stream that has been idle for `interval`
    /// (default 15 s).
    pub fn keep_alive(mut self, interval: Duration) -> Self {
        self.keep_alive = (!interval.is_zero()).then_some(interval);
        self
    }

    /// Sends no keep-alive comments.
    pub fn without_keep_alive(mut self) -> Self {
        self.keep_alive = None;
        self
    }

    /// The reconnection delay hint sent when an SSE stream opens (default 3 s).
    pub fn retry(mut self, retry: Duration) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Sends no `retry:` hint.
    pub fn without_retry(mut self) -> Self {
        self.retry = None;
        self
    }

    /// Ends an SSE stream after `age`; the client reconnects with `Last-Event-ID` (spreads
    /// load after deploys). Default: no limit.
    pub fn max_connection_age(mut self, age: Duration) -> Self {
        self.max_connection_age = Some(age);
        self
    }

    /// The longest a long poll waits; a client's `timeout` is clamped to it (default 25 s).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// The current maximum long-poll wait.
    pub fn max_wait_value(&self) -> Duration {
        self.max_wait
    }

    /// The most events one long-poll answer carries (default 100, at least 1).
    pub fn batch_limit(mut self, events: usize) -> Self {
        self.batch_limit = events.max(1);
        self
    }

    /// The longest `Last-Event-ID` accepted, in bytes (default 256).
    pub fn max_cursor_len(mut self, bytes: usize) -> Self {
        self.max_cursor_len = bytes;
        self
    }

    /// The name of the event sent on a gap (default `reset`).
    pub fn reset_event(mut self, name: &str) -> Result<Self, crate::EventError> {
        crate::Event::empty().with_name(name)?;
        self.reset_event = Arc::from(name);
        Ok(self)
    }

    /// The name of the checkpoint block (default `checkpoint`): `id: <position>`,
    /// `event: <name>`, an empty `data:` line and a blank line.
    ///
    /// An SSE stream sends one when it opens (the client's current position) and whenever
    /// a source reports a [`Delivery::Checkpoint`](crate::Delivery::Checkpoint), so that a
    /// browser that reconnects before seeing any event still sends `Last-Event-ID` and misses
    /// nothing. The standard lets an id-only block (`id:` and a blank line) do this, but
    /// Firefox ignores such a block; a named block with an empty `data:` line moves the
    /// cursor in Chromium and Firefox alike and fires no `message` listener (only a listener
    /// for this very name). Pick a name the application does not use for its own events.
    pub fn checkpoint_event(mut self, name: &str) -> Result<Self, crate::EventError> {
        crate::Event::empty().with_name(name)?;
        self.checkpoint_event = Arc::from(name);
        Ok(self)
    }

    /// Ends open streams and answers pending long polls when `shutdown` is triggered.
    pub fn shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = Some(shutdown);
        self
    }
}

/// Which transport answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
/// With the `axum` feature this is also an extractor (see the crate docs).
#[derive(Debug, Clone)]
pub struct StreamRequest {
    pub(crate) transport: Transport,
    pub(crate) cursor: Option<LastEventId>,
    pub(crate) wait: Duration,
    pub(crate) head: bool,
    pub(crate) config: Arc<StreamConfig>,
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
    /// the headers only.
    pub fn respond<S: EventSource>(self, source: S) -> Responder<S> {
        if self.head {
            let mut response = Response::new(EventStreamBody::empty());
            match self.transport {
                Transport::Sse => crate::sse::headers(&mut response),
                Transport::LongPoll => crate::long_poll::headers(&mut response),
            }
            return Responder::ready(response);
        }
        match self.transport {
            Transport::Sse => Responder::ready(crate::sse::response(source, &self.config)),
            Transport::LongPoll => {
                Responder::long_poll(LongPollFuture::new(source, self.cursor, self.wait, &self.config))
            }
        }
    }
}

pin_project! {
    /// The future of [`StreamRequest::respond`]: ready at once for SSE, pending while a long
    /// poll waits.
    #[must_use = "the response exists only once this future is awaited"]
    pub struct Responder<S> {
        #[pin]
        state: ResponderState<S>,
    }
}

pin_project! {
    #[project = ResponderProj]
    enum ResponderState<S> {
        Ready { response: Option<Response<EventStreamBody<S>>> },
        LongPoll { #[pin] future: LongPollFuture<S> },
    }
}

impl<S> Responder<S> {
    pub(crate) fn ready(response: Response<EventStreamBody<S>>) -> Self {
        Responder {
            state: ResponderState::Ready {
                response: Some(response),
            },
        }
    }

    fn long_poll(future: LongPollFuture<S>) -> Self {
        Responder {
            state: ResponderState::LongPoll { future },
        }
    }
}

impl<S: EventSource> Future for Responder<S> {
    type Output = Response<EventStreamBody<S>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            ResponderProj::Ready { response } => {
                Poll::Ready(response.take().expect("Responder polled after completion"))
            }
            ResponderProj::LongPoll { future } => future.poll(cx),
        }
    }
}

impl<S> std::fmt::Debug for Responder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder").finish_non_exhaustive()
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
