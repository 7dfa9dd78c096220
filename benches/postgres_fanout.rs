//! `PostgresLog` side by side with `RedisLog` and `MemoryLog`, in one run on one machine:
//! append→receive latency, fan-out to 10 000 in-process subscribers, and appends inside
//! application transactions on PostgreSQL.
//!
//! ```sh
//! cargo bench --bench postgres_fanout --features redis,postgres [-- --smoke]
//! ```
//!
//! Starts its own `redis-server` (Debian package `redis-server`, no persistence) and its own
//! PostgreSQL cluster (Debian package `postgresql`, or `PG_BIN`; a throwaway cluster in a
//! scratch folder under the temporary folder, started with `fsync=off` and
//! `full_page_writes=off`, commits still synchronous), both on free loopback ports; without
//! one of them it says so and exits. Three rounds (one with `--smoke`), the backends taking
//! turns; every figure is the median of its rounds.
//!
//! 1. **Latency**: one in-process subscriber; 2 000 appends one at a time, one every
//!    millisecond; from just before `append` to the moment the subscriber polls the event
//!    out. Also the time of the `append` call itself.
//! 2. **Fan-out**: 10 000 in-process subscribers, 200 events appended one after another, time
//!    until every subscriber has all of them (as `redis_fanout`); the target is PostgresLog
//!    within 2× of RedisLog (ratio of the medians).
//! 3. **Transactions**: 1, 8 and 32 application connections (tokio-postgres), each running
//!    `BEGIN; UPDATE app_table …; INSERT INTO eventstream_events (topic, data) …; COMMIT;` in
//!    a loop for 4 s, the events spread at random over 1, 100 and 10 000 topics, while one
//!    `PostgresLogs` family follows 100 of them (one subscriber each); commits/s, and the
//!    delay from just before the event's `INSERT` to its subscriber polling it out. The
//!    baseline is the same loop without the `INSERT`. The event table is emptied before
//!    each run so that runs do not inherit each other's rows.
//!
//! Prints a Markdown table at the end.

use std::future::poll_fn;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_postgres::{Client, NoTls, Statement};
use tower_eventstream::{Delivery, Event, EventFeed, EventLog, MemoryLog, PostgresLog, RedisLog};

#[path = "../tests/support/redis_process.rs"]
mod redis_process;
use redis_process::RedisProcess;

#[path = "../tests/support/postgres_process.rs"]
mod postgres_process;
use postgres_process::PostgresProcess;

/// PostgresLog's median fan-out time may be at most this multiple of RedisLog's.
const TARGET_RATIO: f64 = 2.0;
/// The pace of the latency appends.
const PACE: Duration = Duration::from_millis(1);
/// Topics the transactions scenario's family follows, one subscriber each.
const FOLLOWED: usize = 100;
/// Rows of the application's table that the transactions update, one at random each.
const APP_ROWS: i32 = 10_000;
/// The longest the events may take to arrive after the last append.
const DRAIN: Duration = Duration::from_secs(10);
/// The transactions scenario's topic prefix.
const PREFIX: &str = "tx:";

struct Sizes {
    rounds: usize,
    latency_appends: usize,
    subscribers: usize,
    events: usize,
    clients: &'static [usize],
    topics: &'static [usize],
    load: Duration,
}

const FULL: Sizes = Sizes {
    rounds: 3,
    latency_appends: 2_000,
    subscribers: 10_000,
    events: 200,
    clients: &[1, 8, 32],
    topics: &[1, 100, 10_000],
    load: Duration::from_secs(4),
};

const SMOKE: Sizes = Sizes {
    rounds: 1,
    latency_appends: 200,
    subscribers: 1_000,
    events: 50,
    clients: &[1, 8],
    topics: &[1, 100],
    load: Duration::from_secs(1),
};

/// A folder removed when dropped (after the server in it has stopped: declare it first).
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Scratch> {
        let path = std::env::temp_dir().join(format!("tower-eventstream-bench-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> Option<u16> {
    Some(
        std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port(),
    )
}

/// The next delivery; panics on a gap or the end.
async fn next_event<S: EventFeed + Unpin>(subscription: &mut S) -> Event {
    loop {
        match poll_fn(|cx| Pin::new(&mut *subscription).poll_delivery(cx)).await {
            Some(Ok(Delivery::Event(event))) => return event,
            Some(Ok(Delivery::Gap(_))) => panic!("a subscriber fell behind the history"),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => panic!("a subscription ended"),
        }
    }
}

// ---- 1. latency -------------------------------------------------------------------------

struct Latency {
    /// Append→receive, per event.
    delays: Vec<Duration>,
    /// The `append` call, per event.
    calls: Vec<Duration>,
}

/// One subscriber; `appends` appends one every [`PACE`].
async fn latency<L: EventLog>(log: &L, appends: usize) -> Latency {
    let mut subscription = log.subscribe(None).await.expect("subscribe");
    let reader = tokio::spawn(async move {
        let mut received = Vec::with_capacity(appends);
        while received.len() < appends {
            let event = next_event(&mut subscription).await;
            let at = Instant::now();
            let n: usize = event.data().parse().expect("an event's index");
            received.push((n, at));
        }
        received
    });
    let mut sent = Vec::with_capacity(appends);
    let mut calls = Vec::with_capacity(appends);
    let mut pace = tokio::time::interval(PACE);
    pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for n in 0..appends {
        pace.tick().await;
        let before = Instant::now();
        sent.push(before);
        log.append(Event::new(n.to_string()))
            .await
            .map_err(|e| e.to_string())
            .expect("append");
        calls.push(before.elapsed());
    }
    let received = tokio::time::timeout(DRAIN, reader)
        .await
        .expect("every event received in time")
        .expect("the subscriber panicked");
    Latency {
        delays: received
            .iter()
            .map(|(n, at)| at.duration_since(sent[*n]))
            .collect(),
        calls,
    }
}

// ---- 2. fan-out -------------------------------------------------------------------------

struct FanOut {
    /// From the first append until every subscriber has every event.
    total: Duration,
    /// From the first append until the last append returned.
    appending: Duration,
}

async fn fan_out<L: EventLog>(log: &L, subscribers: usize, events: usize) -> FanOut {
    let mut readers = JoinSet::new();
    for _ in 0..subscribers {
        let mut subscription = log.subscribe(None).await.expect("subscribe");
        readers.spawn(async move {
            for _ in 0..events {
                next_event(&mut subscription).await;
            }
        });
    }
    let started = Instant::now();
    for n in 0..events {
        log.append(Event::new(format!("event {n}")))
            .await
            .map_err(|e| e.to_string())
            .expect("append");
    }
    let appending = started.elapsed();
    while let Some(reader) = readers.join_next().await {
        reader.expect("a reader panicked");
    }
    FanOut {
        total: started.elapsed(),
        appending,
    }
}

// ---- 3. transactions --------------------------------------------------------------------

/// An application connection with its statements.
struct App {
    client: Client,
    update: Statement,
    insert: Statement,
}

async fn app_client(url: &str) -> App {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect an application client");
    tokio::spawn(connection);
    let update = client
        .prepare("UPDATE app_table SET counter = counter + 1 WHERE id = $1")
        .await
        .expect("prepare the UPDATE");
    let insert = client
        .prepare("INSERT INTO eventstream_events (topic, data) VALUES ($1, $2)")
        .await
        .expect("prepare the INSERT");
    App {
        client,
        update,
        insert,
    }
}

/// What the followed topics' subscribers record.
#[derive(Default)]
struct Received {
    count: AtomicU64,
    /// INSERT→receive, µs.
    delays: Mutex<Vec<u64>>,
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

struct Load {
    commits_per_s: f64,
    /// Events added to followed topics, and how many of them arrived.
    followed: u64,
    received: u64,
    delays: Vec<Duration>,
}

/// `clients` connections each committing transactions for `load`; with `topics`, each adds an
/// event to one of them at random, else it is the baseline.
async fn transactions(
    apps: &[Arc<App>],
    admin: &Client,
    topics: Option<usize>,
    load: Duration,
    received: &Received,
    base: Instant,
) -> Load {
    // Every run starts from an empty event table (the reader keeps its position: the rows to
    // come have greater transaction ids).
    admin
        .batch_execute("TRUNCATE eventstream_events")
        .await
        .expect("TRUNCATE");
    admin
        .batch_execute("VACUUM ANALYZE app_table")
        .await
        .expect("VACUUM");
    received.count.store(0, Relaxed);
    received.delays.lock().unwrap().clear();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    for (index, app) in apps.iter().enumerate() {
        let (app, stop) = (Arc::clone(app), Arc::clone(&stop));
        tasks.spawn(async move {
            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (index as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D);
            let (mut commits, mut followed) = (0u64, 0u64);
            while !stop.load(Relaxed) {
                app.client.batch_execute("BEGIN").await.expect("BEGIN");
                let id = (xorshift(&mut rng) % APP_ROWS as u64) as i32;
                app.client.execute(&app.update, &[&id]).await.expect("UPDATE");
                let mut follows = false;
                if let Some(topics) = topics {
                    let k = (xorshift(&mut rng) % topics as u64) as usize;
                    let topic = format!("{PREFIX}{k}");
                    let sent = base.elapsed().as_micros().to_string();
                    app.client
                        .execute(&app.insert, &[&topic, &sent])
                        .await
                        .expect("INSERT the event");
                    follows = k < FOLLOWED;
                }
                app.client.batch_execute("COMMIT").await.expect("COMMIT");
                commits += 1;
                followed += u64::from(follows);
            }
            (commits, followed)
        });
    }
    let started = Instant::now();
    tokio::time::sleep(load).await;
    stop.store(true, Relaxed);
    let (mut commits, mut followed) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        let (c, f) = done.expect("an application client panicked");
        commits += c;
        followed += f;
    }
    let elapsed = started.elapsed();
    let deadline = Instant::now() + DRAIN;
    while received.count.load(Relaxed) < followed && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let delays = std::mem::take(&mut *received.delays.lock().unwrap());
    Load {
        commits_per_s: commits as f64 / elapsed.as_secs_f64(),
        followed,
        received: received.count.load(Relaxed),
        delays: delays.into_iter().map(Duration::from_micros).collect(),
    }
}

// ---- figures ----------------------------------------------------------------------------

fn median<T: PartialOrd + Copy>(values: &[T]) -> T {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    sorted[sorted.len() / 2]
}

/// The `p` quantile (0..=1) of `values`; zero when empty.
fn quantile(values: &[Duration], p: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(time: Duration) -> String {
    let ms = time.as_secs_f64() * 1000.0;
    if ms < 1.0 {
        format!("{ms:.3} ms")
    } else if ms < 100.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M/s", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.1} k/s", per_s / 1e3)
    } else {
        format!("{per_s:.0}/s")
    }
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(digit);
    }
    out
}

const BACKENDS: [&str; 3] = ["MemoryLog", "RedisLog", "PostgresLog"];

fn version(program: PathBuf) -> String {
    std::process::Command::new(program)
        .arg("--version")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn main() {
    let smoke = std::env::args().any(|arg| arg == "--smoke");
    let sizes = if smoke { SMOKE } else { FULL };
    let Some(redis) = free_port()
        .and_then(|port| RedisProcess::start(port, None, &["--save", "", "--appendonly", "no"]).ok())
    else {
        eprintln!("postgres_fanout: redis-server is not installed or did not start; nothing measured");
        return;
    };
    if let Some(missing) = PostgresProcess::missing() {
        eprintln!("postgres_fanout: {missing}; nothing measured");
        return;
    }
    // Declared before the server, so dropped (removed) after it stops.
    let scratch = Scratch::new().expect("a scratch folder for PostgreSQL");
    let postgres = match free_port()
        .ok_or_else(|| "no free port".to_owned())
        .and_then(|port| PostgresProcess::start(port, &scratch.0))
    {
        Ok(postgres) => postgres,
        Err(error) => {
            eprintln!("postgres_fanout: PostgreSQL did not start: {error}");
            return;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    runtime.block_on(run(&sizes, smoke, redis.url(), postgres.url()));
    drop(runtime);
    drop(postgres);
    drop(redis);
    drop(scratch);
}

async fn run(sizes: &Sizes, smoke: bool, redis_url: String, postgres_url: String) {
    let (admin, connection) = tokio_postgres::connect(&postgres_url, NoTls)
        .await
        .expect("connect to the benchmark's PostgreSQL");
    tokio::spawn(connection);
    let pg_version: String = admin
        .query_one("SHOW server_version", &[])
        .await
        .expect("server_version")
        .get(0);
    let redis_version = version(PathBuf::from(RedisProcess::binary()));
    println!(
        "postgres_fanout ({}): PostgreSQL {pg_version} (fsync=off, full_page_writes=off, synchronous commits), {redis_version}",
        if smoke { "smoke" } else { "full" }
    );

    // ---- 1 and 2: the three backends taking turns ----
    // Per backend (memory, Redis, PostgreSQL), per round.
    let mut latencies: [Vec<Latency>; 3] = Default::default();
    let mut fan_outs: [Vec<FanOut>; 3] = Default::default();
    {
        let memory = MemoryLog::new();
        let redis = RedisLog::builder(&redis_url, "bench")
            .connect()
            .await
            .expect("connect RedisLog");
        let postgres = PostgresLog::builder(&postgres_url, "bench")
            .migrate()
            .connect()
            .await
            .expect("connect PostgresLog");
        let (appends, subscribers, events) = (sizes.latency_appends, sizes.subscribers, sizes.events);
        for round in 1..=sizes.rounds {
            let round_latency = [
                latency(&memory, appends).await,
                latency(&redis, appends).await,
                latency(&postgres, appends).await,
            ];
            let round_fan_out = [
                fan_out(&memory, subscribers, events).await,
                fan_out(&redis, subscribers, events).await,
                fan_out(&postgres, subscribers, events).await,
            ];
            for (b, name) in BACKENDS.iter().enumerate() {
                let (l, f) = (&round_latency[b], &round_fan_out[b]);
                println!(
                    "round {round} {name:<11}: append→receive p50 {} p99 {} (append call p50 {}); fan-out {} (appends done at {})",
                    ms(quantile(&l.delays, 0.5)),
                    ms(quantile(&l.delays, 0.99)),
                    ms(quantile(&l.calls, 0.5)),
                    ms(f.total),
                    ms(f.appending),
                );
            }
            for (b, (l, f)) in round_latency.into_iter().zip(round_fan_out).enumerate() {
                latencies[b].push(l);
                fan_outs[b].push(f);
            }
        }
    }

    // ---- 3: transactions ----
    let max_clients = sizes.clients.iter().copied().max().unwrap_or(1);
    admin
        .batch_execute(&format!(
            "CREATE TABLE app_table (id int PRIMARY KEY, counter bigint NOT NULL DEFAULT 0); \
             INSERT INTO app_table (id) SELECT generate_series(0, {})",
            APP_ROWS - 1
        ))
        .await
        .expect("create app_table");
    let family = PostgresLog::builder(&postgres_url, PREFIX)
        .migrate()
        .connect_logs()
        .await
        .expect("connect PostgresLogs");
    let received = Arc::new(Received::default());
    let base = Instant::now();
    let mut followers = JoinSet::new();
    let mut logs = Vec::new();
    for k in 0..FOLLOWED {
        let log = family.log(&k.to_string()).await.expect("a followed topic");
        let mut subscription = log.subscribe(None).await.expect("subscribe");
        logs.push(log);
        let received = Arc::clone(&received);
        followers.spawn(async move {
            loop {
                let event = next_event(&mut subscription).await;
                let now = base.elapsed().as_micros() as u64;
                let sent: u64 = event.data().parse().expect("a send time");
                received.delays.lock().unwrap().push(now.saturating_sub(sent));
                received.count.fetch_add(1, Relaxed);
            }
        });
    }
    let mut apps = Vec::new();
    for _ in 0..max_clients {
        apps.push(Arc::new(app_client(&postgres_url).await));
    }
    // Per (clients, topics or None for the baseline): the rounds.
    let mut cells: Vec<((usize, Option<usize>), Vec<Load>)> = Vec::new();
    for &clients in sizes.clients {
        for topics in std::iter::once(None).chain(sizes.topics.iter().map(|&t| Some(t))) {
            cells.push(((clients, topics), Vec::new()));
        }
    }
    for round in 1..=sizes.rounds {
        for ((clients, topics), rounds) in cells.iter_mut() {
            let load = transactions(&apps[..*clients], &admin, *topics, sizes.load, &received, base).await;
            println!(
                "round {round} clients {clients:>2} topics {:>6}: {:.0} commits/s; followed {} received {}; delay p50 {} p99 {}",
                topics.map_or("none".to_owned(), |t| t.to_string()),
                load.commits_per_s,
                load.followed,
                load.received,
                ms(quantile(&load.delays, 0.5)),
                ms(quantile(&load.delays, 0.99)),
            );
            rounds.push(load);
        }
    }
    followers.abort_all();
    drop(logs);
    drop(family);

    // ---- the tables ----
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "{} on {cores} cores, shared with other work (other builds and tests may run meanwhile); \
         loopback; {} ({}); PostgreSQL {pg_version}, a throwaway test cluster with fsync=off and \
         full_page_writes=off (commits still synchronous); {redis_version} without persistence. \
         {} round{}, the backends taking turns; each figure is the median of its rounds.",
        if smoke {
            "Smoke run (small sizes)"
        } else {
            "Full run"
        },
        "`cargo bench --bench postgres_fanout --features redis,postgres`",
        if smoke { "`-- --smoke`" } else { "no options" },
        sizes.rounds,
        if sizes.rounds == 1 { "" } else { "s" },
    );
    println!();
    println!("| measure | MemoryLog | RedisLog | PostgresLog | PostgresLog / RedisLog |");
    println!("|---|---|---|---|---|");
    let per_round = |b: usize, f: &dyn Fn(&Latency) -> Duration| -> Duration {
        median(&latencies[b].iter().map(f).collect::<Vec<_>>())
    };
    let appends = thousands(sizes.latency_appends);
    for (label, p) in [("p50", 0.5), ("p99", 0.99)] {
        let figures: Vec<Duration> = (0..3)
            .map(|b| per_round(b, &|l: &Latency| quantile(&l.delays, p)))
            .collect();
        println!(
            "| append→receive {label} (1 subscriber, {appends} appends 1 ms apart) | {} | {} | {} | {:.2}× |",
            ms(figures[0]),
            ms(figures[1]),
            ms(figures[2]),
            figures[2].as_secs_f64() / figures[1].as_secs_f64()
        );
    }
    let calls: Vec<Duration> = (0..3)
        .map(|b| per_round(b, &|l: &Latency| quantile(&l.calls, 0.5)))
        .collect();
    println!(
        "| `append` call p50 (same appends) | {} | {} | {} | {:.2}× |",
        ms(calls[0]),
        ms(calls[1]),
        ms(calls[2]),
        calls[2].as_secs_f64() / calls[1].as_secs_f64()
    );
    let totals: Vec<Duration> = (0..3)
        .map(|b| median(&fan_outs[b].iter().map(|f| f.total).collect::<Vec<_>>()))
        .collect();
    let appendings: Vec<Duration> = (0..3)
        .map(|b| median(&fan_outs[b].iter().map(|f| f.appending).collect::<Vec<_>>()))
        .collect();
    let deliveries = (sizes.subscribers * sizes.events) as f64;
    let fan_label = format!(
        "fan-out: {} subscribers × {} events appended one after another, until all received",
        thousands(sizes.subscribers),
        sizes.events
    );
    let cell = |t: Duration| format!("{} ({} deliveries)", ms(t), rate(deliveries / t.as_secs_f64()));
    let ratio = totals[2].as_secs_f64() / totals[1].as_secs_f64();
    println!(
        "| {fan_label} | {} | {} | {} | {ratio:.2}× |",
        cell(totals[0]),
        cell(totals[1]),
        cell(totals[2])
    );
    println!(
        "| fan-out: of which appending the {} events | {} | {} | {} | {:.2}× |",
        sizes.events,
        ms(appendings[0]),
        ms(appendings[1]),
        ms(appendings[2]),
        appendings[2].as_secs_f64() / appendings[1].as_secs_f64()
    );
    let rounds: Vec<String> = (0..sizes.rounds)
        .map(|r| {
            format!(
                "{:.2}",
                fan_outs[2][r].total.as_secs_f64() / fan_outs[1][r].total.as_secs_f64()
            )
        })
        .collect();
    let verdict = if ratio <= TARGET_RATIO { "met" } else { "missed" };
    println!();
    println!(
        "Target: PostgresLog fan-out within {TARGET_RATIO}× of RedisLog (ratio of medians): {ratio:.2}× ({verdict}; rounds {}).",
        rounds.join(", ")
    );
    println!();
    println!(
        "Transactions: `BEGIN; UPDATE app_table SET counter = counter + 1 WHERE id = $1; \
         INSERT INTO eventstream_events (topic, data) VALUES ($1, $2); COMMIT;` per connection in a \
         loop for {} s, the event to a topic at random; baseline without the INSERT. One \
         PostgresLogs family follows {FOLLOWED} of the topics (one subscriber each); delay from \
         just before the INSERT to the subscriber polling the event out.",
        sizes.load.as_secs()
    );
    println!();
    println!("| clients | topics | commits/s with the event | commits/s without (baseline) | with / without | followed topics: delay p50 / p99 | followed events received |");
    println!("|---|---|---|---|---|---|---|");
    for &clients in sizes.clients {
        let baseline = cells
            .iter()
            .find(|((c, t), _)| *c == clients && t.is_none())
            .map(|(_, rounds)| median(&rounds.iter().map(|l| l.commits_per_s).collect::<Vec<_>>()))
            .unwrap_or(f64::NAN);
        for ((_, topics), rounds) in cells.iter().filter(|((c, t), _)| *c == clients && t.is_some()) {
            let commits = median(&rounds.iter().map(|l| l.commits_per_s).collect::<Vec<_>>());
            let p50 = median(
                &rounds
                    .iter()
                    .map(|l| quantile(&l.delays, 0.5))
                    .collect::<Vec<_>>(),
            );
            let p99 = median(
                &rounds
                    .iter()
                    .map(|l| quantile(&l.delays, 0.99))
                    .collect::<Vec<_>>(),
            );
            let (followed, got): (u64, u64) = rounds
                .iter()
                .fold((0, 0), |(f, g), l| (f + l.followed, g + l.received));
            println!(
                "| {clients} | {} | {} | {} | {:.2} | {} / {} | {got} of {followed} |",
                thousands(topics.unwrap_or(0)),
                rate(commits),
                rate(baseline),
                commits / baseline,
                ms(p50),
                ms(p99),
            );
        }
    }
}
