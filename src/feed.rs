//! What the transports send: an [`EventFeed`] yields events, with gaps and checkpoints made
//! explicit.

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

/// What [`EventFeed::poll_encoded`] appended to a frame: its bytes, the events they carry,
/// and when the first of them was appended to its log, if known (the append-to-write delay
/// is measured from it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Encoded {
    /// Bytes of complete event blocks appended (`0`: none; use `poll_delivery`).
    pub bytes: usize,
    /// How many events those bytes carry.
    pub events: u64,
    /// When the first of them was appended to its log.
    pub first_appended: Option<std::time::Instant>,
}

impl Encoded {
    /// Nothing appended: the transport asks [`EventFeed::poll_delivery`] instead.
    pub const NONE: Encoded = Encoded {
        bytes: 0,
        events: 0,
        first_appended: None,
    };

    /// `bytes` of `events` complete event blocks.
    pub fn new(bytes: usize, events: u64) -> Self {
        Encoded {
            bytes,
            events,
            first_appended: None,
        }
    }

    /// The same, the first event appended to its log at `at`.
    pub fn first_appended_at(mut self, at: Option<std::time::Instant>) -> Self {
        self.first_appended = at;
        self
    }

    /// Whether nothing was appended.
    pub fn is_none(&self) -> bool {
        self.bytes == 0
    }
}

/// A feed of events for the transports: a log subscription, or any
/// `Stream<Item = Result<Event, E>>`. (Not to be confused with the browser's `EventSource`,
/// which reads what the transports write.)
///
/// [`EventStreamLayer`](crate::EventStreamLayer) accepts an inner service whose response is an
/// `EventFeed`. A feed of one's own implements [`poll_delivery`](EventFeed::poll_delivery)
/// and, where it knows one, [`position`](EventFeed::position):
///
/// ```
/// use std::convert::Infallible;
/// use std::pin::Pin;
/// use std::task::{Context, Poll};
/// use tower_eventstream::{Delivery, Event, EventId, EventFeed};
///
/// /// Counts down to zero, one event per number, with the number as the id.
/// struct Countdown(u32);
///
/// impl EventFeed for Countdown {
///     type Error = Infallible;
///
///     fn poll_delivery(
///         mut self: Pin<&mut Self>,
///         _cx: &mut Context<'_>,
///     ) -> Poll<Option<Result<Delivery, Infallible>>> {
///         if self.0 == 0 {
///             return Poll::Ready(None);
///         }
///         self.0 -= 1;
///         let event = Event::new(self.0.to_string()).with_id(self.0.to_string()).unwrap();
///         Poll::Ready(Some(Ok(Delivery::Event(event))))
///     }
///
///     fn position(&self) -> Option<EventId> {
///         EventId::new(self.0.to_string()).ok()
///     }
///
///     // A real feed would start after the client's cursor; this one only ever counts down.
///     fn honours_cursor(&self) -> bool {
///         false
///     }
/// }
///
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// use futures_util::StreamExt;
/// let data: Vec<String> = Countdown(3)
///     .into_stream()
///     .filter_map(|delivery| async move {
///         match delivery {
///             Ok(Delivery::Event(event)) => Some(event.data().to_owned()),
///             _ => None,
///         }
///     })
///     .collect()
///     .await;
/// assert_eq!(data, ["2", "1", "0"]);
/// # });
/// ```
pub trait EventFeed: Send + 'static {
    /// The error that ends the source.
    type Error: Into<BoxError>;

    /// The next delivery; `Ready(None)` ends the stream.
    fn poll_delivery(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Delivery, Self::Error>>>;

    /// An optional fast path for SSE, as `AsyncWrite::poll_write_vectored` is for writers:
    /// appends the SSE wire bytes of the next ready events to `out` (stopping once it holds
    /// `max_bytes`) without handing out each event, and says what it appended: an
    /// [`Encoded`] frame (its bytes, the events they carry, when the first was appended), so
    /// that the stream's metrics and span count the events as if they had come one by one.
    ///
    /// - `Ready(Some(Ok(frame)))` with [`frame.bytes`](Encoded::bytes) `== 0`
    ///   ([`Encoded::NONE`]): "use [`poll_delivery`](EventFeed::poll_delivery)". The
    ///   default, and the required answer whenever the next delivery is not an event (a gap
    ///   or a checkpoint), so that the transport writes it.
    /// - `Ready(Some(Ok(frame)))`, `bytes > 0`: that many bytes of complete event blocks were
    ///   appended.
    /// - `Pending`: nothing is ready; the task will be woken.
    /// - `Ready(None)` and `Ready(Some(Err(_)))`: as for `poll_delivery`.
    ///
    /// A log whose events are shared (as [`MemoryLog`](crate::MemoryLog)'s are) can copy
    /// their cached bytes ([`Event::to_bytes`](crate::Event::to_bytes)) under one lock instead
    /// of cloning each event out; the long poll never calls this. A feed that merges others
    /// adds up their frames.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use std::pin::Pin;
    /// use std::task::{Context, Poll};
    /// use tower_eventstream::{Delivery, Encoded, Event, EventFeed};
    ///
    /// /// One pre-encoded event, written straight into the frame.
    /// struct Once(Option<Event>);
    ///
    /// impl EventFeed for Once {
    ///     type Error = Infallible;
    ///
    ///     fn poll_delivery(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Delivery, Infallible>>> {
    ///         Poll::Ready(self.get_mut().0.take().map(|event| Ok(Delivery::Event(event))))
    ///     }
    ///
    ///     fn poll_encoded(
    ///         self: Pin<&mut Self>,
    ///         _: &mut Context<'_>,
    ///         out: &mut bytes::BytesMut,
    ///         _max_bytes: usize,
    ///     ) -> Poll<Option<Result<Encoded, Infallible>>> {
    ///         match self.get_mut().0.take() {
    ///             Some(event) => {
    ///                 let bytes = event.to_bytes();
    ///                 out.extend_from_slice(&bytes);
    ///                 Poll::Ready(Some(Ok(Encoded::new(bytes.len(), 1))))
    ///             }
    ///             None => Poll::Ready(None),
    ///         }
    ///     }
    /// }
    /// ```
    fn poll_encoded(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _out: &mut bytes::BytesMut,
        _max_bytes: usize,
    ) -> Poll<Option<Result<Encoded, Self::Error>>> {
        Poll::Ready(Some(Ok(Encoded::NONE)))
    }

    /// The position after everything delivered so far, if the source knows it. A long poll
    /// answers with it as `lastEventId` when no event carried an id, and an SSE stream sends
    /// it on open. A plain `Stream` knows none: a poll that times out without a cursor then
    /// answers `"lastEventId":""` and the client's next poll starts at the live end, so
    /// sources that must never miss an event (such as log subscriptions) implement this.
    fn position(&self) -> Option<EventId> {
        None
    }

    /// Whether the feed started after the client's cursor (as a log subscription does), so
    /// that a client that comes back misses nothing. A plain `Stream` does not (the
    /// default): it is **live-only**, and a client that sends a cursor (it was connected
    /// before) is told it may have missed events: an SSE stream opens with a `reset`, a long
    /// poll answers `"reset": true` and a `lastEventId` that is never empty (`live` when no
    /// event named one), so that the next poll says it polled before. To make a stream
    /// resumable, [`fill`](crate::fill) a log from it.
    fn honours_cursor(&self) -> bool {
        false
    }

    /// Whether the feed ended because its stream is complete (a finished log read to its
    /// end), not for a passing reason: the transports then answer a client that comes back
    /// at the end with `204 No Content`, which stops an `EventSource` for good, and a long
    /// poll that reaches the end says `"finished": true`. Checked before the first delivery
    /// (a feed already at its end: `204`) and when the feed ends.
    fn is_finished(&self) -> bool {
        false
    }

    /// The deliveries as a `Stream`, for reading a source in process (a test, a bridge to
    /// another system) with the usual stream combinators.
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// use tower_eventstream::{Delivery, Event, EventLog, EventFeed, MemoryLog};
    ///
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// # rt.block_on(async {
    /// let log = MemoryLog::new();
    /// let mut deliveries = log.subscribe(None).await.unwrap().into_stream();
    /// log.push(Event::new("hello")).unwrap();
    /// match deliveries.next().await {
    ///     Some(Ok(Delivery::Event(event))) => assert_eq!(event.data(), "hello"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # });
    /// ```
    fn into_stream(self) -> Deliveries<Self>
    where
        Self: Sized,
    {
        Deliveries { source: self }
    }
}

pin_project_lite::pin_project! {
    /// An [`EventFeed`] read as a `Stream` of deliveries; see [`EventFeed::into_stream`].
    #[must_use = "streams do nothing unless polled"]
    #[derive(Debug)]
    pub struct Deliveries<S> {
        #[pin]
        source: S,
    }
}

impl<S: EventFeed> Stream for Deliveries<S> {
    type Item = Result<Delivery, S::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.project().source.poll_delivery(cx)
    }
}

impl<S, E> EventFeed for S
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

pin_project_lite::pin_project! {
    /// A `Stream` of events that its service started right after the client's cursor (the
    /// [`LastEventId`](crate::LastEventId) in the request extensions): an [`EventFeed`] that
    /// [honours the cursor](EventFeed::honours_cursor), so a returning client is not told
    /// it missed events. Wrap only a stream that truly resumes; a plain stream is live-only.
    #[must_use = "streams do nothing unless polled"]
    #[derive(Debug)]
    pub struct Resumed<S> {
        #[pin]
        stream: S,
    }
}

impl<S> Resumed<S> {
    /// Declares that `stream` starts right after the client's cursor.
    pub fn new(stream: S) -> Self {
        Resumed { stream }
    }
}

impl<S, E> EventFeed for Resumed<S>
where
    S: Stream<Item = Result<Event, E>> + Send + 'static,
    E: Into<BoxError>,
{
    type Error = E;

    fn poll_delivery(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery, E>>> {
        self.project().stream.poll_delivery(cx)
    }

    fn honours_cursor(&self) -> bool {
        true
    }
}

/// A source with no events, for answers that carry none.
#[cfg(feature = "axum")]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NoEvents;

#[cfg(feature = "axum")]
impl EventFeed for NoEvents {
    type Error = std::convert::Infallible;

    fn poll_delivery(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Delivery, Self::Error>>> {
        Poll::Ready(None)
    }

    /// An answer with nothing in it loses nothing either.
    fn honours_cursor(&self) -> bool {
        true
    }
}
