//! The SSE transport over real TCP and, where exact timing matters, in process with tokio's
//! paused clock. The tests over TCP are the suite of `tests/suites/sse.rs`, run here on
//! `axum::serve` (`tests/crate_server.rs` runs it on the crate's own server).

mod support;
mod suites {
    pub mod refusals;
    pub mod sse;
}

use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http_body_util::BodyExt;
use support::client::poll_data;
use support::sse::{field_values, parse_sse};
use support::within;
use tower::ServiceExt;
use tower_eventstream::{
    Event, EventLogService, EventStreamBody, MemoryLog, RetryingSubscription, Shutdown, StreamConfig,
};

suites::sse::tests!(support::server::Serving::Axum);

// In process ---------------------------------------------------------------------------

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

#[tokio::test]
async fn a_subscriber_that_falls_behind_gets_a_reset_whose_id_resumes_without_loss() {
    // In process, so the subscriber is provably behind: ten events are appended to a log
    // holding three between two polls of the body.
    let log = MemoryLog::builder().history(3).build();
    let config = StreamConfig::default().without_keep_alive();
    let mut body = sse_in_process(&log, config.clone(), "/events").await.into_body();
    let opening = frame_now(&mut body).expect("the opening is ready at once");

    for n in 0..10 {
        log.push(Event::new(n.to_string())).unwrap();
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
    log.push(Event::new("activity")).unwrap();
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
