//! A passing fault never closes a browser's `EventSource` for good (crate docs, "What a
//! failure answers"), in Chromium and in Firefox: the chat page, cut off while messages are
//! published, reconnects during the fault, and ends with every message exactly once, in order.
//!
//! - a page that has seen no event yet: its only cursor is the stream's opening checkpoint
//!   (Firefox ignores an id-only block, so without the checkpoint it would reconnect with no
//!   `Last-Event-ID` and miss what was published while it was away);
//! - the chat on Redis, Redis stopped while the page is away and more than the process's
//!   window is published: the reconnect is held open until Redis returns;
//! - an inner service behind `EventStreamLayer` failing while the page reconnects.

mod support;

#[path = "../examples/chat/app.rs"]
mod app;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::Router;
use support::browser::{on_each_engine, publish_messages, run_scenario, Engine};
use support::seen::SeenRequests;
use support::server::{Serving, TestServer};
use support::wait_until;
use tower::service_fn;
use tower_eventstream::{EventLog, EventStreamLayer, LastEventId, MemoryLog, StreamConfig};

/// Where the chat page reads the lobby.
const LOBBY_EVENTS: &str = "/api/rooms/lobby/events";

async fn a_page_that_has_seen_no_event_resumes_from_the_opening_checkpoint(engine: Engine, test: &str) {
    if !engine.available(test) {
        return;
    }
    let log = MemoryLog::new();
    publish_messages(&log, 3, "earlier");
    let config = StreamConfig::default().retry(Duration::from_millis(300));
    let seen = SeenRequests::default();
    let server = TestServer::start_cuttable(
        Serving::HyperUtil,
        seen.record(app::router(app::memory_rooms(&log), config)),
    )
    .await;
    let opened_at = log.position();
    let base = format!("http://{}", server.addr);
    let result = run_scenario(
        engine,
        "held.mjs",
        &base,
        &["cut-publish", "0"],
        async |command: &str| match command {
            "cut-publish" => {
                if server.cut_and_settle().await == 0 {
                    return Err("no connection to cut".to_owned());
                }
                Ok(publish_messages(&log, 3, "away"))
            }
            _ => Err(format!("unknown command {command:?}")),
        },
    )
    .await;
    assert_eq!(result["received"], 3);
    let requests = seen.to(LOBBY_EVENTS);
    assert!(requests.len() >= 2, "{requests:?}");
    assert_eq!(requests[0].last_event_id, None);
    assert_eq!(
        requests[1].last_event_id.as_deref(),
        Some(opened_at.as_str()),
        "{engine}: the reconnect carried the opening checkpoint's id: {requests:?}"
    );
}

on_each_engine!(
    a_page_that_has_seen_no_event_resumes_from_the_opening_checkpoint,
    a_page_that_has_seen_no_event_resumes_from_the_opening_checkpoint_in_chromium,
    a_page_that_has_seen_no_event_resumes_from_the_opening_checkpoint_in_firefox,
);

/// The chat's router with the lobby's event route answered by `EventStreamLayer` over an inner service
/// that fails (a transient error) while `failing` is set, counting its failures.
fn chat_behind_a_failing_layer(
    log: &MemoryLog,
    config: StreamConfig,
    failing: &Arc<AtomicBool>,
    failures: &Arc<AtomicUsize>,
) -> Router {
    let (inner_log, failing, failures) = (log.clone(), Arc::clone(failing), Arc::clone(failures));
    let inner = service_fn(move |request: Request| {
        let (log, failing, failures) = (
            inner_log.clone(),
            failing.load(Ordering::SeqCst),
            Arc::clone(&failures),
        );
        async move {
            if failing {
                failures.fetch_add(1, Ordering::SeqCst);
                return Err(std::io::Error::other("the upstream feed is restarting"));
            }
            let cursor = request.extensions().get::<LastEventId>().cloned();
            log.subscribe(cursor.as_ref())
                .await
                .map_err(|error| std::io::Error::other(error.to_string()))
        }
    });
    let events = tower::ServiceBuilder::new()
        .layer(EventStreamLayer::new(config.clone()))
        .service(inner);
    Router::new()
        .route_service(LOBBY_EVENTS, events)
        .fallback_service(app::router(app::memory_rooms(log), config))
}

async fn an_inner_service_error_during_a_reconnect_does_not_close_the_page(engine: Engine, test: &str) {
    if !engine.available(test) {
        return;
    }
    let log = MemoryLog::new();
    let config = StreamConfig::default().retry(Duration::from_millis(300));
    let (failing, failures) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let server = TestServer::start_cuttable(
        Serving::HyperUtil,
        chat_behind_a_failing_layer(&log, config, &failing, &failures),
    )
    .await;
    let base = format!("http://{}", server.addr);
    let result = run_scenario(
        engine,
        "held.mjs",
        &base,
        &["fail-cut-publish", "2"],
        async |command: &str| {
            match command {
                "fail-cut-publish" => {
                    failing.store(true, Ordering::SeqCst);
                    if server.cut_and_settle().await == 0 {
                        return Err("no connection to cut".to_owned());
                    }
                    let away = publish_messages(&log, 3, "away");
                    // The page comes back (each time told to retry later) at least twice.
                    wait_until("two failed reconnects", || failures.load(Ordering::SeqCst) >= 2).await;
                    failing.store(false, Ordering::SeqCst);
                    Ok(away)
                }
                _ => Err(format!("unknown command {command:?}")),
            }
        },
    )
    .await;
    assert_eq!(result["received"], 5);
}

on_each_engine!(
    an_inner_service_error_during_a_reconnect_does_not_close_the_page,
    an_inner_service_error_during_a_reconnect_does_not_close_the_page_in_chromium,
    an_inner_service_error_during_a_reconnect_does_not_close_the_page_in_firefox,
);

#[cfg(feature = "redis")]
mod on_redis {
    use super::*;
    use std::time::Instant;

    use serde_json::{json, Value};
    use support::redis::RedisServer;
    use tower_eventstream::{Event, RedisLog, Topics};

    /// Redis stopped while the page is cut off and more than the window was published; the
    /// page reconnects during the outage and is held; after Redis returns it has everything.
    async fn a_reconnect_during_a_redis_outage_is_held_until_redis_returns(engine: Engine, test: &str) {
        if !engine.available(test) {
            return;
        }
        let Some(mut redis) = RedisServer::start_persistent() else {
            return;
        };
        let logs = RedisLog::builder(redis.url(), "chat:")
            .window(4)
            .command_timeout(Duration::from_millis(500))
            .connect_logs()
            .await
            .expect("connect RedisLogs");
        let log = logs.log(app::LOBBY).await.expect("the lobby's RedisLog");
        let rooms = Topics::new(logs);
        rooms.pin(app::LOBBY, log.clone()).expect("a valid room");
        // The page comes back 1 s after the cut: time enough to publish and stop Redis first.
        let config = StreamConfig::default()
            .retry(Duration::from_millis(1000))
            .keep_alive(Duration::from_millis(250));
        let seen = SeenRequests::default();
        let server =
            TestServer::start_cuttable(Serving::HyperUtil, seen.record(app::router(rooms, config))).await;
        let base = format!("http://{}", server.addr);
        let mut outage: Option<(Instant, Instant)> = None;
        let result = run_scenario(
            engine,
            "held.mjs",
            &base,
            &["outage", "2"],
            async |command: &str| {
                if command != "outage" {
                    return Err(format!("unknown command {command:?}"));
                }
                let before = seen.to(LOBBY_EVENTS).len();
                if server.cut_and_settle().await == 0 {
                    return Err("no connection to cut".to_owned());
                }
                let mut away = Vec::new();
                for n in 0..10 {
                    let text = format!("away {n}");
                    let stored = log
                        .append(Event::new(&text).with_name("message").unwrap())
                        .await
                        .map_err(|e| e.to_string())?;
                    away.push(json!({ "id": stored.id().unwrap().as_str(), "data": text }));
                }
                redis.kill();
                let down = Instant::now();
                wait_until("the page's reconnect", || seen.to(LOBBY_EVENTS).len() > before).await;
                // Held for a while: keep-alives flow, the subscription is retried.
                tokio::time::sleep(Duration::from_millis(1500)).await;
                redis.restart();
                outage = Some((down, Instant::now()));
                Ok(Value::Array(away))
            },
        )
        .await;
        assert_eq!(result["received"], 12);
        let (down, up) = outage.expect("the outage happened");
        let requests = seen.to(LOBBY_EVENTS);
        let during: Vec<_> = requests.iter().filter(|s| s.at > down && s.at < up).collect();
        assert!(
            !during.is_empty(),
            "{engine}: the page reconnected during the outage: {requests:?}"
        );
        assert!(
            during.iter().all(|s| s.last_event_id.is_some()),
            "with its cursor: {during:?}"
        );
    }

    on_each_engine!(
        a_reconnect_during_a_redis_outage_is_held_until_redis_returns,
        a_reconnect_during_a_redis_outage_is_held_until_redis_returns_in_chromium,
        a_reconnect_during_a_redis_outage_is_held_until_redis_returns_in_firefox,
    );
}
