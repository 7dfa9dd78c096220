//! [`PostgresLog`] as an [`EventLog`]: appending, finishing, subscribing, and how the shared
//! subscription machinery reads PostgreSQL.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::error::{limited, PostgresLogError};
use super::rows::{position, TopicRead};
use super::{Inner, PostgresLog};
use crate::log::remote::{
    public_subscription, CatchUp, Entries, FetchFuture, Remote, StreamId, Window, FETCH_BATCH,
};
use crate::log::{fingerprint, AppendError, Appended, EventLog, StartPosition, SubscribeError};
use crate::stats::LogCounters;
use crate::{CursorError, Event, IdempotencyKey, LastEventId};

public_subscription! {
    /// A reader of a [`PostgresLog`]; dropping it releases it at once.
    ///
    /// It never ends with an error: while PostgreSQL is unreachable it waits (an SSE stream
    /// keeps sending keep-alives) and then goes on where it was. It ends (and
    /// [is finished](crate::EventFeed::is_finished)) once it has handed out every event
    /// before the topic's end; one that starts at the end is finished at once.
    PostgresSubscription for PostgresLog
}

impl Inner {
    /// Runs one prepared statement (`which` picks it from the session) within the command
    /// timeout.
    async fn query(
        &self,
        operation: &'static str,
        which: impl FnOnce(&super::link::Session) -> &tokio_postgres::Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PostgresLogError> {
        let topic = &self.topic;
        limited(operation, topic, self.command_timeout, async {
            let session = self.link.session(topic).await?;
            let rows = session.client.query(which(&session), params).await;
            rows.map_err(|error| PostgresLogError::from_postgres(operation, topic, error))
        })
        .await
    }

    /// The position in the first row's two first columns (`xid`, `seq`).
    fn position_of(&self, operation: &'static str, rows: &[Row]) -> Result<StreamId, PostgresLogError> {
        let unexpected = |detail: String| PostgresLogError::unexpected(operation, &self.topic, detail);
        let row = rows.first().ok_or_else(|| unexpected("no row".to_owned()))?;
        let xid: &str = row.try_get(0).map_err(|error| unexpected(error.to_string()))?;
        let seq: i64 = row.try_get(1).map_err(|error| unexpected(error.to_string()))?;
        position(xid, seq).map_err(unexpected)
    }

    async fn fetch_after(&self, cursor: StreamId) -> Result<crate::log::remote::Fetched, PostgresLogError> {
        let (xid, seq) = (cursor.major.to_string(), as_sql(cursor.seq));
        let limit = FETCH_BATCH as i64;
        let rows = self
            .query("read", |s| &s.fetch, &[&&*self.topic, &xid, &seq, &limit])
            .await?;
        let read = TopicRead::parse(&rows)
            .map_err(|detail| PostgresLogError::unexpected("read", &self.topic, detail))?;
        Ok(read.after(cursor, FETCH_BATCH))
    }

    async fn newest(&self, n: usize) -> Result<Entries, PostgresLogError> {
        // One more, in case the newest is the end.
        let limit = i64::try_from(n.saturating_add(1)).unwrap_or(i64::MAX);
        let rows = self
            .query("read", |s| &s.newest, &[&&*self.topic, &limit])
            .await?;
        let read = TopicRead::parse(&rows)
            .map_err(|detail| PostgresLogError::unexpected("read", &self.topic, detail))?;
        Ok(read.newest(n))
    }

    /// Waits (up to the command timeout) until this process's reader has read the end.
    async fn read_back_end(&self) {
        let deadline = tokio::time::Instant::now() + self.command_timeout;
        loop {
            // Made before the look, so that a change after it wakes it.
            let changed = self.window.wake.notified();
            if self.window.lock().finished.is_some() {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return;
            }
        }
    }
}

/// A sequence number as PostgreSQL's `bigint`.
fn as_sql(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// An event's columns: `name`, `data`, `retry_ms`, `comment`.
fn columns(event: &Event) -> (Option<&str>, Option<&str>, Option<i64>, Option<&str>) {
    (
        event.name(),
        event.has_data().then(|| event.data()),
        event
            .retry()
            .map(|retry| i64::try_from(retry.as_millis()).unwrap_or(i64::MAX)),
        event.comment(),
    )
}

impl EventLog for PostgresLog {
    type Error = PostgresLogError;
    type Subscription = PostgresSubscription;

    /// Inserts the event's row (in a transaction of its own), unless the topic is finished:
    /// [`AppendError::Finished`] then, and nothing is added.
    async fn append(&self, event: Event) -> Result<Event, AppendError<PostgresLogError>> {
        let inner = &self.inner;
        let (name, data, retry_ms, comment) = columns(&event);
        let params: [&(dyn ToSql + Sync); 5] = [&&*inner.topic, &name, &data, &retry_ms, &comment];
        // Until its answer comes, the reader holds a busy window's wake-up if entries keep
        // coming.
        let _appending = inner.window.appending();
        let added = inner
            .query("append", |s| &s.append, &params)
            .await
            .and_then(|rows| inner.position_of("append", &rows));
        match added {
            Ok(id) => {
                inner.counters.appended(1);
                Ok(event.with_event_id(id.event_id()))
            }
            Err(error) if error.is_finished() => Err(AppendError::Finished),
            Err(error) => Err(AppendError::Backend(error)),
        }
    }

    /// Inserts the event's row and remembers `key` with it for `window`, in one call of
    /// `eventstream_append_once` (one transaction): a key remembered (by any process) with
    /// the same event adds nothing and answers the first append's id.
    async fn append_once(
        &self,
        event: Event,
        key: &IdempotencyKey,
        window: Duration,
    ) -> Result<Appended, AppendError<PostgresLogError>> {
        let inner = &self.inner;
        let (name, data, retry_ms, comment) = columns(&event);
        let print = format!("{:016x}", fingerprint(&event));
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX).max(1);
        let params: [&(dyn ToSql + Sync); 8] = [
            &&*inner.topic,
            &key.as_str(),
            &print,
            &window_ms,
            &name,
            &data,
            &retry_ms,
            &comment,
        ];
        let _appending = inner.window.appending();
        let rows = match inner.query("append", |s| &s.append_once, &params).await {
            Ok(rows) => rows,
            Err(error) if error.is_finished() => return Err(AppendError::Finished),
            Err(error) => return Err(AppendError::Backend(error)),
        };
        let unexpected = |detail: String| {
            AppendError::Backend(PostgresLogError::unexpected("append", &inner.topic, detail))
        };
        let row = rows.first().ok_or_else(|| unexpected("no row".to_owned()))?;
        let outcome: &str = row.try_get(0).map_err(|error| unexpected(error.to_string()))?;
        let at: Option<&str> = row.try_get(1).map_err(|error| unexpected(error.to_string()))?;
        let id = || {
            at.and_then(StreamId::parse)
                .ok_or_else(|| unexpected(format!("not a position: {at:?}")))
        };
        match outcome {
            "new" => {
                inner.counters.appended(1);
                Ok(Appended::New(event.with_event_id(id()?.event_id())))
            }
            "repeat" => Ok(Appended::Repeat(id()?.event_id())),
            "reused" => Err(AppendError::KeyReused),
            other => Err(unexpected(format!("unknown outcome {other:?}"))),
        }
    }

    /// Adds the topic's end (`eventstream_finish`), for every process: readers everywhere
    /// end once they have read every event before it, and inserts fail from now on.
    /// Finishing a finished topic adds nothing.
    ///
    /// Returns once this process's reader has read the end too (or after the command
    /// timeout if it lags), so that a client subscribing here next starts finished.
    async fn finish(&self) -> Result<(), PostgresLogError> {
        self.inner
            .query("finish", |s| &s.finish, &[&&*self.inner.topic])
            .await?;
        self.inner.read_back_end().await;
        Ok(())
    }

    /// Adds a row of kind `gap` (and no event): every reader, in every process, reports a
    /// gap at that point of the topic. On a finished topic it adds nothing.
    async fn record_gap(&self) -> Result<(), PostgresLogError> {
        match self
            .inner
            .query("record_gap", |s| &s.gap, &[&&*self.inner.topic])
            .await
        {
            Ok(_) => {
                self.inner.counters.gap_recorded();
                Ok(())
            }
            Err(error) if error.is_finished() => Ok(()),
            Err(error) => Err(error),
        }
    }

    fn check_cursor(&self, cursor: &LastEventId) -> Result<(), CursorError> {
        <Self as Remote>::parse_cursor(cursor).map(drop)
    }

    /// The live end is that of this process's window; the oldest event and the last `n` are
    /// found in PostgreSQL, then read like a resume that reports no gap for what was trimmed
    /// before the client came.
    async fn subscribe_fresh(
        &self,
        start: StartPosition,
    ) -> Result<PostgresSubscription, SubscribeError<PostgresLogError>> {
        self.subscribe_at_start(start).await.map(PostgresSubscription)
    }

    async fn subscribe(
        &self,
        cursor: Option<&LastEventId>,
    ) -> Result<PostgresSubscription, SubscribeError<PostgresLogError>> {
        self.subscribe_with(cursor).await.map(PostgresSubscription)
    }
}

impl Remote for PostgresLog {
    type Error = PostgresLogError;

    const FUTURE_CURSOR: &'static str = "the position is further ahead than any transaction of this database";
    const CURSOR_SHAPE: &'static str = "expected a position of this log, <transaction id>-<sequence>";

    fn window(&self) -> &Arc<Window> {
        &self.inner.window
    }

    fn counters(&self) -> &LogCounters {
        &self.inner.counters
    }

    fn name(&self) -> &str {
        &self.inner.topic
    }

    fn fetch_after(&self, cursor: StreamId) -> FetchFuture<PostgresLogError> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.fetch_after(cursor).await })
    }

    fn newest(&self, n: usize) -> impl Future<Output = Result<Entries, PostgresLogError>> + Send {
        self.inner.newest(n)
    }
}
