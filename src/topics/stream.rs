//! [`TopicStream`]: what a request for one topic, or for several at once, streams from.
//!
//! Several topics share one response (browsers open at most six HTTP/1.1 connections per
//! origin, across all tabs). Their deliveries are interleaved by arrival, one topic after
//! another so that a busy topic cannot starve a quiet one, and every event carries the
//! composite cursor of all the topics' positions as its id (see `cursor`), so a reconnect
//! resumes each topic exactly.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::cursor::compose;
use super::TopicFeed;
use crate::{Delivery, Event, EventFeed, EventId, EventLog};

type FeedError<L> = <<L as EventLog>::Subscription as EventFeed>::Error;

/// The feed a [`Topics::serve_many`](super::Topics::serve_many) response streams from.
///
/// - One topic: that topic's [`TopicFeed`] as it is (its ids are its log's).
/// - Several: their deliveries interleaved. An event's id is the composite cursor; its
///   [`topic`](Event::topic) is set, so SSE sends the type `<topic>:<name>`
///   (`kitchen:message`) and a long poll adds `"topic"`. A gap in one topic is an event of
///   the reset type (default `reset`) whose data is the topic's key, followed by that
///   topic's held events; the other topics go on untouched.
pub struct TopicStream<L: EventLog> {
    inner: Inner<L>,
}

enum Inner<L: EventLog> {
    One(TopicFeed<L>),
    Many(Box<Many<L>>),
}

struct Many<L: EventLog> {
    keys: Vec<Arc<str>>,
    feeds: Vec<TopicFeed<L>>,
    /// Each topic's position as the client knows it: its cursor's (or where its subscription
    /// started), then each delivery's.
    positions: Vec<Option<EventId>>,
    /// The topic looked at first next time: the one after the last that delivered.
    next: usize,
    reset_event: Arc<str>,
}

impl<L: EventLog> TopicStream<L> {
    pub(crate) fn one(feed: TopicFeed<L>) -> Self {
        TopicStream {
            inner: Inner::One(feed),
        }
    }

    /// `topics`: each key, its feed, and the position the client's cursor gave it.
    pub(crate) fn many(
        topics: Vec<(Arc<str>, TopicFeed<L>, Option<EventId>)>,
        reset_event: Arc<str>,
    ) -> Self {
        let mut many = Many {
            keys: Vec::with_capacity(topics.len()),
            feeds: Vec::with_capacity(topics.len()),
            positions: Vec::with_capacity(topics.len()),
            next: 0,
            reset_event,
        };
        for (key, feed, position) in topics {
            // Without a cursor, where the subscription starts; a subscription held while its
            // backend is away names its position later, by a checkpoint.
            many.positions.push(position.or_else(|| feed.position()));
            many.keys.push(key);
            many.feeds.push(feed);
        }
        TopicStream {
            inner: Inner::Many(Box::new(many)),
        }
    }
}

impl<L: EventLog> Many<L> {
    fn cursor(&self) -> EventId {
        compose(
            self.keys
                .iter()
                .zip(&self.positions)
                .filter_map(|(key, position)| Some((&**key, position.as_ref()?))),
        )
    }

    fn tag(&mut self, topic: usize, delivery: Delivery) -> Delivery {
        match delivery {
            Delivery::Event(event) => {
                if let Some(id) = event.id() {
                    self.positions[topic] = Some(id.clone());
                }
                let cursor = self.cursor();
                Delivery::Event(
                    event
                        .with_event_id(cursor)
                        .with_topic(Arc::clone(&self.keys[topic])),
                )
            }
            Delivery::Gap(position) => {
                if position.is_some() {
                    self.positions[topic] = position;
                }
                let reset = Event::new(&*self.keys[topic]);
                let reset = reset.clone().with_name(&*self.reset_event).unwrap_or(reset);
                Delivery::Event(reset.with_event_id(self.cursor()))
            }
            Delivery::Checkpoint(position) => {
                self.positions[topic] = Some(position);
                Delivery::Checkpoint(self.cursor())
            }
        }
    }

    fn poll_delivery(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery, FeedError<L>>>> {
        let count = self.feeds.len();
        for offset in 0..count {
            let topic = (self.next + offset) % count;
            match Pin::new(&mut self.feeds[topic]).poll_delivery(cx) {
                Poll::Ready(Some(Ok(delivery))) => {
                    self.next = (topic + 1) % count;
                    return Poll::Ready(Some(Ok(self.tag(topic, delivery))));
                }
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                // One topic's end (its access expired) ends the stream: the client comes
                // back for all of them.
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }
}

impl<L: EventLog> EventFeed for TopicStream<L> {
    type Error = FeedError<L>;

    fn poll_delivery(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Delivery, Self::Error>>> {
        match &mut self.get_mut().inner {
            Inner::One(feed) => Pin::new(feed).poll_delivery(cx),
            Inner::Many(many) => many.poll_delivery(cx),
        }
    }

    fn poll_encoded(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut bytes::BytesMut,
        max_bytes: usize,
    ) -> Poll<Option<Result<usize, Self::Error>>> {
        match &mut self.get_mut().inner {
            Inner::One(feed) => Pin::new(feed).poll_encoded(cx, out, max_bytes),
            // Each event gets this stream's own id: no shared bytes to copy.
            Inner::Many(_) => Poll::Ready(Some(Ok(0))),
        }
    }

    fn position(&self) -> Option<EventId> {
        match &self.inner {
            Inner::One(feed) => feed.position(),
            Inner::Many(many) => Some(many.cursor()),
        }
    }

    fn honours_cursor(&self) -> bool {
        true
    }
}

impl<L: EventLog> fmt::Debug for TopicStream<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::One(feed) => f.debug_tuple("TopicStream").field(feed).finish(),
            Inner::Many(many) => f
                .debug_struct("TopicStream")
                .field("topics", &many.keys)
                .finish_non_exhaustive(),
        }
    }
}
