//! Chat rooms served live over SSE and long polling, one event log per room.
//!
//! Run with `cargo run --example chat`, then open http://127.0.0.1:3000 in two tabs
//! (http://127.0.0.1:3000/#kitchen for the room `kitchen`, /#kitchen,garden for both rooms on
//! one connection; the lobby without a `#room`).
//! `ADDR` sets the listening address.
//!
//! Several instances share the rooms through Redis Streams (Redis 7.0 or later):
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6379 ADDR=127.0.0.1:3000 cargo run --example chat --features redis
//! REDIS_URL=redis://127.0.0.1:6379 ADDR=127.0.0.1:3001 cargo run --example chat --features redis
//! ```
//!
//! Or through PostgreSQL (13 or later): the rooms are topics of one table, created at startup
//! if missing (see the GUIDE's "PostgreSQL" section), and any program can post with an `INSERT`:
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1/postgres ADDR=127.0.0.1:3000 cargo run --example chat --features postgres
//! DATABASE_URL=postgres://postgres@127.0.0.1/postgres ADDR=127.0.0.1:3001 cargo run --example chat --features postgres
//! ```
//!
//! A page can then reconnect to either instance and resume with `Last-Event-ID`.
//!
//! `GET /metrics` serves the process's metrics in Prometheus' text format; built with
//! `--features metrics` they include the crate's own (`eventstream_*`, listed in the README's
//! "Operating it"), every one from the first scrape (at zero until counted). The page's
//! panel shows connected readers and messages per second.
//! `REDIS_STREAM` sets the prefix of the rooms' stream keys (default `chat`: the room `lobby`
//! is the stream `chat:lobby`). On PostgreSQL the room `lobby` is the topic `chat:lobby`. If
//! both `REDIS_URL` and `DATABASE_URL` are set, Redis is used (the first line printed names
//! the store). Without either the rooms live in this process's memory, each closed (and its
//! history dropped) after ten minutes without readers or messages.

mod app;
#[path = "../shared/process.rs"]
mod process;

use std::net::SocketAddr;

use tower_eventstream::{MakeLog, MemoryLog, Shutdown, Topics};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = process::listen_addr("127.0.0.1:3000")?;

    let set = |name| std::env::var(name).ok().filter(|url| !url.is_empty());
    match (set("REDIS_URL"), set("DATABASE_URL")) {
        (Some(url), _) => serve_redis(addr, &url).await,
        (None, Some(url)) => serve_postgres(addr, &url).await,
        (None, None) => serve(addr, Topics::new(MemoryLog::builder()), "memory").await,
    }
}

#[cfg(feature = "redis")]
async fn serve_redis(addr: SocketAddr, url: &str) -> std::io::Result<()> {
    let key = std::env::var("REDIS_STREAM").unwrap_or_else(|_| "chat".to_owned());
    // One stream per room, `<key>:<room>`, all read by this process's one reader.
    let logs = tower_eventstream::RedisLog::builder(url, format!("{key}:"))
        .connect_logs()
        .await
        .map_err(|e| std::io::Error::other(format!("REDIS_URL: {e}")))?;
    serve(addr, Topics::new(logs), &format!("Redis streams `{key}:<room>`")).await
}

#[cfg(not(feature = "redis"))]
async fn serve_redis(_addr: SocketAddr, _url: &str) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "REDIS_URL is set but this build has no Redis support: run `cargo run --example chat --features redis`",
    ))
}

#[cfg(feature = "postgres")]
async fn serve_postgres(addr: SocketAddr, url: &str) -> std::io::Result<()> {
    // One topic per room, `chat:<room>`, all read by this process's one reader; the schema
    // is created if missing.
    let logs = tower_eventstream::PostgresLog::builder(url, "chat:")
        .migrate()
        .connect_logs()
        .await
        .map_err(|e| std::io::Error::other(format!("DATABASE_URL: {e}")))?;
    serve(addr, Topics::new(logs), "PostgreSQL topics `chat:<room>`").await
}

#[cfg(not(feature = "postgres"))]
async fn serve_postgres(_addr: SocketAddr, _url: &str) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "DATABASE_URL is set but this build has no PostgreSQL support: run `cargo run --example chat --features postgres`",
    ))
}

async fn serve<M: MakeLog>(addr: SocketAddr, rooms: Topics<M>, store: &str) -> std::io::Result<()> {
    let shutdown = Shutdown::new();
    // The recorder first, then the crate's series described to it (`describe_metrics`), so the
    // first scrape already lists them all.
    let metrics =
        app::install_metrics().map_err(|e| std::io::Error::other(format!("metrics recorder: {e}")))?;
    // Histograms are summarised as they are rendered; keep them from growing between scrapes.
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let app = app::router(rooms, app::config().shutdown(shutdown.clone())).merge(app::metrics(metrics));

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "chat listening on http://{} (messages in {store})",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            process::stop_signal().await;
            // Open SSE streams never end by themselves; end them so the server can stop.
            shutdown.trigger();
        })
        .await
}
