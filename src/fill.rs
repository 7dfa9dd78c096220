//! Any event stream made resumable: a log kept filled from the application's own stream,
//! with every loss on the way recorded as a gap.
//!
//! A plain `Stream` has no history and no positions: served directly (through
//! [`EventStreamLayer`](crate::EventStreamLayer)), it is live-only, and a client that comes
//! back is told it may have missed events (see [`EventFeed::honours_cursor`](crate::EventFeed::honours_cursor)). [`fill`]
//! puts an [`EventLog`] between the stream and the clients, so that they resume exactly.

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use crate::failure::{FIRST_BACKOFF, MAX_BACKOFF};
use crate::log::AppendError;
use crate::{Event, EventLog, LastEventId, SubscribeError};

/// One item of a [`Source`]: an event for the log, or word that events were lost.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceItem {
    /// The next event.
    Event(Event),
    /// Events were lost before the next one (the source lagged or dropped some): the log
    /// records a gap ([`EventLog::record_gap`]).
    Gap,
}

impl From<Event> for SourceItem {
    fn from(event: Event) -> Self {
        SourceItem::Event(event)
    }
}

/// Where a [`fill`]ed log's events come from: a `tokio::sync::broadcast::Receiver` (its lag
/// is a [`SourceItem::Gap`]), or any `Stream` through [`from_stream`].
pub trait Source: Send + 'static {
    /// The next item; `None` ends the filling.
    fn next(&mut self) -> impl Future<Output = Option<SourceItem>> + Send;
}

/// A broadcast channel's values, each made an event with `Into<Event>` (implement
/// `From<YourType> for Event` for your own type). When the receiver falls behind the
/// channel (`RecvError::Lagged`), the lost values become a gap.
impl<T> Source for broadcast::Receiver<T>
where
    T: Clone + Send + Into<Event> + 'static,
{
    async fn next(&mut self) -> Option<SourceItem> {
        match self.recv().await {
            Ok(value) => Some(SourceItem::Event(value.into())),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(SourceItem::Gap),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// A `Stream` as a [`Source`]: made by [`from_stream`].
pub struct FromStream<S> {
    stream: Pin<Box<S>>,
}

/// Any `Stream` of events (or of [`SourceItem`]s, to report losses) as a [`Source`]; map
/// values of your own to events first (`stream.map(|value| Event::new(value))`).
pub fn from_stream<S>(stream: S) -> FromStream<S>
where
    S: Stream + Send + 'static,
    S::Item: Into<SourceItem>,
{
    FromStream {
        stream: Box::pin(stream),
    }
}

impl<S> Source for FromStream<S>
where
    S: Stream + Send + 'static,
    S::Item: Into<SourceItem>,
{
    async fn next(&mut self) -> Option<SourceItem> {
        let item = std::future::poll_fn(|cx| self.stream.as_mut().poll_next(cx)).await;
        item.map(Into::into)
    }
}

impl<S> fmt::Debug for FromStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromStream").finish_non_exhaustive()
    }
}

/// Keeps `log` filled from `source` in a task of its own, and returns the log to serve.
///
/// - Every event of the source is appended in order; every loss is recorded as a gap
///   ([`EventLog::record_gap`]) before the next event, so clients behind it hear `reset`:
///   a [`SourceItem::Gap`] (a broadcast receiver's lag), and an append that failed (the
///   event is lost; the task pauses, 200 ms doubling to 5 s, before the next one).
/// - The task ends when the source ends, or once every clone of the returned [`Filled`]
///   is dropped: it does not outlive the log it fills.
///
/// # Panics
///
/// When called outside a Tokio runtime, as `tokio::spawn` does.
///
/// ```no_run
/// use tokio::sync::broadcast;
/// use tower_eventstream::{fill, EventLogService, MemoryLog};
///
/// # async fn run() -> std::io::Result<()> {
/// // The application already broadcasts its updates.
/// let (updates, receiver) = broadcast::channel::<String>(64);
///
/// let log = fill(MemoryLog::new(), receiver);
/// let app = axum::Router::new().route_service("/events", EventLogService::new(log));
///
/// updates.send("hello".to_owned()).ok();
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, app).await
/// # }
/// ```
pub fn fill<L: EventLog, S: Source>(log: L, source: S) -> Filled<L> {
    spawn(log, source, End::LeaveOpen)
}

/// [`fill`] from a source whose end is the stream's end (a generation's tokens, a job's
/// output, a finite stream): once the source ends, the log is
/// [finished](EventLog::finish), so subscribers' streams end after the last event and a
/// browser that comes back at the end gets `204 No Content`.
///
/// [`fill`] leaves the log open when its source ends, because a source's end is not always
/// the stream's: a `broadcast` receiver ends when its last sender is dropped (at shutdown,
/// or when a producer is restarted), and a log finished then would refuse every event of the
/// producer that comes back.
///
/// ```
/// use futures_util::stream;
/// use tower_eventstream::{fill_to_end, from_stream, Event, MemoryLog};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// let tokens = stream::iter(["Once", "upon", "a", "time"].map(Event::new));
/// let log = fill_to_end(MemoryLog::new(), from_stream(tokens));
/// while !log.is_finished() {
///     tokio::task::yield_now().await;
/// }
/// assert_eq!(log.len(), 4);
/// # });
/// ```
pub fn fill_to_end<L: EventLog, S: Source>(log: L, source: S) -> Filled<L> {
    spawn(log, source, End::Finish)
}

/// What the end of the source does to the log.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    LeaveOpen,
    Finish,
}

fn spawn<L: EventLog, S: Source>(log: L, source: S, end: End) -> Filled<L> {
    let task = tokio::spawn(run(log.clone(), source, end));
    Filled {
        log,
        task: Arc::new(FillTask(task.abort_handle())),
    }
}

async fn run<L: EventLog, S: Source>(log: L, mut source: S, end: End) {
    let mut gap_owed = false;
    let mut pause = FIRST_BACKOFF;
    while let Some(item) = source.next().await {
        let event = match item {
            SourceItem::Gap => {
                gap_owed = true;
                continue;
            }
            SourceItem::Event(event) => event,
        };
        // An event is never appended while a gap before it is unrecorded: that would hide
        // the gap from the clients that resume across it.
        let appended = if gap_owed {
            match log.record_gap().await {
                Ok(()) => {
                    gap_owed = false;
                    log.append(event).await.map(drop)
                }
                Err(error) => Err(AppendError::Backend(error)),
            }
        } else {
            log.append(event).await.map(drop)
        };
        match appended {
            Ok(()) => pause = FIRST_BACKOFF,
            Err(AppendError::Finished) => {
                crate::trace::debug_event!("the filled event log was finished; filling stops");
                return;
            }
            Err(error) => {
                crate::trace::warn_event!("filling the event log failed; the event is lost and a gap is recorded", error = %error);
                gap_owed = true;
                back_off(&mut pause).await;
            }
        }
    }
    // The source ended after a loss: record it, so that no client resumes across it unaware.
    if gap_owed {
        until_done(|| log.record_gap(), pause).await;
    }
    if end == End::Finish {
        until_done(|| log.finish(), pause).await;
    }
}

/// Runs `attempt` until it succeeds, backing off between failures.
async fn until_done<F: Future<Output = Result<(), E>>, E>(
    mut attempt: impl FnMut() -> F,
    mut pause: Duration,
) {
    while attempt().await.is_err() {
        back_off(&mut pause).await;
    }
}

/// Sleeps for about `pause` (jittered), then doubles it up to [`MAX_BACKOFF`].
async fn back_off(pause: &mut Duration) {
    tokio::time::sleep(crate::random::jittered(*pause)).await;
    *pause = (*pause * 2).min(MAX_BACKOFF);
}

/// The filling task, stopped when the last [`Filled`] handle goes.
struct FillTask(AbortHandle);

impl Drop for FillTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A log kept filled from a [`Source`]; see [`fill`]. It is the log to serve and to read
/// (it dereferences to it); the filling stops once every clone is dropped.
pub struct Filled<L> {
    log: L,
    task: Arc<FillTask>,
}

impl<L> Filled<L> {
    /// Whether the task still reads the source (it ends when the source ends).
    pub fn is_filling(&self) -> bool {
        !self.task.0.is_finished()
    }
}

impl<L: Clone> Clone for Filled<L> {
    fn clone(&self) -> Self {
        Filled {
            log: self.log.clone(),
            task: Arc::clone(&self.task),
        }
    }
}

impl<L> Deref for Filled<L> {
    type Target = L;

    fn deref(&self) -> &L {
        &self.log
    }
}

impl<L: fmt::Debug> fmt::Debug for Filled<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filled")
            .field("log", &self.log)
            .field("filling", &self.is_filling())
            .finish()
    }
}

impl<L: EventLog> EventLog for Filled<L> {
    type Error = L::Error;
    type Subscription = L::Subscription;

    fn append(&self, event: Event) -> impl Future<Output = Result<Event, AppendError<L::Error>>> + Send {
        self.log.append(event)
    }

    fn append_once(
        &self,
        event: Event,
        key: &crate::IdempotencyKey,
        window: std::time::Duration,
    ) -> impl Future<Output = Result<crate::Appended, AppendError<L::Error>>> + Send {
        self.log.append_once(event, key, window)
    }

    fn finish(&self) -> impl Future<Output = Result<(), L::Error>> + Send {
        self.log.finish()
    }

    fn record_gap(&self) -> impl Future<Output = Result<(), L::Error>> + Send {
        self.log.record_gap()
    }

    fn check_cursor(&self, cursor: &LastEventId) -> Result<(), crate::CursorError> {
        self.log.check_cursor(cursor)
    }

    fn subscribe_fresh(
        &self,
        start: crate::StartPosition,
    ) -> impl Future<Output = Result<L::Subscription, SubscribeError<L::Error>>> + Send {
        self.log.subscribe_fresh(start)
    }

    fn subscribe(
        &self,
        cursor: Option<&LastEventId>,
    ) -> impl Future<Output = Result<L::Subscription, SubscribeError<L::Error>>> + Send {
        self.log.subscribe(cursor)
    }
}
