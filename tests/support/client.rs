//! hyper's HTTP/1.1 and HTTP/2 (h2c) clients over real TCP, the long-poll and chat requests
//! the tests send, and the response types every client shares (`super::raw` writes requests
//! byte for byte instead).
//!
//! Response bodies that are read as they arrive are an [`SseReader`]; complete responses are
//! an [`Answer`].

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use http::{Method, Request, StatusCode, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::reader::SseReader;
use super::within;

/// A response head.
#[derive(Debug, Clone)]
#[allow(dead_code)]
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
}

#[allow(dead_code)]
impl Head {
    /// The first value of header `name`, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub(super) fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|value| value.to_ascii_lowercase().contains("chunked"))
    }
}

/// A complete response.
#[derive(Debug)]
#[allow(dead_code)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[allow(dead_code)]
impl Answer {
    /// The first value of header `name`, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {:?}", self.text()))
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .map(|value| value.to_str().expect("an ASCII header value"))
}

// ---------------------------------------------------------------------------------------
// hyper's clients
// ---------------------------------------------------------------------------------------

/// The client side of a connection; dropping it closes the socket (the server sees EOF).
#[allow(dead_code)]
pub struct Connection(JoinHandle<()>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A request to `addr` with `headers` (values are raw bytes, so tests can send bytes that
/// are not ASCII).
#[allow(dead_code)]
pub fn build(
    addr: SocketAddr,
    method: Method,
    path_and_query: &str,
    headers: &[(&str, &[u8])],
    body: Bytes,
) -> Request<Full<Bytes>> {
    let mut request = Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(HOST, addr.to_string());
    for (name, value) in headers {
        request = request.header(
            HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            HeaderValue::from_bytes(value).expect("a header value"),
        );
    }
    request.body(Full::new(body)).expect("a request")
}

/// Sends `request` on a new HTTP/1.1 connection to `addr`: the response head and its body.
#[allow(dead_code)]
pub async fn send_http1(addr: SocketAddr, request: Request<Full<Bytes>>) -> (Head, Incoming, Connection) {
    let stream = within("TCP connect", TcpStream::connect(addr))
        .await
        .expect("connect to the test server");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    let connection = Connection(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let response = within("the response head", sender.send_request(request))
        .await
        .expect("send the request");
    let (head, body) = split(response);
    (head, body, connection)
}

fn split(response: http::Response<Incoming>) -> (Head, Incoming) {
    let (parts, body) = response.into_parts();
    let head = Head {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
    };
    (head, body)
}

/// Sends one request on a new HTTP/1.1 connection; the body is read as it arrives.
#[allow(dead_code)]
pub async fn open(
    addr: SocketAddr,
    method: Method,
    path_and_query: &str,
    headers: &[(&str, &[u8])],
    body: impl Into<Bytes>,
) -> SseReader {
    let request = build(addr, method, path_and_query, headers, body.into());
    let (head, body, connection) = send_http1(addr, request).await;
    SseReader::hyper(head, body, Arc::new(connection))
}

/// Sends one request on a new HTTP/1.1 connection and reads the whole response.
#[allow(dead_code)]
pub async fn request(
    addr: SocketAddr,
    method: Method,
    path_and_query: &str,
    headers: &[(&str, &[u8])],
    body: impl Into<Bytes>,
) -> Answer {
    let mut reader = open(addr, method, path_and_query, headers, body).await;
    let body = reader.collect().await;
    Answer {
        status: reader.head.status,
        headers: std::mem::take(&mut reader.head.headers),
        body,
    }
}

/// A plain `GET`.
#[allow(dead_code)]
pub async fn get(addr: SocketAddr, path_and_query: &str) -> Answer {
    request(addr, Method::GET, path_and_query, &[], Bytes::new()).await
}

/// One HTTP/2 connection (prior knowledge, h2c) carrying any number of requests.
#[derive(Clone)]
#[allow(dead_code)]
pub struct Http2 {
    addr: SocketAddr,
    sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    connection: Arc<Connection>,
}

#[allow(dead_code)]
impl Http2 {
    /// Opens one TCP connection to `addr` and speaks HTTP/2 on it.
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = within("TCP connect", TcpStream::connect(addr))
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
            connection: Arc::new(connection),
        }
    }

    /// Sends a request on this connection; the body is read as it arrives.
    pub async fn send(&self, method: Method, path_and_query: &str, headers: &[(&str, &[u8])]) -> SseReader {
        let uri = format!("http://{}{path_and_query}", self.addr);
        let mut sender = self.sender.clone();
        within("the HTTP/2 connection to be ready", sender.ready())
            .await
            .expect("the HTTP/2 connection is open");
        let request = build(self.addr, method, &uri, headers, Bytes::new());
        let response = within("the response head", sender.send_request(request))
            .await
            .expect("HTTP/2 request");
        let (head, body) = split(response);
        SseReader::hyper(head, body, Arc::clone(&self.connection))
    }
}

// ---------------------------------------------------------------------------------------
// Long polls and the chat app
// ---------------------------------------------------------------------------------------

/// A long poll (no `Accept: text/event-stream`), which must be answered `200`: the status and
/// the JSON body.
#[allow(dead_code)]
pub async fn long_poll(addr: SocketAddr, path_and_query: &str) -> (StatusCode, serde_json::Value) {
    let answer = get(addr, path_and_query).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "long poll {path_and_query} failed: {}",
        answer.text()
    );
    (answer.status, answer.json())
}

/// The `data` of every event of a long-poll answer.
#[allow(dead_code)]
pub fn poll_data(answer: &serde_json::Value) -> Vec<String> {
    poll_events(answer).into_iter().map(|(_, _, data)| data).collect()
}

/// `(id, event, data)` of every event of a long-poll answer.
#[allow(dead_code)]
pub fn poll_events(answer: &serde_json::Value) -> Vec<(String, String, String)> {
    answer["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events array in {answer}"))
        .iter()
        .map(|e| {
            (
                e["id"].as_str().expect("event id").to_owned(),
                e["event"].as_str().expect("event name").to_owned(),
                e["data"].as_str().expect("event data").to_owned(),
            )
        })
        .collect()
}

/// The `lastEventId` of a long-poll answer (it must be a string).
#[allow(dead_code)]
pub fn poll_cursor(answer: &serde_json::Value) -> String {
    answer["lastEventId"]
        .as_str()
        .unwrap_or_else(|| panic!("lastEventId is not a string in {answer}"))
        .to_owned()
}

/// `POST /api/messages` of the chat app, as its page sends it.
#[allow(dead_code)]
pub async fn post_message(addr: SocketAddr, body: impl AsRef<[u8]>) -> Answer {
    let headers: &[(&str, &[u8])] = &[("content-type", b"text/plain; charset=utf-8")];
    let body = Bytes::copy_from_slice(body.as_ref());
    request(addr, Method::POST, "/api/messages", headers, body).await
}

/// `POST path` with `body` as `text/plain; charset=utf-8`, as the examples' pages send it.
#[allow(dead_code)]
pub async fn post_text(addr: SocketAddr, path: &str, body: impl Into<Bytes>) -> Answer {
    let headers: &[(&str, &[u8])] = &[("content-type", b"text/plain; charset=utf-8")];
    request(addr, Method::POST, path, headers, body).await
}

/// [`post_text`], which must answer `201` with JSON `{"id":…}`: the id.
#[allow(dead_code)]
pub async fn post_created(addr: SocketAddr, path: &str, text: &str) -> String {
    let answer = post_text(addr, path, Bytes::copy_from_slice(text.as_bytes())).await;
    assert_eq!(
        answer.status,
        StatusCode::CREATED,
        "POST {path}: {}",
        answer.text()
    );
    assert_eq!(answer.header("content-type"), Some("application/json"));
    answer.json()["id"]
        .as_str()
        .expect("the id is a string")
        .to_owned()
}

/// The status of an SSE request for `path`, resuming from `cursor` if given. The body is read
/// to its end: for answers that have one (a refusal, `204`, a stream that ends).
#[allow(dead_code)]
pub async fn sse_status(addr: SocketAddr, path: &str, cursor: Option<&str>) -> StatusCode {
    let mut headers: Vec<(&str, &[u8])> = vec![("accept", b"text/event-stream")];
    if let Some(cursor) = cursor {
        headers.push(("last-event-id", cursor.as_bytes()));
    }
    request(addr, Method::GET, path, &headers, Bytes::new())
        .await
        .status
}
