//! [`EventLogService`]: a ready service that serves an [`EventLog`] at a route.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower_service::Service;

use crate::failure::{come_back_later, RetryingSubscription};
use crate::measure::{self, Refused};
use crate::respond::{refuse_method, text_response};
use crate::{
    CursorError, EventLog, EventStreamBody, LastEventId, RequestError, StreamConfig, StreamRequest,
    SubscribeError, Transport,
};

/// Serves an [`EventLog`] over SSE, long poll and short poll at one route.
///
/// - `GET` (or `HEAD`) with `Accept: text/event-stream`: an SSE stream, resumed after
///   `Last-Event-ID` (header) or `lastEventId` (query).
/// - Any other `GET`: a long poll, waiting up to `timeout` milliseconds (query, clamped to
///   [`StreamConfig::max_wait`]); `timeout=0` is a short poll.
/// - A malformed cursor or `timeout`: `400` with the reason. Other methods: `405`.
/// - A failing log backend: an SSE stream is held open until the log answers, a long poll
///   gets `503` with `Retry-After` (see [`StreamRequest::serve`]).
///
/// It accepts any request body type, so it fits axum's `Router::route_service`, hyper-util's
/// `TowerToHyperService` and tonic-style stacks alike.
///
/// ```
/// use tower::ServiceExt;
/// use tower_eventstream::{Event, EventLogService, MemoryLog};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
/// # rt.block_on(async {
/// let log = MemoryLog::new();
/// log.push(Event::new("hello")).unwrap();
/// let service = EventLogService::new(log.clone());
///
/// let cursor = format!("{}-0", log.epoch());
/// let request = http::Request::get(format!("/events?lastEventId={cursor}&timeout=0"))
///     .body(())
///     .unwrap();
/// let response = service.oneshot(request).await.unwrap();
/// assert_eq!(response.status(), 200);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct EventLogService<L> {
    log: L,
    config: Arc<StreamConfig>,
}

impl<L: EventLog> EventLogService<L> {
    /// Serves `log` with the default settings.
    pub fn new(log: L) -> Self {
        EventLogService {
            log,
            config: Arc::new(StreamConfig::default()),
        }
    }

    /// Replaces the settings.
    pub fn with_config(mut self, config: StreamConfig) -> Self {
        self.config = Arc::new(config);
        self
    }

    /// The served log.
    pub fn log(&self) -> &L {
        &self.log
    }
}

type BoxedAnswer<L> = Pin<
    Box<dyn Future<Output = Result<Response<EventStreamBody<RetryingSubscription<L>>>, Infallible>> + Send>,
>;

/// The response future of [`EventLogService`]. (It boxes [`EventLog::subscribe`]'s future,
/// whose type a trait method cannot name; the box is one allocation per request.)
#[must_use = "the response exists only once this future is awaited"]
pub struct EventLogFuture<L: EventLog> {
    answer: BoxedAnswer<L>,
}

impl<L: EventLog> Future for EventLogFuture<L> {
    type Output = Result<Response<EventStreamBody<RetryingSubscription<L>>>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.answer.as_mut().poll(cx)
    }
}

impl<L: EventLog> std::fmt::Debug for EventLogFuture<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLogFuture").finish_non_exhaustive()
    }
}

impl<L: EventLog, B> Service<Request<B>> for EventLogService<L> {
    type Response = Response<EventStreamBody<RetryingSubscription<L>>>;
    type Error = Infallible;
    type Future = EventLogFuture<L>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (parts, _body) = request.into_parts();
        if let Some(refusal) = refuse_method(&parts.method) {
            return EventLogFuture {
                answer: Box::pin(std::future::ready(Ok(refusal))),
            };
        }
        let stream_request = match StreamRequest::from_parts(&parts, Arc::clone(&self.config)) {
            Ok(stream_request) => stream_request,
            Err(error) => {
                measure::refused_request(&error);
                return EventLogFuture {
                    answer: Box::pin(std::future::ready(Ok(bad_request(error)))),
                };
            }
        };
        let log = self.log.clone();
        EventLogFuture {
            answer: Box::pin(async move { Ok(stream_request.serve(&log).await) }),
        }
    }
}

impl StreamRequest {
    /// Subscribes to `log` after the client's cursor and answers with the negotiated
    /// transport, following the crate's [failure rule](crate#what-a-failure-answers):
    ///
    /// - a cursor the log could not have issued: `400` with the reason;
    /// - the log's backend unavailable: an SSE stream is **held** (`200`, keep-alives,
    ///   the subscription retried with backoff, then every event after the cursor), because
    ///   a browser's `EventSource` closes for good on any other status; a long poll gets
    ///   `503` with `Retry-After`.
    ///
    /// This is what [`EventLogService`] answers; in an axum handler (with the
    /// [`StreamRequest`] extractor) it is the whole job, as the README shows.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_eventstream::{Event, MemoryLog, StreamConfig, StreamRequest};
    ///
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// # rt.block_on(async {
    /// let log = MemoryLog::new();
    /// let (parts, ()) = http::Request::get("/events?timeout=0").body(()).unwrap().into_parts();
    /// let request = StreamRequest::from_parts(&parts, Arc::new(StreamConfig::default())).unwrap();
    /// let response = request.serve(&log).await;
    /// assert_eq!(response.status(), 200);
    /// assert_eq!(response.headers()["content-type"], "application/json");
    /// # });
    /// ```
    pub async fn serve<L: EventLog>(self, log: &L) -> Response<EventStreamBody<RetryingSubscription<L>>> {
        match self.open(log).await {
            Ok(subscription) => self.respond(subscription).await,
            Err(refusal) => refusal,
        }
    }

    /// Subscribes to `log` after the client's cursor, or holds the subscription while the
    /// backend is away (SSE), or answers at once (a bad cursor; a long poll or `HEAD` while
    /// the backend is away): the part of [`serve`](StreamRequest::serve) that topics share.
    pub(crate) async fn open<L: EventLog, S>(
        &self,
        log: &L,
    ) -> Result<RetryingSubscription<L>, Response<EventStreamBody<S>>> {
        self.open_at(log, self.cursor()).await
    }

    /// [`open`](StreamRequest::open) after `cursor` rather than the request's own (one topic's
    /// position in a composite cursor).
    pub(crate) async fn open_at<L: EventLog, S>(
        &self,
        log: &L,
        cursor: Option<&LastEventId>,
    ) -> Result<RetryingSubscription<L>, Response<EventStreamBody<S>>> {
        let subscribed = match cursor {
            Some(cursor) => log.subscribe(Some(cursor)).await,
            None => log.subscribe_fresh(self.config.start).await,
        };
        match subscribed {
            Ok(subscription) => Ok(RetryingSubscription::live(subscription)),
            Err(SubscribeError::InvalidCursor(error)) => {
                measure::refused(Refused::BadCursor);
                Err(bad_request(RequestError::Cursor(error)))
            }
            Err(SubscribeError::Backend(error)) => {
                crate::trace::warn_event!("event log unavailable", error = %error, transport = ?self.transport);
                match self.transport {
                    Transport::Sse if !self.head => Ok(RetryingSubscription::waiting(
                        log.clone(),
                        cursor.cloned(),
                        self.config.start,
                    )),
                    transport => Err({
                        measure::refused(Refused::BackendUnavailable);
                        come_back_later(
                            transport,
                            self.config.retry.unwrap_or(crate::DEFAULT_RETRY),
                            format_args!("event log unavailable: {error}"),
                        )
                    }),
                }
            }
        }
    }
}

pub(crate) fn bad_request<S>(error: impl std::fmt::Display) -> Response<EventStreamBody<S>> {
    text_response(StatusCode::BAD_REQUEST, error)
}

impl From<CursorError> for SubscribeError<Infallible> {
    fn from(error: CursorError) -> Self {
        SubscribeError::InvalidCursor(error)
    }
}
