//! How a [`MemoryLog`](super::MemoryLog) names positions: `<epoch>-<sequence>` for the ids
//! it assigns itself, `<name>-<source id>` for a log that keeps its source's ids.

use crate::{CursorError, EventId, LastEventId};

/// A place in a memory log, ordered as the log is. Events a log numbers itself have
/// `(sequence, 0)`; in a log that keeps source ids, `(source id, 0)` for an event that
/// brought its id, and `(last source id, k)` for the k-th event after it that brought none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Position {
    pub(crate) number: u64,
    pub(crate) after: u64,
}

impl Position {
    pub(crate) fn at(number: u64) -> Self {
        Position { number, after: 0 }
    }
}

/// The longest name of a log that keeps source ids.
pub(crate) const MAX_NAME_LEN: usize = 32;

/// The id scheme of one log.
#[derive(Debug, Clone)]
pub(crate) enum Ids {
    /// Ids the log assigns: a random epoch per instance and consecutive numbers.
    Sequence { epoch: String },
    /// The source's own decimal ids, under a name that outlives the process.
    Source { name: String },
}

impl Ids {
    pub(crate) fn prefix(&self) -> &str {
        match self {
            Ids::Sequence { epoch } => epoch,
            Ids::Source { name } => name,
        }
    }

    pub(crate) fn keeps_source_ids(&self) -> bool {
        matches!(self, Ids::Source { .. })
    }

    pub(crate) fn id_for(&self, at: Position) -> EventId {
        let text = if at.after == 0 {
            format!("{}-{}", self.prefix(), at.number)
        } else {
            format!("{}-{}.{}", self.prefix(), at.number, at.after)
        };
        EventId::new(text).expect("a valid prefix and digits are valid id text")
    }

    /// Reads a cursor: `Ok(None)` when it is from another log (another instance, or a log of
    /// another name).
    pub(crate) fn parse_cursor(&self, cursor: &LastEventId) -> Result<Option<Position>, CursorError> {
        let (prefix, rest) = cursor.as_str().split_once('-').ok_or(CursorError::Unknown {
            reason: "expected <epoch>-<sequence>",
        })?;
        match self {
            Ids::Sequence { .. } => {
                let well_formed =
                    prefix.len() == 8 && prefix.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                if !well_formed {
                    return Err(CursorError::Unknown {
                        reason: "the epoch is not 8 lowercase hex digits",
                    });
                }
            }
            Ids::Source { .. } => {
                if validate_name(prefix).is_err() {
                    return Err(CursorError::Unknown {
                        reason: "the log name is not 1 to 32 ASCII letters, digits or `_`",
                    });
                }
            }
        }
        let (number, after) = match rest.split_once('.') {
            Some((number, after)) if self.keeps_source_ids() => (number, Some(after)),
            _ => (rest, None),
        };
        let number = decimal(number)?;
        let after = match after {
            Some(after) => match decimal(after)? {
                0 => {
                    return Err(CursorError::Unknown {
                        reason: "the sequence is not a decimal number",
                    })
                }
                after => after,
            },
            None => 0,
        };
        Ok((prefix == self.prefix()).then_some(Position { number, after }))
    }
}

/// A canonical decimal `u64`: leading zeros are a spelling the log never issues.
fn decimal(digits: &str) -> Result<u64, CursorError> {
    let canonical = digits.len() == 1 || !digits.starts_with('0');
    if digits.is_empty() || digits.len() > 20 || !canonical || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CursorError::Unknown {
            reason: "the sequence is not a decimal number",
        });
    }
    digits.parse().map_err(|_| CursorError::Unknown {
        reason: "the sequence is out of range",
    })
}

/// Whether `name` may name a log that keeps source ids: 1 to 32 ASCII letters, digits or `_`.
pub(crate) fn validate_name(name: &str) -> Result<(), LogNameError> {
    let reason = if name.is_empty() || name.len() > MAX_NAME_LEN {
        "a log name is 1 to 32 characters long"
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        "a log name holds only ASCII letters, digits and `_`"
    } else {
        return Ok(());
    };
    Err(LogNameError {
        name: name.chars().take(MAX_NAME_LEN + 8).collect(),
        reason,
    })
}

/// The name given to [`MemoryLogBuilder::source_ids`](crate::MemoryLogBuilder::source_ids) is
/// not one a cursor can carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogNameError {
    name: String,
    reason: &'static str,
}

impl std::fmt::Display for LogNameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid log name {:?}: {}", self.name, self.reason)
    }
}

impl std::error::Error for LogNameError {}

/// The source id an event brought, if it is a canonical decimal number.
pub(crate) fn source_id(id: Option<&EventId>) -> Option<u64> {
    decimal(id?.as_str()).ok()
}
