use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use std::convert::Infallible;

use http::{Response, StatusCode};
use pin_project_lite::pin_project;

use crate::failure::come_back_later;
use crate::respond::text_response;
use crate::respond::RespondFuture;
use crate::{BoxError, EventFeed, EventStreamBody, RequestError, StreamRequest};

pin_project! {
    /// The response future of [`EventStreamService`](crate::EventStreamService).
    #[must_use = "the response exists only once this future is awaited"]
    pub struct EventStreamFuture<F, S> {
        #[pin]
        state: State<F, S>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S> {
        Calling { #[pin] future: F, request: Option<StreamRequest> },
        Responding { #[pin] responder: RespondFuture<S> },
    }
}

impl<F, S> EventStreamFuture<F, S> {
    pub(crate) fn rejected(response: Response<EventStreamBody<S>>) -> Self {
        EventStreamFuture {
            state: State::Responding {
                responder: RespondFuture::ready(response),
            },
        }
    }

    pub(crate) fn calling(future: F, request: StreamRequest) -> Self {
        EventStreamFuture {
            state: State::Calling {
                future,
                request: Some(request),
            },
        }
    }
}

impl<F, S, E> Future for EventStreamFuture<F, S>
where
    F: Future<Output = Result<S, E>>,
    S: EventFeed,
    E: Into<BoxError>,
{
    type Output = Result<Response<EventStreamBody<S>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future, request } => {
                    let result = ready!(future.poll(cx));
                    let request = request.take().expect("EventStreamFuture polled after completion");
                    let responder = match result {
                        Ok(source) => request.respond(source),
                        Err(error) => RespondFuture::ready(refusal(&request, error.into())),
                    };
                    this.state.set(State::Responding { responder });
                }
                StateProj::Responding { responder } => return responder.poll(cx).map(Ok),
            }
        }
    }
}

/// The answer to an inner service's error, by the crate's failure rule: a [`RequestError`]
/// is the client's fault (`400`); anything else is passing, so an SSE client is told to come
/// back (`200`, `retry:`) and a long poll gets `503` with `Retry-After`.
pub(crate) fn refusal<S>(request: &StreamRequest, error: BoxError) -> Response<EventStreamBody<S>> {
    match error.downcast::<RequestError>() {
        Ok(error) => {
            crate::measure::refused_request(&error);
            text_response(StatusCode::BAD_REQUEST, error)
        }
        Err(error) => {
            crate::measure::refused(crate::measure::Refused::BackendUnavailable);
            crate::trace::warn_event!("inner service failed", error = %error, transport = ?request.transport());
            let retry = request.config().retry.unwrap_or(crate::DEFAULT_RETRY);
            come_back_later(
                request.transport(),
                retry,
                format_args!("service unavailable: {error}"),
            )
        }
    }
}

impl<F, S> std::fmt::Debug for EventStreamFuture<F, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStreamFuture").finish_non_exhaustive()
    }
}
