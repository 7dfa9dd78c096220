//! Graceful shutdown of open streams.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

/// A handle that ends every open SSE stream and answers every pending long poll.
///
/// A pending SSE body never ends by itself, so a server's graceful shutdown would wait
/// forever. Trigger this handle when shutdown starts: each stream sends a short, jittered
/// `retry:` hint and ends; each long poll answers at once with the empty shape.
///
/// ```no_run
/// use tower_eventstream::{MemoryLog, Shutdown, StreamConfig, EventLogService};
///
/// # async fn run() -> std::io::Result<()> {
/// let shutdown = Shutdown::new();
/// let service = EventLogService::new(MemoryLog::new())
///     .with_config(StreamConfig::default().shutdown(shutdown.clone()));
/// let app = axum::Router::new().route_service("/events", service);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// axum::serve(listener, app)
///     .with_graceful_shutdown(async move {
///         let _ = tokio::signal::ctrl_c().await;
///         shutdown.trigger();
///     })
///     .await
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    triggered: AtomicBool,
    notify: Arc<Notify>,
}

impl Shutdown {
    /// A handle not yet triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ends every stream served with this handle, now and later.
    pub fn trigger(&self) {
        self.inner.triggered.store(true, Ordering::Release);
        self.inner.notify.notify_waiters();
    }

    /// Whether [`trigger`](Shutdown::trigger) was called.
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.load(Ordering::Acquire)
    }

    /// Resolves once the handle is triggered.
    pub fn triggered(&self) -> ShutdownSignal {
        ShutdownSignal::new(self)
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("triggered", &self.is_triggered())
            .finish()
    }
}

/// The future of [`Shutdown::triggered`].
pub struct ShutdownSignal {
    shutdown: Shutdown,
    notified: Pin<Box<OwnedNotified>>,
}

impl ShutdownSignal {
    fn new(shutdown: &Shutdown) -> Self {
        // Created before the flag is read, so a trigger in between still wakes it.
        let notified = Box::pin(Arc::clone(&shutdown.inner.notify).notified_owned());
        ShutdownSignal {
            shutdown: shutdown.clone(),
            notified,
        }
    }
}

impl Future for ShutdownSignal {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.shutdown.is_triggered() {
            return Poll::Ready(());
        }
        self.notified.as_mut().poll(cx)
    }
}

impl fmt::Debug for ShutdownSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownSignal")
            .field("shutdown", &self.shutdown)
            .finish()
    }
}
