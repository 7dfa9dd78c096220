//! nginx + Nchan, started from `benches/nchan.conf.template` on a loopback port.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::procfs;
use crate::servers::{HISTORY, KEEP_ALIVE};

const TEMPLATE: &str = include_str!("../nchan.conf.template");

/// Where Debian (and source builds) put the module.
const MODULE_DIRS: &[&str] = &[
    "/usr/lib/nginx/modules",
    "/usr/share/nginx/modules",
    "/usr/local/nginx/modules",
];
const NGINX_BINARIES: &[&str] = &[
    "/usr/sbin/nginx",
    "/usr/local/sbin/nginx",
    "/usr/local/nginx/sbin/nginx",
];

/// nginx's binary and the Nchan module, or why they cannot be used.
pub fn find() -> Result<(PathBuf, PathBuf), String> {
    let nginx = NGINX_BINARIES
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .ok_or("nginx is not installed (Debian: nginx-light)")?;
    let module = MODULE_DIRS
        .iter()
        .map(|dir| Path::new(dir).join("ngx_nchan_module.so"))
        .find(|path| path.exists())
        .ok_or("the Nchan module is not installed (Debian: libnginx-mod-nchan)")?;
    Ok((nginx, module))
}

/// A running nginx master (and its workers).
pub struct Nginx {
    master: Child,
    workers: Vec<u32>,
    dir: PathBuf,
    pub port: u16,
}

impl Nginx {
    pub fn start(nofile: u64) -> Result<Nginx, String> {
        let (nginx, module) = find()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| format!("finding a free port: {e}"))?
            .port();
        let dir = std::env::temp_dir().join(format!("eventstream-bench-nchan-{}-{port}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let config = TEMPLATE
            .replace("{{LOAD_MODULE}}", &format!("load_module {};", module.display()))
            // One worker per core, as nginx's own default configuration does.
            .replace("{{WORKERS}}", "auto")
            .replace("{{NOFILE}}", &nofile.min(65_536).to_string())
            .replace("{{DIR}}", &dir.display().to_string())
            .replace("{{PORT}}", &port.to_string())
            .replace("{{HISTORY}}", &HISTORY.to_string())
            .replace("{{KEEP_ALIVE}}", &KEEP_ALIVE.as_secs().to_string());
        let config_path = dir.join("nginx.conf");
        fs::write(&config_path, config).map_err(|e| format!("writing {}: {e}", config_path.display()))?;
        let mut master = Command::new(&nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&config_path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", nginx.display()))?;
        crate::register_child(master.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = master.try_wait() {
                let log = fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                return Err(format!("nginx exited with {status}: {}", log.trim()));
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let _ = master.kill();
                return Err("nginx did not start listening within 10 s".to_owned());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The workers are forked right after the listener opens.
        std::thread::sleep(Duration::from_millis(200));
        let workers = procfs::children(master.id());
        workers.iter().for_each(|&pid| crate::register_child(pid));
        Ok(Nginx {
            master,
            workers,
            dir,
            port,
        })
    }

    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.master.id()];
        pids.extend(&self.workers);
        pids
    }

    /// Fast shutdown (SIGTERM), then SIGKILL for anything still there after 5 s.
    pub fn stop(mut self) {
        let master = self.master.id();
        // SAFETY: kill only sends a signal, to a process this program started.
        unsafe { libc::kill(master as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.master.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in self.workers.iter().copied().chain([master]) {
            if Path::new(&format!("/proc/{pid}")).exists() {
                // SAFETY: as above; these are our nginx's master and workers.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
        let _ = self.master.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
