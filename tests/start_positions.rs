//! Where a client without a cursor starts, over real TCP, on SSE and long poll, with a memory
//! and a Redis log: the live end, the oldest event held, or the last N; a client with a
//! cursor always resumes from it; history trimmed before a client came is no gap of its.

mod support;

#[allow(dead_code)]
#[path = "../examples/chat/app.rs"]
mod chat;

use std::net::SocketAddr;

use axum::Router;
use support::client::{long_poll, poll_cursor, poll_data};
use support::server::{Serving, TestServer};
use support::sse::SseClient;
use support::wait_until;
use tower_eventstream::{
    Event, EventId, EventLog, EventLogService, MemoryLog, StartPosition, StreamConfig, Topics, TopicsService,
};

/// One log served at `/events` from each start position.
struct Served<L: EventLog> {
    log: L,
    /// The newest position this process has read (a Redis log reads its appends back).
    position: fn(&L) -> EventId,
    servers: Vec<(StartPosition, TestServer)>,
}

impl<L: EventLog> Served<L> {
    async fn new(log: L, position: fn(&L) -> EventId) -> Self {
        let mut servers = Vec::new();
        for start in [
            StartPosition::LiveEnd,
            StartPosition::Oldest,
            StartPosition::Last(2),
        ] {
            let service = EventLogService::new(log.clone()).with_config(StreamConfig::default().start(start));
            let router = Router::new().route_service("/events", service);
            servers.push((start, TestServer::start(Serving::Axum, router).await));
        }
        Served {
            log,
            position,
            servers,
        }
    }

    fn addr(&self, start: StartPosition) -> SocketAddr {
        let (_, server) = self.servers.iter().find(|(s, _)| *s == start).expect("served");
        server.addr
    }

    /// Appends, and waits until this process has read the event back, so that a client
    /// that comes next finds it where it looks first.
    async fn append(&self, data: &str) -> String {
        let event = self
            .log
            .append(Event::new(data))
            .await
            .map_err(|_| "append")
            .unwrap();
        let id = event.id().unwrap().clone();
        wait_until("the append to be read back", || (self.position)(&self.log) == id).await;
        id.as_str().to_owned()
    }
}

/// The events a poll without a cursor gets at once.
async fn first_poll(addr: SocketAddr) -> Vec<String> {
    let (_, answer) = long_poll(addr, "/events?timeout=0").await;
    assert_eq!(answer["reset"], false, "{answer}");
    poll_data(&answer)
}

async fn sse_data(client: &mut SseClient, n: usize) -> Vec<String> {
    client.take(n).await.into_iter().map(|event| event.data).collect()
}

/// A client starting at the oldest event gets `held`, on both transports, with no reset.
async fn oldest_is_what_is_held<L: EventLog>(served: &Served<L>, held: &[&str]) {
    assert_eq!(first_poll(served.addr(StartPosition::Oldest)).await, held);
    let mut client = SseClient::connect(served.addr(StartPosition::Oldest), "/events", None).await;
    assert_eq!(sse_data(&mut client, held.len()).await, held, "no reset first");
}

async fn each_start_position_on_both_transports<L: EventLog>(served: &Served<L>) {
    let mut ids = Vec::new();
    for n in 1..=5 {
        ids.push(served.append(&format!("e{n}")).await);
    }
    let (live, oldest, last) = (
        served.addr(StartPosition::LiveEnd),
        served.addr(StartPosition::Oldest),
        served.addr(StartPosition::Last(2)),
    );
    assert_eq!(first_poll(live).await, Vec::<String>::new());
    assert_eq!(first_poll(oldest).await, ["e1", "e2", "e3", "e4", "e5"]);
    assert_eq!(first_poll(last).await, ["e4", "e5"]);

    let mut clients = Vec::new();
    for addr in [live, oldest, last] {
        clients.push(SseClient::connect(addr, "/events", None).await);
    }
    served.append("e6").await;
    assert_eq!(sse_data(&mut clients[0], 1).await, ["e6"]);
    assert_eq!(
        sse_data(&mut clients[1], 6).await,
        ["e1", "e2", "e3", "e4", "e5", "e6"]
    );
    assert_eq!(sse_data(&mut clients[2], 3).await, ["e4", "e5", "e6"]);

    // A cursor wins over the start position, on every endpoint.
    for addr in [live, oldest, last] {
        let (_, answer) = long_poll(addr, &format!("/events?timeout=0&lastEventId={}", ids[1])).await;
        assert_eq!(poll_data(&answer), ["e3", "e4", "e5", "e6"]);
        let mut client = SseClient::connect(addr, "/events", Some(&ids[3])).await;
        assert_eq!(sse_data(&mut client, 2).await, ["e5", "e6"]);
    }
    // The first poll's cursor follows on exactly.
    let (_, answer) = long_poll(last, "/events?timeout=0").await;
    served.append("e7").await;
    let (_, next) = long_poll(
        last,
        &format!("/events?timeout=5000&lastEventId={}", poll_cursor(&answer)),
    )
    .await;
    assert_eq!(poll_data(&next), ["e7"]);
}

/// The chat: a page opened on a room without a cursor gets the room's last 50 messages.
async fn the_chat_shows_a_rooms_recent_messages<M: tower_eventstream::MakeLog>(rooms: Topics<M>) {
    let app = chat::router(rooms, chat::config());
    let server = TestServer::start(Serving::Axum, app).await;
    for n in 0..60 {
        let answer = support::client::request(
            server.addr,
            http::Method::POST,
            "/api/rooms/kitchen/messages",
            &[],
            format!("m{n}"),
        )
        .await;
        assert_eq!(answer.status.as_u16(), 201);
    }
    let recent: Vec<String> = (10..60).map(|n| format!("m{n}")).collect();
    let path = "/api/rooms/kitchen/events?timeout=5000";
    support::within("the window to hold every message", async {
        loop {
            let (_, answer) = long_poll(server.addr, path).await;
            if poll_data(&answer).last().map(String::as_str) == Some("m59") {
                assert_eq!(poll_data(&answer), recent, "the last 50, in order");
                return;
            }
        }
    })
    .await;
    let mut page = SseClient::connect(server.addr, "/api/rooms/kitchen/events", None).await;
    assert_eq!(sse_data(&mut page, 50).await, recent);
}

#[tokio::test]
async fn memory_the_chat_shows_a_rooms_recent_messages() {
    the_chat_shows_a_rooms_recent_messages(Topics::new(MemoryLog::builder())).await;
}

#[tokio::test]
async fn memory_each_start_position_on_both_transports() {
    each_start_position_on_both_transports(&Served::new(MemoryLog::new(), MemoryLog::position).await).await;
}

#[tokio::test]
async fn memory_history_trimmed_before_a_client_came_is_no_gap() {
    let served = Served::new(MemoryLog::builder().history(3).build(), MemoryLog::position).await;
    for n in 1..=5 {
        served.append(&format!("e{n}")).await;
    }
    oldest_is_what_is_held(&served, &["e3", "e4", "e5"]).await;
}

#[tokio::test]
async fn a_topics_service_starts_each_topic_at_its_start_position() {
    let topics = Topics::new(MemoryLog::builder());
    for (topic, data) in [("a", "a1"), ("a", "a2"), ("b", "b1"), ("b", "b2")] {
        topics.append(topic, Event::new(data)).await.unwrap();
    }
    let config = StreamConfig::default().start(StartPosition::Last(1));
    let service = TopicsService::new(topics.clone()).with_config(config);
    let server = TestServer::start(Serving::Axum, Router::new().route_service("/t", service)).await;
    let (_, answer) = long_poll(server.addr, "/t?topic=a&topic=b&timeout=0").await;
    let mut data = poll_data(&answer);
    data.sort();
    assert_eq!(data, ["a2", "b2"]);
    // A cursor of other topics: a reset per topic, then each from its start position.
    let (_, answer) = long_poll(
        server.addr,
        "/t?topic=b&topic=a&timeout=0&lastEventId=c~deadbeef-1",
    )
    .await;
    assert_eq!(answer["reset"], true, "{answer}");
    let mut data = poll_data(&answer);
    data.sort();
    assert_eq!(
        data,
        ["a", "a2", "b", "b2"],
        "the resets' data are their topics: {answer}"
    );
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use support::redis::RedisServer;
    use tower_eventstream::RedisLog;

    async fn log(server: &RedisServer, key: &str) -> RedisLog {
        RedisLog::connect(&server.url(), key).await.expect("connect")
    }

    #[tokio::test]
    async fn redis_each_start_position_on_both_transports() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let served = Served::new(log(&server, "starts").await, RedisLog::position).await;
        each_start_position_on_both_transports(&served).await;
    }

    #[tokio::test]
    async fn redis_the_chat_shows_a_rooms_recent_messages() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let rooms = RedisLog::builder(server.url(), "chat:")
            .connect_logs()
            .await
            .expect("connect");
        the_chat_shows_a_rooms_recent_messages(Topics::new(rooms)).await;
    }

    #[tokio::test]
    async fn redis_history_trimmed_before_a_client_came_is_no_gap() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let writer = log(&server, "trimmed").await;
        for n in 1..=5 {
            writer.append(Event::new(format!("e{n}"))).await.unwrap();
        }
        let client = ::redis::Client::open(server.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let trimmed: i64 = ::redis::cmd("XTRIM")
            .arg("trimmed")
            .arg("MAXLEN")
            .arg(3)
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(trimmed, 2);
        // Another process, whose window starts at the stream's end: it asks Redis.
        let served = Served::new(log(&server, "trimmed").await, RedisLog::position).await;
        oldest_is_what_is_held(&served, &["e3", "e4", "e5"]).await;
        assert_eq!(
            first_poll(served.addr(StartPosition::Last(2))).await,
            ["e4", "e5"]
        );
    }
}
