//! The plain-hyper server, shared by `main.rs` and `tests/examples.rs`.
//!
//! No framework: hyper-util's `auto::Builder` speaks HTTP/1.1 and HTTP/2 with prior knowledge
//! (h2c) on one port, `TowerToHyperService` runs the Tower service [`EventLogService`] as a
//! hyper service, and `GracefulShutdown` waits for the open connections once the
//! [`Shutdown`] handle has ended the event streams.
//!
//! There is no router: every path serves the log (`/events` by convention). Put a router in
//! front of the service to serve more.

use std::future::Future;
use std::io;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
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
        let stopped = self.shutdown.triggered();
        tokio::spawn(async move {
            tokio::pin!(stopped);
            let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            for n in 1u64.. {
                tokio::select! {
                    _ = interval.tick() => {}
                    () = &mut stopped => break,
                }
                log.push(
                    Event::new(format!("tick {n}"))
                        .with_name("tick")
                        .expect("a valid name"),
                );
            }
        })
    }

    /// Serves connections from `listener` until `stop` resolves, then shuts down gracefully:
    /// stops accepting, ends the event streams and pending long polls, and waits (at most
    /// [`GRACE`]) for the connections to close.
    pub async fn serve(self, listener: TcpListener, stop: impl Future<Output = ()>) -> io::Result<()> {
        let service = self.service();
        // HTTP/1.1, or HTTP/2 when the connection opens with the HTTP/2 preface.
        let builder = auto::Builder::new(TokioExecutor::new());
        let graceful = GracefulShutdown::new();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _peer)) => stream,
                        Err(error) => {
                            // Such as too many open files: wait a little instead of spinning.
                            eprintln!("accept failed: {error}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let hyper_service = TowerToHyperService::new(service.clone());
                    let connection = builder.serve_connection(TokioIo::new(stream), hyper_service);
                    let connection = graceful.watch(connection.into_owned());
                    tokio::spawn(async move {
                        // A client that goes away mid-stream is routine for SSE: not worth a log line.
                        let _ = connection.await;
                    });
                }
                () = &mut stop => break,
            }
        }
        drop(listener);
        // Open SSE responses never end by themselves: end them (each gets a jittered `retry:`
        // hint), and answer pending long polls, so that the connections can close.
        self.shutdown.trigger();
        tokio::time::timeout(GRACE, graceful.shutdown())
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connections still open {GRACE:?} after shutdown began"),
                )
            })
    }
}
