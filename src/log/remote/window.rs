//! The local window: the events this process's reader has read, a ring shared by its
//! subscribers (the same ring and wake-up as [`MemoryLog`](crate::MemoryLog)'s).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, MutexGuard};

use tokio::sync::Notify;

use super::{Entry, StreamId};
use crate::log::ring::{Lock, Ring, RingEntry, SubscriberCount};
use crate::stats::{LogCounters, LogStats};
use crate::{Event, EventId};

/// From this many subscribers on, a window's wake-ups are held while entries keep coming:
/// waking fewer costs little, and a lone subscriber should not wait for the hold.
const HOLD_FROM: usize = 64;

/// The events this process has read, shared by its subscribers.
pub(crate) struct Window {
    state: Lock<WindowState>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) capacity: usize,
    /// Appends of this process to the key that are on their way: the reader expects their
    /// entries (see the Redis reader's `hold`).
    appending: AtomicUsize,
    /// The live subscriptions of the log in this process.
    pub(crate) subscribers: SubscriberCount,
}

/// An append of this process on its way to the window's key, counted while it lives.
pub(crate) struct Appending<'a>(&'a Window);

impl Drop for Appending<'_> {
    fn drop(&mut self) {
        self.0.appending.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(crate) struct WindowState {
    /// Ordered by id.
    pub(crate) ring: Ring<Entry>,
    /// Every entry of the stream after `start`, up to `end`, is in `ring`.
    pub(crate) start: StreamId,
    /// The newest id read (or `start`); the end entry's once the stream is finished.
    pub(crate) end: StreamId,
    /// The stream's end entry, once the reader has read it (see
    /// [`EventLog::finish`](crate::EventLog::finish)): `ring` holds every entry before it since
    /// `start`, and nothing after it is read into the window.
    pub(crate) finished: Option<StreamId>,
    /// Where the reader started over at the last change of `generation`.
    pub(crate) restart_at: StreamId,
    /// Bumped when the reader finds that what it read before is no longer the stream's
    /// history (entries trimmed before it read them, stream deleted or recreated): every
    /// subscriber reading the window then gets a gap.
    pub(crate) generation: u64,
    /// Whether a cursor must name an entry held (or the start) to be placed in the window.
    /// Redis ids of a stream deleted and recreated interleave with the old ones, so only an
    /// entry held proves that a cursor reads the same stream; PostgreSQL positions are never
    /// reused, so any position between the start and the end is placed.
    exact_cursors: bool,
}

/// A window entry's position is its stream id.
impl RingEntry for Entry {
    type Position = StreamId;

    fn event(&self) -> Option<&Event> {
        self.1.as_ref()
    }

    fn position(&self, _seq: u64) -> StreamId {
        self.0
    }
}

impl Window {
    /// An empty window for up to `capacity` events, starting after `start`, where a cursor
    /// must name an entry held (or the start).
    #[cfg(feature = "redis")]
    pub(crate) fn new(start: StreamId, capacity: usize) -> Self {
        Self::placing(start, capacity, true)
    }

    /// An empty window like [`new`](Window::new)'s where any position between the start and
    /// the end places a cursor.
    #[cfg(feature = "postgres")]
    pub(crate) fn placing_any_position(start: StreamId, capacity: usize) -> Self {
        Self::placing(start, capacity, false)
    }

    fn placing(start: StreamId, capacity: usize, exact_cursors: bool) -> Self {
        Window {
            state: Lock::new(WindowState {
                ring: Ring::new(),
                start,
                end: start,
                finished: None,
                restart_at: start,
                generation: 0,
                exact_cursors,
            }),
            wake: Arc::new(Notify::new()),
            capacity,
            appending: AtomicUsize::new(0),
            subscribers: SubscriberCount::default(),
        }
    }

    /// Counts an append until the returned guard is dropped (its answer came, or it failed).
    pub(crate) fn appending(&self) -> Appending<'_> {
        self.appending.fetch_add(1, Ordering::AcqRel);
        Appending(self)
    }

    /// Whether an append of this process is on its way (its entry may be in the stream
    /// already).
    pub(crate) fn expects_appends(&self) -> bool {
        self.appending.load(Ordering::Acquire) > 0
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, WindowState> {
        self.state.lock()
    }

    /// Adds the entries the reader read after the newest held, each encoded once, and the
    /// stream's end if the read reached it. Returns the newest id held (the end's, once it
    /// is read). A finished window takes nothing more.
    ///
    /// It does not wake the subscribers: the reader does, at once or a little later while
    /// more keeps coming (see the Redis reader's `hold`). A subscriber that looks meanwhile (it
    /// is busy, not waiting) takes them anyway.
    pub(crate) fn extend(&self, entries: Vec<Entry>, end: Option<StreamId>) -> StreamId {
        // One stamp for the batch: the delay is measured from when this process read it.
        let stamp = crate::measure::append_stamp();
        let mut state = self.lock();
        if state.finished.is_some() {
            return state.end;
        }
        for (id, mut event) in entries {
            if id <= state.end {
                continue;
            }
            // Encode now, once: every local subscriber shares these bytes.
            if let Some(event) = &mut event {
                event.stamp_appended(stamp);
                event.to_bytes();
            }
            state.end = id;
            if let Some((evicted, _)) = state.ring.push((id, event), self.capacity) {
                state.start = evicted;
            }
        }
        if let Some(end) = end.filter(|end| *end > state.end) {
            state.end = end;
            state.finished = Some(end);
        }
        state.end
    }

    /// The log is finished at `end`, its newest id (a window that starts there, or at a
    /// position after it: nothing lies between).
    pub(crate) fn finished_at(&self, end: StreamId) {
        let mut state = self.lock();
        if state.ring.len() == 0 && end <= state.end && state.finished.is_none() {
            state.start = end;
            state.end = end;
            state.finished = Some(end);
        }
    }

    /// The newest position read: a client that resumes from it receives what comes next.
    pub(crate) fn position(&self) -> EventId {
        self.lock().end.event_id()
    }

    /// The log's stats as this process sees them: its window, its subscribers, what it
    /// appended, recorded and reported.
    pub(crate) fn stats(&self, counters: &LogCounters, subscribers: usize) -> LogStats {
        let (held, end) = {
            let state = self.lock();
            (state.ring.len(), state.end)
        };
        counters.snapshot(subscribers, held, end.event_id())
    }

    /// Whether waking the window's subscribers costs enough that a reader holds the wake-up
    /// while entries keep coming (see the readers' holds): from [`HOLD_FROM`] subscribers on.
    pub(crate) fn busy(&self) -> bool {
        self.subscribers.get() >= HOLD_FROM
    }

    /// The window as if [`HOLD_FROM`] subscribers read it.
    #[cfg(test)]
    pub(crate) fn busy_for_test(self) -> Self {
        self.subscribers.add_for_test(HOLD_FROM);
        self
    }

    /// Wakes every subscriber waiting for the window to change.
    pub(crate) fn wake(&self) {
        self.wake.notify_waiters();
    }

    /// What the window held is not the stream's history any more: starts over after `at`.
    pub(crate) fn restart(&self, at: StreamId) {
        let mut state = self.lock();
        state.ring.clear();
        state.start = at;
        state.end = at;
        state.finished = None;
        state.restart_at = at;
        state.generation += 1;
        drop(state);
        self.wake.notify_waiters();
    }
}

impl WindowState {
    /// Where a subscriber at `cursor` goes on in the ring, if it can read on from the window
    /// alone: the sequence number after the cursor's own event, or the first one if the
    /// cursor is the window's start.
    pub(crate) fn seq_after(&self, cursor: StreamId) -> Option<u64> {
        if self.finished == Some(cursor) {
            // At the end itself: nothing more to read.
            return Some(self.ring.next_seq());
        }
        if cursor == self.start {
            return Some(self.ring.first_seq());
        }
        if cursor < self.start {
            return None;
        }
        if !self.exact_cursors {
            return (cursor <= self.end).then(|| self.ring.seq_past(|(id, _)| *id <= cursor));
        }
        self.ring.seq_after(|(id, _)| id.cmp(&cursor))
    }

    /// Whether a reader that goes on at `next_seq` has read the whole of a finished stream.
    pub(crate) fn read_to_end(&self, next_seq: u64) -> bool {
        self.finished.is_some() && next_seq >= self.ring.next_seq()
    }
}
