//! The wake-up a subscriber of a ring arms before each look at it, shared by
//! [`MemoryLog`](super::memory::MemoryLog) and `RedisLog`'s local window.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

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
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // only the Redis window uses it
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
