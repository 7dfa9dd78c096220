//! The chat room's routes, shared by `main.rs` and the integration tests.
//!
//! HTTP contract (public: change only with a CHANGELOG entry):
//! - `GET /`: the page.
//! - `POST /api/messages`: the body (`text/plain`, UTF-8, at most 64 KiB) becomes the data of
//!   a `message` event; `201 {"id":"<event id>"}`, `400` if not UTF-8, `413` if too large.
//! - `GET /api/events`: SSE (`Accept: text/event-stream`) or long poll, resumable with
//!   `Last-Event-ID` / `lastEventId`.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_eventstream::{Event, EventLog, EventLogService, StreamConfig};

/// The largest message accepted.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

const PAGE: &str = include_str!("index.html");

/// The chat application over any event log.
pub fn router<L: EventLog>(log: L, config: StreamConfig) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/api/messages",
            post(post_message::<L>).layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES)),
        )
        .route_service(
            "/api/events",
            EventLogService::new(log.clone()).with_config(config),
        )
        .with_state(log)
}

async fn post_message<L: EventLog>(State(log): State<L>, body: Bytes) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return (StatusCode::BAD_REQUEST, "message must be UTF-8 text\n").into_response();
    };
    let event = Event::new(text)
        .with_name("message")
        .expect("`message` is a valid event name");
    match log.append(event).await {
        Ok(stored) => {
            let id = stored.id().map(|id| id.as_str()).unwrap_or_default();
            let json = format!("{{\"id\":{}}}", serde_json::Value::from(id));
            (
                StatusCode::CREATED,
                [(header::CONTENT_TYPE, "application/json")],
                json,
            )
                .into_response()
        }
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("event log unavailable: {error}\n"),
        )
            .into_response(),
    }
}
