//! Cursor parsing from header bytes and query strings: `LastEventId::parse_bytes`,
//! `LastEventId::from_request_parts` on request parts built from the input,
//! `StreamRequest::from_parts`, and `MemoryLog::subscribe_now`. None may panic; a cursor is
//! accepted only in the documented shape; and the log never accepts a position it could not
//! have issued: a subscription that is not refused resumes exactly after the cursor, or
//! reports a gap and then holds every retained event.

#![no_main]

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tower_eventstream::{
    CursorError, Delivery, Event, EventFeed, LastEventId, MemoryLog, MemorySubscription, ResumeOutcome,
    StreamConfig, StreamRequest, Subscription,
};

#[derive(Arbitrary, Debug)]
struct Input {
    /// History of the log (1..=16) and how many events were appended (0..=40).
    history: u8,
    appended: u8,
    max_len: u16,
    /// `Last-Event-ID` header values (those `http` refuses are left out).
    headers: Vec<Vec<u8>>,
    /// The query string, as sent.
    query: String,
    /// A `lastEventId` value put first in the query, as sent (escapes and all), so that the
    /// fuzzer reaches the query's decoding without having to spell the parameter's name.
    query_cursor: Option<String>,
    /// A cursor built against the log's epoch, so that the fuzzer reaches the log's checks.
    cursor: CursorShape,
    accept_sse: bool,
}

#[derive(Arbitrary, Debug)]
enum CursorShape {
    /// `<this log's epoch>-<text>`
    Own(String),
    /// `<this log's epoch>-<number>`
    OwnNumber(u64),
    /// `<another epoch>-<text>`
    Other(String, String),
    /// As is.
    Raw(Vec<u8>),
}

fuzz_target!(|input: Input| {
    let max_len = usize::from(input.max_len % 400);
    let log = MemoryLog::builder()
        .history(usize::from(input.history % 16) + 1)
        .build();
    let appended = u64::from(input.appended % 41);
    for n in 1..=appended {
        log.push(Event::new(n.to_string()));
    }
    let first_held = appended.saturating_sub(log.len() as u64) + 1;

    // 1. parse_bytes accepts exactly short, non-empty, visible ASCII.
    let raw = match &input.cursor {
        CursorShape::Own(seq) => format!("{}-{seq}", log.epoch()).into_bytes(),
        CursorShape::OwnNumber(seq) => format!("{}-{seq}", log.epoch()).into_bytes(),
        CursorShape::Other(epoch, seq) => format!("{epoch}-{seq}").into_bytes(),
        CursorShape::Raw(bytes) => bytes.clone(),
    };
    check_parse_bytes(&raw, max_len);
    check_parse_bytes(&raw, 256);

    // 2. The log accepts only what it could have issued, and resumes without loss.
    if let Ok(cursor) = LastEventId::parse_bytes(&raw, 256) {
        check_subscribe(&log, &cursor, appended, first_held);
    }

    // 3. From request parts: the header wins, one header only, an empty one counts as
    //    absent, the query is percent-decoded strictly.
    let mut builder = http::Request::builder();
    let mut header_values = Vec::new();
    for value in input.headers.iter().take(3) {
        if let Ok(value) = http::HeaderValue::from_bytes(value) {
            builder = builder.header("last-event-id", value.clone());
            header_values.push(value);
        }
    }
    if input.accept_sse {
        builder = builder.header("accept", "text/event-stream");
    }
    let uri = match &input.query_cursor {
        Some(value) => format!("/events?lastEventId={value}&{}", input.query),
        None => format!("/events?{}", input.query),
    };
    let Ok(request) = builder.uri(uri.as_str()).body(()) else {
        return;
    };
    let (parts, ()) = request.into_parts();
    let query = parts.uri.query();
    let got = LastEventId::from_request_parts(&parts, max_len);
    match header_values.as_slice() {
        // An empty header is what an EventSource that has seen no id sends: the query decides.
        [] => check_query_cursor(query, max_len, &got),
        [one] if one.is_empty() => check_query_cursor(query, max_len, &got),
        [one] => match LastEventId::parse_bytes(one.as_bytes(), max_len) {
            Ok(expected) => assert_eq!(got, Ok(Some(expected))),
            Err(expected) => assert_eq!(got, Err(expected)),
        },
        _ => assert_eq!(got, Err(CursorError::Repeated)),
    }
    if let Ok(Some(cursor)) = &got {
        if cursor.as_str().len() <= 256 {
            check_subscribe(&log, cursor, appended, first_held);
        }
    }

    // 4. The whole request: never a panic; the wait never exceeds the maximum.
    let max_wait = Duration::from_millis(u64::from(input.max_len));
    let config = Arc::new(StreamConfig::default().max_wait(max_wait).max_cursor_len(max_len));
    if let Ok(request) = StreamRequest::from_parts(&parts, config) {
        assert!(request.wait() <= max_wait);
        assert_eq!(request.cursor(), got.clone().ok().flatten().as_ref());
    }
    assert_eq!(log.subscriber_count(), 0, "every subscription was dropped");
});

fn check_parse_bytes(raw: &[u8], max_len: usize) {
    let acceptable = !raw.is_empty() && raw.len() <= max_len && raw.iter().all(u8::is_ascii_graphic);
    match LastEventId::parse_bytes(raw, max_len) {
        Ok(cursor) => {
            assert!(acceptable, "accepted {raw:?} (max {max_len})");
            assert_eq!(cursor.as_str().as_bytes(), raw);
        }
        Err(error) => {
            assert!(!acceptable, "refused {raw:?} (max {max_len}): {error}");
            assert!(!error.to_string().is_empty());
        }
    }
}

/// The query's first `lastEventId` value, decoded by the book: `%` and two hex digits, `+`
/// is a space. `Err` when the encoding is broken.
///
/// Written apart from the crate's decoder on purpose, by another method (the value cut at
/// each `%`, each piece after a cut starting with its two hex digits), so that the two
/// agreeing means something.
fn reference_query_value(query: Option<&str>) -> Option<Result<Vec<u8>, ()>> {
    let value = query?
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(key, _)| *key == "lastEventId")?
        .1;
    let plain = |text: &str| text.replace('+', " ").into_bytes();
    let mut pieces = value.split('%');
    let mut out = plain(pieces.next().unwrap_or(""));
    for piece in pieces {
        let Some((hex, rest)) = piece.split_at_checked(2) else {
            return Some(Err(()));
        };
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(Err(()));
        }
        out.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
        out.extend(plain(rest));
    }
    Some(Ok(out))
}

fn check_query_cursor(query: Option<&str>, max_len: usize, got: &Result<Option<LastEventId>, CursorError>) {
    match reference_query_value(query) {
        None => assert_eq!(got, &Ok(None), "query {query:?}"),
        Some(Ok(value)) if value.is_empty() => assert_eq!(got, &Ok(None), "query {query:?}"),
        Some(Ok(value)) => match LastEventId::parse_bytes(&value, max_len) {
            Ok(expected) => assert_eq!(got, &Ok(Some(expected)), "query {query:?}"),
            Err(expected) => assert_eq!(got, &Err(expected), "query {query:?}"),
        },
        // Broken encoding is refused; which error is reported does not matter here.
        Some(Err(())) => assert!(got.is_err(), "query {query:?} accepted as {got:?}"),
    }
}

/// What the id format `<8 lowercase hex digits>-<decimal sequence>` allows for a log that has
/// issued positions `0..=appended` and holds the events from `first_held` on.
/// `Some(None)`: a gap; `Some(Some(seq))`: resume after `seq`; `None`: refuse.
fn issued(cursor: &str, epoch: &str, appended: u64, first_held: u64) -> Option<Option<u64>> {
    let (cursor_epoch, seq) = cursor.split_once('-')?;
    let well_formed = cursor_epoch.len() == 8
        && cursor_epoch
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    // Leading zeros are a spelling no instance issues.
    let canonical = seq.len() == 1 || !seq.starts_with('0');
    if !well_formed || seq.is_empty() || !canonical || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // No instance issues a sequence past u64.
    let seq: u64 = seq.parse().ok()?;
    if cursor_epoch != epoch {
        // Another instance (a restart) could have issued it: a gap, never a refusal.
        return Some(None);
    }
    if seq > appended {
        return None;
    }
    Some((seq + 1 >= first_held).then_some(seq))
}

fn check_subscribe(log: &MemoryLog, cursor: &LastEventId, appended: u64, first_held: u64) {
    let model = issued(cursor.as_str(), log.epoch(), appended, first_held);
    let result = log.subscribe_now(Some(cursor));
    let mut subscription = match (result, model) {
        (Err(error), None) => {
            assert!(
                matches!(error, CursorError::Unknown { .. }),
                "{cursor}: {error:?}"
            );
            return;
        }
        // Stricter than the model is allowed only for an over-long spelling of a number
        // (more than 20 digits): refusing is safe, accepting a position never issued is not.
        (Err(error), Some(_)) => {
            let seq = cursor.as_str().split_once('-').map_or("", |(_, seq)| seq);
            assert!(
                seq.len() > 20,
                "{cursor} refused ({error}) though the log issued it"
            );
            return;
        }
        (Ok(subscription), None) => panic!(
            "{cursor} accepted ({:?}), but this log (epoch {}, {appended} events) never issued it",
            subscription.outcome(),
            log.epoch()
        ),
        (Ok(subscription), Some(_)) => subscription,
    };
    let (from, gap) = match model {
        Some(Some(seq)) => {
            assert_eq!(subscription.outcome(), ResumeOutcome::Resumed, "{cursor}");
            (seq + 1, false)
        }
        _ => {
            assert_eq!(subscription.outcome(), ResumeOutcome::Gap, "{cursor}");
            (first_held, true)
        }
    };
    let mut want: Vec<String> = (from..=appended).map(|n| n.to_string()).collect();
    if gap {
        want.insert(0, format!("<gap {}-{}>", log.epoch(), first_held - 1));
    }
    assert_eq!(drain(&mut subscription), want, "{cursor}");
    assert_eq!(subscription.position(), Some(log.position()));
}

fn drain(subscription: &mut MemorySubscription) -> Vec<String> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    loop {
        match Pin::new(&mut *subscription).poll_delivery(&mut cx) {
            Poll::Ready(Some(Ok(Delivery::Event(event)))) => out.push(event.data().to_owned()),
            Poll::Ready(Some(Ok(Delivery::Gap(position)))) => out.push(format!(
                "<gap {}>",
                position.map(|p| p.to_string()).unwrap_or_default()
            )),
            Poll::Ready(Some(Ok(other))) => out.push(format!("<{other:?}>")),
            Poll::Ready(Some(Err(never))) => match never {},
            Poll::Ready(None) => panic!("a memory subscription never ends"),
            Poll::Pending => return out,
        }
    }
}
