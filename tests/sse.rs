//! The SSE transport over real TCP (and, where exact timing matters, in process with
//! tokio's paused clock).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures_util::FutureExt;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_eventstream::{
    Event, EventLogService, EventStreamBody, MemoryLog, RetryingSubscription, Shutdown, StreamConfig,
};

fn sse_request(path: &str) -> http::Request<()> {
    http::Request::get(path)
        .header("accept", "text/event-stream")
        .body(())
        .unwrap()
}

/// Opens an SSE response in process.
async fn sse_in_process(
    log: &MemoryLog,
    config: StreamConfig,
    path: &str,
) -> http::Response<EventStreamBody<RetryingSubscription<MemoryLog>>> {
    let service = EventLogService::new(log.clone()).with_config(config);
    let response = service.oneshot(sse_request(path)).await.unwrap();
    assert_eq!(response.status(), 200);
    response
}

/// The next frame's bytes if one is ready now, without waiting.
fn frame_now(body: &mut EventStreamBody<RetryingSubscription<MemoryLog>>) -> Option<Bytes> {
    body.frame().now_or_never().map(|frame| {
        frame
            .expect("the body has not ended")
            .expect("the body did not fail")
            .into_data()
            .expect("a data frame")
    })
}

// 1. ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_in_order_with_exact_data_names_and_ids() {
    let log = MemoryLog::new();
    let (addr, _server) = serve(events_router(&log, StreamConfig::default())).await;
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
        published.push(log.push(event));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crlf_and_lone_cr_are_one_line_break_on_the_wire() {
    let log = MemoryLog::new();
    let (addr, _server) = serve(events_router(&log, StreamConfig::default())).await;
    let mut raw = RawSse::connect(addr, "/events", None).await;
    raw.read_opening().await;

    let crlf = log.push(Event::new("a\r\nb"));
    let block = raw.read_block().await;
    assert_eq!(block, format!("id: {}\ndata: a\ndata: b\n\n", crlf.id().unwrap()));

    let cr = log.push(Event::new("c\rd").with_name("x").unwrap());
    let block = raw.read_block().await;
    assert_eq!(
        block,
        format!("id: {}\nevent: x\ndata: c\ndata: d\n\n", cr.id().unwrap())
    );

    let empty = log.push(Event::new(""));
    let block = raw.read_block().await;
    assert_eq!(block, format!("id: {}\ndata: \n\n", empty.id().unwrap()));
}

// 2. ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_with_last_event_id_resumes_without_loss_or_duplicate() {
    let log = MemoryLog::new();
    let (addr, _server) = serve(events_router(&log, StreamConfig::default())).await;

    let mut first = SseClient::connect(addr, "/events", None).await;
    for n in 1..=3 {
        log.push(Event::new(format!("event {n}")));
    }
    let seen: Vec<String> = first.take(3).await.into_iter().map(|e| e.data).collect();
    assert_eq!(seen, ["event 1", "event 2", "event 3"]);
    let last_seen = first.last_event_id().to_owned();
    drop(first);

    // Published while the client is away.
    for n in 4..=6 {
        log.push(Event::new(format!("event {n}")));
    }

    let mut second = SseClient::connect(addr, "/events", Some(&last_seen)).await;
    // A marker published after reconnecting: anything repeated or replayed twice would
    // arrive before it.
    let marker = log.push(Event::new("after reconnect"));
    let resumed = second.take(4).await;
    let data: Vec<&str> = resumed.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(data, ["event 4", "event 5", "event 6", "after reconnect"]);
    assert_eq!(resumed[3].id, marker.id().unwrap().as_str());
    assert!(
        resumed.iter().all(|e| e.event == "message"),
        "no reset: nothing was lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opening_carries_the_position_so_a_client_that_saw_no_event_resumes_without_loss() {
    let log = MemoryLog::new();
    let before = log.push(Event::new("before connecting"));
    let (addr, _server) = serve(events_router(&log, StreamConfig::default())).await;

    let mut raw = RawSse::connect(addr, "/events", None).await;
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
    log.push(Event::new("missed 1"));
    log.push(Event::new("missed 2"));

    // An EventSource reconnects with the id of the opening as Last-Event-ID.
    let mut client = SseClient::connect(addr, "/events", Some(&id)).await;
    let marker = log.push(Event::new("live"));
    let data: Vec<String> = client.take(3).await.into_iter().map(|e| e.data).collect();
    assert_eq!(data, ["missed 1", "missed 2", "live"]);
    assert_eq!(client.last_event_id(), marker.id().unwrap().as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opening_of_an_empty_log_carries_a_position_too() {
    let log = MemoryLog::new();
    let (addr, _server) = serve(events_router(&log, StreamConfig::default())).await;
    let mut raw = RawSse::connect(addr, "/events", None).await;
    let (opening, id) = raw.read_opening().await;
    let id = id.unwrap_or_else(|| panic!("the opening has no id line: {opening:?}"));
    assert_eq!(id, log.position().as_str());
    drop(raw);

    log.push(Event::new("first ever"));
    let mut client = SseClient::connect(addr, "/events", Some(&id)).await;
    assert_eq!(client.next().await.data, "first ever");
}

// 3. ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_older_than_the_history_gets_a_reset_event_then_the_retained_events() {
    let log = MemoryLog::builder().history(3).build();
    let (addr, _server) = serve(events_router(&log, StreamConfig::default())).await;
    let stored: Vec<Event> = (1..=6)
        .map(|n| log.push(Event::new(format!("event {n}"))))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_from_another_log_instance_gets_a_reset_event_then_the_retained_events() {
    let log = MemoryLog::builder().history(3).build();
    let other = MemoryLog::new();
    let foreign = other.push(Event::new("elsewhere"));
    assert_ne!(log.epoch(), other.epoch());
    let (addr, _server) = serve(events_router(&log, StreamConfig::default())).await;
    for n in 1..=4 {
        log.push(Event::new(format!("event {n}")));
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
    log.push(Event::new("live"));
    assert_eq!(client.next().await.data, "live");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reset_event_name_is_configurable() {
    let log = MemoryLog::builder().history(1).build();
    let config = StreamConfig::default().reset_event("gap").unwrap();
    let (addr, _server) = serve(events_router(&log, config)).await;
    let first = log.push(Event::new("one"));
    log.push(Event::new("two"));
    let mut client = SseClient::connect(addr, "/events", Some(first.id().unwrap().as_str())).await;
    // `first` is still the position just before "two", so nothing was lost: no reset.
    assert_eq!(client.next().await.data, "two");
    drop(client);

    let old = format!("{}-0", log.epoch());
    let mut client = SseClient::connect(addr, "/events", Some(&old)).await;
    assert_eq!(client.next().await.event, "gap");
    assert_eq!(client.next().await.data, "two");
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_gets_a_reset_whose_id_resumes_without_loss() {
    // In process, so the subscriber is provably behind: ten events are appended to a log
    // holding three between two polls of the body.
    let log = MemoryLog::builder().history(3).build();
    let config = StreamConfig::default().without_keep_alive();
    let mut body = sse_in_process(&log, config.clone(), "/events").await.into_body();
    let opening = frame_now(&mut body).expect("the opening is ready at once");

    for n in 0..10 {
        log.push(Event::new(n.to_string()));
    }
    let frame = frame_now(&mut body).expect("the backlog is ready at once");
    let mut wire = opening.to_vec();
    wire.extend_from_slice(&frame);
    let events = parse_sse(wire);
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(names, ["checkpoint", "reset", "message", "message", "message"]);
    assert_eq!(data, ["", "", "7", "8", "9"]);

    // A client that drops right after the reset reconnects with its id: it must then get
    // the three retained events, not skip them.
    let reset_id = &events[1].id;
    let service = EventLogService::new(log.clone()).with_config(config);
    let request = http::Request::get(format!("/events?timeout=0&lastEventId={reset_id}"))
        .body(())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let answer: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        poll_data(&answer),
        ["7", "8", "9"],
        "resuming from the reset's id {reset_id} loses the retained events (answer {answer})"
    );
}

// 4. ------------------------------------------------------------------------------------

/// True for a keep-alive: a line that is a bare comment.
fn keep_alive_lines(text: &str) -> usize {
    text.split('\n').filter(|line| *line == ":").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_comments_arrive_while_idle() {
    let log = MemoryLog::new();
    let interval = Duration::from_millis(200);
    let (addr, _server) = serve(events_router(&log, StreamConfig::default().keep_alive(interval))).await;
    let mut raw = RawSse::connect(addr, "/events", None).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_keep_alive_while_events_flow_faster_than_the_interval() {
    let log = MemoryLog::new();
    let interval = Duration::from_millis(500);
    let (addr, _server) = serve(events_router(&log, StreamConfig::default().keep_alive(interval))).await;
    let mut raw = RawSse::connect(addr, "/events", None).await;
    raw.read_opening().await;

    const EVENTS: usize = 40;
    let publisher = {
        let log = log.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(25));
            for n in 0..EVENTS {
                tick.tick().await;
                log.push(Event::new(format!("tick {n}")));
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

#[tokio::test(start_paused = true)]
async fn keep_alive_fires_after_exactly_the_idle_interval_paused_time() {
    let log = MemoryLog::new();
    let interval = Duration::from_secs(15);
    let mut body = sse_in_process(&log, StreamConfig::default().keep_alive(interval), "/events")
        .await
        .into_body();
    let opening = frame_now(&mut body).expect("the opening is ready at once");
    assert!(opening.starts_with(b":ok\n"), "{opening:?}");
    assert_eq!(frame_now(&mut body), None, "nothing to send yet");

    tokio::time::advance(interval - Duration::from_millis(1)).await;
    assert_eq!(frame_now(&mut body), None, "not idle for a whole interval yet");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(frame_now(&mut body).as_deref(), Some(&b":\n"[..]));
    assert_eq!(frame_now(&mut body), None, "exactly one keep-alive per interval");

    tokio::time::advance(interval).await;
    assert_eq!(frame_now(&mut body).as_deref(), Some(&b":\n"[..]));
    assert_eq!(frame_now(&mut body), None, "exactly one keep-alive per interval");
}

#[tokio::test(start_paused = true)]
async fn each_event_pushes_the_keep_alive_back_a_whole_interval_paused_time() {
    let log = MemoryLog::new();
    let interval = Duration::from_secs(15);
    let mut body = sse_in_process(&log, StreamConfig::default().keep_alive(interval), "/events")
        .await
        .into_body();
    frame_now(&mut body).expect("the opening is ready at once");
    assert_eq!(frame_now(&mut body), None);

    // An event at 10 s: the stream is idle from 10 s, so the keep-alive is due at 25 s.
    tokio::time::advance(Duration::from_secs(10)).await;
    log.push(Event::new("activity"));
    let frame = frame_now(&mut body).expect("the event is ready at once");
    assert!(frame.ends_with(b"data: activity\n\n"), "{frame:?}");

    tokio::time::advance(Duration::from_secs(5)).await; // 15 s
    assert_eq!(frame_now(&mut body), None, "an event was sent 5 s ago");
    tokio::time::advance(Duration::from_secs(10) - Duration::from_millis(1)).await;
    assert_eq!(frame_now(&mut body), None, "an event was sent 14.999 s ago");
    tokio::time::advance(Duration::from_millis(1)).await; // 25 s
    assert_eq!(frame_now(&mut body).as_deref(), Some(&b":\n"[..]));
    assert_eq!(frame_now(&mut body), None);
}

// 6. ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_cursors_and_parameters_get_400_with_a_reason_over_sse() {
    let log = MemoryLog::new();
    log.push(Event::new("something"));
    let (addr, _server) = serve(events_router(&log, StreamConfig::default())).await;
    assert_malformed_requests_refused(addr, &log, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_methods_get_405_with_allow_over_sse() {
    let log = MemoryLog::new();
    let (addr, _server) = serve(events_router(&log, StreamConfig::default())).await;
    assert_other_methods_refused(addr, true).await;
    assert_eq!(log.subscriber_count(), 0);
}

// 7. ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_clients_that_disconnect_release_their_subscriptions() {
    let log = MemoryLog::new();
    let (addr, _server) = serve(events_router(&log, StreamConfig::default())).await;
    assert_eq!(log.subscriber_count(), 0);

    let mut clients = Vec::new();
    for expected in 1..=3 {
        let mut raw = RawSse::connect(addr, "/events", None).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_ends_streams_answers_pending_polls_and_stops_the_server() {
    let log = MemoryLog::new();
    let shutdown = Shutdown::new();
    let config = StreamConfig::default().shutdown(shutdown.clone());
    let (addr, mut server) = serve_with_shutdown(events_router(&log, config), Some(shutdown.clone())).await;

    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut raw = RawSse::connect(addr, "/events", None).await;
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
    server.stopped_within(left).await.expect("server ended cleanly");
    assert!(shutdown.is_triggered());
    assert_eq!(log.subscriber_count(), 0);
}

#[tokio::test]
async fn a_stream_opened_after_shutdown_ends_at_once() {
    let log = MemoryLog::new();
    let shutdown = Shutdown::new();
    shutdown.trigger();
    let config = StreamConfig::default().without_retry().shutdown(shutdown);
    let body = sse_in_process(&log, config, "/events").await.into_body();
    let bytes = within("the body to end", body.collect())
        .await
        .unwrap()
        .to_bytes();
    let text = std::str::from_utf8(&bytes).unwrap();
    assert!(text.starts_with(":ok\n"), "{text:?}");
    assert!(
        text.ends_with("\n\n") && field_values(text, "retry").is_empty(),
        "{text:?}"
    );
}

// 9. ------------------------------------------------------------------------------------

#[tokio::test]
async fn sse_response_headers_are_exact_and_hop_by_hop_free() {
    let log = MemoryLog::new();
    let response = sse_in_process(&log, StreamConfig::default(), "/events").await;
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");
    for hop_by_hop in ["connection", "transfer-encoding", "keep-alive", "content-length"] {
        assert!(headers.get(hop_by_hop).is_none(), "{hop_by_hop} set: {headers:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_response_headers_over_tcp() {
    let log = MemoryLog::new();
    let (addr, _server) = serve(events_router(&log, StreamConfig::default())).await;
    let raw = RawSse::connect(addr, "/events", None).await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.headers["content-type"], "text/event-stream");
    assert_eq!(raw.headers["cache-control"], "no-cache");
    assert_eq!(raw.headers["x-accel-buffering"], "no");
    assert!(raw.headers.get("content-length").is_none());
}
