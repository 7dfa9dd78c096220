//! An existing Tower service turned into a resumable SSE and long-poll endpoint with
//! layers only; shared by `main.rs` and `tests/examples.rs`.
//!
//! [`PriceFeed`] (in `feed.rs`) is a `Service<Subscribe, Response = Ticks>` that knows
//! nothing about HTTP. Three layers adapt it, without changing it:
//!
//! 1. [`EventStreamLayer`] answers with SSE or long poll, as the request asks, and puts the
//!    client's cursor (`Last-Event-ID` or `lastEventId`) into the request extensions;
//! 2. `map_request` turns the HTTP request into the feed's own request, [`Subscribe`];
//! 3. `map_response` turns the feed's [`Ticks`] into an [`EventFeed`]: each tick becomes
//!    an event whose id is its sequence number, and [`FeedItem::Missed`] becomes a gap, so
//!    the client hears `reset` instead of silently missing ticks.
//!
//! Two routes serve the same ticks, resumable in two ways:
//!
//! - `GET /ticks`, the layers above: a returning client resumes by the feed's own sequence
//!   numbers (the ids are `1`, `2`, …), which works because the feed keeps recent ticks and
//!   replays them after a cursor ([`TickEvents`] says so with `honours_cursor`).
//! - `GET /ticks/log`: [`fill`] copies the feed's live broadcast ([`PriceFeed::watch`]) into
//!   a [`MemoryLog`] served by [`EventLogService`]. The log keeps the history and issues the
//!   ids (`<epoch>-<n>`), so the broadcast becomes resumable with no resume logic in the feed;
//!   a receiver that lags is recorded as a gap, and clients behind it hear `reset`.

#[path = "feed.rs"]
pub mod feed;
#[path = "../shared/serve.rs"]
mod serve;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http::Request;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::util::{MapRequest, MapResponse};
use tower::ServiceBuilder;
use tower_eventstream::{
    fill, Delivery, Event, EventFeed, EventId, EventLogService, EventStreamLayer, EventStreamService, Filled,
    LastEventId, MemoryLog, Shutdown, StreamConfig,
};

pub use feed::{FeedItem, PriceFeed, Subscribe, Tick, Ticks};

/// The feed behind its layers; the type reads outermost first.
pub type Endpoint = EventStreamService<
    MapRequest<MapResponse<PriceFeed, fn(Ticks) -> TickEvents>, fn(Request<Body>) -> Subscribe>,
>;

/// The feed as an event endpoint: SSE or long poll, resumable by tick sequence number.
pub fn endpoint(feed: PriceFeed, config: StreamConfig) -> Endpoint {
    ServiceBuilder::new()
        .layer(EventStreamLayer::new(config))
        .map_request(subscribe_request as fn(_) -> _)
        .map_response(TickEvents::new as fn(_) -> _)
        .service(feed)
}

/// The HTTP request as the feed's request: resume after the client's cursor.
fn subscribe_request(request: Request<Body>) -> Subscribe {
    let after = request.extensions().get::<LastEventId>().map(|cursor| {
        // A cursor this feed did not issue resumes from the oldest tick held, with a gap.
        cursor.as_str().parse().unwrap_or(u64::MAX)
    });
    Subscribe { after }
}

/// The feed's ticks as an [`EventFeed`].
pub struct TickEvents {
    ticks: Ticks,
    /// The sequence number of the last tick delivered (or the subscription's start).
    position: u64,
}

impl TickEvents {
    pub fn new(ticks: Ticks) -> Self {
        let position = ticks.after;
        TickEvents { ticks, position }
    }
}

/// A tick as an event: named `tick`, its sequence number as id, JSON data.
pub fn tick_event(tick: &Tick) -> Event {
    let data = format!(
        r#"{{"symbol":"{}","price":"{}.{:02}"}}"#,
        tick.symbol,
        tick.price_cents / 100,
        tick.price_cents % 100
    );
    Event::new(data)
        .with_name("tick")
        .and_then(|event| event.with_id(tick.seq.to_string()))
        .expect("a valid name and a numeric id")
}

/// What [`fill`] appends for each tick of [`PriceFeed::watch`] (the log replaces the id).
impl From<Tick> for Event {
    fn from(tick: Tick) -> Self {
        tick_event(&tick)
    }
}

fn seq_id(seq: u64) -> EventId {
    EventId::new(seq.to_string()).expect("a numeric id")
}

impl EventFeed for TickEvents {
    type Error = Infallible;

    fn poll_delivery(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Delivery, Infallible>>> {
        let this = self.get_mut();
        let delivery = match ready!(this.ticks.items.as_mut().poll_next(cx)) {
            None => return Poll::Ready(None),
            Some(FeedItem::Tick(tick)) => {
                this.position = tick.seq;
                Delivery::Event(tick_event(&tick))
            }
            Some(FeedItem::Missed { up_to }) => {
                this.position = up_to;
                Delivery::Gap(Some(seq_id(up_to)))
            }
        };
        Poll::Ready(Some(Ok(delivery)))
    }

    /// A long poll that times out answers with this as `lastEventId`, and an SSE stream
    /// opens with it as `id:`, so the client's next request misses nothing.
    fn position(&self) -> Option<EventId> {
        Some(seq_id(self.position))
    }

    // The feed replays the ticks after the client's cursor: resuming by it is exact.
    fn honours_cursor(&self) -> bool {
        true
    }
}

/// The server's state: the feed, the log filled from its broadcast, and the handle that
/// ends their streams.
#[derive(Clone)]
pub struct App {
    feed: PriceFeed,
    log: Filled<MemoryLog>,
    shutdown: Shutdown,
}

impl Default for App {
    fn default() -> Self {
        Self::new()
    }
}

impl App {
    /// A feed holding the last 1 000 ticks, and a log (the default 1 024 events) filled from its
    /// live broadcast. Call it inside a Tokio runtime: the filling is a task.
    pub fn new() -> Self {
        let feed = PriceFeed::new(1000);
        let log = fill(MemoryLog::new(), feed.watch());
        App {
            feed,
            log,
            shutdown: Shutdown::new(),
        }
    }

    /// The feed: publish to it from anywhere.
    pub fn feed(&self) -> &PriceFeed {
        &self.feed
    }

    /// The log behind `GET /ticks/log`.
    pub fn log(&self) -> &Filled<MemoryLog> {
        &self.log
    }

    /// `GET /ticks`: the feed through its layers; `GET /ticks/log`: the log filled from its
    /// broadcast. Each over SSE, long poll or short poll.
    pub fn router(&self) -> axum::Router {
        let config = StreamConfig::default().shutdown(self.shutdown.clone());
        let log = EventLogService::new(self.log.clone()).with_config(config.clone());
        axum::Router::new()
            .route_service("/ticks", endpoint(self.feed.clone(), config))
            .route_service("/ticks/log", log)
    }

    /// Publishes a random walk of two prices every `every`, until shutdown.
    pub fn spawn_ticker(&self, every: Duration) -> JoinHandle<()> {
        let feed = self.feed.clone();
        let mut prices = [("ACME", 10_000u64), ("INITECH", 4_250u64)];
        let mut noise = 0x2545_f491_4f6c_dd1du64;
        serve::spawn_ticker(every, self.shutdown.triggered(), move |n| {
            // xorshift: a step of -50..=50 cents, never below one dollar.
            noise ^= noise << 13;
            noise ^= noise >> 7;
            noise ^= noise << 17;
            // The two symbols take turns, ACME first.
            let (symbol, price) = &mut prices[(n - 1) as usize % 2];
            *price = (*price + noise % 101).saturating_sub(50).max(100);
            feed.publish(symbol, *price);
        })
    }

    /// Serves [`router`](App::router) until `stop` resolves, then ends the streams and
    /// pending long polls and shuts down gracefully.
    pub async fn serve(
        self,
        listener: TcpListener,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let shutdown = self.shutdown.clone();
        axum::serve(listener, self.router())
            .with_graceful_shutdown(async move {
                stop.await;
                shutdown.trigger();
            })
            .await
    }
}
