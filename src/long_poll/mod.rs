//! The long-poll and short-poll transport: JSON answers held until an event exists.
//!
//! The answer is `200 application/json`:
//! `{"events":[{"id":"…","event":"…","data":"…"}],"lastEventId":"…","reset":false}`.

mod future;
mod layer;

pub use future::LongPollFuture;
pub use layer::LongPollLayer;

use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderValue, Response};

use crate::event::push_json_string;
use crate::{Event, EventStreamBody};

pub(crate) fn headers<B>(response: &mut Response<B>) {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// The JSON answer; each event's object is encoded once and shared between answers.
pub(crate) fn encode(events: &[Event], last_event_id: &str, reset: bool) -> Bytes {
    let objects: usize = events.iter().map(|e| e.to_json_bytes().len() + 1).sum();
    let mut out = BytesMut::with_capacity(48 + objects + last_event_id.len());
    out.put_slice(b"{\"events\":[");
    for (n, event) in events.iter().enumerate() {
        if n > 0 {
            out.put_slice(b",");
        }
        out.put_slice(&event.to_json_bytes());
    }
    let mut tail = String::with_capacity(32 + last_event_id.len());
    tail.push_str("],\"lastEventId\":");
    push_json_string(&mut tail, last_event_id);
    tail.push_str(if reset {
        ",\"reset\":true}"
    } else {
        ",\"reset\":false}"
    });
    out.put_slice(tail.as_bytes());
    out.freeze()
}

pub(crate) fn response<S>(
    events: &[Event],
    last_event_id: &str,
    reset: bool,
) -> Response<EventStreamBody<S>> {
    let mut response = Response::new(EventStreamBody::complete(encode(events, last_event_id, reset)));
    headers(&mut response);
    response
}
