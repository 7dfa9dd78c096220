//! The chat example's HTTP contract over real TCP, on the server each includer names:
//! `tests/chat.rs` runs it on `axum::serve`, `tests/crate_server.rs` on the crate's own server.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, StatusCode};
use tower_eventstream::{MemoryLog, StreamConfig};

use crate::app;
use crate::support::client::{get, long_poll, poll_cursor, poll_events, post_message, request};
use crate::support::server::{Serving, TestServer};
use crate::support::sse::SseClient;

async fn chat(serving: Serving) -> (MemoryLog, SocketAddr, TestServer) {
    let log = MemoryLog::new();
    let server = TestServer::start(
        serving,
        app::router(app::memory_rooms(&log), StreamConfig::default()),
    )
    .await;
    (log, server.addr, server)
}

/// Posts `text` and returns the id of the stored event.
async fn post_ok(addr: SocketAddr, text: impl AsRef<[u8]>) -> String {
    let answer = post_message(addr, text).await;
    assert_eq!(
        answer.status,
        StatusCode::CREATED,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let json = answer.json();
    let object = json.as_object().expect("a JSON object");
    assert_eq!(object.len(), 1, "only the id: {json}");
    json["id"].as_str().expect("the id is a string").to_owned()
}

pub async fn a_posted_message_is_201_with_the_id_seen_on_the_sse_stream(serving: Serving) {
    let (_log, addr, _server) = chat(serving).await;
    let mut client = SseClient::connect(addr, "/api/events", None).await;

    let first = post_ok(addr, "hello, room").await;
    let second = post_ok(addr, "second\r\nmessage ✓").await;
    assert_ne!(first, second);

    let event = client.next().await;
    assert_eq!(
        (event.id.as_str(), event.event.as_str(), event.data.as_str()),
        (first.as_str(), "message", "hello, room")
    );
    let event = client.next().await;
    assert_eq!(
        (event.id.as_str(), event.event.as_str(), event.data.as_str()),
        (second.as_str(), "message", "second\nmessage ✓")
    );
}

pub async fn a_body_that_is_not_utf8_is_400(serving: Serving) {
    let (log, addr, _server) = chat(serving).await;
    let answer = post_message(addr, Bytes::from_static(b"caf\xe9 \xff")).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.text().contains("UTF-8"), "{:?}", answer.text());
    assert!(log.is_empty(), "nothing was published");
}

pub async fn a_body_of_64_kib_plus_one_is_413(serving: Serving) {
    let (log, addr, _server) = chat(serving).await;
    assert_eq!(app::MAX_MESSAGE_BYTES, 64 * 1024);
    let answer = post_message(addr, vec![b'a'; 64 * 1024 + 1]).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(log.is_empty(), "nothing was published");
}

pub async fn a_body_of_exactly_64_kib_is_201_and_arrives_whole(serving: Serving) {
    let (log, addr, _server) = chat(serving).await;
    let mut client = SseClient::connect(addr, "/api/events", None).await;
    let text: String = "0123456789abcdef".repeat(64 * 1024 / 16);
    assert_eq!(text.len(), 64 * 1024);

    let id = post_ok(addr, text.clone()).await;
    assert_eq!(log.len(), 1);
    let event = client.next().await;
    assert_eq!(event.id, id);
    assert_eq!(event.data.len(), text.len());
    assert!(event.data == text, "the 64 KiB message arrives unchanged");
}

pub async fn the_long_poll_view_sees_the_same_sequence_as_the_sse_view(serving: Serving) {
    let (_log, addr, _server) = chat(serving).await;
    let mut client = SseClient::connect(addr, "/api/events", None).await;
    let (_, start) = long_poll(addr, "/api/events?timeout=0").await;
    let cursor = poll_cursor(&start);

    let texts = ["one", "two\nlines", "", " spaced", "ünïcödé 🦀", "cr\rlf\r\n"];
    let mut posted = Vec::new();
    for text in texts {
        posted.push(post_ok(addr, text).await);
    }

    let sse: Vec<(String, String, String)> = client
        .take(texts.len())
        .await
        .into_iter()
        .map(|e| (e.id, e.event, e.data))
        .collect();

    let mut polled = Vec::new();
    let mut cursor = cursor;
    while polled.len() < texts.len() {
        let (_, answer) = long_poll(addr, &format!("/api/events?lastEventId={cursor}&timeout=2000")).await;
        assert_eq!(answer["reset"], false);
        let batch = poll_events(&answer);
        assert!(!batch.is_empty(), "the poll returned nothing: {answer}");
        polled.extend(batch);
        cursor = poll_cursor(&answer);
    }

    assert_eq!(polled, sse, "both views see the same events, in the same order");
    let ids: Vec<&String> = sse.iter().map(|(id, _, _)| id).collect();
    assert_eq!(ids, posted.iter().collect::<Vec<_>>(), "in the order posted");
    let data: Vec<&str> = sse.iter().map(|(_, _, data)| data.as_str()).collect();
    assert_eq!(
        data,
        ["one", "two\nlines", "", " spaced", "ünïcödé 🦀", "cr\nlf\n"]
    );
}

pub async fn the_page_is_served_at_the_root(serving: Serving) {
    let (_log, addr, _server) = chat(serving).await;
    let answer = get(addr, "/").await;
    assert_eq!(answer.status, StatusCode::OK);
    let content_type = answer.header("content-type").expect("a content type");
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(answer.text().contains("EventSource"), "the page uses EventSource");
    assert!(
        answer.text().contains("/api/rooms/"),
        "the page reads the rooms' routes"
    );
}

pub async fn the_events_route_refuses_posts_with_405(serving: Serving) {
    let (log, addr, _server) = chat(serving).await;
    let answer = request(addr, Method::POST, "/api/events", &[], Bytes::from_static(b"hi")).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(answer.header("allow").is_some_and(|allow| allow.contains("GET")));
    assert!(log.is_empty());
}

/// This suite's tests, each on `$serving`.
macro_rules! tests {
    ($serving:expr) => {
        $crate::support::server::tests_on! {
            $serving; chat; #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            a_posted_message_is_201_with_the_id_seen_on_the_sse_stream,
            a_body_that_is_not_utf8_is_400,
            a_body_of_64_kib_plus_one_is_413,
            a_body_of_exactly_64_kib_is_201_and_arrives_whole,
            the_long_poll_view_sees_the_same_sequence_as_the_sse_view,
            the_page_is_served_at_the_root,
            the_events_route_refuses_posts_with_405,
        }
    };
}
pub(crate) use tests;
