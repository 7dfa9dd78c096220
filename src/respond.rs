//! What a request for events is answered with: the body of every transport, and the
//! future of [`StreamRequest::respond`](crate::StreamRequest::respond).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::transport::long_poll::LongPollFuture;
use crate::transport::sse::SseBody;
use crate::{BoxError, EventFeed};

pin_project! {
    /// The body of a response from this crate: an SSE stream, or a complete long-poll or
    /// error answer.
    pub struct EventStreamBody<S> {
        #[pin]
        kind: Kind<S>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S> {
        Stream { #[pin] body: SseBody<S> },
        Complete { bytes: Option<Bytes> },
    }
}

impl<S> EventStreamBody<S> {
    pub(crate) fn stream(body: SseBody<S>) -> Self {
        EventStreamBody {
            kind: Kind::Stream { body },
        }
    }

    /// A body of one chunk.
    pub fn complete(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        EventStreamBody {
            kind: Kind::Complete {
                bytes: (!bytes.is_empty()).then_some(bytes),
            },
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        EventStreamBody {
            kind: Kind::Complete { bytes: None },
        }
    }
}

/// An empty body, as tower-http's `TimeoutLayer` and `CorsLayer` need for their own answers.
impl<S> Default for EventStreamBody<S> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<S: EventFeed> Body for EventStreamBody<S> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Stream { body } => body.poll_frame(cx),
            KindProj::Complete { bytes } => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Stream { body } => body.is_end_stream(),
            Kind::Complete { bytes } => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Stream { body } => body.size_hint(),
            Kind::Complete { bytes } => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

impl<S> std::fmt::Debug for EventStreamBody<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Stream { body } => f.debug_tuple("EventStreamBody").field(body).finish(),
            Kind::Complete { bytes } => f.debug_tuple("EventStreamBody").field(bytes).finish(),
        }
    }
}

/// A plain-text answer such as `400` with the reason.
pub(crate) fn text_response<S>(
    status: StatusCode,
    message: impl std::fmt::Display,
) -> Response<EventStreamBody<S>> {
    let mut response = Response::new(EventStreamBody::complete(format!("{message}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pin_project! {
    /// The future of [`StreamRequest::respond`]: ready at once for SSE, pending while a long
    /// poll waits.
    #[must_use = "the response exists only once this future is awaited"]
    pub struct RespondFuture<S> {
        #[pin]
        state: RespondFutureState<S>,
    }
}

pin_project! {
    #[project = RespondFutureProj]
    enum RespondFutureState<S> {
        Ready { response: Option<Response<EventStreamBody<S>>> },
        LongPoll { #[pin] future: LongPollFuture<S> },
    }
}

impl<S> RespondFuture<S> {
    pub(crate) fn ready(response: Response<EventStreamBody<S>>) -> Self {
        RespondFuture {
            state: RespondFutureState::Ready {
                response: Some(response),
            },
        }
    }

    pub(crate) fn long_poll(future: LongPollFuture<S>) -> Self {
        RespondFuture {
            state: RespondFutureState::LongPoll { future },
        }
    }
}

impl<S: EventFeed> Future for RespondFuture<S> {
    type Output = Response<EventStreamBody<S>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            RespondFutureProj::Ready { response } => {
                Poll::Ready(response.take().expect("RespondFuture polled after completion"))
            }
            RespondFutureProj::LongPoll { future } => future.poll(cx),
        }
    }
}

impl<S> std::fmt::Debug for RespondFuture<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RespondFuture").finish_non_exhaustive()
    }
}

/// `405` for anything but `GET` and `HEAD`, the only methods an event route serves; `None`
/// for those two.
pub(crate) fn refuse_method<S>(method: &http::Method) -> Option<Response<EventStreamBody<S>>> {
    if method == http::Method::GET || method == http::Method::HEAD {
        return None;
    }
    let mut response = text_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "only GET and HEAD are served here",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    Some(response)
}
