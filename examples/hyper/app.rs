//! The plain-hyper server, shared by `main.rs` and `tests/examples.rs`.
//!
//! No framework: hyper-util's `auto::Builder` speaks HTTP/1.1 and HTTP/2 with prior knowledge
//! (h2c) on one port, `TowerToHyperService` runs the Tower service [`EventLogService`] as a
//! hyper service, and `GracefulShutdown` waits for the open connections once the
//! [`Shutdown`] handle has ended the event streams (the accept loop and the ticker are in
//! `examples/shared/serve.rs`).
//!
//! There is no router: every path serves the log (`/events` by convention). Put a router in
//! front of the service to serve more.

#[path = "../shared/serve.rs"]
mod serve;

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower_eventstream::{Event, EventLogService, MemoryLog, Shutdown, StreamConfig};

/// How long open connections get to finish once shutdown has begun. Event streams end at
/// once (the `Shutdown` handle ends them), so this only bounds misbehaving connections.
pub const GRACE: Duration = Duration::from_secs(5);

/// The server's state: the log it serves and the handle that ends its streams.
#[derive(Clone, Default)]
pub struct App {
    log: MemoryLog,
    shutdown: Shutdown,
}

impl App {
    /// A new, empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// The served log: push to it from anywhere.
    pub fn log(&self) -> &MemoryLog {
        &self.log
    }

    /// The Tower service that answers every request: SSE, long poll or short poll.
    pub fn service(&self) -> EventLogService<MemoryLog> {
        EventLogService::new(self.log.clone())
            .with_config(StreamConfig::default().shutdown(self.shutdown.clone()))
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
    /// stops accepting, ends the event streams and pending long polls, and waits (at most
    /// [`GRACE`]) for the connections to close.
    pub async fn serve(self, listener: TcpListener, stop: impl Future<Output = ()>) -> io::Result<()> {
        let shutdown = self.shutdown.clone();
        // Open SSE responses never end by themselves: end them (each gets a jittered `retry:`
        // hint), and answer pending long polls, so that the connections can close.
        let drain = async move { shutdown.trigger() };
        serve::serve_gracefully(listener, self.service(), stop, drain, GRACE).await
    }
}
