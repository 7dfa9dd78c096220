//! What a request asks to publish, and what it is answered: the settings a
//! [`PublishService`](super::PublishService) makes events with, the idempotency key, and the
//! step after the request head is admitted (read the body, make the event, append, answer).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue, Response, StatusCode};
use http_body::Body;

use super::body::{self, Format, ReadError};
use super::{EVENT_NAME_HEADER, IDEMPOTENCY_KEY_HEADER, IDEMPOTENT_REPLAYED_HEADER};
use crate::event::{Event, EventId};
use crate::log::{Appended, IdempotencyKey, DEFAULT_ONCE_WINDOW};
use crate::request::Transport;
use crate::respond::{text_response, EventStreamBody};
use crate::topics::from_request;
use crate::topics::{Answer, MakeLog, Topics};
use crate::BoxError;

/// The query parameter that names the event of a text body.
const EVENT_NAME_QUERY: &str = "event";

/// How events are made from requests.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) event_name: Option<Box<str>>,
    /// Only `event_name` may be published.
    pub(super) fixed_name: bool,
    /// Lowercase media types; `None`: any.
    pub(super) accept_only: Option<Box<[Box<str>]>>,
    pub(super) body_as_data: bool,
    pub(super) require_data: bool,
    pub(super) max_body_bytes: usize,
    pub(super) window: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            event_name: None,
            fixed_name: false,
            accept_only: None,
            body_as_data: false,
            require_data: false,
            max_body_bytes: super::DEFAULT_MAX_BODY_BYTES,
            window: DEFAULT_ONCE_WINDOW,
        }
    }
}

/// `name`, checked to be an event name.
pub(super) fn checked_name(name: &str) -> Box<str> {
    if let Err(error) = Event::empty().with_name(name) {
        panic!("PublishService: {name:?} is not an event name: {error}");
    }
    name.into()
}

/// A request that may publish, before its body is read.
pub(super) struct Admitted {
    pub(super) topic: String,
    pub(super) once: Option<IdempotencyKey>,
    pub(super) format: Format,
}

/// The request's idempotency key, if it has one.
pub(super) fn idempotency_key(parts: &Parts) -> Result<Option<IdempotencyKey>, String> {
    let mut values = parts.headers.get_all(IDEMPOTENCY_KEY_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("the request has several Idempotency-Key headers; send one".to_owned());
    }
    IdempotencyKey::new(&String::from_utf8_lossy(value.as_bytes()))
        .map(Some)
        .map_err(|error| error.to_string())
}

/// Reads the body, makes the event, appends it and answers.
pub(super) async fn publish<M: MakeLog, B>(
    topics: Topics<M>,
    settings: Arc<Settings>,
    parts: Parts,
    sent: B,
    admitted: Admitted,
) -> Answer<M::Log>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let body = match body::read(sent, settings.max_body_bytes).await {
        Ok(body) => body,
        Err(ReadError::TooLarge) => return too_large(settings.max_body_bytes),
        Err(ReadError::Failed(error)) => {
            return text_response(
                StatusCode::BAD_REQUEST,
                format_args!("the body could not be read: {error}"),
            )
        }
    };
    let event = match settings.event(&parts, admitted.format, &body) {
        Ok(event) => event,
        Err(reason) => return text_response(StatusCode::BAD_REQUEST, reason),
    };
    let appended = match &admitted.once {
        None => topics.append(&admitted.topic, event).await.map(Appended::New),
        Some(key) => {
            topics
                .append_once(&admitted.topic, event, key, settings.window)
                .await
        }
    };
    match appended {
        Ok(appended) => created(appended.id().map_or("", EventId::as_str), appended.is_repeat()),
        Err(error) => error.answer_on(Transport::LongPoll, crate::DEFAULT_RETRY),
    }
}

impl Settings {
    /// The event a request's body asks for, or why it cannot be one (`400`).
    fn event(&self, parts: &Parts, format: Format, body: &[u8]) -> Result<Event, String> {
        let (named, data): (Option<String>, Cow<'_, str>) = match format {
            Format::Text => {
                let text = std::str::from_utf8(body)
                    .map_err(|error| format!("the body must be UTF-8 text: {error}"))?;
                (None, Cow::Borrowed(text))
            }
            #[cfg(feature = "json")]
            Format::Json => {
                let (name, data) = super::json::event(body)?;
                (name, Cow::Owned(data))
            }
        };
        if self.require_data && data.is_empty() {
            return Err("the data is empty: send something to publish".to_owned());
        }
        let event = Event::new(data);
        match self.name(parts, named)? {
            Some(name) => event.with_name(name).map_err(|error| error.to_string()),
            None => Ok(event),
        }
    }

    /// The event's name: the body's, the query's or the header's (all the same if several
    /// are given), else the service's.
    fn name(&self, parts: &Parts, named: Option<String>) -> Result<Option<String>, String> {
        let mut names: Vec<String> = named.into_iter().collect();
        for value in from_request::query_values(parts, EVENT_NAME_QUERY) {
            let value = value.ok().and_then(|bytes| String::from_utf8(bytes).ok());
            names.push(value.ok_or("the query parameter `event` is not percent-encoded UTF-8")?);
        }
        for value in parts.headers.get_all(EVENT_NAME_HEADER) {
            let value =
                std::str::from_utf8(value.as_bytes()).map_err(|_| "the Event-Name header is not UTF-8")?;
            names.push(value.to_owned());
        }
        if let Some(other) = names.iter().find(|name| **name != names[0]) {
            return Err(format!(
                "the request names two events, `{}` and `{other}`; name one",
                names[0]
            ));
        }
        let named = names.into_iter().next();
        match (&self.event_name, named) {
            (Some(fixed), Some(named)) if self.fixed_name && **fixed != *named => Err(format!(
                "this route publishes `{fixed}` events only, not `{named}`"
            )),
            (default, named) => Ok(named.or_else(|| default.as_deref().map(str::to_owned))),
        }
    }
}

/// `413`, with the bound.
pub(super) fn too_large<S>(limit: usize) -> Response<EventStreamBody<S>> {
    text_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        format_args!("the body is larger than {limit} bytes, the most this route takes"),
    )
}

/// `201 Created` with `{"id":"<id>"}`; a repeat says so in `Idempotent-Replayed: true`.
fn created<S>(id: &str, replayed: bool) -> Response<EventStreamBody<S>> {
    let mut json = String::with_capacity(id.len() + 10);
    json.push_str("{\"id\":");
    crate::transport::wire::push_json_string(&mut json, id);
    json.push('}');
    let mut response = Response::new(EventStreamBody::complete(json));
    *response.status_mut() = StatusCode::CREATED;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if replayed {
        headers.insert(IDEMPOTENT_REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    response
}
