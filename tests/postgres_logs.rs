//! `PostgresLogs` against a real PostgreSQL server (feature `postgres`): events written in the
//! application's own transactions, commit order against id order, and outages.
//!
//! Each test starts its own server on a free loopback port and stops it when done. Without
//! PostgreSQL the tests are skipped with a warning, except under CI (`CI` set), where they
//! fail.

#![cfg(feature = "postgres")]

mod support;

use std::time::Duration;

use support::feed::{cursor, next, ready_now, subscribe};
use support::postgres::PostgresServer;
use support::within;
use tokio_postgres::{Client, NoTls};
use tower_eventstream::{
    Delivery, Event, EventFeed, EventLog, LastEventId, PostgresLog, PostgresLogs, PostgresSubscription,
    ResumeOutcome, Subscription,
};

/// A family on the server's database, with the schema.
async fn family(server: &PostgresServer, prefix: &str) -> PostgresLogs {
    within(
        "connect_logs",
        PostgresLog::builder(server.url(), prefix)
            .migrate()
            .connect_logs(),
    )
    .await
    .expect("connect PostgresLogs")
}

/// A client of the application's own, as it would write in its transactions.
async fn app_client(server: &PostgresServer) -> Client {
    let (client, connection) = tokio_postgres::connect(&server.url(), NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(connection);
    client
}

/// The next delivery's data; panics on anything but an event.
async fn next_data(subscription: &mut PostgresSubscription) -> String {
    match next(subscription).await {
        Delivery::Event(event) => event.data().to_owned(),
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Nothing more arrives within a moment (the reader had time to read anything committed).
async fn nothing_more(subscription: &mut PostgresSubscription) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(ready_now(subscription).is_none(), "nothing more was committed");
}

#[tokio::test]
async fn an_event_is_delivered_once_if_its_transaction_commits_and_never_if_it_rolls_back() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let logs = family(&server, "orders:").await;
    let log = logs.log("17").await.unwrap();
    let mut subscription = subscribe(&log, None).await;
    let mut app = app_client(&server).await;

    let rolled_back = app.transaction().await.unwrap();
    rolled_back
        .execute(
            "INSERT INTO eventstream_events (topic, data) VALUES ('orders:17', 'never')",
            &[],
        )
        .await
        .unwrap();
    rolled_back.rollback().await.unwrap();

    let committed = app.transaction().await.unwrap();
    committed
        .execute("CREATE TABLE orders (id int PRIMARY KEY, state text)", &[])
        .await
        .unwrap();
    committed
        .execute("INSERT INTO orders VALUES (17, 'shipped')", &[])
        .await
        .unwrap();
    committed
        .execute(
            "INSERT INTO eventstream_events (topic, name, data) VALUES ('orders:17', 'shipped', '{\"id\":17}')",
            &[],
        )
        .await
        .unwrap();
    // Not before the commit.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        ready_now(&mut subscription).is_none(),
        "uncommitted: not delivered"
    );
    committed.commit().await.unwrap();

    match next(&mut subscription).await {
        Delivery::Event(event) => {
            assert_eq!(event.data(), "{\"id\":17}");
            assert_eq!(event.name(), Some("shipped"));
        }
        other => panic!("expected the event, got {other:?}"),
    }
    nothing_more(&mut subscription).await;
}

#[tokio::test]
async fn transactions_committing_out_of_order_are_both_delivered_and_a_cursor_between_them_loses_nothing() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let logs = family(&server, "room:").await;
    let log = logs.log("a").await.unwrap();
    let mut live = subscribe(&log, None).await;
    let mut first_client = app_client(&server).await;
    let mut second_client = app_client(&server).await;

    // The first transaction takes its id first, the second commits first.
    let first = first_client.transaction().await.unwrap();
    first
        .execute(
            "INSERT INTO eventstream_events (topic, data) VALUES ('room:a', 'first')",
            &[],
        )
        .await
        .unwrap();
    let second = second_client.transaction().await.unwrap();
    second
        .execute(
            "INSERT INTO eventstream_events (topic, data) VALUES ('room:a', 'second')",
            &[],
        )
        .await
        .unwrap();
    second.commit().await.unwrap();

    // The second is committed but waits behind the first, which is still open: a cursor
    // taken now must not be past it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        ready_now(&mut live).is_none(),
        "held back while an older transaction is open"
    );
    let between = LastEventId::parse(log.position().as_str()).unwrap();

    first.commit().await.unwrap();
    assert_eq!(next_data(&mut live).await, "first", "in transaction id order");
    assert_eq!(next_data(&mut live).await, "second");
    nothing_more(&mut live).await;

    // A client that stopped between them gets both, from the window and from PostgreSQL.
    let mut resumed = subscribe(&log, Some(&between)).await;
    assert_eq!(resumed.outcome(), ResumeOutcome::Resumed);
    assert_eq!(next_data(&mut resumed).await, "first");
    assert_eq!(next_data(&mut resumed).await, "second");
    let other = family(&server, "room:").await.log("a").await.unwrap();
    let mut elsewhere = subscribe(&other, Some(&between)).await;
    assert_eq!(next_data(&mut elsewhere).await, "first");
    assert_eq!(next_data(&mut elsewhere).await, "second");
}

#[tokio::test]
async fn a_rolled_back_transaction_that_held_the_horizon_does_not_hold_delivery_for_long() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let logs = family(&server, "room:").await;
    let log = logs.log("b").await.unwrap();
    let mut live = subscribe(&log, None).await;
    let mut blocker = app_client(&server).await;
    let app = app_client(&server).await;

    // An unrelated write holds the horizon; it ends with no notification.
    let open = blocker.transaction().await.unwrap();
    open.execute("CREATE TABLE unrelated (id int)", &[])
        .await
        .unwrap();
    app.execute(
        "INSERT INTO eventstream_events (topic, data) VALUES ('room:b', 'waits')",
        &[],
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(ready_now(&mut live).is_none());
    open.rollback().await.unwrap();
    assert_eq!(next_data(&mut live).await, "waits");
}

#[tokio::test]
async fn appends_finish_and_resume_through_the_crate() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let logs = family(&server, "gen:").await;
    let log = logs.log("1").await.unwrap();
    let mut live = subscribe(&log, None).await;
    let first = log.append(Event::new("one")).await.unwrap();
    log.append(Event::new("two").with_name("token").unwrap())
        .await
        .unwrap();
    assert_eq!(next_data(&mut live).await, "one");
    assert_eq!(next_data(&mut live).await, "two");

    let mut resumed = subscribe(&log, Some(&cursor(&first))).await;
    assert_eq!(next_data(&mut resumed).await, "two");

    log.finish().await.unwrap();
    let ended = within(
        "the end",
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut live).poll_delivery(cx)),
    )
    .await;
    assert!(
        ended.is_none(),
        "the live subscription ends at the end: {ended:?}"
    );
    assert!(live.is_finished());
    assert!(matches!(
        log.append(Event::new("late")).await,
        Err(tower_eventstream::AppendError::Finished)
    ));
    let app = app_client(&server).await;
    let refused = app
        .execute(
            "INSERT INTO eventstream_events (topic, data) VALUES ('gen:1', 'late')",
            &[],
        )
        .await
        .expect_err("a finished topic refuses rows");
    assert_eq!(refused.code().map(|code| code.code()), Some("ES001"));
    let at_end = subscribe(&log, None).await;
    assert!(
        at_end.is_finished(),
        "a fresh subscriber of a finished topic is at its end"
    );
}

#[tokio::test]
async fn a_stream_is_held_while_postgres_restarts_and_loses_nothing_committed() {
    let Some(mut server) = PostgresServer::start() else {
        return;
    };
    let logs = family(&server, "room:").await;
    let log = logs.log("c").await.unwrap();
    let mut live = subscribe(&log, None).await;
    log.append(Event::new("before")).await.unwrap();
    assert_eq!(next_data(&mut live).await, "before");

    server.stop();
    let failed = log.append(Event::new("while down")).await;
    assert!(
        failed.is_err(),
        "an append while PostgreSQL is down fails: {failed:?}"
    );
    server.restart();

    // Appends work again once the connection is made again.
    wait_until_appended(&log, "after").await;
    assert_eq!(next_data(&mut live).await, "after");
    let app = app_client(&server).await;
    app.execute(
        "INSERT INTO eventstream_events (topic, data) VALUES ('room:c', 'from psql')",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(next_data(&mut live).await, "from psql");
}

async fn wait_until_appended(log: &PostgresLog, data: &str) {
    for _ in 0..200 {
        if log.append(Event::new(data)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("appends work again within 10 s of the restart");
}

#[tokio::test]
async fn finishing_waits_for_a_transaction_adding_to_the_topic_and_ends_after_its_event() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let logs = family(&server, "job:").await;
    let log = logs.log("9").await.unwrap();
    let mut live = subscribe(&log, None).await;
    let mut app = app_client(&server).await;

    let open = app.transaction().await.unwrap();
    open.execute(
        "INSERT INTO eventstream_events (topic, data) VALUES ('job:9', 'last step')",
        &[],
    )
    .await
    .unwrap();
    let finishing = tokio::spawn({
        let log = log.clone();
        async move { log.finish().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!finishing.is_finished(), "the end waits for the open transaction");
    open.commit().await.unwrap();
    within("finish", finishing).await.unwrap().unwrap();

    assert_eq!(
        next_data(&mut live).await,
        "last step",
        "the event comes before the end"
    );
    let ended = within(
        "the end",
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut live).poll_delivery(cx)),
    )
    .await;
    assert!(ended.is_none(), "then the stream ends: {ended:?}");
}

#[tokio::test]
async fn a_repeatable_read_transaction_older_than_the_end_cannot_add_after_it() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let logs = family(&server, "job:").await;
    let log = logs.log("10").await.unwrap();
    log.append(Event::new("first")).await.unwrap();
    let mut app = app_client(&server).await;

    let old = app
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await
        .unwrap();
    // Its snapshot is taken by its first statement, before the end.
    old.query("SELECT count(*) FROM eventstream_events", &[])
        .await
        .unwrap();
    log.finish().await.unwrap();
    let refused = old
        .execute(
            "INSERT INTO eventstream_events (topic, data) VALUES ('job:10', 'after the end')",
            &[],
        )
        .await
        .expect_err("an insert after the end fails, whatever the snapshot");
    let code = refused.code().map(|code| code.code().to_owned());
    assert!(
        matches!(code.as_deref(), Some("40001") | Some("ES001")),
        "a serialization failure or the finished refusal, got {refused:?}"
    );
}

#[tokio::test]
async fn an_idempotency_key_holds_across_instances_and_concurrent_retries() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let here = family(&server, "pay:").await.log("1").await.unwrap();
    let there = family(&server, "pay:").await.log("1").await.unwrap();
    let mut live = subscribe(&here, None).await;
    let key = tower_eventstream::IdempotencyKey::new("charge-77").unwrap();
    let window = Duration::from_secs(60);

    let attempts = (0..8).map(|n| {
        let log = if n % 2 == 0 { here.clone() } else { there.clone() };
        let key = key.clone();
        tokio::spawn(async move { log.append_once(Event::new("charged"), &key, window).await })
    });
    let mut ids = Vec::new();
    let mut new = 0;
    for attempt in attempts {
        let appended = within("append_once", attempt).await.unwrap().unwrap();
        new += usize::from(!appended.is_repeat());
        ids.push(appended.id().expect("an id").as_str().to_owned());
    }
    assert_eq!(new, 1, "one attempt appends, the others are its repeats");
    assert!(
        ids.windows(2).all(|pair| pair[0] == pair[1]),
        "every attempt answers the same id: {ids:?}"
    );
    assert_eq!(next_data(&mut live).await, "charged");
    nothing_more(&mut live).await;

    let reused = there.append_once(Event::new("refunded"), &key, window).await;
    assert!(
        matches!(reused, Err(tower_eventstream::AppendError::KeyReused)),
        "{reused:?}"
    );
}

#[tokio::test]
async fn trimming_by_age_makes_old_cursors_gaps_and_keeps_the_rest() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let logs = within(
        "connect_logs",
        PostgresLog::builder(server.url(), "feed:")
            .migrate()
            .max_age(Duration::from_millis(500))
            .connect_logs(),
    )
    .await
    .unwrap();
    let log = logs.log("x").await.unwrap();
    let older = log.append(Event::new("older")).await.unwrap();
    let old = log.append(Event::new("old")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let young = log.append(Event::new("young")).await.unwrap();
    // The reader trims by itself every second too: whichever pass removes the old row, the
    // young one stays.
    let removed = within("trim", logs.trim()).await.unwrap();
    assert!(removed <= 2, "only the old rows go: {removed}");

    let other = family(&server, "feed:").await.log("x").await.unwrap();
    // A client that had seen `older` missed `old`, which is gone: a gap.
    let mut from_before = subscribe(&other, Some(&cursor(&older))).await;
    assert_eq!(from_before.outcome(), ResumeOutcome::Gap);
    assert!(matches!(next(&mut from_before).await, Delivery::Gap(_)));
    assert_eq!(next_data(&mut from_before).await, "young");
    // One that had seen `old` missed nothing, though `old` is gone too.
    let mut from_old = subscribe(&other, Some(&cursor(&old))).await;
    assert_eq!(from_old.outcome(), ResumeOutcome::Resumed);
    assert_eq!(next_data(&mut from_old).await, "young");
    let mut from_young = subscribe(&other, Some(&cursor(&young))).await;
    assert_eq!(from_young.outcome(), ResumeOutcome::Resumed);
    nothing_more(&mut from_young).await;
}

#[tokio::test]
async fn the_schema_runs_again_and_a_missing_schema_is_a_clear_error() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let bare = server.database("bare");
    let missing = PostgresLog::builder(bare.clone(), "t").connect_logs().await;
    let error = missing.expect_err("no schema yet");
    assert_eq!(error.kind(), tower_eventstream::PostgresLogErrorKind::Config);
    assert!(error.to_string().contains("run the migration"), "{error}");

    for _ in 0..2 {
        PostgresLog::builder(bare.clone(), "t")
            .migrate()
            .connect_logs()
            .await
            .unwrap();
    }
    let tables = server.psql_in(
        "bare",
        "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'eventstream_%'",
    );
    assert_eq!(tables, "3");
}

#[tokio::test]
async fn a_database_restored_from_a_backup_is_a_gap_for_its_readers_never_a_silent_hole() {
    let Some(mut server) = PostgresServer::start() else {
        return;
    };
    let logs = family(&server, "room:").await;
    let log = logs.log("r").await.unwrap();
    let kept = log.append(Event::new("kept")).await.unwrap();
    server.take_backup();
    wait_until_appended(&log, "lost 1").await;
    let lost = log.append(Event::new("lost 2")).await.unwrap();
    let mut live = subscribe(&log, Some(&cursor(&kept))).await;
    assert_eq!(next_data(&mut live).await, "lost 1");
    assert_eq!(next_data(&mut live).await, "lost 2");

    // Everything after the backup is gone, and transaction ids go back.
    server.restore_backup();
    // A browser that saw the lost events comes back: a gap, not a 400 that would close it.
    wait_until_appended(&log, "after the restore").await;
    let mut returning = within("subscribe", log.subscribe(Some(&cursor(&lost))))
        .await
        .expect("a cursor from lost history is a gap, not a refusal");
    assert_eq!(returning.outcome(), ResumeOutcome::Gap);
    assert!(matches!(next(&mut returning).await, Delivery::Gap(_)));
    // The live reader hears the gap too, then what comes after the restore.
    let mut saw_gap = false;
    loop {
        match next(&mut live).await {
            Delivery::Gap(_) => saw_gap = true,
            Delivery::Event(event) if event.data() == "after the restore" => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(saw_gap, "the reader reported the lost history");
}

/// More topics than the server's lock table has room for (64 locks per connection): the
/// insert trigger's locks must not grow with the topics one transaction writes.
#[tokio::test]
async fn one_transaction_adds_to_thirty_thousand_topics() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    let logs = family(&server, "user:").await;
    let log = logs.log("29999").await.unwrap();
    let mut live = subscribe(&log, None).await;
    let mut app = app_client(&server).await;
    let fan_out = app.transaction().await.unwrap();
    fan_out
        .execute(
            "INSERT INTO eventstream_events (topic, data) \
             SELECT 'user:' || n, 'maintenance at noon' FROM generate_series(0, 29999) AS n",
            &[],
        )
        .await
        .expect("locks do not grow with the topics written");
    fan_out.commit().await.unwrap();
    assert_eq!(next_data(&mut live).await, "maintenance at noon");
}
