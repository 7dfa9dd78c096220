//! The servers under test. Each runs in a process of its own (`compare --serve <kind> <port>`)
//! so that its memory and CPU time can be read from `/proc` apart from the load generator.
//! The ceiling, raw tokio with no HTTP framework, is in `ceiling.rs`; axum's `Sse` in
//! `axum_sse.rs`.

use std::io::{self, Read as _};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::{TcpListener, TcpSocket};
use tower_eventstream::{MemoryLog, StreamConfig};

use crate::settings::{HISTORY, KEEP_ALIVE};

/// Runs server `kind` on 127.0.0.1:`port` (0: any free port), serving `app` (`None`: the
/// chat router; else a `topics_servers.rs` app), prints `READY <port>` and serves until
/// the parent closes our stdin or kills us.
pub fn serve(kind: &str, port: u16, app: Option<&str>) -> ! {
    // The parent holds our stdin open; when it goes away (even by a crash), so do we.
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = io::stdin().lock();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the server runtime");
    let result: io::Result<()> = runtime.block_on(async {
        let listener = listen(port)?;
        println!("READY {}", listener.local_addr()?.port());
        if let Some(app) = app {
            return crate::topics_servers::serve(kind, app, listener).await;
        }
        match kind {
            "crate" => crate_axum_serve(listener).await,
            "crate-h1" => crate_hyper_http1(listener).await,
            "crate-server" => crate_own_server(listener).await,
            "crate-metrics" => crate_with_metrics(listener).await,
            "axum" => crate::axum_sse::serve(listener).await,
            "ceiling" => crate::ceiling::serve(listener).await,
            other => Err(io::Error::other(format!("unknown server kind {other}"))),
        }
    });
    eprintln!("server {kind} stopped: {result:?}");
    std::process::exit(1)
}

/// Every server listens with the same backlog (nginx is configured alike).
fn listen(port: u16) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    socket.listen(4096)
}

/// The chat example's router with `log` as its lobby (`/api/events`, `/api/messages`).
fn chat_router(log: &MemoryLog) -> Router {
    let config = StreamConfig::default().keep_alive(KEEP_ALIVE);
    crate::app::router(crate::app::memory_rooms(log), config)
}

/// This crate as the README shows it: the chat example's router under `axum::serve`.
async fn crate_axum_serve(listener: TcpListener) -> io::Result<()> {
    let log = MemoryLog::builder().history(HISTORY).build();
    let app = chat_router(&log);
    axum::serve(listener, app).await
}

/// `crate` with the metrics on: a Prometheus recorder installed, as the chat example's `main`
/// does (the `metrics` feature), its histograms summarised every 5 s.
#[cfg(feature = "metrics")]
async fn crate_with_metrics(listener: TcpListener) -> io::Result<()> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(io::Error::other)?;
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            handle.run_upkeep();
        }
    });
    crate_axum_serve(listener).await
}

#[cfg(not(feature = "metrics"))]
async fn crate_with_metrics(_listener: TcpListener) -> io::Result<()> {
    Err(io::Error::other(
        "crate-metrics needs the bench built with `--features metrics`",
    ))
}

/// The same router served by hyper's HTTP/1 connection builder directly, as a
/// performance-minded user would: no HTTP/2 detection in front of each connection, and
/// `TCP_NODELAY` so small frames are not held back by Nagle's algorithm.
async fn crate_hyper_http1(listener: TcpListener) -> io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let log = MemoryLog::builder().history(HISTORY).build();
    let app = chat_router(&log);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new());
    let builder = Arc::new(builder);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let builder = Arc::clone(&builder);
        tokio::spawn(async move {
            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// The same router on this crate's own server (feature `server`): body-less `GET`s answered
/// without a buffer per connection, the publishers' `POST`s by hyper.
async fn crate_own_server(listener: TcpListener) -> io::Result<()> {
    let log = MemoryLog::builder().history(HISTORY).build();
    let app = chat_router(&log);
    tower_eventstream::server::Server::new(app).serve(listener).await;
    Ok(())
}
