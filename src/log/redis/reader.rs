//! The family's one reader: one task follows every stream key of a [`RedisLogs`] family
//! and feeds each key's window.
//!
//! It hears of new entries from their [notices](super::notice) on its Pub/Sub
//! [listener](super::listener), one per entry, so what it costs Redis grows with the
//! entries appended, not with the keys followed. A notice that follows on from the newest
//! entry the reader holds carries the entry itself; any other notice makes the key *dirty*,
//! and a dirty key is read with the checked read of [`read_after`] (entries, and whether
//! they follow on, in one snapshot). Keys are also dirty when taken up or heard of again
//! after a lost connection (if their newest id is not the reader's), and in turn every
//! [`SWEEP_EVERY`] (a stream deleted or trimmed away publishes nothing).
//!
//! [`RedisLogs`]: super::RedisLogs

use std::collections::BTreeMap;
use std::future::{poll_fn, Future};
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::connection::Connection;
use super::error::{RedisLogError, RedisLogErrorKind};
use super::followed::Followed;
use super::hold::{within_hold, Holds};
use super::listener::{Heard, Listener, Looked};
use super::{READER_BACKOFF, SUBSCRIBE_AGAIN, SWEEP_BATCH, SWEEP_EVERY};
use crate::log::remote::StreamId;
use crate::log::remote::Window;
use crate::log::remote::STREAK_QUIET;
use crate::log::ring::Lock;

/// Notices handled before the reader looks at its other work again.
const NOTICE_BATCH: usize = 4096;

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

    pub(super) fn keys(&self) -> usize {
        self.keys.load(Ordering::Acquire)
    }
}

pub(super) struct Reader {
    pub(super) follow: Arc<Follow>,
    /// The family's connection, for the checked reads.
    connection: Connection,
    listener: Listener,
    pub(super) keys: BTreeMap<Arc<str>, Followed>,
    /// The keys to read before the next wait.
    dirty: Vec<Arc<str>>,
    /// Keys taken up (or heard of again) whose channel is to be subscribed to.
    to_subscribe: Vec<Arc<str>>,
    /// Keys let go of whose channel is to be unsubscribed from.
    to_unsubscribe: Vec<Arc<str>>,
    /// When to try again the keys that could not be subscribed to.
    subscribe_again: Instant,
    /// The keys whose wake-up is held, and those reading on.
    pub(super) holds: Holds,
    /// The last key checked by the periodic sweep; the next sweep goes on after it.
    swept_to: Option<Arc<str>>,
    next_sweep: Instant,
    command_timeout: Duration,
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
        connection: Connection,
        listener: Listener,
        command_timeout: Duration,
    ) -> Self {
        Reader {
            follow,
            connection,
            listener,
            keys: BTreeMap::new(),
            dirty: Vec::new(),
            to_subscribe: Vec::new(),
            to_unsubscribe: Vec::new(),
            subscribe_again: Instant::now(),
            holds: Holds::default(),
            swept_to: None,
            next_sweep: Instant::now() + SWEEP_EVERY,
            command_timeout,
        }
    }

    /// Subscribes and reads what is due, then waits for notices.
    async fn round(&mut self) -> Result<(), RedisLogError> {
        if self.listener.connect().await? {
            // Notices may have been lost: every key is subscribed to and looked at again.
            self.to_subscribe = self.keys.keys().cloned().collect();
            // The family's connection for appends may have lost Redis too, unnoticed until a
            // command fails on it: one `PING` now has it reconnect before an append does.
            let ping = redis::cmd("PING");
            let pinged = ping.query_async::<redis::Value>(&mut self.connection);
            let _ = tokio::time::timeout(self.command_timeout, pinged).await;
        }
        self.take_added();
        self.subscribe_due().await;
        self.sweep_if_due();
        if self.read_dirty().await? {
            // A key returned a full batch, or started over: read on before waiting.
            return Ok(());
        }
        self.wait().await;
        Ok(())
    }

    /// Takes up the keys added since the last round.
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
            if let Some(mut older) = self.keys.insert(Arc::clone(&key), followed) {
                older.quiet();
            }
            self.to_subscribe.push(key);
        }
        self.follow.keys.store(self.keys.len(), Ordering::Release);
    }

    /// Lets go of the keys whose window is gone.
    fn let_go(&mut self) {
        let before = self.keys.len();
        let to_unsubscribe = &mut self.to_unsubscribe;
        self.keys.retain(|key, followed| {
            let live = followed.window.strong_count() > 0;
            if !live {
                to_unsubscribe.push(Arc::clone(key));
            }
            live
        });
        if self.keys.len() != before {
            self.follow.keys.store(self.keys.len(), Ordering::Release);
        }
    }

    /// Subscribes to the channels of the keys taken up (a key whose newest id is not the
    /// reader's is then read), and unsubscribes from those let go of. Keys that could not be
    /// subscribed to are tried again after a pause; the reader goes on meanwhile (on a
    /// cluster, the other shards' keys are not held up by one failing over).
    async fn subscribe_due(&mut self) {
        if !self.to_unsubscribe.is_empty() {
            // A key let go of and taken up again since is followed: it stays subscribed.
            let keys = &self.keys;
            self.to_unsubscribe.retain(|key| !keys.contains_key(key));
            let gone = std::mem::take(&mut self.to_unsubscribe);
            self.listener.unsubscribe(&gone).await;
        }
        if self.to_subscribe.is_empty() || Instant::now() < self.subscribe_again {
            return;
        }
        let keys = std::mem::take(&mut self.to_subscribe);
        let Looked { looked, failed } = self.listener.subscribe(&keys).await;
        for (key, newest) in looked {
            let differs = self
                .keys
                .get(&key)
                .is_some_and(|followed| newest != Some(followed.last));
            if differs {
                self.mark_dirty(&key);
            }
        }
        if let Some((keys, error)) = failed {
            let streams = keys.len();
            crate::trace::warn_event!("event log reader cannot subscribe to streams; retrying", error = %error, streams = %streams);
            self.to_subscribe.extend(keys);
            self.subscribe_again = Instant::now() + crate::random::jittered(SUBSCRIBE_AGAIN);
        }
    }

    /// Has `key` read before the next wait.
    fn mark_dirty(&mut self, key: &Arc<str>) {
        if let Some(followed) = self.keys.get_mut(key) {
            if !std::mem::replace(&mut followed.dirty, true) {
                self.dirty.push(Arc::clone(key));
            }
        }
    }

    /// Every [`SWEEP_EVERY`], lets go of the keys whose window is gone and marks the next
    /// [`SWEEP_BATCH`] keys (in key order, going round) for a read: a stream deleted or
    /// recreated publishes no notice.
    fn sweep_if_due(&mut self) {
        let now = Instant::now();
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_EVERY;
        self.let_go();
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
            self.mark_dirty(key);
        }
        self.swept_to = chosen.last().cloned();
    }

    /// Reads every dirty key; whether some key has more to read at once.
    async fn read_dirty(&mut self) -> Result<bool, RedisLogError> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut more = false;
        for (index, key) in dirty.iter().enumerate() {
            self.wake_held_if_due();
            let held = self.held();
            let Some(followed) = self.keys.get_mut(key) else {
                continue;
            };
            let read = followed.read(&mut self.connection, key, self.command_timeout);
            let (read, woke) = within_hold(held, read).await;
            if woke {
                self.held_woken();
            }
            let Some(followed) = self.keys.get_mut(key) else {
                continue;
            };
            match read.map(|read| followed.apply(read, key, &mut self.holds)) {
                Ok(again) => {
                    followed.dirty = false;
                    followed.faulty = false;
                    if again {
                        self.mark_dirty(key);
                        more = true;
                    }
                }
                Err(error) if about_the_key(&error) => {
                    // This key alone: the others go on; the sweep reads it again.
                    crate::trace::warn_event!("event log reader cannot read a stream; skipping it", error = %error);
                    followed.dirty = false;
                    followed.faulty = true;
                    followed.quiet();
                }
                Err(error) => {
                    // Redis is unreachable: this key and the rest stay dirty for the next round.
                    self.dirty.extend(dirty[index..].iter().cloned());
                    return Err(error);
                }
            }
        }
        Ok(more)
    }

    /// Waits for notices (or a key to take up, or the next sweep), then takes what was heard.
    async fn wait(&mut self) {
        let held = self.held();
        let mut until = self.next_sweep;
        if !self.to_subscribe.is_empty() {
            until = until.min(self.subscribe_again);
        }
        if !self.holds.streaking.is_empty() {
            // Keys reading on are quiet once nothing comes for them for a moment.
            until = until.min(Instant::now() + STREAK_QUIET);
        }
        let follow = Arc::clone(&self.follow);
        let listener = &mut self.listener;
        let waited = async {
            let mut added = std::pin::pin!(follow.wake.notified());
            let mut sleep = std::pin::pin!(tokio::time::sleep_until(until));
            let mut recv = std::pin::pin!(listener.recv());
            poll_fn(|cx| {
                if let Poll::Ready(heard) = recv.as_mut().poll(cx) {
                    return Poll::Ready(Some(heard));
                }
                if added.as_mut().poll(cx).is_ready() || sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                Poll::Pending
            })
            .await
        };
        let (heard, woke) = within_hold(held, waited).await;
        if woke {
            self.held_woken();
        }
        if let Some(heard) = heard {
            self.take(heard);
            for _ in 1..NOTICE_BATCH {
                let Some(heard) = self.listener.try_recv() else {
                    break;
                };
                self.take(heard);
            }
        }
        self.quiet_unnoticed();
        self.wake_held_if_due();
    }

    /// Takes one thing heard.
    fn take(&mut self, heard: Heard) {
        match heard {
            Heard::Notice(key, notice) => {
                let Some((key, _)) = self.keys.get_key_value(key.as_str()) else {
                    return;
                };
                let key = Arc::clone(key);
                let Some(followed) = self.keys.get_mut(&key) else {
                    return;
                };
                followed.noticed = true;
                if !followed.take_notice(notice, &key, &mut self.holds) {
                    self.mark_dirty(&key);
                }
            }
            Heard::Dropped(key) => {
                if let Some((key, _)) = self.keys.get_key_value(key.as_str()) {
                    self.to_subscribe.push(Arc::clone(key));
                }
            }
            // The next round reconnects if needed, and subscribes to every key again.
            Heard::Lost => {}
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
