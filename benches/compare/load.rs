//! The load generator's readers: raw tokio sockets, large reads, events counted by a marker
//! scan (no SSE parsing), connections spread over 250 loopback source addresses. The HTTP
//! client for publishing and long polling is in `client.rs`.

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

    pub fn fail(&self, error: impl std::fmt::Display) {
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
    pub fn record(&self, i: usize, scan: &mut Scan) {
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
pub struct Scan {
    parse_timestamps: bool,
    warm: bool,
    count: u64,
    latencies_us: Vec<u32>,
}

impl Scan {
    /// A scan that records each measured event's latency too, if `parse_timestamps`.
    pub fn new(parse_timestamps: bool) -> Scan {
        Scan {
            parse_timestamps,
            ..Scan::default()
        }
    }

    /// Scans `data`; returns how many bytes at its end belong to a marker not yet complete
    /// (to be scanned again with the next read).
    pub fn feed(&mut self, data: &[u8]) -> usize {
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
    let mut scan = Scan::new(parse_timestamps);
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
