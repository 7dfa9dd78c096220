//! The shared log suite (`tests/suites/log.rs`) on each backend: `memory::…` on `MemoryLog`,
//! `redis::…` on `RedisLog` (feature `redis`), `postgres::…` on `PostgresLog` (feature
//! `postgres`). Each test makes its logs fresh; the Redis and PostgreSQL tests start a server
//! of their own and, without one installed, skip loudly (fail under CI).
//!
//! Each module implements the suite's `Backend`: how to make a log, how to trim one to its
//! newest events now, what cursor is "ahead" of it, and another instance of a topic.

mod support;
mod suites {
    pub mod log;
}

mod memory {
    use tower_eventstream::{LastEventId, MemoryLog};

    use crate::suites::log::Backend;

    /// In process: nothing to start, and no other instance of a log.
    pub struct Memory;

    impl Backend for Memory {
        type Log = MemoryLog;

        async fn start() -> Option<Self> {
            Some(Memory)
        }

        async fn log(&mut self) -> MemoryLog {
            MemoryLog::new()
        }

        /// A memory log drops its oldest events as it appends past its history.
        async fn bounded_log(&mut self, keep: usize) -> MemoryLog {
            MemoryLog::builder().history(keep).build()
        }

        /// Already done: the history bound applies on every append.
        async fn trim_to(&self, log: &MemoryLog, keep: usize) {
            assert_eq!(log.len(), keep, "a memory log holds its history bound");
        }

        /// A memory log refuses a sequence number above its newest event's (of its own
        /// epoch): the very next number is ahead of it.
        fn future_cursor(&self, log: &MemoryLog) -> LastEventId {
            let position = log.position();
            let (epoch, newest) = position.as_str().split_once('-').expect("<epoch>-<n>");
            assert_eq!(epoch, log.epoch());
            let newest: u64 = newest.parse().expect("a sequence number");
            LastEventId::parse(&format!("{epoch}-{}", newest + 1)).unwrap()
        }

        async fn another_instance(&mut self, _log: &MemoryLog) -> Option<MemoryLog> {
            None
        }
    }

    crate::suites::log::tests!(Memory);
}

#[cfg(feature = "redis")]
mod redis {
    use std::time::{SystemTime, UNIX_EPOCH};

    use tower_eventstream::{LastEventId, RedisLog, RedisLogs};

    use crate::suites::log::Backend;
    use crate::support::redis::RedisServer;
    use crate::support::within;

    const PREFIX: &str = "suite:";

    /// A `redis-server` of the test's own; each log a key of its own.
    pub struct Redis {
        server: RedisServer,
        logs: usize,
    }

    impl Redis {
        async fn family(&self, window: Option<usize>) -> RedisLogs {
            let mut builder = RedisLog::builder(self.server.url(), PREFIX);
            if let Some(window) = window {
                builder = builder.window(window);
            }
            within("connect_logs", builder.connect_logs())
                .await
                .expect("connect RedisLogs")
        }

        fn next_name(&mut self) -> String {
            self.logs += 1;
            format!("log{}", self.logs)
        }
    }

    impl Backend for Redis {
        type Log = RedisLog;

        async fn start() -> Option<Self> {
            let server = RedisServer::start()?;
            Some(Redis { server, logs: 0 })
        }

        async fn log(&mut self) -> RedisLog {
            let name = self.next_name();
            crate::support::redis::log(&self.family(None).await, &name).await
        }

        /// The stream trims approximately on its own (`MAXLEN ~`, whole nodes), so
        /// [`trim_to`](Backend::trim_to) trims it exactly; the process's window holds only
        /// `keep` events, so that it cannot answer an old cursor from memory.
        async fn bounded_log(&mut self, keep: usize) -> RedisLog {
            let name = self.next_name();
            crate::support::redis::log(&self.family(Some(keep)).await, &name).await
        }

        async fn trim_to(&self, log: &RedisLog, keep: usize) {
            let mut connection = self.server.connection().await;
            let _: i64 = ::redis::cmd("XTRIM")
                .arg(log.key())
                .arg("MAXLEN")
                .arg("=")
                .arg(keep)
                .query_async(&mut connection)
                .await
                .expect("XTRIM");
            let len: usize = ::redis::cmd("XLEN")
                .arg(log.key())
                .query_async(&mut connection)
                .await
                .expect("XLEN");
            assert_eq!(len, keep);
        }

        /// Redis refuses an id later than its clock (by more than a second): one an hour
        /// ahead. (One above the newest id but not above the clock is a gap: history lost
        /// in a restart.)
        fn future_cursor(&self, _log: &RedisLog) -> LastEventId {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            let ahead = now.as_millis() + 3_600_000;
            LastEventId::parse(&format!("{ahead}-0")).unwrap()
        }

        /// Another family on the same server: its own connections and reader.
        async fn another_instance(&mut self, log: &RedisLog) -> Option<RedisLog> {
            let name = log.key().strip_prefix(PREFIX).expect("a key of the suite");
            Some(crate::support::redis::log(&self.family(None).await, name).await)
        }
    }

    crate::suites::log::tests!(Redis);
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::time::Duration;

    use tower_eventstream::{LastEventId, PostgresLog, PostgresLogs};

    use crate::suites::log::Backend;
    use crate::support::postgres::PostgresServer;
    use crate::support::{within, LIMIT};

    const PREFIX: &str = "suite:";

    /// A PostgreSQL server of the test's own; each log a topic of its own.
    pub struct Postgres {
        server: PostgresServer,
        logs: usize,
        /// The bounded logs' topics and families, to trim them.
        bounded: Vec<(String, PostgresLogs)>,
    }

    impl Postgres {
        async fn family(&self, keep: Option<usize>) -> PostgresLogs {
            let mut builder = PostgresLog::builder(self.server.url(), PREFIX).migrate();
            if let Some(keep) = keep {
                builder = builder.max_len(keep).window(keep);
            }
            within("connect_logs", builder.connect_logs())
                .await
                .expect("connect PostgresLogs")
        }

        fn next_name(&mut self) -> String {
            self.logs += 1;
            format!("log{}", self.logs)
        }
    }

    async fn log_of(logs: &PostgresLogs, name: &str) -> PostgresLog {
        within("log", logs.log(name)).await.expect("a log of the family")
    }

    impl Backend for Postgres {
        type Log = PostgresLog;

        async fn start() -> Option<Self> {
            let server = PostgresServer::start()?;
            Some(Postgres {
                server,
                logs: 0,
                bounded: Vec::new(),
            })
        }

        async fn log(&mut self) -> PostgresLog {
            let name = self.next_name();
            log_of(&self.family(None).await, &name).await
        }

        /// The family keeps `max_len = keep` events per topic, and this process's window
        /// `keep`, so that it cannot answer an old cursor from memory.
        async fn bounded_log(&mut self, keep: usize) -> PostgresLog {
            let name = self.next_name();
            let logs = self.family(Some(keep)).await;
            let log = log_of(&logs, &name).await;
            self.bounded.push((log.topic().to_owned(), logs));
            log
        }

        /// The crate's own trimming pass ([`PostgresLogs::trim`]), repeated until the topic
        /// holds `keep` rows: the reader's pass of every second may be trimming at that
        /// moment (then `trim` does nothing and that pass does it).
        async fn trim_to(&self, log: &PostgresLog, keep: usize) {
            let (_, logs) = self
                .bounded
                .iter()
                .find(|(topic, _)| topic == log.topic())
                .expect("a bounded log of this backend");
            let count = format!(
                "SELECT count(*) FROM eventstream_events WHERE topic = '{}' AND kind <> 'end'",
                log.topic()
            );
            let deadline = tokio::time::Instant::now() + LIMIT;
            loop {
                within("trim", logs.trim()).await.expect("trim");
                let held: usize = self.server.psql(&count).parse().expect("a count");
                if held <= keep {
                    assert_eq!(held, keep, "trimmed to the newest {keep}");
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the topic still holds {held} rows after trimming to {keep}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        /// PostgreSQL refuses a position whose transaction id has not been given out yet:
        /// one near the top of the 64-bit range.
        fn future_cursor(&self, _log: &PostgresLog) -> LastEventId {
            LastEventId::parse("18446744073709551000-1").unwrap()
        }

        /// Another family on the same database: its own connections and reader.
        async fn another_instance(&mut self, log: &PostgresLog) -> Option<PostgresLog> {
            let name = log.topic().strip_prefix(PREFIX).expect("a topic of the suite");
            Some(log_of(&self.family(None).await, name).await)
        }
    }

    crate::suites::log::tests!(Postgres);
}
