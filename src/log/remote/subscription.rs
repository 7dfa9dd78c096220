//! Subscriptions: reading the window, and what to read when the window does not hold it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::time::Sleep;

use super::{FetchFuture, Remote, StreamId, FETCH_BACKOFF};
use crate::log::ring::{Counted, Follower};
use crate::log::ResumeOutcome;
use crate::measure::GapCause;
use crate::{Delivery, EventId};

pub(crate) enum Mode<E> {
    /// Reading the window.
    Window,
    /// Reading from the store what the window does not hold.
    Fetch(FetchFuture<E>),
    /// Reached the store's newest entry: joins the window if it holds the cursor.
    Join,
    /// The reader has not reached the cursor yet: waits for the window to change.
    AwaitReader(Pin<Box<Sleep>>),
    /// A read from the store failed; tries again after a pause (the client stays connected).
    Backoff(Pin<Box<Sleep>>),
    /// Took every entry before the stream's end: nothing more to read.
    Ended,
}

/// A reader of a remote log, behind each backend's public subscription type.
pub(crate) struct RemoteSubscription<L: Remote> {
    pub(super) log: Counted<L>,
    /// Its place in the window (in `Window`), what it took from the window or the store and
    /// has not handed out, the position a client has reached and the gap it owes.
    pub(super) follower: Follower<StreamId>,
    /// The id of the last event taken (from the window or the store).
    pub(super) cursor: StreamId,
    pub(super) mode: Mode<L::Error>,
    /// The window generation the cursor belongs to (in `Window`), or the one seen before the
    /// last read from the store (in the other modes).
    pub(super) generation: u64,
    pub(super) backoff: Duration,
    outcome: ResumeOutcome,
    /// It took every entry before the stream's end: it ends once it has handed them out.
    ended: bool,
}

/// The subscriptions a remote log makes.
pub(crate) trait Subscribe: Remote {
    /// A subscription at `cursor`; `next_seq` is where it reads on in the window (in
    /// `Window` mode; the other modes find it when they join the window).
    fn subscription(
        &self,
        cursor: StreamId,
        next_seq: u64,
        generation: u64,
        mode: Mode<Self::Error>,
        outcome: ResumeOutcome,
    ) -> RemoteSubscription<Self> {
        RemoteSubscription {
            log: Counted::new(self.clone()),
            follower: Follower::new(Arc::clone(&self.window().wake), next_seq, cursor),
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
    fn subscribe_at_live_end(&self) -> RemoteSubscription<Self> {
        let window = self.window().lock();
        let (end, next_seq, generation) = (window.end, window.ring.next_seq(), window.generation);
        let ended = window.read_to_end(next_seq);
        drop(window);
        self.in_window(end, next_seq, generation, ResumeOutcome::Fresh, ended)
    }

    /// A subscription reading the window from `next_seq` on; `ended` when that is the end of
    /// a finished stream.
    fn in_window(
        &self,
        cursor: StreamId,
        next_seq: u64,
        generation: u64,
        outcome: ResumeOutcome,
        ended: bool,
    ) -> RemoteSubscription<Self> {
        let mut subscription = self.subscription(cursor, next_seq, generation, Mode::Window, outcome);
        if ended {
            subscription.end_reached();
        }
        subscription
    }
}

impl<L: Remote> Subscribe for L {}

impl<L: Remote> RemoteSubscription<L> {
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
        let state = self.log.window().lock();
        if state.generation != self.generation {
            // What this subscriber read is no longer the stream's history: it goes on from
            // where the reader started over.
            self.generation = state.generation;
            self.cursor = state.restart_at;
            self.follower.owe_gap(GapCause::BackendLost);
            match state.seq_after(self.cursor) {
                Some(seq) => self.follower.join(seq),
                None => {
                    // The window moved on since: read the rest from the store.
                    drop(state);
                    self.mode = self.start_fetch();
                }
            }
            return Poll::Ready(());
        }
        if self.follower.behind(&state.ring) {
            // Fell behind the window: read the rest from the store.
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

/// What each backend's public subscription type forwards to (an `EventFeed` and a
/// `Subscription` of its own: it never ends with an error).
impl<L: Remote> RemoteSubscription<L> {
    pub(crate) fn poll_delivery(&mut self, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        loop {
            if let Some(delivery) = self.follower.pop(self.log.counters(), StreamId::event_id) {
                return Poll::Ready(Some(delivery));
            }
            if self.ended {
                return Poll::Ready(None);
            }
            ready!(self.poll_mode(cx));
        }
    }

    pub(crate) fn position(&self) -> Option<EventId> {
        self.follower.position(StreamId::event_id)
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.ended && !self.follower.has_ready()
    }

    pub(crate) fn outcome(&self) -> ResumeOutcome {
        self.outcome
    }

    /// Debugging output under the backend's type name.
    pub(crate) fn debug(&self, f: &mut fmt::Formatter<'_>, type_name: &str) -> fmt::Result {
        f.debug_struct(type_name)
            .field("log", &self.log.name())
            .field("delivered", &self.follower.delivered().to_string())
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

/// Declares a backend's public subscription type: a [`RemoteSubscription`] of its log, as
/// an [`EventFeed`](crate::EventFeed) that honours cursors and never fails, and a
/// [`Subscription`](crate::Subscription).
macro_rules! public_subscription {
    ($(#[$doc:meta])* $name:ident for $log:ty) => {
        $(#[$doc])*
        pub struct $name(pub(super) crate::log::remote::RemoteSubscription<$log>);

        impl crate::EventFeed for $name {
            type Error = std::convert::Infallible;

            fn poll_delivery(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Option<Result<crate::Delivery, Self::Error>>> {
                self.get_mut().0.poll_delivery(cx).map(|delivery| delivery.map(Ok))
            }

            fn position(&self) -> Option<crate::EventId> {
                self.0.position()
            }

            fn honours_cursor(&self) -> bool {
                true
            }

            fn is_finished(&self) -> bool {
                self.0.is_finished()
            }
        }

        impl crate::log::Subscription for $name {
            fn outcome(&self) -> crate::log::ResumeOutcome {
                self.0.outcome()
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.debug(f, stringify!($name))
            }
        }
    };
}
pub(crate) use public_subscription;
