//! [`MemoryLog`]: the in-process event log, a bounded ring shared by all subscribers.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::ring::{Counted, CountsSubscribers, Follower, Lock, Ring, RingEntry, SubscriberCount};
use super::{EventLog, ResumeOutcome, SubscribeError, Subscription};
use crate::{CursorError, Delivery, Event, EventFeed, EventId, LastEventId};

/// The default number of events a [`MemoryLog`] keeps.
pub const DEFAULT_HISTORY: usize = 1024;

/// An in-memory event log: a bounded ring buffer of encoded events plus a wake-up for
/// waiting subscribers.
///
/// A subscriber is a cursor into the shared ring, not a queue of its own: history, live
/// fan-out and lag detection are one mechanism, and appending never waits for readers.
/// Ids are `<epoch>-<sequence>`, where the epoch is random per instance, so a cursor from
/// before a restart is recognised (and answered with a gap) instead of being misread.
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
    ring: Lock<Ring<Stored>>,
    wake: Arc<Notify>,
    epoch: String,
    capacity: usize,
    max_age: Option<Duration>,
    replay_on_fresh: usize,
    subscribers: SubscriberCount,
}

/// An event of the ring; its sequence number is its position.
struct Stored {
    event: Event,
    appended_at: Option<Instant>,
}

impl RingEntry for Stored {
    type Position = u64;

    fn event(&self) -> &Event {
        &self.event
    }

    fn position(&self, seq: u64) -> u64 {
        seq
    }
}

/// Builds a [`MemoryLog`] with other than the default settings.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct MemoryLogBuilder {
    capacity: usize,
    max_age: Option<Duration>,
    replay_on_fresh: usize,
}

impl MemoryLogBuilder {
    /// How many events the log keeps for resuming (default 1 024, at least 1).
    pub fn history(mut self, events: usize) -> Self {
        self.capacity = events.max(1);
        self
    }

    /// Drops events older than `age` as well (default: kept until the count limit).
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// A subscriber without a cursor first receives up to `events` of the newest held events
    /// (default 0: it starts at the live end).
    pub fn replay_on_fresh(mut self, events: usize) -> Self {
        self.replay_on_fresh = events;
        self
    }

    /// Creates the log with a new random epoch.
    pub fn build(self) -> MemoryLog {
        MemoryLog {
            shared: Arc::new(Shared {
                ring: Lock::new(Ring::new(self.capacity)),
                wake: Arc::new(Notify::new()),
                epoch: format!("{:08x}", crate::random::random_u64() as u32),
                capacity: self.capacity,
                max_age: self.max_age,
                replay_on_fresh: self.replay_on_fresh,
                subscribers: SubscriberCount::default(),
            }),
        }
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
            replay_on_fresh: 0,
        }
    }

    /// The ring, with the events older than the age limit (if any) dropped.
    fn current_ring(&self) -> MutexGuard<'_, Ring<Stored>> {
        let mut ring = self.shared.ring.lock();
        if let Some(max_age) = self.shared.max_age {
            let now = Instant::now();
            ring.evict_while(|stored| {
                stored
                    .appended_at
                    .is_some_and(|at| now.saturating_duration_since(at) > max_age)
            });
        }
        ring
    }

    /// This instance's epoch, the part of every id before the `-`.
    pub fn epoch(&self) -> &str {
        &self.shared.epoch
    }

    /// The number of events held.
    pub fn len(&self) -> usize {
        self.shared.ring.lock().len()
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of live subscriptions (each open SSE stream or pending poll holds one).
    pub fn subscriber_count(&self) -> usize {
        self.shared.subscribers.get()
    }

    /// The position after the newest event (also defined for an empty log): a client that
    /// resumes from it receives exactly what is appended afterwards.
    pub fn position(&self) -> EventId {
        let next = self.shared.ring.lock().next_seq();
        self.id_for(next - 1)
    }

    fn id_for(&self, seq: u64) -> EventId {
        EventId::new(format!("{}-{}", self.shared.epoch, seq)).expect("epoch and digits are valid id text")
    }

    /// Appends without waiting (the [`EventLog::append`] future is ready at once).
    pub fn push(&self, event: Event) -> Event {
        let stored = {
            let mut ring = self.current_ring();
            let event = event.with_event_id(self.id_for(ring.next_seq()));
            // Encode now, once: every subscriber shares these bytes.
            event.to_bytes();
            let stored = Stored {
                event: event.clone(),
                appended_at: self.shared.max_age.map(|_| Instant::now()),
            };
            ring.push(stored, self.shared.capacity);
            event
        };
        self.shared.wake.notify_waiters();
        stored
    }

    /// Reads a cursor: `Ok(None)` when it is from another instance of the log.
    fn parse_cursor(&self, cursor: &LastEventId) -> Result<Option<u64>, CursorError> {
        let (epoch, seq) = cursor.as_str().split_once('-').ok_or(CursorError::Unknown {
            reason: "expected <epoch>-<sequence>",
        })?;
        let well_formed_epoch =
            epoch.len() == 8 && epoch.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !well_formed_epoch {
            return Err(CursorError::Unknown {
                reason: "the epoch is not 8 lowercase hex digits",
            });
        }
        // Leading zeros are a spelling this log never issues.
        let canonical = seq.len() == 1 || !seq.starts_with('0');
        if seq.is_empty() || seq.len() > 20 || !canonical || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CursorError::Unknown {
                reason: "the sequence is not a decimal number",
            });
        }
        let seq: u64 = seq.parse().map_err(|_| CursorError::Unknown {
            reason: "the sequence is out of range",
        })?;
        Ok((epoch == self.shared.epoch).then_some(seq))
    }

    /// Subscribes without waiting (the [`EventLog::subscribe`] future is ready at once).
    pub fn subscribe_now(&self, cursor: Option<&LastEventId>) -> Result<MemorySubscription, CursorError> {
        let parsed = cursor.map(|cursor| self.parse_cursor(cursor)).transpose()?;
        let ring = self.current_ring();
        let (outcome, next_seq) = match parsed {
            None => {
                let replay = self.shared.replay_on_fresh.min(ring.len()) as u64;
                (ResumeOutcome::Fresh, ring.next_seq() - replay)
            }
            Some(None) => (ResumeOutcome::Gap, ring.first_seq()),
            Some(Some(seen)) if seen >= ring.next_seq() => {
                return Err(CursorError::Unknown {
                    reason: "the sequence is ahead of this log",
                });
            }
            Some(Some(seen)) if seen + 1 < ring.first_seq() => (ResumeOutcome::Gap, ring.first_seq()),
            Some(Some(seen)) => (ResumeOutcome::Resumed, seen + 1),
        };
        drop(ring);
        // The first poll arms a fresh wake-up and then looks at the ring.
        let mut follower = Follower::new(Arc::clone(&self.shared.wake), next_seq, next_seq - 1);
        if outcome == ResumeOutcome::Gap {
            follower.gap_due(next_seq - 1);
        }
        Ok(MemorySubscription {
            log: Counted::new(self.clone()),
            follower,
            outcome,
        })
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
            .field("epoch", &self.shared.epoch)
            .field("history", &self.shared.capacity)
            .field("max_age", &self.shared.max_age)
            .finish_non_exhaustive()
    }
}

impl EventLog for MemoryLog {
    type Error = Infallible;
    type Subscription = MemorySubscription;

    fn append(&self, event: Event) -> impl Future<Output = Result<Event, Infallible>> + Send {
        std::future::ready(Ok(self.push(event)))
    }

    fn subscribe(
        &self,
        cursor: Option<&LastEventId>,
    ) -> impl Future<Output = Result<MemorySubscription, SubscribeError<Infallible>>> + Send {
        std::future::ready(self.subscribe_now(cursor).map_err(SubscribeError::InvalidCursor))
    }
}

/// A reader of a [`MemoryLog`]; dropping it releases it at once.
pub struct MemorySubscription {
    log: Counted<MemoryLog>,
    /// Its place in the ring; positions are sequence numbers.
    follower: Follower<u64>,
    outcome: ResumeOutcome,
}

impl EventFeed for MemorySubscription {
    type Error = Infallible;

    fn poll_delivery(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Delivery, Infallible>>> {
        let this = self.get_mut();
        loop {
            if let Some(delivery) = this.follower.pop(|seq| this.log.id_for(seq)) {
                return Poll::Ready(Some(Ok(delivery)));
            }
            ready!(this.follower.wake.poll_rearm(cx));
            let ring = this.log.current_ring();
            // Fell behind the history while connected: report it, then go on from the oldest.
            this.follower.skip_lag(&ring, ring.first_seq() - 1);
            this.follower.take(&ring);
        }
    }

    fn poll_encoded(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut bytes::BytesMut,
        max_bytes: usize,
    ) -> Poll<Option<Result<usize, Infallible>>> {
        let this = self.get_mut();
        loop {
            if this.follower.has_ready() {
                return Poll::Ready(Some(Ok(0)));
            }
            ready!(this.follower.wake.poll_rearm(cx));
            let ring = this.log.current_ring();
            if this.follower.skip_lag(&ring, ring.first_seq() - 1) {
                // Fell behind: `poll_delivery` reports the gap; the held events are still to be
                // looked at, so the next look must not wait for another append.
                this.follower.wake.look_again();
                continue;
            }
            // Copy straight from the ring under one lock.
            let copied = this.follower.copy_encoded(&ring, out, max_bytes);
            drop(ring);
            if copied > 0 {
                return Poll::Ready(Some(Ok(copied)));
            }
        }
    }

    fn position(&self) -> Option<EventId> {
        self.follower.position(|seq| self.log.id_for(seq))
    }
}

impl Subscription for MemorySubscription {
    fn outcome(&self) -> ResumeOutcome {
        self.outcome
    }
}

impl fmt::Debug for MemorySubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySubscription")
            .field("epoch", &self.log.shared.epoch)
            .field("delivered_seq", &self.follower.delivered())
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
