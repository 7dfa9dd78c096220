//! `tower_eventstream::server::Server` over real TCP: what it does beyond the suites that
//! `tests/crate_server.rs` runs on it (keep-alive, pipelining, HTTP/1.0, hand-over to
//! hyper, limits, failing bodies, shutdown). Requests are written byte for byte.
#![cfg(feature = "server")]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use support::server::TestServer;
use support::{wait_until, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_eventstream::server::Server;
use tower_eventstream::{Event, EventLogService, MemoryLog, Shutdown, StreamConfig};

/// `server` serving on a free port, as an application's `main` runs it.
async fn start(server: Server<Router>) -> TestServer {
    TestServer::serve_with(|listener, signal| async move {
        server.serve_with_shutdown(listener, signal).await;
        Ok(())
    })
    .await
}

fn app(log: &MemoryLog) -> Router {
    let config = StreamConfig::default().max_wait(Duration::from_millis(300));
    Router::new()
        .route_service("/events", EventLogService::new(log.clone()).with_config(config))
        .route(
            "/text",
            get(|| async { "hello" }).post(|body: String| async move { format!("got {body}") }),
        )
        .route(
            "/failing",
            get(|| async {
                let frames = stream::iter([
                    Ok(Frame::data(Bytes::from_static(b"partial"))),
                    Err(std::io::Error::other("the source broke")),
                ]);
                axum::body::Body::new(StreamBody::new(frames))
            }),
        )
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

/// Reads until `needle` has been seen `times` times in all that was read.
async fn read_until(stream: &mut TcpStream, needle: &str, times: usize) -> String {
    let mut all = Vec::new();
    within(&format!("{needle:?} ×{times}"), async {
        while String::from_utf8_lossy(&all).matches(needle).count() < times {
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed before {needle:?} ×{times}: {:?}",
                String::from_utf8_lossy(&all)
            );
            all.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    String::from_utf8(all).unwrap()
}

/// Reads until the server closes the connection.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut all = Vec::new();
    within("the server to close the connection", stream.read_to_end(&mut all))
        .await
        .unwrap();
    String::from_utf8_lossy(&all).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_and_pipelined_requests_are_answered_in_order_on_one_connection() {
    let log = MemoryLog::new();
    let server = start(Server::new(app(&log))).await;
    let mut stream = connect(server.addr).await;
    stream
        .write_all(b"GET /text HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let first = read_until(&mut stream, "hello", 1).await;
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
    assert!(first.contains("content-length: 5\r\n"), "{first}");
    assert!(first.contains("\r\ndate: "), "{first}");

    // Three requests in one write: a short poll from the start of the log, a page, a HEAD.
    log.push(Event::new("e1")).unwrap();
    let poll = format!(
        "GET /events?timeout=0&lastEventId={}-0 HTTP/1.1\r\nHost: a\r\n\r\n",
        log.epoch()
    );
    stream
        .write_all(
            &[
                poll.as_bytes(),
                b"\
              GET /text HTTP/1.1\r\nHost: a\r\n\r\n\
              HEAD /text HTTP/1.1\r\nHost: a\r\n\r\n",
            ]
            .concat(),
        )
        .await
        .unwrap();
    let answers = read_until(&mut stream, "HTTP/1.1 200 OK", 3).await;
    let poll = answers.find("\"e1\"").expect("the poll's event");
    let page = answers.find("hello").expect("the page");
    assert!(poll < page, "{answers}");
    let head = &answers[page..];
    assert!(
        head.contains("content-length: 5\r\n"),
        "HEAD keeps the length: {answers}"
    );
    assert!(
        !head.contains("hello\r\n") && head.ends_with("\r\n\r\n"),
        "HEAD has no body: {answers}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_hands_the_connection_to_hyper_which_answers_it_and_the_rest() {
    let server = start(Server::new(app(&MemoryLog::new()))).await;
    let mut stream = connect(server.addr).await;
    stream
        .write_all(
            b"POST /text HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi\
              GET /text HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let answers = read_to_close(&mut stream).await;
    assert!(answers.contains("got hi"), "{answers}");
    assert!(answers.matches("HTTP/1.1 200 OK").count() == 2, "{answers}");
    assert!(answers.ends_with("hello"), "{answers}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_with_prior_knowledge_goes_to_hyper() {
    let log = MemoryLog::new();
    let server = start(Server::new(app(&log))).await;
    let io = hyper_util::rt::TokioIo::new(connect(server.addr).await);
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    tokio::spawn(connection);
    log.push(Event::new("over h2")).unwrap();
    let uri = format!(
        "http://{}/events?timeout=0&lastEventId={}-0",
        server.addr,
        log.epoch()
    );
    let request = http::Request::get(uri).body(Empty::<Bytes>::new()).unwrap();
    let response = within("the response", sender.send_request(request))
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("over h2"), "{body:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http10_stream_is_delimited_by_closing_the_connection() {
    let log = MemoryLog::new();
    let shutdown = Shutdown::new();
    let config = StreamConfig::default().shutdown(shutdown.clone());
    let router =
        Router::new().route_service("/events", EventLogService::new(log.clone()).with_config(config));
    let server = start(Server::new(router)).await;
    let mut stream = connect(server.addr).await;
    stream
        .write_all(b"GET /events HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let opening = read_until(&mut stream, ":ok\n", 1).await;
    log.push(Event::new("one")).unwrap();
    read_until(&mut stream, "data: one\n\n", 1).await;
    assert!(opening.starts_with("HTTP/1.1 200 OK\r\n"), "{opening}");
    assert!(opening.contains("connection: close\r\n"), "{opening}");
    assert!(
        !opening.contains("chunked"),
        "no chunked coding for HTTP/1.0: {opening}"
    );
    shutdown.trigger();
    let rest = read_to_close(&mut stream).await;
    assert!(
        rest.contains("retry:"),
        "the stream ends with a retry hint: {rest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_over_the_size_limit_is_431_and_closed() {
    let server = start(Server::new(app(&MemoryLog::new())).max_head_size(4096)).await;
    let mut stream = connect(server.addr).await;
    let mut request = b"GET /text HTTP/1.1\r\nX-Big: ".to_vec();
    request.resize(request.len() + 5000, b'a');
    request.extend_from_slice(b"\r\n\r\n");
    // The server may close before it has read everything: a failed write is fine.
    let _ = stream.write_all(&request).await;
    let answer = read_to_close(&mut stream).await;
    assert!(
        answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_400_and_closed() {
    let server = start(Server::new(app(&MemoryLog::new()))).await;
    let mut stream = connect(server.addr).await;
    stream
        .write_all(b"GET /text HTTP/1.1\r\nBad Header\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_too_slow_to_send_its_head_is_disconnected() {
    let server =
        start(Server::new(app(&MemoryLog::new())).header_read_timeout(Duration::from_millis(200))).await;
    let mut stream = connect(server.addr).await;
    stream.write_all(b"GET /text HTTP/1.1\r\nHo").await.unwrap();
    let started = std::time::Instant::now();
    assert_eq!(read_to_close(&mut stream).await, "");
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );

    // An idle kept-alive connection is closed after the same time.
    let mut stream = connect(server.addr).await;
    stream.write_all(b"GET /text HTTP/1.1\r\n\r\n").await.unwrap();
    let answer = read_to_close(&mut stream).await;
    assert!(answer.ends_with("hello"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_fails_midway_ends_the_connection_without_the_last_chunk() {
    let server = start(Server::new(app(&MemoryLog::new()))).await;
    let mut stream = connect(server.addr).await;
    stream.write_all(b"GET /failing HTTP/1.1\r\n\r\n").await.unwrap();
    let answer = read_to_close(&mut stream).await;
    assert!(answer.contains("transfer-encoding: chunked\r\n"), "{answer}");
    assert!(
        answer.ends_with("7\r\npartial\r\n"),
        "no terminating chunk: {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_long_poller_releases_its_subscription_at_once() {
    let log = MemoryLog::new();
    let server = start(Server::new(app(&log))).await;
    let mut stream = connect(server.addr).await;
    stream
        .write_all(b"GET /events?timeout=60000 HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    wait_until("the request's subscription", || log.subscriber_count() == 1).await;
    drop(stream);
    wait_until("the subscription to be released", || log.subscriber_count() == 0).await;
    // Long before the 300 ms wait ends.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections_lets_a_pending_poll_answer_and_returns() {
    let log = MemoryLog::new();
    let mut server = start(Server::new(app(&log))).await;
    let mut idle = connect(server.addr).await;
    idle.write_all(b"GET /text HTTP/1.1\r\n\r\n").await.unwrap();
    read_until(&mut idle, "hello", 1).await;
    let mut polling = connect(server.addr).await;
    polling.write_all(b"GET /events HTTP/1.1\r\n\r\n").await.unwrap();
    wait_until("the request's subscription", || log.subscriber_count() == 1).await;

    server.begin_shutdown();
    assert_eq!(
        read_to_close(&mut idle).await,
        "",
        "the idle connection is closed"
    );
    log.push(Event::new("last")).unwrap();
    let answer = read_to_close(&mut polling).await;
    assert!(
        answer.contains("\"last\""),
        "the pending poll is answered: {answer}"
    );
    assert!(answer.contains("connection: close\r\n"), "{answer}");
    let addr = server.addr;
    server.stopped().await.expect("serve returns");
    assert!(TcpStream::connect(addr).await.is_err(), "no longer accepting");
}
