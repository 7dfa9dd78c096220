//! Catching up: a subscriber whose cursor is older than the window reads the missing part
//! from Redis, then joins the window at its cursor once the window holds that very id.

use std::sync::Arc;

use redis::Value;

use super::error::{limited, RedisLogError};
use super::id::StreamId;
use super::reply::{parse_items, Entries, Entry};
use super::snapshot::{read_after, Continuity, Read};
use super::subscription::{Mode, RedisSubscription};
use super::{Inner, RedisLog, AWAIT_READER, FETCH_BACKOFF, FETCH_BATCH};
use crate::log::{ResumeOutcome, StartPosition, SubscribeError};
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

impl Inner {
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

impl RedisLog {
    /// Subscribes a client without a cursor at `start`.
    pub(super) async fn subscribe_at_start(
        &self,
        start: StartPosition,
    ) -> Result<RedisSubscription, SubscribeError<RedisLogError>> {
        let outcome = ResumeOutcome::Fresh;
        let after = match start {
            StartPosition::LiveEnd | StartPosition::Last(0) => return Ok(self.subscribe_at_live_end()),
            // Redis tells where the held history begins (its floor) in the read below.
            StartPosition::Oldest => StreamId::ZERO,
            StartPosition::Last(n) => {
                let generation = self.inner.window.lock().generation;
                let Entries { entries, end } = self.inner.newest(n).await.map_err(SubscribeError::Backend)?;
                return Ok(match (entries.first(), end) {
                    // From the newest read on, every id exists: later reads find no gap.
                    (Some((first, _)), _) => self.caught_up(first.pred(), generation, outcome, entries, end),
                    // A stream finished without an event: at its end.
                    (None, Some(end)) => self.caught_up(end, generation, outcome, entries, Some(end)),
                    (None, None) => self.subscribe_at_live_end(),
                });
            }
        };
        let generation = {
            let window = self.inner.window.lock();
            if let Some(next_seq) = window.seq_after(after) {
                let (generation, ended) = (window.generation, window.read_to_end(next_seq));
                drop(window);
                return Ok(self.in_window(after, next_seq, generation, outcome, ended));
            }
            window.generation
        };
        let mut after = after;
        // What was trimmed before the client came is no gap of the client's: it starts after
        // the floor, where every entry is held, so a second read from there is continuous
        // (unless a trim overtook it: then the subscription reads on, and reports that gap).
        for _ in 0..2 {
            let read = self
                .inner
                .fetch_after(after)
                .await
                .map_err(SubscribeError::Backend)?;
            match read.continuity {
                Continuity::Continuous => {
                    return Ok(self.caught_up(after, generation, outcome, read.entries, read.end))
                }
                Continuity::Gap { restart } | Continuity::Future { restart } => after = restart,
            }
        }
        let mut subscription = self.subscription(after, 0, generation, Mode::Join, outcome);
        subscription.mode = subscription.start_fetch();
        Ok(subscription)
    }

    /// A subscription at `cursor` that takes `entries`, read from Redis right after it, and
    /// reads on from Redis while a full batch suggests more; `end` when the stream's end
    /// follows them (it then ends after them).
    fn caught_up(
        &self,
        cursor: StreamId,
        generation: u64,
        outcome: ResumeOutcome,
        entries: Vec<Entry>,
        end: Option<StreamId>,
    ) -> RedisSubscription {
        let full = entries.len() >= FETCH_BATCH;
        // It reads on in the window once it joins it.
        let mut subscription = self.subscription(cursor, 0, generation, Mode::Join, outcome);
        subscription.take_read(entries);
        if end.is_some() {
            subscription.end_reached();
        } else if full {
            subscription.mode = subscription.start_fetch();
        }
        subscription
    }

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
        match read.continuity {
            Continuity::Continuous => {
                Ok(self.caught_up(cursor, generation, ResumeOutcome::Resumed, read.entries, read.end))
            }
            Continuity::Gap { restart } => {
                let outcome = ResumeOutcome::Gap;
                let mut subscription = self.subscription(restart, 0, generation, Mode::Join, outcome);
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
                if read.end.is_some() {
                    self.end_reached();
                } else {
                    self.mode = if full { self.start_fetch() } else { Mode::Join };
                }
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
            Mode::AwaitReader(Box::pin(tokio::time::sleep(AWAIT_READER)))
        } else {
            // The window moved past the cursor, or holds another stream (it was deleted or
            // recreated meanwhile): read from Redis again, after a pause so that this cannot
            // spin.
            Mode::Backoff(Box::pin(tokio::time::sleep(FETCH_BACKOFF.0)))
        };
    }
}
