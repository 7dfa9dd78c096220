//! nginx + Nchan, started from `benches/nchan.conf.template` on a loopback port.

use std::path::{Path, PathBuf};

use std::time::Duration;

use crate::nginx::{self, Nginx};
use crate::procfs;
use crate::settings::{HISTORY, KEEP_ALIVE};

const TEMPLATE: &str = include_str!("../nchan.conf.template");

/// Where Debian (and source builds) put the module.
const MODULE_DIRS: &[&str] = &[
    "/usr/lib/nginx/modules",
    "/usr/share/nginx/modules",
    "/usr/local/nginx/modules",
];

/// nginx's binary and the Nchan module, or why they cannot be used.
pub fn find() -> Result<(PathBuf, PathBuf), String> {
    let nginx = nginx::binary().ok_or("nginx is not installed (Debian: nginx-light)")?;
    let module = MODULE_DIRS
        .iter()
        .map(|dir| Path::new(dir).join("ngx_nchan_module.so"))
        .find(|path| path.exists())
        .ok_or("the Nchan module is not installed (Debian: libnginx-mod-nchan)")?;
    Ok((nginx, module))
}

/// nginx with Nchan, and its workers (whose memory and CPU count with the master's).
pub struct Nchan {
    nginx: Nginx,
    workers: Vec<u32>,
}

impl Nchan {
    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.nginx.port
    }

    /// The master's and the workers' process ids.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.nginx.master_pid()];
        pids.extend(&self.workers);
        pids
    }

    /// Stops the master, then kills any worker left.
    pub fn stop(self) {
        self.nginx.stop(&self.workers);
    }
}

/// Starts nginx with Nchan, each worker allowed `nofile` connections (at most 65 536).
pub fn start(nofile: u64) -> Result<Nchan, String> {
    let (binary, module) = find()?;
    let fields = [
        ("LOAD_MODULE", format!("load_module {};", module.display())),
        // One worker per core, as nginx's own default configuration does.
        ("WORKERS", "auto".to_owned()),
        ("NOFILE", nofile.min(65_536).to_string()),
        ("HISTORY", HISTORY.to_string()),
        ("KEEP_ALIVE", KEEP_ALIVE.as_secs().to_string()),
    ];
    let nginx = nginx::start(&binary, "eventstream-bench-nchan", TEMPLATE, &fields)?;
    // The workers are forked right after the listener opens.
    std::thread::sleep(Duration::from_millis(200));
    let workers = procfs::children(nginx.master_pid());
    Ok(Nchan { nginx, workers })
}
