//! The SSE transport: `text/event-stream` responses.

mod body;
mod layer;

pub use body::SseBody;
pub use layer::SseLayer;

use http::{header, HeaderValue, Response};

use crate::{EventSource, EventStreamBody, StreamConfig};

/// Response headers of an SSE stream: no hop-by-hop headers, so the same response is valid
/// on HTTP/2; `x-accel-buffering: no` keeps nginx from buffering it.
pub(crate) fn headers<B>(response: &mut Response<B>) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

/// Answers with an SSE stream over `source`.
pub fn response<S: EventSource>(source: S, config: &StreamConfig) -> Response<EventStreamBody<S>> {
    let mut response = Response::new(EventStreamBody::stream(SseBody::new(source, config)));
    headers(&mut response);
    response
}
