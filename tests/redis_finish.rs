//! Finished Redis logs (feature `redis`): the end is an entry of the stream, so every
//! instance sees it, including one that was cut off when it happened and one that connects
//! later. Readers get every event, then their stream ends; a reader at the end is finished
//! at once; no entry is ever added after the end, whichever instance appends. In process and
//! over real TCP (`204` at the end, `"finished": true` in a long poll that reaches it).
//!
//! Each test starts its own `redis-server` (skipped with a warning when it is missing,
//! except under CI).

#![cfg(feature = "redis")]

mod support;

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::Router;
use bytes::Bytes;
use http::Method;
use support::client::{get, long_poll, open, poll_cursor, poll_data};
use support::feed::{append, cursor, label, subscribe};
use support::reader::SseReader;
use support::redis::RedisServer;
use support::server::{Serving, TestServer};
use support::sse::{parse_sse, SseClient};
use support::{wait_until, within, LIMIT};
use tower_eventstream::{
    AppendError, Event, EventFeed, EventLog, EventLogService, LastEventId, RedisLog, RedisSubscription,
    ResumeOutcome, StartPosition, StreamConfig, Subscription,
};

async fn connect(server: &RedisServer, key: &str) -> RedisLog {
    within("connect", RedisLog::builder(server.url(), key).connect())
        .await
        .expect("connect RedisLog")
}

/// Appends, and waits until this process has read the event back, so that a subscriber that
/// comes next starts after it.
async fn append_seen(log: &RedisLog, data: &str) -> Event {
    let event = append(log, data).await;
    let id = event.id().expect("an id").clone();
    wait_until("the append to be read back", || log.position() == id).await;
    event
}

/// The labels of every delivery up to the end; the subscription must then be finished.
async fn read_to_end(subscription: &mut RedisSubscription) -> Vec<String> {
    let mut got = Vec::new();
    within("the subscription's end", async {
        while let Some(delivery) = poll_fn(|cx| Pin::new(&mut *subscription).poll_delivery(cx)).await {
            match delivery {
                Ok(delivery) => got.push(label(&delivery)),
                Err(never) => match never {},
            }
        }
    })
    .await;
    assert!(subscription.is_finished(), "ended but not finished after {got:?}");
    got
}

/// The subscription is finished before any poll, and its first poll ends it.
fn finished_at_once(subscription: &mut RedisSubscription, what: &str) {
    assert!(subscription.is_finished(), "{what}: not finished at once");
    let polled = Pin::new(subscription).poll_delivery(&mut Context::from_waker(Waker::noop()));
    assert!(matches!(polled, Poll::Ready(None)), "{what}: {polled:?}");
}

fn words(words: &[&str]) -> Vec<String> {
    words.iter().map(|word| (*word).to_owned()).collect()
}

/// Every entry of the stream: its id and its field names.
async fn entries(server: &RedisServer, key: &str) -> Vec<(String, Vec<String>)> {
    let mut connection = server.connection().await;
    let reply: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .expect("XRANGE");
    reply
        .into_iter()
        .map(|(id, fields)| (id, fields.into_iter().map(|(field, _)| field).collect()))
        .collect()
}

fn is_end(fields: &[String]) -> bool {
    fields.iter().any(|field| field == "end")
}

fn refused(result: Result<Event, AppendError<tower_eventstream::RedisLogError>>) -> bool {
    matches!(result, Err(AppendError::Finished))
}

#[tokio::test]
async fn subscribers_mid_stream_get_every_event_then_the_end_and_appends_fail_everywhere() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // A small window: a subscriber with an older cursor reads from Redis.
    let builder = RedisLog::builder(server.url(), "job").window(4);
    let a = within("connect", builder.connect()).await.expect("connect");
    let b = connect(&server, "job").await;
    let first = append_seen(&a, "e0").await;
    let mut live = subscribe(&a, None).await;
    let mut on_b = subscribe(&b, Some(&cursor(&first))).await;
    let expected: Vec<String> = (1..10).map(|n| format!("e{n}")).collect();
    for data in &expected {
        append(&a, data).await;
    }
    let mut behind = subscribe(&a, Some(&cursor(&first))).await;
    assert!(!within("is_finished", a.is_finished()).await.unwrap());

    within("finish", b.finish()).await.expect("finish");
    assert!(within("is_finished", a.is_finished()).await.unwrap());
    for (name, subscription) in [("live", &mut live), ("on b", &mut on_b), ("behind", &mut behind)] {
        assert_eq!(read_to_end(subscription).await, expected, "{name}");
    }
    assert!(refused(a.append(Event::new("late")).await));
    assert!(refused(b.append(Event::new("late")).await));

    // Finishing again adds no second end, and a gap recorded after the end adds nothing.
    within("finish", a.finish()).await.expect("finish again");
    within("finish", b.finish()).await.expect("finish again");
    within("record_gap", a.record_gap()).await.expect("record_gap");
    let stored = entries(&server, "job").await;
    assert_eq!(stored.len(), 11, "{stored:?}");
    assert!(
        stored.last().is_some_and(|(_, fields)| is_end(fields)),
        "{stored:?}"
    );
    assert_eq!(stored.iter().filter(|(_, fields)| is_end(fields)).count(), 1);
}

#[tokio::test]
async fn every_instance_sees_the_end_including_one_connected_after_it() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = connect(&server, "story").await;
    let mut told = Vec::new();
    for word in ["Once", "upon", "a", "time"] {
        told.push(append(&a, word).await);
    }
    within("finish", a.finish()).await.expect("finish");
    let end_id = entries(&server, "story").await.pop().expect("the end entry").0;
    let late = connect(&server, "story").await;
    // A late instance with a window too small for the story reads it from Redis.
    let tiny = RedisLog::builder(server.url(), "story").window(1).connect();
    let tiny = within("connect", tiny).await.expect("connect");

    for (name, log) in [("finisher", &a), ("late", &late), ("tiny window", &tiny)] {
        assert!(within("is_finished", log.is_finished()).await.unwrap(), "{name}");
        assert!(refused(log.append(Event::new("the end?")).await), "{name}");
        finished_at_once(&mut subscribe(log, None).await, &format!("{name}: live end"));
        let mut at_last = subscribe(log, Some(&cursor(&told[3]))).await;
        assert_eq!(at_last.outcome(), ResumeOutcome::Resumed, "{name}");
        finished_at_once(&mut at_last, &format!("{name}: at the last event"));
        let end = LastEventId::parse(&end_id).unwrap();
        finished_at_once(
            &mut subscribe(log, Some(&end)).await,
            &format!("{name}: at the end entry"),
        );

        let mut rest = subscribe(log, Some(&cursor(&told[1]))).await;
        assert_eq!(read_to_end(&mut rest).await, words(&["a", "time"]), "{name}");
        for (start, expected) in [
            (StartPosition::Oldest, &["Once", "upon", "a", "time"][..]),
            (StartPosition::Last(2), &["a", "time"]),
            (StartPosition::Last(1), &["time"]),
            (StartPosition::Last(9), &["Once", "upon", "a", "time"]),
        ] {
            let mut fresh = within("subscribe", log.subscribe_fresh(start)).await.unwrap();
            assert_eq!(
                read_to_end(&mut fresh).await,
                words(expected),
                "{name}: {start:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_stream_finished_without_events_or_by_another_program_ends_the_same_way() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // Finished before any event: every start position is at the end.
    let empty = connect(&server, "empty").await;
    within("finish", empty.finish()).await.expect("finish");
    for start in [
        StartPosition::LiveEnd,
        StartPosition::Oldest,
        StartPosition::Last(3),
    ] {
        let mut fresh = within("subscribe", empty.subscribe_fresh(start)).await.unwrap();
        finished_at_once(&mut fresh, &format!("{start:?}"));
    }

    // Another program writes the documented end entry itself.
    let log = connect(&server, "other").await;
    append_seen(&log, "one").await;
    let mut reader = subscribe(&log, None).await;
    append(&log, "two").await;
    let mut connection = server.connection().await;
    let _: String = redis::cmd("XADD")
        .arg("other")
        .arg("*")
        .arg("end")
        .arg("")
        .query_async(&mut connection)
        .await
        .expect("XADD end");
    assert_eq!(read_to_end(&mut reader).await, ["two"]);
    assert!(refused(log.append(Event::new("three")).await));
    let mut oldest = within("subscribe", log.subscribe_fresh(StartPosition::Oldest))
        .await
        .unwrap();
    assert_eq!(read_to_end(&mut oldest).await, ["one", "two"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_cut_off_when_the_end_came_sees_it_once_redis_is_back() {
    let Some(mut server) = RedisServer::start_persistent() else {
        return;
    };
    let quick = Duration::from_millis(500);
    let builder = RedisLog::builder(server.url(), "feed").command_timeout(quick);
    let a = within("connect", builder.clone().connect())
        .await
        .expect("connect");
    let b = within("connect", builder.connect()).await.expect("connect");
    let mut reader = subscribe(&b, None).await;
    append(&a, "before").await;
    server.kill();
    server.restart();
    // The end is stored as soon as Redis answers again (the script is loaded anew).
    let deadline = Instant::now() + LIMIT;
    while let Err(error) = a.finish().await {
        assert!(Instant::now() < deadline, "Redis did not come back: {error}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(read_to_end(&mut reader).await, ["before"]);
    // `b` heard of the end through its reader; its own connection for appends may still be
    // the one Redis dropped, which fails once and reconnects: then the append is refused.
    let after = loop {
        match b.append(Event::new("after")).await {
            Err(AppendError::Backend(error)) if Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => break other,
        }
    };
    assert!(refused(after));
    finished_at_once(&mut subscribe(&b, None).await, "live end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_racing_a_finish_never_follow_the_end() {
    const ROUNDS: usize = 5;
    let Some(server) = RedisServer::start() else {
        return;
    };
    for round in 0..ROUNDS {
        let key = format!("race{round}");
        // Long enough that nothing is trimmed.
        let builder = RedisLog::builder(server.url(), &key).max_len(1_000_000);
        let mut appenders = Vec::new();
        for _ in 0..2 {
            appenders.push(
                within("connect", builder.clone().connect())
                    .await
                    .expect("connect"),
            );
        }
        let finishers = [connect(&server, &key).await, connect(&server, &key).await];
        let mut tasks = Vec::new();
        for (n, log) in appenders.iter().cycle().take(8).enumerate() {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                // Appends until refused: every id acknowledged, then the refusal.
                let mut acknowledged = Vec::new();
                loop {
                    match log.append(Event::new(format!("{n}"))).await {
                        Ok(event) => acknowledged.push(event.id().unwrap().as_str().to_owned()),
                        Err(AppendError::Finished) => return acknowledged,
                        Err(error) => panic!("append failed: {error}"),
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(20 + 10 * round as u64)).await;
        let [first, second] = &finishers;
        let (one, two) = tokio::join!(first.finish(), second.finish());
        one.and(two).expect("finish");
        let mut acknowledged = Vec::new();
        for task in tasks {
            acknowledged.extend(within("an appender", task).await.expect("an appender"));
        }

        let stored = entries(&server, &key).await;
        let ends: Vec<usize> = (0..stored.len()).filter(|&i| is_end(&stored[i].1)).collect();
        assert_eq!(ends, [stored.len() - 1], "one end, last: {round}");
        assert!(
            !acknowledged.is_empty(),
            "round {round} appended nothing before the end"
        );
        assert_eq!(
            acknowledged.len(),
            stored.len() - 1,
            "every acknowledged event is stored"
        );
        let end_id = &stored[stored.len() - 1].0;
        let mut before_end: Vec<&String> = stored[..stored.len() - 1].iter().map(|(id, _)| id).collect();
        let mut acked: Vec<&String> = acknowledged.iter().collect();
        before_end.sort();
        acked.sort();
        assert_eq!(before_end, acked);
        support::report(&format!(
            "round {round}: {} events, then the end {end_id}",
            acknowledged.len()
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Over TCP
// ---------------------------------------------------------------------------------------

async fn serve(log: &RedisLog, start: StartPosition) -> TestServer {
    let config = StreamConfig::default().start(start);
    let service = EventLogService::new(log.clone()).with_config(config);
    TestServer::start(Serving::Axum, Router::new().route_service("/events", service)).await
}

/// The status of an SSE request (its body is not read).
async fn sse_status(addr: SocketAddr, cursor: Option<&str>) -> u16 {
    let mut headers: Vec<(&str, &[u8])> = vec![("accept", b"text/event-stream")];
    if let Some(cursor) = cursor {
        headers.push(("last-event-id", cursor.as_bytes()));
    }
    let reader = open(addr, Method::GET, "/events", &headers, Bytes::new()).await;
    reader.head.status.as_u16()
}

/// An SSE stream read to its end: the data of its events and the last id.
async fn sse_to_end(addr: SocketAddr, cursor: Option<&str>) -> (Vec<String>, String) {
    let mut reader = SseReader::connect(addr, "/events", cursor).await;
    let text = within("the stream's end", reader.read_to_end()).await;
    let events = parse_sse(&text);
    let data = events
        .iter()
        .filter(|event| event.event != "checkpoint")
        .map(|event| event.data.clone())
        .collect();
    (
        data,
        events.last().map(|event| event.id.clone()).unwrap_or_default(),
    )
}

#[tokio::test]
async fn over_tcp_readers_end_and_a_return_at_the_end_is_204_on_every_instance() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = connect(&server, "tcp").await;
    let b = connect(&server, "tcp").await;
    let (http_a, http_b) = (
        serve(&a, StartPosition::LiveEnd).await,
        serve(&b, StartPosition::LiveEnd).await,
    );
    let t0 = append_seen(&a, "t0").await;
    let cursor = t0.id().expect("an id").as_str().to_owned();
    let mut live = SseClient::connect(http_a.addr, "/events", None).await;
    for n in 1..=3 {
        append(&a, &format!("t{n}")).await;
    }
    // The other instance finishes.
    within("finish", b.finish()).await.expect("finish");
    let expected = words(&["t1", "t2", "t3"]);
    let got: Vec<String> = live.take(3).await.into_iter().map(|event| event.data).collect();
    assert_eq!(got, expected);
    let end = live.last_event_id().to_owned();
    within("the SSE stream to end", live.ended()).await;

    // A long poll that reaches the end says so; one at the end is 204.
    let (_, answer) = long_poll(http_a.addr, &format!("/events?timeout=5000&lastEventId={cursor}")).await;
    assert_eq!(poll_data(&answer), expected);
    assert_eq!(answer["finished"], true, "{answer}");
    assert_eq!(poll_cursor(&answer), end);
    let late = connect(&server, "tcp").await;
    let http_late = serve(&late, StartPosition::LiveEnd).await;
    for addr in [http_a.addr, http_b.addr, http_late.addr] {
        let at_end = get(addr, &format!("/events?timeout=5000&lastEventId={end}")).await;
        assert_eq!(at_end.status.as_u16(), 204, "{}", at_end.text());
        assert_eq!(sse_status(addr, Some(&end)).await, 204, "a return at the end");
        assert_eq!(sse_status(addr, None).await, 204, "a newcomer at the live end");
    }
}

#[tokio::test]
async fn over_tcp_a_late_joiner_from_the_oldest_gets_every_event_then_the_end() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let writer = connect(&server, "late").await;
    for word in ["Once", "upon", "a", "time"] {
        append(&writer, word).await;
    }
    within("finish", writer.finish()).await.expect("finish");
    drop(writer);
    // An instance that was not there when it happened.
    let log = connect(&server, "late").await;
    let http = serve(&log, StartPosition::Oldest).await;
    let (data, last) = sse_to_end(http.addr, None).await;
    assert_eq!(data, words(&["Once", "upon", "a", "time"]));
    assert_eq!(sse_status(http.addr, Some(&last)).await, 204);
    let (_, answer) = long_poll(http.addr, "/events?timeout=0").await;
    assert_eq!(poll_data(&answer), words(&["Once", "upon", "a", "time"]));
    assert_eq!(answer["finished"], true, "{answer}");
    assert_eq!(poll_cursor(&answer), last);
}
