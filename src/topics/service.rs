//! [`TopicsService`]: every topic of a registry at one route.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::request::Parts;
use http::{Request, StatusCode};
use tower_service::Service;

use super::from_request::{self, KeysFrom};
use super::{Access, Answer, MakeLog, Refusal, Topics};
use crate::respond::{refuse_method, text_response};
use crate::{StreamConfig, StreamRequest, Transport};

type Authorize = Arc<dyn Fn(&Parts, &str) -> Result<Access, Refusal> + Send + Sync>;
type TopicsFrom = Arc<dyn Fn(&Parts) -> Result<Vec<(String, Access)>, Refusal> + Send + Sync>;

/// Serves every topic of a [`Topics`] registry at one route, as
/// [`EventLogService`](crate::EventLogService) serves one log: the topic comes from the
/// request ([`key_from_query`](TopicsService::key_from_query),
/// [`key_from_path`](TopicsService::key_from_path) or any
/// [`key_from`](TopicsService::key_from) closure), and an
/// [`authorize`](TopicsService::authorize) hook decides, from the request parts (so it sees
/// what tower auth layers put in the extensions), whether and what this client may read.
///
/// - No topic in the request, or an invalid key: `400`. A refusal of the hook: its `401` or
///   `403`. Limits and backend faults: passing (see [`Topics`]).
/// - Browsers' `EventSource` cannot send headers: authorize them with a cookie, or with a
///   short-lived signed token in the query that the hook checks (and that access logs
///   should redact); give [`Access::for_at_most`] the token's remaining life, so the stream
///   ends at expiry with a `retry:` hint and the browser comes back to be checked again.
/// - When the topics depend on who asks (a user's own topic plus a shared one), one
///   [`topics_from`](TopicsService::topics_from) hook checks the credential once and returns
///   the topics with their access, or a [`Refusal`].
///
/// ```
/// use tower::ServiceExt;
/// use tower_eventstream::{Access, Event, MemoryLog, Refusal, Topics, TopicsService};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// let rooms = Topics::new(MemoryLog::builder());
/// // In axum: `Router::new().route_service("/rooms/{room}/events", service)`.
/// let service = TopicsService::new(rooms.clone())
///     .key_from_path(1) // "/rooms/{room}/events": the segment after "rooms"
///     .authorize(|parts, room| match parts.headers.get("cookie") {
///         Some(_) if room != "staff" => Ok(Access::allow()),
///         Some(_) => Err(Refusal::forbidden("staff only")),
///         None => Err(Refusal::unauthorized("sign in first")),
///     });
/// rooms.append("lobby", Event::new("hello")).await.unwrap();
///
/// let request = http::Request::get("/rooms/staff/events?timeout=0")
///     .header("cookie", "session=…")
///     .body(())
///     .unwrap();
/// let response = service.oneshot(request).await.unwrap();
/// assert_eq!(response.status(), 403);
/// # });
/// ```
pub struct TopicsService<M: MakeLog> {
    topics: Topics<M>,
    config: Arc<StreamConfig>,
    keys_from: KeysFrom,
    default_topic: Option<Arc<str>>,
    authorize: Authorize,
    /// Set by `topics_from`: in place of `keys_from` and `authorize`.
    topics_from: Option<TopicsFrom>,
}

impl<M: MakeLog> Clone for TopicsService<M> {
    fn clone(&self) -> Self {
        TopicsService {
            topics: self.topics.clone(),
            config: Arc::clone(&self.config),
            keys_from: Arc::clone(&self.keys_from),
            default_topic: self.default_topic.clone(),
            authorize: Arc::clone(&self.authorize),
            topics_from: self.topics_from.clone(),
        }
    }
}

impl<M: MakeLog> std::fmt::Debug for TopicsService<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicsService")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl<M: MakeLog> TopicsService<M> {
    /// Serves `topics`, the keys taken from the query parameter `topic` (repeated for several
    /// topics in one stream), every client allowed every event.
    pub fn new(topics: Topics<M>) -> Self {
        TopicsService {
            topics,
            config: Arc::new(StreamConfig::default()),
            keys_from: from_request::from_query("topic"),
            default_topic: None,
            authorize: Arc::new(|_: &Parts, _: &str| Ok(Access::allow())),
            topics_from: None,
        }
    }

    /// Serves with these settings.
    pub fn with_config(mut self, config: StreamConfig) -> Self {
        self.config = Arc::new(config);
        self
    }

    /// Takes the keys from the query parameter `name` (percent-decoded): one topic, or
    /// several in one stream when it is repeated (`?topic=a&topic=b`; see
    /// [`Topics::serve_many`] for the cursor and the limit on how many).
    pub fn key_from_query(mut self, name: &'static str) -> Self {
        self.keys_from = from_request::from_query(name);
        self.topics_from = None;
        self
    }

    /// Takes the key from the path segment at `index` (0 is the first after the leading
    /// `/`): `1` for `/rooms/{room}/events`. Nested routers see the full path.
    pub fn key_from_path(mut self, index: usize) -> Self {
        self.keys_from = from_request::from_path(index);
        self.topics_from = None;
        self
    }

    /// Takes the key from the request parts as `key_from` says (`None`: no topic, `400`).
    pub fn key_from(mut self, key_from: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> Self {
        self.keys_from = from_request::from_one(key_from);
        self.topics_from = None;
        self
    }

    /// Takes the keys of one or several topics from the request parts as `keys_from` says
    /// (none: `400`; a key named twice counts once).
    pub fn keys_from(mut self, keys_from: impl Fn(&Parts) -> Vec<String> + Send + Sync + 'static) -> Self {
        self.keys_from = Arc::new(keys_from);
        self.topics_from = None;
        self
    }

    /// Serves the topic `key` to a request that names none (instead of `400`): a chat's
    /// lobby at `/events`, while `/events?topic=a&topic=b` follows others.
    pub fn default_topic(mut self, key: &str) -> Self {
        self.default_topic = Some(key.into());
        self
    }

    /// Decides, for each request and topic, whether and what the client may read (each topic
    /// of a stream over several is asked for; one refusal refuses the request).
    pub fn authorize(
        mut self,
        authorize: impl Fn(&Parts, &str) -> Result<Access, Refusal> + Send + Sync + 'static,
    ) -> Self {
        self.authorize = Arc::new(authorize);
        self.topics_from = None;
        self
    }

    /// Takes the topics and each one's access from the request parts in one hook, in place of
    /// [`keys_from`](TopicsService::keys_from) and [`authorize`](TopicsService::authorize)
    /// (whichever is set last is used): for streams whose topics depend on who asks, so the
    /// credential is checked once per request. A [`Refusal`] is answered by the failure rule
    /// (`401`, `403`, or a passing [`Refusal::unavailable`]); no topic is `400` (a
    /// [`default_topic`](TopicsService::default_topic) is not used, since it would skip the
    /// hook's check).
    ///
    /// ```
    /// use tower::ServiceExt;
    /// use tower_eventstream::{Access, MemoryLog, Refusal, Topics, TopicsService};
    ///
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// // Each user's own notifications and everyone's announcements, on one connection.
    /// let service = TopicsService::new(Topics::new(MemoryLog::builder())).topics_from(|parts| {
    ///     let user = parts.headers.get("x-user").and_then(|v| v.to_str().ok());
    ///     let user = user.ok_or_else(|| Refusal::unauthorized("sign in first"))?;
    ///     Ok(vec![
    ///         (format!("user-{user}"), Access::allow()),
    ///         ("announcements".to_owned(), Access::allow()),
    ///     ])
    /// });
    /// let request = http::Request::get("/notifications?timeout=0").body(()).unwrap();
    /// let response = service.oneshot(request).await.unwrap();
    /// assert_eq!(response.status(), 401);
    /// # });
    /// ```
    pub fn topics_from(
        mut self,
        topics_from: impl Fn(&Parts) -> Result<Vec<(String, Access)>, Refusal> + Send + Sync + 'static,
    ) -> Self {
        self.topics_from = Some(Arc::new(topics_from));
        self
    }

    /// The registry served.
    pub fn topics(&self) -> &Topics<M> {
        &self.topics
    }
}

type BoxedAnswer<L> = Pin<Box<dyn Future<Output = Result<Answer<L>, Infallible>> + Send>>;

/// The response future of [`TopicsService`] and [`PublishService`](super::PublishService)
/// (boxed, as [`EventLogFuture`](crate::EventLogFuture) is).
#[must_use = "the response exists only once this future is awaited"]
pub struct TopicsFuture<M: MakeLog> {
    answer: BoxedAnswer<M::Log>,
}

impl<M: MakeLog> Future for TopicsFuture<M> {
    type Output = Result<Answer<M::Log>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.answer.as_mut().poll(cx)
    }
}

impl<M: MakeLog> std::fmt::Debug for TopicsFuture<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicsFuture").finish_non_exhaustive()
    }
}

impl<M: MakeLog> TopicsFuture<M> {
    pub(super) fn ready(answer: Answer<M::Log>) -> Self {
        TopicsFuture {
            answer: Box::pin(std::future::ready(Ok(answer))),
        }
    }

    pub(super) fn new(answer: impl Future<Output = Answer<M::Log>> + Send + 'static) -> Self {
        TopicsFuture {
            answer: Box::pin(async move { Ok(answer.await) }),
        }
    }
}

impl<M: MakeLog, B> Service<Request<B>> for TopicsService<M> {
    type Response = Answer<M::Log>;
    type Error = Infallible;
    type Future = TopicsFuture<M>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (parts, _body) = request.into_parts();
        if let Some(refusal) = refuse_method(&parts.method) {
            return TopicsFuture::ready(refusal);
        }
        // Who asks comes first: a request without a session is `401` whatever else it holds.
        let topics = match self.choose(&parts) {
            Ok(topics) => topics,
            Err(Choice::Refused(refusal)) => {
                let transport = Transport::negotiate(&parts).unwrap_or(Transport::LongPoll);
                let retry = self.config.retry.unwrap_or(crate::DEFAULT_RETRY);
                return TopicsFuture::ready(refusal.answer(transport, retry));
            }
            Err(Choice::Invalid(reason)) => {
                return TopicsFuture::ready(text_response(StatusCode::BAD_REQUEST, reason))
            }
        };
        let request = match StreamRequest::from_parts(&parts, Arc::clone(&self.config)) {
            Ok(request) => request,
            Err(error) => {
                crate::measure::refused_request(&error);
                return TopicsFuture::ready(text_response(StatusCode::BAD_REQUEST, error));
            }
        };
        let registry = self.topics.clone();
        TopicsFuture {
            answer: Box::pin(async move { Ok(registry.serve_many(topics, request).await) }),
        }
    }
}

/// Why a request's topics could not be chosen.
enum Choice {
    Refused(Refusal),
    /// `400`, with the reason.
    Invalid(String),
}

impl<M: MakeLog> TopicsService<M> {
    /// The topics a request asks for, each with its access, once each and with valid keys.
    fn choose(&self, parts: &Parts) -> Result<Vec<(String, Access)>, Choice> {
        let mut topics = match &self.topics_from {
            Some(topics_from) => {
                let topics = topics_from(parts).map_err(Choice::Refused)?;
                for (key, _) in &topics {
                    super::key::validate(key).map_err(|error| Choice::Invalid(error.to_string()))?;
                }
                topics
            }
            None => {
                let mut keys = (self.keys_from)(parts);
                if keys.is_empty() {
                    keys.extend(self.default_topic.as_deref().map(str::to_owned));
                }
                let mut topics = Vec::with_capacity(keys.len());
                for key in keys {
                    // Refused before the hook sees it: an invalid key is no topic to authorize.
                    super::key::validate(&key).map_err(|error| Choice::Invalid(error.to_string()))?;
                    let access = (self.authorize)(parts, &key).map_err(Choice::Refused)?;
                    topics.push((key, access));
                }
                topics
            }
        };
        let mut seen = std::collections::HashSet::new();
        topics.retain(|(key, _)| seen.insert(key.clone()));
        if topics.is_empty() {
            return Err(Choice::Invalid("the request names no topic".to_owned()));
        }
        Ok(topics)
    }
}
