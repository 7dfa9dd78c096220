//! Reading a request head in the lean path, and deciding who answers it.

use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};

use super::body::RequestBody;

/// More header lines than this in one request are refused with 431 (hyper's limit is 100).
const MAX_HEADERS: usize = 100;

/// The start of the HTTP/2 connection preface: such connections go to hyper.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// What the bytes read so far hold.
pub(super) enum Head {
    /// Not a whole head yet.
    Partial,
    /// A body-less `GET` or `HEAD`: the lean path answers it.
    Lean(Box<LeanRequest>),
    /// Anything else (a request with a body, an upgrade, HTTP/2 from the connection's first
    /// byte): hyper takes the connection, starting from the bytes read so far.
    Delegate,
    /// Not HTTP: answered with this status, then the connection is closed.
    Refuse(StatusCode),
}

/// A request the lean path answers.
pub(super) struct LeanRequest {
    pub(super) request: Request<RequestBody>,
    /// Bytes of the head, to drop from the read buffer.
    pub(super) head_len: usize,
    /// The connection may carry another request after this one.
    pub(super) keep_alive: bool,
    /// A `HEAD` request: the response has no body.
    pub(super) head_only: bool,
}

/// Parses the head at the start of `bytes`; `at_start`: they are the first bytes of the
/// connection, where (only) the HTTP/2 preface may be.
pub(super) fn parse(bytes: &[u8], at_start: bool) -> Head {
    let preface_len = bytes.len().min(HTTP2_PREFACE.len());
    // Later on, `PRI * HTTP/2.0` is an HTTP/1 request line with a version httparse refuses
    // (hyper refuses it too): the connection does not turn into HTTP/2 midway.
    if at_start && preface_len >= 3 && bytes[..preface_len] == HTTP2_PREFACE[..preface_len] {
        return if preface_len == HTTP2_PREFACE.len() {
            Head::Delegate
        } else {
            Head::Partial
        };
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Head::Refuse(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        }
        Err(_) => return Head::Refuse(StatusCode::BAD_REQUEST),
    };
    let method = match parsed.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        // Requests that may carry a body are hyper's to read.
        _ => return Head::Delegate,
    };
    let version = match parsed.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let Ok(uri) = parsed.path.unwrap_or("/").parse::<Uri>() else {
        return Head::Refuse(StatusCode::BAD_REQUEST);
    };
    let mut header_map = HeaderMap::with_capacity(parsed.headers.len());
    for header in parsed.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) else {
            return Head::Refuse(StatusCode::BAD_REQUEST);
        };
        header_map.append(name, value);
    }
    if has_body_or_upgrade(&header_map) {
        return Head::Delegate;
    }
    let keep_alive = version == Version::HTTP_11 && !has_token(&header_map, CONNECTION, "close");
    let head_only = method == Method::HEAD;
    let mut request = Request::new(RequestBody::empty());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = header_map;
    Head::Lean(Box::new(LeanRequest {
        request,
        head_len,
        keep_alive,
        head_only,
    }))
}

/// A body (of any length but zero), `Expect: 100-continue` or a protocol upgrade: all
/// things hyper already does right.
fn has_body_or_upgrade(headers: &HeaderMap) -> bool {
    let content_length = headers.get_all(CONTENT_LENGTH);
    let zero_length = content_length.iter().all(|value| value.as_bytes() == b"0");
    !zero_length
        || headers.contains_key(TRANSFER_ENCODING)
        || headers.contains_key(UPGRADE)
        || headers.contains_key(EXPECT)
}

fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .to_str()
            .is_ok_and(|value| value.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lean(bytes: &[u8]) -> LeanRequest {
        match parse(bytes, true) {
            Head::Lean(request) => *request,
            _ => panic!("expected a lean request for {:?}", String::from_utf8_lossy(bytes)),
        }
    }

    #[test]
    fn body_less_get_is_lean() {
        let bytes = b"GET /events?x=1 HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\nGET";
        let request = lean(bytes);
        assert_eq!(request.head_len, bytes.len() - 3);
        assert!(request.keep_alive);
        assert!(!request.head_only);
        assert_eq!(request.request.uri().query(), Some("x=1"));
        assert_eq!(request.request.headers()["accept"], "text/event-stream");
    }

    #[test]
    fn close_and_http10_end_the_connection() {
        assert!(!lean(b"GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n").keep_alive);
        assert!(!lean(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(lean(b"HEAD / HTTP/1.1\r\n\r\n").head_only);
    }

    #[test]
    fn requests_with_bodies_upgrades_and_http2_go_to_hyper() {
        for bytes in [
            &b"POST /m HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"[..],
            b"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            assert!(
                matches!(parse(bytes, true), Head::Delegate),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        assert!(matches!(parse(b"PRI * HT", true), Head::Partial));
        assert!(matches!(parse(b"GET / HTTP/1.1\r\nHost", true), Head::Partial));
    }

    #[test]
    fn the_http2_preface_counts_only_at_the_start_of_the_connection() {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        assert!(matches!(parse(preface, true), Head::Delegate));
        assert!(matches!(
            parse(preface, false),
            Head::Refuse(StatusCode::BAD_REQUEST)
        ));
        assert!(matches!(parse(b"PRI * HT", false), Head::Partial));
        // Another method than GET or HEAD goes to hyper, as always.
        assert!(matches!(parse(b"PRI * HTTP/1.1\r\n\r\n", false), Head::Delegate));
    }

    #[test]
    fn malformed_heads_are_refused() {
        let refused = |bytes: &[u8]| match parse(bytes, true) {
            Head::Refuse(status) => status,
            _ => panic!("expected a refusal for {:?}", String::from_utf8_lossy(bytes)),
        };
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nLast-Event-ID: a\rb\r\n\r\n"),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nLast-Event-ID: a\0b\r\n\r\n"),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(refused(b"GET /\x01 HTTP/1.1\r\n\r\n"), StatusCode::BAD_REQUEST);
        let many: Vec<u8> = std::iter::once(&b"GET / HTTP/1.1\r\n"[..])
            .chain(std::iter::repeat_n(&b"X-A: b\r\n"[..], MAX_HEADERS + 1))
            .chain(std::iter::once(&b"\r\n"[..]))
            .flatten()
            .copied()
            .collect();
        assert_eq!(refused(&many), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
}
