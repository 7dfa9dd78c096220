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
//! # Features
//!
//! - `axum` (default): [`StreamRequest`] and [`LastEventId`] extractors and
//!   `IntoResponse` for the error types.
//! - `json`: [`Event::json`].
//! - `tracing`: warnings when a log backend or event source fails.
//! - `redis`: [`RedisLog`], an event log on a Redis stream shared by several processes
//!   (Redis 7.0 or later).
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
#![forbid(unsafe_code)]

#[cfg(feature = "axum")]
mod axum;
mod body;
mod config;
mod cursor;
mod event;
pub mod log;
pub mod long_poll;
pub mod negotiate;
#[cfg(feature = "server")]
pub mod server;
mod service;
mod shutdown;
mod source;
pub mod sse;

pub use body::EventStreamBody;
pub use config::{
    RequestError, Responder, StreamConfig, StreamRequest, Transport, DEFAULT_BATCH_LIMIT, DEFAULT_KEEP_ALIVE,
    DEFAULT_MAX_WAIT, DEFAULT_RESET_EVENT, DEFAULT_RETRY,
};
pub use cursor::{CursorError, LastEventId, DEFAULT_MAX_CURSOR_LEN, LAST_EVENT_ID_HEADER};
pub use event::{Event, EventError, EventId};
pub use log::memory::{MemoryLog, MemoryLogBuilder, MemorySubscription, DEFAULT_HISTORY};
#[cfg(feature = "redis")]
pub use log::redis::{RedisLog, RedisLogBuilder, RedisLogError, RedisLogErrorKind, RedisSubscription};
pub use log::{EventLog, ResumeOutcome, SubscribeError, Subscription};
pub use long_poll::LongPollLayer;
pub use negotiate::{EventStreamLayer, EventStreamService};
pub use service::{EventLogFuture, EventLogService};
pub use shutdown::{Shutdown, ShutdownSignal};
pub use source::{Delivery, EventSource};
pub use sse::SseLayer;

/// The boxed error that bodies and sources end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The README's code blocks, compiled and run as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
