//! Subscriptions: reading the window, and what to read when the window does not hold it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::time::Sleep;

use super::error::RedisLogError;
use super::id::StreamId;
use super::snapshot::Read;
use super::{RedisLog, FETCH_BACKOFF};
use crate::log::ring::{Counted, Follower};
use crate::log::{ResumeOutcome, Subscription};
use crate::measure::GapCause;
use crate::{Delivery, EventFeed, EventId};

pub(super) type ReadFuture = Pin<Box<dyn Future<Output = Result<Read, RedisLogError>> + Send>>;

pub(super) enum Mode {
    /// Reading the window.
    Window,
    /// Reading from Redis what the window does not hold.
    Fetch(ReadFuture),
    /// Reached Redis's newest entry: joins the window if it holds the cursor.
    Join,
    /// The reader has not reached the cursor yet: waits for the window to change.
    AwaitReader(Pin<Box<Sleep>>),
    /// A read from Redis failed; tries again after a pause (the client stays connected).
    Backoff(Pin<Box<Sleep>>),
    /// Took every entry before the stream's end: nothing more to read.
    Ended,
}

/// A reader of a [`RedisLog`]; dropping it releases it at once.
///
/// It never ends with an error: while Redis is unreachable it waits (an SSE stream keeps
/// sending keep-alives) and then goes on where it was. It ends (and
/// [is finished](EventFeed::is_finished)) once it has handed out every event before the
/// stream's end (see [`RedisLog::finish`](super::RedisLog)); one that starts at the end is
/// finished at once.
pub struct RedisSubscription {
    pub(super) log: Counted<RedisLog>,
    /// Its place in the window (in `Window`), what it took from the window or Redis and
    /// has not handed out, the position a client has reached and the gap it owes.
    pub(super) follower: Follower<StreamId>,
    /// The id of the last event taken (from the window or Redis).
    pub(super) cursor: StreamId,
    pub(super) mode: Mode,
    /// The window generation the cursor belongs to (in `Window`), or the one seen before the
    /// last read from Redis (in the other modes).
    pub(super) generation: u64,
    pub(super) backoff: Duration,
    outcome: ResumeOutcome,
    /// It took every entry before the stream's end: it ends once it has handed them out.
    ended: bool,
}

impl RedisLog {
    /// A subscription at `cursor`; `next_seq` is where it reads on in the window (in
    /// `Window` mode; the other modes find it when they join the window).
    pub(super) fn subscription(
        &self,
        cursor: StreamId,
        next_seq: u64,
        generation: u64,
        mode: Mode,
        outcome: ResumeOutcome,
    ) -> RedisSubscription {
        RedisSubscription {
            log: Counted::new(self.clone()),
            follower: Follower::new(Arc::clone(&self.inner.window.wake), next_seq, cursor),
            cursor,
            mode,
            generation,
            backoff: FETCH_BACKOFF.0,
            outcome,
            ended: false,
        }
    }

    /// A subscription at the live end of this process's window: finished at once when the
    /// window has read the stream's end.
    pub(super) fn subscribe_at_live_end(&self) -> RedisSubscription {
        let window = self.inner.window.lock();
        let (end, next_seq, generation) = (window.end, window.ring.next_seq(), window.generation);
        let ended = window.read_to_end(next_seq);
        drop(window);
        self.in_window(end, next_seq, generation, ResumeOutcome::Fresh, ended)
    }

    /// A subscription reading the window from `next_seq` on; `ended` when that is the end of
    /// a finished stream.
    pub(super) fn in_window(
        &self,
        cursor: StreamId,
        next_seq: u64,
        generation: u64,
        outcome: ResumeOutcome,
        ended: bool,
    ) -> RedisSubscription {
        let mut subscription = self.subscription(cursor, next_seq, generation, Mode::Window, outcome);
        if ended {
            subscription.end_reached();
        }
        subscription
    }
}

impl RedisSubscription {
    /// It took every entry before the stream's end: a gap still owed is reported (naming
    /// where it stopped), then the stream ends.
    pub(super) fn end_reached(&mut self) {
        self.follower.settle_gap(self.cursor);
        self.ended = true;
        self.mode = Mode::Ended;
    }

    /// Takes the next batch from the window (after a wake-up): Ready when there may be
    /// something to hand out, or another mode to go on in.
    fn poll_window(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        ready!(self.follower.wake.poll_rearm(cx));
        let state = self.log.inner.window.lock();
        if state.generation != self.generation {
            // What this subscriber read is no longer the stream's history: it goes on from
            // where the reader started over.
            self.generation = state.generation;
            self.cursor = state.restart_at;
            self.follower.owe_gap(GapCause::BackendLost);
            match state.seq_after(self.cursor) {
                Some(seq) => self.follower.join(seq),
                None => {
                    // The window moved on since: read the rest from Redis.
                    drop(state);
                    self.mode = self.start_fetch();
                }
            }
            return Poll::Ready(());
        }
        if self.follower.behind(&state.ring) {
            // Fell behind the window: read the rest from Redis.
            drop(state);
            self.mode = self.start_fetch();
            return Poll::Ready(());
        }
        self.follower.settle_gap(self.cursor);
        if let Some(last) = self.follower.take(&state.ring) {
            self.cursor = last;
        }
        if state.finished.is_some() && self.follower.read_all(&state.ring) {
            drop(state);
            self.end_reached();
        }
        Poll::Ready(())
    }

    /// Advances the current mode by one step: Ready when there may be something to hand
    /// out, or another mode to go on in.
    fn poll_mode(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.mode {
            Mode::Window => return self.poll_window(cx),
            Mode::Fetch(read) => {
                let result = ready!(read.as_mut().poll(cx));
                self.fetched(result);
            }
            Mode::Join => self.join(),
            Mode::AwaitReader(deadline) => {
                if self.follower.wake.poll_fired(cx).is_ready() {
                    self.mode = Mode::Join;
                } else if deadline.as_mut().poll(cx).is_ready() {
                    self.mode = self.start_fetch();
                } else {
                    return Poll::Pending;
                }
            }
            Mode::Backoff(sleep) => {
                ready!(sleep.as_mut().poll(cx));
                self.mode = self.start_fetch();
            }
            // `poll_delivery` ends the stream first.
            Mode::Ended => {}
        }
        Poll::Ready(())
    }
}

impl EventFeed for RedisSubscription {
    type Error = std::convert::Infallible;

    fn poll_delivery(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Delivery, Self::Error>>> {
        let this = self.get_mut();
        loop {
            if let Some(delivery) = this.follower.pop(&this.log.inner.counters, StreamId::event_id) {
                return Poll::Ready(Some(Ok(delivery)));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            ready!(this.poll_mode(cx));
        }
    }

    fn position(&self) -> Option<EventId> {
        self.follower.position(StreamId::event_id)
    }

    fn honours_cursor(&self) -> bool {
        true
    }

    fn is_finished(&self) -> bool {
        self.ended && !self.follower.has_ready()
    }
}

impl Subscription for RedisSubscription {
    fn outcome(&self) -> ResumeOutcome {
        self.outcome
    }
}

impl fmt::Debug for RedisSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSubscription")
            .field("key", &self.log.inner.key)
            .field("delivered", &self.follower.delivered().to_string())
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}
