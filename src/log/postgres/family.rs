//! [`PostgresLogs`]: every topic under one prefix, sharing this process's connection and its
//! one reader.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Weak};

use super::error::{limited, PostgresLogError, PostgresLogErrorKind};
use super::link::Link;
use super::reader::Following;
use super::rows::position;
use super::settings::Settings;
use super::{sql, Inner, PostgresLog};
use crate::log::remote::{AbortOnDrop, Window};
use crate::log::ring::Lock;

/// A family of [`PostgresLog`]s: one per topic under a prefix (one per room, user or
/// tenant), all rows of one table, sharing one connection and one reader in this process.
///
/// However many topics the family has, this process holds two connections to PostgreSQL:
/// one for appends and reads, and one on which a single background task listens
/// (`LISTEN eventstream`) and reads every topic's new rows in one query, so what an append
/// costs does not grow with the topics (see [`PostgresLog`]). A topic is followed while a
/// [`PostgresLog`] for it (or one of its subscriptions) is alive.
///
/// Made by [`PostgresLogBuilder::connect_logs`](super::PostgresLogBuilder::connect_logs);
/// every setting of the builder applies to each log of the family. Cloning is cheap; clones
/// share the connections and the reader, which stops when the last clone, the last log and
/// the last subscription are dropped.
///
/// ```no_run
/// use tower_eventstream::{Event, EventLog, PostgresLog};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let topics = PostgresLog::builder("postgres://app@127.0.0.1/app", "topic:")
///     .migrate()
///     .connect_logs()
///     .await?;
/// let weather = topics.log("weather").await?; // the topic `topic:weather`
/// weather.append(Event::new("sunny")).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresLogs {
    family: Arc<Family>,
}

/// What the logs of a family share.
pub(super) struct Family {
    prefix: Arc<str>,
    pub(super) link: Arc<Link>,
    settings: Settings,
    /// The live log of each topic, so that one topic has one window in this process.
    logs: Lock<HashMap<Arc<str>, Weak<Inner>>>,
    /// What the reader follows.
    following: Arc<Following>,
    _reader: AbortOnDrop,
}

impl PostgresLogs {
    /// The schema: the tables `eventstream_events`, `eventstream_topics` and
    /// `eventstream_once`, their triggers and the functions `eventstream_finish`,
    /// `eventstream_append_once` and `eventstream_trim`. Safe to run again, in one
    /// transaction (`psql -f`, or an application's migration tool).
    /// [`PostgresLogBuilder::migrate`](super::PostgresLogBuilder::migrate) runs it on
    /// connecting.
    pub const SCHEMA: &'static str = sql::SCHEMA;

    pub(super) fn new(
        prefix: Arc<str>,
        link: Arc<Link>,
        settings: Settings,
        following: Arc<Following>,
        reader: AbortOnDrop,
    ) -> Self {
        PostgresLogs {
            family: Arc::new(Family {
                prefix,
                link,
                settings,
                logs: Lock::new(HashMap::new()),
                following,
                _reader: reader,
            }),
        }
    }

    /// The log of the topic `<prefix><name>`, followed by this family's reader.
    ///
    /// While a log for that topic (or a subscription of it) is alive, this returns a log
    /// that shares its window, so a topic costs one window per process however often it is
    /// asked for. Otherwise its window starts where the reader is, and one query tells
    /// whether the topic is finished.
    ///
    /// Fails if PostgreSQL does not answer within the command timeout, or if the whole topic
    /// (prefix and name) is empty.
    pub async fn log(&self, name: &str) -> Result<PostgresLog, PostgresLogError> {
        let family = &self.family;
        let topic: Arc<str> = Arc::from(format!("{}{name}", family.prefix));
        if topic.is_empty() {
            return Err(PostgresLogError::new(
                PostgresLogErrorKind::Config,
                "connect",
                &topic,
                "the topic is empty; give a topic such as `chat`",
            ));
        }
        if let Some(log) = family.live(&topic) {
            return Ok(log);
        }
        let log = {
            let mut logs = family.logs.lock();
            if let Some(inner) = logs.get(&topic).and_then(Weak::upgrade) {
                // Another call made it meanwhile.
                return Ok(PostgresLog { inner });
            }
            // The window starts where the reader is: what the reader reads from now on is
            // after it, and a subscriber with an older cursor reads the rest from PostgreSQL.
            let window = family.following.follow(&topic, |start| {
                Window::placing_any_position(start, family.settings.window)
            });
            let inner = Arc::new(Inner {
                topic: Arc::clone(&topic),
                link: Arc::clone(&family.link),
                window,
                command_timeout: family.settings.command_timeout,
                counters: Default::default(),
                family: Arc::clone(family),
            });
            logs.insert(Arc::clone(&topic), Arc::downgrade(&inner));
            PostgresLog { inner }
        };
        // Asked after the window is followed, so that an end added meanwhile reaches it
        // through the reader if not through this answer.
        if let Some(end) = log.inner.topic_end().await? {
            log.inner.window.finished_at(end);
        }
        Ok(log)
    }

    /// The prefix of the family's topics (the builder's `topic`).
    pub fn prefix(&self) -> &str {
        &self.family.prefix
    }

    /// How many topics the reader follows now: one for each topic with a live log or
    /// subscription.
    pub fn reader_topics(&self) -> usize {
        self.family.following.topics()
    }

    /// Runs one trimming pass now, as the reader does by itself every second: each topic
    /// this process has seen rows of since its last trim keeps its newest `max_len` events,
    /// and events older than `max_age` go. Returns how many rows were removed (`0` when
    /// another instance is trimming at this moment).
    pub async fn trim(&self) -> Result<u64, PostgresLogError> {
        let topics = self.family.following.take_all_seen();
        let settings = &self.family.settings;
        let empty: Arc<str> = Arc::from("");
        let session = self.family.link.session(&empty).await?;
        limited("trim", &empty, settings.command_timeout, async {
            super::trim::trim(&session, &topics, settings).await
        })
        .await
    }
}

impl Family {
    /// The live log of `topic`, if any.
    fn live(&self, topic: &str) -> Option<PostgresLog> {
        let inner = self.logs.lock().get(topic).and_then(Weak::upgrade)?;
        Some(PostgresLog { inner })
    }

    /// The last handle on the log of `topic` is gone: its entry goes, unless a new log for
    /// the topic took its place meanwhile. (The reader lets the topic go by itself: it only
    /// holds the window weakly.)
    pub(super) fn forget(&self, topic: &str) {
        let mut logs = self.logs.lock();
        if logs.get(topic).is_some_and(|log| log.strong_count() == 0) {
            logs.remove(topic);
        }
    }
}

impl Inner {
    /// The topic's end, if it is finished.
    async fn topic_end(&self) -> Result<Option<crate::log::remote::StreamId>, PostgresLogError> {
        let topic = &self.topic;
        let session = self.link.session(topic).await?;
        let rows = limited("subscribe", topic, self.command_timeout, async {
            let rows = session.client.query(&session.topic_end, &[&&**topic]).await;
            rows.map_err(|error| PostgresLogError::from_postgres("subscribe", topic, error))
        })
        .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let parsed = row
            .try_get::<_, &str>(0)
            .and_then(|xid| row.try_get::<_, i64>(1).map(|seq| (xid, seq)));
        let (xid, seq) =
            parsed.map_err(|error| PostgresLogError::unexpected("subscribe", topic, error.to_string()))?;
        position(xid, seq)
            .map(Some)
            .map_err(|detail| PostgresLogError::unexpected("subscribe", topic, detail))
    }
}

impl fmt::Debug for PostgresLogs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let family = &self.family;
        f.debug_struct("PostgresLogs")
            .field("prefix", &family.prefix)
            .field("logs", &family.logs.lock().len())
            .field("reader_topics", &family.following.topics())
            .field("max_len", &family.settings.max_len)
            .field("max_age", &family.settings.max_age)
            .field("window", &family.settings.window)
            .finish_non_exhaustive()
    }
}
