//! Scenarios 3 and 4, idle, for every server at once: memory per idle SSE connection, then
//! CPU time over the idle window (a keep-alive every 15 s on each connection). Each
//! server's connections are held by a process of this binary of its own (`--hold`), within
//! its own file limit.

use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use crate::load;
use crate::process::{self, Server};
use crate::procfs;
use crate::scenario::{self, Scenario};
use crate::settings::Settings;
use crate::table::{Cell, Row, Unit};

pub struct Idle<'a>(pub &'a Settings);

pub struct Figures {
    kib_per_connection: f64,
    cpu_percent: f64,
    /// The kernel's part of `cpu_percent` (sending keep-alives over loopback TCP).
    system_cpu_percent: f64,
}

impl Scenario for Idle<'_> {
    type Figures = Figures;
    const NAME: &'static str = "idle";
    const AT_ONCE: bool = true;

    fn rows(&self) -> Vec<Row> {
        let s = self.0;
        vec![
            Row::new(
                format!("idle memory per connection ({} open)", s.idle_connections),
                Unit::KiB,
            ),
            Row::new(
                format!("idle CPU over {} s, % of a core", s.idle_secs),
                Unit::Percent,
            ),
        ]
    }

    async fn measure(&self, servers: &[Server]) -> Vec<Result<Figures, String>> {
        idle_all(servers, self.0).await
    }

    fn summary(&self, r: &Figures) -> String {
        format!(
            "{:.1} KiB per idle connection, {:.3} % of a core",
            r.kib_per_connection, r.cpu_percent
        )
    }

    fn cells(&self, r: &Figures) -> Vec<Cell> {
        vec![
            Cell::Value(r.kib_per_connection, None),
            Cell::Value(
                r.cpu_percent,
                Some(format!("kernel {:.2} %", r.system_cpu_percent)),
            ),
        ]
    }
}

async fn idle_all(servers: &[Server], s: &Settings) -> Vec<Result<Figures, String>> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut held = Vec::new();
    for server in servers {
        let before = server.memory_kib();
        let holder = start_holder(server, s.idle_connections);
        held.push((server, before, holder));
    }
    tokio::time::sleep(Duration::from_secs(if s.smoke { 1 } else { 3 })).await;
    let measured: Vec<_> = held
        .iter()
        .map(|(server, before, _)| {
            let kib = server.memory_kib().saturating_sub(*before) as f64 / s.idle_connections as f64;
            (kib, (server.cpu_seconds(), server.system_cpu_seconds()))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(s.idle_secs)).await;
    let mut results = Vec::new();
    for ((server, _, holder), (kib, (cpu_before, system_before))) in held.into_iter().zip(measured) {
        let cpu = server.cpu_seconds() - cpu_before;
        let system = server.system_cpu_seconds() - system_before;
        results.push(holder.map(|holder| {
            process::stop(holder);
            Figures {
                kib_per_connection: kib,
                cpu_percent: cpu / s.idle_secs as f64 * 100.0,
                system_cpu_percent: system / s.idle_secs as f64 * 100.0,
            }
        }));
    }
    results
}

/// Starts a process of this binary (`--hold`) holding `count` idle SSE connections to
/// `server`; returns once they are all open.
fn start_holder(server: &Server, count: usize) -> Result<Child, String> {
    let port = server.port.to_string();
    let count = count.to_string();
    let args = ["--hold", &port, server.kind.sse_path(), &count];
    let (child, line) = process::spawn_self(&args, Duration::from_secs(150))?;
    if line == "HELD" {
        return Ok(child);
    }
    process::stop(child);
    Err(match line.strip_prefix("FAILED ") {
        Some(reason) => reason.to_owned(),
        None => "the holder did not report".to_owned(),
    })
}

/// `--hold <port> <path> <count>`: connects `count` SSE subscribers, prints `HELD` (or
/// `FAILED <reason>`), and holds them, reading, until the parent closes our stdin.
pub fn hold(args: &[String]) -> ! {
    let port: u16 = args.first().and_then(|p| p.parse().ok()).unwrap_or(0);
    let path: Arc<str> = Arc::from(args.get(1).map_or("/", String::as_str));
    let count: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(0);
    procfs::raise_fd_limit();
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin().lock();
        while matches!(std::io::Read::read(&mut stdin, &mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let connected = scenario::connect_readers(count, |group, i, connecting| {
            load::sse_subscriber(group, i, port, Arc::clone(&path), false, connecting)
        })
        .await;
        match &connected {
            Ok(_) => println!("HELD"),
            Err(error) => println!("FAILED {error}"),
        }
        // The readers live as long as `connected`: until the parent closes our stdin.
        std::future::pending::<()>().await
    });
    unreachable!("holding ends with the process")
}
