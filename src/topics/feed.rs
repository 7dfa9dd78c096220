//! [`TopicFeed`]: one subscriber's reading of a topic, counted for the limits, filtered by
//! its [`Access`](super::Access), ended when its access does.

use crate::feed::Encoded;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Sleep;

use super::access::Filter;
use super::registry::Admission;
use crate::random::jittered;
use crate::{Delivery, Event, EventFeed, EventId, EventLog, RetryingSubscription};

/// A subscriber's feed of one topic, as [`Topics::serve`](super::Topics::serve) answers
/// with: the log's subscription (held while the backend is away), counted against the
/// subscriber limits while it lives.
pub struct TopicFeed<L: EventLog> {
    inner: RetryingSubscription<L>,
    _admission: Admission<L>,
    filter: Option<Filter>,
    /// The newest event hidden by the filter, sent as a checkpoint once nothing visible
    /// follows it at once, so the client's cursor moves past it.
    hidden: Option<EventId>,
    deadline: Option<Pin<Box<Sleep>>>,
    retry: Duration,
    ended: bool,
}

impl<L: EventLog> TopicFeed<L> {
    pub(crate) fn new(
        inner: RetryingSubscription<L>,
        admission: Admission<L>,
        filter: Option<Filter>,
        for_at_most: Option<Duration>,
        retry: Duration,
    ) -> Self {
        TopicFeed {
            inner,
            _admission: admission,
            filter,
            hidden: None,
            deadline: for_at_most.map(|limit| Box::pin(tokio::time::sleep(limit))),
            retry,
            ended: false,
        }
    }

    /// Whether the access has run out (then the feed ends with a `retry:` hint).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline
            .as_mut()
            .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready())
    }
}

type FeedError<L> = <<L as EventLog>::Subscription as EventFeed>::Error;

impl<L: EventLog> EventFeed for TopicFeed<L> {
    type Error = FeedError<L>;

    fn poll_delivery(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Delivery, FeedError<L>>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if this.expired(cx) {
            // The browser comes back after the hint and is checked again.
            this.ended = true;
            let hint = Event::empty().with_retry(jittered(this.retry));
            return Poll::Ready(Some(Ok(Delivery::Event(hint))));
        }
        loop {
            match Pin::new(&mut this.inner).poll_delivery(cx) {
                Poll::Ready(Some(Ok(Delivery::Event(event)))) => {
                    if this.filter.as_ref().is_some_and(|visible| !visible(&event)) {
                        this.hidden = event.id().cloned();
                        continue;
                    }
                    this.hidden = None;
                    return Poll::Ready(Some(Ok(Delivery::Event(event))));
                }
                Poll::Ready(Some(Ok(other))) => {
                    // A gap or checkpoint names a position past the hidden events.
                    this.hidden = None;
                    return Poll::Ready(Some(Ok(other)));
                }
                // Nothing more now, or ever (a finished log): the client's cursor first moves
                // past the hidden events, so that it comes back at the end.
                quiet @ (Poll::Pending | Poll::Ready(None)) => {
                    return match this.hidden.take() {
                        Some(id) => Poll::Ready(Some(Ok(Delivery::Checkpoint(id)))),
                        None => quiet,
                    };
                }
                other => return other,
            }
        }
    }

    fn poll_encoded(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut bytes::BytesMut,
        max_bytes: usize,
    ) -> Poll<Option<Result<Encoded, FeedError<L>>>> {
        let this = self.get_mut();
        // A filtered feed looks at each event; an unfiltered one copies as fast as the log.
        if this.filter.is_some() || this.ended || this.hidden.is_some() || this.expired(cx) {
            return Poll::Ready(Some(Ok(Encoded::NONE)));
        }
        Pin::new(&mut this.inner).poll_encoded(cx, out, max_bytes)
    }

    fn position(&self) -> Option<EventId> {
        self.inner.position()
    }

    fn honours_cursor(&self) -> bool {
        true
    }

    fn is_finished(&self) -> bool {
        // Ended by the access's expiry, the client must come back to be checked again.
        !self.ended && self.hidden.is_none() && self.inner.is_finished()
    }
}

impl<L: EventLog> fmt::Debug for TopicFeed<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicFeed")
            .field("filtered", &self.filter.is_some())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}
