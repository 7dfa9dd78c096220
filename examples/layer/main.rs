//! An existing Tower service (a feed of price ticks, `feed.rs`) made a resumable SSE and
//! long-poll endpoint by adding layers with `tower::ServiceBuilder` (`app.rs`).
//!
//! Run with `cargo run --example layer` (`ADDR` sets the address, default 127.0.0.1:3003).
//! A tick is published every second.
//!
//! ```sh
//! curl -N -H 'accept: text/event-stream' http://127.0.0.1:3003/ticks
//! curl -N -H 'accept: text/event-stream' -H 'last-event-id: 3' http://127.0.0.1:3003/ticks
//! curl 'http://127.0.0.1:3003/ticks?lastEventId=3&timeout=5000'
//! # The same ticks through an event log filled from the feed's broadcast:
//! curl -N -H 'accept: text/event-stream' http://127.0.0.1:3003/ticks/log
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
    let addr = process::listen_addr("127.0.0.1:3003")?;

    let app = app::App::new();
    app.spawn_ticker(Duration::from_secs(1));

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    println!("ticks on http://{addr}/ticks (resumed by the feed)");
    println!("ticks on http://{addr}/ticks/log (resumed by an event log filled from the feed)");
    app.serve(listener, process::stop_signal()).await
}
