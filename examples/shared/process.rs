//! What every example's `main` needs from its process: the address and the stop signal.

use std::net::SocketAddr;

/// The address from `ADDR`, or `default`.
pub fn listen_addr(default: &str) -> std::io::Result<SocketAddr> {
    std::env::var("ADDR")
        .unwrap_or_else(|_| default.to_owned())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("ADDR: {e}")))
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM (what process managers send).
pub async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            // Without a SIGTERM handler, Ctrl-C still works.
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
