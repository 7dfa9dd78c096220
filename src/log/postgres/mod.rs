//! [`PostgresLog`]: a PostgreSQL table as the event log shared by several processes, written
//! to inside the application's own transactions (feature `postgres`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::ring::{CountsSubscribers, SubscriberCount};
#[cfg(doc)]
use super::{EventLog, SubscribeError};
use crate::log::remote::Window;
use crate::stats::{LogCounters, LogStats};
use crate::EventId;

mod builder;
mod error;
mod event_log;
mod family;
mod link;
mod reader;
mod rows;
mod settings;
mod sql;
mod trim;

pub use builder::PostgresLogBuilder;
pub use error::{PostgresLogError, PostgresLogErrorKind};
pub use event_log::PostgresSubscription;
pub use family::PostgresLogs;

use family::Family;
use link::Link;

// The builder's defaults, public as `PostgresLogBuilder::DEFAULT_*`.
const DEFAULT_MAX_LEN: usize = 10_000;
const DEFAULT_WINDOW: usize = super::memory::DEFAULT_HISTORY;
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An event log on a topic of a PostgreSQL table, shared by every process that connects to
/// the same database: a client can reconnect to any instance behind a load balancer and
/// resume with `Last-Event-ID`. Applications add events in their own transactions.
///
/// Event ids are `<xid>-<seq>` positions. Each process runs one reader task that feeds a
/// local window per topic, so local subscribers cost PostgreSQL nothing while they keep up.
/// Cloning is cheap; clones share the connections and the reader, which stops when the last
/// clone and the last subscription are dropped (and, for a log of a [`PostgresLogs`]
/// family, the family's last handle and log).
///
/// ```no_run
/// use tower_eventstream::{Event, EventLog, PostgresLog};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let log = PostgresLog::builder("postgres://app@127.0.0.1/app", "orders")
///     .migrate()
///     .connect()
///     .await?;
/// let stored = log.append(Event::new("shipped")).await?;
/// println!("stored as {}", stored.id().unwrap());
/// # Ok(()) }
/// ```
///
/// # How it works
///
/// - **One table for every topic**, `eventstream_events` (see [`PostgresLogs::SCHEMA`]). An
///   application adds an event with a plain `INSERT` in its own transaction, from any client
///   (sqlx, tokio-postgres, diesel, `psql`); readers see it once that transaction commits,
///   and never if it rolls back. No second write, no outbox to relay: the order and its
///   event are one commit. [`EventLog::append`] does the same `INSERT` on its own.
/// - **Positions.** Each row carries its transaction's id (`xid`, set by a trigger) and a
///   sequence number (`seq`); events are read in `(xid, seq)` order, and a row's position,
///   `<xid>-<seq>`, is its event id.
/// - **Commit order is not id order.** Transaction A takes id 100, B takes 101; B commits
///   first. A reader that took B's row and moved its cursor past 101 would skip A's row when
///   A commits. So readers take a row only once every transaction with a smaller id has
///   ended: only rows whose `xid` is below the *horizon*, `pg_snapshot_xmin` of the reading
///   statement's own snapshot (every transaction with an id below it has committed or rolled
///   back, and every later transaction gets a greater id). Below the horizon the set of rows
///   is final, so a position handed to a client never has a row appear before it later.
///   The cost is latency: an event waits for every transaction that took its id earlier
///   (anywhere in the database cluster) to end. Keep writing transactions short, and set
///   `idle_in_transaction_session_timeout` so that a forgotten one cannot hold every
///   topic back.
/// - **One reader per process and family.** [`PostgresLogBuilder::connect_logs`] opens a
///   [`PostgresLogs`]: every topic under one prefix, sharing one connection for appends and
///   reads, and one background task on a second connection. A trigger notifies
///   (`pg_notify('eventstream', <its transaction id>)`) once per committing transaction
///   that added rows (a reader whose last read already saw that transaction skips it); the
///   reader listens (`LISTEN eventstream`) and then reads every topic's new rows in one query
///   after its position, up to the horizon, and puts them into the windows of the topics it
///   follows. What an append costs does not grow with the number of topics: one
///   notification, and one read per process. While committed rows wait behind the horizon
///   (their transaction ended but an older one is still open), the reader looks again after
///   2 ms, doubling up to 100 ms, since the older transaction may end without a
///   notification.
/// - **Waking subscribers.** A topic's first events after a quiet spell wake its local
///   subscribers at once. For a topic with 64 subscribers or more in this process, while
///   more keeps coming (it is fed again within 2 ms, or an append of this process to it is
///   on its way) the reader holds the wake-up until the events stop, for at most 50 ms: ten
///   thousand subscribers are woken once per burst rather than once per event.
/// - **Catching up.** A subscriber whose cursor is older than the window reads the missing
///   part from PostgreSQL (rows of its topic after the cursor, up to the horizon) and then
///   joins the window at its cursor.
/// - **Trimming.** Every second the reader trims the topics that grew by an eighth of
///   [`max_len`](PostgresLogBuilder::max_len) since their last trim (keeping their newest
///   `max_len` rows) and, with [`max_age`](PostgresLogBuilder::max_age), removes older rows;
///   one instance at a time (`pg_try_advisory_xact_lock`). Each topic's *floor* in
///   `eventstream_topics` rises past what was removed.
/// - **Gaps.** A cursor at or after its topic's floor resumes: every row after it is held. A
///   cursor before the floor is a gap, read on from the floor. A cursor naming a transaction
///   id that has not been given out yet comes from history the database lost (restored from
///   a backup): a gap too, so that a browser's stream survives the restore; one more than
///   2³¹ ids ahead (further than PostgreSQL lets ids be apart) was never issued by this
///   database: refused with [`SubscribeError::InvalidCursor`] (`400`). When the reader
///   finds, on reconnecting, that the database's ids are behind its position, every window
///   starts over from the newest row and its subscribers hear a gap.
/// - **The end.** [`EventLog::finish`] (or `SELECT eventstream_finish('<topic>')` from any
///   program) adds the topic's end row and records the end in `eventstream_topics`, under an
///   exclusive advisory lock that every insert of the topic takes shared (one of 16, by a
///   hash of the topic, so that a transaction writing to any number of topics holds 16 locks
///   at most): the end waits for every transaction adding to the topic, and takes its own
///   transaction id after them, so it is ordered after every event of the topic. Inserts after it fail (`SQLSTATE ES001`;
///   a transaction at `REPEATABLE READ` or above whose snapshot is older than the end fails
///   with a serialization failure and, retried, with `ES001`).
/// - **Faults.** When PostgreSQL goes away the reader retries with backoff and reconnects,
///   keeping its position; subscribers stay connected (their keep-alives go on) and receive
///   what was committed meanwhile once it is back. An append while PostgreSQL is down fails
///   within the command timeout.
///
/// # Publishing from your own transaction
///
/// ```sql
/// BEGIN;
/// UPDATE orders SET state = 'shipped' WHERE id = 17;
/// INSERT INTO eventstream_events (topic, name, data) VALUES ('orders:17', 'shipped', '{"id":17}');
/// COMMIT;
/// ```
///
/// Columns: `topic` (the family's prefix and the topic's name), `name` (the SSE event name,
/// `NULL` for the default `message`), `data` (`NULL` for an event without data), `retry_ms`,
/// `comment`. Leave `xid`, `seq`, `kind` and `added` to their defaults.
#[derive(Clone)]
pub struct PostgresLog {
    inner: Arc<Inner>,
}

struct Inner {
    topic: Arc<str>,
    link: Arc<Link>,
    window: Arc<Window>,
    command_timeout: Duration,
    /// What this process appended, recorded and reported.
    counters: LogCounters,
    /// Keeps the family's reader running; forgets this topic when dropped.
    family: Arc<Family>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.family.forget(&self.topic);
    }
}

impl PostgresLog {
    /// Connects with the default settings; see [`PostgresLogBuilder::connect`].
    pub async fn connect(url: &str, topic: &str) -> Result<Self, PostgresLogError> {
        Self::builder(url, topic).connect().await
    }

    /// Starts configuring a log on the topic `topic` of the database at `url`
    /// (`postgres://[user[:password]@]host[:port]/database`, or the `key=value` form).
    pub fn builder(url: impl Into<String>, topic: impl Into<String>) -> PostgresLogBuilder {
        PostgresLogBuilder::new(url.into(), topic.into())
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.inner.topic
    }

    /// The number of live subscriptions in this process.
    pub fn subscriber_count(&self) -> usize {
        self.inner.window.subscribers.get()
    }

    /// The newest position this process's reader has reached: a client that resumes from it
    /// receives what is committed afterwards.
    pub fn position(&self) -> EventId {
        self.inner.window.position()
    }

    /// A snapshot of this process's side of the log (see [`LogStats`]).
    pub fn stats(&self) -> LogStats {
        self.inner
            .window
            .stats(&self.inner.counters, self.subscriber_count())
    }
}

impl CountsSubscribers for PostgresLog {
    fn subscriber_count_cell(&self) -> &SubscriberCount {
        &self.inner.window.subscribers
    }
}

impl fmt::Debug for PostgresLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresLog")
            .field("topic", &self.inner.topic)
            .field("window", &self.inner.window.capacity)
            .finish_non_exhaustive()
    }
}
