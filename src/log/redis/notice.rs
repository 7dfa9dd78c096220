//! The notice the append script publishes with each entry it adds: how a reader learns of
//! the entry, and usually takes it, without reading the stream.
//!
//! The message on the channel named like the stream is
//!
//! ```text
//! <id of the entry before> <id of the entry>\n<len>:<field><len>:<value>…
//! ```
//!
//! (each field and value as its length in bytes, a colon and its bytes). A reader whose
//! newest entry of the key is the entry before takes the entry from the notice: nothing was
//! added in between, since the script's `XREVRANGE` and `XADD` ran as one step. Any other
//! message on the channel (a notice that does not follow on, or a bare `SPUBLISH <key> ""`
//! from another program after its own `XADD`) only tells the reader to read the key.

use redis::Value;

use super::reply::parse_entry;
use crate::log::remote::Item;
use crate::log::remote::StreamId;

/// A message on a stream's channel.
#[derive(Debug)]
pub(super) enum Notice {
    /// The script's notice: the entry `item`, added right after `prev`.
    Added { prev: StreamId, item: Item },
    /// Something was added: read the key.
    Read,
}

impl Notice {
    /// Reads a message (never fails: what is not a whole notice means "read the key").
    pub(super) fn parse(message: &[u8]) -> Notice {
        Self::parse_added(message).unwrap_or(Notice::Read)
    }

    fn parse_added(message: &[u8]) -> Option<Notice> {
        let newline = message.iter().position(|&b| b == b'\n')?;
        let (head, mut rest) = (&message[..newline], &message[newline + 1..]);
        let head = std::str::from_utf8(head).ok()?;
        let (prev, id) = head.split_once(' ')?;
        let prev = StreamId::parse(prev)?;
        let id = StreamId::parse(id)?;
        if id <= prev {
            return None;
        }
        let mut fields = Vec::new();
        while !rest.is_empty() {
            let colon = rest.iter().take(21).position(|&b| b == b':')?;
            let len: usize = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
            let value = rest.get(colon + 1..colon + 1 + len)?;
            fields.push(Value::BulkString(value.to_vec()));
            rest = &rest[colon + 1 + len..];
        }
        if fields.is_empty() {
            return None;
        }
        let entry = Value::Array(vec![
            Value::BulkString(id.to_string().into_bytes()),
            Value::Array(fields),
        ]);
        let item = parse_entry(&entry)?;
        Some(Notice::Added { prev, item })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A notice as the script writes it.
    fn notice(prev: &str, id: &str, fields: &[&[u8]]) -> Vec<u8> {
        let mut message = format!("{prev} {id}\n").into_bytes();
        for field in fields {
            message.extend(format!("{}:", field.len()).into_bytes());
            message.extend_from_slice(field);
        }
        message
    }

    #[test]
    fn reads_the_scripts_notice() {
        let message = notice("5-0", "6-1", &[b"name", b"chat", b"data", b"a:b\n9:c"]);
        let Notice::Added { prev, item } = Notice::parse(&message) else {
            panic!("a notice");
        };
        assert_eq!(prev, StreamId { major: 5, seq: 0 });
        let Item::Entry((id, Some(event))) = item else {
            panic!("an event");
        };
        assert_eq!(id, StreamId { major: 6, seq: 1 });
        assert_eq!((event.name(), event.data()), (Some("chat"), "a:b\n9:c"));
        assert_eq!(event.id().unwrap().as_str(), "6-1");

        let end = notice("0-0", "7-0", &[b"end", b""]);
        assert!(matches!(
            Notice::parse(&end),
            Notice::Added {
                item: Item::End(_),
                ..
            }
        ));
        let gap = notice("7-0", "8-0", &[b"gap", b""]);
        assert!(matches!(
            Notice::parse(&gap),
            Notice::Added {
                item: Item::Entry((_, None)),
                ..
            }
        ));
    }

    #[test]
    fn anything_else_means_read_the_key_and_never_panics() {
        let mut bad: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"hello".to_vec(),
            b"5-0 6-0".to_vec(),
            b"5-0 6-0\n".to_vec(),
            b"6-0 5-0\n4:data1:x".to_vec(),
            b"x-0 6-0\n4:data1:x".to_vec(),
            b"5-0 6-0\n4:data9:x".to_vec(),
            b"5-0 6-0\n4:data".to_vec(),
            b"5-0 6-0\n99999999999999999999999:x".to_vec(),
            b"5-0 6-0\n-1:x".to_vec(),
            b"5-0 6-0\n4:data1:x3:odd".to_vec(),
        ];
        bad.push(notice("5-0", "6-0", &[b"data", b"x"])[..12].to_vec());
        for message in bad {
            assert!(
                matches!(Notice::parse(&message), Notice::Read),
                "{:?}",
                String::from_utf8_lossy(&message)
            );
        }
    }
}
