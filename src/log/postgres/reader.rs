//! The family's one reader: one task listens for the schema's notification and reads every
//! topic's new rows in one query, in `(xid, seq)` order up to the horizon, feeding the
//! windows of the topics this process follows.
//!
//! What it costs PostgreSQL is one query per notification (a notification per committed
//! transaction that added rows, however many topics it wrote) and per batch of rows, not per
//! topic. While committed rows wait behind the horizon (a transaction older than theirs is
//! still open, and it may end without a notification), it looks again after a short pause.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;
use tokio_postgres::Config;

use super::error::{limited, PostgresLogError};
use super::link::{Heard, Session, CHANNEL};
use super::rows::{self, item_at};
use super::settings::Settings;
use crate::log::remote::{AbortOnDrop, Entry, Item, Streaks, StreamId, Window};
use crate::log::ring::Lock;

/// Rows the reader takes per query.
const READER_BATCH: i64 = 1024;
/// How often the reader trims.
const TRIM_EVERY: Duration = Duration::from_secs(1);
/// Topics whose rows the reader counts between trims; past this, it trims them all and
/// starts counting again.
const SEEN_LIMIT: usize = 65_536;
/// The first and the longest pause before looking again at rows waiting behind the horizon.
const WAITING_PAUSE: (Duration, Duration) = (Duration::from_millis(2), Duration::from_millis(100));
/// Backoff of the reader between failed attempts.
const READER_BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));

/// What the logs and the reader share.
pub(super) struct Following {
    state: Lock<FollowState>,
    /// Rows seen per topic since it was last trimmed.
    seen: Lock<HashMap<Arc<str>, u64>>,
}

struct FollowState {
    /// Every row up to here (in `(xid, seq)` order) has been read and handed to the windows.
    position: StreamId,
    windows: HashMap<Arc<str>, Weak<Window>>,
}

impl Following {
    /// Follows `topic` with the window `make` returns for the reader's position (taking the
    /// place of a window of the topic that is gone).
    pub(super) fn follow(&self, topic: &Arc<str>, make: impl FnOnce(StreamId) -> Window) -> Arc<Window> {
        let mut state = self.state.lock();
        let window = Arc::new(make(state.position));
        state.windows.insert(Arc::clone(topic), Arc::downgrade(&window));
        window
    }

    pub(super) fn topics(&self) -> usize {
        let state = self.state.lock();
        state
            .windows
            .values()
            .filter(|window| window.strong_count() > 0)
            .count()
    }

    /// Every topic counted since its last trim; the counts start again.
    pub(super) fn take_all_seen(&self) -> Vec<String> {
        self.seen
            .lock()
            .drain()
            .map(|(topic, _)| topic.to_string())
            .collect()
    }

    /// The topics with at least `threshold` rows seen since their last trim (or all of them,
    /// when too many are counted); their counts start again.
    fn take_seen(&self, threshold: u64) -> Vec<String> {
        let mut seen = self.seen.lock();
        if seen.len() > SEEN_LIMIT {
            return seen.drain().map(|(topic, _)| topic.to_string()).collect();
        }
        let due: Vec<Arc<str>> = seen
            .iter()
            .filter(|(_, count)| **count >= threshold)
            .map(|(topic, _)| Arc::clone(topic))
            .collect();
        for topic in &due {
            seen.remove(topic);
        }
        due.iter().map(|topic| topic.to_string()).collect()
    }
}

pub(super) struct Reader {
    config: Config,
    following: Arc<Following>,
    /// Notified on every notification, and when the listening connection ends.
    heard: Arc<Heard>,
    /// The horizon of the last read: every transaction with a smaller id had ended.
    read_horizon: u64,
    /// Whether the next round reads (not when all it heard of was seen by the last read).
    read_next: bool,
    /// The windows whose wake-ups are held while entries keep coming.
    streaks: Streaks,
    session: Option<Session>,
    keep: Option<i64>,
    trim_threshold: u64,
    max_age_ms: Option<i64>,
    command_timeout: Duration,
    connect_timeout: Duration,
    next_trim: Instant,
    pause: Duration,
}

impl Reader {
    /// Connects the listening session, finds where to start, and starts the task.
    pub(super) async fn start(
        config: Config,
        settings: &Settings,
    ) -> Result<(AbortOnDrop, Arc<Following>), PostgresLogError> {
        let heard = Arc::new(Heard::default());
        let mut reader = Reader {
            config,
            following: Arc::new(Following {
                state: Lock::new(FollowState {
                    position: StreamId::ZERO,
                    windows: HashMap::new(),
                }),
                seen: Lock::new(HashMap::new()),
            }),
            heard,
            read_horizon: 0,
            read_next: true,
            streaks: Streaks::default(),
            session: None,
            keep: settings.max_len.map(|len| i64::try_from(len).unwrap_or(i64::MAX)),
            trim_threshold: settings.max_len.map_or(u64::MAX, |len| (len as u64 / 8).max(1)),
            max_age_ms: settings
                .max_age
                .map(|age| i64::try_from(age.as_millis()).unwrap_or(i64::MAX)),
            command_timeout: settings.command_timeout,
            connect_timeout: settings.connect_timeout,
            next_trim: Instant::now() + TRIM_EVERY,
            pause: WAITING_PAUSE.0,
        };
        let (start, _, _) = reader.connect().await?;
        reader.following.state.lock().position = start;
        let following = Arc::clone(&reader.following);
        let task = tokio::spawn(reader.run());
        Ok((AbortOnDrop(task.abort_handle()), following))
    }

    /// Opens the listening session; returns the newest position before the horizon, the next
    /// transaction id, and whether the reader's position still holds (see [`HEAD`](super::sql::HEAD)).
    async fn connect(&mut self) -> Result<(StreamId, u64, bool), PostgresLogError> {
        let empty: Arc<str> = Arc::from("");
        let failed = |error| PostgresLogError::from_postgres("LISTEN", &empty, error);
        let (session, head) = limited("LISTEN", &empty, self.connect_timeout, async {
            let session = Session::open(&self.config, Some(Arc::clone(&self.heard)))
                .await
                .map_err(failed)?;
            session
                .client
                .batch_execute(&format!("LISTEN {CHANNEL}"))
                .await
                .map_err(failed)?;
            let at = self.following.state.lock().position;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
                [&at.major.to_string(), &i64::try_from(at.seq).unwrap_or(i64::MAX)];
            let head = session
                .client
                .query_one(&session.head, &params)
                .await
                .map_err(failed)?;
            Ok::<_, PostgresLogError>((session, head))
        })
        .await?;
        self.session = Some(session);
        let unexpected = |detail: String| PostgresLogError::unexpected("read", &empty, detail);
        let next: &str = head.try_get(0).map_err(|error| unexpected(error.to_string()))?;
        let next = next
            .parse::<u64>()
            .map_err(|_| unexpected(format!("not a transaction id: {next:?}")))?;
        let newest = rows::position_at(&head, 1).map_err(unexpected)?;
        let held: bool = head.try_get(3).map_err(|error| unexpected(error.to_string()))?;
        Ok((newest.unwrap_or(StreamId::ZERO), next, held))
    }

    /// After connecting again: if the database's transaction ids are now behind the reader's
    /// position, or the row at its position is gone without a trim, its history was rewound
    /// (a restore from a backup, a failover to a replica that lagged); every window starts
    /// over from the newest row, and its subscribers hear a gap rather than wait for ids that
    /// will not come in order.
    fn rewound(&mut self, newest: StreamId, next: u64, held: bool) {
        let mut state = self.following.state.lock();
        if state.position.major < next && held {
            return;
        }
        // Notifications name the new history's transactions: none was seen yet.
        self.read_horizon = 0;
        crate::trace::warn_event!(
            "event log reader found the database behind its position; starting over",
            position = %state.position,
            next_xid = %next
        );
        state.position = newest;
        for window in state.windows.values().filter_map(Weak::upgrade) {
            window.restart(newest);
        }
    }

    async fn run(mut self) {
        let mut backoff = READER_BACKOFF.0;
        loop {
            match self.round().await {
                Ok(()) => backoff = READER_BACKOFF.0,
                Err(error) => {
                    self.streaks.wake_all();
                    self.read_next = true;
                    crate::trace::warn_event!("event log reader failed; retrying", error = %error);
                    tokio::time::sleep(crate::random::jittered(backoff)).await;
                    backoff = (backoff * 2).min(READER_BACKOFF.1);
                }
            }
        }
    }

    /// Reads what is new (connecting again first if the listening session broke), trims if
    /// due, then waits for a notification (or for held wake-ups to come due).
    async fn round(&mut self) -> Result<(), PostgresLogError> {
        let mut read = std::mem::replace(&mut self.read_next, true);
        if self
            .session
            .as_ref()
            .is_none_or(|session| session.client.is_closed())
        {
            self.session = None;
            // Notifications may have been lost meanwhile: the read below takes whatever
            // came after the position.
            let (newest, next, held) = self.connect().await?;
            self.rewound(newest, next, held);
            read = true;
        }
        let mut waiting = false;
        while read {
            let full;
            (full, waiting) = self.read().await?;
            self.streaks.wake_due(Instant::now());
            read = full;
        }
        if Instant::now() >= self.next_trim {
            self.next_trim = Instant::now() + TRIM_EVERY;
            self.trim_due().await;
        }
        // Committed rows waiting behind an open transaction, which may end without a
        // notification: look again soon, a little later each time.
        let mut until = if waiting {
            Instant::now() + self.pause
        } else {
            self.next_trim
        };
        if let Some(due) = self.streaks.due() {
            until = until.min(due);
        }
        let notified = tokio::time::timeout_at(until, self.heard.notify.notified())
            .await
            .is_ok();
        self.pause = match (waiting, notified) {
            (true, false) => (self.pause * 2).min(WAITING_PAUSE.1),
            _ => WAITING_PAUSE.0,
        };
        // A notification about transactions that had all ended before the last read began
        // brings nothing that read did not see.
        self.read_next = !notified || waiting || self.heard.newest() >= self.read_horizon;
        self.streaks.wake_due(Instant::now());
        Ok(())
    }

    /// One query for every topic's rows after the position; hands them to the windows.
    /// Returns whether the batch was full (more to read at once) and whether committed rows
    /// wait behind the horizon.
    async fn read(&mut self) -> Result<(bool, bool), PostgresLogError> {
        let empty: Arc<str> = Arc::from("");
        let Some(session) = &self.session else {
            return Ok((false, false));
        };
        let from = self.following.state.lock().position;
        let rows = limited("read", &empty, self.command_timeout, async {
            let rows = session
                .client
                .query(
                    &session.read_all,
                    &[&from.major.to_string(), &(from.seq as i64), &READER_BATCH],
                )
                .await;
            rows.map_err(|error| PostgresLogError::from_postgres("read", &empty, error))
        })
        .await?;
        let unexpected = |detail: String| PostgresLogError::unexpected("read", &empty, detail);
        let (horizon, waiting) = match rows.first() {
            Some(row) => {
                let horizon: &str = row.try_get(0).map_err(|error| unexpected(error.to_string()))?;
                let horizon = horizon
                    .parse::<u64>()
                    .map_err(|_| unexpected(format!("not a transaction id: {horizon:?}")))?;
                let waiting = row
                    .try_get::<_, bool>(1)
                    .map_err(|error| unexpected(error.to_string()))?;
                (horizon, waiting)
            }
            None => (self.read_horizon, false),
        };
        self.read_horizon = horizon;
        let mut by_topic: HashMap<&str, (Vec<Entry>, Option<StreamId>)> = HashMap::new();
        let mut last = None;
        for row in &rows {
            let Some(item) = item_at(row, 3).map_err(unexpected)? else {
                continue;
            };
            let topic: &str = row.try_get(2).map_err(|error| unexpected(error.to_string()))?;
            let (entries, end) = by_topic.entry(topic).or_default();
            match item {
                Item::Entry(entry) => {
                    last = Some(entry.0);
                    if end.is_none() {
                        entries.push(entry);
                    }
                }
                Item::End(id) => {
                    last = Some(id);
                    end.get_or_insert(id);
                }
            }
        }
        let full = rows.len() as i64 >= READER_BATCH;
        let Some(last) = last else {
            return Ok((false, waiting));
        };
        self.count_seen(&by_topic);
        // The windows take the rows under the lock that new windows start under, so that a
        // window starts either before these rows (and takes them) or after them.
        let mut fed = Vec::with_capacity(by_topic.len());
        {
            let mut state = self.following.state.lock();
            for (topic, (entries, end)) in by_topic.iter_mut() {
                if let Some(window) = state.windows.get(*topic).and_then(Weak::upgrade) {
                    let got = entries.len() + usize::from(end.is_some());
                    window.extend(std::mem::take(entries), *end);
                    fed.push((window, got));
                }
            }
            state.position = last;
        }
        let now = Instant::now();
        for (window, got) in fed {
            self.streaks.fed(window, got, now);
        }
        Ok((full, waiting))
    }

    /// Counts what each topic's rows grew by, for trimming (taken or not).
    fn count_seen(&self, by_topic: &HashMap<&str, (Vec<Entry>, Option<StreamId>)>) {
        let mut seen = self.following.seen.lock();
        for (topic, (entries, end)) in by_topic {
            let count = (entries.len() + usize::from(end.is_some())) as u64;
            match seen.get_mut(*topic) {
                Some(total) => *total += count,
                None => {
                    seen.insert(Arc::from(*topic), count);
                }
            }
        }
    }

    /// Trims the topics due (and, under an age limit, old rows everywhere); lets go of the
    /// windows that are gone. A failure is reported and left for the next pass.
    async fn trim_due(&mut self) {
        self.following
            .state
            .lock()
            .windows
            .retain(|_, window| window.strong_count() > 0);
        let topics = self.following.take_seen(self.trim_threshold);
        if topics.is_empty() && self.max_age_ms.is_none() {
            return;
        }
        let Some(session) = &self.session else { return };
        let empty: Arc<str> = Arc::from("");
        let settings = (self.keep, self.max_age_ms);
        let trimmed = limited("trim", &empty, self.command_timeout, async {
            super::trim::trim_with(session, &topics, settings).await
        })
        .await;
        if let Err(error) = trimmed {
            crate::trace::warn_event!("event log trim failed; trying again later", error = %error);
        }
    }
}
