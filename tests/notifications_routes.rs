//! The notifications example's routes other than its streams' content, over real TCP on
//! `axum::serve`: `401` without a session, what the `POST` routes answer, and the page. (Its
//! streams: `tests/notifications.rs`.)

mod support;

#[path = "../examples/notifications/app.rs"]
mod app;

use bytes::Bytes;
use http::{Method, StatusCode};
use tower_eventstream::{MemoryLog, MemoryLogBuilder, StreamConfig, Topics};

use support::client::{get, post_created, post_text, request, Answer};
use support::server::{Serving, TestServer};

const EVENTS: &str = "/api/notifications";

async fn start(topics: &Topics<MemoryLogBuilder>) -> TestServer {
    TestServer::start(
        Serving::Axum,
        app::router(topics.clone(), StreamConfig::default()),
    )
    .await
}

/// `GET path` with `headers`.
async fn get_with(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &[u8])]) -> Answer {
    request(addr, Method::GET, path, headers, Bytes::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_session_sse_and_long_poll_are_401() {
    let topics = Topics::new(MemoryLog::builder());
    let server = start(&topics).await;
    let addr = server.addr;
    let too_long = format!("user={}", "x".repeat(33));
    let cookies = [
        None,
        Some("user="),
        Some("user=a%20b"),
        Some("user=a.b"),
        Some(too_long.as_str()),
        Some("other=ada"),
    ];
    for cookie in cookies {
        let mut headers = vec![];
        if let Some(cookie) = cookie {
            headers.push(("cookie", cookie.as_bytes()));
        }
        let long_poll = get_with(addr, &format!("{EVENTS}?timeout=0"), &headers).await;
        headers.push(("accept", b"text/event-stream"));
        let sse = get_with(addr, EVENTS, &headers).await;
        for (what, answer) in [("long poll", long_poll), ("SSE", sse)] {
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{what} with {cookie:?}");
            assert!(answer.text().contains("sign in"), "{what}: {}", answer.text());
        }
    }
    assert!(topics.is_empty(), "no topic was opened");
    // Among other cookies, `user` is found.
    let headers: &[(&str, &[u8])] = &[("cookie", b"theme=dark; user=ada; lang=en")];
    let answer = get_with(addr, &format!("{EVENTS}?timeout=0"), headers).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posting_answers_201_with_the_events_id_or_400_or_413() {
    let topics = Topics::new(MemoryLog::builder());
    let server = start(&topics).await;
    let addr = server.addr;
    let paths = [
        ("/api/users/ada/notifications", "user-ada"),
        ("/api/announcements", app::ANNOUNCEMENTS),
        ("/api/audit", app::AUDIT),
    ];
    for (path, topic) in paths {
        let first = post_created(addr, path, "one").await;
        let second = post_created(addr, path, "two\nlines").await;
        assert_ne!(first, second, "{path}");
        // The id is the stored event's, in its topic (what a subscriber sees of it:
        // `tests/notifications.rs`).
        let log = topics.log(topic).await.unwrap();
        assert_eq!(
            (log.len(), log.position().as_str()),
            (2, second.as_str()),
            "{path}"
        );

        let empty = post_text(addr, path, Bytes::new()).await;
        assert_eq!(empty.status, StatusCode::BAD_REQUEST, "{path}: empty body");
        let binary = post_text(addr, path, Bytes::from_static(b"\xff\xfe")).await;
        assert_eq!(binary.status, StatusCode::BAD_REQUEST, "{path}: not UTF-8");
        assert!(binary.text().contains("UTF-8"), "{}", binary.text());
        let large = post_text(addr, path, vec![b'x'; app::MAX_TEXT_BYTES + 1]).await;
        assert_eq!(large.status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: too large");
    }
    let too_long = "x".repeat(33);
    for user in ["a%20b", "a.b", "caf%C3%A9", &too_long, "a~b", "."] {
        let answer = post_text(addr, &format!("/api/users/{user}/notifications"), "hi").await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{user}: {}",
            answer.text()
        );
        assert!(answer.text().contains("not a user name"), "{}", answer.text());
    }
    post_created(
        addr,
        &format!("/api/users/{}/notifications", "x".repeat(32)),
        "fits",
    )
    .await;
    // Nothing but the three topics and the longest user's.
    assert_eq!(topics.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_at_the_root() {
    let server = start(&Topics::new(MemoryLog::builder())).await;
    let page = get(server.addr, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    let content_type = page.header("content-type").expect("a content type");
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(page.text().contains("new EventSource('/api/notifications')"));
}
