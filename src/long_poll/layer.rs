use std::sync::Arc;

use tower_layer::Layer;

use crate::{EventStreamService, StreamConfig, Transport};

/// Like [`EventStreamLayer`](crate::EventStreamLayer), but always answers with a long poll
/// (a short poll when the request says `timeout=0`).
///
/// ```
/// use std::convert::Infallible;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_eventstream::{Event, LongPollLayer, StreamConfig};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
/// # rt.block_on(async {
/// let service = ServiceBuilder::new()
///     .layer(LongPollLayer::new(StreamConfig::default()))
///     .service(service_fn(|_request: http::Request<()>| async {
///         let ready = [Event::new("a").with_id("1"), Event::new("b").with_id("2")];
///         Ok::<_, Infallible>(futures_util::stream::iter(ready))
///     }));
/// let request = http::Request::get("/?timeout=0").body(()).unwrap();
/// let response = service.oneshot(request).await.unwrap();
/// assert_eq!(response.status(), 200);
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct LongPollLayer {
    config: Arc<StreamConfig>,
}

impl LongPollLayer {
    /// A layer with these settings.
    pub fn new(config: StreamConfig) -> Self {
        LongPollLayer {
            config: Arc::new(config),
        }
    }
}

impl<S> Layer<S> for LongPollLayer {
    type Service = EventStreamService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EventStreamService::new(inner, Arc::clone(&self.config), Some(Transport::LongPoll))
    }
}
