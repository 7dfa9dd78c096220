//! The PostgreSQL fixture itself (`tests/support/postgres.rs`): a server of the test's own
//! answers the real `psql`, isolates databases, keeps its data across a stop and a kill, and
//! runs beside another. Without PostgreSQL the tests skip loudly, except under CI, where they
//! fail.

mod support;

use std::io::Write;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::postgres::PostgresServer;

#[test]
fn answers_psql_and_isolates_databases() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    assert_eq!(
        server.url(),
        format!("postgres://postgres@127.0.0.1:{}/postgres", server.port())
    );
    assert_eq!(server.psql("select 1"), "1");
    server.psql(
        "create table t (id int primary key, v text);
         insert into t values (1, 'a');
         insert into t values (2, 'b');",
    );
    assert_eq!(server.psql("select id, v from t order by id"), "1|a\n2|b");
    let error = server
        .psql_result("select * from missing")
        .expect_err("a query of a missing table fails");
    assert!(error.contains("does not exist"), "{error}");

    let url = server.database("other");
    assert_eq!(
        url,
        format!("postgres://postgres@127.0.0.1:{}/other", server.port())
    );
    assert_eq!(server.psql_in("other", "select current_database()"), "other");
    assert!(server.psql_result_in("other", "select * from t").is_err());
    assert!(server
        .psql_result("create database other")
        .is_err_and(|error| error.contains("already exists")));
}

#[test]
fn a_stopped_server_restarts_with_its_data() {
    let Some(mut server) = PostgresServer::start() else {
        return;
    };
    server.psql("create table t (v text); insert into t values ('kept');");
    server.stop();
    assert!(
        server.psql_result("select 1").is_err(),
        "a stopped server answers"
    );
    server.restart();
    assert_eq!(server.psql("select v from t"), "kept");
    // Restarting a running server stops it first.
    server.restart();
    assert_eq!(server.psql("select v from t"), "kept");
}

#[test]
fn a_killed_server_restarts_with_every_acknowledged_commit() {
    let Some(mut server) = PostgresServer::start() else {
        return;
    };
    // Two sessions through the kill: an idle one, whose backend notices the postmaster's death
    // at once, and one in a long computation, which does not look until it is done.
    let mut idle = session(&server, "idle", "select 1;\n");
    let mut busy = session(
        &server,
        "busy",
        "select count(*) from generate_series(1, 10000000000);\n",
    );
    let backends = [backend(&server, "idle"), backend(&server, "busy")];

    // Commits one at a time, the last ones just before the kill.
    server.psql("create table t (n int)");
    let inserts: String = (1..=300)
        .map(|n| format!("insert into t values ({n});\n"))
        .collect();
    server.psql(&inserts);
    server.kill();
    for backend in backends {
        // Gone, or so far into its exit that it has let go of its memory and files.
        assert!(
            std::fs::read_link(format!("/proc/{backend}/cwd")).is_err(),
            "backend {backend} outlived kill()"
        );
    }
    assert!(server.psql_result("select 1").is_err(), "a killed server answers");

    server.restart();
    assert_eq!(server.psql("select count(*), max(n) from t"), "300|300");
    for session in [&mut idle, &mut busy] {
        drop(session.stdin.take());
        let _ = session.wait();
    }
    server.psql("insert into t values (301)");
    // Killed again and restarted: nothing of the first kill is left to trip over.
    server.kill();
    server.restart();
    assert_eq!(server.psql("select count(*) from t"), "301");
}

/// A psql session named `name` that runs `sql` and stays open until its stdin is closed.
fn session(server: &PostgresServer, name: &str, sql: &str) -> Child {
    let mut session = server
        .psql_command("postgres")
        .arg("-q")
        .env("PGAPPNAME", name)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run psql");
    let input = session.stdin.as_mut().expect("psql's stdin");
    input.write_all(sql.as_bytes()).expect("write to psql");
    session
}

/// The pid of the backend of the session named `name`, once it has one.
fn backend(server: &PostgresServer, name: &str) -> u32 {
    let query = format!("select pid from pg_stat_activity where application_name = '{name}'");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(pid) = server.psql(&query).parse() {
            return pid;
        }
        assert!(Instant::now() < deadline, "no backend for session {name}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_servers_run_at_once() {
    let (Some(first), Some(second)) = (PostgresServer::start(), PostgresServer::start()) else {
        return;
    };
    assert_ne!(first.port(), second.port());
    first.psql("create table only_first (v int)");
    assert!(second.psql_result("select * from only_first").is_err());
    assert_eq!(first.psql("select count(*) from only_first"), "0");
    drop(first);
    assert_eq!(second.psql("select 2"), "2");
}
