//! Reading a log in process, for the tests of the logs themselves: subscribe, append, and
//! take deliveries one by one within [`LIMIT`](super::LIMIT).

use std::fmt::Debug;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tower_eventstream::{Delivery, Event, EventFeed, EventLog, LastEventId};

use super::within;

/// Subscribes after `cursor`; fails the test on an error.
#[allow(dead_code)]
pub async fn subscribe<L: EventLog>(log: &L, cursor: Option<&LastEventId>) -> L::Subscription {
    within("subscribe", log.subscribe(cursor))
        .await
        .expect("subscribe")
}

/// Appends an event carrying `data`; fails the test on an error.
#[allow(dead_code)]
pub async fn append<L: EventLog>(log: &L, data: &str) -> Event {
    within("append", log.append(Event::new(data)))
        .await
        .expect("append")
}

/// The cursor a client holds after `event`.
#[allow(dead_code)]
pub fn cursor(event: &Event) -> LastEventId {
    LastEventId::parse(event.id().expect("an id").as_str()).expect("a cursor")
}

/// The next delivery; fails the test if the feed fails or ends.
#[allow(dead_code)]
pub async fn next<F>(feed: &mut F) -> Delivery
where
    F: EventFeed + Unpin,
    F::Error: Debug,
{
    let delivery = within(
        "the next delivery",
        poll_fn(|cx| Pin::new(&mut *feed).poll_delivery(cx)),
    )
    .await;
    match delivery {
        Some(Ok(delivery)) => delivery,
        Some(Err(error)) => panic!("the feed failed: {error:?}"),
        None => panic!("the feed ended"),
    }
}

/// A delivery ready now, without waiting.
#[allow(dead_code)]
pub fn ready_now<F>(feed: &mut F) -> Option<Delivery>
where
    F: EventFeed + Unpin,
    F::Error: Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(feed).poll_delivery(&mut cx) {
        Poll::Ready(Some(Ok(delivery))) => Some(delivery),
        Poll::Ready(Some(Err(error))) => panic!("the feed failed: {error:?}"),
        Poll::Ready(None) => panic!("the feed ended"),
        Poll::Pending => None,
    }
}

/// `data`, or `<gap>` / `<checkpoint>`.
#[allow(dead_code)]
pub fn label(delivery: &Delivery) -> String {
    match delivery {
        Delivery::Event(event) => event.data().to_owned(),
        Delivery::Gap(_) => "<gap>".to_owned(),
        _ => "<checkpoint>".to_owned(),
    }
}

/// The labels of the next `n` deliveries.
#[allow(dead_code)]
pub async fn labels<F>(feed: &mut F, n: usize) -> Vec<String>
where
    F: EventFeed + Unpin,
    F::Error: Debug,
{
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(label(&next(feed).await));
    }
    out
}

/// An event's id and data.
#[allow(dead_code)]
pub fn id_and_data(event: &Event) -> (String, String) {
    (
        event.id().expect("an id").as_str().to_owned(),
        event.data().to_owned(),
    )
}
