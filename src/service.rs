//! [`EventLogService`]: a ready service that serves an [`EventLog`] at a route.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use tower_service::Service;

use crate::body::text_response;
use crate::{
    CursorError, EventLog, EventStreamBody, RequestError, StreamConfig, StreamRequest, SubscribeError,
};

/// Serves an [`EventLog`] over SSE, long poll and short poll at one route.
///
/// - `GET` (or `HEAD`) with `Accept: text/event-stream`: an SSE stream, resumed after
///   `Last-Event-ID` (header) or `lastEventId` (query).
/// - Any other `GET`: a long poll, waiting up to `timeout` milliseconds (query, clamped to
///   [`StreamConfig::max_wait`]); `timeout=0` is a short poll.
/// - A malformed cursor or `timeout`: `400` with the reason. Other methods: `405`.
///   A failing log backend: `503`.
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
/// log.push(Event::new("hello"));
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

/// The response future of [`EventLogService`].
pub type EventLogFuture<L> = Pin<
    Box<
        dyn Future<Output = Result<Response<EventStreamBody<<L as EventLog>::Subscription>>, Infallible>>
            + Send,
    >,
>;

impl<L: EventLog, B> Service<Request<B>> for EventLogService<L> {
    type Response = Response<EventStreamBody<L::Subscription>>;
    type Error = Infallible;
    type Future = EventLogFuture<L>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (parts, _body) = request.into_parts();
        if parts.method != Method::GET && parts.method != Method::HEAD {
            let mut response = text_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET and HEAD are served here",
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Box::pin(std::future::ready(Ok(response)));
        }
        let stream_request = match StreamRequest::from_parts(&parts, Arc::clone(&self.config)) {
            Ok(stream_request) => stream_request,
            Err(error) => return Box::pin(std::future::ready(Ok(bad_request(error)))),
        };
        let log = self.log.clone();
        Box::pin(async move {
            let subscription = match log.subscribe(stream_request.cursor()).await {
                Ok(subscription) => subscription,
                Err(error) => return Ok(subscribe_error_response(error)),
            };
            Ok(stream_request.respond(subscription).await)
        })
    }
}

fn bad_request<S>(error: impl std::fmt::Display) -> Response<EventStreamBody<S>> {
    text_response(StatusCode::BAD_REQUEST, error)
}

pub(crate) fn subscribe_error_response<S, E: std::error::Error>(
    error: SubscribeError<E>,
) -> Response<EventStreamBody<S>> {
    match error {
        SubscribeError::InvalidCursor(error) => bad_request(RequestError::Cursor(error)),
        SubscribeError::Backend(error) => {
            #[cfg(feature = "tracing")]
            tracing::warn!(%error, "event log unavailable");
            text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format_args!("event log unavailable: {error}"),
            )
        }
    }
}

impl From<CursorError> for SubscribeError<Infallible> {
    fn from(error: CursorError) -> Self {
        SubscribeError::InvalidCursor(error)
    }
}
