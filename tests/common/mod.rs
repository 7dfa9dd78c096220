//! Helpers shared by the integration tests: a real server on 127.0.0.1:0, an HTTP/1.1
//! client over a plain `TcpStream`, an SSE client (parsed with `eventsource-stream`), a
//! raw SSE reader for exact wire bytes, and a long-poll client.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use bytes::Bytes;
use eventsource_stream::{EventStream, Eventsource};
use futures_util::{Stream, StreamExt};
use http_body_util::{BodyDataStream, BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_eventstream::{EventLogService, MemoryLog, Shutdown, StreamConfig};

/// The longest any single await in a test may take before the test fails.
pub const LIMIT: Duration = Duration::from_secs(5);

/// Awaits `future`, failing the test (instead of hanging) after [`LIMIT`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(LIMIT, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {LIMIT:?} waiting for {what}"),
    }
}

/// Polls `condition` every few milliseconds until it holds, failing after [`LIMIT`].
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {LIMIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------

/// A running server. Dropping it aborts the server task.
pub struct ServerHandle {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl ServerHandle {
    /// Starts axum's graceful shutdown (and triggers the crate's [`Shutdown`], if one was given).
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits for the server future to return, failing after `limit`.
    pub async fn stopped_within(mut self, limit: Duration) -> std::io::Result<()> {
        let task = self.task.take().expect("server task");
        match tokio::time::timeout(limit, task).await {
            Ok(joined) => joined.expect("server task panicked"),
            Err(_) => panic!("server did not stop within {limit:?} of the shutdown signal"),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Whether this suite runs on the crate's own [`tower_eventstream::server::Server`]:
/// `tests/crate_server.rs` compiles the chat, SSE, long-poll and bad-input suites a second
/// time as its modules, and there every server these helpers start is that one instead of
/// `axum::serve`.
pub fn on_crate_server() -> bool {
    module_path!().starts_with("crate_server::")
}

/// Serves `router` on 127.0.0.1 (a free port) with axum (or the crate's server, see
/// [`on_crate_server`]), with graceful shutdown support.
pub async fn serve(router: Router) -> (SocketAddr, ServerHandle) {
    serve_with_shutdown(router, None).await
}

/// Like [`serve`]; when the graceful shutdown begins, `shutdown` is triggered first (as the
/// chat example's `main` does), so open streams end and pending long polls answer.
pub async fn serve_with_shutdown(router: Router, shutdown: Option<Shutdown>) -> (SocketAddr, ServerHandle) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let (stop, stopped) = oneshot::channel::<()>();
    let signal = async move {
        // A dropped sender also ends the server.
        let _ = stopped.await;
        if let Some(shutdown) = shutdown {
            shutdown.trigger();
        }
    };
    let task = tokio::spawn(async move {
        #[cfg(feature = "server")]
        if on_crate_server() {
            tower_eventstream::server::Server::new(router)
                .serve_with_shutdown(listener, signal)
                .await;
            return Ok(());
        }
        axum::serve(listener, router).with_graceful_shutdown(signal).await
    });
    (
        addr,
        ServerHandle {
            stop: Some(stop),
            task: Some(task),
        },
    )
}

/// A router serving `log` at `/events` with `config`.
pub fn events_router(log: &MemoryLog, config: StreamConfig) -> Router {
    Router::new().route_service("/events", EventLogService::new(log.clone()).with_config(config))
}

// ---------------------------------------------------------------------------------------
// HTTP/1.1 client: one TCP connection per request, closed when the response is dropped
// ---------------------------------------------------------------------------------------

/// The client side of one TCP connection; dropping it closes the socket.
pub struct Connection(JoinHandle<()>);

impl Drop for Connection {
    fn drop(&mut self) {
        // Dropping the connection future drops the TcpStream: the server sees EOF.
        self.0.abort();
    }
}

/// A response whose body has not been read yet, with its connection.
pub struct Opened {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Incoming,
    pub connection: Connection,
}

/// Sends one request on a new connection to `addr` and returns the response head.
/// `headers` values are raw bytes, so tests can send bytes that are not ASCII.
pub async fn open(
    addr: SocketAddr,
    method: Method,
    path_and_query: &str,
    headers: &[(&str, &[u8])],
    body: impl Into<Bytes>,
) -> Opened {
    let stream = within("TCP connect", TcpStream::connect(addr))
        .await
        .expect("connect to the test server");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    let connection = Connection(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let mut request = Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(hyper::header::HOST, addr.to_string());
    for (name, value) in headers {
        request = request.header(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_bytes(value).expect("header value"),
        );
    }
    let request = request.body(Full::new(body.into())).expect("request");
    let response = within("response head", sender.send_request(request))
        .await
        .expect("send request");
    let (parts, body) = response.into_parts();
    Opened {
        status: parts.status,
        headers: parts.headers,
        body,
        connection,
    }
}

/// A complete response.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("ASCII header"))
    }
}

/// Sends one request and reads the whole response.
pub async fn request(
    addr: SocketAddr,
    method: Method,
    path_and_query: &str,
    headers: &[(&str, &[u8])],
    body: impl Into<Bytes>,
) -> Answer {
    let opened = open(addr, method, path_and_query, headers, body).await;
    let body = within("response body", opened.body.collect())
        .await
        .expect("read response body")
        .to_bytes();
    Answer {
        status: opened.status,
        headers: opened.headers,
        body,
    }
}

/// A plain GET.
pub async fn get(addr: SocketAddr, path_and_query: &str) -> Answer {
    request(addr, Method::GET, path_and_query, &[], Bytes::new()).await
}

// ---------------------------------------------------------------------------------------
// Long poll
// ---------------------------------------------------------------------------------------

/// A long poll (no `Accept: text/event-stream`): status and JSON body.
pub async fn long_poll(addr: SocketAddr, path_and_query: &str) -> (StatusCode, serde_json::Value) {
    let answer = get(addr, path_and_query).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "long poll {path_and_query} failed: {}",
        String::from_utf8_lossy(&answer.body)
    );
    (answer.status, answer.json())
}

/// The `data` of every event of a long-poll answer.
pub fn poll_data(answer: &serde_json::Value) -> Vec<String> {
    poll_events(answer).into_iter().map(|(_, _, data)| data).collect()
}

/// `(id, event, data)` of every event of a long-poll answer.
pub fn poll_events(answer: &serde_json::Value) -> Vec<(String, String, String)> {
    answer["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events array in {answer}"))
        .iter()
        .map(|e| {
            (
                e["id"].as_str().expect("event id").to_owned(),
                e["event"].as_str().expect("event name").to_owned(),
                e["data"].as_str().expect("event data").to_owned(),
            )
        })
        .collect()
}

/// The `lastEventId` of a long-poll answer (it must be a string).
pub fn poll_cursor(answer: &serde_json::Value) -> String {
    answer["lastEventId"]
        .as_str()
        .unwrap_or_else(|| panic!("lastEventId is not a string in {answer}"))
        .to_owned()
}

// ---------------------------------------------------------------------------------------
// SSE
// ---------------------------------------------------------------------------------------

/// Opens an SSE stream: `GET` with `Accept: text/event-stream` and, if given, `Last-Event-ID`.
pub async fn open_sse(addr: SocketAddr, path_and_query: &str, last_event_id: Option<&str>) -> Opened {
    let mut headers: Vec<(&str, &[u8])> = vec![("accept", b"text/event-stream")];
    if let Some(id) = last_event_id {
        headers.push(("last-event-id", id.as_bytes()));
    }
    let opened = open(addr, Method::GET, path_and_query, &headers, Bytes::new()).await;
    assert_eq!(
        opened.status,
        StatusCode::OK,
        "SSE request {path_and_query} was refused"
    );
    opened
}

/// An SSE stream parsed by `eventsource-stream` (spec-compliant: comments and events
/// without data are invisible).
pub struct SseClient {
    events: EventStream<BodyDataStream<Incoming>>,
    _connection: Connection,
}

impl SseClient {
    pub async fn connect(addr: SocketAddr, path_and_query: &str, last_event_id: Option<&str>) -> Self {
        let opened = open_sse(addr, path_and_query, last_event_id).await;
        SseClient {
            events: opened.body.into_data_stream().eventsource(),
            _connection: opened.connection,
        }
    }

    /// The next dispatched event, skipping checkpoints (they move the cursor and reach no
    /// `message` listener); fails on error, end of stream or after [`LIMIT`].
    pub async fn next(&mut self) -> eventsource_stream::Event {
        within("the next SSE event", async {
            loop {
                match self.events.next().await {
                    Some(Ok(event)) if event.event == "checkpoint" => {}
                    Some(Ok(event)) => return event,
                    Some(Err(error)) => panic!("SSE stream failed: {error}"),
                    None => panic!("SSE stream ended while an event was expected"),
                }
            }
        })
        .await
    }

    /// The next `n` events.
    pub async fn take(&mut self, n: usize) -> Vec<eventsource_stream::Event> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next().await);
        }
        out
    }

    /// What `EventSource.lastEventId` would be after the events dispatched so far.
    pub fn last_event_id(&self) -> &str {
        self.events.last_event_id()
    }
}

/// An SSE stream read as raw bytes, for checks on the exact wire format (comments,
/// `retry:` and `id:` lines without data are invisible to a parser).
pub struct RawSse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: BodyDataStream<Incoming>,
    /// Bytes received but not yet returned.
    pending: Vec<u8>,
    _connection: Connection,
}

impl RawSse {
    pub async fn connect(addr: SocketAddr, path_and_query: &str, last_event_id: Option<&str>) -> Self {
        let opened = open_sse(addr, path_and_query, last_event_id).await;
        RawSse {
            status: opened.status,
            headers: opened.headers,
            body: opened.body.into_data_stream(),
            pending: Vec::new(),
            _connection: opened.connection,
        }
    }

    /// Reads until `needle` has arrived; returns everything up to and including it.
    pub async fn read_until(&mut self, needle: &str) -> String {
        let needle = needle.as_bytes();
        within(
            &format!("{:?} on the SSE stream", String::from_utf8_lossy(needle)),
            async {
                loop {
                    if let Some(at) = find(&self.pending, needle) {
                        let rest = self.pending.split_off(at + needle.len());
                        let got = std::mem::replace(&mut self.pending, rest);
                        return String::from_utf8(got).expect("UTF-8 stream");
                    }
                    match self.body.next().await {
                        Some(Ok(chunk)) => self.pending.extend_from_slice(&chunk),
                        Some(Err(error)) => panic!("SSE body failed: {error}"),
                        None => panic!(
                            "SSE body ended before {:?}; unread: {:?}",
                            String::from_utf8_lossy(needle),
                            String::from_utf8_lossy(&self.pending)
                        ),
                    }
                }
            },
        )
        .await
    }

    /// Reads one block (up to and including the blank line that ends it).
    pub async fn read_block(&mut self) -> String {
        self.read_until("\n\n").await
    }

    /// Reads the opening block and returns its `id:` value, if any.
    pub async fn read_opening(&mut self) -> (String, Option<String>) {
        let opening = self.read_block().await;
        let id = field_values(&opening, "id").pop();
        (opening, id)
    }

    /// Reads to the end of the body, which must end cleanly (no error); returns what was
    /// not yet read.
    pub async fn read_to_end(&mut self) -> String {
        within("the end of the SSE body", async {
            loop {
                match self.body.next().await {
                    Some(Ok(chunk)) => self.pending.extend_from_slice(&chunk),
                    Some(Err(error)) => panic!("SSE body ended with an error: {error}"),
                    None => break,
                }
            }
        })
        .await;
        String::from_utf8(std::mem::take(&mut self.pending)).expect("UTF-8 stream")
    }

    /// The next chunk, or `None` at the end; `Err(())` if nothing arrives within `wait`.
    pub async fn next_chunk_within(&mut self, wait: Duration) -> Result<Option<Bytes>, ()> {
        if !self.pending.is_empty() {
            return Ok(Some(Bytes::from(std::mem::take(&mut self.pending))));
        }
        match tokio::time::timeout(wait, self.body.next()).await {
            Ok(Some(Ok(chunk))) => Ok(Some(chunk)),
            Ok(Some(Err(error))) => panic!("SSE body failed: {error}"),
            Ok(None) => Ok(None),
            Err(_) => Err(()),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// The values of every `name:` line in `text` (one leading space stripped, as a parser does).
pub fn field_values(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let (field, value) = line.split_once(':')?;
            (field == name).then(|| value.strip_prefix(' ').unwrap_or(value).to_owned())
        })
        .collect()
}

/// Parses complete SSE bytes with `eventsource-stream` (synchronously: the input is ready).
pub fn parse_sse(bytes: impl Into<Bytes>) -> Vec<eventsource_stream::Event> {
    let chunks = futures_util::stream::iter([Ok::<Bytes, std::convert::Infallible>(bytes.into())]);
    let mut events = std::pin::pin!(chunks.eventsource());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut out = Vec::new();
    loop {
        match events.as_mut().poll_next(&mut cx) {
            std::task::Poll::Ready(Some(Ok(event))) => out.push(event),
            std::task::Poll::Ready(Some(Err(error))) => panic!("invalid event stream: {error}"),
            std::task::Poll::Ready(None) => return out,
            std::task::Poll::Pending => unreachable!("a ready stream of one chunk is never pending"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Malformed requests, shared by the SSE and long-poll tests
// ---------------------------------------------------------------------------------------

/// A request the events route must refuse with `400` and a plain-text reason.
pub struct BadRequest {
    pub name: &'static str,
    pub path: String,
    pub headers: Vec<(&'static str, Vec<u8>)>,
    /// Text the reason must contain.
    pub reason: &'static str,
}

/// Every malformed cursor or parameter, for `log` served at `/events`.
pub fn malformed_requests(log: &MemoryLog) -> Vec<BadRequest> {
    let long = "a".repeat(300);
    let case = |name, path: String, header: Option<&[u8]>, reason| BadRequest {
        name,
        path,
        headers: header
            .map(|value| vec![("last-event-id", value.to_vec())])
            .unwrap_or_default(),
        reason,
    };
    let future = format!("{}-999999", log.epoch());
    vec![
        case(
            "cursor of 300 bytes in the header",
            "/events".into(),
            Some(long.as_bytes()),
            "300 bytes",
        ),
        case(
            "cursor of 300 bytes in the query",
            format!("/events?lastEventId={long}"),
            None,
            "300 bytes",
        ),
        case(
            "LF in the query cursor",
            "/events?lastEventId=abc%0Adef".into(),
            None,
            "0x0a",
        ),
        case(
            "CR in the query cursor",
            "/events?lastEventId=abc%0Ddef".into(),
            None,
            "0x0d",
        ),
        case(
            "CRLF in the query cursor",
            "/events?lastEventId=%0D%0A".into(),
            None,
            "0x0d",
        ),
        case(
            "non-ASCII bytes in the header",
            "/events".into(),
            Some(b"caf\xc3\xa9"),
            "0xc3",
        ),
        case(
            "non-ASCII bytes in the query",
            "/events?lastEventId=caf%C3%A9".into(),
            None,
            "0xc3",
        ),
        case(
            "broken percent-encoding",
            "/events?lastEventId=ab%zz".into(),
            None,
            "percent-encoding",
        ),
        case(
            "unknown cursor format in the header",
            "/events".into(),
            Some(b"hello"),
            "not issued by this server",
        ),
        case(
            "unknown cursor format in the query",
            "/events?lastEventId=hello".into(),
            None,
            "not issued by this server",
        ),
        case(
            "cursor ahead of the log",
            "/events".into(),
            Some(future.as_bytes()),
            "ahead",
        ),
        case("negative timeout", "/events?timeout=-1".into(), None, "timeout"),
        case(
            "non-numeric timeout",
            "/events?timeout=abc".into(),
            None,
            "timeout",
        ),
        case("empty timeout", "/events?timeout=".into(), None, "timeout"),
        BadRequest {
            name: "two Last-Event-ID headers",
            path: "/events".into(),
            headers: vec![
                ("last-event-id", b"a-1".to_vec()),
                ("last-event-id", b"b-2".to_vec()),
            ],
            reason: "more than one",
        },
    ]
}

/// Sends every malformed request (as SSE when `sse`, else as a long poll) and checks the
/// `400` answer: plain text, with the reason.
pub async fn assert_malformed_requests_refused(addr: SocketAddr, log: &MemoryLog, sse: bool) {
    for case in malformed_requests(log) {
        let mut headers: Vec<(&str, &[u8])> = case
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_slice()))
            .collect();
        if sse {
            headers.push(("accept", b"text/event-stream"));
        }
        let answer = request(addr, Method::GET, &case.path, &headers, Bytes::new()).await;
        let body = String::from_utf8_lossy(&answer.body);
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{}: got {} {body:?}",
            case.name,
            answer.status
        );
        assert_eq!(
            answer.header("content-type"),
            Some("text/plain; charset=utf-8"),
            "{}: content type",
            case.name
        );
        assert!(
            body.contains(case.reason),
            "{}: the reason {body:?} does not mention {:?}",
            case.name,
            case.reason
        );
    }
    assert_eq!(
        log.subscriber_count(),
        0,
        "a refused request holds no subscription"
    );
}

/// A `POST` and a `PUT` on the events route get `405` with `Allow`.
pub async fn assert_other_methods_refused(addr: SocketAddr, sse: bool) {
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let headers: Vec<(&str, &[u8])> = if sse {
            vec![("accept", b"text/event-stream")]
        } else {
            Vec::new()
        };
        let answer = request(
            addr,
            method.clone(),
            "/events",
            &headers,
            Bytes::from_static(b"x"),
        )
        .await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        let allow = answer
            .header("allow")
            .unwrap_or_else(|| panic!("{method}: no Allow header"));
        let allowed: Vec<&str> = allow.split(',').map(str::trim).collect();
        assert!(allowed.contains(&"GET"), "{method}: Allow is {allow:?}");
        assert!(!answer.body.is_empty(), "{method}: a reason is given");
    }
}
