//! The load generator's HTTP/1.1 client: keep-alive requests for publishing, pipelined
//! open-loop publishing, and long pollers.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::load::{connect, now_us, payload, Group, Scan, IO_LIMIT};

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
    long_poller_counting(group, i, port, path, style, connecting, Arc::default()).await
}

/// [`long_poller`], counting every answer it gets (with events or not) in `answers`.
pub async fn long_poller_counting(
    group: Arc<Group>,
    i: usize,
    port: u16,
    path: Arc<str>,
    style: PollStyle,
    connecting: Arc<Semaphore>,
    answers: Arc<AtomicU64>,
) {
    let permit = connecting.acquire().await;
    let mut connection = match HttpConnection::open(i, port).await {
        Ok(connection) => connection,
        Err(error) => return group.fail(error),
    };
    drop(permit);
    let mut scan = Scan::new(true);
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
        answers.fetch_add(1, Ordering::Relaxed);
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
