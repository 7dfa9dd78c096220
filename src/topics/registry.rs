//! The registry: topics by key, created on demand, counted, evicted when idle.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, MutexGuard, Weak};

use crate::sync::Lock;
use std::time::Duration;

use tokio::time::Instant;

use super::error::TopicError;
use super::key::{validate, TopicKeyError};
use super::make::MakeLog;
use super::TopicLimits;
use crate::EventLog;

type LogError<M> = <<M as MakeLog>::Log as EventLog>::Error;

/// The live topics by key.
type TopicMap<L> = HashMap<Box<str>, Arc<Topic<L>>>;

/// A topic found: its log and what the lookup took (a subscriber's admission, or nothing).
type Found<M, T> = Option<(<M as MakeLog>::Log, T)>;

/// One topic: its log and what decides its eviction.
pub(crate) struct Topic<L> {
    pub(crate) log: L,
    /// Given by the application ([`Topics::pin`](super::Topics::pin)): never evicted.
    pinned: bool,
    subscribers: AtomicUsize,
    /// When it was last used, in milliseconds since the registry began.
    last_used_ms: AtomicU64,
    /// When it was finished through the registry, in milliseconds since the registry began
    /// plus one (0: not finished).
    finished_ms: AtomicU64,
}

impl<L> Topic<L> {
    fn new(log: L, pinned: bool, now_ms: u64) -> Self {
        Topic {
            log,
            pinned,
            subscribers: AtomicUsize::new(0),
            last_used_ms: AtomicU64::new(now_ms),
            finished_ms: AtomicU64::new(0),
        }
    }
}

pub(crate) struct Registry<M: MakeLog> {
    pub(crate) make: M,
    topics: Lock<TopicMap<M::Log>>,
    pub(crate) limits: TopicLimits,
    subscribers: Arc<AtomicUsize>,
    /// Events appended through [`Topics::append`](super::Topics::append).
    pub(crate) appended: AtomicU64,
    /// Topics are made only by `create`: any other key is not found.
    pub(crate) created_explicitly: bool,
    began: Instant,
    /// Streams are labelled with their topic ([`TopicsBuilder::metrics_per_topic`](super::TopicsBuilder::metrics_per_topic)).
    #[cfg(feature = "metrics")]
    pub(crate) label_topics: bool,
}

/// A registry that goes takes its topics out of the live-topics gauge with it.
impl<M: MakeLog> Drop for Registry<M> {
    fn drop(&mut self) {
        crate::measure::topics(-(self.map().len() as isize));
    }
}

/// A subscriber's place in the counts; released when its feed is dropped.
pub(crate) struct Admission<L> {
    topic: Arc<Topic<L>>,
    total: Arc<AtomicUsize>,
    began: Instant,
}

impl<L> Drop for Admission<L> {
    fn drop(&mut self) {
        // A topic whose last subscriber leaves is idle from now on.
        let now_ms = self.began.elapsed().as_millis() as u64;
        self.topic.last_used_ms.store(now_ms, Ordering::Release);
        self.topic.subscribers.fetch_sub(1, Ordering::AcqRel);
        self.total.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<M: MakeLog> Registry<M> {
    pub(crate) fn new(make: M, limits: TopicLimits) -> Self {
        Registry {
            make,
            topics: Lock::new(HashMap::new()),
            limits,
            subscribers: Arc::new(AtomicUsize::new(0)),
            appended: AtomicU64::new(0),
            created_explicitly: false,
            began: Instant::now(),
            #[cfg(feature = "metrics")]
            label_topics: false,
        }
    }

    /// `request` with the `topic` label of its metrics, when the application asked for one.
    #[cfg(feature = "metrics")]
    pub(crate) fn label<A>(
        &self,
        mut request: crate::StreamRequest,
        topics: &[(String, A)],
    ) -> crate::StreamRequest {
        if self.label_topics {
            request.topic_label = Some(match topics {
                [(key, _)] => key.as_str().into(),
                _ => "*".into(),
            });
        }
        request
    }

    fn map(&self) -> MutexGuard<'_, TopicMap<M::Log>> {
        self.topics.lock()
    }

    fn now_ms(&self) -> u64 {
        self.began.elapsed().as_millis() as u64
    }

    pub(crate) fn len(&self) -> usize {
        self.map().len()
    }

    pub(crate) fn subscriber_count(&self) -> usize {
        self.subscribers.load(Ordering::Acquire)
    }

    /// The topic's log, created if needed; marks it used.
    pub(crate) async fn log(&self, key: &str) -> Result<M::Log, TopicError<LogError<M>>> {
        Ok(self.topic(key, |_| Ok(())).await?.0)
    }

    /// The topic's log and a new subscriber's place in the counts, or a refusal past a
    /// limit. The count is taken under the lock of the lookup, so eviction cannot take the
    /// topic between the two.
    pub(crate) async fn admit_to(
        &self,
        key: &str,
    ) -> Result<(M::Log, Admission<M::Log>), TopicError<LogError<M>>> {
        self.topic(key, |topic| self.admit(topic)).await
    }

    async fn topic<T>(
        &self,
        key: &str,
        take: impl Fn(&Arc<Topic<M::Log>>) -> Result<T, TopicError<LogError<M>>>,
    ) -> Result<(M::Log, T), TopicError<LogError<M>>> {
        validate(key).map_err(TopicError::InvalidKey)?;
        if let Some(found) = self.use_existing(key, &take)? {
            return Ok(found);
        }
        if self.created_explicitly {
            return Err(TopicError::NotFound);
        }
        self.make_topic(key, false).await?;
        // Created here or, meanwhile, by another caller; evicted again already only if the
        // registry is under pressure from other topics.
        self.use_existing(key, &take)?.ok_or(TopicError::TooManyTopics {
            limit: self.limits.max_topics,
        })
    }

    /// Makes the topic `key` unless it is live; `exclusive`: refuses a live one.
    async fn make_topic(&self, key: &str, exclusive: bool) -> Result<M::Log, TopicError<LogError<M>>> {
        let too_many = TopicError::TooManyTopics {
            limit: self.limits.max_topics,
        };
        if self.len() >= self.limits.max_topics {
            return Err(too_many);
        }
        if exclusive && self.map().contains_key(key) {
            return Err(TopicError::AlreadyExists);
        }
        let log = self.make.make_log(key).await.map_err(TopicError::Backend)?;
        let mut map = self.map();
        match map.get(key) {
            Some(_) if exclusive => Err(TopicError::AlreadyExists),
            Some(topic) => Ok(topic.log.clone()),
            None if map.len() >= self.limits.max_topics => Err(too_many),
            None => {
                map.insert(
                    key.into(),
                    Arc::new(Topic::new(log.clone(), false, self.now_ms())),
                );
                crate::measure::topics(1);
                Ok(log)
            }
        }
    }

    /// Creates the topic `key`; [`TopicError::AlreadyExists`] if it is live.
    pub(crate) async fn create(&self, key: &str) -> Result<M::Log, TopicError<LogError<M>>> {
        validate(key).map_err(TopicError::InvalidKey)?;
        self.make_topic(key, true).await
    }

    /// The live topic `key`'s log, without making one; a look, not a use (it does not keep
    /// the topic from idle eviction).
    pub(crate) fn get(&self, key: &str) -> Option<M::Log> {
        self.map().get(key).map(|topic| topic.log.clone())
    }

    /// Notes that the live topic `key` was finished now: it is kept for a while, then
    /// evicted.
    pub(crate) fn mark_finished(&self, key: &str) {
        if let Some(topic) = self.map().get(key) {
            let _ = (topic.finished_ms).compare_exchange(
                0,
                self.now_ms() + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    fn use_existing<T>(
        &self,
        key: &str,
        take: &impl Fn(&Arc<Topic<M::Log>>) -> Result<T, TopicError<LogError<M>>>,
    ) -> Result<Found<M, T>, TopicError<LogError<M>>> {
        let map = self.map();
        let Some(topic) = map.get(key) else {
            return Ok(None);
        };
        topic.last_used_ms.store(self.now_ms(), Ordering::Release);
        let taken = take(topic)?;
        Ok(Some((topic.log.clone(), taken)))
    }

    fn admit(&self, topic: &Arc<Topic<M::Log>>) -> Result<Admission<M::Log>, TopicError<LogError<M>>> {
        let limits = &self.limits;
        if topic.subscribers.load(Ordering::Acquire) >= limits.max_subscribers_per_topic {
            return Err(TopicError::TopicFull {
                limit: limits.max_subscribers_per_topic,
            });
        }
        if self.subscribers.fetch_add(1, Ordering::AcqRel) >= limits.max_subscribers {
            self.subscribers.fetch_sub(1, Ordering::AcqRel);
            return Err(TopicError::Full {
                limit: limits.max_subscribers,
            });
        }
        topic.subscribers.fetch_add(1, Ordering::AcqRel);
        Ok(Admission {
            topic: Arc::clone(topic),
            total: Arc::clone(&self.subscribers),
            began: self.began,
        })
    }

    /// Serves `log` as the topic `key` from now on, never evicted (it replaces a live topic
    /// of that key; its subscribers keep reading the old log until they reconnect).
    pub(crate) fn pin(&self, key: &str, log: M::Log) -> Result<(), TopicKeyError> {
        validate(key)?;
        let topic = Topic::new(log, true, self.now_ms());
        if self.map().insert(key.into(), Arc::new(topic)).is_none() {
            crate::measure::topics(1);
        }
        Ok(())
    }

    /// Drops the topics that have had no subscriber and no append for `idle` (when given);
    /// a finished topic instead once it was finished `keep_finished` ago (when given: never
    /// otherwise), readers or not, so that idle eviction cannot cut its keep short.
    pub(crate) fn evict(&self, idle: Option<Duration>, keep_finished: Option<Duration>) -> usize {
        let now = self.now_ms();
        let millis = |limit: Duration| u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        let (idle_ms, keep_ms) = (idle.map(millis), keep_finished.map(millis));
        let mut map = self.map();
        let before = map.len();
        map.retain(|_, topic| {
            if topic.pinned {
                return true;
            }
            match topic.finished_ms.load(Ordering::Acquire) {
                0 => {
                    topic.subscribers.load(Ordering::Acquire) > 0
                        || idle_ms.is_none_or(|idle_ms| {
                            now.saturating_sub(topic.last_used_ms.load(Ordering::Acquire)) < idle_ms
                        })
                }
                finished => keep_ms.is_none_or(|keep_ms| now.saturating_sub(finished - 1) < keep_ms),
            }
        });
        let evicted = before - map.len();
        if evicted > 0 {
            crate::measure::topics(-(evicted as isize));
        }
        evicted
    }
}

/// The shortest pause between two sweeps, however short the idle time (a sweep looks at
/// every topic under the lock appends take).
const MIN_SWEEP_PERIOD: Duration = Duration::from_millis(50);

/// Evicts idle and long-finished topics every half of the shorter of the two times, for as
/// long as the registry lives.
pub(crate) async fn sweep<M: MakeLog>(
    registry: Weak<Registry<M>>,
    idle: Option<Duration>,
    keep_finished: Option<Duration>,
) {
    let Some(shortest) = idle.into_iter().chain(keep_finished).min() else {
        return;
    };
    let period = (shortest / 2).max(MIN_SWEEP_PERIOD);
    loop {
        tokio::time::sleep(period).await;
        match registry.upgrade() {
            Some(registry) => {
                registry.evict(idle, keep_finished);
            }
            None => return,
        }
    }
}
