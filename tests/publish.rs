//! `PublishService` over real TCP on `axum::serve`, on memory topics: every answer it gives
//! (`201` for text and JSON bodies, `400`, `401`/`403`, `404`, `405`, `409`, `413` by
//! `Content-Length` and by a chunked body, `415`, `422`, `503` + `Retry-After`), and
//! `Idempotency-Key`: a repeat, sequential or concurrent, publishes once and is answered with
//! the first id. What subscribers receive is read from a `TopicsService` stream. And the
//! GUIDE's `curl` line against the chat example, whose `POST` routes are this service.

mod support;

#[path = "../examples/chat/app.rs"]
mod app;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http::{Method, StatusCode};
use tower_eventstream::{
    Event, MemoryLog, MemoryLogBuilder, PublishService, Refusal, StartPosition, StreamConfig, Topics,
    TopicsService,
};

use support::client::{request, Answer};
use support::raw::exchange;
use support::server::{Serving, TestServer};
use support::sse::SseClient;

/// The bound of the `/small` route.
const SMALL: usize = 16;

type MemoryTopics = Topics<MemoryLogBuilder>;

/// A server with publish routes over three registries, and subscribers' streams.
struct Hub {
    /// Made on first use; read at `/topics/{topic}/events` from the oldest event.
    topics: MemoryTopics,
    /// Request-scoped: `/jobs/{job}`.
    jobs: MemoryTopics,
    /// At most one topic: `/limited?topic=`.
    limited: MemoryTopics,
    server: TestServer,
}

impl Hub {
    async fn start() -> Hub {
        let topics = Topics::new(MemoryLog::builder());
        let jobs = Topics::builder(MemoryLog::builder()).created_explicitly().build();
        let limited = Topics::builder(MemoryLog::builder()).max_topics(1).build();
        let events = TopicsService::new(topics.clone())
            .key_from_path(1)
            .with_config(StreamConfig::default().start(StartPosition::Oldest));
        let publish = PublishService::new(topics.clone());
        let router = Router::new()
            .route_service("/topics/{topic}/events", events)
            .route_service("/publish", publish.clone())
            .route_service(
                "/rooms/{room}/messages",
                publish.clone().key_from_path(1).event_name("message"),
            )
            .route_service(
                "/lobby/messages",
                publish.clone().default_topic("lobby").fixed_event_name("message"),
            )
            .route_service(
                "/plain",
                publish.clone().accept_only(&["text/plain", "Text/Markdown"]),
            )
            .route_service("/small", publish.clone().max_body_bytes(SMALL))
            .route_service("/raw", publish.clone().body_as_data())
            .route_service("/required", publish.clone().require_data())
            .route_service(
                "/brief",
                publish.clone().idempotency_window(Duration::from_millis(200)),
            )
            .route_service("/guarded/{topic}", publish.key_from_path(1).authorize(guard))
            .route_service("/jobs/{job}", PublishService::new(jobs.clone()).key_from_path(1))
            .route_service("/limited", PublishService::new(limited.clone()));
        let server = TestServer::start(Serving::Axum, router).await;
        Hub {
            topics,
            jobs,
            limited,
            server,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// `POST path` with `headers` and `body`.
    async fn post(&self, path: &str, headers: &[(&str, &[u8])], body: impl Into<Bytes>) -> Answer {
        request(self.addr(), Method::POST, path, headers, body).await
    }

    /// A subscriber of `topic`, from its oldest event.
    async fn subscribe(&self, topic: &str) -> SseClient {
        SseClient::connect(self.addr(), &format!("/topics/{topic}/events"), None).await
    }

    /// How many events `topic` holds (0 if it does not exist).
    fn held(&self, topic: &str) -> usize {
        self.topics.get(topic).map_or(0, |log| log.len())
    }
}

/// Who may publish at `/guarded/{topic}`: the header `x-user`.
fn guard(parts: &http::request::Parts, topic: &str) -> Result<(), Refusal> {
    match parts.headers.get("x-user").map(|user| user.as_bytes()) {
        None => Err(Refusal::unauthorized("sign in to publish")),
        Some(b"mallory") => Err(Refusal::forbidden(format!("mallory may not publish to {topic}"))),
        Some(b"during-outage") => Err(Refusal::unavailable("the session store is away")),
        Some(_) => Ok(()),
    }
}

/// Request headers, values as bytes.
type Headers<'a> = &'a [(&'a str, &'a [u8])];

const TEXT: (&str, &[u8]) = ("content-type", b"text/plain; charset=utf-8");
const JSON: (&str, &[u8]) = ("content-type", b"application/json");

/// `answer` is `201` with `application/json` `{"id":"…"}`: the id.
fn created(answer: &Answer) -> String {
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let json = answer.json();
    assert_eq!(json.as_object().map(|object| object.len()), Some(1), "{json}");
    json["id"].as_str().expect("the id is a string").to_owned()
}

/// `answer` is `status` in plain text, saying `reason`.
fn refused(answer: &Answer, status: u16, reason: &str) {
    assert_eq!(answer.status.as_u16(), status, "{}", answer.text());
    let content_type = answer.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert!(
        answer.text().contains(reason),
        "{status} without {reason:?}: {}",
        answer.text()
    );
}

/// The subscriber's next event: `(id, name, data)`.
async fn next(subscriber: &mut SseClient) -> (String, String, String) {
    let event = subscriber.next().await;
    (event.id, event.event, event.data)
}

/// Appends a last event to `topic` and reads up to it: every event the subscriber gets before
/// it, so a test sees that nothing else came.
async fn rest(hub: &Hub, topic: &str, subscriber: &mut SseClient) -> Vec<(String, String, String)> {
    hub.topics
        .append(topic, Event::new("end").with_name("end").unwrap())
        .await
        .unwrap();
    let mut events = Vec::new();
    loop {
        let event = next(subscriber).await;
        if event.1 == "end" {
            return events;
        }
        events.push(event);
    }
}

// ---------------------------------------------------------------------------------------
// 201
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_body_is_published_and_answered_with_its_id() {
    let hub = Hub::start().await;
    let mut subscriber = hub.subscribe("news").await;
    let first = created(&hub.post("/publish?topic=news", &[TEXT], "hello, world").await);
    // No type, or a form's (what `curl -d` sends): the body is the text all the same.
    let second = created(&hub.post("/publish?topic=news", &[], "line one\r\nline two").await);
    let form = ("content-type", &b"application/x-www-form-urlencoded"[..]);
    let third = created(&hub.post("/publish?topic=news", &[form], "a=1&b=2").await);
    let empty = created(&hub.post("/publish?topic=news", &[TEXT], "").await);
    assert_eq!(
        rest(&hub, "news", &mut subscriber).await,
        [
            (first, "message".into(), "hello, world".into()),
            (second, "message".into(), "line one\nline two".into()),
            (third, "message".into(), "a=1&b=2".into()),
            (empty, "message".into(), "".into()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_name_comes_from_the_query_the_header_or_the_route() {
    let hub = Hub::start().await;
    let mut subscriber = hub.subscribe("news").await;
    let by_query = created(&hub.post("/publish?topic=news&event=alert", &[TEXT], "q").await);
    let by_header = created(
        &hub.post("/publish?topic=news", &[TEXT, ("event-name", b"alert")], "h")
            .await,
    );
    let both = ("event-name", &b"alert"[..]);
    let agreeing = created(
        &hub.post("/publish?event=alert&topic=news", &[TEXT, both], "b")
            .await,
    );
    let decoded = created(
        &hub.post("/publish?topic=news&event=caf%C3%A9+au+lait", &[TEXT], "d")
            .await,
    );
    assert_eq!(
        rest(&hub, "news", &mut subscriber).await,
        [
            (by_query, "alert".into(), "q".into()),
            (by_header, "alert".into(), "h".into()),
            (agreeing, "alert".into(), "b".into()),
            (decoded, "café au lait".into(), "d".into()),
        ]
    );

    // A route's name is the default; a request may name another, unless the name is fixed.
    let mut kitchen = hub.subscribe("kitchen").await;
    let plain = created(&hub.post("/rooms/kitchen/messages", &[TEXT], "kettle").await);
    let named = created(
        &hub.post("/rooms/kitchen/messages?event=typing", &[TEXT], "ada")
            .await,
    );
    assert_eq!(
        rest(&hub, "kitchen", &mut kitchen).await,
        [
            (plain, "message".into(), "kettle".into()),
            (named, "typing".into(), "ada".into()),
        ]
    );
    let mut lobby = hub.subscribe("lobby").await;
    let fixed = created(&hub.post("/lobby/messages?event=message", &[TEXT], "hi").await);
    refused(
        &hub.post("/lobby/messages?event=reset", &[TEXT], "x").await,
        400,
        "`message` events only",
    );
    refused(
        &hub.post("/lobby/messages", &[TEXT, ("event-name", b"checkpoint")], "x")
            .await,
        400,
        "not `checkpoint`",
    );
    assert_eq!(
        rest(&hub, "lobby", &mut lobby).await,
        [(fixed, "message".into(), "hi".into())]
    );

    // Names that cannot be: two different ones, an empty one, a line break, broken encoding.
    let cases: [(&str, Headers, &str); 5] = [
        (
            "/publish?topic=news&event=a&event=b",
            &[TEXT],
            "two events, `a` and `b`",
        ),
        (
            "/publish?topic=news&event=a",
            &[TEXT, ("event-name", b"b")],
            "two events",
        ),
        ("/publish?topic=news&event=", &[TEXT], "empty"),
        ("/publish?topic=news&event=a%0Ab", &[TEXT], "line feed"),
        ("/publish?topic=news&event=%FF", &[TEXT], "UTF-8"),
    ];
    for (path, headers, reason) in cases {
        refused(&hub.post(path, headers, "x").await, 400, reason);
    }
    assert_eq!(hub.held("news"), 5, "nothing more was published");
}

#[cfg(feature = "json")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_body_gives_the_name_and_the_data() {
    let hub = Hub::start().await;
    let mut subscriber = hub.subscribe("news").await;
    let mut expected = Vec::new();
    let cases: [(&[u8], &str, &str, &str); 7] = [
        (
            b"application/json",
            r#"{"event":"greeting","data":"hi\nthere"}"#,
            "greeting",
            "hi\nthere",
        ),
        // Any JSON value, compact, its members in their order and its numbers as written.
        (
            b"application/json",
            r#"{ "data" : { "b" : [1, 2.50, "x y"], "a" : null } }"#,
            "message",
            r#"{"b":[1,2.50,"x y"],"a":null}"#,
        ),
        (
            b"application/json",
            r#"{"data": 42, "id": "ignored", "retry": 1}"#,
            "message",
            "42",
        ),
        (b"application/json", r#"{"event": "ping"}"#, "ping", ""),
        (
            b"application/ld+json; charset=utf-8",
            r#"{"data": true}"#,
            "message",
            "true",
        ),
        (b"Application/JSON", r#"{"data": "upper"}"#, "message", "upper"),
        (
            b"application/json",
            r#"{"data": "named by the query"}"#,
            "alert",
            "named by the query",
        ),
    ];
    for (content_type, body, name, data) in cases {
        let path = if name == "alert" {
            "/publish?topic=news&event=alert"
        } else {
            "/publish?topic=news"
        };
        let answer = hub
            .post(path, &[("content-type", content_type)], body.to_owned())
            .await;
        expected.push((created(&answer), name.to_owned(), data.to_owned()));
    }
    // `body_as_data`: a JSON body is the data as it came.
    let raw = r#"{"event": "x", "data": 1}"#;
    let answer = hub.post("/raw?topic=news", &[JSON], raw).await;
    expected.push((created(&answer), "message".into(), raw.into()));
    assert_eq!(rest(&hub, "news", &mut subscriber).await, expected);

    for (body, reason) in [
        ("", "not the JSON object"),
        ("{\"data\": ", "not the JSON object"),
        ("[\"data\"]", "not the JSON object"),
        ("\"hello\"", "not the JSON object"),
        (r#"{"event": 7, "data": "x"}"#, "not the JSON object"),
        (r#"{"data": 1, "data": 2}"#, "duplicate"),
        (r#"{"data": "x"} trailing"#, "not the JSON object"),
        (r#"{"event": "a\nb", "data": "x"}"#, "line feed"),
        (r#"{"event": "", "data": "x"}"#, "empty"),
    ] {
        refused(&hub.post("/publish?topic=news", &[JSON], body).await, 400, reason);
    }
    let other_name = hub
        .post("/publish?topic=news&event=b", &[JSON], r#"{"event":"a"}"#)
        .await;
    refused(&other_name, 400, "two events");
    refused(
        &hub.post("/publish?topic=news", &[JSON], &b"{\"data\": \"\xff\"}"[..])
            .await,
        400,
        "JSON",
    );
    assert_eq!(hub.held("news"), 9, "nothing more was published");
}

// ---------------------------------------------------------------------------------------
// 4xx
// ---------------------------------------------------------------------------------------

#[cfg(not(feature = "json"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_json_feature_a_json_body_is_415() {
    let hub = Hub::start().await;
    let answer = hub.post("/publish?topic=news", &[JSON], r#"{"data":"x"}"#).await;
    refused(&answer, 415, "`json` feature");
    // Unless the route takes every body as data.
    created(&hub.post("/raw?topic=news", &[JSON], r#"{"data":"x"}"#).await);
    assert_eq!(hub.held("news"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_methods_are_405_with_allow_post() {
    let hub = Hub::start().await;
    for method in ["GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let answer = request(hub.addr(), method.clone(), "/publish?topic=news", &[TEXT], "x").await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(answer.header("allow"), Some("POST"), "{method}");
    }
    assert!(hub.topics.is_empty(), "no topic was made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_400_with_the_reason() {
    let hub = Hub::start().await;
    let long_key = format!("/publish?topic={}", "k".repeat(65));
    let cases: [(&str, Headers, &[u8], &str); 10] = [
        ("/publish", &[TEXT], b"x", "names no topic"),
        ("/publish?topic=a&topic=b", &[TEXT], b"x", "one topic"),
        ("/publish?topic=a%20b", &[TEXT], b"x", "key"),
        ("/publish?topic=..", &[TEXT], b"x", "key"),
        (&long_key, &[TEXT], b"x", "key"),
        ("/publish?topic=news", &[TEXT], b"caf\xe9", "UTF-8"),
        (
            "/publish?topic=news",
            &[TEXT, ("idempotency-key", b"")],
            b"x",
            "empty",
        ),
        (
            "/publish?topic=news",
            &[TEXT, ("idempotency-key", b"two words")],
            b"x",
            "visible ASCII",
        ),
        (
            "/publish?topic=news",
            &[TEXT, ("idempotency-key", b"a"), ("idempotency-key", b"b")],
            b"x",
            "several Idempotency-Key",
        ),
        ("/required?topic=news", &[TEXT], b"", "data is empty"),
    ];
    for (path, headers, body, reason) in cases {
        refused(
            &hub.post(path, headers, Bytes::copy_from_slice(body)).await,
            400,
            reason,
        );
    }
    // The same key named twice is one topic.
    created(&hub.post("/publish?topic=news&topic=news", &[TEXT], "once").await);
    assert_eq!(hub.topics.len(), 1, "only `news` was made");
    assert_eq!(hub.held("news"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_bound_is_413_by_length_or_while_read() {
    let hub = Hub::start().await;
    created(&hub.post("/small?topic=news", &[TEXT], vec![b'x'; SMALL]).await);
    refused(
        &hub.post("/small?topic=news", &[TEXT], vec![b'x'; SMALL + 1])
            .await,
        413,
        "16 bytes",
    );
    // Refused by its `Content-Length` before a byte of the body is sent: no wait for it.
    let announced = "POST /small?topic=news HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\n\
                     Content-Length: 100000000\r\nConnection: close\r\n\r\n";
    refused(
        &exchange(hub.addr(), announced.as_bytes()).await,
        413,
        "larger than 16 bytes",
    );
    // Chunked, without a length: refused once it is longer, kept whole when it fits.
    let chunked = |chunks: &[&str]| {
        let mut request = "POST /small?topic=news HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\n\
                           Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_owned();
        for chunk in chunks {
            request.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
        }
        request + "0\r\n\r\n"
    };
    let over = chunked(&["0123456789", "0123456789"]);
    refused(
        &exchange(hub.addr(), over.as_bytes()).await,
        413,
        "larger than 16 bytes",
    );
    let mut subscriber = hub.subscribe("news").await;
    let fits = chunked(&["hello ", "chunked", "!"]);
    let id = created(&exchange(hub.addr(), fits.as_bytes()).await);
    let events = rest(&hub, "news", &mut subscriber).await;
    assert_eq!(
        events.len(),
        2,
        "the one at the bound and the chunked one: {events:?}"
    );
    assert_eq!(events[1], (id, "message".into(), "hello chunked!".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_only_refuses_other_types_with_415() {
    let hub = Hub::start().await;
    created(&hub.post("/plain?topic=news", &[TEXT], "text").await);
    created(
        &hub.post("/plain?topic=news", &[("content-type", b"TEXT/Markdown")], "*md*")
            .await,
    );
    // No type counts as text.
    created(&hub.post("/plain?topic=news", &[], "untyped").await);
    for content_type in [
        &b"application/json"[..],
        b"application/x-www-form-urlencoded",
        b"text/html",
        b"",
    ] {
        let answer = hub
            .post("/plain?topic=news", &[("content-type", content_type)], "x")
            .await;
        refused(&answer, 415, "text/plain, text/markdown");
        assert_eq!(answer.header("accept"), Some("text/plain, text/markdown"));
    }
    assert_eq!(hub.held("news"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorize_hook_refuses_with_401_403_or_503() {
    let hub = Hub::start().await;
    refused(
        &hub.post("/guarded/news", &[TEXT], "x").await,
        401,
        "sign in to publish",
    );
    let mallory = hub
        .post("/guarded/news", &[TEXT, ("x-user", b"mallory")], "x")
        .await;
    refused(&mallory, 403, "mallory may not publish to news");
    let outage = hub
        .post("/guarded/news", &[TEXT, ("x-user", b"during-outage")], "x")
        .await;
    refused(&outage, 503, "the session store is away");
    let retry_after: u64 = outage
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    // Who asks comes before what they send.
    refused(
        &hub.post("/guarded/news", &[TEXT], &b"\xff"[..]).await,
        401,
        "sign in",
    );
    assert!(hub.topics.is_empty(), "no topic was made");
    created(&hub.post("/guarded/news", &[TEXT, ("x-user", b"ada")], "x").await);
    assert_eq!(hub.held("news"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_scoped_topics_are_404_unknown_and_409_finished() {
    let hub = Hub::start().await;
    refused(&hub.post("/jobs/job-1", &[TEXT], "x").await, 404, "no such topic");
    assert!(hub.jobs.is_empty(), "publishing made no topic");
    hub.jobs.create("job-1").await.unwrap();
    created(&hub.post("/jobs/job-1", &[TEXT], "step 1").await);
    hub.jobs.finish("job-1").await.unwrap();
    refused(&hub.post("/jobs/job-1", &[TEXT], "step 2").await, 409, "finished");
    let key = ("idempotency-key", &b"late"[..]);
    refused(
        &hub.post("/jobs/job-1", &[TEXT, key], "step 2").await,
        409,
        "finished",
    );
    assert_eq!(hub.jobs.log("job-1").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_topics_is_503_with_retry_after() {
    let hub = Hub::start().await;
    created(&hub.post("/limited?topic=one", &[TEXT], "x").await);
    let answer = hub.post("/limited?topic=two", &[TEXT], "x").await;
    refused(&answer, 503, "too many topics");
    assert!(answer.header("retry-after").is_some(), "{:?}", answer.headers);
    assert_eq!(hub.limited.len(), 1);
    created(&hub.post("/limited?topic=one", &[TEXT], "y").await);
}

// ---------------------------------------------------------------------------------------
// Idempotency-Key
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_key_publishes_once_and_answers_the_first_id() {
    let hub = Hub::start().await;
    let mut subscriber = hub.subscribe("news").await;
    let key = ("idempotency-key", &b"8e03978e-40d5"[..]);
    let first = hub.post("/publish?topic=news", &[TEXT, key], "shipped").await;
    let retry = hub.post("/publish?topic=news", &[TEXT, key], "shipped").await;
    // The draft's quoted form is the same key.
    let quoted = ("idempotency-key", &b"\"8e03978e-40d5\""[..]);
    let again = hub.post("/publish?topic=news", &[TEXT, quoted], "shipped").await;
    let id = created(&first);
    assert_eq!(first.header("idempotent-replayed"), None);
    for repeat in [&retry, &again] {
        assert_eq!(created(repeat), id, "the first id");
        assert_eq!(repeat.header("idempotent-replayed"), Some("true"));
    }
    assert_eq!(
        rest(&hub, "news", &mut subscriber).await,
        [(id, "message".into(), "shipped".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_reused_for_another_event_is_422() {
    let hub = Hub::start().await;
    let key = ("idempotency-key", &b"order-17"[..]);
    created(&hub.post("/publish?topic=news", &[TEXT, key], "paid").await);
    for (path, body) in [
        ("/publish?topic=news", "refunded"),
        ("/publish?topic=news&event=paid", "paid"),
    ] {
        refused(
            &hub.post(path, &[TEXT, key], body).await,
            422,
            "idempotency key was used for another event",
        );
    }
    assert_eq!(hub.held("news"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_keys_or_topics_are_different_publishes() {
    let hub = Hub::start().await;
    let mut subscriber = hub.subscribe("news").await;
    let one = created(
        &hub.post(
            "/publish?topic=news",
            &[TEXT, ("idempotency-key", b"one")],
            "same",
        )
        .await,
    );
    let two = created(
        &hub.post(
            "/publish?topic=news",
            &[TEXT, ("idempotency-key", b"two")],
            "same",
        )
        .await,
    );
    let none = created(&hub.post("/publish?topic=news", &[TEXT], "same").await);
    // Keys are remembered per topic.
    let elsewhere = hub
        .post(
            "/publish?topic=sport",
            &[TEXT, ("idempotency-key", b"one")],
            "same",
        )
        .await;
    assert_eq!(elsewhere.header("idempotent-replayed"), None);
    created(&elsewhere);
    assert_eq!(
        rest(&hub, "news", &mut subscriber).await,
        [
            (one, "message".into(), "same".into()),
            (two, "message".into(), "same".into()),
            (none, "message".into(), "same".into()),
        ]
    );
    assert_eq!(hub.held("sport"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_forgotten_after_the_window() {
    let hub = Hub::start().await;
    let key = ("idempotency-key", &b"brief"[..]);
    let first = created(&hub.post("/brief?topic=news", &[TEXT, key], "x").await);
    let repeat = hub.post("/brief?topic=news", &[TEXT, key], "x").await;
    assert_eq!(
        (created(&repeat), repeat.header("idempotent-replayed")),
        (first.clone(), Some("true"))
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let later = hub.post("/brief?topic=news", &[TEXT, key], "x").await;
    assert_ne!(created(&later), first, "a new event");
    assert_eq!(later.header("idempotent-replayed"), None);
    assert_eq!(hub.held("news"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_with_one_key_publish_once() {
    let hub = Hub::start().await;
    let mut subscriber = hub.subscribe("news").await;
    let addr = hub.addr();
    let mut posts = tokio::task::JoinSet::new();
    for _ in 0..20 {
        posts.spawn(async move {
            let headers: &[(&str, &[u8])] = &[TEXT, ("idempotency-key", b"burst")];
            request(addr, Method::POST, "/publish?topic=news", headers, "once").await
        });
    }
    let answers = posts.join_all().await;
    let ids: std::collections::HashSet<String> = answers.iter().map(created).collect();
    assert_eq!(ids.len(), 1, "one id for all: {ids:?}");
    let first = answers
        .iter()
        .filter(|answer| answer.header("idempotent-replayed").is_none())
        .count();
    assert_eq!(first, 1, "one publish appended, the others were its repeats");
    let id = ids.into_iter().next().unwrap();
    assert_eq!(
        rest(&hub, "news", &mut subscriber).await,
        [(id, "message".into(), "once".into())]
    );
}

// ---------------------------------------------------------------------------------------
// The GUIDE's line, against the chat
// ---------------------------------------------------------------------------------------

/// `command` run by `sh`, as a reader pastes it into a shell: the response `curl -i` prints,
/// as (status line, header lines lowercase, body).
async fn shell(command: &str) -> (String, Vec<String>, String) {
    let command = command.to_owned();
    let output = tokio::task::spawn_blocking(move || Command::new("sh").arg("-c").arg(&command).output())
        .await
        .unwrap()
        .expect("sh runs");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("curl -i prints the head");
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default().to_owned();
    (
        status,
        lines.map(str::to_ascii_lowercase).collect(),
        body.to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_curl_line_publishes_to_the_chat_once() {
    if !Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
    {
        support::missing_prerequisite("the GUIDE's curl line", "curl is not installed");
        return;
    }
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/GUIDE.md")).unwrap();
    let section = guide
        .split("## Publishing over HTTP")
        .nth(1)
        .expect("the GUIDE's section");
    let line = section
        .lines()
        .find(|line| line.starts_with("curl "))
        .expect("a curl line");
    assert!(line.contains("Idempotency-Key"), "{line}");

    let lobby = MemoryLog::new();
    let server = TestServer::start(
        Serving::Axum,
        app::router(app::memory_rooms(&lobby), app::config()),
    )
    .await;
    let mut subscriber = SseClient::connect(server.addr, "/api/events", None).await;
    let line = line.replace("http://127.0.0.1:3000", &format!("http://{}", server.addr));
    let (status, headers, body) = shell(&line).await;
    assert_eq!(status, "HTTP/1.1 201 Created");
    assert!(
        headers.contains(&"content-type: application/json".to_owned()),
        "{headers:?}"
    );
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The retry of a client that lost the answer.
    let (status, headers, retry) = shell(&line).await;
    assert_eq!(
        (status.as_str(), retry.as_str()),
        ("HTTP/1.1 201 Created", body.as_str())
    );
    assert!(
        headers.contains(&"idempotent-replayed: true".to_owned()),
        "{headers:?}"
    );
    // Another text with the key: 422.
    let (status, _, _) = shell(&line.replace("-d 'hello'", "-d 'bye'")).await;
    assert_eq!(status, "HTTP/1.1 422 Unprocessable Entity");

    lobby.push(Event::new("end").with_name("end").unwrap()).unwrap();
    assert_eq!(
        next(&mut subscriber).await,
        (id, "message".into(), "hello".into())
    );
    assert_eq!(next(&mut subscriber).await.1, "end", "one `hello`, nothing else");
}
