//! What a request for events gets when something fails: the rule, in one place.
//!
//! The rule itself is documented for users in the crate docs ("What a failure answers");
//! this module holds its machinery: the held subscription, the jittered hints and the
//! answer to a passing fault.

use crate::feed::Encoded;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use http::{header, HeaderValue, Response, StatusCode};
use tokio::time::Sleep;

use crate::log::StartPosition;
use crate::random::jittered;
use crate::respond::text_response;
use crate::transport::wire::write_retry;
use crate::{
    Delivery, EventFeed, EventId, EventLog, EventStreamBody, LastEventId, SubscribeError, Transport,
};

/// The first pause before a failed subscription is tried again; it doubles up to
/// [`MAX_BACKOFF`].
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest pause between two subscription attempts of a held stream.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The answer to a passing fault that this request cannot wait out: for SSE a `200` stream
/// that only tells the browser when to come back, for a long poll `503` with `Retry-After`.
pub(crate) fn come_back_later<S>(
    transport: Transport,
    retry: Duration,
    reason: impl std::fmt::Display,
) -> Response<EventStreamBody<S>> {
    match transport {
        Transport::Sse => {
            let mut hint = BytesMut::with_capacity(48);
            hint.put_slice(b": temporarily unavailable\n");
            write_retry(&mut hint, jittered(retry));
            hint.put_slice(b"\n");
            let mut response = Response::new(EventStreamBody::complete(hint.freeze()));
            crate::transport::sse::headers(&mut response);
            response
        }
        Transport::LongPoll => {
            let mut response = text_response(StatusCode::SERVICE_UNAVAILABLE, reason);
            let seconds = jittered(retry).as_secs_f64().ceil().max(1.0) as u64;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
    }
}

type Attempt<L> = Pin<
    Box<
        dyn Future<Output = Result<<L as EventLog>::Subscription, SubscribeError<<L as EventLog>::Error>>>
            + Send,
    >,
>;

/// A subscription to an [`EventLog`] that keeps trying to start while the log's backend is
/// unavailable, so that an SSE stream can be held open (keep-alives flowing) instead of
/// refused; see [`StreamRequest::serve`](crate::StreamRequest::serve).
///
/// Once subscribed it is the log's subscription: same events, same speed. A subscription
/// that started late sends the client's new position as a [`Delivery::Checkpoint`]; a cursor
/// the log turns out not to know (checked only once the backend answers) becomes a
/// [`Delivery::Gap`] followed by the live events, since the stream has already begun.
pub struct RetryingSubscription<L: EventLog> {
    state: State<L>,
}

enum State<L: EventLog> {
    Live(L::Subscription),
    Waiting(Box<Waiting<L>>),
}

struct Waiting<L: EventLog> {
    log: L,
    cursor: Option<LastEventId>,
    /// Where to start without a cursor.
    start: StartPosition,
    attempt: Option<Attempt<L>>,
    pause: Pin<Box<Sleep>>,
    backoff: Duration,
    /// The log refused the client's cursor: the subscription starts fresh and owes a gap.
    cursor_refused: bool,
}

impl<L: EventLog> RetryingSubscription<L> {
    pub(crate) fn live(subscription: L::Subscription) -> Self {
        RetryingSubscription {
            state: State::Live(subscription),
        }
    }

    /// Starts waiting: the first new attempt comes after the first backoff pause.
    pub(crate) fn waiting(log: L, cursor: Option<LastEventId>, start: StartPosition) -> Self {
        RetryingSubscription {
            state: State::Waiting(Box::new(Waiting {
                log,
                cursor,
                start,
                attempt: None,
                pause: Box::pin(tokio::time::sleep(jittered(FIRST_BACKOFF))),
                backoff: FIRST_BACKOFF,
                cursor_refused: false,
            })),
        }
    }

    /// The log's subscription, once it has started.
    pub fn subscription(&self) -> Option<&L::Subscription> {
        match &self.state {
            State::Live(subscription) => Some(subscription),
            State::Waiting(_) => None,
        }
    }
}

impl<L: EventLog> Waiting<L> {
    /// Drives attempts until one succeeds; returns the subscription and what to tell the
    /// client about its position.
    fn poll_subscribed(&mut self, cx: &mut Context<'_>) -> Poll<(L::Subscription, Option<Delivery>)> {
        loop {
            let Some(attempt) = self.attempt.as_mut() else {
                ready!(self.pause.as_mut().poll(cx));
                let log = self.log.clone();
                let (cursor, start) = (self.cursor.clone(), self.start);
                self.attempt = Some(Box::pin(async move {
                    match cursor {
                        Some(cursor) => log.subscribe(Some(&cursor)).await,
                        None => log.subscribe_fresh(start).await,
                    }
                }));
                continue;
            };
            match ready!(attempt.as_mut().poll(cx)) {
                Ok(subscription) => {
                    self.attempt = None;
                    let announce = subscription.position().and_then(|position| {
                        if self.cursor_refused {
                            // Checked only now that the backend answers: not this log's cursor.
                            crate::measure::reset(crate::measure::GapCause::OtherEpoch);
                            Some(Delivery::Gap(Some(position)))
                        } else if self.cursor.as_ref().map(LastEventId::as_str) == Some(position.as_str()) {
                            None
                        } else {
                            Some(Delivery::Checkpoint(position))
                        }
                    });
                    return Poll::Ready((subscription, announce));
                }
                Err(SubscribeError::InvalidCursor(error)) => {
                    crate::trace::debug_event!("held stream: cursor refused, starting afresh", error = %error);
                    self.attempt = None;
                    self.cursor = None;
                    self.cursor_refused = true;
                    self.pause.as_mut().reset(tokio::time::Instant::now());
                }
                Err(SubscribeError::Backend(error)) => {
                    crate::trace::warn_event!(
                        "event log unavailable; holding the stream",
                        error = %error,
                        retry_in = ?self.backoff,
                    );
                    self.attempt = None;
                    let pause = jittered(self.backoff);
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                    self.pause.as_mut().reset(tokio::time::Instant::now() + pause);
                }
            }
        }
    }
}

impl<L: EventLog> EventFeed for RetryingSubscription<L> {
    type Error = <L::Subscription as EventFeed>::Error;

    fn poll_delivery(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Delivery, Self::Error>>> {
        let this = self.get_mut();
        if let State::Waiting(waiting) = &mut this.state {
            let (subscription, announce) = ready!(waiting.poll_subscribed(cx));
            this.state = State::Live(subscription);
            if let Some(announce) = announce {
                return Poll::Ready(Some(Ok(announce)));
            }
        }
        match &mut this.state {
            State::Live(subscription) => Pin::new(subscription).poll_delivery(cx),
            State::Waiting(_) => unreachable!("a held subscription became live above"),
        }
    }

    fn poll_encoded(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut BytesMut,
        max_bytes: usize,
    ) -> Poll<Option<Result<Encoded, Self::Error>>> {
        match &mut self.get_mut().state {
            State::Live(subscription) => Pin::new(subscription).poll_encoded(cx, out, max_bytes),
            // Starting goes through poll_delivery, which can announce the position.
            State::Waiting(_) => Poll::Ready(Some(Ok(Encoded::NONE))),
        }
    }

    /// The subscription's position; none while it has not started (the client keeps the
    /// cursor it sent, and learns the new one from a checkpoint once it starts).
    fn position(&self) -> Option<EventId> {
        self.subscription().and_then(EventFeed::position)
    }

    fn honours_cursor(&self) -> bool {
        true
    }

    fn is_finished(&self) -> bool {
        self.subscription().is_some_and(EventFeed::is_finished)
    }
}

impl<L: EventLog> std::fmt::Debug for RetryingSubscription<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Live(_) => "live",
            State::Waiting(_) => "waiting for the log",
        };
        f.debug_struct("RetryingSubscription")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
