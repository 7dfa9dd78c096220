//! Unit tests of `memory`, kept apart so the module reads in one sitting.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use super::*;
use crate::log::ring::TAKE_PER_LOCK;
use crate::log::{IdempotencyKey, ResumeOutcome, Subscription};
use crate::{Delivery, EventFeed};

fn ready(sub: &mut MemorySubscription) -> Vec<Delivery> {
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut out = Vec::new();
    while let Poll::Ready(Some(Ok(d))) = Pin::new(&mut *sub).poll_delivery(&mut cx) {
        out.push(d);
    }
    out
}

fn data(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| match d {
            Delivery::Event(e) => e.data().to_owned(),
            Delivery::Gap(_) => "<gap>".to_owned(),
            Delivery::Checkpoint(_) => "<checkpoint>".to_owned(),
        })
        .collect()
}

fn cursor(id: &EventId) -> LastEventId {
    LastEventId::parse(id.as_str()).unwrap()
}

#[test]
fn resumes_exactly_after_the_cursor() {
    let log = MemoryLog::new();
    let a = log.push(Event::new("a")).unwrap();
    log.push(Event::new("b")).unwrap();
    let mut sub = log.subscribe_now(Some(&cursor(a.id().unwrap()))).unwrap();
    assert_eq!(sub.outcome(), ResumeOutcome::Resumed);
    assert_eq!(data(&ready(&mut sub)), ["b"]);
    log.push(Event::new("c")).unwrap();
    assert_eq!(data(&ready(&mut sub)), ["c"]);
    assert_eq!(sub.position().unwrap(), log.position());
}

#[test]
fn trimmed_history_and_foreign_epochs_are_gaps() {
    let log = MemoryLog::builder().history(2).build();
    let a = log.push(Event::new("a")).unwrap();
    log.push(Event::new("b")).unwrap();
    log.push(Event::new("c")).unwrap();
    let mut sub = log.subscribe_now(Some(&cursor(a.id().unwrap()))).unwrap();
    assert_eq!(sub.outcome(), ResumeOutcome::Resumed, "b is still held");
    assert_eq!(data(&ready(&mut sub)), ["b", "c"]);

    log.push(Event::new("d")).unwrap();
    let mut sub = log.subscribe_now(Some(&cursor(a.id().unwrap()))).unwrap();
    assert_eq!(sub.outcome(), ResumeOutcome::Gap);
    assert_eq!(data(&ready(&mut sub)), ["<gap>", "c", "d"]);

    let other = MemoryLog::new();
    let mut sub = log.subscribe_now(Some(&cursor(&other.position()))).unwrap();
    assert_eq!(sub.outcome(), ResumeOutcome::Gap);
    assert_eq!(data(&ready(&mut sub)), ["<gap>", "c", "d"]);
}

#[test]
fn a_lagging_subscriber_gets_a_gap_not_silence() {
    let log = MemoryLog::builder().history(3).build();
    let mut sub = log.subscribe_now(None).unwrap();
    for n in 0..10 {
        log.push(Event::new(n.to_string())).unwrap();
    }
    assert_eq!(data(&ready(&mut sub)), ["<gap>", "7", "8", "9"]);
}

#[test]
fn refuses_cursors_it_could_not_have_issued() {
    let log = MemoryLog::new();
    for bad in [
        "nodash",
        &format!("{}-00", log.epoch()),
        "zzzzzzzz-1",
        "abc-1",
        &format!("{}-", log.epoch()),
        &format!("{}-1", log.epoch()),
    ] {
        let err = log
            .subscribe_now(Some(&LastEventId::parse(bad).unwrap()))
            .unwrap_err();
        assert!(matches!(err, CursorError::Unknown { .. }), "{bad}: {err}");
    }
    assert!(log.subscribe_now(Some(&cursor(&log.position()))).is_ok());
}

#[test]
fn counts_subscribers_until_dropped() {
    let log = MemoryLog::new();
    let a = log.subscribe_now(None).unwrap();
    let b = log.subscribe_now(None).unwrap();
    assert_eq!(log.subscriber_count(), 2);
    drop((a, b));
    assert_eq!(log.subscriber_count(), 0);
}

#[test]
fn hands_out_more_than_one_batch_without_a_new_append() {
    let log = MemoryLog::new();
    let mut sub = log.subscribe_now(None).unwrap();
    for n in 0..(3 * TAKE_PER_LOCK + 5) {
        log.push(Event::new(n.to_string())).unwrap();
    }
    let expected: Vec<String> = (0..(3 * TAKE_PER_LOCK + 5)).map(|n| n.to_string()).collect();
    assert_eq!(data(&ready(&mut sub)), expected);
}

#[test]
fn the_encoded_path_reports_a_lag_gap_then_the_held_events() {
    let log = MemoryLog::builder().history(3).build();
    let mut sub = log.subscribe_now(None).unwrap();
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut out = bytes::BytesMut::new();
    assert!(Pin::new(&mut sub)
        .poll_encoded(&mut cx, &mut out, 1 << 16)
        .is_pending());
    for n in 0..10 {
        log.push(Event::new(n.to_string())).unwrap();
    }
    let answer = Pin::new(&mut sub).poll_encoded(&mut cx, &mut out, 1 << 16);
    assert!(
        matches!(answer, Poll::Ready(Some(Ok(frame))) if frame.is_none()),
        "a gap goes through poll_delivery"
    );
    // The held events follow the gap at once, without waiting for another append.
    assert_eq!(data(&ready(&mut sub)), ["<gap>", "7", "8", "9"]);
    log.push(Event::new("10")).unwrap();
    let before = out.len();
    let answer = Pin::new(&mut sub).poll_encoded(&mut cx, &mut out, 1 << 16);
    let Poll::Ready(Some(Ok(frame))) = answer else {
        panic!("the event is copied: {answer:?}")
    };
    // The frame says what it carries: its bytes and its one event.
    assert_eq!((frame.bytes, frame.events), (out.len() - before, 1));
    assert!(out.ends_with(b"data: 10\n\n"));
    assert_eq!(sub.position().unwrap(), log.position());
}

#[tokio::test]
async fn wakes_a_waiting_subscriber() {
    let log = MemoryLog::new();
    let mut sub = log.subscribe_now(None).unwrap();
    let publisher = log.clone();
    tokio::spawn(async move {
        tokio::task::yield_now().await;
        publisher.push(Event::new("late")).unwrap();
    });
    let got = poll_fn(|cx| Pin::new(&mut sub).poll_delivery(cx))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(data(&[got]), ["late"]);
}

/// With many subscribers the waking is handed off (see `wake`): every subscriber still
/// gets every event once and in order, however the appends and the hand-offs interleave,
/// and a log used after its runtime is gone still wakes its subscribers.
#[test]
fn many_subscribers_woken_by_hand_off_see_every_event_once_in_order() {
    const SUBSCRIBERS: usize = 200;
    const EVENTS: usize = 2_000;
    let log = MemoryLog::builder().history(EVENTS).build();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let readers: Vec<_> = (0..SUBSCRIBERS)
        .map(|_| {
            let mut sub = log.subscribe_now(None).unwrap();
            runtime.spawn(async move {
                let mut seen = Vec::with_capacity(EVENTS);
                while seen.len() < EVENTS {
                    match poll_fn(|cx| Pin::new(&mut sub).poll_delivery(cx)).await {
                        Some(Ok(Delivery::Event(event))) => seen.push(event.data().to_owned()),
                        other => panic!("unexpected {other:?}"),
                    }
                }
                seen
            })
        })
        .collect();
    let publisher = log.clone();
    runtime.block_on(async move {
        for n in 0..EVENTS {
            publisher.push(Event::new(n.to_string())).unwrap();
            if n % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    let expected: Vec<String> = (0..EVENTS).map(|n| n.to_string()).collect();
    for reader in readers {
        let seen = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), reader).await })
            .expect("every subscriber is woken for every event")
            .unwrap();
        assert_eq!(seen, expected);
    }

    // The runtime is gone: appends wake in place.
    let mut late = log.subscribe_now(None).unwrap();
    let _others: Vec<_> = (0..SUBSCRIBERS)
        .map(|_| log.subscribe_now(None).unwrap())
        .collect();
    drop(runtime);
    let woken = Arc::new(Woken::default());
    let waker = std::task::Waker::from(Arc::clone(&woken));
    let mut cx = Context::from_waker(&waker);
    assert!(Pin::new(&mut late).poll_delivery(&mut cx).is_pending());
    log.push(Event::new("after")).unwrap();
    assert!(woken.0.load(Ordering::Acquire));
}

/// A waker that records that it was woken.
#[derive(Default)]
struct Woken(AtomicBool);

impl std::task::Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

fn encoded_then_ready(sub: &mut MemorySubscription) -> (String, Vec<String>) {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut out = bytes::BytesMut::new();
    let mut seen = Vec::new();
    loop {
        match Pin::new(&mut *sub).poll_encoded(&mut cx, &mut out, 1 << 16) {
            Poll::Ready(Some(Ok(frame))) if frame.is_none() => {
                match Pin::new(&mut *sub).poll_delivery(&mut cx) {
                    Poll::Ready(Some(Ok(delivery))) => seen.extend(data(&[delivery])),
                    other => panic!("{other:?}"),
                }
            }
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Pending => break,
            other => panic!("{other:?}"),
        }
    }
    (String::from_utf8(out.to_vec()).unwrap(), seen)
}

#[test]
fn a_recorded_gap_comes_just_before_the_next_event_on_both_paths() {
    let log = MemoryLog::new();
    let mut live = log.subscribe_now(None).unwrap();
    let mut encoded = log.subscribe_now(None).unwrap();
    let a = log.push(Event::new("a")).unwrap();
    log.record_gap();
    log.record_gap();
    log.push(Event::new("b")).unwrap();
    log.push(Event::new("c")).unwrap();
    assert_eq!(
        data(&ready(&mut live)),
        ["a", "<gap>", "b", "c"],
        "gaps in a row are one"
    );
    let (bytes, deliveries) = encoded_then_ready(&mut encoded);
    assert_eq!(deliveries, ["<gap>", "b", "c"]);
    assert!(
        bytes.contains("data: a\n\n") && !bytes.contains("data: b"),
        "{bytes}"
    );

    // A client that saw "a" (or heard the gap, which names "a"'s position) hears it before
    // "b"; a fresh one does not.
    let mut resumed = log.subscribe_now(Some(&cursor(a.id().unwrap()))).unwrap();
    assert_eq!(data(&ready(&mut resumed)), ["<gap>", "b", "c"]);
    let mut fresh = log.subscribe_now(None).unwrap();
    log.push(Event::new("d")).unwrap();
    assert_eq!(data(&ready(&mut fresh)), ["d"]);
}

#[test]
fn a_log_with_source_ids_keeps_them_and_resumes_across_instances() {
    let first = MemoryLog::builder().source_ids("orders", 0).unwrap().build();
    for id in [3, 5, 9] {
        first
            .push(
                Event::new(format!("change {id}"))
                    .with_id(id.to_string())
                    .unwrap(),
            )
            .unwrap();
    }
    assert_eq!(first.position().as_str(), "orders-9");
    let without_id = first.push(Event::new("no id of its own")).unwrap();
    assert_eq!(without_id.id().unwrap().as_str(), "orders-9.1");
    let replayed = first
        .push(Event::new("change 5 again").with_id("5").unwrap())
        .unwrap();
    assert_eq!(replayed.id().unwrap().as_str(), "orders-5");
    assert_eq!(first.len(), 4, "a replayed id is not appended twice");

    // A restarted process replays the source from change 4 on.
    let second = MemoryLog::builder().source_ids("orders", 4).unwrap().build();
    let seen_5 = LastEventId::parse("orders-5").unwrap();
    let mut resumed = second.subscribe_now(Some(&seen_5)).unwrap();
    assert_eq!(resumed.outcome(), ResumeOutcome::Resumed);
    let seen_3 = LastEventId::parse("orders-3").unwrap();
    let mut too_old = second.subscribe_now(Some(&seen_3)).unwrap();
    assert_eq!(too_old.outcome(), ResumeOutcome::Gap);
    let other_name = LastEventId::parse("invoices-5").unwrap();
    assert_eq!(
        second.subscribe_now(Some(&other_name)).unwrap().outcome(),
        ResumeOutcome::Gap
    );
    for id in [5, 9] {
        second
            .push(
                Event::new(format!("change {id}"))
                    .with_id(id.to_string())
                    .unwrap(),
            )
            .unwrap();
    }
    // The client that saw 5 is ahead of the replay at first: it gets 9 only.
    assert_eq!(data(&ready(&mut resumed)), ["change 9"]);
    assert_eq!(data(&ready(&mut too_old)), ["<gap>", "change 5", "change 9"]);
    let (bytes, _) = encoded_then_ready(&mut second.subscribe_now(Some(&seen_5)).unwrap());
    assert_eq!(bytes, "id: orders-9\ndata: change 9\n\n");
}

#[test]
fn a_log_name_must_fit_in_a_cursor() {
    for bad in ["", "has-dash", "has space", &"x".repeat(33)] {
        let error = MemoryLog::builder().source_ids(bad, 0).unwrap_err();
        assert!(error.to_string().starts_with("invalid log name"), "{error}");
    }
    let log = MemoryLog::builder().source_ids("ok_1", 0).unwrap().build();
    for bad in ["ok_1", "ok_1-", "ok_1-01", "ok_1-1.0", "bad.name-1"] {
        assert!(
            log.subscribe_now(Some(&LastEventId::parse(bad).unwrap()))
                .is_err(),
            "{bad}"
        );
    }
}

#[test]
fn stats_count_appends_and_gaps_recorded_and_reported() {
    let log = MemoryLog::builder().history(2).build();
    let mut live = log.subscribe_now(None).unwrap();
    log.push(Event::new("a")).unwrap();
    log.record_gap();
    log.record_gap(); // one gap, as it is reported once
    log.push(Event::new("b")).unwrap();
    assert_eq!(data(&ready(&mut live)), ["a", "<gap>", "b"]);
    // Another instance's cursor: a gap first, then the history with its recorded gap.
    let other = if log.epoch() == "0badcafe" {
        "0badbeef-1"
    } else {
        "0badcafe-1"
    };
    let mut stranger = log
        .subscribe_now(Some(&LastEventId::parse(other).unwrap()))
        .unwrap();
    assert_eq!(data(&ready(&mut stranger)), ["<gap>", "a", "<gap>", "b"]);
    let stats = log.stats();
    assert_eq!((stats.appended, stats.held, stats.subscribers), (2, 2, 2));
    assert_eq!(stats.gaps_recorded, 1);
    assert_eq!(stats.gaps_reported, 3, "each reset a reader hands out");
    assert_eq!(stats.position, log.position());
}

#[tokio::test(start_paused = true)]
async fn an_idempotency_key_appends_once_within_its_window_and_is_bounded() {
    let log = MemoryLog::builder().remembered_keys(2).build();
    let mut live = log.subscribe_now(None).unwrap();
    let key = |k: &str| IdempotencyKey::new(k).unwrap();
    let window = Duration::from_secs(60);

    let first = log.push_once(Event::new("a"), &key("k"), window).unwrap();
    let repeat = log.push_once(Event::new("a"), &key("k"), window).unwrap();
    assert!(!first.is_repeat() && repeat.is_repeat());
    assert_eq!(first.id(), repeat.id());
    assert!(matches!(
        log.push_once(Event::new("b"), &key("k"), window),
        Err(AppendError::KeyReused)
    ));
    assert_eq!(data(&ready(&mut live)), ["a"], "one event, once");

    // Forgotten after the window.
    tokio::time::advance(window).await;
    assert!(!log
        .push_once(Event::new("a"), &key("k"), window)
        .unwrap()
        .is_repeat());
    // Past the bound, the oldest key goes first: its retry appends again.
    log.push_once(Event::new("x"), &key("x"), window).unwrap();
    log.push_once(Event::new("y"), &key("y"), window).unwrap();
    assert!(!log
        .push_once(Event::new("a"), &key("k"), window)
        .unwrap()
        .is_repeat());
    assert!(log
        .push_once(Event::new("y"), &key("y"), window)
        .unwrap()
        .is_repeat());

    // A finished log still answers a repeat of what it took, and refuses anything new.
    log.finish();
    assert!(log
        .push_once(Event::new("y"), &key("y"), window)
        .unwrap()
        .is_repeat());
    assert!(matches!(
        log.push_once(Event::new("z"), &key("z"), window),
        Err(AppendError::Finished)
    ));
}
