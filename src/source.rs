//! What the transports send: anything that yields events, with gaps made explicit.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::{BoxError, Event, EventId};

/// One item of an event source.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// The next event.
    Event(Event),
    /// Events between the client's position and what follows were lost (the history no
    /// longer holds them, the cursor is from another log instance, or the subscriber fell
    /// behind). The client must reload its state. The id, if any, is the position just
    /// before the events that follow, so a reconnect does not report the same gap again.
    Gap(Option<EventId>),
    /// The client's position moved to this id without an event for it to see (a
    /// subscription that started late, or events hidden from this client). SSE sends it as a
    /// checkpoint block (see [`StreamConfig::checkpoint_event`](crate::StreamConfig::checkpoint_event)),
    /// which moves a browser's `Last-Event-ID` and reaches no `message` listener; a long
    /// poll answers it as `lastEventId`.
    Checkpoint(EventId),
}

/// A source of events for the transports: a log subscription, or any
/// `Stream<Item = Result<Event, E>>`.
///
/// [`EventStreamLayer`](crate::EventStreamLayer) accepts an inner service whose response is an
/// `EventSource`.
pub trait EventSource: Send + 'static {
    /// The error that ends the source.
    type Error: Into<BoxError>;

    /// The next delivery; `Ready(None)` ends the stream.
    fn poll_delivery(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Delivery, Self::Error>>>;

    /// An optional fast path for SSE, as `AsyncWrite::poll_write_vectored` is for writers:
    /// appends the SSE wire bytes of the next ready events to `out` (stopping once it holds
    /// `max_bytes`) and returns how many bytes it appended, without handing out each event.
    ///
    /// - `Ready(Some(Ok(0)))`: "use [`poll_delivery`](EventSource::poll_delivery)". The
    ///   default, and the required answer whenever the next delivery is not an event (a gap
    ///   or a checkpoint), so that the transport writes it.
    /// - `Ready(Some(Ok(n)))`, `n > 0`: `n` bytes of complete event blocks were appended.
    /// - `Pending`: nothing is ready; the task will be woken.
    /// - `Ready(None)` and `Ready(Some(Err(_)))`: as for `poll_delivery`.
    ///
    /// A log whose events are shared (as [`MemoryLog`](crate::MemoryLog)'s are) can copy
    /// their cached bytes ([`Event::to_bytes`](crate::Event::to_bytes)) under one lock instead
    /// of cloning each event out; the long poll never calls this.
    fn poll_encoded(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _out: &mut bytes::BytesMut,
        _max_bytes: usize,
    ) -> Poll<Option<Result<usize, Self::Error>>> {
        Poll::Ready(Some(Ok(0)))
    }

    /// The position after everything delivered so far, if the source knows it. A long poll
    /// answers with it as `lastEventId` when no event carried an id, and an SSE stream sends
    /// it on open. A plain `Stream` knows none: a poll that times out without a cursor then
    /// answers `"lastEventId":""` and the client's next poll starts at the live end, so
    /// sources that must never miss an event (such as log subscriptions) implement this.
    fn position(&self) -> Option<EventId> {
        None
    }
}

impl<S, E> EventSource for S
where
    S: Stream<Item = Result<Event, E>> + Send + 'static,
    E: Into<BoxError>,
{
    type Error = E;

    fn poll_delivery(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery, E>>> {
        self.poll_next(cx)
            .map(|item| item.map(|result| result.map(Delivery::Event)))
    }
}

/// A source with no events, for answers that carry none.
#[cfg(feature = "axum")]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NoEvents;

#[cfg(feature = "axum")]
impl EventSource for NoEvents {
    type Error = std::convert::Infallible;

    fn poll_delivery(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Delivery, Self::Error>>> {
        Poll::Ready(None)
    }
}
