//! A chat room served live over SSE and long polling from one in-memory event log.
//!
//! Run with `cargo run --example chat`, then open http://127.0.0.1:3000 in two tabs.
//! `ADDR` sets the listening address.

mod app;

use std::net::SocketAddr;

use tower_eventstream::{MemoryLog, Shutdown, StreamConfig};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::var("ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("ADDR: {e}")))?;

    let log = MemoryLog::new();
    let shutdown = Shutdown::new();
    let app = app::router(log, StreamConfig::default().shutdown(shutdown.clone()));

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("chat listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            stop_signal().await;
            // Open SSE streams never end by themselves; end them so the server can stop.
            shutdown.trigger();
        })
        .await
}

async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
