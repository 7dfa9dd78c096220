//! Unit tests of `ring`, kept apart so the module reads in one sitting.

use std::task::Context;

use std::sync::Arc;

use tokio::sync::Notify;

use super::*;
use crate::measure::GapCause;
use crate::stats::LogCounters;
use crate::{Delivery, EventId};

struct Numbered(Event);

impl RingEntry for Numbered {
    type Position = u64;

    fn event(&self) -> Option<&Event> {
        Some(&self.0)
    }

    fn position(&self, seq: u64) -> u64 {
        seq
    }
}

fn ring(events: u64, capacity: usize) -> Ring<Numbered> {
    let mut ring = Ring::new();
    for n in 1..=events {
        ring.push(Numbered(Event::new(n.to_string())), capacity);
    }
    ring
}

fn follower(next_seq: u64) -> Follower<u64> {
    Follower::new(Arc::new(Notify::new()), next_seq, next_seq - 1)
}

fn drain(follower: &mut Follower<u64>, counters: &LogCounters) -> Vec<String> {
    std::iter::from_fn(|| follower.pop(counters, |seq| EventId::new(seq.to_string()).unwrap()))
        .map(|delivery| match delivery {
            Delivery::Gap(at) => format!("<gap {}>", at.unwrap().as_str()),
            Delivery::Event(event) => event.data().to_owned(),
            _ => unreachable!(),
        })
        .collect()
}

#[test]
fn the_ring_numbers_evicts_and_finds() {
    let mut ring = ring(5, 3);
    assert_eq!((ring.first_seq(), ring.next_seq(), ring.len()), (3, 6, 3));
    ring.evict_while(|entry| entry.0.data() == "3");
    assert_eq!(ring.first_seq(), 4);
    assert_eq!(ring.seq_after(|entry| entry.0.data().cmp("4")), Some(5));
    assert_eq!(ring.seq_after(|entry| entry.0.data().cmp("9")), None);
    ring.clear();
    assert_eq!((ring.first_seq(), ring.next_seq(), ring.len()), (6, 6, 0));
}

#[test]
fn a_lagging_reader_owes_a_gap_before_the_oldest_held() {
    let ring = ring(10, 3);
    let mut reader = follower(1);
    assert!(reader.behind(&ring));
    assert!(reader.skip_lag(&ring, ring.first_seq() - 1));
    assert_eq!(
        reader.position(|_| unreachable!()),
        None,
        "no position while a gap is due"
    );
    reader.take(&ring);
    let counters = LogCounters::default();
    assert_eq!(drain(&mut reader, &counters), ["<gap 7>", "8", "9", "10"]);
    assert_eq!(gaps_reported(&counters), 1);
    assert_eq!(reader.delivered(), 10);
    assert!(!reader.skip_lag(&ring, ring.first_seq() - 1));
}

#[test]
fn an_owed_gap_waits_until_it_is_settled() {
    let mut reader = follower(1);
    let counters = LogCounters::default();
    reader.owe_gap(GapCause::BackendLost);
    assert!(reader.has_ready());
    assert!(reader.pop(&counters, |_| unreachable!()).is_none());
    assert_eq!(
        gaps_reported(&counters),
        0,
        "an owed gap is counted once handed out"
    );
    assert!(reader.position(|_| unreachable!()).is_none());
    reader.settle_gap(4);
    reader.push_taken(5, Event::new("5"));
    assert_eq!(drain(&mut reader, &counters), ["<gap 4>", "5"]);
    assert_eq!(gaps_reported(&counters), 1);
    reader.settle_gap(9);
    assert!(!reader.has_ready(), "settling owes nothing when no gap was owed");
}

#[test]
fn takes_one_batch_per_look_and_copies_what_fits() {
    let ring = ring(TAKE_PER_LOCK as u64 + 2, 1024);
    let mut reader = follower(1);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    reader.wake.arm();
    assert_eq!(reader.take(&ring), Some(TAKE_PER_LOCK as u64));
    assert!(
        reader.wake.poll_rearm(&mut cx).is_ready(),
        "a full batch looks again at once"
    );
    assert!(
        reader.wake.poll_rearm(&mut cx).is_pending(),
        "then waits for a change"
    );
    drain(&mut reader, &LogCounters::default());
    let mut out = bytes::BytesMut::new();
    let copied = reader.copy_encoded(&ring, &mut out, 1);
    assert_eq!((copied.bytes, copied.events), (out.len(), 1));
    assert_eq!(reader.delivered(), TAKE_PER_LOCK as u64 + 1);
    assert_eq!(reader.copy_encoded(&ring, &mut out, 1 << 16).events, 1);
    assert_eq!(reader.delivered(), TAKE_PER_LOCK as u64 + 2);
    assert!(reader.copy_encoded(&ring, &mut out, 1 << 16).is_none());
}

fn gaps_reported(counters: &LogCounters) -> u64 {
    counters.snapshot(0, 0, EventId::new("0").unwrap()).gaps_reported
}

#[test]
fn gaps_in_a_row_are_one_reset_with_the_first_cause() {
    let mut reader = follower(1);
    let counters = LogCounters::default();
    reader.owe_gap(GapCause::Trimmed);
    reader.owe_gap(GapCause::FellBehind);
    reader.settle_gap(3);
    reader.push_gap(4);
    assert_eq!(drain(&mut reader, &counters), ["<gap 4>"]);
    assert_eq!(gaps_reported(&counters), 1);
}
