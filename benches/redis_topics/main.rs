//! `RedisLog` topics at scale, measured from outside through the public API: K topics of one
//! `RedisLogs` family with one subscriber each, appends at a fixed rate from a second family
//! (standing for another process) to random topics, and what each append costs Redis.
//!
//! ```sh
//! cargo bench --bench redis_topics --features redis
//! REDIS_TOPICS_SIZES=100,1000 REDIS_TOPICS_RATES=500,2000 REDIS_TOPICS_ROUNDS=1 REDIS_TOPICS_SECONDS=5 \
//!     REDIS_TOPICS_PROCESSES=2x1000 cargo bench --bench redis_topics --features redis
//! ```
//!
//! Settings (environment): `REDIS_TOPICS_SIZES` (default `100,1000,10000,100000`; `none`),
//! `REDIS_TOPICS_RATES` or `REDIS_TOPICS_RATE` (appends/s, default `2000`), `REDIS_TOPICS_SECONDS`
//! (default 10), `REDIS_TOPICS_ROUNDS` (default 3), `REDIS_TOPICS_PROCESSES`
//! (`<processes>x<topics each>`, default `4x25000`; `none` skips it) and
//! `REDIS_TOPICS_SUBSCRIBE_CAP_SECS` (default 180; a size that takes longer to subscribe is
//! skipped, and so are the larger ones).
//!
//! Each round starts its own `redis-server` (Debian package `redis-server`), subscribes every
//! topic ("subscribe all", 64 at a time), waits until Redis shows every topic's channel
//! subscribed, then times 200 more one at a time ("one more"), opens every
//! topic in the appending family, and for each rate appends for the set time, waits up to 5 s for
//! the deliveries, and divides the deltas of `INFO commandstats` (every command, the append
//! script's once: what it runs inside counts in `evalsha` and again on its own line, so that is
//! taken off) and of `INFO cpu` by the appends. The
//! multi-process scenario runs this binary again as child processes (`REDIS_TOPICS_CHILD`), each
//! with its own family and topics, answering the lines `count` and `report` on its stdin and
//! exiting when its stdin closes.

use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::task::{block_in_place, JoinSet};
use tokio::time::timeout;
use tower_eventstream::{Delivery, Event, EventFeed, EventLog, RedisLog, RedisLogs};

#[path = "../../tests/support/redis_process.rs"]
mod redis_process;
use redis_process::RedisProcess;

mod children;
mod floor;
mod pace;
mod table;
use children::Subscribers;
use table::{info, median, p50_p99, print_row, Row, HEADER};

/// Marks a child process; its value is `<index>,<url>,<topics>`.
const CHILD_ENV: &str = "REDIS_TOPICS_CHILD";
/// The families' key prefix.
const PREFIX: &str = "bench:";
/// Topics being looked up and subscribed at once while subscribing all.
const IN_FLIGHT: usize = 64;
/// Topics subscribed one at a time after all the others ("subscribe one more").
const ONE_MORE: usize = 200;
/// The longest the deliveries may take to arrive after the last append.
const DRAIN: Duration = Duration::from_secs(5);
/// Latency vectors, each shared by the subscriber tasks whose index it is modulo.
const SHARDS: usize = 32;

/// What the environment asks for.
struct Settings {
    sizes: Vec<u64>,
    rates: Vec<u64>,
    seconds: u64,
    rounds: u64,
    processes: Option<(u64, u64)>,
    cap: Duration,
}

/// Numbers separated by `,` or `x` (`_` allowed within one); anything else is left out.
fn env_list(name: &str, default: &str) -> Vec<u64> {
    let text = std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let numbers = text.split([',', 'x']).map(|n| n.trim().replace('_', ""));
    numbers.filter_map(|n| n.parse().ok()).collect()
}

fn settings() -> Settings {
    let rate = std::env::var("REDIS_TOPICS_RATE").unwrap_or_else(|_| "2000".to_owned());
    let p = env_list("REDIS_TOPICS_PROCESSES", "4x25000");
    let one = |name, default| env_list(name, default).first().copied().unwrap_or(1);
    Settings {
        sizes: env_list("REDIS_TOPICS_SIZES", "100,1000,10000,100000"),
        rates: env_list("REDIS_TOPICS_RATES", &rate),
        seconds: one("REDIS_TOPICS_SECONDS", "10"),
        rounds: one("REDIS_TOPICS_ROUNDS", "3"),
        processes: (p.len() == 2 && p[0] * p[1] > 0).then(|| (p[0], p[1])),
        cap: Duration::from_secs(one("REDIS_TOPICS_SUBSCRIBE_CAP_SECS", "180")),
    }
}

fn now_ns() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH);
    now.expect("a clock after 1970").as_nanos() as u64
}

/// `Ok` or a panic that says what failed.
fn must<T, E: std::fmt::Display>(result: Result<T, E>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// What the subscribers of one process received since the last report: the counts of events,
/// gaps and ended subscriptions, and the latencies (µs).
#[derive(Default)]
struct Tally([u64; 3], Vec<u64>);

/// Shared by the subscriber tasks of one process.
#[derive(Default)]
struct Recorder {
    counts: [AtomicU64; 3],
    shards: [Mutex<Vec<u64>>; SHARDS],
}

impl Recorder {
    /// What was received since the last report; with `reset`, the next report starts here
    /// (`fetch_and(0)` reads and clears; ended subscriptions stay counted).
    fn report(&self, reset: bool) -> Tally {
        let mask = |i| if reset && i < 2 { 0 } else { u64::MAX };
        let counts = [0, 1, 2].map(|i| self.counts[i].fetch_and(mask(i), Relaxed));
        let take = |s: &Mutex<Vec<u64>>| std::mem::take(&mut *s.lock().expect("a latency shard"));
        let latencies = self.shards.iter().filter(|_| reset).flat_map(take);
        Tally(counts, latencies.collect())
    }
}

/// One subscriber: records each event's append→receive latency (its data is the send time).
async fn follow<S: EventFeed>(subscription: S, shard: usize, recorder: Arc<Recorder>) {
    let mut subscription = std::pin::pin!(subscription);
    let count = |i: usize| recorder.counts[i].fetch_add(1, Relaxed);
    loop {
        match poll_fn(|cx| subscription.as_mut().poll_delivery(cx)).await {
            Some(Ok(Delivery::Event(event))) => {
                let sent: u64 = event.data().parse().unwrap_or(0);
                let mut latencies = recorder.shards[shard % SHARDS].lock().expect("a latency shard");
                latencies.push(now_ns().saturating_sub(sent) / 1000);
                count(0);
            }
            Some(Ok(Delivery::Gap(_))) => {
                count(1);
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => {
                count(2);
                return;
            }
        }
    }
}

async fn connect(url: &str) -> RedisLogs {
    let logs = RedisLog::builder(url, PREFIX).connect_logs().await;
    must(logs, "connect a RedisLogs family")
}

/// Opens the log of each name, `IN_FLIGHT` at a time, and (given a recorder) subscribes to it
/// with a task in `readers`. Returns the logs, to be kept alive.
async fn open_all(
    family: &RedisLogs,
    names: impl IntoIterator<Item = String>,
    recorder: Option<&Arc<Recorder>>,
    readers: &mut JoinSet<()>,
) -> Vec<RedisLog> {
    let (mut names, mut pending, mut logs) = (names.into_iter(), JoinSet::new(), Vec::new());
    loop {
        while pending.len() < IN_FLIGHT {
            let Some(name) = names.next() else { break };
            let (family, subscribe) = (family.clone(), recorder.is_some());
            pending.spawn(async move {
                let log = must(family.log(&name).await, "log()");
                let subscription = match subscribe {
                    true => Some(must(log.subscribe(None).await, "subscribe")),
                    false => None,
                };
                (log, subscription)
            });
        }
        let Some(opened) = pending.join_next().await else {
            return logs;
        };
        let (log, subscription) = opened.expect("a subscribing task panicked");
        if let (Some(subscription), Some(recorder)) = (subscription, recorder) {
            readers.spawn(follow(subscription, logs.len(), Arc::clone(recorder)));
        }
        logs.push(log);
    }
}

/// Appends at `rate` per second for `seconds` to random targets: ([succeeded, failed], time taken).
async fn append_at(targets: &[RedisLog], rate: u64, seconds: u64, seed: u64) -> ([u64; 2], Duration) {
    pace::at_rate(rate, seconds, targets.len(), seed, |index| {
        let log = targets[index].clone();
        async move { log.append(Event::new(now_ns().to_string())).await.is_ok() }
    })
    .await
}

/// What the append phases of a round share.
struct Round {
    connection: redis::aio::MultiplexedConnection,
    targets: Vec<RedisLog>,
    subscribers: Subscribers,
    seconds: u64,
}

impl Round {
    /// One append phase at `row.offered` per second, and its figures in `row`.
    async fn phase(&mut self, mut row: Row) -> Result<Row, String> {
        let subscribers = &mut self.subscribers;
        block_in_place(|| subscribers.report(true))?; // What came before is not this phase's.
        let (before, cpu_before) = info(&mut self.connection).await;
        let ([appended, failed], took) = append_at(&self.targets, row.offered, self.seconds, now_ns()).await;
        let deadline = Instant::now() + DRAIN;
        while block_in_place(|| subscribers.report(false))?.0[0] < appended && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (after, cpu_after) = info(&mut self.connection).await;
        let Tally([received, gaps, ended], latencies) = block_in_place(|| subscribers.report(true))?;
        let mut costs: Vec<(u64, u64, String)> = (after.into_iter())
            .map(|(name, (us, calls))| {
                let (us_before, calls_before) = before.get(&name).copied().unwrap_or_default();
                (us - us_before, calls - calls_before, name)
            })
            .collect();
        costs.sort_unstable_by(|a, b| b.cmp(a));
        let per = |x: f64| x / appended.max(1) as f64;
        let top = costs.iter().take(3).map(|(us, calls, name)| {
            let (calls, each) = (per(*calls as f64), *us as f64 / (*calls).max(1) as f64);
            format!("{name} {calls:.2}×{each:.1}µs")
        });
        row.top = top.collect::<Vec<_>>().join(", ");
        let mut latencies: Vec<f64> = latencies.iter().map(|&us| us as f64 / 1000.0).collect();
        let spent = costs.iter().map(|c| c.0).sum::<u64>() as f64 - inside_scripts(&costs);
        let achieved = appended as f64 / took.as_secs_f64();
        row.figures[..3].copy_from_slice(&[achieved, per(spent), per(cpu_after - cpu_before)]);
        row.figures[6..].copy_from_slice(&p50_p99(&mut latencies));
        (row.received, row.appended) = (received, appended);
        let words = ["FAILED APPENDS", "GAPS", "ENDED SUBSCRIPTIONS"];
        for (n, what) in [failed, gaps, ended]
            .into_iter()
            .zip(words)
            .filter(|(n, _)| *n > 0)
        {
            row.trouble += &format!(" **{n} {what}**");
        }
        if received != appended || !row.trouble.is_empty() {
            let (scenario, trouble) = (&row.scenario, &row.trouble);
            eprintln!("!!! {scenario}: received {received} of {appended}{trouble}");
        }
        Ok(row)
    }
}

fn start_redis() -> Result<RedisProcess, String> {
    let bound = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr());
    let port = bound.map_err(|e| e.to_string())?.port();
    RedisProcess::start(port, None, &["--save", "", "--appendonly", "no"])
}

/// One round: `topics` subscribers in this process, or `processes` children with `topics`
/// each; a row per rate.
async fn round(processes: Option<u64>, topics: u64, label: &str, s: &Settings) -> Result<Vec<Row>, String> {
    let server = start_redis()?;
    let (url, recorder, mut readers) = (server.url(), Arc::new(Recorder::default()), JoinSet::new());
    let family = connect(&url).await;
    let unfinished = || format!("did not finish subscribing within {} s", s.cap.as_secs());
    let started = Instant::now();
    let (names, subscribers, _logs): (Vec<String>, _, _) = match processes {
        None => {
            let names: Vec<String> = (0..topics).map(|i| format!("t{i}")).collect();
            let subscribing = open_all(&family, names.clone(), Some(&recorder), &mut readers);
            let logs = timeout(s.cap, subscribing).await.map_err(|_| unfinished())?;
            (names, Subscribers::Here(Arc::clone(&recorder)), logs)
        }
        Some(n) => {
            let spawned = block_in_place(|| Subscribers::spawn(n, topics, &url, started + s.cap));
            let subscribers = spawned.map_err(|e| if e.is_empty() { unfinished() } else { e })?;
            let names = (0..n).flat_map(|c| (0..topics).map(move |i| format!("p{c}-t{i}")));
            (names.collect(), subscribers, Vec::new())
        }
    };
    let mut row = Row::default();
    (row.scenario, row.topics) = (label.to_owned(), names.len());
    row.figures[3] = started.elapsed().as_secs_f64();
    // A reader subscribes to a topic's channel after `log()` returns: "one more" is measured
    // once they all are, not against that burst.
    let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
    let mut connection = must(
        client.get_multiplexed_async_connection().await,
        "a connection for CLIENT LIST",
    );
    let deadline = Instant::now() + s.cap;
    while subscribed_channels(&mut connection).await < names.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut one_more, mut kept) = (Vec::new(), Vec::new());
    for i in 0..ONE_MORE {
        let started = Instant::now();
        let opened = open_all(&family, [format!("one{i}")], Some(&recorder), &mut readers).await;
        one_more.push(started.elapsed().as_secs_f64() * 1000.0);
        kept.extend(opened);
    }
    row.figures[4..6].copy_from_slice(&p50_p99(&mut one_more));
    let appender = connect(&url).await;
    let opening = timeout(s.cap, open_all(&appender, names.clone(), None, &mut readers)).await;
    let targets = opening.map_err(|_| "the appending family did not open its logs in time")?;
    let mut round = Round {
        connection,
        targets,
        subscribers,
        seconds: s.seconds,
    };
    let mut rows = Vec::new();
    for &offered in &s.rates {
        row.offered = offered;
        rows.push(round.phase(row.clone()).await?);
        print_row(rows.last().expect("a row"));
    }
    let rate = s.rates[0];
    let (commands, cpu) = floor::raw_xadd(&mut round.connection, &names, rate, s.seconds).await;
    println!("floor: a bare XADD to the same topics at {rate}/s costs Redis {commands:.1} µs (commandstats), {cpu:.1} µs (INFO cpu)");
    Ok(rows)
}

#[tokio::main]
async fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        return children::child(&spec).await;
    }
    let s = settings();
    if let Err(e) = start_redis() {
        return eprintln!("redis_topics: redis-server did not start ({e}); nothing measured");
    }
    let (seconds, rates, rounds, cap) = (s.seconds, &s.rates, s.rounds, s.cap.as_secs());
    println!("redis_topics: {seconds} s per rate, rates {rates:?}/s, {rounds} rounds, subscribe cap {cap} s");
    println!("\n{HEADER}");
    let in_process = s.sizes.iter().map(|&k| (None, k, "1 process".to_owned()));
    let mut scenarios: Vec<_> = in_process.collect();
    scenarios.extend(s.processes.map(|(n, t)| (Some(n), t, format!("{n} × {t}"))));
    let (mut medians, mut gave_up) = (Vec::new(), None);
    for (processes, topics, name) in scenarios {
        let mut rounds: Vec<Vec<Row>> = Vec::new();
        for r in 1..=s.rounds {
            let label = format!("{name}, round {r}");
            let result = match gave_up {
                Some(k) if processes.is_none() && topics > k => Err(format!("skipped ({k} did not finish)")),
                _ => round(processes, topics, &label, &s).await,
            };
            match result {
                Ok(rows) => rounds.push(rows),
                Err(e) => {
                    println!("| {label} | {topics} | {e} |{}", " |".repeat(8));
                    if processes.is_none() && e.starts_with("did not") {
                        gave_up = Some(topics);
                    }
                    break;
                }
            }
        }
        for i in (0..s.rates.len()).filter(|_| !rounds.is_empty()) {
            let of_rate: Vec<Row> = rounds.iter().map(|r| r[i].clone()).collect();
            medians.push(median(&of_rate, &name));
        }
    }
    println!("\nMedians over the rounds (received/appended: all rounds together)\n\n{HEADER}");
    medians.iter().for_each(print_row);
}

/// The µs that `INFO commandstats` counts twice: the commands the append script runs (`XADD`,
/// `SPUBLISH`, `XTRIM`, and one `XREVRANGE` per call) count in `evalsha`/`eval` and again on
/// their own lines. `costs`: (µs, calls, name).
fn inside_scripts(costs: &[(u64, u64, String)]) -> f64 {
    let find = |name: &str| costs.iter().find(|c| c.2 == name).map_or((0, 0), |c| (c.0, c.1));
    let scripts = find("evalsha").1 + find("eval").1;
    let own_lines: u64 = ["xadd", "spublish", "xtrim"]
        .iter()
        .map(|name| find(name).0)
        .sum();
    let (xrevrange_us, xrevrange_calls) = find("xrevrange");
    let per_xrevrange = xrevrange_us as f64 / xrevrange_calls.max(1) as f64;
    own_lines as f64 + per_xrevrange * xrevrange_calls.min(scripts) as f64
}

/// Sharded channels subscribed to, summed over the server's clients (`CLIENT LIST`'s `ssub=`).
async fn subscribed_channels(connection: &mut redis::aio::MultiplexedConnection) -> usize {
    let list: String = must(
        redis::cmd("CLIENT").arg("LIST").query_async(connection).await,
        "CLIENT LIST",
    );
    let count = |line: &str| {
        line.split(' ')
            .find_map(|f| f.strip_prefix("ssub=")?.parse::<usize>().ok())
    };
    list.lines().filter_map(count).sum()
}
