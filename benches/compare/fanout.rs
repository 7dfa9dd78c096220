//! 1. Fan-out: every subscriber receives every event, published through the server's own
//!    HTTP route while it fans out; deliveries per second, the time publishing took, write
//!    calls per subscriber, the server's CPU time per delivery and (with one publisher, the
//!    "publish under fan-out" runs) publish-to-receive p50 and p99.
//!
//! With one publisher, each event is POSTed when the previous one is answered: a server whose
//! publish answer waits behind the fan-out it triggers publishes slowly, gathers fewer events
//! per wake-up, and so writes more often per subscriber for the same events — the loop every
//! application that publishes while it fans out lives in. Each server's figures are the
//! medians of its rounds.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::client;
use crate::load;
use crate::notify::median;
use crate::process::Server;
use crate::procfs;
use crate::scenario::{self, Scenario};
use crate::settings::Settings;
use crate::table::{Cell, Row, Unit};

/// One fan-out run: its sizes.
pub struct FanOut<'a> {
    pub settings: &'a Settings,
    pub subscribers: usize,
    pub publishers: usize,
}

impl FanOut<'_> {
    /// Publish-to-receive percentiles are read only with one publisher: timestamps parsed by
    /// 10 000 readers would otherwise load the generator in the runs that measure capacity.
    fn timed(&self) -> bool {
        self.publishers == 1
    }
}

pub struct Figures {
    deliveries_per_sec: f64,
    cpu_per_delivery_us: f64,
    writes_per_subscriber: f64,
    publish_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    complete: bool,
    rounds: usize,
}

impl Scenario for FanOut<'_> {
    type Figures = Figures;
    const NAME: &'static str = "fanout";

    fn rows(&self) -> Vec<Row> {
        let s = self.settings;
        let publishers = match self.publishers {
            1 => "1 publisher".to_owned(),
            n => format!("{n} publishers"),
        };
        let sizes = format!(
            "{} subs × {} events, {publishers}",
            self.subscribers, s.fanout_events
        );
        let mut rows = vec![
            Row::new(format!("fan-out deliveries/s ({sizes})"), Unit::PerSecond),
            Row::new(format!("fan-out server CPU per delivery ({sizes})"), Unit::Micros),
            Row::new(
                format!("fan-out write calls per subscriber ({sizes})"),
                Unit::Count,
            ),
            Row::new(format!("fan-out publish time ({sizes})"), Unit::Millis),
        ];
        if self.timed() {
            rows.push(Row::new(
                format!("fan-out publish-to-receive p50 ({sizes})"),
                Unit::Millis,
            ));
            rows.push(Row::new(
                format!("fan-out publish-to-receive p99 ({sizes})"),
                Unit::Millis,
            ));
        }
        rows
    }

    fn rounds(&self) -> usize {
        self.settings.rounds
    }

    async fn measure(&self, servers: &[Server]) -> Vec<Result<Figures, String>> {
        scenario::each(servers, |server| self.fan_out(server)).await
    }

    fn complete(&self, figures: &Figures) -> bool {
        figures.complete
    }

    /// The median of each figure over the rounds: the best round flatters whichever server
    /// had a lucky one.
    fn settle(&self, rounds: Vec<Figures>) -> Figures {
        let of = |figure: fn(&Figures) -> f64| median(rounds.iter().map(figure).collect());
        Figures {
            deliveries_per_sec: of(|r| r.deliveries_per_sec),
            cpu_per_delivery_us: of(|r| r.cpu_per_delivery_us),
            writes_per_subscriber: of(|r| r.writes_per_subscriber),
            publish_ms: of(|r| r.publish_ms),
            p50_ms: of(|r| r.p50_ms),
            p99_ms: of(|r| r.p99_ms),
            complete: rounds.iter().all(|r| r.complete),
            rounds: rounds.len(),
        }
    }

    fn summary(&self, r: &Figures) -> String {
        let mut line = format!(
            "{:.0} k deliveries/s, {:.2} µs server CPU per delivery, {:.1} writes per subscriber, published in {:.0} ms",
            r.deliveries_per_sec / 1e3,
            r.cpu_per_delivery_us,
            r.writes_per_subscriber,
            r.publish_ms,
        );
        if self.timed() {
            line.push_str(&format!(", p50 {:.1} ms, p99 {:.1} ms", r.p50_ms, r.p99_ms));
        }
        if !r.complete {
            line.push_str(" (incomplete)");
        }
        line
    }

    fn cells(&self, r: &Figures) -> Vec<Cell> {
        let note = match (r.complete, r.rounds) {
            (false, _) => Some("incomplete".to_owned()),
            (true, 1) => None,
            (true, n) => Some(format!("median of {n}")),
        };
        let cell = |value: f64| Cell::Value(value, note.clone());
        let mut cells = vec![
            cell(r.deliveries_per_sec),
            cell(r.cpu_per_delivery_us),
            cell(r.writes_per_subscriber),
            cell(r.publish_ms),
        ];
        if self.timed() {
            cells.extend([cell(r.p50_ms), cell(r.p99_ms)]);
        }
        cells
    }
}

impl FanOut<'_> {
    async fn fan_out(&self, server: &Server) -> Result<Figures, String> {
        let s = self.settings;
        let subscribers = self.subscribers;
        let phase = Instant::now();
        let (group, mut tasks) = scenario::subscribe_all(server, subscribers, self.timed()).await?;
        let connected = phase.elapsed();
        let mut publishers = Vec::new();
        for i in 0..self.publishers {
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
                let mut took = Vec::new();
                for _ in 0..share {
                    let at = load::now_us();
                    client::publish(&mut publisher, path, &load::payload(Some(at))).await?;
                    took.push(load::now_us() - at);
                }
                took.sort_unstable();
                if n == 0 && !took.is_empty() {
                    // How long one publish waits on a server that is fanning out.
                    let at = |p: usize| took[(took.len() * p / 100).min(took.len() - 1)];
                    println!(
                        "  (one publish's round trip: p50 {} µs, p90 {} µs, max {} µs)",
                        at(50),
                        at(90),
                        at(100)
                    );
                }
                Ok::<_, std::io::Error>(load::now_us())
            });
        }
        let complete = scenario::wait_all_done(&group, subscribers, s.fanout_limit).await;
        let end = if complete {
            group.last_done_us.load(Ordering::Acquire)
        } else {
            load::now_us()
        };
        let server_cpu = server.cpu_seconds() - cpu_before;
        let writes = server.write_syscalls() - writes_before;
        tasks.abort_all();
        // Publishers still at work when the time ran out are abandoned.
        let (publish_error, published_at) = scenario::join_publishers(&mut publishing).await;
        println!(
            "  (all delivered after {:.2} s, server CPU {server_cpu:.2} s, load generator CPU {:.2} s)",
            (end - start) as f64 / 1e6,
            procfs::cpu_seconds(std::process::id()) - own_cpu_before
        );
        publishing.abort_all();
        if let Some(error) = publish_error {
            return Err(format!("publish: {error}"));
        }
        let delivered = group.delivered().min(events * subscribers as u64);
        let (p50_ms, p99_ms) = if self.timed() {
            let mut latencies = group.latencies();
            latencies.sort_unstable();
            let missing = (events * subscribers as u64).saturating_sub(latencies.len() as u64);
            (
                scenario::percentile_ms(&latencies, missing, 0.50),
                scenario::percentile_ms(&latencies, missing, 0.99),
            )
        } else {
            (f64::NAN, f64::NAN)
        };
        Ok(Figures {
            deliveries_per_sec: delivered as f64 / ((end - start) as f64 / 1e6),
            cpu_per_delivery_us: server_cpu * 1e6 / delivered.max(1) as f64,
            writes_per_subscriber: writes as f64 / subscribers as f64,
            publish_ms: published_at.saturating_sub(start) as f64 / 1e3,
            p50_ms,
            p99_ms,
            complete,
            rounds: 1,
        })
    }
}
