//! Helpers for the fault, soak and real-client tests (`bad_input`, `soak`, `slow_consumer`,
//! `nginx`, `browser`): servers on 127.0.0.1 whose connections a test can cut, a raw HTTP/1.1
//! client over `TcpStream` (so malformed requests can be sent byte for byte), an incremental
//! chunked decoder and SSE parser, and the process's resident set size.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

pub mod browser;
#[cfg(feature = "redis")]
pub mod redis;
pub mod seen;

/// The longest any single wait in these tests may take before the test fails.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test (instead of hanging) after `limit`.
pub async fn within_for<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Awaits `future`, failing the test after [`LIMIT`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    within_for(LIMIT, what, future).await
}

/// Polls `condition` every few milliseconds until it holds, failing after `limit`.
pub async fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------

/// Whether this suite runs on the crate's own [`tower_eventstream::server::Server`]:
/// `tests/crate_server.rs` compiles the bad-input and browser suites a second time as its
/// modules, and there [`AxumServer`] and [`TestServer`] serve with that server instead of
/// hyper.
pub fn on_crate_server() -> bool {
    module_path!().starts_with("crate_server::")
}

/// `axum::serve` on 127.0.0.1 (a free port), exactly as the chat example's `main` serves.
/// Dropping the handle aborts the accept loop (open connections end with their tasks).
pub struct AxumServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl AxumServer {
    /// Starts serving `router` on the current runtime.
    pub async fn start(router: Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            #[cfg(feature = "server")]
            if on_crate_server() {
                return tower_eventstream::server::Server::new(router)
                    .serve(listener)
                    .await;
            }
            let _ = axum::serve(listener, router).await;
        });
        AxumServer { addr, task }
    }
}

impl Drop for AxumServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A server whose router can be swapped (a "restart" with new state on the same port) and
/// whose open connections can be cut at once (a crash or network failure, seen by clients
/// as a connection closed mid-response).
pub struct TestServer {
    pub addr: SocketAddr,
    shared: Arc<ServerShared>,
    accept: JoinHandle<()>,
}

struct ServerShared {
    router: Mutex<Router>,
    connections: Mutex<HashMap<u64, AbortHandle>>,
    next_connection: AtomicU64,
    accepted: AtomicU64,
}

/// Removes a connection from the table when its task ends or is aborted.
struct Registered {
    shared: Arc<ServerShared>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

impl TestServer {
    /// Starts serving `router` (HTTP/1.1 and HTTP/2 prior knowledge) on the current runtime.
    pub async fn start(router: Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(ServerShared {
            router: Mutex::new(router),
            connections: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        TestServer { addr, shared, accept }
    }

    /// New connections are served by `router` from now on; open ones keep the old one.
    pub fn swap(&self, router: Router) {
        *self.shared.router.lock().unwrap_or_else(|e| e.into_inner()) = router;
    }

    /// Drops every open connection without a proper end of response; returns how many.
    pub fn cut(&self) -> usize {
        let handles: Vec<AbortHandle> = self
            .shared
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, handle)| handle)
            .collect();
        for handle in &handles {
            handle.abort();
        }
        handles.len()
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.shared
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<ServerShared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let router = shared.router.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
        // Hold the table lock while spawning so the task cannot unregister before it is registered.
        let mut table = shared.connections.lock().unwrap_or_else(|e| e.into_inner());
        let registered = Registered {
            shared: Arc::clone(&shared),
            id,
        };
        let task = tokio::spawn(async move {
            let _registered = registered;
            let _ = stream.set_nodelay(true);
            #[cfg(feature = "server")]
            if on_crate_server() {
                return tower_eventstream::server::Server::new(router)
                    .serve_connection(stream)
                    .await;
            }
            let service = TowerToHyperService::new(router);
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
        table.insert(id, task.abort_handle());
    }
}

// ---------------------------------------------------------------------------------------
// Raw HTTP/1.1 client
// ---------------------------------------------------------------------------------------

/// A response read off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lower-cased, in wire order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }
}

/// A parsed response head.
#[derive(Debug, Clone)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    fn content_length(&self) -> Option<usize> {
        self.header("content-length").and_then(|v| v.trim().parse().ok())
    }
}

/// Reads a response head from `stream`; `leftover` receives the bytes read past it.
pub async fn read_head(stream: &mut TcpStream, leftover: &mut Vec<u8>) -> std::io::Result<Head> {
    let mut buf = std::mem::take(leftover);
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            leftover.extend_from_slice(&buf[end + 4..]);
            let mut lines = head.split("\r\n");
            let status_line = lines.next().unwrap_or_default();
            let status = status_line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
            let headers = lines
                .filter_map(|line| line.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            return Ok(Head { status, headers });
        }
        if buf.len() > 64 * 1024 {
            return Err(std::io::Error::other("response head too large"));
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed before the response head ({} bytes read)",
                    buf.len()
                ),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends `request` as is and reads one complete response (content-length, chunked, or up to
/// EOF), failing after [`LIMIT`].
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> RawResponse {
    within("a raw HTTP exchange", async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request).await.expect("write request");
        read_response(&mut stream).await.expect("read response")
    })
    .await
}

/// Reads one complete response off `stream`.
pub async fn read_response(stream: &mut TcpStream) -> std::io::Result<RawResponse> {
    let mut leftover = Vec::new();
    let head = read_head(stream, &mut leftover).await?;
    let body = if head.status == 204 || head.status == 304 || (100..200).contains(&head.status) {
        Vec::new()
    } else if head.chunked() {
        let mut decoder = Chunked::default();
        let mut body = decoder.feed(&leftover);
        while !decoder.done {
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed inside a chunked body",
                ));
            }
            body.extend(decoder.feed(&chunk[..n]));
        }
        body
    } else if let Some(length) = head.content_length() {
        let mut body = leftover;
        while body.len() < length {
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(length);
        body
    } else {
        let mut body = leftover;
        stream.read_to_end(&mut body).await?;
        body
    };
    Ok(RawResponse {
        status: head.status,
        headers: head.headers,
        body,
    })
}

/// A `HEAD` response has headers only: reads the head and checks that nothing follows.
pub async fn exchange_head_only(addr: SocketAddr, request: &[u8]) -> (Head, Vec<u8>) {
    within("a HEAD exchange", async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request).await.expect("write request");
        let mut leftover = Vec::new();
        let head = read_head(&mut stream, &mut leftover).await.expect("read head");
        // `Connection: close` was sent: whatever comes before EOF would be a (wrong) body.
        let mut rest = leftover;
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;
        (head, rest)
    })
    .await
}

/// `GET path` with `Connection: close` and extra raw header lines.
pub fn get_request(path: &str, extra_headers: &[(&str, &[u8])]) -> Vec<u8> {
    request_bytes("GET", path, extra_headers, b"")
}

/// A request with `Connection: close`, a `Content-Length` when there is a body, and
/// `extra_headers` written byte for byte.
pub fn request_bytes(method: &str, path: &str, extra_headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut out =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n").into_bytes();
    for (name, value) in extra_headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// `POST /api/messages` of the chat app.
pub async fn post_message(addr: SocketAddr, body: &[u8]) -> RawResponse {
    exchange(
        addr,
        &request_bytes(
            "POST",
            "/api/messages",
            &[("Content-Type", b"text/plain; charset=utf-8")],
            body,
        ),
    )
    .await
}

/// A short poll (`timeout=0`) of `path_and_query`, answered with JSON.
pub async fn short_poll(addr: SocketAddr, path_and_query: &str) -> serde_json::Value {
    let response = exchange(
        addr,
        &get_request(path_and_query, &[("Accept", b"application/json")]),
    )
    .await;
    assert_eq!(response.status, 200, "{path_and_query}: {}", response.text());
    response.json()
}

// ---------------------------------------------------------------------------------------
// Chunked transfer decoding and SSE parsing, incremental
// ---------------------------------------------------------------------------------------

/// An incremental `Transfer-Encoding: chunked` decoder.
#[derive(Debug, Default)]
pub struct Chunked {
    buf: Vec<u8>,
    /// Bytes of the current chunk still to come.
    remaining: usize,
    /// The CRLF after a chunk's data is still to be skipped.
    trailer: bool,
    pub done: bool,
}

impl Chunked {
    /// Feeds wire bytes, returns the body bytes they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            if self.done {
                return out;
            }
            if self.remaining > 0 {
                let take = self.remaining.min(self.buf.len());
                out.extend(self.buf.drain(..take));
                self.remaining -= take;
                if self.remaining > 0 {
                    return out;
                }
                self.trailer = true;
            }
            if self.trailer {
                if self.buf.len() < 2 {
                    return out;
                }
                assert_eq!(&self.buf[..2], b"\r\n", "chunk not followed by CRLF");
                self.buf.drain(..2);
                self.trailer = false;
            }
            let Some(line_end) = find(&self.buf, b"\r\n") else {
                return out;
            };
            let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
            self.buf.drain(..line_end + 2);
            if size == 0 {
                self.done = true;
                return out;
            }
            self.remaining = size;
        }
    }
}

/// One dispatched SSE block: the fields between two blank lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseBlock {
    pub id: Option<String>,
    pub event: Option<String>,
    /// `None` when the block has no `data:` line (a client dispatches nothing for it).
    pub data: Option<String>,
    pub retry: Option<u64>,
}

impl SseBlock {
    /// The type a browser dispatches it as.
    pub fn event_type(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }
}

/// What an SSE stream carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// A `:` comment line (a keep-alive is an empty one).
    Comment(String),
    /// A block ended by a blank line.
    Block(SseBlock),
}

/// An incremental SSE line parser following the WHATWG rules (CRLF, LF or CR end a line;
/// one space after the colon is dropped; a blank line dispatches).
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    block: SseBlock,
    any_field: bool,
    /// A CR ended the previous line: an LF right after it belongs to that line break.
    after_cr: bool,
}

impl SseParser {
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseItem> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while let Some(&first) = rest.first() {
            if self.after_cr {
                self.after_cr = false;
                if first == b'\n' {
                    rest = &rest[1..];
                    continue;
                }
            }
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(at) => {
                    self.buf.extend_from_slice(&rest[..at]);
                    self.after_cr = rest[at] == b'\r';
                    let line = std::mem::take(&mut self.buf);
                    self.line(&line, &mut out);
                    rest = &rest[at + 1..];
                }
                None => {
                    self.buf.extend_from_slice(rest);
                    break;
                }
            }
        }
        out
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<SseItem>) {
        let line = String::from_utf8_lossy(line);
        if line.is_empty() {
            if self.any_field {
                out.push(SseItem::Block(std::mem::take(&mut self.block)));
                self.any_field = false;
            }
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            out.push(SseItem::Comment(
                comment.strip_prefix(' ').unwrap_or(comment).to_owned(),
            ));
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*line, ""),
        };
        self.any_field = true;
        match field {
            "id" => self.block.id = Some(value.to_owned()),
            "event" => self.block.event = Some(value.to_owned()),
            "data" => match &mut self.block.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.block.data = Some(value.to_owned()),
            },
            "retry" => self.block.retry = value.parse().ok(),
            _ => {}
        }
    }
}

/// An SSE stream read over a plain `TcpStream` (HTTP/1.1, chunked), item by item.
pub struct SseConnection {
    pub stream: TcpStream,
    pub head: Head,
    decoder: Chunked,
    parser: SseParser,
    pending: std::collections::VecDeque<SseItem>,
    /// Raw body bytes received so far.
    pub received: usize,
    pub ended: bool,
}

impl SseConnection {
    /// Opens `GET path_and_query` with `Accept: text/event-stream` and reads the head.
    pub async fn open(addr: SocketAddr, path_and_query: &str, last_event_id: Option<&str>) -> Self {
        let stream = within("connecting", TcpStream::connect(addr))
            .await
            .expect("connect");
        Self::open_on(stream, path_and_query, last_event_id).await
    }

    /// Like [`open`](Self::open) over an already connected stream (e.g. with socket options set).
    pub async fn open_on(stream: TcpStream, path_and_query: &str, last_event_id: Option<&str>) -> Self {
        let mut request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n"
        );
        if let Some(id) = last_event_id {
            request.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        request.push_str("\r\n");
        Self::send_raw(stream, request.as_bytes()).await
    }

    /// Writes `request` byte for byte and reads the head, which must be `200`.
    pub async fn send_raw(mut stream: TcpStream, request: &[u8]) -> Self {
        within("sending an SSE request", stream.write_all(request))
            .await
            .expect("write request");
        let mut leftover = Vec::new();
        let head = within("an SSE response head", read_head(&mut stream, &mut leftover))
            .await
            .expect("read head");
        assert_eq!(
            head.status,
            200,
            "SSE request {:?} refused: {head:?}",
            String::from_utf8_lossy(&request[..request.len().min(200)])
        );
        let mut connection = SseConnection {
            stream,
            head,
            decoder: Chunked::default(),
            parser: SseParser::default(),
            pending: Default::default(),
            received: 0,
            ended: false,
        };
        connection.absorb(&leftover);
        connection
    }

    fn absorb(&mut self, wire: &[u8]) {
        let body = if self.head.chunked() {
            self.decoder.feed(wire)
        } else {
            wire.to_vec()
        };
        self.received += body.len();
        self.pending.extend(self.parser.feed(&body));
        if self.decoder.done {
            self.ended = true;
        }
    }

    /// The next item, `None` at the end of the stream; fails after `limit`.
    pub async fn next_within(&mut self, limit: Duration) -> Option<SseItem> {
        within_for(limit, "the next SSE item", self.next()).await
    }

    /// The next item, `None` at the end of the stream (no time limit: wrap it).
    pub async fn next(&mut self) -> Option<SseItem> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.ended {
                return None;
            }
            let mut chunk = vec![0u8; 16 * 1024];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    self.ended = true;
                    return None;
                }
                Ok(n) => self.absorb(&chunk[..n]),
            }
        }
    }

    /// Reads once, at most `max` bytes off the socket; the items they complete are queued
    /// (see [`drain_pending`](Self::drain_pending)). Returns the bytes read, 0 at the end.
    pub async fn read_some(&mut self, max: usize) -> usize {
        if self.ended {
            return 0;
        }
        let mut chunk = vec![0u8; max];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                self.ended = true;
                0
            }
            Ok(n) => {
                self.absorb(&chunk[..n]);
                n
            }
        }
    }

    /// The next block that a client dispatches (has data), skipping comments and the opening
    /// checkpoint, which moves the cursor but is no application event.
    pub async fn next_event_within(&mut self, limit: Duration) -> SseBlock {
        within_for(limit, "the next SSE event", async {
            loop {
                match self.next().await {
                    Some(SseItem::Block(block))
                        if block.data.is_some() && block.event_type() != "checkpoint" =>
                    {
                        return block
                    }
                    Some(_) => {}
                    None => panic!("the SSE stream ended while an event was awaited"),
                }
            }
        })
        .await
    }

    /// Items already received and parsed, without reading more.
    pub fn drain_pending(&mut self) -> Vec<SseItem> {
        self.pending.drain(..).collect()
    }
}

// ---------------------------------------------------------------------------------------
// Process figures
// ---------------------------------------------------------------------------------------

/// This process's resident set size in bytes (`/proc/self/statm`, resident pages × 4 KiB).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let resident: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("statm resident field");
    resident * page_size()
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Writes a line to the process's stderr directly, so it shows even when the test harness
/// captures output (as it does for `eprintln!` in a passing test): figures to quote, skips.
pub fn report(line: &str) {
    use std::io::Write;
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}

/// Whether the tests run under CI (`CI` set and not `false`/`0`/empty).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "0" && value != "false")
}

/// A required external program or setup is missing: fails under CI, skips loudly otherwise.
/// Returns normally only when the test should skip.
pub fn missing_prerequisite(test: &str, what: &str) {
    let message = format!("{test}: {what}");
    if under_ci() {
        panic!("{message} (CI is set, so this is a failure, not a skip)");
    }
    let bar = "!".repeat(78);
    report(&format!(
        "\n{bar}\n!!! SKIPPED {message}\n!!! (set CI=1 to make this a failure)\n{bar}\n"
    ));
}
