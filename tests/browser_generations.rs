//! The generations example's page in real browsers (Chromium and Firefox ESR, through
//! `support::browser`, scenario `tests/browser/generations.mjs`): a page streams a generation
//! through a cut of every connection and shows each token exactly once; after the end the
//! browser asks once more, is told `204` and stops for good (readyState CLOSED, the page says
//! "done"), and never asks again; a page opened a second after a generation began shows the
//! whole text. (Its HTTP contract over TCP: `tests/generations.rs`.)

mod support;

#[allow(dead_code)]
#[path = "../examples/generations/app.rs"]
mod app;

use std::time::Duration;

use serde_json::{json, Value};
use tower_eventstream::{MemoryLogBuilder, StreamConfig, Topics};

use support::browser::{on_each_engine, run_scenario, Engine};
use support::client::post_created;
use support::seen::{Seen, SeenRequests};
use support::server::{Serving, TestServer};

const PROMPT: &str = "Once upon a time, a stream that ended — and knew it.";

/// The browser's retry delay (the server's `retry:` hint): short, so a loop would show.
const RETRY: Duration = Duration::from_millis(300);

/// The tokens of [`PROMPT`]'s generation: its words in turn.
fn expected() -> Vec<String> {
    let words: Vec<&str> = PROMPT.split_whitespace().collect();
    (0..app::TOKENS)
        .map(|i| words[i % words.len()].to_owned())
        .collect()
}

/// Checks what the page showed and received: every token once, in order; returns their ids.
fn check_page(engine: Engine, result: &Value) -> Vec<String> {
    let tokens = result["tokens"].as_array().expect("tokens");
    let data: Vec<&str> = tokens.iter().map(|t| t["data"].as_str().expect("data")).collect();
    assert_eq!(data, expected(), "{engine}: the tokens the page received");
    assert_eq!(
        result["text"].as_str(),
        Some(expected().join(" ").as_str()),
        "{engine}: the text the page shows"
    );
    assert_eq!(result["shown"], app::TOKENS, "{engine}");
    assert_eq!(
        (result["state"].as_str(), result["stateText"].as_str()),
        (Some("done"), Some("done")),
        "{engine}"
    );
    let ids: Vec<String> = tokens
        .iter()
        .map(|t| t["id"].as_str().expect("an id").to_owned())
        .collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "{engine}: an id came twice: {ids:?}");
    ids
}

/// The requests to `id`'s events route, in order.
fn events_requests(seen: &SeenRequests, id: &str) -> Vec<Seen> {
    seen.to(&format!("/api/generations/{id}/events"))
}

/// Serves the example's routes as `main` does (50 tokens every 50 ms), with a short retry, on
/// the test's own accept loop (so that connections can be cut), recording every request.
async fn serve(seen: &SeenRequests) -> (TestServer, Topics<MemoryLogBuilder>) {
    let topics = app::generations(app::DEFAULT_KEEP);
    let config = StreamConfig::default().retry(RETRY);
    let router = app::router(topics.clone(), app::Settings::default(), config);
    let server = TestServer::start_cuttable(Serving::HyperUtil, seen.record(router)).await;
    (server, topics)
}

async fn a_page_streams_through_a_cut_then_stops_at_the_end(engine: Engine, test: &str) {
    if !engine.available(test) {
        return;
    }
    let seen = SeenRequests::default();
    let (server, _topics) = serve(&seen).await;
    let base = format!("http://{}", server.addr);
    let mut cuts = 0;
    let result = run_scenario(
        engine,
        "generations.mjs",
        &base,
        &["cut", PROMPT],
        async |command: &str| match command {
            "cut" => {
                let cut = server.cut_and_settle().await;
                cuts += 1;
                Ok(json!(cut))
            }
            _ => Err(format!("unknown command {command:?}")),
        },
    )
    .await;
    assert_eq!(cuts, 1, "{engine}: the scenario's cuts");
    let ids = check_page(engine, &result);
    let id = result["id"].as_str().expect("the generation's id");
    let last = &ids[app::TOKENS - 1];

    // The EventSource's requests: the first, without a cursor; its return after the cut,
    // resuming from a token before the last; after the end, exactly one more, resuming from
    // the last token (answered 204); then none, through the scenario's two quiet seconds.
    let requests = events_requests(&seen, id);
    let cursors: Vec<Option<&str>> = requests.iter().map(|s| s.last_event_id.as_deref()).collect();
    assert!(requests.iter().all(|s| s.sse), "{engine}: {requests:?}");
    assert_eq!(cursors.len(), 3, "{engine}: {requests:?}");
    assert_eq!(cursors[0], None, "{engine}");
    let resumed = cursors[1].expect("the return after the cut resumes");
    let at = ids.iter().position(|i| i == resumed);
    assert!(
        at.is_some_and(|at| (9..app::TOKENS - 1).contains(&at)),
        "{engine}: resumed from {resumed}, at the tenth token or later, before the last"
    );
    assert_eq!(cursors[2], Some(last.as_str()), "{engine}: the return at the end");
}

async fn a_page_opened_a_second_late_shows_the_whole_text(engine: Engine, test: &str) {
    if !engine.available(test) {
        return;
    }
    let seen = SeenRequests::default();
    let (server, topics) = serve(&seen).await;
    let addr = server.addr;
    let base = format!("http://{addr}");
    let mut started = None;
    let result = run_scenario(
        engine,
        "generations.mjs",
        &base,
        &["late", PROMPT],
        async |command: &str| {
            let words: Vec<&str> = command.split_whitespace().collect();
            match words.as_slice() {
                ["start"] => {
                    let id = post_created(addr, "/api/generations", PROMPT).await;
                    started = Some(std::time::Instant::now());
                    Ok(json!({ "id": id }))
                }
                ["held", id] => {
                    let log = topics.get(id).ok_or_else(|| format!("no generation {id}"))?;
                    Ok(json!({ "tokens": log.len(), "finished": log.is_finished() }))
                }
                _ => Err(format!("unknown command {command:?}")),
            }
        },
    )
    .await;
    let started = started.expect("the scenario started a generation");
    let ids = check_page(engine, &result);
    let id = result["id"].as_str().expect("the generation's id");
    let held = result["held"]["tokens"].as_u64().expect("held tokens");
    assert!(
        held >= 10,
        "{engine}: the page opened on a generation well under way: {held} tokens"
    );

    let requests = events_requests(&seen, id);
    let first = requests.first().expect("the page's request");
    let late = first.at.duration_since(started);
    assert!(
        late >= Duration::from_secs(1),
        "{engine}: the page came {late:?} after the start"
    );
    let cursors: Vec<Option<&str>> = requests.iter().map(|s| s.last_event_id.as_deref()).collect();
    assert_eq!(
        cursors,
        [None, Some(ids[app::TOKENS - 1].as_str())],
        "{engine}: from the first token, then the return at the end"
    );
}

on_each_engine!(
    a_page_streams_through_a_cut_then_stops_at_the_end,
    a_page_streams_through_a_cut_then_stops_at_the_end_in_chromium,
    a_page_streams_through_a_cut_then_stops_at_the_end_in_firefox,
);

on_each_engine!(
    a_page_opened_a_second_late_shows_the_whole_text,
    a_page_opened_a_second_late_shows_the_whole_text_in_chromium,
    a_page_opened_a_second_late_shows_the_whole_text_in_firefox,
);
