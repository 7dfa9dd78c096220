//! The chat example's `GET /metrics` scraped over real TCP while clients come and go: the
//! subscription gauges follow connections opening and closing, the counters follow
//! publishing, a reset is counted with its cause and a refusal with its reason; and the
//! page's live panel (`GET /api/stats`) reports the same readers.
//!
//! A fresh instance's first scrape already lists every series of the README's "Operating it",
//! described (`# HELP`, `# TYPE`) and at zero.
//!
//! The `metrics` facade has one recorder per process: this binary installs the chat's
//! Prometheus recorder once and runs its checks in one test, each judged on the change it
//! makes; the tests take turns, so that one's traffic is not counted in the other's figures.

mod support;

#[path = "../examples/chat/app.rs"]
mod app;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use tower_eventstream::{Event, MemoryLog, StreamConfig, Topics};

use support::client::{get, long_poll, poll_cursor, post_message};
use support::reader::SseReader;
use support::server::{Serving, TestServer};
use support::LIMIT;

/// The chat's recorder, installed as its `main` does (the crate's series described to it).
fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| app::install_metrics().expect("the only recorder of this test binary"))
        .clone()
}

/// Held by each test for its whole run: the recorder counts every test's requests.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    sample(text, series).unwrap_or(0.0)
}

/// The value of the series `name{labels}` if `text` has it.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().expect("a number"))
        })
}

/// One row of the README's table of metrics ("Operating it").
struct Documented {
    name: String,
    /// `counter`, `gauge` or `histogram`.
    kind: String,
    /// Each series as Prometheus writes it, `name{key="value"}` (or `name` alone).
    series: Vec<String>,
}

/// The README's table of metrics: a label listed without values (`transport`) takes those
/// of the row above that lists them.
fn documented() -> Vec<Documented> {
    let mut values_of: HashMap<String, Vec<String>> = HashMap::new();
    let rows = include_str!("../README.md")
        .lines()
        .filter(|line| line.starts_with("| `eventstream_"));
    rows.map(|row| {
        let row = row.replace("\\|", "\u{a6}");
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_owned();
        let (key, values) = match cells[3].split_once('=') {
            Some((key, values)) => {
                let key = key.trim().trim_matches('`').to_owned();
                let values: Vec<String> = values
                    .split('\u{a6}')
                    .map(|value| value.trim().trim_matches('`').to_owned())
                    .collect();
                values_of.insert(key.clone(), values.clone());
                (key, values)
            }
            None if cells[3].is_empty() => (String::new(), Vec::new()),
            None => {
                let key = cells[3].trim_matches('`').to_owned();
                let values = values_of
                    .get(&key)
                    .unwrap_or_else(|| panic!("the values of `{key}`"));
                (key.clone(), values.clone())
            }
        };
        let series = if values.is_empty() {
            vec![name.clone()]
        } else {
            values
                .iter()
                .map(|value| format!("{name}{{{key}=\"{value}\"}}"))
                .collect()
        };
        Documented {
            name,
            kind: cells[2].to_owned(),
            series,
        }
    })
    .collect()
}

/// A fresh chat, as `main` starts it, scraped before any other request: every series of the
/// README, with its help and type lines, each fixed label value at zero, and no other.
async fn first_scrape_lists_every_series_at_zero(handle: PrometheusHandle) {
    let rooms = Topics::new(MemoryLog::builder());
    let router = app::router(rooms, app::config()).merge(app::metrics(handle));
    let server = TestServer::start(Serving::Axum, router).await;
    let answer = get(server.addr, "/metrics").await;
    assert_eq!(answer.status, 200, "/metrics: {}", answer.text());
    let text = answer.text();

    let documented = documented();
    let listed: BTreeSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE eventstream_"))
        .map(|line| line.split_once(' ').map_or(line, |(name, _)| name))
        .collect();
    let named: BTreeSet<&str> = documented
        .iter()
        .map(|d| d.name.trim_start_matches("eventstream_"))
        .collect();
    assert!(named.len() >= 9, "the README's table: {named:?}");
    assert_eq!(listed, named, "the first scrape vs. the README:\n{text}");
    for Documented { name, kind, series } in &documented {
        // Prometheus' exporter summarises a histogram as quantiles, a sum and a count.
        let (kind, series) = match kind.as_str() {
            "histogram" => ("summary", vec![format!("{name}_sum"), format!("{name}_count")]),
            kind => (kind, series.clone()),
        };
        let type_line = format!("# TYPE {name} {kind}");
        assert!(
            text.lines().any(|line| line == type_line),
            "{name} is not a {kind}:\n{text}"
        );
        let help = text
            .lines()
            .find_map(|line| line.strip_prefix(&format!("# HELP {name} ")));
        assert!(help.is_some_and(|help| help.len() > 40), "{name}'s help:\n{text}");
        for series in series {
            assert_eq!(sample(&text, &series), Some(0.0), "{series}:\n{text}");
        }
    }
    for line in text.lines().filter(|line| line.starts_with("eventstream_")) {
        assert!(line.ends_with(" 0"), "not at zero: {line}");
    }
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
    let _turn = TURN.lock().await;
    let handle = recorder();
    first_scrape_lists_every_series_at_zero(handle.clone()).await;

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
    let _turn = TURN.lock().await;
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
