//! Server-Sent Events, long polling and short polling over one resumable event log, as
//! [Tower](https://docs.rs/tower) layers and services and as axum extractors.
//!
//! # The model
//!
//! Producers [`append`](EventLog::append) events to an [`EventLog`] (the embedded
//! [`MemoryLog`] is a bounded ring). Each client reads the log through a cursor, the id of
//! the last event it saw, and one of three transports answers:
//!
//! - **SSE** (`Accept: text/event-stream`): one long response; events are pushed as they
//!   come, keep-alive comments flow while idle, and a reconnecting client's
//!   `Last-Event-ID` resumes it exactly after the last event it saw.
//! - **Long poll** (any other `Accept`): the request is held until an event exists or the
//!   wait ends, then answered with every ready event as JSON and the cursor to poll from next.
//! - **Short poll**: a long poll with `timeout=0`.
//!
//! When a client's position is no longer held (history trimmed, server restarted), it is
//! told: SSE sends a `reset` event, long poll sets `"reset": true`.
//!
//! # Any event stream
//!
//! An application that already has a stream of events (a `tokio::sync::broadcast`
//! channel, a database change feed) makes it resumable with [`fill`]: a task appends the
//! stream to a log, recording every loss (a lagging receiver, a failed append) as a gap
//! ([`EventLog::record_gap`]), and clients read the log. A feed with ids of its own keeps
//! them ([`MemoryLogBuilder::source_ids`]), so cursors outlive a restart. Served directly
//! through [`EventStreamLayer`], a plain `Stream` is *live-only*: a client that comes back
//! with a cursor hears `reset`, never a silent resume at the live end
//! ([`EventFeed::honours_cursor`]).
//!
//! # Glossary
//!
//! - **cursor**: what a client holds and sends back, the id of the last event (or
//!   checkpoint) it saw: the `Last-Event-ID` header or the `lastEventId` query parameter,
//!   parsed as [`LastEventId`].
//! - **position**: where a subscription stands in the log ([`EventFeed::position`]); a
//!   stream sends it as a *checkpoint* when it opens, so that it becomes the client's cursor.
//! - **gap**: events between the client's cursor and what follows are lost (trimmed history,
//!   another log instance, a subscriber that fell behind): [`Delivery::Gap`],
//!   [`ResumeOutcome::Gap`]. The client hears of it as a **reset**: an SSE event named
//!   `reset` ([`StreamConfig::reset_event`]) or `"reset": true` in a long-poll answer.
//! - **start position**: where a client without a cursor starts ([`StartPosition`]: the
//!   live end, the oldest event held, or the last N), set with [`StreamConfig::start`].
//! - **end**: a [finished](EventLog::finish) log's last position. Readers get every event
//!   up to it, then their stream ends; a client that comes back there is answered `204 No
//!   Content`, which stops an `EventSource` for good ([`EventFeed::is_finished`]).
//! - **wait**: how long a long poll is held for an event ([`StreamRequest::wait`]): the
//!   request's `timeout` in milliseconds, at most [`StreamConfig::max_wait`]; zero is a short
//!   poll.
//!
//! # Example
//!
//! ```no_run
//! use tower_eventstream::{Event, EventLogService, MemoryLog};
//!
//! # async fn run() -> std::io::Result<()> {
//! let log = MemoryLog::new();
//! let app = axum::Router::new().route_service("/events", EventLogService::new(log.clone()));
//!
//! log.push(Event::new("hello").with_name("greeting").unwrap());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! # Topics
//!
//! Many streams behind one endpoint (rooms, users, tenants): [`Topics`] keeps one log per
//! key, made on first use by a [`MakeLog`] and evicted when idle, with limits;
//! [`TopicsService`] serves them all at one route, taking the key from the request and
//! asking an authorization hook what each client may read ([`Access`], [`Refusal`]).
//! [`PublishService`] appends to them over HTTP (`POST`, text or JSON bodies), with its own
//! authorization hook and `Idempotency-Key` for retries.
//!
//! ```no_run
//! use tower_eventstream::{Event, MemoryLog, Topics, TopicsService};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let rooms = Topics::new(MemoryLog::builder());
//! let app = axum::Router::new().route_service(
//!     "/rooms/{room}/events",
//!     TopicsService::new(rooms.clone()).key_from_path(1),
//! );
//! rooms.append("lobby", Event::new("hello")).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! # What a failure answers
//!
//! An `EventSource` that receives any status but `200 text/event-stream` *fails the
//! connection* and never reconnects (HTML §9.2): the page stays dead until it is reloaded.
//! So what a request gets depends on whose fault a failure is and on the transport:
//!
//! | failure | SSE (browsers) | long poll (scripts read the status) |
//! |---|---|---|
//! | the client's own: malformed cursor, one this log never issued, bad `timeout` or `transport` | `400`: retrying could never help, the browser should stop | `400` |
//! | the log's backend unavailable as the stream starts | `200`, **held**: keep-alive comments flow while the subscription is retried with backoff (200 ms doubling to 5 s, jittered), then every event after the client's cursor | `503` + `Retry-After` |
//! | an inner service's error (layers) | `200`, a jittered `retry:` hint, a clean end: the browser comes back | `503` + `Retry-After` |
//! | the source fails mid-stream | a jittered `retry:` hint, a clean end | the answer so far |
//! | shutdown begun before the stream started | `200`, a jittered `retry:` hint, a clean end | `200`, the empty shape |
//! | an authorization hook's [`Refusal::unavailable`] (the credential cannot be checked now) | `200`, a jittered `retry:` hint, a clean end | `503` + `Retry-After` |
//!
//! A stream is held where the client's cursor must be honoured: a client cut off while its
//! position falls out of a window still gets every event once the backend answers (or a
//! `reset` if the backend truly lost them). A layer cannot retry its inner service (the
//! request is gone), so it ends the stream and the browser reconnects. To make a browser
//! stop on purpose, an application answers `204 No Content` (or `401`/`403` from its
//! authorization). [`StreamRequest::serve`] and [`EventLogService`] follow the rule for a
//! log; [`EventStreamLayer`] and its forced-transport siblings for an inner service.
//!
//! A stream also moves the client's cursor when no application event does (when it opens,
//! and when a held subscription starts): a *checkpoint* block, `id`, `event: checkpoint` and
//! an empty `data:` line, which both Chromium and Firefox take as the new `Last-Event-ID`
//! while no `message` listener fires (see [`StreamConfig::checkpoint_event`]).
//!
//! # Features
//!
//! - `axum` (default): [`StreamRequest`] and [`LastEventId`] extractors and
//!   `IntoResponse` for the error types.
//! - `json`: [`Event::json`], and JSON bodies (`{"event": …, "data": …}`) of
//!   [`PublishService`].
//! - `tracing`: warnings when a log backend or event source fails, and a span per SSE stream
//!   and long poll (at `DEBUG`) that ends with what it delivered and why it ended.
//! - `metrics`: gauges, counters and a histogram through the `metrics` facade (the
//!   application installs the exporter): open subscriptions, live topics, events appended
//!   and delivered, bytes written, resets by cause, long-poll outcomes, refusals by reason,
//!   append-to-write delay. The README's "Operating it" lists them all; [`describe_metrics`],
//!   called after installing the recorder, has every one described and at zero from the first
//!   scrape. Without any feature, [`MemoryLog::stats`] and [`Topics::stats`] give a snapshot
//!   for health checks.
//! - `redis`: [`RedisLog`], an event log on a Redis stream shared by several processes
//!   (Redis 7.0 or later).
//! - `postgres`: [`PostgresLog`], an event log in a PostgreSQL table shared by several
//!   processes, written to inside the application's own transactions (PostgreSQL 13 or
//!   later).
//! - `server`: [`server::Server`], an HTTP/1.1 server that keeps no buffer per idle
//!   stream (about 2 KiB per idle SSE connection instead of hyper's 12–21 KiB), handing
//!   every other connection to hyper.
//!
//! # Fitting into a stack
//!
//! SSE responses are `text/event-stream`, which tower-http's default compression predicate
//! already leaves alone; a custom predicate should keep that exclusion, since a compressed
//! stream delivers each event only if the encoder flushes whenever the body waits. A layer
//! that limits the total time of a response body ends every stream, and a request timeout
//! around a long poll must be longer than [`StreamConfig::max_wait`].

#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

mod config;
mod cursor;
mod event;
#[cfg(feature = "axum")]
mod extract;
mod failure;
mod feed;
mod fill;
mod log;
mod measure;
mod middleware;
mod random;
mod request;
mod respond;
#[cfg(feature = "server")]
pub mod server;
mod service;
mod shutdown;
mod stats;
mod sync;
mod topics;
mod trace;
mod transport;

pub use config::{
    StreamConfig, TopicNames, DEFAULT_BATCH_LIMIT, DEFAULT_CHECKPOINT_EVENT, DEFAULT_KEEP_ALIVE,
    DEFAULT_MAX_WAIT, DEFAULT_RESET_EVENT, DEFAULT_RETRY,
};
pub use cursor::{CursorError, LastEventId, DEFAULT_MAX_CURSOR_LEN, LAST_EVENT_ID_HEADER};
pub use event::{Event, EventError, EventId};
#[cfg(feature = "axum")]
pub use extract::LastEventIdRejection;
pub use failure::RetryingSubscription;
pub use feed::{Deliveries, Delivery, Encoded, EventFeed, Resumed};
pub use fill::{fill, fill_to_end, from_stream, Filled, FromStream, Source, SourceItem};
pub use log::memory::{LogNameError, MemoryLog, MemoryLogBuilder, MemorySubscription, DEFAULT_HISTORY};
#[cfg(feature = "postgres")]
pub use log::postgres::{
    PostgresLog, PostgresLogBuilder, PostgresLogError, PostgresLogErrorKind, PostgresLogs,
    PostgresSubscription,
};
#[cfg(feature = "redis")]
pub use log::redis::{
    RedisLog, RedisLogBuilder, RedisLogError, RedisLogErrorKind, RedisLogs, RedisSubscription,
};
pub use log::{
    AppendError, Appended, EventLog, IdempotencyKey, InvalidIdempotencyKey, ResumeOutcome, StartPosition,
    SubscribeError, Subscription, DEFAULT_ONCE_WINDOW, DEFAULT_REMEMBERED_KEYS, MAX_IDEMPOTENCY_KEY_LEN,
};
#[cfg(feature = "metrics")]
pub use measure::describe_metrics;
pub use middleware::{EventStreamFuture, EventStreamLayer, EventStreamService};
pub use request::{RequestError, StreamRequest, Transport};
pub use respond::{EventStreamBody, RespondFuture};
pub use service::{EventLogFuture, EventLogService};
pub use shutdown::{Shutdown, ShutdownSignal};
pub use stats::{LogStats, TopicsStats};
pub use topics::{
    Access, MakeLog, PublishService, Refusal, TopicError, TopicFeed, TopicKeyError, TopicStream, Topics,
    TopicsBuilder, TopicsFuture, TopicsService, DEFAULT_IDLE_EVICTION, DEFAULT_KEEP_FINISHED,
    DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_SUBSCRIBERS, DEFAULT_MAX_SUBSCRIBERS_PER_TOPIC, DEFAULT_MAX_TOPICS,
    EVENT_NAME_HEADER, IDEMPOTENCY_KEY_HEADER, IDEMPOTENT_REPLAYED_HEADER, MAX_TOPIC_KEY_LEN,
};

/// The boxed error that bodies and sources end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The README's code blocks, compiled and run as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The guide's code blocks, likewise.
#[cfg(doctest)]
#[doc = include_str!("../GUIDE.md")]
struct GuideDoctests;
