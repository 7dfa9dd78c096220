//! [`MemorySubscription`]: one reader of a [`MemoryLog`].

use crate::feed::Encoded;
use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use super::ids::Position;
use super::MemoryLog;
use crate::log::ring::{Counted, Follower};
use crate::log::{ResumeOutcome, Subscription};
use crate::{Delivery, EventFeed, EventId};

/// A reader of a [`MemoryLog`]; dropping it releases it at once.
pub struct MemorySubscription {
    log: Counted<MemoryLog>,
    /// Its place in the ring.
    follower: Follower<Position>,
    outcome: ResumeOutcome,
    /// It has taken every entry of a finished log: once those are handed out, its stream
    /// ends (nothing can be appended after the end, so this never changes back).
    end_taken: bool,
}

impl MemorySubscription {
    pub(super) fn new(
        log: Counted<MemoryLog>,
        follower: Follower<Position>,
        outcome: ResumeOutcome,
        end_taken: bool,
    ) -> Self {
        MemorySubscription {
            log,
            follower,
            outcome,
            end_taken,
        }
    }

    /// After a look at the ring: whether the log is finished and every entry is taken.
    fn end_taken(follower: &Follower<Position>, held: &super::Held) -> bool {
        held.finished && follower.read_all(&held.ring)
    }
}

impl EventFeed for MemorySubscription {
    type Error = Infallible;

    fn poll_delivery(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Delivery, Infallible>>> {
        let this = self.get_mut();
        loop {
            if let Some(delivery) = this.follower.pop(this.log.counters(), |at| this.log.id_for(at)) {
                return Poll::Ready(Some(Ok(delivery)));
            }
            if this.end_taken {
                return Poll::Ready(None);
            }
            ready!(this.follower.wake.poll_rearm(cx));
            let held = this.log.current();
            // Fell behind the history while connected: report it, then go on from the oldest.
            this.follower.skip_lag(&held.ring, held.complete_after);
            this.follower.take(&held.ring);
            this.end_taken = Self::end_taken(&this.follower, &held);
        }
    }

    fn poll_encoded(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut bytes::BytesMut,
        max_bytes: usize,
    ) -> Poll<Option<Result<Encoded, Infallible>>> {
        let this = self.get_mut();
        loop {
            if this.follower.has_ready() || this.end_taken {
                return Poll::Ready(Some(Ok(Encoded::NONE)));
            }
            ready!(this.follower.wake.poll_rearm(cx));
            let held = this.log.current();
            if this.follower.skip_lag(&held.ring, held.complete_after) {
                // Fell behind: `poll_delivery` reports the gap; the held events are still to be
                // looked at, so the next look must not wait for another append.
                this.follower.wake.look_again();
                continue;
            }
            // Copy straight from the ring under one lock.
            let copied = this.follower.copy_encoded(&held.ring, out, max_bytes);
            this.end_taken = Self::end_taken(&this.follower, &held);
            drop(held);
            if !copied.is_none() {
                return Poll::Ready(Some(Ok(copied)));
            }
            // A recorded gap (or events the client has seen) stopped the copy: they were
            // taken instead, for `poll_delivery` to hand out; or the end was reached.
            if this.follower.has_ready() || this.end_taken {
                return Poll::Ready(Some(Ok(Encoded::NONE)));
            }
        }
    }

    fn position(&self) -> Option<EventId> {
        self.follower.position(|at| self.log.id_for(at))
    }

    fn honours_cursor(&self) -> bool {
        true
    }

    fn is_finished(&self) -> bool {
        self.end_taken && !self.follower.has_ready()
    }
}

impl Subscription for MemorySubscription {
    fn outcome(&self) -> ResumeOutcome {
        self.outcome
    }
}

impl fmt::Debug for MemorySubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySubscription")
            .field("epoch", &self.log.epoch())
            .field("delivered_seq", &self.follower.delivered())
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}
