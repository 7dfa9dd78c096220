//! Running nginx from a configuration template, on a free loopback port, with every file it
//! writes in a fresh temporary directory. Shared by the tests (`tests/nginx.rs`) and the
//! comparison benchmark (`benches/compare`), which include this file by path; it depends on
//! the standard library only.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian (and source builds) put the nginx binary.
const BINARIES: &[&str] = &[
    "/usr/sbin/nginx",
    "/usr/local/sbin/nginx",
    "/usr/local/nginx/sbin/nginx",
];

/// The longest nginx may take to start listening.
const START_LIMIT: Duration = Duration::from_secs(10);

/// The longest a fast shutdown may take before the processes are killed.
const STOP_LIMIT: Duration = Duration::from_secs(5);

/// The nginx binary, if installed.
pub fn binary() -> Option<PathBuf> {
    BINARIES.iter().map(PathBuf::from).find(|path| path.exists())
}

/// A running nginx master and its workers.
pub struct Nginx {
    master: Child,
    dir: PathBuf,
    pub port: u16,
}

/// Starts `nginx` with `template`, its `{{NAME}}` fields filled from `fields` and, always,
/// `{{DIR}}` (a fresh directory for its pid file, logs and temporary files, removed by
/// [`Nginx::stop`]) and `{{PORT}}` (a free loopback port); returns once it accepts
/// connections on that port. `name` tells runs apart in the
/// directory's name.
///
/// The template must keep nginx in the foreground (`daemon off;`): the master is the process
/// started here.
pub fn start(nginx: &Path, name: &str, template: &str, fields: &[(&str, String)]) -> Result<Nginx, String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))?
        .port();
    let dir = std::env::temp_dir().join(format!("{name}-{}-{port}", std::process::id()));
    fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut config = template
        .replace("{{DIR}}", &dir.display().to_string())
        .replace("{{PORT}}", &port.to_string());
    for (field, value) in fields {
        config = config.replace(&format!("{{{{{field}}}}}"), value);
    }
    let config_path = dir.join("nginx.conf");
    let error_log = dir.join("error.log");
    fs::write(&config_path, config).map_err(|e| format!("writing {}: {e}", config_path.display()))?;
    let mut master = Command::new(nginx)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&config_path)
        .arg("-e")
        .arg(&error_log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", nginx.display()))?;
    let deadline = Instant::now() + START_LIMIT;
    loop {
        if let Ok(Some(status)) = master.try_wait() {
            let log = fs::read_to_string(&error_log).unwrap_or_default();
            let _ = fs::remove_dir_all(&dir);
            return Err(format!("nginx exited with {status}: {}", log.trim()));
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            let _ = master.kill();
            let _ = master.wait();
            let _ = fs::remove_dir_all(&dir);
            return Err(format!("nginx did not start listening within {START_LIMIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Nginx { master, dir, port })
}

impl Nginx {
    /// The master's process id.
    #[allow(dead_code)] // The tests never look for nginx's processes.
    pub fn master_pid(&self) -> u32 {
        self.master.id()
    }

    /// What nginx wrote to its error log so far.
    #[allow(dead_code)] // The benchmark reports failures without it.
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// Fast shutdown (SIGTERM to the master), then SIGKILL to `others` (its workers, say)
    /// and the master if still there after [`STOP_LIMIT`]; removes nginx's directory.
    #[allow(dead_code)] // The tests stop nginx by dropping it.
    pub fn stop(mut self, others: &[u32]) {
        let master = self.master.id();
        signal(master, "TERM");
        let deadline = Instant::now() + STOP_LIMIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.master.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in others.iter().copied().chain([master]) {
            if Path::new(&format!("/proc/{pid}")).exists() {
                signal(pid, "KILL");
            }
        }
        let _ = self.master.wait();
    }
}

/// Kills the master (if [`Nginx::stop`] did not) and removes nginx's directory.
impl Drop for Nginx {
    fn drop(&mut self) {
        if let Ok(None) = self.master.try_wait() {
            let _ = self.master.kill();
            let _ = self.master.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Sends signal `name` (`TERM`, `KILL`) to process `pid` through `kill(1)` (no `unsafe`
/// libc call).
pub fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
