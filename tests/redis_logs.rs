//! `RedisLogs`: many stream keys (one per topic) sharing one connection and one reader, against
//! a real `redis-server` (feature `redis`).
//!
//! Each test starts its own server on a free loopback port and kills it when done. Without
//! `redis-server` on the PATH the tests are skipped with a warning, except under CI (`CI`
//! set), where they fail.

#![cfg(feature = "redis")]

mod support;

use std::future::poll_fn;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use support::feed::{append, cursor, id_and_data, next, ready_now, subscribe};
use support::redis::{connect_logs, log, RedisServer};
use support::{report, wait_until, within};
use tower_eventstream::{
    Delivery, Event, EventFeed, LastEventId, RedisSubscription, ResumeOutcome, Subscription,
};

/// The next delivery's id and data; panics on a gap.
async fn next_event(subscription: &mut RedisSubscription) -> (String, String) {
    match next(subscription).await {
        Delivery::Event(event) => (
            event.id().expect("an id").as_str().to_owned(),
            event.data().to_owned(),
        ),
        other => panic!("expected an event, got {other:?}"),
    }
}

/// `n` distinct indices below `below`, from a seed printed with the figures (xorshift).
fn pick(n: usize, below: usize, seed: u64) -> Vec<usize> {
    let mut state = seed | 1;
    let mut picked = Vec::with_capacity(n);
    while picked.len() < n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let index = usize::try_from(state % below as u64).unwrap();
        if !picked.contains(&index) {
            picked.push(index);
        }
    }
    picked
}

/// The connections the server has, besides the one asking.
async fn other_connections(counting: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(counting)
        .await
        .expect("CLIENT LIST");
    let own: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(counting)
        .await
        .expect("CLIENT ID");
    let own = format!("id={own} ");
    list.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with(&own))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_topics_share_one_reader_connection() {
    const TOPICS: usize = 10_000;
    const CHUNK: usize = 1_000;
    const APPENDED: usize = 20;
    let Some(server) = RedisServer::start() else {
        return;
    };
    let topics = connect_logs(&server, "t:").await;
    assert_eq!(topics.prefix(), "t:");

    let started = Instant::now();
    let mut logs = Vec::with_capacity(TOPICS);
    for chunk in (0..TOPICS).collect::<Vec<_>>().chunks(CHUNK) {
        let names: Vec<String> = chunk.iter().map(usize::to_string).collect();
        let made = join_all(names.iter().map(|name| topics.log(name))).await;
        logs.extend(made.into_iter().map(|log| log.expect("a topic's log")));
    }
    let created = started.elapsed();
    let mut subscriptions = Vec::with_capacity(TOPICS);
    for log in &logs {
        let subscription = subscribe(log, None).await;
        assert_eq!(subscription.outcome(), ResumeOutcome::Fresh);
        subscriptions.push(subscription);
    }
    let subscribed = started.elapsed();
    wait_until("the reader follows every topic", || {
        topics.reader_keys() == TOPICS
    })
    .await;
    let followed = started.elapsed();
    assert_eq!(topics.reader_keys(), TOPICS);

    let seed = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000_007,
    )
    .unwrap();
    let chosen = pick(APPENDED, TOPICS, seed);
    let sending = Instant::now();
    let mut sent = Vec::with_capacity(APPENDED);
    for &i in &chosen {
        let event = append(&logs[i], &format!("to topic {i}")).await;
        assert_eq!(logs[i].key(), format!("t:{i}"));
        sent.push(id_and_data(&event));
    }
    for (&i, expected) in chosen.iter().zip(&sent) {
        assert_eq!(
            &next_event(&mut subscriptions[i]).await,
            expected,
            "topic {i} (seed {seed})"
        );
    }
    let delivered = sending.elapsed();

    // Exactly its event: nothing more for the chosen, nothing at all for the others.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (i, subscription) in subscriptions.iter_mut().enumerate() {
        if let Some(delivery) = ready_now(subscription) {
            panic!("topic {i} got {delivery:?} (seed {seed})");
        }
    }
    let mut redis = server.connection().await;
    for &i in &chosen {
        let len: usize = redis::cmd("XLEN")
            .arg(format!("t:{i}"))
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(len, 1, "the stream t:{i}");
    }

    // This process's connections besides the checking one (`redis`): the family's
    // multiplexed connection (appends, reads, CLIENT UNBLOCK) and the reader's blocking one
    // (XREAD BLOCK over every key). At most 3 allows for one being replaced.
    let connections = other_connections(&mut redis).await;
    assert!(connections.len() <= 3, "{connections:#?}");
    report(&format!(
        "ten_thousand_topics: {TOPICS} logs created in {created:?}, subscribed by {subscribed:?}, \
         all followed by {followed:?}; {APPENDED} events delivered in {delivered:?}; \
         {} connections to Redis besides the counting one (seed {seed})",
        connections.len()
    ));
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_topic_is_followed_at_once() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let topics = connect_logs(&server, "room:").await;
    let first = log(&topics, "first").await;
    let mut first_subscription = subscribe(&first, None).await;
    let event = append(&first, "hello").await;
    assert_eq!(next_event(&mut first_subscription).await, id_and_data(&event));

    let mut held = Vec::new();
    for name in ["second", "third", "fourth"] {
        // The reader is blocked in its XREAD (2 s) over the keys it followed so far.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let topic = log(&topics, name).await;
        let mut subscription = subscribe(&topic, None).await;
        let event = append(&topic, name).await;
        assert_eq!(next_event(&mut subscription).await, id_and_data(&event));
        let took = started.elapsed();
        report(&format!(
            "a_new_topic_is_followed_at_once: {name} delivered in {took:?}"
        ));
        assert!(took < Duration::from_secs(1), "{name} took {took:?}");
        assert!(ready_now(&mut first_subscription).is_none());
        held.push((topic, subscription));
    }
    assert_eq!(topics.reader_keys(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_topics_are_no_longer_followed() {
    const TOPICS: usize = 100;
    let Some(server) = RedisServer::start() else {
        return;
    };
    let topics = connect_logs(&server, "gone:").await;
    let mut held = Vec::with_capacity(TOPICS);
    for i in 0..TOPICS {
        let topic = log(&topics, &i.to_string()).await;
        let subscription = subscribe(&topic, None).await;
        held.push((topic, subscription));
    }
    wait_until("the reader follows every topic", || {
        topics.reader_keys() == TOPICS
    })
    .await;

    // A subscription alone keeps its topic followed.
    let (kept_log, mut kept) = held.pop().unwrap();
    drop(kept_log);
    drop(held);
    wait_until("the reader lets the dropped topics go", || {
        topics.reader_keys() == 1
    })
    .await;
    let again = log(&topics, &(TOPICS - 1).to_string()).await;
    let event = append(&again, "still here").await;
    assert_eq!(next_event(&mut kept).await, id_and_data(&event));

    drop((again, kept));
    wait_until("the reader lets every topic go", || topics.reader_keys() == 0).await;

    // A topic asked for again is followed again, from a new window.
    let back = log(&topics, "7").await;
    let mut subscription = subscribe(&back, None).await;
    let event = append(&back, "back").await;
    assert_eq!(next_event(&mut subscription).await, id_and_data(&event));
    assert_eq!(topics.reader_keys(), 1);

    // With the family, its last log and subscription gone, the reader stops and both of
    // the family's connections close.
    drop((topics, back, subscription));
    let mut redis = server.connection().await;
    let deadline = Instant::now() + support::LIMIT;
    loop {
        let connections = other_connections(&mut redis).await;
        if connections.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still connected: {connections:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_is_not_a_stream_does_not_stop_the_others() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let topics = connect_logs(&server, "k:").await;
    let (broken, fine) = (log(&topics, "broken").await, log(&topics, "fine").await);
    let mut on_broken = subscribe(&broken, None).await;
    let mut on_fine = subscribe(&fine, None).await;
    let before = append(&broken, "before").await;
    assert_eq!(next_event(&mut on_broken).await, id_and_data(&before));

    // Overwritten behind the family's back: the blocking XREAD over both keys now fails.
    let mut redis = server.connection().await;
    let () = redis::cmd("DEL")
        .arg("k:broken")
        .query_async(&mut redis)
        .await
        .unwrap();
    let () = redis::cmd("SET")
        .arg("k:broken")
        .arg("1")
        .query_async(&mut redis)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in 0..3 {
        let event = append(&fine, &format!("fine {n}")).await;
        assert_eq!(next_event(&mut on_fine).await, id_and_data(&event));
    }

    // A stream again: its subscriber hears of the gap, then reads on.
    let () = redis::cmd("DEL")
        .arg("k:broken")
        .query_async(&mut redis)
        .await
        .unwrap();
    let after = append(&broken, "after").await;
    assert!(matches!(next(&mut on_broken).await, Delivery::Gap(_)));
    assert_eq!(next_event(&mut on_broken).await, id_and_data(&after));
    let event = append(&fine, "fine again").await;
    assert_eq!(next_event(&mut on_fine).await, id_and_data(&event));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_families_in_two_processes_resume_each_others_cursors() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // Two processes, each with its own family on the same prefix.
    let process_a = connect_logs(&server, "chat:").await;
    let process_b = connect_logs(&server, "chat:").await;
    let on_a = log(&process_a, "lobby").await;
    let on_b = log(&process_b, "lobby").await;
    assert_eq!((on_a.key(), on_b.key()), ("chat:lobby", "chat:lobby"));

    // Asked for twice in one process: one window, one subscriber count.
    let on_a_again = log(&process_a, "lobby").await;
    let live = subscribe(&on_a_again, None).await;
    assert_eq!(on_a.subscriber_count(), 1);
    drop(live);

    let mut sent = Vec::new();
    for n in 0..6 {
        sent.push(append(&on_a, &format!("from a {n}")).await);
    }
    // Resumed in the other process from the third event: exactly the three after it.
    let mut resumed = subscribe(&on_b, Some(&cursor(&sent[2]))).await;
    assert_eq!(resumed.outcome(), ResumeOutcome::Resumed);
    for event in &sent[3..] {
        assert_eq!(next_event(&mut resumed).await, id_and_data(event));
    }
    // And the live ones after them, whichever process appends.
    let from_b = append(&on_b, "from b").await;
    let from_a = append(&on_a, "from a again").await;
    assert_eq!(next_event(&mut resumed).await, id_and_data(&from_b));
    assert_eq!(next_event(&mut resumed).await, id_and_data(&from_a));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(ready_now(&mut resumed).is_none(), "nothing repeated");

    // The other way round: process A resumes a cursor process B handed out.
    let mut back_on_a = subscribe(&on_a, Some(&cursor(&from_b))).await;
    assert_eq!(back_on_a.outcome(), ResumeOutcome::Resumed);
    assert_eq!(next_event(&mut back_on_a).await, id_and_data(&from_a));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(ready_now(&mut back_on_a).is_none(), "nothing repeated");
}

/// Topics on Redis: each topic a stream under the prefix. Eviction drops only this
/// process's window; the history stays in Redis, so an old cursor resumes exactly (where a
/// memory topic would answer `reset`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_topics_keep_their_history_across_eviction() {
    use tower_eventstream::{Access, Topics};

    let Some(server) = RedisServer::start() else {
        return;
    };
    let rooms = Topics::builder(connect_logs(&server, "room:").await)
        .idle_eviction(Duration::from_millis(100))
        .build();
    let first = rooms.append("kitchen", Event::new("kettle on")).await.unwrap();
    rooms.append("lobby", Event::new("hello")).await.unwrap();
    wait_until("both idle topics to be evicted", || rooms.is_empty()).await;

    rooms.append("kitchen", Event::new("tea ready")).await.unwrap();
    let cursor = LastEventId::parse(first.id().unwrap().as_str()).unwrap();
    let mut feed = rooms
        .subscribe("kitchen", Some(&cursor), Access::allow())
        .await
        .unwrap();
    let delivery = within(
        "the next kitchen event",
        poll_fn(|cx| Pin::new(&mut feed).poll_delivery(cx)),
    )
    .await;
    match delivery {
        Some(Ok(Delivery::Event(event))) => assert_eq!(event.data(), "tea ready"),
        other => panic!("expected the event after the cursor, got {other:?}"),
    }
    assert_eq!(rooms.subscriber_count(), 1);
}

/// Several Redis topics in one stream, served by two processes: the composite cursor one
/// gives resumes every topic exactly on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_over_several_redis_topics_resumes_on_another_process() {
    use support::server::{Serving, TestServer};
    use support::sse::SseClient;
    use tower_eventstream::{Topics, TopicsService};

    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut instances = Vec::new();
    let mut registries = Vec::new();
    for _ in 0..2 {
        let topics = Topics::new(connect_logs(&server, "mux:").await);
        let service = TopicsService::new(topics.clone()).key_from_query("topic");
        let router = axum::Router::new().route_service("/events", service);
        instances.push(TestServer::start(Serving::Axum, router).await);
        registries.push(topics);
    }
    let (a, b) = (instances[0].addr, instances[1].addr);
    let publisher = &registries[0];
    let mut client = SseClient::connect(a, "/events?topic=red&topic=blue", None).await;
    wait_until("two subscribers", || registries[0].subscriber_count() == 2).await;
    publisher.append("red", Event::new("red 0")).await.unwrap();
    publisher.append("blue", Event::new("blue 0")).await.unwrap();
    let mut first: Vec<String> = client
        .take(2)
        .await
        .into_iter()
        .map(|e| format!("{} {}", e.event, e.data))
        .collect();
    first.sort();
    assert_eq!(first, ["blue:message blue 0", "red:message red 0"]);
    let cursor = client.last_event_id().to_owned();
    drop(client);

    for n in 1..=3 {
        publisher
            .append("red", Event::new(format!("red {n}")))
            .await
            .unwrap();
        publisher
            .append("blue", Event::new(format!("blue {n}")))
            .await
            .unwrap();
    }
    let mut client = SseClient::connect(b, "/events?topic=red&topic=blue", Some(&cursor)).await;
    let got: Vec<(String, String)> = client
        .take(6)
        .await
        .into_iter()
        .map(|e| (e.event, e.data))
        .collect();
    for topic in ["red", "blue"] {
        let of: Vec<&str> = got
            .iter()
            .filter(|(kind, _)| kind == &format!("{topic}:message"))
            .map(|(_, data)| data.as_str())
            .collect();
        let expected: Vec<String> = (1..=3).map(|n| format!("{topic} {n}")).collect();
        assert_eq!(
            of, expected,
            "{topic}: exactly the missed events, in order: {got:?}"
        );
    }
}
