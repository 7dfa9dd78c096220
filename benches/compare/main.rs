//! `cargo bench --features server --bench compare [-- --smoke]`: this crate against its peers, in one run.
//!
//! Servers, one after another on loopback ports, each in a process of its own (this binary
//! re-executed as `--serve <kind> <port>`, or nginx) so that its memory and CPU time are read
//! from `/proc` apart from the load generator, which runs here:
//!
//! - `crate`: the chat example's router (`examples/chat/app.rs`) under `axum::serve`;
//! - `crate-h1`: the same router on hyper's HTTP/1 connection builder, with `TCP_NODELAY`;
//! - `crate-server`: the same router on this crate's own `server::Server`;
//! - `axum`: axum's `Sse` over a `tokio::sync::broadcast` channel, 15 s keep-alive;
//! - `ceiling`: raw tokio, no HTTP framework, events encoded once and written batched;
//! - `nchan`: nginx + Nchan from `benches/nchan.conf.template` (skipped when not installed).
//!
//! Scenarios (the sizes of a full run; `--smoke` uses 200 connections and seconds):
//!
//! 1. fan-out: 10 000 SSE subscribers; 300 events published by 16 publishers, each POSTing
//!    the next event as soon as the previous one is answered; deliveries per second until
//!    every subscriber has every event, and the server's CPU time per delivery;
//! 2. latency: 5 000 subscribers, 100 events/s for 5 s (pipelined, so a slow server gets a
//!    backlog rather than a slower publisher); publish-to-receive p50 and p99 (the publish
//!    time travels in the event's data);
//! 3. and 4. idle: 10 000 idle SSE connections to every server at once (each held by a
//!    `--hold` process of this binary); memory per connection, then CPU over 60 s;
//! 5. long poll: 5 000 long pollers re-polling with their cursor while 20 events/s are
//!    published for 5 s; deliveries per second and p99;
//! 6. encoding, from `benches/encode.rs`.
//!
//! Fan-out and latency run three times per server, taking turns, and each server's best round
//! counts (other work on a shared machine comes and goes). The table gives each server's
//! figure and the ratios of this crate to axum, the ceiling and Nchan, then the targets.
//!
//! Options: `--smoke`, `--only crate,crate-h1,crate-server,axum,ceiling,nchan`,
//! `--scenarios encode,fanout,latency,longpoll,idle`, `--rounds N`, `--publishers N`,
//! `--events N` (fan-out), `--idle-secs N`.

#[path = "../../examples/chat/app.rs"]
#[allow(dead_code)]
mod app;
#[path = "../encode.rs"]
#[allow(dead_code)]
mod encode;
mod load;
mod nchan;
mod procfs;
mod servers;

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use load::{Group, HttpConnection, PollStyle};

// ---------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------

struct Settings {
    smoke: bool,
    fanout_subscribers: usize,
    fanout_events: u64,
    fanout_publishers: usize,
    /// Times fan-out and latency run for each server (the best round counts).
    rounds: usize,
    latency_subscribers: usize,
    latency_rate: u64,
    latency_secs: u64,
    idle_connections: usize,
    idle_secs: u64,
    poll_clients: usize,
    poll_rate: u64,
    poll_secs: u64,
    /// Longest wait for every reader to finish after publishing ends.
    drain_limit: Duration,
    /// Longest a fan-out round may take; a server still delivering then is measured by
    /// what it delivered so far.
    fanout_limit: Duration,
    servers: Vec<Kind>,
    scenarios: Vec<String>,
}

impl Settings {
    fn from_args() -> Result<Settings, String> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let smoke = args.iter().any(|arg| arg == "--smoke");
        let mut settings = if smoke {
            Settings {
                smoke,
                fanout_subscribers: 200,
                fanout_events: 200,
                fanout_publishers: 4,
                rounds: 1,
                latency_subscribers: 200,
                latency_rate: 100,
                latency_secs: 2,
                idle_connections: 200,
                idle_secs: 2,
                poll_clients: 200,
                poll_rate: 20,
                poll_secs: 2,
                drain_limit: Duration::from_secs(20),
                fanout_limit: Duration::from_secs(20),
                servers: Kind::ALL.to_vec(),
                scenarios: Vec::new(),
            }
        } else {
            Settings {
                smoke,
                fanout_subscribers: 10_000,
                fanout_events: 300,
                fanout_publishers: 16,
                rounds: 3,
                latency_subscribers: 5_000,
                latency_rate: 100,
                latency_secs: 5,
                idle_connections: 10_000,
                idle_secs: 60,
                poll_clients: 5_000,
                poll_rate: 20,
                poll_secs: 5,
                drain_limit: Duration::from_secs(20),
                fanout_limit: Duration::from_secs(30),
                servers: Kind::ALL.to_vec(),
                scenarios: Vec::new(),
            }
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--smoke" | "--bench" => {}
                "--only" => {
                    let list = args.next().ok_or("--only needs a list of servers")?;
                    settings.servers = list
                        .split(',')
                        .map(|name| Kind::from_name(name).ok_or(format!("unknown server {name}")))
                        .collect::<Result<_, _>>()?;
                }
                "--scenarios" => {
                    let list = args.next().ok_or("--scenarios needs a list")?;
                    settings.scenarios = list.split(',').map(str::to_owned).collect();
                }
                "--publishers" => {
                    let n = args.next().ok_or("--publishers needs a number")?;
                    settings.fanout_publishers = n.parse().map_err(|_| "--publishers needs a number")?;
                }
                "--events" => {
                    let n = args.next().ok_or("--events needs a number")?;
                    settings.fanout_events = n.parse().map_err(|_| "--events needs a number")?;
                }
                "--rounds" => {
                    let n = args.next().ok_or("--rounds needs a number")?;
                    settings.rounds = n.parse().map_err(|_| "--rounds needs a number")?;
                }
                "--idle-secs" => {
                    let secs = args.next().ok_or("--idle-secs needs a number")?;
                    settings.idle_secs = secs.parse().map_err(|_| "--idle-secs needs a number")?;
                }
                other if other.starts_with("--") => return Err(format!("unknown option {other}")),
                // cargo bench passes a filter argument through; there is nothing to filter.
                _ => {}
            }
        }
        Ok(settings)
    }

    fn runs(&self, scenario: &str) -> bool {
        self.scenarios.is_empty() || self.scenarios.iter().any(|s| s == scenario)
    }

    fn serves(&self, kind: Kind) -> bool {
        self.servers.contains(&kind)
    }
}

// ---------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Crate,
    CrateH1,
    CrateServer,
    Axum,
    Ceiling,
    Nchan,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Crate,
        Kind::CrateH1,
        Kind::CrateServer,
        Kind::Axum,
        Kind::Ceiling,
        Kind::Nchan,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Crate => "crate",
            Kind::CrateH1 => "crate-h1",
            Kind::CrateServer => "crate-server",
            Kind::Axum => "axum",
            Kind::Ceiling => "ceiling",
            Kind::Nchan => "nchan",
        }
    }

    fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    fn column(self) -> &'static str {
        match self {
            Kind::Crate => "crate (axum::serve)",
            Kind::CrateH1 => "crate (hyper h1)",
            Kind::CrateServer => "crate (own server)",
            Kind::Axum => "axum Sse",
            Kind::Ceiling => "ceiling",
            Kind::Nchan => "Nchan",
        }
    }

    fn sse_path(self) -> &'static str {
        match self {
            Kind::Crate | Kind::CrateH1 | Kind::CrateServer => "/api/events",
            Kind::Axum => "/events",
            Kind::Ceiling | Kind::Nchan => "/sub",
        }
    }

    fn publish_path(self) -> &'static str {
        match self {
            Kind::Crate | Kind::CrateH1 | Kind::CrateServer => "/api/messages",
            Kind::Axum => "/publish",
            Kind::Ceiling | Kind::Nchan => "/pub",
        }
    }

    fn long_poll(self) -> Option<(&'static str, PollStyle)> {
        match self {
            Kind::Crate | Kind::CrateH1 | Kind::CrateServer => Some(("/api/events", PollStyle::Crate)),
            Kind::Ceiling => Some(("/lp", PollStyle::Ceiling)),
            Kind::Nchan => Some(("/lp", PollStyle::Nchan)),
            // axum has no long poll of its own.
            Kind::Axum => None,
        }
    }
}

/// Processes this program started, killed (by id) if the run overruns its time limit.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn register_child(pid: u32) {
    CHILDREN.lock().unwrap().push(pid);
}

enum Process {
    Rust(Child),
    Nginx(nchan::Nginx),
}

struct Server {
    kind: Kind,
    port: u16,
    process: Process,
}

impl Server {
    fn start(kind: Kind, nofile: u64) -> Result<Server, String> {
        if kind == Kind::Nchan {
            let nginx = nchan::Nginx::start(nofile)?;
            return Ok(Server {
                kind,
                port: nginx.port,
                process: Process::Nginx(nginx),
            });
        }
        let exe = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
        let mut child = Command::new(exe)
            .args(["--serve", kind.name(), "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting the {} server: {e}", kind.name()))?;
        register_child(child.id());
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
        match line
            .trim()
            .strip_prefix("READY ")
            .and_then(|port| port.parse().ok())
        {
            Some(port) => Ok(Server {
                kind,
                port,
                process: Process::Rust(child),
            }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("the {} server did not start: {line:?}", kind.name()))
            }
        }
    }

    fn pids(&self) -> Vec<u32> {
        match &self.process {
            Process::Rust(child) => vec![child.id()],
            Process::Nginx(nginx) => nginx.pids(),
        }
    }

    /// Resident memory in KiB: RSS of the one process, or the summed PSS of nginx's master
    /// and workers (their shared zone counted once).
    fn memory_kib(&self) -> u64 {
        match &self.process {
            Process::Rust(child) => procfs::rss_kib(child.id()),
            Process::Nginx(nginx) => nginx.pids().into_iter().map(procfs::pss_kib).sum(),
        }
    }

    fn cpu_seconds(&self) -> f64 {
        self.pids().into_iter().map(procfs::cpu_seconds).sum()
    }

    /// The system (kernel) part of [`Server::cpu_seconds`].
    fn system_cpu_seconds(&self) -> f64 {
        self.pids().into_iter().map(|pid| procfs::cpu_split(pid).1).sum()
    }

    /// Write system calls so far (every thread and worker).
    fn write_syscalls(&self) -> u64 {
        self.pids().into_iter().map(|pid| procfs::syscalls(pid).1).sum()
    }

    fn stop(self) {
        match self.process {
            Process::Rust(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Process::Nginx(nginx) => nginx.stop(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Scenario helpers
// ---------------------------------------------------------------------------------------

/// Waits until `done()` holds, checking every 5 ms; false after `limit`.
async fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until every one of `readers` has every event; false after `limit`.
async fn wait_all_done(group: &Group, readers: usize, limit: Duration) -> bool {
    wait_for(limit, || group.done.load(Ordering::Acquire) == readers).await
}

/// A publisher's connection from loopback source address number `source`.
async fn open_publisher(source: usize, port: u16) -> Result<HttpConnection, String> {
    HttpConnection::open(source, port)
        .await
        .map_err(|e| format!("publisher: {e}"))
}

/// Connects `count` SSE subscribers (at most 200 connecting at once) and waits for every
/// response head.
async fn subscribe_all(
    server: &Server,
    count: usize,
    parse_timestamps: bool,
) -> Result<(Arc<Group>, JoinSet<()>), String> {
    let group = Group::new(count);
    let connecting = Arc::new(Semaphore::new(200));
    let path: Arc<str> = Arc::from(server.kind.sse_path());
    let mut tasks = JoinSet::new();
    for i in 0..count {
        tasks.spawn(load::sse_subscriber(
            Arc::clone(&group),
            i,
            server.port,
            Arc::clone(&path),
            parse_timestamps,
            Arc::clone(&connecting),
        ));
    }
    let all_in = wait_for(Duration::from_secs(120), || {
        group.ready.load(Ordering::Acquire) + group.failed.load(Ordering::Acquire) == count
    })
    .await;
    let failed = group.failed.load(Ordering::Acquire);
    if !all_in || failed > 0 {
        return Err(format!(
            "{} of {count} subscribers connected ({failed} failed: {})",
            group.ready.load(Ordering::Acquire),
            group.error()
        ));
    }
    Ok((group, tasks))
}

/// Publishes warm-up events (not counted) until every reader has received one: then every
/// subscription is surely in place.
async fn warm_up(server: &Server, publisher: &mut HttpConnection, group: &Group) -> Result<(), String> {
    let warm = load::payload(None);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        load::publish(publisher, server.kind.publish_path(), &warm)
            .await
            .map_err(|e| format!("warm-up publish: {e}"))?;
        if wait_for(Duration::from_millis(500), || group.all_warm()).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            let warm = group
                .slots
                .iter()
                .filter(|s| s.warm.load(Ordering::Acquire))
                .count();
            return Err(format!(
                "only {warm} of {} readers got the warm-up event",
                group.slots.len()
            ));
        }
    }
}

fn percentile_ms(sorted: &[u32], missing: u64, p: f64) -> f64 {
    let total = sorted.len() as u64 + missing;
    if total == 0 {
        return f64::NAN;
    }
    let rank = ((total as f64 * p).ceil() as u64).clamp(1, total);
    match sorted.get(rank as usize - 1) {
        Some(&us) => us as f64 / 1000.0,
        // The percentile falls among events never delivered.
        None => f64::INFINITY,
    }
}

// ---------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------

struct FanOut {
    deliveries_per_sec: f64,
    cpu_per_delivery_us: f64,
    complete: bool,
}

/// 1. Every subscriber receives every event, published as fast as the server accepts them.
async fn fan_out(server: &Server, s: &Settings) -> Result<FanOut, String> {
    let phase = Instant::now();
    let (group, mut tasks) = subscribe_all(server, s.fanout_subscribers, false).await?;
    let connected = phase.elapsed();
    let mut publishers = Vec::new();
    for i in 0..s.fanout_publishers {
        publishers.push(open_publisher(250 + i, server.port).await?);
    }
    warm_up(server, &mut publishers[0], &group).await?;
    println!(
        "  (connected in {:.1} s, warm after {:.1} s)",
        connected.as_secs_f64(),
        phase.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;

    let events = s.fanout_events;
    group.target.store(events, Ordering::Release);
    let cpu_before = server.cpu_seconds();
    let writes_before = server.write_syscalls();
    let own_cpu_before = procfs::cpu_seconds(std::process::id());
    let start = load::now_us();
    let path = server.kind.publish_path();
    let mut publishing = JoinSet::new();
    let shares = publishers.len() as u64;
    for (n, mut publisher) in publishers.into_iter().enumerate() {
        let share = events / shares + u64::from((n as u64) < events % shares);
        publishing.spawn(async move {
            for _ in 0..share {
                load::publish(&mut publisher, path, &load::payload(Some(load::now_us()))).await?;
            }
            Ok::<_, std::io::Error>(load::now_us())
        });
    }
    let subscribers = s.fanout_subscribers;
    let complete = wait_all_done(&group, subscribers, s.fanout_limit).await;
    let end = if complete {
        group.last_done_us.load(Ordering::Acquire)
    } else {
        load::now_us()
    };
    let server_cpu = server.cpu_seconds() - cpu_before;
    let writes = server.write_syscalls() - writes_before;
    println!(
        "  ({:.1} write calls per subscriber for {events} events, server CPU {server_cpu:.2} s)",
        writes as f64 / subscribers as f64,
    );
    tasks.abort_all();
    // Publishers still at work when the time ran out are abandoned.
    let mut publish_error = None;
    let mut published_at = 0;
    while let Ok(Some(joined)) = tokio::time::timeout(Duration::from_secs(1), publishing.join_next()).await {
        match joined {
            Ok(Err(error)) => {
                publish_error.get_or_insert(error);
            }
            Ok(Ok(at)) => published_at = published_at.max(at),
            Err(_) => {}
        }
    }
    println!(
        "  (published in {:.2} s, all delivered after {:.2} s, load generator CPU {:.2} s)",
        published_at.saturating_sub(start) as f64 / 1e6,
        (end - start) as f64 / 1e6,
        procfs::cpu_seconds(std::process::id()) - own_cpu_before
    );
    publishing.abort_all();
    if let Some(error) = publish_error {
        return Err(format!("publish: {error}"));
    }
    let delivered = group.delivered().min(events * subscribers as u64);
    Ok(FanOut {
        deliveries_per_sec: delivered as f64 / ((end - start) as f64 / 1e6),
        cpu_per_delivery_us: server_cpu * 1e6 / delivered.max(1) as f64,
        complete,
    })
}

struct Latency {
    p50_ms: f64,
    p99_ms: f64,
    complete: bool,
}

/// 2. Publish-to-receive latency at a fixed publishing rate.
async fn latency(server: &Server, s: &Settings) -> Result<Latency, String> {
    let phase = Instant::now();
    let (group, mut tasks) = subscribe_all(server, s.latency_subscribers, true).await?;
    let connected = phase.elapsed();
    let mut publisher = open_publisher(250, server.port).await?;
    warm_up(server, &mut publisher, &group).await?;
    let warm = phase.elapsed();
    let events = s.latency_rate * s.latency_secs;
    group.target.store(events, Ordering::Release);
    let path = server.kind.publish_path();
    let publishing = load::publish_open_loop(251, server.port, path, s.latency_rate, events)
        .await
        .map_err(|e| format!("publish: {e}"))?;
    let published = phase.elapsed();
    let subscribers = s.latency_subscribers;
    let complete = wait_all_done(&group, subscribers, s.drain_limit).await;
    tasks.abort_all();
    publishing.finish(Duration::from_millis(100)).await?;
    let mut latencies = group.latencies();
    latencies.sort_unstable();
    // Events not delivered by the end count as slower than every delivered one.
    let missing = (events * subscribers as u64).saturating_sub(latencies.len() as u64);
    println!(
        "  (connected {:.1} s, warm {:.1} s, published {:.1} s, drained {:.1} s; max {:.0} ms, {missing} not delivered)",
        connected.as_secs_f64(),
        warm.as_secs_f64(),
        published.as_secs_f64(),
        phase.elapsed().as_secs_f64(),
        latencies.last().map_or(0.0, |&us| us as f64 / 1000.0)
    );
    Ok(Latency {
        p50_ms: percentile_ms(&latencies, missing, 0.50),
        p99_ms: percentile_ms(&latencies, missing, 0.99),
        complete,
    })
}

struct Idle {
    kib_per_connection: f64,
    cpu_percent: f64,
    /// The kernel's part of `cpu_percent` (sending keep-alives over loopback TCP).
    system_cpu_percent: f64,
}

/// A process of this binary (`--hold`) holding idle SSE connections to one server, so
/// that every server's idle window runs at once, each holder within its own file limit.
struct Holder(Child);

impl Holder {
    fn start(server: &Server, count: usize) -> Result<Holder, String> {
        let exe = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
        let mut child = Command::new(exe)
            .args([
                "--hold",
                &server.port.to_string(),
                server.kind.sse_path(),
                &count.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting a holder: {e}"))?;
        register_child(child.id());
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(150)).unwrap_or_default();
        if line.trim() == "HELD" {
            Ok(Holder(child))
        } else {
            let _ = child.kill();
            let _ = child.wait();
            Err(match line.trim().strip_prefix("FAILED ") {
                Some(reason) => reason.to_owned(),
                None => "the holder did not report".to_owned(),
            })
        }
    }

    fn stop(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `--hold <port> <path> <count>`: connects `count` SSE subscribers, prints `HELD` (or
/// `FAILED <reason>`), and holds them, reading, until the parent closes our stdin.
fn hold(args: &[String]) -> ! {
    let port: u16 = args.first().and_then(|p| p.parse().ok()).unwrap_or(0);
    let path: Arc<str> = Arc::from(args.get(1).map_or("/", String::as_str));
    let count: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(0);
    procfs::raise_fd_limit();
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin().lock();
        while matches!(std::io::Read::read(&mut stdin, &mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let group = Group::new(count);
        let connecting = Arc::new(Semaphore::new(200));
        for i in 0..count {
            tokio::spawn(load::sse_subscriber(
                Arc::clone(&group),
                i,
                port,
                Arc::clone(&path),
                false,
                Arc::clone(&connecting),
            ));
        }
        let all_in = wait_for(Duration::from_secs(120), || {
            group.ready.load(Ordering::Acquire) + group.failed.load(Ordering::Acquire) == count
        })
        .await;
        let failed = group.failed.load(Ordering::Acquire);
        if all_in && failed == 0 {
            println!("HELD");
        } else {
            println!(
                "FAILED {} of {count} connected ({failed} failed: {})",
                group.ready.load(Ordering::Acquire),
                group.error()
            );
        }
        std::future::pending::<()>().await
    });
    unreachable!("holding ends with the process")
}

/// 3 and 4, for every server at once: memory per idle SSE connection, then CPU time over
/// the idle window (a keep-alive every 15 s on each connection).
async fn idle_all(servers: &[Server], s: &Settings) -> Vec<(Kind, Result<Idle, String>)> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut held = Vec::new();
    for server in servers {
        let before = server.memory_kib();
        let holder = Holder::start(server, s.idle_connections);
        held.push((server, before, holder));
    }
    tokio::time::sleep(Duration::from_secs(if s.smoke { 1 } else { 3 })).await;
    let measured: Vec<_> = held
        .iter()
        .map(|(server, before, _)| {
            let kib = server.memory_kib().saturating_sub(*before) as f64 / s.idle_connections as f64;
            (kib, (server.cpu_seconds(), server.system_cpu_seconds()))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(s.idle_secs)).await;
    let mut results = Vec::new();
    for ((server, _, holder), (kib, (cpu_before, system_before))) in held.into_iter().zip(measured) {
        let cpu = server.cpu_seconds() - cpu_before;
        let system = server.system_cpu_seconds() - system_before;
        results.push((
            server.kind,
            holder.map(|holder| {
                holder.stop();
                Idle {
                    kib_per_connection: kib,
                    cpu_percent: cpu / s.idle_secs as f64 * 100.0,
                    system_cpu_percent: system / s.idle_secs as f64 * 100.0,
                }
            }),
        ));
    }
    results
}

struct LongPoll {
    deliveries_per_sec: f64,
    p99_ms: f64,
    complete: bool,
}

/// 5. Long pollers re-polling with their cursor while events are published at a fixed rate.
async fn long_poll(server: &Server, s: &Settings) -> Result<LongPoll, String> {
    let phase = Instant::now();
    let (path, style) = server.kind.long_poll().ok_or("no long poll")?;
    let group = Group::new(s.poll_clients);
    let connecting = Arc::new(Semaphore::new(200));
    let path: Arc<str> = Arc::from(path);
    let mut tasks = JoinSet::new();
    for i in 0..s.poll_clients {
        tasks.spawn(load::long_poller(
            Arc::clone(&group),
            i,
            server.port,
            Arc::clone(&path),
            style,
            Arc::clone(&connecting),
        ));
    }
    let clients = s.poll_clients;
    let all_in = wait_for(Duration::from_secs(120), || {
        group.ready.load(Ordering::Acquire) + group.failed.load(Ordering::Acquire) == clients
    })
    .await;
    if !all_in || group.failed.load(Ordering::Acquire) > 0 {
        tasks.abort_all();
        return Err(format!("long pollers failed: {}", group.error()));
    }
    let mut publisher = open_publisher(250, server.port).await?;
    warm_up(server, &mut publisher, &group).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events = s.poll_rate * s.poll_secs;
    group.target.store(events, Ordering::Release);
    let start = load::now_us();
    let warm = phase.elapsed();
    let path = server.kind.publish_path();
    let publishing = load::publish_open_loop(251, server.port, path, s.poll_rate, events)
        .await
        .map_err(|e| format!("publish: {e}"))?;
    let published = phase.elapsed();
    let complete = wait_all_done(&group, clients, s.drain_limit).await;
    publishing.finish(Duration::from_millis(100)).await?;
    println!(
        "  (warm {:.1} s, published {:.1} s, drained {:.1} s)",
        warm.as_secs_f64(),
        published.as_secs_f64(),
        phase.elapsed().as_secs_f64()
    );
    let end = if complete {
        group.last_done_us.load(Ordering::Acquire)
    } else {
        load::now_us()
    };
    tasks.abort_all();
    if group.failed.load(Ordering::Acquire) > 0 {
        return Err(format!("long pollers failed: {}", group.error()));
    }
    let delivered = group.delivered().min(events * clients as u64);
    let mut latencies = group.latencies();
    latencies.sort_unstable();
    let missing = (events * clients as u64).saturating_sub(latencies.len() as u64);
    Ok(LongPoll {
        deliveries_per_sec: delivered as f64 / ((end - start) as f64 / 1e6),
        p99_ms: percentile_ms(&latencies, missing, 0.99),
        complete,
    })
}

// ---------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------

#[derive(Clone)]
enum Cell {
    Value(f64, Option<String>),
    NotApplicable,
    Failed(String),
}

#[derive(Clone, Copy)]
enum Unit {
    PerSecond,
    Millis,
    KiB,
    Micros,
    Percent,
}

struct Row {
    metric: String,
    unit: Unit,
    cells: Vec<(Kind, Cell)>,
}

impl Row {
    fn new(metric: impl Into<String>, unit: Unit) -> Row {
        Row {
            metric: metric.into(),
            unit,
            cells: Vec::new(),
        }
    }

    fn value(&self, kind: Kind) -> Option<f64> {
        self.cells.iter().find_map(|(k, cell)| match cell {
            Cell::Value(v, _) if *k == kind && !v.is_nan() => Some(*v),
            _ => None,
        })
    }

    fn set(&mut self, kind: Kind, cell: Cell) {
        self.cells.retain(|(k, _)| *k != kind);
        self.cells.push((kind, cell));
    }
}

fn format_value(value: f64, unit: Unit) -> String {
    if value.is_infinite() {
        return "over the limit: not all delivered".to_owned();
    }
    match unit {
        Unit::PerSecond if value >= 1e6 => format!("{:.2} M/s", value / 1e6),
        Unit::PerSecond => format!("{:.0} k/s", value / 1e3),
        Unit::Millis => format!("{value:.2} ms"),
        Unit::KiB => format!("{value:.1} KiB"),
        Unit::Micros => format!("{value:.2} µs"),
        Unit::Percent => format!("{value:.3} %"),
    }
}

fn format_cell(cell: Option<&Cell>, unit: Unit) -> String {
    match cell {
        None => "–".to_owned(),
        Some(Cell::NotApplicable) => "n/a".to_owned(),
        Some(Cell::Failed(reason)) => format!("failed: {reason}"),
        Some(Cell::Value(v, note)) => {
            let text = format_value(*v, unit);
            match note {
                Some(note) => format!("{text} ({note})"),
                None => text,
            }
        }
    }
}

fn ratio(row: &Row, of: Kind, to: Kind) -> Option<f64> {
    Some(row.value(of)? / row.value(to)?)
}

fn format_ratio(r: Option<f64>) -> String {
    match r {
        Some(r) if r.is_finite() && r > 0.0 => format!("{r:.2}×"),
        // One side never delivered everything: no ratio to give.
        _ => "–".to_owned(),
    }
}

fn print_table(settings: &Settings, rows: &[Row], skipped: &[String]) -> String {
    let mut out = String::new();
    let columns: Vec<Kind> = Kind::ALL.into_iter().filter(|k| settings.serves(*k)).collect();
    out.push_str("| scenario | ");
    for kind in &columns {
        out.push_str(kind.column());
        out.push_str(" | ");
    }
    out.push_str("crate/axum | crate/ceiling | crate/Nchan |\n|---|");
    for _ in 0..columns.len() + 3 {
        out.push_str("---|");
    }
    out.push('\n');
    for row in rows {
        out.push_str(&format!("| {} | ", row.metric));
        for kind in &columns {
            let cell = row.cells.iter().find(|(k, _)| k == kind).map(|(_, c)| c);
            out.push_str(&format_cell(cell, row.unit));
            out.push_str(" | ");
        }
        for peer in [Kind::Axum, Kind::Ceiling, Kind::Nchan] {
            out.push_str(&format_ratio(ratio(row, Kind::Crate, peer)));
            out.push_str(" | ");
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
    }
    for note in skipped {
        out.push_str(&format!("\n{note}"));
    }
    out
}

/// "Well under 1 % of a core": half of it, so that a server that merely scrapes under 1 %
/// is not counted as meeting the target.
const WELL_UNDER_ONE_PERCENT: f64 = 0.5;

/// The targets of the README, judged on the ratios of this run, for both ways of serving
/// this crate.
fn judge(rows: &[Row]) -> String {
    let find = |prefix: &str| rows.iter().find(|row| row.metric.starts_with(prefix));
    let mut out = String::new();
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured",
    };
    for kind in [Kind::Crate, Kind::CrateH1, Kind::CrateServer] {
        out.push_str(&format!("targets for {}:\n", kind.column()));
        if let Some(row) = find("fan-out deliveries") {
            let axum = ratio(row, kind, Kind::Axum);
            let ceiling = ratio(row, kind, Kind::Ceiling);
            out.push_str(&format!(
                "  fan-out ≥ 3× axum: {} ({}); ≥ 0.7× ceiling: {} ({})\n",
                format_ratio(axum),
                verdict(axum.map(|r| r >= 3.0)),
                format_ratio(ceiling),
                verdict(ceiling.map(|r| r >= 0.7)),
            ));
        }
        if let Some(row) = find("latency p99") {
            let r = ratio(row, kind, Kind::Axum);
            out.push_str(&format!(
                "  latency p99 ≤ axum's: {} ({})\n",
                format_ratio(r),
                verdict(r.map(|r| r <= 1.0))
            ));
        }
        if let Some(row) = find("idle memory") {
            let own = row.value(kind);
            let r = ratio(row, kind, Kind::Axum);
            out.push_str(&format!(
                "  idle memory ≤ 8 KiB/connection: {} ({}); ≤ 0.5× axum: {} ({})\n",
                own.map_or("–".to_owned(), |v| format_value(v, Unit::KiB)),
                verdict(own.map(|v| v <= 8.0)),
                format_ratio(r),
                verdict(r.map(|r| r <= 0.5)),
            ));
        }
        if let Some(row) = find("idle CPU") {
            let own = row.value(kind);
            out.push_str(&format!(
                "  idle cost well under 1 % of a core (≤ 0.5 %): {} ({})\n",
                own.map_or("–".to_owned(), |v| format_value(v, Unit::Percent)),
                verdict(own.map(|v| v <= WELL_UNDER_ONE_PERCENT)),
            ));
        }
        if let Some(row) = find("long poll deliveries") {
            let r = ratio(row, kind, Kind::Nchan);
            out.push_str(&format!(
                "  long poll ≥ Nchan's deliveries/s: {} ({})\n",
                format_ratio(r),
                verdict(r.map(|r| r >= 1.0))
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == "--hold") {
        hold(&args[at + 1..]);
    }
    if let Some(at) = args.iter().position(|arg| arg == "--serve") {
        let kind = args.get(at + 1).map(String::as_str).unwrap_or("");
        let port = args.get(at + 2).and_then(|p| p.parse().ok()).unwrap_or(0);
        servers::serve(kind, port);
    }
    let settings = match Settings::from_args() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("compare: {error}");
            std::process::exit(2);
        }
    };
    let mode = if settings.smoke { "smoke run" } else { "full run" };
    println!("tower-eventstream compare ({mode}) on {}", procfs::machine());
    // Nothing here may run unbounded: past this limit, stop every server and give up.
    let limit = Duration::from_secs(if settings.smoke { 300 } else { 900 });
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("compare: still running after {limit:?}; stopping the servers and giving up");
        for pid in CHILDREN.lock().unwrap().iter() {
            // SAFETY: kill only sends a signal, to a process this program started.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
        std::process::exit(3);
    });
    // The micro-benchmark first, on a quiet machine, outside the load generator's runtime.
    let encoded = settings.runs("encode").then(|| {
        println!("encoding micro-benchmark");
        encode::run(settings.smoke)
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the load generator's runtime");
    let failed = runtime.block_on(run(&settings, encoded));
    std::process::exit(i32::from(failed));
}

/// Runs every scenario; true when something failed that a smoke run must not hide.
async fn run(s: &Settings, encoded: Option<encode::Encoded>) -> bool {
    let started = Instant::now();
    load::now_us();
    let nofile = procfs::raise_fd_limit();
    let needed = s.fanout_subscribers.max(s.idle_connections) as u64 + 100;
    if nofile < needed {
        eprintln!(
            "compare: the file limit is {nofile}, {needed} are needed; raise the hard limit (ulimit -Hn)"
        );
        return true;
    }
    let mode = if s.smoke { "smoke run" } else { "full run" };
    let mut skipped = Vec::new();
    let nchan_available = match nchan::find() {
        Ok(_) => true,
        Err(reason) => {
            let note = format!("Nchan skipped: {reason}.");
            println!("{note}");
            skipped.push(note);
            false
        }
    };
    let kinds: Vec<Kind> = s
        .servers
        .iter()
        .copied()
        .filter(|&k| k != Kind::Nchan || nchan_available)
        .collect();
    let failed = std::cell::Cell::new(false);
    let mut rows = Vec::new();

    let report = |row: &mut Row, kind: Kind, result: Result<Cell, String>| {
        let cell = result.unwrap_or_else(|error| {
            eprintln!("  {}: {}: {error}", kind.name(), row.metric);
            failed.set(true);
            Cell::Failed(error.chars().take(60).collect())
        });
        println!(
            "  {:<9} {:<34} {}",
            kind.name(),
            row.metric,
            format_cell(Some(&cell), row.unit)
        );
        row.set(kind, cell);
    };

    if let Some(encoded) = encoded {
        let mut direct = Row::new("encode: build + bytes (events/s)", Unit::PerSecond);
        let mut body = Row::new("encode: through the SSE body (events/s)", Unit::PerSecond);
        for kind in &kinds {
            let (d, b) = match kind {
                Kind::Crate | Kind::CrateH1 | Kind::CrateServer => (encoded.crate_direct, encoded.crate_body),
                Kind::Axum => (encoded.axum_body, encoded.axum_body),
                _ => (f64::NAN, f64::NAN),
            };
            let cell = |v: f64| {
                if v.is_nan() {
                    Cell::NotApplicable
                } else {
                    Cell::Value(v, None)
                }
            };
            report(&mut direct, *kind, Ok(cell(d)));
            report(&mut body, *kind, Ok(cell(b)));
        }
        rows.push(direct);
        rows.push(body);
    }

    let scenario_rows = |name: &str, metrics: &[(&str, Unit)]| -> Vec<Row> {
        if !s.runs(name) {
            return Vec::new();
        }
        metrics
            .iter()
            .map(|(metric, unit)| Row::new(*metric, *unit))
            .collect()
    };
    let fanout_label = format!(
        "fan-out deliveries/s ({} subs × {} events)",
        s.fanout_subscribers, s.fanout_events
    );
    let mut fanout_rows = scenario_rows(
        "fanout",
        &[
            (&fanout_label, Unit::PerSecond),
            ("fan-out server CPU per delivery", Unit::Micros),
        ],
    );
    let latency_p50 = format!(
        "latency p50 ({} subs, {}/s)",
        s.latency_subscribers, s.latency_rate
    );
    let latency_p99 = format!(
        "latency p99 ({} subs, {}/s)",
        s.latency_subscribers, s.latency_rate
    );
    let mut latency_rows = scenario_rows(
        "latency",
        &[(&latency_p50, Unit::Millis), (&latency_p99, Unit::Millis)],
    );
    let idle_memory = format!("idle memory per connection ({} open)", s.idle_connections);
    let idle_cpu = format!("idle CPU over {} s, % of a core", s.idle_secs);
    let mut idle_rows = scenario_rows("idle", &[(&idle_memory, Unit::KiB), (&idle_cpu, Unit::Percent)]);
    let poll_rate = format!(
        "long poll deliveries/s ({} clients, {}/s)",
        s.poll_clients, s.poll_rate
    );
    let mut poll_rows = scenario_rows(
        "longpoll",
        &[(&poll_rate, Unit::PerSecond), ("long poll p99", Unit::Millis)],
    );

    let incomplete = |complete: bool| (!complete).then_some("incomplete");
    // Other work on the machine comes and goes: fan-out and latency run `rounds` times,
    // the servers taking turns, and each server keeps its best round.
    let mut best_fanout: Vec<(Kind, FanOut)> = Vec::new();
    let mut best_latency: Vec<(Kind, Latency)> = Vec::new();
    for scenario in ["fanout", "latency", "longpoll"] {
        if !s.runs(scenario) {
            continue;
        }
        let rounds = if scenario == "longpoll" { 1 } else { s.rounds };
        for round in 1..=rounds {
            for &kind in &kinds {
                let rows = match scenario {
                    "fanout" => &mut fanout_rows,
                    "latency" => &mut latency_rows,
                    _ => &mut poll_rows,
                };
                if scenario == "longpoll" && kind.long_poll().is_none() {
                    rows.iter_mut().for_each(|row| row.set(kind, Cell::NotApplicable));
                    continue;
                }
                if rows.iter().any(|row| {
                    matches!(
                        row.cells.iter().find(|(k, _)| *k == kind),
                        Some((_, Cell::Failed(_)))
                    )
                }) {
                    continue;
                }
                // A server that could not finish a round in time is not run again.
                if (scenario == "fanout" && best_fanout.iter().any(|(k, r)| *k == kind && !r.complete))
                    || (scenario == "latency" && best_latency.iter().any(|(k, r)| *k == kind && !r.complete))
                {
                    continue;
                }
                println!(
                    "{scenario} / {} (round {round} of {rounds}, {:.0} s into the run)",
                    kind.name(),
                    started.elapsed().as_secs_f64()
                );
                let server = match Server::start(kind, nofile) {
                    Ok(server) => server,
                    Err(error) => {
                        rows.iter_mut()
                            .for_each(|row| report(row, kind, Err(error.clone())));
                        continue;
                    }
                };
                match scenario {
                    "fanout" => match fan_out(&server, s).await {
                        Ok(r) => {
                            println!(
                                "  {:<9} {:.0} k deliveries/s, {:.2} µs server CPU per delivery{}",
                                kind.name(),
                                r.deliveries_per_sec / 1e3,
                                r.cpu_per_delivery_us,
                                if r.complete { "" } else { " (incomplete)" }
                            );
                            failed.set(failed.get() || (s.smoke && !r.complete));
                            match best_fanout.iter_mut().find(|(k, _)| *k == kind) {
                                Some((_, best)) if best.deliveries_per_sec >= r.deliveries_per_sec => {}
                                Some((_, best)) => *best = r,
                                None => best_fanout.push((kind, r)),
                            }
                        }
                        Err(e) => rows.iter_mut().for_each(|row| report(row, kind, Err(e.clone()))),
                    },
                    "latency" => match latency(&server, s).await {
                        Ok(r) => {
                            println!(
                                "  {:<9} p50 {:.2} ms, p99 {:.2} ms{}",
                                kind.name(),
                                r.p50_ms,
                                r.p99_ms,
                                if r.complete { "" } else { " (incomplete)" }
                            );
                            failed.set(failed.get() || (s.smoke && !r.complete));
                            match best_latency.iter_mut().find(|(k, _)| *k == kind) {
                                Some((_, best)) if best.p99_ms <= r.p99_ms => {}
                                Some((_, best)) => *best = r,
                                None => best_latency.push((kind, r)),
                            }
                        }
                        Err(e) => rows.iter_mut().for_each(|row| report(row, kind, Err(e.clone()))),
                    },
                    _ => match long_poll(&server, s).await {
                        Ok(r) => {
                            let note = incomplete(r.complete);
                            report(
                                &mut rows[0],
                                kind,
                                Ok(Cell::Value(r.deliveries_per_sec, note.map(String::from))),
                            );
                            report(
                                &mut rows[1],
                                kind,
                                Ok(Cell::Value(r.p99_ms, note.map(String::from))),
                            );
                        }
                        Err(e) => rows.iter_mut().for_each(|row| report(row, kind, Err(e.clone()))),
                    },
                }
                server.stop();
                // Let the closed connections settle between servers.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    for (kind, r) in best_fanout {
        let note = incomplete(r.complete);
        report(
            &mut fanout_rows[0],
            kind,
            Ok(Cell::Value(r.deliveries_per_sec, note.map(String::from))),
        );
        report(
            &mut fanout_rows[1],
            kind,
            Ok(Cell::Value(r.cpu_per_delivery_us, note.map(String::from))),
        );
    }
    for (kind, r) in best_latency {
        let note = incomplete(r.complete);
        report(
            &mut latency_rows[0],
            kind,
            Ok(Cell::Value(r.p50_ms, note.map(String::from))),
        );
        report(
            &mut latency_rows[1],
            kind,
            Ok(Cell::Value(r.p99_ms, note.map(String::from))),
        );
    }
    if s.runs("idle") {
        println!(
            "idle / every server at once, {} connections each ({:.0} s into the run)",
            s.idle_connections,
            started.elapsed().as_secs_f64()
        );
        let mut servers = Vec::new();
        for &kind in &kinds {
            match Server::start(kind, nofile) {
                Ok(server) => servers.push(server),
                Err(error) => idle_rows
                    .iter_mut()
                    .for_each(|row| report(row, kind, Err(error.clone()))),
            }
        }
        for (kind, result) in idle_all(&servers, s).await {
            match result {
                Ok(r) => {
                    report(
                        &mut idle_rows[0],
                        kind,
                        Ok(Cell::Value(r.kib_per_connection, None)),
                    );
                    report(
                        &mut idle_rows[1],
                        kind,
                        Ok(Cell::Value(
                            r.cpu_percent,
                            Some(format!("kernel {:.2} %", r.system_cpu_percent)),
                        )),
                    );
                }
                Err(e) => idle_rows
                    .iter_mut()
                    .for_each(|row| report(row, kind, Err(e.clone()))),
            }
        }
        servers.into_iter().for_each(Server::stop);
    }
    rows.extend(fanout_rows);
    rows.extend(latency_rows);
    rows.extend(idle_rows);
    rows.extend(poll_rows);

    println!();
    println!(
        "tower-eventstream compare ({mode}), {}, {:.0} s",
        procfs::machine(),
        started.elapsed().as_secs_f64()
    );
    println!("ratios are crate (axum::serve) ÷ peer; for latency, memory and CPU lower is better.\n");
    println!("{}", print_table(s, &rows, &skipped));
    println!();
    if s.smoke {
        println!("(a smoke run: too small to judge the targets; run without --smoke)");
    } else {
        print!("{}", judge(&rows));
    }
    if failed.get() {
        eprintln!("compare: some scenarios failed (see above)");
    }
    failed.get()
}
