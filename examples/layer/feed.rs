//! The existing service: a feed of price ticks. It knows nothing about HTTP, SSE or
//! tower-eventstream; `app.rs` turns it into an event endpoint with layers alone.
//!
//! Each tick has a sequence number. A subscriber asks for the ticks after a sequence number
//! (or only live ones); the feed replays what it still holds from a ring of recent ticks,
//! then follows a `tokio::sync::broadcast` of live ticks, with nothing lost or repeated in
//! between. When ticks the subscriber asked for are no longer held (or it fell too far
//! behind the broadcast), it is told so with [`FeedItem::Missed`].

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::{ready, Ready};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::broadcast;
use tower::Service;

/// One price change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    /// Position in the feed, from 1.
    pub seq: u64,
    pub symbol: &'static str,
    pub price_cents: u64,
}

/// The request: the ticks after `after`, or only live ticks when `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribe {
    pub after: Option<u64>,
}

/// One item of a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedItem {
    Tick(Tick),
    /// Ticks up to and including `up_to` were missed: the subscriber should reload.
    Missed {
        up_to: u64,
    },
}

/// The response: where the subscription starts, and its items.
pub struct Ticks {
    /// The sequence number the subscription continues after (the last tick before its items).
    pub after: u64,
    pub items: Pin<Box<dyn Stream<Item = FeedItem> + Send>>,
}

impl std::fmt::Debug for Ticks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticks")
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

/// The feed. Cloning is cheap; clones share the feed.
#[derive(Clone)]
pub struct PriceFeed {
    state: Arc<Mutex<State>>,
    live: broadcast::Sender<Tick>,
}

struct State {
    recent: VecDeque<Tick>,
    capacity: usize,
    last_seq: u64,
}

impl PriceFeed {
    /// A feed that keeps the `history` most recent ticks for subscribers that resume.
    pub fn new(history: usize) -> Self {
        PriceFeed {
            state: Arc::new(Mutex::new(State {
                recent: VecDeque::with_capacity(history),
                capacity: history.max(1),
                last_seq: 0,
            })),
            live: broadcast::channel(256).0,
        }
    }

    /// Publishes a price; returns the tick with its sequence number.
    pub fn publish(&self, symbol: &'static str, price_cents: u64) -> Tick {
        let mut state = self.state.lock().expect("feed lock");
        state.last_seq += 1;
        let tick = Tick {
            seq: state.last_seq,
            symbol,
            price_cents,
        };
        if state.recent.len() == state.capacity {
            state.recent.pop_front();
        }
        state.recent.push_back(tick.clone());
        // Sent under the lock, so a subscriber sees each tick either in its replay or live.
        let _ = self.live.send(tick.clone());
        tick
    }

    /// A new receiver of the live ticks (those published from now on), for code that wants
    /// the plain broadcast rather than a resumable subscription.
    pub fn watch(&self) -> broadcast::Receiver<Tick> {
        self.live.subscribe()
    }

    fn subscribe(&self, request: Subscribe) -> Ticks {
        let state = self.state.lock().expect("feed lock");
        let live = self.live.subscribe();
        let oldest = state.recent.front().map_or(state.last_seq + 1, |tick| tick.seq);
        let (after, missed) = match request.after {
            None => (state.last_seq, None),
            // Still held (or nothing after it yet): resume right after it.
            Some(after) if after <= state.last_seq && after >= oldest - 1 => (after, None),
            // Too old, or not from this feed (from before a restart): replay what is held.
            Some(_) => (oldest - 1, Some(FeedItem::Missed { up_to: oldest - 1 })),
        };
        let replay: Vec<FeedItem> = missed
            .into_iter()
            .chain(
                state
                    .recent
                    .iter()
                    .filter(|tick| tick.seq > after)
                    .cloned()
                    .map(FeedItem::Tick),
            )
            .collect();
        let last_seq = state.last_seq;
        drop(state);
        let live = stream::unfold((live, last_seq), |(mut live, mut seen)| async move {
            match live.recv().await {
                Ok(tick) => {
                    seen = tick.seq;
                    Some((FeedItem::Tick(tick), (live, seen)))
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    seen += skipped;
                    Some((FeedItem::Missed { up_to: seen }, (live, seen)))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        Ticks {
            after,
            items: Box::pin(stream::iter(replay).chain(live)),
        }
    }
}

impl Service<Subscribe> for PriceFeed {
    type Response = Ticks;
    type Error = Infallible;
    type Future = Ready<Result<Ticks, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Subscribe) -> Self::Future {
        ready(Ok(self.subscribe(request)))
    }
}
