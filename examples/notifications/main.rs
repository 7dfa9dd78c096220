//! One stream per user plus a broadcast: each signed-in user reads their own notifications,
//! everyone's announcements and, for admins, the audit trail, on one resumable connection
//! (routes and contract in `app.rs`).
//!
//! Run with `cargo run --example notifications`, then open http://127.0.0.1:3004 in two
//! browsers (a cookie is per browser, not per tab), sign in as `ada` in one and `admin-bo` in
//! the other, and publish:
//!
//! ```sh
//! curl -d 'your report is ready' http://127.0.0.1:3004/api/users/ada/notifications
//! curl -d 'maintenance at noon' http://127.0.0.1:3004/api/announcements
//! curl -d 'ada signed in' http://127.0.0.1:3004/api/audit
//! curl -N -H 'accept: text/event-stream' -b user=ada http://127.0.0.1:3004/api/notifications
//! curl -b user=admin-bo 'http://127.0.0.1:3004/api/notifications?timeout=5000'
//! ```
//!
//! `ADDR` sets the listening address. Everything lives in this process's memory. Ctrl-C ends
//! the open streams and pending polls and stops the server gracefully.

mod app;
#[path = "../shared/process.rs"]
mod process;

use tower_eventstream::{MemoryLog, Shutdown, StreamConfig, Topics};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = process::listen_addr("127.0.0.1:3004")?;
    let shutdown = Shutdown::new();
    let topics = Topics::new(MemoryLog::builder());
    let app = app::router(topics, StreamConfig::default().shutdown(shutdown.clone()));

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("notifications on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            process::stop_signal().await;
            // Open SSE streams never end by themselves; end them so the server can stop.
            shutdown.trigger();
        })
        .await
}
