//! [`MemoryLog`]: the in-process event log, a bounded ring shared by all subscribers.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{EventLog, ResumeOutcome, SubscribeError, Subscription};
use crate::{CursorError, Delivery, Event, EventId, EventSource, LastEventId};

/// The default number of events a [`MemoryLog`] keeps.
pub const DEFAULT_HISTORY: usize = 1024;

/// How many events a subscriber takes from the ring under one lock.
const TAKE_PER_LOCK: usize = 64;

/// An in-memory event log: a bounded ring buffer of encoded events plus a wake-up for
/// waiting subscribers.
///
/// A subscriber is a cursor into the shared ring, not a queue of its own: history, live
/// fan-out and lag detection are one mechanism, and appending never waits for readers.
/// Ids are `<epoch>-<sequence>`, where the epoch is random per instance, so a cursor from
/// before a restart is recognised (and answered with a gap) instead of being misread.
///
/// Cloning is cheap; clones share the log.
///
/// ```
/// use std::time::Duration;
/// use tower_eventstream::MemoryLog;
///
/// let log = MemoryLog::builder()
///     .history(10_000)
///     .max_age(Duration::from_secs(300))
///     .build();
/// assert_eq!(log.len(), 0);
/// ```
#[derive(Clone)]
pub struct MemoryLog {
    shared: Arc<Shared>,
}

struct Shared {
    ring: Mutex<Ring>,
    wake: Arc<Notify>,
    epoch: String,
    capacity: usize,
    max_age: Option<Duration>,
    replay_on_fresh: usize,
    subscribers: AtomicUsize,
}

struct Ring {
    events: VecDeque<Stored>,
    /// Sequence number of `events[0]` (or of the next event, when empty).
    first_seq: u64,
    next_seq: u64,
}

struct Stored {
    event: Event,
    appended_at: Option<Instant>,
}

impl Ring {
    fn evict_expired(&mut self, max_age: Option<Duration>) {
        let Some(max_age) = max_age else { return };
        let now = Instant::now();
        while let Some(front) = self.events.front() {
            match front.appended_at {
                Some(at) if now.saturating_duration_since(at) > max_age => {
                    self.events.pop_front();
                    self.first_seq += 1;
                }
                _ => break,
            }
        }
    }
}

/// Builds a [`MemoryLog`] with other than the default settings.
#[derive(Debug, Clone)]
pub struct MemoryLogBuilder {
    capacity: usize,
    max_age: Option<Duration>,
    replay_on_fresh: usize,
}

impl MemoryLogBuilder {
    /// How many events the log keeps for resuming (default 1 024, at least 1).
    pub fn history(mut self, events: usize) -> Self {
        self.capacity = events.max(1);
        self
    }

    /// Drops events older than `age` as well (default: kept until the count limit).
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// A subscriber without a cursor first receives up to `events` of the newest held events
    /// (default 0: it starts at the live end).
    pub fn replay_on_fresh(mut self, events: usize) -> Self {
        self.replay_on_fresh = events;
        self
    }

    /// Creates the log with a new random epoch.
    pub fn build(self) -> MemoryLog {
        MemoryLog {
            shared: Arc::new(Shared {
                ring: Mutex::new(Ring {
                    events: VecDeque::with_capacity(self.capacity.min(4096)),
                    first_seq: 1,
                    next_seq: 1,
                }),
                wake: Arc::new(Notify::new()),
                epoch: format!("{:08x}", random_epoch()),
                capacity: self.capacity,
                max_age: self.max_age,
                replay_on_fresh: self.replay_on_fresh,
                subscribers: AtomicUsize::new(0),
            }),
        }
    }
}

/// 32 bits that differ between instances and restarts, without a dependency on a RNG.
fn random_epoch() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.write_u32(std::process::id());
    let wide = hasher.finish();
    (wide ^ (wide >> 32)) as u32
}

impl Default for MemoryLog {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryLog {
    /// A log with the default settings (1 024 events of history, no age limit).
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Starts configuring a log.
    pub fn builder() -> MemoryLogBuilder {
        MemoryLogBuilder {
            capacity: DEFAULT_HISTORY,
            max_age: None,
            replay_on_fresh: 0,
        }
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        // A panic while holding the lock cannot leave the ring half-updated in a way that
        // matters to readers (every update is a push or pop), so poisoning is ignored.
        self.shared
            .ring
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// This instance's epoch, the part of every id before the `-`.
    pub fn epoch(&self) -> &str {
        &self.shared.epoch
    }

    /// The number of events held.
    pub fn len(&self) -> usize {
        self.ring().events.len()
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of live subscriptions (each open SSE stream or pending poll holds one).
    pub fn subscriber_count(&self) -> usize {
        self.shared.subscribers.load(Ordering::Acquire)
    }

    /// The position after the newest event (also defined for an empty log): a client that
    /// resumes from it receives exactly what is appended afterwards.
    pub fn position(&self) -> EventId {
        let next = self.ring().next_seq;
        self.id_for(next - 1)
    }

    fn id_for(&self, seq: u64) -> EventId {
        EventId::new(format!("{}-{}", self.shared.epoch, seq)).expect("epoch and digits are valid id text")
    }

    /// Appends without waiting (the [`EventLog::append`] future is ready at once).
    pub fn push(&self, event: Event) -> Event {
        let stored = {
            let mut ring = self.ring();
            ring.evict_expired(self.shared.max_age);
            let seq = ring.next_seq;
            ring.next_seq += 1;
            let event = event.with_event_id(self.id_for(seq));
            // Encode now, once: every subscriber shares these bytes.
            event.to_bytes();
            ring.events.push_back(Stored {
                event: event.clone(),
                appended_at: self.shared.max_age.map(|_| Instant::now()),
            });
            if ring.events.len() > self.shared.capacity {
                ring.events.pop_front();
                ring.first_seq += 1;
            }
            event
        };
        self.shared.wake.notify_waiters();
        stored
    }

    /// Reads a cursor: `Ok(None)` when it is from another instance of the log.
    fn parse_cursor(&self, cursor: &LastEventId) -> Result<Option<u64>, CursorError> {
        let (epoch, seq) = cursor.as_str().split_once('-').ok_or(CursorError::Unknown {
            reason: "expected <epoch>-<sequence>",
        })?;
        let well_formed_epoch =
            epoch.len() == 8 && epoch.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !well_formed_epoch {
            return Err(CursorError::Unknown {
                reason: "the epoch is not 8 lowercase hex digits",
            });
        }
        // Leading zeros are a spelling this log never issues.
        let canonical = seq.len() == 1 || !seq.starts_with('0');
        if seq.is_empty() || seq.len() > 20 || !canonical || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CursorError::Unknown {
                reason: "the sequence is not a decimal number",
            });
        }
        let seq: u64 = seq.parse().map_err(|_| CursorError::Unknown {
            reason: "the sequence is out of range",
        })?;
        Ok((epoch == self.shared.epoch).then_some(seq))
    }

    /// Subscribes without waiting (the [`EventLog::subscribe`] future is ready at once).
    pub fn subscribe_now(&self, cursor: Option<&LastEventId>) -> Result<MemorySubscription, CursorError> {
        let parsed = cursor.map(|cursor| self.parse_cursor(cursor)).transpose()?;
        let mut ring = self.ring();
        ring.evict_expired(self.shared.max_age);
        let (outcome, next_seq) = match parsed {
            None => {
                let replay = self.shared.replay_on_fresh.min(ring.events.len()) as u64;
                (ResumeOutcome::Fresh, ring.next_seq - replay)
            }
            Some(None) => (ResumeOutcome::Gap, ring.first_seq),
            Some(Some(seen)) if seen >= ring.next_seq => {
                return Err(CursorError::Unknown {
                    reason: "the sequence is ahead of this log",
                });
            }
            Some(Some(seen)) if seen + 1 < ring.first_seq => (ResumeOutcome::Gap, ring.first_seq),
            Some(Some(seen)) => (ResumeOutcome::Resumed, seen + 1),
        };
        drop(ring);
        self.shared.subscribers.fetch_add(1, Ordering::AcqRel);
        Ok(MemorySubscription {
            notified: Box::pin(Arc::clone(&self.shared.wake).notified_owned()),
            log: self.clone(),
            next_seq,
            delivered_seq: next_seq - 1,
            pending_gap: outcome == ResumeOutcome::Gap,
            taken: VecDeque::new(),
            // The first poll arms a fresh future and then looks at the ring.
            armed: false,
            outcome,
        })
    }
}

impl fmt::Debug for MemoryLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryLog")
            .field("epoch", &self.shared.epoch)
            .field("history", &self.shared.capacity)
            .field("max_age", &self.shared.max_age)
            .finish_non_exhaustive()
    }
}

impl EventLog for MemoryLog {
    type Error = Infallible;
    type Subscription = MemorySubscription;

    fn append(&self, event: Event) -> impl Future<Output = Result<Event, Infallible>> + Send {
        std::future::ready(Ok(self.push(event)))
    }

    fn subscribe(
        &self,
        cursor: Option<&LastEventId>,
    ) -> impl Future<Output = Result<MemorySubscription, SubscribeError<Infallible>>> + Send {
        std::future::ready(self.subscribe_now(cursor).map_err(SubscribeError::InvalidCursor))
    }
}

/// A reader of a [`MemoryLog`]; dropping it releases it at once.
pub struct MemorySubscription {
    log: MemoryLog,
    /// Sequence of the next event to take from the ring.
    next_seq: u64,
    /// Sequence of the last event handed out (the position a client has reached).
    delivered_seq: u64,
    pending_gap: bool,
    /// Events taken from the ring but not yet handed out.
    taken: VecDeque<(u64, Event)>,
    /// Created before each look at the ring, so an append after the look wakes us.
    notified: Pin<Box<OwnedNotified>>,
    armed: bool,
    outcome: ResumeOutcome,
}

impl MemorySubscription {
    /// Takes what the ring holds after `next_seq`, up to one batch; true when the batch was
    /// full (more may be ready, so the caller looks again instead of waiting).
    fn take_from_ring(&mut self) -> bool {
        let mut ring = self.log.ring();
        ring.evict_expired(self.log.shared.max_age);
        if self.next_seq < ring.first_seq {
            // Fell behind the history while connected: report it, then go on from the oldest.
            // (`taken` is empty here: the ring is only read once it has been handed out.)
            self.pending_gap = true;
            self.next_seq = ring.first_seq;
        }
        let start = (self.next_seq - ring.first_seq) as usize;
        let end = ring.events.len().min(start + TAKE_PER_LOCK);
        for (offset, stored) in ring.events.range(start..end).enumerate() {
            self.taken
                .push_back((self.next_seq + offset as u64, stored.event.clone()));
        }
        self.next_seq += (end - start) as u64;
        end - start == TAKE_PER_LOCK
    }
}

impl MemorySubscription {
    /// Pending while the armed wake-up has not fired; then arms a new one. Callers look at
    /// the ring only after this, so an append the look misses still wakes them.
    fn poll_rearm(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.armed {
            ready!(self.notified.as_mut().poll(cx));
            self.armed = false;
        }
        self.notified
            .set(Arc::clone(&self.log.shared.wake).notified_owned());
        self.armed = true;
        Poll::Ready(())
    }
}

impl EventSource for MemorySubscription {
    type Error = Infallible;

    fn poll_delivery(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Delivery, Infallible>>> {
        let this = self.get_mut();
        loop {
            if this.pending_gap {
                this.pending_gap = false;
                // The position just before the oldest event that follows the gap.
                this.delivered_seq = this.taken.front().map_or(this.next_seq, |(seq, _)| *seq) - 1;
                return Poll::Ready(Some(Ok(Delivery::Gap(Some(this.log.id_for(this.delivered_seq))))));
            }
            if let Some((seq, event)) = this.taken.pop_front() {
                this.delivered_seq = seq;
                return Poll::Ready(Some(Ok(Delivery::Event(event))));
            }
            ready!(this.poll_rearm(cx));
            if this.take_from_ring() {
                // More than one batch was ready: look again once this one is handed out,
                // rather than wait for the next append.
                this.armed = false;
            }
        }
    }

    fn poll_encoded(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut bytes::BytesMut,
        max_bytes: usize,
    ) -> Poll<Option<Result<usize, Infallible>>> {
        let this = self.get_mut();
        loop {
            if this.pending_gap || !this.taken.is_empty() {
                return Poll::Ready(Some(Ok(0)));
            }
            ready!(this.poll_rearm(cx));
            let mut ring = this.log.ring();
            ring.evict_expired(this.log.shared.max_age);
            if this.next_seq < ring.first_seq {
                // Fell behind: `poll_delivery` reports the gap; the held events are still to be
                // looked at, so the next look must not wait for another append.
                this.pending_gap = true;
                this.next_seq = ring.first_seq;
                this.armed = false;
                continue;
            }
            // Copy straight from the ring under one lock: no per-event clone, no refcount
            // traffic on the bytes every subscriber shares.
            let start = out.len();
            let mut copied = 0u64;
            for stored in ring.events.range((this.next_seq - ring.first_seq) as usize..) {
                if out.len() - start >= max_bytes {
                    break;
                }
                out.extend_from_slice(stored.event.encoded());
                copied += 1;
            }
            let more_ready = this.next_seq + copied < ring.next_seq;
            drop(ring);
            if copied > 0 {
                this.next_seq += copied;
                this.delivered_seq = this.next_seq - 1;
                if more_ready {
                    // The frame filled up: look again next time instead of waiting.
                    this.armed = false;
                }
                return Poll::Ready(Some(Ok(out.len() - start)));
            }
        }
    }

    fn position(&self) -> Option<EventId> {
        // While a gap is still to be reported, no position is safe to hand out: a client
        // that resumed from it would never hear of the gap.
        (!self.pending_gap).then(|| self.log.id_for(self.delivered_seq))
    }
}

impl Subscription for MemorySubscription {
    fn outcome(&self) -> ResumeOutcome {
        self.outcome
    }
}

impl Drop for MemorySubscription {
    fn drop(&mut self) {
        self.log.shared.subscribers.fetch_sub(1, Ordering::AcqRel);
    }
}

impl fmt::Debug for MemorySubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySubscription")
            .field("epoch", &self.log.shared.epoch)
            .field("delivered_seq", &self.delivered_seq)
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    fn ready(sub: &mut MemorySubscription) -> Vec<Delivery> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut out = Vec::new();
        while let Poll::Ready(Some(Ok(d))) = Pin::new(&mut *sub).poll_delivery(&mut cx) {
            out.push(d);
        }
        out
    }

    fn data(deliveries: &[Delivery]) -> Vec<String> {
        deliveries
            .iter()
            .map(|d| match d {
                Delivery::Event(e) => e.data().to_owned(),
                Delivery::Gap(_) => "<gap>".to_owned(),
                Delivery::Checkpoint(_) => "<checkpoint>".to_owned(),
            })
            .collect()
    }

    fn cursor(id: &EventId) -> LastEventId {
        LastEventId::parse(id.as_str()).unwrap()
    }

    #[test]
    fn resumes_exactly_after_the_cursor() {
        let log = MemoryLog::new();
        let a = log.push(Event::new("a"));
        log.push(Event::new("b"));
        let mut sub = log.subscribe_now(Some(&cursor(a.id().unwrap()))).unwrap();
        assert_eq!(sub.outcome(), ResumeOutcome::Resumed);
        assert_eq!(data(&ready(&mut sub)), ["b"]);
        log.push(Event::new("c"));
        assert_eq!(data(&ready(&mut sub)), ["c"]);
        assert_eq!(sub.position().unwrap(), log.position());
    }

    #[test]
    fn trimmed_history_and_foreign_epochs_are_gaps() {
        let log = MemoryLog::builder().history(2).build();
        let a = log.push(Event::new("a"));
        log.push(Event::new("b"));
        log.push(Event::new("c"));
        let mut sub = log.subscribe_now(Some(&cursor(a.id().unwrap()))).unwrap();
        assert_eq!(sub.outcome(), ResumeOutcome::Resumed, "b is still held");
        assert_eq!(data(&ready(&mut sub)), ["b", "c"]);

        log.push(Event::new("d"));
        let mut sub = log.subscribe_now(Some(&cursor(a.id().unwrap()))).unwrap();
        assert_eq!(sub.outcome(), ResumeOutcome::Gap);
        assert_eq!(data(&ready(&mut sub)), ["<gap>", "c", "d"]);

        let other = MemoryLog::new();
        let mut sub = log.subscribe_now(Some(&cursor(&other.position()))).unwrap();
        assert_eq!(sub.outcome(), ResumeOutcome::Gap);
        assert_eq!(data(&ready(&mut sub)), ["<gap>", "c", "d"]);
    }

    #[test]
    fn a_lagging_subscriber_gets_a_gap_not_silence() {
        let log = MemoryLog::builder().history(3).build();
        let mut sub = log.subscribe_now(None).unwrap();
        for n in 0..10 {
            log.push(Event::new(n.to_string()));
        }
        assert_eq!(data(&ready(&mut sub)), ["<gap>", "7", "8", "9"]);
    }

    #[test]
    fn refuses_cursors_it_could_not_have_issued() {
        let log = MemoryLog::new();
        for bad in [
            "nodash",
            &format!("{}-00", log.epoch()),
            "zzzzzzzz-1",
            "abc-1",
            &format!("{}-", log.epoch()),
            &format!("{}-1", log.epoch()),
        ] {
            let err = log
                .subscribe_now(Some(&LastEventId::parse(bad).unwrap()))
                .unwrap_err();
            assert!(matches!(err, CursorError::Unknown { .. }), "{bad}: {err}");
        }
        assert!(log.subscribe_now(Some(&cursor(&log.position()))).is_ok());
    }

    #[test]
    fn counts_subscribers_until_dropped() {
        let log = MemoryLog::new();
        let a = log.subscribe_now(None).unwrap();
        let b = log.subscribe_now(None).unwrap();
        assert_eq!(log.subscriber_count(), 2);
        drop((a, b));
        assert_eq!(log.subscriber_count(), 0);
    }

    #[test]
    fn hands_out_more_than_one_batch_without_a_new_append() {
        let log = MemoryLog::new();
        let mut sub = log.subscribe_now(None).unwrap();
        for n in 0..(3 * TAKE_PER_LOCK + 5) {
            log.push(Event::new(n.to_string()));
        }
        let expected: Vec<String> = (0..(3 * TAKE_PER_LOCK + 5)).map(|n| n.to_string()).collect();
        assert_eq!(data(&ready(&mut sub)), expected);
    }

    #[test]
    fn the_encoded_path_reports_a_lag_gap_then_the_held_events() {
        let log = MemoryLog::builder().history(3).build();
        let mut sub = log.subscribe_now(None).unwrap();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut out = bytes::BytesMut::new();
        assert!(Pin::new(&mut sub)
            .poll_encoded(&mut cx, &mut out, 1 << 16)
            .is_pending());
        for n in 0..10 {
            log.push(Event::new(n.to_string()));
        }
        let answer = Pin::new(&mut sub).poll_encoded(&mut cx, &mut out, 1 << 16);
        assert!(
            matches!(answer, Poll::Ready(Some(Ok(0)))),
            "a gap goes through poll_delivery"
        );
        // The held events follow the gap at once, without waiting for another append.
        assert_eq!(data(&ready(&mut sub)), ["<gap>", "7", "8", "9"]);
        log.push(Event::new("10"));
        let answer = Pin::new(&mut sub).poll_encoded(&mut cx, &mut out, 1 << 16);
        assert!(matches!(answer, Poll::Ready(Some(Ok(n))) if n > 0));
        assert!(out.ends_with(b"data: 10\n\n"));
        assert_eq!(sub.position().unwrap(), log.position());
    }

    #[tokio::test]
    async fn wakes_a_waiting_subscriber() {
        let log = MemoryLog::new();
        let mut sub = log.subscribe_now(None).unwrap();
        let publisher = log.clone();
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            publisher.push(Event::new("late"));
        });
        let got = poll_fn(|cx| Pin::new(&mut sub).poll_delivery(cx))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(data(&[got]), ["late"]);
    }
}
