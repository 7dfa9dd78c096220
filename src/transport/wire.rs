//! The wire format, all of it: an event's SSE block and long-poll JSON object, the stream's
//! opening, checkpoint, reset and ending blocks, and the long-poll answer.
//!
//! SSE (HTML §9.2): lowercase field names, `name: value` with one space so a value's leading
//! spaces survive, one `data:` line per line of data (CRLF, LF and a lone CR are each one line
//! break), comments as `:` lines, a blank line after each block, `retry:` in milliseconds.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::random::jittered;
use crate::{Event, EventId};

pub(crate) fn event_block(event: &Event) -> Bytes {
    let data = event.has_data().then(|| event.data());
    let mut out = BytesMut::with_capacity(
        32 + data.map_or(0, str::len)
            + event.id().map_or(0, |id| id.as_str().len())
            + event.name().map_or(0, str::len)
            + event.comment().map_or(0, str::len),
    );
    if let Some(comment) = event.comment() {
        for line in split_lines(comment) {
            out.put_slice(b":");
            if !line.is_empty() {
                out.put_slice(b" ");
                out.put_slice(line.as_bytes());
            }
            out.put_slice(b"\n");
        }
    }
    if let Some(retry) = event.retry() {
        write_retry(&mut out, retry);
    }
    if let Some(id) = event.id() {
        put_field(&mut out, b"id", id.as_str());
    }
    match (event.topic_in_type(), event.name()) {
        // A multiplexed stream: `<topic>:<type>`, a type no topic key or plain name clashes with.
        (Some(topic), name) => {
            out.put_slice(b"event: ");
            out.put_slice(topic.as_bytes());
            out.put_slice(b":");
            out.put_slice(name.unwrap_or("message").as_bytes());
            out.put_slice(b"\n");
        }
        (None, Some(name)) => put_field(&mut out, b"event", name),
        (None, None) => {}
    }
    if let Some(data) = data {
        // `data` is already normalised, so LF is the only line break left.
        for line in data.split('\n') {
            put_field(&mut out, b"data", line);
        }
    }
    out.put_slice(b"\n");
    out.freeze()
}

pub(crate) fn event_json(event: &Event) -> Bytes {
    let mut out = String::with_capacity(32 + event.data().len());
    out.push_str("{\"id\":");
    match event.id() {
        Some(id) => push_json_string(&mut out, id.as_str()),
        None => out.push_str("null"),
    }
    out.push_str(",\"event\":");
    push_json_string(&mut out, event.name().unwrap_or("message"));
    if let Some(topic) = event.topic() {
        out.push_str(",\"topic\":");
        push_json_string(&mut out, topic);
    }
    out.push_str(",\"data\":");
    push_json_string(&mut out, event.data());
    out.push('}');
    Bytes::from(out)
}
/// Writes `name: value\n`; the space after the colon is always written, because a parser
/// strips exactly one leading space and a value that starts with one must keep it.
pub(crate) fn put_field(out: &mut BytesMut, name: &[u8], value: &str) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value.as_bytes());
    out.put_slice(b"\n");
}

pub(crate) fn write_retry(out: &mut BytesMut, retry: Duration) {
    let millis = u64::try_from(retry.as_millis()).unwrap_or(u64::MAX);
    out.put_slice(b"retry: ");
    out.put_slice(millis.to_string().as_bytes());
    out.put_slice(b"\n");
}

/// Splits on CRLF, LF and lone CR, the three line breaks of the SSE format.
pub(crate) fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.find(['\r', '\n']) {
            Some(at) => {
                let skip = if current[at..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&current[at + skip..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// Turns every CRLF and lone CR into LF: what an SSE client reassembles from `data:` lines.
pub(crate) fn normalize_line_breaks(text: &str) -> String {
    if !text.contains('\r') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut lines = split_lines(text);
    if let Some(first) = lines.next() {
        out.push_str(first);
    }
    for line in lines {
        out.push('\n');
        out.push_str(line);
    }
    out
}

pub(crate) fn push_json_string(out: &mut String, value: &str) {
    out.push('"');
    let mut start = 0;
    for (at, c) in value.char_indices() {
        let escape: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        out.push_str(&value[start..at]);
        match escape {
            Some(escaped) => out.push_str(escaped),
            None => {
                use std::fmt::Write;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
        start = at + c.len_utf8();
    }
    out.push_str(&value[start..]);
    out.push('"');
}

/// The first bytes of a stream: a comment (so proxies and clients see the stream at once),
/// the `retry:` hint, a checkpoint with the client's position when it is known, and a reset
/// when one is due at once.
pub(crate) fn opening(
    retry: Option<Duration>,
    position: Option<&EventId>,
    checkpoint_event: &str,
    reset_event: Option<&str>,
) -> Bytes {
    let mut out = BytesMut::with_capacity(64);
    out.put_slice(b":ok\n");
    if let Some(retry) = retry {
        write_retry(&mut out, retry);
    }
    match position {
        Some(position) => put_marker(&mut out, Some(position), checkpoint_event),
        None => out.put_slice(b"\n"),
    }
    // A live-only feed tells a client that comes back that it may have missed events.
    if let Some(reset_event) = reset_event {
        put_marker(&mut out, None, reset_event);
    }
    out.freeze()
}

/// The keep-alive comment: the shortest line a parser ignores.
pub(crate) const KEEP_ALIVE: &[u8] = b":\n";

/// A block that reaches no `message` listener: `id` (if any), `event: <name>`, an empty
/// `data:` line. The data line matters: without one a browser dispatches nothing, and
/// Firefox then does not take the id either.
pub(crate) fn put_marker(out: &mut BytesMut, id: Option<&EventId>, name: &str) {
    if let Some(id) = id {
        put_field(out, b"id", id.as_str());
    }
    put_field(out, b"event", name);
    out.put_slice(b"data:\n\n");
}

/// The last block of a stream the server ends while the client should come back: a
/// jittered `retry:` hint, so that clients ended together do not return in one instant.
pub(crate) fn put_ending(out: &mut BytesMut, retry: Option<Duration>, reason: &str) {
    match retry {
        Some(retry) => write_retry(out, jittered(retry)),
        None => {
            out.put_slice(b": ");
            out.put_slice(reason.as_bytes());
            out.put_slice(b"\n");
        }
    }
    out.put_slice(b"\n");
}

/// The JSON answer; each event's object is encoded once and shared between answers.
/// The cursor a plain (live-only) stream hands out when it ends: a client that comes back
/// with it is answered `204 No Content` (see `StreamRequest::respond`).
pub(crate) const END_CURSOR: &str = "end";

/// The long poll's JSON: the events, where to poll from next, whether a gap came, and, once
/// the stream is complete, `"finished":true` (absent otherwise).
pub(crate) fn long_poll_answer(events: &[Event], last_event_id: &str, reset: bool, finished: bool) -> Bytes {
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
        ",\"reset\":true"
    } else {
        ",\"reset\":false"
    });
    tail.push_str(if finished { ",\"finished\":true}" } else { "}" });
    out.put_slice(tail.as_bytes());
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_every_line_break_once() {
        let lines: Vec<_> = split_lines("a\r\nb\rc\nd\r\n").collect();
        assert_eq!(lines, ["a", "b", "c", "d", ""]);
        assert_eq!(normalize_line_breaks("a\r\nb\rc\n"), "a\nb\nc\n");
    }
}
