//! Topics over real TCP: one `TopicsService` for many logs, with authorization, filters,
//! limits and credential expiry answered as the failure rule says.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use http::Method;
use support::client::{get, long_poll, poll_cursor, poll_data, request};
use support::reader::SseReader;
use support::server::{Serving, TestServer};
use support::sse::SseClient;
use support::{wait_until, within};
use tower_eventstream::{
    Access, Event, MemoryLog, MemoryLogBuilder, Refusal, StreamConfig, Topics, TopicsService,
};

const ROUTE: &str = "/t/{topic}";

/// Who the request is from: the `user` query parameter stands for what an auth layer or a
/// signed token would establish.
fn user_of(parts: &http::request::Parts) -> Option<String> {
    let query = parts.uri.query()?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("user=").map(str::to_owned))
}

/// Every event is public unless named `direct`, whose data starts with its recipient.
fn visible_to(user: String) -> impl Fn(&Event) -> bool + Send + Sync + 'static {
    move |event| event.name() != Some("direct") || event.data().starts_with(&format!("{user}:"))
}

async fn serve(topics: &Topics<MemoryLogBuilder>) -> TestServer {
    let service = TopicsService::new(topics.clone())
        .with_config(StreamConfig::default().retry(Duration::from_millis(400)))
        .key_from_path(1)
        .authorize(|parts, topic| {
            let Some(user) = user_of(parts) else {
                return Err(Refusal::unauthorized("no user: sign in first"));
            };
            if topic == "staff" && user != "boss" {
                return Err(Refusal::forbidden("the staff topic is for staff"));
            }
            if user == "temp" {
                return Ok(Access::allow().for_at_most(Duration::from_millis(300)));
            }
            Ok(Access::allow().filter(visible_to(user)))
        });
    TestServer::start(Serving::Axum, Router::new().route_service(ROUTE, service)).await
}

fn direct(to: &str, text: &str) -> Event {
    Event::new(format!("{to}: {text}")).with_name("direct").unwrap()
}

#[tokio::test]
async fn refusals_are_deliberate_and_keys_are_checked() {
    let topics = Topics::new(MemoryLog::builder());
    let server = serve(&topics).await;
    let addr = server.addr;
    let status = |path: &'static str| async move { get(addr, path).await.status.as_u16() };
    assert_eq!(status("/t/lobby?timeout=0").await, 401);
    assert_eq!(status("/t/staff?timeout=0&user=ada").await, 403);
    assert_eq!(status("/t/staff?timeout=0&user=boss").await, 200);
    let bad = get(server.addr, "/t/a%3Ab?timeout=0&user=ada").await;
    assert_eq!(bad.status.as_u16(), 400);
    assert!(bad.text().contains("invalid topic"), "{}", bad.text());
    let long = format!("/t/{}?timeout=0&user=ada", "x".repeat(65));
    assert_eq!(get(server.addr, &long).await.status.as_u16(), 400);
    let post = request(server.addr, Method::POST, "/t/lobby?user=ada", &[], "x").await;
    assert_eq!(post.status.as_u16(), 405);
    // Refusals cost nothing: no topic was created for them.
    assert_eq!(topics.len(), 1, "only `staff`, read by its owner");
}

#[tokio::test]
async fn a_filter_shows_each_subscriber_its_events_and_both_resume_exactly_once() {
    let topics = Topics::new(MemoryLog::builder());
    let server = serve(&topics).await;
    let mut ada = SseClient::connect(server.addr, "/t/desk?user=ada", None).await;
    let mut bob = SseClient::connect(server.addr, "/t/desk?user=bob", None).await;
    wait_until("both subscribed", || topics.subscriber_count() == 2).await;

    topics.append("desk", Event::new("hello all")).await.unwrap();
    topics.append("desk", direct("ada", "one")).await.unwrap();
    topics.append("desk", direct("bob", "two")).await.unwrap();
    topics.append("desk", direct("bob", "three")).await.unwrap();
    let data =
        |events: Vec<eventsource_stream::Event>| events.into_iter().map(|e| e.data).collect::<Vec<_>>();
    assert_eq!(data(ada.take(2).await), ["hello all", "ada: one"]);
    assert_eq!(data(bob.take(3).await), ["hello all", "bob: two", "bob: three"]);

    // Ada's cursor moves past Bob's messages without her seeing them: a long poll from it
    // has nothing, and names the newest position.
    let (_, answer) = long_poll(
        server.addr,
        &format!("/t/desk?user=ada&timeout=0&lastEventId={}", ada.last_event_id()),
    )
    .await;
    assert_eq!(poll_data(&answer), Vec::<String>::new());
    let newest = topics.log("desk").await.unwrap().position();
    let (_, answer) = long_poll(
        server.addr,
        &format!("/t/desk?user=ada&timeout=200&lastEventId={}", ada.last_event_id()),
    )
    .await;
    assert_eq!(poll_cursor(&answer), newest.as_str());

    // Both cut; more is published; both resume exactly after what they saw.
    let (ada_seen, bob_seen) = (ada.last_event_id().to_owned(), bob.last_event_id().to_owned());
    drop((ada, bob));
    topics.append("desk", direct("ada", "four")).await.unwrap();
    topics.append("desk", direct("bob", "five")).await.unwrap();
    topics.append("desk", Event::new("bye all")).await.unwrap();
    let mut ada = SseClient::connect(server.addr, "/t/desk?user=ada", Some(&ada_seen)).await;
    let mut bob = SseClient::connect(server.addr, "/t/desk?user=bob", Some(&bob_seen)).await;
    assert_eq!(data(ada.take(2).await), ["ada: four", "bye all"]);
    assert_eq!(data(bob.take(2).await), ["bob: five", "bye all"]);
}

#[tokio::test]
async fn limits_refuse_with_the_documented_answers() {
    let topics = Topics::builder(MemoryLog::builder())
        .max_subscribers_per_topic(1)
        .max_subscribers(2)
        .max_topics(3)
        .build();
    let server = serve(&topics).await;
    let _first = SseReader::connect(server.addr, "/t/a?user=ada", None).await;
    wait_until("the first subscriber", || topics.subscriber_count() == 1).await;

    // A second SSE subscriber of a full topic: 200, a retry hint and a clean end, so a
    // browser comes back later instead of giving up.
    let mut second = SseReader::connect(server.addr, "/t/a?user=bob", None).await;
    assert_eq!(second.header("content-type"), Some("text/event-stream"));
    let body = within("the refusal to end", second.read_to_end()).await;
    assert!(body.contains("retry:"), "{body}");
    let poll = get(server.addr, "/t/a?user=bob&timeout=0").await;
    assert_eq!(poll.status.as_u16(), 503);
    assert!(poll.header("retry-after").is_some());

    // The total bound, then the bound on topics.
    let _other = SseReader::connect(server.addr, "/t/b?user=bob", None).await;
    wait_until("two subscribers", || topics.subscriber_count() == 2).await;
    assert_eq!(
        get(server.addr, "/t/c?user=cy&timeout=0").await.status.as_u16(),
        503
    );
    topics.append("c", Event::new("c")).await.unwrap();
    let refused = topics.append("d", Event::new("d")).await.unwrap_err();
    assert!(refused.to_string().contains("too many topics"), "{refused}");

    // Room again once a subscriber leaves.
    drop(_first);
    wait_until("the place to free", || topics.subscriber_count() == 1).await;
    assert_eq!(
        get(server.addr, "/t/a?user=bob&timeout=0").await.status.as_u16(),
        200
    );
}

#[tokio::test]
async fn an_expiring_access_ends_the_stream_with_a_retry_hint() {
    let topics = Topics::new(MemoryLog::builder());
    let server = serve(&topics).await;
    let mut temp = SseReader::connect(server.addr, "/t/lobby?user=temp", None).await;
    let body = within("the stream to end at expiry", temp.read_to_end()).await;
    assert!(body.ends_with("\n\n") && body.contains("retry:"), "{body}");
    wait_until("the subscriber to be released", || topics.subscriber_count() == 0).await;
}

#[tokio::test]
async fn an_evicted_memory_topic_is_a_reset_for_an_old_cursor() {
    let topics = Topics::builder(MemoryLog::builder())
        .idle_eviction(Duration::from_millis(100))
        .build();
    let server = serve(&topics).await;
    let stored = topics.append("room", Event::new("before")).await.unwrap();
    wait_until("the idle topic to be evicted", || topics.is_empty()).await;
    topics.append("room", Event::new("after")).await.unwrap();
    let mut client =
        SseClient::connect(server.addr, "/t/room?user=ada", stored.id().map(|id| id.as_str())).await;
    assert_eq!(
        client.next().await.event,
        "reset",
        "a new epoch, never a replay of another history"
    );
    assert_eq!(client.next().await.data, "after");
}

/// A stream of the signed-in user's own topic and a shared one, chosen by one hook that reads
/// the credential once: no user is `401`, a session store that cannot answer is passing.
async fn serve_per_user(topics: &Topics<MemoryLogBuilder>, checks: Arc<AtomicUsize>) -> TestServer {
    let service = TopicsService::new(topics.clone())
        .with_config(StreamConfig::default().retry(Duration::from_millis(400)))
        .topics_from(move |parts| {
            checks.fetch_add(1, Ordering::SeqCst);
            match user_of(parts).as_deref() {
                None => Err(Refusal::unauthorized("no user: sign in first")),
                Some("store-down") => Err(Refusal::unavailable("the session store is unreachable")),
                Some("banned") => Err(Refusal::forbidden("this account is closed")),
                Some(user) => Ok(vec![
                    (format!("user-{user}"), Access::allow()),
                    ("news".to_owned(), Access::allow()),
                ]),
            }
        });
    TestServer::start(Serving::Axum, Router::new().route_service("/mine", service)).await
}

#[tokio::test]
async fn the_key_hook_refuses_by_the_failure_rule_and_runs_once_per_request() {
    let topics = Topics::new(MemoryLog::builder());
    let checks = Arc::new(AtomicUsize::new(0));
    let server = serve_per_user(&topics, Arc::clone(&checks)).await;
    let sse: &[(&str, &[u8])] = &[("accept", b"text/event-stream")];
    let answer = |path: &'static str, headers| request(server.addr, Method::GET, path, headers, "");

    for headers in [&[][..], sse] {
        assert_eq!(answer("/mine?timeout=0", headers).await.status.as_u16(), 401);
        // Who asks is checked before what is asked: no session is `401` even with bad input.
        assert_eq!(
            answer("/mine?timeout=soon&lastEventId=%01", headers)
                .await
                .status
                .as_u16(),
            401
        );
        assert_eq!(
            answer("/mine?timeout=0&user=banned", headers)
                .await
                .status
                .as_u16(),
            403
        );
    }
    // Passing: a long poll is told when to come back, a browser gets a `retry:` hint.
    let poll = answer("/mine?timeout=0&user=store-down", &[]).await;
    assert_eq!(poll.status.as_u16(), 503);
    assert!(poll.header("retry-after").is_some());
    let stream = answer("/mine?user=store-down", sse).await;
    assert_eq!(stream.status.as_u16(), 200);
    assert!(stream.text().contains("retry:"), "{}", stream.text());
    assert!(topics.is_empty(), "refusals create no topic");

    let before = checks.load(Ordering::SeqCst);
    let mut ada = SseClient::connect(server.addr, "/mine?user=ada", None).await;
    assert_eq!(
        checks.load(Ordering::SeqCst),
        before + 1,
        "one check for two topics"
    );
    topics.append("user-bob", Event::new("for bob")).await.unwrap();
    topics.append("user-ada", Event::new("for ada")).await.unwrap();
    topics.append("news", Event::new("for all")).await.unwrap();
    let got: Vec<_> = ada.take(2).await.into_iter().map(|e| (e.event, e.data)).collect();
    assert_eq!(
        got,
        [
            ("user-ada:message".into(), "for ada".into()),
            ("news:message".into(), "for all".into())
        ]
    );
}

#[tokio::test]
async fn dot_segment_keys_are_refused_on_every_way_in() {
    let topics = Topics::new(MemoryLog::builder());
    let server = serve(&topics).await;
    for path in ["/t/%2E?timeout=0&user=ada", "/t/%2e%2E?timeout=0&user=ada"] {
        let answer = get(server.addr, path).await;
        assert_eq!(answer.status.as_u16(), 400, "{path}");
        assert!(answer.text().contains("`..`"), "{}", answer.text());
    }
    let by_query = TopicsService::new(topics.clone());
    let server = TestServer::start(Serving::Axum, Router::new().route_service("/q", by_query)).await;
    for path in ["/q?topic=..&timeout=0", "/q?topic=a&topic=.&timeout=0"] {
        assert_eq!(get(server.addr, path).await.status.as_u16(), 400, "{path}");
    }
    assert!(topics.append("..", Event::new("x")).await.is_err());
    assert!(topics.is_empty());
}
