//! The event-stream format: an incremental parser of the WHATWG rules ([`SseParser`], which
//! [`SseReader`](super::reader::SseReader) reads items with), and `eventsource-stream`, the
//! third-party parser ([`SseClient`], [`parse_sse`]).

use std::net::SocketAddr;

use bytes::Bytes;
use eventsource_stream::{EventStream, Eventsource};
use futures_util::{Stream, StreamExt};
use http_body_util::{BodyDataStream, BodyExt};
use hyper::body::Incoming;

use super::client::Connection;
use super::reader::open_sse;
use super::within;

/// One dispatched SSE block: the fields between two blank lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(dead_code)]
pub struct SseBlock {
    pub id: Option<String>,
    pub event: Option<String>,
    /// `None` when the block has no `data:` line (a client dispatches nothing for it).
    pub data: Option<String>,
    pub retry: Option<u64>,
}

#[allow(dead_code)]
impl SseBlock {
    /// The type a browser dispatches it as.
    pub fn event_type(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }
}

/// What an SSE stream carried.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(dead_code)]
pub enum SseItem {
    /// A `:` comment line (a keep-alive is an empty one).
    Comment(String),
    /// A block ended by a blank line.
    Block(SseBlock),
}

/// An incremental SSE line parser following the WHATWG rules (CRLF, LF or CR end a line;
/// one space after the colon is dropped; a blank line dispatches).
#[derive(Debug, Default)]
#[allow(dead_code)]
pub struct SseParser {
    buf: Vec<u8>,
    block: SseBlock,
    any_field: bool,
    /// A CR ended the previous line: an LF right after it belongs to that line break.
    after_cr: bool,
}

#[allow(dead_code)]
impl SseParser {
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseItem> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while let Some(&first) = rest.first() {
            if std::mem::take(&mut self.after_cr) && first == b'\n' {
                rest = &rest[1..];
                continue;
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
            if std::mem::take(&mut self.any_field) {
                out.push(SseItem::Block(std::mem::take(&mut self.block)));
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

/// The values of every `name:` line of `text` (one leading space stripped, as a parser does).
#[allow(dead_code)]
pub fn field_values(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let (field, value) = line.split_once(':')?;
            (field == name).then(|| value.strip_prefix(' ').unwrap_or(value).to_owned())
        })
        .collect()
}

/// An SSE stream parsed by `eventsource-stream` (spec-compliant: comments and events
/// without data are invisible).
#[allow(dead_code)]
pub struct SseClient {
    events: EventStream<BodyDataStream<Incoming>>,
    _connection: Connection,
}

#[allow(dead_code)]
impl SseClient {
    /// Opens the stream as [`SseReader::connect`] does.
    pub async fn connect(addr: SocketAddr, path_and_query: &str, last_event_id: Option<&str>) -> Self {
        SseClient::connect_with(addr, path_and_query, &[], last_event_id).await
    }

    /// Like [`connect`](Self::connect), the request carrying `headers` too (a `cookie`).
    pub async fn connect_with(
        addr: SocketAddr,
        path_and_query: &str,
        headers: &[(&str, &[u8])],
        last_event_id: Option<&str>,
    ) -> Self {
        let (_head, body, connection) = open_sse(addr, path_and_query, headers, last_event_id).await;
        SseClient {
            events: body.into_data_stream().eventsource(),
            _connection: connection,
        }
    }

    /// The next dispatched event, skipping checkpoints (they move the cursor and reach no
    /// `message` listener); fails on error, at the end of the stream or after
    /// [`LIMIT`](super::LIMIT).
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

    /// The next dispatched event if one comes within `wait` (checkpoints skipped), else
    /// `None`; fails on an error or at the end of the stream.
    pub async fn next_within(&mut self, wait: std::time::Duration) -> Option<eventsource_stream::Event> {
        tokio::time::timeout(wait, async {
            loop {
                match self.events.next().await {
                    Some(Ok(event)) if event.event == "checkpoint" => {}
                    Some(Ok(event)) => return event,
                    Some(Err(error)) => panic!("SSE stream failed: {error}"),
                    None => panic!("SSE stream ended while waiting for events"),
                }
            }
        })
        .await
        .ok()
    }

    /// The next `n` events.
    pub async fn take(&mut self, n: usize) -> Vec<eventsource_stream::Event> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next().await);
        }
        out
    }

    /// Waits for the stream to end (checkpoints may come first); fails on an event, on
    /// an error, or after [`LIMIT`](super::LIMIT).
    pub async fn ended(&mut self) {
        within("the end of the SSE stream", async {
            loop {
                match self.events.next().await {
                    Some(Ok(event)) if event.event == "checkpoint" => {}
                    Some(Ok(event)) => panic!("an event where the stream should end: {event:?}"),
                    Some(Err(error)) => panic!("SSE stream failed: {error}"),
                    None => return,
                }
            }
        })
        .await
    }

    /// What `EventSource.lastEventId` would be after the events dispatched so far.
    pub fn last_event_id(&self) -> &str {
        self.events.last_event_id()
    }
}

/// What `eventsource-stream` dispatches for complete SSE bytes (the stream ends after them).
#[allow(dead_code)]
pub fn parse_sse(bytes: impl AsRef<[u8]>) -> Vec<eventsource_stream::Event> {
    let chunk = Bytes::copy_from_slice(bytes.as_ref());
    let chunks = futures_util::stream::iter([Ok::<Bytes, std::convert::Infallible>(chunk)]);
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
