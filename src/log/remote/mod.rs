//! What the logs kept in another program (Redis, PostgreSQL) share in this process: a
//! position type, the local window their reader feeds, and the subscription that reads the
//! window and, where the window does not hold its cursor, catches up from the store.
//!
//! A backend tells the subscription how to read its store through [`Remote`]; everything else
//! (joining the window at the cursor, falling behind it, a window that starts over, backoff
//! while the store is away, the end) is written once here.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

mod catch_up;
mod id;
#[cfg(feature = "postgres")]
mod streak;
mod subscription;
mod window;

pub(crate) use catch_up::CatchUp;
pub(crate) use id::StreamId;
#[cfg(feature = "postgres")]
pub(crate) use streak::Streaks;
pub(crate) use subscription::{public_subscription, RemoteSubscription};
pub(crate) use window::Window;

use crate::log::ring::CountsSubscribers;
use crate::stats::LogCounters;
use crate::{CursorError, Event, LastEventId};

/// An entry of the log: its position, and the event, or `None` for a recorded gap.
pub(crate) type Entry = (StreamId, Option<Event>);

/// One entry as read: an event or a recorded gap, or the log's end.
#[derive(Debug)]
pub(crate) enum Item {
    Entry(Entry),
    End(StreamId),
}

/// Entries in the log's order, up to its end if the read reached it (what follows the end is
/// no part of the log: it is left out).
#[derive(Debug, Default)]
pub(crate) struct Entries {
    pub(crate) entries: Vec<Entry>,
    /// The end's position, when the read reached it.
    pub(crate) end: Option<StreamId>,
}

impl Entries {
    /// `items` in the log's order, up to the first end.
    pub(crate) fn up_to_end(items: impl IntoIterator<Item = Item>) -> Entries {
        let mut entries = Vec::new();
        for item in items {
            match item {
                Item::Entry(entry) => entries.push(entry),
                Item::End(id) => {
                    return Entries {
                        entries,
                        end: Some(id),
                    }
                }
            }
        }
        Entries { entries, end: None }
    }
}

/// Whether the entries of a read follow its cursor.
pub(crate) enum Continuity {
    /// Every entry after the cursor is held; the read's entries are the next ones.
    Continuous,
    /// Entries after the cursor are gone; reading goes on after `restart`.
    Gap { restart: StreamId },
    /// The cursor is later than anything the store could have issued. A reader that was
    /// there (history rewound) goes on after `restart`.
    Future { restart: StreamId },
}

/// One consistent read of the store after a cursor.
pub(crate) struct Fetched {
    pub(crate) continuity: Continuity,
    /// Entries after the cursor (only when continuous), up to the log's end.
    pub(crate) entries: Vec<Entry>,
    /// The log's end, when this read reached it: it follows `entries`, or the cursor is at it.
    pub(crate) end: Option<StreamId>,
}

/// A read of the store on its way.
pub(crate) type FetchFuture<E> = Pin<Box<dyn Future<Output = Result<Fetched, E>> + Send>>;

/// A log kept in another program, as its subscriptions see it.
pub(crate) trait Remote: CountsSubscribers + Clone + Send + Sync + Unpin + 'static {
    /// A failure of the store.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Why a cursor later than anything the store could have issued is refused.
    const FUTURE_CURSOR: &'static str;

    /// Why a cursor that is not `<number>-<number>` is refused: what this log's ids are.
    const CURSOR_SHAPE: &'static str;

    /// The position a client's cursor names.
    fn parse_cursor(cursor: &LastEventId) -> Result<StreamId, CursorError> {
        StreamId::parse(cursor.as_str()).ok_or(CursorError::Unknown {
            reason: Self::CURSOR_SHAPE,
        })
    }

    /// This process's window of the log.
    fn window(&self) -> &Arc<Window>;

    /// What this process appended, recorded and reported.
    fn counters(&self) -> &LogCounters;

    /// The log's name, for debugging output.
    fn name(&self) -> &str;

    /// Up to a batch of entries after `cursor`, and whether they follow it.
    fn fetch_after(&self, cursor: StreamId) -> FetchFuture<Self::Error>;

    /// The newest `n` entries, oldest first (fewer when the log holds fewer), and the log's
    /// end if it is finished: the end is not one of the `n`.
    fn newest(&self, n: usize) -> impl Future<Output = Result<Entries, Self::Error>> + Send;
}

/// Stops a family's reader task when the family (every handle and log of it) is gone.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A window's streak (entries coming one after another) ends once nothing came for it for
/// this long: its next entries wake its subscribers at once.
pub(crate) const STREAK_QUIET: Duration = Duration::from_millis(2);
/// The longest a reader holds a window's wake-up while entries keep coming: under a steady
/// stream, waiting subscribers are woken at least this often.
pub(crate) const WAKE_HOLD: Duration = Duration::from_millis(50);

/// Entries a catching-up subscriber takes per read.
pub(crate) const FETCH_BATCH: usize = 256;
/// How long a catching-up subscriber waits for the reader to reach its cursor before it
/// reads from the store again.
const AWAIT_READER: Duration = Duration::from_secs(2);
/// Backoff of a catching-up subscriber between failed reads.
const FETCH_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));
