//! Each example's server, started on 127.0.0.1:0 exactly as its `main` starts it: a real
//! client gets events, then with SSE streams open and long polls pending the graceful
//! shutdown completes within one second and every client sees a clean end.

#[allow(dead_code)]
#[path = "../examples/hyper/app.rs"]
mod hyper_app;
#[allow(dead_code)]
#[path = "../examples/layer/app.rs"]
mod layer_app;
mod support;
#[allow(dead_code)]
#[path = "../examples/tonic/app.rs"]
mod tonic_app;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use support::{field_values, http1, request, within, BodyReader, Http2, Opened, LIMIT};

const SSE: (&str, &str) = ("accept", "text/event-stream");
const TICK: Duration = Duration::from_millis(20);
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(1);

/// A running example: its address, the stop signal its `serve` waits for, and its task.
struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

/// Binds 127.0.0.1:0 and runs `serve(listener, stop)` as the example's `main` does (with a
/// oneshot instead of Ctrl-C).
async fn start<F>(serve: impl FnOnce(TcpListener, Stop) -> F) -> Running
where
    F: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(serve(listener, Stop(stopped)));
    Running { addr, stop, task }
}

/// The stop signal given to an example's `serve`.
struct Stop(oneshot::Receiver<()>);

impl Stop {
    async fn wait(self) {
        let _ = self.0.await;
    }
}

impl Running {
    /// Sends the stop signal and asserts `serve` returns `Ok` within [`SHUTDOWN_LIMIT`].
    async fn stop_within_a_second(self) -> Instant {
        let began = Instant::now();
        self.stop.send(()).expect("the server is running");
        within("the example's graceful shutdown", SHUTDOWN_LIMIT, self.task)
            .await
            .expect("the server task panicked")
            .expect("serve returned an error");
        began
    }
}

/// Opens an SSE stream over HTTP/1.1 and reads its opening block.
async fn open_sse(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (Opened, support::Connection) {
    let mut all = vec![SSE];
    all.extend_from_slice(headers);
    let (mut opened, connection) = http1(addr, request("GET", path, &all)).await;
    assert_eq!(opened.status, StatusCode::OK, "SSE request to {path}");
    assert_eq!(opened.header("content-type"), Some("text/event-stream"));
    opened.body.read_until("\n\n", LIMIT).await;
    (opened, connection)
}

/// Reads SSE blocks until one is an event named `name`; returns it.
async fn next_named(body: &mut BodyReader, name: &str) -> String {
    loop {
        let block = body.read_until("\n\n", LIMIT).await;
        if field_values(&block, "event").iter().any(|n| n == name) {
            return block;
        }
    }
}

/// Starts a long poll after `cursor` that will wait (10 s at most), on its own connection.
fn pending_long_poll(addr: SocketAddr, path: String) -> JoinHandle<(StatusCode, serde_json::Value)> {
    tokio::spawn(async move {
        let (mut opened, _connection) = http1(addr, request("GET", &path, &[])).await;
        let body = opened.body.read_bytes_to_end(Duration::from_secs(10)).await;
        let json = serde_json::from_slice(&body).expect("a JSON answer");
        (opened.status, json)
    })
}

/// After shutdown began: the stream ends cleanly (no error) within a second, after a
/// `retry:` hint.
async fn assert_clean_end(body: &mut BodyReader) {
    let tail = body.read_to_end(SHUTDOWN_LIMIT).await;
    assert!(tail.contains("retry: "), "no retry hint before the end: {tail:?}");
}

/// After shutdown began: the long poll is answered with the empty shape within a second.
async fn assert_empty_answer(poll: JoinHandle<(StatusCode, serde_json::Value)>, cursor: &str) {
    let (status, json) = within("the pending long poll's answer", SHUTDOWN_LIMIT, poll)
        .await
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
    let _ = within("the ticker to stop", LIMIT, ticker).await;
}

#[tokio::test]
async fn hyper_example_serves_http1_and_h2c_and_stops_within_a_second() {
    let app = hyper_app::App::new();
    let log = app.log().clone();
    let ticker = app.spawn_ticker(TICK);
    let server = start(|listener, stop| app.serve(listener, stop.wait())).await;

    // SSE over HTTP/1.1 and over HTTP/2 (prior knowledge) on the same port.
    let (mut h1_stream, _h1) = open_sse(server.addr, "/events", &[]).await;
    let tick = next_named(&mut h1_stream.body, "tick").await;
    assert!(field_values(&tick, "data")[0].starts_with("tick "), "{tick:?}");
    let h2 = Http2::connect(server.addr).await;
    let mut h2_stream = h2.send("GET", "/events", &[SSE]).await;
    assert_eq!(h2_stream.version, http::Version::HTTP_2);
    next_named(&mut h2_stream.body, "tick").await;

    // A long poll gets ticks too.
    let (mut answer, _) = http1(server.addr, request("GET", "/events?timeout=2000", &[])).await;
    let json: serde_json::Value = serde_json::from_slice(&answer.body.collect().await).expect("JSON");
    assert_eq!(json["events"][0]["event"], "tick");

    // Quiet now: with both streams open, two long polls wait (HTTP/1.1 and HTTP/2).
    stop_ticker(ticker).await;
    let cursor = log.position().as_str().to_owned();
    let h1_poll = pending_long_poll(server.addr, format!("/events?lastEventId={cursor}&timeout=10000"));
    let h2_poll = {
        let h2 = h2.clone();
        let path = format!("/events?lastEventId={cursor}&timeout=10000");
        tokio::spawn(async move {
            let mut opened = h2.send("GET", &path, &[]).await;
            let json = serde_json::from_slice(&opened.body.collect().await).expect("JSON");
            (opened.status, json)
        })
    };
    support::wait_until("the long polls to wait", || log.subscriber_count() == 4).await;

    let began = server.stop_within_a_second().await;
    assert_clean_end(&mut h1_stream.body).await;
    assert_clean_end(&mut h2_stream.body).await;
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
    let server = start(|listener, stop| app.serve(listener, stop.wait())).await;

    // gRPC over h2c: the standard health check, through a tonic client.
    let channel = within(
        "the gRPC channel",
        LIMIT,
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
            .expect("endpoint")
            .connect(),
    )
    .await
    .expect("gRPC connection");
    let mut health = HealthClient::new(channel);
    let check = within(
        "the health check",
        LIMIT,
        health.check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .expect("health check");
    assert_eq!(check.into_inner().status(), ServingStatus::Serving);

    // SSE over HTTP/1.1 from the same address.
    let (mut stream, _connection) = open_sse(server.addr, "/events", &[]).await;
    let tick = next_named(&mut stream.body, "tick").await;
    assert!(field_values(&tick, "data")[0].starts_with("tick "), "{tick:?}");

    // An unknown gRPC method is answered like gRPC does.
    let (unknown, _) = http1(server.addr, request("POST", "/nope.Service/Method", &[])).await;
    assert_eq!(unknown.header("grpc-status"), Some("12"));

    stop_ticker(ticker).await;
    let cursor = log.position().as_str().to_owned();
    let poll = pending_long_poll(server.addr, format!("/events?lastEventId={cursor}&timeout=10000"));
    support::wait_until("the long poll to wait", || log.subscriber_count() == 2).await;

    // The gRPC channel stays connected (idle) through the shutdown: it must not hold it up.
    let began = server.stop_within_a_second().await;
    assert_clean_end(&mut stream.body).await;
    assert_empty_answer(poll, &cursor).await;
    assert!(began.elapsed() < SHUTDOWN_LIMIT);
    drop(health);
}

#[tokio::test]
async fn layer_example_resumes_by_tick_and_stops_within_a_second() {
    let app = layer_app::App::new();
    let feed = app.feed().clone();
    let ticker = app.spawn_ticker(TICK);
    let server = start(|listener, stop| app.serve(listener, stop.wait())).await;

    let (mut stream, _connection) = open_sse(server.addr, "/ticks", &[]).await;
    let first = next_named(&mut stream.body, "tick").await;
    let first_id: u64 = field_values(&first, "id")[0].parse().expect("a numeric id");
    let data: serde_json::Value = serde_json::from_str(&field_values(&first, "data")[0]).expect("JSON data");
    assert!(data["symbol"].is_string() && data["price"].is_string(), "{data}");
    let second = next_named(&mut stream.body, "tick").await;
    assert_eq!(field_values(&second, "id"), [(first_id + 1).to_string()]);

    // A reconnecting client resumes right after its last tick...
    let cursor = first_id.to_string();
    let (mut resumed, _resumed_connection) = http1(
        server.addr,
        request("GET", "/ticks", &[SSE, ("last-event-id", &cursor)]),
    )
    .await;
    let opening = resumed.body.read_until("\n\n", LIMIT).await;
    assert_eq!(field_values(&opening, "id"), [cursor.as_str()]);
    let next = next_named(&mut resumed.body, "tick").await;
    assert_eq!(field_values(&next, "id"), [(first_id + 1).to_string()]);
    // ...and so does a long poll.
    let (mut answer, _) = http1(
        server.addr,
        request("GET", &format!("/ticks?lastEventId={cursor}&timeout=0"), &[]),
    )
    .await;
    let json: serde_json::Value = serde_json::from_slice(&answer.body.collect().await).expect("JSON");
    assert_eq!(json["events"][0]["id"], (first_id + 1).to_string());
    assert_eq!(json["reset"], false);

    // A cursor the feed did not issue (another feed, before a restart): `reset`, then ticks.
    let (mut stale, _stale_connection) = http1(
        server.addr,
        request("GET", "/ticks", &[SSE, ("last-event-id", "999999999")]),
    )
    .await;
    next_named(&mut stale.body, "reset").await;
    next_named(&mut stale.body, "tick").await;
    drop(stale);

    stop_ticker(ticker).await;
    let last = feed.publish("LAST", 100).seq.to_string();
    next_named(&mut stream.body, "tick").await;
    let poll = pending_long_poll(server.addr, format!("/ticks?lastEventId={last}&timeout=10000"));
    // The feed cannot say how many subscribers wait; give the request time to arrive.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!poll.is_finished(), "the long poll did not wait");

    let began = server.stop_within_a_second().await;
    assert_clean_end(&mut stream.body).await;
    assert_clean_end(&mut resumed.body).await;
    assert_empty_answer(poll, &last).await;
    assert!(began.elapsed() < SHUTDOWN_LIMIT);
}
