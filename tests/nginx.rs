//! Header and proxy hygiene: the SSE response carries `x-accel-buffering: no` and
//! `cache-control: no-cache` and no hop-by-hop header (so the same response is valid on
//! HTTP/2), and through a real nginx with its default `proxy_buffering on`, events are not
//! held back and keep-alive comments pass through.
//!
//! nginx (`/usr/sbin/nginx`, Debian `nginx-light`) is started by the test with
//! `tests/nginx/nginx.conf.template`, in the foreground, on a free loopback port, with every
//! file it writes in a fresh temporary directory. Without nginx the proxy tests fail under CI
//! and are skipped (loudly) elsewhere.

#[path = "support/nginx.rs"]
mod nginx_runner;
mod support;

#[path = "../examples/chat/app.rs"]
mod app;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::client::long_poll;
use support::raw::find;
use support::reader::SseReader;
use support::server::{Serving, TestServer};
use support::sse::{SseBlock, SseItem};
use support::{missing_prerequisite, report, wait_until, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::ServiceExt;
use tower_eventstream::{Event, EventLogService, MemoryLog, StreamConfig};

/// How long an event or a keep-alive may take to come through the proxy.
const THROUGH: Duration = Duration::from_secs(2);

/// The next event through the proxy, which must arrive within [`THROUGH`].
async fn next_event_through(sse: &mut SseReader) -> SseBlock {
    tokio::time::timeout(THROUGH, sse.next_event())
        .await
        .unwrap_or_else(|_| panic!("no event through nginx within {THROUGH:?}"))
}

/// Headers that describe one connection (RFC 9110 §7.6.1, RFC 9113 §8.2.2): forbidden in
/// HTTP/2 and not to be forwarded by a proxy.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "proxy-authenticate",
];

fn chat(keep_alive: Duration) -> (MemoryLog, axum::Router) {
    let log = MemoryLog::new();
    let config = StreamConfig::default().keep_alive(keep_alive);
    (log.clone(), app::router(app::memory_rooms(&log), config))
}

// ---------------------------------------------------------------------------------------
// Headers, in process and on HTTP/2
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn sse_and_long_poll_responses_carry_no_hop_by_hop_headers() {
    let service = EventLogService::new(MemoryLog::new());
    let sse = service
        .clone()
        .oneshot(
            http::Request::get("/events")
                .header("accept", "text/event-stream")
                .body(())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(sse.headers()["content-type"], "text/event-stream");
    assert_eq!(sse.headers()["cache-control"], "no-cache");
    assert_eq!(sse.headers()["x-accel-buffering"], "no");
    let poll = service
        .oneshot(http::Request::get("/events?timeout=0").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(poll.headers()["cache-control"], "no-store");
    for response_headers in [sse.headers(), poll.headers()] {
        for name in HOP_BY_HOP {
            assert!(
                !response_headers.contains_key(name),
                "`{name}` is a hop-by-hop header: {response_headers:?}"
            );
        }
    }
}

#[tokio::test]
async fn over_http2_the_stream_opens_with_the_proxy_headers() {
    let (log, router) = chat(Duration::from_secs(15));
    let server = TestServer::start(Serving::Axum, router).await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    // HTTP/2 with prior knowledge (h2c), which axum::serve speaks alongside HTTP/1.1.
    let (mut sender, connection) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    let request = http::Request::get(format!("http://{}/api/events", server.addr))
        .header("accept", "text/event-stream")
        .body(Empty::new())
        .unwrap();
    let response = within("the HTTP/2 response", sender.send_request(request))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");
    for name in HOP_BY_HOP {
        assert!(!headers.contains_key(name), "`{name}` on HTTP/2: {headers:?}");
    }
    let mut body = response.into_body();
    let opening = within("the opening frame", body.frame()).await.unwrap().unwrap();
    let opening = opening.into_data().unwrap();
    assert!(opening.starts_with(b":ok\n"), "{opening:?}");
    log.push(Event::new("over h2").with_name("message").unwrap())
        .unwrap();
    let frame = within("an event frame", body.frame()).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(frame.data_ref().unwrap()).into_owned();
    assert!(text.contains("data: over h2\n"), "{text:?}");
}

// ---------------------------------------------------------------------------------------
// Through nginx
// ---------------------------------------------------------------------------------------

/// nginx proxying to the chat app, started with the runner shared with the benchmark.
struct Proxy {
    _nginx: nginx_runner::Nginx,
    addr: SocketAddr,
}

impl Proxy {
    /// Starts nginx proxying to `upstream`, or `None` (after a loud skip) when nginx is not
    /// installed and CI is not set.
    async fn start(upstream: SocketAddr, test: &str) -> Option<Proxy> {
        let Some(binary) = nginx_runner::binary() else {
            missing_prerequisite(test, "nginx not found (Debian package nginx-light)");
            return None;
        };
        let template = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/nginx/nginx.conf.template"
        ))
        .expect("tests/nginx/nginx.conf.template");
        let fields = [("UPSTREAM_PORT", upstream.port().to_string())];
        let nginx = nginx_runner::start(&binary, "eventstream-test-nginx", &template, &fields)
            .unwrap_or_else(|error| panic!("nginx did not start: {error}"));
        let addr = SocketAddr::from(([127, 0, 0, 1], nginx.port));
        Some(Proxy { _nginx: nginx, addr })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_nginx_each_event_arrives_before_the_next_is_published_and_keep_alives_pass() {
    let test = "nginx::through_nginx_each_event_arrives_before_the_next_is_published_and_keep_alives_pass";
    let (log, router) = chat(Duration::from_millis(200));
    let server = TestServer::start(Serving::Axum, router).await;
    let Some(nginx) = Proxy::start(server.addr, test).await else {
        return;
    };

    let mut sse = SseReader::raw(nginx.addr, "/api/events", None).await;
    assert_eq!(sse.head.header("content-type"), Some("text/event-stream"));
    assert_eq!(sse.head.header("cache-control"), Some("no-cache"));
    assert_eq!(
        sse.head.header("x-accel-buffering"),
        None,
        "nginx consumes X-Accel-Buffering and does not forward it"
    );
    wait_until("the proxied subscription", || log.subscriber_count() == 1).await;

    // Each event, a few bytes long (far below any proxy buffer), must arrive before the next
    // one is published.
    let mut worst = Duration::ZERO;
    for n in 0..10 {
        let published = Instant::now();
        let stored = log
            .push(Event::new(format!("event {n}")).with_name("message").unwrap())
            .unwrap();
        let event = next_event_through(&mut sse).await;
        worst = worst.max(published.elapsed());
        assert_eq!(event.data.as_deref(), Some(format!("event {n}").as_str()));
        assert_eq!(event.id.as_deref(), Some(stored.id().unwrap().as_str()));
    }

    // Idle: keep-alive comments (every 200 ms) come through the proxy as they are sent.
    let idle = Instant::now();
    let mut comments = 0;
    while comments < 3 {
        let item = tokio::time::timeout(THROUGH, sse.next_item())
            .await
            .unwrap_or_else(|_| panic!("no keep-alive through nginx within {THROUGH:?}"));
        match item {
            Some(SseItem::Comment(_)) => comments += 1,
            Some(other) => panic!("only keep-alive comments while idle, got {other:?}"),
            None => panic!("the stream ended"),
        }
    }
    let idle = idle.elapsed();
    report(&format!(
        "nginx: worst publish-to-arrival through the proxy {worst:.1?}; 3 keep-alive comments in {idle:.1?}"
    ));
    assert!(
        idle < Duration::from_millis(1500),
        "keep-alive comments were held back: {idle:?}"
    );

    // A reconnect through the proxy resumes with Last-Event-ID.
    let cursor = log.position();
    drop(sse);
    log.push(Event::new("while away").with_name("message").unwrap())
        .unwrap();
    let mut sse = SseReader::raw(nginx.addr, "/api/events", Some(cursor.as_str())).await;
    let event = next_event_through(&mut sse).await;
    assert_eq!(event.data.as_deref(), Some("while away"));

    // A long poll through the proxy.
    let (_, answer) = long_poll(nginx.addr, &format!("/api/events?timeout=0&lastEventId={cursor}")).await;
    assert_eq!(answer["events"][0]["data"], "while away");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_x_accel_buffering_nginx_holds_the_events_back() {
    let test = "nginx::without_x_accel_buffering_nginx_holds_the_events_back";
    // The control for the test above: the `/buffered/` location ignores X-Accel-Buffering,
    // so nginx's default buffering applies and small events do not come through promptly
    // (with an HTTP/1.0 upstream, not even the response head does).
    let (log, router) = chat(Duration::from_secs(60));
    let server = TestServer::start(Serving::Axum, router).await;
    let Some(nginx) = Proxy::start(server.addr, test).await else {
        return;
    };
    let mut stream = TcpStream::connect(nginx.addr).await.unwrap();
    stream
        .write_all(
            b"GET /buffered/api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
        )
        .await
        .unwrap();
    wait_until("the proxied subscription", || log.subscriber_count() == 1).await;
    log.push(Event::new("held back?").with_name("message").unwrap())
        .unwrap();
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(800), async {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(
        find(&received, b"held back?").is_none(),
        "with buffering on, nginx forwarded a small event at once ({:?}): the unbuffered test would prove nothing",
        String::from_utf8_lossy(&received)
    );

    // Held, not lost: once nginx's buffers fill up, everything comes through.
    for n in 0..16 {
        log.push(
            Event::new(format!("filler {n} {}", "x".repeat(16 * 1024)))
                .with_name("message")
                .unwrap(),
        )
        .unwrap();
    }
    within("the buffered stream to be flushed", async {
        let mut buf = [0u8; 16 * 1024];
        while find(&received, b"held back?").is_none() {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the stream ended");
            received.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    report("nginx: with X-Accel-Buffering ignored, the first event came only after nginx's buffers filled");
}
