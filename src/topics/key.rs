//! Topic keys: what may name a topic, and the error for what may not.

use std::fmt;

/// The longest topic key, in bytes.
pub const MAX_TOPIC_KEY_LEN: usize = 64;

/// Checks a topic key: 1 to [`MAX_TOPIC_KEY_LEN`] ASCII letters, digits, `-`, `_` or `.`
/// (safe in a URL path segment, a query value, a Redis key and a cursor without escaping),
/// other than `.` and `..`: those are dot segments, which clients and proxies remove from a
/// URL path (RFC 3986 §5.2.4), so `/rooms/../events` would reach `/events`.
pub(crate) fn validate(key: &str) -> Result<(), TopicKeyError> {
    let reason = if key.is_empty() {
        "a topic key is not empty"
    } else if key == "." || key == ".." {
        "a topic key is not `.` or `..` (URL paths drop such segments)"
    } else if key.len() > MAX_TOPIC_KEY_LEN {
        "a topic key is at most 64 bytes long"
    } else if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        "a topic key holds only ASCII letters, digits, `-`, `_` and `.`"
    } else {
        return Ok(());
    };
    Err(TopicKeyError {
        key: key.chars().take(MAX_TOPIC_KEY_LEN + 8).collect(),
        reason,
    })
}

/// A topic key that is not one (answered with `400`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicKeyError {
    key: String,
    reason: &'static str,
}

impl fmt::Display for TopicKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid topic {:?}: {}", self.key, self.reason)
    }
}

impl std::error::Error for TopicKeyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_short_url_safe_words() {
        for good in ["lobby", "user-42", "a.b_c", "...", ".a", &"x".repeat(64)] {
            assert!(validate(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a b",
            "é",
            "a:b",
            "a~b",
            "a,b",
            &"x".repeat(65),
        ] {
            let error = validate(bad).unwrap_err();
            assert!(error.to_string().starts_with("invalid topic"), "{error}");
        }
    }
}
