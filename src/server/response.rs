//! Writing a response in the lean path: the head, and how the body is framed.

use std::cell::RefCell;
use std::time::{Duration, SystemTime};

use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::response::Parts;
use http::{HeaderValue, StatusCode};
use http_body::SizeHint;

/// How the body follows the head on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body is sent (a `HEAD` request, 1xx, 204, 304).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`, for bodies of unknown length.
    Chunked,
}

/// Chooses the framing of a response to a request of HTTP/1.1 (`chunked_allowed`) or 1.0.
///
/// Returns `None` when the body can only be delimited by closing the connection.
pub(super) fn framing(
    parts: &Parts,
    size: &SizeHint,
    head_only: bool,
    chunked_allowed: bool,
) -> Option<Framing> {
    let status = parts.status;
    if head_only
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Some(Framing::None);
    }
    if let Some(exact) = size.exact() {
        return Some(Framing::Length(exact));
    }
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse().ok());
    match declared {
        Some(length) => Some(Framing::Length(length)),
        None if chunked_allowed => Some(Framing::Chunked),
        None => None,
    }
}

/// Writes the status line and headers of `parts` to `out`, with the framing headers of
/// `framing` (or none: the body ends when the connection closes), `Connection: close`
/// when the connection ends after this response, and a `Date` when the service set none.
pub(super) fn encode_head(parts: &Parts, framing: Option<Framing>, close: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut has_date = false;
    for (name, value) in &parts.headers {
        // Framing and connection management are this server's to say.
        if name == TRANSFER_ENCODING
            || name == CONNECTION
            || (name == CONTENT_LENGTH && framing != Some(Framing::None))
        {
            continue;
        }
        has_date |= name == DATE;
        header_line(out, name.as_str().as_bytes(), value.as_bytes());
    }
    match framing {
        Some(Framing::Length(length)) => {
            let mut digits = [0u8; 20];
            header_line(out, b"content-length", format_u64(length, &mut digits));
        }
        Some(Framing::Chunked) => header_line(out, b"transfer-encoding", b"chunked"),
        Some(Framing::None) | None => {}
    }
    if close || framing.is_none() {
        header_line(out, b"connection", b"close");
    }
    if !has_date {
        with_date(|date| header_line(out, b"date", date.as_bytes()));
    }
    out.extend_from_slice(b"\r\n");
}

fn header_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The decimal digits of `n`, written to the end of `buf`.
fn format_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// The head of an HTTP/1.1 chunk of `len` bytes: `<hex>\r\n`.
pub(super) fn chunk_head(len: usize, buf: &mut [u8; 18]) -> &[u8] {
    let digits = ((usize::BITS - len.leading_zeros()).div_ceil(4) as usize).max(1);
    for (i, slot) in buf[..digits].iter_mut().rev().enumerate() {
        *slot = b"0123456789abcdef"[(len >> (4 * i)) & 0xf];
    }
    buf[digits..digits + 2].copy_from_slice(b"\r\n");
    &buf[..digits + 2]
}

thread_local! {
    /// The `Date` value, formatted once per second per thread.
    static DATE_CACHE: RefCell<(u64, HeaderValue)> =
        const { RefCell::new((u64::MAX, HeaderValue::from_static(""))) };
}

fn with_date<R>(f: impl FnOnce(&HeaderValue) -> R) -> R {
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    DATE_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != second {
            let formatted = httpdate::fmt_http_date(now);
            // An IMF-fixdate is visible ASCII.
            cache.1 = HeaderValue::from_str(&formatted).unwrap_or_else(|_| HeaderValue::from_static(""));
            cache.0 = second;
        }
        f(&cache.1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Response;

    fn parts(status: StatusCode, headers: &[(&str, &str)]) -> Parts {
        let mut response = Response::builder().status(status);
        for (name, value) in headers {
            response = response.header(*name, *value);
        }
        response.body(()).unwrap().into_parts().0
    }

    #[test]
    fn chunk_heads_are_lowercase_hex() {
        let mut buf = [0; 18];
        assert_eq!(chunk_head(0, &mut buf), b"0\r\n");
        assert_eq!(chunk_head(15, &mut buf), b"f\r\n");
        assert_eq!(chunk_head(16, &mut buf), b"10\r\n");
        assert_eq!(chunk_head(65_536, &mut buf), b"10000\r\n");
        assert_eq!(
            chunk_head(usize::MAX, &mut buf).len(),
            usize::BITS as usize / 4 + 2
        );
    }

    #[test]
    fn framing_follows_the_body_and_the_request() {
        let ok = parts(StatusCode::OK, &[]);
        assert_eq!(
            framing(&ok, &SizeHint::with_exact(5), false, true),
            Some(Framing::Length(5))
        );
        assert_eq!(
            framing(&ok, &SizeHint::default(), false, true),
            Some(Framing::Chunked)
        );
        assert_eq!(framing(&ok, &SizeHint::default(), false, false), None);
        assert_eq!(
            framing(&ok, &SizeHint::with_exact(5), true, true),
            Some(Framing::None)
        );
        let declared = parts(StatusCode::OK, &[("content-length", "7")]);
        assert_eq!(
            framing(&declared, &SizeHint::default(), false, true),
            Some(Framing::Length(7))
        );
        let no_content = parts(StatusCode::NO_CONTENT, &[]);
        assert_eq!(
            framing(&no_content, &SizeHint::default(), false, true),
            Some(Framing::None)
        );
    }

    #[test]
    fn heads_carry_framing_close_and_date() {
        let response = parts(
            StatusCode::OK,
            &[
                ("content-type", "text/event-stream"),
                ("transfer-encoding", "gzip"),
                ("connection", "x"),
            ],
        );
        let mut out = Vec::new();
        encode_head(&response, Some(Framing::Chunked), true, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"),
            "{text}"
        );
        assert!(
            text.contains("transfer-encoding: chunked\r\nconnection: close\r\ndate: "),
            "{text}"
        );
        assert!(
            !text.contains("gzip") && !text.contains("connection: x"),
            "{text}"
        );
        assert!(text.ends_with(" GMT\r\n\r\n"), "{text}");

        let mut out = Vec::new();
        encode_head(
            &parts(StatusCode::NOT_FOUND, &[]),
            Some(Framing::Length(1234)),
            false,
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 404 Not Found\r\ncontent-length: 1234\r\ndate: "),
            "{text}"
        );
    }
}
