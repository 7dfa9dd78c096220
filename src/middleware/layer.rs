use std::sync::Arc;

use tower_layer::Layer;

use super::EventStreamService;
use crate::{StreamConfig, Transport};

/// Wraps a service whose response is an [`EventFeed`](crate::EventFeed) and answers
/// with SSE or long poll: as the request asks ([`new`](EventStreamLayer::new), see
/// [`Transport::negotiate`](crate::Transport::negotiate)), or always with one transport
/// ([`sse`](EventStreamLayer::sse), [`long_poll`](EventStreamLayer::long_poll)).
///
/// The layer parses the cursor and puts it into the request extensions as
/// [`LastEventId`](crate::LastEventId) (and the whole [`StreamRequest`](crate::StreamRequest)),
/// so the inner service can resume from it. A malformed cursor is answered with `400`
/// without calling the inner service.
///
/// A plain `Stream` of events is **live-only**: a client that comes back with a cursor is
/// told it may have missed events (SSE `reset`, long poll `"reset": true`), never silently
/// resumed at the live end. A service that starts its stream right after the cursor says so
/// with [`Resumed`](crate::Resumed) (or an [`EventFeed`](crate::EventFeed) of its own); an
/// application whose stream cannot resume [`fill`](crate::fill)s a log from it instead.
///
/// ```
/// use std::convert::Infallible;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_eventstream::{Event, EventStreamLayer, LastEventId, Resumed, StreamConfig};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
/// # rt.block_on(async {
/// // An existing service that produces events, resuming after the client's cursor.
/// let ticks = service_fn(|request: http::Request<()>| async move {
///     let after: u64 = request
///         .extensions()
///         .get::<LastEventId>()
///         .and_then(|cursor| cursor.as_str().parse().ok())
///         .unwrap_or(0);
///     let events = (after + 1..=after + 3)
///         .map(|n| Event::new(format!("tick {n}")).with_id(n.to_string()));
///     Ok::<_, Infallible>(Resumed::new(futures_util::stream::iter(events)))
/// });
/// let service = ServiceBuilder::new()
///     .layer(EventStreamLayer::new(StreamConfig::default()))
///     .service(ticks);
/// let request = http::Request::get("/events?lastEventId=7&timeout=0").body(()).unwrap();
/// let response = service.oneshot(request).await.unwrap();
/// assert_eq!(response.headers()["content-type"], "application/json");
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct EventStreamLayer {
    config: Arc<StreamConfig>,
    forced: Option<Transport>,
}

impl EventStreamLayer {
    /// Answers with the transport the request negotiates.
    pub fn new(config: StreamConfig) -> Self {
        EventStreamLayer {
            config: Arc::new(config),
            forced: None,
        }
    }

    /// Always answers with SSE.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use tower::{service_fn, ServiceBuilder, ServiceExt};
    /// use tower_eventstream::{Event, EventStreamLayer, StreamConfig};
    ///
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// # rt.block_on(async {
    /// // Any stream of events becomes an SSE endpoint.
    /// let service = ServiceBuilder::new()
    ///     .layer(EventStreamLayer::sse(StreamConfig::default()))
    ///     .service(service_fn(|_request: http::Request<()>| async {
    ///         let events = futures_util::stream::iter(vec![Ok::<_, Infallible>(Event::new("tick"))]);
    ///         Ok::<_, Infallible>(events)
    ///     }));
    /// let response = service.oneshot(http::Request::new(())).await.unwrap();
    /// assert_eq!(response.headers()["content-type"], "text/event-stream");
    /// # });
    /// ```
    pub fn sse(config: StreamConfig) -> Self {
        EventStreamLayer {
            config: Arc::new(config),
            forced: Some(Transport::Sse),
        }
    }

    /// Always answers with a long poll (a short poll when the request says `timeout=0`).
    pub fn long_poll(config: StreamConfig) -> Self {
        EventStreamLayer {
            config: Arc::new(config),
            forced: Some(Transport::LongPoll),
        }
    }
}

impl<S> Layer<S> for EventStreamLayer {
    type Service = EventStreamService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EventStreamService::new(inner, Arc::clone(&self.config), self.forced)
    }
}
