//! A test server on 127.0.0.1 (a free port), served one of three ways ([`Serving`]), chosen
//! by the test: a suite written over `Serving` runs on each server its test binaries name
//! (see [`tests_on`]).
//!
//! Where the way of serving has an accept loop of its own (`axum::serve`,
//! `Server::serve_with_shutdown`), [`TestServer::start`] uses it, graceful shutdown included.
//! hyper-util has none: its server, and any server started with
//! [`TestServer::start_cuttable`], runs an accept loop of the test's own that serves each
//! connection on a task of its own, so that the test can [cut](TestServer::cut) every open
//! connection at once (a crash or a network failure, as a client sees it) and
//! [swap](TestServer::swap) the router (a restart behind the same address).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{AbortHandle, JoinHandle};
use tower::Service;
use tower_eventstream::{BoxError, EventLogService, MemoryLog, Shutdown, StreamConfig};

use super::within;

/// How a [`TestServer`] serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)]
pub enum Serving {
    /// `axum::serve`, exactly as the chat example's `main` serves.
    Axum,
    /// hyper-util's auto builder (HTTP/1.1 and h2c, upgrades), one connection at a time
    /// from the test's own accept loop, as a hyper application serves.
    HyperUtil,
    /// The crate's own `tower_eventstream::server::Server`.
    #[cfg(feature = "server")]
    CrateServer,
}

/// What the server's `serve` future waits for before its graceful shutdown begins.
#[allow(dead_code)]
pub type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A running server; dropping it stops it at once, cutting the connections of its own loop.
#[allow(dead_code)]
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
    /// The connections of the test's own accept loop, if it runs one.
    connections: Option<Arc<Connections>>,
}

#[allow(dead_code)]
impl TestServer {
    /// Serves `router` the way `serving` says.
    pub async fn start(serving: Serving, router: Router) -> TestServer {
        TestServer::start_with_shutdown(serving, router, None).await
    }

    /// Like [`start`](Self::start); when the graceful shutdown begins (see
    /// [`begin_shutdown`](Self::begin_shutdown)), `shutdown` is triggered first, as the chat
    /// example's `main` does, so open streams end and pending long polls answer.
    pub async fn start_with_shutdown(
        serving: Serving,
        router: Router,
        shutdown: Option<Shutdown>,
    ) -> TestServer {
        match serving {
            Serving::Axum => {
                let signal = shutdown_signal(shutdown);
                TestServer::serve_with(|listener, stop| async move {
                    let serving = axum::serve(listener, router).with_graceful_shutdown(signal(stop));
                    serving.await
                })
                .await
            }
            Serving::HyperUtil => TestServer::own_loop(Kind::HyperUtil, hyper_util(router), shutdown).await,
            #[cfg(feature = "server")]
            Serving::CrateServer => {
                let signal = shutdown_signal(shutdown);
                TestServer::serve_with(|listener, stop| async move {
                    let server = tower_eventstream::server::Server::new(router);
                    server.serve_with_shutdown(listener, signal(stop)).await;
                    Ok(())
                })
                .await
            }
        }
    }

    /// Serves `router` from the test's own accept loop, so that connections can be cut and
    /// the router swapped: each connection served by hyper-util or by the crate's server
    /// (`Server::serve_connection`, which is told of no shutdown: a graceful shutdown only
    /// stops accepting). `axum::serve` has no such form; hyper-util is what it runs for each
    /// connection.
    pub async fn start_cuttable(serving: Serving, router: Router) -> TestServer {
        match serving {
            Serving::Axum => panic!("axum::serve owns its connections: cut them on Serving::HyperUtil"),
            Serving::HyperUtil => TestServer::own_loop(Kind::HyperUtil, hyper_util(router), None).await,
            #[cfg(feature = "server")]
            Serving::CrateServer => TestServer::own_loop(Kind::CrateServer, crate_server(router), None).await,
        }
    }

    /// Serves any tower service with hyper-util from the test's own accept loop (no router
    /// around it); `shutdown` as in [`start_with_shutdown`](Self::start_with_shutdown).
    pub async fn hyper_util<S, B>(service: S, shutdown: Option<Shutdown>) -> TestServer
    where
        S: Service<http::Request<Incoming>, Response = http::Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        TestServer::own_loop(Kind::HyperUtil, hyper_util(service), shutdown).await
    }

    /// Runs `serve(listener, signal)` on a listener bound to a free port, as an application's
    /// `main` runs its server; `signal` completes when the graceful shutdown begins.
    pub async fn serve_with<F>(serve: impl FnOnce(TcpListener, Signal) -> F) -> TestServer
    where
        F: Future<Output = io::Result<()>> + Send + 'static,
    {
        let (listener, addr) = bind().await;
        let (stop, stopped) = oneshot::channel::<()>();
        let signal: Signal = Box::pin(async move {
            // A dropped sender also ends the server.
            let _ = stopped.await;
        });
        let task = tokio::spawn(serve(listener, signal));
        TestServer {
            addr,
            stop: Some(stop),
            task: Some(task),
            connections: None,
        }
    }

    async fn own_loop(kind: Kind, serve: ServeConnection, shutdown: Option<Shutdown>) -> TestServer {
        let (listener, addr) = bind().await;
        let connections = Arc::new(Connections {
            kind,
            serve: Mutex::new(serve),
            open: Mutex::new(HashMap::new()),
            closing: Mutex::new(HashSet::new()),
            next_id: AtomicU64::new(0),
            accepted: AtomicUsize::new(0),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&connections), stopped, shutdown));
        TestServer {
            addr,
            stop: Some(stop),
            task: Some(task),
            connections: Some(connections),
        }
    }

    /// Stops accepting and begins the graceful shutdown (triggering the `Shutdown` given).
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits for the server to return after [`begin_shutdown`](Self::begin_shutdown).
    pub async fn stopped(mut self) -> io::Result<()> {
        let task = self.task.take().expect("the server task");
        within("the server to stop", task)
            .await
            .expect("the server task panicked")
    }

    /// Drops every open connection without a proper end of response; returns how many.
    pub fn cut(&self) -> usize {
        let connections = self.own();
        // Both tables under one hold: a task ending meanwhile cannot leave its id in
        // `closing` for good.
        let mut open = lock(&connections.open);
        let mut closing = lock(&connections.closing);
        let cut = open.len();
        for (id, handle) in open.drain() {
            closing.insert(id);
            handle.abort();
        }
        cut
    }

    /// [`cut`](Self::cut), then waits until every cut connection is closed: an abort takes
    /// effect when the connection's task next runs, so without the wait a publish right after
    /// the cut can still reach a client over the connection being cut.
    pub async fn cut_and_settle(&self) -> usize {
        let cut = self.cut();
        let connections = self.own();
        super::wait_until("the cut connections to close", || {
            lock(&connections.closing).is_empty()
        })
        .await;
        cut
    }

    /// New connections are served by `router` from now on; open ones keep the old one.
    pub fn swap(&self, router: Router) {
        let connections = self.own();
        let serve = match connections.kind {
            Kind::HyperUtil => hyper_util(router),
            #[cfg(feature = "server")]
            Kind::CrateServer => crate_server(router),
        };
        *lock(&connections.serve) = serve;
    }

    /// How many TCP connections the server has accepted.
    pub fn accepted(&self) -> usize {
        self.own().accepted.load(Ordering::SeqCst)
    }

    fn own(&self) -> &Connections {
        self.connections
            .as_deref()
            .expect("only a server on the test's own accept loop can cut, swap or count connections")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if self.connections.is_some() {
            self.cut();
        }
    }
}

/// A router serving `log` at `/events` with `config`, as the README shows.
#[allow(dead_code)]
pub fn events_router(log: &MemoryLog, config: StreamConfig) -> Router {
    Router::new().route_service("/events", EventLogService::new(log.clone()).with_config(config))
}

/// One `#[tokio::test]` per test of a suite of `tests/suites/`, each calling the suite's
/// function of the same name with `$serving`:
/// `tests_on!(Serving::Axum; chat; #[tokio::test] a_test, another_test)`.
#[allow(unused_macros)]
macro_rules! tests_on {
    ($serving:expr; $suite:ident; #[$runtime:meta] $($test:ident),+ $(,)?) => {
        $(
            #[$runtime]
            async fn $test() {
                crate::suites::$suite::$test($serving).await;
            }
        )+
    };
}
#[allow(unused_imports)]
pub(crate) use tests_on;

async fn bind() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    (listener, addr)
}

/// The signal of a framework's loop: the stop signal, then `shutdown` triggered.
fn shutdown_signal(shutdown: Option<Shutdown>) -> impl FnOnce(Signal) -> Signal {
    move |stop| {
        Box::pin(async move {
            stop.await;
            if let Some(shutdown) = shutdown {
                shutdown.trigger();
            }
        })
    }
}

/// Which server the test's own loop runs each connection on.
#[derive(Debug, Clone, Copy)]
enum Kind {
    HyperUtil,
    #[cfg(feature = "server")]
    CrateServer,
}

/// Serves one accepted connection; hyper's connections are watched for the graceful shutdown.
type ServeConnection =
    Arc<dyn Fn(TcpStream, &GracefulShutdown) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

fn hyper_util<S, B>(service: S) -> ServeConnection
where
    S: Service<http::Request<Incoming>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    let service = Mutex::new(service);
    Arc::new(move |stream, graceful| {
        let service = TowerToHyperService::new(lock(&service).clone());
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        Box::pin(async move {
            let _ = connection.await;
        })
    })
}

#[cfg(feature = "server")]
fn crate_server(router: Router) -> ServeConnection {
    let server = Mutex::new(tower_eventstream::server::Server::new(router));
    Arc::new(move |stream, _| Box::pin(lock(&server).serve_connection(stream)))
}

/// The state of the test's own accept loop.
struct Connections {
    kind: Kind,
    serve: Mutex<ServeConnection>,
    open: Mutex<HashMap<u64, AbortHandle>>,
    /// Connections cut whose tasks have not ended yet.
    closing: Mutex<HashSet<u64>>,
    next_id: AtomicU64,
    accepted: AtomicUsize,
}

/// Removes a connection from the table when its task ends or is aborted.
struct Registered {
    connections: Arc<Connections>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.connections.open).remove(&self.id);
        lock(&self.connections.closing).remove(&self.id);
    }
}

async fn accept_loop(
    listener: TcpListener,
    connections: Arc<Connections>,
    mut stopped: oneshot::Receiver<()>,
    shutdown: Option<Shutdown>,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = &mut stopped => break,
        };
        connections.accepted.fetch_add(1, Ordering::SeqCst);
        let _ = stream.set_nodelay(true);
        let connection = lock(&connections.serve)(stream, &graceful);
        let id = connections.next_id.fetch_add(1, Ordering::Relaxed);
        // Hold the table lock while spawning so the task cannot unregister before it is registered.
        let mut open = lock(&connections.open);
        let registered = Registered {
            connections: Arc::clone(&connections),
            id,
        };
        let task = tokio::spawn(async move {
            let _registered = registered;
            connection.await;
        });
        open.insert(id, task.abort_handle());
    }
    drop(listener);
    if let Some(shutdown) = shutdown {
        shutdown.trigger();
    }
    graceful.shutdown().await;
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
