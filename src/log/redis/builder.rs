//! Configuring and connecting a [`RedisLog`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, ProtocolVersion, Value};

use super::connection::Connection;
use super::error::{limited, RedisLogError, RedisLogErrorKind};
use super::family::{RedisLogs, Settings};
use super::listener::{push_channel, Listener};
use super::reader::{read_loop, Follow, Reader};
use super::reply::text_of;
use super::{RedisLog, DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_LEN, DEFAULT_WINDOW};
use crate::log::remote::AbortOnDrop;

/// Configures and connects a [`RedisLog`], or a family of them ([`RedisLogs`]).
///
/// Its `key` is the stream's key for [`connect`](RedisLogBuilder::connect), and the prefix
/// of the family's keys for [`connect_logs`](RedisLogBuilder::connect_logs).
#[derive(Clone)]
#[must_use = "a builder does nothing until `connect` or `connect_logs` is awaited"]
pub struct RedisLogBuilder {
    url: String,
    key: String,
    max_len: usize,
    max_age: Option<Duration>,
    window: usize,
    command_timeout: Duration,
    connect_timeout: Duration,
    cluster: bool,
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

    /// The longest [`connect`](RedisLogBuilder::connect) (or
    /// [`connect_logs`](RedisLogBuilder::connect_logs)) and each reconnect attempt of the
    /// reader may take (default 5 s).
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = limit;
        self
    }

    /// The URL names a node of a Redis Cluster (7.0 or later): the other nodes are found
    /// from it. Each stream key lives on the shard that serves its slot, and so does its
    /// Pub/Sub channel (named like the key), so appends and notices of one key stay on one
    /// shard; a family's keys spread over the shards unless the prefix holds a hash tag
    /// (`{…}`). Commands follow `MOVED` and `ASK`, and the new primary after a failover.
    ///
    /// ```no_run
    /// use tower_eventstream::RedisLog;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let topics = RedisLog::builder("redis://10.0.0.5:7000", "topic:")
    ///     .cluster()
    ///     .connect_logs()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn cluster(mut self) -> Self {
        self.cluster = true;
        self
    }

    /// Connects to Redis, reads the stream's position and starts this process's reader: a
    /// [`RedisLogs`] family of one key, [`connect_logs`](RedisLogBuilder::connect_logs)
    /// then [`log("")`](RedisLogs::log).
    ///
    /// Fails if the URL is unusable, Redis cannot be reached within the connect timeout, or
    /// the key holds another type. Must be called within a Tokio runtime.
    pub async fn connect(self) -> Result<RedisLog, RedisLogError> {
        if self.key.is_empty() {
            return Err(RedisLogError::new(
                RedisLogErrorKind::Config,
                "connect",
                &Arc::from(""),
                "the stream key is empty; give a key such as `chat`",
            ));
        }
        self.connect_logs().await?.log("").await
    }

    /// Connects to Redis and starts this process's one reader for a family of logs: the
    /// builder's `key` is the **prefix** of their stream keys, and
    /// [`RedisLogs::log`]`(name)` is the log on the stream `<prefix><name>`. Every setting
    /// of the builder applies to each log of the family.
    ///
    /// However many logs the family has, it holds two connections to Redis (one for
    /// appends and reads, one for the reader's Pub/Sub; two per shard of a cluster). Fails if the URL is unusable
    /// or Redis cannot be reached within the connect timeout. Must be called within a Tokio
    /// runtime.
    pub async fn connect_logs(self) -> Result<RedisLogs, RedisLogError> {
        let prefix: Arc<str> = Arc::from(self.key.as_str());
        let (connection, listener) = if self.cluster {
            self.connect_cluster(&prefix).await?
        } else {
            self.connect_server(&prefix).await?
        };
        let follow = Arc::new(Follow::default());
        let reader = Reader::new(
            Arc::clone(&follow),
            connection.clone(),
            listener,
            self.command_timeout,
        );
        let reader = tokio::spawn(read_loop(reader));
        let settings = Settings {
            max_len: self.max_len,
            max_age: self.max_age,
            window: self.window,
            command_timeout: self.command_timeout,
        };
        let reader = AbortOnDrop(reader.abort_handle());
        Ok(RedisLogs::new(prefix, connection, settings, follow, reader))
    }

    /// A single server: the shared connection, and the reader's Pub/Sub connection (RESP3,
    /// whose pushes carry the notices).
    async fn connect_server(&self, prefix: &Arc<str>) -> Result<(Connection, Listener), RedisLogError> {
        let failed = |e| RedisLogError::from_redis("connect", prefix, e);
        let info = self.url.as_str().into_connection_info().map_err(failed)?;
        let client = Client::open(info.clone()).map_err(failed)?;
        let manager = self.connect_manager(&client, prefix).await?;

        let resp3 = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        let listening = Client::open(info.set_redis_settings(resp3)).map_err(failed)?;
        let (pushes, heard) = push_channel();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.attempt_timeout()))
            .set_response_timeout(Some(self.command_timeout))
            .set_push_sender(pushes);
        let mut connection = limited("connect", prefix, self.connect_timeout, async {
            let connection = listening.get_multiplexed_async_connection_with_config(&config);
            connection.await.map_err(failed)
        })
        .await?;
        check_server_version(&mut connection, prefix, self.command_timeout).await?;
        let timeouts = (self.connect_timeout, self.command_timeout);
        let listener = Listener::server(listening, config, connection, heard, Arc::clone(prefix), timeouts);
        Ok((Connection::Server(manager), listener))
    }

    /// A cluster: a connection to every node for commands, and another to every node for
    /// the reader's Pub/Sub (RESP3).
    async fn connect_cluster(&self, prefix: &Arc<str>) -> Result<(Connection, Listener), RedisLogError> {
        let failed = |e| RedisLogError::from_redis("connect", prefix, e);
        let builder = || {
            ClusterClientBuilder::new(vec![self.url.as_str()])
                .connection_timeout(self.attempt_timeout())
                .response_timeout(self.command_timeout)
        };
        let client = builder().build().map_err(failed)?;
        let connection = limited("connect", prefix, self.connect_timeout, async {
            client.get_async_connection().await.map_err(failed)
        })
        .await?;
        let mut connection = Connection::Cluster(connection);
        check_server_version(&mut connection, prefix, self.command_timeout).await?;
        let (pushes, heard) = push_channel();
        let listening = builder()
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(pushes)
            .build()
            .map_err(failed)?;
        let timeouts = (self.connect_timeout, self.command_timeout);
        let listener = Listener::cluster(&listening, heard, Arc::clone(prefix), timeouts).await?;
        Ok((connection, listener))
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
            cluster: false,
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
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

/// Refuses servers older than 7.0, whose `XINFO STREAM` lacks what the gap check needs.
/// A server that hides `INFO` is given the benefit of the doubt (the check at each read
/// still refuses a reply without those fields).
async fn check_server_version(
    connection: &mut impl ConnectionLike,
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
