//! 2. Latency: publish-to-receive p50 and p99 at a fixed publishing rate (pipelined, so a
//!    slow server gets a backlog rather than a slower publisher; the publish time travels in
//!    the event's data).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::client;
use crate::process::Server;
use crate::scenario::{self, Scenario};
use crate::settings::Settings;
use crate::table::{Cell, Row, Unit};

pub struct Latency<'a>(pub &'a Settings);

pub struct Figures {
    p50_ms: f64,
    p99_ms: f64,
    complete: bool,
}

impl Scenario for Latency<'_> {
    type Figures = Figures;
    const NAME: &'static str = "latency";

    fn rows(&self) -> Vec<Row> {
        let s = self.0;
        let label = |p| {
            format!(
                "latency {p} ({} subs, {}/s)",
                s.latency_subscribers, s.latency_rate
            )
        };
        vec![
            Row::new(label("p50"), Unit::Millis),
            Row::new(label("p99"), Unit::Millis),
        ]
    }

    fn rounds(&self) -> usize {
        self.0.rounds
    }

    async fn measure(&self, servers: &[Server]) -> Vec<Result<Figures, String>> {
        scenario::each(servers, |server| latency(server, self.0)).await
    }

    fn complete(&self, figures: &Figures) -> bool {
        figures.complete
    }

    fn better(&self, new: &Figures, best: &Figures) -> bool {
        new.p99_ms < best.p99_ms
    }

    fn summary(&self, r: &Figures) -> String {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms{}",
            r.p50_ms,
            r.p99_ms,
            if r.complete { "" } else { " (incomplete)" }
        )
    }

    fn cells(&self, r: &Figures) -> Vec<Cell> {
        vec![
            Cell::measured(r.p50_ms, r.complete),
            Cell::measured(r.p99_ms, r.complete),
        ]
    }
}

async fn latency(server: &Server, s: &Settings) -> Result<Figures, String> {
    let phase = Instant::now();
    let (group, mut tasks) = scenario::subscribe_all(server, s.latency_subscribers, true).await?;
    let connected = phase.elapsed();
    let mut publisher = scenario::open_publisher(250, server.port).await?;
    scenario::warm_up(server, &mut publisher, &group).await?;
    let warm = phase.elapsed();
    let events = s.latency_rate * s.latency_secs;
    group.target.store(events, Ordering::Release);
    let path = server.kind.publish_path();
    let publishing = client::publish_open_loop(251, server.port, path, s.latency_rate, events)
        .await
        .map_err(|e| format!("publish: {e}"))?;
    let published = phase.elapsed();
    let subscribers = s.latency_subscribers;
    let complete = scenario::wait_all_done(&group, subscribers, s.drain_limit).await;
    tasks.abort_all();
    publishing.finish(Duration::from_millis(100)).await?;
    let mut latencies = group.latencies();
    latencies.sort_unstable();
    // Events not delivered by the end count as slower than every delivered one.
    let missing = (events * subscribers as u64).saturating_sub(latencies.len() as u64);
    println!(
        "  (connected {:.1} s, warm {:.1} s, published {:.1} s, drained {:.1} s; max {:.0} ms, {missing} not delivered)",
        connected.as_secs_f64(),
        warm.as_secs_f64(),
        published.as_secs_f64(),
        phase.elapsed().as_secs_f64(),
        latencies.last().map_or(0.0, |&us| us as f64 / 1000.0)
    );
    Ok(Figures {
        p50_ms: scenario::percentile_ms(&latencies, missing, 0.50),
        p99_ms: scenario::percentile_ms(&latencies, missing, 0.99),
        complete,
    })
}
