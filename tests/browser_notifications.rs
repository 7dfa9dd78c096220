//! The notifications example's page in real browsers (Chromium and Firefox ESR, through
//! `support::browser`, scenario `tests/browser/notifications.mjs`): two users, each in a
//! browser of their own, each page showing that user's notifications and every announcement,
//! the admin's the audit too; every connection of the server cut several times while events
//! are published, each page back by itself with its `Last-Event-ID` and each event shown
//! exactly once; a topic started anew shown as a reset; a page without a session stopped by
//! the `401`. (Its HTTP contract over TCP: `tests/notifications.rs`.)

mod support;

#[path = "../examples/notifications/app.rs"]
mod app;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};
use tower_eventstream::{Event, MemoryLog, MemoryLogBuilder, StreamConfig, Topics};

use support::browser::{on_each_engine, run_scenario, Engine};
use support::seen::SeenRequests;
use support::server::{Serving, TestServer};
use support::wait_until;

const ADA: &str = "ada";
const BO: &str = "admin-bo";
const CUTS: usize = 3;

/// What each page should show: for each user, each event name's data in order.
type Expected = BTreeMap<&'static str, BTreeMap<String, Vec<String>>>;

/// One round of events, `prefix` in each text: a notification to each user and to one who
/// has no page, an announcement, an audit event. Returns how many each page should get.
async fn publish(
    topics: &Topics<MemoryLogBuilder>,
    expected: &Mutex<Expected>,
    prefix: &str,
) -> Result<Value, String> {
    let round: [(&str, &str, String, &[&'static str]); 5] = [
        ("user-ada", "notification", format!("{prefix}: for ada"), &[ADA]),
        (
            "user-admin-bo",
            "notification",
            format!("{prefix}: for bo"),
            &[BO],
        ),
        ("user-cy", "notification", format!("{prefix}: for cy"), &[]),
        (
            app::ANNOUNCEMENTS,
            "announcement",
            format!("{prefix}: to all"),
            &[ADA, BO],
        ),
        (app::AUDIT, "audit", format!("{prefix}: audit"), &[BO]),
    ];
    let mut counts = BTreeMap::from([(ADA, 0), (BO, 0)]);
    for (topic, name, data, readers) in round {
        let event = Event::new(&data).with_name(name).map_err(|e| e.to_string())?;
        topics.append(topic, event).await.map_err(|e| e.to_string())?;
        let mut expected = expected.lock().unwrap();
        for reader in readers {
            let names = expected.entry(reader).or_default();
            names.entry(name.to_owned()).or_default().push(data.clone());
            *counts.get_mut(reader).unwrap() += 1;
        }
    }
    Ok(json!(counts))
}

/// `{name: [data…]}` of a page's log (`[{name, data, id}]`).
fn by_name(log: &Value) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in log.as_array().expect("a log") {
        let name = entry["name"].as_str().expect("a name").to_owned();
        out.entry(name)
            .or_default()
            .push(entry["data"].as_str().expect("data").to_owned());
    }
    out
}

async fn two_users_see_their_own_streams_through_cuts(engine: Engine, test: &str) {
    if !engine.available(test) {
        return;
    }
    let topics = Topics::new(MemoryLog::builder());
    let seen = SeenRequests::default();
    let config = StreamConfig::default().retry(Duration::from_millis(300));
    let server = TestServer::start_cuttable(
        Serving::HyperUtil,
        seen.record(app::router(topics.clone(), config)),
    )
    .await;
    let base = format!("http://{}", server.addr);
    let expected = Mutex::new(Expected::new());
    let mut cuts = 0;
    let result = run_scenario(engine, "notifications.mjs", &base, &[], async |command: &str| {
        let words: Vec<&str> = command.split_whitespace().collect();
        match words.as_slice() {
            ["wait-subscribers", count] => {
                let count: usize = count.parse().map_err(|_| format!("bad count in {command:?}"))?;
                wait_until("the subscribers", || topics.subscriber_count() >= count).await;
                Ok(json!(topics.subscriber_count()))
            }
            ["publish", prefix] => publish(&topics, &expected, prefix).await,
            ["cut-publish", prefix] => {
                if server.cut_and_settle().await == 0 {
                    return Err("no connection to cut".to_owned());
                }
                cuts += 1;
                publish(&topics, &expected, prefix).await
            }
            ["renew-ada", prefix] => {
                // Ada's topic on a new log (a new epoch), as after a restart of its store.
                topics
                    .pin("user-ada", MemoryLog::new())
                    .map_err(|e| e.to_string())?;
                server.cut_and_settle().await;
                publish(&topics, &expected, prefix).await
            }
            _ => Err(format!("unknown command {command:?}")),
        }
    })
    .await;
    assert_eq!(cuts, CUTS, "{engine}: the scenario's cuts");

    // Each page: its user's notifications and every announcement, the admin's the audit too;
    // each event once, in its topic's order.
    let expected = expected.into_inner().unwrap();
    for user in [ADA, BO] {
        assert_eq!(
            by_name(&result[user]["log"]),
            expected[user],
            "{engine}: {user}'s page"
        );
        let own = format!("user-{user}~");
        let log = result[user]["log"].as_array().unwrap();
        assert!(
            log.iter()
                .all(|e| e["id"].as_str().is_some_and(|id| id.starts_with(&own))),
            "{engine}: {user}'s ids are composite cursors of their topics: {log:?}"
        );
    }
    assert!(
        !expected[ADA].contains_key("audit"),
        "the test publishes audit events"
    );
    assert_eq!(result[ADA]["resets"], json!(["user-ada"]), "{engine}");
    assert_eq!(result[BO]["resets"], json!([]), "{engine}");
    for notice in result["notices"].as_array().unwrap() {
        let notice = notice.as_str().unwrap();
        assert!(
            notice.contains("401") && notice.contains("sign in"),
            "{engine}: {notice}"
        );
    }

    // The EventSources' own requests: two refused (no cookie yet), never retried; two after
    // signing in; then only reconnects, each resuming its user's topics.
    let streams: Vec<_> = seen
        .to("/api/notifications")
        .into_iter()
        .filter(|s| s.sse)
        .collect();
    let (fresh, resumed): (Vec<_>, Vec<_>) = streams.iter().partition(|s| s.last_event_id.is_none());
    assert_eq!(fresh.len(), 4, "{engine}: {streams:?}");
    assert!(
        resumed.len() >= 2 * (CUTS + 1),
        "{engine}: each page came back after each cut: {streams:?}"
    );
    assert!(
        resumed.iter().all(|s| {
            let id = s.last_event_id.as_deref().unwrap();
            s.query.is_none() && id.contains("announcements~") && id.starts_with("user-")
        }),
        "{engine}: every reconnect resumes from a composite cursor: {resumed:?}"
    );
}

on_each_engine!(
    two_users_see_their_own_streams_through_cuts,
    two_users_see_their_own_streams_through_cuts_in_chromium,
    two_users_see_their_own_streams_through_cuts_in_firefox,
);
