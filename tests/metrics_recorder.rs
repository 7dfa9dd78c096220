//! The `metrics` feature seen from an exporter: a recorder installed in this process reads
//! the numbers while real SSE streams and long polls are served over TCP on 127.0.0.1.
//!
//! `metrics` has one global recorder per process, and the server runs on other threads than
//! the test, so the recorder is installed once per binary; everything is asserted in one
//! test function, as differences from what the recorder held before each step.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use http::StatusCode;
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tower_eventstream::{Access, Event, EventLogService, MemoryLog, Refusal, Topics, TopicsService};

use support::client::{get, long_poll, poll_cursor, poll_data};
use support::reader::SseReader;
use support::server::{Serving, TestServer};
use support::{wait_until, within};

/// One series: a counter's total, a gauge's value (as `f64` bits), a histogram's samples.
#[derive(Default)]
struct Series {
    counter: AtomicU64,
    gauge: AtomicU64,
    samples: AtomicU64,
}

impl CounterFn for Series {
    fn increment(&self, value: u64) {
        self.counter.fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.counter.fetch_max(value, Ordering::Relaxed);
    }
}

impl GaugeFn for Series {
    fn increment(&self, value: f64) {
        self.change(|now| now + value);
    }

    fn decrement(&self, value: f64) {
        self.change(|now| now - value);
    }

    fn set(&self, value: f64) {
        self.change(|_| value);
    }
}

impl HistogramFn for Series {
    fn record(&self, value: f64) {
        assert!(
            (0.0..60.0).contains(&value),
            "an append-to-write delay of {value} s"
        );
        self.samples.fetch_add(1, Ordering::Relaxed);
    }
}

impl Series {
    fn change(&self, f: impl Fn(f64) -> f64) {
        let _ = self
            .gauge
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some(f(f64::from_bits(bits)).to_bits())
            });
    }
}

/// Every series by `name{label=value,…}` (labels sorted).
#[derive(Default)]
struct Recorded(Mutex<HashMap<String, Arc<Series>>>);

impl Recorded {
    fn series(&self, key: &Key) -> Arc<Series> {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        Arc::clone(self.0.lock().unwrap().entry(name).or_default())
    }

    fn get(&self, name: &str) -> Option<Arc<Series>> {
        self.0.lock().unwrap().get(name).cloned()
    }

    fn counter(&self, name: &str) -> u64 {
        self.get(name).map_or(0, |s| s.counter.load(Ordering::Relaxed))
    }

    fn gauge(&self, name: &str) -> f64 {
        self.get(name)
            .map_or(0.0, |s| f64::from_bits(s.gauge.load(Ordering::Relaxed)))
    }

    fn samples(&self, name: &str) -> u64 {
        self.get(name).map_or(0, |s| s.samples.load(Ordering::Relaxed))
    }
}

struct Installed(&'static Recorded);

impl Recorder for Installed {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.0.series(key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.0.series(key))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.0.series(key))
    }
}

fn recorder() -> &'static Recorded {
    static RECORDED: OnceLock<&'static Recorded> = OnceLock::new();
    RECORDED.get_or_init(|| {
        let recorded: &'static Recorded = Box::leak(Box::default());
        metrics::set_global_recorder(Installed(recorded)).expect("the only recorder of this binary");
        recorded
    })
}

const SSE_OPEN: &str = "eventstream_subscriptions{transport=sse}";
const POLL_OPEN: &str = "eventstream_subscriptions{transport=long_poll}";
const APPENDED: &str = "eventstream_events_appended_total{}";
const DELIVERED_SSE: &str = "eventstream_events_delivered_total{transport=sse}";
const DELIVERED_POLL: &str = "eventstream_events_delivered_total{transport=long_poll}";
const BYTES_SSE: &str = "eventstream_bytes_written_total{transport=sse}";
const DELAY: &str = "eventstream_append_to_write_seconds{}";

fn resets(cause: &str) -> String {
    format!("eventstream_resets_total{{cause={cause}}}")
}

fn refusals(reason: &str) -> String {
    format!("eventstream_refusals_total{{reason={reason}}}")
}

fn polls(outcome: &str) -> String {
    format!("eventstream_long_polls_total{{outcome={outcome}}}")
}

/// The numbers a scrape would show, moving with streams, polls, appends, resets and refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exporter_sees_streams_polls_resets_and_refusals() {
    let m = recorder();
    let log = MemoryLog::builder().history(4).build();
    let rooms = Topics::builder(MemoryLog::builder()).metrics_per_topic().build();
    let rooms_service = TopicsService::new(rooms.clone())
        .key_from_path(1)
        .authorize(|_, room| match room {
            "staff" => Err(Refusal::forbidden("staff only")),
            _ => Ok(Access::allow()),
        });
    let router = Router::new()
        .route_service("/events", EventLogService::new(log.clone()))
        .route_service("/rooms/{room}/events", rooms_service);
    let server = TestServer::start(Serving::Axum, router).await;
    let addr = server.addr;

    // An open stream is counted while it is open.
    let sse_before = m.gauge(SSE_OPEN);
    let mut stream = SseReader::connect(addr, "/events", None).await;
    stream.read_until("event: checkpoint").await;
    wait_until("the stream to be counted", || {
        m.gauge(SSE_OPEN) == sse_before + 1.0
    })
    .await;

    // Appends and deliveries move with publishing.
    let (appended, delivered, bytes, delays) = (
        m.counter(APPENDED),
        m.counter(DELIVERED_SSE),
        m.counter(BYTES_SSE),
        m.samples(DELAY),
    );
    for n in 1..=3 {
        log.push(Event::new(format!("message {n}"))).unwrap();
    }
    stream.read_until("data: message 3").await;
    assert_eq!(m.counter(APPENDED) - appended, 3);
    wait_until("three deliveries", || m.counter(DELIVERED_SSE) - delivered == 3).await;
    assert!(m.counter(BYTES_SSE) > bytes, "body bytes are counted");
    assert!(m.samples(DELAY) > delays, "the append-to-write delay is measured");
    assert_eq!(log.stats().appended, 3);

    // The client leaves: the gauge comes back down.
    drop(stream);
    wait_until("the stream to be uncounted", || m.gauge(SSE_OPEN) == sse_before).await;

    // A cursor from another log instance is a reset with its cause.
    let other_epoch = if log.epoch() == "0badcafe" {
        "0badbeef"
    } else {
        "0badcafe"
    };
    let before = m.counter(&resets("other_epoch"));
    let mut stream = SseReader::connect(addr, "/events", Some(&format!("{other_epoch}-2"))).await;
    stream.read_until("event: reset").await;
    wait_until("the reset to be counted", || {
        m.counter(&resets("other_epoch")) == before + 1
    })
    .await;
    drop(stream);

    // So is a cursor older than the history held (it keeps 4).
    let old = log.push(Event::new("old")).unwrap();
    for n in 0..5 {
        log.push(Event::new(format!("newer {n}"))).unwrap();
    }
    let before = m.counter(&resets("trimmed"));
    let path = format!("/events?lastEventId={}&timeout=0", old.id().unwrap());
    let (_, answer) = long_poll(addr, &path).await;
    assert_eq!(answer["reset"], true, "{answer}");
    assert_eq!(m.counter(&resets("trimmed")), before + 1);
    assert!(log.stats().gaps_reported >= 2);

    // A malformed cursor is refused, and the refusal counted with its reason.
    let before = m.counter(&refusals("bad_cursor"));
    let answer = get(addr, "/events?lastEventId=not-a-cursor&timeout=0").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(m.counter(&refusals("bad_cursor")), before + 1);

    // An authorization hook's refusal too.
    let before = m.counter(&refusals("auth"));
    let answer = get(addr, "/rooms/staff/events?timeout=0").await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(m.counter(&refusals("auth")), before + 1);

    // Long polls: answered with events, timed out, and left by their client.
    let cursor = log.position().as_str().to_owned();
    log.push(Event::new("for the poll")).unwrap();
    let (events_before, delivered_before) = (m.counter(&polls("events")), m.counter(DELIVERED_POLL));
    let (_, answer) = long_poll(addr, &format!("/events?lastEventId={cursor}&timeout=0")).await;
    assert_eq!(poll_data(&answer), ["for the poll"]);
    assert_eq!(m.counter(&polls("events")), events_before + 1);
    assert_eq!(m.counter(DELIVERED_POLL), delivered_before + 1);

    let before = m.counter(&polls("timed_out"));
    let cursor = poll_cursor(&answer);
    let (_, answer) = long_poll(addr, &format!("/events?lastEventId={cursor}&timeout=50")).await;
    assert!(poll_data(&answer).is_empty());
    assert_eq!(m.counter(&polls("timed_out")), before + 1);

    let (polls_open, left) = (m.gauge(POLL_OPEN), m.counter(&polls("client_left")));
    let mut socket = within("connecting", TcpStream::connect(addr))
        .await
        .expect("connect");
    let request =
        format!("GET /events?lastEventId={cursor}&timeout=8000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    socket.write_all(request.as_bytes()).await.expect("request sent");
    wait_until("the poll to wait", || m.gauge(POLL_OPEN) == polls_open + 1.0).await;
    drop(socket);
    wait_until("the poll to end as its client left", || {
        m.counter(&polls("client_left")) == left + 1
    })
    .await;
    assert_eq!(m.gauge(POLL_OPEN), polls_open);

    // Topics: the live-topics gauge, and a topic label the application asked for.
    let topics_before = m.gauge("eventstream_topics{}");
    rooms.append("lobby", Event::new("hello")).await.expect("append");
    assert_eq!(m.gauge("eventstream_topics{}"), topics_before + 1.0);
    let mut stream = SseReader::connect(addr, "/rooms/lobby/events", None).await;
    stream.read_until("event: checkpoint").await;
    let labelled = "eventstream_subscriptions{topic=lobby,transport=sse}";
    wait_until("the labelled stream", || m.gauge(labelled) == 1.0).await;
    assert_eq!(rooms.stats().subscribers, 1);
    drop(stream);
    wait_until("the labelled stream to go", || m.gauge(labelled) == 0.0).await;
    assert_eq!(rooms.evict_idle(Duration::ZERO), 1);
    assert_eq!(m.gauge("eventstream_topics{}"), topics_before);
}
