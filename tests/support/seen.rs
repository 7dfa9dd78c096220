//! A record of the requests a server received, kept by a layer in front of its router: what
//! the browser itself sent (path, query, `Last-Event-ID`, `Origin`, transport) and when.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::Request;
use axum::Router;
use tower::util::MapRequestLayer;

/// One request as the server saw it.
#[derive(Debug, Clone)]
#[allow(dead_code)]
pub struct Seen {
    pub path: String,
    pub query: Option<String>,
    pub last_event_id: Option<String>,
    pub origin: Option<String>,
    /// `Accept: text/event-stream`.
    pub sse: bool,
    pub at: Instant,
}

/// The requests seen so far, shared with the layer that records them.
#[derive(Debug, Clone, Default)]
#[allow(dead_code)]
pub struct SeenRequests(Arc<Mutex<Vec<Seen>>>);

#[allow(dead_code)]
impl SeenRequests {
    /// Wraps `router` so that every request it receives is recorded here.
    pub fn record(&self, router: Router) -> Router {
        let seen = self.clone();
        router.layer(MapRequestLayer::new(move |request: Request| {
            let header = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            };
            let entry = Seen {
                path: request.uri().path().to_owned(),
                query: request.uri().query().map(str::to_owned),
                last_event_id: header("last-event-id"),
                origin: header("origin"),
                sse: header("accept").is_some_and(|a| a.contains("text/event-stream")),
                at: Instant::now(),
            };
            seen.0.lock().unwrap().push(entry);
            request
        }))
    }

    /// Every request so far.
    pub fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }

    /// The requests to `path` so far.
    pub fn to(&self, path: &str) -> Vec<Seen> {
        self.all().into_iter().filter(|s| s.path == path).collect()
    }
}
