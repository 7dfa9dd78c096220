//! [`PostgresLogBuilder`]: settings, the migration, and connecting.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Config;

use super::error::{limited, PostgresLogError, PostgresLogErrorKind};
use super::family::PostgresLogs;
use super::link::{Link, Session};
use super::reader::Reader;
use super::settings::Settings;
use super::{
    sql, PostgresLog, DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_LEN, DEFAULT_WINDOW,
};

/// Configures and connects a [`PostgresLog`], or a family of them ([`PostgresLogs`]).
///
/// Its `topic` is the log's topic for [`connect`](PostgresLogBuilder::connect), and the
/// prefix of the family's topics for [`connect_logs`](PostgresLogBuilder::connect_logs).
#[derive(Clone)]
#[must_use = "a builder does nothing until `connect` or `connect_logs` is awaited"]
pub struct PostgresLogBuilder {
    url: String,
    topic: String,
    max_len: Option<usize>,
    max_age: Option<Duration>,
    window: usize,
    command_timeout: Duration,
    connect_timeout: Duration,
    migrate: bool,
}

impl PostgresLogBuilder {
    /// The default number of events each topic keeps.
    pub const DEFAULT_MAX_LEN: usize = DEFAULT_MAX_LEN;
    /// The default number of events each process holds in its local window of a topic.
    pub const DEFAULT_WINDOW: usize = DEFAULT_WINDOW;
    /// The default limit on one statement (append, subscribe, catch-up read).
    pub const DEFAULT_COMMAND_TIMEOUT: Duration = DEFAULT_COMMAND_TIMEOUT;
    /// The default limit on connecting to PostgreSQL.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = DEFAULT_CONNECT_TIMEOUT;

    pub(super) fn new(url: String, topic: String) -> Self {
        PostgresLogBuilder {
            url,
            topic,
            max_len: Some(DEFAULT_MAX_LEN),
            max_age: None,
            window: DEFAULT_WINDOW,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            migrate: false,
        }
    }

    /// How many events each topic keeps (default 10 000, at least 1). The family's reader
    /// trims a topic once it has seen about an eighth of that added since the last trim, so
    /// a topic holds up to about 1.125 times as many for a moment.
    pub fn max_len(mut self, events: usize) -> Self {
        self.max_len = Some(events.max(1));
        self
    }

    /// Also removes events added more than `age` ago (by PostgreSQL's clock), checked every
    /// second. Default: kept until the length limit.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// How many events this process holds in its local window of each topic (default
    /// 1 024, at least 1). Subscribers further behind read the missing part from PostgreSQL.
    pub fn window(mut self, events: usize) -> Self {
        self.window = events.max(1);
        self
    }

    /// The longest an append, a subscribe or a catch-up read waits for PostgreSQL (default
    /// 2 s). An append that times out fails with [`PostgresLogErrorKind::Timeout`].
    pub fn command_timeout(mut self, limit: Duration) -> Self {
        self.command_timeout = limit;
        self
    }

    /// The longest [`connect`](PostgresLogBuilder::connect) (or
    /// [`connect_logs`](PostgresLogBuilder::connect_logs)) and each reconnect attempt of the
    /// reader may take (default 5 s). An append or a read that finds the shared connection
    /// broken connects again within its own command timeout, so that it fails fast while
    /// PostgreSQL is away.
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = limit;
        self
    }

    /// Creates the schema on connecting, if it is missing (and replaces its functions):
    /// the SQL of [`PostgresLogs::SCHEMA`], run in one transaction under a lock, so that
    /// instances starting together do not race. Without it, the schema must exist already
    /// (say, from the application's own migrations, with that same SQL).
    pub fn migrate(mut self) -> Self {
        self.migrate = true;
        self
    }

    /// Connects and starts this process's reader: a [`PostgresLogs`] family of one topic,
    /// [`connect_logs`](PostgresLogBuilder::connect_logs) then
    /// [`log("")`](PostgresLogs::log).
    ///
    /// Fails if the URL is unusable, PostgreSQL cannot be reached within the connect
    /// timeout, or the schema is missing. Must be called within a Tokio runtime.
    pub async fn connect(self) -> Result<PostgresLog, PostgresLogError> {
        if self.topic.is_empty() {
            return Err(PostgresLogError::new(
                PostgresLogErrorKind::Config,
                "connect",
                &Arc::from(""),
                "the topic is empty; give a topic such as `chat`",
            ));
        }
        self.connect_logs().await?.log("").await
    }

    /// Connects and starts this process's one reader for a family of logs: the builder's
    /// `topic` is the **prefix** of their topics, and [`PostgresLogs::log`]`(name)` is the
    /// log of the topic `<prefix><name>`. Every setting of the builder applies to each log
    /// of the family.
    ///
    /// However many logs the family has, it holds two connections to PostgreSQL: one for
    /// appends and reads, and one on which its reader listens and reads. Fails if the URL is
    /// unusable, PostgreSQL cannot be reached within the connect timeout, or the schema is
    /// missing. Must be called within a Tokio runtime.
    pub async fn connect_logs(self) -> Result<PostgresLogs, PostgresLogError> {
        let prefix: Arc<str> = Arc::from(self.topic.as_str());
        let mut config: Config = self.url.parse().map_err(|error| {
            PostgresLogError::new(
                PostgresLogErrorKind::Config,
                "connect",
                &prefix,
                format!("the URL is not a PostgreSQL connection string ({error}); expected postgres://user:password@host:port/database"),
            )
        })?;
        config.connect_timeout(self.connect_timeout);
        config.application_name("tower-eventstream");
        if self.migrate {
            migrate(&config, &prefix, self.connect_timeout).await?;
        }
        let connected = limited("connect", &prefix, self.connect_timeout, async {
            Session::open(&config, None)
                .await
                .map_err(|error| PostgresLogError::from_postgres("connect", &prefix, error))
        })
        .await?;
        let link = Arc::new(Link::new(config.clone(), connected, self.command_timeout));
        let settings = Settings {
            max_len: self.max_len,
            max_age: self.max_age,
            window: self.window,
            command_timeout: self.command_timeout,
            connect_timeout: self.connect_timeout,
        };
        let (reader, following) = Reader::start(config, &settings).await?;
        Ok(PostgresLogs::new(prefix, link, settings, following, reader))
    }
}

/// Runs the schema on a connection of its own.
async fn migrate(config: &Config, prefix: &Arc<str>, limit: Duration) -> Result<(), PostgresLogError> {
    let failed = |error| PostgresLogError::from_postgres("migrate", prefix, error);
    let (client, connection) = limited("migrate", prefix, limit, async {
        config.connect(tokio_postgres::NoTls).await.map_err(failed)
    })
    .await?;
    let driver = tokio::spawn(connection);
    let ran = client.batch_execute(sql::SCHEMA).await.map_err(failed);
    drop(client);
    let _ = driver.await;
    ran
}
