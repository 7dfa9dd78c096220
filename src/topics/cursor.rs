//! The composite cursor of a stream over several topics: `<topic>~<position>` for each
//! topic, joined by `,` (`kitchen~3f2a91c0-17,lobby~3f2a91c0-9`). Topic keys hold neither
//! `~` nor `,`, and no log's positions hold `~`, so a one-topic cursor is never read as
//! composite.

use crate::{CursorError, EventId, EventLog, LastEventId};

const KEY_END: char = '~';
const ENTRY_END: char = ',';

/// The longest position the budget assumes a topic's log issues: a Redis stream id of two
/// `u64`s (`MemoryLog` ids are shorter).
pub(crate) const MAX_POSITION_LEN: usize = 41;

/// The longest composite cursor `keys` can need.
pub(crate) fn budget<'a>(keys: impl Iterator<Item = &'a str>) -> usize {
    keys.map(|key| key.len() + 1 + MAX_POSITION_LEN + 1)
        .sum::<usize>()
        .saturating_sub(1)
}

/// What a client's cursor says about the topics of a request.
#[derive(Debug)]
pub(crate) enum Given<'a> {
    /// No cursor: every topic starts fresh.
    Nothing,
    /// A cursor of one topic's log (a stream of one topic issues its log's own ids).
    One(&'a LastEventId),
    /// A composite cursor: the position of each topic it names.
    Many(Vec<(&'a str, LastEventId)>),
}

/// Reads a client's cursor; `Err` for one that no stream of topics could have issued.
fn parse(cursor: Option<&LastEventId>) -> Result<Given<'_>, CursorError> {
    let Some(cursor) = cursor else {
        return Ok(Given::Nothing);
    };
    let text = cursor.as_str();
    if !text.contains(KEY_END) {
        return Ok(Given::One(cursor));
    }
    let mut named = Vec::new();
    for entry in text.split(ENTRY_END) {
        let (key, position) = entry.split_once(KEY_END).ok_or(CursorError::Unknown {
            reason: "a composite cursor is <topic>~<position>, separated by commas",
        })?;
        if super::key::validate(key).is_err() {
            return Err(CursorError::Unknown {
                reason: "a composite cursor names a topic by a valid topic key",
            });
        }
        if named.iter().any(|(seen, _)| *seen == key) {
            return Err(CursorError::Unknown {
                reason: "a composite cursor names each topic once",
            });
        }
        named.push((key, LastEventId::parse(position)?));
    }
    Ok(Given::Many(named))
}

/// Where one topic of a request starts.
#[derive(Debug)]
pub(crate) enum Start {
    /// Where a client without a cursor starts: the client never followed this topic.
    Fresh,
    /// After the client's position in this topic.
    After(LastEventId),
    /// Where a client without a cursor starts, after a gap: the client's cursor could not
    /// be placed in this topic.
    Gap,
}

impl Start {
    pub(crate) fn cursor(&self) -> Option<&LastEventId> {
        match self {
            Start::After(cursor) => Some(cursor),
            Start::Fresh | Start::Gap => None,
        }
    }

    pub(crate) fn is_gap(&self) -> bool {
        matches!(self, Start::Gap)
    }
}

/// A client's cursor, read against the topics a request asks for.
#[derive(Debug)]
pub(crate) struct Placement<'a> {
    given: Given<'a>,
    /// Whether the request asks for one topic (whose stream issues its log's own ids).
    single: bool,
    /// Whether a composite cursor names any of the requested topics.
    follows_any: bool,
}

impl<'a> Placement<'a> {
    /// Reads `cursor` for a request of the topics `keys`; `Err` for a malformed one.
    pub(crate) fn new<'k>(
        cursor: Option<&'a LastEventId>,
        keys: impl ExactSizeIterator<Item = &'k str>,
    ) -> Result<Self, CursorError> {
        let given = parse(cursor)?;
        let single = keys.len() == 1;
        let follows_any = match &given {
            Given::Many(named) => {
                let mut keys = keys;
                keys.any(|key| named.iter().any(|(named, _)| *named == key))
            }
            Given::Nothing | Given::One(_) => false,
        };
        Ok(Placement {
            given,
            single,
            follows_any,
        })
    }

    /// Where the topic `key` starts; `log` (the topic's) judges a position that cannot be
    /// placed, so that a malformed one is refused rather than taken for a gap.
    pub(crate) fn start<L: EventLog>(&self, key: &str, log: &L) -> Result<Start, CursorError> {
        Ok(match &self.given {
            Given::Nothing => Start::Fresh,
            Given::One(cursor) if self.single => Start::After((*cursor).clone()),
            Given::One(cursor) => {
                log.check_cursor(cursor)?;
                Start::Gap
            }
            Given::Many(named) => match named.iter().find(|(named, _)| *named == key) {
                Some((_, position)) => Start::After(position.clone()),
                // The composite cursor names every topic the client follows: this one is new.
                None if self.follows_any => Start::Fresh,
                // A cursor of a stream over other topics.
                None => {
                    for (_, position) in named {
                        log.check_cursor(position)?;
                    }
                    Start::Gap
                }
            },
        })
    }
}

/// The composite cursor of these positions, in order.
pub(crate) fn compose<'a>(positions: impl Iterator<Item = (&'a str, &'a EventId)>) -> EventId {
    let mut text = String::new();
    for (key, position) in positions {
        if !text.is_empty() {
            text.push(ENTRY_END);
        }
        text.push_str(key);
        text.push(KEY_END);
        text.push_str(position.as_str());
    }
    EventId::new(text).expect("topic keys and log positions hold no CR, LF or NUL")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composes_and_parses_back() {
        let a = EventId::new("3f2a91c0-17").unwrap();
        let b = EventId::new("1700000000000-3").unwrap();
        let cursor = compose([("kitchen", &a), ("lobby", &b)].into_iter());
        assert_eq!(cursor.as_str(), "kitchen~3f2a91c0-17,lobby~1700000000000-3");
        let cursor = LastEventId::parse(cursor.as_str()).unwrap();
        let Given::Many(parsed) = parse(Some(&cursor)).unwrap() else {
            panic!("a composite cursor")
        };
        let parsed: Vec<_> = parsed.iter().map(|(k, p)| (*k, p.as_str())).collect();
        assert_eq!(parsed, [("kitchen", "3f2a91c0-17"), ("lobby", "1700000000000-3")]);
        let one = LastEventId::parse("3f2a91c0-17").unwrap();
        assert!(matches!(parse(Some(&one)).unwrap(), Given::One(_)));
        assert!(matches!(parse(None).unwrap(), Given::Nothing));
        for malformed in ["kitchen~a,lobby", "~1", "a/b~1", "..~1", "a~1,a~2", "a~"] {
            let cursor = LastEventId::parse(malformed).unwrap();
            assert!(parse(Some(&cursor)).is_err(), "{malformed}");
        }
        assert_eq!(budget(["ab", "c"].into_iter()), (2 + 1 + 41) + 1 + (1 + 1 + 41));
    }
}
