//! A reader's place in a [`Ring`]: what it took, what it handed out, the gap it owes, and
//! the wake-up it arms before each look (see `wake`). Shared by both logs.

use crate::feed::Encoded;
use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::Notify;

use super::ring::{Ring, RingEntry, TAKE_PER_LOCK};
use super::wake::WakeSlot;
use crate::measure::GapCause;
use crate::stats::LogCounters;
use crate::{Delivery, Event, EventId};

/// A gap the reader has to report before anything it takes afterwards, and why it is owed
/// (counted when it is handed out).
#[derive(Clone, Copy)]
enum GapState<P> {
    None,
    /// Owed, but where reading goes on after it is not settled yet: it is reported once
    /// reading there is known to work, so gaps in a row are reported as one.
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    // remote windows only
    Owed(GapCause),
    /// Handed out next, naming the position just before the events that follow it.
    Due(P, GapCause),
}

impl<P> GapState<P> {
    /// The cause of a gap already owed wins over a later one: the client hears one reset,
    /// and the first loss is what made it.
    fn cause_or(&self, cause: GapCause) -> GapCause {
        match self {
            GapState::None => cause,
            GapState::Owed(first) | GapState::Due(_, first) => *first,
        }
    }
}

/// A subscriber's place in a ring: the next sequence number to take, what was taken but not
/// handed out, the position a client has reached, and the gap it owes.
pub(super) struct Follower<P> {
    /// Armed before each look at the ring.
    pub(super) wake: WakeSlot,
    /// Sequence number of the next entry to take from the ring.
    next_seq: u64,
    /// The position a client has reached (of the last delivery handed out).
    delivered: P,
    gap: GapState<P>,
    /// Taken but not yet handed out.
    taken: VecDeque<Taken<P>>,
    /// Entries up to this position are skipped: the client has seen them already (it
    /// resumed from a position the log had not reached when it subscribed).
    skip_through: Option<P>,
}

/// What a reader took from the ring and has yet to hand out.
enum Taken<P> {
    Event(P, Event),
    /// A gap recorded in the log (a loss on the way in, or entries the backend lost),
    /// reported naming this position.
    Gap(P),
}

impl<P: Copy> Follower<P> {
    /// A reader woken by `notify` that takes from number `next_seq` on and has reached `at`.
    pub(super) fn new(notify: Arc<Notify>, next_seq: u64, at: P) -> Self {
        Follower {
            wake: WakeSlot::new(notify),
            next_seq,
            delivered: at,
            gap: GapState::None,
            taken: VecDeque::new(),
            skip_through: None,
        }
    }

    /// Skips the entries up to `seen` (positions must be ordered): for a client that has
    /// seen events the log is still to receive.
    pub(super) fn skip_through(&mut self, seen: P) {
        self.skip_through = Some(seen);
    }

    /// The position a client has reached.
    pub(super) fn delivered(&self) -> P {
        self.delivered
    }

    /// Hands out the owed gap, then what was taken, in order; each gap handed out is
    /// counted in `counters` with its cause.
    pub(super) fn pop(
        &mut self,
        counters: &LogCounters,
        id_of: impl FnOnce(P) -> EventId,
    ) -> Option<Delivery> {
        if let GapState::Due(at, cause) = self.gap {
            self.gap = GapState::None;
            self.delivered = at;
            counters.gap_reported(cause);
            return Some(Delivery::Gap(Some(id_of(at))));
        }
        match self.taken.pop_front()? {
            Taken::Event(at, event) => {
                self.delivered = at;
                Some(Delivery::Event(event))
            }
            Taken::Gap(at) => {
                self.delivered = at;
                counters.gap_reported(GapCause::BackendLost);
                Some(Delivery::Gap(Some(id_of(at))))
            }
        }
    }

    /// Whether every entry of `ring` has been taken.
    pub(super) fn read_all<E: RingEntry>(&self, ring: &Ring<E>) -> bool {
        self.next_seq >= ring.next_seq()
    }

    /// Whether something is to be handed out (or a gap is owed) before the ring is read again.
    pub(super) fn has_ready(&self) -> bool {
        !matches!(self.gap, GapState::None) || !self.taken.is_empty()
    }

    /// The position after everything handed out. While a gap is still to be reported, no
    /// position is safe to hand out: a client that resumed from it would never hear of the
    /// gap.
    pub(super) fn position(&self, id_of: impl FnOnce(P) -> EventId) -> Option<EventId> {
        matches!(self.gap, GapState::None).then(|| id_of(self.delivered))
    }

    /// A gap is to be reported before the next event, naming `at`.
    pub(super) fn gap_due(&mut self, at: P, cause: GapCause) {
        self.gap = GapState::Due(at, self.gap.cause_or(cause));
    }

    /// A gap is to be reported once where reading goes on is settled.
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))] // remote windows only
    pub(super) fn owe_gap(&mut self, cause: GapCause) {
        self.gap = GapState::Owed(self.gap.cause_or(cause));
    }

    /// Reading after `at` works: an owed gap is reported next, naming `at`.
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))] // remote windows only
    pub(super) fn settle_gap(&mut self, at: P) {
        if let GapState::Owed(cause) = self.gap {
            self.gap = GapState::Due(at, cause);
        }
    }

    /// Queues an event read from elsewhere than the ring.
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))] // remote windows only
    pub(super) fn push_taken(&mut self, at: P, event: Event) {
        self.taken.push_back(Taken::Event(at, event));
    }

    /// Queues a gap recorded in the log, read from elsewhere than the ring; gaps in a row
    /// are reported as one.
    pub(super) fn push_gap(&mut self, at: P) {
        match self.taken.back_mut() {
            Some(Taken::Gap(last)) => *last = at,
            None if matches!(self.gap, GapState::Due(..)) => {
                self.gap = GapState::Due(at, self.gap.cause_or(GapCause::BackendLost))
            }
            _ => self.taken.push_back(Taken::Gap(at)),
        }
    }

    /// Goes on taking from number `seq` on, at once.
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))] // remote windows only
    pub(super) fn join(&mut self, seq: u64) {
        self.next_seq = seq;
        self.wake.look_again();
    }

    /// Whether the ring has evicted the next entry to take.
    pub(super) fn behind<E: RingEntry>(&self, ring: &Ring<E>) -> bool {
        self.next_seq < ring.first_seq()
    }

    /// When the reader fell behind the ring while connected: a gap naming `before_oldest`
    /// (the position just before the oldest entry held) is due, and taking goes on from the
    /// oldest. Returns whether it fell behind. (Nothing is left in `taken` then: the ring is
    /// only read once what was taken has been handed out.)
    pub(super) fn skip_lag<E: RingEntry>(&mut self, ring: &Ring<E>, before_oldest: P) -> bool {
        if !self.behind(ring) {
            return false;
        }
        self.gap_due(before_oldest, GapCause::FellBehind);
        self.next_seq = ring.first_seq();
        true
    }

    /// Takes what the ring holds from `next_seq` on, up to one batch, and returns the
    /// position of the last entry taken. A full batch means more may be ready: the next look
    /// comes at once, once these are handed out, rather than at the next wake-up. The reader
    /// must not be [`behind`](Follower::behind).
    pub(super) fn take<E: RingEntry<Position = P>>(&mut self, ring: &Ring<E>) -> Option<P>
    where
        P: PartialOrd,
    {
        let mut took = 0;
        let mut last = None;
        for entry in ring.iter_from(self.next_seq).take(TAKE_PER_LOCK) {
            let seq = self.next_seq;
            self.next_seq += 1;
            took += 1;
            let at = entry.position(seq);
            last = Some(at);
            if let Some(seen) = self.skip_through {
                if at <= seen {
                    continue;
                }
                self.skip_through = None;
            }
            if let Some(before) = entry.gap_before(seq) {
                self.push_gap(before);
            }
            match entry.event() {
                Some(event) => self.taken.push_back(Taken::Event(at, event.clone())),
                None => self.push_gap(at),
            }
        }
        if took == TAKE_PER_LOCK {
            self.wake.look_again();
        }
        last
    }

    /// Copies the wire bytes of the entries from `next_seq` on straight from the ring into
    /// `out` (stopping once it grew by `max_bytes`), under the caller's one lock: no
    /// per-event clone, no refcount traffic on the bytes every subscriber shares. Returns the
    /// bytes copied; when more were ready than fit, the next look comes at once. The reader
    /// must not be [`behind`](Follower::behind). With the `metrics` feature, how many events
    /// went and the first one's append stamp are noted for the frame that carries them.
    ///
    /// A recorded gap, or entries to skip, stop the copy: when nothing was copied before
    /// them, they are [taken](Follower::take) instead, and the reader
    /// [has deliveries ready](Follower::has_ready) to hand out.
    pub(super) fn copy_encoded<E: RingEntry<Position = P>>(
        &mut self,
        ring: &Ring<E>,
        out: &mut bytes::BytesMut,
        max_bytes: usize,
    ) -> Encoded
    where
        P: PartialOrd,
    {
        let start = out.len();
        let mut copied = 0u64;
        let mut first_stamp = None;
        if self.skip_through.is_none() {
            for entry in ring.iter_from(self.next_seq) {
                let seq = self.next_seq + copied;
                let event = match entry.event() {
                    Some(event) if entry.gap_before(seq).is_none() => event,
                    _ => break,
                };
                if out.len() - start >= max_bytes {
                    break;
                }
                if copied == 0 {
                    first_stamp = event.appended_at();
                }
                out.extend_from_slice(event.encoded());
                copied += 1;
            }
        }
        if copied == 0 {
            if self.next_seq < ring.next_seq() {
                self.take(ring);
            }
            return Encoded::NONE;
        }
        let last = self.next_seq + copied - 1;
        if let Some(entry) = ring.iter_from(last).next() {
            self.delivered = entry.position(last);
        }
        self.next_seq += copied;
        if self.next_seq < ring.next_seq() {
            // The frame filled up: look again next time instead of waiting.
            self.wake.look_again();
        }
        Encoded::new(out.len() - start, copied).first_appended_at(first_stamp)
    }
}
