//! The composite cursor of a stream over several topics: `<topic>~<position>` for each
//! topic, joined by `,` (`kitchen~3f2a91c0-17,lobby~3f2a91c0-9`). Topic keys hold neither
//! `~` nor `,`, and no log's positions hold `~`, so a one-topic cursor is never read as
//! composite.

use crate::{CursorError, EventId, LastEventId};

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

/// The position of each topic a composite cursor names (none for a cursor of one topic).
pub(crate) fn parse(cursor: &LastEventId) -> Result<Vec<(&str, LastEventId)>, CursorError> {
    let text = cursor.as_str();
    if !text.contains(KEY_END) {
        return Ok(Vec::new());
    }
    text.split(ENTRY_END)
        .map(|entry| {
            let (key, position) = entry.split_once(KEY_END).ok_or(CursorError::Unknown {
                reason: "a composite cursor is <topic>~<position>, separated by commas",
            })?;
            Ok((key, LastEventId::parse(position)?))
        })
        .collect()
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
        let parsed = parse(&cursor).unwrap();
        let parsed: Vec<_> = parsed.iter().map(|(k, p)| (*k, p.as_str())).collect();
        assert_eq!(parsed, [("kitchen", "3f2a91c0-17"), ("lobby", "1700000000000-3")]);
        assert!(parse(&LastEventId::parse("3f2a91c0-17").unwrap())
            .unwrap()
            .is_empty());
        assert!(parse(&LastEventId::parse("kitchen~a,lobby").unwrap()).is_err());
        assert_eq!(budget(["ab", "c"].into_iter()), (2 + 1 + 41) + 1 + (1 + 1 + 41));
    }
}
