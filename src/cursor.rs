//! The client's position: `Last-Event-ID` header or `lastEventId` query parameter.

use std::fmt;

use http::request::Parts;
use http::HeaderMap;

use crate::request::query_param;

/// The header an `EventSource` sends on reconnect.
pub const LAST_EVENT_ID_HEADER: &str = "last-event-id";

/// The default longest cursor accepted, in bytes.
pub const DEFAULT_MAX_CURSOR_LEN: usize = 256;

/// A position sent by a client, checked for shape only (short, visible ASCII).
///
/// Whether the log could have issued it is for the log to say when subscribing.
///
/// ```
/// use tower_eventstream::LastEventId;
/// assert_eq!(LastEventId::parse("1a2b3c4d-7").unwrap().as_str(), "1a2b3c4d-7");
/// assert!(LastEventId::parse("bad\nid").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LastEventId(Box<str>);

impl LastEventId {
    /// Checks a cursor against the default limits.
    pub fn parse(raw: &str) -> Result<Self, CursorError> {
        Self::parse_bytes(raw.as_bytes(), DEFAULT_MAX_CURSOR_LEN)
    }

    /// Checks raw bytes (as they come in a header) against `max_len`.
    pub fn parse_bytes(raw: &[u8], max_len: usize) -> Result<Self, CursorError> {
        if raw.len() > max_len {
            return Err(CursorError::TooLong {
                len: raw.len(),
                max: max_len,
            });
        }
        if raw.is_empty() {
            return Err(CursorError::Empty);
        }
        if let Some(&byte) = raw.iter().find(|b| !b.is_ascii_graphic()) {
            return Err(CursorError::InvalidByte { byte });
        }
        // Visible ASCII is UTF-8.
        let text = std::str::from_utf8(raw).map_err(|_| CursorError::InvalidByte { byte: 0x80 })?;
        Ok(LastEventId(text.into()))
    }

    /// The cursor as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Reads the cursor of a request: the `Last-Event-ID` header wins over the `lastEventId`
    /// query parameter. `Ok(None)` when neither is present; an empty header counts as absent,
    /// since that is what an `EventSource` that has seen no id sends.
    pub fn from_request_parts(parts: &Parts, max_len: usize) -> Result<Option<Self>, CursorError> {
        Self::from_headers_and_query(&parts.headers, parts.uri.query(), max_len)
    }

    pub(crate) fn from_headers_and_query(
        headers: &HeaderMap,
        query: Option<&str>,
        max_len: usize,
    ) -> Result<Option<Self>, CursorError> {
        let mut values = headers.get_all(LAST_EVENT_ID_HEADER).iter();
        if let Some(value) = values.next() {
            if values.next().is_some() {
                return Err(CursorError::Repeated);
            }
            // An empty header is what an EventSource that has seen no id sends: the query decides.
            if !value.is_empty() {
                return Self::parse_bytes(value.as_bytes(), max_len).map(Some);
            }
        }
        match query_param(query, "lastEventId") {
            None => Ok(None),
            Some(Err(())) => Err(CursorError::BadEncoding),
            Some(Ok(value)) if value.is_empty() => Ok(None),
            Some(Ok(value)) => Self::parse_bytes(&value, max_len).map(Some),
        }
    }
}

/// The cursor a client holds after an event or checkpoint with this id: what a test or an
/// in-process client passes to [`EventLog::subscribe`](crate::EventLog::subscribe).
///
/// ```
/// use tower_eventstream::{Event, LastEventId, MemoryLog};
///
/// let log = MemoryLog::new();
/// let stored = log.push(Event::new("hello")).unwrap();
/// let cursor = LastEventId::try_from(stored.id().unwrap()).unwrap();
/// assert_eq!(cursor.as_str(), stored.id().unwrap().as_str());
/// ```
impl TryFrom<&crate::EventId> for LastEventId {
    type Error = CursorError;

    /// Fails where a browser could not send the id back: empty, longer than the default
    /// limit, or not visible ASCII.
    fn try_from(id: &crate::EventId) -> Result<Self, CursorError> {
        Self::parse(id.as_str())
    }
}

impl fmt::Debug for LastEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for LastEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a client's cursor was refused; answered with `400 Bad Request`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CursorError {
    /// Longer than the configured maximum.
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// Present but empty where a value was required.
    Empty,
    /// Holds a byte that is not visible ASCII (a control character, a space, or non-ASCII).
    InvalidByte {
        /// The first such byte.
        byte: u8,
    },
    /// The query parameter's percent-encoding is broken.
    BadEncoding,
    /// Several `Last-Event-ID` headers were sent.
    Repeated,
    /// Well-formed text, but not a position this log could have issued.
    Unknown {
        /// What is wrong with it, for the client.
        reason: &'static str,
    },
}

impl fmt::Display for CursorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CursorError::TooLong { len, max } => {
                write!(f, "last event id is {len} bytes long; at most {max} are accepted")
            }
            CursorError::Empty => f.write_str("last event id is empty"),
            CursorError::InvalidByte { byte } => write!(
                f,
                "last event id contains byte 0x{byte:02x}; only visible ASCII is accepted"
            ),
            CursorError::BadEncoding => {
                f.write_str("lastEventId query parameter is not valid percent-encoding")
            }
            CursorError::Repeated => f.write_str("more than one Last-Event-ID header"),
            CursorError::Unknown { reason } => {
                write!(f, "last event id was not issued by this server: {reason}")
            }
        }
    }
}

impl std::error::Error for CursorError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(header: Option<&[u8]>, query: Option<&str>) -> Result<Option<LastEventId>, CursorError> {
        let mut headers = HeaderMap::new();
        if let Some(value) = header {
            headers.insert(
                LAST_EVENT_ID_HEADER,
                http::HeaderValue::from_bytes(value).unwrap(),
            );
        }
        LastEventId::from_headers_and_query(&headers, query, DEFAULT_MAX_CURSOR_LEN)
    }

    #[test]
    fn header_wins_over_query() {
        let got = from(Some(b"a-1"), Some("lastEventId=b-2")).unwrap().unwrap();
        assert_eq!(got.as_str(), "a-1");
        let got = from(None, Some("x=1&lastEventId=b%2D2")).unwrap().unwrap();
        assert_eq!(got.as_str(), "b-2");
    }

    #[test]
    fn refuses_bad_shapes() {
        assert!(matches!(
            from(Some(&[b'a'; 300]), None),
            Err(CursorError::TooLong { len: 300, .. })
        ));
        assert!(matches!(
            from(Some("é".as_bytes()), None),
            Err(CursorError::InvalidByte { .. })
        ));
        assert!(matches!(
            from(None, Some("lastEventId=a%0Ab")),
            Err(CursorError::InvalidByte { byte: b'\n' })
        ));
        assert!(matches!(
            from(None, Some("lastEventId=a%zz")),
            Err(CursorError::BadEncoding)
        ));
        assert!(matches!(
            from(None, Some("lastEventId=a%+A")),
            Err(CursorError::BadEncoding)
        ));
        assert_eq!(from(Some(b""), None), Ok(None));
        assert_eq!(from(None, Some("lastEventId=")), Ok(None));
    }
}
