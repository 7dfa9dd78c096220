//! Streams with an end: each prompt starts a generation (a stand-in for a language model),
//! streamed token by token over SSE or long polling, resumable, that ends; a page opened late
//! shows the whole text, and a browser that comes back after the end is told it is over
//! (`204`) instead of reconnecting for ever (routes and contract in `app.rs`).
//!
//! Run with `cargo run --example generations`, then open http://127.0.0.1:3005, or:
//!
//! ```sh
//! curl -d 'the quick brown fox' http://127.0.0.1:3005/api/generations
//! # {"id":"g1-…"}
//! curl -N -H 'accept: text/event-stream' http://127.0.0.1:3005/api/generations/g1-…/events
//! curl 'http://127.0.0.1:3005/api/generations/g1-…/events?timeout=5000'
//! ```
//!
//! Each generation is 50 `token` events, one every 50 ms. `ADDR` sets the listening
//! address; `KEEP_SECS` how long a finished generation stays readable (default 60, then
//! `404`). Everything lives in this process's memory. Ctrl-C ends the open streams and
//! pending polls and stops the server gracefully.

mod app;
#[path = "../shared/process.rs"]
mod process;

use tower_eventstream::{Shutdown, StreamConfig};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = process::listen_addr("127.0.0.1:3005")?;
    let keep_secs = std::env::var("KEEP_SECS").ok();
    let keep = app::keep_from(keep_secs.as_deref())
        .map_err(|reason| std::io::Error::new(std::io::ErrorKind::InvalidInput, reason))?;

    let shutdown = Shutdown::new();
    let router = app::router(
        app::generations(keep),
        app::Settings::default(),
        StreamConfig::default().shutdown(shutdown.clone()),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "generations on http://{} (a finished one kept {}s)",
        listener.local_addr()?,
        keep.as_secs()
    );
    app::serve(listener, router, shutdown, process::stop_signal()).await
}
