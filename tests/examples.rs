//! Each example's server, started on 127.0.0.1:0 exactly as its `main` starts it: a real
//! client gets events, then with SSE streams open and long polls pending the graceful
//! shutdown completes within one second and every client sees a clean end.

// Each example's app brings its own copy of `examples/shared/serve.rs`, as in its own binary.
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../examples/hyper/app.rs"]
mod hyper_app;
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../examples/layer/app.rs"]
mod layer_app;
#[allow(dead_code)]
#[path = "../examples/notifications/app.rs"]
mod notifications_app;
mod support;
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../examples/tonic/app.rs"]
mod tonic_app;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use tokio::task::JoinHandle;
use tower_eventstream::{Event, MemoryLog, Shutdown, StreamConfig, Topics};

use support::client::{open, Http2};
use support::reader::SseReader;
use support::server::{Serving, TestServer};
use support::sse::{field_values, SseClient};
use support::within;

const SSE: (&str, &[u8]) = ("accept", b"text/event-stream");
const TICK: Duration = Duration::from_millis(20);
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(1);

/// Sends the stop signal and asserts the example's `serve` returns `Ok` within
/// [`SHUTDOWN_LIMIT`].
async fn stop_within_a_second(mut server: TestServer) -> Instant {
    let began = Instant::now();
    server.begin_shutdown();
    tokio::time::timeout(SHUTDOWN_LIMIT, server.stopped())
        .await
        .expect("the example's graceful shutdown took more than a second")
        .expect("serve returned an error");
    began
}

/// Opens an SSE stream over HTTP/1.1 and reads its opening block.
async fn open_sse(addr: SocketAddr, path: &str, headers: &[(&str, &[u8])]) -> SseReader {
    let mut all = vec![SSE];
    all.extend_from_slice(headers);
    let mut stream = open(addr, Method::GET, path, &all, "").await;
    assert_eq!(stream.head.status, StatusCode::OK, "SSE request to {path}");
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    stream.read_until("\n\n").await;
    stream
}

/// Reads SSE blocks until one is an event named `name`; returns it.
async fn next_named(body: &mut SseReader, name: &str) -> String {
    loop {
        let block = body.read_until("\n\n").await;
        if field_values(&block, "event").iter().any(|n| n == name) {
            return block;
        }
    }
}

/// Starts a long poll after `cursor` that will wait (10 s at most), on its own connection,
/// with `headers`.
fn pending_long_poll(
    addr: SocketAddr,
    path: String,
    headers: &'static [(&'static str, &'static [u8])],
) -> JoinHandle<(StatusCode, serde_json::Value)> {
    tokio::spawn(async move {
        let mut opened = open(addr, Method::GET, &path, headers, "").await;
        let body = opened.read_bytes_to_end().await;
        let json = serde_json::from_slice(&body).expect("a JSON answer");
        (opened.head.status, json)
    })
}

/// After shutdown began: the stream ends cleanly (no error) within a second, after a
/// `retry:` hint.
async fn assert_clean_end(body: &mut SseReader) {
    let tail = tokio::time::timeout(SHUTDOWN_LIMIT, body.read_to_end())
        .await
        .expect("the stream ended within a second");
    assert!(tail.contains("retry: "), "no retry hint before the end: {tail:?}");
}

/// After shutdown began: the long poll is answered with the empty shape within a second.
async fn assert_empty_answer(poll: JoinHandle<(StatusCode, serde_json::Value)>, cursor: &str) {
    let (status, json) = tokio::time::timeout(SHUTDOWN_LIMIT, poll)
        .await
        .expect("the pending long poll was answered within a second")
        .expect("long poll task");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json,
        serde_json::json!({"events": [], "lastEventId": cursor, "reset": false})
    );
}

/// Stops the ticker and waits until it has stopped, so that long polls stay pending.
async fn stop_ticker(ticker: JoinHandle<()>) {
    ticker.abort();
    let _ = within("the ticker to stop", ticker).await;
}

#[tokio::test]
async fn hyper_example_serves_http1_and_h2c_and_stops_within_a_second() {
    let app = hyper_app::App::new();
    let log = app.log().clone();
    let ticker = app.spawn_ticker(TICK);
    let server = TestServer::serve_with(|listener, stop| app.serve(listener, stop)).await;

    // SSE over HTTP/1.1 and over HTTP/2 (prior knowledge) on the same port.
    let mut h1_stream = open_sse(server.addr, "/events", &[]).await;
    let tick = next_named(&mut h1_stream, "tick").await;
    assert!(field_values(&tick, "data")[0].starts_with("tick "), "{tick:?}");
    let h2 = Http2::connect(server.addr).await;
    let mut h2_stream = h2.send(Method::GET, "/events", &[SSE]).await;
    assert_eq!(h2_stream.head.version, http::Version::HTTP_2);
    next_named(&mut h2_stream, "tick").await;

    // A long poll gets ticks too.
    let mut answer = open(server.addr, Method::GET, "/events?timeout=2000", &[], "").await;
    let json: serde_json::Value = serde_json::from_slice(&answer.collect().await).expect("JSON");
    assert_eq!(json["events"][0]["event"], "tick");

    // Quiet now: with both streams open, two long polls wait (HTTP/1.1 and HTTP/2).
    stop_ticker(ticker).await;
    let cursor = log.position().as_str().to_owned();
    let h1_poll = pending_long_poll(
        server.addr,
        format!("/events?lastEventId={cursor}&timeout=10000"),
        &[],
    );
    let h2_poll = {
        let h2 = h2.clone();
        let path = format!("/events?lastEventId={cursor}&timeout=10000");
        tokio::spawn(async move {
            let mut opened = h2.send(Method::GET, &path, &[]).await;
            let json = serde_json::from_slice(&opened.collect().await).expect("JSON");
            (opened.head.status, json)
        })
    };
    support::wait_until("the long polls to wait", || log.subscriber_count() == 4).await;

    let began = stop_within_a_second(server).await;
    assert_clean_end(&mut h1_stream).await;
    assert_clean_end(&mut h2_stream).await;
    assert_empty_answer(h1_poll, &cursor).await;
    assert_empty_answer(h2_poll, &cursor).await;
    assert!(began.elapsed() < SHUTDOWN_LIMIT);
}

#[tokio::test]
async fn tonic_example_serves_grpc_and_sse_on_one_port_and_stops_within_a_second() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let app = tonic_app::App::new();
    let log = app.log().clone();
    let ticker = app.spawn_ticker(TICK);
    let server = TestServer::serve_with(|listener, stop| app.serve(listener, stop)).await;

    // gRPC over h2c: the standard health check, through a tonic client.
    let channel = within(
        "the gRPC channel",
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
            .expect("endpoint")
            .connect(),
    )
    .await
    .expect("gRPC connection");
    let mut health = HealthClient::new(channel);
    let check = within(
        "the health check",
        health.check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .expect("health check");
    assert_eq!(check.into_inner().status(), ServingStatus::Serving);

    // SSE over HTTP/1.1 from the same address.
    let mut stream = open_sse(server.addr, "/events", &[]).await;
    let tick = next_named(&mut stream, "tick").await;
    assert!(field_values(&tick, "data")[0].starts_with("tick "), "{tick:?}");

    // An unknown gRPC method is answered like gRPC does.
    let unknown = open(server.addr, Method::POST, "/nope.Service/Method", &[], "").await;
    assert_eq!(unknown.header("grpc-status"), Some("12"));

    stop_ticker(ticker).await;
    let cursor = log.position().as_str().to_owned();
    let poll = pending_long_poll(
        server.addr,
        format!("/events?lastEventId={cursor}&timeout=10000"),
        &[],
    );
    support::wait_until("the long poll to wait", || log.subscriber_count() == 2).await;

    // The gRPC channel stays connected (idle) through the shutdown: it must not hold it up.
    let began = stop_within_a_second(server).await;
    assert_clean_end(&mut stream).await;
    assert_empty_answer(poll, &cursor).await;
    assert!(began.elapsed() < SHUTDOWN_LIMIT);
    drop(health);
}

#[tokio::test]
async fn layer_example_resumes_by_tick_and_stops_within_a_second() {
    let app = layer_app::App::new();
    let feed = app.feed().clone();
    let ticker = app.spawn_ticker(TICK);
    let server = TestServer::serve_with(|listener, stop| app.serve(listener, stop)).await;

    let mut stream = open_sse(server.addr, "/ticks", &[]).await;
    let first = next_named(&mut stream, "tick").await;
    let first_id: u64 = field_values(&first, "id")[0].parse().expect("a numeric id");
    let data: serde_json::Value = serde_json::from_str(&field_values(&first, "data")[0]).expect("JSON data");
    assert!(data["symbol"].is_string() && data["price"].is_string(), "{data}");
    let second = next_named(&mut stream, "tick").await;
    assert_eq!(field_values(&second, "id"), [(first_id + 1).to_string()]);

    // A reconnecting client resumes right after its last tick...
    let cursor = first_id.to_string();
    let mut resumed = open(
        server.addr,
        Method::GET,
        "/ticks",
        &[SSE, ("last-event-id", cursor.as_bytes())],
        "",
    )
    .await;
    let opening = resumed.read_until("\n\n").await;
    assert_eq!(field_values(&opening, "id"), [cursor.as_str()]);
    let next = next_named(&mut resumed, "tick").await;
    assert_eq!(field_values(&next, "id"), [(first_id + 1).to_string()]);
    // ...and so does a long poll.
    let path = format!("/ticks?lastEventId={cursor}&timeout=0");
    let mut answer = open(server.addr, Method::GET, &path, &[], "").await;
    let json: serde_json::Value = serde_json::from_slice(&answer.collect().await).expect("JSON");
    assert_eq!(json["events"][0]["id"], (first_id + 1).to_string());
    assert_eq!(json["reset"], false);

    // A cursor the feed did not issue (another feed, before a restart): `reset`, then ticks.
    let mut stale = open(
        server.addr,
        Method::GET,
        "/ticks",
        &[SSE, ("last-event-id", b"999999999")],
        "",
    )
    .await;
    next_named(&mut stale, "reset").await;
    next_named(&mut stale, "tick").await;
    drop(stale);

    stop_ticker(ticker).await;
    let last = feed.publish("LAST", 100).seq.to_string();
    next_named(&mut stream, "tick").await;
    let poll = pending_long_poll(
        server.addr,
        format!("/ticks?lastEventId={last}&timeout=10000"),
        &[],
    );
    // The feed cannot say how many subscribers wait; give the request time to arrive.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!poll.is_finished(), "the long poll did not wait");

    let began = stop_within_a_second(server).await;
    assert_clean_end(&mut stream).await;
    assert_clean_end(&mut resumed).await;
    assert_empty_answer(poll, &last).await;
    assert!(began.elapsed() < SHUTDOWN_LIMIT);
}

#[tokio::test]
async fn layer_example_log_route_makes_the_broadcast_resumable() {
    let app = layer_app::App::new();
    let feed = app.feed().clone();
    let log = app.log().clone();
    let server = TestServer::serve_with(|listener, stop| app.serve(listener, stop)).await;
    let symbols = ["T1", "T2", "T3", "T4", "T5"];
    let expected = |symbol: &str| format!(r#"{{"symbol":"{symbol}","price":"1.00"}}"#);

    // A client at the live end reads two ticks, then goes away.
    let mut client = SseClient::connect(server.addr, "/ticks/log", None).await;
    support::wait_until("the client to subscribe", || log.subscriber_count() == 1).await;
    for symbol in &symbols[..2] {
        feed.publish(symbol, 100);
    }
    let first = client.take(2).await;
    assert_eq!(
        first.iter().map(|e| e.data.clone()).collect::<Vec<_>>(),
        [expected("T1"), expected("T2")]
    );
    assert!(first.iter().all(|e| e.event == "tick"));
    let cursor = client.last_event_id().to_owned();
    assert_eq!(cursor, first[1].id);
    drop(client);

    // Three ticks while it is away: it resumes with exactly those, in order, none twice.
    for symbol in &symbols[2..] {
        feed.publish(symbol, 100);
    }
    let mut resumed = SseClient::connect(server.addr, "/ticks/log", Some(&cursor)).await;
    let missed = resumed.take(3).await;
    let data: Vec<String> = missed.iter().map(|e| e.data.clone()).collect();
    assert_eq!(data, [expected("T3"), expected("T4"), expected("T5")]);
    assert!(missed.iter().all(|e| e.event == "tick"), "{missed:?}");
    let more = tokio::time::timeout(Duration::from_millis(200), resumed.next()).await;
    assert!(more.is_err(), "an event after the three missed ones: {more:?}");
    drop(resumed);

    stop_within_a_second(server).await;
}

#[tokio::test]
async fn notifications_example_stops_within_a_second() {
    const ADA: (&str, &[u8]) = ("cookie", b"user=ada");
    let topics = Topics::new(MemoryLog::builder());
    let shutdown = Shutdown::new();
    let config = StreamConfig::default().shutdown(shutdown.clone());
    let router = notifications_app::router(topics.clone(), config);
    // As its `main` serves it: `axum::serve`, the `Shutdown` triggered once the signal comes.
    let server = TestServer::start_with_shutdown(Serving::Axum, router, Some(shutdown)).await;

    let mut stream = open_sse(server.addr, "/api/notifications", &[ADA]).await;
    let event = Event::new("hi").with_name("notification").unwrap();
    topics.append("user-ada", event).await.unwrap();
    next_named(&mut stream, "notification").await;
    let mut now = open(
        server.addr,
        Method::GET,
        "/api/notifications?timeout=0",
        &[ADA],
        "",
    )
    .await;
    let json: serde_json::Value = serde_json::from_slice(&now.collect().await).expect("JSON");
    let cursor = json["lastEventId"].as_str().expect("a cursor").to_owned();
    let query = cursor.replace(',', "%2C");
    let path = format!("/api/notifications?lastEventId={query}&timeout=10000");
    let poll = pending_long_poll(server.addr, path, &[ADA]);
    // Ada's two topics, each read by the stream and the poll.
    support::wait_until("the long poll to wait", || topics.subscriber_count() == 4).await;

    let began = stop_within_a_second(server).await;
    assert_clean_end(&mut stream).await;
    assert_empty_answer(poll, &cursor).await;
    assert!(began.elapsed() < SHUTDOWN_LIMIT);
}
