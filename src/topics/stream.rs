//! [`TopicStream`]: what a request for one topic, or for several at once, streams from.
//!
//! Several topics share one response (browsers open at most six HTTP/1.1 connections per
//! origin, across all tabs). Their deliveries are interleaved by arrival, one topic after
//! another so that a busy topic cannot starve a quiet one, and every event carries the
//! composite cursor of all the topics' positions as its id (see `cursor`), so a reconnect
//! resumes each topic exactly.

use crate::feed::Encoded;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::cursor::compose;
use super::TopicFeed;
use crate::config::{StreamConfig, TopicNames};
use crate::{Delivery, Event, EventFeed, EventId, EventLog};

type FeedError<L> = <<L as EventLog>::Subscription as EventFeed>::Error;

/// The feed a [`Topics::serve_many`](super::Topics::serve_many) response streams from.
///
/// - One topic: that topic's [`TopicFeed`] as it is (its ids are its log's).
/// - Several: their deliveries interleaved. An event's id is the composite cursor; its
///   [`topic`](Event::topic) is set, so a long poll adds `"topic"`, and SSE sends the type
///   `<topic>:<name>` (`kitchen:message`) or, with
///   [`TopicNames::Plain`](crate::TopicNames::Plain), the event's own name. A gap in one
///   topic is an event of the reset type (default `reset`) whose data is the topic's key,
///   followed by that topic's held events (a long poll also answers `"reset": true`); the
///   other topics go on untouched.
pub struct TopicStream<L: EventLog> {
    inner: Inner<L>,
}

enum Inner<L: EventLog> {
    One(TopicFeed<L>, OwedGap),
    Many(Box<Many<L>>),
}

/// Whether a topic's client must first hear of a gap: its cursor could not be placed in
/// this topic, so it starts where a client without a cursor does.
pub(crate) type OwedGap = bool;

/// One topic of a stream over several, as [`TopicStream::many`] takes it.
pub(crate) struct Member<L: EventLog> {
    pub(crate) key: Arc<str>,
    pub(crate) feed: TopicFeed<L>,
    /// Where the client's cursor placed it.
    pub(crate) position: Option<EventId>,
    pub(crate) owed_gap: OwedGap,
}

struct Many<L: EventLog> {
    keys: Vec<Arc<str>>,
    feeds: Vec<TopicFeed<L>>,
    /// Each topic's position as the client knows it: its cursor's (or where its subscription
    /// started), then each delivery's.
    positions: Vec<Option<EventId>>,
    /// Topics whose client must first hear of a gap.
    owed_gaps: Vec<OwedGap>,
    /// Topics read to their end (finished logs).
    finished: Vec<bool>,
    /// The topic looked at first next time: the one after the last that delivered.
    next: usize,
    reset_event: Arc<str>,
    topic_in_type: bool,
}

impl<L: EventLog> TopicStream<L> {
    pub(crate) fn one(feed: TopicFeed<L>, owed_gap: OwedGap) -> Self {
        TopicStream {
            inner: Inner::One(feed, owed_gap),
        }
    }

    pub(crate) fn many(topics: Vec<Member<L>>, config: &StreamConfig) -> Self {
        let mut many = Many {
            keys: Vec::with_capacity(topics.len()),
            feeds: Vec::with_capacity(topics.len()),
            positions: Vec::with_capacity(topics.len()),
            owed_gaps: Vec::with_capacity(topics.len()),
            finished: vec![false; topics.len()],
            next: 0,
            reset_event: Arc::clone(&config.reset_event),
            topic_in_type: config.topic_names == TopicNames::Prefixed,
        };
        for topic in topics {
            // Without a cursor, where the subscription starts; a subscription held while its
            // backend is away names its position later, by a checkpoint.
            many.positions
                .push(topic.position.or_else(|| topic.feed.position()));
            many.keys.push(topic.key);
            many.feeds.push(topic.feed);
            many.owed_gaps.push(topic.owed_gap);
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
                        .with_topic(Arc::clone(&self.keys[topic]), self.topic_in_type),
                )
            }
            Delivery::Gap(position) => {
                if position.is_some() {
                    self.positions[topic] = position;
                }
                self.reset(topic)
            }
            Delivery::Checkpoint(position) => {
                self.positions[topic] = Some(position);
                Delivery::Checkpoint(self.cursor())
            }
        }
    }

    /// The notice that `topic` lost the client's position: an event of the reset type whose
    /// data is the topic's key (its type never carries the topic, so one listener hears
    /// every topic's reset).
    fn reset(&self, topic: usize) -> Delivery {
        let key = &self.keys[topic];
        let reset = Event::new(&**key);
        let reset = reset.clone().with_name(&*self.reset_event).unwrap_or(reset);
        Delivery::Event(
            reset
                .with_event_id(self.cursor())
                .with_topic(Arc::clone(key), false)
                .marking_gap(),
        )
    }

    fn poll_delivery(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery, FeedError<L>>>> {
        if let Some(topic) = self.owed_gaps.iter().position(|owed| *owed) {
            self.owed_gaps[topic] = false;
            if self.positions[topic].is_none() {
                self.positions[topic] = self.feeds[topic].position();
            }
            return Poll::Ready(Some(Ok(self.reset(topic))));
        }
        let count = self.feeds.len();
        for offset in 0..count {
            let topic = (self.next + offset) % count;
            if self.finished[topic] {
                continue;
            }
            match Pin::new(&mut self.feeds[topic]).poll_delivery(cx) {
                Poll::Ready(Some(Ok(delivery))) => {
                    self.next = (topic + 1) % count;
                    return Poll::Ready(Some(Ok(self.tag(topic, delivery))));
                }
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                // A finished topic is read to its end: the others go on.
                Poll::Ready(None) if self.feeds[topic].is_finished() => self.finished[topic] = true,
                // One topic's end (its access expired) ends the stream: the client comes
                // back for all of them.
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {}
            }
        }
        match self.finished.iter().all(|finished| *finished) {
            true => Poll::Ready(None),
            false => Poll::Pending,
        }
    }

    /// Whether every topic is read to its end and nothing is owed.
    fn is_finished(&self) -> bool {
        !self.owed_gaps.iter().any(|owed| *owed)
            && self
                .finished
                .iter()
                .zip(&self.feeds)
                .all(|(done, feed)| *done || feed.is_finished())
    }
}

impl<L: EventLog> EventFeed for TopicStream<L> {
    type Error = FeedError<L>;

    fn poll_delivery(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Delivery, Self::Error>>> {
        match &mut self.get_mut().inner {
            Inner::One(feed, owed_gap) if *owed_gap => {
                *owed_gap = false;
                Poll::Ready(Some(Ok(Delivery::Gap(feed.position()))))
            }
            Inner::One(feed, _) => Pin::new(feed).poll_delivery(cx),
            Inner::Many(many) => many.poll_delivery(cx),
        }
    }

    fn poll_encoded(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut bytes::BytesMut,
        max_bytes: usize,
    ) -> Poll<Option<Result<Encoded, Self::Error>>> {
        match &mut self.get_mut().inner {
            Inner::One(feed, false) => Pin::new(feed).poll_encoded(cx, out, max_bytes),
            // The gap comes first, through `poll_delivery`.
            Inner::One(_, true) => Poll::Ready(Some(Ok(Encoded::NONE))),
            // Each event gets this stream's own id: no shared bytes to copy.
            Inner::Many(_) => Poll::Ready(Some(Ok(Encoded::NONE))),
        }
    }

    fn position(&self) -> Option<EventId> {
        match &self.inner {
            Inner::One(feed, _) => feed.position(),
            Inner::Many(many) => Some(many.cursor()),
        }
    }

    fn honours_cursor(&self) -> bool {
        true
    }

    fn is_finished(&self) -> bool {
        match &self.inner {
            Inner::One(feed, owed_gap) => !owed_gap && feed.is_finished(),
            Inner::Many(many) => many.is_finished(),
        }
    }
}

impl<L: EventLog> fmt::Debug for TopicStream<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::One(feed, _) => f.debug_tuple("TopicStream").field(feed).finish(),
            Inner::Many(many) => f
                .debug_struct("TopicStream")
                .field("topics", &many.keys)
                .finish_non_exhaustive(),
        }
    }
}
