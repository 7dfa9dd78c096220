//! [`RedisLog`] as an [`EventLog`]: appending, finishing, and subscribing (from the window
//! when it holds the cursor, else from Redis).

use std::time::Duration;

use super::append::NewEntry;
use super::script::Added;
use super::{RedisLog, RedisLogError, RedisSubscription};
use crate::log::remote::{CatchUp, Remote};
use crate::log::{AppendError, Appended, EventLog, StartPosition, SubscribeError};
use crate::{CursorError, Event, IdempotencyKey, LastEventId};

impl EventLog for RedisLog {
    type Error = RedisLogError;
    type Subscription = RedisSubscription;

    /// Adds the event's entry, unless the stream is finished (whichever process finished
    /// it): [`AppendError::Finished`] then, and nothing is added.
    async fn append(&self, event: Event) -> Result<Event, AppendError<RedisLogError>> {
        match self.add(NewEntry::Event(&event)).await {
            Ok(Added::Entry(id)) => {
                self.inner.counters.appended(1);
                Ok(event.with_event_id(id.event_id()))
            }
            Ok(Added::Finished(_)) => Err(AppendError::Finished),
            Ok(Added::Repeat(_) | Added::KeyReused) => Err(AppendError::Backend(RedisLogError::unexpected(
                "XADD",
                &self.inner.key,
                "the append script answered as to an idempotency key, and none was given",
            ))),
            Err(error) => Err(AppendError::Backend(error)),
        }
    }

    /// Adds the event's entry and remembers `key` with it for `window`, in one script: a key
    /// remembered (by any process) with the same event adds nothing and answers the first
    /// append's id. The key is remembered in Redis (`SET … PX`) under a key in the stream's
    /// slot, `{<stream>}:once:<key>`.
    async fn append_once(
        &self,
        event: Event,
        key: &IdempotencyKey,
        window: Duration,
    ) -> Result<Appended, AppendError<RedisLogError>> {
        match self.add_once(NewEntry::Event(&event), Some((key, window))).await {
            Ok(Added::Entry(id)) => {
                self.inner.counters.appended(1);
                Ok(Appended::New(event.with_event_id(id.event_id())))
            }
            Ok(Added::Repeat(id)) => Ok(Appended::Repeat(id.event_id())),
            Ok(Added::KeyReused) => Err(AppendError::KeyReused),
            Ok(Added::Finished(_)) => Err(AppendError::Finished),
            Err(error) => Err(AppendError::Backend(error)),
        }
    }

    /// Adds the end entry (the field `end`), in every process's view of the stream: readers
    /// everywhere end once they have read every event before it, and appends fail from now
    /// on. Finishing a finished stream adds nothing (the check and the `XADD` are one
    /// script).
    ///
    /// Returns once this process's reader has read the end too (or after the command
    /// timeout if it lags), so that a client subscribing here next starts finished.
    async fn finish(&self) -> Result<(), RedisLogError> {
        match self.add(NewEntry::End).await? {
            Added::Entry(end) | Added::Finished(end) => self.read_back(end).await,
            // Without an idempotency key the script answers neither.
            Added::Repeat(_) | Added::KeyReused => {}
        }
        Ok(())
    }

    /// Adds an entry with the field `gap` (and no event): every reader, in every process,
    /// reports a gap at that point of the stream, named by the entry's id. On a finished
    /// stream it adds nothing (no event follows to miss).
    async fn record_gap(&self) -> Result<(), RedisLogError> {
        if let Added::Entry(_) = self.add(NewEntry::Gap).await? {
            self.inner.counters.gap_recorded();
        }
        Ok(())
    }

    fn check_cursor(&self, cursor: &LastEventId) -> Result<(), CursorError> {
        <Self as Remote>::parse_cursor(cursor).map(drop)
    }

    /// The live end is that of this process's window; the oldest event and the last `n` are
    /// found in Redis (`XREVRANGE … COUNT n`), then read like a resume that reports no gap for
    /// what was trimmed before the client came.
    async fn subscribe_fresh(
        &self,
        start: StartPosition,
    ) -> Result<RedisSubscription, SubscribeError<RedisLogError>> {
        self.subscribe_at_start(start).await.map(RedisSubscription)
    }

    async fn subscribe(
        &self,
        cursor: Option<&LastEventId>,
    ) -> Result<RedisSubscription, SubscribeError<RedisLogError>> {
        self.subscribe_with(cursor).await.map(RedisSubscription)
    }
}
