//! The subscription machinery both logs share: a ring of events numbered in sequence, a
//! reader's place in it (what it took, what it handed out, the gap it owes, the wake-up it
//! arms before each look, see `wake`), the lock that ignores poisoning and the subscriber
//! count.
//!
//! [`MemoryLog`](super::memory::MemoryLog) is one such ring; `RedisLog` holds one per
//! process as its local window. How a subscriber wakes, takes, falls behind and reports a
//! gap is written here once, for both.

use std::cmp::Ordering as Order;
use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::wake::WakeSlot;
use crate::{Delivery, Event, EventId};

/// How many events a subscriber takes from the ring under one lock.
pub(super) const TAKE_PER_LOCK: usize = 64;

// ---------------------------------------------------------------------------------------
// The lock and the subscriber count
// ---------------------------------------------------------------------------------------

/// A mutex that ignores poisoning: every update of what it guards is a push, a pop or a
/// reset, so a panic while holding it cannot leave a half-update that matters to readers.
pub(super) struct Lock<T>(Mutex<T>);

impl<T> Lock<T> {
    pub(super) fn new(value: T) -> Self {
        Lock(Mutex::new(value))
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The number of live subscriptions of a log.
#[derive(Default)]
pub(super) struct SubscriberCount(AtomicUsize);

impl SubscriberCount {
    pub(super) fn get(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// A log that counts its subscriptions.
pub(super) trait CountsSubscribers {
    fn subscriber_count_cell(&self) -> &SubscriberCount;
}

/// A log held by one of its subscriptions: counted while the subscription lives.
pub(super) struct Counted<L: CountsSubscribers>(L);

impl<L: CountsSubscribers> Counted<L> {
    pub(super) fn new(log: L) -> Self {
        log.subscriber_count_cell().0.fetch_add(1, Ordering::AcqRel);
        Counted(log)
    }
}

impl<L: CountsSubscribers> Deref for Counted<L> {
    type Target = L;

    fn deref(&self) -> &L {
        &self.0
    }
}

impl<L: CountsSubscribers> Drop for Counted<L> {
    fn drop(&mut self) {
        self.0.subscriber_count_cell().0.fetch_sub(1, Ordering::AcqRel);
    }
}

// ---------------------------------------------------------------------------------------
// The ring
// ---------------------------------------------------------------------------------------

/// What a [`Ring`] holds: an event (encoded once, before it is pushed) and the position a
/// client reaches with it.
pub(super) trait RingEntry {
    /// A position in the log (what a gap and [`Follower::position`] name).
    type Position: Copy;

    /// The event, or `None` for a gap recorded in the log as an entry of its own.
    fn event(&self) -> Option<&Event>;

    /// This entry's position, given its sequence number in the ring.
    fn position(&self, seq: u64) -> Self::Position;

    /// A gap recorded just before this entry (events lost on the way into the log): readers
    /// report it, naming the position it returns, before they hand out this entry.
    fn gap_before(&self, _seq: u64) -> Option<Self::Position> {
        None
    }
}

/// A bounded ring of events numbered by consecutive sequence numbers, shared by all its
/// readers: history, live fan-out and lag detection are one mechanism.
pub(super) struct Ring<E> {
    entries: VecDeque<E>,
    /// Sequence number of `entries[0]` (or of the next entry, when empty).
    first_seq: u64,
    next_seq: u64,
}

impl<E: RingEntry> Ring<E> {
    /// An empty ring; the first entry pushed is number 1. It grows as entries come (its bound
    /// is given to [`push`](Ring::push)): an idle log, one of many topics, holds no history
    /// space.
    pub(super) fn new() -> Self {
        Ring {
            entries: VecDeque::new(),
            first_seq: 1,
            next_seq: 1,
        }
    }

    /// The number of entries held.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The sequence number of the oldest entry held (or of the next, when empty).
    pub(super) fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// The sequence number the next entry pushed gets.
    pub(super) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Appends `entry` as number [`next_seq`](Ring::next_seq); once more than `capacity`
    /// are held, evicts the oldest and returns it.
    pub(super) fn push(&mut self, entry: E, capacity: usize) -> Option<E> {
        self.entries.push_back(entry);
        self.next_seq += 1;
        if self.entries.len() > capacity {
            self.first_seq += 1;
            return self.entries.pop_front();
        }
        None
    }

    /// Evicts the oldest entries while `expired` says so; returns the last one evicted.
    pub(super) fn evict_while(&mut self, mut expired: impl FnMut(&E) -> bool) -> Option<E> {
        let mut last = None;
        while self.entries.front().is_some_and(&mut expired) {
            last = self.entries.pop_front();
            self.first_seq += 1;
        }
        last
    }

    /// The entry numbered `seq`, if held.
    pub(super) fn get(&self, seq: u64) -> Option<&E> {
        self.entries.get(seq.checked_sub(self.first_seq)? as usize)
    }

    /// The sequence number of the first entry that `before` is false for (entries must be
    /// ordered so that it is true for a prefix of them), or the next number when none.
    pub(super) fn first_seq_not(&self, mut before: impl FnMut(&E) -> bool) -> u64 {
        self.first_seq + self.entries.partition_point(|entry| before(entry)) as u64
    }

    /// Forgets every entry; numbering goes on.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // only the Redis window uses it
    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.first_seq = self.next_seq;
    }

    /// The sequence number after the entry that `probe` finds (entries must be ordered as
    /// `probe` compares them), if one is held.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // only the Redis window uses it
    pub(super) fn seq_after(&self, probe: impl FnMut(&E) -> Order) -> Option<u64> {
        let index = self.entries.binary_search_by(probe).ok()?;
        Some(self.first_seq + index as u64 + 1)
    }

    /// The entries from number `seq` on (`seq` must not be older than the oldest held).
    fn iter_from(&self, seq: u64) -> std::collections::vec_deque::Iter<'_, E> {
        self.entries.range((seq - self.first_seq) as usize..)
    }
}

// ---------------------------------------------------------------------------------------
// A reader's place
// ---------------------------------------------------------------------------------------

/// A gap the reader has to report before anything it takes afterwards.
#[derive(Clone, Copy)]
enum GapState<P> {
    None,
    /// Owed, but where reading goes on after it is not settled yet: it is reported once
    /// reading there is known to work, so gaps in a row are reported as one.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // only the Redis window uses it
    Owed,
    /// Handed out next, naming the position just before the events that follow it.
    Due(P),
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
    /// A gap recorded in the log, reported naming this position.
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

    /// Hands out the owed gap, then what was taken, in order.
    pub(super) fn pop(&mut self, id_of: impl FnOnce(P) -> EventId) -> Option<Delivery> {
        if let GapState::Due(at) = self.gap {
            self.gap = GapState::None;
            self.delivered = at;
            return Some(Delivery::Gap(Some(id_of(at))));
        }
        match self.taken.pop_front()? {
            Taken::Event(at, event) => {
                self.delivered = at;
                Some(Delivery::Event(event))
            }
            Taken::Gap(at) => {
                self.delivered = at;
                Some(Delivery::Gap(Some(id_of(at))))
            }
        }
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
    pub(super) fn gap_due(&mut self, at: P) {
        self.gap = GapState::Due(at);
    }

    /// A gap is to be reported once where reading goes on is settled.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // only the Redis window uses it
    pub(super) fn owe_gap(&mut self) {
        self.gap = GapState::Owed;
    }

    /// Reading after `at` works: an owed gap is reported next, naming `at`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // only the Redis window uses it
    pub(super) fn settle_gap(&mut self, at: P) {
        if let GapState::Owed = self.gap {
            self.gap = GapState::Due(at);
        }
    }

    /// Queues an event read from elsewhere than the ring.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // only the Redis window uses it
    pub(super) fn push_taken(&mut self, at: P, event: Event) {
        self.taken.push_back(Taken::Event(at, event));
    }

    /// Queues a gap recorded in the log, read from elsewhere than the ring; gaps in a row
    /// are reported as one.
    pub(super) fn push_gap(&mut self, at: P) {
        match self.taken.back_mut() {
            Some(Taken::Gap(last)) => *last = at,
            None if matches!(self.gap, GapState::Due(_)) => self.gap = GapState::Due(at),
            _ => self.taken.push_back(Taken::Gap(at)),
        }
    }

    /// Goes on taking from number `seq` on, at once.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // only the Redis window uses it
    pub(super) fn join(&mut self, seq: u64) {
        self.next_seq = seq;
        self.wake.look_again();
    }

    /// Whether the ring has evicted the next entry to take.
    pub(super) fn behind<E>(&self, ring: &Ring<E>) -> bool {
        self.next_seq < ring.first_seq
    }

    /// When the reader fell behind the ring while connected: a gap naming `before_oldest`
    /// (the position just before the oldest entry held) is due, and taking goes on from the
    /// oldest. Returns whether it fell behind. (Nothing is left in `taken` then: the ring is
    /// only read once what was taken has been handed out.)
    pub(super) fn skip_lag<E>(&mut self, ring: &Ring<E>, before_oldest: P) -> bool {
        if !self.behind(ring) {
            return false;
        }
        self.gap_due(before_oldest);
        self.next_seq = ring.first_seq;
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
    /// must not be [`behind`](Follower::behind).
    ///
    /// A recorded gap, or entries to skip, stop the copy: when nothing was copied before
    /// them, they are [taken](Follower::take) instead, and the reader
    /// [has deliveries ready](Follower::has_ready) to hand out.
    pub(super) fn copy_encoded<E: RingEntry<Position = P>>(
        &mut self,
        ring: &Ring<E>,
        out: &mut bytes::BytesMut,
        max_bytes: usize,
    ) -> usize
    where
        P: PartialOrd,
    {
        let start = out.len();
        let mut copied = 0u64;
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
                out.extend_from_slice(event.encoded());
                copied += 1;
            }
        }
        if copied == 0 {
            if self.next_seq < ring.next_seq {
                self.take(ring);
            }
            return 0;
        }
        let last = self.next_seq + copied - 1;
        if let Some(entry) = ring.iter_from(last).next() {
            self.delivered = entry.position(last);
        }
        self.next_seq += copied;
        if self.next_seq < ring.next_seq {
            // The frame filled up: look again next time instead of waiting.
            self.wake.look_again();
        }
        out.len() - start
    }
}

#[cfg(test)]
#[path = "ring_tests.rs"]
mod tests;
