use std::sync::Arc;

use tower_layer::Layer;

use crate::{EventStreamService, StreamConfig, Transport};

/// Like [`EventStreamLayer`](crate::EventStreamLayer), but always answers with SSE.
///
/// ```
/// use std::convert::Infallible;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_eventstream::{Event, SseLayer, StreamConfig};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
/// # rt.block_on(async {
/// // Any stream of events becomes an SSE endpoint.
/// let service = ServiceBuilder::new()
///     .layer(SseLayer::new(StreamConfig::default()))
///     .service(service_fn(|_request: http::Request<()>| async {
///         let events = futures_util::stream::iter(vec![Ok::<_, Infallible>(Event::new("tick"))]);
///         Ok::<_, Infallible>(events)
///     }));
/// let response = service.oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!(response.headers()["content-type"], "text/event-stream");
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct SseLayer {
    config: Arc<StreamConfig>,
}

impl SseLayer {
    /// A layer with these settings.
    pub fn new(config: StreamConfig) -> Self {
        SseLayer {
            config: Arc::new(config),
        }
    }
}

impl<S> Layer<S> for SseLayer {
    type Service = EventStreamService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EventStreamService::new(inner, Arc::clone(&self.config), Some(Transport::Sse))
    }
}
