//! Any event stream made resumable, over real TCP: a broadcast channel and a change feed
//! filled into a `MemoryLog` (`tower_eventstream::fill`), losses recorded as gaps, and the
//! documented behaviour of a plain stream served as it is (live-only, and it says so).

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::Router;
use futures_util::stream::{self, Stream};
use support::client::{long_poll, poll_cursor, poll_data};
use support::server::{Serving, TestServer};
use support::sse::SseClient;
use support::wait_until;
use tokio::sync::{broadcast, Notify};
use tower::service_fn;
use tower_eventstream::{
    fill, from_stream, Event, EventLogService, EventStreamLayer, MemoryLog, StreamConfig,
};

async fn serve(log: impl tower_eventstream::EventLog) -> TestServer {
    let router = Router::new().route_service("/events", EventLogService::new(log));
    TestServer::start(Serving::Axum, router).await
}

fn data(events: &[eventsource_stream::Event]) -> Vec<String> {
    events.iter().map(|event| event.data.clone()).collect()
}

fn numbers(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|n| n.to_string()).collect()
}

#[tokio::test]
async fn a_broadcast_channel_becomes_resumable_exactly_once() {
    let (sender, receiver) = broadcast::channel::<String>(64);
    let log = fill(MemoryLog::new(), receiver);
    let server = serve(log.clone()).await;

    let mut client = SseClient::connect(server.addr, "/events", None).await;
    for n in 0..5 {
        sender.send(n.to_string()).unwrap();
    }
    assert_eq!(data(&client.take(5).await), numbers(0..5));
    let cursor = client.last_event_id().to_owned();
    drop(client);

    for n in 5..10 {
        sender.send(n.to_string()).unwrap();
    }
    wait_until("the log to hold all ten", || log.len() == 10).await;
    let mut client = SseClient::connect(server.addr, "/events", Some(&cursor)).await;
    assert_eq!(
        data(&client.take(5).await),
        numbers(5..10),
        "resumed exactly after the cursor"
    );
    sender.send("10".to_owned()).unwrap();
    assert_eq!(
        client.next().await.data,
        "10",
        "nothing repeated before the live event"
    );

    let (_, answer) = long_poll(server.addr, &format!("/events?timeout=0&lastEventId={cursor}")).await;
    assert_eq!(poll_data(&answer), numbers(5..11));
    assert_eq!(answer["reset"], false);
    assert!(log.is_filling());
}

/// On one thread, a burst sent without yielding overruns the channel before the filling
/// task runs: the receiver lags, for certain.
#[tokio::test(flavor = "current_thread")]
async fn a_lagging_broadcast_is_a_reset_never_a_silent_hole() {
    let (sender, receiver) = broadcast::channel::<String>(4);
    let log = fill(MemoryLog::new(), receiver);
    let server = serve(log.clone()).await;
    sender.send("before".to_owned()).unwrap();
    wait_until("the first event", || log.len() == 1).await;
    let before = log.position();

    let mut connected = SseClient::connect(server.addr, "/events", Some(before.as_str())).await;
    for n in 0..100 {
        sender.send(n.to_string()).unwrap();
    }
    let reset = connected.next().await;
    assert_eq!(
        reset.event, "reset",
        "the lag is reported before the events after it"
    );
    assert_eq!(data(&connected.take(4).await), numbers(96..100));

    // A client resuming from before the burst hears the same gap; a long poll too.
    let mut resumed = SseClient::connect(server.addr, "/events", Some(before.as_str())).await;
    assert_eq!(resumed.next().await.event, "reset");
    assert_eq!(data(&resumed.take(4).await), numbers(96..100));
    let (_, answer) = long_poll(server.addr, &format!("/events?timeout=0&lastEventId={before}")).await;
    assert_eq!(answer["reset"], true, "{answer}");
    assert_eq!(poll_data(&answer), numbers(96..100));
    // Past the gap, a cursor resumes without hearing it again.
    let (_, again) = long_poll(
        server.addr,
        &format!("/events?timeout=0&lastEventId={}", poll_cursor(&answer)),
    )
    .await;
    assert_eq!(
        (again["reset"].as_bool(), poll_data(&again).len()),
        (Some(false), 0)
    );
}

/// A table whose rows have ids of their own (not consecutive), read as a change feed that
/// replays every row after an id and then follows new ones.
#[derive(Clone, Default)]
struct Table {
    rows: Arc<Mutex<Vec<(u64, String)>>>,
    changed: Arc<Notify>,
}

impl Table {
    fn insert(&self, id: u64, text: &str) {
        self.rows.lock().unwrap().push((id, text.to_owned()));
        self.changed.notify_waiters();
    }

    fn changes_after(&self, after: u64) -> impl Stream<Item = Event> + Send + 'static {
        let table = self.clone();
        stream::unfold(after, move |seen| {
            let table = table.clone();
            async move {
                loop {
                    let changed = table.changed.notified();
                    let next = (table.rows.lock().unwrap().iter())
                        .find(|(id, _)| *id > seen)
                        .cloned();
                    if let Some((id, text)) = next {
                        let event = Event::new(text).with_id(id.to_string()).unwrap();
                        return Some((event, id));
                    }
                    changed.await;
                }
            }
        })
    }
}

#[tokio::test]
async fn a_change_feed_with_its_own_ids_resumes_across_a_restart_without_reset() {
    let table = Table::default();
    for (id, text) in [(10, "a"), (20, "b"), (30, "c")] {
        table.insert(id, text);
    }
    let first = MemoryLog::builder().source_ids("changes", 0).unwrap().build();
    let first = fill(first, from_stream(table.changes_after(0)));
    let server = serve(first.clone()).await;
    let mut client = SseClient::connect(server.addr, "/events", Some("changes-0")).await;
    assert_eq!(data(&client.take(3).await), ["a", "b", "c"]);
    assert_eq!(client.last_event_id(), "changes-30");
    drop((client, server, first));

    // While the server is down, the feed goes on; the new process replays it after 15.
    table.insert(40, "d");
    table.insert(55, "e");
    let second = MemoryLog::builder().source_ids("changes", 15).unwrap().build();
    let second = fill(second, from_stream(table.changes_after(15)));
    let server = serve(second.clone()).await;
    let mut client = SseClient::connect(server.addr, "/events", Some("changes-30")).await;
    assert_eq!(
        data(&client.take(2).await),
        ["d", "e"],
        "no reset, nothing repeated"
    );
    table.insert(60, "f");
    assert_eq!(client.next().await.data, "f");

    // A cursor from before what the new process holds is told it missed events.
    let mut old = SseClient::connect(server.addr, "/events", Some("changes-10")).await;
    assert_eq!(old.next().await.event, "reset");
    assert_eq!(data(&old.take(4).await), ["b", "c", "d", "e"]);
}

#[tokio::test]
async fn a_plain_stream_is_live_only_and_says_so() {
    let (sender, _) = broadcast::channel::<String>(16);
    let live = sender.clone();
    let inner = service_fn(move |_request: Request| {
        let receiver = live.subscribe();
        async move {
            let events = stream::unfold(receiver, |mut receiver| async move {
                let text = receiver.recv().await.ok()?;
                Some((Ok::<_, Infallible>(Event::new(text)), receiver))
            });
            Ok::<_, Infallible>(Box::pin(events))
        }
    });
    let events = tower::ServiceBuilder::new()
        .layer(EventStreamLayer::new(StreamConfig::default()))
        .service(inner);
    let server = TestServer::start(Serving::Axum, Router::new().route_service("/events", events)).await;

    // A first connection has missed nothing and hears no reset.
    let mut fresh = SseClient::connect(server.addr, "/events", None).await;
    sender.send("one".to_owned()).unwrap();
    let first = fresh.next().await;
    assert_eq!((first.event.as_str(), first.data.as_str()), ("message", "one"));
    // One that comes back (it sends a cursor) is told it may have missed events.
    let mut back = SseClient::connect(server.addr, "/events", Some("anything")).await;
    assert_eq!(back.next().await.event, "reset");

    let (_, answer) = long_poll(server.addr, "/events?timeout=0").await;
    assert_eq!(
        (answer["reset"].as_bool(), poll_cursor(&answer)),
        (Some(false), "live".to_owned())
    );
    let (_, answer) = long_poll(server.addr, "/events?timeout=0&lastEventId=live").await;
    assert_eq!(
        answer["reset"], true,
        "a poll after a poll may have missed events: {answer}"
    );
}
