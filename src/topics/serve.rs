//! Answering requests from topics: one topic, or several in one stream.

use std::sync::Arc;

use http::Response;

use super::cursor;
use super::stream::{self, TopicStream};
use super::{Access, Answer, MakeLog, TopicFeed, Topics};
use crate::respond::text_response;
use crate::{EventId, EventStreamBody, StreamRequest};

impl<M: MakeLog> Topics<M> {
    /// Answers `request` from the topic `key`, as [`StreamRequest::serve`] answers from one
    /// log and by the same failure rule, with `access` applied and the limits enforced. A
    /// cursor of a stream over several topics that names `key` resumes it; one that does not
    /// is a gap (see [`serve_many`](Topics::serve_many)).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_eventstream::{Access, Event, MemoryLog, StreamConfig, StreamRequest, Topics};
    ///
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let rooms = Topics::new(MemoryLog::builder());
    /// let (parts, ()) = http::Request::get("/rooms/lobby/events?timeout=0").body(()).unwrap().into_parts();
    /// let request = StreamRequest::from_parts(&parts, Arc::new(StreamConfig::default())).unwrap();
    /// let response = rooms.serve("lobby", request, Access::allow()).await;
    /// assert_eq!(response.status(), 200);
    /// # });
    /// ```
    pub async fn serve(&self, key: &str, request: StreamRequest, access: Access) -> Answer<M::Log> {
        self.serve_many(vec![(key.to_owned(), access)], request).await
    }

    /// Answers `request` from several topics in one response, each with its own access: their
    /// events interleaved by arrival, each event's id a composite cursor that resumes every
    /// topic exactly (see [`TopicStream`]).
    ///
    /// The client's cursor never starts a topic silently fresh:
    ///
    /// - **Malformed** (not a composite cursor, nor a position the topics' logs could have
    ///   issued): `400` with the reason, as on a stream of one topic.
    /// - **Composite, naming some of the requested topics**: those resume exactly. A
    ///   requested topic it does not name is one the client never followed (the composite
    ///   cursor names every topic that has a position), so it has nothing to resume: it
    ///   starts where a client without a cursor starts. Positions of topics no longer asked
    ///   for are dropped.
    /// - **Not placeable** (a composite cursor naming none of the requested topics, or a
    ///   cursor of one topic's log on a request for several): every requested topic starts
    ///   with a gap, an event of the reset type naming it (a long poll: `"reset": true`),
    ///   then what comes next. A topic's position from another log instance is a gap of that
    ///   topic, followed by its held events.
    ///
    /// The composite cursor must fit in [`StreamConfig::max_cursor_len`](crate::StreamConfig::max_cursor_len)
    /// (256 bytes by default), counting for each topic its key, two separators and 41 bytes
    /// of position (a Redis stream id): 5 topics of 8-character keys by default, about 20
    /// with 1 024 bytes. A request for more is answered `400` with the numbers.
    pub async fn serve_many(&self, topics: Vec<(String, Access)>, request: StreamRequest) -> Answer<M::Log> {
        #[cfg(feature = "metrics")]
        let request = self.registry.label(request, &topics);
        let budget = cursor::budget(topics.iter().map(|(key, _)| key.as_str()));
        if topics.len() > 1 && budget > request.config().max_cursor_len {
            let message = format!(
                "{} topics need a cursor of up to {budget} bytes, more than the limit of {}: ask for fewer topics in one stream",
                topics.len(),
                request.config().max_cursor_len
            );
            return text_response(http::StatusCode::BAD_REQUEST, message);
        }
        let placement =
            match cursor::Placement::new(request.cursor(), topics.iter().map(|(key, _)| key.as_str())) {
                Ok(placement) => placement,
                Err(error) => return bad_cursor(error),
            };
        let retry = request.config().retry.unwrap_or(crate::DEFAULT_RETRY);
        let single = topics.len() == 1;
        let mut members = Vec::with_capacity(topics.len());
        for (key, access) in topics {
            let (log, admission) = match self.registry.admit_to(&key).await {
                Ok(admitted) => admitted,
                Err(error) => return error.answer(&request),
            };
            let start = match placement.start(&key, &log) {
                Ok(start) => start,
                Err(error) => return bad_cursor(error),
            };
            let subscription = match request.open_at(&log, start.cursor()).await {
                Ok(subscription) => subscription,
                Err(answer) => return answer,
            };
            let owed_gap = start.is_gap();
            if owed_gap {
                crate::measure::reset(crate::measure::GapCause::OtherTopics);
            }
            let feed = TopicFeed::new(subscription, admission, access.filter, access.for_at_most, retry);
            let position = start
                .cursor()
                .and_then(|cursor| EventId::new(cursor.as_str()).ok());
            members.push(stream::Member {
                key: Arc::from(key),
                feed,
                position,
                owed_gap,
            });
        }
        let stream = match (single, members.pop()) {
            (true, Some(member)) => TopicStream::one(member.feed, member.owed_gap),
            (_, last) => {
                members.extend(last);
                TopicStream::many(members, request.config())
            }
        };
        request.respond(stream).await
    }
}

fn bad_cursor<S>(error: crate::CursorError) -> Response<EventStreamBody<S>> {
    crate::measure::refused(crate::measure::Refused::BadCursor);
    text_response(http::StatusCode::BAD_REQUEST, error)
}
