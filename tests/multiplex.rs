//! Several topics in one stream over real TCP: one composite cursor that resumes every topic
//! exactly, gaps per topic, events that say their topic, fairness and the cursor limit.

mod support;

use std::collections::HashMap;

use axum::Router;
use support::client::{get, long_poll, poll_cursor};
use support::server::{Serving, TestServer};
use support::sse::SseClient;
use support::wait_until;
use tower_eventstream::{
    Event, MemoryLog, MemoryLogBuilder, StreamConfig, TopicNames, Topics, TopicsService,
};

async fn serve(topics: &Topics<MemoryLogBuilder>) -> TestServer {
    let service = TopicsService::new(topics.clone()).key_from_query("topic");
    TestServer::start(Serving::Axum, Router::new().route_service("/events", service)).await
}

/// `(topic, data)` of an SSE event of a multiplexed stream (its type is `<topic>:<name>`;
/// a reset's data is its topic).
fn seen(event: &eventsource_stream::Event) -> (String, String) {
    match event.event.split_once(':') {
        Some((topic, "message")) => (topic.to_owned(), event.data.clone()),
        _ => (event.event.clone(), event.data.clone()),
    }
}

async fn publish(topics: &Topics<MemoryLogBuilder>, topic: &str, data: &str) {
    topics.append(topic, Event::new(data)).await.unwrap();
}

#[tokio::test]
async fn one_cursor_resumes_every_topic_and_a_gap_is_reported_for_its_topic_only() {
    let topics = Topics::new(MemoryLog::builder().history(4));
    let server = serve(&topics).await;
    let mut client = SseClient::connect(server.addr, "/events?topic=a&topic=b", None).await;
    wait_until("two subscribers", || topics.subscriber_count() == 2).await;
    publish(&topics, "a", "a0").await;
    publish(&topics, "b", "b0").await;
    let mut got: Vec<_> = client.take(2).await.iter().map(seen).collect();
    got.sort();
    assert_eq!(got, [("a".into(), "a0".into()), ("b".into(), "b0".into())]);
    let cursor = client.last_event_id().to_owned();
    assert!(cursor.starts_with("a~") && cursor.contains(",b~"), "{cursor}");
    drop(client);

    // While cut: `a` overflows its history of 4, `b` does not.
    for n in 1..=10 {
        publish(&topics, "a", &format!("a{n}")).await;
    }
    publish(&topics, "b", "b1").await;
    publish(&topics, "b", "b2").await;
    let mut client = SseClient::connect(server.addr, "/events?topic=a&topic=b", Some(&cursor)).await;
    let got: Vec<_> = client.take(7).await.iter().map(seen).collect();
    let of = |topic: &str| -> Vec<String> {
        got.iter()
            .filter(|(t, _)| t == topic)
            .map(|(_, data)| data.clone())
            .collect()
    };
    assert_eq!(of("reset"), ["a"], "one reset, naming `a`: {got:?}");
    assert_eq!(
        of("a"),
        ["a7", "a8", "a9", "a10"],
        "then a's held events: {got:?}"
    );
    assert_eq!(of("b"), ["b1", "b2"], "b exactly, untouched by a's gap: {got:?}");
    let reset_at = got.iter().position(|(t, _)| t == "reset").unwrap();
    let first_a = got.iter().position(|(t, _)| t == "a").unwrap();
    assert!(reset_at < first_a, "the reset comes before a's events: {got:?}");
}

#[tokio::test]
async fn a_changed_set_of_topics_keeps_the_ones_still_asked_for() {
    let topics = Topics::new(MemoryLog::builder());
    let server = serve(&topics).await;
    let mut client = SseClient::connect(server.addr, "/events?topic=a&topic=b", None).await;
    wait_until("two subscribers", || topics.subscriber_count() == 2).await;
    publish(&topics, "b", "b0").await;
    assert_eq!(seen(&client.next().await), ("b".into(), "b0".into()));
    let cursor = client.last_event_id().to_owned();
    drop(client);
    publish(&topics, "b", "b1").await;
    publish(&topics, "c", "c-before").await;

    // `a` is dropped, `c` is new: `b` resumes exactly, `c` starts at its live end.
    let mut client = SseClient::connect(server.addr, "/events?topic=b&topic=c", Some(&cursor)).await;
    assert_eq!(seen(&client.next().await), ("b".into(), "b1".into()));
    wait_until("the new subscription to c", || topics.subscriber_count() == 2).await;
    publish(&topics, "c", "c-after").await;
    assert_eq!(seen(&client.next().await), ("c".into(), "c-after".into()));
    assert!(
        !client.last_event_id().contains("a~"),
        "{}",
        client.last_event_id()
    );
}

#[tokio::test]
async fn a_busy_topic_does_not_starve_a_quiet_one() {
    let topics = Topics::new(MemoryLog::builder().history(1000));
    let server = serve(&topics).await;
    let cursor_of = |log: &MemoryLog| log.position();
    let busy = cursor_of(&topics.log("busy").await.unwrap());
    let quiet = cursor_of(&topics.log("quiet").await.unwrap());
    for n in 0..500 {
        publish(&topics, "busy", &n.to_string()).await;
    }
    publish(&topics, "quiet", "hello").await;
    let cursor = format!("busy~{busy},quiet~{quiet}");
    let mut client = SseClient::connect(server.addr, "/events?topic=busy&topic=quiet", Some(&cursor)).await;
    let first: Vec<_> = client.take(4).await.iter().map(seen).collect();
    assert!(
        first.contains(&("quiet".into(), "hello".into())),
        "the quiet topic's event is among the first: {first:?}"
    );
}

#[tokio::test]
async fn long_polls_over_several_topics_see_every_event_once() {
    let topics = Topics::new(MemoryLog::builder());
    let server = serve(&topics).await;
    let (_, first) = long_poll(server.addr, "/events?topic=x&topic=y&timeout=0").await;
    let mut cursor = poll_cursor(&first);
    let mut received: HashMap<String, Vec<String>> = HashMap::new();
    for round in 0..5 {
        for topic in ["x", "y"] {
            publish(&topics, topic, &format!("{topic}{round}")).await;
        }
        let (_, answer) = long_poll(
            server.addr,
            &format!("/events?topic=x&topic=y&timeout=0&lastEventId={cursor}"),
        )
        .await;
        assert_eq!(answer["reset"], false);
        for event in answer["events"].as_array().unwrap() {
            let topic = event["topic"]
                .as_str()
                .expect("each event says its topic")
                .to_owned();
            assert_eq!(event["event"], "message");
            received
                .entry(topic)
                .or_default()
                .push(event["data"].as_str().unwrap().to_owned());
        }
        cursor = poll_cursor(&answer);
    }
    for topic in ["x", "y"] {
        let expected: Vec<String> = (0..5).map(|n| format!("{topic}{n}")).collect();
        assert_eq!(received[topic], expected, "every event of {topic} once, in order");
    }
}

#[tokio::test]
async fn more_topics_than_the_cursor_can_hold_are_refused_clearly() {
    let topics = Topics::new(MemoryLog::builder());
    let server = serve(&topics).await;
    let many: String = (0..6).map(|n| format!("topic=room{n:04}&")).collect();
    let answer = get(server.addr, &format!("/events?{many}timeout=0")).await;
    assert_eq!(answer.status.as_u16(), 400);
    assert!(
        answer.text().contains("6 topics need a cursor"),
        "{}",
        answer.text()
    );
    assert!(topics.is_empty(), "nothing was subscribed");
    let five: String = (0..5).map(|n| format!("topic=r{n}&")).collect();
    assert_eq!(
        get(server.addr, &format!("/events?{five}timeout=0"))
            .await
            .status
            .as_u16(),
        200
    );
}

#[tokio::test]
async fn a_held_long_poll_over_several_topics_answers_when_one_gets_an_event() {
    let topics = Topics::new(MemoryLog::builder());
    let server = serve(&topics).await;
    let addr = server.addr;
    let poll = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let (_, answer) = long_poll(addr, "/events?topic=x&topic=y&timeout=20000").await;
        (answer, started.elapsed())
    });
    wait_until("the poll to subscribe", || topics.subscriber_count() == 2).await;
    publish(&topics, "y", "woken").await;
    let (answer, waited) = support::within("the held poll", poll).await.unwrap();
    assert_eq!(answer["events"][0]["data"], "woken", "{answer}");
    assert_eq!(answer["events"][0]["topic"], "y", "{answer}");
    assert!(
        waited < std::time::Duration::from_secs(5),
        "answered at once, not at the timeout: {waited:?}"
    );
}

#[tokio::test]
async fn plain_names_keep_each_event_its_own_name_and_resume_exactly() {
    let topics = Topics::new(MemoryLog::builder().history(2));
    let config = StreamConfig::default().topic_names(TopicNames::Plain);
    let service = TopicsService::new(topics.clone()).with_config(config);
    let server = TestServer::start(Serving::Axum, Router::new().route_service("/events", service)).await;
    let mut client = SseClient::connect(server.addr, "/events?topic=a&topic=b", None).await;
    topics.append("a", Event::new("a0")).await.unwrap();
    let alert = Event::new("b0").with_name("alert").unwrap();
    topics.append("b", alert).await.unwrap();
    let names = |events: Vec<eventsource_stream::Event>| -> Vec<(String, String)> {
        events.into_iter().map(|e| (e.event, e.data)).collect()
    };
    // What `onmessage` and `addEventListener("alert", …)` receive.
    assert_eq!(
        names(client.take(2).await),
        [("message".into(), "a0".into()), ("alert".into(), "b0".into())]
    );
    let cursor = client.last_event_id().to_owned();
    assert!(cursor.starts_with("a~") && cursor.contains(",b~"), "{cursor}");
    drop(client);

    // While cut, `a` overflows its history of 2: a reset naming `a`, its held events, `b` exactly.
    for n in 1..=4 {
        publish(&topics, "a", &format!("a{n}")).await;
    }
    publish(&topics, "b", "b1").await;
    let mut client = SseClient::connect(server.addr, "/events?topic=a&topic=b", Some(&cursor)).await;
    let mut got = names(client.take(4).await);
    got.sort();
    let expected = [
        ("message", "a3"),
        ("message", "a4"),
        ("message", "b1"),
        ("reset", "a"),
    ];
    assert_eq!(got, expected.map(|(n, d)| (n.into(), d.into())));

    // A long poll still says each event's topic.
    let (_, answer) = long_poll(
        server.addr,
        &format!("/events?topic=a&topic=b&timeout=0&lastEventId={cursor}"),
    )
    .await;
    assert_eq!(answer["reset"], true, "{answer}");
    for event in answer["events"].as_array().unwrap() {
        let data = event["data"].as_str().unwrap();
        let topic = if event["event"] == "reset" {
            data
        } else {
            &data[..1]
        };
        assert_eq!(event["topic"], topic, "{event}");
    }
}
