//! The chat example's `GET /metrics` scraped over real TCP while clients come and go: the
//! subscription gauges follow connections opening and closing, the counters follow
//! publishing, a reset is counted with its cause and a refusal with its reason; and the
//! page's live panel (`GET /api/stats`) reports the same readers.
//!
//! The `metrics` facade has one recorder per process: this binary installs a Prometheus
//! recorder once and runs its checks in one test, each judged on the change it makes.

mod support;

#[path = "../examples/chat/app.rs"]
mod app;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower_eventstream::{Event, MemoryLog, StreamConfig};

use support::client::{get, long_poll, poll_cursor, post_message};
use support::reader::SseReader;
use support::server::{Serving, TestServer};
use support::LIMIT;

fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .expect("the only recorder of this test binary")
        })
        .clone()
}

/// The scraped value of the series `name` exactly as written (with its labels), 0 if absent.
async fn scrape(addr: SocketAddr, series: &str) -> f64 {
    let answer = get(addr, "/metrics").await;
    assert_eq!(answer.status, 200, "/metrics: {}", answer.text());
    assert!(answer
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain")));
    value_of(&answer.text(), series)
}

fn value_of(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().expect("a number"))
        })
        .unwrap_or(0.0)
}

/// Scrapes until `series` reads `expected`, failing after [`LIMIT`] with the last reading.
async fn scrape_until(addr: SocketAddr, series: &str, expected: f64) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let value = scrape(addr, series).await;
        if value == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {value}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const SSE_OPEN: &str = "eventstream_subscriptions{transport=\"sse\"}";
const APPENDED: &str = "eventstream_events_appended_total";
const DELIVERED_SSE: &str = "eventstream_events_delivered_total{transport=\"sse\"}";
const RESET_OTHER_EPOCH: &str = "eventstream_resets_total{cause=\"other_epoch\"}";
const REFUSED_BAD_CURSOR: &str = "eventstream_refusals_total{reason=\"bad_cursor\"}";
const POLLS_TIMED_OUT: &str = "eventstream_long_polls_total{outcome=\"timed_out\"}";
const POLLS_WITH_EVENTS: &str = "eventstream_long_polls_total{outcome=\"events\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_connections_publishing_resets_and_refusals() {
    let handle = recorder();
    let log = MemoryLog::new();
    let router = app::router(app::memory_rooms(&log), StreamConfig::default()).merge(app::metrics(handle));
    let server = TestServer::start(Serving::Axum, router).await;
    let addr = server.addr;

    // A stream opens and closes: the gauge goes up, then back.
    scrape_until(addr, SSE_OPEN, 0.0).await;
    let mut reader = SseReader::connect(addr, "/api/events", None).await;
    reader.read_opening().await;
    scrape_until(addr, SSE_OPEN, 1.0).await;

    // Publishing moves the appended and delivered counters.
    let (appended, delivered) = (scrape(addr, APPENDED).await, scrape(addr, DELIVERED_SSE).await);
    assert_eq!(post_message(addr, "counted").await.status, 201);
    reader.read_until("counted").await;
    scrape_until(addr, APPENDED, appended + 1.0).await;
    scrape_until(addr, DELIVERED_SSE, delivered + 1.0).await;
    drop(reader);
    scrape_until(addr, SSE_OPEN, 0.0).await;

    // A cursor from another log's epoch is a reset, counted with its cause.
    let foreign = MemoryLog::new().push(Event::new("elsewhere")).unwrap();
    let foreign_id = foreign.id().expect("an id").as_str().to_owned();
    let resets = scrape(addr, RESET_OTHER_EPOCH).await;
    let (_, answer) = long_poll(addr, &format!("/api/events?lastEventId={foreign_id}&timeout=0")).await;
    assert_eq!(answer["reset"], true, "{answer}");
    scrape_until(addr, RESET_OTHER_EPOCH, resets + 1.0).await;

    // A cursor this log could not have issued is refused, counted with its reason.
    let position = log.position().as_str().to_owned();
    let (epoch, _) = position.split_once('-').expect("<epoch>-<sequence>");
    let refused = scrape(addr, REFUSED_BAD_CURSOR).await;
    let answer = get(addr, &format!("/api/events?lastEventId={epoch}-999999&timeout=0")).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    scrape_until(addr, REFUSED_BAD_CURSOR, refused + 1.0).await;

    // Long-poll outcomes: one that times out, one answered with events.
    let (timed_out, with_events) = (
        scrape(addr, POLLS_TIMED_OUT).await,
        scrape(addr, POLLS_WITH_EVENTS).await,
    );
    let (_, empty) = long_poll(addr, "/api/events?timeout=50").await;
    let cursor = poll_cursor(&empty);
    scrape_until(addr, POLLS_TIMED_OUT, timed_out + 1.0).await;
    assert_eq!(post_message(addr, "for the poll").await.status, 201);
    let (_, answered) = long_poll(addr, &format!("/api/events?lastEventId={cursor}&timeout=5000")).await;
    assert_eq!(answered["events"][0]["data"], "for the poll", "{answered}");
    scrape_until(addr, POLLS_WITH_EVENTS, with_events + 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_panel_reports_the_connected_readers() {
    let log = MemoryLog::new();
    let router = app::router(app::memory_rooms(&log), StreamConfig::default());
    let server = TestServer::start(Serving::Axum, router).await;
    let addr = server.addr;

    let mut room = SseReader::connect(addr, "/api/rooms/kitchen/events", None).await;
    room.read_opening().await;
    // The page asks once a second with a short poll; the first answer already counts the
    // reader and the room (the figures of the moment, not zeros).
    let (_, answer) = long_poll(addr, "/api/stats?timeout=0").await;
    let figures = answer["events"]
        .as_array()
        .and_then(|events| events.iter().rev().find(|e| e["event"] == "stats"))
        .and_then(|e| e["data"].as_str())
        .unwrap_or_else(|| panic!("no stats event in {answer}"))
        .to_owned();
    // Two rooms: the pinned lobby and the kitchen.
    assert!(figures.contains("\"readers\":1,\"rooms\":2,"), "{figures}");
    // A stream works too.
    let mut panel = SseReader::connect(addr, "/api/stats", None).await;
    let block = panel.read_until("event: stats").await + &panel.read_until("\n\n").await;
    assert!(block.contains("\"readers\":1"), "{block}");
}
