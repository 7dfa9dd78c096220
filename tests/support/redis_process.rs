//! A `redis-server` process on a loopback port, waited for until it answers `PING`, killed
//! when dropped. Standard library only: shared by the tests (`tests/support/redis.rs`) and
//! the Redis benchmark (`benches/redis_fanout.rs`), which include this file by path.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The longest `redis-server` may take to answer `PING` after it starts.
const START_LIMIT: Duration = Duration::from_secs(10);

/// A running `redis-server`.
pub struct RedisProcess {
    child: Option<Child>,
    pub port: u16,
    args: Vec<String>,
}

impl RedisProcess {
    /// The binary: `REDIS_SERVER` if set, else `redis-server` from the `PATH`.
    pub fn binary() -> String {
        std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned())
    }

    /// Whether [`binary`](Self::binary) runs.
    #[allow(dead_code)] // The benchmark learns it from `start`.
    pub fn installed() -> bool {
        Command::new(Self::binary())
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Starts a server on 127.0.0.1:`port` with `settings` (such as `--appendonly yes`), its
    /// files in `dir` if given; returns once it answers `PING`.
    pub fn start(port: u16, dir: Option<&Path>, settings: &[&str]) -> Result<RedisProcess, String> {
        let mut args = vec![
            Self::binary(),
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--daemonize".into(),
            "no".into(),
            "--loglevel".into(),
            "warning".into(),
        ];
        if let Some(dir) = dir {
            args.extend(["--dir".into(), dir.display().to_string()]);
        }
        args.extend(settings.iter().map(|s| s.to_string()));
        let mut process = RedisProcess {
            child: None,
            port,
            args,
        };
        process.spawn()?;
        Ok(process)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new(&self.args[0])
            .args(&self.args[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.args[0]))?;
        self.child = Some(child);
        // Ready when it answers PING with PONG (not -LOADING while it reads its files).
        let deadline = Instant::now() + START_LIMIT;
        while !self.pong() {
            if Instant::now() > deadline {
                return Err(format!("redis-server did not start on port {}", self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
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

    /// The URL a client connects with.
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

    /// Starts the server again on the same port with the same settings and files.
    #[allow(dead_code)] // The benchmark never restarts its server.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.spawn()
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
