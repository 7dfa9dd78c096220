//! The family's one reader: one task follows every stream key of a [`RedisLogs`] family
//! and feeds each key's window.
//!
//! Each round it takes up the keys added since, lets go of the keys whose window is gone,
//! reads every *dirty* key (woken by the last `XREAD`, or due for its periodic check) with
//! the checked read of [`read_after`], and then waits for any key with one `XREAD BLOCK` on
//! its blocking connection (see [`xread`](super::xread)); while keys are reading on, that
//! wait is a poll, and their wake-ups are held (see [`hold`](super::hold)).
//!
//! [`RedisLogs`]: super::RedisLogs

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::error::{limited, RedisLogError, RedisLogErrorKind};
use super::hold::{within_hold, Holds};
use super::id::StreamId;
use super::snapshot::{read_after, Continuity, Read};
use super::window::Window;
use super::xread::Blocking;
use super::{READER_BACKOFF, READER_BATCH, READER_BLOCK, SWEEP_BATCH};
use crate::log::ring::Lock;

/// What the logs tell the reader task, and what it tells them.
pub(super) struct Follow {
    /// Keys whose new window the reader has not taken up yet, in order.
    added: Lock<Vec<Added>>,
    /// Signalled (with a stored permit) when a key is added.
    pub(super) wake: Notify,
    /// How many keys the reader follows.
    keys: AtomicUsize,
}

/// A key to follow from `last` on, into `window`.
pub(super) struct Added {
    pub(super) key: Arc<str>,
    pub(super) window: Weak<Window>,
    pub(super) last: StreamId,
    /// The stream's count of entries ever added when `last` was its newest id.
    pub(super) head_added: u64,
}

impl Default for Follow {
    fn default() -> Self {
        Follow {
            added: Lock::new(Vec::new()),
            wake: Notify::new(),
            keys: AtomicUsize::new(0),
        }
    }
}

impl Follow {
    /// Has the reader follow a key (taking the place of an older window of the same key).
    pub(super) fn add(&self, added: Added) {
        self.added.lock().push(added);
        self.wake.notify_one();
    }

    /// Whether keys were added that the reader has not taken up yet.
    pub(super) fn has_added(&self) -> bool {
        !self.added.lock().is_empty()
    }

    pub(super) fn keys(&self) -> usize {
        self.keys.load(Ordering::Acquire)
    }
}

/// One followed key.
pub(super) struct Followed {
    pub(super) window: Weak<Window>,
    /// The newest id read into the window.
    pub(super) last: StreamId,
    /// The stream's count of entries ever added when `last` was its newest id, if it was.
    head_added: Option<u64>,
    /// To be read before the next wait: woken, due for a check, or more entries may follow.
    pub(super) dirty: bool,
    /// Its last read failed with an answer about this key alone (say, it holds a value that
    /// is not a stream): left out of the `XREAD` (which it would fail) until a check reads it.
    pub(super) faulty: bool,
    /// Its last read found entries: the reader reads on, holding the wake-up of what it finds.
    pub(super) streak: bool,
    /// Entries added to the window since its subscribers were last woken.
    pub(super) held: usize,
}

pub(super) struct Reader {
    pub(super) follow: Arc<Follow>,
    /// The family's multiplexed connection, for the checked reads and `CLIENT UNBLOCK`.
    pub(super) manager: ConnectionManager,
    /// The connection the reader blocks on, and its client id.
    pub(super) blocking: Blocking,
    pub(super) keys: BTreeMap<Arc<str>, Followed>,
    /// The keys whose wake-up is held while they read on.
    pub(super) holds: Holds,
    /// The last key checked by the periodic sweep; the next sweep goes on after it.
    swept_to: Option<Arc<str>>,
    next_sweep: Instant,
    pub(super) command_timeout: Duration,
}

/// The family's one reader; runs until the family is dropped (then aborted).
pub(super) async fn read_loop(mut reader: Reader) {
    let mut backoff = READER_BACKOFF.0;
    loop {
        match reader.round().await {
            Ok(()) => backoff = READER_BACKOFF.0,
            Err(error) => {
                reader.quiet_all();
                crate::trace::warn_event!("event log reader failed; retrying", error = %error);
                tokio::time::sleep(crate::random::jittered(backoff)).await;
                backoff = (backoff * 2).min(READER_BACKOFF.1);
            }
        }
    }
}

impl Reader {
    pub(super) fn new(
        follow: Arc<Follow>,
        manager: ConnectionManager,
        blocking: Blocking,
        command_timeout: Duration,
    ) -> Self {
        Reader {
            follow,
            manager,
            blocking,
            keys: BTreeMap::new(),
            holds: Holds::default(),
            swept_to: None,
            next_sweep: Instant::now() + READER_BLOCK,
            command_timeout,
        }
    }

    /// Reads what the dirty keys hold, then waits for any key to have more.
    async fn round(&mut self) -> Result<(), RedisLogError> {
        self.take_added();
        self.sweep_if_due();
        if self.read_dirty().await? {
            // A key returned a full batch, or started over: read on before waiting.
            return Ok(());
        }
        if self.keys.values().all(|followed| followed.faulty) {
            // Nothing to block on: wait for a key to be added, or for the next check.
            let _ = tokio::time::timeout_at(self.next_sweep, self.follow.wake.notified()).await;
            return Ok(());
        }
        self.wait().await
    }

    /// Takes up the keys added since the last round and lets go of those whose window is gone.
    fn take_added(&mut self) {
        let added = std::mem::take(&mut *self.follow.added.lock());
        for Added {
            key,
            window,
            last,
            head_added,
        } in added
        {
            let followed = Followed::new(window, last, Some(head_added));
            if let Some(mut older) = self.keys.insert(key, followed) {
                older.quiet();
            }
        }
        self.keys.retain(|_, followed| followed.window.strong_count() > 0);
        self.follow.keys.store(self.keys.len(), Ordering::Release);
    }

    /// Every [`READER_BLOCK`], marks the next [`SWEEP_BATCH`] keys (in key order, going
    /// round) for a check: a stream deleted or recreated wakes no `XREAD`.
    fn sweep_if_due(&mut self) {
        let now = Instant::now();
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + READER_BLOCK;
        let count = SWEEP_BATCH.min(self.keys.len());
        let after = match &self.swept_to {
            Some(from) => self
                .keys
                .range::<str, _>((Bound::Excluded(&**from), Bound::Unbounded)),
            None => self.keys.range::<str, _>(..),
        };
        let chosen: Vec<Arc<str>> = after
            .chain(self.keys.iter())
            .take(count)
            .map(|(key, _)| Arc::clone(key))
            .collect();
        for key in &chosen {
            if let Some(followed) = self.keys.get_mut(key) {
                followed.dirty = true;
            }
        }
        self.swept_to = chosen.last().cloned();
    }

    /// Reads every dirty key; whether some key has more to read at once.
    async fn read_dirty(&mut self) -> Result<bool, RedisLogError> {
        let dirty: Vec<Arc<str>> = self
            .keys
            .iter()
            .filter(|(_, followed)| followed.dirty)
            .map(|(key, _)| Arc::clone(key))
            .collect();
        let mut more = false;
        for key in dirty {
            self.wake_held_if_due();
            let held = self.held();
            let Some(followed) = self.keys.get_mut(&key) else {
                continue;
            };
            let read = followed.read(&mut self.manager, &key, self.command_timeout);
            let (read, woke) = within_hold(held, read).await;
            if woke {
                self.held_woken();
            }
            let Some(followed) = self.keys.get_mut(&key) else {
                continue;
            };
            match read.map(|read| followed.apply(read, &key, &mut self.holds)) {
                Ok(again) => {
                    followed.dirty = again;
                    followed.faulty = false;
                    more |= again;
                }
                Err(error) if about_the_key(&error) => {
                    // This key alone: the others go on; the sweep checks it again.
                    crate::trace::warn_event!("event log reader cannot read a stream; skipping it", error = %error);
                    followed.dirty = false;
                    followed.faulty = true;
                    followed.quiet();
                }
                // Redis is unreachable: this key and the rest stay dirty for the next round.
                Err(error) => return Err(error),
            }
        }
        Ok(more)
    }

    /// Marks every key for a check (an `XREAD` failed on one of them, or answered oddly).
    pub(super) fn all_dirty(&mut self) {
        for followed in self.keys.values_mut() {
            followed.dirty = true;
        }
    }
}

/// Whether a failed read is about its key alone (a reply Redis gave about it), rather than
/// about the connection.
fn about_the_key(error: &RedisLogError) -> bool {
    matches!(
        error.kind(),
        RedisLogErrorKind::Refused | RedisLogErrorKind::UnexpectedReply
    )
}

impl Followed {
    pub(super) fn new(window: Weak<Window>, last: StreamId, head_added: Option<u64>) -> Self {
        Followed {
            window,
            last,
            head_added,
            // The `XREAD` starts after `last`: anything appended since wakes it.
            dirty: false,
            faulty: false,
            streak: false,
            held: 0,
        }
    }

    /// One checked read after `last` (`None` when the window is gone: let go of at the next
    /// round).
    async fn read(
        &self,
        manager: &mut ConnectionManager,
        key: &Arc<str>,
        limit: Duration,
    ) -> Result<Option<Read>, RedisLogError> {
        if self.window.strong_count() == 0 {
            return Ok(None);
        }
        let read = read_after(manager, key, self.last, self.head_added, READER_BATCH);
        limited("XRANGE", key, limit, read).await.map(Some)
    }

    /// Puts what a read found into the window: whether to read again at once (a full batch
    /// came back, or the window started over).
    fn apply(&mut self, read: Option<Read>, key: &Arc<str>, holds: &mut Holds) -> bool {
        let Some((read, window)) = read.zip(self.window.upgrade()) else {
            return false;
        };
        match read.continuity {
            Continuity::Continuous => {
                let got = read.entries.len() + usize::from(read.end.is_some());
                if got > 0 {
                    self.last = window.extend(read.entries, read.end);
                }
                self.added(&window, got, key, holds);
                let finished = window.lock().finished.is_some();
                if finished {
                    // Nothing comes after the end: its subscribers hear of it now, and the
                    // reader passes over whatever was added after it.
                    self.quiet();
                    self.last = self.last.max(read.last_generated);
                }
                self.head_added = (self.last == read.last_generated).then_some(read.entries_added);
                got >= READER_BATCH && !finished
            }
            // Entries after `last` are gone, or the stream was deleted, recreated or rewound.
            Continuity::Gap { restart } | Continuity::Future { restart } => {
                // Wakes every subscriber: what it held is gone with the rest.
                window.restart(restart);
                (self.streak, self.held) = (false, 0);
                self.last = restart;
                self.head_added = (restart == read.last_generated).then_some(read.entries_added);
                true
            }
        }
    }
}
