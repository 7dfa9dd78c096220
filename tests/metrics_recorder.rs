//! The `metrics` feature seen from an exporter: a recorder installed in this process reads
//! the numbers while real SSE streams and long polls are served over TCP on 127.0.0.1.
//!
//! `metrics` has one global recorder per process, and the server runs on other threads than
//! the test, so the recorder is installed once per binary; everything is asserted in one
//! test function, as differences from what the recorder held before each step.
//! `describe_metrics` is checked apart, with a recorder local to its test's thread.

mod support;

use std::collections::{BTreeSet, HashMap};
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

/// A description: the kind (`counter`, `gauge`, `histogram`), the name, the unit, the help.
type Description = (&'static str, String, Option<Unit>, String);

/// What [`describe_metrics`](tower_eventstream::describe_metrics) tells a recorder: each
/// description, each registration (`kind name{labels}`) and each change made to a value.
#[derive(Default)]
struct Told {
    described: Mutex<Vec<Description>>,
    registered: Mutex<Vec<String>>,
    changes: Arc<Mutex<Vec<String>>>,
}

/// A handle that writes down what is done to it.
struct Noted(Arc<Mutex<Vec<String>>>);

impl Noted {
    fn note(&self, change: String) {
        self.0.lock().unwrap().push(change);
    }
}

impl CounterFn for Noted {
    fn increment(&self, value: u64) {
        self.note(format!("counter increment {value}"));
    }

    fn absolute(&self, value: u64) {
        self.note(format!("counter absolute {value}"));
    }
}

impl GaugeFn for Noted {
    fn increment(&self, value: f64) {
        self.note(format!("gauge increment {value}"));
    }

    fn decrement(&self, value: f64) {
        self.note(format!("gauge decrement {value}"));
    }

    fn set(&self, value: f64) {
        self.note(format!("gauge set {value}"));
    }
}

impl HistogramFn for Noted {
    fn record(&self, value: f64) {
        self.note(format!("histogram record {value}"));
    }
}

impl Told {
    fn describe(&self, kind: &'static str, name: KeyName, unit: Option<Unit>, help: SharedString) {
        let entry = (kind, name.as_str().to_owned(), unit, help.to_string());
        self.described.lock().unwrap().push(entry);
    }

    fn register(&self, kind: &str, key: &Key) -> Arc<Noted> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let registration = format!("{kind} {}{{{}}}", key.name(), labels.join(","));
        self.registered.lock().unwrap().push(registration);
        Arc::new(Noted(Arc::clone(&self.changes)))
    }
}

impl Recorder for Told {
    fn describe_counter(&self, name: KeyName, unit: Option<Unit>, help: SharedString) {
        self.describe("counter", name, unit, help);
    }

    fn describe_gauge(&self, name: KeyName, unit: Option<Unit>, help: SharedString) {
        self.describe("gauge", name, unit, help);
    }

    fn describe_histogram(&self, name: KeyName, unit: Option<Unit>, help: SharedString) {
        self.describe("histogram", name, unit, help);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.register("counter", key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.register("gauge", key))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.register("histogram", key))
    }
}

/// Every metric name spelled in `source` (a string literal `"eventstream_…"`).
fn names_in(source: &str) -> BTreeSet<String> {
    source
        .split("\"eventstream_")
        .skip(1)
        .map(|rest| {
            let end = rest.find('"').expect("a closed string literal");
            format!("eventstream_{}", &rest[..end])
        })
        .collect()
}

/// `describe_metrics` describes every series the crate emits (each name spelled in
/// `src/measure.rs`, the only place that counts), with a unit and a help line, as the kind it
/// is registered as; registers each, every fixed label value, without changing a value; and
/// each is in the README's table with that kind. A series added without a description fails
/// here.
#[test]
fn every_series_is_described_and_registered_at_zero() {
    // Counting goes through `src/measure.rs` alone: nothing else names the facade.
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut folders = vec![src.clone()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("src/ is readable") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && path != src.join("measure.rs") {
                let text = std::fs::read_to_string(&path).expect("a source file");
                for facade in ["metrics::", "counter!", "gauge!", "histogram!"] {
                    assert!(
                        !text.contains(facade),
                        "{} names `{facade}`: count through src/measure.rs",
                        path.display()
                    );
                }
            }
        }
    }
    let emitted = names_in(include_str!("../src/measure.rs"));
    assert!(emitted.len() >= 9, "{emitted:?}");

    let told = Told::default();
    metrics::with_local_recorder(&told, tower_eventstream::describe_metrics);
    let described = told.described.into_inner().unwrap();
    let registered = told.registered.into_inner().unwrap();
    let changes = told.changes.lock().unwrap().clone();

    let described_names: BTreeSet<String> = described.iter().map(|(_, name, ..)| name.clone()).collect();
    assert_eq!(
        described_names, emitted,
        "described vs. spelled in src/measure.rs"
    );
    assert_eq!(
        described.len(),
        emitted.len(),
        "each described once: {described:?}"
    );
    let readme = include_str!("../README.md");
    for (kind, name, unit, help) in &described {
        assert!(unit.is_some(), "{name} has no unit");
        assert!(
            help.len() > 40 && !help.contains('\n'),
            "{name}'s help is not one useful line: {help:?}"
        );
        assert!(
            registered
                .iter()
                .any(|r| r.starts_with(&format!("{kind} {name}{{"))),
            "{name} is described as a {kind} but not registered as one: {registered:?}"
        );
        assert!(
            readme.contains(&format!("| `{name}` | {kind} |")),
            "{name} is not in the README's table as a {kind}"
        );
    }

    // Every fixed label value, and no topic: the README's values and the transports.
    for expected in [
        "gauge eventstream_subscriptions{transport=sse}",
        "gauge eventstream_subscriptions{transport=long_poll}",
        "gauge eventstream_topics{}",
        "counter eventstream_events_appended_total{}",
        "counter eventstream_events_delivered_total{transport=long_poll}",
        "counter eventstream_bytes_written_total{transport=sse}",
        "counter eventstream_resets_total{cause=trimmed}",
        "counter eventstream_resets_total{cause=backend_lost}",
        "counter eventstream_long_polls_total{outcome=client_left}",
        "counter eventstream_refusals_total{reason=backend_unavailable}",
        "histogram eventstream_append_to_write_seconds{}",
    ] {
        assert!(
            registered.iter().any(|r| r == expected),
            "{expected} in {registered:?}"
        );
    }
    let count = |prefix: &str| registered.iter().filter(|r| r.starts_with(prefix)).count();
    assert_eq!(count("counter eventstream_resets_total{cause="), 5);
    assert_eq!(count("counter eventstream_long_polls_total{outcome="), 4);
    assert_eq!(count("counter eventstream_refusals_total{reason="), 4);
    assert_eq!(count("gauge eventstream_subscriptions{transport="), 2);
    assert!(!registered.iter().any(|r| r.contains("topic=")), "{registered:?}");

    // Registered by adding zero: a late call changes no value already counted.
    assert!(
        changes
            .iter()
            .all(|c| c == "counter increment 0" || c == "gauge increment 0"),
        "{changes:?}"
    );
}
