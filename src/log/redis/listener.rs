//! The reader's Pub/Sub connection: it subscribes to the sharded channel of each followed
//! key (`SSUBSCRIBE <key>`: the channel is named like the stream, so on a cluster both are
//! in one slot and on one shard) and hears the [notices](super::notice) the append script
//! publishes there.
//!
//! Pub/Sub delivers at most once: what is published while the connection is down is lost.
//! So every subscription is followed, on the same connection, by a look at the key's newest
//! id (`XREVRANGE <key> + - COUNT 1`): the reader compares it with its own and reads the key
//! when they differ. After a lost connection every key is subscribed and looked at again.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use redis::cluster::ClusterClient;
use redis::{AsyncConnectionConfig, Client, PushInfo, PushKind, Value};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::JoinSet;

use super::connection::Connection;
use super::error::{limited, RedisLogError, RedisLogErrorKind};
use super::notice::Notice;
use super::reply::{bytes_of, parse_items};
use crate::log::remote::Item;
use crate::log::remote::StreamId;

/// Keys subscribed to at once (each with its own task, over the one connection).
const SUBSCRIBE_BATCH: usize = 512;

/// What [`Listener::subscribe`] found.
pub(super) struct Looked {
    /// Each key subscribed to, with its newest id.
    pub(super) looked: Vec<(Arc<str>, Option<StreamId>)>,
    /// The keys that could not be subscribed to, and the first error.
    pub(super) failed: Option<(Vec<Arc<str>>, RedisLogError)>,
}

/// What the reader hears on its Pub/Sub connection.
#[derive(Debug)]
pub(super) enum Heard {
    /// A message on a key's channel.
    Notice(String, Notice),
    /// The server ended the subscription to a key's channel (its slot moved to another
    /// shard): the reader subscribes to it again, on the right shard.
    Dropped(String),
    /// The connection (or one of a cluster's node connections) was lost: messages may have
    /// been lost with it.
    Lost,
}

/// The reader's Pub/Sub connection, to a single server or to every shard of a cluster.
pub(super) struct Listener {
    source: Source,
    /// `None` until (re)connected; a cluster's connection reconnects by itself.
    connection: Option<Connection>,
    /// Set when messages may have been lost: every key must be subscribed to and looked at
    /// again.
    lost: bool,
    pushes: UnboundedReceiver<PushInfo>,
    /// Names the family in errors.
    prefix: Arc<str>,
    connect_timeout: Duration,
    command_timeout: Duration,
}

enum Source {
    Server {
        client: Client,
        config: Box<AsyncConnectionConfig>,
    },
    Cluster,
}

/// The sender a listener's connections push to, and the listener's end of it.
pub(super) fn push_channel() -> (UnboundedSender<PushInfo>, UnboundedReceiver<PushInfo>) {
    tokio::sync::mpsc::unbounded_channel()
}

impl Listener {
    /// A listener on a single server. `client` must speak RESP3 and `config` push to the
    /// sender of `pushes`; `connection` is already connected with them.
    pub(super) fn server(
        client: Client,
        config: AsyncConnectionConfig,
        connection: redis::aio::MultiplexedConnection,
        pushes: UnboundedReceiver<PushInfo>,
        prefix: Arc<str>,
        timeouts: (Duration, Duration),
    ) -> Self {
        Listener {
            source: Source::Server {
                client,
                config: Box::new(config),
            },
            connection: Some(Connection::Node(connection)),
            lost: false,
            pushes,
            prefix,
            connect_timeout: timeouts.0,
            command_timeout: timeouts.1,
        }
    }

    /// A listener on a cluster, through `client` (RESP3, pushing to the sender of `pushes`).
    pub(super) async fn cluster(
        client: &ClusterClient,
        pushes: UnboundedReceiver<PushInfo>,
        prefix: Arc<str>,
        timeouts: (Duration, Duration),
    ) -> Result<Self, RedisLogError> {
        let connection = limited("connect", &prefix, timeouts.0, async {
            let connection = client.get_async_connection().await;
            connection.map_err(|e| RedisLogError::from_redis("connect", &prefix, e))
        })
        .await?;
        Ok(Listener {
            source: Source::Cluster,
            connection: Some(Connection::Cluster(connection)),
            lost: false,
            pushes,
            prefix,
            connect_timeout: timeouts.0,
            command_timeout: timeouts.1,
        })
    }

    /// Connects if needed; whether messages may have been lost since the last call (then
    /// every key must be subscribed to and looked at again).
    pub(super) async fn connect(&mut self) -> Result<bool, RedisLogError> {
        // A cluster's connection is never dropped: it reconnects to each node by itself.
        if let (None, Source::Server { client, config }) = (&self.connection, &self.source) {
            let connect = client.get_multiplexed_async_connection_with_config(config);
            let prefix = &self.prefix;
            let connection = limited("connect", prefix, self.connect_timeout, async {
                connect
                    .await
                    .map_err(|e| RedisLogError::from_redis("connect", prefix, e))
            })
            .await?;
            self.connection = Some(Connection::Node(connection));
            self.lost = true;
        }
        Ok(std::mem::take(&mut self.lost))
    }

    /// Messages may have been lost (the connection broke, or a command on it failed).
    pub(super) fn lost(&mut self) {
        self.lost = true;
        if let Source::Server { .. } = self.source {
            self.connection = None;
        }
    }

    /// Subscribes to each key's channel, then looks at its newest id: `Some(id)` (`0-0` for
    /// a stream that is empty or does not exist), or `None` when the key cannot be read as a
    /// stream (the reader's own read then tells why). The keys that failed come back with
    /// the first error: on a single server the connection is then dropped (every key is
    /// subscribed to again on the next one); on a cluster only those keys are to be tried
    /// again (their shard is failing over, say), while the other shards go on.
    pub(super) async fn subscribe(&mut self, keys: &[Arc<str>]) -> Looked {
        let (looked, failed) = self.each_key(keys, subscribe_and_look).await;
        if failed.is_some() {
            self.lost_on_server();
        }
        Looked { looked, failed }
    }

    /// Unsubscribes from each key's channel (a key that fails is left subscribed: its
    /// notices are ignored until the connection is replaced).
    pub(super) async fn unsubscribe(&mut self, keys: &[Arc<str>]) {
        let (_, failed) = self.each_key(keys, unsubscribe).await;
        if failed.is_some() {
            self.lost_on_server();
        }
    }

    /// A command failed: on a single server, its connection is replaced.
    fn lost_on_server(&mut self) {
        if let Source::Server { .. } = self.source {
            self.lost();
        }
    }

    /// Runs `command` for every key, [`SUBSCRIBE_BATCH`] at a time, each within the
    /// command timeout: what each key answered, and the keys that failed with the first
    /// error.
    async fn each_key<T, F>(
        &mut self,
        keys: &[Arc<str>],
        command: fn(Connection, Arc<str>) -> F,
    ) -> (Vec<(Arc<str>, T)>, Option<(Vec<Arc<str>>, RedisLogError)>)
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, RedisLogError>> + Send + 'static,
    {
        let Some(connection) = &self.connection else {
            let down = RedisLogError::new(
                RedisLogErrorKind::Unavailable,
                "SSUBSCRIBE",
                &self.prefix,
                "the reader's Pub/Sub connection is down",
            );
            return (Vec::new(), Some((keys.to_vec(), down)));
        };
        let mut done = Vec::with_capacity(keys.len());
        let mut failed: Option<(Vec<Arc<str>>, RedisLogError)> = None;
        for batch in keys.chunks(SUBSCRIBE_BATCH) {
            let mut tasks = JoinSet::new();
            for key in batch {
                let (connection, key) = (connection.clone(), Arc::clone(key));
                let limit = self.command_timeout;
                tasks.spawn(async move {
                    let done = limited("SSUBSCRIBE", &key, limit, command(connection, Arc::clone(&key)));
                    (Arc::clone(&key), done.await)
                });
            }
            while let Some(joined) = tasks.join_next().await {
                let Ok((key, answer)) = joined else {
                    // Tasks are neither cancelled nor panicking; a key lost here is read in turn.
                    continue;
                };
                match answer {
                    Ok(value) => done.push((key, value)),
                    Err(error) => match &mut failed {
                        Some((keys, _)) => keys.push(key),
                        None => failed = Some((vec![key], error)),
                    },
                }
            }
        }
        (done, failed)
    }

    /// The next thing heard, once there is one.
    pub(super) async fn recv(&mut self) -> Heard {
        loop {
            let push = poll_fn(|cx| self.pushes.poll_recv(cx)).await;
            // The sender lives in the connections' settings, which live as long as `self`.
            let Some(push) = push else {
                return Heard::Lost;
            };
            if let Some(heard) = self.heard(push) {
                return heard;
            }
        }
    }

    /// What was heard already, if anything.
    pub(super) fn try_recv(&mut self) -> Option<Heard> {
        while let Ok(push) = self.pushes.try_recv() {
            if let Some(heard) = self.heard(push) {
                return Some(heard);
            }
        }
        None
    }

    fn heard(&mut self, push: PushInfo) -> Option<Heard> {
        let channel = || {
            let channel = push.data.first().and_then(bytes_of)?;
            String::from_utf8(channel.to_vec()).ok()
        };
        match push.kind {
            PushKind::SMessage => {
                let message = push.data.get(1).and_then(bytes_of).unwrap_or_default();
                Some(Heard::Notice(channel()?, Notice::parse(message)))
            }
            PushKind::SUnsubscribe => Some(Heard::Dropped(channel()?)),
            PushKind::Disconnection => {
                self.lost();
                Some(Heard::Lost)
            }
            // Confirmations of subscriptions, and anything else.
            _ => None,
        }
    }
}

/// `SSUBSCRIBE <key>`, then `XREVRANGE <key> + - COUNT 1` once it is confirmed.
async fn subscribe_and_look(
    mut connection: Connection,
    key: Arc<str>,
) -> Result<Option<StreamId>, RedisLogError> {
    let subscribed = match &mut connection {
        Connection::Cluster(cluster) => cluster.ssubscribe(&*key).await,
        other => redis::cmd("SSUBSCRIBE").arg(&*key).exec_async(other).await,
    };
    subscribed.map_err(|error| RedisLogError::from_redis("SSUBSCRIBE", &key, error))?;
    let mut look = redis::cmd("XREVRANGE");
    look.arg(&*key).arg("+").arg("-").arg("COUNT").arg(1);
    match look.query_async::<Value>(&mut connection).await {
        Ok(reply) => Ok(newest_id(&reply)),
        Err(error) => {
            let error = RedisLogError::from_redis("XREVRANGE", &key, error);
            match error.kind() {
                // About this key alone (it holds another type): the reader's read tells.
                RedisLogErrorKind::Refused => Ok(None),
                _ => Err(error),
            }
        }
    }
}

/// `SUNSUBSCRIBE <key>`.
async fn unsubscribe(mut connection: Connection, key: Arc<str>) -> Result<(), RedisLogError> {
    let done = match &mut connection {
        Connection::Cluster(cluster) => cluster.sunsubscribe(&*key).await,
        other => redis::cmd("SUNSUBSCRIBE").arg(&*key).exec_async(other).await,
    };
    done.map_err(|error| RedisLogError::from_redis("SUNSUBSCRIBE", &key, error))
}

/// The id of an `XREVRANGE … COUNT 1` reply's entry, `0-0` for none.
fn newest_id(reply: &Value) -> Option<StreamId> {
    let items = parse_items(reply).ok()?;
    Some(match items.first() {
        None => StreamId::ZERO,
        Some(Item::Entry((id, _)) | Item::End(id)) => *id,
    })
}
