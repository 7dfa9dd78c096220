//! A `redis-server` of the test's own (feature `redis`): started on a free loopback port,
//! optionally with an append-only file so a kill loses nothing acknowledged, killed and
//! restarted on demand. Without `redis-server` a test fails under `CI` and skips loudly
//! otherwise.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{free_port, ScratchDir};
use super::{missing_prerequisite, LIMIT};

/// A `redis-server` of the test's own on a free loopback port, killed when dropped.
#[allow(dead_code)]
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    args: Vec<String>,
    /// Its files; removed after the server is killed.
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
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
        let present = Command::new(&binary)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !present {
            missing_prerequisite(
                "RedisServer::start",
                "redis-server is not installed (Debian package redis-server)",
            );
            return None;
        }
        let dir = ScratchDir::new("redis");
        let port = free_port();
        let mut args: Vec<String> = vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--dir".into(),
            dir.path().display().to_string(),
            "--daemonize".into(),
            "no".into(),
            "--loglevel".into(),
            "warning".into(),
        ];
        args.extend(settings.iter().map(|s| s.to_string()));
        args.insert(0, binary);
        let mut server = RedisServer {
            child: None,
            port,
            args,
            _dir: dir,
        };
        server.spawn();
        Some(server)
    }

    fn spawn(&mut self) {
        let child = Command::new(&self.args[0])
            .args(&self.args[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        // Ready when it answers PING with PONG (not -LOADING while it reads its files).
        let deadline = Instant::now() + LIMIT;
        loop {
            if self.pong() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pong(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same files.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
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

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
