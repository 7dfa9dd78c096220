//! `RedisLog::append_once`: appends with an idempotency key, checked and remembered in Redis
//! by the append script, so that a retry on another instance is recognised too (feature
//! `redis`, a real `redis-server`).

#![cfg(feature = "redis")]

mod support;

use std::time::Duration;

use support::feed::{next, ready_now, subscribe};
use support::redis::{connect_logs, log, RedisServer};
use support::within;
use tower_eventstream::{AppendError, Appended, Delivery, Event, EventLog, IdempotencyKey};

const WINDOW: Duration = Duration::from_secs(300);

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::new(text).expect("a valid key")
}

/// The number of entries of the stream `key`.
async fn length(server: &RedisServer, key: &str) -> u64 {
    let mut connection = server.connection().await;
    redis::cmd("XLEN")
        .arg(key)
        .query_async(&mut connection)
        .await
        .expect("XLEN")
}

#[tokio::test]
async fn a_retry_on_another_instance_appends_nothing_and_answers_the_first_id() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let first = log(&connect_logs(&server, "once:").await, "orders").await;
    let second = log(&connect_logs(&server, "once:").await, "orders").await;
    let mut subscription = subscribe(&first, None).await;

    let event = || Event::new("order 17 shipped").with_name("order").unwrap();
    let Appended::New(stored) = first.append_once(event(), &key("k-17"), WINDOW).await.unwrap() else {
        panic!("the first append appends");
    };
    let retried = second.append_once(event(), &key("k-17"), WINDOW).await.unwrap();
    assert!(
        retried.is_repeat(),
        "the retry, on the other instance, is a repeat"
    );
    assert_eq!(retried.id(), stored.id());

    // The same key with another event: refused, nothing added.
    let reused = second
        .append_once(Event::new("order 18 shipped"), &key("k-17"), WINDOW)
        .await;
    assert!(matches!(reused, Err(AppendError::KeyReused)), "{reused:?}");
    // Another key: a new event.
    let other = second.append_once(event(), &key("k-18"), WINDOW).await.unwrap();
    assert!(!other.is_repeat());

    assert_eq!(length(&server, "once:orders").await, 2);
    for expected in [stored.id(), other.id()] {
        let Delivery::Event(got) = within("the next event", next(&mut subscription)).await else {
            panic!("an event")
        };
        assert_eq!(got.id(), expected);
    }
    assert!(ready_now(&mut subscription).is_none(), "each once");

    // Remembered in the stream's slot, for the window.
    let mut connection = server.connection().await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg("{once:orders}:once:k-17")
        .query_async(&mut connection)
        .await
        .expect("PTTL");
    assert!(ttl > 0 && ttl <= 300_000, "remembered for the window: {ttl} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_with_one_key_on_two_instances_append_once() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let instances = [
        log(&connect_logs(&server, "race:").await, "t").await,
        log(&connect_logs(&server, "race:").await, "t").await,
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..20 {
        let log = instances[n % 2].clone();
        tasks.spawn(async move { log.append_once(Event::new("once"), &key("same"), WINDOW).await });
    }
    let mut answers = Vec::new();
    while let Some(answer) = tasks.join_next().await {
        answers.push(answer.expect("the task").expect("an answer"));
    }
    let new = answers.iter().filter(|a| !a.is_repeat()).count();
    assert_eq!(new, 1, "exactly one appends");
    let first = answers.iter().find(|a| !a.is_repeat()).unwrap().id().cloned();
    assert!(
        answers.iter().all(|a| a.id().cloned() == first),
        "all answer the same id"
    );
    assert_eq!(length(&server, "race:t").await, 1);
}

#[tokio::test]
async fn a_key_is_forgotten_after_its_window_and_a_finished_stream_still_answers_repeats() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let topic = log(&connect_logs(&server, "window:").await, "t").await;
    let short = Duration::from_millis(200);
    let first = topic
        .append_once(Event::new("a"), &key("w"), short)
        .await
        .unwrap();
    assert!(topic
        .append_once(Event::new("a"), &key("w"), short)
        .await
        .unwrap()
        .is_repeat());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let again = topic
        .append_once(Event::new("a"), &key("w"), short)
        .await
        .unwrap();
    assert!(!again.is_repeat(), "after the window the same key appends again");
    assert_ne!(again.id(), first.id());

    // A retry of an append that made it before the end still gets its id; a new one is
    // refused as any append to a finished stream is.
    let last = topic
        .append_once(Event::new("last"), &key("l"), WINDOW)
        .await
        .unwrap();
    topic.finish().await.expect("finish");
    let retry = topic
        .append_once(Event::new("last"), &key("l"), WINDOW)
        .await
        .unwrap();
    assert_eq!((retry.is_repeat(), retry.id()), (true, last.id()));
    let late = topic.append_once(Event::new("late"), &key("m"), WINDOW).await;
    assert!(matches!(late, Err(AppendError::Finished)), "{late:?}");
}
