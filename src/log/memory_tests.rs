//! Unit tests of `memory`, kept apart so the module reads in one sitting.

use super::*;
use crate::log::ring::TAKE_PER_LOCK;
use std::future::poll_fn;

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
    let a = log.push(Event::new("a"));
    log.push(Event::new("b"));
    let mut sub = log.subscribe_now(Some(&cursor(a.id().unwrap()))).unwrap();
    assert_eq!(sub.outcome(), ResumeOutcome::Resumed);
    assert_eq!(data(&ready(&mut sub)), ["b"]);
    log.push(Event::new("c"));
    assert_eq!(data(&ready(&mut sub)), ["c"]);
    assert_eq!(sub.position().unwrap(), log.position());
}

#[test]
fn trimmed_history_and_foreign_epochs_are_gaps() {
    let log = MemoryLog::builder().history(2).build();
    let a = log.push(Event::new("a"));
    log.push(Event::new("b"));
    log.push(Event::new("c"));
    let mut sub = log.subscribe_now(Some(&cursor(a.id().unwrap()))).unwrap();
    assert_eq!(sub.outcome(), ResumeOutcome::Resumed, "b is still held");
    assert_eq!(data(&ready(&mut sub)), ["b", "c"]);

    log.push(Event::new("d"));
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
        log.push(Event::new(n.to_string()));
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
        log.push(Event::new(n.to_string()));
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
        log.push(Event::new(n.to_string()));
    }
    let answer = Pin::new(&mut sub).poll_encoded(&mut cx, &mut out, 1 << 16);
    assert!(
        matches!(answer, Poll::Ready(Some(Ok(0)))),
        "a gap goes through poll_delivery"
    );
    // The held events follow the gap at once, without waiting for another append.
    assert_eq!(data(&ready(&mut sub)), ["<gap>", "7", "8", "9"]);
    log.push(Event::new("10"));
    let answer = Pin::new(&mut sub).poll_encoded(&mut cx, &mut out, 1 << 16);
    assert!(matches!(answer, Poll::Ready(Some(Ok(n))) if n > 0));
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
        publisher.push(Event::new("late"));
    });
    let got = poll_fn(|cx| Pin::new(&mut sub).poll_delivery(cx))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(data(&[got]), ["late"]);
}
