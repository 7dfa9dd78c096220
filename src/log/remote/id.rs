//! Positions in a remote log: `<major>-<seq>`, two numbers ordered as a pair.

use std::fmt;

use crate::EventId;

/// A position in a remote log: a Redis stream id (`<milliseconds>-<sequence>`), or a PostgreSQL
/// row's `<transaction id>-<sequence>`; ordered as a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct StreamId {
    pub(crate) major: u64,
    pub(crate) seq: u64,
}

impl StreamId {
    /// `0-0`: before every entry. The position of a stream that does not exist.
    pub(crate) const ZERO: StreamId = StreamId { major: 0, seq: 0 };

    pub(crate) fn parse(text: &str) -> Option<StreamId> {
        fn number(digits: &str) -> Option<u64> {
            let plain =
                !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit());
            plain.then(|| digits.parse().ok()).flatten()
        }
        let (ms, seq) = text.split_once('-')?;
        Some(StreamId {
            major: number(ms)?,
            seq: number(seq)?,
        })
    }

    #[cfg(feature = "redis")]
    pub(crate) fn parse_bytes(bytes: &[u8]) -> Option<StreamId> {
        std::str::from_utf8(bytes).ok().and_then(StreamId::parse)
    }

    /// The greatest id below this one: no id lies between the two.
    pub(crate) fn pred(self) -> StreamId {
        match (self.major, self.seq) {
            (_, seq) if seq > 0 => StreamId {
                major: self.major,
                seq: seq - 1,
            },
            (ms, _) if ms > 0 => StreamId {
                major: ms - 1,
                seq: u64::MAX,
            },
            _ => StreamId::ZERO,
        }
    }

    pub(crate) fn event_id(self) -> EventId {
        EventId::new(self.to_string()).expect("digits and a dash are a valid event id")
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.major, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> StreamId {
        StreamId::parse(text).unwrap()
    }

    #[test]
    fn parses_and_orders_stream_ids() {
        assert_eq!(id("0-0"), StreamId::ZERO);
        assert!(id("5-0") < id("5-1") && id("5-9") < id("6-0"));
        assert_eq!(id("18446744073709551615-3").to_string(), "18446744073709551615-3");
        for bad in [
            "",
            "5",
            "5-",
            "-5",
            "a-1",
            "1-b",
            "+1-0",
            "1-0-0",
            " 1-0",
            "18446744073709551616-0",
            "1_0",
        ] {
            assert!(StreamId::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn the_predecessor_leaves_no_room_for_an_id() {
        assert_eq!(id("7-3").pred(), id("7-2"));
        assert_eq!(
            id("7-0").pred(),
            StreamId {
                major: 6,
                seq: u64::MAX
            }
        );
        assert_eq!(StreamId::ZERO.pred(), StreamId::ZERO);
    }
}
