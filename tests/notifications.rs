//! The notifications example's streams over real TCP, on `axum::serve` as its `main` serves
//! them: each user's own topic plus the announcements (plus the audit for admins) on one
//! connection, plain event names, exact resumption of SSE and long polls, a gap reported for
//! its topic. (Its other routes: `tests/notifications_routes.rs`; its page in real browsers:
//! `tests/browser_notifications.rs`.)

mod support;

#[path = "../examples/notifications/app.rs"]
mod app;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;
use tower_eventstream::{MemoryLog, MemoryLogBuilder, StreamConfig, Topics};

use support::client::{post_created, request};
use support::server::{Serving, TestServer};
use support::sse::SseClient;

const EVENTS: &str = "/api/notifications";

async fn start(topics: &Topics<MemoryLogBuilder>) -> TestServer {
    TestServer::start(
        Serving::Axum,
        app::router(topics.clone(), StreamConfig::default()),
    )
    .await
}

fn memory() -> Topics<MemoryLogBuilder> {
    Topics::new(MemoryLog::builder())
}

fn cookie(user: &str) -> String {
    format!("user={user}")
}

/// `user`'s SSE stream (resumed from `last_event_id` if given).
async fn stream(addr: SocketAddr, user: &str, last_event_id: Option<&str>) -> SseClient {
    let cookie = cookie(user);
    SseClient::connect_with(addr, EVENTS, &[("cookie", cookie.as_bytes())], last_event_id).await
}

/// A long poll of `user`'s events after `cursor` (from the live end without one): its JSON.
async fn poll(addr: SocketAddr, user: &str, cursor: Option<&str>, timeout_ms: u64) -> Value {
    // As a browser's `encodeURIComponent` sends it.
    let cursor = cursor.map(|c| format!("lastEventId={}&", c.replace(',', "%2C")));
    let path = format!("{EVENTS}?{}timeout={timeout_ms}", cursor.unwrap_or_default());
    let cookie = cookie(user);
    let headers: &[(&str, &[u8])] = &[("cookie", cookie.as_bytes())];
    let answer = request(addr, Method::GET, &path, headers, Bytes::new()).await;
    assert_eq!(answer.status, StatusCode::OK, "long poll: {}", answer.text());
    answer.json()
}

fn cursor_of(answer: &Value) -> String {
    answer["lastEventId"].as_str().expect("lastEventId").to_owned()
}

async fn notify(addr: SocketAddr, user: &str, text: &str) -> String {
    post_created(addr, &format!("/api/users/{user}/notifications"), text).await
}

async fn announce(addr: SocketAddr, text: &str) -> String {
    post_created(addr, "/api/announcements", text).await
}

async fn audit(addr: SocketAddr, text: &str) -> String {
    post_created(addr, "/api/audit", text).await
}

/// Events of `client` up to and including the one whose data is `last`: `(name, data)`.
async fn until(client: &mut SseClient, last: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    loop {
        let event = client.next().await;
        out.push((event.event, event.data));
        if out.last().unwrap().1 == last {
            return out;
        }
    }
}

/// Each name's data, in the order received: topics interleave by arrival, each in its order.
fn by_name(events: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, data) in events {
        out.entry(name.clone()).or_default().push(data.clone());
    }
    out
}

/// `(topic, name, data)` of every event of a long-poll answer.
fn polled(answer: &Value) -> Vec<(String, String, String)> {
    let events = answer["events"].as_array().expect("events");
    let field = |e: &Value, name: &str| {
        e[name]
            .as_str()
            .unwrap_or_else(|| panic!("{name} in {e}"))
            .to_owned()
    };
    events
        .iter()
        .map(|e| (field(e, "topic"), field(e, "event"), field(e, "data")))
        .collect()
}

/// Each `<topic> <name>`'s data in a long-poll answer, in the order received.
fn by_topic(answer: &Value) -> BTreeMap<String, Vec<String>> {
    let events: Vec<(String, String)> = polled(answer)
        .into_iter()
        .map(|(topic, name, data)| (format!("{topic} {name}"), data))
        .collect();
    by_name(&events)
}

fn expect(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(name, data)| (name.to_string(), data.iter().map(|d| d.to_string()).collect()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_sees_their_own_notifications_every_announcement_and_only_admins_the_audit() {
    let topics = memory();
    let server = start(&topics).await;
    let addr = server.addr;
    let mut ada = stream(addr, "ada", None).await;
    let mut bo = stream(addr, "bo", None).await;
    let mut admin = stream(addr, "admin-cy", None).await;
    let ada_from = cursor_of(&poll(addr, "ada", None, 0).await);
    let admin_from = cursor_of(&poll(addr, "admin-cy", None, 0).await);

    let for_ada = notify(addr, "ada", "for ada").await;
    notify(addr, "bo", "for bo").await;
    announce(addr, "hello all").await;
    audit(addr, "ada signed in").await;
    notify(addr, "admin-cy", "for cy").await;
    // Last: whatever else a stream would carry has come before it.
    announce(addr, "end").await;

    let ada_got = until(&mut ada, "end").await;
    let bo_got = until(&mut bo, "end").await;
    let admin_got = until(&mut admin, "end").await;
    // As `eventsource-stream` dispatches them: each event under its own name.
    assert_eq!(
        by_name(&ada_got),
        expect(&[
            ("notification", &["for ada"]),
            ("announcement", &["hello all", "end"])
        ])
    );
    assert_eq!(
        by_name(&bo_got),
        expect(&[
            ("notification", &["for bo"]),
            ("announcement", &["hello all", "end"])
        ]),
        "no audit for a user who is not an admin"
    );
    assert_eq!(
        by_name(&admin_got),
        expect(&[
            ("audit", &["ada signed in"]),
            ("notification", &["for cy"]),
            ("announcement", &["hello all", "end"]),
        ])
    );

    // The long poll: the same, each event with its topic.
    let ada_polled = by_topic(&poll(addr, "ada", Some(&ada_from), 0).await);
    let admin_polled = by_topic(&poll(addr, "admin-cy", Some(&admin_from), 0).await);
    assert_eq!(
        ada_polled,
        expect(&[
            ("user-ada notification", &["for ada"]),
            ("announcements announcement", &["hello all", "end"]),
        ])
    );
    assert_eq!(
        admin_polled,
        expect(&[
            ("user-admin-cy notification", &["for cy"]),
            ("announcements announcement", &["hello all", "end"]),
            ("audit audit", &["ada signed in"]),
        ])
    );

    // The id a POST answers is the event's id in its topic, the `user-ada~` part of the
    // composite cursor a subscriber sees.
    let mut ada = stream(addr, "ada", None).await;
    let id = notify(addr, "ada", "which id?").await;
    let event = ada.next().await;
    assert_eq!(event.data, "which id?");
    let parts: Vec<&str> = event.id.split(',').collect();
    assert!(
        parts.contains(&format!("user-ada~{id}").as_str()),
        "{id} in {}",
        event.id
    );
    assert_ne!(id, for_ada);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_sse_stream_resumes_with_last_event_id_exactly_once_each() {
    let topics = memory();
    let server = start(&topics).await;
    let addr = server.addr;
    let mut ada = stream(addr, "ada", None).await;
    notify(addr, "ada", "before").await;
    announce(addr, "before all").await;
    assert_eq!(ada.take(2).await.len(), 2);
    let cursor = ada.last_event_id().to_owned();
    drop(ada); // cut mid-stream

    for n in 0..4 {
        notify(addr, "ada", &format!("away {n}")).await;
        notify(addr, "bo", &format!("for bo {n}")).await;
        announce(addr, &format!("all {n}")).await;
        audit(addr, &format!("audit {n}")).await;
    }
    let mut ada = stream(addr, "ada", Some(&cursor)).await;
    let missed = ada.take(8).await;
    let missed: Vec<(String, String)> = missed.into_iter().map(|e| (e.event, e.data)).collect();
    assert_eq!(
        by_name(&missed),
        expect(&[
            ("notification", &["away 0", "away 1", "away 2", "away 3"]),
            ("announcement", &["all 0", "all 1", "all 2", "all 3"]),
        ]),
        "exactly what was published while cut, each topic in order"
    );
    notify(addr, "ada", "live").await;
    let next = ada.next().await;
    assert_eq!(
        (next.event.as_str(), next.data.as_str()),
        ("notification", "live"),
        "no duplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_resumes_with_last_event_id_exactly_once_each() {
    let topics = memory();
    let server = start(&topics).await;
    let addr = server.addr;
    let mut cursor = cursor_of(&poll(addr, "admin-bo", None, 0).await);
    let mut sent = Vec::new();
    for n in 0..5 {
        notify(addr, "admin-bo", &format!("bo {n}")).await;
        notify(addr, "ada", &format!("ada {n}")).await;
        announce(addr, &format!("all {n}")).await;
        audit(addr, &format!("audit {n}")).await;
        sent.push(("user-admin-bo", format!("bo {n}")));
        sent.push(("announcements", format!("all {n}")));
        sent.push(("audit", format!("audit {n}")));
    }
    // Resumed poll after poll, a few events at a time, until all have come.
    let mut got = Vec::new();
    let mut polls = 0;
    while got.len() < sent.len() {
        let answer = poll(addr, "admin-bo", Some(&cursor), 2000).await;
        assert_eq!(answer["reset"], false, "{answer}");
        got.extend(polled(&answer));
        cursor = cursor_of(&answer);
        polls += 1;
        if polls == 1 {
            // Between two polls: more while the client is away.
            notify(addr, "admin-bo", "while away").await;
            sent.push(("user-admin-bo", "while away".to_owned()));
        }
    }
    let of = |topic: &str| -> Vec<String> {
        let topic = topic.to_owned();
        sent.iter()
            .filter(|(t, _)| *t == topic)
            .map(|(_, d)| d.clone())
            .collect()
    };
    let got_of = |topic: &str| -> Vec<String> {
        got.iter()
            .filter(|(t, _, _)| t == topic)
            .map(|(_, _, d)| d.clone())
            .collect()
    };
    for topic in ["user-admin-bo", "announcements", "audit"] {
        assert_eq!(got_of(topic), of(topic), "{topic}, once each, in order");
    }
    assert_eq!(got.len(), sent.len(), "nothing else: {got:?}");
    let answer = poll(addr, "admin-bo", Some(&cursor), 0).await;
    assert_eq!(answer["events"], serde_json::json!([]), "nothing owed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_one_topic_is_a_reset_naming_it() {
    let topics = Topics::new(MemoryLog::builder().history(4));
    let server = start(&topics).await;
    let addr = server.addr;
    let mut ada = stream(addr, "ada", None).await;
    let from = cursor_of(&poll(addr, "ada", None, 0).await);
    announce(addr, "first").await;
    ada.next().await;
    let cursor = ada.last_event_id().to_owned();
    drop(ada);
    // While away: more of ada's notifications than her topic holds, two announcements.
    for n in 0..10 {
        notify(addr, "ada", &format!("n{n}")).await;
    }
    announce(addr, "a0").await;
    announce(addr, "a1").await;

    let mut ada = stream(addr, "ada", Some(&cursor)).await;
    let got: Vec<(String, String)> = ada.take(7).await.into_iter().map(|e| (e.event, e.data)).collect();
    assert_eq!(
        by_name(&got),
        expect(&[
            ("reset", &["user-ada"]),
            ("notification", &["n6", "n7", "n8", "n9"]),
            ("announcement", &["a0", "a1"]),
        ])
    );
    let reset_at = got.iter().position(|(name, _)| name == "reset").unwrap();
    let first = got.iter().position(|(name, _)| name == "notification").unwrap();
    assert!(
        reset_at < first,
        "the reset comes before the topic's events: {got:?}"
    );

    let answer = poll(addr, "ada", Some(&from), 0).await;
    assert_eq!(answer["reset"], true, "{answer}");
    let resets: Vec<_> = polled(&answer)
        .into_iter()
        .filter(|(_, name, _)| name == "reset")
        .collect();
    let reset = ("user-ada".to_owned(), "reset".to_owned(), "user-ada".to_owned());
    assert_eq!(resets, [reset], "{answer}");
}
