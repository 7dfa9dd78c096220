use std::convert::Infallible;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Request, Response, StatusCode};
use tower_service::Service;

use super::{refusal, EventStreamFuture};
use crate::respond::text_response;
use crate::{BoxError, EventFeed, EventStreamBody, StreamConfig, StreamRequest, Transport};

/// The service of [`EventStreamLayer`](crate::EventStreamLayer): calls the inner service for
/// an [`EventFeed`] and answers with the chosen transport.
///
/// An error of the inner service is answered by the crate's
/// [failure rule](crate#what-a-failure-answers) instead of being passed up: a
/// [`RequestError`](crate::RequestError) is the client's fault (`400`); any other error is
/// passing, so an SSE client gets `200` with a jittered `retry:` hint and comes back, and a
/// long poll gets `503` with `Retry-After`. The service's own error type is therefore
/// [`Infallible`], and it fits axum's `route_service` as it is.
#[derive(Debug)]
pub struct EventStreamService<S> {
    inner: S,
    config: Arc<StreamConfig>,
    forced: Option<Transport>,
    /// The inner service's `poll_ready` failure, answered on the next call.
    not_ready: Option<BoxError>,
}

impl<S: Clone> Clone for EventStreamService<S> {
    fn clone(&self) -> Self {
        EventStreamService::new(self.inner.clone(), Arc::clone(&self.config), self.forced)
    }
}

impl<S> EventStreamService<S> {
    pub(crate) fn new(inner: S, config: Arc<StreamConfig>, forced: Option<Transport>) -> Self {
        EventStreamService {
            inner,
            config,
            forced,
            not_ready: None,
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
    S::Response: EventFeed,
    S::Error: Into<BoxError>,
{
    type Response = Response<EventStreamBody<S::Response>>;
    type Error = Infallible;
    type Future = EventStreamFuture<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.not_ready.is_none() {
            if let Err(error) = ready!(self.inner.poll_ready(cx)) {
                self.not_ready = Some(error.into());
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        match StreamRequest::parse(&parts, Arc::clone(&self.config), self.forced) {
            Err(error) => {
                crate::measure::refused_request(&error);
                EventStreamFuture::rejected(text_response(StatusCode::BAD_REQUEST, error))
            }
            Ok(stream_request) => {
                if let Some(error) = self.not_ready.take() {
                    return EventStreamFuture::rejected(refusal(&stream_request, error));
                }
                if let Some(cursor) = stream_request.cursor() {
                    parts.extensions.insert(cursor.clone());
                }
                parts.extensions.insert(stream_request.clone());
                let future = self.inner.call(Request::from_parts(parts, body));
                EventStreamFuture::calling(future, stream_request)
            }
        }
    }
}
