//! The reader's wait: one `XREAD BLOCK` over every followed key on the reader's own
//! connection, cut short with `CLIENT UNBLOCK` when a key is added.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Cmd, RedisResult, Value};

use super::error::{limited, RedisLogError, RedisLogErrorKind};
use super::hold::within_hold;
use super::reader::{Follow, Reader};
use super::reply::{bytes_of, int_of};
use super::{READER_BLOCK, UNBLOCK_RETRY};

/// The connection the reader blocks on (its `XREAD BLOCK` would hold up a shared one), and
/// what it reconnects with.
pub(super) struct Blocking {
    client: Client,
    config: AsyncConnectionConfig,
    connect_timeout: Duration,
    /// The connection and its `CLIENT ID`, or `None` until it is (re)connected.
    connection: Option<(MultiplexedConnection, i64)>,
    /// Names the family in errors.
    prefix: Arc<str>,
}

impl Blocking {
    /// The reader's connection, already connected (as `connect_logs` checks the server on it).
    pub(super) async fn new(
        client: Client,
        config: AsyncConnectionConfig,
        connect_timeout: Duration,
        connection: MultiplexedConnection,
        prefix: Arc<str>,
    ) -> Result<Self, RedisLogError> {
        let mut blocking = Blocking {
            client,
            config,
            connect_timeout,
            connection: None,
            prefix,
        };
        blocking.connection = Some(blocking.identify(connection).await?);
        Ok(blocking)
    }

    /// The connection with its client id, (re)connecting first if needed.
    async fn connection(&mut self) -> Result<&mut (MultiplexedConnection, i64), RedisLogError> {
        let connection = match self.connection.take() {
            Some(connection) => connection,
            None => {
                let connect = self
                    .client
                    .get_multiplexed_async_connection_with_config(&self.config);
                let connection = limited("connect", &self.prefix, self.connect_timeout, async {
                    connect
                        .await
                        .map_err(|e| RedisLogError::from_redis("connect", &self.prefix, e))
                })
                .await?;
                self.identify(connection).await?
            }
        };
        Ok(self.connection.insert(connection))
    }

    /// Asks the connection's `CLIENT ID`, the handle `CLIENT UNBLOCK` takes.
    async fn identify(
        &self,
        mut connection: MultiplexedConnection,
    ) -> Result<(MultiplexedConnection, i64), RedisLogError> {
        let prefix = &self.prefix;
        let id = limited("CLIENT ID", prefix, self.connect_timeout, async {
            redis::cmd("CLIENT")
                .arg("ID")
                .query_async::<i64>(&mut connection)
                .await
                .map_err(|e| RedisLogError::from_redis("CLIENT ID", prefix, e))
        })
        .await?;
        Ok((connection, id))
    }
}

impl Reader {
    /// Waits until some followed key has an entry after its `last` (those become dirty), a
    /// key is added, or the block time ends.
    ///
    /// While keys are reading on, it only polls (no `BLOCK`; see [`hold`](super::hold)), and
    /// those it finds nothing for are quiet unless an append of this process to them is on
    /// its way (their held wake-ups go out).
    pub(super) async fn wait(&mut self) -> Result<(), RedisLogError> {
        let poll = self.reading_on();
        let command = self.xread_command(poll);
        let follow = Arc::clone(&self.follow);
        let manager = self.manager.clone();
        let limit = self.command_timeout;
        let held = self.held();
        let (connection, client_id) = self.blocking.connection().await?;
        let client_id = *client_id;
        let xread = command.query_async::<Value>(connection);
        let (reply, woke) = within_hold(held, until_reply(xread, &follow, manager, client_id, limit)).await;
        if woke {
            self.held_woken();
        }
        let prefix = Arc::clone(&self.blocking.prefix);
        let reply = match reply {
            Ok(reply) => reply,
            Err(error) => {
                let error = RedisLogError::from_redis("XREAD", &prefix, error);
                if error.kind() == RedisLogErrorKind::Refused {
                    // One of the keys holds another type now: the checks find which.
                    self.all_dirty();
                } else {
                    // The connection is dropped; the next round reconnects.
                    self.blocking.connection = None;
                }
                return Err(error);
            }
        };
        let Some(woken) = woken_keys(&reply) else {
            self.all_dirty();
            return Err(RedisLogError::unexpected(
                "XREAD",
                &prefix,
                format!("expected streams and entries, got {reply:?}"),
            ));
        };
        for key in woken {
            let followed = std::str::from_utf8(key)
                .ok()
                .and_then(|key| self.keys.get_mut(key));
            if let Some(followed) = followed {
                followed.dirty = true;
            }
        }
        if poll {
            self.quiet_unwoken();
        }
        Ok(())
    }

    /// `XREAD COUNT 1 BLOCK <ms> STREAMS <key>… <last>…` over the keys that can be read
    /// (without `BLOCK` to `poll`).
    fn xread_command(&self, poll: bool) -> Cmd {
        let block_ms = u64::try_from(READER_BLOCK.as_millis()).unwrap_or(u64::MAX);
        let mut command = redis::cmd("XREAD");
        command.arg("COUNT").arg(1);
        if !poll {
            command.arg("BLOCK").arg(block_ms);
        }
        command.arg("STREAMS");
        let readable = || self.keys.iter().filter(|(_, followed)| !followed.faulty);
        for (key, _) in readable() {
            command.arg(&**key);
        }
        for (_, followed) in readable() {
            command.arg(followed.last.to_string());
        }
        command
    }
}

/// Awaits the `XREAD`'s reply; if keys are added meanwhile, cuts it short with
/// `CLIENT UNBLOCK` (it then answers nil) so that the next one includes them.
async fn until_reply(
    xread: impl Future<Output = RedisResult<Value>>,
    follow: &Follow,
    mut manager: ConnectionManager,
    client_id: i64,
    limit: Duration,
) -> RedisResult<Value> {
    let mut xread = pin!(xread);
    loop {
        let mut added = pin!(follow.wake.notified());
        let reply = poll_fn(|cx| match xread.as_mut().poll(cx) {
            Poll::Ready(reply) => Poll::Ready(Some(reply)),
            Poll::Pending => added.as_mut().poll(cx).map(|()| None),
        })
        .await;
        match reply {
            Some(reply) => return reply,
            // The keys were taken up before this `XREAD` was sent.
            None if !follow.has_added() => continue,
            None => break,
        }
    }
    let mut unblock = pin!(async move {
        loop {
            let answer = tokio::time::timeout(
                limit,
                redis::cmd("CLIENT")
                    .arg("UNBLOCK")
                    .arg(client_id)
                    .query_async::<Value>(&mut manager),
            )
            .await;
            match answer {
                Ok(Ok(answer)) if int_of(&answer) == Some(0) => {
                    // Not blocked yet (the `XREAD` is on its way): try again shortly.
                    tokio::time::sleep(UNBLOCK_RETRY).await;
                }
                // Unblocked; or failed, and the `XREAD` ends with its block time anyway.
                _ => return,
            }
        }
    });
    let mut unblocked = false;
    poll_fn(|cx| {
        if !unblocked {
            unblocked = unblock.as_mut().poll(cx).is_ready();
        }
        xread.as_mut().poll(cx)
    })
    .await
}

/// The keys an `XREAD` answered for: nil (none), `[[key, entries], …]` (RESP2) or a map
/// (RESP3); `None` for another shape.
fn woken_keys(reply: &Value) -> Option<Vec<&[u8]>> {
    match reply {
        Value::Nil => Some(Vec::new()),
        Value::Array(streams) => streams
            .iter()
            .map(|stream| match stream {
                Value::Array(parts) => parts.first().and_then(bytes_of),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs.iter().map(|(key, _)| bytes_of(key)).collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_keys_an_xread_woke_for() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let stream = |key: &str| Value::Array(vec![bulk(key), Value::Array(vec![])]);
        assert_eq!(woken_keys(&Value::Nil), Some(vec![]));
        let resp2 = Value::Array(vec![stream("a"), stream("b")]);
        assert_eq!(woken_keys(&resp2), Some(vec![&b"a"[..], b"b"]));
        let resp3 = Value::Map(vec![(bulk("c"), Value::Array(vec![]))]);
        assert_eq!(woken_keys(&resp3), Some(vec![&b"c"[..]]));
        assert_eq!(woken_keys(&Value::Int(1)), None);
        assert_eq!(woken_keys(&Value::Array(vec![Value::Int(1)])), None);
    }
}
