//! The generations example's routes, shared by `main.rs` and the integration tests: each
//! generation is a request-scoped topic of a [`Topics`] registry
//! [created explicitly](tower_eventstream::TopicsBuilder::created_explicitly), filled by a
//! task of its own and finished at its end.
//!
//! HTTP contract (public: change only with a CHANGELOG entry):
//! - `POST /api/generations`: the body is the prompt (UTF-8 text of at most 4 KiB, its
//!   `Content-Type` is not checked). `201` with `{"id":"<id>"}` (`application/json`): a task
//!   then emits [`TOKENS`] events named `token`, one every [`EVERY`] (the first at once),
//!   whose data are the prompt's words in turn (words split on Unicode whitespace; token `i`
//!   is word `i % words`, so the output is deterministic), then finishes the stream. `400`
//!   if the body is not UTF-8 or has no word (empty, or whitespace only: nothing to
//!   generate from), `413` if it is larger than 4 KiB, `503` if too many generations are
//!   live.
//! - `GET /api/generations/{id}/events`: the generation's tokens, SSE
//!   (`Accept: text/event-stream`) or long poll (`timeout`, `lastEventId` in the query).
//!   Without a cursor, every token from the first (a late reader misses nothing); with
//!   `Last-Event-ID` / `lastEventId`, exactly the tokens after it. After the last token the
//!   SSE stream ends, and a reconnect at the end (a browser's, with its `Last-Event-ID`) is
//!   answered `204 No Content`, which closes an `EventSource` for good. The long-poll answer
//!   that reaches the end has `"finished": true` (the field is absent otherwise); a poll
//!   whose cursor is at the end gets `204`. `404` for an id that is no generation (never
//!   made, or finished more than the keep time ago); `400` for one that cannot be an id.
//! - A finished generation stays readable for the keep time (`KEEP_SECS`, 60 s by default),
//!   then it is dropped: `404`. Everything lives in this process's memory.
//! - `GET /`: the page: a prompt box that posts and shows the text as it is generated;
//!   `/#<id>` shows the generation `<id>`.
//!
//! An id is `g<n>-<16 hex digits>` (a topic key): hard to guess, but not a secret. The routes
//! are open to anyone here; a real application checks who may start and read a generation.

// The shared ticker is not used here.
#[allow(dead_code)]
#[path = "../shared/serve.rs"]
mod serve;

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tower_eventstream::{
    Event, MakeLog, MemoryLog, MemoryLogBuilder, Shutdown, StartPosition, StreamConfig, TopicError, Topics,
    TopicsService,
};

/// The tokens of one generation, as `main` serves.
pub const TOKENS: usize = 50;

/// The time between two tokens, as `main` serves.
pub const EVERY: Duration = Duration::from_millis(50);

/// The largest prompt accepted.
pub const MAX_PROMPT_BYTES: usize = 4 * 1024;

/// How long a finished generation stays readable without `KEEP_SECS`.
pub const DEFAULT_KEEP: Duration = Duration::from_secs(60);

/// The longest `KEEP_SECS` accepted: a week.
pub const MAX_KEEP_SECS: u64 = 7 * 24 * 60 * 60;

/// At most this many generations live (running or kept); a new one past it is `503`.
pub const MAX_GENERATIONS: usize = 10_000;

/// The events' name.
pub const TOKEN: &str = "token";

/// How long open connections get to finish once shutdown has begun. Event streams end at
/// once (the `Shutdown` handle ends them), so this only bounds misbehaving connections.
pub const GRACE: Duration = Duration::from_secs(5);

const PAGE: &str = include_str!("index.html");

/// How a generation is emitted: `main` uses [`TOKENS`] every [`EVERY`] (the default); tests
/// may go faster or slower.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How many tokens a generation has.
    pub tokens: usize,
    /// The time between two tokens (at least a millisecond).
    pub every: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            tokens: TOKENS,
            every: EVERY,
        }
    }
}

/// The generations' registry: topics made only by `POST /api/generations`, each kept for
/// `keep` once finished, then dropped (needs a Tokio runtime: its sweeper is a task).
pub fn generations(keep: Duration) -> Topics<MemoryLogBuilder> {
    Topics::builder(MemoryLog::builder())
        .created_explicitly()
        .keep_finished(keep)
        .max_topics(MAX_GENERATIONS)
        .build()
}

/// The keep time from the value of `KEEP_SECS` (whole seconds, 0 to [`MAX_KEEP_SECS`]),
/// [`DEFAULT_KEEP`] without one.
pub fn keep_from(value: Option<&str>) -> Result<Duration, String> {
    let Some(value) = value else {
        return Ok(DEFAULT_KEEP);
    };
    match value.trim().parse::<u64>() {
        Ok(secs) if secs <= MAX_KEEP_SECS => Ok(Duration::from_secs(secs)),
        _ => Err(format!(
            "KEEP_SECS: {value:?} is not a whole number of seconds from 0 to {MAX_KEEP_SECS}"
        )),
    }
}

/// The application over `topics` (made by [`generations`]), emitting as `settings` says;
/// its streams use `config`, started at the oldest token.
pub fn router<M: MakeLog>(topics: Topics<M>, settings: Settings, config: StreamConfig) -> Router {
    // `/api/generations/{id}/events`: segments `api` (0), `generations` (1), the id (2).
    let events = TopicsService::new(topics.clone())
        .with_config(config.start(StartPosition::Oldest))
        .key_from_path(2);
    let state = Generations {
        topics,
        settings,
        made: Arc::new(AtomicU64::new(0)),
    };
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/api/generations",
            post(start::<M>).layer(DefaultBodyLimit::max(MAX_PROMPT_BYTES)),
        )
        .route_service("/api/generations/{id}/events", events)
        .with_state(state)
}

/// Serves `router` on `listener` until `stop` resolves, then shuts down gracefully: stops
/// accepting, triggers `shutdown` (the one of the router's config: it ends the open streams
/// and answers pending long polls) and waits at most [`GRACE`] for the connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: Shutdown,
    stop: impl Future<Output = ()>,
) -> io::Result<()> {
    let drain = async move { shutdown.trigger() };
    serve::serve_gracefully(listener, router, stop, drain, GRACE).await
}

struct Generations<M: MakeLog> {
    topics: Topics<M>,
    settings: Settings,
    /// Generations made so far: each id's `<n>`.
    made: Arc<AtomicU64>,
}

impl<M: MakeLog> Clone for Generations<M> {
    fn clone(&self) -> Self {
        Generations {
            topics: self.topics.clone(),
            settings: self.settings,
            made: Arc::clone(&self.made),
        }
    }
}

/// `201 Created` with `{"id":"<id>"}`.
fn created(id: &str) -> Response {
    let json = format!("{{\"id\":{}}}", serde_json::Value::from(id));
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        json,
    )
        .into_response()
}

fn refuse(status: StatusCode, reason: impl Into<String>) -> Response {
    (status, reason.into()).into_response()
}

/// `POST /api/generations`: a new generation of `body`'s words.
async fn start<M: MakeLog>(State(state): State<Generations<M>>, body: Bytes) -> Response {
    let Ok(prompt) = std::str::from_utf8(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "the prompt must be UTF-8 text\n");
    };
    let words: Vec<String> = prompt.split_whitespace().map(str::to_owned).collect();
    if words.is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the prompt has no words: nothing to generate from\n",
        );
    }
    // A new id is new but for a one-in-2^64 chance: try again then.
    for _ in 0..3 {
        let id = new_id(state.made.fetch_add(1, Ordering::Relaxed) + 1);
        match state.topics.create(&id).await {
            Ok(_) => {
                tokio::spawn(generate(state.topics.clone(), id.clone(), words, state.settings));
                return created(&id);
            }
            Err(TopicError::AlreadyExists) => continue,
            // Too many generations, or the log failed: passing.
            Err(error) => return refuse(StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")),
        }
    }
    refuse(StatusCode::SERVICE_UNAVAILABLE, "no new id: try again\n")
}

/// `g<n>-<16 hex digits>`, the digits from a hasher keyed at random by the standard library.
fn new_id(n: u64) -> String {
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_u64(n);
    format!("g{n}-{:016x}", hasher.finish())
}

/// Appends `settings.tokens` tokens to the topic `id`, `words` in turn, then finishes it.
async fn generate<M: MakeLog>(topics: Topics<M>, id: String, words: Vec<String>, settings: Settings) {
    let mut every = tokio::time::interval(settings.every.max(Duration::from_millis(1)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for word in words.iter().cycle().take(settings.tokens) {
        every.tick().await;
        let token = match Event::new(word.as_str()).with_name(TOKEN) {
            Ok(token) => token,
            Err(error) => {
                eprintln!("generation {id}: {error}");
                break;
            }
        };
        if let Err(error) = topics.append(&id, token).await {
            eprintln!("generation {id} stopped: {error}");
            break;
        }
    }
    // Its readers get every token, then the end.
    if let Err(error) = topics.finish(&id).await {
        eprintln!("generation {id} could not be finished: {error}");
    }
}
