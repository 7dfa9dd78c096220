//! 1. Fan-out: every subscriber receives every event, published as fast as the server
//!    accepts them; deliveries per second and the server's CPU time per delivery.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::client;
use crate::load;
use crate::process::Server;
use crate::procfs;
use crate::scenario::{self, Scenario};
use crate::settings::Settings;
use crate::table::{Cell, Row, Unit};

pub struct FanOut<'a>(pub &'a Settings);

pub struct Figures {
    deliveries_per_sec: f64,
    cpu_per_delivery_us: f64,
    complete: bool,
}

impl Scenario for FanOut<'_> {
    type Figures = Figures;
    const NAME: &'static str = "fanout";

    fn rows(&self) -> Vec<Row> {
        let s = self.0;
        vec![
            Row::new(
                format!(
                    "fan-out deliveries/s ({} subs × {} events)",
                    s.fanout_subscribers, s.fanout_events
                ),
                Unit::PerSecond,
            ),
            Row::new("fan-out server CPU per delivery", Unit::Micros),
        ]
    }

    fn rounds(&self) -> usize {
        self.0.rounds
    }

    async fn measure(&self, servers: &[Server]) -> Vec<Result<Figures, String>> {
        scenario::each(servers, |server| fan_out(server, self.0)).await
    }

    fn complete(&self, figures: &Figures) -> bool {
        figures.complete
    }

    fn better(&self, new: &Figures, best: &Figures) -> bool {
        new.deliveries_per_sec > best.deliveries_per_sec
    }

    fn summary(&self, r: &Figures) -> String {
        format!(
            "{:.0} k deliveries/s, {:.2} µs server CPU per delivery{}",
            r.deliveries_per_sec / 1e3,
            r.cpu_per_delivery_us,
            if r.complete { "" } else { " (incomplete)" }
        )
    }

    fn cells(&self, r: &Figures) -> Vec<Cell> {
        vec![
            Cell::measured(r.deliveries_per_sec, r.complete),
            Cell::measured(r.cpu_per_delivery_us, r.complete),
        ]
    }
}

async fn fan_out(server: &Server, s: &Settings) -> Result<Figures, String> {
    let phase = Instant::now();
    let (group, mut tasks) = scenario::subscribe_all(server, s.fanout_subscribers, false).await?;
    let connected = phase.elapsed();
    let mut publishers = Vec::new();
    for i in 0..s.fanout_publishers {
        publishers.push(scenario::open_publisher(250 + i, server.port).await?);
    }
    scenario::warm_up(server, &mut publishers[0], &group).await?;
    println!(
        "  (connected in {:.1} s, warm after {:.1} s)",
        connected.as_secs_f64(),
        phase.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;

    let events = s.fanout_events;
    group.target.store(events, Ordering::Release);
    let cpu_before = server.cpu_seconds();
    let writes_before = server.write_syscalls();
    let own_cpu_before = procfs::cpu_seconds(std::process::id());
    let start = load::now_us();
    let path = server.kind.publish_path();
    let mut publishing = JoinSet::new();
    let shares = publishers.len() as u64;
    for (n, mut publisher) in publishers.into_iter().enumerate() {
        let share = events / shares + u64::from((n as u64) < events % shares);
        publishing.spawn(async move {
            for _ in 0..share {
                client::publish(&mut publisher, path, &load::payload(Some(load::now_us()))).await?;
            }
            Ok::<_, std::io::Error>(load::now_us())
        });
    }
    let subscribers = s.fanout_subscribers;
    let complete = scenario::wait_all_done(&group, subscribers, s.fanout_limit).await;
    let end = if complete {
        group.last_done_us.load(Ordering::Acquire)
    } else {
        load::now_us()
    };
    let server_cpu = server.cpu_seconds() - cpu_before;
    let writes = server.write_syscalls() - writes_before;
    println!(
        "  ({:.1} write calls per subscriber for {events} events, server CPU {server_cpu:.2} s)",
        writes as f64 / subscribers as f64,
    );
    tasks.abort_all();
    // Publishers still at work when the time ran out are abandoned.
    let (publish_error, published_at) = scenario::join_publishers(&mut publishing).await;
    println!(
        "  (published in {:.2} s, all delivered after {:.2} s, load generator CPU {:.2} s)",
        published_at.saturating_sub(start) as f64 / 1e6,
        (end - start) as f64 / 1e6,
        procfs::cpu_seconds(std::process::id()) - own_cpu_before
    );
    publishing.abort_all();
    if let Some(error) = publish_error {
        return Err(format!("publish: {error}"));
    }
    let delivered = group.delivered().min(events * subscribers as u64);
    Ok(Figures {
        deliveries_per_sec: delivered as f64 / ((end - start) as f64 / 1e6),
        cpu_per_delivery_us: server_cpu * 1e6 / delivered.max(1) as f64,
        complete,
    })
}
