//! [`MemoryLog`]: the in-process event log, a bounded ring shared by all subscribers.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::ring::{CountsSubscribers, Lock, Ring, RingEntry, SubscriberCount};
use super::wake::Wakeup;
use super::{
    fingerprint, AppendError, Appended, EventLog, IdempotencyKey, RememberedKeys, Seen, StartPosition,
    SubscribeError,
};
use crate::measure;
use crate::stats::{LogCounters, LogStats};
use crate::{CursorError, Event, EventId, LastEventId};

mod builder;
mod ids;
mod open;
mod subscription;

pub use builder::MemoryLogBuilder;
pub use ids::LogNameError;
pub use subscription::MemorySubscription;

use ids::{source_id, Ids, Position};

/// The default number of events a [`MemoryLog`] keeps.
pub const DEFAULT_HISTORY: usize = 1024;

/// An in-memory event log: a bounded ring buffer of encoded events plus a wake-up for
/// waiting subscribers.
///
/// A subscriber is a cursor into the shared ring, not a queue of its own: history, live
/// fan-out and lag detection are one mechanism, and appending never waits for readers.
/// Ids are `<epoch>-<sequence>`, where the epoch is random per instance, so a cursor from
/// before a restart is recognised (and answered with a gap) instead of being misread. A log
/// filled from a source with ids of its own can keep them instead
/// ([`MemoryLogBuilder::source_ids`]), and cursors then outlive the process.
///
/// Cloning is cheap; clones share the log.
///
/// ```
/// use std::time::Duration;
/// use tower_eventstream::MemoryLog;
///
/// let log = MemoryLog::builder()
///     .history(10_000)
///     .max_age(Duration::from_secs(300))
///     .build();
/// assert_eq!(log.len(), 0);
/// ```
#[derive(Clone)]
pub struct MemoryLog {
    shared: Arc<Shared>,
}

struct Shared {
    held: Lock<Held>,
    wake: Wakeup,
    ids: Ids,
    capacity: usize,
    max_age: Option<Duration>,
    subscribers: SubscriberCount,
    counters: LogCounters,
    /// The idempotency keys of [`EventLog::append_once`]; taken before `held`, so that a
    /// key's check and its append are one step.
    once: Lock<RememberedKeys>,
}

/// What the lock guards: the ring and where it stands.
struct Held {
    ring: Ring<Stored>,
    /// The position of the newest event appended (or where the log starts).
    newest: Position,
    /// Every event after this position is held (or was appended and delivered live): a
    /// cursor at or after it resumes exactly, one before it has missed events.
    complete_after: Position,
    /// [`MemoryLog::record_gap`] was called: the next event appended carries the gap.
    gap_recorded: bool,
    /// [`MemoryLog::finish`] was called: `newest` is the end.
    finished: bool,
}

/// An event of the ring.
struct Stored {
    event: Event,
    position: Position,
    /// A gap recorded just before this event, named by the position before it.
    gap_before: Option<Position>,
    appended_at: Option<Instant>,
}

impl RingEntry for Stored {
    type Position = Position;

    fn event(&self) -> Option<&Event> {
        Some(&self.event)
    }

    fn position(&self, _seq: u64) -> Position {
        self.position
    }

    fn gap_before(&self, _seq: u64) -> Option<Position> {
        self.gap_before
    }
}

impl Default for MemoryLog {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryLog {
    /// A log with the default settings (1 024 events of history, no age limit).
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Starts configuring a log.
    pub fn builder() -> MemoryLogBuilder {
        MemoryLogBuilder {
            capacity: DEFAULT_HISTORY,
            max_age: None,
            source: None,
            remembered_keys: crate::log::DEFAULT_REMEMBERED_KEYS,
        }
    }

    /// The ring and its state, with the events older than the age limit (if any) dropped.
    fn current(&self) -> MutexGuard<'_, Held> {
        let mut held = self.shared.held.lock();
        if let Some(max_age) = self.shared.max_age {
            let now = Instant::now();
            let evicted = held.ring.evict_while(|stored| {
                stored
                    .appended_at
                    .is_some_and(|at| now.saturating_duration_since(at) > max_age)
            });
            if let Some(evicted) = evicted {
                held.complete_after = evicted.position;
            }
        }
        held
    }

    /// This instance's epoch, the part of every id before the `-` (for a log that keeps
    /// source ids, its name).
    pub fn epoch(&self) -> &str {
        self.shared.ids.prefix()
    }

    /// The number of events held.
    pub fn len(&self) -> usize {
        self.shared.held.lock().ring.len()
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of live subscriptions (each open SSE stream or pending poll holds one).
    pub fn subscriber_count(&self) -> usize {
        self.shared.subscribers.get()
    }

    /// A snapshot of what the log holds and has done (see [`LogStats`]): one short lock, no
    /// more than [`len`](MemoryLog::len) takes.
    pub fn stats(&self) -> LogStats {
        let (held, newest) = {
            let held = self.shared.held.lock();
            (held.ring.len(), held.newest)
        };
        let position = self.id_for(newest);
        self.shared
            .counters
            .snapshot(self.subscriber_count(), held, position)
    }

    pub(super) fn counters(&self) -> &LogCounters {
        &self.shared.counters
    }

    /// The position after the newest event (also defined for an empty log): a client that
    /// resumes from it receives exactly what is appended afterwards.
    pub fn position(&self) -> EventId {
        let newest = self.shared.held.lock().newest;
        self.id_for(newest)
    }

    fn id_for(&self, at: Position) -> EventId {
        self.shared.ids.id_for(at)
    }

    /// Appends without waiting (the [`EventLog::append`] future is ready at once) and
    /// returns the event with the id the log gave it; a finished log refuses with
    /// [`AppendError::Finished`]. In a log that keeps source ids, an event the log already
    /// holds (its id is not above the newest) is not appended again.
    pub fn push(&self, event: Event) -> Result<Event, AppendError<Infallible>> {
        let stored = {
            let mut held = self.current();
            if held.finished {
                return Err(AppendError::Finished);
            }
            let position = match &self.shared.ids {
                Ids::Sequence { .. } => Position::at(held.ring.next_seq()),
                Ids::Source { .. } => match source_id(event.id()) {
                    Some(number) if Position::at(number) <= held.newest => {
                        return Ok(event.with_event_id(self.id_for(Position::at(number))));
                    }
                    Some(number) => Position::at(number),
                    None => Position {
                        number: held.newest.number,
                        after: held.newest.after + 1,
                    },
                },
            };
            let mut event = event.with_event_id(self.id_for(position));
            event.stamp_appended(measure::append_stamp());
            // Encode now, once: every subscriber shares these bytes.
            event.to_bytes();
            let stored = Stored {
                event: event.clone(),
                position,
                gap_before: std::mem::take(&mut held.gap_recorded).then_some(held.newest),
                appended_at: self.shared.max_age.map(|_| Instant::now()),
            };
            held.newest = position;
            if let Some(evicted) = held.ring.push(stored, self.shared.capacity) {
                held.complete_after = evicted.position;
            }
            event
        };
        self.shared.counters.appended(1);
        self.shared.wake.wake_readers(self.shared.subscribers.get());
        Ok(stored)
    }

    /// [`EventLog::append_once`] without waiting (its future is ready at once).
    pub fn push_once(
        &self,
        event: Event,
        key: &IdempotencyKey,
        window: Duration,
    ) -> Result<Appended, AppendError<Infallible>> {
        let fingerprint = fingerprint(&event);
        let now = Instant::now();
        let mut once = self.shared.once.lock();
        match once.check(key, fingerprint, now) {
            Seen::Repeat(id) => return Ok(Appended::Repeat(id)),
            Seen::Reused => return Err(AppendError::KeyReused),
            Seen::New => {}
        }
        let stored = self.push(event)?;
        if let Some(id) = stored.id() {
            once.remember(key.clone(), fingerprint, id.clone(), now, window);
        }
        Ok(Appended::New(stored))
    }

    /// Ends the log (the [`EventLog::finish`] future is ready at once): appends are refused
    /// from now on, and each subscriber's stream ends once it has read every event.
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// use tower_eventstream::{AppendError, Delivery, Event, EventFeed, MemoryLog};
    ///
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// # rt.block_on(async {
    /// let log = MemoryLog::new();
    /// let mut reader = log.subscribe_now(None).unwrap();
    /// log.push(Event::new("the last word")).unwrap();
    /// log.finish();
    /// assert!(matches!(log.push(Event::new("too late")), Err(AppendError::Finished)));
    ///
    /// let mut deliveries = std::pin::pin!(reader.into_stream());
    /// assert!(matches!(deliveries.next().await, Some(Ok(Delivery::Event(_)))));
    /// assert!(deliveries.next().await.is_none(), "the stream ends after the last event");
    /// # });
    /// ```
    pub fn finish(&self) {
        let newly = !std::mem::replace(&mut self.shared.held.lock().finished, true);
        if newly {
            self.shared.wake.wake_readers(self.shared.subscribers.get());
        }
    }

    /// Whether the log is finished.
    pub fn is_finished(&self) -> bool {
        self.shared.held.lock().finished
    }

    /// Records that events were lost on their way into the log (the source lagged, an
    /// append failed): every subscriber, and every client resuming from before this point,
    /// hears a gap (SSE `reset`, long poll `"reset": true`) just before the next event
    /// appended, then that event. Gaps recorded in a row are reported as one.
    ///
    /// ```
    /// use tower_eventstream::{Delivery, Event, EventFeed, MemoryLog};
    ///
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// # rt.block_on(async {
    /// use futures_util::StreamExt;
    /// let log = MemoryLog::new();
    /// let mut deliveries = log.subscribe_now(None).unwrap().into_stream();
    /// log.push(Event::new("before")).unwrap();
    /// log.record_gap();
    /// log.push(Event::new("after")).unwrap();
    /// let mut seen = Vec::new();
    /// for _ in 0..3 {
    ///     match deliveries.next().await.unwrap().unwrap() {
    ///         Delivery::Event(event) => seen.push(event.data().to_owned()),
    ///         Delivery::Gap(_) => seen.push("<reset>".to_owned()),
    ///         _ => {}
    ///     }
    /// }
    /// assert_eq!(seen, ["before", "<reset>", "after"]);
    /// # });
    /// ```
    pub fn record_gap(&self) {
        let already = std::mem::replace(&mut self.shared.held.lock().gap_recorded, true);
        if !already {
            self.shared.counters.gap_recorded();
        }
    }
}

impl CountsSubscribers for MemoryLog {
    fn subscriber_count_cell(&self) -> &SubscriberCount {
        &self.shared.subscribers
    }
}

impl fmt::Debug for MemoryLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryLog")
            .field("epoch", &self.shared.ids.prefix())
            .field("history", &self.shared.capacity)
            .field("max_age", &self.shared.max_age)
            .finish_non_exhaustive()
    }
}

impl EventLog for MemoryLog {
    type Error = Infallible;
    type Subscription = MemorySubscription;

    fn append(&self, event: Event) -> impl Future<Output = Result<Event, AppendError<Infallible>>> + Send {
        std::future::ready(self.push(event))
    }

    fn append_once(
        &self,
        event: Event,
        key: &IdempotencyKey,
        window: Duration,
    ) -> impl Future<Output = Result<Appended, AppendError<Infallible>>> + Send {
        std::future::ready(self.push_once(event, key, window))
    }

    fn finish(&self) -> impl Future<Output = Result<(), Infallible>> + Send {
        MemoryLog::finish(self);
        std::future::ready(Ok(()))
    }

    fn record_gap(&self) -> impl Future<Output = Result<(), Infallible>> + Send {
        MemoryLog::record_gap(self);
        std::future::ready(Ok(()))
    }

    fn check_cursor(&self, cursor: &LastEventId) -> Result<(), CursorError> {
        self.shared.ids.parse_cursor(cursor).map(drop)
    }

    fn subscribe_fresh(
        &self,
        start: StartPosition,
    ) -> impl Future<Output = Result<MemorySubscription, SubscribeError<Infallible>>> + Send {
        std::future::ready(self.open(None, start).map_err(SubscribeError::InvalidCursor))
    }

    fn subscribe(
        &self,
        cursor: Option<&LastEventId>,
    ) -> impl Future<Output = Result<MemorySubscription, SubscribeError<Infallible>>> + Send {
        std::future::ready(self.subscribe_now(cursor).map_err(SubscribeError::InvalidCursor))
    }
}

#[cfg(test)]
mod tests;
