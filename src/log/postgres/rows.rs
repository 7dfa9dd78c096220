//! Reading rows (never panics: a row of another shape is an error).

use std::time::Duration;

use tokio_postgres::Row;

use crate::log::remote::{Continuity, Entries, Fetched, Item, StreamId};
use crate::Event;

/// A position from its transaction id (as text: `xid8` has no binary mapping here) and its
/// sequence.
pub(super) fn position(xid: &str, seq: i64) -> Result<StreamId, String> {
    let major = xid
        .parse::<u64>()
        .map_err(|_| format!("not a transaction id: {xid:?}"))?;
    let seq = u64::try_from(seq).map_err(|_| format!("a negative sequence: {seq}"))?;
    Ok(StreamId { major, seq })
}

/// The position in columns `at` (xid) and `at + 1` (seq), if not NULL.
pub(super) fn position_at(row: &Row, at: usize) -> Result<Option<StreamId>, String> {
    let xid: Option<&str> = get(row, at)?;
    let seq: Option<i64> = get(row, at + 1)?;
    match (xid, seq) {
        (Some(xid), Some(seq)) => position(xid, seq).map(Some),
        _ => Ok(None),
    }
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, at: usize) -> Result<T, String> {
    row.try_get(at).map_err(|error| format!("column {at}: {error}"))
}

/// The row's entry, from column `at` on (`xid, seq, kind, name, data, retry_ms, comment`);
/// `None` when its columns are NULL (a read that found no row).
pub(super) fn item_at(row: &Row, at: usize) -> Result<Option<Item>, String> {
    let Some(id) = position_at(row, at)? else {
        return Ok(None);
    };
    let kind: &str = get(row, at + 2)?;
    match kind {
        "end" => return Ok(Some(Item::End(id))),
        "gap" => return Ok(Some(Item::Entry((id, None)))),
        "event" => {}
        other => return Err(format!("a row of unknown kind {other:?}")),
    }
    let name: Option<&str> = get(row, at + 3)?;
    let data: Option<&str> = get(row, at + 4)?;
    let retry_ms: Option<i64> = get(row, at + 5)?;
    let comment: Option<&str> = get(row, at + 6)?;
    let mut event = data.map_or_else(Event::empty, Event::new);
    if let Some(name) = name {
        // A name an SSE event cannot carry (written by another program): the event goes out
        // as a `message`, as on Redis.
        event = event.clone().with_name(name).unwrap_or(event);
    }
    if let Some(ms) = retry_ms.and_then(|ms| u64::try_from(ms).ok()) {
        event = event.with_retry(Duration::from_millis(ms));
    }
    if let Some(comment) = comment {
        event = event.with_comment(comment);
    }
    Ok(Some(Item::Entry((id, Some(event.with_event_id(id.event_id()))))))
}

/// How far apart PostgreSQL lets two live transaction ids be (2³¹, its wraparound limit): a
/// cursor further ahead of the next id than this is no position of this database's.
const MAX_XID_DISTANCE: u64 = 1 << 31;

/// What a read of one topic ([`FETCH`](super::sql::FETCH) or
/// [`NEWEST`](super::sql::NEWEST)) found.
pub(super) struct TopicRead {
    /// Every transaction with a smaller id has ended.
    horizon: u64,
    /// No transaction has this id or a greater one yet.
    next: u64,
    /// Every row after it is held.
    floor: StreamId,
    /// The topic's end, if it is finished.
    end: Option<StreamId>,
    /// The rows, in order.
    items: Vec<Item>,
}

impl TopicRead {
    pub(super) fn parse(rows: &[Row]) -> Result<TopicRead, String> {
        let first = rows.first().ok_or("no row for the snapshot")?;
        let number = |at: usize| -> Result<u64, String> {
            let text: &str = get(first, at)?;
            text.parse()
                .map_err(|_| format!("not a transaction id: {text:?}"))
        };
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            items.extend(item_at(row, 6)?);
        }
        Ok(TopicRead {
            horizon: number(0)?,
            next: number(1)?,
            floor: position_at(first, 2)?.unwrap_or(StreamId::ZERO),
            end: position_at(first, 4)?,
            items,
        })
    }

    /// The end, once no transaction that ended before it may still show rows before it.
    fn final_end(&self) -> Option<StreamId> {
        self.end.filter(|end| end.major < self.horizon)
    }

    /// The read after `cursor` ([`FETCH`](super::sql::FETCH) with up to `limit` rows): its
    /// entries and whether they follow the cursor.
    ///
    /// A cursor at or after the floor resumes (every row after it is held); one before it is
    /// a gap, going on from the floor. A cursor naming a transaction that has not begun yet
    /// comes from history the database lost (restored from a backup, failed over to a replica
    /// that lagged): a gap too, unless it is further ahead than PostgreSQL lets transaction
    /// ids be apart ([`MAX_XID_DISTANCE`]): then this database never issued it.
    pub(super) fn after(self, cursor: StreamId, limit: usize) -> Fetched {
        if cursor.major >= self.next.saturating_add(MAX_XID_DISTANCE) {
            return Fetched {
                continuity: Continuity::Future { restart: self.floor },
                entries: Vec::new(),
                end: None,
            };
        }
        if cursor < self.floor || cursor.major >= self.next {
            return Fetched {
                continuity: Continuity::Gap { restart: self.floor },
                entries: Vec::new(),
                end: None,
            };
        }
        let full = self.items.len() >= limit;
        let final_end = self.final_end();
        let Entries { entries, mut end } = Entries::up_to_end(self.items);
        if end.is_none() && !full {
            // Every row up to a final end was read (each has a smaller transaction id): the
            // end row itself may be trimmed away, or the cursor at it; the topic's row tells.
            end = final_end;
        }
        Fetched {
            continuity: Continuity::Continuous,
            entries,
            end,
        }
    }

    /// The newest rows ([`NEWEST`](super::sql::NEWEST) with up to `n + 1` rows): the last `n`
    /// entries and the end.
    pub(super) fn newest(self, n: usize) -> Entries {
        let final_end = self.final_end();
        let mut newest = Entries::up_to_end(self.items);
        newest.end = newest.end.or(final_end);
        let extra = newest.entries.len().saturating_sub(n);
        newest.entries.drain(..extra);
        newest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_from_the_columns_and_refuse_garbage() {
        assert_eq!(position("42", 7), Ok(StreamId { major: 42, seq: 7 }));
        assert!(position("-1", 7).is_err());
        assert!(position("x", 7).is_err());
        assert!(position("1", -7).is_err());
    }

    fn read(floor: StreamId, end: Option<StreamId>, ids: &[(u64, u64)]) -> TopicRead {
        TopicRead {
            horizon: 100,
            next: 110,
            floor,
            end,
            items: ids
                .iter()
                .map(|&(major, seq)| Item::Entry((StreamId { major, seq }, None)))
                .collect(),
        }
    }

    fn at(major: u64, seq: u64) -> StreamId {
        StreamId { major, seq }
    }

    #[test]
    fn a_cursor_before_the_floor_or_from_lost_history_is_a_gap_and_an_impossible_one_is_refused() {
        let floor = at(10, 5);
        assert!(
            matches!(read(floor, None, &[]).after(at(10, 4), 8).continuity, Continuity::Gap { restart } if restart == floor)
        );
        assert!(matches!(
            read(floor, None, &[]).after(floor, 8).continuity,
            Continuity::Continuous
        ));
        assert!(matches!(
            read(floor, None, &[]).after(at(109, 0), 8).continuity,
            Continuity::Continuous
        ));
        // Ahead of the next id: lost history (a restore), unless no database could be there.
        assert!(matches!(
            read(floor, None, &[]).after(at(110, 0), 8).continuity,
            Continuity::Gap { restart } if restart == floor
        ));
        assert!(matches!(
            read(floor, None, &[])
                .after(at(110 + MAX_XID_DISTANCE, 0), 8)
                .continuity,
            Continuity::Future { .. }
        ));
    }

    #[test]
    fn the_topic_row_tells_the_end_once_it_is_final_and_the_read_is_not_cut_short() {
        let end = Some(at(50, 9));
        assert_eq!(read(StreamId::ZERO, end, &[(40, 1)]).after(at(30, 0), 8).end, end);
        assert_eq!(
            read(StreamId::ZERO, end, &[]).after(at(50, 9), 8).end,
            end,
            "at the end"
        );
        assert_eq!(
            read(StreamId::ZERO, end, &[(40, 1)]).after(at(30, 0), 1).end,
            None,
            "a full batch: more may come"
        );
        let mut later = read(StreamId::ZERO, Some(at(100, 1)), &[(40, 1)]);
        assert_eq!(
            later.final_end(),
            None,
            "the end's transaction is not behind the horizon"
        );
        later.end = None;
        assert_eq!(later.after(at(30, 0), 8).end, None);
    }
}
