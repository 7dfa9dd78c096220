//! The long-poll and short-poll transport over real TCP, on the server each includer names:
//! `tests/long_poll.rs` runs it on `axum::serve`, `tests/crate_server.rs` on the crate's own
//! server.

use std::time::{Duration, Instant};

use serde_json::json;
use tower_eventstream::{Event, MemoryLog, StreamConfig};

use crate::suites::refusals::{assert_malformed_requests_refused, assert_other_methods_refused};
use crate::support::client::{get, long_poll, poll_cursor, poll_data, poll_events, request};
use crate::support::server::{events_router, Serving, TestServer};
use crate::support::{wait_until, within};

fn ids(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.id().unwrap().as_str().to_owned())
        .collect()
}

fn poll_ids(answer: &serde_json::Value) -> Vec<String> {
    poll_events(answer).into_iter().map(|(id, _, _)| id).collect()
}

// 5. ------------------------------------------------------------------------------------

pub async fn a_held_poll_returns_as_soon_as_an_event_is_published(serving: Serving) {
    let log = MemoryLog::new();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;
    let cursor = log.position().as_str().to_owned();

    let poll =
        tokio::spawn(
            async move { long_poll(addr, &format!("/events?lastEventId={cursor}&timeout=10000")).await },
        );
    wait_until("the poll to be held", || log.subscriber_count() == 1).await;
    assert!(!poll.is_finished(), "nothing to answer with yet");

    let published = Instant::now();
    let event = log
        .push(Event::new("wake up").with_name("alarm").unwrap())
        .unwrap();
    let (_, answer) = within("the held poll", poll).await.unwrap();
    let waited = published.elapsed();
    assert!(
        waited < Duration::from_secs(2),
        "answered {waited:?} after the event, not at once"
    );
    assert_eq!(
        answer,
        json!({
            "events": [{"id": event.id().unwrap().as_str(), "event": "alarm", "data": "wake up"}],
            "lastEventId": event.id().unwrap().as_str(),
            "reset": false,
        })
    );
}

pub async fn one_poll_gets_every_event_published_since_the_cursor(serving: Serving) {
    let log = MemoryLog::new();
    log.push(Event::new("before the cursor")).unwrap();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;
    let cursor = log.position().as_str().to_owned();
    let published: Vec<Event> = ["one", "two\r\nlines", "three"]
        .into_iter()
        .map(|data| log.push(Event::new(data)).unwrap())
        .collect();

    let started = Instant::now();
    let (_, answer) = long_poll(addr, &format!("/events?lastEventId={cursor}&timeout=10000")).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "events were ready: no wait"
    );
    assert_eq!(poll_data(&answer), ["one", "two\nlines", "three"]);
    assert_eq!(poll_ids(&answer), ids(&published));
    assert_eq!(poll_cursor(&answer), ids(&published)[2]);
    assert_eq!(answer["reset"], false);
}

pub async fn a_short_poll_answers_at_once_with_the_ready_events(serving: Serving) {
    let log = MemoryLog::new();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;
    let cursor = log.position().as_str().to_owned();
    let published = vec![
        log.push(Event::new("a")).unwrap(),
        log.push(Event::new("b")).unwrap(),
    ];

    let (_, answer) = long_poll(addr, &format!("/events?lastEventId={cursor}&timeout=0")).await;
    assert_eq!(poll_data(&answer), ["a", "b"]);
    assert_eq!(poll_cursor(&answer), ids(&published)[1]);
}

pub async fn a_short_poll_with_nothing_ready_answers_at_once_with_the_empty_shape(serving: Serving) {
    let log = MemoryLog::new();
    log.push(Event::new("old")).unwrap();
    // With the default 25 s wait, only `timeout=0` can answer within the test's limit.
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;
    let cursor = log.position().as_str().to_owned();

    let started = Instant::now();
    let (_, answer) = long_poll(addr, &format!("/events?lastEventId={cursor}&timeout=0")).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        answer,
        json!({"events": [], "lastEventId": cursor, "reset": false})
    );
}

pub async fn a_timed_out_poll_answers_the_empty_shape_with_the_same_cursor(serving: Serving) {
    let log = MemoryLog::new();
    for n in 0..3 {
        log.push(Event::new(n.to_string())).unwrap();
    }
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;
    let cursor = log.position().as_str().to_owned();

    let started = Instant::now();
    let answer = get(addr, &format!("/events?lastEventId={cursor}&timeout=200")).await;
    let waited = started.elapsed();
    assert_eq!(answer.status, 200);
    assert!(
        waited >= Duration::from_millis(190),
        "answered after {waited:?}, before the timeout"
    );
    assert!(waited < Duration::from_secs(2), "answered after {waited:?}");
    assert_eq!(
        answer.json(),
        json!({"events": [], "lastEventId": cursor, "reset": false})
    );
    assert_eq!(
        answer.text(),
        format!(r#"{{"events":[],"lastEventId":"{cursor}","reset":false}}"#),
        "the documented wire shape"
    );
}

pub async fn the_wait_is_clamped_to_max_wait(serving: Serving) {
    let log = MemoryLog::new();
    let config = StreamConfig::default().max_wait(Duration::from_millis(200));
    let server = TestServer::start(serving, events_router(&log, config)).await;
    let addr = server.addr;

    let started = Instant::now();
    let (_, answer) = long_poll(addr, "/events?timeout=60000").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "timeout=60000 is clamped to 200 ms"
    );
    assert_eq!(poll_data(&answer), Vec::<String>::new());
    // Without a `timeout`, the poll waits max_wait too.
    let (_, answer) = long_poll(addr, "/events").await;
    assert_eq!(answer["events"], json!([]));
}

pub async fn a_poll_without_cursor_gets_the_current_position_then_exactly_what_follows(serving: Serving) {
    let log = MemoryLog::new();
    log.push(Event::new("history the client never asked for"))
        .unwrap();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;

    let (_, first) = long_poll(addr, "/events?timeout=0").await;
    assert_eq!(
        first["events"],
        json!([]),
        "a fresh client starts at the live end"
    );
    assert_eq!(first["reset"], false);
    let cursor = poll_cursor(&first);
    assert_eq!(cursor, log.position().as_str());

    let between = vec![
        log.push(Event::new("x")).unwrap(),
        log.push(Event::new("y")).unwrap(),
    ];
    let (_, second) = long_poll(addr, &format!("/events?lastEventId={cursor}&timeout=10000")).await;
    assert_eq!(poll_ids(&second), ids(&between));
    assert_eq!(poll_data(&second), ["x", "y"]);
}

pub async fn a_poll_without_cursor_on_an_empty_log_gets_a_position_not_null(serving: Serving) {
    let log = MemoryLog::new();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;

    let (_, first) = long_poll(addr, "/events?timeout=0").await;
    assert!(
        first["lastEventId"].is_string(),
        "lastEventId is never null: {first}"
    );
    let cursor = poll_cursor(&first);
    assert!(!cursor.is_empty());

    let event = log.push(Event::new("first ever")).unwrap();
    let (_, second) = long_poll(addr, &format!("/events?lastEventId={cursor}&timeout=10000")).await;
    assert_eq!(poll_ids(&second), [event.id().unwrap().as_str()]);
    assert_eq!(second["reset"], false);
}

pub async fn the_batch_limit_caps_an_answer_and_the_next_poll_continues_without_loss(serving: Serving) {
    let log = MemoryLog::new();
    let config = StreamConfig::default().batch_limit(2);
    let server = TestServer::start(serving, events_router(&log, config)).await;
    let addr = server.addr;
    let mut cursor = log.position().as_str().to_owned();
    let published: Vec<Event> = (0..5)
        .map(|n| log.push(Event::new(format!("e{n}"))).unwrap())
        .collect();

    let mut received = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let (_, answer) = long_poll(addr, &format!("/events?lastEventId={cursor}&timeout=0")).await;
        let batch = poll_ids(&answer);
        if batch.is_empty() {
            assert_eq!(poll_cursor(&answer), cursor, "an empty answer keeps the cursor");
            break;
        }
        assert_eq!(poll_cursor(&answer), *batch.last().unwrap());
        sizes.push(batch.len());
        received.extend(batch);
        cursor = poll_cursor(&answer);
        assert!(sizes.len() <= 5, "polling does not progress");
    }
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(received, ids(&published), "every event exactly once, in order");
}

pub async fn long_poll_response_headers(serving: Serving) {
    let log = MemoryLog::new();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;
    let answer = get(addr, "/events?timeout=0").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    // A complete answer: a length, not a stream.
    assert_eq!(
        answer.header("content-length"),
        Some(answer.body.len().to_string().as_str())
    );
}

pub async fn the_transport_parameter_overrides_accept(serving: Serving) {
    let log = MemoryLog::new();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;
    let answer = request(
        addr,
        http::Method::GET,
        "/events?transport=poll&timeout=0",
        &[("accept", b"text/event-stream")],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let answer = get(addr, "/events?transport=carrier-pigeon").await;
    assert_eq!(answer.status, 400);
}

pub async fn the_last_event_id_header_wins_over_the_query_cursor(serving: Serving) {
    let log = MemoryLog::new();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;
    let older = log.position().as_str().to_owned();
    log.push(Event::new("seen")).unwrap();
    let newer = log.position().as_str().to_owned();
    log.push(Event::new("not seen")).unwrap();

    let answer = request(
        addr,
        http::Method::GET,
        &format!("/events?lastEventId={older}&timeout=0"),
        &[("last-event-id", newer.as_bytes())],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(poll_data(&answer.json()), ["not seen"]);
}

pub async fn an_empty_last_event_id_header_counts_as_absent_and_the_query_cursor_applies(serving: Serving) {
    // Documented on `LastEventId::from_request_parts`: "an empty header counts as absent".
    let log = MemoryLog::new();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;
    let cursor = log.position().as_str().to_owned();
    log.push(Event::new("after the cursor")).unwrap();

    let empty_header: &[(&str, &[u8])] = &[("last-event-id", b"")];
    // Without a query cursor, an empty header is a fresh client at the live end.
    let answer = request(
        addr,
        http::Method::GET,
        "/events?timeout=0",
        empty_header,
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(poll_data(&answer.json()), Vec::<String>::new());
    // With one, the query cursor is in force, as if the header were not there.
    let path = format!("/events?lastEventId={cursor}&timeout=0");
    let answer = request(addr, http::Method::GET, &path, empty_header, bytes::Bytes::new()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        poll_data(&answer.json()),
        ["after the cursor"],
        "an empty Last-Event-ID header made the server ignore lastEventId={cursor}"
    );
}

// 3. ------------------------------------------------------------------------------------

pub async fn a_cursor_older_than_the_history_answers_reset_with_the_retained_events(serving: Serving) {
    let log = MemoryLog::builder().history(3).build();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;
    let published: Vec<Event> = (1..=6)
        .map(|n| log.push(Event::new(format!("event {n}"))).unwrap())
        .collect();
    let trimmed = published[0].id().unwrap().as_str();

    let (_, answer) = long_poll(addr, &format!("/events?lastEventId={trimmed}&timeout=0")).await;
    assert_eq!(answer["reset"], true);
    assert_eq!(poll_data(&answer), ["event 4", "event 5", "event 6"]);
    assert_eq!(poll_ids(&answer), ids(&published[3..]));
    assert_eq!(poll_cursor(&answer), ids(&published)[5]);

    // Polling on from the answer's cursor is back to normal.
    let (_, next) = long_poll(
        addr,
        &format!("/events?lastEventId={}&timeout=0", poll_cursor(&answer)),
    )
    .await;
    assert_eq!(
        next,
        json!({"events": [], "lastEventId": poll_cursor(&answer), "reset": false})
    );
}

pub async fn a_cursor_from_another_log_instance_answers_reset_with_the_retained_events(serving: Serving) {
    let log = MemoryLog::builder().history(3).build();
    let other = MemoryLog::new();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;
    let published: Vec<Event> = (1..=2)
        .map(|n| log.push(Event::new(format!("event {n}"))).unwrap())
        .collect();
    // A position of another instance (as after a restart), even one that looks "old".
    let foreign = format!("{}-1", other.epoch());

    let (_, answer) = long_poll(addr, &format!("/events?lastEventId={foreign}&timeout=0")).await;
    assert_eq!(answer["reset"], true);
    assert_eq!(poll_ids(&answer), ids(&published));
    assert_eq!(poll_cursor(&answer), ids(&published)[1]);
}

pub async fn a_reset_with_nothing_retained_still_answers_at_once(serving: Serving) {
    let log = MemoryLog::new();
    let other = MemoryLog::new();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;

    let started = Instant::now();
    let (_, answer) = long_poll(
        addr,
        &format!("/events?lastEventId={}&timeout=10000", other.position()),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a reset is an answer: no wait"
    );
    assert_eq!(
        answer,
        json!({"events": [], "lastEventId": log.position().as_str(), "reset": true})
    );
}

// 6. ------------------------------------------------------------------------------------

pub async fn malformed_cursors_and_parameters_get_400_with_a_reason_over_long_poll(serving: Serving) {
    let log = MemoryLog::new();
    log.push(Event::new("something")).unwrap();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;
    assert_malformed_requests_refused(addr, &log, false).await;
}

pub async fn other_methods_get_405_with_allow_over_long_poll(serving: Serving) {
    let log = MemoryLog::new();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;
    assert_other_methods_refused(addr, false).await;
}

// 7. ------------------------------------------------------------------------------------

pub async fn long_polls_aborted_mid_wait_release_their_subscriptions(serving: Serving) {
    let log = MemoryLog::new();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;

    let polls: Vec<_> = (0..3)
        .map(|_| tokio::spawn(async move { get(addr, "/events?timeout=20000").await }))
        .collect();
    wait_until("three held polls", || log.subscriber_count() == 3).await;

    // Aborting a poll drops its connection mid-wait.
    for poll in &polls {
        poll.abort();
    }
    wait_until("the aborted polls to release their subscriptions", || {
        log.subscriber_count() == 0
    })
    .await;
    for poll in polls {
        assert!(poll.await.unwrap_err().is_cancelled());
    }
}

pub async fn answered_polls_release_their_subscriptions(serving: Serving) {
    let log = MemoryLog::new();
    let server = TestServer::start(serving, events_router(&log, StreamConfig::default())).await;
    let addr = server.addr;
    let cursor = log.position().as_str().to_owned();
    let poll =
        tokio::spawn(
            async move { long_poll(addr, &format!("/events?lastEventId={cursor}&timeout=10000")).await },
        );
    wait_until("the held poll", || log.subscriber_count() == 1).await;
    log.push(Event::new("done")).unwrap();
    within("the poll", poll).await.unwrap();
    wait_until("the answered poll to release its subscription", || {
        log.subscriber_count() == 0
    })
    .await;
}

/// This suite's tests, each on `$serving`.
macro_rules! tests {
    ($serving:expr) => {
        $crate::support::server::tests_on! {
            $serving; long_poll; #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            a_held_poll_returns_as_soon_as_an_event_is_published,
            one_poll_gets_every_event_published_since_the_cursor,
            a_short_poll_answers_at_once_with_the_ready_events,
            a_short_poll_with_nothing_ready_answers_at_once_with_the_empty_shape,
            a_timed_out_poll_answers_the_empty_shape_with_the_same_cursor,
            the_wait_is_clamped_to_max_wait,
            a_poll_without_cursor_gets_the_current_position_then_exactly_what_follows,
            a_poll_without_cursor_on_an_empty_log_gets_a_position_not_null,
            the_batch_limit_caps_an_answer_and_the_next_poll_continues_without_loss,
            long_poll_response_headers,
            the_transport_parameter_overrides_accept,
            the_last_event_id_header_wins_over_the_query_cursor,
            an_empty_last_event_id_header_counts_as_absent_and_the_query_cursor_applies,
            a_cursor_older_than_the_history_answers_reset_with_the_retained_events,
            a_cursor_from_another_log_instance_answers_reset_with_the_retained_events,
            a_reset_with_nothing_retained_still_answers_at_once,
            malformed_cursors_and_parameters_get_400_with_a_reason_over_long_poll,
            other_methods_get_405_with_allow_over_long_poll,
            long_polls_aborted_mid_wait_release_their_subscriptions,
            answered_polls_release_their_subscriptions,
        }
    };
}
pub(crate) use tests;
