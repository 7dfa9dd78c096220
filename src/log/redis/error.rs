//! Errors: what failed, on which stream, and what to check.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What kind of failure a [`RedisLogError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisLogErrorKind {
    /// The URL, stream key or credentials are unusable.
    Config,
    /// Redis could not be reached, or the connection broke.
    Unavailable,
    /// Redis did not answer within the configured time.
    Timeout,
    /// Redis answered with an error (for example: the key holds a value that is not a stream).
    Refused,
    /// Redis answered in a way this crate does not understand (for example: a server older
    /// than 7.0).
    UnexpectedReply,
}

/// A failure of [`RedisLog`](super::RedisLog)'s Redis backend; its message says what to check.
///
/// Appends answer it directly; subscribing wraps it in
/// [`SubscribeError::Backend`](crate::SubscribeError::Backend) (an SSE stream is then held
/// open until Redis answers, a long poll gets `503`; see
/// [`StreamRequest::serve`](crate::StreamRequest::serve)).
pub struct RedisLogError {
    kind: RedisLogErrorKind,
    operation: &'static str,
    key: Arc<str>,
    detail: String,
    source: Option<redis::RedisError>,
}

impl RedisLogError {
    pub(super) fn new(
        kind: RedisLogErrorKind,
        operation: &'static str,
        key: &Arc<str>,
        detail: impl Into<String>,
    ) -> Self {
        RedisLogError {
            kind,
            operation,
            key: Arc::clone(key),
            detail: detail.into(),
            source: None,
        }
    }

    pub(super) fn from_redis(operation: &'static str, key: &Arc<str>, error: redis::RedisError) -> Self {
        use redis::ErrorKind as K;
        let kind = match error.kind() {
            _ if error.is_timeout() => RedisLogErrorKind::Timeout,
            // A cluster moving a slot, or failing over: not about the key, and soon over.
            _ if super::connection::redirected(&error) => RedisLogErrorKind::Unavailable,
            K::AuthenticationFailed | K::InvalidClientConfig => RedisLogErrorKind::Config,
            K::Server(_) | K::Extension => RedisLogErrorKind::Refused,
            K::Parse | K::UnexpectedReturnType => RedisLogErrorKind::UnexpectedReply,
            _ => RedisLogErrorKind::Unavailable,
        };
        let detail = match kind {
            RedisLogErrorKind::Refused if error.code() == Some("WRONGTYPE") => {
                "the key holds a value that is not a stream; choose another stream key".to_owned()
            }
            RedisLogErrorKind::Config => "check the URL's host, port, user and password".to_owned(),
            RedisLogErrorKind::Unavailable | RedisLogErrorKind::Timeout => {
                "check that redis-server is running and reachable at the configured URL".to_owned()
            }
            _ => String::new(),
        };
        RedisLogError {
            kind,
            operation,
            key: Arc::clone(key),
            detail,
            source: Some(error),
        }
    }

    pub(super) fn timeout(operation: &'static str, key: &Arc<str>, after: Duration) -> Self {
        let mut detail = format!(
            "no answer within {after:?}; check that redis-server is running and reachable at the configured URL"
        );
        match operation {
            "XADD" => detail.push_str(" (the event may or may not have been stored)"),
            "finish" => {
                detail.push_str(" (the end may or may not have been stored; finishing again is harmless)")
            }
            _ => {}
        }
        RedisLogError::new(RedisLogErrorKind::Timeout, operation, key, detail)
    }

    pub(super) fn unexpected(operation: &'static str, key: &Arc<str>, detail: impl Into<String>) -> Self {
        RedisLogError::new(RedisLogErrorKind::UnexpectedReply, operation, key, detail)
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> RedisLogErrorKind {
        self.kind
    }

    /// The stream key the failing operation was about.
    pub fn stream_key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for RedisLogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            RedisLogErrorKind::Config => "cannot use the Redis settings for",
            RedisLogErrorKind::Unavailable => "Redis is unavailable for",
            RedisLogErrorKind::Timeout => "Redis timed out on",
            RedisLogErrorKind::Refused => "Redis refused",
            RedisLogErrorKind::UnexpectedReply => "unexpected reply from Redis to",
        };
        write!(f, "{what} {} on stream `{}`", self.operation, self.key)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl fmt::Debug for RedisLogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLogError")
            .field("kind", &self.kind)
            .field("operation", &self.operation)
            .field("key", &self.key)
            .field("detail", &self.detail)
            .field("source", &self.source)
            .finish()
    }
}

impl std::error::Error for RedisLogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// Runs `request` with a time limit, mapping both failures to [`RedisLogError`].
pub(super) async fn limited<T>(
    operation: &'static str,
    key: &Arc<str>,
    limit: Duration,
    request: impl Future<Output = Result<T, RedisLogError>>,
) -> Result<T, RedisLogError> {
    match tokio::time::timeout(limit, request).await {
        Ok(result) => result,
        Err(_) => Err(RedisLogError::timeout(operation, key, limit)),
    }
}
