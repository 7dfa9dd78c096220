//! Slow and stuck consumers: a client that stops reading must not grow the server's memory
//! without bound nor slow the other clients.
//!
//! The policy under test: an SSE body is polled only when the connection accepts more
//! (hyper's backpressure), and a subscriber is only a cursor into the log's shared ring. So
//! a stuck reader costs the socket buffers plus at most one gathered frame (about 64 KiB),
//! never a queue of its own; publishing never waits for it; and once the ring has moved past
//! its cursor it receives a `reset` event when it reads again, then the retained events.
//! There is no silent gap: between two events a client receives, either nothing was skipped
//! or a `reset` came in between.

mod support;

#[path = "../examples/chat/app.rs"]
mod app;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::process::{mib, rss_bytes};
use support::reader::SseReader;
use support::server::{Serving, TestServer};
use support::sse::SseItem;
use support::{report, wait_until, within};
use tokio::net::TcpSocket;
use tower_eventstream::{Event, MemoryLog, StreamConfig};

/// Events published while the stuck client does not read.
const EVENTS: u64 = 4_000;
/// Size of each event's data.
const EVENT_BYTES: usize = 16 * 1024;
/// One event every…
const PACE: Duration = Duration::from_millis(1);
const HISTORY: usize = 256;
/// Resident memory may grow this much while `EVENTS × EVENT_BYTES` (62.5 MiB) are published;
/// the ring itself holds `HISTORY × EVENT_BYTES` (4 MiB) of it.
const RSS_BOUND: u64 = 20 * 1024 * 1024;

/// The sequence number of a `MemoryLog` id (`<epoch>-<seq>`).
fn seq_of(id: &str) -> u64 {
    id.rsplit_once('-')
        .and_then(|(_, seq)| seq.parse().ok())
        .unwrap_or_else(|| panic!("not a MemoryLog id: {id:?}"))
}

/// What a reader saw, in order: `Some(seq)` for a message, `None` for a reset (with the
/// position it resumes from).
#[derive(Debug, Default)]
struct Seen {
    items: Vec<Seen1>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Seen1 {
    Message(u64),
    Reset(u64),
}

impl Seen {
    fn record(&mut self, item: SseItem) {
        if let SseItem::Block(block) = item {
            let Some(id) = block.id.as_deref() else { return };
            match (block.event_type(), block.data.is_some()) {
                ("reset", _) => self.items.push(Seen1::Reset(seq_of(id))),
                ("message", true) => self.items.push(Seen1::Message(seq_of(id))),
                _ => {}
            }
        }
    }

    fn resets(&self) -> usize {
        self.items.iter().filter(|i| matches!(i, Seen1::Reset(_))).count()
    }

    fn last_message(&self) -> Option<u64> {
        self.items.iter().rev().find_map(|i| match i {
            Seen1::Message(seq) => Some(*seq),
            Seen1::Reset(_) => None,
        })
    }

    /// Every step is +1, or a reset whose position is exactly before the next message.
    fn assert_no_silent_gap(&self, who: &str, first_expected: u64) {
        let mut expected = first_expected;
        for item in &self.items {
            match *item {
                Seen1::Message(seq) => {
                    assert_eq!(
                        seq, expected,
                        "{who}: message {seq} where {expected} was due: a silent gap"
                    );
                    expected = seq + 1;
                }
                Seen1::Reset(position) => {
                    assert!(position + 1 > expected, "{who}: a reset that skips nothing");
                    expected = position + 1;
                }
            }
        }
    }
}

async fn stuck_socket(addr: SocketAddr) -> tokio::net::TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    // As small as the kernel allows, so the server's writes block early.
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    within("connecting", socket.connect(addr)).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_reader_costs_bounded_memory_does_not_slow_others_and_gets_a_reset_when_it_resumes() {
    let log = MemoryLog::builder().history(HISTORY).build();
    let server = TestServer::start(
        Serving::Axum,
        app::router(app::memory_rooms(&log), StreamConfig::default()),
    )
    .await;
    let addr = server.addr;
    let started = Instant::now();
    let publish = |seq_hint: u64| {
        let micros = started.elapsed().as_micros();
        let mut data = format!("{micros:012} {seq_hint:08} ");
        data.push_str(&"x".repeat(EVENT_BYTES - data.len()));
        log.push(Event::new(data).with_name("message").unwrap()).unwrap()
    };

    // The stuck reader: tiny receive buffer; reads its opening, then nothing for a while.
    let stuck_stream = stuck_socket(addr).await;
    let mut stuck = SseReader::raw_on(stuck_stream, "/api/events", None).await;
    let opening = stuck.next_item().await;
    assert!(opening.is_some());
    // A slow reader: at most 32 KiB every 20 ms (1.6 MiB/s, a tenth of the publishing rate).
    let mut slow = SseReader::raw(addr, "/api/events", None).await;
    // A normal reader.
    let mut normal = SseReader::raw(addr, "/api/events", None).await;
    wait_until("three subscribers", || log.subscriber_count() == 3).await;
    let first_seq = seq_of(log.position().as_str()) + 1;

    // Warm-up outside the measurement: a few events every reader takes.
    for n in 0..8 {
        publish(n);
    }
    let mut stuck_seen = Seen::default();
    let mut normal_seen = Seen::default();
    let mut slow_seen = Seen::default();
    for _ in 0..8 {
        stuck_seen.record(SseItem::Block(stuck.next_event().await));
        normal_seen.record(SseItem::Block(normal.next_event().await));
        slow_seen.record(SseItem::Block(slow.next_event().await));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rss_before = rss_bytes();

    let done = Arc::new(AtomicBool::new(false));
    let peak_rss = Arc::new(AtomicU64::new(rss_before));
    let sampler = {
        let done = Arc::clone(&done);
        let peak = Arc::clone(&peak_rss);
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    // The normal reader measures how long each event took from publishing to arrival.
    let normal_reader = tokio::spawn(async move {
        let mut worst = Duration::ZERO;
        let mut seen = normal_seen;
        let last = first_seq + 8 + EVENTS - 1;
        while seen.last_message() != Some(last) {
            let block = normal.next_event().await;
            let data = block.data.as_deref().unwrap_or_default();
            if let Some(micros) = data.split(' ').next().and_then(|m| m.parse::<u64>().ok()) {
                let latency = started.elapsed().saturating_sub(Duration::from_micros(micros));
                worst = worst.max(latency);
            }
            seen.record(SseItem::Block(block));
        }
        (seen, worst, normal)
    });
    let published_all = Arc::new(AtomicBool::new(false));
    let slow_reader = tokio::spawn({
        let published_all = Arc::clone(&published_all);
        async move {
            let mut bytes = 0usize;
            let stop = Instant::now() + Duration::from_secs(30);
            while Instant::now() < stop {
                let n = slow.read_some(32 * 1024).await;
                assert!(n > 0, "the slow reader's stream ended");
                bytes += n;
                for item in slow.drain_items() {
                    slow_seen.record(item);
                }
                // Overtaken twice, or once if publishing is over: enough to show the pattern.
                if slow_seen.resets() >= 2
                    || (slow_seen.resets() >= 1 && published_all.load(Ordering::Relaxed))
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (slow_seen, bytes, slow)
        }
    });

    let publishing_started = Instant::now();
    let mut ticker = tokio::time::interval(PACE);
    for n in 0..EVENTS {
        ticker.tick().await;
        publish(8 + n);
    }
    let publishing_time = publishing_started.elapsed();
    published_all.store(true, Ordering::Relaxed);
    let last_seq = seq_of(log.position().as_str());

    let (normal_seen, worst_latency, normal) = tokio::time::timeout(Duration::from_secs(20), normal_reader)
        .await
        .expect("the normal reader got every event within 20 s")
        .unwrap();
    let (slow_seen, slow_bytes, slow) = tokio::time::timeout(Duration::from_secs(40), slow_reader)
        .await
        .expect("the slow reader was done within 40 s")
        .unwrap();
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let peak = peak_rss.load(Ordering::Relaxed);
    let subscribers_while_stuck = log.subscriber_count();

    // The stuck reader reads again: what the socket buffers and the one pending frame held,
    // then a reset, then the retained events up to the newest.
    let resumed_at = stuck.received;
    let stuck_resume = tokio::time::timeout(Duration::from_secs(20), async {
        while stuck_seen.last_message() != Some(last_seq) {
            match stuck.next_item().await {
                Some(item) => stuck_seen.record(item),
                None => panic!("the stuck reader's stream ended"),
            }
        }
    });
    stuck_resume
        .await
        .expect("the stuck reader caught up within 20 s");
    let stuck_bytes_after_resume = stuck.received - resumed_at;

    let published_bytes = EVENTS * EVENT_BYTES as u64;
    report(&format!(
        "slow consumer: published {EVENTS} events of {} KiB ({:.1} MiB) in {publishing_time:.1?}, history {HISTORY}",
        EVENT_BYTES / 1024,
        mib(published_bytes)
    ));
    report(&format!(
        "slow consumer: normal reader got {} events, worst publish-to-arrival latency {worst_latency:.1?}, resets {}",
        normal_seen.items.len(),
        normal_seen.resets()
    ));
    report(&format!(
        "slow consumer: slow reader read {:.1} MiB, saw {} events and {} resets",
        mib(slow_bytes as u64),
        slow_seen.items.len() - slow_seen.resets(),
        slow_seen.resets()
    ));
    report(&format!(
        "slow consumer: stuck reader, on resuming, read {:.1} MiB (socket buffers + one frame + the retained {HISTORY} events) with {} reset(s)",
        mib(stuck_bytes_after_resume as u64),
        stuck_seen.resets()
    ));
    report(&format!(
        "slow consumer: RSS before {:.1} MiB, peak {:.1} MiB ({:+.1} MiB)",
        mib(rss_before),
        mib(peak),
        mib(peak) - mib(rss_before)
    ));

    // Others are not slowed: the normal reader got every event, without a reset, promptly.
    assert_eq!(normal_seen.resets(), 0, "the normal reader never fell behind");
    normal_seen.assert_no_silent_gap("normal reader", first_seq);
    assert!(
        worst_latency < Duration::from_secs(1),
        "an event took {worst_latency:?} to reach the normal reader"
    );
    // Memory stays bounded: far less than what was published.
    assert!(
        peak < rss_before + RSS_BOUND,
        "RSS grew by {:.1} MiB while {:.1} MiB were published to a stuck reader",
        mib(peak - rss_before),
        mib(published_bytes)
    );
    assert_eq!(
        subscribers_while_stuck, 3,
        "a stuck reader keeps its place: a cursor, not a queue"
    );
    // The stuck reader: a reset, no silent gap, then the newest events.
    assert!(
        stuck_seen.resets() >= 1,
        "the ring overtook the stuck reader: {:?}",
        &stuck_seen.items[..10.min(stuck_seen.items.len())]
    );
    stuck_seen.assert_no_silent_gap("stuck reader", first_seq);
    assert!(
        (stuck_bytes_after_resume as u64) < published_bytes / 4,
        "the stuck reader was sent {:.1} MiB after resuming: the server queued for it",
        mib(stuck_bytes_after_resume as u64)
    );
    // The slow reader is reset again and again rather than queued for.
    assert!(
        slow_seen.resets() >= 1,
        "the slow reader was overtaken and told so"
    );
    slow_seen.assert_no_silent_gap("slow reader", first_seq);

    drop((stuck, slow, normal));
    wait_until("the subscriptions to be released", || log.subscriber_count() == 0).await;
}
