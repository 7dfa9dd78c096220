//! The generations example over real TCP: a prompt starts a generation of 50 tokens that
//! ends; every reader (from the start, late, resumed after a cut, by long poll) gets every
//! token exactly once and then the end; a return at the end is `204`; unknown ids are `404`;
//! a finished generation is kept for a while, then `404`; the server, started as its `main`
//! starts it, stops within a second. (Its page in real browsers:
//! `tests/browser_generations.rs`.)

mod support;

#[path = "../examples/generations/app.rs"]
mod app;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use tower_eventstream::{MemoryLogBuilder, Shutdown, StreamConfig, Topics};

use support::client::{get, long_poll, poll_cursor, poll_events, post_created, post_text, sse_status};
use support::reader::SseReader;
use support::server::{Serving, TestServer};
use support::sse::SseClient;
use support::{wait_until, within};

const PROMPT: &str = "the quick brown fox jumps over the lazy dog";

/// A server of the example's routes (`settings` as given) with a keep of `keep`.
async fn start(settings: app::Settings, keep: Duration) -> (TestServer, Topics<MemoryLogBuilder>) {
    let topics = app::generations(keep);
    let router = app::router(topics.clone(), settings, StreamConfig::default());
    (TestServer::start(Serving::Axum, router).await, topics)
}

/// As `main` emits: 50 tokens, one every 50 ms; kept a minute.
async fn start_as_main() -> (TestServer, Topics<MemoryLogBuilder>) {
    start(app::Settings::default(), app::DEFAULT_KEEP).await
}

/// What a generation of `prompt` emits: its words in turn, `count` of them.
fn expected(prompt: &str, count: usize) -> Vec<String> {
    let words: Vec<&str> = prompt.split_whitespace().collect();
    (0..count).map(|i| words[i % words.len()].to_owned()).collect()
}

fn events_path(id: &str) -> String {
    format!("/api/generations/{id}/events")
}

async fn generate(addr: SocketAddr, prompt: &str) -> String {
    post_created(addr, "/api/generations", prompt).await
}

/// Reads `n` tokens of `client`: `(id, data)` each, every one named `token`.
async fn tokens(client: &mut SseClient, n: usize) -> Vec<(String, String)> {
    let events = client.take(n).await;
    assert!(events.iter().all(|e| e.event == app::TOKEN), "{events:?}");
    events.into_iter().map(|e| (e.id, e.data)).collect()
}

/// The data of `(id, data)` pairs, after checking that no id comes twice.
fn data_of(got: &[(String, String)]) -> Vec<String> {
    let mut ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), got.len(), "an id came twice: {got:?}");
    got.iter().map(|(_, data)| data.clone()).collect()
}

/// `(id, data)` of each event of a long-poll answer, every one named `token`.
fn polled(answer: &serde_json::Value) -> Vec<(String, String)> {
    let events = poll_events(answer);
    assert!(events.iter().all(|(_, name, _)| name == app::TOKEN), "{answer}");
    events.into_iter().map(|(id, _, data)| (id, data)).collect()
}

/// Whether the generation `id` has ended (all its tokens appended).
fn finished(topics: &Topics<MemoryLogBuilder>, id: &str) -> bool {
    topics.get(id).is_some_and(|log| log.is_finished())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_from_the_start_gets_every_token_in_order_then_the_end() {
    let (server, topics) = start_as_main().await;
    let addr = server.addr;
    let id = generate(addr, PROMPT).await;
    assert!(
        id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
        "{id}"
    );
    assert_ne!(
        generate(addr, PROMPT).await,
        id,
        "each generation has an id of its own"
    );

    let mut client = SseClient::connect(addr, &events_path(&id), None).await;
    let got = tokens(&mut client, app::TOKENS).await;
    assert_eq!(data_of(&got), expected(PROMPT, app::TOKENS));
    within("the stream's end", client.ended()).await;
    assert!(finished(&topics, &id));

    // The browser's return at the end: 204, which closes an EventSource for good.
    let end = client.last_event_id().to_owned();
    assert_eq!(end, got[app::TOKENS - 1].0);
    assert_eq!(
        sse_status(addr, &events_path(&id), Some(&end)).await,
        StatusCode::NO_CONTENT
    );
    // A newcomer after the end: the whole generation, then the end again.
    let mut again = SseClient::connect(addr, &events_path(&id), None).await;
    assert_eq!(tokens(&mut again, app::TOKENS).await, got);
    within("the stream's end", again.ended()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_joining_a_second_late_still_gets_every_token_from_the_first() {
    let (server, topics) = start_as_main().await;
    let id = generate(server.addr, PROMPT).await;
    // Lateness is the point: a fixed second, against a generation of about 2.5 s.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held = topics.get(&id).expect("the generation").len();
    assert!(
        held >= 10 && !finished(&topics, &id),
        "a second in, mid-way: {held} tokens"
    );

    let mut late = SseClient::connect(server.addr, &events_path(&id), None).await;
    let got = tokens(&mut late, app::TOKENS).await;
    assert_eq!(data_of(&got), expected(PROMPT, app::TOKENS));
    within("the stream's end", late.ended()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_stream_resumed_with_last_event_id_gets_the_rest_exactly_once() {
    let (server, topics) = start_as_main().await;
    let addr = server.addr;
    let id = generate(addr, PROMPT).await;
    let mut client = SseClient::connect(addr, &events_path(&id), None).await;
    let mut got = tokens(&mut client, 10).await;
    let cursor = client.last_event_id().to_owned();
    assert_eq!(cursor, got[9].0);
    // The connection goes away; tokens come meanwhile.
    drop(client);
    wait_until("tokens while the reader is away", || {
        topics.get(&id).is_some_and(|log| log.len() >= 20)
    })
    .await;

    let mut resumed = SseClient::connect(addr, &events_path(&id), Some(&cursor)).await;
    got.extend(tokens(&mut resumed, app::TOKENS - 10).await);
    within("the resumed stream's end", resumed.ended()).await;
    assert_eq!(data_of(&got), expected(PROMPT, app::TOKENS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_from_no_cursor_reach_the_end_once_then_204() {
    let (server, _topics) = start_as_main().await;
    let addr = server.addr;
    let path = events_path(&generate(addr, PROMPT).await);

    let mut got = Vec::new();
    let mut answers = 0;
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(cursor) => format!("{path}?timeout=5000&lastEventId={cursor}"),
            None => format!("{path}?timeout=5000"),
        };
        let (_, answer) = long_poll(addr, &query).await;
        answers += 1;
        got.extend(polled(&answer));
        cursor = Some(poll_cursor(&answer));
        if answer.get("finished").is_some() {
            assert_eq!(answer["finished"], true, "{answer}");
            break;
        }
        assert!(answers < 200, "no end after {answers} polls");
    }
    assert!(answers > 1, "the generation was polled while it ran");
    assert_eq!(data_of(&got), expected(PROMPT, app::TOKENS));
    let end = cursor.expect("a cursor");
    assert_eq!(end, got[app::TOKENS - 1].0);

    let at_end = get(addr, &format!("{path}?timeout=5000&lastEventId={end}")).await;
    assert_eq!(at_end.status, StatusCode::NO_CONTENT, "{}", at_end.text());
    assert_eq!(sse_status(addr, &path, Some(&end)).await, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_are_404_and_ids_that_cannot_be_are_400() {
    let (server, topics) = start_as_main().await;
    let addr = server.addr;
    for id in ["nope", "g1-0000000000000000", "g0"] {
        let path = events_path(id);
        assert_eq!(sse_status(addr, &path, None).await, StatusCode::NOT_FOUND, "{id}");
        let poll = get(addr, &format!("{path}?timeout=0")).await;
        assert_eq!(poll.status, StatusCode::NOT_FOUND, "{id}");
    }
    for id in ["a~b", "caf%C3%A9", &"x".repeat(65)] {
        let path = events_path(id);
        assert_eq!(
            sse_status(addr, &path, None).await,
            StatusCode::BAD_REQUEST,
            "{id}"
        );
        let poll = get(addr, &format!("{path}?timeout=0")).await;
        assert_eq!(poll.status, StatusCode::BAD_REQUEST, "{id}");
    }
    assert!(topics.is_empty(), "a lookup makes no generation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_are_utf8_words_of_at_most_4_kib() {
    let fast = app::Settings {
        tokens: 7,
        every: Duration::from_millis(1),
    };
    let (server, topics) = start(fast, app::DEFAULT_KEEP).await;
    let addr = server.addr;
    let path = "/api/generations";

    let too_large = post_text(addr, path, vec![b'x'; app::MAX_PROMPT_BYTES + 1]).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    let not_utf8 = post_text(addr, path, Bytes::from_static(b"caf\xe9")).await;
    assert_eq!(not_utf8.status, StatusCode::BAD_REQUEST);
    assert!(not_utf8.text().contains("UTF-8"), "{}", not_utf8.text());
    for blank in ["", " ", "\n\t \r\n\u{3000}"] {
        let answer = post_text(addr, path, blank.to_owned()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{blank:?}");
        assert!(answer.text().contains("no words"), "{}", answer.text());
    }
    assert!(topics.is_empty(), "a refused prompt makes no generation");

    // The largest prompt: one word; words split on any Unicode whitespace.
    let largest = "y".repeat(app::MAX_PROMPT_BYTES);
    let cases = [
        (generate(addr, &largest).await, vec![largest.as_str(); 7]),
        (
            generate(addr, " héllo\u{3000}wörld\n\tok ").await,
            vec!["héllo", "wörld", "ok", "héllo", "wörld", "ok", "héllo"],
        ),
    ];
    for (id, words) in cases {
        let mut client = SseClient::connect(addr, &events_path(&id), None).await;
        assert_eq!(data_of(&tokens(&mut client, 7).await), words);
        within("the stream's end", client.ended()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_generation_is_kept_for_its_keep_then_404() {
    const KEEP: Duration = Duration::from_millis(1000);
    let fast = app::Settings {
        tokens: 3,
        every: Duration::from_millis(10),
    };
    let (server, topics) = start(fast, KEEP).await;
    let addr = server.addr;
    let id = generate(addr, PROMPT).await;
    let path = events_path(&id);
    wait_until("the generation to end", || finished(&topics, &id)).await;
    let ended = Instant::now();
    let mut client = SseClient::connect(addr, &path, None).await;
    client.take(3).await;
    within("the stream's end", client.ended()).await;

    // Kept: a late long poll gets it all and the end at once.
    let (_, answer) = long_poll(addr, &format!("{path}?timeout=0")).await;
    assert_eq!(data_of(&polled(&answer)), expected(PROMPT, 3));
    assert_eq!(answer["finished"], true, "{answer}");

    wait_until("the generation to be dropped", || topics.is_empty()).await;
    let kept = ended.elapsed();
    assert!(
        kept >= KEEP - Duration::from_millis(200),
        "dropped after {kept:?}"
    );
    assert_eq!(sse_status(addr, &path, None).await, StatusCode::NOT_FOUND);
    assert_eq!(
        get(addr, &format!("{path}?timeout=0")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[test]
fn keep_secs_is_whole_seconds_up_to_a_week() {
    assert_eq!(app::keep_from(None), Ok(Duration::from_secs(60)));
    assert_eq!(app::keep_from(Some("5")), Ok(Duration::from_secs(5)));
    assert_eq!(app::keep_from(Some("0")), Ok(Duration::ZERO));
    assert_eq!(app::keep_from(Some("604800")), Ok(Duration::from_secs(604_800)));
    for bad in ["", "-1", "1.5", "abc", "604801", "99999999999999999999999"] {
        let error = app::keep_from(Some(bad)).expect_err(bad);
        assert!(error.contains("KEEP_SECS"), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_at_the_root() {
    let (server, _topics) = start_as_main().await;
    let page = get(server.addr, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    let content_type = page.header("content-type").expect("a content type");
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let text = page.text();
    assert!(text.contains("new EventSource(`/api/generations/"), "{text}");
    assert!(
        !text.contains("http://") && !text.contains("https://"),
        "no external assets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_as_main_serves_it_the_server_stops_within_a_second() {
    // A slow generation: its first token at once, the next only after ten seconds.
    let slow = app::Settings {
        tokens: 3,
        every: Duration::from_secs(10),
    };
    let topics = app::generations(app::DEFAULT_KEEP);
    let shutdown = Shutdown::new();
    let config = StreamConfig::default().shutdown(shutdown.clone());
    let router = app::router(topics.clone(), slow, config);
    let mut server =
        TestServer::serve_with(|listener, stop| app::serve(listener, router, shutdown, stop)).await;
    let addr = server.addr;
    let path = events_path(&generate(addr, PROMPT).await);

    let mut stream = SseReader::connect(addr, &path, None).await;
    let first = stream.read_until("data: the\n\n").await;
    let cursor = support::sse::field_values(&first, "id").pop().expect("an id");
    let poll =
        tokio::spawn(async move { get(addr, &format!("{path}?timeout=10000&lastEventId={cursor}")).await });
    wait_until("the stream and the poll to wait", || {
        topics.subscriber_count() == 2
    })
    .await;

    let began = Instant::now();
    server.begin_shutdown();
    tokio::time::timeout(Duration::from_secs(1), server.stopped())
        .await
        .expect("the graceful shutdown took more than a second")
        .expect("serve returned an error");
    let tail = tokio::time::timeout(Duration::from_secs(1), stream.read_to_end())
        .await
        .expect("the stream ended within a second");
    assert!(tail.contains("retry: "), "no retry hint before the end: {tail:?}");
    let answer = tokio::time::timeout(Duration::from_secs(1), poll)
        .await
        .expect("the pending long poll was answered within a second")
        .expect("long poll task");
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["events"], serde_json::json!([]));
    assert!(began.elapsed() < Duration::from_secs(1));
}
