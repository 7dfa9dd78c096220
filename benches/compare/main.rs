//! `cargo bench --features server,metrics --bench compare [-- --smoke]`: this crate against its
//! peers, in one run (without `metrics`, the `crate-metrics` server is left out).
//!
//! Servers, one after another on loopback ports, each in a process of its own (this binary
//! re-executed as `--serve <kind> <port>`, or nginx) so that its memory and CPU time are read
//! from `/proc` apart from the load generator, which runs here:
//!
//! - `crate`: the chat example's router (`examples/chat/app.rs`) under `axum::serve`;
//! - `crate-h1`: the same router on hyper's HTTP/1 connection builder, with `TCP_NODELAY`;
//! - `crate-server`: the same router on this crate's own `server::Server`;
//! - `crate-metrics`: `crate` with a Prometheus recorder installed (fan-out only: the cost of
//!   the `metrics` feature);
//! - `axum`: axum's `Sse` over a `tokio::sync::broadcast` channel, 15 s keep-alive;
//! - `ceiling`: raw tokio, no HTTP framework, events encoded once and written batched;
//! - `nchan`: nginx + Nchan from `benches/nchan.conf.template` (skipped when not installed).
//!
//! Scenarios (the sizes of a full run; `--smoke` uses 200 connections and seconds):
//!
//! 1. fan-out: 10 000 SSE subscribers; 300 events published by 16 publishers, each POSTing
//!    the next event as soon as the previous one is answered; deliveries per second until
//!    every subscriber has every event, the server's CPU time per delivery, write calls per
//!    subscriber and the publishing time; then "publish under fan-out", the same with one
//!    publisher (one request at a time) for 5 000 and for 10 000 subscribers, with
//!    publish-to-receive p50 and p99 too;
//! 2. latency: 5 000 subscribers, 100 events/s for 5 s (pipelined, so a slow server gets a
//!    backlog rather than a slower publisher); publish-to-receive p50 and p99 (the publish
//!    time travels in the event's data);
//! 3. and 4. idle: 10 000 idle SSE connections to every server at once (each held by a
//!    `--hold` process of this binary); memory per connection, then CPU over 60 s;
//! 5. long poll: 5 000 long pollers re-polling with their cursor while 20 events/s are
//!    published for 5 s; deliveries per second and p99;
//! 6. encoding, from `benches/encode.rs`;
//! 7. notify (per-user notifications): 10 000 topics with one SSE subscriber each, 20 000
//!    events POSTed to random topics by 16 publishers; memory per idle topic + subscriber,
//!    deliveries per second, publish-to-receive p50 and p99; the crate's `TopicsService`
//!    under `axum::serve` and on its own server against axum's `Sse` over a
//!    `HashMap<String, broadcast::Sender>` (`topics_servers.rs`);
//! 8. churn: 2 000 subscribers join 1 000 fresh topics and leave, topics evicted after
//!    100 ms idle, one cycle then 10 more; the server's RSS after the first and after the
//!    last (the crate's two servers only: the baseline never evicts).
//! 9. pollcap (long-poll capacity): 5 000 long pollers re-polling at once while the publish
//!    rate (4 pipelined publishers) doubles stage by stage from 5 events/s until deliveries/s
//!    stop growing;
//!    deliveries/s at saturation, polls answered/s, server CPU per delivery, p99 at the
//!    highest rate kept up with (median of three rounds);
//! 10. reconnect (churn of SSE resumes): 100 events published, then 64 clients for 5 s
//!     each reconnecting with `Last-Event-ID` 10 events back and reading up to the newest;
//!     resumes per second and server CPU per connection (median of three rounds; axum
//!     cannot resume and only takes the response head).
//!
//! Fan-out, latency, notify and churn run three times per server, taking turns (other work
//! on a shared machine comes and goes); fan-out, notify and churn count the median of each
//! figure (their targets are on medians: the best round flatters whichever server had a lucky
//! one), latency the best round. The table gives each server's
//! figure and the ratios of this crate to axum, the ceiling and Nchan, then the targets.
//!
//! Every scenario runs in one skeleton (`scenario::run`): for each round, for each server
//! (or all at once, for idle), start the server, put the load on it, collect its figures,
//! stop it; then fill the scenario's rows with each server's best round. A scenario
//! (`fanout.rs`, `latency.rs`, `idle.rs`, `longpoll.rs`, `notify.rs`, `churn.rs`) supplies only its load, its
//! figures and its rows, by implementing `scenario::Scenario`. Around them: `settings.rs`
//! (sizes and options), `kind.rs` and `process.rs` (the servers and their processes),
//! `servers.rs`, `axum_sse.rs` and `ceiling.rs` (the servers' own code), `nchan.rs` (over the nginx runner
//! shared with the tests, `tests/support/nginx.rs`),
//! `load.rs` and `client.rs` (the load generator), `procfs.rs`, and `table.rs` (the table
//! and the targets).
//!
//! Options: `--smoke`, `--only crate,crate-h1,crate-server,crate-metrics,axum,ceiling,nchan`,
//! `--scenarios encode,fanout,latency,longpoll,idle,notify,churn,pollcap,reconnect`,
//! `--rounds N`, `--publishers N`, `--events N` (fan-out), `--idle-secs N`, `--report DIR`
//! (where the table and the charts go; `target/compare-report` by default).

#[path = "../../examples/chat/app.rs"]
#[allow(dead_code)]
mod app;
mod axum_sse;
mod ceiling;
mod chart;
mod churn;
mod client;
#[path = "../encode.rs"]
#[allow(dead_code)]
mod encode;
mod fanout;
mod idle;
mod kind;
mod latency;
mod load;
mod longpoll;
mod nchan;
#[path = "../../tests/support/nginx.rs"]
mod nginx;
mod notify;
mod poll_capacity;
mod process;
mod procfs;
mod reconnect;
mod report;
mod scenario;
mod servers;
mod settings;
mod table;
mod topics_servers;

use std::time::{Duration, Instant};

use churn::Churn;
use fanout::FanOut;
use idle::Idle;
use kind::Kind;
use latency::Latency;
use longpoll::LongPoll;
use notify::Notify;
use poll_capacity::PollCapacity;
use reconnect::Reconnect;
use scenario::Run;
use settings::Settings;
use table::{Cell, Row, Unit};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == "--hold") {
        idle::hold(&args[at + 1..]);
    }
    if let Some(at) = args.iter().position(|arg| arg == "--serve") {
        let kind = args.get(at + 1).map(String::as_str).unwrap_or("");
        let port = args.get(at + 2).and_then(|p| p.parse().ok()).unwrap_or(0);
        servers::serve(kind, port, args.get(at + 3).map(String::as_str));
    }
    let settings = match Settings::from_args() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("compare: {error}");
            std::process::exit(2);
        }
    };
    println!(
        "tower-eventstream compare ({}) on {}",
        mode(&settings),
        procfs::machine()
    );
    // Nothing here may run unbounded: past this limit, stop every server and give up.
    let limit = Duration::from_secs(if settings.smoke { 300 } else { 2700 });
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("compare: still running after {limit:?}; stopping the servers and giving up");
        process::kill_all();
        std::process::exit(3);
    });
    // The micro-benchmark first, on a quiet machine, outside the load generator's runtime.
    let encoded = settings.runs("encode").then(|| {
        println!("encoding micro-benchmark");
        encode::run(settings.smoke)
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the load generator's runtime");
    let failed = runtime.block_on(run(&settings, encoded));
    std::process::exit(i32::from(failed));
}

fn mode(settings: &Settings) -> &'static str {
    if settings.smoke {
        "smoke run"
    } else {
        "full run"
    }
}

/// Runs every scenario and prints the table; true when something failed that a smoke run
/// must not hide.
async fn run(settings: &Settings, encoded: Option<encode::Encoded>) -> bool {
    let started = Instant::now();
    load::now_us();
    let nofile = procfs::raise_fd_limit();
    let needed = (settings.fanout_subscribers)
        .max(settings.idle_connections)
        .max(settings.notify_topics) as u64
        + 100;
    if nofile < needed {
        eprintln!(
            "compare: the file limit is {nofile}, {needed} are needed; raise the hard limit (ulimit -Hn)"
        );
        return true;
    }
    let mut skipped = Vec::new();
    let nchan_available = match nchan::find() {
        Ok(_) => true,
        Err(reason) => {
            let note = format!("Nchan skipped: {reason}.");
            println!("{note}");
            skipped.push(note);
            false
        }
    };
    let kinds: Vec<Kind> = (settings.servers.iter().copied())
        .filter(|&kind| kind != Kind::Nchan || nchan_available)
        .collect();
    let mut rows = encoded.map_or_else(Vec::new, |encoded| encode_rows(&encoded, &kinds));
    let mut run = Run {
        settings,
        kinds,
        nofile,
        started,
        failed: false,
    };
    let fan_outs = std::iter::once((settings.fanout_subscribers, settings.fanout_publishers)).chain(
        settings
            .publish_subscribers
            .iter()
            .map(|&subscribers| (subscribers, 1)),
    );
    for (subscribers, publishers) in fan_outs {
        let fan_out = FanOut {
            settings,
            subscribers,
            publishers,
        };
        rows.extend(scenario::run(&fan_out, &mut run).await);
    }
    rows.extend(scenario::run(&Latency(settings), &mut run).await);
    let poll_rows = scenario::run(&LongPoll(settings), &mut run).await;
    rows.extend(scenario::run(&Idle(settings), &mut run).await);
    rows.extend(poll_rows);
    rows.extend(scenario::run(&Notify(settings), &mut run).await);
    rows.extend(scenario::run(&Churn(settings), &mut run).await);
    rows.extend(scenario::run(&PollCapacity(settings), &mut run).await);
    rows.extend(scenario::run(&Reconnect(settings), &mut run).await);

    println!();
    println!(
        "tower-eventstream compare ({}), {}, {:.0} s",
        mode(settings),
        procfs::machine(),
        started.elapsed().as_secs_f64()
    );
    println!("ratios are crate (axum::serve) ÷ peer; for latency, memory and CPU lower is better.\n");
    println!("{}", table::print_table(settings, &rows, &skipped));
    println!();
    if settings.smoke {
        println!("(a smoke run: too small to judge the targets; run without --smoke)");
    } else {
        print!("{}", table::judge(&rows));
    }
    if !report::write(settings, &rows, &skipped, started.elapsed()) {
        run.failed = true;
    }
    if run.failed {
        eprintln!("compare: some scenarios failed (see above)");
    }
    run.failed
}

/// The encoding micro-benchmark's rows: this crate's figures for the crate's three servers,
/// axum's for axum, n/a for the others.
fn encode_rows(encoded: &encode::Encoded, kinds: &[Kind]) -> Vec<Row> {
    let mut direct = Row::new("encode: build + bytes (events/s)", Unit::PerSecond);
    let mut body = Row::new("encode: through the SSE body (events/s)", Unit::PerSecond);
    for &kind in kinds {
        let (d, b) = match kind {
            Kind::Crate | Kind::CrateH1 | Kind::CrateServer | Kind::CrateMetrics => {
                (Some(encoded.crate_direct), Some(encoded.crate_body))
            }
            Kind::Axum => (Some(encoded.axum_body), Some(encoded.axum_body)),
            Kind::Ceiling | Kind::Nchan => (None, None),
        };
        let cell = |v: Option<f64>| v.map_or(Cell::NotApplicable, |v| Cell::Value(v, None));
        direct.report(kind, Ok(cell(d)));
        body.report(kind, Ok(cell(b)));
    }
    vec![direct, body]
}
