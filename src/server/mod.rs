//! A lean HTTP/1.1 server for event streams (feature `server`).
//!
//! hyper keeps two buffers of 8 KiB (a read and a write buffer) for the whole life of every
//! HTTP/1 connection, so an idle SSE stream served by `axum::serve` or hyper's connection
//! builders costs about 12–21 KiB of memory, almost all of it those buffers. [`Server`]
//! answers body-less `GET` and `HEAD` requests itself, writing each frame of the response
//! body straight to the socket and keeping no buffer while a stream waits for its next
//! event: an idle stream costs its task, its socket and the body's own state (about 2 KiB
//! in all with [`MemoryLog`](crate::MemoryLog)). Every other connection, from the first
//! request that is not such a `GET` or `HEAD` (a `POST` with a body, a WebSocket upgrade,
//! HTTP/2), is handed with the bytes read so far to hyper, which serves it to the end.
//!
//! The service is any tower service of `Request<`[`RequestBody`]`>`, as an axum `Router`
//! is.
//!
//! # Example
//!
//! ```
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use tower_eventstream::server::Server;
//! use tower_eventstream::{Event, EventLogService, MemoryLog, Shutdown, StreamConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let log = MemoryLog::new();
//! let shutdown = Shutdown::new();
//! let events = EventLogService::new(log.clone())
//!     .with_config(StreamConfig::default().shutdown(shutdown.clone()));
//! let app = axum::Router::new().route_service("/events", events);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(Server::new(app).serve_with_shutdown(listener, async move {
//!     let _ = stopped.await;
//!     shutdown.trigger(); // open streams end, so the server can finish
//! }));
//!
//! // A short poll from the start of the log, over a plain socket.
//! log.push(Event::new("hello")).unwrap();
//! let mut client = tokio::net::TcpStream::connect(addr).await?;
//! let request = format!(
//!     "GET /events?timeout=0&lastEventId={}-0 HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n",
//!     log.epoch()
//! );
//! client.write_all(request.as_bytes()).await?;
//! let mut answer = String::new();
//! client.read_to_string(&mut answer).await?;
//! assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"));
//! assert!(answer.contains(r#""data":"hello""#));
//!
//! let _ = stop.send(());
//! server.await.expect("the server stops");
//! # Ok(())
//! # }
//! ```
//!
//! # Scope and threat model
//!
//! [`Server`] parses request heads itself, so it is a second HTTP/1.1 parser on the
//! connection besides hyper's. This section says exactly what each of them handles, and why
//! the two cannot disagree on where one request ends and the next begins (the root of
//! request smuggling). The rules are those of RFC 9112.
//!
//! ## What the lean path answers itself
//!
//! A request is answered by the lean path only if all of these hold; anything else is handed
//! to hyper (next section) or refused:
//!
//! - the method is exactly `GET` or `HEAD` (methods are case-sensitive: `get` goes to hyper);
//! - the version is `HTTP/1.1` or `HTTP/1.0`;
//! - it carries no `Transfer-Encoding` header (whatever its value, even empty), and every
//!   `Content-Length` header, if any, is exactly `0`: so it has no body under any reading of
//!   its framing;
//! - it carries no `Upgrade` header and no `Expect` header;
//! - the whole head, request line to blank line, is within
//!   [`max_head_size`](Server::max_head_size) bytes ([`DEFAULT_MAX_HEAD_SIZE`], 16 KiB, by
//!   default), has at most 100 header lines, and arrives within
//!   [`header_read_timeout`](Server::header_read_timeout) ([`DEFAULT_HEADER_READ_TIMEOUT`]);
//! - the head is well-formed as `httparse` (the parser hyper uses, in the same strict default
//!   configuration hyper uses for requests) reads it: lines end in CRLF or a bare LF (a bare
//!   CR is an error), empty lines before the request line are skipped, a header name is a
//!   token with no whitespace before its colon, a value has no control character but
//!   horizontal tab (no NUL, CR or DEL; bytes 0x80–0xFF are allowed) and loses its leading
//!   and trailing whitespace, an obsolete line folding is an error; and the request target is
//!   one `http::Uri` parses (origin form, absolute form, authority form or `*`).
//!
//! The service gets the method, target, version and headers as sent (every header line;
//! names lowercased, the values of a repeated name in order) and an empty [`RequestBody`].
//! The connection stays open after the response for HTTP/1.1 unless a `Connection` header
//! has the `close` token; an HTTP/1.0 connection is closed after its first response, even
//! with `Connection: keep-alive`. Nothing else is checked: `Host` may be missing or
//! repeated, and an absolute-form target need not agree with it (hyper checks neither).
//!
//! A head too large or with too many header lines is refused with `431`, one `httparse`
//! rejects with `400`, whatever its method; so is a `GET` or `HEAD` whose target `http::Uri`
//! or whose header names or values `http` rejects. The connection is then closed, never
//! resynchronised. A client too slow to send its head, or idle between requests for longer
//! than the header read timeout, is disconnected without an answer.
//!
//! ## What goes to hyper, and why
//!
//! From the first head that `httparse` reads whole but that the lean path does not answer,
//! the connection is hyper's (`hyper-util`'s automatic HTTP/1 and HTTP/2 builder, with
//! upgrades) until it closes; the lean path never sees it again. So is a connection whose
//! very first bytes are the HTTP/2 connection preface (`PRI * HTTP/2.0`, HTTP/2 with prior
//! knowledge); after a request, that line is an HTTP/1 request line with a version
//! `httparse` does not know, refused with `400`, so a connection never turns into HTTP/2
//! midway. That covers:
//!
//! - requests that may have a body (any method but `GET` and `HEAD`, or a `GET` or `HEAD`
//!   with a `Transfer-Encoding` header or a `Content-Length` that is not exactly `0`):
//!   reading a body (chunked decoding, flow control, draining or discarding what the service
//!   leaves) is hyper's well-tested work, and event servers only see bodies on the
//!   publishers' `POST`s;
//! - `Expect` (`100 Continue`) and `Upgrade` (WebSocket, `CONNECT` and the like), which
//!   need hyper's interim responses and upgrade machinery;
//! - HTTP/2, which needs `h2`.
//!
//! hyper serves them with the same header read timeout, at most 100 header lines, and a read
//! buffer of `max_head_size` or 8 KiB (hyper's minimum), whichever is larger: with a
//! `max_head_size` under 8 KiB, the heads hyper reads after the hand-over may be up to
//! 8 KiB.
//!
//! ## Why requests cannot be smuggled past it
//!
//! - **Where a lean request ends is not in doubt.** The lean path only answers requests with
//!   no `Transfer-Encoding` and no `Content-Length` but `0`, whose body is empty by every
//!   rule of RFC 9112 (section 6.3): the request ends with its head, and any proxy in front
//!   that parsed the same head agrees. The lean path never reads a body, so it never has to
//!   choose between conflicting framings.
//! - **Every other framing is judged by hyper alone.** A request with
//!   `Transfer-Encoding` and `Content-Length` both, a `Content-Length` other than exactly
//!   `0` (`5`, but also `0, 0`, `+0` or `00`), or `Transfer-Encoding` on HTTP/1.0 is
//!   handed over before the lean path reads a byte of its body, and hyper applies RFC 9112:
//!   a `Transfer-Encoding` whose last coding is not `chunked`, `Transfer-Encoding` on
//!   HTTP/1.0, and a `Content-Length` that is not a plain number (`0, 0` included) or
//!   differs from another are answered `400`; with both headers, `chunked` wins and the
//!   connection is closed after the response.
//! - **One parser, one reading.** The lean path and hyper both read heads with `httparse` in
//!   its strict default configuration, so they agree on where a head ends and what it says;
//!   header names are matched case-insensitively, so `transfer-encoding` is seen whatever
//!   its case; a head with whitespace before a colon or an obsolete line folding, tricks
//!   that make proxies and servers read headers differently, is refused rather than
//!   interpreted.
//! - **Nothing is lost or re-read at the hand-over.** Every byte read from the socket and not
//!   yet consumed (the head that caused the hand-over, any part of its body, requests
//!   pipelined behind it) is given to hyper, in order, ahead of the rest of the socket. The
//!   lean path has consumed only whole heads of requests it answered, each ending where its
//!   body-less framing says.
//! - **Pipelined bytes wait their turn.** While a response streams, bytes the client sends
//!   are kept, unparsed, up to `max_head_size`; past that the socket is not read, so TCP
//!   holds the client back. They are parsed as the next request only after the response is
//!   complete and only if the connection stays open (HTTP/1.1, no `Connection: close`, no
//!   shutdown); otherwise they are dropped with the connection. A pipelined head is held to
//!   the same size limit as any other.
//! - **Responses are framed by the server.** The service's own `Transfer-Encoding` and
//!   `Connection` headers are dropped, and so is its `Content-Length` when a body follows:
//!   the lean path writes the framing (`Content-Length` when the body's length is known,
//!   chunked otherwise, or closing the connection for HTTP/1.0; none after a `HEAD`, `1xx`,
//!   `204` or `304`). A body that ends before, or runs past, its declared length closes the
//!   connection, so a client never takes the rest of one response for the next.
//!
//! ## What it does not do
//!
//! It sends no `100 Continue` of its own (requests with `Expect` go to hyper), keeps
//! HTTP/1.0 connections open for one request only, and ends a response body delimited by
//! closing the connection only for HTTP/1.0 clients. Request extensions carry nothing from
//! the connection (axum's `ConnectInfo` is not set).

mod body;
mod connection;
mod head;
mod io;
mod response;

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower_service::Service;

pub use body::RequestBody;

use crate::BoxError;

/// A tower service [`Server`] can run: every `Clone + Send` service of
/// `Request<`[`RequestBody`]`>` whose future is `Send` and whose error converts into a
/// [`BoxError`] (an axum `Router` is one). Implemented for all such services.
pub trait HttpService<B>:
    Service<Request<RequestBody>, Response = Response<B>, Future: Send + 'static, Error: Into<BoxError>>
    + Clone
    + Send
    + 'static
{
}

impl<S, B> HttpService<B> for S where
    S: Service<Request<RequestBody>, Response = Response<B>, Future: Send + 'static, Error: Into<BoxError>>
        + Clone
        + Send
        + 'static
{
}

/// A response body [`Server`] can write: `Send`, with `Send` data and an error that
/// converts into a [`BoxError`]. Implemented for all such bodies.
pub trait ResponseBody: Body<Data: Send, Error: Into<BoxError>> + Send + 'static {}

impl<B> ResponseBody for B where B: Body<Data: Send, Error: Into<BoxError>> + Send + 'static {}

/// The longest a client may take to send a request head, and the longest a kept-alive
/// connection may stay idle between requests.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest request head accepted; a larger one is answered 431.
pub const DEFAULT_MAX_HEAD_SIZE: usize = 16 * 1024;

/// hyper refuses a read buffer smaller than this (its own minimum, 8 KiB).
const HYPER_MIN_BUF_SIZE: usize = 8192;
/// How long to wait before accepting again after the process ran out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves a tower service over TCP, HTTP/1.1 for event streams and long polls without a
/// per-connection buffer, hyper for everything else. See the [module](self) docs.
#[derive(Clone)]
pub struct Server<S> {
    service: S,
    shared: Arc<Shared>,
    tcp_nodelay: bool,
}

/// What every connection task shares.
#[derive(Clone)]
struct Shared {
    header_read_timeout: Duration,
    max_head_size: usize,
    hyper: hyper_util::server::conn::auto::Builder<TokioExecutor>,
}

impl Shared {
    fn new(header_read_timeout: Duration, max_head_size: usize) -> Self {
        let mut hyper = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        hyper
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .max_buf_size(max_head_size.max(HYPER_MIN_BUF_SIZE));
        hyper.http2().timer(TokioTimer::new());
        Shared {
            header_read_timeout,
            max_head_size,
            hyper,
        }
    }
}

impl<S> Server<S> {
    /// A server for `service`, with [`DEFAULT_HEADER_READ_TIMEOUT`],
    /// [`DEFAULT_MAX_HEAD_SIZE`] and `TCP_NODELAY` on.
    pub fn new(service: S) -> Self {
        Server {
            service,
            shared: Arc::new(Shared::new(DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_HEAD_SIZE)),
            tcp_nodelay: true,
        }
    }

    /// The longest a client may take to send a request head, or stay silent between
    /// requests on a kept-alive connection, before the connection is closed.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.shared = Arc::new(Shared::new(timeout, self.shared.max_head_size));
        self
    }

    /// The largest request head accepted (at least 1 KiB); larger heads are answered 431
    /// and the connection closed. On a connection handed to hyper, hyper's own limit
    /// applies to the heads after the first: this size or 8 KiB, whichever is larger.
    pub fn max_head_size(mut self, bytes: usize) -> Self {
        self.shared = Arc::new(Shared::new(self.shared.header_read_timeout, bytes.max(1024)));
        self
    }

    /// Whether accepted sockets get `TCP_NODELAY`, so that a small event is sent at once
    /// rather than held back by Nagle's algorithm (on by default).
    pub fn tcp_nodelay(mut self, nodelay: bool) -> Self {
        self.tcp_nodelay = nodelay;
        self
    }

    /// Serves connections from `listener` until this future is dropped.
    pub async fn serve<B>(self, listener: TcpListener)
    where
        S: HttpService<B>,
        B: ResponseBody,
    {
        self.serve_with_shutdown(listener, std::future::pending()).await
    }

    /// Serves connections from `listener` until `signal` completes, then stops accepting,
    /// closes connections waiting between requests, lets every response in progress finish
    /// (pair it with [`Shutdown`](crate::Shutdown) so event streams finish too), and
    /// returns when every connection is closed.
    pub async fn serve_with_shutdown<B, F>(self, listener: TcpListener, signal: F)
    where
        S: HttpService<B>,
        B: ResponseBody,
        F: Future<Output = ()>,
    {
        let (shutdown, shutdown_receiver) = watch::channel(false);
        let mut signal = pin!(signal);
        loop {
            let accepted = poll_fn(|cx| {
                if signal.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                listener.poll_accept(cx).map(Some)
            })
            .await;
            let stream = match accepted {
                None => break,
                Some(Ok((stream, _))) => stream,
                Some(Err(error)) => {
                    if !is_connection_error(&error) {
                        // Out of file descriptors, most likely: give closing connections a
                        // moment rather than spinning on the listener.
                        crate::trace::warn_event!("accepting a connection failed", error = %error);
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            };
            tokio::spawn(self.connection(stream, shutdown_receiver.clone()));
        }
        drop(listener);
        drop(shutdown_receiver);
        shutdown.send_replace(true);
        shutdown.closed().await;
    }

    /// Serves one accepted connection until it closes, for accept loops of your own (to
    /// limit or count connections, say). It is not told of any shutdown: end it by
    /// dropping it, or let it end with its last response.
    ///
    /// ```no_run
    /// use tower_eventstream::server::Server;
    /// use tower_eventstream::{EventLogService, MemoryLog};
    ///
    /// # async fn run() -> std::io::Result<()> {
    /// let server = Server::new(EventLogService::new(MemoryLog::new()));
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// let connections = std::sync::Arc::new(tokio::sync::Semaphore::new(50_000));
    /// loop {
    ///     let permit = connections.clone().acquire_owned().await.expect("never closed");
    ///     let (stream, _) = listener.accept().await?;
    ///     let connection = server.serve_connection(stream);
    ///     tokio::spawn(async move {
    ///         connection.await;
    ///         drop(permit);
    ///     });
    /// }
    /// # }
    /// ```
    pub fn serve_connection<B>(&self, stream: TcpStream) -> impl Future<Output = ()> + Send + 'static
    where
        S: HttpService<B>,
        B: ResponseBody,
    {
        // A receiver whose sender is gone: never shut down.
        let (_, never) = watch::channel(false);
        self.connection(stream, never)
    }

    fn connection<B>(
        &self,
        stream: TcpStream,
        shutdown: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        S: HttpService<B>,
        B: ResponseBody,
    {
        if self.tcp_nodelay {
            let _ = stream.set_nodelay(true);
        }
        connection::serve(stream, self.service.clone(), Arc::clone(&self.shared), shutdown)
    }
}

/// Errors of one connection attempt, after which the listener is still fine.
fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

impl<S> fmt::Debug for Server<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("header_read_timeout", &self.shared.header_read_timeout)
            .field("max_head_size", &self.shared.max_head_size)
            .field("tcp_nodelay", &self.tcp_nodelay)
            .finish_non_exhaustive()
    }
}
