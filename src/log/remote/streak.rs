//! Holding a busy window's wake-up while more entries keep coming, for a reader that takes
//! entries in batches (the policy of the Redis reader's hold).
//!
//! Waking a window wakes every subscriber waiting on it; with thousands of them one wake-up
//! costs more than the entries it announces, and the tasks it queues delay everything else
//! on the runtime, among them the answers of the appends that are still coming. So a window
//! with many subscribers whose entries keep coming (a *streak*: fed again within
//! [`STREAK_QUIET`] of the last time, or with an append of this process on its way) has its
//! wake-up held, and woken
//!
//! - once nothing came for it for [`STREAK_QUIET`] and no append of this process is on its
//!   way,
//! - once it holds half its capacity unwoken (so that no waiting subscriber falls behind),
//! - once [`WAKE_HOLD`] has passed since the first wake-up held,
//! - or when the reader fails.
//!
//! A window's first entries after a quiet spell wake at once, and so does a window with few
//! subscribers (waking them costs little): a lone event waits for nothing. The entries are
//! in the window all along; a subscriber still busy takes them without a wake-up.

use std::collections::HashMap;
use std::sync::Arc;
use tokio::time::Instant;

use super::Window;

use super::{STREAK_QUIET, WAKE_HOLD};

/// The windows in a streak, and what is held of them.
#[derive(Default)]
pub(crate) struct Streaks {
    windows: HashMap<usize, Streak>,
    /// When the first wake-up now held was held.
    since: Option<Instant>,
}

struct Streak {
    window: Arc<Window>,
    last_fed: Instant,
    /// Entries fed since its subscribers were last woken.
    held: usize,
}

impl Streaks {
    /// The reader put `got` entries (at least one) into `window`: wakes its subscribers now,
    /// or holds the wake-up while more keeps coming.
    pub(crate) fn fed(&mut self, window: Arc<Window>, got: usize, now: Instant) {
        let key = Arc::as_ptr(&window) as usize;
        let busy = window.busy();
        match self.windows.get_mut(&key) {
            Some(streak) if busy && (now <= streak.last_fed + STREAK_QUIET || window.expects_appends()) => {
                streak.last_fed = now;
                let held = streak.held + got;
                if held < window.capacity / 2 {
                    self.since.get_or_insert(now);
                    streak.held = held;
                } else {
                    streak.held = 0;
                    window.wake();
                }
            }
            _ => {
                window.wake();
                self.windows.insert(
                    key,
                    Streak {
                        window,
                        last_fed: now,
                        held: 0,
                    },
                );
            }
        }
    }

    /// When to look again at what is held (`None`: nothing is).
    pub(crate) fn due(&self) -> Option<Instant> {
        let since = self.since?;
        let quiet = self
            .windows
            .values()
            .filter(|streak| streak.held > 0)
            .map(|streak| streak.last_fed + STREAK_QUIET)
            .min();
        Some(quiet.map_or(since + WAKE_HOLD, |quiet| quiet.min(since + WAKE_HOLD)))
    }

    /// Wakes what is due at `now` (see the module's rules), and forgets the streaks that
    /// ended: their next entries wake at once.
    pub(crate) fn wake_due(&mut self, now: Instant) {
        let overdue = self.since.is_some_and(|since| now >= since + WAKE_HOLD);
        let mut holding = false;
        self.windows.retain(|_, streak| {
            let quiet = now > streak.last_fed + STREAK_QUIET && !streak.window.expects_appends();
            if streak.held > 0 {
                if quiet || overdue {
                    streak.held = 0;
                    streak.window.wake();
                } else {
                    holding = true;
                }
            }
            !quiet
        });
        if !holding {
            self.since = None;
        } else if overdue {
            self.since = Some(now);
        }
    }

    /// Wakes everything held and ends every streak (the reader failed: after its pause,
    /// each window's first entries wake at once).
    pub(crate) fn wake_all(&mut self) {
        for (_, streak) in self.windows.drain() {
            if streak.held > 0 {
                streak.window.wake();
            }
        }
        self.since = None;
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::{pin, Pin};
    use std::task::{Context, Waker};
    use std::time::Duration;

    use tokio::sync::futures::Notified;

    use super::*;
    use crate::log::remote::StreamId;

    fn fired(notified: Pin<&mut Notified<'_>>) -> bool {
        notified.poll(&mut Context::from_waker(Waker::noop())).is_ready()
    }

    fn busy_window(capacity: usize) -> Arc<Window> {
        Arc::new(Window::placing_any_position(StreamId::ZERO, capacity).busy_for_test())
    }

    #[test]
    fn a_busy_window_wakes_at_once_then_holds_while_entries_keep_coming() {
        let window = busy_window(1024);
        let mut streaks = Streaks::default();
        let start = Instant::now();
        let mut notified = pin!(window.wake.notified());
        streaks.fed(Arc::clone(&window), 1, start);
        assert!(fired(notified.as_mut()), "the first entries wake at once");

        let mut notified = pin!(window.wake.notified());
        streaks.fed(Arc::clone(&window), 1, start + Duration::from_millis(1));
        streaks.fed(Arc::clone(&window), 1, start + Duration::from_millis(2));
        assert!(!fired(notified.as_mut()), "held while more keeps coming");
        assert_eq!(streaks.due(), Some(start + Duration::from_millis(4)));
        streaks.wake_due(start + Duration::from_millis(3));
        assert!(!fired(notified.as_mut()), "not quiet yet");
        streaks.wake_due(start + Duration::from_millis(5));
        assert!(fired(notified.as_mut()), "quiet: woken");
        assert_eq!(streaks.due(), None);
    }

    #[test]
    fn a_hold_ends_after_the_longest_hold_and_at_half_the_window() {
        let window = busy_window(8);
        let mut streaks = Streaks::default();
        let start = Instant::now();
        streaks.fed(Arc::clone(&window), 1, start);
        let mut notified = pin!(window.wake.notified());
        streaks.fed(Arc::clone(&window), 3, start + Duration::from_millis(1));
        assert!(!fired(notified.as_mut()));
        streaks.fed(Arc::clone(&window), 1, start + Duration::from_millis(2));
        assert!(fired(notified.as_mut()), "4 of 8 unwoken: woken");

        let window = busy_window(1024);
        let mut streaks = Streaks::default();
        streaks.fed(Arc::clone(&window), 1, start);
        let mut notified = pin!(window.wake.notified());
        let mut now = start;
        while now < start + WAKE_HOLD {
            now += Duration::from_millis(1);
            streaks.fed(Arc::clone(&window), 1, now);
            if now < start + WAKE_HOLD {
                streaks.wake_due(now);
            }
        }
        assert!(!fired(notified.as_mut()));
        streaks.wake_due(start + Duration::from_millis(1) + WAKE_HOLD);
        assert!(
            fired(notified.as_mut()),
            "a steady stream is woken at least every WAKE_HOLD"
        );
    }

    #[test]
    fn a_window_with_few_subscribers_is_never_held() {
        let window = Arc::new(Window::placing_any_position(StreamId::ZERO, 1024));
        let mut streaks = Streaks::default();
        let start = Instant::now();
        for n in 0..5 {
            let mut notified = pin!(window.wake.notified());
            streaks.fed(Arc::clone(&window), 1, start + Duration::from_micros(n * 100));
            assert!(fired(notified.as_mut()), "woken each time");
        }
        assert_eq!(streaks.due(), None);
    }
}
