//! Configuring and connecting a [`RedisLog`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Value};

use super::error::{limited, RedisLogError, RedisLogErrorKind};
use super::id::StreamId;
use super::reader::{read_loop, Reader};
use super::reply::text_of;
use super::snapshot::read_after;
use super::window::Window;
use super::{
    AbortOnDrop, Inner, RedisLog, DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_LEN,
    DEFAULT_WINDOW, READER_BLOCK,
};
use crate::log::ring::SubscriberCount;

/// Configures and connects a [`RedisLog`].
#[derive(Clone)]
#[must_use = "a builder does nothing until `connect` is awaited"]
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
    /// The default approximate number of entries the Redis stream keeps (`MAXLEN ~`).
    pub const DEFAULT_MAX_LEN: usize = DEFAULT_MAX_LEN;
    /// The default number of events each process holds in its local window.
    pub const DEFAULT_WINDOW: usize = DEFAULT_WINDOW;
    /// The default limit on one Redis command (append, subscribe, catch-up read).
    pub const DEFAULT_COMMAND_TIMEOUT: Duration = DEFAULT_COMMAND_TIMEOUT;
    /// The default limit on connecting to Redis.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = DEFAULT_CONNECT_TIMEOUT;

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
        let manager = self.connect_manager(&client, &key).await?;
        let (reader_config, mut reader_connection) = self.connect_reader(&client, &key).await?;

        check_server_version(&mut reader_connection, &key, self.command_timeout).await?;
        // The window starts at the stream's newest id: a fresh subscriber starts there, and
        // one with an older cursor reads the rest from Redis.
        let (start, head_added) = limited("XINFO STREAM", &key, self.command_timeout, async {
            let read = read_after(&mut reader_connection, &key, StreamId::ZERO, None, 0).await?;
            Ok((read.last_generated, read.entries_added))
        })
        .await?;

        let window = Arc::new(Window::new(start, self.window));
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
                subscribers: SubscriberCount::default(),
                _reader: AbortOnDrop(reader.abort_handle()),
            }),
        })
    }

    /// The longest one connection attempt may take.
    fn attempt_timeout(&self) -> Duration {
        self.connect_timeout.min(Duration::from_secs(1))
    }

    /// The shared connection for appends and catch-up reads, which reconnects by itself.
    async fn connect_manager(
        &self,
        client: &Client,
        key: &Arc<str>,
    ) -> Result<ConnectionManager, RedisLogError> {
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.attempt_timeout()))
            .set_response_timeout(Some(self.command_timeout))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1))
            .set_number_of_retries(60);
        limited("connect", key, self.connect_timeout, async {
            ConnectionManager::new_with_config(client.clone(), manager_config)
                .await
                .map_err(|e| RedisLogError::from_redis("connect", key, e))
        })
        .await
    }

    /// The reader's own connection (its `XREAD BLOCK` would hold up a shared one), and the
    /// settings it reconnects with.
    async fn connect_reader(
        &self,
        client: &Client,
        key: &Arc<str>,
    ) -> Result<(AsyncConnectionConfig, MultiplexedConnection), RedisLogError> {
        let reader_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.attempt_timeout()))
            .set_response_timeout(Some(READER_BLOCK + self.command_timeout));
        let connection = limited("connect", key, self.connect_timeout, async {
            client
                .get_multiplexed_async_connection_with_config(&reader_config)
                .await
                .map_err(|e| RedisLogError::from_redis("connect", key, e))
        })
        .await?;
        Ok((reader_config, connection))
    }

    /// A builder with the default settings.
    pub(super) fn new(url: String, key: String) -> Self {
        RedisLogBuilder {
            url,
            key,
            max_len: DEFAULT_MAX_LEN,
            max_age: None,
            window: DEFAULT_WINDOW,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
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
