//! [`TopicError`]: why a topic could not be read or written, and what each answers.

use std::fmt;
use std::time::Duration;

use http::Response;

use super::access::Refusal;
use super::key::TopicKeyError;
use crate::failure::come_back_later;
use crate::log::AppendError;
use crate::measure::{self, Refused};
use crate::respond::text_response;
use crate::{CursorError, EventStreamBody, StreamRequest, Transport};

/// Why a topic could not be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum TopicError<E> {
    /// The key is not a topic key (`400`).
    InvalidKey(TopicKeyError),
    /// The client's cursor is not one this topic's log could have issued (`400`).
    InvalidCursor(CursorError),
    /// The authorization hook refused (`401` or `403`; passing when
    /// [`Refusal::unavailable`]).
    Refused(Refusal),
    /// As many topics as allowed are live; a new one is refused until some are evicted (a
    /// passing refusal: `503` + `Retry-After`, for SSE a `retry:` hint and a clean end).
    TooManyTopics {
        /// The configured bound.
        limit: usize,
    },
    /// The topic has as many subscribers as allowed (passing, as above).
    TopicFull {
        /// The configured bound.
        limit: usize,
    },
    /// The registry has as many subscribers in total as allowed (passing, as above).
    Full {
        /// The configured bound.
        limit: usize,
    },
    /// No such topic: the registry makes topics only when asked to
    /// ([`TopicsBuilder::created_explicitly`](super::TopicsBuilder::created_explicitly)), and
    /// this one was never created or was evicted (`404`, final for a browser).
    NotFound,
    /// [`Topics::create`](super::Topics::create) of a topic that is live (`409`).
    AlreadyExists,
    /// The topic is finished: nothing can be appended to it (`409`).
    Finished,
    /// An append's idempotency key was used, within its window, for another event (`422`;
    /// see [`Topics::append_once`](super::Topics::append_once)).
    KeyReused,
    /// The topic's log failed (a passing fault of its backend).
    Backend(E),
}

impl<E: fmt::Display> fmt::Display for TopicError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicError::InvalidKey(error) => error.fmt(f),
            TopicError::InvalidCursor(error) => error.fmt(f),
            TopicError::Refused(refusal) => refusal.fmt(f),
            TopicError::TooManyTopics { limit } => {
                write!(f, "too many topics (at most {limit} live); try again later")
            }
            TopicError::TopicFull { limit } => {
                write!(f, "this topic has its {limit} subscribers; try again later")
            }
            TopicError::Full { limit } => {
                write!(f, "the server has its {limit} subscribers; try again later")
            }
            TopicError::NotFound => f.write_str("no such topic"),
            TopicError::AlreadyExists => f.write_str("this topic exists already"),
            TopicError::Finished => f.write_str("this topic is finished: nothing can be appended to it"),
            TopicError::KeyReused => {
                f.write_str("this idempotency key was used for another event; use a new key for a new event")
            }
            TopicError::Backend(error) => write!(f, "event log unavailable: {error}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for TopicError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TopicError::InvalidKey(error) => Some(error),
            TopicError::InvalidCursor(error) => Some(error),
            TopicError::Refused(refusal) => Some(refusal),
            TopicError::Backend(error) => Some(error),
            _ => None,
        }
    }
}

impl<E> From<AppendError<E>> for TopicError<E> {
    fn from(error: AppendError<E>) -> Self {
        match error {
            AppendError::Finished => TopicError::Finished,
            AppendError::Backend(error) => TopicError::Backend(error),
            AppendError::KeyReused => TopicError::KeyReused,
        }
    }
}

impl<E: fmt::Display> TopicError<E> {
    /// The answer to `request` by the crate's failure rule: the client's fault and a refusal
    /// are final (`400`, `401`, `403`); a limit or a backend fault is passing, so a browser
    /// is told to come back rather than closed for good.
    pub(crate) fn answer<S>(&self, request: &StreamRequest) -> Response<EventStreamBody<S>> {
        let retry = request.config().retry.unwrap_or(crate::DEFAULT_RETRY);
        self.answer_on(request.transport(), retry)
    }

    /// The answer on `transport`, a passing refusal hinting `retry` (a `POST` is answered as
    /// a long poll is: statuses, `503` + `Retry-After`).
    pub(crate) fn answer_on<S>(&self, transport: Transport, retry: Duration) -> Response<EventStreamBody<S>> {
        match self {
            TopicError::InvalidKey(_) => text_response(http::StatusCode::BAD_REQUEST, self),
            TopicError::NotFound => text_response(http::StatusCode::NOT_FOUND, self),
            TopicError::AlreadyExists | TopicError::Finished => {
                text_response(http::StatusCode::CONFLICT, self)
            }
            TopicError::KeyReused => text_response(http::StatusCode::UNPROCESSABLE_ENTITY, self),
            TopicError::InvalidCursor(_) => {
                measure::refused(Refused::BadCursor);
                text_response(http::StatusCode::BAD_REQUEST, self)
            }
            TopicError::Refused(refusal) => refusal.answer(transport, retry),
            _ => {
                measure::refused(match self {
                    TopicError::Backend(_) => Refused::BackendUnavailable,
                    _ => Refused::Limit,
                });
                crate::trace::debug_event!("topic refused a request for now", reason = %self);
                come_back_later(transport, retry, self)
            }
        }
    }
}
