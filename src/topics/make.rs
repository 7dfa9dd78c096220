//! [`MakeLog`]: how a registry creates the log of a new topic.

use std::future::Future;

use crate::{EventLog, MemoryLog, MemoryLogBuilder};

/// Creates the log of a topic the first time its key is used: a [`MemoryLogBuilder`] (each
/// topic a [`MemoryLog`] with its settings) or, with the `redis` feature, a
/// [`RedisLogs`](crate::RedisLogs) family (each topic a stream under its prefix, one reader
/// for all of them).
pub trait MakeLog: Send + Sync + 'static {
    /// The log of one topic.
    type Log: EventLog;

    /// The log for the topic `key` (already validated).
    fn make_log(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Self::Log, <Self::Log as EventLog>::Error>> + Send;
}

/// Every topic gets a new [`MemoryLog`] (so a topic evicted and created again has a new
/// epoch: old cursors get `reset`, never a replay from another history).
impl MakeLog for MemoryLogBuilder {
    type Log = MemoryLog;

    fn make_log(
        &self,
        _key: &str,
    ) -> impl Future<Output = Result<MemoryLog, std::convert::Infallible>> + Send {
        std::future::ready(Ok(self.clone().build()))
    }
}

/// Every topic is the stream `<prefix><key>` of the family, all followed by its one reader
/// (eviction drops only this process's window: the history stays in Redis).
#[cfg(feature = "redis")]
impl MakeLog for crate::RedisLogs {
    type Log = crate::RedisLog;

    fn make_log(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<crate::RedisLog, crate::RedisLogError>> + Send {
        self.log(key)
    }
}

/// Every topic is the topic `<prefix><key>` of the family's table, all read by its one reader
/// (eviction drops only this process's window: the history stays in PostgreSQL).
#[cfg(feature = "postgres")]
impl MakeLog for crate::PostgresLogs {
    type Log = crate::PostgresLog;

    fn make_log(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<crate::PostgresLog, crate::PostgresLogError>> + Send {
        self.log(key)
    }
}
