//! How `RedisLogs` hears of new entries: a notice on each key's sharded Pub/Sub channel,
//! published by the append script, against a real `redis-server` (feature `redis`).
//!
//! Pub/Sub delivers at most once, so these tests take notices away (the reader's connection
//! killed again and again while appends go on; entries added with no notice, or with a bare
//! one, by another program) and check that every event still arrives exactly once, in
//! order, and that what one append costs Redis does not grow with the keys followed.

#![cfg(feature = "redis")]

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::feed::{next, subscribe};
use support::redis::{connect_logs, log, RedisServer};
use support::{report, wait_until, within};
use tower_eventstream::{Delivery, Event, EventLog, RedisSubscription};

/// The next event's data; panics on anything else.
async fn next_data(subscription: &mut RedisSubscription) -> String {
    match next(subscription).await {
        Delivery::Event(event) => event.data().to_owned(),
        other => panic!("expected an event, got {other:?}"),
    }
}

/// The ids of the connections subscribed to sharded channels (the readers' Pub/Sub
/// connections).
async fn listening_clients(redis: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(redis)
        .await
        .expect("CLIENT LIST");
    list.lines()
        .filter(|line| {
            line.split(' ')
                .any(|field| field.strip_prefix("ssub=").is_some_and(|n| n != "0"))
        })
        .filter_map(|line| line.split(' ').next()?.strip_prefix("id=").map(str::to_owned))
        .collect()
}

/// Calls per command since the server started (`INFO commandstats`).
async fn command_calls(redis: &mut redis::aio::MultiplexedConnection) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(redis)
        .await
        .expect("INFO commandstats");
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|s| s.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_readers_connection_again_and_again_loses_and_repeats_nothing() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    const TOPICS: usize = 8;
    const PER_TOPIC: usize = 150;
    let reading = connect_logs(&server, "kill:").await;
    let writing = connect_logs(&server, "kill:").await;
    let mut subscriptions = Vec::new();
    let mut writers = Vec::new();
    for topic in 0..TOPICS {
        let name = format!("t{topic}");
        subscriptions.push(subscribe(&log(&reading, &name).await, None).await);
        writers.push(log(&writing, &name).await);
    }
    let appends = tokio::spawn(async move {
        for n in 0..PER_TOPIC {
            for writer in &writers {
                writer.append(Event::new(n.to_string())).await.expect("append");
            }
            if n % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    // Both families listen on the same server: kill every listening connection, repeatedly,
    // while the appends go on. Each reader reconnects, subscribes again and reads what it
    // missed.
    let mut redis = server.connection().await;
    let mut kills = 0;
    while !appends.is_finished() {
        for id in listening_clients(&mut redis).await {
            let killed: redis::RedisResult<()> = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(&id)
                .query_async(&mut redis)
                .await;
            if killed.is_ok() {
                kills += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    appends.await.expect("the appends");
    assert!(kills >= 3, "the readers' connections were killed {kills} times");
    for (topic, subscription) in subscriptions.iter_mut().enumerate() {
        for n in 0..PER_TOPIC {
            let data = within("the next event", next_data(subscription)).await;
            assert_eq!(data, n.to_string(), "topic {topic}: every event once, in order");
        }
        assert!(
            support::feed::ready_now(subscription).is_none(),
            "topic {topic}: nothing more (no duplicate)"
        );
    }
    report(&format!(
        "notices: {kills} connection kills during {} appends",
        TOPICS * PER_TOPIC
    ));
}

#[tokio::test]
async fn an_entry_added_without_a_notice_arrives_with_the_next_one_in_order() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let logs = connect_logs(&server, "quiet:").await;
    let topic = log(&logs, "a").await;
    let mut subscription = subscribe(&topic, None).await;
    topic.append(Event::new("first")).await.expect("append");
    assert_eq!(next_data(&mut subscription).await, "first");

    // Another program adds an entry and publishes nothing: the next notice does not follow
    // on from what the reader holds, so it reads the key and finds both.
    let mut redis = server.connection().await;
    let _: String = redis::cmd("XADD")
        .arg("quiet:a")
        .arg("*")
        .arg("data")
        .arg("unannounced")
        .query_async(&mut redis)
        .await
        .expect("XADD");
    topic.append(Event::new("third")).await.expect("append");
    assert_eq!(next_data(&mut subscription).await, "unannounced");
    assert_eq!(next_data(&mut subscription).await, "third");
    assert!(support::feed::ready_now(&mut subscription).is_none());
}

#[tokio::test]
async fn another_programs_xadd_arrives_at_once_with_a_bare_spublish_and_within_the_sweep_without() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let logs = connect_logs(&server, "other:").await;
    let topic = log(&logs, "x").await;
    let mut subscription = subscribe(&topic, None).await;
    let mut redis = server.connection().await;

    // The documented way from another language: XADD, then SPUBLISH on the key's channel.
    let started = Instant::now();
    let _: ((String, i64),) = redis::pipe()
        .atomic()
        .cmd("XADD")
        .arg("other:x")
        .arg("*")
        .arg("name")
        .arg("greeting")
        .arg("data")
        .arg("hello")
        .cmd("SPUBLISH")
        .arg("other:x")
        .arg("")
        .query_async(&mut redis)
        .await
        .map(|(id, receivers): (String, i64)| ((id, receivers),))
        .expect("XADD and SPUBLISH");
    let Delivery::Event(event) = within("the announced entry", next(&mut subscription)).await else {
        panic!("an event")
    };
    let announced = started.elapsed();
    assert_eq!((event.name(), event.data()), (Some("greeting"), "hello"));
    assert!(announced < Duration::from_millis(500), "announced: {announced:?}");

    // A bare XADD: no notice at all. The reader's sweep reads every key in turn (256 keys
    // every 2 s), so a family this small has it within about 2 s.
    let started = Instant::now();
    let _: String = redis::cmd("XADD")
        .arg("other:x")
        .arg("*")
        .arg("data")
        .arg("bare")
        .query_async(&mut redis)
        .await
        .expect("XADD");
    assert_eq!(
        within("the bare entry", next_data(&mut subscription)).await,
        "bare"
    );
    let bare = started.elapsed();
    assert!(bare < Duration::from_millis(4_500), "bare XADD: {bare:?}");
    report(&format!(
        "another program: XADD + SPUBLISH arrived in {announced:?}, a bare XADD in {bare:?}"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_append_and_a_join_cost_redis_does_not_grow_with_the_keys_followed() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    const TOPICS: usize = 3_000;
    let logs = connect_logs(&server, "cost:").await;
    let mut held = Vec::with_capacity(TOPICS);
    for topic in 0..TOPICS {
        let log = log(&logs, &format!("t{topic}")).await;
        held.push((subscribe(&log, None).await, log));
    }
    wait_until("the reader follows every key", || logs.reader_keys() == TOPICS).await;
    let mut redis = server.connection().await;

    // Commands Redis ran for 200 appends from another family, and for each of 20 joins,
    // away from the reader's sweep (256 reads of `MULTI` every 2 s): a round during which a
    // sweep ran is taken again. So is one where the readers read the stream (a machine busy
    // enough to stall a reader lets notices pile up behind a read, and each read then finds
    // the next notices not following on): the claim is that a quiet round takes its entries
    // from the notices, which fails if every round reads.
    let writing = connect_logs(&server, "cost:").await;
    let writer = log(&writing, "t7").await;
    let mut per_append = None;
    for _ in 0..5 {
        let before = command_calls(&mut redis).await;
        for n in 0..200 {
            writer.append(Event::new(n.to_string())).await.expect("append");
        }
        for _ in 0..200 {
            within("the event", next_data(&mut held[7].0)).await;
        }
        let after = command_calls(&mut redis).await;
        let delta = |name: &str| after.get(name).unwrap_or(&0) - before.get(name).unwrap_or(&0);
        let round = (delta("evalsha") + delta("eval"), delta("xread"), delta("xrange"));
        if delta("multi") < 50 {
            per_append = Some(round);
            if round.2 <= 2 {
                break;
            }
        }
    }
    let (evalsha, xread, xrange) = per_append.expect("a round without a sweep");
    assert_eq!(
        evalsha, 200,
        "one script call per append (EVALSHA, or EVAL the first time)"
    );
    assert_eq!(xread, 0, "no XREAD over the followed keys");
    assert!(
        xrange <= 2,
        "the reader takes entries from the notices: {xrange} XRANGE"
    );

    let mut joins = Vec::new();
    for join in 0..20 {
        let before = command_calls(&mut redis).await;
        let started = Instant::now();
        let log = log(&logs, &format!("new{join}")).await;
        let subscription = subscribe(&log, None).await;
        let took = started.elapsed();
        wait_until("the reader takes the key up", || {
            logs.reader_keys() == TOPICS + join + 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let after = command_calls(&mut redis).await;
        let calls: u64 = after
            .iter()
            .map(|(name, n)| n - before.get(name).unwrap_or(&0))
            .sum();
        // INFO itself counts once.
        if after.get("multi").unwrap_or(&0) - before.get("multi").unwrap_or(&0) < 50 {
            joins.push((calls, took));
        }
        held.push((subscription, log));
    }
    assert!(joins.len() >= 10, "rounds without a sweep: {}", joins.len());
    let most = joins.iter().map(|(calls, _)| *calls).max().unwrap();
    assert!(
        most <= 12,
        "Redis commands to join one more key at {TOPICS} keys: {most}"
    );
    report(&format!(
        "cost at {TOPICS} keys: 200 appends = {evalsha} EVALSHA, {xrange} XRANGE, {xread} XREAD; \
         one join = at most {most} commands, {:?}",
        joins.iter().map(|(_, took)| *took).max().unwrap()
    ));
}
