//! The subscription machinery both logs share: a ring of events numbered in sequence, the
//! lock that ignores poisoning and the subscriber count (a reader's place in the ring is
//! `follower`).
//!
//! [`MemoryLog`](super::memory::MemoryLog) is one such ring; `RedisLog` holds one per
//! process as its local window. How a subscriber wakes, takes, falls behind and reports a
//! gap is written once, for both.

use std::cmp::Ordering as Order;
use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::Event;

pub(super) use super::follower::Follower;

/// How many events a subscriber takes from the ring under one lock.
pub(super) const TAKE_PER_LOCK: usize = 64;

// ---------------------------------------------------------------------------------------
// The lock and the subscriber count
// ---------------------------------------------------------------------------------------

pub(super) use crate::sync::Lock;

/// The number of live subscriptions of a log.
#[derive(Default)]
pub(super) struct SubscriberCount(AtomicUsize);

impl SubscriberCount {
    pub(super) fn get(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    /// Counts `n` more subscribers without making any (for tests of what depends on them).
    #[cfg(test)]
    pub(super) fn add_for_test(&self, n: usize) {
        self.0.fetch_add(n, Ordering::AcqRel);
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
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))] // remote windows only
    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.first_seq = self.next_seq;
    }

    /// The sequence number after the entry that `probe` finds (entries must be ordered as
    /// `probe` compares them), if one is held.
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))] // remote windows only
    pub(super) fn seq_after(&self, probe: impl FnMut(&E) -> Order) -> Option<u64> {
        let index = self.entries.binary_search_by(probe).ok()?;
        Some(self.first_seq + index as u64 + 1)
    }

    /// The sequence number of the first entry for which `before` is false (entries must be
    /// ordered so that it is true for a first part of them only).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))] // the PostgreSQL window only
    pub(super) fn seq_past(&self, before: impl FnMut(&E) -> bool) -> u64 {
        self.first_seq + self.entries.partition_point(before) as u64
    }

    /// The entries from number `seq` on (`seq` must not be older than the oldest held).
    pub(super) fn iter_from(&self, seq: u64) -> std::collections::vec_deque::Iter<'_, E> {
        self.entries.range((seq - self.first_seq) as usize..)
    }
}

#[cfg(test)]
#[path = "ring_tests.rs"]
mod tests;
