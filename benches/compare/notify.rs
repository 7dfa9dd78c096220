//! 7. Per-user notifications: many topics with one SSE subscriber each (a user's own
//!    stream), events POSTed to random topics. Memory per idle topic and subscriber (the
//!    server's RSS before and after connecting, as in `idle.rs`), then deliveries per second
//!    and publish-to-receive p50 and p99 (the publish time travels in the event's data, as
//!    in `latency.rs`) while `fanout_publishers` publishers each POST the next event as soon
//!    as the previous one is answered. Servers: `topics_servers.rs`; each server's figures
//!    are the medians of its rounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::client;
use crate::kind::Kind;
use crate::load;
use crate::process::Server;
use crate::scenario::{self, Scenario};
use crate::settings::Settings;
use crate::table::{Cell, Row, Unit};
use crate::topics_servers::{self, TOPICS};

pub struct Notify<'a>(pub &'a Settings);

pub struct Figures {
    kib_per_topic: f64,
    deliveries_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    complete: bool,
    rounds: usize,
}

/// Topic `i`'s key.
fn topic(i: usize) -> String {
    format!("user-{i}")
}

impl Scenario for Notify<'_> {
    type Figures = Figures;
    const NAME: &'static str = "notify";

    fn rows(&self) -> Vec<Row> {
        let s = self.0;
        vec![
            Row::new(
                format!(
                    "notify: memory per idle topic + subscriber ({} topics)",
                    s.notify_topics
                ),
                Unit::KiB,
            ),
            Row::new(
                format!(
                    "notify: deliveries/s ({} events to random topics)",
                    s.notify_events
                ),
                Unit::PerSecond,
            ),
            Row::new("notify: publish-to-receive p50", Unit::Millis),
            Row::new("notify: publish-to-receive p99", Unit::Millis),
        ]
    }

    fn rounds(&self) -> usize {
        self.0.rounds
    }

    fn applies(&self, kind: Kind) -> bool {
        matches!(kind, Kind::Crate | Kind::CrateServer | Kind::Axum)
    }

    fn app(&self) -> Option<&'static str> {
        Some(TOPICS)
    }

    async fn measure(&self, servers: &[Server]) -> Vec<Result<Figures, String>> {
        scenario::each(servers, |server| notify(server, self.0)).await
    }

    fn complete(&self, figures: &Figures) -> bool {
        figures.complete
    }

    /// The median of each figure over the rounds.
    fn settle(&self, rounds: Vec<Figures>) -> Figures {
        let of = |figure: fn(&Figures) -> f64| median(rounds.iter().map(figure).collect());
        Figures {
            kib_per_topic: of(|r| r.kib_per_topic),
            deliveries_per_sec: of(|r| r.deliveries_per_sec),
            p50_ms: of(|r| r.p50_ms),
            p99_ms: of(|r| r.p99_ms),
            complete: rounds.iter().all(|r| r.complete),
            rounds: rounds.len(),
        }
    }

    fn summary(&self, r: &Figures) -> String {
        format!(
            "{:.2} KiB per topic, {:.1} k deliveries/s, p50 {:.2} ms, p99 {:.2} ms{}",
            r.kib_per_topic,
            r.deliveries_per_sec / 1e3,
            r.p50_ms,
            r.p99_ms,
            if r.complete { "" } else { " (incomplete)" }
        )
    }

    fn cells(&self, r: &Figures) -> Vec<Cell> {
        let note = |complete: bool| match (complete, r.rounds) {
            (false, _) => Some("incomplete".to_owned()),
            (true, 1) => None,
            (true, n) => Some(format!("median of {n}")),
        };
        vec![
            Cell::Value(r.kib_per_topic, note(true)),
            Cell::Value(r.deliveries_per_sec, note(r.complete)),
            Cell::Value(r.p50_ms, note(r.complete)),
            Cell::Value(r.p99_ms, note(r.complete)),
        ]
    }
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// A small deterministic generator (SplitMix64): every server gets the same topics in the
/// same order.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

async fn notify(server: &Server, s: &Settings) -> Result<Figures, String> {
    let phase = Instant::now();
    let topics = s.notify_topics;
    // Let the new server settle before its memory counts as the baseline.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.memory_kib();
    let port = server.port;
    let (group, mut tasks) = scenario::connect_readers(topics, |group, i, connecting| {
        let path: Arc<str> = Arc::from(topics_servers::subscribe_path(&topic(i)));
        load::sse_subscriber(group, i, port, path, true, connecting)
    })
    .await?;
    let connected = phase.elapsed();
    tokio::time::sleep(Duration::from_secs(if s.smoke { 1 } else { 3 })).await;
    let after = server.memory_kib();
    let kib_per_topic = after.saturating_sub(before) as f64 / topics as f64;

    let mut publishers = Vec::new();
    for i in 0..s.fanout_publishers {
        publishers.push(scenario::open_publisher(250 + i, port).await?);
    }
    let (live, subscribers) = topics_servers::stats(&mut publishers[0]).await?;
    if (live, subscribers) != (topics, topics) {
        return Err(format!(
            "the server counts {live} topics and {subscribers} subscribers, not {topics} of each"
        ));
    }

    let events = s.notify_events;
    let start = load::now_us();
    let mut publishing = JoinSet::new();
    let shares = publishers.len() as u64;
    for (n, mut publisher) in publishers.into_iter().enumerate() {
        let share = events / shares + u64::from((n as u64) < events % shares);
        let mut random = SplitMix(n as u64 + 1);
        publishing.spawn(async move {
            for _ in 0..share {
                let path = topics_servers::publish_path(&topic(random.next() as usize % topics));
                client::publish(&mut publisher, &path, &load::payload(Some(load::now_us()))).await?;
            }
            Ok::<_, std::io::Error>(load::now_us())
        });
    }
    let complete = scenario::wait_for(s.fanout_limit, || group.delivered() >= events).await;
    let end = load::now_us();
    tasks.abort_all();
    // Publishers still at work when the time ran out are abandoned.
    let (publish_error, published_at) = scenario::join_publishers(&mut publishing).await;
    publishing.abort_all();
    if let Some(error) = publish_error {
        return Err(format!("publish: {error}"));
    }
    let delivered = group.delivered().min(events);
    let mut latencies = group.latencies();
    latencies.sort_unstable();
    let missing = events.saturating_sub(latencies.len() as u64);
    println!(
        "  (RSS {before} → {after} KiB; connected in {:.1} s; published in {:.2} s, delivered after {:.2} s; \
         max {:.0} ms, {missing} not delivered)",
        connected.as_secs_f64(),
        published_at.saturating_sub(start) as f64 / 1e6,
        (end - start) as f64 / 1e6,
        latencies.last().map_or(0.0, |&us| us as f64 / 1000.0)
    );
    Ok(Figures {
        kib_per_topic,
        deliveries_per_sec: delivered as f64 / ((end - start) as f64 / 1e6),
        p50_ms: scenario::percentile_ms(&latencies, missing, 0.50),
        p99_ms: scenario::percentile_ms(&latencies, missing, 0.99),
        complete,
        rounds: 1,
    })
}
