//! The chat example's rooms over real TCP: `/api/rooms/{room}/events` and
//! `/api/rooms/{room}/messages`, one `Topics` registry behind them, `/api/events` and
//! `/api/messages` as the room `lobby`; and the page's room switch and its comeback after a
//! refusal, in real browsers (`tests/browser/rooms.mjs`).

mod support;

#[path = "../examples/chat/app.rs"]
mod app;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::json;
use tower_eventstream::{MakeLog, MemoryLog, MemoryLogBuilder, StreamConfig, Topics};

use support::browser::{on_each_engine, run_scenario, Engine};
use support::client::{get, long_poll, poll_cursor, poll_events, post_created, post_text, request, Answer};
use support::reader::SseReader;
use support::seen::SeenRequests;
use support::server::{Serving, TestServer};
use support::sse::SseClient;
use support::{wait_until, within};

/// The chat over `rooms` on `axum::serve`, as the example's `main` serves it.
async fn chat<M: MakeLog>(rooms: &Topics<M>, config: StreamConfig) -> TestServer {
    TestServer::start(Serving::Axum, app::router(rooms.clone(), config)).await
}

fn memory_rooms() -> Topics<MemoryLogBuilder> {
    Topics::new(MemoryLog::builder())
}

fn events(room: &str) -> String {
    format!("/api/rooms/{room}/events")
}

/// `answer` (to `what`) must be `400` with a message that names every one of `names`.
fn assert_refused(what: &str, answer: &Answer, names: &[&str]) {
    let text = answer.text();
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{what}: {text}");
    assert!(
        names.iter().all(|name| text.contains(name)),
        "{what}: a message naming {names:?}: {text:?}"
    );
}

/// Posts `text` to `room`; returns the id.
async fn post_ok(addr: SocketAddr, room: &str, text: &str) -> String {
    post_created(addr, &format!("/api/rooms/{room}/messages"), text).await
}

/// The next `n` events of `client`: `(id, data)`, each a `message`.
async fn messages(client: &mut SseClient, n: usize) -> Vec<(String, String)> {
    let events = client.take(n).await;
    assert!(events.iter().all(|e| e.event == "message"), "{events:?}");
    events.into_iter().map(|e| (e.id, e.data)).collect()
}

/// Long polls `path` from `cursor` until `n` events have come: `(id, data)` of each.
async fn poll_messages(addr: SocketAddr, path: &str, mut cursor: String, n: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        let (_, answer) = long_poll(addr, &format!("{path}?lastEventId={cursor}&timeout=2000")).await;
        assert_eq!(answer["reset"], false, "{answer}");
        let batch = poll_events(&answer);
        assert!(!batch.is_empty(), "the poll returned nothing: {answer}");
        out.extend(batch.into_iter().map(|(id, event, data)| {
            assert_eq!(event, "message");
            (id, data)
        }));
        cursor = poll_cursor(&answer);
    }
    out
}

/// The live end of `path`, for a long poll to start from.
async fn poll_start(addr: SocketAddr, path: &str) -> String {
    let (_, answer) = long_poll(addr, &format!("{path}?timeout=0")).await;
    poll_cursor(&answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rooms_are_isolated_on_sse_and_long_poll() {
    let rooms = memory_rooms();
    let server = chat(&rooms, StreamConfig::default()).await;
    let addr = server.addr;
    let mut lobby = SseClient::connect(addr, &events("lobby"), None).await;
    let mut kitchen = SseClient::connect(addr, &events("kitchen"), None).await;
    let lobby_cursor = poll_start(addr, &events("lobby")).await;
    let kitchen_cursor = poll_start(addr, &events("kitchen")).await;

    let (mut to_lobby, mut to_kitchen) = (Vec::new(), Vec::new());
    for n in 0..5 {
        let text = format!("kitchen {n}");
        to_kitchen.push((post_ok(addr, "kitchen", &text).await, text));
        let text = format!("lobby {n}");
        to_lobby.push((post_ok(addr, "lobby", &text).await, text));
    }
    // A last one in each room, so that anything of the other room would have come before it.
    let text = "kitchen end".to_owned();
    to_kitchen.push((post_ok(addr, "kitchen", &text).await, text));
    let text = "lobby end".to_owned();
    to_lobby.push((post_ok(addr, "lobby", &text).await, text));

    assert_eq!(messages(&mut kitchen, 6).await, to_kitchen, "SSE of the kitchen");
    assert_eq!(messages(&mut lobby, 6).await, to_lobby, "SSE of the lobby");
    assert_eq!(
        poll_messages(addr, &events("kitchen"), kitchen_cursor, 6).await,
        to_kitchen,
        "long poll of the kitchen"
    );
    assert_eq!(
        poll_messages(addr, &events("lobby"), lobby_cursor, 6).await,
        to_lobby,
        "long poll of the lobby"
    );
    assert_eq!(rooms.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_resumes_exactly_once_after_a_cut_while_both_rooms_get_messages() {
    let rooms = memory_rooms();
    let server = chat(&rooms, StreamConfig::default()).await;
    let addr = server.addr;

    let mut kitchen = SseClient::connect(addr, &events("kitchen"), None).await;
    let mut seen = Vec::new();
    for n in 0..3 {
        let text = format!("before {n}");
        seen.push((post_ok(addr, "kitchen", &text).await, text));
        post_ok(addr, "lobby", &format!("lobby before {n}")).await;
    }
    assert_eq!(messages(&mut kitchen, 3).await, seen);
    let last = kitchen.last_event_id().to_owned();
    assert_eq!(last, seen[2].0);
    drop(kitchen); // cut mid-stream

    let mut missed = Vec::new();
    for n in 0..4 {
        post_ok(addr, "lobby", &format!("lobby away {n}")).await;
        let text = format!("away {n}");
        missed.push((post_ok(addr, "kitchen", &text).await, text));
    }

    let mut kitchen = SseClient::connect(addr, &events("kitchen"), Some(&last)).await;
    assert_eq!(
        messages(&mut kitchen, 4).await,
        missed,
        "exactly the missed kitchen messages"
    );
    post_ok(addr, "lobby", "lobby after").await;
    let after = post_ok(addr, "kitchen", "after").await;
    assert_eq!(
        messages(&mut kitchen, 1).await,
        [(after, "after".to_owned())],
        "then the live ones: no duplicate, nothing of the lobby"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_room_name_is_400_with_a_message_on_every_route() {
    let rooms = memory_rooms();
    let server = chat(&rooms, StreamConfig::default()).await;
    let addr = server.addr;
    let too_long = "x".repeat(65);
    for room in ["a%20b", too_long.as_str(), "a:b", "caf%C3%A9"] {
        let sse: &[(&str, &[u8])] = &[("accept", b"text/event-stream")];
        let answers = [
            (
                "SSE",
                request(addr, Method::GET, &events(room), sse, Bytes::new()).await,
            ),
            (
                "long poll",
                get(addr, &format!("{}?timeout=0", events(room))).await,
            ),
            (
                "POST",
                post_text(addr, &format!("/api/rooms/{room}/messages"), "hi".to_owned()).await,
            ),
        ];
        for (what, answer) in answers {
            assert_refused(
                &format!("{what} {room}"),
                &answer,
                &["invalid topic", "topic key"],
            );
        }
    }
    assert!(rooms.is_empty(), "no room was opened");
    // The longest name is a room.
    post_ok(addr, &"x".repeat(64), "64 is fine").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_routes_are_the_lobby() {
    let rooms = memory_rooms();
    let server = chat(&rooms, StreamConfig::default()).await;
    let addr = server.addr;
    let mut old = SseClient::connect(addr, "/api/events", None).await;
    let mut new = SseClient::connect(addr, &events("lobby"), None).await;
    let old_cursor = poll_start(addr, "/api/events").await;

    let first = post_ok(addr, "lobby", "to the lobby's room route").await;
    let second = post_created(addr, "/api/messages", "to the old route").await;
    post_ok(addr, "kitchen", "elsewhere").await;
    let third = post_ok(addr, "lobby", "to the lobby again").await;
    let expected = vec![
        (first, "to the lobby's room route".to_owned()),
        (second, "to the old route".to_owned()),
        (third, "to the lobby again".to_owned()),
    ];
    assert_eq!(messages(&mut old, 3).await, expected, "/api/events");
    assert_eq!(messages(&mut new, 3).await, expected, "/api/rooms/lobby/events");
    assert_eq!(poll_messages(addr, "/api/events", old_cursor, 3).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_memory_room_answers_an_old_cursor_with_reset() {
    let rooms = Topics::builder(MemoryLog::builder())
        .idle_eviction(Duration::from_millis(200))
        .build();
    // Keep-alives make the server notice a client gone soon.
    let server = chat(
        &rooms,
        StreamConfig::default().keep_alive(Duration::from_millis(100)),
    )
    .await;
    let addr = server.addr;

    let mut client = SseClient::connect(addr, &events("kitchen"), None).await;
    let id = post_ok(addr, "kitchen", "soon forgotten").await;
    assert_eq!(messages(&mut client, 1).await[0].0, id);
    drop(client);
    wait_until("the kitchen to be evicted", || rooms.is_empty()).await;

    let mut client = SseClient::connect(addr, &events("kitchen"), Some(&id)).await;
    let first = client.next().await;
    assert_eq!(first.event, "reset", "{first:?}");
    let after = post_ok(addr, "kitchen", "a new history").await;
    assert_eq!(
        messages(&mut client, 1).await,
        [(after, "a new history".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_room_refuses_a_new_reader_for_now() {
    let rooms = Topics::builder(MemoryLog::builder())
        .max_subscribers_per_topic(1)
        .build();
    let config = StreamConfig::default().retry(Duration::from_millis(300));
    let server = chat(&rooms, config).await;
    let addr = server.addr;

    let holder = SseClient::connect(addr, &events("kitchen"), None).await;
    wait_until("the first reader", || rooms.subscriber_count() == 1).await;

    // SSE: 200, a retry hint, a clean end, so that a browser comes back.
    let mut refused = SseReader::connect(addr, &events("kitchen"), None).await;
    let content_type = refused.header("content-type").expect("a content type").to_owned();
    assert!(content_type.starts_with("text/event-stream"), "{content_type}");
    let body = within("the refusal to end", refused.read_to_end()).await;
    assert!(body.lines().any(|line| line.starts_with("retry:")), "{body:?}");
    assert!(!body.contains("data:"), "no event: {body:?}");

    // Long poll: 503 with Retry-After.
    let answer = get(addr, &format!("{}?timeout=0", events("kitchen"))).await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.text()
    );
    let retry_after: u64 = answer
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!(retry_after >= 1, "{retry_after}");

    // Another room has room; the kitchen does again once its reader leaves.
    let mut lobby = SseClient::connect(addr, "/api/events", None).await;
    drop(holder);
    wait_until("the first reader to leave", || rooms.subscriber_count() == 1).await;
    let mut kitchen = SseClient::connect(addr, &events("kitchen"), None).await;
    let id = post_ok(addr, "kitchen", "in at last").await;
    assert_eq!(messages(&mut kitchen, 1).await, [(id, "in at last".to_owned())]);
    let id = post_ok(addr, "lobby", "still here").await;
    assert_eq!(messages(&mut lobby, 1).await, [(id, "still here".to_owned())]);
}

// ---------------------------------------------------------------------------------------
// The page
// ---------------------------------------------------------------------------------------

/// The page's EventSource, refused while a Rust client holds the lobby's only place, keeps
/// coming back by itself, gets in once the place is free, and receives what is posted then.
async fn a_page_under_a_refusal_comes_back_once_there_is_room(engine: Engine, test: &str) {
    if !engine.available(test) {
        return;
    }
    let rooms = Topics::builder(MemoryLog::builder())
        .max_subscribers_per_topic(1)
        .build();
    let config = StreamConfig::default().retry(Duration::from_millis(300));
    let seen = SeenRequests::default();
    let server = TestServer::start(
        Serving::HyperUtil,
        seen.record(app::router(rooms.clone(), config)),
    )
    .await;
    let addr = server.addr;
    let mut holder = Some(SseClient::connect(addr, &events("lobby"), None).await);
    wait_until("the Rust reader", || rooms.subscriber_count() == 1).await;

    let base = format!("http://{addr}");
    let result = run_scenario(engine, "rooms.mjs", &base, &["refusal"], async |command: &str| {
        match command {
            "release" => {
                // Refused so far: the page's attempts are seen, none is counted.
                let attempts = seen.to(&events("lobby")).len();
                drop(holder.take().ok_or("released twice")?);
                wait_until("the Rust reader to leave", || rooms.subscriber_count() == 0).await;
                Ok(json!(attempts))
            }
            "wait-subscribed" => {
                wait_until("the page's reader", || rooms.subscriber_count() == 1).await;
                Ok(json!(rooms.subscriber_count()))
            }
            _ => Err(format!("unknown command {command:?}")),
        }
    })
    .await;
    assert_eq!(result["received"], json!(["after the refusal"]));
    let attempts = seen.to(&events("lobby"));
    // The Rust reader's request, the page's refused ones, and the one let in.
    assert!(
        attempts.len() >= 4,
        "{engine}: the page came back by itself: {attempts:?}"
    );
    assert!(
        attempts[1..].iter().all(|s| s.sse && s.query.is_none()),
        "{engine}: every attempt is the EventSource's own: {attempts:?}"
    );
}

on_each_engine!(
    a_page_under_a_refusal_comes_back_once_there_is_room,
    a_page_under_a_refusal_comes_back_once_there_is_room_in_chromium,
    a_page_under_a_refusal_comes_back_once_there_is_room_in_firefox,
);

/// The page's room switch: `#room` picks the room, the input changes it, each room's page
/// sees only that room's messages, on SSE and long polling; an invalid name connects nowhere.
async fn the_page_switches_rooms_by_its_fragment(engine: Engine, test: &str) {
    if !engine.available(test) {
        return;
    }
    let rooms = memory_rooms();
    let seen = SeenRequests::default();
    // The chat's own settings: a page shows its room's recent messages first.
    let config = app::config().retry(Duration::from_millis(300));
    let server = TestServer::start(
        Serving::HyperUtil,
        seen.record(app::router(rooms.clone(), config)),
    )
    .await;
    let base = format!("http://{}", server.addr);
    let result = run_scenario(engine, "rooms.mjs", &base, &["switch"], async |command: &str| {
        match command.split_whitespace().collect::<Vec<_>>().as_slice() {
            // A long-poll page is "open" only after its first answer: wait until its first
            // poll is held by the server instead.
            ["wait-readers", room, count] => {
                let count: usize = count.parse().map_err(|_| format!("bad count in {command:?}"))?;
                let log = rooms.log(room).await.map_err(|e| e.to_string())?;
                wait_until("the room's readers", || log.subscriber_count() >= count).await;
                Ok(json!(log.subscriber_count()))
            }
            _ => Err(format!("unknown command {command:?}")),
        }
    })
    .await;
    assert_eq!(result["kitchen"], json!(["for the kitchen"]));
    assert_eq!(result["garden"], json!(["for the garden"]));
    // A page opened on a room shows its recent messages first.
    assert_eq!(
        result["polled"],
        json!([
            "for the kitchen",
            "for the kitchen again",
            "polled in the kitchen"
        ])
    );
    assert!(
        !seen
            .all()
            .iter()
            .any(|s| s.path.contains("a%20b") || s.path.contains("a b")),
        "{engine}: an invalid room is never asked for: {:?}",
        seen.all()
    );
    assert!(!seen.to(&events("garden")).is_empty());
}

on_each_engine!(
    the_page_switches_rooms_by_its_fragment,
    the_page_switches_rooms_by_its_fragment_in_chromium,
    the_page_switches_rooms_by_its_fragment_in_firefox,
);

// ---------------------------------------------------------------------------------------
// Several rooms on one connection: `/api/events?room=a&room=b`
// ---------------------------------------------------------------------------------------

const THREE: [&str; 3] = ["a", "b", "c"];
const THREE_ROOMS: &str = "/api/events?room=a&room=b&room=c";
const PER_ROOM: usize = 30;

/// A task per room of `THREE`, each posting `PER_ROOM` messages (`<room> <n>`) to its room.
fn post_to_each_room(addr: SocketAddr) -> Vec<tokio::task::JoinHandle<()>> {
    THREE
        .iter()
        .map(|room| {
            tokio::spawn(async move {
                for n in 0..PER_ROOM {
                    post_ok(addr, room, &format!("{room} {n}")).await;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect()
}

/// What each room of `THREE` was sent, in order.
fn sent_to_each_room() -> std::collections::BTreeMap<String, Vec<String>> {
    THREE
        .iter()
        .map(|room| {
            (
                room.to_string(),
                (0..PER_ROOM).map(|n| format!("{room} {n}")).collect(),
            )
        })
        .collect()
}

/// Each room of `THREE` with nothing received yet.
fn none_yet() -> std::collections::BTreeMap<String, Vec<String>> {
    THREE.iter().map(|room| (room.to_string(), Vec::new())).collect()
}

/// `(room, name)` of a multi-room SSE event type `<room>:<name>`.
fn room_and_name(event: &eventsource_stream::Event) -> (&str, &str) {
    event
        .event
        .split_once(':')
        .unwrap_or_else(|| panic!("not a `<room>:<name>` type: {event:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_rooms_on_one_sse_connection_resume_exactly_through_cuts() {
    let rooms = memory_rooms();
    let server = chat(&rooms, StreamConfig::default()).await;
    let addr = server.addr;

    let mut client = SseClient::connect(addr, THREE_ROOMS, None).await;
    let posters = post_to_each_room(addr);
    let total = THREE.len() * PER_ROOM;
    let mut received = none_yet();
    let (mut count, mut cuts) = (0, 0);
    while count < total {
        let event = client.next().await;
        let (room, name) = room_and_name(&event);
        assert_eq!(name, "message", "{event:?}");
        assert!(event.id.contains('~'), "a composite cursor: {event:?}");
        received
            .get_mut(room)
            .unwrap_or_else(|| panic!("a room not asked for: {event:?}"))
            .push(event.data.clone());
        count += 1;
        // Cut mid-stream every 13 events (6 times in 90), while the rooms get messages.
        if count % 13 == 0 {
            let cursor = client.last_event_id().to_owned();
            drop(client);
            client = SseClient::connect(addr, THREE_ROOMS, Some(&cursor)).await;
            cuts += 1;
        }
    }
    for poster in posters {
        within("a poster", poster).await.expect("the poster");
    }
    assert!(cuts >= 5, "{cuts} cuts");
    assert_eq!(
        received,
        sent_to_each_room(),
        "every message once, in each room's order"
    );

    // Nothing more is owed: a last message per room comes next, with no duplicate before it.
    for room in THREE {
        post_ok(addr, room, &format!("{room} end")).await;
    }
    let mut last: Vec<String> = client.take(3).await.into_iter().map(|e| e.data).collect();
    last.sort();
    assert_eq!(last, ["a end", "b end", "c end"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_rooms_in_one_long_poll_resume_exactly() {
    let rooms = memory_rooms();
    let server = chat(&rooms, StreamConfig::default()).await;
    let addr = server.addr;

    let (_, answer) = long_poll(addr, &format!("{THREE_ROOMS}&timeout=0")).await;
    let mut cursor = poll_cursor(&answer);
    let posters = post_to_each_room(addr);
    let total = THREE.len() * PER_ROOM;
    let mut received = none_yet();
    let (mut count, mut polls) = (0, 0);
    while count < total {
        let query = format!(
            "{THREE_ROOMS}&lastEventId={}&timeout=2000",
            cursor.replace(',', "%2C")
        );
        let (_, answer) = long_poll(addr, &query).await;
        assert_eq!(answer["reset"], false, "{answer}");
        for event in answer["events"].as_array().expect("events") {
            assert_eq!(event["event"], "message", "{event}");
            let room = event["topic"]
                .as_str()
                .unwrap_or_else(|| panic!("a topic: {event}"));
            let data = event["data"].as_str().expect("data").to_owned();
            received
                .get_mut(room)
                .unwrap_or_else(|| panic!("a room not asked for: {event}"))
                .push(data);
            count += 1;
        }
        cursor = poll_cursor(&answer);
        assert!(cursor.contains('~'), "a composite cursor: {cursor}");
        polls += 1;
    }
    for poster in posters {
        within("a poster", poster).await.expect("the poster");
    }
    assert!(polls >= 5, "resumed {polls} times");
    assert_eq!(
        received,
        sent_to_each_room(),
        "every message once, in each room's order"
    );
    let query = format!(
        "{THREE_ROOMS}&lastEventId={}&timeout=0",
        cursor.replace(',', "%2C")
    );
    let (_, answer) = long_poll(addr, &query).await;
    assert_eq!(answer["events"], json!([]), "nothing owed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_events_takes_every_room_of_its_query() {
    let rooms = memory_rooms();
    let server = chat(&rooms, StreamConfig::default()).await;
    let addr = server.addr;

    // One room: that room as its own route serves it (plain ids, type `message`).
    let mut one = SseClient::connect(addr, "/api/events?room=kitchen", None).await;
    // Percent-decoded: `a%2Eb` is the room `a.b`.
    let mut two = SseClient::connect(addr, "/api/events?room=kitchen&room=a%2Eb", None).await;
    let kitchen = post_ok(addr, "kitchen", "in the kitchen").await;
    post_ok(addr, "lobby", "not asked for").await;
    let dotted = post_ok(addr, "a.b", "in a.b").await;
    assert_eq!(
        messages(&mut one, 1).await,
        [(kitchen.clone(), "in the kitchen".to_owned())]
    );
    let events = two.take(2).await;
    let got: Vec<_> = events
        .iter()
        .map(|e| (e.event.as_str(), e.data.as_str()))
        .collect();
    assert_eq!(
        got,
        [("kitchen:message", "in the kitchen"), ("a.b:message", "in a.b")]
    );
    assert_eq!(events[1].id, format!("kitchen~{kitchen},a.b~{dotted}"));

    // A name that is not a room's: 400, whichever of the names it is.
    let sse: &[(&str, &[u8])] = &[("accept", b"text/event-stream")];
    for query in [
        "room=a%20b",
        "room=kitchen&room=a%20b",
        "room=caf%C3%A9&room=kitchen",
        "room=",
        "room=a%ZZ",
    ] {
        let path = format!("/api/events?{query}");
        for (what, answer) in [
            ("SSE", request(addr, Method::GET, &path, sse, Bytes::new()).await),
            ("long poll", get(addr, &format!("{path}&timeout=0")).await),
        ] {
            assert_refused(&format!("{what} {path}"), &answer, &["topic key"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_rooms_for_one_cursor_is_400_naming_the_limit() {
    let rooms = memory_rooms();
    let server = chat(&rooms, StreamConfig::default()).await;
    let addr = server.addr;
    let names: Vec<String> = (0..10).map(|n| format!("room-{n:015}")).collect();
    assert!(names.iter().all(|name| name.len() == 20));
    let query: Vec<String> = names.iter().map(|name| format!("room={name}")).collect();
    let path = format!("/api/events?{}", query.join("&"));
    let sse: &[(&str, &[u8])] = &[("accept", b"text/event-stream")];
    for (what, answer) in [
        ("SSE", request(addr, Method::GET, &path, sse, Bytes::new()).await),
        ("long poll", get(addr, &format!("{path}&timeout=0")).await),
    ] {
        assert_refused(what, &answer, &["limit", "256"]);
    }
    assert!(rooms.is_empty(), "no room was opened");
}

/// The page following three rooms on one EventSource (`/#kitchen,garden,attic`) through five
/// cuts of every connection of the server while all three rooms get messages: every message
/// once, in each room's order, the EventSource never closed (`tests/browser/multiplex.mjs`).
/// Long polling over several rooms is tested over TCP above.
async fn the_page_follows_three_rooms_on_one_connection_through_cuts(engine: Engine, test: &str) {
    if !engine.available(test) {
        return;
    }
    const ROOMS: [&str; 3] = ["kitchen", "garden", "attic"];
    let rooms = memory_rooms();
    let seen = SeenRequests::default();
    let config = StreamConfig::default().retry(Duration::from_millis(300));
    let server = TestServer::start_cuttable(
        Serving::HyperUtil,
        seen.record(app::router(rooms.clone(), config)),
    )
    .await;
    let base = format!("http://{}", server.addr);
    let mut published: std::collections::BTreeMap<&str, Vec<String>> =
        ROOMS.iter().map(|room| (*room, Vec::new())).collect();
    let mut cuts = 0;
    let result = run_scenario(engine, "multiplex.mjs", &base, &[], async |command: &str| {
        let words: Vec<&str> = command.split_whitespace().collect();
        // `n` messages to each room, interleaved: `[{room, data}]`.
        let publish = async |published: &mut std::collections::BTreeMap<&str, Vec<String>>,
                             words: &[&str]| {
            let [_, count, prefix] = words else {
                return Err(format!("expected `<command> <n> <prefix>`: {command:?}"));
            };
            let count: usize = count.parse().map_err(|_| format!("bad count in {command:?}"))?;
            let mut batch = Vec::new();
            for n in 0..count {
                for room in ROOMS {
                    let data = format!("{prefix} {room} {n}");
                    let event = tower_eventstream::Event::new(&data).with_name("message").unwrap();
                    rooms.append(room, event).await.map_err(|e| e.to_string())?;
                    published.get_mut(room).unwrap().push(data.clone());
                    batch.push(json!({ "room": room, "data": data }));
                }
            }
            Ok(json!(batch))
        };
        match words.first().copied() {
            Some("wait-readers") => {
                let count: usize = words
                    .get(1)
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| format!("bad count in {command:?}"))?;
                for room in ROOMS {
                    let log = rooms.log(room).await.map_err(|e| e.to_string())?;
                    wait_until("the room's readers", || log.subscriber_count() >= count).await;
                }
                Ok(json!(count))
            }
            Some("publish") => publish(&mut published, &words).await,
            Some("cut-publish") => {
                if server.cut_and_settle().await == 0 {
                    return Err("no connection to cut".to_owned());
                }
                cuts += 1;
                publish(&mut published, &words).await
            }
            _ => Err(format!("unknown command {command:?}")),
        }
    })
    .await;
    assert_eq!(cuts, 5, "{engine}: five cuts");
    for room in ROOMS {
        assert_eq!(
            result["sse"][room],
            json!(published[room]),
            "{engine}: SSE, {room}"
        );
    }
    // One EventSource: its first request has no cursor, each reconnect carries the composite
    // one in `Last-Event-ID`, every one to the same URL. (The other SSE requests are the
    // refused page's, for ten rooms.)
    let (streams, others): (Vec<_>, Vec<_>) = (seen.to("/api/events").into_iter())
        .filter(|s| s.sse)
        .partition(|s| s.query.as_deref() == Some("room=kitchen&room=garden&room=attic"));
    assert!(
        streams.len() >= 6,
        "{engine}: a reconnect after each cut: {streams:?}"
    );
    assert!(streams[0].last_event_id.is_none(), "{engine}: {streams:?}");
    assert!(
        streams[1..].iter().all(|s| s
            .last_event_id
            .as_deref()
            .is_some_and(|id| id.contains("kitchen~"))),
        "{engine}: every reconnect resumes from the composite cursor: {streams:?}"
    );
    assert_eq!(
        others.len(),
        1,
        "{engine}: the refused page asked once: {others:?}"
    );
}

on_each_engine!(
    the_page_follows_three_rooms_on_one_connection_through_cuts,
    the_page_follows_three_rooms_on_one_connection_through_cuts_in_chromium,
    the_page_follows_three_rooms_on_one_connection_through_cuts_in_firefox,
);
