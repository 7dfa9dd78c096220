//! 8. Topic churn, for the crate's servers (the axum baseline never evicts): in each cycle
//!    `churn_subscribers` subscribers join fresh topics, two to a topic, an event is
//!    published to each topic and received by both, one subscriber of each topic leaves
//!    (the topics stay), then the other (the topics are evicted, `idle_eviction(100 ms)`;
//!    the load generator waits, by the server's `/stats`, until none is left). The server's
//!    RSS after one such cycle, then after `churn_cycles` more: growth is memory the churn
//!    keeps. The first cycle is not counted: it fills the allocator's pools and caches,
//!    which stay with the process whatever happens next (its RSS before any connection is
//!    shown beside). Each server's figures are the medians of its rounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::client::{self, HttpConnection};
use crate::kind::Kind;
use crate::load;
use crate::notify::median;
use crate::process::Server;
use crate::scenario::{self, Scenario};
use crate::settings::Settings;
use crate::table::{Cell, Row, Unit};
use crate::topics_servers::{self, TOPICS_EVICT};

/// Longest wait for the server to count subscribers gone and topics evicted.
const SETTLE_LIMIT: Duration = Duration::from_secs(20);

pub struct Churn<'a>(pub &'a Settings);

pub struct Figures {
    fresh_kib: f64,
    before_kib: f64,
    after_kib: f64,
    growth_percent: f64,
    /// The longest a cycle's topics took to be evicted after their last subscriber left.
    slowest_eviction_ms: f64,
    rounds: usize,
}

impl Scenario for Churn<'_> {
    type Figures = Figures;
    const NAME: &'static str = "churn";

    fn rows(&self) -> Vec<Row> {
        let s = self.0;
        vec![
            Row::new(
                format!(
                    "churn: RSS after a first cycle ({} subs on {} fresh topics per cycle)",
                    s.churn_subscribers,
                    s.churn_subscribers / 2
                ),
                Unit::KiB,
            ),
            Row::new(
                format!("churn: RSS after {} more cycles", s.churn_cycles),
                Unit::KiB,
            ),
            Row::new("churn: RSS growth over those cycles", Unit::Percent),
        ]
    }

    fn rounds(&self) -> usize {
        self.0.rounds
    }

    fn applies(&self, kind: Kind) -> bool {
        matches!(kind, Kind::Crate | Kind::CrateServer)
    }

    fn app(&self) -> Option<&'static str> {
        Some(TOPICS_EVICT)
    }

    async fn measure(&self, servers: &[Server]) -> Vec<Result<Figures, String>> {
        scenario::each(servers, |server| churn(server, self.0)).await
    }

    /// The median of each figure over the rounds.
    fn settle(&self, rounds: Vec<Figures>) -> Figures {
        let of = |figure: fn(&Figures) -> f64| median(rounds.iter().map(figure).collect());
        Figures {
            fresh_kib: of(|r| r.fresh_kib),
            before_kib: of(|r| r.before_kib),
            after_kib: of(|r| r.after_kib),
            growth_percent: of(|r| r.growth_percent),
            slowest_eviction_ms: of(|r| r.slowest_eviction_ms),
            rounds: rounds.len(),
        }
    }

    fn summary(&self, r: &Figures) -> String {
        format!(
            "RSS {:.0} KiB fresh, {:.0} KiB after the first cycle, {:.0} KiB after the others \
             ({:+.2} %); topics evicted at most {:.0} ms after their last subscriber left",
            r.fresh_kib, r.before_kib, r.after_kib, r.growth_percent, r.slowest_eviction_ms
        )
    }

    fn cells(&self, r: &Figures) -> Vec<Cell> {
        let median = (r.rounds > 1).then(|| format!("median of {}", r.rounds));
        let fresh = format!("fresh {:.0} KiB", r.fresh_kib);
        vec![
            Cell::Value(
                r.before_kib,
                Some(median.as_ref().map_or(fresh.clone(), |m| format!("{fresh}, {m}"))),
            ),
            Cell::Value(r.after_kib, median.clone()),
            Cell::Value(r.growth_percent, median),
        ]
    }
}

async fn churn(server: &Server, s: &Settings) -> Result<Figures, String> {
    // Let the new server settle before its memory is read.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = server.memory_kib();
    let mut control = scenario::open_publisher(250, server.port).await?;
    let mut slowest = cycle(server, s, 0, &mut control).await?;
    let before = server.memory_kib();
    // RSS after each cycle, in MiB: a leak grows with every cycle, an allocator's
    // high-water mark levels off.
    let mut trend = Vec::new();
    for c in 1..=s.churn_cycles {
        slowest = slowest.max(cycle(server, s, c, &mut control).await?);
        trend.push(format!("{:.1}", server.memory_kib() as f64 / 1024.0));
    }
    let after = server.memory_kib();
    println!(
        "  (RSS after each cycle, MiB: {:.1} | {})",
        before as f64 / 1024.0,
        trend.join(" ")
    );
    Ok(Figures {
        fresh_kib: fresh as f64,
        before_kib: before as f64,
        after_kib: after as f64,
        growth_percent: (after as f64 - before as f64) / before as f64 * 100.0,
        slowest_eviction_ms: slowest.as_secs_f64() * 1e3,
        rounds: 1,
    })
}

/// One cycle on fresh topics (`churn-<c>-<t>`); how long its topics took to be evicted
/// after their last subscriber left.
async fn cycle(
    server: &Server,
    s: &Settings,
    c: usize,
    control: &mut HttpConnection,
) -> Result<Duration, String> {
    let topics = s.churn_subscribers / 2;
    let port = server.port;
    let key = move |t: usize| format!("churn-{c}-{t}");
    let join = || {
        scenario::connect_readers(topics, move |group, i, connecting| {
            let path: Arc<str> = Arc::from(topics_servers::subscribe_path(&key(i)));
            load::sse_subscriber(group, i, port, path, false, connecting)
        })
    };
    // Subscribers join: a first and a second one on each fresh topic.
    let (first, first_tasks) = join().await?;
    let (second, second_tasks) = join().await?;
    settle(control, c, "joined", |live, subs| {
        live == topics && subs == 2 * topics
    })
    .await?;
    // A little traffic: one event to each topic, received by both of its subscribers.
    for t in 0..topics {
        let path = topics_servers::publish_path(&key(t));
        client::publish(control, &path, &load::payload(Some(load::now_us())))
            .await
            .map_err(|e| format!("publish: {e}"))?;
    }
    let received = scenario::wait_for(Duration::from_secs(10), || {
        first.delivered() >= topics as u64 && second.delivered() >= topics as u64
    })
    .await;
    if !received {
        return Err(format!(
            "cycle {c}: {} and {} of {topics} events received",
            first.delivered(),
            second.delivered()
        ));
    }
    // One subscriber of each topic leaves: the topics stay.
    leave(first_tasks).await;
    settle(control, c, "half left", |live, subs| {
        live == topics && subs == topics
    })
    .await?;
    // The others leave: the topics go once idle.
    leave(second_tasks).await;
    let left = Instant::now();
    settle(control, c, "all left", |live, subs| live == 0 && subs == 0).await?;
    Ok(left.elapsed())
}

/// Closes the connections of `tasks`.
async fn leave(mut tasks: JoinSet<()>) {
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// Waits until the server's live topics and subscribers satisfy `done`.
async fn settle(
    control: &mut HttpConnection,
    c: usize,
    what: &str,
    done: impl Fn(usize, usize) -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        let (live, subscribers) = topics_servers::stats(control).await?;
        if done(live, subscribers) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "cycle {c}, {what}: still {live} topics and {subscribers} subscribers after {SETTLE_LIMIT:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
