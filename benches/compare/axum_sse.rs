//! axum's own SSE over a `tokio::sync::broadcast` channel: what an axum user writes today,
//! as the `axum` server of the fan-out scenarios and the topic baseline of `topics_servers.rs`.

use std::convert::Infallible;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as AxumEvent, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::{Stream, StreamExt as _};

use crate::settings::{HISTORY, KEEP_ALIVE};

#[derive(Clone)]
pub(crate) struct Message {
    pub(crate) id: u64,
    pub(crate) text: Arc<str>,
}

#[derive(Clone)]
struct Broadcast {
    sender: broadcast::Sender<Message>,
    next_id: Arc<AtomicU64>,
}

pub async fn serve(listener: TcpListener) -> io::Result<()> {
    let (sender, _) = broadcast::channel(HISTORY);
    let state = Broadcast {
        sender,
        next_id: Arc::new(AtomicU64::new(1)),
    };
    let app = Router::new()
        .route("/events", get(axum_subscribe))
        .route("/publish", post(axum_publish))
        .with_state(state);
    axum::serve(listener, app).await
}

async fn axum_subscribe(
    State(state): State<Broadcast>,
) -> Sse<impl Stream<Item = Result<AxumEvent, Infallible>>> {
    axum_sse_of(state.sender.subscribe())
}

/// A broadcast receiver as axum's `Sse`, as an axum user writes it: a lagging receiver skips
/// what it missed, as most axum SSE code does.
pub(crate) fn axum_sse_of(
    receiver: broadcast::Receiver<Message>,
) -> Sse<impl Stream<Item = Result<AxumEvent, Infallible>>> {
    let events = BroadcastStream::new(receiver).filter_map(|message| {
        let message = message.ok()?;
        Some(Ok(AxumEvent::default()
            .event("message")
            .id(message.id.to_string())
            .data(&*message.text)))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

async fn axum_publish(State(state): State<Broadcast>, text: String) -> StatusCode {
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let _ = state.sender.send(Message {
        id,
        text: text.into(),
    });
    StatusCode::CREATED
}
