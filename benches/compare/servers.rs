//! The servers under test. Each runs in a process of its own (`compare --serve <kind> <port>`)
//! so that its memory and CPU time can be read from `/proc` apart from the load generator.

use std::convert::Infallible;
use std::io::{self, IoSlice, Read as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as AxumEvent, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::Router;
use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{broadcast, Notify};
use tokio::time::Instant;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::{Stream, StreamExt as _};
use tower_eventstream::{MemoryLog, StreamConfig};

/// The keep-alive interval of every server (the crate's default).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Events each server holds for late readers: more than the fan-out scenario publishes, so
/// that no subscriber is ever dropped for lagging.
pub const HISTORY: usize = 1024;
/// The longest a long poll is held.
const LONG_POLL_WAIT: Duration = Duration::from_secs(25);

/// Runs server `kind` on 127.0.0.1:`port` (0: any free port), prints `READY <port>` and
/// serves until the parent closes our stdin or kills us.
pub fn serve(kind: &str, port: u16) -> ! {
    // The parent holds our stdin open; when it goes away (even by a crash), so do we.
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = io::stdin().lock();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the server runtime");
    let result: io::Result<()> = runtime.block_on(async {
        let listener = listen(port)?;
        println!("READY {}", listener.local_addr()?.port());
        match kind {
            "crate" => crate_axum_serve(listener).await,
            "crate-h1" => crate_hyper_http1(listener).await,
            "crate-server" => crate_own_server(listener).await,
            "axum" => axum_sse(listener).await,
            "ceiling" => ceiling(listener).await,
            other => Err(io::Error::other(format!("unknown server kind {other}"))),
        }
    });
    eprintln!("server {kind} stopped: {result:?}");
    std::process::exit(1)
}

/// Every server listens with the same backlog (nginx is configured alike).
fn listen(port: u16) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    socket.listen(4096)
}

/// This crate as the README shows it: the chat example's router under `axum::serve`.
async fn crate_axum_serve(listener: TcpListener) -> io::Result<()> {
    let log = MemoryLog::builder().history(HISTORY).build();
    let app = crate::app::router(log, StreamConfig::default().keep_alive(KEEP_ALIVE));
    axum::serve(listener, app).await
}

/// The same router served by hyper's HTTP/1 connection builder directly, as a
/// performance-minded user would: no HTTP/2 detection in front of each connection, and
/// `TCP_NODELAY` so small frames are not held back by Nagle's algorithm.
async fn crate_hyper_http1(listener: TcpListener) -> io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let log = MemoryLog::builder().history(HISTORY).build();
    let app = crate::app::router(log, StreamConfig::default().keep_alive(KEEP_ALIVE));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new());
    let builder = Arc::new(builder);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let builder = Arc::clone(&builder);
        tokio::spawn(async move {
            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// The same router on this crate's own server (feature `server`): body-less `GET`s answered
/// without a buffer per connection, the publishers' `POST`s by hyper.
async fn crate_own_server(listener: TcpListener) -> io::Result<()> {
    let log = MemoryLog::builder().history(HISTORY).build();
    let app = crate::app::router(log, StreamConfig::default().keep_alive(KEEP_ALIVE));
    tower_eventstream::server::Server::new(app).serve(listener).await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// axum's own SSE over a broadcast channel: what an axum user writes today.
// ---------------------------------------------------------------------------------------

#[derive(Clone)]
struct Message {
    id: u64,
    text: Arc<str>,
}

#[derive(Clone)]
struct Broadcast {
    sender: broadcast::Sender<Message>,
    next_id: Arc<AtomicU64>,
}

async fn axum_sse(listener: TcpListener) -> io::Result<()> {
    let (sender, _) = broadcast::channel(HISTORY);
    let state = Broadcast {
        sender,
        next_id: Arc::new(AtomicU64::new(1)),
    };
    let app = Router::new()
        .route("/events", get(axum_subscribe))
        .route("/publish", post(axum_publish))
        .with_state(state);
    axum::serve(listener, app).await
}

async fn axum_subscribe(
    State(state): State<Broadcast>,
) -> Sse<impl Stream<Item = Result<AxumEvent, Infallible>>> {
    let events = BroadcastStream::new(state.sender.subscribe()).filter_map(|message| {
        // A lagging receiver skips what it missed, as most axum SSE code does.
        let message = message.ok()?;
        Some(Ok(AxumEvent::default()
            .event("message")
            .id(message.id.to_string())
            .data(&*message.text)))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

async fn axum_publish(State(state): State<Broadcast>, text: String) -> StatusCode {
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let _ = state.sender.send(Message {
        id,
        text: text.into(),
    });
    StatusCode::CREATED
}

// ---------------------------------------------------------------------------------------
// The ceiling: raw tokio, no HTTP framework, each event encoded once, batched writes.
// ---------------------------------------------------------------------------------------

struct Ceiling {
    /// Every event's SSE bytes, encoded once on publish (unbounded: runs are short).
    events: RwLock<Vec<Bytes>>,
    wake: Notify,
}

impl Ceiling {
    fn len(&self) -> usize {
        self.events.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Appends the events after `cursor` (at most `max`) to `out`; returns the new cursor.
    fn take(&self, cursor: usize, max: usize, out: &mut Vec<Bytes>) -> usize {
        let events = self.events.read().unwrap_or_else(|e| e.into_inner());
        let end = events.len().min(cursor + max);
        if end > cursor {
            out.extend_from_slice(&events[cursor..end]);
        }
        end.max(cursor)
    }
}

async fn ceiling(listener: TcpListener) -> io::Result<()> {
    let state = Arc::new(Ceiling {
        events: RwLock::new(Vec::with_capacity(4096)),
        wake: Notify::new(),
    });
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(ceiling_connection(stream, Arc::clone(&state)));
    }
}

struct Head {
    method_is_post: bool,
    path: String,
    content_length: usize,
}

/// Reads one request head (and leaves any body bytes in `buf`).
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Option<Head>> {
    loop {
        if let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let mut lines = head.split("\r\n");
            let mut request_line = lines.next().unwrap_or("").split(' ');
            let method_is_post = request_line.next() == Some("POST");
            let path = request_line.next().unwrap_or("/").to_owned();
            let content_length = lines
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse().ok())
                .unwrap_or(0);
            return Ok(Some(Head {
                method_is_post,
                path,
                content_length,
            }));
        }
        if buf.len() > 16 * 1024 {
            return Err(io::Error::other("request head too large"));
        }
        // Read into the heap buffer: a stack array would stay in every connection's future.
        buf.reserve(1024);
        if stream.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

async fn ceiling_connection(mut stream: TcpStream, state: Arc<Ceiling>) -> io::Result<()> {
    let mut buf = Vec::new();
    while let Some(head) = read_head(&mut stream, &mut buf).await? {
        if head.method_is_post {
            while buf.len() < head.content_length {
                buf.reserve(head.content_length - buf.len());
                if stream.read_buf(&mut buf).await? == 0 {
                    return Ok(());
                }
            }
            let body: Vec<u8> = buf.drain(..head.content_length).collect();
            ceiling_publish(&state, &body);
            stream
                .write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n")
                .await?;
        } else if let Some(query) = head.path.strip_prefix("/lp") {
            let after = query
                .split_once("after=")
                .and_then(|(_, n)| n.split('&').next()?.parse().ok())
                .unwrap_or_else(|| state.len());
            ceiling_long_poll(&mut stream, &state, after).await?;
        } else {
            // The request head is all an SSE subscriber sends: free its buffer.
            drop(buf);
            return ceiling_stream(stream, state).await;
        }
    }
    Ok(())
}

fn ceiling_publish(state: &Ceiling, body: &[u8]) {
    {
        let mut events = state.events.write().unwrap_or_else(|e| e.into_inner());
        let id = events.len() + 1;
        let mut event = BytesMut::with_capacity(40 + body.len());
        event.put_slice(b"id: ");
        event.put_slice(id.to_string().as_bytes());
        event.put_slice(b"\nevent: message\ndata: ");
        event.put_slice(body);
        event.put_slice(b"\n\n");
        events.push(event.freeze());
    }
    state.wake.notify_waiters();
}

/// Writes every slice, however the kernel splits the writes.
async fn write_all_vectored(stream: &mut TcpStream, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        let n = stream.write_vectored(slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

/// The head of an HTTP/1.1 chunk of `len` bytes (`<hex>\r\n`), without allocating.
fn chunk_head(len: usize, out: &mut [u8; 20]) -> &[u8] {
    let digits = (usize::BITS as usize / 4 - len.leading_zeros() as usize / 4).max(1);
    for i in 0..digits {
        out[digits - 1 - i] = b"0123456789abcdef"[(len >> (4 * i)) & 0xf];
    }
    out[digits..digits + 2].copy_from_slice(b"\r\n");
    &out[..digits + 2]
}

/// How far one attempt to write the new events got.
enum Attempt {
    Nothing,
    /// Every byte of the chunk holding events up to this cursor went out.
    Written(usize),
    /// The socket took `usize` bytes (maybe none) of the chunk holding events up to `usize`.
    Partial(usize, usize),
}

async fn ceiling_stream(mut stream: TcpStream, state: Arc<Ceiling>) -> io::Result<()> {
    stream
        .write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
              transfer-encoding: chunked\r\n\r\n",
        )
        .await?;
    let mut cursor = state.len();
    let mut last_write = Instant::now();
    let keep_alive = tokio::time::sleep(KEEP_ALIVE);
    tokio::pin!(keep_alive);
    loop {
        let notified = state.wake.notified();
        tokio::pin!(notified);
        // Registered before looking, so a publish after the look still wakes us.
        notified.as_mut().enable();
        // The least work possible: one non-blocking writev straight from the shared log
        // under its read lock: no copy, no reference counting, no allocation but the
        // slice list. IOV_MAX is 1024: the chunk head and tail take two slices.
        let attempt = {
            let events = state.events.read().unwrap_or_else(|e| e.into_inner());
            let end = events.len().min(cursor + 1000);
            if end == cursor {
                Attempt::Nothing
            } else {
                let new = &events[cursor..end];
                let len: usize = new.iter().map(Bytes::len).sum();
                let mut head = [0u8; 20];
                let head = chunk_head(len, &mut head);
                let mut slices = Vec::with_capacity(new.len() + 2);
                slices.push(IoSlice::new(head));
                slices.extend(new.iter().map(|event| IoSlice::new(event)));
                slices.push(IoSlice::new(b"\r\n"));
                match stream.try_write_vectored(&slices) {
                    Ok(n) if n == head.len() + len + 2 => Attempt::Written(end),
                    Ok(n) => Attempt::Partial(end, n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Attempt::Partial(end, 0),
                    Err(e) => return Err(e),
                }
            }
        };
        match attempt {
            Attempt::Written(end) => {
                cursor = end;
                last_write = Instant::now();
                continue;
            }
            Attempt::Partial(end, written) => {
                // The socket is full: hold the events (by reference count) and wait for it.
                let held: Vec<Bytes> =
                    state.events.read().unwrap_or_else(|e| e.into_inner())[cursor..end].to_vec();
                let len: usize = held.iter().map(Bytes::len).sum();
                let mut head = [0u8; 20];
                let head = chunk_head(len, &mut head);
                let mut slices = Vec::with_capacity(held.len() + 2);
                slices.push(IoSlice::new(head));
                slices.extend(held.iter().map(|event| IoSlice::new(event)));
                slices.push(IoSlice::new(b"\r\n"));
                let mut rest = &mut slices[..];
                IoSlice::advance_slices(&mut rest, written);
                write_all_vectored(&mut stream, rest).await?;
                cursor = end;
                last_write = Instant::now();
                continue;
            }
            Attempt::Nothing => {}
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = &mut keep_alive => {
                let now = Instant::now();
                if now >= last_write + KEEP_ALIVE {
                    stream.write_all(b"2\r\n:\n\r\n").await?;
                    last_write = now;
                }
                keep_alive.as_mut().reset(last_write + KEEP_ALIVE);
            }
        }
    }
}

async fn ceiling_long_poll(stream: &mut TcpStream, state: &Ceiling, after: usize) -> io::Result<()> {
    let deadline = Instant::now() + LONG_POLL_WAIT;
    let mut batch = Vec::new();
    let next = loop {
        let notified = state.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let next = state.take(after, 100, &mut batch);
        if !batch.is_empty() {
            break next;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            break after;
        }
    };
    let len: usize = batch.iter().map(Bytes::len).sum();
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {len}\r\nx-next: {next}\r\n\r\n"
    );
    let mut slices = Vec::with_capacity(batch.len() + 1);
    slices.push(IoSlice::new(head.as_bytes()));
    slices.extend(batch.iter().map(|event| IoSlice::new(event)));
    write_all_vectored(stream, &mut slices).await
}
