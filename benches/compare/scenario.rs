//! The one skeleton every scenario runs in ([`run`]), what a scenario supplies to it
//! ([`Scenario`]), and the steps scenarios share: connecting readers, warming up, waiting.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::{self, HttpConnection};
use crate::kind::Kind;
use crate::load::{self, Group};
use crate::process::Server;
use crate::settings::Settings;
use crate::table::{Cell, Row};

/// A scenario: the load it puts on a server, the figures it reads, the rows they fill.
pub trait Scenario {
    /// What one round measures of one server.
    type Figures;
    /// Its name, in `--scenarios` and in the progress lines.
    const NAME: &'static str;
    /// Every server at once rather than one after another.
    const AT_ONCE: bool = false;
    /// Whether a smoke run fails when a server does not deliver everything in time.
    const INCOMPLETE_FAILS_SMOKE: bool = true;

    /// The rows it fills, in the order of [`Scenario::cells`], labelled with its sizes.
    fn rows(&self) -> Vec<Row>;

    /// Rounds per server: the servers take turns, and each keeps its best round (or what
    /// [`Scenario::settle`] makes of its rounds).
    fn rounds(&self) -> usize {
        1
    }

    /// Whether `kind` serves what it measures (the others get n/a).
    fn applies(&self, _kind: Kind) -> bool {
        true
    }

    /// The application each server runs (`--serve <kind> <port> <app>`): `None` for the
    /// chat router, or a `topics_servers.rs` app.
    fn app(&self) -> Option<&'static str> {
        None
    }

    /// Puts the load on `servers` (just one, unless [`Scenario::AT_ONCE`]) and collects each
    /// one's figures, in order.
    async fn measure(&self, servers: &[Server]) -> Vec<Result<Self::Figures, String>>;

    /// Whether every reader got every event in time; a server that did not is not run again.
    fn complete(&self, _figures: &Self::Figures) -> bool {
        true
    }

    /// Whether `new` beats `best`, the best round so far.
    fn better(&self, _new: &Self::Figures, _best: &Self::Figures) -> bool {
        false
    }

    /// The figures that count, from a server's rounds in order (at least one): by default
    /// its best round (the first of the best, by [`Scenario::better`]); a scenario judged
    /// on medians combines them otherwise.
    fn settle(&self, rounds: Vec<Self::Figures>) -> Self::Figures {
        let mut rounds = rounds.into_iter();
        let first = rounds.next().expect("at least one round");
        rounds.fold(
            first,
            |best, new| if self.better(&new, &best) { new } else { best },
        )
    }

    /// The progress line printed after a round.
    fn summary(&self, figures: &Self::Figures) -> String;

    /// The cells of [`Scenario::rows`] for a server's settled figures, in order.
    fn cells(&self, figures: &Self::Figures) -> Vec<Cell>;
}

/// What every scenario runs with.
pub struct Run<'a> {
    pub settings: &'a Settings,
    /// The servers measured (Nchan left out when it is not installed).
    pub kinds: Vec<Kind>,
    /// The file limit, passed on to nginx.
    pub nofile: u64,
    pub started: Instant,
    /// Something failed that a smoke run must not hide.
    pub failed: bool,
}

/// Runs `scenario`, unless `--scenarios` leaves it out: for each round, for each server (or
/// for all at once), starts the server, puts the load on it, collects its figures, stops
/// it; then fills the scenario's rows with each server's figures settled from its rounds
/// (its best round, unless the scenario says otherwise).
pub async fn run<S: Scenario>(scenario: &S, run: &mut Run<'_>) -> Vec<Row> {
    if !run.settings.runs(S::NAME) {
        return Vec::new();
    }
    let mut rows = scenario.rows();
    // Each server's figures, round by round.
    let mut figured: Vec<(Kind, Vec<S::Figures>)> = Vec::new();
    // Servers not run again: failed, or could not finish a round in time.
    let mut retired: Vec<Kind> = Vec::new();
    let applies = |kind: Kind| scenario.applies(kind) && kind.runs_in(S::NAME);
    for &kind in run.kinds.iter().filter(|&&kind| !applies(kind)) {
        rows.iter_mut().for_each(|row| row.set(kind, Cell::NotApplicable));
    }
    let rounds = scenario.rounds();
    for round in 1..=rounds {
        let kinds: Vec<Kind> = (run.kinds.iter().copied())
            .filter(|&kind| applies(kind) && !retired.contains(&kind))
            .collect();
        let batches: Vec<&[Kind]> = if S::AT_ONCE {
            vec![&kinds]
        } else {
            kinds.chunks(1).collect()
        };
        for batch in batches {
            let which = match batch {
                [kind] if !S::AT_ONCE => kind.name(),
                _ => "every server at once",
            };
            println!(
                "{} / {which} (round {round} of {rounds}, {:.0} s into the run)",
                S::NAME,
                run.started.elapsed().as_secs_f64()
            );
            let mut servers = Vec::new();
            for &kind in batch {
                match Server::start(kind, scenario.app(), run.nofile) {
                    Ok(server) => servers.push(server),
                    Err(error) => {
                        fail(&mut rows, kind, &error);
                        retired.push(kind);
                        run.failed = true;
                    }
                }
            }
            let results = scenario.measure(&servers).await;
            for (kind, result) in servers.iter().map(|server| server.kind).zip(results) {
                let figures = match result {
                    Ok(figures) => figures,
                    Err(error) => {
                        fail(&mut rows, kind, &error);
                        retired.push(kind);
                        run.failed = true;
                        continue;
                    }
                };
                println!("  {:<9} {}", kind.name(), scenario.summary(&figures));
                if !scenario.complete(&figures) {
                    retired.push(kind);
                    run.failed |= run.settings.smoke && S::INCOMPLETE_FAILS_SMOKE;
                }
                match figured.iter_mut().find(|(k, _)| *k == kind) {
                    Some((_, rounds)) => rounds.push(figures),
                    None => figured.push((kind, vec![figures])),
                }
            }
            servers.into_iter().for_each(Server::stop);
            // Let the closed connections settle between servers.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    for (kind, rounds) in figured {
        let figures = scenario.settle(rounds);
        for (row, cell) in rows.iter_mut().zip(scenario.cells(&figures)) {
            row.report(kind, Ok(cell));
        }
    }
    rows
}

fn fail(rows: &mut [Row], kind: Kind, error: &str) {
    for row in rows {
        row.report(kind, Err(error.to_owned()));
    }
}

/// For scenarios that measure one server at a time: `measure` on each of `servers`.
pub async fn each<'s, F, Fut>(
    servers: &'s [Server],
    measure: impl Fn(&'s Server) -> Fut,
) -> Vec<Result<F, String>>
where
    Fut: Future<Output = Result<F, String>>,
{
    let mut results = Vec::with_capacity(servers.len());
    for server in servers {
        results.push(measure(server).await);
    }
    results
}

/// Waits until `done()` holds, checking every 5 ms; false after `limit`.
pub async fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until every one of `readers` has every event; false after `limit`.
pub async fn wait_all_done(group: &Group, readers: usize, limit: Duration) -> bool {
    wait_for(limit, || group.done.load(Ordering::Acquire) == readers).await
}

/// Starts `count` readers, `reader(group, i, connecting)` for each `i` (at most 200
/// connecting at once, by the `connecting` semaphore), and waits until every one has
/// connected; fails if any could not.
pub async fn connect_readers<F>(
    count: usize,
    reader: impl Fn(Arc<Group>, usize, Arc<Semaphore>) -> F,
) -> Result<(Arc<Group>, JoinSet<()>), String>
where
    F: Future<Output = ()> + Send + 'static,
{
    let group = Group::new(count);
    let connecting = Arc::new(Semaphore::new(200));
    let mut tasks = JoinSet::new();
    for i in 0..count {
        tasks.spawn(reader(Arc::clone(&group), i, Arc::clone(&connecting)));
    }
    let all_in = wait_for(Duration::from_secs(120), || {
        group.ready.load(Ordering::Acquire) + group.failed.load(Ordering::Acquire) == count
    })
    .await;
    let failed = group.failed.load(Ordering::Acquire);
    if !all_in || failed > 0 {
        return Err(format!(
            "{} of {count} readers connected ({failed} failed: {})",
            group.ready.load(Ordering::Acquire),
            group.error()
        ));
    }
    Ok((group, tasks))
}

/// Connects `count` SSE subscribers to `server` and waits for every response head.
pub async fn subscribe_all(
    server: &Server,
    count: usize,
    parse_timestamps: bool,
) -> Result<(Arc<Group>, JoinSet<()>), String> {
    let (port, path): (u16, Arc<str>) = (server.port, Arc::from(server.kind.sse_path()));
    connect_readers(count, |group, i, connecting| {
        load::sse_subscriber(group, i, port, Arc::clone(&path), parse_timestamps, connecting)
    })
    .await
}

/// A publisher's connection from loopback source address number `source`.
pub async fn open_publisher(source: usize, port: u16) -> Result<HttpConnection, String> {
    HttpConnection::open(source, port)
        .await
        .map_err(|e| format!("publisher: {e}"))
}

/// Publishes warm-up events (not counted) until every reader has received one: then every
/// subscription is surely in place.
pub async fn warm_up(server: &Server, publisher: &mut HttpConnection, group: &Group) -> Result<(), String> {
    let warm = load::payload(None);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        client::publish(publisher, server.kind.publish_path(), &warm)
            .await
            .map_err(|e| format!("warm-up publish: {e}"))?;
        if wait_for(Duration::from_millis(500), || group.all_warm()).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            let warm = group
                .slots
                .iter()
                .filter(|s| s.warm.load(Ordering::Acquire))
                .count();
            return Err(format!(
                "only {warm} of {} readers got the warm-up event",
                group.slots.len()
            ));
        }
    }
}

/// Percentile `p` of `sorted` latencies in µs, in ms; `missing` events never delivered
/// count as slower than all.
pub fn percentile_ms(sorted: &[u32], missing: u64, p: f64) -> f64 {
    let total = sorted.len() as u64 + missing;
    if total == 0 {
        return f64::NAN;
    }
    let rank = ((total as f64 * p).ceil() as u64).clamp(1, total);
    match sorted.get(rank as usize - 1) {
        Some(&us) => us as f64 / 1000.0,
        // The percentile falls among events never delivered.
        None => f64::INFINITY,
    }
}

/// Collects the publishers (each returns when it finished publishing, in µs), waiting at
/// most a second for each still at work: the first error and the latest finish.
pub async fn join_publishers(
    publishing: &mut tokio::task::JoinSet<std::io::Result<u64>>,
) -> (Option<std::io::Error>, u64) {
    let mut publish_error = None;
    let mut published_at = 0;
    while let Ok(Some(joined)) =
        tokio::time::timeout(std::time::Duration::from_secs(1), publishing.join_next()).await
    {
        match joined {
            Ok(Err(error)) => {
                publish_error.get_or_insert(error);
            }
            Ok(Ok(at)) => published_at = published_at.max(at),
            Err(_) => {}
        }
    }
    (publish_error, published_at)
}
