//! Where a service finds topic keys in a request head: a query parameter, a path segment or
//! a closure over the parts. Shared by [`TopicsService`](super::TopicsService) and
//! [`PublishService`](super::PublishService), so that both read a request the same way.

use std::sync::Arc;

use http::request::Parts;

/// The keys a request names (none, one, or several).
pub(crate) type KeysFrom = Arc<dyn Fn(&Parts) -> Vec<String> + Send + Sync>;

/// Every value of the query parameter `name`, percent-decoded.
pub(crate) fn from_query(name: &'static str) -> KeysFrom {
    Arc::new(move |parts: &Parts| query_values(parts, name).map(text).collect())
}

/// The path segment at `index` (0 is the first after the leading `/`), percent-decoded.
pub(crate) fn from_path(index: usize) -> KeysFrom {
    from_one(move |parts| path_segment(parts, index).map(text))
}

/// The one key `key_from` finds, or none.
pub(crate) fn from_one(key_from: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> KeysFrom {
    Arc::new(move |parts: &Parts| key_from(parts).into_iter().collect())
}

/// Every value of the query parameter `name`, percent-decoded (`+` is a space); `Err` for a
/// value whose encoding is broken.
pub(crate) fn query_values<'a>(
    parts: &'a Parts,
    name: &'a str,
) -> impl Iterator<Item = Result<Vec<u8>, ()>> + 'a {
    parts.uri.query().into_iter().flat_map(move |query| {
        query.split('&').filter_map(move |pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then(|| crate::request::percent_decode(value))
        })
    })
}

/// The path segment at `index`, percent-decoded.
fn path_segment(parts: &Parts, index: usize) -> Option<Result<Vec<u8>, ()>> {
    let segment = parts.uri.path().trim_start_matches('/').split('/').nth(index)?;
    Some(crate::request::percent_decode(segment))
}

/// Decoded text; a broken encoding becomes U+FFFD, which no key holds, so it is refused as
/// an invalid key (`400`) rather than taken for another.
pub(crate) fn text(decoded: Result<Vec<u8>, ()>) -> String {
    decoded
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_else(|| "\u{fffd}".to_owned())
}
