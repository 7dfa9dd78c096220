//! Errors: what failed, on which topic, and what to check.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// SQLSTATE of the schema's refusal to add to a finished topic.
pub(super) const FINISHED: &str = "ES001";
/// SQLSTATE of the schema's refusal of a misused end (see `eventstream_finish`).
const MISUSED_END: &str = "ES003";

/// What kind of failure a [`PostgresLogError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PostgresLogErrorKind {
    /// The URL or credentials are unusable, or the schema is missing (run the migration:
    /// [`PostgresLogBuilder::migrate`](super::PostgresLogBuilder::migrate)).
    Config,
    /// PostgreSQL could not be reached, or the connection broke.
    Unavailable,
    /// PostgreSQL did not answer within the configured time.
    Timeout,
    /// PostgreSQL answered with an error about the request (for example: text with a NUL
    /// character, which PostgreSQL's `text` cannot hold).
    Refused,
    /// PostgreSQL answered in a way this crate does not understand (for example: a table of
    /// another shape under the schema's name).
    UnexpectedReply,
}

/// A failure of [`PostgresLog`](super::PostgresLog)'s PostgreSQL backend; its message says
/// what to check.
///
/// Appends answer it directly; subscribing wraps it in
/// [`SubscribeError::Backend`](crate::SubscribeError::Backend) (an SSE stream is then held
/// open until PostgreSQL answers, a long poll gets `503`; see
/// [`StreamRequest::serve`](crate::StreamRequest::serve)).
pub struct PostgresLogError {
    kind: PostgresLogErrorKind,
    operation: &'static str,
    topic: Arc<str>,
    detail: String,
    source: Option<tokio_postgres::Error>,
}

impl PostgresLogError {
    pub(super) fn new(
        kind: PostgresLogErrorKind,
        operation: &'static str,
        topic: &Arc<str>,
        detail: impl Into<String>,
    ) -> Self {
        PostgresLogError {
            kind,
            operation,
            topic: Arc::clone(topic),
            detail: detail.into(),
            source: None,
        }
    }

    pub(super) fn from_postgres(
        operation: &'static str,
        topic: &Arc<str>,
        error: tokio_postgres::Error,
    ) -> Self {
        use tokio_postgres::error::SqlState;
        let (kind, detail) = match error.code() {
            None if error.is_closed() || about_the_connection(&error) => (
                PostgresLogErrorKind::Unavailable,
                "check that PostgreSQL is running and reachable at the configured URL",
            ),
            // A value of another type than the statement's (the schema is of another version).
            None => (
                PostgresLogErrorKind::UnexpectedReply,
                "the schema may be of another version: run the migration again (PostgresLogBuilder::migrate)",
            ),
            Some(code) if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::UNDEFINED_FUNCTION => (
                PostgresLogErrorKind::Config,
                "the schema is missing: run the migration (PostgresLogBuilder::migrate, or the SQL in the docs)",
            ),
            Some(code)
                if *code == SqlState::INVALID_PASSWORD
                    || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                    || *code == SqlState::INVALID_CATALOG_NAME =>
            {
                (
                    PostgresLogErrorKind::Config,
                    "check the URL's host, port, database, user and password",
                )
            }
            Some(code) if code.code().starts_with("08") || code.code().starts_with("57") => (
                // Connection exceptions, and the server shutting down or restarting.
                PostgresLogErrorKind::Unavailable,
                "check that PostgreSQL is running and reachable at the configured URL",
            ),
            Some(code) if code.code() == MISUSED_END => (PostgresLogErrorKind::Refused, ""),
            Some(_) => (PostgresLogErrorKind::Refused, ""),
        };
        PostgresLogError {
            kind,
            operation,
            topic: Arc::clone(topic),
            detail: detail.to_owned(),
            source: Some(error),
        }
    }

    pub(super) fn timeout(operation: &'static str, topic: &Arc<str>, after: Duration) -> Self {
        let mut detail = format!(
            "no answer within {after:?}; check that PostgreSQL is running and reachable at the configured URL"
        );
        match operation {
            "append" => detail.push_str(" (the event may or may not have been stored)"),
            "finish" => {
                detail.push_str(" (the end may or may not have been stored; finishing again is harmless)")
            }
            _ => {}
        }
        PostgresLogError::new(PostgresLogErrorKind::Timeout, operation, topic, detail)
    }

    pub(super) fn unexpected(operation: &'static str, topic: &Arc<str>, detail: impl Into<String>) -> Self {
        PostgresLogError::new(PostgresLogErrorKind::UnexpectedReply, operation, topic, detail)
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> PostgresLogErrorKind {
        self.kind
    }

    /// The topic the failing operation was about (empty for the family's own work, such as
    /// its reader's).
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Whether PostgreSQL refused because the topic is finished.
    pub(super) fn is_finished(&self) -> bool {
        self.source
            .as_ref()
            .and_then(tokio_postgres::Error::code)
            .is_some_and(|code| code.code() == FINISHED)
    }
}

impl fmt::Display for PostgresLogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            PostgresLogErrorKind::Config => "cannot use the PostgreSQL settings for",
            PostgresLogErrorKind::Unavailable => "PostgreSQL is unavailable for",
            PostgresLogErrorKind::Timeout => "PostgreSQL timed out on",
            PostgresLogErrorKind::Refused => "PostgreSQL refused",
            PostgresLogErrorKind::UnexpectedReply => "unexpected reply from PostgreSQL to",
        };
        write!(f, "{what} {} on topic `{}`", self.operation, self.topic)?;
        if let Some(source) = &self.source {
            match source.as_db_error() {
                // The server's own message, without the client's prefix.
                Some(db) => write!(f, ": {}", db.message())?,
                None => write!(f, ": {source}")?,
            }
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl fmt::Debug for PostgresLogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresLogError")
            .field("kind", &self.kind)
            .field("operation", &self.operation)
            .field("topic", &self.topic)
            .field("detail", &self.detail)
            .field("source", &self.source)
            .finish()
    }
}

impl std::error::Error for PostgresLogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// Whether a client-side error comes from the connection (reaching or talking to the server).
fn about_the_connection(error: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Runs `request` with a time limit, mapping both failures to [`PostgresLogError`].
pub(super) async fn limited<T>(
    operation: &'static str,
    topic: &Arc<str>,
    limit: Duration,
    request: impl Future<Output = Result<T, PostgresLogError>>,
) -> Result<T, PostgresLogError> {
    match tokio::time::timeout(limit, request).await {
        Ok(result) => result,
        Err(_) => Err(PostgresLogError::timeout(operation, topic, limit)),
    }
}
