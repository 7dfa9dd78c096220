//! Events, their ids and names, and their SSE wire encoding.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;

use crate::transport::wire::{self, normalize_line_breaks};

/// Why an event id, an event name or a comment was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventError {
    /// The id contains CR, LF or NUL, which the SSE wire format cannot carry in an `id:` field.
    InvalidId {
        /// The character that made the id unusable.
        found: char,
    },
    /// The event name contains CR, LF or NUL, which SSE cannot carry in an `event:` field.
    InvalidName {
        /// The character that made the name unusable.
        found: char,
    },
    /// The event name is empty; an unnamed event is the default `message` event, leave the name unset.
    EmptyName,
    /// JSON serialisation of the event data failed.
    #[cfg(feature = "json")]
    Json(String),
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventError::InvalidId { found } => write!(
                f,
                "event id contains {}, which SSE cannot carry in an id; use an id without CR, LF or NUL",
                char_name(*found)
            ),
            EventError::InvalidName { found } => write!(
                f,
                "event name contains {}, which SSE cannot carry in an event name; use a name without CR, LF or NUL",
                char_name(*found)
            ),
            EventError::EmptyName => f.write_str(
                "event name is empty; leave the name unset for the default `message` event",
            ),
            #[cfg(feature = "json")]
            EventError::Json(reason) => write!(f, "event data could not be serialised to JSON: {reason}"),
        }
    }
}

impl std::error::Error for EventError {}

fn char_name(c: char) -> &'static str {
    match c {
        '\r' => "a carriage return (CR)",
        '\n' => "a line feed (LF)",
        '\0' => "a NUL character",
        _ => "a forbidden character",
    }
}

fn forbidden_in_field(value: &str) -> Option<char> {
    value.chars().find(|c| matches!(c, '\r' | '\n' | '\0'))
}

/// An event id: any text without CR, LF or NUL.
///
/// Ids are opaque to clients. Logs issue their own ids (see [`MemoryLog`](crate::MemoryLog)).
///
/// ```
/// use tower_eventstream::EventId;
/// assert!(EventId::new("42").is_ok());
/// assert!(EventId::new("4\n2").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EventId(Arc<str>);

impl EventId {
    /// Checks `id` and wraps it; CR, LF and NUL are refused.
    pub fn new(id: impl AsRef<str>) -> Result<Self, EventError> {
        let id = id.as_ref();
        match forbidden_in_field(id) {
            Some(found) => Err(EventError::InvalidId { found }),
            None => Ok(EventId(Arc::from(id))),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for EventId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// One server-sent event: optional id, name and retry hint, data and a comment.
///
/// An `Event` is cheap to clone (it is reference counted) and is encoded to its wire bytes
/// at most once, however many subscribers it is sent to.
///
/// Data may contain any text. Line breaks in it (CRLF, LF, or a lone CR) each become one
/// `data:` line, so a client reassembles the data with every line break as LF: a lone CR or
/// a CRLF in the data arrives as LF. [`Event::data`] returns the data in that normalised form.
///
/// ```
/// use tower_eventstream::Event;
///
/// let event = Event::new("line one\r\nline two")
///     .with_name("greeting")?
///     .with_id("7")?;
/// assert_eq!(event.data(), "line one\nline two");
/// assert_eq!(
///     &event.to_bytes()[..],
///     b"id: 7\nevent: greeting\ndata: line one\ndata: line two\n\n"
/// );
/// # Ok::<(), tower_eventstream::EventError>(())
/// ```
#[derive(Clone)]
pub struct Event(Arc<EventInner>);

#[derive(Clone, Default)]
struct EventInner {
    id: Option<EventId>,
    name: Option<Box<str>>,
    data: Option<Box<str>>,
    retry: Option<Duration>,
    comment: Option<Box<str>>,
    /// The topic of a multiplexed stream it was delivered on.
    topic: Option<Arc<str>>,
    /// Whether SSE sends the topic in the event type (`<topic>:<name>`).
    topic_in_type: bool,
    /// A multiplexed stream's notice that one topic lost the client's position: a long poll
    /// answers `"reset": true` and keeps the other topics' events.
    marks_gap: bool,
    sse: OnceLock<Bytes>,
    json: OnceLock<Bytes>,
    /// When a log took it in (with the `metrics` feature only): the delay to the frame that
    /// carries it is measured from here, with no clock read per subscriber.
    #[cfg(feature = "metrics")]
    appended_at: Option<crate::measure::Stamp>,
}

/// An event carrying the text as its data, as [`Event::new`] makes it.
impl From<String> for Event {
    fn from(data: String) -> Self {
        Event::new(data)
    }
}

/// An event carrying the text as its data, as [`Event::new`] makes it.
impl From<&str> for Event {
    fn from(data: &str) -> Self {
        Event::new(data)
    }
}

impl Event {
    /// An event carrying `data` (normalised: every CRLF and lone CR becomes LF).
    pub fn new(data: impl AsRef<str>) -> Self {
        Event(Arc::new(EventInner {
            data: Some(normalize_line_breaks(data.as_ref()).into()),
            ..EventInner::default()
        }))
    }

    /// An event with nothing in it yet; without data it carries only its id, retry hint or
    /// comment, and clients dispatch no message for it.
    pub fn empty() -> Self {
        Event(Arc::new(EventInner::default()))
    }

    /// An event whose data is `value` serialised as JSON.
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, EventError> {
        serde_json::to_string(value)
            .map(Event::new)
            .map_err(|e| EventError::Json(e.to_string()))
    }

    fn edit(&mut self) -> &mut EventInner {
        let inner = Arc::make_mut(&mut self.0);
        // Any cached encoding describes the event before this edit.
        inner.sse = OnceLock::new();
        inner.json = OnceLock::new();
        inner
    }

    /// Sets the id; CR, LF and NUL are refused.
    pub fn with_id(mut self, id: impl AsRef<str>) -> Result<Self, EventError> {
        let id = EventId::new(id)?;
        self.edit().id = Some(id);
        Ok(self)
    }

    /// Sets an id already checked.
    pub fn with_event_id(mut self, id: EventId) -> Self {
        self.edit().id = Some(id);
        self
    }

    /// Sets the event name (the `type` a browser dispatches); CR, LF, NUL and empty names are refused.
    pub fn with_name(mut self, name: impl AsRef<str>) -> Result<Self, EventError> {
        let name = name.as_ref();
        if name.is_empty() {
            return Err(EventError::EmptyName);
        }
        if let Some(found) = forbidden_in_field(name) {
            return Err(EventError::InvalidName { found });
        }
        self.edit().name = Some(name.into());
        Ok(self)
    }

    /// Replaces the data (normalised like [`Event::new`]).
    pub fn with_data(mut self, data: impl AsRef<str>) -> Self {
        self.edit().data = Some(normalize_line_breaks(data.as_ref()).into());
        self
    }

    /// Sets the reconnection delay hint, sent as `retry:` in milliseconds.
    pub fn with_retry(mut self, retry: Duration) -> Self {
        self.edit().retry = Some(retry);
        self
    }

    /// Adds a comment; clients ignore it. Line breaks split it into several comment lines.
    pub fn with_comment(mut self, comment: impl AsRef<str>) -> Self {
        self.edit().comment = Some(comment.as_ref().into());
        self
    }

    /// On a stream of several topics ([`TopicsService`](crate::TopicsService)), the topic this
    /// event belongs to: a long poll sends it as `"topic"`, SSE in the event type
    /// (`<topic>:<name>`, `kitchen:message`) when `in_type`.
    pub(crate) fn with_topic(mut self, topic: Arc<str>, in_type: bool) -> Self {
        let inner = self.edit();
        inner.topic = Some(topic);
        inner.topic_in_type = in_type;
        self
    }

    /// Marks this event as a multiplexed stream's notice of one topic's gap.
    pub(crate) fn marking_gap(mut self) -> Self {
        self.edit().marks_gap = true;
        self
    }

    /// Whether this event is a multiplexed stream's notice of one topic's gap.
    pub(crate) fn marks_gap(&self) -> bool {
        self.0.marks_gap
    }

    /// The topic SSE sends in the event type, if any.
    pub(crate) fn topic_in_type(&self) -> Option<&str> {
        self.0.topic.as_deref().filter(|_| self.0.topic_in_type)
    }

    /// Stamps the time a log took the event in (see `measure`); kept through later edits,
    /// and invisible to equality. Nothing is stored without the `metrics` feature.
    pub(crate) fn stamp_appended(&mut self, at: Option<crate::measure::Stamp>) {
        #[cfg(feature = "metrics")]
        if at.is_some() {
            Arc::make_mut(&mut self.0).appended_at = at;
        }
        #[cfg(not(feature = "metrics"))]
        let _ = at;
    }

    /// When a log took the event in, if stamped (never without the `metrics` feature).
    #[inline(always)]
    pub(crate) fn appended_at(&self) -> Option<crate::measure::Stamp> {
        #[cfg(feature = "metrics")]
        return self.0.appended_at;
        #[cfg(not(feature = "metrics"))]
        None
    }

    /// The topic of a multiplexed stream this event was delivered on, if any.
    pub fn topic(&self) -> Option<&str> {
        self.0.topic.as_deref()
    }

    /// The id, if set.
    pub fn id(&self) -> Option<&EventId> {
        self.0.id.as_ref()
    }

    /// The name, if set; clients treat an unnamed event as `message`.
    pub fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }

    /// The data as a client receives it (line breaks normalised to LF); empty if unset.
    pub fn data(&self) -> &str {
        self.0.data.as_deref().unwrap_or("")
    }

    /// Whether the event carries data (an event without data is not dispatched by clients).
    pub fn has_data(&self) -> bool {
        self.0.data.is_some()
    }

    /// The retry hint, if set.
    pub fn retry(&self) -> Option<Duration> {
        self.0.retry
    }

    /// The comment, if set.
    pub fn comment(&self) -> Option<&str> {
        self.0.comment.as_deref()
    }

    /// The SSE wire bytes of this event, ending with the blank line that dispatches it.
    /// Encoded on first use and shared afterwards.
    pub fn to_bytes(&self) -> Bytes {
        self.encoded().clone()
    }

    /// The cached wire bytes, without touching their reference count (which every
    /// subscriber of a busy log shares).
    pub(crate) fn encoded(&self) -> &Bytes {
        self.0.sse.get_or_init(|| wire::event_block(self))
    }

    /// The long-poll JSON object of this event (`{"id":…,"event":…,"data":…}`), encoded on
    /// first use and shared afterwards.
    pub fn to_json_bytes(&self) -> Bytes {
        self.0.json.get_or_init(|| wire::event_json(self)).clone()
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.0.id)
            .field("name", &self.0.name)
            .field("data", &self.0.data)
            .field("retry", &self.0.retry)
            .field("comment", &self.0.comment)
            .finish()
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (&*self.0, &*other.0);
        a.id == b.id && a.name == b.name && a.data == b.data && a.retry == b.retry && a.comment == b.comment
    }
}

impl Eq for Event {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_line_breaks_in_ids_and_names() {
        assert_eq!(
            Event::new("x").with_id("a\rb").unwrap_err(),
            EventError::InvalidId { found: '\r' }
        );
        assert_eq!(
            Event::new("x").with_name("a\0").unwrap_err(),
            EventError::InvalidName { found: '\0' }
        );
        assert_eq!(Event::new("x").with_name("").unwrap_err(), EventError::EmptyName);
    }

    #[test]
    fn encodes_data_lines_with_a_space_kept() {
        let event = Event::new(" lead\r\n\rend");
        assert_eq!(&event.to_bytes()[..], b"data:  lead\ndata: \ndata: end\n\n");
        assert_eq!(&Event::new("").to_bytes()[..], b"data: \n\n");
    }

    #[test]
    fn editing_drops_the_cached_encoding() {
        let event = Event::new("a");
        let before = event.to_bytes();
        let event = event.with_data("b");
        assert_ne!(before, event.to_bytes());
    }

    #[test]
    fn json_escapes_control_characters() {
        let event = Event::new("q\"\\\u{1}\t").with_id("1").unwrap();
        assert_eq!(
            &event.to_json_bytes()[..],
            br#"{"id":"1","event":"message","data":"q\"\\\u0001\t"}"#
        );
    }
}
