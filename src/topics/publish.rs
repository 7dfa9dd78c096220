//! [`PublishService`]: appending to the topics of a registry over HTTP, authorized, with
//! idempotent retries.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue, Method, Request, StatusCode};
use http_body::Body;
use tower_service::Service;

use self::request::{checked_name, idempotency_key, publish, too_large, Admitted, Settings};
use super::from_request::{self, KeysFrom};
use super::{Answer, MakeLog, Refusal, Topics, TopicsFuture};
use crate::request::Transport;
use crate::respond::text_response;
use crate::BoxError;

mod body;
#[cfg(feature = "json")]
mod json;
mod request;

/// The default bound on the body of a publish: 64 KiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// The request header with the client's idempotency key (IETF httpapi draft).
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// The response header set to `true` on the answer to a repeated publish (nothing appended).
pub const IDEMPOTENT_REPLAYED_HEADER: &str = "idempotent-replayed";

/// The request header that names the event of a text body, as the query parameter `event` does.
pub const EVENT_NAME_HEADER: &str = "event-name";

type Authorize = Arc<dyn Fn(&Parts, &str) -> Result<(), Refusal> + Send + Sync>;

/// Publishes to the topics of a [`Topics`] registry over HTTP: `POST` appends the body to the
/// topic the request names and answers `201` with `{"id":"<event id>"}` (`application/json`),
/// so that any program (a backend in another language, a cron job, a webhook) can publish.
/// The topic comes from the request as for [`TopicsService`](super::TopicsService)
/// ([`key_from_query`](PublishService::key_from_query), the default `topic`;
/// [`key_from_path`](PublishService::key_from_path); [`key_from`](PublishService::key_from));
/// one topic per publish.
///
/// **Bodies.** `application/json` (or any `+json` type; parameters such as `charset` are
/// ignored) is the object `{"event": "<name>", "data": <value>}` (feature `json`): `event`
/// is optional, a string `data` is the event's text, any other value its compact JSON, a
/// missing one empty data, other members are ignored. Any other type, or none, is the data
/// itself as UTF-8 text (`curl -d` works); [`body_as_data`](PublishService::body_as_data)
/// takes JSON bodies that way too. The event's name comes from the JSON `event`, the query
/// parameter `event` or the header [`Event-Name`](EVENT_NAME_HEADER) (two different names
/// are `400`), else the [`event_name`](PublishService::event_name) set (none by default: an
/// unnamed event, `message` to an `EventSource`).
///
/// **Retries.** With an [`Idempotency-Key`](IDEMPOTENCY_KEY_HEADER) header (1 to 255 visible
/// ASCII characters, chosen by the client per publish and sent again with each retry), a
/// repeat of the same key with the same event on the same topic within the
/// [window](PublishService::idempotency_window) (5 minutes by default) appends nothing and is
/// answered as the first was, `201` with the first event's id, plus
/// [`Idempotent-Replayed: true`](IDEMPOTENT_REPLAYED_HEADER). The check and the append are
/// one step ([`Topics::append_once`]), so a repeat sent while the first is in flight never
/// waits and never fails: it gets the first one's id. The same key with another event is
/// `422`. Memory topics remember a bounded number of keys per topic in this process
/// ([`MemoryLogBuilder::remembered_keys`](crate::MemoryLogBuilder::remembered_keys)); Redis
/// topics remember them in Redis, for every instance.
///
/// | answer | when |
/// |---|---|
/// | `201` `{"id":"…"}` | appended (or a repeat: the first id, `Idempotent-Replayed: true`) |
/// | `400` | no topic, several, or an invalid key; an invalid `Idempotency-Key`; a body that is not UTF-8, not the JSON object, or (with [`require_data`](PublishService::require_data)) empty; an invalid or refused event name |
/// | `401`, `403` | the [`authorize`](PublishService::authorize) hook's [`Refusal`] |
/// | `404` | a topic that does not exist, in a registry whose topics are [created explicitly](super::TopicsBuilder::created_explicitly) |
/// | `405` + `Allow: POST` | any other method |
/// | `409` | a finished topic |
/// | `413` | a body over [`max_body_bytes`](PublishService::max_body_bytes) (64 KiB), told by `Content-Length` or found while reading |
/// | `415` | a type outside [`accept_only`](PublishService::accept_only) (with `Accept`), or JSON without the `json` feature |
/// | `422` | an `Idempotency-Key` used for another event within the window |
/// | `503` + `Retry-After` | the topic's backend unavailable, a topic limit reached, or the hook's [`Refusal::unavailable`] |
///
/// Who asks is checked before the body is read: an unauthorized client's body is never read.
///
/// ```
/// use tower::ServiceExt;
/// use tower_eventstream::{MemoryLog, PublishService, Refusal, Topics};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// let rooms = Topics::new(MemoryLog::builder());
/// // In axum: `Router::new().route_service("/rooms/{room}/messages", publish)`.
/// let publish = PublishService::new(rooms.clone())
///     .key_from_path(1) // "/rooms/{room}/messages": the segment after "rooms"
///     .event_name("message")
///     .authorize(|parts, _room| match parts.headers.get("authorization") {
///         Some(_) => Ok(()),
///         None => Err(Refusal::unauthorized("sign in first")),
///     });
/// let post = || {
///     http::Request::post("/rooms/kitchen/messages")
///         .header("authorization", "Bearer …")
///         .header("idempotency-key", "8e03978e")
///         .body(String::from("the kettle is on"))
///         .unwrap()
/// };
/// let first = publish.clone().oneshot(post()).await.unwrap();
/// assert_eq!(first.status(), 201); // {"id":"<event id>"}
/// // The client lost the answer and sends the same request again: nothing is appended.
/// let retry = publish.clone().oneshot(post()).await.unwrap();
/// assert_eq!(retry.status(), 201);
/// assert_eq!(retry.headers()["idempotent-replayed"], "true");
/// assert_eq!(rooms.log("kitchen").await.unwrap().len(), 1);
/// # });
/// ```
pub struct PublishService<M: MakeLog> {
    topics: Topics<M>,
    keys_from: KeysFrom,
    default_topic: Option<Arc<str>>,
    authorize: Authorize,
    settings: Arc<Settings>,
}

impl<M: MakeLog> Clone for PublishService<M> {
    fn clone(&self) -> Self {
        PublishService {
            topics: self.topics.clone(),
            keys_from: Arc::clone(&self.keys_from),
            default_topic: self.default_topic.clone(),
            authorize: Arc::clone(&self.authorize),
            settings: Arc::clone(&self.settings),
        }
    }
}

impl<M: MakeLog> std::fmt::Debug for PublishService<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishService")
            .field("topics", &self.topics)
            .field("default_topic", &self.default_topic)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<M: MakeLog> PublishService<M> {
    /// Publishes to `topics`, the key taken from the query parameter `topic`: anyone may
    /// publish, text and JSON bodies of up to [`DEFAULT_MAX_BODY_BYTES`], events unnamed
    /// unless the request names them, idempotency keys remembered for
    /// [`DEFAULT_ONCE_WINDOW`](crate::DEFAULT_ONCE_WINDOW).
    pub fn new(topics: Topics<M>) -> Self {
        PublishService {
            topics,
            keys_from: from_request::from_query("topic"),
            default_topic: None,
            authorize: Arc::new(|_: &Parts, _: &str| Ok(())),
            settings: Arc::new(Settings::default()),
        }
    }

    /// Takes the key from the query parameter `name` (percent-decoded; given twice with two
    /// keys: `400`).
    pub fn key_from_query(mut self, name: &'static str) -> Self {
        self.keys_from = from_request::from_query(name);
        self
    }

    /// Takes the key from the path segment at `index` (0 is the first after the leading
    /// `/`): `1` for `/rooms/{room}/messages`. Nested routers see the full path.
    pub fn key_from_path(mut self, index: usize) -> Self {
        self.keys_from = from_request::from_path(index);
        self
    }

    /// Takes the key from the request parts as `key_from` says (`None`: no topic, `400`
    /// unless there is a [`default_topic`](PublishService::default_topic)).
    pub fn key_from(mut self, key_from: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> Self {
        self.keys_from = from_request::from_one(key_from);
        self
    }

    /// Publishes to the topic `key` when the request names none (instead of `400`).
    pub fn default_topic(mut self, key: &str) -> Self {
        self.default_topic = Some(key.into());
        self
    }

    /// Decides, for each request and its topic, whether the client may publish there; runs
    /// before the body is read. Separate from who may read ([`TopicsService::authorize`](super::TopicsService::authorize)),
    /// with the same shape: it sees the request parts (what a tower auth layer put in the
    /// extensions), and a [`Refusal`] is answered `401` or `403`, or for
    /// [`Refusal::unavailable`] `503` + `Retry-After`.
    pub fn authorize(
        mut self,
        authorize: impl Fn(&Parts, &str) -> Result<(), Refusal> + Send + Sync + 'static,
    ) -> Self {
        self.authorize = Arc::new(authorize);
        self
    }

    /// Names the events of requests that name none (`message`, `notification`).
    ///
    /// # Panics
    ///
    /// If `name` is not an event name (empty, or with CR, LF or NUL): a bug of the caller,
    /// not of a client.
    pub fn event_name(mut self, name: &str) -> Self {
        let settings = Arc::make_mut(&mut self.settings);
        settings.event_name = Some(checked_name(name));
        settings.fixed_name = false;
        self
    }

    /// Names every event `name`: a request that names another is refused (`400`), so clients
    /// cannot publish events the pages do not expect (a `reset` of their own making).
    ///
    /// # Panics
    ///
    /// As [`event_name`](PublishService::event_name).
    pub fn fixed_event_name(mut self, name: &str) -> Self {
        let settings = Arc::make_mut(&mut self.settings);
        settings.event_name = Some(checked_name(name));
        settings.fixed_name = true;
        self
    }

    /// Takes only bodies of these media types (`"text/plain"`, `"application/json"`),
    /// compared without parameters and case; any other is `415` with an `Accept` header
    /// listing these. A body without `Content-Type` counts as `text/plain`.
    pub fn accept_only(mut self, media_types: &[&str]) -> Self {
        let media_types = media_types
            .iter()
            .map(|t| t.trim().to_ascii_lowercase().into())
            .collect();
        Arc::make_mut(&mut self.settings).accept_only = Some(media_types);
        self
    }

    /// Takes every body as the event's data, whatever its type: a JSON body is not read as
    /// `{"event", "data"}` but kept as it came (a webhook's payload forwarded as is).
    pub fn body_as_data(mut self) -> Self {
        Arc::make_mut(&mut self.settings).body_as_data = true;
        self
    }

    /// Refuses an event with empty data (`400`): for routes where an empty post is a mistake.
    pub fn require_data(mut self) -> Self {
        Arc::make_mut(&mut self.settings).require_data = true;
        self
    }

    /// Takes bodies of at most `bytes` (default [`DEFAULT_MAX_BODY_BYTES`]); a longer one is
    /// `413`, refused by its `Content-Length` before it is read, or as soon as it is longer.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.settings).max_body_bytes = bytes;
        self
    }

    /// Remembers an idempotency key for `window` (default
    /// [`DEFAULT_ONCE_WINDOW`](crate::DEFAULT_ONCE_WINDOW)): a repeat within it appends nothing.
    pub fn idempotency_window(mut self, window: Duration) -> Self {
        Arc::make_mut(&mut self.settings).window = window;
        self
    }

    /// The registry published to.
    pub fn topics(&self) -> &Topics<M> {
        &self.topics
    }
}

impl<M: MakeLog, B> Service<Request<B>> for PublishService<M>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Answer<M::Log>;
    type Error = Infallible;
    type Future = TopicsFuture<M>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let admitted = match self.admit(&parts, &body) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                return TopicsFuture::ready(*refusal);
            }
        };
        let topics = self.topics.clone();
        let settings = Arc::clone(&self.settings);
        TopicsFuture::new(async move { publish(topics, settings, parts, body, admitted).await })
    }
}

impl<M: MakeLog> PublishService<M> {
    /// What can be checked from the request head, in order: the method, the topic, who asks,
    /// the idempotency key, the body's type and announced length.
    /// (The refusal is boxed: a response is large, and the `Ok` path is the one taken.)
    fn admit<B: Body>(&self, parts: &Parts, body: &B) -> Result<Admitted, Box<Answer<M::Log>>> {
        if parts.method != Method::POST {
            let mut refusal = text_response(StatusCode::METHOD_NOT_ALLOWED, "only POST publishes here");
            refusal
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return Err(Box::new(refusal));
        }
        let topic = self
            .topic(parts)
            .map_err(|reason| Box::new(text_response(StatusCode::BAD_REQUEST, reason)))?;
        (self.authorize)(parts, &topic)
            .map_err(|refusal| Box::new(refusal.answer(Transport::LongPoll, crate::DEFAULT_RETRY)))?;
        let once = idempotency_key(parts)
            .map_err(|reason| Box::new(text_response(StatusCode::BAD_REQUEST, reason)))?;
        let settings = &self.settings;
        let format = body::format(
            &parts.headers,
            settings.accept_only.as_deref(),
            settings.body_as_data,
        )
        .map_err(|unsupported| {
            let mut refusal = text_response(StatusCode::UNSUPPORTED_MEDIA_TYPE, unsupported.reason);
            if let Some(accept) = unsupported
                .accept
                .and_then(|list| HeaderValue::try_from(list).ok())
            {
                refusal.headers_mut().insert(header::ACCEPT, accept);
            }
            Box::new(refusal)
        })?;
        if body::announced_too_large(&parts.headers, body, settings.max_body_bytes) {
            return Err(Box::new(too_large(settings.max_body_bytes)));
        }
        Ok(Admitted { topic, once, format })
    }

    /// The one valid topic key the request names, or why not.
    fn topic(&self, parts: &Parts) -> Result<String, String> {
        let mut keys = (self.keys_from)(parts);
        keys.dedup();
        let key = match (keys.pop(), keys.is_empty()) {
            (Some(key), true) => key,
            (Some(_), false) => {
                return Err("a publish goes to one topic; the request names several".to_owned())
            }
            (None, _) => match &self.default_topic {
                Some(key) => key.to_string(),
                None => return Err("the request names no topic".to_owned()),
            },
        };
        super::key::validate(&key).map_err(|error| error.to_string())?;
        Ok(key)
    }
}
