use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::event::{put_field, write_retry};
use crate::shutdown::ShutdownSignal;
use crate::{BoxError, Delivery, EventSource, StreamConfig};

/// The most deliveries gathered into one frame.
const DELIVERIES_PER_FRAME: usize = 256;

/// The keep-alive comment: the shortest line a parser ignores.
const KEEP_ALIVE: &[u8] = b":\n";

pin_project! {
    /// A `text/event-stream` body over an [`EventSource`].
    ///
    /// It opens with a comment, the `retry:` hint and the current position, then writes each
    /// event's shared wire bytes, gathering every delivery that is ready into one frame. It
    /// sends a keep-alive comment after each idle interval, ends after the maximum
    /// connection age, and ends with a jittered `retry:` hint on shutdown.
    pub struct SseBody<S> {
        #[pin]
        source: S,
        opening: Option<Bytes>,
        keep_alive: Option<KeepAlive>,
        max_age: Option<Pin<Box<Sleep>>>,
        shutdown: Option<ShutdownSignal>,
        retry: Option<Duration>,
        reset_event: Arc<str>,
        frame_bytes: usize,
        failed: Option<BoxError>,
        finished: bool,
    }
}

struct KeepAlive {
    interval: Duration,
    timer: Pin<Box<Sleep>>,
    /// When the last frame went out. Writing only records the time; the timer is re-armed
    /// when it fires (at most once per interval), never per event.
    last_write: Instant,
}

impl<S: EventSource> SseBody<S> {
    pub(crate) fn new(source: S, config: &StreamConfig) -> Self {
        let mut opening = BytesMut::with_capacity(64);
        opening.put_slice(b":ok\n");
        if let Some(retry) = config.retry {
            write_retry(&mut opening, retry);
        }
        // The position goes out at once so that a client that reconnects before any event
        // arrives resumes from here instead of from the live end.
        if let Some(position) = source.position() {
            put_field(&mut opening, b"id", position.as_str());
        }
        opening.put_slice(b"\n");
        let now = Instant::now();
        SseBody {
            source,
            opening: Some(opening.freeze()),
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
            frame_bytes: config.frame_bytes,
            failed: None,
            finished: false,
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

/// A retry hint spread over half to one and a half times `base`, so that clients ended
/// together do not all come back in the same instant.
fn jittered(base: Duration) -> Duration {
    // Seeded per process, so that instances restarted together do not hand out the same
    // sequence of delays.
    static COUNTER: std::sync::OnceLock<AtomicU64> = std::sync::OnceLock::new();
    let counter = COUNTER.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        AtomicU64::new(hasher.finish())
    });
    let mut x = counter.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    base / 2 + base.mul_f64((x % 1000) as f64 / 1000.0)
}

impl<S: EventSource> Body for SseBody<S> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if *this.finished {
            return Poll::Ready(this.failed.take().map(Err));
        }
        if let Some(opening) = this.opening.take() {
            return frame(opening);
        }
        if let Some(shutdown) = this.shutdown.as_mut() {
            if Pin::new(shutdown).poll(cx).is_ready() {
                *this.finished = true;
                let mut hint = BytesMut::new();
                match *this.retry {
                    Some(retry) => write_retry(&mut hint, jittered(retry)),
                    None => hint.put_slice(b": shutting down\n"),
                }
                hint.put_slice(b"\n");
                return frame(hint.freeze());
            }
        }
        if let Some(max_age) = this.max_age.as_mut() {
            if max_age.as_mut().poll(cx).is_ready() {
                *this.finished = true;
                return Poll::Ready(None);
            }
        }

        // Sources that can copy their ready events' bytes straight into the frame do so.
        let mut direct = BytesMut::new();
        let frame_bytes = *this.frame_bytes;
        match this.source.as_mut().poll_encoded(cx, &mut direct, frame_bytes) {
            Poll::Ready(Some(Ok(0))) => {}
            Poll::Ready(Some(Ok(_))) => {
                if let Some(keep_alive) = this.keep_alive.as_mut() {
                    keep_alive.last_write = Instant::now();
                }
                return frame(direct.freeze());
            }
            Poll::Ready(Some(Err(error))) => {
                *this.finished = true;
                return Poll::Ready(Some(Err(error.into())));
            }
            Poll::Ready(None) => {
                *this.finished = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {
                return this
                    .keep_alive
                    .as_mut()
                    .map_or(Poll::Pending, |k| k.poll_tick(cx))
            }
        }

        // Gather everything ready into one frame: one shared buffer when a single event is
        // ready (no copy), a concatenation when several are.
        let mut single: Option<Bytes> = None;
        let mut gathered = BytesMut::new();
        let mut count = 0;
        while count < DELIVERIES_PER_FRAME
            && single.as_ref().map_or(0, Bytes::len) + gathered.len() < *this.frame_bytes
        {
            let bytes = match this.source.as_mut().poll_delivery(cx) {
                Poll::Ready(Some(Ok(Delivery::Event(event)))) => event.to_bytes(),
                Poll::Ready(Some(Ok(Delivery::Gap(position)))) => {
                    let mut reset = BytesMut::new();
                    if let Some(position) = position {
                        put_field(&mut reset, b"id", position.as_str());
                    }
                    put_field(&mut reset, b"event", this.reset_event);
                    reset.put_slice(b"data: \n\n");
                    reset.freeze()
                }
                Poll::Ready(Some(Err(error))) => {
                    *this.failed = Some(error.into());
                    *this.finished = true;
                    break;
                }
                Poll::Ready(None) => {
                    *this.finished = true;
                    break;
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
        }
        let out = single.or_else(|| (!gathered.is_empty()).then(|| gathered.freeze()));
        if let Some(out) = out {
            if let Some(keep_alive) = this.keep_alive.as_mut() {
                keep_alive.last_write = Instant::now();
            }
            return frame(out);
        }
        if *this.finished {
            return Poll::Ready(this.failed.take().map(Err));
        }

        match this.keep_alive.as_mut() {
            Some(keep_alive) => keep_alive.poll_tick(cx),
            None => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished && self.failed.is_none()
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
