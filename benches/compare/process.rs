//! The processes this program starts: the servers under test (this binary re-executed as
//! `--serve <kind> <port>`, or nginx) and the idle connection holders (`--hold`), each
//! remembered so that an overrunning run can kill them.

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::kind::Kind;
use crate::nchan::Nchan;
use crate::{nchan, procfs};

/// Processes this program started, killed (by id) if the run overruns its time limit.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn register(pid: u32) {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
}

/// Sends `SIGKILL` to every process this program started.
pub fn kill_all() {
    for &pid in CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        signal(pid, "KILL");
    }
}

pub use crate::nginx::signal;

/// Starts this binary with `args` and waits (at most `limit`) for the first line it prints,
/// which tells whether it is ready. Its stdin is a pipe held by the returned [`Child`]: the
/// child exits when that closes, even if this process crashes.
pub fn spawn_self(args: &[&str], limit: Duration) -> Result<(Child, String), String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting `{}`: {e}", args.join(" ")))?;
    register(child.id());
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(limit).unwrap_or_default();
    Ok((child, line.trim().to_owned()))
}

/// Kills a child this program started, and reaps it.
pub fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

enum Process {
    Rust(Child),
    Nginx(Nchan),
}

/// A server under test, running in a process of its own.
pub struct Server {
    pub kind: Kind,
    pub port: u16,
    process: Process,
}

impl Server {
    /// Starts server `kind` serving `app` (`None`: the chat router; else a
    /// `topics_servers.rs` app) on a free loopback port; nginx's workers get `nofile`.
    pub fn start(kind: Kind, app: Option<&str>, nofile: u64) -> Result<Server, String> {
        let (process, port) = if kind == Kind::Nchan {
            let nginx = nchan::start(nofile)?;
            nginx.pids().into_iter().for_each(register);
            let port = nginx.port();
            (Process::Nginx(nginx), port)
        } else {
            let mut args = vec!["--serve", kind.name(), "0"];
            args.extend(app);
            let (child, line) = spawn_self(&args, Duration::from_secs(10))?;
            match line.strip_prefix("READY ").and_then(|port| port.parse().ok()) {
                Some(port) => (Process::Rust(child), port),
                None => {
                    stop(child);
                    return Err(format!("the {} server did not start: {line:?}", kind.name()));
                }
            }
        };
        Ok(Server { kind, port, process })
    }

    fn pids(&self) -> Vec<u32> {
        match &self.process {
            Process::Rust(child) => vec![child.id()],
            Process::Nginx(nginx) => nginx.pids(),
        }
    }

    /// Resident memory in KiB: RSS of the one process, or the summed PSS of nginx's master
    /// and workers (their shared zone counted once).
    pub fn memory_kib(&self) -> u64 {
        match &self.process {
            Process::Rust(child) => procfs::rss_kib(child.id()),
            Process::Nginx(nginx) => nginx.pids().into_iter().map(procfs::pss_kib).sum(),
        }
    }

    /// User plus system CPU seconds used so far (every thread and worker).
    pub fn cpu_seconds(&self) -> f64 {
        self.pids().into_iter().map(procfs::cpu_seconds).sum()
    }

    /// The system (kernel) part of [`Server::cpu_seconds`].
    pub fn system_cpu_seconds(&self) -> f64 {
        self.pids().into_iter().map(|pid| procfs::cpu_split(pid).1).sum()
    }

    /// Write system calls so far (every thread and worker).
    pub fn write_syscalls(&self) -> u64 {
        self.pids().into_iter().map(|pid| procfs::syscalls(pid).1).sum()
    }

    pub fn stop(self) {
        match self.process {
            Process::Rust(child) => stop(child),
            Process::Nginx(nginx) => nginx.stop(),
        }
    }
}
