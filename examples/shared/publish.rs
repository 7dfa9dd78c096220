//! What the examples share in publishing: appending to a topic and answering the `POST` that
//! asked for it.
//!
//! An example's `app.rs` includes this file with
//! `#[path = "../shared/publish.rs"] mod publish;`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tower_eventstream::{Event, MakeLog, TopicError, Topics};

/// Appends `event` to the topic `key` and answers as the examples' contracts say: `201`
/// with `{"id":"<event id>"}`, `400` for an invalid topic key, `404` for a topic that does
/// not exist (request-scoped topics), `409` for a finished one, `503` for a passing fault
/// (the backend is away, too many topics).
pub async fn append_and_answer<M: MakeLog>(topics: &Topics<M>, key: &str, event: Event) -> Response {
    match topics.append(key, event).await {
        Ok(stored) => created(stored.id().map(|id| id.as_str()).unwrap_or_default()),
        Err(error @ TopicError::InvalidKey(_)) => {
            (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response()
        }
        Err(error @ TopicError::NotFound) => (StatusCode::NOT_FOUND, format!("{error}\n")).into_response(),
        Err(error @ TopicError::Finished) => (StatusCode::CONFLICT, format!("{error}\n")).into_response(),
        // A backend fault ("event log unavailable: …") or too many topics: passing.
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")).into_response(),
    }
}

/// `201 Created` with `{"id":"<id>"}`.
pub fn created(id: &str) -> Response {
    let json = format!("{{\"id\":{}}}", serde_json::Value::from(id));
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        json,
    )
        .into_response()
}
