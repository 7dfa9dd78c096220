//! One key the reader follows: what it has read of the stream into the key's window, and how
//! it takes a notice or a read.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::connection::Connection;
use super::error::{limited, RedisLogError};
use super::hold::Holds;
use super::notice::Notice;
use super::snapshot::{read_after, Read};
use super::READER_BATCH;
use crate::log::remote::StreamId;
use crate::log::remote::Window;
use crate::log::remote::{Continuity, Item};

/// One followed key.
pub(super) struct Followed {
    pub(super) window: Weak<Window>,
    /// The newest id read into the window.
    pub(super) last: StreamId,
    /// The stream's count of entries ever added when `last` was its newest id, if it was.
    pub(super) head_added: Option<u64>,
    /// To be read before the next wait (it is then in [`Reader::dirty`]).
    pub(super) dirty: bool,
    /// Its last read failed with an answer about this key alone (say, it holds a value that
    /// is not a stream); the sweep reads it again.
    pub(super) faulty: bool,
    /// Entries keep coming: the reader holds the wake-up of what comes (see
    /// [`hold`](super::hold)).
    pub(super) streak: bool,
    /// Heard of since the last look at the streaks.
    pub(super) noticed: bool,
    /// Entries added to the window since its subscribers were last woken.
    pub(super) held: usize,
}

impl Followed {
    pub(super) fn new(window: Weak<Window>, last: StreamId, head_added: Option<u64>) -> Self {
        Followed {
            window,
            last,
            head_added,
            dirty: false,
            faulty: false,
            streak: false,
            noticed: false,
            held: 0,
        }
    }

    /// Takes the entry a notice carries if it follows on from the newest entry held; whether
    /// it did (if not, the key is to be read).
    pub(super) fn take_notice(&mut self, notice: Notice, key: &Arc<str>, holds: &mut Holds) -> bool {
        let Notice::Added { prev, item } = notice else {
            return false;
        };
        if prev != self.last || self.dirty || self.faulty {
            // Something came in between (a notice lost, an entry from another program), or
            // the stream is not what the window holds: the read tells.
            return false;
        }
        let Some(window) = self.window.upgrade() else {
            return true;
        };
        let (entries, end) = match item {
            Item::Entry(entry) => (vec![entry], None),
            Item::End(id) => (Vec::new(), Some(id)),
        };
        self.last = window.extend(entries, end);
        self.head_added = self.head_added.map(|added| added + 1);
        self.added(&window, 1, key, holds);
        if window.lock().finished.is_some() {
            self.quiet();
        }
        true
    }

    /// One checked read after `last` (`None` when the window is gone: let go of at the next
    /// sweep).
    pub(super) async fn read(
        &self,
        connection: &mut Connection,
        key: &Arc<str>,
        limit: Duration,
    ) -> Result<Option<Read>, RedisLogError> {
        if self.window.strong_count() == 0 {
            return Ok(None);
        }
        let read = read_after(connection, key, self.last, self.head_added, READER_BATCH);
        limited("XRANGE", key, limit, read).await.map(Some)
    }

    /// Puts what a read found into the window: whether to read again at once (a full batch
    /// came back, or the window started over).
    pub(super) fn apply(&mut self, read: Option<Read>, key: &Arc<str>, holds: &mut Holds) -> bool {
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
