//! The chat example on PostgreSQL rooms (feature `postgres`), over real TCP: events that other
//! programs insert (`psql`, a Rust client in the application's own transaction), two chat
//! instances sharing the rooms, PostgreSQL stopped and started under open streams, and the
//! GUIDE's lines run as written.
//!
//! Each test starts its own PostgreSQL server on a free loopback port and stops it when done.
//! Without PostgreSQL the tests are skipped with a warning, except under CI (`CI` set), where
//! they fail.

#![cfg(feature = "postgres")]

mod support;

#[path = "../examples/chat/app.rs"]
mod app;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use support::client::{long_poll, poll_events, post_message, request};
use support::postgres::PostgresServer;
use support::reader::SseReader;
use support::server::{Serving, TestServer};
use support::sse::{parse_sse, SseClient};
use support::{within, LIMIT};
use tower_eventstream::{PostgresLog, PostgresLogs, StreamConfig, Topics};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// The chat's rooms on the server's database: the room `lobby` is the topic `chat:lobby`,
/// as `cargo run --example chat --features postgres` has them.
async fn rooms(server: &PostgresServer) -> PostgresLogs {
    within(
        "connect_logs",
        PostgresLog::builder(server.url(), "chat:")
            .migrate()
            .connect_logs(),
    )
    .await
    .expect("connect PostgresLogs")
}

/// A chat instance on its own family of the server's rooms, streaming with `config`.
async fn chat_instance(server: &PostgresServer, config: StreamConfig) -> TestServer {
    let rooms = rooms(server).await;
    TestServer::start(Serving::Axum, app::router(Topics::new(rooms), config)).await
}

/// A chat instance for an outage: a window of 4 events per room (a cursor further back needs
/// PostgreSQL), quick failures, keep-alives every 200 ms.
async fn outage_instance(server: &PostgresServer) -> TestServer {
    let rooms = within(
        "connect_logs",
        PostgresLog::builder(server.url(), "chat:")
            .migrate()
            .window(4)
            .command_timeout(Duration::from_millis(500))
            .connect_logs(),
    )
    .await
    .expect("connect PostgresLogs");
    let config = StreamConfig::default().keep_alive(Duration::from_millis(200));
    TestServer::start(Serving::Axum, app::router(Topics::new(rooms), config)).await
}

/// `POST /api/messages`, which must be `201`: the id.
async fn post(addr: SocketAddr, text: &str) -> String {
    let answer = post_message(addr, text).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
    answer.json()["id"].as_str().expect("an id").to_owned()
}

/// `POST /api/rooms/{room}/messages`, which must be `201`: the id.
async fn post_to(addr: SocketAddr, room: &str, text: &str) -> String {
    let answer = request(
        addr,
        Method::POST,
        &format!("/api/rooms/{room}/messages"),
        &[],
        text.to_owned(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
    answer.json()["id"].as_str().expect("an id").to_owned()
}

/// `POST /api/messages` with an `Idempotency-Key`: the status and, on `201`, the id.
async fn post_with_key(addr: SocketAddr, text: &str, key: &str) -> (StatusCode, Option<String>, bool) {
    let headers: &[(&str, &[u8])] = &[
        ("content-type", b"text/plain; charset=utf-8"),
        ("idempotency-key", key.as_bytes()),
    ];
    let answer = request(addr, Method::POST, "/api/messages", headers, text.to_owned()).await;
    let retry_after = answer.header("retry-after").is_some();
    let id = (answer.status == StatusCode::CREATED)
        .then(|| answer.json()["id"].as_str().expect("an id").to_owned());
    (answer.status, id, retry_after)
}

/// Posts `text` as a client that may retry does: with one `Idempotency-Key`, again after each
/// `503`, until it is `201`. The id.
async fn post_until_created(addr: SocketAddr, text: &str, key: &str) -> String {
    let deadline = Instant::now() + LIMIT;
    loop {
        match post_with_key(addr, text, key).await {
            (StatusCode::CREATED, Some(id), _) => return id,
            (StatusCode::SERVICE_UNAVAILABLE, _, true) => {}
            other => panic!("201, or 503 with Retry-After, expected: {other:?}"),
        }
        assert!(Instant::now() < deadline, "PostgreSQL did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An event another program adds with `psql`, committed when this returns: its id.
fn psql_insert(server: &PostgresServer, topic: &str, name: &str, data: &str) -> String {
    server.psql(&format!(
        "INSERT INTO eventstream_events (topic, name, data) VALUES ('{topic}', {name}, {data}) \
         RETURNING xid::text || '-' || seq"
    ))
}

/// Reads whole lines off `raw` into `wire` until `n` keep-alive comments (`:` lines) came.
async fn keep_alives(raw: &mut SseReader, n: usize, wire: &mut String) {
    let mut seen = 0;
    while seen < n {
        let line = raw.read_until("\n").await;
        seen += usize::from(line == ":\n");
        wire.push_str(&line);
    }
}

/// `(id, data)` of every event `eventsource-stream` dispatches for `wire`, checkpoints left
/// out; each must be a `message` (no `reset`: nothing was lost).
fn messages(wire: &str) -> Vec<(String, String)> {
    parse_sse(wire)
        .into_iter()
        .filter(|event| event.event != "checkpoint")
        .map(|event| {
            assert_eq!(event.event, "message", "no reset: nothing was lost");
            (event.id, event.data)
        })
        .collect()
}

/// The GUIDE's PostgreSQL section.
fn guide_section() -> String {
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/GUIDE.md")).unwrap();
    let section = guide
        .split("\n## Past one process: PostgreSQL\n")
        .nth(1)
        .expect("the GUIDE's PostgreSQL section");
    section.split("\n## ").next().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------
// Other programs publish
// ---------------------------------------------------------------------------------------

/// Rows inserted with `psql` reach an open SSE stream of the chat with their name and data
/// (lines and all), under their `<xid>-<seq>` position, which resumes on SSE and long poll;
/// a new page gets them as the room's last messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_inserted_with_psql_reaches_the_chat_and_its_id_resumes() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let chat = chat_instance(&server, app::config()).await;
    let mut client = SseClient::connect(chat.addr, "/api/events", None).await;

    let started = Instant::now();
    let first = psql_insert(&server, "chat:lobby", "'greeting'", "'hello from psql'");
    let event = client.next().await;
    assert_eq!(
        (event.id.as_str(), event.event.as_str(), event.data.as_str()),
        (first.as_str(), "greeting", "hello from psql")
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "promptly: {:?}",
        started.elapsed()
    );
    let (xid, seq) = first.split_once('-').expect("<xid>-<seq>");
    assert!(
        xid.parse::<u64>().is_ok() && seq.parse::<u64>().is_ok(),
        "{first}"
    );
    // Unnamed: a `message`. Two lines, non-ASCII.
    let second = psql_insert(&server, "chat:lobby", "NULL", "E'two\\nlines ✓'");
    let event = client.next().await;
    assert_eq!(
        (event.id.as_str(), event.event.as_str(), event.data.as_str()),
        (second.as_str(), "message", "two\nlines ✓")
    );
    assert_eq!(client.last_event_id(), second);
    // Other rooms' rows are not the lobby's.
    psql_insert(&server, "chat:kitchen", "NULL", "'elsewhere'");
    assert!(client.next_within(Duration::from_millis(300)).await.is_none());
    drop(client);

    // The first id resumes: exactly the second, on SSE and on a long poll.
    let mut resumed = SseClient::connect(chat.addr, "/api/events", Some(&first)).await;
    let event = resumed.next().await;
    assert_eq!(
        (event.id, event.data),
        (second.clone(), "two\nlines ✓".to_owned())
    );
    assert!(resumed.next_within(Duration::from_millis(300)).await.is_none());
    let (_, answer) = long_poll(chat.addr, &format!("/api/events?timeout=0&lastEventId={first}")).await;
    assert_eq!(
        poll_events(&answer),
        [(second.clone(), "message".to_owned(), "two\nlines ✓".to_owned())]
    );

    // A new page without a cursor: the room's last messages first.
    let mut fresh = SseClient::connect(chat.addr, "/api/events", None).await;
    let got: Vec<String> = fresh.take(2).await.into_iter().map(|event| event.id).collect();
    assert_eq!(got, [first, second]);
}

/// An application publishes in its own transaction with the GUIDE's very `INSERT` (through
/// tokio-postgres, as sqlx would send it): the event is delivered once the transaction
/// commits, with the change it announces, and never when it rolls back, neither live nor to
/// a client resuming on another instance from PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_in_the_applications_transaction_is_delivered_on_commit_and_never_on_rollback() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let section = guide_section();
    let insert = section
        .lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix("sqlx::query(\"INSERT INTO eventstream_events")
        })
        .map(|rest| {
            format!(
                "INSERT INTO eventstream_events{}",
                rest.split('"').next().unwrap()
            )
        })
        .expect("the GUIDE's sqlx INSERT");
    assert_eq!(
        insert,
        "INSERT INTO eventstream_events (topic, name, data) VALUES ($1, $2, $3)"
    );

    let (a, b) = (
        chat_instance(&server, StreamConfig::default()).await,
        chat_instance(&server, StreamConfig::default()).await,
    );
    let (mut app, connection) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .expect("connect the application's client");
    tokio::spawn(connection);
    app.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, state text NOT NULL);
         INSERT INTO orders VALUES (17, 'new');",
    )
    .await
    .unwrap();
    let mut client = SseClient::connect(a.addr, "/api/rooms/orders/events", None).await;

    let shipped = app.transaction().await.unwrap();
    shipped
        .execute("UPDATE orders SET state = 'shipped' WHERE id = 17", &[])
        .await
        .unwrap();
    shipped
        .execute(&insert, &[&"chat:orders", &"message", &"order 17 shipped"])
        .await
        .unwrap();
    assert!(
        client.next_within(Duration::from_millis(300)).await.is_none(),
        "not before the commit"
    );
    shipped.commit().await.unwrap();
    let event = client.next().await;
    assert_eq!(
        (event.event.as_str(), event.data.as_str()),
        ("message", "order 17 shipped")
    );
    let shipped_id = event.id;

    let cancelled = app.transaction().await.unwrap();
    cancelled
        .execute("UPDATE orders SET state = 'cancelled' WHERE id = 17", &[])
        .await
        .unwrap();
    cancelled
        .execute(&insert, &[&"chat:orders", &"message", &"order 17 cancelled"])
        .await
        .unwrap();
    cancelled.rollback().await.unwrap();

    let delivered = app.transaction().await.unwrap();
    delivered
        .execute("UPDATE orders SET state = 'delivered' WHERE id = 17", &[])
        .await
        .unwrap();
    delivered
        .execute(&insert, &[&"chat:orders", &"message", &"order 17 delivered"])
        .await
        .unwrap();
    delivered.commit().await.unwrap();

    let event = client.next().await;
    assert_eq!(
        event.data, "order 17 delivered",
        "the rolled-back event is never delivered"
    );
    let delivered_id = event.id;
    assert!(client.next_within(Duration::from_millis(300)).await.is_none());
    let row = app
        .query_one("SELECT state FROM orders WHERE id = 17", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "delivered");

    // On the other instance, which opens the room only now (its window starts where its
    // reader is): what the window lacks is read from PostgreSQL, without the rolled-back row.
    let mut resumed = SseClient::connect(b.addr, "/api/rooms/orders/events", Some(&shipped_id)).await;
    let event = resumed.next().await;
    assert_eq!(
        (event.id, event.data),
        (delivered_id, "order 17 delivered".to_owned())
    );
    assert!(resumed.next_within(Duration::from_millis(300)).await.is_none());
}

/// The GUIDE's `psql` lines, run by `sh` as written with `DATABASE_URL` set, against a chat
/// instance: the message reaches an open stream of the lobby at once, and the finished room's
/// stream ends and refuses posts (`409`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_program_publishes_and_finishes_with_psql_as_the_guide_says() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let section = guide_section();
    let lines: Vec<&str> = section.lines().filter(|line| line.starts_with("psql ")).collect();
    assert!(
        lines.len() == 2
            && lines[0].contains("INSERT INTO eventstream_events")
            && lines[1].contains("eventstream_finish('chat:kitchen')"),
        "the GUIDE's psql lines: {lines:?}"
    );
    // The `psql` the fixture runs (Debian keeps the server's programs off the PATH).
    let psql = server.psql_command("postgres").get_program().to_owned();
    let bin = std::path::Path::new(&psql).parent().map(|dir| dir.to_owned());
    let path = match (bin, std::env::var_os("PATH")) {
        (Some(bin), Some(path)) if !bin.as_os_str().is_empty() => {
            std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&path))).unwrap()
        }
        (_, path) => path.unwrap_or_default(),
    };
    let shell = |line: &str| {
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(line)
            .env("DATABASE_URL", server.url())
            .env("PATH", &path)
            .env("PSQLRC", "/dev/null")
            .output()
            .expect("sh runs");
        assert!(output.status.success(), "{line}: {output:?}");
    };

    let chat = chat_instance(&server, StreamConfig::default()).await;
    let mut lobby = SseClient::connect(chat.addr, "/api/events", None).await;
    let mut kitchen = SseClient::connect(chat.addr, "/api/rooms/kitchen/events", None).await;
    let before = post_to(chat.addr, "kitchen", "kettle on").await;
    assert_eq!(kitchen.next().await.id, before);

    let started = Instant::now();
    shell(lines[0]);
    let event = lobby.next().await;
    assert_eq!(
        (event.event.as_str(), event.data.as_str()),
        ("message", "hello from psql")
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "at once: {:?}",
        started.elapsed()
    );
    assert!(event.id.split_once('-').is_some(), "{}", event.id);

    shell(lines[1]);
    kitchen.ended().await;
    let refused = request(
        chat.addr,
        Method::POST,
        "/api/rooms/kitchen/messages",
        &[],
        "anyone?",
    )
    .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text());
}

// ---------------------------------------------------------------------------------------
// Two chat instances on one database
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_moves_between_two_chat_instances_without_loss_or_duplicate() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let (server_a, server_b) = (
        chat_instance(&server, StreamConfig::default()).await,
        chat_instance(&server, StreamConfig::default()).await,
    );
    let (a, b) = (server_a.addr, server_b.addr);

    let mut client = SseClient::connect(a, "/api/events", None).await;
    let mut kitchen = SseClient::connect(b, "/api/rooms/kitchen/events", None).await;
    let mut sent = Vec::new();
    for n in 0..4 {
        let text = format!("before {n}");
        let instance = if n % 2 == 0 { a } else { b };
        sent.push((post(instance, &text).await, text));
        post_to(instance, "garden", &format!("garden {n}")).await;
    }
    for (id, text) in &sent {
        let event = client.next().await;
        assert_eq!(
            (&event.id, &event.event, &event.data),
            (id, &"message".to_owned(), text)
        );
    }
    let last_seen = client.last_event_id().to_owned();
    drop(client);
    let first_kitchen = post_to(a, "kitchen", "kettle on").await;
    assert_eq!(
        kitchen.next().await.id,
        first_kitchen,
        "rooms are isolated: nothing of the lobby or garden"
    );
    let kitchen_seen = kitchen.last_event_id().to_owned();
    drop(kitchen);

    // Cut off: messages go to several rooms on both instances meanwhile.
    let (mut missed, mut missed_kitchen) = (Vec::new(), Vec::new());
    for n in 0..10 {
        let text = format!("meanwhile {n}");
        let instance = if n % 2 == 0 { b } else { a };
        missed.push((post(instance, &text).await, text));
        let text = format!("kitchen {n}");
        missed_kitchen.push((post_to(instance, "kitchen", &text).await, text));
        post_to(instance, "garden", &format!("garden {n}")).await;
    }

    let mut client = SseClient::connect(b, "/api/events", Some(&last_seen)).await;
    let mut kitchen = SseClient::connect(a, "/api/rooms/kitchen/events", Some(&kitchen_seen)).await;
    for (expected, client) in [(&missed, &mut client), (&missed_kitchen, &mut kitchen)] {
        for (id, text) in expected {
            let event = client.next().await;
            assert_eq!(
                (&event.event, &event.id, &event.data),
                (&"message".to_owned(), id, text)
            );
        }
    }
    // Nothing repeated after them: the next event is the next message.
    let after = post(a, "after").await;
    let event = client.next().await;
    assert_eq!((event.id, event.data), (after, "after".to_owned()));
    let after = post_to(b, "kitchen", "after").await;
    assert_eq!(kitchen.next().await.id, after);
}

// ---------------------------------------------------------------------------------------
// PostgreSQL stopped and started
// ---------------------------------------------------------------------------------------

/// An open stream while PostgreSQL stops and starts again: it stays open with keep-alives,
/// posts and a long poll that needs PostgreSQL are `503` + `Retry-After` meanwhile, and it
/// then receives every event committed before the stop (one by another program, just before
/// it) and after the start, once each, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_stream_is_held_through_a_postgres_restart_and_gets_every_committed_event_once() {
    let Some(mut server) = PostgresServer::start() else {
        return;
    };
    let http = outage_instance(&server).await;
    let addr = http.addr;

    let mut raw = SseReader::connect(addr, "/api/events", None).await;
    let mut expected = Vec::new();
    // More than the window holds, so that a cursor at the first needs PostgreSQL.
    for n in 0..6 {
        let text = format!("before {n}");
        expected.push((post(addr, &text).await, text));
    }
    let mut wire = raw.read_until("data: before 5\n\n").await;
    // Committed just before the stop: the reader may not have read it yet.
    let text = "committed just before the stop";
    expected.push((
        psql_insert(&server, "chat:lobby", "'message'", &format!("'{text}'")),
        text.to_owned(),
    ));

    server.stop();
    let (status, _, retry_after) = post_with_key(addr, "anyone there?", "while-down").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry_after, "503 with Retry-After");
    let poll = request(
        addr,
        Method::GET,
        &format!("/api/events?timeout=0&lastEventId={}", expected[0].0),
        &[],
        "",
    )
    .await;
    assert_eq!(poll.status, StatusCode::SERVICE_UNAVAILABLE, "{}", poll.text());
    assert!(poll.headers.contains_key("retry-after"));
    keep_alives(&mut raw, 3, &mut wire).await;

    server.restart();
    for n in 0..3 {
        let text = format!("after {n}");
        expected.push((post_until_created(addr, &text, &format!("after-{n}")).await, text));
    }
    let text = "from psql after the start";
    expected.push((
        psql_insert(&server, "chat:lobby", "'message'", &format!("'{text}'")),
        text.to_owned(),
    ));
    wire.push_str(&raw.read_until(&format!("data: {text}\n\n")).await);
    assert_eq!(messages(&wire), expected);
    // The message posted while PostgreSQL was down was never stored.
    assert_eq!(
        server.psql("SELECT count(*) FROM eventstream_events WHERE data = 'anyone there?'"),
        "0"
    );
}

/// A client cut off while more than the process's window is published reconnects while
/// PostgreSQL is stopped: its cursor needs PostgreSQL, so the stream is held (`200`,
/// keep-alives) rather than refused (a browser would close for good), and once PostgreSQL is
/// back it receives every message after its cursor, once, in order. A long poll meanwhile is
/// `503` + `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reconnecting_during_an_outage_is_held_and_resumes_once_postgres_returns() {
    let Some(mut server) = PostgresServer::start() else {
        return;
    };
    let http = outage_instance(&server).await;
    let addr = http.addr;

    let mut client = SseClient::connect(addr, "/api/events", None).await;
    // Another page, which stays: once it has every message, so has the instance's reader,
    // and the window holds only the last 4.
    let mut watcher = SseClient::connect(addr, "/api/events", None).await;
    let first = post(addr, "first").await;
    assert_eq!(client.next().await.id, first);
    let cursor = client.last_event_id().to_owned();
    drop(client);
    let mut missed = Vec::new();
    for n in 0..10 {
        let text = format!("missed {n}");
        missed.push((post(addr, &text).await, text));
    }
    let read: Vec<String> = watcher.take(11).await.into_iter().map(|event| event.id).collect();
    assert_eq!(read.last(), missed.last().map(|(id, _)| id));

    server.stop();
    let poll = request(
        addr,
        Method::GET,
        &format!("/api/events?timeout=0&lastEventId={cursor}"),
        &[],
        "",
    )
    .await;
    assert_eq!(poll.status, StatusCode::SERVICE_UNAVAILABLE, "{}", poll.text());
    assert!(poll.headers.contains_key("retry-after"));

    let mut raw = SseReader::connect(addr, "/api/events", Some(&cursor)).await;
    let mut wire = String::new();
    keep_alives(&mut raw, 2, &mut wire).await;
    server.restart();
    let last = &missed.last().unwrap().1;
    wire.push_str(&raw.read_until(&format!("data: {last}\n\n")).await);
    assert_eq!(messages(&wire), missed);
}
