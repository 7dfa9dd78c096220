//! The `tracing` feature's spans, as a subscriber sees them while real clients use the chat
//! example over TCP: one `event_stream` span per SSE stream or long poll, at `DEBUG` (quiet
//! at the usual `INFO`), with its transport and how the resume went, and one closing event in
//! it with the events delivered and why it ended. No span or event per delivered event.
//!
//! A subscriber is global to the process: this binary installs one that records everything,
//! and runs its checks in one test.

mod support;

#[path = "../examples/chat/app.rs"]
mod app;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower_eventstream::{Delivery, Encoded, Event, EventFeed, MemoryLog, StreamConfig, StreamRequest};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Level, Metadata, Subscriber};

use support::client::{long_poll, post_message};
use support::reader::SseReader;
use support::server::{Serving, TestServer};
use support::wait_until;

/// A span as recorded: its name, level and fields (later `record`s included).
#[derive(Clone, Debug)]
struct SpanSeen {
    name: &'static str,
    level: Level,
    fields: HashMap<&'static str, String>,
}

/// An event as recorded: its level, its span and its fields (`message` included).
#[derive(Clone, Debug)]
struct EventSeen {
    level: Level,
    parent: Option<u64>,
    fields: HashMap<&'static str, String>,
}

#[derive(Default)]
struct Seen {
    spans: HashMap<u64, SpanSeen>,
    events: Vec<EventSeen>,
}

#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Seen>>,
    next_id: Arc<AtomicU64>,
}

struct Fields<'a>(&'a mut HashMap<&'static str, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let mut fields = HashMap::new();
        span.record(&mut Fields(&mut fields));
        let seen = SpanSeen {
            name: span.metadata().name(),
            level: *span.metadata().level(),
            fields,
        };
        self.seen.lock().unwrap().spans.insert(id, seen);
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        if let Some(seen) = self.seen.lock().unwrap().spans.get_mut(&span.into_u64()) {
            values.record(&mut Fields(&mut seen.fields));
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        let seen = EventSeen {
            level: *event.metadata().level(),
            parent: event.parent().map(Id::into_u64),
            fields,
        };
        self.seen.lock().unwrap().events.push(seen);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

fn recorder() -> Recorder {
    static RECORDER: OnceLock<Recorder> = OnceLock::new();
    RECORDER
        .get_or_init(|| {
            let recorder = Recorder::default();
            tracing::subscriber::set_global_default(recorder.clone())
                .expect("the only subscriber of this test binary");
            recorder
        })
        .clone()
}

impl Recorder {
    /// The `event_stream` spans whose `transport` is `transport`, with their ids.
    fn streams(&self, transport: &str) -> Vec<(u64, SpanSeen)> {
        let seen = self.seen.lock().unwrap();
        let mut spans: Vec<_> = (seen.spans.iter())
            .filter(|(_, span)| span.name == "event_stream")
            .filter(|(_, span)| span.fields.get("transport").map(String::as_str) == Some(transport))
            .map(|(id, span)| (*id, span.clone()))
            .collect();
        spans.sort_by_key(|(id, _)| *id);
        spans
    }

    /// The events in span `id`.
    fn events_in(&self, id: u64) -> Vec<EventSeen> {
        let seen = self.seen.lock().unwrap();
        (seen.events.iter())
            .filter(|event| event.parent == Some(id))
            .cloned()
            .collect()
    }
}

/// The one closing event of span `id`, once there is one.
async fn closed(recorder: &Recorder, id: u64) -> EventSeen {
    let is_close =
        |event: &EventSeen| event.fields.get("message").map(String::as_str) == Some("event stream closed");
    wait_until("the closing event", || {
        recorder.events_in(id).iter().any(is_close)
    })
    .await;
    let events = recorder.events_in(id);
    assert_eq!(
        events.len(),
        1,
        "one event per stream, none per delivery: {events:?}"
    );
    events.into_iter().find(is_close).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_span_per_stream_and_poll_closed_with_what_it_delivered_and_why() {
    let recorder = recorder();
    let log = MemoryLog::new();
    let router = app::router(app::memory_rooms(&log), StreamConfig::default());
    let server = TestServer::start(Serving::Axum, router).await;
    let addr = server.addr;

    // An SSE stream that gets two events, then the client leaves.
    let mut reader = SseReader::connect(addr, "/api/events", None).await;
    reader.read_opening().await;
    for text in ["one", "two"] {
        assert_eq!(post_message(addr, text).await.status, 201);
        reader.read_until(text).await;
    }
    let [(id, span)] = recorder.streams("sse").try_into().expect("one SSE span");
    assert_eq!(span.level, Level::DEBUG, "quiet at INFO: {span:?}");
    assert_eq!(span.fields["resume"], "fresh", "{span:?}");
    drop(reader);
    let close = closed(&recorder, id).await;
    assert_eq!(close.level, Level::DEBUG);
    assert_eq!(close.fields["events"], "2", "{close:?}");
    assert_eq!(close.fields["reason"], "client_left", "{close:?}");

    // A long poll from another log's cursor: a reset first, so the resume was a gap.
    let foreign = MemoryLog::new().push(Event::new("elsewhere")).unwrap();
    let cursor = foreign.id().expect("an id").as_str().to_owned();
    let (_, answer) = long_poll(addr, &format!("/api/events?lastEventId={cursor}&timeout=0")).await;
    assert_eq!(answer["reset"], true, "{answer}");
    let [(id, _)] = recorder
        .streams("long_poll")
        .try_into()
        .expect("one long-poll span");
    let close = closed(&recorder, id).await;
    let span = recorder.seen.lock().unwrap().spans[&id].clone();
    assert_eq!(span.fields["resume"], "gap", "{span:?}");
    assert_eq!(
        close.fields["reason"], "events",
        "answered with the reset: {close:?}"
    );

    // Feeds of the application's own with the SSE fast path: one that writes its events in
    // frames of three, and one that merges two of those. Each frame says what it carries, so
    // the span counts every event, however they were written.
    let router = axum::Router::new()
        .route(
            "/frames",
            axum::routing::get(
                |request: StreamRequest| async move { request.respond(Framed::new("a", 7)).await },
            ),
        )
        .route(
            "/merged",
            axum::routing::get(|request: StreamRequest| async move {
                request
                    .respond(Merged(Framed::new("b", 5), Framed::new("c", 4)))
                    .await
            }),
        )
        .with_state(StreamConfig::default());
    let server = TestServer::start(Serving::Axum, router).await;
    for (path, events, last) in [("/frames", 7, "a 6"), ("/merged", 9, "c 3")] {
        let before = recorder.streams("sse").len();
        let mut reader = SseReader::connect(server.addr, path, None).await;
        reader.read_opening().await;
        reader.read_until(last).await;
        let streams = recorder.streams("sse");
        assert_eq!(streams.len(), before + 1, "one more SSE span");
        let (id, _) = streams.last().cloned().unwrap();
        drop(reader);
        let close = closed(&recorder, id).await;
        assert_eq!(close.fields["events"], events.to_string(), "{path}: {close:?}");
    }
}

/// `total` events `<name> <n>`, written straight into the frame three at a time.
struct Framed {
    name: &'static str,
    next: u64,
    total: u64,
}

impl Framed {
    fn new(name: &'static str, total: u64) -> Self {
        Framed { name, next: 0, total }
    }

    fn event(&self, n: u64) -> Event {
        Event::new(format!("{} {n}", self.name))
    }
}

impl EventFeed for Framed {
    type Error = Infallible;

    fn poll_delivery(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Delivery, Infallible>>> {
        let this = self.get_mut();
        if this.next == this.total {
            return Poll::Pending;
        }
        this.next += 1;
        Poll::Ready(Some(Ok(Delivery::Event(this.event(this.next - 1)))))
    }

    fn poll_encoded(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        out: &mut bytes::BytesMut,
        _max_bytes: usize,
    ) -> Poll<Option<Result<Encoded, Infallible>>> {
        let this = self.get_mut();
        if this.next == this.total {
            return Poll::Pending;
        }
        let before = out.len();
        let until = (this.next + 3).min(this.total);
        let events = until - this.next;
        while this.next < until {
            out.extend_from_slice(&this.event(this.next).to_bytes());
            this.next += 1;
        }
        Poll::Ready(Some(Ok(Encoded::new(out.len() - before, events))))
    }
}

/// Two feeds as one: each frame holds what both had ready, and says so.
struct Merged(Framed, Framed);

impl EventFeed for Merged {
    type Error = Infallible;

    fn poll_delivery(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Delivery, Infallible>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.0).poll_delivery(cx) {
            Poll::Pending => Pin::new(&mut this.1).poll_delivery(cx),
            ready => ready,
        }
    }

    fn poll_encoded(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut bytes::BytesMut,
        max_bytes: usize,
    ) -> Poll<Option<Result<Encoded, Infallible>>> {
        let this = self.get_mut();
        let mut frame = Encoded::NONE;
        for feed in [&mut this.0, &mut this.1] {
            if let Poll::Ready(Some(Ok(part))) = Pin::new(feed).poll_encoded(cx, out, max_bytes) {
                frame = Encoded::new(frame.bytes + part.bytes, frame.events + part.events);
            }
        }
        if frame.is_none() {
            return Poll::Pending;
        }
        Poll::Ready(Some(Ok(frame)))
    }
}
