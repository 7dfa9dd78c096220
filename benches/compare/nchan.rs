//! nginx + Nchan, started from `benches/nchan.conf.template` on a loopback port.

use std::path::{Path, PathBuf};

use crate::nginx::{self, Nginx};
use crate::servers::{HISTORY, KEEP_ALIVE};

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

/// Starts nginx with Nchan, each worker allowed `nofile` connections (at most 65 536).
pub fn start(nofile: u64) -> Result<Nginx, String> {
    let (binary, module) = find()?;
    let fields = [
        ("LOAD_MODULE", format!("load_module {};", module.display())),
        // One worker per core, as nginx's own default configuration does.
        ("WORKERS", "auto".to_owned()),
        ("NOFILE", nofile.min(65_536).to_string()),
        ("HISTORY", HISTORY.to_string()),
        ("KEEP_ALIVE", KEEP_ALIVE.as_secs().to_string()),
    ];
    nginx::start(&binary, "eventstream-bench-nchan", TEMPLATE, &fields)
}
