//! Holding a window's wake-up while more entries keep coming for it.
//!
//! Waking a window wakes every subscriber waiting on it: with ten thousand of them, one
//! wake-up costs far more than the entries it announces. When appends come one after
//! another, the reader takes one entry per notice; waking everyone each time queues ten
//! thousand tasks per entry, ahead of the reader and of the connections the appends go
//! through, and the wake-ups set the pace.
//!
//! So a key's first entries after a quiet spell wake its subscribers at once (a lone event
//! waits for nothing), and while more keeps coming (a *streak*) the reader holds the
//! wake-up of a window with many subscribers (64 or more; waking a few costs little, and
//! they should not wait). A streak goes on while notices or reads keep finding entries for the key, or
//! while an append of this process to the key is on its way; the reader wakes a held key
//!
//! - once nothing came for it for [`STREAK_QUIET`] (or in the last batch of notices) and no
//!   append of this process to it is on its way (or the window started over),
//! - once it holds half its window unwoken (so that no waiting subscriber falls behind it),
//! - once [`WAKE_HOLD`] has passed since the first wake-up held, even in the middle of a
//!   read or a wait that takes longer,
//! - or when a read fails.
//!
//! Appends on their way matter because of what a wake-up does: it queues ten thousand tasks,
//! and the connections the appends go through wait their turn behind them. An append then
//! takes as long as the whole wake-up, and a moment without notices comes only because the
//! appends have not got through yet; ending the hold then would wake everyone for an entry
//! or two, again and again.
//!
//! The entries are in the window all along, in order: a subscriber that looks meanwhile
//! (still busy with the last wake-up) takes them; only a waiting one waits for the wake-up.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use tokio::time::Instant;

use super::followed::Followed;
use super::reader::Reader;
use crate::log::remote::Window;
#[cfg(doc)]
use crate::log::remote::STREAK_QUIET;
use crate::log::remote::WAKE_HOLD;

/// The keys whose waiting subscribers were not woken for all the window holds.
#[derive(Default)]
pub(super) struct Holds {
    keys: Vec<Arc<str>>,
    /// The keys in a streak.
    pub(super) streaking: Vec<Arc<str>>,
    /// When the first of these wake-ups was held.
    since: Option<Instant>,
}

impl Holds {
    fn hold(&mut self, key: &Arc<str>) {
        self.since.get_or_insert_with(Instant::now);
        self.keys.push(Arc::clone(key));
    }
}

/// The held windows, and when to wake them if a read or poll is still going on then.
pub(super) struct Held {
    until: Instant,
    windows: Vec<Arc<Window>>,
}

impl Followed {
    /// The reader added `got` entries to `window` (none: a read found nothing more): wakes its
    /// subscribers now, or holds the wake-up while more keeps coming.
    pub(super) fn added(&mut self, window: &Window, got: usize, key: &Arc<str>, holds: &mut Holds) {
        if got == 0 {
            self.quiet();
            return;
        }
        let reading_on = std::mem::replace(&mut self.streak, true);
        if !reading_on {
            holds.streaking.push(Arc::clone(key));
        }
        let held = self.held + got;
        if reading_on && window.busy() && held < window.capacity / 2 {
            if self.held == 0 {
                holds.hold(key);
            }
            self.held = held;
            return;
        }
        window.wake();
        self.held = 0;
    }

    /// Whether an append of this process to the key is on its way: its entry is coming.
    fn expects_appends(&self) -> bool {
        self.window
            .upgrade()
            .is_some_and(|window| window.expects_appends())
    }

    /// Nothing more came for this key (or reading it failed): wakes what it holds, and its
    /// next entries wake at once.
    pub(super) fn quiet(&mut self) {
        self.streak = false;
        if std::mem::take(&mut self.held) > 0 {
            if let Some(window) = self.window.upgrade() {
                window.wake();
            }
        }
    }
}

impl Reader {
    /// What to wake if the next read or poll outlasts the hold; `None` when nothing is held.
    pub(super) fn held(&self) -> Option<Held> {
        let since = self.holds.since?;
        let windows = self
            .holds
            .keys
            .iter()
            .filter_map(|key| self.keys.get(key))
            .filter(|followed| followed.held > 0)
            .filter_map(|followed| followed.window.upgrade())
            .collect();
        Some(Held {
            until: since + WAKE_HOLD,
            windows,
        })
    }

    /// Wakes every held key if the hold has run out.
    pub(super) fn wake_held_if_due(&mut self) {
        if self
            .holds
            .since
            .is_some_and(|since| since + WAKE_HOLD <= Instant::now())
        {
            self.wake_held();
        }
    }

    /// Wakes every held key; those still reading on hold their next entries again.
    fn wake_held(&mut self) {
        for key in std::mem::take(&mut self.holds.keys) {
            if let Some(followed) = self.keys.get_mut(&key) {
                if std::mem::take(&mut followed.held) > 0 {
                    if let Some(window) = followed.window.upgrade() {
                        window.wake();
                    }
                }
            }
        }
        self.holds.since = None;
    }

    /// [`within_hold`] woke the held keys during a read or poll: nothing is held any more.
    pub(super) fn held_woken(&mut self) {
        for key in std::mem::take(&mut self.holds.keys) {
            if let Some(followed) = self.keys.get_mut(&key) {
                followed.held = 0;
            }
        }
        self.holds.since = None;
    }

    /// Every key is quiet: wakes what is held (a read failed; after the pause, each key's
    /// first entries wake at once).
    pub(super) fn quiet_all(&mut self) {
        for key in std::mem::take(&mut self.holds.streaking) {
            if let Some(followed) = self.keys.get_mut(&key) {
                followed.quiet();
            }
        }
        self.holds.keys.clear();
        self.holds.since = None;
    }

    /// After a batch of notices, or a wait that heard none: the keys in a streak that nothing
    /// came for since the last look, with no append of this process on its way, are quiet.
    pub(super) fn quiet_unnoticed(&mut self) {
        for key in std::mem::take(&mut self.holds.streaking) {
            let Some(followed) = self.keys.get_mut(&key) else {
                continue;
            };
            if !followed.streak {
                continue;
            }
            let noticed = std::mem::take(&mut followed.noticed);
            if noticed || followed.expects_appends() {
                self.holds.streaking.push(key);
            } else {
                followed.quiet();
            }
        }
        self.holds
            .keys
            .retain(|key| self.keys.get(key).is_some_and(|followed| followed.held > 0));
        if self.holds.keys.is_empty() {
            self.holds.since = None;
        }
    }
}

/// Runs `work` (a read or a poll); if it is still going on when the hold runs out, wakes the
/// held windows then. Returns its output and whether it woke them (the caller then calls
/// [`Reader::held_woken`]).
pub(super) async fn within_hold<T>(held: Option<Held>, work: impl Future<Output = T>) -> (T, bool) {
    let Some(held) = held else {
        return (work.await, false);
    };
    let mut work = pin!(work);
    let mut until = pin!(tokio::time::sleep_until(held.until));
    let mut woke = false;
    let output = poll_fn(|cx| {
        if let Poll::Ready(output) = work.as_mut().poll(cx) {
            return Poll::Ready(output);
        }
        if !woke && until.as_mut().poll(cx).is_ready() {
            woke = true;
            for window in &held.windows {
                window.wake();
            }
        }
        Poll::Pending
    })
    .await;
    (output, woke)
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::Context;
    use std::time::Duration;

    use tokio::sync::futures::Notified;

    use super::*;
    use crate::log::remote::StreamId;
    use crate::Event;

    /// Whether `notified` fired (it was made before the wake-up it is to see).
    fn fired(notified: Pin<&mut Notified<'_>>) -> bool {
        notified
            .poll(&mut Context::from_waker(std::task::Waker::noop()))
            .is_ready()
    }

    fn entries(from: u64, count: u64) -> Vec<(StreamId, Option<Event>)> {
        (from..from + count)
            .map(|ms| (StreamId { major: ms, seq: 0 }, Some(Event::new(format!("{ms}")))))
            .collect()
    }

    /// Reads `count` entries into the window as the reader does; whether that woke it.
    fn read(followed: &mut Followed, window: &Window, count: u64, holds: &mut Holds) -> bool {
        let key: Arc<str> = Arc::from("k");
        let notified = pin!(window.wake.notified());
        let from = followed.last.major + 1;
        followed.last = window.extend(entries(from, count), None);
        followed.added(window, count as usize, &key, holds);
        fired(notified)
    }

    #[test]
    fn first_entries_wake_at_once_and_what_follows_waits_until_nothing_more_comes() {
        let window = Arc::new(Window::new(StreamId::ZERO, 1024).busy_for_test());
        let mut followed = Followed::new(Arc::downgrade(&window), StreamId::ZERO, None);
        let mut holds = Holds::default();
        assert!(
            read(&mut followed, &window, 1, &mut holds),
            "a lone entry wakes at once"
        );
        assert!(!read(&mut followed, &window, 2, &mut holds));
        assert!(!read(&mut followed, &window, 3, &mut holds));
        assert_eq!((followed.held, holds.keys.len()), (5, 1), "listed once");
        assert!(holds.since.is_some());
        // Held, not hidden: every entry is in the window, in order.
        let state = window.lock();
        let ids: Vec<u64> = state
            .ring
            .iter_from(state.ring.first_seq())
            .map(|(id, _)| id.major)
            .collect();
        assert_eq!(ids, (1..=6).collect::<Vec<_>>());
        drop(state);

        let mut notified = pin!(window.wake.notified());
        followed.quiet();
        assert!(
            fired(notified.as_mut()),
            "nothing more came: what was held is woken"
        );
        assert_eq!((followed.held, followed.streak), (0, false));
        assert!(
            read(&mut followed, &window, 1, &mut holds),
            "after a quiet spell, at once again"
        );
    }

    #[test]
    fn a_window_with_few_subscribers_is_woken_for_every_read() {
        let window = Arc::new(Window::new(StreamId::ZERO, 1024));
        let mut followed = Followed::new(Arc::downgrade(&window), StreamId::ZERO, None);
        let mut holds = Holds::default();
        for _ in 0..4 {
            assert!(read(&mut followed, &window, 1, &mut holds), "never held");
        }
    }

    #[test]
    fn a_read_that_finds_nothing_wakes_what_was_held() {
        let window = Arc::new(Window::new(StreamId::ZERO, 1024).busy_for_test());
        let mut followed = Followed::new(Arc::downgrade(&window), StreamId::ZERO, None);
        let mut holds = Holds::default();
        read(&mut followed, &window, 1, &mut holds);
        assert!(!read(&mut followed, &window, 1, &mut holds));
        assert!(read(&mut followed, &window, 0, &mut holds));
        assert!(!followed.streak);
    }

    #[test]
    fn no_more_than_half_the_window_is_held() {
        let window = Arc::new(Window::new(StreamId::ZERO, 8).busy_for_test());
        let mut followed = Followed::new(Arc::downgrade(&window), StreamId::ZERO, None);
        let mut holds = Holds::default();
        assert!(read(&mut followed, &window, 1, &mut holds));
        assert!(!read(&mut followed, &window, 3, &mut holds));
        assert!(
            read(&mut followed, &window, 1, &mut holds),
            "4 of 8 unwoken: woken"
        );
        assert!(!read(&mut followed, &window, 1, &mut holds), "still reading on");
        let tiny = Arc::new(Window::new(StreamId::ZERO, 1).busy_for_test());
        let mut followed = Followed::new(Arc::downgrade(&tiny), StreamId::ZERO, None);
        read(&mut followed, &tiny, 1, &mut holds);
        assert!(
            read(&mut followed, &tiny, 1, &mut holds),
            "a window of one holds nothing back"
        );
    }

    #[test]
    fn an_append_on_its_way_is_expected_until_it_ends() {
        let window = Window::new(StreamId::ZERO, 16);
        assert!(!window.expects_appends());
        let first = window.appending();
        let second = window.appending();
        drop(first);
        assert!(window.expects_appends());
        drop(second);
        assert!(!window.expects_appends());
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_that_outlasts_the_hold_does_not_hold_up_the_wake_up() {
        let window = Arc::new(Window::new(StreamId::ZERO, 16).busy_for_test());
        let held = || Held {
            until: Instant::now() + Duration::from_millis(10),
            windows: vec![Arc::clone(&window)],
        };

        let mut notified = pin!(window.wake.notified());
        let quick = within_hold(Some(held()), async { 1 }).await;
        assert_eq!(quick, (1, false));
        assert!(!fired(notified.as_mut()));

        let started = Instant::now();
        let slow = async move {
            tokio::time::sleep_until(started + Duration::from_secs(1)).await;
            2
        };
        let mut slow = pin!(within_hold(Some(held()), slow));
        // The wake-up goes out at the end of the hold, while the read is still going on.
        tokio::time::sleep(Duration::from_millis(11)).await;
        assert!(futures_poll(slow.as_mut()).is_none());
        assert!(fired(notified.as_mut()));
        assert_eq!(slow.await, (2, true));
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    /// Polls `future` once.
    fn futures_poll<F: Future>(future: Pin<&mut F>) -> Option<F::Output> {
        match future.poll(&mut Context::from_waker(std::task::Waker::noop())) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        }
    }
}
