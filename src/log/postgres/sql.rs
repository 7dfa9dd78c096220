//! The statements the crate runs, each prepared once per connection.
//!
//! Every read that decides what a reader may take states it in one statement, so that the
//! horizon (`pg_snapshot_xmin` of the statement's own snapshot: every transaction with a
//! smaller id has ended) and the rows come from one snapshot. Rows at or after the horizon
//! are never taken: a transaction still open may yet commit rows before them.

/// The schema (tables, triggers, functions), safe to run again.
pub(super) const SCHEMA: &str = include_str!("schema.sql");

/// An event: `(topic, name, data, retry_ms, comment)` → `(xid, seq)`.
pub(super) const APPEND: &str = "INSERT INTO eventstream_events (topic, name, data, retry_ms, comment) \
     VALUES ($1, $2, $3, $4, $5) RETURNING xid::text, seq";

/// An event under an idempotency key: `(topic, key, fingerprint, window_ms, name, data,
/// retry_ms, comment)` → `(outcome, at)`.
pub(super) const APPEND_ONCE: &str =
    "SELECT outcome, at FROM eventstream_append_once($1, $2, $3, $4, $5, $6, $7, $8)";

/// A recorded gap: `(topic)` → `(xid, seq)`.
pub(super) const GAP: &str =
    "INSERT INTO eventstream_events (topic, kind) VALUES ($1, 'gap') RETURNING xid::text, seq";

/// The end: `(topic)` → the end's position, `<xid>-<seq>`.
pub(super) const FINISH: &str = "SELECT eventstream_finish($1)";

/// A read of one topic's rows (`rows` picks and orders them), with the topic's floor and end:
/// one row per event (none: a single row of NULL event columns), each with `(horizon, next
/// xid, floor xid, floor seq, end xid, end seq)` first.
macro_rules! topic_read {
    ($rows:literal) => {
        concat!(
            "WITH s AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon, ",
            "pg_snapshot_xmax(pg_current_snapshot()) AS next) ",
            "SELECT s.horizon::text, s.next::text, t.floor_xid::text, t.floor_seq, t.end_xid::text, t.end_seq, ",
            "e.xid::text, e.seq, e.kind, e.name, e.data, e.retry_ms, e.comment ",
            "FROM s LEFT JOIN eventstream_topics t ON t.topic = $1 ",
            "LEFT JOIN LATERAL (SELECT xid, seq, kind, name, data, retry_ms, comment FROM eventstream_events ",
            "WHERE topic = $1 AND xid < s.horizon ",
            $rows,
            ") e ON true ORDER BY e.xid, e.seq"
        )
    };
}

/// A topic's rows after a cursor: `(topic, cursor xid, cursor seq, limit)`.
pub(super) const FETCH: &str =
    topic_read!("AND (xid, seq) > ($2::text::xid8, $3) ORDER BY xid, seq LIMIT $4");

/// A topic's newest rows: `(topic, limit)`.
pub(super) const NEWEST: &str = topic_read!("ORDER BY xid DESC, seq DESC LIMIT $2");

/// A topic's end, if it is finished: `(topic)` → `(xid, seq)`.
pub(super) const TOPIC_END: &str = "SELECT end_xid::text, end_seq FROM eventstream_topics \
     WHERE topic = $1 AND end_xid IS NOT NULL";

/// Every topic's rows after the reader's position: `(xid, seq, limit)` → one row per event
/// (none: a single row of NULL event columns), each with `(horizon, waiting)` first;
/// `waiting` tells that committed rows wait behind the horizon (an older transaction is still
/// open), so that the reader looks again without a notification.
pub(super) const READ_ALL: &str = "WITH s AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon) \
     SELECT s.horizon::text, \
            (SELECT w.xid FROM eventstream_events w WHERE w.xid >= s.horizon ORDER BY w.xid LIMIT 1) IS NOT NULL, \
            e.topic, e.xid::text, e.seq, e.kind, e.name, e.data, e.retry_ms, e.comment \
     FROM s LEFT JOIN LATERAL (SELECT topic, xid, seq, kind, name, data, retry_ms, comment \
         FROM eventstream_events WHERE (xid, seq) > ($1::text::xid8, $2) AND xid < s.horizon \
         ORDER BY xid, seq LIMIT $3) e ON true \
     ORDER BY e.xid, e.seq";

/// Where the reader starts, and whether its position `(xid, seq)` still holds: `(next xid,
/// xid, seq of the newest row before the horizon (NULL: no row), held)`. The position holds
/// when its row is there or a topic's floor has passed it (trimmed); a reader whose position
/// does not hold, or is at or after the next xid, finds the database's history rewound
/// (restored from a backup, say).
pub(super) const HEAD: &str = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text, h.xid::text, h.seq, \
            ($2::bigint = 0 OR EXISTS (SELECT 1 FROM eventstream_events WHERE xid = $1::text::xid8 AND seq = $2) \
             OR EXISTS (SELECT 1 FROM eventstream_topics WHERE (floor_xid, floor_seq) >= ($1::text::xid8, $2))) \
     FROM (SELECT 1) AS one LEFT JOIN LATERAL (SELECT xid, seq FROM eventstream_events \
         WHERE xid < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY xid DESC, seq DESC LIMIT 1) h ON true";

/// One trimming pass: `(topics, keep, max_age_ms, batch)` → rows removed (NULL: another
/// instance is trimming).
pub(super) const TRIM: &str = "SELECT eventstream_trim($1, $2, $3::bigint * interval '1 millisecond', $4)";
