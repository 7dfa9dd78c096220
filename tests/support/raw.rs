//! HTTP/1.1 written and read byte for byte on a `TcpStream`, so that malformed requests can be
//! sent (HTTP crates refuse to build most of them) and responses checked as they are on the
//! wire.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::client::{Answer, Head};
use super::within;

/// Where `needle` starts in `haystack`.
#[allow(dead_code)]
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

// ---------------------------------------------------------------------------------------

/// A request with `Connection: close`, a `Content-Length` when there is a body (or the method
/// is `POST` or `PUT`), and `extra_headers` written byte for byte.
#[allow(dead_code)]
pub fn request_bytes(method: &str, path: &str, extra_headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut out =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n").into_bytes();
    for (name, value) in extra_headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// `GET path` with `Connection: close` and `extra_headers`.
#[allow(dead_code)]
pub fn get_request(path: &str, extra_headers: &[(&str, &[u8])]) -> Vec<u8> {
    request_bytes("GET", path, extra_headers, b"")
}

/// Sends `request` as is on a new connection and reads one complete response.
#[allow(dead_code)]
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
    within("a raw HTTP exchange", async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request).await.expect("write the request");
        read_response(&mut stream).await.expect("read the response")
    })
    .await
}

/// For a `HEAD` (with `Connection: close`): the head, and whatever followed it before the
/// connection closed (a body, which must not be there).
#[allow(dead_code)]
pub async fn exchange_head_only(addr: SocketAddr, request: &[u8]) -> (Head, Vec<u8>) {
    within("a HEAD exchange", async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request).await.expect("write the request");
        let mut rest = Vec::new();
        let head = read_head(&mut stream, &mut rest).await.expect("read the head");
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;
        (head, rest)
    })
    .await
}

/// Reads a response head from `stream`; `leftover` receives the bytes read past it.
#[allow(dead_code)]
pub async fn read_head(stream: &mut TcpStream, leftover: &mut Vec<u8>) -> std::io::Result<Head> {
    let mut buf = std::mem::take(leftover);
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            leftover.extend_from_slice(&buf[end + 4..]);
            return parse_head(&String::from_utf8_lossy(&buf[..end]));
        }
        if buf.len() > 64 * 1024 {
            return Err(std::io::Error::other("response head too large"));
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed before the response head ({} bytes read)",
                    buf.len()
                ),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn parse_head(head: &str) -> std::io::Result<Head> {
    let bad = |what: &str| std::io::Error::other(format!("{what} in the response head {head:?}"));
    let mut lines = head.split("\r\n");
    let mut status_line = lines.next().unwrap_or_default().split(' ');
    let version = match status_line.next() {
        Some("HTTP/1.0") => Version::HTTP_10,
        Some("HTTP/1.1") => Version::HTTP_11,
        _ => return Err(bad("an unknown version")),
    };
    let status = status_line
        .next()
        .and_then(|code| code.parse().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| bad("a bad status"))?;
    let mut headers = HeaderMap::new();
    for (name, value) in lines.filter_map(|line| line.split_once(':')) {
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad("a bad header name"))?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| bad("a bad header value"))?;
        headers.append(name, value);
    }
    Ok(Head {
        status,
        version,
        headers,
    })
}

/// Reads one complete response off `stream` (content-length, chunked, or up to EOF).
#[allow(dead_code)]
pub async fn read_response(stream: &mut TcpStream) -> std::io::Result<Answer> {
    let mut leftover = Vec::new();
    let head = read_head(stream, &mut leftover).await?;
    let status = head.status.as_u16();
    let length = head
        .header("content-length")
        .and_then(|v| v.trim().parse::<usize>().ok());
    let body = if status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else if head.chunked() {
        let mut decoder = Chunked::default();
        let mut body = decoder.feed(&leftover);
        while !decoder.done {
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed inside a chunked body",
                ));
            }
            body.extend(decoder.feed(&chunk[..n]));
        }
        body
    } else if let Some(length) = length {
        let mut body = leftover;
        while body.len() < length {
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(length);
        body
    } else {
        let mut body = leftover;
        stream.read_to_end(&mut body).await?;
        body
    };
    Ok(Answer {
        status: head.status,
        headers: head.headers,
        body: Bytes::from(body),
    })
}

/// An incremental `Transfer-Encoding: chunked` decoder.
#[derive(Debug, Default)]
#[allow(dead_code)]
pub struct Chunked {
    buf: Vec<u8>,
    /// Bytes of the current chunk still to come.
    remaining: usize,
    /// The CRLF after a chunk's data is still to be skipped.
    trailer: bool,
    pub done: bool,
}

#[allow(dead_code)]
impl Chunked {
    /// Feeds wire bytes, returns the body bytes they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            if self.done {
                return out;
            }
            if self.remaining > 0 {
                let take = self.remaining.min(self.buf.len());
                out.extend(self.buf.drain(..take));
                self.remaining -= take;
                if self.remaining > 0 {
                    return out;
                }
                self.trailer = true;
            }
            if self.trailer {
                if self.buf.len() < 2 {
                    return out;
                }
                assert_eq!(&self.buf[..2], b"\r\n", "chunk not followed by CRLF");
                self.buf.drain(..2);
                self.trailer = false;
            }
            let Some(line_end) = find(&self.buf, b"\r\n") else {
                return out;
            };
            let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
            self.buf.drain(..line_end + 2);
            if size == 0 {
                self.done = true;
                return out;
            }
            self.remaining = size;
        }
    }
}
