//! The SSE transport: `text/event-stream` responses over an [`EventFeed`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderValue, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::shutdown::ShutdownSignal;
use crate::transport::watch::{Ending, Watch};
use crate::transport::wire::{self, put_ending, put_marker, END_CURSOR, KEEP_ALIVE};
use crate::{BoxError, Delivery, EventFeed, EventId, EventStreamBody, StreamConfig};

/// The most deliveries gathered into one frame.
const DELIVERIES_PER_FRAME: usize = 256;

pin_project! {
    /// A `text/event-stream` body over an [`EventFeed`].
    ///
    /// It opens with a comment, the `retry:` hint and the current position, then writes each
    /// event's shared wire bytes, gathering every delivery that is ready into one frame. It
    /// sends a keep-alive comment after each idle interval, ends after the maximum
    /// connection age, and ends with a jittered `retry:` hint on shutdown. Its [`Watch`]
    /// counts what it writes and reports how it ended.
    pub(crate) struct SseBody<S> {
        #[pin]
        source: S,
        opening: Option<Bytes>,
        keep_alive: Option<KeepAlive>,
        max_age: Option<Pin<Box<Sleep>>>,
        shutdown: Option<ShutdownSignal>,
        retry: Option<Duration>,
        reset_event: Arc<str>,
        checkpoint_event: Arc<str>,
        frame_bytes: usize,
        finished: bool,
        watch: Watch,
    }
}

struct KeepAlive {
    interval: Duration,
    timer: Pin<Box<Sleep>>,
    /// When the last frame went out. Writing only records the time; the timer is re-armed
    /// when it fires (at most once per interval), never per event.
    last_write: Instant,
}

impl<S: EventFeed> SseBody<S> {
    /// With `reset_first`, the stream tells the client at once that it may have missed
    /// events (it came back to a live-only feed).
    pub(crate) fn new(source: S, config: &StreamConfig, reset_first: bool, watch: Watch) -> Self {
        // The position goes out at once so that a client that reconnects before any event
        // arrives resumes from here instead of from the live end.
        let opening = wire::opening(
            config.retry,
            source.position().as_ref(),
            &config.checkpoint_event,
            reset_first.then_some(&*config.reset_event),
        );
        let now = Instant::now();
        SseBody {
            source,
            opening: Some(opening),
            keep_alive: config.keep_alive.map(|interval| KeepAlive {
                interval,
                timer: Box::pin(tokio::time::sleep_until(now + interval)),
                last_write: now,
            }),
            max_age: config
                .max_connection_age
                .map(|age| Box::pin(tokio::time::sleep_until(now + age))),
            shutdown: config.shutdown.as_ref().map(|s| s.triggered()),
            retry: config.retry,
            reset_event: Arc::clone(&config.reset_event),
            checkpoint_event: Arc::clone(&config.checkpoint_event),
            frame_bytes: config.frame_bytes,
            finished: false,
            watch,
        }
    }
}

impl KeepAlive {
    /// A keep-alive frame once the stream has been idle for the interval, else `Pending`.
    fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            let now = Instant::now();
            let idle_until = self.last_write + self.interval;
            if idle_until > now {
                // Something was written meanwhile: the stream has not been idle long enough.
                self.timer.as_mut().reset(idle_until);
                continue;
            }
            self.last_write = now;
            self.timer.as_mut().reset(now + self.interval);
            return frame(Bytes::from_static(KEEP_ALIVE));
        }
    }
}

fn frame(bytes: Bytes) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    Poll::Ready(Some(Ok(Frame::data(bytes))))
}

/// A frame that carries no event (the opening, a hint, a keep-alive), counted as bytes.
fn counted(watch: &mut Watch, bytes: Bytes) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    watch.wrote(0, bytes.len(), None);
    frame(bytes)
}

/// A keep-alive once the stream has been idle long enough, else `Pending`.
fn tick(
    keep_alive: Option<&mut KeepAlive>,
    watch: &mut Watch,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    match keep_alive {
        Some(keep_alive) => {
            let polled = keep_alive.poll_tick(cx);
            if polled.is_ready() {
                watch.wrote(0, KEEP_ALIVE.len(), None);
            }
            polled
        }
        None => Poll::Pending,
    }
}

/// Why a stream ends with [`wire::put_ending`] after its source failed; the failure itself is not
/// the client's business, and an error ending the body would reset the connection.
fn source_failed(error: impl Into<BoxError>) {
    let error: BoxError = error.into();
    crate::trace::warn_event!("event source failed; the SSE stream ends with a retry hint", error = %error);
}

/// The block that closes a plain (live-only) stream that ended: a checkpoint at
/// [`END_CURSOR`], so that the browser comes back with it and is answered `204` (a plain
/// stream has no position to resume: without it, the browser would get the whole stream
/// again, and again). A log's feed needs none: its last id is its end.
fn end_of_plain_stream<S: EventFeed>(source: &S, checkpoint_event: &str) -> Option<Bytes> {
    if source.honours_cursor() {
        return None;
    }
    let mut marker = BytesMut::new();
    let end = EventId::new(END_CURSOR).expect("a plain word is a valid id");
    put_marker(&mut marker, Some(&end), checkpoint_event);
    Some(marker.freeze())
}

impl<S: EventFeed> Body for SseBody<S> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if *this.finished {
            return Poll::Ready(None);
        }
        if let Some(opening) = this.opening.take() {
            return counted(this.watch, opening);
        }
        if let Some(shutdown) = this.shutdown.as_mut() {
            if Pin::new(shutdown).poll(cx).is_ready() {
                *this.finished = true;
                this.watch.ending(Ending::Shutdown);
                let mut hint = BytesMut::new();
                put_ending(&mut hint, *this.retry, "shutting down");
                return counted(this.watch, hint.freeze());
            }
        }
        if let Some(max_age) = this.max_age.as_mut() {
            if max_age.as_mut().poll(cx).is_ready() {
                *this.finished = true;
                this.watch.ending(Ending::MaxAge);
                return Poll::Ready(None);
            }
        }

        // Sources that can copy their ready events' bytes straight into the frame do so.
        let mut direct = BytesMut::new();
        let frame_bytes = *this.frame_bytes;
        match this.source.as_mut().poll_encoded(cx, &mut direct, frame_bytes) {
            Poll::Ready(Some(Ok(encoded))) if encoded.is_none() => {}
            Poll::Ready(Some(Ok(encoded))) => {
                if let Some(keep_alive) = this.keep_alive.as_mut() {
                    keep_alive.last_write = Instant::now();
                }
                this.watch
                    .wrote(encoded.events, direct.len(), encoded.first_appended);
                return frame(direct.freeze());
            }
            Poll::Ready(Some(Err(error))) => {
                source_failed(error);
                *this.finished = true;
                this.watch.ending(Ending::Error);
                let mut hint = BytesMut::new();
                put_ending(&mut hint, *this.retry, "source failed");
                return counted(this.watch, hint.freeze());
            }
            Poll::Ready(None) => {
                *this.finished = true;
                this.watch.ending(Ending::SourceEnded);
                return match end_of_plain_stream(this.source.as_ref().get_ref(), this.checkpoint_event) {
                    Some(marker) => counted(this.watch, marker),
                    None => Poll::Ready(None),
                };
            }
            Poll::Pending => return tick(this.keep_alive.as_mut(), this.watch, cx),
        }

        // Gather everything ready into one frame: one shared buffer when a single event is
        // ready (no copy), a concatenation when several are.
        let mut single: Option<Bytes> = None;
        let mut gathered = BytesMut::new();
        let mut count = 0;
        let mut events = 0;
        let mut first_stamp = None;
        while count < DELIVERIES_PER_FRAME
            && single.as_ref().map_or(0, Bytes::len) + gathered.len() < *this.frame_bytes
        {
            let bytes = match this.source.as_mut().poll_delivery(cx) {
                Poll::Ready(Some(Ok(Delivery::Event(event)))) => {
                    if events == 0 {
                        first_stamp = event.appended_at();
                    }
                    events += 1;
                    event.to_bytes()
                }
                Poll::Ready(Some(Ok(Delivery::Gap(position)))) => {
                    if events == 0 {
                        this.watch.gap();
                    }
                    let mut reset = BytesMut::new();
                    put_marker(&mut reset, position.as_ref(), this.reset_event);
                    reset.freeze()
                }
                Poll::Ready(Some(Ok(Delivery::Checkpoint(position)))) => {
                    let mut checkpoint = BytesMut::new();
                    put_marker(&mut checkpoint, Some(&position), this.checkpoint_event);
                    checkpoint.freeze()
                }
                Poll::Ready(Some(Err(error))) => {
                    source_failed(error);
                    let mut hint = BytesMut::new();
                    put_ending(&mut hint, *this.retry, "source failed");
                    *this.finished = true;
                    this.watch.ending(Ending::Error);
                    hint.freeze()
                }
                Poll::Ready(None) => {
                    *this.finished = true;
                    this.watch.ending(Ending::SourceEnded);
                    match end_of_plain_stream(this.source.as_ref().get_ref(), this.checkpoint_event) {
                        Some(marker) => marker,
                        None => break,
                    }
                }
                Poll::Pending => break,
            };
            count += 1;
            match single.take() {
                None if gathered.is_empty() => single = Some(bytes),
                None => gathered.put_slice(&bytes),
                Some(first) => {
                    gathered.reserve(first.len() + bytes.len());
                    gathered.put_slice(&first);
                    gathered.put_slice(&bytes);
                }
            }
            if *this.finished {
                break;
            }
        }
        let out = single.or_else(|| (!gathered.is_empty()).then(|| gathered.freeze()));
        if let Some(out) = out {
            if let Some(keep_alive) = this.keep_alive.as_mut() {
                keep_alive.last_write = Instant::now();
            }
            this.watch.wrote(events, out.len(), first_stamp);
            return frame(out);
        }
        if *this.finished {
            return Poll::Ready(None);
        }

        tick(this.keep_alive.as_mut(), this.watch, cx)
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl<S> std::fmt::Debug for SseBody<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseBody")
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// Response headers of an SSE stream: no hop-by-hop headers, so the same response is valid
/// on HTTP/2; `x-accel-buffering: no` keeps nginx from buffering it.
pub(crate) fn headers<B>(response: &mut Response<B>) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

/// Answers with an SSE stream over `source`.
pub(crate) fn response<S: EventFeed>(
    source: S,
    config: &StreamConfig,
    reset_first: bool,
    watch: Watch,
) -> Response<EventStreamBody<S>> {
    let body = SseBody::new(source, config, reset_first, watch);
    let mut response = Response::new(EventStreamBody::stream(body));
    headers(&mut response);
    response
}
