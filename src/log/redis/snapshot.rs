//! Reading a snapshot of the stream: the entries after a cursor together with what decides
//! whether they follow it without a gap.

use std::sync::Arc;

use redis::aio::ConnectionLike;
use redis::Value;

use super::connection::redirected;
use super::error::RedisLogError;
use super::reply::{bytes_of, entry_id, int_of, pairs_of, parse_entries, parse_entry};
use crate::log::remote::{Continuity, Entries, Entry, Fetched, Item, StreamId};

/// One consistent read of the stream after a cursor.
pub(super) struct Read {
    pub(super) continuity: Continuity,
    /// Entries after the cursor (only when continuous), up to the stream's end.
    pub(super) entries: Vec<Entry>,
    /// The stream's end (see [`RedisLog::finish`](super::RedisLog)), when this read reached
    /// it: it follows `entries`, or the cursor is at it (only when continuous). A reader that
    /// takes `entries` has read the whole stream.
    pub(super) end: Option<StreamId>,
    /// The end entry's id when it is the stream's newest entry: the stream is finished.
    pub(super) newest_end: Option<StreamId>,
    /// The stream's newest id (`0-0` when it does not exist).
    pub(super) last_generated: StreamId,
    /// How many entries were ever added to the stream (0 when it does not exist).
    pub(super) entries_added: u64,
}

impl From<Read> for Fetched {
    fn from(read: Read) -> Fetched {
        Fetched {
            continuity: read.continuity,
            entries: read.entries,
            end: read.end,
        }
    }
}

const OP: &str = "XRANGE";

/// Reads up to `count` entries after `cursor` together with what decides whether they
/// follow it without a gap, in one `MULTI` (see [`RedisLog`](super::RedisLog) for the rule).
///
/// `head_added`, when known, is the stream's count of entries ever added at a moment when
/// `cursor` was its newest id (the reader knows it). Then the cursor is continuous even if
/// its own entry was trimmed since, provided every entry added after that moment is still
/// held: an idle stream whose newest entry ages out is not a gap for the reader.
pub(super) async fn read_after(
    connection: &mut impl ConnectionLike,
    key: &Arc<str>,
    cursor: StreamId,
    head_added: Option<u64>,
    count: usize,
) -> Result<Read, RedisLogError> {
    let replies = Replies::query(connection, key, cursor, count).await?;
    let now_ms = replies.redis_time_ms(key)?;
    let future = cursor.major > now_ms.saturating_add(1000);
    let Some(info) = replies.stream_info(key)? else {
        // No stream: nothing was ever appended, or it was deleted.
        let continuity = match cursor {
            StreamId::ZERO => Continuity::Continuous,
            _ if future => Continuity::Future {
                restart: StreamId::ZERO,
            },
            _ => Continuity::Gap {
                restart: StreamId::ZERO,
            },
        };
        return Ok(Read {
            continuity,
            entries: Vec::new(),
            end: None,
            newest_end: None,
            last_generated: StreamId::ZERO,
            entries_added: 0,
        });
    };

    let own_exists = matches!(&replies.own, Value::Array(items) if !items.is_empty());
    let continuity = info.continuity(cursor, own_exists, head_added, future);
    let Entries { entries, end } = match continuity {
        Continuity::Continuous if count > 0 => {
            let mut read =
                parse_entries(&replies.after).map_err(|detail| RedisLogError::unexpected(OP, key, detail))?;
            // The cursor at the end (or past it, on an entry that should not be there).
            read.end = read.end.or(info.newest_end.filter(|end| cursor >= *end));
            read
        }
        _ => Entries::default(),
    };
    Ok(Read {
        continuity,
        entries,
        end,
        newest_end: info.newest_end,
        last_generated: info.last_generated,
        entries_added: info.entries_added,
    })
}

/// The replies of one snapshot's `MULTI`.
struct Replies {
    /// `XINFO STREAM`.
    info: Value,
    /// `TIME`.
    time: Value,
    /// The cursor's own entry.
    own: Value,
    /// The entries after the cursor (`Nil` when none were asked for).
    after: Value,
}

impl Replies {
    async fn query(
        connection: &mut impl ConnectionLike,
        key: &Arc<str>,
        cursor: StreamId,
        count: usize,
    ) -> Result<Replies, RedisLogError> {
        let at = cursor.to_string();
        let mut pipe = redis::pipe();
        pipe.atomic().ignore_errors();
        pipe.cmd("XINFO").arg("STREAM").arg(&**key);
        pipe.cmd("TIME");
        pipe.cmd("XRANGE")
            .arg(&**key)
            .arg(&at)
            .arg(&at)
            .arg("COUNT")
            .arg(1);
        if count > 0 {
            pipe.cmd("XRANGE")
                .arg(&**key)
                .arg(format!("({at}"))
                .arg("+")
                .arg("COUNT")
                .arg(count);
        }
        let reply = match pipe.query_async::<Value>(connection).await {
            Err(error) if redirected(&error) => {
                // A cluster's slot moved (a failover, a resharding). A single command on the
                // key follows the redirection and updates the client's slot map, then the
                // transaction goes to the right node.
                let _: Result<Value, _> = redis::cmd("EXISTS").arg(&**key).query_async(connection).await;
                pipe.query_async::<Value>(connection).await
            }
            reply => reply,
        };
        let reply = reply.map_err(|e| RedisLogError::from_redis(OP, key, e))?;
        Replies::split(reply, key)
    }

    fn split(reply: Value, key: &Arc<str>) -> Result<Replies, RedisLogError> {
        let Value::Array(replies) = reply else {
            return Err(RedisLogError::unexpected(
                OP,
                key,
                format!("expected the MULTI replies, got {reply:?}"),
            ));
        };
        let mut replies = replies.into_iter();
        let (Some(info), Some(time), Some(own)) = (replies.next(), replies.next(), replies.next()) else {
            return Err(RedisLogError::unexpected(
                OP,
                key,
                "fewer MULTI replies than commands",
            ));
        };
        let after = replies.next().unwrap_or(Value::Nil);
        for reply in [&time, &own, &after] {
            if let Value::ServerError(error) = reply {
                return Err(server_error(OP, key, error));
            }
        }
        Ok(Replies {
            info,
            time,
            own,
            after,
        })
    }

    /// Redis's clock, in milliseconds (whole seconds).
    fn redis_time_ms(&self, key: &Arc<str>) -> Result<u64, RedisLogError> {
        match &self.time {
            Value::Array(parts) => parts.first().and_then(int_of),
            _ => None,
        }
        .map(|secs| secs.saturating_mul(1000))
        .ok_or_else(|| RedisLogError::unexpected(OP, key, format!("TIME answered {:?}", self.time)))
    }

    /// The stream's fields, or `None` when there is no stream.
    fn stream_info(&self, key: &Arc<str>) -> Result<Option<StreamInfo>, RedisLogError> {
        match &self.info {
            Value::ServerError(error) if error.details().is_some_and(|d| d.contains("no such key")) => {
                Ok(None)
            }
            Value::ServerError(error) => Err(server_error("XINFO STREAM", key, error)),
            info => StreamInfo::parse(info)
                .map(Some)
                .map_err(|detail| RedisLogError::unexpected("XINFO STREAM", key, detail)),
        }
    }
}

fn server_error(operation: &'static str, key: &Arc<str>, error: &redis::ServerError) -> RedisLogError {
    RedisLogError::from_redis(operation, key, redis::RedisError::from(error.clone()))
}

/// The fields of `XINFO STREAM` that decide continuity.
struct StreamInfo {
    length: u64,
    last_generated: StreamId,
    max_deleted: StreamId,
    entries_added: u64,
    first_entry: Option<StreamId>,
    /// The newest entry's id, if it is the end entry.
    newest_end: Option<StreamId>,
}

impl StreamInfo {
    fn parse(reply: &Value) -> Result<StreamInfo, String> {
        let pairs = pairs_of(reply).ok_or_else(|| format!("expected field-value pairs, got {reply:?}"))?;
        let field = |name: &str| {
            pairs
                .iter()
                .find(|(field, _)| bytes_of(field) == Some(name.as_bytes()))
                .map(|(_, value)| *value)
        };
        let too_old = |name: &str| format!("no `{name}` field: RedisLog needs Redis 7.0 or later");
        let id = |name: &str| -> Result<StreamId, String> {
            let value = field(name).ok_or_else(|| too_old(name))?;
            bytes_of(value)
                .and_then(StreamId::parse_bytes)
                .ok_or_else(|| format!("`{name}` is {value:?}"))
        };
        let number = |name: &str| -> Result<u64, String> {
            let value = field(name).ok_or_else(|| too_old(name))?;
            int_of(value).ok_or_else(|| format!("`{name}` is {value:?}"))
        };
        let first_entry = match field("first-entry") {
            None | Some(Value::Nil) => None,
            Some(entry) => Some(entry_id(entry).ok_or_else(|| format!("`first-entry` is {entry:?}"))?),
        };
        // Read leniently, as entries are: one this crate cannot read is no end.
        let newest_end = match field("last-entry").and_then(parse_entry) {
            Some(Item::End(id)) => Some(id),
            _ => None,
        };
        Ok(StreamInfo {
            length: number("length")?,
            last_generated: id("last-generated-id")?,
            max_deleted: id("max-deleted-entry-id")?,
            entries_added: number("entries-added")?,
            first_entry,
            newest_end,
        })
    }

    /// The position after which every entry ever added is still held.
    fn floor(&self) -> StreamId {
        if self.entries_added == self.length {
            // Nothing was ever trimmed or deleted.
            return StreamId::ZERO;
        }
        match self.first_entry {
            Some(first) => first.pred().max(self.max_deleted),
            None => self.last_generated,
        }
    }

    /// Whether the entries after `cursor` follow it without a gap (see
    /// [`RedisLog`](super::RedisLog) for the rule); `future` when the cursor is later than
    /// Redis's clock.
    fn continuity(
        &self,
        cursor: StreamId,
        own_exists: bool,
        head_added: Option<u64>,
        future: bool,
    ) -> Continuity {
        let floor = self.floor();
        // Everything added since the cursor was the newest id is still held, and nothing older.
        let all_added_since_held = head_added.is_some_and(|added| {
            self.entries_added.checked_sub(added) == Some(self.length)
                && self.first_entry.is_none_or(|first| first > cursor)
        });
        if cursor > self.last_generated {
            if future {
                Continuity::Future { restart: floor }
            } else {
                Continuity::Gap { restart: floor }
            }
        } else if cursor == floor || (cursor > floor && own_exists) || all_added_since_held {
            Continuity::Continuous
        } else {
            Continuity::Gap { restart: floor }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> StreamId {
        StreamId::parse(text).unwrap()
    }

    fn info(length: u64, added: u64, first: Option<&str>, last: &str, deleted: &str) -> StreamInfo {
        StreamInfo {
            length,
            entries_added: added,
            first_entry: first.map(id),
            last_generated: id(last),
            max_deleted: id(deleted),
            newest_end: None,
        }
    }

    #[test]
    fn the_floor_is_where_nothing_after_was_removed() {
        assert_eq!(
            info(3, 3, Some("5-0"), "7-0", "0-0").floor(),
            StreamId::ZERO,
            "never trimmed"
        );
        assert_eq!(
            info(3, 9, Some("5-2"), "7-0", "0-0").floor(),
            id("5-1"),
            "trimmed up to 5-2"
        );
        assert_eq!(
            info(3, 9, Some("5-2"), "7-0", "6-0").floor(),
            id("6-0"),
            "an entry after the first was deleted"
        );
        assert_eq!(info(0, 9, None, "7-0", "0-0").floor(), id("7-0"), "all trimmed");
    }

    #[test]
    fn refuses_stream_info_without_the_fields_it_needs() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        assert!(StreamInfo::parse(&Value::Array(vec![bulk("length"), Value::Int(1)])).is_err());
    }
}
