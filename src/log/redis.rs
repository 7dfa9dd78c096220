//! [`RedisLog`]: Redis Streams as the event log shared by several processes (feature `redis`).
//!
//! # How it works
//!
//! - **Append** is one `XADD <key> MAXLEN ~ <n> *` storing the event's fields (`data`,
//!   `name`, and `retry` / `comment` when set); the id Redis assigns (`<ms>-<seq>`) is the
//!   event id. With [`RedisLogBuilder::max_age`], an `XTRIM <key> MINID ~ <now - age>` runs in
//!   the same `MULTI`.
//! - **One reader per process and stream.** A background task reads the stream on a
//!   dedicated connection (`XREAD BLOCK` as the wake-up, then a checked `XRANGE`) into a
//!   local window: a ring of events, each encoded once, with a [`Notify`] that wakes the
//!   local subscribers. Ten thousand subscribers cost one Redis reader.
//! - **Catching up.** A subscriber whose cursor is older than the window reads the missing
//!   part from Redis (`XRANGE (<cursor> + COUNT n`, repeated) and then joins the window at
//!   its cursor, once the window holds that very id (which proves it reads the same stream);
//!   ids order both, so nothing is lost or repeated at the seam.
//! - **Gaps.** Every read from Redis is a `MULTI` of `XINFO STREAM`, `TIME`, the cursor's
//!   own entry and the entries after it, so the check and the data are one snapshot. See
//!   [`RedisLog`] for the rule.
//! - **Faults.** When Redis goes away the reader retries with backoff; subscribers stay
//!   connected (their keep-alives go on) and receive what was appended meanwhile once Redis
//!   is back. An append while Redis is down fails within the command timeout.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Value};
use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;
use tokio::time::Sleep;

use super::{EventLog, ResumeOutcome, SubscribeError, Subscription};
use crate::{CursorError, Delivery, Event, EventId, EventSource, LastEventId};

/// The default approximate number of entries the Redis stream keeps (`MAXLEN ~`).
pub const DEFAULT_MAX_LEN: usize = 10_000;
/// The default number of events each process holds in its local window.
pub const DEFAULT_WINDOW: usize = super::memory::DEFAULT_HISTORY;
/// The default limit on one Redis command (append, subscribe, catch-up read).
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// The default limit on connecting to Redis.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the reader's `XREAD BLOCK` waits before it checks the stream again (a deleted
/// stream is noticed within this time even when nothing is appended).
const READER_BLOCK: Duration = Duration::from_secs(2);
/// Entries the reader takes per read.
const READER_BATCH: usize = 512;
/// Entries a catching-up subscriber takes per read.
const FETCH_BATCH: usize = 256;
/// Events a subscriber takes from the window under one lock.
const TAKE_PER_LOCK: usize = 64;
/// Backoff of the reader between failed attempts.
const READER_BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));
/// Backoff of a catching-up subscriber between failed reads.
const FETCH_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

// ---------------------------------------------------------------------------------------
// Stream ids
// ---------------------------------------------------------------------------------------

/// A Redis stream id, `<milliseconds>-<sequence>`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct StreamId {
    ms: u64,
    seq: u64,
}

impl StreamId {
    /// `0-0`: before every entry. The position of a stream that does not exist.
    const ZERO: StreamId = StreamId { ms: 0, seq: 0 };

    fn parse(text: &str) -> Option<StreamId> {
        fn number(digits: &str) -> Option<u64> {
            let plain =
                !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit());
            plain.then(|| digits.parse().ok()).flatten()
        }
        let (ms, seq) = text.split_once('-')?;
        Some(StreamId {
            ms: number(ms)?,
            seq: number(seq)?,
        })
    }

    fn parse_bytes(bytes: &[u8]) -> Option<StreamId> {
        std::str::from_utf8(bytes).ok().and_then(StreamId::parse)
    }

    /// The greatest id below this one: no id lies between the two.
    fn pred(self) -> StreamId {
        match (self.ms, self.seq) {
            (_, seq) if seq > 0 => StreamId {
                ms: self.ms,
                seq: seq - 1,
            },
            (ms, _) if ms > 0 => StreamId {
                ms: ms - 1,
                seq: u64::MAX,
            },
            _ => StreamId::ZERO,
        }
    }

    fn event_id(self) -> EventId {
        EventId::new(self.to_string()).expect("digits and a dash are a valid event id")
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// What kind of failure a [`RedisLogError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisLogErrorKind {
    /// The URL, stream key or credentials are unusable.
    Config,
    /// Redis could not be reached, or the connection broke.
    Unavailable,
    /// Redis did not answer within the configured time.
    Timeout,
    /// Redis answered with an error (for example: the key holds a value that is not a stream).
    Refused,
    /// Redis answered in a way this crate does not understand (for example: a server older
    /// than 7.0).
    UnexpectedReply,
}

/// A failure of [`RedisLog`]'s Redis backend; its message says what to check.
///
/// Appends answer it directly; subscribing wraps it in
/// [`SubscribeError::Backend`] (an SSE stream is then held open until Redis answers, a long
/// poll gets `503`; see [`StreamRequest::serve`](crate::StreamRequest::serve)).
pub struct RedisLogError {
    kind: RedisLogErrorKind,
    operation: &'static str,
    key: Arc<str>,
    detail: String,
    source: Option<redis::RedisError>,
}

impl RedisLogError {
    fn new(
        kind: RedisLogErrorKind,
        operation: &'static str,
        key: &Arc<str>,
        detail: impl Into<String>,
    ) -> Self {
        RedisLogError {
            kind,
            operation,
            key: Arc::clone(key),
            detail: detail.into(),
            source: None,
        }
    }

    fn from_redis(operation: &'static str, key: &Arc<str>, error: redis::RedisError) -> Self {
        use redis::ErrorKind as K;
        let kind = match error.kind() {
            _ if error.is_timeout() => RedisLogErrorKind::Timeout,
            K::AuthenticationFailed | K::InvalidClientConfig => RedisLogErrorKind::Config,
            K::Server(_) | K::Extension => RedisLogErrorKind::Refused,
            K::Parse | K::UnexpectedReturnType => RedisLogErrorKind::UnexpectedReply,
            _ => RedisLogErrorKind::Unavailable,
        };
        let detail = match kind {
            RedisLogErrorKind::Refused if error.code() == Some("WRONGTYPE") => {
                "the key holds a value that is not a stream; choose another stream key".to_owned()
            }
            RedisLogErrorKind::Config => "check the URL's host, port, user and password".to_owned(),
            RedisLogErrorKind::Unavailable | RedisLogErrorKind::Timeout => {
                "check that redis-server is running and reachable at the configured URL".to_owned()
            }
            _ => String::new(),
        };
        RedisLogError {
            kind,
            operation,
            key: Arc::clone(key),
            detail,
            source: Some(error),
        }
    }

    fn timeout(operation: &'static str, key: &Arc<str>, after: Duration) -> Self {
        let mut detail = format!(
            "no answer within {after:?}; check that redis-server is running and reachable at the configured URL"
        );
        if operation == "XADD" {
            detail.push_str(" (the event may or may not have been stored)");
        }
        RedisLogError::new(RedisLogErrorKind::Timeout, operation, key, detail)
    }

    fn unexpected(operation: &'static str, key: &Arc<str>, detail: impl Into<String>) -> Self {
        RedisLogError::new(RedisLogErrorKind::UnexpectedReply, operation, key, detail)
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> RedisLogErrorKind {
        self.kind
    }

    /// The stream key the failing operation was about.
    pub fn stream_key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for RedisLogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            RedisLogErrorKind::Config => "cannot use the Redis settings for",
            RedisLogErrorKind::Unavailable => "Redis is unavailable for",
            RedisLogErrorKind::Timeout => "Redis timed out on",
            RedisLogErrorKind::Refused => "Redis refused",
            RedisLogErrorKind::UnexpectedReply => "unexpected reply from Redis to",
        };
        write!(f, "{what} {} on stream `{}`", self.operation, self.key)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl fmt::Debug for RedisLogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLogError")
            .field("kind", &self.kind)
            .field("operation", &self.operation)
            .field("key", &self.key)
            .field("detail", &self.detail)
            .field("source", &self.source)
            .finish()
    }
}

impl std::error::Error for RedisLogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// Runs `request` with a time limit, mapping both failures to [`RedisLogError`].
async fn limited<T>(
    operation: &'static str,
    key: &Arc<str>,
    limit: Duration,
    request: impl Future<Output = Result<T, RedisLogError>>,
) -> Result<T, RedisLogError> {
    match tokio::time::timeout(limit, request).await {
        Ok(result) => result,
        Err(_) => Err(RedisLogError::timeout(operation, key, limit)),
    }
}

// ---------------------------------------------------------------------------------------
// Builder
// ---------------------------------------------------------------------------------------

/// Configures and connects a [`RedisLog`].
#[derive(Clone)]
pub struct RedisLogBuilder {
    url: String,
    key: String,
    max_len: usize,
    max_age: Option<Duration>,
    window: usize,
    command_timeout: Duration,
    connect_timeout: Duration,
}

impl RedisLogBuilder {
    /// How many entries the Redis stream keeps, approximately (`XADD … MAXLEN ~ n`; Redis
    /// trims whole internal nodes, so a few more may stay). Default 10 000, at least 1.
    pub fn max_len(mut self, entries: usize) -> Self {
        self.max_len = entries.max(1);
        self
    }

    /// Also trims entries older than `age` (`XTRIM … MINID ~`, measured with this process's
    /// clock against the ids' Redis time). Default: kept until the length limit.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// How many events this process holds in its local window (default 1 024, at least 1).
    /// Subscribers further behind read the missing part from Redis.
    pub fn window(mut self, events: usize) -> Self {
        self.window = events.max(1);
        self
    }

    /// The longest an append, a subscribe or a catch-up read waits for Redis (default 2 s).
    /// An append that times out fails with [`RedisLogErrorKind::Timeout`].
    pub fn command_timeout(mut self, limit: Duration) -> Self {
        self.command_timeout = limit;
        self
    }

    /// The longest [`connect`](RedisLogBuilder::connect) and each reconnect attempt of the
    /// reader may take (default 5 s).
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = limit;
        self
    }

    /// Connects to Redis, reads the stream's position and starts this process's reader.
    ///
    /// Fails if the URL is unusable, Redis cannot be reached within the connect timeout, or
    /// the key holds another type. Must be called within a Tokio runtime.
    pub async fn connect(self) -> Result<RedisLog, RedisLogError> {
        let key: Arc<str> = Arc::from(self.key.as_str());
        if key.is_empty() {
            return Err(RedisLogError::new(
                RedisLogErrorKind::Config,
                "connect",
                &key,
                "the stream key is empty; give a key such as `chat`",
            ));
        }
        let client =
            Client::open(self.url.as_str()).map_err(|e| RedisLogError::from_redis("connect", &key, e))?;

        let attempt = self.connect_timeout.min(Duration::from_secs(1));
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(attempt))
            .set_response_timeout(Some(self.command_timeout))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1))
            .set_number_of_retries(60);
        let manager = limited("connect", &key, self.connect_timeout, async {
            ConnectionManager::new_with_config(client.clone(), manager_config)
                .await
                .map_err(|e| RedisLogError::from_redis("connect", &key, e))
        })
        .await?;

        let reader_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(attempt))
            .set_response_timeout(Some(READER_BLOCK + self.command_timeout));
        let mut reader_connection = limited("connect", &key, self.connect_timeout, async {
            client
                .get_multiplexed_async_connection_with_config(&reader_config)
                .await
                .map_err(|e| RedisLogError::from_redis("connect", &key, e))
        })
        .await?;

        check_server_version(&mut reader_connection, &key, self.command_timeout).await?;
        // The window starts at the stream's newest id: a fresh subscriber starts there, and
        // one with an older cursor reads the rest from Redis.
        let (start, head_added) = limited("XINFO STREAM", &key, self.command_timeout, async {
            let read = read_after(&mut reader_connection, &key, StreamId::ZERO, None, 0).await?;
            Ok((read.last_generated, read.entries_added))
        })
        .await?;

        let window = Arc::new(Window {
            state: Mutex::new(WindowState {
                entries: VecDeque::with_capacity(self.window.min(4096)),
                start,
                end: start,
                restart_at: start,
                generation: 0,
            }),
            wake: Arc::new(Notify::new()),
            capacity: self.window,
        });
        let reader = tokio::spawn(read_loop(Reader {
            window: Arc::clone(&window),
            client,
            config: reader_config,
            connection: Some(reader_connection),
            key: Arc::clone(&key),
            last: start,
            head_added: Some(head_added),
            connect_timeout: self.connect_timeout,
            command_timeout: self.command_timeout,
        }));

        Ok(RedisLog {
            inner: Arc::new(Inner {
                key,
                manager,
                window,
                max_len: self.max_len,
                max_age: self.max_age,
                command_timeout: self.command_timeout,
                subscribers: AtomicUsize::new(0),
                _reader: AbortOnDrop(reader.abort_handle()),
            }),
        })
    }
}

impl fmt::Debug for RedisLogBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: it is left out.
        f.debug_struct("RedisLogBuilder")
            .field("key", &self.key)
            .field("max_len", &self.max_len)
            .field("max_age", &self.max_age)
            .field("window", &self.window)
            .field("command_timeout", &self.command_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

/// Refuses servers older than 7.0, whose `XINFO STREAM` lacks what the gap check needs.
/// A server that hides `INFO` is given the benefit of the doubt (the check at each read
/// still refuses a reply without those fields).
async fn check_server_version(
    connection: &mut MultiplexedConnection,
    key: &Arc<str>,
    limit: Duration,
) -> Result<(), RedisLogError> {
    let reply = tokio::time::timeout(
        limit,
        redis::cmd("INFO").arg("server").query_async::<Value>(connection),
    )
    .await;
    let Ok(Ok(reply)) = reply else { return Ok(()) };
    let Some(text) = text_of(&reply) else {
        return Ok(());
    };
    let Some(version) = text
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .map(str::trim)
    else {
        return Ok(());
    };
    let major = version.split('.').next().and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(major) if major < 7 => Err(RedisLogError::new(
            RedisLogErrorKind::UnexpectedReply,
            "connect",
            key,
            format!(
                "Redis {version} is too old: RedisLog needs Redis 7.0 or later (XINFO STREAM entries-added)"
            ),
        )),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// The log
// ---------------------------------------------------------------------------------------

/// An event log on a Redis stream, shared by every process that connects to the same key:
/// a client can reconnect to any instance behind a load balancer and resume with
/// `Last-Event-ID`.
///
/// Event ids are the stream's ids (`<milliseconds>-<sequence>`). Each process runs one
/// reader task that feeds a local window, so local subscribers cost Redis nothing while
/// they keep up. Cloning is cheap; clones share the connection and the reader, which stops
/// when the last clone and the last subscription are dropped.
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
///   reader notices a deleted or recreated stream within seconds and then sends every
///   subscriber of the window a gap.
/// - The reader also remembers the count of entries ever added when it reached the newest
///   entry; if exactly the entries added since are held, its position is continuous even
///   though its own entry was trimmed (an idle stream whose newest entry ages out under
///   [`max_age`](RedisLogBuilder::max_age)).
///
/// ```no_run
/// use tower_eventstream::{Event, EventLog, RedisLog};
///
/// # async fn run() -> Result<(), tower_eventstream::RedisLogError> {
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
    manager: ConnectionManager,
    window: Arc<Window>,
    max_len: usize,
    max_age: Option<Duration>,
    command_timeout: Duration,
    subscribers: AtomicUsize,
    _reader: AbortOnDrop,
}

/// Stops the reader task when the log is gone.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
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
        RedisLogBuilder {
            url: url.into(),
            key: key.into(),
            max_len: DEFAULT_MAX_LEN,
            max_age: None,
            window: DEFAULT_WINDOW,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// The stream's key.
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    /// The number of live subscriptions in this process.
    pub fn subscriber_count(&self) -> usize {
        self.inner.subscribers.load(Ordering::Acquire)
    }

    /// The newest position this process's reader has reached: a client that resumes from it
    /// receives what is appended afterwards.
    pub fn position(&self) -> EventId {
        self.inner.window.lock().end.event_id()
    }

    fn subscription(
        &self,
        cursor: StreamId,
        generation: u64,
        mode: Mode,
        outcome: ResumeOutcome,
    ) -> RedisSubscription {
        self.inner.subscribers.fetch_add(1, Ordering::AcqRel);
        RedisSubscription {
            notified: Box::pin(Arc::clone(&self.inner.window.wake).notified_owned()),
            log: self.clone(),
            cursor,
            delivered: cursor,
            ready: VecDeque::new(),
            gap_owed: false,
            mode,
            generation,
            armed: false,
            backoff: FETCH_BACKOFF.0,
            outcome,
        }
    }

    async fn xadd(&self, event: &Event) -> Result<StreamId, RedisLogError> {
        let key = &self.inner.key;
        let mut xadd = redis::cmd("XADD");
        xadd.arg(&**key)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.inner.max_len)
            .arg("*");
        let mut fields = 0;
        if let Some(name) = event.name() {
            xadd.arg("name").arg(name);
            fields += 1;
        }
        if event.has_data() {
            xadd.arg("data").arg(event.data());
            fields += 1;
        }
        if let Some(retry) = event.retry() {
            xadd.arg("retry")
                .arg(u64::try_from(retry.as_millis()).unwrap_or(u64::MAX));
            fields += 1;
        }
        if let Some(comment) = event.comment() {
            xadd.arg("comment").arg(comment);
            fields += 1;
        }
        if fields == 0 {
            // XADD needs a field; this one marks an event with nothing in it.
            xadd.arg("empty").arg("");
        }
        let mut connection = self.inner.manager.clone();
        let reply = match self.inner.max_age {
            None => xadd.query_async::<Value>(&mut connection).await,
            Some(age) => {
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or_default();
                let oldest_ms = u64::try_from(now_ms.saturating_sub(age.as_millis())).unwrap_or(0);
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .add_command(xadd)
                    .cmd("XTRIM")
                    .arg(&**key)
                    .arg("MINID")
                    .arg("~")
                    .arg(format!("{oldest_ms}-0"))
                    .ignore();
                pipe.query_async::<Value>(&mut connection)
                    .await
                    .map(|reply| match reply {
                        Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
                        other => other,
                    })
            }
        };
        let reply = reply.map_err(|e| RedisLogError::from_redis("XADD", key, e))?;
        text_of(&reply).and_then(StreamId::parse).ok_or_else(|| {
            RedisLogError::unexpected("XADD", key, format!("expected the new entry's id, got {reply:?}"))
        })
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

impl EventLog for RedisLog {
    type Error = RedisLogError;
    type Subscription = RedisSubscription;

    async fn append(&self, event: Event) -> Result<Event, RedisLogError> {
        let id = limited(
            "XADD",
            &self.inner.key,
            self.inner.command_timeout,
            self.xadd(&event),
        )
        .await?;
        Ok(event.with_event_id(id.event_id()))
    }

    fn subscribe(
        &self,
        cursor: Option<&LastEventId>,
    ) -> impl Future<Output = Result<RedisSubscription, SubscribeError<RedisLogError>>> + Send {
        let parsed = cursor.map(|cursor| {
            StreamId::parse(cursor.as_str()).ok_or(CursorError::Unknown {
                reason: "expected a Redis stream id, <milliseconds>-<sequence>",
            })
        });
        async move {
            let cursor = match parsed {
                None => {
                    // Fresh: the live end of this process's window.
                    let window = self.inner.window.lock();
                    let (end, generation) = (window.end, window.generation);
                    drop(window);
                    return Ok(self.subscription(end, generation, Mode::Window, ResumeOutcome::Fresh));
                }
                Some(Err(error)) => return Err(SubscribeError::InvalidCursor(error)),
                Some(Ok(cursor)) => cursor,
            };
            let generation = {
                let window = self.inner.window.lock();
                if window.holds(cursor) {
                    // Everything after the cursor is in the window: no need to ask Redis.
                    let generation = window.generation;
                    drop(window);
                    return Ok(self.subscription(cursor, generation, Mode::Window, ResumeOutcome::Resumed));
                }
                window.generation
            };
            let inner = &self.inner;
            let mut connection = inner.manager.clone();
            let read = limited(
                "XRANGE",
                &inner.key,
                inner.command_timeout,
                read_after(&mut connection, &inner.key, cursor, None, FETCH_BATCH),
            )
            .await
            .map_err(SubscribeError::Backend)?;
            match read.continuity {
                Continuity::Continuous => {
                    let full = read.entries.len() >= FETCH_BATCH;
                    let mut subscription =
                        self.subscription(cursor, generation, Mode::Join, ResumeOutcome::Resumed);
                    subscription.take_read(read.entries);
                    if full {
                        subscription.mode = subscription.start_fetch();
                    }
                    Ok(subscription)
                }
                Continuity::Gap { restart } => {
                    let mut subscription =
                        self.subscription(restart, generation, Mode::Join, ResumeOutcome::Gap);
                    subscription.gap_owed = true;
                    subscription.mode = subscription.start_fetch();
                    Ok(subscription)
                }
                Continuity::Future { .. } => Err(SubscribeError::InvalidCursor(CursorError::Unknown {
                    reason: "the id is later than the stream's newest entry and Redis's clock",
                })),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reading a snapshot of the stream
// ---------------------------------------------------------------------------------------

/// One consistent read of the stream after a cursor.
struct Read {
    continuity: Continuity,
    /// Entries after the cursor (only when continuous).
    entries: Vec<(StreamId, Event)>,
    /// The stream's newest id (`0-0` when it does not exist).
    last_generated: StreamId,
    /// How many entries were ever added to the stream (0 when it does not exist).
    entries_added: u64,
}

enum Continuity {
    /// Every entry after the cursor is held; `entries` are the next ones.
    Continuous,
    /// Entries after the cursor are gone; reading goes on after `restart`.
    Gap { restart: StreamId },
    /// The cursor is later than the stream and Redis's clock: this stream never issued it.
    /// A reader that was there (history rewound) goes on after `restart`.
    Future { restart: StreamId },
}

/// Reads up to `count` entries after `cursor` together with what decides whether they
/// follow it without a gap, in one `MULTI` (see [`RedisLog`] for the rule).
///
/// `head_added`, when known, is the stream's count of entries ever added at a moment when
/// `cursor` was its newest id (the reader knows it). Then the cursor is continuous even if
/// its own entry was trimmed since, provided every entry added after that moment is still
/// held: an idle stream whose newest entry ages out is not a gap for the reader.
async fn read_after(
    connection: &mut impl ConnectionLike,
    key: &Arc<str>,
    cursor: StreamId,
    head_added: Option<u64>,
    count: usize,
) -> Result<Read, RedisLogError> {
    const OP: &str = "XRANGE";
    let at = cursor.to_string();
    let mut pipe = redis::pipe();
    pipe.atomic().ignore_errors();
    pipe.cmd("XINFO").arg("STREAM").arg(&**key);
    pipe.cmd("TIME");
    pipe.cmd("XRANGE")
        .arg(&**key)
        .arg(&at)
        .arg(&at)
        .arg("COUNT")
        .arg(1);
    if count > 0 {
        pipe.cmd("XRANGE")
            .arg(&**key)
            .arg(format!("({at}"))
            .arg("+")
            .arg("COUNT")
            .arg(count);
    }
    let reply = pipe
        .query_async::<Value>(connection)
        .await
        .map_err(|e| RedisLogError::from_redis(OP, key, e))?;
    let Value::Array(replies) = reply else {
        return Err(RedisLogError::unexpected(
            OP,
            key,
            format!("expected the MULTI replies, got {reply:?}"),
        ));
    };
    let mut replies = replies.into_iter();
    let (Some(info), Some(time), Some(own)) = (replies.next(), replies.next(), replies.next()) else {
        return Err(RedisLogError::unexpected(
            OP,
            key,
            "fewer MULTI replies than commands",
        ));
    };
    let after = replies.next().unwrap_or(Value::Nil);
    for reply in [&time, &own, &after] {
        if let Value::ServerError(error) = reply {
            return Err(server_error(OP, key, error));
        }
    }

    let now_ms = match &time {
        Value::Array(parts) => parts.first().and_then(int_of),
        _ => None,
    }
    .map(|secs| secs.saturating_mul(1000))
    .ok_or_else(|| RedisLogError::unexpected(OP, key, format!("TIME answered {time:?}")))?;
    let future = cursor.ms > now_ms.saturating_add(1000);

    let info = match info {
        Value::ServerError(error) if error.details().is_some_and(|d| d.contains("no such key")) => None,
        Value::ServerError(error) => return Err(server_error("XINFO STREAM", key, &error)),
        info => Some(
            StreamInfo::parse(&info)
                .map_err(|detail| RedisLogError::unexpected("XINFO STREAM", key, detail))?,
        ),
    };
    let Some(info) = info else {
        // No stream: nothing was ever appended, or it was deleted.
        let continuity = match cursor {
            StreamId::ZERO => Continuity::Continuous,
            _ if future => Continuity::Future {
                restart: StreamId::ZERO,
            },
            _ => Continuity::Gap {
                restart: StreamId::ZERO,
            },
        };
        return Ok(Read {
            continuity,
            entries: Vec::new(),
            last_generated: StreamId::ZERO,
            entries_added: 0,
        });
    };

    let floor = info.floor();
    let own_exists = matches!(&own, Value::Array(items) if !items.is_empty());
    // Everything added since the cursor was the newest id is still held, and nothing older.
    let all_added_since_held = head_added.is_some_and(|added| {
        info.entries_added.checked_sub(added) == Some(info.length)
            && info.first_entry.is_none_or(|first| first > cursor)
    });
    let continuity = if cursor > info.last_generated {
        if future {
            Continuity::Future { restart: floor }
        } else {
            Continuity::Gap { restart: floor }
        }
    } else if cursor == floor || (cursor > floor && own_exists) || all_added_since_held {
        Continuity::Continuous
    } else {
        Continuity::Gap { restart: floor }
    };
    let entries = match continuity {
        Continuity::Continuous => {
            parse_entries(&after).map_err(|detail| RedisLogError::unexpected(OP, key, detail))?
        }
        _ => Vec::new(),
    };
    Ok(Read {
        continuity,
        entries,
        last_generated: info.last_generated,
        entries_added: info.entries_added,
    })
}

fn server_error(operation: &'static str, key: &Arc<str>, error: &redis::ServerError) -> RedisLogError {
    RedisLogError::from_redis(operation, key, redis::RedisError::from(error.clone()))
}

/// The fields of `XINFO STREAM` that decide continuity.
struct StreamInfo {
    length: u64,
    last_generated: StreamId,
    max_deleted: StreamId,
    entries_added: u64,
    first_entry: Option<StreamId>,
}

impl StreamInfo {
    fn parse(reply: &Value) -> Result<StreamInfo, String> {
        let pairs = pairs_of(reply).ok_or_else(|| format!("expected field-value pairs, got {reply:?}"))?;
        let field = |name: &str| {
            pairs
                .iter()
                .find(|(field, _)| bytes_of(field) == Some(name.as_bytes()))
                .map(|(_, value)| *value)
        };
        let too_old = |name: &str| format!("no `{name}` field: RedisLog needs Redis 7.0 or later");
        let id = |name: &str| -> Result<StreamId, String> {
            let value = field(name).ok_or_else(|| too_old(name))?;
            bytes_of(value)
                .and_then(StreamId::parse_bytes)
                .ok_or_else(|| format!("`{name}` is {value:?}"))
        };
        let number = |name: &str| -> Result<u64, String> {
            let value = field(name).ok_or_else(|| too_old(name))?;
            int_of(value).ok_or_else(|| format!("`{name}` is {value:?}"))
        };
        let first_entry = match field("first-entry") {
            None | Some(Value::Nil) => None,
            Some(entry) => Some(entry_id(entry).ok_or_else(|| format!("`first-entry` is {entry:?}"))?),
        };
        Ok(StreamInfo {
            length: number("length")?,
            last_generated: id("last-generated-id")?,
            max_deleted: id("max-deleted-entry-id")?,
            entries_added: number("entries-added")?,
            first_entry,
        })
    }

    /// The position after which every entry ever added is still held.
    fn floor(&self) -> StreamId {
        if self.entries_added == self.length {
            // Nothing was ever trimmed or deleted.
            return StreamId::ZERO;
        }
        match self.first_entry {
            Some(first) => first.pred().max(self.max_deleted),
            None => self.last_generated,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Parsing replies (never panics: a reply of another shape is an error)
// ---------------------------------------------------------------------------------------

fn bytes_of(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        Value::VerbatimString { text, .. } => Some(text.as_bytes()),
        _ => None,
    }
}

fn text_of(value: &Value) -> Option<&str> {
    bytes_of(value).and_then(|bytes| std::str::from_utf8(bytes).ok())
}

fn int_of(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => text_of(other).and_then(|text| text.parse().ok()),
    }
}

/// A flat `[field, value, …]` array (RESP2) or a map (RESP3), as pairs.
fn pairs_of(value: &Value) -> Option<Vec<(&Value, &Value)>> {
    match value {
        Value::Array(items) if items.len() % 2 == 0 => {
            Some(items.chunks_exact(2).map(|pair| (&pair[0], &pair[1])).collect())
        }
        Value::Map(pairs) => Some(pairs.iter().map(|(k, v)| (k, v)).collect()),
        _ => None,
    }
}

fn entry_id(entry: &Value) -> Option<StreamId> {
    match entry {
        Value::Array(parts) => parts.first().and_then(bytes_of).and_then(StreamId::parse_bytes),
        _ => None,
    }
}

fn parse_entries(reply: &Value) -> Result<Vec<(StreamId, Event)>, String> {
    let items = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => return Err(format!("expected stream entries, got {other:?}")),
    };
    items
        .iter()
        .map(|item| parse_entry(item).ok_or_else(|| format!("not a stream entry: {item:?}")))
        .collect()
}

/// `[id, [field, value, …]]` → the event as appended (fields written by other producers are
/// read leniently: text that is not UTF-8 is replaced, unusable names are dropped).
fn parse_entry(item: &Value) -> Option<(StreamId, Event)> {
    let Value::Array(parts) = item else { return None };
    let id = parts.first().and_then(bytes_of).and_then(StreamId::parse_bytes)?;
    let fields = match parts.get(1) {
        Some(Value::Nil) | None => Vec::new(),
        Some(fields) => pairs_of(fields)?,
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(field, _)| bytes_of(field) == Some(name.as_bytes()))
            .and_then(|(_, value)| bytes_of(value))
            .map(String::from_utf8_lossy)
    };
    let mut event = match field("data") {
        Some(data) => Event::new(data),
        None => Event::empty(),
    };
    if let Some(name) = field("name") {
        event = event.clone().with_name(name).unwrap_or(event);
    }
    if let Some(retry) = field("retry").and_then(|ms| ms.parse::<u64>().ok()) {
        event = event.with_retry(Duration::from_millis(retry));
    }
    if let Some(comment) = field("comment") {
        event = event.with_comment(comment);
    }
    Some((id, event.with_event_id(id.event_id())))
}

// ---------------------------------------------------------------------------------------
// The local window and its reader
// ---------------------------------------------------------------------------------------

/// The events this process has read, shared by its subscribers.
struct Window {
    state: Mutex<WindowState>,
    wake: Arc<Notify>,
    capacity: usize,
}

struct WindowState {
    /// Ordered by id.
    entries: VecDeque<(StreamId, Event)>,
    /// Every entry of the stream after `start`, up to `end`, is in `entries`.
    start: StreamId,
    /// The newest id read (or `start`).
    end: StreamId,
    /// Where the reader started over at the last change of `generation`.
    restart_at: StreamId,
    /// Bumped when the reader finds that what it read before is no longer the stream's
    /// history (entries trimmed before it read them, stream deleted or recreated): every
    /// subscriber reading the window then gets a gap.
    generation: u64,
}

impl Window {
    fn lock(&self) -> MutexGuard<'_, WindowState> {
        // Every update is a push, a pop or a reset; a panic cannot leave a half-update.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl WindowState {
    /// Whether a subscriber at `cursor` can read on from the window alone.
    fn holds(&self, cursor: StreamId) -> bool {
        cursor == self.start
            || (cursor > self.start && self.entries.binary_search_by(|(id, _)| id.cmp(&cursor)).is_ok())
    }

    /// The index of the first entry after `cursor`.
    fn index_after(&self, cursor: StreamId) -> usize {
        self.entries.partition_point(|(id, _)| *id <= cursor)
    }
}

struct Reader {
    window: Arc<Window>,
    client: Client,
    config: AsyncConnectionConfig,
    connection: Option<MultiplexedConnection>,
    key: Arc<str>,
    /// The newest id read into the window.
    last: StreamId,
    /// The stream's count of entries ever added when `last` was its newest id, if it was.
    head_added: Option<u64>,
    connect_timeout: Duration,
    command_timeout: Duration,
}

/// The process's one reader of the stream; runs until the log is dropped (then aborted).
async fn read_loop(mut reader: Reader) {
    let mut backoff = READER_BACKOFF.0;
    loop {
        let connection = match reader.connection.take() {
            Some(connection) => connection,
            None => {
                let connect = reader
                    .client
                    .get_multiplexed_async_connection_with_config(&reader.config);
                match tokio::time::timeout(reader.connect_timeout, connect).await {
                    Ok(Ok(connection)) => connection,
                    _failed => {
                        #[cfg(feature = "tracing")]
                        tracing::warn!(key = %reader.key, "event log reader cannot reach Redis; retrying");
                        tokio::time::sleep(jitter(backoff)).await;
                        backoff = (backoff * 2).min(READER_BACKOFF.1);
                        continue;
                    }
                }
            }
        };
        let mut connection = connection;
        match reader.step(&mut connection).await {
            Ok(()) => {
                backoff = READER_BACKOFF.0;
                reader.connection = Some(connection);
            }
            Err(_error) => {
                #[cfg(feature = "tracing")]
                tracing::warn!(error = %_error, "event log reader failed; reconnecting");
                // The connection is dropped; the next round reconnects.
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(READER_BACKOFF.1);
            }
        }
    }
}

impl Reader {
    /// Reads what follows `last` into the window, or waits for something to follow it.
    async fn step(&mut self, connection: &mut MultiplexedConnection) -> Result<(), RedisLogError> {
        let key = Arc::clone(&self.key);
        let read = limited(
            "XRANGE",
            &key,
            self.command_timeout,
            read_after(connection, &key, self.last, self.head_added, READER_BATCH),
        )
        .await?;
        match read.continuity {
            Continuity::Continuous => {
                let got = read.entries.len();
                if got > 0 {
                    let mut window = self.window.lock();
                    for (id, event) in read.entries {
                        if id <= window.end {
                            continue;
                        }
                        // Encode now, once: every local subscriber shares these bytes.
                        event.to_bytes();
                        window.entries.push_back((id, event));
                        window.end = id;
                        if window.entries.len() > self.window.capacity {
                            if let Some((evicted, _)) = window.entries.pop_front() {
                                window.start = evicted;
                            }
                        }
                    }
                    self.last = window.end;
                    drop(window);
                    self.window.wake.notify_waiters();
                }
                self.head_added = (self.last == read.last_generated).then_some(read.entries_added);
                if got < READER_BATCH {
                    self.wait_for_more(connection).await?;
                }
            }
            // Entries after `last` are gone, or the stream was deleted, recreated or rewound.
            Continuity::Gap { restart } | Continuity::Future { restart } => {
                self.restart(restart);
                self.head_added = (restart == read.last_generated).then_some(read.entries_added);
            }
        }
        Ok(())
    }

    /// What the window held is not the stream's history any more: start over after `at`.
    fn restart(&mut self, at: StreamId) {
        let mut window = self.window.lock();
        window.entries.clear();
        window.start = at;
        window.end = at;
        window.restart_at = at;
        window.generation += 1;
        drop(window);
        self.last = at;
        self.window.wake.notify_waiters();
    }

    /// Blocks until an entry after `last` exists (or the block time ends).
    async fn wait_for_more(&self, connection: &mut MultiplexedConnection) -> Result<(), RedisLogError> {
        let block_ms = u64::try_from(READER_BLOCK.as_millis()).unwrap_or(u64::MAX);
        redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(&*self.key)
            .arg(self.last.to_string())
            .query_async::<Value>(connection)
            .await
            .map(drop)
            .map_err(|e| RedisLogError::from_redis("XREAD", &self.key, e))
    }
}

/// `base` spread over 75–125 %, so that processes do not retry in step.
fn jitter(base: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    let spread = hasher.finish() % 500;
    base.mul_f64(0.75 + spread as f64 / 1000.0)
}

// ---------------------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------------------

type ReadFuture = Pin<Box<dyn Future<Output = Result<Read, RedisLogError>> + Send>>;

enum Mode {
    /// Reading the window.
    Window,
    /// Reading from Redis what the window does not hold.
    Fetch(ReadFuture),
    /// Reached Redis's newest entry: joins the window if it holds the cursor.
    Join,
    /// The reader has not reached the cursor yet: waits for the window to change.
    AwaitReader(Pin<Box<Sleep>>),
    /// A read from Redis failed; tries again after a pause (the client stays connected).
    Backoff(Pin<Box<Sleep>>),
}

enum Item {
    Gap(StreamId),
    Event(StreamId, Event),
}

/// A reader of a [`RedisLog`]; dropping it releases it at once.
///
/// It never ends with an error: while Redis is unreachable it waits (an SSE stream keeps
/// sending keep-alives) and then goes on where it was.
pub struct RedisSubscription {
    log: RedisLog,
    /// The id of the last event taken (from the window or Redis).
    cursor: StreamId,
    /// The position a client has reached.
    delivered: StreamId,
    /// Taken but not yet handed out.
    ready: VecDeque<Item>,
    /// A gap before `cursor` is still to be reported (once reading after it is known to
    /// work).
    gap_owed: bool,
    mode: Mode,
    /// The window generation the cursor belongs to (in `Window`), or the one seen before the
    /// last read from Redis (in the other modes).
    generation: u64,
    notified: Pin<Box<OwnedNotified>>,
    armed: bool,
    backoff: Duration,
    outcome: ResumeOutcome,
}

impl RedisSubscription {
    fn take_read(&mut self, entries: Vec<(StreamId, Event)>) {
        for (id, event) in entries {
            if id > self.cursor {
                self.cursor = id;
                self.ready.push_back(Item::Event(id, event));
            }
        }
    }

    fn start_fetch(&mut self) -> Mode {
        let inner = Arc::clone(&self.log.inner);
        self.generation = inner.window.lock().generation;
        let cursor = self.cursor;
        Mode::Fetch(Box::pin(async move {
            let mut connection = inner.manager.clone();
            limited(
                "XRANGE",
                &inner.key,
                inner.command_timeout,
                read_after(&mut connection, &inner.key, cursor, None, FETCH_BATCH),
            )
            .await
        }))
    }

    /// Polls the wake-up armed before the last look at the window; re-arms once it fired.
    /// Returns false while it has not fired.
    fn woken(&mut self, cx: &mut Context<'_>) -> bool {
        if self.armed {
            if self.notified.as_mut().poll(cx).is_pending() {
                return false;
            }
            self.armed = false;
        }
        self.arm();
        true
    }

    /// Arms a fresh wake-up before a look at the window: an update that the look misses
    /// wakes it.
    fn arm(&mut self) {
        self.notified
            .set(Arc::clone(&self.log.inner.window.wake).notified_owned());
        self.armed = true;
    }
}

impl EventSource for RedisSubscription {
    type Error = std::convert::Infallible;

    fn poll_delivery(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Delivery, Self::Error>>> {
        let this = self.get_mut();
        loop {
            match this.ready.pop_front() {
                Some(Item::Gap(at)) => {
                    this.delivered = at;
                    return Poll::Ready(Some(Ok(Delivery::Gap(Some(at.event_id())))));
                }
                Some(Item::Event(id, event)) => {
                    this.delivered = id;
                    return Poll::Ready(Some(Ok(Delivery::Event(event))));
                }
                None => {}
            }
            match &mut this.mode {
                Mode::Window => {
                    if !this.woken(cx) {
                        return Poll::Pending;
                    }
                    let window = Arc::clone(&this.log.inner.window);
                    let state = window.lock();
                    if state.generation != this.generation {
                        // What this subscriber read is no longer the stream's history: it
                        // goes on from where the reader started over.
                        this.generation = state.generation;
                        this.cursor = state.restart_at;
                        this.gap_owed = true;
                        this.armed = false;
                        continue;
                    }
                    if this.cursor < state.start {
                        // Fell behind the window: read the rest from Redis.
                        drop(state);
                        this.mode = this.start_fetch();
                        continue;
                    }
                    if this.gap_owed {
                        this.gap_owed = false;
                        this.ready.push_back(Item::Gap(this.cursor));
                    }
                    let from = state.index_after(this.cursor);
                    let to = state.entries.len().min(from + TAKE_PER_LOCK);
                    for (id, event) in state.entries.range(from..to) {
                        this.ready.push_back(Item::Event(*id, event.clone()));
                        this.cursor = *id;
                    }
                    if to - from == TAKE_PER_LOCK {
                        // More may be ready: look again once these are handed out, rather
                        // than wait for the next wake-up.
                        this.armed = false;
                    }
                }
                Mode::Fetch(read) => {
                    let result = match read.as_mut().poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(result) => result,
                    };
                    match result {
                        Err(_error) => {
                            #[cfg(feature = "tracing")]
                            tracing::warn!(error = %_error, "event log catch-up read failed; retrying");
                            this.mode = Mode::Backoff(Box::pin(tokio::time::sleep(jitter(this.backoff))));
                            this.backoff = (this.backoff * 2).min(FETCH_BACKOFF.1);
                        }
                        Ok(read) => {
                            this.backoff = FETCH_BACKOFF.0;
                            match read.continuity {
                                Continuity::Continuous => {
                                    let full = read.entries.len() >= FETCH_BATCH;
                                    if this.gap_owed {
                                        this.gap_owed = false;
                                        this.ready.push_back(Item::Gap(this.cursor));
                                    }
                                    this.take_read(read.entries);
                                    this.mode = if full { this.start_fetch() } else { Mode::Join };
                                }
                                // Trimmed past the cursor, or the stream was deleted,
                                // recreated or rewound (history lost) since. The gap is
                                // reported once the position after it is known to hold, so
                                // gaps in a row are reported as one.
                                Continuity::Gap { restart } | Continuity::Future { restart } => {
                                    this.cursor = restart;
                                    this.gap_owed = true;
                                    this.mode = this.start_fetch();
                                }
                            }
                        }
                    }
                }
                Mode::Join => {
                    // Armed before the look: a change of the window after it wakes us.
                    this.arm();
                    let window = Arc::clone(&this.log.inner.window);
                    let state = window.lock();
                    let same_generation = state.generation == this.generation;
                    if same_generation && state.holds(this.cursor) {
                        // The window holds the cursor itself (its event, or its start), so
                        // it is the same stream and everything after it is there.
                        this.mode = Mode::Window;
                        // The next look at the window arms a fresh wake-up first.
                        this.armed = false;
                        continue;
                    }
                    this.mode = if same_generation && this.cursor > state.end {
                        // The reader has not read this far yet: wait for it, or read from
                        // Redis again if it does not come.
                        Mode::AwaitReader(Box::pin(tokio::time::sleep(READER_BLOCK)))
                    } else {
                        // The window moved past the cursor, or holds another stream (it was
                        // deleted or recreated meanwhile): read from Redis again, after a
                        // pause so that this cannot spin.
                        Mode::Backoff(Box::pin(tokio::time::sleep(FETCH_BACKOFF.0)))
                    };
                }
                Mode::AwaitReader(deadline) => {
                    if this.notified.as_mut().poll(cx).is_ready() {
                        this.armed = false;
                        this.mode = Mode::Join;
                    } else if deadline.as_mut().poll(cx).is_ready() {
                        this.mode = this.start_fetch();
                    } else {
                        return Poll::Pending;
                    }
                }
                Mode::Backoff(sleep) => {
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.mode = this.start_fetch();
                }
            }
        }
    }

    fn position(&self) -> Option<EventId> {
        // While a gap is still to be reported, no position is safe to hand out: a client
        // that resumed from it would never hear of the gap.
        let gap_pending = self.gap_owed || self.ready.iter().any(|item| matches!(item, Item::Gap(_)));
        (!gap_pending).then(|| self.delivered.event_id())
    }
}

impl Subscription for RedisSubscription {
    fn outcome(&self) -> ResumeOutcome {
        self.outcome
    }
}

impl Drop for RedisSubscription {
    fn drop(&mut self) {
        self.log.inner.subscribers.fetch_sub(1, Ordering::AcqRel);
    }
}

impl fmt::Debug for RedisSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSubscription")
            .field("key", &self.log.inner.key)
            .field("delivered", &self.delivered.to_string())
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> StreamId {
        StreamId::parse(text).unwrap()
    }

    #[test]
    fn parses_and_orders_stream_ids() {
        assert_eq!(id("0-0"), StreamId::ZERO);
        assert!(id("5-0") < id("5-1") && id("5-9") < id("6-0"));
        assert_eq!(id("18446744073709551615-3").to_string(), "18446744073709551615-3");
        for bad in [
            "",
            "5",
            "5-",
            "-5",
            "a-1",
            "1-b",
            "+1-0",
            "1-0-0",
            " 1-0",
            "18446744073709551616-0",
            "1_0",
        ] {
            assert!(StreamId::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn the_predecessor_leaves_no_room_for_an_id() {
        assert_eq!(id("7-3").pred(), id("7-2"));
        assert_eq!(id("7-0").pred(), StreamId { ms: 6, seq: u64::MAX });
        assert_eq!(StreamId::ZERO.pred(), StreamId::ZERO);
    }

    fn info(length: u64, added: u64, first: Option<&str>, last: &str, deleted: &str) -> StreamInfo {
        StreamInfo {
            length,
            entries_added: added,
            first_entry: first.map(id),
            last_generated: id(last),
            max_deleted: id(deleted),
        }
    }

    #[test]
    fn the_floor_is_where_nothing_after_was_removed() {
        assert_eq!(
            info(3, 3, Some("5-0"), "7-0", "0-0").floor(),
            StreamId::ZERO,
            "never trimmed"
        );
        assert_eq!(
            info(3, 9, Some("5-2"), "7-0", "0-0").floor(),
            id("5-1"),
            "trimmed up to 5-2"
        );
        assert_eq!(
            info(3, 9, Some("5-2"), "7-0", "6-0").floor(),
            id("6-0"),
            "an entry after the first was deleted"
        );
        assert_eq!(info(0, 9, None, "7-0", "0-0").floor(), id("7-0"), "all trimmed");
    }

    #[test]
    fn reads_entries_leniently_and_never_panics() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entry = Value::Array(vec![
            bulk("5-1"),
            Value::Array(vec![
                bulk("data"),
                bulk("a\nb"),
                bulk("name"),
                bulk("bad\nname"),
                bulk("retry"),
                bulk("250"),
            ]),
        ]);
        let (got_id, event) = parse_entry(&entry).unwrap();
        assert_eq!(got_id, id("5-1"));
        assert_eq!((event.data(), event.name()), ("a\nb", None));
        assert_eq!(event.retry(), Some(Duration::from_millis(250)));
        assert_eq!(event.id().unwrap().as_str(), "5-1");
        for bad in [
            Value::Nil,
            Value::Int(3),
            Value::Array(vec![]),
            Value::Array(vec![bulk("x-1"), Value::Nil]),
            Value::Array(vec![bulk("5-1"), Value::Array(vec![bulk("odd")])]),
        ] {
            assert!(parse_entry(&bad).is_none(), "{bad:?}");
        }
        assert!(parse_entries(&Value::Int(1)).is_err());
        assert!(StreamInfo::parse(&Value::Array(vec![bulk("length"), Value::Int(1)])).is_err());
    }
}
