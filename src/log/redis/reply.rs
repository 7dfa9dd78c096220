//! Parsing replies (never panics: a reply of another shape is an error).

use std::time::Duration;

use redis::Value;

use crate::log::remote::{Entries, Item, StreamId};
use crate::Event;

pub(super) fn bytes_of(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        Value::VerbatimString { text, .. } => Some(text.as_bytes()),
        _ => None,
    }
}

pub(super) fn text_of(value: &Value) -> Option<&str> {
    bytes_of(value).and_then(|bytes| std::str::from_utf8(bytes).ok())
}

pub(super) fn int_of(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => text_of(other).and_then(|text| text.parse().ok()),
    }
}

/// A flat `[field, value, …]` array (RESP2) or a map (RESP3), as pairs.
pub(super) fn pairs_of(value: &Value) -> Option<Vec<(&Value, &Value)>> {
    match value {
        Value::Array(items) if items.len() % 2 == 0 => {
            Some(items.chunks_exact(2).map(|pair| (&pair[0], &pair[1])).collect())
        }
        Value::Map(pairs) => Some(pairs.iter().map(|(k, v)| (k, v)).collect()),
        _ => None,
    }
}

pub(super) fn entry_id(entry: &Value) -> Option<StreamId> {
    match entry {
        Value::Array(parts) => parts.first().and_then(bytes_of).and_then(StreamId::parse_bytes),
        _ => None,
    }
}

/// The field that marks an entry as a recorded gap.
pub(super) const GAP_FIELD: &str = "gap";

/// The field that marks an entry as the stream's end ([`RedisLog::finish`](super::RedisLog)).
pub(super) const END_FIELD: &str = "end";

/// The entries of an `XRANGE` reply (oldest first), up to the stream's end.
pub(super) fn parse_entries(reply: &Value) -> Result<Entries, String> {
    parse_items(reply).map(Entries::up_to_end)
}

/// Every entry of an `XRANGE` or `XREVRANGE` reply, in the reply's order.
pub(super) fn parse_items(reply: &Value) -> Result<Vec<Item>, String> {
    let items = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => return Err(format!("expected stream entries, got {other:?}")),
    };
    items
        .iter()
        .map(|item| parse_entry(item).ok_or_else(|| format!("not a stream entry: {item:?}")))
        .collect()
}

/// `[id, [field, value, …]]` → the event as appended (fields written by other producers are
/// read leniently: text that is not UTF-8 is replaced, unusable names are dropped), a
/// recorded gap, or the end.
pub(super) fn parse_entry(item: &Value) -> Option<Item> {
    let Value::Array(parts) = item else { return None };
    let id = parts.first().and_then(bytes_of).and_then(StreamId::parse_bytes)?;
    let fields = match parts.get(1) {
        Some(Value::Nil) | None => Vec::new(),
        Some(fields) => pairs_of(fields)?,
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(field, _)| bytes_of(field) == Some(name.as_bytes()))
            .and_then(|(_, value)| bytes_of(value))
            .map(String::from_utf8_lossy)
    };
    if field(END_FIELD).is_some() {
        return Some(Item::End(id));
    }
    if field(GAP_FIELD).is_some() {
        return Some(Item::Entry((id, None)));
    }
    let mut event = match field("data") {
        Some(data) => Event::new(data),
        None => Event::empty(),
    };
    if let Some(name) = field("name") {
        event = event.clone().with_name(name).unwrap_or(event);
    }
    if let Some(retry) = field("retry").and_then(|ms| ms.parse::<u64>().ok()) {
        event = event.with_retry(Duration::from_millis(retry));
    }
    if let Some(comment) = field("comment") {
        event = event.with_comment(comment);
    }
    Some(Item::Entry((id, Some(event.with_event_id(id.event_id())))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> StreamId {
        StreamId::parse(text).unwrap()
    }

    #[test]
    fn reads_entries_leniently_and_never_panics() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entry = Value::Array(vec![
            bulk("5-1"),
            Value::Array(vec![
                bulk("data"),
                bulk("a\nb"),
                bulk("name"),
                bulk("bad\nname"),
                bulk("retry"),
                bulk("250"),
            ]),
        ]);
        let Some(Item::Entry((got_id, Some(event)))) = parse_entry(&entry) else {
            panic!("an event");
        };
        assert_eq!(got_id, id("5-1"));
        assert_eq!((event.data(), event.name()), ("a\nb", None));
        assert_eq!(event.retry(), Some(Duration::from_millis(250)));
        assert_eq!(event.id().unwrap().as_str(), "5-1");
        for bad in [
            Value::Nil,
            Value::Int(3),
            Value::Array(vec![]),
            Value::Array(vec![bulk("x-1"), Value::Nil]),
            Value::Array(vec![bulk("5-1"), Value::Array(vec![bulk("odd")])]),
        ] {
            assert!(parse_entry(&bad).is_none(), "{bad:?}");
        }
        assert!(parse_entries(&Value::Int(1)).is_err());
    }

    #[test]
    fn the_end_entry_ends_what_is_read() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entry =
            |id: &str, field: &str| Value::Array(vec![bulk(id), Value::Array(vec![bulk(field), bulk("")])]);
        let reply = Value::Array(vec![
            entry("1-0", "data"),
            entry("2-0", GAP_FIELD),
            entry("3-0", END_FIELD),
            entry("4-0", "data"),
            entry("5-0", END_FIELD),
        ]);
        let read = parse_entries(&reply).unwrap();
        let ids: Vec<StreamId> = read.entries.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [id("1-0"), id("2-0")]);
        assert!(read.entries[1].1.is_none(), "a recorded gap");
        assert_eq!(
            read.end,
            Some(id("3-0")),
            "the first end counts; what follows is left out"
        );
        let none = parse_entries(&Value::Array(vec![entry("1-0", "data")])).unwrap();
        assert_eq!(none.end, None);
    }
}
