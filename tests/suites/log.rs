//! The behaviour every [`EventLog`] shares, written once over a [`Backend`]: how events
//! arrive, how cursors resume, where a client without one starts, trimmed history and
//! recorded gaps, the end, idempotent appends, refused cursors, concurrent appends and
//! several readers of one topic. `tests/log_backends.rs` runs it on `MemoryLog`, `RedisLog`
//! (feature `redis`) and `PostgresLog` (feature `postgres`), one `#[tokio::test]` per
//! behaviour and backend (`memory::resumes_after_a_cursor_exactly`).
//!
//! Where the backends legitimately differ (what a cursor "ahead of the log" is, whether
//! another instance of a topic exists, how history is trimmed), the [`Backend`] says so and
//! the suite asserts each backend's own rule.

use std::fmt::Debug;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Barrier;

use tower_eventstream::{
    AppendError, Appended, Delivery, Event, EventFeed, EventId, EventLog, IdempotencyKey, LastEventId,
    ResumeOutcome, StartPosition, SubscribeError, Subscription,
};

use crate::support::feed::{append, cursor, labels, next, subscribe};
use crate::support::within;

/// One kind of log, as the suite needs it. Each test calls [`start`](Backend::start) once
/// (a server of its own for Redis and PostgreSQL) and makes its logs from it.
pub trait Backend: Sized {
    type Log: EventLog<Subscription: Subscription<Error: Debug>>;

    /// Ready to make logs, or `None` (after a loud warning, outside CI) when the backend's
    /// server is not installed.
    async fn start() -> Option<Self>;

    /// A fresh, empty log that no other test shares.
    async fn log(&mut self) -> Self::Log;

    /// A fresh, empty log that, once [`trim_to`](Backend::trim_to) has run, holds only its
    /// newest `keep` events, in its store and in any window of this process.
    async fn bounded_log(&mut self, keep: usize) -> Self::Log;

    /// Removes all but the newest `keep` events of a [`bounded_log`](Backend::bounded_log)
    /// now. Called once a subscriber has received every event appended.
    async fn trim_to(&self, log: &Self::Log, keep: usize);

    /// A well-formed cursor later than anything `log` has issued (or could have by now),
    /// which it refuses with [`SubscribeError::InvalidCursor`]. What "later" means is the
    /// backend's own rule.
    fn future_cursor(&self, log: &Self::Log) -> LastEventId;

    /// The same topic as another process reaches it (its own connections and reader), or
    /// `None` for a log that lives in one process only.
    async fn another_instance(&mut self, log: &Self::Log) -> Option<Self::Log>;
}

/// One `#[tokio::test]` per behaviour of this suite for the backend `$backend` (a type
/// implementing [`Backend`]), named as the suite's function: `tests!(Memory)` in a module
/// `memory` gives `memory::resumes_after_a_cursor_exactly`, and so on.
macro_rules! tests {
    ($backend:ty) => {
        $crate::suites::log::tests! {
            @each $backend;
            appended_events_arrive_live_in_order_with_their_fields,
            resumes_after_a_cursor_exactly,
            a_cursor_at_the_newest_event_resumes_with_nothing_pending,
            a_client_without_a_cursor_starts_at_its_start_position,
            a_cursor_older_than_the_trimmed_history_is_a_gap_then_what_is_held,
            a_recorded_gap_reaches_live_and_resuming_readers_in_place,
            finish_ends_every_reader_after_its_events_and_refuses_appends,
            append_once_appends_once_per_key_and_refuses_a_reused_key,
            a_malformed_cursor_is_refused,
            a_cursor_ahead_of_the_log_is_refused,
            concurrent_appends_reach_a_resumed_subscriber_once_each_in_log_order,
            every_subscriber_and_every_instance_sees_the_same_ids,
        }
    };
    (@each $backend:ty; $($test:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let started = <$backend as $crate::suites::log::Backend>::start().await;
                if let Some(backend) = started {
                    $crate::suites::log::$test(backend).await;
                }
            }
        )+
    };
}
pub(crate) use tests;

/// The subscription type of a backend's log.
type Sub<B> = <<B as Backend>::Log as EventLog>::Subscription;

/// The next `n` deliveries, each an event; panics on a gap or a checkpoint.
async fn events<F>(feed: &mut F, n: usize) -> Vec<Event>
where
    F: EventFeed + Unpin,
    F::Error: Debug,
{
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        match next(feed).await {
            Delivery::Event(event) => out.push(event),
            other => panic!("expected an event, got {other:?} after {out:?}"),
        }
    }
    out
}

/// The next delivery, an event; panics on a gap or a checkpoint.
async fn next_event<F>(feed: &mut F) -> Event
where
    F: EventFeed + Unpin,
    F::Error: Debug,
{
    match next(feed).await {
        Delivery::Event(event) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Every delivery up to the feed's end (it must end within the time limit), as events;
/// panics on a gap or a checkpoint.
async fn events_to_end<F>(feed: &mut F) -> Vec<Event>
where
    F: EventFeed + Unpin,
    F::Error: Debug,
{
    within("the feed's end", async {
        let mut out = Vec::new();
        loop {
            match poll_fn(|cx| Pin::new(&mut *feed).poll_delivery(cx)).await {
                None => return out,
                Some(Ok(Delivery::Event(event))) => out.push(event),
                Some(other) => panic!("expected an event or the end, got {other:?}"),
            }
        }
    })
    .await
}

/// The feed ends now (no delivery before), and says it is finished.
async fn expect_end<F>(feed: &mut F, what: &str)
where
    F: EventFeed + Unpin,
    F::Error: Debug,
{
    let delivery = within("the end", poll_fn(|cx| Pin::new(&mut *feed).poll_delivery(cx))).await;
    if let Some(delivery) = delivery {
        panic!("{what}: expected the end, got {delivery:?}");
    }
    assert!(feed.is_finished(), "{what}: finished once it has ended");
}

/// The id as the text a client holds.
fn id_of(event: &Event) -> String {
    event.id().expect("a stored event has an id").as_str().to_owned()
}

fn ids(events: &[Event]) -> Vec<String> {
    events.iter().map(id_of).collect()
}

fn data(events: &[Event]) -> Vec<String> {
    events.iter().map(|event| event.data().to_owned()).collect()
}

/// An id's place in its log, for the three id schemes: `<epoch>-<n>` (memory: one hex
/// epoch per log), `<ms>-<seq>` (Redis), `<xid>-<seq>` (PostgreSQL). Within one log, ordered
/// as the log is.
fn order_key(id: &EventId) -> (u64, u64) {
    let (major, minor) = id.as_str().split_once('-').expect("<major>-<minor>");
    let major = major
        .parse()
        .or_else(|_| u64::from_str_radix(major, 16))
        .unwrap_or_else(|_| panic!("the id {id:?} does not start with a number"));
    let minor = minor
        .parse()
        .unwrap_or_else(|_| panic!("the id {id:?} does not end with a number"));
    (major, minor)
}

fn assert_increasing(events: &[Event]) {
    for pair in events.windows(2) {
        let (a, b) = (pair[0].id().unwrap(), pair[1].id().unwrap());
        assert!(
            order_key(a) < order_key(b),
            "ids increase in the log's order: {a:?} then {b:?}"
        );
    }
}

/// Appends events with these data one at a time, waiting until `watcher` (a live subscriber)
/// has received each: the log has taken it (its window, for a remote log) before the next.
async fn append_seen<L, F>(log: &L, watcher: &mut F, texts: &[&str]) -> Vec<Event>
where
    L: EventLog,
    F: EventFeed + Unpin,
    F::Error: Debug,
{
    let mut stored = Vec::with_capacity(texts.len());
    for text in texts {
        let event = append(log, text).await;
        assert_eq!(
            next_event(watcher).await,
            event,
            "the watcher receives each event appended"
        );
        stored.push(event);
    }
    stored
}

fn outcome_of<S: Subscription>(subscription: &S) -> ResumeOutcome {
    subscription.outcome()
}

async fn subscribe_fresh<L: EventLog>(log: &L, start: StartPosition) -> L::Subscription {
    within("subscribe_fresh", log.subscribe_fresh(start))
        .await
        .expect("subscribe_fresh")
}

/// The refusal of a cursor, or a panic naming what was accepted.
async fn refused<L: EventLog>(log: &L, text: &str) -> SubscribeError<L::Error> {
    let cursor = LastEventId::parse(text).expect("a cursor a client could send");
    match within("subscribe", log.subscribe(Some(&cursor))).await {
        Ok(subscription) => panic!("the cursor {text:?} was accepted ({:?})", subscription.outcome()),
        Err(error) => error,
    }
}

// 1.

/// Appended events reach a live subscriber in order, each as stored: its data, name, retry
/// and comment, with the id the log gave it (a caller's id is replaced); ids increase.
pub async fn appended_events_arrive_live_in_order_with_their_fields<B: Backend>(mut backend: B) {
    let log = backend.log().await;
    let mut live = subscribe(&log, None).await;
    assert_eq!(outcome_of(&live), ResumeOutcome::Fresh);

    let sent = [
        Event::new("plain"),
        Event::new("héllo ✓")
            .with_name("greeting")
            .unwrap()
            .with_retry(Duration::from_millis(1500))
            .with_comment("a note"),
        Event::new("line one\nline two").with_id("my-own-id").unwrap(),
        Event::empty().with_comment("no data"),
        Event::new(""),
        Event::new("last").with_name("done").unwrap(),
    ];
    let mut stored = Vec::new();
    for event in &sent {
        let added = within("append", log.append(event.clone())).await.expect("append");
        assert_ne!(
            added.id().map(EventId::as_str),
            Some("my-own-id"),
            "the log assigns the id"
        );
        assert!(added.id().is_some(), "a stored event has an id");
        stored.push(added);
    }
    for (sent, stored) in sent.iter().zip(&stored) {
        assert_eq!(stored.data(), sent.data());
        assert_eq!(stored.name(), sent.name());
        assert_eq!(stored.retry(), sent.retry());
        assert_eq!(stored.comment(), sent.comment());
        assert_eq!(stored.has_data(), sent.has_data(), "{sent:?}");
    }
    assert_increasing(&stored);

    let received = events(&mut live, sent.len()).await;
    // Event's equality compares the id, name, data, retry and comment.
    assert_eq!(received, stored);
    for (received, sent) in received.iter().zip(&sent) {
        assert_eq!(received.has_data(), sent.has_data(), "{sent:?}");
    }
    // The subscriber's position is the last event's id.
    assert_eq!(live.position().as_ref(), stored.last().unwrap().id());
}

// 2.

/// A cursor in the middle of the history resumes with exactly the events after it, then
/// live ones: nothing lost, nothing twice.
pub async fn resumes_after_a_cursor_exactly<B: Backend>(mut backend: B) {
    let log = backend.log().await;
    let mut watcher = subscribe(&log, None).await;
    let texts: Vec<String> = (1..=10).map(|n| format!("e{n}")).collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let stored = append_seen(&log, &mut watcher, &texts).await;

    let mut resumed = subscribe(&log, Some(&cursor(&stored[3]))).await;
    assert_eq!(outcome_of(&resumed), ResumeOutcome::Resumed);
    assert_eq!(
        resumed.position().as_ref(),
        stored[3].id(),
        "it starts at its cursor"
    );
    assert_eq!(events(&mut resumed, 6).await, stored[4..]);

    let live = append(&log, "e11").await;
    assert_eq!(
        next_event(&mut resumed).await,
        live,
        "then the live event, nothing before it"
    );
    assert_eq!(next_event(&mut watcher).await, live);

    // From the first event: the nine after it and the live one, in order.
    let mut from_first = subscribe(&log, Some(&cursor(&stored[0]))).await;
    assert_eq!(outcome_of(&from_first), ResumeOutcome::Resumed);
    assert_eq!(
        labels(&mut from_first, 10).await,
        ["e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9", "e10", "e11"]
    );
}

/// A cursor at the newest event resumes with nothing pending: the next delivery is the next
/// event appended.
pub async fn a_cursor_at_the_newest_event_resumes_with_nothing_pending<B: Backend>(mut backend: B) {
    let log = backend.log().await;
    let mut watcher = subscribe(&log, None).await;
    let stored = append_seen(&log, &mut watcher, &["a", "b", "c"]).await;

    let mut at_newest = subscribe(&log, Some(&cursor(&stored[2]))).await;
    assert_eq!(outcome_of(&at_newest), ResumeOutcome::Resumed);
    assert_eq!(at_newest.position().as_ref(), stored[2].id());
    assert!(!at_newest.is_finished());

    // Given time to misbehave (a remote log reads its store meanwhile), nothing arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let d = append(&log, "d").await;
    let e = append(&log, "e").await;
    assert_eq!(events(&mut at_newest, 2).await, [d, e]);
}

// 3.

/// A client without a cursor starts at the live end, at the oldest event held, or at the
/// last `n` held (all of them when fewer are held); the outcome is `Fresh`.
pub async fn a_client_without_a_cursor_starts_at_its_start_position<B: Backend>(mut backend: B) {
    let log = backend.log().await;
    let mut watcher = subscribe(&log, None).await;
    append_seen(&log, &mut watcher, &["a", "b", "c"]).await;

    let mut none = subscribe(&log, None).await;
    let mut live_end = subscribe_fresh(&log, StartPosition::LiveEnd).await;
    let mut oldest = subscribe_fresh(&log, StartPosition::Oldest).await;
    let mut last_two = subscribe_fresh(&log, StartPosition::Last(2)).await;
    let mut last_three = subscribe_fresh(&log, StartPosition::Last(3)).await;
    let mut last_ten = subscribe_fresh(&log, StartPosition::Last(10)).await;
    let mut last_zero = subscribe_fresh(&log, StartPosition::Last(0)).await;
    for (subscription, name) in [
        (&none, "subscribe(None)"),
        (&live_end, "LiveEnd"),
        (&oldest, "Oldest"),
        (&last_two, "Last(2)"),
        (&last_three, "Last(3)"),
        (&last_ten, "Last(10)"),
        (&last_zero, "Last(0)"),
    ] {
        assert_eq!(outcome_of(subscription), ResumeOutcome::Fresh, "{name}");
    }

    let d = append(&log, "d").await;
    assert_eq!(next_event(&mut none).await, d, "subscribe(None)");
    assert_eq!(next_event(&mut live_end).await, d, "LiveEnd");
    assert_eq!(next_event(&mut last_zero).await, d, "Last(0)");
    assert_eq!(labels(&mut oldest, 4).await, ["a", "b", "c", "d"], "Oldest");
    assert_eq!(labels(&mut last_two, 3).await, ["b", "c", "d"], "Last(2)");
    assert_eq!(labels(&mut last_three, 4).await, ["a", "b", "c", "d"], "Last(3)");
    assert_eq!(labels(&mut last_ten, 4).await, ["a", "b", "c", "d"], "Last(10)");

    // On an empty log, every start position waits for the first event.
    let empty = backend.log().await;
    let mut starts = Vec::new();
    for start in [
        StartPosition::LiveEnd,
        StartPosition::Oldest,
        StartPosition::Last(5),
    ] {
        let subscription = subscribe_fresh(&empty, start).await;
        assert_eq!(outcome_of(&subscription), ResumeOutcome::Fresh, "{start:?}");
        starts.push((start, subscription));
    }
    let first = append(&empty, "first").await;
    for (start, subscription) in &mut starts {
        assert_eq!(next_event(subscription).await, first, "{start:?}");
    }
}

// 4.

/// A cursor older than what the log holds after trimming is a gap: outcome `Gap`, a
/// `Delivery::Gap` first, then the events still held, in order; resuming from the gap's
/// position is no second gap.
pub async fn a_cursor_older_than_the_trimmed_history_is_a_gap_then_what_is_held<B: Backend>(mut backend: B) {
    const KEEP: usize = 2;
    let log = backend.bounded_log(KEEP).await;
    let mut watcher = subscribe(&log, None).await;
    let stored = append_seen(&log, &mut watcher, &["e1", "e2", "e3", "e4", "e5"]).await;
    backend.trim_to(&log, KEEP).await;

    // The newest event trimmed: nothing after it is lost, so it resumes. A client without a
    // cursor starting at the oldest gets what is held, without a gap (nothing of its own was
    // lost).
    let mut at_floor = subscribe(&log, Some(&cursor(&stored[2]))).await;
    assert_eq!(
        outcome_of(&at_floor),
        ResumeOutcome::Resumed,
        "the newest event trimmed"
    );
    assert_eq!(labels(&mut at_floor, 2).await, ["e4", "e5"]);
    let mut oldest = subscribe_fresh(&log, StartPosition::Oldest).await;
    assert_eq!(outcome_of(&oldest), ResumeOutcome::Fresh);
    assert_eq!(labels(&mut oldest, 2).await, ["e4", "e5"], "Oldest");
    let mut readers = vec![at_floor, oldest];

    for old in [&stored[0], &stored[1]] {
        let mut resumed = subscribe(&log, Some(&cursor(old))).await;
        assert_eq!(
            outcome_of(&resumed),
            ResumeOutcome::Gap,
            "the cursor {} is older than what is held",
            id_of(old)
        );
        let gap = next(&mut resumed).await;
        let Delivery::Gap(Some(position)) = gap else {
            panic!("expected a gap naming a position, got {gap:?}");
        };
        assert_eq!(events(&mut resumed, 2).await, stored[3..], "then what is held");

        // The gap's position is one the log resumes from exactly.
        let after_gap = LastEventId::parse(position.as_str()).unwrap();
        let mut again = subscribe(&log, Some(&after_gap)).await;
        assert_eq!(
            outcome_of(&again),
            ResumeOutcome::Resumed,
            "from the gap's position"
        );
        assert_eq!(events(&mut again, 2).await, stored[3..]);
        readers.push(resumed);
        readers.push(again);
    }
    // Then live events, nothing else.
    let live = append(&log, "live").await;
    for reader in &mut readers {
        assert_eq!(next_event(reader).await, live);
    }
    assert_eq!(next_event(&mut watcher).await, live);
}

// 5.

/// A recorded gap reaches every reader at the point it was recorded: live subscribers, and
/// clients resuming from before it; the events before and after it stay in place.
pub async fn a_recorded_gap_reaches_live_and_resuming_readers_in_place<B: Backend>(mut backend: B) {
    let log = backend.log().await;
    let mut live = subscribe(&log, None).await;
    let zero = append(&log, "zero").await;
    let a = append(&log, "a").await;
    within("record_gap", log.record_gap()).await.expect("record_gap");
    let b = append(&log, "b").await;
    let c = append(&log, "c").await;

    assert_eq!(
        labels(&mut live, 5).await,
        ["zero", "a", "<gap>", "b", "c"],
        "live"
    );

    let mut from_zero = subscribe(&log, Some(&cursor(&zero))).await;
    assert_eq!(
        outcome_of(&from_zero),
        ResumeOutcome::Resumed,
        "the gap is in the log, not before the cursor"
    );
    assert_eq!(labels(&mut from_zero, 4).await, ["a", "<gap>", "b", "c"]);

    let mut from_a = subscribe(&log, Some(&cursor(&a))).await;
    assert_eq!(outcome_of(&from_a), ResumeOutcome::Resumed);
    assert_eq!(labels(&mut from_a, 3).await, ["<gap>", "b", "c"]);

    let mut from_b = subscribe(&log, Some(&cursor(&b))).await;
    assert_eq!(outcome_of(&from_b), ResumeOutcome::Resumed);
    assert_eq!(labels(&mut from_b, 1).await, ["c"], "after the gap: no gap");

    let mut oldest = subscribe_fresh(&log, StartPosition::Oldest).await;
    assert_eq!(
        labels(&mut oldest, 5).await,
        ["zero", "a", "<gap>", "b", "c"],
        "Oldest"
    );

    // The events around the gap are the ones stored.
    let d = append(&log, "d").await;
    for (reader, name) in [
        (&mut live, "live"),
        (&mut from_zero, "from zero"),
        (&mut from_a, "from a"),
        (&mut from_b, "from b"),
        (&mut oldest, "Oldest"),
    ] {
        assert_eq!(next_event(reader).await, d, "{name}");
    }
    let mut again = subscribe(&log, Some(&cursor(&zero))).await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        match next(&mut again).await {
            Delivery::Event(event) => seen.push(event),
            Delivery::Gap(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, [a, b, c, d]);
}

// 6.

/// `finish`: live subscribers get every event and then end; appends are refused; a fresh
/// subscriber at the live end is finished at once; one from before the end gets what
/// remains and then ends; finishing twice is fine.
pub async fn finish_ends_every_reader_after_its_events_and_refuses_appends<B: Backend>(mut backend: B) {
    let log = backend.log().await;
    let mut live = subscribe(&log, None).await;
    let a = append(&log, "a").await;
    let b = append(&log, "b").await;
    let c = append(&log, "c").await;
    let mut before_end = subscribe(&log, Some(&cursor(&a))).await;

    within("finish", log.finish()).await.expect("finish");
    assert_eq!(
        events_to_end(&mut live).await,
        [a.clone(), b.clone(), c.clone()],
        "live"
    );
    assert!(live.is_finished(), "live: finished");
    assert_eq!(
        events_to_end(&mut before_end).await,
        [b.clone(), c.clone()],
        "subscribed before the end"
    );
    assert!(before_end.is_finished());

    match within("append", log.append(Event::new("too late"))).await {
        Err(AppendError::Finished) => {}
        other => panic!("append after finish: expected Finished, got {other:?}"),
    }
    let key = IdempotencyKey::new("too-late").unwrap();
    match within(
        "append_once",
        log.append_once(Event::new("too late"), &key, Duration::from_secs(60)),
    )
    .await
    {
        Err(AppendError::Finished) => {}
        other => panic!("append_once after finish: expected Finished, got {other:?}"),
    }
    within("finish again", log.finish())
        .await
        .expect("finishing a finished log is fine");

    let mut fresh = subscribe(&log, None).await;
    assert!(
        fresh.is_finished(),
        "a fresh subscriber at the live end is finished at once"
    );
    expect_end(&mut fresh, "fresh at the live end").await;

    let mut at_last = subscribe(&log, Some(&cursor(&c))).await;
    assert_eq!(outcome_of(&at_last), ResumeOutcome::Resumed);
    expect_end(&mut at_last, "resumed at the last event").await;

    let mut from_a = subscribe(&log, Some(&cursor(&a))).await;
    assert_eq!(outcome_of(&from_a), ResumeOutcome::Resumed);
    assert!(!from_a.is_finished(), "events remain for it");
    assert_eq!(
        events_to_end(&mut from_a).await,
        [b.clone(), c.clone()],
        "resumed after the end"
    );

    let mut oldest = subscribe_fresh(&log, StartPosition::Oldest).await;
    assert_eq!(events_to_end(&mut oldest).await, [a, b, c.clone()], "Oldest");
    let mut last_one = subscribe_fresh(&log, StartPosition::Last(1)).await;
    assert_eq!(events_to_end(&mut last_one).await, [c], "Last(1)");

    // A recorded gap on a finished log adds nothing a reader would see.
    within("record_gap", log.record_gap())
        .await
        .expect("record_gap after finish");
    let mut after_gap = subscribe(&log, None).await;
    expect_end(&mut after_gap, "fresh after record_gap").await;
}

// 7.

/// `append_once`: the same key with the same event is a repeat with the first id and
/// appends nothing; the same key with another event is refused; another key appends again.
pub async fn append_once_appends_once_per_key_and_refuses_a_reused_key<B: Backend>(mut backend: B) {
    let log = backend.log().await;
    let mut live = subscribe(&log, None).await;
    let window = Duration::from_secs(300);
    let key = IdempotencyKey::new("order-17-shipped").unwrap();
    let shipped = || Event::new("shipped").with_name("order").unwrap();

    let first = within("append_once", log.append_once(shipped(), &key, window))
        .await
        .expect("append_once");
    let Appended::New(stored) = &first else {
        panic!("the first append with a key appends: {first:?}");
    };
    let first_id = stored.id().expect("an id").clone();

    let repeat = within("append_once", log.append_once(shipped(), &key, window))
        .await
        .expect("append_once again");
    assert!(repeat.is_repeat(), "{repeat:?}");
    assert_eq!(repeat.id(), Some(&first_id), "a repeat answers the first id");

    match within(
        "append_once",
        log.append_once(Event::new("cancelled").with_name("order").unwrap(), &key, window),
    )
    .await
    {
        Err(AppendError::KeyReused) => {}
        other => panic!("the same key with other data: expected KeyReused, got {other:?}"),
    }
    match within(
        "append_once",
        log.append_once(Event::new("shipped").with_name("other").unwrap(), &key, window),
    )
    .await
    {
        Err(AppendError::KeyReused) => {}
        other => panic!("the same key with another name: expected KeyReused, got {other:?}"),
    }

    if let Some(other) = backend.another_instance(&log).await {
        let elsewhere = within("append_once", other.append_once(shipped(), &key, window))
            .await
            .expect("append_once on another instance");
        assert!(
            elsewhere.is_repeat(),
            "another instance knows the key: {elsewhere:?}"
        );
        assert_eq!(elsewhere.id(), Some(&first_id));
    }

    let other_key = IdempotencyKey::new("order-18-shipped").unwrap();
    let second = within("append_once", log.append_once(shipped(), &other_key, window))
        .await
        .expect("append_once with another key");
    let Appended::New(second) = second else {
        panic!("another key appends: {second:?}");
    };
    assert_ne!(second.id(), Some(&first_id));

    let marker = append(&log, "marker").await;
    let received = events(&mut live, 3).await;
    assert_eq!(
        received,
        [stored.clone(), second, marker],
        "one event per key, nothing for the repeats and refusals"
    );
}

// 8.

/// A cursor this kind of log never issues is refused, by `check_cursor` and by `subscribe`.
pub async fn a_malformed_cursor_is_refused<B: Backend>(mut backend: B) {
    let log = backend.log().await;
    let stored = append(&log, "a").await;
    assert_eq!(log.check_cursor(&cursor(&stored)), Ok(()), "an id the log issued");

    for text in ["garbage", "12", "x-1", "1-2-3", "1-", "-1", "1-x", "1.5-2"] {
        let malformed = LastEventId::parse(text).expect("a cursor a client could send");
        assert!(
            log.check_cursor(&malformed).is_err(),
            "check_cursor accepted the malformed cursor {text:?}"
        );
        match refused(&log, text).await {
            SubscribeError::InvalidCursor(_) => {}
            other => panic!("{text:?}: expected InvalidCursor, got {other:?}"),
        }
    }
    // The log still serves a good cursor afterwards.
    let mut fine = subscribe(&log, Some(&cursor(&stored))).await;
    assert_eq!(outcome_of(&fine), ResumeOutcome::Resumed);
    let b = append(&log, "b").await;
    assert_eq!(next_event(&mut fine).await, b);
}

/// A well-formed cursor ahead of the log (by the backend's own rule, see
/// [`Backend::future_cursor`]) is refused by `subscribe`, though its shape passes
/// `check_cursor`.
pub async fn a_cursor_ahead_of_the_log_is_refused<B: Backend>(mut backend: B) {
    let log = backend.log().await;
    let mut watcher = subscribe(&log, None).await;
    append_seen(&log, &mut watcher, &["a", "b"]).await;

    let ahead = backend.future_cursor(&log);
    assert_eq!(
        log.check_cursor(&ahead),
        Ok(()),
        "{ahead:?} has the shape of this log's ids"
    );
    match refused(&log, ahead.as_str()).await {
        SubscribeError::InvalidCursor(_) => {}
        other => panic!("{ahead:?}: expected InvalidCursor, got {other:?}"),
    }
    if let Some(other) = backend.another_instance(&log).await {
        match refused(&other, ahead.as_str()).await {
            SubscribeError::InvalidCursor(_) => {}
            other => panic!("{ahead:?} on another instance: expected InvalidCursor, got {other:?}"),
        }
    }
}

// 9.

/// While three tasks append 200 events each, a subscriber that resumes in the middle from a
/// cursor receives every later event exactly once, in the log's order: the same sequence a
/// full read from before them all finds afterwards.
pub async fn concurrent_appends_reach_a_resumed_subscriber_once_each_in_log_order<B: Backend>(
    mut backend: B,
) {
    const TASKS: usize = 3;
    const EACH: usize = 200;
    let log = backend.log().await;
    let first = append(&log, "first").await;
    // Every task appends half of its events, then all go on while the middle one is appended
    // and the subscriber resumes after it; they pause now and then, so that the rest comes
    // while it reads.
    let halfway = Arc::new(Barrier::new(TASKS + 1));
    let appenders: Vec<_> = (0..TASKS)
        .map(|task| {
            let log = log.clone();
            let halfway = Arc::clone(&halfway);
            tokio::spawn(async move {
                let mut stored = Vec::with_capacity(EACH);
                for n in 0..EACH {
                    if n == EACH / 2 {
                        halfway.wait().await;
                    }
                    let event = log
                        .append(Event::new(format!("t{task}-{n}")))
                        .await
                        .expect("append");
                    stored.push(event);
                    if n % 4 == 3 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    } else {
                        tokio::task::yield_now().await;
                    }
                }
                stored
            })
        })
        .collect();

    within("the appenders halfway", halfway.wait()).await;
    let middle = append(&log, "middle").await;
    let mut resumed: Sub<B> = subscribe(&log, Some(&cursor(&middle))).await;
    assert_eq!(outcome_of(&resumed), ResumeOutcome::Resumed);

    // The resumed subscriber reads while the appends go on; the log ends once they are done.
    let (read, by_task) = tokio::join!(events_to_end(&mut resumed), async {
        let mut by_task = Vec::with_capacity(TASKS);
        for appender in appenders {
            by_task.push(appender.await.expect("an appender"));
        }
        within("finish", log.finish()).await.expect("finish");
        by_task
    });

    let mut full = subscribe(&log, Some(&cursor(&first))).await;
    assert_eq!(outcome_of(&full), ResumeOutcome::Resumed);
    let full = events_to_end(&mut full).await;
    assert_eq!(full.len(), TASKS * EACH + 1, "every event after the first, once");
    assert_increasing(&full);
    // Each task's events, in the order it appended them, with the ids it was given.
    for (task, stored) in by_task.iter().enumerate() {
        let prefix = format!("t{task}-");
        let in_log: Vec<&Event> = full
            .iter()
            .filter(|event| event.data().starts_with(&prefix))
            .collect();
        assert_eq!(in_log.len(), EACH, "task {task}");
        assert!(
            in_log.iter().copied().eq(stored.iter()),
            "task {task}'s events in the log are the ones it appended, in its order"
        );
    }
    let middle_at = full
        .iter()
        .position(|event| *event == middle)
        .expect("the middle event is in the log");
    assert_eq!(
        ids(&read),
        ids(&full[middle_at + 1..]),
        "the resumed subscriber got exactly the events after its cursor, in the log's order"
    );
    assert_eq!(data(&read), data(&full[middle_at + 1..]));
    assert!(!read.is_empty(), "events came after the cursor while it read");
}

// 10.

/// Two subscribers of one log, and one on another instance of the same topic (another
/// process's view; Redis and PostgreSQL only), receive the same events with the same ids,
/// whichever instance appended them; a cursor from one instance resumes on the other.
pub async fn every_subscriber_and_every_instance_sees_the_same_ids<B: Backend>(mut backend: B) {
    let log = backend.log().await;
    let other = backend.another_instance(&log).await;
    let mut first = subscribe(&log, None).await;
    let mut second = subscribe(&log, None).await;
    let mut elsewhere = match &other {
        Some(other) => Some(subscribe(other, None).await),
        None => None,
    };

    let mut stored = Vec::new();
    for n in 0..6 {
        // Alternately on each instance, when there are two.
        let on = match &other {
            Some(other) if n % 2 == 1 => other,
            _ => &log,
        };
        stored.push(append(on, &format!("e{n}")).await);
    }
    assert_increasing(&stored);

    let got_first = events(&mut first, 6).await;
    let got_second = events(&mut second, 6).await;
    assert_eq!(got_first, stored, "the first subscriber");
    assert_eq!(got_second, stored, "the second subscriber");
    if let (Some(other), Some(elsewhere)) = (&other, &mut elsewhere) {
        assert_eq!(
            events(elsewhere, 6).await,
            stored,
            "the other instance's subscriber"
        );

        // A client moving between instances resumes with either's cursor.
        let mut moved = subscribe(other, Some(&cursor(&stored[1]))).await;
        assert_eq!(outcome_of(&moved), ResumeOutcome::Resumed);
        assert_eq!(events(&mut moved, 4).await, stored[2..]);
        let mut back = subscribe(&log, Some(&cursor(&stored[2]))).await;
        assert_eq!(outcome_of(&back), ResumeOutcome::Resumed);
        assert_eq!(events(&mut back, 3).await, stored[3..]);

        let last = append(other, "last").await;
        assert_eq!(next_event(&mut moved).await, last);
        assert_eq!(next_event(&mut back).await, last);
        assert_eq!(next_event(elsewhere).await, last);
        assert_eq!(next_event(&mut first).await, last);
        assert_eq!(next_event(&mut second).await, last);
    }
    assert_eq!(
        first.position(),
        second.position(),
        "both subscribers reached the same position"
    );
}
