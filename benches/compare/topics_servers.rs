//! The servers of the topic scenarios (`notify.rs`, `churn.rs`), run as
//! `compare --serve <kind> <port> <app>`. Every one serves the same routes:
//!
//! - `GET /t/{topic}`: the topic's events, SSE (`Accept: text/event-stream`);
//! - `POST /publish/{topic}`: the body (UTF-8 text) becomes a `message` event of the topic;
//!   `201`;
//! - `GET /stats`: `topics <live topics> subscribers <subscribers>`, so that the load
//!   generator can see subscribers leave and topics go.
//!
//! Kinds:
//!
//! - `crate`: this crate's `TopicsService` over `Topics<MemoryLogBuilder>` (the memory log's
//!   default settings), under `axum::serve`;
//! - `crate-server`: the same router on this crate's own `server::Server`;
//! - `axum`: what an axum user writes today: `Arc<RwLock<HashMap<String, broadcast::Sender>>>`,
//!   the sender got or created on subscribe (16 events of capacity), axum's `Sse` over a
//!   `BroadcastStream`, the same 15 s keep-alive. Nothing is ever removed from the map.
//!
//! Apps: `topics`, the registry's default idle eviction (10 minutes: nothing is evicted
//! during a run), and `topics-evict`, idle topics evicted after 100 ms (crate kinds only).

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as AxumEvent, Sse};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_stream::Stream;
use tower_eventstream::{Event, MemoryLog, MemoryLogBuilder, StreamConfig, Topics, TopicsService};

use crate::axum_sse::Message;
use crate::client::HttpConnection;
use crate::load::IO_LIMIT;
use crate::settings::KEEP_ALIVE;

/// The topic apps: default eviction, and eviction after [`EVICT_AFTER`].
pub const TOPICS: &str = "topics";
pub const TOPICS_EVICT: &str = "topics-evict";
/// How long a topic without subscribers and appends lives on in `topics-evict`.
pub const EVICT_AFTER: Duration = Duration::from_millis(100);
/// The capacity of each of the axum baseline's broadcast channels.
const CHANNEL: usize = 16;

pub fn subscribe_path(topic: &str) -> String {
    format!("/t/{topic}")
}

pub fn publish_path(topic: &str) -> String {
    format!("/publish/{topic}")
}

const STATS_PATH: &str = "/stats";

/// Serves `app` as server `kind` on `listener`.
pub async fn serve(kind: &str, app: &str, listener: TcpListener) -> io::Result<()> {
    let evict = match app {
        TOPICS => false,
        TOPICS_EVICT => true,
        other => return Err(io::Error::other(format!("unknown app {other}"))),
    };
    match kind {
        "crate" => axum::serve(listener, crate_router(evict)).await,
        "crate-server" => {
            tower_eventstream::server::Server::new(crate_router(evict))
                .serve(listener)
                .await;
            Ok(())
        }
        // The baseline has no eviction.
        "axum" if !evict => axum::serve(listener, axum_router()).await,
        other => Err(io::Error::other(format!("no {app} server of kind {other}"))),
    }
}

// ---------------------------------------------------------------------------------------
// This crate: one `TopicsService` for every topic.
// ---------------------------------------------------------------------------------------

type CrateTopics = Topics<MemoryLogBuilder>;

fn crate_router(evict: bool) -> Router {
    let builder = Topics::builder(MemoryLog::builder());
    let topics = if evict {
        builder.idle_eviction(EVICT_AFTER)
    } else {
        builder
    }
    .build();
    let service = TopicsService::new(topics.clone())
        .with_config(StreamConfig::default().keep_alive(KEEP_ALIVE))
        .key_from_path(1);
    Router::new()
        .route_service("/t/{topic}", service)
        .route("/publish/{topic}", post(crate_publish))
        .route(STATS_PATH, get(crate_stats))
        .with_state(topics)
}

async fn crate_publish(
    State(topics): State<CrateTopics>,
    Path(topic): Path<String>,
    text: String,
) -> (StatusCode, String) {
    let event = Event::new(text)
        .with_name("message")
        .expect("`message` is a valid event name");
    match topics.append(&topic, event).await {
        Ok(_) => (StatusCode::CREATED, String::new()),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")),
    }
}

async fn crate_stats(State(topics): State<CrateTopics>) -> String {
    format!(
        "topics {} subscribers {}",
        topics.len(),
        topics.subscriber_count()
    )
}

// ---------------------------------------------------------------------------------------
// axum's own SSE over a map of broadcast channels: what an axum user writes today.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Rooms {
    senders: Arc<RwLock<HashMap<String, broadcast::Sender<Message>>>>,
    next_id: Arc<AtomicU64>,
}

fn axum_router() -> Router {
    Router::new()
        .route("/t/{topic}", get(axum_subscribe))
        .route("/publish/{topic}", post(axum_publish))
        .route(STATS_PATH, get(axum_stats))
        .with_state(Rooms::default())
}

async fn axum_subscribe(
    State(rooms): State<Rooms>,
    Path(topic): Path<String>,
) -> Sse<impl Stream<Item = Result<AxumEvent, Infallible>>> {
    let existing = rooms
        .senders
        .read()
        .unwrap()
        .get(&topic)
        .map(broadcast::Sender::subscribe);
    let receiver = existing.unwrap_or_else(|| {
        let mut senders = rooms.senders.write().unwrap();
        let sender = senders
            .entry(topic)
            .or_insert_with(|| broadcast::channel(CHANNEL).0);
        sender.subscribe()
    });
    crate::axum_sse::axum_sse_of(receiver)
}

async fn axum_publish(State(rooms): State<Rooms>, Path(topic): Path<String>, text: String) -> StatusCode {
    let id = rooms.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    if let Some(sender) = rooms.senders.read().unwrap().get(&topic) {
        // No receiver: nobody to tell.
        let _ = sender.send(Message {
            id,
            text: text.into(),
        });
    }
    StatusCode::CREATED
}

async fn axum_stats(State(rooms): State<Rooms>) -> String {
    let senders = rooms.senders.read().unwrap();
    let subscribers: usize = senders.values().map(broadcast::Sender::receiver_count).sum();
    format!("topics {} subscribers {subscribers}", senders.len())
}

// ---------------------------------------------------------------------------------------
// The load generator's side.
// ---------------------------------------------------------------------------------------

/// Live topics and subscribers, as the server at the other end of `connection` counts them.
pub async fn stats(connection: &mut HttpConnection) -> Result<(usize, usize), String> {
    let request = format!("GET {STATS_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let response = tokio::time::timeout(IO_LIMIT, connection.request(request.as_bytes()))
        .await
        .map_err(|_| "stats: timed out".to_owned())?
        .map_err(|e| format!("stats: {e}"))?;
    let text = String::from_utf8_lossy(&response.body).into_owned();
    let numbers: Vec<usize> = text
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    match (response.status, numbers.as_slice()) {
        (200, &[topics, subscribers]) => Ok((topics, subscribers)),
        (status, _) => Err(format!("stats answered {status} {text:?}")),
    }
}
