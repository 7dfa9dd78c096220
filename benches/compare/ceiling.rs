//! The ceiling: raw tokio, no HTTP framework, each event encoded once, batched writes. What
//! the fastest server could do on this machine, for the others to be measured against.

use std::io::{self, IoSlice};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::settings::KEEP_ALIVE;

/// The longest a long poll is held.
const LONG_POLL_WAIT: Duration = Duration::from_secs(25);

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

/// Serves SSE on any path, long polls on `/lp?after=<n>`, publishing on any `POST`.
pub async fn serve(listener: TcpListener) -> io::Result<()> {
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

/// `events` as one HTTP/1.1 chunk: `head` (filled in here), the events, the tail.
fn chunk<'a>(events: &'a [Bytes], head: &'a mut [u8; 20]) -> Vec<IoSlice<'a>> {
    let len: usize = events.iter().map(Bytes::len).sum();
    let head = chunk_head(len, head);
    let mut slices = Vec::with_capacity(events.len() + 2);
    slices.push(IoSlice::new(head));
    slices.extend(events.iter().map(|event| IoSlice::new(event)));
    slices.push(IoSlice::new(b"\r\n"));
    slices
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
                let mut head = [0u8; 20];
                let slices = chunk(&events[cursor..end], &mut head);
                let total: usize = slices.iter().map(|slice| slice.len()).sum();
                match stream.try_write_vectored(&slices) {
                    Ok(n) if n == total => Attempt::Written(end),
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
                let mut head = [0u8; 20];
                let mut slices = chunk(&held, &mut head);
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
