//! Helpers for the integration tests of other stacks (`tower_http`, `http2`, `examples`):
//! a hyper-util server (HTTP/1.1 and h2c on one port, graceful shutdown) around any Tower
//! service, HTTP/1.1 and HTTP/2 clients over real TCP on 127.0.0.1, and a body reader.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyDataStream, BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::Service;
use tower_eventstream::{BoxError, Shutdown};

/// The longest a single step of a test may take before the test fails.
pub const LIMIT: Duration = Duration::from_secs(2);

/// Awaits `future`, failing the test after `limit` instead of hanging.
pub async fn within<T>(what: &str, limit: Duration, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Polls `condition` every few milliseconds until it holds, failing after [`LIMIT`].
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    within(what, LIMIT, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Server: hyper-util's auto builder (HTTP/1.1 and h2c), graceful shutdown
// ---------------------------------------------------------------------------------------

/// A running server. Dropping it aborts the server task.
pub struct Server {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Serves `service` on 127.0.0.1 (a free port). When [`Server::begin_shutdown`] is called,
/// the server stops accepting, triggers `shutdown` (if given) and waits for its connections.
pub async fn serve<S, B>(service: S, shutdown: Option<Shutdown>) -> Server
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let (stop, mut stopped) = oneshot::channel::<()>();
    let counter = Arc::clone(&accepted);
    let task = tokio::spawn(async move {
        let builder = auto::Builder::new(TokioExecutor::new());
        let graceful = GracefulShutdown::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, _) = accepted.expect("accept");
                    counter.fetch_add(1, Ordering::SeqCst);
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service.clone()));
                    let connection = graceful.watch(connection.into_owned());
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                }
                _ = &mut stopped => break,
            }
        }
        drop(listener);
        if let Some(shutdown) = shutdown {
            shutdown.trigger();
        }
        graceful.shutdown().await;
    });
    Server {
        addr,
        accepted,
        stop: Some(stop),
        task: Some(task),
    }
}

impl Server {
    /// How many TCP connections the server has accepted.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Stops accepting, triggers the `Shutdown` handle and starts the graceful shutdown.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits for the graceful shutdown to complete, failing after `limit`.
    pub async fn stopped_within(mut self, limit: Duration) {
        let task = self.task.take().expect("server task");
        within("the server's graceful shutdown", limit, task)
            .await
            .expect("server task panicked");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------

/// A request without a body: `GET` (or `method`) to `path_and_query` with `headers`.
pub fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<Empty<Bytes>> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Empty::new()).expect("a valid request")
}

/// The client side of a connection; dropping it closes the socket.
pub struct Connection(JoinHandle<()>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A response head with its body still to read.
pub struct Opened {
    pub status: StatusCode,
    pub version: hyper::Version,
    pub headers: HeaderMap,
    pub body: BodyReader,
}

impl Opened {
    fn from(response: Response<Incoming>) -> Self {
        let (parts, body) = response.into_parts();
        Opened {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body: BodyReader::new(body),
        }
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|value| value.to_str().expect("ASCII header"))
    }
}

/// Sends `request` over a new HTTP/1.1 connection to `addr`.
pub async fn http1(addr: SocketAddr, mut request: Request<Empty<Bytes>>) -> (Opened, Connection) {
    let stream = within("TCP connect", LIMIT, TcpStream::connect(addr))
        .await
        .expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    let connection = Connection(tokio::spawn(async move {
        let _ = connection.await;
    }));
    request
        .headers_mut()
        .insert(hyper::header::HOST, addr.to_string().parse().expect("host"));
    let response = within("the response head", LIMIT, sender.send_request(request))
        .await
        .expect("HTTP/1.1 request");
    (Opened::from(response), connection)
}

/// Sends a request over a new HTTP/1.1 connection and reads the whole body.
pub async fn http1_full(addr: SocketAddr, request: Request<Empty<Bytes>>) -> (Opened, Bytes) {
    let (mut opened, _connection) = http1(addr, request).await;
    let body = opened.body.collect().await;
    (opened, body)
}

/// One HTTP/2 connection (prior knowledge, h2c) carrying any number of requests.
#[derive(Clone)]
pub struct Http2 {
    addr: SocketAddr,
    sender: hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    _connection: Arc<Connection>,
}

impl Http2 {
    /// Opens one TCP connection to `addr` and speaks HTTP/2 on it.
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = within("TCP connect", LIMIT, TcpStream::connect(addr))
            .await
            .expect("connect");
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("HTTP/2 handshake");
        let connection = Connection(tokio::spawn(async move {
            let _ = connection.await;
        }));
        Http2 {
            addr,
            sender,
            _connection: Arc::new(connection),
        }
    }

    /// Sends a request on this connection; `path_and_query` is made absolute.
    pub async fn send(&self, method: &str, path_and_query: &str, headers: &[(&str, &str)]) -> Opened {
        let uri = format!("http://{}{path_and_query}", self.addr);
        let mut sender = self.sender.clone();
        within("the HTTP/2 connection to be ready", LIMIT, sender.ready())
            .await
            .expect("HTTP/2 connection open");
        let response = within(
            "the response head",
            LIMIT,
            sender.send_request(request(method, &uri, headers)),
        )
        .await
        .expect("HTTP/2 request");
        Opened::from(response)
    }
}

// ---------------------------------------------------------------------------------------
// Body reader
// ---------------------------------------------------------------------------------------

/// Reads a response body as it arrives.
pub struct BodyReader {
    body: BodyDataStream<Incoming>,
    pending: Vec<u8>,
}

impl BodyReader {
    fn new(body: Incoming) -> Self {
        BodyReader {
            body: body.into_data_stream(),
            pending: Vec::new(),
        }
    }

    /// The next chunk as it arrived: `None` at a clean end, a panic on error or after `limit`.
    pub async fn next_chunk(&mut self, limit: Duration) -> Option<Bytes> {
        if !self.pending.is_empty() {
            return Some(Bytes::from(std::mem::take(&mut self.pending)));
        }
        match within("the next body chunk", limit, self.body.next()).await {
            Some(Ok(chunk)) => Some(chunk),
            Some(Err(error)) => panic!("body failed: {error}"),
            None => None,
        }
    }

    /// The next chunk or error as it arrived (`None` at the end), failing after `limit`.
    pub async fn next_result(&mut self, limit: Duration) -> Option<Result<Bytes, hyper::Error>> {
        if !self.pending.is_empty() {
            return Some(Ok(Bytes::from(std::mem::take(&mut self.pending))));
        }
        within("the next body chunk", limit, self.body.next()).await
    }

    /// Like [`read_until`](Self::read_until), but `None` if `needle` has not arrived
    /// within `limit` (what was read meanwhile is kept).
    pub async fn try_read_until(&mut self, needle: &str, limit: Duration) -> Option<String> {
        let wanted = needle.as_bytes();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(at) = self.pending.windows(wanted.len()).position(|w| w == wanted) {
                let rest = self.pending.split_off(at + wanted.len());
                let got = std::mem::replace(&mut self.pending, rest);
                return Some(String::from_utf8(got).expect("UTF-8 body"));
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return None,
                Ok(Some(Ok(chunk))) => self.pending.extend_from_slice(&chunk),
                Ok(Some(Err(error))) => panic!("body failed before {needle:?}: {error}"),
                Ok(None) => panic!(
                    "body ended before {needle:?}; unread: {:?}",
                    String::from_utf8_lossy(&self.pending)
                ),
            }
        }
    }

    /// Reads until `needle` has arrived (within `limit`); returns everything up to and
    /// including it. Fails if the body ends first.
    pub async fn read_until(&mut self, needle: &str, limit: Duration) -> String {
        let wanted = needle.as_bytes();
        within(&format!("{needle:?} on the stream"), limit, async {
            loop {
                if let Some(at) = self.pending.windows(wanted.len()).position(|w| w == wanted) {
                    let rest = self.pending.split_off(at + wanted.len());
                    let got = std::mem::replace(&mut self.pending, rest);
                    return String::from_utf8(got).expect("UTF-8 body");
                }
                match self.body.next().await {
                    Some(Ok(chunk)) => self.pending.extend_from_slice(&chunk),
                    Some(Err(error)) => panic!("body failed before {needle:?}: {error}"),
                    None => panic!(
                        "body ended before {needle:?}; unread: {:?}",
                        String::from_utf8_lossy(&self.pending)
                    ),
                }
            }
        })
        .await
    }

    /// Reads to the end of the body, which must end cleanly (no error) within `limit`;
    /// returns the bytes that had not been read yet.
    pub async fn read_bytes_to_end(&mut self, limit: Duration) -> Vec<u8> {
        within("the end of the body", limit, async {
            while let Some(chunk) = self.body.next().await {
                match chunk {
                    Ok(chunk) => self.pending.extend_from_slice(&chunk),
                    Err(error) => panic!(
                        "body ended with an error: {error}; read: {:?}",
                        String::from_utf8_lossy(&self.pending)
                    ),
                }
            }
        })
        .await;
        std::mem::take(&mut self.pending)
    }

    /// Like [`read_bytes_to_end`](Self::read_bytes_to_end), as text.
    pub async fn read_to_end(&mut self, limit: Duration) -> String {
        String::from_utf8(self.read_bytes_to_end(limit).await).expect("UTF-8 body")
    }

    /// The whole (remaining) body.
    pub async fn collect(&mut self) -> Bytes {
        Bytes::from(self.read_bytes_to_end(LIMIT).await)
    }
}

/// The value of every `name:` line of an SSE block.
pub fn field_values(block: &str, name: &str) -> Vec<String> {
    let prefix = format!("{name}:");
    block
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.strip_prefix(' ').unwrap_or(value).to_owned())
        .collect()
}
