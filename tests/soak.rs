//! Soak and leak test: 10 000 SSE connect/disconnect cycles and 10 000 long polls (a third
//! of them aborted mid-wait) against one chat server over real TCP, 64 at a time. Afterwards
//! no subscription is held, the server runtime has no task left over, and the process's
//! resident memory is back within a small bound of where it was after warm-up.
//!
//! The server runs on a runtime of its own, so that its alive-task count (tokio runtime
//! metrics) counts only the server's tasks; the clients run on another.

mod support;

#[path = "../examples/chat/app.rs"]
mod app;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use support::process::{mib, rss_bytes};
use support::raw::{find, read_head, read_response};
use support::{report, wait_until, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tower_eventstream::{Event, MemoryLog, StreamConfig};

const SSE_CYCLES: u64 = 10_000;
const LONG_POLLS: u64 = 10_000;
const WARM_UP: u64 = 500;
const CONCURRENCY: usize = 64;
/// RSS may end this much above its post-warm-up value (allocator slack, not a leak).
const RSS_SLACK: u64 = 20 * 1024 * 1024;
/// The long-poll wait the server allows; aborted polls ask for all of it.
const MAX_WAIT: Duration = Duration::from_secs(10);
/// How often the publisher appends an event while the soak runs.
const TICK: Duration = Duration::from_millis(40);

#[derive(Default)]
struct Counts {
    sse_opened: AtomicU64,
    sse_with_event: AtomicU64,
    sse_resumed: AtomicU64,
    polls_answered: AtomicU64,
    polls_with_events: AtomicU64,
    polls_aborted: AtomicU64,
}

fn server_runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("soak-server")
        .enable_all()
        .build()
        .expect("server runtime")
}

fn client_runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("soak-client")
        .enable_all()
        .build()
        .expect("client runtime")
}

#[test]
fn ten_thousand_sse_cycles_and_long_polls_leave_no_subscription_task_or_memory_behind() {
    let started = Instant::now();
    let server_rt = server_runtime();
    let client_rt = client_runtime();

    let log = MemoryLog::builder().history(256).build();
    let config = StreamConfig::default()
        .max_wait(MAX_WAIT)
        .keep_alive(Duration::from_millis(250));
    let router = app::router(app::memory_rooms(&log), config);
    let listener = server_rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().unwrap();
    let server = server_rt.spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let metrics = server_rt.metrics();
    let idle_tasks = metrics.num_alive_tasks();

    let counts = Arc::new(Counts::default());
    let publishing = Arc::new(AtomicBool::new(true));
    let publisher = {
        let log = log.clone();
        let publishing = Arc::clone(&publishing);
        client_rt.spawn(async move {
            let mut n = 0u64;
            while publishing.load(Ordering::Relaxed) {
                n += 1;
                log.push(Event::new(format!("tick {n}")).with_name("message").unwrap())
                    .unwrap();
                tokio::time::sleep(TICK).await;
            }
        })
    };

    let peak_subscribers = Arc::new(AtomicU64::new(0));
    let sampler = {
        let log = log.clone();
        let peak = Arc::clone(&peak_subscribers);
        let publishing = Arc::clone(&publishing);
        client_rt.spawn(async move {
            while publishing.load(Ordering::Relaxed) {
                peak.fetch_max(log.subscriber_count() as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };

    // Warm-up: the same mix, so allocator pools, hyper's buffers and the ring reach their
    // working size before the baseline is taken.
    client_rt.block_on(run(addr, &log, 0..WARM_UP, 0..WARM_UP, &counts));
    settle(&client_rt, &log, &metrics, idle_tasks, "warm-up");
    let rss_before = rss_bytes();
    let tasks_before = metrics.num_alive_tasks();

    let soak_started = Instant::now();
    client_rt.block_on(run(
        addr,
        &log,
        WARM_UP..WARM_UP + SSE_CYCLES,
        WARM_UP..WARM_UP + LONG_POLLS,
        &counts,
    ));
    let soak_time = soak_started.elapsed();
    publishing.store(false, Ordering::Relaxed);
    client_rt.block_on(async {
        within("the publisher to stop", publisher).await.unwrap();
        within("the sampler to stop", sampler).await.unwrap();
    });

    settle(&client_rt, &log, &metrics, idle_tasks, "the soak");
    let subscribers_after = log.subscriber_count();
    let tasks_after = metrics.num_alive_tasks();
    let rss_after = rss_bytes();

    report(&format!("soak: {SSE_CYCLES} SSE connect/disconnect cycles and {LONG_POLLS} long polls in {soak_time:.1?}, {CONCURRENCY} at a time (after {WARM_UP} + {WARM_UP} warm-up)"));
    report(&format!(
        "soak: SSE streams opened {}, of which read an event before disconnecting {}, resumed with Last-Event-ID {}",
        counts.sse_opened.load(Ordering::Relaxed),
        counts.sse_with_event.load(Ordering::Relaxed),
        counts.sse_resumed.load(Ordering::Relaxed),
    ));
    report(&format!(
        "soak: long polls answered {} (with events {}), aborted mid-wait {}",
        counts.polls_answered.load(Ordering::Relaxed),
        counts.polls_with_events.load(Ordering::Relaxed),
        counts.polls_aborted.load(Ordering::Relaxed),
    ));
    report(&format!(
        "soak: subscriber count: peak while running {}, after {subscribers_after}",
        peak_subscribers.load(Ordering::Relaxed)
    ));
    report(&format!(
        "soak: server runtime alive tasks: idle {idle_tasks}, before {tasks_before}, after {tasks_after}"
    ));
    report(&format!(
        "soak: RSS before {:.1} MiB, after {:.1} MiB ({:+.1} MiB); total test time {:.1?}",
        mib(rss_before),
        mib(rss_after),
        mib(rss_after) - mib(rss_before),
        started.elapsed()
    ));

    let total = WARM_UP + SSE_CYCLES;
    assert_eq!(counts.sse_opened.load(Ordering::Relaxed), total);
    assert_eq!(
        counts.polls_answered.load(Ordering::Relaxed) + counts.polls_aborted.load(Ordering::Relaxed),
        WARM_UP + LONG_POLLS
    );
    assert!(
        counts.polls_aborted.load(Ordering::Relaxed) > LONG_POLLS / 10,
        "enough long polls were aborted mid-wait"
    );
    assert!(counts.sse_with_event.load(Ordering::Relaxed) > SSE_CYCLES / 4);
    assert_eq!(subscribers_after, 0, "every subscription was released");
    assert_eq!(tasks_after, idle_tasks, "no server task is left over");
    assert!(
        rss_after <= rss_before + RSS_SLACK,
        "RSS grew from {:.1} MiB to {:.1} MiB",
        mib(rss_before),
        mib(rss_after)
    );

    server.abort();
    drop(client_rt);
    drop(server_rt);
}

/// Waits (bounded) until the server holds no subscription and has only its idle tasks.
fn settle(
    client_rt: &Runtime,
    log: &MemoryLog,
    metrics: &tokio::runtime::RuntimeMetrics,
    idle: usize,
    after: &str,
) {
    client_rt.block_on(async {
        wait_until(&format!("subscriptions to be released after {after}"), || {
            log.subscriber_count() == 0
        })
        .await;
        wait_until(&format!("server tasks to end after {after}"), || {
            metrics.num_alive_tasks() == idle
        })
        .await;
    });
}

async fn run(
    addr: SocketAddr,
    log: &MemoryLog,
    sse: std::ops::Range<u64>,
    polls: std::ops::Range<u64>,
    counts: &Counts,
) {
    // Interleave both kinds so SSE streams and long polls are open at the same time.
    let jobs = sse
        .map(Job::Sse)
        .zip(polls.map(Job::Poll))
        .flat_map(|(a, b)| [a, b]);
    futures_util::stream::iter(jobs)
        .map(|job| async move {
            tokio::time::timeout(Duration::from_secs(20), job.run(addr, log, counts))
                .await
                .unwrap_or_else(|_| panic!("{job:?} took over 20 s"))
        })
        .buffer_unordered(CONCURRENCY)
        .for_each(|()| async {})
        .await;
}

#[derive(Debug, Clone, Copy)]
enum Job {
    Sse(u64),
    Poll(u64),
}

impl Job {
    async fn run(self, addr: SocketAddr, log: &MemoryLog, counts: &Counts) {
        match self {
            Job::Sse(n) => sse_cycle(n, addr, log, counts).await,
            Job::Poll(n) => poll(n, addr, log, counts).await,
        }
    }
}

/// Opens a stream, reads its opening (and, for half of them, one event), disconnects.
/// Every fourth resumes from a recent position with `Last-Event-ID`.
async fn sse_cycle(n: u64, addr: SocketAddr, log: &MemoryLog, counts: &Counts) {
    let resume = (n % 4 == 0).then(|| log.position());
    let mut stream = connect(addr).await;
    let mut request =
        String::from("GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n");
    if let Some(id) = &resume {
        request.push_str(&format!("Last-Event-ID: {id}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut leftover = Vec::new();
    let head = read_head(&mut stream, &mut leftover).await.expect("SSE head");
    assert_eq!(head.status, 200);
    counts.sse_opened.fetch_add(1, Ordering::Relaxed);
    if resume.is_some() {
        counts.sse_resumed.fetch_add(1, Ordering::Relaxed);
    }
    if n % 2 == 0 {
        // Read until one event's data has arrived (the publisher ticks every `TICK`).
        let mut body = leftover;
        while find(&body, b"data: tick").is_none() {
            let mut buf = [0u8; 4096];
            let read = stream.read(&mut buf).await.expect("read");
            assert!(read > 0, "stream ended early");
            body.extend_from_slice(&buf[..read]);
        }
        counts.sse_with_event.fetch_add(1, Ordering::Relaxed);
    }
    // Dropping the socket is the disconnect.
}

/// A third answer at once (`timeout=0`), a third wait up to 20 ms, a third ask for the full
/// wait and are aborted (the socket closed) 1–10 ms later, unless an event answers first.
async fn poll(n: u64, addr: SocketAddr, log: &MemoryLog, counts: &Counts) {
    let position = log.position();
    let (timeout, abort_after) = match n % 3 {
        0 => (0, None),
        1 => (20, None),
        _ => (
            MAX_WAIT.as_millis() as u64,
            Some(Duration::from_millis(1 + n % 10)),
        ),
    };
    let mut stream = connect(addr).await;
    let request = format!(
        "GET /api/events?lastEventId={position}&timeout={timeout} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    match abort_after {
        Some(after) => {
            // An event may answer the poll first; either way the socket is then closed.
            match tokio::time::timeout(after, read_response(&mut stream)).await {
                Ok(response) => {
                    let response = response.expect("long-poll answer");
                    assert_eq!(response.status, 200);
                    counts.polls_answered.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    counts.polls_aborted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        None => {
            let response = read_response(&mut stream).await.expect("long-poll answer");
            assert_eq!(response.status, 200, "{}", response.text());
            let answer = response.json();
            if !answer["events"].as_array().expect("events").is_empty() {
                counts.polls_with_events.fetch_add(1, Ordering::Relaxed);
            }
            counts.polls_answered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}
