//! A publisher whose answer is lost after the server appended retries with the same
//! `Idempotency-Key`: exactly one event reaches subscribers. Over real TCP, through a proxy
//! that drops the first answer: on the chat with memory rooms, and (feature `redis`) across
//! two chat instances on one Redis, the retry landing on the other instance.

mod support;

#[path = "../examples/chat/app.rs"]
mod app;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::proxy::DroppingProxy;
use support::server::{Serving, TestServer};
use support::sse::SseClient;
use support::within;

/// One `POST` on a new connection through `addr`: the status and body, or `None` when the
/// connection ended without an answer.
async fn post_once(addr: SocketAddr, path: &str, key: &str, text: &str) -> Option<(u16, String)> {
    let mut stream = within("connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Idempotency-Key: {key}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    // A reset counts as no answer, as for a client whose connection broke.
    let _ = within("the answer", stream.read_to_end(&mut answer)).await;
    if answer.is_empty() {
        return None;
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.get(9..12)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())?;
    Some((status, body))
}

/// The id in a `201` answer's `{"id":"…"}`.
fn id_of(body: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(body.trim()).expect("a JSON answer");
    json["id"].as_str().expect("an id").to_owned()
}

/// Publishes `text` through the proxy: the first attempt's answer is lost, the retry (same
/// key) is answered. Returns the retry's id.
async fn publish_with_a_lost_answer(proxy: &DroppingProxy, path: &str, text: &str) -> String {
    let key = "retry-7f3a";
    assert_eq!(
        post_once(proxy.addr, path, key, text).await,
        None,
        "the first answer is lost"
    );
    let (status, body) = post_once(proxy.addr, path, key, text)
        .await
        .expect("the retry is answered");
    assert_eq!(status, 201, "{body}");
    id_of(&body)
}

/// The subscriber got exactly one event, `text` with `id`, and nothing after it.
async fn exactly_one(subscriber: &mut SseClient, id: &str, text: &str) {
    let event = subscriber.next().await;
    assert_eq!((event.id.as_str(), event.data.as_str()), (id, text));
    assert!(
        subscriber.next_within(Duration::from_millis(500)).await.is_none(),
        "one event: the retry appended nothing"
    );
}

#[tokio::test]
async fn a_retry_after_a_lost_answer_publishes_once_in_memory() {
    let lobby = tower_eventstream::MemoryLog::new();
    let server = TestServer::start(
        Serving::Axum,
        app::router(app::memory_rooms(&lobby), app::config()),
    )
    .await;
    let proxy = DroppingProxy::start(vec![server.addr], 1).await;
    let mut subscriber = SseClient::connect(server.addr, "/api/rooms/kitchen/events", None).await;

    let id = publish_with_a_lost_answer(&proxy, "/api/rooms/kitchen/messages", "kettle on").await;
    exactly_one(&mut subscriber, &id, "kettle on").await;
    assert_eq!(proxy.accepted(), 2);
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_retry_after_a_lost_answer_publishes_once_across_two_redis_instances() {
    use support::redis::RedisServer;
    use tower_eventstream::{RedisLog, StreamConfig, Topics};

    let Some(redis) = RedisServer::start() else { return };
    let instance = || async {
        let rooms = within("connect", RedisLog::builder(redis.url(), "chat:").connect_logs())
            .await
            .expect("connect");
        TestServer::start(
            Serving::Axum,
            app::router(Topics::new(rooms), StreamConfig::default()),
        )
        .await
    };
    let (first, second) = (instance().await, instance().await);
    // The first attempt goes to the first instance, whose answer is lost; the retry to the
    // second.
    let proxy = DroppingProxy::start(vec![first.addr, second.addr], 1).await;
    let mut subscriber = SseClient::connect(second.addr, "/api/rooms/kitchen/events", None).await;

    let id = publish_with_a_lost_answer(&proxy, "/api/rooms/kitchen/messages", "kettle on").await;
    exactly_one(&mut subscriber, &id, "kettle on").await;
    let mut other = SseClient::connect(first.addr, "/api/rooms/kitchen/events?lastEventId=0-0", None).await;
    exactly_one(&mut other, &id, "kettle on").await;
}
