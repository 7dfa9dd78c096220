use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use crate::config::Responder;
use crate::{EventSource, EventStreamBody, StreamRequest};

pin_project! {
    /// The response future of [`EventStreamService`](super::EventStreamService).
    pub struct ResponseFuture<F, S> {
        #[pin]
        state: State<F, S>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S> {
        Calling { #[pin] future: F, request: Option<StreamRequest> },
        Responding { #[pin] responder: Responder<S> },
    }
}

impl<F, S> ResponseFuture<F, S> {
    pub(crate) fn rejected(response: Response<EventStreamBody<S>>) -> Self {
        ResponseFuture {
            state: State::Responding {
                responder: Responder::ready(response),
            },
        }
    }

    pub(crate) fn calling(future: F, request: StreamRequest) -> Self {
        ResponseFuture {
            state: State::Calling {
                future,
                request: Some(request),
            },
        }
    }
}

impl<F, S, E> Future for ResponseFuture<F, S>
where
    F: Future<Output = Result<S, E>>,
    S: EventSource,
{
    type Output = Result<Response<EventStreamBody<S>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future, request } => {
                    let source = ready!(future.poll(cx))?;
                    let request = request.take().expect("ResponseFuture polled after completion");
                    this.state.set(State::Responding {
                        responder: request.respond(source),
                    });
                }
                StateProj::Responding { responder } => return responder.poll(cx).map(Ok),
            }
        }
    }
}

impl<F, S> std::fmt::Debug for ResponseFuture<F, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
