use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower_service::Service;

use super::ResponseFuture;
use crate::body::text_response;
use crate::{EventSource, EventStreamBody, StreamConfig, StreamRequest, Transport};

/// The service of [`EventStreamLayer`](crate::EventStreamLayer),
/// [`SseLayer`](crate::SseLayer) and [`LongPollLayer`](crate::LongPollLayer): calls the inner
/// service for an [`EventSource`] and answers with the chosen transport.
#[derive(Debug, Clone)]
pub struct EventStreamService<S> {
    inner: S,
    config: Arc<StreamConfig>,
    forced: Option<Transport>,
}

impl<S> EventStreamService<S> {
    pub(crate) fn new(inner: S, config: Arc<StreamConfig>, forced: Option<Transport>) -> Self {
        EventStreamService {
            inner,
            config,
            forced,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for EventStreamService<S>
where
    S: Service<Request<B>>,
    S::Response: EventSource,
{
    type Response = Response<EventStreamBody<S::Response>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        match StreamRequest::parse(&parts, Arc::clone(&self.config), self.forced) {
            Err(error) => ResponseFuture::rejected(text_response(StatusCode::BAD_REQUEST, error)),
            Ok(stream_request) => {
                if let Some(cursor) = stream_request.cursor() {
                    parts.extensions.insert(cursor.clone());
                }
                parts.extensions.insert(stream_request.clone());
                let future = self.inner.call(Request::from_parts(parts, body));
                ResponseFuture::calling(future, stream_request)
            }
        }
    }
}
