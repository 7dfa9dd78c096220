//! `RedisLogs` on a Redis Cluster (`RedisLogBuilder::cluster`): a local cluster of three
//! primaries with a replica each, started by the test (feature `redis`).
//!
//! Topics spread over the shards; each instance's reader hears every shard; a client resumes
//! on another instance; and when a primary is killed and its replica takes over, streams stay
//! open and resume exactly, or hear a gap where the failover lost entries — never a silent
//! hole.

#![cfg(feature = "redis")]

mod support;

use std::collections::BTreeSet;
use std::future::poll_fn;
use std::pin::Pin;
use std::time::{Duration, Instant};

use support::feed::{next, ready_now, subscribe};
use support::redis::log;
use support::redis_cluster::RedisCluster;
use support::{report, within};
use tower_eventstream::{
    Delivery, Event, EventFeed, EventLog, LastEventId, RedisLog, RedisLogs, RedisSubscription,
};

async fn connect(cluster: &RedisCluster, prefix: &str) -> RedisLogs {
    within(
        "connect_logs on the cluster",
        RedisLog::builder(cluster.seed_url(), prefix)
            .cluster()
            .connect_logs(),
    )
    .await
    .expect("connect RedisLogs to the cluster")
}

/// The next event's id and data; panics on anything else.
async fn next_event(subscription: &mut RedisSubscription) -> (String, String) {
    match within("the next event", next(subscription)).await {
        Delivery::Event(event) => (
            event.id().expect("an id").as_str().to_owned(),
            event.data().to_owned(),
        ),
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Appends until Redis takes it (a failover refuses appends for a few seconds).
async fn append_retrying(log: &RedisLog, data: String) -> Event {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match log.append(Event::new(data.clone())).await {
            Ok(event) => return event,
            Err(error) => {
                assert!(Instant::now() < deadline, "appends failed for 30 s: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_across_shards_arrive_in_order_and_resume_on_another_instance() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    const TOPICS: usize = 24;
    const EVENTS: usize = 20;
    let names: Vec<String> = (0..TOPICS).map(|n| format!("room{n}")).collect();
    let shards: BTreeSet<u16> = names
        .iter()
        .map(|name| cluster.primary_of(&format!("rooms:{name}")))
        .collect();
    assert_eq!(
        shards.len(),
        3,
        "the topics' keys spread over the three primaries"
    );

    let first_family = connect(&cluster, "rooms:").await;
    let second = connect(&cluster, "rooms:").await;
    let mut subscriptions = Vec::new();
    let mut writers = Vec::new();
    for name in &names {
        subscriptions.push(subscribe(&log(&first_family, name).await, None).await);
        writers.push(log(&second, name).await);
    }
    for n in 0..EVENTS {
        for writer in &writers {
            writer
                .append(Event::new(n.to_string()))
                .await
                .expect("append on the cluster");
        }
    }
    let mut middles = Vec::new();
    for (topic, subscription) in subscriptions.iter_mut().enumerate() {
        let mut middle = None;
        for n in 0..EVENTS {
            let (id, data) = next_event(subscription).await;
            assert_eq!(data, n.to_string(), "topic {topic}: in order, each once");
            if n == EVENTS / 2 - 1 {
                middle = Some(id);
            }
        }
        assert!(ready_now(subscription).is_none(), "topic {topic}: no duplicate");
        middles.push(middle.expect("a middle cursor"));
    }
    // A client of the first instance moves to the second with its cursor.
    for (topic, writer) in writers.iter().enumerate() {
        let cursor = LastEventId::parse(&middles[topic]).expect("a cursor");
        let mut resumed = subscribe(writer, Some(&cursor)).await;
        for n in EVENTS / 2..EVENTS {
            assert_eq!(next_event(&mut resumed).await.1, n.to_string());
        }
        assert!(ready_now(&mut resumed).is_none());
    }
    // Appends with an idempotency key: remembered in each stream's slot, so a retry on the
    // other instance is a repeat on every shard.
    let window = Duration::from_secs(60);
    for (topic, writer) in writers.iter().enumerate() {
        let key = tower_eventstream::IdempotencyKey::new(&format!("k{topic}")).unwrap();
        let first = writer
            .append_once(Event::new("once"), &key, window)
            .await
            .unwrap();
        let reader = log(&first_family, &names[topic]).await;
        let retry = reader
            .append_once(Event::new("once"), &key, window)
            .await
            .unwrap();
        assert!(!first.is_repeat() && retry.is_repeat(), "topic {topic}");
        assert_eq!(first.id(), retry.id());
    }
    report(&format!(
        "cluster: {TOPICS} topics over {} shards, {} events, resumed on another instance",
        shards.len(),
        TOPICS * EVENTS
    ));
}

/// The data of every entry the stream holds now, in order.
async fn stream_data(cluster: &RedisCluster, key: &str) -> Vec<String> {
    let mut connection = cluster.connection().await;
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .expect("XRANGE");
    let data = |(_, fields): (String, Vec<(String, String)>)| {
        fields
            .into_iter()
            .find(|(field, _)| field == "data")
            .map(|(_, data)| data)
    };
    entries.into_iter().filter_map(data).collect()
}

/// Never a silent hole: the events delivered are in the stream's order, each once; every
/// event the stream holds is delivered; and an event delivered that the stream no longer
/// holds (the failover lost it) is followed by a gap before the next event. Returns the
/// number of gaps.
fn check_no_silent_hole(topic: &str, deliveries: &[Delivery], held: &[String]) -> usize {
    let mut delivered: Vec<usize> = Vec::new();
    let mut gaps = 0;
    for (at, delivery) in deliveries.iter().enumerate() {
        match delivery {
            Delivery::Event(event) => {
                let n: usize = event.data().parse().expect("a number");
                assert!(
                    delivered.last().is_none_or(|&last| n > last),
                    "{topic}: {n} out of order or twice: {deliveries:?}"
                );
                delivered.push(n);
                if !held.contains(&n.to_string()) {
                    assert!(
                        matches!(deliveries.get(at + 1), Some(Delivery::Gap { .. })),
                        "{topic}: {n} was lost by the failover, and no gap follows it: {deliveries:?}"
                    );
                }
            }
            Delivery::Gap { .. } => gaps += 1,
            other => panic!("{topic}: unexpected {other:?}"),
        }
    }
    for n in held {
        let n: usize = n.parse().expect("a number");
        assert!(
            delivered.contains(&n),
            "{topic}: {n} is in the stream but never came: {deliveries:?}"
        );
    }
    gaps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_fails_over_and_streams_resume_exactly_or_hear_a_gap() {
    let Some(mut cluster) = RedisCluster::start() else {
        return;
    };
    let reading = connect(&cluster, "fail:").await;
    let writing = connect(&cluster, "fail:").await;
    let names: Vec<String> = (0..12).map(|n| format!("t{n}")).collect();
    let victim_key = "fail:t0";
    let victim = cluster.primary_of(victim_key);
    let mut subscriptions = Vec::new();
    let mut writers = Vec::new();
    for name in &names {
        subscriptions.push(subscribe(&log(&reading, name).await, None).await);
        writers.push(log(&writing, name).await);
    }
    let on_victim: Vec<bool> = names
        .iter()
        .map(|name| cluster.primary_of(&format!("fail:{name}")) == victim)
        .collect();
    assert!(on_victim.iter().filter(|&&on| on).count() >= 2);
    assert!(on_victim.iter().any(|&on| !on));

    // Before the failover: replicated, so it survives.
    const BEFORE: usize = 10;
    for n in 0..BEFORE {
        for writer in &writers {
            writer.append(Event::new(n.to_string())).await.expect("append");
        }
    }
    tokio::task::block_in_place(|| cluster.wait_replicated(victim_key));
    // Some more that may or may not reach the replica before its primary dies.
    for writer in &writers {
        writer
            .append(Event::new(BEFORE.to_string()))
            .await
            .expect("append");
    }
    let started = Instant::now();
    let promoted = tokio::task::block_in_place(|| cluster.kill_primary_of(victim_key));
    let failover = started.elapsed();

    // After it: every topic takes appends again, on the promoted replica for the victim's.
    const AFTER: usize = 10;
    let mut appended = Vec::new();
    for writer in &writers {
        // Numbers go on from what the topic holds now (the unreplicated one may be gone).
        let mut count = BEFORE + 1;
        for n in count..count + AFTER {
            append_retrying(writer, n.to_string()).await;
        }
        count += AFTER;
        appended.push(count);
    }
    let mut gaps = 0;
    let mut lost = 0;
    for (topic, subscription) in subscriptions.iter_mut().enumerate() {
        let held = stream_data(&cluster, &format!("fail:{}", names[topic])).await;
        lost += appended[topic] - held.len();
        let mut deliveries = Vec::new();
        loop {
            let polled = poll_fn(|cx| Pin::new(&mut *subscription).poll_delivery(cx));
            let Ok(Some(Ok(delivery))) = tokio::time::timeout(support::LIMIT, polled).await else {
                panic!(
                    "{}: no next delivery within {:?} after {deliveries:?} (held now: {held:?}; on the killed shard: {})",
                    names[topic],
                    support::LIMIT,
                    on_victim[topic]
                );
            };
            let last =
                matches!(&delivery, Delivery::Event(e) if e.data() == (appended[topic] - 1).to_string());
            deliveries.push(delivery);
            if last {
                break;
            }
        }
        gaps += check_no_silent_hole(&names[topic], &deliveries, &held);
        assert!(
            ready_now(subscription).is_none(),
            "{}: no duplicate",
            names[topic]
        );
        if !on_victim[topic] {
            assert!(
                deliveries.iter().all(|d| matches!(d, Delivery::Event(_))),
                "{}: a topic on another shard is untouched: {deliveries:?}",
                names[topic]
            );
        }
    }
    report(&format!(
        "cluster failover: primary {victim} killed, replica {promoted} took over in {failover:?}; \
         {lost} acknowledged entries lost by it, {gaps} gap(s) heard"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_a_failover_loses_after_readers_had_them_are_a_gap_never_a_silent_hole() {
    let Some(mut cluster) = RedisCluster::start() else {
        return;
    };
    let reading = connect(&cluster, "lose:").await;
    let writing = connect(&cluster, "lose:").await;
    let key = "lose:t";
    let mut subscription = subscribe(&log(&reading, "t").await, None).await;
    let writer = log(&writing, "t").await;
    for n in 0..5 {
        writer.append(Event::new(n.to_string())).await.expect("append");
    }
    tokio::task::block_in_place(|| cluster.wait_replicated(key));
    for n in 0..5 {
        assert_eq!(next_event(&mut subscription).await.1, n.to_string());
    }

    // The primary acknowledges 5..8 and its readers receive them, but no replica ever does.
    let cut_off = tokio::task::block_in_place(|| cluster.cut_off_replicas_of(key));
    for n in 5..8 {
        writer.append(Event::new(n.to_string())).await.expect("append");
    }
    for n in 5..8 {
        assert_eq!(next_event(&mut subscription).await.1, n.to_string());
    }
    let promoted = tokio::task::block_in_place(|| cluster.kill_cut_off_primary(cut_off));
    assert_eq!(
        stream_data(&cluster, key).await,
        ["0", "1", "2", "3", "4"],
        "the failover lost what the replica never had"
    );

    // The stream goes on from the replica's history: the reader says so with a gap, then
    // hands out the stream as it now is (the client reloads its state on a gap), and what
    // comes after the failover.
    for n in 8..11 {
        append_retrying(&writer, n.to_string()).await;
    }
    let mut deliveries = Vec::new();
    loop {
        let delivery = within("the next delivery", next(&mut subscription)).await;
        let last = matches!(&delivery, Delivery::Event(event) if event.data() == "10");
        deliveries.push(delivery);
        if last {
            break;
        }
    }
    assert!(
        matches!(deliveries.first(), Some(Delivery::Gap { .. })),
        "a gap first: {deliveries:?}"
    );
    let data: Vec<&str> = deliveries
        .iter()
        .filter_map(|d| match d {
            Delivery::Event(event) => Some(event.data()),
            _ => None,
        })
        .collect();
    assert_eq!(
        data,
        ["0", "1", "2", "3", "4", "8", "9", "10"],
        "then the stream as it is, each once"
    );
    report(&format!(
        "cluster: a failover to replica {promoted} lost 3 acknowledged entries; the reader that had them heard a gap"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_whose_slot_moves_to_another_shard_goes_on_without_loss_or_duplicate() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let reading = connect(&cluster, "move:").await;
    let writing = connect(&cluster, "move:").await;
    let key = "move:t";
    let mut subscription = subscribe(&log(&reading, "t").await, None).await;
    let writer = log(&writing, "t").await;
    for n in 0..5 {
        writer.append(Event::new(n.to_string())).await.expect("append");
    }
    for n in 0..5 {
        assert_eq!(next_event(&mut subscription).await.1, n.to_string());
    }
    let from = cluster.primary_of(key);
    let to = *cluster
        .primaries()
        .iter()
        .find(|&&port| port != from)
        .expect("another primary");
    tokio::task::block_in_place(|| cluster.move_slot_of(key, to));
    assert_eq!(cluster.primary_of(key), to);

    // Appends follow MOVED; the reader, whose subscription the old shard ended, subscribes
    // on the new one and hears of them there.
    let started = Instant::now();
    for n in 5..10 {
        append_retrying(&writer, n.to_string()).await;
    }
    for n in 5..10 {
        assert_eq!(next_event(&mut subscription).await.1, n.to_string());
    }
    let took = started.elapsed();
    assert!(ready_now(&mut subscription).is_none(), "no duplicate");
    // Heard at once on the new shard, not found later by the reader's turn-by-turn reads.
    assert!(took < Duration::from_secs(1), "after the move: {took:?}");
    report(&format!(
        "cluster: slot of {key} moved from {from} to {to}; the next 5 events arrived within {took:?}"
    ));
}
