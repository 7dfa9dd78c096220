//! [`SseReader`]: the one incremental reader of a response body, from hyper's client or from a
//! plain `TcpStream`, as raw text (the exact wire format, comments and `retry:` lines
//! included) or as parsed [`SseItem`]s.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, StatusCode};
use http_body_util::{BodyDataStream, BodyExt};
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::client::{build, send_http1, Connection, Head};
use super::raw::{find, read_head, Chunked};
use super::sse::{field_values, SseBlock, SseItem, SseParser};
use super::within;

/// Where an [`SseReader`]'s body bytes come from.
enum Source {
    /// A response of hyper's client; the connection stays open while the reader lives.
    Hyper {
        body: BodyDataStream<Incoming>,
        _connection: Arc<Connection>,
    },
    /// A response read off a plain socket, de-chunked here when it is chunked.
    Tcp {
        stream: TcpStream,
        chunked: Option<Chunked>,
    },
}

/// A response head and its body, read as it arrives: as text up to a needle (the exact wire
/// format, comments and `retry:` lines included) or item by item through [`SseParser`].
/// Body bytes are handed out once, by whichever of the two a test uses.
#[allow(dead_code)]
pub struct SseReader {
    pub head: Head,
    source: Source,
    /// Body bytes received and not yet handed out.
    pending: Vec<u8>,
    parser: SseParser,
    items: VecDeque<SseItem>,
    /// Every body byte received, when [`recording`](Self::recording).
    transcript: Option<Vec<u8>>,
    /// Body bytes received so far.
    pub received: usize,
    /// The body has ended (or failed): nothing more will arrive.
    pub ended: bool,
}

/// Sends an SSE request (see [`SseReader::connect`]), with `headers` too, over a new HTTP/1.1
/// connection of hyper's client and checks that it is answered `200`.
pub(super) async fn open_sse(
    addr: SocketAddr,
    path_and_query: &str,
    headers: &[(&str, &[u8])],
    last_event_id: Option<&str>,
) -> (Head, Incoming, Connection) {
    let request = sse_request(addr, path_and_query, headers, last_event_id);
    let (head, body, connection) = send_http1(addr, request).await;
    assert_eq!(
        head.status,
        StatusCode::OK,
        "SSE request {path_and_query} was refused"
    );
    (head, body, connection)
}

#[allow(dead_code)]
impl SseReader {
    /// `GET path_and_query` with `Accept: text/event-stream` (and `Last-Event-ID` if given)
    /// over a new HTTP/1.1 connection of hyper's client; the answer must be `200`.
    pub async fn connect(addr: SocketAddr, path_and_query: &str, last_event_id: Option<&str>) -> SseReader {
        let (head, body, connection) = open_sse(addr, path_and_query, &[], last_event_id).await;
        SseReader::hyper(head, body, Arc::new(connection))
    }

    /// Like [`connect`](Self::connect), written byte for byte on a plain `TcpStream`.
    pub async fn raw(addr: SocketAddr, path_and_query: &str, last_event_id: Option<&str>) -> SseReader {
        let stream = within("connecting", TcpStream::connect(addr))
            .await
            .expect("connect");
        SseReader::raw_on(stream, path_and_query, last_event_id).await
    }

    /// Like [`raw`](Self::raw) over a socket already connected (with options of its own).
    pub async fn raw_on(stream: TcpStream, path_and_query: &str, last_event_id: Option<&str>) -> SseReader {
        let mut request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n"
        );
        if let Some(id) = last_event_id {
            request.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        request.push_str("\r\n");
        SseReader::send_raw(stream, request.as_bytes()).await
    }

    /// Writes `request` byte for byte and reads the head, which must be `200`.
    pub async fn send_raw(mut stream: TcpStream, request: &[u8]) -> SseReader {
        within("sending the request", stream.write_all(request))
            .await
            .expect("write the request");
        let mut leftover = Vec::new();
        let head = within("the response head", read_head(&mut stream, &mut leftover))
            .await
            .expect("read the response head");
        assert_eq!(
            head.status,
            StatusCode::OK,
            "request {:?} refused: {head:?}",
            String::from_utf8_lossy(&request[..request.len().min(200)])
        );
        let chunked = head.chunked().then(Chunked::default);
        let mut reader = SseReader::new(head, Source::Tcp { stream, chunked });
        reader.absorb(&leftover);
        reader
    }

    /// The body of a response of hyper's client, `connection` kept open while it is read.
    pub fn hyper(head: Head, body: Incoming, connection: Arc<Connection>) -> SseReader {
        let source = Source::Hyper {
            body: body.into_data_stream(),
            _connection: connection,
        };
        SseReader::new(head, source)
    }

    fn new(head: Head, source: Source) -> SseReader {
        SseReader {
            head,
            source,
            pending: Vec::new(),
            parser: SseParser::default(),
            items: VecDeque::new(),
            transcript: None,
            received: 0,
            ended: false,
        }
    }

    /// Keeps every body byte from now on, for [`transcript`](Self::transcript).
    pub fn recording(mut self) -> SseReader {
        self.transcript = Some(self.pending.clone());
        self
    }

    /// Every body byte received since [`recording`](Self::recording).
    pub fn transcript(&self) -> &[u8] {
        self.transcript.as_deref().expect("a recording reader")
    }

    /// A header of the response, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    // -----------------------------------------------------------------------------------
    // As text
    // -----------------------------------------------------------------------------------

    /// Reads until `needle` has arrived; returns everything up to and including it. Fails if
    /// the body ends or fails first, or after [`LIMIT`](super::LIMIT).
    pub async fn read_until(&mut self, needle: &str) -> String {
        within(&format!("{needle:?} on the stream"), async {
            loop {
                if let Some(text) = self.take_through(needle) {
                    return text;
                }
                self.receive_or_fail(needle).await;
            }
        })
        .await
    }

    /// Like [`read_until`](Self::read_until), but `None` if `needle` has not arrived within
    /// `wait` (what was read meanwhile is kept).
    pub async fn try_read_until(&mut self, needle: &str, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(text) = self.take_through(needle) {
                return Some(text);
            }
            tokio::time::timeout_at(deadline, self.receive_or_fail(needle))
                .await
                .ok()?;
        }
    }

    /// Reads one block, up to and including the blank line that ends it.
    pub async fn read_block(&mut self) -> String {
        self.read_until("\n\n").await
    }

    /// Reads the opening block and returns it with its `id:` value, if any.
    pub async fn read_opening(&mut self) -> (String, Option<String>) {
        let opening = self.read_block().await;
        let id = field_values(&opening, "id").pop();
        (opening, id)
    }

    /// Reads to the end of the body, which must end cleanly (no error); returns what had not
    /// been handed out yet.
    pub async fn read_bytes_to_end(&mut self) -> Vec<u8> {
        within("the end of the body", async {
            loop {
                match self.receive(16 * 1024).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(error) => panic!(
                        "the body ended with an error: {error}; unread: {:?}",
                        String::from_utf8_lossy(&self.pending)
                    ),
                }
            }
        })
        .await;
        std::mem::take(&mut self.pending)
    }

    /// Like [`read_bytes_to_end`](Self::read_bytes_to_end), as text.
    pub async fn read_to_end(&mut self) -> String {
        String::from_utf8(self.read_bytes_to_end().await).expect("a UTF-8 body")
    }

    /// The whole (remaining) body.
    pub async fn collect(&mut self) -> Bytes {
        Bytes::from(self.read_bytes_to_end().await)
    }

    /// Waits for the next bytes: `Some(Ok(n))` for `n` bytes read (kept for the next read),
    /// `None` at a clean end, `Some(Err(_))` when the body fails.
    pub async fn next_chunk(&mut self) -> Option<Result<usize, String>> {
        match within("the next body chunk", self.receive(16 * 1024)).await {
            Ok(0) => None,
            other => Some(other),
        }
    }

    fn take_through(&mut self, needle: &str) -> Option<String> {
        let at = find(&self.pending, needle.as_bytes())?;
        let rest = self.pending.split_off(at + needle.len());
        let got = std::mem::replace(&mut self.pending, rest);
        Some(String::from_utf8(got).expect("a UTF-8 stream"))
    }

    async fn receive_or_fail(&mut self, needle: &str) {
        match self.receive(16 * 1024).await {
            Ok(0) => panic!(
                "the body ended before {needle:?}; unread: {:?}",
                String::from_utf8_lossy(&self.pending)
            ),
            Ok(_) => {}
            Err(error) => panic!("the body failed before {needle:?}: {error}"),
        }
    }

    // -----------------------------------------------------------------------------------
    // Item by item
    // -----------------------------------------------------------------------------------

    /// The next item, `None` at the end of the stream (or when it fails); fails after
    /// [`LIMIT`](super::LIMIT).
    pub async fn next_item(&mut self) -> Option<SseItem> {
        within("the next SSE item", async {
            loop {
                self.parse_pending();
                if let Some(item) = self.items.pop_front() {
                    return Some(item);
                }
                if !matches!(self.receive(16 * 1024).await, Ok(1..)) {
                    return None;
                }
            }
        })
        .await
    }

    /// The next block that a client dispatches (it has data), skipping comments and the
    /// opening checkpoint, which moves the cursor but is no application event.
    pub async fn next_event(&mut self) -> SseBlock {
        within("the next SSE event", async {
            loop {
                match self.next_item().await {
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

    /// Reads once, at most `max` bytes; the items they complete are kept (see
    /// [`drain_items`](Self::drain_items)). Returns the bytes read, 0 at the end.
    pub async fn read_some(&mut self, max: usize) -> usize {
        self.receive(max).await.unwrap_or(0)
    }

    /// The items received and parsed so far, without reading more.
    pub fn drain_items(&mut self) -> Vec<SseItem> {
        self.parse_pending();
        self.items.drain(..).collect()
    }

    fn parse_pending(&mut self) {
        if !self.pending.is_empty() {
            let bytes = std::mem::take(&mut self.pending);
            self.items.extend(self.parser.feed(&bytes));
        }
    }

    // -----------------------------------------------------------------------------------
    // The wire
    // -----------------------------------------------------------------------------------

    /// Reads once from the connection, at most `max` bytes off a socket: the bytes read
    /// (chunk framing included), 0 at the end of the body.
    async fn receive(&mut self, max: usize) -> Result<usize, String> {
        if self.ended {
            return Ok(0);
        }
        let read = match &mut self.source {
            Source::Hyper { body, .. } => match body.next().await {
                Some(Ok(chunk)) => Ok(Some((chunk.len(), chunk.to_vec()))),
                Some(Err(error)) => Err(error.to_string()),
                None => Ok(None),
            },
            Source::Tcp { stream, chunked } => {
                let mut buf = vec![0u8; max];
                match stream.read(&mut buf).await {
                    Ok(0) => Ok(None),
                    Ok(n) => Ok(Some((n, decode(chunked, &buf[..n])))),
                    Err(error) => Err(error.to_string()),
                }
            }
        };
        match read {
            Ok(Some((n, body))) => {
                self.keep(&body);
                if let Source::Tcp {
                    chunked: Some(decoder),
                    ..
                } = &self.source
                {
                    self.ended |= decoder.done;
                }
                Ok(n)
            }
            Ok(None) => {
                self.ended = true;
                Ok(0)
            }
            Err(error) => {
                self.ended = true;
                Err(error)
            }
        }
    }

    /// Body bytes read together with the head.
    fn absorb(&mut self, wire: &[u8]) {
        if let Source::Tcp { chunked, .. } = &mut self.source {
            let body = decode(chunked, wire);
            let done = chunked.as_ref().is_some_and(|decoder| decoder.done);
            self.keep(&body);
            self.ended |= done;
        }
    }

    fn keep(&mut self, body: &[u8]) {
        self.received += body.len();
        if let Some(transcript) = &mut self.transcript {
            transcript.extend_from_slice(body);
        }
        self.pending.extend_from_slice(body);
    }
}

/// A failing check shows the body: all of it when recording, else what was not handed out.
impl std::fmt::Debug for SseReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = self.transcript.as_deref().unwrap_or(&self.pending);
        write!(f, "body {:?}", String::from_utf8_lossy(body))
    }
}

fn decode(chunked: &mut Option<Chunked>, wire: &[u8]) -> Vec<u8> {
    match chunked {
        Some(decoder) => decoder.feed(wire),
        None => wire.to_vec(),
    }
}

/// `GET` with `Accept: text/event-stream`, `extra` and, if given, `Last-Event-ID`.
pub(super) fn sse_request(
    addr: SocketAddr,
    path_and_query: &str,
    extra: &[(&str, &[u8])],
    last_event_id: Option<&str>,
) -> http::Request<http_body_util::Full<Bytes>> {
    let mut headers: Vec<(&str, &[u8])> = vec![("accept", b"text/event-stream")];
    headers.extend_from_slice(extra);
    if let Some(id) = last_event_id {
        headers.push(("last-event-id", id.as_bytes()));
    }
    build(addr, Method::GET, path_and_query, &headers, Bytes::new())
}
