//! Event encoding: any id, name, data, retry hint and comment is either refused with the
//! documented error, or its SSE wire bytes parse back, through a parser that follows the
//! WHATWG `text/event-stream` algorithm step by step, to the same event (data compared after
//! CRLF and lone CR become LF). Several events are encoded back to back, so one event's
//! bytes cannot bleed into the next. The long-poll JSON object of each event parses back too.

#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tower_eventstream::{Event, EventError};

#[derive(Arbitrary, Debug)]
struct Spec {
    id: Option<String>,
    name: Option<String>,
    data: Option<String>,
    retry: Option<u64>,
    comment: Option<String>,
}

/// What a spec-following client dispatches.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dispatched {
    event_type: String,
    data: String,
    last_event_id: String,
}

fuzz_target!(|specs: Vec<Spec>| {
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    // The client's state carried over between events: the last event id buffer is never
    // reset by a dispatch, and neither is the reconnection time.
    let mut last_event_id = String::new();
    let mut reconnection_time: Option<u128> = None;

    for spec in specs.iter().take(8) {
        let Some(event) = build(spec) else { continue };
        let bytes = event.to_bytes();
        assert!(
            bytes.ends_with(b"\n\n") || &bytes[..] == b"\n",
            "an event ends with the blank line that dispatches it: {bytes:?}"
        );
        assert_eq!(event.to_bytes(), bytes, "the encoding is stable");
        check_json(&event);

        if let Some(id) = event.id() {
            last_event_id = id.as_str().to_owned();
        }
        if let Some(retry) = event.retry() {
            reconnection_time = Some(retry.as_millis());
        }
        if event.has_data() {
            expected.push(Dispatched {
                event_type: event.name().unwrap_or("message").to_owned(),
                data: event.data().to_owned(),
                last_event_id: last_event_id.clone(),
            });
        }
        wire.extend_from_slice(&bytes);
    }

    let mut client = Client::default();
    client.feed(&wire);
    assert_eq!(
        client.dispatched,
        expected,
        "wire {:?}",
        String::from_utf8_lossy(&wire)
    );
    assert_eq!(client.reconnection_time, reconnection_time);
    assert!(client.line.is_empty(), "the wire ends with a line break");
});

/// Builds the event the way an application would, checking every refusal against the
/// documented rule: ids refuse CR, LF and NUL; names refuse those and the empty name.
fn build(spec: &Spec) -> Option<Event> {
    let mut event = match &spec.data {
        Some(data) => {
            let event = Event::new(data);
            assert_eq!(event.data(), normalise(data));
            assert!(event.has_data());
            event
        }
        None => Event::empty(),
    };
    if let Some(id) = &spec.id {
        match (event.clone().with_id(id), forbidden(id)) {
            (Ok(with_id), None) => {
                assert_eq!(with_id.id().map(|i| i.as_str()), Some(id.as_str()));
                event = with_id;
            }
            (Err(error), Some(found)) => {
                assert_eq!(error, EventError::InvalidId { found });
                assert!(!error.to_string().is_empty());
                return None;
            }
            (result, found) => panic!("id {id:?}: {result:?}, forbidden character {found:?}"),
        }
    }
    if let Some(name) = &spec.name {
        let refusal = if name.is_empty() {
            Some(EventError::EmptyName)
        } else {
            forbidden(name).map(|found| EventError::InvalidName { found })
        };
        match (event.clone().with_name(name), refusal) {
            (Ok(with_name), None) => event = with_name,
            (Err(error), Some(refusal)) => {
                assert_eq!(error, refusal);
                return None;
            }
            (result, refusal) => panic!("name {name:?}: {result:?}, expected {refusal:?}"),
        }
    }
    if let Some(millis) = spec.retry {
        event = event.with_retry(Duration::from_millis(millis));
    }
    if let Some(comment) = &spec.comment {
        event = event.with_comment(comment);
    }
    Some(event)
}

fn forbidden(text: &str) -> Option<char> {
    text.chars().find(|c| matches!(c, '\r' | '\n' | '\0'))
}

/// CRLF and lone CR become LF, as a client reassembles `data:` lines.
fn normalise(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// The long-poll object: `{"id":…,"event":…,"data":…}`, valid JSON carrying the same values.
fn check_json(event: &Event) {
    let bytes = event.to_json_bytes();
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "long-poll JSON does not parse ({e}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    let object = value.as_object().expect("an object");
    assert_eq!(object.len(), 3);
    match event.id() {
        Some(id) => assert_eq!(object["id"].as_str(), Some(id.as_str())),
        None => assert!(object["id"].is_null()),
    }
    assert_eq!(object["event"].as_str(), Some(event.name().unwrap_or("message")));
    assert_eq!(object["data"].as_str(), Some(event.data()));
}

/// The "interpreting an event stream" algorithm of the HTML standard, on a byte stream.
#[derive(Default)]
struct Client {
    started: bool,
    line: Vec<u8>,
    after_cr: bool,
    data: String,
    event_type: String,
    last_event_id_buffer: String,
    reconnection_time: Option<u128>,
    dispatched: Vec<Dispatched>,
}

impl Client {
    fn feed(&mut self, bytes: &[u8]) {
        let text = std::str::from_utf8(bytes).expect("the wire is UTF-8");
        let mut text = text;
        if !self.started {
            self.started = true;
            // One leading BOM is skipped.
            text = text.strip_prefix('\u{feff}').unwrap_or(text);
        }
        for &byte in text.as_bytes() {
            if self.after_cr {
                self.after_cr = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\r' | b'\n' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.process(std::str::from_utf8(&line).expect("lines split on ASCII stay UTF-8"));
                }
                other => self.line.push(other),
            }
        }
    }

    fn process(&mut self, line: &str) {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event_type = value.to_owned(),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            // An id with NUL is ignored.
            "id" if !value.contains('\0') => self.last_event_id_buffer = value.to_owned(),
            // A retry that is not all ASCII digits is ignored.
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.reconnection_time = Some(value.parse().unwrap_or(u128::MAX));
            }
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        let last_event_id = self.last_event_id_buffer.clone();
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        let event_type = match std::mem::take(&mut self.event_type) {
            name if name.is_empty() => "message".to_owned(),
            name => name,
        };
        self.dispatched.push(Dispatched {
            event_type,
            data,
            last_event_id,
        });
    }
}
