//! Bad input against the chat app over real TCP, each case with a defined answer: a `4xx`
//! with a reason, or the input is ignored. Never a `500`, a panic or a hang. On the server
//! each includer names: `tests/bad_input.rs` runs it on `axum::serve`,
//! `tests/crate_server.rs` on the crate's own server.
//!
//! Requests are written byte for byte on a `TcpStream`, because HTTP crates refuse to build
//! most of them. Where hyper rejects a request before the application sees it (a CR, LF or
//! NUL inside a header value, a header block over hyper's read buffer), hyper's answer is
//! the defined one: `400` for a malformed head, `431` for one too large.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_eventstream::{Event, MemoryLog, StreamConfig};

use crate::app;
use crate::support::client::{long_poll, post_message, Answer};
use crate::support::raw::{exchange, exchange_head_only, find, get_request, read_head, request_bytes};
use crate::support::reader::SseReader;
use crate::support::server::{Serving, TestServer};
use crate::support::sse::SseItem;
use crate::support::{wait_until, within};

/// The longest long poll the server in these tests holds.
const MAX_WAIT: Duration = Duration::from_millis(400);

struct Chat {
    log: MemoryLog,
    server: TestServer,
}

impl Chat {
    async fn start(serving: Serving) -> Self {
        Self::with_log(serving, MemoryLog::new()).await
    }

    async fn with_log(serving: Serving, log: MemoryLog) -> Self {
        let config = StreamConfig::default().max_wait(MAX_WAIT);
        let server = TestServer::start(serving, app::router(app::memory_rooms(&log), config)).await;
        Chat { log, server }
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// An id of this log that it never issued because it is ahead of it.
    fn future_id(&self) -> String {
        format!("{}-{}", self.log.epoch(), 1_000_000)
    }

    /// An epoch of the same shape that is not this log's.
    fn foreign_epoch(&self) -> String {
        let flipped: String = self
            .log
            .epoch()
            .chars()
            .map(|c| if c == '0' { '1' } else { '0' })
            .collect();
        assert_ne!(flipped, self.log.epoch());
        flipped
    }

    /// The server still answers normally and holds no subscription for refused requests.
    async fn assert_healthy(&self) {
        let (_, answer) = long_poll(self.addr(), "/api/events?timeout=0").await;
        assert_eq!(answer["reset"], false);
        wait_until("subscriptions of finished requests to be released", || {
            self.log.subscriber_count() == 0
        })
        .await;
    }
}

fn sse_get(path: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut headers: Vec<(&str, &[u8])> = vec![("Accept", b"text/event-stream")];
    headers.extend_from_slice(extra);
    get_request(path, &headers)
}

/// Asserts a `4xx` whose plain-text reason mentions `reason`.
fn assert_refused(response: &Answer, status: u16, reason: &str) {
    assert_eq!(
        response.status,
        status,
        "expected {status}, got {} {:?}",
        response.status,
        response.text()
    );
    assert!(
        response.text().contains(reason),
        "the reason {:?} does not mention {reason:?}",
        response.text()
    );
}

/// Writes `request` raw and reads the answer. For requests hyper itself refuses there is no
/// reason text, only the status.
async fn raw(addr: SocketAddr, request: &[u8]) -> Answer {
    exchange(addr, request).await
}

fn raw_sse_with_header_line(header_line: &[u8]) -> Vec<u8> {
    let mut request =
        b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nConnection: close\r\n"
            .to_vec();
    request.extend_from_slice(header_line);
    request.extend_from_slice(b"\r\n\r\n");
    request
}

// ---------------------------------------------------------------------------------------
// Last-Event-ID
// ---------------------------------------------------------------------------------------

pub async fn a_cr_inside_last_event_id_is_a_malformed_head_400(serving: Serving) {
    let chat = Chat::start(serving).await;
    let id = chat.log.position();
    let line = format!("Last-Event-ID: {}\rX", id.as_str());
    let response = raw(chat.addr(), &raw_sse_with_header_line(line.as_bytes())).await;
    assert_eq!(response.status, 400, "hyper refuses a bare CR in a header value");
    chat.assert_healthy().await;
}

pub async fn an_lf_inside_last_event_id_ends_the_header_and_what_follows_is_a_bad_header_400(
    serving: Serving,
) {
    let chat = Chat::start(serving).await;
    // `ab\ncd`: the LF ends the header line (httparse accepts a bare LF as a line end), and
    // `cd` is then a header line without a colon: a malformed head.
    let response = raw(chat.addr(), &raw_sse_with_header_line(b"Last-Event-ID: ab\ncd")).await;
    assert_eq!(response.status, 400);
    chat.assert_healthy().await;
}

pub async fn an_lf_that_starts_a_well_formed_header_line_splits_the_value_the_cursor_is_what_precedes_it(
    serving: Serving,
) {
    let chat = Chat::start(serving).await;
    let seen = chat
        .log
        .push(Event::new("seen").with_name("message").unwrap())
        .unwrap();
    chat.log
        .push(Event::new("next").with_name("message").unwrap())
        .unwrap();
    // `<id>\nX-Smuggled: 1`: two header lines. The cursor is exactly the text before the LF,
    // so the stream resumes after `seen`; the second line is an ordinary unknown header.
    let line = format!("Last-Event-ID: {}\nX-Smuggled: 1", seen.id().unwrap());
    let stream = TcpStream::connect(chat.addr()).await.unwrap();
    let mut sse = SseReader::send_raw(stream, &raw_sse_with_header_line(line.as_bytes())).await;
    assert_eq!(sse.head.header("content-type"), Some("text/event-stream"));
    let event = sse.next_event().await;
    assert_eq!(
        event.data.as_deref(),
        Some("next"),
        "resumed right after the cursor"
    );
    assert_eq!(event.id.as_deref(), Some(chat.log.position().as_str()));
    drop(sse);
    chat.assert_healthy().await;
}

pub async fn a_nul_inside_last_event_id_is_400(serving: Serving) {
    let chat = Chat::start(serving).await;
    let response = raw(chat.addr(), &raw_sse_with_header_line(b"Last-Event-ID: ab\0cd")).await;
    // hyper's parser refuses NUL in a header value; if it ever let it through, the cursor
    // check refuses it too (not visible ASCII). Either way: 400.
    assert_eq!(response.status, 400, "{:?}", response.text());
    chat.assert_healthy().await;
}

pub async fn a_one_megabyte_header_is_431_from_hyper(serving: Serving) {
    let chat = Chat::start(serving).await;
    let huge = vec![b'a'; 1024 * 1024];
    let mut request = b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nConnection: close\r\nLast-Event-ID: ".to_vec();
    request.extend_from_slice(&huge);
    request.extend_from_slice(b"\r\n\r\n");

    // hyper answers as soon as its read buffer (about 400 KiB) is full and closes, so write
    // and read at the same time: the rest of the request may well be refused by a reset.
    let stream = TcpStream::connect(chat.addr()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        writer
    });
    let mut received = Vec::new();
    let _ = within("the 431 answer", async {
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
            if find(&received, b"\r\n\r\n").is_some() {
                break;
            }
        }
    })
    .await;
    let _ = writing.await;
    let text = String::from_utf8_lossy(&received);
    assert!(
        text.starts_with("HTTP/1.1 431"),
        "expected 431 Request Header Fields Too Large, got {text:?}"
    );
    chat.assert_healthy().await;
}

pub async fn a_cursor_over_256_bytes_but_within_hyper_limits_is_400_too_long(serving: Serving) {
    let chat = Chat::start(serving).await;
    let long = "a".repeat(4096);
    let response = raw(
        chat.addr(),
        &sse_get("/api/events", &[("Last-Event-ID", long.as_bytes())]),
    )
    .await;
    assert_refused(&response, 400, "4096 bytes");
    chat.assert_healthy().await;
}

pub async fn a_non_utf8_last_event_id_is_400_naming_the_byte(serving: Serving) {
    let chat = Chat::start(serving).await;
    let response = raw(
        chat.addr(),
        &sse_get("/api/events", &[("Last-Event-ID", b"\xff\xfe1")]),
    )
    .await;
    assert_refused(&response, 400, "0xff");
    let response = raw(
        chat.addr(),
        &get_request("/api/events?timeout=0&lastEventId=%FF", &[]),
    )
    .await;
    assert_refused(&response, 400, "0xff");
    chat.assert_healthy().await;
}

pub async fn an_unknown_epoch_is_a_reset_then_the_retained_events(serving: Serving) {
    let chat = Chat::with_log(serving, MemoryLog::builder().history(2).build()).await;
    for text in ["one", "two", "three"] {
        chat.log
            .push(Event::new(text).with_name("message").unwrap())
            .unwrap();
    }
    let foreign = format!("{}-2", chat.foreign_epoch());

    // SSE: a `reset` event whose id resumes at the retained events, then those events.
    let mut sse = SseReader::raw(chat.addr(), "/api/events", Some(&foreign)).await;
    let reset = sse.next_event().await;
    assert_eq!(reset.event.as_deref(), Some("reset"));
    assert_eq!(reset.id, Some(format!("{}-1", chat.log.epoch())));
    let two = sse.next_event().await;
    let three = sse.next_event().await;
    assert_eq!(
        (two.data.as_deref(), three.data.as_deref()),
        (Some("two"), Some("three"))
    );
    drop(sse);

    // Long poll: `reset: true` and the retained events.
    let (_, answer) = long_poll(
        chat.addr(),
        &format!("/api/events?timeout=0&lastEventId={foreign}"),
    )
    .await;
    assert_eq!(answer["reset"], true, "{answer}");
    let data: Vec<&str> = answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"].as_str().unwrap())
        .collect();
    assert_eq!(data, ["two", "three"]);
    chat.assert_healthy().await;
}

pub async fn a_sequence_ahead_of_the_log_is_400(serving: Serving) {
    let chat = Chat::start(serving).await;
    chat.log.push(Event::new("only")).unwrap();
    let future = chat.future_id();
    let response = raw(
        chat.addr(),
        &sse_get("/api/events", &[("Last-Event-ID", future.as_bytes())]),
    )
    .await;
    assert_refused(&response, 400, "ahead of this log");
    let response = raw(
        chat.addr(),
        &get_request(&format!("/api/events?timeout=0&lastEventId={future}"), &[]),
    )
    .await;
    assert_refused(&response, 400, "ahead of this log");
    chat.assert_healthy().await;
}

pub async fn an_empty_last_event_id_is_no_cursor(serving: Serving) {
    let chat = Chat::start(serving).await;
    chat.log
        .push(Event::new("before").with_name("message").unwrap())
        .unwrap();
    let position = chat.log.position();
    // An empty header value (and one of blanks, which the parser trims to empty) is what an
    // EventSource that has seen no id sends: read from the live end, no reset.
    for value in [&b""[..], b"   "] {
        let mut stream = TcpStream::connect(chat.addr()).await.unwrap();
        stream
            .write_all(&sse_get("/api/events", &[("Last-Event-ID", value)]))
            .await
            .unwrap();
        let mut sse_body = Vec::new();
        let head = within("the head", read_head(&mut stream, &mut sse_body))
            .await
            .unwrap();
        assert_eq!(head.status, 200, "value {value:?}");
        drop(stream);
    }
    let mut sse = SseReader::raw(chat.addr(), "/api/events?lastEventId=", None).await;
    let opening = match sse.next_item().await {
        Some(SseItem::Comment(_)) => sse.next_item().await,
        other => other,
    };
    match opening {
        Some(SseItem::Block(block)) => {
            assert_eq!(
                block.id.as_deref(),
                Some(position.as_str()),
                "starts at the live end"
            );
            assert_eq!(block.event_type(), "checkpoint", "no reset: {block:?}");
        }
        other => panic!("expected the opening block, got {other:?}"),
    }
    drop(sse);
    let (_, answer) = long_poll(chat.addr(), "/api/events?timeout=0&lastEventId=").await;
    assert_eq!(answer["reset"], false);
    assert_eq!(answer["events"].as_array().unwrap().len(), 0);
    assert_eq!(answer["lastEventId"], position.as_str());
    chat.assert_healthy().await;
}

pub async fn two_last_event_id_headers_are_400(serving: Serving) {
    let chat = Chat::start(serving).await;
    let position = chat.log.position();
    let response = raw(
        chat.addr(),
        &sse_get(
            "/api/events",
            &[
                ("Last-Event-ID", position.as_str().as_bytes()),
                ("Last-Event-ID", position.as_str().as_bytes()),
            ],
        ),
    )
    .await;
    assert_refused(&response, 400, "more than one");
    chat.assert_healthy().await;
}

// ---------------------------------------------------------------------------------------
// timeout
// ---------------------------------------------------------------------------------------

pub async fn a_negative_timeout_is_400(serving: Serving) {
    let chat = Chat::start(serving).await;
    let response = raw(chat.addr(), &get_request("/api/events?timeout=-1", &[])).await;
    assert_refused(&response, 400, "timeout");
    chat.assert_healthy().await;
}

pub async fn a_non_numeric_timeout_is_400(serving: Serving) {
    let chat = Chat::start(serving).await;
    for value in ["abc", "1e3", "1.5", "", "%31%zz", "0x10", "+5"] {
        let response = raw(
            chat.addr(),
            &get_request(&format!("/api/events?timeout={value}"), &[]),
        )
        .await;
        assert_refused(&response, 400, "timeout");
    }
    chat.assert_healthy().await;
}

pub async fn a_huge_timeout_is_clamped_to_the_maximum_wait(serving: Serving) {
    let chat = Chat::start(serving).await;
    for value in ["99999999999999999999999999", "18446744073709551615", "3600000"] {
        let started = Instant::now();
        let (_, answer) = within(
            "a clamped long poll",
            long_poll(chat.addr(), &format!("/api/events?timeout={value}")),
        )
        .await;
        let waited = started.elapsed();
        assert!(
            waited >= MAX_WAIT - Duration::from_millis(50) && waited < MAX_WAIT + Duration::from_secs(2),
            "timeout={value}: answered after {waited:?}, the maximum wait is {MAX_WAIT:?}"
        );
        assert_eq!(answer["events"].as_array().unwrap().len(), 0);
        assert_eq!(answer["lastEventId"], chat.log.position().as_str());
    }
    chat.assert_healthy().await;
}

// ---------------------------------------------------------------------------------------
// POST /api/messages
// ---------------------------------------------------------------------------------------

pub async fn a_message_that_is_not_utf8_is_400(serving: Serving) {
    let chat = Chat::start(serving).await;
    let response = post_message(chat.addr(), b"caf\xe9 \xff").await;
    assert_refused(&response, 400, "UTF-8");
    assert!(chat.log.is_empty(), "nothing was published");
    chat.assert_healthy().await;
}

pub async fn an_oversized_message_is_413(serving: Serving) {
    let chat = Chat::start(serving).await;
    let exactly = vec![b'x'; app::MAX_MESSAGE_BYTES];
    assert_eq!(
        post_message(chat.addr(), &exactly).await.status,
        201,
        "the limit itself is accepted"
    );
    let over = vec![b'x'; app::MAX_MESSAGE_BYTES + 1];
    let response = post_message(chat.addr(), &over).await;
    assert_eq!(response.status, 413, "{:?}", response.text());
    assert_eq!(chat.log.len(), 1, "only the message at the limit was published");
    chat.assert_healthy().await;
}

pub async fn an_empty_message_is_201_and_an_empty_event(serving: Serving) {
    let chat = Chat::start(serving).await;
    let before = chat.log.position();
    let response = post_message(chat.addr(), b"").await;
    assert_eq!(response.status, 201, "{:?}", response.text());
    let id = response.json()["id"].as_str().unwrap().to_owned();
    let (_, answer) = long_poll(
        chat.addr(),
        &format!("/api/events?timeout=0&lastEventId={before}"),
    )
    .await;
    let events = answer["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["id"], id.as_str());
    assert_eq!(events[0]["event"], "message");
    assert_eq!(events[0]["data"], "");
    chat.assert_healthy().await;
}

// ---------------------------------------------------------------------------------------
// Methods
// ---------------------------------------------------------------------------------------

pub async fn methods_other_than_get_and_head_on_the_event_route_are_405_with_allow(serving: Serving) {
    let chat = Chat::start(serving).await;
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"] {
        let response = raw(
            chat.addr(),
            &request_bytes(method, "/api/events", &[("Accept", b"text/event-stream")], b"x"),
        )
        .await;
        assert_eq!(response.status, 405, "{method}: {:?}", response.text());
        let allow = response
            .header("allow")
            .unwrap_or_else(|| panic!("{method}: no Allow"));
        let allowed: Vec<&str> = allow.split(',').map(str::trim).collect();
        assert!(
            allowed.contains(&"GET") && allowed.contains(&"HEAD"),
            "{method}: Allow {allow:?}"
        );
    }
    assert!(chat.log.is_empty(), "nothing was published");
    chat.assert_healthy().await;
}

pub async fn head_on_the_event_route_is_200_with_headers_and_no_body(serving: Serving) {
    let chat = Chat::start(serving).await;
    let (head, rest) = exchange_head_only(
        chat.addr(),
        &request_bytes("HEAD", "/api/events", &[("Accept", b"text/event-stream")], b""),
    )
    .await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("cache-control"), Some("no-cache"));
    assert_eq!(head.header("x-accel-buffering"), Some("no"));
    assert!(rest.is_empty(), "a HEAD answer has no body, got {rest:?}");

    let started = Instant::now();
    let (head, rest) = exchange_head_only(chat.addr(), &request_bytes("HEAD", "/api/events", &[], b"")).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("application/json"));
    assert!(rest.is_empty(), "a HEAD answer has no body, got {rest:?}");
    assert!(started.elapsed() < MAX_WAIT, "a HEAD long poll does not wait");
    chat.assert_healthy().await;
}

/// This suite's tests, each on `$serving`.
macro_rules! tests {
    ($serving:expr) => {
        $crate::support::server::tests_on! {
            $serving; bad_input; #[tokio::test]
            a_cr_inside_last_event_id_is_a_malformed_head_400,
            an_lf_inside_last_event_id_ends_the_header_and_what_follows_is_a_bad_header_400,
            an_lf_that_starts_a_well_formed_header_line_splits_the_value_the_cursor_is_what_precedes_it,
            a_nul_inside_last_event_id_is_400,
            a_one_megabyte_header_is_431_from_hyper,
            a_cursor_over_256_bytes_but_within_hyper_limits_is_400_too_long,
            a_non_utf8_last_event_id_is_400_naming_the_byte,
            an_unknown_epoch_is_a_reset_then_the_retained_events,
            a_sequence_ahead_of_the_log_is_400,
            an_empty_last_event_id_is_no_cursor,
            two_last_event_id_headers_are_400,
            a_negative_timeout_is_400,
            a_non_numeric_timeout_is_400,
            a_huge_timeout_is_clamped_to_the_maximum_wait,
            a_message_that_is_not_utf8_is_400,
            an_oversized_message_is_413,
            an_empty_message_is_201_and_an_empty_event,
            methods_other_than_get_and_head_on_the_event_route_are_405_with_allow,
            head_on_the_event_route_is_200_with_headers_and_no_body,
        }
    };
}
pub(crate) use tests;
