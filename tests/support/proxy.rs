//! A TCP proxy on 127.0.0.1 between a client and one or more servers, that can lose an answer:
//! a publisher whose response is cut after the server acted on its request.
//!
//! Connection `n` goes to the `n`-th upstream (the last one for every later connection), so
//! that a retry can land on another instance. The first `drop_answers` connections have
//! their request forwarded, and once the server's answer starts coming back the proxy
//! closes the client's side without passing it on: the client sees the connection end with
//! no response, as after a network failure, and the server has done the work.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A running proxy; stops when dropped.
#[allow(dead_code)]
pub struct DroppingProxy {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

#[allow(dead_code)]
impl DroppingProxy {
    /// Proxies to `upstreams` (in turn, see the module), losing the answers of the first
    /// `drop_answers` connections.
    pub async fn start(upstreams: Vec<SocketAddr>, drop_answers: usize) -> DroppingProxy {
        assert!(!upstreams.is_empty(), "a proxy needs an upstream");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counting = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let n = counting.fetch_add(1, Ordering::SeqCst);
                let upstream = upstreams[n.min(upstreams.len() - 1)];
                tokio::spawn(relay(client, upstream, n < drop_answers));
            }
        });
        DroppingProxy { addr, accepted, task }
    }

    /// The connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for DroppingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Relays one connection; with `lose_answer`, closes the client once the answer begins.
async fn relay(client: TcpStream, upstream: SocketAddr, lose_answer: bool) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    });
    if lose_answer {
        // The server has answered, so it acted on the request: the answer goes nowhere.
        let mut first = [0u8; 1];
        let _ = server_read.read(&mut first).await;
        requests.abort();
        let _ = client_write.shutdown().await;
        return;
    }
    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    let _ = client_write.shutdown().await;
    requests.abort();
}
