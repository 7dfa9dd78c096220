//! [`RedisLog`]: Redis Streams as the event log shared by several processes (feature `redis`).
//!
//! # How it works
//!
//! - **Append** is one `XADD <key> MAXLEN ~ <n> * <fields>`, run by a Lua script (one
//!   `EVALSHA`, one round trip) that first checks that the stream's newest entry is not its
//!   end (see *Entries* below) and adds nothing after it. With [`RedisLogBuilder::max_age`],
//!   an `XTRIM <key> MINID ~ <now - age>` runs in the same script. The id Redis assigns
//!   (`<ms>-<seq>`) is the event id.
//! - **One reader per process and family of streams.** [`RedisLogBuilder::connect_logs`]
//!   opens a [`RedisLogs`]: every stream key under one prefix (one per topic, say), sharing
//!   one multiplexed connection and one background reader task with one Pub/Sub
//!   connection (one per shard on a cluster), however many keys there are. A single
//!   [`RedisLog`] is a family of one ([`RedisLogBuilder::connect`]). Each key's local
//!   window is a ring of events, each encoded once, with a [`Notify`](tokio::sync::Notify)
//!   that wakes the local subscribers. Ten thousand subscribers cost one Redis reader, and
//!   so do a hundred thousand streams.
//! - **Hearing of new entries.** The append script publishes a notice with each entry it
//!   adds, on the sharded Pub/Sub channel named like the stream (`SPUBLISH <key>`): the id
//!   of the entry before it, its id and its fields. The reader is subscribed
//!   (`SSUBSCRIBE <key>`) to the channel of every key it follows; a notice that follows on
//!   from the newest entry the window holds is put into the window as it is, without a
//!   read. Any other message on the channel (a notice after one that was lost, an empty
//!   one from another program) makes the reader read the key with a checked `XRANGE` from
//!   its last id. What an append costs Redis is one script call and one message, however
//!   many keys are followed; what a process costs Redis grows with the entries appended to
//!   the keys it follows, not with their number.
//! - **Notices lost.** Pub/Sub delivers at most once: a message published while the
//!   reader's connection is down is gone. After each (re)connection the reader subscribes
//!   to every key again and, on the same connection, looks at each key's newest id
//!   (`XREVRANGE <key> + - COUNT 1`); a key whose newest id is not the window's is read.
//!   A notice that does not follow on from the window (one before it was lost) is read too.
//!   So an entry is never skipped and never taken twice: the window takes entries in id
//!   order, each once.
//! - **Waking subscribers.** A key's first entries after a quiet spell wake its local
//!   subscribers at once. For a key with 64 subscribers or more in this process, while more
//!   keeps coming (more notices for the key, or an append of this process to the key on its
//!   way) the reader holds the wake-up until the entries stop, for at most 50 ms: ten
//!   thousand subscribers are woken once per burst of appends rather than once per entry. The entries are in the window meanwhile, in order; a
//!   subscriber still busy takes them without a wake-up.
//! - **Following a new key.** [`RedisLogs::log`] reads the stream's position (one `MULTI`);
//!   the reader then subscribes to its channel and looks at its newest id (two commands),
//!   and reads the key only if something was added in between. No other key is read. A key
//!   whose logs and subscriptions are all dropped is unsubscribed from within 2 s.
//! - **Checking streams in turn.** A deleted (or deleted and recreated) stream, or an entry
//!   added by a program that publishes no notice, wakes nothing, so the reader also reads
//!   keys in turn: every 2 s, the next 256 (a family of up to 256 keys has each read every
//!   2 s; one of 10 000 keys, each about every 80 s).
//! - **Catching up.** A subscriber whose cursor is older than the window reads the missing
//!   part from Redis (`XRANGE (<cursor> + COUNT n`, repeated) and then joins the window at
//!   its cursor, once the window holds that very id (which proves it reads the same stream);
//!   ids order both, so nothing is lost or repeated at the seam.
//! - **The end.** Every read from Redis notes the stream's end entry, among the entries read
//!   or as its newest entry (`XINFO STREAM`'s `last-entry`), and the window remembers it: a
//!   window that has read the end takes nothing more, and a process that connects to a
//!   finished stream starts with its window at the end.
//! - **Gaps.** Every read from Redis is a `MULTI` of `XINFO STREAM`, `TIME`, the cursor's
//!   own entry and the entries after it, so the check and the data are one snapshot. See
//!   [`RedisLog`] for the rule.
//! - **Faults.** When Redis goes away the reader retries with backoff and reconnects, keeping
//!   every key's position; subscribers stay connected (their keep-alives go on) and receive
//!   what was appended meanwhile once Redis is back. A key that answers unexpectedly (it
//!   was overwritten with a value that is not a stream) is skipped and read again in turn;
//!   the other keys go on. An append while Redis is down fails within the command timeout.
//! - **Redis Cluster** ([`RedisLogBuilder::cluster`]): a key and its channel hash to one slot,
//!   so the script's `XADD` and `SPUBLISH` run on the key's shard; the reader's Pub/Sub
//!   connection has one connection per shard, and commands follow `MOVED`, `ASK` and
//!   failovers. When a slot moves, Redis ends the subscriptions of its channels; the reader
//!   subscribes to them again on their new shard and looks at their newest ids.
//!
//! # Entries
//!
//! Each stream entry is one of these, told apart by its fields, so that a producer in another
//! language can write to the stream (and a consumer read it) without this crate:
//!
//! | Fields | Meaning |
//! |---|---|
//! | `data`, `name`, `retry`, `comment` (each optional; `empty` when none is set) | An event: its data, its SSE `event:` name, its `retry:` in milliseconds, its comment. The entry's id is the event id. |
//! | `gap` (any value) | A recorded gap ([`EventLog::record_gap`]): readers report a gap at this point. |
//! | `end` (any value) | The end ([`EventLog::finish`]): the stream is complete; readers end after the entries before it. |
//!
//! The end must be the stream's last entry: readers take nothing after the first `end`
//! entry, and the append script refuses to add anything once the newest entry is an end. Another
//! program finishes a stream with `XADD <key> * end ""` (if appends may still be going on, run
//! it as this crate does, in a script that first checks the newest entry: `XREVRANGE <key> + -
//! COUNT 1`), and should never add entries after it. A finished stream stays finished until it
//! is deleted.
//!
//! # Publishing from another program
//!
//! Add the entry, then publish anything on the channel named like the stream, so that readers
//! hear of it at once:
//!
//! ```text
//! XADD chat:lobby * name message data "hello"
//! SPUBLISH chat:lobby ""
//! ```
//!
//! (`MULTI`/`EXEC` around the two, or a script, keeps them together; on a cluster both go to
//! the key's shard.) An entry added with a bare `XADD` and no message reaches the readers
//! when the next notice for the key comes, or when the reader reads the key in turn: within
//! 2 s for every 256 keys the process follows.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::ring::{CountsSubscribers, SubscriberCount};
#[cfg(doc)]
use super::{AppendError, EventLog, SubscribeError};
use crate::stats::{LogCounters, LogStats};
use crate::EventId;

mod append;
mod builder;
mod connection;
mod error;
mod event_log;
mod family;
mod followed;
mod hold;
mod listener;
mod notice;
mod reader;
mod reply;
mod script;
mod snapshot;
mod subscription;

pub use builder::RedisLogBuilder;
pub use error::{RedisLogError, RedisLogErrorKind};
pub use family::RedisLogs;
pub use subscription::RedisSubscription;

use crate::log::remote::Window;
use connection::Connection;
use family::Family;

// The builder's defaults, public as `RedisLogBuilder::DEFAULT_*`.
const DEFAULT_MAX_LEN: usize = 10_000;
const DEFAULT_WINDOW: usize = super::memory::DEFAULT_HISTORY;
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the reader reads a batch of [`SWEEP_BATCH`] keys whatever their notices say (a
/// deleted or wholly trimmed stream publishes none), and lets go of keys no longer used.
const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// How many keys the reader reads every [`SWEEP_EVERY`], in turn.
const SWEEP_BATCH: usize = 256;
/// How soon the reader tries again to subscribe to keys it could not subscribe to.
const SUBSCRIBE_AGAIN: Duration = Duration::from_millis(250);
/// Entries the reader takes per read.
const READER_BATCH: usize = 512;
/// Backoff of the reader between failed attempts.
const READER_BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));

/// An event log on a Redis stream, shared by every process that connects to the same key:
/// a client can reconnect to any instance behind a load balancer and resume with
/// `Last-Event-ID`.
///
/// Event ids are the stream's ids (`<milliseconds>-<sequence>`). Each process runs one
/// reader task that feeds a local window, so local subscribers cost Redis nothing while
/// they keep up. Cloning is cheap; clones share the connection and the reader, which stops
/// when the last clone and the last subscription are dropped (and, for a log of a
/// [`RedisLogs`] family, the family's last handle and log).
///
/// # Finishing
///
/// [`finish`](EventLog::finish) stores the end in the stream itself, as an entry with the
/// field `end` (an `XADD <key> * end ""` from any program does the same), so every process sees it:
/// one running, one cut off from Redis when it happened (once it is back), one that connects
/// later. Appends from any process then fail with [`AppendError::Finished`]: the check and
/// the `XADD` are one Lua script, so no entry can follow the end. Each subscription hands
/// out every event before the end and then ends, [finished](crate::EventFeed::is_finished);
/// one that starts at the end (a cursor naming the last event or the end entry, or a fresh
/// one at the live end of a finished stream) is finished as soon as it is made. A fresh
/// subscription from the oldest event or the last `n` gets those events, then the end (the
/// end entry is not one of the `n`). A subscription that reads up to the end stays at its last
/// event's id; the end entry's id is a valid cursor too, at the end.
///
/// A subscription learns of the end from this process's reader (within moments of the
/// `XADD`) or from its own read of Redis; [`RedisLog::is_finished`] asks Redis.
///
/// # When a cursor resumes, and when it is a gap
///
/// Each read takes one snapshot (`MULTI`): the stream's newest id `L`, its length, the
/// count of entries ever added, the largest deleted id `D`, its first entry `F`, Redis's
/// clock, and whether the cursor's own entry still exists. The *floor* is the position
/// after which every entry ever added is still held: `0-0` when nothing was ever removed
/// (entries added = length), else the greater of `D` and the id just before `F` (or `L`
/// for an empty stream). A cursor
///
/// - equal to the floor, or above it and naming an entry that exists: **resumed**;
/// - anything else at or below `L` (its entry was trimmed, or it comes from a stream that was
///   deleted and recreated — the recreated stream's entries have other ids, and its
///   entry count shows nothing was trimmed): a **gap**, reading on from the floor;
/// - above `L` but not later than Redis's clock (history lost: a restart without
///   persistence, a failover to a lagging replica): a **gap**;
/// - later than Redis's clock, or not `<ms>-<seq>`: **refused** with
///   [`SubscribeError::InvalidCursor`] (`400`), as [`MemoryLog`](crate::MemoryLog) refuses
///   a cursor ahead of it.
///
/// This needs no key besides the stream and holds whoever trims or deletes it: the floor
/// only rises while a stream lives, and a recreated stream cannot contain an old cursor's
/// entry. Requires Redis 7.0 or later.
///
/// Two refinements keep gaps from being reported where nothing was lost:
///
/// - A cursor held in this process's window (its event, or the window's start) resumes
///   from the window without asking Redis, even if Redis has trimmed that event since. The
///   reader notices a deleted or recreated stream within seconds (at most 2 s for each 256
///   keys of a [`RedisLogs`] family) and then sends every subscriber of the window a gap.
/// - The reader also remembers the count of entries ever added when it reached the newest
///   entry; if exactly the entries added since are held, its position is continuous even
///   though its own entry was trimmed (an idle stream whose newest entry ages out under
///   [`max_age`](RedisLogBuilder::max_age)).
///
/// ```no_run
/// use tower_eventstream::{Event, EventLog, RedisLog};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let log = RedisLog::builder("redis://127.0.0.1:6379", "chat")
///     .max_len(100_000)
///     .connect()
///     .await?;
/// let stored = log.append(Event::new("hello")).await?;
/// println!("stored as {}", stored.id().unwrap());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisLog {
    inner: Arc<Inner>,
}

struct Inner {
    key: Arc<str>,
    manager: Connection,
    window: Arc<Window>,
    max_len: usize,
    max_age: Option<Duration>,
    command_timeout: Duration,
    /// What this process appended, recorded and reported.
    counters: LogCounters,
    /// Keeps the family's reader running; forgets this key when dropped.
    family: Arc<Family>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.family.forget(&self.key);
    }
}

impl RedisLog {
    /// Connects with the default settings; see [`RedisLogBuilder::connect`].
    pub async fn connect(url: &str, key: &str) -> Result<Self, RedisLogError> {
        Self::builder(url, key).connect().await
    }

    /// Starts configuring a log on the stream `key` of the Redis server at `url`
    /// (`redis://[user:password@]host[:port][/db]`).
    pub fn builder(url: impl Into<String>, key: impl Into<String>) -> RedisLogBuilder {
        RedisLogBuilder::new(url.into(), key.into())
    }

    /// The stream's key.
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    /// The number of live subscriptions in this process.
    pub fn subscriber_count(&self) -> usize {
        self.inner.window.subscribers.get()
    }

    /// The newest position this process's reader has reached: a client that resumes from it
    /// receives what is appended afterwards.
    pub fn position(&self) -> EventId {
        self.inner.window.position()
    }

    /// Whether the stream is finished ([`EventLog::finish`]: its newest entry is the end),
    /// whichever process finished it. Asks Redis (one `XREVRANGE <key> + - COUNT 1`), so it
    /// is true as soon as the end is stored; this process's subscriptions learn of it from
    /// its reader a moment later.
    pub async fn is_finished(&self) -> Result<bool, RedisLogError> {
        Ok(self.inner.newest(0).await?.end.is_some())
    }

    /// A snapshot of this process's side of the log (see [`LogStats`]): its local
    /// subscribers, the events its window holds, the position its reader reached, and the
    /// appends, recorded gaps and reported gaps of this process. What other processes did
    /// is Redis's to tell (`XINFO STREAM`).
    pub fn stats(&self) -> LogStats {
        self.inner
            .window
            .stats(&self.inner.counters, self.subscriber_count())
    }
}

impl CountsSubscribers for RedisLog {
    fn subscriber_count_cell(&self) -> &SubscriberCount {
        &self.inner.window.subscribers
    }
}

impl fmt::Debug for RedisLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLog")
            .field("key", &self.inner.key)
            .field("max_len", &self.inner.max_len)
            .field("max_age", &self.inner.max_age)
            .field("window", &self.inner.window.capacity)
            .finish_non_exhaustive()
    }
}
