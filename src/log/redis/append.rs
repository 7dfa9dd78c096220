//! Adding entries: an event, a recorded gap or the end, each in one round trip through the
//! append script (see [`script`](super::script)), which adds nothing after the end.

use std::borrow::Cow;
use std::time::Duration;

use redis::Cmd;

use super::error::{limited, RedisLogError};
use super::reply::{END_FIELD, GAP_FIELD};
use super::script::Added;
use super::RedisLog;
use crate::log::fingerprint;
use crate::log::remote::StreamId;
use crate::{Event, IdempotencyKey};

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
        self.add_once(entry, None).await
    }

    /// [`add`](RedisLog::add), remembering `once` (an idempotency key and its window) in the
    /// same script: a key remembered with the same event adds nothing.
    pub(super) async fn add_once(
        &self,
        entry: NewEntry<'_>,
        once: Option<(&IdempotencyKey, Duration)>,
    ) -> Result<Added, RedisLogError> {
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
        let fields = fields(entry);
        let (once_key, fingerprint, window_ms) = match (once, entry) {
            (Some((once, window)), NewEntry::Event(event)) => (
                Some(once_key(key, once)),
                format!("{:016x}", fingerprint(event)),
                u64::try_from(window.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1)
                    .to_string(),
            ),
            _ => (None, String::new(), String::new()),
        };
        let args = |command: &mut Cmd| {
            command
                .arg(&max_len)
                .arg(&min_id)
                .arg(&fingerprint)
                .arg(&window_ms);
            add_fields(command, &fields);
        };
        let mut connection = self.inner.manager.clone();
        let script = &self.inner.family.script;
        let timeout = self.inner.command_timeout;
        limited(
            operation,
            key,
            timeout,
            script.run(&mut connection, operation, (key, once_key.as_deref()), args),
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
fn fields(entry: NewEntry<'_>) -> Vec<(&'static str, Cow<'_, [u8]>)> {
    let event = match entry {
        NewEntry::Gap => return vec![(GAP_FIELD, Cow::Borrowed(&[]))],
        NewEntry::End => return vec![(END_FIELD, Cow::Borrowed(&[]))],
        NewEntry::Event(event) => event,
    };
    let mut fields = Vec::with_capacity(4);
    if let Some(name) = event.name() {
        fields.push(("name", Cow::Borrowed(name.as_bytes())));
    }
    if event.has_data() {
        fields.push(("data", Cow::Borrowed(event.data().as_bytes())));
    }
    if let Some(retry) = event.retry() {
        let ms = u64::try_from(retry.as_millis()).unwrap_or(u64::MAX);
        fields.push(("retry", Cow::Owned(ms.to_string().into_bytes())));
    }
    if let Some(comment) = event.comment() {
        fields.push(("comment", Cow::Borrowed(comment.as_bytes())));
    }
    if fields.is_empty() {
        fields.push(("empty", Cow::Borrowed(&[])));
    }
    fields
}

/// Adds the script's arguments after the bounds: the notice's fields part (see
/// [`notice`](super::notice)), then the entry's fields and values.
fn add_fields(command: &mut Cmd, fields: &[(&'static str, Cow<'_, [u8]>)]) {
    command.arg(notice_fields(fields));
    for (field, value) in fields {
        command.arg(*field).arg(value.as_ref());
    }
}

/// Each field and value as its length in bytes, a colon and its bytes.
fn notice_fields(fields: &[(&'static str, Cow<'_, [u8]>)]) -> Vec<u8> {
    let size: usize = fields.iter().map(|(f, v)| f.len() + v.len() + 12).sum();
    let mut notice = Vec::with_capacity(size);
    for part in fields
        .iter()
        .flat_map(|(field, value)| [field.as_bytes(), value.as_ref()])
    {
        notice.extend_from_slice(part.len().to_string().as_bytes());
        notice.push(b':');
        notice.extend_from_slice(part);
    }
    notice
}

/// The key that remembers an idempotency key of the stream `stream`, in the stream's slot: the
/// stream's hash tag if it has one, else the whole stream key as the tag
/// (`{chat:lobby}:once:<key>` for `chat:lobby`, which hashes as `chat:lobby` does). A stream
/// key with a `{` or `}` that makes no hash tag has no such key: on a cluster its appends with
/// an idempotency key fail (`CROSSSLOT`); on a single server they work.
fn once_key(stream: &str, once: &IdempotencyKey) -> String {
    let tagged = stream
        .find('{')
        .and_then(|open| stream[open + 1..].find('}'))
        .is_some_and(|length| length > 0);
    if tagged {
        format!("{stream}:once:{once}")
    } else {
        format!("{{{stream}}}:once:{once}")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::redis::notice::Notice;
    use crate::log::remote::Item;

    #[test]
    fn the_key_remembering_an_idempotency_key_is_in_the_streams_slot() {
        let once = IdempotencyKey::new("k1").unwrap();
        assert_eq!(once_key("chat:lobby", &once), "{chat:lobby}:once:k1");
        assert_eq!(once_key("{chat}:lobby", &once), "{chat}:lobby:once:k1");
    }

    #[test]
    fn the_notice_the_script_publishes_reads_back_as_the_event() {
        let event = Event::new("a:b\n7:c")
            .with_name("chat")
            .unwrap()
            .with_retry(Duration::from_millis(1500))
            .with_comment("note");
        // What the script publishes: `<prev> <id>\n` and the fields part it was given.
        let mut message = b"5-0 6-1\n".to_vec();
        message.extend(notice_fields(&fields(NewEntry::Event(&event))));
        let Notice::Added {
            prev,
            item: Item::Entry((id, Some(read))),
        } = Notice::parse(&message)
        else {
            panic!("an event's notice");
        };
        assert_eq!(
            (prev, id),
            (StreamId { major: 5, seq: 0 }, StreamId { major: 6, seq: 1 })
        );
        assert_eq!((read.name(), read.data()), (Some("chat"), "a:b\n7:c"));
        assert_eq!(read.retry(), Some(Duration::from_millis(1500)));
        assert_eq!(read.comment(), Some("note"));

        let mut end = b"6-1 7-0\n".to_vec();
        end.extend(notice_fields(&fields(NewEntry::End)));
        assert!(matches!(
            Notice::parse(&end),
            Notice::Added {
                item: Item::End(_),
                ..
            }
        ));
    }
}
