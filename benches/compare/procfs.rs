//! Reading a server's memory and CPU time from `/proc`, and raising our own file limit.

use std::fs;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit now in force.
/// Server processes started afterwards inherit it.
///
/// The limits are read from `/proc/self/limits` and raised by util-linux's `prlimit`, so
/// that no `unsafe` call is needed; without `prlimit` the limit stays as it was.
pub fn raise_fd_limit() -> u64 {
    let Some((soft, hard)) = open_files_limits() else {
        return 1024;
    };
    if soft < hard {
        let hard_text = if hard == u64::MAX {
            "unlimited".to_owned()
        } else {
            hard.to_string()
        };
        let raised = Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={hard_text}:{hard_text}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if raised.is_ok_and(|status| status.success()) {
            return open_files_limits().map_or(soft, |(soft, _)| soft);
        }
    }
    soft
}

/// The soft and hard limits on open files (`u64::MAX`: unlimited).
fn open_files_limits() -> Option<(u64, u64)> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    let mut values = line["Max open files".len()..]
        .split_whitespace()
        .map(|value| match value {
            "unlimited" => Some(u64::MAX),
            number => number.parse().ok(),
        });
    Some((values.next()??, values.next()??))
}

/// Clock ticks per second, the unit of `/proc/<pid>/stat`'s CPU times (`getconf CLK_TCK`,
/// asked once).
fn clock_ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .stderr(Stdio::null())
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok()?.trim().parse::<f64>().ok())
            .filter(|&ticks| ticks > 0.0)
            .unwrap_or(100.0)
    })
}

/// The fields of `/proc/<pid>/stat` after the command name (field 3, the state, is index 0).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    Some(after_name.split_whitespace().map(str::to_owned).collect())
}

/// User plus system CPU seconds used by `pid` so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let (user, system) = cpu_split(pid);
    user + system
}

/// User and system CPU seconds used by `pid` so far, apart.
pub fn cpu_split(pid: u32) -> (f64, f64) {
    let Some(fields) = stat_fields(pid) else {
        return (0.0, 0.0);
    };
    // utime and stime are fields 14 and 15 of the whole line.
    let seconds = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0) as f64;
    let ticks = clock_ticks_per_second();
    (seconds(11) / ticks, seconds(12) / ticks)
}

/// The direct children of `pid` (nginx's workers under its master).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&candidate| {
            stat_fields(candidate)
                .and_then(|fields| fields.get(1)?.parse::<u32>().ok())
                .is_some_and(|parent| parent == pid)
        })
        .collect()
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Resident set size in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// Proportional set size in KiB: memory shared between processes (nginx's shared zone,
/// libraries) is split between them, so the sum over a process group is its real total.
pub fn pss_kib(pid: u32) -> u64 {
    let Ok(rollup) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
        return rss_kib(pid);
    };
    rollup
        .lines()
        .find_map(|line| line.strip_prefix("Pss:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The machine, for the report: core count and CPU model.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{cores} cores, {model}")
}

/// Read and write system calls made by `pid` so far (`syscr`, `syscw` of `/proc/<pid>/io`).
pub fn syscalls(pid: u32) -> (u64, u64) {
    let Ok(io) = fs::read_to_string(format!("/proc/{pid}/io")) else {
        return (0, 0);
    };
    let field = |name: &str| {
        io.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("syscr:"), field("syscw:"))
}
