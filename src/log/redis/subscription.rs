//! [`RedisSubscription`], and how the shared subscription machinery reads Redis.

use std::future::Future;
use std::sync::Arc;

use redis::Value;

use super::error::{limited, RedisLogError};
use super::reply::parse_items;
use super::snapshot::read_after;
use super::{Inner, RedisLog};
use crate::log::remote::{public_subscription, Entries, FetchFuture, Remote, StreamId, Window, FETCH_BATCH};
use crate::stats::LogCounters;

public_subscription! {
    /// A reader of a [`RedisLog`]; dropping it releases it at once.
    ///
    /// It never ends with an error: while Redis is unreachable it waits (an SSE stream keeps
    /// sending keep-alives) and then goes on where it was. It ends (and
    /// [is finished](crate::EventFeed::is_finished)) once it has handed out every event before
    /// the stream's end (see [`RedisLog`]'s *Finishing*); one that starts at the end is
    /// finished at once.
    RedisSubscription for RedisLog
}

impl Remote for RedisLog {
    type Error = RedisLogError;

    const FUTURE_CURSOR: &'static str = "the id is later than the stream's newest entry and Redis's clock";
    const CURSOR_SHAPE: &'static str = "expected a Redis stream id, <milliseconds>-<sequence>";

    fn window(&self) -> &Arc<Window> {
        &self.inner.window
    }

    fn counters(&self) -> &LogCounters {
        &self.inner.counters
    }

    fn name(&self) -> &str {
        &self.inner.key
    }

    fn fetch_after(&self, cursor: StreamId) -> FetchFuture<RedisLogError> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.fetch_after(cursor).await.map(Into::into) })
    }

    fn newest(&self, n: usize) -> impl Future<Output = Result<Entries, RedisLogError>> + Send {
        self.inner.newest(n)
    }
}

impl Inner {
    /// One catch-up read: up to a batch of entries after `cursor`, and whether they follow it.
    async fn fetch_after(&self, cursor: StreamId) -> Result<super::snapshot::Read, RedisLogError> {
        let mut connection = self.manager.clone();
        limited(
            "XRANGE",
            &self.key,
            self.command_timeout,
            read_after(&mut connection, &self.key, cursor, None, FETCH_BATCH),
        )
        .await
    }

    /// The newest `n` entries, oldest first (fewer when the stream holds fewer), and the
    /// stream's end if it is finished: the end is not one of the `n`.
    pub(super) async fn newest(&self, n: usize) -> Result<Entries, RedisLogError> {
        let mut connection = self.manager.clone();
        let mut command = redis::cmd("XREVRANGE");
        // One more, in case the newest is the end.
        command
            .arg(&*self.key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(n.saturating_add(1));
        let reply = limited("XREVRANGE", &self.key, self.command_timeout, async {
            let reply = command.query_async::<Value>(&mut connection).await;
            reply.map_err(|error| RedisLogError::from_redis("XREVRANGE", &self.key, error))
        })
        .await?;
        let mut items = parse_items(&reply)
            .map_err(|detail| RedisLogError::unexpected("XREVRANGE", &self.key, detail))?;
        items.reverse();
        let mut newest = Entries::up_to_end(items);
        let extra = newest.entries.len().saturating_sub(n);
        newest.entries.drain(..extra);
        Ok(newest)
    }
}
