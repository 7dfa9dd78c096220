//! The chat's routes, shared by `main.rs` and the integration tests: one room per topic of a
//! [`Topics`] registry.
//!
//! HTTP contract (public: change only with a CHANGELOG entry):
//! - `GET /`: the page; its room comes from the URL's fragment (`/#kitchen`), `lobby` without
//!   one; `/#kitchen,garden` follows several rooms on one connection (`/api/events?room=…`).
//! - `POST /api/rooms/{room}/messages`: the body (UTF-8 text, at most 64 KiB, whatever its
//!   `Content-Type`) becomes the data of a `message` event of the room `{room}`;
//!   `201 {"id":"<event id>"}` (`application/json`), `400` if the body is not UTF-8, `{room}`
//!   is not a room name, the `Idempotency-Key` is not 1 to 255 visible ASCII characters or
//!   the request names another event (`?event=`, `Event-Name`), `405` (`Allow: POST`) for
//!   another method, `413` if too large, `503` + `Retry-After` if the room's log is
//!   unavailable or no new room can be opened now. With an `Idempotency-Key` header, a retry
//!   of the same message to the same room within 5 minutes appends nothing and is answered
//!   `201` with the first message's id and `Idempotent-Replayed: true`; the same key with
//!   another message is `422`. (A [`PublishService`].)
//! - `GET /api/rooms/{room}/events`: the room's events, SSE (`Accept: text/event-stream`) or
//!   long poll, resumable with `Last-Event-ID` / `lastEventId`; without a cursor, the room's
//!   last 50 messages first (memory and Redis alike), then what comes; `400` if `{room}` is
//!   not a room name. A room with as many readers as allowed refuses a new one for now: a long poll gets
//!   `503` + `Retry-After`, an SSE client a `retry:` hint and a clean end (a browser's
//!   `EventSource` comes back by itself).
//! - `POST /api/messages`, `GET /api/events`: the same for the room `lobby`.
//! - `GET /api/events?room=a&room=b`: the rooms named by every `room` query parameter
//!   (percent-decoded), several on one connection; without one, the room `lobby` as above,
//!   and with one, that room exactly as `/api/rooms/{room}/events` serves it. With several
//!   rooms each event's id is a composite cursor (`a~<id>,b~<id>`, opaque) that
//!   `Last-Event-ID` / `lastEventId` resumes every room from (a room it does not name, when
//!   it names others, starts fresh: the page never followed it); an SSE message has the type
//!   `<room>:message` (`a:message`), a long-poll one `"event":"message"` and
//!   `"topic":"<room>"`; a gap in one room is an event `reset` whose data is the room's name
//!   (a long poll also answers `"reset": true`). A cursor that names none of the rooms, or
//!   one room's own cursor, is a gap of every room (a `reset` each); a malformed one is
//!   `400`. `400` if a name is not a room name, or if the rooms' cursor could outgrow the
//!   cursor limit (256 bytes by default: about five rooms of eight characters; the message
//!   gives the numbers).
//! - `GET /api/stats`: the page's live panel, a `stats` event once a second whose data is
//!   `{"readers":<connected readers>,"rooms":<open rooms>,"messagesPerSecond":<n>}`, live
//!   only: SSE, or a poll answered at once with the latest (the page asks with `timeout=0`
//!   once a second).
//! - `GET /metrics` (added by `main`, see [`metrics`]): the process's metrics in Prometheus'
//!   text format; the crate's own (`eventstream_*`) with the `metrics` feature, every one of
//!   them from the first scrape (at zero until counted, see [`install_metrics`]).
//! - A room name is 1 to 64 ASCII letters, digits, `-`, `_` or `.`, other than `.` and `..`
//!   (URL paths drop those segments). A room is opened on first
//!   use; a memory room with no reader and no message for a while is closed, and a cursor
//!   from before then gets `reset`.

use axum::http::header;
use axum::response::Html;
use axum::routing::get;
use axum::Router;
use tower_eventstream::{MakeLog, PublishService, StartPosition, StreamConfig, Topics, TopicsService};

#[path = "panel.rs"]
mod panel;

/// The largest message accepted.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The room of `/api/events` and `/api/messages`, and of the page without a `#room`.
pub const LOBBY: &str = "lobby";

const PAGE: &str = include_str!("index.html");

/// The chat's stream settings: a page opened on a room without a cursor shows the room's
/// last 50 messages at once.
#[allow(dead_code)] // for `main` and the tests of the chat's contract
pub fn config() -> StreamConfig {
    StreamConfig::default().start(StartPosition::Last(50))
}

/// The chat application over the rooms of `rooms`, streaming with `config` (the chat's own
/// is [`config`]).
pub fn router<M: MakeLog>(rooms: Topics<M>, config: StreamConfig) -> Router {
    // `/api/rooms/{room}/events`: segments `api` (0), `rooms` (1), the room (2).
    let room_events = TopicsService::new(rooms.clone())
        .with_config(config.clone())
        .key_from_path(2);
    // `/api/events?room=a&room=b`: every `room` of the query, the lobby without one.
    let lobby_events = TopicsService::new(rooms.clone())
        .with_config(config.clone())
        .key_from_query("room")
        .default_topic(LOBBY);
    // A message is the body as text, whatever its type, named `message` (the page listens
    // for nothing else).
    let messages = PublishService::new(rooms.clone())
        .body_as_data()
        .fixed_event_name("message")
        .max_body_bytes(MAX_MESSAGE_BYTES);
    // `/api/rooms/{room}/messages`: the room is segment 2, as above.
    let room_messages = messages.clone().key_from_path(2);
    let lobby_messages = messages.key_from(|_| Some(LOBBY.to_owned()));
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route_service("/api/messages", lobby_messages)
        .route_service("/api/rooms/{room}/messages", room_messages)
        .route_service("/api/events", lobby_events)
        .route_service("/api/rooms/{room}/events", room_events)
        .merge(panel::routes(rooms, config))
}

/// Installs the process's recorder, Prometheus' (once per process), and with the `metrics`
/// feature describes the crate's series to it at once: the first scrape of `/metrics` lists
/// every `eventstream_*` series, at zero.
#[allow(dead_code)] // for `main` and the metrics tests
pub fn install_metrics(
) -> Result<metrics_exporter_prometheus::PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    #[cfg(feature = "metrics")]
    tower_eventstream::describe_metrics();
    Ok(handle)
}

/// `GET /metrics`: what `handle`'s recorder holds, in Prometheus' text format.
#[allow(dead_code)] // for `main` and the metrics tests
pub fn metrics(handle: metrics_exporter_prometheus::PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let text = handle.render();
            async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
        }),
    )
}

/// Rooms in memory, none ever closed, whose `lobby` is `lobby`: what a test pushes to `lobby`
/// is what `/api/events` serves. (No sweeper task: callable outside a Tokio runtime.)
#[allow(dead_code)] // for the tests; `main` opens every room on demand
pub fn memory_rooms(lobby: &tower_eventstream::MemoryLog) -> Topics<tower_eventstream::MemoryLogBuilder> {
    let rooms = Topics::builder(tower_eventstream::MemoryLog::builder())
        .without_eviction()
        .build();
    rooms
        .pin(LOBBY, lobby.clone())
        .expect("`lobby` is a valid room name");
    rooms
}
