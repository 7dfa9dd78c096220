//! axum integration (feature `axum`): extractors and `IntoResponse`.
//!
//! The [`StreamRequest`] extractor takes its [`StreamConfig`] from the router's state, the
//! way axum passes everything else: a state that lacks one does not compile, so a forgotten
//! configuration (and with it the shutdown handle) cannot fall back to defaults unnoticed.
//!
//! ```
//! use axum::extract::{FromRef, State};
//! use axum::{response::IntoResponse, routing::get, Router};
//! use tower_eventstream::{MemoryLog, Shutdown, StreamConfig, StreamRequest};
//!
//! #[derive(Clone)]
//! struct AppState {
//!     log: MemoryLog,
//!     events: StreamConfig,
//! }
//!
//! impl FromRef<AppState> for MemoryLog {
//!     fn from_ref(state: &AppState) -> Self {
//!         state.log.clone()
//!     }
//! }
//!
//! impl FromRef<AppState> for StreamConfig {
//!     fn from_ref(state: &AppState) -> Self {
//!         state.events.clone()
//!     }
//! }
//!
//! async fn events(State(log): State<MemoryLog>, request: StreamRequest) -> impl IntoResponse {
//!     request.serve(&log).await
//! }
//!
//! let shutdown = Shutdown::new();
//! let state = AppState { log: MemoryLog::new(), events: StreamConfig::default().shutdown(shutdown) };
//! let app: Router = Router::new().route("/events", get(events)).with_state(state);
//! ```

use std::sync::Arc;

use axum_core::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;

use crate::respond::text_response;
use crate::{
    CursorError, LastEventId, RequestError, StreamConfig, StreamRequest, SubscribeError,
    DEFAULT_MAX_CURSOR_LEN,
};

/// Extracts the negotiated transport, cursor and wait, following the [`StreamConfig`] of the
/// router's state (`StreamConfig: FromRef<S>`; a router whose state *is* a `StreamConfig`
/// qualifies). A malformed request is rejected with `400` and the reason.
impl<S> FromRequestParts<S> for StreamRequest
where
    S: Send + Sync,
    StreamConfig: FromRef<S>,
{
    type Rejection = RequestError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        StreamRequest::from_parts(parts, Arc::new(StreamConfig::from_ref(state)))
    }
}

/// Extracts the cursor from `Last-Event-ID` or `lastEventId` (at most
/// [`DEFAULT_MAX_CURSOR_LEN`] bytes; [`StreamRequest`] follows the configured limit); rejects a
/// request without one (use `Option<LastEventId>` to accept both).
impl<S: Send + Sync> FromRequestParts<S> for LastEventId {
    type Rejection = LastEventIdRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match LastEventId::from_request_parts(parts, DEFAULT_MAX_CURSOR_LEN) {
            Ok(Some(cursor)) => Ok(cursor),
            Ok(None) => Err(LastEventIdRejection::Missing),
            Err(error) => Err(LastEventIdRejection::Invalid(error)),
        }
    }
}

/// Why the [`LastEventId`] extractor refused a request; answered with `400` and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LastEventIdRejection {
    /// Neither a `Last-Event-ID` header nor a `lastEventId` query parameter.
    Missing,
    /// The cursor is malformed.
    Invalid(CursorError),
}

impl std::fmt::Display for LastEventIdRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LastEventIdRejection::Missing => {
                f.write_str("a Last-Event-ID header or lastEventId query parameter is required")
            }
            LastEventIdRejection::Invalid(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for LastEventIdRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LastEventIdRejection::Missing => None,
            LastEventIdRejection::Invalid(error) => Some(error),
        }
    }
}

impl IntoResponse for LastEventIdRejection {
    fn into_response(self) -> Response {
        if let LastEventIdRejection::Invalid(_) = self {
            crate::measure::refused(crate::measure::Refused::BadCursor);
        }
        text_response::<crate::feed::NoEvents>(StatusCode::BAD_REQUEST, self).into_response()
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for LastEventId {
    type Rejection = CursorError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
        LastEventId::from_request_parts(parts, DEFAULT_MAX_CURSOR_LEN)
    }
}

impl IntoResponse for CursorError {
    fn into_response(self) -> Response {
        RequestError::Cursor(self).into_response()
    }
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        crate::measure::refused_request(&self);
        text_response::<crate::feed::NoEvents>(StatusCode::BAD_REQUEST, self).into_response()
    }
}

/// `400` for a cursor the log could not have issued, `503` with `Retry-After` when the log is
/// unavailable. That suits a script, not a browser: an `EventSource` closes for good on a
/// `503`, so SSE handlers answer with [`StreamRequest::serve`], which holds the stream instead.
impl<E: std::error::Error> IntoResponse for SubscribeError<E> {
    fn into_response(self) -> Response {
        subscribe_error_response::<crate::feed::NoEvents, E>(self).into_response()
    }
}

/// The answer to a failed subscription when the transport is unknown: `400`, or `503` with
/// `Retry-After` (what a script can act on; SSE handlers use [`StreamRequest::serve`]).
fn subscribe_error_response<S, E: std::error::Error>(
    error: SubscribeError<E>,
) -> http::Response<crate::EventStreamBody<S>> {
    match error {
        SubscribeError::InvalidCursor(error) => {
            crate::measure::refused(crate::measure::Refused::BadCursor);
            crate::service::bad_request(RequestError::Cursor(error))
        }
        SubscribeError::Backend(error) => {
            crate::measure::refused(crate::measure::Refused::BackendUnavailable);
            crate::trace::warn_event!("event log unavailable", error = %error);
            crate::failure::come_back_later(
                crate::Transport::LongPoll,
                crate::DEFAULT_RETRY,
                format_args!("event log unavailable: {error}"),
            )
        }
    }
}
