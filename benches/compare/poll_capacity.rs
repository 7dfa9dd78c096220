//! Long-poll capacity: where a server stops keeping up with long pollers. The long-poll
//! scenario offers a fixed 20 events/s, which every server delivers: it measures the load,
//! not the server. Here `pollcap_clients` pollers re-poll at once with their cursor after
//! each answer (a closed loop: a faster server gets more polls), while the publish rate is
//! stepped up, doubling each stage from the rate that offers [`FIRST_OFFER`] deliveries/s.
//!
//! Why stages of a fixed rate rather than publishers POSTing back to back: publishing is far
//! cheaper than answering every poller, so back-to-back publishers would run the pollers
//! past the servers' history (1 024 events) within a second, and what the pollers then got
//! would depend on how each server shares its CPU between publishers and pollers, not on
//! what it can deliver. A fixed rate per stage delivers at most `rate × pollers`: a server
//! below saturation delivers all of it, one past it delivers what it can, so deliveries/s
//! grow with each doubling until the server (or, on a small machine, the load generator
//! sharing it) saturates. The ladder stops at the first stage that grows deliveries/s by less
//! than 10 % over the best so far; the best stage is the saturation figure. Each stage runs
//! in for `pollcap_run_in` (the backlog of the previous stage settles) and is measured over
//! `pollcap_window`. Beside deliveries/s (each event counted once per poller that received
//! it): polls answered per second and the server's CPU per delivery in that stage, and the
//! publish-to-receive p99 of the highest stage still kept up with (90 % of what was offered
//! delivered): past saturation the latency only measures the growing backlog, and pollers
//! that fall further behind than the history skip what it no longer holds (deliveries/s
//! count what was received, never what was published).
//!
//! The crate's long poll answers with up to 100 events at once and the ceiling's too, Nchan's
//! (as `benches/nchan.conf.template` configures it: `nchan_longpoll_multipart_response` left
//! off) with one message per answer: past saturation a poller that falls behind catches up
//! in fewer polls on the first two, so their deliveries/s keep growing with the batches
//! while Nchan's stay at its polls/s. That is how each is set up to serve long polls here,
//! and it is left in the figures: compare polls answered/s for the cost of a poll alone.
//!
//! Each server's figures are the medians of its rounds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::client;
use crate::kind::Kind;
use crate::load::{self, Group};
use crate::notify::median;
use crate::process::Server;
use crate::procfs;
use crate::scenario::{self, Scenario};
use crate::settings::Settings;
use crate::table::{Cell, Row, Unit};

/// Deliveries per second the first stage offers (5 events/s to 5 000 pollers): below what
/// any server here delivers, so that the ladder starts from a stage kept up with.
const FIRST_OFFER: u64 = 25_000;
/// Publishers per stage, each pipelining its share of the rate on a connection of its own:
/// one connection alone would measure how fast a server takes requests in turn on one
/// connection while busy with the pollers, not how fast it delivers.
const PUBLISHERS: u64 = 4;
/// Deliveries/s must grow by this factor over the best stage so far to go on.
const GROWTH: f64 = 1.1;
/// A stage is kept up with when this share of what it offered was delivered.
const KEPT_UP: f64 = 0.9;

pub struct PollCapacity<'a>(pub &'a Settings);

pub struct Figures {
    deliveries_per_sec: f64,
    polls_per_sec: f64,
    cpu_per_delivery_us: f64,
    /// p99 of the highest stage kept up with (NaN if none was).
    p99_ms: f64,
    /// The publish rate of the best stage.
    peak_rate: f64,
    /// Whether deliveries/s stopped growing before the last stage.
    saturated: bool,
    rounds: usize,
}

/// One stage's figures.
struct Stage {
    rate: u64,
    deliveries_per_sec: f64,
    polls_per_sec: f64,
    cpu_per_delivery_us: f64,
    p99_ms: f64,
    kept_up: bool,
}

impl Scenario for PollCapacity<'_> {
    type Figures = Figures;
    const NAME: &'static str = "pollcap";

    fn rows(&self) -> Vec<Row> {
        let s = self.0;
        vec![
            Row::new(
                format!(
                    "pollcap: saturation deliveries/s ({} closed-loop long pollers)",
                    s.pollcap_clients
                ),
                Unit::PerSecond,
            ),
            Row::new("pollcap: polls answered/s at saturation", Unit::PerSecond),
            Row::new("pollcap: server CPU per delivery at saturation", Unit::Micros),
            Row::new("pollcap: p99 at the highest rate kept up", Unit::Millis),
        ]
    }

    fn rounds(&self) -> usize {
        self.0.rounds
    }

    fn applies(&self, kind: Kind) -> bool {
        kind.long_poll().is_some()
    }

    async fn measure(&self, servers: &[Server]) -> Vec<Result<Figures, String>> {
        scenario::each(servers, |server| capacity(server, self.0)).await
    }

    /// The median of each figure over the rounds.
    fn settle(&self, rounds: Vec<Figures>) -> Figures {
        let of = |figure: fn(&Figures) -> f64| median(rounds.iter().map(figure).collect());
        Figures {
            deliveries_per_sec: of(|r| r.deliveries_per_sec),
            polls_per_sec: of(|r| r.polls_per_sec),
            cpu_per_delivery_us: of(|r| r.cpu_per_delivery_us),
            p99_ms: median(rounds.iter().map(|r| r.p99_ms).filter(|v| !v.is_nan()).collect()),
            peak_rate: of(|r| r.peak_rate),
            saturated: rounds.iter().all(|r| r.saturated),
            rounds: rounds.len(),
        }
    }

    fn summary(&self, r: &Figures) -> String {
        format!(
            "{:.0} k deliveries/s at {:.0} events/s, {:.1} k polls/s, {:.2} µs server CPU per delivery, \
             p99 {:.2} ms{}",
            r.deliveries_per_sec / 1e3,
            r.peak_rate,
            r.polls_per_sec / 1e3,
            r.cpu_per_delivery_us,
            r.p99_ms,
            if r.saturated { "" } else { " (not saturated)" }
        )
    }

    fn cells(&self, r: &Figures) -> Vec<Cell> {
        let median = (r.rounds > 1).then(|| format!("median of {}", r.rounds));
        // A server still growing at the last stage was not saturated: its figure is a floor.
        let peak = match (&median, r.saturated) {
            (_, true) => median.clone(),
            (None, false) => Some(format!("still growing at {:.0}/s", r.peak_rate)),
            (Some(m), false) => Some(format!("still growing at {:.0}/s, {m}", r.peak_rate)),
        };
        vec![
            Cell::Value(r.deliveries_per_sec, peak),
            Cell::Value(r.polls_per_sec, median.clone()),
            Cell::Value(r.cpu_per_delivery_us, median.clone()),
            Cell::Value(r.p99_ms, median),
        ]
    }
}

async fn capacity(server: &Server, s: &Settings) -> Result<Figures, String> {
    let (path, style) = server.kind.long_poll().ok_or("no long poll")?;
    let (port, path): (u16, Arc<str>) = (server.port, Arc::from(path));
    let clients = s.pollcap_clients;
    let answers = Arc::new(AtomicU64::new(0));
    let (group, mut tasks) = scenario::connect_readers(clients, |group, i, connecting| {
        let (path, answers) = (Arc::clone(&path), Arc::clone(&answers));
        client::long_poller_counting(group, i, port, path, style, connecting, answers)
    })
    .await?;
    let mut publisher = scenario::open_publisher(250, port).await?;
    scenario::warm_up(server, &mut publisher, &group).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut stages: Vec<Stage> = Vec::new();
    let mut best = 0.0f64;
    let mut rate = (FIRST_OFFER / clients as u64).max(1);
    let mut saturated = false;
    for n in 0..s.pollcap_stages {
        let stage = run_stage(server, s, &group, &answers, n, rate).await;
        let stage = match stage {
            Ok(stage) => stage,
            Err(error) => {
                tasks.abort_all();
                return Err(error);
            }
        };
        let grew = stage.deliveries_per_sec >= best * GROWTH;
        best = best.max(stage.deliveries_per_sec);
        stages.push(stage);
        if !grew {
            saturated = true;
            break;
        }
        rate *= 2;
    }
    tasks.abort_all();
    if group.failed.load(Ordering::Acquire) > 0 {
        return Err(format!("long pollers failed: {}", group.error()));
    }
    let peak = (stages.iter())
        .max_by(|a, b| a.deliveries_per_sec.total_cmp(&b.deliveries_per_sec))
        .ok_or("no stage ran")?;
    let kept_up = stages.iter().rev().find(|stage| stage.kept_up);
    Ok(Figures {
        deliveries_per_sec: peak.deliveries_per_sec,
        polls_per_sec: peak.polls_per_sec,
        cpu_per_delivery_us: peak.cpu_per_delivery_us,
        p99_ms: kept_up.map_or(f64::NAN, |stage| stage.p99_ms),
        peak_rate: peak.rate as f64,
        saturated,
        rounds: 1,
    })
}

/// Publishes `rate` events/s (pipelined, as in `longpoll.rs`, so a slow server gets a
/// backlog rather than a slower publisher) for the run-in and the window, and measures the
/// window.
async fn run_stage(
    server: &Server,
    s: &Settings,
    group: &Group,
    answers: &AtomicU64,
    n: usize,
    rate: u64,
) -> Result<Stage, String> {
    let (port, path) = (server.port, server.kind.publish_path());
    let mut publishing = JoinSet::new();
    for p in 0..PUBLISHERS.min(rate) {
        let share = rate / PUBLISHERS + u64::from(p < rate % PUBLISHERS);
        let events = (share as f64 * (s.pollcap_run_in + s.pollcap_window).as_secs_f64()).ceil() as u64;
        let source = 251 + n * PUBLISHERS as usize + p as usize;
        publishing.spawn(async move {
            let publisher = client::publish_open_loop(source, port, path, share, events)
                .await
                .map_err(|e| format!("publish: {e}"))?;
            publisher.finish(Duration::from_millis(100)).await
        });
    }
    tokio::time::sleep(s.pollcap_run_in).await;
    let sample = || {
        (
            load::now_us(),
            group.delivered(),
            answers.load(Ordering::Relaxed),
            server.cpu_seconds(),
            procfs::cpu_seconds(std::process::id()),
        )
    };
    drop(group.latencies());
    let (t0, delivered0, polls0, cpu0, own0) = sample();
    tokio::time::sleep(s.pollcap_window).await;
    let (t1, delivered1, polls1, cpu1, own1) = sample();
    let mut latencies = group.latencies();
    // A server that cannot take the publishes as fast as they are sent holds the publisher
    // up: that is saturation too, and the next stage is not started before it is done.
    let joined = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(joined) = publishing.join_next().await {
            joined.map_err(|_| "a publisher panicked".to_owned())??;
        }
        Ok::<_, String>(())
    });
    joined
        .await
        .map_err(|_| format!("{rate} events/s: the publishers were still sending after 30 s"))??;
    let secs = (t1 - t0) as f64 / 1e6;
    let delivered = delivered1 - delivered0;
    latencies.sort_unstable();
    let offered = rate as f64 * group.slots.len() as f64 * secs;
    let stage = Stage {
        rate,
        deliveries_per_sec: delivered as f64 / secs,
        polls_per_sec: (polls1 - polls0) as f64 / secs,
        cpu_per_delivery_us: (cpu1 - cpu0) * 1e6 / delivered.max(1) as f64,
        p99_ms: scenario::percentile_ms(&latencies, 0, 0.99),
        kept_up: delivered as f64 >= KEPT_UP * offered,
    };
    println!(
        "  ({:>4}/s: {:.0} k deliveries/s of {:.0} k offered ({:.0} events/s per poller), {:.1} k \
         polls/s, {:.2} µs server CPU per delivery, p99 {:.2} ms; server {:.0} %, load generator \
         {:.0} % of a core)",
        rate,
        stage.deliveries_per_sec / 1e3,
        offered / secs / 1e3,
        stage.deliveries_per_sec / group.slots.len() as f64,
        stage.polls_per_sec / 1e3,
        stage.cpu_per_delivery_us,
        stage.p99_ms,
        (cpu1 - cpu0) / secs * 100.0,
        (own1 - own0) / secs * 100.0
    );
    Ok(stage)
}
