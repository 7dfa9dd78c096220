//! The chat page in a real browser: headless Chromium (the system's `/usr/bin/chromium`,
//! driven by `playwright-core` from `tests/browser/`) against the chat app served in process.
//!
//! Each test starts the app on 127.0.0.1:0 and runs `node tests/browser/<scenario>.mjs
//! <base-url>`. The scenario drives the page and may ask this side, with a line `@@ …` on
//! its stdout, to cut every connection, publish, or restart the app with a new log; it ends
//! with `RESULT <json>` and exit status 0. This side also records the `Last-Event-ID` of each
//! request to the event route, to prove the browser resumed by itself.
//!
//! Without Chromium, node or `tests/browser/node_modules` (`npm ci --prefix tests/browser`),
//! the tests fail when `CI` is set and are skipped, loudly, otherwise.

mod harness;

#[path = "../examples/chat/app.rs"]
mod app;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use harness::*;
use serde_json::{json, Value};
use tower::util::MapRequestLayer;
use tower_eventstream::{Event, MemoryLog, StreamConfig};

const CHROMIUM: &str = "/usr/bin/chromium";
const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
/// The longest one scenario may take, browser start included.
const SCENARIO_LIMIT: Duration = Duration::from_secs(120);

/// One Chromium at a time: the scenarios measure timings, and the machine has few cores.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether the browser tooling is there; if not, fails under CI or skips loudly.
fn browser_available(test: &str) -> bool {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!("{CHROMIUM} (Debian package chromium)"));
    }
    if !Path::new(MANIFEST_DIR)
        .join("tests/browser/node_modules/playwright-core/package.json")
        .exists()
    {
        missing.push("tests/browser/node_modules (run `npm ci --prefix tests/browser`)".to_owned());
    }
    if Command::new("node").arg("--version").output().is_err() {
        missing.push("node".to_owned());
    }
    if missing.is_empty() {
        return true;
    }
    missing_prerequisite(test, &format!("missing {}", missing.join(", ")));
    false
}

/// A request to the event route, as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    query: Option<String>,
    last_event_id: Option<String>,
    sse: bool,
}

/// The chat app on a server whose connections can be cut and whose log can be replaced.
struct Room {
    server: TestServer,
    log: Mutex<MemoryLog>,
    history: usize,
    config: StreamConfig,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Room {
    async fn start(history: usize, config: StreamConfig) -> Room {
        let log = MemoryLog::builder().history(history).build();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let server = TestServer::start(Self::router(&log, &config, &seen)).await;
        Room {
            server,
            log: Mutex::new(log),
            history,
            config,
            seen,
        }
    }

    fn router(log: &MemoryLog, config: &StreamConfig, seen: &Arc<Mutex<Vec<Seen>>>) -> axum::Router {
        let seen = Arc::clone(seen);
        app::router(log.clone(), config.clone()).layer(MapRequestLayer::new(move |request: Request| {
            if request.uri().path() == "/api/events" {
                let header = |name: &str| {
                    request
                        .headers()
                        .get(name)
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                };
                seen.lock().unwrap().push(Seen {
                    query: request.uri().query().map(str::to_owned),
                    last_event_id: header("last-event-id"),
                    sse: header("accept").is_some_and(|a| a.contains("text/event-stream")),
                });
            }
            request
        }))
    }

    fn base(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    fn log(&self) -> MemoryLog {
        self.log.lock().unwrap().clone()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn publish(&self, count: usize, prefix: &str) -> Value {
        let log = self.log();
        let events: Vec<Value> = (0..count)
            .map(|n| {
                let text = format!("{prefix} {n}");
                let stored = log.push(Event::new(&text).with_name("message").unwrap());
                json!({ "id": stored.id().unwrap().as_str(), "data": text })
            })
            .collect();
        Value::Array(events)
    }

    /// Carries out one `@@` command of a scenario.
    async fn handle(&self, command: &str) -> Result<Value, String> {
        let words: Vec<&str> = command.split_whitespace().collect();
        match words.as_slice() {
            ["cut"] => Ok(json!(self.server.cut())),
            // Drop every connection, then publish while the clients are away.
            ["cut-publish", count, prefix] => {
                let count: usize = count.parse().map_err(|_| format!("bad count in {command:?}"))?;
                let cut = self.server.cut();
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
                self.server.swap(Self::router(&log, &self.config, &self.seen));
                *self.log.lock().unwrap() = log;
                self.server.cut();
                Ok(self.publish(count, prefix))
            }
            ["wait-subscribers", count] => {
                let count: usize = count.parse().map_err(|_| format!("bad count in {command:?}"))?;
                let log = self.log();
                wait_until(LIMIT, "subscribers", || log.subscriber_count() >= count).await;
                Ok(json!(log.subscriber_count()))
            }
            _ => Err(format!("unknown command {command:?}")),
        }
    }
}

/// Kills the node process (and so its Chromium) if the test ends early.
struct Scenario(Child);

impl Drop for Scenario {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `tests/browser/<script>` against `room`, answering its commands; returns its RESULT.
async fn run(room: &Room, script: &str, extra_args: &[&str]) -> Value {
    let mut child = Command::new("node")
        .arg(Path::new("tests/browser").join(script))
        .arg(room.base())
        .args(extra_args)
        .current_dir(MANIFEST_DIR)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut scenario = Scenario(child);

    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let errors = Arc::new(Mutex::new(String::new()));
    let stderr_thread = {
        let errors = Arc::clone(&errors);
        let script = script.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{script}] {line}");
                let mut errors = errors.lock().unwrap();
                errors.push_str(&line);
                errors.push('\n');
            }
        })
    };

    let deadline = tokio::time::Instant::now() + SCENARIO_LIMIT;
    let mut result = None;
    loop {
        let line = match tokio::time::timeout_at(deadline, lines.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(_) => panic!("{script}: no end after {SCENARIO_LIMIT:?}"),
        };
        if let Some(command) = line.strip_prefix("@@ ") {
            let answer = match room.handle(command).await {
                Ok(value) => format!("ok {value}\n"),
                Err(reason) => format!("err {reason}\n"),
            };
            eprintln!("[{script}] @@ {command} -> {}", answer.trim_end());
            stdin.write_all(answer.as_bytes()).expect("answer the scenario");
            stdin.flush().unwrap();
        } else if let Some(json) = line.strip_prefix("RESULT ") {
            result = Some(serde_json::from_str::<Value>(json).expect("RESULT is JSON"));
        } else {
            eprintln!("[{script}] {line}");
        }
    }
    let status = loop {
        if let Some(status) = scenario.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{script}: node did not exit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = stderr_thread.join();
    let errors = errors.lock().unwrap().clone();
    assert!(status.success(), "{script} failed ({status}):\n{errors}");
    let result = result.unwrap_or_else(|| panic!("{script} printed no RESULT:\n{errors}"));
    eprintln!("[{script}] RESULT {result}");
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_event_source_receives_events_in_order() {
    if !browser_available("browser::the_pages_event_source_receives_events_in_order") {
        return;
    }
    let _one = ONE_BROWSER.lock().await;
    let room = Room::start(1024, StreamConfig::default()).await;
    let result = run(&room, "sse_order.mjs", &[]).await;
    assert_eq!(result["received"], 21);
    assert_eq!(result["instances"], 1);
    let seen = room.seen();
    assert_eq!(seen.len(), 1, "one SSE request, never reconnected: {seen:?}");
    assert!(seen[0].sse && seen[0].last_event_id.is_none() && seen[0].query.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_dropped_connection_the_browser_resumes_with_last_event_id_and_misses_nothing() {
    if !browser_available(
        "browser::after_a_dropped_connection_the_browser_resumes_with_last_event_id_and_misses_nothing",
    ) {
        return;
    }
    let _one = ONE_BROWSER.lock().await;
    let config = StreamConfig::default()
        .retry(Duration::from_millis(300))
        .max_connection_age(Duration::from_millis(1200));
    let room = Room::start(1024, config).await;
    let result = run(&room, "sse_reconnect.mjs", &[]).await;
    let seen = room.seen();
    eprintln!("browser: {} requests to the event route: {seen:?}", seen.len());
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_hint_sets_the_browsers_reconnect_delay() {
    if !browser_available("browser::the_retry_hint_sets_the_browsers_reconnect_delay") {
        return;
    }
    let _one = ONE_BROWSER.lock().await;
    let mut medians = Vec::new();
    for (retry, reconnects) in [(100u64, "3"), (2000, "2")] {
        let config = StreamConfig::default()
            .retry(Duration::from_millis(retry))
            .max_connection_age(Duration::from_millis(500));
        let room = Room::start(1024, config).await;
        let result = run(&room, "retry.mjs", &[reconnects]).await;
        let mut delays: Vec<u64> = result["delays"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        delays.sort_unstable();
        report(&format!(
            "browser: retry {retry} ms: reconnect delays {delays:?} ms"
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
    assert!(small < 1000, "retry 100 ms: median reconnect delay {small} ms");
    assert!(
        large >= small + 1000,
        "retry 2000 ms should reconnect measurably later than retry 100 ms: {large} vs {small} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_gap_or_a_restart_reaches_the_page_as_a_reset() {
    if !browser_available("browser::a_history_gap_or_a_restart_reaches_the_page_as_a_reset") {
        return;
    }
    let _one = ONE_BROWSER.lock().await;
    let config = StreamConfig::default().retry(Duration::from_millis(300));
    let room = Room::start(4, config).await;
    let result = run(&room, "reset.mjs", &[]).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_long_poll_mode_delivers_the_same_sequence_as_sse() {
    if !browser_available("browser::the_long_poll_mode_delivers_the_same_sequence_as_sse") {
        return;
    }
    let _one = ONE_BROWSER.lock().await;
    let config = StreamConfig::default().retry(Duration::from_millis(300));
    let room = Room::start(1024, config).await;
    let result = run(&room, "longpoll.mjs", &[]).await;
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
