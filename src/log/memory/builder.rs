//! [`MemoryLogBuilder`]: a memory log's settings.

use std::sync::Arc;
use std::time::Duration;

use crate::log::wake::Wakeup;
use crate::log::RememberedKeys;

use super::ids::{validate_name, Ids, LogNameError, Position};
use super::{Held, MemoryLog, Shared};
use crate::log::ring::{Lock, Ring, SubscriberCount};

/// Builds a [`MemoryLog`] with other than the default settings.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct MemoryLogBuilder {
    pub(super) capacity: usize,
    pub(super) max_age: Option<Duration>,
    pub(super) source: Option<(String, u64)>,
    pub(super) remembered_keys: usize,
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

    /// How many idempotency keys of [`EventLog::append_once`](crate::EventLog::append_once)
    /// the log remembers at most (default [`DEFAULT_REMEMBERED_KEYS`], 10 000, at least 1).
    /// Each key is kept for its window; past this many, the oldest is forgotten early, and a
    /// retry with it appends again. Size it to the appends with a key expected within a
    /// window (10 000 keys cover 33 appends a second for 5 minutes).
    ///
    /// [`DEFAULT_REMEMBERED_KEYS`]: crate::DEFAULT_REMEMBERED_KEYS
    pub fn remembered_keys(mut self, keys: usize) -> Self {
        self.remembered_keys = keys.max(1);
        self
    }

    /// Keeps the ids the events bring from their source (a database change feed's sequence
    /// numbers, a broker's offsets) instead of numbering them, so that a client's cursor
    /// stays valid when the server restarts and the log is filled again from the source.
    ///
    /// - Ids are `<name>-<source id>`: `name` (1 to 32 ASCII letters, digits or `_`) stands
    ///   for the source and stays the same across restarts; a cursor with another name gets
    ///   a `reset`.
    /// - An appended event whose id is a decimal number (`u64`) greater than the newest
    ///   held keeps it. One at or below the newest is already held (a source replaying a
    ///   little more than needed) and is not appended again. An event without a decimal id
    ///   is placed after the newest: `<name>-<newest>.1`, `.2`, …
    /// - `complete_after`: the source id after which the log is given *every* event (where
    ///   the application starts reading its source: `0` for the beginning). A cursor at or
    ///   after it resumes exactly, one before it gets a `reset`. A cursor ahead of the
    ///   newest event is one the source has not delivered yet (a restart replaying): the
    ///   client receives the events after it once they arrive.
    ///
    /// ```
    /// use tower_eventstream::{Event, LastEventId, MemoryLog, ResumeOutcome, Subscription};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // The source is replayed from change 41 on: every change after 40 reaches the log.
    /// let log = MemoryLog::builder().source_ids("orders", 40)?.build();
    /// log.push(Event::new("order 41 paid").with_id("41")?)?;
    /// log.push(Event::new("order 42 shipped").with_id("42")?)?;
    ///
    /// // A client that saw change 41 before the restart resumes right after it.
    /// let cursor = LastEventId::parse("orders-41")?;
    /// let subscription = log.subscribe_now(Some(&cursor))?;
    /// assert_eq!(subscription.outcome(), ResumeOutcome::Resumed);
    /// assert_eq!(log.position().as_str(), "orders-42");
    /// # Ok(())
    /// # }
    /// ```
    pub fn source_ids(mut self, name: &str, complete_after: u64) -> Result<Self, LogNameError> {
        validate_name(name)?;
        self.source = Some((name.to_owned(), complete_after));
        Ok(self)
    }

    /// Creates the log (with a new random epoch, unless it keeps source ids).
    pub fn build(self) -> MemoryLog {
        let (ids, start) = match self.source {
            Some((name, complete_after)) => (Ids::Source { name }, Position::at(complete_after)),
            None => (
                Ids::Sequence {
                    epoch: format!("{:08x}", crate::random::random_u64() as u32),
                },
                Position::default(),
            ),
        };
        MemoryLog {
            shared: Arc::new(Shared {
                held: Lock::new(Held {
                    ring: Ring::new(),
                    newest: start,
                    complete_after: start,
                    gap_recorded: false,
                    finished: false,
                }),
                wake: Wakeup::new(),
                ids,
                capacity: self.capacity,
                max_age: self.max_age,
                subscribers: SubscriberCount::default(),
                counters: Default::default(),
                once: Lock::new(RememberedKeys::new(self.remembered_keys)),
            }),
        }
    }
}
