//! Real browsers against a server a test started: runs a scenario script of `tests/browser/`
//! (`node tests/browser/<script> <base-url> [args...]`, the engine chosen by the environment
//! variable `BROWSER`) and answers the commands it sends.
//!
//! The protocol (see `tests/browser/lib.mjs`): a line `@@ <command>` on the script's stdout
//! asks the test to act on its server; the handler's answer goes back on the script's stdin as
//! `ok <json>` or `err <reason>`. The script ends with a line `RESULT <json>` and exit status 0.
//!
//! ```ignore
//! if !Engine::Firefox.available("my_suite::my_test_in_firefox") {
//!     return;
//! }
//! let result = run_scenario(Engine::Firefox, "my_scenario.mjs", &base, &[], async |command| {
//!     match command {
//!         "stop-redis" => Ok(serde_json::json!(stop_redis().await)),
//!         _ => Err(format!("unknown command {command:?}")),
//!     }
//! })
//! .await;
//! ```

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tower_eventstream::{Event, MemoryLog};

use super::{missing_prerequisite, report};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// The longest one scenario may take, browser start included (`lib.mjs` has the same watchdog).
#[allow(dead_code)]
pub const SCENARIO_LIMIT: Duration = Duration::from_secs(120);

/// One browser at a time, whatever the test: the scenarios measure timings, and the machine
/// has few cores. [`run_scenario`] holds it while its script runs.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A browser engine the scenarios run on: a system binary and the npm package that drives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(dead_code)]
pub enum Engine {
    /// `/usr/bin/chromium`, driven by `playwright-core` (Chrome DevTools Protocol).
    Chromium,
    /// `/usr/bin/firefox-esr`, driven by `puppeteer-core` over WebDriver BiDi.
    Firefox,
}

#[allow(dead_code)]
impl Engine {
    /// The value of `BROWSER` that selects it in `lib.mjs`.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Chromium => "chromium",
            Engine::Firefox => "firefox",
        }
    }

    /// The browser binary.
    pub fn binary(self) -> &'static str {
        match self {
            Engine::Chromium => "/usr/bin/chromium",
            Engine::Firefox => "/usr/bin/firefox-esr",
        }
    }

    /// The Debian package that installs [`binary`](Self::binary).
    pub fn debian_package(self) -> &'static str {
        match self {
            Engine::Chromium => "chromium",
            Engine::Firefox => "firefox-esr",
        }
    }

    /// The npm package of `tests/browser/package.json` that drives it.
    pub fn npm_package(self) -> &'static str {
        match self {
            Engine::Chromium => "playwright-core",
            Engine::Firefox => "puppeteer-core",
        }
    }

    /// Whether this engine's tooling is there (the binary, node, the npm package); if not,
    /// fails under CI or skips loudly (see [`missing_prerequisite`]) and returns `false`.
    pub fn available(self, test: &str) -> bool {
        let mut missing = Vec::new();
        if !Path::new(self.binary()).exists() {
            missing.push(format!(
                "{} (Debian package {})",
                self.binary(),
                self.debian_package()
            ));
        }
        let package = Path::new(MANIFEST_DIR)
            .join("tests/browser/node_modules")
            .join(self.npm_package())
            .join("package.json");
        if !package.exists() {
            missing.push(format!(
                "{} in tests/browser/node_modules (run `npm ci --prefix tests/browser`)",
                self.npm_package()
            ));
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
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Ends the node process (and so its browser) if the test ends early: SIGTERM first, which
/// both driver packages answer by closing their browser, then SIGKILL.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            // SIGTERM through kill(1): the crate's code, tests included, has no `unsafe`.
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while matches!(self.0.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `tests/browser/<script> <base> <args...>` on `engine`, one browser at a time, answering
/// each `@@ <command>` with `handler(command)`; returns the script's RESULT.
///
/// Panics (failing the test) when the script fails, prints no RESULT, or takes longer than
/// [`SCENARIO_LIMIT`]; its stderr, prefixed with the engine and script, is in the failure.
/// Call [`Engine::available`] first.
#[allow(dead_code)]
pub async fn run_scenario(
    engine: Engine,
    script: &str,
    base: &str,
    args: &[&str],
    mut handler: impl AsyncFnMut(&str) -> Result<Value, String>,
) -> Value {
    let _one = ONE_BROWSER.lock().await;
    let tag = format!("{engine} {script}");
    let mut child = Command::new("node")
        .arg(Path::new("tests/browser").join(script))
        .arg(base)
        .args(args)
        .env("BROWSER", engine.name())
        .current_dir(MANIFEST_DIR)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut node = Node(child);

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
        let tag = tag.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.starts_with("browser engine:") {
                    report(&format!("[{tag}] {line}"));
                } else {
                    eprintln!("[{tag}] {line}");
                }
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
            Err(_) => panic!(
                "{tag}: no end after {SCENARIO_LIMIT:?}; its stderr:\n{}",
                errors.lock().unwrap()
            ),
        };
        if let Some(command) = line.strip_prefix("@@ ") {
            let answer = match handler(command).await {
                Ok(value) => format!("ok {value}\n"),
                Err(reason) => format!("err {}\n", reason.replace('\n', " ")),
            };
            eprintln!("[{tag}] @@ {command} -> {}", answer.trim_end());
            // A script that died meanwhile is reported below, with its stderr.
            if let Err(error) = stdin.write_all(answer.as_bytes()).and_then(|()| stdin.flush()) {
                eprintln!("[{tag}] could not answer: {error}");
            }
        } else if let Some(json) = line.strip_prefix("RESULT ") {
            let value = serde_json::from_str::<Value>(json)
                .unwrap_or_else(|e| panic!("{tag}: RESULT is not JSON ({e}): {json}"));
            result = Some(value);
        } else {
            eprintln!("[{tag}] {line}");
        }
    }
    let status = loop {
        if let Some(status) = node.0.try_wait().unwrap() {
            break status;
        }
        assert!(tokio::time::Instant::now() < deadline, "{tag}: node did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = stderr_thread.join();
    let errors = errors.lock().unwrap().clone();
    assert!(status.success(), "{tag} failed ({status}):\n{errors}");
    let result = result.unwrap_or_else(|| panic!("{tag} printed no RESULT:\n{errors}"));
    eprintln!("[{tag}] RESULT {result}");
    result
}

/// Publishes `count` chat messages (`message` events, data `<prefix> <n>`) on `log`; returns
/// them as the scenarios expect: `[{"id": …, "data": …}]`.
#[allow(dead_code)]
pub fn publish_messages(log: &MemoryLog, count: usize, prefix: &str) -> Value {
    let events = (0..count)
        .map(|n| {
            let text = format!("{prefix} {n}");
            let stored = log.push(Event::new(&text).with_name("message").unwrap()).unwrap();
            json!({ "id": stored.id().unwrap().as_str(), "data": text })
        })
        .collect();
    Value::Array(events)
}

/// One test per engine, named `$chromium` and `$firefox`, each running
/// `$scenario(engine, test_name)`, or `$scenario(serving, engine, test_name)` for a scenario
/// written over the server it runs on (`on_each_engine!(Serving::HyperUtil => scenario, …)`).
/// `test_name`, the test's full path, is for messages only.
#[allow(unused_macros)]
macro_rules! on_each_engine {
    ($serving:expr => $scenario:path, $chromium:ident, $firefox:ident $(,)?) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $chromium() {
            let test = concat!(module_path!(), "::", stringify!($chromium));
            $scenario($serving, $crate::support::browser::Engine::Chromium, test).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $firefox() {
            let test = concat!(module_path!(), "::", stringify!($firefox));
            $scenario($serving, $crate::support::browser::Engine::Firefox, test).await;
        }
    };
    ($scenario:path, $chromium:ident, $firefox:ident $(,)?) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $chromium() {
            let test = concat!(module_path!(), "::", stringify!($chromium));
            $scenario($crate::support::browser::Engine::Chromium, test).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $firefox() {
            let test = concat!(module_path!(), "::", stringify!($firefox));
            $scenario($crate::support::browser::Engine::Firefox, test).await;
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_each_engine;
