//! The chat page in real browsers: headless Chromium (the system's `/usr/bin/chromium`, driven
//! by `playwright-core`) and headless Firefox ESR (`/usr/bin/firefox-esr`, driven by
//! `puppeteer-core` over WebDriver BiDi), both from `tests/browser/`, against the chat app
//! served in process on the server each includer names: `tests/browser.rs` runs it on
//! hyper-util, `tests/crate_server.rs` on the crate's own server. Every scenario runs on each
//! engine: its tests end in `_in_chromium` and `_in_firefox`.
//!
//! Each test starts the app on 127.0.0.1:0 and runs `BROWSER=<engine> node
//! tests/browser/<scenario>.mjs <base-url>` through `support::browser`. The scenario drives the
//! page and may ask this side, with a line `@@ …` on its stdout, to cut every connection,
//! publish, or restart the app with a new log; it ends with `RESULT <json>` and exit status 0.
//! This side also records the `Last-Event-ID` of each request to the event route, to prove the
//! browser resumed by itself.
//!
//! Without the engine's browser, node or its package in `tests/browser/node_modules`
//! (`npm ci --prefix tests/browser`), its tests fail when `CI` is set and are skipped, loudly,
//! otherwise.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};
use tower_eventstream::{MemoryLog, StreamConfig};

use crate::app;
use crate::support::browser::{publish_messages, run_scenario, Engine};
use crate::support::seen::{Seen, SeenRequests};
use crate::support::server::{Serving, TestServer};
use crate::support::{report, wait_until};

/// The chat app on a server whose connections can be cut and whose log can be replaced.
struct Room {
    server: TestServer,
    log: Mutex<MemoryLog>,
    history: usize,
    config: StreamConfig,
    seen: SeenRequests,
}

impl Room {
    async fn start(serving: Serving, history: usize, config: StreamConfig) -> Room {
        let log = MemoryLog::builder().history(history).build();
        let seen = SeenRequests::default();
        let router = seen.record(app::router(app::memory_rooms(&log), config.clone()));
        let server = TestServer::start_cuttable(serving, router).await;
        Room {
            server,
            log: Mutex::new(log),
            history,
            config,
            seen,
        }
    }

    fn base(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    fn log(&self) -> MemoryLog {
        self.log.lock().unwrap().clone()
    }

    /// The requests to the lobby's event route so far.
    fn seen(&self) -> Vec<Seen> {
        self.seen.to("/api/rooms/lobby/events")
    }

    fn publish(&self, count: usize, prefix: &str) -> Value {
        publish_messages(&self.log(), count, prefix)
    }

    /// Carries out one `@@` command of a scenario.
    async fn handle(&self, command: &str) -> Result<Value, String> {
        let words: Vec<&str> = command.split_whitespace().collect();
        match words.as_slice() {
            ["cut"] => Ok(json!(self.server.cut_and_settle().await)),
            // Drop every connection, then publish while the clients are away.
            ["cut-publish", count, prefix] => {
                let count: usize = count.parse().map_err(|_| format!("bad count in {command:?}"))?;
                let cut = self.server.cut_and_settle().await;
                if cut == 0 {
                    return Err("no connection to cut".to_owned());
                }
                Ok(self.publish(count, prefix))
            }
            // A restart: a new log (new epoch) behind the same address, every connection
            // dropped, then `count` events published on the new log.
            ["restart", count, prefix] => {
                let count: usize = count.parse().map_err(|_| format!("bad count in {command:?}"))?;
                let log = MemoryLog::builder().history(self.history).build();
                self.server.swap(
                    self.seen
                        .record(app::router(app::memory_rooms(&log), self.config.clone())),
                );
                *self.log.lock().unwrap() = log;
                self.server.cut_and_settle().await;
                Ok(self.publish(count, prefix))
            }
            ["wait-subscribers", count] => {
                let count: usize = count.parse().map_err(|_| format!("bad count in {command:?}"))?;
                let log = self.log();
                wait_until("subscribers", || log.subscriber_count() >= count).await;
                Ok(json!(log.subscriber_count()))
            }
            _ => Err(format!("unknown command {command:?}")),
        }
    }

    /// Runs `tests/browser/<script>` on `engine` against this room, answering its commands.
    async fn run(&self, engine: Engine, script: &str, args: &[&str]) -> Value {
        run_scenario(engine, script, &self.base(), args, async |command| {
            self.handle(command).await
        })
        .await
    }
}

pub async fn the_pages_event_source_receives_events_in_order(serving: Serving, engine: Engine, test: &str) {
    if !engine.available(test) {
        return;
    }
    let room = Room::start(serving, 1024, StreamConfig::default()).await;
    let result = room.run(engine, "sse_order.mjs", &[]).await;
    assert_eq!(result["received"], 21);
    assert_eq!(result["instances"], 1);
    let seen = room.seen();
    assert_eq!(seen.len(), 1, "one SSE request, never reconnected: {seen:?}");
    assert!(seen[0].sse && seen[0].last_event_id.is_none() && seen[0].query.is_none());
}

pub async fn after_a_dropped_connection_the_browser_resumes_with_last_event_id_and_misses_nothing(
    serving: Serving,
    engine: Engine,
    test: &str,
) {
    if !engine.available(test) {
        return;
    }
    let config = StreamConfig::default()
        .retry(Duration::from_millis(300))
        .max_connection_age(Duration::from_millis(1200));
    let room = Room::start(serving, 1024, config).await;
    let result = room.run(engine, "sse_reconnect.mjs", &[]).await;
    let seen = room.seen();
    eprintln!(
        "browser ({engine}): {} requests to the event route: {seen:?}",
        seen.len()
    );
    assert!(seen.iter().all(|s| s.sse), "the page stayed on SSE");
    assert!(seen[0].last_event_id.is_none(), "the first connect has no cursor");
    assert!(
        seen[1..]
            .iter()
            .all(|s| s.last_event_id.is_some() && s.query.is_none()),
        "every reconnect is the browser's own, with Last-Event-ID: {seen:?}"
    );
    let last_before_cut = result["lastBeforeCut"].as_str().unwrap();
    assert!(
        seen.iter()
            .any(|s| s.last_event_id.as_deref() == Some(last_before_cut)),
        "after the cut the browser resumed from {last_before_cut}: {seen:?}"
    );
    assert!(seen.len() >= 4, "cut once and aged out several times: {seen:?}");
    assert_eq!(result["closed"], 0, "the EventSource never reached CLOSED");
}

pub async fn the_retry_hint_sets_the_browsers_reconnect_delay(serving: Serving, engine: Engine, test: &str) {
    if !engine.available(test) {
        return;
    }
    let mut medians = Vec::new();
    for (retry, reconnects) in [(100u64, "3"), (2000, "2")] {
        let config = StreamConfig::default()
            .retry(Duration::from_millis(retry))
            .max_connection_age(Duration::from_millis(500));
        let room = Room::start(serving, 1024, config).await;
        let result = room.run(engine, "retry.mjs", &[reconnects]).await;
        let mut delays: Vec<u64> = result["delays"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        delays.sort_unstable();
        report(&format!(
            "browser ({engine}): retry {retry} ms: reconnect delays {delays:?} ms"
        ));
        if retry >= 1000 {
            assert!(
                delays.iter().all(|&d| d >= retry * 9 / 10),
                "the browser reconnected before the {retry} ms it was told: {delays:?}"
            );
        }
        medians.push(delays[delays.len() / 2]);
    }
    let (small, large) = (medians[0], medians[1]);
    // Firefox never waits less than 500 ms, whatever `retry:` says (Gecko's EventSource floors
    // the reconnection time at 500 ms): its delays for `retry: 100` are about 505 ms, Chromium's
    // about 103 ms. Both are under this bound.
    assert!(small < 1000, "retry 100 ms: median reconnect delay {small} ms");
    assert!(
        large >= small + 1000,
        "retry 2000 ms should reconnect measurably later than retry 100 ms: {large} vs {small} ms"
    );
}

pub async fn a_history_gap_or_a_restart_reaches_the_page_as_a_reset(
    serving: Serving,
    engine: Engine,
    test: &str,
) {
    if !engine.available(test) {
        return;
    }
    let config = StreamConfig::default().retry(Duration::from_millis(300));
    let room = Room::start(serving, 4, config).await;
    let result = room.run(engine, "reset.mjs", &[]).await;
    assert_eq!(result["resets"], 2);
    assert_ne!(
        result["epochs"][0], result["epochs"][1],
        "the restart changed the epoch"
    );
    let seen = room.seen();
    assert!(
        seen[1..].iter().all(|s| s.last_event_id.is_some()),
        "the browser resumed by itself each time: {seen:?}"
    );
}

pub async fn the_long_poll_mode_delivers_the_same_sequence_as_sse(
    serving: Serving,
    engine: Engine,
    test: &str,
) {
    if !engine.available(test) {
        return;
    }
    let config = StreamConfig::default().retry(Duration::from_millis(300));
    let room = Room::start(serving, 1024, config).await;
    let result = room.run(engine, "longpoll.mjs", &[]).await;
    assert_eq!(result["received"], 18);
    let seen = room.seen();
    let polls: Vec<&Seen> = seen.iter().filter(|s| !s.sse).collect();
    assert!(polls.len() >= 3, "the long-poll page polled repeatedly: {seen:?}");
    assert!(
        polls[1..]
            .iter()
            .all(|s| s.query.as_deref().is_some_and(|q| q.contains("lastEventId="))),
        "each poll after the first carries the cursor: {polls:?}"
    );
}

/// This suite's tests, each on `$serving` and in each engine.
macro_rules! tests {
    ($serving:expr) => {
        $crate::support::browser::on_each_engine!(
            $serving => $crate::suites::browser::the_pages_event_source_receives_events_in_order,
            the_pages_event_source_receives_events_in_order_in_chromium,
            the_pages_event_source_receives_events_in_order_in_firefox
        );
        $crate::support::browser::on_each_engine!(
            $serving => $crate::suites::browser::after_a_dropped_connection_the_browser_resumes_with_last_event_id_and_misses_nothing,
            after_a_dropped_connection_the_browser_resumes_with_last_event_id_and_misses_nothing_in_chromium,
            after_a_dropped_connection_the_browser_resumes_with_last_event_id_and_misses_nothing_in_firefox
        );
        $crate::support::browser::on_each_engine!(
            $serving => $crate::suites::browser::the_retry_hint_sets_the_browsers_reconnect_delay,
            the_retry_hint_sets_the_browsers_reconnect_delay_in_chromium,
            the_retry_hint_sets_the_browsers_reconnect_delay_in_firefox
        );
        $crate::support::browser::on_each_engine!(
            $serving => $crate::suites::browser::a_history_gap_or_a_restart_reaches_the_page_as_a_reset,
            a_history_gap_or_a_restart_reaches_the_page_as_a_reset_in_chromium,
            a_history_gap_or_a_restart_reaches_the_page_as_a_reset_in_firefox
        );
        $crate::support::browser::on_each_engine!(
            $serving => $crate::suites::browser::the_long_poll_mode_delivers_the_same_sequence_as_sse,
            the_long_poll_mode_delivers_the_same_sequence_as_sse_in_chromium,
            the_long_poll_mode_delivers_the_same_sequence_as_sse_in_firefox
        );
    };
}
pub(crate) use tests;
