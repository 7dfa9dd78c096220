//! HTTP/2 (h2c, prior knowledge) through hyper-util's auto builder: many SSE streams share
//! one connection, responses carry no connection-specific headers, keep-alive comments and
//! shutdown behave as on HTTP/1.1.

mod support;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use http::{Method, Request, StatusCode, Version};
use tower::ServiceExt;
use tower_eventstream::{Event, EventLogService, MemoryLog, Shutdown, StreamConfig};

use support::client::Http2;
use support::server::TestServer;
use support::sse::field_values;

const SSE: (&str, &[u8]) = ("accept", b"text/event-stream");

/// The graceful shutdown is over within this, every stream ended and every poll answered.
const SHUTDOWN: Duration = Duration::from_secs(1);

/// Headers that are about one hop (one HTTP/1.1 connection) and are malformed in HTTP/2.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

fn assert_no_hop_by_hop(headers: &http::HeaderMap, what: &str) {
    for name in HOP_BY_HOP {
        assert!(headers.get(name).is_none(), "{what} carries `{name}`");
    }
}

#[tokio::test]
async fn fifty_sse_streams_share_one_connection() {
    const STREAMS: usize = 50;
    let log = MemoryLog::new();
    let server = TestServer::hyper_util(EventLogService::new(log.clone()), None).await;
    let client = Http2::connect(server.addr).await;

    let mut streams = join_all((0..STREAMS).map(|_| client.send(Method::GET, "/events", &[SSE]))).await;
    for stream in &streams {
        assert_eq!(stream.head.status, StatusCode::OK);
        assert_eq!(stream.head.version, Version::HTTP_2);
        assert_eq!(stream.header("content-type"), Some("text/event-stream"));
        assert_no_hop_by_hop(&stream.head.headers, "an SSE response over HTTP/2");
    }
    join_all(streams.iter_mut().map(|s| s.read_until("\n\n"))).await;
    assert_eq!(log.subscriber_count(), STREAMS);
    assert_eq!(server.accepted(), 1, "the streams did not share one connection");

    for n in 1..=3 {
        let stored = log.push(Event::new(format!("event {n}"))).unwrap();
        let blocks = join_all(streams.iter_mut().map(|s| s.read_until("\n\n"))).await;
        for block in blocks {
            assert_eq!(field_values(&block, "data"), [format!("event {n}")]);
            assert_eq!(field_values(&block, "id"), [stored.id().unwrap().as_str()]);
        }
    }

    // A long poll on the same connection, beside the streams.
    let mut poll = client.send(Method::GET, "/events?timeout=0", &[]).await;
    assert_eq!(poll.head.status, StatusCode::OK);
    assert_no_hop_by_hop(&poll.head.headers, "a long-poll answer over HTTP/2");
    let json: serde_json::Value = serde_json::from_slice(&poll.collect().await).expect("JSON");
    assert_eq!(json["events"], serde_json::json!([]));

    // Dropping the client's streams releases the server's subscriptions.
    drop(streams);
    support::wait_until("the subscriptions to be released", || log.subscriber_count() == 0).await;
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn keep_alive_and_shutdown_work_as_on_http1() {
    let log = MemoryLog::new();
    let shutdown = Shutdown::new();
    let config = StreamConfig::default()
        .keep_alive(Duration::from_millis(100))
        .shutdown(shutdown.clone());
    let mut server = TestServer::hyper_util(
        EventLogService::new(log.clone()).with_config(config),
        Some(shutdown),
    )
    .await;
    let client = Http2::connect(server.addr).await;

    let mut streams = join_all((0..10).map(|_| client.send(Method::GET, "/events", &[SSE]))).await;
    join_all(streams.iter_mut().map(|s| s.read_until("\n\n"))).await;
    // Idle streams get keep-alive comments.
    let comments = join_all(streams.iter_mut().map(|s| s.read_until("\n"))).await;
    assert!(comments.iter().all(|c| c == ":\n"), "{comments:?}");

    // A long poll waiting on the same connection.
    let position = log.position();
    let poll_client = client.clone();
    let path = format!("/events?lastEventId={position}&timeout=20000");
    let poll = tokio::spawn(async move { poll_client.send(Method::GET, &path, &[]).await });
    support::wait_until("the long poll to wait", || log.subscriber_count() == 11).await;

    let began = Instant::now();
    server.begin_shutdown();
    // Each stream ends cleanly after a `retry:` hint.
    let tails = join_all(
        streams
            .iter_mut()
            .map(|s| tokio::time::timeout(SHUTDOWN, s.read_to_end())),
    )
    .await;
    for tail in tails {
        let tail = tail.expect("the stream ended within 1 s of the shutdown");
        assert!(tail.contains("retry: "), "no retry hint before the end: {tail:?}");
    }
    // The long poll is answered at once with the empty shape.
    let mut answer = tokio::time::timeout(SHUTDOWN, poll)
        .await
        .expect("the long poll answered within 1 s of the shutdown")
        .expect("long poll task");
    assert_eq!(answer.head.status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_slice(&answer.collect().await).expect("JSON");
    assert_eq!(
        json,
        serde_json::json!({"events": [], "lastEventId": position.as_str(), "reset": false})
    );
    tokio::time::timeout(SHUTDOWN, server.stopped())
        .await
        .expect("the server stopped within 1 s of the shutdown")
        .expect("the server stopped cleanly");
    assert!(began.elapsed() < SHUTDOWN);
}

/// The service itself never sets a connection-specific header, on any kind of answer (hyper
/// would strip them on HTTP/2 and warn, so checking the wire alone would prove nothing).
#[tokio::test]
async fn no_answer_sets_a_hop_by_hop_header() {
    let log = MemoryLog::new();
    log.push(Event::new("x")).unwrap();
    let service = EventLogService::new(log.clone());
    let cases = [
        ("GET", "/events", Some("text/event-stream")),
        ("HEAD", "/events", Some("text/event-stream")),
        ("GET", "/events?timeout=0", None),
        ("HEAD", "/events?timeout=0", None),
        ("GET", "/events?timeout=soon", None),
        ("GET", "/events?lastEventId=nope", None),
        ("POST", "/events", None),
    ];
    for (method, uri, accept) in cases {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let response = service.clone().oneshot(request.body(()).unwrap()).await.unwrap();
        assert_no_hop_by_hop(
            response.headers(),
            &format!("{method} {uri} ({})", response.status()),
        );
    }
}
