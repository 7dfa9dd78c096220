//! [`StreamConfig`]: the settings every transport follows, and their defaults.

use std::sync::Arc;
use std::time::Duration;

use crate::cursor::DEFAULT_MAX_CURSOR_LEN;
use crate::log::StartPosition;
use crate::Shutdown;

/// Transport settings. The defaults are those of the README's table.
///
/// The long-poll wait ([`max_wait`](StreamConfig::max_wait), 25 s by default) must stay
/// below any request timeout around the service (tower's or tower-http's `TimeoutLayer`
/// races the response future): otherwise that layer answers `408`/`504` instead of the
/// empty long-poll shape.
///
/// ```
/// use std::time::Duration;
/// use tower_eventstream::{Shutdown, StreamConfig};
///
/// let shutdown = Shutdown::new();
/// let config = StreamConfig::default()
///     .keep_alive(Duration::from_secs(10))
///     .max_connection_age(Duration::from_secs(600))
///     .shutdown(shutdown.clone());
/// assert_eq!(config.max_wait_value(), Duration::from_secs(25));
/// ```
#[derive(Debug, Clone)]
#[must_use = "a StreamConfig does nothing until a service, layer or request uses it"]
pub struct StreamConfig {
    pub(crate) keep_alive: Option<Duration>,
    pub(crate) retry: Option<Duration>,
    pub(crate) max_connection_age: Option<Duration>,
    pub(crate) max_wait: Duration,
    pub(crate) batch_limit: usize,
    pub(crate) max_cursor_len: usize,
    pub(crate) reset_event: Arc<str>,
    pub(crate) checkpoint_event: Arc<str>,
    pub(crate) shutdown: Option<Shutdown>,
    pub(crate) frame_bytes: usize,
    pub(crate) topic_names: TopicNames,
    pub(crate) start: StartPosition,
}

/// How a stream over several topics names its events on SSE (see
/// [`StreamConfig::topic_names`]). A long poll always adds `"topic"` to each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TopicNames {
    /// `<topic>:<name>` (`kitchen:message`): a page listens per topic and name, and knows
    /// each event's topic from its type. The default.
    #[default]
    Prefixed,
    /// Each event keeps its own name: `onmessage` and listeners for plain names work as on
    /// a stream of one topic; the page tells topics apart by what the events say (their
    /// names or data).
    Plain,
}

/// Idle time after which an SSE stream sends a keep-alive comment.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The `retry:` hint sent when an SSE stream opens.
pub const DEFAULT_RETRY: Duration = Duration::from_secs(3);
/// The longest a long poll waits.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(25);
/// The most events one long-poll answer carries.
pub const DEFAULT_BATCH_LIMIT: usize = 100;
/// The name of the event that signals a gap.
pub const DEFAULT_RESET_EVENT: &str = "reset";
/// The name of the block that moves a client's cursor without an application event.
pub const DEFAULT_CHECKPOINT_EVENT: &str = "checkpoint";
/// The most bytes of events an SSE stream gathers into one frame (one write) when many are
/// ready at once.
const DEFAULT_FRAME_BYTES: usize = 64 * 1024;

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            keep_alive: Some(DEFAULT_KEEP_ALIVE),
            retry: Some(DEFAULT_RETRY),
            max_connection_age: None,
            max_wait: DEFAULT_MAX_WAIT,
            batch_limit: DEFAULT_BATCH_LIMIT,
            max_cursor_len: DEFAULT_MAX_CURSOR_LEN,
            reset_event: Arc::from(DEFAULT_RESET_EVENT),
            checkpoint_event: Arc::from(DEFAULT_CHECKPOINT_EVENT),
            shutdown: None,
            frame_bytes: DEFAULT_FRAME_BYTES,
            topic_names: TopicNames::Prefixed,
            start: StartPosition::LiveEnd,
        }
    }
}

impl StreamConfig {
    /// Sends a keep-alive comment on an SSE stream that has been idle for `interval`
    /// (default 15 s).
    pub fn keep_alive(mut self, interval: Duration) -> Self {
        self.keep_alive = (!interval.is_zero()).then_some(interval);
        self
    }

    /// Sends no keep-alive comments.
    pub fn without_keep_alive(mut self) -> Self {
        self.keep_alive = None;
        self
    }

    /// The reconnection delay hint sent when an SSE stream opens (default 3 s).
    pub fn retry(mut self, retry: Duration) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Sends no `retry:` hint.
    pub fn without_retry(mut self) -> Self {
        self.retry = None;
        self
    }

    /// Ends an SSE stream after `age`; the client reconnects with `Last-Event-ID` (spreads
    /// load after deploys). Default: no limit.
    pub fn max_connection_age(mut self, age: Duration) -> Self {
        self.max_connection_age = Some(age);
        self
    }

    /// The longest a long poll waits; a client's `timeout` is clamped to it (default 25 s).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// The current maximum long-poll wait.
    pub fn max_wait_value(&self) -> Duration {
        self.max_wait
    }

    /// The most events one long-poll answer carries (default 100, at least 1).
    pub fn batch_limit(mut self, events: usize) -> Self {
        self.batch_limit = events.max(1);
        self
    }

    /// The longest `Last-Event-ID` accepted, in bytes (default 256).
    pub fn max_cursor_len(mut self, bytes: usize) -> Self {
        self.max_cursor_len = bytes;
        self
    }

    /// The name of the event sent on a gap (default `reset`).
    pub fn reset_event(mut self, name: &str) -> Result<Self, crate::EventError> {
        crate::Event::empty().with_name(name)?;
        self.reset_event = Arc::from(name);
        Ok(self)
    }

    /// The name of the checkpoint block (default `checkpoint`): `id: <position>`,
    /// `event: <name>`, an empty `data:` line and a blank line.
    ///
    /// An SSE stream sends one when it opens (the client's current position) and whenever
    /// a source reports a [`Delivery::Checkpoint`](crate::Delivery::Checkpoint), so that a
    /// browser that reconnects before seeing any event still sends `Last-Event-ID` and misses
    /// nothing. The standard lets an id-only block (`id:` and a blank line) do this, but
    /// Firefox ignores such a block; a named block with an empty `data:` line moves the
    /// cursor in Chromium and Firefox alike and fires no `message` listener (only a listener
    /// for this very name). Pick a name the application does not use for its own events.
    pub fn checkpoint_event(mut self, name: &str) -> Result<Self, crate::EventError> {
        crate::Event::empty().with_name(name)?;
        self.checkpoint_event = Arc::from(name);
        Ok(self)
    }

    /// How a stream over several topics names its events on SSE (default
    /// [`TopicNames::Prefixed`]: `<topic>:<name>`).
    ///
    /// Pick [`TopicNames::Plain`] when the event names already say what the page needs
    /// (`notification`, `announcement`): `onmessage` fires for unnamed events and one
    /// listener per name serves every topic. Keep the prefix when the page must know each
    /// event's topic (a chat showing several rooms). Either way the composite cursor resumes
    /// every topic exactly, and a topic's gap is an event of the reset type whose data is
    /// that topic's key.
    ///
    /// ```
    /// use tower_eventstream::{StreamConfig, TopicNames};
    ///
    /// let config = StreamConfig::default().topic_names(TopicNames::Plain);
    /// # let _ = config;
    /// ```
    pub fn topic_names(mut self, names: TopicNames) -> Self {
        self.topic_names = names;
        self
    }

    /// Where a client without a cursor starts (default [`StartPosition::LiveEnd`]): the
    /// oldest event held for a stream that late joiners need whole (a generation, a job's
    /// progress), the last `n` for recent history (a chat's last messages). A client with a
    /// cursor always resumes from it. A long poll without a cursor gets the events from the
    /// start position (up to the batch limit) at once, like any poll with events ready.
    pub fn start(mut self, start: StartPosition) -> Self {
        self.start = start;
        self
    }

    /// Ends open streams and answers pending long polls when `shutdown` is triggered.
    pub fn shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = Some(shutdown);
        self
    }
}
