//! The process's one reader of the stream, which feeds the local window.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Value};

use super::error::{limited, RedisLogError};
use super::id::StreamId;
use super::snapshot::{read_after, Continuity};
use super::window::Window;
use super::{READER_BACKOFF, READER_BATCH, READER_BLOCK};

pub(super) struct Reader {
    pub(super) window: Arc<Window>,
    pub(super) client: Client,
    pub(super) config: AsyncConnectionConfig,
    pub(super) connection: Option<MultiplexedConnection>,
    pub(super) key: Arc<str>,
    /// The newest id read into the window.
    pub(super) last: StreamId,
    /// The stream's count of entries ever added when `last` was its newest id, if it was.
    pub(super) head_added: Option<u64>,
    pub(super) connect_timeout: Duration,
    pub(super) command_timeout: Duration,
}

/// The process's one reader of the stream; runs until the log is dropped (then aborted).
pub(super) async fn read_loop(mut reader: Reader) {
    let mut backoff = READER_BACKOFF.0;
    loop {
        let mut connection = match reader.connection.take() {
            Some(connection) => connection,
            None => match reader.connect().await {
                Some(connection) => connection,
                None => {
                    crate::trace::warn_event!("event log reader cannot reach Redis; retrying", key = %reader.key);
                    tokio::time::sleep(crate::random::jittered(backoff)).await;
                    backoff = (backoff * 2).min(READER_BACKOFF.1);
                    continue;
                }
            },
        };
        match reader.step(&mut connection).await {
            Ok(()) => {
                backoff = READER_BACKOFF.0;
                reader.connection = Some(connection);
            }
            Err(error) => {
                crate::trace::warn_event!("event log reader failed; reconnecting", error = %error);
                // The connection is dropped; the next round reconnects.
                tokio::time::sleep(crate::random::jittered(backoff)).await;
                backoff = (backoff * 2).min(READER_BACKOFF.1);
            }
        }
    }
}

impl Reader {
    /// A new connection for the reader, within the connect timeout.
    async fn connect(&self) -> Option<MultiplexedConnection> {
        let connect = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config);
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(connection)) => Some(connection),
            _failed => None,
        }
    }

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
                    self.last = self.window.extend(read.entries);
                }
                self.head_added = (self.last == read.last_generated).then_some(read.entries_added);
                if got < READER_BATCH {
                    self.wait_for_more(connection).await?;
                }
            }
            // Entries after `last` are gone, or the stream was deleted, recreated or rewound.
            Continuity::Gap { restart } | Continuity::Future { restart } => {
                self.window.restart(restart);
                self.last = restart;
                self.head_added = (restart == read.last_generated).then_some(read.entries_added);
            }
        }
        Ok(())
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
