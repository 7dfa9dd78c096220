//! Snapshots of a log's and a registry's state for health checks and tests, without any
//! feature: [`LogStats`] and [`TopicsStats`], and the counters behind them.
//!
//! The counters are relaxed atomics bumped where the log already does the work (an append,
//! a recorded gap, a gap handed out), so keeping them costs no lock and no clock read.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::measure::{self, GapCause};
use crate::EventId;

/// What a log holds and has done, as [`MemoryLog::stats`](crate::MemoryLog::stats) (and
/// `RedisLog::stats`, for this process) reports it: cheap enough for a health check on
/// every request.
///
/// The counts start at zero when the log is made and never go down; two snapshots taken a
/// while apart give rates.
///
/// ```
/// use tower_eventstream::{Event, MemoryLog};
///
/// let log = MemoryLog::builder().history(2).build();
/// for n in 0..3 {
///     log.push(Event::new(n.to_string())).unwrap();
/// }
/// log.record_gap();
/// let _reader = log.subscribe_now(None).unwrap();
///
/// let stats = log.stats();
/// assert_eq!(stats.appended, 3);
/// assert_eq!(stats.held, 2); // the history keeps two
/// assert_eq!(stats.subscribers, 1);
/// assert_eq!(stats.gaps_recorded, 1);
/// assert_eq!(stats.position, log.position());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogStats {
    /// Live subscriptions (each open SSE stream and pending long poll holds one).
    pub subscribers: usize,
    /// Events held for resuming (for a Redis log, in this process's window).
    pub held: usize,
    /// The position after the newest event: a client resuming from it misses nothing.
    pub position: EventId,
    /// Events appended since the log was made (for a Redis log, by this process).
    pub appended: u64,
    /// Losses recorded on the way into the log ([`EventLog::record_gap`](crate::EventLog::record_gap));
    /// gaps recorded in a row count once for a memory log, as they are reported once.
    pub gaps_recorded: u64,
    /// Gaps handed out to subscribers (each is a `reset` a client heard): cursors older than
    /// the history, from another instance, subscribers that fell behind, recorded losses.
    pub gaps_reported: u64,
}

/// How many topics a [`Topics`](crate::Topics) registry holds and how many subscribers read
/// them, as [`Topics::stats`](crate::Topics::stats) reports it.
///
/// ```
/// use tower_eventstream::{Event, MemoryLog, Topics};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// let rooms = Topics::new(MemoryLog::builder());
/// rooms.append("lobby", Event::new("hello")).await.unwrap();
/// let stats = rooms.stats();
/// assert_eq!((stats.topics, stats.subscribers), (1, 0));
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicsStats {
    /// Live topics.
    pub topics: usize,
    /// Subscribers of all topics.
    pub subscribers: usize,
    /// Events appended through [`Topics::append`](crate::Topics::append) (not those
    /// appended to a topic's log directly).
    pub appended: u64,
}

/// A log's running counts, shared by its clones and subscriptions.
#[derive(Debug, Default)]
pub(crate) struct LogCounters {
    appended: AtomicU64,
    gaps_recorded: AtomicU64,
    gaps_reported: AtomicU64,
}

impl LogCounters {
    /// `events` were appended (and the metric says so too).
    pub(crate) fn appended(&self, events: u64) {
        self.appended.fetch_add(events, Ordering::Relaxed);
        measure::appended(events);
    }

    pub(crate) fn gap_recorded(&self) {
        self.gaps_recorded.fetch_add(1, Ordering::Relaxed);
    }

    /// A subscriber hands out a gap: a client hears a reset for `cause`.
    pub(crate) fn gap_reported(&self, cause: GapCause) {
        self.gaps_reported.fetch_add(1, Ordering::Relaxed);
        measure::reset(cause);
    }

    /// The snapshot, with what only the log knows filled in.
    pub(crate) fn snapshot(&self, subscribers: usize, held: usize, position: EventId) -> LogStats {
        LogStats {
            subscribers,
            held,
            position,
            appended: self.appended.load(Ordering::Relaxed),
            gaps_recorded: self.gaps_recorded.load(Ordering::Relaxed),
            gaps_reported: self.gaps_reported.load(Ordering::Relaxed),
        }
    }
}
