//! Connections to PostgreSQL: one shared session (a connection and its prepared statements)
//! made again when it breaks, and a listening session that hears notifications.

use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Statement};

use super::error::{limited, PostgresLogError};
use super::sql;
use crate::log::ring::Lock;

/// The channel the schema's trigger notifies on every commit that added rows.
pub(super) const CHANNEL: &str = "eventstream";

/// What the listening connection heard.
#[derive(Default)]
pub(super) struct Heard {
    /// Notified (a stored permit) on every notification.
    pub(super) notify: Notify,
    /// The greatest transaction id the notifications named (the schema's trigger sends the
    /// committing transaction's); anything else counts as the greatest possible.
    newest: AtomicU64,
}

impl Heard {
    fn heard(&self, payload: &str) {
        let xid = payload.parse().unwrap_or(u64::MAX);
        self.newest.fetch_max(xid, Ordering::AcqRel);
        self.notify.notify_one();
    }

    /// The greatest transaction id heard of.
    pub(super) fn newest(&self) -> u64 {
        self.newest.load(Ordering::Acquire)
    }
}

/// A connection and the crate's statements, prepared on it once.
pub(super) struct Session {
    pub(super) client: Client,
    pub(super) append: Statement,
    pub(super) append_once: Statement,
    pub(super) gap: Statement,
    pub(super) finish: Statement,
    pub(super) fetch: Statement,
    pub(super) newest: Statement,
    pub(super) topic_end: Statement,
    pub(super) read_all: Statement,
    pub(super) head: Statement,
    pub(super) trim: Statement,
}

impl Session {
    /// Connects and prepares the statements; `heard` (if any) hears every notification, and
    /// is notified once more when the connection ends.
    pub(super) async fn open(
        config: &Config,
        heard: Option<Arc<Heard>>,
    ) -> Result<Session, tokio_postgres::Error> {
        let (client, mut connection) = config.connect(NoTls).await?;
        // The connection's messages: notifications wake `heard`; the rest (notices) are the
        // server's business.
        tokio::spawn(async move {
            loop {
                let message = poll_fn(|cx| connection.poll_message(cx)).await;
                match message {
                    Some(Ok(AsyncMessage::Notification(notification))) => {
                        if let Some(heard) = &heard {
                            heard.heard(notification.payload());
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        if let Some(heard) = &heard {
                            heard.notify.notify_one();
                        }
                        return;
                    }
                }
            }
        });
        // Once per connection; a round trip each, only when (re)connecting.
        Ok(Session {
            append: client.prepare(sql::APPEND).await?,
            append_once: client.prepare(sql::APPEND_ONCE).await?,
            gap: client.prepare(sql::GAP).await?,
            finish: client.prepare(sql::FINISH).await?,
            fetch: client.prepare(sql::FETCH).await?,
            newest: client.prepare(sql::NEWEST).await?,
            topic_end: client.prepare(sql::TOPIC_END).await?,
            read_all: client.prepare(sql::READ_ALL).await?,
            head: client.prepare(sql::HEAD).await?,
            trim: client.prepare(sql::TRIM).await?,
            client,
        })
    }
}

/// The family's shared session, made again (once, whoever asks first) when it breaks.
pub(super) struct Link {
    config: Config,
    current: Lock<Option<Arc<Session>>>,
    connecting: tokio::sync::Mutex<()>,
    timeout: Duration,
}

impl Link {
    pub(super) fn new(config: Config, session: Session, timeout: Duration) -> Self {
        Link {
            config,
            current: Lock::new(Some(Arc::new(session))),
            connecting: tokio::sync::Mutex::new(()),
            timeout,
        }
    }

    fn live(&self) -> Option<Arc<Session>> {
        self.current
            .lock()
            .as_ref()
            .filter(|session| !session.client.is_closed())
            .cloned()
    }

    /// The live session, connecting again (within the timeout) if the last one broke.
    pub(super) async fn session(&self, topic: &Arc<str>) -> Result<Arc<Session>, PostgresLogError> {
        if let Some(session) = self.live() {
            return Ok(session);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(session) = self.live() {
            return Ok(session);
        }
        let opened = limited("connect", topic, self.timeout, async {
            Session::open(&self.config, None)
                .await
                .map_err(|error| PostgresLogError::from_postgres("connect", topic, error))
        })
        .await?;
        let session = Arc::new(opened);
        *self.current.lock() = Some(Arc::clone(&session));
        Ok(session)
    }
}
