//! `cargo bench --bench encode [-- --smoke]`: SSE events encoded per second, this crate's
//! `Event` against axum's `response::sse::Event`.
//!
//! Every event is fresh (its own id), so this crate's once-per-event cache never hits.
//! axum's `Event` has no public way to its bytes except an `Sse` response body, which yields
//! one frame per event; so axum is measured through `Sse`'s body, and this crate both
//! directly (`Event::to_bytes`) and through its own SSE body, which gathers every ready event
//! into one frame.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::response::sse::{Event as AxumEvent, Sse};
use axum::response::IntoResponse;
use futures_util::FutureExt;
use http_body::Body;
use tower_eventstream::{Event, StreamConfig, StreamRequest};

/// A 64-byte chat message, the payload size the compare bench publishes.
const DATA: &str = "@t1234567890;xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

/// Events per second of each way of encoding.
#[derive(Debug, Clone, Copy)]
pub struct Encoded {
    /// `Event::new(..).with_name(..).with_id(..)` then `to_bytes()`.
    pub crate_direct: f64,
    /// This crate's events through the SSE body of `StreamRequest::respond`.
    pub crate_body: f64,
    /// axum's events through `Sse`'s body.
    pub axum_body: f64,
}

fn id_text(id: &mut String, n: u64) -> &str {
    id.clear();
    let _ = write!(id, "{n}");
    id
}

fn best_of(rounds: usize, events: u64, mut run: impl FnMut(u64) -> usize) -> f64 {
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            black_box(run(events));
            events as f64 / start.elapsed().max(Duration::from_nanos(1)).as_secs_f64()
        })
        .fold(0.0, f64::max)
}

fn crate_direct(events: u64) -> usize {
    let mut id = String::new();
    let mut total = 0;
    for n in 0..events {
        let event = Event::new(DATA)
            .with_name("message")
            .unwrap()
            .with_id(id_text(&mut id, n))
            .unwrap();
        total += black_box(event.to_bytes()).len();
    }
    total
}

fn drain<B: Body + Unpin>(mut body: B) -> usize
where
    B::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut total = 0;
    loop {
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                total += frame.into_data().map_or(0, |data| {
                    use bytes::Buf as _;
                    data.remaining()
                })
            }
            Poll::Ready(Some(Err(error))) => panic!("body failed: {error:?}"),
            Poll::Ready(None) => return total,
            Poll::Pending => panic!("an in-memory event stream is never pending"),
        }
    }
}

fn crate_body(events: u64) -> usize {
    let mut id = String::new();
    let stream = futures_util::stream::iter((0..events).map(move |n| {
        Ok::<_, Infallible>(
            Event::new(DATA)
                .with_name("message")
                .unwrap()
                .with_id(id_text(&mut id, n))
                .unwrap(),
        )
    }));
    let config = StreamConfig::default().without_keep_alive();
    let (parts, ()) = http::Request::get("/events")
        .header("accept", "text/event-stream")
        .body(())
        .unwrap()
        .into_parts();
    let request = StreamRequest::from_parts(&parts, std::sync::Arc::new(config)).unwrap();
    // An SSE answer is ready at once: no runtime needed.
    let response = request
        .respond(stream)
        .now_or_never()
        .expect("an SSE answer is ready at once");
    drain(Box::pin(response.into_body()))
}

fn axum_body(events: u64) -> usize {
    let mut id = String::new();
    let stream = futures_util::stream::iter((0..events).map(move |n| {
        Ok::<_, Infallible>(
            AxumEvent::default()
                .event("message")
                .id(id_text(&mut id, n))
                .data(DATA),
        )
    }));
    drain(Sse::new(stream).into_response().into_body())
}

/// Measures each way; `smoke` runs few events once.
pub fn run(smoke: bool) -> Encoded {
    let (events, rounds) = if smoke { (20_000, 1) } else { (500_000, 3) };
    // Time is read (never advanced) by the SSE body; give it a runtime to read it from.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _entered = runtime.enter();
    Encoded {
        crate_direct: best_of(rounds, events, crate_direct),
        crate_body: best_of(rounds, events, crate_body),
        axum_body: best_of(rounds, events, axum_body),
    }
}

#[allow(dead_code)]
fn main() {
    let smoke = std::env::args().any(|arg| arg == "--smoke");
    let encoded = run(smoke);
    let million = |rate: f64| format!("{:.2} M events/s", rate / 1e6);
    println!("SSE encoding, fresh events (every event has its own id: no cache hits)");
    println!(
        "  tower-eventstream  Event::new().with_name().with_id().to_bytes()  {}",
        million(encoded.crate_direct)
    );
    println!(
        "  tower-eventstream  through StreamRequest::respond's SSE body      {}",
        million(encoded.crate_body)
    );
    println!(
        "  axum               Event::default().event().id().data() via Sse  {}",
        million(encoded.axum_body)
    );
    println!(
        "  ratio crate/axum: direct {:.2}x, through the body {:.2}x",
        encoded.crate_direct / encoded.axum_body,
        encoded.crate_body / encoded.axum_body
    );
}
