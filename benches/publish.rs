//! Publishes per second through `PublishService` against a hand-written axum `POST` route
//! (what the chat example had before the service: the body as text, named `message`,
//! appended with `Topics::append`, `201 {"id":…}`), and through the service with an
//! `Idempotency-Key` on every request (each key new: the check and the remembering are paid,
//! never a repeat).
//!
//! ```sh
//! cargo bench --bench publish
//! ```
//!
//! One process: the server (axum::serve, one runtime thread) and the load (32 HTTP/1.1
//! keep-alive connections, each POSTing the next message as soon as the last is answered,
//! another runtime thread), on loopback, to 16 memory topics in turn. Three rounds, the
//! three routes taking turns; each figure is the median of its rounds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tower_eventstream::{Event, MemoryLog, MemoryLogBuilder, PublishService, Topics};

const CONNECTIONS: usize = 32;
const TOPICS: usize = 16;
const ROUNDS: usize = 3;
/// How long each route is loaded per round.
const LOAD: Duration = Duration::from_secs(4);
/// The routes, and the share of the hand-written route's rate each must reach.
const ROUTES: [(&str, f64); 3] = [("hand", 1.0), ("service", 0.9), ("service+key", 0.8)];

/// The hand-written route: what the chat's `POST` handler was.
async fn hand_written(
    State(topics): State<Topics<MemoryLogBuilder>>,
    Path(room): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return (StatusCode::BAD_REQUEST, "message must be UTF-8 text\n").into_response();
    };
    let event = Event::new(text).with_name("message").expect("a valid name");
    match topics.append(&room, event).await {
        Ok(stored) => {
            let id = stored.id().map(|id| id.as_str().to_owned()).unwrap_or_default();
            let json = format!("{{\"id\":{}}}", serde_json::Value::from(id));
            (
                StatusCode::CREATED,
                [(header::CONTENT_TYPE, "application/json")],
                json,
            )
                .into_response()
        }
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")).into_response(),
    }
}

fn router() -> Router {
    let topics = Topics::new(MemoryLog::builder());
    let service = PublishService::new(topics.clone())
        .body_as_data()
        .fixed_event_name("message")
        .key_from_path(1);
    Router::new()
        .route("/hand/{room}", post(hand_written))
        .route_service("/service/{room}", service.clone())
        .route_service("/keyed/{room}", service)
        .with_state(topics)
}

/// Starts the server on its own runtime thread; its address.
fn serve() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(listener.local_addr().expect("an address"))
                .expect("send the address");
            axum::serve(listener, router()).await.expect("serve");
        });
    });
    rx.recv().expect("the server's address")
}

/// Publishes answered with `201` per second on `route`, over [`CONNECTIONS`] connections.
async fn load(addr: SocketAddr, route: &'static str) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let keys = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + LOAD;
    let mut tasks = tokio::task::JoinSet::new();
    for connection in 0..CONNECTIONS {
        let (done, keys) = (Arc::clone(&done), Arc::clone(&keys));
        tasks.spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            let mut n = connection;
            while Instant::now() < deadline {
                let path = match route {
                    "hand" => format!("/hand/t{}", n % TOPICS),
                    "service" => format!("/service/t{}", n % TOPICS),
                    _ => format!("/keyed/t{}", n % TOPICS),
                };
                let mut request = http::Request::post(path)
                    .header("host", "bench")
                    .header("content-type", "text/plain; charset=utf-8");
                if route == "service+key" {
                    let key = keys.fetch_add(1, Ordering::Relaxed);
                    request = request.header("idempotency-key", format!("k{key}"));
                }
                let request = request
                    .body(Full::new(Bytes::from_static(b"the kettle is on")))
                    .expect("a request");
                let response = sender.send_request(request).await.expect("an answer");
                assert_eq!(response.status(), 201, "{route}");
                // The body is small and complete: dropping it reads it off the connection.
                let _ = http_body_util::BodyExt::collect(response.into_body()).await;
                done.fetch_add(1, Ordering::Relaxed);
                n += CONNECTIONS;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    done.load(Ordering::Relaxed) as f64 / LOAD.as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let addr = serve();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut rates = vec![Vec::new(); ROUTES.len()];
    println!(
        "publish: {CONNECTIONS} connections, {TOPICS} memory topics, {} s per route, {ROUNDS} rounds",
        LOAD.as_secs()
    );
    println!("| round | hand-written | service | service + Idempotency-Key |\n| --- | --- | --- | --- |");
    for round in 1..=ROUNDS {
        let row: Vec<f64> = ROUTES
            .iter()
            .map(|(route, _)| runtime.block_on(load(addr, route)))
            .collect();
        println!(
            "| {round} | {:.0}/s | {:.0}/s | {:.0}/s |",
            row[0], row[1], row[2]
        );
        for (i, rate) in row.into_iter().enumerate() {
            rates[i].push(rate);
        }
    }
    let medians: Vec<f64> = rates.iter_mut().map(|r| median(r)).collect();
    println!(
        "| median | {:.0}/s | {:.0}/s | {:.0}/s |",
        medians[0], medians[1], medians[2]
    );
    for (i, (route, target)) in ROUTES.iter().enumerate().skip(1) {
        let ratio = medians[i] / medians[0];
        let verdict = if ratio >= *target { "met" } else { "missed" };
        println!("{route}: {ratio:.2}x the hand-written route (target >= {target}x): {verdict}");
    }
}
