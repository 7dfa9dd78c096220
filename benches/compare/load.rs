//! The load generator: raw tokio sockets, large reads, events counted by a marker scan
//! (no SSE parsing), connections spread over 250 loopback source addresses.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;

/// Bytes read per `read` call by a subscriber.
const READ_BUFFER: usize = 32 * 1024;
/// Size of each published payload (about a short chat message).
const PAYLOAD_BYTES: usize = 64;
/// How long connecting and reading a response head may take.
pub const IO_LIMIT: Duration = Duration::from_secs(30);

static START: OnceLock<Instant> = OnceLock::new();

/// Microseconds since the load generator started (never 0).
pub fn now_us() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_micros() as u64 + 1
}

fn timed_marker() -> &'static memmem::Finder<'static> {
    static FINDER: OnceLock<memmem::Finder<'static>> = OnceLock::new();
    FINDER.get_or_init(|| memmem::Finder::new(b"@t"))
}

/// A measured event's payload: `@t<publish time in µs>;` padded to a fixed size. Warm-up
/// events carry `@w` instead and are not counted.
pub fn payload(timestamp_us: Option<u64>) -> Vec<u8> {
    let mut body = match timestamp_us {
        Some(ts) => format!("@t{ts};").into_bytes(),
        None => b"@w;".to_vec(),
    };
    body.resize(PAYLOAD_BYTES, b'x');
    body
}

/// Source address number `i`: 127.0.0.1 to 127.0.0.250, so that ephemeral ports never run
/// out however many connections are opened.
fn source(i: usize) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(127, 0, 0, 1 + (i % 250) as u8), 0))
}

pub async fn connect(i: usize, port: u16) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(source(i))?;
    let stream = tokio::time::timeout(IO_LIMIT, socket.connect(SocketAddr::from(([127, 0, 0, 1], port))))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// What one reader has seen, shared with the orchestrator.
#[derive(Default)]
pub struct Slot {
    pub count: AtomicU64,
    pub warm: AtomicBool,
    pub latencies_us: Mutex<Vec<u32>>,
}

/// A group of readers (SSE subscribers or long pollers) of one scenario.
pub struct Group {
    pub slots: Vec<Slot>,
    /// Readers connected whose request went out (SSE: whose response head arrived).
    pub ready: AtomicUsize,
    pub failed: AtomicUsize,
    pub first_error: Mutex<Option<String>>,
    /// Measured events each reader waits for; `u64::MAX` until publishing starts.
    pub target: AtomicU64,
    pub done: AtomicUsize,
    pub last_done_us: AtomicU64,
}

impl Group {
    pub fn new(readers: usize) -> Arc<Group> {
        Arc::new(Group {
            slots: (0..readers).map(|_| Slot::default()).collect(),
            ready: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            first_error: Mutex::new(None),
            target: AtomicU64::new(u64::MAX),
            done: AtomicUsize::new(0),
            last_done_us: AtomicU64::new(0),
        })
    }

    fn fail(&self, error: impl std::fmt::Display) {
        self.failed.fetch_add(1, Ordering::AcqRel);
        let mut first = self.first_error.lock().unwrap();
        if first.is_none() {
            *first = Some(error.to_string());
        }
    }

    pub fn error(&self) -> String {
        self.first_error.lock().unwrap().clone().unwrap_or_default()
    }

    pub fn all_warm(&self) -> bool {
        self.slots.iter().all(|slot| slot.warm.load(Ordering::Acquire))
    }

    pub fn delivered(&self) -> u64 {
        self.slots
            .iter()
            .map(|slot| slot.count.load(Ordering::Acquire))
            .sum()
    }

    pub fn latencies(&self) -> Vec<u32> {
        let mut all = Vec::new();
        for slot in &self.slots {
            all.append(&mut slot.latencies_us.lock().unwrap());
        }
        all
    }

    /// Records the progress of reader `i` after a read.
    fn record(&self, i: usize, scan: &mut Scan) {
        let slot = &self.slots[i];
        if scan.warm && !slot.warm.load(Ordering::Relaxed) {
            slot.warm.store(true, Ordering::Release);
        }
        let before = slot.count.swap(scan.count, Ordering::AcqRel);
        if !scan.latencies_us.is_empty() {
            slot.latencies_us.lock().unwrap().append(&mut scan.latencies_us);
        }
        let target = self.target.load(Ordering::Acquire);
        if before < target && scan.count >= target {
            self.last_done_us.fetch_max(now_us(), Ordering::AcqRel);
            self.done.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Counts measured events in a byte stream without parsing it.
#[derive(Default)]
struct Scan {
    parse_timestamps: bool,
    warm: bool,
    count: u64,
    latencies_us: Vec<u32>,
}

impl Scan {
    /// Scans `data`; returns how many bytes at its end belong to a marker not yet complete
    /// (to be scanned again with the next read).
    fn feed(&mut self, data: &[u8]) -> usize {
        if !self.warm && memmem::find(data, b"@w").is_some() {
            self.warm = true;
        }
        let now = if self.parse_timestamps { now_us() } else { 0 };
        for at in timed_marker().find_iter(data) {
            if self.parse_timestamps {
                let digits = &data[at + 2..];
                match digits.iter().take(24).position(|&b| b == b';') {
                    Some(end) => {
                        let ts = std::str::from_utf8(&digits[..end])
                            .ok()
                            .and_then(|text| text.parse::<u64>().ok());
                        if let Some(ts) = ts {
                            let latency = now.saturating_sub(ts).min(u32::MAX as u64) as u32;
                            self.latencies_us.push(latency);
                        }
                    }
                    None if digits.len() < 24 => return data.len() - at,
                    None => {}
                }
            }
            self.count += 1;
        }
        usize::from(data.last() == Some(&b'@'))
    }
}

fn sse_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n").into_bytes()
}

/// One SSE subscriber: connects, sends the request, waits for the head, then counts events
/// until the task is aborted or the server closes.
pub async fn sse_subscriber(
    group: Arc<Group>,
    i: usize,
    port: u16,
    path: Arc<str>,
    parse_timestamps: bool,
    connecting: Arc<Semaphore>,
) {
    let permit = connecting.acquire().await;
    let opened = async {
        let mut stream = connect(i, port).await?;
        stream.write_all(&sse_request(&path)).await?;
        let mut buf = vec![0u8; READ_BUFFER];
        let mut filled = 0;
        let head_end = loop {
            let n = tokio::time::timeout(IO_LIMIT, stream.read(&mut buf[filled..]))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no response head"))??;
            if n == 0 {
                return Err(io::Error::other("closed before the response head"));
            }
            filled += n;
            if let Some(end) = memmem::find(&buf[..filled], b"\r\n\r\n") {
                break end + 4;
            }
            if filled == buf.len() {
                return Err(io::Error::other("response head too large"));
            }
        };
        if !buf.starts_with(b"HTTP/1.1 200") {
            let line = String::from_utf8_lossy(&buf[..filled.min(60)]).into_owned();
            return Err(io::Error::other(format!("SSE request answered {line:?}")));
        }
        buf.copy_within(head_end..filled, 0);
        Ok::<_, io::Error>((stream, buf, filled - head_end))
    }
    .await;
    drop(permit);
    let (mut stream, mut buf, mut filled) = match opened {
        Ok(opened) => opened,
        Err(error) => return group.fail(error),
    };
    group.ready.fetch_add(1, Ordering::AcqRel);
    let mut scan = Scan {
        parse_timestamps,
        ..Scan::default()
    };
    loop {
        let keep = scan.feed(&buf[..filled]);
        group.record(i, &mut scan);
        buf.copy_within(filled - keep..filled, 0);
        filled = keep;
        match stream.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => filled += n,
        }
    }
}

/// A parsed HTTP/1.1 response.
pub struct Response {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A keep-alive HTTP/1.1 client connection for publishing and long polling.
pub struct HttpConnection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl HttpConnection {
    pub async fn open(i: usize, port: u16) -> io::Result<Self> {
        Ok(HttpConnection {
            stream: connect(i, port).await?,
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    async fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Sends `request` and reads the whole response (content-length or chunked body).
    pub async fn request(&mut self, request: &[u8]) -> io::Result<Response> {
        self.stream.write_all(request).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> io::Result<Response> {
        let head_end = loop {
            if let Some(end) = memmem::find(&self.buf, b"\r\n\r\n") {
                break end;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|line| line.split(' ').nth(1)?.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line in {head:?}")))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
            .collect();
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if let Some(length) = response.header("content-length") {
            let length: usize = length
                .parse()
                .map_err(|_| io::Error::other("bad content-length"))?;
            while self.buf.len() < length {
                self.fill().await?;
            }
            response.body = self.buf.drain(..length).collect();
        } else if response
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let line_end = loop {
                    if let Some(end) = memmem::find(&self.buf, b"\r\n") {
                        break end;
                    }
                    self.fill().await?;
                };
                let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
                let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| io::Error::other("bad chunk size"))?;
                while self.buf.len() < line_end + 2 + size + 2 {
                    self.fill().await?;
                }
                response
                    .body
                    .extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
                self.buf.drain(..line_end + 2 + size + 2);
                if size == 0 {
                    break;
                }
            }
        }
        Ok(response)
    }
}

/// Publishes `payload` with a POST to `path`; any 2xx is success.
pub fn publish_request(path: &str, payload: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        payload.len()
    )
    .into_bytes();
    request.extend_from_slice(payload);
    request
}

pub async fn publish(connection: &mut HttpConnection, path: &str, payload: &[u8]) -> io::Result<()> {
    let response = tokio::time::timeout(IO_LIMIT, connection.request(&publish_request(path, payload)))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "publish timed out"))??;
    if !(200..300).contains(&response.status) {
        return Err(io::Error::other(format!("publish answered {}", response.status)));
    }
    Ok(())
}

/// How a long poller carries its position from one answer to the next request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollStyle {
    /// This crate: `?lastEventId=` from the answer's `lastEventId`.
    Crate,
    /// The ceiling: `?after=` from the `x-next` header.
    Ceiling,
    /// Nchan: `If-Modified-Since` / `If-None-Match` from `Last-Modified` / `Etag`.
    Nchan,
}

fn json_string_field<'a>(body: &'a [u8], field: &str) -> Option<&'a str> {
    let key = format!("\"{field}\":\"");
    let start = memmem::find(body, key.as_bytes())? + key.len();
    let len = memchr::memchr(b'"', &body[start..])?;
    std::str::from_utf8(&body[start..start + len]).ok()
}

/// One long poller: re-polls with its cursor until aborted.
pub async fn long_poller(
    group: Arc<Group>,
    i: usize,
    port: u16,
    path: Arc<str>,
    style: PollStyle,
    connecting: Arc<Semaphore>,
) {
    let permit = connecting.acquire().await;
    let mut connection = match HttpConnection::open(i, port).await {
        Ok(connection) => connection,
        Err(error) => return group.fail(error),
    };
    drop(permit);
    let mut scan = Scan {
        parse_timestamps: true,
        ..Scan::default()
    };
    let mut cursor: Option<(String, String)> = None;
    let mut first = true;
    loop {
        let request = match (style, &cursor) {
            (PollStyle::Crate, None) => format!(
                "GET {path}?timeout=25000 HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n"
            ),
            (PollStyle::Crate, Some((id, _))) => format!(
                "GET {path}?timeout=25000&lastEventId={id} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                 Accept: application/json\r\n\r\n"
            ),
            (PollStyle::Ceiling, None) => format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
            (PollStyle::Ceiling, Some((next, _))) => {
                format!("GET {path}?after={next} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            }
            (PollStyle::Nchan, None) => format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
            (PollStyle::Nchan, Some((modified, etag))) => format!(
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-Modified-Since: {modified}\r\n\
                 If-None-Match: {etag}\r\n\r\n"
            ),
        };
        if connection.stream.write_all(request.as_bytes()).await.is_err() {
            return group.fail("long poll connection closed");
        }
        if first {
            first = false;
            group.ready.fetch_add(1, Ordering::AcqRel);
        }
        let response = match connection.read_response().await {
            Ok(response) => response,
            Err(error) => return group.fail(error),
        };
        match response.status {
            200 => {}
            // Nchan answers a poll that timed out with 304 and the same position.
            304 | 408 => continue,
            status => return group.fail(format!("long poll answered {status}")),
        }
        scan.feed(&response.body);
        group.record(i, &mut scan);
        cursor = match style {
            PollStyle::Crate => json_string_field(&response.body, "lastEventId")
                .map(|id| (id.to_owned(), String::new()))
                .or(cursor),
            PollStyle::Ceiling => response
                .header("x-next")
                .map(|next| (next.to_owned(), String::new()))
                .or(cursor),
            PollStyle::Nchan => match (response.header("last-modified"), response.header("etag")) {
                (Some(modified), Some(etag)) => Some((modified.to_owned(), etag.to_owned())),
                _ => cursor,
            },
        };
    }
}

/// Publishes `events` measured events at `rate` per second whatever the answers' delay:
/// requests are pipelined on one connection while another task reads the answers, so a
/// slow server gets a backlog instead of a slower publisher.
pub async fn publish_open_loop(
    i: usize,
    port: u16,
    path: &str,
    rate: u64,
    events: u64,
) -> io::Result<OpenLoopPublisher> {
    let (mut reader, mut writer) = connect(i, port).await?.into_split();
    let answers = tokio::spawn(async move {
        let finder = memmem::Finder::new(b"HTTP/1.1 ");
        let mut buf = vec![0u8; 16 * 1024];
        let (mut seen, mut kept) = (0u64, 0usize);
        while seen < events {
            let n = reader.read(&mut buf[kept..]).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "publisher connection closed",
                ));
            }
            let filled = kept + n;
            let mut last = 0;
            for at in finder.find_iter(&buf[..filled]) {
                if at + 10 > filled {
                    break;
                }
                if buf[at + 9] != b'2' {
                    let line = String::from_utf8_lossy(&buf[at..filled.min(at + 40)]).into_owned();
                    return Err(io::Error::other(format!("publish answered {line:?}")));
                }
                seen += 1;
                last = at + 10;
            }
            // Keep a possibly cut status line for the next read.
            let keep_from = last.max(filled.saturating_sub(9));
            buf.copy_within(keep_from..filled, 0);
            kept = filled - keep_from;
        }
        Ok(())
    });
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    for _ in 0..events {
        ticks.tick().await;
        writer
            .write_all(&publish_request(path, &payload(Some(now_us()))))
            .await?;
    }
    Ok(OpenLoopPublisher {
        answers,
        _writer: writer,
    })
}

/// The answers still being read after [`publish_open_loop`] sent every request.
pub struct OpenLoopPublisher {
    answers: tokio::task::JoinHandle<io::Result<()>>,
    _writer: tokio::net::tcp::OwnedWriteHalf,
}

impl OpenLoopPublisher {
    /// Fails if a publish was refused; a server still answering after `wait` is only slow.
    pub async fn finish(mut self, wait: Duration) -> Result<(), String> {
        match tokio::time::timeout(wait, &mut self.answers).await {
            Ok(Ok(result)) => result.map_err(|e| format!("publish: {e}")),
            Ok(Err(_)) => Err("the publisher's reader panicked".to_owned()),
            Err(_) => {
                self.answers.abort();
                Ok(())
            }
        }
    }
}
