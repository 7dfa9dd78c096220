//! Where the browser decides: the HTML standard's EventSource processing model (§9.2), in
//! Chromium and Firefox, against servers this test starts (`tests/browser/whatwg.mjs`). The
//! server-side obligations that need no browser are in `tests/whatwg.rs`.
//!
//! One scenario per engine runs every check below in one browser; each check's doc comment
//! quotes the sentence of the standard it is about.

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::FromRef;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use support::browser::{on_each_engine, publish_messages, run_scenario, Engine};
use support::report;
use support::seen::{Seen, SeenRequests};
use support::server::{Serving, TestServer};
use tower_eventstream::{
    Delivery, Event, EventFeed, EventId, EventLogService, MemoryLog, Resumed, StreamConfig, StreamRequest,
};
use tower_http::cors::CorsLayer;

/// A source that moves the client's cursor to `cp-1` with a checkpoint, then ends.
struct OneCheckpoint(bool);

impl EventFeed for OneCheckpoint {
    type Error = Infallible;

    fn poll_delivery(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Delivery, Infallible>>> {
        let sent = std::mem::replace(&mut self.get_mut().0, true);
        Poll::Ready((!sent).then(|| Ok(Delivery::Checkpoint(EventId::new("cp-1").unwrap()))))
    }

    // It names its positions: its end adds no closing block of the crate's own.
    fn honours_cursor(&self) -> bool {
        true
    }
}

/// The state of `/raw/{name}`: how often each was requested, and the stream settings.
#[derive(Clone, FromRef)]
struct Raw {
    hits: Arc<Mutex<HashMap<String, usize>>>,
    config: StreamConfig,
}

/// `/raw/{name}`: the first request gets one block of the crate's making and the stream
/// ends; every later request gets `204`, which closes the `EventSource` for good.
async fn raw(
    Path(name): Path<String>,
    State(hits): State<Arc<Mutex<HashMap<String, usize>>>>,
    request: StreamRequest,
) -> Response {
    let hit = {
        let mut hits = hits.lock().unwrap();
        let count = hits.entry(name.clone()).or_default();
        *count += 1;
        *count
    };
    if hit > 1 || name == "stop" {
        return StatusCode::NO_CONTENT.into_response();
    }
    // One block, and the stream ends with nothing after it: a source that names its
    // positions gets no closing `end` checkpoint, so the block alone decides the cursor.
    let once = |event: Event| Resumed::new(futures_util::stream::iter([Ok::<_, Infallible>(event)]));
    match name.as_str() {
        // An id-only block: `id: idonly-1` and a blank line.
        "idonly" => request
            .respond(once(Event::empty().with_id("idonly-1").unwrap()))
            .await
            .into_response(),
        "checkpoint" => request.respond(OneCheckpoint(false)).await.into_response(),
        "charset" => {
            let mut response = request
                .respond(once(Event::new("hello").with_id("cs-1").unwrap()))
                .await
                .into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream; charset=utf-8"),
            );
            response
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn count(command: &[&str]) -> Result<usize, String> {
    command
        .get(1)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no count in {command:?}"))
}

fn data(published: &Value) -> Vec<Value> {
    published
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"].clone())
        .collect()
}

fn second_request(requests: &[Seen]) -> &Seen {
    requests
        .get(1)
        .unwrap_or_else(|| panic!("no reconnect: {requests:?}"))
}

async fn where_the_browser_decides(engine: Engine, test: &str) {
    if !engine.available(test) {
        return;
    }
    let config = StreamConfig::default()
        .retry(Duration::from_millis(100))
        .max_connection_age(Duration::from_millis(700));
    let log = MemoryLog::new();
    let seen = SeenRequests::default();
    let hits = Arc::new(Mutex::new(HashMap::new()));
    let page_server = TestServer::start_cuttable(
        Serving::HyperUtil,
        seen.record(
            Router::new()
                .route(
                    "/blank",
                    get(|| async { Html("<!doctype html><title>blank</title>") }),
                )
                .route(
                    "/raw/{name}",
                    get(raw).with_state(Raw {
                        hits,
                        config: config.clone(),
                    }),
                )
                .route(
                    "/moved/{status}",
                    get(|Path(status): Path<u16>| async move {
                        let status = StatusCode::from_u16(status).unwrap();
                        (status, [(header::LOCATION, "/api/events")])
                    }),
                )
                .route_service(
                    "/api/events",
                    EventLogService::new(log.clone()).with_config(config.clone()),
                ),
        ),
    )
    .await;
    let base = format!("http://{}", page_server.addr);

    let cors_log = MemoryLog::new();
    let cors_seen = SeenRequests::default();
    let cors = CorsLayer::new()
        .allow_origin(HeaderValue::from_str(&base).unwrap())
        .allow_credentials(true)
        .allow_headers([header::HeaderName::from_static("last-event-id")]);
    let cors_service = EventLogService::new(cors_log.clone()).with_config(config.clone());
    let cors_server = TestServer::start_cuttable(
        Serving::HyperUtil,
        cors_seen.record(
            Router::new()
                .route_service(
                    "/events",
                    tower::ServiceBuilder::new()
                        .layer(cors)
                        .service(cors_service.clone()),
                )
                .route_service("/no-cors", cors_service),
        ),
    )
    .await;
    let cors_base = format!("http://localhost:{}", cors_server.addr.port());

    let result = run_scenario(
        engine,
        "whatwg.mjs",
        &base,
        &[&cors_base],
        async |command: &str| {
            let words: Vec<&str> = command.split_whitespace().collect();
            let prefix = words.get(2).copied().unwrap_or("event");
            match words.first().copied() {
                Some("publish") => Ok(publish_messages(&log, count(&words)?, prefix)),
                Some("publish-cors") => Ok(publish_messages(&cors_log, count(&words)?, prefix)),
                Some("cut-cors-publish") => {
                    if cors_server.cut_and_settle().await == 0 {
                        return Err("no connection to cut".to_owned());
                    }
                    Ok(publish_messages(&cors_log, count(&words)?, prefix))
                }
                _ => Err(format!("unknown command {command:?}")),
            }
        },
    )
    .await;

    // Measured, not asserted (the standard allows it; browsers differ): "If the field name is
    // `id`: If the field value does not contain U+0000 NULL, then set the last event ID buffer
    // to the field value" runs for an id-only block although "If the data buffer is an empty
    // string, set the data buffer and the event type buffer to the empty string and return"
    // dispatches nothing.
    let id_only = second_request(&seen.to("/raw/idonly")).last_event_id.clone();
    report(&format!(
        "browser_whatwg: {engine}: an id-only block (`id: idonly-1` + blank line) makes the next \
         reconnect send Last-Event-ID {id_only:?}"
    ));
    assert_eq!(result["idonly"]["messages"], json!([]));

    // A checkpoint (`id`, `event: checkpoint`, empty `data:`): "set the last event ID
    // string of the event source to the value of the last event ID buffer" happens at
    // dispatch, so the reconnect carries the id, and "If the event type buffer has a value
    // other than the empty string, change the type of the newly created event to equal the
    // value" means no `message` listener fires.
    let checkpoint = second_request(&seen.to("/raw/checkpoint")).last_event_id.clone();
    assert_eq!(
        checkpoint.as_deref(),
        Some("cp-1"),
        "{engine}: the checkpoint moved the cursor"
    );
    assert_eq!(
        result["checkpoint"]["messages"],
        json!([]),
        "no message listener fired"
    );
    assert_eq!(result["checkpoint"]["checkpoints"], 1);

    // "If res's status is not 200, or if res's `Content-Type` is not `text/event-stream`,
    // then fail the connection" — a MIME type with a charset parameter is text/event-stream.
    assert_eq!(
        result["charset"]["messages"],
        json!(["hello"]),
        "{engine}: charset parameter"
    );

    // "Clients will reconnect if the connection is closed; a client can be told to stop
    // reconnecting using the HTTP 204 No Content response code."
    assert_eq!(
        result["stop"]["closed"], true,
        "{engine}: 204 closed the EventSource"
    );
    assert_eq!(result["stop"]["readyState"], 2);
    assert_eq!(seen.to("/raw/stop").len(), 1, "{engine}: no reconnect after 204");

    // "Event stream requests can be redirected using HTTP 301 and 307 redirects as with
    // normal HTTP requests." The stream works behind the redirect, reconnects included, and
    // each reconnect carries Last-Event-ID. Where a reconnect goes (the original URL, so
    // through the redirect again, or straight to the redirect's target) is measured.
    for status in ["301", "307"] {
        let name = format!("redirect{status}");
        let outcome = &result[&name];
        assert_eq!(
            outcome["messages"],
            json!(data(&outcome["published"])),
            "{engine}: {name}"
        );
        assert_eq!(outcome["closed"], false);
        let hops = seen.to(&format!("/moved/{status}")).len();
        assert!(hops >= 1, "{engine}: {name}: the redirect was followed");
        report(&format!(
            "browser_whatwg: {engine}: behind a {status}, {hops} request(s) went through the redirect \
             for {} stream(s)",
            outcome["opens"]
        ));
        let resumed_from = outcome["published"][1]["id"].as_str().unwrap();
        assert!(
            seen.to("/api/events")
                .iter()
                .any(|s| s.last_event_id.as_deref() == Some(resumed_from)),
            "{engine}: {name}: the redirected reconnect carried Last-Event-ID {resumed_from}"
        );
    }

    // "withCredentials ... the CORS mode is 'cors' and credentials mode is 'include'":
    // the stream works across origins when the answer allows the page's origin with
    // credentials, reconnects included; without a CORS answer the browser fails it.
    let outcome = &result["cors"];
    assert_eq!(
        outcome["messages"],
        json!(data(&outcome["published"])),
        "{engine}: CORS"
    );
    let requests = cors_seen.to("/events");
    assert!(
        requests
            .iter()
            .all(|s| s.origin.as_deref() == Some(base.as_str())),
        "{requests:?}"
    );
    let resumed_from = outcome["published"][1]["id"].as_str().unwrap();
    assert!(
        requests
            .iter()
            .any(|s| s.last_event_id.as_deref() == Some(resumed_from)),
        "{engine}: the cross-origin reconnect carried Last-Event-ID: {requests:?}"
    );
    assert_eq!(
        result["nocors"]["closed"], true,
        "{engine}: no CORS answer, no stream"
    );
    assert_eq!(result["nocors"]["messages"], json!([]));
}

on_each_engine!(
    where_the_browser_decides,
    where_the_browser_decides_in_chromium,
    where_the_browser_decides_in_firefox,
);
