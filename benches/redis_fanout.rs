//! Fan-out of `RedisLog` to 10 000 in-process subscribers, as a ratio to `MemoryLog` measured
//! in the same run on the same machine.
//!
//! ```sh
//! cargo bench --bench redis_fanout --features redis
//! ```
//!
//! Starts its own `redis-server` (Debian package `redis-server`) on a free loopback port;
//! without one it says so and exits. Each round subscribes 10 000 readers, appends 200 events
//! one after another, and times until every reader has received all of them; the two logs take
//! turns, and the verdict is the ratio of their medians over the rounds. Then it times
//! RedisLog appends one after another (no subscriber): the cost of one append.

use std::future::poll_fn;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tower_eventstream::{Delivery, Event, EventFeed, EventLog, MemoryLog, RedisLog};

const SUBSCRIBERS: usize = 10_000;
const EVENTS: usize = 200;
const ROUNDS: usize = 3;
/// Appends timed one after another, per round.
const APPENDS: usize = 2_000;
/// RedisLog's median time may be at most this multiple of MemoryLog's.
const TARGET_RATIO: f64 = 1.5;

#[path = "../tests/support/redis_process.rs"]
mod redis_process;
use redis_process::RedisProcess;

fn start_redis() -> Option<RedisProcess> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    RedisProcess::start(port, None, &["--save", "", "--appendonly", "no"]).ok()
}

/// Time from the first append until every subscriber has received every event.
async fn fan_out<L: EventLog>(log: &L) -> Duration {
    let mut readers = JoinSet::new();
    for _ in 0..SUBSCRIBERS {
        let mut subscription = log.subscribe(None).await.expect("subscribe");
        readers.spawn(async move {
            let mut received = 0;
            while received < EVENTS {
                match poll_fn(|cx| Pin::new(&mut subscription).poll_delivery(cx)).await {
                    Some(Ok(Delivery::Event(_))) => received += 1,
                    Some(Ok(Delivery::Gap(_))) => panic!("a subscriber fell behind the history"),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => panic!("a subscription ended"),
                }
            }
        });
    }
    let started = Instant::now();
    for n in 0..EVENTS {
        log.append(Event::new(format!("event {n}")))
            .await
            .map_err(|e| e.to_string())
            .expect("append");
    }
    while let Some(reader) = readers.join_next().await {
        reader.expect("a reader panicked");
    }
    started.elapsed()
}

/// Appends, one after another with no subscriber: the time of one append (its round trip to
/// Redis, the check and the `XADD`).
async fn append_one_by_one<L: EventLog>(log: &L) -> Duration {
    let started = Instant::now();
    for n in 0..APPENDS {
        log.append(Event::new(format!("alone {n}")))
            .await
            .map_err(|e| e.to_string())
            .expect("append");
    }
    started.elapsed() / APPENDS as u32
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(time: Duration) -> f64 {
    time.as_secs_f64() * 1000.0
}

fn main() {
    let Some(server) = start_redis() else {
        eprintln!("redis_fanout: redis-server is not installed or did not start; nothing measured");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    runtime.block_on(async {
        let memory = MemoryLog::new();
        let redis = RedisLog::builder(server.url(), "bench")
            .connect()
            .await
            .expect("connect to the benchmark's redis-server");
        println!("fan-out: {SUBSCRIBERS} subscribers x {EVENTS} events, {ROUNDS} rounds");
        println!("| round | MemoryLog | RedisLog | ratio |");
        println!("| --- | --- | --- | --- |");
        let (mut memory_times, mut redis_times) = (Vec::new(), Vec::new());
        for round in 1..=ROUNDS {
            // The two logs take turns, so that a noisy moment of the machine hits both.
            let memory_time = fan_out(&memory).await;
            let redis_time = fan_out(&redis).await;
            println!(
                "| {round} | {:.1} ms | {:.1} ms | {:.2} |",
                ms(memory_time),
                ms(redis_time),
                redis_time.as_secs_f64() / memory_time.as_secs_f64()
            );
            memory_times.push(memory_time);
            redis_times.push(redis_time);
        }
        let (memory_time, redis_time) = (median(memory_times), median(redis_times));
        let ratio = redis_time.as_secs_f64() / memory_time.as_secs_f64();
        let deliveries = (SUBSCRIBERS * EVENTS) as f64;
        println!(
            "| median | {:.1} ms ({:.0} deliveries/s) | {:.1} ms ({:.0} deliveries/s) | {ratio:.2} |",
            ms(memory_time),
            deliveries / memory_time.as_secs_f64(),
            ms(redis_time),
            deliveries / redis_time.as_secs_f64(),
        );
        let verdict = if ratio <= TARGET_RATIO { "met" } else { "missed" };
        println!("target: RedisLog at most {TARGET_RATIO}x MemoryLog (ratio of medians): {verdict}");
        let mut appends = Vec::new();
        for _ in 0..ROUNDS {
            appends.push(append_one_by_one(&redis).await);
        }
        let rounds: Vec<String> = appends
            .iter()
            .map(|t| format!("{:.1} µs", t.as_secs_f64() * 1e6))
            .collect();
        println!(
            "RedisLog append, {APPENDS} one after another: {:.1} µs each (median; rounds {})",
            median(appends).as_secs_f64() * 1e6,
            rounds.join(", ")
        );
    });
}
