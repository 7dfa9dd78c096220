//! The wake-up of a ring's readers: [`Wakeup`], which an appender fires, and the
//! [`WakeSlot`] each reader arms before each look, shared by
//! [`MemoryLog`](super::memory::MemoryLog) and `RedisLog`'s local window.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

/// From this many readers on, an append hands the waking to another thread.
const HAND_OFF_FROM: usize = 64;

/// What an appender fires so that every waiting reader looks at the ring again.
///
/// Waking 10 000 readers takes about a millisecond, and on a runtime worker it puts them in
/// that worker's own run queue. Done in the appender, both land on the appender's request:
/// its answer waits for the wake-ups, and anything it still has to do after a yield (hyper
/// reads a `POST`'s body that way) waits behind hundreds of woken readers. The next event
/// then arrives later, fewer events gather per wake-up, and every reader writes more often
/// for the same events. With many readers the waking is therefore handed to the runtime's
/// blocking pool: the woken readers go to the shared queue, the appender goes on at once,
/// and appends made before the hand-off starts share its one round of wake-ups.
pub(super) struct Wakeup {
    notify: Arc<Notify>,
    /// A hand-off is under way and has not started waking yet.
    handed_off: Arc<AtomicBool>,
}

impl Wakeup {
    pub(super) fn new() -> Self {
        Wakeup {
            notify: Arc::new(Notify::new()),
            handed_off: Arc::new(AtomicBool::new(false)),
        }
    }

    /// What a reader's [`WakeSlot`] waits on.
    pub(super) fn notify(&self) -> Arc<Notify> {
        Arc::clone(&self.notify)
    }

    /// Wakes every reader waiting, after a change to the ring made before this call;
    /// `readers` (how many there are) decides whether the waking is handed off.
    pub(super) fn wake_readers(&self, readers: usize) {
        if readers >= HAND_OFF_FROM {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                // AcqRel: the hand-off that swaps the flag back sees this append's change.
                if !self.handed_off.swap(true, Ordering::AcqRel) {
                    let round = WakeRound {
                        notify: Arc::clone(&self.notify),
                        handed_off: Arc::clone(&self.handed_off),
                    };
                    // Dropped unrun (the runtime is shutting down), it still wakes.
                    drop(runtime.spawn_blocking(move || drop(round)));
                }
                return;
            }
        }
        self.notify.notify_waiters();
    }
}

/// One handed-off round of wake-ups: it wakes when dropped, run or not.
struct WakeRound {
    notify: Arc<Notify>,
    handed_off: Arc<AtomicBool>,
}

impl Drop for WakeRound {
    fn drop(&mut self) {
        // Acquire the changes of every append that found this round pending, and let appends
        // from now on start a round of their own.
        self.handed_off.swap(false, Ordering::AcqRel);
        self.notify.notify_waiters();
    }
}

/// The wake-up a reader arms before each look at the ring: a change the look misses still
/// wakes it.
pub(super) struct WakeSlot {
    notify: Arc<Notify>,
    notified: Pin<Box<OwnedNotified>>,
    armed: bool,
}

impl WakeSlot {
    /// A slot on `notify`; the first [`poll_rearm`](WakeSlot::poll_rearm) arms a fresh
    /// wake-up and looks at once.
    pub(super) fn new(notify: Arc<Notify>) -> Self {
        WakeSlot {
            notified: Box::pin(Arc::clone(&notify).notified_owned()),
            notify,
            armed: false,
        }
    }

    /// Pending while the armed wake-up has not fired; then arms a new one. Callers look at
    /// the ring only after this, so a change the look misses still wakes them.
    pub(super) fn poll_rearm(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.armed {
            ready!(self.notified.as_mut().poll(cx));
            self.armed = false;
        }
        self.arm();
        Poll::Ready(())
    }

    /// Arms a fresh wake-up before a look: a change after the look wakes the reader.
    pub(super) fn arm(&mut self) {
        self.notified.set(Arc::clone(&self.notify).notified_owned());
        self.armed = true;
    }

    /// Ready once the armed wake-up has fired; the next [`poll_rearm`](WakeSlot::poll_rearm)
    /// then looks at once.
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))] // remote windows only
    pub(super) fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        ready!(self.notified.as_mut().poll(cx));
        self.armed = false;
        Poll::Ready(())
    }

    /// The next [`poll_rearm`](WakeSlot::poll_rearm) looks at once instead of waiting for a
    /// change (more is ready than one look took, or the reader moved).
    pub(super) fn look_again(&mut self) {
        self.armed = false;
    }
}
