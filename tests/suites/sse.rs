//! The SSE transport over real TCP, on the server each includer names: `tests/sse.rs` runs
//! it on `axum::serve`, `tests/crate_server.rs` on the crate's own server.

use std::time::{Duration, Instant};

use tower_eventstream::{Event, MemoryLog, Shutdown, StreamConfig};

use crate::suites::refusals::{assert_malformed_requests_refused, assert_other_methods_refused};
use crate::support::client::get;
use crate::support::reader::SseReader;
use crate::support::server::{events_router, Serving, TestServer};
use crate::support::sse::{field_values, SseClient};
use crate::support::{wait_until, within};

// 1. ------------------------------------------------------------------------------------

pub async fn events_arrive_in_order_with_exact_data_names_and_ids(serving: Serving) {
    let log = MemoryLog::new();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;
    let mut client = SseClient::connect(addr, "/events", None).await;

    // (data as published, name, data as a client must see it)
    let cases: &[(&str, Option<&str>, &str)] = &[
        ("plain", None, "plain"),
        (
            "line one\nline two\n\nline four",
            None,
            "line one\nline two\n\nline four",
        ),
        ("lone\rCR", None, "lone\nCR"),
        ("crlf\r\nis one break", None, "crlf\nis one break"),
        ("mixed\r\n\r\rbreaks\n", None, "mixed\n\n\nbreaks\n"),
        (
            "héllo wörld ✓ 日本語 🦀",
            Some("ünïcode"),
            "héllo wörld ✓ 日本語 🦀",
        ),
        ("", Some("empty"), ""),
        (" leading space", None, " leading space"),
        ("  two leading spaces", None, "  two leading spaces"),
        ("key: value", Some("with-colon"), "key: value"),
        (": looks like a comment", Some("update"), ": looks like a comment"),
        ("\n", None, "\n"),
    ];
    let mut published = Vec::new();
    for (data, name, _) in cases {
        let mut event = Event::new(data);
        if let Some(name) = name {
            event = event.with_name(name).unwrap();
        }
        published.push(log.push(event).unwrap());
    }

    for ((data, name, expected), stored) in cases.iter().zip(&published) {
        let got = client.next().await;
        assert_eq!(got.data, *expected, "data of the event published as {data:?}");
        assert_eq!(
            got.event,
            name.unwrap_or("message"),
            "name of the event published as {data:?}"
        );
        assert_eq!(
            got.id,
            stored.id().unwrap().as_str(),
            "id of the event published as {data:?}"
        );
    }
    assert_eq!(
        client.last_event_id(),
        published.last().unwrap().id().unwrap().as_str()
    );
}

pub async fn crlf_and_lone_cr_are_one_line_break_on_the_wire(serving: Serving) {
    let log = MemoryLog::new();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;
    let mut raw = SseReader::connect(addr, "/events", None).await;
    raw.read_opening().await;

    let crlf = log.push(Event::new("a\r\nb")).unwrap();
    let block = raw.read_block().await;
    assert_eq!(block, format!("id: {}\ndata: a\ndata: b\n\n", crlf.id().unwrap()));

    let cr = log.push(Event::new("c\rd").with_name("x").unwrap()).unwrap();
    let block = raw.read_block().await;
    assert_eq!(
        block,
        format!("id: {}\nevent: x\ndata: c\ndata: d\n\n", cr.id().unwrap())
    );

    let empty = log.push(Event::new("")).unwrap();
    let block = raw.read_block().await;
    assert_eq!(block, format!("id: {}\ndata: \n\n", empty.id().unwrap()));
}

// 2. ------------------------------------------------------------------------------------

pub async fn reconnecting_with_last_event_id_resumes_without_loss_or_duplicate(serving: Serving) {
    let log = MemoryLog::new();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;

    let mut first = SseClient::connect(addr, "/events", None).await;
    for n in 1..=3 {
        log.push(Event::new(format!("event {n}"))).unwrap();
    }
    let seen: Vec<String> = first.take(3).await.into_iter().map(|e| e.data).collect();
    assert_eq!(seen, ["event 1", "event 2", "event 3"]);
    let last_seen = first.last_event_id().to_owned();
    drop(first);

    // Published while the client is away.
    for n in 4..=6 {
        log.push(Event::new(format!("event {n}"))).unwrap();
    }

    let mut second = SseClient::connect(addr, "/events", Some(&last_seen)).await;
    // A marker published after reconnecting: anything repeated or replayed twice would
    // arrive before it.
    let marker = log.push(Event::new("after reconnect")).unwrap();
    let resumed = second.take(4).await;
    let data: Vec<&str> = resumed.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(data, ["event 4", "event 5", "event 6", "after reconnect"]);
    assert_eq!(resumed[3].id, marker.id().unwrap().as_str());
    assert!(
        resumed.iter().all(|e| e.event == "message"),
        "no reset: nothing was lost"
    );
}

pub async fn the_opening_carries_the_position_so_a_client_that_saw_no_event_resumes_without_loss(
    serving: Serving,
) {
    let log = MemoryLog::new();
    let before = log.push(Event::new("before connecting")).unwrap();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;

    let mut raw = SseReader::connect(addr, "/events", None).await;
    let (opening, id) = raw.read_opening().await;
    assert!(
        opening.starts_with(":"),
        "the opening starts with a comment: {opening:?}"
    );
    assert_eq!(
        field_values(&opening, "retry"),
        ["3000"],
        "default retry hint: {opening:?}"
    );
    let id = id.unwrap_or_else(|| panic!("the opening has no id line: {opening:?}"));
    assert_eq!(id, log.position().as_str());
    assert_eq!(
        id,
        before.id().unwrap().as_str(),
        "the position is after the newest event"
    );
    // The opening is a checkpoint: a named block with an empty data line, which moves the
    // cursor in every browser (Firefox ignores an id-only block) and reaches no `message`
    // listener.
    assert_eq!(field_values(&opening, "event"), ["checkpoint"], "{opening:?}");
    assert_eq!(field_values(&opening, "data"), [""], "{opening:?}");
    drop(raw);

    // Published after the client went away, before it saw any event.
    log.push(Event::new("missed 1")).unwrap();
    log.push(Event::new("missed 2")).unwrap();

    // An EventSource reconnects with the id of the opening as Last-Event-ID.
    let mut client = SseClient::connect(addr, "/events", Some(&id)).await;
    let marker = log.push(Event::new("live")).unwrap();
    let data: Vec<String> = client.take(3).await.into_iter().map(|e| e.data).collect();
    assert_eq!(data, ["missed 1", "missed 2", "live"]);
    assert_eq!(client.last_event_id(), marker.id().unwrap().as_str());
}

pub async fn the_opening_of_an_empty_log_carries_a_position_too(serving: Serving) {
    let log = MemoryLog::new();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;
    let mut raw = SseReader::connect(addr, "/events", None).await;
    let (opening, id) = raw.read_opening().await;
    let id = id.unwrap_or_else(|| panic!("the opening has no id line: {opening:?}"));
    assert_eq!(id, log.position().as_str());
    drop(raw);

    log.push(Event::new("first ever")).unwrap();
    let mut client = SseClient::connect(addr, "/events", Some(&id)).await;
    assert_eq!(client.next().await.data, "first ever");
}

// 3. ------------------------------------------------------------------------------------

pub async fn a_cursor_older_than_the_history_gets_a_reset_event_then_the_retained_events(serving: Serving) {
    let log = MemoryLog::builder().history(3).build();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;
    let stored: Vec<Event> = (1..=6)
        .map(|n| log.push(Event::new(format!("event {n}"))).unwrap())
        .collect();
    let trimmed = stored[0].id().unwrap().as_str();

    let mut client = SseClient::connect(addr, "/events", Some(trimmed)).await;
    let reset = client.next().await;
    assert_eq!(reset.event, "reset");
    assert!(!reset.id.is_empty(), "the reset event carries an id");
    let retained = client.take(3).await;
    let data: Vec<&str> = retained.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(data, ["event 4", "event 5", "event 6"]);
    assert_eq!(retained[2].id, stored[5].id().unwrap().as_str());
    drop(client);

    // The reset's id is a position from which the retained events follow, so a client
    // that reconnects right after the reset is not told about the same gap again.
    let mut again = SseClient::connect(addr, "/events", Some(&reset.id)).await;
    let data: Vec<String> = again.take(3).await.into_iter().map(|e| e.data).collect();
    assert_eq!(data, ["event 4", "event 5", "event 6"]);
}

pub async fn a_cursor_from_another_log_instance_gets_a_reset_event_then_the_retained_events(
    serving: Serving,
) {
    let log = MemoryLog::builder().history(3).build();
    let other = MemoryLog::new();
    let foreign = other.push(Event::new("elsewhere")).unwrap();
    assert_ne!(log.epoch(), other.epoch());
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;
    for n in 1..=4 {
        log.push(Event::new(format!("event {n}"))).unwrap();
    }

    let mut client = SseClient::connect(addr, "/events", Some(foreign.id().unwrap().as_str())).await;
    let reset = client.next().await;
    assert_eq!(reset.event, "reset");
    assert!(
        reset.id.starts_with(log.epoch()),
        "the reset's id is a position of this log: {}",
        reset.id
    );
    let data: Vec<String> = client.take(3).await.into_iter().map(|e| e.data).collect();
    assert_eq!(data, ["event 2", "event 3", "event 4"]);

    // And live events follow.
    log.push(Event::new("live")).unwrap();
    assert_eq!(client.next().await.data, "live");
}

pub async fn the_reset_event_name_is_configurable(serving: Serving) {
    let log = MemoryLog::builder().history(1).build();
    let config = StreamConfig::default().reset_event("gap").unwrap();
    let server = TestServer::start(serving, events_router(&log, config)).await;
    let addr = server.addr;
    let first = log.push(Event::new("one")).unwrap();
    log.push(Event::new("two")).unwrap();
    let mut client = SseClient::connect(addr, "/events", Some(first.id().unwrap().as_str())).await;
    // `first` is still the position just before "two", so nothing was lost: no reset.
    assert_eq!(client.next().await.data, "two");
    drop(client);

    let old = format!("{}-0", log.epoch());
    let mut client = SseClient::connect(addr, "/events", Some(&old)).await;
    assert_eq!(client.next().await.event, "gap");
    assert_eq!(client.next().await.data, "two");
}

// 4. ------------------------------------------------------------------------------------

/// True for a keep-alive: a line that is a bare comment.
fn keep_alive_lines(text: &str) -> usize {
    text.split('\n').filter(|line| *line == ":").count()
}

pub async fn keep_alive_comments_arrive_while_idle(serving: Serving) {
    let log = MemoryLog::new();
    let interval = Duration::from_millis(200);
    let server = TestServer::start(
        serving,
        events_router(&log, StreamConfig::default().keep_alive(interval)),
    )
    .await;
    let addr = server.addr;
    let mut raw = SseReader::connect(addr, "/events", None).await;
    let (opening, _) = raw.read_opening().await;
    assert_eq!(keep_alive_lines(&opening), 0);

    let opened = Instant::now();
    assert_eq!(
        raw.read_until("\n").await,
        ":\n",
        "an idle stream sends a keep-alive comment"
    );
    let first = opened.elapsed();
    assert_eq!(raw.read_until("\n").await, ":\n", "and keeps sending them");
    let second = opened.elapsed();
    // Not early: the server sends them one and two intervals after the stream opened
    // (measured here from when the opening arrived, a little later, hence the margin).
    assert!(first >= interval / 4, "first keep-alive after {first:?}");
    assert!(second >= interval * 5 / 4, "second keep-alive after {second:?}");
    assert!(
        second < Duration::from_secs(3),
        "second keep-alive after {second:?}"
    );
}

pub async fn no_keep_alive_while_events_flow_faster_than_the_interval(serving: Serving) {
    let log = MemoryLog::new();
    let interval = Duration::from_millis(500);
    let server = TestServer::start(
        serving,
        events_router(&log, StreamConfig::default().keep_alive(interval)),
    )
    .await;
    let addr = server.addr;
    let mut raw = SseReader::connect(addr, "/events", None).await;
    raw.read_opening().await;

    const EVENTS: usize = 40;
    let publisher = {
        let log = log.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(25));
            for n in 0..EVENTS {
                tick.tick().await;
                log.push(Event::new(format!("tick {n}"))).unwrap();
            }
        })
    };
    // One second of events, one every 25 ms: never idle for 500 ms.
    let flowing = raw.read_until(&format!("data: tick {}\n\n", EVENTS - 1)).await;
    within("the publisher", publisher).await.unwrap();
    assert_eq!(field_values(&flowing, "data").len(), EVENTS);
    assert_eq!(
        keep_alive_lines(&flowing),
        0,
        "keep-alive sent while events flowed:\n{flowing}"
    );

    // Once the events stop, the keep-alive comes back.
    assert_eq!(raw.read_until("\n").await, ":\n");
}

// 6. ------------------------------------------------------------------------------------

pub async fn malformed_cursors_and_parameters_get_400_with_a_reason_over_sse(serving: Serving) {
    let log = MemoryLog::new();
    log.push(Event::new("something")).unwrap();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;
    assert_malformed_requests_refused(addr, &log, true).await;
}

pub async fn other_methods_get_405_with_allow_over_sse(serving: Serving) {
    let log = MemoryLog::new();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;
    assert_other_methods_refused(addr, true).await;
    assert_eq!(log.subscriber_count(), 0);
}

// 7. ------------------------------------------------------------------------------------

pub async fn sse_clients_that_disconnect_release_their_subscriptions(serving: Serving) {
    let log = MemoryLog::new();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;
    assert_eq!(log.subscriber_count(), 0);

    let mut clients = Vec::new();
    for expected in 1..=3 {
        let mut raw = SseReader::connect(addr, "/events", None).await;
        raw.read_opening().await;
        assert_eq!(log.subscriber_count(), expected);
        clients.push(raw);
    }

    clients.pop();
    wait_until("one subscription to be released", || log.subscriber_count() == 2).await;
    drop(clients);
    wait_until("every subscription to be released", || {
        log.subscriber_count() == 0
    })
    .await;
}

// 8. ------------------------------------------------------------------------------------

pub async fn graceful_shutdown_ends_streams_answers_pending_polls_and_stops_the_server(serving: Serving) {
    let log = MemoryLog::new();
    let shutdown = Shutdown::new();
    let config = StreamConfig::default().shutdown(shutdown.clone());
    let mut server =
        TestServer::start_with_shutdown(serving, events_router(&log, config), Some(shutdown.clone())).await;
    let addr = server.addr;

    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut raw = SseReader::connect(addr, "/events", None).await;
        raw.read_opening().await;
        streams.push(raw);
    }
    let cursor = log.position().as_str().to_owned();
    let poll =
        tokio::spawn(async move { get(addr, &format!("/events?timeout=20000&lastEventId={cursor}")).await });
    wait_until("the long poll to be pending", || log.subscriber_count() == 3).await;

    let triggered = Instant::now();
    server.begin_shutdown();

    for raw in &mut streams {
        let tail = raw.read_to_end().await;
        assert!(tail.ends_with("\n\n"), "the last block is complete: {tail:?}");
        let retries = field_values(&tail, "retry");
        let retry: u64 = retries
            .last()
            .unwrap_or_else(|| panic!("no retry hint before the end: {tail:?}"))
            .parse()
            .expect("retry in milliseconds");
        assert!(
            (1500..=4500).contains(&retry),
            "retry hint {retry} ms spread around 3 s"
        );
    }

    let answer = within("the long poll answer", poll).await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json(),
        serde_json::json!({"events": [], "lastEventId": log.position().as_str(), "reset": false})
    );

    let left = Duration::from_secs(1).saturating_sub(triggered.elapsed());
    tokio::time::timeout(left, server.stopped())
        .await
        .unwrap_or_else(|_| panic!("the server did not stop within 1 s of the shutdown signal"))
        .expect("server ended cleanly");
    assert!(shutdown.is_triggered());
    assert_eq!(log.subscriber_count(), 0);
}

// 9. ------------------------------------------------------------------------------------

pub async fn sse_response_headers_over_tcp(serving: Serving) {
    let log = MemoryLog::new();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;
    let raw = SseReader::connect(addr, "/events", None).await;
    assert_eq!(raw.head.status, 200);
    assert_eq!(raw.head.headers["content-type"], "text/event-stream");
    assert_eq!(raw.head.headers["cache-control"], "no-cache");
    assert_eq!(raw.head.headers["x-accel-buffering"], "no");
    assert!(raw.head.headers.get("content-length").is_none());
}

/// This suite's tests, each on `$serving`.
macro_rules! tests {
    ($serving:expr) => {
        $crate::support::server::tests_on! {
            $serving; sse; #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            events_arrive_in_order_with_exact_data_names_and_ids,
            crlf_and_lone_cr_are_one_line_break_on_the_wire,
            reconnecting_with_last_event_id_resumes_without_loss_or_duplicate,
            the_opening_carries_the_position_so_a_client_that_saw_no_event_resumes_without_loss,
            the_opening_of_an_empty_log_carries_a_position_too,
            a_cursor_older_than_the_history_gets_a_reset_event_then_the_retained_events,
            a_cursor_from_another_log_instance_gets_a_reset_event_then_the_retained_events,
            the_reset_event_name_is_configurable,
            keep_alive_comments_arrive_while_idle,
            no_keep_alive_while_events_flow_faster_than_the_interval,
            malformed_cursors_and_parameters_get_400_with_a_reason_over_sse,
            other_methods_get_405_with_allow_over_sse,
            sse_clients_that_disconnect_release_their_subscriptions,
            graceful_shutdown_ends_streams_answers_pending_polls_and_stops_the_server,
            sse_response_headers_over_tcp,
        }
    };
}
pub(crate) use tests;
