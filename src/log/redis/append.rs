//! Adding entries: an event, a recorded gap or the end, each in one round trip through the
//! append script (see [`script`](super::script)), which adds nothing after the end.

use std::time::Duration;

use redis::Cmd;

use super::error::{limited, RedisLogError};
use super::id::StreamId;
use super::reply::{END_FIELD, GAP_FIELD};
use super::script::Added;
use super::RedisLog;
use crate::Event;

/// An entry to add.
#[derive(Clone, Copy)]
pub(super) enum NewEntry<'a> {
    Event(&'a Event),
    /// A recorded gap: the field `gap`.
    Gap,
    /// The stream's end: the field `end`.
    End,
}

impl RedisLog {
    /// Adds `entry` unless the stream is finished, within the command timeout. Events and gaps
    /// are trimmed as configured (`MAXLEN ~` in the `XADD`, and an `XTRIM MINID ~` under an
    /// age limit); the end is not, so that it is never trimmed away.
    pub(super) async fn add(&self, entry: NewEntry<'_>) -> Result<Added, RedisLogError> {
        let key = &self.inner.key;
        let operation = match entry {
            NewEntry::End => "finish",
            _ => "XADD",
        };
        // Until its answer comes, the reader holds the subscribers' wake-up for this entry
        // if it is reading on.
        let _appending = self.inner.window.appending();
        let (max_len, min_id) = match entry {
            NewEntry::End => (String::new(), String::new()),
            _ => (
                self.inner.max_len.to_string(),
                self.inner.max_age.map(oldest_kept).unwrap_or_default(),
            ),
        };
        let args = |command: &mut Cmd| {
            command.arg(&max_len).arg(&min_id);
            fields(command, entry);
        };
        let mut connection = self.inner.manager.clone();
        let script = &self.inner.family.script;
        let timeout = self.inner.command_timeout;
        limited(
            operation,
            key,
            timeout,
            script.run(&mut connection, operation, key, args),
        )
        .await
    }

    /// Waits (up to the command timeout) until this process's window has read the stream's
    /// end, `end`.
    pub(super) async fn read_back(&self, end: StreamId) {
        let window = &self.inner.window;
        let deadline = tokio::time::Instant::now() + self.inner.command_timeout;
        loop {
            // Made before the look, so that a change after it wakes it.
            let changed = window.wake.notified();
            if window.lock().finished.is_some_and(|finished| finished >= end) {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return;
            }
        }
    }
}

/// The entry's fields and values: `name`, `data`, `retry`, `comment` for an event (`empty` for
/// an event with none of them: an entry needs a field), `gap` or `end` for the others.
fn fields(command: &mut Cmd, entry: NewEntry<'_>) {
    let event = match entry {
        NewEntry::Gap => {
            command.arg(GAP_FIELD).arg("");
            return;
        }
        NewEntry::End => {
            command.arg(END_FIELD).arg("");
            return;
        }
        NewEntry::Event(event) => event,
    };
    let mut fields = 0;
    if let Some(name) = event.name() {
        command.arg("name").arg(name);
        fields += 1;
    }
    if event.has_data() {
        command.arg("data").arg(event.data());
        fields += 1;
    }
    if let Some(retry) = event.retry() {
        command
            .arg("retry")
            .arg(u64::try_from(retry.as_millis()).unwrap_or(u64::MAX));
        fields += 1;
    }
    if let Some(comment) = event.comment() {
        command.arg("comment").arg(comment);
        fields += 1;
    }
    if fields == 0 {
        command.arg("empty").arg("");
    }
}

/// The `MINID` of an age limit, `<now - age>-0`, with this process's clock.
fn oldest_kept(age: Duration) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let oldest_ms = u64::try_from(now_ms.saturating_sub(age.as_millis())).unwrap_or(0);
    format!("{oldest_ms}-0")
}
