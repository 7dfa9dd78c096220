//! What an authorization hook decides for one client and topic.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use crate::Event;

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

/// A deliberate, permanent refusal by the authorization hook: `401` or `403` (a browser's
/// `EventSource` stops for good, as it should), with a reason for the client.
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

    /// The status it is answered with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Refusal {}
