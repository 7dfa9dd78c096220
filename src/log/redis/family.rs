//! [`RedisLogs`]: every stream key under one prefix, sharing this process's connection and its
//! one reader.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::connection::Connection;
use super::error::{limited, RedisLogError, RedisLogErrorKind};
use super::reader::{Added, Follow};
use super::script::Script;
use super::snapshot::read_after;
use super::{Inner, RedisLog};
use crate::log::remote::AbortOnDrop;
use crate::log::remote::StreamId;
use crate::log::remote::Window;
use crate::log::ring::Lock;

/// A family of [`RedisLog`]s: one per stream key under a prefix (one per topic, room or
/// tenant), all sharing one Redis connection and one reader in this process.
///
/// However many keys the family has, this process holds two connections to Redis (two per
/// shard of a cluster): a multiplexed one for appends and reads, and the Pub/Sub connection
/// on which a single background task hears of new entries of every followed key: the append
/// script publishes each entry on the channel named like its stream (`SPUBLISH <key>`), so
/// what an append costs Redis does not grow with the keys followed (see
/// [`RedisLog`]). A key is followed while a [`RedisLog`] for it (or
/// one of its subscriptions) is alive.
///
/// Made by [`RedisLogBuilder::connect_logs`](super::RedisLogBuilder::connect_logs); every
/// setting of the builder applies to each log of the family. Cloning is cheap; clones share
/// the connection and the reader, which stops when the last clone, the last log and the last
/// subscription are dropped.
///
/// ```no_run
/// use tower_eventstream::{Event, EventLog, RedisLog};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let topics = RedisLog::builder("redis://127.0.0.1:6379", "topic:")
///     .connect_logs()
///     .await?;
/// let weather = topics.log("weather").await?; // the stream `topic:weather`
/// weather.append(Event::new("sunny")).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisLogs {
    family: Arc<Family>,
}

/// What the logs of a family share.
pub(super) struct Family {
    prefix: Arc<str>,
    manager: Connection,
    settings: Settings,
    /// The live log of each key, so that one key has one window in this process.
    logs: Lock<HashMap<Arc<str>, Weak<Inner>>>,
    /// What the reader task follows.
    follow: Arc<Follow>,
    /// The append script's digest, learnt once for every key.
    pub(super) script: Script,
    _reader: AbortOnDrop,
}

/// The builder's settings, for each log of the family.
pub(super) struct Settings {
    pub(super) max_len: usize,
    pub(super) max_age: Option<Duration>,
    pub(super) window: usize,
    pub(super) command_timeout: Duration,
}

impl RedisLogs {
    /// A family whose reader task (already started, following `follow`) is `reader`.
    pub(super) fn new(
        prefix: Arc<str>,
        manager: Connection,
        settings: Settings,
        follow: Arc<Follow>,
        reader: AbortOnDrop,
    ) -> Self {
        RedisLogs {
            family: Arc::new(Family {
                prefix,
                manager,
                settings,
                logs: Lock::new(HashMap::new()),
                follow,
                script: Script::default(),
                _reader: reader,
            }),
        }
    }

    /// The log on the stream `<prefix><name>`, followed by this family's reader.
    ///
    /// While a log for that key (or a subscription of it) is alive, this returns a log that
    /// shares its window, so a key costs one window per process however often it is asked
    /// for. Otherwise it reads the stream's position (one command; the stream need not
    /// exist yet) and the reader follows the key from there at once.
    ///
    /// Fails if Redis does not answer within the command timeout, if the key holds a value
    /// that is not a stream, or if the whole key (prefix and name) is empty.
    pub async fn log(&self, name: &str) -> Result<RedisLog, RedisLogError> {
        let family = &self.family;
        let key: Arc<str> = Arc::from(format!("{}{name}", family.prefix));
        if key.is_empty() {
            return Err(RedisLogError::new(
                RedisLogErrorKind::Config,
                "connect",
                &key,
                "the stream key is empty; give a key such as `chat`",
            ));
        }
        if let Some(log) = family.live(&key) {
            return Ok(log);
        }
        // The window starts at the stream's newest id: a fresh subscriber starts there, and
        // one with an older cursor reads the rest from Redis.
        let mut connection = family.manager.clone();
        let timeout = family.settings.command_timeout;
        let read = limited(
            "XINFO STREAM",
            &key,
            timeout,
            read_after(&mut connection, &key, StreamId::ZERO, None, 0),
        )
        .await?;

        let mut logs = family.logs.lock();
        if let Some(inner) = logs.get(&key).and_then(Weak::upgrade) {
            // Another call made it meanwhile.
            return Ok(RedisLog { inner });
        }
        let start = read.last_generated;
        let window = Arc::new(Window::new(start, family.settings.window));
        if let Some(end) = read.newest_end {
            // Finished before this process came: its subscribers start at the end.
            window.finished_at(end);
        }
        let inner = Arc::new(Inner {
            key: Arc::clone(&key),
            manager: family.manager.clone(),
            window: Arc::clone(&window),
            max_len: family.settings.max_len,
            max_age: family.settings.max_age,
            command_timeout: timeout,
            counters: Default::default(),
            family: Arc::clone(family),
        });
        logs.insert(Arc::clone(&key), Arc::downgrade(&inner));
        // Under the map's lock, so that the reader learns of a key's windows in order.
        family.follow.add(Added {
            key,
            window: Arc::downgrade(&window),
            last: start,
            head_added: read.entries_added,
        });
        drop(logs);
        Ok(RedisLog { inner })
    }

    /// The prefix of the family's stream keys (the builder's `key`).
    pub fn prefix(&self) -> &str {
        &self.family.prefix
    }

    /// How many stream keys the reader follows now: one for each key with a live log or
    /// subscription. A key added by [`log`](RedisLogs::log) is counted once the reader has
    /// taken it up (at once, unless Redis is unreachable); a dropped one once the reader's
    /// next round has let it go (within about 2 s).
    pub fn reader_keys(&self) -> usize {
        self.family.follow.keys()
    }
}

impl Family {
    /// The live log of `key`, if any.
    fn live(&self, key: &str) -> Option<RedisLog> {
        let inner = self.logs.lock().get(key).and_then(Weak::upgrade)?;
        Some(RedisLog { inner })
    }

    /// The last handle on the log of `key` is gone: its entry goes, unless a new log for the
    /// key took its place meanwhile. (The reader lets the key go by itself: it only holds
    /// the window weakly.)
    pub(super) fn forget(&self, key: &str) {
        let mut logs = self.logs.lock();
        if logs.get(key).is_some_and(|log| log.strong_count() == 0) {
            logs.remove(key);
        }
    }
}

impl fmt::Debug for RedisLogs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let family = &self.family;
        f.debug_struct("RedisLogs")
            .field("prefix", &family.prefix)
            .field("logs", &family.logs.lock().len())
            .field("reader_keys", &family.follow.keys())
            .field("max_len", &family.settings.max_len)
            .field("max_age", &family.settings.max_age)
            .field("window", &family.settings.window)
            .finish_non_exhaustive()
    }
}
