//! gRPC and an event stream on one port, shared by `main.rs` and `tests/examples.rs`.
//!
//! tonic's `Routes` is an axum router: the gRPC health service (from tonic-health, no code
//! generation) is one route, [`EventLogService`] is another at `/events`. hyper-util's
//! `auto::Builder` serves the router, so gRPC clients (HTTP/2 with prior knowledge, h2c) and
//! browsers or curl (HTTP/1.1, or HTTP/2) share the port. The accept loop, with graceful
//! shutdown, and the ticker are in `examples/shared/serve.rs`.

#[path = "../shared/serve.rs"]
mod serve;

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use tower_eventstream::{Event, EventLogService, MemoryLog, Shutdown, StreamConfig};

/// How long open connections get to finish once shutdown has begun. Event streams end at
/// once; a gRPC streaming call (such as `Health/Watch`) does not, and is cut after this.
pub const GRACE: Duration = Duration::from_secs(5);

/// The server's state: the log, the health reporter and the handle that ends the streams.
#[derive(Clone)]
pub struct App {
    log: MemoryLog,
    health: HealthReporter,
    shutdown: Shutdown,
    router: axum::Router,
}

impl Default for App {
    fn default() -> Self {
        Self::new()
    }
}

impl App {
    /// A new, empty log; the health service reports `SERVING` for the server (`""`).
    pub fn new() -> Self {
        let log = MemoryLog::new();
        let shutdown = Shutdown::new();
        let (health, health_service) = tonic_health::server::health_reporter();
        let events =
            EventLogService::new(log.clone()).with_config(StreamConfig::default().shutdown(shutdown.clone()));
        // `grpc.health.v1.Health/*` goes to tonic, `/events` to the event log; anything else
        // is answered like a gRPC server answers an unknown method.
        let router = Routes::new(health_service)
            .into_axum_router()
            .route_service("/events", events);
        App {
            log,
            health,
            shutdown,
            router,
        }
    }

    /// The served log: push to it from anywhere.
    pub fn log(&self) -> &MemoryLog {
        &self.log
    }

    /// The health reporter: mark services serving or not.
    pub fn health(&self) -> &HealthReporter {
        &self.health
    }

    /// The router: gRPC health plus `/events`.
    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }

    /// Appends an event named `tick` (`tick 1`, `tick 2`, …) every `every`, until shutdown.
    pub fn spawn_ticker(&self, every: Duration) -> JoinHandle<()> {
        let log = self.log.clone();
        serve::spawn_ticker(every, self.shutdown.triggered(), move |n| {
            let tick = Event::new(format!("tick {n}")).with_name("tick");
            // The ticks' log is never finished, so it takes every tick.
            let _ = log.push(tick.expect("a valid name"));
        })
    }

    /// Serves connections from `listener` until `stop` resolves, then shuts down gracefully:
    /// reports `NOT_SERVING`, stops accepting, ends the event streams and pending long polls,
    /// and waits (at most [`GRACE`]) for the connections to close.
    pub async fn serve(self, listener: TcpListener, stop: impl Future<Output = ()>) -> io::Result<()> {
        let (health, shutdown) = (self.health.clone(), self.shutdown.clone());
        let drain = async move {
            // Load balancers polling the health check stop sending traffic here.
            health.set_service_status("", ServingStatus::NotServing).await;
            shutdown.trigger();
        };
        serve::serve_gracefully(listener, self.router, stop, drain, GRACE).await
    }
}
