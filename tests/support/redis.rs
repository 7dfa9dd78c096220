//! A `redis-server` of the test's own (feature `redis`): started on a free loopback port,
//! optionally with an append-only file so a kill loses nothing acknowledged, killed and
//! restarted on demand. Without `redis-server` a test fails under `CI` and skips loudly
//! otherwise.

use tower_eventstream::{RedisLog, RedisLogs};

use super::process::{free_port, ScratchDir};
use super::{missing_prerequisite, within};

#[path = "redis_process.rs"]
mod redis_process;
use redis_process::RedisProcess;

/// A `redis-server` of the test's own on a free loopback port, killed when dropped.
#[allow(dead_code)]
pub struct RedisServer {
    process: RedisProcess,
    /// Its files; removed after the server is killed (fields drop in order).
    _dir: ScratchDir,
}

#[allow(dead_code)]
impl RedisServer {
    /// Starts a server without persistence, or `None` (after a loud warning) when
    /// `redis-server` is missing outside CI.
    pub fn start() -> Option<RedisServer> {
        Self::start_with(&["--save", "", "--appendonly", "no"])
    }

    /// Starts a server that writes every acknowledged command to its append-only file before
    /// answering, so a killed server loses nothing it acknowledged.
    pub fn start_persistent() -> Option<RedisServer> {
        Self::start_with(&["--save", "", "--appendonly", "yes", "--appendfsync", "always"])
    }

    fn start_with(settings: &[&str]) -> Option<RedisServer> {
        if !RedisProcess::installed() {
            missing_prerequisite(
                "RedisServer::start",
                "redis-server is not installed (Debian package redis-server)",
            );
            return None;
        }
        let dir = ScratchDir::new("redis");
        let process = RedisProcess::start(free_port(), Some(dir.path()), settings)
            .unwrap_or_else(|error| panic!("{error}"));
        Some(RedisServer { process, _dir: dir })
    }

    pub fn url(&self) -> String {
        self.process.url()
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the server again on the same port with the same files.
    pub fn restart(&mut self) {
        self.process.restart().unwrap_or_else(|error| panic!("{error}"));
    }

    /// A plain connection for checks and for changing the stream behind the log's back.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("redis URL")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test redis-server")
    }
}

/// A `RedisLogs` family on `server` with the stream keys `<prefix><name>`.
#[allow(dead_code)]
pub async fn connect_logs(server: &RedisServer, prefix: &str) -> RedisLogs {
    within(
        "connect_logs",
        RedisLog::builder(server.url(), prefix).connect_logs(),
    )
    .await
    .expect("connect RedisLogs")
}

/// The family's log of `name`.
#[allow(dead_code)]
pub async fn log(logs: &RedisLogs, name: &str) -> RedisLog {
    within("log", logs.log(name)).await.expect("a log of the family")
}
