//! The event log: history plus live wake-ups, read through resumable cursors.

use std::fmt;
use std::future::Future;
use std::time::Duration;

pub use once::{
    Appended, IdempotencyKey, InvalidIdempotencyKey, DEFAULT_ONCE_WINDOW, DEFAULT_REMEMBERED_KEYS,
    MAX_IDEMPOTENCY_KEY_LEN,
};

use crate::{CursorError, Event, EventFeed, LastEventId};

mod follower;
pub mod memory;
mod once;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod remote;
pub(crate) use once::{fingerprint, RememberedKeys, Seen};
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
mod ring;
mod wake;

/// A shared, ordered history of events that subscribers read from a cursor.
///
/// The transports only need [`subscribe`](EventLog::subscribe); producers call
/// [`append`](EventLog::append). Both are async so that a remote log (such as Redis
/// Streams) implements the same trait.
///
/// ```
/// use tower_eventstream::{Event, EventLog, LastEventId, MemoryLog, ResumeOutcome, Subscription};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
/// # rt.block_on(async {
/// let log = MemoryLog::new();
/// let first = log.append(Event::new("hello")).await.unwrap();
/// log.append(Event::new("world")).await.unwrap();
///
/// // A client that saw "hello" resumes right after it.
/// let cursor = LastEventId::parse(first.id().unwrap().as_str()).unwrap();
/// let subscription = log.subscribe(Some(&cursor)).await.unwrap();
/// assert_eq!(subscription.outcome(), ResumeOutcome::Resumed);
/// # });
/// ```
pub trait EventLog: Clone + Send + Sync + 'static {
    /// A failure of the log's storage (never of the client's input).
    type Error: std::error::Error + Send + Sync + 'static;
    /// What [`subscribe`](EventLog::subscribe) returns.
    type Subscription: Subscription;

    /// Appends an event, assigns its id and wakes subscribers. Returns the stored event
    /// (with the id the log assigned; an id set by the caller is replaced). Never waits for
    /// slow subscribers. A [finished](EventLog::finish) log refuses with
    /// [`AppendError::Finished`].
    fn append(&self, event: Event) -> impl Future<Output = Result<Event, AppendError<Self::Error>>> + Send;

    /// Appends `event` as [`append`](EventLog::append) does, unless an event was appended
    /// with the same idempotency `key` within the last `window`: then nothing is appended
    /// and the first append's id comes back ([`Appended::Repeat`]), so a client that retries
    /// after losing the answer publishes once. The same key with another event (another
    /// name, data, retry or comment) is refused with [`AppendError::KeyReused`].
    ///
    /// The check and the append are one step: of two appends with the same key at the same
    /// moment, one appends and the other is its repeat. A [`MemoryLog`](crate::MemoryLog)
    /// remembers its keys in this process, a bounded number of them (see
    /// [`MemoryLogBuilder::remembered_keys`](crate::MemoryLogBuilder::remembered_keys));
    /// [`RedisLog`](crate::RedisLog) remembers them in Redis, for every process, in the same
    /// script as the append.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_eventstream::{Event, EventLog, IdempotencyKey, MemoryLog};
    ///
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// # rt.block_on(async {
    /// let log = MemoryLog::new();
    /// let key = IdempotencyKey::new("order-17-shipped").unwrap();
    /// let window = Duration::from_secs(300);
    /// let first = log.append_once(Event::new("shipped"), &key, window).await.unwrap();
    /// let retry = log.append_once(Event::new("shipped"), &key, window).await.unwrap();
    /// assert!(retry.is_repeat());
    /// assert_eq!(first.id(), retry.id());
    /// # });
    /// ```
    fn append_once(
        &self,
        event: Event,
        key: &IdempotencyKey,
        window: Duration,
    ) -> impl Future<Output = Result<Appended, AppendError<Self::Error>>> + Send;

    /// Ends the log: nothing can be appended any more, and every subscriber's stream ends
    /// once it has read every event (the transports then tell the client not to come back:
    /// `204 No Content` to a client whose cursor is at the end, `"finished": true` in the
    /// long poll that reaches it). Finishing a finished log does nothing.
    fn finish(&self) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Records that events were lost on their way into the log (a source that lagged, an
    /// append that failed): subscribers, and clients resuming from before this point, hear a
    /// gap (SSE `reset`, long poll `"reset": true`) just before the next event appended.
    /// [`fill`](crate::fill) calls it for every loss its source reports.
    fn record_gap(&self) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Checks, without reading, that `cursor` has the shape of a position this kind of log
    /// issues; `Err` for one it could never have issued (answered `400`). A stream over
    /// several topics uses it on a cursor it cannot place: a well-formed one becomes a gap
    /// (`reset`), a malformed one a `400`, as on a stream of one topic. The default accepts
    /// every cursor, so such a cursor is always a gap.
    fn check_cursor(&self, cursor: &LastEventId) -> Result<(), CursorError> {
        let _ = cursor;
        Ok(())
    }

    /// Starts reading for a client without a cursor, at `start`: the live end, the oldest
    /// event held, or the last `n` held. The subscription's outcome is
    /// [`ResumeOutcome::Fresh`]; [`subscribe(None)`](EventLog::subscribe) is
    /// `subscribe_fresh(StartPosition::LiveEnd)`.
    fn subscribe_fresh(
        &self,
        start: StartPosition,
    ) -> impl Future<Output = Result<Self::Subscription, SubscribeError<Self::Error>>> + Send;

    /// Starts reading after `cursor` (or at the live end when `None`). Replay and live
    /// delivery are one sequence: nothing appended while subscribing is lost or repeated.
    fn subscribe(
        &self,
        cursor: Option<&LastEventId>,
    ) -> impl Future<Output = Result<Self::Subscription, SubscribeError<Self::Error>>> + Send;
}

/// Where a client without a cursor starts reading (a client with one always resumes from
/// it). Set per endpoint with [`StreamConfig::start`](crate::StreamConfig::start); the same
/// on every backend.
///
/// ```
/// use tower_eventstream::{Event, EventLog, MemoryLog, StartPosition};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
/// # rt.block_on(async {
/// let log = MemoryLog::new();
/// for text in ["one", "two", "three"] {
///     log.append(Event::new(text)).await.unwrap();
/// }
/// // A chat page opened late sees the last two messages, then what comes.
/// let subscription = log.subscribe_fresh(StartPosition::Last(2)).await.unwrap();
/// # let _ = subscription;
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StartPosition {
    /// Only what is appended from now on (the default): a ticker, a notification feed.
    #[default]
    LiveEnd,
    /// Every event the log still holds, then what comes: a late joiner of a generation or a
    /// job's progress needs every one.
    Oldest,
    /// The newest `n` events held (fewer if the log holds fewer), then what comes: a chat's
    /// recent messages.
    Last(usize),
}

/// A reader of an [`EventLog`]: an [`EventFeed`] that knows how its resume went.
pub trait Subscription: EventFeed + Unpin {
    /// How the subscription started relative to the client's cursor.
    fn outcome(&self) -> ResumeOutcome;
}

/// How a subscription started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResumeOutcome {
    /// No cursor: reading starts at the live end (or a configured number of events back).
    Fresh,
    /// Every event after the cursor is still held: nothing is lost.
    Resumed,
    /// Events after the cursor are gone (history trimmed, or the cursor is from another log
    /// instance). A [`Delivery::Gap`](crate::Delivery::Gap) comes first.
    Gap,
}

/// Why an event could not be appended.
#[derive(Debug)]
#[non_exhaustive]
pub enum AppendError<E> {
    /// The log is finished ([`EventLog::finish`]): its stream is complete.
    Finished,
    /// The log's storage failed: a passing fault.
    Backend(E),
    /// [`append_once`](EventLog::append_once): the idempotency key was used, within its
    /// window, for another event (answered `422`).
    KeyReused,
}

impl<E: fmt::Display> fmt::Display for AppendError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppendError::Finished => f.write_str("the event log is finished: nothing can be appended to it"),
            AppendError::Backend(e) => write!(f, "event log unavailable: {e}"),
            AppendError::KeyReused => {
                f.write_str("this idempotency key was used for another event; use a new key for a new event")
            }
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for AppendError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AppendError::Finished | AppendError::KeyReused => None,
            AppendError::Backend(e) => Some(e),
        }
    }
}

/// Why a subscription could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum SubscribeError<E> {
    /// The client's cursor is not one this log could have issued (answered with `400`).
    InvalidCursor(CursorError),
    /// The log's storage failed: a passing fault. [`StreamRequest::serve`](crate::StreamRequest::serve)
    /// holds an SSE stream open and retries; a long poll gets `503` with `Retry-After`.
    Backend(E),
}

impl<E: fmt::Display> fmt::Display for SubscribeError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscribeError::InvalidCursor(e) => e.fmt(f),
            SubscribeError::Backend(e) => write!(f, "event log unavailable: {e}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for SubscribeError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SubscribeError::InvalidCursor(e) => Some(e),
            SubscribeError::Backend(e) => Some(e),
        }
    }
}
