//! Malformed requests the events route must refuse, shared by the SSE and long-poll suites.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, StatusCode};
use tower_eventstream::MemoryLog;

use crate::support::client::request;

/// A request the events route must refuse with `400` and a plain-text reason.
pub struct BadRequest {
    pub name: &'static str,
    pub path: String,
    pub headers: Vec<(&'static str, Vec<u8>)>,
    /// Text the reason must contain.
    pub reason: &'static str,
}

/// Every malformed cursor or parameter, for `log` served at `/events`.
pub fn malformed_requests(log: &MemoryLog) -> Vec<BadRequest> {
    let long = "a".repeat(300);
    let case = |name, path: String, header: Option<&[u8]>, reason| BadRequest {
        name,
        path,
        headers: header
            .map(|value| vec![("last-event-id", value.to_vec())])
            .unwrap_or_default(),
        reason,
    };
    let future = format!("{}-999999", log.epoch());
    vec![
        case(
            "cursor of 300 bytes in the header",
            "/events".into(),
            Some(long.as_bytes()),
            "300 bytes",
        ),
        case(
            "cursor of 300 bytes in the query",
            format!("/events?lastEventId={long}"),
            None,
            "300 bytes",
        ),
        case(
            "LF in the query cursor",
            "/events?lastEventId=abc%0Adef".into(),
            None,
            "0x0a",
        ),
        case(
            "CR in the query cursor",
            "/events?lastEventId=abc%0Ddef".into(),
            None,
            "0x0d",
        ),
        case(
            "CRLF in the query cursor",
            "/events?lastEventId=%0D%0A".into(),
            None,
            "0x0d",
        ),
        case(
            "non-ASCII bytes in the header",
            "/events".into(),
            Some(b"caf\xc3\xa9"),
            "0xc3",
        ),
        case(
            "non-ASCII bytes in the query",
            "/events?lastEventId=caf%C3%A9".into(),
            None,
            "0xc3",
        ),
        case(
            "broken percent-encoding",
            "/events?lastEventId=ab%zz".into(),
            None,
            "percent-encoding",
        ),
        case(
            "unknown cursor format in the header",
            "/events".into(),
            Some(b"hello"),
            "not issued by this server",
        ),
        case(
            "unknown cursor format in the query",
            "/events?lastEventId=hello".into(),
            None,
            "not issued by this server",
        ),
        case(
            "cursor ahead of the log",
            "/events".into(),
            Some(future.as_bytes()),
            "ahead",
        ),
        case("negative timeout", "/events?timeout=-1".into(), None, "timeout"),
        case(
            "non-numeric timeout",
            "/events?timeout=abc".into(),
            None,
            "timeout",
        ),
        case("empty timeout", "/events?timeout=".into(), None, "timeout"),
        BadRequest {
            name: "two Last-Event-ID headers",
            path: "/events".into(),
            headers: vec![
                ("last-event-id", b"a-1".to_vec()),
                ("last-event-id", b"b-2".to_vec()),
            ],
            reason: "more than one",
        },
    ]
}

/// Sends every malformed request (as SSE when `sse`, else as a long poll) and checks the
/// `400` answer: plain text, with the reason.
pub async fn assert_malformed_requests_refused(addr: SocketAddr, log: &MemoryLog, sse: bool) {
    for case in malformed_requests(log) {
        let mut headers: Vec<(&str, &[u8])> = case
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_slice()))
            .collect();
        if sse {
            headers.push(("accept", b"text/event-stream"));
        }
        let answer = request(addr, Method::GET, &case.path, &headers, Bytes::new()).await;
        let body = String::from_utf8_lossy(&answer.body);
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{}: got {} {body:?}",
            case.name,
            answer.status
        );
        assert_eq!(
            answer.header("content-type"),
            Some("text/plain; charset=utf-8"),
            "{}: content type",
            case.name
        );
        assert!(
            body.contains(case.reason),
            "{}: the reason {body:?} does not mention {:?}",
            case.name,
            case.reason
        );
    }
    assert_eq!(
        log.subscriber_count(),
        0,
        "a refused request holds no subscription"
    );
}

/// A `POST` and a `PUT` on the events route get `405` with `Allow`.
pub async fn assert_other_methods_refused(addr: SocketAddr, sse: bool) {
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let headers: Vec<(&str, &[u8])> = if sse {
            vec![("accept", b"text/event-stream")]
        } else {
            Vec::new()
        };
        let answer = request(
            addr,
            method.clone(),
            "/events",
            &headers,
            Bytes::from_static(b"x"),
        )
        .await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        let allow = answer
            .header("allow")
            .unwrap_or_else(|| panic!("{method}: no Allow header"));
        let allowed: Vec<&str> = allow.split(',').map(str::trim).collect();
        assert!(allowed.contains(&"GET"), "{method}: Allow is {allow:?}");
        assert!(!answer.body.is_empty(), "{method}: a reason is given");
    }
}
