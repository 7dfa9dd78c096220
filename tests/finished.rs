//! Streams with an end, over real TCP: a finished log's readers get every event and their
//! stream ends; a client that comes back at the end, or arrives after it at the live end, is
//! answered `204`; a long poll that reaches the end says `"finished": true`; request-scoped
//! topics (`404` for an unknown one) are kept for a while once finished, then evicted; a
//! finite source fills a log to its end; a finite plain stream does not loop.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use support::client::{get, long_poll, poll_cursor, poll_data, sse_status};
use support::reader::SseReader;
use support::server::{Serving, TestServer};
use support::sse::SseClient;
use support::{wait_until, within};
use tower_eventstream::{
    fill_to_end, from_stream, AppendError, Event, EventLog, EventLogService, EventStreamLayer, MemoryLog,
    StartPosition, StreamConfig, TopicError, Topics, TopicsService,
};

async fn serve(log: &MemoryLog, start: StartPosition) -> TestServer {
    let config = StreamConfig::default().start(start);
    let service = EventLogService::new(log.clone()).with_config(config);
    TestServer::start(Serving::Axum, Router::new().route_service("/events", service)).await
}

/// Reads an SSE stream to its end: the data of its events and its last id.
async fn read_to_end(addr: SocketAddr, path: &str, cursor: Option<&str>) -> (Vec<String>, String) {
    let mut reader = SseReader::connect(addr, path, cursor).await;
    let text = within("the stream's end", reader.read_to_end()).await;
    let events = support::sse::parse_sse(&text);
    let data = events
        .iter()
        .filter(|e| e.event != "checkpoint")
        .map(|e| e.data.clone())
        .collect();
    let last = events.last().map(|e| e.id.clone()).unwrap_or_default();
    (data, last)
}

#[tokio::test]
async fn readers_get_every_event_then_the_end_and_a_return_at_the_end_is_204() {
    let log = MemoryLog::new();
    let server = serve(&log, StartPosition::LiveEnd).await;
    let addr = server.addr;
    let mut live = SseClient::connect(addr, "/events", None).await;
    let (_, first_poll) = long_poll(addr, "/events?timeout=0").await;
    let mut cursor = poll_cursor(&first_poll);
    for n in 1..=3 {
        log.push(Event::new(format!("t{n}"))).unwrap();
    }
    log.finish();
    assert!(matches!(log.push(Event::new("late")), Err(AppendError::Finished)));
    assert!(matches!(
        log.append(Event::new("late")).await,
        Err(AppendError::Finished)
    ));

    // SSE: the events, then the body ends.
    let got: Vec<String> = live.take(3).await.into_iter().map(|e| e.data).collect();
    assert_eq!(got, ["t1", "t2", "t3"]);
    let end = live.last_event_id().to_owned();
    within("the stream to end", live.ended()).await;

    // A long poll reaching the end says so; one at the end is 204.
    let (_, answer) = long_poll(addr, &format!("/events?timeout=5000&lastEventId={cursor}")).await;
    assert_eq!(poll_data(&answer), ["t1", "t2", "t3"]);
    assert_eq!(answer["finished"], true, "{answer}");
    cursor = poll_cursor(&answer);
    assert_eq!(cursor, end);
    let at_end = get(addr, &format!("/events?timeout=5000&lastEventId={cursor}")).await;
    assert_eq!(at_end.status.as_u16(), 204, "{}", at_end.text());

    // The browser's reconnect at the end, and a newcomer at the live end: 204.
    assert_eq!(sse_status(addr, "/events", Some(&end)).await.as_u16(), 204);
    assert_eq!(sse_status(addr, "/events", None).await.as_u16(), 204);
    // A cursor before the end: the rest, then the end.
    let (_, first_id) = read_to_end(addr, "/events", Some(&cursor_before(&end, 2))).await;
    assert_eq!(first_id, end);
}

/// The id `back` events before `id` (`<epoch>-<seq>`).
fn cursor_before(id: &str, back: u64) -> String {
    let (epoch, seq) = id.split_once('-').unwrap();
    format!("{epoch}-{}", seq.parse::<u64>().unwrap() - back)
}

#[tokio::test]
async fn a_late_joiner_from_the_oldest_gets_the_whole_stream_then_the_end() {
    let log = MemoryLog::new();
    for word in ["Once", "upon", "a", "time"] {
        log.push(Event::new(word)).unwrap();
    }
    log.finish();
    let server = serve(&log, StartPosition::Oldest).await;
    let (data, last) = read_to_end(server.addr, "/events", None).await;
    assert_eq!(data, ["Once", "upon", "a", "time"]);
    assert_eq!(
        sse_status(server.addr, "/events", Some(&last)).await.as_u16(),
        204
    );
    let (_, answer) = long_poll(server.addr, "/events?timeout=0").await;
    assert_eq!(poll_data(&answer), ["Once", "upon", "a", "time"]);
    assert_eq!(answer["finished"], true, "{answer}");
}

#[tokio::test]
async fn request_scoped_topics_are_404_until_created_and_evicted_after_their_keep() {
    let topics = Topics::builder(MemoryLog::builder())
        .created_explicitly()
        .keep_finished(Duration::from_millis(300))
        .build();
    let config = StreamConfig::default().start(StartPosition::Oldest);
    let service = TopicsService::new(topics.clone())
        .key_from_path(1)
        .with_config(config);
    let router = Router::new().route_service("/jobs/{job}", service);
    let server = TestServer::start(Serving::Axum, router).await;
    let addr = server.addr;

    assert_eq!(get(addr, "/jobs/nope?timeout=0").await.status.as_u16(), 404);
    assert_eq!(sse_status(addr, "/jobs/nope", None).await.as_u16(), 404);
    assert!(matches!(
        topics.append("nope", Event::new("x")).await,
        Err(TopicError::NotFound)
    ));
    assert!(
        topics.get("nope").is_none() && topics.is_empty(),
        "a lookup creates nothing"
    );

    topics.create("job-1").await.unwrap();
    assert!(matches!(
        topics.create("job-1").await,
        Err(TopicError::AlreadyExists)
    ));
    let mut reader = SseClient::connect(addr, "/jobs/job-1", None).await;
    topics.append("job-1", Event::new("step 1")).await.unwrap();
    topics.append("job-1", Event::new("step 2")).await.unwrap();
    topics.finish("job-1").await.unwrap();
    assert!(matches!(
        topics.append("job-1", Event::new("x")).await,
        Err(TopicError::Finished)
    ));
    let got: Vec<String> = reader.take(2).await.into_iter().map(|e| e.data).collect();
    assert_eq!(got, ["step 1", "step 2"]);
    within("the stream to end", reader.ended()).await;

    // Kept for a late joiner, then evicted: 404.
    let (data, _) = read_to_end(addr, "/jobs/job-1", None).await;
    assert_eq!(data, ["step 1", "step 2"]);
    wait_until("the finished topic to be evicted", || {
        topics.get("job-1").is_none()
    })
    .await;
    assert_eq!(get(addr, "/jobs/job-1?timeout=0").await.status.as_u16(), 404);
}

#[tokio::test]
async fn a_finished_topic_leaves_the_others_of_a_stream_running() {
    let topics = Topics::new(MemoryLog::builder());
    let service = TopicsService::new(topics.clone());
    let server = TestServer::start(Serving::Axum, Router::new().route_service("/t", service)).await;
    let mut client = SseClient::connect(server.addr, "/t?topic=job&topic=news", None).await;
    topics.append("job", Event::new("done")).await.unwrap();
    topics.finish("job").await.unwrap();
    topics.append("news", Event::new("still here")).await.unwrap();
    let got: Vec<String> = client.take(2).await.into_iter().map(|e| e.data).collect();
    assert_eq!(got, ["done", "still here"]);
    topics.finish("news").await.unwrap();
    within("the stream to end once every topic is finished", client.ended()).await;
    let end = client.last_event_id().to_owned();
    assert_eq!(
        sse_status(server.addr, "/t?topic=job&topic=news", Some(&end)).await,
        204
    );
}

#[tokio::test]
async fn a_finite_source_fills_a_log_to_its_end() {
    let tokens = futures_util::stream::iter(["a", "b", "c"].map(Event::new));
    let log = fill_to_end(MemoryLog::new(), from_stream(tokens));
    wait_until("the source to be read", || log.is_finished()).await;
    let config = StreamConfig::default().start(StartPosition::Oldest);
    let service = EventLogService::new(log.clone()).with_config(config);
    let server = TestServer::start(Serving::Axum, Router::new().route_service("/e", service)).await;
    let (data, last) = read_to_end(server.addr, "/e", None).await;
    assert_eq!(data, ["a", "b", "c"]);
    assert_eq!(sse_status(server.addr, "/e", Some(&last)).await.as_u16(), 204);
}

#[tokio::test]
async fn a_finite_plain_stream_is_not_sent_again() {
    let inner = tower::service_fn(|_request: http::Request<axum::body::Body>| async {
        let words = ["one", "two"].map(|word| Ok::<_, Infallible>(Event::new(word)));
        Ok::<_, Infallible>(futures_util::stream::iter(words))
    });
    let service = tower::ServiceBuilder::new()
        .layer(EventStreamLayer::new(StreamConfig::default()))
        .service(inner);
    let server = TestServer::start(Serving::Axum, Router::new().route_service("/words", service)).await;
    let (data, last) = read_to_end(server.addr, "/words", None).await;
    assert_eq!(data, ["one", "two"]);
    assert_eq!(last, "end", "the closing checkpoint names the end");
    assert_eq!(sse_status(server.addr, "/words", Some(&last)).await.as_u16(), 204);
    let (_, answer) = long_poll(server.addr, "/words?timeout=0").await;
    assert_eq!(answer["finished"], true, "{answer}");
    assert_eq!(poll_cursor(&answer), "end");
    let again = get(server.addr, "/words?timeout=0&lastEventId=end").await;
    assert_eq!(again.status.as_u16(), 204);
}

/// `204` at the end, whichever way the route is served (hyper's servers and the crate's own).
#[tokio::test]
async fn every_way_of_serving_answers_204_at_the_end() {
    let log = MemoryLog::new();
    let end = log.push(Event::new("last")).unwrap().id().unwrap().to_string();
    log.finish();
    let mut servings = vec![Serving::Axum, Serving::HyperUtil];
    #[cfg(feature = "server")]
    servings.push(Serving::CrateServer);
    for serving in servings {
        let service = EventLogService::new(log.clone());
        let server = TestServer::start(serving, Router::new().route_service("/events", service)).await;
        assert_eq!(
            sse_status(server.addr, "/events", Some(&end)).await,
            204,
            "{serving:?}"
        );
        let answer = get(server.addr, &format!("/events?timeout=0&lastEventId={end}")).await;
        assert_eq!(answer.status.as_u16(), 204, "{serving:?}");
        assert!(answer.body.is_empty(), "{serving:?}: no body with a 204");
    }
}

/// A finished topic is kept for its keep time even when idle eviction is shorter.
#[tokio::test]
async fn idle_eviction_does_not_cut_a_finished_topics_keep_short() {
    let topics = Topics::builder(MemoryLog::builder())
        .idle_eviction(Duration::from_millis(100))
        .keep_finished(Duration::from_millis(800))
        .build();
    topics.append("done", Event::new("last")).await.unwrap();
    topics.finish("done").await.unwrap();
    topics.append("open", Event::new("idle")).await.unwrap();
    let finished_at = std::time::Instant::now();
    wait_until("the idle open topic to be evicted", || {
        topics.get("open").is_none()
    })
    .await;
    assert!(
        topics.get("done").is_some(),
        "still kept after {:?}",
        finished_at.elapsed()
    );
    wait_until("the finished topic to be evicted", || {
        topics.get("done").is_none()
    })
    .await;
    assert!(
        finished_at.elapsed() >= Duration::from_millis(800),
        "{:?}",
        finished_at.elapsed()
    );
}
