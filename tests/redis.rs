//! `RedisLog` against a real `redis-server` (feature `redis`).
//!
//! Each test starts its own server on a free loopback port and kills it when done. Without
//! `redis-server` on the PATH (Debian package `redis-server`) the tests are skipped with a
//! warning, except under CI (`CI` set), where they fail.

#![cfg(feature = "redis")]

mod support;

#[path = "../examples/chat/app.rs"]
mod app;

use std::future::poll_fn;
use std::pin::Pin;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use support::client::{post_message, request};
use support::feed::{append, cursor, label, labels, next, subscribe};
use support::reader::SseReader;
use support::redis::RedisServer;
use support::server::{Serving, TestServer};
use support::sse::{parse_sse, SseClient};
use support::{within, LIMIT};
use tower_eventstream::{
    CursorError, Delivery, Event, EventFeed, EventLog, LastEventId, RedisLog, RedisLogErrorKind,
    RedisSubscription, ResumeOutcome, StreamConfig, SubscribeError, Subscription, Topics,
};

async fn connect(server: &RedisServer, key: &str) -> RedisLog {
    within("connect", RedisLog::builder(server.url(), key).connect())
        .await
        .expect("connect RedisLog")
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Asserts that nothing is delivered for a short while.
async fn nothing_more(subscription: &mut RedisSubscription) {
    let got = tokio::time::timeout(
        Duration::from_millis(300),
        poll_fn(|cx| Pin::new(&mut *subscription).poll_delivery(cx)),
    )
    .await;
    if let Ok(Some(Ok(delivery))) = got {
        panic!("nothing more was expected, got {delivery:?}");
    }
}

fn numbered(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| n.to_string()).collect()
}

// ---------------------------------------------------------------------------------------
// The log
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_events_arrive_with_exact_data_names_and_ids() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let log = connect(&server, "room").await;
    let mut subscription = subscribe(&log, None).await;
    assert_eq!(subscription.outcome(), ResumeOutcome::Fresh);
    assert_eq!(log.subscriber_count(), 1);

    let sent = [
        Event::new("hello").with_name("greeting").unwrap(),
        Event::new("two\nlines ✓ \u{1F600}"),
        Event::new(""),
        Event::new("with retry").with_retry(Duration::from_millis(1500)),
    ];
    let mut stored = Vec::new();
    for event in sent.iter().cloned() {
        stored.push(within("append", log.append(event)).await.expect("append"));
    }
    for (sent, stored) in sent.iter().zip(&stored) {
        let id = stored.id().expect("the log assigns an id").as_str();
        let (ms, seq) = id.split_once('-').expect("<ms>-<seq>");
        assert!(ms.parse::<u64>().is_ok() && seq.parse::<u64>().is_ok(), "{id}");
        let Delivery::Event(got) = next(&mut subscription).await else {
            panic!("a gap")
        };
        assert_eq!(got.id(), stored.id());
        assert_eq!(
            (got.data(), got.name(), got.retry()),
            (sent.data(), sent.name(), sent.retry())
        );
        assert!(got.has_data());
        assert_eq!(
            got.to_bytes(),
            stored.to_bytes(),
            "the same wire bytes as the stored event"
        );
    }
    assert_eq!(
        subscription.position().as_ref(),
        stored.last().and_then(|e| e.id())
    );
    assert_eq!(log.position(), *stored.last().unwrap().id().unwrap());
    nothing_more(&mut subscription).await;

    drop(subscription);
    assert_eq!(log.subscriber_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_after_a_cursor_with_no_loss_and_no_duplicate() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let log = connect(&server, "room").await;
    let mut stored = Vec::new();
    for n in 0..50 {
        stored.push(append(&log, &n.to_string()).await);
    }

    // From this process's window.
    let mut near = subscribe(&log, Some(&cursor(&stored[9]))).await;
    assert_eq!(near.outcome(), ResumeOutcome::Resumed);
    assert_eq!(labels(&mut near, 40).await, numbered(10..50));

    // Another process, whose window holds only the last few events: the start comes from
    // Redis, the rest from its window, with appends going on meanwhile.
    let other = within(
        "connect",
        RedisLog::builder(server.url(), "room").window(4).connect(),
    )
    .await
    .expect("connect");
    let mut far = subscribe(&other, Some(&cursor(&stored[2]))).await;
    assert_eq!(far.outcome(), ResumeOutcome::Resumed);
    let publisher = log.clone();
    let appending = tokio::spawn(async move {
        for n in 50..400 {
            publisher.append(Event::new(n.to_string())).await.expect("append");
        }
    });
    assert_eq!(labels(&mut far, 397).await, numbered(3..400));
    assert_eq!(labels(&mut near, 350).await, numbered(50..400));
    appending.await.unwrap();
    nothing_more(&mut far).await;

    // Resuming from the newest position receives exactly what comes next.
    let mut at_end = subscribe(
        &other,
        Some(&LastEventId::parse(other.position().as_str()).unwrap()),
    )
    .await;
    assert_eq!(at_end.outcome(), ResumeOutcome::Resumed);
    append(&log, "next").await;
    assert_eq!(labels(&mut at_end, 1).await, ["next"]);
}

/// A gap recorded by a producer (`record_gap`, as `fill` does for a lagging source) is an
/// entry of the stream: readers in every process report it in place, read live from the
/// window or caught up from Redis, and a client that heard it does not hear it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_gap_is_reported_in_place_by_every_reader() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let log = connect(&server, "gaps").await;
    let mut live = subscribe(&log, None).await;
    let first = append(&log, "before").await;
    within("record a gap", log.record_gap())
        .await
        .expect("record_gap");
    append(&log, "after").await;
    assert_eq!(labels(&mut live, 3).await, ["before", "<gap>", "after"]);

    // Another process whose window is too small to hold the cursor reads the gap from Redis.
    let other = within(
        "connect",
        RedisLog::builder(server.url(), "gaps").window(1).connect(),
    )
    .await
    .expect("connect");
    let mut caught_up = subscribe(&other, Some(&cursor(&first))).await;
    assert_eq!(caught_up.outcome(), ResumeOutcome::Resumed);
    let gap = next(&mut caught_up).await;
    let Delivery::Gap(Some(gap_id)) = gap else {
        panic!("expected a gap with its position, got {gap:?}");
    };
    assert_eq!(labels(&mut caught_up, 1).await, ["after"]);

    // Resuming from the gap's position: the events after it, no second gap.
    let mut past_gap = subscribe(&log, Some(&LastEventId::parse(gap_id.as_str()).unwrap())).await;
    append(&log, "later").await;
    assert_eq!(labels(&mut past_gap, 2).await, ["after", "later"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_older_than_the_trimmed_start_is_a_gap() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let log = within(
        "connect",
        RedisLog::builder(server.url(), "room")
            .max_len(10)
            .window(4)
            .connect(),
    )
    .await
    .expect("connect");
    let first = append(&log, "0").await;
    let mut lagging = subscribe(&log, Some(&cursor(&first))).await;
    assert_eq!(lagging.outcome(), ResumeOutcome::Resumed);
    for n in 1..500 {
        append(&log, &n.to_string()).await;
    }
    // Approximate trimming removed whole nodes: find what the stream still holds.
    let mut redis = server.connection().await;
    let held: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("room")
        .arg("-")
        .arg("+")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(held.len() < 500, "the stream was trimmed");
    let held_data: Vec<String> = held.iter().map(|(_, fields)| fields[0].1.clone()).collect();
    let oldest: usize = held_data[0].parse().unwrap();
    assert!(oldest > 1);

    // A new subscriber with the trimmed cursor: a gap, then everything held, in order.
    let mut resumed = subscribe(&log, Some(&cursor(&first))).await;
    assert_eq!(resumed.outcome(), ResumeOutcome::Gap);
    assert_eq!(
        resumed.position(),
        None,
        "no position is handed out before the gap"
    );
    let gap = next(&mut resumed).await;
    let Delivery::Gap(Some(position)) = &gap else {
        panic!("expected a gap, got {gap:?}")
    };
    assert_eq!(resumed.position().as_ref(), Some(position));
    assert_eq!(labels(&mut resumed, held.len()).await, held_data);

    // Resuming from the gap's position is not another gap.
    let mut again = subscribe(&log, Some(&LastEventId::parse(position.as_str()).unwrap())).await;
    assert_eq!(again.outcome(), ResumeOutcome::Resumed);
    assert_eq!(labels(&mut again, 1).await, held_data[..1]);

    // A subscriber that fell behind while connected gets the gap too, not silence.
    let mut got = labels(&mut lagging, held.len() + 1).await;
    assert_eq!(got.remove(0), "<gap>");
    assert_eq!(got, held_data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_and_recreated_stream_is_a_gap() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let log = connect(&server, "room").await;
    let a = append(&log, "a").await;
    let b = append(&log, "b").await;
    let mut live = subscribe(&log, Some(&cursor(&a))).await;
    assert_eq!(labels(&mut live, 1).await, ["b"]);

    let mut redis = server.connection().await;
    let deleted: i64 = redis::cmd("DEL")
        .arg("room")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    // The stream is gone: an old cursor is a gap, not an error. (Right after the deletion
    // the cursor may still be served from this process's window, which the reader corrects
    // within seconds; either way the gap comes first.)
    let mut while_gone = subscribe(&log, Some(&cursor(&b))).await;
    assert_eq!(labels(&mut while_gone, 1).await, ["<gap>"]);

    append(&log, "c").await;
    let d = append(&log, "d").await;
    let deadline = Instant::now() + LIMIT;
    while log.position() != *d.id().unwrap() {
        assert!(
            Instant::now() < deadline,
            "the reader did not read the new stream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A new subscriber with a cursor of the old stream.
    let mut resumed = subscribe(&log, Some(&cursor(&b))).await;
    assert_eq!(resumed.outcome(), ResumeOutcome::Gap);
    assert_eq!(labels(&mut resumed, 3).await, ["<gap>", "c", "d"]);
    // One that was connected all along (the reader notices the new stream).
    assert_eq!(labels(&mut live, 3).await, ["<gap>", "c", "d"]);
    // (It may hear of the deletion twice, from Redis and then from the reader: a gap too
    // many is safe, a gap too few is not.)
    let mut after = Vec::new();
    while after.last().map(String::as_str) != Some("d") {
        after.push(label(&next(&mut while_gone).await));
    }
    after.retain(|label| label != "<gap>");
    assert_eq!(after, ["c", "d"]);
    // A cursor of the recreated stream resumes.
    let fresh_cursor = LastEventId::parse(log.position().as_str()).unwrap();
    let mut current = subscribe(&log, Some(&fresh_cursor)).await;
    assert_eq!(current.outcome(), ResumeOutcome::Resumed);
    nothing_more(&mut current).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_age_limit_trims_old_entries_and_their_cursors_become_gaps() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let log = within(
        "connect",
        RedisLog::builder(server.url(), "room")
            .max_age(Duration::from_millis(200))
            .connect(),
    )
    .await
    .expect("connect");
    let mut live = subscribe(&log, None).await;
    let mut old = Vec::new();
    for n in 0..300 {
        old.push(append(&log, &format!("old {n}")).await);
    }
    let old_data: Vec<String> = (0..300).map(|n| format!("old {n}")).collect();
    assert_eq!(labels(&mut live, 300).await, old_data);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Approximate trimming drops whole nodes of the stream (100 entries each by default), so
    // the newest entry the reader saw is trimmed too.
    for n in 0..300 {
        append(&log, &format!("new {n}")).await;
    }
    let mut redis = server.connection().await;
    let held: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("room")
        .arg("-")
        .arg("+")
        .query_async(&mut redis)
        .await
        .unwrap();
    let held_data: Vec<String> = held.iter().map(|(_, fields)| fields[0].1.clone()).collect();
    assert!(
        held_data.len() < 600 && held_data[0] != "old 0",
        "old entries were trimmed"
    );

    // A subscriber that was at the newest entry when it aged out lost nothing: no gap.
    let new_data: Vec<String> = (0..300).map(|n| format!("new {n}")).collect();
    assert_eq!(labels(&mut live, 300).await, new_data);

    // Another process, whose window does not hold the old entries: their cursors are gaps.
    let other = connect(&server, "room").await;
    let mut subscription = subscribe(&other, Some(&cursor(&old[0]))).await;
    assert_eq!(subscription.outcome(), ResumeOutcome::Gap);
    let mut got = labels(&mut subscription, held_data.len() + 1).await;
    assert_eq!(got.remove(0), "<gap>");
    assert_eq!(got, held_data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_future_cursors_are_refused() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let log = connect(&server, "room").await;
    let stored = append(&log, "a").await;
    for bad in [
        "nodash",
        "abc-1",
        "1-",
        "-1",
        "1-2-3",
        "0x10-0",
        "18446744073709551616-0",
        "9999999999999-0",
    ] {
        let result = log.subscribe(Some(&LastEventId::parse(bad).unwrap())).await;
        assert!(
            matches!(
                result,
                Err(SubscribeError::InvalidCursor(CursorError::Unknown { .. }))
            ),
            "{bad}: {result:?}"
        );
    }
    // Later than the stream but not than Redis's clock: history was lost (say, a restart
    // without persistence), so the client is told to reload.
    let (ms, seq) = stored.id().unwrap().as_str().split_once('-').unwrap();
    let ahead = format!("{ms}-{}", seq.parse::<u64>().unwrap() + 5);
    let mut subscription = subscribe(&log, Some(&LastEventId::parse(&ahead).unwrap())).await;
    assert_eq!(subscription.outcome(), ResumeOutcome::Gap);
    assert_eq!(labels(&mut subscription, 2).await, ["<gap>", "a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_fails_clearly() {
    // Nobody listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let error = RedisLog::builder(format!("redis://127.0.0.1:{port}"), "room")
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(
            error.kind(),
            RedisLogErrorKind::Unavailable | RedisLogErrorKind::Timeout
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("redis-server is running"), "{error}");

    let error = RedisLog::connect("not a url", "room").await.unwrap_err();
    assert_eq!(error.kind(), RedisLogErrorKind::Config, "{error}");

    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut redis = server.connection().await;
    let () = redis::cmd("SET")
        .arg("plain")
        .arg("1")
        .query_async(&mut redis)
        .await
        .unwrap();
    let error = RedisLog::connect(&server.url(), "plain").await.unwrap_err();
    assert_eq!(error.kind(), RedisLogErrorKind::Refused, "{error}");
    assert!(error.to_string().contains("not a stream"), "{error}");
}

// ---------------------------------------------------------------------------------------
// Two chat instances on one Redis
// ---------------------------------------------------------------------------------------

async fn post(addr: std::net::SocketAddr, text: &str) -> String {
    let answer = post_message(addr, text).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
    answer.json()["id"].as_str().expect("an id").to_owned()
}

/// Two chat instances whose rooms are Redis topics (`chat:<room>`, one reader per instance
/// for all rooms).
async fn chat_instance(server: &RedisServer) -> TestServer {
    let rooms = within("connect", RedisLog::builder(server.url(), "chat:").connect_logs())
        .await
        .expect("connect");
    TestServer::start(
        Serving::Axum,
        app::router(Topics::new(rooms), StreamConfig::default()),
    )
    .await
}

async fn post_to(addr: std::net::SocketAddr, room: &str, text: &str) -> String {
    let answer = request(
        addr,
        Method::POST,
        &format!("/api/rooms/{room}/messages"),
        &[],
        text.to_owned(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
    answer.json()["id"].as_str().expect("an id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_moves_between_two_chat_instances_without_loss_or_duplicate() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (server_a, server_b) = (chat_instance(&server).await, chat_instance(&server).await);
    let (a, b) = (server_a.addr, server_b.addr);

    let mut client = SseClient::connect(a, "/api/events", None).await;
    let mut kitchen = SseClient::connect(b, "/api/rooms/kitchen/events", None).await;
    let mut sent = Vec::new();
    for n in 0..4 {
        let text = format!("before {n}");
        let instance = if n % 2 == 0 { a } else { b };
        sent.push((post(instance, &text).await, text));
        post_to(instance, "garden", &format!("garden {n}")).await;
    }
    for (id, text) in &sent {
        let event = client.next().await;
        assert_eq!(
            (&event.id, &event.event, &event.data),
            (id, &"message".to_owned(), text)
        );
    }
    let last_seen = client.last_event_id().to_owned();
    drop(client);
    let first_kitchen = post_to(a, "kitchen", "kettle on").await;
    assert_eq!(
        kitchen.next().await.id,
        first_kitchen,
        "rooms are isolated: nothing of the lobby or garden"
    );
    let kitchen_seen = kitchen.last_event_id().to_owned();
    drop(kitchen);

    // Cut off: messages go to several rooms on both instances meanwhile.
    let (mut missed, mut missed_kitchen) = (Vec::new(), Vec::new());
    for n in 0..10 {
        let text = format!("meanwhile {n}");
        let instance = if n % 2 == 0 { b } else { a };
        missed.push((post(instance, &text).await, text));
        let text = format!("kitchen {n}");
        missed_kitchen.push((post_to(instance, "kitchen", &text).await, text));
        post_to(instance, "garden", &format!("garden {n}")).await;
    }

    let mut client = SseClient::connect(b, "/api/events", Some(&last_seen)).await;
    let mut kitchen = SseClient::connect(a, "/api/rooms/kitchen/events", Some(&kitchen_seen)).await;
    for (expected, client) in [(&missed, &mut client), (&missed_kitchen, &mut kitchen)] {
        for (id, text) in expected {
            let event = client.next().await;
            assert_eq!(
                (&event.event, &event.id, &event.data),
                (&"message".to_owned(), id, text)
            );
        }
    }
    // Nothing repeated after them: the next event is the next message.
    let after = post(a, "after").await;
    let event = client.next().await;
    assert_eq!((event.id, event.data), (after, "after".to_owned()));
    let after = post_to(b, "kitchen", "after").await;
    assert_eq!(kitchen.next().await.id, after);
}

/// A client cut off while more than the process's window is published reconnects during a
/// Redis outage: its cursor needs Redis, so the stream is held (`200`, keep-alives) rather
/// than refused (a browser would close for good), and once Redis is back it receives every
/// message after its cursor, once, in order. A long poll meanwhile is `503` + `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reconnecting_during_an_outage_is_held_and_resumes_once_redis_returns() {
    let Some(mut server) = RedisServer::start_persistent() else {
        return;
    };
    let rooms = within(
        "connect",
        RedisLog::builder(server.url(), "chat:")
            .window(4)
            .command_timeout(Duration::from_millis(500))
            .connect_logs(),
    )
    .await
    .expect("connect");
    let config = StreamConfig::default().keep_alive(Duration::from_millis(200));
    let http = TestServer::start(Serving::Axum, app::router(Topics::new(rooms), config)).await;
    let addr = http.addr;

    let mut client = SseClient::connect(addr, "/api/events", None).await;
    let first = post(addr, "first").await;
    assert_eq!(client.next().await.id, first);
    let cursor = client.last_event_id().to_owned();
    drop(client);
    let mut missed = Vec::new();
    for n in 0..10 {
        let text = format!("missed {n}");
        missed.push((post(addr, &text).await, text));
    }

    server.kill();
    let poll = request(
        addr,
        Method::GET,
        "/api/events?timeout=0&lastEventId=1-0",
        &[],
        "",
    )
    .await;
    assert_eq!(poll.status, StatusCode::SERVICE_UNAVAILABLE, "{}", poll.text());
    assert!(poll.headers.contains_key("retry-after"));

    let mut raw = SseReader::connect(addr, "/api/events", Some(&cursor)).await;
    let mut wire = raw.read_block().await;
    wire.push_str(&raw.read_until(":\n").await);
    wire.push_str(&raw.read_until(":\n").await);
    server.restart();
    let last = &missed.last().unwrap().1;
    wire.push_str(&raw.read_until(&format!("data: {last}\n\n")).await);
    let got: Vec<(String, String)> = parse_sse(wire)
        .into_iter()
        .filter(|event| event.event != "checkpoint")
        .map(|event| {
            assert_eq!(event.event, "message", "no reset: nothing was lost");
            (event.id, event.data)
        })
        .collect();
    assert_eq!(got, missed);
}

// ---------------------------------------------------------------------------------------
// Redis killed and restarted under 1 000 subscribers
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_and_restarting_redis_loses_nothing_acknowledged() {
    const SUBSCRIBERS: usize = 1_000;
    let Some(mut server) = RedisServer::start_persistent() else {
        return;
    };
    let log = within(
        "connect",
        RedisLog::builder(server.url(), "room")
            .command_timeout(Duration::from_millis(500))
            .connect(),
    )
    .await
    .expect("connect");
    // Each subscriber reads (and so waits through the outage) until the `end` event.
    let mut readers = Vec::with_capacity(SUBSCRIBERS);
    for _ in 0..SUBSCRIBERS {
        let mut subscription = subscribe(&log, None).await;
        readers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let delivery = tokio::time::timeout(
                    Duration::from_secs(30),
                    poll_fn(|cx| Pin::new(&mut subscription).poll_delivery(cx)),
                )
                .await
                .expect("the end event within 30 s");
                match delivery {
                    Some(Ok(Delivery::Event(event))) if event.data() == "end" => return ids,
                    Some(Ok(Delivery::Event(event))) => ids.push(event.id().unwrap().as_str().to_owned()),
                    Some(Ok(gap)) => panic!("a gap: {gap:?}"),
                    Some(Err(never)) => match never {},
                    None => panic!("the subscription ended"),
                }
            }
        }));
    }
    assert_eq!(log.subscriber_count(), SUBSCRIBERS);

    let mut acknowledged = Vec::new();
    for n in 0..20 {
        acknowledged.push(append(&log, &format!("up {n}")).await);
    }

    server.kill();
    // Publishing while Redis is down fails, quickly and clearly.
    for n in 0..3 {
        let started = Instant::now();
        let result = log.append(Event::new(format!("down {n}"))).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
        let error = match result.expect_err("no Redis, no append") {
            tower_eventstream::AppendError::Backend(error) => error,
            other => panic!("a backend failure, not {other:?}"),
        };
        assert!(
            matches!(
                error.kind(),
                RedisLogErrorKind::Unavailable | RedisLogErrorKind::Timeout
            ),
            "{error:?}"
        );
    }
    // A subscriber whose cursor needs Redis is refused (503), not hung.
    let result = log.subscribe(Some(&LastEventId::parse("1-0").unwrap())).await;
    assert!(matches!(result, Err(SubscribeError::Backend(_))), "{result:?}");
    // Subscribers without a cursor still start, from this process's window.
    let late = subscribe(&log, None).await;
    drop(late);

    server.restart();
    // The connection comes back by itself.
    let deadline = Instant::now() + LIMIT;
    loop {
        match log.append(Event::new("back")).await {
            Ok(event) => {
                acknowledged.push(event);
                break;
            }
            Err(error) => assert!(Instant::now() < deadline, "Redis did not come back: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for n in 0..20 {
        acknowledged.push(append(&log, &format!("again {n}")).await);
    }
    append(&log, "end").await;

    // Every subscriber got every acknowledged event, once, in order, and no gap.
    let expected: Vec<String> = acknowledged
        .iter()
        .map(|event| event.id().unwrap().as_str().to_owned())
        .collect();
    for reader in readers {
        let got = within("a subscriber", reader).await.expect("a subscriber failed");
        assert_eq!(got, expected);
    }
    assert_eq!(log.subscriber_count(), 0);
}

/// GUIDE's lines for publishing from another program, run with `redis-cli` against a chat
/// instance on Redis: the entry reaches an open stream at once, as a `message` event.
#[tokio::test]
async fn another_program_publishes_with_redis_cli_as_the_guide_says() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let Some(port) = server.url().rsplit(':').next().map(str::to_owned) else {
        panic!("a port in {}", server.url());
    };
    let chat = chat_instance(&server).await;
    let mut client = SseClient::connect(chat.addr, "/api/events", None).await;
    let started = Instant::now();
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(support::redis_cluster::redis_cli())
            .args(["-p", &port])
            .args(args)
            .output()
            .expect("redis-cli runs (Debian package redis-tools)");
        assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    let id = cli(&[
        "XADD",
        "chat:lobby",
        "*",
        "name",
        "message",
        "data",
        "hello from python",
    ]);
    cli(&["SPUBLISH", "chat:lobby", ""]);
    let event = client.next().await;
    assert_eq!(
        (event.id.as_str(), event.event.as_str(), event.data.as_str()),
        (id.as_str(), "message", "hello from python")
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "at once: {:?}",
        started.elapsed()
    );
}

/// The chat's publish route on Redis rooms: `201` with the id, a retry with the same
/// `Idempotency-Key` on the other instance `201` with the same id and nothing appended, the
/// key with another text `422`, and `503` + `Retry-After` while Redis is down.
#[tokio::test]
async fn the_publish_route_on_redis_answers_201_a_repeat_422_and_503_while_redis_is_down() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let (first, second) = (chat_instance(&server).await, chat_instance(&server).await);
    let publish = |addr, key: &'static str, text: &'static str| async move {
        let headers: &[(&str, &[u8])] = &[
            ("content-type", b"text/plain; charset=utf-8"),
            ("idempotency-key", key.as_bytes()),
        ];
        request(addr, Method::POST, "/api/rooms/kitchen/messages", headers, text).await
    };
    let created = publish(first.addr, "k-1", "kettle on").await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let id = created.json()["id"].as_str().expect("an id").to_owned();
    let repeat = publish(second.addr, "k-1", "kettle on").await;
    assert_eq!(repeat.status, StatusCode::CREATED, "{}", repeat.text());
    assert_eq!(repeat.json()["id"], id.as_str());
    assert_eq!(repeat.header("idempotent-replayed"), Some("true"));
    let reused = publish(second.addr, "k-1", "kettle off").await;
    assert_eq!(
        reused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reused.text()
    );
    let mut connection = server.connection().await;
    let length: u64 = redis::cmd("XLEN")
        .arg("chat:kitchen")
        .query_async(&mut connection)
        .await
        .expect("XLEN");
    assert_eq!(length, 1, "one message in the room");

    server.kill();
    let down = publish(first.addr, "k-2", "anyone there?").await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE, "{}", down.text());
    let retry_after: u64 = down
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!(retry_after >= 1, "{retry_after}");
}
