//! What a client's cursor does on a stream over several topics, over real TCP, on SSE and on
//! long poll, with memory and Redis topics: a malformed cursor is `400` with its reason, a
//! cursor that cannot be placed starts every topic with a `reset` (never silently fresh), a
//! composite cursor resumes the topics it names exactly and starts the others fresh.

mod support;

#[allow(dead_code)]
#[path = "../examples/chat/app.rs"]
mod chat;

use std::net::SocketAddr;

use axum::Router;
use bytes::Bytes;
use http::Method;
use support::client::{long_poll, poll_cursor, request};
use support::server::{Serving, TestServer};
use support::sse::SseClient;
use tower_eventstream::{Event, MakeLog, MemoryLog, Topics, TopicsService};

/// Topics of one backend, served at `/events?topic=…`, and the cursors that backend judges.
struct Case<M: MakeLog> {
    topics: Topics<M>,
    server: TestServer,
    /// A well-formed position of this backend's logs that none of the test's topics issued.
    foreign: &'static str,
    /// Cursors this backend's logs could never have issued.
    malformed: &'static [&'static str],
}

impl<M: MakeLog> Case<M> {
    async fn new(topics: Topics<M>, foreign: &'static str, malformed: &'static [&'static str]) -> Self {
        let service = TopicsService::new(topics.clone());
        let server = TestServer::start(Serving::Axum, Router::new().route_service("/events", service)).await;
        Case {
            topics,
            server,
            foreign,
            malformed,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    async fn publish(&self, topic: &str, data: &str) {
        self.topics.append(topic, Event::new(data)).await.unwrap();
    }

    /// A real composite cursor naming `topics`, at their current ends.
    async fn cursor_of(&self, topics: &str) -> String {
        let (_, answer) = long_poll(self.addr(), &format!("/events?{topics}&timeout=0")).await;
        poll_cursor(&answer)
    }

    /// A long poll of `qa` and `qb` from `cursor`, held until something is ready.
    async fn poll(&self, cursor: &str) -> serde_json::Value {
        let path = format!("/events?topic=qa&topic=qb&timeout=5000&lastEventId={cursor}");
        long_poll(self.addr(), &path).await.1
    }

    /// An SSE stream of `qa` and `qb` from `cursor` (the response head comes once both are
    /// subscribed).
    async fn stream(&self, cursor: &str) -> SseClient {
        SseClient::connect(self.addr(), "/events?topic=qa&topic=qb", Some(cursor)).await
    }

    /// Waits until a client without a cursor starts `topic` after everything appended so far:
    /// at once in memory; on Redis once this process's window has read the appends back (a
    /// poll from a fresh start that stays empty for a while started after all of them).
    async fn settle(&self, topic: &str) {
        support::within("the window to catch up", async {
            loop {
                let (_, answer) = long_poll(self.addr(), &format!("/events?topic={topic}&timeout=200")).await;
                if answer["events"].as_array().is_some_and(Vec::is_empty) {
                    return;
                }
            }
        })
        .await;
    }
}

/// `(topic, name, data)` of each event of a long-poll answer.
fn polled(answer: &serde_json::Value) -> Vec<(String, String, String)> {
    let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_owned();
    answer["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events in {answer}"))
        .iter()
        .map(|event| (text(&event["topic"]), text(&event["event"]), text(&event["data"])))
        .collect()
}

/// `(type, data)` of an SSE event.
fn seen(event: &eventsource_stream::Event) -> (String, String) {
    (event.event.clone(), event.data.clone())
}

async fn malformed_cursors_are_400_with_the_reason<M: MakeLog>(case: &Case<M>) {
    let shared = ["lobby~zzz", "qa~1,qa~2", "..~1", "qa~", "qa~1,qb"];
    for cursor in case.malformed.iter().chain(&shared) {
        let path = format!("/events?topic=qa&topic=qb&timeout=0&lastEventId={cursor}");
        let answer = request(case.addr(), Method::GET, &path, &[], Bytes::new()).await;
        assert_eq!(
            answer.status.as_u16(),
            400,
            "long poll, cursor {cursor}: {}",
            answer.text()
        );
        assert!(!answer.text().is_empty(), "a reason for {cursor}");
        let headers: &[(&str, &[u8])] = &[
            ("accept", b"text/event-stream"),
            ("last-event-id", cursor.as_bytes()),
        ];
        let answer = request(
            case.addr(),
            Method::GET,
            "/events?topic=qa&topic=qb",
            headers,
            Bytes::new(),
        )
        .await;
        assert_eq!(
            answer.status.as_u16(),
            400,
            "SSE, cursor {cursor}: {}",
            answer.text()
        );
    }
    assert_eq!(case.topics.subscriber_count(), 0, "nothing stays subscribed");
}

async fn an_unplaceable_cursor_starts_every_topic_with_a_reset<M: MakeLog>(case: &Case<M>) {
    let other_stream = format!("lobby~{}", case.foreign);
    for cursor in [case.foreign.to_owned(), other_stream] {
        // Long poll: `"reset": true`, one reset event per topic, then exact continuity.
        let answer = case.poll(&cursor).await;
        assert_eq!(answer["reset"], true, "cursor {cursor}: {answer}");
        let mut resets = polled(&answer);
        resets.sort();
        let expected =
            [("qa", "reset", "qa"), ("qb", "reset", "qb")].map(|(t, n, d)| (t.into(), n.into(), d.into()));
        assert_eq!(resets, expected, "cursor {cursor}: {answer}");
        let next = poll_cursor(&answer);
        assert!(next.contains("qa~") && next.contains("qb~"), "{next}");
        case.publish("qb", "b1").await;
        let answer = case.poll(&next).await;
        assert_eq!(answer["reset"], false, "{answer}");
        assert_eq!(polled(&answer), [("qb".into(), "message".into(), "b1".into())]);

        // SSE: a `reset` naming each topic before anything else, then the events.
        let mut client = case.stream(&cursor).await;
        let mut first: Vec<_> = client.take(2).await.iter().map(seen).collect();
        first.sort();
        assert_eq!(
            first,
            [("reset".into(), "qa".into()), ("reset".into(), "qb".into())],
            "cursor {cursor}"
        );
        case.publish("qa", "a1").await;
        assert_eq!(seen(&client.next().await), ("qa:message".into(), "a1".into()));
        let resumed = client.last_event_id().to_owned();
        drop(client);
        case.publish("qb", "b2").await;
        let mut client = case.stream(&resumed).await;
        assert_eq!(
            seen(&client.next().await),
            ("qb:message".into(), "b2".into()),
            "no second reset"
        );
    }
}

async fn a_cursor_naming_some_topics_resumes_them_and_starts_the_others_fresh<M: MakeLog>(case: &Case<M>) {
    let cursor = case.cursor_of("topic=qa&topic=lobby").await;
    case.publish("qa", "a1").await;
    case.publish("qb", "b-before").await;
    case.settle("qb").await;

    let answer = case.poll(&cursor).await;
    assert_eq!(answer["reset"], false, "{answer}");
    assert_eq!(
        polled(&answer),
        [("qa".into(), "message".into(), "a1".into())],
        "qa exactly, qb fresh"
    );
    let next = poll_cursor(&answer);
    case.publish("qb", "b-after").await;
    let answer = case.poll(&next).await;
    assert_eq!(
        polled(&answer),
        [("qb".into(), "message".into(), "b-after".into())]
    );

    let mut client = case.stream(&cursor).await;
    assert_eq!(seen(&client.next().await), ("qa:message".into(), "a1".into()));
    case.publish("qb", "b-live").await;
    assert_eq!(
        seen(&client.next().await),
        ("qb:message".into(), "b-live".into()),
        "no reset, no b-before"
    );
}

async fn a_one_topic_request_reads_a_composite_cursor<M: MakeLog>(case: &Case<M>) {
    let cursor = case.cursor_of("topic=qa&topic=qb").await;
    case.publish("qa", "a1").await;
    // The cursor names the topic: it resumes, with the log's own ids from then on.
    let path = format!("/events?topic=qa&timeout=5000&lastEventId={cursor}");
    let (_, answer) = long_poll(case.addr(), &path).await;
    assert_eq!(answer["reset"], false, "{answer}");
    assert_eq!(answer["events"][0]["data"], "a1", "{answer}");
    assert!(!poll_cursor(&answer).contains('~'), "{answer}");
    // It does not: a gap.
    let path = format!("/events?topic=qc&timeout=0&lastEventId={cursor}");
    let (_, answer) = long_poll(case.addr(), &path).await;
    assert_eq!(answer["reset"], true, "{answer}");
    let mut client = SseClient::connect(case.addr(), "/events?topic=qc", Some(&cursor)).await;
    assert_eq!(client.next().await.event, "reset");
}

#[tokio::test]
async fn memory_malformed_cursors_are_400_with_the_reason() {
    let case = memory().await;
    malformed_cursors_are_400_with_the_reason(&case).await;
}

#[tokio::test]
async fn memory_an_unplaceable_cursor_starts_every_topic_with_a_reset() {
    an_unplaceable_cursor_starts_every_topic_with_a_reset(&memory().await).await;
}

#[tokio::test]
async fn memory_a_cursor_naming_some_topics_resumes_them_and_starts_the_others_fresh() {
    a_cursor_naming_some_topics_resumes_them_and_starts_the_others_fresh(&memory().await).await;
}

#[tokio::test]
async fn memory_a_one_topic_request_reads_a_composite_cursor() {
    a_one_topic_request_reads_a_composite_cursor(&memory().await).await;
}

#[tokio::test]
async fn memory_a_position_from_another_log_instance_is_a_reset_of_that_topic_only() {
    let case = memory().await;
    let cursor = case.cursor_of("topic=qb").await;
    case.publish("qa", "a0").await;
    case.publish("qb", "b1").await;
    let cursor = format!("qa~{},qb~{cursor}", case.foreign);
    let answer = case.poll(&cursor).await;
    assert_eq!(answer["reset"], true, "{answer}");
    let mut events = polled(&answer);
    events.sort();
    let expected = [
        ("qa", "message", "a0"),
        ("qa", "reset", "qa"),
        ("qb", "message", "b1"),
    ];
    assert_eq!(
        events,
        expected.map(|(t, n, d)| (t.into(), n.into(), d.into())),
        "{answer}"
    );

    let mut client = case.stream(&cursor).await;
    let got: Vec<_> = client.take(3).await.iter().map(seen).collect();
    let reset = got.iter().position(|e| *e == ("reset".into(), "qa".into()));
    let held = got.iter().position(|e| *e == ("qa:message".into(), "a0".into()));
    assert!(
        reset.is_some() && reset < held,
        "a reset of qa, then its held events: {got:?}"
    );
    assert!(got.contains(&("qb:message".into(), "b1".into())), "{got:?}");
}

/// The inputs measured on the chat example when its multi-room route still started silently
/// fresh: each is now a `400` or a `reset`.
#[tokio::test]
async fn the_chats_multi_room_route_never_starts_silently_fresh() {
    let rooms = Topics::new(MemoryLog::builder());
    let app = chat::router(rooms.clone(), tower_eventstream::StreamConfig::default());
    let server = TestServer::start(Serving::Axum, app).await;
    let rooms_query = "/api/events?room=qa&room=qb&timeout=0&lastEventId=";
    for cursor in ["xyz", "abc-1", "lobby~zzz"] {
        let answer = request(
            server.addr,
            Method::GET,
            &format!("{rooms_query}{cursor}"),
            &[],
            Bytes::new(),
        )
        .await;
        assert_eq!(answer.status.as_u16(), 400, "{cursor}: {}", answer.text());
    }
    // A real cursor of the lobby alone, kept from before the page followed several rooms.
    let (_, lobby) = long_poll(server.addr, "/api/events?timeout=0").await;
    let (_, answer) = long_poll(server.addr, &format!("{rooms_query}{}", poll_cursor(&lobby))).await;
    assert_eq!(answer["reset"], true, "{answer}");
}

async fn memory() -> Case<tower_eventstream::MemoryLogBuilder> {
    let malformed = &["xyz", "abc-1", "1700000000000-3", "qa~xyz,qb~deadbeef-1"];
    Case::new(Topics::new(MemoryLog::builder()), "deadbeef-5", malformed).await
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use support::redis::RedisServer;
    use tower_eventstream::{RedisLog, RedisLogs};

    async fn case(server: &RedisServer) -> Case<RedisLogs> {
        let logs = RedisLog::builder(server.url(), "cursors")
            .connect_logs()
            .await
            .expect("connect RedisLogs");
        let malformed = &["xyz", "abc-1", "deadbeef-5", "qa~xyz,qb~1-0"];
        Case::new(Topics::new(logs), "1700000000000-3", malformed).await
    }

    #[tokio::test]
    async fn redis_malformed_cursors_are_400_with_the_reason() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        malformed_cursors_are_400_with_the_reason(&case(&server).await).await;
    }

    #[tokio::test]
    async fn redis_an_unplaceable_cursor_starts_every_topic_with_a_reset() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        an_unplaceable_cursor_starts_every_topic_with_a_reset(&case(&server).await).await;
    }

    #[tokio::test]
    async fn redis_a_cursor_naming_some_topics_resumes_them_and_starts_the_others_fresh() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        a_cursor_naming_some_topics_resumes_them_and_starts_the_others_fresh(&case(&server).await).await;
    }

    #[tokio::test]
    async fn redis_a_one_topic_request_reads_a_composite_cursor() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        a_one_topic_request_reads_a_composite_cursor(&case(&server).await).await;
    }
}
