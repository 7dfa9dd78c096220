//! The page's live panel (`GET /api/stats`): once a second, how many readers are connected,
//! how many rooms are open and how many messages arrived per second, as `stats` events over
//! the crate's own stream, from the rooms' stats snapshot ([`Topics::stats`]), the numbers
//! `/metrics` exports too.
//!
//! One task per router takes the snapshot, started by the first panel that connects and ended
//! when the router is dropped; every panel reads the latest through a `watch` channel, so a
//! thousand open pages cost one snapshot a second.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use axum::extract::{FromRef, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
use tower_eventstream::{Event, MakeLog, StreamConfig, StreamRequest, Topics};

/// How often the panel's figures are taken.
const EVERY: Duration = Duration::from_secs(1);

/// What the panel shows.
#[derive(Clone, Copy)]
struct Figures {
    readers: usize,
    rooms: usize,
    messages_per_second: f64,
}

impl Figures {
    fn json(self) -> String {
        format!(
            "{{\"readers\":{},\"rooms\":{},\"messagesPerSecond\":{:.1}}}",
            self.readers, self.rooms, self.messages_per_second
        )
    }
}

struct Shared<M: MakeLog> {
    rooms: Topics<M>,
    /// The latest figures, once the task that takes them has started.
    latest: OnceLock<watch::Receiver<Figures>>,
}

struct Panel<M: MakeLog> {
    shared: Arc<Shared<M>>,
    config: StreamConfig,
}

// Not derived: a derive would ask `M: Clone` of the log maker.
impl<M: MakeLog> Clone for Panel<M> {
    fn clone(&self) -> Self {
        Panel {
            shared: Arc::clone(&self.shared),
            config: self.config.clone(),
        }
    }
}

impl<M: MakeLog> FromRef<Panel<M>> for StreamConfig {
    fn from_ref(panel: &Panel<M>) -> StreamConfig {
        panel.config.clone()
    }
}

/// `GET /api/stats` over `rooms`: SSE or long poll, as `config` serves them (its shutdown
/// ends open panels too).
pub fn routes<M: MakeLog>(rooms: Topics<M>, config: StreamConfig) -> Router {
    let panel = Panel {
        shared: Arc::new(Shared {
            rooms,
            latest: OnceLock::new(),
        }),
        config,
    };
    Router::new()
        .route("/api/stats", get(stats::<M>))
        .with_state(panel)
}

async fn stats<M: MakeLog>(State(panel): State<Panel<M>>, request: StreamRequest) -> impl IntoResponse {
    let latest = panel
        .shared
        .latest
        .get_or_init(|| take_figures(&panel.shared))
        .clone();
    let figures = WatchStream::new(latest).map(|figures| {
        let event = Event::new(figures.json())
            .with_name("stats")
            .expect("`stats` is a valid event name");
        Ok::<_, Infallible>(event)
    });
    request.respond(figures).await
}

/// Starts the task that takes the figures every second while the router lives; the first
/// panel gets the readers and rooms of now at once (and a rate from the next second on).
fn take_figures<M: MakeLog>(shared: &Arc<Shared<M>>) -> watch::Receiver<Figures> {
    let first = shared.rooms.stats();
    let (sender, receiver) = watch::channel(Figures {
        readers: first.subscribers,
        rooms: first.topics,
        messages_per_second: 0.0,
    });
    let shared: Weak<Shared<M>> = Arc::downgrade(shared);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(EVERY);
        // The first tick is at once: the first rate is taken a second later.
        ticks.tick().await;
        let mut before = first;
        loop {
            ticks.tick().await;
            let Some(shared) = shared.upgrade() else { return };
            let now = shared.rooms.stats();
            drop(shared);
            let appended = now.appended.saturating_sub(before.appended);
            sender.send_replace(Figures {
                readers: now.subscribers,
                rooms: now.topics,
                messages_per_second: appended as f64 / EVERY.as_secs_f64(),
            });
            before = now;
        }
    });
    receiver
}
