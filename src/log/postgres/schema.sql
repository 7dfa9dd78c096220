-- tower-eventstream: the event log in PostgreSQL (13 or later). Safe to run again: every
-- object is created if missing and every function replaced, in one transaction, under a lock
-- so that instances starting together do not race.

BEGIN;
SELECT pg_advisory_xact_lock(1702262132, 0);

-- The events of every topic. An application adds events with plain SQL in its own
-- transaction: INSERT INTO eventstream_events (topic, name, data) VALUES (...).
-- Readers see an event once that transaction commits, and never if it rolls back.
CREATE TABLE IF NOT EXISTS eventstream_events (
    topic    text        NOT NULL,
    -- The adding transaction's id (set by the trigger below): events are read in
    -- (xid, seq) order, and only once no transaction with a smaller id can still commit.
    xid      xid8        NOT NULL DEFAULT pg_current_xact_id(),
    seq      bigint      GENERATED ALWAYS AS IDENTITY,
    -- 'event'; 'gap' (events were lost before this point); 'end' (added by eventstream_finish).
    kind     text        NOT NULL DEFAULT 'event' CHECK (kind IN ('event', 'gap', 'end')),
    -- The SSE event name (NULL: the default, `message`), its data (NULL: an event without
    -- data), the client's reconnection delay in milliseconds and a comment.
    name     text,
    data     text,
    retry_ms bigint      CHECK (retry_ms >= 0),
    comment  text,
    added    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, xid, seq)
);
CREATE INDEX IF NOT EXISTS eventstream_events_order ON eventstream_events (xid, seq);

-- Per topic: the position after which every event is still held (trimming raises it), and
-- the end once the topic is finished.
CREATE TABLE IF NOT EXISTS eventstream_topics (
    topic     text   PRIMARY KEY,
    floor_xid xid8   NOT NULL DEFAULT '0',
    floor_seq bigint NOT NULL DEFAULT 0,
    end_xid   xid8,
    end_seq   bigint
);

-- Idempotency keys remembered by eventstream_append_once.
CREATE TABLE IF NOT EXISTS eventstream_once (
    topic       text        NOT NULL,
    key         text        NOT NULL,
    fingerprint text        NOT NULL,
    expires     timestamptz NOT NULL,
    event_xid   xid8,
    event_seq   bigint,
    PRIMARY KEY (topic, key)
);

-- Every added row: its transaction's id, and no event after a topic's end. The shared lock
-- orders it against eventstream_finish, which takes the same lock exclusively. Topics share
-- 16 locks (by a hash of their name), so that a transaction adding to ten thousand topics
-- holds 16 locks at most, not ten thousand (the server's lock table is bounded).
CREATE OR REPLACE FUNCTION eventstream_before_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    finished boolean;
BEGIN
    NEW.xid := pg_current_xact_id();
    IF NEW.kind = 'end' THEN
        IF current_setting('eventstream.finishing', true) IS DISTINCT FROM NEW.topic THEN
            RAISE EXCEPTION 'eventstream: finish topic % with SELECT eventstream_finish(...), not by adding an end row', NEW.topic
                USING ERRCODE = 'ES003';
        END IF;
        RETURN NEW;
    END IF;
    PERFORM pg_advisory_xact_lock_shared(1702262133, hashtext(NEW.topic) & 15);
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        -- A snapshot older than a finish must not miss it: locking the topic's row fails
        -- this transaction (serialization failure, retry it) if a finish changed it since.
        INSERT INTO eventstream_topics (topic) VALUES (NEW.topic) ON CONFLICT DO NOTHING;
        PERFORM 1 FROM eventstream_topics WHERE topic = NEW.topic FOR KEY SHARE;
    END IF;
    SELECT end_xid IS NOT NULL INTO finished FROM eventstream_topics WHERE topic = NEW.topic;
    IF finished THEN
        RAISE EXCEPTION 'eventstream: topic % is finished: nothing can be added to it', NEW.topic
            USING ERRCODE = 'ES001';
    END IF;
    RETURN NEW;
END
$$;

-- One notification per committing transaction that added rows (PostgreSQL folds equal
-- notifications of a transaction into one), whatever the topics, naming the transaction:
-- readers then read, unless their last read already saw it.
CREATE OR REPLACE FUNCTION eventstream_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('eventstream', pg_current_xact_id()::text);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS eventstream_before_insert ON eventstream_events;
CREATE TRIGGER eventstream_before_insert BEFORE INSERT ON eventstream_events
    FOR EACH ROW EXECUTE FUNCTION eventstream_before_insert();
DROP TRIGGER IF EXISTS eventstream_notify ON eventstream_events;
CREATE TRIGGER eventstream_notify AFTER INSERT ON eventstream_events
    FOR EACH STATEMENT EXECUTE FUNCTION eventstream_notify();

-- Ends a topic: adds its end row, after every event of it, and refuses events from now on.
-- Returns the end's position, `<xid>-<seq>` (the first end's, if it was finished before).
-- The exclusive lock waits for every transaction adding to the topic; the end row's
-- transaction id is taken after that, so it is greater than all of theirs.
CREATE OR REPLACE FUNCTION eventstream_finish(p_topic text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    end_at text;
    new_xid xid8;
    new_seq bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(1702262133, hashtext(p_topic) & 15);
    SELECT end_xid::text || '-' || end_seq INTO end_at
        FROM eventstream_topics WHERE topic = p_topic AND end_xid IS NOT NULL;
    IF end_at IS NOT NULL THEN
        RETURN end_at;
    END IF;
    IF EXISTS (SELECT 1 FROM eventstream_events
               WHERE topic = p_topic AND xid > pg_current_xact_id_if_assigned()) THEN
        RAISE EXCEPTION 'eventstream: finish topic % in a transaction of its own, or before this transaction adds anything else: events committed since it began would come after the end', p_topic
            USING ERRCODE = 'ES003';
    END IF;
    PERFORM set_config('eventstream.finishing', p_topic, true);
    INSERT INTO eventstream_events (topic, kind) VALUES (p_topic, 'end') RETURNING xid, seq INTO new_xid, new_seq;
    PERFORM set_config('eventstream.finishing', '', true);
    INSERT INTO eventstream_topics AS t (topic, end_xid, end_seq) VALUES (p_topic, new_xid, new_seq)
        ON CONFLICT (topic) DO UPDATE SET end_xid = new_xid, end_seq = new_seq;
    RETURN new_xid::text || '-' || new_seq;
END
$$;

-- Adds an event unless one was added with the same key within the window: returns
-- ('new' | 'repeat', position) or ('reused', NULL) when the key was used for another event
-- (another fingerprint).
CREATE OR REPLACE FUNCTION eventstream_append_once(
    p_topic text, p_key text, p_fingerprint text, p_window_ms bigint,
    p_name text, p_data text, p_retry_ms bigint, p_comment text,
    OUT outcome text, OUT at text
)
LANGUAGE plpgsql AS $$
DECLARE
    claimed boolean;
    known record;
    new_xid xid8;
    new_seq bigint;
BEGIN
    INSERT INTO eventstream_once AS o (topic, key, fingerprint, expires)
        VALUES (p_topic, p_key, p_fingerprint, now() + p_window_ms * interval '1 millisecond')
        ON CONFLICT (topic, key) DO UPDATE
            SET fingerprint = excluded.fingerprint, expires = excluded.expires,
                event_xid = NULL, event_seq = NULL
            WHERE o.expires <= now()
        RETURNING true INTO claimed;
    IF claimed THEN
        INSERT INTO eventstream_events (topic, name, data, retry_ms, comment)
            VALUES (p_topic, p_name, p_data, p_retry_ms, p_comment)
            RETURNING xid, seq INTO new_xid, new_seq;
        UPDATE eventstream_once SET event_xid = new_xid, event_seq = new_seq
            WHERE topic = p_topic AND key = p_key;
        outcome := 'new';
        at := new_xid::text || '-' || new_seq;
        RETURN;
    END IF;
    SELECT fingerprint, event_xid::text || '-' || event_seq AS event_at INTO known
        FROM eventstream_once WHERE topic = p_topic AND key = p_key;
    IF known.fingerprint <> p_fingerprint THEN
        outcome := 'reused';
    ELSE
        outcome := 'repeat';
        at := known.event_at;
    END IF;
END
$$;

-- Trimming: for each of p_topics, keeps its newest p_keep rows (NULL: no limit by count);
-- everywhere, removes rows added more than p_max_age ago (NULL: no limit by age), the
-- oldest first, at most p_batch of them; and forgets expired idempotency keys. Each topic's
-- floor rises past what was removed, so that a cursor from before it is a gap. Rows that a
-- transaction may still be filling in around (at or after the horizon) are left alone.
-- Returns the rows removed, or NULL if another instance is trimming now.
CREATE OR REPLACE FUNCTION eventstream_trim(
    p_topics text[], p_keep bigint, p_max_age interval, p_batch integer
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    horizon xid8 := pg_snapshot_xmin(pg_current_snapshot());
    one text;
    cut record;
    removed bigint := 0;
    n bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(1702262132, 1) THEN
        RETURN NULL;
    END IF;
    IF p_keep IS NOT NULL THEN
        FOREACH one IN ARRAY p_topics LOOP
            SELECT xid, seq INTO cut FROM eventstream_events
                WHERE topic = one AND kind <> 'end' AND xid < horizon
                ORDER BY xid DESC, seq DESC OFFSET p_keep LIMIT 1;
            CONTINUE WHEN NOT FOUND;
            DELETE FROM eventstream_events
                WHERE topic = one AND kind <> 'end' AND (xid, seq) <= (cut.xid, cut.seq);
            GET DIAGNOSTICS n = ROW_COUNT;
            removed := removed + n;
            INSERT INTO eventstream_topics AS t (topic, floor_xid, floor_seq)
                VALUES (one, cut.xid, cut.seq)
                ON CONFLICT (topic) DO UPDATE
                    SET floor_xid = excluded.floor_xid, floor_seq = excluded.floor_seq
                    WHERE (t.floor_xid, t.floor_seq) < (excluded.floor_xid, excluded.floor_seq);
        END LOOP;
    END IF;
    IF p_max_age IS NOT NULL THEN
        WITH gone AS (
            DELETE FROM eventstream_events e
                -- The oldest rows (in the order rows are read, close to the order they were
                -- added): a bounded look, whatever the table holds.
                USING (SELECT topic, xid, seq, added FROM eventstream_events
                       WHERE xid < horizon ORDER BY xid, seq LIMIT p_batch) old
                WHERE old.added < now() - p_max_age
                  AND e.topic = old.topic AND e.xid = old.xid AND e.seq = old.seq
                RETURNING e.topic, e.xid, e.seq
        ), floors AS (
            SELECT DISTINCT ON (topic) topic, xid, seq FROM gone ORDER BY topic, xid DESC, seq DESC
        ), counted AS (
            SELECT count(*) AS rows FROM gone
        ), raised AS (
            INSERT INTO eventstream_topics AS t (topic, floor_xid, floor_seq)
                SELECT topic, xid, seq FROM floors
                ON CONFLICT (topic) DO UPDATE
                    SET floor_xid = excluded.floor_xid, floor_seq = excluded.floor_seq
                    WHERE (t.floor_xid, t.floor_seq) < (excluded.floor_xid, excluded.floor_seq)
        )
        SELECT rows INTO n FROM counted;
        removed := removed + n;
    END IF;
    DELETE FROM eventstream_once WHERE expires < now();
    RETURN removed;
END
$$;

COMMIT;
