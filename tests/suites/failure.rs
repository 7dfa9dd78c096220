//! The failure rule over real TCP (crate docs, "What a failure answers"), on the server each
//! includer names: `tests/failure.rs` runs it on `axum::serve`, `tests/crate_server.rs` on
//! the crate's own server. The client's own fault is `400`; a passing fault never answers an
//! SSE request with anything but `200 text/event-stream` (a browser's `EventSource` closes for
//! good on any other status), while a long poll gets `503` with `Retry-After`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use http::StatusCode;
use tower::service_fn;
use tower_eventstream::{
    AppendError, Appended, Event, EventLog, EventLogService, EventStreamLayer, IdempotencyKey, LastEventId,
    MemoryLog, MemorySubscription, RequestError, Shutdown, StartPosition, StreamConfig, StreamRequest,
    SubscribeError,
};

use crate::support::client::{long_poll, request};
use crate::support::reader::SseReader;
use crate::support::server::{events_router, Serving, TestServer};
use crate::support::sse::{field_values, parse_sse, SseClient};
use crate::support::wait_until;

/// A log whose backend can be switched off: subscribing fails while it is down.
#[derive(Clone)]
struct FlakyLog {
    memory: MemoryLog,
    down: Arc<AtomicBool>,
    attempts: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct Down;

impl std::fmt::Display for Down {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the test backend is switched off")
    }
}

impl std::error::Error for Down {}

impl FlakyLog {
    fn new(memory: MemoryLog) -> Self {
        FlakyLog {
            memory,
            down: Arc::new(AtomicBool::new(false)),
            attempts: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }
}

impl EventLog for FlakyLog {
    type Error = Down;
    type Subscription = MemorySubscription;

    async fn append(&self, event: Event) -> Result<Event, AppendError<Down>> {
        self.memory.push(event).map_err(|_| AppendError::Finished)
    }

    async fn append_once(
        &self,
        event: Event,
        key: &IdempotencyKey,
        window: Duration,
    ) -> Result<Appended, AppendError<Down>> {
        self.memory
            .push_once(event, key, window)
            .map_err(|error| match error {
                AppendError::KeyReused => AppendError::KeyReused,
                _ => AppendError::Finished,
            })
    }

    async fn finish(&self) -> Result<(), Down> {
        self.memory.finish();
        Ok(())
    }

    async fn record_gap(&self) -> Result<(), Down> {
        self.memory.record_gap();
        Ok(())
    }

    async fn subscribe_fresh(
        &self,
        start: StartPosition,
    ) -> Result<MemorySubscription, SubscribeError<Down>> {
        self.attempt()?;
        Self::of_memory(self.memory.subscribe_fresh(start).await)
    }

    async fn subscribe(
        &self,
        cursor: Option<&LastEventId>,
    ) -> Result<MemorySubscription, SubscribeError<Down>> {
        self.attempt()?;
        Self::of_memory(self.memory.subscribe(cursor).await)
    }
}

impl FlakyLog {
    /// Counts an attempt, which fails while the backend is down.
    fn attempt(&self) -> Result<(), SubscribeError<Down>> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        match self.down.load(Ordering::SeqCst) {
            true => Err(SubscribeError::Backend(Down)),
            false => Ok(()),
        }
    }

    fn of_memory(
        subscribed: Result<MemorySubscription, SubscribeError<std::convert::Infallible>>,
    ) -> Result<MemorySubscription, SubscribeError<Down>> {
        match subscribed {
            Ok(subscription) => Ok(subscription),
            Err(SubscribeError::InvalidCursor(error)) => Err(SubscribeError::InvalidCursor(error)),
            Err(other) => unreachable!("a MemoryLog's storage cannot fail: {other:?}"),
        }
    }
}

fn quick_config() -> StreamConfig {
    StreamConfig::default()
        .keep_alive(Duration::from_millis(100))
        .retry(Duration::from_millis(500))
}

async fn serve_flaky(serving: Serving, log: &FlakyLog) -> (std::net::SocketAddr, TestServer) {
    let service = EventLogService::new(log.clone()).with_config(quick_config());
    let server = TestServer::start(serving, Router::new().route_service("/events", service)).await;
    (server.addr, server)
}

fn push_all(log: &MemoryLog, texts: &[&str]) -> Vec<String> {
    texts
        .iter()
        .map(|text| {
            log.push(Event::new(*text))
                .unwrap()
                .id()
                .unwrap()
                .as_str()
                .to_owned()
        })
        .collect()
}

/// Reads the held stream's wire until `marker` (an event's data) has arrived and returns
/// the events the third-party parser finds in it, checkpoints included.
async fn events_until(
    raw: &mut SseReader,
    seen: &mut String,
    marker: &str,
) -> Vec<eventsource_stream::Event> {
    seen.push_str(&raw.read_until(&format!("data: {marker}\n\n")).await);
    parse_sse(seen.clone())
}

fn data_of(events: &[eventsource_stream::Event]) -> Vec<&str> {
    events
        .iter()
        .filter(|e| e.event == "message")
        .map(|e| e.data.as_str())
        .collect()
}

/// "a held stream is preferred where the cursor must be kept": a client that reconnects
/// while the backend is down stays connected, hears keep-alives, and once the backend
/// answers gets every event after its cursor, none twice.
pub async fn an_sse_request_while_the_log_is_down_is_held_open_and_resumes_exactly(serving: Serving) {
    let memory = MemoryLog::new();
    let log = FlakyLog::new(memory.clone());
    let ids = push_all(&memory, &["one", "two", "three"]);
    let (addr, _server) = serve_flaky(serving, &log).await;

    log.set_down(true);
    let mut raw = SseReader::connect(addr, "/events", Some(&ids[0])).await;
    assert_eq!(raw.head.status, StatusCode::OK);
    assert_eq!(raw.head.headers["content-type"], "text/event-stream");
    let mut seen = raw.read_block().await;
    // Keep-alives flow while the subscription is retried.
    seen.push_str(&raw.read_until(":\n").await);
    seen.push_str(&raw.read_until(":\n").await);
    push_all(&memory, &["four"]);
    wait_until("a second subscription attempt", || log.attempts() >= 2).await;

    log.set_down(false);
    push_all(&memory, &["five"]);
    let events = events_until(&mut raw, &mut seen, "five").await;
    assert_eq!(data_of(&events), ["two", "three", "four", "five"]);
    assert!(events.iter().all(|e| e.event != "reset"), "no gap: {events:?}");
    let ids_seen: Vec<&str> = events
        .iter()
        .filter(|e| e.event == "message")
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(ids_seen[..2], [ids[1].as_str(), ids[2].as_str()]);
}

/// A client without a cursor, held through an outage, learns its position from a
/// checkpoint as soon as the subscription starts, so a reconnect right after misses nothing.
pub async fn a_fresh_client_held_through_an_outage_gets_a_checkpoint_when_the_log_answers(serving: Serving) {
    let memory = MemoryLog::new();
    let log = FlakyLog::new(memory.clone());
    push_all(&memory, &["old"]);
    let (addr, _server) = serve_flaky(serving, &log).await;

    log.set_down(true);
    let mut raw = SseReader::connect(addr, "/events", None).await;
    let (opening, id) = raw.read_opening().await;
    assert_eq!(
        id, None,
        "no position is claimed before the log answers: {opening:?}"
    );
    raw.read_until(":\n").await;
    log.set_down(false);
    let checkpoint = raw.read_until("event: checkpoint\ndata:\n\n").await;
    let parsed = parse_sse(checkpoint.clone());
    let last = parsed.last().expect("the checkpoint is dispatched");
    assert_eq!(last.event, "checkpoint");
    assert_eq!(last.id, memory.position().as_str(), "{checkpoint:?}");

    // Reconnecting from the checkpoint resumes exactly there.
    drop(raw);
    push_all(&memory, &["after"]);
    let mut client = SseClient::connect(addr, "/events", Some(&last.id)).await;
    assert_eq!(client.next().await.data, "after");
}

/// A cursor the log only refuses once it answers (the stream has begun) is a `reset`, then
/// the live events: the client learns it must reload, and is not stuck.
pub async fn a_held_stream_whose_cursor_the_log_refuses_later_gets_a_reset(serving: Serving) {
    let memory = MemoryLog::new();
    let log = FlakyLog::new(memory.clone());
    let (addr, _server) = serve_flaky(serving, &log).await;
    log.set_down(true);
    // Well-formed, but a sequence this log has not issued yet.
    let future_cursor = format!("{}-99", memory.epoch());
    let mut raw = SseReader::connect(addr, "/events", Some(&future_cursor)).await;
    let mut seen = raw.read_block().await;
    log.set_down(false);
    seen.push_str(&raw.read_until("event: reset\n").await);
    seen.push_str(&raw.read_until("\n\n").await);
    push_all(&memory, &["live"]);
    let events = events_until(&mut raw, &mut seen, "live").await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["reset", "message"], "{events:?}");
    assert_eq!(
        events[0].id,
        format!("{}-0", memory.epoch()),
        "the position it starts from"
    );
}

/// "long poll keeps status codes (a script can read them): 503 with Retry-After".
pub async fn a_long_poll_while_the_log_is_down_is_503_with_retry_after(serving: Serving) {
    let log = FlakyLog::new(MemoryLog::new());
    let (addr, _server) = serve_flaky(serving, &log).await;
    log.set_down(true);
    let answer = crate::support::client::get(addr, "/events?timeout=0").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    let retry_after: u64 = answer
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("whole seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert!(
        answer.text().contains("event log unavailable"),
        "{}",
        answer.text()
    );

    log.set_down(false);
    let (status, _) = long_poll(addr, "/events?timeout=0").await;
    assert_eq!(status, StatusCode::OK);
}

/// "the client's own fault ... 400 as today": a malformed cursor is refused on both
/// transports even while the backend is down.
pub async fn the_clients_own_fault_is_400_on_both_transports(serving: Serving) {
    let log = FlakyLog::new(MemoryLog::new());
    let (addr, _server) = serve_flaky(serving, &log).await;
    log.set_down(true);
    for accept in ["text/event-stream", "application/json"] {
        let answer = request(
            addr,
            http::Method::GET,
            "/events?lastEventId=not%20visible",
            &[("accept", accept.as_bytes())],
            "",
        )
        .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{accept}");
    }
}

/// The extractor path gives the same answer: `StreamRequest::serve` holds the stream.
pub async fn the_extractor_path_holds_the_stream_too(serving: Serving) {
    #[derive(Clone, axum::extract::FromRef)]
    struct Held {
        log: FlakyLog,
        config: StreamConfig,
    }
    async fn events(State(log): State<FlakyLog>, request: StreamRequest) -> impl IntoResponse {
        request.serve(&log).await
    }
    let memory = MemoryLog::new();
    let log = FlakyLog::new(memory.clone());
    let ids = push_all(&memory, &["one"]);
    let router = Router::new().route("/events", get(events)).with_state(Held {
        log: log.clone(),
        config: quick_config(),
    });
    let server = TestServer::start(serving, router).await;
    let addr = server.addr;
    log.set_down(true);
    let mut raw = SseReader::connect(addr, "/events", Some(&ids[0])).await;
    assert_eq!(raw.head.status, StatusCode::OK);
    let mut seen = raw.read_block().await;
    wait_until("an attempt while down", || log.attempts() >= 2).await;
    log.set_down(false);
    push_all(&memory, &["two"]);
    assert_eq!(data_of(&events_until(&mut raw, &mut seen, "two").await), ["two"]);
}

// ---------------------------------------------------------------------------------------
// Layers: an inner service's error
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct Transient;

impl std::fmt::Display for Transient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("upstream feed not reachable")
    }
}

impl std::error::Error for Transient {}

/// A layered service whose inner service fails with `Transient` while `failing` is set,
/// with `RequestError::Timeout` for `?bad`, and otherwise streams the memory log.
fn layered(memory: MemoryLog, failing: Arc<AtomicBool>) -> Router {
    let inner = service_fn(move |request: http::Request<axum::body::Body>| {
        let memory = memory.clone();
        let failing = failing.load(Ordering::SeqCst);
        async move {
            if request.uri().query() == Some("bad") {
                return Err(tower_eventstream::BoxError::from(RequestError::Timeout));
            }
            if failing {
                return Err(Transient.into());
            }
            let cursor = request.extensions().get::<LastEventId>().cloned();
            let subscription = memory
                .subscribe(cursor.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            Ok(subscription)
        }
    });
    let service = tower::ServiceBuilder::new()
        .layer(EventStreamLayer::new(quick_config()))
        .service(inner);
    Router::new().route_service("/events", service)
}

/// "an inner service's error that is not about the request: 200 text/event-stream, then ...
/// a jittered retry: hint and end cleanly so the browser comes back".
pub async fn an_inner_service_error_ends_an_sse_stream_with_a_jittered_retry_hint(serving: Serving) {
    let memory = MemoryLog::new();
    let failing = Arc::new(AtomicBool::new(true));
    let server = TestServer::start(serving, layered(memory.clone(), Arc::clone(&failing))).await;
    let addr = server.addr;

    let mut hints = Vec::new();
    for _ in 0..8 {
        let mut raw = SseReader::connect(addr, "/events", None).await;
        assert_eq!(raw.head.status, StatusCode::OK);
        assert_eq!(raw.head.headers["content-type"], "text/event-stream");
        let body = raw.read_to_end().await;
        assert!(
            !body.contains("upstream"),
            "no internals reach the client: {body:?}"
        );
        let retry = field_values(&body, "retry");
        assert_eq!(retry.len(), 1, "{body:?}");
        let millis: u64 = retry[0].parse().expect("retry is digits only");
        assert!((250..=750).contains(&millis), "jittered around 500 ms: {millis}");
        hints.push(millis);
    }
    hints.sort_unstable();
    hints.dedup();
    assert!(hints.len() > 1, "the hint is jittered: {hints:?}");

    // Once the inner service recovers, the same request streams.
    failing.store(false, Ordering::SeqCst);
    let mut client = SseClient::connect(addr, "/events", None).await;
    memory.push(Event::new("back")).unwrap();
    assert_eq!(client.next().await.data, "back");
}

pub async fn an_inner_service_error_is_503_with_retry_after_for_a_long_poll(serving: Serving) {
    let server = TestServer::start(
        serving,
        layered(MemoryLog::new(), Arc::new(AtomicBool::new(true))),
    )
    .await;
    let addr = server.addr;
    let answer = crate::support::client::get(addr, "/events?timeout=0").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer
        .header("retry-after")
        .is_some_and(|v| v.parse::<u64>().is_ok()));
}

/// An inner `RequestError` is the client's fault: `400` on both transports.
pub async fn an_inner_request_error_is_400(serving: Serving) {
    let server = TestServer::start(
        serving,
        layered(MemoryLog::new(), Arc::new(AtomicBool::new(false))),
    )
    .await;
    let addr = server.addr;
    for accept in ["text/event-stream", "application/json"] {
        let answer = request(
            addr,
            http::Method::GET,
            "/events?bad",
            &[("accept", accept.as_bytes())],
            "",
        )
        .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{accept}");
        assert!(answer.text().contains("timeout"), "{}", answer.text());
    }
}

/// A source that fails mid-stream ends the stream cleanly with a retry hint (a body error
/// would reset the connection).
pub async fn a_source_failing_mid_stream_ends_with_a_retry_hint(serving: Serving) {
    let inner = service_fn(|_request: http::Request<axum::body::Body>| async {
        let items: Vec<Result<Event, Transient>> =
            vec![Ok(Event::new("first").with_id("1").unwrap()), Err(Transient)];
        Ok::<_, Infallible>(futures_util::stream::iter(items))
    });
    let service = tower::ServiceBuilder::new()
        .layer(EventStreamLayer::new(quick_config()))
        .service(inner);
    let server = TestServer::start(serving, Router::new().route_service("/events", service)).await;
    let addr = server.addr;
    let mut raw = SseReader::connect(addr, "/events", None).await;
    let body = raw.read_to_end().await;
    let events = parse_sse(body.clone());
    assert_eq!(data_of(&events), ["first"]);
    assert_eq!(
        field_values(&body, "retry").len(),
        2,
        "opening hint and ending hint: {body:?}"
    );
}

/// Shutdown begun before a stream started: `200`, a retry hint, a clean end.
pub async fn a_stream_opened_after_shutdown_began_ends_at_once_with_a_retry_hint(serving: Serving) {
    let shutdown = Shutdown::new();
    shutdown.trigger();
    let memory = MemoryLog::new();
    let router = events_router(&memory, quick_config().shutdown(shutdown));
    let server = TestServer::start(serving, router).await;
    let addr = server.addr;
    let mut raw = SseReader::connect(addr, "/events", None).await;
    assert_eq!(raw.head.status, StatusCode::OK);
    let body = raw.read_to_end().await;
    assert_eq!(field_values(&body, "retry").len(), 2, "{body:?}");
}

/// This suite's tests, each on `$serving`.
macro_rules! tests {
    ($serving:expr) => {
        $crate::support::server::tests_on! {
            $serving; failure; #[tokio::test]
            an_sse_request_while_the_log_is_down_is_held_open_and_resumes_exactly,
            a_fresh_client_held_through_an_outage_gets_a_checkpoint_when_the_log_answers,
            a_held_stream_whose_cursor_the_log_refuses_later_gets_a_reset,
            a_long_poll_while_the_log_is_down_is_503_with_retry_after,
            the_clients_own_fault_is_400_on_both_transports,
            the_extractor_path_holds_the_stream_too,
            an_inner_service_error_ends_an_sse_stream_with_a_jittered_retry_hint,
            an_inner_service_error_is_503_with_retry_after_for_a_long_poll,
            an_inner_request_error_is_400,
            a_source_failing_mid_stream_ends_with_a_retry_hint,
            a_stream_opened_after_shutdown_began_ends_at_once_with_a_retry_hint,
        }
    };
}
pub(crate) use tests;
