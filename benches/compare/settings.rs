//! The run's settings: the sizes of a full or a smoke run, and the command-line options.

use std::path::PathBuf;
use std::time::Duration;

use crate::kind::Kind;

/// The keep-alive interval of every server (the crate's default).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Events each server holds for late readers: more than the fan-out scenario publishes, so
/// that no subscriber is ever dropped for lagging.
pub const HISTORY: usize = 1024;

/// The sizes of each scenario, and what to run.
pub struct Settings {
    pub smoke: bool,
    pub fanout_subscribers: usize,
    pub fanout_events: u64,
    pub fanout_publishers: usize,
    /// Subscribers of each "publish under fan-out" run (one publisher, one request at a time).
    pub publish_subscribers: Vec<usize>,
    /// Times fan-out and latency run for each server (fan-out counts the median round,
    /// latency the best).
    pub rounds: usize,
    pub latency_subscribers: usize,
    pub latency_rate: u64,
    pub latency_secs: u64,
    pub idle_connections: usize,
    pub idle_secs: u64,
    pub poll_clients: usize,
    pub poll_rate: u64,
    pub poll_secs: u64,
    /// Per-user notifications: topics, each with one SSE subscriber.
    pub notify_topics: usize,
    /// Events published to random topics, by `fanout_publishers` publishers.
    pub notify_events: u64,
    /// Topic churn: cycles measured (after one warm-up cycle).
    pub churn_cycles: usize,
    /// Subscribers per churn cycle, two to a fresh topic.
    pub churn_subscribers: usize,
    /// Long-poll capacity: pollers, and the stages of the publish rate (`pollcap.rs`).
    pub pollcap_clients: usize,
    pub pollcap_stages: usize,
    /// Each stage's run-in (not measured), then its measured window.
    pub pollcap_run_in: Duration,
    pub pollcap_window: Duration,
    /// Reconnect churn: concurrent resuming clients, for how long (`reconnect.rs`).
    pub reconnect_clients: usize,
    pub reconnect_time: Duration,
    /// Longest wait for every reader to finish after publishing ends.
    pub drain_limit: Duration,
    /// Longest a fan-out round may take; a server still delivering then is measured by
    /// what it delivered so far.
    pub fanout_limit: Duration,
    pub servers: Vec<Kind>,
    pub scenarios: Vec<String>,
    /// The folder the report (table and charts) is written to.
    pub report: PathBuf,
}

impl Settings {
    pub fn from_args() -> Result<Settings, String> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let smoke = args.iter().any(|arg| arg == "--smoke");
        let mut settings = if smoke {
            Settings {
                smoke,
                fanout_subscribers: 200,
                fanout_events: 200,
                fanout_publishers: 4,
                publish_subscribers: vec![200],
                rounds: 1,
                latency_subscribers: 200,
                latency_rate: 100,
                latency_secs: 2,
                idle_connections: 200,
                idle_secs: 2,
                poll_clients: 200,
                poll_rate: 20,
                poll_secs: 2,
                notify_topics: 200,
                notify_events: 1_000,
                churn_cycles: 3,
                churn_subscribers: 100,
                pollcap_clients: 200,
                pollcap_stages: 4,
                pollcap_run_in: Duration::from_millis(200),
                pollcap_window: Duration::from_millis(500),
                reconnect_clients: 64,
                reconnect_time: Duration::from_secs(1),
                drain_limit: Duration::from_secs(20),
                fanout_limit: Duration::from_secs(20),
                servers: Kind::ALL.into_iter().filter(|kind| kind.built()).collect(),
                scenarios: Vec::new(),
                report: PathBuf::from("target/compare-report"),
            }
        } else {
            Settings {
                smoke,
                fanout_subscribers: 10_000,
                fanout_events: 300,
                fanout_publishers: 16,
                publish_subscribers: vec![5_000, 10_000],
                rounds: 3,
                latency_subscribers: 5_000,
                latency_rate: 100,
                latency_secs: 5,
                idle_connections: 10_000,
                idle_secs: 60,
                poll_clients: 5_000,
                poll_rate: 20,
                poll_secs: 5,
                notify_topics: 10_000,
                notify_events: 20_000,
                churn_cycles: 10,
                churn_subscribers: 2_000,
                pollcap_clients: 5_000,
                pollcap_stages: 10,
                pollcap_run_in: Duration::from_millis(500),
                pollcap_window: Duration::from_millis(2_000),
                reconnect_clients: 64,
                reconnect_time: Duration::from_secs(5),
                drain_limit: Duration::from_secs(20),
                fanout_limit: Duration::from_secs(30),
                servers: Kind::ALL.into_iter().filter(|kind| kind.built()).collect(),
                scenarios: Vec::new(),
                report: PathBuf::from("target/compare-report"),
            }
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or(format!("{arg} needs a value"));
            match arg.as_str() {
                "--smoke" | "--bench" => {}
                "--only" => {
                    settings.servers = value()?
                        .split(',')
                        .map(|name| Kind::from_name(name).ok_or(format!("unknown server {name}")))
                        .collect::<Result<_, _>>()?;
                }
                "--scenarios" => settings.scenarios = value()?.split(',').map(str::to_owned).collect(),
                "--publishers" => settings.fanout_publishers = number(arg, value()?)?,
                "--events" => settings.fanout_events = number(arg, value()?)?,
                "--rounds" => settings.rounds = number(arg, value()?)?,
                "--idle-secs" => settings.idle_secs = number(arg, value()?)?,
                "--report" => settings.report = PathBuf::from(value()?),
                other if other.starts_with("--") => return Err(format!("unknown option {other}")),
                // cargo bench passes a filter argument through; there is nothing to filter.
                _ => {}
            }
        }
        Ok(settings)
    }

    pub fn runs(&self, scenario: &str) -> bool {
        self.scenarios.is_empty() || self.scenarios.iter().any(|s| s == scenario)
    }

    pub fn serves(&self, kind: Kind) -> bool {
        self.servers.contains(&kind)
    }
}

fn number<T: std::str::FromStr>(option: &str, text: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("{option} needs a number"))
}
