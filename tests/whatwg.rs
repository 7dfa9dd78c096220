//! The server side of the WHATWG event-stream format (HTML Living Standard §9.2 "Server-sent
//! events"), one named test per obligation, each quoting the sentence it checks.
//!
//! Everything goes over real TCP to servers on 127.0.0.1; the bytes are checked raw and then
//! parsed by the third-party `eventsource-stream` crate, which follows the standard's parsing
//! and interpretation rules.

mod support;

#[path = "../examples/chat/app.rs"]
mod app;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::{extract::Request, http::StatusCode, response::IntoResponse, routing::get, Router};
use support::client::post_message;
use support::raw::{exchange, exchange_head_only, get_request};
use support::reader::SseReader;
use support::server::{events_router, Serving, TestServer};
use support::sse::parse_sse;
use support::within;
use tokio::net::TcpStream;
use tower::ServiceExt;
use tower_eventstream::{Event, EventError, EventId, EventLogService, MemoryLog, Shutdown, StreamConfig};

/// How long one event may take to reach the client once published: it must not wait for more.
const FLUSH: Duration = Duration::from_secs(2);

/// `log` served at `/events` as the README shows, on a fresh server.
async fn serve(log: &MemoryLog, config: StreamConfig) -> TestServer {
    TestServer::start(Serving::HyperUtil, events_router(log, config)).await
}

/// The id a log gave `event`.
fn id(event: &Event) -> &str {
    event.id().expect("the log gave the event an id").as_str()
}

/// Pushes events `1..=n` (their data is their number) and returns them as stored.
fn push(log: &MemoryLog, n: usize) -> Vec<Event> {
    (1..=n)
        .map(|n| log.push(Event::new(n.to_string())).unwrap())
        .collect()
}

/// `GET path` with `Connection: close`, `Accept` and `Last-Event-ID`.
fn request(path: &str, accept: &str, last_event_id: &str) -> Vec<u8> {
    get_request(
        path,
        &[
            ("Accept", accept.as_bytes()),
            ("Last-Event-ID", last_event_id.as_bytes()),
        ],
    )
}

/// An event stream read off a raw TCP connection (`Accept: text/event-stream` and, if given,
/// `Last-Event-ID`), every body byte kept.
async fn sse(addr: SocketAddr, path: &str, last_event_id: Option<&str>) -> SseReader {
    SseReader::raw(addr, path, last_event_id).await.recording()
}

/// `GET path` with `accept`, keeping the connection open; the answer must be 200.
async fn open(addr: SocketAddr, path: &str, accept: &str) -> SseReader {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {accept}\r\n\r\n");
    let tcp = within("connecting", TcpStream::connect(addr)).await.unwrap();
    SseReader::send_raw(tcp, request.as_bytes()).await.recording()
}

/// The next block, which must arrive within [`FLUSH`]: it was flushed at once.
async fn flushed_block(wire: &mut SseReader) -> String {
    match wire.try_read_until("\n\n", FLUSH).await {
        Some(block) => block,
        None => panic!("no block ended by a blank line within {FLUSH:?}; {wire:?}"),
    }
}

/// Reads through the end of the block that carries `id: <id>`.
async fn read_through(wire: &mut SseReader, id: &str) {
    wire.read_until(&format!("id: {id}\n")).await;
    wire.read_until("\n\n").await;
}

/// Every body byte received, as text.
fn text(wire: &SseReader) -> String {
    String::from_utf8_lossy(wire.transcript()).into_owned()
}

/// The events a page listens to: what `eventsource-stream` dispatches, less the opening's
/// checkpoint.
fn parse_events(bytes: &[u8]) -> Vec<eventsource_stream::Event> {
    parse_sse(bytes)
        .into_iter()
        .filter(|e| e.event != "checkpoint")
        .collect()
}

/// The lines of `text`, split the way the standard splits them (CRLF, LF or a lone CR).
fn lines(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(['\r', '\n']) {
        out.push(&rest[..at]);
        rest = &rest[at + if rest[at..].starts_with("\r\n") { 2 } else { 1 }..];
    }
    out
}

/// Whether `block` has a `data` line (the standard lets `data` stand alone, without a colon).
fn has_data_line(block: &str) -> bool {
    lines(block)
        .into_iter()
        .any(|line| line == "data" || line.starts_with("data:"))
}

/// The values of the `name: ` lines of `text`.
fn fields<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("{name}: ");
    let values = lines(text)
        .into_iter()
        .filter_map(|line| line.strip_prefix(prefix.as_str()));
    values.collect()
}

/// Every line is blank, a comment, or `name: value` with a lowercase known name and one space
/// before any value (`name:` alone is an empty value, which has no leading space to keep).
fn assert_well_formed(text: &str) {
    for line in lines(text)
        .into_iter()
        .filter(|l| !l.is_empty() && !l.starts_with(':'))
    {
        let (name, value) = line.split_once(':').unwrap_or((line, "?"));
        let spaced = value.is_empty() || value.starts_with(' ');
        assert!(
            ["id", "event", "data", "retry"].contains(&name) && spaced,
            "line {line:?} is not `name: value` with a lowercase field name; stream: {text:?}"
        );
    }
}

/// (1) "This event stream format's MIME type is `text/event-stream`." The processing model fails
/// the connection "if res's `Content-Type` is not `text/event-stream`"; an `EventSource` sends
/// `Accept: text/event-stream`, and other clients add parameters and q-values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_with_parameters_and_q_values_negotiates_text_event_stream() {
    let server = serve(&MemoryLog::new(), StreamConfig::default()).await;
    for accept in [
        "text/event-stream; charset=utf-8",
        "text/event-stream;charset=UTF-8",
        "application/json;q=0.5, text/event-stream;q=0.9",
        "text/html, text/event-stream; q=1.0, */*;q=0.1",
        "TEXT/Event-Stream",
    ] {
        let mut wire = open(server.addr, "/events", accept).await;
        let content_type = wire.header("content-type").unwrap_or_default().to_owned();
        let mut parts = content_type.split(';').map(str::trim);
        assert_eq!(parts.next(), Some("text/event-stream"), "Accept: {accept}");
        assert!(
            parts.all(|p| p.eq_ignore_ascii_case("charset=utf-8")),
            "{content_type}"
        );
        assert_well_formed(&wire.read_block().await);
    }
    // The controls: a client that does not ask for an event stream, or refuses it with
    // `q=0` ("not acceptable"), gets JSON.
    for accept in [
        "application/json",
        "text/event-stream;q=0, application/json",
        "text/event-stream; q=0.000",
    ] {
        let request = get_request("/events?timeout=0", &[("Accept", accept.as_bytes())]);
        let answer = exchange(server.addr, &request).await;
        assert_eq!(
            answer.header("content-type"),
            Some("application/json"),
            "Accept: {accept}"
        );
    }
}

/// (2) "The UTF-8 decode algorithm strips one leading UTF-8 Byte Order Mark (BOM), if any."
/// So the stream must not start with one, and U+FEFF later on (at the start of data) is data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_bom_at_the_start_of_the_stream_and_u_feff_in_data_survives() {
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    let log = MemoryLog::new();
    let before = log.position();
    let first = log.push(Event::new("\u{FEFF}starts with U+FEFF")).unwrap();
    let server = serve(&log, StreamConfig::default()).await;
    // Resumed, the event with U+FEFF is the first to follow the opening; fresh, the next one.
    let mut resumed = sse(server.addr, "/events", Some(before.as_str())).await;
    read_through(&mut resumed, id(&first)).await;
    let mut fresh = sse(server.addr, "/events", None).await;
    fresh.read_block().await;
    let second = log.push(Event::new("\u{FEFF}")).unwrap();
    read_through(&mut fresh, id(&second)).await;
    for (wire, event) in [(resumed, first), (fresh, second)] {
        assert_ne!(
            &wire.transcript()[..3],
            BOM,
            "the stream starts with a BOM: {wire:?}"
        );
        let boms = wire.transcript().windows(3).filter(|w| *w == BOM).count();
        assert_eq!(boms, 1, "only the data's own U+FEFF: {wire:?}");
        let events = parse_events(wire.transcript());
        assert_eq!(events.len(), 1, "{wire:?}");
        assert_eq!(
            (events[0].data.as_str(), events[0].id.as_str()),
            (event.data(), id(&event))
        );
    }
}

/// (3) Lines end with "a U+000D CARRIAGE RETURN U+000A LINE FEED (CRLF) character pair, a single
/// U+000A LINE FEED (LF) character not preceded by a U+000D CARRIAGE RETURN (CR) character, and a
/// single U+000D CARRIAGE RETURN (CR) character not followed by a U+000A LINE FEED (LF)".
/// Messages posted to the chat app come back with each of them as exactly one line break.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cr_lf_and_crlf_in_data_are_each_exactly_one_line_break() {
    let cases = [
        ("a\rb", "a\nb"),
        ("a\nb", "a\nb"),
        ("a\r\nb", "a\nb"),
        ("\r\nstarts with crlf", "\nstarts with crlf"),
        ("ends with crlf\r\n", "ends with crlf\n"),
        ("\rstarts with cr", "\nstarts with cr"),
        ("ends with cr\r", "ends with cr\n"),
        ("two\r\n\r\ncrlf", "two\n\ncrlf"),
        ("two\r\rcr", "two\n\ncr"),
        ("two\n\nlf", "two\n\nlf"),
        ("lf then cr\n\rx", "lf then cr\n\nx"),
        ("\r\n", "\n"),
        ("mixed\r\n\n\r\r\n", "mixed\n\n\n\n"),
    ];
    let log = MemoryLog::new();
    let server = TestServer::start(
        Serving::HyperUtil,
        app::router(app::memory_rooms(&log), StreamConfig::default()),
    )
    .await;
    let before = log.position();
    for (sent, _) in cases {
        assert_eq!(
            post_message(server.addr, sent.as_bytes()).await.status,
            201,
            "{sent:?}"
        );
    }
    let mut wire = sse(server.addr, "/api/events", Some(before.as_str())).await;
    read_through(&mut wire, log.position().as_str()).await;
    assert_well_formed(&text(&wire));
    let got: Vec<String> = parse_events(wire.transcript())
        .into_iter()
        .map(|e| e.data)
        .collect();
    let expected: Vec<&str> = cases.iter().map(|(_, expected)| *expected).collect();
    assert_eq!(
        got, expected,
        "one event per message, one LF per line break; {wire:?}"
    );
}

/// (4) "The field names must be compared literally, with no case folding performed." and "If value
/// starts with a U+0020 SPACE character, remove it from value." So names are written lowercase
/// and exactly one space follows the colon: a value's own leading spaces survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_names_are_lowercase_and_one_space_follows_the_colon() {
    let log = MemoryLog::new();
    let server = serve(&log, StreamConfig::default()).await;
    let mut wire = sse(server.addr, "/events", None).await;
    wire.read_block().await;
    let event = Event::new("  two spaces\n three: colon")
        .with_name("  kind")
        .unwrap();
    let stored = log.push(event).unwrap();
    let block = flushed_block(&mut wire).await;
    assert_well_formed(&text(&wire));
    assert_eq!(fields(&block, "id"), [id(&stored)], "{block:?}");
    assert_eq!(fields(&block, "event"), ["  kind"], "{block:?}");
    assert_eq!(
        fields(&block, "data"),
        ["  two spaces", " three: colon"],
        "{block:?}"
    );
    let parsed = parse_sse(&block);
    assert_eq!(parsed.len(), 1, "{block:?}");
    assert_eq!(
        (parsed[0].data.as_str(), parsed[0].event.as_str()),
        (stored.data(), "  kind")
    );
}

/// `Event::with_comment` as a refusing API returns it (a `Result`) or as an infallible one
/// does (the event): both compile here, so the test below states the contract either way.
trait Checked {
    fn checked(self) -> Result<Event, String>;
}

impl Checked for Event {
    fn checked(self) -> Result<Event, String> {
        Ok(self)
    }
}

impl Checked for Result<Event, EventError> {
    fn checked(self) -> Result<Event, String> {
        self.map_err(|error| error.to_string())
    }
}

/// (5) "comment = colon *any-char end-of-line", where any-char is "a scalar value other than
/// U+000A LINE FEED (LF) or U+000D CARRIAGE RETURN (CR)": a comment's line breaks become
/// separate comment lines (documented on `Event::with_comment`), so no comment line on the
/// wire carries CR or LF and nothing after the break is read as a field.
#[test]
fn a_comment_with_cr_or_lf_becomes_several_comment_lines() {
    for comment in ["a\rb", "a\nb", "a\r\nb", "a\n\nb", "trailing\n"] {
        let wire = Event::new("x").with_comment(comment).to_bytes();
        let text = std::str::from_utf8(&wire).unwrap();
        assert!(!text.contains('\r'), "{comment:?} -> {text:?}");
        let (comments, rest) = text.split_at(text.find("data:").expect("a data line"));
        assert!(
            comments.lines().all(|line| line.starts_with(':')),
            "{comment:?}: every line before the data is a comment: {text:?}"
        );
        assert_eq!(rest, "data: x\n\n", "{comment:?}");
    }
}

/// (5) "If the line starts with a U+003A COLON character (:) — Ignore the line." A line break in
/// a comment must not end it early (the rest would be read as a field), and keep-alives, sent
/// as the authoring notes advise ("authors can include a comment line (one starting with a ':'
/// character) every 15 seconds or so"), are single lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comments_on_the_wire_are_single_lines_and_keep_alives_too() {
    let log = MemoryLog::new();
    let server = serve(
        &log,
        StreamConfig::default().keep_alive(Duration::from_millis(40)),
    )
    .await;
    let mut wire = sse(server.addr, "/events", None).await;
    wire.read_block().await;
    let mut idle = String::new();
    for _ in 0..3 {
        idle.push_str(&wire.read_until("\n").await);
    }
    assert!(idle.split_inclusive('\n').all(|line| line == ":\n"), "{idle:?}");

    let injected = Event::new("payload").with_comment("one\rdata: injected\r\nevent: x\nlast");
    let stored = log
        .push(injected.checked().unwrap_or_else(|_| Event::new("payload")))
        .unwrap();
    read_through(&mut wire, id(&stored)).await;
    assert_well_formed(&text(&wire));
    let events = parse_events(wire.transcript());
    assert_eq!(events.len(), 1, "{wire:?}");
    assert_eq!(
        (events[0].event.as_str(), events[0].data.as_str()),
        ("message", "payload")
    );
    assert!(!wire.transcript().contains(&b'\r'), "a CR went out raw: {wire:?}");
}

/// (6) "If the line is empty (a blank line) — Dispatch the event", and "If the file ends in the
/// middle of an event, before the final empty line, the incomplete event is not dispatched."
/// Each event ends with its blank line and is flushed at once, while the stream stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_ends_with_a_blank_line_and_is_flushed_at_once() {
    let log = MemoryLog::new();
    let server = serve(&log, StreamConfig::default()).await;
    let mut wire = sse(server.addr, "/events", None).await;
    wire.read_block().await;
    for event in [
        Event::new("first"),
        Event::new("second\nof two lines").with_name("update").unwrap(),
        Event::new("").with_comment("an empty message"),
        Event::new("fourth").with_retry(Duration::from_secs(1)),
    ] {
        let stored = log.push(event).unwrap();
        let block = flushed_block(&mut wire).await;
        assert!(!wire.ended, "the stream ended after {block:?}");
        assert!(
            !block[..block.len() - 1].contains("\n\n"),
            "one blank line, at the end: {block:?}"
        );
        let parsed = parse_sse(&block);
        assert_eq!(parsed.len(), 1, "one dispatched event for {block:?}");
        let got = (
            parsed[0].data.as_str(),
            parsed[0].event.as_str(),
            parsed[0].id.as_str(),
        );
        assert_eq!(
            got,
            (stored.data(), stored.name().unwrap_or("message"), id(&stored))
        );
    }
}

/// (7) At dispatch, "Set the last event ID string of the event source to the value of the last
/// event ID buffer. The buffer does not get reset", so an event without its own `id:` line
/// would be remembered under the previous event's id: every logged event carries its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replayable_event_carries_the_log_id_as_its_id_field() {
    let log = MemoryLog::new();
    let before = log.position();
    let mut stored = push(&log, 3);
    let server = serve(&log, StreamConfig::default()).await;
    let mut wire = sse(server.addr, "/events", Some(before.as_str())).await;
    wire.read_block().await;
    stored.push(log.push(Event::new("live").with_name("named").unwrap()).unwrap());
    stored.push(log.push(Event::new("live\nwith two lines")).unwrap());
    for event in &stored {
        let block = flushed_block(&mut wire).await;
        assert_eq!(fields(&block, "id"), [id(event)], "{block:?}");
        assert_eq!(parse_sse(&block)[0].id, id(event));
    }
    let ids: Vec<String> = parse_events(wire.transcript())
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, stored.iter().map(id).collect::<Vec<_>>());
}

/// (8) "If the field value does not contain U+0000 NULL, then set the last event ID buffer to the
/// field value. Otherwise, ignore the field." An id with NUL would leave the client on an
/// older cursor, and CR or LF would end the line: the Event API refuses all three.
#[test]
fn the_event_api_refuses_nul_cr_and_lf_in_ids() {
    for (id, found) in [("a\0b", '\0'), ("a\rb", '\r'), ("a\nb", '\n'), ("\0", '\0')] {
        let refused = std::panic::catch_unwind(|| Event::new("x").with_id(id)).expect("no panic");
        assert_eq!(refused.unwrap_err(), EventError::InvalidId { found }, "{id:?}");
        let refused = std::panic::catch_unwind(|| EventId::new(id)).expect("no panic");
        assert_eq!(refused.unwrap_err(), EventError::InvalidId { found }, "{id:?}");
    }
    assert!(Event::new("x").with_id("a-1").is_ok() && EventId::new("a-1").is_ok());
}

/// (8) The same sentence, for what the log issues: event ids, positions and gap ids are
/// NUL-free, so the parser takes every one of them (it would keep the old id otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_id_the_log_issues_contains_nul() {
    let log = MemoryLog::builder().history(8).build();
    let first = log.position();
    let stored = push(&log, 20);
    let last = log.position();
    for issued in stored.iter().map(id).chain([first.as_str(), last.as_str()]) {
        assert!(issued.bytes().all(|b| b.is_ascii_graphic()), "{issued:?}");
    }
    let server = serve(&log, StreamConfig::default()).await;
    let mut wire = sse(server.addr, "/events", Some(first.as_str())).await;
    read_through(&mut wire, last.as_str()).await;
    assert!(!wire.transcript().contains(&0), "a NUL went out: {wire:?}");
    let ids: Vec<String> = parse_events(wire.transcript())
        .into_iter()
        .map(|e| e.id)
        .collect();
    let mut expected = vec![id(&stored[11])]; // the reset: resume from just before the oldest kept
    expected.extend(stored[12..].iter().map(id));
    assert_eq!(ids, expected, "{wire:?}");
}

/// (9) "If the data buffer is an empty string, set the data buffer and the event type buffer to
/// the empty string and return." A block without a `data` line dispatches nothing, so the gap
/// event carries one, or a browser would never hear of the gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gap_event_carries_a_data_line_so_reset_is_dispatched() {
    let log = MemoryLog::builder().history(4).build();
    let stale = log.position();
    let stored = push(&log, 10);
    let server = serve(&log, StreamConfig::default()).await;
    let mut wire = sse(server.addr, "/events", Some(stale.as_str())).await;
    let reset = loop {
        let block = wire.read_block().await;
        if fields(&block, "event").contains(&"reset") {
            break block;
        }
    };
    assert!(
        has_data_line(&reset),
        "the reset block has no data line: {reset:?}"
    );
    read_through(&mut wire, id(&stored[9])).await;
    let parsed = parse_events(wire.transcript());
    let got: Vec<(&str, &str)> = parsed.iter().map(|e| (e.event.as_str(), e.id.as_str())).collect();
    let mut expected = vec![("reset", id(&stored[5]))];
    expected.extend(stored[6..].iter().map(|e| ("message", id(e))));
    assert_eq!(got, expected, "{wire:?}");
}

/// The `retry:` values of `text`, each checked to be ASCII digits only.
fn retry_millis(text: &str) -> Vec<u64> {
    let values = fields(text, "retry");
    assert!(!values.is_empty(), "no retry line in {text:?}");
    let digits = |value: &&str| !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    assert!(values.iter().all(digits), "retry values {values:?}");
    values.iter().map(|value| value.parse().unwrap()).collect()
}

/// (10) "If the field value consists of only ASCII digits, then interpret the field value as an
/// integer in base ten, and set the event stream's reconnection time to that integer.
/// Otherwise, ignore the field." The reconnection time is in milliseconds: the opening hint,
/// an event's own hint and the hint that ends every stream on shutdown are all digits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_values_are_ascii_digits_in_milliseconds() {
    let (log, shutdown) = (MemoryLog::new(), Shutdown::new());
    let server = serve(&log, StreamConfig::default()).await;
    let with = |retry| StreamConfig::default().retry(retry);
    for (config, millis) in [
        (StreamConfig::default(), 3000),
        (with(Duration::from_millis(1500)), 1500),
        (with(Duration::from_micros(2500)), 2),
    ] {
        server.swap(events_router(&log, config));
        let opening = sse(server.addr, "/events", None).await.read_block().await;
        assert_eq!(retry_millis(&opening), [millis], "{opening:?}");
    }

    let config = StreamConfig::default()
        .retry(Duration::from_secs(2))
        .shutdown(shutdown.clone());
    server.swap(events_router(&log, config));
    let mut wire = sse(server.addr, "/events", None).await;
    wire.read_block().await;
    for (retry, millis) in [
        (Duration::from_millis(750), 750),
        (Duration::from_nanos(10), 0),
        (Duration::MAX, u64::MAX),
    ] {
        log.push(Event::new("with a hint").with_retry(retry)).unwrap();
        let block = flushed_block(&mut wire).await;
        assert_eq!(retry_millis(&block), [millis], "{block:?}");
        assert_eq!(parse_sse(&block)[0].retry, Some(Duration::from_millis(millis)));
    }
    shutdown.trigger();
    let tail = wire.read_to_end().await;
    let hint = retry_millis(&tail);
    assert!(
        hint.len() == 1 && (1000..=3000).contains(&hint[0]),
        "shutdown: {tail:?}"
    );
    assert!(tail.ends_with("\n\n"), "{tail:?}");
}

/// (11) "The `Last-Event-ID` HTTP request header reports an EventSource object's last event ID
/// string to the server when the user agent is to reestablish the connection." A browser
/// reconnects to the URL it was given, so a `lastEventId` in that URL is stale: the header wins,
/// on a stream and on a long poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_event_id_header_wins_over_the_query() {
    let log = MemoryLog::new();
    let stored = push(&log, 5);
    let (stale, header) = (id(&stored[0]), id(&stored[2]));
    let server = serve(&log, StreamConfig::default()).await;
    let mut wire = sse(server.addr, &format!("/events?lastEventId={stale}"), Some(header)).await;
    read_through(&mut wire, id(&stored[4])).await;
    let data: Vec<String> = parse_events(wire.transcript())
        .into_iter()
        .map(|e| e.data)
        .collect();
    assert_eq!(data, ["4", "5"], "SSE: {wire:?}");

    let poll = request(
        &format!("/events?lastEventId={stale}&timeout=0"),
        "application/json",
        header,
    );
    let json = exchange(server.addr, &poll).await.json();
    let data: Vec<&str> = json["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["data"].as_str())
        .collect();
    assert_eq!(data, ["4", "5"], "long poll: {json}");
}

/// (12) "Clients will reconnect if the connection is closed; a client can be told to stop
/// reconnecting using the HTTP 204 No Content response code." An app built on the crate can
/// answer a reconnect with 204 and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_can_answer_204_no_content_to_stop_reconnects() {
    let log = MemoryLog::new();
    let closed = Arc::new(AtomicBool::new(false));
    let (service, flag) = (EventLogService::new(log.clone()), Arc::clone(&closed));
    let events = move |request: Request| {
        let (service, closed) = (service.clone(), flag.load(Ordering::Acquire));
        async move {
            if closed {
                return StatusCode::NO_CONTENT.into_response();
            }
            let Ok(response) = service.oneshot(request).await;
            response.into_response()
        }
    };
    let server = TestServer::start(Serving::HyperUtil, Router::new().route("/events", get(events))).await;
    let mut wire = sse(server.addr, "/events", None).await;
    wire.read_block().await;
    assert_eq!(wire.header("content-type"), Some("text/event-stream"));

    closed.store(true, Ordering::Release);
    let reconnect = request("/events", "text/event-stream", log.position().as_str());
    let (head, rest) = exchange_head_only(server.addr, &reconnect).await;
    assert_eq!(head.status, 204, "{head:?}");
    assert_ne!(head.header("content-type"), Some("text/event-stream"), "{head:?}");
    assert!(
        head.header("transfer-encoding").is_none() && rest.is_empty(),
        "{head:?} then {rest:?}"
    );
}

/// (13) The opening moves the client's cursor to the log's position. "Set the last event ID
/// string of the event source to the value of the last event ID buffer" happens at dispatch,
/// and "If the data buffer is an empty string, ... return": a block that counts in every browser
/// (Firefox ignores an id-only block) is `id`, `event: checkpoint`, `data` and a blank line.
async fn assert_checkpoint_opening(log: &MemoryLog) {
    let server = serve(log, StreamConfig::default()).await;
    let mut wire = sse(server.addr, "/events", None).await;
    let position = log.position();
    let opening = async {
        loop {
            let block = wire.read_block().await;
            if fields(&block, "event") == ["checkpoint"] {
                return block;
            }
        }
    };
    let block = tokio::time::timeout(FLUSH, opening)
        .await
        .unwrap_or_else(|_| panic!("no opening block with `event: checkpoint` within {FLUSH:?}"));
    assert_well_formed(&text(&wire));
    assert_eq!(fields(&block, "id"), [position.as_str()], "{block:?}");
    assert!(has_data_line(&block) && block.ends_with("\n\n"), "{block:?}");
    let parsed = parse_sse(wire.transcript());
    let checkpoint = parsed
        .iter()
        .find(|e| e.event == "checkpoint")
        .expect("a dispatched checkpoint");
    assert_eq!(checkpoint.id, position.as_str(), "{wire:?}");
}

/// (13) On a log that holds events, and on an empty one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opening_is_a_checkpoint_block_with_the_log_position() {
    let log = MemoryLog::new();
    push(&log, 3);
    assert_checkpoint_opening(&log).await;
    assert_checkpoint_opening(&MemoryLog::new()).await;
}
