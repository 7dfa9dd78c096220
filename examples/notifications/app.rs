//! The notifications example's routes, shared by `main.rs` and the integration tests: each
//! user's own topic, a shared announcements topic and an audit topic for admins, all on one
//! connection per page, through one [`TopicsService::topics_from`] hook.
//!
//! HTTP contract (public: change only with a CHANGELOG entry):
//! - `GET /`: the page. It signs in by setting the cookie `user=<name>` and shows the stream.
//! - `GET /api/notifications`: the signed-in user's events, SSE (`Accept: text/event-stream`)
//!   or long poll (`timeout`, `lastEventId` in the query), resumable with `Last-Event-ID` /
//!   `lastEventId`: the topics `user-<name>` (the user's own) and `announcements` (everyone's),
//!   plus `audit` for a user whose name starts with `admin`. Each event keeps its own name on
//!   SSE (`notification`, `announcement`, `audit`); a long-poll event also carries
//!   `"topic"`. Each event's id is a composite cursor (`user-ada~<id>,announcements~<id>`,
//!   opaque) that resumes every topic exactly. A gap in one topic is an event `reset` whose
//!   data is that topic's key (long poll: that event and `"reset": true`). No cookie `user`
//!   naming a user: `401` (an `EventSource` stops for good).
//! - `POST /api/users/{user}/notifications`: the body becomes a `notification` event of the
//!   topic `user-{user}`. `POST /api/announcements`: an `announcement` event for everyone.
//!   `POST /api/audit`: an `audit` event, seen by admins only. Each body is UTF-8 text of
//!   1 byte to 64 KiB (its `Content-Type` is not checked); each answers `201` with
//!   `{"id":"<id>"}` (`application/json`), the event's id in its
//!   topic (on a stream it is the `<topic>~<id>` part of the composite cursor); `400` for an
//!   empty or non-UTF-8 body, a `{user}` that is not a user name, an `Idempotency-Key` that
//!   is not 1 to 255 visible ASCII characters or a request that names another event
//!   (`?event=`, `Event-Name`), `405` (`Allow: POST`) for another method, `413` for a body
//!   too large, `503` + `Retry-After` if the topic cannot take it now. With an
//!   `Idempotency-Key` header, a retry of the same body to the same route within 5 minutes
//!   appends nothing and is answered `201` with the first event's id and
//!   `Idempotent-Replayed: true`; the same key with another body is `422`.
//! - A user name is 1 to 32 ASCII letters, digits, `-` or `_` (so `user-<name>` is always a
//!   topic key). Topics live in memory; one with no reader and no event for ten minutes is
//!   dropped, and a cursor from before then gets `reset` for it.
//!
//! The cookie is a stand-in for a session: see [`signed_in_user`]. The `POST` routes are open
//! to anyone here (they are [`PublishService`]s); a real application publishes from its own
//! code, or checks who may notify whom in their `authorize` hook.

use axum::extract::{Path, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower::ServiceExt;
use tower_eventstream::{
    Access, MakeLog, PublishService, Refusal, StreamConfig, TopicNames, Topics, TopicsService,
};

/// Everyone's topic.
pub const ANNOUNCEMENTS: &str = "announcements";

/// The admins' topic.
pub const AUDIT: &str = "audit";

/// The largest body accepted.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// The longest user name.
pub const MAX_USER_LEN: usize = 32;

const PAGE: &str = include_str!("index.html");

/// The notifications application over `topics` (`config`'s topic names are made plain).
pub fn router<M: MakeLog>(topics: Topics<M>, config: StreamConfig) -> Router {
    let stream = TopicsService::new(topics.clone())
        .with_config(config.topic_names(TopicNames::Plain))
        .topics_from(topics_of);
    // Each body is the text of one event, named by the route.
    let publish = |name: &str| {
        PublishService::new(topics.clone())
            .body_as_data()
            .require_data()
            .fixed_event_name(name)
            .max_body_bytes(MAX_TEXT_BYTES)
    };
    // The user's topic, which `notify_user` puts in the request once it has checked the name.
    let notify =
        publish("notification").key_from(|parts| parts.extensions.get::<Recipient>().map(|r| r.0.clone()));
    let announce = publish("announcement").key_from(|_| Some(ANNOUNCEMENTS.to_owned()));
    let audit = publish("audit").key_from(|_| Some(AUDIT.to_owned()));
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route_service("/api/notifications", stream)
        .route(
            "/api/users/{user}/notifications",
            post(move |Path(user): Path<String>, request: Request| notify_user(notify, user, request)),
        )
        .route_service("/api/announcements", announce)
        .route_service("/api/audit", audit)
}

/// The user a request comes from, or `None` when it is not signed in.
///
/// A STAND-IN for a verified session: it believes the cookie `user=<name>`, which anyone can
/// set to any name. A real application verifies its session here instead: it checks the
/// signature of a signed (or encrypted) session cookie, or looks the session id up in its
/// store, and returns the user that session belongs to (`None` for no session, a forged or
/// an expired one). It sees the whole request head, so the extensions that a tower
/// authentication layer put there are available too.
pub fn signed_in_user(parts: &Parts) -> Option<String> {
    // HTTP/2 may send the cookies in several `cookie` fields: look in each.
    let name = parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix("user="))?;
    is_user_name(name).then(|| name.to_owned())
}

/// Whether `name` is a user name: 1 to [`MAX_USER_LEN`] ASCII letters, digits, `-` or `_`.
pub fn is_user_name(name: &str) -> bool {
    (1..=MAX_USER_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `user` reads the audit topic. (A stand-in for a role from the session.)
pub fn is_admin(user: &str) -> bool {
    user.starts_with("admin")
}

/// The topic of `user`'s own notifications.
pub fn user_topic(user: &str) -> String {
    format!("user-{user}")
}

/// The `topics_from` hook: who asks, then what they read. Every topic is read whole.
fn topics_of(parts: &Parts) -> Result<Vec<(String, Access)>, Refusal> {
    let user = signed_in_user(parts).ok_or_else(|| {
        Refusal::unauthorized(format!(
            "sign in first: no cookie `user` naming a user (1 to {MAX_USER_LEN} ASCII letters, digits, `-` or `_`)"
        ))
    })?;
    let mut topics = vec![
        (user_topic(&user), Access::allow()),
        (ANNOUNCEMENTS.to_owned(), Access::allow()),
    ];
    if is_admin(&user) {
        topics.push((AUDIT.to_owned(), Access::allow()));
    }
    Ok(topics)
}

/// The topic of the user a notification is for, checked.
#[derive(Clone)]
struct Recipient(String);

/// `POST /api/users/{user}/notifications`: `400` unless `{user}` is a user name, else what
/// `notify` answers.
async fn notify_user<M: MakeLog>(notify: PublishService<M>, user: String, mut request: Request) -> Response {
    if !is_user_name(&user) {
        let reason =
            format!("{user:?} is not a user name: 1 to {MAX_USER_LEN} ASCII letters, digits, `-` or `_`\n");
        return (StatusCode::BAD_REQUEST, reason).into_response();
    }
    request.extensions_mut().insert(Recipient(user_topic(&user)));
    notify.oneshot(request).await.into_response()
}
