//! What an authorization hook decides for one client and topic.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{Response, StatusCode};

use crate::failure::come_back_later;
use crate::measure::{self, Refused};
use crate::respond::text_response;
use crate::{Event, EventStreamBody, Transport};

/// Which events of a topic one subscriber sees.
pub(crate) type Filter = Arc<dyn Fn(&Event) -> bool + Send + Sync>;

/// What a client may do with a topic: read it (until when), and which of its events it sees.
///
/// ```
/// use std::time::Duration;
/// use tower_eventstream::Access;
///
/// // A direct message is seen by its recipient only; the token expires in ten minutes.
/// let access = Access::allow()
///     .for_at_most(Duration::from_secs(600))
///     .filter(|event| event.name() != Some("direct") || event.data().starts_with("to:ada "));
/// # let _ = access;
/// ```
#[derive(Clone, Default)]
pub struct Access {
    pub(crate) for_at_most: Option<Duration>,
    pub(crate) filter: Option<Filter>,
}

impl Access {
    /// Every event, for as long as the client stays.
    pub fn allow() -> Self {
        Access::default()
    }

    /// The stream ends after `limit` (when the client's credential expires), with a
    /// `retry:` hint: the browser comes back and is checked again.
    pub fn for_at_most(mut self, limit: Duration) -> Self {
        self.for_at_most = Some(limit);
        self
    }

    /// Only the events `visible` accepts reach this client. Its cursor still moves past the
    /// others (an SSE checkpoint, the long poll's `lastEventId`), so resuming never replays
    /// and never loses one. Other subscribers pay nothing for it.
    pub fn filter(mut self, visible: impl Fn(&Event) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(Arc::new(visible));
        self
    }
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access")
            .field("for_at_most", &self.for_at_most)
            .field("filtered", &self.filter.is_some())
            .finish()
    }
}

/// A refusal by an authorization hook, with a reason for the client: final (`401`, `403`: a
/// browser's `EventSource` stops for good, as it should) or passing
/// ([`unavailable`](Refusal::unavailable): the check cannot be made now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) reason: String,
}

impl Refusal {
    /// `401 Unauthorized`: no credential, or one that is not valid.
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            reason: reason.into(),
        }
    }

    /// `403 Forbidden`: a valid credential that may not read this topic.
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Refusal {
            status: StatusCode::FORBIDDEN,
            reason: reason.into(),
        }
    }

    /// The credential cannot be checked now (the session store is unreachable): a passing
    /// refusal, answered as a passing fault is. A long poll gets `503` + `Retry-After`; an
    /// SSE client a `200` stream with a `retry:` hint and a clean end, so the browser comes
    /// back instead of closing for good.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            reason: reason.into(),
        }
    }

    /// The status a long poll gets (`401`, `403`, or `503` for a passing refusal, which SSE
    /// answers with `200` and a `retry:` hint).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Whether the client may come back and succeed without changing anything.
    pub fn is_passing(&self) -> bool {
        self.status == StatusCode::SERVICE_UNAVAILABLE
    }

    /// The answer by the crate's failure rule, on `transport` with the `retry` hint of a
    /// passing refusal.
    pub(crate) fn answer<S>(&self, transport: Transport, retry: Duration) -> Response<EventStreamBody<S>> {
        if self.is_passing() {
            measure::refused(Refused::BackendUnavailable);
            return come_back_later(transport, retry, self);
        }
        measure::refused(Refused::Auth);
        text_response(self.status, self)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Refusal {}
