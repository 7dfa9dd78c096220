//! tower-http middleware around the event endpoint, over real TCP (HTTP/1.1, hyper-util
//! server, no framework): compression, request and body timeouts, CORS and tracing each
//! leave the streams working.

mod support;

use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderName, Method, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::UnsyncBoxBody;
use tower::ServiceBuilder;
use tower_eventstream::{
    BoxError, Event, EventLogService, EventStreamBody, MemoryLog, RetryingSubscription, Shutdown,
    StreamConfig,
};
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::{ResponseBodyTimeoutLayer, TimeoutLayer};
use tower_http::trace::TraceLayer;

use support::client::{open, request};
use support::reader::SseReader;
use support::server::TestServer;
use support::sse::field_values;
use support::within;

/// Each event must arrive within this after it is published: a middleware that holds events
/// back fails the test here.
const EVENT_LIMIT: Duration = Duration::from_secs(2);

const SSE: (&str, &[u8]) = ("accept", b"text/event-stream");

/// Reads through `needle`, which must arrive within [`EVENT_LIMIT`].
async fn arrives(stream: &mut SseReader, needle: &str) -> String {
    match stream.try_read_until(needle, EVENT_LIMIT).await {
        Some(text) => text,
        None => panic!("{needle:?} was held back for {EVENT_LIMIT:?}"),
    }
}

fn events(log: &MemoryLog, config: StreamConfig) -> EventLogService<MemoryLog> {
    EventLogService::new(log.clone()).with_config(config)
}

/// `TimeoutLayer` and `CorsLayer` answer some requests themselves with an empty body, so
/// they need a response body type with `Default`; `EventStreamBody` has none, so it is boxed.
fn boxed(
    response: Response<EventStreamBody<RetryingSubscription<MemoryLog>>>,
) -> Response<UnsyncBoxBody<Bytes, BoxError>> {
    response.map(UnsyncBoxBody::new)
}

/// Gunzips a complete gzip body.
fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    decoder.write_all(body).expect("valid gzip");
    decoder.finish().expect("complete gzip")
}

#[tokio::test]
async fn compression_passes_sse_through_event_by_event_and_compresses_long_polls() {
    let log = MemoryLog::new();
    let start = log.position();
    let config = StreamConfig::default().keep_alive(Duration::from_millis(300));
    let service = ServiceBuilder::new()
        .layer(CompressionLayer::new())
        .service(events(&log, config));
    let server = TestServer::hyper_util(service, None).await;

    let mut sse = open(
        server.addr,
        Method::GET,
        "/events",
        &[SSE, ("accept-encoding", b"gzip")],
        "",
    )
    .await;
    assert_eq!(sse.head.status, StatusCode::OK);
    assert_eq!(sse.header("content-type"), Some("text/event-stream"));
    assert_eq!(sse.header("content-encoding"), None, "SSE must not be compressed");
    arrives(&mut sse, "\n\n").await;

    // One by one: the next event is published only once the previous one has arrived.
    for n in 1..=5 {
        let stored = log.push(Event::new(format!("event {n}"))).unwrap();
        let block = sse
            .try_read_until("\n\n", EVENT_LIMIT)
            .await
            .unwrap_or_else(|| panic!("event {n} was held back for {EVENT_LIMIT:?}"));
        assert_eq!(field_values(&block, "data"), [format!("event {n}")]);
        assert_eq!(field_values(&block, "id"), [stored.id().unwrap().as_str()]);
    }
    // Idle: a keep-alive comment arrives by itself, and the stream is still open after it.
    let keep_alive = sse.try_read_until("\n", EVENT_LIMIT).await;
    assert_eq!(
        keep_alive.as_deref(),
        Some(":\n"),
        "the keep-alive comment was held back"
    );
    log.push(Event::new("after the keep-alive")).unwrap();
    let block = arrives(&mut sse, "\n\n").await;
    assert_eq!(field_values(&block, "data"), ["after the keep-alive"]);

    // The long-poll answer is ordinary JSON: compressed when the client accepts it.
    let path = format!("/events?lastEventId={start}&timeout=0");
    let answer = request(
        server.addr,
        Method::GET,
        &path,
        &[("accept-encoding", b"gzip")],
        "",
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("content-encoding"), Some("gzip"));
    let json: serde_json::Value = serde_json::from_slice(&gunzip(&answer.body)).expect("JSON");
    assert_eq!(json["events"].as_array().unwrap().len(), 6);
    assert_eq!(json["events"][0]["data"], "event 1");

    let answer = request(server.addr, Method::GET, &path, &[], "").await;
    assert_eq!(answer.header("content-encoding"), None);
    let json: serde_json::Value = serde_json::from_slice(&answer.body).expect("JSON");
    assert_eq!(json["events"].as_array().unwrap().len(), 6);
}

/// A response body that holds data back until 4 KiB have gathered, as a buffering proxy or
/// an encoder that never flushes would.
struct Buffering<B> {
    inner: Pin<Box<B>>,
    held: BytesMut,
}

impl<B: Body<Data = Bytes>> Body for Buffering<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        loop {
            match ready!(self.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.held.extend_from_slice(&data);
                    }
                    if self.held.len() >= 4096 {
                        return Poll::Ready(Some(Ok(Frame::data(self.held.split().freeze()))));
                    }
                }
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None if self.held.is_empty() => return Poll::Ready(None),
                None => return Poll::Ready(Some(Ok(Frame::data(self.held.split().freeze())))),
            }
        }
    }
}

/// The control experiment: the per-event check of the test above fails when a middleware
/// holds the stream back.
#[tokio::test]
async fn a_middleware_that_holds_events_back_fails_the_per_event_check() {
    let log = MemoryLog::new();
    let service = ServiceBuilder::new()
        .map_response(
            |response: Response<EventStreamBody<RetryingSubscription<MemoryLog>>>| {
                response.map(|body| Buffering {
                    inner: Box::pin(body),
                    held: BytesMut::new(),
                })
            },
        )
        .service(events(&log, StreamConfig::default()));
    let server = TestServer::hyper_util(service, None).await;

    let mut sse = open(server.addr, Method::GET, "/events", &[SSE], "").await;
    assert_eq!(sse.head.status, StatusCode::OK);
    log.push(Event::new("held back")).unwrap();
    let arrived = sse.try_read_until("held back", Duration::from_millis(500)).await;
    assert_eq!(arrived, None, "the buffering body let the event through");
}

#[tokio::test]
async fn timeout_layer_does_not_cut_streams_and_long_polls_below_it_answer_empty() {
    let log = MemoryLog::new();
    let limit = Duration::from_millis(500);
    let service = ServiceBuilder::new()
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limit))
        .map_response(boxed)
        .service(events(&log, StreamConfig::default()));
    let server = TestServer::hyper_util(service, None).await;

    let mut sse = open(server.addr, Method::GET, "/events", &[SSE], "").await;
    assert_eq!(sse.head.status, StatusCode::OK);
    arrives(&mut sse, "\n\n").await;

    // Meanwhile: a long poll that waits less than the layer allows gets the empty shape...
    let position = log.position();
    let path = format!("/events?lastEventId={position}&timeout=200");
    let began = Instant::now();
    let answer = request(server.addr, Method::GET, &path, &[], "").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(began.elapsed() >= Duration::from_millis(200));
    let json: serde_json::Value = serde_json::from_slice(&answer.body).expect("JSON");
    assert_eq!(
        json,
        serde_json::json!({"events": [], "lastEventId": position.as_str(), "reset": false})
    );
    // ...while one that waits longer is cut by the layer: keep `max_wait` below the timeout.
    let path = format!("/events?lastEventId={position}&timeout=2000");
    let answer = request(server.addr, Method::GET, &path, &[], "").await;
    assert_eq!(answer.status, StatusCode::REQUEST_TIMEOUT);

    // The stream outlived the timeout (only the response head is timed) and still delivers.
    tokio::time::sleep((limit * 2).saturating_sub(began.elapsed())).await;
    log.push(Event::new("after the timeout")).unwrap();
    let block = arrives(&mut sse, "\n\n").await;
    assert_eq!(field_values(&block, "data"), ["after the timeout"]);
}

#[tokio::test]
async fn response_body_timeout_keeps_streams_that_send_keep_alives_more_often() {
    let log = MemoryLog::new();
    let idle_limit = Duration::from_millis(300);
    let stack = |config| {
        ServiceBuilder::new()
            .layer(ResponseBodyTimeoutLayer::new(idle_limit))
            .service(events(&log, config))
    };
    let kept = TestServer::hyper_util(
        stack(StreamConfig::default().keep_alive(Duration::from_millis(100))),
        None,
    )
    .await;
    let cut = TestServer::hyper_util(stack(StreamConfig::default().without_keep_alive()), None).await;

    let mut kept_sse = open(kept.addr, Method::GET, "/events", &[SSE], "").await;
    let mut cut_sse = open(cut.addr, Method::GET, "/events", &[SSE], "").await;
    arrives(&mut kept_sse, "\n\n").await;
    arrives(&mut cut_sse, "\n\n").await;

    // Idle for longer than the limit: only keep-alive comments flow on the first stream.
    tokio::time::sleep(idle_limit * 3).await;
    log.push(Event::new("still open")).unwrap();
    let block = arrives(&mut kept_sse, "data: still open\n\n").await;
    assert!(block.contains(":\n"), "no keep-alive comments: {block:?}");

    // Without keep-alive comments the layer ended the other stream with an error.
    let ended = within("the cut stream to end", async {
        loop {
            match cut_sse.next_chunk().await {
                Some(Ok(_)) => continue,
                Some(Err(_)) => return "failed",
                None => return "ended cleanly",
            }
        }
    })
    .await;
    assert_eq!(ended, "failed");
}

#[tokio::test]
async fn cors_layer_serves_cross_origin_event_sources_and_preflights() {
    const ORIGIN: &str = "https://app.example";
    let log = MemoryLog::new();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::exact(ORIGIN.parse().unwrap()))
        .allow_methods([Method::GET])
        // A fetch-based client that sends `Last-Event-ID` itself is preflighted.
        .allow_headers([HeaderName::from_static("last-event-id")]);
    let service = ServiceBuilder::new()
        .layer(cors)
        .map_response(boxed)
        .service(events(&log, StreamConfig::default()));
    let server = TestServer::hyper_util(service, None).await;

    // What an `EventSource` on another origin sends: a simple GET, no preflight.
    let mut sse = open(
        server.addr,
        Method::GET,
        "/events",
        &[SSE, ("origin", ORIGIN.as_bytes())],
        "",
    )
    .await;
    assert_eq!(sse.head.status, StatusCode::OK);
    assert_eq!(sse.header("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(sse.header("content-type"), Some("text/event-stream"));
    arrives(&mut sse, "\n\n").await;
    log.push(Event::new("cross-origin")).unwrap();
    let block = arrives(&mut sse, "\n\n").await;
    assert_eq!(field_values(&block, "data"), ["cross-origin"]);

    // Long poll from the same origin.
    let answer = request(
        server.addr,
        Method::GET,
        "/events?timeout=0",
        &[("origin", ORIGIN.as_bytes())],
        "",
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("access-control-allow-origin"), Some(ORIGIN));

    // The preflight of a request carrying `Last-Event-ID`.
    let answer = request(
        server.addr,
        Method::OPTIONS,
        "/events",
        &[
            ("origin", ORIGIN.as_bytes()),
            ("access-control-request-method", b"GET"),
            ("access-control-request-headers", b"last-event-id"),
        ],
        "",
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("access-control-allow-origin"), Some(ORIGIN));
    let allowed_headers = answer.header("access-control-allow-headers").unwrap_or_default();
    assert!(
        allowed_headers.to_ascii_lowercase().contains("last-event-id"),
        "{allowed_headers:?}"
    );
    let allowed_methods = answer.header("access-control-allow-methods").unwrap_or_default();
    assert!(allowed_methods.contains("GET"), "{allowed_methods:?}");

    // Another origin is not granted (the header names only the allowed origin).
    let answer = request(
        server.addr,
        Method::GET,
        "/events?timeout=0",
        &[("origin", b"https://elsewhere.example")],
        "",
    )
    .await;
    assert_ne!(
        answer.header("access-control-allow-origin"),
        Some("https://elsewhere.example")
    );
}

/// Counts the spans and events of tower-http's `TraceLayer` (target `tower_http::…`).
#[derive(Clone, Default)]
struct Counter {
    spans: Arc<AtomicUsize>,
    events: Arc<AtomicUsize>,
    next_id: Arc<AtomicU64>,
}

impl Counter {
    fn total(&self) -> usize {
        self.spans.load(Ordering::SeqCst) + self.events.load(Ordering::SeqCst)
    }
}

impl tracing::Subscriber for Counter {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }

    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        if span.metadata().target().starts_with("tower_http") {
            self.spans.fetch_add(1, Ordering::SeqCst);
        }
        tracing::span::Id::from_u64(self.next_id.fetch_add(1, Ordering::SeqCst) + 1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        if event.metadata().target().starts_with("tower_http") {
            self.events.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

// One thread: the server's tasks run where the subscriber is installed.
#[tokio::test(flavor = "current_thread")]
async fn trace_layer_logs_per_request_not_per_event() {
    let counter = Counter::default();
    let _guard = tracing::subscriber::set_default(counter.clone());

    let log = MemoryLog::new();
    let shutdown = Shutdown::new();
    let config = StreamConfig::default()
        .keep_alive(Duration::from_millis(50))
        .shutdown(shutdown.clone());
    let service = ServiceBuilder::new()
        .layer(TraceLayer::new_for_http())
        .service(events(&log, config));
    let mut server = TestServer::hyper_util(service, Some(shutdown)).await;

    let mut sse = open(server.addr, Method::GET, "/events", &[SSE], "").await;
    arrives(&mut sse, "\n\n").await;
    log.push(Event::new("first")).unwrap();
    arrives(&mut sse, "data: first\n\n").await;
    let after_one = counter.total();
    // The request span plus "started processing" and "finished processing".
    assert!(
        (2..=3).contains(&after_one),
        "expected a span and a line or two for the request, got {after_one}"
    );

    for n in 0..50 {
        log.push(Event::new(format!("event {n}"))).unwrap();
        arrives(&mut sse, &format!("data: event {n}\n\n")).await;
    }
    // Let keep-alive comments flow as well.
    for _ in 0..3 {
        arrives(&mut sse, ":\n").await;
    }
    assert_eq!(
        counter.total(),
        after_one,
        "TraceLayer logged per event or keep-alive"
    );

    // The end of the stream is one more line.
    server.begin_shutdown();
    sse.read_to_end().await;
    tokio::time::timeout(Duration::from_secs(1), server.stopped())
        .await
        .expect("the server stopped within 1 s of the shutdown")
        .expect("the server stopped cleanly");
    assert_eq!(counter.total(), after_one + 1);
}
