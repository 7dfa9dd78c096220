//! A gRPC service (the standard health check) and an event stream on one port.
//!
//! Run with `cargo run --example tonic` (`ADDR` sets the address, default 127.0.0.1:3002).
//! A `tick` event is appended every second.
//!
//! ```sh
//! grpcurl -plaintext 127.0.0.1:3002 grpc.health.v1.Health/Check      # gRPC over h2c
//! curl -N -H 'accept: text/event-stream' http://127.0.0.1:3002/events  # SSE over HTTP/1.1
//! curl 'http://127.0.0.1:3002/events?timeout=5000'                     # long poll
//! ```
//!
//! (`grpcurl` needs reflection or the proto file: `-proto health.proto`, or use any gRPC
//! health probe.) Ctrl-C reports `NOT_SERVING`, ends the open streams and stops the server.

// Some of its accessors are only used by `tests/examples.rs`.
#[allow(dead_code)]
mod app;
#[path = "../shared/process.rs"]
mod process;

use std::time::Duration;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = process::listen_addr("127.0.0.1:3002")?;

    let app = app::App::new();
    app.spawn_ticker(Duration::from_secs(1));

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    println!("gRPC health on {local} (h2c), events on http://{local}/events");
    app.serve(listener, process::stop_signal()).await
}
