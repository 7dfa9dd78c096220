//! 5. Long poll: long pollers re-polling with their cursor while events are published at a
//!    fixed rate; deliveries per second and p99.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client;
use crate::kind::Kind;
use crate::load;
use crate::process::Server;
use crate::scenario::{self, Scenario};
use crate::settings::Settings;
use crate::table::{Cell, Row, Unit};

pub struct LongPoll<'a>(pub &'a Settings);

pub struct Figures {
    deliveries_per_sec: f64,
    p99_ms: f64,
    complete: bool,
}

impl Scenario for LongPoll<'_> {
    type Figures = Figures;
    const NAME: &'static str = "longpoll";
    // Reported as `incomplete` in the table, not as a failure.
    const INCOMPLETE_FAILS_SMOKE: bool = false;

    fn rows(&self) -> Vec<Row> {
        let s = self.0;
        vec![
            Row::new(
                format!(
                    "long poll deliveries/s ({} clients, {}/s)",
                    s.poll_clients, s.poll_rate
                ),
                Unit::PerSecond,
            ),
            Row::new("long poll p99", Unit::Millis),
        ]
    }

    fn applies(&self, kind: Kind) -> bool {
        kind.long_poll().is_some()
    }

    async fn measure(&self, servers: &[Server]) -> Vec<Result<Figures, String>> {
        scenario::each(servers, |server| long_poll(server, self.0)).await
    }

    fn complete(&self, figures: &Figures) -> bool {
        figures.complete
    }

    fn summary(&self, r: &Figures) -> String {
        format!(
            "{:.1} k deliveries/s, p99 {:.2} ms{}",
            r.deliveries_per_sec / 1e3,
            r.p99_ms,
            if r.complete { "" } else { " (incomplete)" }
        )
    }

    fn cells(&self, r: &Figures) -> Vec<Cell> {
        vec![
            Cell::measured(r.deliveries_per_sec, r.complete),
            Cell::measured(r.p99_ms, r.complete),
        ]
    }
}

async fn long_poll(server: &Server, s: &Settings) -> Result<Figures, String> {
    let phase = Instant::now();
    let (path, style) = server.kind.long_poll().ok_or("no long poll")?;
    let (port, path): (u16, Arc<str>) = (server.port, Arc::from(path));
    let clients = s.poll_clients;
    let (group, mut tasks) = scenario::connect_readers(clients, |group, i, connecting| {
        client::long_poller(group, i, port, Arc::clone(&path), style, connecting)
    })
    .await?;
    let mut publisher = scenario::open_publisher(250, server.port).await?;
    scenario::warm_up(server, &mut publisher, &group).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events = s.poll_rate * s.poll_secs;
    group.target.store(events, Ordering::Release);
    let start = load::now_us();
    let warm = phase.elapsed();
    let path = server.kind.publish_path();
    let publishing = client::publish_open_loop(251, server.port, path, s.poll_rate, events)
        .await
        .map_err(|e| format!("publish: {e}"))?;
    let published = phase.elapsed();
    let complete = scenario::wait_all_done(&group, clients, s.drain_limit).await;
    publishing.finish(Duration::from_millis(100)).await?;
    println!(
        "  (warm {:.1} s, published {:.1} s, drained {:.1} s)",
        warm.as_secs_f64(),
        published.as_secs_f64(),
        phase.elapsed().as_secs_f64()
    );
    let end = if complete {
        group.last_done_us.load(Ordering::Acquire)
    } else {
        load::now_us()
    };
    tasks.abort_all();
    if group.failed.load(Ordering::Acquire) > 0 {
        return Err(format!("long pollers failed: {}", group.error()));
    }
    let delivered = group.delivered().min(events * clients as u64);
    let mut latencies = group.latencies();
    latencies.sort_unstable();
    let missing = (events * clients as u64).saturating_sub(latencies.len() as u64);
    Ok(Figures {
        deliveries_per_sec: delivered as f64 / ((end - start) as f64 / 1e6),
        p99_ms: scenario::percentile_ms(&latencies, missing, 0.99),
        complete,
    })
}
