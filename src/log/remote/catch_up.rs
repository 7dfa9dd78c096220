//! Catching up: a subscriber whose cursor is older than the window reads the missing part
//! from the store, then joins the window at its cursor once the window holds that very id.

use super::subscription::{Mode, RemoteSubscription, Subscribe};
use super::{
    Continuity, Entries, Entry, Fetched, Remote, StreamId, AWAIT_READER, FETCH_BACKOFF, FETCH_BATCH,
};
use crate::log::{ResumeOutcome, StartPosition, SubscribeError};
use crate::measure::GapCause;
use crate::{CursorError, LastEventId};

/// Subscribing where the window does not hold the start: written once for every remote log.
pub(crate) trait CatchUp: Remote {
    /// Subscribes a client without a cursor at `start`.
    async fn subscribe_at_start(
        &self,
        start: StartPosition,
    ) -> Result<RemoteSubscription<Self>, SubscribeError<Self::Error>> {
        let outcome = ResumeOutcome::Fresh;
        let after = match start {
            StartPosition::LiveEnd | StartPosition::Last(0) => return Ok(self.subscribe_at_live_end()),
            // The store tells where the held history begins (its floor) in the read below.
            StartPosition::Oldest => StreamId::ZERO,
            StartPosition::Last(n) => {
                let generation = self.window().lock().generation;
                let Entries { entries, end } = self.newest(n).await.map_err(SubscribeError::Backend)?;
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
            let window = self.window().lock();
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
            let read = self.fetch_after(after).await.map_err(SubscribeError::Backend)?;
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

    /// A subscription at `cursor` that takes `entries`, read from the store right after it,
    /// and reads on from the store while a full batch suggests more; `end` when the stream's end
    /// follows them (it then ends after them).
    fn caught_up(
        &self,
        cursor: StreamId,
        generation: u64,
        outcome: ResumeOutcome,
        entries: Vec<Entry>,
        end: Option<StreamId>,
    ) -> RemoteSubscription<Self> {
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

    /// Subscribes a client with `cursor` (the live end without one): what a remote log's
    /// `EventLog::subscribe` does.
    async fn subscribe_with(
        &self,
        cursor: Option<&LastEventId>,
    ) -> Result<RemoteSubscription<Self>, SubscribeError<Self::Error>> {
        match cursor.map(Self::parse_cursor) {
            None => Ok(self.subscribe_at_live_end()),
            Some(Err(error)) => Err(SubscribeError::InvalidCursor(error)),
            Some(Ok(cursor)) => self.subscribe_after(cursor).await,
        }
    }

    /// Subscribes after `cursor`: from the window when it holds the cursor (no need to ask
    /// the store), else from the store.
    async fn subscribe_after(
        &self,
        cursor: StreamId,
    ) -> Result<RemoteSubscription<Self>, SubscribeError<Self::Error>> {
        let generation = {
            let window = self.window().lock();
            if let Some(next_seq) = window.seq_after(cursor) {
                let (generation, ended) = (window.generation, window.read_to_end(next_seq));
                drop(window);
                let outcome = ResumeOutcome::Resumed;
                return Ok(self.in_window(cursor, next_seq, generation, outcome, ended));
            }
            window.generation
        };
        self.resume_from_store(cursor, generation).await
    }

    /// Subscribes after a cursor the window does not hold: the store tells whether everything
    /// after it is still there.
    async fn resume_from_store(
        &self,
        cursor: StreamId,
        generation: u64,
    ) -> Result<RemoteSubscription<Self>, SubscribeError<Self::Error>> {
        let read = self.fetch_after(cursor).await.map_err(SubscribeError::Backend)?;
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
                reason: Self::FUTURE_CURSOR,
            })),
        }
    }
}

impl<L: Remote> CatchUp for L {}

impl<L: Remote> RemoteSubscription<L> {
    /// Queues the entries of a read from the store that follow the cursor.
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

    /// Starts reading from the store after the cursor.
    pub(super) fn start_fetch(&mut self) -> Mode<L::Error> {
        self.generation = self.log.window().lock().generation;
        Mode::Fetch(self.log.fetch_after(self.cursor))
    }

    /// Goes on after a read from the store.
    pub(super) fn fetched(&mut self, result: Result<Fetched, L::Error>) {
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

    /// Reached the store's newest entry: joins the window if it holds the cursor, else waits
    /// for the reader or reads from the store again.
    pub(super) fn join(&mut self) {
        // Armed before the look: a change of the window after it wakes us.
        self.follower.wake.arm();
        let state = self.log.window().lock();
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
            // The reader has not read this far yet: wait for it, or read from the store again if
            // it does not come.
            Mode::AwaitReader(Box::pin(tokio::time::sleep(AWAIT_READER)))
        } else {
            // The window moved past the cursor, or holds another stream (it was deleted or
            // recreated meanwhile): read from the store again, after a pause so that this cannot
            // spin.
            Mode::Backoff(Box::pin(tokio::time::sleep(FETCH_BACKOFF.0)))
        };
    }
}
