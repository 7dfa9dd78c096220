//! An event log served by plain hyper 1.x through hyper-util: no axum, no router.
//!
//! Run with `cargo run --example hyper` (`ADDR` sets the address, default 127.0.0.1:3001).
//! A `tick` event is appended every second; read it with any transport:
//!
//! ```sh
//! curl -N -H 'accept: text/event-stream' http://127.0.0.1:3001/events   # SSE over HTTP/1.1
//! curl -N --http2-prior-knowledge -H 'accept: text/event-stream' http://127.0.0.1:3001/events
//! curl 'http://127.0.0.1:3001/events?timeout=5000'                       # long poll
//! ```
//!
//! Ctrl-C ends the open streams and pending polls and stops the server gracefully.

// Some of its accessors are only used by `tests/examples.rs`.
#[allow(dead_code)]
mod app;
#[path = "../shared/process.rs"]
mod process;

use std::time::Duration;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = process::listen_addr("127.0.0.1:3001")?;

    let app = app::App::new();
    app.spawn_ticker(Duration::from_secs(1));

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "events on http://{}/events (HTTP/1.1 and h2c)",
        listener.local_addr()?
    );
    app.serve(listener, process::stop_signal()).await
}
