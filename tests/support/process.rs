//! This process and the programs a test starts: resident memory, free ports, scratch folders.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// This process's resident set size in bytes (`VmRSS` of `/proc/self/status`).
#[allow(dead_code)]
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|value| value.trim().parse().ok())
        .expect("a VmRSS line in kB");
    kib * 1024
}

/// `bytes` in MiB, for reports.
#[allow(dead_code)]
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A loopback port that was free a moment ago (for a program that binds it itself).
#[allow(dead_code)]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A fresh folder under the system's temporary folder for the files of a program a test
/// starts; removed with everything in it when dropped.
#[allow(dead_code)]
pub struct ScratchDir(PathBuf);

#[allow(dead_code)]
impl ScratchDir {
    /// `tower-eventstream-<what>-<pid>-<n>`, emptied if it was left over.
    pub fn new(what: &str) -> ScratchDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "tower-eventstream-{what}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a scratch folder");
        ScratchDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
