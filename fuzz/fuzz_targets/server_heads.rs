//! `server::Server`'s own request-head parser and its hand-over to hyper, driven through its
//! public behaviour: the input is what a client sends on one connection (then it closes its
//! side). The same bytes go once to `Server::serve_connection` and once to plain hyper,
//! configured as `Server` configures its own hyper, each over a real loopback connection,
//! with a service that records every request it is given. Then:
//!
//! 1. nothing panics, and both connections end (within 10 s);
//! 2. every request the lean path answered (its body is `Server`'s own empty body, not
//!    hyper's) is a `GET` or `HEAD` of HTTP/1.0 or 1.1 with no `Transfer-Encoding`,
//!    `Upgrade` or `Expect` and no `Content-Length` but `0`; all come before any request
//!    hyper served; none shares a connection with HTTP/2; and the first request hyper
//!    served over HTTP/1 is one the lean path must not answer (unless it shows a
//!    `Content-Length`, which may be hyper's fold of `0` and `00`);
//! 3. a lean request written back as text parses to the same method, target, version and
//!    headers;
//! 4. `Server`'s service saw the same requests, in the same order, as plain hyper's
//!    (repeated `Content-Length`s aside, which hyper folds into one), or the first ones of
//!    them, only when the lean path closed after an HTTP/1.0 request hyper would have kept
//!    the connection open after, or when hyper had the connection and left the last request
//!    undispatched (see [`Harness::new`]): no head is read differently by the two parsers,
//!    so no request can be smuggled past either;
//! 5. `Server`'s answers begin with one whole, well-framed response per lean request, in
//!    order, each with the body the service gave.

#![no_main]

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderName, HeaderValue, Method, Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tower_eventstream::server::Server;

/// The longest one connection may take, either server's.
const LIMIT: Duration = Duration::from_secs(10);

/// `Server`'s defaults, which plain hyper is given too.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_HEAD_SIZE: usize = 16 * 1024;

/// One request as the service saw it.
#[derive(Debug, Clone)]
struct Seen {
    /// Answered by the lean path: its body is `Server`'s own empty `RequestBody`.
    lean: bool,
    method: Method,
    uri: Uri,
    version: Version,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// The whole body, if it could be read before the connection ended.
    body: Option<Bytes>,
}

impl Seen {
    /// What two servers must agree on: all but the headers hyper folds (a repeated
    /// `Content-Length` is kept once) and the body, read only while the connection lasts.
    fn head(&self) -> (Method, Uri, Version, Vec<(HeaderName, HeaderValue)>) {
        let mut headers = Vec::new();
        let mut length_seen = false;
        for (name, value) in &self.headers {
            if name == CONTENT_LENGTH {
                if length_seen {
                    continue;
                }
                length_seen = true;
            }
            headers.push((name.clone(), value.clone()));
        }
        (self.method.clone(), self.uri.clone(), self.version, headers)
    }

    /// Whether the lean path may answer a request with this head.
    fn lean_eligible(&self) -> bool {
        let has = |name: &HeaderName| self.headers.iter().any(|(n, _)| n == name);
        matches!(self.method, Method::GET | Method::HEAD)
            && matches!(self.version, Version::HTTP_10 | Version::HTTP_11)
            && !has(&TRANSFER_ENCODING)
            && !has(&UPGRADE)
            && !has(&EXPECT)
            && (self.headers.iter())
                .filter(|(name, _)| name == CONTENT_LENGTH)
                .all(|(_, value)| value == "0")
    }

    /// Whether the lean path must have answered this request, judged from hyper's view of
    /// it. hyper folds repeated `Content-Length`s of one number into one (`0` and `00`
    /// become `0`) while the lean path refuses anything but exactly `0`, so a request that
    /// shows a `Content-Length` may have been one the lean path rightly handed over.
    fn surely_lean_eligible(&self) -> bool {
        self.lean_eligible() && !self.headers.iter().any(|(name, _)| name == CONTENT_LENGTH)
    }

    /// The body the service answers with: of unknown length (so chunked, or delimited by
    /// closing for HTTP/1.0) when the path has an odd length, of a known length otherwise.
    fn reply(&self) -> Reply {
        if self.uri.path().len() % 2 == 1 {
            Reply::Frames(2)
        } else {
            Reply::Full(Some(Bytes::from_static(b"ok")))
        }
    }
}

/// A response body, ready at once: `Full` has an exact size, `Frames` yields `a`, `b`, …
/// with no size known.
enum Reply {
    Full(Option<Bytes>),
    Frames(u8),
}

impl Reply {
    fn expected(&self) -> &'static [u8] {
        match self {
            Reply::Full(_) => b"ok",
            Reply::Frames(_) => b"ab",
        }
    }
}

impl Body for Reply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.get_mut() {
            Reply::Full(bytes) => bytes.take(),
            Reply::Frames(0) => None,
            Reply::Frames(left) => {
                *left -= 1;
                Some(Bytes::from_static(if *left == 1 { b"a" } else { b"b" }))
            }
        };
        Poll::Ready(frame.map(|bytes| Ok(Frame::data(bytes))))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Reply::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Reply::Frames(_) => SizeHint::default(),
        }
    }
}

/// The service: records each request (its head at once, its body once read) and answers
/// `200` with [`Seen::reply`].
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl Recorder {
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl<B> tower_service::Service<Request<B>> for Recorder
where
    B: Body + std::fmt::Debug + Send + 'static,
    B::Data: Send,
{
    type Response = Response<Reply>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Reply>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // `RequestBody`'s Debug output is the one public sign of which path answered.
        let lean = format!("{:?}", request.body()) == "RequestBody { incoming: None }";
        let (parts, body) = request.into_parts();
        let seen = Seen {
            lean,
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: (parts.headers.iter())
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
            body: None,
        };
        let reply = seen.reply();
        let at = {
            let mut all = self.0.lock().unwrap();
            all.push(seen);
            all.len() - 1
        };
        let all = Arc::clone(&self.0);
        Box::pin(async move {
            let body = body.collect().await.ok().map(|collected| collected.to_bytes());
            all.lock().unwrap()[at].body = body;
            Ok(Response::new(reply))
        })
    }
}

struct Harness {
    listener: TcpListener,
    addr: SocketAddr,
    server: Server<Recorder>,
    server_seen: Recorder,
    hyper: auto::Builder<TokioExecutor>,
    hyper_seen: Recorder,
    /// Connections so far, to spread them over loopback source addresses.
    connections: usize,
}

impl Harness {
    /// Inside the runtime.
    async fn new() -> Harness {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback listener");
        let addr = listener.local_addr().expect("its address");
        let server_seen = Recorder::default();
        let server = Server::new(server_seen.clone())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_head_size(MAX_HEAD_SIZE);
        let mut hyper = auto::Builder::new(TokioExecutor::new());
        hyper
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_HEAD_SIZE);
        hyper.http2().timer(TokioTimer::new());
        // The one difference from `Server`'s hyper. With half-closures off (hyper's default,
        // and `Server`'s), hyper never dispatches the last request when the client's FIN is
        // already queued behind it, and whether it is depends on timing: the reference must
        // dispatch every request, and `Server` may miss the last one when hyper has the
        // connection (never when the lean path has it).
        hyper.http1().half_close(true);
        Harness {
            listener,
            addr,
            server,
            server_seen,
            hyper,
            hyper_seen: Recorder::default(),
            connections: 0,
        }
    }

    /// Sends `input` on a new connection and closes the sending side; serves the connection
    /// with `serve` while reading every answer; returns the answers.
    async fn exchange<F>(&mut self, input: &[u8], serve: impl FnOnce(TcpStream) -> F) -> Vec<u8>
    where
        F: Future<Output = ()>,
    {
        self.connections += 1;
        let socket = TcpSocket::new_v4().expect("a socket");
        let source = Ipv4Addr::new(127, 0, 0, 1 + (self.connections % 32) as u8);
        socket
            .bind(SocketAddr::from((source, 0)))
            .expect("bind a source address");
        let mut client = socket.connect(self.addr).await.expect("connect");
        let (accepted, _) = self.listener.accept().await.expect("accept");
        client.write_all(input).await.expect("send the input");
        client.shutdown().await.expect("close the sending side");
        let reading = async {
            let mut answers = Vec::new();
            // A reset after the last answer (the server closed with input unread) is fine.
            let _ = client.read_to_end(&mut answers).await;
            answers
        };
        let served = async { tokio::join!(serve(accepted), reading).1 };
        tokio::time::timeout(LIMIT, served)
            .await
            .expect("the connection ends once the client has sent everything")
    }
}

thread_local! {
    /// One thread, no other tasks: each connection is served the same way every time.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    static HARNESS: RefCell<Harness> = RefCell::new(RUNTIME.with(|runtime| runtime.block_on(Harness::new())));
}

fuzz_target!(|input: &[u8]| {
    let (answers, seen, reference) = HARNESS.with(|harness| {
        let harness = &mut *harness.borrow_mut();
        RUNTIME.with(|runtime| {
            runtime.block_on(async {
                let server = harness.server.clone();
                let answers = harness
                    .exchange(input, |stream| server.serve_connection(stream))
                    .await;
                let hyper = harness.hyper.clone();
                let hyper_seen = harness.hyper_seen.clone();
                harness
                    .exchange(input, |stream| async move {
                        let service = TowerToHyperService::new(hyper_seen);
                        let _ = hyper
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .await;
                    })
                    .await;
                (answers, harness.server_seen.take(), harness.hyper_seen.take())
            })
        })
    });
    check_lean_requests(&seen);
    check_against_hyper(&seen, &reference);
    // An HTTP/2 connection is answered in frames: there are no lean answers to check.
    if !input.starts_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") {
        check_lean_answers(&answers, &seen);
    }
});

/// Property 2 and 3.
fn check_lean_requests(seen: &[Seen]) {
    let lean = seen.iter().take_while(|request| request.lean).count();
    assert!(
        seen[lean..].iter().all(|request| !request.lean),
        "a lean request after hyper took the connection: {seen:#?}"
    );
    if seen.iter().any(|request| request.version == Version::HTTP_2) {
        assert_eq!(lean, 0, "HTTP/2 after lean requests: {seen:#?}");
    }
    for request in &seen[..lean] {
        assert!(request.lean_eligible(), "the lean path answered {request:#?}");
        assert_eq!(request.body.as_deref(), Some(&b""[..]), "{request:#?}");
        reparse(request);
    }
    if let Some(first) = seen.get(lean) {
        if first.version != Version::HTTP_2 {
            assert!(
                !first.surely_lean_eligible(),
                "hyper was handed a request the lean path answers: {first:#?}"
            );
        }
    }
}

/// Property 3: the head written back as text reads the same.
fn reparse(request: &Seen) {
    let mut text = format!("{} {} {:?}\r\n", request.method, request.uri, request.version).into_bytes();
    for (name, value) in &request.headers {
        text.extend_from_slice(name.as_str().as_bytes());
        text.extend_from_slice(b": ");
        text.extend_from_slice(value.as_bytes());
        text.extend_from_slice(b"\r\n");
    }
    text.extend_from_slice(b"\r\n");
    let mut headers = vec![httparse::EMPTY_HEADER; request.headers.len()];
    let mut parsed = httparse::Request::new(&mut headers);
    let status = parsed.parse(&text);
    assert!(
        matches!(status, Ok(httparse::Status::Complete(n)) if n == text.len()),
        "{status:?} for {:?}",
        String::from_utf8_lossy(&text)
    );
    assert_eq!(parsed.method, Some(request.method.as_str()));
    let uri: Uri = parsed
        .path
        .unwrap_or_default()
        .parse()
        .expect("the target parses again");
    assert_eq!(uri, request.uri);
    let version = if parsed.version == Some(1) {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    assert_eq!(version, request.version);
    let again: Vec<(&str, &[u8])> = parsed.headers.iter().map(|h| (h.name, h.value)).collect();
    let before: Vec<(&str, &[u8])> = (request.headers.iter())
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect();
    assert_eq!(again, before);
}

/// Property 4.
fn check_against_hyper(seen: &[Seen], reference: &[Seen]) {
    let heads: Vec<_> = seen.iter().map(Seen::head).collect();
    let reference_heads: Vec<_> = reference.iter().map(Seen::head).collect();
    let agreed = heads.len().min(reference_heads.len());
    assert_eq!(
        heads[..agreed],
        reference_heads[..agreed],
        "Server and hyper read different requests:\n{seen:#?}\nhyper:\n{reference:#?}"
    );
    for (request, same) in seen.iter().zip(reference) {
        if let (Some(body), Some(same_body)) = (&request.body, &same.body) {
            assert_eq!(body, same_body, "different bodies for {request:#?}");
        }
    }
    assert!(
        heads.len() <= reference_heads.len(),
        "Server saw requests hyper did not:\n{seen:#?}\nhyper:\n{reference:#?}"
    );
    if heads.len() < reference_heads.len() {
        // The lean path closes after an HTTP/1.0 request even when hyper would not.
        let closed_after_http10 = seen
            .last()
            .is_some_and(|last| last.lean && last.version == Version::HTTP_10);
        // hyper, with the connection, left the last request undispatched at the client's
        // FIN; it had the connection if it served a request already, or if the missing
        // request is one the lean path hands over.
        let missing = &reference[heads.len()];
        let hyper_had_it = seen.iter().any(|request| !request.lean) || !missing.surely_lean_eligible();
        let last_left_by_hyper = heads.len() + 1 == reference_heads.len() && hyper_had_it;
        assert!(
            closed_after_http10 || last_left_by_hyper,
            "Server stopped early:\n{seen:#?}\nhyper:\n{reference:#?}"
        );
    }
}

/// Property 5, for a connection that stays HTTP/1.
fn check_lean_answers(answers: &[u8], seen: &[Seen]) {
    let mut rest = answers;
    for request in seen.iter().take_while(|request| request.lean) {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        let head_len = match response.parse(rest) {
            Ok(httparse::Status::Complete(len)) => len,
            other => panic!(
                "no whole response for {request:#?}: {other:?} in {:?}",
                String::from_utf8_lossy(answers)
            ),
        };
        assert_eq!(response.version, Some(1));
        assert_eq!(response.code, Some(200));
        let header = |name: &str| {
            (response.headers.iter())
                .find(|header| header.name.eq_ignore_ascii_case(name))
                .map(|header| header.value)
        };
        let after = &rest[head_len..];
        let (body, used) = if request.method == Method::HEAD {
            (Vec::new(), 0)
        } else if let Some(length) = header("content-length") {
            let length: usize = std::str::from_utf8(length).unwrap().parse().unwrap();
            assert!(
                after.len() >= length,
                "a short body in {:?}",
                String::from_utf8_lossy(answers)
            );
            (after[..length].to_vec(), length)
        } else if header("transfer-encoding") == Some(b"chunked") {
            dechunk(after)
        } else {
            assert_eq!(
                request.version,
                Version::HTTP_10,
                "no framing in {:?}",
                String::from_utf8_lossy(answers)
            );
            (after.to_vec(), after.len())
        };
        let expected: &[u8] = if request.method == Method::HEAD {
            b""
        } else {
            request.reply().expected()
        };
        assert_eq!(
            body,
            expected,
            "for {request:#?} in {:?}",
            String::from_utf8_lossy(answers)
        );
        rest = &after[used..];
    }
    assert!(
        rest.is_empty() || rest.starts_with(b"HTTP/1.1 ") || rest.starts_with(b"HTTP/1.0 "),
        "not a response after the lean ones: {:?}",
        String::from_utf8_lossy(answers)
    );
}

/// A chunked body at the start of `bytes`: its data, and the bytes it took.
fn dechunk(bytes: &[u8]) -> (Vec<u8>, usize) {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at
            + bytes[at..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("a chunk size line");
        let size =
            usize::from_str_radix(std::str::from_utf8(&bytes[at..line_end]).unwrap(), 16).expect("hex");
        let data = line_end + 2;
        assert_eq!(&bytes[data + size..data + size + 2], b"\r\n", "a chunk's CRLF");
        body.extend_from_slice(&bytes[data..data + size]);
        at = data + size + 2;
        if size == 0 {
            return (body, at);
        }
    }
}
