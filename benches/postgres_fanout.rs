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
//!    within 2× of RedisLog (ratio of the medians). Where the time goes: the time until the
//!    last append returned, the CPU time of this process, of `redis-server` and of
//!    PostgreSQL's processes (the log's append backend, its reader's backend, the rest;
//!    `/proc`, 10 ms ticks) over each round, and, after the rounds, the append's statement
//!    timed one after another against cut-down copies of it (no trigger; the row trigger
//!    only; the row trigger and a `pg_notify` nobody listens to) and a bare round trip.
//! 3. **Transactions**: 1, 8 and 32 application connections (tokio-postgres), each running
//!    `BEGIN; UPDATE app_table …; INSERT INTO eventstream_events (topic, data) …; COMMIT;` in
//!    a loop for 4 s, the events spread at random over 1, 100 and 10 000 topics, while one
//!    `PostgresLogs` family follows 100 of them (one subscriber each); commits/s, and the
//!    delay from just before the event's `INSERT` to its subscriber polling it out (and, of
//!    it, until the `COMMIT` was answered). The baseline is the same loop without the
//!    `INSERT`. Where the time goes: the family's reads (counted from the event table's
//!    scans), rows per read, the reader backend's CPU per read, and the CPU of PostgreSQL and
//!    of this process over the load.
//!
//! The event table is filled with 100 000 rows of a topic nobody follows and analysed before
//! anything is measured, and vacuumed and analysed before each transactions run: on an empty
//! or never analysed table PostgreSQL plans the reader's query with a scan of the whole table,
//! which is not what a table in use costs.
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
/// Rows added to the event table (a topic nobody follows) before anything is measured.
const FILLER: usize = 100_000;
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
    /// Just before the INSERT → COMMIT answered, every event transaction.
    committing: Vec<Duration>,
    commits: f64,
    seconds: f64,
    /// The family's reads (its reader's queries), from the table's scans, and CPU over the
    /// load: the reader's backend, PostgreSQL (every process), this process.
    reads: u64,
    reader_cpu: Duration,
    server_cpu: Duration,
    bench_cpu: Duration,
}

/// A run of the transactions scenario: (clients, topics, or `None` for the baseline).
type Cell = (usize, Option<usize>);

/// What the transactions scenario looks at besides its own figures.
struct Probe {
    /// The cluster's data folder (every server process works in it).
    data: PathBuf,
    /// The backend of the family's reader.
    reader: Option<u32>,
}

impl Probe {
    /// Scans of the event table so far (`pg_stat_user_tables`). The reader's every read scans
    /// it twice (the rows after its position; whether rows wait behind the horizon); inserts
    /// do not scan it; a trim scans it twice per topic trimmed. A backend reports its counts
    /// within a second once idle, hence the pause first.
    async fn scans(&self, admin: &Client) -> u64 {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let row = admin
            .query_one(
                "SELECT (coalesce(seq_scan, 0) + coalesce(idx_scan, 0))::bigint FROM pg_stat_user_tables \
                 WHERE relname = 'eventstream_events'",
                &[],
            )
            .await
            .expect("pg_stat_user_tables");
        row.get::<_, i64>(0) as u64
    }
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
    probe: &Probe,
) -> Load {
    // Each run starts with its tables vacuumed and their statistics fresh (the event table
    // keeps its rows: at least the 100 000 filled in at the start, so that its statistics and
    // the reader's plans are those of a table in use, not of an empty one).
    admin
        .batch_execute("VACUUM ANALYZE eventstream_events, app_table")
        .await
        .expect("VACUUM");
    received.count.store(0, Relaxed);
    received.delays.lock().unwrap().clear();
    let scans_before = probe.scans(admin).await;
    let me = std::process::id();
    let server = pids(Some(&probe.data), &[]);
    let cpu_before = cpu_sample(&[&[me], &server[..]].concat());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    for (index, app) in apps.iter().enumerate() {
        let (app, stop) = (Arc::clone(app), Arc::clone(&stop));
        tasks.spawn(async move {
            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (index as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D);
            let (mut commits, mut followed) = (0u64, 0u64);
            // Just before the INSERT → COMMIT answered, per event transaction.
            let mut committing = Vec::new();
            while !stop.load(Relaxed) {
                app.client.batch_execute("BEGIN").await.expect("BEGIN");
                let id = (xorshift(&mut rng) % APP_ROWS as u64) as i32;
                app.client.execute(&app.update, &[&id]).await.expect("UPDATE");
                let mut follows = false;
                let inserting = Instant::now();
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
                if topics.is_some() {
                    committing.push(inserting.elapsed());
                }
                commits += 1;
                followed += u64::from(follows);
            }
            (commits, followed, committing)
        });
    }
    let started = Instant::now();
    tokio::time::sleep(load).await;
    stop.store(true, Relaxed);
    let (mut commits, mut followed, mut committing) = (0, 0, Vec::new());
    while let Some(done) = tasks.join_next().await {
        let (c, f, times) = done.expect("an application client panicked");
        commits += c;
        followed += f;
        committing.extend(times);
    }
    let elapsed = started.elapsed();
    let cpu_after = cpu_sample(&[&[me], &server[..]].concat());
    let deadline = Instant::now() + DRAIN;
    while received.count.load(Relaxed) < followed && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let delays = std::mem::take(&mut *received.delays.lock().unwrap());
    let scans = probe.scans(admin).await - scans_before;
    Load {
        commits: commits as f64,
        seconds: elapsed.as_secs_f64(),
        reads: scans / 2,
        reader_cpu: probe.reader.map_or(Duration::ZERO, |pid| {
            cpu_used(&cpu_before, &cpu_after, Some(pid), &[])
        }),
        server_cpu: cpu_used(&cpu_before, &cpu_after, None, &[me]),
        bench_cpu: cpu_used(&cpu_before, &cpu_after, Some(me), &[]),
        commits_per_s: commits as f64 / elapsed.as_secs_f64(),
        followed,
        received: received.count.load(Relaxed),
        delays: delays.into_iter().map(Duration::from_micros).collect(),
        committing,
    }
}

// ---- where the time goes ------------------------------------------------------------------

/// CPU time (user + system) of a process so far, from `/proc/<pid>/stat` (Linux; 100 ticks/s).
fn cpu_of(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// The processes whose working folder is `dir` (a PostgreSQL cluster's: every process of
/// the server), or whose command line contains every one of `words` (redis-server names
/// its port there).
fn pids(dir: Option<&std::path::Path>, words: &[&str]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let hit = match dir {
                Some(dir) => std::fs::read_link(entry.path().join("cwd")).ok()? == dir,
                None => {
                    let line = std::fs::read(entry.path().join("cmdline")).ok()?;
                    let line = String::from_utf8_lossy(&line);
                    words.iter().all(|word| line.contains(word))
                }
            };
            hit.then_some(pid)
        })
        .collect()
}

/// CPU time per process.
fn cpu_sample(pids: &[u32]) -> Vec<(u32, Duration)> {
    pids.iter().filter_map(|&pid| Some((pid, cpu_of(pid)?))).collect()
}

/// CPU used between two samples by `pid`, or (`None`) by every process but `except`.
fn cpu_used(
    before: &[(u32, Duration)],
    after: &[(u32, Duration)],
    pid: Option<u32>,
    except: &[u32],
) -> Duration {
    after
        .iter()
        .filter(|(p, _)| pid.map_or(!except.contains(p), |pid| *p == pid))
        .map(|(p, now)| {
            let then = before
                .iter()
                .find(|(q, _)| q == p)
                .map_or(Duration::ZERO, |(_, t)| *t);
            now.saturating_sub(then)
        })
        .sum()
}

/// CPU during one fan-out round: this process, and the server's processes.
#[derive(Clone, Copy, Default)]
struct FanOutCpu {
    bench: Duration,
    /// Redis: the server. PostgreSQL: the backend of the log's appends, that of its reader
    /// (`LISTEN`), and the rest of the server.
    server: [Duration; 3],
}

/// The backends of the bench's logs, but those in `exclude`: (appends, reader), found by their
/// last query.
async fn log_backends(admin: &Client, exclude: &[u32]) -> (Option<u32>, Option<u32>) {
    let rows = admin
        .query(
            "SELECT pid, query FROM pg_stat_activity WHERE application_name = 'tower-eventstream'",
            &[],
        )
        .await
        .expect("pg_stat_activity");
    let (mut appends, mut reader) = (None, None);
    for row in rows {
        let (pid, query): (i32, String) = (row.get(0), row.get(1));
        if exclude.contains(&(pid as u32)) {
            continue;
        }
        if query.starts_with("INSERT INTO eventstream_events") {
            appends = Some(pid as u32);
        } else if query.contains("eventstream_trim")
            || (query.contains("w.xid >= s.horizon") && query.contains("pg_snapshot_xmin"))
        {
            reader = Some(pid as u32);
        }
    }
    (appends, reader)
}

/// Statements timed one after another, each in a transaction of its own as an append is:
/// where the time of PostgresLog's append goes. `(label, p50, mean)`.
async fn statement_costs(admin: &Client, count: usize) -> Vec<(&'static str, Duration, Duration)> {
    admin
        .batch_execute(
            "CREATE TABLE bench_bare (LIKE eventstream_events INCLUDING ALL); \
             CREATE TABLE bench_before (LIKE eventstream_events INCLUDING ALL); \
             CREATE TRIGGER bench_before BEFORE INSERT ON bench_before \
                 FOR EACH ROW EXECUTE FUNCTION eventstream_before_insert(); \
             CREATE TABLE bench_unheard (LIKE eventstream_events INCLUDING ALL); \
             CREATE TRIGGER bench_before BEFORE INSERT ON bench_unheard \
                 FOR EACH ROW EXECUTE FUNCTION eventstream_before_insert(); \
             CREATE FUNCTION bench_notify_unheard() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN PERFORM pg_notify('bench_unheard', ''); RETURN NULL; END $$; \
             CREATE TRIGGER bench_notify AFTER INSERT ON bench_unheard \
                 FOR EACH STATEMENT EXECUTE FUNCTION bench_notify_unheard();",
        )
        .await
        .expect("create the profile's tables");
    let cases: [(&str, &str); 5] = [
        ("`SELECT 1` (a round trip)", "SELECT 1"),
        (
            "INSERT, no trigger",
            "INSERT INTO bench_bare (topic, data) VALUES ('profile', $1) RETURNING xid::text, seq",
        ),
        (
            "INSERT, the row trigger only (xid, end check, advisory lock)",
            "INSERT INTO bench_before (topic, data) VALUES ('profile', $1) RETURNING xid::text, seq",
        ),
        (
            "INSERT, the row trigger + a pg_notify nobody listens to",
            "INSERT INTO bench_unheard (topic, data) VALUES ('profile', $1) RETURNING xid::text, seq",
        ),
        (
            "INSERT into eventstream_events (row trigger + pg_notify heard by the log's reader), as `append`",
            "INSERT INTO eventstream_events (topic, data) VALUES ('profile', $1) RETURNING xid::text, seq",
        ),
    ];
    let mut statements = Vec::new();
    for (_, sql) in cases {
        statements.push(admin.prepare(sql).await.expect("prepare"));
    }
    // The cases take turns, so that a noisy moment of the machine hits them all.
    let mut times = vec![Vec::with_capacity(count); cases.len()];
    for n in 0..count {
        let data = n.to_string();
        for (case, statement) in statements.iter().enumerate() {
            let started = Instant::now();
            if case == 0 {
                admin.query(statement, &[]).await.expect("SELECT 1");
            } else {
                admin.query(statement, &[&data]).await.expect("INSERT");
            }
            times[case].push(started.elapsed());
        }
    }
    let costs = cases
        .iter()
        .zip(&times)
        .map(|((label, _), times)| {
            let mean = times.iter().sum::<Duration>() / count as u32;
            (*label, quantile(times, 0.5), mean)
        })
        .collect();
    admin
        .batch_execute(
            "DROP TABLE bench_bare; DROP TABLE bench_before; DROP TABLE bench_unheard; \
             DROP FUNCTION bench_notify_unheard();",
        )
        .await
        .expect("drop the profile's tables");
    costs
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

/// `a / b` as a ratio, or a dash when `b` is zero.
fn times(a: Duration, b: Duration) -> String {
    if b.is_zero() {
        "–".to_owned()
    } else {
        format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64())
    }
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
    let data = scratch
        .0
        .canonicalize()
        .map(|dir| dir.join("data"))
        .unwrap_or_default();
    let redis_pids = pids(None, &["redis-server", &format!(":{}", redis.port)]);
    runtime.block_on(run(
        &sizes,
        smoke,
        (redis.url(), redis_pids),
        (postgres.url(), data),
    ));
    drop(runtime);
    drop(postgres);
    drop(redis);
    drop(scratch);
}

async fn run(
    sizes: &Sizes,
    smoke: bool,
    (redis_url, redis_pids): (String, Vec<u32>),
    (postgres_url, data): (String, PathBuf),
) {
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
    let mut cpus: Vec<[FanOutCpu; 3]> = Vec::new();
    let (mut appender, mut reader) = (None, None);
    let costs;
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
        // A table in use, not an empty one: on an empty or never analysed table PostgreSQL
        // plans the reader's look for rows behind the horizon as a scan of the whole table.
        admin
            .batch_execute(&format!(
                "INSERT INTO eventstream_events (topic, data) \
                 SELECT 'filler', g::text FROM generate_series(1, {FILLER}) g; \
                 ANALYZE eventstream_events;"
            ))
            .await
            .expect("fill the event table");
        let (appends, subscribers, events) = (sizes.latency_appends, sizes.subscribers, sizes.events);
        for round in 1..=sizes.rounds {
            let round_latency = [
                latency(&memory, appends).await,
                latency(&redis, appends).await,
                latency(&postgres, appends).await,
            ];
            if round == 1 {
                (appender, reader) = log_backends(&admin, &[]).await;
            }
            let me = std::process::id();
            let sample = |server: &[u32]| cpu_sample(&[&[me], server].concat());
            let before = sample(&[]);
            let memory_fan_out = fan_out(&memory, subscribers, events).await;
            let after = sample(&[]);
            let memory_cpu = FanOutCpu {
                bench: cpu_used(&before, &after, Some(me), &[]),
                ..Default::default()
            };
            let before = sample(&redis_pids);
            let redis_fan_out = fan_out(&redis, subscribers, events).await;
            let after = sample(&redis_pids);
            let redis_cpu = FanOutCpu {
                bench: cpu_used(&before, &after, Some(me), &[]),
                server: [
                    cpu_used(&before, &after, None, &[me]),
                    Duration::ZERO,
                    Duration::ZERO,
                ],
            };
            let postgres_pids = pids(Some(&data), &[]);
            let before = sample(&postgres_pids);
            let postgres_fan_out = fan_out(&postgres, subscribers, events).await;
            let after = sample(&postgres_pids);
            let known: Vec<u32> = [Some(me), appender, reader].into_iter().flatten().collect();
            let postgres_cpu = FanOutCpu {
                bench: cpu_used(&before, &after, Some(me), &[]),
                server: [
                    appender.map_or(Duration::ZERO, |pid| cpu_used(&before, &after, Some(pid), &[])),
                    reader.map_or(Duration::ZERO, |pid| cpu_used(&before, &after, Some(pid), &[])),
                    cpu_used(&before, &after, None, &known),
                ],
            };
            let round_fan_out = [memory_fan_out, redis_fan_out, postgres_fan_out];
            let round_cpu = [memory_cpu, redis_cpu, postgres_cpu];
            println!(
                "round {round} fan-out CPU: this process {} / {} / {} (memory / Redis / PostgreSQL); redis-server {}; PostgreSQL append backend {}, reader backend {}, other processes {}",
                ms(memory_cpu.bench),
                ms(redis_cpu.bench),
                ms(postgres_cpu.bench),
                ms(redis_cpu.server[0]),
                ms(postgres_cpu.server[0]),
                ms(postgres_cpu.server[1]),
                ms(postgres_cpu.server[2]),
            );
            cpus.push(round_cpu);
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
        costs = statement_costs(&admin, sizes.latency_appends).await;
    }

    // ---- 3: transactions ----
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
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
    // The backends of the first section's log may not be gone yet.
    let old: Vec<u32> = [appender, reader].into_iter().flatten().collect();
    let mut reader = None;
    for _ in 0..50 {
        reader = log_backends(&admin, &old).await.1;
        if reader.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let probe = Probe { data, reader };
    let mut apps = Vec::new();
    for _ in 0..max_clients {
        apps.push(Arc::new(app_client(&postgres_url).await));
    }
    // Per (clients, topics or None for the baseline): the rounds.
    let mut cells: Vec<(Cell, Vec<Load>)> = Vec::new();
    for &clients in sizes.clients {
        for topics in std::iter::once(None).chain(sizes.topics.iter().map(|&t| Some(t))) {
            cells.push(((clients, topics), Vec::new()));
        }
    }
    for round in 1..=sizes.rounds {
        for ((clients, topics), rounds) in cells.iter_mut() {
            let load = transactions(
                &apps[..*clients],
                &admin,
                *topics,
                sizes.load,
                &received,
                base,
                &probe,
            )
            .await;
            println!(
                "round {round} clients {clients:>2} topics {:>6}: {:.0} commits/s; followed {} received {}; delay p50 {} p99 {}; INSERT→COMMIT answered p50 {} p99 {}",
                topics.map_or("none".to_owned(), |t| t.to_string()),
                load.commits_per_s,
                load.followed,
                load.received,
                ms(quantile(&load.delays, 0.5)),
                ms(quantile(&load.delays, 0.99)),
                ms(quantile(&load.committing, 0.5)),
                ms(quantile(&load.committing, 0.99)),
            );
            println!(
                "        reader: {} reads ({:.0}/s), reader backend CPU {}; PostgreSQL CPU {:.0} % of {cores} cores, this process {:.0} %",
                load.reads,
                load.reads as f64 / load.seconds,
                ms(load.reader_cpu),
                load.server_cpu.as_secs_f64() / load.seconds / cores as f64 * 100.0,
                load.bench_cpu.as_secs_f64() / load.seconds / cores as f64 * 100.0,
            );
            rounds.push(load);
        }
    }
    followers.abort_all();
    drop(logs);
    drop(family);

    // ---- the tables ----
    println!();
    println!(
        "{} on {cores} cores, shared with other work (other builds and tests may run meanwhile); \
         loopback; `cargo bench --bench postgres_fanout --features redis,postgres{}`; PostgreSQL \
         {pg_version}, a throwaway test cluster with fsync=off and full_page_writes=off (commits \
         still synchronous); {redis_version} without persistence. {} round{}, the backends taking \
         turns; each figure is the median of its rounds.",
        if smoke {
            "Smoke run (small sizes)"
        } else {
            "Full run"
        },
        if smoke { " -- --smoke" } else { "" },
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
            "| append→receive {label} (1 subscriber, {appends} appends 1 ms apart) | {} | {} | {} | {} |",
            ms(figures[0]),
            ms(figures[1]),
            ms(figures[2]),
            times(figures[2], figures[1])
        );
    }
    let calls: Vec<Duration> = (0..3)
        .map(|b| per_round(b, &|l: &Latency| quantile(&l.calls, 0.5)))
        .collect();
    println!(
        "| `append` call p50 (same appends) | {} | {} | {} | {} |",
        ms(calls[0]),
        ms(calls[1]),
        ms(calls[2]),
        times(calls[2], calls[1])
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
        "| fan-out: of which appending the {} events | {} | {} | {} | {} |",
        sizes.events,
        ms(appendings[0]),
        ms(appendings[1]),
        ms(appendings[2]),
        times(appendings[2], appendings[1])
    );
    let cpu = |f: &dyn Fn(&[FanOutCpu; 3]) -> Duration| median(&cpus.iter().map(f).collect::<Vec<_>>());
    let bench_cpu: Vec<Duration> = (0..3).map(|b| cpu(&|c| c[b].bench)).collect();
    println!(
        "| fan-out: CPU of this process (subscribers, appends, the log's reader) | {} | {} | {} | {} |",
        ms(bench_cpu[0]),
        ms(bench_cpu[1]),
        ms(bench_cpu[2]),
        times(bench_cpu[2], bench_cpu[1])
    );
    let (pg_appends, pg_reader, pg_other) = (
        cpu(&|c| c[2].server[0]),
        cpu(&|c| c[2].server[1]),
        cpu(&|c| c[2].server[2]),
    );
    let redis_server = cpu(&|c| c[1].server[0]);
    let pg_total = pg_appends + pg_reader + pg_other;
    println!(
        "| fan-out: CPU of the server | – | {} | {} (append backend {}, reader backend {}, other {}) | {} |",
        ms(redis_server),
        ms(pg_total),
        ms(pg_appends),
        ms(pg_reader),
        ms(pg_other),
        times(pg_total, redis_server)
    );
    for (label, p50, mean) in &costs {
        println!(
            "| PostgreSQL statement, one after another: {label} | – | – | {} (mean {}) | – |",
            ms(*p50),
            ms(*mean)
        );
    }
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
    println!("| clients | topics | commits/s with the event | commits/s without (baseline) | with / without | followed topics: INSERT→received p50 / p99 | of which INSERT→COMMIT answered p50 / p99 (all events) | followed events received |");
    println!("|---|---|---|---|---|---|---|---|");
    for &clients in sizes.clients {
        let baseline = cells
            .iter()
            .find(|((c, t), _)| *c == clients && t.is_none())
            .map(|(_, rounds)| median(&rounds.iter().map(|l| l.commits_per_s).collect::<Vec<_>>()))
            .unwrap_or(f64::NAN);
        for ((_, topics), rounds) in cells.iter().filter(|((c, t), _)| *c == clients && t.is_some()) {
            let commits = median(&rounds.iter().map(|l| l.commits_per_s).collect::<Vec<_>>());
            let over = |f: &dyn Fn(&Load) -> Duration| median(&rounds.iter().map(f).collect::<Vec<_>>());
            let p50 = over(&|l| quantile(&l.delays, 0.5));
            let p99 = over(&|l| quantile(&l.delays, 0.99));
            let c50 = over(&|l| quantile(&l.committing, 0.5));
            let c99 = over(&|l| quantile(&l.committing, 0.99));
            let (followed, got): (u64, u64) = rounds
                .iter()
                .fold((0, 0), |(f, g), l| (f + l.followed, g + l.received));
            println!(
                "| {clients} | {} | {} | {} | {:.2} | {} / {} | {} / {} | {got} of {followed} |",
                thousands(topics.unwrap_or(0)),
                rate(commits),
                rate(baseline),
                commits / baseline,
                ms(p50),
                ms(p99),
                ms(c50),
                ms(c99),
            );
        }
    }
    println!();
    println!(
        "Where the time goes in these runs: the family's reads (its reader's queries, counted from \
         the event table's scans, two per read), the rows each read took, the reader backend's CPU \
         per read, and the CPU used over the load (`/proc`, 10 ms ticks), as a share of the {cores} cores."
    );
    println!();
    println!("| clients | topics | reads/s | rows per read | reader backend CPU per read | PostgreSQL CPU | this process CPU |");
    println!("|---|---|---|---|---|---|---|");
    for ((clients, topics), rounds) in &cells {
        let over = |f: &dyn Fn(&Load) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
        let reads = over(&|l| l.reads as f64 / l.seconds);
        let rows = over(&|l| {
            if l.reads == 0 {
                0.0
            } else {
                l.commits / l.reads as f64
            }
        });
        let per_read = over(&|l| l.reader_cpu.as_secs_f64() / (l.reads.max(1)) as f64);
        let server = over(&|l| l.server_cpu.as_secs_f64() / l.seconds / cores as f64 * 100.0);
        let bench = over(&|l| l.bench_cpu.as_secs_f64() / l.seconds / cores as f64 * 100.0);
        println!(
            "| {clients} | {} | {reads:.0} | {} | {} | {server:.0} % | {bench:.0} % |",
            topics.map_or("none (baseline)".to_owned(), thousands),
            if topics.is_some() {
                format!("{rows:.1}")
            } else {
                "–".to_owned()
            },
            if topics.is_some() {
                ms(Duration::from_secs_f64(per_read))
            } else {
                "–".to_owned()
            },
        );
    }
}
