//! A PostgreSQL server of the test's own: a fresh cluster on a free loopback port (user
//! `postgres`, no password), stopped, killed and restarted on demand, and the real `psql`
//! client to check or change its tables behind a log's back. Tests in one binary can share a
//! server and isolate themselves in databases of their own ([`PostgresServer::database`]).
//! Without PostgreSQL a test fails under `CI` and skips loudly otherwise.

use std::io::Write;
use std::process::{Command, Stdio};

use super::missing_prerequisite;
use super::process::{free_port, ScratchDir};

#[path = "postgres_process.rs"]
mod postgres_process;
use postgres_process::PostgresProcess;

/// A PostgreSQL server of the test's own on a free loopback port, stopped when dropped.
#[allow(dead_code)]
pub struct PostgresServer {
    process: PostgresProcess,
    /// Its cluster and log; removed after the server stops (fields drop in order).
    _dir: ScratchDir,
}

#[allow(dead_code)]
impl PostgresServer {
    /// Starts a server, or `None` (after a loud warning) when PostgreSQL is missing outside CI.
    pub fn start() -> Option<PostgresServer> {
        if let Some(missing) = PostgresProcess::missing() {
            missing_prerequisite("PostgresServer::start", &missing);
            return None;
        }
        let dir = ScratchDir::new("postgres");
        let process =
            PostgresProcess::start(free_port(), dir.path()).unwrap_or_else(|error| panic!("{error}"));
        Some(PostgresServer { process, _dir: dir })
    }

    /// The URL of the database `postgres`.
    pub fn url(&self) -> String {
        self.process.url()
    }

    pub fn port(&self) -> u16 {
        self.process.port()
    }

    /// Creates the database `name` (letters, digits and `_`, so that the URL needs no
    /// escaping) and returns its URL.
    pub fn database(&self, name: &str) -> String {
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "database name {name:?}: use letters, digits and _"
        );
        self.psql(&format!("CREATE DATABASE \"{name}\""));
        self.process.database_url(name)
    }

    /// Stops the server with a fast shutdown: open sessions end, nothing committed is lost.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Kills the server at once (SIGKILL to the postmaster), as a crash would; returns once
    /// all its processes are gone, so clients have seen their connections close.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the server again on the same port with the same data (stopping it first if it
    /// runs); after a kill it recovers, keeping every commit it acknowledged.
    pub fn restart(&mut self) {
        self.process.restart().unwrap_or_else(|error| panic!("{error}"));
    }

    /// Takes a file-level backup of the cluster (stopping the server for it, then starting
    /// it again), for [`restore_backup`](Self::restore_backup).
    pub fn take_backup(&mut self) {
        self.process.stop();
        let (data, backup) = (self._dir.path().join("data"), self._dir.path().join("backup"));
        let _ = std::fs::remove_dir_all(&backup);
        copy_tree(&data, &backup);
        self.restart();
    }

    /// Puts the backup in place of the cluster and starts it: everything committed since
    /// the backup is gone, and transaction ids go back to where they were then, as after a
    /// restore.
    pub fn restore_backup(&mut self) {
        self.process.stop();
        let (data, backup) = (self._dir.path().join("data"), self._dir.path().join("backup"));
        std::fs::remove_dir_all(&data).expect("remove the cluster");
        copy_tree(&backup, &data);
        self.restart();
    }

    /// Runs `sql` (one statement or a script; psql meta-commands work) in the database
    /// `postgres`: the rows unaligned, `|` between columns, one a line, without headers and
    /// command tags. Panics with psql's message on an error.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    /// [`psql`](Self::psql) in the database `database`.
    pub fn psql_in(&self, database: &str, sql: &str) -> String {
        self.psql_result_in(database, sql)
            .unwrap_or_else(|error| panic!("psql failed on {sql:?}:\n{error}"))
    }

    /// [`psql`](Self::psql) for a statement that may fail: `Err` is psql's message.
    pub fn psql_result(&self, sql: &str) -> Result<String, String> {
        self.psql_result_in("postgres", sql)
    }

    /// `psql` connected to the database `database`, ignoring `~/.psqlrc`, to add arguments
    /// and stdio to: for a session a test holds open or feeds line by line.
    pub fn psql_command(&self, database: &str) -> Command {
        let mut command = Command::new(PostgresProcess::program("psql"));
        command
            .args(["-X", "-d"])
            .arg(self.process.database_url(database))
            .env("PGCONNECT_TIMEOUT", "10");
        command
    }

    /// [`psql_result`](Self::psql_result) in the database `database`.
    pub fn psql_result_in(&self, database: &str, sql: &str) -> Result<String, String> {
        // The script goes through stdin, so that psql splits it into statements as a user's
        // file would (`-c` sends one string, in which CREATE DATABASE cannot run).
        let mut child = self
            .psql_command(database)
            .args(["-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("running psql: {error}"));
        let mut stdin = child.stdin.take().expect("psql's stdin");
        // Written from another thread: psql may fill its output pipe before it reads all of a
        // long script.
        let output = std::thread::scope(|scope| {
            scope.spawn(move || {
                let _ = stdin.write_all(sql.as_bytes());
            });
            child.wait_with_output().expect("wait for psql")
        });
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        }
    }
}

/// `cp -a from to`: the copy keeps owners and modes (the server's user owns the cluster).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(status.success(), "cp -a {} {}", from.display(), to.display());
}
