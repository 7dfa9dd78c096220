//! The long-poll and short-poll transport: JSON answers held until an event exists.
//!
//! The answer is `200 application/json`:
//! `{"events":[{"id":"…","event":"…","data":"…"}],"lastEventId":"…","reset":false}`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{header, HeaderValue, Response};
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::measure::PollOutcome;
use crate::shutdown::ShutdownSignal;
use crate::transport::watch::{Ending, Watch};
use crate::transport::wire;
use crate::{Delivery, Event, EventFeed, EventId, EventStreamBody, LastEventId, StreamConfig};

pin_project! {
    /// Waits until the source has events (or a gap), the wait ends, or shutdown begins, then
    /// answers with every event that is ready, up to the batch limit. Its [`Watch`] counts
    /// the answer and its outcome, or a client that left before it.
    #[must_use = "a long poll answers only once this future is awaited"]
    pub(crate) struct LongPollFuture<S> {
        #[pin]
        source: S,
        events: Vec<Event>,
        reset: bool,
        live_only: bool,
        // The position after the latest delivery that named one.
        position: Option<EventId>,
        cursor: Option<LastEventId>,
        deadline: Option<Pin<Box<Sleep>>>,
        shutdown: Option<ShutdownSignal>,
        batch_limit: usize,
        ended: bool,
        // The source failed (it did not end cleanly).
        failed: bool,
        // Dropped once answered; dropped unanswered, the client left.
        watch: Option<Watch>,
    }
}

impl<S: EventFeed> LongPollFuture<S> {
    /// Polls `source` for at most `wait` (zero: answer with what is ready now).
    pub(crate) fn new(
        source: S,
        cursor: Option<LastEventId>,
        wait: std::time::Duration,
        config: &StreamConfig,
        watch: Watch,
    ) -> Self {
        // A live-only feed cannot say what a client that polled before has missed.
        let live_only = !source.honours_cursor();
        LongPollFuture {
            events: Vec::new(),
            reset: live_only && cursor.is_some(),
            live_only,
            source,
            position: None,
            cursor,
            deadline: (!wait.is_zero()).then(|| Box::pin(tokio::time::sleep(wait))),
            shutdown: config.shutdown.as_ref().map(|s| s.triggered()),
            batch_limit: config.batch_limit,
            ended: false,
            failed: false,
            watch: Some(watch),
        }
    }
}

impl<S: EventFeed> Future for LongPollFuture<S> {
    type Output = Response<EventStreamBody<S>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        while !*this.ended && this.events.len() < *this.batch_limit {
            match this.source.as_mut().poll_delivery(cx) {
                Poll::Ready(Some(Ok(Delivery::Event(event)))) => {
                    if let Some(id) = event.id() {
                        *this.position = Some(id.clone());
                    }
                    if event.marks_gap() {
                        // One topic of several lost the client's position: the answer says
                        // so, and the other topics' events stay.
                        if let Some(watch) = this.watch.as_mut() {
                            watch.gap();
                        }
                        *this.reset = true;
                    }
                    // As on SSE, where a block without data dispatches nothing: such an event
                    // (an id, a retry hint or a comment alone) only moves the cursor.
                    if event.has_data() {
                        this.events.push(event);
                    }
                }
                Poll::Ready(Some(Ok(Delivery::Gap(position)))) => {
                    // Events gathered before the gap belong to the lost past.
                    this.events.clear();
                    if let Some(watch) = this.watch.as_mut() {
                        watch.gap();
                    }
                    *this.reset = true;
                    *this.position = position;
                }
                Poll::Ready(Some(Ok(Delivery::Checkpoint(position)))) => *this.position = Some(position),
                Poll::Ready(Some(Err(error))) => {
                    let error: crate::BoxError = error.into();
                    crate::trace::warn_event!("event source failed during a long poll", error = %error);
                    *this.ended = true;
                    *this.failed = true;
                }
                Poll::Ready(None) => *this.ended = true,
                Poll::Pending => break,
            }
        }
        let has_answer = !this.events.is_empty() || *this.reset || *this.ended;
        let timed_out = match this.deadline.as_mut() {
            None => true,
            Some(deadline) => deadline.as_mut().poll(cx).is_ready(),
        };
        let shutting_down = this
            .shutdown
            .as_mut()
            .is_some_and(|s| Pin::new(s).poll(cx).is_ready());
        if !(has_answer || timed_out || shutting_down) {
            return Poll::Pending;
        }
        // Ended because the stream is complete (a finished log read to its end, or a plain
        // stream that ended): the client must not poll again.
        let finished = *this.ended && !*this.failed && (*this.live_only || this.source.is_finished());
        // Where the client polls from next: never null, so nothing between polls is missed.
        // Over a live-only feed that named no position, a placeholder that the next poll
        // sends back, so that it hears `reset`; at its end, the end cursor.
        let last_event_id = match finished && *this.live_only {
            true => wire::END_CURSOR.to_owned(),
            false => this
                .position
                .clone()
                .or_else(|| this.source.position())
                .map(|id| id.as_str().to_owned())
                .or_else(|| this.cursor.as_ref().map(|c| c.as_str().to_owned()))
                .or_else(|| this.live_only.then(|| LIVE_ONLY_CURSOR.to_owned()))
                .unwrap_or_default(),
        };
        let body = wire::long_poll_answer(this.events, &last_event_id, *this.reset, finished);
        if let Some(mut watch) = this.watch.take() {
            let outcome = if has_answer && (*this.reset || !this.events.is_empty()) {
                PollOutcome::Events
            } else if shutting_down {
                PollOutcome::Shutdown
            } else {
                PollOutcome::TimedOut
            };
            let first = this.events.first().and_then(Event::appended_at);
            watch.wrote(this.events.len() as u64, body.len(), first);
            watch.ending(Ending::Answered(outcome));
        }
        Poll::Ready(answer(body))
    }
}

impl<S> std::fmt::Debug for LongPollFuture<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LongPollFuture")
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

/// The `lastEventId` of a long poll over a live-only feed that named no position.
const LIVE_ONLY_CURSOR: &str = "live";

pub(crate) fn headers<B>(response: &mut Response<B>) {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn answer<S>(body: bytes::Bytes) -> Response<EventStreamBody<S>> {
    let mut response = Response::new(EventStreamBody::complete(body));
    headers(&mut response);
    response
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::BodyExt;

    use super::*;

    /// An event without data is dispatched by no SSE client; a long poll treats it the same:
    /// it moves `lastEventId` but is not an event of the answer.
    #[tokio::test]
    async fn an_event_without_data_only_moves_the_cursor() {
        let events = vec![
            Ok::<_, Infallible>(Event::new("shown").with_id("1").unwrap()),
            Ok(Event::empty().with_id("2").unwrap()),
        ];
        // A stream that goes on (one that ended would hand out the end cursor instead).
        let source = futures_util::StreamExt::chain(
            futures_util::stream::iter(events),
            futures_util::stream::pending(),
        );
        let config = StreamConfig::default();
        let watch = Watch::open(
            crate::Transport::LongPoll,
            crate::transport::watch::Resume::Fresh,
            None,
        );
        let response = LongPollFuture::new(source, None, std::time::Duration::ZERO, &config, watch).await;
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["events"].as_array().unwrap().len(), 1, "{json}");
        assert_eq!(json["events"][0]["data"], "shown");
        assert_eq!(json["lastEventId"], "2");
    }
}
