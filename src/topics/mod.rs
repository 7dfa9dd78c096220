//! Topics: many streams behind one endpoint, created on demand, evicted when idle,
//! authorized, filtered and limited.
//!
//! [`Topics`] holds one log per key, made by a [`MakeLog`] (a [`MemoryLogBuilder`](crate::MemoryLogBuilder),
//! or a [`RedisLogs`](crate::RedisLogs) family); [`TopicsService`] serves all of them at one
//! route, taking the key from the request; in a handler, [`Topics::serve`] does the same.
//! [`PublishService`] appends to them over HTTP.

use std::sync::Arc;
use std::time::Duration;

use http::Response;

use crate::{
    Event, EventLog, EventStreamBody, LastEventId, RetryingSubscription, SubscribeError, TopicsStats,
};

/// What [`Topics::serve`] and [`TopicsService`] answer with.
pub(crate) type Answer<L> = Response<EventStreamBody<TopicStream<L>>>;

mod access;
mod cursor;
mod error;
mod feed;
mod from_request;
mod key;
mod make;
mod publish;
mod registry;
mod serve;
mod service;
mod stream;

pub use access::{Access, Refusal};
pub use error::TopicError;
pub use feed::TopicFeed;
pub use key::{TopicKeyError, MAX_TOPIC_KEY_LEN};
pub use make::MakeLog;
pub use publish::{
    PublishService, DEFAULT_MAX_BODY_BYTES, EVENT_NAME_HEADER, IDEMPOTENCY_KEY_HEADER,
    IDEMPOTENT_REPLAYED_HEADER,
};
pub use service::{TopicsFuture, TopicsService};
pub use stream::TopicStream;

use registry::Registry;

/// The default bound on live topics.
pub const DEFAULT_MAX_TOPICS: usize = 100_000;
/// The default bound on subscribers of one topic.
pub const DEFAULT_MAX_SUBSCRIBERS_PER_TOPIC: usize = 10_000;
/// The default bound on subscribers of all topics.
pub const DEFAULT_MAX_SUBSCRIBERS: usize = 100_000;
/// The default time after which a topic with no subscriber and no append is evicted.
pub const DEFAULT_IDLE_EVICTION: Duration = Duration::from_secs(600);
/// The default time a topic finished through [`Topics::finish`] is kept for late and
/// reconnecting clients before it is evicted.
pub const DEFAULT_KEEP_FINISHED: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub(crate) struct TopicLimits {
    pub(crate) max_topics: usize,
    pub(crate) max_subscribers_per_topic: usize,
    pub(crate) max_subscribers: usize,
}

/// Many event logs, one per topic key: created on first use, evicted when idle, with
/// limits on topics and subscribers. Cloning is cheap; clones share the topics.
///
/// - **Keys**: 1 to 64 ASCII letters, digits, `-`, `_` or `.`, but not `.` or `..` (dot
///   segments, which URL paths drop: `/rooms/../events` reaches `/events`); anything else
///   is a [`TopicError::InvalidKey`] (`400`).
/// - **Eviction**: a topic with no subscriber and no append for
///   [`idle_eviction`](TopicsBuilder::idle_eviction) (default 10 minutes) is dropped. A
///   memory topic created again is a new log with a new epoch, so an old cursor gets
///   `reset`; a Redis topic's history stays in Redis and only the local window goes.
/// - **Limits**: past [`max_topics`](TopicsBuilder::max_topics) a new topic is refused;
///   past [`max_subscribers_per_topic`](TopicsBuilder::max_subscribers_per_topic) or
///   [`max_subscribers`](TopicsBuilder::max_subscribers) a new subscriber is. These refusals
///   pass: a long poll gets `503` + `Retry-After`, an SSE client a `retry:` hint and a clean
///   end, so a browser comes back once there is room. (tower's `ConcurrencyLimitLayer` does
///   not bound streams: its permit is released when the response head is returned, while
///   the body streams on.)
///
/// ```
/// use tower_eventstream::{Event, MemoryLog, Topics};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// let rooms = Topics::new(MemoryLog::builder().history(256));
/// rooms.append("lobby", Event::new("hello")).await.unwrap();
/// rooms.append("kitchen", Event::new("the kettle is on")).await.unwrap();
/// assert_eq!(rooms.len(), 2);
/// assert!(rooms.append("no spaces", Event::new("?")).await.is_err());
/// # });
/// ```
pub struct Topics<M: MakeLog> {
    registry: Arc<Registry<M>>,
    _sweeper: Option<Arc<AbortOnDrop>>,
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<M: MakeLog> Clone for Topics<M> {
    fn clone(&self) -> Self {
        Topics {
            registry: Arc::clone(&self.registry),
            _sweeper: self._sweeper.clone(),
        }
    }
}

impl<M: MakeLog> std::fmt::Debug for Topics<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topics")
            .field("topics", &self.len())
            .field("subscribers", &self.subscriber_count())
            .field("limits", &self.registry.limits)
            .finish_non_exhaustive()
    }
}

/// Builds [`Topics`] with other than the default limits.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct TopicsBuilder<M> {
    make: M,
    limits: TopicLimits,
    idle: Option<Duration>,
    keep_finished: Option<Duration>,
    created_explicitly: bool,
    #[cfg(feature = "metrics")]
    label_topics: bool,
}

impl<M: MakeLog> TopicsBuilder<M> {
    /// At most this many live topics (default [`DEFAULT_MAX_TOPICS`]).
    pub fn max_topics(mut self, topics: usize) -> Self {
        self.limits.max_topics = topics;
        self
    }

    /// At most this many subscribers of one topic (default
    /// [`DEFAULT_MAX_SUBSCRIBERS_PER_TOPIC`]).
    pub fn max_subscribers_per_topic(mut self, subscribers: usize) -> Self {
        self.limits.max_subscribers_per_topic = subscribers;
        self
    }

    /// At most this many subscribers of all topics (default [`DEFAULT_MAX_SUBSCRIBERS`]).
    pub fn max_subscribers(mut self, subscribers: usize) -> Self {
        self.limits.max_subscribers = subscribers;
        self
    }

    /// Evicts a topic after this long without subscribers and appends (default
    /// [`DEFAULT_IDLE_EVICTION`]).
    pub fn idle_eviction(mut self, idle: Duration) -> Self {
        self.idle = Some(idle);
        self
    }

    /// Keeps every topic until the registry is dropped (finished ones too).
    pub fn without_eviction(mut self) -> Self {
        self.idle = None;
        self.keep_finished = None;
        self
    }

    /// Keeps a topic finished through [`Topics::finish`] for `keep` (default
    /// [`DEFAULT_KEEP_FINISHED`]), so that late and reconnecting clients can still read it,
    /// then evicts it, whether readers are connected or not (they read on to the end). Idle
    /// eviction does not apply to a finished topic.
    pub fn keep_finished(mut self, keep: Duration) -> Self {
        self.keep_finished = Some(keep);
        self
    }

    /// Topics exist only once made by [`Topics::create`] (request-scoped streams: a
    /// generation, a job, an upload): a request, lookup or append for any other key is
    /// [`TopicError::NotFound`], which a request is answered with `404` (final for a
    /// browser: right for "no such generation"). Without it, a topic is made on first use.
    pub fn created_explicitly(mut self) -> Self {
        self.created_explicitly = true;
        self
    }

    /// Labels the subscription gauge and the delivered-events counter of this registry's
    /// streams with their `topic` (a stream of several topics is labelled `*`).
    ///
    /// **Cardinality risk**: every topic key becomes a time series of the exporter, kept
    /// after the topic is evicted. With keys made per user, per document or per session this
    /// grows without bound and can exhaust the exporter's (and the metrics store's) memory.
    /// Turn it on only for a small, fixed set of topics (a few chat rooms, a few feeds); the
    /// default, no topic label, keeps the number of series fixed.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics_per_topic(mut self) -> Self {
        self.label_topics = true;
        self
    }

    /// Creates the registry; with eviction, its sweeper task starts (so this needs a Tokio
    /// runtime, as `tokio::spawn` does).
    pub fn build(self) -> Topics<M> {
        let mut registry = Registry::new(self.make, self.limits);
        registry.created_explicitly = self.created_explicitly;
        #[cfg(feature = "metrics")]
        {
            registry.label_topics = self.label_topics;
        }
        let registry = Arc::new(registry);
        let sweeps = self.idle.is_some() || self.keep_finished.is_some();
        let sweeper = sweeps.then(|| {
            let sweep = registry::sweep(Arc::downgrade(&registry), self.idle, self.keep_finished);
            Arc::new(AbortOnDrop(tokio::spawn(sweep).abort_handle()))
        });
        Topics {
            registry,
            _sweeper: sweeper,
        }
    }
}

type LogError<M> = <<M as MakeLog>::Log as EventLog>::Error;

impl<M: MakeLog> Topics<M> {
    /// Topics with the default limits, each log made by `make`.
    pub fn new(make: M) -> Self {
        Self::builder(make).build()
    }

    /// Starts configuring topics whose logs `make` creates.
    pub fn builder(make: M) -> TopicsBuilder<M> {
        TopicsBuilder {
            make,
            limits: TopicLimits {
                max_topics: DEFAULT_MAX_TOPICS,
                max_subscribers_per_topic: DEFAULT_MAX_SUBSCRIBERS_PER_TOPIC,
                max_subscribers: DEFAULT_MAX_SUBSCRIBERS,
            },
            idle: Some(DEFAULT_IDLE_EVICTION),
            keep_finished: Some(DEFAULT_KEEP_FINISHED),
            created_explicitly: false,
            #[cfg(feature = "metrics")]
            label_topics: false,
        }
    }

    /// The number of live topics.
    pub fn len(&self) -> usize {
        self.registry.len()
    }

    /// Whether no topic is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of subscribers of all topics.
    pub fn subscriber_count(&self) -> usize {
        self.registry.subscriber_count()
    }

    /// A snapshot of the registry (see [`TopicsStats`]): one short lock of the topic map.
    /// Each topic's log has its own (`MemoryLog::stats`, through [`log`](Topics::log)).
    pub fn stats(&self) -> TopicsStats {
        TopicsStats {
            topics: self.len(),
            subscribers: self.subscriber_count(),
            appended: (self.registry.appended).load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Evicts the topics idle for `idle` now (the sweeper does this on its own).
    pub fn evict_idle(&self, idle: Duration) -> usize {
        self.registry.evict(Some(idle), None)
    }

    /// Creates the topic `key` (a new log); [`TopicError::AlreadyExists`] if it is live. The
    /// way to make topics of a registry [`created_explicitly`](TopicsBuilder::created_explicitly).
    /// Write to it through [`append`](Topics::append) and [`finish`](Topics::finish), not
    /// through the log returned: the registry counts an append as use (so the topic is not
    /// evicted as idle while it is written to) and starts a finished topic's keep time.
    pub async fn create(&self, key: &str) -> Result<M::Log, TopicError<LogError<M>>> {
        self.registry.create(key).await
    }

    /// The log of the live topic `key`, without creating it. A look is not a use: it does
    /// not keep the topic from idle eviction.
    pub fn get(&self, key: &str) -> Option<M::Log> {
        self.registry.get(key)
    }

    /// Finishes the topic `key` ([`EventLog::finish`]): appends are refused from now on,
    /// readers' streams end after the last event, and the topic is kept for
    /// [`keep_finished`](TopicsBuilder::keep_finished), then evicted.
    /// [`TopicError::NotFound`] if it is not live.
    ///
    /// ```
    /// use tower_eventstream::{Event, MemoryLog, TopicError, Topics};
    ///
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let generations = Topics::builder(MemoryLog::builder()).created_explicitly().build();
    /// generations.create("gen-1").await.unwrap();
    /// generations.append("gen-1", Event::new("Once")).await.unwrap();
    /// generations.finish("gen-1").await.unwrap();
    /// assert!(matches!(generations.append("gen-1", Event::new("more")).await, Err(TopicError::Finished)));
    /// assert!(matches!(generations.log("gen-2").await, Err(TopicError::NotFound)));
    /// # });
    /// ```
    pub async fn finish(&self, key: &str) -> Result<(), TopicError<LogError<M>>> {
        let log = self.registry.get(key).ok_or(TopicError::NotFound)?;
        log.finish().await.map_err(TopicError::Backend)?;
        self.registry.mark_finished(key);
        Ok(())
    }

    /// Serves `log` as the topic `key`, never evicted: a topic whose log the application
    /// made itself (one with other settings, or one it also uses elsewhere). It replaces a
    /// live topic of that key; that topic's subscribers read on from the old log until they
    /// reconnect.
    pub fn pin(&self, key: &str, log: M::Log) -> Result<(), TopicKeyError> {
        self.registry.pin(key, log)
    }

    /// The log of the topic `key`, created if it is not live.
    pub async fn log(&self, key: &str) -> Result<M::Log, TopicError<LogError<M>>> {
        self.registry.log(key).await
    }

    /// Appends `event` to the topic `key` (created if it is not live).
    pub async fn append(&self, key: &str, event: Event) -> Result<Event, TopicError<LogError<M>>> {
        let log = self.log(key).await?;
        let appended = log.append(event).await?;
        (self.registry.appended).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(appended)
    }

    /// Appends `event` to the topic `key` unless the same idempotency key came with the same
    /// event within `window` (see [`EventLog::append_once`](crate::EventLog::append_once)):
    /// the publish that a client retries after losing the answer. The same key with another
    /// event is [`TopicError::KeyReused`]; keys are remembered per topic.
    pub async fn append_once(
        &self,
        key: &str,
        event: Event,
        once: &crate::IdempotencyKey,
        window: std::time::Duration,
    ) -> Result<crate::Appended, TopicError<LogError<M>>> {
        let log = self.log(key).await?;
        let appended = log.append_once(event, once, window).await?;
        if !appended.is_repeat() {
            (self.registry.appended).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(appended)
    }

    /// A subscriber's feed of the topic `key` after `cursor`, counted against the limits,
    /// with `access` applied: for reading in process. An HTTP request is answered with
    /// [`serve`](Topics::serve).
    pub async fn subscribe(
        &self,
        key: &str,
        cursor: Option<&LastEventId>,
        access: Access,
    ) -> Result<TopicFeed<M::Log>, TopicError<LogError<M>>> {
        let (log, admission) = self.registry.admit_to(key).await?;
        let subscription = log.subscribe(cursor).await.map_err(|error| match error {
            SubscribeError::InvalidCursor(error) => TopicError::InvalidCursor(error),
            SubscribeError::Backend(error) => TopicError::Backend(error),
        })?;
        Ok(TopicFeed::new(
            RetryingSubscription::live(subscription),
            admission,
            access.filter,
            access.for_at_most,
            crate::DEFAULT_RETRY,
        ))
    }
}
