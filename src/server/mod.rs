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
//! log.push(Event::new("hello"));
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
//! # What it does not do
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
            .max_buf_size(max_head_size.max(8192));
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
    /// and the connection closed.
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
                        #[cfg(feature = "tracing")]
                        tracing::warn!(%error, "accepting a connection failed");
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
