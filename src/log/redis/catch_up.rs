//! Catching up: a subscriber whose cursor is older than the window reads the missing part
//! from Redis, then joins the window at its cursor once the window holds that very id.

use std::sync::Arc;

use super::error::{limited, RedisLogError};
use super::id::StreamId;
use super::reply::Entry;
use super::snapshot::{read_after, Continuity, Read};
use super::subscription::{Mode, RedisSubscription};
use super::{Inner, RedisLog, FETCH_BACKOFF, FETCH_BATCH, READER_BLOCK};
use crate::log::{ResumeOutcome, SubscribeError};
use crate::measure::GapCause;
use crate::CursorError;

impl Inner {
    /// One catch-up read: up to a batch of entries after `cursor`, and whether they follow it.
    async fn fetch_after(&self, cursor: StreamId) -> Result<Read, RedisLogError> {
        let mut connection = self.manager.clone();
        limited(
            "XRANGE",
            &self.key,
            self.command_timeout,
            read_after(&mut connection, &self.key, cursor, None, FETCH_BATCH),
        )
        .await
    }
}

impl RedisLog {
    /// Subscribes after a cursor the window does not hold: Redis tells whether everything
    /// after it is still there.
    pub(super) async fn resume_from_redis(
        &self,
        cursor: StreamId,
        generation: u64,
    ) -> Result<RedisSubscription, SubscribeError<RedisLogError>> {
        let read = self
            .inner
            .fetch_after(cursor)
            .await
            .map_err(SubscribeError::Backend)?;
        // It reads on in the window once it joins it.
        let next_seq = 0;
        match read.continuity {
            Continuity::Continuous => {
                let full = read.entries.len() >= FETCH_BATCH;
                let outcome = ResumeOutcome::Resumed;
                let mut subscription = self.subscription(cursor, next_seq, generation, Mode::Join, outcome);
                subscription.take_read(read.entries);
                if full {
                    subscription.mode = subscription.start_fetch();
                }
                Ok(subscription)
            }
            Continuity::Gap { restart } => {
                let outcome = ResumeOutcome::Gap;
                let mut subscription = self.subscription(restart, next_seq, generation, Mode::Join, outcome);
                subscription.follower.owe_gap(GapCause::Trimmed);
                subscription.mode = subscription.start_fetch();
                Ok(subscription)
            }
            Continuity::Future { .. } => Err(SubscribeError::InvalidCursor(CursorError::Unknown {
                reason: "the id is later than the stream's newest entry and Redis's clock",
            })),
        }
    }
}

impl RedisSubscription {
    /// Queues the entries of a read from Redis that follow the cursor.
    fn take_read(&mut self, entries: Vec<Entry>) {
        for (id, event) in entries {
            if id > self.cursor {
                self.cursor = id;
                match event {
                    Some(event) => self.follower.push_taken(id, event),
                    None => self.follower.push_gap(id),
                }
            }
        }
    }

    /// Starts reading from Redis after the cursor.
    pub(super) fn start_fetch(&mut self) -> Mode {
        let inner = Arc::clone(&self.log.inner);
        self.generation = inner.window.lock().generation;
        let cursor = self.cursor;
        Mode::Fetch(Box::pin(async move { inner.fetch_after(cursor).await }))
    }

    /// Goes on after a read from Redis.
    pub(super) fn fetched(&mut self, result: Result<Read, RedisLogError>) {
        let read = match result {
            Ok(read) => read,
            Err(error) => {
                crate::trace::warn_event!("event log catch-up read failed; retrying", error = %error);
                self.mode = Mode::Backoff(Box::pin(tokio::time::sleep(crate::random::jittered(
                    self.backoff,
                ))));
                self.backoff = (self.backoff * 2).min(FETCH_BACKOFF.1);
                return;
            }
        };
        self.backoff = FETCH_BACKOFF.0;
        match read.continuity {
            Continuity::Continuous => {
                let full = read.entries.len() >= FETCH_BATCH;
                self.follower.settle_gap(self.cursor);
                self.take_read(read.entries);
                self.mode = if full { self.start_fetch() } else { Mode::Join };
            }
            // Trimmed past the cursor, or the stream was deleted, recreated or rewound
            // (history lost) since. The gap is reported once the position after it is known
            // to hold, so gaps in a row are reported as one.
            Continuity::Gap { restart } | Continuity::Future { restart } => {
                // Trimmed before this subscriber read it: it fell behind; a rewound stream
                // lost what it had.
                let cause = match read.continuity {
                    Continuity::Gap { .. } => GapCause::FellBehind,
                    _ => GapCause::BackendLost,
                };
                self.cursor = restart;
                self.follower.owe_gap(cause);
                self.mode = self.start_fetch();
            }
        }
    }

    /// Reached Redis's newest entry: joins the window if it holds the cursor, else waits for
    /// the reader or reads from Redis again.
    pub(super) fn join(&mut self) {
        // Armed before the look: a change of the window after it wakes us.
        self.follower.wake.arm();
        let state = self.log.inner.window.lock();
        let same_generation = state.generation == self.generation;
        if let Some(seq) = state.seq_after(self.cursor).filter(|_| same_generation) {
            // The window holds the cursor itself (its event, or its start), so it is the
            // same stream and everything after it is there. The next look at the window arms
            // a fresh wake-up first.
            self.follower.join(seq);
            self.mode = Mode::Window;
            return;
        }
        self.mode = if same_generation && self.cursor > state.end {
            // The reader has not read this far yet: wait for it, or read from Redis again if
            // it does not come.
            Mode::AwaitReader(Box::pin(tokio::time::sleep(READER_BLOCK)))
        } else {
            // The window moved past the cursor, or holds another stream (it was deleted or
            // recreated meanwhile): read from Redis again, after a pause so that this cannot
            // spin.
            Mode::Backoff(Box::pin(tokio::time::sleep(FETCH_BACKOFF.0)))
        };
    }
}
