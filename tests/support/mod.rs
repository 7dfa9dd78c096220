//! What the integration tests share, one module for every test binary (`mod support;`):
//!
//! - here: the one time limit ([`LIMIT`], [`within`], [`wait_until`]) and how a test reports
//!   figures or a missing prerequisite;
//! - [`server`]: a test server on 127.0.0.1, served the way a [`server::Serving`] names;
//! - [`client`]: hyper's HTTP/1.1 and HTTP/2 clients, long polls and chat messages, and the
//!   response types; [`raw`]: HTTP/1.1 written and read byte for byte on a `TcpStream`;
//! - [`reader`]: the one incremental reader of response bodies and event streams, from
//!   either client; [`sse`]: its event-stream parser and `eventsource-stream`, the
//!   third-party one;
//! - [`feed`]: a log read in process, delivery by delivery;
//! - [`browser`], [`seen`], [`redis`], [`postgres`], [`process`]: real browsers, a request
//!   recorder, a `redis-server` and a PostgreSQL server of the test's own, and this process's
//!   figures and scratch folders.
//!
//! Suites that run on more than one server are in `tests/suites/`, written over
//! [`server::Serving`]; each test file that runs one names its server.
//!
//! Every test binary compiles all of this module and uses a part. A helper that one test file
//! alone needs lives in that file; a helper some binaries use and others do not carries its
//! own `#[allow(dead_code)]`.

use std::future::Future;
use std::time::{Duration, Instant};

pub mod browser;
pub mod client;
pub mod feed;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod raw;
pub mod reader;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "redis")]
pub mod redis_cluster;
pub mod seen;
pub mod server;
pub mod sse;

/// The longest any single wait of a test may take before the test fails instead of hanging.
/// A test that asserts a tighter bound (an event flushed at once, a shutdown within a second)
/// states that bound itself.
#[allow(dead_code)]
pub const LIMIT: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test after [`LIMIT`].
#[allow(dead_code)]
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(LIMIT, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {LIMIT:?} waiting for {what}"),
    }
}

/// Polls `condition` every few milliseconds until it holds, failing after [`LIMIT`].
#[allow(dead_code)]
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {LIMIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Writes a line to the process's stderr directly, so it shows even when the test harness
/// captures output (as it does for `eprintln!` in a passing test): figures to quote, skips.
#[allow(dead_code)]
pub fn report(line: &str) {
    use std::io::Write;
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}

/// Whether the tests run under CI (`CI` set and not `false`/`0`/empty).
#[allow(dead_code)]
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "0" && value != "false")
}

/// A required external program or setup is missing: fails under CI, skips loudly otherwise.
/// Returns normally only when the test should skip.
#[allow(dead_code)]
pub fn missing_prerequisite(test: &str, what: &str) {
    let message = format!("{test}: {what}");
    if under_ci() {
        panic!("{message} (CI is set, so this is a failure, not a skip)");
    }
    let bar = "!".repeat(78);
    report(&format!(
        "\n{bar}\n!!! SKIPPED {message}\n!!! (set CI=1 to make this a failure)\n{bar}\n"
    ));
}
