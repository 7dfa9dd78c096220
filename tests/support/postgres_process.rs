//! A PostgreSQL server of its own: a fresh cluster (`initdb`) in a given folder and a
//! `postgres` process on a loopback port, waited for until it accepts connections, stopped
//! (fast shutdown) when dropped. Standard library only: shared by the tests
//! (`tests/support/postgres.rs`) and benchmarks, which include this file by path.
//!
//! The programs: those in `PG_BIN` if set, else in the newest `/usr/lib/postgresql/<version>/bin`
//! (Debian's layout, not on the `PATH`), else from the `PATH`. The server refuses to run as
//! root, so a root process runs `initdb` and `postgres` as the `postgres` user (Debian's
//! package creates it) and hands the folder to that user.
//!
//! Every process of a server has the cluster's data folder as its working folder; that is how
//! [`PostgresProcess::kill`] finds the backends that outlive a killed postmaster, which would
//! otherwise keep its shared memory and make the next start fail.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The longest a server may take to accept connections after it starts.
const START_LIMIT: Duration = Duration::from_secs(20);
/// The longest a fast shutdown may take before the server is killed instead.
const STOP_LIMIT: Duration = Duration::from_secs(20);
/// How long a killed postmaster's backends get to notice and exit before they are killed too.
const ORPHAN_LIMIT: Duration = Duration::from_secs(2);

/// Settings for a throwaway server. `fsync=off` and `full_page_writes=off` lose nothing when
/// only the server crashes (the kernel keeps what was written), which is all a test does to
/// it; commits stay synchronous, so a killed server still has every commit it acknowledged.
const SETTINGS: &[&str] = &[
    "listen_addresses=127.0.0.1",
    "fsync=off",
    "full_page_writes=off",
    "max_connections=200",
];

/// A running PostgreSQL server: its cluster in `<dir>/data`, its log in `<dir>/postgres.log`,
/// its Unix socket in `<dir>`; user `postgres`, no password.
pub struct PostgresProcess {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    /// `<dir>/data` with symbolic links resolved, as `/proc/<pid>/cwd` shows it.
    data: PathBuf,
    /// The uid and gid the server runs as, when this process is root.
    owner: Option<(u32, u32)>,
}

// Each includer (a test binary, a benchmark) uses a part.
#[allow(dead_code)]
impl PostgresProcess {
    /// The folder of the server programs: `PG_BIN` if set, else the newest Debian one.
    pub fn bin_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("PG_BIN") {
            return Some(PathBuf::from(dir));
        }
        let versions = std::fs::read_dir("/usr/lib/postgresql").ok()?;
        versions
            .filter_map(|entry| {
                let entry = entry.ok()?;
                // Numerically, so that 10 is newer than 9.6.
                let version: Vec<u32> = entry
                    .file_name()
                    .to_str()?
                    .split('.')
                    .map(|part| part.parse().ok())
                    .collect::<Option<_>>()?;
                let bin = entry.path().join("bin");
                bin.join("postgres").is_file().then_some((version, bin))
            })
            .max()
            .map(|(_, bin)| bin)
    }

    /// The program `name` (`initdb`, `psql`, …): from [`bin_dir`](Self::bin_dir) if it is
    /// there, else the bare name for a `PATH` lookup.
    pub fn program(name: &str) -> PathBuf {
        Self::bin_dir()
            .map(|dir| dir.join(name))
            .filter(|path| path.is_file())
            .unwrap_or_else(|| PathBuf::from(name))
    }

    /// What keeps a server from starting here, if anything.
    pub fn missing() -> Option<String> {
        for name in ["initdb", "postgres", "pg_isready", "psql"] {
            let runs = Command::new(Self::program(name))
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            if !runs {
                return Some(format!(
                    "PostgreSQL's `{name}` is not installed (Debian package postgresql; elsewhere \
                     set PG_BIN to the folder of initdb and postgres)"
                ));
            }
        }
        server_user().err()
    }

    /// Whether a server can start here.
    pub fn installed() -> bool {
        Self::missing().is_none()
    }

    /// Creates a cluster in `<dir>/data` (which must not exist yet) and starts a server on
    /// 127.0.0.1:`port`; returns once it accepts connections.
    pub fn start(port: u16, dir: &Path) -> Result<PostgresProcess, String> {
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("PostgreSQL folder {}: {e}", dir.display()))?;
        let owner = server_user()?;
        if let Some((uid, gid)) = owner {
            // initdb creates everything below it, as the owner.
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("handing {} to user postgres: {e}", dir.display()))?;
        }
        let mut process = PostgresProcess {
            child: None,
            port,
            data: dir.join("data"),
            dir,
            owner,
        };
        let output = process
            .command("initdb")
            .arg("-D")
            .arg(&process.data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .arg("--locale=C")
            .output()
            .map_err(|e| format!("running initdb: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "initdb failed ({}); the postgres user needs access to every folder above {}:\n{}{}",
                output.status,
                process.dir.display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        process.spawn()?;
        Ok(process)
    }

    /// A command for one of the server programs, run as the server's user in its folder
    /// (a root working folder the user cannot read makes the programs fail).
    fn command(&self, name: &str) -> Command {
        let mut command = Command::new(Self::program(name));
        command.current_dir(&self.dir);
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        command
    }

    fn spawn(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_LIMIT;
        // A killed server's Unix socket and lock files stay behind; its processes are gone
        // (see `kill`), so they are stale, and a recycled pid in them must not stop the start.
        let _ = std::fs::remove_file(self.data.join("postmaster.pid"));
        let _ = std::fs::remove_file(self.dir.join(format!(".s.PGSQL.{}.lock", self.port)));
        while std::net::TcpListener::bind(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("port {} stays taken", self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("opening the PostgreSQL log: {e}"))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("opening the PostgreSQL log: {e}"))?;
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir);
        for setting in SETTINGS {
            command.args(["-c", setting]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("starting postgres: {e}"))?;
        self.child = Some(child);
        loop {
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "postgres exited ({status}) on port {}:\n{}",
                        self.port,
                        self.log_tail()
                    ));
                }
            }
            if self.accepts_connections() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "postgres did not accept connections on port {} within {START_LIMIT:?}:\n{}",
                    self.port,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Listening is not enough: during recovery the server refuses connections.
    fn accepts_connections(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && Command::new(Self::program("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", "postgres", "-d", "postgres", "-t", "2"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the database `postgres`.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// The URL of the database `name`, which must not need percent-encoding.
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The end of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// Whether the postmaster runs (it may still be starting or stopping).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Stops the server with a fast shutdown (SIGINT: open sessions are ended, the cluster is
    /// checkpointed) and waits until all its processes have exited.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            signal(child.id(), "INT");
            let deadline = Instant::now() + STOP_LIMIT;
            while matches!(child.try_wait(), Ok(None)) {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = child.wait();
        self.end_orphans();
    }

    /// Kills the postmaster at once (SIGKILL), as a crash would; its backends and helpers
    /// notice and exit on their own (or are killed after a while). Returns once all are gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.end_orphans();
    }

    /// Starts the server again on the same port with the same data, after a fast shutdown if
    /// it still runs; after a kill, it recovers from its write-ahead log first.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.spawn()
    }

    /// Waits for the processes of this cluster whose postmaster is gone, killing those that
    /// outstay [`ORPHAN_LIMIT`].
    fn end_orphans(&self) {
        let kill_at = Instant::now() + ORPHAN_LIMIT;
        // Past this, they are stuck in the kernel; the next start will say so.
        let give_up_at = kill_at + ORPHAN_LIMIT;
        loop {
            let orphans = self.server_pids();
            if orphans.is_empty() || Instant::now() > give_up_at {
                return;
            }
            if Instant::now() > kill_at {
                for pid in orphans {
                    signal(pid, "KILL");
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The live processes working in this cluster's data folder (zombies have no working
    /// folder to read). Linux only; elsewhere none are found.
    fn server_pids(&self) -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                (std::fs::read_link(entry.path().join("cwd")).ok()? == self.data).then_some(pid)
            })
            .collect()
    }
}

impl Drop for PostgresProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends `name` (`INT`, `KILL`) to `pid`, with the shell's `kill` to stay std-only: the `kill`
/// program is not in every minimal system, a shell is.
fn signal(pid: u32, name: &str) {
    let _ = Command::new("sh")
        .args(["-c", "kill -s \"$1\" \"$2\"", "sh", name, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The uid and gid of the `postgres` user when this process is root (the server refuses to
/// run as root), else `None`: the server runs as this process's user.
fn server_user() -> Result<Option<(u32, u32)>, String> {
    use std::os::unix::fs::MetadataExt;
    let root = match std::fs::metadata("/proc/self") {
        Ok(meta) => meta.uid() == 0,
        Err(_) => Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|output| output.stdout.trim_ascii() == b"0"),
    };
    if !root {
        return Ok(None);
    }
    let id = |flag: &str| -> Option<u32> {
        let output = Command::new("id").args([flag, "postgres"]).output().ok()?;
        if !output.status.success() {
            return None;
        }
        std::str::from_utf8(&output.stdout).ok()?.trim().parse().ok()
    };
    match (id("-u"), id("-g")) {
        (Some(uid), Some(gid)) => Ok(Some((uid, gid))),
        _ => Err(
            "running as root, and there is no `postgres` user to run the server as \
                  (Debian's postgresql package creates it)"
                .to_owned(),
        ),
    }
}
