//! What the examples share in serving: a ticker that publishes until shutdown, and an accept
//! loop on hyper-util with graceful shutdown.
//!
//! Each example's `app.rs` includes this file with
//! `#[path = "../shared/serve.rs"] mod serve;`, so that `tests/examples.rs`, which includes
//! the `app.rs` files, gets it too.

use std::future::Future;
use std::io;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Calls `tick(n)` with n = 1, 2, … every `every` (the first after `every`), until `stopped`
/// resolves.
pub fn spawn_ticker(
    every: Duration,
    stopped: impl Future<Output = ()> + Send + 'static,
    mut tick: impl FnMut(u64) + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        tokio::pin!(stopped);
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        for n in 1u64.. {
            tokio::select! {
                _ = interval.tick() => {}
                () = &mut stopped => break,
            }
            tick(n);
        }
    })
}

/// Serves `service` on every connection from `listener` until `stop` resolves, then shuts
/// down gracefully: stops accepting, runs `drain` (which must end the responses that never
/// end by themselves: event streams, pending long polls) and waits at most `grace` for the
/// open connections to close.
///
/// Each connection speaks HTTP/1.1, or HTTP/2 when it opens with the HTTP/2 preface (h2c).
pub async fn serve_gracefully<S, B>(
    listener: TcpListener,
    service: S,
    stop: impl Future<Output = ()>,
    drain: impl Future<Output = ()>,
    grace: Duration,
) -> io::Result<()>
where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
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
    drain.await;
    tokio::time::timeout(grace, graceful.shutdown())
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connections still open {grace:?} after shutdown began"),
            )
        })
}
